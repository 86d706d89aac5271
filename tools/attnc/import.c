// attnc import: an ONNX model to a .attn model description, and its initializers to a
// safetensors file the description's weights bind to (by initializer name).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx.h"
#include "ir/print.h"
#include "runtime/tensor/safetensors.h"
#include "tools/attnc/cli.h"

static const char usage[] =
    "usage: attnc import MODEL.onnx -o MODEL.attn [--weights-out WEIGHTS.safetensors]\n"
    "\n"
    "Imports an ONNX model (opsets 13-21; docs/onnx.md lists the ops) and writes its graph as a\n"
    ".attn model description. --weights-out writes the initializers the graph reads, named as\n"
    "in the ONNX file, so that `attnc run MODEL.attn -w WEIGHTS.safetensors` runs it.\n"
    "\n"
    "  -o FILE             the .attn file to write\n"
    "  --weights-out FILE  the safetensors file to write the weights to\n";

// Writes every tensor of `weights` to a safetensors file at `path`.
static attn_status write_weights(const attn_weights *weights, const char *path, attn_diag *diag) {
  size_t count = attn_weights_count(weights);
  attn_named_tensor *tensors = calloc(count ? count : 1, sizeof(*tensors));
  if (!tensors)
    return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (size_t i = 0; i < count; i++) {
    tensors[i].name = attn_weights_name(weights, i);
    (void)attn_weights_find(weights, tensors[i].name, &tensors[i].tensor, NULL);
  }
  attn_status status = attn_safetensors_write(path, tensors, count, attn_allocator_system(), diag);
  free(tensors);
  return status;
}

static attn_status write_graph(attn_graph *graph, const char *path, attn_diag *diag) {
  FILE *out = fopen(path, "w");
  if (!out)
    return attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_IO, "cannot write");
  attn_status status = attn_graph_print(graph, out);
  if (fclose(out) != 0 && status == ATTN_OK)
    status = attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_IO, "cannot write");
  return status;
}

int attn_tool_import(int argc, char **argv) {
  const char *output = NULL, *weights_out = NULL, *model = NULL;
  const attn_cli_option options[] = {
      {.flag = "-o", .out_value = &output},
      {.flag = "--weights-out", .out_value = &weights_out},
  };
  switch (attn_cli_parse("import", usage, argc, argv, options, 2, &model)) {
  case ATTN_CLI_PARSED:
    break;
  case ATTN_CLI_HELP_SHOWN:
    return ATTN_EXIT_OK;
  case ATTN_CLI_BAD_USAGE:
    return ATTN_EXIT_USAGE;
  }
  if (!output)
    return attn_cli_usage_error("import", "-o FILE is required");
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_graph *graph = NULL;
  attn_weights *weights = NULL;
  attn_status status = attn_onnx_import_file(model, allocator, &diag, &graph, &weights);
  if (status == ATTN_OK)
    status = write_graph(graph, output, &diag);
  if (status == ATTN_OK && weights_out)
    status = write_weights(weights, weights_out, &diag);
  attn_diag_write(&diag, stderr);
  attn_graph_destroy(graph);
  attn_weights_close(weights);
  attn_diag_deinit(&diag);
  return status == ATTN_OK ? ATTN_EXIT_OK : ATTN_EXIT_ERROR;
}
