// The public runtime API (include/attn/runtime.h) on a compiled artifact: a model's description,
// runs against the reference evaluator's results, every misuse refused with a message, and
// sessions of one model running concurrently on several threads, each getting exactly what a
// serial run gets. The test is also built with ThreadSanitizer (session_tsan_test), which
// checks that concurrent sessions share nothing they write.
//
// Usage: session_test DIR, where DIR holds tiny.attnx (attnc compile --emit artifact of
// models/tiny.attn), ids.npy (i64 [2, 16]) and ref.npy (the logits `attnc run -b interp` gives).
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "attn/runtime.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/tensor/npy.h"

enum { THREADS = 4, RUNS = 3, VOCAB = 256 };

static const char *fixture_dir;

static void fixture_path(const char *name, char *path, size_t size) {
  snprintf(path, size, "%s/%s", fixture_dir, name);
}

static attn_model *open_model(void) {
  char path[4096];
  fixture_path("tiny.attnx", path, sizeof(path));
  attn_model *model = NULL;
  attn_error error;
  attn_status status = attn_model_open(path, NULL, &model, &error);
  if (status != ATTN_OK)
    fail_msg("attn_model_open: %s", error.message);
  return model;
}

static void test_model_description(void **state) {
  (void)state;
  attn_model *model = open_model();
  assert_string_equal(attn_model_name(model), "tiny");
  assert_int_equal(attn_model_input_count(model), 1);
  assert_int_equal(attn_model_output_count(model), 1);
  attn_tensor_info input = attn_model_input(model, 0);
  assert_string_equal(input.name, "input_ids");
  assert_int_equal(input.dtype, ATTN_DTYPE_I64);
  assert_int_equal(input.rank, 2);
  assert_int_equal(input.dims[0], -1);
  assert_string_equal(input.dim_names[0], "B");
  assert_string_equal(input.dim_names[1], "T");
  attn_tensor_info output = attn_model_output(model, 0);
  assert_string_equal(output.name, "logits");
  assert_int_equal(output.rank, 3);
  assert_int_equal(output.dims[2], VOCAB);
  assert_null(output.dim_names[2]);
  attn_model_close(model);
}

// Relative L2 distance of n floats.
static double relative_l2(const float *a, const float *b, int64_t n) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    diff += d * d;
    norm += (double)b[i] * (double)b[i];
  }
  return sqrt(diff / norm);
}

static void test_run_matches_reference(void **state) {
  (void)state;
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  char path[4096];
  attn_tensor ids, ref;
  fixture_path("ids.npy", path, sizeof(path));
  assert_int_equal(attn_npy_read(path, allocator, &diag, &ids), ATTN_OK);
  fixture_path("ref.npy", path, sizeof(path));
  assert_int_equal(attn_npy_read(path, allocator, &diag, &ref), ATTN_OK);

  attn_model *model = open_model();
  attn_session *session;
  attn_error error;
  assert_int_equal(attn_session_create(model, NULL, &session, &error), ATTN_OK);
  assert_int_equal(
      attn_session_set_input(session, "input_ids", ids.dtype, ids.rank, ids.dims, ids.data),
      ATTN_OK);
  for (int run = 0; run < 2; run++) { // a second run reuses the session's buffers
    assert_int_equal(attn_session_run(session), ATTN_OK);
    attn_dtype dtype;
    uint32_t rank;
    int64_t dims[ATTN_MAX_RANK];
    const void *data;
    assert_int_equal(attn_session_output(session, "logits", &dtype, &rank, dims, &data), ATTN_OK);
    assert_int_equal(dtype, ATTN_DTYPE_F32);
    assert_int_equal(rank, 3);
    assert_memory_equal(dims, ref.dims, 3 * sizeof(int64_t));
    assert_true(relative_l2(data, ref.data, attn_tensor_element_count(&ref)) < 1e-5);
  }
  assert_string_equal(attn_session_error(session), "");
  attn_session_destroy(session);
  attn_model_close(model);
  attn_tensor_free(allocator, &ids);
  attn_tensor_free(allocator, &ref);
  attn_diag_deinit(&diag);
}

