// Ahead-of-time builds of CPU programs: the object code of a program's kernels written out, and
// the system C compiler driven to link them into a shared object (for an artifact), an executable
// or a static library with the runtime. The C compiler is $CC, else `cc`; it is needed only when
// building, never by what it builds.
#ifndef ATTN_CODEGEN_CPU_AOT_H_
#define ATTN_CODEGEN_CPU_AOT_H_

#include <stddef.h>

#include "codegen/cpu/backend.h"
#include "runtime/base/diag.h"
#include "runtime/exec/plan.h"

// A scratch directory for one build, removed with everything in it by attn_aot_dir_remove.
typedef struct attn_aot_dir {
  char path[1024]; // short enough that every file name in it fits a PATH_MAX buffer
} attn_aot_dir;

// Creates a fresh directory under $TMPDIR (else /tmp). ATTN_ERROR_IO when it cannot, or when
// $TMPDIR is too long a path.
attn_status attn_aot_dir_create(attn_aot_dir *dir, attn_diag *diag) ATTN_MUST_USE;
// Removes the directory and the files in it (it has no subdirectories).
void attn_aot_dir_remove(const attn_aot_dir *dir);

// Writes the object code of each of the plan's functions to "<dir>/k<index>.o" (the backend
// must keep objects). Errors: those of attn_cpu_backend_object, ATTN_ERROR_IO.
attn_status attn_aot_write_objects(const attn_cpu_backend *backend, const attn_plan *plan,
                                   const attn_aot_dir *dir, attn_diag *diag) ATTN_MUST_USE;

// Runs the C compiler with `args` (NULL-terminated, the compiler's name not included) and waits
// for it. ATTN_ERROR_IO, naming the command, when it cannot start or fails; its own messages go
// to stderr.
attn_status attn_aot_cc(const char *const *args, attn_diag *diag) ATTN_MUST_USE;

// Runs `program` (found on PATH) with `args` and waits for it, as attn_aot_cc runs the compiler.
attn_status attn_aot_run(const char *program, const char *const *args,
                         attn_diag *diag) ATTN_MUST_USE;

// Links the plan's objects in `dir` into the shared object `path`.
attn_status attn_aot_link_shared(const attn_plan *plan, const attn_aot_dir *dir, const char *path,
                                 attn_diag *diag) ATTN_MUST_USE;

// `name` as a C identifier: characters other than letters, digits and '_' become '_', a leading
// digit gets a '_' before it, and a C keyword a '_' after it. `out` is always NUL-terminated.
void attn_aot_identifier(const char *name, char *out, size_t size);

// What a linked model's C source is built from.
typedef struct attn_aot_linked_source {
  const attn_plan *plan;
  const char *name;          // a C identifier: the prefix of the generated symbols
  const char *artifact_path; // the artifact the source embeds (.incbin)
  size_t artifact_size;      // its size in bytes
  bool with_main;            // an executable: main() calls attn_standalone_main
} attn_aot_linked_source;

// Writes the C source of a linked model to `path`: the artifact's bytes, the table of the
// kernels' addresses, NAME_linked_model(), and for a library NAME_open and NAME_run over the
// inputs and outputs' C types (declared by the header attn_aot_write_header writes), or main().
attn_status attn_aot_write_source(const attn_aot_linked_source *source, const char *path,
                                  attn_diag *diag) ATTN_MUST_USE;

// Writes NAME.h: the typed entry points of a static library built from that source.
attn_status attn_aot_write_header(const attn_aot_linked_source *source, const char *path,
                                  attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_CODEGEN_CPU_AOT_H_
