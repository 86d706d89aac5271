// A small, strict JSON reader (RFC 8259) for the headers of the files the runtime loads, so
// that reading them needs no library beyond libc. attn_json_parse reads one value from a byte
// range into a document: a flat array of values in document order (a container's elements
// follow it, each linked to the next) and one buffer holding every string, decoded and
// NUL-terminated, and every number's text. The document owns its memory and does not refer to
// the input afterwards. Strictness: UTF-8 only, no byte order mark, comments, trailing commas,
// leading zeros, lone surrogates or control characters in strings. Hostile input is bounded by a
// nesting depth and a value count, and a document must be shorter than 4 GiB.
// Errors come back as a code and a byte offset rather than a diagnostic, so the caller can
// phrase the message in its own terms (which file, which header).
// Thread safety: there is no shared state; a document may be read from any number of threads.
#ifndef ATTN_RUNTIME_TENSOR_JSON_H_
#define ATTN_RUNTIME_TENSOR_JSON_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"

typedef enum attn_json_kind {
  ATTN_JSON_NULL,
  ATTN_JSON_FALSE,
  ATTN_JSON_TRUE,
  ATTN_JSON_NUMBER,
  ATTN_JSON_STRING,
  ATTN_JSON_ARRAY,
  ATTN_JSON_OBJECT,
} attn_json_kind;

// One value of a document. Read it through the functions below; the fields are the document's.
typedef struct attn_json_value {
  attn_json_kind kind;
  uint32_t count;      // ARRAY: elements; OBJECT: members; STRING, NUMBER: bytes of text
  uint32_t begin;      // the value's first byte in the input
  uint32_t next;       // index of the next element or member of the same container; 0: none
  uint32_t text;       // STRING, NUMBER: offset of the text in the document's text buffer
  uint32_t key;        // member of an OBJECT: offset of the decoded name in the text buffer
  uint32_t key_length; // its length in bytes
  bool is_member;      // whether `key` is set
} attn_json_value;

typedef struct attn_json_document {
  attn_allocator allocator;
  attn_json_value *values; // values[0] is the root
  size_t count;
  size_t capacity;
  char *text; // strings and number texts, each followed by a NUL
  size_t text_length;
  size_t text_capacity;
} attn_json_document;

typedef struct attn_json_limits {
  uint32_t max_depth;  // containers nested in each other; the root container is depth 1
  uint32_t max_values; // values in the whole document, containers and members included
} attn_json_limits;

// The limits used when attn_json_parse gets NULL: deep and large enough for any header the
// runtime reads, small enough that a hostile document cannot exhaust the stack or memory.
#define ATTN_JSON_DEFAULT_MAX_DEPTH  64
#define ATTN_JSON_DEFAULT_MAX_VALUES (1u << 24)

typedef enum attn_json_error_code {
  ATTN_JSON_ERROR_NONE,
  ATTN_JSON_ERROR_SYNTAX,   // not JSON (bad token, escape, UTF-8, number, ...)
  ATTN_JSON_ERROR_TRAILING, // a complete value followed by something other than whitespace
  ATTN_JSON_ERROR_LIMIT,    // deeper, larger or with more values than the limits allow
  ATTN_JSON_ERROR_MEMORY,   // the allocator refused
} attn_json_error_code;

typedef struct attn_json_error {
  attn_json_error_code code;
  size_t offset;       // byte of the input where reading stopped
  const char *message; // a static phrase, such as "expected ':' after an object key"
} attn_json_error;

// Parses `size_bytes` bytes at `bytes` (no NUL needed) as one JSON value with optional
// whitespace around it. `limits` may be NULL for the defaults. On ATTN_OK, `out_document` holds
// the result and must be released with attn_json_document_deinit. On failure nothing is held
// (deinit is still allowed), `out_error` says where and why, and the status is
// ATTN_ERROR_OUT_OF_MEMORY when the allocator refused, else ATTN_ERROR_PARSE.
attn_status attn_json_parse(const void *bytes, size_t size_bytes, const attn_json_limits *limits,
                            attn_allocator allocator, attn_json_document *out_document,
                            attn_json_error *out_error) ATTN_MUST_USE;
void attn_json_document_deinit(attn_json_document *document);

// The top-level value.
const attn_json_value *attn_json_root(const attn_json_document *document);
// The first element of an array or member of an object; NULL when empty or not a container.
const attn_json_value *attn_json_first(const attn_json_document *document,
                                       const attn_json_value *container);
// The element or member after `value` in its container; NULL after the last.
const attn_json_value *attn_json_next(const attn_json_document *document,
                                      const attn_json_value *value);
// The first member of `object` named `name` (compared bytewise after decoding); NULL when
// absent or `object` is not an object. Duplicate names are kept; callers decide about them.
const attn_json_value *attn_json_get(const attn_json_document *document,
                                     const attn_json_value *object, const char *name);
// The decoded text of a STRING, or the literal text of a NUMBER, NUL-terminated and borrowed
// from the document; NULL for other kinds. `out_length` (may be NULL) receives the length,
// which tells a string holding "\u0000" from a shorter one.
const char *attn_json_text(const attn_json_document *document, const attn_json_value *value,
                           size_t *out_length);
// The decoded name of an object member, as attn_json_text; NULL when `value` is not a member.
const char *attn_json_key(const attn_json_document *document, const attn_json_value *value,
                          size_t *out_length);

typedef enum attn_json_integer_status {
  ATTN_JSON_INTEGER_OK,
  ATTN_JSON_INTEGER_NOT_NUMBER,
  ATTN_JSON_INTEGER_NOT_INTEGER, // has a fractional part, as 1.5 or 25e-1
  ATTN_JSON_INTEGER_NEGATIVE,
  ATTN_JSON_INTEGER_TOO_LARGE, // above `max`
} attn_json_integer_status;

// Reads a NUMBER as an exact non-negative integer no larger than `max`. The number's decimal
// value decides, not its spelling: 2, 2.0 and 0.2e1 all give 2, and -0 gives 0. Nothing goes
// through a double, so every integer up to UINT64_MAX is exact.
attn_json_integer_status attn_json_get_uint64(const attn_json_document *document,
                                              const attn_json_value *value, uint64_t max,
                                              uint64_t *out_value);

// Whether `length` bytes at `text` are well-formed UTF-8 (no overlong forms, surrogates or code
// points above U+10FFFF), which a JSON writer must check before copying bytes into a string.
bool attn_json_is_utf8(const char *text, size_t length);

#endif // ATTN_RUNTIME_TENSOR_JSON_H_
