// The CPU kernel generators. Each takes a spec of a kernel's static facts and returns an LLVM
// module defining one function, named after a hash of the spec so that compiled kernels can be
// cached by it. The module is then given to the JIT (codegen/cpu/jit.h) or emitted as an object.
#ifndef ATTN_CODEGEN_CPU_KERNELS_H_
#define ATTN_CODEGEN_CPU_KERNELS_H_

#include <stdbool.h>
#include <stdint.h>

#include <llvm-c/Core.h>

#include "runtime/base/diag.h"
#include "runtime/cpu/launch.h"

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

// f32 GEMM with a fused epilogue: the kernel contract is attn_gemm_f32_fn's (runtime/cpu/launch.h).
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

#endif // ATTN_CODEGEN_CPU_KERNELS_H_
