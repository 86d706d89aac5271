// Unit tests for codegen/cpu: the JIT (errors, features), the f32 GEMM generator, whose kernels
// are compared with a double-precision loop over a grid of specs and shapes (residual apart and
// in place), and the GEMM launcher (threads, row and column splits, batches).
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <llvm-c/Core.h>

#include "codegen/cpu/jit.h"
#include "codegen/cpu/kernels.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/cpu/pool.h"

// DESIGN.md: f32, same algorithm (each element sums its products in order), k <= 768.
#define GEMM_TOLERANCE 1e-5
// Written around every result; a kernel must never change it.
#define GUARD_VALUE -7777.0f

typedef struct jit_fixture {
  attn_diag diag;
  attn_cpu_jit *jit;
  // Kernels compiled so far, by spec hash: the JIT rejects a second definition of a name.
  uint64_t hashes[512];
  attn_gemm_f32_fn kernels[512];
  size_t kernel_count;
} jit_fixture;

static int jit_setup(void **state) {
  jit_fixture *fixture = calloc(1, sizeof(*fixture));
  if (!fixture)
    return -1;
  attn_diag_init(&fixture->diag, attn_allocator_system());
  if (attn_cpu_jit_create(NULL, &fixture->diag, &fixture->jit) != ATTN_OK) {
    attn_diag_write(&fixture->diag, stderr);
    attn_diag_deinit(&fixture->diag);
    free(fixture);
    return -1;
  }
  *state = fixture;
  return 0;
}

static int jit_teardown(void **state) {
  jit_fixture *fixture = *state;
  attn_cpu_jit_destroy(fixture->jit);
  attn_diag_deinit(&fixture->diag);
  free(fixture);
  return 0;
}

static attn_gemm_f32_fn kernel_for(jit_fixture *fixture, const attn_gemm_spec *spec) {
  uint64_t hash = attn_gemm_spec_hash(spec);
  for (size_t i = 0; i < fixture->kernel_count; i++)
    if (fixture->hashes[i] == hash)
      return fixture->kernels[i];
  LLVMModuleRef module = NULL;
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_status status = attn_cpu_gemm_generate(spec, &fixture->diag, &module, name);
  if (status == ATTN_OK)
    status = attn_cpu_jit_add_module_owned(fixture->jit, module);
  attn_cpu_jit_fn fn = NULL;
  if (status == ATTN_OK)
    status = attn_cpu_jit_lookup(fixture->jit, name, &fn);
  if (status != ATTN_OK)
    attn_diag_write(&fixture->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  assert_true(fixture->kernel_count < sizeof(fixture->hashes) / sizeof(fixture->hashes[0]));
  fixture->hashes[fixture->kernel_count] = hash;
  fixture->kernels[fixture->kernel_count] = (attn_gemm_f32_fn)fn;
  return fixture->kernels[fixture->kernel_count++];
}

// Deterministic inputs in [-1, 1).
static uint64_t random_state;

static float random_float(void) {
  random_state = random_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
  return (float)((double)(random_state >> 40) / (double)(UINT64_C(1) << 24) * 2.0 - 1.0);
}

static double reference_activation(attn_cpu_activation activation, double x) {
  switch (activation) {
  case ATTN_CPU_ACTIVATION_RELU:
    return x > 0 ? x : 0;
  case ATTN_CPU_ACTIVATION_GELU_TANH:
    return 0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)));
  case ATTN_CPU_ACTIVATION_GELU_ERF:
    return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440));
  case ATTN_CPU_ACTIVATION_SILU:
    return x / (1.0 + exp(-x));
  case ATTN_CPU_ACTIVATION_TANH:
    return tanh(x);
  case ATTN_CPU_ACTIVATION_SIGMOID:
    return 1.0 / (1.0 + exp(-x));
  case ATTN_CPU_ACTIVATION_NONE:
  case ATTN_CPU_ACTIVATION_COUNT:
    break;
  }
  return x;
}

typedef struct gemm_shape {
  int64_t m, n, k;
} gemm_shape;