static void test_misuse_is_refused(void **state) {
  (void)state;
  attn_model *model = open_model();
  attn_session *session;
  attn_error error;
  assert_int_equal(attn_session_create(model, NULL, &session, &error), ATTN_OK);
  int64_t ids[6] = {1, 2, 3, 4, 5, 6}, dims[2] = {2, 3};
  // A run before every input is bound; an output before any run; unknown names.
  assert_int_equal(attn_session_run(session), ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_session_error(session), "'input_ids' is not bound"));
  assert_int_equal(attn_session_output(session, "logits", NULL, NULL, NULL, NULL),
                   ATTN_ERROR_NOT_FOUND);
  assert_int_equal(attn_session_set_input(session, "ids", ATTN_DTYPE_I64, 2, dims, ids),
                   ATTN_ERROR_NOT_FOUND);
  assert_non_null(strstr(attn_session_error(session), "no input 'ids'"));
  // A float tensor for an integer input, and a rank the model does not take.
  assert_int_equal(attn_session_set_input(session, "input_ids", ATTN_DTYPE_F32, 2, dims, ids),
                   ATTN_OK);
  assert_int_equal(attn_session_run(session), ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_session_error(session), "input 'input_ids': expected i64[B, T]"));
  assert_int_equal(attn_session_set_input(session, "input_ids", ATTN_DTYPE_I64, 1, dims, ids),
                   ATTN_OK);
  assert_int_equal(attn_session_run(session), ATTN_ERROR_INVALID_ARGUMENT);
  // A token id outside the vocabulary: the gather's check, not a wild read.
  int64_t bad[6] = {1, 2, 3, VOCAB + 7, 5, 6};
  assert_int_equal(attn_session_set_input(session, "input_ids", ATTN_DTYPE_I64, 2, dims, bad),
                   ATTN_OK);
  assert_int_equal(attn_session_run(session), ATTN_ERROR_INVALID_ARGUMENT);
  assert_non_null(strstr(attn_session_error(session), "out of range"));
  // And the session still works.
  assert_int_equal(attn_session_set_input(session, "input_ids", ATTN_DTYPE_I64, 2, dims, ids),
                   ATTN_OK);
  assert_int_equal(attn_session_run(session), ATTN_OK);
  assert_int_equal(attn_session_output(session, "nope", NULL, NULL, NULL, NULL),
                   ATTN_ERROR_NOT_FOUND);
  attn_session_destroy(session);
  attn_model_close(model);
}

// An empty batch runs and gives an empty result: no kernel writes into its zero bytes (the
// input's data may be NULL then, as for any empty tensor).
static void test_empty_batch_runs(void **state) {
  (void)state;
  attn_model *model = open_model();
  attn_session *session;
  attn_error error;
  assert_int_equal(attn_session_create(model, NULL, &session, &error), ATTN_OK);
  int64_t dims[2] = {0, 4};
  assert_int_equal(attn_session_set_input(session, "input_ids", ATTN_DTYPE_I64, 2, dims, NULL),
                   ATTN_OK);
  if (attn_session_run(session) != ATTN_OK)
    fail_msg("run: %s", attn_session_error(session));
  int64_t out_dims[ATTN_MAX_RANK];
  uint32_t rank;
  assert_int_equal(attn_session_output(session, "logits", NULL, &rank, out_dims, NULL), ATTN_OK);
  assert_int_equal(rank, 3);
  assert_int_equal(out_dims[0], 0);
  assert_int_equal(out_dims[1], 4);
  attn_session_destroy(session);
  attn_model_close(model);
}

static void test_bad_files_are_refused(void **state) {
  (void)state;
  attn_model *model = NULL;
  attn_error error;
  assert_int_not_equal(attn_model_open("/nonexistent/model.attnx", NULL, &model, &error), ATTN_OK);
  assert_null(model);
  assert_non_null(strstr(error.message, "/nonexistent/model.attnx"));
  // The fixture's own directory is no artifact; nor is its id file.
  char path[4096];
  fixture_path("ids.npy", path, sizeof(path));
  assert_int_equal(attn_model_open(path, NULL, &model, &error), ATTN_ERROR_PARSE);
  assert_non_null(strstr(error.message, "not an attnc artifact"));
  // A truncated copy.
  char copy[4200];
  fixture_path("tiny.attnx", path, sizeof(path));
  snprintf(copy, sizeof(copy), "%s/truncated.attnx", fixture_dir);
  FILE *in = fopen(path, "rb"), *out = fopen(copy, "wb");
  assert_non_null(in);
  assert_non_null(out);
  char buffer[4096];
  size_t n = fread(buffer, 1, sizeof(buffer), in);
  assert_true(n > 100);
  assert_int_equal(fwrite(buffer, 1, n / 2, out), n / 2);
  fclose(in);
  fclose(out);
  assert_int_equal(attn_model_open(copy, NULL, &model, &error), ATTN_ERROR_PARSE);
  assert_null(model);
  remove(copy);
}

