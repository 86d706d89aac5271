// NumPy .npy files (format versions 1.0, 2.0 and 3.0).
// Reading accepts every dtype attnc has except bf16, which NumPy lacks (f4 f2 i8 i4 i1 b1, in
// either byte order), converts big-endian data to host order and Fortran-ordered arrays to
// row-major. Anything else is refused with a message naming the file and the field.
#ifndef ATTN_RUNTIME_TENSOR_NPY_H_
#define ATTN_RUNTIME_TENSOR_NPY_H_

#include <stddef.h>

#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"

// Parses an in-memory .npy image. On success `out_tensor` owns data allocated with
// `allocator` (release with attn_tensor_free). `name` is used in messages only.
attn_status attn_npy_parse(const void *bytes, size_t size_bytes, const char *name,
                           attn_allocator allocator, attn_diag *diag,
                           attn_tensor *out_tensor) ATTN_MUST_USE;

// Reads the file at `path`; ATTN_ERROR_IO when it cannot be read.
attn_status attn_npy_read(const char *path, attn_allocator allocator, attn_diag *diag,
                          attn_tensor *out_tensor) ATTN_MUST_USE;

// Writes `tensor` as a version 1.0 little-endian C-order file. bf16 is written as '<u2'
// raw bits (NumPy has no bfloat16) with a warning in `diag`.
attn_status attn_npy_write(const char *path, const attn_tensor *tensor,
                           attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_RUNTIME_TENSOR_NPY_H_
