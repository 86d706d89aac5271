// Reference evaluators of the ops that reduce along axes: softmax and log_softmax (stable: the
// maximum is subtracted first), layernorm (two-pass mean and biased variance), rmsnorm, the
// sum/mean/max/min/argmax reductions and topk. Sums run in double in increasing index order.
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ir/interp_eval.h"

// ---- softmax ---------------------------------------------------------------------------------

attn_status attn_eval_softmax(attn_eval_ctx *ctx) {
  const attn_axis_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *y = &ctx->outputs[0];
  uint32_t axis = attn_interp_axis(attrs->axis, x->rank);
  int64_t outer = attn_interp_dims_product(x, 0, axis), n = x->dims[axis];
  int64_t inner = attn_interp_dims_product(x, axis + 1, x->rank);
  bool is_log = ctx->node->op == ATTN_OP_LOG_SOFTMAX;
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t in = 0; in < inner; in++) {
      int64_t base = o * n * inner + in;
      double max = -(double)INFINITY;
      for (int64_t j = 0; j < n; j++) {
        double v = attn_interp_load(x, base + j * inner);
        max = v > max || isnan(v) ? v : max;
      }
      double sum = 0.0;
      for (int64_t j = 0; j < n; j++)
        sum += exp(attn_interp_load(x, base + j * inner) - max);
      double log_sum = log(sum);
      for (int64_t j = 0; j < n; j++) {
        double shifted = attn_interp_load(x, base + j * inner) - max;
        attn_interp_store(y, base + j * inner, is_log ? shifted - log_sum : exp(shifted) / sum);
      }
    }
  }
  return ATTN_OK;
}

// ---- normalisation ---------------------------------------------------------------------------

attn_status attn_eval_layernorm(attn_eval_ctx *ctx) {
  const attn_norm_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  const attn_tensor *w = ctx->input_count > 1 ? &ctx->inputs[1] : NULL;
  const attn_tensor *b = ctx->input_count > 2 ? &ctx->inputs[2] : NULL;
  attn_tensor *y = &ctx->outputs[0];
  uint32_t axis = attn_interp_axis(attrs->axis, x->rank);
  int64_t outer = attn_interp_dims_product(x, 0, axis);
  int64_t n = attn_interp_dims_product(x, axis, x->rank);
  for (int64_t o = 0; o < outer; o++) {
    int64_t base = o * n;
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++)
      sum += attn_interp_load(x, base + j);
    double mean = sum / (double)n;
    double squares = 0.0;
    for (int64_t j = 0; j < n; j++) {
      double d = attn_interp_load(x, base + j) - mean;
      squares += d * d;
    }
    double inv_std = 1.0 / sqrt(squares / (double)n + attrs->epsilon);
    for (int64_t j = 0; j < n; j++) {
      double v = (attn_interp_load(x, base + j) - mean) * inv_std;
      if (w)
        v *= attn_interp_load(w, j);
      if (b)
        v += attn_interp_load(b, j);
      attn_interp_store(y, base + j, v);
    }
  }
  return ATTN_OK;
}

attn_status attn_eval_rmsnorm(attn_eval_ctx *ctx) {
  const attn_norm_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  const attn_tensor *w = ctx->input_count > 1 ? &ctx->inputs[1] : NULL;
  attn_tensor *y = &ctx->outputs[0];
  uint32_t axis = attn_interp_axis(attrs->axis, x->rank);
  int64_t outer = attn_interp_dims_product(x, 0, axis);
  int64_t n = attn_interp_dims_product(x, axis, x->rank);
  for (int64_t o = 0; o < outer; o++) {
    int64_t base = o * n;
    double squares = 0.0;
    for (int64_t j = 0; j < n; j++) {
      double v = attn_interp_load(x, base + j);
      squares += v * v;
    }
    double inv_rms = 1.0 / sqrt(squares / (double)n + attrs->epsilon);
    for (int64_t j = 0; j < n; j++) {
      double v = attn_interp_load(x, base + j) * inv_rms;
      if (w)
        v *= attn_interp_load(w, j);
      attn_interp_store(y, base + j, v);
    }
  }
  return ATTN_OK;
}

// ---- reductions ------------------------------------------------------------------------------

// Orders two values of one tensor: NaN above everything (and equal to NaN), integers exactly.
static int order(const attn_tensor *t, int64_t i, int64_t j) {
  if (attn_interp_is_int(t->dtype)) {
    int64_t a = attn_interp_load_int(t, i), b = attn_interp_load_int(t, j);
    return (a > b) - (a < b);
  }
  double a = attn_interp_load(t, i), b = attn_interp_load(t, j);
  if (isnan(a) || isnan(b))
    return isnan(a) - isnan(b);
  return (a > b) - (a < b);
}

