// Unit tests for the CPU attention kernels (codegen/cpu/attention.h): every mask kind, mask
// tensors with broadcast dims, GQA, odd shapes, decode key splits, sigmoid, lse, bf16 and score
// mods (ALiBi, softcapping, bias tables, document masks, every function), run through
// attn_cpu_attention_launch on 1 and 2 threads and compared with a double-precision loop written
// here from the op's definition (ir/ir.h), which evaluates score mods with attn_expr_eval, with
// guard bands around every output.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Core.h>

#include "codegen/cpu/attention.h"
#include "codegen/cpu/jit.h"
#include "ir/interp.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/cpu/pool.h"

// DESIGN.md: f32 with reordered reductions (online softmax sums keys block by block and
// rescales) stays far inside 1e-5 relative L2; we hold the kernel to the tighter same-algorithm
// bound of 1e-5.
#define F32_TOLERANCE 1e-5
// bf16 output is rounded to nearest even from f32: each element carries a relative error of up
// to 2^-9 (8 bits of mantissa), about 2e-3, and the relative L2 error of a vector of such
// roundings is of the same order. 1e-2 (DESIGN.md's bf16 bound) leaves room for the f32 sums but
// still catches a wrong weight or a wrong row.
#define BF16_TOLERANCE 1e-2
#define GUARD          16
#define GUARD_VALUE    -7777.0f
#define GUARD_BF16     0x7777

typedef struct fixture {
  attn_diag diag;
  attn_cpu_jit *jit;
  attn_pool *pools[2]; // 1 and 2 threads
  uint64_t hashes[256];
  attn_attention_fn kernels[256];
  size_t kernel_count;
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof(*f));
  if (!f)
    return -1;
  attn_diag_init(&f->diag, attn_allocator_system());
  attn_pool_options one = {1}, two = {2};
  if (attn_cpu_jit_create(NULL, &f->diag, &f->jit) != ATTN_OK ||
      attn_pool_create(attn_allocator_system(), &f->diag, &one, &f->pools[0]) != ATTN_OK ||
      attn_pool_create(attn_allocator_system(), &f->diag, &two, &f->pools[1]) != ATTN_OK) {
    attn_diag_write(&f->diag, stderr);
    return -1;
  }
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  attn_pool_destroy(f->pools[0]);
  attn_pool_destroy(f->pools[1]);
  attn_cpu_jit_destroy(f->jit);
  attn_diag_deinit(&f->diag);
  free(f);
  return 0;
}

static attn_attention_fn kernel_for(fixture *f, const attn_attention_spec *spec) {
  uint64_t hash = attn_attention_spec_hash(spec);
  for (size_t i = 0; i < f->kernel_count; i++)
    if (f->hashes[i] == hash)
      return f->kernels[i];
  LLVMModuleRef module = NULL;
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_status status = attn_cpu_attention_generate(spec, &f->diag, &module, name);
  if (status == ATTN_OK)
    status = attn_cpu_jit_add_module_owned(f->jit, module);
  attn_cpu_jit_fn fn = NULL;
  if (status == ATTN_OK)
    status = attn_cpu_jit_lookup(f->jit, name, &fn);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  assert_true(f->kernel_count < sizeof(f->hashes) / sizeof(f->hashes[0]));
  f->hashes[f->kernel_count] = hash;
  f->kernels[f->kernel_count] = (attn_attention_fn)fn;
  return f->kernels[f->kernel_count++];
}

static uint64_t random_state;

// Uniform in [-1, 1).
static float random_float(void) {
  random_state = random_state * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
  return (float)((double)(random_state >> 40) / (double)(UINT64_C(1) << 24) * 2.0 - 1.0);
}

static uint16_t bf16_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

static float bf16_value(uint16_t bits) {
  uint32_t wide = (uint32_t)bits << 16;
  float value;
  memcpy(&value, &wide, sizeof(value));
  return value;
}

// One problem: shapes, the static spec and the run-time facts.
typedef struct attn_case {
  int64_t b, h, hkv, tq, tk, d, dv;
  attn_cpu_attention_mask mask;
  int64_t window, sinks;
  attn_cpu_attention_mask_tensor mask_tensor;
  bool mask_full[4]; // which mask dims are full (the others broadcast)
  attn_cpu_attention_norm norm;
  double sigmoid_bias;
  bool lse;
  attn_cpu_attention_dtype dtype;
  int threads;                    // 1 or 2
  const attn_expr *score_mod;     // NULL: none
  const attn_expr *reference_mod; // what the reference evaluates instead, when not NULL
  uint32_t capture_count;
  attn_tensor captures[ATTN_CPU_ATTENTION_MAX_CAPTURES]; // borrowed data
} attn_case;

static attn_case dense(int64_t h, int64_t hkv, int64_t tq, int64_t tk, int64_t d) {
  attn_case c = {0};
  c.b = 1;
  c.h = h;
  c.hkv = hkv;
  c.tq = tq;
  c.tk = tk;
  c.d = d;
  c.dv = d;
  c.lse = true;
  c.threads = 2;
  return c;
}

static const char *case_text(const attn_case *c) {
  static char text[256];
  snprintf(text, sizeof(text),
           "B%lld H%lld Hkv%lld Tq%lld Tk%lld D%lld Dv%lld mask %d w%lld s%lld tensor %d "
           "[%d%d%d%d] norm %d lse %d dtype %d threads %d score mod %s",
           (long long)c->b, (long long)c->h, (long long)c->hkv, (long long)c->tq, (long long)c->tk,
           (long long)c->d, (long long)c->dv, (int)c->mask, (long long)c->window,
           (long long)c->sinks, (int)c->mask_tensor, c->mask_full[0], c->mask_full[1],
           c->mask_full[2], c->mask_full[3], (int)c->norm, c->lse, (int)c->dtype, c->threads,
           c->score_mod ? "yes" : "no");
  return text;
}

