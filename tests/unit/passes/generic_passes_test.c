// The generic passes (fold-constants, cse, canonicalize, specialize-shapes): what each rewrites
// and what it must leave alone, counted on the graph after the pass; that the reference
// evaluator's outputs before and after agree on seeded random inputs (bit for bit after folding,
// within 1e-6 relative L2 otherwise); and that running out of memory anywhere in these passes is
// reported as ATTN_ERROR_OUT_OF_MEMORY without a crash or a leak.
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
#include "tests/unit/passes/pass_test_util.h"

static const double tolerance = 1e-6;

typedef struct fixture {
  attn_counting_allocator counter;
  attn_diag diag;
  attn_graph *graph;
  int64_t symbols[16]; // -D bindings by symbol index, < 0 unbound
} fixture;

static int setup(void **state) {
  fixture *f = test_calloc(1, sizeof(*f));
  attn_counting_allocator_init(&f->counter, attn_allocator_system());
  attn_diag_init(&f->diag, attn_allocator_system());
  for (size_t i = 0; i < sizeof(f->symbols) / sizeof(f->symbols[0]); i++)
    f->symbols[i] = -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  attn_graph_destroy(f->graph);
  attn_diag_deinit(&f->diag);
  assert_int_equal(f->counter.live_bytes, 0); // nothing leaked
  test_free(f);
  return 0;
}

static attn_allocator allocator(fixture *f) {
  return attn_counting_allocator_get(&f->counter);
}

static void parse(fixture *f, const char *text) {
  attn_graph_destroy(f->graph);
  f->graph = NULL;
  attn_status status =
      attn_parse_text("t.attn", text, strlen(text), NULL, allocator(f), &f->diag, &f->graph);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  assert_true(f->graph->symbol_count <= sizeof(f->symbols) / sizeof(f->symbols[0]));
}

static void bind(fixture *f, const char *name, int64_t value) {
  uint32_t index;
  assert_true(attn_graph_find_symbol(f->graph, name, &index));
  f->symbols[index] = value;
}

static attn_status run_passes(fixture *f, const char *text) {
  attn_pipeline pipeline;
  attn_status status = attn_pipeline_parse(text, attn_allocator_system(), &f->diag, &pipeline);
  attn_pipeline_run_options options = {.verify_each = true, .symbol_values = f->symbols};
  if (status == ATTN_OK)
    status = attn_pipeline_run(&pipeline, f->graph, &options);
  attn_pipeline_deinit(&pipeline);
  return status;
}

static void run_ok(fixture *f, const char *text) {
  attn_status status = run_passes(f, text);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
}

static uint32_t count_op(const attn_graph *graph, attn_op op) {
  uint32_t count = 0;
  for (uint32_t n = 1; n < graph->node_count; n++)
    count += !graph->nodes[n].is_dead && graph->nodes[n].op == op;
  return count;
}

static uint32_t count_nodes(const attn_graph *graph) {
  uint32_t count = 0;
  for (uint32_t n = 1; n < graph->node_count; n++)
    count += !graph->nodes[n].is_dead;
  return count;
}

// ---- evaluation ------------------------------------------------------------------------------

// Inputs and weights: floats in [-2, 2), integers in [0, 4), bools; unbound symbols take 3.
static const pass_test_data data = {2.0, 4, false};

static void evaluate(fixture *f, pass_test_outputs *out) {
  int64_t symbols[16];
  memcpy(symbols, f->symbols, sizeof(symbols));
  for (uint32_t s = 0; s < f->graph->symbol_count; s++)
    if (symbols[s] < 0)
      symbols[s] = 3;
  attn_status status = pass_test_evaluate(f->graph, symbols, &data, &data, &f->diag, out);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
}

// Runs `pipeline` over the fixture's graph and checks the outputs before and after: bit for bit
// when `is_exact`, else within `tolerance`.
static void run_and_compare(fixture *f, const char *pipeline, bool is_exact) {
  pass_test_outputs before = {0}, after = {0};
  evaluate(f, &before);
  run_ok(f, pipeline);
  evaluate(f, &after);
  pass_test_compare(pipeline, &before, &after, tolerance, is_exact ? PASS_TEST_EXACT : 0);
  pass_test_outputs_free(&before);
  pass_test_outputs_free(&after);
}

