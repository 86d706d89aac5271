// Unit tests for the IR core: graph building, symbolic dims, shape inference, the verifier.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ir/ir.h"

typedef struct fixture {
  attn_counting_allocator counter;
  attn_diag diag;
  attn_graph *graph;
} fixture;

static int setup(void **state) {
  fixture *f = test_calloc(1, sizeof(*f));
  attn_counting_allocator_init(&f->counter, attn_allocator_system());
  attn_diag_init(&f->diag, attn_allocator_system());
  if (attn_graph_create(attn_counting_allocator_get(&f->counter), &f->diag, "t", &f->graph))
    return -1;
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

static attn_dim sym(attn_graph *g, const char *name) {
  attn_dim d;
  assert_int_equal(attn_graph_dim_symbol(g, name, strlen(name), &d), ATTN_OK);
  return d;
}

static attn_value_id input(attn_graph *g, const char *name, attn_type type) {
  attn_value_id id;
  assert_int_equal(attn_graph_add_input(g, name, &type, ATTN_LOC_NONE, &id), ATTN_OK);
  return id;
}

static attn_value_id node1(attn_graph *g, attn_op op, const attn_value_id *in, uint32_t n,
                           const void *attrs) {
  attn_node_id id;
  attn_status status = attn_graph_add_node(g, op, in, n, attrs, (attn_loc){"t.attn", 3, 7}, &id);
  if (status != ATTN_OK)
    return ATTN_VALUE_NONE;
  return attn_node_output(g, id, 0);
}

static const attn_type *type_of(attn_graph *g, attn_value_id id) {
  return &attn_graph_value(g, id)->type;
}

static void dims_are_interned_folded_and_evaluated(void **state) {
  fixture *f = *state;
  attn_graph *g = f->graph;
  attn_dim b = sym(g, "B"), t = sym(g, "T"), t_past = sym(g, "T_past");
  assert_true(b < 0 && t < 0 && b != t);
  assert_int_equal(sym(g, "T"), t);
  attn_dim sum1, sum2, x, folded;
  assert_int_equal(attn_graph_dim_binary(g, ATTN_DIM_ADD, t_past, t, &sum1), ATTN_OK);
  assert_int_equal(attn_graph_dim_binary(g, ATTN_DIM_ADD, t_past, t, &sum2), ATTN_OK);
  assert_int_equal(sum1, sum2);
  assert_int_equal(attn_graph_dim_binary(g, ATTN_DIM_MUL, 1, t, &x), ATTN_OK);
  assert_int_equal(x, t);
  assert_int_equal(attn_graph_dim_binary(g, ATTN_DIM_SUB, t, t, &x), ATTN_OK);
  assert_int_equal(x, 0);
  assert_int_equal(attn_graph_dim_binary(g, ATTN_DIM_DIV, 768, 12, &folded), ATTN_OK);
  assert_int_equal(folded, 64);
  assert_int_equal(attn_graph_dim_binary(g, ATTN_DIM_DIV, 7, 2, &folded), ATTN_ERROR_INVALID_GRAPH);
  attn_dim expr;
  assert_int_equal(attn_graph_dim_binary(g, ATTN_DIM_MUL, sum1, 2, &expr), ATTN_OK);
  char text[64];
  attn_graph_dim_format(g, expr, text, sizeof(text));
  assert_string_equal(text, "(T_past + T) * 2");
  int64_t values[3] = {-1, 5, 3}; // B unbound, T = 5, T_past = 3
  int64_t v;
  assert_int_equal(attn_graph_dim_eval(g, expr, values, &v), ATTN_OK);
  assert_int_equal(v, 16);
  assert_int_equal(attn_graph_dim_eval(g, b, values, &v), ATTN_ERROR_INVALID_ARGUMENT);
  uint32_t index;
  assert_true(attn_graph_find_symbol(g, "T_past", &index));
  assert_string_equal(attn_graph_symbol_name(g, index), "T_past");
}

static void gpt_attention_block_infers_symbolic_shapes(void **state) {
  fixture *f = *state;
  attn_graph *g = f->graph;
  attn_dim b = sym(g, "B"), t = sym(g, "T");
  attn_value_id x = input(g, "x", (attn_type){ATTN_DTYPE_F32, 3, {b, t, 768}});
  const char *name = "w";
  attn_weight_attrs wa = {&name, 1, {ATTN_DTYPE_F32, 2, {768, 2304}}};
  attn_value_id w = node1(g, ATTN_OP_WEIGHT, NULL, 0, &wa);
  attn_value_id qkv = node1(g, ATTN_OP_MATMUL, (attn_value_id[]){x, w}, 2, NULL);
  assert_true(qkv.index);
  attn_type want = {ATTN_DTYPE_F32, 3, {b, t, 2304}};
  assert_true(attn_type_equal(type_of(g, qkv), &want));

  attn_dim sizes[3] = {768, 768, 768};
  attn_split_attrs sa = {-1, sizes, 3};
  attn_node_id split;
  assert_int_equal(attn_graph_add_node(g, ATTN_OP_SPLIT, &qkv, 1, &sa, ATTN_LOC_NONE, &split),
                   ATTN_OK);
  attn_value_id q = attn_node_output(g, split, 0);
  attn_dim shape[4] = {b, t, 12, ATTN_DIM_INFER};
  attn_shape_attrs ra = {shape, 4};
  attn_value_id q4 = node1(g, ATTN_OP_RESHAPE, &q, 1, &ra);
  assert_true(q4.index);
  assert_int_equal(type_of(g, q4)->dims[3], 64);
  int64_t perm[4] = {0, 2, 1, 3};
  attn_perm_attrs pa = {perm, 4};
  attn_value_id qh = node1(g, ATTN_OP_PERMUTE, &q4, 1, &pa);
  attn_attention_attrs aa = {0.0, ATTN_MASK_CAUSAL, 0, 0, false, ATTN_NORM_SOFTMAX, 0.0, true,
                             NULL};
  attn_node_id att;
  assert_int_equal(attn_graph_add_node(g, ATTN_OP_ATTENTION, (attn_value_id[]){qh, qh, qh}, 3, &aa,
                                       ATTN_LOC_NONE, &att),
                   ATTN_OK);
  attn_type o = {ATTN_DTYPE_F32, 4, {b, 12, t, 64}}, lse = {ATTN_DTYPE_F32, 3, {b, 12, t}};
  assert_true(attn_type_equal(type_of(g, attn_node_output(g, att, 0)), &o));
  assert_true(attn_type_equal(type_of(g, attn_node_output(g, att, 1)), &lse));
  // Flatten back: [B, 12, T, 64] -> permute -> [B, T, 768] via reshape of symbolic dims.
  attn_value_id back =
      node1(g, ATTN_OP_PERMUTE, (attn_value_id[]){attn_node_output(g, att, 0)}, 1, &pa);
  attn_dim flat[3] = {b, t, 768};
  attn_shape_attrs fa = {flat, 3};
  attn_value_id y = node1(g, ATTN_OP_RESHAPE, &back, 1, &fa);
  assert_true(y.index);
  const char *out_name = "y";
  assert_int_equal(attn_graph_set_outputs(g, &y, &out_name, 1), ATTN_OK);
  assert_int_equal(attn_graph_verify(g), ATTN_OK);
}

static void shape_errors_name_the_op_and_types(void **state) {
  fixture *f = *state;
  attn_graph *g = f->graph;
  attn_dim t = sym(g, "T");
  attn_value_id a = input(g, "a", (attn_type){ATTN_DTYPE_F32, 2, {t, 64}});
  attn_value_id c = input(g, "c", (attn_type){ATTN_DTYPE_F32, 2, {32, 16}});
  attn_value_id i = input(g, "i", (attn_type){ATTN_DTYPE_I64, 1, {t}});
  assert_int_equal(node1(g, ATTN_OP_MATMUL, (attn_value_id[]){a, c}, 2, NULL).index, 0);
  assert_string_equal(attn_diag_last_error(&f->diag),
                      "matmul: inner dimensions differ (64 vs 32) in f32[T, 64] x f32[32, 16]");
  assert_int_equal(f->diag.items[f->diag.count - 1].loc.line, 3);
  assert_int_equal(node1(g, ATTN_OP_ADD, (attn_value_id[]){a, c}, 2, NULL).index, 0);
  assert_string_equal(attn_diag_last_error(&f->diag),
                      "add: cannot broadcast f32[T, 64] with f32[32, 16]");
  assert_int_equal(node1(g, ATTN_OP_ADD, (attn_value_id[]){a, i}, 2, NULL).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "operand dtypes differ"));
  assert_int_equal(node1(g, ATTN_OP_EXP, &i, 1, NULL).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "must be a float tensor"));
  assert_int_equal(node1(g, ATTN_OP_ADD, &a, 1, NULL).index, 0);
  assert_string_equal(attn_diag_last_error(&f->diag), "add takes 2 inputs, got 1");
  attn_dim shape[2] = {t, 63};
  attn_shape_attrs ra = {shape, 2};
  assert_int_equal(node1(g, ATTN_OP_RESHAPE, &a, 1, &ra).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "element counts differ"));
  int64_t axes[1] = {2};
  attn_reduce_attrs re = {axes, 1, false};
  assert_int_equal(node1(g, ATTN_OP_SUM, &a, 1, &re).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "axis 2 is out of range"));
  assert_int_equal(g->node_count, 1); // nothing was added by the failures
}