// The op's definition in double, one row at a time (ir/ir.h, ir/interp_attention.c).
static void reference(const attn_case *c, const double *q, const double *k, const double *v,
                      const void *mask, const int64_t strides[4], double scale, double *out,
                      double *lse) {
  double *s = malloc(sizeof(double) * (size_t)(c->tk + 1));
  bool *visible = malloc((size_t)(c->tk + 1));
  assert_true(s && visible);
  int64_t group = c->h / c->hkv;
  const attn_expr *mod = c->reference_mod ? c->reference_mod : c->score_mod;
  attn_expr_env env = {{0}, c->captures, c->capture_count};
  for (int64_t b = 0; b < c->b; b++) {
    for (int64_t h = 0; h < c->h; h++) {
      int64_t kvh = h / group;
      const double *kh = k + (b * c->hkv + kvh) * c->tk * c->d;
      const double *vh = v + (b * c->hkv + kvh) * c->tk * c->dv;
      for (int64_t i = 0; i < c->tq; i++) {
        int64_t row = (b * c->h + h) * c->tq + i, pos = c->tk - c->tq + i;
        double max = -HUGE_VAL;
        bool any = false;
        for (int64_t j = 0; j < c->tk; j++) {
          bool vis = true;
          if (c->mask != ATTN_CPU_ATTENTION_MASK_NONE)
            vis = j <= pos;
          if (c->mask == ATTN_CPU_ATTENTION_MASK_SLIDING_WINDOW)
            vis = vis && (j > pos - c->window || j < c->sinks);
          int64_t at = b * strides[0] + h * strides[1] + i * strides[2] + j * strides[3];
          if (c->mask_tensor == ATTN_CPU_ATTENTION_MASK_TENSOR_BOOL)
            vis = vis && ((const uint8_t *)mask)[at] != 0;
          visible[j] = vis;
          if (!vis)
            continue;
          double dot = 0;
          for (int64_t d = 0; d < c->d; d++)
            dot += q[row * c->d + d] * kh[j * c->d + d];
          s[j] = scale * dot;
          if (mod) {
            env.vars[ATTN_EXPR_VAR_SCORE] = s[j];
            env.vars[ATTN_EXPR_VAR_B] = (double)b;
            env.vars[ATTN_EXPR_VAR_H] = (double)h;
            env.vars[ATTN_EXPR_VAR_Q_IDX] = (double)pos;
            env.vars[ATTN_EXPR_VAR_KV_IDX] = (double)j;
            attn_expr_fault fault;
            if (attn_expr_eval(mod, &env, &s[j], &fault) != ATTN_OK)
              fail_msg("%s: the reference score mod faults on capture %u", case_text(c),
                       fault.capture);
          }
          if (c->mask_tensor == ATTN_CPU_ATTENTION_MASK_TENSOR_F32)
            s[j] += (double)((const float *)mask)[at];
          max = s[j] > max ? s[j] : max;
          any = true;
        }
        bool empty = !any || max == -HUGE_VAL;
        double sum = 0;
        for (int64_t j = 0; j < c->tk && !empty; j++)
          if (visible[j])
            sum += exp(s[j] - max);
        for (int64_t e = 0; e < c->dv; e++)
          out[row * c->dv + e] = 0;
        for (int64_t j = 0; j < c->tk && !empty; j++) {
          if (!visible[j])
            continue;
          double p = c->norm == ATTN_CPU_ATTENTION_NORM_SIGMOID
                         ? 1.0 / (1.0 + exp(-(s[j] + c->sigmoid_bias)))
                         : exp(s[j] - max) / sum;
          for (int64_t e = 0; e < c->dv; e++)
            out[row * c->dv + e] += p * vh[j * c->dv + e];
        }
        lse[row] = empty ? -HUGE_VAL : max + log(sum);
      }
    }
  }
  free(s);
  free(visible);
}

// Fills a tensor of `count` elements of the case's dtype with random values times `magnitude`
// and returns them (as stored) in double.
static void *random_tensor(const attn_case *c, int64_t count, double magnitude,
                           double **out_values) {
  double *values = malloc(sizeof(double) * (size_t)(count + 1));
  void *data = malloc((c->dtype == ATTN_CPU_ATTENTION_BF16 ? 2 : 4) * (size_t)(count + 1));
  assert_true(values && data);
  for (int64_t i = 0; i < count; i++) {
    float x = (float)((double)random_float() * magnitude);
    if (c->dtype == ATTN_CPU_ATTENTION_BF16) {
      ((uint16_t *)data)[i] = bf16_bits(x);
      values[i] = bf16_value(((uint16_t *)data)[i]);
    } else {
      ((float *)data)[i] = x;
      values[i] = x;
    }
  }
  *out_values = values;
  return data;
}

