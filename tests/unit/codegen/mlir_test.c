// The MLIR path (codegen/cpu/mlir.h): small graphs, partitioned and memory-planned, each kernel
// generated, compiled by the JIT and run over its rows in two pieces, against the reference
// evaluator's values of the same kernel's inputs and outputs (every value of the graph is
// evaluated node by node). Output buffers sit between guard bands that must stay untouched.
// Every graph is run under two bindings of its symbols with the same compiled kernels, which
// are generic over symbolic dims. Also: identical kernels share a hash, unsupported kernels say
// which op, and the compile time per kernel is printed.
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "codegen/cpu/jit.h"
#include "codegen/cpu/mlir.h"
#include "frontend/parse.h"
#include "ir/interp.h"
#include "passes/pass.h"
#include "tests/unit/passes/pass_test_util.h"

enum { GUARD_BYTES = 64, GUARD_BYTE = 0xA5, MAX_KERNELS = 64 };

// The relative L2 error allowed between a kernel's float outputs and the reference's.
static const double tolerance = 1e-5;

typedef struct mlir_case {
  const char *name;
  const char *source;
  const char *bindings[2]; // two bindings of the symbols, run with the same kernels
  pass_test_data data;
  uint32_t kernels; // how many kernels the partition gives, all of them generated
} mlir_case;

// Compile-time totals over every generated kernel.
static double mlir_seconds, llvm_seconds;
static uint32_t compiled_count;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static attn_graph *parse_graph(const char *name, const char *source, attn_diag *diag) {
  attn_graph *graph = NULL;
  attn_status status =
      attn_parse_text(name, source, strlen(source), NULL, attn_allocator_system(), diag, &graph);
  if (status != ATTN_OK)
    attn_diag_write(diag, stderr);
  assert_int_equal(status, ATTN_OK);
  attn_pipeline pipeline;
  status = attn_pipeline_parse("partition,plan-memory", attn_allocator_system(), diag, &pipeline);
  attn_pipeline_run_options options = {.verify_each = true};
  if (status == ATTN_OK)
    status = attn_pipeline_run(&pipeline, graph, &options);
  attn_pipeline_deinit(&pipeline);
  if (status != ATTN_OK)
    attn_diag_write(diag, stderr);
  assert_int_equal(status, ATTN_OK);
  return graph;
}

// Every value of `graph` under `symbols`, evaluated node by node by the reference evaluator:
// inputs and weights drawn as `data` says. Entries of borrowed values are marked.
typedef struct reference {
  attn_tensor *values;
  bool *borrowed;
  uint32_t count;
} reference;

static void evaluate(const attn_graph *graph, const int64_t *symbols, const pass_test_data *data,
                     attn_diag *diag, reference *out) {
  attn_allocator a = attn_allocator_system();
  out->count = graph->value_count;
  out->values = calloc(graph->value_count, sizeof(attn_tensor));
  out->borrowed = calloc(graph->value_count, sizeof(bool));
  assert_true(out->values && out->borrowed);
  for (uint32_t i = 0; i < graph->input_count; i++) {
    const attn_value *v = attn_graph_value(graph, graph->inputs[i]);
    int64_t dims[ATTN_MAX_RANK];
    for (uint32_t d = 0; d < v->type.rank; d++)
      assert_int_equal(attn_graph_dim_eval(graph, v->type.dims[d], symbols, &dims[d]), ATTN_OK);
    attn_tensor *t = &out->values[graph->inputs[i].index];
    assert_int_equal(attn_tensor_alloc(a, v->type.dtype, v->type.rank, dims, t), ATTN_OK);
    pass_test_fill(t, hash_text(v->name) + i, data);
  }
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    attn_tensor inputs[16], weight = {0};
    assert_true(node->input_count <= 16);
    for (uint32_t i = 0; i < node->input_count; i++)
      inputs[i] = out->values[node->inputs[i].index];
    if (node->op == ATTN_OP_WEIGHT) {
      const attn_weight_attrs *w = node->attrs;
      assert_int_equal(attn_tensor_alloc(a, w->type.dtype, w->type.rank, w->type.dims, &weight),
                       ATTN_OK);
      pass_test_fill(&weight, hash_text(w->names[0]), data);
    }
    attn_tensor outputs[8];
    bool borrowed = false;
    assert_true(node->output_count <= 8);
    attn_status status = attn_interp_eval_node(graph, (attn_node_id){n}, inputs, symbols,
                                               node->op == ATTN_OP_WEIGHT ? &weight : NULL, a, diag,
                                               outputs, &borrowed);
    if (status != ATTN_OK)
      attn_diag_write(diag, stderr);
    assert_int_equal(status, ATTN_OK);
    for (uint32_t o = 0; o < node->output_count; o++) {
      out->values[node->outputs[o].index] = outputs[o];
      out->borrowed[node->outputs[o].index] = borrowed;
    }
    if (borrowed) // a weight's output points at `weight`: keep it as an owned value instead
      out->borrowed[node->outputs[0].index] = node->op != ATTN_OP_WEIGHT;
  }
}

