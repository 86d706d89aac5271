// Unit tests for the .attn front end (lexer, parser, expander) and the IR printer: every
// construct, every error path (status, message, line:col), print → parse → print stability,
// allocation failures, and that docs/ops.md matches attn_ops_write_doc().
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/parse.h"
#include "ir/print.h"
#include "runtime/tensor/weights.h"

typedef struct fixture {
  attn_counting_allocator counter;
  attn_diag diag;
  attn_graph *graph;
  attn_config *config;
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
  attn_config_destroy(f->config);
  attn_diag_deinit(&f->diag);
  assert_int_equal(f->counter.live_bytes, 0); // nothing leaked
  test_free(f);
  return 0;
}

static attn_allocator allocator(fixture *f) {
  return attn_counting_allocator_get(&f->counter);
}

static void use_config(fixture *f, const char *json) {
  assert_int_equal(
      attn_config_parse(json, strlen(json), "config.json", allocator(f), &f->diag, &f->config),
      ATTN_OK);
}

static attn_status parse(fixture *f, const char *text) {
  attn_graph_destroy(f->graph);
  f->graph = NULL;
  attn_diag_clear(&f->diag);
  attn_parse_options options = {.config = f->config};
  return attn_parse_text("t.attn", text, strlen(text), &options, allocator(f), &f->diag, &f->graph);
}

// Prints the diagnostics when a parse that should succeed fails.
static void parse_ok(fixture *f, const char *text) {
  attn_status status = parse(f, text);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  assert_non_null(f->graph);
}

// The parse fails with `status` and its (first) error says `message` at line:col.
static void parse_fails(fixture *f, const char *text, attn_status status, const char *message,
                        uint32_t line, uint32_t col) {
  assert_int_equal(parse(f, text), status);
  assert_null(f->graph);
  const attn_diagnostic *error = NULL;
  for (size_t i = 0; i < f->diag.count && !error; i++)
    if (f->diag.items[i].severity == ATTN_SEVERITY_ERROR)
      error = &f->diag.items[i];
  assert_non_null(error);
  if (!strstr(error->message, message) || error->loc.line != line || error->loc.col != col) {
    attn_diag_write(&f->diag, stderr);
    fprintf(stderr, "want %u:%u: ...%s...\n", line, col, message);
  }
  assert_non_null(strstr(error->message, message));
  assert_int_equal(error->loc.line, line);
  assert_int_equal(error->loc.col, col);
  assert_string_equal(error->loc.file, "t.attn");
}

// The printed text of f->graph (heap string, free it).
static char *print_graph(const attn_graph *graph) {
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  assert_non_null(out);
  assert_int_equal(attn_graph_print(graph, out), ATTN_OK);
  fclose(out);
  return text;
}

// print → parse → print gives the same text; returns the first print (free it).
static char *round_trip(fixture *f) {
  char *first = print_graph(f->graph);
  attn_graph *again = NULL;
  attn_status status =
      attn_parse_text("printed.attn", first, strlen(first), NULL, allocator(f), &f->diag, &again);
  if (status != ATTN_OK) {
    fprintf(stderr, "%s", first);
    attn_diag_write(&f->diag, stderr);
  }
  assert_int_equal(status, ATTN_OK);
  char *second = print_graph(again);
  if (strcmp(first, second) != 0)
    fprintf(stderr, "first:\n%s\nsecond:\n%s\n", first, second);
  assert_string_equal(first, second);
  free(second);
  attn_graph_destroy(again);
  return first;
}

static void assert_round_trip(fixture *f) {
  free(round_trip(f));
}

static const attn_node *find_op(const attn_graph *g, attn_op op, int nth) {
  for (uint32_t n = 1; n < g->node_count; n++)
    if (g->nodes[n].op == op && nth-- == 0)
      return &g->nodes[n];
  return NULL;
}

static uint32_t count_op(const attn_graph *g, attn_op op) {
  uint32_t count = 0;
  for (uint32_t n = 1; n < g->node_count; n++)
    count += g->nodes[n].op == op;
  return count;
}

static const attn_type *output_type(const attn_graph *g, uint32_t i) {
  return &attn_graph_value(g, g->outputs[i])->type;
}

static void assert_type_text(const attn_graph *g, const attn_type *type, const char *want) {
  char text[256];
  attn_graph_type_format(g, type, text, sizeof(text));
  assert_string_equal(text, want);
}

static const char *weight_name(const attn_node *node, uint32_t i) {
  return ((const attn_weight_attrs *)node->attrs)->names[i];
}

// ---- constructs ----------------------------------------------------------------------------

static const char mlp_model[] =
    "# A two-layer MLP.\n"
    "let D = 64\n"
    "let Hid = 4 * D\n"
    "\n"
    "def mlp(x) {\n"
    "  h = matmul(x, weight(\"fc1.weight\", f32[Hid, D]), transpose_b=true)\n"
    "  h = gelu(add(h, weight(\"fc1.bias\", f32[Hid])), approximate=tanh)\n"
    "  return matmul(h, weight(\"fc2.weight\", f32[D, Hid]), transpose_b=true)\n"
    "}\n"
    "\n"
    "graph tiny(x: f32[B, T, 64]) -> (y: f32[B, T, 64]) {\n"
    "  repeat i in 0..2 {\n"
    "    x = add(x, mlp(x) @ \"layers.{i}.\")\n"
    "  }\n"
    "  return x\n"
    "}\n";

static void parses_the_language_example(void **state) {
  fixture *f = *state;
  parse_ok(f, mlp_model);
  attn_graph *g = f->graph;
  assert_string_equal(g->name, "tiny");
  assert_int_equal(g->input_count, 1);
  assert_int_equal(g->output_count, 1);
  assert_string_equal(g->output_names[0], "y");
  assert_int_equal(g->symbol_count, 2);
  assert_int_equal(count_op(g, ATTN_OP_WEIGHT), 6);
  assert_int_equal(count_op(g, ATTN_OP_MATMUL), 4);
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 0), 0), "layers.0.fc1.weight");
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 5), 0), "layers.1.fc2.weight");
  const attn_weight_attrs *w = find_op(g, ATTN_OP_WEIGHT, 0)->attrs;
  assert_type_text(g, &w->type, "f32[256, 64]");
  assert_type_text(g, output_type(g, 0), "f32[B, T, 64]");
  const attn_gelu_attrs *gelu = find_op(g, ATTN_OP_GELU, 0)->attrs;
  assert_int_equal(gelu->approximate, ATTN_GELU_TANH);
  // Every node records where its call is: the first matmul is in mlp's body at 6:7.
  const attn_node *matmul = find_op(g, ATTN_OP_MATMUL, 0);
  assert_string_equal(matmul->loc.file, "t.attn");
  assert_int_equal(matmul->loc.line, 6);
  assert_int_equal(matmul->loc.col, 7);
  const attn_node *w0 = find_op(g, ATTN_OP_WEIGHT, 0);
  assert_int_equal(w0->loc.line, 6);
  assert_int_equal(w0->loc.col, 17);
  assert_int_equal(attn_graph_verify(g), ATTN_OK);
  assert_round_trip(f);
}

