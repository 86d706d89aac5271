// Unit tests for weight binding: name lookup with fallbacks, shape and dtype checks,
// conversions, messages, and no leaks when memory runs out.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "frontend/bind.h"
#include "runtime/tensor/safetensors.h"

typedef struct fixture {
  char dir[64];
  char path[128];
  attn_counting_allocator counter;
  attn_diag diag;
  attn_graph *graph;
  attn_weights *weights;
} fixture;

static float wte_data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static float base_data[3] = {0.5f, 0.25f, 0.125f};
static float bare_data[2] = {9, 9};
static float matrix_data[6] = {1, 2, 3, 4, 5, 6};
static int64_t ids_data[2] = {3, 4};

static int setup(void **state) {
  fixture *f = test_calloc(1, sizeof(*f));
  snprintf(f->dir, sizeof(f->dir), "/tmp/attn_bind_test_XXXXXX");
  if (!mkdtemp(f->dir))
    return -1;
  snprintf(f->path, sizeof(f->path), "%s/model.safetensors", f->dir);
  uint16_t half_data[2] = {attn_f32_to_f16(1.5f), attn_f32_to_f16(-2.25f)};
  uint16_t brain_data[2] = {attn_f32_to_bf16(0.75f), attn_f32_to_bf16(-3.0f)};
  const attn_named_tensor tensors[] = {
      {"wte.weight", {ATTN_DTYPE_F32, 2, {4, 2}, wte_data}},
      {"h.0.ln.weight", {ATTN_DTYPE_F32, 1, {3}, base_data}},
      {"weight", {ATTN_DTYPE_F32, 1, {2}, bare_data}},
      {"x.y.z", {ATTN_DTYPE_F32, 2, {2, 3}, matrix_data}},
      {"half", {ATTN_DTYPE_F16, 1, {2}, half_data}},
      {"brain", {ATTN_DTYPE_BF16, 1, {2}, brain_data}},
      {"ids", {ATTN_DTYPE_I64, 1, {2}, ids_data}},
  };
  attn_diag_init(&f->diag, attn_allocator_system());
  if (attn_safetensors_write(f->path, tensors, sizeof(tensors) / sizeof(tensors[0]),
                             attn_allocator_system(), &f->diag) != ATTN_OK ||
      attn_weights_open(f->path, attn_allocator_system(), &f->diag, &f->weights) != ATTN_OK)
    return -1;
  attn_counting_allocator_init(&f->counter, attn_allocator_system());
  if (attn_graph_create(attn_counting_allocator_get(&f->counter), &f->diag, "t", &f->graph))
    return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  attn_graph_destroy(f->graph);
  attn_weights_close(f->weights);
  attn_diag_deinit(&f->diag);
  assert_int_equal(f->counter.live_bytes, 0); // nothing leaked
  unlink(f->path);
  rmdir(f->dir);
  test_free(f);
  return 0;
}

static attn_allocator counting(fixture *f) {
  return attn_counting_allocator_get(&f->counter);
}

// Adds a WEIGHT node at t.attn:<line>:5; `names` must be static.
static uint32_t add_weight(fixture *f, const char *const *names, uint32_t name_count,
                           attn_type type, uint32_t line) {
  attn_weight_attrs attrs = {names, name_count, type};
  attn_node_id id;
  assert_int_equal(attn_graph_add_node(f->graph, ATTN_OP_WEIGHT, NULL, 0, &attrs,
                                       (attn_loc){"t.attn", line, 5}, &id),
                   ATTN_OK);
  return id.index;
}

static attn_status bind(fixture *f, attn_bound_weights *out_bound) {
  return attn_bind_weights(f->graph, f->weights, counting(f), &f->diag, out_bound);
}

static attn_type f32_type(uint32_t rank, int64_t d0, int64_t d1) {
  return (attn_type){ATTN_DTYPE_F32, rank, {d0, d1}};
}

