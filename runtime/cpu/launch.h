// The calling conventions of the CPU kernels the compiler generates, and the host side that runs
// them over the thread pool: how a GEMM is cut into pieces, how attention's work items are split
// (and, for decode, its keys), and the combination of split results. The compiler's generators
// (codegen/cpu) produce functions of these types; the executor (runtime/exec) and the compiler's
// tests call them through these launchers. Nothing here depends on LLVM.
#ifndef ATTN_RUNTIME_CPU_LAUNCH_H_
#define ATTN_RUNTIME_CPU_LAUNCH_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"
#include "runtime/cpu/pool.h"

// ---------------------------------------------------------------------------------------------
// f32 GEMM with a fused epilogue.
//
// The generated function has the type attn_gemm_f32_fn and computes, for rows i in
// [row_begin, row_end) of an m x n result and every column j in [0, n),
//   c[i * ldc + j] = act(sum_kk A[i, kk] * B[kk, j] + bias[j]) + residual[i * ldr + j]
// (or times the residual, with residual_op MUL: the gate of a gated MLP, silu(x W) * u)
// where A[i, kk] = a[i * lda + kk], or a[kk * lda + i] with transpose_a (a is k x m);
//       B[kk, j] = b[kk * ldb + j], or b[j * ldb + kk] with transpose_b (b is n x k, the layout
//                  of a Linear layer's weight);
// and the bias, the activation and the residual are present only when the spec says so (the
// pointers of absent ones are ignored and may be NULL). Each element accumulates its k products
// in order with fused multiply-adds, in f32. Nothing outside those rows and columns of c is
// written, so threads may split [0, m) into row ranges (and, by offsetting b, c, bias and
// residual, [0, n) into column ranges: attn_cpu_gemm_launch does both). `m` bounds nothing but
// documents the shape; rows must satisfy 0 <= row_begin <= row_end <= m. c must not overlap a, b
// or bias. It may be the residual itself (residual == c and ldr == ldc: an in-place residual
// add), but must not overlap it otherwise: c holds partial sums between k blocks, so in place the
// kernel first copies each block of the residual it will overwrite. The kernel is reentrant;
// its scratch is on the stack, probed page by page: the packed A and B and the residual copy,
// 2.3 MiB at vector width 8 and 1.4 MiB at 16, so it needs threads with the usual 8 MiB stacks.
//
// The rows of the generated GEMM's register tile; the launcher cuts row ranges in whole tiles.
#define ATTN_GEMM_TILE_ROWS 6

typedef void (*attn_gemm_f32_fn)(const float *a, const float *b, float *c, int64_t m, int64_t n,
                                 int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                                 const float *bias, const float *residual, int64_t ldr,
                                 int64_t row_begin, int64_t row_end);

// One GEMM, or a batch of them, for attn_cpu_gemm_launch: the kernel's arguments (kernels.h
// above), minus the row range, plus what splitting needs. Batch item `i` (0 <= i < batch) reads
// a + i * batch_stride_a, b + i * batch_stride_b and residual + i * batch_stride_residual and
// writes c + i * batch_stride_c (strides in elements; 0 repeats an operand, a weight shared by
// the batch, say). bias is shared by every item.
typedef struct attn_gemm_call {
  const float *a, *b;
  float *c;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  const float *bias;     // NULL when the kernel's spec has no bias
  const float *residual; // NULL when it has none; may be c itself (with ldr == ldc)
  int64_t ldr;
  bool transpose_b; // the kernel's spec.transpose_b: how to offset b for a column range
  int64_t batch;    // items; 0 is taken as 1
  int64_t batch_stride_a, batch_stride_b, batch_stride_c, batch_stride_residual;
} attn_gemm_call;

typedef struct attn_pool attn_pool;

// Runs `fn` (generated from a spec that agrees with `call`) over every row and column of every
// batch item. The work goes to `pool` in pieces: whole items when there are at least 8 per
// thread; otherwise each item is cut so that the pieces divide evenly among the threads, along
// its longer side (a row split makes each piece pack all of B, a column split all of A): row
// ranges of whole register tiles, or column ranges of 64 columns or more, always columns when m
// is too small for each piece to get two tiles (decode). `pool` may be NULL: everything runs on
// the calling thread. Returns ATTN_OK, or ATTN_ERROR_INVALID_ARGUMENT (message in `diag`) for a
// negative shape or a missing kernel or operand; a shape with no element returns at once.
attn_status attn_cpu_gemm_launch(attn_gemm_f32_fn fn, const attn_gemm_call *call, attn_pool *pool,
                                 attn_diag *diag) ATTN_MUST_USE;

