// recognize-attention: the golden files tests/ir/passes/recognize_attention*.attn and the cases
// below, each evaluated by the reference evaluator before and after the pass on seeded random
// inputs (relative L2 ≤ 1e-5), with the attention nodes it made counted and their attributes
// checked; and every allocation failure in the pass reported as out of memory, without a crash
// or a leak.
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

enum { MAX_SYMBOLS = 16 };

static const double tolerance = 1e-5;

typedef struct fixture {
  attn_counting_allocator counter;
  attn_diag diag;
  attn_graph *graph;
  int64_t symbols[MAX_SYMBOLS]; // by symbol index, < 0 unbound
} fixture;

static int setup(void **state) {
  fixture *f = test_calloc(1, sizeof(*f));
  attn_counting_allocator_init(&f->counter, attn_allocator_system());
  attn_diag_init(&f->diag, attn_allocator_system());
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

static void adopt(fixture *f, attn_status status) {
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  assert_true(f->graph->symbol_count <= MAX_SYMBOLS);
  for (uint32_t s = 0; s < MAX_SYMBOLS; s++)
    f->symbols[s] = -1;
}

static void parse(fixture *f, const char *text) {
  attn_graph_destroy(f->graph);
  f->graph = NULL;
  adopt(f, attn_parse_text("t.attn", text, strlen(text), NULL,
                           attn_counting_allocator_get(&f->counter), &f->diag, &f->graph));
}

static void parse_file(fixture *f, const char *path) {
  attn_graph_destroy(f->graph);
  f->graph = NULL;
  adopt(f,
        attn_parse_file(path, NULL, attn_counting_allocator_get(&f->counter), &f->diag, &f->graph));
}

// Binds `name` when the graph has such a symbol.
static void bind(fixture *f, const char *name, int64_t value) {
  uint32_t index;
  if (attn_graph_find_symbol(f->graph, name, &index))
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

static uint32_t count_op(const attn_graph *graph, attn_op op) {
  uint32_t count = 0;
  for (uint32_t n = 1; n < graph->node_count; n++)
    count += !graph->nodes[n].is_dead && graph->nodes[n].op == op;
  return count;
}

// The node producing the graph output `name`.
static const attn_node *output_node(const fixture *f, const char *name) {
  const attn_graph *g = f->graph;
  for (uint32_t i = 0; i < g->output_count; i++)
    if (strcmp(g->output_names[i], name) == 0)
      return attn_value_producer(g, g->outputs[i]);
  fail_msg("no output %s", name);
  return NULL;
}

// The attributes of the attention node producing output `name`.
static const attn_attention_attrs *attention_of(const fixture *f, const char *name) {
  const attn_node *node = output_node(f, name);
  assert_non_null(node);
  assert_int_equal(node->op, ATTN_OP_ATTENTION);
  return node->attrs;
}

static const attn_type *input_type(const fixture *f, const attn_node *node, uint32_t i) {
  assert_true(i < node->input_count);
  return &attn_graph_value(f->graph, node->inputs[i])->type;
}

// ---- evaluation ---------------------------------------------------------------------------------

// Inputs and weights: floats in [-2, 2), integers in [0, 4), bools with the first element of
// every last-axis row true (a padding mask that keeps a key in every row).
static const pass_test_data data = {2.0, 4, true};

// Evaluates the fixture's graph; unbound symbols take 5.
static void evaluate(fixture *f, pass_test_outputs *out) {
  int64_t bound[MAX_SYMBOLS];
  for (uint32_t s = 0; s < MAX_SYMBOLS; s++)
    bound[s] = f->symbols[s] < 0 ? 5 : f->symbols[s];
  attn_status status = pass_test_evaluate(f->graph, bound, &data, &data, &f->diag, out);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
}

// Runs `pipeline` over the fixture's graph and checks the outputs before and after.
static void run_and_compare(fixture *f, const char *pipeline) {
  pass_test_outputs before = {0}, after = {0};
  evaluate(f, &before);
  attn_status status = run_passes(f, pipeline);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  evaluate(f, &after);
  pass_test_compare(pipeline, &before, &after, tolerance, PASS_TEST_FINITE);
  pass_test_outputs_free(&before);
  pass_test_outputs_free(&after);
}

// ---- the golden files ---------------------------------------------------------------------------

typedef struct golden_case {
  const char *path;
  uint32_t attention; // attention nodes after the pass
  uint32_t softmax;   // softmax nodes left
} golden_case;

static const golden_case golden_cases[] = {
    {"tests/ir/passes/recognize_attention.attn", 2, 0},
    {"tests/ir/passes/recognize_attention_masks.attn", 6, 0},
    {"tests/ir/passes/recognize_attention_negative.attn", 1, 8},
};

static void golden_files_keep_their_numerics(void **state) {
  fixture *f = *state;
  for (size_t i = 0; i < sizeof(golden_cases) / sizeof(golden_cases[0]); i++) {
    const golden_case *c = &golden_cases[i];
    parse_file(f, c->path);
    assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 0);
    bind(f, "B", 2);
    bind(f, "T", 7);
    bind(f, "T_past", 3);
    run_and_compare(f, "recognize-attention,dce");
    assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), c->attention);
    assert_int_equal(count_op(f->graph, ATTN_OP_SOFTMAX), c->softmax);
    // A second run finds nothing more.
    attn_pass_context ctx = {.diag = &f->diag};
    attn_arena_init(&ctx.scratch, attn_allocator_system());
    assert_int_equal(attn_pass_recognize_attention(&ctx, f->graph), ATTN_OK);
    attn_arena_deinit(&ctx.scratch);
    assert_false(ctx.changed);
  }
}

