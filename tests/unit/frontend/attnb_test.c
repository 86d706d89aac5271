// Unit tests for .attnb (frontend/attnb): graphs written and read back print the same text
// (every attribute kind, symbolic dim expressions, constants of every dtype, score_mod), and
// the reader refuses, with one diagnostic naming the file, every malformed input: truncated
// bytes, an unknown op, an index out of range, an attribute of the wrong kind, a newer format
// version, a graph the verifier rejects, and allocation failures.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "attnb.pb-c.h"
#include "frontend/attnb/attnb.h"
#include "frontend/parse.h"
#include "ir/print.h"

typedef struct fixture {
  attn_counting_allocator counter;
  attn_diag diag;
  attn_graph *graph; // parsed from text
  void *bytes;       // the graph written
  size_t size;
} fixture;

static int setup(void **state) {
  fixture *f = test_calloc(1, sizeof(*f));
  attn_counting_allocator_init(&f->counter, attn_allocator_system());
  attn_diag_init(&f->diag, attn_allocator_system());
  *state = f;
  return 0;
}

static attn_allocator allocator(fixture *f) {
  return attn_counting_allocator_get(&f->counter);
}

static int teardown(void **state) {
  fixture *f = *state;
  attn_graph_destroy(f->graph);
  attn_allocator_free(allocator(f), f->bytes, f->size ? f->size : 1);
  attn_diag_deinit(&f->diag);
  assert_int_equal(f->counter.live_bytes, 0); // nothing leaked
  test_free(f);
  return 0;
}

// The printed text of `graph` (malloc'd).
static char *print_graph(const attn_graph *graph) {
  char *text = NULL;
  size_t length = 0;
  FILE *out = open_memstream(&text, &length);
  assert_non_null(out);
  assert_int_equal(attn_graph_print(graph, out), ATTN_OK);
  fclose(out);
  return text;
}

// Parses `text` into f->graph and writes it into f->bytes.
static void parse_and_write(fixture *f, const char *text) {
  attn_status status =
      attn_parse_text("t.attn", text, strlen(text), NULL, allocator(f), &f->diag, &f->graph);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  assert_int_equal(attn_attnb_write_memory(f->graph, allocator(f), &f->diag, &f->bytes, &f->size),
                   ATTN_OK);
}

// Reads `bytes` as "t.attnb" and checks that it prints as f->graph does.
static void check_reads_back(fixture *f, const void *bytes, size_t size) {
  attn_graph *graph = NULL;
  attn_status status =
      attn_attnb_read_memory("t.attnb", bytes, size, allocator(f), &f->diag, &graph);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  char *want = print_graph(f->graph), *have = print_graph(graph);
  assert_string_equal(have, want);
  assert_int_equal(graph->value_count, f->graph->value_count);
  assert_int_equal(graph->dim_count, f->graph->dim_count);
  assert_int_equal(graph->symbol_count, f->graph->symbol_count);
  free(want);
  free(have);
  attn_graph_destroy(graph);
}

static void round_trip_text(fixture *f, const char *text) {
  parse_and_write(f, text);
  check_reads_back(f, f->bytes, f->size);
}

static void round_trip_file(fixture *f, const char *path) {
  FILE *in = fopen(path, "rb");
  assert_non_null(in);
  static char text[1 << 16];
  size_t length = fread(text, 1, sizeof(text) - 1, in);
  fclose(in);
  text[length] = '\0';
  round_trip_text(f, text);
}

// ---- round trips ---------------------------------------------------------------------------

