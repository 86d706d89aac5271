// Reference evaluator of attention, exactly as the comment in ir.h defines it, and the
// score-mod expression evaluator. For each (b, h, query row i): logits of the visible keys
// (mask kind, then the bool mask), score_mod, the additive float mask, then softmax (or
// sigmoid) weights and the weighted sum of v rows, all in double and in increasing key order.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include "ir/interp_eval.h"

// ---- score-mod expressions -------------------------------------------------------------------

static attn_status fault(attn_expr_fault *out_fault, uint32_t capture, uint32_t axis, int64_t index,
                         int64_t size) {
  if (out_fault)
    *out_fault = (attn_expr_fault){capture, axis, index, size};
  return ATTN_ERROR_INVALID_ARGUMENT;
}

static attn_status eval_capture(const attn_expr *expr, const attn_expr_env *env, double *out_value,
                                attn_expr_fault *out_fault) {
  if (expr->capture >= env->capture_count)
    return fault(out_fault, expr->capture, 0, 0, 0);
  const attn_tensor *t = &env->captures[expr->capture];
  if (expr->arg_count != t->rank)
    return fault(out_fault, expr->capture, expr->arg_count, 0, t->rank);
  int64_t offset = 0;
  for (uint32_t d = 0; d < t->rank; d++) {
    double subscript;
    ATTN_RETURN_IF_ERROR(attn_expr_eval(expr->args[d], env, &subscript, out_fault));
    // Compare as doubles first: converting one outside int64's range is undefined.
    if (!(subscript > -1.0 && subscript < (double)t->dims[d]))
      return fault(out_fault, expr->capture, d,
                   isfinite(subscript) && fabs(subscript) < 9.2e18 ? (int64_t)subscript : INT64_MIN,
                   t->dims[d]);
    offset = offset * t->dims[d] + (int64_t)subscript; // truncates toward zero
  }
  *out_value = attn_tensor_get_f64(t, offset);
  return ATTN_OK;
}

static double apply_unary(attn_expr_fn fn, double x) {
  switch (fn) {
  case ATTN_EXPR_NEG:
    return -x;
  case ATTN_EXPR_ABS:
    return fabs(x);
  case ATTN_EXPR_EXP:
    return exp(x);
  case ATTN_EXPR_LOG:
    return log(x);
  case ATTN_EXPR_SQRT:
    return sqrt(x);
  case ATTN_EXPR_TANH:
    return tanh(x);
  case ATTN_EXPR_SIGMOID:
    return 1.0 / (1.0 + exp(-x));
  default:
    return (double)NAN;
  }
}

static double apply_binary(attn_expr_fn fn, double a, double b) {
  switch (fn) {
  case ATTN_EXPR_ADD:
    return a + b;
  case ATTN_EXPR_SUB:
    return a - b;
  case ATTN_EXPR_MUL:
    return a * b;
  case ATTN_EXPR_DIV:
    return a / b;
  case ATTN_EXPR_MIN:
    return fmin(a, b);
  case ATTN_EXPR_MAX:
    return fmax(a, b);
  case ATTN_EXPR_POW:
    return pow(a, b);
  case ATTN_EXPR_LT:
    return a < b ? 1.0 : 0.0;
  case ATTN_EXPR_LE:
    return a <= b ? 1.0 : 0.0;
  case ATTN_EXPR_EQ:
    return a == b ? 1.0 : 0.0;
  default:
    return (double)NAN;
  }
}

attn_status attn_expr_eval(const attn_expr *expr, const attn_expr_env *env, double *out_value,
                           attn_expr_fault *out_fault) {
  double a, b;
  switch (expr->kind) {
  case ATTN_EXPR_NUMBER:
    *out_value = expr->number;
    return ATTN_OK;
  case ATTN_EXPR_VAR:
    *out_value = (unsigned)expr->var < ATTN_EXPR_VAR_COUNT ? env->vars[expr->var] : (double)NAN;
    return ATTN_OK;
  case ATTN_EXPR_CAPTURE:
    return eval_capture(expr, env, out_value, out_fault);
  case ATTN_EXPR_UNARY:
    ATTN_RETURN_IF_ERROR(attn_expr_eval(expr->args[0], env, &a, out_fault));
    *out_value = apply_unary(expr->fn, a);
    return ATTN_OK;
  case ATTN_EXPR_BINARY:
    ATTN_RETURN_IF_ERROR(attn_expr_eval(expr->args[0], env, &a, out_fault));
    ATTN_RETURN_IF_ERROR(attn_expr_eval(expr->args[1], env, &b, out_fault));
    *out_value = apply_binary(expr->fn, a, b);
    return ATTN_OK;
  case ATTN_EXPR_SELECT:
    ATTN_RETURN_IF_ERROR(attn_expr_eval(expr->args[0], env, &a, out_fault));
    return attn_expr_eval(expr->args[a != 0.0 ? 1 : 2], env, out_value, out_fault);
  }
  *out_value = (double)NAN;
  return ATTN_OK;
}

