// Reference evaluators of the elementwise ops: unary functions, cast, binary arithmetic and
// comparisons with NumPy broadcasting, and where. Floats are computed in double and rounded once
// to the output dtype; integers exactly in int64, saturating to the output dtype's range.
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ir/interp_eval.h"

// ---- unary -----------------------------------------------------------------------------------

static double sigmoid(double x) {
  return 1.0 / (1.0 + exp(-x));
}

static double unary_float(attn_op op, const void *attrs, double x) {
  switch (op) {
  case ATTN_OP_NEG:
    return -x;
  case ATTN_OP_ABS:
    return fabs(x);
  case ATTN_OP_EXP:
    return exp(x);
  case ATTN_OP_LOG:
    return log(x);
  case ATTN_OP_SQRT:
    return sqrt(x);
  case ATTN_OP_RSQRT:
    return 1.0 / sqrt(x);
  case ATTN_OP_TANH:
    return tanh(x);
  case ATTN_OP_ERF:
    return erf(x);
  case ATTN_OP_SIGMOID:
    return sigmoid(x);
  case ATTN_OP_RELU:
    return x > 0.0 || isnan(x) ? x : 0.0;
  case ATTN_OP_SILU:
    return x * sigmoid(x);
  case ATTN_OP_GELU:
    if (((const attn_gelu_attrs *)attrs)->approximate == ATTN_GELU_TANH) {
      const double sqrt_2_over_pi = 0.79788456080286535587989211986876;
      return 0.5 * x * (1.0 + tanh(sqrt_2_over_pi * (x + 0.044715 * x * x * x)));
    }
    return 0.5 * x * (1.0 + erf(x * 0.70710678118654752440084436210485));
  default:
    return x;
  }
}

// Integer inputs reach only neg, abs and relu (shape inference rejects the rest).
static int64_t unary_int(attn_op op, int64_t x) {
  switch (op) {
  case ATTN_OP_NEG:
    return x == INT64_MIN ? INT64_MAX : -x;
  case ATTN_OP_ABS:
    return x == INT64_MIN ? INT64_MAX : x < 0 ? -x : x;
  case ATTN_OP_RELU:
    return x > 0 ? x : 0;
  default:
    return x;
  }
}

attn_status attn_eval_unary(attn_eval_ctx *ctx) {
  const attn_tensor *x = &ctx->inputs[0];
  attn_tensor *y = &ctx->outputs[0];
  attn_op op = ctx->node->op;
  int64_t count = attn_tensor_element_count(y);
  for (int64_t i = 0; i < count; i++) {
    if (op == ATTN_OP_NOT) {
      attn_interp_store_int(y, i, !attn_interp_load_int(x, i));
    } else if (op == ATTN_OP_CAST) {
      // Integer and bool sources convert exactly; float sources round (or truncate) once.
      if (attn_interp_is_int(x->dtype) || x->dtype == ATTN_DTYPE_BOOL)
        attn_interp_store_int(y, i, attn_interp_load_int(x, i));
      else
        attn_interp_store(y, i, attn_interp_load(x, i));
    } else if (attn_interp_is_int(x->dtype)) {
      attn_interp_store_int(y, i, unary_int(op, attn_interp_load_int(x, i)));
    } else {
      attn_interp_store(y, i, unary_float(op, ctx->attrs, attn_interp_load(x, i)));
    }
  }
  return ATTN_OK;
}

// ---- binary ----------------------------------------------------------------------------------

static bool compare(attn_op op, int order) {
  switch (op) {
  case ATTN_OP_EQ:
    return order == 0;
  case ATTN_OP_NE:
    return order != 0;
  case ATTN_OP_LT:
    return order < 0;
  case ATTN_OP_LE:
    return order <= 0;
  case ATTN_OP_GT:
    return order > 0;
  case ATTN_OP_GE:
    return order >= 0;
  default:
    return false;
  }
}

static bool is_compare(attn_op op) {
  return op == ATTN_OP_EQ || op == ATTN_OP_NE || op == ATTN_OP_LT || op == ATTN_OP_LE ||
         op == ATTN_OP_GT || op == ATTN_OP_GE;
}

static double binary_float(attn_op op, double a, double b) {
  switch (op) {
  case ATTN_OP_ADD:
    return a + b;
  case ATTN_OP_SUB:
    return a - b;
  case ATTN_OP_MUL:
    return a * b;
  case ATTN_OP_DIV:
    return a / b;
  case ATTN_OP_POW:
    return pow(a, b);
  case ATTN_OP_MAXIMUM:
    return isnan(a) ? a : isnan(b) ? b : a > b ? a : b;
  case ATTN_OP_MINIMUM:
    return isnan(a) ? a : isnan(b) ? b : a < b ? a : b;
  default:
    return 0.0;
  }
}

// a ** b for integers, exact and saturating; b < 0 truncates 1 / a^-b toward zero.
static bool pow_int(int64_t a, int64_t b, int64_t *out) {
  if (b < 0) {
    if (a == 0)
      return false;
    *out = a == 1 ? 1 : a == -1 ? (b % 2 ? -1 : 1) : 0;
    return true;
  }
  int64_t result = 1, base = a;
  while (b > 0) {
    if (b & 1)
      result = attn_interp_mul_sat(result, base);
    b >>= 1;
    if (b > 0)
      base = attn_interp_mul_sat(base, base);
  }
  *out = result;
  return true;
}

