// Shape inference: one rule per op (named in ops.def), computing output types from input
// types and attributes, with symbolic dims. Rules reject what the op cannot mean, with a
// message that names the op and the types involved.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

// Every rule has this signature; ops.def names them.
#define ATTN_OP(e, name, min_in, max_in, out, attrs, flags, infer, eval)                           \
  attn_status infer(attn_infer_ctx *ctx);
#include "ir/ops.def"
#undef ATTN_OP

static attn_status (*const infer_fns[ATTN_OP_COUNT])(attn_infer_ctx *) = {
#define ATTN_OP(e, name, min_in, max_in, out, attrs, flags, infer, eval) [ATTN_OP_##e] = infer,
#include "ir/ops.def"
#undef ATTN_OP
};

static const char *op_name(const attn_infer_ctx *ctx) {
  return attn_op_get_info(ctx->op)->name;
}

static attn_status fail(attn_infer_ctx *ctx, const char *format, ...) ATTN_PRINTF(2, 3);
static attn_status fail(attn_infer_ctx *ctx, const char *format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  return attn_graph_error(ctx->graph, ctx->loc, ATTN_ERROR_INVALID_GRAPH, "%s: %s", op_name(ctx),
                          message);
}

// A formatted type, in a rotating set of buffers so one message can show several.
static const char *type_text(const attn_infer_ctx *ctx, const attn_type *type) {
  static _Thread_local char buffers[4][160];
  static _Thread_local int next;
  char *buffer = buffers[next++ & 3];
  attn_graph_type_format(ctx->graph, type, buffer, sizeof(buffers[0]));
  return buffer;
}

static const char *dim_text(const attn_infer_ctx *ctx, attn_dim dim) {
  static _Thread_local char buffers[4][96];
  static _Thread_local int next;
  char *buffer = buffers[next++ & 3];
  attn_graph_dim_format(ctx->graph, dim, buffer, sizeof(buffers[0]));
  return buffer;
}

attn_status attn_infer_types(attn_graph *graph, attn_op op, const void *attrs,
                             const attn_type *inputs, uint32_t input_count, attn_loc loc,
                             attn_type *out_types, uint32_t output_count) {
  if (!attrs)
    attrs = attn_attrs_get_info(attn_op_get_info(op)->attrs_kind)->defaults;
  attn_infer_ctx ctx = {graph, op, attrs, inputs, input_count, out_types, output_count, loc};
  for (uint32_t i = 0; i < input_count; i++)
    if ((unsigned)inputs[i].dtype >= ATTN_DTYPE_COUNT || inputs[i].rank > ATTN_MAX_RANK)
      return fail(&ctx, "input %u has an invalid type", i);
  memset(out_types, 0, output_count * sizeof(*out_types));
  return infer_fns[op](&ctx);
}

// ---- helpers -------------------------------------------------------------------------------

static attn_status normalize_axis(attn_infer_ctx *ctx, int64_t axis, uint32_t rank,
                                  int64_t *out_axis) {
  *out_axis = 0; // set on failure too, which -O3's flow analysis cannot see through fail()
  int64_t a = axis < 0 ? axis + (int64_t)rank : axis;
  if (a < 0 || a >= (int64_t)rank)
    return fail(ctx, "axis %lld is out of range for rank %u", (long long)axis, rank);
  *out_axis = a;
  return ATTN_OK;
}

static attn_status require_float(attn_infer_ctx *ctx, const attn_type *type, const char *what) {
  if (!attn_dtype_is_float(type->dtype))
    return fail(ctx, "%s must be a float tensor, got %s", what, type_text(ctx, type));
  return ATTN_OK;
}

static attn_status require_constant_dims(attn_infer_ctx *ctx, const attn_type *type) {
  for (uint32_t i = 0; i < type->rank; i++)
    if (!attn_dim_is_constant(type->dims[i]))
      return fail(ctx, "type %s must have constant dims", type_text(ctx, type));
  if ((unsigned)type->dtype >= ATTN_DTYPE_COUNT || type->rank > ATTN_MAX_RANK)
    return fail(ctx, "invalid type");
  return ATTN_OK;
}

