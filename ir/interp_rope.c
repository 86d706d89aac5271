// Reference evaluator of rope: rotary position embedding of x[..., T, D] at integer positions
// [T] or [B, T]. Pair i (0 ≤ i < rotary_dim/2) turns by pos * theta^(-2i/rotary_dim), computed in
// double; channels from rotary_dim on pass through.
#include <math.h>

#include "ir/interp_eval.h"

attn_status attn_eval_rope(attn_eval_ctx *ctx) {
  const attn_rope_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0], *positions = &ctx->inputs[1];
  attn_tensor *y = &ctx->outputs[0];
  int64_t t_count = x->dims[x->rank - 2], d_count = x->dims[x->rank - 1];
  int64_t rotary = attrs->rotary_dim ? attrs->rotary_dim : d_count;
  int64_t half = rotary / 2;
  int64_t row_count = attn_interp_dims_product(x, 0, x->rank - 1);
  // With [B, T] positions, rows of batch b are the b-th run of rows_per_batch rows.
  int64_t rows_per_batch = x->rank > 0 && x->dims[0] ? row_count / x->dims[0] : 1;
  for (int64_t row = 0; row < row_count; row++) {
    int64_t t = row % t_count;
    int64_t p = positions->rank == 1 ? t : (row / rows_per_batch) * t_count + t;
    double pos = (double)attn_interp_load_int(positions, p);
    int64_t base = row * d_count;
    for (int64_t i = 0; i < half; i++) {
      double angle = pos * pow(attrs->theta, -2.0 * (double)i / (double)rotary);
      double c = cos(angle), s = sin(angle);
      int64_t first = attrs->style == ATTN_ROPE_HALF ? i : 2 * i;
      int64_t second = attrs->style == ATTN_ROPE_HALF ? i + half : 2 * i + 1;
      double x1 = attn_interp_load(x, base + first), x2 = attn_interp_load(x, base + second);
      attn_interp_store(y, base + first, x1 * c - x2 * s);
      attn_interp_store(y, base + second, x2 * c + x1 * s);
    }
    for (int64_t j = rotary; j < d_count; j++)
      attn_interp_store(y, base + j, attn_interp_load(x, base + j));
  }
  return ATTN_OK;
}