static void exported_models_get_their_scale_and_heads(void **state) {
  fixture *f = *state;
  parse_file(f, golden_cases[0].path);
  run_and_compare(f, "recognize-attention,dce");
  uint32_t seen = 0;
  for (uint32_t n = 1; n < f->graph->node_count; n++) {
    const attn_node *node = &f->graph->nodes[n];
    if (node->is_dead || node->op != ATTN_OP_ATTENTION)
      continue;
    const attn_attention_attrs *attrs = node->attrs;
    assert_int_equal(attrs->mask, ATTN_MASK_CAUSAL);
    assert_false(attrs->has_mask);
    if (input_type(f, node, 0)->dims[3] == 16) { // GPT-2: divided by the constant 4
      assert_true(attrs->scale == 0.25);
      assert_int_equal(input_type(f, node, 1)->dims[1], 2);
    } else { // Llama: multiplied by the f32 constant 8^-0.5, two kv heads for four
      assert_true(attrs->scale == (double)0.35355339059327373f);
      assert_int_equal(input_type(f, node, 0)->dims[1], 4);
      assert_int_equal(input_type(f, node, 1)->dims[1], 2);
      assert_int_equal(input_type(f, node, 2)->dims[1], 2);
    }
    seen++;
  }
  assert_int_equal(seen, 2);

  parse_file(f, golden_cases[1].path);
  bind(f, "T", 6);
  bind(f, "T_past", 4);
  run_and_compare(f, "recognize-attention,dce");
  const attn_attention_attrs *window = attention_of(f, "window");
  assert_int_equal(window->mask, ATTN_MASK_SLIDING_WINDOW);
  assert_int_equal(window->window, 3);
  assert_int_equal(window->sinks, 1);
  assert_true(attention_of(f, "decode")->scale == 0.25); // 1 / sqrt(16)
  assert_int_equal(attention_of(f, "decode")->mask, ATTN_MASK_CAUSAL);
  assert_true(attention_of(f, "padded")->has_mask);
  assert_true(attention_of(f, "prescaled")->scale == 0.25); // 0.5 * 0.5
  assert_int_equal(attention_of(f, "prescaled")->mask, ATTN_MASK_NONE);
  assert_int_equal(attention_of(f, "filled")->mask, ATTN_MASK_CAUSAL);
  assert_int_equal(input_type(f, output_node(f, "mqa"), 1)->dims[1], 1);
}

// ---- explicit masks -----------------------------------------------------------------------------

