// The diagnostics sink. Storing a message never fails visibly: when memory runs out the
// sink remembers that it lost messages and still reports the status to the caller.
#include "runtime/base/diag.h"

#include <string.h>

struct attn_diag_source {
  attn_diag_source *next;
  const char *file;
  const char *text;
  size_t length;
};

void attn_diag_init(attn_diag *diag, attn_allocator allocator) {
  memset(diag, 0, sizeof(*diag));
  attn_arena_init(&diag->arena, allocator);
}

void attn_diag_deinit(attn_diag *diag) {
  attn_allocator_free(diag->arena.allocator, diag->items, diag->capacity * sizeof(*diag->items));
  attn_arena_deinit(&diag->arena);
  memset(diag, 0, sizeof(*diag));
}

void attn_diag_clear(attn_diag *diag) {
  diag->count = 0;
  diag->error_count = 0;
  diag->lost_messages = 0;
}

static void record(attn_diag *diag, attn_severity severity, attn_status status, attn_loc loc,
                   const char *format, va_list args) ATTN_PRINTF(5, 0);
static void record(attn_diag *diag, attn_severity severity, attn_status status, attn_loc loc,
                   const char *format, va_list args) {
  if (severity == ATTN_SEVERITY_ERROR)
    diag->error_count++;
  void *items = diag->items;
  if (!attn_array_reserve(diag->arena.allocator, &items, &diag->capacity, diag->count + 1,
                          sizeof(*diag->items))) {
    diag->lost_messages = 1;
    return;
  }
  diag->items = items;
  const char *message = attn_arena_vprintf(&diag->arena, format, args);
  if (loc.file)
    loc.file = attn_arena_strdup(&diag->arena, loc.file);
  if (!message) {
    diag->lost_messages = 1;
    message = "(message lost: out of memory)";
  }
  diag->items[diag->count++] = (attn_diagnostic){severity, status, loc, message};
}

attn_status attn_diag_verror(attn_diag *diag, attn_loc loc, attn_status status, const char *format,
                             va_list args) {
  record(diag, ATTN_SEVERITY_ERROR, status, loc, format, args);
  return status;
}

attn_status attn_diag_error(attn_diag *diag, attn_loc loc, attn_status status, const char *format,
                            ...) {
  va_list args;
  va_start(args, format);
  record(diag, ATTN_SEVERITY_ERROR, status, loc, format, args);
  va_end(args);
  return status;
}

void attn_diag_warning(attn_diag *diag, attn_loc loc, const char *format, ...) {
  va_list args;
  va_start(args, format);
  record(diag, ATTN_SEVERITY_WARNING, ATTN_OK, loc, format, args);
  va_end(args);
}

void attn_diag_note(attn_diag *diag, attn_loc loc, const char *format, ...) {
  va_list args;
  va_start(args, format);
  record(diag, ATTN_SEVERITY_NOTE, ATTN_OK, loc, format, args);
  va_end(args);
}

void attn_diag_add_source(attn_diag *diag, const char *file, const char *text, size_t length) {
  attn_diag_source *source = attn_arena_alloc(&diag->arena, sizeof(*source), 16);
  if (!source)
    return;
  source->file = attn_arena_strdup(&diag->arena, file);
  source->text = attn_arena_strndup(&diag->arena, text, length);
  source->length = length;
  if (!source->file || !source->text)
    return;
  source->next = diag->sources;
  diag->sources = source;
}

const char *attn_diag_last_error(const attn_diag *diag) {
  for (size_t i = diag->count; i > 0; i--)
    if (diag->items[i - 1].severity == ATTN_SEVERITY_ERROR)
      return diag->items[i - 1].message;
  return NULL;
}

void attn_diag_format_last_error(const attn_diag *diag, char *buffer, size_t size) {
  const attn_diagnostic *item = NULL;
  for (size_t i = diag->count; i > 0 && !item; i--)
    if (diag->items[i - 1].severity == ATTN_SEVERITY_ERROR)
      item = &diag->items[i - 1];
  if (!item)
    snprintf(buffer, size, "%s", diag->lost_messages ? "out of memory" : "");
  else if (item->loc.file && item->loc.line)
    snprintf(buffer, size, "%s:%u:%u: %s", item->loc.file, item->loc.line, item->loc.col,
             item->message);
  else if (item->loc.file)
    snprintf(buffer, size, "%s: %s", item->loc.file, item->message);
  else
    snprintf(buffer, size, "%s", item->message);
}

static const attn_diag_source *find_source(const attn_diag *diag, const char *file) {
  for (const attn_diag_source *s = diag->sources; s; s = s->next)
    if (strcmp(s->file, file) == 0)
      return s;
  return NULL;
}

// Prints line `line` of `source` and a caret under column `col`.
static void write_caret(FILE *out, const attn_diag_source *source, uint32_t line, uint32_t col) {
  const char *p = source->text, *end = source->text + source->length;
  for (uint32_t l = 1; l < line && p < end; p++)
    if (*p == '\n')
      l++;
  if (p >= end && line > 1)
    return;
  const char *eol = memchr(p, '\n', (size_t)(end - p));
  if (!eol)
    eol = end;
  fprintf(out, "  %.*s\n  ", (int)(eol - p), p);
  for (uint32_t c = 1; c < col && p + c - 1 < eol; c++)
    fputc(p[c - 1] == '\t' ? '\t' : ' ', out);
  fputs("^\n", out);
}

void attn_diag_write(const attn_diag *diag, FILE *out) {
  static const char *const severity_names[] = {"error", "warning", "note"};
  for (size_t i = 0; i < diag->count; i++) {
    const attn_diagnostic *d = &diag->items[i];
    if (d->loc.file && d->loc.line)
      fprintf(out, "%s:%u:%u: ", d->loc.file, d->loc.line, d->loc.col);
    else if (d->loc.file)
      fprintf(out, "%s: ", d->loc.file);
    fprintf(out, "%s: %s\n", severity_names[d->severity], d->message);
    const attn_diag_source *source =
        d->loc.file && d->loc.line ? find_source(diag, d->loc.file) : NULL;
    if (source)
      write_caret(out, source, d->loc.line, d->loc.col);
  }
  if (diag->lost_messages)
    fputs("error: further messages were lost: out of memory\n", out);
}