// Runs one case and checks out and lse against the reference and the guard bands. Returns the
// relative L2 error of out.
static double check_case(fixture *f, const attn_case *c) {
  attn_attention_spec spec = {.head_dim = c->d,
                              .value_dim = c->dv,
                              .mask = c->mask,
                              .mask_tensor = c->mask_tensor,
                              .norm = c->norm,
                              .lse = c->lse,
                              .dtype = c->dtype,
                              .vector_width = 8,
                              .score_mod = c->score_mod,
                              .capture_count = c->capture_count};
  for (uint32_t i = 0; i < c->capture_count; i++)
    spec.captures[i] = (attn_cpu_attention_capture){c->captures[i].dtype, c->captures[i].rank};
  attn_attention_fn fn = kernel_for(f, &spec);
  bool bf16 = c->dtype == ATTN_CPU_ATTENTION_BF16;
  int64_t q_count = c->b * c->h * c->tq * c->d, k_count = c->b * c->hkv * c->tk * c->d;
  int64_t v_count = c->b * c->hkv * c->tk * c->dv, out_count = c->b * c->h * c->tq * c->dv;
  int64_t rows = c->b * c->h * c->tq;
  double *qd, *kd, *vd;
  // Logits of a few units, so that the softmax is neither flat nor one-hot.
  void *q = random_tensor(c, q_count, 2.0, &qd);
  void *k = random_tensor(c, k_count, 2.0, &kd);
  void *v = random_tensor(c, v_count, 1.0, &vd);

  // The mask tensor: full or broadcast dims, row-major over the full ones.
  int64_t full_dims[4] = {c->b, c->h, c->tq, c->tk}, strides[4] = {0, 0, 0, 0}, mask_count = 1;
  for (int i = 3; i >= 0; i--) {
    if (c->mask_full[i]) {
      strides[i] = mask_count;
      mask_count *= full_dims[i];
    }
  }
  void *mask = NULL;
  if (c->mask_tensor == ATTN_CPU_ATTENTION_MASK_TENSOR_BOOL) {
    uint8_t *bytes = malloc((size_t)mask_count);
    assert_true(bytes);
    // About a third hidden; every seventh element with the full query dim hides a whole row
    // when the key dim is broadcast.
    for (int64_t i = 0; i < mask_count; i++)
      bytes[i] = random_float() > -0.33f ? (uint8_t)(1 + (i % 3)) : 0;
    if (c->mask_full[2] && !c->mask_full[3] && c->tq > 1)
      bytes[strides[2]] = 0;
    mask = bytes;
  } else if (c->mask_tensor == ATTN_CPU_ATTENTION_MASK_TENSOR_F32) {
    float *values = malloc(sizeof(float) * (size_t)mask_count);
    assert_true(values);
    for (int64_t i = 0; i < mask_count; i++)
      values[i] = i % 5 == 3 ? -INFINITY : 2.0f * random_float();
    if (c->mask_full[2] && !c->mask_full[3] && c->tq > 1)
      values[strides[2]] = -INFINITY;
    mask = values;
  }

  size_t element = bf16 ? 2 : 4;
  unsigned char *out_storage = malloc(element * (size_t)(out_count + 2 * GUARD));
  float *lse_storage = malloc(sizeof(float) * (size_t)(rows + 2 * GUARD));
  assert_true(out_storage && lse_storage);
  for (int64_t i = 0; i < out_count + 2 * GUARD; i++) {
    if (bf16)
      ((uint16_t *)out_storage)[i] = GUARD_BF16;
    else
      ((float *)out_storage)[i] = GUARD_VALUE;
  }
  for (int64_t i = 0; i < rows + 2 * GUARD; i++)
    lse_storage[i] = GUARD_VALUE;
  void *out = out_storage + element * GUARD;
  float *lse = lse_storage + GUARD;

  double scale = 1.0 / sqrt((double)c->d);
  attn_cpu_attention_args args = {
      .q = q,
      .k = k,
      .v = v,
      .mask = mask,
      .out = out,
      .lse = c->lse ? lse : NULL,
      .batch = c->b,
      .heads = c->h,
      .kv_heads = c->hkv,
      .tq = c->tq,
      .tk = c->tk,
      .window = c->window,
      .sinks = c->sinks,
      .mask_strides = {strides[0], strides[1], strides[2], strides[3]},
      .scale = scale,
      .sigmoid_bias = c->sigmoid_bias,
  };
  for (uint32_t i = 0; i < c->capture_count; i++) {
    args.captures[i] = c->captures[i].data;
    for (uint32_t d = 0; d < c->captures[i].rank; d++)
      args.capture_dims[i][d] = c->captures[i].dims[d];
  }
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  attn_cpu_attention_launch_spec launch = attn_attention_spec_launch(&spec);
  attn_status status = attn_cpu_attention_launch(fn, &launch, &args, f->pools[c->threads - 1],
                                                 attn_counting_allocator_get(&counter), &f->diag);
  if (status != ATTN_OK)
    attn_diag_write(&f->diag, stderr);
  assert_int_equal(status, ATTN_OK);
  assert_int_equal(counter.live_bytes, 0);

  double *expected = malloc(sizeof(double) * (size_t)(out_count + 1));
  double *expected_lse = malloc(sizeof(double) * (size_t)(rows + 1));
  assert_true(expected && expected_lse);
  reference(c, qd, kd, vd, mask, strides, scale, expected, expected_lse);

  for (int64_t i = 0; i < GUARD; i++) {
    for (int side = 0; side < 2; side++) {
      int64_t at = side ? GUARD + out_count + i : i;
      bool intact = bf16 ? ((uint16_t *)out_storage)[at] == GUARD_BF16
                         : ((float *)out_storage)[at] == GUARD_VALUE;
      if (!intact)
        fail_msg("%s: out guard element %lld changed", case_text(c), (long long)at);
      at = side ? GUARD + rows + i : i;
      if (lse_storage[at] != GUARD_VALUE)
        fail_msg("%s: lse guard element %lld changed", case_text(c), (long long)at);
    }
  }
  double error_squares = 0, reference_squares = 0;
  for (int64_t r = 0; r < rows; r++) {
    bool empty = expected_lse[r] == -HUGE_VAL;
    for (int64_t e = 0; e < c->dv; e++) {
      int64_t at = r * c->dv + e;
      double got = bf16 ? bf16_value(((uint16_t *)out)[at]) : ((float *)out)[at];
      if (empty && got != 0.0)
        fail_msg("%s: row %lld has no visible key but out[%lld] = %g", case_text(c), (long long)r,
                 (long long)e, got);
      error_squares += (got - expected[at]) * (got - expected[at]);
      reference_squares += expected[at] * expected[at];
    }
  }
  double error =
      reference_squares > 0 ? sqrt(error_squares / reference_squares) : sqrt(error_squares);
  double tolerance = bf16 ? BF16_TOLERANCE : F32_TOLERANCE;
  if (!(error <= tolerance))
    fail_msg("%s: relative L2 error of out %g", case_text(c), error);
  if (c->lse) {
    double lse_error = 0, lse_norm = 0;
    for (int64_t r = 0; r < rows; r++) {
      if (expected_lse[r] == -HUGE_VAL || lse[r] == -INFINITY) {
        if (expected_lse[r] != (double)lse[r])
          fail_msg("%s: lse[%lld] = %g, expected %g", case_text(c), (long long)r, (double)lse[r],
                   expected_lse[r]);
        continue;
      }
      double diff = (double)lse[r] - expected_lse[r];
      lse_error += diff * diff;
      lse_norm += expected_lse[r] * expected_lse[r];
    }
    double relative = lse_norm > 0 ? sqrt(lse_error / lse_norm) : sqrt(lse_error);
    // lse is f32 whatever the inputs are; bf16 inputs change nothing in its arithmetic.
    if (!(relative <= F32_TOLERANCE))
      fail_msg("%s: relative L2 error of lse %g", case_text(c), relative);
  } else {
    for (int64_t i = 0; i < rows + 2 * GUARD; i++)
      if (lse_storage[i] != GUARD_VALUE)
        fail_msg("%s: lse written without lse in the spec", case_text(c));
  }
  free(q);
  free(k);
  free(v);
  free(qd);
  free(kd);
  free(vd);
  free(mask);
  free(out_storage);
  free(lse_storage);
  free(expected);
  free(expected_lse);
  return error;
}

// ---- cases --------------------------------------------------------------------------------------

