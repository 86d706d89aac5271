// Unit tests for runtime/tensor/weights and config: Hugging Face directories (single file and
// sharded), lone files, broken directories and indexes, config lookups, allocation failures.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "runtime/tensor/safetensors.h"
#include "runtime/tensor/weights.h"
#include "runtime_test_util.h"

// ---- config ----------------------------------------------------------------------------------

static attn_config *parse_config_ok(const char *text) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_config *config = NULL;
  attn_status status =
      attn_config_parse(text, strlen(text), "c.json", attn_allocator_system(), &diag, &config);
  if (status != ATTN_OK)
    fail_msg("parse failed: %s", attn_diag_last_error(&diag));
  attn_diag_deinit(&diag);
  return config;
}

static void config_reads_values_by_dotted_path(void **state) {
  (void)state;
  attn_config *config = parse_config_ok(
      "{\"a\": 1, \"b\": 1.0, \"c\": 1e3, \"d\": -5, \"e\": 12345678901234567890,\n"
      " \"s\": \"x\\\"1.5 \\\\\", \"x1\": 3, \"f\": \"str\", \"g\": null, \"h\": true,\n"
      " \"i\": [1, 2.5, {\"q\": 4}], \"j\": {\"k\": {\"l\": 7, \"m\": 2E1}}, \"n\": 0.5,\n"
      " \"dup\": 1, \"dup\": 2, \"big\": 9007199254740992, \"neg0\": -0}");
  assert_string_equal(attn_config_name(config), "c.json");
  attn_config_value v = attn_config_get(config, "a");
  assert_int_equal(v.kind, ATTN_CONFIG_NUMBER);
  assert_true(v.is_integer);
  assert_true(v.number == 1.0);
  v = attn_config_get(config, "b");
  assert_int_equal(v.kind, ATTN_CONFIG_NUMBER);
  assert_false(v.is_integer);
  assert_true(v.number == 1.0);
  assert_false(attn_config_get(config, "c").is_integer);
  assert_true(attn_config_get(config, "c").number == 1000.0);
  v = attn_config_get(config, "d");
  assert_true(v.is_integer);
  assert_true(v.number == -5.0);
  assert_false(attn_config_get(config, "e").is_integer);
  assert_true(attn_config_get(config, "big").is_integer);
  assert_true(attn_config_get(config, "neg0").is_integer);
  v = attn_config_get(config, "s");
  assert_int_equal(v.kind, ATTN_CONFIG_STRING);
  assert_string_equal(v.string, "x\"1.5 \\");
  assert_true(attn_config_get(config, "x1").is_integer);
  assert_string_equal(attn_config_get(config, "f").string, "str");
  assert_int_equal(attn_config_get(config, "g").kind, ATTN_CONFIG_NULL);
  v = attn_config_get(config, "h");
  assert_int_equal(v.kind, ATTN_CONFIG_BOOL);
  assert_true(v.number == 1.0);
  assert_int_equal(attn_config_get(config, "i").kind, ATTN_CONFIG_OTHER);
  assert_int_equal(attn_config_get(config, "i").count, 3);
  assert_int_equal(attn_config_get(config, "j").kind, ATTN_CONFIG_OTHER);
  assert_int_equal(attn_config_get(config, "j.k").count, 2);
  // Numbers after an array and nested objects still pair with their text.
  v = attn_config_get(config, "j.k.l");
  assert_int_equal(v.kind, ATTN_CONFIG_NUMBER);
  assert_true(v.is_integer);
  assert_true(v.number == 7.0);
  assert_false(attn_config_get(config, "j.k.m").is_integer);
  assert_false(attn_config_get(config, "n").is_integer);
  assert_true(attn_config_get(config, "dup").number == 2.0);
  assert_int_equal(attn_config_get(config, "j.x").kind, ATTN_CONFIG_MISSING);
  assert_int_equal(attn_config_get(config, "f.x").kind, ATTN_CONFIG_MISSING);
  assert_int_equal(attn_config_get(config, "i.0").kind, ATTN_CONFIG_MISSING);
  assert_int_equal(attn_config_get(config, "").kind, ATTN_CONFIG_MISSING);
  assert_int_equal(attn_config_get(config, "j.").kind, ATTN_CONFIG_MISSING);
  assert_int_equal(attn_config_get(config, "zz").kind, ATTN_CONFIG_MISSING);
  assert_int_equal(attn_config_get(NULL, "a").kind, ATTN_CONFIG_MISSING);
  attn_config_destroy(config);
  attn_config_destroy(NULL);
}