static void folds_compile_time_values(void **state) {
  fixture *f = *state;
  parse_ok(f, "let a = 7 / 2\n"
              "let b = 8 / 2\n"
              "let c = 7 % 3 + -1\n"
              "let d = int(a * 2) - b\n"
              "let e = max(2, b, 3) * min(5, 9) + pow(2, 3)\n"
              "let s = sqrt(16.0) == 4 ? 1 : 0\n"
              "let n = len([1, 2, 3]) + len(\"ab\")\n"
              "let yes = 2 >= 2 ? (1 != 2) : false\n"
              "let z = yes ? int(exp(0.0)) + int(log(1.0)) : 9\n"
              "graph g(x: f32[c + d, e, s, n, z]) -> (y: f32[3, 28, 1, 5, 1]) {\n"
              "  return x\n"
              "}\n");
  assert_type_text(f->graph, output_type(f->graph, 0), "f32[3, 28, 1, 5, 1]");
}

static void reads_config_values_with_fallbacks(void **state) {
  fixture *f = *state;
  use_config(f, "{\"n_embd\": 16, \"eps\": 1e-6, \"act\": \"tanh\", \"tied\": true,\n"
                " \"nothing\": null, \"rope_parameters\": {\"rope_theta\": 500000.0},\n"
                " \"id2label\": {\"0\": \"a\", \"1\": \"b\", \"2\": \"c\"}, \"sizes\": [1, 2]}");
  parse_ok(
      f,
      "let D = config.n_embd\n"
      "let theta = config.rope_theta ?? config.rope_parameters.rope_theta ?? 10000.0\n"
      "let inner = config.n_inner ?? 4 * D\n"
      "let fallback = config.nothing ?? 3\n"
      "let labels = len(config.id2label) + len(config.sizes) - 2\n"
      "graph g(x: f32[T, D]) -> (y: f32[T, D], z: f32[T, labels]) {\n"
      "  w = weight(\"w\", f32[D, inner])\n"
      "  h = matmul(x, w)\n"
      "  h = gelu(h, approximate=config.act)\n"
      "  p = rope(reshape(x, shape=[1, T, D]), iota(i64[T]), theta=theta)\n"
      "  z = matmul(x, weight(\"cls\", f32[D, labels]), transpose_b=config.tied ? false : true)\n"
      "  return layernorm(x, epsilon=config.eps), z\n"
      "}\n");
  const attn_weight_attrs *w = find_op(f->graph, ATTN_OP_WEIGHT, 0)->attrs;
  assert_type_text(f->graph, &w->type, "f32[16, 64]");
  const attn_rope_attrs *rope = find_op(f->graph, ATTN_OP_ROPE, 0)->attrs;
  assert_true(rope->theta == 500000.0);
  const attn_norm_attrs *norm = find_op(f->graph, ATTN_OP_LAYERNORM, 0)->attrs;
  assert_true(norm->epsilon == 1e-6);
  assert_int_equal(
      ((const attn_gelu_attrs *)find_op(f->graph, ATTN_OP_GELU, 0)->attrs)->approximate,
      ATTN_GELU_TANH);
  assert_type_text(f->graph, output_type(f->graph, 1), "f32[T, 3]");
  assert_round_trip(f);
}

static void inlines_subgraphs_with_prefixes(void **state) {
  fixture *f = *state;
  parse_ok(f, "let n = 3\n"
              "def linear(x, n_out, n_in) {\n"
              "  return add(matmul(x, weight(\"weight\", f32[n_out, n_in]), transpose_b=true),\n"
              "             weight(\"bias\", f32[n_out]))\n"
              "}\n"
              "def block(x, width) {\n"
              "  h = linear(x, width, 8) @ \"fc.\"\n"
              "  return relu(h), linear(x, 8, 8) @ \"skip.\"\n"
              "}\n"
              "graph g(x: f32[B, 8]) -> (y: f32[B, 4], s: f32[B, 8]) {\n"
              "  y, s = block(x, 4) @ \"blocks.{n}.\"\n"
              "  return y, s\n"
              "}\n");
  attn_graph *g = f->graph;
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 0), 0), "blocks.3.fc.weight");
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 1), 0), "blocks.3.fc.bias");
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 2), 0), "blocks.3.skip.weight");
  assert_type_text(g, output_type(g, 0), "f32[B, 4]");
  assert_type_text(g, output_type(g, 1), "f32[B, 8]");
  assert_round_trip(f);
}

static void unrolls_repeat_and_rebinds_names(void **state) {
  fixture *f = *state;
  parse_ok(f, "graph g(x: f32[4]) -> (y: f32[4], z: f32[4]) {\n"
              "  repeat i in 1..4 {\n"
              "    x = add(x, weight(\"w.{i}\", f32[4]))\n"
              "    last = x\n"
              "  }\n"
              "  repeat j in 5..5 {\n"
              "    x = neg(x)\n" // never runs
              "  }\n"
              "  let k = i * 10\n"
              "  return x, mul(last, weight(\"w.{k}\", f32[4]))\n"
              "}\n");
  attn_graph *g = f->graph;
  assert_int_equal(count_op(g, ATTN_OP_ADD), 3);
  assert_int_equal(count_op(g, ATTN_OP_NEG), 0);
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 0), 0), "w.1");
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 2), 0), "w.3");
  assert_string_equal(weight_name(find_op(g, ATTN_OP_WEIGHT, 3), 0), "w.30");
  assert_round_trip(f);
}

static void binds_multiple_outputs(void **state) {
  fixture *f = *state;
  parse_ok(f, "graph g(x: f32[2, 12]) -> (a: f32[2, 4], b: f32[2, 8], v: f32[2, 3], "
              "i: i64[2, 3]) {\n"
              "  a, b = split(x, axis=1, sizes=[4, 8])\n"
              "  v, i = topk(x, k=3)\n"
              "  return a, b, v, i\n"
              "}\n");
  const attn_node *split = find_op(f->graph, ATTN_OP_SPLIT, 0);
  assert_int_equal(split->output_count, 2);
  assert_string_equal(attn_graph_value(f->graph, split->outputs[0])->name, "a");
  assert_round_trip(f);
}