static void binds_a_view_without_copying(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"wte.weight"};
  uint32_t node = add_weight(f, names, 1, f32_type(2, 4, 2), 1);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_OK);
  attn_tensor view;
  assert_true(attn_weights_find(f->weights, "wte.weight", &view, NULL));
  assert_int_equal(bound.node_count, f->graph->node_count);
  assert_ptr_equal(bound.by_node[node].data, view.data);
  assert_false(bound.is_owned[node]);
  assert_null(bound.by_node[0].data);
  attn_bound_weights_deinit(&bound, counting(f));
}

static void falls_back_to_the_next_name(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"lm_head.weight", "wte.weight"};
  uint32_t node = add_weight(f, names, 2, f32_type(2, 4, 2), 1);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_OK);
  assert_float_equal(((const float *)bound.by_node[node].data)[7], 8.0f, 0.0f);
  attn_bound_weights_deinit(&bound, counting(f));
}

static void prefers_the_first_name_present(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"x.y.z", "wte.weight"};
  uint32_t node = add_weight(f, names, 2, f32_type(2, 2, 3), 1);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_OK);
  assert_float_equal(((const float *)bound.by_node[node].data)[5], 6.0f, 0.0f);
  attn_bound_weights_deinit(&bound, counting(f));
}

static void strips_the_base_model_component(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"transformer.h.0.ln.weight"};
  uint32_t node = add_weight(f, names, 1, f32_type(1, 3, 0), 1);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_OK);
  assert_float_equal(((const float *)bound.by_node[node].data)[0], 0.5f, 0.0f);
  attn_bound_weights_deinit(&bound, counting(f));
}

static void never_strips_down_to_a_bare_name(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"lm_head.weight"}; // the file has "weight"
  add_weight(f, names, 1, f32_type(1, 2, 0), 1);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_ERROR_NOT_FOUND);
}

static void missing_weight_lists_every_name_tried_and_the_file(void **state) {
  fixture *f = *state;
  static const char *const present[] = {"wte.weight"};
  static const char *const names[] = {"lm_head.weight", "transformer.tok.weight"};
  add_weight(f, present, 1, f32_type(2, 4, 2), 1);
  add_weight(f, names, 2, f32_type(2, 4, 2), 7);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_ERROR_NOT_FOUND);
  assert_null(bound.by_node);
  assert_int_equal(f->diag.count, 1);
  const attn_diagnostic *d = &f->diag.items[0];
  assert_int_equal(d->loc.line, 7);
  assert_non_null(strstr(d->message, "'lm_head.weight'"));
  assert_non_null(strstr(d->message, "'transformer.tok.weight'"));
  assert_non_null(strstr(d->message, "'tok.weight'"));
  assert_non_null(strstr(d->message, f->path));
}

static void shape_mismatch_names_both_shapes_and_the_file(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"wte.weight"};
  add_weight(f, names, 1, f32_type(2, 2, 4), 3);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_ERROR_INVALID_ARGUMENT);
  const char *message = attn_diag_last_error(&f->diag);
  assert_non_null(strstr(message, "'wte.weight'"));
  assert_non_null(strstr(message, "f32[4, 2]"));
  assert_non_null(strstr(message, "f32[2, 4]"));
  assert_non_null(strstr(message, f->path));
  assert_int_equal(f->diag.items[0].loc.line, 3);
}

static void converts_half_precision_to_the_declared_f32(void **state) {
  fixture *f = *state;
  static const char *const half[] = {"half"};
  static const char *const brain[] = {"brain"};
  uint32_t h = add_weight(f, half, 1, f32_type(1, 2, 0), 1);
  uint32_t b = add_weight(f, brain, 1, f32_type(1, 2, 0), 2);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_OK);
  assert_true(bound.is_owned[h] && bound.is_owned[b]);
  assert_int_equal(bound.by_node[h].dtype, ATTN_DTYPE_F32);
  const float *hv = bound.by_node[h].data, *bv = bound.by_node[b].data;
  assert_float_equal(hv[0], 1.5f, 0.0f);
  assert_float_equal(hv[1], -2.25f, 0.0f);
  assert_float_equal(bv[0], 0.75f, 0.0f);
  assert_float_equal(bv[1], -3.0f, 0.0f);
  attn_bound_weights_deinit(&bound, counting(f));
}