static void config_refuses_bad_json_with_a_location(void **state) {
  (void)state;
  const struct {
    const char *text;
    uint32_t line;
    const char *message;
  } cases[] = {
      {"{\n  \"a\": 1,\n  \"b\": ,\n}", 3, "invalid JSON"},
      {"", 1, "invalid JSON"},
      {"{} x", 1, "unexpected text after the JSON value"},
      {"[1, 2]", 0, "a config must be a JSON object"},
      {"\"s\"", 0, "a config must be a JSON object"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_config *config = (attn_config *)1;
    assert_int_equal(attn_config_parse(cases[i].text, strlen(cases[i].text), "bad.json",
                                       attn_allocator_system(), &diag, &config),
                     ATTN_ERROR_PARSE);
    assert_null(config);
    test_assert_error(&diag, "bad.json", cases[i].message);
    assert_int_equal(diag.items[diag.count - 1].loc.line, cases[i].line);
    attn_diag_deinit(&diag);
  }
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_config *config;
  assert_int_equal(
      attn_config_read("tests/data/none.json", attn_allocator_system(), &diag, &config),
      ATTN_ERROR_IO);
  test_assert_error(&diag, "tests/data/none.json", "cannot open");
  attn_diag_deinit(&diag);
}

// ---- weight sets -----------------------------------------------------------------------------

static attn_weights *open_ok(const char *path) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_weights *weights = NULL;
  attn_status status = attn_weights_open(path, attn_allocator_system(), &diag, &weights);
  if (status != ATTN_OK)
    fail_msg("open %s failed: %s", path, attn_diag_last_error(&diag));
  attn_diag_deinit(&diag);
  return weights;
}

static void expect_open_error(const char *path, attn_status status, const char *file,
                              const char *message) {
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  attn_weights *weights = (attn_weights *)1;
  attn_status got = attn_weights_open(path, attn_allocator_system(), &diag, &weights);
  if (got != status)
    fail_msg("open %s: status %s (%s), expected %s", path, attn_status_name(got),
             attn_diag_last_error(&diag) ? attn_diag_last_error(&diag) : "no message",
             attn_status_name(status));
  assert_null(weights);
  assert_int_equal(diag.error_count, 1);
  test_assert_error(&diag, file, message);
  attn_diag_deinit(&diag);
}

static void weights_open_the_gpt2_directory(void **state) {
  (void)state;
  attn_weights *weights = open_ok("tests/data/hf/gpt2-tiny");
  assert_string_equal(attn_weights_path(weights), "tests/data/hf/gpt2-tiny");
  const attn_config *config = attn_weights_config(weights);
  assert_non_null(config);
  assert_string_equal(attn_config_name(config), "tests/data/hf/gpt2-tiny/config.json");
  attn_config_value v = attn_config_get(config, "n_embd");
  assert_int_equal(v.kind, ATTN_CONFIG_NUMBER);
  assert_true(v.is_integer);
  assert_true(v.number == 64.0);
  v = attn_config_get(config, "layer_norm_epsilon");
  assert_false(v.is_integer);
  assert_true(v.number == 1e-05);
  assert_string_equal(attn_config_get(config, "model_type").string, "gpt2");
  assert_int_equal(attn_config_get(config, "n_inner").kind, ATTN_CONFIG_NULL);
  assert_int_equal(attn_config_get(config, "architectures").kind, ATTN_CONFIG_OTHER);
  assert_int_equal(attn_config_get(config, "tie_word_embeddings").kind, ATTN_CONFIG_BOOL);

  attn_tensor view;
  const char *file = NULL;
  assert_true(attn_weights_find(weights, "transformer.wte.weight", &view, &file));
  assert_string_equal(file, "tests/data/hf/gpt2-tiny/model.safetensors");
  assert_int_equal(view.dims[0], 384);
  assert_true(attn_weights_find(weights, "transformer.ln_f.bias", &view, NULL));
  assert_false(attn_weights_find(weights, "lm_head.weight", &view, &file));
  size_t count = attn_weights_count(weights);
  assert_true(count > 20);
  for (size_t i = 0; i < count; i++)
    assert_true(attn_weights_find(weights, attn_weights_name(weights, i), &view, NULL));
  attn_weights_close(weights);
  attn_weights_close(NULL);

  weights = open_ok("tests/data/hf/gpt2-tiny/");
  assert_string_equal(attn_weights_path(weights), "tests/data/hf/gpt2-tiny");
  assert_true(attn_weights_find(weights, "transformer.wte.weight", &view, &file));
  assert_string_equal(file, "tests/data/hf/gpt2-tiny/model.safetensors");
  attn_weights_close(weights);

  // The lone file picks up the config.json beside it.
  weights = open_ok("tests/data/hf/gpt2-tiny/model.safetensors");
  assert_int_equal(attn_weights_count(weights), count);
  assert_non_null(attn_weights_config(weights));
  assert_string_equal(attn_config_name(attn_weights_config(weights)),
                      "tests/data/hf/gpt2-tiny/config.json");
  attn_weights_close(weights);
}

