// `attnc init-weights`: deterministic random weights for every weight a model reads, written
// as one safetensors file. Values depend only on the seed, the tensor's name and the element
// index (a counter-based generator in integer and exact double arithmetic), so every machine
// writes the same bytes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/allocator.h"
#include "runtime/tensor/safetensors.h"
#include "tools/attnc/cli.h"

static const char usage[] =
    "usage: attnc init-weights MODEL -o FILE.safetensors [--config CONFIG.json] [--seed N]\n"
    "\n"
    "Writes deterministic random values for every weight MODEL (.attn or .attnb) reads, under\n"
    "the first name of each weight() call. Matrices and biases get normal-ish values of std 0.02,\n"
    "norm weights (rank 1, named *ln*/*norm* ...weight) 1 + that. A weight with fallback\n"
    "names (a tied lm_head) is left out when a fallback is written anyway, unless the config\n"
    "sets tie_word_embeddings to false. The config is not copied beside the output.\n"
    "\n"
    "  -o FILE           the safetensors file to write\n"
    "  --config FILE     a config.json feeding config.* in MODEL\n"
    "  --seed N          the seed (a non-negative integer; default 0)\n"
    "  -h, --help        this text\n";

enum { TYPE_TEXT_SIZE = 160 };

// One tensor to write: the first name of one or more WEIGHT nodes.
typedef struct planned_weight {
  const attn_node *node; // the first node that declared it
  const char *name;
  attn_type type;
  bool is_skipped; // tied to another tensor that is written anyway
} planned_weight;

// SplitMix64 (Steele, Lea, Flood 2014): a bijective mixer, used here as a counter-based
// generator: the n-th number of a stream is splitmix64(key + n).
static uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15u;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
  return x ^ (x >> 31);
}

// FNV-1a, so that tensors of the same shape get different streams.
static uint64_t hash_name(const char *name) {
  uint64_t h = 0xcbf29ce484222325u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * 0x100000001b3u;
  return h;
}

// Mean 0, standard deviation 1: the sum of four uniforms (Irwin–Hall), centred and scaled.
// Only integer and correctly rounded double arithmetic, so no libm differences.
static double normalish(uint64_t key, int64_t index) {
  double sum = 0.0;
  for (uint64_t j = 0; j < 4; j++) {
    uint64_t bits = splitmix64(key + 4 * (uint64_t)index + j);
    sum += (double)(bits >> 11) * 0x1.0p-53;
  }
  return (sum - 2.0) * 1.7320508075688772; // sqrt(3): Var(sum of 4 U(0,1)) = 1/3
}

static bool is_norm_weight(const char *name, const attn_type *type) {
  size_t length = strlen(name);
  bool ends_in_weight = length >= 6 && strcmp(name + length - 6, "weight") == 0;
  return type->rank == 1 && ends_in_weight && (strstr(name, "norm") || strstr(name, "ln"));
}

static attn_status fill(const planned_weight *w, uint64_t seed, attn_allocator allocator,
                        attn_diag *diag, attn_tensor *out_tensor) {
  if (attn_tensor_alloc(allocator, w->type.dtype, w->type.rank, w->type.dims, out_tensor) !=
      ATTN_OK)
    return attn_diag_error(diag, w->node->loc, ATTN_ERROR_OUT_OF_MEMORY,
                           "out of memory for weight '%s'", w->name);
  uint64_t key = splitmix64(seed) ^ hash_name(w->name);
  double offset = is_norm_weight(w->name, &w->type) ? 1.0 : 0.0;
  int64_t count = attn_tensor_element_count(out_tensor);
  for (int64_t i = 0; i < count; i++) {
    float value = (float)(offset + 0.02 * normalish(key, i));
    attn_tensor_set_f64(out_tensor, i, (double)value);
  }
  return ATTN_OK;
}

static bool config_ties_embeddings(const attn_config *config) {
  if (!config)
    return true;
  attn_config_value tie = attn_config_get(config, "tie_word_embeddings");
  return tie.kind != ATTN_CONFIG_BOOL || tie.number != 0.0;
}

