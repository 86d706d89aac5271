// The plan's dim evaluation and its validation: what lets the executor trust a plan it did not
// build, one read from an artifact in particular.
#include "runtime/exec/plan.h"

#include <stdlib.h>

const char *attn_plan_step_kind_name(attn_plan_step_kind kind) {
  switch (kind) {
  case ATTN_PLAN_STEP_VIEW:
    return "view";
  case ATTN_PLAN_STEP_GEMM:
    return "gemm";
  case ATTN_PLAN_STEP_ATTENTION:
    return "attention";
  case ATTN_PLAN_STEP_KERNEL:
    return "kernel";
  case ATTN_PLAN_STEP_TOPK:
    return "topk";
  case ATTN_PLAN_STEP_HOST:
    return "host";
  case ATTN_PLAN_STEP_KIND_COUNT:
    break;
  }
  return "unknown";
}

// The value of operand `dim` of expression `index`: a constant, or an earlier expression's value
// in `values` (valid where `known` says so). Only earlier expressions count, so a plan that was
// never validated cannot make evaluation loop.
static bool operand_value(int64_t dim, uint32_t index, const int64_t *values, const bool *known,
                          int64_t *out_value) {
  if (dim >= 0) {
    *out_value = dim;
    return true;
  }
  // -(1 + i) without overflow: dim >= INT64_MIN, so -(dim + 1) is representable.
  int64_t operand = -(dim + 1);
  if (operand >= (int64_t)index || !known[operand])
    return false;
  *out_value = values[operand];
  return true;
}

// Expression `index` from the values of the earlier ones.
static bool eval_expression(const attn_plan *plan, uint32_t index, const int64_t *symbols,
                            const int64_t *values, const bool *known, int64_t *out_value) {
  const attn_plan_dim *expr = &plan->dims[index];
  if (expr->kind == ATTN_PLAN_DIM_SYMBOL) {
    if (expr->lhs < 0 || (uint64_t)expr->lhs >= plan->symbol_count || !symbols ||
        symbols[expr->lhs] < 0)
      return false;
    *out_value = symbols[expr->lhs];
    return true;
  }
  int64_t lhs, rhs, result;
  if (!operand_value(expr->lhs, index, values, known, &lhs) ||
      !operand_value(expr->rhs, index, values, known, &rhs))
    return false;
  switch (expr->kind) {
  case ATTN_PLAN_DIM_ADD:
    if (__builtin_add_overflow(lhs, rhs, &result))
      return false;
    break;
  case ATTN_PLAN_DIM_SUB:
    if (__builtin_sub_overflow(lhs, rhs, &result))
      return false;
    break;
  case ATTN_PLAN_DIM_MUL:
    if (__builtin_mul_overflow(lhs, rhs, &result))
      return false;
    break;
  case ATTN_PLAN_DIM_DIV:
    // Operands are >= 0 (constants and bound symbols are, and so is every result that passes
    // the check below), so INT64_MIN / -1 cannot happen.
    if (rhs == 0 || lhs % rhs != 0)
      return false;
    result = lhs / rhs;
    break;
  default:
    return false;
  }
  // A dim is a size: a negative difference is a malformed plan, not a value.
  if (result < 0)
    return false;
  *out_value = result;
  return true;
}

void attn_plan_dims_eval(const attn_plan *plan, const int64_t *symbols, int64_t *values,
                         bool *known) {
  for (uint32_t i = 0; i < plan->dim_count && plan->dims; i++)
    known[i] = eval_expression(plan, i, symbols, values, known, &values[i]);
}

bool attn_plan_dim_value(int64_t dim, uint32_t dim_count, const int64_t *values, const bool *known,
                         int64_t *out_value) {
  return operand_value(dim, dim_count, values, known, out_value);
}

bool attn_plan_dim_eval(const attn_plan *plan, int64_t dim, const int64_t *symbols,
                        int64_t *out_value) {
  if (dim >= 0) {
    *out_value = dim;
    return true;
  }
  // Every expression up to this one, in one pass: expressions share operands, so evaluating
  // them as a tree could take time exponential in their number.
  int64_t index = -(dim + 1);
  if (index >= (int64_t)plan->dim_count || !plan->dims)
    return false;
  int64_t *values = malloc(((size_t)index + 1) * (sizeof(int64_t) + sizeof(bool)));
  if (!values)
    return false;
  bool *known = (bool *)(values + index + 1);
  bool ok = true;
  for (uint32_t i = 0; i <= (uint32_t)index; i++)
    known[i] = eval_expression(plan, i, symbols, values, known, &values[i]);
  ok = known[index];
  *out_value = ok ? values[index] : 0;
  free(values);
  return ok;
}

