// Helpers for the runtime/tensor unit tests: scratch directories, files from bytes, diagnostic
// checks and the allocation-failure sweep.
#ifndef ATTN_TESTS_UNIT_RUNTIME_RUNTIME_TEST_UTIL_H_
#define ATTN_TESTS_UNIT_RUNTIME_RUNTIME_TEST_UTIL_H_

#include <stddef.h>

#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"

// Creates a fresh directory under /tmp; the result is a static buffer until the next call.
const char *test_make_temp_dir(void);
// Removes `dir` and the plain files in it.
void test_remove_temp_dir(const char *dir);
// "dir/file" in a static buffer (one of a few that rotate).
const char *test_join(const char *dir, const char *file);
void test_write_file(const char *path, const void *bytes, size_t size);
// The whole file, malloc'ed; `*out_size` receives its length.
char *test_read_file(const char *path, size_t *out_size);

// Asserts the newest error in `diag` is at `file` and its message contains `substring`.
void test_assert_error(const attn_diag *diag, const char *file, const char *substring);

// One scenario of an allocation-failure sweep: does its work with `allocator`, releases
// everything it created, and returns the status.
typedef attn_status (*test_scenario)(attn_allocator allocator, attn_diag *diag, void *context);

// Runs `scenario` with allocation 1, 2, ... failing, until a run needs no more allocations than
// were allowed. Every run must return ATTN_OK or ATTN_ERROR_OUT_OF_MEMORY and leak nothing;
// the last must succeed. Returns how many runs failed with ATTN_ERROR_OUT_OF_MEMORY.
long test_allocation_failure_sweep(test_scenario scenario, void *context);

#endif // ATTN_TESTS_UNIT_RUNTIME_RUNTIME_TEST_UTIL_H_
