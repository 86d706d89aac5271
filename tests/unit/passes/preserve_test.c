// Every pass keeps numerics: each registered pass alone, and the default pipeline, run over the
// bundled models, the pass golden files and seeded random graphs; the reference evaluator's
// outputs before and after must agree (relative L2 ≤ 1e-5 for floats, exact for integers).
//
// Weights are generated from their names, so a pass may renumber or merge weight nodes and the
// graph after it still reads the same data.
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/parse.h"
#include "ir/interp.h"
#include "ir/print.h"
#include "passes/pass.h"
#include "runtime/tensor/weights.h"
#include "tests/unit/passes/pass_test_util.h"

enum { SYMBOL_DEFAULT = 6 };

static const double tolerance = 1e-5;

typedef struct graph_case {
  const char *name;
  const char *model;
  const char *config;   // NULL: none
  const char *bindings; // "B=2,T=7": symbols not named get SYMBOL_DEFAULT
  int64_t int_bound;    // integer inputs are drawn from [0, int_bound)
} graph_case;

static const graph_case model_cases[] = {
    {"tiny", "models/tiny.attn", NULL, "B=2,T=7", 256},
    {"gpt2", "models/gpt2.attn", "models/configs/gpt2-tiny.json", "B=2,T=7", 64},
    {"llama", "models/llama.attn", "models/configs/llama-tiny.json", "B=2,T=9", 64},
    {"vit", "models/vit.attn", "tests/data/hf/vit-tiny/config.json", "B=2", 0},
    {"acmil", "models/acmil.attn", "models/configs/acmil-tiny.json", "N=11", 0},
};

// ---- deterministic data --------------------------------------------------------------------

static double uniform(uint64_t *state) { // [-1, 1)
  return (double)(next_random(state) >> 11) * 0x1.0p-52 - 1.0;
}

// ---- evaluation ------------------------------------------------------------------------------

static const pass_test_data weight_data = {0.25, 4, false};

// Evaluates `graph` (inputs: floats in [-1, 1), integers below `int_bound`).
static void evaluate(const attn_graph *graph, const int64_t *symbols, int64_t int_bound,
                     pass_test_outputs *out, attn_diag *diag) {
  pass_test_data input_data = {1.0, int_bound, false};
  attn_status status = pass_test_evaluate(graph, symbols, &input_data, &weight_data, diag, out);
  if (status != ATTN_OK)
    attn_diag_write(diag, stderr);
  assert_int_equal(status, ATTN_OK);
}

// ---- the cases -------------------------------------------------------------------------------

typedef attn_status (*graph_maker)(const void *source, attn_diag *diag, attn_graph **out);

static attn_status parse_case(const void *source, attn_diag *diag, attn_graph **out) {
  const graph_case *c = source;
  attn_config *config = NULL;
  if (c->config)
    ATTN_RETURN_IF_ERROR(attn_config_read(c->config, attn_allocator_system(), diag, &config));
  attn_parse_options options = {.config = config};
  attn_status status = attn_parse_file(c->model, &options, attn_allocator_system(), diag, out);
  attn_config_destroy(config);
  return status;
}

// The pipelines under test: each registered pass alone (after what it requires), and `default`.
static const char *pipeline_for(const attn_pass_info *pass, char *buffer, size_t size) {
  if (strcmp(pass->name, "plan-memory") == 0)
    snprintf(buffer, size, "partition,plan-memory");
  else
    snprintf(buffer, size, "%s", pass->name);
  return buffer;
}

static void check_pipeline(const graph_case *c, graph_maker make, const void *source,
                           const char *pipeline_text) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = NULL;
  attn_status status = make(source, &diag, &graph);
  if (status != ATTN_OK)
    attn_diag_write(&diag, stderr);
  assert_int_equal(status, ATTN_OK);
  int64_t *symbols = pass_test_symbols(graph, c->bindings, SYMBOL_DEFAULT);
  pass_test_outputs before = {0}, after = {0};
  evaluate(graph, symbols, c->int_bound, &before, &diag);

  attn_pipeline pipeline;
  status = attn_pipeline_parse(pipeline_text, attn_allocator_system(), &diag, &pipeline);
  attn_pipeline_run_options options = {.verify_each = true, .symbol_values = symbols};
  if (status == ATTN_OK)
    status = attn_pipeline_run(&pipeline, graph, &options);
  if (status != ATTN_OK)
    attn_diag_write(&diag, stderr);
  assert_int_equal(status, ATTN_OK);
  evaluate(graph, symbols, c->int_bound, &after, &diag);
  char what[256];
  snprintf(what, sizeof(what), "%s with -p %s", c->name, pipeline_text);
  pass_test_compare(what, &before, &after, tolerance, 0);

  pass_test_outputs_free(&before);
  pass_test_outputs_free(&after);
  attn_pipeline_deinit(&pipeline);
  free(symbols);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

