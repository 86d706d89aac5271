// specialize-shapes: substitutes the symbols bound with -D (ctx->symbol_values) by their values
// everywhere: graph input types, every value's type, and every DIM, DIMS and TYPE attribute of
// the schema (reshape and expand shapes, split sizes, iota types and starts). A derived dim
// whose symbols are all bound becomes a constant (T_past + T with both bound); one with some
// bound is rebuilt over the rest (T_past + T with T = 8 becomes T_past + 8). The inputs' declared
// types become concrete, so running the graph with other sizes fails on the input check.
//
// With no bindings it changes nothing. A binding that makes a dim negative or a division inexact,
// or under which an op no longer type-checks, is an error that names the bindings.
// Requires: verified graph. Invalidates: nothing (node and value ids are kept).
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "passes/pass.h"

typedef struct specializer {
  attn_pass_context *ctx;
  attn_graph *graph;
  const int64_t *values; // graph->symbol_count entries, < 0 unbound
  attn_dim *map;         // the new dim of each entry of the dim table, by index
  uint32_t map_count;    // entries of the dim table when the pass started
  bool is_changed;
} specializer;

static attn_status out_of_memory(specializer *sp) {
  return attn_diag_error(sp->ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "specialize-shapes: out of memory");
}

// "B=2, T=8": the bindings, for messages.
static void format_bindings(const specializer *sp, char *buffer, size_t size) {
  size_t used = 0;
  buffer[0] = '\0';
  for (uint32_t s = 0; s < sp->graph->symbol_count && used < size; s++)
    if (sp->values[s] >= 0)
      used += (size_t)snprintf(buffer + used, size - used, "%s%s=%" PRId64, used ? ", " : "",
                               attn_graph_symbol_name(sp->graph, s), sp->values[s]);
}

static attn_dim map_dim(const specializer *sp, attn_dim dim) {
  if (attn_dim_is_constant(dim) || dim == ATTN_DIM_INFER)
    return dim;
  uint64_t index = (uint64_t)(-(dim + 1));
  return index < sp->map_count ? sp->map[index] : dim;
}

// Whether every symbol `dim` depends on is bound.
static bool is_bound(const specializer *sp, attn_dim dim) {
  const attn_dim_expr *e = attn_graph_dim_expr(sp->graph, dim);
  if (!e)
    return true;
  if (e->kind == ATTN_DIM_SYMBOL)
    return e->symbol < sp->graph->symbol_count && sp->values[e->symbol] >= 0;
  return is_bound(sp, e->lhs) && is_bound(sp, e->rhs);
}

// Fills the map. An expression's operands are interned before it, so they precede it in the
// table and are mapped by the time it is reached.
static attn_status build_map(specializer *sp) {
  attn_graph *graph = sp->graph;
  for (uint32_t i = 0; i < sp->map_count; i++) {
    attn_dim dim = -(attn_dim)i - 1;
    attn_dim_expr e = graph->dims[i]; // a copy: interning below may move the table
    sp->map[i] = dim;
    if (is_bound(sp, dim)) {
      int64_t value;
      if (attn_graph_dim_eval(graph, dim, sp->values, &value) != ATTN_OK) {
        char text[96], bindings[256];
        attn_graph_dim_format(graph, dim, text, sizeof(text));
        format_bindings(sp, bindings, sizeof(bindings));
        return attn_diag_error(sp->ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                               "specialize-shapes: dim %s is negative or not an exact division "
                               "with %s",
                               text, bindings);
      }
      sp->map[i] = value;
    } else if (e.kind != ATTN_DIM_SYMBOL) {
      attn_dim lhs = map_dim(sp, e.lhs), rhs = map_dim(sp, e.rhs);
      if (lhs != e.lhs || rhs != e.rhs)
        ATTN_RETURN_IF_ERROR(attn_graph_dim_binary(graph, e.kind, lhs, rhs, &sp->map[i]));
    }
  }
  return ATTN_OK;
}

// Substitutes the dims of `type` in place.
static void specialize_type(specializer *sp, attn_type *type) {
  for (uint32_t d = 0; d < type->rank && d < ATTN_MAX_RANK; d++) {
    attn_dim dim = map_dim(sp, type->dims[d]);
    sp->is_changed = sp->is_changed || dim != type->dims[d];
    type->dims[d] = dim;
  }
}

static bool type_changes(const specializer *sp, const attn_type *type) {
  for (uint32_t d = 0; d < type->rank && d < ATTN_MAX_RANK; d++)
    if (map_dim(sp, type->dims[d]) != type->dims[d])
      return true;
  return false;
}

// Whether some DIM, DIMS or TYPE field of `attrs` changes.
static bool attrs_change(const specializer *sp, const attn_attrs_info *info, const char *attrs) {
  for (uint32_t f = 0; f < info->field_count; f++) {
    const attn_field_info *field = &info->fields[f];
    const char *at = attrs + field->offset;
    if (field->type == ATTN_FIELD_DIM &&
        map_dim(sp, *(const attn_dim *)at) != *(const attn_dim *)at)
      return true;
    if (field->type == ATTN_FIELD_TYPE && type_changes(sp, (const attn_type *)at))
      return true;
    if (field->type == ATTN_FIELD_DIMS) {
      const attn_dim *dims = *(const attn_dim *const *)at;
      uint32_t count = *(const uint32_t *)(attrs + field->count_offset);
      for (uint32_t i = 0; i < count; i++)
        if (map_dim(sp, dims[i]) != dims[i])
          return true;
    }
  }
  return false;
}