// Dense and causal attention over lengths that are not multiples of any tile and every supported
// head dim, on 1 and 2 threads.
static void odd_shapes_and_head_dims_match_reference(void **state) {
  fixture *f = *state;
  random_state = 1;
  const int64_t lengths[] = {1, 7, 37, 100, 513};
  const int64_t dims[] = {32, 64, 80, 128};
  for (size_t li = 0; li < sizeof(lengths) / sizeof(lengths[0]); li++) {
    for (size_t di = 0; di < sizeof(dims) / sizeof(dims[0]); di++) {
      for (int mask = 0; mask < 2; mask++) {
        attn_case c = dense(2, 1, lengths[li], lengths[li], dims[di]);
        c.mask = mask ? ATTN_CPU_ATTENTION_MASK_CAUSAL : ATTN_CPU_ATTENTION_MASK_NONE;
        c.threads = (int)(1 + (li + di) % 2);
        c.lse = (li + di + (size_t)mask) % 2 == 0;
        check_case(f, &c);
      }
    }
  }
  // Tq != Tk both ways, and a value dim unlike the head dim with a tail of value channels.
  attn_case c = dense(3, 3, 37, 100, 64);
  c.dv = 38;
  c.mask = ATTN_CPU_ATTENTION_MASK_CAUSAL;
  check_case(f, &c);
  c.mask = ATTN_CPU_ATTENTION_MASK_NONE;
  c.b = 2;
  c.d = 20;
  c.dv = 80;
  check_case(f, &c);
  // Causal with Tq > Tk: the first rows see no key at all.
  c = dense(2, 2, 100, 37, 32);
  c.mask = ATTN_CPU_ATTENTION_MASK_CAUSAL;
  check_case(f, &c);
}

static void gqa_ratios_match_reference(void **state) {
  fixture *f = *state;
  random_state = 2;
  const int64_t ratios[] = {1, 2, 4, 8};
  for (size_t i = 0; i < 4; i++) {
    attn_case c = dense(8, 8 / ratios[i], 37, 130, 64);
    c.b = 2;
    c.mask = i % 2 ? ATTN_CPU_ATTENTION_MASK_CAUSAL : ATTN_CPU_ATTENTION_MASK_NONE;
    c.threads = (int)(1 + i % 2);
    check_case(f, &c);
  }
}

// Windows shorter and longer than a key block, with and without sinks, prefill and Tq < Tk.
static void sliding_window_with_sinks_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 3;
  const int64_t windows[] = {1, 5, 64, 100, 300};
  const int64_t sinks[] = {0, 1, 4, 70};
  for (size_t w = 0; w < 5; w++) {
    for (size_t s = 0; s < 4; s++) {
      attn_case c = dense(2, 1, (w + s) % 2 ? 513 : 100, 513, 32);
      c.mask = ATTN_CPU_ATTENTION_MASK_SLIDING_WINDOW;
      c.window = windows[w];
      c.sinks = sinks[s];
      c.lse = s % 2 == 0;
      c.threads = (int)(1 + w % 2);
      check_case(f, &c);
    }
  }
}

// Bool and f32 mask tensors, alone and with a causal or window mask, over broadcast patterns;
// some rows end up with no visible key (bool) or only -inf logits (f32).
static void mask_tensors_with_broadcast_match_reference(void **state) {
  fixture *f = *state;
  random_state = 4;
  const bool patterns[][4] = {{true, true, true, true},
                              {false, false, true, true},
                              {false, false, false, true},
                              {true, false, true, false},
                              {false, true, false, true}};
  for (int kind = 1; kind <= 2; kind++) {
    for (size_t p = 0; p < sizeof(patterns) / sizeof(patterns[0]); p++) {
      for (int mask = 0; mask < 3; mask++) {
        attn_case c = dense(4, 2, 37, 100, 32);
        c.b = 2;
        c.mask_tensor = (attn_cpu_attention_mask_tensor)kind;
        memcpy(c.mask_full, patterns[p], sizeof(c.mask_full));
        c.mask = (attn_cpu_attention_mask)mask;
        c.window = 20;
        c.sinks = 3;
        c.threads = (int)(1 + p % 2);
        check_case(f, &c);
      }
    }
  }
}

static void sigmoid_and_lse_match_reference(void **state) {
  fixture *f = *state;
  random_state = 5;
  for (int lse = 0; lse < 2; lse++) {
    for (int mask = 0; mask < 3; mask++) {
      attn_case c = dense(2, 2, 100, 200, 64);
      c.norm = ATTN_CPU_ATTENTION_NORM_SIGMOID;
      c.sigmoid_bias = -1.5;
      c.lse = lse;
      c.mask = (attn_cpu_attention_mask)mask;
      c.window = 33;
      c.sinks = 2;
      check_case(f, &c);
    }
  }
  attn_case c = dense(2, 1, 7, 1000, 32);
  c.norm = ATTN_CPU_ATTENTION_NORM_SIGMOID;
  c.mask_tensor = ATTN_CPU_ATTENTION_MASK_TENSOR_BOOL;
  c.mask_full[2] = c.mask_full[3] = true;
  check_case(f, &c);
}

// One and four queries against a thousand keys and more: the launcher splits the keys and
// combines the chunks (on two threads), or runs one item per head (on one).
static void decode_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 6;
  const int64_t queries[] = {1, 4};
  const int64_t keys[] = {1000, 1037, 4099};
  for (size_t qi = 0; qi < 2; qi++) {
    for (size_t ki = 0; ki < 3; ki++) {
      for (int threads = 1; threads <= 2; threads++) {
        attn_case c = dense(8, 2, queries[qi], keys[ki], ki == 1 ? 128 : 64);
        c.mask = (attn_cpu_attention_mask)((qi + ki) % 3);
        c.window = 500;
        c.sinks = 4;
        c.threads = threads;
        c.lse = threads == 2 || ki == 0;
        check_case(f, &c);
      }
    }
  }
  attn_case c = dense(4, 4, 1, 2000, 64);
  c.norm = ATTN_CPU_ATTENTION_NORM_SIGMOID;
  c.mask_tensor = ATTN_CPU_ATTENTION_MASK_TENSOR_F32;
  c.mask_full[3] = true;
  check_case(f, &c);
}

static void bf16_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 7;
  for (int mask = 0; mask < 3; mask++) {
    attn_case c = dense(4, 2, 100, 100, 64);
    c.dtype = ATTN_CPU_ATTENTION_BF16;
    c.mask = (attn_cpu_attention_mask)mask;
    c.window = 30;
    c.sinks = 2;
    check_case(f, &c);
  }
  attn_case c = dense(8, 1, 1, 1500, 128);
  c.dtype = ATTN_CPU_ATTENTION_BF16;
  c.dv = 80;
  check_case(f, &c);
}

// ---- score mods ---------------------------------------------------------------------------------