static void test_every_attribute_kind(void **state) {
  fixture *f = *state;
  // bool, int, float, dtype, enum, dims (with -1), ints, strings, type, data, dim (iota start)
  round_trip_text(f, "graph g(x: f32[B, T, 8], ids: i64[B, T]) -> (a: f32[B, T, 8], "
                     "b: f32[B, 1, 8], c: f16[B, T, 8], d: f32[B, 2, T, 4], e: f32[B, T, 8], "
                     "w: f32[8, 8], i: i64[T, 4], m: f32[B, T, 8], k: f32[B, T, 2], "
                     "ki: i64[B, T, 2], r: f32[B, T, 8], s0: f32[B, T, 4], s1: f32[B, T, 4]) {\n"
                     "  a = softmax(x, axis=1)\n"
                     "  b = mean(x, axes=[1], keepdims=true)\n"
                     "  c = cast(x, dtype=f16)\n"
                     "  d = permute(reshape(x, shape=[B, T, 2, -1]), perm=[0, 2, 1, 3])\n"
                     "  e = gelu(layernorm(x, epsilon=0.001), approximate=tanh)\n"
                     "  w = weight(\"lm_head.weight\" | \"wte.weight\", f32[8, 8])\n"
                     "  i = iota(i64[T, 4], axis=0, start=B + 1)\n"
                     "  m = matmul(x, w, transpose_b=true)\n"
                     "  k, ki = topk(x, k=2, largest=false)\n"
                     "  r = rope(reshape(x, shape=[B, T, 8]), ids, theta=500.0, "
                     "style=interleaved, rotary_dim=4)\n"
                     "  s0, s1 = split(slice(x, axis=2, start=0, end=8, step=1), axis=2, "
                     "sizes=[4, 4])\n"
                     "  return a, b, c, d, e, w, i, m, k, ki, r, s0, s1\n"
                     "}\n");
}

static void test_symbolic_dims(void **state) {
  fixture *f = *state;
  round_trip_text(f, "graph g(x: f32[B, T_past + T, 6], y: f32[B * 2, (T - 1) / 2, 6]) -> "
                     "(a: f32[B, T_past + T, 3], b: f32[B * 2, (T - 1) / 2, 6]) {\n"
                     "  a = reshape(x, shape=[B, T_past + T, 3, 2])\n"
                     "  a2 = sum(a, axes=[3])\n"
                     "  return a2, y\n"
                     "}\n");
  // The dim table came back entry for entry.
  attn_graph *graph = NULL;
  assert_int_equal(
      attn_attnb_read_memory("t.attnb", f->bytes, f->size, allocator(f), &f->diag, &graph),
      ATTN_OK);
  for (uint32_t i = 0; i < graph->dim_count; i++) {
    assert_int_equal(graph->dims[i].kind, f->graph->dims[i].kind);
    assert_int_equal(graph->dims[i].lhs, f->graph->dims[i].lhs);
    assert_int_equal(graph->dims[i].rhs, f->graph->dims[i].rhs);
  }
  for (uint32_t i = 0; i < graph->symbol_count; i++)
    assert_string_equal(attn_graph_symbol_name(graph, i), attn_graph_symbol_name(f->graph, i));
  attn_graph_destroy(graph);
}

static void test_constants(void **state) {
  fixture *f = *state;
  round_trip_text(f, "graph g(x: f32[3]) -> (a: f32[3], b: i64[2], c: bool[2], d: f16[2], "
                     "e: bf16[2], h: i32[2], j: i8[3]) {\n"
                     "  a = add(x, constant(f32[3], [1.5, -2.25, 1e-30]))\n"
                     "  b = constant(i64[2], [9223372036854775807, -3])\n"
                     "  c = constant(bool[2], [true, false])\n"
                     "  d = constant(f16[2], [0.1, 65504.0])\n"
                     "  e = constant(bf16[2], [3.0, -0.5])\n"
                     "  h = constant(i32[2], [7, -7])\n"
                     "  j = constant(i8[3], 5)\n"
                     "  return a, b, c, d, e, h, j\n"
                     "}\n");
}

static void test_golden_inputs(void **state) {
  fixture *f = *state;
  // attention variants with a score_mod reading captured tensors, subgraphs, constants
  const char *files[] = {"tests/ir/attention.attn", "tests/ir/attributes.attn",
                         "tests/ir/constants.attn", "tests/ir/symbolic.attn",
                         "tests/ir/subgraphs.attn"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    attn_graph_destroy(f->graph);
    attn_allocator_free(allocator(f), f->bytes, f->size ? f->size : 1);
    f->graph = NULL;
    f->bytes = NULL;
    f->size = 0;
    round_trip_file(f, files[i]);
  }
}

static void test_write_and_read_file(void **state) {
  fixture *f = *state;
  parse_and_write(f, "graph g(x: f32[B, 4]) -> (y: f32[B, 4]) {\n  y = exp(x)\n  return y\n}\n");
  char path[] = "/tmp/attnb_test_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(attn_attnb_write(f->graph, path, &f->diag), ATTN_OK);
  attn_graph *graph = NULL;
  assert_int_equal(attn_attnb_read(path, allocator(f), &f->diag, &graph), ATTN_OK);
  remove(path);
  char *want = print_graph(f->graph), *have = print_graph(graph);
  assert_string_equal(have, want);
  free(want);
  free(have);
  attn_graph_destroy(graph);
  assert_int_equal(attn_attnb_read(path, allocator(f), &f->diag, &graph), ATTN_ERROR_IO);
  assert_null(graph);
}