static void parses_attributes_generically(void **state) {
  fixture *f = *state;
  parse_ok(f, "graph g(x: f32[B, T, 64], ids: i64[B, T]) -> (y: f32[B, T, 64], "
              "m: f32[B, 1, 64], c: i32[B, T, 64], s: f32[B, T, 2, 32], e: f32[B, T, 128], "
              "p: f32[64, T, B], l: f32[B, T, 16]) {\n"
              "  y = softmax(x, axis=-1)\n"
              "  m = mean(x, axes=[1], keepdims=true)\n"
              "  c = cast(x, dtype=i32)\n"
              "  s = reshape(x, shape=[B, -1, 2, 64 / 2])\n"
              "  e = concat(x, x, axis=2)\n"
              "  p = permute(x, perm=[2, 1, 0])\n"
              "  l = slice(x, axis=2, start=8, end=40, step=2)\n"
              "  return y, m, c, s, e, p, l\n"
              "}\n");
  attn_graph *g = f->graph;
  const attn_reduce_attrs *mean = find_op(g, ATTN_OP_MEAN, 0)->attrs;
  assert_int_equal(mean->axis_count, 1);
  assert_int_equal(mean->axes[0], 1);
  assert_true(mean->keepdims);
  assert_int_equal(((const attn_cast_attrs *)find_op(g, ATTN_OP_CAST, 0)->attrs)->dtype,
                   ATTN_DTYPE_I32);
  assert_type_text(g, output_type(g, 3), "f32[B, T, 2, 32]");
  const attn_slice_attrs *slice = find_op(g, ATTN_OP_SLICE, 0)->attrs;
  assert_int_equal(slice->start, 8);
  assert_int_equal(slice->step, 2);
  char *text = round_trip(f);
  // Defaults are left out, set attributes printed.
  assert_non_null(strstr(text, "y = softmax(x)\n"));
  assert_non_null(strstr(text, "m = mean(x, axes=[1], keepdims=true)\n"));
  assert_non_null(strstr(text, "s = reshape(x, shape=[B, -1, 2, 32])\n"));
  assert_non_null(strstr(text, "l = slice(x, axis=2, start=8, end=40, step=2)\n"));
  free(text);
}

static void parses_symbolic_dims(void **state) {
  fixture *f = *state;
  parse_ok(f,
           "let H = 4\n"
           "graph g(k: f32[B, T_past + T, 64], x: f32[B, T, 64]) -> (y: f32[B, T_past + T, 4, 16], "
           "pos: i64[T], f: f32[B * (T_past + T), 64]) {\n"
           "  y = reshape(k, shape=[B, T_past + T, H, 64 / H])\n"
           "  f = reshape(k, shape=[B * (T_past + T), 64])\n"
           "  return y, iota(i64[T], axis=0, start=T_past), f\n"
           "}\n");
  attn_graph *g = f->graph;
  assert_int_equal(g->symbol_count, 3);
  const attn_iota_attrs *iota = find_op(g, ATTN_OP_IOTA, 0)->attrs;
  char text[64];
  attn_graph_dim_format(g, iota->start, text, sizeof(text));
  assert_string_equal(text, "T_past");
  char *printed = round_trip(f);
  assert_non_null(strstr(printed, "iota(i64[T], start=T_past)"));
  assert_non_null(strstr(printed, "f: f32[B * (T_past + T), 64]"));
  free(printed);
}

static void parses_weight_constant_and_iota_forms(void **state) {
  fixture *f = *state;
  parse_ok(f, "graph g(x: f32[3]) -> (a: f32[2, 3], b: f32[3], c: i64[2, 3], d: bool[2], "
              "e: f16[3], h: f32[4, 3]) {\n"
              "  a = constant(f32[2, 3], [1, 2.5, -3, 0.1, 1e-5, 1e30])\n"
              "  b = add(x, constant(f32[3], 0.5))\n"
              "  c = iota(i64[2, 3], axis=1, start=2)\n"
              "  d = constant(bool[2], [true, false])\n"
              "  e = constant(f16[3], [0.1, -2, 65504])\n"
              "  h = weight(\"lm_head.weight\" | \"wte.weight\", f32[4, 3])\n"
              "  return a, b, c, d, e, h\n"
              "}\n");
  attn_graph *g = f->graph;
  const attn_constant_attrs *a = find_op(g, ATTN_OP_CONSTANT, 0)->attrs;
  const float *data = a->data;
  assert_true(data[1] == 2.5f && data[2] == -3.0f && data[3] == 0.1f && data[5] == 1e30f);
  const attn_weight_attrs *w = find_op(g, ATTN_OP_WEIGHT, 0)->attrs;
  assert_int_equal(w->name_count, 2);
  assert_string_equal(w->names[1], "wte.weight");
  const attn_iota_attrs *iota = find_op(g, ATTN_OP_IOTA, 0)->attrs;
  assert_int_equal(iota->axis, 1);
  assert_int_equal(iota->start, 2);
  char *text = round_trip(f);
  assert_non_null(strstr(text, "a = constant(f32[2, 3], [1.0, 2.5, -3.0, 0.1, 1e-05, 1e+30])"));
  assert_non_null(strstr(text, "constant(f32[3], 0.5)"));
  assert_non_null(strstr(text, "c = iota(i64[2, 3], axis=1, start=2)"));
  assert_non_null(strstr(text, "d = constant(bool[2], [true, false])"));
  assert_non_null(strstr(text, "e = constant(f16[3], [0.1, -2.0, 65504.0])"));
  assert_non_null(strstr(text, "h = weight(\"lm_head.weight\" | \"wte.weight\", f32[4, 3])"));
  free(text);
}

static void turns_numeric_operands_into_constants(void **state) {
  fixture *f = *state;
  parse_ok(f, "graph g(x: f16[4], i: i64[4], m: bool[4]) -> (a: f16[4], b: bool[4], "
              "c: f16[4], d: f32[]) {\n"
              "  a = mul(x, 0.5)\n"
              "  b = lt(i, 2)\n"
              "  c = where(m, x, 0)\n"
              "  d = add(1, 2.5)\n"
              "  return a, b, c, d\n"
              "}\n");
  attn_graph *g = f->graph;
  const attn_constant_attrs *half = find_op(g, ATTN_OP_CONSTANT, 0)->attrs;
  assert_int_equal(half->type.dtype, ATTN_DTYPE_F16);
  assert_int_equal(half->type.rank, 0);
  const attn_constant_attrs *two = find_op(g, ATTN_OP_CONSTANT, 1)->attrs;
  assert_int_equal(two->type.dtype, ATTN_DTYPE_I64);
  assert_int_equal(*(const int64_t *)two->data, 2);
  const attn_constant_attrs *zero = find_op(g, ATTN_OP_CONSTANT, 2)->attrs;
  assert_int_equal(zero->type.dtype, ATTN_DTYPE_F16);
  const attn_constant_attrs *one = find_op(g, ATTN_OP_CONSTANT, 3)->attrs;
  assert_int_equal(one->type.dtype, ATTN_DTYPE_F32);
  // The constant's location is the literal's.
  const attn_node *node = find_op(g, ATTN_OP_CONSTANT, 0);
  assert_int_equal(node->loc.line, 2);
  assert_int_equal(node->loc.col, 14);
  assert_round_trip(f);
}