// ---- fold-constants ----------------------------------------------------------------------------

static const char folding_text[] =
    "graph g(x: f32[3, 4]) -> (y: f32[3, 4], s: f32[3, 4], i: i64[3, 4], t: f32[2, 4]) {\n"
    "  c = constant(f32[3, 4], [0.1, 0.2, 0.3, 0.4, 1.5, -2.5, 3.25, 0.7, 9, 8, 7, 6])\n"
    "  m = matmul(c, c, transpose_b=true)\n"
    "  e = div(exp(tanh(matmul(m, c))), 3.0)\n"
    "  y = add(x, e)\n"
    "  s = mul(x, softmax(sub(c, log(add(abs(c), 1.0))), axis=1))\n"
    "  i = add(iota(i64[3, 4], axis=1, start=5), iota(i64[3, 1]))\n"
    "  t = gather(c, constant(i64[2], [2, 0]), axis=0)\n"
    "  return y, s, i, t\n"
    "}\n";

static void fold_constants_folds_chains_bit_for_bit(void **state) {
  fixture *f = *state;
  parse(f, folding_text);
  assert_int_equal(count_op(f->graph, ATTN_OP_MATMUL), 2);
  run_and_compare(f, "fold-constants", true);
  // Everything that reads only constants became one constant per consumer of x; the integer
  // output, a pure function of iotas, is a constant; the iotas and the matmuls are gone.
  assert_int_equal(count_op(f->graph, ATTN_OP_MATMUL), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_SOFTMAX), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_IOTA), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_GATHER), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_ADD), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_MUL), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_CONSTANT), 4);
  assert_int_equal(count_nodes(f->graph), 6);
  // The folded values keep their names.
  assert_non_null(attn_graph_value(f->graph, f->graph->outputs[2])->name);
  assert_string_equal(attn_graph_value(f->graph, f->graph->outputs[2])->name, "i");
}

// A [1024, 1024] float causal mask built from iotas is 4 MiB: over the default limit it stays
// a computation; with a larger max-bytes it becomes one constant.
static const char mask_text[] =
    "graph g(x: f32[1024, 1024]) -> (y: f32[1024, 1024]) {\n"
    "  visible = le(iota(i64[1, 1024], axis=1), iota(i64[1024, 1]))\n"
    "  mask = where(visible, constant(f32[], 0), constant(f32[], -inf))\n"
    "  return add(x, mask)\n"
    "}\n";

static void fold_constants_respects_max_bytes(void **state) {
  fixture *f = *state;
  parse(f, mask_text);
  run_and_compare(f, "fold-constants", true);
  assert_int_equal(count_op(f->graph, ATTN_OP_WHERE), 1);
  for (uint32_t n = 1; n < f->graph->node_count; n++) {
    const attn_node *node = &f->graph->nodes[n];
    if (!node->is_dead && node->op == ATTN_OP_CONSTANT) {
      const attn_constant_attrs *c = node->attrs;
      int64_t bytes = (int64_t)attn_dtype_size(c->type.dtype);
      for (uint32_t d = 0; d < c->type.rank; d++)
        bytes *= c->type.dims[d];
      assert_true(bytes <= 1 << 20);
    }
  }
  run_and_compare(f, "fold-constants{max-bytes=4194304}", true);
  assert_int_equal(count_op(f->graph, ATTN_OP_WHERE), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_IOTA), 0);
  assert_int_equal(count_nodes(f->graph), 2); // the mask and the add
}

// What the evaluator rejects stays, to fail at run time; weights and symbolic shapes stay.
static void fold_constants_leaves_what_it_cannot_evaluate(void **state) {
  fixture *f = *state;
  parse(f, "graph g(x: i32[2], p: i64[T]) -> (q: i32[2], w: f32[4], s: i64[T]) {\n"
           "  q = add(x, div(constant(i32[2], [1, 2]), constant(i32[2], [0, 1])))\n"
           "  w = neg(weight(\"w\", f32[4]))\n"
           "  s = add(p, mul(iota(i64[T]), 2))\n"
           "  return q, w, s\n"
           "}\n");
  uint32_t nodes = count_nodes(f->graph);
  size_t errors = f->diag.error_count;
  run_ok(f, "fold-constants");
  assert_int_equal(count_nodes(f->graph), nodes);
  assert_int_equal(count_op(f->graph, ATTN_OP_DIV), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_NEG), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_IOTA), 1);
  assert_int_equal(f->diag.error_count, errors); // the division by zero is not this pass's error
}

