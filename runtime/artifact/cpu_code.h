// Loading the generated CPU code an artifact carries: an ELF shared object held in memory,
// handed to the dynamic loader without the compiler, and its functions found by name.
#ifndef ATTN_RUNTIME_ARTIFACT_CPU_CODE_H_
#define ATTN_RUNTIME_ARTIFACT_CPU_CODE_H_

#include "runtime/artifact/artifact.h"
#include "runtime/base/diag.h"

typedef struct attn_cpu_code attn_cpu_code;

// Loads `code`'s shared object: through memfd_create and dlopen("/proc/self/fd/N",
// RTLD_NOW | RTLD_LOCAL), or, where that is not available, from a temporary file under $TMPDIR
// (or /tmp) unlinked once loaded. First checks that the host has the instruction sets the code
// needs (AVX2, FMA, AVX-512F) and refuses with ATTN_ERROR_UNSUPPORTED naming the missing one.
// The result comes from `allocator`. Other errors: ATTN_ERROR_INVALID_ARGUMENT (no shared object),
// ATTN_ERROR_IO (the loader's message: not an ELF object for this machine, a missing library, ...),
// ATTN_ERROR_OUT_OF_MEMORY. The bytes are copied; `code` need not outlive the result.
attn_status attn_cpu_code_load(const attn_artifact_cpu_code *code, attn_allocator allocator,
                               attn_diag *diag, attn_cpu_code **out) ATTN_MUST_USE;
// The function `name` of the loaded code (dlsym). ATTN_ERROR_NOT_FOUND, with a message in
// `diag`, when the code has none.
attn_status attn_cpu_code_symbol(const attn_cpu_code *code, const char *name, attn_diag *diag,
                                 void (**out_fn)(void)) ATTN_MUST_USE;
// Unloads the code (dlclose). Functions from it must not be called afterwards. NULL is a no-op.
void attn_cpu_code_close(attn_cpu_code *code);

#endif // ATTN_RUNTIME_ARTIFACT_CPU_CODE_H_
