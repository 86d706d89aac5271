// Fuzz target for the .attn front end: any text gives a verified graph or diagnostics, and a
// graph that parsed prints, parses back and prints the same text again. config.* reads a small
// fixed config. Nothing may leak, also when an allocation fails part-way. The dictionary
// tests/fuzz/attn_parse.dict (-dict=...) gets the fuzzer past the keywords much sooner.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/parse.h"
#include "fuzz.h"
#include "fuzz_util.h"
#include "ir/print.h"

typedef struct input {
  const uint8_t *data;
  size_t size;
} input;

static const char config_json[] =
    "{\"n_embd\": 16, \"n_head\": 4, \"n_layer\": 2, \"eps\": 1e-5, \"act\": \"tanh\","
    " \"tied\": true, \"none\": null, \"rope_parameters\": {\"rope_theta\": 10000.0},"
    " \"id2label\": {\"0\": \"a\", \"1\": \"b\"}, \"sizes\": [1, 2, 3]}";

// Prints `graph` into a malloc'ed buffer; ATTN_ERROR_OUT_OF_MEMORY when printing runs out.
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
  attn_config *config = NULL;
  attn_status status =
      attn_config_parse(config_json, strlen(config_json), "config.json", allocator, diag, &config);
  if (status != ATTN_OK)
    return status;
  // Small limits keep each input fast; they are errors like any other.
  attn_parse_options options = {.config = config, .max_nodes = 1 << 12, .max_steps = 1 << 18};
  attn_graph *graph = NULL, *again = NULL;
  char *first = NULL, *second = NULL;
  size_t first_size = 0, second_size = 0;
  status = attn_parse_text("fuzz.attn", (const char *)in->data, in->size, &options, allocator, diag,
                           &graph);
  if (status == ATTN_OK && attn_graph_verify(graph) != ATTN_OK)
    abort(); // the parser returned a graph the verifier rejects
  if (status == ATTN_OK)
    status = print_to_text(graph, &first, &first_size);
  if (status == ATTN_OK) {
    status = attn_parse_text("printed.attn", first, first_size, &options, allocator, diag, &again);
    if (status != ATTN_OK && status != ATTN_ERROR_OUT_OF_MEMORY)
      abort(); // the printed text does not parse back
  }
  if (status == ATTN_OK)
    status = print_to_text(again, &second, &second_size);
  if (status == ATTN_OK && (first_size != second_size || memcmp(first, second, first_size) != 0))
    abort(); // print → parse → print is not stable
  free(first);
  free(second);
  attn_graph_destroy(again);
  attn_graph_destroy(graph);
  attn_config_destroy(config);
  return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  input in = {data, size};
  attn_fuzz_check(run, &in, size);
  return 0;
}