static void weights_open_the_sharded_llama_directory(void **state) {
  (void)state;
  attn_weights *weights = open_ok("tests/data/hf/llama-tiny-gqa");
  assert_int_equal(attn_weights_count(weights), 21);
  const struct {
    const char *name;
    const char *shard;
  } expected[] = {
      {"lm_head.weight", "model-00006-of-00006.safetensors"},
      {"model.embed_tokens.weight", "model-00001-of-00006.safetensors"},
      {"model.layers.0.self_attn.q_proj.weight", "model-00001-of-00006.safetensors"},
      {"model.layers.0.mlp.gate_proj.weight", "model-00002-of-00006.safetensors"},
      {"model.layers.1.self_attn.q_proj.weight", "model-00003-of-00006.safetensors"},
      {"model.norm.weight", "model-00005-of-00006.safetensors"},
  };
  for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++) {
    attn_tensor view;
    const char *file = NULL;
    assert_true(attn_weights_find(weights, expected[i].name, &view, &file));
    char path[256];
    snprintf(path, sizeof(path), "tests/data/hf/llama-tiny-gqa/%s", expected[i].shard);
    assert_string_equal(file, path);
  }
  attn_tensor view;
  assert_true(attn_weights_find(weights, "model.embed_tokens.weight", &view, NULL));
  assert_int_equal(view.dims[0], 320);
  assert_int_equal(view.dims[1], 64);
  assert_true(attn_config_get(attn_weights_config(weights), "num_key_value_heads").is_integer);
  for (size_t i = 0; i < attn_weights_count(weights); i++)
    assert_true(attn_weights_find(weights, attn_weights_name(weights, i), &view, NULL));
  attn_weights_close(weights);

  weights = open_ok("tests/data/hf/llama-tiny-tied");
  assert_true(attn_weights_count(weights) > 0);
  attn_weights_close(weights);
}

// Writes a shard holding I32 scalars named `names` (NULL-terminated), each valued `value`.
static void write_shard(const char *path, const char *const *names, int32_t value) {
  static int32_t values[16];
  attn_named_tensor tensors[16];
  size_t count = 0;
  for (; names[count]; count++) {
    values[count] = value;
    tensors[count] = (attn_named_tensor){names[count], {ATTN_DTYPE_I32, 0, {0}, &values[count]}};
  }
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  assert_int_equal(attn_safetensors_write(path, tensors, count, attn_allocator_system(), &diag),
                   ATTN_OK);
  attn_diag_deinit(&diag);
}

static void write_text(const char *path, const char *text) {
  test_write_file(path, text, strlen(text));
}

