// `attnc opt`: parse a model description, run a pass pipeline over it and print the IR (or,
// with --stats, a report on its kernels and memory plan; with --emit attnb, the IR as .attnb).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/attnb/attnb.h"
#include "ir/print.h"
#include "runtime/base/allocator.h"
#include "tools/attnc/cli.h"

static const char usage[] =
    "usage: attnc opt MODEL [-w WEIGHTS | --config CONFIG.json] [-p PASSES] [-D NAME=VALUE]...\n"
    "                 [--print-after PASS] [--print-after-all] [--time-passes] [--verify-each]\n"
    "                 [--stats] [--emit attn|attnb] [-o OUT]\n"
    "       attnc opt --list-passes\n"
    "\n"
    "Parses MODEL (.attn, or an .attnb graph), expands it to one flat graph, runs the passes\n"
    "and prints the resulting IR in the .attn language on stdout.\n"
    "\n"
    "  -w WEIGHTS          a .safetensors file or Hugging Face directory; its config.json\n"
    "                      feeds config.* in MODEL\n"
    "  --config FILE       a config.json to read config.* from, without weights\n"
    "  -p PASSES           the pipeline: comma-separated pass names, each with optional\n"
    "                      options written name{key=value,key=value}, or the named\n"
    "                      pipelines 'default' and 'none' (the default here)\n"
    "  -D NAME=VALUE       the value of a symbolic dim; passes may specialise on it\n"
    "  --print-after PASS  print the IR on stderr after each run of PASS\n"
    "  --print-after-all   print the IR on stderr after every pass\n"
    "  --time-passes       print each pass's time and node counts on stderr\n"
    "  --verify-each       verify after every pass (debug builds always do)\n"
    "  --stats             instead of the IR, print a report on stdout: node counts by op\n"
    "                      class, kernels by kind, buffers, and with every symbol bound by\n"
    "                      -D (or a static graph) the planned peak bytes against the largest\n"
    "                      set of simultaneously live tensors\n"
    "  --emit FORMAT       attn (the default): the IR as .attn text; attnb: the IR as an\n"
    "                      .attnb file (docs/attnb.md), which needs -o\n"
    "  -o OUT              write the IR to OUT instead of stdout\n"
    "  --list-passes       list the passes, their options and the default pipeline\n"
    "  -h, --help          this text\n";

static void list_passes(void) {
  uint32_t count;
  const attn_pass_info *passes = attn_pass_registry(&count);
  for (uint32_t i = 0; i < count; i++) {
    printf("%-22s %s\n", passes[i].name, passes[i].summary);
    for (uint32_t o = 0; o < passes[i].option_count; o++)
      printf("  {%s=...} %s\n", passes[i].options[o].name, passes[i].options[o].summary);
  }
  printf("\ndefault pipeline: %s\n", attn_pipeline_default_text());
}

