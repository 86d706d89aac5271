// Unit tests for runtime/artifact: round trips of a plan with every step kind (constants embedded
// and in a safetensors file beside the artifact), every refusal of a damaged or hostile file,
// allocation failures while opening, and loading the CPU code from memory.
//
// `artifact_test --write-corpus DIR` writes the fuzz target's seed files instead of testing.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "attnx.pb-c.h"
#include "plan_fixture.h"
#include "runtime/artifact/artifact.h"
#include "runtime/artifact/cpu_code.h"
#include "runtime/artifact/format.h"
#include "runtime/tensor/safetensors.h"
#include "runtime_test_util.h"

// ---- helpers ----

typedef struct test_env {
  char dir[256];
  plan_fixture fixture;
  unsigned char *code; // the test shared object's bytes
  size_t code_size;
} test_env;

static int setup(void **state) {
  test_env *env = calloc(1, sizeof(*env));
  assert_non_null(env);
  snprintf(env->dir, sizeof(env->dir), "%s", test_make_temp_dir());
  plan_fixture_init(&env->fixture);
  env->code = (unsigned char *)test_read_file(ARTIFACT_TEST_CODE_PATH, &env->code_size);
  assert_non_null(env->code);
  *state = env;
  return 0;
}

static int teardown(void **state) {
  test_env *env = *state;
  test_remove_temp_dir(env->dir);
  free(env->code);
  free(env);
  return 0;
}

static attn_artifact_contents contents_of(test_env *env, const char *weights_file) {
  attn_artifact_contents contents = {0};
  contents.plan = &env->fixture.plan;
  contents.model_name = "fixture-model";
  contents.cpu.target_triple = "x86_64-unknown-linux-gnu";
  contents.cpu.cpu = "haswell";
  contents.cpu.features = "+avx2,+fma";
  contents.cpu.needs_avx2 = false; // the test object has no such instructions
  contents.cpu.needs_fma = false;
  contents.cpu.shared_object = env->code;
  contents.cpu.shared_object_size = env->code_size;
  contents.weights_file = weights_file;
  return contents;
}

// Writes the fixture to DIR/m.attnx (constants in DIR/w.safetensors when `external`).
static const char *write_fixture(test_env *env, bool external) {
  static char path[512], weights[512];
  snprintf(path, sizeof(path), "%s/m.attnx", env->dir);
  snprintf(weights, sizeof(weights), "%s/w.safetensors", env->dir);
  attn_artifact_contents contents = contents_of(env, external ? weights : NULL);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_status status = attn_artifact_write(&contents, path, &diag);
  if (status != ATTN_OK)
    fail_msg("write failed: %s", attn_diag_last_error(&diag));
  attn_diag_deinit(&diag);
  return path;
}

// Opens `path` expecting `want`; on a failure, checks the message names the file and contains
// `message`.
static attn_artifact *open_expect(const char *path, const attn_artifact_open_options *options,
                                  attn_status want, const char *message) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_artifact *artifact = NULL;
  attn_status status = attn_artifact_open(path, options, attn_allocator_system(), &diag, &artifact);
  if (status != want)
    fail_msg("open returned %s, not %s: %s", attn_status_name(status), attn_status_name(want),
             attn_diag_last_error(&diag) ? attn_diag_last_error(&diag) : "(no message)");
  if (want != ATTN_OK) {
    assert_null(artifact);
    test_assert_error(&diag, path, message);
  }
  attn_diag_deinit(&diag);
  return artifact;
}

static void assert_values_equal(const attn_plan_value *a, const attn_plan_value *b) {
  assert_int_equal(a->dtype, b->dtype);
  assert_int_equal(a->rank, b->rank);
  for (uint32_t d = 0; d < a->rank; d++)
    assert_int_equal(a->dims[d], b->dims[d]);
  assert_int_equal(a->storage, b->storage);
  assert_int_equal(a->index, b->index);
  assert_int_equal(a->iota_axis, b->iota_axis);
  assert_int_equal(a->iota_start, b->iota_start);
}