static const char bool_mask_text[] =
    "graph g(q: f32[B, 4, T, 16], k: f32[B, 4, T, 16], v: f32[B, 4, T, 16],\n"
    "        keep: bool[B, 1, 1, T], noise: f32[B, 1, 1, T])\n"
    "    -> (kept: f32[B, 4, T, 16], dropped: f32[B, 4, T, 16], both: f32[B, 4, T, 16],\n"
    "        either: f32[B, 4, T, 16], flipped: f32[B, 4, T, 16]) {\n"
    "  kv = iota(i64[1, T], axis=1)\n"
    "  qi = iota(i64[T, 1])\n"
    "  kept = matmul(softmax(where(keep, mul(matmul(q, k, transpose_b=true), 0.25), -1e9)), v)\n"
    "  drop = and(lt(noise, 0.0), gt(iota(i64[T]), 0))\n"
    "  dropped = matmul(softmax(where(drop, -inf, mul(matmul(q, k, transpose_b=true), 0.25))), "
    "v)\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.25)\n"
    "  both = matmul(softmax(where(and(le(kv, qi), keep), s, -inf)), v)\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.25)\n"
    "  either = matmul(softmax(where(or(drop, gt(kv, qi)), -inf, s)), v)\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.25)\n"
    "  flipped = matmul(softmax(where(not(keep), -inf, s)), v)\n"
    "  return kept, dropped, both, either, flipped\n"
    "}\n";

static void runtime_masks_become_the_mask_input(void **state) {
  fixture *f = *state;
  parse(f, bool_mask_text);
  bind(f, "B", 2);
  bind(f, "T", 6);
  run_and_compare(f, "recognize-attention,dce");
  assert_int_equal(count_op(f->graph, ATTN_OP_SOFTMAX), 0);
  const attn_graph *g = f->graph;
  attn_value_id keep = g->inputs[3];
  // where(keep, s, fill): keep is the mask.
  const attn_node *kept = output_node(f, "kept");
  assert_true(attention_of(f, "kept")->has_mask);
  assert_int_equal(attention_of(f, "kept")->mask, ATTN_MASK_NONE);
  assert_int_equal(kept->inputs[3].index, keep.index);
  // where(drop, fill, s): the attention reads not(drop).
  const attn_node *dropped = output_node(f, "dropped");
  const attn_node *negation = attn_value_producer(g, dropped->inputs[3]);
  assert_int_equal(negation->op, ATTN_OP_NOT);
  assert_int_equal(attn_value_producer(g, negation->inputs[0])->op, ATTN_OP_AND);
  // and(causal, keep) and or(drop, future) split into the causal kind and the runtime part.
  assert_int_equal(attention_of(f, "both")->mask, ATTN_MASK_CAUSAL);
  assert_int_equal(output_node(f, "both")->inputs[3].index, keep.index);
  assert_int_equal(attention_of(f, "either")->mask, ATTN_MASK_CAUSAL);
  assert_int_equal(attn_value_producer(g, output_node(f, "either")->inputs[3])->op, ATTN_OP_NOT);
  // where(not(keep), fill, s) reads keep itself.
  assert_int_equal(output_node(f, "flipped")->inputs[3].index, keep.index);
}

// ---- layouts ------------------------------------------------------------------------------------

static const char layout_text[] =
    "graph g(q: f32[B, 4, T, 16], k: f32[B, 4, T, 16], v: f32[B, 4, T, 16],\n"
    "        qt: f32[B, 4, 16, T], vt: f32[B, 4, 16, T], k5: f32[B, 2, 1, T, 16],\n"
    "        v5: f32[B, 2, 1, T, 16], one: f32[B, T, 16], kb: f32[B, T, 4, 16])\n"
    "    -> (transposed: f32[B, 4, T, 16], grouped: f32[B, 4, T, 16], single: f32[B, 4, T, 16],\n"
    "        hf: f32[B, 4, T, 16]) {\n"
    "  s = matmul(qt, k, transpose_a=true, transpose_b=true)\n"
    "  transposed = matmul(softmax(mul(s, 0.25)), vt, transpose_b=true)\n"
    "  kr = reshape(expand(k5, shape=[B, 2, 2, T, 16]), shape=[B, 4, T, 16])\n"
    "  vr = reshape(expand(v5, shape=[B, 2, 2, T, 16]), shape=[B, 4, T, 16])\n"
    "  grouped = matmul(softmax(mul(matmul(q, kr, transpose_b=true), 0.25)), vr)\n"
    "  o5 = expand(reshape(one, shape=[B, 1, 1, T, 16]), shape=[B, 2, 2, T, 16])\n"
    "  o = reshape(o5, shape=[B, 4, T, 16])\n"
    "  single = matmul(softmax(mul(matmul(q, o, transpose_b=true), 0.25)), o)\n"
    "  hf = matmul(softmax(mul(matmul(q, permute(kb, perm=[0, 2, 3, 1])), 0.25)), v)\n"
    "  return transposed, grouped, single, hf\n"
    "}\n";