static void builds_score_mod_expressions(void **state) {
  fixture *f = *state;
  parse_ok(
      f, "let H = 4\n"
         "graph g(q: f32[B, H, T, 16], k: f32[B, 2, T, 16], v: f32[B, 2, T, 16],\n"
         "        slopes: f32[H], mask: bool[T, T]) -> (o: f32[B, H, T, 16], lse: f32[B, H, T]) {\n"
         "  bias = mul(slopes, 2.0)\n"
         "  o, lse = attention(q, k, v, mask, has_mask=true, lse=true, scale=0.25,\n"
         "      score_mod={ score + slopes[h] * (kv_idx - q_idx) + bias[h] * -1 +\n"
         "                  (q_idx >= kv_idx ? tanh(score / H) : max(score, 0)) +\n"
         "                  (b != h) + exp(-score) + slopes[0] })\n"
         "  return o, lse\n"
         "}\n");
  attn_graph *g = f->graph;
  const attn_node *node = find_op(g, ATTN_OP_ATTENTION, 0);
  assert_int_equal(node->input_count, 6); // q, k, v, mask, slopes, bias
  assert_int_equal(node->output_count, 2);
  const attn_attention_attrs *attrs = node->attrs;
  assert_true(attrs->has_mask && attrs->has_lse);
  assert_true(attrs->scale == 0.25);
  assert_non_null(attrs->score_mod);
  assert_string_equal(attn_graph_value(g, node->inputs[4])->name, "slopes");
  assert_string_equal(attn_graph_value(g, node->inputs[5])->name, "bias");
  char *text = round_trip(f);
  assert_non_null(strstr(text, "o, lse = attention(q, k, v, mask, scale=0.25, has_mask=true, "
                               "lse=true, score_mod={ "));
  assert_non_null(strstr(text, "slopes[h] * (kv_idx - q_idx)"));
  assert_non_null(strstr(text, "kv_idx <= q_idx ? tanh(score / 4.0) : max(score, 0.0)"));
  free(text);
}

static void accepts_comments_trailing_commas_and_escapes(void **state) {
  fixture *f = *state;
  parse_ok(f, "# comment\n"
              "graph g(x: f32[2],) -> (y: f32[2],) { # another\n"
              "  y = add(x, weight(\"a\\\"b\\\\c\\x01{{d}}\\t\", f32[2],),)\n"
              "  return y\n"
              "}\n");
  assert_string_equal(weight_name(find_op(f->graph, ATTN_OP_WEIGHT, 0), 0), "a\"b\\c\x01{d}\t");
  char *text = round_trip(f);
  assert_non_null(strstr(text, "weight(\"a\\\"b\\\\c\\x01{{d}}\\t\", f32[2])"));
  free(text);
}

static void prints_names_that_parse_back(void **state) {
  fixture *f = *state;
  // `inf` is reserved (as are keywords, dtype names and the symbols), so a value hinted so
  // is renamed; `x` names two values, so both get generated names.
  parse_ok(f, "graph g(a: f32[T]) -> (y: f32[T]) {\n"
              "  x = neg(a)\n"
              "  x = exp(x)\n"
              "  inf = abs(x)\n"
              "  t3 = relu(inf)\n"
              "  return t3\n"
              "}\n");
  char *text = round_trip(f);
  assert_non_null(strstr(text, "graph g(a: f32[T]) -> (y: f32[T]) {\n"));
  assert_non_null(strstr(text, "  x_2 = neg(a)\n  x_3 = exp(x_2)\n"));
  assert_non_null(strstr(text, "  inf_4 = abs(x_3)\n  t3 = relu(inf_4)\n  return t3\n}\n"));
  free(text);
}

static void prints_floats_that_read_back_exactly(void **state) {
  fixture *f = *state;
  parse_ok(f, "graph g(x: f32[2]) -> (y: f32[2]) {\n"
              "  y = layernorm(x, epsilon=0.1 + 0.2)\n"
              "  y = layernorm(y, epsilon=1e-300)\n"
              "  y = rope(reshape(y, shape=[1, 2]), iota(i64[1]), theta=123456789012.0)\n"
              "  y = reshape(y, shape=[2])\n"
              "  return add(y, constant(f32[2], [0.1, 16777217]))\n"
              "}\n");
  char *text = round_trip(f);
  assert_non_null(strstr(text, "epsilon=0.30000000000000004"));
  assert_non_null(strstr(text, "epsilon=1e-300"));
  assert_non_null(strstr(text, "theta=123456789012.0"));
  assert_non_null(strstr(text, "[0.1, 16777216.0]"));
  free(text);
}

static void round_trips_hand_built_graphs(void **state) {
  fixture *f = *state;
  // A graph from another producer: no name hints, a dead node, odd attribute values.
  attn_graph *g;
  assert_int_equal(attn_graph_create(allocator(f), &f->diag, "built", &g), ATTN_OK);
  attn_dim t;
  assert_int_equal(attn_graph_dim_symbol(g, "T", 1, &t), ATTN_OK);
  attn_type type = {ATTN_DTYPE_I64, 2, {t, 8}};
  attn_value_id x;
  assert_int_equal(attn_graph_add_input(g, "x", &type, ATTN_LOC_NONE, &x), ATTN_OK);
  attn_slice_attrs slice = {1, INT64_MIN, -1, 1};
  attn_node_id n;
  assert_int_equal(attn_graph_add_node(g, ATTN_OP_NEG, &x, 1, NULL, ATTN_LOC_NONE, &n), ATTN_OK);
  g->nodes[n.index].is_dead = true;
  assert_int_equal(attn_graph_add_node(g, ATTN_OP_SLICE, &x, 1, &slice, ATTN_LOC_NONE, &n),
                   ATTN_OK);
  attn_value_id y = attn_node_output(g, n, 0);
  const char *name = "out";
  assert_int_equal(attn_graph_set_outputs(g, &y, &name, 1), ATTN_OK);
  f->graph = g;
  char *text = round_trip(f);
  assert_non_null(strstr(text, "t3 = slice(x, axis=1, start=(-9223372036854775807 - 1), end=-1)"));
  assert_null(strstr(text, "neg"));
  free(text);
}

// ---- errors --------------------------------------------------------------------------------

static const char header[] = "graph g(x: f32[B, 8]) -> (y: f32[B, 8]) {\n";

static void fails_body(fixture *f, const char *body, attn_status status, const char *message,
                       uint32_t line, uint32_t col) {
  char text[2048];
  snprintf(text, sizeof(text), "%s%s  return y\n}\n", header, body);
  parse_fails(f, text, status, message, line, col);
}

