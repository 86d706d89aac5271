// Times the generated f32 attention kernel through attn_cpu_attention_launch on 1 and 2 threads
// for B=1, H=8, T in {512, 1024, 2048, 4096}, D in {64, 128}, dense and causal, and prints
// GFLOP/s (4 B H T^2 D FLOP, halved for causal) and the fraction of the FMA peak of the threads
// used. Then, at T = min(2048, max T), D = 64, causal, it times score mods against the plain
// kernel (same FLOP count, so the ratio is the mod's cost): ALiBi score + slopes[h] * (kv_idx -
// q_idx), softcapping tanh(score / 30) * 30, a bias table score + bias[q_idx, kv_idx] and a
// document mask doc[q_idx] == doc[kv_idx] ? score : -inf.
//
//   attn_attention_bench [--peak GFLOPS_PER_CORE] [--repeat N] [--width 8|16] [--max-t T]
//
// The peak defaults to 144 GFLOP/s per core (a Zen3 core at about 4.5 GHz, 2 FMA x 8 lanes).
// Each figure is the best of N runs (default 5), with the median beside it. Not a test: numbers
// vary with the machine's load.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cpu/attention.h"
#include "codegen/cpu/jit.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/cpu/pool.h"

static double seconds_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

// Times `fn` on `args` over `pool` and writes the best and median seconds of `repeat` runs.
static attn_status time_runs(attn_cpu_jit_fn fn, const attn_attention_spec *spec,
                             const attn_cpu_attention_args *args, attn_pool *pool, int repeat,
                             attn_diag *diag, double *out_best, double *out_median) {
  double times[100];
  for (int r = -1; r < repeat; r++) {
    double start = seconds_now();
    attn_cpu_attention_launch_spec launch = attn_attention_spec_launch(spec);
    ATTN_RETURN_IF_ERROR(attn_cpu_attention_launch((attn_attention_fn)fn, &launch, args, pool,
                                                   attn_allocator_system(), diag));
    if (r >= 0)
      times[r] = seconds_now() - start;
  }
  qsort(times, (size_t)repeat, sizeof(double), compare_doubles);
  *out_best = times[0];
  *out_median = times[repeat / 2];
  return ATTN_OK;
}

// The score mods timed, as expression trees in static storage.
enum { MOD_PLAIN, MOD_ALIBI, MOD_SOFTCAP, MOD_BIAS, MOD_DOCUMENT, MOD_COUNT };
static const char *const mod_names[MOD_COUNT] = {"plain", "alibi", "softcap", "bias[q,kv]",
                                                 "document"};
static attn_expr mod_nodes[64];
static int mod_node_count;

static const attn_expr *node(attn_expr_kind kind, int fn, double number, int var,
                             const attn_expr *a, const attn_expr *b, const attn_expr *c) {
  attn_expr *e = &mod_nodes[mod_node_count++];
  *e = (attn_expr){.kind = kind, .number = number};
  e->var = (attn_expr_var)var;
  e->fn = (attn_expr_fn)fn;
  const attn_expr *args[] = {a, b, c};
  for (int i = 0; i < 3 && args[i]; i++)
    e->args[e->arg_count++] = args[i];
  return e;
}

#define NUM(x)       node(ATTN_EXPR_NUMBER, 0, x, 0, NULL, NULL, NULL)
#define VAR(v)       node(ATTN_EXPR_VAR, 0, 0, ATTN_EXPR_VAR_##v, NULL, NULL, NULL)
#define BIN(f, a, b) node(ATTN_EXPR_BINARY, ATTN_EXPR_##f, 0, 0, a, b, NULL)
#define CAP(a, b)    node(ATTN_EXPR_CAPTURE, 0, 0, 0, a, b, NULL)

static const attn_expr *make_mod(int mod) {
  switch (mod) {
  case MOD_ALIBI:
    return BIN(ADD, VAR(SCORE), BIN(MUL, CAP(VAR(H), NULL), BIN(SUB, VAR(KV_IDX), VAR(Q_IDX))));
  case MOD_SOFTCAP:
    return BIN(
        MUL, node(ATTN_EXPR_UNARY, ATTN_EXPR_TANH, 0, 0, BIN(DIV, VAR(SCORE), NUM(30)), NULL, NULL),
        NUM(30));
  case MOD_BIAS:
    return BIN(ADD, VAR(SCORE), CAP(VAR(Q_IDX), VAR(KV_IDX)));
  case MOD_DOCUMENT:
    return node(ATTN_EXPR_SELECT, 0, 0, 0, BIN(EQ, CAP(VAR(Q_IDX), NULL), CAP(VAR(KV_IDX), NULL)),
                VAR(SCORE), NUM(-(double)INFINITY));
  default:
    return NULL;
  }
}