static void reference_free(reference *r) {
  for (uint32_t v = 0; v < r->count; v++)
    if (!r->borrowed[v])
      attn_tensor_free(attn_allocator_system(), &r->values[v]);
  free(r->values);
  free(r->borrowed);
}

// Whether the kernel's float output agrees with the reference: non-finite values at the same
// places, the rest within `tolerance` relative L2; other dtypes byte for byte.
static void expect_close(const char *what, const attn_tensor *expected, const void *actual) {
  int64_t count = attn_tensor_element_count(expected);
  if (expected->dtype != ATTN_DTYPE_F32) {
    size_t bytes = (size_t)count * attn_dtype_size(expected->dtype);
    if (bytes && memcmp(expected->data, actual, bytes) != 0) {
      for (int64_t i = 0; i < count; i++)
        if (attn_tensor_get_f64(expected, i) !=
            attn_tensor_get_f64(&(attn_tensor){expected->dtype, 1, {count}, (void *)actual}, i))
          fail_msg(
              "%s: element %" PRId64 " is %g, expected %g", what, i,
              attn_tensor_get_f64(&(attn_tensor){expected->dtype, 1, {count}, (void *)actual}, i),
              attn_tensor_get_f64(expected, i));
    }
    return;
  }
  const float *e = expected->data, *a = actual;
  double error = 0.0, norm = 0.0;
  for (int64_t i = 0; i < count; i++) {
    if (!isfinite(e[i]) || !isfinite(a[i])) {
      bool same = (isnan(e[i]) && isnan(a[i])) || e[i] == a[i];
      if (!same)
        fail_msg("%s: element %" PRId64 " is %g, expected %g", what, i, (double)a[i], (double)e[i]);
      continue;
    }
    double d = (double)a[i] - (double)e[i];
    error += d * d;
    norm += (double)e[i] * (double)e[i];
  }
  double relative = sqrt(error) / (norm > 0.0 ? sqrt(norm) : 1.0);
  if (!(relative <= tolerance))
    fail_msg("%s: relative L2 error %.3g exceeds %.1g", what, relative, tolerance);
}

typedef struct compiled {
  uint32_t kernel;
  attn_cpu_mlir_kernel info;
  attn_cpu_kernel_fn fn;
} compiled;

