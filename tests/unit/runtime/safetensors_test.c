// Unit tests for runtime/tensor/safetensors: round trips, hostile headers, lookups, allocation
// failures and the Hugging Face fixtures.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/tensor/safetensors.h"
#include "runtime_test_util.h"

// Builds an image: the 8-byte length, `header` padded with spaces to a multiple of 8 (when
// `pad`), then `data_size` bytes of `data` (zeros when NULL). Returns a malloc'ed buffer.
static unsigned char *make_image(const char *header, bool pad, const void *data, size_t data_size,
                                 size_t *out_size) {
  size_t length = strlen(header);
  size_t padded = pad ? (length + 7) / 8 * 8 : length;
  size_t size = 8 + padded + data_size;
  unsigned char *bytes = calloc(1, size);
  assert_non_null(bytes);
  for (int i = 0; i < 8; i++)
    bytes[i] = (unsigned char)((unsigned long long)padded >> (8 * i));
  memcpy(bytes + 8, header, length);
  memset(bytes + 8 + length, ' ', padded - length);
  if (data)
    memcpy(bytes + 8 + padded, data, data_size);
  *out_size = size;
  return bytes;
}

static attn_safetensors *open_image_ok(const unsigned char *bytes, size_t size) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_safetensors *file = NULL;
  attn_status status = attn_safetensors_open_memory(bytes, size, "m.safetensors",
                                                    attn_allocator_system(), &diag, &file);
  if (status != ATTN_OK)
    fail_msg("open failed: %s", attn_diag_last_error(&diag));
  attn_diag_deinit(&diag);
  return file;
}

static void safetensors_reads_a_hand_made_image(void **state) {
  (void)state;
  const float values[] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
  size_t size;
  unsigned char *bytes =
      make_image("{\"__metadata__\":{\"format\":\"pt\"},"
                 "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                 "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[20,24]},"
                 "\"e\":{\"dtype\":\"I8\",\"shape\":[0,3],\"data_offsets\":[24,24]}}",
                 true, values, sizeof(values), &size);
  // "s" shares bytes with "w": overlapping is refused, so use a separate image for the scalar.
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_safetensors *file;
  assert_int_equal(attn_safetensors_open_memory(bytes, size, "m.safetensors",
                                                attn_allocator_system(), &diag, &file),
                   ATTN_ERROR_PARSE);
  test_assert_error(&diag, "m.safetensors", "overlap");
  attn_diag_deinit(&diag);
  free(bytes);

  bytes = make_image("{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                     "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[16,20]},"
                     "\"e\":{\"dtype\":\"I8\",\"shape\":[0,3],\"data_offsets\":[24,24]}}",
                     true, values, sizeof(values), &size);
  file = open_image_ok(bytes, size);
  assert_int_equal(attn_safetensors_count(file), 3);
  assert_string_equal(attn_safetensors_name(file, 0), "w");
  assert_string_equal(attn_safetensors_name(file, 1), "s");
  assert_string_equal(attn_safetensors_name(file, 2), "e");
  assert_string_equal(attn_safetensors_path(file), "m.safetensors");
  attn_tensor view;
  assert_true(attn_safetensors_find(file, "w", &view));
  assert_int_equal(view.dtype, ATTN_DTYPE_F32);
  assert_int_equal(view.rank, 2);
  assert_int_equal(view.dims[1], 2);
  assert_memory_equal(view.data, values, 16);
  assert_true(attn_safetensors_find(file, "s", &view));
  assert_int_equal(view.rank, 0);
  assert_true(attn_tensor_get_f64(&view, 0) == 5.0);
  assert_true(attn_safetensors_find(file, "e", &view));
  assert_int_equal(attn_tensor_element_count(&view), 0);
  size_t index;
  assert_true(attn_safetensors_find_index(file, "e", &index));
  assert_int_equal(index, 2);
  assert_false(attn_safetensors_find(file, "missing", &view));
  assert_false(attn_safetensors_find(file, "__metadata__", &view));
  attn_safetensors_close(file);
  free(bytes);

  bytes = make_image("{}", true, NULL, 0, &size);
  file = open_image_ok(bytes, size);
  assert_int_equal(attn_safetensors_count(file), 0);
  assert_false(attn_safetensors_find(file, "w", &view));
  attn_safetensors_close(file);
  free(bytes);
  attn_safetensors_close(NULL);
}

