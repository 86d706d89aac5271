// Reference evaluator of matmul: batched [..., M, K] x [..., K, N] with NumPy-broadcast batch
// dims and optional transposes. Each dot product accumulates in double (int64, saturating, for
// integer operands) in increasing k, then rounds once to the output dtype.
#include <string.h>

#include "ir/interp_eval.h"

// Operand `t` repacked so that each of its matrices is stored as `rows` rows of `depth`
// contiguous elements (the dot-product dimension last), as doubles or as int64s.
typedef struct packed {
  void *data;
  size_t size_bytes;
} packed;

static attn_status pack(attn_eval_ctx *ctx, const attn_tensor *t, bool depth_is_last, bool is_int,
                        packed *out) {
  int64_t r = t->dims[t->rank - 2], c = t->dims[t->rank - 1];
  int64_t count = attn_tensor_element_count(t);
  out->size_bytes = (size_t)(count ? count : 1) * 8;
  out->data = attn_allocator_alloc(ctx->allocator, out->size_bytes);
  if (!out->data)
    return attn_interp_error(ctx, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  double *as_double = out->data;
  int64_t *as_int = out->data;
  // Source element (m, i, j) of an [r, c] matrix goes to (m, i, j) when the depth is already
  // the last dim, else to (m, j, i).
  for (int64_t e = 0; e < count; e++) {
    int64_t m = e / (r * c), i = (e / c) % r, j = e % c;
    int64_t to = depth_is_last ? e : m * r * c + j * r + i;
    if (is_int)
      as_int[to] = attn_interp_load_int(t, e);
    else
      as_double[to] = attn_interp_load(t, e);
  }
  return ATTN_OK;
}

// Strides, in matrices, with which the batch dims of `t` broadcast to the output's batch dims.
static bool batch_strides(const attn_tensor *t, const attn_tensor *y, int64_t *out_strides) {
  attn_tensor batch = *t;
  batch.rank = t->rank - 2;
  return attn_interp_broadcast_strides(&batch, y->rank - 2, y->dims, out_strides);
}

attn_status attn_eval_matmul(attn_eval_ctx *ctx) {
  const attn_matmul_attrs *attrs = ctx->attrs;
  const attn_tensor *a = &ctx->inputs[0], *b = &ctx->inputs[1];
  attn_tensor *y = &ctx->outputs[0];
  int64_t m_count = y->dims[y->rank - 2], n_count = y->dims[y->rank - 1];
  int64_t k_count = attrs->transpose_a ? a->dims[a->rank - 2] : a->dims[a->rank - 1];
  int64_t sa[ATTN_MAX_RANK], sb[ATTN_MAX_RANK];
  if (!batch_strides(a, y, sa) || !batch_strides(b, y, sb))
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_GRAPH, "batch dims do not broadcast");
  bool is_int = attn_interp_is_int(a->dtype);
  // A as [M rows of K], B as [N rows of K].
  packed pa = {0}, pb = {0};
  attn_status status = pack(ctx, a, !attrs->transpose_a, is_int, &pa);
  if (status == ATTN_OK)
    status = pack(ctx, b, attrs->transpose_b, is_int, &pb);
  if (status == ATTN_OK) {
    int64_t batch_count = attn_interp_dims_product(y, 0, y->rank - 2);
    for (int64_t batch = 0; batch < batch_count; batch++) {
      int64_t ma = attn_interp_offset(batch, y->rank - 2, y->dims, sa);
      int64_t mb = attn_interp_offset(batch, y->rank - 2, y->dims, sb);
      for (int64_t i = 0; i < m_count; i++) {
        for (int64_t j = 0; j < n_count; j++) {
          int64_t row = (ma * m_count + i) * k_count, col = (mb * n_count + j) * k_count;
          int64_t out = (batch * m_count + i) * n_count + j;
          if (is_int) {
            const int64_t *x = (const int64_t *)pa.data + row, *w = (const int64_t *)pb.data + col;
            int64_t sum = 0;
            for (int64_t k = 0; k < k_count; k++)
              sum = attn_interp_add_sat(sum, attn_interp_mul_sat(x[k], w[k]));
            attn_interp_store_int(y, out, sum);
          } else {
            const double *x = (const double *)pa.data + row, *w = (const double *)pb.data + col;
            double sum = 0.0;
            for (int64_t k = 0; k < k_count; k++)
              sum += x[k] * w[k];
            attn_interp_store(y, out, sum);
          }
        }
      }
    }
  }
  attn_allocator_free(ctx->allocator, pa.data, pa.size_bytes);
  attn_allocator_free(ctx->allocator, pb.data, pb.size_bytes);
  return status;
}
