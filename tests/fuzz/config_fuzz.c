// Fuzz target for attn_config_parse (config.json): any text gives a config or one diagnostic,
// and lookups on what parsed never crash. Nothing may leak, also when an allocation fails.
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_util.h"
#include "runtime/tensor/weights.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

static attn_status parse(const void *context, attn_allocator allocator, attn_diag *diag) {
  const input *in = context;
  attn_config *config;
  attn_status status =
      attn_config_parse((const char *)in->data, in->size, "fuzz.json", allocator, diag, &config);
  if (status != ATTN_OK)
    return status;
  static const char *const paths[] = {"a", "a.b",  "a.b.c",      "",
                                      ".", "a..b", "model_type", "rope_parameters.rope_theta"};
  for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
    attn_config_value value = attn_config_get(config, paths[i]);
    if (value.kind == ATTN_CONFIG_STRING && !value.string)
      abort();
    if (value.is_integer && value.kind != ATTN_CONFIG_NUMBER)
      abort();
  }
  // A path taken from the input itself reaches keys the fixed ones do not.
  char path[33];
  size_t length = in->size < 32 ? in->size : 32;
  memcpy(path, in->data, length);
  path[length] = '\0';
  (void)attn_config_get(config, path);
  attn_config_destroy(config);
  return ATTN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  attn_fuzz_check(parse, &in, size);
  return 0;
}