static void safetensors_round_trips_every_dtype(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *path = test_join(dir, "x.safetensors");
  attn_allocator allocator = attn_allocator_system();
  // Element sizes alternate so the writer's alignment ordering is exercised.
  const attn_dtype dtypes[] = {ATTN_DTYPE_I8,  ATTN_DTYPE_F32, ATTN_DTYPE_BOOL, ATTN_DTYPE_F16,
                               ATTN_DTYPE_I64, ATTN_DTYPE_I32, ATTN_DTYPE_BF16};
  enum { N = sizeof(dtypes) / sizeof(dtypes[0]) };
  attn_named_tensor tensors[N];
  char names[N][16];
  for (int i = 0; i < N; i++) {
    snprintf(names[i], sizeof(names[i]), "t.%d", N - i); // reverse order: the header sorts
    tensors[i].name = names[i];
    int64_t dims[2] = {3, i + 1};
    assert_int_equal(attn_tensor_alloc(allocator, dtypes[i], 2, dims, &tensors[i].tensor), ATTN_OK);
    for (int64_t e = 0; e < attn_tensor_element_count(&tensors[i].tensor); e++)
      attn_tensor_set_f64(&tensors[i].tensor, e, (double)(e % 5) - 2.0);
  }
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  assert_int_equal(attn_safetensors_write(path, tensors, N, allocator, &diag), ATTN_OK);

  size_t size;
  char *raw = test_read_file(path, &size);
  unsigned long long header_length = 0;
  for (int i = 7; i >= 0; i--)
    header_length = header_length << 8 | (unsigned char)raw[i];
  assert_int_equal(header_length % 8, 0);
  assert_non_null(strstr(raw + 8, "{\"t.1\":{\"dtype\":\"BF16\""));
  assert_true(strstr(raw + 8, "\"t.1\"") < strstr(raw + 8, "\"t.7\""));
  free(raw);

  attn_safetensors *file;
  assert_int_equal(attn_safetensors_open(path, allocator, &diag, &file), ATTN_OK);
  assert_int_equal(attn_safetensors_count(file), N);
  for (int i = 0; i < N; i++) {
    attn_tensor view;
    assert_true(attn_safetensors_find(file, names[i], &view));
    assert_int_equal(view.dtype, dtypes[i]);
    assert_int_equal(view.rank, 2);
    assert_int_equal(view.dims[0], 3);
    assert_int_equal(view.dims[1], i + 1);
    size_t bytes;
    assert_true(attn_tensor_size_bytes(&view, &bytes));
    assert_memory_equal(view.data, tensors[i].tensor.data, bytes);
    assert_int_equal((uintptr_t)view.data % attn_dtype_size(dtypes[i]), 0);
  }
  attn_safetensors_close(file);
  for (int i = 0; i < N; i++)
    attn_tensor_free(allocator, &tensors[i].tensor);
  assert_int_equal(diag.count, 0);
  attn_diag_deinit(&diag);
  test_remove_temp_dir(dir);
}