// ---- concurrent sessions ---------------------------------------------------------------------

typedef struct worker {
  attn_model *model;
  int64_t ids[2 * 16];
  int64_t dims[2];
  float expected[2 * 16 * VOCAB];
  bool ok;
  char message[600];
} worker;

// Runs one session of the worker's model RUNS times and compares every result with `expected`
// bit for bit (kernels accumulate in a fixed order, whatever the threads).
static void *work(void *arg) {
  worker *w = arg;
  attn_session *session;
  attn_error error;
  attn_session_options options = {.thread_count = 2};
  if (attn_session_create(w->model, &options, &session, &error) != ATTN_OK) {
    snprintf(w->message, sizeof(w->message), "create: %s", error.message);
    return NULL;
  }
  w->ok = true;
  for (int r = 0; r < RUNS && w->ok; r++) {
    const void *data;
    int64_t dims[ATTN_MAX_RANK];
    if (attn_session_set_input(session, "input_ids", ATTN_DTYPE_I64, 2, w->dims, w->ids) !=
            ATTN_OK ||
        attn_session_run(session) != ATTN_OK ||
        attn_session_output(session, "logits", NULL, NULL, dims, &data) != ATTN_OK) {
      snprintf(w->message, sizeof(w->message), "run %d: %s", r, attn_session_error(session));
      w->ok = false;
    } else if (memcmp(data, w->expected,
                      (size_t)(w->dims[0] * w->dims[1] * VOCAB) * sizeof(float)) != 0) {
      snprintf(w->message, sizeof(w->message), "run %d differs from the serial run", r);
      w->ok = false;
    }
  }
  attn_session_destroy(session);
  return NULL;
}

static void test_concurrent_sessions(void **state) {
  (void)state;
  attn_model *model = open_model();
  static worker workers[THREADS];
  // Each worker has its own sequence and length; its expected logits come from a serial run.
  attn_session *serial;
  attn_error error;
  attn_session_options options = {.thread_count = 2};
  assert_int_equal(attn_session_create(model, &options, &serial, &error), ATTN_OK);
  for (int t = 0; t < THREADS; t++) {
    worker *w = &workers[t];
    memset(w, 0, sizeof(*w));
    w->model = model;
    w->dims[0] = 2;
    w->dims[1] = 5 + 3 * t;
    for (int64_t i = 0; i < w->dims[0] * w->dims[1]; i++)
      w->ids[i] = (i * 31 + t * 17) % VOCAB;
    const void *data;
    assert_int_equal(
        attn_session_set_input(serial, "input_ids", ATTN_DTYPE_I64, 2, w->dims, w->ids), ATTN_OK);
    assert_int_equal(attn_session_run(serial), ATTN_OK);
    assert_int_equal(attn_session_output(serial, "logits", NULL, NULL, NULL, &data), ATTN_OK);
    memcpy(w->expected, data, (size_t)(w->dims[0] * w->dims[1] * VOCAB) * sizeof(float));
  }
  attn_session_destroy(serial);
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++)
    assert_int_equal(pthread_create(&threads[t], NULL, work, &workers[t]), 0);
  for (int t = 0; t < THREADS; t++)
    assert_int_equal(pthread_join(threads[t], NULL), 0);
  for (int t = 0; t < THREADS; t++)
    if (!workers[t].ok)
      fail_msg("thread %d: %s", t, workers[t].message);
  attn_model_close(model);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  fixture_dir = argv[1];
  const struct CMUnitTest tests[] = {
      // clang-format off
      cmocka_unit_test(test_model_description),
      cmocka_unit_test(test_run_matches_reference),
      cmocka_unit_test(test_misuse_is_refused),
      cmocka_unit_test(test_empty_batch_runs),
      cmocka_unit_test(test_bad_files_are_refused),
      cmocka_unit_test(test_concurrent_sessions),
      // clang-format on
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