int attn_tool_opt(int argc, char **argv) {
  const char *command = "opt";
  const char *model = NULL, *weights_path = NULL, *config_path = NULL, *passes = "";
  const char *emit = "attn", *out_path = NULL;
  attn_pipeline_run_options run_options = {.out = stderr};
  bool show_stats = false;
  bool is_listing = false;
  for (int i = 1; i < argc; i++)
    is_listing |= strcmp(argv[i], "--list-passes") == 0;
  if (is_listing) {
    list_passes();
    return ATTN_EXIT_OK;
  }
  attn_cli_binding *symbols = calloc((size_t)argc, sizeof(*symbols));
  size_t symbol_count = 0;
  if (!symbols) {
    fputs("attnc opt: out of memory\n", stderr);
    return ATTN_EXIT_ERROR;
  }
  const attn_cli_option options[] = {
      {"-w", &weights_path, NULL, NULL, NULL},
      {"--config", &config_path, NULL, NULL, NULL},
      {"-p", &passes, NULL, NULL, NULL},
      {"-D", NULL, symbols, &symbol_count, NULL},
      {"--print-after", &run_options.print_after, NULL, NULL, NULL},
      {"--print-after-all", NULL, NULL, NULL, &run_options.print_after_all},
      {"--time-passes", NULL, NULL, NULL, &run_options.time_passes},
      {"--verify-each", NULL, NULL, NULL, &run_options.verify_each},
      {"--stats", NULL, NULL, NULL, &show_stats},
      {"--emit", &emit, NULL, NULL, NULL},
      {"-o", &out_path, NULL, NULL, NULL},
  };
  attn_cli_parse_result parsed = attn_cli_parse(command, usage, argc, argv, options,
                                                sizeof(options) / sizeof(options[0]), &model);
  if (parsed == ATTN_CLI_PARSED && weights_path && config_path) {
    attn_cli_usage_error(command, "give -w or --config, not both");
    parsed = ATTN_CLI_BAD_USAGE;
  }
  bool emit_attnb = strcmp(emit, "attnb") == 0;
  if (parsed == ATTN_CLI_PARSED && !emit_attnb && strcmp(emit, "attn") != 0) {
    attn_cli_usage_error(command, "unknown --emit format '%s' (attn or attnb)", emit);
    parsed = ATTN_CLI_BAD_USAGE;
  } else if (parsed == ATTN_CLI_PARSED && emit_attnb && (!out_path || show_stats)) {
    attn_cli_usage_error(command, "--emit attnb writes a file: pass -o OUT.attnb (not --stats)");
    parsed = ATTN_CLI_BAD_USAGE;
  }
  if (parsed != ATTN_CLI_PARSED) {
    free(symbols);
    return parsed == ATTN_CLI_HELP_SHOWN ? ATTN_EXIT_OK : ATTN_EXIT_USAGE;
  }

  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_weights *weights = NULL;
  attn_config *own_config = NULL;
  const attn_config *config = NULL;
  attn_graph *graph = NULL;
  int64_t *symbol_values = NULL;

  attn_pipeline pipeline;
  attn_status status = attn_cli_parse_passes(passes, &run_options, &diag, &pipeline);
  if (status == ATTN_OK && weights_path) {
    status = attn_weights_open(weights_path, allocator, &diag, &weights);
    config = status == ATTN_OK ? attn_weights_config(weights) : NULL;
  } else if (status == ATTN_OK && config_path) {
    status = attn_config_read(config_path, allocator, &diag, &own_config);
    config = own_config;
  }
  if (status == ATTN_OK)
    status = attn_cli_load_model(model, config, allocator, &diag, &graph, NULL);
  if (status == ATTN_OK) {
    symbol_values = malloc((graph->symbol_count + 1) * sizeof(*symbol_values));
    if (!symbol_values)
      status = attn_diag_error(&diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  for (uint32_t i = 0; status == ATTN_OK && i < graph->symbol_count; i++)
    symbol_values[i] = -1;
  if (status == ATTN_OK)
    status = attn_cli_bind_symbols(graph, symbols, symbol_count, &diag, symbol_values);
  run_options.symbol_values = symbol_values;
  if (status == ATTN_OK)
    status = attn_pipeline_run(&pipeline, graph, &run_options);
  FILE *out = stdout;
  if (status == ATTN_OK && out_path && !emit_attnb && !(out = fopen(out_path, "w"))) {
    out = stdout;
    status = attn_diag_error(&diag, (attn_loc){out_path, 0, 0}, ATTN_ERROR_IO,
                             "cannot open for writing");
  }
  if (status == ATTN_OK && emit_attnb) {
    status = attn_attnb_write(graph, out_path, &diag);
  } else if (status == ATTN_OK && show_stats) {
    attn_graph_stats stats;
    status = attn_graph_stats_compute(graph, symbol_values, &stats);
    if (status == ATTN_OK)
      status = attn_graph_stats_print(graph, &stats, symbol_values, out);
    if (status == ATTN_ERROR_IO)
      status = attn_diag_error(&diag, attn_cli_loc, ATTN_ERROR_IO, "cannot write the report");
  } else if (status == ATTN_OK) {
    status = attn_graph_print(graph, out);
  }
  if (status == ATTN_OK && fflush(out) != 0)
    status = attn_diag_error(&diag, attn_cli_loc, ATTN_ERROR_IO, "cannot write the IR");
  if (out != stdout && fclose(out) != 0 && status == ATTN_OK)
    status = attn_diag_error(&diag, (attn_loc){out_path, 0, 0}, ATTN_ERROR_IO, "cannot write");

  attn_diag_write(&diag, stderr);
  attn_pipeline_deinit(&pipeline);
  free(symbol_values);
  attn_graph_destroy(graph);
  attn_config_destroy(own_config);
  attn_weights_close(weights);
  attn_diag_deinit(&diag);
  free(symbols);
  return status == ATTN_OK ? ATTN_EXIT_OK : ATTN_EXIT_ERROR;
}
