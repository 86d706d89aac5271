// The strict JSON reader: recursive descent over the input, one value appended to the document
// per JSON value in document order. Recursion is bounded by the depth limit, memory by the value
// limit and the input size (decoded text is never longer than its source).
#include "runtime/tensor/json.h"

#include <string.h>

typedef struct json_parser {
  const unsigned char *bytes;
  size_t size;
  size_t at;
  attn_json_limits limits;
  attn_json_document *document;
  attn_json_error *error;
} json_parser;

// Records the first error; every parse function returns false after calling it.
static bool fail(json_parser *parser, attn_json_error_code code, size_t offset,
                 const char *message) {
  *parser->error = (attn_json_error){code, offset, message};
  return false;
}

static bool fail_syntax(json_parser *parser, size_t offset, const char *message) {
  return fail(parser, ATTN_JSON_ERROR_SYNTAX, offset, message);
}

static void skip_whitespace(json_parser *parser) {
  while (parser->at < parser->size) {
    unsigned char c = parser->bytes[parser->at];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      return;
    parser->at++;
  }
}

// Appends a value and returns its index through `out_index`. Indices, not pointers, are kept
// while parsing because the array moves as it grows.
static bool add_value(json_parser *parser, attn_json_kind kind, uint32_t *out_index) {
  attn_json_document *document = parser->document;
  if (document->count >= parser->limits.max_values)
    return fail(parser, ATTN_JSON_ERROR_LIMIT, parser->at, "more values than the limit allows");
  void *items = document->values;
  if (!attn_array_reserve(document->allocator, &items, &document->capacity, document->count + 1,
                          sizeof(attn_json_value)))
    return fail(parser, ATTN_JSON_ERROR_MEMORY, parser->at, "out of memory");
  document->values = items;
  *out_index = (uint32_t)document->count++;
  document->values[*out_index] = (attn_json_value){.kind = kind, .begin = (uint32_t)parser->at};
  return true;
}

static bool append_text(json_parser *parser, const void *text, size_t length) {
  attn_json_document *document = parser->document;
  if (length == 0) // the buffer may not exist yet, and memcpy wants a real pointer
    return true;
  void *items = document->text;
  if (!attn_array_reserve(document->allocator, &items, &document->text_capacity,
                          document->text_length + length, 1))
    return fail(parser, ATTN_JSON_ERROR_MEMORY, parser->at, "out of memory");
  document->text = items;
  memcpy(document->text + document->text_length, text, length);
  document->text_length += length;
  return true;
}

// Length of the UTF-8 sequence starting `bytes` (at most `available` bytes), or 0 when it is
// not well-formed (RFC 3629 table: no overlongs, no surrogates, nothing above U+10FFFF).
static size_t utf8_sequence_length(const unsigned char *bytes, size_t available) {
  unsigned char c = bytes[0];
  if (c < 0x80)
    return 1;
  size_t length;
  unsigned char low = 0x80, high = 0xbf; // the allowed range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    length = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    if (c == 0xe0)
      low = 0xa0;
    else if (c == 0xed)
      high = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    if (c == 0xf0)
      low = 0x90;
    else if (c == 0xf4)
      high = 0x8f;
  } else {
    return 0;
  }
  if (available < length || bytes[1] < low || bytes[1] > high)
    return 0;
  for (size_t i = 2; i < length; i++)
    if (bytes[i] < 0x80 || bytes[i] > 0xbf)
      return 0;
  return length;
}

bool attn_json_is_utf8(const char *text, size_t length) {
  const unsigned char *bytes = (const unsigned char *)text;
  size_t at = 0;
  while (at < length) {
    size_t n = utf8_sequence_length(bytes + at, length - at);
    if (n == 0)
      return false;
    at += n;
  }
  return true;
}

// Reads the four hex digits of a \u escape whose 'u' is at `at`.
static bool read_hex4(json_parser *parser, size_t at, uint32_t *out_code) {
  if (parser->size - at < 5)
    return fail_syntax(parser, at - 1, "\\u needs four hex digits");
  uint32_t code = 0;
  for (size_t i = 1; i <= 4; i++) {
    unsigned char c = parser->bytes[at + i];
    uint32_t digit;
    if (c >= '0' && c <= '9')
      digit = c - '0';
    else if (c >= 'a' && c <= 'f')
      digit = c - 'a' + 10u;
    else if (c >= 'A' && c <= 'F')
      digit = c - 'A' + 10u;
    else
      return fail_syntax(parser, at - 1, "\\u needs four hex digits");
    code = code << 4 | digit;
  }
  *out_code = code;
  return true;
}

