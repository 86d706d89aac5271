// Unit tests for runtime/base: allocator, arena, diagnostics, tensors and half floats.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "runtime/base/allocator.h"
#include "runtime/base/arena.h"
#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"

static void arena_returns_aligned_memory_and_frees_everything(void **state) {
  (void)state;
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  attn_arena arena;
  attn_arena_init(&arena, attn_counting_allocator_get(&counter));
  for (int i = 0; i < 1000; i++) {
    void *p = attn_arena_alloc(&arena, (size_t)(i % 37) + 1, 16);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
  }
  void *big = attn_arena_alloc(&arena, 1 << 20, 64);
  assert_non_null(big);
  assert_int_equal((uintptr_t)big % 64, 0);
  assert_string_equal(attn_arena_printf(&arena, "%s-%d", "x", 7), "x-7");
  attn_arena_deinit(&arena);
  assert_int_equal(counter.live_bytes, 0);
  assert_int_equal(counter.live_blocks, 0);
}

static void arena_reports_out_of_memory(void **state) {
  (void)state;
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  counter.fail_after = 0;
  attn_arena arena;
  attn_arena_init(&arena, attn_counting_allocator_get(&counter));
  assert_null(attn_arena_alloc(&arena, 10, 8));
  assert_null(attn_arena_alloc(&arena, SIZE_MAX - 8, 8));
  attn_arena_deinit(&arena);
  assert_int_equal(counter.live_blocks, 0);
}

static void counting_allocator_fails_one_request_or_all_after(void **state) {
  (void)state;
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  attn_allocator a = attn_counting_allocator_get(&counter);
  void *blocks[4] = {NULL};
  counter.fail_at = 1; // only the second request fails
  for (int i = 0; i < 4; i++)
    blocks[i] = attn_allocator_alloc(a, 16);
  assert_non_null(blocks[0]);
  assert_null(blocks[1]);
  assert_non_null(blocks[2]);
  assert_non_null(blocks[3]);
  assert_int_equal(counter.total_requests, 4);
  assert_int_equal(counter.live_blocks, 3);
  counter.fail_at = -1;
  counter.fail_after = 4; // every request from the fifth on fails
  assert_null(attn_allocator_alloc(a, 16));
  assert_null(attn_allocator_alloc(a, 16));
  for (int i = 0; i < 4; i++)
    attn_allocator_free(a, blocks[i], blocks[i] ? 16 : 0);
  assert_int_equal(counter.live_bytes, 0);
  assert_int_equal(counter.live_blocks, 0);
}

static void diag_prints_location_and_caret(void **state) {
  (void)state;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  const char *text = "x = 1\ny = softmx(x)\n";
  attn_diag_add_source(&diag, "m.attn", text, strlen(text));
  attn_status status = attn_diag_error(&diag, (attn_loc){"m.attn", 2, 5}, ATTN_ERROR_PARSE,
                                       "unknown op '%s'", "softmx");
  assert_int_equal(status, ATTN_ERROR_PARSE);
  assert_string_equal(attn_diag_last_error(&diag), "unknown op 'softmx'");
  char buffer[256] = {0};
  FILE *out = fmemopen(buffer, sizeof(buffer) - 1, "w");
  attn_diag_write(&diag, out);
  fclose(out);
  assert_string_equal(buffer, "m.attn:2:5: error: unknown op 'softmx'\n  y = softmx(x)\n      ^\n");
  attn_diag_deinit(&diag);
}

static void diag_survives_allocation_failures(void **state) {
  (void)state;
  for (long fail = 0; fail < 6; fail++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    counter.fail_after = fail;
    attn_diag diag;
    attn_diag_init(&diag, attn_counting_allocator_get(&counter));
    assert_int_equal(attn_diag_error(&diag, (attn_loc){"f", 1, 1}, ATTN_ERROR_IO, "e%d", 1),
                     ATTN_ERROR_IO);
    assert_int_equal(diag.error_count, 1);
    attn_diag_deinit(&diag);
    assert_int_equal(counter.live_bytes, 0);
  }
}

