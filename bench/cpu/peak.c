// The machine's f32 FMA peak: independent chains of vector FMAs (AVX2 ymm, and AVX-512 zmm when
// the host has it) on 1 and on 2 pinned threads. Prints one JSON object per (kernel, threads)
// with the best and the median GFLOP/s of several timed repetitions; bench/cpu/run.sh records
// the figures and rates every result against the best 2-thread median.
//
// Build: gcc -O2 -pthread peak.c -o peak     (the vector code is selected at run time)
// Usage: peak [REPS [SECONDS]]     REPS timed repetitions (default 7) of about SECONDS (0.3) each
//        peak --canary [SECONDS]   one number: 2-thread FMA GFLOP/s over about SECONDS (0.05)
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 2, MAX_REPS = 64 };

static volatile float sink;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// 12 independent ymm chains (FMA latency 4 × 2 pipes needs at least 8 in flight; 12 of the 16
// registers leave room for the two operands): 12 × 8 lanes × 2 FLOP = 192 FLOP per iteration.
#define YMM_CHAINS 12
__attribute__((target("avx2,fma"))) static void fma_ymm(long iters) {
  __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  __m256 c[YMM_CHAINS];
  for (int i = 0; i < YMM_CHAINS; i++)
    c[i] = _mm256_set1_ps(0.01f * (float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
    for (int i = 0; i < YMM_CHAINS; i++)
      c[i] = _mm256_fmadd_ps(c[i], a, b);
  }
  __m256 s = c[0];
  for (int i = 1; i < YMM_CHAINS; i++)
    s = _mm256_add_ps(s, c[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  sink = out[0] + out[7];
}

// 24 independent zmm chains of the 32 registers: 24 × 16 lanes × 2 FLOP = 768 FLOP per iteration.
#define ZMM_CHAINS 24
__attribute__((target("avx512f"))) static void fma_zmm(long iters) {
  __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  __m512 c[ZMM_CHAINS];
  for (int i = 0; i < ZMM_CHAINS; i++)
    c[i] = _mm512_set1_ps(0.01f * (float)i);
  for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
    for (int i = 0; i < ZMM_CHAINS; i++)
      c[i] = _mm512_fmadd_ps(c[i], a, b);
  }
  __m512 s = c[0];
  for (int i = 1; i < ZMM_CHAINS; i++)
    s = _mm512_add_ps(s, c[i]);
  sink = _mm512_reduce_add_ps(s);
}

typedef void (*kernel_fn)(long);

typedef struct thread_arg {
  kernel_fn kernel;
  long iters;
  int cpu;
  pthread_barrier_t *barrier;
  double start, end;
} thread_arg;

static void *thread_main(void *p) {
  thread_arg *arg = p;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(arg->cpu, &set);
  sched_setaffinity(0, sizeof(set), &set); // best effort: a restricted cpuset just runs unpinned
  pthread_barrier_wait(arg->barrier);
  arg->start = now_s();
  arg->kernel(arg->iters);
  arg->end = now_s();
  return NULL;
}

// Wall seconds from the first thread's start to the last one's end.
static double run_threads(kernel_fn kernel, long iters, int threads) {
  pthread_t ids[MAX_THREADS];
  thread_arg args[MAX_THREADS];
  pthread_barrier_t barrier;
  pthread_barrier_init(&barrier, NULL, (unsigned)threads);
  for (int i = 0; i < threads; i++) {
    args[i] = (thread_arg){kernel, iters, i, &barrier, 0, 0};
    pthread_create(&ids[i], NULL, thread_main, &args[i]);
  }
  double start = 1e300, end = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(ids[i], NULL);
    start = args[i].start < start ? args[i].start : start;
    end = args[i].end > end ? args[i].end : end;
  }
  pthread_barrier_destroy(&barrier);
  return end - start;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

// Iterations that take about `seconds` on one thread.
static long calibrate(kernel_fn kernel, double seconds) {
  long iters = 1 << 16;
  for (;;) {
    double t = run_threads(kernel, iters, 1);
    if (t > 0.02)
      return (long)((double)iters * seconds / t) + 1;
    iters *= 4;
  }
}

int main(int argc, char **argv) {
  __builtin_cpu_init();
  bool has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  bool has_avx512 = __builtin_cpu_supports("avx512f");
  if (!has_avx2) {
    fprintf(stderr, "peak: this CPU has no AVX2 + FMA\n");
    return 1;
  }
  int threads_max = (int)sysconf(_SC_NPROCESSORS_ONLN) >= 2 ? 2 : 1;
  if (argc > 1 && strcmp(argv[1], "--canary") == 0) {
    double seconds = argc > 2 ? atof(argv[2]) : 0.05;
    kernel_fn kernel = has_avx512 ? fma_zmm : fma_ymm;
    double flop_per_iter = has_avx512 ? 2.0 * 16 * ZMM_CHAINS : 2.0 * 8 * YMM_CHAINS;
    long iters = (long)(seconds * 3.5e9 / (has_avx512 ? ZMM_CHAINS : YMM_CHAINS) * 2);
    double t = run_threads(kernel, iters, threads_max);
    printf("%.2f\n", flop_per_iter * (double)iters * threads_max / t * 1e-9);
    return 0;
  }
  int reps = argc > 1 ? atoi(argv[1]) : 7;
  double seconds = argc > 2 ? atof(argv[2]) : 0.3;
  if (reps < 1 || reps > MAX_REPS || !(seconds > 0)) {
    fprintf(stderr, "usage: peak [REPS (1..64) [SECONDS]] | peak --canary [SECONDS]\n");
    return 2;
  }
  struct {
    const char *name;
    kernel_fn kernel;
    double flop_per_iter;
    bool available;
  } kernels[] = {
      {"fma_ymm", fma_ymm, 2.0 * 8 * YMM_CHAINS, true},
      {"fma_zmm", fma_zmm, 2.0 * 16 * ZMM_CHAINS, has_avx512},
  };
  for (size_t k = 0; k < sizeof(kernels) / sizeof(kernels[0]); k++) {
    if (!kernels[k].available)
      continue;
    long iters = calibrate(kernels[k].kernel, seconds);
    for (int threads = 1; threads <= threads_max; threads++) {
      double gflops[MAX_REPS];
      for (int r = 0; r < reps; r++) {
        double t = run_threads(kernels[k].kernel, iters, threads);
        gflops[r] = kernels[k].flop_per_iter * (double)iters * threads / t * 1e-9;
      }
      qsort(gflops, (size_t)reps, sizeof(double), compare_doubles);
      printf("{\"kernel\": \"%s\", \"threads\": %d, \"best_gflops\": %.2f, "
             "\"median_gflops\": %.2f, \"worst_gflops\": %.2f, \"reps\": %d}\n",
             kernels[k].name, threads, gflops[reps - 1], gflops[reps / 2], gflops[0], reps);
      fflush(stdout);
    }
  }
  return 0;
}
