// Top-k on the CPU: the k largest (or smallest) elements of every slice of an f32 tensor along
// one axis, and their indices, with the reference evaluator's order: larger (or smaller) first,
// NaN counting as the largest, ties to the lower index. Slices run in parallel on the pool.
#ifndef ATTN_RUNTIME_CPU_TOPK_H_
#define ATTN_RUNTIME_CPU_TOPK_H_

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/allocator.h"
#include "runtime/cpu/pool.h"

// `x` is [outer, n, inner] row-major; `values` (f32) and `indices` (i64) are [outer, k, inner].
// 0 <= k <= n. Scratch comes from `allocator` (per thread, n indices). Returns
// ATTN_ERROR_OUT_OF_MEMORY (message in `diag`) or the pool's errors.
attn_status attn_cpu_topk_f32(const float *x, int64_t outer, int64_t n, int64_t inner, int64_t k,
                              bool largest, float *values, int64_t *indices, attn_pool *pool,
                              attn_allocator allocator, attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_RUNTIME_CPU_TOPK_H_
