// Top-k by insertion into a sorted list of the k best so far: each element is compared with the
// worst kept one first, so most elements of a long slice cost one comparison.
#include "runtime/cpu/topk.h"

#include <math.h>

typedef struct topk_call {
  const float *x;
  int64_t n, inner, k;
  bool largest;
  float *values;
  int64_t *indices;
  int64_t **scratch; // one list of k indices per thread
} topk_call;

// Whether element i (value a) goes before element j (value b).
static bool goes_before(float a, int64_t i, float b, int64_t j, bool largest) {
  bool a_nan = isnan(a), b_nan = isnan(b);
  if (a_nan || b_nan) {
    if (a_nan && b_nan)
      return i < j;
    return largest ? a_nan : b_nan; // NaN is the largest
  }
  if (a == b)
    return i < j;
  return largest ? a > b : a < b;
}

static attn_status topk_slices(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  const topk_call *c = ctx;
  int64_t *best = c->scratch[thread_index];
  for (int64_t slice = begin; slice < end; slice++) {
    int64_t o = slice / c->inner, in = slice % c->inner;
    const float *row = c->x + o * c->n * c->inner + in;
    int64_t count = 0;
    for (int64_t j = 0; j < c->n && c->k > 0; j++) {
      float v = row[j * c->inner];
      if (count == c->k) {
        int64_t w = best[count - 1];
        if (!goes_before(v, j, row[w * c->inner], w, c->largest))
          continue;
        count--;
      }
      int64_t at = count;
      while (at > 0 && goes_before(v, j, row[best[at - 1] * c->inner], best[at - 1], c->largest)) {
        best[at] = best[at - 1];
        at--;
      }
      best[at] = j;
      count++;
    }
    for (int64_t r = 0; r < c->k; r++) {
      int64_t to = (o * c->k + r) * c->inner + in;
      c->values[to] = row[best[r] * c->inner];
      c->indices[to] = best[r];
    }
  }
  return ATTN_OK;
}

attn_status attn_cpu_topk_f32(const float *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                              bool largest, float *values, int64_t *indices, attn_pool *pool,
                              attn_allocator allocator, attn_diag *diag) {
  uint32_t threads = attn_pool_thread_count(pool);
  size_t list_bytes = (size_t)(k > 0 ? k : 1) * sizeof(int64_t);
  int64_t **scratch = attn_allocator_calloc(allocator, threads, sizeof(*scratch));
  attn_status status = scratch ? ATTN_OK : ATTN_ERROR_OUT_OF_MEMORY;
  for (uint32_t t = 0; t < threads && status == ATTN_OK; t++)
    if (!(scratch[t] = attn_allocator_alloc(allocator, list_bytes)))
      status = ATTN_ERROR_OUT_OF_MEMORY;
  if (status == ATTN_OK) {
    topk_call call = {x, n, inner, k, largest, values, indices, scratch};
    int64_t slices = outer * inner;
    int64_t grain = n * k > 0 ? 1 + 65536 / (n * (k < 8 ? 1 : k / 8)) : slices;
    status = attn_pool_parallel_for(pool, slices, grain, topk_slices, &call);
  } else {
    attn_diag_error(diag, ATTN_LOC_NONE, status, "topk: out of memory");
  }
  for (uint32_t t = 0; scratch && t < threads; t++)
    attn_allocator_free(allocator, scratch[t], list_bytes);
  attn_allocator_free(allocator, scratch, threads * sizeof(*scratch));
  return status;
}