// Expression nodes for the score mods of one test.
static attn_expr expr_nodes[256];
static size_t expr_node_count;

static attn_expr *new_expr(attn_expr_kind kind) {
  assert_true(expr_node_count < sizeof(expr_nodes) / sizeof(expr_nodes[0]));
  attn_expr *e = &expr_nodes[expr_node_count++];
  memset(e, 0, sizeof(*e));
  e->kind = kind;
  return e;
}

static const attn_expr *num(double value) {
  attn_expr *e = new_expr(ATTN_EXPR_NUMBER);
  e->number = value;
  return e;
}

static const attn_expr *var(attn_expr_var v) {
  attn_expr *e = new_expr(ATTN_EXPR_VAR);
  e->var = v;
  return e;
}

static const attn_expr *un(attn_expr_fn fn, const attn_expr *a) {
  attn_expr *e = new_expr(ATTN_EXPR_UNARY);
  e->fn = fn;
  e->arg_count = 1;
  e->args[0] = a;
  return e;
}

static const attn_expr *bin(attn_expr_fn fn, const attn_expr *a, const attn_expr *b) {
  attn_expr *e = new_expr(ATTN_EXPR_BINARY);
  e->fn = fn;
  e->arg_count = 2;
  e->args[0] = a;
  e->args[1] = b;
  return e;
}

static const attn_expr *sel(const attn_expr *c, const attn_expr *a, const attn_expr *b) {
  attn_expr *e = new_expr(ATTN_EXPR_SELECT);
  e->arg_count = 3;
  e->args[0] = c;
  e->args[1] = a;
  e->args[2] = b;
  return e;
}

// capture[i] or capture[i, j] (j NULL for one subscript).
static const attn_expr *cap(uint32_t capture, const attn_expr *i, const attn_expr *j) {
  attn_expr *e = new_expr(ATTN_EXPR_CAPTURE);
  e->capture = capture;
  e->arg_count = j ? 2 : 1;
  e->args[0] = i;
  e->args[1] = j;
  return e;
}

#define SCORE  var(ATTN_EXPR_VAR_SCORE)
#define Q_IDX  var(ATTN_EXPR_VAR_Q_IDX)
#define KV_IDX var(ATTN_EXPR_VAR_KV_IDX)

// ALiBi: score + slopes[h] * (kv_idx - q_idx).
static const attn_expr *alibi(void) {
  return bin(
      ATTN_EXPR_ADD, SCORE,
      bin(ATTN_EXPR_MUL, cap(0, var(ATTN_EXPR_VAR_H), NULL), bin(ATTN_EXPR_SUB, KV_IDX, Q_IDX)));
}

// The slopes of ALiBi for H heads, 2^(-8 (h + 1) / H), as an f32 capture.
static attn_tensor alibi_slopes(int64_t heads, float *storage) {
  for (int64_t h = 0; h < heads; h++)
    storage[h] = (float)pow(2.0, -8.0 * (double)(h + 1) / (double)heads);
  return (attn_tensor){ATTN_DTYPE_F32, 1, {heads}, storage};
}

// ALiBi with every mask kind, GQA, odd sizes, lse on and off, 1 and 2 threads, prefill and
// Tq < Tk, then decode (split keys), sigmoid and bf16.
static void alibi_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 11;
  expr_node_count = 0;
  float slopes[8];
  const int64_t lengths[][2] = {{37, 100}, {100, 100}, {513, 513}, {7, 130}};
  for (size_t li = 0; li < 4; li++) {
    for (int mask = 0; mask < 3; mask++) {
      attn_case c = dense(8, 2, lengths[li][0], lengths[li][1], 64);
      c.mask = (attn_cpu_attention_mask)mask;
      c.window = 50;
      c.sinks = 3;
      c.lse = (li + (size_t)mask) % 2 == 0;
      c.threads = (int)(1 + (li + (size_t)mask) % 2);
      c.score_mod = alibi();
      c.capture_count = 1;
      c.captures[0] = alibi_slopes(c.h, slopes);
      check_case(f, &c);
    }
  }
  for (int threads = 1; threads <= 2; threads++) {
    attn_case c = dense(4, 4, 1, 2000, 64);
    c.mask = ATTN_CPU_ATTENTION_MASK_CAUSAL;
    c.threads = threads;
    c.score_mod = alibi();
    c.capture_count = 1;
    c.captures[0] = alibi_slopes(c.h, slopes);
    check_case(f, &c);
  }
  attn_case c = dense(4, 2, 100, 200, 32);
  c.norm = ATTN_CPU_ATTENTION_NORM_SIGMOID;
  c.sigmoid_bias = -1.0;
  c.mask = ATTN_CPU_ATTENTION_MASK_CAUSAL;
  c.score_mod = alibi();
  c.capture_count = 1;
  c.captures[0] = alibi_slopes(c.h, slopes);
  check_case(f, &c);
  c.norm = ATTN_CPU_ATTENTION_NORM_SOFTMAX;
  c.dtype = ATTN_CPU_ATTENTION_BF16;
  check_case(f, &c);
}

// tanh(score / cap) * cap: cap 30 (Gemma 2) keeps tanh's argument small; cap 2 over larger
// logits reaches both of tanh's branches and saturation.
static void softcapping_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 12;
  expr_node_count = 0;
  const double caps[] = {30.0, 2.0};
  for (size_t ci = 0; ci < 2; ci++) {
    for (int mask = 0; mask < 3; mask++) {
      attn_case c = dense(4, 1, 37, 300, ci ? 128 : 64);
      c.mask = (attn_cpu_attention_mask)mask;
      c.window = 70;
      c.sinks = 1;
      c.threads = 1 + mask % 2;
      c.score_mod = bin(ATTN_EXPR_MUL, un(ATTN_EXPR_TANH, bin(ATTN_EXPR_DIV, SCORE, num(caps[ci]))),
                        num(caps[ci]));
      check_case(f, &c);
    }
  }
}

