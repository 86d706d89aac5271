// The CPU thread pool: a fixed set of worker threads that run parallel loops for the CPU
// kernels (batch × head × query-block rows of attention, GEMM tiles). The thread that submits a
// loop takes part in it as thread 0; workers 1..N-1 claim chunks from a shared atomic counter, so
// uneven chunks (causal attention rows) balance. Between loops workers spin briefly, then sleep
// on a condition variable: an idle pool burns no core.
// Thread safety: one thread submits loops at a time (the executor that owns the pool); calls
// made from inside a running loop body, on any thread, are allowed and run serially.
#ifndef ATTN_RUNTIME_CPU_POOL_H_
#define ATTN_RUNTIME_CPU_POOL_H_

#include <stdint.h>

#include "runtime/base/diag.h"

// The most threads a pool has, and the largest accepted value of ATTN_NUM_THREADS.
#define ATTN_POOL_MAX_THREADS 1024

typedef struct attn_pool attn_pool;

typedef struct attn_pool_options {
  // Threads that run loops, the submitting thread included (so thread_count - 1 workers are
  // started). 0 takes the environment variable ATTN_NUM_THREADS when it is set, otherwise the
  // number of online cores (capped at ATTN_POOL_MAX_THREADS).
  uint32_t thread_count;
} attn_pool_options;

// A chunk [begin, end) of a loop, run on thread `thread_index` (0..thread_count-1). No two
// chunks that run at the same time share a thread_index, so it may index per-thread scratch.
// Returning anything but ATTN_OK stops the loop (see attn_pool_parallel_for); the function
// records its own message in a sink of its choosing.
typedef attn_status (*attn_pool_fn)(void *ctx, int64_t begin, int64_t end, uint32_t thread_index);

// Starts a pool. `options` may be NULL (all defaults). The pool struct and its thread table come
// from `allocator`, which must outlive the pool. Errors, recorded in `diag` (used only during
// this call): ATTN_ERROR_INVALID_ARGUMENT (options.thread_count above ATTN_POOL_MAX_THREADS, or
// ATTN_NUM_THREADS consulted and not a decimal integer from 1 to ATTN_POOL_MAX_THREADS; the
// message names the variable and its value), ATTN_ERROR_OUT_OF_MEMORY, ATTN_ERROR_DEVICE (the
// system refused a thread or a lock). On failure `*out_pool` is NULL and no thread is left.
attn_status attn_pool_create(attn_allocator allocator, attn_diag *diag,
                             const attn_pool_options *options, attn_pool **out_pool) ATTN_MUST_USE;

// Stops and joins the workers, then frees the pool. NULL is a no-op. Must not be called while a
// loop runs.
void attn_pool_destroy(attn_pool *pool);

// Threads that run loops, the submitting thread included (1..ATTN_POOL_MAX_THREADS).
uint32_t attn_pool_thread_count(const attn_pool *pool);

// Runs `fn` over [0, `count`) and returns when every chunk has finished. Chunks have `grain`
// items, except the last, which also takes the remainder (grain ≤ size < 2 × grain), and a loop
// of fewer than `grain` items, which is one chunk; `grain` < 1 is taken as 1. Chunks are handed
// out in increasing order to whichever thread is free. `count` ≤ 0 calls nothing.
// Returns the first status other than ATTN_OK that a chunk returned; once one has, no new chunk
// starts (chunks already running finish). A call from inside a running `fn` of the same pool runs
// its chunks serially on the calling thread, with that thread's index, instead of waiting for
// workers that are busy. With one thread, or one chunk, the loop runs inline on the calling
// thread without waking anyone.
attn_status attn_pool_parallel_for(attn_pool *pool, int64_t count, int64_t grain, attn_pool_fn fn,
                                   void *ctx) ATTN_MUST_USE;

// A piece of row `row` of a 2D loop: columns [col_begin, col_end), on `thread_index`.
typedef attn_status (*attn_pool_fn_2d)(void *ctx, int64_t row, int64_t col_begin, int64_t col_end,
                                       uint32_t thread_index);

// A 2D loop over `rows` × `cols` (batch × head rows and query blocks, say), flattened row-major
// into one loop of rows × cols items chunked as attn_pool_parallel_for does with `grain`. Each
// chunk calls `fn` once per row it touches, with the columns of that row inside the chunk, in
// order on one thread; so `fn` sees pieces that may be shorter than `grain`. When rows × cols
// does not fit in int64_t, chunks are whole rows instead. `rows` ≤ 0 or `cols` ≤ 0 calls nothing.
// Errors, nesting and threads as for attn_pool_parallel_for.
attn_status attn_pool_parallel_for_2d(attn_pool *pool, int64_t rows, int64_t cols, int64_t grain,
                                      attn_pool_fn_2d fn, void *ctx) ATTN_MUST_USE;

#endif // ATTN_RUNTIME_CPU_POOL_H_
