// Times the generated f32 attention kernel through attn_cpu_attention_launch on 1 and 2 threads
// for B=1, H=8, T in {512, 1024, 2048, 4096}, D in {64, 128}, dense and causal, and prints
// GFLOP/s (4 B H T^2 D FLOP, halved for causal) and the fraction of the FMA peak of the threads
// used.
//
//   attn_attention_bench [--peak GFLOPS_PER_CORE] [--repeat N] [--width 8|16] [--max-t T]
//
// The peak defaults to 144 GFLOP/s per core (a Zen3 core at about 4.5 GHz, 2 FMA x 8 lanes).
// Each figure is the best of N runs (default 5), with the median beside it. Not a test: numbers
// vary with the machine's load.
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
  float *q = NULL, *k = NULL, *v = NULL, *out = NULL;
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
            if (attn_cpu_attention_launch((attn_attention_fn)fn, &spec, &args, pools[threads - 1],
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
  exit_code = 0;

done:
  if (exit_code != 0)
    attn_diag_write(&diag, stderr);
  free(q);
  free(k);
  free(v);
  free(out);
  attn_pool_destroy(pools[0]);
  attn_pool_destroy(pools[1]);
  attn_cpu_jit_destroy(jit);
  attn_diag_deinit(&diag);
  return exit_code;
}
