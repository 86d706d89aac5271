// The CPU JIT: a host target machine and an ORC LLJIT built from it. Kernel generators hand it
// LLVM modules; it verifies them, runs the O3 pipeline, compiles them and returns function
// addresses. This file and jit.c are where LLVM's error conventions become attn_status.
#ifndef ATTN_CODEGEN_CPU_JIT_H_
#define ATTN_CODEGEN_CPU_JIT_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llvm-c/Core.h>

#include "runtime/base/diag.h"

// What the target CPU offers that kernel generators care about, parsed from the LLVM feature
// string ("+avx512f,-avx512fp16,...").
typedef struct attn_cpu_features {
  bool avx2;
  bool fma;
  bool avx512f;
  bool avx512bf16;
} attn_cpu_features;

// Parses an LLVM feature string. Features not named, or named with '-', are false.
attn_cpu_features attn_cpu_features_parse(const char *features);

// The f32 lanes per vector a kernel should use on a CPU with `features`: 16 (AVX-512 zmm) when
// avx512f is present, else 8 (AVX2 ymm).
int attn_cpu_features_vector_width(attn_cpu_features features);

typedef struct attn_cpu_jit attn_cpu_jit;

// Which CPU to generate code for. NULL fields mean the host's (LLVMGetHostCPUName,
// LLVMGetHostCPUFeatures). Code for another CPU must only run on a CPU that has its features.
typedef struct attn_cpu_jit_options {
  const char *cpu;      // e.g. "znver4"; borrowed for the call
  const char *features; // e.g. "+avx2,+fma"; borrowed for the call
} attn_cpu_jit_options;

// Creates a JIT for the CPU of `options` (NULL: the host) at optimisation level aggressive.
// Errors go to `diag` (borrowed; it must outlive the JIT, which reports later errors there too).
// Returns ATTN_ERROR_DEVICE when LLVM cannot build the target machine or the JIT, and
// ATTN_ERROR_OUT_OF_MEMORY. Not thread-safe: one thread uses a JIT at a time.
attn_status attn_cpu_jit_create(const attn_cpu_jit_options *options, attn_diag *diag,
                                attn_cpu_jit **out_jit) ATTN_MUST_USE;

// Frees the JIT and every function compiled in it. NULL is a no-op.
void attn_cpu_jit_destroy(attn_cpu_jit *jit);

// The target CPU's features, and its target triple, name and feature string (owned by the JIT).
attn_cpu_features attn_cpu_jit_features(const attn_cpu_jit *jit);
const char *attn_cpu_jit_triple(const attn_cpu_jit *jit);
const char *attn_cpu_jit_cpu_name(const attn_cpu_jit *jit);
const char *attn_cpu_jit_feature_string(const attn_cpu_jit *jit);

// Adds `module` to the JIT: sets its target triple and data layout, verifies it, runs the
// "default<O3>" pipeline, and hands it to LLJIT, which compiles it when a symbol of it is first
// looked up. `module` must be the only module of its LLVMContext; the module and the context are
// transferred in and freed by the JIT, on failure too. Returns ATTN_ERROR_INVALID_ARGUMENT when
// the module does not verify (the message has LLVM's report) and ATTN_ERROR_DEVICE when LLVM
// fails otherwise, for instance on a symbol defined twice.
attn_status attn_cpu_jit_add_module_owned(attn_cpu_jit *jit, LLVMModuleRef module) ATTN_MUST_USE;

// ---- the disk cache ----
// With a cache directory set, every module added is compiled to an object at once, and the
// object is also written to the directory under its module's name (the generators name a module
// after its function) and a key of the target CPU, its features and the LLVM version; a later
// attn_cpu_jit_add_cached of that name, in any process with the same key, adds the object
// without generating or compiling anything. Damaged or partly written entries are ignored.

// Sets (NULL or "": unsets) the cache directory, creating it. ATTN_ERROR_IO when it cannot be
// created.
attn_status attn_cpu_jit_set_cache_dir(attn_cpu_jit *jit, const char *dir) ATTN_MUST_USE;
// The cache directory, or NULL.
const char *attn_cpu_jit_cache_dir(const attn_cpu_jit *jit);
// Adds the cached object of module `name` when the cache holds a sound one (*out_found true);
// otherwise does nothing and returns ATTN_OK with *out_found false.
attn_status attn_cpu_jit_add_cached(attn_cpu_jit *jit, const char *name,
                                    bool *out_found) ATTN_MUST_USE;

// ---- object code for ahead-of-time builds ----
// Every object is position-independent code of the small code model, so kept objects link into
// shared objects and executables.

// From now on, compiles every module added at once and keeps a copy of its object code (and of
// every cached object added), for attn_cpu_jit_object.
void attn_cpu_jit_keep_objects(attn_cpu_jit *jit);
// The object code of module `name` (owned by the JIT), kept since attn_cpu_jit_keep_objects.
// ATTN_ERROR_NOT_FOUND, with a message, when none was kept.
attn_status attn_cpu_jit_object(const attn_cpu_jit *jit, const char *name, const void **out_data,
                                size_t *out_size) ATTN_MUST_USE;

// A compiled function's address, cast by the caller to the function's real type.
typedef void (*attn_cpu_jit_fn)(void);

// Looks up function `name` among the modules added so far, compiling them as needed. Returns
// ATTN_ERROR_NOT_FOUND (with LLVM's message) when no module defines it or its module does not
// compile.
attn_status attn_cpu_jit_lookup(attn_cpu_jit *jit, const char *name,
                                attn_cpu_jit_fn *out_fn) ATTN_MUST_USE;

// Frees a module and its LLVMContext, for a generated module that is not added to a JIT.
void attn_cpu_module_destroy(LLVMModuleRef module);

// Frees LLVM's process-wide state (LLVMShutdown). Call it at most once, at process exit, after
// every JIT is destroyed; no LLVM function may be used afterwards.
void attn_cpu_llvm_shutdown(void);

#endif // ATTN_CODEGEN_CPU_JIT_H_
