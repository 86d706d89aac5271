// Unit tests for runtime/exec/plan: dim evaluation (symbols, exact division, overflow) and
// attn_plan_validate refusing each kind of fault a plan read from a file could carry.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "plan_fixture.h"
#include "runtime/exec/plan.h"
#include "runtime_test_util.h"

static void plan_names_step_kinds(void **state) {
  (void)state;
  assert_string_equal(attn_plan_step_kind_name(ATTN_PLAN_STEP_VIEW), "view");
  assert_string_equal(attn_plan_step_kind_name(ATTN_PLAN_STEP_GEMM), "gemm");
  assert_string_equal(attn_plan_step_kind_name(ATTN_PLAN_STEP_ATTENTION), "attention");
  assert_string_equal(attn_plan_step_kind_name(ATTN_PLAN_STEP_KERNEL), "kernel");
  assert_string_equal(attn_plan_step_kind_name(ATTN_PLAN_STEP_TOPK), "topk");
  assert_string_equal(attn_plan_step_kind_name(ATTN_PLAN_STEP_HOST), "host");
  assert_string_equal(attn_plan_step_kind_name(ATTN_PLAN_STEP_KIND_COUNT), "unknown");
}

static void plan_evaluates_dims(void **state) {
  (void)state;
  plan_fixture fixture;
  plan_fixture_init(&fixture);
  const attn_plan *plan = &fixture.plan;
  int64_t symbols[2] = {3, 10}, value = -99;
  assert_true(attn_plan_dim_eval(plan, 42, symbols, &value));
  assert_int_equal(value, 42);
  assert_true(attn_plan_dim_eval(plan, -1, symbols, &value));
  assert_int_equal(value, 3);
  assert_true(attn_plan_dim_eval(plan, -3, symbols, &value));
  assert_int_equal(value, 30);
  assert_true(attn_plan_dim_eval(plan, -4, symbols, &value));
  assert_int_equal(value, 15);
  assert_true(attn_plan_dim_eval(plan, -5, symbols, &value));
  assert_int_equal(value, 14);

  // (B * T) / 2 is not exact for B * T = 15.
  symbols[0] = 3, symbols[1] = 5;
  assert_false(attn_plan_dim_eval(plan, -4, symbols, &value));
  // An unbound symbol fails every expression that needs it, and only those.
  symbols[0] = -1;
  assert_false(attn_plan_dim_eval(plan, -3, symbols, &value));
  assert_true(attn_plan_dim_eval(plan, -5, symbols, &value));
  assert_int_equal(value, 9);
  // Overflow of the product and of the sum.
  symbols[0] = INT64_MAX / 2, symbols[1] = 3;
  assert_false(attn_plan_dim_eval(plan, -3, symbols, &value));
  symbols[1] = INT64_MAX - 2;
  assert_false(attn_plan_dim_eval(plan, -5, symbols, &value));
  // Out of range, and INT64_MIN, whose negation would overflow.
  symbols[0] = 1, symbols[1] = 1;
  assert_false(attn_plan_dim_eval(plan, -6, symbols, &value));
  assert_false(attn_plan_dim_eval(plan, INT64_MIN, symbols, &value));
}

static void plan_eval_refuses_division_by_zero_and_negative_results(void **state) {
  (void)state;
  plan_fixture fixture;
  plan_fixture_init(&fixture);
  int64_t symbols[2] = {0, 4}, value;
  fixture.dims[3] = (attn_plan_dim){ATTN_PLAN_DIM_DIV, -2, -1}; // T / B with B = 0
  assert_false(attn_plan_dim_eval(&fixture.plan, -4, symbols, &value));
  fixture.dims[3] = (attn_plan_dim){ATTN_PLAN_DIM_SUB, -1, -2}; // B - T < 0
  assert_false(attn_plan_dim_eval(&fixture.plan, -4, symbols, &value));
  fixture.dims[3] = (attn_plan_dim){ATTN_PLAN_DIM_SUB, -2, -1};
  assert_true(attn_plan_dim_eval(&fixture.plan, -4, symbols, &value));
  assert_int_equal(value, 4);
}