// Gives node `n` a substituted copy of its attributes (in the graph's arena) when they change.
static attn_status specialize_attrs(specializer *sp, uint32_t n) {
  attn_graph *graph = sp->graph;
  attn_node *node = &graph->nodes[n];
  const attn_attrs_info *info = attn_attrs_get_info(attn_op_get_info(node->op)->attrs_kind);
  if (!node->attrs || !attrs_change(sp, info, node->attrs))
    return ATTN_OK;
  char *copy = attn_graph_alloc(graph, info->size);
  if (!copy)
    return out_of_memory(sp);
  memcpy(copy, node->attrs, info->size);
  for (uint32_t f = 0; f < info->field_count; f++) {
    const attn_field_info *field = &info->fields[f];
    char *at = copy + field->offset;
    if (field->type == ATTN_FIELD_DIM)
      *(attn_dim *)at = map_dim(sp, *(attn_dim *)at);
    if (field->type == ATTN_FIELD_TYPE)
      specialize_type(sp, (attn_type *)at);
    if (field->type == ATTN_FIELD_DIMS) {
      const attn_dim *dims = *(const attn_dim *const *)at;
      uint32_t count = *(const uint32_t *)(copy + field->count_offset);
      attn_dim *mapped = attn_graph_alloc(graph, count * sizeof(*mapped) + 1);
      if (!mapped)
        return out_of_memory(sp);
      for (uint32_t i = 0; i < count; i++)
        mapped[i] = map_dim(sp, dims[i]);
      *(const attn_dim **)at = mapped;
    }
  }
  node->attrs = copy;
  sp->is_changed = true;
  return ATTN_OK;
}

// Shape inference on node `n` must give exactly its substituted output types; otherwise the
// bindings contradict the graph (a slice whose end passes the bound size, say).
static attn_status check_node(specializer *sp, uint32_t n) {
  attn_graph *graph = sp->graph;
  const attn_node *node = &graph->nodes[n];
  attn_type inputs[64], outputs[256];
  char bindings[256];
  if (node->input_count > 64 || node->output_count > 256)
    return ATTN_OK; // the verifier reports these
  for (uint32_t i = 0; i < node->input_count; i++)
    inputs[i] = attn_graph_value(graph, node->inputs[i])->type;
  attn_status status = attn_infer_types(graph, node->op, node->attrs, inputs, node->input_count,
                                        node->loc, outputs, node->output_count);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return status;
  if (status != ATTN_OK) {
    format_bindings(sp, bindings, sizeof(bindings));
    attn_diag_note(sp->ctx->diag, node->loc, "after specialize-shapes substituted %s", bindings);
    return ATTN_ERROR_INVALID_ARGUMENT;
  }
  for (uint32_t i = 0; i < node->output_count; i++) {
    const attn_type *declared = &attn_graph_value(graph, node->outputs[i])->type;
    if (attn_type_equal(&outputs[i], declared))
      continue;
    char want[160], have[160];
    format_bindings(sp, bindings, sizeof(bindings));
    attn_graph_type_format(graph, declared, want, sizeof(want));
    attn_graph_type_format(graph, &outputs[i], have, sizeof(have));
    return attn_diag_error(sp->ctx->diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "specialize-shapes: with %s, %s gives %s where the graph has %s",
                           bindings, attn_op_get_info(node->op)->name, have, want);
  }
  return ATTN_OK;
}

attn_status attn_pass_specialize_shapes(attn_pass_context *ctx, attn_graph *graph) {
  bool is_any_bound = false;
  for (uint32_t s = 0; ctx->symbol_values && s < graph->symbol_count; s++)
    is_any_bound = is_any_bound || ctx->symbol_values[s] >= 0;
  if (!is_any_bound)
    return ATTN_OK;
  specializer sp = {ctx, graph, ctx->symbol_values, NULL, graph->dim_count, false};
  sp.map = attn_arena_calloc(&ctx->scratch, (size_t)sp.map_count + 1, sizeof(*sp.map));
  if (!sp.map)
    return out_of_memory(&sp);
  ATTN_RETURN_IF_ERROR(build_map(&sp));
  // Every value: graph inputs and node outputs alike (dead nodes' values too, harmlessly).
  for (uint32_t v = 1; v < graph->value_count; v++)
    specialize_type(&sp, &graph->values[v].type);
  for (uint32_t n = 1; n < graph->node_count; n++)
    if (!graph->nodes[n].is_dead)
      ATTN_RETURN_IF_ERROR(specialize_attrs(&sp, n));
  for (uint32_t n = 1; n < graph->node_count; n++)
    if (!graph->nodes[n].is_dead)
      ATTN_RETURN_IF_ERROR(check_node(&sp, n));
  ctx->changed = ctx->changed || sp.is_changed;
  return ATTN_OK;
}
