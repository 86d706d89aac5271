// OpenBLAS peer of the GEMM case of bench/cpu/run.sh: times cblas_sgemm, C[N,N] = A[N,N] B[N,N],
// row-major, on a given number of threads, and prints attnc bench's summary lines (the last one
// `median_ms=...`), so the driver reads every peer the same way.
//
// Build: gcc -O2 sgemm_openblas.c -o sgemm_openblas $(pkg-config --cflags --libs openblas)
// Usage: sgemm_openblas N [--iters K] [--warmup W] [--threads T]
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void openblas_set_num_threads(int);
extern char *openblas_get_config(void);

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + 1e-6 * (double)ts.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sgemm_openblas N [--iters K] [--warmup W] [--threads T]\n");
    return 2;
  }
  int n = atoi(argv[1]), iters = 5, warmup = 1, threads = 2;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--iters") == 0)
      iters = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--warmup") == 0)
      warmup = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--threads") == 0)
      threads = atoi(argv[i + 1]);
  }
  if (n < 1 || iters < 1 || warmup < 0 || threads < 1) {
    fprintf(stderr, "sgemm_openblas: bad arguments\n");
    return 2;
  }
  size_t count = (size_t)n * (size_t)n;
  size_t bytes = (count * sizeof(float) + 63) / 64 * 64; // aligned_alloc: a multiple of 64
  float *a = aligned_alloc(64, bytes);
  float *b = aligned_alloc(64, bytes);
  float *c = aligned_alloc(64, bytes);
  double *times = malloc((size_t)iters * sizeof(double));
  if (!a || !b || !c || !times) {
    fprintf(stderr, "sgemm_openblas: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < count; i++) {
    a[i] = (float)((i * 7) % 13) * 0.1f - 0.6f;
    b[i] = (float)((i * 3) % 11) * 0.1f - 0.5f;
  }
  openblas_set_num_threads(threads);
  for (int r = 0; r < warmup + iters; r++) {
    double start = now_ms();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    if (r >= warmup)
      times[r - warmup] = now_ms() - start;
  }
  qsort(times, (size_t)iters, sizeof(double), compare_doubles);
  double median = iters % 2 ? times[iters / 2] : 0.5 * (times[iters / 2 - 1] + times[iters / 2]);
  printf("openblas %s, N=%d, %d threads, %d runs after %d warmup\n", openblas_get_config(), n,
         threads, iters, warmup);
  printf("min_ms=%.3f\nmedian_ms=%.3f\n", times[0], median);
  free(a);
  free(b);
  free(c);
  free(times);
  return 0;
}
