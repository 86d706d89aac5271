// Conformance of the cpu backend: every op and every attention variant, written as small .attn
// graphs, runs through the default pass pipeline and the cpu backend and must agree with the
// reference evaluator on the graph as written. Symbols stay symbolic through the passes and are
// bound only at run time, so kernels are checked generic over them; sizes are odd on purpose
// (no dim a multiple of a tile). The backend surrounds every buffer with guard bands and fails a
// run whose kernel writes outside its outputs. Each case also names how its kernels must run
// (a generator, not the reference evaluator), so a generator that stops taking a kernel fails.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codegen/cpu/backend.h"
#include "frontend/parse.h"
#include "passes/pass.h"
#include "runtime/base/allocator.h"
#include "tests/unit/passes/pass_test_util.h"

typedef struct conformance_case {
  const char *name;
  const char *text;      // the graph
  const char *symbols;   // "B=2,T=37" (unnamed symbols get 5)
  double tolerance;      // relative L2 of float outputs; 0: 1e-5
  const char *generated; // a step implementation at least one kernel must use, or NULL
  bool all_generated;    // no kernel may run on the reference evaluator
  pass_test_data data;   // how inputs are drawn; all zero: floats in [-2, 2), ints in [0, 5)
} conformance_case;

// A case: its name, its text, its symbols, then any other field as a designated initializer.
#define CASE(name_, text_, ...)                                                                    \
  { .name = name_, .text = text_, .symbols = __VA_ARGS__ }

#define F32_3D "x: f32[B, T, 19], y: f32[B, T, 19]"

