// Weight binding: gives every WEIGHT node of a graph its tensor from a weight set (a
// safetensors file or a Hugging Face directory), looked up by the node's names. Bound
// tensors are views into the weight set unless the checkpoint's float dtype differs from
// the declared one, in which case they are converted copies owned by the binding.
#ifndef ATTN_FRONTEND_BIND_H_
#define ATTN_FRONTEND_BIND_H_

#include <stdbool.h>
#include <stdint.h>

#include "ir/ir.h"
#include "runtime/base/tensor.h"
#include "runtime/tensor/weights.h"

typedef struct attn_bound_weights {
  // node_count entries indexed by node id (the layout attn_interp_args.weights expects);
  // entries of nodes that are not WEIGHT nodes are zero.
  attn_tensor *by_node;
  uint32_t node_count;
  // is_owned[i]: by_node[i].data was converted and is freed by attn_bound_weights_deinit;
  // otherwise it is a view valid while the weight set stays open.
  bool *is_owned;
} attn_bound_weights;

// Binds every live WEIGHT node of `graph` to a tensor of `weights`. A node's names are tried
// in order; a name that is absent is also tried without its first dotted component (when
// what remains still has a dot), which is how checkpoints saved from a base model name their
// tensors (`h.0.attn.c_attn.weight` for `transformer.h.0.attn.c_attn.weight`).
//
// The shape must equal the declared one. f32/f16/bf16 tensors are converted to the declared
// float dtype, and integer tensors to the declared integer dtype; float against integer (or
// bool against anything else) is an error.
//
// Errors, recorded in `diag` at the node's location: ATTN_ERROR_NOT_FOUND (no name matched;
// the message lists every name tried and the weight file), ATTN_ERROR_INVALID_ARGUMENT (shape
// or dtype mismatch; the message names the tensor, both types and the shard file),
// ATTN_ERROR_OUT_OF_MEMORY. On failure `out_bound` is left empty. On success release it with
// attn_bound_weights_deinit; views in it borrow from `weights`, which must stay open.
attn_status attn_bind_weights(const attn_graph *graph, const attn_weights *weights,
                              attn_allocator allocator, attn_diag *diag,
                              attn_bound_weights *out_bound) ATTN_MUST_USE;

// Frees converted copies and the arrays, and empties `bound`. An empty `bound` is a no-op.
void attn_bound_weights_deinit(attn_bound_weights *bound, attn_allocator allocator);

#endif // ATTN_FRONTEND_BIND_H_
