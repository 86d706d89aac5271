// The pass manager: pipeline syntax and its errors, options, named pipelines, compaction after a
// pass, the verifier naming the pass that broke a graph, --print-after and --time-passes output,
// and allocation failures.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/parse.h"
#include "passes/pass.h"

typedef struct fixture {
  attn_counting_allocator counter;
  attn_diag diag;
  attn_pipeline pipeline;
  attn_graph *graph;
} fixture;

static int setup(void **state) {
  fixture *f = test_calloc(1, sizeof(*f));
  attn_counting_allocator_init(&f->counter, attn_allocator_system());
  attn_diag_init(&f->diag, attn_allocator_system());
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  attn_pipeline_deinit(&f->pipeline);
  attn_graph_destroy(f->graph);
  attn_diag_deinit(&f->diag);
  assert_int_equal(f->counter.live_bytes, 0);
  test_free(f);
  return 0;
}

static attn_status parse(fixture *f, const char *text) {
  attn_pipeline_deinit(&f->pipeline);
  attn_diag_clear(&f->diag);
  return attn_pipeline_parse(text, attn_counting_allocator_get(&f->counter), &f->diag,
                             &f->pipeline);
}

static void expect_error(fixture *f, const char *text, const char *message) {
  assert_int_equal(parse(f, text), ATTN_ERROR_INVALID_ARGUMENT);
  const char *error = attn_diag_last_error(&f->diag);
  assert_non_null(error);
  if (!strstr(error, message)) {
    fprintf(stderr, "pipeline '%s': got '%s', expected '%s'\n", text, error, message);
    fail();
  }
}

static void pass_names_options_and_named_pipelines_parse(void **state) {
  fixture *f = *state;
  assert_int_equal(parse(f, ""), ATTN_OK);
  assert_int_equal(f->pipeline.count, 0);
  assert_int_equal(parse(f, "none"), ATTN_OK);
  assert_int_equal(f->pipeline.count, 0);
  assert_int_equal(parse(f, " dce , none,dce "), ATTN_OK);
  assert_int_equal(f->pipeline.count, 2);
  assert_string_equal(f->pipeline.entries[1].pass->name, "dce");

  // `default` is the text of the default pipeline, wherever it appears.
  attn_pipeline expected;
  assert_int_equal(attn_pipeline_parse(attn_pipeline_default_text(), attn_allocator_system(),
                                       &f->diag, &expected),
                   ATTN_OK);
  assert_int_equal(parse(f, "dce,default"), ATTN_OK);
  assert_int_equal(f->pipeline.count, expected.count + 1);
  for (uint32_t i = 0; i < expected.count; i++)
    assert_ptr_equal(f->pipeline.entries[i + 1].pass, expected.entries[i].pass);
  attn_pipeline_deinit(&expected);

  // Options, read back through the accessors.
  assert_int_equal(parse(f, "fold-constants{max-bytes=4096},dce"), ATTN_OK);
  assert_int_equal(f->pipeline.count, 2);
  const attn_pipeline_entry *entry = &f->pipeline.entries[0];
  assert_int_equal(entry->option_count, 1);
  attn_pass_context ctx = {
      .pass = entry->pass, .options = entry->options, .option_count = entry->option_count};
  assert_int_equal(attn_pass_option_int(&ctx, "max-bytes", 7), 4096);
  assert_int_equal(attn_pass_option_int(&ctx, "no-such-option", 7), 7);
  assert_int_equal(parse(f, "fold-constants { max-bytes = 0 }"), ATTN_OK);
}

static void every_malformed_pipeline_says_what_is_wrong(void **state) {
  fixture *f = *state;
  expect_error(f, "dce,fuse", "unknown pass 'fuse'; valid: default, none, dce");
  expect_error(f, "dce,fuse", "fold-constants"); // the list names every registered pass
  expect_error(f, "dce,", "a pass name must follow ','");
  expect_error(f, ",dce", "expected a pass name at ',dce'");
  expect_error(f, "dce,,dce", "expected a pass name at ',dce'");
  expect_error(f, "dce dce", "expected ',' at 'dce'");
  expect_error(f, "dce{x=1}", "pass 'dce' takes no options");
  expect_error(f, "fold-constants{size=1}",
               "unknown option 'size' for pass 'fold-constants'; valid: max-bytes");
  expect_error(f, "fold-constants{max-bytes=lots}",
               "option 'max-bytes' of pass 'fold-constants' takes an integer, not 'lots'");
  expect_error(f, "fold-constants{max-bytes=1.5}", "takes an integer, not '1.5'");
  expect_error(f, "fold-constants{max-bytes=}", "takes an integer, not ''");
  expect_error(f, "fold-constants{max-bytes}", "expected '=' after option 'max-bytes'");
  expect_error(f, "fold-constants{max-bytes=1", "expected ',' or '}' in the options of");
  expect_error(f, "fold-constants{max-bytes=1,max-bytes=2}", "given twice");
  expect_error(f, "fold-constants{}", "expected an option name at '}'");
  expect_error(f, "dce}", "expected ',' at '}'");
  // Every message quotes the whole pipeline.
  expect_error(f, "dce,fuse", "pass pipeline 'dce,fuse': ");
}

// ---- running ---------------------------------------------------------------------------------

static const char model[] = "graph g(x: f32[B, 4]) -> (y: f32[B, 4]) {\n"
                            "  a = tanh(x)\n"
                            "  unused = exp(x)\n"
                            "  y = neg(a)\n"
                            "  return y\n"
                            "}\n";

