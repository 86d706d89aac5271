// NumPy .npy reader and writer. The header is a Python dict literal; it is parsed by a small
// lexer that accepts exactly what NumPy writes (strings, True/False, tuples of integers) and
// checks every size against the file before anything is allocated.
#include "runtime/tensor/npy.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "runtime/tensor/io.h"

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

// What the header dict says.
typedef struct npy_header {
  attn_dtype dtype;
  bool needs_swap; // data is in the other byte order than the host's
  bool is_fortran_order;
  uint32_t rank;
  int64_t dims[ATTN_MAX_RANK];
  char descr[16]; // for messages
} npy_header;

typedef struct npy_lexer {
  const char *p;
  const char *end;
  const char *name; // file, for messages
  attn_diag *diag;
} npy_lexer;

static attn_status header_error(npy_lexer *lex, const char *what) {
  return attn_diag_error(lex->diag, (attn_loc){lex->name, 0, 0}, ATTN_ERROR_PARSE,
                         "bad .npy header: %s", what);
}

static void skip_space(npy_lexer *lex) {
  while (lex->p < lex->end &&
         (*lex->p == ' ' || *lex->p == '\t' || *lex->p == '\n' || *lex->p == '\r'))
    lex->p++;
}

// Skips spaces and consumes `c` if it comes next.
static bool accept(npy_lexer *lex, char c) {
  skip_space(lex);
  if (lex->p < lex->end && *lex->p == c) {
    lex->p++;
    return true;
  }
  return false;
}

// A '...' or "..." string without escapes; the result points into the header.
static attn_status lex_string(npy_lexer *lex, const char **out_text, size_t *out_length) {
  skip_space(lex);
  if (lex->p >= lex->end || (*lex->p != '\'' && *lex->p != '"'))
    return header_error(lex, "expected a quoted string");
  char quote = *lex->p++;
  const char *start = lex->p;
  while (lex->p < lex->end && *lex->p != quote) {
    if (*lex->p == '\\')
      return header_error(lex, "escapes in strings are not supported");
    lex->p++;
  }
  if (lex->p >= lex->end)
    return header_error(lex, "unterminated string");
  *out_text = start;
  *out_length = (size_t)(lex->p - start);
  lex->p++;
  return ATTN_OK;
}

static bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

static attn_status lex_bool(npy_lexer *lex, bool *out_value) {
  skip_space(lex);
  size_t left = (size_t)(lex->end - lex->p);
  size_t length = 0;
  if (left >= 4 && memcmp(lex->p, "True", 4) == 0) {
    *out_value = true;
    length = 4;
  } else if (left >= 5 && memcmp(lex->p, "False", 5) == 0) {
    *out_value = false;
    length = 5;
  }
  if (length == 0 || (length < left && is_word_char(lex->p[length])))
    return header_error(lex, "'fortran_order' must be True or False");
  lex->p += length;
  return ATTN_OK;
}

// A non-negative decimal integer, with the 'L' suffix Python 2 wrote for longs.
static attn_status lex_dim(npy_lexer *lex, int64_t *out_dim) {
  skip_space(lex);
  if (lex->p < lex->end && *lex->p == '-')
    return header_error(lex, "negative dimension in 'shape'");
  if (lex->p >= lex->end || *lex->p < '0' || *lex->p > '9')
    return header_error(lex, "'shape' must be a tuple of integers");
  int64_t value = 0;
  while (lex->p < lex->end && *lex->p >= '0' && *lex->p <= '9') {
    int digit = *lex->p++ - '0';
    if (value > (INT64_MAX - digit) / 10)
      return header_error(lex, "dimension in 'shape' is too large");
    value = value * 10 + digit;
  }
  if (lex->p < lex->end && (*lex->p == 'L' || *lex->p == 'l'))
    lex->p++;
  if (lex->p < lex->end && (is_word_char(*lex->p) || *lex->p == '.'))
    return header_error(lex, "'shape' must be a tuple of integers");
  *out_dim = value;
  return ATTN_OK;
}

