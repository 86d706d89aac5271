// The CPU thread pool. One loop (a "job") runs at a time. The submitter writes the job, then
// publishes it by storing a new job word: a generation number with, in the low bits, how many
// workers take part (1..participants do; the rest go back to waiting). Participants and the
// submitter claim chunks with one atomic counter; the submitter then waits until every
// participant has checked out. Because a job cannot finish before all its participants are done
// with it, the job fields are never rewritten while a worker still reads them.
// Waiting (for a job, or for workers) spins for a few microseconds, then sleeps on a condition
// variable; the mutex guards only those sleeps, never the chunk work.
#include "runtime/cpu/pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// The low bits of the job word count the participating workers (at most
// ATTN_POOL_MAX_THREADS - 1); the generation sits above them.
#define PARTICIPANT_BITS 11
#define PARTICIPANT_MASK ((UINT64_C(1) << PARTICIPANT_BITS) - 1)
_Static_assert(ATTN_POOL_MAX_THREADS - 1 <= PARTICIPANT_MASK, "participants fit the job word");

// Polls before sleeping: at roughly 30-100 ns per pause, a few tens of microseconds. That covers
// the gap between the kernels of one graph, so back-to-back loops do not pay a futex wake-up.
#define SPIN_COUNT 1000

typedef struct pool_worker {
  attn_pool *pool;
  pthread_t thread;
  uint32_t index; // 1..thread_count-1; the submitter is 0
} pool_worker;

struct attn_pool {
  attn_allocator allocator;
  uint32_t thread_count;
  uint32_t started_count; // workers running, ≤ thread_count - 1
  pool_worker *workers;   // thread_count - 1 entries; NULL with one thread

  pthread_mutex_t mutex;
  pthread_cond_t wake; // workers sleep here until the job word changes
  pthread_cond_t done; // the submitter sleeps here until `pending` is 0
  atomic_bool is_stopping;

  // The current job: written by the submitter before it stores job_word (release), read by the
  // participants after they load it (acquire).
  attn_pool_fn fn;
  void *ctx;
  int64_t count;
  int64_t grain;
  int64_t chunk_count;
  _Atomic uint64_t job_word;
  _Atomic int64_t next_chunk;
  atomic_int status;   // the first failure, or ATTN_OK
  atomic_uint pending; // participants not yet done with the job
};

// The pool whose `fn` this thread is running, and the thread's index in it; a parallel_for
// seeing its own pool here is nested and runs serially.
static _Thread_local const attn_pool *current_pool;
static _Thread_local uint32_t current_thread_index;

static void cpu_relax(void) {
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
  __builtin_ia32_pause();
#endif
}

static int64_t chunk_end(const attn_pool *pool, int64_t chunk, int64_t begin) {
  return chunk == pool->chunk_count - 1 ? pool->count : begin + pool->grain;
}

// Claims and runs chunks of the current job until none is left or one has failed.
static void run_chunks(attn_pool *pool, uint32_t thread_index) {
  for (;;) {
    if (atomic_load(&pool->status) != ATTN_OK)
      return;
    int64_t chunk = atomic_fetch_add_explicit(&pool->next_chunk, 1, memory_order_relaxed);
    if (chunk >= pool->chunk_count)
      return;
    int64_t begin = chunk * pool->grain;
    attn_status status = pool->fn(pool->ctx, begin, chunk_end(pool, chunk, begin), thread_index);
    if (status != ATTN_OK) {
      int expected = ATTN_OK;
      atomic_compare_exchange_strong(&pool->status, &expected, (int)status);
      return;
    }
  }
}

// Returns the first job word different from `seen`.
static uint64_t wait_for_job(attn_pool *pool, uint64_t seen) {
  for (int spin = 0; spin < SPIN_COUNT; spin++) {
    uint64_t word = atomic_load_explicit(&pool->job_word, memory_order_acquire);
    if (word != seen)
      return word;
    cpu_relax();
  }
  pthread_mutex_lock(&pool->mutex);
  uint64_t word;
  while ((word = atomic_load_explicit(&pool->job_word, memory_order_acquire)) == seen)
    pthread_cond_wait(&pool->wake, &pool->mutex);
  pthread_mutex_unlock(&pool->mutex);
  return word;
}

