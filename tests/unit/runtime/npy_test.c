// Unit tests for runtime/tensor/npy: round trips, byte orders, Fortran order, format versions,
// hostile headers, allocation failures and the Hugging Face fixtures.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/tensor/npy.h"
#include "runtime_test_util.h"

// Builds a .npy image: magic, version `major`.0, the header `dict` padded with spaces and a
// newline to a multiple of 64 bytes, then `data`. Returns a malloc'ed buffer.
static unsigned char *make_npy(int major, const char *dict, const void *data, size_t data_size,
                               size_t *out_size) {
  size_t preamble = major == 1 ? 10 : 12;
  size_t dict_length = strlen(dict);
  size_t header_length = (preamble + dict_length + 1 + 63) / 64 * 64 - preamble;
  size_t size = preamble + header_length + data_size;
  unsigned char *bytes = malloc(size);
  assert_non_null(bytes);
  memcpy(bytes, "\x93NUMPY", 6);
  bytes[6] = (unsigned char)major;
  bytes[7] = 0;
  for (size_t i = 0; i < preamble - 8; i++)
    bytes[8 + i] = (unsigned char)(header_length >> (8 * i));
  memcpy(bytes + preamble, dict, dict_length);
  memset(bytes + preamble + dict_length, ' ', header_length - dict_length);
  bytes[preamble + header_length - 1] = '\n';
  if (data_size)
    memcpy(bytes + preamble + header_length, data, data_size);
  *out_size = size;
  return bytes;
}

// Parses an image built by make_npy and expects success.
static void parse_ok(const unsigned char *bytes, size_t size, attn_tensor *out) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_status status = attn_npy_parse(bytes, size, "t.npy", attn_allocator_system(), &diag, out);
  if (status != ATTN_OK)
    fail_msg("parse failed: %s", attn_diag_last_error(&diag));
  attn_diag_deinit(&diag);
}

static void npy_round_trips_every_dtype(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *path = test_join(dir, "x.npy");
  attn_allocator allocator = attn_allocator_system();
  const attn_dtype dtypes[] = {ATTN_DTYPE_F32, ATTN_DTYPE_F16, ATTN_DTYPE_I64,
                               ATTN_DTYPE_I32, ATTN_DTYPE_I8,  ATTN_DTYPE_BOOL};
  const struct {
    uint32_t rank;
    int64_t dims[3];
  } shapes[] = {{0, {0}}, {1, {5}}, {2, {2, 3}}, {3, {2, 1, 4}}, {2, {0, 4}}};
  for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
      attn_tensor tensor, back;
      assert_int_equal(
          attn_tensor_alloc(allocator, dtypes[d], shapes[s].rank, shapes[s].dims, &tensor),
          ATTN_OK);
      for (int64_t i = 0; i < attn_tensor_element_count(&tensor); i++)
        attn_tensor_set_f64(&tensor, i, (double)(i % 7) - 3.0);
      attn_diag diag;
      attn_diag_init(&diag, allocator);
      assert_int_equal(attn_npy_write(path, &tensor, &diag), ATTN_OK);
      assert_int_equal(attn_npy_read(path, allocator, &diag, &back), ATTN_OK);
      assert_int_equal(diag.count, 0);
      assert_int_equal(back.dtype, tensor.dtype);
      assert_int_equal(back.rank, tensor.rank);
      for (uint32_t k = 0; k < tensor.rank; k++)
        assert_int_equal(back.dims[k], tensor.dims[k]);
      size_t size;
      assert_true(attn_tensor_size_bytes(&tensor, &size));
      assert_memory_equal(back.data, tensor.data, size ? size : 1);
      attn_tensor_free(allocator, &back);
      attn_tensor_free(allocator, &tensor);
      attn_diag_deinit(&diag);
    }
  }
  test_remove_temp_dir(dir);
}

static void npy_writes_the_header_numpy_writes(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *path = test_join(dir, "x.npy");
  attn_tensor tensor;
  assert_int_equal(
      attn_tensor_alloc(attn_allocator_system(), ATTN_DTYPE_F32, 2, (int64_t[]){2, 3}, &tensor),
      ATTN_OK);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  assert_int_equal(attn_npy_write(path, &tensor, &diag), ATTN_OK);
  size_t size;
  char *bytes = test_read_file(path, &size);
  assert_int_equal(size, 128 + 24);
  assert_memory_equal(bytes, "\x93NUMPY\x01\x00\x76\x00", 10);
  const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  assert_memory_equal(bytes + 10, dict, strlen(dict));
  assert_int_equal(bytes[127], '\n');
  assert_int_equal(bytes[126], ' ');
  free(bytes);
  attn_tensor_free(attn_allocator_system(), &tensor);
  attn_diag_deinit(&diag);
  test_remove_temp_dir(dir);
}