// How check_gemm_run runs a problem.
typedef struct gemm_run {
  int64_t row_begin, row_end; // rows computed by a direct kernel call
  bool in_place;              // the residual is c itself (ldr == ldc)
  bool launch;                // through attn_cpu_gemm_launch, every row
  attn_pool *pool;            // for the launch; NULL runs it on the calling thread
  int64_t batch;              // items of the launch (0: one)
  bool shared_b;              // the launch's items share one b (batch stride 0)
} gemm_run;

// Runs the kernel of `spec` on a random m x n x k problem with padded leading dimensions, as
// `run` says, and checks: the relative L2 error against a double loop over the rows computed,
// and that no element outside them (guards included) changed. Returns the error.
static double check_gemm_run(jit_fixture *fixture, const attn_gemm_spec *spec, gemm_shape shape,
                             const gemm_run *run) {
  attn_gemm_f32_fn kernel = kernel_for(fixture, spec);
  int64_t m = shape.m, n = shape.n, k = shape.k;
  int64_t batch = run->batch > 0 ? run->batch : 1;
  int64_t row_begin = run->launch ? 0 : run->row_begin, row_end = run->launch ? m : run->row_end;
  // A is m x k (k x m transposed), B is k x n (n x k transposed); every row padded by 3.
  int64_t a_rows = spec->transpose_a ? k : m, a_cols = spec->transpose_a ? m : k;
  int64_t b_rows = spec->transpose_b ? n : k, b_cols = spec->transpose_b ? k : n;
  int64_t lda = a_cols + 3, ldb = b_cols + 3, ldc = n + 3;
  int64_t ldr = run->in_place ? ldc : n + 2;
  int64_t a_item = a_rows * lda + 1, b_item = b_rows * ldb + 1, r_item = m * ldr + 1;
  // Each item of c has a guard row after it, and the first one a guard row before; 3 guard
  // columns.
  int64_t c_item = (m + 1) * ldc;
  size_t c_size = (size_t)(ldc + batch * c_item);
  int64_t b_items = run->shared_b ? 1 : batch;
  float *a = malloc(sizeof(float) * (size_t)(batch * a_item));
  float *b = malloc(sizeof(float) * (size_t)(b_items * b_item));
  float *bias = malloc(sizeof(float) * (size_t)(n + 1));
  float *residual = malloc(sizeof(float) * (size_t)(batch * r_item));
  float *residual_values = malloc(sizeof(float) * (size_t)(batch * m * n + 1));
  float *c_storage = malloc(sizeof(float) * c_size);
  assert_true(a && b && bias && residual && residual_values && c_storage);
  for (int64_t i = 0; i < batch * a_item; i++)
    a[i] = random_float();
  for (int64_t i = 0; i < b_items * b_item; i++)
    b[i] = random_float();
  for (int64_t i = 0; i < n; i++)
    bias[i] = random_float();
  for (size_t i = 0; i < c_size; i++)
    c_storage[i] = GUARD_VALUE;
  float *c = c_storage + ldc;
  for (int64_t item = 0; item < batch; item++) {
    for (int64_t i = 0; i < m; i++) {
      for (int64_t j = 0; j < n; j++) {
        float value = random_float();
        residual_values[(item * m + i) * n + j] = value;
        residual[item * r_item + i * ldr + j] = value;
        if (run->in_place && i >= row_begin && i < row_end)
          c[item * c_item + i * ldc + j] = value;
      }
    }
  }
  const float *bias_arg = spec->bias ? bias : NULL;
  const float *residual_arg = spec->residual ? (run->in_place ? c : residual) : NULL;

  if (run->launch) {
    attn_gemm_call call = {
        .a = a,
        .b = b,
        .c = c,
        .m = m,
        .n = n,
        .k = k,
        .lda = lda,
        .ldb = ldb,
        .ldc = ldc,
        .bias = bias_arg,
        .residual = residual_arg,
        .ldr = ldr,
        .transpose_b = spec->transpose_b,
        .batch = run->batch,
        .batch_stride_a = a_item,
        .batch_stride_b = run->shared_b ? 0 : b_item,
        .batch_stride_c = c_item,
        .batch_stride_residual = run->in_place ? c_item : r_item,
    };
    attn_status status = attn_cpu_gemm_launch(kernel, &call, run->pool, &fixture->diag);
    if (status != ATTN_OK)
      attn_diag_write(&fixture->diag, stderr);
    assert_int_equal(status, ATTN_OK);
  } else {
    kernel(a, b, c, m, n, k, lda, ldb, ldc, bias_arg, residual_arg, ldr, row_begin, row_end);
  }

  double error_squares = 0, reference_squares = 0;
  for (int64_t item = 0; item < batch; item++) {
    const float *item_a = a + item * a_item;
    const float *item_b = b + (run->shared_b ? 0 : item * b_item);
    const float *item_c = c + item * c_item;
    for (int64_t i = -1; i < m + 1; i++) {
      for (int64_t j = 0; j < ldc; j++) {
        float got = item_c[i * ldc + j];
        if (i < row_begin || i >= row_end || j >= n) {
          if (got != GUARD_VALUE)
            fail_msg("item %lld: element (%lld, %lld) outside rows [%lld, %lld) x %lld columns "
                     "changed to %g",
                     (long long)item, (long long)i, (long long)j, (long long)row_begin,
                     (long long)row_end, (long long)n, (double)got);
          continue;
        }
        double sum = 0;
        for (int64_t kk = 0; kk < k; kk++) {
          double a_value = spec->transpose_a ? item_a[kk * lda + i] : item_a[i * lda + kk];
          double b_value = spec->transpose_b ? item_b[j * ldb + kk] : item_b[kk * ldb + j];
          sum += a_value * b_value;
        }
        if (spec->bias)
          sum += (double)bias[j];
        sum = reference_activation(spec->activation, sum);
        if (spec->residual && spec->residual_op == ATTN_CPU_RESIDUAL_MUL)
          sum *= (double)residual_values[(item * m + i) * n + j];
        else if (spec->residual)
          sum += (double)residual_values[(item * m + i) * n + j];
        error_squares += ((double)got - sum) * ((double)got - sum);
        reference_squares += sum * sum;
      }
    }
  }
  free(a);
  free(b);
  free(bias);
  free(residual);
  free(residual_values);
  free(c_storage);
  double error =
      reference_squares > 0 ? sqrt(error_squares / reference_squares) : sqrt(error_squares);
  if (!(error <= GEMM_TOLERANCE))
    fail_msg("%lldx%lldx%lld rows [%lld, %lld) ta=%d tb=%d bias=%d %s residual=%d width %d "
             "in_place=%d launch=%d batch=%lld: relative L2 error %g",
             (long long)m, (long long)n, (long long)k, (long long)row_begin, (long long)row_end,
             spec->transpose_a, spec->transpose_b, spec->bias,
             attn_cpu_activation_name(spec->activation), spec->residual, spec->vector_width,
             run->in_place, run->launch, (long long)batch, error);
  return error;
}