static void attention_checks_gqa_masks_and_captures(void **state) {
  fixture *f = *state;
  attn_graph *g = f->graph;
  attn_dim t = sym(g, "T");
  attn_value_id q = input(g, "q", (attn_type){ATTN_DTYPE_F32, 4, {1, 8, t, 16}});
  attn_value_id kv = input(g, "kv", (attn_type){ATTN_DTYPE_F32, 4, {1, 2, t, 16}});
  attn_value_id kv3 = input(g, "kv3", (attn_type){ATTN_DTYPE_F32, 4, {1, 3, t, 16}});
  attn_value_id slopes = input(g, "slopes", (attn_type){ATTN_DTYPE_F32, 1, {8}});
  attn_value_id mask = input(g, "mask", (attn_type){ATTN_DTYPE_BOOL, 2, {t, t}});
  attn_attention_attrs aa = {
      0.0, ATTN_MASK_SLIDING_WINDOW, 4, 2, false, ATTN_NORM_SOFTMAX, 0.0, false, NULL};
  assert_true(node1(g, ATTN_OP_ATTENTION, (attn_value_id[]){q, kv, kv}, 3, &aa).index);
  assert_int_equal(node1(g, ATTN_OP_ATTENTION, (attn_value_id[]){q, kv3, kv3}, 3, &aa).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "constant multiple of kv heads"));
  aa.window = 0;
  assert_int_equal(node1(g, ATTN_OP_ATTENTION, (attn_value_id[]){q, kv, kv}, 3, &aa).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "window ≥ 1"));
  // score_mod = score + slopes[h] * (kv_idx - q_idx), with an explicit mask.
  attn_expr h = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_H};
  attn_expr kvi = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_KV_IDX};
  attn_expr qi = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_Q_IDX};
  attn_expr s = {.kind = ATTN_EXPR_VAR, .var = ATTN_EXPR_VAR_SCORE};
  attn_expr cap = {.kind = ATTN_EXPR_CAPTURE, .capture = 0, .arg_count = 1, .args = {&h}};
  attn_expr dist = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_SUB, .arg_count = 2, .args = {&kvi, &qi}};
  attn_expr bias = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_MUL, .arg_count = 2, .args = {&cap, &dist}};
  attn_expr mod = {
      .kind = ATTN_EXPR_BINARY, .fn = ATTN_EXPR_ADD, .arg_count = 2, .args = {&s, &bias}};
  attn_attention_attrs alibi = {0.0, ATTN_MASK_NONE, 0,   0, true, ATTN_NORM_SOFTMAX,
                                0.0, false,          &mod};
  assert_true(
      node1(g, ATTN_OP_ATTENTION, (attn_value_id[]){q, kv, kv, mask, slopes}, 5, &alibi).index);
  cap.arg_count = 2;
  cap.args[1] = &h;
  assert_int_equal(
      node1(g, ATTN_OP_ATTENTION, (attn_value_id[]){q, kv, kv, mask, slopes}, 5, &alibi).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "with 2 subscripts"));
  alibi.score_mod = NULL;
  assert_int_equal(
      node1(g, ATTN_OP_ATTENTION, (attn_value_id[]){q, kv, kv, mask, slopes}, 5, &alibi).index, 0);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "no score_mod reads them"));
}

