// Fuzz target for attn_artifact_open_memory: any bytes give an artifact or one diagnostic. For
// an artifact that opens, its plan validates again, every dim evaluates (or refuses) without
// looping, and the code and every constant lie inside the input. External weights are looked
// for in a directory that does not exist, so the input alone decides the result.
//
// Each input is opened twice: as given, and with its header checksum made right and the
// constants' checksums skipped, so that mutations reach the header's decoding and the plan's
// checks instead of stopping at a checksum mismatch.
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_util.h"
#include "runtime/artifact/artifact.h"
#include "runtime/artifact/format.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
  bool skip_constant_checksums;
} input;

static bool inside(const input *in, const void *bytes, size_t size) {
  const uint8_t *p = bytes;
  return size == 0 ||
         (p >= in->data && size <= in->size && p - in->data <= (ptrdiff_t)(in->size - size));
}

static attn_status open_image(const void *context, attn_allocator allocator, attn_diag *diag) {
  const input *in = context;
  attn_artifact *artifact;
  attn_artifact_open_options options = {.skip_constant_checksums = in->skip_constant_checksums};
  attn_status status = attn_artifact_open_memory(in->data, in->size, "/nonexistent-attnx-fuzz",
                                                 &options, allocator, diag, &artifact);
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
  input in = {data, size, false};
  attn_fuzz_check(open_image, &in, size);

  if (size < ATTN_ARTIFACT_PREFIX_SIZE)
    return 0;
  uint64_t header_size = 0;
  for (int i = 0; i < 8; i++)
    header_size |= (uint64_t)data[16 + i] << (8 * i);
  if (header_size > size - ATTN_ARTIFACT_PREFIX_SIZE)
    return 0;
  uint8_t *fixed = malloc(size);
  if (!fixed)
    abort();
  memcpy(fixed, data, size);
  uint64_t checksum = attn_artifact_checksum(fixed + ATTN_ARTIFACT_PREFIX_SIZE, header_size);
  for (int i = 0; i < 8; i++)
    fixed[24 + i] = (uint8_t)(checksum >> (8 * i));
  in = (input){fixed, size, true};
  attn_fuzz_check(open_image, &in, size);
  free(fixed);
  return 0;
}