static void half_conversions_round_to_nearest_even(void **state) {
  (void)state;
  assert_true(attn_f16_to_f32(0x3c00) == 1.0f);
  assert_true(attn_f16_to_f32(0xc000) == -2.0f);
  assert_true(attn_f16_to_f32(0x0001) == 5.9604644775390625e-08f);
  assert_int_equal(attn_f32_to_f16(1.0f), 0x3c00);
  assert_int_equal(attn_f32_to_f16(65504.0f), 0x7bff);
  assert_int_equal(attn_f32_to_f16(65520.0f), 0x7c00);
  assert_int_equal(attn_f32_to_f16(5.9604644775390625e-08f), 0x0001);
  // 1 + 2^-11 is halfway between 1 and the next f16: ties go to even (1.0).
  assert_int_equal(attn_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
  assert_int_equal(attn_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
  for (uint32_t h = 0; h < 0x7c00; h++)
    assert_int_equal(attn_f32_to_f16(attn_f16_to_f32((uint16_t)h)), h);
  assert_true(attn_bf16_to_f32(0x3f80) == 1.0f);
  assert_int_equal(attn_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
  assert_int_equal(attn_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-16f), 0x3f81);
}

static void tensor_alloc_rejects_overflowing_shapes(void **state) {
  (void)state;
  attn_tensor t;
  int64_t huge[2] = {INT64_MAX / 2, 4};
  assert_int_equal(attn_tensor_alloc(attn_allocator_system(), ATTN_DTYPE_F32, 2, huge, &t),
                   ATTN_ERROR_INVALID_ARGUMENT);
  int64_t dims[2] = {2, 3};
  assert_int_equal(attn_tensor_alloc(attn_allocator_system(), ATTN_DTYPE_I32, 2, dims, &t),
                   ATTN_OK);
  attn_tensor_set_f64(&t, 5, -7.9);
  assert_true(attn_tensor_get_f64(&t, 5) == -7.0);
  attn_tensor_set_f64(&t, 4, 1e20);
  assert_true(attn_tensor_get_f64(&t, 4) == 2147483647.0);
  char text[64];
  attn_tensor_format_type(t.dtype, t.rank, t.dims, text, sizeof(text));
  assert_string_equal(text, "i32[2, 3]");
  attn_tensor_free(attn_allocator_system(), &t);
}

static void tensor_alloc_accepts_its_own_dims(void **state) {
  (void)state;
  attn_tensor t = {ATTN_DTYPE_F32, 2, {3, 5}, NULL};
  assert_int_equal(attn_tensor_alloc(attn_allocator_system(), ATTN_DTYPE_I64, t.rank, t.dims, &t),
                   ATTN_OK);
  assert_int_equal(t.rank, 2);
  assert_int_equal(t.dims[0], 3);
  assert_int_equal(t.dims[1], 5);
  assert_int_equal(attn_tensor_element_count(&t), 15);
  attn_tensor_free(attn_allocator_system(), &t);
}

static void tensor_alloc_uninit_sizes_like_alloc(void **state) {
  (void)state;
  attn_counting_allocator counter;
  attn_counting_allocator_init(&counter, attn_allocator_system());
  attn_allocator a = attn_counting_allocator_get(&counter);
  attn_tensor t = {ATTN_DTYPE_F32, 2, {7, 9}, NULL};
  assert_int_equal(attn_tensor_alloc_uninit(a, ATTN_DTYPE_BF16, t.rank, t.dims, &t), ATTN_OK);
  assert_int_equal(t.dtype, ATTN_DTYPE_BF16);
  assert_int_equal(attn_tensor_element_count(&t), 63);
  assert_int_equal(counter.live_bytes, 126);
  memset(t.data, 0x7f, 126); // the whole tensor is writable
  attn_tensor_free(a, &t);
  assert_int_equal(counter.live_bytes, 0);
  int64_t huge[2] = {INT64_MAX / 2, 4};
  assert_int_equal(attn_tensor_alloc_uninit(a, ATTN_DTYPE_F32, 2, huge, &t),
                   ATTN_ERROR_INVALID_ARGUMENT);
  assert_null(t.data);
  counter.fail_after = 0;
  int64_t dims[1] = {5};
  assert_int_equal(attn_tensor_alloc_uninit(a, ATTN_DTYPE_F32, 1, dims, &t),
                   ATTN_ERROR_OUT_OF_MEMORY);
  assert_int_equal(counter.live_blocks, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(tensor_alloc_uninit_sizes_like_alloc),
      cmocka_unit_test(arena_returns_aligned_memory_and_frees_everything),
      cmocka_unit_test(arena_reports_out_of_memory),
      cmocka_unit_test(counting_allocator_fails_one_request_or_all_after),
      cmocka_unit_test(diag_prints_location_and_caret),
      cmocka_unit_test(diag_survives_allocation_failures),
      cmocka_unit_test(half_conversions_round_to_nearest_even),
      cmocka_unit_test(tensor_alloc_rejects_overflowing_shapes),
      cmocka_unit_test(tensor_alloc_accepts_its_own_dims),
  };
  return cmocka_run_group_tests_name("runtime/base", tests, NULL, NULL);
}
