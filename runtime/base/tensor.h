// Host tensors: a dtype, a shape and a pointer to dense row-major data.
// An attn_tensor is a plain value. Whether it owns its data is the holder's business:
// attn_tensor_alloc'ed tensors are released with attn_tensor_free, views (into an mmap'd
// safetensors file, say) are not.
#ifndef ATTN_RUNTIME_BASE_TENSOR_H_
#define ATTN_RUNTIME_BASE_TENSOR_H_

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "attn/runtime.h"
#include "runtime/base/allocator.h"

typedef struct attn_tensor {
  attn_dtype dtype;
  uint32_t rank;
  int64_t dims[ATTN_MAX_RANK];
  void *data;
} attn_tensor;

// Number of elements; false when it overflows int64 or a dim is negative.
bool attn_shape_element_count(uint32_t rank, const int64_t *dims, int64_t *out_count);
// Number of bytes of the data; false on overflow or a negative dim.
bool attn_tensor_size_bytes(const attn_tensor *tensor, size_t *out_size_bytes);
int64_t attn_tensor_element_count(const attn_tensor *tensor);

// Allocates zero-filled data for a tensor of the given type. On failure `out_tensor->data` is
// NULL and the status is ATTN_ERROR_OUT_OF_MEMORY (or INVALID_ARGUMENT for a bad shape).
attn_status attn_tensor_alloc(attn_allocator allocator, attn_dtype dtype, uint32_t rank,
                              const int64_t *dims, attn_tensor *out_tensor) ATTN_MUST_USE;
// The same without zero-filling, for a tensor that is about to be written whole.
attn_status attn_tensor_alloc_uninit(attn_allocator allocator, attn_dtype dtype, uint32_t rank,
                                     const int64_t *dims, attn_tensor *out_tensor) ATTN_MUST_USE;
// Frees data from attn_tensor_alloc. No-op when data is NULL.
void attn_tensor_free(attn_allocator allocator, attn_tensor *tensor);

// Element `index` (flat, row-major) read as a double / written from a double, converting
// from and to the tensor's dtype (float → integer truncates toward zero, bool is != 0).
double attn_tensor_get_f64(const attn_tensor *tensor, int64_t index);
void attn_tensor_set_f64(attn_tensor *tensor, int64_t index, double value);

// Writes "f32[2, 3]" into `buffer`.
void attn_tensor_format_type(attn_dtype dtype, uint32_t rank, const int64_t *dims, char *buffer,
                             size_t buffer_size);

// Copies the elements of `from` into `to` (the same element count), converting each to `to`'s
// dtype as attn_tensor_set_f64 does: a bf16 weight into an f32 one, i32 ids into i64.
void attn_tensor_convert(const attn_tensor *from, attn_tensor *to);

// Statistics of a tensor's elements, as doubles: min, max, mean and standard deviation over the
// finite ones (min +inf and max -inf when there is none).
typedef struct attn_tensor_stats {
  int64_t count, finite, nans;
  double min, max, mean, std;
} attn_tensor_stats;

attn_tensor_stats attn_tensor_get_stats(const attn_tensor *tensor);

// Prints "  [v0, v1, ...]": the first `count` values, then ", ..." when there are more.
void attn_tensor_print_values(FILE *out, const attn_tensor *tensor, int64_t count);

// Prints "NAME: f32[2, 3]", then min, max and mean of the finite elements (and how many are not
// finite), then the first 8 values.
void attn_tensor_print_summary(FILE *out, const char *name, const attn_tensor *tensor);

// IEEE half and bfloat16 conversions (round to nearest even).
float attn_f16_to_f32(uint16_t bits);
uint16_t attn_f32_to_f16(float value);
float attn_bf16_to_f32(uint16_t bits);
uint16_t attn_f32_to_bf16(float value);

#endif // ATTN_RUNTIME_BASE_TENSOR_H_
