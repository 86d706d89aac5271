// The plan's dim evaluation and its validation: what lets the executor trust a plan it did not
// build, one read from an artifact in particular.
#include "runtime/exec/plan.h"

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

// Expression dims refer only to earlier expressions (attn_plan_validate checks it), so the
// recursion is bounded by dim_count; the bound is re-checked here because evaluation may be asked
// of a plan that was never validated, and must not loop on it.
static bool eval_dim(const attn_plan *plan, int64_t dim, const int64_t *symbols, uint32_t limit,
                     int64_t *out_value) {
  if (dim >= 0) {
    *out_value = dim;
    return true;
  }
  // -(1 + i) without overflow: dim >= INT64_MIN, so -(dim + 1) is representable.
  int64_t index = -(dim + 1);
  if ((uint64_t)index >= limit || !plan->dims)
    return false;
  const attn_plan_dim *expr = &plan->dims[index];
  if (expr->kind == ATTN_PLAN_DIM_SYMBOL) {
    if (expr->lhs < 0 || (uint64_t)expr->lhs >= plan->symbol_count || !symbols)
      return false;
    int64_t value = symbols[expr->lhs];
    if (value < 0)
      return false;
    *out_value = value;
    return true;
  }
  int64_t lhs, rhs, result;
  if (!eval_dim(plan, expr->lhs, symbols, (uint32_t)index, &lhs) ||
      !eval_dim(plan, expr->rhs, symbols, (uint32_t)index, &rhs))
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

bool attn_plan_dim_eval(const attn_plan *plan, int64_t dim, const int64_t *symbols,
                        int64_t *out_value) {
  return eval_dim(plan, dim, symbols, plan->dim_count, out_value);
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
    // Top-k's axis is normalised by the compiler; the routine indexes the input's dims with it.
    if (step->kind == ATTN_PLAN_STEP_TOPK &&
        step->u.topk.axis >= (int64_t)plan->values[step->inputs[0]].rank)
      return plan_fault(diag, "step %u (topk) has axis %lld of a rank-%u input", s,
                        (long long)step->u.topk.axis, plan->values[step->inputs[0]].rank);
  }
  return ATTN_OK;
}
