// Reference evaluators of the ops that move data without computing: reshape, expand, permute,
// slice, concat, split and gather. They copy bytes, so every dtype is exact.
#include <inttypes.h>
#include <string.h>

#include "ir/interp_eval.h"

static char *element(const attn_tensor *t, int64_t index) {
  return (char *)t->data + (size_t)index * attn_dtype_size(t->dtype);
}

attn_status attn_eval_copy(attn_eval_ctx *ctx) {
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *y = &ctx->outputs[0];
  int64_t count = attn_tensor_element_count(x);
  if (count != attn_tensor_element_count(y))
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                             "%" PRId64 " elements cannot be reshaped to %" PRId64, count,
                             attn_tensor_element_count(y));
  if (count)
    memcpy(y->data, x->data, (size_t)count * attn_dtype_size(x->dtype));
  return ATTN_OK;
}

attn_status attn_eval_expand(attn_eval_ctx *ctx) {
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *y = &ctx->outputs[0];
  int64_t strides[ATTN_MAX_RANK];
  if (!attn_interp_broadcast_strides(x, y->rank, y->dims, strides))
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT, "the input does not broadcast");
  size_t size = attn_dtype_size(y->dtype);
  int64_t count = attn_tensor_element_count(y);
  for (int64_t i = 0; i < count; i++)
    memcpy(element(y, i), element(x, attn_interp_offset(i, y->rank, y->dims, strides)), size);
  return ATTN_OK;
}

attn_status attn_eval_permute(attn_eval_ctx *ctx) {
  const attn_perm_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *y = &ctx->outputs[0];
  int64_t x_strides[ATTN_MAX_RANK], strides[ATTN_MAX_RANK];
  attn_interp_strides(x, x_strides);
  for (uint32_t d = 0; d < y->rank; d++) // output dim d walks input dim perm[d]
    strides[d] = x_strides[attrs->perm[d]];
  size_t size = attn_dtype_size(y->dtype);
  int64_t count = attn_tensor_element_count(y);
  for (int64_t i = 0; i < count; i++)
    memcpy(element(y, i), element(x, attn_interp_offset(i, y->rank, y->dims, strides)), size);
  return ATTN_OK;
}

attn_status attn_eval_slice(attn_eval_ctx *ctx) {
  const attn_slice_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *y = &ctx->outputs[0];
  uint32_t axis = attn_interp_axis(attrs->axis, x->rank);
  int64_t dim = x->dims[axis];
  // Python semantics: negative bounds count from the end, then both clamp to [0, dim].
  int64_t start = attrs->start < 0 ? attrs->start + dim : attrs->start;
  int64_t end = attrs->end < 0 ? attrs->end + dim : attrs->end;
  start = start < 0 ? 0 : start > dim ? dim : start;
  end = end < 0 ? 0 : end > dim ? dim : end;
  int64_t length = end > start ? (end - start - 1) / attrs->step + 1 : 0; // no overflow
  if (length != y->dims[axis])
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                             "slicing [%" PRId64 ":%" PRId64 ":%" PRId64 "] of axis %u (size "
                             "%" PRId64 ") gives %" PRId64 " elements, the type says %" PRId64,
                             attrs->start, attrs->end, attrs->step, axis, dim, length,
                             y->dims[axis]);
  int64_t strides[ATTN_MAX_RANK];
  attn_interp_strides(x, strides);
  int64_t first = start * strides[axis];
  strides[axis] *= attrs->step;
  size_t size = attn_dtype_size(y->dtype);
  int64_t count = attn_tensor_element_count(y);
  for (int64_t i = 0; i < count; i++)
    memcpy(element(y, i), element(x, first + attn_interp_offset(i, y->rank, y->dims, strides)),
           size);
  return ATTN_OK;
}

// concat and split copy blocks: `outer` rows, each holding one contiguous block per piece.
attn_status attn_eval_concat(attn_eval_ctx *ctx) {
  const attn_axis_attrs *attrs = ctx->attrs;
  attn_tensor *y = &ctx->outputs[0];
  uint32_t axis = attn_interp_axis(attrs->axis, y->rank);
  int64_t outer = attn_interp_dims_product(y, 0, axis);
  size_t row_bytes = (size_t)attn_interp_dims_product(y, axis, y->rank) * attn_dtype_size(y->dtype);
  size_t offset = 0;
  for (uint32_t p = 0; p < ctx->input_count; p++) {
    const attn_tensor *x = &ctx->inputs[p];
    size_t block = (size_t)attn_interp_dims_product(x, axis, x->rank) * attn_dtype_size(x->dtype);
    for (int64_t o = 0; o < outer && block; o++)
      memcpy((char *)y->data + (size_t)o * row_bytes + offset,
             (const char *)x->data + (size_t)o * block, block);
    offset += block;
  }
  return ATTN_OK;
}

attn_status attn_eval_split(attn_eval_ctx *ctx) {
  const attn_split_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  uint32_t axis = attn_interp_axis(attrs->axis, x->rank);
  int64_t outer = attn_interp_dims_product(x, 0, axis);
  size_t row_bytes = (size_t)attn_interp_dims_product(x, axis, x->rank) * attn_dtype_size(x->dtype);
  size_t offset = 0;
  for (uint32_t p = 0; p < ctx->output_count; p++) {
    attn_tensor *y = &ctx->outputs[p];
    size_t block = (size_t)attn_interp_dims_product(y, axis, y->rank) * attn_dtype_size(y->dtype);
    if (offset + block > row_bytes)
      return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                               "the sizes exceed axis %u of the input", axis);
    for (int64_t o = 0; o < outer && block; o++)
      memcpy((char *)y->data + (size_t)o * block,
             (const char *)x->data + (size_t)o * row_bytes + offset, block);
    offset += block;
  }
  return ATTN_OK;
}

// numpy.take: out[pre..., idx..., post...] = data[pre..., indices[idx...], post...].
attn_status attn_eval_gather(attn_eval_ctx *ctx) {
  const attn_axis_attrs *attrs = ctx->attrs;
  const attn_tensor *data = &ctx->inputs[0], *indices = &ctx->inputs[1];
  attn_tensor *y = &ctx->outputs[0];
  uint32_t axis = attn_interp_axis(attrs->axis, data->rank);
  int64_t outer = attn_interp_dims_product(data, 0, axis), dim = data->dims[axis];
  size_t block =
      (size_t)attn_interp_dims_product(data, axis + 1, data->rank) * attn_dtype_size(data->dtype);
  int64_t index_count = attn_tensor_element_count(indices);
  for (int64_t i = 0; i < index_count; i++) {
    int64_t index = attn_interp_load_int(indices, i);
    if (index < -dim || index >= dim) // negative indices count from the end
      return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                               "index %" PRId64 " (element %" PRId64 " of the indices) is out of "
                               "range for axis %u of size %" PRId64,
                               index, i, axis, dim);
  }
  for (int64_t o = 0; o < outer && block; o++) {
    for (int64_t i = 0; i < index_count; i++) {
      int64_t index = attn_interp_load_int(indices, i);
      int64_t at = index < 0 ? index + dim : index;
      memcpy((char *)y->data + (size_t)(o * index_count + i) * block,
             (const char *)data->data + (size_t)(o * dim + at) * block, block);
    }
  }
  return ATTN_OK;
}
