// ONNX import: an ONNX ModelProto (opsets 13-21 of the default domain) becomes an attnc graph,
// and its initializers a weight set that binds to the graph's WEIGHT nodes by initializer name.
// Shape computations (Shape, Gather, Concat, Unsqueeze, Slice, Range, ... on int64 shape
// tensors) are evaluated at import with symbolic dims, so they leave no nodes; docs/onnx.md
// lists the ops and the limits.
#ifndef ATTN_FRONTEND_ONNX_ONNX_H_
#define ATTN_FRONTEND_ONNX_ONNX_H_

#include <stddef.h>

#include "ir/ir.h"
#include "runtime/tensor/weights.h"

// Imports the serialized ModelProto `bytes`. `name` is the model's name in messages (its path).
// External data files are read relative to `base_dir`; NULL refuses external data. Graph inputs
// and outputs keep their ONNX names, dim_params become symbols of those names (a dim without
// one becomes "<input>_dim<i>"), and every node's location is its ONNX node name.
//
// Errors, recorded in `diag`: ATTN_ERROR_PARSE (not a ModelProto, a malformed tensor),
// ATTN_ERROR_UNSUPPORTED (an op, opset, dtype or attribute this importer does not take; the
// message names the op type, the node and the opset), ATTN_ERROR_INVALID_ARGUMENT (external
// data outside the model's directory, shapes that do not agree), ATTN_ERROR_IO,
// ATTN_ERROR_OUT_OF_MEMORY. On success the caller owns both results (attn_graph_destroy,
// attn_weights_close); `*out_weights` holds every initializer the graph reads as a weight. On
// failure both are NULL. `diag` must outlive the graph.
attn_status attn_onnx_import(const void *bytes, size_t size, const char *name, const char *base_dir,
                             attn_allocator allocator, attn_diag *diag, attn_graph **out_graph,
                             attn_weights **out_weights) ATTN_MUST_USE;

// Reads the file at `path` and imports it, with external data relative to its directory.
attn_status attn_onnx_import_file(const char *path, attn_allocator allocator, attn_diag *diag,
                                  attn_graph **out_graph, attn_weights **out_weights) ATTN_MUST_USE;

#endif // ATTN_FRONTEND_ONNX_ONNX_H_