static void assert_steps_equal(const attn_plan_step *a, const attn_plan_step *b) {
  assert_int_equal(a->kind, b->kind);
  assert_int_equal(a->kernel, b->kernel);
  assert_int_equal(a->input_count, b->input_count);
  assert_int_equal(a->output_count, b->output_count);
  assert_memory_equal(a->inputs, b->inputs, a->input_count * sizeof(uint32_t));
  assert_memory_equal(a->outputs, b->outputs, a->output_count * sizeof(uint32_t));
  switch (a->kind) {
  case ATTN_PLAN_STEP_GEMM:
    assert_int_equal(a->function, b->function);
    assert_int_equal(a->u.gemm.transpose_a, b->u.gemm.transpose_a);
    assert_int_equal(a->u.gemm.transpose_b, b->u.gemm.transpose_b);
    assert_int_equal(a->u.gemm.bias, b->u.gemm.bias);
    assert_int_equal(a->u.gemm.residual, b->u.gemm.residual);
    break;
  case ATTN_PLAN_STEP_ATTENTION: {
    const attn_plan_attention *x = &a->u.attention, *y = &b->u.attention;
    assert_int_equal(a->function, b->function);
    assert_int_equal(x->spec.value_dim, y->spec.value_dim);
    assert_int_equal(x->spec.norm, y->spec.norm);
    assert_int_equal(x->spec.lse, y->spec.lse);
    assert_int_equal(x->spec.dtype, y->spec.dtype);
    assert_int_equal(x->spec.vector_width, y->spec.vector_width);
    assert_int_equal(x->spec.capture_count, y->spec.capture_count);
    assert_memory_equal(x->spec.capture_ranks, y->spec.capture_ranks,
                        x->spec.capture_count * sizeof(uint32_t));
    assert_int_equal(x->has_mask, y->has_mask);
    assert_int_equal(x->window, y->window);
    assert_int_equal(x->sinks, y->sinks);
    assert_true(x->scale == y->scale);
    assert_true(x->sigmoid_bias == y->sigmoid_bias);
    break;
  }
  case ATTN_PLAN_STEP_KERNEL:
    assert_int_equal(a->function, b->function);
    assert_int_equal(a->u.kernel.parallel_rank, b->u.kernel.parallel_rank);
    assert_int_equal(a->u.kernel.gather_check_count, b->u.kernel.gather_check_count);
    for (uint32_t g = 0; g < a->u.kernel.gather_check_count; g++) {
      assert_int_equal(a->u.kernel.gather_checks[g].indices, b->u.kernel.gather_checks[g].indices);
      assert_int_equal(a->u.kernel.gather_checks[g].size, b->u.kernel.gather_checks[g].size);
      assert_int_equal(a->u.kernel.gather_checks[g].axis, b->u.kernel.gather_checks[g].axis);
    }
    break;
  case ATTN_PLAN_STEP_TOPK:
    assert_int_equal(a->u.topk.axis, b->u.topk.axis);
    assert_int_equal(a->u.topk.k, b->u.topk.k);
    assert_int_equal(a->u.topk.largest, b->u.topk.largest);
    break;
  default:
    break;
  }
}

// Field by field, constants' bytes included.
static void assert_plans_equal(const attn_plan *a, const attn_plan *b) {
  assert_int_equal(a->symbol_count, b->symbol_count);
  for (uint32_t i = 0; i < a->symbol_count; i++)
    assert_string_equal(a->symbols[i], b->symbols[i]);
  assert_int_equal(a->dim_count, b->dim_count);
  for (uint32_t i = 0; i < a->dim_count; i++) {
    assert_int_equal(a->dims[i].kind, b->dims[i].kind);
    assert_int_equal(a->dims[i].lhs, b->dims[i].lhs);
    assert_int_equal(a->dims[i].rhs, b->dims[i].rhs);
  }
  assert_int_equal(a->value_count, b->value_count);
  for (uint32_t i = 0; i < a->value_count; i++)
    assert_values_equal(&a->values[i], &b->values[i]);
  assert_int_equal(a->buffer_count, b->buffer_count);
  assert_memory_equal(a->buffers, b->buffers, a->buffer_count * sizeof(int64_t));
  assert_int_equal(a->input_count, b->input_count);
  for (uint32_t i = 0; i < a->input_count; i++) {
    assert_string_equal(a->inputs[i].name, b->inputs[i].name);
    assert_int_equal(a->inputs[i].value, b->inputs[i].value);
  }
  assert_int_equal(a->output_count, b->output_count);
  for (uint32_t i = 0; i < a->output_count; i++) {
    assert_string_equal(a->outputs[i].name, b->outputs[i].name);
    assert_int_equal(a->outputs[i].value, b->outputs[i].value);
  }
  assert_int_equal(a->constant_count, b->constant_count);
  for (uint32_t i = 0; i < a->constant_count; i++) {
    const attn_plan_constant *x = &a->constants[i], *y = &b->constants[i];
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->dtype, y->dtype);
    assert_int_equal(x->rank, y->rank);
    assert_memory_equal(x->dims, y->dims, x->rank * sizeof(int64_t));
    attn_tensor type = {.dtype = x->dtype, .rank = x->rank};
    memcpy(type.dims, x->dims, sizeof(type.dims));
    size_t size;
    assert_true(attn_tensor_size_bytes(&type, &size));
    assert_non_null(y->data);
    assert_memory_equal(x->data, y->data, size);
    // Views into the mapping are aligned for their element type.
    assert_int_equal((uintptr_t)y->data % attn_dtype_size(y->dtype), 0);
  }
  assert_int_equal(a->function_count, b->function_count);
  for (uint32_t i = 0; i < a->function_count; i++)
    assert_string_equal(a->functions[i], b->functions[i]);
  assert_int_equal(a->step_count, b->step_count);
  for (uint32_t i = 0; i < a->step_count; i++)
    assert_steps_equal(&a->steps[i], &b->steps[i]);
}