// ---- validation ----

#define PLAN_LOC ((attn_loc){"plan", 0, 0})

static attn_status plan_fault(attn_diag *diag, const char *format, ...) ATTN_PRINTF(2, 3);

static attn_status plan_fault(attn_diag *diag, const char *format, ...) {
  va_list args;
  va_start(args, format);
  attn_status status = attn_diag_verror(diag, PLAN_LOC, ATTN_ERROR_INVALID_ARGUMENT, format, args);
  va_end(args);
  return status;
}

// A dim used outside `dims` may refer to any expression; one inside expression `limit` only to
// those before it.
static bool dim_ok(int64_t dim, uint32_t limit) {
  return dim >= 0 || (uint64_t)(-(dim + 1)) < limit;
}

static attn_status validate_dims(const attn_plan *plan, attn_diag *diag) {
  if (plan->dim_count > 0 && !plan->dims)
    return plan_fault(diag, "%u dim expressions but no table", plan->dim_count);
  for (uint32_t i = 0; i < plan->dim_count; i++) {
    const attn_plan_dim *dim = &plan->dims[i];
    if ((unsigned)dim->kind >= ATTN_PLAN_DIM_KIND_COUNT)
      return plan_fault(diag, "dim expression %u has unknown kind %d", i, (int)dim->kind);
    if (dim->kind == ATTN_PLAN_DIM_SYMBOL) {
      if (dim->lhs < 0 || (uint64_t)dim->lhs >= plan->symbol_count)
        return plan_fault(diag, "dim expression %u names symbol %lld of %u", i, (long long)dim->lhs,
                          plan->symbol_count);
      continue;
    }
    if (!dim_ok(dim->lhs, i) || !dim_ok(dim->rhs, i))
      return plan_fault(diag, "dim expression %u refers to a dim expression that is not before it",
                        i);
  }
  for (uint32_t i = 0; i < plan->symbol_count; i++)
    if (!plan->symbols || !plan->symbols[i])
      return plan_fault(diag, "symbol %u has no name", i);
  return ATTN_OK;
}

static attn_status validate_values(const attn_plan *plan, attn_diag *diag) {
  if (plan->value_count > 0 && !plan->values)
    return plan_fault(diag, "%u values but no table", plan->value_count);
  for (uint32_t i = 0; i < plan->value_count; i++) {
    const attn_plan_value *value = &plan->values[i];
    if ((unsigned)value->dtype >= ATTN_DTYPE_COUNT)
      return plan_fault(diag, "value %u has unknown dtype %d", i, (int)value->dtype);
    if (value->rank > ATTN_MAX_RANK)
      return plan_fault(diag, "value %u has rank %u, more than %d", i, value->rank, ATTN_MAX_RANK);
    for (uint32_t d = 0; d < value->rank; d++)
      if (!dim_ok(value->dims[d], plan->dim_count))
        return plan_fault(diag, "value %u: dim %u refers to a missing dim expression", i, d);
    uint32_t limit = 0;
    const char *what = NULL;
    switch (value->storage) {
    case ATTN_PLAN_STORAGE_INPUT:
      limit = plan->input_count, what = "input";
      break;
    case ATTN_PLAN_STORAGE_CONSTANT:
      limit = plan->constant_count, what = "constant";
      break;
    case ATTN_PLAN_STORAGE_BUFFER:
      limit = plan->buffer_count, what = "buffer";
      break;
    case ATTN_PLAN_STORAGE_IOTA:
      if (value->iota_axis >= value->rank)
        return plan_fault(diag, "value %u: iota axis %u of rank %u", i, value->iota_axis,
                          value->rank);
      if (!dim_ok(value->iota_start, plan->dim_count))
        return plan_fault(diag, "value %u: iota start refers to a missing dim expression", i);
      break;
    case ATTN_PLAN_STORAGE_NONE:
    case ATTN_PLAN_STORAGE_TEMP:
    case ATTN_PLAN_STORAGE_VIEW:
      break;
    default:
      return plan_fault(diag, "value %u has unknown storage %d", i, (int)value->storage);
    }
    if (what && value->index >= limit)
      return plan_fault(diag, "value %u is %s %u of %u", i, what, value->index, limit);
    // A constant's value has the constant's type: kernels size their reads by the value's.
    if (value->storage == ATTN_PLAN_STORAGE_CONSTANT && plan->constants) {
      const attn_plan_constant *constant = &plan->constants[value->index];
      bool same = constant->dtype == value->dtype && constant->rank == value->rank;
      for (uint32_t d = 0; same && d < value->rank; d++)
        same = constant->dims[d] == value->dims[d];
      if (!same)
        return plan_fault(diag, "value %u is constant %u, of another type", i, value->index);
    }
  }
  return ATTN_OK;
}