// NumPy broadcasting of `a` and `b` into `out` (dtype taken from `a`).
static attn_status broadcast(attn_infer_ctx *ctx, const attn_type *a, const attn_type *b,
                             attn_type *out) {
  uint32_t rank = a->rank > b->rank ? a->rank : b->rank;
  attn_type result = {a->dtype, rank, {0}};
  for (uint32_t i = 0; i < rank; i++) {
    attn_dim da = i < rank - a->rank ? 1 : a->dims[i - (rank - a->rank)];
    attn_dim db = i < rank - b->rank ? 1 : b->dims[i - (rank - b->rank)];
    if (da == db || db == 1)
      result.dims[i] = da;
    else if (da == 1)
      result.dims[i] = db;
    else
      return fail(ctx, "cannot broadcast %s with %s", type_text(ctx, a), type_text(ctx, b));
  }
  *out = result;
  return ATTN_OK;
}

static attn_status same_dtype(attn_infer_ctx *ctx, const attn_type *a, const attn_type *b) {
  if (a->dtype != b->dtype)
    return fail(ctx, "operand dtypes differ: %s and %s", type_text(ctx, a), type_text(ctx, b));
  return ATTN_OK;
}

static attn_status dim_op(attn_infer_ctx *ctx, attn_dim_kind kind, attn_dim a, attn_dim b,
                          attn_dim *out) {
  attn_status status = attn_graph_dim_binary(ctx->graph, kind, a, b, out);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return status; // already reported; not the model's fault
  if (status != ATTN_OK)
    return fail(ctx, "invalid dim arithmetic on %s and %s", dim_text(ctx, a), dim_text(ctx, b));
  return ATTN_OK;
}

// ---- leaves --------------------------------------------------------------------------------

attn_status attn_infer_weight(attn_infer_ctx *ctx) {
  const attn_weight_attrs *attrs = ctx->attrs;
  if (attrs->name_count == 0 || !attrs->names)
    return fail(ctx, "a weight needs a name");
  for (uint32_t i = 0; i < attrs->name_count; i++)
    if (!attrs->names[i] || !attrs->names[i][0])
      return fail(ctx, "weight name %u is empty", i);
  ATTN_RETURN_IF_ERROR(require_constant_dims(ctx, &attrs->type));
  ctx->outputs[0] = attrs->type;
  return ATTN_OK;
}

attn_status attn_infer_constant(attn_infer_ctx *ctx) {
  const attn_constant_attrs *attrs = ctx->attrs;
  ATTN_RETURN_IF_ERROR(require_constant_dims(ctx, &attrs->type));
  if (!attrs->data)
    return fail(ctx, "a constant needs data");
  ctx->outputs[0] = attrs->type;
  return ATTN_OK;
}

attn_status attn_infer_iota(attn_infer_ctx *ctx) {
  const attn_iota_attrs *attrs = ctx->attrs;
  if ((unsigned)attrs->type.dtype >= ATTN_DTYPE_COUNT || attrs->type.dtype == ATTN_DTYPE_BOOL)
    return fail(ctx, "iota needs a numeric dtype");
  if (attrs->type.rank == 0 || attrs->type.rank > ATTN_MAX_RANK)
    return fail(ctx, "iota needs a rank between 1 and %d", ATTN_MAX_RANK);
  int64_t axis;
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, attrs->type.rank, &axis));
  if (attrs->start == ATTN_DIM_INFER)
    return fail(ctx, "invalid start");
  ctx->outputs[0] = attrs->type;
  return ATTN_OK;
}

// ---- elementwise ---------------------------------------------------------------------------

attn_status attn_infer_unary(attn_infer_ctx *ctx) {
  if (ctx->inputs[0].dtype == ATTN_DTYPE_BOOL)
    return fail(ctx, "does not take bool tensors (%s)", type_text(ctx, &ctx->inputs[0]));
  ctx->outputs[0] = ctx->inputs[0];
  return ATTN_OK;
}

attn_status attn_infer_unary_float(attn_infer_ctx *ctx) {
  ATTN_RETURN_IF_ERROR(require_float(ctx, &ctx->inputs[0], "the input"));
  ctx->outputs[0] = ctx->inputs[0];
  return ATTN_OK;
}

attn_status attn_infer_cast(attn_infer_ctx *ctx) {
  const attn_cast_attrs *attrs = ctx->attrs;
  if ((unsigned)attrs->dtype >= ATTN_DTYPE_COUNT)
    return fail(ctx, "invalid dtype");
  ctx->outputs[0] = ctx->inputs[0];
  ctx->outputs[0].dtype = attrs->dtype;
  return ATTN_OK;
}