// "(2, 3)", "(3,)" or "()". A parenthesised lone integer "(3)" is not a tuple in Python.
static attn_status lex_shape(npy_lexer *lex, npy_header *header) {
  if (!accept(lex, '('))
    return header_error(lex, "'shape' must be a tuple of integers");
  uint32_t rank = 0;
  bool has_comma = false;
  while (!accept(lex, ')')) {
    if (rank == ATTN_MAX_RANK)
      return attn_diag_error(lex->diag, (attn_loc){lex->name, 0, 0}, ATTN_ERROR_UNSUPPORTED,
                             "rank is more than %d, the most attnc supports", ATTN_MAX_RANK);
    ATTN_RETURN_IF_ERROR(lex_dim(lex, &header->dims[rank]));
    rank++;
    if (accept(lex, ',')) {
      has_comma = true;
      continue;
    }
    if (!accept(lex, ')'))
      return header_error(lex, "expected ',' or ')' in 'shape'");
    break;
  }
  if (rank == 1 && !has_comma)
    return header_error(lex, "'shape' (N) is not a tuple; NumPy writes (N,)");
  header->rank = rank;
  return ATTN_OK;
}

// Decodes a descr such as '<f4'. NumPy's '|' means "byte order not applicable" and '=' the
// writer's native order; both are read as host order.
static attn_status parse_descr(npy_lexer *lex, const char *text, size_t length,
                               npy_header *header) {
  snprintf(header->descr, sizeof(header->descr), "%.*s", (int)(length < 15 ? length : 15), text);
  static const struct {
    const char *code;
    attn_dtype dtype;
  } codes[] = {{"f4", ATTN_DTYPE_F32}, {"f2", ATTN_DTYPE_F16}, {"i8", ATTN_DTYPE_I64},
               {"i4", ATTN_DTYPE_I32}, {"i1", ATTN_DTYPE_I8},  {"b1", ATTN_DTYPE_BOOL}};
  char order = '=';
  if (length > 0 && strchr("<>|=", text[0])) {
    order = text[0];
    text++;
    length--;
  }
  for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    if (length != 2 || memcmp(text, codes[i].code, 2) != 0)
      continue;
    header->dtype = codes[i].dtype;
    bool is_little = attn_io_host_is_little_endian();
    header->needs_swap = (order == '<' && !is_little) || (order == '>' && is_little);
    return ATTN_OK;
  }
  return attn_diag_error(lex->diag, (attn_loc){lex->name, 0, 0}, ATTN_ERROR_UNSUPPORTED,
                         "dtype '%s' is not supported (attnc reads f4 f2 i8 i4 i1 b1)",
                         header->descr);
}

// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
static attn_status parse_header_dict(npy_lexer *lex, npy_header *header) {
  bool has_descr = false, has_order = false, has_shape = false;
  if (!accept(lex, '{'))
    return header_error(lex, "expected '{'");
  while (!accept(lex, '}')) {
    const char *key;
    size_t key_length;
    ATTN_RETURN_IF_ERROR(lex_string(lex, &key, &key_length));
    if (!accept(lex, ':'))
      return header_error(lex, "expected ':' after a key");
    bool *seen;
    if (key_length == 5 && memcmp(key, "descr", 5) == 0) {
      seen = &has_descr;
      skip_space(lex);
      if (lex->p < lex->end && *lex->p == '[')
        return attn_diag_error(lex->diag, (attn_loc){lex->name, 0, 0}, ATTN_ERROR_UNSUPPORTED,
                               "structured dtypes are not supported");
      const char *descr;
      size_t descr_length;
      ATTN_RETURN_IF_ERROR(lex_string(lex, &descr, &descr_length));
      if (!has_descr)
        ATTN_RETURN_IF_ERROR(parse_descr(lex, descr, descr_length, header));
    } else if (key_length == 13 && memcmp(key, "fortran_order", 13) == 0) {
      seen = &has_order;
      ATTN_RETURN_IF_ERROR(lex_bool(lex, &header->is_fortran_order));
    } else if (key_length == 5 && memcmp(key, "shape", 5) == 0) {
      seen = &has_shape;
      ATTN_RETURN_IF_ERROR(lex_shape(lex, header));
    } else {
      return attn_diag_error(lex->diag, (attn_loc){lex->name, 0, 0}, ATTN_ERROR_PARSE,
                             "bad .npy header: unexpected key '%.*s'",
                             (int)(key_length < 64 ? key_length : 64), key);
    }
    if (*seen)
      return attn_diag_error(lex->diag, (attn_loc){lex->name, 0, 0}, ATTN_ERROR_PARSE,
                             "bad .npy header: key '%.*s' appears twice", (int)key_length, key);
    *seen = true;
    if (!accept(lex, ',')) {
      if (!accept(lex, '}'))
        return header_error(lex, "expected ',' or '}'");
      break;
    }
  }
  skip_space(lex);
  if (lex->p != lex->end)
    return header_error(lex, "unexpected text after the dict");
  if (!has_descr)
    return header_error(lex, "missing key 'descr'");
  if (!has_order)
    return header_error(lex, "missing key 'fortran_order'");
  if (!has_shape)
    return header_error(lex, "missing key 'shape'");
  return ATTN_OK;
}