// Generates and compiles every kernel of `graph`; returns how many.
static uint32_t compile_all(attn_cpu_mlir *mlir, attn_cpu_jit *jit, const attn_graph *graph,
                            const attn_kernel_io *io, attn_diag *diag, compiled *out) {
  uint32_t count = 0;
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    if (graph->kernels[k].kind == ATTN_KERNEL_ALIAS)
      continue;
    LLVMModuleRef module = NULL;
    attn_cpu_mlir_kernel info;
    double t0 = now();
    attn_status status = attn_cpu_mlir_generate(mlir, graph, k, &io[k], 8, diag, &module, &info);
    double t1 = now();
    if (status != ATTN_OK)
      attn_diag_write(diag, stderr);
    assert_int_equal(status, ATTN_OK);
    assert_int_equal(strncmp(info.name, "attn_mlir_", 10), 0);
    attn_cpu_jit_fn fn = NULL;
    // Identical kernels share a function: add each once.
    bool known = false;
    for (uint32_t i = 0; i < count; i++)
      known |= out[i].info.hash == info.hash;
    if (known)
      attn_cpu_module_destroy(module);
    else
      assert_int_equal(attn_cpu_jit_add_module_owned(jit, module), ATTN_OK);
    status = attn_cpu_jit_lookup(jit, info.name, &fn);
    if (status != ATTN_OK)
      attn_diag_write(diag, stderr);
    assert_int_equal(status, ATTN_OK);
    double t2 = now();
    if (!known) {
      mlir_seconds += t1 - t0;
      llvm_seconds += t2 - t1;
      compiled_count++;
    }
    assert_true(count < MAX_KERNELS);
    out[count++] = (compiled){k, info, (attn_cpu_kernel_fn)fn};
  }
  return count;
}

// Runs kernel `c` on the reference's values of its inputs and checks its outputs and guards.
static void run_kernel(const attn_graph *graph, const attn_kernel_io *io, const compiled *c,
                       const reference *ref, const char *what) {
  uint32_t operand_count = io->input_count + io->output_count;
  void **data = calloc(operand_count, sizeof(void *));
  uint8_t **blocks = calloc(io->output_count + 1, sizeof(uint8_t *));
  int64_t *dims = calloc((size_t)operand_count * ATTN_MAX_RANK + 1, sizeof(int64_t));
  assert_true(data && blocks && dims);
  uint32_t dim_count = 0;
  for (uint32_t k = 0; k < operand_count; k++) {
    bool is_input = k < io->input_count;
    attn_value_id v = is_input ? io->inputs[k] : io->outputs[k - io->input_count];
    const attn_tensor *t = &ref->values[v.index];
    assert_non_null(t->data);
    for (uint32_t d = 0; d < t->rank; d++)
      dims[dim_count++] = t->dims[d];
    if (is_input) {
      data[k] = t->data;
      continue;
    }
    size_t bytes = (size_t)attn_tensor_element_count(t) * attn_dtype_size(t->dtype);
    uint8_t *block = malloc(bytes + 2 * GUARD_BYTES);
    assert_non_null(block);
    memset(block, GUARD_BYTE, bytes + 2 * GUARD_BYTES);
    blocks[k - io->input_count] = block;
    data[k] = block + GUARD_BYTES;
  }
  const attn_tensor *first = &ref->values[io->outputs[0].index];
  assert_true(c->info.parallel_rank <= first->rank);
  int64_t rows = 1;
  for (uint32_t d = 0; d < c->info.parallel_rank; d++)
    rows *= first->dims[d];
  int64_t split = rows / 3;
  c->fn((void *const *)data, dims, 0, split);
  c->fn((void *const *)data, dims, split, rows);
  for (uint32_t o = 0; o < io->output_count; o++) {
    const attn_tensor *t = &ref->values[io->outputs[o].index];
    size_t bytes = (size_t)attn_tensor_element_count(t) * attn_dtype_size(t->dtype);
    char label[160];
    snprintf(label, sizeof(label), "%s: kernel k%u (%s) output %u", what, c->kernel,
             attn_kernel_kind_name(graph->kernels[c->kernel].kind), o);
    for (size_t i = 0; i < GUARD_BYTES; i++) {
      if (blocks[o][i] != GUARD_BYTE || blocks[o][GUARD_BYTES + bytes + i] != GUARD_BYTE)
        fail_msg("%s: a guard band was written", label);
    }
    expect_close(label, t, blocks[o] + GUARD_BYTES);
    free(blocks[o]);
  }
  free(blocks);
  free(data);
  free(dims);
}