// The kernel called directly on rows [row_begin, row_end), residual apart from c.
static double check_gemm(jit_fixture *fixture, const attn_gemm_spec *spec, gemm_shape shape,
                         int64_t row_begin, int64_t row_end) {
  gemm_run run = {.row_begin = row_begin, .row_end = row_end};
  return check_gemm_run(fixture, spec, shape, &run);
}

// Every epilogue (bias x activation x residual), both transposes, both vector widths, on shapes
// with 1, primes, k = 0, and one more and one less than a register tile in m and n and than a
// k block in k.
static void gemm_matches_reference_over_spec_grid(void **state) {
  jit_fixture *fixture = *state;
  random_state = 1;
  double worst = 0;
  int cases = 0;
  for (int width = 8; width <= 16; width += 8) {
    int64_t mr = ATTN_GEMM_TILE_ROWS, nr = 2 * width;
    const gemm_shape shapes[] = {
        {1, 1, 1},           {7, 13, 29}, {mr - 1, nr - 1, 5},
        {mr + 1, nr + 1, 9}, {mr, nr, 1}, {2 * mr + 1, 2 * nr - 1, 17},
        {3, 2 * nr + 1, 0},
    };
    // One less than, exactly, and one more than a k block, with every layout and epilogue but
    // only the first activation (the activation does not depend on k).
    int64_t kb = attn_gemm_k_block(width);
    const gemm_shape k_shapes[] = {
        {mr + 1, nr - 1, kb - 1}, {mr, nr + 1, kb}, {mr - 1, nr, kb + 1}, {2, 3, 2 * kb + 1}};
    for (int flags = 0; flags < 32; flags++) {
      if ((flags >> 4) & 1 && !((flags >> 3) & 1))
        continue; // a residual op without a residual
      for (int act = 0; act < ATTN_CPU_ACTIVATION_COUNT; act++) {
        // The multiply is the last step whatever the activation: two activations cover it.
        bool is_mul = (flags >> 4) & 1;
        if (is_mul && act != ATTN_CPU_ACTIVATION_NONE && act != ATTN_CPU_ACTIVATION_SILU)
          continue;
        // tanh and sigmoid are pointwise like the others: one layout covers them.
        bool is_pointwise_only =
            act == ATTN_CPU_ACTIVATION_TANH || act == ATTN_CPU_ACTIVATION_SIGMOID;
        if (is_pointwise_only && (flags & 3))
          continue;
        attn_gemm_spec spec = {
            .transpose_a = flags & 1,
            .transpose_b = (flags >> 1) & 1,
            .bias = (flags >> 2) & 1,
            .residual = (flags >> 3) & 1,
            .residual_op = is_mul ? ATTN_CPU_RESIDUAL_MUL : ATTN_CPU_RESIDUAL_ADD,
            .activation = (attn_cpu_activation)act,
            .vector_width = width,
        };
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
          double error = check_gemm(fixture, &spec, shapes[s], 0, shapes[s].m);
          worst = error > worst ? error : worst;
          cases++;
        }
        for (size_t s = 0; act == 0 && s < sizeof(k_shapes) / sizeof(k_shapes[0]); s++) {
          double error = check_gemm(fixture, &spec, k_shapes[s], 0, k_shapes[s].m);
          worst = error > worst ? error : worst;
          cases++;
        }
      }
    }
  }
  print_message("gemm grid: %d cases, worst relative L2 error %.3g\n", cases, worst);
}