static void safetensors_writer_escapes_names_and_refuses_bad_input(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *path = test_join(dir, "x.safetensors");
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  int32_t value = 42;
  attn_named_tensor t = {"quote\"back\\slash\ttab", {ATTN_DTYPE_I32, 1, {1}, &value}};
  assert_int_equal(attn_safetensors_write(path, &t, 1, allocator, &diag), ATTN_OK);
  attn_safetensors *file;
  assert_int_equal(attn_safetensors_open(path, allocator, &diag, &file), ATTN_OK);
  attn_tensor view;
  assert_true(attn_safetensors_find(file, "quote\"back\\slash\ttab", &view));
  assert_int_equal(*(int32_t *)view.data, 42);
  attn_safetensors_close(file);

  attn_named_tensor twice[2] = {t, t};
  assert_int_equal(attn_safetensors_write(path, twice, 2, allocator, &diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  test_assert_error(&diag, path, "used twice");
  attn_named_tensor bad = t;
  bad.name = "__metadata__";
  assert_int_equal(attn_safetensors_write(path, &bad, 1, allocator, &diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  test_assert_error(&diag, path, "reserved name");
  bad.name = "";
  assert_int_equal(attn_safetensors_write(path, &bad, 1, allocator, &diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  bad = t;
  bad.tensor.dtype = ATTN_DTYPE_COUNT;
  assert_int_equal(attn_safetensors_write(path, &bad, 1, allocator, &diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  test_assert_error(&diag, path, "is invalid");
  bad = t;
  bad.tensor.data = NULL;
  assert_int_equal(attn_safetensors_write(path, &bad, 1, allocator, &diag),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(
      attn_safetensors_write("/nonexistent-dir/x.safetensors", &t, 1, allocator, &diag),
      ATTN_ERROR_IO);
  test_assert_error(&diag, "/nonexistent-dir/x.safetensors", "cannot create");
  assert_int_equal(attn_safetensors_write(path, NULL, 0, allocator, &diag), ATTN_OK);
  assert_int_equal(attn_safetensors_open(path, allocator, &diag, &file), ATTN_OK);
  assert_int_equal(attn_safetensors_count(file), 0);
  attn_safetensors_close(file);
  attn_diag_deinit(&diag);
  test_remove_temp_dir(dir);
}

typedef struct hostile_header {
  const char *header;
  size_t data_size;
  attn_status status;
  const char *message;
} hostile_header;

#define T(fields) "{\"a\":{" fields "}}"
#define F32_A     "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]"

static void safetensors_refuses_hostile_headers(void **state) {
  (void)state;
  static const hostile_header cases[] = {
      {"not json", 0, ATTN_ERROR_PARSE, "header is not valid JSON"},
      {"", 0, ATTN_ERROR_PARSE, "header is not valid JSON"},
      {"{\"a\":", 0, ATTN_ERROR_PARSE, "header is not valid JSON"},
      {"[]", 0, ATTN_ERROR_PARSE, "header is not a JSON object"},
      {"\"x\"", 0, ATTN_ERROR_PARSE, "header is not a JSON object"},
      {"{} x", 0, ATTN_ERROR_PARSE, "unexpected bytes after the JSON header"},
      {"{\"a\":1}", 0, ATTN_ERROR_PARSE, "tensor 'a': entry is not a JSON object"},
      {T("\"shape\":[1],\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "tensor 'a': missing \"dtype\""},
      {T("\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "tensor 'a': \"dtype\" is not a string"},
      {T("\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]"), 8, ATTN_ERROR_UNSUPPORTED,
       "tensor 'a': dtype F64 is not supported"},
      {T("\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]"), 8, ATTN_ERROR_UNSUPPORTED,
       "dtype U8 is not supported"},
      {T("\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]"), 8, ATTN_ERROR_UNSUPPORTED,
       "dtype f32 is not supported"},
      {T("\"dtype\":\"F32\",\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "tensor 'a': missing \"shape\""},
      {T("\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "\"shape\" is not an array"},
      {T("\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "dimension 0 of \"shape\" is not an integer"},
      {T("\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "dimension 1 of \"shape\" is negative"},
      {T("\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "dimension 0 of \"shape\" is not a number"},
      {T("\"dtype\":\"F32\",\"shape\":[1e300],\"data_offsets\":[0,4]"), 4, ATTN_ERROR_PARSE,
       "dimension 0 of \"shape\" is too large"},
      {T("\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]"), 4,
       ATTN_ERROR_UNSUPPORTED, "tensor 'a': rank 9 is more than 8"},
      {T("\"dtype\":\"F32\",\"shape\":[1]"), 4, ATTN_ERROR_PARSE,
       "tensor 'a': missing \"data_offsets\""},
      {T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]"), 4, ATTN_ERROR_PARSE,
       "\"data_offsets\" is not an array of two integers"},
      {T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]"), 8, ATTN_ERROR_PARSE,
       "\"data_offsets\" is not an array of two integers"},
      {T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":\"0,4\""), 4, ATTN_ERROR_PARSE,
       "\"data_offsets\" is not an array of two integers"},
      {T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]"), 4, ATTN_ERROR_PARSE,
       "a \"data_offsets\" value is negative"},
      {T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,null]"), 4, ATTN_ERROR_PARSE,
       "a \"data_offsets\" value is not a number"},
      {T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]"), 8, ATTN_ERROR_PARSE,
       "tensor 'a': data_offsets [8, 4] end before they begin"},
      {T("\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]"), 4, ATTN_ERROR_PARSE,
       "tensor 'a': data_offsets end 400 is past the end of the data (4 bytes)"},
      {T("\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]"), 8, ATTN_ERROR_PARSE,
       "tensor 'a': shape [2] of F32 needs 8 bytes, but data_offsets [0, 4] hold 4"},
      {T("\"dtype\":\"I64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]"), 8,
       ATTN_ERROR_PARSE, "tensor 'a': shape [4294967296, 4294967296] is too large"},
      {T("\"dtype\":\"I64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]"), 8,
       ATTN_ERROR_PARSE, "is too large"},
      {T("\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]"), 8, ATTN_ERROR_PARSE,
       "tensor 'a': data at offset 2 is not aligned to its 4-byte elements"},
      {"{\"a\":{" F32_A "},\"a\":{" F32_A "}}", 4, ATTN_ERROR_PARSE,
       "tensor 'a' appears twice in the header"},
      {"{\"a\":{" F32_A "},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
       ATTN_ERROR_PARSE, "tensors 'a' (bytes 0..4) and 'b' (bytes 0..8) overlap"},
      {"{\"__metadata__\":1}", 0, ATTN_ERROR_PARSE, "\"__metadata__\" is not a JSON object"},
      {"{\"__metadata__\":{\"k\":1}}", 0, ATTN_ERROR_PARSE,
       "\"__metadata__\" entry 'k' is not a string"},
      {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, ATTN_ERROR_PARSE,
       "\"__metadata__\" appears twice"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t size;
    unsigned char *bytes = make_image(cases[i].header, true, NULL, cases[i].data_size, &size);
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_safetensors *file = (attn_safetensors *)1;
    attn_status status = attn_safetensors_open_memory(bytes, size, "h.safetensors",
                                                      attn_allocator_system(), &diag, &file);
    if (status != cases[i].status)
      fail_msg("case %zu (%s): status %s, message %s", i, cases[i].header, attn_status_name(status),
               attn_diag_last_error(&diag) ? attn_diag_last_error(&diag) : "(none)");
    assert_null(file);
    assert_int_equal(diag.error_count, 1);
    test_assert_error(&diag, "h.safetensors", cases[i].message);
    attn_diag_deinit(&diag);
    free(bytes);
  }
}

static void safetensors_refuses_bad_lengths(void **state) {
  (void)state;
  const struct {
    const char *bytes;
    size_t size;
    const char *message;
  } cases[] = {
      {"", 0, "file is 0 bytes, too short for the 8-byte header length"},
      {"\x02\x00\x00", 3, "file is 3 bytes, too short"},
      {"\x64\x00\x00\x00\x00\x00\x00\x00{}", 10, "header length 100 is larger than the file (10"},
      {"\xff\xff\xff\xff\xff\xff\xff\xff{}", 10, "header length 18446744073709551615 is larger"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_safetensors *file;
    assert_int_equal(attn_safetensors_open_memory(cases[i].bytes, cases[i].size, "l.safetensors",
                                                  attn_allocator_system(), &diag, &file),
                     ATTN_ERROR_PARSE);
    test_assert_error(&diag, "l.safetensors", cases[i].message);
    attn_diag_deinit(&diag);
  }
  // An unpadded header puts the data off alignment; a 1-byte tensor does not mind.
  size_t size;
  unsigned char *bytes =
      make_image("{\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", false,
                 "\x01\x00\x01", 3, &size);
  attn_safetensors *file = open_image_ok(bytes, size);
  attn_tensor view;
  assert_true(attn_safetensors_find(file, "b", &view));
  assert_memory_equal(view.data, "\x01\x00\x01", 3);
  attn_safetensors_close(file);
  free(bytes);
}

static void safetensors_reports_files_it_cannot_open(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_safetensors *file;
  const char *missing = test_join(dir, "missing.safetensors");
  assert_int_equal(attn_safetensors_open(missing, allocator, &diag, &file), ATTN_ERROR_IO);
  test_assert_error(&diag, missing, "cannot open");
  assert_int_equal(attn_safetensors_open(dir, allocator, &diag, &file), ATTN_ERROR_IO);
  test_assert_error(&diag, dir, "not a regular file");
  const char *short_file = test_join(dir, "short.safetensors");
  test_write_file(short_file, "abc", 3);
  assert_int_equal(attn_safetensors_open(short_file, allocator, &diag, &file), ATTN_ERROR_PARSE);
  test_assert_error(&diag, short_file, "file is 3 bytes");
  const char *bad = test_join(dir, "bad.safetensors");
  size_t size;
  unsigned char *bytes =
      make_image(T("\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]"), true, NULL, 8, &size);
  test_write_file(bad, bytes, size);
  free(bytes);
  assert_int_equal(attn_safetensors_open(bad, allocator, &diag, &file), ATTN_ERROR_UNSUPPORTED);
  test_assert_error(&diag, bad, "tensor 'a': dtype F64 is not supported");
  attn_diag_deinit(&diag);
  test_remove_temp_dir(dir);
}

static void safetensors_reads_and_rewrites_the_gpt2_fixture(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *copy = test_join(dir, "copy.safetensors");
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_safetensors *file;
  assert_int_equal(
      attn_safetensors_open("tests/data/hf/gpt2-tiny/model.safetensors", allocator, &diag, &file),
      ATTN_OK);
  size_t count = attn_safetensors_count(file);
  assert_true(count > 20);
  attn_tensor view;
  assert_true(attn_safetensors_find(file, "transformer.wte.weight", &view));
  assert_int_equal(view.dtype, ATTN_DTYPE_F32);
  assert_int_equal(view.rank, 2);
  assert_int_equal(view.dims[0], 384);
  assert_int_equal(view.dims[1], 64);
  assert_true(attn_safetensors_find(file, "transformer.h.0.attn.c_attn.weight", &view));
  assert_int_equal(view.dims[1], 192);

  attn_named_tensor *tensors = calloc(count, sizeof(*tensors));
  assert_non_null(tensors);
  for (size_t i = 0; i < count; i++) {
    tensors[i].name = attn_safetensors_name(file, i);
    attn_safetensors_get(file, i, &tensors[i].tensor);
    size_t index;
    assert_true(attn_safetensors_find_index(file, tensors[i].name, &index));
    assert_int_equal(index, i);
  }
  assert_int_equal(attn_safetensors_write(copy, tensors, count, allocator, &diag), ATTN_OK);
  attn_safetensors *again;
  assert_int_equal(attn_safetensors_open(copy, allocator, &diag, &again), ATTN_OK);
  assert_int_equal(attn_safetensors_count(again), count);
  for (size_t i = 0; i < count; i++) {
    attn_tensor a;
    assert_true(attn_safetensors_find(again, tensors[i].name, &a));
    size_t bytes;
    assert_true(attn_tensor_size_bytes(&a, &bytes));
    assert_memory_equal(a.data, tensors[i].tensor.data, bytes);
  }
  attn_safetensors_close(again);
  free(tensors);
  attn_safetensors_close(file);

  const char *shards[] = {"model-00001-of-00006", "model-00002-of-00006", "model-00003-of-00006",
                          "model-00004-of-00006", "model-00005-of-00006", "model-00006-of-00006"};
  for (size_t i = 0; i < 6; i++) {
    char path[256];
    snprintf(path, sizeof(path), "tests/data/hf/llama-tiny-gqa/%s.safetensors", shards[i]);
    assert_int_equal(attn_safetensors_open(path, allocator, &diag, &file), ATTN_OK);
    assert_true(attn_safetensors_count(file) >= 1);
    attn_safetensors_close(file);
  }
  assert_int_equal(diag.count, 0);
  attn_diag_deinit(&diag);
  test_remove_temp_dir(dir);
}

static void safetensors_finds_each_of_thousands_of_tensors(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *path = test_join(dir, "many.safetensors");
  attn_allocator allocator = attn_allocator_system();
  enum { COUNT = 5000 };
  attn_named_tensor *tensors = calloc(COUNT, sizeof(*tensors));
  char(*names)[32] = calloc(COUNT, sizeof(*names));
  int32_t *values = calloc(COUNT, sizeof(*values));
  assert_true(tensors && names && values);
  for (int i = 0; i < COUNT; i++) {
    snprintf(names[i], sizeof(names[i]), "layers.%d.weight", i);
    values[i] = i;
    tensors[i] = (attn_named_tensor){names[i], {ATTN_DTYPE_I32, 1, {1}, &values[i]}};
  }
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  assert_int_equal(attn_safetensors_write(path, tensors, COUNT, allocator, &diag), ATTN_OK);
  attn_safetensors *file;
  assert_int_equal(attn_safetensors_open(path, allocator, &diag, &file), ATTN_OK);
  for (int i = 0; i < COUNT; i++) {
    attn_tensor view;
    assert_true(attn_safetensors_find(file, names[i], &view));
    assert_int_equal(*(int32_t *)view.data, i);
  }
  attn_safetensors_close(file);
  attn_diag_deinit(&diag);
  free(values);
  free(names);
  free(tensors);
  test_remove_temp_dir(dir);
}

static attn_status open_memory_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  (void)context;
  const float values[] = {1, 2, 3, 4};
  size_t size;
  unsigned char *bytes =
      make_image("{\"__metadata__\":{\"format\":\"pt\"},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}",
                 true, values, sizeof(values), &size);
  attn_safetensors *file;
  attn_status status =
      attn_safetensors_open_memory(bytes, size, "m.safetensors", allocator, diag, &file);
  attn_safetensors_close(file);
  free(bytes);
  return status;
}

static attn_status open_file_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  (void)context;
  attn_safetensors *file;
  attn_status status =
      attn_safetensors_open("tests/data/hf/gpt2-tiny/model.safetensors", allocator, diag, &file);
  attn_safetensors_close(file);
  return status;
}

static attn_status write_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  const char *path = context;
  int64_t a[] = {1, 2, 3};
  int8_t b[] = {4, 5};
  attn_named_tensor tensors[] = {{"b", {ATTN_DTYPE_I8, 1, {2}, b}},
                                 {"a", {ATTN_DTYPE_I64, 1, {3}, a}}};
  return attn_safetensors_write(path, tensors, 2, allocator, diag);
}

static void safetensors_survives_allocation_failures(void **state) {
  (void)state;
  assert_true(test_allocation_failure_sweep(open_memory_scenario, NULL) >= 3);
  assert_true(test_allocation_failure_sweep(open_file_scenario, NULL) >= 3);
  const char *dir = test_make_temp_dir();
  char path[128];
  snprintf(path, sizeof(path), "%s/w.safetensors", dir);
  assert_true(test_allocation_failure_sweep(write_scenario, path) >= 3);
  test_remove_temp_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(safetensors_reads_a_hand_made_image),
      cmocka_unit_test(safetensors_round_trips_every_dtype),
      cmocka_unit_test(safetensors_writer_escapes_names_and_refuses_bad_input),
      cmocka_unit_test(safetensors_refuses_hostile_headers),
      cmocka_unit_test(safetensors_refuses_bad_lengths),
      cmocka_unit_test(safetensors_reports_files_it_cannot_open),
      cmocka_unit_test(safetensors_reads_and_rewrites_the_gpt2_fixture),
      cmocka_unit_test(safetensors_finds_each_of_thousands_of_tensors),
      cmocka_unit_test(safetensors_survives_allocation_failures),
  };
  return cmocka_run_group_tests_name("runtime/safetensors", tests, NULL, NULL);
}
