// The JIT's disk cache: a compiled kernel is written once and found by a later JIT, which runs
// it without generating anything; damaged entries are ignored; an impossible directory fails.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "codegen/cpu/jit.h"
#include "codegen/cpu/kernels.h"
#include "runtime/base/allocator.h"

enum { M = 7, N = 11, K = 5 };

static char cache_dir[256];

static attn_cpu_jit *new_jit(attn_diag *diag) {
  attn_cpu_jit *jit = NULL;
  assert_int_equal(attn_cpu_jit_create(NULL, diag, &jit), ATTN_OK);
  assert_int_equal(attn_cpu_jit_set_cache_dir(jit, cache_dir), ATTN_OK);
  return jit;
}

static const attn_gemm_spec spec = {.bias = true, .vector_width = 8};

// Runs the GEMM `name` of `jit` on fixed data; checks it against a plain loop.
static void check_gemm(attn_cpu_jit *jit, const char *name) {
  attn_cpu_jit_fn fn;
  assert_int_equal(attn_cpu_jit_lookup(jit, name, &fn), ATTN_OK);
  float a[M * K], b[K * N], bias[N], c[M * N];
  for (int i = 0; i < M * K; i++)
    a[i] = (float)(i % 7) - 3.0f;
  for (int i = 0; i < K * N; i++)
    b[i] = (float)(i % 5) * 0.5f;
  for (int i = 0; i < N; i++)
    bias[i] = (float)i;
  ((attn_gemm_f32_fn)fn)(a, b, c, M, N, K, K, N, N, bias, NULL, 0, 0, M);
  for (int i = 0; i < M; i++)
    for (int j = 0; j < N; j++) {
      float want = bias[j];
      for (int kk = 0; kk < K; kk++)
        want += a[i * K + kk] * b[kk * N + j];
      assert_float_equal(c[i * N + j], want, 1e-4f);
    }
}

// The one file in the cache directory.
static void cache_file(char *path, size_t size) {
  char command[320];
  snprintf(command, sizeof(command), "ls %s/*.o", cache_dir);
  FILE *list = popen(command, "r");
  assert_non_null(list);
  assert_non_null(fgets(path, (int)size, list));
  path[strcspn(path, "\n")] = '\0';
  pclose(list);
}

static void test_compiled_once_then_found(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_cpu_jit *first = new_jit(&diag);
  bool found = true;
  assert_int_equal(attn_cpu_jit_add_cached(first, "attn_gemm_f32_0000000000000000", &found),
                   ATTN_OK);
  assert_false(found);
  LLVMModuleRef module;
  assert_int_equal(attn_cpu_gemm_generate(&spec, &diag, &module, name), ATTN_OK);
  assert_int_equal(attn_cpu_jit_add_module_owned(first, module), ATTN_OK);
  check_gemm(first, name);
  attn_cpu_jit_destroy(first);

  attn_cpu_jit *second = new_jit(&diag);
  assert_int_equal(attn_cpu_jit_add_cached(second, name, &found), ATTN_OK);
  assert_true(found);
  check_gemm(second, name);
  attn_cpu_jit_destroy(second);

  // A flipped byte in the object: the entry no longer checks out and is not used.
  char path[512];
  cache_file(path, sizeof(path));
  FILE *file = fopen(path, "r+b");
  assert_non_null(file);
  assert_int_equal(fseek(file, 100, SEEK_SET), 0);
  int byte = fgetc(file);
  assert_int_equal(fseek(file, 100, SEEK_SET), 0);
  fputc(byte ^ 0x40, file);
  fclose(file);
  attn_cpu_jit *third = new_jit(&diag);
  assert_int_equal(attn_cpu_jit_add_cached(third, name, &found), ATTN_OK);
  assert_false(found);
  attn_cpu_jit_destroy(third);

  // Cut short: not used either.
  assert_int_equal(truncate(path, 60), 0);
  attn_cpu_jit *fourth = new_jit(&diag);
  assert_int_equal(attn_cpu_jit_add_cached(fourth, name, &found), ATTN_OK);
  assert_false(found);
  attn_cpu_jit_destroy(fourth);
  remove(path);
  attn_diag_deinit(&diag);
}

static void test_directory_that_cannot_exist(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  char file_path[300], dir[320];
  snprintf(file_path, sizeof(file_path), "%s/plain", cache_dir);
  FILE *file = fopen(file_path, "w");
  assert_non_null(file);
  fclose(file);
  snprintf(dir, sizeof(dir), "%s/sub", file_path); // under a regular file
  attn_cpu_jit *jit = NULL;
  assert_int_equal(attn_cpu_jit_create(NULL, &diag, &jit), ATTN_OK);
  assert_int_equal(attn_cpu_jit_set_cache_dir(jit, dir), ATTN_ERROR_IO);
  assert_null(attn_cpu_jit_cache_dir(jit));
  assert_non_null(strstr(attn_diag_last_error(&diag), "kernel cache directory"));
  attn_cpu_jit_destroy(jit);
  remove(file_path);
  attn_diag_deinit(&diag);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  snprintf(cache_dir, sizeof(cache_dir), "%s/attn_jit_cache_XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(cache_dir))
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compiled_once_then_found),
      cmocka_unit_test(test_directory_that_cannot_exist),
  };
  int failures = cmocka_run_group_tests(tests, NULL, NULL);
  rmdir(cache_dir);
  return failures;
}