static attn_status validate_bindings(const attn_plan_binding *bindings, uint32_t count,
                                     const char *what, uint32_t value_count, attn_diag *diag) {
  if (count > 0 && !bindings)
    return plan_fault(diag, "%u %ss but no table", count, what);
  for (uint32_t i = 0; i < count; i++) {
    if (!bindings[i].name)
      return plan_fault(diag, "%s %u has no name", what, i);
    if (bindings[i].value >= value_count)
      return plan_fault(diag, "%s '%s' is value %u of %u", what, bindings[i].name,
                        bindings[i].value, value_count);
  }
  return ATTN_OK;
}

static attn_status validate_operands(const attn_plan *plan, uint32_t s, const uint32_t *operands,
                                     uint32_t count, const char *what, attn_diag *diag) {
  if (count > 0 && !operands)
    return plan_fault(diag, "step %u has %u %ss but no table", s, count, what);
  for (uint32_t i = 0; i < count; i++)
    if (operands[i] >= plan->value_count)
      return plan_fault(diag, "step %u: %s %u is value %u of %u", s, what, i, operands[i],
                        plan->value_count);
  return ATTN_OK;
}

// The operand counts each kind needs, and its parameters' ranges.
static attn_status validate_step_shape(const attn_plan *plan, uint32_t s, attn_diag *diag) {
  const attn_plan_step *step = &plan->steps[s];
  const char *name = attn_plan_step_kind_name(step->kind);
  uint32_t in = step->input_count, out = step->output_count;
  switch (step->kind) {
  case ATTN_PLAN_STEP_VIEW:
    if (in != 1 || out != 1)
      return plan_fault(diag, "step %u (%s) has %u inputs and %u outputs, not 1 and 1", s, name, in,
                        out);
    break;
  case ATTN_PLAN_STEP_GEMM: {
    const attn_plan_gemm *gemm = &step->u.gemm;
    uint32_t want = 2 + (gemm->bias ? 1u : 0u) + (gemm->residual ? 1u : 0u);
    if (in != want || out != 1)
      return plan_fault(diag, "step %u (%s) has %u inputs and %u outputs, not %u and 1", s, name,
                        in, out, want);
    break;
  }
  case ATTN_PLAN_STEP_ATTENTION: {
    const attn_plan_attention *attention = &step->u.attention;
    const attn_cpu_attention_launch_spec *spec = &attention->spec;
    if ((unsigned)spec->norm >= ATTN_CPU_ATTENTION_NORM_COUNT ||
        (unsigned)spec->dtype >= ATTN_CPU_ATTENTION_DTYPE_COUNT)
      return plan_fault(diag, "step %u (%s) has an unknown norm or dtype", s, name);
    if (spec->capture_count > ATTN_CPU_ATTENTION_MAX_CAPTURES)
      return plan_fault(diag, "step %u (%s) has %u captures, more than %d", s, name,
                        spec->capture_count, ATTN_CPU_ATTENTION_MAX_CAPTURES);
    for (uint32_t c = 0; c < spec->capture_count; c++)
      if (spec->capture_ranks[c] > ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK)
        return plan_fault(diag, "step %u (%s): capture %u has rank %u, more than %d", s, name, c,
                          spec->capture_ranks[c], ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK);
    if (spec->value_dim < 0)
      return plan_fault(diag, "step %u (%s) has value dim %lld", s, name,
                        (long long)spec->value_dim);
    uint32_t want_in = 3 + (attention->has_mask ? 1u : 0u) + spec->capture_count;
    uint32_t want_out = spec->lse ? 2u : 1u;
    if (in != want_in || out != want_out)
      return plan_fault(diag, "step %u (%s) has %u inputs and %u outputs, not %u and %u", s, name,
                        in, out, want_in, want_out);
    break;
  }
  case ATTN_PLAN_STEP_KERNEL: {
    const attn_plan_kernel *kernel = &step->u.kernel;
    if (out < 1)
      return plan_fault(diag, "step %u (%s) has no output", s, name);
    if (kernel->gather_check_count > 0 && !kernel->gather_checks)
      return plan_fault(diag, "step %u (%s) has gather checks but no table", s, name);
    for (uint32_t g = 0; g < kernel->gather_check_count; g++) {
      const attn_plan_gather_check *check = &kernel->gather_checks[g];
      if (check->indices >= plan->value_count)
        return plan_fault(diag, "step %u (%s): gather check %u reads value %u of %u", s, name, g,
                          check->indices, plan->value_count);
      if (!dim_ok(check->size, plan->dim_count))
        return plan_fault(diag, "step %u (%s): gather check %u refers to a missing dim expression",
                          s, name, g);
    }
    break;
  }
  case ATTN_PLAN_STEP_TOPK:
    if (in != 1 || out != 2)
      return plan_fault(diag, "step %u (%s) has %u inputs and %u outputs, not 1 and 2", s, name, in,
                        out);
    if (step->u.topk.axis < 0 || step->u.topk.k < 0)
      return plan_fault(diag, "step %u (%s) has axis %lld and k %lld", s, name,
                        (long long)step->u.topk.axis, (long long)step->u.topk.k);
    break;
  case ATTN_PLAN_STEP_HOST:
    break;
  default:
    return plan_fault(diag, "step %u has unknown kind %d", s, (int)step->kind);
  }
  if ((step->kind == ATTN_PLAN_STEP_GEMM || step->kind == ATTN_PLAN_STEP_ATTENTION ||
       step->kind == ATTN_PLAN_STEP_KERNEL) &&
      step->function >= plan->function_count)
    return plan_fault(diag, "step %u (%s) calls function %u of %u", s, name, step->function,
                      plan->function_count);
  return ATTN_OK;
}