// ---- cse ---------------------------------------------------------------------------------------

static void cse_merges_equal_nodes(void **state) {
  fixture *f = *state;
  parse(f, "graph g(x: f32[B, 4], y: f32[B, 4], q: f32[B, 2, T, 8])\n"
           "    -> (a: f32[B, 4], b: f32[B, 4], c: f32[B, 2, T, 8], d: f32[4]) {\n"
           "  m1 = mul(x, y)\n"
           "  m2 = mul(y, x)\n"
           "  s1 = sub(x, y)\n"
           "  s2 = sub(y, x)\n"
           "  a = add(tanh(m1), tanh(m2))\n"
           "  b = add(s1, s2)\n"
           "  o1 = attention(q, q, q, mask=causal, score_mod={ tanh(score / 30) * 30 })\n"
           "  o2 = attention(q, q, q, mask=causal, score_mod={ tanh(score / 30) * 30 })\n"
           "  o3 = attention(q, q, q, mask=causal, score_mod={ tanh(score / 20) * 30 })\n"
           "  c = add(add(o1, o2), o3)\n"
           "  k1 = constant(f32[4], [1, 2, 3, 4])\n"
           "  k2 = constant(f32[4], [1, 2, 3, 4])\n"
           "  k3 = constant(f32[4], [1, 2, 3, -4])\n"
           "  w1 = weight(\"a\" | \"b\", f32[4])\n"
           "  w2 = weight(\"a\" | \"b\", f32[4])\n"
           "  w3 = weight(\"a\", f32[4])\n"
           "  d = add(add(add(k1, k2), k3), add(add(w1, w2), w3))\n"
           "  return a, b, c, d\n"
           "}\n");
  bind(f, "B", 2);
  bind(f, "T", 5);
  run_and_compare(f, "cse", false);
  assert_int_equal(count_op(f->graph, ATTN_OP_MUL), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_TANH), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_SUB), 2);
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 2);
  assert_int_equal(count_op(f->graph, ATTN_OP_CONSTANT), 2);
  assert_int_equal(count_op(f->graph, ATTN_OP_WEIGHT), 2);
  // Running it again finds nothing more.
  uint32_t nodes = count_nodes(f->graph);
  run_ok(f, "cse");
  assert_int_equal(count_nodes(f->graph), nodes);
}

// A long graph of duplicated chains: hashing keeps this linear, and every duplicate goes.
static void cse_merges_a_large_graph(void **state) {
  fixture *f = *state;
  assert_int_equal(attn_graph_create(allocator(f), &f->diag, "big", &f->graph), ATTN_OK);
  attn_value_id x;
  attn_type type = {ATTN_DTYPE_F32, 1, {4}};
  assert_int_equal(attn_graph_add_input(f->graph, "x", &type, ATTN_LOC_NONE, &x), ATTN_OK);
  enum { CHAINS = 8, LENGTH = 2500 };
  static const attn_op ops[3] = {ATTN_OP_TANH, ATTN_OP_NEG, ATTN_OP_SIGMOID};
  attn_value_id ends[CHAINS];
  for (int c = 0; c < CHAINS; c++) {
    attn_value_id v = x;
    for (int i = 0; i < LENGTH; i++) {
      attn_node_id id;
      assert_int_equal(attn_graph_add_node(f->graph, ops[i % 3], &v, 1, NULL, ATTN_LOC_NONE, &id),
                       ATTN_OK);
      v = attn_node_output(f->graph, id, 0);
    }
    ends[c] = v;
  }
  const char *names[CHAINS] = {"a", "b", "c", "d", "e", "f", "g", "h"};
  assert_int_equal(attn_graph_set_outputs(f->graph, ends, names, CHAINS), ATTN_OK);
  assert_int_equal(count_nodes(f->graph), CHAINS * LENGTH);
  run_ok(f, "cse");
  assert_int_equal(count_nodes(f->graph), LENGTH);
  for (int c = 1; c < CHAINS; c++)
    assert_int_equal(f->graph->outputs[c].index, f->graph->outputs[0].index);
}