// score + bias[q_idx - (Tk - Tq), kv_idx] with a bias table [Tq, Tk] of f32, bf16 and f16, and
// an f32 mask tensor added after it.
static void bias_table_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 13;
  expr_node_count = 0;
  const int64_t lengths[][2] = {{37, 37}, {37, 100}, {100, 129}};
  const attn_dtype dtypes[] = {ATTN_DTYPE_F32, ATTN_DTYPE_BF16, ATTN_DTYPE_F16};
  for (size_t li = 0; li < 3; li++) {
    int64_t tq = lengths[li][0], tk = lengths[li][1];
    void *table = malloc(4 * (size_t)(tq * tk));
    assert_true(table);
    for (int mask = 0; mask < 3; mask++) {
      attn_dtype dtype = dtypes[((size_t)mask + li) % 3];
      for (int64_t i = 0; i < tq * tk; i++) {
        float x = 3.0f * random_float();
        if (dtype == ATTN_DTYPE_F32)
          ((float *)table)[i] = x;
        else if (dtype == ATTN_DTYPE_BF16)
          ((uint16_t *)table)[i] = bf16_bits(x);
        else
          ((uint16_t *)table)[i] = attn_f32_to_f16(x);
      }
      attn_case c = dense(4, 2, tq, tk, 64);
      c.mask = (attn_cpu_attention_mask)mask;
      c.window = 20;
      c.sinks = 2;
      c.threads = 1 + (int)li % 2;
      const attn_expr *row = tq == tk ? Q_IDX : bin(ATTN_EXPR_SUB, Q_IDX, num((double)(tk - tq)));
      c.score_mod = bin(ATTN_EXPR_ADD, SCORE, cap(0, row, KV_IDX));
      c.capture_count = 1;
      c.captures[0] = (attn_tensor){dtype, 2, {tq, tk}, table};
      check_case(f, &c);
      if (mask == 0) {
        c.mask_tensor = ATTN_CPU_ATTENTION_MASK_TENSOR_F32;
        c.mask_full[2] = c.mask_full[3] = true;
        check_case(f, &c);
      }
    }
    free(table);
  }
}

// doc[q_idx] == doc[kv_idx] ? score : -inf with an i64 document id per position (documents of
// 1 to 90 positions), alone and with every mask kind; then a mod that hides every key of the
// first rows, which must come out as zeros with lse -inf.
static void document_mask_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 14;
  expr_node_count = 0;
  int64_t doc[600];
  int64_t id = 0, left = 0;
  for (int64_t i = 0; i < 600; i++) {
    if (left-- <= 0) {
      id++;
      left = (int64_t)((random_float() + 1.0f) * 45.0f);
    }
    doc[i] = 1000 + 7 * id;
  }
  for (int mask = 0; mask < 3; mask++) {
    for (int shape = 0; shape < 2; shape++) {
      attn_case c = dense(4, 4, shape ? 300 : 513, shape ? 600 : 513, 64);
      c.b = 2;
      c.mask = (attn_cpu_attention_mask)mask;
      c.window = 100;
      c.sinks = 4;
      c.threads = 1 + shape;
      c.lse = true;
      c.score_mod = sel(bin(ATTN_EXPR_EQ, cap(0, Q_IDX, NULL), cap(0, KV_IDX, NULL)), SCORE,
                        num(-(double)INFINITY));
      c.capture_count = 1;
      c.captures[0] = (attn_tensor){ATTN_DTYPE_I64, 1, {c.tk}, doc};
      check_case(f, &c);
    }
  }
  attn_case c = dense(2, 1, 100, 100, 32);
  c.score_mod = sel(bin(ATTN_EXPR_LT, Q_IDX, num(20)), num(-(double)INFINITY), SCORE);
  check_case(f, &c);
}

// kv_idx <= q_idx ? score : -inf, a causal mask written as a select, with each mask kind
// beside it; one with a bool capture as the condition.
static void select_on_positions_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 15;
  expr_node_count = 0;
  for (int mask = 0; mask < 3; mask++) {
    attn_case c = dense(4, 2, 100, 177, 64);
    c.mask = (attn_cpu_attention_mask)mask;
    c.window = 40;
    c.threads = 1 + mask % 2;
    c.score_mod = sel(bin(ATTN_EXPR_LE, KV_IDX, Q_IDX), SCORE, num(-(double)INFINITY));
    check_case(f, &c);
  }
  uint8_t keep[177];
  for (int i = 0; i < 177; i++)
    keep[i] = random_float() > -0.5f ? 1 : 0;
  keep[176] = 1;
  attn_case c = dense(2, 2, 50, 177, 32);
  c.mask = ATTN_CPU_ATTENTION_MASK_CAUSAL;
  c.score_mod = sel(cap(0, KV_IDX, NULL), bin(ATTN_EXPR_MUL, SCORE, num(1.5)), num(-1e30));
  c.capture_count = 1;
  c.captures[0] = (attn_tensor){ATTN_DTYPE_BOOL, 1, {177}, keep};
  check_case(f, &c);
}