// ---------------------------------------------------------------------------------------------
// Attention (flash attention; the generator is codegen/cpu/attention.h).

// The mask kind, as attn_mask_kind of ir/ir.h.
typedef enum attn_cpu_attention_mask {
  ATTN_CPU_ATTENTION_MASK_NONE,
  ATTN_CPU_ATTENTION_MASK_CAUSAL,         // key j visible iff j <= pos(i)
  ATTN_CPU_ATTENTION_MASK_SLIDING_WINDOW, // causal and (j > pos(i) - window or j < sinks)
  ATTN_CPU_ATTENTION_MASK_COUNT
} attn_cpu_attention_mask;

// The explicit mask tensor, broadcast to [B, H, Tq, Tk] through run-time strides.
typedef enum attn_cpu_attention_mask_tensor {
  ATTN_CPU_ATTENTION_MASK_TENSOR_NONE,
  ATTN_CPU_ATTENTION_MASK_TENSOR_BOOL, // one byte per element, nonzero = visible
  ATTN_CPU_ATTENTION_MASK_TENSOR_F32,  // added to the logit
  ATTN_CPU_ATTENTION_MASK_TENSOR_COUNT
} attn_cpu_attention_mask_tensor;

typedef enum attn_cpu_attention_norm {
  ATTN_CPU_ATTENTION_NORM_SOFTMAX,
  ATTN_CPU_ATTENTION_NORM_SIGMOID, // p = sigmoid(s + sigmoid_bias), no normalisation over keys
  ATTN_CPU_ATTENTION_NORM_COUNT
} attn_cpu_attention_norm;

// The storage type of q, k, v and out (lse is always f32). bf16 is converted to f32 on load,
// every sum is f32, and out is rounded to bf16 to nearest even.
typedef enum attn_cpu_attention_dtype {
  ATTN_CPU_ATTENTION_F32,
  ATTN_CPU_ATTENTION_BF16,
  ATTN_CPU_ATTENTION_DTYPE_COUNT
} attn_cpu_attention_dtype;

// The most captured tensors a compiled score mod may read, and the most dims of each.
#define ATTN_CPU_ATTENTION_MAX_CAPTURES     8
#define ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK 4

// What the kernel knows statically of one tensor captured by the score mod: its elements are
// read as values of `dtype` (bool as 0 or 1) and converted to f32.
typedef struct attn_cpu_attention_capture {
  attn_dtype dtype;
  uint32_t rank; // 0..ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK, the subscripts it takes
} attn_cpu_attention_capture;

// What the launcher needs of an attention kernel's spec: the static facts that shape its work
// split, its partial results and its checks of the captures. The compiler's spec carries these
// and the score-mod expression, which only the generator reads.
typedef struct attn_cpu_attention_launch_spec {
  int64_t value_dim; // Dv of v and out
  attn_cpu_attention_norm norm;
  bool lse;
  attn_cpu_attention_dtype dtype;
  int vector_width;
  uint32_t capture_count; // the score mod's captures; 0 without a score mod
  uint32_t capture_ranks[ATTN_CPU_ATTENTION_MAX_CAPTURES];
} attn_cpu_attention_launch_spec;

