// Fuzz target for attn_safetensors_open_memory: any bytes give a validated file or one
// diagnostic. For a file that opens, every tensor's bytes lie inside the input, lookups by name
// agree with the index, and nothing leaks, also when an allocation fails part-way.
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_util.h"
#include "runtime/tensor/safetensors.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

static attn_status open_image(const void *context, attn_allocator allocator, attn_diag *diag) {
  const input *in = context;
  attn_safetensors *file;
  attn_status status =
      attn_safetensors_open_memory(in->data, in->size, "fuzz.safetensors", allocator, diag, &file);
  if (status != ATTN_OK)
    return status;
  unsigned sum = 0;
  for (size_t i = 0; i < attn_safetensors_count(file); i++) {
    attn_tensor view, found;
    size_t size_bytes, index;
    attn_safetensors_get(file, i, &view);
    const char *name = attn_safetensors_name(file, i);
    if (!attn_tensor_size_bytes(&view, &size_bytes) || !attn_safetensors_find(file, name, &found) ||
        !attn_safetensors_find_index(file, name, &index) || index != i || found.data != view.data)
      abort();
    const unsigned char *bytes = view.data;
    if (size_bytes > 0 && (bytes < in->data || bytes + size_bytes > in->data + in->size))
      abort();
    for (size_t b = 0; b < size_bytes; b++)
      sum += bytes[b];
  }
  (void)sum;
  attn_safetensors_close(file);
  return ATTN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  attn_fuzz_check(open_image, &in, size);
  return 0;
}