static void run_case(const mlir_case *c) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = parse_graph(c->name, c->source, &diag);
  attn_arena arena;
  attn_arena_init(&arena, attn_allocator_system());
  attn_kernel_io *io = NULL;
  assert_int_equal(attn_graph_kernel_io(graph, &arena, &io), ATTN_OK);
  attn_cpu_mlir *mlir = NULL;
  assert_int_equal(attn_cpu_mlir_create(&diag, &mlir), ATTN_OK);
  attn_cpu_jit *jit = NULL;
  assert_int_equal(attn_cpu_jit_create(NULL, &diag, &jit), ATTN_OK);
  compiled kernels[MAX_KERNELS];
  uint32_t count = compile_all(mlir, jit, graph, io, &diag, kernels);
  if (c->kernels)
    assert_int_equal(count, c->kernels);
  for (uint32_t b = 0; b < 2 && c->bindings[b]; b++) {
    int64_t *symbols = pass_test_symbols(graph, c->bindings[b], 5);
    reference ref;
    evaluate(graph, symbols, &c->data, &diag, &ref);
    char what[128];
    snprintf(what, sizeof(what), "%s [%s]", c->name, c->bindings[b]);
    for (uint32_t i = 0; i < count; i++)
      run_kernel(graph, &io[kernels[i].kernel], &kernels[i], &ref, what);
    reference_free(&ref);
    free(symbols);
  }
  attn_cpu_jit_destroy(jit);
  attn_cpu_mlir_destroy(mlir);
  attn_arena_deinit(&arena);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

// ---- the cases -------------------------------------------------------------------------------

static const mlir_case unary_case = {
    "unary.attn",
    "graph unary(x: f32[B, T, 37], y: f32[37]) -> (u1: f32[B, T, 37], u2: f32[B, T, 37],\n"
    "    u3: f32[B, T, 37], u4: f32[B, T, 37], u5: f32[B, T, 37], u6: f32[B, T, 37],\n"
    "    u7: f32[B, T, 37], u8: f32[B, T, 37], u9: f32[B, T, 37]) {\n"
    "  u1 = add(exp(x), log(add(abs(x), 0.001)))\n"
    "  u2 = sub(sqrt(abs(x)), rsqrt(add(abs(x), 1.0)))\n"
    "  u3 = mul(tanh(x), erf(x))\n"
    "  u4 = add(sigmoid(x), relu(neg(x)))\n"
    "  u5 = add(gelu(x), gelu(x, approximate=tanh))\n"
    "  u6 = silu(mul(x, y))\n"
    "  u7 = div(x, add(abs(y), 0.5))\n"
    "  u8 = add(pow(abs(x), y), pow(x, 2.0))\n"
    "  u9 = sub(maximum(x, y), minimum(tanh(mul(x, 0.01)), y))\n"
    "  return u1, u2, u3, u4, u5, u6, u7, u8, u9\n"
    "}\n",
    {"B=2,T=7", "B=1,T=33"},
    {.float_scale = 4.0, .int_bound = 8},
    9};