static void assert_cpu_code_equal(test_env *env, const attn_artifact *artifact) {
  attn_artifact_cpu_code cpu = attn_artifact_cpu(artifact);
  assert_string_equal(cpu.target_triple, "x86_64-unknown-linux-gnu");
  assert_string_equal(cpu.cpu, "haswell");
  assert_string_equal(cpu.features, "+avx2,+fma");
  assert_false(cpu.needs_avx2);
  assert_int_equal(cpu.shared_object_size, env->code_size);
  assert_memory_equal(cpu.shared_object, env->code, env->code_size);
}

static void patch_file(const char *path, size_t offset, unsigned char xor_mask) {
  size_t size;
  unsigned char *bytes = (unsigned char *)test_read_file(path, &size);
  assert_true(offset < size);
  bytes[offset] ^= xor_mask;
  test_write_file(path, bytes, size);
  free(bytes);
}

static uint64_t load_u64(const unsigned char *bytes) {
  uint64_t value = 0;
  for (int i = 0; i < 8; i++)
    value |= (uint64_t)bytes[i] << (8 * i);
  return value;
}

static void store_u64(unsigned char *bytes, uint64_t value) {
  for (int i = 0; i < 8; i++)
    bytes[i] = (unsigned char)(value >> (8 * i));
}

static size_t align64(size_t n) {
  return (n + 63) / 64 * 64;
}

// Rewrites the header of the artifact at `path` through `mutate`, keeping its data section and
// giving the new header a correct size and checksum: a well-formed file with a hostile header.
static void rewrite_header(const char *path, void (*mutate)(Attn__Attnx__Header *header)) {
  size_t size;
  unsigned char *bytes = (unsigned char *)test_read_file(path, &size);
  size_t header_size = (size_t)load_u64(bytes + 16);
  size_t data_start = align64(ATTN_ARTIFACT_PREFIX_SIZE + header_size);
  Attn__Attnx__Header *header =
      attn__attnx__header__unpack(NULL, header_size, bytes + ATTN_ARTIFACT_PREFIX_SIZE);
  assert_non_null(header);
  mutate(header);
  size_t new_header_size = attn__attnx__header__get_packed_size(header);
  size_t new_data_start = align64(ATTN_ARTIFACT_PREFIX_SIZE + new_header_size);
  size_t new_size = new_data_start + (size - data_start);
  unsigned char *out = calloc(1, new_size);
  assert_non_null(out);
  memcpy(out, bytes, ATTN_ARTIFACT_PREFIX_SIZE);
  attn__attnx__header__pack(header, out + ATTN_ARTIFACT_PREFIX_SIZE);
  store_u64(out + 16, new_header_size);
  store_u64(out + 24, attn_artifact_checksum(out + ATTN_ARTIFACT_PREFIX_SIZE, new_header_size));
  memcpy(out + new_data_start, bytes + data_start, size - data_start);
  test_write_file(path, out, new_size);
  attn__attnx__header__free_unpacked(header, NULL);
  free(out);
  free(bytes);
}