static void weights_resolve_shards_by_the_index(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  write_text(test_join(dir, "config.json"), "{\"hidden_size\": 8}");
  write_shard(test_join(dir, "s1.safetensors"), (const char *[]){"a", "b", "x", "u", NULL}, 1);
  write_shard(test_join(dir, "s2.safetensors"), (const char *[]){"c", "x", NULL}, 2);
  write_text(test_join(dir, "model.safetensors.index.json"),
             "{\"metadata\": {\"total_size\": 20}, \"weight_map\": {\"a\": \"s1.safetensors\", "
             "\"b\": \"s1.safetensors\", \"c\": \"s2.safetensors\", \"x\": \"s2.safetensors\"}}");
  attn_weights *weights = open_ok(dir);
  assert_int_equal(attn_weights_count(weights), 5);
  attn_tensor view;
  const char *file;
  // "x" is in both shards; the index says s2.
  assert_true(attn_weights_find(weights, "x", &view, &file));
  assert_int_equal(*(int32_t *)view.data, 2);
  assert_string_equal(file, test_join(dir, "s2.safetensors"));
  // "u" is in no index entry, but still found.
  assert_true(attn_weights_find(weights, "u", &view, &file));
  assert_string_equal(file, test_join(dir, "s1.safetensors"));
  assert_true(attn_config_get(attn_weights_config(weights), "hidden_size").is_integer);
  attn_weights_close(weights);
  test_remove_temp_dir(dir);
}

static void weights_refuse_broken_directories(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  char path[256];
  snprintf(path, sizeof(path), "%s", dir);
  const char *index = test_join(path, "model.safetensors.index.json");
  char index_path[256];
  snprintf(index_path, sizeof(index_path), "%s", index);

  expect_open_error(path, ATTN_ERROR_NOT_FOUND, path, "no config.json in this directory");
  write_text(test_join(path, "config.json"), "{\"a\": ");
  expect_open_error(path, ATTN_ERROR_PARSE, test_join(path, "config.json"), "invalid JSON");
  write_text(test_join(path, "config.json"), "{}");
  expect_open_error(path, ATTN_ERROR_NOT_FOUND, path,
                    "no model.safetensors or model.safetensors.index.json");

  write_shard(test_join(path, "s1.safetensors"), (const char *[]){"a", "x", NULL}, 1);
  write_shard(test_join(path, "s2.safetensors"), (const char *[]){"b", "x", NULL}, 2);
  const struct {
    const char *index;
    attn_status status;
    const char *message;
  } cases[] = {
      {"{\"weight_map\": ", ATTN_ERROR_PARSE, "invalid JSON"},
      {"{\"weight_map\": {}} x", ATTN_ERROR_PARSE, "invalid JSON"},
      {"[]", ATTN_ERROR_PARSE, "missing \"weight_map\""},
      {"{\"metadata\": {}}", ATTN_ERROR_PARSE, "missing \"weight_map\""},
      {"{\"weight_map\": []}", ATTN_ERROR_PARSE, "\"weight_map\" is not a JSON object"},
      {"{\"weight_map\": {}}", ATTN_ERROR_PARSE, "\"weight_map\" lists no tensors"},
      {"{\"weight_map\": {\"a\": 1}}", ATTN_ERROR_PARSE, "entry 'a' is not a string"},
      {"{\"weight_map\": {\"a\": \"../s1.safetensors\"}}", ATTN_ERROR_PARSE,
       "names shard '../s1.safetensors', which is not a plain file name"},
      {"{\"weight_map\": {\"a\": \"sub/s1.safetensors\"}}", ATTN_ERROR_PARSE,
       "not a plain file name"},
      {"{\"weight_map\": {\"a\": \"..\"}}", ATTN_ERROR_PARSE, "not a plain file name"},
      {"{\"weight_map\": {\"a\": \"\"}}", ATTN_ERROR_PARSE, "not a plain file name"},
      {"{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s1.safetensors\"}}",
       ATTN_ERROR_NOT_FOUND, "\"weight_map\" puts 'b' in"},
      {"{\"weight_map\": {\"a\": \"s1.safetensors\", \"a\": \"s2.safetensors\"}}", ATTN_ERROR_PARSE,
       "\"weight_map\" lists 'a' twice, in different shards"},
      {"{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}", ATTN_ERROR_PARSE,
       "tensor 'x' is in both"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    write_text(index_path, cases[i].index);
    expect_open_error(path, cases[i].status, index_path, cases[i].message);
  }
  // A listed shard that is not there is reported at the shard's path.
  write_text(index_path,
             "{\"weight_map\": {\"a\": \"s1.safetensors\", \"q\": \"s9.safetensors\"}}");
  expect_open_error(path, ATTN_ERROR_IO, test_join(path, "s9.safetensors"), "cannot open");
  // A broken shard is reported at the shard's path, with the tensor.
  test_write_file(test_join(path, "s1.safetensors"), "\x08\0\0\0\0\0\0\0{\"a\":1} ", 16);
  write_text(index_path, "{\"weight_map\": {\"a\": \"s1.safetensors\"}}");
  expect_open_error(path, ATTN_ERROR_PARSE, test_join(path, "s1.safetensors"),
                    "tensor 'a': entry is not a JSON object");
  test_remove_temp_dir(path);

  expect_open_error("tests/data/hf/nope", ATTN_ERROR_IO, "tests/data/hf/nope", "cannot open");
}

static void weights_lone_file_config_is_optional(void **state) {
  (void)state;
  const char *dir = test_make_temp_dir();
  char path[256];
  snprintf(path, sizeof(path), "%s", dir);
  char file[300];
  snprintf(file, sizeof(file), "%s/w.safetensors", path);
  write_shard(file, (const char *[]){"a", NULL}, 3);
  attn_weights *weights = open_ok(file);
  assert_null(attn_weights_config(weights));
  assert_int_equal(attn_weights_count(weights), 1);
  attn_weights_close(weights);
  // A config.json that is there must be valid.
  write_text(test_join(path, "config.json"), "nope");
  expect_open_error(file, ATTN_ERROR_PARSE, test_join(path, "config.json"), "invalid JSON");
  test_remove_temp_dir(path);
}

static attn_status open_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  attn_weights *weights;
  attn_status status = attn_weights_open(context, allocator, diag, &weights);
  if (status == ATTN_OK) {
    attn_tensor view;
    assert_true(attn_weights_count(weights) > 0);
    assert_true(attn_weights_find(weights, attn_weights_name(weights, 0), &view, NULL));
  }
  attn_weights_close(weights);
  return status;
}

