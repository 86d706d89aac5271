// What the pass tests share; see pass_test_util.h.
#include "tests/unit/passes/pass_test_util.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ir/interp.h"
#include "ir/print.h"

void pass_test_fill(attn_tensor *tensor, uint64_t seed, const pass_test_data *data) {
  uint64_t state = seed;
  int64_t count = attn_tensor_element_count(tensor);
  int64_t row = tensor->rank ? tensor->dims[tensor->rank - 1] : 1;
  for (int64_t i = 0; i < count; i++) {
    uint64_t r = next_random(&state);
    double v;
    if (attn_dtype_is_float(tensor->dtype))
      v = data->float_scale * ((double)(r >> 11) * 0x1.0p-52 - 1.0);
    else if (tensor->dtype == ATTN_DTYPE_BOOL)
      v = (double)((r & 1) || (data->keeps_a_key_per_row && row > 0 && i % row == 0));
    else
      v = data->int_bound > 0 ? (double)(r % (uint64_t)data->int_bound) : 0.0;
    attn_tensor_set_f64(tensor, i, v);
  }
}

static attn_status run_interp(void *ctx, const attn_graph *graph, const attn_interp_args *args,
                              attn_diag *diag, attn_tensor *out_outputs) {
  (void)ctx;
  return attn_interp_run(graph, args, attn_allocator_system(), diag, out_outputs);
}

attn_status pass_test_evaluate(const attn_graph *graph, const int64_t *symbols,
                               const pass_test_data *input_data, const pass_test_data *weight_data,
                               attn_diag *diag, pass_test_outputs *out) {
  return pass_test_evaluate_with(graph, symbols, input_data, weight_data, run_interp, NULL, diag,
                                 out);
}

attn_status pass_test_evaluate_with(const attn_graph *graph, const int64_t *symbols,
                                    const pass_test_data *input_data,
                                    const pass_test_data *weight_data, pass_test_runner runner,
                                    void *runner_ctx, attn_diag *diag, pass_test_outputs *out) {
  attn_allocator a = attn_allocator_system();
  attn_tensor *inputs = calloc(graph->input_count + 1, sizeof(*inputs));
  attn_tensor *weights = calloc(graph->node_count, sizeof(*weights));
  assert_true(inputs && weights);
  for (uint32_t i = 0; i < graph->input_count; i++) {
    const attn_value *v = attn_graph_value(graph, graph->inputs[i]);
    int64_t dims[ATTN_MAX_RANK];
    for (uint32_t d = 0; d < v->type.rank; d++)
      assert_int_equal(attn_graph_dim_eval(graph, v->type.dims[d], symbols, &dims[d]), ATTN_OK);
    assert_int_equal(attn_tensor_alloc(a, v->type.dtype, v->type.rank, dims, &inputs[i]), ATTN_OK);
    pass_test_fill(&inputs[i], hash_text(v->name) + i, input_data);
  }
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->op != ATTN_OP_WEIGHT)
      continue;
    const attn_weight_attrs *w = node->attrs;
    assert_int_equal(attn_tensor_alloc(a, w->type.dtype, w->type.rank, w->type.dims, &weights[n]),
                     ATTN_OK);
    pass_test_fill(&weights[n], hash_text(w->names[0]), weight_data);
  }
  assert_true(graph->output_count <= PASS_TEST_MAX_OUTPUTS);
  attn_interp_args args = {inputs, weights, symbols};
  attn_status status = runner(runner_ctx, graph, &args, diag, out->tensors);
  out->count = status == ATTN_OK ? graph->output_count : 0;
  for (uint32_t i = 0; i < graph->input_count; i++)
    attn_tensor_free(a, &inputs[i]);
  for (uint32_t n = 1; n < graph->node_count; n++)
    attn_tensor_free(a, &weights[n]);
  free(inputs);
  free(weights);
  return status;
}

void pass_test_outputs_free(pass_test_outputs *outputs) {
  for (uint32_t i = 0; i < outputs->count; i++)
    attn_tensor_free(attn_allocator_system(), &outputs->tensors[i]);
  outputs->count = 0;
}

void pass_test_compare(const char *what, const pass_test_outputs *before,
                       const pass_test_outputs *after, double tolerance, unsigned flags) {
  assert_int_equal(before->count, after->count);
  for (uint32_t o = 0; o < before->count; o++) {
    const attn_tensor *x = &before->tensors[o], *y = &after->tensors[o];
    assert_int_equal(x->dtype, y->dtype);
    assert_int_equal(x->rank, y->rank);
    for (uint32_t d = 0; d < x->rank; d++)
      assert_int_equal(x->dims[d], y->dims[d]);
    if (flags & PASS_TEST_EXACT) {
      size_t size = 0;
      assert_true(attn_tensor_size_bytes(x, &size));
      assert_memory_equal(x->data, y->data, size ? size : 1);
      continue;
    }
    bool is_float = attn_dtype_is_float(x->dtype);
    double diff = 0.0, norm = 0.0;
    for (int64_t i = 0; i < attn_tensor_element_count(x); i++) {
      double a = attn_tensor_get_f64(x, i), b = attn_tensor_get_f64(y, i);
      if (flags & PASS_TEST_FINITE)
        assert_true(isfinite(a) && isfinite(b));
      if (!is_float || !isfinite(a)) {
        if (!(a == b || (isnan(a) && isnan(b)))) {
          fprintf(stderr, "%s: output %u element %lld: %g before, %g after\n", what, o,
                  (long long)i, a, b);
          fail();
        }
        continue;
      }
      diff += (a - b) * (a - b);
      norm += a * a;
    }
    double rel = norm > 0.0 ? sqrt(diff / norm) : sqrt(diff);
    if (!(rel <= tolerance)) {
      fprintf(stderr, "%s: output %u differs, relative L2 %.3g > %.1g\n", what, o, rel, tolerance);
      fail();
    }
  }
}

int64_t *pass_test_symbols(const attn_graph *graph, const char *bindings, int64_t fallback) {
  int64_t *values = calloc(graph->symbol_count + 1, sizeof(*values));
  assert_non_null(values);
  for (uint32_t s = 0; s < graph->symbol_count; s++) {
    values[s] = fallback;
    const char *name = attn_graph_symbol_name(graph, s);
    size_t length = strlen(name);
    for (const char *p = bindings; p && *p;) {
      const char *end = strchr(p, ',');
      size_t item = end ? (size_t)(end - p) : strlen(p);
      if (item > length && strncmp(p, name, length) == 0 && p[length] == '=')
        values[s] = strtoll(p + length + 1, NULL, 10);
      p += item + (end ? 1 : 0);
    }
  }
  return values;
}

char *pass_test_print(const attn_graph *graph) {
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  assert_non_null(out);
  assert_int_equal(attn_graph_print(graph, out), ATTN_OK);
  fclose(out);
  return text;
}
