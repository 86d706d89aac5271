// Times the generated f32 GEMM through attn_cpu_gemm_launch on 1 and 2 threads, over square
// shapes and the shapes of a transformer layer's Linear layers (B transposed, a weight [N, K]),
// and, when OpenBLAS was found at configure time, cblas_sgemm on the same operands beside it.
//
//   attn_gemm_bench [--width 8|16] [--threads T] [--repeat N] [--cpu-time] [--shape MxNxK[t]]...
//
// Each --shape replaces the default list; a trailing "t" transposes B. --threads runs only that
// thread count. For each shape the best and the median of N timed runs (after one warm-up) are
// printed in GFLOP/s, and with OpenBLAS the ratio of the best times. Not a test: numbers vary
// with the machine's load.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef ATTN_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "codegen/cpu/jit.h"
#include "codegen/cpu/kernels.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/cpu/pool.h"

enum { MAX_SHAPES = 32, MAX_REPEAT = 100 };

typedef struct bench_shape {
  int64_t m, n, k;
  bool transpose_b;
} bench_shape;

typedef struct timing {
  double best, median; // seconds
} timing;

// Wall-clock time, or with --cpu-time the process's CPU time (all its threads): on a loaded
// machine the latter leaves out the time other programs held the cores.
static clockid_t timing_clock = CLOCK_MONOTONIC;

static double seconds_now(void) {
  struct timespec now;
  clock_gettime(timing_clock, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static timing summarize(double *times, int count) {
  qsort(times, (size_t)count, sizeof(double), compare_doubles);
  return (timing){times[0], times[count / 2]};
}

typedef struct attnc_run {
  attn_gemm_f32_fn fn;
  attn_gemm_call call;
  attn_pool *pool;
  attn_diag *diag;
} attnc_run;

static bool run_attnc(attnc_run *run) {
  return attn_cpu_gemm_launch(run->fn, &run->call, run->pool, run->diag) == ATTN_OK;
}

#ifdef ATTN_HAVE_OPENBLAS
static void run_openblas(const attn_gemm_call *call) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, call->transpose_b ? CblasTrans : CblasNoTrans,
              (int)call->m, (int)call->n, (int)call->k, 1.0f, call->a, (int)call->lda, call->b,
              (int)call->ldb, 0.0f, call->c, (int)call->ldc);
}
#endif

// Repeats adapted to the shape: about a second of work, within [3, repeat].
static int repeats_for(const bench_shape *shape, int repeat) {
  double flops = 2.0 * (double)shape->m * (double)shape->n * (double)shape->k;
  int count = (int)(1e11 / flops);
  count = count < 3 ? 3 : count;
  return count < repeat ? count : repeat;
}

static bool parse_shape(const char *text, bench_shape *shape) {
  long long m, n, k;
  char transpose = 0;
  int fields = sscanf(text, "%lldx%lldx%lld%c", &m, &n, &k, &transpose);
  if (fields < 3 || m < 1 || n < 1 || k < 1 || (fields == 4 && transpose != 't'))
    return false;
  *shape = (bench_shape){m, n, k, fields == 4};
  return true;
}