// ---- attention -------------------------------------------------------------------------------

typedef struct attention_buffers {
  double *q, *k, *v;
  double *scores;   // Tk
  double *acc;      // Dv
  uint8_t *visible; // Tk
} attention_buffers;

static attn_status score_mod_error(attn_eval_ctx *ctx, uint32_t capture_base,
                                   const attn_expr_fault *f, const double *vars) {
  uint32_t input = capture_base + f->capture;
  const char *name = input < ctx->node->input_count
                         ? attn_graph_value(ctx->graph, ctx->node->inputs[input])->name
                         : NULL;
  char where[128];
  snprintf(where, sizeof(where), "at b=%.0f, h=%.0f, q_idx=%.0f, kv_idx=%.0f",
           vars[ATTN_EXPR_VAR_B], vars[ATTN_EXPR_VAR_H], vars[ATTN_EXPR_VAR_Q_IDX],
           vars[ATTN_EXPR_VAR_KV_IDX]);
  if (f->index == INT64_MIN)
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                             "score_mod: subscript %u of capture %u ('%s') is not a finite "
                             "number %s",
                             f->axis, f->capture, name ? name : "?", where);
  return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                           "score_mod: capture %u ('%s') indexed with %" PRId64
                           " along axis %u of size %" PRId64 " %s",
                           f->capture, name ? name : "?", f->index, f->axis, f->size, where);
}

static bool is_visible(const attn_attention_attrs *attrs, int64_t pos, int64_t j) {
  switch (attrs->mask) {
  case ATTN_MASK_NONE:
    return true;
  case ATTN_MASK_CAUSAL:
    return j <= pos;
  case ATTN_MASK_SLIDING_WINDOW:
    return j <= pos && (j > pos - attrs->window || j < attrs->sinks);
  }
  return true;
}