static const conformance_case cases[] = {
    // ---- elementwise ------------------------------------------------------------------------
    CASE("unary",
         "graph g(" F32_3D ") -> (o: f32[B, T, 19]) {\n"
         "  a = add(neg(x), abs(y))\n"
         "  b = mul(exp(x), tanh(y))\n"
         "  c = add(sqrt(abs(x)), rsqrt(add(abs(y), constant(f32[], 1))))\n"
         "  d = add(erf(x), sigmoid(y))\n"
         "  e = add(relu(x), gelu(y))\n"
         "  f = add(gelu(x, approximate=tanh), silu(y))\n"
         "  g = log(add(abs(x), constant(f32[], 0.5)))\n"
         "  return add(add(add(a, b), add(c, d)), add(add(e, f), g))\n"
         "}\n",
         "B=2,T=7", .generated = "mlir"),
    CASE("binary_broadcast",
         "graph g(x: f32[B, T, 19], r: f32[19], c: f32[B, 1, 19]) "
         "-> (o: f32[B, T, 19]) {\n"
         "  a = sub(div(x, add(abs(r), constant(f32[], 1))), c)\n"
         "  b = maximum(minimum(x, c), r)\n"
         "  p = pow(abs(x), constant(f32[], 1.5))\n"
         "  return add(add(a, b), p)\n"
         "}\n",
         "B=3,T=5", .generated = "mlir"),
    CASE("compare_where",
         "graph g(" F32_3D ") -> (o: f32[B, T, 19], m: bool[B, T, 19]) {\n"
         "  lt_ = lt(x, y)\n"
         "  m = or(and(le(x, y), ge(x, constant(f32[], 0))), "
         "not(or(eq(x, y), ne(gt(x, y), lt_))))\n"
         "  return where(lt_, x, y), m\n"
         "}\n",
         "B=2,T=9", .generated = "mlir"),
    CASE("integers_cast",
         "graph g(i: i64[B, T], j: i32[B, T]) -> (o: i64[B, T], f: f32[B, T]) {\n"
         "  s = add(mul(i, cast(j, dtype=i64)), constant(i64[], 3))\n"
         "  q = div(s, add(cast(j, dtype=i64), constant(i64[], 1)))\n"
         "  return sub(q, i), cast(q, dtype=f32)\n"
         "}\n",
         "B=2,T=11", .generated = "mlir"),
    // ---- matmul ----------------------------------------------------------------------------
    CASE("gemm_linear",
         "graph g(x: f32[B, T, 67]) -> (o: f32[B, T, 19]) {\n"
         "  w = weight(\"w\", f32[19, 67])\n"
         "  return add(matmul(x, w, transpose_b=true), weight(\"b\", f32[19]))\n"
         "}\n",
         "B=2,T=37", .generated = "gemm"),
    CASE("gemm_epilogues",
         "graph g(x: f32[B, T, 67]) -> (o: f32[B, T, 23], p: f32[B, T, 23], "
         "q: f32[B, T, 23]) {\n"
         "  w = weight(\"w\", f32[67, 23])\n"
         "  bias = weight(\"b\", f32[23])\n"
         "  h = gelu(add(matmul(x, w), bias), approximate=tanh)\n"
         "  o = add(h, relu(add(matmul(x, w), bias)))\n"
         "  p = silu(matmul(x, w))\n"
         "  q = gelu(add(matmul(x, w), bias))\n"
         "  return o, p, q\n"
         "}\n",
         "B=1,T=29", .generated = "gemm"),
    // Llama's MLP: the gate's GEMM multiplies its activation by the up projection in its
    // epilogue, and the down projection adds the residual: nothing left for the reference.
    CASE("gemm_gated_mlp",
         "graph g(x: f32[B, T, 40]) -> (o: f32[B, T, 40]) {\n"
         "  u = matmul(x, weight(\"up\", f32[56, 40]), transpose_b=true)\n"
         "  g = silu(matmul(x, weight(\"gate\", f32[56, 40]), transpose_b=true))\n"
         "  return add(x, matmul(mul(g, u), weight(\"down\", f32[40, 56]), transpose_b=true))\n"
         "}\n",
         "B=2,T=13", .generated = "gemm", .all_generated = true),
    // ACMIL's gated attention pooling: tanh(x V + b) * sigmoid(x U + c).
    CASE("gemm_gated_tanh_sigmoid",
         "graph g(x: f32[N, 24]) -> (o: f32[N, 16]) {\n"
         "  u = sigmoid(add(matmul(x, weight(\"u\", f32[24, 16])), weight(\"c\", f32[16])))\n"
         "  return mul(tanh(add(matmul(x, weight(\"v\", f32[24, 16])), weight(\"b\", f32[16]))), "
         "u)\n"
         "}\n",
         "N=53", .generated = "gemm", .all_generated = true),
    // Epilogues the GEMM template cannot fuse (a column bias, exp, log, sqrt, neg, abs) compile
    // through MLIR after it: six GEMM kernels of five specs, each with a rest of its own, so a
    // program calls more functions than it has kernels; nothing runs on the reference.
    CASE("gemm_unfused_epilogues",
         "graph g(x: f32[M, 24]) -> (a: f32[M, 16], b: f32[M, 16], c: f32[M, 16], "
         "d: f32[M, M], e: f32[3, M], f: f32[M, 16]) {\n"
         "  a = exp(matmul(x, weight(\"v1\", f32[24, 16])))\n"
         "  b = sqrt(abs(add(matmul(x, weight(\"v2\", f32[24, 16])), "
         "weight(\"bias\", f32[16]))))\n"
         "  c = neg(exp(relu(matmul(x, weight(\"v3\", f32[24, 16])))))\n"
         "  d = log(add(abs(matmul(x, x, transpose_b=true)), constant(f32[], 1)))\n"
         "  e = add(matmul(weight(\"w\", f32[3, 24]), x, transpose_b=true), "
         "weight(\"col\", f32[3, 1]))\n"
         "  f = abs(silu(matmul(x, weight(\"v4\", f32[24, 16]))))\n"
         "  return a, b, c, d, e, f\n"
         "}\n",
         "M=21", .generated = "mlir", .all_generated = true),
    CASE("gemm_residual",
         "graph g(x: f32[T, 40], r: f32[T, 33]) -> (o: f32[T, 33]) {\n"
         "  return add(r, matmul(x, weight(\"w\", f32[40, 33])))\n"
         "}\n",
         "T=13", .generated = "gemm"),
    CASE("gemm_batched",
         "graph g(q: f32[B, 3, T, 24], k: f32[B, 3, T, 24]) "
         "-> (s: f32[B, 3, T, T], u: f32[B, 3, 24, 24]) {\n"
         "  return matmul(q, k, transpose_b=true), matmul(q, k, transpose_a=true)\n"
         "}\n",
         "B=2,T=17", .generated = "gemm"),
    CASE("gemm_broadcast_batch",
         "graph g(a: f32[B, 1, T, 16], b: f32[3, 16, 21]) "
         "-> (o: f32[B, 3, T, 21]) {\n"
         "  return matmul(a, b)\n"
         "}\n",
         "B=2,T=10", .generated = "gemm"),
    // ---- norms -----------------------------------------------------------------------------
    CASE("softmax",
         "graph g(x: f32[B, T, 37]) -> (a: f32[B, T, 37], b: f32[B, T, 37], "
         "c: f32[B, T, 37]) {\n"
         "  return softmax(x), log_softmax(x), softmax(mul(x, constant(f32[], 3)), axis=1)\n"
         "}\n",
         "B=2,T=9", .generated = "mlir"),
    CASE("layernorm",
         "graph g(x: f32[B, T, 45], r: f32[B, T, 45]) -> (a: f32[B, T, 45], "
         "b: f32[B, T, 45], c: f32[B, T, 45]) {\n"
         "  a = layernorm(add(x, r), weight(\"g\", f32[45]), weight(\"b\", f32[45]))\n"
         "  b = add(layernorm(x, epsilon=0.001), r)\n"
         "  c = rmsnorm(x, weight(\"g\", f32[45]), epsilon=1e-6)\n"
         "  return a, b, c\n"
         "}\n",
         "B=2,T=11", .generated = "mlir"),
    // ---- reductions ------------------------------------------------------------------------
    CASE("reductions",
         "graph g(x: f32[B, T, 13]) -> (a: f32[B, T], b: f32[B, 1, 13], c: f32[T], "
         "d: f32[B, T, 1], e: i64[B, T]) {\n"
         "  a = sum(mul(x, x), axes=[2])\n"
         "  b = mean(x, axes=[1], keepdims=true)\n"
         "  c = max(x, axes=[0, 2])\n"
         "  d = min(x, axes=[-1], keepdims=true)\n"
         "  e = argmax(x, axes=[2])\n"
         "  return a, b, c, d, e\n"
         "}\n",
         "B=3,T=7", .generated = "mlir"),
    // ---- layout, gather, rope, topk ----------------------------------------------------------
    CASE("layout",
         "graph g(x: f32[B, T, 24], y: f32[B, T, 8]) -> (a: f32[B, 4, T, 6], "
         "b: f32[B, T, 32], c: f32[B, T, 8], d: f32[B, T, 5], e: f32[2, B, T, 8]) {\n"
         "  a = permute(reshape(x, shape=[B, T, 4, 6]), perm=[0, 2, 1, 3])\n"
         "  b = concat(x, y, axis=2)\n"
         "  p, q, c = split(x, axis=2, sizes=[10, 6, 8])\n"
         "  d = slice(x, axis=2, start=3, end=13, step=2)\n"
         "  e = expand(reshape(y, shape=[1, B, T, 8]), shape=[2, B, T, 8])\n"
         "  return a, b, c, d, e\n"
         "}\n",
         "B=2,T=9", .generated = "mlir"),
    CASE("gather",
         "graph g(ids: i64[B, T]) -> (e: f32[B, T, 12], f: f32[10, B, T]) {\n"
         "  table = weight(\"wte\", f32[10, 12])\n"
         "  return gather(table, ids, axis=0), gather(table, ids, axis=1)\n"
         "}\n",
         "B=1,T=6", .generated = "mlir", .data = {.float_scale = 2, .int_bound = 10}),
    CASE("rope",
         "graph g(x: f32[B, 3, T, 16]) -> (a: f32[B, 3, T, 16], b: f32[B, 3, T, 16], "
         "c: f32[B, 3, T, 16]) {\n"
         "  positions = iota(i64[T], axis=0)\n"
         "  a = rope(x, positions, style=half)\n"
         "  b = rope(x, positions, style=interleaved, theta=500.0)\n"
         "  c = rope(x, positions, rotary_dim=8)\n"
         "  return a, b, c\n"
         "}\n",
         "B=2,T=13", .generated = "mlir"),
    CASE("topk",
         "graph g(x: f32[B, T, 29]) -> (v: f32[B, T, 5], i: i64[B, T, 5], w: f32[B, 2, 29], "
         "j: i64[B, 2, 29]) {\n"
         "  v, i = topk(x, k=5)\n"
         "  w, j = topk(x, k=2, axis=1, largest=false)\n"
         "  return v, i, w, j\n"
         "}\n",
         "B=2,T=7", .generated = "topk"),
    // ---- bf16 attention: inputs and output in bf16, sums in f32. One bf16 rounding of the
    // output is up to 2^-9 relative (half an ulp of an 8-bit mantissa), and the reference rounds
    // its double result once too, so the outputs may differ by one ulp: 4e-3 bounds the
    // relative L2 of such differences.
    CASE("attention_bf16_causal_gqa",
         "graph g(q: bf16[B, 8, T, 64], k: bf16[B, 2, T, 64], v: bf16[B, 2, T, 64]) "
         "-> (o: bf16[B, 8, T, 64]) {\n"
         "  return attention(q, k, v, mask=causal)\n"
         "}\n",
         "B=1,T=45", .tolerance = 4e-3, .generated = "attention",
         .data = {.float_scale = 2, .keeps_a_key_per_row = true}),
    CASE("attention_bf16_decode",
         "graph g(q: bf16[B, 4, T, 128], k: bf16[B, 4, T + P, 128], v: bf16[B, 4, T + P, 128]) "
         "-> (o: bf16[B, 4, T, 128]) {\n"
         "  return attention(q, k, v, mask=causal)\n"
         "}\n",
         "B=1,T=1,P=700", .tolerance = 4e-3, .generated = "attention",
         .data = {.float_scale = 2, .keeps_a_key_per_row = true}),
};