static void plan_eval_does_not_loop_on_an_unvalidated_plan(void **state) {
  (void)state;
  plan_fixture fixture;
  plan_fixture_init(&fixture);
  int64_t symbols[2] = {2, 2}, value;
  fixture.dims[2] = (attn_plan_dim){ATTN_PLAN_DIM_ADD, -3, 1}; // refers to itself
  assert_false(attn_plan_dim_eval(&fixture.plan, -3, symbols, &value));
  fixture.dims[2] = (attn_plan_dim){ATTN_PLAN_DIM_ADD, -5, 1}; // to a later one
  assert_false(attn_plan_dim_eval(&fixture.plan, -3, symbols, &value));
}

// Expressions that share operands: d[i] = d[i-1] + d[i-1]. Evaluated as a tree, the last of 80
// would take 2^80 steps; the table is evaluated once, in order.
static void plan_eval_is_linear_in_shared_expressions(void **state) {
  (void)state;
  enum { COUNT = 80 };
  attn_plan_dim dims[COUNT];
  dims[0] = (attn_plan_dim){ATTN_PLAN_DIM_SYMBOL, 0, 0};
  for (int i = 1; i < COUNT; i++)
    dims[i] = (attn_plan_dim){ATTN_PLAN_DIM_ADD, -i, -i};
  const char *names[1] = {"N"};
  attn_plan plan = {.symbol_count = 1, .dim_count = COUNT, .symbols = names, .dims = dims};
  int64_t symbols[1] = {0}, value = -1;
  assert_true(attn_plan_dim_eval(&plan, -COUNT, symbols, &value));
  assert_int_equal(value, 0);
  int64_t values[COUNT];
  bool known[COUNT];
  symbols[0] = 1; // 2^79 overflows: every expression from d[63] on fails
  attn_plan_dims_eval(&plan, symbols, values, known);
  assert_true(known[62]);
  assert_int_equal(values[62], INT64_C(1) << 62);
  assert_false(known[63]);
  assert_false(known[COUNT - 1]);
  assert_false(attn_plan_dim_eval(&plan, -COUNT, symbols, &value));
}

static void plan_validates_the_fixture(void **state) {
  (void)state;
  plan_fixture fixture;
  plan_fixture_init(&fixture);
  attn_diag diag;
  attn_diag_init(&diag, attn_allocator_system());
  assert_int_equal(attn_plan_validate(&fixture.plan, &diag), ATTN_OK);
  assert_int_equal(diag.error_count, 0);
  attn_diag_deinit(&diag);
}

// One fault: breaks the fixture; validation must refuse it with a message containing `message`.
typedef struct fault {
  const char *name;
  void (*apply)(plan_fixture *fixture);
  const char *message;
} fault;

static uint32_t *operand_at(plan_fixture *fixture, const uint32_t *operand) {
  return &fixture->operands[operand - fixture->operands];
}

