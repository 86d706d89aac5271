// Fuzz target for attn_artifact_open_memory: any bytes give an artifact or one diagnostic. For
// an artifact that opens, its plan validates again, every dim evaluates (or refuses) without
// looping, and the code and every constant lie inside the input. External weights are looked
// for in a directory that does not exist, so the input alone decides the result.
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_util.h"
#include "runtime/artifact/artifact.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

static bool inside(const input *in, const void *bytes, size_t size) {
  const uint8_t *p = bytes;
  return size == 0 ||
         (p >= in->data && size <= in->size && p - in->data <= (ptrdiff_t)(in->size - size));
}

static attn_status open_image(const void *context, attn_allocator allocator, attn_diag *diag) {
  const input *in = context;
  attn_artifact *artifact;
  attn_status status = attn_artifact_open_memory(in->data, in->size, "/nonexistent-attnx-fuzz",
                                                 NULL, allocator, diag, &artifact);
  if (status != ATTN_OK)
    return status;
  const attn_plan *plan = attn_artifact_plan(artifact);
  if (attn_plan_validate(plan, diag) != ATTN_OK)
    abort();
  // Every symbol bound to 3: enough to reach every operation of every expression.
  int64_t *symbols = calloc(plan->symbol_count + 1, sizeof(int64_t));
  if (!symbols)
    abort();
  for (uint32_t i = 0; i < plan->symbol_count; i++)
    symbols[i] = 3;
  for (uint32_t d = 0; d < plan->dim_count; d++) {
    int64_t value;
    (void)attn_plan_dim_eval(plan, -(int64_t)d - 1, symbols, &value);
  }
  free(symbols);
  for (uint32_t c = 0; c < plan->constant_count; c++) {
    const attn_plan_constant *constant = &plan->constants[c];
    attn_tensor type = {.dtype = constant->dtype, .rank = constant->rank};
    memcpy(type.dims, constant->dims, sizeof(type.dims));
    size_t size;
    if (!attn_tensor_size_bytes(&type, &size) || !inside(in, constant->data, size))
      abort();
  }
  attn_artifact_cpu_code cpu = attn_artifact_cpu(artifact);
  if (!inside(in, cpu.shared_object, cpu.shared_object_size) || !cpu.target_triple ||
      !attn_artifact_model_name(artifact))
    abort();
  attn_artifact_close(artifact);
  return ATTN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  attn_fuzz_check(open_image, &in, size);
  return 0;
}