int main(int argc, char **argv) {
  int width = 0, repeat = 5;
  int64_t max_t = 4096;
  double peak = 144.0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--peak") == 0 && i + 1 < argc) {
      peak = atof(argv[++i]);
    } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeat = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--width") == 0 && i + 1 < argc) {
      width = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--max-t") == 0 && i + 1 < argc) {
      max_t = atoll(argv[++i]);
    } else {
      fprintf(stderr, "usage: %s [--peak GFLOPS] [--repeat N] [--width 8|16] [--max-t T]\n",
              argv[0]);
      return 2;
    }
  }
  if (repeat < 1 || repeat > 100)
    repeat = 5;

  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_cpu_jit *jit = NULL;
  attn_pool *pools[2] = {NULL, NULL};
  float *q = NULL, *k = NULL, *v = NULL, *out = NULL, *table = NULL;
  int64_t *doc = NULL;
  int exit_code = 1;
  attn_pool_options one = {1}, two = {2};
  if (attn_cpu_jit_create(NULL, &diag, &jit) != ATTN_OK ||
      attn_pool_create(attn_allocator_system(), &diag, &one, &pools[0]) != ATTN_OK ||
      attn_pool_create(attn_allocator_system(), &diag, &two, &pools[1]) != ATTN_OK)
    goto done;
  if (width == 0)
    width = attn_cpu_features_vector_width(attn_cpu_jit_features(jit));

  const int64_t heads = 8, biggest = (int64_t)max_t * 128 * heads;
  q = malloc(sizeof(float) * (size_t)biggest);
  k = malloc(sizeof(float) * (size_t)biggest);
  v = malloc(sizeof(float) * (size_t)biggest);
  out = malloc(sizeof(float) * (size_t)biggest);
  if (!q || !k || !v || !out) {
    fprintf(stderr, "out of memory\n");
    goto done;
  }
  for (int64_t i = 0; i < biggest; i++) {
    q[i] = (float)((i * 7) % 13) * 0.125f - 0.75f;
    k[i] = (float)((i * 5) % 11) * 0.125f - 0.625f;
    v[i] = (float)((i * 3) % 7) * 0.25f - 0.75f;
  }

  printf("attention f32, B=1 H=8, vector width %d, peak %.0f GFLOP/s per core; best (median) of "
         "%d\n",
         width, peak, repeat);
  printf("%6s %4s %7s %7s %10s %10s %7s\n", "T", "D", "causal", "threads", "GFLOP/s", "median",
         "%peak");
  const int64_t dims[] = {64, 128};
  attn_cpu_jit_fn kernels[2][2];
  for (int di = 0; di < 2; di++) {
    for (int causal = 0; causal < 2; causal++) {
      attn_attention_spec spec = {.head_dim = dims[di],
                                  .value_dim = dims[di],
                                  .mask = causal ? ATTN_CPU_ATTENTION_MASK_CAUSAL
                                                 : ATTN_CPU_ATTENTION_MASK_NONE,
                                  .vector_width = width};
      LLVMModuleRef module = NULL;
      char name[ATTN_CPU_KERNEL_NAME_MAX];
      if (attn_cpu_attention_generate(&spec, &diag, &module, name) != ATTN_OK ||
          attn_cpu_jit_add_module_owned(jit, module) != ATTN_OK ||
          attn_cpu_jit_lookup(jit, name, &kernels[di][causal]) != ATTN_OK)
        goto done;
    }
  }
  for (int64_t t = 512; t <= max_t; t *= 2) {
    for (int di = 0; di < 2; di++) {
      for (int causal = 0; causal < 2; causal++) {
        int64_t d = dims[di];
        attn_attention_spec spec = {.head_dim = d,
                                    .value_dim = d,
                                    .mask = causal ? ATTN_CPU_ATTENTION_MASK_CAUSAL
                                                   : ATTN_CPU_ATTENTION_MASK_NONE,
                                    .vector_width = width};
        attn_cpu_jit_fn fn = kernels[di][causal];
        attn_cpu_attention_args args = {.q = q,
                                        .k = k,
                                        .v = v,
                                        .out = out,
                                        .batch = 1,
                                        .heads = heads,
                                        .kv_heads = heads,
                                        .tq = t,
                                        .tk = t,
                                        .scale = 0.125};
        double flop = 4.0 * (double)heads * (double)t * (double)t * (double)d;
        if (causal)
          flop *= 0.5;
        for (int threads = 1; threads <= 2; threads++) {
          double times[100];
          for (int r = -1; r < repeat; r++) {
            double start = seconds_now();
            attn_cpu_attention_launch_spec launch = attn_attention_spec_launch(&spec);
            if (attn_cpu_attention_launch((attn_attention_fn)fn, &launch, &args, pools[threads - 1],
                                          attn_allocator_system(), &diag) != ATTN_OK)
              goto done;
            if (r >= 0)
              times[r] = seconds_now() - start;
          }
          qsort(times, (size_t)repeat, sizeof(double), compare_doubles);
          double best = flop / times[0] * 1e-9, median = flop / times[repeat / 2] * 1e-9;
          printf("%6lld %4lld %7s %7d %10.1f %10.1f %6.1f%%\n", (long long)t, (long long)d,
                 causal ? "yes" : "no", threads, best, median, 100.0 * best / (peak * threads));
          fflush(stdout);
        }
      }
    }
  }

  // Score mods at one length, D = 64, causal.
  const int64_t t = max_t < 2048 ? max_t : 2048;
  float slopes[8];
  for (int h = 0; h < heads; h++)
    slopes[h] = (float)pow(2.0, -(double)(h + 1));
  table = malloc(sizeof(float) * (size_t)(t * t));
  doc = malloc(sizeof(int64_t) * (size_t)t);
  if (!table || !doc) {
    fprintf(stderr, "out of memory\n");
    goto done;
  }
  for (int64_t i = 0; i < t * t; i++)
    table[i] = (float)(i % 17) * 0.0625f - 0.5f;
  for (int64_t i = 0; i < t; i++)
    doc[i] = i / 300;
  printf("\nscore mods, T=%lld D=64 causal, GFLOP/s of the plain kernel's FLOP count\n",
         (long long)t);
  printf("%12s %7s %10s %10s %9s\n", "mod", "threads", "GFLOP/s", "median", "vs plain");
  double plain_best[2] = {0, 0};
  for (int mod = 0; mod < MOD_COUNT; mod++) {
    attn_attention_spec spec = {.head_dim = 64,
                                .value_dim = 64,
                                .mask = ATTN_CPU_ATTENTION_MASK_CAUSAL,
                                .vector_width = width,
                                .score_mod = make_mod(mod)};
    attn_cpu_attention_args args = {.q = q,
                                    .k = k,
                                    .v = v,
                                    .out = out,
                                    .batch = 1,
                                    .heads = heads,
                                    .kv_heads = heads,
                                    .tq = t,
                                    .tk = t,
                                    .scale = 0.125};
    if (mod == MOD_ALIBI) {
      spec.capture_count = 1;
      spec.captures[0] = (attn_cpu_attention_capture){ATTN_DTYPE_F32, 1};
      args.captures[0] = slopes;
      args.capture_dims[0][0] = heads;
    } else if (mod == MOD_BIAS) {
      spec.capture_count = 1;
      spec.captures[0] = (attn_cpu_attention_capture){ATTN_DTYPE_F32, 2};
      args.captures[0] = table;
      args.capture_dims[0][0] = args.capture_dims[0][1] = t;
    } else if (mod == MOD_DOCUMENT) {
      spec.capture_count = 1;
      spec.captures[0] = (attn_cpu_attention_capture){ATTN_DTYPE_I64, 1};
      args.captures[0] = doc;
      args.capture_dims[0][0] = t;
    }
    LLVMModuleRef module = NULL;
    char name[ATTN_CPU_KERNEL_NAME_MAX];
    attn_cpu_jit_fn fn = kernels[0][1]; // the plain one is the causal D = 64 kernel above
    if (mod != MOD_PLAIN && (attn_cpu_attention_generate(&spec, &diag, &module, name) != ATTN_OK ||
                             attn_cpu_jit_add_module_owned(jit, module) != ATTN_OK ||
                             attn_cpu_jit_lookup(jit, name, &fn) != ATTN_OK))
      goto done;
    double flop = 2.0 * (double)heads * (double)t * (double)t * 64.0;
    for (int threads = 1; threads <= 2; threads++) {
      double best, median;
      if (time_runs(fn, &spec, &args, pools[threads - 1], repeat, &diag, &best, &median) != ATTN_OK)
        goto done;
      double rate = flop / best * 1e-9;
      if (mod == MOD_PLAIN)
        plain_best[threads - 1] = rate;
      printf("%12s %7d %10.1f %10.1f %8.1f%%\n", mod_names[mod], threads, rate,
             flop / median * 1e-9, 100.0 * rate / plain_best[threads - 1]);
      fflush(stdout);
    }
  }
  exit_code = 0;

done:
  if (exit_code != 0)
    attn_diag_write(&diag, stderr);
  free(q);
  free(k);
  free(v);
  free(out);
  free(table);
  free(doc);
  attn_pool_destroy(pools[0]);
  attn_pool_destroy(pools[1]);
  attn_cpu_jit_destroy(jit);
  attn_diag_deinit(&diag);
  return exit_code;
}