static const mlir_case logic_case = {
    "logic.attn",
    "graph logic(x: f32[B, 7, 9], y: f32[9], i: i64[B, 7, 9], j: i32[7, 9], m: bool[B, 7, 9])\n"
    "    -> (w: f32[B, 7, 9], c: bool[B, 7, 9], k: i32[B, 7, 9], f: i32[B, 7, 9],\n"
    "        g: f32[B, 7, 9], h: i64[B, 7, 9], q: bool[B, 7, 9], r: i64[B, 7, 9],\n"
    "        s: i8[7, 9]) {\n"
    "  w = where(and(gt(x, y), not(m)), x, neg(y))\n"
    "  c = or(le(i, cast(j, dtype=i64)), eq(x, y))\n"
    "  k = cast(add(mul(i, 3000000000), cast(j, dtype=i64)), dtype=i32)\n"
    "  f = cast(mul(x, 1e9), dtype=i32)\n"
    "  g = add(cast(m, dtype=f32), cast(i, dtype=f32))\n"
    "  h = sub(div(i, add(cast(j, dtype=i64), 1)), abs(neg(i)))\n"
    "  q = ne(lt(i, 5), ge(x, 0.0))\n"
    "  r = maximum(relu(sub(i, 10)), minimum(i, 3))\n"
    "  s = cast(sub(j, 100), dtype=i8)\n"
    "  return w, c, k, f, g, h, q, r, s\n"
    "}\n",
    {"B=2", "B=3"},
    {.float_scale = 4.0, .int_bound = 20},
    9};

static const mlir_case iota_case = {
    "iota.attn",
    "graph iota(x: f32[B, T, 8]) -> (y: f32[B, T, 8], z: i64[T, 8]) {\n"
    "  y = add(x, iota(f32[T, 8], axis=0, start=2))\n"
    "  z = add(iota(i64[T, 8], axis=1, start=3), iota(i64[T, 1], axis=0))\n"
    "  return y, z\n"
    "}\n",
    {"B=2,T=5", "B=1,T=12"},
    {.float_scale = 1.0},
    2};

static const mlir_case norm_case = {
    "norm.attn",
    "graph norm(x: f32[B, T, 48], y: f32[B, T, 48], w: f32[48], b: f32[48],\n"
    "    s: f32[B, 5, T, 7]) -> (a: f32[B, T, 48], l: f32[B, T, 48], s1: f32[B, 5, T, 7],\n"
    "    ln: f32[B, T, 48], ln2: f32[B, T, 48], ln3: f32[B, T, 48], rms: f32[B, T, 48],\n"
    "    ln4: f32[B, 5, T, 7], rms2: f32[B, 5, T, 7]) {\n"
    "  a = softmax(mul(x, 3.0))\n"
    "  l = log_softmax(x, axis=-1)\n"
    "  s1 = softmax(s, axis=1)\n"
    "  ln = add(layernorm(sub(x, y), w, b), y)\n"
    "  ln2 = layernorm(x)\n"
    "  ln3 = layernorm(x, w, epsilon=0.001)\n"
    "  rms = mul(rmsnorm(x, w), 2.0)\n"
    "  ln4 = layernorm(s, axis=2)\n"
    "  rms2 = rmsnorm(s, axis=-1)\n"
    "  return a, l, s1, ln, ln2, ln3, rms, ln4, rms2\n"
    "}\n",
    {"B=2,T=7", "B=1,T=19"},
    {.float_scale = 3.0},
    9};

static const mlir_case reduce_case = {
    "reduce.attn",
    "graph reduce(x: f32[B, T, 24], i: i64[B, T, 24]) -> (s: f32[B, T], m: f32[B, 1, 24],\n"
    "    mx: f32[T], mn: f32[], am: i64[B, T], am1: i64[B, 1, 24], si: i64[B, T],\n"
    "    mi: i64[B, 24], ni: i64[B, T, 1]) {\n"
    "  s = sum(exp(x), axes=[2])\n"
    "  m = mean(x, axes=[1], keepdims=true)\n"
    "  mx = max(x, axes=[0, 2])\n"
    "  mn = min(x)\n"
    "  am = argmax(x, axes=[-1])\n"
    "  am1 = argmax(x, axes=[1], keepdims=true)\n"
    "  si = sum(i, axes=[2])\n"
    "  mi = max(i, axes=[1])\n"
    "  ni = min(sub(i, 7), axes=[2], keepdims=true)\n"
    "  return s, m, mx, mn, am, am1, si, mi, ni\n"
    "}\n",
    {"B=2,T=7", "B=3,T=40"},
    {.float_scale = 2.0, .int_bound = 1000},
    9};