// False for an integer division by zero, or 0 raised to a negative power.
static bool binary_int(attn_op op, int64_t a, int64_t b, int64_t *out) {
  switch (op) {
  case ATTN_OP_ADD:
    *out = attn_interp_add_sat(a, b);
    return true;
  case ATTN_OP_SUB:
    if (__builtin_sub_overflow(a, b, out)) // the result has the sign of a
      *out = a < 0 ? INT64_MIN : INT64_MAX;
    return true;
  case ATTN_OP_MUL:
    *out = attn_interp_mul_sat(a, b);
    return true;
  case ATTN_OP_DIV:
    if (b == 0)
      return false;
    *out = a == INT64_MIN && b == -1 ? INT64_MAX : a / b; // C division truncates toward zero
    return true;
  case ATTN_OP_POW:
    return pow_int(a, b, out);
  case ATTN_OP_MAXIMUM:
    *out = a > b ? a : b;
    return true;
  case ATTN_OP_MINIMUM:
    *out = a < b ? a : b;
    return true;
  default:
    *out = 0;
    return true;
  }
}

attn_status attn_eval_binary(attn_eval_ctx *ctx) {
  const attn_tensor *a = &ctx->inputs[0], *b = &ctx->inputs[1];
  attn_tensor *y = &ctx->outputs[0];
  attn_op op = ctx->node->op;
  int64_t sa[ATTN_MAX_RANK], sb[ATTN_MAX_RANK];
  if (!attn_interp_broadcast_strides(a, y->rank, y->dims, sa) ||
      !attn_interp_broadcast_strides(b, y->rank, y->dims, sb))
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_GRAPH, "operands do not broadcast");
  bool exact = attn_interp_is_int(a->dtype) || a->dtype == ATTN_DTYPE_BOOL;
  int64_t count = attn_tensor_element_count(y);
  for (int64_t i = 0; i < count; i++) {
    int64_t ia = attn_interp_offset(i, y->rank, y->dims, sa);
    int64_t ib = attn_interp_offset(i, y->rank, y->dims, sb);
    if (op == ATTN_OP_AND || op == ATTN_OP_OR) {
      int64_t va = attn_interp_load_int(a, ia), vb = attn_interp_load_int(b, ib);
      attn_interp_store_int(y, i, op == ATTN_OP_AND ? va && vb : va || vb);
    } else if (is_compare(op) && exact) {
      int64_t va = attn_interp_load_int(a, ia), vb = attn_interp_load_int(b, ib);
      attn_interp_store_int(y, i, compare(op, (va > vb) - (va < vb)));
    } else if (is_compare(op)) {
      double va = attn_interp_load(a, ia), vb = attn_interp_load(b, ib);
      // NaN compares unequal to everything: only ne holds.
      bool result = isnan(va) || isnan(vb) ? op == ATTN_OP_NE : compare(op, (va > vb) - (va < vb));
      attn_interp_store_int(y, i, result);
    } else if (exact) {
      int64_t va = attn_interp_load_int(a, ia), vb = attn_interp_load_int(b, ib), result;
      if (!binary_int(op, va, vb, &result)) {
        if (op == ATTN_OP_DIV)
          return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                   "integer division by zero (%" PRId64 " / 0)", va);
        return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                                 "integer 0 raised to the negative power %" PRId64, vb);
      }
      attn_interp_store_int(y, i, result);
    } else {
      attn_interp_store(y, i, binary_float(op, attn_interp_load(a, ia), attn_interp_load(b, ib)));
    }
  }
  return ATTN_OK;
}

attn_status attn_eval_where(attn_eval_ctx *ctx) {
  const attn_tensor *cond = &ctx->inputs[0], *a = &ctx->inputs[1], *b = &ctx->inputs[2];
  attn_tensor *y = &ctx->outputs[0];
  int64_t sc[ATTN_MAX_RANK], sa[ATTN_MAX_RANK], sb[ATTN_MAX_RANK];
  if (!attn_interp_broadcast_strides(cond, y->rank, y->dims, sc) ||
      !attn_interp_broadcast_strides(a, y->rank, y->dims, sa) ||
      !attn_interp_broadcast_strides(b, y->rank, y->dims, sb))
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_GRAPH, "operands do not broadcast");
  size_t size = attn_dtype_size(y->dtype);
  int64_t count = attn_tensor_element_count(y);
  for (int64_t i = 0; i < count; i++) {
    bool take_a = ((const uint8_t *)cond->data)[attn_interp_offset(i, y->rank, y->dims, sc)];
    const attn_tensor *from = take_a ? a : b;
    int64_t offset = attn_interp_offset(i, y->rank, y->dims, take_a ? sa : sb);
    memcpy((char *)y->data + (size_t)i * size, (const char *)from->data + (size_t)offset * size,
           size);
  }
  return ATTN_OK;
}
