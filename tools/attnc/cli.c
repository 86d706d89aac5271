// Flag parsing and model loading shared by the attnc sub-commands.
#include "tools/attnc/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/attnb/attnb.h"
#include "frontend/onnx/onnx.h"
#include "frontend/parse.h"

const attn_loc attn_cli_loc = {"attnc", 0, 0};

int attn_cli_usage_error(const char *command, const char *format, ...) {
  va_list args;
  va_start(args, format);
  fprintf(stderr, "attnc %s: ", command);
  vfprintf(stderr, format, args);
  fprintf(stderr, "\nTry 'attnc %s --help'.\n", command);
  va_end(args);
  return ATTN_EXIT_USAGE;
}

// The value of `option` when argv[*inout_index] is that flag ("-w V", "-wV", "--config V",
// "--config=V"), advancing *inout_index past a separate value. NULL when it is not.
static char *match_flag(const attn_cli_option *option, int argc, char **argv, int *inout_index,
                        bool *out_is_missing_value) {
  char *arg = argv[*inout_index];
  size_t length = strlen(option->flag);
  *out_is_missing_value = false;
  if (option->out_flag) {
    if (strcmp(arg, option->flag) != 0)
      return NULL;
    *option->out_flag = true;
    return arg;
  }
  if (strncmp(arg, option->flag, length) != 0)
    return NULL;
  if (arg[length] != '\0') {
    if (length == 2)
      return arg + length;
    return arg[length] == '=' ? arg + length + 1 : NULL;
  }
  if (*inout_index + 1 >= argc) {
    *out_is_missing_value = true;
    return NULL;
  }
  *inout_index += 1;
  return argv[*inout_index];
}

// Stores `value` for `option`; false (after a usage message) when a binding is malformed.
static bool take_value(const char *command, const attn_cli_option *option, char *value) {
  if (option->out_flag)
    return true;
  if (option->out_value) {
    *option->out_value = value;
    return true;
  }
  char *equals = strchr(value, '=');
  if (!equals || equals == value || equals[1] == '\0') {
    attn_cli_usage_error(command, "%s takes NAME=VALUE, got '%s'", option->flag, value);
    return false;
  }
  *equals = '\0';
  option->bindings[(*option->binding_count)++] =
      (attn_cli_binding){option->flag, value, equals + 1};
  return true;
}

attn_cli_parse_result attn_cli_parse(const char *command, const char *usage, int argc, char **argv,
                                     const attn_cli_option *options, size_t option_count,
                                     const char **out_model) {
  *out_model = NULL;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
      fputs(usage, stdout);
      return ATTN_CLI_HELP_SHOWN;
    }
    bool is_option = false;
    for (size_t o = 0; o < option_count && !is_option; o++) {
      bool is_missing_value;
      char *value = match_flag(&options[o], argc, argv, &i, &is_missing_value);
      if (is_missing_value) {
        attn_cli_usage_error(command, "%s needs a value", options[o].flag);
        return ATTN_CLI_BAD_USAGE;
      }
      if (value && !take_value(command, &options[o], value))
        return ATTN_CLI_BAD_USAGE;
      is_option = value != NULL;
    }
    if (is_option)
      continue;
    if (arg[0] == '-' && arg[1] != '\0') {
      attn_cli_usage_error(command, "unknown option '%s'", arg);
      return ATTN_CLI_BAD_USAGE;
    }
    if (*out_model) {
      attn_cli_usage_error(command, "unexpected argument '%s' (MODEL is '%s')", arg, *out_model);
      return ATTN_CLI_BAD_USAGE;
    }
    *out_model = arg;
  }
  if (!*out_model) {
    attn_cli_usage_error(command, "no MODEL given");
    return ATTN_CLI_BAD_USAGE;
  }
  return ATTN_CLI_PARSED;
}

bool attn_cli_parse_int(const char *text, int64_t *out_value) {
  if (*text < '0' || *text > '9')
    return false;
  char *end = NULL;
  errno = 0;
  long long value = strtoll(text, &end, 10);
  if (errno != 0 || *end != '\0')
    return false;
  *out_value = value;
  return true;
}

attn_status attn_cli_parse_passes(const char *passes, const attn_pipeline_run_options *options,
                                  attn_diag *diag, attn_pipeline *out) {
  attn_status status = attn_pipeline_parse(passes, attn_allocator_system(), diag, out);
  if (status == ATTN_OK && options->print_after &&
      !attn_pass_find(options->print_after, strlen(options->print_after)))
    status = attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "--print-after: unknown pass '%s' (attnc opt --list-passes lists "
                             "them)",
                             options->print_after);
  return status;
}

static bool has_suffix(const char *text, const char *suffix) {
  size_t length = strlen(text), suffix_length = strlen(suffix);
  return length >= suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

attn_status attn_cli_load_model(const char *path, const attn_config *config,
                                attn_allocator allocator, attn_diag *diag, attn_graph **out_graph,
                                attn_weights **out_weights) {
  *out_graph = NULL;
  if (out_weights)
    *out_weights = NULL;
  // An .attnb file is the flat graph already: config.* was folded in when it was written.
  if (has_suffix(path, ".attnb"))
    return attn_attnb_read(path, allocator, diag, out_graph);
  if (has_suffix(path, ".onnx")) {
    attn_weights *weights = NULL;
    ATTN_RETURN_IF_ERROR(attn_onnx_import_file(path, allocator, diag, out_graph, &weights));
    if (out_weights)
      *out_weights = weights;
    else
      attn_weights_close(weights);
    return ATTN_OK;
  }
  if (!has_suffix(path, ".attn")) {
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    bool has_extension = dot && (!slash || dot > slash);
    return attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_UNSUPPORTED,
                           "unsupported model format '%s'; this build reads .attn model "
                           "descriptions, .attnb graphs and .onnx models (a compiled .attnx "
                           "runs with attnc run)",
                           has_extension ? dot : "(no extension)");
  }
  attn_parse_options options = {.config = config};
  return attn_parse_file(path, &options, allocator, diag, out_graph);
}