// The largest shape of the suite, with the full epilogue, for each layout and width.
static void gemm_matches_reference_at_64x768x768(void **state) {
  jit_fixture *fixture = *state;
  random_state = 2;
  for (int width = 8; width <= 16; width += 8) {
    for (int flags = 0; flags < 4; flags++) {
      attn_gemm_spec spec = {
          .transpose_a = flags & 1,
          .transpose_b = (flags >> 1) & 1,
          .bias = true,
          .activation = ATTN_CPU_ACTIVATION_GELU_TANH,
          .residual = true,
          .vector_width = width,
      };
      double error = check_gemm(fixture, &spec, (gemm_shape){64, 768, 768}, 0, 64);
      print_message("64x768x768 ta=%d tb=%d width %d: relative L2 error %.3g\n", spec.transpose_a,
                    spec.transpose_b, width, error);
    }
  }
}

// Row ranges as a thread pool would hand them out: only the rows asked for are written (the
// guard check in check_gemm), and they are right.
static void gemm_computes_only_the_requested_rows(void **state) {
  jit_fixture *fixture = *state;
  random_state = 3;
  const int64_t ranges[][2] = {{0, 4}, {4, 13}, {2, 3}, {5, 12}, {13, 13}, {7, 13}};
  for (int width = 8; width <= 16; width += 8) {
    attn_gemm_spec spec = {.bias = true,
                           .activation = ATTN_CPU_ACTIVATION_SILU,
                           .residual = true,
                           .vector_width = width};
    for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++)
      check_gemm(fixture, &spec, (gemm_shape){13, 2 * width + 3, 11}, ranges[r][0], ranges[r][1]);
    // More rows than one row block of the kernel (192), more k than one k block.
    gemm_shape tall = {400, 2 * width + 3, attn_gemm_k_block(width) + 1};
    check_gemm(fixture, &spec, tall, 0, tall.m);
    check_gemm(fixture, &spec, tall, 5, 399);
    check_gemm(fixture, &spec, tall, 190, 197);
  }
}