// Every unary and binary function once, with i32 and i8 captures, b and h: checks the vector
// polynomials of exp, log, tanh, sigmoid and pow inside the 1e-5 bound.
static void every_function_matches_reference(void **state) {
  fixture *f = *state;
  random_state = 16;
  expr_node_count = 0;
  int32_t shift[3] = {2, -1, 3};
  int8_t offsets[2][4] = {{1, -2, 0, 5}, {-3, 4, 1, 0}};
  const attn_expr *a_score = un(ATTN_EXPR_ABS, SCORE);
  const attn_expr *terms[] = {
      bin(ATTN_EXPR_MAX, bin(ATTN_EXPR_MIN, SCORE, num(2.5)), num(-2.5)),
      bin(ATTN_EXPR_MUL, un(ATTN_EXPR_SQRT, a_score), num(0.25)),
      un(ATTN_EXPR_NEG, bin(ATTN_EXPR_POW, un(ATTN_EXPR_SIGMOID, SCORE), num(2))),
      bin(ATTN_EXPR_MUL, un(ATTN_EXPR_LOG, bin(ATTN_EXPR_ADD, un(ATTN_EXPR_EXP, SCORE), num(1))),
          num(0.5)),
      bin(ATTN_EXPR_DIV, bin(ATTN_EXPR_POW, bin(ATTN_EXPR_ADD, a_score, num(0.5)), num(1.5)),
          num(8)),
      bin(ATTN_EXPR_MUL, un(ATTN_EXPR_TANH, bin(ATTN_EXPR_MUL, SCORE, num(0.7))), num(0.5)),
      bin(ATTN_EXPR_MUL, cap(0, var(ATTN_EXPR_VAR_B), NULL), num(0.1)),
      bin(ATTN_EXPR_MUL, cap(1, var(ATTN_EXPR_VAR_H), bin(ATTN_EXPR_SUB, KV_IDX, Q_IDX)),
          num(0.05)),
      bin(ATTN_EXPR_POW, num(0.9), bin(ATTN_EXPR_MUL, SCORE, SCORE)),
      bin(ATTN_EXPR_POW, bin(ATTN_EXPR_ADD, a_score, num(1)), num(-3)),
      bin(ATTN_EXPR_MUL, un(ATTN_EXPR_EXP, bin(ATTN_EXPR_MUL, SCORE, num(-2))), num(1e-2)),
      // exp far into overflow and underflow, inside sigmoid.
      bin(ATTN_EXPR_MUL, un(ATTN_EXPR_SIGMOID, bin(ATTN_EXPR_MUL, SCORE, num(40))), num(0.5)),
  };
  for (size_t t = 0; t < sizeof(terms) / sizeof(terms[0]); t++) {
    attn_case c = dense(2, 1, 37, 100, 32);
    c.b = 3;
    c.mask = (attn_cpu_attention_mask)(t % 3);
    c.window = 30;
    c.threads = 1 + (int)t % 2;
    c.score_mod = bin(ATTN_EXPR_ADD, SCORE, terms[t]);
    c.capture_count = 2;
    c.captures[0] = (attn_tensor){ATTN_DTYPE_I32, 1, {3}, shift};
    // Subscripts kv_idx - q_idx stay in [0, 3] only with the clamp; the reference reads the
    // clamped subscript explicitly.
    c.captures[1] = (attn_tensor){ATTN_DTYPE_I8, 2, {2, 4}, offsets};
    const attn_expr *clamped =
        bin(ATTN_EXPR_MAX, bin(ATTN_EXPR_MIN, bin(ATTN_EXPR_SUB, KV_IDX, Q_IDX), num(3)), num(0));
    if (t == 7)
      c.reference_mod = bin(ATTN_EXPR_ADD, SCORE,
                            bin(ATTN_EXPR_MUL, cap(1, var(ATTN_EXPR_VAR_H), clamped), num(0.05)));
    check_case(f, &c);
  }
  // All of them at once, with a width the kernel's vectors do not divide.
  const attn_expr *sum = SCORE;
  for (size_t t = 0; t < sizeof(terms) / sizeof(terms[0]); t++)
    if (t != 7)
      sum = bin(ATTN_EXPR_ADD, sum, terms[t]);
  attn_case c = dense(3, 1, 1, 300, 20);
  c.score_mod = sum;
  c.capture_count = 2;
  c.captures[0] = (attn_tensor){ATTN_DTYPE_I32, 1, {3}, shift};
  c.captures[1] = (attn_tensor){ATTN_DTYPE_I8, 2, {2, 4}, offsets};
  check_case(f, &c);
}

// Subscripts below 0, past the end and NaN read the first, last and first element.
static void capture_subscripts_are_clamped(void **state) {
  fixture *f = *state;
  random_state = 17;
  expr_node_count = 0;
  float table[10];
  for (int i = 0; i < 10; i++)
    table[i] = (float)i * 0.3f - 1.0f;
  attn_case c = dense(2, 1, 37, 100, 32);
  c.capture_count = 1;
  c.captures[0] = (attn_tensor){ATTN_DTYPE_F32, 1, {10}, table};
  const attn_expr *index = bin(ATTN_EXPR_SUB, KV_IDX, num(50)); // -50..49
  c.score_mod = bin(ATTN_EXPR_ADD, SCORE, cap(0, index, NULL));
  c.reference_mod =
      bin(ATTN_EXPR_ADD, SCORE,
          cap(0, bin(ATTN_EXPR_MAX, bin(ATTN_EXPR_MIN, index, num(9)), num(0)), NULL));
  check_case(f, &c);
  c.score_mod = bin(ATTN_EXPR_ADD, SCORE, cap(0, un(ATTN_EXPR_LOG, num(-1)), NULL));
  c.reference_mod = bin(ATTN_EXPR_ADD, SCORE, cap(0, num(0), NULL));
  check_case(f, &c);
}