static const mlir_case layout_case = {
    "layout.attn",
    "graph layout(x: f32[B, T, 6], y: f32[B, 2, 6], z: f32[B, 1, 6], m: bool[B, T, 6])\n"
    "    -> (p: f32[6, B, T], s: f32[B, T, 2], s2: f32[B, T - 1, 6], c: f32[B, T + 2, 6],\n"
    "        lo: f32[B, T, 2], hi: f32[B, T, 4], e: f32[B, 3, 6], r: i64[1, T],\n"
    "        pm: bool[T, B, 6]) {\n"
    "  p = permute(x, perm=[2, 0, 1])\n"
    "  s = slice(x, axis=2, start=1, end=5, step=2)\n"
    "  s2 = slice(x, axis=1, start=1)\n"
    "  c = concat(x, y, axis=1)\n"
    "  lo, hi = split(x, axis=2, sizes=[2, 4])\n"
    "  e = expand(z, shape=[B, 3, 6])\n"
    "  r = reshape(iota(i64[T]), shape=[1, T])\n"
    "  pm = permute(m, perm=[1, 0, 2])\n"
    "  return p, s, s2, c, lo, hi, e, r, pm\n"
    "}\n",
    {"B=2,T=5", "B=3,T=11"},
    {.float_scale = 1.0},
    8};

static const mlir_case rope_case = {
    "rope.attn",
    "graph rope(q: f32[B, 3, T, 16], pos: i64[T], pos2: i64[B, T]) -> (a: f32[B, 3, T, 16],\n"
    "    b: f32[B, 3, T, 16], c: f32[B, 3, T, 16]) {\n"
    "  a = rope(q, pos)\n"
    "  b = rope(q, pos2, style=interleaved)\n"
    "  c = rope(q, pos, rotary_dim=8, theta=500.0)\n"
    "  return a, b, c\n"
    "}\n",
    {"B=2,T=7", "B=1,T=30"},
    {.float_scale = 1.0, .int_bound = 4096},
    3};

static const mlir_case gather_case = {
    "gather.attn",
    "graph gather(w: f32[50, 12], ids: i64[B, T], v: f32[B, 9, 5], j: i32[4], k: i64[])\n"
    "    -> (a: f32[B, T, 12], b: f32[B, 4, 5], c: f32[B, 9]) {\n"
    "  a = gather(w, ids, axis=0)\n"
    "  b = gather(v, j, axis=1)\n"
    "  c = gather(v, k, axis=-1)\n"
    "  return a, b, c\n"
    "}\n",
    {"B=2,T=7", "B=1,T=3"},
    {.float_scale = 1.0, .int_bound = 5},
    3};

// One graph of mlir_case (the test's state).
static void test_case(void **state) {
  run_case(*state);
}