static void converts_f32_to_a_declared_bf16(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"x.y.z"};
  attn_type type = {ATTN_DTYPE_BF16, 2, {2, 3}};
  uint32_t node = add_weight(f, names, 1, type, 1);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_OK);
  assert_int_equal(bound.by_node[node].dtype, ATTN_DTYPE_BF16);
  assert_float_equal(attn_tensor_get_f64(&bound.by_node[node], 4), 5.0, 0.0);
  attn_bound_weights_deinit(&bound, counting(f));
}

static void rejects_integer_data_for_a_float_weight(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"ids"};
  add_weight(f, names, 1, f32_type(1, 2, 0), 4);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_ERROR_INVALID_ARGUMENT);
  const char *message = attn_diag_last_error(&f->diag);
  assert_non_null(strstr(message, "i64[2]"));
  assert_non_null(strstr(message, "f32[2]"));
}

static void converts_between_integer_dtypes(void **state) {
  fixture *f = *state;
  static const char *const names[] = {"ids"};
  uint32_t node = add_weight(f, names, 1, (attn_type){ATTN_DTYPE_I32, 1, {2}}, 1);
  attn_bound_weights bound;
  assert_int_equal(bind(f, &bound), ATTN_OK);
  assert_int_equal(((const int32_t *)bound.by_node[node].data)[1], 4);
  attn_bound_weights_deinit(&bound, counting(f));
}

static void deinit_of_an_empty_binding_is_a_no_op(void **state) {
  fixture *f = *state;
  attn_bound_weights bound = {0};
  attn_bound_weights_deinit(&bound, counting(f));
  assert_null(bound.by_node);
}

// Every allocation of a binding that converts, failed in turn: an error, no leak, no crash.
static void survives_every_allocation_failure(void **state) {
  fixture *f = *state;
  static const char *const half[] = {"half"};
  static const char *const brain[] = {"brain"};
  add_weight(f, half, 1, f32_type(1, 2, 0), 1);
  add_weight(f, brain, 1, f32_type(1, 2, 0), 2);
  for (long fail_after = 0;; fail_after++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    counter.fail_after = fail_after;
    attn_allocator allocator = attn_counting_allocator_get(&counter);
    attn_bound_weights bound;
    attn_status status = attn_bind_weights(f->graph, f->weights, allocator, &f->diag, &bound);
    if (status == ATTN_OK) {
      attn_bound_weights_deinit(&bound, allocator);
      assert_int_equal(counter.live_bytes, 0);
      assert_true(fail_after >= 4); // two arrays, two conversions
      break;
    }
    assert_int_equal(status, ATTN_ERROR_OUT_OF_MEMORY);
    assert_int_equal(counter.live_bytes, 0);
  }
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
  const struct CMUnitTest tests[] = {
      TEST(binds_a_view_without_copying),
      TEST(falls_back_to_the_next_name),
      TEST(prefers_the_first_name_present),
      TEST(strips_the_base_model_component),
      TEST(never_strips_down_to_a_bare_name),
      TEST(missing_weight_lists_every_name_tried_and_the_file),
      TEST(shape_mismatch_names_both_shapes_and_the_file),
      TEST(converts_half_precision_to_the_declared_f32),
      TEST(converts_f32_to_a_declared_bf16),
      TEST(rejects_integer_data_for_a_float_weight),
      TEST(converts_between_integer_dtypes),
      TEST(deinit_of_an_empty_binding_is_a_no_op),
      TEST(survives_every_allocation_failure),
  };
  return cmocka_run_group_tests_name("frontend/bind", tests, NULL, NULL);
}