static size_t encode_utf8(uint32_t code, unsigned char *out) {
  if (code < 0x80) {
    out[0] = (unsigned char)code;
    return 1;
  }
  if (code < 0x800) {
    out[0] = (unsigned char)(0xc0 | code >> 6);
    out[1] = (unsigned char)(0x80 | (code & 0x3f));
    return 2;
  }
  if (code < 0x10000) {
    out[0] = (unsigned char)(0xe0 | code >> 12);
    out[1] = (unsigned char)(0x80 | (code >> 6 & 0x3f));
    out[2] = (unsigned char)(0x80 | (code & 0x3f));
    return 3;
  }
  out[0] = (unsigned char)(0xf0 | code >> 18);
  out[1] = (unsigned char)(0x80 | (code >> 12 & 0x3f));
  out[2] = (unsigned char)(0x80 | (code >> 6 & 0x3f));
  out[3] = (unsigned char)(0x80 | (code & 0x3f));
  return 4;
}

// Decodes the escape whose backslash is at parser->at and appends it; advances past it.
static bool read_escape(json_parser *parser) {
  size_t start = parser->at;
  if (parser->size - start < 2)
    return fail_syntax(parser, start, "unterminated string");
  unsigned char c = parser->bytes[start + 1], simple;
  switch (c) {
  case '"':
  case '\\':
  case '/':
    simple = c;
    break;
  case 'b':
    simple = '\b';
    break;
  case 'f':
    simple = '\f';
    break;
  case 'n':
    simple = '\n';
    break;
  case 'r':
    simple = '\r';
    break;
  case 't':
    simple = '\t';
    break;
  case 'u': {
    uint32_t code;
    if (!read_hex4(parser, start + 1, &code))
      return false;
    parser->at = start + 6;
    if (code >= 0xdc00 && code <= 0xdfff)
      return fail_syntax(parser, start, "a low surrogate \\u escape without a high one before it");
    if (code >= 0xd800 && code <= 0xdbff) {
      // UTF-16 surrogate pair: the low half must follow at once as another \u escape.
      size_t second = parser->at;
      uint32_t low;
      if (parser->size - second < 2 || parser->bytes[second] != '\\' ||
          parser->bytes[second + 1] != 'u')
        return fail_syntax(parser, start, "a high surrogate \\u escape without a low one after it");
      if (!read_hex4(parser, second + 1, &low))
        return false;
      if (low < 0xdc00 || low > 0xdfff)
        return fail_syntax(parser, start, "a high surrogate \\u escape without a low one after it");
      code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
      parser->at = second + 6;
    }
    unsigned char encoded[4];
    return append_text(parser, encoded, encode_utf8(code, encoded));
  }
  default:
    return fail_syntax(parser, start, "unknown escape in a string");
  }
  parser->at = start + 2;
  return append_text(parser, &simple, 1);
}

// Reads the string whose opening quote is at parser->at into the text buffer, NUL-terminated.
static bool read_string(json_parser *parser, uint32_t *out_offset, uint32_t *out_length) {
  size_t open = parser->at++;
  size_t text_start = parser->document->text_length;
  for (;;) {
    // Copy the run of plain bytes up to the next quote, backslash or byte needing a check.
    size_t run = parser->at;
    while (run < parser->size && parser->bytes[run] >= 0x20 && parser->bytes[run] < 0x80 &&
           parser->bytes[run] != '"' && parser->bytes[run] != '\\')
      run++;
    if (!append_text(parser, parser->bytes + parser->at, run - parser->at))
      return false;
    parser->at = run;
    if (parser->at == parser->size)
      return fail_syntax(parser, open, "unterminated string");
    unsigned char c = parser->bytes[parser->at];
    if (c == '"') {
      parser->at++;
      break;
    }
    if (c == '\\') {
      if (!read_escape(parser))
        return false;
    } else if (c < 0x20) {
      return fail_syntax(parser, parser->at, "control character in a string (escape it)");
    } else {
      size_t n = utf8_sequence_length(parser->bytes + parser->at, parser->size - parser->at);
      if (n == 0)
        return fail_syntax(parser, parser->at, "invalid UTF-8 in a string");
      if (!append_text(parser, parser->bytes + parser->at, n))
        return false;
      parser->at += n;
    }
  }
  size_t length = parser->document->text_length - text_start;
  if (!append_text(parser, "", 1))
    return false;
  *out_offset = (uint32_t)text_start;
  *out_length = (uint32_t)length;
  return true;
}