static void verifier_rejects_a_corrupted_graph(void **state) {
  fixture *f = *state;
  attn_graph *g = f->graph;
  attn_value_id a = input(g, "a", (attn_type){ATTN_DTYPE_F32, 1, {4}});
  attn_value_id e = node1(g, ATTN_OP_EXP, &a, 1, NULL);
  const char *name = "y";
  assert_int_equal(attn_graph_set_outputs(g, &e, &name, 1), ATTN_OK);
  assert_int_equal(attn_graph_verify(g), ATTN_OK);
  g->values[e.index].type.dims[0] = 5;
  assert_int_equal(attn_graph_verify(g), ATTN_ERROR_INVALID_GRAPH);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "output 0 has type f32[5]"));
  g->values[e.index].type.dims[0] = 4;
  g->nodes[1].is_dead = true; // the output's producer is gone
  assert_int_equal(attn_graph_verify(g), ATTN_ERROR_INVALID_GRAPH);
  assert_non_null(strstr(attn_diag_last_error(&f->diag), "output 'y' is not defined"));
}

static void building_survives_every_allocation_failure(void **state) {
  (void)state;
  for (long fail = 0; fail < 40; fail++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    counter.fail_after = fail;
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_graph *g = NULL;
    attn_status status = attn_graph_create(attn_counting_allocator_get(&counter), &diag, "g", &g);
    attn_dim t;
    attn_value_id a = ATTN_VALUE_NONE;
    if (status == ATTN_OK)
      status = attn_graph_dim_symbol(g, "T", 1, &t);
    if (status == ATTN_OK)
      status =
          attn_graph_add_input(g, "a", &(attn_type){ATTN_DTYPE_F32, 2, {t, 8}}, ATTN_LOC_NONE, &a);
    attn_node_id n = ATTN_NODE_NONE;
    for (int i = 0; i < 100 && status == ATTN_OK; i++)
      status = attn_graph_add_node(g, ATTN_OP_TANH, &a, 1, NULL, ATTN_LOC_NONE, &n);
    if (status == ATTN_OK) {
      attn_value_id y = attn_node_output(g, n, 0);
      const char *name = "y";
      status = attn_graph_set_outputs(g, &y, &name, 1);
    }
    assert_true(status == ATTN_OK || status == ATTN_ERROR_OUT_OF_MEMORY);
    if (status == ATTN_OK)
      assert_int_equal(attn_graph_verify(g), ATTN_OK);
    attn_graph_destroy(g);
    attn_diag_deinit(&diag);
    assert_int_equal(counter.live_bytes, 0);
  }
}