// One entry per distinct first name, in node order. Two declarations of one name must agree.
static attn_status plan(const attn_graph *graph, bool is_tied, attn_diag *diag,
                        planned_weight *weights, size_t *out_count) {
  size_t count = 0;
  for (uint32_t i = 1; i < graph->node_count; i++) {
    const attn_node *node = &graph->nodes[i];
    if (node->is_dead || node->op != ATTN_OP_WEIGHT)
      continue;
    const attn_weight_attrs *attrs = node->attrs;
    if (attrs->name_count == 0)
      continue;
    size_t k = 0;
    while (k < count && strcmp(weights[k].name, attrs->names[0]) != 0)
      k++;
    if (k == count) {
      weights[count++] = (planned_weight){node, attrs->names[0], attrs->type, false};
      continue;
    }
    if (!attn_type_equal(&weights[k].type, &attrs->type)) {
      char a[TYPE_TEXT_SIZE], b[TYPE_TEXT_SIZE];
      attn_graph_type_format(graph, &attrs->type, a, sizeof(a));
      attn_graph_type_format(graph, &weights[k].type, b, sizeof(b));
      attn_loc first = weights[k].node->loc;
      return attn_diag_error(diag, node->loc, ATTN_ERROR_INVALID_GRAPH,
                             "weight '%s' is declared %s here but %s at %s:%u:%u", attrs->names[0],
                             a, b, first.file ? first.file : "?", first.line, first.col);
    }
  }
  // A tied head (lm_head.weight | wte.weight) falls back to a tensor written anyway.
  for (size_t k = 0; is_tied && k < count; k++) {
    const attn_weight_attrs *attrs = weights[k].node->attrs;
    for (uint32_t n = 1; n < attrs->name_count && !weights[k].is_skipped; n++) {
      for (size_t other = 0; other < count; other++) {
        if (other != k && strcmp(weights[other].name, attrs->names[n]) == 0 &&
            attn_type_equal(&weights[other].type, &weights[k].type))
          weights[k].is_skipped = true;
      }
    }
  }
  *out_count = count;
  return ATTN_OK;
}

static attn_status init_weights(const char *model, const char *out_path, const char *config_path,
                                uint64_t seed, attn_allocator allocator, attn_diag *diag) {
  attn_config *config = NULL;
  attn_graph *graph = NULL;
  planned_weight *planned = NULL;
  attn_named_tensor *tensors = NULL;
  size_t planned_count = 0, tensor_count = 0;
  int64_t value_count = 0;
  attn_status status = ATTN_OK;
  if (config_path)
    status = attn_config_read(config_path, allocator, diag, &config);
  if (status == ATTN_OK)
    status = attn_cli_load_model(model, config, allocator, diag, &graph, NULL);
  if (status == ATTN_OK) {
    planned = calloc(graph->node_count + 1, sizeof(*planned));
    tensors = calloc(graph->node_count + 1, sizeof(*tensors));
    if (!planned || !tensors)
      status = attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  if (status == ATTN_OK)
    status = plan(graph, config_ties_embeddings(config), diag, planned, &planned_count);
  for (size_t k = 0; status == ATTN_OK && k < planned_count; k++) {
    if (planned[k].is_skipped)
      continue;
    tensors[tensor_count].name = planned[k].name;
    status = fill(&planned[k], seed, allocator, diag, &tensors[tensor_count].tensor);
    if (status == ATTN_OK)
      value_count += attn_tensor_element_count(&tensors[tensor_count++].tensor);
  }
  if (status == ATTN_OK)
    status = attn_safetensors_write(out_path, tensors, tensor_count, allocator, diag);
  if (status == ATTN_OK)
    printf("init-weights: wrote %zu tensors (%lld values) to %s\n", tensor_count,
           (long long)value_count, out_path);
  for (size_t k = 0; tensors && k < tensor_count; k++)
    attn_tensor_free(allocator, &tensors[k].tensor);
  free(tensors);
  free(planned);
  attn_graph_destroy(graph);
  attn_config_destroy(config);
  return status;
}

int attn_tool_init_weights(int argc, char **argv) {
  const char *command = "init-weights";
  const char *model = NULL, *out_path = NULL, *config_path = NULL, *seed_text = "0";
  const attn_cli_option options[] = {
      {"-o", &out_path, NULL, NULL, NULL},
      {"--config", &config_path, NULL, NULL, NULL},
      {"--seed", &seed_text, NULL, NULL, NULL},
  };
  attn_cli_parse_result parsed = attn_cli_parse(command, usage, argc, argv, options,
                                                sizeof(options) / sizeof(options[0]), &model);
  if (parsed != ATTN_CLI_PARSED)
    return parsed == ATTN_CLI_HELP_SHOWN ? ATTN_EXIT_OK : ATTN_EXIT_USAGE;
  int64_t seed;
  if (!attn_cli_parse_int(seed_text, &seed))
    return attn_cli_usage_error(command, "--seed takes a non-negative integer, got '%s'",
                                seed_text);
  if (!out_path)
    return attn_cli_usage_error(command, "no output file; pass -o FILE.safetensors");

  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_status status = init_weights(model, out_path, config_path, (uint64_t)seed, allocator, &diag);
  attn_diag_write(&diag, stderr);
  attn_diag_deinit(&diag);
  return status == ATTN_OK ? ATTN_EXIT_OK : ATTN_EXIT_ERROR;
}