attn_status attn_infer_logical(attn_infer_ctx *ctx) {
  for (uint32_t i = 0; i < ctx->input_count; i++)
    if (ctx->inputs[i].dtype != ATTN_DTYPE_BOOL)
      return fail(ctx, "needs bool tensors, got %s", type_text(ctx, &ctx->inputs[i]));
  if (ctx->input_count == 1) {
    ctx->outputs[0] = ctx->inputs[0];
    return ATTN_OK;
  }
  return broadcast(ctx, &ctx->inputs[0], &ctx->inputs[1], &ctx->outputs[0]);
}

attn_status attn_infer_binary(attn_infer_ctx *ctx) {
  const attn_type *a = &ctx->inputs[0], *b = &ctx->inputs[1];
  ATTN_RETURN_IF_ERROR(same_dtype(ctx, a, b));
  if (a->dtype == ATTN_DTYPE_BOOL)
    return fail(ctx, "does not take bool tensors (%s)", type_text(ctx, a));
  return broadcast(ctx, a, b, &ctx->outputs[0]);
}

attn_status attn_infer_compare(attn_infer_ctx *ctx) {
  ATTN_RETURN_IF_ERROR(same_dtype(ctx, &ctx->inputs[0], &ctx->inputs[1]));
  ATTN_RETURN_IF_ERROR(broadcast(ctx, &ctx->inputs[0], &ctx->inputs[1], &ctx->outputs[0]));
  ctx->outputs[0].dtype = ATTN_DTYPE_BOOL;
  return ATTN_OK;
}

attn_status attn_infer_where(attn_infer_ctx *ctx) {
  const attn_type *cond = &ctx->inputs[0], *a = &ctx->inputs[1], *b = &ctx->inputs[2];
  if (cond->dtype != ATTN_DTYPE_BOOL)
    return fail(ctx, "the condition must be bool, got %s", type_text(ctx, cond));
  ATTN_RETURN_IF_ERROR(same_dtype(ctx, a, b));
  attn_type ab;
  ATTN_RETURN_IF_ERROR(broadcast(ctx, a, b, &ab));
  ATTN_RETURN_IF_ERROR(broadcast(ctx, &ab, cond, &ctx->outputs[0]));
  ctx->outputs[0].dtype = a->dtype;
  return ATTN_OK;
}

// ---- matmul, normalisation, reductions -----------------------------------------------------

attn_status attn_infer_matmul(attn_infer_ctx *ctx) {
  const attn_matmul_attrs *attrs = ctx->attrs;
  const attn_type *a = &ctx->inputs[0], *b = &ctx->inputs[1];
  ATTN_RETURN_IF_ERROR(same_dtype(ctx, a, b));
  if (a->dtype == ATTN_DTYPE_BOOL)
    return fail(ctx, "does not take bool tensors");
  if (a->rank < 2 || b->rank < 2)
    return fail(ctx, "operands need rank ≥ 2, got %s and %s", type_text(ctx, a),
                type_text(ctx, b));
  attn_dim m = attrs->transpose_a ? a->dims[a->rank - 1] : a->dims[a->rank - 2];
  attn_dim ka = attrs->transpose_a ? a->dims[a->rank - 2] : a->dims[a->rank - 1];
  attn_dim kb = attrs->transpose_b ? b->dims[b->rank - 1] : b->dims[b->rank - 2];
  attn_dim n = attrs->transpose_b ? b->dims[b->rank - 2] : b->dims[b->rank - 1];
  if (ka != kb)
    return fail(ctx, "inner dimensions differ (%s vs %s) in %s x %s%s", dim_text(ctx, ka),
                dim_text(ctx, kb), type_text(ctx, a), type_text(ctx, b),
                attrs->transpose_b ? " (transpose_b)" : "");
  attn_type batch_a = {a->dtype, a->rank - 2, {0}}, batch_b = {b->dtype, b->rank - 2, {0}};
  memcpy(batch_a.dims, a->dims, batch_a.rank * sizeof(attn_dim));
  memcpy(batch_b.dims, b->dims, batch_b.rank * sizeof(attn_dim));
  attn_type out;
  ATTN_RETURN_IF_ERROR(broadcast(ctx, &batch_a, &batch_b, &out));
  out.dims[out.rank++] = m;
  out.dims[out.rank++] = n;
  ctx->outputs[0] = out;
  return ATTN_OK;
}

attn_status attn_infer_softmax(attn_infer_ctx *ctx) {
  const attn_axis_attrs *attrs = ctx->attrs;
  int64_t axis;
  ATTN_RETURN_IF_ERROR(require_float(ctx, &ctx->inputs[0], "the input"));
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, ctx->inputs[0].rank, &axis));
  ctx->outputs[0] = ctx->inputs[0];
  return ATTN_OK;
}

