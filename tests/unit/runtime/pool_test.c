// Unit tests for runtime/cpu/pool: every index visited once for several thread counts and
// grains, chunk shapes, error propagation, nesting, thread indices, ATTN_NUM_THREADS, idle
// workers sleeping, allocation failures and a stress loop.
// Loop bodies run on worker threads, where a cmocka assertion cannot be used: they record what
// they saw in atomics, and the test thread asserts on those.
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "runtime/cpu/pool.h"
#include "runtime_test_util.h"

static const uint32_t thread_counts[] = {1, 2, 3, 8};

static attn_pool *make_pool(attn_allocator allocator, uint32_t thread_count) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_pool *pool = NULL;
  attn_pool_options options = {.thread_count = thread_count};
  attn_status status = attn_pool_create(allocator, &diag, &options, &pool);
  if (status != ATTN_OK)
    fail_msg("attn_pool_create(%u): %s", (unsigned)thread_count, attn_diag_last_error(&diag));
  attn_diag_deinit(&diag);
  assert_int_equal(attn_pool_thread_count(pool), thread_count);
  return pool;
}

static void sleep_us(long us) {
  struct timespec delay = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&delay, NULL);
}

// ---- Coverage: every index exactly once, chunks shaped as documented.

typedef struct visit_loop {
  atomic_int *visits; // per index
  int64_t count;
  int64_t grain; // as the pool sees it (≥ 1)
  uint32_t thread_count;
  atomic_int bad_chunks;
  atomic_int bad_thread_indices;
} visit_loop;

static attn_status visit(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  visit_loop *loop = ctx;
  int64_t size = end - begin;
  bool is_whole = begin == 0 && end == loop->count && loop->count < loop->grain;
  bool is_sized = size >= loop->grain && size < 2 * loop->grain;
  if (begin < 0 || end > loop->count || !(is_whole || is_sized) || (begin % loop->grain) != 0)
    atomic_fetch_add(&loop->bad_chunks, 1);
  if (thread_index >= loop->thread_count)
    atomic_fetch_add(&loop->bad_thread_indices, 1);
  for (int64_t i = begin; i < end && i >= 0 && i < loop->count; i++)
    atomic_fetch_add(&loop->visits[i], 1);
  return ATTN_OK;
}

static void run_visit_loop(attn_pool *pool, int64_t count, int64_t grain) {
  visit_loop loop = {
      .count = count, .grain = grain < 1 ? 1 : grain, .thread_count = attn_pool_thread_count(pool)};
  loop.visits = calloc(count > 0 ? (size_t)count : 1, sizeof(*loop.visits));
  assert_non_null(loop.visits);
  atomic_init(&loop.bad_chunks, 0);
  atomic_init(&loop.bad_thread_indices, 0);
  assert_int_equal(attn_pool_parallel_for(pool, count, grain, visit, &loop), ATTN_OK);
  if (atomic_load(&loop.bad_chunks) != 0 || atomic_load(&loop.bad_thread_indices) != 0)
    fail_msg("threads=%u count=%lld grain=%lld: %d badly shaped chunks, %d bad thread indices",
             (unsigned)loop.thread_count, (long long)count, (long long)grain,
             atomic_load(&loop.bad_chunks), atomic_load(&loop.bad_thread_indices));
  for (int64_t i = 0; i < count; i++)
    if (atomic_load(&loop.visits[i]) != 1)
      fail_msg("threads=%u count=%lld grain=%lld: index %lld visited %d times",
               (unsigned)loop.thread_count, (long long)count, (long long)grain, (long long)i,
               atomic_load(&loop.visits[i]));
  free(loop.visits);
}

static void every_index_is_visited_exactly_once(void **state) {
  (void)state;
  static const int64_t shapes[][2] = {
      {1, 1},    {2, 1},    {7, 3},   {7, 7},   {7, 8},    {100, 1},  {101, 7},   {997, 13},
      {1000, 0}, {999, -4}, {64, 64}, {65, 64}, {127, 64}, {4096, 5}, {10007, 1}, {10007, 333},
  };
  for (size_t t = 0; t < sizeof(thread_counts) / sizeof(thread_counts[0]); t++) {
    attn_pool *pool = make_pool(attn_allocator_system(), thread_counts[t]);
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
      run_visit_loop(pool, shapes[s][0], shapes[s][1]);
    attn_pool_destroy(pool);
  }
}

