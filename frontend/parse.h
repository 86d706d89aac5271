// The .attn front end: text to one flat, verified graph (docs/language.md). `let` values and
// `config.*` are folded, `def` calls inlined with their weight-name prefixes, `repeat` loops
// unrolled; every node records the file:line:col of the call that made it.
#ifndef ATTN_FRONTEND_PARSE_H_
#define ATTN_FRONTEND_PARSE_H_

#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/tensor/weights.h"

typedef struct attn_parse_options {
  // The model's config.json, read by `config.*`; may be NULL (every key is then missing).
  const attn_config *config;
  // Limits against hostile input; 0 takes the default. A file that exceeds one fails with
  // ATTN_ERROR_PARSE naming the limit.
  uint32_t max_nodes; // nodes in the expanded graph (default 1 << 20)
  uint64_t max_steps; // statements and expressions evaluated while expanding (default 1 << 24)
} attn_parse_options;

// Parses `length` bytes of `text` (need not be NUL-terminated); `file_name` is used in
// locations and messages. `options` may be NULL. On success `*out_graph` is a new graph that
// passed attn_graph_verify, whose errors go to `diag` (which must outlive it); destroy it with
// attn_graph_destroy. On failure `*out_graph` is NULL and `diag` holds one error at the
// offending location (plus notes naming the subgraph calls it happened in); the status is
// ATTN_ERROR_PARSE (syntax, names, values, config keys), ATTN_ERROR_INVALID_GRAPH (shape
// inference), or ATTN_ERROR_OUT_OF_MEMORY. The text is registered with `diag` so that messages
// print with the source line and a caret.
attn_status attn_parse_text(const char *file_name, const char *text, size_t length,
                            const attn_parse_options *options, attn_allocator allocator,
                            attn_diag *diag, attn_graph **out_graph) ATTN_MUST_USE;

// Reads the file at `path` (ATTN_ERROR_IO when it cannot be read) and parses it as above.
attn_status attn_parse_file(const char *path, const attn_parse_options *options,
                            attn_allocator allocator, attn_diag *diag,
                            attn_graph **out_graph) ATTN_MUST_USE;

#endif // ATTN_FRONTEND_PARSE_H_