attn_status attn_eval_reduce(attn_eval_ctx *ctx) {
  const attn_reduce_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *y = &ctx->outputs[0];
  attn_op op = ctx->node->op;
  bool reduced[ATTN_MAX_RANK] = {false};
  for (uint32_t i = 0; i < attrs->axis_count; i++)
    reduced[attn_interp_axis(attrs->axes[i], x->rank)] = true;
  if (attrs->axis_count == 0)
    for (uint32_t d = 0; d < x->rank; d++)
      reduced[d] = true;
  // The kept and the reduced dims of x, each in order, with x's strides.
  int64_t strides[ATTN_MAX_RANK];
  attn_interp_strides(x, strides);
  int64_t kept_dims[ATTN_MAX_RANK], kept_strides[ATTN_MAX_RANK];
  int64_t red_dims[ATTN_MAX_RANK], red_strides[ATTN_MAX_RANK];
  uint32_t kept_rank = 0, red_rank = 0;
  int64_t red_count = 1;
  for (uint32_t d = 0; d < x->rank; d++) {
    if (reduced[d]) {
      red_dims[red_rank] = x->dims[d];
      red_strides[red_rank++] = strides[d];
      red_count *= x->dims[d];
    } else {
      kept_dims[kept_rank] = x->dims[d];
      kept_strides[kept_rank++] = strides[d];
    }
  }
  int64_t out_count = attn_tensor_element_count(y);
  if (red_count == 0 && out_count > 0 && op != ATTN_OP_SUM && op != ATTN_OP_MEAN)
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT, "reduces an empty axis");
  bool is_int = attn_interp_is_int(x->dtype);
  for (int64_t o = 0; o < out_count; o++) {
    int64_t base = attn_interp_offset(o, kept_rank, kept_dims, kept_strides);
    if (op == ATTN_OP_SUM && is_int) {
      int64_t sum = 0;
      for (int64_t r = 0; r < red_count; r++)
        sum = attn_interp_add_sat(
            sum,
            attn_interp_load_int(x, base + attn_interp_offset(r, red_rank, red_dims, red_strides)));
      attn_interp_store_int(y, o, sum);
    } else if (op == ATTN_OP_SUM || op == ATTN_OP_MEAN) {
      double sum = 0.0;
      for (int64_t r = 0; r < red_count; r++)
        sum += attn_interp_load(x, base + attn_interp_offset(r, red_rank, red_dims, red_strides));
      attn_interp_store(y, o, op == ATTN_OP_MEAN ? sum / (double)red_count : sum);
    } else {
      // max, min, argmax: the first element that no later one beats (NaN beats all for max
      // and argmax, and wins min too, so NaN propagates).
      int64_t best = base, best_r = 0;
      for (int64_t r = 1; r < red_count; r++) {
        int64_t at = base + attn_interp_offset(r, red_rank, red_dims, red_strides);
        int cmp = order(x, at, best);
        bool at_is_nan = !is_int && isnan(attn_interp_load(x, at));
        bool best_is_nan = !is_int && isnan(attn_interp_load(x, best));
        bool better = op == ATTN_OP_MIN ? (!best_is_nan && (at_is_nan || cmp < 0)) : cmp > 0;
        if (better) {
          best = at;
          best_r = r;
        }
      }
      if (op == ATTN_OP_ARGMAX)
        attn_interp_store_int(y, o, best_r);
      else if (is_int)
        attn_interp_store_int(y, o, attn_interp_load_int(x, best));
      else
        attn_interp_store(y, o, attn_interp_load(x, best));
    }
  }
  return ATTN_OK;
}

// ---- topk ------------------------------------------------------------------------------------

typedef struct topk_slice {
  const attn_tensor *x;
  int64_t base, stride; // element j of the slice is x[base + j * stride]
  bool largest;
} topk_slice;

// Whether slice element i goes before j: larger (or smaller) first, NaN counting as the largest,
// ties to the lower index.
static bool goes_before(const topk_slice *s, int64_t i, int64_t j) {
  int cmp = order(s->x, s->base + i * s->stride, s->base + j * s->stride);
  if (cmp == 0)
    return i < j;
  return s->largest ? cmp > 0 : cmp < 0;
}

// Stable bottom-up merge sort of `items` (n slice indices), using `scratch` of the same size.
static void sort_indices(const topk_slice *s, int64_t *items, int64_t *scratch, int64_t n) {
  for (int64_t width = 1; width < n; width *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * width) {
      int64_t mid = lo + width < n ? lo + width : n;
      int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      int64_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi)
        scratch[k++] = goes_before(s, items[j], items[i]) ? items[j++] : items[i++];
      while (i < mid)
        scratch[k++] = items[i++];
      while (j < hi)
        scratch[k++] = items[j++];
    }
    memcpy(items, scratch, (size_t)n * sizeof(*items));
  }
}

attn_status attn_eval_topk(attn_eval_ctx *ctx) {
  const attn_topk_attrs *attrs = ctx->attrs;
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *values = &ctx->outputs[0], *indices = &ctx->outputs[1];
  uint32_t axis = attn_interp_axis(attrs->axis, x->rank);
  int64_t n = x->dims[axis], k = attrs->k;
  if (k > n)
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                             "k = %" PRId64 " exceeds the %" PRId64 " elements of axis %u", k, n,
                             axis);
  int64_t outer = attn_interp_dims_product(x, 0, axis);
  int64_t inner = attn_interp_dims_product(x, axis + 1, x->rank);
  size_t size = (size_t)(n ? n : 1) * sizeof(int64_t);
  int64_t *items = attn_allocator_alloc(ctx->allocator, size);
  int64_t *scratch = attn_allocator_alloc(ctx->allocator, size);
  if (!items || !scratch) {
    attn_allocator_free(ctx->allocator, items, size);
    attn_allocator_free(ctx->allocator, scratch, size);
    return attn_interp_error(ctx, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t in = 0; in < inner; in++) {
      topk_slice s = {x, o * n * inner + in, inner, attrs->largest};
      for (int64_t j = 0; j < n; j++)
        items[j] = j;
      sort_indices(&s, items, scratch, n);
      for (int64_t j = 0; j < k; j++) {
        int64_t from = s.base + items[j] * inner, to = (o * k + j) * inner + in;
        if (attn_interp_is_int(x->dtype))
          attn_interp_store_int(values, to, attn_interp_load_int(x, from));
        else
          attn_interp_store(values, to, attn_interp_load(x, from));
        attn_interp_store_int(indices, to, items[j]);
      }
    }
  }
  attn_allocator_free(ctx->allocator, items, size);
  attn_allocator_free(ctx->allocator, scratch, size);
  return ATTN_OK;
}