// The types a step's operands must have for its routine to index them safely: what the compiler
// lowers only when they hold, checked again for a plan read from a file.
static attn_status validate_step_types(const attn_plan *plan, uint32_t s, attn_diag *diag) {
  const attn_plan_step *step = &plan->steps[s];
  const char *name = attn_plan_step_kind_name(step->kind);
  const attn_plan_value *in0 = step->input_count ? &plan->values[step->inputs[0]] : NULL;
  const attn_plan_value *out0 = step->output_count ? &plan->values[step->outputs[0]] : NULL;
  switch (step->kind) {
  case ATTN_PLAN_STEP_GEMM:
    // a [.., m, k] and b [.., k, n] broadcast against c [.., m, n]; bias and residual of c's
    // row length and shape; all f32.
    if (out0->rank < 2)
      return plan_fault(diag, "step %u (%s) writes a rank-%u result", s, name, out0->rank);
    for (uint32_t i = 0; i < step->input_count; i++) {
      const attn_plan_value *operand = &plan->values[step->inputs[i]];
      bool is_matrix = i < 2;
      if (operand->dtype != ATTN_DTYPE_F32 || (is_matrix && operand->rank < 2) ||
          operand->rank > out0->rank)
        return plan_fault(diag, "step %u (%s): input %u is not an f32 operand of rank 2..%u", s,
                          name, i, out0->rank);
    }
    if (out0->dtype != ATTN_DTYPE_F32)
      return plan_fault(diag, "step %u (%s) writes %s, not f32", s, name,
                        attn_dtype_name(out0->dtype));
    break;
  case ATTN_PLAN_STEP_ATTENTION: {
    const attn_plan_attention *attention = &step->u.attention;
    attn_dtype dtype =
        attention->spec.dtype == ATTN_CPU_ATTENTION_BF16 ? ATTN_DTYPE_BF16 : ATTN_DTYPE_F32;
    for (uint32_t i = 0; i < 3; i++)
      if (plan->values[step->inputs[i]].rank != 4 || plan->values[step->inputs[i]].dtype != dtype)
        return plan_fault(diag, "step %u (%s): input %u is not %s of rank 4", s, name, i,
                          attn_dtype_name(dtype));
    if (out0->rank != 4 || out0->dtype != dtype)
      return plan_fault(diag, "step %u (%s) writes no %s of rank 4", s, name,
                        attn_dtype_name(dtype));
    if (attention->spec.lse && (plan->values[step->outputs[1]].dtype != ATTN_DTYPE_F32 ||
                                plan->values[step->outputs[1]].rank != 3))
      return plan_fault(diag, "step %u (%s): its log-sum-exp is not f32 of rank 3", s, name);
    if (attention->has_mask && plan->values[step->inputs[3]].rank > 4)
      return plan_fault(diag, "step %u (%s) has a mask of rank %u", s, name,
                        plan->values[step->inputs[3]].rank);
    uint32_t base = attention->has_mask ? 4 : 3;
    for (uint32_t c = 0; c < attention->spec.capture_count; c++)
      if (plan->values[step->inputs[base + c]].rank != attention->spec.capture_ranks[c])
        return plan_fault(diag, "step %u (%s): capture %u is not of rank %u", s, name, c,
                          attention->spec.capture_ranks[c]);
    break;
  }
  case ATTN_PLAN_STEP_TOPK:
    // Top-k's axis is normalised by the compiler; the routine indexes the input's dims with it.
    if (step->u.topk.axis >= (int64_t)in0->rank)
      return plan_fault(diag, "step %u (topk) has axis %lld of a rank-%u input", s,
                        (long long)step->u.topk.axis, in0->rank);
    if (in0->dtype != ATTN_DTYPE_F32 || out0->dtype != ATTN_DTYPE_F32 ||
        plan->values[step->outputs[1]].dtype != ATTN_DTYPE_I64)
      return plan_fault(diag, "step %u (%s) does not read f32 and write f32 and i64", s, name);
    break;
  case ATTN_PLAN_STEP_VIEW:
    if (in0->dtype != out0->dtype)
      return plan_fault(diag, "step %u (%s) changes the dtype", s, name);
    break;
  case ATTN_PLAN_STEP_KERNEL:
  case ATTN_PLAN_STEP_HOST:
  case ATTN_PLAN_STEP_KIND_COUNT:
    break;
  }
  return ATTN_OK;
}