// ---- attention variants (generated into the table below at startup) -----------------------

typedef struct attention_variant {
  const char *mask;    // "none", "causal", "sliding_window, window=9, sinks=2"
  int heads, kv_heads; // GQA ratio = heads / kv_heads
  int head_dim, value_dim;
  const char *tq, *tk;  // dims of q and of k/v ("T" or "T + P" for a KV cache)
  const char *extra;    // more attributes, or ""
  const char *inputs;   // more graph inputs (a mask tensor, captures), or ""
  const char *operands; // more attention operands, or ""
  const char *symbols;
} attention_variant;

static const attention_variant attention_variants[] = {
    {"none", 4, 4, 64, 64, "T", "T", "", "", "", "B=1,T=37"},
    {"causal", 4, 4, 64, 64, "T", "T", "", "", "", "B=2,T=100"},
    {"causal", 8, 2, 32, 32, "T", "T", ", lse=true", "", "", "B=1,T=41"},
    {"causal", 8, 1, 80, 80, "T", "T", "", "", "", "B=1,T=23"},
    {"none", 8, 4, 128, 128, "T", "T", ", lse=true", "", "", "B=1,T=19"},
    {"causal", 8, 8, 64, 32, "T", "T", "", "", "", "B=1,T=33"},
    {"sliding_window, window=9, sinks=2", 4, 2, 32, 32, "T", "T", "", "", "", "B=1,T=57"},
    {"sliding_window, window=5", 2, 1, 64, 64, "T", "T", ", lse=true", "", "", "B=2,T=21"},
    {"causal", 8, 2, 64, 64, "T", "T + P", ", lse=true", "", "", "B=1,T=1,P=300"},
    {"causal", 4, 1, 128, 128, "T", "T + P", "", "", "", "B=1,T=4,P=517"},
    {"none", 4, 4, 32, 32, "T", "T", ", has_mask=true", ", m: bool[B, 1, T, T]", ", m", "B=2,T=15"},
    {"causal", 4, 2, 32, 32, "T", "T", ", has_mask=true, lse=true", ", m: f32[T, T]", ", m",
     "B=1,T=26"},
    {"none", 4, 4, 32, 32, "T", "T", ", norm=sigmoid, sigmoid_bias=-1.5", "", "", "B=1,T=18"},
    {"causal", 4, 4, 32, 32, "T", "T", ", score_mod={ score + slopes[h] * (kv_idx - q_idx) }",
     ", slopes: f32[4]", "", "B=1,T=22"},
    {"none", 2, 2, 64, 64, "T", "T", ", scale=0.3", "", "", "B=1,T=1"},
    {"causal", 4, 2, 64, 64, "T", "T", ", score_mod={ tanh(score / 30) * 30 }", "", "", "B=1,T=37"},
    {"causal", 4, 4, 32, 32, "T", "T", ", score_mod={ doc[q_idx] == doc[kv_idx] ? score : -inf }",
     ", doc: i64[T]", "", "B=1,T=29"},
    {"sliding_window, window=7", 4, 1, 32, 32, "T", "T",
     ", score_mod={ score + bias[q_idx, kv_idx] }", ", bias: f32[T, T]", "", "B=1,T=19"},
    {"causal", 8, 2, 64, 64, "T", "T + P",
     ", lse=true, score_mod={ score + slopes[h] * (kv_idx - q_idx) }", ", slopes: f32[8]", "",
     "B=1,T=1,P=300"},
};