attn_status attn_infer_norm(attn_infer_ctx *ctx) {
  const attn_norm_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  int64_t axis;
  ATTN_RETURN_IF_ERROR(require_float(ctx, x, "the input"));
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, x->rank, &axis));
  if (!(attrs->epsilon >= 0.0) || !isfinite(attrs->epsilon))
    return fail(ctx, "epsilon must be a finite number ≥ 0");
  for (uint32_t i = 1; i < ctx->input_count; i++) {
    const attn_type *p = &ctx->inputs[i];
    bool ok = p->dtype == x->dtype && p->rank == x->rank - (uint32_t)axis;
    for (uint32_t d = 0; ok && d < p->rank; d++)
      ok = p->dims[d] == x->dims[axis + d];
    if (!ok)
      return fail(ctx, "%s %s does not match the normalised dims of %s",
                  i == 1 ? "weight" : "bias", type_text(ctx, p), type_text(ctx, x));
  }
  ctx->outputs[0] = *x;
  return ATTN_OK;
}

attn_status attn_infer_reduce(attn_infer_ctx *ctx) {
  const attn_reduce_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  bool reduced[ATTN_MAX_RANK] = {false};
  if (x->dtype == ATTN_DTYPE_BOOL)
    return fail(ctx, "does not take bool tensors");
  if (ctx->op == ATTN_OP_MEAN)
    ATTN_RETURN_IF_ERROR(require_float(ctx, x, "the input"));
  if (ctx->op == ATTN_OP_ARGMAX && attrs->axis_count != 1)
    return fail(ctx, "needs exactly one axis");
  if (attrs->axis_count > x->rank || (attrs->axis_count && !attrs->axes))
    return fail(ctx, "too many axes for %s", type_text(ctx, x));
  for (uint32_t i = 0; i < attrs->axis_count; i++) {
    int64_t axis;
    ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axes[i], x->rank, &axis));
    if (reduced[axis])
      return fail(ctx, "axis %lld appears twice", (long long)attrs->axes[i]);
    reduced[axis] = true;
  }
  if (attrs->axis_count == 0)
    for (uint32_t d = 0; d < x->rank; d++)
      reduced[d] = true;
  attn_type out = {ctx->op == ATTN_OP_ARGMAX ? ATTN_DTYPE_I64 : x->dtype, 0, {0}};
  for (uint32_t d = 0; d < x->rank; d++) {
    if (!reduced[d])
      out.dims[out.rank++] = x->dims[d];
    else if (attrs->keepdims)
      out.dims[out.rank++] = 1;
  }
  ctx->outputs[0] = out;
  return ATTN_OK;
}

// ---- shape ops -----------------------------------------------------------------------------

// A product of dims as a constant times a sorted multiset of symbolic factors, so that
// [B, T, 768] and [B, T, 12, 64] are seen to hold the same number of elements.
typedef struct product {
  int64_t constant;
  uint32_t factor_count;
  attn_dim factors[4 * ATTN_MAX_RANK];
} product;

static bool product_add(const attn_graph *graph, product *p, attn_dim dim) {
  if (attn_dim_is_constant(dim))
    return !__builtin_mul_overflow(p->constant, dim, &p->constant);
  const attn_dim_expr *e = attn_graph_dim_expr(graph, dim);
  if (e && e->kind == ATTN_DIM_MUL)
    return product_add(graph, p, e->lhs) && product_add(graph, p, e->rhs);
  if (p->factor_count == sizeof(p->factors) / sizeof(p->factors[0]))
    return false;
  uint32_t i = p->factor_count++;
  while (i > 0 && p->factors[i - 1] > dim) { // keep sorted
    p->factors[i] = p->factors[i - 1];
    i--;
  }
  p->factors[i] = dim;
  return true;
}

static bool product_of(const attn_graph *graph, const attn_dim *dims, uint32_t rank, product *p) {
  p->constant = 1;
  p->factor_count = 0;
  for (uint32_t i = 0; i < rank; i++)
    if (dims[i] != ATTN_DIM_INFER && !product_add(graph, p, dims[i]))
      return false;
  return true;
}

