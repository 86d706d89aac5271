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
attn_status attn_pass_specialize_shapes(attn_pass_context *ctx, attn_graph *graph);
attn_status attn_pass_canonicalize(attn_pass_context *ctx, attn_graph *graph);
attn_status attn_pass_fold_constants(attn_pass_context *ctx, attn_graph *graph);
attn_status attn_pass_cse(attn_pass_context *ctx, attn_graph *graph);
attn_status attn_pass_partition(attn_pass_context *ctx, attn_graph *graph);
attn_status attn_pass_plan_memory(attn_pass_context *ctx, attn_graph *graph);
attn_status attn_pass_recognize_attention(attn_pass_context *ctx, attn_graph *graph);

// ---- kernel partitioning and reports (passes/partition.c, passes/stats.c) -------------------

// What a node computes, as the partition and the reports see it.
typedef enum attn_op_class {
  ATTN_OP_CLASS_LEAF,        // weight, constant, iota: no kernel
  ATTN_OP_CLASS_ELEMENTWISE, // fused into elementwise, norm and gemm kernels
  ATTN_OP_CLASS_MATMUL,
  ATTN_OP_CLASS_NORM, // softmax, log_softmax, layernorm, rmsnorm
  ATTN_OP_CLASS_REDUCTION,
  ATTN_OP_CLASS_RESHAPE,
  ATTN_OP_CLASS_LAYOUT, // expand, permute, slice, concat, split
  ATTN_OP_CLASS_GATHER,
  ATTN_OP_CLASS_TOPK,
  ATTN_OP_CLASS_ROPE,
  ATTN_OP_CLASS_ATTENTION,
  ATTN_OP_CLASS_OTHER,
  ATTN_OP_CLASS_COUNT
} attn_op_class;

// The class of `op`; ops the table above does not name are placed by their flags.
attn_op_class attn_op_get_class(attn_op op);
// "leaf", "elementwise", ... (NULL when out of range).
const char *attn_op_class_name(attn_op_class op_class);

// Counts over a graph, and with a memory plan and every symbol bound, its memory: the planned
// bytes (the sum of the buffer sizes) and the largest set of planned values live at one kernel
// (each counted from the kernel that writes it to the last one that reads it, graph outputs to
// the end; aliases share their input's memory and are not counted again).
typedef struct attn_graph_stats {
  uint32_t live_node_count;
  uint32_t op_class_counts[ATTN_OP_CLASS_COUNT];
  uint32_t attention_count; // attention nodes
  bool is_partitioned;
  uint32_t kernel_count; // kernels with live nodes
  uint32_t kernel_kind_counts[ATTN_KERNEL_KIND_COUNT];
  bool is_planned;
  uint32_t buffer_count;
  bool has_bytes; // planned, every symbol bound, and the plan matches the partition
  int64_t planned_bytes;
  int64_t live_peak_bytes;
  uint32_t live_peak_kernel; // the kernel at which live_peak_bytes is live
} attn_graph_stats;

// Fills `out_stats` for `graph` (partitioned and planned or not). `symbol_values` is NULL or
// graph->symbol_count values (< 0 unbound). ATTN_ERROR_OUT_OF_MEMORY (message in graph->diag)
// when scratch memory runs out. `graph` is only read.
attn_status attn_graph_stats_compute(const attn_graph *graph, const int64_t *symbol_values,
                                     attn_graph_stats *out_stats) ATTN_MUST_USE;
// Prints the report, one `name: value` line per figure (buffers one per line below them), with
// symbolic sizes where a symbol is unbound and "not available" where a figure needs the
// partition, the plan or bindings. ATTN_ERROR_IO when writing fails.
attn_status attn_graph_stats_print(const attn_graph *graph, const attn_graph_stats *stats,
                                   const int64_t *symbol_values, FILE *out) ATTN_MUST_USE;

#endif // ATTN_PASSES_PASS_H_