// ---- canonicalize ------------------------------------------------------------------------------

static const char canonical_text[] =
    "graph g(x: f32[B, 4, 8], y: f32[4, 8], i: i32[4], hx: f16[4])\n"
    "    -> (a: f32[B, 4, 8], b: f32[2, 4, 8], c: f32[B, 8, 4], d: f32[4, B, 8],\n"
    "        e: f32[B, 4, 8], f: f32[B, 4, 8], g: f32[B, 4, 8], h: i32[4], k: f32[B, 3, 8],\n"
    "        m: f16[4]) {\n"
    "  zero = constant(f32[4, 8], 0)\n"
    "  one = constant(f32[4, 8], 1)\n"
    "  a0 = div(mul(1.0, sub(add(zero, add(x, 0.0)), 0.0)), one)\n"
    "  a1 = cast(neg(neg(reshape(a0, shape=[B, 4, 8]))), dtype=f32)\n"
    "  a2 = permute(permute(a1, perm=[0, 2, 1]), perm=[0, 2, 1])\n"
    "  a = concat(slice(expand(a2, shape=[B, 4, 8]), axis=2, start=0), axis=0)\n"
    "  b = add(y, constant(f32[2, 4, 8], 0))\n"
    "  c = reshape(reshape(x, shape=[B, 32]), shape=[B, 8, 4])\n"
    "  d = permute(permute(x, perm=[0, 2, 1]), perm=[2, 0, 1])\n"
    "  e = mul(x, constant(f32[4, 8], 3.0))\n"
    "  f = add(expand(y, shape=[B, 4, 8]), x)\n"
    "  g = div(mul(mul(x, 0.5), 3.0), 4.0)\n"
    "  h = neg(neg(add(i, 0)))\n"
    "  k = slice(div(x, 3.0), axis=1, start=1)\n"
    "  m = mul(mul(hx, 0.1), 3.0)\n"
    "  return a, b, c, d, e, f, g, h, k, m\n"
    "}\n";