static void check_every_pipeline(const graph_case *c, graph_maker make, const void *source) {
  uint32_t count;
  const attn_pass_info *passes = attn_pass_registry(&count);
  char buffer[128];
  for (uint32_t i = 0; i < count; i++)
    check_pipeline(c, make, source, pipeline_for(&passes[i], buffer, sizeof(buffer)));
  check_pipeline(c, make, source, "default");
}

static void models_keep_their_numerics(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(model_cases) / sizeof(model_cases[0]); i++)
    check_every_pipeline(&model_cases[i], parse_case, &model_cases[i]);
}

// Every golden file of the passes (tests/ir/passes/*.attn) also runs through every pass.
static void pass_golden_files_keep_their_numerics(void **state) {
  (void)state;
  const char *folder = "tests/ir/passes";
  DIR *dir = opendir(folder);
  assert_non_null(dir);
  uint32_t files = 0;
  for (struct dirent *entry; (entry = readdir(dir));) {
    size_t length = strlen(entry->d_name);
    if (length < 6 || strcmp(entry->d_name + length - 5, ".attn") != 0)
      continue;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", folder, entry->d_name);
    graph_case c = {entry->d_name, path, NULL, "", 16};
    check_every_pipeline(&c, parse_case, &c);
    files++;
  }
  closedir(dir);
  assert_true(files > 0);
}

// ---- random graphs ---------------------------------------------------------------------------
// Chains over f32[B, 4, 8] values that exercise every generic rewrite: identities with 0 and 1,
// splat and scalar constants, constant-only subexpressions, duplicated nodes, reshape and
// permute round trips, scalar multiplication chains, softmax, norms, reductions, matmuls.

typedef struct builder {
  attn_graph *graph;
  uint64_t random;
  attn_value_id pool[64];
  uint32_t pool_count;
  attn_dim b;
} builder;

static attn_value_id node(builder *bd, attn_op op, const attn_value_id *inputs, uint32_t count,
                          const void *attrs) {
  attn_node_id id;
  assert_int_equal(attn_graph_add_node(bd->graph, op, inputs, count, attrs, ATTN_LOC_NONE, &id),
                   ATTN_OK);
  return attn_node_output(bd->graph, id, 0);
}

// A constant f32 of `rank` dims [4, 8] or [8] or [] (rank 2, 1, 0): all `value`, or random when
// `value` is NAN.
static attn_value_id constant(builder *bd, uint32_t rank, double value) {
  static const int64_t shape[2] = {4, 8};
  attn_constant_attrs attrs = {{ATTN_DTYPE_F32, rank, {0}}, NULL};
  int64_t count = 1;
  for (uint32_t d = 0; d < rank; d++) {
    attrs.type.dims[d] = shape[2 - rank + d];
    count *= attrs.type.dims[d];
  }
  float *data = attn_graph_alloc(bd->graph, (size_t)count * sizeof(float));
  assert_non_null(data);
  for (int64_t i = 0; i < count; i++)
    data[i] = (float)(isnan(value) ? uniform(&bd->random) : value);
  attrs.data = data;
  return node(bd, ATTN_OP_CONSTANT, NULL, 0, &attrs);
}

// Attribute payloads must live in the graph's arena.
static const int64_t *in_arena(builder *bd, const int64_t *values, uint32_t count) {
  int64_t *copy = attn_graph_alloc(bd->graph, count * sizeof(*copy));
  assert_non_null(copy);
  memcpy(copy, values, count * sizeof(*copy));
  return copy;
}

