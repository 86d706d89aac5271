// The pass registry and the default pipeline. A new pass is a file passes/NAME.c, a
// declaration in pass.h and a row here.
#include <string.h>

#include "passes/pass.h"

static const attn_pass_info registry[] = {
    {"dce", "remove nodes no graph output depends on", attn_pass_dce, NULL, 0},
};

// The default pipeline, in execution order.
static const char default_pipeline[] = "dce";

const attn_pass_info *attn_pass_registry(uint32_t *out_count) {
  *out_count = sizeof(registry) / sizeof(registry[0]);
  return registry;
}

const attn_pass_info *attn_pass_find(const char *name, size_t length) {
  for (size_t i = 0; i < sizeof(registry) / sizeof(registry[0]); i++)
    if (strlen(registry[i].name) == length && memcmp(registry[i].name, name, length) == 0)
      return &registry[i];
  return NULL;
}

const char *attn_pipeline_default_text(void) {
  return default_pipeline;
}