// Two layers' identical norms share a hash (and a name); a different kernel does not.
static void test_hash(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph =
      parse_graph("hash.attn",
                  "graph twice(x: f32[B, T, 16], y: f32[B, T, 16], w1: f32[16], w2: f32[16])\n"
                  "    -> (a: f32[B, T, 16], b: f32[B, T, 16], c: f32[B, T, 16]) {\n"
                  "  a = layernorm(x, w1)\n"
                  "  b = layernorm(y, w2)\n"
                  "  c = rmsnorm(y, w2)\n"
                  "  return a, b, c\n"
                  "}\n",
                  &diag);
  attn_arena arena;
  attn_arena_init(&arena, attn_allocator_system());
  attn_kernel_io *io = NULL;
  assert_int_equal(attn_graph_kernel_io(graph, &arena, &io), ATTN_OK);
  attn_cpu_mlir *mlir = NULL;
  assert_int_equal(attn_cpu_mlir_create(&diag, &mlir), ATTN_OK);
  assert_int_equal(graph->kernel_count, 4);
  attn_cpu_mlir_kernel kernels[3];
  for (uint32_t k = 1; k < 4; k++) {
    LLVMModuleRef module = NULL;
    assert_int_equal(
        attn_cpu_mlir_generate(mlir, graph, k, &io[k], 8, &diag, &module, &kernels[k - 1]),
        ATTN_OK);
    attn_cpu_module_destroy(module);
  }
  assert_true(kernels[0].hash == kernels[1].hash);
  assert_string_equal(kernels[0].name, kernels[1].name);
  assert_true(kernels[0].hash != kernels[2].hash);
  // The vector width is part of the hash.
  LLVMModuleRef module = NULL;
  attn_cpu_mlir_kernel wide;
  assert_int_equal(attn_cpu_mlir_generate(mlir, graph, 1, &io[1], 16, &diag, &module, &wide),
                   ATTN_OK);
  attn_cpu_module_destroy(module);
  assert_true(wide.hash != kernels[0].hash);
  attn_cpu_mlir_destroy(mlir);
  attn_arena_deinit(&arena);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

// Kernels the MLIR path does not handle fail with UNSUPPORTED and a message naming what.
static void test_unsupported(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_graph *graph = parse_graph("unsupported.attn",
                                  "graph u(x: f32[B, 8], w: f32[8, 4], i: i64[B, 8])\n"
                                  "    -> (g: f32[B, 4], p: i64[B, 8]) {\n"
                                  "  g = matmul(x, w)\n"
                                  "  p = pow(i, i)\n"
                                  "  return g, p\n"
                                  "}\n",
                                  &diag);
  attn_arena arena;
  attn_arena_init(&arena, attn_allocator_system());
  attn_kernel_io *io = NULL;
  assert_int_equal(attn_graph_kernel_io(graph, &arena, &io), ATTN_OK);
  attn_cpu_mlir *mlir = NULL;
  assert_int_equal(attn_cpu_mlir_create(&diag, &mlir), ATTN_OK);
  bool saw_gemm = false, saw_pow = false;
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    LLVMModuleRef module = NULL;
    attn_cpu_mlir_kernel info;
    attn_diag_clear(&diag);
    assert_int_equal(attn_cpu_mlir_generate(mlir, graph, k, &io[k], 8, &diag, &module, &info),
                     ATTN_ERROR_UNSUPPORTED);
    assert_null(module);
    assert_true(diag.count > 0);
    const char *message = diag.items[diag.count - 1].message;
    saw_gemm |= strstr(message, "gemm") != NULL;
    saw_pow |= strstr(message, "'pow'") != NULL;
  }
  assert_true(saw_gemm && saw_pow);
  LLVMModuleRef module = NULL;
  attn_cpu_mlir_kernel info;
  assert_int_equal(attn_cpu_mlir_generate(mlir, graph, 1, &io[1], 4, &diag, &module, &info),
                   ATTN_ERROR_INVALID_ARGUMENT);
  attn_cpu_mlir_destroy(mlir);
  attn_arena_deinit(&arena);
  attn_graph_destroy(graph);
  attn_diag_deinit(&diag);
}

static int report_compile_time(void **state) {
  (void)state;
  if (compiled_count)
    printf("mlir: %u kernels, per kernel %.1f ms MLIR (emit, parse, lower, translate) + %.1f ms "
           "LLVM (O3, codegen)\n",
           compiled_count, 1e3 * mlir_seconds / compiled_count,
           1e3 * llvm_seconds / compiled_count);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define CASE_TEST(c) {(c).name, test_case, NULL, NULL, (void *)&(c)}
      CASE_TEST(unary_case),       CASE_TEST(logic_case),
      CASE_TEST(iota_case),        CASE_TEST(norm_case),
      CASE_TEST(reduce_case),      CASE_TEST(layout_case),
      CASE_TEST(rope_case),        CASE_TEST(gather_case),
#undef CASE_TEST
      cmocka_unit_test(test_hash), cmocka_unit_test(test_unsupported),
  };
  return cmocka_run_group_tests(tests, NULL, report_compile_time);
}