static attn_value_id pick(builder *bd) {
  return bd->pool[next_random(&bd->random) % bd->pool_count];
}

static void push(builder *bd, attn_value_id v) {
  if (bd->pool_count < 64)
    bd->pool[bd->pool_count++] = v;
  else
    bd->pool[next_random(&bd->random) % 64] = v;
}

static attn_value_id random_step(builder *bd) {
  static const attn_op unary[] = {ATTN_OP_NEG,  ATTN_OP_TANH, ATTN_OP_SIGMOID, ATTN_OP_RELU,
                                  ATTN_OP_SILU, ATTN_OP_ABS,  ATTN_OP_GELU};
  static const attn_op binary[] = {ATTN_OP_ADD, ATTN_OP_SUB, ATTN_OP_MUL, ATTN_OP_MAXIMUM,
                                   ATTN_OP_DIV};
  attn_value_id x = pick(bd), y = pick(bd);
  switch (next_random(&bd->random) % 12) {
  case 0:
    return node(bd, unary[next_random(&bd->random) % 7], &x, 1, NULL);
  case 1: { // binary on two values; div gets a denominator away from 0
    attn_op op = binary[next_random(&bd->random) % 5];
    if (op == ATTN_OP_DIV)
      y = node(bd, ATTN_OP_ADD,
               (attn_value_id[]){node(bd, ATTN_OP_ABS, &y, 1, NULL), constant(bd, 0, 1.0)}, 2,
               NULL);
    return node(bd, op, (attn_value_id[]){x, y}, 2, NULL);
  }
  case 2: { // identities: x + 0, 1 * x, x - 0, x / 1 with constants of every rank
    static const attn_op ops[] = {ATTN_OP_ADD, ATTN_OP_MUL, ATTN_OP_SUB, ATTN_OP_DIV};
    uint32_t which = (uint32_t)(next_random(&bd->random) % 4);
    attn_value_id c = constant(bd, (uint32_t)(next_random(&bd->random) % 3), which % 2 ? 1.0 : 0.0);
    if (which >= 2)
      c = constant(bd, (uint32_t)(next_random(&bd->random) % 3), which == 3 ? 1.0 : 0.0);
    bool swap = which < 2 && (next_random(&bd->random) & 1);
    return node(bd, ops[which], swap ? (attn_value_id[]){c, x} : (attn_value_id[]){x, c}, 2, NULL);
  }
  case 3: { // splat and random constants, and a constant-only subexpression
    attn_value_id c = constant(bd, 2, NAN), d = constant(bd, 1, 0.5 + uniform(&bd->random));
    attn_value_id cd = node(bd, ATTN_OP_MUL, (attn_value_id[]){c, d}, 2, NULL);
    cd = node(bd, ATTN_OP_TANH, &cd, 1, NULL);
    return node(bd, ATTN_OP_ADD, (attn_value_id[]){x, cd}, 2, NULL);
  }
  case 4: { // a duplicated node
    attn_value_id a = node(bd, ATTN_OP_MUL, (attn_value_id[]){x, y}, 2, NULL);
    attn_value_id b = node(bd, ATTN_OP_MUL, (attn_value_id[]){y, x}, 2, NULL);
    return node(bd, ATTN_OP_SUB, (attn_value_id[]){a, node(bd, ATTN_OP_TANH, &b, 1, NULL)}, 2,
                NULL);
  }
  case 5: { // reshape round trip
    attn_dim flat[2] = {bd->b, 32}, back[3] = {bd->b, 4, 8};
    attn_value_id r =
        node(bd, ATTN_OP_RESHAPE, &x, 1, &(attn_shape_attrs){in_arena(bd, flat, 2), 2});
    r = node(bd, ATTN_OP_TANH, &r, 1, NULL);
    return node(bd, ATTN_OP_RESHAPE, &r, 1, &(attn_shape_attrs){in_arena(bd, back, 3), 3});
  }
  case 6: { // permute round trip, and a double permute
    static const int64_t swap[3] = {0, 2, 1}, identity[3] = {0, 1, 2};
    const int64_t *s = in_arena(bd, swap, 3), *id = in_arena(bd, identity, 3);
    attn_value_id p = node(bd, ATTN_OP_PERMUTE, &x, 1, &(attn_perm_attrs){s, 3});
    p = node(bd, ATTN_OP_PERMUTE, &p, 1, &(attn_perm_attrs){s, 3});
    return node(bd, ATTN_OP_PERMUTE, &p, 1, &(attn_perm_attrs){id, 3});
  }
  case 7: { // scalar chains
    attn_value_id m = node(bd, ATTN_OP_MUL, (attn_value_id[]){x, constant(bd, 0, 0.5)}, 2, NULL);
    m = node(bd, ATTN_OP_MUL, (attn_value_id[]){m, constant(bd, 0, 3.0)}, 2, NULL);
    return node(bd, ATTN_OP_DIV, (attn_value_id[]){m, constant(bd, 0, 8.0)}, 2, NULL);
  }
  case 8:
    return node(bd, ATTN_OP_SOFTMAX, &x, 1, &(attn_axis_attrs){-1});
  case 9:
    return node(bd, ATTN_OP_LAYERNORM, &x, 1, &(attn_norm_attrs){2, 1e-5});
  case 10: { // a reduction broadcast back
    static const int64_t axes[1] = {2};
    attn_value_id r =
        node(bd, ATTN_OP_MEAN, &x, 1, &(attn_reduce_attrs){in_arena(bd, axes, 1), 1, true});
    return node(bd, ATTN_OP_SUB, (attn_value_id[]){x, r}, 2, NULL);
  }
  default: { // x xᵀ y: [B,4,8] x [B,8,4] x [B,4,8]
    attn_value_id s =
        node(bd, ATTN_OP_MATMUL, (attn_value_id[]){x, y}, 2, &(attn_matmul_attrs){false, true});
    s = node(bd, ATTN_OP_MUL, (attn_value_id[]){s, constant(bd, 0, 0.125)}, 2, NULL);
    s = node(bd, ATTN_OP_SOFTMAX, &s, 1, &(attn_axis_attrs){-1});
    return node(bd, ATTN_OP_MATMUL, (attn_value_id[]){s, x}, 2, NULL);
  }
  }
}