enum { ATTENTION_VARIANTS = sizeof(attention_variants) / sizeof(attention_variants[0]) };
enum { CASES = sizeof(cases) / sizeof(cases[0]) };

static char attention_texts[ATTENTION_VARIANTS][1024];
static char attention_names[ATTENTION_VARIANTS][32];
static conformance_case attention_cases[ATTENTION_VARIANTS];

static void build_attention_cases(void) {
  for (int i = 0; i < ATTENTION_VARIANTS; i++) {
    const attention_variant *v = &attention_variants[i];
    bool lse = strstr(v->extra, "lse=true") != NULL;
    char outputs[128];
    snprintf(outputs, sizeof(outputs), "o: f32[B, %d, %s, %d]%s", v->heads, v->tq, v->value_dim,
             lse ? ", l: f32[B, " : "");
    if (lse) {
      size_t used = strlen(outputs);
      snprintf(outputs + used, sizeof(outputs) - used, "%d, %s]", v->heads, v->tq);
    }
    snprintf(attention_texts[i], sizeof(attention_texts[i]),
             "graph g(q: f32[B, %d, %s, %d], k: f32[B, %d, %s, %d], v: f32[B, %d, %s, %d]%s) "
             "-> (%s) {\n"
             "  %s = attention(q, k, v%s, mask=%s%s)\n"
             "  return %s\n"
             "}\n",
             v->heads, v->tq, v->head_dim, v->kv_heads, v->tk, v->head_dim, v->kv_heads, v->tk,
             v->value_dim, v->inputs, outputs, lse ? "o, l" : "o", v->operands, v->mask, v->extra,
             lse ? "o, l" : "o");
    snprintf(attention_names[i], sizeof(attention_names[i]), "attention_%d", i);
    attention_cases[i] = (conformance_case){
        .name = attention_names[i],
        .text = attention_texts[i],
        .symbols = v->symbols,
        .generated = "attention",
        // Integers (document ids) in [0, 3).
        .data = {.float_scale = 2, .int_bound = 3, .keeps_a_key_per_row = true},
    };
  }
}