static bool is_digit(const json_parser *parser, size_t at) {
  return at < parser->size && parser->bytes[at] >= '0' && parser->bytes[at] <= '9';
}

// Checks the number grammar of RFC 8259 §6 and keeps the number's text.
static bool read_number(json_parser *parser, uint32_t index) {
  size_t start = parser->at, at = start;
  if (parser->bytes[at] == '-')
    at++;
  if (!is_digit(parser, at))
    return fail_syntax(parser, at, "expected a digit");
  if (parser->bytes[at] == '0') {
    at++;
    if (is_digit(parser, at))
      return fail_syntax(parser, at, "a number with a leading zero");
  } else {
    while (is_digit(parser, at))
      at++;
  }
  if (at < parser->size && parser->bytes[at] == '.') {
    at++;
    if (!is_digit(parser, at))
      return fail_syntax(parser, at, "expected a digit after '.'");
    while (is_digit(parser, at))
      at++;
  }
  if (at < parser->size && (parser->bytes[at] == 'e' || parser->bytes[at] == 'E')) {
    at++;
    if (at < parser->size && (parser->bytes[at] == '+' || parser->bytes[at] == '-'))
      at++;
    if (!is_digit(parser, at))
      return fail_syntax(parser, at, "expected a digit in the exponent");
    while (is_digit(parser, at))
      at++;
  }
  parser->at = at;
  uint32_t offset = (uint32_t)parser->document->text_length;
  if (!append_text(parser, parser->bytes + start, at - start) || !append_text(parser, "", 1))
    return false;
  attn_json_value *value = &parser->document->values[index];
  value->text = offset;
  value->count = (uint32_t)(at - start);
  return true;
}

static bool read_literal(json_parser *parser, const char *word) {
  size_t length = strlen(word);
  if (parser->size - parser->at < length || memcmp(parser->bytes + parser->at, word, length) != 0)
    return fail_syntax(parser, parser->at, "unexpected character (expected a value)");
  parser->at += length;
  return true;
}

static bool read_value(json_parser *parser, uint32_t depth, uint32_t *out_index);

// Reads the array or object whose bracket is at parser->at. Members and elements are linked
// through `next` as they are read, so iteration never has to skip over nested values.
static bool read_container(json_parser *parser, uint32_t depth, uint32_t index) {
  bool is_object = parser->bytes[parser->at] == '{';
  unsigned char close = is_object ? '}' : ']';
  if (depth + 1 > parser->limits.max_depth)
    return fail(parser, ATTN_JSON_ERROR_LIMIT, parser->at, "nested more deeply than allowed");
  parser->at++;
  skip_whitespace(parser);
  if (parser->at < parser->size && parser->bytes[parser->at] == close) {
    parser->at++;
    return true;
  }
  uint32_t previous = 0, count = 0;
  for (;;) {
    uint32_t key = 0, key_length = 0, child;
    if (is_object) {
      if (parser->at == parser->size || parser->bytes[parser->at] != '"')
        return fail_syntax(parser, parser->at, "expected a string key");
      if (!read_string(parser, &key, &key_length))
        return false;
      skip_whitespace(parser);
      if (parser->at == parser->size || parser->bytes[parser->at] != ':')
        return fail_syntax(parser, parser->at, "expected ':' after an object key");
      parser->at++;
      skip_whitespace(parser);
    }
    if (!read_value(parser, depth + 1, &child))
      return false;
    attn_json_value *values = parser->document->values;
    if (is_object) {
      values[child].is_member = true;
      values[child].key = key;
      values[child].key_length = key_length;
    }
    if (count > 0)
      values[previous].next = child;
    previous = child;
    count++; // no overflow: the value limit is a uint32_t
    skip_whitespace(parser);
    if (parser->at < parser->size && parser->bytes[parser->at] == ',') {
      parser->at++;
      skip_whitespace(parser);
      continue;
    }
    if (parser->at < parser->size && parser->bytes[parser->at] == close) {
      parser->at++;
      break;
    }
    return fail_syntax(parser, parser->at,
                       is_object ? "expected ',' or '}' in an object"
                                 : "expected ',' or ']' in an array");
  }
  parser->document->values[index].count = count;
  return true;
}

