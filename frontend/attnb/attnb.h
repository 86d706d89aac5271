// .attnb: the graph IR as a protobuf file (frontend/attnb/attnb.proto, docs/attnb.md). It holds
// what the .attn text holds (symbols, dims, values, nodes with their attributes, inputs,
// outputs, locations) and also the partition and the memory plan when the graph has them, so
// that a graph read back prints the same text as the graph written.
//
// This file is the one place where protobuf-c's conventions meet ours (STYLE.md §1.5).
#ifndef ATTN_FRONTEND_ATTNB_ATTNB_H_
#define ATTN_FRONTEND_ATTNB_ATTNB_H_

#include <stddef.h>

#include "ir/ir.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"

// The format version this build writes, and the newest it reads.
enum { ATTN_ATTNB_FORMAT_VERSION = 1 };
// "ATNB" read as a little-endian 32-bit word: the first and the last field of every file.
#define ATTN_ATTNB_MAGIC 0x424e5441u

// Serialises `graph` (its live nodes; dead ones are dropped, as attn_graph_compact would) into
// a block from `allocator`: free it with attn_allocator_free(allocator, *out_bytes, *out_size).
// Errors (ATTN_ERROR_OUT_OF_MEMORY, ATTN_ERROR_INVALID_GRAPH for a graph that breaks the IR's
// invariants) go to `diag`.
attn_status attn_attnb_write_memory(const attn_graph *graph, attn_allocator allocator,
                                    attn_diag *diag, void **out_bytes,
                                    size_t *out_size) ATTN_MUST_USE;

// Writes `graph` to the file at `path`; ATTN_ERROR_IO when it cannot be written (no partial
// file is left behind).
attn_status attn_attnb_write(const attn_graph *graph, const char *path,
                             attn_diag *diag) ATTN_MUST_USE;

// Reads `size` bytes of an .attnb file; `name` (the file's path) is where every error is
// reported. Nothing in the bytes is trusted: indices, names, attribute kinds and sizes are
// checked, and the graph must pass attn_graph_verify (shape inference included). On success
// `*out_graph` is a new graph whose errors go to `diag` (which must outlive it); on failure it
// is NULL and `diag` holds one error naming `name`: ATTN_ERROR_PARSE (not .attnb, truncated or
// malformed), ATTN_ERROR_UNSUPPORTED (a newer format version), ATTN_ERROR_INVALID_GRAPH (the
// graph fails the verifier) or ATTN_ERROR_OUT_OF_MEMORY.
attn_status attn_attnb_read_memory(const char *name, const void *bytes, size_t size,
                                   attn_allocator allocator, attn_diag *diag,
                                   attn_graph **out_graph) ATTN_MUST_USE;

// Reads the file at `path` (ATTN_ERROR_IO when it cannot be read), as above.
attn_status attn_attnb_read(const char *path, attn_allocator allocator, attn_diag *diag,
                            attn_graph **out_graph) ATTN_MUST_USE;

#endif // ATTN_FRONTEND_ATTNB_ATTNB_H_
