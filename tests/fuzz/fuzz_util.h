// Shared checks for the fuzz targets: a counting allocator that must end with nothing live, and
// a second run with an allocation failing part-way that must fail cleanly.
#ifndef ATTN_TESTS_FUZZ_FUZZ_UTIL_H_
#define ATTN_TESTS_FUZZ_FUZZ_UTIL_H_

#include <stdlib.h>

#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"

// Runs `run` once normally and, when it allocated, once more with request
// `seed % total_requests` failing. The second run must end with the first run's status or
// ATTN_ERROR_OUT_OF_MEMORY. Each run must leave no live allocation, and every failure must
// have recorded an error. Aborts (so the fuzzer reports it) when a check fails.
static inline void attn_fuzz_check(attn_status (*run)(const void *input, attn_allocator allocator,
                                                      attn_diag *diag),
                                   const void *input, size_t seed) {
  attn_status first = ATTN_OK;
  size_t requests = 0;
  for (int pass = 0; pass < 2; pass++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    if (pass == 1) {
      if (requests == 0)
        break;
      counter.fail_after = (long)(seed % requests);
    }
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_status status = run(input, attn_counting_allocator_get(&counter), &diag);
    if (counter.live_blocks != 0 || counter.live_bytes != 0)
      abort();
    if (status != ATTN_OK && diag.error_count == 0)
      abort();
    if (pass == 0) {
      first = status;
      requests = counter.total_requests;
    } else if (status != first && status != ATTN_ERROR_OUT_OF_MEMORY) {
      abort();
    }
    attn_diag_deinit(&diag);
  }
}

#endif // ATTN_TESTS_FUZZ_FUZZ_UTIL_H_