static void reports_syntax_errors(void **state) {
  fixture *f = *state;
  fails_body(f, "  y = add(x x)\n", ATTN_ERROR_PARSE, "expected ',' between arguments, found 'x'",
             2, 13);
  fails_body(f, "  y = add(x, x\n", ATTN_ERROR_PARSE,
             "expected ',' between arguments, found 'return'", 3, 3);
  fails_body(f, "  y = (x\n", ATTN_ERROR_PARSE, "expected ')' to close '(', found 'return'", 3, 3);
  fails_body(f, "  y x\n", ATTN_ERROR_PARSE, "expected '=' after the name, found 'x'", 2, 5);
  fails_body(f, "  y = \n", ATTN_ERROR_PARSE, "expected an expression, found 'return'", 3, 3);
  fails_body(f, "  add(x, x)\n", ATTN_ERROR_PARSE, "must be bound: NAME = add(...)", 2, 3);
  fails_body(f, "  y = add(x, axis=1, x)\n", ATTN_ERROR_PARSE,
             "a positional argument cannot follow keyword arguments", 2, 22);
  fails_body(f, "  y = softmax(x, axis=1, axis=2)\n", ATTN_ERROR_PARSE,
             "attribute 'axis' is given twice", 2, 26);
  fails_body(f, "  y = x @ \"p.\"\n", ATTN_ERROR_PARSE,
             "a weight-name prefix '@' must follow a subgraph call", 2, 9);
  fails_body(f, "  y = 1 < 2 < 3\n", ATTN_ERROR_PARSE, "comparisons do not chain", 2, 13);
  fails_body(f, "  return x\n  y = x\n", ATTN_ERROR_PARSE,
             "'return' must be the last statement of a body", 3, 3);
  fails_body(f, "  repeat i in 0..2 { return x }\n", ATTN_ERROR_PARSE,
             "'return' cannot be inside 'repeat'", 2, 22);
  fails_body(f, "  repeat i 0..2 { }\n", ATTN_ERROR_PARSE, "expected 'in' after the loop variable",
             2, 12);
  parse_fails(f, "graph g(x: f32[2]) -> (y: f32[2]) {\n  y = x\n}\n", ATTN_ERROR_PARSE,
              "a graph body must end with 'return'", 3, 1);
  parse_fails(f, "def f(x) { y = x }\n", ATTN_ERROR_PARSE, "a subgraph body must end with 'return'",
              1, 18);
  parse_fails(f, "let a = 1\n", ATTN_ERROR_PARSE, "no 'graph' in the file", 2, 1);
  parse_fails(f, "x = 1\n", ATTN_ERROR_PARSE,
              "expected 'let', 'def' or 'graph' at file level, found 'x'", 1, 1);
  parse_fails(f, "graph g(x: f32) -> (y: f32[]) { return x }\n", ATTN_ERROR_PARSE,
              "expected a tensor type such as f32[B, T] after 'x:', found 'f32'", 1, 12);
  parse_fails(f, "graph g(x: f32[]) -> () { return x }\n", ATTN_ERROR_PARSE,
              "graph 'g' declares no outputs", 1, 1);
  parse_fails(f, "graph g(x: f32[], x: f32[]) -> (y: f32[]) { return x }\n", ATTN_ERROR_PARSE,
              "'x' appears twice", 1, 19);
  parse_fails(f,
              "graph g(x: f32[]) -> (y: f32[]) { return x }\n"
              "graph h(x: f32[]) -> (y: f32[]) { return x }\n",
              ATTN_ERROR_PARSE, "a file holds one graph; 'g' is already defined at 1:1", 2, 1);
  parse_fails(f, "def f(x) { return x }\ndef f(y) { return y }\n", ATTN_ERROR_PARSE,
              "subgraph 'f' is already defined at 1:1", 2, 1);
  fails_body(f, "  a, a = split(x, sizes=[4, 4])\n", ATTN_ERROR_PARSE,
             "'a' appears twice on the left of '='", 2, 6);
}

static void reports_lexical_errors(void **state) {
  fixture *f = *state;
  fails_body(f, "  y = add(x, weight(\"abc, f32[8]))\n", ATTN_ERROR_PARSE, "unterminated string", 2,
             21);
  fails_body(f, "  y = add(x, weight(\"a\\qc\", f32[8]))\n", ATTN_ERROR_PARSE,
             "unknown escape '\\q'", 2, 23);
  fails_body(f, "  let n = 99999999999999999999\n  y = x\n", ATTN_ERROR_PARSE,
             "integer '99999999999999999999' is too large", 2, 11);
  fails_body(f, "  let n = 1e999\n  y = x\n", ATTN_ERROR_PARSE, "number '1e999' is too large", 2,
             11);
  fails_body(f, "  let n = 12abc\n  y = x\n", ATTN_ERROR_PARSE, "malformed number '12abc'", 2, 11);
  fails_body(f, "  let n = 1.\n  y = x\n", ATTN_ERROR_PARSE, "malformed number '1.'", 2, 11);
  fails_body(f, "  y = x ! x\n", ATTN_ERROR_PARSE, "unexpected character '!'", 2, 9);
  static const char nul[] = "graph g(x: f32[]) -> (y: f32[]) {\n  \0\n}";
  assert_int_equal(
      attn_parse_text("t.attn", nul, sizeof(nul) - 1, NULL, allocator(f), &f->diag, &f->graph),
      ATTN_ERROR_PARSE);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "unexpected byte 0x00"));
}

