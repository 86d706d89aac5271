// Times the generated f32 GEMM on one thread at 1024 x 1024 x 1024 and prints GFLOP/s and the
// fraction of one core's FMA peak (117 GFLOP/s on the project's machine, PEERS.md).
//
//   attn_gemm_bench [--width 8|16] [--transpose-b] [--repeat N] [--peak GFLOPS]
//
// The vector width defaults to the host's (16 with AVX-512, else 8). Not a test: numbers vary
// with the machine's load.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cpu/jit.h"
#include "codegen/cpu/kernels.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"

enum { SIZE = 1024 };

static double seconds_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int width = 0, repeat = 10;
  double peak = 117.0;
  bool transpose_b = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--width") == 0 && i + 1 < argc) {
      width = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--transpose-b") == 0) {
      transpose_b = true;
    } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
      repeat = atoi(argv[++i]);
    } else if (strcmp(argv[i], "--peak") == 0 && i + 1 < argc) {
      peak = atof(argv[++i]);
    } else {
      fprintf(stderr, "usage: %s [--width 8|16] [--transpose-b] [--repeat N] [--peak GFLOPS]\n",
              argv[0]);
      return 2;
    }
  }

  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_cpu_jit *jit = NULL;
  int exit_code = 1;
  float *a = NULL, *b = NULL, *c = NULL;
  if (attn_cpu_jit_create(NULL, &diag, &jit) != ATTN_OK)
    goto done;
  if (width == 0)
    width = attn_cpu_features_vector_width(attn_cpu_jit_features(jit));
  attn_gemm_spec spec = {.transpose_b = transpose_b, .vector_width = width};
  LLVMModuleRef module = NULL;
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_cpu_jit_fn fn = NULL;
  double compile_start = seconds_now();
  if (attn_cpu_gemm_generate(&spec, &diag, &module, name) != ATTN_OK ||
      attn_cpu_jit_add_module_owned(jit, module) != ATTN_OK ||
      attn_cpu_jit_lookup(jit, name, &fn) != ATTN_OK)
    goto done;
  double compile_seconds = seconds_now() - compile_start;
  attn_gemm_f32_fn kernel = (attn_gemm_f32_fn)fn;

  size_t count = (size_t)SIZE * SIZE;
  a = malloc(count * sizeof(float));
  b = malloc(count * sizeof(float));
  c = malloc(count * sizeof(float));
  if (!a || !b || !c) {
    fprintf(stderr, "out of memory\n");
    goto done;
  }
  for (size_t i = 0; i < count; i++) {
    a[i] = (float)((i * 7) % 13) * 0.125f - 0.75f;
    b[i] = (float)((i * 5) % 11) * 0.125f - 0.625f;
  }
  kernel(a, b, c, SIZE, SIZE, SIZE, SIZE, SIZE, SIZE, NULL, NULL, 0, 0, SIZE); // warm up
  double best = 1e30;
  for (int r = 0; r < repeat; r++) {
    double start = seconds_now();
    kernel(a, b, c, SIZE, SIZE, SIZE, SIZE, SIZE, SIZE, NULL, NULL, 0, 0, SIZE);
    double elapsed = seconds_now() - start;
    best = elapsed < best ? elapsed : best;
  }
  double gflops = 2.0 * SIZE * SIZE * SIZE / best * 1e-9;
  printf("gemm f32 %dx%dx%d%s, cpu %s, vector width %d, 1 thread: compile %.1f ms, best of %d "
         "%.2f ms, %.1f GFLOP/s = %.1f%% of %.0f GFLOP/s\n",
         SIZE, SIZE, SIZE, transpose_b ? " (b transposed)" : "", attn_cpu_jit_cpu_name(jit), width,
         compile_seconds * 1e3, repeat, best * 1e3, gflops, 100.0 * gflops / peak, peak);
  exit_code = 0;

done:
  if (exit_code != 0)
    attn_diag_write(&diag, stderr);
  free(a);
  free(b);
  free(c);
  attn_cpu_jit_destroy(jit);
  attn_diag_deinit(&diag);
  attn_cpu_llvm_shutdown();
  return exit_code;
}
