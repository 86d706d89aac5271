// The safetensors writer: the header's JSON written by hand, names escaped, tensors in the
// order of their names. Apart from the reader (safetensors.c) because only the compiler writes
// weights; deployed programs only read them.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tensor/io.h"
#include "runtime/tensor/json.h"
#include "runtime/tensor/safetensors.h"

// A growing text buffer from the allocator; `is_failed` sticks once memory runs out.
typedef struct text_buffer {
  attn_allocator allocator;
  char *text;
  size_t length;
  size_t capacity;
  bool is_failed;
} text_buffer;

static void append(text_buffer *buffer, const char *text, size_t length) {
  if (buffer->is_failed)
    return;
  void *items = buffer->text;
  if (!attn_array_reserve(buffer->allocator, &items, &buffer->capacity, buffer->length + length,
                          1)) {
    buffer->is_failed = true;
    return;
  }
  buffer->text = items;
  memcpy(buffer->text + buffer->length, text, length);
  buffer->length += length;
}

static void append_text(text_buffer *buffer, const char *text) {
  append(buffer, text, strlen(text));
}

// The two-character escape JSON has for `c`, or NULL.
static const char *short_escape(unsigned char c) {
  switch (c) {
  case '"':
    return "\\\"";
  case '\\':
    return "\\\\";
  case '\b':
    return "\\b";
  case '\f':
    return "\\f";
  case '\n':
    return "\\n";
  case '\r':
    return "\\r";
  case '\t':
    return "\\t";
  default:
    return NULL;
  }
}

// Writes `text` (checked to be UTF-8) as a JSON string: the quote, the backslash and control
// characters are escaped; every other byte is copied, as JSON allows.
static void append_json_string(text_buffer *buffer, const char *text) {
  append(buffer, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
    const char *escape = short_escape(*p);
    if (escape) {
      append(buffer, escape, 2);
    } else if (*p < 0x20) {
      char escaped[8];
      snprintf(escaped, sizeof(escaped), "\\u%04x", *p);
      append(buffer, escaped, 6);
    } else {
      append(buffer, (const char *)p, 1);
    }
  }
  append(buffer, "\"", 1);
}

static int compare_by_name(const void *a, const void *b) {
  const attn_named_tensor *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

// Larger elements first, then the given order: every offset is then a multiple of its
// tensor's element size, since all sizes are powers of two.
static int compare_by_element_size(const void *a, const void *b) {
  const attn_named_tensor *const *x = a, *const *y = b;
  size_t sx = attn_dtype_size((*x)->tensor.dtype), sy = attn_dtype_size((*y)->tensor.dtype);
  if (sx != sy)
    return sx > sy ? -1 : 1;
  return *x < *y ? -1 : *x > *y;
}

static attn_status write_file(const char *path, const text_buffer *header,
                              const attn_named_tensor *const *order, size_t count,
                              attn_diag *diag) {
  attn_loc loc = {path, 0, 0};
  FILE *out = fopen(path, "wb");
  if (!out)
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot create: %s", strerror(errno));
  unsigned char length[8];
  for (int i = 0; i < 8; i++)
    length[i] = (unsigned char)((unsigned long long)header->length >> (8 * i));
  bool ok = fwrite(length, 1, 8, out) == 8 &&
            fwrite(header->text, 1, header->length, out) == header->length;
  for (size_t i = 0; ok && i < count; i++) {
    size_t size = 0;
    attn_tensor_size_bytes(&order[i]->tensor, &size);
    ok =
        attn_io_write_le(out, order[i]->tensor.data, size, attn_dtype_size(order[i]->tensor.dtype));
  }
  return attn_io_finish_write(out, path, ok, diag);
}

attn_status attn_safetensors_write(const char *path, const attn_named_tensor *tensors,
                                   size_t tensor_count, attn_allocator allocator, attn_diag *diag) {
  attn_loc loc = {path, 0, 0};
  for (size_t i = 0; i < tensor_count; i++) {
    const attn_named_tensor *t = &tensors[i];
    size_t size;
    if (!t->name || !*t->name || strcmp(t->name, "__metadata__") == 0)
      return attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "tensor %zu has an empty or reserved name", i);
    // JSON text is UTF-8; other bytes cannot be escaped, and readers refuse them.
    if (!attn_json_is_utf8(t->name, strlen(t->name)))
      return attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "tensor %zu: the name is not valid UTF-8", i);
    if (!attn_safetensors_dtype_name(t->tensor.dtype) || t->tensor.rank > ATTN_MAX_RANK ||
        !attn_tensor_size_bytes(&t->tensor, &size) || (size > 0 && !t->tensor.data))
      return attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "tensor '%s' is invalid (bad dtype, rank, shape or data)", t->name);
  }

  size_t order_size = (tensor_count ? tensor_count : 1) * sizeof(attn_named_tensor *);
  const attn_named_tensor **by_name = attn_allocator_alloc(allocator, order_size);
  const attn_named_tensor **by_offset = attn_allocator_alloc(allocator, order_size);
  uint64_t *begins = attn_allocator_calloc(allocator, tensor_count ? tensor_count : 1, 8);
  text_buffer header = {allocator, NULL, 0, 0, false};
  attn_status status = ATTN_OK;
  if (!by_name || !by_offset || !begins) {
    status = attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    goto cleanup;
  }
  for (size_t i = 0; i < tensor_count; i++)
    by_name[i] = by_offset[i] = &tensors[i];
  qsort(by_name, tensor_count, sizeof(*by_name), compare_by_name);
  qsort(by_offset, tensor_count, sizeof(*by_offset), compare_by_element_size);
  for (size_t i = 1; i < tensor_count; i++) {
    if (strcmp(by_name[i - 1]->name, by_name[i]->name) == 0) {
      status = attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                               "tensor name '%s' is used twice", by_name[i]->name);
      goto cleanup;
    }
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensor_count; i++) {
    size_t size = 0;
    attn_tensor_size_bytes(&by_offset[i]->tensor, &size);
    begins[by_offset[i] - tensors] = offset;
    offset += size;
  }

  // The keys are written sorted, as the reference writer does.
  append_text(&header, "{");
  for (size_t i = 0; i < tensor_count; i++) {
    const attn_named_tensor *t = by_name[i];
    size_t size = 0;
    attn_tensor_size_bytes(&t->tensor, &size);
    uint64_t begin = begins[t - tensors];
    char text[64];
    if (i > 0)
      append_text(&header, ",");
    append_json_string(&header, t->name);
    append_text(&header, ":{\"dtype\":\"");
    append_text(&header, attn_safetensors_dtype_name(t->tensor.dtype));
    append_text(&header, "\",\"shape\":[");
    for (uint32_t k = 0; k < t->tensor.rank; k++) {
      snprintf(text, sizeof(text), "%s%lld", k ? "," : "", (long long)t->tensor.dims[k]);
      append_text(&header, text);
    }
    snprintf(text, sizeof(text), "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)begin,
             (unsigned long long)(begin + size));
    append_text(&header, text);
  }
  append_text(&header, "}");
  // Pad with spaces so the data starts 8-byte aligned.
  while (!header.is_failed && header.length % 8 != 0)
    append_text(&header, " ");
  if (header.is_failed) {
    status = attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    goto cleanup;
  }
  status = write_file(path, &header, by_offset, tensor_count, diag);

cleanup:
  attn_allocator_free(allocator, header.text, header.capacity);
  attn_allocator_free(allocator, begins, (tensor_count ? tensor_count : 1) * 8);
  attn_allocator_free(allocator, by_offset, order_size);
  attn_allocator_free(allocator, by_name, order_size);
  return status;
}