// In place: residual == c with ldr == ldc. With several k blocks the kernel keeps partial sums
// in c, so this fails unless it keeps the residual elsewhere first; the shapes take k over one,
// two and three k blocks, m over a row block and n over a column block, and row ranges that do
// not start at 0.
static void gemm_adds_residual_in_place(void **state) {
  jit_fixture *fixture = *state;
  random_state = 4;
  for (int width = 8; width <= 16; width += 8) {
    int64_t kb = attn_gemm_k_block(width);
    const gemm_shape shapes[] = {
        {13, 2 * width + 3, 2 * kb + 5},
        {ATTN_GEMM_ROW_BLOCK + 7, ATTN_GEMM_COLUMN_BLOCK + 2 * width + 1, kb + 1},
        {7, 11, kb},
        {3, 5, 0},
    };
    for (int flags = 0; flags < 16; flags++) {
      attn_gemm_spec spec = {
          .transpose_a = flags & 1,
          .transpose_b = (flags >> 1) & 1,
          .bias = (flags >> 2) & 1,
          .activation = (flags >> 2) & 1 ? ATTN_CPU_ACTIVATION_GELU_TANH : ATTN_CPU_ACTIVATION_NONE,
          .residual = true,
          .residual_op = (flags >> 3) & 1 ? ATTN_CPU_RESIDUAL_MUL : ATTN_CPU_RESIDUAL_ADD,
          .vector_width = width,
      };
      for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        gemm_run run = {.row_begin = 0, .row_end = shapes[i].m, .in_place = true};
        check_gemm_run(fixture, &spec, shapes[i], &run);
        run.row_begin = shapes[i].m / 3;
        run.row_end = shapes[i].m - shapes[i].m / 4;
        check_gemm_run(fixture, &spec, shapes[i], &run);
      }
    }
  }
}

// Large shapes for one kernel: several row blocks, column blocks and k blocks at once, with the
// residual apart and in place.
static void gemm_matches_reference_over_blocks(void **state) {
  jit_fixture *fixture = *state;
  random_state = 5;
  attn_gemm_spec spec = {.transpose_b = true,
                         .bias = true,
                         .activation = ATTN_CPU_ACTIVATION_SILU,
                         .residual = true,
                         .vector_width = 8};
  gemm_shape shape = {2 * ATTN_GEMM_ROW_BLOCK + 5, 2 * ATTN_GEMM_COLUMN_BLOCK + 9,
                      2 * attn_gemm_k_block(8) + 3};
  for (int in_place = 0; in_place < 2; in_place++) {
    for (int tb = 0; tb < 2; tb++) {
      spec.transpose_b = tb;
      gemm_run run = {.row_begin = 1, .row_end = shape.m - 2, .in_place = in_place};
      double error = check_gemm_run(fixture, &spec, shape, &run);
      print_message("%lldx%lldx%lld tb=%d in_place=%d: relative L2 error %.3g\n",
                    (long long)shape.m, (long long)shape.n, (long long)shape.k, tb, in_place,
                    error);
    }
  }
}

// The launcher on 1 and 2 threads and on none (NULL pool): shapes taller than wide, which it
// splits by rows, and wide or decode-like ones (m of 1 to 16), which it splits by columns, with B
// plain and transposed (the column offset of b differs) and the residual apart and in place.
static void gemm_launch_matches_reference(void **state) {
  jit_fixture *fixture = *state;
  random_state = 6;
  // Split by rows: {300, 70, 50}, {200, 100, 300}; too small to split: {13, 40, 9}, {1, 1, 1};
  // by columns: the others.
  const gemm_shape shapes[] = {{1, 300, 70},  {7, 129, 33},    {16, 1000, 40}, {200, 300, 300},
                               {300, 70, 50}, {200, 100, 300}, {13, 40, 9},    {1, 1, 1}};
  for (uint32_t threads = 0; threads <= 2; threads++) {
    attn_pool *pool = NULL;
    if (threads > 0) {
      attn_pool_options options = {.thread_count = threads};
      assert_int_equal(attn_pool_create(attn_allocator_system(), &fixture->diag, &options, &pool),
                       ATTN_OK);
    }
    for (int flags = 0; flags < 4; flags++) {
      attn_gemm_spec spec = {.transpose_b = flags & 1,
                             .bias = true,
                             .activation = ATTN_CPU_ACTIVATION_SILU,
                             .residual = true,
                             .vector_width = 8};
      for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        gemm_run run = {.launch = true, .pool = pool, .in_place = (flags >> 1) & 1};
        check_gemm_run(fixture, &spec, shapes[i], &run);
      }
    }
    attn_pool_destroy(pool);
  }
}

