// Fuzz target for attn_onnx_import: any bytes give a verified graph and its weight set, or one
// diagnostic, and nothing leaks, also when an allocation fails part-way. External data is refused
// (no base directory), so the input is all the importer reads.
#include <stdlib.h>

#include "frontend/onnx/onnx.h"
#include "fuzz.h"
#include "fuzz_util.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

static attn_status import_image(const void *context, attn_allocator allocator, attn_diag *diag) {
  const input *in = context;
  attn_graph *graph;
  attn_weights *weights;
  attn_status status =
      attn_onnx_import(in->data, in->size, "fuzz.onnx", NULL, allocator, diag, &graph, &weights);
  if (status != ATTN_OK)
    return status;
  if (!graph || !weights || attn_graph_verify(graph) != ATTN_OK)
    abort();
  attn_graph_destroy(graph);
  attn_weights_close(weights);
  return ATTN_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  attn_fuzz_check(import_image, &in, size);
  return 0;
}