static void format_names(size_t count, const char *(*get)(const attn_graph *, uint32_t),
                         const attn_graph *graph, char *buffer, size_t size) {
  size_t used = 0;
  buffer[0] = '\0';
  if (count == 0)
    snprintf(buffer, size, "none");
  for (uint32_t i = 0; i < count && used < size; i++)
    used += (size_t)snprintf(buffer + used, size - used, "%s'%s'", i ? ", " : "", get(graph, i));
}

static const char *input_name(const attn_graph *graph, uint32_t index) {
  const char *name = attn_graph_value(graph, graph->inputs[index])->name;
  return name ? name : "?";
}

static const char *output_name(const attn_graph *graph, uint32_t index) {
  return graph->output_names[index] ? graph->output_names[index] : "?";
}

void attn_cli_format_symbols(const attn_graph *graph, char *buffer, size_t size) {
  format_names(graph->symbol_count, attn_graph_symbol_name, graph, buffer, size);
}

void attn_cli_format_inputs(const attn_graph *graph, char *buffer, size_t size) {
  format_names(graph->input_count, input_name, graph, buffer, size);
}

void attn_cli_format_outputs(const attn_graph *graph, char *buffer, size_t size) {
  format_names(graph->output_count, output_name, graph, buffer, size);
}

attn_status attn_cli_bind_symbols(const attn_graph *graph, const attn_cli_binding *bindings,
                                  size_t binding_count, attn_diag *diag, int64_t *symbol_values) {
  for (size_t i = 0; i < binding_count; i++) {
    const attn_cli_binding *b = &bindings[i];
    uint32_t index;
    if (!attn_graph_find_symbol(graph, b->name, &index)) {
      char names[1024];
      attn_cli_format_symbols(graph, names, sizeof(names));
      return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_NOT_FOUND,
                             "-D %s: the graph has no symbol '%s'; its symbols: %s", b->name,
                             b->name, names);
    }
    int64_t value;
    if (!attn_cli_parse_int(b->value, &value))
      return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "-D %s=%s: the value must be a non-negative integer", b->name,
                             b->value);
    symbol_values[index] = value;
  }
  return ATTN_OK;
}

attn_status attn_cli_require_weights(const attn_graph *graph, const attn_weights *weights,
                                     attn_diag *diag) {
  if (weights)
    return ATTN_OK;
  for (uint32_t i = 1; i < graph->node_count; i++) {
    const attn_node *node = &graph->nodes[i];
    if (node->is_dead || node->op != ATTN_OP_WEIGHT)
      continue;
    const attn_weight_attrs *attrs = node->attrs;
    return attn_diag_error(diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "the model reads weights (this one is '%s'); pass -w WEIGHTS",
                           attrs->name_count ? attrs->names[0] : "?");
  }
  return ATTN_OK;
}

// The cpu backend needs the partition and the memory plan: adds them after the user's passes
// when those did not make them.
attn_status attn_cli_plan_for_cpu(attn_graph *graph, const attn_pipeline_run_options *options,
                                  attn_diag *diag) {
  if (graph->buffer_count != 0)
    return ATTN_OK;
  attn_pipeline pipeline;
  attn_status status = attn_cli_parse_passes("partition,plan-memory", options, diag, &pipeline);
  if (status == ATTN_OK)
    status = attn_pipeline_run(&pipeline, graph, options);
  attn_pipeline_deinit(&pipeline);
  return status;
}

attn_status attn_cli_load(const char *model, const char *weights_path, const char *config_path,
                          attn_allocator allocator, attn_diag *diag, attn_weights **out_weights,
                          attn_config **out_config, attn_graph **out_graph) {
  const attn_config *config = NULL;
  if (has_suffix(model, ".onnx")) {
    // An ONNX model carries its weights: its initializers are the weight set.
    if (weights_path)
      return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "-w: %s carries its own weights (its initializers)", model);
    return attn_cli_load_model(model, NULL, allocator, diag, out_graph, out_weights);
  }
  if (weights_path) {
    ATTN_RETURN_IF_ERROR(attn_weights_open(weights_path, allocator, diag, out_weights));
    config = attn_weights_config(*out_weights);
  }
  if (config_path) {
    ATTN_RETURN_IF_ERROR(attn_config_read(config_path, allocator, diag, out_config));
    config = *out_config;
  }
  return attn_cli_load_model(model, config, allocator, diag, out_graph, NULL);
}

void attn_cli_model_deinit(attn_cli_model *model, attn_allocator allocator) {
  attn_bound_weights_deinit(&model->bound, allocator);
  attn_cpu_program_destroy(model->program);
  attn_cpu_backend_destroy(model->cpu);
  attn_config_destroy(model->config);
  attn_graph_destroy(model->graph);
  attn_weights_close(model->weights);
  attn_pipeline_deinit(&model->pipeline);
}