// `depth` counts the containers around the value.
static bool read_value(json_parser *parser, uint32_t depth, uint32_t *out_index) {
  if (parser->at == parser->size)
    return fail_syntax(parser, parser->at, "expected a value");
  unsigned char c = parser->bytes[parser->at];
  attn_json_kind kind;
  if (c == '{')
    kind = ATTN_JSON_OBJECT;
  else if (c == '[')
    kind = ATTN_JSON_ARRAY;
  else if (c == '"')
    kind = ATTN_JSON_STRING;
  else if (c == '-' || (c >= '0' && c <= '9'))
    kind = ATTN_JSON_NUMBER;
  else if (c == 't')
    kind = ATTN_JSON_TRUE;
  else if (c == 'f')
    kind = ATTN_JSON_FALSE;
  else if (c == 'n')
    kind = ATTN_JSON_NULL;
  else
    return fail_syntax(parser, parser->at, "unexpected character (expected a value)");
  uint32_t index;
  if (!add_value(parser, kind, &index))
    return false;
  *out_index = index;
  switch (kind) {
  case ATTN_JSON_OBJECT:
  case ATTN_JSON_ARRAY:
    return read_container(parser, depth, index);
  case ATTN_JSON_STRING: {
    uint32_t offset, length;
    if (!read_string(parser, &offset, &length))
      return false;
    parser->document->values[index].text = offset;
    parser->document->values[index].count = length;
    return true;
  }
  case ATTN_JSON_NUMBER:
    return read_number(parser, index);
  case ATTN_JSON_TRUE:
    return read_literal(parser, "true");
  case ATTN_JSON_FALSE:
    return read_literal(parser, "false");
  case ATTN_JSON_NULL:
    return read_literal(parser, "null");
  }
  return false;
}

void attn_json_document_deinit(attn_json_document *document) {
  attn_allocator_free(document->allocator, document->values,
                      document->capacity * sizeof(attn_json_value));
  attn_allocator_free(document->allocator, document->text, document->text_capacity);
  *document = (attn_json_document){.allocator = document->allocator};
}

attn_status attn_json_parse(const void *bytes, size_t size_bytes, const attn_json_limits *limits,
                            attn_allocator allocator, attn_json_document *out_document,
                            attn_json_error *out_error) {
  *out_document = (attn_json_document){.allocator = allocator};
  *out_error = (attn_json_error){ATTN_JSON_ERROR_NONE, 0, NULL};
  json_parser parser = {
      .bytes = bytes,
      .size = size_bytes,
      .limits = limits
                    ? *limits
                    : (attn_json_limits){ATTN_JSON_DEFAULT_MAX_DEPTH, ATTN_JSON_DEFAULT_MAX_VALUES},
      .document = out_document,
      .error = out_error,
  };
  // Offsets are kept as uint32_t; the decoded text (at most the input plus one NUL) fits too.
  bool ok;
  if (size_bytes >= UINT32_MAX) {
    ok = fail(&parser, ATTN_JSON_ERROR_LIMIT, 0, "document is 4 GiB or larger");
  } else {
    uint32_t root;
    skip_whitespace(&parser);
    ok = read_value(&parser, 0, &root);
    if (ok) {
      skip_whitespace(&parser);
      if (parser.at < parser.size)
        ok = fail(&parser, ATTN_JSON_ERROR_TRAILING, parser.at, "unexpected bytes after the value");
    }
  }
  if (ok)
    return ATTN_OK;
  attn_json_document_deinit(out_document);
  return out_error->code == ATTN_JSON_ERROR_MEMORY ? ATTN_ERROR_OUT_OF_MEMORY : ATTN_ERROR_PARSE;
}

const attn_json_value *attn_json_root(const attn_json_document *document) {
  return &document->values[0];
}

const attn_json_value *attn_json_first(const attn_json_document *document,
                                       const attn_json_value *container) {
  if ((container->kind != ATTN_JSON_ARRAY && container->kind != ATTN_JSON_OBJECT) ||
      container->count == 0)
    return NULL;
  // A container's first element is the value read right after it.
  return &document->values[container - document->values + 1];
}

const attn_json_value *attn_json_next(const attn_json_document *document,
                                      const attn_json_value *value) {
  return value->next ? &document->values[value->next] : NULL;
}

