// safetensors files, mapped read-only with mmap. The JSON header is parsed with the runtime's
// own strict reader (json.h) and checked completely before any tensor is handed out: dtypes
// (F32 F16 BF16 I64 I32 I8 BOOL), shapes whose byte size overflows, offsets past the end or
// overlapping, tensors not aligned to their element size, duplicate names or fields, a header
// length larger than the file. Every failure is one diagnostic at the file (line 0) naming the
// tensor. Tensors are views into the mapping: read-only (writing one faults), valid until the
// file is closed. A file truncated by someone else while mapped raises SIGBUS on access; that is
// outside what a reader can check.
// Thread safety: an open file may be read from any number of threads, and files may be opened
// concurrently: nothing is shared between them.
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
bool attn_safetensors_find(const attn_safetensors *file, const char *name, attn_tensor *out_view);
// Finds a tensor's index by name (O(1)). Returns false when absent.
bool attn_safetensors_find_index(const attn_safetensors *file, const char *name, size_t *out_index);
// The path (or, for a memory image, the name) the file was opened with; borrowed from `file`.
const char *attn_safetensors_path(const attn_safetensors *file);

// The dtype's name in a safetensors header ("F32", "BF16", ...), or NULL for none.
const char *attn_safetensors_dtype_name(attn_dtype dtype);

// ---- writing (safetensors_write.c, library attn_tensor_write) ----

// A named tensor to write.
typedef struct attn_named_tensor {
  const char *name;
  attn_tensor tensor;
} attn_named_tensor;

// Writes a safetensors file. The header lists the tensors sorted by name, as the reference
// writer does; the data is laid out by decreasing element size (then in the given order) so
// every tensor is aligned to its element size. Names must be non-empty, unique, valid UTF-8 and
// not "__metadata__". Errors: ATTN_ERROR_INVALID_ARGUMENT (a bad tensor or name), ATTN_ERROR_IO,
// ATTN_ERROR_OUT_OF_MEMORY; a partly written file is removed.
attn_status attn_safetensors_write(const char *path, const attn_named_tensor *tensors,
                                   size_t tensor_count, attn_allocator allocator,
                                   attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_RUNTIME_TENSOR_SAFETENSORS_H_
