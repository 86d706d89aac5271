// Fuzz target for attn_npy_parse: any bytes give a tensor or one diagnostic; never a crash, a
// read outside the input or a leak, also when an allocation fails part-way.
#include <stdlib.h>

#include "fuzz.h"
#include "fuzz_util.h"
#include "runtime/tensor/npy.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

static attn_status parse(const void *context, attn_allocator allocator, attn_diag *diag) {
  const input *in = context;
  attn_tensor tensor;
  attn_status status = attn_npy_parse(in->data, in->size, "fuzz.npy", allocator, diag, &tensor);
  if (status != ATTN_OK)
    return status;
  size_t size_bytes;
  if (tensor.rank > ATTN_MAX_RANK || !attn_tensor_size_bytes(&tensor, &size_bytes) ||
      size_bytes > in->size)
    abort();
  // Read every byte so sanitizers see the whole array; bools must be normalised.
  const unsigned char *bytes = tensor.data;
  for (size_t i = 0; i < size_bytes; i++)
    if (tensor.dtype == ATTN_DTYPE_BOOL && bytes[i] > 1)
      abort();
  attn_tensor_free(allocator, &tensor);
  return ATTN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  attn_fuzz_check(parse, &in, size);
  return 0;
}