// ---- running a case --------------------------------------------------------------------------

typedef struct cpu_runner {
  attn_cpu_backend *backend;
  const conformance_case *c;
  bool saw_generated;
  bool saw_reference;
} cpu_runner;

static attn_status run_on_cpu(void *ctx, const attn_graph *graph, const attn_interp_args *args,
                              attn_diag *diag, attn_tensor *out_outputs) {
  cpu_runner *runner = ctx;
  attn_cpu_program *program;
  ATTN_RETURN_IF_ERROR(attn_cpu_program_compile(runner->backend, graph, &program));
  // Twice: the second run reuses the first one's buffers and compiled functions.
  attn_status status =
      attn_cpu_program_run(program, args, attn_allocator_system(), diag, out_outputs);
  for (uint32_t i = 0; status == ATTN_OK && i < graph->output_count; i++)
    attn_tensor_free(attn_allocator_system(), &out_outputs[i]);
  if (status == ATTN_OK)
    status = attn_cpu_program_run(program, args, attn_allocator_system(), diag, out_outputs);
  for (uint32_t s = 0; s < attn_cpu_program_step_count(program); s++) {
    attn_cpu_step_info info = attn_cpu_program_step(program, s);
    const char *impl = attn_cpu_step_impl_name(info.impl);
    if (runner->c->generated && strcmp(impl, runner->c->generated) == 0)
      runner->saw_generated = true;
    if (info.impl == ATTN_CPU_STEP_REFERENCE)
      runner->saw_reference = true;
  }
  attn_cpu_program_destroy(program);
  return status;
}

