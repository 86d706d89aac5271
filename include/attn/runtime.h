// The attnc runtime's public C API: element types and host tensors.
// The runtime links nothing of the compiler; a deployed program needs only this.
#ifndef ATTN_INCLUDE_ATTN_RUNTIME_H_
#define ATTN_INCLUDE_ATTN_RUNTIME_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "attn/status.h"

#ifdef __cplusplus
extern "C" {
#endif

// The largest rank a tensor may have. Types stay plain values because of it.
#define ATTN_MAX_RANK 8

typedef enum attn_dtype {
  ATTN_DTYPE_F32,
  ATTN_DTYPE_F16,
  ATTN_DTYPE_BF16,
  ATTN_DTYPE_I64,
  ATTN_DTYPE_I32,
  ATTN_DTYPE_I8,
  ATTN_DTYPE_BOOL,
  ATTN_DTYPE_COUNT
} attn_dtype;

// "f32", "f16", "bf16", "i64", "i32", "i8", "bool".
ATTN_API const char *attn_dtype_name(attn_dtype dtype);
// Bytes of one element.
ATTN_API size_t attn_dtype_size(attn_dtype dtype);
// Parses a name from attn_dtype_name. Returns false for anything else.
ATTN_API bool attn_dtype_from_name(const char *name, size_t length, attn_dtype *out_dtype);
ATTN_API bool attn_dtype_is_float(attn_dtype dtype);

#ifdef __cplusplus
}
#endif

#endif // ATTN_INCLUDE_ATTN_RUNTIME_H_
