// The reference evaluator (backend `interp`): runs a graph op by op on host tensors with the
// semantics of ir.h, accumulating in double in a fixed order and rounding each op's result once
// to its output dtype. Deterministic; it is the oracle every other backend and pass is checked
// against. Also exports the score-mod expression evaluator other backends reuse.
#ifndef ATTN_IR_INTERP_H_
#define ATTN_IR_INTERP_H_

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"
#include "runtime/base/tensor.h"

typedef struct attn_interp_args {
  // graph->input_count tensors, in graph input order. Borrowed for the duration of the run.
  const attn_tensor *inputs;
  // NULL, or graph->node_count entries indexed by node id; the entry of each WEIGHT node holds
  // its data (dtype and shape equal to the node's declared type; a float weight of another
  // float dtype, or an integer one of another integer dtype, is converted). Borrowed.
  const attn_tensor *weights;
  // NULL, or graph->symbol_count values; < 0 means unbound, to be bound from input shapes.
  const int64_t *symbol_values;
} attn_interp_args;

// Runs `graph` (which the verifier accepts) on `args` and allocates graph->output_count
// tensors with `allocator` into `out_outputs` (the caller frees each with attn_tensor_free).
//
// Symbols are bound from the inputs whose declared dim is a plain symbol, then every input is
// checked against its declared type; integer inputs of another integer dtype are converted
// when their values fit. Semantics per op are the comments of ir.h; in addition:
//   - integer arithmetic is exact and saturates to the dtype's range; integer div truncates
//     toward zero, and an integer division by zero is an error;
//   - float → integer conversions truncate toward zero and saturate (NaN → 0);
//   - max/min/maximum/minimum propagate NaN; argmax and topk rank NaN above everything.
// Nodes run in id order; dead nodes, and nodes no graph output depends on, do not run.
// Intermediates are freed after their last use.
//
// Errors, recorded in `diag` with the node's location where there is one:
// ATTN_ERROR_INVALID_ARGUMENT (an input of the wrong dtype or shape, a missing weight, an
// unbound symbol, a gather index out of range, an integer division by zero, ...),
// ATTN_ERROR_OUT_OF_MEMORY. On failure every `out_outputs` entry is zeroed and nothing leaks.
// Thread-safe for distinct `diag`s; `graph` is only read.
attn_status attn_interp_run(const attn_graph *graph, const attn_interp_args *args,
                            attn_allocator allocator, attn_diag *diag,
                            attn_tensor *out_outputs) ATTN_MUST_USE;

// ---- pieces for other backends -------------------------------------------------------------
// Backends that run most of a graph themselves use these to bind inputs exactly as
// attn_interp_run does and to evaluate, with the reference semantics, the nodes they have no
// kernel for.

// Binds each symbol that is a plain dim of an input from that input's shape, into
// `symbol_values` (graph->symbol_count entries; < 0 means unbound, bound entries are kept), then
// checks every input against its declared type. An integer input of another integer dtype
// passes (convert it with attn_interp_convert_input). Errors as attn_interp_run's, in `diag`.
attn_status attn_interp_bind_inputs(const attn_graph *graph, const attn_tensor *inputs,
                                    int64_t *symbol_values, attn_diag *diag) ATTN_MUST_USE;

// Allocates in `out` a copy of `given`, graph input `index`, converted to the input's declared
// integer dtype. Fails with ATTN_ERROR_INVALID_ARGUMENT when an element does not fit.
attn_status attn_interp_convert_input(const attn_graph *graph, uint32_t index,
                                      const attn_tensor *given, attn_allocator allocator,
                                      attn_diag *diag, attn_tensor *out) ATTN_MUST_USE;

// Evaluates node `node` alone: `inputs` are its input tensors (the concrete shapes of its input
// types under `symbol_values`, all bound), `weight` the data of a WEIGHT node (else NULL).
// Allocates node->output_count tensors into `out_outputs` with `allocator`, except that a leaf
// may point its output at data it does not own (a weight's or a constant's): then
// `*out_is_borrowed` is true and the outputs must not be freed or written. On failure nothing is
// allocated.
attn_status attn_interp_eval_node(const attn_graph *graph, attn_node_id node,
                                  const attn_tensor *inputs, const int64_t *symbol_values,
                                  const attn_tensor *weight, attn_allocator allocator,
                                  attn_diag *diag, attn_tensor *out_outputs,
                                  bool *out_is_borrowed) ATTN_MUST_USE;

// ---- score-mod expressions -------------------------------------------------------------------

// What a score-mod expression reads: the variables (score, b, h, q_idx, kv_idx, indexed by
// attn_expr_var) and the captured tensors (any dtype, read as doubles).
typedef struct attn_expr_env {
  double vars[ATTN_EXPR_VAR_COUNT];
  const attn_tensor *captures;
  uint32_t capture_count;
} attn_expr_env;

// Why an evaluation failed: capture `capture` was indexed with `index` along `axis`, whose
// size is `size` (index is INT64_MIN when the subscript was not a finite number).
typedef struct attn_expr_fault {
  uint32_t capture;
  uint32_t axis;
  int64_t index;
  int64_t size;
} attn_expr_fault;

// Evaluates `expr` in double. Functions follow C's math library (min/max are fmin/fmax;
// comparisons give 1 or 0; sigmoid is 1 / (1 + exp(-x))); `select` evaluates only the branch
// it takes. A capture subscript is truncated toward zero and must lie in [0, size).
// Returns ATTN_ERROR_INVALID_ARGUMENT with `out_fault` filled (when not NULL) for a subscript
// out of range or a capture that does not exist; records no message, so callers word it.
attn_status attn_expr_eval(const attn_expr *expr, const attn_expr_env *env, double *out_value,
                           attn_expr_fault *out_fault) ATTN_MUST_USE;

#endif // ATTN_IR_INTERP_H_