static void layouts_of_q_k_and_v_are_undone(void **state) {
  fixture *f = *state;
  parse(f, layout_text);
  bind(f, "B", 2);
  bind(f, "T", 5);
  run_and_compare(f, "recognize-attention,dce");
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 4);
  assert_int_equal(count_op(f->graph, ATTN_OP_MATMUL), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_EXPAND), 0);
  // qt and vt are read through a swap of their last two axes.
  const attn_node *transposed = output_node(f, "transposed");
  for (uint32_t i = 0; i < 3; i += 2) {
    const attn_node *p = attn_value_producer(f->graph, transposed->inputs[i]);
    assert_int_equal(p->op, ATTN_OP_PERMUTE);
    const int64_t *perm = ((const attn_perm_attrs *)p->attrs)->perm;
    assert_true(perm[0] == 0 && perm[1] == 1 && perm[2] == 3 && perm[3] == 2);
  }
  // k5 [B, 2, 1, T, 16] is read as [B, 2, T, 16]; one kv head as [B, 1, T, 16].
  assert_int_equal(input_type(f, output_node(f, "grouped"), 1)->dims[1], 2);
  assert_int_equal(input_type(f, output_node(f, "grouped"), 2)->dims[1], 2);
  assert_int_equal(input_type(f, output_node(f, "single"), 1)->dims[1], 1);
  assert_int_equal(input_type(f, output_node(f, "single"), 2)->dims[1], 1);
  // kb [B, T, H, D] permuted to [B, H, D, T] is read as permute(kb, [0, 2, 1, 3]).
  const attn_node *k = attn_value_producer(f->graph, output_node(f, "hf")->inputs[1]);
  assert_int_equal(k->op, ATTN_OP_PERMUTE);
  const int64_t *perm = ((const attn_perm_attrs *)k->attrs)->perm;
  assert_true(perm[0] == 0 && perm[1] == 2 && perm[2] == 1 && perm[3] == 3);
}

// ---- constant masks evaluated -------------------------------------------------------------------

// Eight queries after four cached keys; the masks are computed from constants and iotas of
// constant shape, so the pass evaluates them.
static const char evaluated_text[] =
    "graph g(q: f32[B, 2, 8, 16], k: f32[B, 2, 12, 16], v: f32[B, 2, 12, 16])\n"
    "    -> (sliced: f32[B, 2, 8, 16], windowed: f32[B, 2, 8, 16], added: f32[B, 2, 8, 16],\n"
    "        extra: f32[B, 2, 8, 16]) {\n"
    "  bias = le(iota(i64[1, 1, 12, 12], axis=3), iota(i64[1, 1, 12, 12], axis=2))\n"
    "  causal = slice(bias, axis=2, start=4, end=12)\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.125)\n"
    "  sliced = matmul(softmax(where(causal, s, -3.4028234663852886e38)), v)\n"
    "  pos = iota(i64[8, 1], start=4)\n"
    "  kv = iota(i64[1, 12], axis=1)\n"
    "  window = and(le(kv, pos), or(gt(kv, sub(pos, 3)), lt(kv, 2)))\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.125)\n"
    "  windowed = matmul(softmax(where(window, s, -inf)), v)\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.125)\n"
    "  added = matmul(softmax(add(s, where(causal, 0.0, -1e30))), v)\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.125)\n"
    "  extra = matmul(softmax(where(or(causal, eq(kv, 11)), s, -inf)), v)\n"
    "  return sliced, windowed, added, extra\n"
    "}\n";