static void npy_writes_bf16_as_u2_with_a_warning(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  const char *path = test_join(dir, "x.npy");
  attn_allocator allocator = attn_allocator_system();
  attn_tensor tensor, back;
  assert_int_equal(attn_tensor_alloc(allocator, ATTN_DTYPE_BF16, 1, (int64_t[]){3}, &tensor),
                   ATTN_OK);
  attn_tensor_set_f64(&tensor, 1, 1.5);
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  assert_int_equal(attn_npy_write(path, &tensor, &diag), ATTN_OK);
  assert_int_equal(diag.count, 1);
  assert_int_equal(diag.items[0].severity, ATTN_SEVERITY_WARNING);
  assert_non_null(strstr(diag.items[0].message, "bfloat16"));
  size_t size;
  char *bytes = test_read_file(path, &size);
  assert_non_null(strstr(bytes + 10, "'descr': '<u2'"));
  assert_int_equal(size, 128 + 6);
  assert_int_equal((unsigned char)bytes[128 + 2], 0xc0); // 1.5 in bf16 is 0x3fc0
  assert_int_equal((unsigned char)bytes[128 + 3], 0x3f);
  free(bytes);
  // NumPy's uint16 is not an attnc dtype, so the file does not read back.
  assert_int_equal(attn_npy_read(path, allocator, &diag, &back), ATTN_ERROR_UNSUPPORTED);
  test_assert_error(&diag, path, "'<u2' is not supported");
  attn_tensor_free(allocator, &tensor);
  attn_diag_deinit(&diag);
  test_remove_temp_dir(dir);
}

