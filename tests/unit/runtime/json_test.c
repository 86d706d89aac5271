// Unit tests for runtime/tensor/json: every kind of value, every escape, exact integers, the
// depth and value limits, malformed input refused at the right byte, allocation failures, and
// safetensors headers read through it. The executable links attn_tensor_io alone, so it also
// shows that reading safetensors needs no JSON library.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/tensor/json.h"
#include "runtime/tensor/safetensors.h"
#include "runtime_test_util.h"

// A test's document: `text` parsed with `limits` (NULL: defaults) and a counting allocator,
// which the release checks for leaks.
typedef struct parsed {
  attn_counting_allocator counter;
  attn_json_document document;
  attn_json_error error;
  attn_status status;
} parsed;

static void parse_bytes(parsed *out, const char *text, size_t length,
                        const attn_json_limits *limits) {
  attn_counting_allocator_init(&out->counter, attn_allocator_system());
  out->status = attn_json_parse(text, length, limits, attn_counting_allocator_get(&out->counter),
                                &out->document, &out->error);
}

static void parse_text(parsed *out, const char *text) {
  parse_bytes(out, text, strlen(text), NULL);
}

static void release(parsed *p) {
  attn_json_document_deinit(&p->document);
  assert_int_equal(p->counter.live_blocks, 0);
  assert_int_equal(p->counter.live_bytes, 0);
}

static void assert_text(const attn_json_document *document, const attn_json_value *value,
                        const char *expected, size_t expected_length) {
  size_t length = 0;
  const char *text = attn_json_text(document, value, &length);
  assert_non_null(text);
  assert_int_equal(length, expected_length);
  assert_memory_equal(text, expected, expected_length);
  assert_int_equal(text[length], '\0');
}

static void json_reads_every_kind_of_value(void **state) {
  (void)state;
  parsed p;
  parse_text(&p, " \t\r\n{\"a\": [1, -2.5e3, true, false, null, [], {}],\n"
                 "  \"b\": {\"c\": \"d\"}, \"\": \"\", \"a\": 7 } \n");
  assert_int_equal(p.status, ATTN_OK);
  assert_int_equal(p.error.code, ATTN_JSON_ERROR_NONE);
  const attn_json_document *doc = &p.document;
  const attn_json_value *root = attn_json_root(doc);
  assert_int_equal(root->kind, ATTN_JSON_OBJECT);
  assert_int_equal(root->count, 4);
  assert_int_equal(root->begin, 4);
  assert_null(attn_json_key(doc, root, NULL));
  assert_null(attn_json_text(doc, root, NULL));

  // Members come in document order, duplicates included; get finds the first.
  const attn_json_value *a = attn_json_first(doc, root);
  size_t key_length;
  assert_string_equal(attn_json_key(doc, a, &key_length), "a");
  assert_int_equal(key_length, 1);
  assert_ptr_equal(attn_json_get(doc, root, "a"), a);
  assert_int_equal(a->kind, ATTN_JSON_ARRAY);
  assert_int_equal(a->count, 7);
  static const attn_json_kind kinds[] = {ATTN_JSON_NUMBER, ATTN_JSON_NUMBER, ATTN_JSON_TRUE,
                                         ATTN_JSON_FALSE,  ATTN_JSON_NULL,   ATTN_JSON_ARRAY,
                                         ATTN_JSON_OBJECT};
  size_t i = 0;
  for (const attn_json_value *e = attn_json_first(doc, a); e; e = attn_json_next(doc, e), i++) {
    assert_true(i < 7);
    assert_int_equal(e->kind, kinds[i]);
    assert_null(attn_json_key(doc, e, NULL));
  }
  assert_int_equal(i, 7);
  const attn_json_value *number = attn_json_next(doc, attn_json_first(doc, a));
  assert_text(doc, number, "-2.5e3", 6);
  assert_null(attn_json_first(doc, number));

  const attn_json_value *b = attn_json_next(doc, a);
  assert_string_equal(attn_json_key(doc, b, NULL), "b");
  assert_int_equal(b->kind, ATTN_JSON_OBJECT);
  // Iteration skips nested values: after "a" (with its 7 elements) comes "b" at once.
  const attn_json_value *c = attn_json_get(doc, b, "c");
  assert_non_null(c);
  assert_text(doc, c, "d", 1);
  assert_null(attn_json_get(doc, b, "d"));
  assert_null(attn_json_get(doc, a, "c")); // not an object

  const attn_json_value *empty = attn_json_next(doc, b);
  assert_string_equal(attn_json_key(doc, empty, &key_length), "");
  assert_int_equal(key_length, 0);
  assert_text(doc, empty, "", 0);
  assert_ptr_equal(attn_json_get(doc, root, ""), empty);
  const attn_json_value *again = attn_json_next(doc, empty);
  assert_string_equal(attn_json_key(doc, again, NULL), "a");
  assert_text(doc, again, "7", 1);
  assert_null(attn_json_next(doc, again));
  release(&p);

  // A scalar is a document too.
  parse_text(&p, "\"only\"");
  assert_int_equal(p.status, ATTN_OK);
  assert_text(&p.document, attn_json_root(&p.document), "only", 4);
  release(&p);
  parse_text(&p, "0");
  assert_int_equal(p.status, ATTN_OK);
  assert_text(&p.document, attn_json_root(&p.document), "0", 1);
  release(&p);
}