// Batched launches: several items (fewer and more than threads), b per item or shared (stride
// 0), the residual apart and in place.
static void gemm_launch_runs_batches(void **state) {
  jit_fixture *fixture = *state;
  random_state = 7;
  attn_pool *pool = NULL;
  attn_pool_options options = {.thread_count = 2};
  assert_int_equal(attn_pool_create(attn_allocator_system(), &fixture->diag, &options, &pool),
                   ATTN_OK);
  const gemm_shape shapes[] = {{5, 40, 17}, {20, 70, 300}, {1, 100, 8}};
  const int64_t batches[] = {1, 3, 4};
  for (int flags = 0; flags < 8; flags++) {
    attn_gemm_spec spec = {.transpose_a = (flags >> 2) & 1,
                           .transpose_b = flags & 1,
                           .bias = true,
                           .activation = ATTN_CPU_ACTIVATION_RELU,
                           .residual = true,
                           .vector_width = 8};
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
      for (size_t t = 0; t < sizeof(batches) / sizeof(batches[0]); t++) {
        gemm_run run = {.launch = true,
                        .pool = pool,
                        .batch = batches[t],
                        .shared_b = (flags >> 1) & 1,
                        .in_place = t == 1};
        check_gemm_run(fixture, &spec, shapes[i], &run);
      }
    }
  }
  attn_pool_destroy(pool);
}