// The run-time arguments, passed by pointer. The generated code reads field n at byte offset
// 8 n (every field is 8 bytes), so the order below is the kernel's ABI; changing it means bumping
// the layout version of attn_attention_spec_hash.
//   q [B, H, Tq, D], k [B, Hkv, Tk, D], v [B, Hkv, Tk, Dv], out [B, H, Tq, Dv]: row-major,
//   contiguous, of the spec's dtype. lse [B, H, Tq] f32, used when the spec asks for it.
//   mask: the mask tensor (bytes or f32) when the spec has one; element (b, h, i, j) is at
//   mask[b * mask_strides[0] + h * mask_strides[1] + i * mask_strides[2] + j * mask_strides[3]]
//   (in elements; 0 for a broadcast dim).
//   kv_splits, kv_chunk, partial: the key split of decode. With kv_splits <= 1 the kernel writes
//   out (and lse). Otherwise split s covers keys [s kv_chunk, (s + 1) kv_chunk) and, instead of
//   out and lse, writes for each row r = (b H + h) Tq + i the record partial + (r kv_splits + s)
//   (Dv + 2): the running max in log2 units (logit times log2(e)), the sum of 2^(logit2 - max),
//   then the Dv unnormalised sums of weight times v (weights 2^(logit2 - max) for softmax, the
//   sigmoid weights for sigmoid). attn_cpu_attention_launch fills these three itself.
//   captures, capture_dims: the tensors of the spec's score mod, row-major and contiguous, of
//   the spec's capture dtypes; capture_dims[c][d] for d < the capture's rank (each >= 1). The
//   entries past the spec's capture count are not read.
typedef struct attn_cpu_attention_args {
  const void *q;           // 0
  const void *k;           // 1
  const void *v;           // 2
  const void *mask;        // 3
  void *out;               // 4
  float *lse;              // 5
  float *partial;          // 6
  int64_t batch;           // 7  B
  int64_t heads;           // 8  H, a multiple of kv_heads
  int64_t kv_heads;        // 9  Hkv
  int64_t tq;              // 10 Tq
  int64_t tk;              // 11 Tk >= Tq for causal masks (row i sits at Tk - Tq + i)
  int64_t window;          // 12 sliding window
  int64_t sinks;           // 13 sliding window sinks
  int64_t mask_strides[4]; // 14..17
  int64_t kv_splits;       // 18
  int64_t kv_chunk;        // 19
  double scale;            // 20 the logit is scale * q.k (already resolved: 1/sqrt(D) by default)
  double sigmoid_bias;     // 21
  const void *captures[ATTN_CPU_ATTENTION_MAX_CAPTURES]; // 22..29
  int64_t capture_dims[ATTN_CPU_ATTENTION_MAX_CAPTURES]
                      [ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK]; // 30..61
} attn_cpu_attention_args;

// The generated function: runs work items [item_begin, item_end) of
// attn_cpu_attention_item_count(spec, args). Items write disjoint rows of out, lse and partial,
// so threads may run disjoint ranges at once. Its scratch is on the stack: 4 R (D + Dv + 67)
// bytes with R = attn_cpu_attention_block_rows, plus 256 (D + Dv) for bf16 (about 240 KiB at
// D = Dv = 256 with AVX2).
typedef void (*attn_attention_fn)(const attn_cpu_attention_args *args, int64_t item_begin,
                                  int64_t item_end);

// The query rows of one work item (3 vectors per register tile, 2 tiles): 48 for width 8, 96
// for 16; and the keys of one block of the online softmax.
int64_t attn_cpu_attention_block_rows(int vector_width);
#define ATTN_CPU_ATTENTION_BLOCK_KEYS 64

// B * H * ceil(Tq / block rows) * max(kv_splits, 1). Item n is split n % kv_splits of query
// block QB - 1 - (n / kv_splits) % QB (the most expensive causal blocks come first) of head
// (n / kv_splits / QB) % H of batch n / kv_splits / QB / H.
int64_t attn_cpu_attention_item_count(const attn_cpu_attention_launch_spec *spec,
                                      const attn_cpu_attention_args *args);

// Runs `fn`, the kernel of `spec`, on `args` (its kv_splits, kv_chunk and partial are ignored)
// over `pool`. When the query blocks are too few to keep every thread busy and the keys many
// (decode), it splits the keys into chunks, takes the partial results' buffer from `allocator`,
// and combines them after the kernel, in parallel too. Returns ATTN_ERROR_INVALID_ARGUMENT
// (heads not a multiple of kv_heads, negative dims, a capture of the score mod without data or
// with a dim below 1) or ATTN_ERROR_OUT_OF_MEMORY with a message in `diag`. One launch at a time
// per pool.
attn_status attn_cpu_attention_launch(attn_attention_fn fn,
                                      const attn_cpu_attention_launch_spec *spec,
                                      const attn_cpu_attention_args *args, attn_pool *pool,
                                      attn_allocator allocator, attn_diag *diag) ATTN_MUST_USE;

// ---------------------------------------------------------------------------------------------
// Loop nests of the MLIR path (codegen/cpu/mlir.h).

// A generated kernel. data[i] is the data pointer of operand i, the operands being the kernel's
// inputs then its outputs, each a dense row-major tensor of its value's declared dtype
// (bool: one byte, 0 or 1). dims holds the concrete dims of every operand, concatenated in the
// same order (operand i contributes its type's rank entries). The call computes the rows
// [begin, end) of the kernel's iteration space: the rows are the flattened product of the leading
// parallel_rank dims of the first output operand, so callers may split [0, rows) between
// threads. It writes nothing of an output but the elements of its rows (concat and split: the
// rows of every output), keeps no state, and uses a little stack only.
typedef void (*attn_cpu_kernel_fn)(void *const *data, const int64_t *dims, int64_t begin,
                                   int64_t end);

#endif // ATTN_RUNTIME_CPU_LAUNCH_H_
