// The CPU kernel generators. Each takes a spec of a kernel's static facts and returns an LLVM
// module defining one function, named after a hash of the spec so that compiled kernels can be
// cached by it. The module is then given to the JIT (codegen/cpu/jit.h) or emitted as an object.
#ifndef ATTN_CODEGEN_CPU_KERNELS_H_
#define ATTN_CODEGEN_CPU_KERNELS_H_

#include <stdbool.h>
#include <stdint.h>

#include <llvm-c/Core.h>

#include "runtime/base/diag.h"

// Longest kernel name a generator writes, with its terminating NUL.
#define ATTN_CPU_KERNEL_NAME_MAX 64

// The activations a GEMM epilogue can apply.
typedef enum attn_cpu_activation {
  ATTN_CPU_ACTIVATION_NONE,
  ATTN_CPU_ACTIVATION_RELU,      // max(x, 0)
  ATTN_CPU_ACTIVATION_GELU_TANH, // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  ATTN_CPU_ACTIVATION_GELU_ERF,  // 0.5 x (1 + erf(x / sqrt(2)))
  ATTN_CPU_ACTIVATION_SILU,      // x / (1 + exp(-x))
  ATTN_CPU_ACTIVATION_TANH,      // tanh(x), computed as 2 sigmoid(2x) - 1
  ATTN_CPU_ACTIVATION_SIGMOID,   // 1 / (1 + exp(-x))
  ATTN_CPU_ACTIVATION_COUNT
} attn_cpu_activation;

// "none", "relu", "gelu_tanh", "gelu_erf", "silu", "tanh", "sigmoid".
const char *attn_cpu_activation_name(attn_cpu_activation activation);

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
// Blocking (GotoBLAS / BLIS): register tiles of ATTN_GEMM_TILE_ROWS rows x 2 vectors (2 *
// vector_width columns), 12 accumulators. Columns go in blocks of ATTN_GEMM_COLUMN_BLOCK and k in
// equal blocks of at most attn_gemm_k_block(vector_width) (a multiple of 8); for each pair, the
// block of B is packed once per call (once per ATTN_GEMM_ROW_BLOCK rows in place) into panels of
// the tile's width, 24 KiB each, which stay in L1 while a row block's tiles pass over them. Rows
// go in blocks of ATTN_GEMM_ROW_BLOCK whose part of A is packed tile by tile (so the tile reads A
// as one stream, whatever lda, and the block stays in L2). The k loop is unrolled by 4. Full
// tiles load and store plainly; tails in n mask them and see zeros in the packed B; tails in m
// compute garbage rows whose stores are masked off.
#define ATTN_GEMM_TILE_ROWS    6
#define ATTN_GEMM_ROW_BLOCK    144
#define ATTN_GEMM_COLUMN_BLOCK 1024

// The most k rows of one packed panel: 384 for vector width 8, 192 for 16.
int64_t attn_gemm_k_block(int vector_width);

// How the epilogue combines the residual with the activated result.
typedef enum attn_cpu_residual_op {
  ATTN_CPU_RESIDUAL_ADD, // act(...) + residual
  ATTN_CPU_RESIDUAL_MUL, // act(...) * residual
  ATTN_CPU_RESIDUAL_OP_COUNT
} attn_cpu_residual_op;

typedef struct attn_gemm_spec {
  bool transpose_a;
  bool transpose_b;
  bool bias;
  attn_cpu_activation activation;
  bool residual;
  attn_cpu_residual_op residual_op; // with a residual
  int vector_width;                 // f32 lanes per vector: 8 (AVX2 ymm) or 16 (AVX-512 zmm)
} attn_gemm_spec;

typedef void (*attn_gemm_f32_fn)(const float *a, const float *b, float *c, int64_t m, int64_t n,
                                 int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                                 const float *bias, const float *residual, int64_t ldr,
                                 int64_t row_begin, int64_t row_end);

// The spec's hash: 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over
// these 12 bytes, in order: 'g' 'e' 'm' 'm', the layout version 3, transpose_a, transpose_b,
// bias, activation, residual, residual_op, vector_width (each field as one unsigned byte; the
// residual_op byte is 0 without a residual). Hashing fields
// rather than the struct keeps padding out and the value stable across compilers.
uint64_t attn_gemm_spec_hash(const attn_gemm_spec *spec);

// Generates the kernel of `spec` into a new module in a new LLVMContext, owned by the caller
// (give it to attn_cpu_jit_add_module_owned, or free it with attn_cpu_module_destroy). Writes
// the function's name, "attn_gemm_f32_" and the spec hash in 16 hex digits, to `out_name`.
// Returns ATTN_ERROR_INVALID_ARGUMENT (message in `diag`) for a vector width other than 8 or 16,
// an unknown activation or an unknown residual op.
attn_status attn_cpu_gemm_generate(const attn_gemm_spec *spec, attn_diag *diag,
                                   LLVMModuleRef *out_module,
                                   char out_name[ATTN_CPU_KERNEL_NAME_MAX]) ATTN_MUST_USE;

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

#endif // ATTN_CODEGEN_CPU_KERNELS_H_