// ---- round trips ----

static void artifact_round_trips_embedded_constants(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  attn_artifact *artifact = open_expect(path, NULL, ATTN_OK, NULL);
  assert_plans_equal(&env->fixture.plan, attn_artifact_plan(artifact));
  assert_string_equal(attn_artifact_model_name(artifact), "fixture-model");
  assert_cpu_code_equal(env, artifact);
  // The constants are views into the mapping, not copies.
  const unsigned char *code = attn_artifact_cpu(artifact).shared_object;
  const unsigned char *weight = attn_artifact_plan(artifact)->constants[0].data;
  assert_true(weight > code);
  // The symbolic dims still evaluate: (B * T) / 2 with B = 2, T = 6.
  int64_t symbols[2] = {2, 6}, value;
  assert_true(attn_plan_dim_eval(attn_artifact_plan(artifact), -4, symbols, &value));
  assert_int_equal(value, 6);
  attn_artifact_close(artifact);
}

// Two constants of the same data (tied weights) share one blob: the file holds it once.
static void artifact_stores_shared_constant_data_once(void **state) {
  test_env *env = *state;
  size_t separate, shared;
  free(test_read_file(write_fixture(env, false), &separate));
  // The bias becomes a second view of the whole weight: [4, 8], the same data.
  attn_plan_constant *bias = &env->fixture.constants[1];
  attn_plan_value *value = &env->fixture.values[2];
  attn_plan_constant saved_constant = *bias;
  attn_plan_value saved_value = *value;
  *bias = env->fixture.constants[0];
  bias->name = saved_constant.name;
  value->rank = 2;
  value->dims[0] = 4;
  value->dims[1] = 8;
  const char *path = write_fixture(env, false);
  free(test_read_file(path, &shared));
  assert_true(shared < separate);
  attn_artifact *artifact = open_expect(path, NULL, ATTN_OK, NULL);
  const attn_plan *plan = attn_artifact_plan(artifact);
  assert_ptr_equal(plan->constants[1].data, plan->constants[0].data);
  assert_memory_equal(plan->constants[1].data, env->fixture.weight, sizeof(env->fixture.weight));
  attn_artifact_close(artifact);
  *bias = saved_constant;
  *value = saved_value;
}

static void artifact_round_trips_external_constants(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, true);
  // Nothing of the weights is in the artifact itself.
  size_t size;
  char *bytes = test_read_file(path, &size);
  assert_true(size < env->code_size + 2048);
  free(bytes);
  attn_artifact *artifact = open_expect(path, NULL, ATTN_OK, NULL);
  assert_plans_equal(&env->fixture.plan, attn_artifact_plan(artifact));
  assert_cpu_code_equal(env, artifact);
  attn_artifact_close(artifact);

  // Over memory, the weights are found through `dir`.
  bytes = test_read_file(path, &size);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  assert_int_equal(attn_artifact_open_memory(bytes, size, env->dir, NULL, attn_allocator_system(),
                                             &diag, &artifact),
                   ATTN_OK);
  assert_plans_equal(&env->fixture.plan, attn_artifact_plan(artifact));
  attn_artifact_close(artifact);
  // From another directory they are not there.
  assert_int_equal(attn_artifact_open_memory(bytes, size, "/nonexistent", NULL,
                                             attn_allocator_system(), &diag, &artifact),
                   ATTN_ERROR_NOT_FOUND);
  test_assert_error(&diag, "<memory>", "does not exist");
  attn_diag_deinit(&diag);
  free(bytes);
}

static void artifact_round_trips_a_plan_without_code(void **state) {
  test_env *env = *state;
  char path[512];
  snprintf(path, sizeof(path), "%s/nocode.attnx", env->dir);
  attn_artifact_contents contents = {.plan = &env->fixture.plan};
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  assert_int_equal(attn_artifact_write(&contents, path, &diag), ATTN_OK);
  attn_artifact *artifact = open_expect(path, NULL, ATTN_OK, NULL);
  assert_plans_equal(&env->fixture.plan, attn_artifact_plan(artifact));
  attn_artifact_cpu_code cpu = attn_artifact_cpu(artifact);
  assert_null(cpu.shared_object);
  assert_int_equal(cpu.shared_object_size, 0);
  assert_string_equal(cpu.target_triple, "");
  assert_string_equal(attn_artifact_model_name(artifact), "");
  attn_cpu_code *code;
  assert_int_equal(attn_cpu_code_load(&cpu, attn_allocator_system(), &diag, &code),
                   ATTN_ERROR_INVALID_ARGUMENT);
  attn_artifact_close(artifact);
  attn_diag_deinit(&diag);
}