static void *worker_main(void *arg) {
  const pool_worker *worker = arg;
  attn_pool *pool = worker->pool;
  current_pool = pool;
  current_thread_index = worker->index;
  uint64_t seen = 0;
  for (;;) {
    seen = wait_for_job(pool, seen);
    if (atomic_load(&pool->is_stopping))
      return NULL;
    if (worker->index > (seen & PARTICIPANT_MASK))
      continue;
    run_chunks(pool, worker->index);
    if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
      // Taken so the signal cannot fall between the submitter's check and its wait.
      pthread_mutex_lock(&pool->mutex);
      pthread_cond_signal(&pool->done);
      pthread_mutex_unlock(&pool->mutex);
    }
  }
}

// Stores a new job word with `participants` and wakes the sleeping workers.
static void publish(attn_pool *pool, uint32_t participants) {
  pthread_mutex_lock(&pool->mutex);
  uint64_t generation =
      (atomic_load_explicit(&pool->job_word, memory_order_relaxed) >> PARTICIPANT_BITS) + 1;
  atomic_store_explicit(&pool->job_word, generation << PARTICIPANT_BITS | participants,
                        memory_order_release);
  pthread_cond_broadcast(&pool->wake);
  pthread_mutex_unlock(&pool->mutex);
}

static void wait_for_participants(attn_pool *pool) {
  for (int spin = 0; spin < SPIN_COUNT; spin++) {
    if (atomic_load_explicit(&pool->pending, memory_order_acquire) == 0)
      return;
    cpu_relax();
  }
  pthread_mutex_lock(&pool->mutex);
  while (atomic_load_explicit(&pool->pending, memory_order_acquire) != 0)
    pthread_cond_wait(&pool->done, &pool->mutex);
  pthread_mutex_unlock(&pool->mutex);
}

// Runs every chunk on this thread, in order, stopping at the first failure.
static attn_status run_serially(const attn_pool *pool, int64_t count, int64_t grain,
                                int64_t chunk_count, attn_pool_fn fn, void *ctx,
                                uint32_t thread_index) {
  const attn_pool *outer_pool = current_pool;
  uint32_t outer_index = current_thread_index;
  current_pool = pool;
  current_thread_index = thread_index;
  attn_status status = ATTN_OK;
  for (int64_t chunk = 0; chunk < chunk_count && status == ATTN_OK; chunk++) {
    int64_t begin = chunk * grain;
    status = fn(ctx, begin, chunk == chunk_count - 1 ? count : begin + grain, thread_index);
  }
  current_pool = outer_pool;
  current_thread_index = outer_index;
  return status;
}

attn_status attn_pool_parallel_for(attn_pool *pool, int64_t count, int64_t grain, attn_pool_fn fn,
                                   void *ctx) {
  if (count <= 0)
    return ATTN_OK;
  if (grain < 1)
    grain = 1;
  int64_t chunk_count = count / grain > 0 ? count / grain : 1;
  if (current_pool == pool)
    return run_serially(pool, count, grain, chunk_count, fn, ctx, current_thread_index);
  if (pool->thread_count == 1 || chunk_count == 1)
    return run_serially(pool, count, grain, chunk_count, fn, ctx, 0);

  uint32_t participants = pool->thread_count - 1;
  if (chunk_count - 1 < (int64_t)participants)
    participants = (uint32_t)(chunk_count - 1);
  pool->fn = fn;
  pool->ctx = ctx;
  pool->count = count;
  pool->grain = grain;
  pool->chunk_count = chunk_count;
  atomic_store_explicit(&pool->next_chunk, 0, memory_order_relaxed);
  atomic_store_explicit(&pool->status, ATTN_OK, memory_order_relaxed);
  atomic_store_explicit(&pool->pending, participants, memory_order_relaxed);
  publish(pool, participants);

  const attn_pool *outer_pool = current_pool;
  uint32_t outer_index = current_thread_index;
  current_pool = pool;
  current_thread_index = 0;
  run_chunks(pool, 0);
  current_pool = outer_pool;
  current_thread_index = outer_index;

  wait_for_participants(pool);
  return (attn_status)atomic_load(&pool->status);
}