static attn_graph *parse_case(const conformance_case *c, attn_diag *diag) {
  attn_graph *graph = NULL;
  attn_status status = attn_parse_text(c->name, c->text, strlen(c->text), NULL,
                                       attn_allocator_system(), diag, &graph);
  if (status != ATTN_OK)
    attn_diag_write(diag, stderr);
  assert_int_equal(status, ATTN_OK);
  return graph;
}

static void run_case(const conformance_case *c, attn_cpu_backend *backend) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  pass_test_data data = c->data;
  if (data.float_scale == 0 && data.int_bound == 0)
    data = (pass_test_data){.float_scale = 2, .int_bound = 5};
  pass_test_data weights = {.float_scale = 0.5, .int_bound = 5};

  attn_graph *reference = parse_case(c, &diag);
  int64_t *symbols = pass_test_symbols(reference, c->symbols, 5);
  pass_test_outputs want = {0}, got = {0};
  assert_int_equal(pass_test_evaluate(reference, symbols, &data, &weights, &diag, &want), ATTN_OK);

  attn_graph *graph = parse_case(c, &diag);
  attn_pipeline pipeline;
  attn_pipeline_run_options options = {0};
  assert_int_equal(attn_pipeline_parse("default", attn_allocator_system(), &diag, &pipeline),
                   ATTN_OK);
  attn_status status = attn_pipeline_run(&pipeline, graph, &options);
  attn_pipeline_deinit(&pipeline);
  if (status != ATTN_OK)
    attn_diag_write(&diag, stderr);
  assert_int_equal(status, ATTN_OK);

  cpu_runner runner = {backend, c, false, false};
  status =
      pass_test_evaluate_with(graph, symbols, &data, &weights, run_on_cpu, &runner, &diag, &got);
  if (status != ATTN_OK)
    attn_diag_write(&diag, stderr);
  assert_int_equal(status, ATTN_OK);
  pass_test_compare(c->name, &want, &got, c->tolerance ? c->tolerance : 1e-5, 0);
  if (c->generated && !runner.saw_generated)
    fail_msg("%s: no kernel ran as '%s'", c->name, c->generated);
  if (c->all_generated && runner.saw_reference)
    fail_msg("%s: a kernel ran on the reference evaluator", c->name);

  pass_test_outputs_free(&want);
  pass_test_outputs_free(&got);
  free(symbols);
  attn_graph_destroy(graph);
  attn_graph_destroy(reference);
  attn_diag_deinit(&diag);
}

static attn_cpu_backend *backend;
static attn_diag backend_diag;

static int setup(void **state) {
  (void)state;
  attn_diag_init(&backend_diag, attn_allocator_system());
  attn_cpu_backend_options options = {.thread_count = 2, .guard_bands = true, .cache_dir = ""};
  if (attn_cpu_backend_create(&options, attn_allocator_system(), &backend_diag, &backend) !=
      ATTN_OK) {
    attn_diag_write(&backend_diag, stderr);
    return -1;
  }
  return 0;
}

static int teardown(void **state) {
  (void)state;
  attn_cpu_backend_destroy(backend);
  attn_diag_deinit(&backend_diag);
  return 0;
}

static void test_one(void **state) {
  run_case(*state, backend);
}

// `graph` after the default pipeline, compiled by the shared backend.
static attn_cpu_program *compile_case(attn_graph *graph, attn_diag *diag) {
  attn_pipeline pipeline;
  attn_pipeline_run_options options = {0};
  assert_int_equal(attn_pipeline_parse("default", attn_allocator_system(), diag, &pipeline),
                   ATTN_OK);
  assert_int_equal(attn_pipeline_run(&pipeline, graph, &options), ATTN_OK);
  attn_pipeline_deinit(&pipeline);
  attn_cpu_program *program;
  assert_int_equal(attn_cpu_program_compile(backend, graph, &program), ATTN_OK);
  return program;
}