static void constant_masks_are_evaluated(void **state) {
  fixture *f = *state;
  parse(f, evaluated_text);
  bind(f, "B", 2);
  run_and_compare(f, "recognize-attention,dce");
  assert_int_equal(attention_of(f, "sliced")->mask, ATTN_MASK_CAUSAL);
  assert_true(attention_of(f, "sliced")->scale == 0.125);
  const attn_attention_attrs *windowed = attention_of(f, "windowed");
  assert_int_equal(windowed->mask, ATTN_MASK_SLIDING_WINDOW);
  assert_int_equal(windowed->window, 3);
  assert_int_equal(windowed->sinks, 2);
  assert_int_equal(attention_of(f, "added")->mask, ATTN_MASK_CAUSAL);
  assert_false(attention_of(f, "added")->has_mask);
  // A causal mask that also shows every row the last key is no known kind.
  assert_int_equal(output_node(f, "extra")->op, ATTN_OP_MATMUL);
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 3);
}

// ---- what stays ---------------------------------------------------------------------------------

static const char min_fill_text[] =
    "graph g(q: f32[B, 2, T, 8], k: f32[B, 2, T, 8], v: f32[B, 2, T, 8])\n"
    "    -> (o: f32[B, 2, T, 8]) {\n"
    "  s = mul(matmul(q, k, transpose_b=true), 0.5)\n"
    "  visible = le(iota(i64[1, T], axis=1), iota(i64[T, 1]))\n"
    "  return matmul(softmax(where(visible, s, -1000.0)), v)\n"
    "}\n";

static void fills_above_min_fill_are_not_masks(void **state) {
  fixture *f = *state;
  parse(f, min_fill_text);
  bind(f, "T", 6);
  run_and_compare(f, "recognize-attention");
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 0);
  run_and_compare(f, "recognize-attention{min-fill=-1000}");
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 1);
  assert_int_equal(count_op(f->graph, ATTN_OP_SOFTMAX), 0);
}

static const char shared_text[] =
    "graph g(q: f32[B, 2, T, 8], k: f32[B, 2, T, 8], v: f32[B, 2, T, 8])\n"
    "    -> (o: f32[B, 2, T, 8], p: f32[B, 2, T, T], r: f32[B, 2, T, 8], m: f32[B, 2, T, T],\n"
    "        twice: f32[B, 2, T, T]) {\n"
    "  p = softmax(mul(matmul(q, k, transpose_b=true), 0.5))\n"
    "  o = matmul(p, v)\n"
    "  m = matmul(q, k, transpose_b=true)\n"
    "  r = matmul(softmax(mul(m, 0.5)), v)\n"
    "  pp = softmax(mul(matmul(q, q, transpose_b=true), 0.5))\n"
    "  twice = matmul(pp, pp)\n"
    "  return o, p, r, m, twice\n"
    "}\n";

static void values_with_other_users_block_the_rewrite(void **state) {
  fixture *f = *state;
  parse(f, shared_text);
  bind(f, "T", 8);
  uint32_t nodes = f->graph->node_count;
  run_and_compare(f, "recognize-attention");
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 0);
  assert_int_equal(f->graph->node_count, nodes);
}

// Strict comparisons need the offset of one: j < i + 1 is causal, j < i hides the diagonal. q
// divided by a constant folds into the scale.
static const char strict_text[] =
    "graph g(q: f32[B, 4, T, 16], k: f32[B, 4, T, 16], v: f32[B, 4, T, 16])\n"
    "    -> (shifted: f32[B, 4, T, 16], strict: f32[B, 4, T, 16]) {\n"
    "  kv = iota(i64[1, T], axis=1)\n"
    "  qi = iota(i64[T, 1])\n"
    "  s = matmul(div(q, 8.0), k, transpose_b=true)\n"
    "  shifted = matmul(softmax(where(gt(add(qi, 1), kv), s, -inf)), v)\n"
    "  s = matmul(q, k, transpose_b=true)\n"
    "  strict = matmul(softmax(where(lt(kv, qi), s, -1e9)), v)\n"
    "  return shifted, strict\n"
    "}\n";

static void strict_comparisons_count_their_offset(void **state) {
  fixture *f = *state;
  parse(f, strict_text);
  bind(f, "T", 6);
  run_and_compare(f, "recognize-attention,dce");
  assert_int_equal(attention_of(f, "shifted")->mask, ATTN_MASK_CAUSAL);
  assert_true(attention_of(f, "shifted")->scale == 0.125);
  assert_int_equal(output_node(f, "strict")->op, ATTN_OP_MATMUL);
}