static void symbol_out_of_range(plan_fixture *f) {
  f->dims[1].lhs = 2;
}
static void dim_refers_forward(plan_fixture *f) {
  f->dims[2].rhs = -4;
}
static void dim_refers_to_itself(plan_fixture *f) {
  f->dims[2].lhs = -3;
}
static void dim_kind_unknown(plan_fixture *f) {
  f->dims[4].kind = ATTN_PLAN_DIM_KIND_COUNT;
}
static void symbol_without_name(plan_fixture *f) {
  f->symbols[1] = NULL;
}
static void value_not_its_constant_type(plan_fixture *f) {
  f->constants[1].dims[0] = 5;
}
static void gemm_result_of_rank_one(plan_fixture *f) {
  f->values[3].rank = 1;
}
static void attention_input_of_rank_three(plan_fixture *f) {
  f->values[5].rank = 3;
}
static void attention_mask_of_rank_five(plan_fixture *f) {
  f->values[8].rank = 5;
}
static void topk_indices_not_i64(plan_fixture *f) {
  f->values[15].dtype = ATTN_DTYPE_F32;
}
static void value_dim_missing(plan_fixture *f) {
  f->values[3].dims[0] = -6;
}
static void value_dtype_unknown(plan_fixture *f) {
  f->values[5].dtype = ATTN_DTYPE_COUNT;
}
static void value_rank_too_large(plan_fixture *f) {
  f->values[5].rank = ATTN_MAX_RANK + 1;
}
static void value_input_out_of_range(plan_fixture *f) {
  f->values[0].index = 2;
}
static void value_constant_out_of_range(plan_fixture *f) {
  f->values[1].index = 3;
}
static void value_buffer_out_of_range(plan_fixture *f) {
  f->values[3].index = 2;
}
static void value_storage_unknown(plan_fixture *f) {
  f->values[7].storage = ATTN_PLAN_STORAGE_COUNT;
}
static void iota_axis_out_of_range(plan_fixture *f) {
  f->values[12].iota_axis = 1;
}
static void buffer_dim_missing(plan_fixture *f) {
  f->buffers[0] = -9;
}
static void input_value_out_of_range(plan_fixture *f) {
  f->inputs[1].value = PLAN_FIXTURE_VALUES;
}
static void input_without_name(plan_fixture *f) {
  f->inputs[0].name = NULL;
}
static void output_value_out_of_range(plan_fixture *f) {
  f->outputs[0].value = 100;
}
static void output_without_name(plan_fixture *f) {
  f->outputs[1].name = NULL;
}
static void constant_without_name(plan_fixture *f) {
  f->constants[2].name = NULL;
}
static void function_without_name(plan_fixture *f) {
  f->functions[1] = NULL;
}
static void step_kind_unknown(plan_fixture *f) {
  f->steps[5].kind = ATTN_PLAN_STEP_KIND_COUNT;
}
static void gemm_function_out_of_range(plan_fixture *f) {
  f->steps[0].function = 3;
}
static void attention_function_out_of_range(plan_fixture *f) {
  f->steps[2].function = 7;
}
static void kernel_function_out_of_range(plan_fixture *f) {
  f->steps[3].function = 3;
}
static void view_with_two_inputs(plan_fixture *f) {
  f->steps[1].input_count = 2;
}
static void gemm_without_its_bias(plan_fixture *f) {
  f->steps[0].u.gemm.bias = false;
}
static void gemm_with_two_outputs(plan_fixture *f) {
  f->steps[0].output_count = 2;
}
static void attention_without_lse_output(plan_fixture *f) {
  f->steps[2].output_count = 1;
}
static void attention_without_its_mask(plan_fixture *f) {
  f->steps[2].u.attention.has_mask = false;
}
static void attention_too_many_captures(plan_fixture *f) {
  f->steps[2].u.attention.spec.capture_count = ATTN_CPU_ATTENTION_MAX_CAPTURES + 1;
}
static void attention_norm_unknown(plan_fixture *f) {
  f->steps[2].u.attention.spec.norm = ATTN_CPU_ATTENTION_NORM_COUNT;
}
static void attention_dtype_unknown(plan_fixture *f) {
  f->steps[2].u.attention.spec.dtype = ATTN_CPU_ATTENTION_DTYPE_COUNT;
}
static void kernel_without_outputs(plan_fixture *f) {
  f->steps[3].output_count = 0;
}
static void gather_check_value_out_of_range(plan_fixture *f) {
  f->gather_checks[0].indices = 18;
}
static void topk_with_one_output(plan_fixture *f) {
  f->steps[4].output_count = 1;
}
static void topk_axis_out_of_range(plan_fixture *f) {
  f->steps[4].u.topk.axis = 2;
}
static void step_input_out_of_range(plan_fixture *f) {
  *operand_at(f, &f->steps[2].inputs[4]) = PLAN_FIXTURE_VALUES;
}
static void step_output_out_of_range(plan_fixture *f) {
  *operand_at(f, &f->steps[5].outputs[0]) = 1000;
}
static void step_operands_missing(plan_fixture *f) {
  f->steps[5].inputs = NULL;
}