// ---- 2D loops: a row-major flattening onto the 1D loop.

typedef struct loop_2d {
  attn_pool_fn_2d fn;
  void *ctx;
  int64_t cols;
} loop_2d;

// Splits the flat chunk [begin, end) at row boundaries.
static attn_status run_flat_chunk_2d(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  const loop_2d *loop = ctx;
  int64_t row = begin / loop->cols;
  int64_t col = begin % loop->cols;
  while (begin < end) {
    int64_t col_end = end - begin < loop->cols - col ? col + (end - begin) : loop->cols;
    ATTN_RETURN_IF_ERROR(loop->fn(loop->ctx, row, col, col_end, thread_index));
    begin += col_end - col;
    row++;
    col = 0;
  }
  return ATTN_OK;
}

static attn_status run_rows_2d(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  const loop_2d *loop = ctx;
  for (int64_t row = begin; row < end; row++)
    ATTN_RETURN_IF_ERROR(loop->fn(loop->ctx, row, 0, loop->cols, thread_index));
  return ATTN_OK;
}

attn_status attn_pool_parallel_for_2d(attn_pool *pool, int64_t rows, int64_t cols, int64_t grain,
                                      attn_pool_fn_2d fn, void *ctx) {
  if (rows <= 0 || cols <= 0)
    return ATTN_OK;
  if (grain < 1)
    grain = 1;
  loop_2d loop = {fn, ctx, cols};
  if (rows <= INT64_MAX / cols)
    return attn_pool_parallel_for(pool, rows * cols, grain, run_flat_chunk_2d, &loop);
  // Each row has more than INT64_MAX / rows items here, so whole rows are fine chunks.
  return attn_pool_parallel_for(pool, rows, 1 + (grain - 1) / cols, run_rows_2d, &loop);
}

// ---- Creation and destruction.

// Parses a value of ATTN_NUM_THREADS: decimal digits only, 1..ATTN_POOL_MAX_THREADS.
static attn_status parse_thread_count(attn_diag *diag, const char *value, uint32_t *out_count) {
  const char *problem = NULL;
  uint32_t count = 0;
  if (value[0] == '\0')
    problem = "it is empty";
  for (const char *p = value; *p && !problem; p++) {
    if (*p < '0' || *p > '9')
      problem = "it is not a decimal integer";
    else if ((count = count * 10 + (uint32_t)(*p - '0')) > ATTN_POOL_MAX_THREADS)
      problem = "it is out of range";
  }
  if (!problem && count == 0)
    problem = "it is out of range";
  if (problem)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "ATTN_NUM_THREADS='%s' is not a thread count: %s (expected a decimal "
                           "integer from 1 to %d)",
                           value, problem, ATTN_POOL_MAX_THREADS);
  *out_count = count;
  return ATTN_OK;
}

static attn_status resolve_thread_count(attn_diag *diag, const attn_pool_options *options,
                                        uint32_t *out_count) {
  uint32_t requested = options ? options->thread_count : 0;
  if (requested > ATTN_POOL_MAX_THREADS)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "thread pool: %u threads requested; at most %d are supported",
                           (unsigned)requested, ATTN_POOL_MAX_THREADS);
  if (requested > 0) {
    *out_count = requested;
    return ATTN_OK;
  }
  const char *value = getenv("ATTN_NUM_THREADS");
  if (value)
    return parse_thread_count(diag, value, out_count);
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  *out_count = cores < 1                       ? 1
               : cores > ATTN_POOL_MAX_THREADS ? ATTN_POOL_MAX_THREADS
                                               : (uint32_t)cores;
  return ATTN_OK;
}