static void artifact_write_refuses_an_invalid_plan(void **state) {
  test_env *env = *state;
  char path[512];
  snprintf(path, sizeof(path), "%s/bad.attnx", env->dir);
  env->fixture.steps[0].function = 99;
  attn_artifact_contents contents = contents_of(env, NULL);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  assert_int_equal(attn_artifact_write(&contents, path, &diag), ATTN_ERROR_INVALID_ARGUMENT);
  assert_int_equal(access(path, F_OK), -1);
  env->fixture.steps[0].function = 0;
  env->fixture.constants[1].data = NULL;
  assert_int_equal(attn_artifact_write(&contents, path, &diag), ATTN_ERROR_INVALID_ARGUMENT);
  test_assert_error(&diag, path, "'layer.bias' has no data");
  assert_int_equal(access(path, F_OK), -1);
  env->fixture.constants[1].data = env->fixture.bias;
  attn_diag_deinit(&diag);
}

// ---- refusals ----

static void artifact_refuses_a_bad_magic(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  patch_file(path, 1, 0x20); // "ATX" -> "aTX"
  open_expect(path, NULL, ATTN_ERROR_PARSE, "not an attnc artifact");
  test_write_file(path, "hello", 5);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "not an attnc artifact");
}

static void artifact_refuses_a_newer_format(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  patch_file(path, 8, 1 ^ 2); // version 1 -> 2
  open_expect(path, NULL, ATTN_ERROR_UNSUPPORTED,
              "was written by a newer attnc (format 2; this runtime reads up to 1)");
  patch_file(path, 8, 1 ^ 2);
  patch_file(path, 12, 4); // an unknown flag
  open_expect(path, NULL, ATTN_ERROR_UNSUPPORTED, "flags 0x4");
}

static void artifact_refuses_a_truncated_file(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  size_t size;
  char *bytes = test_read_file(path, &size);
  size_t header_size = (size_t)load_u64((unsigned char *)bytes + 16);
  const size_t cuts[] = {4, 20, ATTN_ARTIFACT_PREFIX_SIZE + header_size / 2};
  for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
    test_write_file(path, bytes, cuts[i]);
    open_expect(path, NULL, ATTN_ERROR_PARSE, "truncated");
  }
  // Cut in the data section: the last constant lies outside the file.
  test_write_file(path, bytes, size - 8);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "constant 'table'");
  open_expect(path, NULL, ATTN_ERROR_PARSE, "lies outside the file");
  free(bytes);
}

static void artifact_refuses_a_corrupt_header(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  patch_file(path, ATTN_ARTIFACT_PREFIX_SIZE + 5, 0x01);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "corrupt: the header does not match its checksum");
  // A header that matches its checksum but is no protobuf message.
  size_t size;
  unsigned char *bytes = (unsigned char *)test_read_file(path, &size);
  size_t header_size = (size_t)load_u64(bytes + 16);
  memset(bytes + ATTN_ARTIFACT_PREFIX_SIZE, 0xff, header_size);
  store_u64(bytes + 24, attn_artifact_checksum(bytes + ATTN_ARTIFACT_PREFIX_SIZE, header_size));
  test_write_file(path, bytes, size);
  free(bytes);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "corrupt: the header does not unpack");
}

static void break_a_step(Attn__Attnx__Header *header) {
  header->plan->steps[1]->n_inputs = 0; // a view without its input
}

static void drop_gemm_parameters(Attn__Attnx__Header *header) {
  attn__attnx__gemm__free_unpacked(header->plan->steps[0]->gemm, NULL);
  header->plan->steps[0]->gemm = NULL;
  header->plan->steps[0]->params_case = ATTN__ATTNX__STEP__PARAMS__NOT_SET;
}

static void artifact_refuses_an_invalid_plan(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  rewrite_header(path, break_a_step);
  open_expect(path, NULL, ATTN_ERROR_INVALID_ARGUMENT, "its plan is invalid: step 1 (view)");
  path = write_fixture(env, false);
  rewrite_header(path, drop_gemm_parameters);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "step 0 (gemm) does not carry its kind's parameters");
}