static void reports_unknown_ops_names_and_attributes(void **state) {
  fixture *f = *state;
  fails_body(f, "  y = softmx(x)\n", ATTN_ERROR_PARSE,
             "unknown op 'softmx'; did you mean 'softmax'?", 2, 7);
  fails_body(f, "  y = frobnicate(x)\n", ATTN_ERROR_PARSE, "unknown op 'frobnicate'", 2, 7);
  fails_body(f, "  y = add(x, z)\n", ATTN_ERROR_PARSE, "unknown name 'z'", 2, 14);
  fails_body(f, "  hidden = x\n  y = add(x, hiden)\n", ATTN_ERROR_PARSE,
             "unknown name 'hiden'; did you mean 'hidden'?", 3, 14);
  fails_body(f, "  y = add(x, gelu)\n", ATTN_ERROR_PARSE, "'gelu' is an op or function; call it", 2,
             14);
  fails_body(f, "  y = softmax(x, axs=1)\n", ATTN_ERROR_PARSE,
             "unknown attribute 'axs' for softmax; valid: axis", 2, 18);
  fails_body(f, "  y = add(x, x, axis=1)\n", ATTN_ERROR_PARSE,
             "add takes no attributes (got 'axis')", 2, 17);
  fails_body(f, "  y = softmax(x, axis=\"last\")\n", ATTN_ERROR_PARSE,
             "'axis' of softmax needs an integer, got a string", 2, 23);
  fails_body(f, "  y = softmax(x, axis=0.5)\n", ATTN_ERROR_PARSE,
             "'axis' of softmax needs an integer, got a float", 2, 23);
  fails_body(f, "  y = matmul(x, x, transpose_b=1)\n", ATTN_ERROR_PARSE,
             "'transpose_b' of matmul needs a bool, got an integer", 2, 32);
  fails_body(f, "  y = gelu(x, approximate=fast)\n", ATTN_ERROR_PARSE,
             "unknown value 'fast' for 'approximate' of gelu; valid: erf, tanh", 2, 27);
  fails_body(f, "  y = cast(x, dtype=f31)\n", ATTN_ERROR_PARSE, "unknown dtype 'f31'", 2, 21);
  fails_body(f, "  y = reshape(x)\n", ATTN_ERROR_PARSE, "reshape needs 'shape' (a list of dims)", 2,
             7);
  fails_body(f, "  y = reshape(x, shape=[B, -2])\n", ATTN_ERROR_PARSE,
             "a dim must be ≥ 0 (or -1 to infer it), got -2", 2, 24);
  fails_body(f, "  y = add(x, weight(\"w\", f32[8], 1))\n", ATTN_ERROR_PARSE,
             "weight takes 2 positional arguments, got 3", 2, 34);
  fails_body(f, "  y = add(x, weight(\"w\"))\n", ATTN_ERROR_PARSE,
             "weight needs 'type' (a tensor type such as f32[B, T])", 2, 14);
  fails_body(f, "  y = add(x, weight(\"w\", type=f32[8], name=\"v\"))\n", ATTN_ERROR_PARSE,
             "'name' of weight is already given as a positional argument", 2, 39);
  fails_body(f, "  y = add(x, \"s\")\n", ATTN_ERROR_PARSE,
             "argument 2 of add must be a tensor, got a string", 2, 14);
  fails_body(f, "  a = topk(x, k=2)\n  y = add(x, a)\n", ATTN_ERROR_PARSE,
             "the right of '=' gives 2 values but the left names 1", 2, 7);
  fails_body(f, "  a, b, c = split(x, sizes=[4, 4])\n", ATTN_ERROR_PARSE,
             "the right of '=' gives 2 values but the left names 3", 2, 13);
  fails_body(f, "  y = add(x, topk(x, k=2))\n", ATTN_ERROR_PARSE, "argument 2 of add is 2 values",
             2, 14);
  fails_body(f, "  y = add(x, 1) @ \"p.\"\n", ATTN_ERROR_PARSE,
             "a weight-name prefix '@' applies to a subgraph call; 'add' is an op", 2, 19);
  fails_body(f, "  y = add(x, x + 1)\n", ATTN_ERROR_PARSE,
             "'+' works on compile-time values; for tensors call the op: add(a, b)", 2, 16);
  fails_body(f, "  let z = x\n  y = x\n", ATTN_ERROR_PARSE,
             "'let' binds compile-time values, and this is a tensor", 2, 11);
  fails_body(f, "  y = attention(x, x, x, x)\n", ATTN_ERROR_PARSE,
             "attention takes q, k, v, got 4 tensors", 2, 7);
  fails_body(f, "  y = attention(x, x, x, score_mod={ score + x })\n", ATTN_ERROR_PARSE,
             "'x' is a tensor; index it, as in x[h]", 2, 46);
  fails_body(f, "  y = attention(x, x, x, score_mod={ score % 2 })\n", ATTN_ERROR_PARSE,
             "score_mod has no '%'", 2, 44);
  fails_body(f, "  y = attention(x, x, x, score_mod={ erf(score) })\n", ATTN_ERROR_PARSE,
             "score_mod cannot call 'erf'", 2, 38);
  fails_body(f, "  y = attention(x, x, x, score_mod=1)\n", ATTN_ERROR_PARSE,
             "'score_mod' of attention needs a '{ ... }' expression", 2, 36);
  fails_body(f, "  y = { score }\n", ATTN_ERROR_PARSE,
             "a '{ ... }' expression is only possible as attention's score_mod", 2, 7);
  fails_body(f, "  y = x[0]\n", ATTN_ERROR_PARSE,
             "indexing 'x[...]' is only possible inside a score_mod block", 2, 7);
  fails_body(f, "  y = add(x, weight(\"w.{j}\", f32[8]))\n", ATTN_ERROR_PARSE,
             "unknown name 'j' in the string", 2, 21);
  fails_body(f, "  y = add(x, weight(\"w.{\", f32[8]))\n", ATTN_ERROR_PARSE,
             "unmatched '{' in a string; write '{{' for a brace", 2, 21);
  fails_body(f, "  y = add(x, weight(\"w\" | 1, f32[8]))\n", ATTN_ERROR_PARSE,
             "'|' joins alternative weight names (strings), got an integer", 2, 27);
  fails_body(f, "  y = add(x, constant(f32[8], [1, 2]))\n", ATTN_ERROR_PARSE,
             "constant of 8 elements needs as many values (or one), got 2", 2, 31);
  fails_body(f, "  y = add(x, constant(f32[8], 1e300))\n", ATTN_ERROR_PARSE,
             "1e+300 does not fit f32", 2, 31);
  fails_body(f, "  y = add(cast(x, dtype=i8), constant(i8[8], 300))\n", ATTN_ERROR_PARSE,
             "300 does not fit i8", 2, 46);
  fails_body(f, "  y = add(x, constant(f32[T], 1))\n", ATTN_ERROR_PARSE, "unknown name 'T'", 2, 27);
  fails_body(f, "  y = add(x, constant(f32[B], 1))\n", ATTN_ERROR_PARSE,
             "a constant needs constant dims", 2, 31);
  fails_body(f, "  let n = 1 / 0\n  y = x\n", ATTN_ERROR_PARSE, "division by zero", 2, 13);
  fails_body(f, "  let n = 9223372036854775807 + 1\n  y = x\n", ATTN_ERROR_PARSE,
             "integer overflow in '+'", 2, 31);
  fails_body(f, "  let n = B + -1\n  y = x\n", ATTN_ERROR_PARSE,
             "symbolic dim arithmetic needs non-negative integers, got -1", 2, 13);
  fails_body(f, "  let n = B < 2\n  y = x\n", ATTN_ERROR_PARSE,
             "'<' does not apply to symbolic dims", 2, 13);
  fails_body(f, "  let n = true ? 1 : 2\n  let m = 1 ? 1 : 2\n  y = x\n", ATTN_ERROR_PARSE,
             "the condition of '? :' must be a bool, got an integer", 3, 11);
  fails_body(f, "  let n = sqrt(-1)\n  y = x\n", ATTN_ERROR_PARSE,
             "sqrt() of this argument is not a finite number", 3 - 1, 11);
  fails_body(f, "  let n = min(1)\n  y = x\n", ATTN_ERROR_PARSE,
             "min() takes at least 2 arguments, got 1", 2, 11);
  fails_body(f, "  let n = pow(2, 64)\n  y = x\n", ATTN_ERROR_PARSE, "integer overflow in pow()", 2,
             11);
  fails_body(f, "  repeat i in 0..2.5 { }\n  y = x\n", ATTN_ERROR_PARSE,
             "a repeat range needs integers, got a float", 2, 18);
}

static void reports_config_errors(void **state) {
  fixture *f = *state;
  parse_fails(f, "let D = config.n_embd\ngraph g(x: f32[]) -> (y: f32[]) { return x }\n",
              ATTN_ERROR_PARSE, "undefined config key 'n_embd': no config.json was given", 1, 9);
  use_config(f, "{\"n_embd\": 8, \"none\": null, \"obj\": {\"a\": 1}}");
  parse_fails(f, "let D = config.n_head\ngraph g(x: f32[]) -> (y: f32[]) { return x }\n",
              ATTN_ERROR_PARSE, "undefined config key 'n_head' in config.json", 1, 9);
  parse_fails(f, "let D = config.none + 1\ngraph g(x: f32[]) -> (y: f32[]) { return x }\n",
              ATTN_ERROR_PARSE, "null config key 'none' in config.json", 1, 9);
  parse_fails(f, "let D = config.obj\ngraph g(x: f32[]) -> (y: f32[]) { return x }\n",
              ATTN_ERROR_PARSE, "config key 'obj' in config.json is an array or an object", 1, 9);
  parse_fails(f,
              "let D = config.missing ?? config.other\ngraph g(x: f32[]) -> (y: f32[]) "
              "{ return x }\n",
              ATTN_ERROR_PARSE, "undefined config key 'other' in config.json", 1, 27);
  parse_fails(f, "let D = len(config.n_embd)\ngraph g(x: f32[]) -> (y: f32[]) { return x }\n",
              ATTN_ERROR_PARSE,
              "len() needs a config array, object or string; 'n_embd' in config.json is a number",
              1, 13);
  parse_fails(f, "let D = len(config.n_layer)\ngraph g(x: f32[]) -> (y: f32[]) { return x }\n",
              ATTN_ERROR_PARSE, "undefined config key 'n_layer' in config.json", 1, 13);
}