// Tells the started workers to leave, and joins them.
static void stop_workers(attn_pool *pool) {
  if (pool->started_count == 0)
    return;
  atomic_store(&pool->is_stopping, true);
  publish(pool, 0);
  for (uint32_t i = 0; i < pool->started_count; i++)
    pthread_join(pool->workers[i].thread, NULL);
  pool->started_count = 0;
}

// Starts workers 1..thread_count-1 with every signal blocked, so that signals meant for the
// process go to the embedder's threads, never to a worker.
static attn_status start_workers(attn_pool *pool, attn_diag *diag) {
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &previous);
  int error = 0;
  for (uint32_t i = 0; i + 1 < pool->thread_count && error == 0; i++) {
    pool_worker *worker = &pool->workers[i];
    *worker = (pool_worker){.pool = pool, .index = i + 1};
    error = pthread_create(&worker->thread, NULL, worker_main, worker);
    if (error == 0)
      pool->started_count++;
  }
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  if (error != 0)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                           "thread pool: cannot start worker thread %u of %u: %s",
                           (unsigned)pool->started_count + 1, (unsigned)pool->thread_count - 1,
                           strerror(error));
  return ATTN_OK;
}

attn_status attn_pool_create(attn_allocator allocator, attn_diag *diag,
                             const attn_pool_options *options, attn_pool **out_pool) {
  *out_pool = NULL;
  uint32_t thread_count = 0;
  ATTN_RETURN_IF_ERROR(resolve_thread_count(diag, options, &thread_count));

  attn_pool *pool = attn_allocator_calloc(allocator, 1, sizeof(*pool));
  if (!pool)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                           "thread pool: out of memory");
  pool->allocator = allocator;
  pool->thread_count = thread_count;
  atomic_init(&pool->is_stopping, false);
  atomic_init(&pool->job_word, 0);
  atomic_init(&pool->next_chunk, 0);
  atomic_init(&pool->status, ATTN_OK);
  atomic_init(&pool->pending, 0);

  attn_status status = ATTN_OK;
  int error = 0;
  bool has_mutex = false, has_wake = false, has_done = false;
  if (thread_count > 1) {
    pool->workers = attn_allocator_calloc(allocator, thread_count - 1, sizeof(*pool->workers));
    if (!pool->workers) {
      status =
          attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                          "thread pool: out of memory for %u workers", (unsigned)thread_count - 1);
      goto cleanup;
    }
  }
  error = pthread_mutex_init(&pool->mutex, NULL);
  has_mutex = error == 0;
  if (error == 0)
    has_wake = (error = pthread_cond_init(&pool->wake, NULL)) == 0;
  if (error == 0)
    has_done = (error = pthread_cond_init(&pool->done, NULL)) == 0;
  if (error != 0) {
    status = attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                             "thread pool: cannot create a lock: %s", strerror(error));
    goto cleanup;
  }
  status = start_workers(pool, diag);

cleanup:
  if (status == ATTN_OK) {
    *out_pool = pool;
    return ATTN_OK;
  }
  stop_workers(pool);
  if (has_done)
    pthread_cond_destroy(&pool->done);
  if (has_wake)
    pthread_cond_destroy(&pool->wake);
  if (has_mutex)
    pthread_mutex_destroy(&pool->mutex);
  if (pool->workers)
    attn_allocator_free(allocator, pool->workers, (thread_count - 1) * sizeof(*pool->workers));
  attn_allocator_free(allocator, pool, sizeof(*pool));
  return status;
}

void attn_pool_destroy(attn_pool *pool) {
  if (!pool)
    return;
  stop_workers(pool);
  pthread_cond_destroy(&pool->done);
  pthread_cond_destroy(&pool->wake);
  pthread_mutex_destroy(&pool->mutex);
  if (pool->workers)
    attn_allocator_free(pool->allocator, pool->workers,
                        (pool->thread_count - 1) * sizeof(*pool->workers));
  attn_allocator_free(pool->allocator, pool, sizeof(*pool));
}

uint32_t attn_pool_thread_count(const attn_pool *pool) {
  return pool->thread_count;
}