static void artifact_checks_blob_checksums(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  size_t size;
  unsigned char *bytes = (unsigned char *)test_read_file(path, &size);
  free(bytes);
  // The last bytes are the constant 'table'.
  patch_file(path, size - 3, 0x10);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "constant 'table' does not match its checksum");
  // Skipping the constants' checksums accepts it (and reads the damaged value).
  attn_artifact_open_options skip = {.skip_constant_checksums = true};
  attn_artifact *artifact = open_expect(path, &skip, ATTN_OK, NULL);
  const int64_t *table = attn_artifact_plan(artifact)->constants[2].data;
  assert_int_not_equal(table[2], env->fixture.table[2]);
  attn_artifact_close(artifact);

  // The code is checked whatever the options: it comes first in the data section.
  path = write_fixture(env, false);
  bytes = (unsigned char *)test_read_file(path, &size);
  size_t data_start = align64(ATTN_ARTIFACT_PREFIX_SIZE + (size_t)load_u64(bytes + 16));
  free(bytes);
  patch_file(path, data_start + 100, 0x01);
  open_expect(path, &skip, ATTN_ERROR_PARSE, "the CPU code does not match its checksum");
}

// Sets a string of an unpacked message (malloc'ed, as free_unpacked expects).
static void set_string(char **field, const char *value) {
  free(*field);
  *field = malloc(strlen(value) + 1);
  assert_non_null(*field);
  strcpy(*field, value);
}

static void point_weights_outside(Attn__Attnx__Header *header) {
  set_string(&header->plan->constants[1]->external->file, "../x.safetensors");
}

static void point_weights_absolute(Attn__Attnx__Header *header) {
  set_string(&header->plan->constants[0]->external->file, "/etc/w.safetensors");
}

static void point_weights_through_a_subdirectory(Attn__Attnx__Header *header) {
  set_string(&header->plan->constants[0]->external->file, "sub/../../w.safetensors");
}

static void artifact_refuses_escaping_weight_files(void **state) {
  test_env *env = *state;
  void (*const mutations[])(Attn__Attnx__Header *) = {point_weights_outside, point_weights_absolute,
                                                      point_weights_through_a_subdirectory};
  for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
    const char *path = write_fixture(env, true);
    rewrite_header(path, mutations[i]);
    open_expect(path, NULL, ATTN_ERROR_INVALID_ARGUMENT, "is not a name inside the artifact's");
  }
}

// Rewrites DIR/w.safetensors with the first `count` of the fixture's constants; with all of them,
// 'table' gets `dims0` as its first dim and `delta` added to its first value.
static void rewrite_weights(test_env *env, uint32_t count, int64_t dims0, int64_t delta) {
  char weights[512];
  snprintf(weights, sizeof(weights), "%s/w.safetensors", env->dir);
  attn_named_tensor tensors[PLAN_FIXTURE_CONSTANTS];
  int64_t table[3];
  memcpy(table, env->fixture.table, sizeof(table));
  table[0] += delta;
  for (uint32_t i = 0; i < count; i++) {
    const attn_plan_constant *c = &env->fixture.constants[i];
    tensors[i].name = c->name;
    tensors[i].tensor.dtype = c->dtype;
    tensors[i].tensor.rank = c->rank;
    memcpy(tensors[i].tensor.dims, c->dims, sizeof(c->dims));
    tensors[i].tensor.data = i == 2 ? (void *)table : (void *)(uintptr_t)c->data;
  }
  if (count == PLAN_FIXTURE_CONSTANTS)
    tensors[2].tensor.dims[0] = dims0;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  assert_int_equal(attn_safetensors_write(weights, tensors, count, attn_allocator_system(), &diag),
                   ATTN_OK);
  attn_diag_deinit(&diag);
}

