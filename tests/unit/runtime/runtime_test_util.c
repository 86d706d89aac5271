// Helpers shared by the runtime/tensor unit tests.
#include "runtime_test_util.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

const char *test_make_temp_dir(void) {
  static char dir[64];
  snprintf(dir, sizeof(dir), "/tmp/attn_test_XXXXXX");
  assert_non_null(mkdtemp(dir));
  return dir;
}

void test_remove_temp_dir(const char *dir) {
  DIR *handle = opendir(dir);
  assert_non_null(handle);
  struct dirent *entry;
  while ((entry = readdir(handle)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
      continue;
    const char *path = test_join(dir, entry->d_name);
    if (unlink(path) != 0)
      rmdir(path);
  }
  closedir(handle);
  assert_int_equal(rmdir(dir), 0);
}

const char *test_join(const char *dir, const char *file) {
  static char buffers[4][512];
  static int next;
  char *buffer = buffers[next++ % 4];
  snprintf(buffer, sizeof(buffers[0]), "%s/%s", dir, file);
  return buffer;
}

void test_write_file(const char *path, const void *bytes, size_t size) {
  FILE *out = fopen(path, "wb");
  assert_non_null(out);
  assert_int_equal(fwrite(bytes, 1, size, out), size);
  assert_int_equal(fclose(out), 0);
}

char *test_read_file(const char *path, size_t *out_size) {
  FILE *in = fopen(path, "rb");
  assert_non_null(in);
  assert_int_equal(fseek(in, 0, SEEK_END), 0);
  long size = ftell(in);
  assert_true(size >= 0);
  rewind(in);
  char *bytes = malloc((size_t)size + 1);
  assert_non_null(bytes);
  assert_int_equal(fread(bytes, 1, (size_t)size, in), (size_t)size);
  fclose(in);
  *out_size = (size_t)size;
  return bytes;
}

void test_assert_error(const attn_diag *diag, const char *file, const char *substring) {
  const attn_diagnostic *last = NULL;
  for (size_t i = diag->count; i > 0 && !last; i--)
    if (diag->items[i - 1].severity == ATTN_SEVERITY_ERROR)
      last = &diag->items[i - 1];
  assert_non_null(last);
  if (!strstr(last->message, substring))
    fail_msg("message '%s' lacks '%s'", last->message, substring);
  if (file) {
    assert_non_null(last->loc.file);
    assert_string_equal(last->loc.file, file);
  }
}

long test_allocation_failure_sweep(test_scenario scenario, void *context) {
  long failures = 0;
  for (long fail_after = 0; fail_after < 1000000; fail_after++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    counter.fail_after = fail_after;
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_status status = scenario(attn_counting_allocator_get(&counter), &diag, context);
    if (counter.live_blocks != 0 || counter.live_bytes != 0)
      fail_msg("fail_after=%ld: %zu blocks (%zu bytes) leaked", fail_after, counter.live_blocks,
               counter.live_bytes);
    if (status != ATTN_OK && status != ATTN_ERROR_OUT_OF_MEMORY)
      fail_msg("fail_after=%ld: status %s: %s", fail_after, attn_status_name(status),
               attn_diag_last_error(&diag) ? attn_diag_last_error(&diag) : "(no message)");
    attn_diag_deinit(&diag);
    if (status == ATTN_ERROR_OUT_OF_MEMORY) {
      failures++;
      continue;
    }
    // A success that made fewer requests than allowed never met a refusal, so every failure
    // point has been covered. (With exactly fail_after requests one may have been refused and
    // absorbed; the next run settles it.)
    if ((long)counter.total_requests < fail_after)
      return failures;
  }
  fail_msg("allocation-failure sweep did not converge");
  return failures;
}