static attn_status count_calls(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)begin, (void)end, (void)thread_index;
  atomic_fetch_add((atomic_int *)ctx, 1);
  return ATTN_OK;
}

static void empty_loops_call_nothing(void **state) {
  (void)state;
  attn_pool *pool = make_pool(attn_allocator_system(), 3);
  atomic_int calls;
  atomic_init(&calls, 0);
  assert_int_equal(attn_pool_parallel_for(pool, 0, 1, count_calls, &calls), ATTN_OK);
  assert_int_equal(attn_pool_parallel_for(pool, -5, 1, count_calls, &calls), ATTN_OK);
  assert_int_equal(atomic_load(&calls), 0);
  assert_int_equal(attn_pool_parallel_for(pool, 5, 2, count_calls, &calls), ATTN_OK);
  assert_int_equal(atomic_load(&calls), 2); // [0, 2) and [2, 5)
  attn_pool_destroy(pool);
}

// ---- Errors.

typedef struct failing_loop {
  int64_t fail_at;  // the chunk starting here fails
  int64_t fail_at2; // so does this one (or -1)
  atomic_bool has_failed;
  atomic_int started_after_failure;
  atomic_llong last_begin;
  atomic_int calls;
} failing_loop;

static attn_status fail_at(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)end, (void)thread_index;
  failing_loop *loop = ctx;
  atomic_fetch_add(&loop->calls, 1);
  if (atomic_load(&loop->has_failed)) {
    atomic_fetch_add(&loop->started_after_failure, 1);
    sleep_us(100);
  }
  long long last = atomic_load(&loop->last_begin);
  while (begin > last && !atomic_compare_exchange_weak(&loop->last_begin, &last, begin)) {
  }
  if (begin == loop->fail_at) {
    atomic_store(&loop->has_failed, true);
    return ATTN_ERROR_DEVICE;
  }
  if (begin == loop->fail_at2) {
    atomic_store(&loop->has_failed, true);
    return ATTN_ERROR_IO;
  }
  return ATTN_OK;
}

static void init_failing_loop(failing_loop *loop, int64_t fail_at_begin, int64_t fail_at2) {
  loop->fail_at = fail_at_begin;
  loop->fail_at2 = fail_at2;
  atomic_init(&loop->has_failed, false);
  atomic_init(&loop->started_after_failure, 0);
  atomic_init(&loop->last_begin, -1);
  atomic_init(&loop->calls, 0);
}

static void serial_loop_stops_at_the_first_error(void **state) {
  (void)state;
  attn_pool *pool = make_pool(attn_allocator_system(), 1);
  failing_loop loop;
  init_failing_loop(&loop, 30, 60);
  assert_int_equal(attn_pool_parallel_for(pool, 100, 10, fail_at, &loop), ATTN_ERROR_DEVICE);
  assert_int_equal(atomic_load(&loop.calls), 4); // chunks 0, 10, 20, 30
  assert_int_equal(atomic_load(&loop.last_begin), 30);
  assert_int_equal(atomic_load(&loop.started_after_failure), 0);
  attn_pool_destroy(pool);
}

static void parallel_loop_returns_the_error_and_stops_starting_chunks(void **state) {
  (void)state;
  for (size_t t = 1; t < sizeof(thread_counts) / sizeof(thread_counts[0]); t++) {
    uint32_t threads = thread_counts[t];
    attn_pool *pool = make_pool(attn_allocator_system(), threads);
    for (int round = 0; round < 20; round++) {
      failing_loop loop;
      init_failing_loop(&loop, round % 7, -1);
      assert_int_equal(attn_pool_parallel_for(pool, 20000, 1, fail_at, &loop), ATTN_ERROR_DEVICE);
      // The pool records the failure when the failing chunk returns, a moment after the chunk
      // set has_failed; chunks started in that moment sleep 100 us each, so only a handful fit.
      // Without the early stop, all but a few of the 20000 chunks would start after it.
      if (atomic_load(&loop.started_after_failure) > 200)
        fail_msg("threads=%u: %d chunks started after the failure", (unsigned)threads,
                 atomic_load(&loop.started_after_failure));
      // The failure does not stick to the pool.
      atomic_int calls;
      atomic_init(&calls, 0);
      assert_int_equal(attn_pool_parallel_for(pool, 50, 1, count_calls, &calls), ATTN_OK);
      assert_int_equal(atomic_load(&calls), 50);
    }
    // Two failing chunks: one of their statuses comes back.
    failing_loop loop;
    init_failing_loop(&loop, 3, 5);
    attn_status status = attn_pool_parallel_for(pool, 8, 1, fail_at, &loop);
    assert_true(status == ATTN_ERROR_DEVICE || status == ATTN_ERROR_IO);
    attn_pool_destroy(pool);
  }
}