int main(int argc, char **argv) {
  int width = 0, repeat = 10, only_threads = 0, shape_count = 0;
  bench_shape shapes[MAX_SHAPES];
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--width") == 0 && i + 1 < argc) {
      width = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      only_threads = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--cpu-time") == 0) {
      timing_clock = CLOCK_PROCESS_CPUTIME_ID;
    } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeat = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc && shape_count < MAX_SHAPES &&
               parse_shape(argv[i + 1], &shapes[shape_count])) {
      shape_count++;
      i++;
    } else {
      fprintf(stderr,
              "usage: %s [--width 8|16] [--threads T] [--repeat N] [--cpu-time] "
              "[--shape MxNxK[t]]...\n",
              argv[0]);
      return 2;
    }
  }
  repeat = repeat < 1 ? 1 : repeat > MAX_REPEAT ? MAX_REPEAT : repeat;
  if (shape_count == 0) {
    const bench_shape defaults[] = {
        {1024, 1024, 1024, false}, {2048, 2048, 2048, false}, {4096, 4096, 4096, false},
        {512, 512, 512, true},     {512, 1536, 512, true},    {512, 2048, 512, true},
        {512, 512, 2048, true},
    };
    shape_count = (int)(sizeof(defaults) / sizeof(defaults[0]));
    memcpy(shapes, defaults, sizeof(defaults));
  }

  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_cpu_jit *jit = NULL;
  attn_pool *pools[2] = {NULL, NULL};
  int exit_code = 1;
  float *a = NULL, *b = NULL, *c = NULL;
  if (attn_cpu_jit_create(NULL, &diag, &jit) != ATTN_OK)
    goto done;
  if (width == 0)
    width = attn_cpu_features_vector_width(attn_cpu_jit_features(jit));
  attn_gemm_f32_fn kernels[2] = {NULL, NULL};
  for (int t = 0; t < 2; t++) {
    attn_gemm_spec spec = {.transpose_b = t == 1, .vector_width = width};
    LLVMModuleRef module = NULL;
    char name[ATTN_CPU_KERNEL_NAME_MAX];
    attn_cpu_jit_fn fn = NULL;
    if (attn_cpu_gemm_generate(&spec, &diag, &module, name) != ATTN_OK ||
        attn_cpu_jit_add_module_owned(jit, module) != ATTN_OK ||
        attn_cpu_jit_lookup(jit, name, &fn) != ATTN_OK)
      goto done;
    kernels[t] = (attn_gemm_f32_fn)fn;
  }
  for (int p = 0; p < 2; p++) {
    attn_pool_options options = {.thread_count = (uint32_t)(p + 1)};
    if (attn_pool_create(attn_allocator_system(), &diag, &options, &pools[p]) != ATTN_OK)
      goto done;
  }

  size_t most = 0;
  for (int s = 0; s < shape_count; s++) {
    size_t sizes[] = {(size_t)(shapes[s].m * shapes[s].k), (size_t)(shapes[s].k * shapes[s].n),
                      (size_t)(shapes[s].m * shapes[s].n)};
    for (int i = 0; i < 3; i++)
      most = sizes[i] > most ? sizes[i] : most;
  }
  a = malloc(most * sizeof(float));
  b = malloc(most * sizeof(float));
  c = malloc(most * sizeof(float));
  if (!a || !b || !c) {
    fprintf(stderr, "out of memory\n");
    goto done;
  }
  for (size_t i = 0; i < most; i++) {
    a[i] = (float)((i * 7) % 13) * 0.125f - 0.75f;
    b[i] = (float)((i * 5) % 11) * 0.125f - 0.625f;
  }

  printf("gemm f32, cpu %s, vector width %d; GFLOP/s best / median%s\n", attn_cpu_jit_cpu_name(jit),
         width, timing_clock == CLOCK_MONOTONIC ? "" : " per CPU second (process CPU time)");
#ifdef ATTN_HAVE_OPENBLAS
  printf("%-18s %7s  %15s  %15s  %9s\n", "shape (m n k)", "threads", "attnc", "openblas", "ratio");
#else
  printf("%-18s %7s  %15s   (OpenBLAS not found at configure time)\n", "shape (m n k)", "threads",
         "attnc");
#endif
  double times[MAX_REPEAT];
  for (int s = 0; s < shape_count; s++) {
    const bench_shape *shape = &shapes[s];
    double flops = 2.0 * (double)shape->m * (double)shape->n * (double)shape->k;
    int count = repeats_for(shape, repeat);
    for (int p = 0; p < 2; p++) {
      if (only_threads && only_threads != p + 1)
        continue;
      attnc_run run = {
          .fn = kernels[shape->transpose_b],
          .call = {.a = a,
                   .b = b,
                   .c = c,
                   .m = shape->m,
                   .n = shape->n,
                   .k = shape->k,
                   .lda = shape->k,
                   .ldb = shape->transpose_b ? shape->k : shape->n,
                   .ldc = shape->n,
                   .transpose_b = shape->transpose_b,
                   .batch = 1},
          .pool = pools[p],
          .diag = &diag,
      };
      if (!run_attnc(&run)) // warm-up
        goto done;
      for (int r = 0; r < count; r++) {
        double start = seconds_now();
        if (!run_attnc(&run))
          goto done;
        times[r] = seconds_now() - start;
      }
      timing attnc = summarize(times, count);
      char label[64];
      snprintf(label, sizeof(label), "%lldx%lldx%lld%s", (long long)shape->m, (long long)shape->n,
               (long long)shape->k, shape->transpose_b ? " bT" : "");
#ifdef ATTN_HAVE_OPENBLAS
      openblas_set_num_threads(p + 1);
      run_openblas(&run.call);
      for (int r = 0; r < count; r++) {
        double start = seconds_now();
        run_openblas(&run.call);
        times[r] = seconds_now() - start;
      }
      timing blas = summarize(times, count);
      printf("%-18s %7d  %6.1f / %6.1f  %6.1f / %6.1f  %8.3f\n", label, p + 1,
             flops / attnc.best * 1e-9, flops / attnc.median * 1e-9, flops / blas.best * 1e-9,
             flops / blas.median * 1e-9, blas.best / attnc.best);
#else
      printf("%-18s %7d  %6.1f / %6.1f\n", label, p + 1, flops / attnc.best * 1e-9,
             flops / attnc.median * 1e-9);
#endif
      fflush(stdout);
    }
  }
  exit_code = 0;

done:
  if (exit_code != 0)
    attn_diag_write(&diag, stderr);
  free(a);
  free(b);
  free(c);
  attn_pool_destroy(pools[0]);
  attn_pool_destroy(pools[1]);
  attn_cpu_jit_destroy(jit);
  attn_diag_deinit(&diag);
  attn_cpu_llvm_shutdown();
  return exit_code;
}