static void bad_specs_are_rejected(void **state) {
  fixture *f = *state;
  LLVMModuleRef module = NULL;
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_attention_spec spec = {.head_dim = 64, .value_dim = 64, .vector_width = 8};
  spec.vector_width = 12;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_null(module);
  spec.vector_width = 8;
  spec.head_dim = 0;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  spec.head_dim = 64;
  spec.mask = ATTN_CPU_ATTENTION_MASK_COUNT;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  spec.mask = ATTN_CPU_ATTENTION_MASK_NONE;

  // Score mods: too many captures or dims are unsupported, malformed expressions invalid.
  expr_node_count = 0;
  spec.score_mod = alibi();
  spec.capture_count = ATTN_CPU_ATTENTION_MAX_CAPTURES + 1;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_UNSUPPORTED);
  spec.capture_count = 1;
  spec.captures[0] = (attn_cpu_attention_capture){ATTN_DTYPE_F32, 5};
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_UNSUPPORTED);
  spec.captures[0].rank = 2; // alibi() reads it with one subscript
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  spec.captures[0].rank = 1;
  spec.capture_count = 0;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  attn_expr *bad = new_expr(ATTN_EXPR_UNARY);
  bad->fn = ATTN_EXPR_ADD;
  bad->arg_count = 1;
  bad->args[0] = SCORE;
  spec.score_mod = bad;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  bad->fn = ATTN_EXPR_EXP;
  bad->args[0] = NULL;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  const attn_expr *deep = SCORE;
  for (int i = 0; i < 70; i++)
    deep = un(ATTN_EXPR_NEG, deep);
  spec.score_mod = deep;
  assert_int_equal(attn_cpu_attention_generate(&spec, &f->diag, &module, name),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_null(module);

  spec.score_mod = NULL;
  attn_cpu_attention_args args = {.batch = 1, .heads = 3, .kv_heads = 2, .tq = 1, .tk = 1};
  attn_cpu_attention_launch_spec launch = attn_attention_spec_launch(&spec);
  assert_int_equal(attn_cpu_attention_launch(NULL, &launch, &args, f->pools[0],
                                             attn_allocator_system(), &f->diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  // A capture without data or with an empty dim.
  spec.score_mod = alibi();
  spec.capture_count = 1;
  args.heads = 2;
  launch = attn_attention_spec_launch(&spec);
  assert_int_equal(attn_cpu_attention_launch(NULL, &launch, &args, f->pools[0],
                                             attn_allocator_system(), &f->diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  float slope = 1.0f;
  args.captures[0] = &slope;
  launch = attn_attention_spec_launch(&spec);
  assert_int_equal(attn_cpu_attention_launch(NULL, &launch, &args, f->pools[0],
                                             attn_allocator_system(), &f->diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
}

// The hash covers the expression's structure and the captures' dtypes and ranks, never the
// expression's address; score-mod kernels of width 16 verify.
static void score_mod_specs_hash_by_structure(void **state) {
  (void)state;
  expr_node_count = 0;
  attn_attention_spec base = {.head_dim = 64, .value_dim = 64, .vector_width = 8};
  base.score_mod = alibi();
  base.capture_count = 1;
  base.captures[0] = (attn_cpu_attention_capture){ATTN_DTYPE_F32, 1};
  attn_attention_spec same = base;
  same.score_mod = alibi(); // the same tree at other addresses
  same.captures[1] = (attn_cpu_attention_capture){ATTN_DTYPE_I8, 3}; // past the count
  assert_true(same.score_mod != base.score_mod);
  assert_true(attn_attention_spec_hash(&same) == attn_attention_spec_hash(&base));

  attn_attention_spec variants[8];
  for (int i = 0; i < 8; i++)
    variants[i] = base;
  variants[1].score_mod = NULL;
  variants[2].captures[0].dtype = ATTN_DTYPE_BF16;
  variants[3].score_mod = bin(
      ATTN_EXPR_ADD, SCORE,
      bin(ATTN_EXPR_MUL, cap(0, var(ATTN_EXPR_VAR_B), NULL), bin(ATTN_EXPR_SUB, KV_IDX, Q_IDX)));
  variants[4].score_mod = bin(
      ATTN_EXPR_ADD, SCORE,
      bin(ATTN_EXPR_MUL, cap(0, var(ATTN_EXPR_VAR_H), NULL), bin(ATTN_EXPR_SUB, Q_IDX, KV_IDX)));
  variants[5].score_mod = bin(ATTN_EXPR_MUL, SCORE, num(2.0));
  variants[6].score_mod = bin(ATTN_EXPR_MUL, SCORE, num(2.0000000001));
  variants[7].score_mod = bin(ATTN_EXPR_SUB, SCORE, num(2.0));
  for (int i = 0; i < 8; i++)
    for (int j = 0; j < i; j++)
      assert_true(attn_attention_spec_hash(&variants[i]) != attn_attention_spec_hash(&variants[j]));

  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_attention_spec wide = base;
  wide.vector_width = 16;
  wide.mask = ATTN_CPU_ATTENTION_MASK_CAUSAL;
  wide.capture_count = 2;
  wide.captures[1] = (attn_cpu_attention_capture){ATTN_DTYPE_F16, 2};
  wide.score_mod = bin(ATTN_EXPR_ADD, alibi(),
                       un(ATTN_EXPR_TANH, cap(1, Q_IDX, bin(ATTN_EXPR_POW, KV_IDX, num(0.5)))));
  LLVMModuleRef module = NULL;
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  assert_int_equal(attn_cpu_attention_generate(&wide, &diag, &module, name), ATTN_OK);
  char *message = NULL;
  if (LLVMVerifyModule(module, LLVMReturnStatusAction, &message))
    fail_msg("width 16 score-mod kernel does not verify: %s", message);
  LLVMDisposeMessage(message);
  attn_cpu_module_destroy(module);
  attn_diag_deinit(&diag);
}

// Every spec field changes the hash and the name; AVX-512 (width 16) kernels, which this host
// may not run, at least verify.
static void specs_hash_apart_and_wide_kernels_verify(void **state) {
  (void)state;
  attn_attention_spec base = {.head_dim = 64, .value_dim = 64, .vector_width = 8};
  attn_attention_spec variants[9];
  for (int i = 0; i < 9; i++)
    variants[i] = base;
  variants[1].head_dim = 128;
  variants[2].value_dim = 32;
  variants[3].mask = ATTN_CPU_ATTENTION_MASK_CAUSAL;
  variants[4].mask_tensor = ATTN_CPU_ATTENTION_MASK_TENSOR_BOOL;
  variants[5].norm = ATTN_CPU_ATTENTION_NORM_SIGMOID;
  variants[6].lse = true;
  variants[7].dtype = ATTN_CPU_ATTENTION_BF16;
  variants[8].vector_width = 16;
  for (int i = 0; i < 9; i++)
    for (int j = 0; j < i; j++)
      assert_true(attn_attention_spec_hash(&variants[i]) != attn_attention_spec_hash(&variants[j]));

  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  for (int mask = 0; mask < 3; mask++) {
    attn_attention_spec spec = {.head_dim = 80,
                                .value_dim = 64,
                                .mask = (attn_cpu_attention_mask)mask,
                                .mask_tensor = (attn_cpu_attention_mask_tensor)mask,
                                .norm = (attn_cpu_attention_norm)(mask % 2),
                                .lse = true,
                                .dtype = (attn_cpu_attention_dtype)(mask % 2),
                                .vector_width = 16};
    LLVMModuleRef module = NULL;
    char name[ATTN_CPU_KERNEL_NAME_MAX];
    assert_int_equal(attn_cpu_attention_generate(&spec, &diag, &module, name), ATTN_OK);
    assert_int_equal(strncmp(name, "attn_attention_", 15), 0);
    assert_int_equal(strlen(name), 15 + 16);
    char *message = NULL;
    LLVMBool broken = LLVMVerifyModule(module, LLVMReturnStatusAction, &message);
    if (broken)
      fail_msg("width 16 kernel does not verify: %s", message);
    LLVMDisposeMessage(message);
    assert_non_null(LLVMGetNamedFunction(module, name));
    attn_cpu_module_destroy(module);
  }
  attn_diag_deinit(&diag);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(specs_hash_apart_and_wide_kernels_verify),
      cmocka_unit_test(score_mod_specs_hash_by_structure),
      cmocka_unit_test_setup_teardown(bad_specs_are_rejected, setup, teardown),
      cmocka_unit_test_setup_teardown(odd_shapes_and_head_dims_match_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(gqa_ratios_match_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(sliding_window_with_sinks_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(mask_tensors_with_broadcast_match_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(sigmoid_and_lse_match_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(decode_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(bf16_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(alibi_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(softcapping_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(bias_table_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(document_mask_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(select_on_positions_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(every_function_matches_reference, setup, teardown),
      cmocka_unit_test_setup_teardown(capture_subscripts_are_clamped, setup, teardown),
  };
  return cmocka_run_group_tests_name("codegen/attention", tests, NULL, NULL);
}