static attn_status config_scenario(attn_allocator allocator, attn_diag *diag, void *context) {
  (void)context;
  const char *text = "{\"a\": {\"b\": [1, 2, {\"c\": \"d\"}], \"e\": 2.5}, \"f\": null}";
  attn_config *config;
  attn_status status = attn_config_parse(text, strlen(text), "c.json", allocator, diag, &config);
  if (status == ATTN_OK)
    assert_true(attn_config_get(config, "a.e").number == 2.5);
  attn_config_destroy(config);
  return status;
}

static void weights_survive_allocation_failures(void **state) {
  (void)state;
  assert_true(test_allocation_failure_sweep(config_scenario, NULL) >= 2);
  assert_true(test_allocation_failure_sweep(open_scenario, (void *)"tests/data/hf/gpt2-tiny") >= 5);
  assert_true(
      test_allocation_failure_sweep(open_scenario, (void *)"tests/data/hf/llama-tiny-gqa") >= 10);
  assert_true(test_allocation_failure_sweep(
                  open_scenario, (void *)"tests/data/hf/gpt2-tiny/model.safetensors") >= 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(config_reads_values_by_dotted_path),
      cmocka_unit_test(config_refuses_bad_json_with_a_location),
      cmocka_unit_test(weights_open_the_gpt2_directory),
      cmocka_unit_test(weights_open_the_sharded_llama_directory),
      cmocka_unit_test(weights_resolve_shards_by_the_index),
      cmocka_unit_test(weights_refuse_broken_directories),
      cmocka_unit_test(weights_lone_file_config_is_optional),
      cmocka_unit_test(weights_survive_allocation_failures),
  };
  return cmocka_run_group_tests_name("runtime/weights", tests, NULL, NULL);
}