static void artifact_checks_external_weights(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, true);
  rewrite_weights(env, 2, 3, 0);
  open_expect(path, NULL, ATTN_ERROR_NOT_FOUND, "has no tensor 'table'");
  rewrite_weights(env, 3, 3, 1);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "does not match the checksum");
  // Skipping the embedded constants' checksums does not skip an external file's: it may have
  // been replaced since the artifact was written.
  attn_artifact_open_options skip = {.skip_constant_checksums = true};
  open_expect(path, &skip, ATTN_ERROR_PARSE, "does not match the checksum");
  rewrite_weights(env, 3, 2, 0);
  open_expect(path, NULL, ATTN_ERROR_PARSE, "constant 'table' is i64[3] but tensor 'table'");
  char weights[512];
  snprintf(weights, sizeof(weights), "%s/w.safetensors", env->dir);
  assert_int_equal(remove(weights), 0);
  open_expect(path, NULL, ATTN_ERROR_NOT_FOUND, "w.safetensors' does not exist");
}

static void artifact_refuses_a_missing_file(void **state) {
  test_env *env = *state;
  char path[512];
  snprintf(path, sizeof(path), "%s/none.attnx", env->dir);
  open_expect(path, NULL, ATTN_ERROR_NOT_FOUND, "cannot open");
}

// ---- allocation failures ----

typedef struct memory_image {
  const char *bytes;
  size_t size;
  const char *dir;
} memory_image;

static attn_status open_image(attn_allocator allocator, attn_diag *diag, void *context) {
  memory_image *image = context;
  attn_artifact *artifact;
  ATTN_RETURN_IF_ERROR(attn_artifact_open_memory(image->bytes, image->size, image->dir, NULL,
                                                 allocator, diag, &artifact));
  attn_artifact_close(artifact);
  return ATTN_OK;
}

static void artifact_open_survives_allocation_failures(void **state) {
  test_env *env = *state;
  for (int external = 0; external < 2; external++) {
    const char *path = write_fixture(env, external);
    size_t size;
    char *bytes = test_read_file(path, &size);
    memory_image image = {bytes, size, env->dir};
    assert_true(test_allocation_failure_sweep(open_image, &image) > 0);
    free(bytes);
  }
}

// ---- the CPU code ----

static void cpu_code_loads_and_calls_a_function(void **state) {
  test_env *env = *state;
  const char *path = write_fixture(env, false);
  attn_artifact *artifact = open_expect(path, NULL, ATTN_OK, NULL);
  attn_artifact_cpu_code cpu = attn_artifact_cpu(artifact);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_cpu_code *code;
  assert_int_equal(attn_cpu_code_load(&cpu, attn_allocator_system(), &diag, &code), ATTN_OK);
  // The code stays loaded after the artifact closes: the loader has its own copy.
  attn_artifact_close(artifact);
  void (*fn)(void);
  assert_int_equal(attn_cpu_code_symbol(code, "attn_test_add", &diag, &fn), ATTN_OK);
  int64_t (*add)(int64_t, int64_t);
  memcpy(&add, &fn, sizeof(fn));
  assert_int_equal(add(40, 2), 42);
  assert_int_equal(attn_cpu_code_symbol(code, "attn_test_scale", &diag, &fn), ATTN_OK);
  double (*scale)(double);
  memcpy(&scale, &fn, sizeof(fn));
  assert_true(scale(4.0) == 10.0);
  assert_int_equal(attn_cpu_code_symbol(code, "attn_test_missing", &diag, &fn),
                   ATTN_ERROR_NOT_FOUND);
  assert_null(fn);
  test_assert_error(&diag, NULL, "no function 'attn_test_missing'");

  // A second code loaded meanwhile is a second object, not the first one found again.
  attn_cpu_code *second;
  assert_int_equal(
      attn_cpu_code_load(&(attn_artifact_cpu_code){.shared_object = env->code,
                                                   .shared_object_size = env->code_size},
                         attn_allocator_system(), &diag, &second),
      ATTN_OK);
  void (*first_add)(void), (*second_add)(void);
  assert_int_equal(attn_cpu_code_symbol(code, "attn_test_add", &diag, &first_add), ATTN_OK);
  assert_int_equal(attn_cpu_code_symbol(second, "attn_test_add", &diag, &second_add), ATTN_OK);
  assert_true(first_add != second_add);
  attn_cpu_code_close(second);
  attn_cpu_code_close(code);
  attn_diag_deinit(&diag);
}

