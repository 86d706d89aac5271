// Symbolic dims: an interned table of expressions over named symbols. Interning makes
// structural equality pointer (index) equality, which is all shape inference needs.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

static attn_dim dim_from_index(uint32_t index) {
  return -(attn_dim)index - 1;
}

const attn_dim_expr *attn_graph_dim_expr(const attn_graph *graph, attn_dim dim) {
  if (dim >= 0 || dim == ATTN_DIM_INFER)
    return NULL;
  uint64_t index = (uint64_t)(-(dim + 1));
  return index < graph->dim_count ? &graph->dims[index] : NULL;
}

static attn_status intern(attn_graph *graph, const attn_dim_expr *expr, attn_dim *out_dim) {
  for (uint32_t i = 0; i < graph->dim_count; i++) {
    const attn_dim_expr *e = &graph->dims[i];
    if (e->kind != expr->kind)
      continue;
    if (e->kind == ATTN_DIM_SYMBOL ? strcmp(e->name, expr->name) == 0
                                   : e->lhs == expr->lhs && e->rhs == expr->rhs) {
      *out_dim = dim_from_index(i);
      return ATTN_OK;
    }
  }
  void *dims = graph->dims;
  if (!attn_array_reserve(graph->allocator, &dims, &graph->dim_capacity,
                          (size_t)graph->dim_count + 1, sizeof(attn_dim_expr)))
    return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  graph->dims = dims;
  graph->dims[graph->dim_count] = *expr;
  *out_dim = dim_from_index(graph->dim_count++);
  return ATTN_OK;
}

attn_status attn_graph_dim_symbol(attn_graph *graph, const char *name, size_t length,
                                  attn_dim *out_dim) {
  for (uint32_t i = 0; i < graph->dim_count; i++) {
    const attn_dim_expr *e = &graph->dims[i];
    if (e->kind == ATTN_DIM_SYMBOL && strlen(e->name) == length &&
        memcmp(e->name, name, length) == 0) {
      *out_dim = dim_from_index(i);
      return ATTN_OK;
    }
  }
  const char *copy = attn_arena_strndup(&graph->arena, name, length);
  if (!copy)
    return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  attn_dim_expr expr = {ATTN_DIM_SYMBOL, copy, graph->symbol_count, 0, 0};
  ATTN_RETURN_IF_ERROR(intern(graph, &expr, out_dim));
  graph->symbol_count++;
  return ATTN_OK;
}

static bool fold(attn_dim_kind kind, int64_t a, int64_t b, int64_t *out) {
  switch (kind) {
  case ATTN_DIM_ADD: return !__builtin_add_overflow(a, b, out);
  case ATTN_DIM_SUB: return !__builtin_sub_overflow(a, b, out) && *out >= 0;
  case ATTN_DIM_MUL: return !__builtin_mul_overflow(a, b, out);
  case ATTN_DIM_DIV:
    if (b == 0 || a % b != 0)
      return false;
    *out = a / b;
    return true;
  case ATTN_DIM_SYMBOL: break;
  }
  return false;
}

attn_status attn_graph_dim_binary(attn_graph *graph, attn_dim_kind kind, attn_dim lhs,
                                  attn_dim rhs, attn_dim *out_dim) {
  if (attn_dim_is_constant(lhs) && attn_dim_is_constant(rhs)) {
    if (!fold(kind, lhs, rhs, out_dim))
      return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                              "dim arithmetic %" PRId64 " %c %" PRId64
                              " is negative, inexact or overflows",
                              lhs, "?+-*/"[kind], rhs);
    return ATTN_OK;
  }
  if ((kind == ATTN_DIM_ADD || kind == ATTN_DIM_MUL) && attn_dim_is_constant(lhs)) {
    attn_dim t = lhs; // constants go right
    lhs = rhs;
    rhs = t;
  }
  switch (kind) {
  case ATTN_DIM_ADD:
  case ATTN_DIM_SUB:
    if (rhs == 0) {
      *out_dim = lhs;
      return ATTN_OK;
    }
    if (kind == ATTN_DIM_SUB && lhs == rhs) {
      *out_dim = 0;
      return ATTN_OK;
    }
    break;
  case ATTN_DIM_MUL:
    if (rhs == 1 || rhs == 0) {
      *out_dim = rhs == 1 ? lhs : 0;
      return ATTN_OK;
    }
    break;
  case ATTN_DIM_DIV:
    if (rhs == 1 || lhs == rhs) {
      *out_dim = rhs == 1 ? lhs : 1;
      return ATTN_OK;
    }
    if (rhs == 0)
      return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                              "dim division by zero");
    break;
  case ATTN_DIM_SYMBOL:
    return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT, "bad dim op");
  }
  attn_dim_expr expr = {kind, NULL, 0, lhs, rhs};
  return intern(graph, &expr, out_dim);
}

