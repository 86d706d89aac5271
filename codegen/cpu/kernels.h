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
  ATTN_CPU_ACTIVATION_COUNT
} attn_cpu_activation;

// "none", "relu", "gelu_tanh", "gelu_erf", "silu".
const char *attn_cpu_activation_name(attn_cpu_activation activation);

// ---------------------------------------------------------------------------------------------
// f32 GEMM with a fused epilogue.
//
// The generated function has the type attn_gemm_f32_fn and computes, for rows i in
// [row_begin, row_end) of an m x n result and every column j in [0, n),
//   c[i * ldc + j] = act(sum_kk A[i, kk] * B[kk, j] + bias[j]) + residual[i * ldr + j]
// where A[i, kk] = a[i * lda + kk], or a[kk * lda + i] with transpose_a (a is k x m);
//       B[kk, j] = b[kk * ldb + j], or b[j * ldb + kk] with transpose_b (b is n x k, the layout
//                  of a Linear layer's weight);
// and the bias, the activation and the residual are present only when the spec says so (the
// pointers of absent ones are ignored and may be NULL). Each element accumulates its k products
// in order with fused multiply-adds, in f32. Nothing outside those rows and columns of c is
// written, so threads may split [0, m) into row ranges. `m` bounds nothing but documents the
// shape; rows must satisfy 0 <= row_begin <= row_end <= m. c must not overlap a, b, bias or
// residual: it holds partial sums between k blocks, so an in-place residual (residual == c)
// would read them instead. The kernel is reentrant; its only scratch is 16 KiB of stack.
//
// Blocking: register tiles of ATTN_GEMM_TILE_ROWS rows x 2 vectors (2 * vector_width columns).
// Rows go in blocks of 32 tiles (192 rows, whose part of A stays in L2). For each row block,
// column panel and block of attn_gemm_k_block(vector_width) rows of k, the kernel packs that part
// of B into a zero-padded 16 KiB buffer on its stack (so it stays in L1), then runs the block's
// tiles against it, keeping partial sums in c between k blocks. Tails in n use masked loads and
// stores; tails in m recompute the last row and mask its stores off.
#define ATTN_GEMM_TILE_ROWS 6

// The k rows of one packed panel: 256 for vector width 8, 128 for 16.
int64_t attn_gemm_k_block(int vector_width);

typedef struct attn_gemm_spec {
  bool transpose_a;
  bool transpose_b;
  bool bias;
  attn_cpu_activation activation;
  bool residual;
  int vector_width; // f32 lanes per vector: 8 (AVX2 ymm) or 16 (AVX-512 zmm)
} attn_gemm_spec;

typedef void (*attn_gemm_f32_fn)(const float *a, const float *b, float *c, int64_t m, int64_t n,
                                 int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                                 const float *bias, const float *residual, int64_t ldr,
                                 int64_t row_begin, int64_t row_end);

// The spec's hash: 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over
// these 11 bytes, in order: 'g' 'e' 'm' 'm', the layout version 1, transpose_a, transpose_b,
// bias, activation, residual, vector_width (each field as one unsigned byte). Hashing fields
// rather than the struct keeps padding out and the value stable across compilers.
uint64_t attn_gemm_spec_hash(const attn_gemm_spec *spec);

// Generates the kernel of `spec` into a new module in a new LLVMContext, owned by the caller
// (give it to attn_cpu_jit_add_module_owned, or free it with attn_cpu_module_destroy). Writes
// the function's name, "attn_gemm_f32_" and the spec hash in 16 hex digits, to `out_name`.
// Returns ATTN_ERROR_INVALID_ARGUMENT (message in `diag`) for a vector width other than 8 or 16
// or an unknown activation.
attn_status attn_cpu_gemm_generate(const attn_gemm_spec *spec, attn_diag *diag,
                                   LLVMModuleRef *out_module,
                                   char out_name[ATTN_CPU_KERNEL_NAME_MAX]) ATTN_MUST_USE;

#endif // ATTN_CODEGEN_CPU_KERNELS_H_