static void parse_model(fixture *f) {
  assert_int_equal(attn_parse_text("g.attn", model, strlen(model), NULL,
                                   attn_counting_allocator_get(&f->counter), &f->diag, &f->graph),
                   ATTN_OK);
}

// Appends sigmoid(x) and makes the first node read it: the graph is out of order until
// compaction moves the new node up.
static attn_status append_and_redirect(attn_pass_context *ctx, attn_graph *graph) {
  attn_value_id x = graph->inputs[0];
  attn_node_id id;
  ATTN_RETURN_IF_ERROR(
      attn_graph_add_node(graph, ATTN_OP_SIGMOID, &x, 1, NULL, ATTN_LOC_NONE, &id));
  attn_node_set_input(graph, (attn_node_id){1}, 0, attn_node_output(graph, id, 0));
  ctx->changed = true;
  return ATTN_OK;
}

// Makes tanh read a value of another shape, so its output type no longer matches.
static attn_status break_graph(attn_pass_context *ctx, attn_graph *graph) {
  (void)ctx;
  attn_value_id x = graph->inputs[0];
  attn_node_id id;
  static const int64_t axes[1] = {1};
  ATTN_RETURN_IF_ERROR(attn_graph_add_node(
      graph, ATTN_OP_SUM, &x, 1, &(attn_reduce_attrs){axes, 1, false}, ATTN_LOC_NONE, &id));
  attn_node_set_input(graph, (attn_node_id){1}, 0, attn_node_output(graph, id, 0));
  return ATTN_OK;
}

static const attn_pass_info reorder_pass = {"reorder", "test", append_and_redirect, NULL, 0};
static const attn_pass_info breaking_pass = {"break", "test", break_graph, NULL, 0};

static attn_status run_custom(fixture *f, const attn_pass_info *pass, FILE *out) {
  attn_pipeline_entry entry = {pass, NULL, 0};
  attn_pipeline pipeline = {.entries = &entry, .count = 1};
  attn_pipeline_run_options options = {.verify_each = true, .out = out};
  return attn_pipeline_run(&pipeline, f->graph, &options);
}

static void compaction_restores_the_order_after_a_pass(void **state) {
  fixture *f = *state;
  parse_model(f);
  assert_int_equal(run_custom(f, &reorder_pass, NULL), ATTN_OK);
  assert_int_equal(f->graph->nodes[1].op, ATTN_OP_SIGMOID);
  assert_int_equal(f->graph->nodes[2].op, ATTN_OP_TANH);
  assert_int_equal(attn_graph_verify(f->graph), ATTN_OK);
}

static void the_verifier_names_the_pass_that_broke_the_graph(void **state) {
  fixture *f = *state;
  parse_model(f);
  assert_int_equal(run_custom(f, &breaking_pass, NULL), ATTN_ERROR_INVALID_GRAPH);
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  attn_diag_write(&f->diag, out);
  fclose(out);
  assert_non_null(strstr(text, "verifier: tanh: output 0 has type f32[B, 4], shape inference "
                               "says f32[B]"));
  assert_non_null(strstr(text, "the graph was valid before pass 'break'"));
  free(text);
}

static void print_after_and_time_passes_write_what_they_say(void **state) {
  fixture *f = *state;
  parse_model(f);
  assert_int_equal(parse(f, "dce,dce"), ATTN_OK);
  char *text = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&text, &size);
  attn_pipeline_run_options options = {.print_after = "dce", .time_passes = true, .out = out};
  assert_int_equal(attn_pipeline_run(&f->pipeline, f->graph, &options), ATTN_OK);
  fclose(out);
  // Twice the IR (dce ran twice), the first without `unused`; one timing line per run.
  const char *first = strstr(text, "# ---- IR after dce ----");
  assert_non_null(first);
  assert_non_null(strstr(first + 1, "# ---- IR after dce ----"));
  assert_null(strstr(text, "unused"));
  assert_non_null(strstr(text, "# dce "));
  assert_non_null(strstr(text, "(unchanged)")); // the second dce found nothing to do
  assert_non_null(strstr(text, "# total"));
  free(text);
}

static void allocation_failures_are_reported_as_such(void **state) {
  (void)state;
  for (long fail_after = 0; fail_after < 60; fail_after++) {
    attn_counting_allocator counter;
    attn_counting_allocator_init(&counter, attn_allocator_system());
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_graph *graph = NULL;
    assert_int_equal(attn_parse_text("g.attn", model, strlen(model), NULL,
                                     attn_counting_allocator_get(&counter), &diag, &graph),
                     ATTN_OK);
    counter.fail_after = fail_after;
    attn_pipeline pipeline;
    attn_status status =
        attn_pipeline_parse("default,dce", attn_counting_allocator_get(&counter), &diag, &pipeline);
    if (status == ATTN_OK)
      status = attn_pipeline_run(&pipeline, graph, NULL);
    assert_true(status == ATTN_OK || status == ATTN_ERROR_OUT_OF_MEMORY);
    attn_pipeline_deinit(&pipeline);
    attn_graph_destroy(graph);
    attn_diag_deinit(&diag);
    assert_int_equal(counter.live_bytes, 0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(pass_names_options_and_named_pipelines_parse, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(every_malformed_pipeline_says_what_is_wrong, setup, teardown),
      cmocka_unit_test_setup_teardown(compaction_restores_the_order_after_a_pass, setup, teardown),
      cmocka_unit_test_setup_teardown(the_verifier_names_the_pass_that_broke_the_graph, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(print_after_and_time_passes_write_what_they_say, setup,
                                      teardown),
      cmocka_unit_test(allocation_failures_are_reported_as_such),
  };
  return cmocka_run_group_tests_name("passes/pipeline", tests, NULL, NULL);
}