attn_status attn_infer_reshape(attn_infer_ctx *ctx) {
  const attn_shape_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  if (attrs->rank > ATTN_MAX_RANK || (attrs->rank && !attrs->dims))
    return fail(ctx, "invalid shape");
  attn_type out = {x->dtype, attrs->rank, {0}};
  int infer_at = -1;
  for (uint32_t i = 0; i < attrs->rank; i++) {
    out.dims[i] = attrs->dims[i];
    if (attrs->dims[i] == ATTN_DIM_INFER) {
      if (infer_at >= 0)
        return fail(ctx, "only one dim may be -1");
      infer_at = (int)i;
    } else if (!attn_dim_is_constant(attrs->dims[i]) &&
               !attn_graph_dim_expr(ctx->graph, attrs->dims[i])) {
      return fail(ctx, "invalid dim %u", i);
    }
  }
  product in, target;
  if (!product_of(ctx->graph, x->dims, x->rank, &in) ||
      !product_of(ctx->graph, out.dims, out.rank, &target))
    return fail(ctx, "shape too complex");
  if (infer_at >= 0) {
    // The inferred dim is what is left of the input's product after the target's.
    if (target.constant == 0 || in.constant % target.constant != 0)
      return fail(ctx, "cannot infer the -1 dim reshaping %s", type_text(ctx, x));
    attn_dim result = in.constant / target.constant;
    uint32_t used[4 * ATTN_MAX_RANK] = {0};
    for (uint32_t t = 0; t < target.factor_count; t++) {
      uint32_t i = 0;
      while (i < in.factor_count && (used[i] || in.factors[i] != target.factors[t]))
        i++;
      if (i == in.factor_count)
        return fail(ctx, "cannot infer the -1 dim reshaping %s", type_text(ctx, x));
      used[i] = 1;
    }
    for (uint32_t i = 0; i < in.factor_count; i++)
      if (!used[i])
        ATTN_RETURN_IF_ERROR(dim_op(ctx, ATTN_DIM_MUL, result, in.factors[i], &result));
    out.dims[infer_at] = result;
    ATTN_RETURN_IF_ERROR(product_add(ctx->graph, &target, result) ? ATTN_OK
                                                                    : fail(ctx, "shape too complex"));
  }
  bool same = in.constant == target.constant && in.factor_count == target.factor_count;
  for (uint32_t i = 0; same && i < in.factor_count; i++)
    same = in.factors[i] == target.factors[i];
  if (!same)
    return fail(ctx, "cannot reshape %s to %s: the element counts differ", type_text(ctx, x),
                type_text(ctx, &out));
  ctx->outputs[0] = out;
  return ATTN_OK;
}

attn_status attn_infer_expand(attn_infer_ctx *ctx) {
  const attn_shape_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  if (attrs->rank > ATTN_MAX_RANK || (attrs->rank && !attrs->dims) || attrs->rank < x->rank)
    return fail(ctx, "cannot expand %s to rank %u", type_text(ctx, x), attrs->rank);
  attn_type out = {x->dtype, attrs->rank, {0}};
  uint32_t lead = attrs->rank - x->rank;
  for (uint32_t i = 0; i < attrs->rank; i++) {
    attn_dim want = attrs->dims[i];
    attn_dim have = i < lead ? 1 : x->dims[i - lead];
    if (want == ATTN_DIM_INFER) {
      if (i < lead)
        return fail(ctx, "-1 cannot stand for a new leading dim");
      want = have;
    }
    if (have != want && have != 1)
      return fail(ctx, "cannot expand dim %u of %s (%s) to %s", i, type_text(ctx, x),
                  dim_text(ctx, have), dim_text(ctx, want));
    out.dims[i] = want;
  }
  ctx->outputs[0] = out;
  return ATTN_OK;
}

attn_status attn_infer_permute(attn_infer_ctx *ctx) {
  const attn_perm_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  bool seen[ATTN_MAX_RANK] = {false};
  if (attrs->rank != x->rank || (attrs->rank && !attrs->perm))
    return fail(ctx, "perm has %u entries for %s", attrs->rank, type_text(ctx, x));
  attn_type out = {x->dtype, x->rank, {0}};
  for (uint32_t i = 0; i < x->rank; i++) {
    int64_t p = attrs->perm[i];
    if (p < 0 || p >= (int64_t)x->rank || seen[p])
      return fail(ctx, "perm is not a permutation of 0..%u", x->rank - 1);
    seen[p] = true;
    out.dims[i] = x->dims[p];
  }
  ctx->outputs[0] = out;
  return ATTN_OK;
}

