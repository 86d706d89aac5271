// The plan of plan_fixture.h: a GEMM with a bias, a view of its result, attention with a mask,
// a capture and lse, a generated kernel with a gather check, top-k and a host step.
#include "plan_fixture.h"

#include <string.h>

static attn_plan_value value(attn_dtype dtype, uint32_t rank, const int64_t *dims,
                             attn_plan_storage storage, uint32_t index) {
  attn_plan_value v;
  memset(&v, 0, sizeof(v));
  v.dtype = dtype;
  v.rank = rank;
  if (rank > 0)
    memcpy(v.dims, dims, rank * sizeof(int64_t));
  v.storage = storage;
  v.index = index;
  return v;
}

// Appends `count` operands to the fixture's pool and returns where they start.
static const uint32_t *operands(plan_fixture *fixture, uint32_t *used, const uint32_t *items,
                                uint32_t count) {
  uint32_t *at = &fixture->operands[*used];
  memcpy(at, items, count * sizeof(uint32_t));
  *used += count;
  return at;
}

static attn_plan_constant constant(const char *name, attn_dtype dtype, uint32_t rank,
                                   const int64_t *dims, const void *data) {
  attn_plan_constant c;
  memset(&c, 0, sizeof(c));
  c.name = name;
  c.dtype = dtype;
  c.rank = rank;
  memcpy(c.dims, dims, rank * sizeof(int64_t));
  c.data = data;
  return c;
}