static void json_decodes_every_escape(void **state) {
  (void)state;
  parsed p;
  parse_text(&p, "{\"k\\u00e9y\\n\": \"\\\" \\\\ \\/ \\b \\f \\n \\r \\t|\\u0041\\u00e9\\u20AC"
                 "\\ud83d\\ude00\\u0000|raw \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\x7f\"}");
  assert_int_equal(p.status, ATTN_OK);
  const attn_json_document *doc = &p.document;
  const attn_json_value *root = attn_json_root(doc);
  const attn_json_value *member = attn_json_get(doc, root, "k\xc3\xa9y\n");
  assert_non_null(member);
  static const char expected[] = "\" \\ / \b \f \n \r \t|A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"
                                 "\0|raw \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\x7f";
  assert_text(doc, member, expected, sizeof(expected) - 1);
  release(&p);

  // The largest code point, as a surrogate pair, and a key holding U+0000.
  parse_text(&p, "{\"a\\u0000b\": \"\\uDBFF\\uDFFF\"}");
  assert_int_equal(p.status, ATTN_OK);
  member = attn_json_first(&p.document, attn_json_root(&p.document));
  size_t key_length;
  assert_memory_equal(attn_json_key(&p.document, member, &key_length), "a\0b", 3);
  assert_int_equal(key_length, 3);
  assert_null(attn_json_get(&p.document, attn_json_root(&p.document), "a"));
  assert_text(&p.document, member, "\xf4\x8f\xbf\xbf", 4);
  release(&p);
}