// Shape inference interns new dims (T + S here); a failed allocation there must surface as
// out-of-memory, not as a shape error the user would chase in their model.
static void inference_reports_allocation_failure_as_such(void **state) {
  (void)state;
  bool saw_failure = false;
  for (long fail = 0; fail < 40; fail++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    counter.fail_after = fail;
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_graph *g = NULL;
    attn_status status = attn_graph_create(attn_counting_allocator_get(&counter), &diag, "g", &g);
    attn_dim t, s;
    attn_value_id in[2] = {ATTN_VALUE_NONE, ATTN_VALUE_NONE};
    if (status == ATTN_OK)
      status = attn_graph_dim_symbol(g, "T", 1, &t);
    if (status == ATTN_OK)
      status = attn_graph_dim_symbol(g, "S", 1, &s);
    // Fill the dim table so that interning T + S has to grow it.
    for (char name[8] = "D0"; status == ATTN_OK && g->dim_count < g->dim_capacity; name[1]++) {
      attn_dim unused;
      status = attn_graph_dim_symbol(g, name, 2, &unused);
    }
    if (status == ATTN_OK)
      status = attn_graph_add_input(g, "a", &(attn_type){ATTN_DTYPE_F32, 2, {t, 8}}, ATTN_LOC_NONE,
                                    &in[0]);
    if (status == ATTN_OK)
      status = attn_graph_add_input(g, "b", &(attn_type){ATTN_DTYPE_F32, 2, {s, 8}}, ATTN_LOC_NONE,
                                    &in[1]);
    attn_node_id n = ATTN_NODE_NONE;
    if (status == ATTN_OK)
      status =
          attn_graph_add_node(g, ATTN_OP_CONCAT, in, 2, &(attn_axis_attrs){0}, ATTN_LOC_NONE, &n);
    assert_true(status == ATTN_OK || status == ATTN_ERROR_OUT_OF_MEMORY);
    saw_failure |= status == ATTN_ERROR_OUT_OF_MEMORY;
    attn_graph_destroy(g);
    attn_diag_deinit(&diag);
    assert_int_equal(counter.live_bytes, 0);
  }
  assert_true(saw_failure);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(dims_are_interned_folded_and_evaluated, setup, teardown),
      cmocka_unit_test_setup_teardown(gpt_attention_block_infers_symbolic_shapes, setup, teardown),
      cmocka_unit_test_setup_teardown(shape_errors_name_the_op_and_types, setup, teardown),
      cmocka_unit_test_setup_teardown(attention_checks_gqa_masks_and_captures, setup, teardown),
      cmocka_unit_test_setup_teardown(verifier_rejects_a_corrupted_graph, setup, teardown),
      cmocka_unit_test(building_survives_every_allocation_failure),
      cmocka_unit_test(inference_reports_allocation_failure_as_such),
  };
  return cmocka_run_group_tests_name("ir/graph", tests, NULL, NULL);
}
