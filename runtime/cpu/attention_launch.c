// The host side of the CPU attention kernels: picks the work split, runs the generated function
// over the thread pool and, when the keys were split (decode), combines the partial results of
// the chunks: out = sum_s 2^(m_s - M) acc_s / sum_s 2^(m_s - M) l_s with M the largest max.
#include <math.h>
#include <string.h>

#include "runtime/cpu/launch.h"

typedef struct launch_context {
  attn_attention_fn fn;
  const attn_cpu_attention_launch_spec *spec;
  const attn_cpu_attention_args *args;
} launch_context;

static attn_status run_items(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)thread_index;
  const launch_context *launch = ctx;
  launch->fn(launch->args, begin, end);
  return ATTN_OK;
}

static uint16_t bf16_from_f32(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  if (isnan(value))
    return 0x7fc0;
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

// Rows [begin, end) of out (and lse) from the partial records of every split.
static attn_status combine_rows(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)thread_index;
  const launch_context *launch = ctx;
  const attn_cpu_attention_args *args = launch->args;
  const attn_cpu_attention_launch_spec *spec = launch->spec;
  int64_t dv = spec->value_dim, record = dv + 2, splits = args->kv_splits;
  bool sigmoid = spec->norm == ATTN_CPU_ATTENTION_NORM_SIGMOID;
  for (int64_t r = begin; r < end; r++) {
    const float *records = args->partial + r * splits * record;
    float max = -INFINITY;
    for (int64_t s = 0; s < splits; s++)
      max = records[s * record] > max ? records[s * record] : max;
    float weights[64];
    float sum = 0.0f;
    for (int64_t s = 0; s < splits; s++) {
      const float *rec = records + s * record;
      float w = max == -INFINITY || rec[0] == -INFINITY ? 0.0f : exp2f(rec[0] - max);
      sum += w * rec[1];
      weights[s] = sigmoid ? 1.0f : w;
    }
    float inverse = sigmoid ? 1.0f : sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t c = 0; c < dv; c++) {
      float acc = 0.0f;
      for (int64_t s = 0; s < splits; s++)
        acc += weights[s] * records[s * record + 2 + c];
      float value = acc * inverse;
      if (spec->dtype == ATTN_CPU_ATTENTION_BF16)
        ((uint16_t *)args->out)[r * dv + c] = bf16_from_f32(value);
      else
        ((float *)args->out)[r * dv + c] = value;
    }
    if (spec->lse)
      args->lse[r] = sum > 0.0f ? (max + log2f(sum)) * 0.69314718f : -INFINITY;
  }
  return ATTN_OK;
}

enum { MAX_SPLITS = 64, ROW_VECTORS = 3, ROW_TILES = 2 };

int64_t attn_cpu_attention_block_rows(int vector_width) {
  return (int64_t)ROW_VECTORS * ROW_TILES * vector_width;
}

int64_t attn_cpu_attention_item_count(const attn_cpu_attention_launch_spec *spec,
                                      const attn_cpu_attention_args *args) {
  int64_t rows = attn_cpu_attention_block_rows(spec->vector_width);
  int64_t splits = args->kv_splits > 1 ? args->kv_splits : 1;
  return args->batch * args->heads * ((args->tq + rows - 1) / rows) * splits;
}

attn_status attn_cpu_attention_launch(attn_attention_fn fn,
                                      const attn_cpu_attention_launch_spec *spec,
                                      const attn_cpu_attention_args *args, attn_pool *pool,
                                      attn_allocator allocator, attn_diag *diag) {
  if (args->batch < 0 || args->heads < 0 || args->kv_heads < 1 || args->tq < 0 || args->tk < 0 ||
      args->heads % args->kv_heads != 0)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "attention: bad shape (B %lld, H %lld, Hkv %lld, Tq %lld, Tk %lld)",
                           (long long)args->batch, (long long)args->heads,
                           (long long)args->kv_heads, (long long)args->tq, (long long)args->tk);
  {
    for (uint32_t c = 0; c < spec->capture_count && c < ATTN_CPU_ATTENTION_MAX_CAPTURES; c++) {
      bool empty = !args->captures[c];
      for (uint32_t d = 0; d < spec->capture_ranks[c] && d < ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK;
           d++)
        empty = empty || args->capture_dims[c][d] < 1;
      if (empty)
        return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                               "attention: capture %u of the score mod has no data or an empty "
                               "dim",
                               c);
    }
  }
  attn_cpu_attention_args run = *args;
  run.kv_splits = 1;
  run.kv_chunk = args->tk;
  run.partial = NULL;
  int64_t rows = attn_cpu_attention_block_rows(spec->vector_width);
  int64_t blocks = args->batch * args->heads * ((args->tq + rows - 1) / rows);
  int64_t threads = attn_pool_thread_count(pool);
  // Decode: too few query blocks to give every thread four items, and keys enough for chunks of
  // at least two key blocks each.
  if (blocks > 0 && blocks < 4 * threads) {
    int64_t splits = (4 * threads + blocks - 1) / blocks;
    int64_t most = args->tk / (2 * ATTN_CPU_ATTENTION_BLOCK_KEYS);
    splits = splits < most ? splits : most;
    splits = splits < MAX_SPLITS ? splits : MAX_SPLITS;
    if (splits > 1) {
      int64_t chunk = (args->tk + splits - 1) / splits;
      chunk = (chunk + ATTN_CPU_ATTENTION_BLOCK_KEYS - 1) / ATTN_CPU_ATTENTION_BLOCK_KEYS *
              ATTN_CPU_ATTENTION_BLOCK_KEYS;
      run.kv_chunk = chunk;
      run.kv_splits = (args->tk + chunk - 1) / chunk;
    }
  }
  launch_context launch = {fn, spec, &run};
  if (run.kv_splits <= 1)
    return attn_pool_parallel_for(pool, attn_cpu_attention_item_count(spec, &run), 1, run_items,
                                  &launch);

  int64_t row_count = args->batch * args->heads * args->tq;
  size_t size =
      (size_t)row_count * (size_t)run.kv_splits * (size_t)(spec->value_dim + 2) * sizeof(float);
  run.partial = attn_allocator_alloc(allocator, size);
  if (!run.partial)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                           "attention: out of memory for %zu bytes of partial results", size);
  attn_status status = attn_pool_parallel_for(pool, attn_cpu_attention_item_count(spec, &run), 1,
                                              run_items, &launch);
  if (status == ATTN_OK) {
    int64_t grain = row_count / (4 * threads);
    status = attn_pool_parallel_for(pool, row_count, grain > 1 ? grain : 1, combine_rows, &launch);
  }
  attn_allocator_free(allocator, run.partial, size);
  return status;
}