// ---- refusals ------------------------------------------------------------------------------

// A small graph with a symbolic dim, a constant, an attribute and two ops.
static const char small_graph[] =
    "graph g(x: f32[B, 4]) -> (y: f32[B, 4]) {\n"
    "  y = softmax(add(x, constant(f32[4], [1.0, 2.0, 3.0, 4.0])), axis=1)\n"
    "  return y\n"
    "}\n";

// Reads `bytes`, expects `status` and one error naming t.attnb whose message holds `want`.
static void expect_refusal(fixture *f, const void *bytes, size_t size, attn_status status,
                           const char *want) {
  attn_diag_clear(&f->diag);
  attn_graph *graph = (attn_graph *)1;
  assert_int_equal(attn_attnb_read_memory("t.attnb", bytes, size, allocator(f), &f->diag, &graph),
                   status);
  assert_null(graph);
  assert_int_equal(f->diag.error_count, 1);
  assert_string_equal(f->diag.items[f->diag.count - 1].loc.file, "t.attnb");
  const char *message = attn_diag_last_error(&f->diag);
  if (want && !strstr(message, want))
    fail_msg("'%s' lacks '%s'", message, want);
}

// Unpacks f->bytes, lets `edit` change the message, packs it and expects the refusal.
static void expect_edit_refused(fixture *f, void (*edit)(Attn__Attnb__Graph *), attn_status status,
                                const char *want) {
  Attn__Attnb__Graph *message = attn__attnb__graph__unpack(NULL, f->size, f->bytes);
  assert_non_null(message);
  edit(message);
  size_t size = attn__attnb__graph__get_packed_size(message);
  uint8_t *bytes = malloc(size + 1);
  assert_non_null(bytes);
  size = attn__attnb__graph__pack(message, bytes);
  expect_refusal(f, bytes, size, status, want);
  free(bytes);
  attn__attnb__graph__free_unpacked(message, NULL);
}

// The node with op `op`.
static Attn__Attnb__Node *find_node(Attn__Attnb__Graph *m, const char *op) {
  for (size_t i = 0; i < m->n_nodes; i++)
    if (strcmp(m->nodes[i]->op, op) == 0)
      return m->nodes[i];
  fail_msg("no %s node", op);
  return NULL;
}

static void test_truncated(void **state) {
  fixture *f = *state;
  parse_and_write(f, small_graph);
  check_reads_back(f, f->bytes, f->size);
  // Every proper prefix: cut inside a field, the message does not decode; cut between two
  // fields, the end magic is missing.
  for (size_t size = 0; size < f->size; size++)
    expect_refusal(f, f->bytes, size, ATTN_ERROR_PARSE, NULL);
  expect_refusal(f, f->bytes, f->size / 2, ATTN_ERROR_PARSE, "");
  expect_refusal(f, "graph g() {}", 12, ATTN_ERROR_PARSE, "not an .attnb file");
}

static void rename_op(Attn__Attnb__Graph *m) {
  strcpy(find_node(m, "softmax")->op, "softmx"); // in place: the unpacker frees it
}

static void input_out_of_range(Attn__Attnb__Graph *m) {
  find_node(m, "add")->inputs[1] = 999;
}

static void axis_as_float(Attn__Attnb__Graph *m) {
  Attn__Attnb__Attribute *axis = find_node(m, "softmax")->attributes[0];
  assert_string_equal(axis->name, "axis");
  axis->value_case = ATTN__ATTNB__ATTRIBUTE__VALUE_FLOAT_VALUE;
  axis->float_value = 1.0;
}

static void unknown_attribute(Attn__Attnb__Graph *m) {
  strcpy(find_node(m, "softmax")->attributes[0]->name, "axes");
}

static void drop_constant_data(Attn__Attnb__Graph *m) {
  Attn__Attnb__Node *node = find_node(m, "constant");
  assert_int_equal(node->n_attributes, 2);
  // Keeps the type, drops the required data (freed here: free_unpacked sees one attribute).
  attn__attnb__attribute__free_unpacked(node->attributes[1], NULL);
  node->n_attributes = 1;
}

static void short_constant_data(Attn__Attnb__Graph *m) {
  find_node(m, "constant")->attributes[1]->data_value.len -= 4;
}