// ---- Nesting.

typedef struct nested_loop {
  attn_pool *pool;
  atomic_int *visits; // outer × inner
  int64_t inner_count;
  atomic_int index_mismatches;
  atomic_int inner_failures;
} nested_loop;

typedef struct inner_loop {
  nested_loop *outer;
  int64_t row;
  uint32_t thread_index;
} inner_loop;

static attn_status inner_body(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  inner_loop *inner = ctx;
  if (thread_index != inner->thread_index)
    atomic_fetch_add(&inner->outer->index_mismatches, 1);
  for (int64_t i = begin; i < end; i++)
    atomic_fetch_add(&inner->outer->visits[inner->row * inner->outer->inner_count + i], 1);
  return ATTN_OK;
}

static attn_status outer_body(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  nested_loop *outer = ctx;
  for (int64_t row = begin; row < end; row++) {
    inner_loop inner = {outer, row, thread_index};
    if (attn_pool_parallel_for(outer->pool, outer->inner_count, 3, inner_body, &inner) != ATTN_OK)
      atomic_fetch_add(&outer->inner_failures, 1);
  }
  return ATTN_OK;
}

static void nested_loops_run_serially_on_the_calling_thread(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof(thread_counts) / sizeof(thread_counts[0]); t++) {
    nested_loop loop = {.pool = make_pool(attn_allocator_system(), thread_counts[t]),
                        .inner_count = 100};
    const int64_t outer_count = 37;
    loop.visits = calloc((size_t)(outer_count * loop.inner_count), sizeof(*loop.visits));
    assert_non_null(loop.visits);
    atomic_init(&loop.index_mismatches, 0);
    atomic_init(&loop.inner_failures, 0);
    assert_int_equal(attn_pool_parallel_for(loop.pool, outer_count, 1, outer_body, &loop), ATTN_OK);
    assert_int_equal(atomic_load(&loop.index_mismatches), 0);
    assert_int_equal(atomic_load(&loop.inner_failures), 0);
    for (int64_t i = 0; i < outer_count * loop.inner_count; i++)
      assert_int_equal(atomic_load(&loop.visits[i]), 1);
    free(loop.visits);
    attn_pool_destroy(loop.pool);
  }
}

static attn_status failing_inner(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)ctx, (void)end, (void)thread_index;
  return begin == 6 ? ATTN_ERROR_UNSUPPORTED : ATTN_OK;
}

static attn_status outer_passing_inner_error(void *ctx, int64_t begin, int64_t end,
                                             uint32_t thread_index) {
  (void)end, (void)thread_index;
  attn_pool *pool = ctx;
  if (begin != 2)
    return ATTN_OK;
  return attn_pool_parallel_for(pool, 10, 2, failing_inner, NULL);
}

static void nested_error_reaches_the_outer_caller(void **state) {
  (void)state;
  attn_pool *pool = make_pool(attn_allocator_system(), 3);
  assert_int_equal(attn_pool_parallel_for(pool, 5, 1, outer_passing_inner_error, pool),
                   ATTN_ERROR_UNSUPPORTED);
  attn_pool_destroy(pool);
}

// ---- Thread indices.

typedef struct index_loop {
  uint32_t thread_count;
  atomic_int *in_use; // per thread index
  atomic_int *seen;   // per thread index
  atomic_int collisions;
  atomic_int out_of_range;
  atomic_int arrived; // for the barrier test
  atomic_int barrier_timeouts;
} index_loop;