const attn_json_value *attn_json_get(const attn_json_document *document,
                                     const attn_json_value *object, const char *name) {
  if (object->kind != ATTN_JSON_OBJECT)
    return NULL;
  size_t length = strlen(name);
  for (const attn_json_value *member = attn_json_first(document, object); member;
       member = attn_json_next(document, member)) {
    if (member->key_length == length && memcmp(document->text + member->key, name, length) == 0)
      return member;
  }
  return NULL;
}

const char *attn_json_text(const attn_json_document *document, const attn_json_value *value,
                           size_t *out_length) {
  if (value->kind != ATTN_JSON_STRING && value->kind != ATTN_JSON_NUMBER)
    return NULL;
  if (out_length)
    *out_length = value->count;
  return document->text + value->text;
}

const char *attn_json_key(const attn_json_document *document, const attn_json_value *value,
                          size_t *out_length) {
  if (!value->is_member)
    return NULL;
  if (out_length)
    *out_length = value->key_length;
  return document->text + value->key;
}

// The digits of a number's integer and fraction parts, read as one sequence.
typedef struct json_digits {
  const char *integer;
  size_t integer_length;
  const char *fraction;
  size_t fraction_length;
} json_digits;

static unsigned digit_at(const json_digits *digits, size_t i) {
  char c = i < digits->integer_length ? digits->integer[i]
                                      : digits->fraction[i - digits->integer_length];
  return (unsigned)(c - '0');
}

attn_json_integer_status attn_json_get_uint64(const attn_json_document *document,
                                              const attn_json_value *value, uint64_t max,
                                              uint64_t *out_value) {
  if (value->kind != ATTN_JSON_NUMBER)
    return ATTN_JSON_INTEGER_NOT_NUMBER;
  // The text already matches the grammar -? int (. frac)? ([eE] [+-]? exp)?, and its value is
  // digits(int frac) * 10^(exp - length(frac)): work on the digits so nothing is rounded.
  const char *p = document->text + value->text;
  bool is_negative = *p == '-';
  if (is_negative)
    p++;
  json_digits digits = {p, 0, p, 0};
  while (*p >= '0' && *p <= '9')
    p++;
  digits.integer_length = (size_t)(p - digits.integer);
  if (*p == '.') {
    digits.fraction = ++p;
    while (*p >= '0' && *p <= '9')
      p++;
    digits.fraction_length = (size_t)(p - digits.fraction);
  }
  int64_t exponent = 0;
  if (*p == 'e' || *p == 'E') {
    p++;
    bool is_exponent_negative = *p == '-';
    if (*p == '-' || *p == '+')
      p++;
    // Saturate: beyond a billion the answer (too large, or not an integer) no longer changes.
    for (; *p >= '0' && *p <= '9'; p++)
      if (exponent < 1000000000)
        exponent = exponent * 10 + (*p - '0');
    if (is_exponent_negative)
      exponent = -exponent;
  }
  // The significant digits run from the first non-zero digit to the last non-zero one.
  size_t count = digits.integer_length + digits.fraction_length, first = 0, last = count;
  while (first < count && digit_at(&digits, first) == 0)
    first++;
  if (first == count) {
    *out_value = 0; // zero, also when spelled -0 or 0.0e7
    return ATTN_JSON_INTEGER_OK;
  }
  if (is_negative)
    return ATTN_JSON_INTEGER_NEGATIVE;
  while (digit_at(&digits, last - 1) == 0)
    last--;
  // The value is digits[first, last) * 10^scale.
  int64_t scale = exponent - (int64_t)digits.fraction_length + (int64_t)(count - last);
  if (scale < 0)
    return ATTN_JSON_INTEGER_NOT_INTEGER;
  if ((int64_t)(last - first) + scale > 20) // UINT64_MAX has 20 digits
    return ATTN_JSON_INTEGER_TOO_LARGE;
  uint64_t result = 0;
  for (size_t i = first; i < last + (size_t)scale; i++) {
    unsigned digit = i < last ? digit_at(&digits, i) : 0;
    if (result > (UINT64_MAX - digit) / 10)
      return ATTN_JSON_INTEGER_TOO_LARGE;
    result = result * 10 + digit;
  }
  if (result > max)
    return ATTN_JSON_INTEGER_TOO_LARGE;
  *out_value = result;
  return ATTN_JSON_INTEGER_OK;
}