static void npy_reads_big_endian_data(void **state) {
  (void)state;
  attn_allocator allocator = attn_allocator_system();
  attn_tensor t;
  size_t size;
  // 1.0f, -2.5f big-endian.
  const unsigned char f4[] = {0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0};
  unsigned char *bytes =
      make_npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", f4, 8, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(t.dtype, ATTN_DTYPE_F32);
  assert_true(attn_tensor_get_f64(&t, 0) == 1.0);
  assert_true(attn_tensor_get_f64(&t, 1) == -2.5);
  attn_tensor_free(allocator, &t);
  free(bytes);

  const unsigned char i8[] = {0,    0,    0,    0,    0,    0,    1,    2,
                              0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};
  bytes = make_npy(1, "{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }", i8, 16, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(((int64_t *)t.data)[0], 258);
  assert_int_equal(((int64_t *)t.data)[1], -2);
  attn_tensor_free(allocator, &t);
  free(bytes);

  const unsigned char f2[] = {0x3c, 0x00, 0xc0, 0x00}; // 1.0, -2.0
  bytes = make_npy(1, "{'descr': '>f2', 'fortran_order': False, 'shape': (2,), }", f2, 4, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(t.dtype, ATTN_DTYPE_F16);
  assert_true(attn_tensor_get_f64(&t, 0) == 1.0);
  assert_true(attn_tensor_get_f64(&t, 1) == -2.0);
  attn_tensor_free(allocator, &t);
  free(bytes);

  const unsigned char i4[] = {0, 0, 1, 0, 0x80, 0, 0, 0};
  bytes = make_npy(1, "{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", i4, 8, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(((int32_t *)t.data)[0], 256);
  assert_int_equal(((int32_t *)t.data)[1], INT32_MIN);
  attn_tensor_free(allocator, &t);
  free(bytes);
}

static void npy_reads_fortran_order_as_row_major(void **state) {
  (void)state;
  attn_allocator allocator = attn_allocator_system();
  attn_tensor t;
  size_t size;
  // [[0, 1, 2], [3, 4, 5]] stored column by column.
  const int32_t columns[] = {0, 3, 1, 4, 2, 5};
  unsigned char *bytes = make_npy(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
                                  columns, sizeof(columns), &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(t.rank, 2);
  for (int i = 0; i < 6; i++)
    assert_int_equal(((int32_t *)t.data)[i], i);
  attn_tensor_free(allocator, &t);
  free(bytes);

  // (2, 3, 4): element (i, j, k) = 100i + 10j + k sits at i + 2j + 6k in Fortran order.
  int64_t fortran[24];
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        fortran[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
  bytes = make_npy(3, "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3, 4), }", fortran,
                   sizeof(fortran), &size);
  parse_ok(bytes, size, &t);
  for (int i = 0; i < 2; i++)
    for (int j = 0; j < 3; j++)
      for (int k = 0; k < 4; k++)
        assert_int_equal(((int64_t *)t.data)[i * 12 + j * 4 + k], 100 * i + 10 * j + k);
  attn_tensor_free(allocator, &t);
  free(bytes);

  // Big-endian and Fortran together, with a zero dim (nothing to move).
  const unsigned char be[] = {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
  bytes = make_npy(1, "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 2), }", be, 16, &size);
  parse_ok(bytes, size, &t);
  const int32_t expected[] = {1, 3, 2, 4};
  assert_memory_equal(t.data, expected, sizeof(expected));
  attn_tensor_free(allocator, &t);
  free(bytes);
  bytes = make_npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (0, 3), }", NULL, 0, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(attn_tensor_element_count(&t), 0);
  attn_tensor_free(allocator, &t);
  free(bytes);
}

static void npy_reads_versions_2_and_3_scalars_and_bools(void **state) {
  (void)state;
  attn_allocator allocator = attn_allocator_system();
  attn_tensor t;
  size_t size;
  const float value = 7.25f;
  unsigned char *bytes =
      make_npy(2, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &value, 4, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(t.rank, 0);
  assert_true(attn_tensor_get_f64(&t, 0) == 7.25);
  attn_tensor_free(allocator, &t);
  free(bytes);

  // Version 3.0 (UTF-8 header), double quotes, no trailing comma, Python 2 longs, '=' order.
  const unsigned char flags[] = {0, 1, 2, 0};
  bytes = make_npy(3, "{\"shape\": (2L, 2L), \"fortran_order\": False, \"descr\": \"|b1\"}", flags,
                   4, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(t.dtype, ATTN_DTYPE_BOOL);
  const unsigned char normalised[] = {0, 1, 1, 0};
  assert_memory_equal(t.data, normalised, 4);
  attn_tensor_free(allocator, &t);
  free(bytes);

  const signed char small[] = {-1, 2, -3};
  bytes = make_npy(1, "{'descr': '=i1', 'fortran_order': False, 'shape': (3,)}", small, 3, &size);
  parse_ok(bytes, size, &t);
  assert_int_equal(t.dtype, ATTN_DTYPE_I8);
  assert_memory_equal(t.data, small, 3);
  attn_tensor_free(allocator, &t);
  free(bytes);
}

typedef struct hostile_npy {
  const char *dict; // NULL: use `raw`
  size_t data_size;
  attn_status status;
  const char *message;
} hostile_npy;

static void npy_refuses_hostile_headers(void **state) {
  (void)state;
  static const hostile_npy cases[] = {
      {"[1, 2]", 0, ATTN_ERROR_PARSE, "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False}", 0, ATTN_ERROR_PARSE, "missing key 'shape'"},
      {"{'shape': (), 'fortran_order': False}", 0, ATTN_ERROR_PARSE, "missing key 'descr'"},
      {"{'descr': '<f4', 'shape': ()}", 0, ATTN_ERROR_PARSE, "missing key 'fortran_order'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 4, ATTN_ERROR_PARSE,
       "unexpected key 'x'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}", 4, ATTN_ERROR_PARSE,
       "key 'descr' appears twice"},
      {"{'descr': '<u1', 'fortran_order': False, 'shape': ()}", 1, ATTN_ERROR_UNSUPPORTED,
       "dtype '<u1' is not supported"},
      {"{'descr': '<f8', 'fortran_order': False, 'shape': ()}", 8, ATTN_ERROR_UNSUPPORTED,
       "dtype '<f8' is not supported"},
      {"{'descr': '<c8', 'fortran_order': False, 'shape': ()}", 8, ATTN_ERROR_UNSUPPORTED,
       "not supported"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': ()}", 4, ATTN_ERROR_UNSUPPORTED,
       "structured dtypes"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 4,
       ATTN_ERROR_UNSUPPORTED, "rank is more than 8"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}", 4, ATTN_ERROR_PARSE,
       "negative dimension"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3)}", 12, ATTN_ERROR_PARSE,
       "not a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [3]}", 12, ATTN_ERROR_PARSE,
       "'shape' must be a tuple"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2.5,)}", 12, ATTN_ERROR_PARSE,
       "'shape' must be a tuple of integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", 4,
       ATTN_ERROR_PARSE, "dimension in 'shape' is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4)}", 4,
       ATTN_ERROR_PARSE, "shape (4294967296, 4294967296, 4) is too large"},
      {"{'descr': '<i8', 'fortran_order': False, 'shape': (2305843009213693952,)}", 8,
       ATTN_ERROR_PARSE, "is too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,)}", 8, ATTN_ERROR_PARSE,
       "data is 8 bytes, but shape (3,) of '<f4' needs 12"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 8, ATTN_ERROR_PARSE,
       "data is 8 bytes"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", 4, ATTN_ERROR_PARSE,
       "unexpected text after the dict"},
      {"{'descr' '<f4'}", 4, ATTN_ERROR_PARSE, "expected ':'"},
      {"{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}", 4, ATTN_ERROR_PARSE, "True or False"},
      {"{'descr': '<f4', 'fortran_order': Truex, 'shape': (1,)}", 4, ATTN_ERROR_PARSE,
       "True or False"},
      {"{'de\\scr': '<f4'}", 4, ATTN_ERROR_PARSE, "escapes"},
      {"{'descr': '<f4' 'fortran_order': False}", 4, ATTN_ERROR_PARSE, "expected ',' or '}'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1 2)}", 4, ATTN_ERROR_PARSE,
       "expected ',' or ')'"},
      {"{'descr", 0, ATTN_ERROR_PARSE, "unterminated string"},
      {"", 0, ATTN_ERROR_PARSE, "expected '{'"},
  };
  unsigned char zeros[64] = {0};
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    size_t size;
    unsigned char *bytes = make_npy(1, cases[i].dict, zeros, cases[i].data_size, &size);
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_tensor t;
    attn_status status =
        attn_npy_parse(bytes, size, "hostile.npy", attn_allocator_system(), &diag, &t);
    if (status != cases[i].status)
      fail_msg("case %zu (%s): status %s, message %s", i, cases[i].dict, attn_status_name(status),
               attn_diag_last_error(&diag) ? attn_diag_last_error(&diag) : "(none)");
    assert_null(t.data);
    test_assert_error(&diag, "hostile.npy", cases[i].message);
    attn_diag_deinit(&diag);
    free(bytes);
  }
}

static void npy_refuses_bad_preambles(void **state) {
  (void)state;
  const struct {
    const char *bytes;
    size_t size;
    attn_status status;
    const char *message;
  } cases[] = {
      {"", 0, ATTN_ERROR_PARSE, "bad magic"},
      {"\x93NUMP", 5, ATTN_ERROR_PARSE, "bad magic"},
      {"\x93NUMPZ\x01\x00\x00\x00", 10, ATTN_ERROR_PARSE, "bad magic"},
      {"\x93NUMPY\x04\x00\x00\x00", 10, ATTN_ERROR_UNSUPPORTED, "version 4.0 is not supported"},
      {"\x93NUMPY\x01\x00\x10\x00{}", 12, ATTN_ERROR_PARSE, "header length 16 runs past the end"},
      {"\x93NUMPY\x02\x00\x00\x00", 10, ATTN_ERROR_PARSE, "file ends inside the .npy preamble"},
      {"\x93NUMPY\x02\x00\xff\xff\xff\xff", 12, ATTN_ERROR_PARSE, "runs past the end"},
      {"\x93NUMPY\x01\x00\x00\x00", 10, ATTN_ERROR_PARSE, "expected '{'"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_tensor t;
    assert_int_equal(
        attn_npy_parse(cases[i].bytes, cases[i].size, "p.npy", attn_allocator_system(), &diag, &t),
        cases[i].status);
    test_assert_error(&diag, "p.npy", cases[i].message);
    attn_diag_deinit(&diag);
  }
}

static void npy_reads_the_hugging_face_fixtures(void **state) {
  (void)state;
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_tensor ids, logits;
  assert_int_equal(attn_npy_read("tests/data/hf/gpt2-tiny/input_ids.npy", allocator, &diag, &ids),
                   ATTN_OK);
  assert_int_equal(ids.dtype, ATTN_DTYPE_I64);
  assert_int_equal(ids.rank, 2);
  assert_int_equal(ids.dims[0], 2);
  assert_int_equal(ids.dims[1], 11);
  for (int64_t i = 0; i < 22; i++) {
    int64_t id = ((int64_t *)ids.data)[i];
    assert_true(id >= 0 && id < 384);
  }
  assert_int_equal(attn_npy_read("tests/data/hf/gpt2-tiny/logits.npy", allocator, &diag, &logits),
                   ATTN_OK);
  assert_int_equal(logits.dtype, ATTN_DTYPE_F32);
  assert_int_equal(logits.rank, 3);
  assert_int_equal(logits.dims[2], 384);
  attn_tensor_free(allocator, &logits);
  attn_tensor_free(allocator, &ids);
  attn_diag_deinit(&diag);
}

static void npy_reports_files_it_cannot_read_or_write(void **state) {
  (void)state;
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_tensor t;
  assert_int_equal(attn_npy_read("tests/data/no-such.npy", allocator, &diag, &t), ATTN_ERROR_IO);
  test_assert_error(&diag, "tests/data/no-such.npy", "cannot open");
  assert_int_equal(attn_npy_read("tests/data", allocator, &diag, &t), ATTN_ERROR_IO);
  test_assert_error(&diag, "tests/data", "directory");
  assert_int_equal(attn_npy_read("tests/data/hf/gpt2-tiny/config.json", allocator, &diag, &t),
                   ATTN_ERROR_PARSE);
  test_assert_error(&diag, "tests/data/hf/gpt2-tiny/config.json", "not a .npy file");

  assert_int_equal(attn_tensor_alloc(allocator, ATTN_DTYPE_F32, 1, (int64_t[]){2}, &t), ATTN_OK);
  assert_int_equal(attn_npy_write("/nonexistent-dir/x.npy", &t, &diag), ATTN_ERROR_IO);
  test_assert_error(&diag, "/nonexistent-dir/x.npy", "cannot create");
  attn_tensor bad = t;
  bad.dtype = ATTN_DTYPE_COUNT;
  assert_int_equal(attn_npy_write("/tmp/never.npy", &bad, &diag), ATTN_ERROR_INVALID_ARGUMENT);
  bad = t;
  bad.dims[0] = -1;
  assert_int_equal(attn_npy_write("/tmp/never.npy", &bad, &diag), ATTN_ERROR_INVALID_ARGUMENT);
  test_assert_error(&diag, "/tmp/never.npy", "invalid tensor");
  attn_tensor_free(allocator, &t);
  attn_diag_deinit(&diag);
}

static attn_status parse_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  const char *path = context;
  attn_tensor t;
  attn_status status = attn_npy_read(path, allocator, diag, &t);
  if (status == ATTN_OK) {
    assert_int_equal(t.dtype, ATTN_DTYPE_F32);
    attn_tensor_free(allocator, &t);
  }
  return status;
}

static attn_status fortran_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  (void)context;
  const int32_t columns[] = {0, 3, 1, 4, 2, 5};
  size_t size;
  unsigned char *bytes = make_npy(1, "{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3), }",
                                  columns, sizeof(columns), &size);
  attn_tensor t;
  attn_status status = attn_npy_parse(bytes, size, "f.npy", allocator, diag, &t);
  attn_tensor_free(allocator, &t);
  free(bytes);
  return status;
}

static void npy_survives_allocation_failures(void **state) {
  (void)state;
  assert_true(test_allocation_failure_sweep(parse_scenario,
                                            (void *)"tests/data/hf/gpt2-tiny/logits.npy") >= 2);
  assert_true(test_allocation_failure_sweep(fortran_scenario, NULL) >= 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(npy_round_trips_every_dtype),
      cmocka_unit_test(npy_writes_the_header_numpy_writes),
      cmocka_unit_test(npy_writes_bf16_as_u2_with_a_warning),
      cmocka_unit_test(npy_reads_big_endian_data),
      cmocka_unit_test(npy_reads_fortran_order_as_row_major),
      cmocka_unit_test(npy_reads_versions_2_and_3_scalars_and_bools),
      cmocka_unit_test(npy_refuses_hostile_headers),
      cmocka_unit_test(npy_refuses_bad_preambles),
      cmocka_unit_test(npy_reads_the_hugging_face_fixtures),
      cmocka_unit_test(npy_reports_files_it_cannot_read_or_write),
      cmocka_unit_test(npy_survives_allocation_failures),
  };
  return cmocka_run_group_tests_name("runtime/npy", tests, NULL, NULL);
}