static bool enter_index(index_loop *loop, uint32_t thread_index) {
  if (thread_index >= loop->thread_count) {
    atomic_fetch_add(&loop->out_of_range, 1);
    return false;
  }
  if (atomic_exchange(&loop->in_use[thread_index], 1) != 0)
    atomic_fetch_add(&loop->collisions, 1);
  atomic_fetch_add(&loop->seen[thread_index], 1);
  return true;
}

static attn_status use_index(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  index_loop *loop = ctx;
  if (!enter_index(loop, thread_index))
    return ATTN_OK;
  // Some work, so that chunks overlap in time.
  volatile int64_t sink = 0;
  for (int64_t i = 0; i < 200; i++)
    sink += i + begin + end;
  atomic_store(&loop->in_use[thread_index], 0);
  return ATTN_OK;
}

// Every chunk waits until all have started: the loop finishes only if every thread of the pool
// runs one chunk at the same time.
static attn_status meet_at_barrier(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)begin, (void)end;
  index_loop *loop = ctx;
  if (!enter_index(loop, thread_index))
    return ATTN_OK;
  atomic_fetch_add(&loop->arrived, 1);
  int waited_ms = 0;
  while (atomic_load(&loop->arrived) < (int)loop->thread_count && waited_ms < 20000) {
    sleep_us(1000);
    waited_ms++;
  }
  if (atomic_load(&loop->arrived) < (int)loop->thread_count)
    atomic_fetch_add(&loop->barrier_timeouts, 1);
  atomic_store(&loop->in_use[thread_index], 0);
  return ATTN_OK;
}

static void init_index_loop(index_loop *loop, uint32_t thread_count) {
  loop->thread_count = thread_count;
  loop->in_use = calloc(thread_count, sizeof(*loop->in_use));
  loop->seen = calloc(thread_count, sizeof(*loop->seen));
  assert_non_null(loop->in_use);
  assert_non_null(loop->seen);
  atomic_init(&loop->collisions, 0);
  atomic_init(&loop->out_of_range, 0);
  atomic_init(&loop->arrived, 0);
  atomic_init(&loop->barrier_timeouts, 0);
}

static void thread_indices_are_in_range_and_unique_among_running_chunks(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof(thread_counts) / sizeof(thread_counts[0]); t++) {
    uint32_t threads = thread_counts[t];
    attn_pool *pool = make_pool(attn_allocator_system(), threads);
    index_loop loop;
    init_index_loop(&loop, threads);
    for (int round = 0; round < 20; round++)
      assert_int_equal(attn_pool_parallel_for(pool, 3000, 1, use_index, &loop), ATTN_OK);
    assert_int_equal(atomic_load(&loop.out_of_range), 0);
    assert_int_equal(atomic_load(&loop.collisions), 0);
    int total = 0;
    for (uint32_t i = 0; i < threads; i++)
      total += atomic_load(&loop.seen[i]);
    assert_int_equal(total, 20 * 3000);

    // With as many chunks as threads and each chunk waiting for the others, every thread index
    // must show up once.
    index_loop barrier;
    init_index_loop(&barrier, threads);
    assert_int_equal(attn_pool_parallel_for(pool, threads, 1, meet_at_barrier, &barrier), ATTN_OK);
    assert_int_equal(atomic_load(&barrier.barrier_timeouts), 0);
    assert_int_equal(atomic_load(&barrier.collisions), 0);
    for (uint32_t i = 0; i < threads; i++)
      assert_int_equal(atomic_load(&barrier.seen[i]), 1);
    free(loop.in_use);
    free(loop.seen);
    free(barrier.in_use);
    free(barrier.seen);
    attn_pool_destroy(pool);
  }
}

// ---- 2D loops.

typedef struct grid_loop {
  int64_t rows, cols;
  atomic_int *visits;
  atomic_int bad_pieces;
} grid_loop;

static attn_status visit_grid(void *ctx, int64_t row, int64_t col_begin, int64_t col_end,
                              uint32_t thread_index) {
  (void)thread_index;
  grid_loop *grid = ctx;
  if (row < 0 || row >= grid->rows || col_begin < 0 || col_begin >= col_end ||
      col_end > grid->cols) {
    atomic_fetch_add(&grid->bad_pieces, 1);
    return ATTN_OK;
  }
  for (int64_t c = col_begin; c < col_end; c++)
    atomic_fetch_add(&grid->visits[row * grid->cols + c], 1);
  return ATTN_OK;
}

