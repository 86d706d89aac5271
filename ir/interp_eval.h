// Private to the reference evaluator (ir/interp*.c): the context each op's evaluator receives
// and the element helpers they share. Every evaluator named in ops.def is declared here.
//
// Invariant: an evaluator's input tensors have exactly the concrete shapes of the node's
// declared input types, and its outputs arrive with dtype and dims set from the declared
// output types (with symbols bound), data allocated and zero-filled, except for leaf ops
// (weight, constant, iota) whose data arrives NULL.
#ifndef ATTN_IR_INTERP_EVAL_H_
#define ATTN_IR_INTERP_EVAL_H_

#include <stdbool.h>
#include <stdint.h>

#include "ir/interp.h"

typedef struct attn_eval_ctx {
  const attn_graph *graph;
  const attn_node *node;
  const void *attrs; // the node's attributes, never NULL for ops that have a family
  const attn_tensor *inputs;
  uint32_t input_count;
  attn_tensor *outputs;
  uint32_t output_count;
  const int64_t *symbol_values; // graph->symbol_count entries, bound
  const attn_tensor *weight;    // WEIGHT nodes: the caller's tensor for this node, or NULL
  attn_allocator allocator;
  attn_diag *diag;
  // Set by a leaf evaluator that points outputs[0].data at memory it does not own (a weight or
  // a constant's data); such data is never written.
  bool is_output_borrowed;
} attn_eval_ctx;

#define ATTN_OP(e, name, min_in, max_in, out, attrs, flags, infer, eval)                           \
  attn_status eval(attn_eval_ctx *ctx);
#include "ir/ops.def"
#undef ATTN_OP

// Records "<op>: <message>" at the node's location and returns `status`.
attn_status attn_interp_error(attn_eval_ctx *ctx, attn_status status, const char *format, ...)
    ATTN_PRINTF(3, 4);
// Allocates zero-filled data for outputs[index] (whose type is already set).
attn_status attn_interp_alloc_output(attn_eval_ctx *ctx, uint32_t index) ATTN_MUST_USE;

static inline bool attn_interp_is_int(attn_dtype dtype) {
  return dtype == ATTN_DTYPE_I64 || dtype == ATTN_DTYPE_I32 || dtype == ATTN_DTYPE_I8;
}

// Element `index` as a double (exact for every dtype but i64 beyond 2^53).
double attn_interp_load(const attn_tensor *tensor, int64_t index);
// Writes `value` rounded once to the tensor's dtype: to nearest even for floats (f16 and bf16
// directly from the double, not through f32); toward zero, saturating, NaN → 0 for integers;
// != 0 for bool.
void attn_interp_store(attn_tensor *tensor, int64_t index, double value);
// Integer (or bool) element `index` exactly.
int64_t attn_interp_load_int(const attn_tensor *tensor, int64_t index);
// Writes `value` saturated to the range of an integer dtype (bool: != 0; floats: rounded).
void attn_interp_store_int(attn_tensor *tensor, int64_t index, int64_t value);

// Saturating int64 arithmetic.
int64_t attn_interp_add_sat(int64_t a, int64_t b);
int64_t attn_interp_mul_sat(int64_t a, int64_t b);

// The strides (in elements) with which `tensor` is read when broadcast to `rank` dims `dims`
// (NumPy rules: leading dims added, size-1 dims get stride 0). False when a dim neither
// matches nor is 1.
bool attn_interp_broadcast_strides(const attn_tensor *tensor, uint32_t rank, const int64_t *dims,
                                   int64_t *out_strides);
// The offset of row-major element `flat` of a `rank`-dim shape `dims` read with `strides`.
int64_t attn_interp_offset(int64_t flat, uint32_t rank, const int64_t *dims,
                           const int64_t *strides);
// Row-major strides of `tensor`.
void attn_interp_strides(const attn_tensor *tensor, int64_t *out_strides);
// Product of dims [begin, end).
int64_t attn_interp_dims_product(const attn_tensor *tensor, uint32_t begin, uint32_t end);
// `axis` made non-negative for `rank` (shape inference has checked the range).
uint32_t attn_interp_axis(int64_t axis, uint32_t rank);

// A newly allocated double copy of `tensor`'s elements (freed with attn_interp_free_f64).
attn_status attn_interp_to_f64(attn_eval_ctx *ctx, const attn_tensor *tensor,
                               double **out_values) ATTN_MUST_USE;
void attn_interp_free_f64(attn_eval_ctx *ctx, double *values, const attn_tensor *tensor);

#endif // ATTN_IR_INTERP_EVAL_H_