// Copies Fortran-ordered (column-major) `src` into row-major `dst`. Walks `dst` in order
// with a multi-index and keeps the matching `src` offset up to date.
static void fortran_to_c_order(unsigned char *dst, const unsigned char *src, uint32_t rank,
                               const int64_t *dims, size_t count, size_t element_size) {
  int64_t src_strides[ATTN_MAX_RANK];
  int64_t index[ATTN_MAX_RANK] = {0};
  int64_t stride = 1;
  for (uint32_t k = 0; k < rank; k++) {
    src_strides[k] = stride;
    stride *= dims[k];
  }
  size_t src_offset = 0;
  for (size_t i = 0; i < count; i++) {
    memcpy(dst + i * element_size, src + src_offset * element_size, element_size);
    for (uint32_t k = rank; k-- > 0;) {
      src_offset += (size_t)src_strides[k];
      if (++index[k] < dims[k])
        break;
      src_offset -= (size_t)(src_strides[k] * dims[k]);
      index[k] = 0;
    }
  }
}

static void format_shape(const npy_header *header, char *buffer, size_t size) {
  size_t used = (size_t)snprintf(buffer, size, "(");
  for (uint32_t i = 0; i < header->rank && used < size; i++)
    used += (size_t)snprintf(buffer + used, size - used, "%s%lld", i ? ", " : "",
                             (long long)header->dims[i]);
  if (used < size)
    snprintf(buffer + used, size - used, header->rank == 1 ? ",)" : ")");
}

attn_status attn_npy_parse(const void *bytes, size_t size_bytes, const char *name,
                           attn_allocator allocator, attn_diag *diag, attn_tensor *out_tensor) {
  memset(out_tensor, 0, sizeof(*out_tensor));
  attn_loc loc = {name, 0, 0};
  const unsigned char *file = bytes;
  if (size_bytes < 10 || memcmp(file, npy_magic, sizeof(npy_magic)) != 0)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "not a .npy file (bad magic)");
  unsigned major = file[6], minor = file[7];
  size_t header_start;
  unsigned long long header_length;
  if (major == 1) {
    header_start = 10;
    header_length = attn_io_load_le(file + 8, 2);
  } else if (major == 2 || major == 3) {
    if (size_bytes < 12)
      return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "file ends inside the .npy preamble");
    header_start = 12;
    header_length = attn_io_load_le(file + 8, 4);
  } else {
    return attn_diag_error(diag, loc, ATTN_ERROR_UNSUPPORTED,
                           ".npy format version %u.%u is not supported (1.0, 2.0 and 3.0 are)",
                           major, minor);
  }
  if (header_length > size_bytes - header_start)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "header length %llu runs past the end of the file (%zu bytes)",
                           header_length, size_bytes);
  size_t data_start = header_start + (size_t)header_length;

  npy_header header;
  memset(&header, 0, sizeof(header));
  npy_lexer lex = {(const char *)file + header_start, (const char *)file + data_start, name, diag};
  ATTN_RETURN_IF_ERROR(parse_header_dict(&lex, &header));

  char shape_text[8 * 24];
  format_shape(&header, shape_text, sizeof(shape_text));
  int64_t count;
  size_t element_size = attn_dtype_size(header.dtype);
  if (!attn_shape_element_count(header.rank, header.dims, &count) ||
      (uint64_t)count > SIZE_MAX / element_size)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "shape %s is too large", shape_text);
  size_t data_size = (size_t)count * element_size;
  if (data_size != size_bytes - data_start)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "data is %zu bytes, but shape %s of '%s' needs %zu",
                           size_bytes - data_start, shape_text, header.descr, data_size);

  attn_tensor tensor;
  attn_status status =
      attn_tensor_alloc(allocator, header.dtype, header.rank, header.dims, &tensor);
  if (status != ATTN_OK)
    return attn_diag_error(diag, loc, status, "out of memory for a %zu-byte array", data_size);
  const unsigned char *data = file + data_start;
  if (header.is_fortran_order && header.rank > 1)
    fortran_to_c_order(tensor.data, data, header.rank, header.dims, (size_t)count, element_size);
  else if (data_size > 0)
    memcpy(tensor.data, data, data_size);
  if (header.needs_swap)
    attn_io_byteswap(tensor.data, (size_t)count, element_size);
  // NumPy bools are bytes; anything but 0 is true. Normalise so consumers can compare to 1.
  if (header.dtype == ATTN_DTYPE_BOOL) {
    unsigned char *b = tensor.data;
    for (size_t i = 0; i < data_size; i++)
      b[i] = b[i] != 0;
  }
  *out_tensor = tensor;
  return ATTN_OK;
}