static void grid_loops_visit_every_cell_once(void **state) {
  (void)state;
  static const int64_t shapes[][3] = {{1, 1, 1},  {3, 5, 1},    {3, 5, 4}, {3, 5, 7},
                                      {7, 64, 3}, {12, 9, 100}, {5, 1, 2}, {24, 33, 32}};
  for (size_t t = 0; t < sizeof(thread_counts) / sizeof(thread_counts[0]); t++) {
    attn_pool *pool = make_pool(attn_allocator_system(), thread_counts[t]);
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
      grid_loop grid = {.rows = shapes[s][0], .cols = shapes[s][1]};
      grid.visits = calloc((size_t)(grid.rows * grid.cols), sizeof(*grid.visits));
      assert_non_null(grid.visits);
      atomic_init(&grid.bad_pieces, 0);
      assert_int_equal(
          attn_pool_parallel_for_2d(pool, grid.rows, grid.cols, shapes[s][2], visit_grid, &grid),
          ATTN_OK);
      assert_int_equal(atomic_load(&grid.bad_pieces), 0);
      for (int64_t i = 0; i < grid.rows * grid.cols; i++)
        assert_int_equal(atomic_load(&grid.visits[i]), 1);
      free(grid.visits);
    }
    atomic_int calls;
    atomic_init(&calls, 0);
    assert_int_equal(attn_pool_parallel_for_2d(pool, 0, 5, 1, visit_grid, NULL), ATTN_OK);
    assert_int_equal(attn_pool_parallel_for_2d(pool, 5, -1, 1, visit_grid, NULL), ATTN_OK);
    attn_pool_destroy(pool);
  }
}

// rows × cols beyond int64_t: each row comes whole, once. The body only records the call.
typedef struct huge_grid {
  int64_t cols;
  atomic_int row_calls[3];
  atomic_int bad_pieces;
} huge_grid;

static attn_status record_row(void *ctx, int64_t row, int64_t col_begin, int64_t col_end,
                              uint32_t thread_index) {
  (void)thread_index;
  huge_grid *grid = ctx;
  if (row < 0 || row >= 3 || col_begin != 0 || col_end != grid->cols)
    atomic_fetch_add(&grid->bad_pieces, 1);
  else
    atomic_fetch_add(&grid->row_calls[row], 1);
  return ATTN_OK;
}

static void grid_loops_too_large_to_flatten_run_whole_rows(void **state) {
  (void)state;
  for (uint32_t threads = 1; threads <= 3; threads += 2) {
    attn_pool *pool = make_pool(attn_allocator_system(), threads);
    huge_grid grid = {.cols = INT64_MAX / 2};
    for (int i = 0; i < 3; i++)
      atomic_init(&grid.row_calls[i], 0);
    atomic_init(&grid.bad_pieces, 0);
    assert_int_equal(attn_pool_parallel_for_2d(pool, 3, grid.cols, 16, record_row, &grid), ATTN_OK);
    assert_int_equal(atomic_load(&grid.bad_pieces), 0);
    for (int i = 0; i < 3; i++)
      assert_int_equal(atomic_load(&grid.row_calls[i]), 1);
    attn_pool_destroy(pool);
  }
}

// ---- Thread counts and ATTN_NUM_THREADS.

static void explicit_thread_count_wins_over_the_environment(void **state) {
  (void)state;
  assert_int_equal(setenv("ATTN_NUM_THREADS", "junk", 1), 0);
  attn_pool *pool = make_pool(attn_allocator_system(), 2);
  assert_int_equal(attn_pool_thread_count(pool), 2);
  attn_pool_destroy(pool);
  assert_int_equal(unsetenv("ATTN_NUM_THREADS"), 0);
}

static uint32_t thread_count_from_environment(const char *value) {
  if (value)
    assert_int_equal(setenv("ATTN_NUM_THREADS", value, 1), 0);
  else
    assert_int_equal(unsetenv("ATTN_NUM_THREADS"), 0);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_pool *pool = NULL;
  attn_pool_options options = {0};
  attn_status status = attn_pool_create(attn_allocator_system(), &diag, &options, &pool);
  if (status != ATTN_OK)
    fail_msg("ATTN_NUM_THREADS=%s: %s", value ? value : "(unset)", attn_diag_last_error(&diag));
  uint32_t count = attn_pool_thread_count(pool);
  attn_pool_destroy(pool);
  attn_diag_deinit(&diag);
  assert_int_equal(unsetenv("ATTN_NUM_THREADS"), 0);
  return count;
}