static void canonicalize_simplifies_and_keeps_numerics(void **state) {
  fixture *f = *state;
  parse(f, canonical_text);
  bind(f, "B", 2);
  run_and_compare(f, "canonicalize", false);
  const attn_graph *g = f->graph;
  // a: every step was an identity.
  assert_int_equal(g->outputs[0].index, g->inputs[0].index);
  // b: the zero broadcasts y to a bigger shape, so the add stays.
  assert_int_equal(attn_value_producer(g, g->outputs[1])->op, ATTN_OP_ADD);
  // c: one reshape of x; d: one permute of x by the composed perm [1, 0, 2].
  const attn_node *c = attn_value_producer(g, g->outputs[2]);
  assert_int_equal(c->op, ATTN_OP_RESHAPE);
  assert_int_equal(c->inputs[0].index, g->inputs[0].index);
  const attn_node *d = attn_value_producer(g, g->outputs[3]);
  assert_int_equal(d->op, ATTN_OP_PERMUTE);
  assert_int_equal(d->inputs[0].index, g->inputs[0].index);
  const attn_perm_attrs *perm = d->attrs;
  assert_int_equal(perm->perm[0], 1);
  assert_int_equal(perm->perm[1], 0);
  assert_int_equal(perm->perm[2], 2);
  // e: the splat became a scalar; f: the add reads y itself.
  const attn_node *e = attn_value_producer(g, g->outputs[4]);
  assert_int_equal(attn_value_constant(g, e->inputs[1])->type.rank, 0);
  const attn_node *fn = attn_value_producer(g, g->outputs[5]);
  assert_int_equal(fn->inputs[0].index, g->inputs[1].index);
  // g: x * 0.5 * 3 / 4 is one multiplication by 0.375.
  const attn_node *gn = attn_value_producer(g, g->outputs[6]);
  assert_int_equal(gn->op, ATTN_OP_MUL);
  assert_int_equal(gn->inputs[0].index, g->inputs[0].index);
  assert_true(*(const float *)attn_value_constant(g, gn->inputs[1])->data == 0.375f);
  // h: i + 0 is i, but integer neg(neg(i)) is not i.
  assert_int_equal(attn_value_producer(g, g->outputs[7])->op, ATTN_OP_NEG);
  // k: 1/3 is inexact, so the division stays; the slice drops a row, so it stays.
  const attn_node *k = attn_value_producer(g, g->outputs[8]);
  assert_int_equal(k->op, ATTN_OP_SLICE);
  assert_int_equal(attn_value_producer(g, k->inputs[0])->op, ATTN_OP_DIV);
  // m: an f16 chain would round its product differently, so it stays.
  const attn_node *m = attn_value_producer(g, g->outputs[9]);
  assert_int_equal(m->op, ATTN_OP_MUL);
  assert_int_equal(attn_value_producer(g, m->inputs[0])->op, ATTN_OP_MUL);
  assert_int_equal(count_op(g, ATTN_OP_EXPAND), 0);
  assert_int_equal(count_op(g, ATTN_OP_CAST), 0);
  assert_int_equal(count_op(g, ATTN_OP_CONCAT), 0);
  // A second run finds the fixed point already reached.
  uint32_t nodes = count_nodes(f->graph);
  attn_pass_context ctx = {.diag = &f->diag};
  attn_arena_init(&ctx.scratch, attn_allocator_system());
  assert_int_equal(attn_pass_canonicalize(&ctx, f->graph), ATTN_OK);
  attn_arena_deinit(&ctx.scratch);
  assert_false(ctx.changed);
  assert_int_equal(count_nodes(f->graph), nodes);
}

// ---- specialize-shapes -------------------------------------------------------------------------

static const char decode_text[] =
    "graph g(x: f32[B, T, 8], past: f32[B, T_past, 8])\n"
    "    -> (k: f32[B, T_past + T, 8], h: f32[B, T, 2, 4], p: i64[T], f: f32[B * T, 8],\n"
    "        s: f32[B, T - 1, 8], t: f32[B, T, 8]) {\n"
    "  k = concat(past, x, axis=1)\n"
    "  h = reshape(x, shape=[B, T, 2, 4])\n"
    "  p = iota(i64[T], start=T_past)\n"
    "  f = reshape(x, shape=[B * T, 8])\n"
    "  s = tanh(slice(x, axis=1, start=1))\n"
    "  first, second = split(concat(x, x, axis=1), axis=1, sizes=[T, T])\n"
    "  t = sub(first, second)\n"
    "  return k, h, p, f, s, t\n"
    "}\n";

static bool type_has_symbol(const attn_type *type) {
  for (uint32_t d = 0; d < type->rank; d++)
    if (!attn_dim_is_constant(type->dims[d]))
      return true;
  return false;
}