static attn_status attend(attn_eval_ctx *ctx, const attention_buffers *buf) {
  const attn_attention_attrs *attrs = ctx->attrs;
  const attn_tensor *q = &ctx->inputs[0], *k = &ctx->inputs[1], *v = &ctx->inputs[2];
  const attn_tensor *mask = attrs->has_mask ? &ctx->inputs[3] : NULL;
  uint32_t capture_base = attrs->has_mask ? 4 : 3;
  attn_tensor *out = &ctx->outputs[0];
  attn_tensor *lse = ctx->output_count > 1 ? &ctx->outputs[1] : NULL;
  int64_t b_count = q->dims[0], h_count = q->dims[1], tq = q->dims[2], d_count = q->dims[3];
  int64_t hkv_count = k->dims[1], tk = k->dims[2], dv_count = v->dims[3];
  int64_t group = h_count / hkv_count;
  double scale = attrs->scale != 0.0 ? attrs->scale : 1.0 / sqrt((double)d_count);
  int64_t scores_dims[4] = {b_count, h_count, tq, tk}, mask_strides[4];
  if (mask && !attn_interp_broadcast_strides(mask, 4, scores_dims, mask_strides))
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_GRAPH, "the mask does not broadcast");
  attn_expr_env env = {{0}, &ctx->inputs[capture_base], ctx->input_count - capture_base};

  for (int64_t b = 0; b < b_count; b++) {
    for (int64_t h = 0; h < h_count; h++) {
      int64_t kv_head = h / group;
      const double *k_rows = buf->k + (b * hkv_count + kv_head) * tk * d_count;
      const double *v_rows = buf->v + (b * hkv_count + kv_head) * tk * dv_count;
      for (int64_t i = 0; i < tq; i++) {
        int64_t pos = tk - tq + i, row = (b * h_count + h) * tq + i;
        const double *q_row = buf->q + row * d_count;
        double max = -(double)INFINITY;
        bool any = false;
        for (int64_t j = 0; j < tk; j++) {
          int64_t mask_at =
              mask ? attn_interp_offset(row * tk + j, 4, scores_dims, mask_strides) : 0;
          buf->visible[j] = is_visible(attrs, pos, j) && (!mask || mask->dtype != ATTN_DTYPE_BOOL ||
                                                          attn_interp_load(mask, mask_at) != 0.0);
          if (!buf->visible[j])
            continue;
          double dot = 0.0;
          for (int64_t d = 0; d < d_count; d++)
            dot += q_row[d] * k_rows[j * d_count + d];
          double s = scale * dot;
          if (attrs->score_mod) {
            env.vars[ATTN_EXPR_VAR_SCORE] = s;
            env.vars[ATTN_EXPR_VAR_B] = (double)b;
            env.vars[ATTN_EXPR_VAR_H] = (double)h;
            env.vars[ATTN_EXPR_VAR_Q_IDX] = (double)pos;
            env.vars[ATTN_EXPR_VAR_KV_IDX] = (double)j;
            attn_expr_fault f = {0};
            if (attn_expr_eval(attrs->score_mod, &env, &s, &f) != ATTN_OK)
              return score_mod_error(ctx, capture_base, &f, env.vars);
          }
          if (mask && mask->dtype != ATTN_DTYPE_BOOL)
            s += attn_interp_load(mask, mask_at);
          buf->scores[j] = s;
          max = s > max || isnan(s) ? s : max;
          any = true;
        }
        // A row whose visible logits are all -inf has no mass to share either.
        bool empty = !any || max == -(double)INFINITY;
        double sum = 0.0;
        for (int64_t j = 0; j < tk && !empty; j++)
          if (buf->visible[j])
            sum += exp(buf->scores[j] - max);
        for (int64_t d = 0; d < dv_count; d++)
          buf->acc[d] = 0.0;
        for (int64_t j = 0; j < tk && !empty; j++) {
          if (!buf->visible[j])
            continue;
          double p = attrs->norm == ATTN_NORM_SIGMOID
                         ? 1.0 / (1.0 + exp(-(buf->scores[j] + attrs->sigmoid_bias)))
                         : exp(buf->scores[j] - max) / sum;
          for (int64_t d = 0; d < dv_count; d++)
            buf->acc[d] += p * v_rows[j * dv_count + d];
        }
        for (int64_t d = 0; d < dv_count; d++)
          attn_interp_store(out, row * dv_count + d, buf->acc[d]);
        if (lse)
          attn_interp_store(lse, row, empty ? -(double)INFINITY : max + log(sum));
      }
    }
  }
  return ATTN_OK;
}

attn_status attn_eval_attention(attn_eval_ctx *ctx) {
  const attn_tensor *k = &ctx->inputs[1], *v = &ctx->inputs[2];
  int64_t tk = k->dims[2], dv = v->dims[3];
  if (k->dims[1] == 0 || ctx->inputs[0].dims[1] % k->dims[1] != 0)
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_GRAPH,
                             "query heads are not a multiple of kv heads");
  attention_buffers buf = {0};
  size_t scores_size = (size_t)(tk ? tk : 1) * sizeof(double);
  size_t acc_size = (size_t)(dv ? dv : 1) * sizeof(double);
  size_t visible_size = (size_t)(tk ? tk : 1);
  attn_status status = attn_interp_to_f64(ctx, &ctx->inputs[0], &buf.q);
  if (status == ATTN_OK)
    status = attn_interp_to_f64(ctx, k, &buf.k);
  if (status == ATTN_OK)
    status = attn_interp_to_f64(ctx, v, &buf.v);
  if (status == ATTN_OK) {
    buf.scores = attn_allocator_alloc(ctx->allocator, scores_size);
    buf.acc = attn_allocator_alloc(ctx->allocator, acc_size);
    buf.visible = attn_allocator_alloc(ctx->allocator, visible_size);
    if (!buf.scores || !buf.acc || !buf.visible)
      status = attn_interp_error(ctx, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  if (status == ATTN_OK)
    status = attend(ctx, &buf);
  if (buf.q)
    attn_interp_free_f64(ctx, buf.q, &ctx->inputs[0]);
  if (buf.k)
    attn_interp_free_f64(ctx, buf.k, k);
  if (buf.v)
    attn_interp_free_f64(ctx, buf.v, v);
  attn_allocator_free(ctx->allocator, buf.scores, scores_size);
  attn_allocator_free(ctx->allocator, buf.acc, acc_size);
  attn_allocator_free(ctx->allocator, buf.visible, visible_size);
  return status;
}