static void thread_count_comes_from_the_environment_or_the_cores(void **state) {
  (void)state;
  assert_int_equal(thread_count_from_environment("1"), 1);
  assert_int_equal(thread_count_from_environment("3"), 3);
  assert_int_equal(thread_count_from_environment("007"), 7);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  uint32_t expected = cores < 1 ? 1 : cores > 1024 ? 1024 : (uint32_t)cores;
  assert_int_equal(thread_count_from_environment(NULL), expected);
  // NULL options are the defaults.
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_pool *pool = NULL;
  assert_int_equal(attn_pool_create(attn_allocator_system(), &diag, NULL, &pool), ATTN_OK);
  assert_int_equal(attn_pool_thread_count(pool), expected);
  attn_pool_destroy(pool);
  attn_diag_deinit(&diag);
}

static void malformed_environment_values_are_rejected_by_name(void **state) {
  (void)state;
  static const struct {
    const char *value;
    const char *problem;
  } cases[] = {
      {"", "it is empty"},
      {"0", "it is out of range"},
      {"000", "it is out of range"},
      {"-1", "it is not a decimal integer"},
      {"-0", "it is not a decimal integer"},
      {"+4", "it is not a decimal integer"},
      {" 4", "it is not a decimal integer"},
      {"4 ", "it is not a decimal integer"},
      {"4x", "it is not a decimal integer"},
      {"abc", "it is not a decimal integer"},
      {"4.0", "it is not a decimal integer"},
      {"0x10", "it is not a decimal integer"},
      {"1025", "it is out of range"},
      {"4294967297", "it is out of range"},
      {"99999999999999999999999999", "it is out of range"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(setenv("ATTN_NUM_THREADS", cases[i].value, 1), 0);
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_pool *pool = (attn_pool *)&counter; // any non-NULL value; a failed create clears it
    assert_int_equal(attn_pool_create(attn_counting_allocator_get(&counter), &diag, NULL, &pool),
                     ATTN_ERROR_INVALID_ARGUMENT);
    assert_null(pool);
    assert_int_equal(counter.live_blocks, 0);
    char expected[160];
    snprintf(expected, sizeof(expected), "ATTN_NUM_THREADS='%s' is not a thread count: %s",
             cases[i].value, cases[i].problem);
    test_assert_error(&diag, NULL, expected);
    test_assert_error(&diag, NULL, "expected a decimal integer from 1 to 1024");
    attn_diag_deinit(&diag);
  }
  assert_int_equal(unsetenv("ATTN_NUM_THREADS"), 0);
}

static void too_many_requested_threads_are_rejected(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_pool *pool = NULL;
  attn_pool_options options = {.thread_count = ATTN_POOL_MAX_THREADS + 1};
  assert_int_equal(attn_pool_create(attn_allocator_system(), &diag, &options, &pool),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_null(pool);
  test_assert_error(&diag, NULL, "1025 threads requested; at most 1024");
  attn_diag_deinit(&diag);
}

// ---- Lifetime and memory.

static void create_and_destroy_leak_nothing(void **state) {
  (void)state;
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  for (int i = 0; i < 200; i++) {
    attn_pool *pool = make_pool(attn_counting_allocator_get(&counter), (uint32_t)(i % 8) + 1);
    assert_true(counter.live_blocks > 0);
    // Half run a loop; the others are destroyed right away, racing the workers' start.
    if (i % 2 == 0)
      run_visit_loop(pool, 31, 2);
    attn_pool_destroy(pool);
    assert_int_equal(counter.live_blocks, 0);
    assert_int_equal(counter.live_bytes, 0);
  }
  attn_pool_destroy(NULL);
}

static attn_status create_run_destroy(attn_allocator allocator, attn_diag *diag, void *context) {
  (void)context;
  attn_pool *pool = NULL;
  attn_pool_options options = {.thread_count = 3};
  attn_status status = attn_pool_create(allocator, diag, &options, &pool);
  if (status != ATTN_OK) {
    if (pool)
      fail_msg("a failed create left a pool");
    return status;
  }
  atomic_int calls;
  atomic_init(&calls, 0);
  status = attn_pool_parallel_for(pool, 9, 1, count_calls, &calls);
  attn_pool_destroy(pool);
  if (status == ATTN_OK && atomic_load(&calls) != 9)
    fail_msg("%d chunks ran, expected 9", atomic_load(&calls));
  return status;
}

static void create_survives_every_allocation_failure(void **state) {
  (void)state;
  // The pool and its worker table are the two allocations.
  assert_int_equal(test_allocation_failure_sweep(create_run_destroy, NULL), 2);
}

// An idle pool sleeps: after a loop, its workers stop spinning within microseconds, so the
// process uses almost no CPU time while the test thread sleeps.
static double process_cpu_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void idle_workers_sleep(void **state) {
  (void)state;
  attn_pool *pool = make_pool(attn_allocator_system(), 8);
  run_visit_loop(pool, 1000, 1);
  sleep_us(20000); // let the spins run out
  double before = process_cpu_seconds();
  sleep_us(300000);
  double used = process_cpu_seconds() - before;
  // Seven spinning workers would use about 2.1 s (or all the machine's cores) here.
  if (used > 0.1)
    fail_msg("an idle pool used %.3f s of CPU in 0.3 s", used);
  attn_pool_destroy(pool);
}

// ---- Stress: many tiny loops must neither hang nor lose work.

typedef struct sum_loop {
  atomic_llong sum;
} sum_loop;

static attn_status add_indices(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)thread_index;
  sum_loop *loop = ctx;
  long long sum = 0;
  for (int64_t i = begin; i < end; i++)
    sum += i;
  atomic_fetch_add(&loop->sum, sum);
  return ATTN_OK;
}

static void many_tiny_loops_complete(void **state) {
  (void)state;
  for (size_t t = 0; t < sizeof(thread_counts) / sizeof(thread_counts[0]); t++) {
    attn_pool *pool = make_pool(attn_allocator_system(), thread_counts[t]);
    for (int round = 0; round < 5000; round++) {
      int64_t count = 1 + round % 17;
      int64_t grain = 1 + round % 3;
      sum_loop loop;
      atomic_init(&loop.sum, 0);
      assert_int_equal(attn_pool_parallel_for(pool, count, grain, add_indices, &loop), ATTN_OK);
      if (atomic_load(&loop.sum) != count * (count - 1) / 2)
        fail_msg("threads=%u round %d: sum %lld, expected %lld", (unsigned)thread_counts[t], round,
                 atomic_load(&loop.sum), (long long)(count * (count - 1) / 2));
      if (round % 500 == 0) // sometimes after the workers have gone to sleep
        sleep_us(200);
    }
    attn_pool_destroy(pool);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_index_is_visited_exactly_once),
      cmocka_unit_test(empty_loops_call_nothing),
      cmocka_unit_test(serial_loop_stops_at_the_first_error),
      cmocka_unit_test(parallel_loop_returns_the_error_and_stops_starting_chunks),
      cmocka_unit_test(nested_loops_run_serially_on_the_calling_thread),
      cmocka_unit_test(nested_error_reaches_the_outer_caller),
      cmocka_unit_test(thread_indices_are_in_range_and_unique_among_running_chunks),
      cmocka_unit_test(grid_loops_visit_every_cell_once),
      cmocka_unit_test(grid_loops_too_large_to_flatten_run_whole_rows),
      cmocka_unit_test(explicit_thread_count_wins_over_the_environment),
      cmocka_unit_test(thread_count_comes_from_the_environment_or_the_cores),
      cmocka_unit_test(malformed_environment_values_are_rejected_by_name),
      cmocka_unit_test(too_many_requested_threads_are_rejected),
      cmocka_unit_test(create_and_destroy_leak_nothing),
      cmocka_unit_test(create_survives_every_allocation_failure),
      cmocka_unit_test(idle_workers_sleep),
      cmocka_unit_test(many_tiny_loops_complete),
  };
  return cmocka_run_group_tests_name("runtime/pool", tests, NULL, NULL);
}
