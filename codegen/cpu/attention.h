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

// What the launcher (runtime/cpu/launch.h) needs of `spec`.
attn_cpu_attention_launch_spec attn_attention_spec_launch(const attn_attention_spec *spec);

#endif // ATTN_CODEGEN_CPU_ATTENTION_H_