static void newer_version(Attn__Attnb__Graph *m) {
  m->format_version = ATTN_ATTNB_FORMAT_VERSION + 1;
}

static void wrong_magic(Attn__Attnb__Graph *m) {
  m->magic = 0x12345678;
}

static void dim_out_of_range(Attn__Attnb__Graph *m) {
  m->values[0]->type->dims[0] = -100; // dim table entry 99
}

static void wrong_output_type(Attn__Attnb__Graph *m) {
  // The softmax's output claims 5 columns; shape inference says 4.
  Attn__Attnb__Node *node = find_node(m, "softmax");
  m->values[node->outputs[0] - 1]->type->dims[1] = 5;
}

static void producer_mismatch(Attn__Attnb__Graph *m) {
  Attn__Attnb__Node *node = find_node(m, "softmax");
  m->values[node->outputs[0] - 1]->output_index = 1;
}

static void unknown_dtype(Attn__Attnb__Graph *m) {
  strcpy(m->values[0]->type->dtype, "f64");
}

static void kernel_without_partition(Attn__Attnb__Graph *m) {
  find_node(m, "softmax")->kernel = 1;
}

static void test_refusals(void **state) {
  fixture *f = *state;
  parse_and_write(f, small_graph);
  expect_edit_refused(f, rename_op, ATTN_ERROR_PARSE, "unknown op 'softmx'");
  expect_edit_refused(f, input_out_of_range, ATTN_ERROR_PARSE, "value 999, out of range");
  expect_edit_refused(f, axis_as_float, ATTN_ERROR_PARSE,
                      "attribute 'axis' should be int, the file holds float");
  expect_edit_refused(f, unknown_attribute, ATTN_ERROR_PARSE, "has no attribute 'axes'");
  expect_edit_refused(f, drop_constant_data, ATTN_ERROR_PARSE, "attribute 'data' is missing");
  expect_edit_refused(f, short_constant_data, ATTN_ERROR_PARSE,
                      "holds 12 bytes, its type needs 16");
  expect_edit_refused(f, newer_version, ATTN_ERROR_UNSUPPORTED, "format version 2 by a newer");
  expect_edit_refused(f, wrong_magic, ATTN_ERROR_PARSE, "not an .attnb file");
  expect_edit_refused(f, dim_out_of_range, ATTN_ERROR_PARSE, "out of range");
  expect_edit_refused(f, wrong_output_type, ATTN_ERROR_INVALID_GRAPH,
                      "invalid graph: t.attn:2:7: verifier: softmax: output 0 has type");
  expect_edit_refused(f, producer_mismatch, ATTN_ERROR_PARSE, "does not name this node");
  expect_edit_refused(f, unknown_dtype, ATTN_ERROR_PARSE, "unknown dtype 'f64'");
  expect_edit_refused(f, kernel_without_partition, ATTN_ERROR_PARSE, "in kernel 1, out of range");
}

// Every allocation of a read failing in turn: an out-of-memory error (or, for an allocation
// whose failure is survivable, success), never a crash or a leak.
static void test_allocation_failures(void **state) {
  fixture *f = *state;
  parse_and_write(f, small_graph);
  size_t before = f->counter.total_requests;
  attn_graph *graph = NULL;
  assert_int_equal(
      attn_attnb_read_memory("t.attnb", f->bytes, f->size, allocator(f), &f->diag, &graph),
      ATTN_OK);
  attn_graph_destroy(graph);
  long requests = (long)(f->counter.total_requests - before);
  assert_true(requests > 0);
  for (long i = 0; i < requests; i++) {
    size_t live = f->counter.live_bytes;
    attn_diag_clear(&f->diag);
    f->counter.fail_at = (long)f->counter.total_requests + i;
    attn_status status =
        attn_attnb_read_memory("t.attnb", f->bytes, f->size, allocator(f), &f->diag, &graph);
    f->counter.fail_at = -1;
    if (status == ATTN_OK)
      attn_graph_destroy(graph);
    else
      assert_int_equal(status, ATTN_ERROR_OUT_OF_MEMORY);
    assert_int_equal(f->counter.live_bytes, live);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
      TEST(test_every_attribute_kind),
      TEST(test_symbolic_dims),
      TEST(test_constants),
      TEST(test_golden_inputs),
      TEST(test_write_and_read_file),
      TEST(test_truncated),
      TEST(test_refusals),
      TEST(test_allocation_failures),
#undef TEST
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
