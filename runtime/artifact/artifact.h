// .attnx artifacts: a compiled program (runtime/exec/plan.h), its constants and its generated
// code in one file the runtime loads without the compiler. docs/artifact.md describes the layout.
//
// Reading trusts nothing: the file's prefix and checksums, the header's encoding, the plan
// (attn_plan_validate), every blob's place and checksum and every external weight are checked
// before the artifact is handed out. Each refusal is one error at the file in `diag`.
// An open artifact is read-only and may be read from any number of threads.
#ifndef ATTN_RUNTIME_ARTIFACT_ARTIFACT_H_
#define ATTN_RUNTIME_ARTIFACT_ARTIFACT_H_

#include <stdbool.h>
#include <stddef.h>

#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/exec/plan.h"

// The newest format this runtime reads and the one the writer writes.
#define ATTN_ARTIFACT_FORMAT_VERSION 1

typedef struct attn_artifact attn_artifact;

typedef struct attn_artifact_open_options {
  // Skips the checksums of the embedded constants for speed: opening then reads no weight byte of
  // the artifact, so pages are only touched when the program runs. Corrupted weights then give
  // wrong results instead of a refusal. The generated code's checksum, and the weights of an
  // external file (which may be replaced after the artifact was written), are always checked.
  bool skip_constant_checksums;
} attn_artifact_open_options;

// The generated CPU code: an ELF shared object exporting the plan's functions, and what it was
// compiled for. Strings are never NULL ("" when absent); shared_object is NULL (size 0) for a
// plan without generated code.
typedef struct attn_artifact_cpu_code {
  const char *target_triple;
  const char *cpu;
  const char *features; // the LLVM feature string
  bool needs_avx2, needs_fma, needs_avx512f;
  const void *shared_object;
  size_t shared_object_size;
} attn_artifact_cpu_code;

// Maps `path` read-only and reads it. The plan's constants point into the mapping, or into the
// mapped safetensors files its external constants name (resolved in `path`'s directory).
// `options` may be NULL (every check on). Errors: ATTN_ERROR_IO (cannot open or map),
// ATTN_ERROR_PARSE (not an artifact, truncated, corrupt, a checksum mismatch),
// ATTN_ERROR_UNSUPPORTED (a newer format), ATTN_ERROR_INVALID_ARGUMENT (the plan fails
// validation, an external file name escapes the directory), ATTN_ERROR_NOT_FOUND (an external
// file or tensor is missing), ATTN_ERROR_OUT_OF_MEMORY. On failure `*out` is NULL.
attn_status attn_artifact_open(const char *path, const attn_artifact_open_options *options,
                               attn_allocator allocator, attn_diag *diag,
                               attn_artifact **out) ATTN_MUST_USE;
// The same over `size` bytes at `data` that outlive the artifact (an artifact linked into a
// program). `dir` resolves external weight files (NULL: the current directory). Messages name
// the artifact "<memory>". Embedded constants are as aligned as `data` is up to 64 bytes: give
// 64-byte aligned bytes (a file's mapping is) for constants aligned for any element type.
attn_status attn_artifact_open_memory(const void *data, size_t size, const char *dir,
                                      const attn_artifact_open_options *options,
                                      attn_allocator allocator, attn_diag *diag,
                                      attn_artifact **out) ATTN_MUST_USE;
// Unmaps and frees everything, external weight files included. NULL is a no-op.
void attn_artifact_close(attn_artifact *artifact);

// The plan, with every constant's data bound; borrowed from `artifact`.
const attn_plan *attn_artifact_plan(const attn_artifact *artifact);
// The CPU code; its pointers are borrowed from `artifact`.
attn_artifact_cpu_code attn_artifact_cpu(const attn_artifact *artifact);
const char *attn_artifact_model_name(const attn_artifact *artifact);

// What attn_artifact_write stores.
typedef struct attn_artifact_contents {
  const attn_plan *plan;      // every constant's data bound
  const char *model_name;     // NULL: ""
  attn_artifact_cpu_code cpu; // shared_object may be NULL (a plan without generated code);
                              // NULL strings are written as ""
  // NULL: the constants are embedded in the artifact. Otherwise they are written to this
  // safetensors file and referenced by its base name, which the reader looks for in the
  // artifact's directory: give a path in the same directory as the artifact.
  const char *weights_file;
} attn_artifact_contents;

// Writes `contents` to `path` (and the weights file, if any). The plan is validated first.
// Errors: ATTN_ERROR_INVALID_ARGUMENT (an invalid plan, a constant without data, duplicate
// constant names with a weights file), ATTN_ERROR_IO, ATTN_ERROR_OUT_OF_MEMORY; a partly written
// file is removed.
attn_status attn_artifact_write(const attn_artifact_contents *contents, const char *path,
                                attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_RUNTIME_ARTIFACT_ARTIFACT_H_
