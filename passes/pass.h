// The pass interface and the pass manager. A pass is a function over a graph; the manager
// parses pipelines ("default", "fold-constants,cse", "recognize-attention{min-fill=-1e4}"),
// runs them, verifies after every pass in debug builds, compacts the graph, prints the IR
// after the passes asked for and times them. That logic lives here only, never in a pass.
//
// Every pass is one file passes/NAME.c defining attn_pass_NAME; the registry and the default
// pipeline are the tables of passes/pipeline.c.
#ifndef ATTN_PASSES_PASS_H_
#define ATTN_PASSES_PASS_H_

#include <stdbool.h>
#include <stdio.h>

#include "ir/ir.h"

typedef enum attn_pass_option_type {
  ATTN_PASS_OPTION_INT,
  ATTN_PASS_OPTION_FLOAT,
  ATTN_PASS_OPTION_BOOL, // true/false/1/0
} attn_pass_option_type;

typedef struct attn_pass_option_info {
  const char *name;
  attn_pass_option_type type;
  const char *summary; // says the default too
} attn_pass_option_info;

// One option given in a pipeline: `option` indexes the pass's option table.
typedef struct attn_pass_option_value {
  uint32_t option;
  union {
    int64_t i;
    double f;
    bool b;
  } as;
} attn_pass_option_value;

typedef struct attn_pass_info attn_pass_info;

typedef struct attn_pass_context {
  const attn_pass_info *pass;
  attn_diag *diag;
  // Scratch memory, released when the pass returns.
  attn_arena scratch;
  // The options given for this run of the pass (those not given take their defaults).
  const attn_pass_option_value *options;
  uint32_t option_count;
  // NULL, or graph->symbol_count values from -D bindings; < 0 means unbound.
  const int64_t *symbol_values;
  // Set by the pass when it changed the graph (the manager reports it with --time-passes).
  bool changed;
} attn_pass_context;

typedef attn_status (*attn_pass_fn)(attn_pass_context *ctx, attn_graph *graph);

struct attn_pass_info {
  const char *name; // CLI name: fold-constants
  const char *summary;
  attn_pass_fn run;
  const attn_pass_option_info *options;
  uint32_t option_count;
};

// The value of option `name` for this run, or `fallback` when it was not given. `name` must be
// one of the pass's declared options of the matching type.
int64_t attn_pass_option_int(const attn_pass_context *ctx, const char *name, int64_t fallback);
double attn_pass_option_float(const attn_pass_context *ctx, const char *name, double fallback);
bool attn_pass_option_bool(const attn_pass_context *ctx, const char *name, bool fallback);

// ---- the registry (passes/pipeline.c) ------------------------------------------------------

// Every registered pass, in the order `attnc opt --list-passes` shows them.
const attn_pass_info *attn_pass_registry(uint32_t *out_count);
const attn_pass_info *attn_pass_find(const char *name, size_t length);
// The default pipeline, as a pipeline text ("canonicalize,fold-constants,...").
const char *attn_pipeline_default_text(void);

// ---- pipelines -----------------------------------------------------------------------------

typedef struct attn_pipeline_entry {
  const attn_pass_info *pass;
  const attn_pass_option_value *options;
  uint32_t option_count;
} attn_pipeline_entry;

typedef struct attn_pipeline {
  attn_arena arena;
  attn_pipeline_entry *entries;
  uint32_t count;
} attn_pipeline;

// Parses `text`: comma-separated items, each a pipeline name (`default`, `none`) or a pass
// name with optional options `name{key=value,key=value}`. Empty text is the empty pipeline.
// An unknown pass or option, a bad value or a syntax error is ATTN_ERROR_INVALID_ARGUMENT
// with a message that lists the valid names. `out` is initialised even on failure and must
// be released with attn_pipeline_deinit.
attn_status attn_pipeline_parse(const char *text, attn_allocator allocator, attn_diag *diag,
                                attn_pipeline *out) ATTN_MUST_USE;
void attn_pipeline_deinit(attn_pipeline *pipeline);

typedef struct attn_pipeline_run_options {
  // Print the IR after this pass (by name; each time it runs), or after every pass.
  const char *print_after;
  bool print_after_all;
  // Print each pass's wall time and the node counts before and after.
  bool time_passes;
  // Verify after every pass even in release builds (debug builds always do).
  bool verify_each;
  // Where IR dumps and timings go (stderr when NULL).
  FILE *out;
  // NULL, or graph->symbol_count values from -D bindings (< 0 unbound).
  const int64_t *symbol_values;
} attn_pipeline_run_options;

// Runs the pipeline's passes in order over `graph`. After each pass the graph is compacted
// (dead nodes dropped, topological order restored) and, in debug builds or with verify_each,
// verified; a verifier failure names the pass that broke the graph.
attn_status attn_pipeline_run(const attn_pipeline *pipeline, attn_graph *graph,
                              const attn_pipeline_run_options *options) ATTN_MUST_USE;

// ---- the passes ----------------------------------------------------------------------------

attn_status attn_pass_dce(attn_pass_context *ctx, attn_graph *graph);

#endif // ATTN_PASSES_PASS_H_