void plan_fixture_init(plan_fixture *fixture) {
  memset(fixture, 0, sizeof(*fixture));
  fixture->symbols[0] = "B";
  fixture->symbols[1] = "T";
  // -1 = B, -2 = T, -3 = B * T, -4 = (B * T) / 2, -5 = T + 4.
  fixture->dims[0] = (attn_plan_dim){ATTN_PLAN_DIM_SYMBOL, 0, 0};
  fixture->dims[1] = (attn_plan_dim){ATTN_PLAN_DIM_SYMBOL, 1, 0};
  fixture->dims[2] = (attn_plan_dim){ATTN_PLAN_DIM_MUL, -1, -2};
  fixture->dims[3] = (attn_plan_dim){ATTN_PLAN_DIM_DIV, -3, 2};
  fixture->dims[4] = (attn_plan_dim){ATTN_PLAN_DIM_ADD, -2, 4};

  attn_plan_value *values = fixture->values;
  values[0] = value(ATTN_DTYPE_F32, 2, (int64_t[]){-3, 8}, ATTN_PLAN_STORAGE_INPUT, 0);
  values[1] = value(ATTN_DTYPE_F32, 2, (int64_t[]){4, 8}, ATTN_PLAN_STORAGE_CONSTANT, 0);
  values[2] = value(ATTN_DTYPE_F32, 1, (int64_t[]){4}, ATTN_PLAN_STORAGE_CONSTANT, 1);
  values[3] = value(ATTN_DTYPE_F32, 2, (int64_t[]){-3, 4}, ATTN_PLAN_STORAGE_BUFFER, 0);
  values[4] = value(ATTN_DTYPE_F32, 3, (int64_t[]){-1, -2, 4}, ATTN_PLAN_STORAGE_VIEW, 0);
  values[5] = value(ATTN_DTYPE_BF16, 4, (int64_t[]){-1, 2, -2, 8}, ATTN_PLAN_STORAGE_INPUT, 1);
  values[6] = value(ATTN_DTYPE_BF16, 4, (int64_t[]){-1, 2, -2, 8}, ATTN_PLAN_STORAGE_BUFFER, 1);
  values[7] = value(ATTN_DTYPE_BF16, 4, (int64_t[]){-1, 2, -2, 8}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[8] = value(ATTN_DTYPE_BOOL, 2, (int64_t[]){-2, -2}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[9] = value(ATTN_DTYPE_I64, 1, (int64_t[]){3}, ATTN_PLAN_STORAGE_CONSTANT, 2);
  values[10] = value(ATTN_DTYPE_BF16, 4, (int64_t[]){-1, 2, -2, 8}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[11] = value(ATTN_DTYPE_F32, 3, (int64_t[]){-1, 2, -2}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[12] = value(ATTN_DTYPE_I64, 1, (int64_t[]){-5}, ATTN_PLAN_STORAGE_IOTA, 0);
  values[12].iota_axis = 0;
  values[12].iota_start = -2;
  values[13] = value(ATTN_DTYPE_F32, 2, (int64_t[]){-4, 8}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[14] = value(ATTN_DTYPE_F32, 2, (int64_t[]){-3, 2}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[15] = value(ATTN_DTYPE_I64, 2, (int64_t[]){-3, 2}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[16] = value(ATTN_DTYPE_F32, 2, (int64_t[]){-3, 8}, ATTN_PLAN_STORAGE_TEMP, 0);
  values[17] = value(ATTN_DTYPE_BF16, 0, NULL, ATTN_PLAN_STORAGE_NONE, 0);

  fixture->buffers[0] = -3;
  fixture->buffers[1] = 4096;
  fixture->inputs[0] = (attn_plan_binding){"x", 0};
  fixture->inputs[1] = (attn_plan_binding){"q", 5};
  fixture->outputs[0] = (attn_plan_binding){"y", 4};
  fixture->outputs[1] = (attn_plan_binding){"indices", 15};

  for (int i = 0; i < 32; i++)
    fixture->weight[i] = 0.25f * (float)i - 3.0f;
  for (int i = 0; i < 4; i++)
    fixture->bias[i] = (float)i + 0.5f;
  fixture->table[0] = -7;
  fixture->table[1] = 1LL << 40;
  fixture->table[2] = 3;
  fixture->constants[0] =
      constant("layer.weight", ATTN_DTYPE_F32, 2, (int64_t[]){4, 8}, fixture->weight);
  fixture->constants[1] = constant("layer.bias", ATTN_DTYPE_F32, 1, (int64_t[]){4}, fixture->bias);
  fixture->constants[2] = constant("table", ATTN_DTYPE_I64, 1, (int64_t[]){3}, fixture->table);

  fixture->functions[0] = "attn_gemm_k0";
  fixture->functions[1] = "attn_attention_k1";
  fixture->functions[2] = "attn_kernel_k2";

  uint32_t used = 0;
  attn_plan_step *steps = fixture->steps;
  steps[0].kind = ATTN_PLAN_STEP_GEMM;
  steps[0].function = 0;
  steps[0].kernel = 0;
  steps[0].input_count = 3;
  steps[0].inputs = operands(fixture, &used, (uint32_t[]){0, 1, 2}, 3);
  steps[0].output_count = 1;
  steps[0].outputs = operands(fixture, &used, (uint32_t[]){3}, 1);
  steps[0].u.gemm = (attn_plan_gemm){false, true, true, false};

  steps[1].kind = ATTN_PLAN_STEP_VIEW;
  steps[1].kernel = 1;
  steps[1].input_count = 1;
  steps[1].inputs = operands(fixture, &used, (uint32_t[]){3}, 1);
  steps[1].output_count = 1;
  steps[1].outputs = operands(fixture, &used, (uint32_t[]){4}, 1);

  steps[2].kind = ATTN_PLAN_STEP_ATTENTION;
  steps[2].function = 1;
  steps[2].kernel = 2;
  steps[2].input_count = 5;
  steps[2].inputs = operands(fixture, &used, (uint32_t[]){5, 6, 7, 8, 9}, 5);
  steps[2].output_count = 2;
  steps[2].outputs = operands(fixture, &used, (uint32_t[]){10, 11}, 2);
  attn_plan_attention *attention = &steps[2].u.attention;
  attention->spec.value_dim = 8;
  attention->spec.norm = ATTN_CPU_ATTENTION_NORM_SIGMOID;
  attention->spec.lse = true;
  attention->spec.dtype = ATTN_CPU_ATTENTION_BF16;
  attention->spec.vector_width = 16;
  attention->spec.capture_count = 1;
  attention->spec.capture_ranks[0] = 1;
  attention->has_mask = true;
  attention->window = 16;
  attention->sinks = 2;
  attention->scale = 0.125;
  attention->sigmoid_bias = -1.5;

  steps[3].kind = ATTN_PLAN_STEP_KERNEL;
  steps[3].function = 2;
  steps[3].kernel = 3;
  steps[3].input_count = 2;
  steps[3].inputs = operands(fixture, &used, (uint32_t[]){0, 12}, 2);
  steps[3].output_count = 1;
  steps[3].outputs = operands(fixture, &used, (uint32_t[]){13}, 1);
  fixture->gather_checks[0] = (attn_plan_gather_check){12, -5, 1};
  steps[3].u.kernel = (attn_plan_kernel){1, 1, fixture->gather_checks};

  steps[4].kind = ATTN_PLAN_STEP_TOPK;
  steps[4].kernel = 4;
  steps[4].input_count = 1;
  steps[4].inputs = operands(fixture, &used, (uint32_t[]){3}, 1);
  steps[4].output_count = 2;
  steps[4].outputs = operands(fixture, &used, (uint32_t[]){14, 15}, 2);
  steps[4].u.topk = (attn_plan_topk){1, 2, true};

  steps[5].kind = ATTN_PLAN_STEP_HOST;
  steps[5].kernel = 5;
  steps[5].input_count = 1;
  steps[5].inputs = operands(fixture, &used, (uint32_t[]){0}, 1);
  steps[5].output_count = 1;
  steps[5].outputs = operands(fixture, &used, (uint32_t[]){16}, 1);

  attn_plan *plan = &fixture->plan;
  plan->symbol_count = 2;
  plan->dim_count = PLAN_FIXTURE_DIMS;
  plan->value_count = PLAN_FIXTURE_VALUES;
  plan->buffer_count = 2;
  plan->input_count = 2;
  plan->output_count = 2;
  plan->constant_count = PLAN_FIXTURE_CONSTANTS;
  plan->function_count = PLAN_FIXTURE_FUNCTIONS;
  plan->step_count = PLAN_FIXTURE_STEPS;
  plan->symbols = fixture->symbols;
  plan->dims = fixture->dims;
  plan->values = fixture->values;
  plan->buffers = fixture->buffers;
  plan->inputs = fixture->inputs;
  plan->outputs = fixture->outputs;
  plan->constants = fixture->constants;
  plan->functions = fixture->functions;
  plan->steps = fixture->steps;
}