// The weights of a graph with one weight node: `weight` for it (a calloc'ed table by node id).
static attn_tensor *bind_the_weight(const attn_graph *graph, attn_tensor weight) {
  attn_tensor *weights = calloc(graph->node_count, sizeof(*weights));
  assert_non_null(weights);
  for (uint32_t n = 1; n < graph->node_count; n++)
    if (graph->nodes[n].op == ATTN_OP_WEIGHT && !graph->nodes[n].is_dead)
      weights[n] = weight;
  return weights;
}

// Bad input gets the reference evaluator's error: a generated gather clamps its indices, so the
// backend checks them first.
static void test_gather_index_out_of_range(void **state) {
  (void)state;
  static const conformance_case c = CASE("gather_out_of_range",
                                         "graph g(ids: i64[T]) -> (e: f32[T, 4]) {\n"
                                         "  return gather(weight(\"w\", f32[3, 4]), ids, axis=0)\n"
                                         "}\n",
                                         "T=4", .generated = "mlir");
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = parse_case(&c, &diag);
  attn_cpu_program *program = compile_case(graph, &diag);
  int64_t ids[4] = {0, 2, 3, 1};
  float table[12] = {0};
  attn_tensor input = {ATTN_DTYPE_I64, 1, {4}, ids};
  attn_tensor *weights = bind_the_weight(graph, (attn_tensor){ATTN_DTYPE_F32, 2, {3, 4}, table});
  attn_interp_args args = {&input, weights, NULL};
  attn_tensor output;
  assert_int_equal(attn_cpu_program_run(program, &args, attn_allocator_system(), &diag, &output),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_diag_last_error(&diag),
                         "index 3 (element 2 of the indices) is out of "
                         "range for axis 0 of size 3"));
  assert_null(output.data);
  ids[2] = -3; // negative indices count from the end
  assert_int_equal(attn_cpu_program_run(program, &args, attn_allocator_system(), &diag, &output),
                   ATTN_OK);
  attn_tensor_free(attn_allocator_system(), &output);
  bool ran_generated = false;
  for (uint32_t i = 0; i < attn_cpu_program_step_count(program); i++)
    ran_generated = ran_generated || attn_cpu_program_step(program, i).impl == ATTN_CPU_STEP_MLIR;
  assert_true(ran_generated);
  free(weights);
  attn_cpu_program_destroy(program);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

