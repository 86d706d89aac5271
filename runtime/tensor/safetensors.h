// safetensors files, mapped read-only with mmap. The JSON header is parsed with cJSON
// and checked completely before any tensor is handed out: dtypes (F32 F16 BF16 I64 I32 I8
// BOOL), shapes whose byte size overflows, offsets past the end or overlapping, a header
// length larger than the file. Tensors are views into the mapping.
#ifndef ATTN_RUNTIME_TENSOR_SAFETENSORS_H_
#define ATTN_RUNTIME_TENSOR_SAFETENSORS_H_

#include <stdbool.h>
#include <stddef.h>

#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"

typedef struct attn_safetensors attn_safetensors;

// Maps and validates `path`. On failure nothing is left open and `diag` says why.
attn_status attn_safetensors_open(const char *path, attn_allocator allocator, attn_diag *diag,
                                  attn_safetensors **out_file) ATTN_MUST_USE;
// Validates an in-memory image (borrowed; must outlive the result). `name` is for messages.
attn_status attn_safetensors_open_memory(const void *bytes, size_t size_bytes, const char *name,
                                         attn_allocator allocator, attn_diag *diag,
                                         attn_safetensors **out_file) ATTN_MUST_USE;
// Unmaps and frees. NULL is a no-op.
void attn_safetensors_close(attn_safetensors *file);

size_t attn_safetensors_count(const attn_safetensors *file);
// Name of tensor `index` (in file order); borrowed from `file`.
const char *attn_safetensors_name(const attn_safetensors *file, size_t index);
// A view of tensor `index`, valid while `file` is open.
void attn_safetensors_get(const attn_safetensors *file, size_t index, attn_tensor *out_view);
// Finds a tensor by name. Returns false when absent.
bool attn_safetensors_find(const attn_safetensors *file, const char *name,
                           attn_tensor *out_view);

// A named tensor to write.
typedef struct attn_named_tensor {
  const char *name;
  attn_tensor tensor;
} attn_named_tensor;

// Writes a safetensors file (tensors in the given order, header sorted as the format asks).
attn_status attn_safetensors_write(const char *path, const attn_named_tensor *tensors,
                                   size_t tensor_count, attn_allocator allocator,
                                   attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_RUNTIME_TENSOR_SAFETENSORS_H_
