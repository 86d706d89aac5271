// A small plan with every step kind and symbolic dims, for the tests of runtime/exec and
// runtime/artifact. Its tables live in the fixture, so a test can break one field and check that
// validation or loading notices.
#ifndef ATTN_TESTS_UNIT_RUNTIME_PLAN_FIXTURE_H_
#define ATTN_TESTS_UNIT_RUNTIME_PLAN_FIXTURE_H_

#include "runtime/exec/plan.h"

enum {
  PLAN_FIXTURE_DIMS = 5,
  PLAN_FIXTURE_VALUES = 18,
  PLAN_FIXTURE_STEPS = 6,
  PLAN_FIXTURE_CONSTANTS = 3,
  PLAN_FIXTURE_FUNCTIONS = 3,
};

typedef struct plan_fixture {
  const char *symbols[2];
  attn_plan_dim dims[PLAN_FIXTURE_DIMS];
  attn_plan_value values[PLAN_FIXTURE_VALUES];
  int64_t buffers[2];
  attn_plan_binding inputs[2];
  attn_plan_binding outputs[2];
  attn_plan_constant constants[PLAN_FIXTURE_CONSTANTS];
  const char *functions[PLAN_FIXTURE_FUNCTIONS];
  uint32_t operands[64];
  attn_plan_gather_check gather_checks[1];
  attn_plan_step steps[PLAN_FIXTURE_STEPS];
  float weight[4 * 8]; // constant 0: f32 [4, 8]
  float bias[4];       // constant 1: f32 [4]
  int64_t table[3];    // constant 2: i64 [3]
  attn_plan plan;
} plan_fixture;

// Fills `fixture` with a valid plan (constants bound to its own data). Symbols B and T; dim
// expressions B, T, B * T, (B * T) / 2 and T + 4.
void plan_fixture_init(plan_fixture *fixture);

#endif // ATTN_TESTS_UNIT_RUNTIME_PLAN_FIXTURE_H_