static void gemm_launch_rejects_bad_calls(void **state) {
  jit_fixture *fixture = *state;
  attn_gemm_spec spec = {.vector_width = 8};
  attn_gemm_f32_fn kernel = kernel_for(fixture, &spec);
  float a = 1, b = 2, c = GUARD_VALUE;
  attn_gemm_call call = {
      .a = &a, .b = &b, .c = &c, .m = -1, .n = 1, .k = 1, .lda = 1, .ldb = 1, .ldc = 1};
  assert_int_equal(attn_cpu_gemm_launch(kernel, &call, NULL, &fixture->diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_diag_last_error(&fixture->diag), "m=-1"));
  call.m = 1;
  call.b = NULL;
  assert_int_equal(attn_cpu_gemm_launch(kernel, &call, NULL, &fixture->diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_true(c == GUARD_VALUE);
  call.b = &b;
  assert_int_equal(attn_cpu_gemm_launch(kernel, &call, NULL, &fixture->diag), ATTN_OK);
  assert_true(c == 2.0f);
}

// The activations on their own (k = 1, b = 1, so c = act(a)) over [-12, 12], against libm in
// double. The measure is the error relative to max(|reference|, 1): relative for results of
// magnitude at least 1, absolute below, where the f32 rounding of the argument dominates.
static void gemm_activations_are_accurate(void **state) {
  jit_fixture *fixture = *state;
  enum { POINTS = 24001 };
  float *x = malloc(sizeof(float) * POINTS);
  float *y = malloc(sizeof(float) * POINTS);
  float one = 1.0f;
  assert_true(x && y);
  for (int i = 0; i < POINTS; i++)
    x[i] = (float)(-12.0 + 24.0 * i / (POINTS - 1));
  for (int width = 8; width <= 16; width += 8) {
    for (int act = ATTN_CPU_ACTIVATION_RELU; act < ATTN_CPU_ACTIVATION_COUNT; act++) {
      attn_gemm_spec spec = {.activation = (attn_cpu_activation)act, .vector_width = width};
      attn_gemm_f32_fn kernel = kernel_for(fixture, &spec);
      kernel(x, &one, y, POINTS, 1, 1, 1, 1, 1, NULL, NULL, 0, 0, POINTS);
      double worst = 0, error_squares = 0, reference_squares = 0;
      for (int i = 0; i < POINTS; i++) {
        double reference = reference_activation((attn_cpu_activation)act, x[i]);
        double error = fabs((double)y[i] - reference);
        double scale = fabs(reference) > 1 ? fabs(reference) : 1;
        worst = error / scale > worst ? error / scale : worst;
        error_squares += error * error;
        reference_squares += reference * reference;
      }
      double l2 = sqrt(error_squares / reference_squares);
      print_message("%-9s width %2d: max error %.3g, relative L2 %.3g\n",
                    attn_cpu_activation_name(spec.activation), width, worst, l2);
      assert_true(worst <= 1e-6);
      assert_true(l2 <= 1e-6);
    }
  }
  free(x);
  free(y);
}

// The hash is FNV-1a over the bytes kernels.h documents, and differs across the spec grid.
static void gemm_spec_hash_follows_its_definition(void **state) {
  (void)state;
  uint64_t seen[2 * 32 * ATTN_CPU_ACTIVATION_COUNT];
  size_t count = 0;
  for (int width = 8; width <= 16; width += 8) {
    for (int flags = 0; flags < 32; flags++) {
      if ((flags >> 4) & 1 && !((flags >> 3) & 1))
        continue; // a residual op without a residual
      for (int act = 0; act < ATTN_CPU_ACTIVATION_COUNT; act++) {
        attn_gemm_spec spec = {
            .transpose_a = flags & 1,
            .transpose_b = (flags >> 1) & 1,
            .bias = (flags >> 2) & 1,
            .residual = (flags >> 3) & 1,
            .residual_op = (flags >> 4) & 1 ? ATTN_CPU_RESIDUAL_MUL : ATTN_CPU_RESIDUAL_ADD,
            .activation = (attn_cpu_activation)act,
            .vector_width = width,
        };
        const uint8_t bytes[] = {'g',
                                 'e',
                                 'm',
                                 'm',
                                 3,
                                 spec.transpose_a,
                                 spec.transpose_b,
                                 spec.bias,
                                 (uint8_t)act,
                                 spec.residual,
                                 (uint8_t)spec.residual_op,
                                 (uint8_t)width};
        uint64_t expected = UINT64_C(14695981039346656037);
        for (size_t i = 0; i < sizeof(bytes); i++)
          expected = (expected ^ bytes[i]) * UINT64_C(1099511628211);
        uint64_t hash = attn_gemm_spec_hash(&spec);
        assert_true(hash == expected);
        for (size_t i = 0; i < count; i++)
          assert_true(seen[i] != hash);
        seen[count++] = hash;
      }
    }
  }
}

static void gemm_generate_rejects_bad_specs(void **state) {
  jit_fixture *fixture = *state;
  LLVMModuleRef module = NULL;
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_gemm_spec spec = {.vector_width = 4};
  assert_int_equal(attn_cpu_gemm_generate(&spec, &fixture->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_null(module);
  assert_non_null(strstr(attn_diag_last_error(&fixture->diag), "vector width 4"));
  spec = (attn_gemm_spec){.vector_width = 8, .activation = ATTN_CPU_ACTIVATION_COUNT};
  assert_int_equal(attn_cpu_gemm_generate(&spec, &fixture->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_null(module);
}

// A module whose function has a block without a terminator: the verifier's report comes back
// as a message, and the JIT stays usable.
static void jit_reports_invalid_module(void **state) {
  jit_fixture *fixture = *state;
  LLVMContextRef context = LLVMContextCreate();
  LLVMModuleRef module = LLVMModuleCreateWithNameInContext("broken", context);
  LLVMTypeRef type = LLVMFunctionType(LLVMVoidTypeInContext(context), NULL, 0, 0);
  LLVMValueRef function = LLVMAddFunction(module, "broken", type);
  LLVMAppendBasicBlockInContext(context, function, "entry");
  assert_int_equal(attn_cpu_jit_add_module_owned(fixture->jit, module),
                   ATTN_ERROR_INVALID_ARGUMENT);
  const char *message = attn_diag_last_error(&fixture->diag);
  assert_non_null(strstr(message, "'broken' is invalid"));
  assert_non_null(strstr(message, "terminator"));

  attn_cpu_jit_fn fn = NULL;
  assert_int_equal(attn_cpu_jit_lookup(fixture->jit, "no_such_kernel", &fn), ATTN_ERROR_NOT_FOUND);
  assert_null(fn);
  assert_non_null(strstr(attn_diag_last_error(&fixture->diag), "no_such_kernel"));

  // Still usable after the errors.
  attn_gemm_spec spec = {.vector_width = 8, .activation = ATTN_CPU_ACTIVATION_RELU};
  check_gemm(fixture, &spec, (gemm_shape){3, 5, 7}, 0, 3);
}

// The same kernel twice in one JIT is a duplicate definition: an error, not a crash.
static void jit_reports_duplicate_definition(void **state) {
  jit_fixture *fixture = *state;
  attn_gemm_spec spec = {.vector_width = 8, .bias = true};
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_status status = ATTN_OK;
  for (int i = 0; i < 2 && status == ATTN_OK; i++) {
    LLVMModuleRef module = NULL;
    assert_int_equal(attn_cpu_gemm_generate(&spec, &fixture->diag, &module, name), ATTN_OK);
    status = attn_cpu_jit_add_module_owned(fixture->jit, module);
    attn_cpu_jit_fn fn = NULL;
    if (status == ATTN_OK)
      status = attn_cpu_jit_lookup(fixture->jit, name, &fn);
  }
  assert_int_not_equal(status, ATTN_OK);
  assert_non_null(strstr(attn_diag_last_error(&fixture->diag), name));
}

static void jit_parses_cpu_features(void **state) {
  jit_fixture *fixture = *state;
  attn_cpu_features parsed = attn_cpu_features_parse("+avx2,-avx512f,+fma,+avx512bf16,+avx512fp16");
  assert_true(parsed.avx2 && parsed.fma && parsed.avx512bf16);
  assert_false(parsed.avx512f);
  assert_int_equal(attn_cpu_features_vector_width(parsed), 8);
  parsed = attn_cpu_features_parse("+avx512f");
  assert_true(parsed.avx512f);
  assert_false(parsed.avx2);
  assert_int_equal(attn_cpu_features_vector_width(parsed), 16);
  parsed = attn_cpu_features_parse("");
  assert_false(parsed.avx2 || parsed.fma || parsed.avx512f || parsed.avx512bf16);

  attn_cpu_features host = attn_cpu_jit_features(fixture->jit);
  print_message("host cpu %s: avx2 %d fma %d avx512f %d avx512bf16 %d -> vector width %d\n",
                attn_cpu_jit_cpu_name(fixture->jit), host.avx2, host.fma, host.avx512f,
                host.avx512bf16, attn_cpu_features_vector_width(host));
  // The feature string the JIT was built from says the same.
  const char *features = attn_cpu_jit_feature_string(fixture->jit);
  assert_int_equal(host.avx512f, strstr(features, "+avx512f,") != NULL ||
                                     (strlen(features) >= 8 &&
                                      strcmp(features + strlen(features) - 8, "+avx512f") == 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gemm_spec_hash_follows_its_definition),
      cmocka_unit_test_setup_teardown(jit_parses_cpu_features, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(jit_reports_invalid_module, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(jit_reports_duplicate_definition, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_generate_rejects_bad_specs, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_matches_reference_over_spec_grid, jit_setup,
                                      jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_matches_reference_at_64x768x768, jit_setup,
                                      jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_computes_only_the_requested_rows, jit_setup,
                                      jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_activations_are_accurate, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_adds_residual_in_place, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_matches_reference_over_blocks, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_launch_matches_reference, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_launch_runs_batches, jit_setup, jit_teardown),
      cmocka_unit_test_setup_teardown(gemm_launch_rejects_bad_calls, jit_setup, jit_teardown),
  };
  int failures = cmocka_run_group_tests_name("codegen/gemm", tests, NULL, NULL);
  attn_cpu_llvm_shutdown();
  return failures;
}
