// Unit tests for ONNX import: each op family's model (written by tests/data/onnx/make_fixtures.py
// with numpy's results) imported and run on the reference evaluator, the GPT-2 export with its
// weights inline and in external data, and every refusal.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/bind.h"
#include "frontend/onnx/onnx.h"
#include "ir/interp.h"
#include "runtime/tensor/npy.h"

static char *data_path(const char *name) {
  static char path[512];
  snprintf(path, sizeof(path), "%s/%s", ATTN_ONNX_DATA_DIR, name);
  return path;
}

// Imports `model`, runs it on its inputs NAME_in<i>.npy, checks each output against
// NAME_out<i>.npy to relative L2 `tolerance`.
static void check_model(const char *name, double tolerance) {
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  char file[256];
  snprintf(file, sizeof(file), "%s.onnx", name);
  attn_graph *graph = NULL;
  attn_weights *weights = NULL;
  attn_status status = attn_onnx_import_file(data_path(file), allocator, &diag, &graph, &weights);
  if (status != ATTN_OK)
    attn_diag_write(&diag, stderr);
  assert_int_equal(status, ATTN_OK);
  attn_bound_weights bound = {0};
  assert_int_equal(attn_bind_weights(graph, weights, allocator, &diag, &bound), ATTN_OK);
  attn_tensor inputs[8] = {0}, outputs[32] = {0};
  assert_true(graph->input_count <= 8 && graph->output_count <= 32);
  for (uint32_t i = 0; i < graph->input_count; i++) {
    snprintf(file, sizeof(file), "%s_in%u.npy", name, i);
    assert_int_equal(attn_npy_read(data_path(file), allocator, &diag, &inputs[i]), ATTN_OK);
  }
  attn_interp_args args = {inputs, bound.by_node, NULL};
  status = attn_interp_run(graph, &args, allocator, &diag, outputs);
  if (status != ATTN_OK)
    attn_diag_write(&diag, stderr);
  assert_int_equal(status, ATTN_OK);
  for (uint32_t o = 0; o < graph->output_count; o++) {
    attn_tensor expected;
    snprintf(file, sizeof(file), "%s_out%u.npy", name, o);
    assert_int_equal(attn_npy_read(data_path(file), allocator, &diag, &expected), ATTN_OK);
    int64_t n = attn_tensor_element_count(&expected);
    assert_int_equal(n, attn_tensor_element_count(&outputs[o]));
    assert_int_equal(expected.rank, outputs[o].rank);
    double diff = 0, norm = 0;
    for (int64_t k = 0; k < n; k++) {
      double e = attn_tensor_get_f64(&expected, k), a = attn_tensor_get_f64(&outputs[o], k);
      diff += (a - e) * (a - e);
      norm += e * e;
    }
    if (!(sqrt(diff) <= tolerance * (sqrt(norm) + 1e-30)))
      fail_msg("%s output %u ('%s'): relative L2 %g", name, o, graph->output_names[o],
               sqrt(diff / (norm + 1e-30)));
    attn_tensor_free(allocator, &expected);
    attn_tensor_free(allocator, &outputs[o]);
  }
  for (uint32_t i = 0; i < graph->input_count; i++)
    attn_tensor_free(allocator, &inputs[i]);
  attn_bound_weights_deinit(&bound, allocator);
  attn_graph_destroy(graph);
  attn_weights_close(weights);
  attn_diag_deinit(&diag);
}

static void test_elementwise(void **state) {
  (void)state;
  check_model("op_elementwise", 1e-6);
}

static void test_logic(void **state) {
  (void)state;
  check_model("op_logic", 0);
}

static void test_reduce(void **state) {
  (void)state;
  check_model("op_reduce", 1e-6);
}

static void test_layout(void **state) {
  (void)state;
  check_model("op_layout", 1e-6);
}

static void test_gpt2(void **state) {
  (void)state;
  check_model("gpt2", 1e-4);
  check_model("gpt2_ext", 1e-4);
}

// Imports `name` and expects `status` with `needle` in the message.
static void expect_refusal(const char *name, attn_status expected, const char *needle) {
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_graph *graph = NULL;
  attn_weights *weights = NULL;
  assert_int_equal(attn_onnx_import_file(data_path(name), allocator, &diag, &graph, &weights),
                   expected);
  assert_null(graph);
  assert_null(weights);
  char message[1024];
  attn_diag_format_last_error(&diag, message, sizeof(message));
  if (!strstr(message, needle))
    fail_msg("'%s' lacks '%s'", message, needle);
  attn_diag_deinit(&diag);
}

static void test_unsupported_op(void **state) {
  (void)state;
  expect_refusal("refuse_op.onnx", ATTN_ERROR_UNSUPPORTED, "'Celu' (node 'the_celu', opset 17)");
}

static void test_escaping_external_data(void **state) {
  (void)state;
  expect_refusal("refuse_escape.onnx", ATTN_ERROR_INVALID_ARGUMENT, "outside the model's");
  expect_refusal("refuse_absolute.onnx", ATTN_ERROR_INVALID_ARGUMENT, "outside the model's");
}

// Every proper prefix of a model fails cleanly (a parse error or a graph that does not hold
// together), never crashes.
static void test_truncated(void **state) {
  (void)state;
  FILE *file = fopen(data_path("op_logic.onnx"), "rb");
  assert_non_null(file);
  unsigned char bytes[1 << 16];
  size_t size = fread(bytes, 1, sizeof(bytes), file);
  fclose(file);
  assert_true(size > 16 && size < sizeof(bytes));
  attn_allocator allocator = attn_allocator_system();
  for (size_t cut = 0; cut < size; cut++) {
    attn_diag diag;
    attn_diag_init(&diag, allocator);
    attn_graph *graph = NULL;
    attn_weights *weights = NULL;
    assert_int_not_equal(
        attn_onnx_import(bytes, cut, "cut.onnx", NULL, allocator, &diag, &graph, &weights),
        ATTN_OK);
    assert_null(graph);
    attn_diag_deinit(&diag);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_elementwise),
      cmocka_unit_test(test_logic),
      cmocka_unit_test(test_reduce),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_gpt2),
      cmocka_unit_test(test_unsupported_op),
      cmocka_unit_test(test_escaping_external_data),
      cmocka_unit_test(test_truncated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