static void reports_subgraph_errors(void **state) {
  fixture *f = *state;
  parse_fails(f,
              "def f(x) {\n  return f(x)\n}\n"
              "graph g(x: f32[]) -> (y: f32[]) {\n  return f(x)\n}\n",
              ATTN_ERROR_PARSE, "subgraph 'f' calls itself; recursion is not allowed", 2, 10);
  // The notes say where the failing body was called from.
  assert_int_equal(f->diag.items[f->diag.count - 1].severity, ATTN_SEVERITY_NOTE);
  assert_int_equal(f->diag.items[f->diag.count - 1].loc.line, 5);
  parse_fails(f,
              "def a(x) {\n  return b(x)\n}\n"
              "def b(x) {\n  return a(x)\n}\n"
              "graph g(x: f32[]) -> (y: f32[]) {\n  return a(x)\n}\n",
              ATTN_ERROR_PARSE, "recursive call: subgraph 'b' calls 'a'", 5, 10);
  parse_fails(f,
              "def f(x, y) {\n  return add(x, y)\n}\n"
              "graph g(x: f32[]) -> (y: f32[]) {\n  return f(x)\n}\n",
              ATTN_ERROR_PARSE, "subgraph 'f' takes 2 arguments, got 1", 5, 10);
  parse_fails(f,
              "def f(x) {\n  return x\n}\n"
              "graph g(x: f32[]) -> (y: f32[]) {\n  return f(x, axis=1)\n}\n",
              ATTN_ERROR_PARSE, "subgraph 'f' takes no keyword arguments (got 'axis')", 5, 15);
  parse_fails(f, "def gelu(x) {\n  return x\n}\ngraph g(x: f32[]) -> (y: f32[]) {\n  return x\n}\n",
              ATTN_ERROR_PARSE, "'gelu' is an op; a subgraph cannot take its name", 1, 1);
  parse_fails(f,
              "def f(x) {\n  return x\n}\n"
              "graph g(x: f32[]) -> (y: f32[]) {\n  return f(x) @ 3\n}\n",
              ATTN_ERROR_PARSE, "a weight-name prefix must be a string, got an integer", 5, 17);
  parse_fails(f,
              "def f(x) {\n  y = x\n  return y\n}\n"
              "graph g(x: f32[]) -> (y: f32[]) {\n  return y\n}\n",
              ATTN_ERROR_PARSE, "unknown name 'y'", 6, 10);
}

static void reports_return_mismatches(void **state) {
  fixture *f = *state;
  parse_fails(f, "graph g(x: f32[B, 8]) -> (y: f32[B, 4]) {\n  return x\n}\n", ATTN_ERROR_PARSE,
              "output 'y' is declared f32[B, 4] but the returned value is f32[B, 8]", 2, 10);
  parse_fails(f, "graph g(x: f32[8]) -> (y: f32[8], z: f32[8]) {\n  return x\n}\n",
              ATTN_ERROR_PARSE, "graph 'g' returns 1 value, its signature declares 2 outputs", 2,
              3);
  parse_fails(f, "graph g(x: f32[8]) -> (y: f32[8]) {\n  return 3\n}\n", ATTN_ERROR_PARSE,
              "output 'y' must be a tensor, got an integer", 2, 10);
}

static void reports_shape_errors_at_the_call(void **state) {
  fixture *f = *state;
  parse_fails(f,
              "def proj(x) {\n  return matmul(x, weight(\"w\", f32[4, 4]))\n}\n"
              "graph g(x: f32[B, 8]) -> (y: f32[B, 4]) {\n  return proj(x) @ \"p.\"\n}\n",
              ATTN_ERROR_INVALID_GRAPH, "matmul: inner dimensions differ (8 vs 4)", 2, 10);
  const attn_diagnostic *note = &f->diag.items[f->diag.count - 1];
  assert_int_equal(note->severity, ATTN_SEVERITY_NOTE);
  assert_non_null(strstr(note->message, "in subgraph 'proj' called here (weight prefix \"p.\")"));
  assert_int_equal(note->loc.line, 5);
  assert_int_equal(note->loc.col, 10);
  fails_body(f, "  y = reshape(x, shape=[B, 3])\n", ATTN_ERROR_INVALID_GRAPH,
             "reshape: cannot reshape f32[B, 8] to f32[B, 3]", 2, 7);
}

static void limits_hostile_input(void **state) {
  fixture *f = *state;
  char *deep = malloc(4096);
  int n = snprintf(deep, 4096, "%s  let a = ", header);
  for (int i = 0; i < 300; i++)
    deep[n++] = '(';
  deep[n++] = '1';
  snprintf(deep + n, (size_t)(4096 - n), "\n  y = x\n  return y\n}\n");
  parse_fails(f, deep, ATTN_ERROR_PARSE, "nested too deeply (the limit is 200 levels)", 2, 210);
  free(deep);
  fails_body(f, "  repeat i in 0..100000000000 {\n    x = neg(x)\n  }\n  y = x\n", ATTN_ERROR_PARSE,
             "the expanded graph has more than 1048576 nodes", 3, 9);
  fails_body(f, "  repeat i in 0..100000000000 {\n    let z = i\n  }\n  y = x\n", ATTN_ERROR_PARSE,
             "steps; is a repeat range too large?", 3, 5);
  fails_body(f, "  let s = \"ab\"\n  repeat i in 0..20 {\n    let s = \"{s}{s}\"\n  }\n  y = x\n",
             ATTN_ERROR_PARSE, "the string grows longer than 4096 bytes", 4, 13);
  fails_body(f, "  d = B\n  repeat i in 0..100 {\n    let d = d + 1\n  }\n  y = x\n",
             ATTN_ERROR_PARSE, "a symbolic dim expression nests deeper than 64 levels", 4, 15);
  // Exponential expansion through subgraphs runs into the node limit, not out of memory.
  char text[2048];
  int used = snprintf(text, sizeof(text), "def f0(x) {\n  return neg(x)\n}\n");
  for (int i = 1; i < 30; i++)
    used += snprintf(text + used, sizeof(text) - (size_t)used,
                     "def f%d(x) {\n  return add(f%d(x), f%d(x))\n}\n", i, i - 1, i - 1);
  snprintf(text + used, sizeof(text) - (size_t)used,
           "graph g(x: f32[]) -> (y: f32[]) {\n  return f29(x)\n}\n");
  attn_parse_options options = {.max_nodes = 1000};
  attn_diag_clear(&f->diag);
  assert_int_equal(
      attn_parse_text("t.attn", text, strlen(text), &options, allocator(f), &f->diag, &f->graph),
      ATTN_ERROR_PARSE);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "more than 1000 nodes"));
}