const char *attn_graph_symbol_name(const attn_graph *graph, uint32_t index) {
  for (uint32_t i = 0; i < graph->dim_count; i++)
    if (graph->dims[i].kind == ATTN_DIM_SYMBOL && graph->dims[i].symbol == index)
      return graph->dims[i].name;
  return NULL;
}

bool attn_graph_find_symbol(const attn_graph *graph, const char *name, uint32_t *out_index) {
  for (uint32_t i = 0; i < graph->dim_count; i++) {
    if (graph->dims[i].kind == ATTN_DIM_SYMBOL && strcmp(graph->dims[i].name, name) == 0) {
      *out_index = graph->dims[i].symbol;
      return true;
    }
  }
  return false;
}

attn_status attn_graph_dim_eval(const attn_graph *graph, attn_dim dim,
                                const int64_t *symbol_values, int64_t *out_value) {
  if (attn_dim_is_constant(dim)) {
    *out_value = dim;
    return ATTN_OK;
  }
  const attn_dim_expr *e = attn_graph_dim_expr(graph, dim);
  if (!e)
    return ATTN_ERROR_INVALID_ARGUMENT;
  if (e->kind == ATTN_DIM_SYMBOL) {
    if (!symbol_values || symbol_values[e->symbol] < 0)
      return ATTN_ERROR_INVALID_ARGUMENT;
    *out_value = symbol_values[e->symbol];
    return ATTN_OK;
  }
  int64_t a, b;
  ATTN_RETURN_IF_ERROR(attn_graph_dim_eval(graph, e->lhs, symbol_values, &a));
  ATTN_RETURN_IF_ERROR(attn_graph_dim_eval(graph, e->rhs, symbol_values, &b));
  return fold(e->kind, a, b, out_value) ? ATTN_OK : ATTN_ERROR_INVALID_ARGUMENT;
}

// Appends the text of `dim` at buffer[*used]; `parent_kind` decides parentheses.
static void format_dim(const attn_graph *graph, attn_dim dim, int parent_precedence,
                       char *buffer, size_t size, size_t *used) {
  if (*used >= size)
    return;
  if (dim == ATTN_DIM_INFER) {
    *used += (size_t)snprintf(buffer + *used, size - *used, "-1");
    return;
  }
  if (attn_dim_is_constant(dim)) {
    *used += (size_t)snprintf(buffer + *used, size - *used, "%" PRId64, dim);
    return;
  }
  const attn_dim_expr *e = attn_graph_dim_expr(graph, dim);
  if (!e) {
    *used += (size_t)snprintf(buffer + *used, size - *used, "?");
    return;
  }
  if (e->kind == ATTN_DIM_SYMBOL) {
    *used += (size_t)snprintf(buffer + *used, size - *used, "%s", e->name);
    return;
  }
  int precedence = e->kind == ATTN_DIM_ADD || e->kind == ATTN_DIM_SUB ? 1 : 2;
  bool parens = precedence < parent_precedence;
  if (parens && *used < size)
    *used += (size_t)snprintf(buffer + *used, size - *used, "(");
  format_dim(graph, e->lhs, precedence, buffer, size, used);
  if (*used < size)
    *used += (size_t)snprintf(buffer + *used, size - *used, " %c ", " +-*/"[e->kind]);
  // The right operand of - and / binds tighter, so a - (b + c) keeps its parentheses.
  format_dim(graph, e->rhs, precedence + (e->kind == ATTN_DIM_SUB || e->kind == ATTN_DIM_DIV),
             buffer, size, used);
  if (parens && *used < size)
    *used += (size_t)snprintf(buffer + *used, size - *used, ")");
}

void attn_graph_dim_format(const attn_graph *graph, attn_dim dim, char *buffer,
                           size_t buffer_size) {
  size_t used = 0;
  if (buffer_size == 0)
    return;
  buffer[0] = '\0';
  format_dim(graph, dim, 0, buffer, buffer_size, &used);
}

void attn_graph_type_format(const attn_graph *graph, const attn_type *type, char *buffer,
                            size_t buffer_size) {
  if (buffer_size == 0)
    return;
  size_t used = (size_t)snprintf(buffer, buffer_size, "%s[", attn_dtype_name(type->dtype));
  for (uint32_t i = 0; i < type->rank && used < buffer_size; i++) {
    if (i)
      used += (size_t)snprintf(buffer + used, buffer_size - used, ", ");
    format_dim(graph, type->dims[i], 0, buffer, buffer_size, &used);
  }
  if (used < buffer_size)
    snprintf(buffer + used, buffer_size - used, "]");
}