// Rows before the first key (more queries than keys) would have no visible key, and pᵀ v is no
// attention.
static const char no_attention_text[] =
    "graph g(q: f32[B, 4, T + 2, 16], k: f32[B, 4, T, 16], v: f32[B, 4, T, 16],\n"
    "        qs: f32[B, 4, T, 16])\n"
    "    -> (early: f32[B, 4, T + 2, 16], transposed: f32[B, 4, T, 16]) {\n"
    "  s = matmul(q, k, transpose_b=true)\n"
    "  visible = le(iota(i64[1, T], axis=1, start=2), iota(i64[T + 2, 1]))\n"
    "  early = matmul(softmax(where(visible, s, -1e9)), v)\n"
    "  transposed = matmul(softmax(matmul(qs, k, transpose_b=true)), v, transpose_a=true)\n"
    "  return early, transposed\n"
    "}\n";

static void rows_without_keys_and_transposed_weights_stay(void **state) {
  fixture *f = *state;
  parse(f, no_attention_text);
  bind(f, "T", 6);
  run_and_compare(f, "recognize-attention,dce");
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 0);
  assert_int_equal(count_op(f->graph, ATTN_OP_SOFTMAX), 2);
}

// A constant mask read both ways is two different masks; a constant [8, 6] mask whose first
// rows see no key; finite constant masks added before or after an explicit one; two different
// windows; and an iota of one element, which is no key index.
static const char more_constants_text[] =
    "graph g(q: f32[B, 2, 8, 16], k: f32[B, 2, 8, 16], v: f32[B, 2, 8, 16],\n"
    "        k6: f32[B, 2, 6, 16], v6: f32[B, 2, 6, 16], qt: f32[B, 2, T, 16],\n"
    "        kt: f32[B, 2, T, 16], vt: f32[B, 2, T, 16], pad: f32[B, 1, 1, T])\n"
    "    -> (lower: f32[B, 2, 8, 16], upper: f32[B, 2, 8, 16], short: f32[B, 2, 8, 16],\n"
    "        after: f32[B, 2, T, 16], before: f32[B, 2, T, 16], windows: f32[B, 2, 8, 16],\n"
    "        single: f32[B, 2, T, 16]) {\n"
    "  causal = le(iota(i64[1, 8], axis=1), iota(i64[8, 1]))\n"
    "  lower = matmul(softmax(where(causal, matmul(q, k, transpose_b=true), -1e9)), v)\n"
    "  upper = matmul(softmax(where(causal, -1e9, matmul(q, k, transpose_b=true))), v)\n"
    "  late = le(add(iota(i64[1, 6], axis=1), 2), iota(i64[8, 1]))\n"
    "  short = matmul(softmax(where(late, matmul(q, k6, transpose_b=true), -1e9)), v6)\n"
    "  future = where(gt(iota(i64[1, T], axis=1), iota(i64[T, 1])), -1e9, 0.0)\n"
    "  s = add(matmul(qt, kt, transpose_b=true), pad)\n"
    "  after = matmul(softmax(add(s, future)), vt)\n"
    "  s = add(matmul(qt, kt, transpose_b=true), future)\n"
    "  before = matmul(softmax(add(s, pad)), vt)\n"
    "  kv = iota(i64[1, 8], axis=1)\n"
    "  qi = iota(i64[8, 1])\n"
    "  three = and(causal, gt(kv, sub(qi, 3)))\n"
    "  four = and(causal, gt(kv, sub(qi, 4)))\n"
    "  s = where(three, matmul(q, k, transpose_b=true), -inf)\n"
    "  windows = matmul(softmax(where(four, s, -inf)), v)\n"
    "  s = matmul(qt, kt, transpose_b=true)\n"
    "  single = matmul(softmax(where(le(iota(i64[1, 1], axis=1), iota(i64[T, 1])), s, -1e9)), "
    "vt)\n"
    "  return lower, upper, short, after, before, windows, single\n"
    "}\n";