// `calls` subgraphs, each nesting `depth` calls of add around a call of the previous one.
static char *nested_calls_model(int calls, int depth) {
  size_t size = (size_t)calls * (size_t)depth * 16 + 4096, used = 0;
  char *text = malloc(size);
  assert_non_null(text);
  used += (size_t)snprintf(text + used, size - used, "def f0(x) {\n  return neg(x)\n}\n");
  for (int c = 1; c <= calls; c++) {
    used += (size_t)snprintf(text + used, size - used, "def f%d(x) {\n  return ", c);
    for (int d = 0; d < depth; d++)
      used += (size_t)snprintf(text + used, size - used, "add(");
    used += (size_t)snprintf(text + used, size - used, "f%d(x)", c - 1);
    for (int d = 0; d < depth; d++)
      used += (size_t)snprintf(text + used, size - used, ", x)");
    used += (size_t)snprintf(text + used, size - used, "\n}\n");
  }
  snprintf(text + used, size - used, "graph g(x: f32[]) -> (y: f32[]) {\n  return f%d(x)\n}\n",
           calls);
  return text;
}

// Nesting within one body is limited by the parser, nesting summed over subgraph calls by the
// expander; under the limit the C stack holds (this test also runs under ASan).
static void limits_nesting_across_subgraph_calls(void **state) {
  fixture *f = *state;
  char *text = nested_calls_model(5, 190);
  parse_ok(f, text);
  free(text);
  text = nested_calls_model(20, 190);
  assert_int_equal(parse(f, text), ATTN_ERROR_PARSE);
  assert_non_null(strstr(attn_diag_last_error(&f->diag),
                         "expressions and blocks nest deeper than 1000 levels across subgraph "
                         "calls"));
  free(text);
}

static void parse_file_reads_and_reports_io_errors(void **state) {
  fixture *f = *state;
  assert_int_equal(attn_parse_file("no/such/file.attn", NULL, allocator(f), &f->diag, &f->graph),
                   ATTN_ERROR_IO);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "cannot open"));
  assert_int_equal(attn_parse_file("models/tiny.attn", NULL, allocator(f), &f->diag, &f->graph),
                   ATTN_OK);
  assert_round_trip(f);
}

// The model descriptions of models/ expand, verify and round-trip (with the config of their
// test checkpoint when they read config.*).
static void round_trips_the_models(void **state) {
  fixture *f = *state;
  static const struct {
    const char *model, *config;
  } models[] = {
      {"models/tiny.attn", NULL},
      {"models/gpt2.attn", "tests/data/hf/gpt2-tiny/config.json"},
      {"models/llama.attn", "tests/data/hf/llama-tiny-gqa/config.json"},
      {"models/llama.attn", "tests/data/hf/llama-tiny-tied/config.json"},
      {"models/vit.attn", "tests/data/hf/vit-tiny/config.json"},
      {"models/acmil.attn", NULL},
  };
  for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
    FILE *probe = fopen(models[i].model, "r");
    if (!probe)
      continue; // a model not written yet
    fclose(probe);
    attn_config_destroy(f->config);
    f->config = NULL;
    if (models[i].config)
      assert_int_equal(attn_config_read(models[i].config, allocator(f), &f->diag, &f->config),
                       ATTN_OK);
    attn_parse_options options = {.config = f->config};
    attn_graph_destroy(f->graph);
    f->graph = NULL;
    attn_status status =
        attn_parse_file(models[i].model, &options, allocator(f), &f->diag, &f->graph);
    if (status != ATTN_OK)
      attn_diag_write(&f->diag, stderr);
    assert_int_equal(status, ATTN_OK);
    assert_round_trip(f);
  }
}

// Every allocation failure during parsing returns OUT_OF_MEMORY and leaks nothing.
static void survives_allocation_failures(void **state) {
  fixture *f = *state;
  for (long fail_after = 0;; fail_after++) {
    attn_diag_clear(&f->diag);
    f->counter.fail_after = fail_after;
    f->counter.total_requests = 0;
    attn_graph *g = NULL;
    attn_status status =
        attn_parse_text("t.attn", mlp_model, strlen(mlp_model), NULL, allocator(f), &f->diag, &g);
    f->counter.fail_after = -1;
    if (status == ATTN_OK) {
      attn_graph_destroy(g);
      break;
    }
    assert_int_equal(status, ATTN_ERROR_OUT_OF_MEMORY);
    assert_null(g);
    assert_int_equal(f->counter.live_bytes, 0);
  }
}

// docs/ops.md is what attn_ops_write_doc() writes. After changing an op or an attribute, run
// this test with ATTN_UPDATE_DOCS=1 to rewrite the file.
static void ops_doc_is_up_to_date(void **state) {
  (void)state;
  char *want = NULL;
  size_t want_size = 0;
  FILE *out = open_memstream(&want, &want_size);
  assert_non_null(out);
  assert_int_equal(attn_ops_write_doc(out), ATTN_OK);
  fclose(out);
  if (getenv("ATTN_UPDATE_DOCS")) {
    FILE *doc = fopen("docs/ops.md", "wb");
    assert_non_null(doc);
    assert_int_equal(fwrite(want, 1, want_size, doc), want_size);
    assert_int_equal(fclose(doc), 0);
  }
  FILE *in = fopen("docs/ops.md", "rb");
  assert_non_null(in);
  char *have = calloc(1, want_size + 2);
  size_t have_size = fread(have, 1, want_size + 1, in);
  fclose(in);
  if (have_size != want_size || memcmp(have, want, want_size) != 0)
    fprintf(stderr, "docs/ops.md is stale: run this test with ATTN_UPDATE_DOCS=1\n");
  assert_int_equal(have_size, want_size);
  assert_memory_equal(have, want, want_size);
  free(have);
  free(want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      TEST(parses_the_language_example),
      TEST(folds_compile_time_values),
      TEST(reads_config_values_with_fallbacks),
      TEST(inlines_subgraphs_with_prefixes),
      TEST(unrolls_repeat_and_rebinds_names),
      TEST(binds_multiple_outputs),
      TEST(parses_attributes_generically),
      TEST(parses_symbolic_dims),
      TEST(parses_weight_constant_and_iota_forms),
      TEST(turns_numeric_operands_into_constants),
      TEST(builds_score_mod_expressions),
      TEST(accepts_comments_trailing_commas_and_escapes),
      TEST(prints_names_that_parse_back),
      TEST(prints_floats_that_read_back_exactly),
      TEST(round_trips_hand_built_graphs),
      TEST(reports_syntax_errors),
      TEST(reports_lexical_errors),
      TEST(reports_unknown_ops_names_and_attributes),
      TEST(reports_config_errors),
      TEST(reports_subgraph_errors),
      TEST(reports_return_mismatches),
      TEST(reports_shape_errors_at_the_call),
      TEST(limits_hostile_input),
      TEST(limits_nesting_across_subgraph_calls),
      TEST(parse_file_reads_and_reports_io_errors),
      TEST(round_trips_the_models),
      TEST(survives_allocation_failures),
      TEST(ops_doc_is_up_to_date),
#undef TEST
  };
  return cmocka_run_group_tests_name("frontend/parse", tests, NULL, NULL);
}
