// Runs a generated f32 GEMM kernel over the thread pool: hands out whole batch items, or splits
// each item along its longer side into row ranges or column ranges (always columns when there are
// too few rows to go round, as in decode), the latter computed by the kernel through offset
// pointers; then gives the pieces to attn_pool_parallel_for.
#include <stdbool.h>
#include <stddef.h>

#include "runtime/cpu/launch.h"

// Column ranges are multiples of this many columns, a whole number of register tiles at every
// vector width and of 64-byte lines.
enum { COLUMN_GRAIN = 64 };

// One launch: the call and how each batch item is cut.
typedef struct gemm_launch {
  attn_gemm_f32_fn fn;
  const attn_gemm_call *call;
  int64_t row_pieces, row_step;       // rows per piece, a multiple of ATTN_GEMM_TILE_ROWS
  int64_t column_pieces, column_step; // columns per piece, a multiple of COLUMN_GRAIN
} gemm_launch;

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

static int64_t gcd(int64_t a, int64_t b) {
  while (b != 0) {
    int64_t rest = a % b;
    a = b;
    b = rest;
  }
  return a;
}

static int64_t round_up(int64_t a, int64_t multiple) {
  return ceil_div(a, multiple) * multiple;
}

static void run_piece(const gemm_launch *launch, int64_t piece) {
  const attn_gemm_call *call = launch->call;
  int64_t per_item = launch->row_pieces * launch->column_pieces;
  int64_t item = piece / per_item, rest = piece % per_item;
  int64_t row_begin = (rest / launch->column_pieces) * launch->row_step;
  int64_t row_end = row_begin + launch->row_step < call->m ? row_begin + launch->row_step : call->m;
  int64_t column = (rest % launch->column_pieces) * launch->column_step;
  int64_t columns = column + launch->column_step < call->n ? launch->column_step : call->n - column;
  if (row_begin >= row_end || columns <= 0)
    return;
  const float *a = call->a + item * call->batch_stride_a;
  const float *b =
      call->b + item * call->batch_stride_b + column * (call->transpose_b ? call->ldb : 1);
  float *c = call->c + item * call->batch_stride_c + column;
  const float *bias = call->bias ? call->bias + column : NULL;
  const float *residual =
      call->residual ? call->residual + item * call->batch_stride_residual + column : NULL;
  launch->fn(a, b, c, call->m, columns, call->k, call->lda, call->ldb, call->ldc, bias, residual,
             call->ldr, row_begin, row_end);
}

static attn_status run_pieces(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)thread_index;
  for (int64_t piece = begin; piece < end; piece++)
    run_piece(ctx, piece);
  return ATTN_OK;
}

attn_status attn_cpu_gemm_launch(attn_gemm_f32_fn fn, const attn_gemm_call *call, attn_pool *pool,
                                 attn_diag *diag) {
  int64_t batch = call->batch > 0 ? call->batch : 1;
  if (call->m < 0 || call->n < 0 || call->k < 0 || call->batch < 0)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "gemm launch: negative shape m=%lld n=%lld k=%lld batch=%lld",
                           (long long)call->m, (long long)call->n, (long long)call->k,
                           (long long)call->batch);
  if (!fn || !call->a || !call->b || !call->c)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "gemm launch: missing kernel or operand");
  if (call->m == 0 || call->n == 0)
    return ATTN_OK;
  int64_t threads = pool ? (int64_t)attn_pool_thread_count(pool) : 1;
  gemm_launch launch = {.fn = fn,
                        .call = call,
                        .row_pieces = 1,
                        .row_step = call->m,
                        .column_pieces = 1,
                        .column_step = call->n};
  // Pieces per batch item: enough that every thread gets work and, unless items are plenty, that
  // the pieces divide evenly among the threads. Each piece packs its own copy of the B its
  // columns need (all of k x columns) and of the A its rows need, so a row split repeats the
  // packing of B and a column split that of A: split the longer side, rows only while each piece
  // keeps at least two register tiles of them.
  int64_t wanted = batch >= 8 * threads ? 1 : threads / gcd(batch, threads);
  int64_t tiles = ceil_div(call->m, ATTN_GEMM_TILE_ROWS);
  bool by_rows = tiles >= 2 * wanted && (call->m > call->n || call->n < wanted * COLUMN_GRAIN);
  if (wanted > 1 && by_rows) {
    launch.row_step = round_up(ceil_div(call->m, wanted), ATTN_GEMM_TILE_ROWS);
    launch.row_pieces = ceil_div(call->m, launch.row_step);
  } else if (wanted > 1) {
    launch.column_step = round_up(ceil_div(call->n, wanted), COLUMN_GRAIN);
    launch.column_pieces = ceil_div(call->n, launch.column_step);
  }
  int64_t pieces = batch * launch.row_pieces * launch.column_pieces;
  if (!pool)
    return run_pieces(&launch, 0, pieces, 0);
  return attn_pool_parallel_for(pool, pieces, 1, run_pieces, &launch);
}
