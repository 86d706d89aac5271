// The MLIR path for the long tail of CPU kernels: elementwise trees, norms and reductions with
// their fused prologues and epilogues, layout ops, rope and gather. For one kernel of a
// partitioned graph (passes/partition.c) it writes MLIR (func, scf loops, arith and memref on
// memrefs whose symbolic dims are dynamic), lowers it to the LLVM dialect, translates it to an
// LLVM module and wraps it in a function of type attn_cpu_kernel_fn, ready for the JIT
// (codegen/cpu/jit.h). This file and mlir.c are where MLIR's error conventions become
// attn_status; mlir_emit.c writes the MLIR text.
#ifndef ATTN_CODEGEN_CPU_MLIR_H_
#define ATTN_CODEGEN_CPU_MLIR_H_

#include <stdbool.h>
#include <stdint.h>

#include <llvm-c/Core.h>

#include "codegen/cpu/kernels.h"
#include "ir/ir.h"
#include "runtime/base/diag.h"

// Generated kernels have the type attn_cpu_kernel_fn (runtime/cpu/launch.h).

// One MLIRContext with every dialect, pass and LLVM translation registered, and the lowering
// pass pipeline. Not thread-safe: one thread uses it at a time.
typedef struct attn_cpu_mlir attn_cpu_mlir;

// Creates the context (0.01-0.06 s). Errors go to `diag` (borrowed for the call).
attn_status attn_cpu_mlir_create(attn_diag *diag, attn_cpu_mlir **out_mlir) ATTN_MUST_USE;
// NULL is a no-op.
void attn_cpu_mlir_destroy(attn_cpu_mlir *mlir);

typedef struct attn_cpu_mlir_kernel {
  // "attn_mlir_" and the hash in 16 hex digits: the function to look up in the JIT.
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  // 64-bit FNV-1a over the kernel's MLIR text (which names no value ids, names or locations,
  // so identical kernels of different layers share it) and the vector width.
  uint64_t hash;
  // How many leading dims of the first output operand the rows [begin, end) run over.
  uint32_t parallel_rank;
} attn_cpu_mlir_kernel;

// A GEMM kernel's `io` may start after its matmul and the epilogue its template fused (reading
// the fused result as an input): the nodes left are emitted as an elementwise kernel.
//
// Generates kernel `kernel` of `graph` (partitioned and memory-planned; `io` is its entry of
// attn_graph_kernel_io) into a new LLVM module in a new LLVMContext, owned by the caller (give it
// to attn_cpu_jit_add_module_owned, or free it with attn_cpu_module_destroy), defining one
// external function of type attn_cpu_kernel_fn named out_kernel->name. `vector_width` (8 or 16
// f32 lanes) is the width the caller's JIT vectorises for; it is part of the hash.
//
// Handles kernels of kind ELEMENTWISE (every elementwise op of ops.def on f32, i64, i32, i8 and
// bool tensors, iota inputs, scalar constants inlined), NORM (softmax and log_softmax over any
// axis, layernorm with or without weight and bias, rmsnorm, with elementwise prologue and
// epilogue), REDUCTION (sum, mean, max, min, argmax over one or several axes, keepdims, with a
// prologue), LAYOUT (permute, slice, concat, split, expand, a reshape of an iota), ROPE and
// GATHER. Floats compute in f32; norms and sums accumulate in f64; exp, log, tanh, erf and sin/cos
// are inline polynomials (no libm calls). Integer arithmetic saturates as the reference
// evaluator's does; an integer division by zero gives 0 and a gather index out of range is
// clamped into it (where the reference evaluator reports an error). Returns
// ATTN_ERROR_UNSUPPORTED, with a message naming the op or kind, for anything else (f16/bf16
// tensors, integer pow, gemm, attention, topk, ...), so the caller can fall back to the reference
// evaluator for that kernel; ATTN_ERROR_INVALID_ARGUMENT for a bad kernel id or vector width;
// ATTN_ERROR_DEVICE when MLIR rejects what was generated (the message has MLIR's diagnostics).
attn_status attn_cpu_mlir_generate(attn_cpu_mlir *mlir, const attn_graph *graph, uint32_t kernel,
                                   const attn_kernel_io *io, int vector_width, attn_diag *diag,
                                   LLVMModuleRef *out_module,
                                   attn_cpu_mlir_kernel *out_kernel) ATTN_MUST_USE;

// What attn_cpu_mlir_generate would name the kernel and its parallel rank, without lowering or
// compiling anything (the MLIR text is written, hashed and dropped), so a caller can look the
// function up in its caches first. Errors as attn_cpu_mlir_generate's; ATTN_ERROR_UNSUPPORTED
// for a kernel the path does not handle.
attn_status attn_cpu_mlir_describe(const attn_graph *graph, uint32_t kernel,
                                   const attn_kernel_io *io, int vector_width, attn_diag *diag,
                                   attn_cpu_mlir_kernel *out_kernel) ATTN_MUST_USE;

// ---- pieces (mlir_emit.c) -------------------------------------------------------------------

// Writes the MLIR module of kernel `kernel` into a malloc'ed NUL-terminated string
// (`*out_text`, freed by the caller) and its parallel rank. The module defines
// `func.func @attn_mlir_body` taking one memref per operand, then begin and end as index.
// Errors as attn_cpu_mlir_generate's (UNSUPPORTED, INVALID_ARGUMENT, OUT_OF_MEMORY).
attn_status attn_cpu_mlir_emit(const attn_graph *graph, uint32_t kernel, const attn_kernel_io *io,
                               attn_diag *diag, char **out_text,
                               uint32_t *out_parallel_rank) ATTN_MUST_USE;

#endif // ATTN_CODEGEN_CPU_MLIR_H_
