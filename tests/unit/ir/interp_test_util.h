// Shared helpers of the reference evaluator's tests: a fixture holding a graph built on a
// counting allocator (teardown fails the test on a leak), graph-building shorthands, tensors over
// caller arrays, and a tolerance check. Include after <cmocka.h>.
#ifndef ATTN_TESTS_UNIT_IR_INTERP_TEST_UTIL_H_
#define ATTN_TESTS_UNIT_IR_INTERP_TEST_UTIL_H_

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/interp.h"
#include "ir/ir.h"

enum { TEST_MAX_OUTPUTS = 8 };

typedef struct fixture {
  attn_counting_allocator counter;
  attn_diag diag;
  attn_graph *graph;
  attn_tensor outputs[TEST_MAX_OUTPUTS];
} fixture;

static const attn_loc test_loc = {"t.attn", 3, 7};

static inline int setup(void **state) {
  fixture *f = test_calloc(1, sizeof(*f));
  attn_counting_allocator_init(&f->counter, attn_allocator_system());
  attn_diag_init(&f->diag, attn_allocator_system());
  if (attn_graph_create(attn_counting_allocator_get(&f->counter), &f->diag, "t", &f->graph))
    return -1;
  *state = f;
  return 0;
}

static inline void free_outputs(fixture *f) {
  for (uint32_t i = 0; i < TEST_MAX_OUTPUTS; i++)
    attn_tensor_free(attn_counting_allocator_get(&f->counter), &f->outputs[i]);
}

static inline int teardown(void **state) {
  fixture *f = *state;
  free_outputs(f);
  attn_graph_destroy(f->graph);
  attn_diag_deinit(&f->diag);
  assert_int_equal(f->counter.live_bytes, 0); // nothing leaked
  test_free(f);
  return 0;
}

static inline attn_dim sym(fixture *f, const char *name) {
  attn_dim d;
  assert_int_equal(attn_graph_dim_symbol(f->graph, name, strlen(name), &d), ATTN_OK);
  return d;
}

static inline attn_value_id input(fixture *f, const char *name, attn_type type) {
  attn_value_id id;
  assert_int_equal(attn_graph_add_input(f->graph, name, &type, test_loc, &id), ATTN_OK);
  return id;
}

// Adds a node (which must be accepted) and returns it.
static inline attn_node_id node(fixture *f, attn_op op, const attn_value_id *inputs, uint32_t count,
                                const void *attrs) {
  attn_node_id id;
  attn_status status = attn_graph_add_node(f->graph, op, inputs, count, attrs, test_loc, &id);
  if (status != ATTN_OK)
    fail_msg("add_node: %s", attn_diag_last_error(&f->diag));
  return id;
}

// Adds a node and returns its first output.
static inline attn_value_id op(fixture *f, attn_op op_code, const attn_value_id *inputs,
                               uint32_t count, const void *attrs) {
  return attn_node_output(f->graph, node(f, op_code, inputs, count, attrs), 0);
}

static inline attn_value_id op1(fixture *f, attn_op op_code, attn_value_id x, const void *attrs) {
  return op(f, op_code, &x, 1, attrs);
}

static inline attn_value_id op2(fixture *f, attn_op op_code, attn_value_id a, attn_value_id b,
                                const void *attrs) {
  attn_value_id in[2] = {a, b};
  return op(f, op_code, in, 2, attrs);
}

static inline void set_outputs(fixture *f, const attn_value_id *values, uint32_t count) {
  static const char *const names[TEST_MAX_OUTPUTS] = {"y0", "y1", "y2", "y3",
                                                      "y4", "y5", "y6", "y7"};
  assert_true(count <= TEST_MAX_OUTPUTS);
  assert_int_equal(attn_graph_set_outputs(f->graph, values, names, count), ATTN_OK);
  assert_int_equal(attn_graph_verify(f->graph), ATTN_OK);
}

static inline void set_output(fixture *f, attn_value_id value) {
  set_outputs(f, &value, 1);
}

// Runs the graph into f->outputs (freeing earlier outputs first).
static inline attn_status run_with(fixture *f, const attn_tensor *inputs,
                                   const attn_tensor *weights, const int64_t *symbols) {
  free_outputs(f);
  attn_interp_args args = {inputs, weights, symbols};
  return attn_interp_run(f->graph, &args, attn_counting_allocator_get(&f->counter), &f->diag,
                         f->outputs);
}

static inline void run_ok(fixture *f, const attn_tensor *inputs) {
  attn_status status = run_with(f, inputs, NULL, NULL);
  if (status != ATTN_OK)
    fail_msg("interp: %s", attn_diag_last_error(&f->diag));
}

static inline attn_tensor tensor(attn_dtype dtype, void *data, uint32_t rank, const int64_t *dims) {
  attn_tensor t = {dtype, rank, {0}, data};
  if (rank)
    memcpy(t.dims, dims, rank * sizeof(*dims));
  return t;
}

static inline double at(const attn_tensor *t, int64_t index) {
  return attn_tensor_get_f64(t, index);
}

static inline void expect_shape(const attn_tensor *t, attn_dtype dtype, uint32_t rank,
                                const int64_t *dims) {
  assert_int_equal(t->dtype, dtype);
  assert_int_equal(t->rank, rank);
  for (uint32_t d = 0; d < rank; d++)
    assert_int_equal(t->dims[d], dims[d]);
}

// |got - want| ≤ tol * max(1, |want|); NaN matches NaN, infinities must be equal.
static inline void expect_near(double got, double want, double tol, const char *what,
                               int64_t index) {
  bool ok;
  if (isnan(want))
    ok = isnan(got);
  else if (isinf(want))
    ok = got == want;
  else
    ok = fabs(got - want) <= tol * (fabs(want) > 1.0 ? fabs(want) : 1.0);
  if (!ok)
    fail_msg("%s[%lld]: got %.17g, want %.17g", what, (long long)index, got, want);
}

static inline void expect_values(const attn_tensor *t, const double *want, int64_t count,
                                 double tol, const char *what) {
  assert_int_equal(attn_tensor_element_count(t), count);
  for (int64_t i = 0; i < count; i++)
    expect_near(at(t, i), want[i], tol, what, i);
}

static inline void expect_error(fixture *f, attn_status got, attn_status want,
                                const char *message) {
  assert_int_equal(got, want);
  const char *last = attn_diag_last_error(&f->diag);
  assert_non_null(last);
  if (strstr(last, message) == NULL)
    fail_msg("error '%s' does not contain '%s'", last, message);
  for (uint32_t i = 0; i < TEST_MAX_OUTPUTS; i++)
    assert_null(f->outputs[i].data);
}

// Deterministic values in [-1, 1).
static inline double next_random(uint32_t *seed) {
  *seed = *seed * 1664525u + 1013904223u;
  return (double)(*seed >> 8) / 8388608.0 - 1.0;
}

static inline void fill_random(float *data, int64_t count, uint32_t seed) {
  for (int64_t i = 0; i < count; i++)
    data[i] = (float)next_random(&seed);
}

#endif // ATTN_TESTS_UNIT_IR_INTERP_TEST_UTIL_H_
