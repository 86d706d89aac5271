// The pass registry and the default pipeline. A new pass is a file passes/NAME.c, a
// declaration in pass.h and a row here.
#include <string.h>

#include "passes/pass.h"

static const attn_pass_option_info fold_constants_options[] = {
    {"max-bytes", ATTN_PASS_OPTION_INT,
     "fold only nodes whose every output fits in this many bytes (default 1048576)"},
};

static const attn_pass_option_info recognize_attention_options[] = {
    {"min-fill", ATTN_PASS_OPTION_FLOAT,
     "a where() fill or an additive mask value at or below this hides its key (default -1e4)"},
};

static const attn_pass_info registry[] = {
    {"dce", "remove nodes no graph output depends on", attn_pass_dce, NULL, 0},
    {"specialize-shapes", "substitute the symbolic dims bound with -D by their values",
     attn_pass_specialize_shapes, NULL, 0},
    {"canonicalize", "simplify algebraic identities and shape ops", attn_pass_canonicalize, NULL,
     0},
    {"fold-constants", "evaluate nodes whose inputs are constant", attn_pass_fold_constants,
     fold_constants_options, 1},
    {"cse", "merge nodes that compute the same values", attn_pass_cse, NULL, 0},
    {"recognize-attention", "fuse unfused softmax attention subgraphs into attention nodes",
     attn_pass_recognize_attention, recognize_attention_options, 1},
    {"partition", "group nodes into kernels and order them kernel by kernel", attn_pass_partition,
     NULL, 0},
    {"plan-memory", "assign buffers to values that cross kernels, reusing dead ones",
     attn_pass_plan_memory, NULL, 0},
};

// The default pipeline, in execution order.
static const char default_pipeline[] =
    "specialize-shapes,canonicalize,fold-constants,cse,recognize-attention,canonicalize,dce,"
    "partition,plan-memory";

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