attn_status attn_plan_validate(const attn_plan *plan, attn_diag *diag) {
  ATTN_RETURN_IF_ERROR(validate_dims(plan, diag));
  ATTN_RETURN_IF_ERROR(validate_values(plan, diag));
  if (plan->buffer_count > 0 && !plan->buffers)
    return plan_fault(diag, "%u buffers but no table", plan->buffer_count);
  for (uint32_t i = 0; i < plan->buffer_count; i++)
    if (!dim_ok(plan->buffers[i], plan->dim_count))
      return plan_fault(diag, "buffer %u's size refers to a missing dim expression", i);
  ATTN_RETURN_IF_ERROR(
      validate_bindings(plan->inputs, plan->input_count, "input", plan->value_count, diag));
  ATTN_RETURN_IF_ERROR(
      validate_bindings(plan->outputs, plan->output_count, "output", plan->value_count, diag));
  if (plan->constant_count > 0 && !plan->constants)
    return plan_fault(diag, "%u constants but no table", plan->constant_count);
  for (uint32_t i = 0; i < plan->constant_count; i++) {
    const attn_plan_constant *constant = &plan->constants[i];
    if (!constant->name)
      return plan_fault(diag, "constant %u has no name", i);
    if ((unsigned)constant->dtype >= ATTN_DTYPE_COUNT || constant->rank > ATTN_MAX_RANK)
      return plan_fault(diag, "constant '%s' has an unknown dtype or a rank above %d",
                        constant->name, ATTN_MAX_RANK);
    for (uint32_t d = 0; d < constant->rank; d++)
      if (constant->dims[d] < 0)
        return plan_fault(diag, "constant '%s' has negative dim %u", constant->name, d);
  }
  if (plan->function_count > 0 && !plan->functions)
    return plan_fault(diag, "%u functions but no table", plan->function_count);
  for (uint32_t i = 0; i < plan->function_count; i++)
    if (!plan->functions[i])
      return plan_fault(diag, "function %u has no name", i);
  if (plan->step_count > 0 && !plan->steps)
    return plan_fault(diag, "%u steps but no table", plan->step_count);
  for (uint32_t s = 0; s < plan->step_count; s++) {
    const attn_plan_step *step = &plan->steps[s];
    ATTN_RETURN_IF_ERROR(validate_step_shape(plan, s, diag));
    ATTN_RETURN_IF_ERROR(
        validate_operands(plan, s, step->inputs, step->input_count, "input", diag));
    ATTN_RETURN_IF_ERROR(
        validate_operands(plan, s, step->outputs, step->output_count, "output", diag));
    ATTN_RETURN_IF_ERROR(validate_step_types(plan, s, diag));
  }
  return ATTN_OK;
}
