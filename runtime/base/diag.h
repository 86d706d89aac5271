// Diagnostics: the sink where every error message goes, with the source location it
// concerns. Owned by a compilation or session; messages live in the sink's arena.
#ifndef ATTN_RUNTIME_BASE_DIAG_H_
#define ATTN_RUNTIME_BASE_DIAG_H_

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "attn/status.h"
#include "runtime/base/arena.h"

// Where something came from. `file` is borrowed and must outlive every user of the location
// (parsers keep it in the graph's arena). line and col are 1-based; line 0 means no position,
// in which case `file` may still name a file, an ONNX node or a weight.
typedef struct attn_loc {
  const char *file;
  uint32_t line;
  uint32_t col;
} attn_loc;

#define ATTN_LOC_NONE ((attn_loc){NULL, 0, 0})

typedef enum attn_severity {
  ATTN_SEVERITY_ERROR,
  ATTN_SEVERITY_WARNING,
  ATTN_SEVERITY_NOTE,
} attn_severity;

typedef struct attn_diagnostic {
  attn_severity severity;
  attn_status status; // ATTN_OK for warnings and notes
  attn_loc loc;       // file copied into the sink
  const char *message;
} attn_diagnostic;

typedef struct attn_diag_source attn_diag_source;

typedef struct attn_diag {
  attn_arena arena;
  attn_diagnostic *items;
  size_t count;
  size_t capacity;
  attn_diag_source *sources; // texts kept for carets, newest first
  size_t error_count;
  _Bool lost_messages; // some message could not be stored for lack of memory
} attn_diag;

void attn_diag_init(attn_diag *diag, attn_allocator allocator);
void attn_diag_deinit(attn_diag *diag);
// Forgets every diagnostic (sources stay registered).
void attn_diag_clear(attn_diag *diag);

// Records an error at `loc` and returns `status`, so a failing path reads
//   return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "expected ')'");
attn_status attn_diag_error(attn_diag *diag, attn_loc loc, attn_status status, const char *format,
                            ...) ATTN_PRINTF(4, 5);
attn_status attn_diag_verror(attn_diag *diag, attn_loc loc, attn_status status, const char *format,
                             va_list args) ATTN_PRINTF(4, 0);
void attn_diag_warning(attn_diag *diag, attn_loc loc, const char *format, ...) ATTN_PRINTF(3, 4);
// A note that explains the diagnostic recorded just before it.
void attn_diag_note(attn_diag *diag, attn_loc loc, const char *format, ...) ATTN_PRINTF(3, 4);

// Keeps a copy of the text of `file` so that diagnostics in it are printed with the source
// line and a caret under the column.
void attn_diag_add_source(attn_diag *diag, const char *file, const char *text, size_t length);

// The newest error's message, or NULL.
const char *attn_diag_last_error(const attn_diag *diag);
// The newest error as one line, "file:line:col: message" (the parts of its location it has),
// into `buffer` (always NUL-terminated; "" when there is no error).
void attn_diag_format_last_error(const attn_diag *diag, char *buffer, size_t size);

// Writes every diagnostic to `out` in the compiler style:
//   model.attn:3:14: error: unknown op 'softmx'
//     y = softmx(x)
//         ^
void attn_diag_write(const attn_diag *diag, FILE *out);

#endif // ATTN_RUNTIME_BASE_DIAG_H_