attn_status attn_infer_slice(attn_infer_ctx *ctx) {
  const attn_slice_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  int64_t axis;
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, x->rank, &axis));
  if (attrs->step < 1)
    return fail(ctx, "step must be ≥ 1");
  attn_dim dim = x->dims[axis], result;
  if (attn_dim_is_constant(dim)) {
    int64_t start = attrs->start < 0 ? attrs->start + dim : attrs->start;
    int64_t end = attrs->end < 0 ? attrs->end + dim : attrs->end;
    start = start < 0 ? 0 : start > dim ? dim : start;
    end = end < 0 ? 0 : end > dim ? dim : end;
    result = end > start ? (end - start + attrs->step - 1) / attrs->step : 0;
  } else if (attrs->step == 1 && attrs->end == INT64_MAX && attrs->start >= 0) {
    ATTN_RETURN_IF_ERROR(dim_op(ctx, ATTN_DIM_SUB, dim, attrs->start, &result));
  } else if (attrs->step == 1 && attrs->end == INT64_MAX && attrs->start < 0) {
    result = -attrs->start; // the last -start elements (the dim must be that long at run time)
  } else if (attrs->start >= 0 && attrs->end >= attrs->start && attrs->end != INT64_MAX) {
    result = (attrs->end - attrs->start + attrs->step - 1) / attrs->step;
  } else {
    return fail(ctx, "cannot slice symbolic dim %s with start %lld, end %lld, step %lld",
                dim_text(ctx, dim), (long long)attrs->start, (long long)attrs->end,
                (long long)attrs->step);
  }
  ctx->outputs[0] = *x;
  ctx->outputs[0].dims[axis] = result;
  return ATTN_OK;
}

attn_status attn_infer_concat(attn_infer_ctx *ctx) {
  const attn_axis_attrs *attrs = ctx->attrs;
  const attn_type *first = &ctx->inputs[0];
  int64_t axis;
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, first->rank, &axis));
  attn_type out = *first;
  for (uint32_t i = 1; i < ctx->input_count; i++) {
    const attn_type *t = &ctx->inputs[i];
    bool ok = t->dtype == first->dtype && t->rank == first->rank;
    for (uint32_t d = 0; ok && d < t->rank; d++)
      ok = d == axis || t->dims[d] == first->dims[d];
    if (!ok)
      return fail(ctx, "input %u %s does not match %s outside axis %lld", i, type_text(ctx, t),
                  type_text(ctx, first), (long long)axis);
    ATTN_RETURN_IF_ERROR(dim_op(ctx, ATTN_DIM_ADD, out.dims[axis], t->dims[axis], &out.dims[axis]));
  }
  ctx->outputs[0] = out;
  return ATTN_OK;
}

attn_status attn_infer_split(attn_infer_ctx *ctx) {
  const attn_split_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  int64_t axis;
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, x->rank, &axis));
  if (attrs->count == 0 || !attrs->sizes || attrs->count != ctx->output_count)
    return fail(ctx, "needs a list of sizes");
  attn_dim total = 0;
  for (uint32_t i = 0; i < attrs->count; i++) {
    if (attrs->sizes[i] == ATTN_DIM_INFER)
      return fail(ctx, "sizes cannot use -1");
    ATTN_RETURN_IF_ERROR(dim_op(ctx, ATTN_DIM_ADD, total, attrs->sizes[i], &total));
    ctx->outputs[i] = *x;
    ctx->outputs[i].dims[axis] = attrs->sizes[i];
  }
  if (total != x->dims[axis])
    return fail(ctx, "sizes add up to %s but axis %lld of %s is %s", dim_text(ctx, total),
                (long long)axis, type_text(ctx, x), dim_text(ctx, x->dims[axis]));
  return ATTN_OK;
}

attn_status attn_infer_gather(attn_infer_ctx *ctx) {
  const attn_axis_attrs *attrs = ctx->attrs;
  const attn_type *data = &ctx->inputs[0], *indices = &ctx->inputs[1];
  int64_t axis;
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, data->rank, &axis));
  if (indices->dtype != ATTN_DTYPE_I64 && indices->dtype != ATTN_DTYPE_I32)
    return fail(ctx, "indices must be i64 or i32, got %s", type_text(ctx, indices));
  if (data->rank - 1 + indices->rank > ATTN_MAX_RANK)
    return fail(ctx, "result rank exceeds %d", ATTN_MAX_RANK);
  attn_type out = {data->dtype, 0, {0}};
  for (int64_t d = 0; d < axis; d++)
    out.dims[out.rank++] = data->dims[d];
  for (uint32_t d = 0; d < indices->rank; d++)
    out.dims[out.rank++] = indices->dims[d];
  for (uint32_t d = (uint32_t)axis + 1; d < data->rank; d++)
    out.dims[out.rank++] = data->dims[d];
  ctx->outputs[0] = out;
  return ATTN_OK;
}