static void specialize_shapes_substitutes_bound_symbols(void **state) {
  fixture *f = *state;
  parse(f, decode_text);
  bind(f, "T", 5);
  bind(f, "T_past", 3);
  bind(f, "B", 2);
  run_and_compare(f, "specialize-shapes", true);
  const attn_graph *g = f->graph;
  for (uint32_t v = 1; v < g->value_count; v++)
    assert_false(type_has_symbol(&g->values[v].type));
  assert_int_equal(attn_graph_value(g, g->outputs[0])->type.dims[1], 8);
  const attn_node *iota = attn_value_producer(g, g->outputs[2]);
  assert_int_equal(((const attn_iota_attrs *)iota->attrs)->start, 3);
  assert_int_equal(attn_graph_value(g, g->outputs[4])->type.dims[1], 4);
  const attn_node *split = attn_value_producer(g, attn_value_producer(g, g->outputs[5])->inputs[0]);
  assert_int_equal(((const attn_split_attrs *)split->attrs)->sizes[0], 5);
  assert_int_equal(((const attn_split_attrs *)split->attrs)->sizes[1], 5);
  const attn_node *flat = attn_value_producer(g, g->outputs[3]);
  assert_int_equal(((const attn_shape_attrs *)flat->attrs)->dims[0], 10);

  // The inputs' declared types are concrete now: another T is rejected with a clear message.
  attn_allocator a = attn_allocator_system();
  attn_tensor inputs[2];
  assert_int_equal(attn_tensor_alloc(a, ATTN_DTYPE_F32, 3, (int64_t[]){2, 4, 8}, &inputs[0]),
                   ATTN_OK);
  assert_int_equal(attn_tensor_alloc(a, ATTN_DTYPE_F32, 3, (int64_t[]){2, 3, 8}, &inputs[1]),
                   ATTN_OK);
  attn_tensor outputs[6];
  attn_interp_args args = {inputs, NULL, NULL};
  assert_int_equal(attn_interp_run(g, &args, a, &f->diag, outputs), ATTN_ERROR_INVALID_ARGUMENT);
  const char *error = attn_diag_last_error(&f->diag);
  assert_non_null(error);
  assert_non_null(strstr(error, "input 'x': expected f32[2, 5, 8], got f32[2, 4, 8]"));
  attn_tensor_free(a, &inputs[0]);
  attn_tensor_free(a, &inputs[1]);
}

static void specialize_shapes_keeps_unbound_symbols(void **state) {
  fixture *f = *state;
  parse(f, decode_text);
  bind(f, "T", 5);
  run_and_compare(f, "specialize-shapes", true);
  const attn_graph *g = f->graph;
  char text[64];
  attn_graph_type_format(g, &attn_graph_value(g, g->outputs[0])->type, text, sizeof(text));
  assert_string_equal(text, "f32[B, T_past + 5, 8]");
  attn_graph_type_format(g, &attn_graph_value(g, g->outputs[3])->type, text, sizeof(text));
  assert_string_equal(text, "f32[B * 5, 8]");
  const attn_node *iota = attn_value_producer(g, g->outputs[2]);
  attn_graph_dim_format(g, ((const attn_iota_attrs *)iota->attrs)->start, text, sizeof(text));
  assert_string_equal(text, "T_past");
}

static void specialize_shapes_without_bindings_changes_nothing(void **state) {
  fixture *f = *state;
  parse(f, decode_text);
  char *before = pass_test_print(f->graph);
  run_ok(f, "specialize-shapes");
  char *after = pass_test_print(f->graph);
  assert_string_equal(before, after);
  free(before);
  free(after);
}

static void specialize_shapes_rejects_impossible_bindings(void **state) {
  fixture *f = *state;
  parse(f, decode_text);
  bind(f, "T", 0); // T - 1 < 0
  assert_int_equal(run_passes(f, "specialize-shapes"), ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "T - 1 is negative"));
}

// ---- the passes together, and allocation failures -----------------------------------------------

// The generic part of the default pipeline.
static const char generic_pipeline[] =
    "specialize-shapes,canonicalize,fold-constants,cse,canonicalize,dce";

static const char pipeline_text[] =
    "graph g(x: f32[B, T, 8], w: f32[8, 8]) -> (y: f32[B, T, 8], z: f32[B, T, 8]) {\n"
    "  scale = div(constant(f32[], 1), sqrt(constant(f32[], 64)))\n"
    "  a = mul(matmul(x, w), scale)\n"
    "  b = mul(matmul(x, w), scale)\n"
    "  mask = lt(iota(i64[1, 8], axis=1), iota(i64[T, 1]))\n"
    "  y = where(expand(mask, shape=[B, T, 8]), add(a, 0.0), mul(b, 2.0))\n"
    "  z = reshape(reshape(add(a, b), shape=[B * T, 8]), shape=[B, T, 8])\n"
    "  return y, z\n"
    "}\n";

static void generic_pipeline_keeps_numerics(void **state) {
  fixture *f = *state;
  parse(f, pipeline_text);
  bind(f, "T", 8);
  bind(f, "B", 2);
  uint32_t before = count_nodes(f->graph);
  run_and_compare(f, generic_pipeline, false);
  assert_true(count_nodes(f->graph) < before);
  assert_int_equal(count_op(f->graph, ATTN_OP_MATMUL), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_RESHAPE), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_IOTA), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_SQRT), 0);
}