static attn_status make_random_graph(const void *source, attn_diag *diag, attn_graph **out) {
  uint64_t seed = *(const uint64_t *)source;
  builder bd = {.random = seed};
  ATTN_RETURN_IF_ERROR(attn_graph_create(attn_allocator_system(), diag, "random", &bd.graph));
  assert_int_equal(attn_graph_dim_symbol(bd.graph, "B", 1, &bd.b), ATTN_OK);
  const char *names[2] = {"x", "y"};
  for (int i = 0; i < 2; i++) {
    attn_value_id v;
    assert_int_equal(attn_graph_add_input(bd.graph, names[i],
                                          &(attn_type){ATTN_DTYPE_F32, 3, {bd.b, 4, 8}},
                                          ATTN_LOC_NONE, &v),
                     ATTN_OK);
    push(&bd, v);
  }
  for (int step = 0; step < 40; step++)
    push(&bd, random_step(&bd));
  attn_value_id outputs[3] = {bd.pool[bd.pool_count - 1], bd.pool[bd.pool_count - 2], pick(&bd)};
  const char *output_names[3] = {"a", "b", "c"};
  assert_int_equal(attn_graph_set_outputs(bd.graph, outputs, output_names, 3), ATTN_OK);
  attn_status status = attn_graph_verify(bd.graph);
  if (status != ATTN_OK)
    attn_diag_write(diag, stderr);
  assert_int_equal(status, ATTN_OK);
  *out = bd.graph;
  return ATTN_OK;
}

static void random_graphs_keep_their_numerics(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 40; seed++) {
    char name[32];
    snprintf(name, sizeof(name), "random graph %llu", (unsigned long long)seed);
    graph_case c = {name, NULL, NULL, "B=3", 0};
    check_every_pipeline(&c, make_random_graph, &seed);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(models_keep_their_numerics),
      cmocka_unit_test(random_graphs_keep_their_numerics),
      cmocka_unit_test(pass_golden_files_keep_their_numerics),
  };
  return cmocka_run_group_tests_name("passes/preserve", tests, NULL, NULL);
}