// ---- rope, top-k, attention ----------------------------------------------------------------

attn_status attn_infer_rope(attn_infer_ctx *ctx) {
  const attn_rope_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0], *pos = &ctx->inputs[1];
  ATTN_RETURN_IF_ERROR(require_float(ctx, x, "the input"));
  if (x->rank < 2)
    return fail(ctx, "the input needs rank ≥ 2 ([..., T, D]), got %s", type_text(ctx, x));
  if (pos->dtype != ATTN_DTYPE_I64 && pos->dtype != ATTN_DTYPE_I32)
    return fail(ctx, "positions must be i64 or i32, got %s", type_text(ctx, pos));
  attn_dim t = x->dims[x->rank - 2], d = x->dims[x->rank - 1];
  bool pos_ok = (pos->rank == 1 && pos->dims[0] == t) ||
                (pos->rank == 2 && x->rank >= 3 && pos->dims[0] == x->dims[0] && pos->dims[1] == t);
  if (!pos_ok)
    return fail(ctx, "positions %s must be [T] or [B, T] for input %s", type_text(ctx, pos),
                type_text(ctx, x));
  if (!attn_dim_is_constant(d))
    return fail(ctx, "the last dim of %s must be constant", type_text(ctx, x));
  int64_t rotary = attrs->rotary_dim ? attrs->rotary_dim : d;
  if (rotary <= 0 || rotary > d || rotary % 2)
    return fail(ctx, "rotary_dim %lld must be even and at most %lld", (long long)rotary,
                (long long)d);
  if (!(attrs->theta > 0.0) || !isfinite(attrs->theta))
    return fail(ctx, "theta must be positive");
  ctx->outputs[0] = *x;
  return ATTN_OK;
}

attn_status attn_infer_topk(attn_infer_ctx *ctx) {
  const attn_topk_attrs *attrs = ctx->attrs;
  const attn_type *x = &ctx->inputs[0];
  int64_t axis;
  if (x->dtype == ATTN_DTYPE_BOOL)
    return fail(ctx, "does not take bool tensors");
  ATTN_RETURN_IF_ERROR(normalize_axis(ctx, attrs->axis, x->rank, &axis));
  if (attrs->k < 1 || (attn_dim_is_constant(x->dims[axis]) && attrs->k > x->dims[axis]))
    return fail(ctx, "k = %lld is out of range for axis %lld of %s", (long long)attrs->k,
                (long long)axis, type_text(ctx, x));
  ctx->outputs[0] = *x;
  ctx->outputs[0].dims[axis] = attrs->k;
  ctx->outputs[1] = ctx->outputs[0];
  ctx->outputs[1].dtype = ATTN_DTYPE_I64;
  return ATTN_OK;
}

// Checks a score-mod expression: variables, functions and captures exist and captures are
// indexed with as many subscripts as they have dims.
static attn_status check_expr(attn_infer_ctx *ctx, const attn_expr *e, uint32_t capture_base,
                              uint32_t capture_count, int depth) {
  if (!e || depth > 64)
    return fail(ctx, "score_mod is malformed or nested too deeply");
  switch (e->kind) {
  case ATTN_EXPR_NUMBER: return ATTN_OK;
  case ATTN_EXPR_VAR:
    return (unsigned)e->var < ATTN_EXPR_VAR_COUNT ? ATTN_OK : fail(ctx, "bad score_mod variable");
  case ATTN_EXPR_CAPTURE:
    if (e->capture >= capture_count)
      return fail(ctx, "score_mod reads capture %u but the node has %u", e->capture,
                  capture_count);
    if (e->arg_count != ctx->inputs[capture_base + e->capture].rank)
      return fail(ctx, "score_mod indexes %s with %u subscripts",
                  type_text(ctx, &ctx->inputs[capture_base + e->capture]), e->arg_count);
    break;
  case ATTN_EXPR_UNARY:
    if (e->arg_count != 1 || e->fn > ATTN_EXPR_SIGMOID)
      return fail(ctx, "bad score_mod unary function");
    break;
  case ATTN_EXPR_BINARY:
    if (e->arg_count != 2 || e->fn < ATTN_EXPR_ADD || e->fn >= ATTN_EXPR_FN_COUNT)
      return fail(ctx, "bad score_mod binary function");
    break;
  case ATTN_EXPR_SELECT:
    if (e->arg_count != 3)
      return fail(ctx, "bad score_mod select");
    break;
  default: return fail(ctx, "bad score_mod expression");
  }
  if (e->arg_count > ATTN_EXPR_MAX_ARGS)
    return fail(ctx, "bad score_mod expression");
  for (uint32_t i = 0; i < e->arg_count; i++)
    ATTN_RETURN_IF_ERROR(check_expr(ctx, e->args[i], capture_base, capture_count, depth + 1));
  return ATTN_OK;
}