static void cpu_code_checks_the_host(void **state) {
  test_env *env = *state;
  attn_artifact_cpu_code cpu = contents_of(env, NULL).cpu;
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  __builtin_cpu_init();
  const struct {
    bool *flag;
    bool host_has;
    const char *name;
  } features[] = {
      {&cpu.needs_avx2, __builtin_cpu_supports("avx2"), "needs avx2"},
      {&cpu.needs_fma, __builtin_cpu_supports("fma"), "needs fma"},
      {&cpu.needs_avx512f, __builtin_cpu_supports("avx512f"), "needs avx512f"},
  };
  for (size_t i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
    *features[i].flag = true;
    attn_cpu_code *code = NULL;
    attn_status status = attn_cpu_code_load(&cpu, attn_allocator_system(), &diag, &code);
    if (features[i].host_has) {
      assert_int_equal(status, ATTN_OK);
      attn_cpu_code_close(code);
    } else {
      assert_int_equal(status, ATTN_ERROR_UNSUPPORTED);
      assert_null(code);
      test_assert_error(&diag, NULL, features[i].name);
    }
    *features[i].flag = false;
  }
  // Any extension of the LLVM feature string the code was compiled with counts too.
  const char *features_before = cpu.features;
  cpu.features = "+avx2,-avx512f,+avx512bw,+sse4.1";
  attn_cpu_code *loaded = NULL;
  attn_status loaded_status = attn_cpu_code_load(&cpu, attn_allocator_system(), &diag, &loaded);
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx2")) {
    assert_int_equal(loaded_status, ATTN_OK);
    attn_cpu_code_close(loaded);
  } else {
    assert_int_equal(loaded_status, ATTN_ERROR_UNSUPPORTED);
    test_assert_error(&diag, NULL,
                      __builtin_cpu_supports("avx2") ? "needs avx512bw" : "needs avx2");
  }
  cpu.features = features_before;
  // Bytes that are no shared object: the loader's message.
  cpu.shared_object = "not an ELF file";
  cpu.shared_object_size = 15;
  attn_cpu_code *code;
  assert_int_equal(attn_cpu_code_load(&cpu, attn_allocator_system(), &diag, &code), ATTN_ERROR_IO);
  test_assert_error(&diag, NULL, "cannot load the CPU code");
  attn_diag_deinit(&diag);
}

// ---- the fuzz corpus ----

static void write_seed(const char *dir, const char *name, const char *from, size_t size) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  test_write_file(path, from, size);
}

// Small artifacts for the fuzz target: the fixture without code (embedded and external
// constants, the external one pointing at a file the fuzzer will not have), and damaged ones.
static int write_corpus(const char *out_dir) {
  test_env *env;
  if (setup((void **)&env) != 0)
    return 1;
  char path[512];
  snprintf(path, sizeof(path), "%s/seed.attnx", env->dir);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  for (int external = 0; external < 2; external++) {
    attn_artifact_contents contents = {.plan = &env->fixture.plan, .model_name = "seed"};
    char weights[512];
    snprintf(weights, sizeof(weights), "%s/w.safetensors", env->dir);
    contents.weights_file = external ? weights : NULL;
    if (attn_artifact_write(&contents, path, &diag) != ATTN_OK)
      return 1;
    size_t size;
    char *bytes = test_read_file(path, &size);
    write_seed(out_dir, external ? "external" : "embedded", bytes, size);
    if (!external) {
      write_seed(out_dir, "truncated", bytes, size / 2);
      bytes[size - 1] ^= 1;
      write_seed(out_dir, "bad_blob_checksum", bytes, size);
      bytes[8] = 2;
      write_seed(out_dir, "newer_format", bytes, size);
    }
    free(bytes);
  }
  attn_diag_deinit(&diag);
  void *teardown_state = env;
  teardown(&teardown_state);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
    return write_corpus(argv[2]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(artifact_round_trips_embedded_constants, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_stores_shared_constant_data_once, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_round_trips_external_constants, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_round_trips_a_plan_without_code, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_write_refuses_an_invalid_plan, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_refuses_a_bad_magic, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_refuses_a_newer_format, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_refuses_a_truncated_file, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_refuses_a_corrupt_header, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_refuses_an_invalid_plan, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_checks_blob_checksums, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_refuses_escaping_weight_files, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_checks_external_weights, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_refuses_a_missing_file, setup, teardown),
      cmocka_unit_test_setup_teardown(artifact_open_survives_allocation_failures, setup, teardown),
      cmocka_unit_test_setup_teardown(cpu_code_loads_and_calls_a_function, setup, teardown),
      cmocka_unit_test_setup_teardown(cpu_code_checks_the_host, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
