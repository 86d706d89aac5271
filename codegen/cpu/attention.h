// The CPU attention kernel generator (flash attention: online softmax over key blocks, the
// score matrix never leaves L1) and its host-side launcher, which splits the work over the thread
// pool and, for decode (few queries against many keys), splits the keys too and combines the
// partial results. Semantics are exactly those of the attention op (ir/ir.h, reference
// ir/interp_attention.c), score mods included, except that score mods compute in f32 and clamp
// capture subscripts into range where the reference reports an error.
#ifndef ATTN_CODEGEN_CPU_ATTENTION_H_
#define ATTN_CODEGEN_CPU_ATTENTION_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llvm-c/Core.h>

#include "codegen/cpu/kernels.h"
#include "ir/ir.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/cpu/pool.h"

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

// The static facts of one attention kernel.
typedef struct attn_attention_spec {
  int64_t head_dim;  // D of q and k, 1..512
  int64_t value_dim; // Dv of v and out, 1..512
  attn_cpu_attention_mask mask;
  attn_cpu_attention_mask_tensor mask_tensor;
  attn_cpu_attention_norm norm;
  bool lse; // also write the log-sum-exp of each row
  attn_cpu_attention_dtype dtype;
  int vector_width; // f32 lanes per vector: 8 (AVX2 ymm) or 16 (AVX-512 zmm)
  // The score mod (borrowed; it must outlive generation only), applied in f32 to the scaled
  // logit before the mask tensor and the mask kind; NULL for none. Its CAPTURE nodes read
  // captures[capture] of args, with as many subscripts as that capture's rank. A subscript is
  // truncated toward zero and clamped into [0, size - 1] (the reference evaluator reports an
  // error instead); subscripts are exact integers up to 2^24.
  const attn_expr *score_mod;
  uint32_t capture_count; // used with a score mod, at most ATTN_CPU_ATTENTION_MAX_CAPTURES
  attn_cpu_attention_capture captures[ATTN_CPU_ATTENTION_MAX_CAPTURES];
} attn_attention_spec;

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
int64_t attn_cpu_attention_item_count(const attn_attention_spec *spec,
                                      const attn_cpu_attention_args *args);

// The spec's hash: 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over
// these bytes, in order: 'a' 't' 't' 'n', the layout version 2, head_dim and value_dim (each
// as 4 bytes, little-endian), mask, mask_tensor, norm, lse, dtype, vector_width and whether
// there is a score mod (each one unsigned byte). With a score mod there follow capture_count and
// each capture's dtype and rank (one byte each), then the expression's structure in prefix
// order, each node as its kind (one byte) and then: NUMBER the 8 bytes of the double (little-
// endian bit pattern); VAR the var; CAPTURE the capture index and the subscript count; UNARY and
// BINARY the fn and the argument count; SELECT the argument count (one byte each); followed by
// its arguments. Nesting deeper than 64 hashes as one byte 0xff. The expression's address never
// enters, so equal expressions of different nodes share one kernel.
uint64_t attn_attention_spec_hash(const attn_attention_spec *spec);

// Generates the kernel of `spec` into a new module in a new LLVMContext owned by the caller
// (give it to attn_cpu_jit_add_module_owned, or free it with attn_cpu_module_destroy), and writes
// its name, "attn_attention_" and the spec hash in 16 hex digits, to `out_name`. Returns
// ATTN_ERROR_UNSUPPORTED for a score mod with more than ATTN_CPU_ATTENTION_MAX_CAPTURES
// captures or a capture of more than ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK dims (the caller falls
// back to the reference evaluator) and ATTN_ERROR_INVALID_ARGUMENT for a vector width other than
// 8 or 16, dims outside 1..512, an unknown enum value or dtype, or a malformed score mod (an
// unknown kind, var or fn, a wrong argument count, a capture it does not declare, nesting deeper
// than 64); the message goes to `diag`.
attn_status attn_cpu_attention_generate(const attn_attention_spec *spec, attn_diag *diag,
                                        LLVMModuleRef *out_module,
                                        char out_name[ATTN_CPU_KERNEL_NAME_MAX]) ATTN_MUST_USE;

// Runs `fn`, the kernel of `spec`, on `args` (its kv_splits, kv_chunk and partial are ignored)
// over `pool`. When the query blocks are too few to keep every thread busy and the keys many
// (decode), it splits the keys into chunks, takes the partial results' buffer from `allocator`,
// and combines them after the kernel, in parallel too. Returns ATTN_ERROR_INVALID_ARGUMENT
// (heads not a multiple of kv_heads, negative dims, a capture of the score mod without data or
// with a dim below 1) or ATTN_ERROR_OUT_OF_MEMORY with a message in `diag`. One launch at a time
// per pool.
attn_status attn_cpu_attention_launch(attn_attention_fn fn, const attn_attention_spec *spec,
                                      const attn_cpu_attention_args *args, attn_pool *pool,
                                      attn_allocator allocator, attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_CODEGEN_CPU_ATTENTION_H_
