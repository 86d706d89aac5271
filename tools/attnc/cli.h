// Shared pieces of the attnc sub-commands: flag parsing, NAME=VALUE bindings, loading the
// model description and its config, exit codes. Only the tool uses these.
#ifndef ATTN_TOOLS_ATTNC_CLI_H_
#define ATTN_TOOLS_ATTNC_CLI_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codegen/cpu/backend.h"
#include "frontend/bind.h"
#include "ir/ir.h"
#include "passes/pass.h"
#include "runtime/base/diag.h"
#include "runtime/tensor/weights.h"

// Exit codes: 1 for errors about the model, data or files, 2 for a malformed command line.
enum { ATTN_EXIT_OK = 0, ATTN_EXIT_ERROR = 1, ATTN_EXIT_USAGE = 2 };

// The sub-commands; each gets argv[0] = its own name.
int attn_tool_run(int argc, char **argv);
int attn_tool_compile(int argc, char **argv);
int attn_tool_bench(int argc, char **argv);
int attn_tool_opt(int argc, char **argv);
int attn_tool_init_weights(int argc, char **argv);
int attn_tool_repl(int argc, char **argv);
int attn_tool_import(int argc, char **argv);

// ---- command lines ---------------------------------------------------------------------------

// A NAME=VALUE argument of -i, -o or -D.
typedef struct attn_cli_binding {
  const char *flag; // "-i"
  const char *name; // the argument, split in place at its '='
  const char *value;
} attn_cli_binding;

// One flag a sub-command accepts. Exactly one of `out_value` (a flag given once; the last one
// wins), `bindings` (a repeatable NAME=VALUE flag; the caller gives room for argc of them) and
// `out_flag` (a flag without a value, set to true when present) is set.
typedef struct attn_cli_option {
  const char *flag; // "-w" (also "-wVALUE") or "--config" (also "--config=VALUE")
  const char **out_value;
  attn_cli_binding *bindings;
  size_t *binding_count;
  bool *out_flag;
} attn_cli_option;

typedef enum attn_cli_parse_result {
  ATTN_CLI_PARSED,     // go on
  ATTN_CLI_HELP_SHOWN, // -h or --help: `usage` went to stdout
  ATTN_CLI_BAD_USAGE,  // a message went to stderr
} attn_cli_parse_result;

// Parses argv[1..argc-1] of sub-command `command`: the options, and exactly one positional
// argument (MODEL) into *out_model.
attn_cli_parse_result attn_cli_parse(const char *command, const char *usage, int argc, char **argv,
                                     const attn_cli_option *options, size_t option_count,
                                     const char **out_model);

// Prints "attnc COMMAND: MESSAGE" and a pointer to --help on stderr; returns ATTN_EXIT_USAGE.
int attn_cli_usage_error(const char *command, const char *format, ...) ATTN_PRINTF(2, 3);

// Parses a -D value: a non-negative decimal integer.
bool attn_cli_parse_int(const char *text, int64_t *out_value);

// Parses the -p pipeline `passes` into `out` (released with attn_pipeline_deinit even on
// failure). A --print-after name in `options` that is no registered pass is an error too.
attn_status attn_cli_parse_passes(const char *passes, const attn_pipeline_run_options *options,
                                  attn_diag *diag, attn_pipeline *out) ATTN_MUST_USE;

// ---- models ----------------------------------------------------------------------------------

// Where command-line errors are reported (the "file" of their location).
extern const attn_loc attn_cli_loc;

// Loads the model at `path`, by its extension: a .attn file parsed with `config` (may be NULL)
// feeding config.*, an .attnb file (the graph as written; `config` is not read), or an .onnx
// model imported, whose initializers become the weight set in `*out_weights` (NULL for the
// others). `out_weights` may be NULL: the weights are dropped.
attn_status attn_cli_load_model(const char *path, const attn_config *config,
                                attn_allocator allocator, attn_diag *diag, attn_graph **out_graph,
                                attn_weights **out_weights) ATTN_MUST_USE;

// What run, bench and compile hold of a model: its weights and config, the graph and the pipeline
// it went through, the weights bound to it, and the cpu backend's program.
typedef struct attn_cli_model {
  attn_weights *weights;
  attn_config *config;
  attn_graph *graph;
  attn_pipeline pipeline;
  attn_bound_weights bound;
  attn_cpu_backend *cpu;
  attn_cpu_program *program;
} attn_cli_model;

// Frees all of it (NULL members are skipped); `allocator` is the one everything came from.
void attn_cli_model_deinit(attn_cli_model *model, attn_allocator allocator);

// Opens -w WEIGHTS (a safetensors file or a Hugging Face directory) and --config FILE when
// given (NULL otherwise), then parses MODEL (an .onnx MODEL brings its own weights, and -w is
// then an error) with config.* from --config, else from the weights'
// directory. The caller closes what it gets, on failure too.
attn_status attn_cli_load(const char *model, const char *weights_path, const char *config_path,
                          attn_allocator allocator, attn_diag *diag, attn_weights **out_weights,
                          attn_config **out_config, attn_graph **out_graph) ATTN_MUST_USE;

// Applies -D bindings to `symbol_values` (graph->symbol_count entries, < 0 unbound). An unknown
// symbol is an error that lists the graph's symbols.
attn_status attn_cli_bind_symbols(const attn_graph *graph, const attn_cli_binding *bindings,
                                  size_t binding_count, attn_diag *diag,
                                  int64_t *symbol_values) ATTN_MUST_USE;

// An error naming the first weight the graph reads when no weights were given.
attn_status attn_cli_require_weights(const attn_graph *graph, const attn_weights *weights,
                                     attn_diag *diag) ATTN_MUST_USE;

// The cpu backend needs the partition and the memory plan: adds them after the user's passes
// when those did not make them.
attn_status attn_cli_plan_for_cpu(attn_graph *graph, const attn_pipeline_run_options *options,
                                  attn_diag *diag) ATTN_MUST_USE;

// Writes "'a', 'b', 'c'" (or "none") for the graph's symbols, inputs or outputs.
void attn_cli_format_symbols(const attn_graph *graph, char *buffer, size_t size);
void attn_cli_format_inputs(const attn_graph *graph, char *buffer, size_t size);
void attn_cli_format_outputs(const attn_graph *graph, char *buffer, size_t size);

#endif // ATTN_TOOLS_ATTNC_CLI_H_