static const fault faults[] = {
    {"symbol out of range", symbol_out_of_range, "names symbol 2 of 2"},
    {"dim refers forward", dim_refers_forward, "not before it"},
    {"dim refers to itself", dim_refers_to_itself, "not before it"},
    {"dim kind unknown", dim_kind_unknown, "unknown kind"},
    {"symbol without name", symbol_without_name, "symbol 1 has no name"},
    {"value dim missing", value_dim_missing, "value 3: dim 0"},
    {"value dtype unknown", value_dtype_unknown, "unknown dtype"},
    {"value rank too large", value_rank_too_large, "rank 9"},
    {"value input out of range", value_input_out_of_range, "value 0 is input 2 of 2"},
    {"value constant out of range", value_constant_out_of_range, "constant 3 of 3"},
    {"value buffer out of range", value_buffer_out_of_range, "buffer 2 of 2"},
    {"value storage unknown", value_storage_unknown, "unknown storage"},
    {"gemm result of rank 1", gemm_result_of_rank_one, "writes a rank-1 result"},
    {"attention input of rank 3", attention_input_of_rank_three, "input 0 is not bf16 of rank 4"},
    {"attention mask of rank 5", attention_mask_of_rank_five, "has a mask of rank 5"},
    {"topk indices not i64", topk_indices_not_i64, "write f32 and i64"},
    {"value not its constant's type", value_not_its_constant_type,
     "value 2 is constant 1, of another type"},
    {"iota axis out of range", iota_axis_out_of_range, "iota axis"},
    {"buffer dim missing", buffer_dim_missing, "buffer 0's size"},
    {"input value out of range", input_value_out_of_range, "input 'q' is value 18 of 18"},
    {"input without name", input_without_name, "input 0 has no name"},
    {"output value out of range", output_value_out_of_range, "output 'y' is value 100"},
    {"output without name", output_without_name, "output 1 has no name"},
    {"constant without name", constant_without_name, "constant 2 has no name"},
    {"function without name", function_without_name, "function 1 has no name"},
    {"step kind unknown", step_kind_unknown, "step 5 has unknown kind"},
    {"gemm function out of range", gemm_function_out_of_range, "calls function 3 of 3"},
    {"attention function out of range", attention_function_out_of_range, "function 7 of 3"},
    {"kernel function out of range", kernel_function_out_of_range, "step 3 (kernel) calls"},
    {"view with two inputs", view_with_two_inputs, "step 1 (view) has 2 inputs"},
    {"gemm without its bias", gemm_without_its_bias, "not 2 and 1"},
    {"gemm with two outputs", gemm_with_two_outputs, "3 inputs and 2 outputs"},
    {"attention without lse output", attention_without_lse_output, "not 5 and 2"},
    {"attention without its mask", attention_without_its_mask, "not 4 and 2"},
    {"attention too many captures", attention_too_many_captures, "9 captures"},
    {"attention norm unknown", attention_norm_unknown, "unknown norm"},
    {"attention dtype unknown", attention_dtype_unknown, "unknown norm or dtype"},
    {"kernel without outputs", kernel_without_outputs, "has no output"},
    {"gather check out of range", gather_check_value_out_of_range, "gather check 0 reads"},
    {"topk with one output", topk_with_one_output, "not 1 and 2"},
    {"topk axis out of range", topk_axis_out_of_range, "axis 2 of a rank-2 input"},
    {"step input out of range", step_input_out_of_range, "step 2: input 4 is value 18"},
    {"step output out of range", step_output_out_of_range, "step 5: output 0 is value 1000"},
    {"step operands missing", step_operands_missing, "but no table"},
};

static void plan_validate_refuses_each_fault(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
    plan_fixture fixture;
    plan_fixture_init(&fixture);
    faults[i].apply(&fixture);
    attn_diag diag;
    attn_diag_init(&diag, attn_allocator_system());
    attn_status status = attn_plan_validate(&fixture.plan, &diag);
    if (status != ATTN_ERROR_INVALID_ARGUMENT)
      fail_msg("%s: validate returned %d", faults[i].name, (int)status);
    const char *message = attn_diag_last_error(&diag);
    if (!message || !strstr(message, faults[i].message))
      fail_msg("%s: message '%s' lacks '%s'", faults[i].name, message ? message : "(none)",
               faults[i].message);
    attn_diag_deinit(&diag);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(plan_names_step_kinds),
      cmocka_unit_test(plan_evaluates_dims),
      cmocka_unit_test(plan_eval_refuses_division_by_zero_and_negative_results),
      cmocka_unit_test(plan_eval_does_not_loop_on_an_unvalidated_plan),
      cmocka_unit_test(plan_eval_is_linear_in_shared_expressions),
      cmocka_unit_test(plan_validates_the_fixture),
      cmocka_unit_test(plan_validate_refuses_each_fault),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