// A weight bound in another dtype is converted once per data pointer: changing the data in place
// is not seen until attn_cpu_program_release_weights, after which the next run converts again.
static void test_converted_weights_are_kept(void **state) {
  (void)state;
  static const conformance_case c = CASE("bf16_weight",
                                         "graph g(x: f32[T, 8]) -> (y: f32[T, 5]) {\n"
                                         "  return matmul(x, weight(\"w\", f32[8, 5]))\n"
                                         "}\n",
                                         "T=3", .generated = "gemm");
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = parse_case(&c, &diag);
  attn_cpu_program *program = compile_case(graph, &diag);
  float x[24];
  uint16_t w[40];
  for (int i = 0; i < 24; i++)
    x[i] = (float)(i % 5) - 2.0f;
  for (int i = 0; i < 40; i++)
    w[i] = attn_f32_to_bf16((float)(i % 7) * 0.25f);
  attn_tensor input = {ATTN_DTYPE_F32, 2, {3, 8}, x};
  attn_tensor *weights = bind_the_weight(graph, (attn_tensor){ATTN_DTYPE_BF16, 2, {8, 5}, w});
  attn_interp_args args = {&input, weights, NULL};
  attn_tensor first, cached, fresh, want;
  assert_int_equal(attn_cpu_program_run(program, &args, attn_allocator_system(), &diag, &first),
                   ATTN_OK);
  assert_int_equal(attn_interp_run(graph, &args, attn_allocator_system(), &diag, &want), ATTN_OK);
  for (int i = 0; i < 15; i++)
    assert_float_equal(((float *)first.data)[i], ((float *)want.data)[i], 1e-5f);
  attn_tensor_free(attn_allocator_system(), &want);
  for (int i = 0; i < 40; i++)
    w[i] = attn_f32_to_bf16(-(float)(i % 3));
  assert_int_equal(attn_cpu_program_run(program, &args, attn_allocator_system(), &diag, &cached),
                   ATTN_OK);
  assert_memory_equal(cached.data, first.data, 15 * sizeof(float));
  attn_cpu_program_release_weights(program);
  assert_int_equal(attn_cpu_program_run(program, &args, attn_allocator_system(), &diag, &fresh),
                   ATTN_OK);
  assert_int_equal(attn_interp_run(graph, &args, attn_allocator_system(), &diag, &want), ATTN_OK);
  for (int i = 0; i < 15; i++)
    assert_float_equal(((float *)fresh.data)[i], ((float *)want.data)[i], 1e-5f);
  assert_memory_not_equal(fresh.data, first.data, 15 * sizeof(float));
  attn_tensor_free(attn_allocator_system(), &want);
  attn_tensor_free(attn_allocator_system(), &first);
  attn_tensor_free(attn_allocator_system(), &cached);
  attn_tensor_free(attn_allocator_system(), &fresh);
  free(weights);
  attn_cpu_program_destroy(program);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

// Top-k's order on ties and NaN: NaN counts as the largest, equal values go by index. Random data
// has neither, so this input is made of them.
static void test_topk_ties_and_nan(void **state) {
  (void)state;
  static const conformance_case c =
      CASE("topk_ties",
           "graph g(x: f32[R, 9]) -> (v: f32[R, 4], i: i64[R, 4], w: f32[R, 4], "
           "j: i64[R, 4]) {\n"
           "  v, i = topk(x, k=4)\n"
           "  w, j = topk(x, k=4, largest=false)\n"
           "  return v, i, w, j\n"
           "}\n",
           "R=3", .generated = "topk");
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *reference = parse_case(&c, &diag);
  attn_graph *graph = parse_case(&c, &diag);
  attn_cpu_program *program = compile_case(graph, &diag);
  float nan = nanf("");
  float x[27] = {1,   2, 2,   0,  2, 1, -1,  0,  1,  // ties
                 nan, 3, nan, -3, 3, 0, nan, -3, 0,  // NaNs among ties
                 5,   5, 5,   5,  5, 5, 5,   5,  5}; // all equal
  attn_tensor input = {ATTN_DTYPE_F32, 2, {3, 9}, x};
  attn_interp_args args = {&input, NULL, NULL};
  pass_test_outputs want = {.count = 4}, got = {.count = 4};
  assert_int_equal(attn_interp_run(reference, &args, attn_allocator_system(), &diag, want.tensors),
                   ATTN_OK);
  assert_int_equal(
      attn_cpu_program_run(program, &args, attn_allocator_system(), &diag, got.tensors), ATTN_OK);
  pass_test_compare(c.name, &want, &got, 0, PASS_TEST_EXACT);
  bool ran_topk = false;
  for (uint32_t i = 0; i < attn_cpu_program_step_count(program); i++)
    ran_topk = ran_topk || attn_cpu_program_step(program, i).impl == ATTN_CPU_STEP_TOPK;
  assert_true(ran_topk);
  pass_test_outputs_free(&want);
  pass_test_outputs_free(&got);
  attn_cpu_program_destroy(program);
  attn_graph_destroy(graph);
  attn_graph_destroy(reference);
  attn_diag_deinit(&diag);
}

int main(void) {
  build_attention_cases();
  struct CMUnitTest tests[CASES + ATTENTION_VARIANTS + 3];
  for (int i = 0; i < CASES; i++)
    tests[i] = (struct CMUnitTest){cases[i].name, test_one, NULL, NULL, (void *)&cases[i]};
  for (int i = 0; i < ATTENTION_VARIANTS; i++)
    tests[CASES + i] =
        (struct CMUnitTest){attention_cases[i].name, test_one, NULL, NULL, &attention_cases[i]};
  tests[CASES + ATTENTION_VARIANTS] =
      (struct CMUnitTest)cmocka_unit_test(test_gather_index_out_of_range);
  tests[CASES + ATTENTION_VARIANTS + 1] =
      (struct CMUnitTest)cmocka_unit_test(test_converted_weights_are_kept);
  tests[CASES + ATTENTION_VARIANTS + 2] =
      (struct CMUnitTest)cmocka_unit_test(test_topk_ties_and_nan);
  return _cmocka_run_group_tests("cpu_conformance", tests, CASES + ATTENTION_VARIANTS + 3, setup,
                                 teardown);
}