attn_status attn_infer_attention(attn_infer_ctx *ctx) {
  const attn_attention_attrs *attrs = ctx->attrs;
  const attn_type *q = &ctx->inputs[0], *k = &ctx->inputs[1], *v = &ctx->inputs[2];
  ATTN_RETURN_IF_ERROR(require_float(ctx, q, "q"));
  if (k->dtype != q->dtype || v->dtype != q->dtype)
    return fail(ctx, "q, k and v must share a dtype: %s, %s, %s", type_text(ctx, q),
                type_text(ctx, k), type_text(ctx, v));
  if (q->rank != 4 || k->rank != 4 || v->rank != 4)
    return fail(ctx, "q, k, v must be [B, H, T, D]: got %s, %s, %s", type_text(ctx, q),
                type_text(ctx, k), type_text(ctx, v));
  attn_dim b = q->dims[0], h = q->dims[1], tq = q->dims[2], d = q->dims[3];
  attn_dim hkv = k->dims[1], tk = k->dims[2];
  if (k->dims[0] != b || v->dims[0] != b || v->dims[1] != hkv || v->dims[2] != tk ||
      k->dims[3] != d)
    return fail(ctx, "shapes do not agree: q %s, k %s, v %s", type_text(ctx, q),
                type_text(ctx, k), type_text(ctx, v));
  if (!attn_dim_is_constant(h) || !attn_dim_is_constant(hkv) || hkv == 0 || h % hkv != 0)
    return fail(ctx, "query heads (%s) must be a constant multiple of kv heads (%s)",
                dim_text(ctx, h), dim_text(ctx, hkv));
  if (!(attrs->scale >= 0.0) || !isfinite(attrs->scale))
    return fail(ctx, "scale must be a finite number ≥ 0 (0: 1/sqrt(D))");
  if ((unsigned)attrs->mask > ATTN_MASK_SLIDING_WINDOW || (unsigned)attrs->norm > ATTN_NORM_SIGMOID)
    return fail(ctx, "invalid mask or normaliser");
  if (attrs->mask == ATTN_MASK_SLIDING_WINDOW && attrs->window < 1)
    return fail(ctx, "mask=sliding_window needs window ≥ 1");
  if (attrs->mask != ATTN_MASK_SLIDING_WINDOW && (attrs->window || attrs->sinks))
    return fail(ctx, "window and sinks need mask=sliding_window");
  if (attrs->sinks < 0)
    return fail(ctx, "sinks must be ≥ 0");
  uint32_t capture_base = 3;
  if (attrs->has_mask) {
    if (ctx->input_count < 4)
      return fail(ctx, "has_mask needs a mask input after v");
    const attn_type *mask = &ctx->inputs[3];
    if (mask->dtype != ATTN_DTYPE_BOOL && !attn_dtype_is_float(mask->dtype))
      return fail(ctx, "the mask must be bool or float, got %s", type_text(ctx, mask));
    attn_type scores = {mask->dtype, 4, {b, h, tq, tk}}, out;
    if (mask->rank > 4)
      return fail(ctx, "the mask %s has more than 4 dims", type_text(ctx, mask));
    ATTN_RETURN_IF_ERROR(broadcast(ctx, &scores, mask, &out));
    if (!attn_type_equal(&out, &scores))
      return fail(ctx, "the mask %s does not broadcast to [B, H, Tq, Tk] = %s",
                  type_text(ctx, mask), type_text(ctx, &scores));
    capture_base = 4;
  }
  uint32_t capture_count = ctx->input_count - capture_base;
  if (attrs->score_mod)
    ATTN_RETURN_IF_ERROR(check_expr(ctx, attrs->score_mod, capture_base, capture_count, 0));
  else if (capture_count)
    return fail(ctx, "%u extra inputs but no score_mod reads them", capture_count);
  ctx->outputs[0] = (attn_type){q->dtype, 4, {b, h, tq, v->dims[3]}};
  if (ctx->output_count > 1)
    ctx->outputs[1] = (attn_type){ATTN_DTYPE_F32, 3, {b, h, tq}};
  return ATTN_OK;
}