// Runs the generic pipeline over pipeline_text with T = 8. Allocation `fail` of the passes fails
// (never, when negative), and with `is_single` false every one after it too. Returns the status,
// the number of allocations the passes made and, on success, the printed result.
static attn_status run_failing_at(long fail, bool is_single, long *out_requests, char **out_text) {
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = NULL;
  assert_int_equal(attn_parse_text("t.attn", pipeline_text, strlen(pipeline_text), NULL,
                                   attn_counting_allocator_get(&counter), &diag, &graph),
                   ATTN_OK);
  attn_pipeline pipeline;
  assert_int_equal(attn_pipeline_parse(generic_pipeline, attn_allocator_system(), &diag, &pipeline),
                   ATTN_OK);
  int64_t symbols[2] = {-1, -1};
  uint32_t t;
  assert_true(attn_graph_find_symbol(graph, "T", &t));
  symbols[t] = 8;
  attn_pipeline_run_options options = {.verify_each = true, .symbol_values = symbols};
  long parsed = (long)counter.total_requests;
  if (fail >= 0 && is_single)
    counter.fail_at = parsed + fail;
  else if (fail >= 0)
    counter.fail_after = parsed + fail;
  attn_status status = attn_pipeline_run(&pipeline, graph, &options);
  *out_requests = (long)counter.total_requests - parsed;
  counter.fail_at = -1;
  counter.fail_after = -1;
  *out_text = status == ATTN_OK ? pass_test_print(graph) : NULL;
  if (status != ATTN_OK && status != ATTN_ERROR_OUT_OF_MEMORY)
    attn_diag_write(&diag, stderr);
  attn_pipeline_deinit(&pipeline);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
  assert_int_equal(counter.live_bytes, 0);
  return status;
}

// Every allocation the generic passes make fails in turn, alone and with every later one:
// each failure is reported as out of memory, none is swallowed into a different result, and
// nothing leaks.
static void generic_pipeline_survives_every_allocation_failure(void **state) {
  (void)state;
  long requests, ignored;
  char *want = NULL;
  assert_int_equal(run_failing_at(-1, false, &requests, &want), ATTN_OK);
  assert_true(requests > 10);
  uint32_t failures = 0;
  for (long fail = 0; fail < requests; fail++) {
    for (int is_single = 0; is_single < 2; is_single++) {
      char *text = NULL;
      attn_status status = run_failing_at(fail, is_single, &ignored, &text);
      if (status == ATTN_OK)
        assert_string_equal(text, want);
      else
        assert_int_equal(status, ATTN_ERROR_OUT_OF_MEMORY);
      failures += status == ATTN_ERROR_OUT_OF_MEMORY;
      free(text);
    }
  }
  assert_int_equal(failures, 2 * requests);
  free(want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(fold_constants_folds_chains_bit_for_bit, setup, teardown),
      cmocka_unit_test_setup_teardown(fold_constants_respects_max_bytes, setup, teardown),
      cmocka_unit_test_setup_teardown(fold_constants_leaves_what_it_cannot_evaluate, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(cse_merges_equal_nodes, setup, teardown),
      cmocka_unit_test_setup_teardown(cse_merges_a_large_graph, setup, teardown),
      cmocka_unit_test_setup_teardown(canonicalize_simplifies_and_keeps_numerics, setup, teardown),
      cmocka_unit_test_setup_teardown(specialize_shapes_substitutes_bound_symbols, setup, teardown),
      cmocka_unit_test_setup_teardown(specialize_shapes_keeps_unbound_symbols, setup, teardown),
      cmocka_unit_test_setup_teardown(specialize_shapes_without_bindings_changes_nothing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(specialize_shapes_rejects_impossible_bindings, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(generic_pipeline_keeps_numerics, setup, teardown),
      cmocka_unit_test(generic_pipeline_survives_every_allocation_failure),
  };
  return cmocka_run_group_tests_name("passes/generic", tests, NULL, NULL);
}