attn_status attn_npy_read(const char *path, attn_allocator allocator, attn_diag *diag,
                          attn_tensor *out_tensor) {
  memset(out_tensor, 0, sizeof(*out_tensor));
  char *bytes;
  size_t size;
  ATTN_RETURN_IF_ERROR(attn_io_read_file(path, allocator, diag, &bytes, &size));
  attn_status status = attn_npy_parse(bytes, size, path, allocator, diag, out_tensor);
  attn_allocator_free(allocator, bytes, size + 1);
  return status;
}

// The descr NumPy writes for each dtype, little-endian.
static const char *npy_descr(attn_dtype dtype) {
  switch (dtype) {
  case ATTN_DTYPE_F32:
    return "<f4";
  case ATTN_DTYPE_F16:
    return "<f2";
  case ATTN_DTYPE_BF16:
    return "<u2";
  case ATTN_DTYPE_I64:
    return "<i8";
  case ATTN_DTYPE_I32:
    return "<i4";
  case ATTN_DTYPE_I8:
    return "|i1";
  case ATTN_DTYPE_BOOL:
    return "|b1";
  case ATTN_DTYPE_COUNT:
    break;
  }
  return NULL;
}

attn_status attn_npy_write(const char *path, const attn_tensor *tensor, attn_diag *diag) {
  attn_loc loc = {path, 0, 0};
  const char *descr = npy_descr(tensor->dtype);
  size_t data_size;
  if (!descr || tensor->rank > ATTN_MAX_RANK || !attn_tensor_size_bytes(tensor, &data_size) ||
      (data_size > 0 && !tensor->data))
    return attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "cannot write an invalid tensor (bad dtype, rank or shape)");
  if (tensor->dtype == ATTN_DTYPE_BF16)
    attn_diag_warning(diag, loc,
                      "NumPy has no bfloat16; writing the raw bits as '<u2' (view them with "
                      "a bfloat16 dtype, e.g. ml_dtypes.bfloat16)");

  // Header: the dict, padded with spaces and a final newline so the data starts at a multiple
  // of 64 bytes, as NumPy does.
  char header[512];
  int used =
      snprintf(header, sizeof(header), "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  for (uint32_t i = 0; i < tensor->rank; i++)
    used += snprintf(header + used, sizeof(header) - (size_t)used, "%s%lld", i ? ", " : "",
                     (long long)tensor->dims[i]);
  used += snprintf(header + used, sizeof(header) - (size_t)used, "%s), }",
                   tensor->rank == 1 ? "," : "");
  size_t length = (size_t)used;
  size_t total = (10 + length + 1 + 63) / 64 * 64;
  memset(header + length, ' ', total - 10 - length);
  header[total - 10 - 1] = '\n';
  length = total - 10;

  unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  preamble[8] = (unsigned char)(length & 0xff);
  preamble[9] = (unsigned char)(length >> 8);

  FILE *out = fopen(path, "wb");
  if (!out)
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot create: %s", strerror(errno));
  bool ok = fwrite(preamble, 1, sizeof(preamble), out) == sizeof(preamble) &&
            fwrite(header, 1, length, out) == length &&
            attn_io_write_le(out, tensor->data, data_size, attn_dtype_size(tensor->dtype));
  return attn_io_finish_write(out, path, ok, diag);
}