static void json_reads_exact_integers(void **state) {
  (void)state;
  static const struct {
    const char *text;
    uint64_t max;
    attn_json_integer_status status;
    uint64_t value;
  } cases[] = {
      {"0", UINT64_MAX, ATTN_JSON_INTEGER_OK, 0},
      {"-0", UINT64_MAX, ATTN_JSON_INTEGER_OK, 0},
      {"-0.0e5", UINT64_MAX, ATTN_JSON_INTEGER_OK, 0},
      {"42", UINT64_MAX, ATTN_JSON_INTEGER_OK, 42},
      {"2.0", UINT64_MAX, ATTN_JSON_INTEGER_OK, 2},
      {"0.2e1", UINT64_MAX, ATTN_JSON_INTEGER_OK, 2},
      {"1E+2", UINT64_MAX, ATTN_JSON_INTEGER_OK, 100},
      {"100e-2", UINT64_MAX, ATTN_JSON_INTEGER_OK, 1},
      {"1e19", UINT64_MAX, ATTN_JSON_INTEGER_OK, 10000000000000000000ull},
      {"9007199254740993", UINT64_MAX, ATTN_JSON_INTEGER_OK, 9007199254740993ull}, // 2^53 + 1
      {"18446744073709551615", UINT64_MAX, ATTN_JSON_INTEGER_OK, UINT64_MAX},
      {"18446744073709551616", UINT64_MAX, ATTN_JSON_INTEGER_TOO_LARGE, 0},
      {"1844674407370955161.6e1", UINT64_MAX, ATTN_JSON_INTEGER_TOO_LARGE, 0},
      {"1e20", UINT64_MAX, ATTN_JSON_INTEGER_TOO_LARGE, 0},
      {"1e300", UINT64_MAX, ATTN_JSON_INTEGER_TOO_LARGE, 0},
      {"1e99999999999999999999", UINT64_MAX, ATTN_JSON_INTEGER_TOO_LARGE, 0},
      {"11", 10, ATTN_JSON_INTEGER_TOO_LARGE, 0},
      {"10", 10, ATTN_JSON_INTEGER_OK, 10},
      {"1.5", UINT64_MAX, ATTN_JSON_INTEGER_NOT_INTEGER, 0},
      {"25e-1", UINT64_MAX, ATTN_JSON_INTEGER_NOT_INTEGER, 0},
      {"1e-300", UINT64_MAX, ATTN_JSON_INTEGER_NOT_INTEGER, 0},
      {"1e-99999999999999999999", UINT64_MAX, ATTN_JSON_INTEGER_NOT_INTEGER, 0},
      {"-3", UINT64_MAX, ATTN_JSON_INTEGER_NEGATIVE, 0},
      {"-1.5", UINT64_MAX, ATTN_JSON_INTEGER_NEGATIVE, 0},
      {"\"5\"", UINT64_MAX, ATTN_JSON_INTEGER_NOT_NUMBER, 0},
      {"null", UINT64_MAX, ATTN_JSON_INTEGER_NOT_NUMBER, 0},
      {"[5]", UINT64_MAX, ATTN_JSON_INTEGER_NOT_NUMBER, 0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    parsed p;
    parse_text(&p, cases[i].text);
    assert_int_equal(p.status, ATTN_OK);
    uint64_t value = 12345;
    attn_json_integer_status status =
        attn_json_get_uint64(&p.document, attn_json_root(&p.document), cases[i].max, &value);
    if (status != cases[i].status)
      fail_msg("%s: status %d, expected %d", cases[i].text, (int)status, (int)cases[i].status);
    if (status == ATTN_JSON_INTEGER_OK && value != cases[i].value)
      fail_msg("%s: value %llu", cases[i].text, (unsigned long long)value);
    if (status != ATTN_JSON_INTEGER_OK)
      assert_int_equal(value, 12345); // untouched on failure
    release(&p);
  }
}

// `count` opening brackets then as many closing ones, malloc'ed.
static char *nested_arrays(size_t count) {
  char *text = malloc(2 * count + 1);
  assert_non_null(text);
  memset(text, '[', count);
  memset(text + count, ']', count);
  text[2 * count] = '\0';
  return text;
}

static void json_enforces_depth_and_value_limits(void **state) {
  (void)state;
  parsed p;
  attn_json_limits limits = {3, 100};
  parse_bytes(&p, "[{\"a\":[]}]", 10, &limits);
  assert_int_equal(p.status, ATTN_OK);
  release(&p);
  limits.max_depth = 2;
  parse_bytes(&p, "[{\"a\":[]}]", 10, &limits);
  assert_int_equal(p.status, ATTN_ERROR_PARSE);
  assert_int_equal(p.error.code, ATTN_JSON_ERROR_LIMIT);
  assert_int_equal(p.error.offset, 6);
  assert_non_null(strstr(p.error.message, "nested"));
  release(&p);

  // The default depth admits 64 containers and refuses 65, and a very deep document is refused
  // before it can exhaust the stack.
  char *text = nested_arrays(ATTN_JSON_DEFAULT_MAX_DEPTH);
  parse_text(&p, text);
  assert_int_equal(p.status, ATTN_OK);
  release(&p);
  free(text);
  text = nested_arrays(ATTN_JSON_DEFAULT_MAX_DEPTH + 1);
  parse_text(&p, text);
  assert_int_equal(p.error.code, ATTN_JSON_ERROR_LIMIT);
  assert_int_equal(p.error.offset, ATTN_JSON_DEFAULT_MAX_DEPTH);
  release(&p);
  free(text);
  text = nested_arrays(1000000);
  parse_text(&p, text);
  assert_int_equal(p.error.code, ATTN_JSON_ERROR_LIMIT);
  release(&p);
  free(text);

  // Every value counts, containers and members included.
  limits = (attn_json_limits){8, 4};
  parse_bytes(&p, "{\"a\":[1,2]}", 11, &limits);
  assert_int_equal(p.status, ATTN_OK);
  assert_int_equal(p.document.count, 4);
  release(&p);
  parse_bytes(&p, "{\"a\":[1,2,3]}", 13, &limits);
  assert_int_equal(p.status, ATTN_ERROR_PARSE);
  assert_int_equal(p.error.code, ATTN_JSON_ERROR_LIMIT);
  assert_int_equal(p.error.offset, 10);
  assert_null(p.document.values); // nothing held after a failure
  release(&p);
}

static void json_refuses_malformed_input_at_its_offset(void **state) {
  (void)state;
  static const struct {
    const char *text;
    size_t length; // 0: strlen(text)
    attn_json_error_code code;
    size_t offset;
    const char *message;
  } cases[] = {
      {"", 0, ATTN_JSON_ERROR_SYNTAX, 0, "expected a value"},
      {"   ", 0, ATTN_JSON_ERROR_SYNTAX, 3, "expected a value"},
      {"\xef\xbb\xbf{}", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unexpected character"}, // byte order mark
      {"// comment\n{}", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unexpected character"},
      {"{", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a string key"},
      {"{a:1}", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a string key"},
      {"{'a':1}", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a string key"},
      {"{\"a\"", 0, ATTN_JSON_ERROR_SYNTAX, 4, "expected ':'"},
      {"{\"a\" 1}", 0, ATTN_JSON_ERROR_SYNTAX, 5, "expected ':'"},
      {"{\"a\":}", 0, ATTN_JSON_ERROR_SYNTAX, 5, "expected a value"},
      {"{\"a\":1,}", 0, ATTN_JSON_ERROR_SYNTAX, 7, "expected a string key"},
      {"{\"a\":1 \"b\":2}", 0, ATTN_JSON_ERROR_SYNTAX, 7, "expected ',' or '}'"},
      {"{\"a\":1", 0, ATTN_JSON_ERROR_SYNTAX, 6, "expected ',' or '}'"},
      {"[", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a value"},
      {"[1,]", 0, ATTN_JSON_ERROR_SYNTAX, 3, "expected a value"},
      {"[,1]", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a value"},
      {"[1 2]", 0, ATTN_JSON_ERROR_SYNTAX, 3, "expected ',' or ']'"},
      {"[1}", 0, ATTN_JSON_ERROR_SYNTAX, 2, "expected ',' or ']'"},
      {"01", 0, ATTN_JSON_ERROR_SYNTAX, 1, "leading zero"},
      {"-01", 0, ATTN_JSON_ERROR_SYNTAX, 2, "leading zero"},
      {"-", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a digit"},
      {"-a", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a digit"},
      {"+1", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unexpected character"},
      {".5", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unexpected character"},
      {"1.", 0, ATTN_JSON_ERROR_SYNTAX, 2, "after '.'"},
      {"1.e5", 0, ATTN_JSON_ERROR_SYNTAX, 2, "after '.'"},
      {"1e", 0, ATTN_JSON_ERROR_SYNTAX, 2, "exponent"},
      {"[1e+]", 0, ATTN_JSON_ERROR_SYNTAX, 4, "exponent"},
      {"0x10", 0, ATTN_JSON_ERROR_TRAILING, 1, "after the value"},
      {"NaN", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unexpected character"},
      {"-Infinity", 0, ATTN_JSON_ERROR_SYNTAX, 1, "expected a digit"},
      {"tru", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unexpected character"},
      {"[nul]", 0, ATTN_JSON_ERROR_SYNTAX, 1, "unexpected character"},
      {"True", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unexpected character"},
      {"falsey", 0, ATTN_JSON_ERROR_TRAILING, 5, "after the value"},
      {"\"abc", 0, ATTN_JSON_ERROR_SYNTAX, 0, "unterminated string"},
      {"[\"a\\", 0, ATTN_JSON_ERROR_SYNTAX, 3, "unterminated string"},
      {"\"\\x\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "unknown escape"},
      {"\"\\'\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "unknown escape"},
      {"\"ab\\u12\"", 0, ATTN_JSON_ERROR_SYNTAX, 3, "four hex digits"},
      {"\"\\u12G4\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "four hex digits"},
      {"\"\\u123", 0, ATTN_JSON_ERROR_SYNTAX, 1, "four hex digits"},
      {"\"\\ud800\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "high surrogate"},
      {"\"\\ud800x\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "high surrogate"},
      {"\"\\ud800\\n\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "high surrogate"},
      {"\"\\ud800\\u0041\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "high surrogate"},
      {"\"\\ud800\\ud800\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "high surrogate"},
      {"\"\\ud800\\udc0", 0, ATTN_JSON_ERROR_SYNTAX, 7, "four hex digits"},
      {"\"\\udc00\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "low surrogate"},
      {"\"a\tb\"", 0, ATTN_JSON_ERROR_SYNTAX, 2, "control character"},
      {"\"a\nb\"", 0, ATTN_JSON_ERROR_SYNTAX, 2, "control character"},
      {"\"a\0b\"", 5, ATTN_JSON_ERROR_SYNTAX, 2, "control character"},
      {"\"\xff\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "invalid UTF-8"},
      {"\"\x80\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "invalid UTF-8"},
      {"\"\xc0\xaf\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "invalid UTF-8"},         // overlong '/'
      {"\"\xe0\x80\xaf\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "invalid UTF-8"},     // overlong '/'
      {"\"\xed\xa0\x80\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "invalid UTF-8"},     // a surrogate
      {"\"\xf4\x90\x80\x80\"", 0, ATTN_JSON_ERROR_SYNTAX, 1, "invalid UTF-8"}, // above U+10FFFF
      {"\"x\xe2\x82\"", 0, ATTN_JSON_ERROR_SYNTAX, 2, "invalid UTF-8"},        // cut short
      {"\"\xe2\x82", 0, ATTN_JSON_ERROR_SYNTAX, 1, "invalid UTF-8"},           // cut by the end
      {"{} x", 0, ATTN_JSON_ERROR_TRAILING, 3, "after the value"},
      {"[] []", 0, ATTN_JSON_ERROR_TRAILING, 3, "after the value"},
      {"1 2", 0, ATTN_JSON_ERROR_TRAILING, 2, "after the value"},
      {"{}\0", 3, ATTN_JSON_ERROR_TRAILING, 2, "after the value"},
      {"{}}", 0, ATTN_JSON_ERROR_TRAILING, 2, "after the value"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    parsed p;
    size_t length = cases[i].length ? cases[i].length : strlen(cases[i].text);
    // An exact-size copy, so that a read past the end is caught by the sanitizers.
    char *copy = malloc(length ? length : 1);
    assert_non_null(copy);
    memcpy(copy, cases[i].text, length);
    parse_bytes(&p, copy, length, NULL);
    free(copy);
    if (p.status != ATTN_ERROR_PARSE || p.error.code != cases[i].code ||
        p.error.offset != cases[i].offset || !strstr(p.error.message, cases[i].message))
      fail_msg("case %zu (%s): status %d, code %d, offset %zu, message '%s'", i, cases[i].text,
               (int)p.status, (int)p.error.code, p.error.offset,
               p.error.message ? p.error.message : "(none)");
    assert_null(p.document.values);
    assert_null(p.document.text);
    release(&p);
  }
}

static void json_checks_utf8(void **state) {
  (void)state;
  assert_true(attn_json_is_utf8("", 0));
  assert_true(attn_json_is_utf8("plain \x7f", 7));
  assert_true(attn_json_is_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13));
  assert_true(attn_json_is_utf8("a\0b", 3)); // U+0000 is a character; JSON escapes it
  assert_false(attn_json_is_utf8("\xc3", 1));
  assert_false(attn_json_is_utf8("\xc1\xbf", 2));
  assert_false(attn_json_is_utf8("\xed\xbf\xbf", 3));
  assert_false(attn_json_is_utf8("\xf5\x80\x80\x80", 4));
  assert_false(attn_json_is_utf8("\xe2\x28\xa1", 3));
}

static attn_status parse_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  const char *text = context;
  attn_json_document document;
  attn_json_error error;
  attn_status status = attn_json_parse(text, strlen(text), NULL, allocator, &document, &error);
  if (status == ATTN_OK) {
    assert_int_equal(attn_json_root(&document)->kind, ATTN_JSON_OBJECT);
    attn_json_document_deinit(&document);
  } else {
    // The sweep wants a message for a failure, as a caller of the reader would report it.
    assert_int_equal(error.code, ATTN_JSON_ERROR_MEMORY);
    attn_diag_error(diag, (attn_loc){"doc.json", 0, 0}, status, "%s", error.message);
  }
  return status;
}

static void json_survives_allocation_failures(void **state) {
  (void)state;
  char text[4096] = "{\"s\": \"caf\\u00e9\", \"n\": [1, 2.5, -3e4, true, false, null]";
  for (int i = 0; i < 50; i++) {
    size_t used = strlen(text);
    snprintf(text + used, sizeof(text) - used, ", \"key %d\": {\"v\": [%d, \"x\\ty\"]}", i, i);
  }
  strcat(text, "}");
  assert_true(test_allocation_failure_sweep(parse_scenario, text) >= 2);
}

// A safetensors image: the length, `header` padded with spaces to a multiple of 8, then
// `data_size` bytes of `data`. Returns a malloc'ed buffer.
static unsigned char *make_image(const char *header, const void *data, size_t data_size,
                                 size_t *out_size) {
  size_t length = strlen(header), padded = (length + 7) / 8 * 8;
  unsigned char *bytes = calloc(1, 8 + padded + data_size);
  assert_non_null(bytes);
  for (int i = 0; i < 8; i++)
    bytes[i] = (unsigned char)((unsigned long long)padded >> (8 * i));
  memcpy(bytes + 8, header, length);
  memset(bytes + 8 + length, ' ', padded - length);
  memcpy(bytes + 8 + padded, data, data_size);
  *out_size = 8 + padded + data_size;
  return bytes;
}

static attn_status open_image(const char *header, const void *data, size_t data_size,
                              attn_diag *diag, attn_safetensors **out_file,
                              unsigned char **out_bytes) {
  size_t size;
  *out_bytes = make_image(header, data, data_size, &size);
  return attn_safetensors_open_memory(*out_bytes, size, "j.safetensors", attn_allocator_system(),
                                      diag, out_file);
}

static void safetensors_header_escapes_and_refusals(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  const int32_t values[] = {7, 8};
  attn_safetensors *file;
  unsigned char *bytes;
  // Escaped names decode to their UTF-8, integers may be spelled 4.0 or 0.4e1, and unknown
  // fields are ignored, as the reference reader does.
  assert_int_equal(
      open_image("{\"caf\\u00e9\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4.0]},"
                 "\"\\ud83d\\ude00\\t\":{\"dtype\":\"I32\",\"shape\":[1e0],"
                 "\"data_offsets\":[0.4e1,8],\"extra\":{\"x\":[null]}}}",
                 values, sizeof(values), &diag, &file, &bytes),
      ATTN_OK);
  attn_tensor view;
  assert_true(attn_safetensors_find(file, "caf\xc3\xa9", &view));
  assert_int_equal(*(int32_t *)view.data, 7);
  assert_true(attn_safetensors_find(file, "\xf0\x9f\x98\x80\t", &view));
  assert_int_equal(*(int32_t *)view.data, 8);
  attn_safetensors_close(file);
  free(bytes);

  static const struct {
    const char *header;
    const char *message;
  } refused[] = {
      {"{\"a\\u0000b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
       "the name contains a NUL character"},
      {"{\"a\":{\"dtype\":\"I32\",\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,4]}}",
       "tensor 'a': \"dtype\" appears twice"},
      {"{\"a\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4],\"shape\":[4]}}",
       "tensor 'a': \"shape\" appears twice"},
      {"{\"a\":{\"dtype\":\"I32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}",
       "dimension 0 of \"shape\" is too large"},
      {"{\"a\":\"\\ud800\"}", "header is not valid JSON: a high surrogate"},
      {"{\"a\":{},}", "header is not valid JSON: expected a string key (at byte 8 of the header)"},
  };
  for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
    file = (attn_safetensors *)1;
    assert_int_equal(open_image(refused[i].header, values, sizeof(values), &diag, &file, &bytes),
                     ATTN_ERROR_PARSE);
    assert_null(file);
    test_assert_error(&diag, "j.safetensors", refused[i].message);
    free(bytes);
  }
  char *deep = nested_arrays(ATTN_JSON_DEFAULT_MAX_DEPTH + 1);
  assert_int_equal(open_image(deep, values, sizeof(values), &diag, &file, &bytes),
                   ATTN_ERROR_PARSE);
  test_assert_error(
      &diag, "j.safetensors",
      "header is refused: nested more deeply than allowed (at byte 64 of the header)");
  free(bytes);
  free(deep);
  attn_diag_deinit(&diag);
}

static void safetensors_writer_escapes_what_the_reader_decodes(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *path = test_join(dir, "e.safetensors");
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  int8_t values[] = {1, 2, 3};
  const char *names[] = {"q\"b\\s/\b\f\n\r\t", "ctl\x01\x1f\x7f", "caf\xc3\xa9 \xf0\x9f\x98\x80"};
  attn_named_tensor tensors[3];
  for (int i = 0; i < 3; i++)
    tensors[i] = (attn_named_tensor){names[i], {ATTN_DTYPE_I8, 1, {1}, &values[i]}};
  assert_int_equal(attn_safetensors_write(path, tensors, 3, allocator, &diag), ATTN_OK);
  size_t size;
  char *raw = test_read_file(path, &size);
  // JSON's short escapes where it has them, \u00XX for the other control characters.
  assert_non_null(strstr(raw + 8, "\"q\\\"b\\\\s/\\b\\f\\n\\r\\t\""));
  assert_non_null(strstr(raw + 8, "\"ctl\\u0001\\u001f\x7f\""));
  free(raw);
  attn_safetensors *file;
  assert_int_equal(attn_safetensors_open(path, allocator, &diag, &file), ATTN_OK);
  for (int i = 0; i < 3; i++) {
    attn_tensor view;
    assert_true(attn_safetensors_find(file, names[i], &view));
    assert_int_equal(*(int8_t *)view.data, values[i]);
  }
  attn_safetensors_close(file);

  // Bytes that are not UTF-8 cannot be written as JSON at all.
  attn_named_tensor bad = {"bad\xff", {ATTN_DTYPE_I8, 1, {1}, values}};
  assert_int_equal(attn_safetensors_write(path, &bad, 1, allocator, &diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  test_assert_error(&diag, path, "tensor 0: the name is not valid UTF-8");
  attn_diag_deinit(&diag);
  test_remove_temp_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(json_reads_every_kind_of_value),
      cmocka_unit_test(json_decodes_every_escape),
      cmocka_unit_test(json_reads_exact_integers),
      cmocka_unit_test(json_enforces_depth_and_value_limits),
      cmocka_unit_test(json_refuses_malformed_input_at_its_offset),
      cmocka_unit_test(json_checks_utf8),
      cmocka_unit_test(json_survives_allocation_failures),
      cmocka_unit_test(safetensors_header_escapes_and_refusals),
      cmocka_unit_test(safetensors_writer_escapes_what_the_reader_decodes),
  };
  return cmocka_run_group_tests_name("runtime/json", tests, NULL, NULL);
}
