// Fuzz target for the .attnb reader: any bytes give a verified graph or one diagnostic naming
// the file. A graph that reads prints, is written again, and reads back to the same printed
// text. Nothing may leak, also when an allocation fails part-way.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/attnb/attnb.h"
#include "fuzz.h"
#include "fuzz_util.h"
#include "ir/print.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

// Prints `graph` into a malloc'ed buffer.
static attn_status print_to_text(const attn_graph *graph, char **out_text, size_t *out_size) {
  *out_text = NULL;
  *out_size = 0;
  FILE *out = open_memstream(out_text, out_size);
  if (!out)
    abort();
  attn_status status = attn_graph_print(graph, out);
  if (fclose(out) != 0)
    abort();
  return status;
}

static attn_status run(const void *context, attn_allocator allocator, attn_diag *diag) {
  const input *in = context;
  attn_graph *graph = NULL, *again = NULL;
  void *bytes = NULL;
  size_t size = 0;
  char *first = NULL, *second = NULL;
  size_t first_size = 0, second_size = 0;
  attn_status status =
      attn_attnb_read_memory("fuzz.attnb", in->data, in->size, allocator, diag, &graph);
  if (status != ATTN_OK) {
    // One error, at the file.
    if (diag->error_count != 1 || !diag->items[diag->count - 1].loc.file ||
        strcmp(diag->items[diag->count - 1].loc.file, "fuzz.attnb") != 0)
      abort();
    return status;
  }
  if (attn_graph_verify(graph) != ATTN_OK)
    abort(); // the reader returned a graph the verifier rejects
  status = print_to_text(graph, &first, &first_size);
  if (status == ATTN_OK)
    status = attn_attnb_write_memory(graph, allocator, diag, &bytes, &size);
  if (status == ATTN_OK) {
    status = attn_attnb_read_memory("again.attnb", bytes, size, allocator, diag, &again);
    if (status != ATTN_OK && status != ATTN_ERROR_OUT_OF_MEMORY)
      abort(); // what the writer wrote does not read back
  }
  if (status == ATTN_OK)
    status = print_to_text(again, &second, &second_size);
  if (status == ATTN_OK && (first_size != second_size || memcmp(first, second, first_size) != 0))
    abort(); // the round trip changed the graph
  free(first);
  free(second);
  if (bytes)
    attn_allocator_free(allocator, bytes, size ? size : 1);
  attn_graph_destroy(again);
  attn_graph_destroy(graph);
  return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  attn_fuzz_check(run, &in, size);
  return 0;
}