static void constant_masks_are_read_as_used(void **state) {
  fixture *f = *state;
  parse(f, more_constants_text);
  bind(f, "T", 6);
  run_and_compare(f, "recognize-attention,dce");
  assert_int_equal(attention_of(f, "lower")->mask, ATTN_MASK_CAUSAL);
  static const char *const stay[] = {"upper", "short", "after", "before", "windows", "single"};
  for (size_t i = 0; i < sizeof(stay) / sizeof(stay[0]); i++)
    assert_int_equal(output_node(f, stay[i])->op, ATTN_OP_MATMUL);
  assert_int_equal(count_op(f->graph, ATTN_OP_ATTENTION), 1);
}

// ---- allocation failures ------------------------------------------------------------------------

// Runs the pass over `path` (or `text` when path is NULL) with allocation `fail` of the pass
// failing (never, when negative), and with `is_single` false every one after it too. Returns the
// status, the number of allocations the pass made and, on success, the printed result.
static attn_status run_failing_at(const char *path, const char *text, long fail, bool is_single,
                                  long *out_requests, char **out_text) {
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  attn_allocator a = attn_counting_allocator_get(&counter);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = NULL;
  attn_status status = path ? attn_parse_file(path, NULL, a, &diag, &graph)
                            : attn_parse_text("t.attn", text, strlen(text), NULL, a, &diag, &graph);
  assert_int_equal(status, ATTN_OK);
  attn_pipeline pipeline;
  assert_int_equal(
      attn_pipeline_parse("recognize-attention", attn_allocator_system(), &diag, &pipeline),
      ATTN_OK);
  attn_pipeline_run_options options = {.verify_each = true};
  long parsed = (long)counter.total_requests;
  if (fail >= 0 && is_single)
    counter.fail_at = parsed + fail;
  else if (fail >= 0)
    counter.fail_after = parsed + fail;
  status = attn_pipeline_run(&pipeline, graph, &options);
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

static void sweep(const char *path, const char *text) {
  long requests, ignored;
  char *want = NULL;
  assert_int_equal(run_failing_at(path, text, -1, false, &requests, &want), ATTN_OK);
  assert_non_null(strstr(want, "attention("));
  assert_true(requests > 4);
  for (long fail = 0; fail < requests; fail++) {
    for (int is_single = 0; is_single < 2; is_single++) {
      char *got = NULL;
      attn_status status = run_failing_at(path, text, fail, is_single, &ignored, &got);
      if (status != ATTN_ERROR_OUT_OF_MEMORY) {
        fprintf(stderr, "allocation %ld (%s) failed: status %d\n", fail,
                is_single ? "alone" : "and every later one", (int)status);
        fail();
      }
      free(got);
    }
  }
  free(want);
}

// Every allocation the pass (and the manager around it) makes fails in turn, alone and with
// every later one: each is reported as out of memory, and nothing leaks.
static void every_allocation_failure_is_out_of_memory(void **state) {
  (void)state;
  sweep(golden_cases[0].path, NULL);
  sweep(golden_cases[1].path, NULL);
  sweep(NULL, evaluated_text);
  sweep(NULL, bool_mask_text);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(golden_files_keep_their_numerics, setup, teardown),
      cmocka_unit_test_setup_teardown(exported_models_get_their_scale_and_heads, setup, teardown),
      cmocka_unit_test_setup_teardown(runtime_masks_become_the_mask_input, setup, teardown),
      cmocka_unit_test_setup_teardown(layouts_of_q_k_and_v_are_undone, setup, teardown),
      cmocka_unit_test_setup_teardown(constant_masks_are_evaluated, setup, teardown),
      cmocka_unit_test_setup_teardown(strict_comparisons_count_their_offset, setup, teardown),
      cmocka_unit_test_setup_teardown(rows_without_keys_and_transposed_weights_stay, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(constant_masks_are_read_as_used, setup, teardown),
      cmocka_unit_test_setup_teardown(fills_above_min_fill_are_not_masks, setup, teardown),
      cmocka_unit_test_setup_teardown(values_with_other_users_block_the_rewrite, setup, teardown),
      cmocka_unit_test(every_allocation_failure_is_out_of_memory),
  };
  return cmocka_run_group_tests_name("passes/recognize_attention", tests, NULL, NULL);
}
