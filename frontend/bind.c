// Weight binding: WEIGHT node names → tensors of a weight set, checked against the declared
// types. Views are borrowed from the weight set; only dtype conversions allocate.
#include "frontend/bind.h"

#include <stdio.h>
#include <string.h>

enum { NAMES_TEXT_SIZE = 1024, TYPE_TEXT_SIZE = 128 };

// The tensor named `name`, or the one named `name` without its first dotted component (a
// checkpoint of the base model: "h.0.ln_1.weight" for "transformer.h.0.ln_1.weight"). The
// stripped form is tried only when it still has a dot, so "lm_head.weight" never binds a
// tensor called "weight".
static bool find_with_base_fallback(const attn_weights *weights, const char *name,
                                    attn_tensor *out_view, const char **out_file,
                                    const char **out_found_name) {
  if (attn_weights_find(weights, name, out_view, out_file)) {
    *out_found_name = name;
    return true;
  }
  const char *rest = strchr(name, '.');
  if (rest && strchr(rest + 1, '.') && attn_weights_find(weights, rest + 1, out_view, out_file)) {
    *out_found_name = rest + 1;
    return true;
  }
  return false;
}

// Appends "'a', 'a-stripped', 'b', ..." (every name find_with_base_fallback tries) to `buffer`.
static void format_names_tried(const attn_weight_attrs *attrs, char *buffer, size_t size) {
  size_t used = 0;
  buffer[0] = '\0';
  for (uint32_t i = 0; i < attrs->name_count && used < size; i++) {
    const char *name = attrs->names[i];
    used += (size_t)snprintf(buffer + used, size - used, "%s'%s'", i ? ", " : "", name);
    const char *rest = strchr(name, '.');
    if (rest && strchr(rest + 1, '.') && used < size)
      used += (size_t)snprintf(buffer + used, size - used, ", '%s'", rest + 1);
  }
}

static bool dtypes_convertible(attn_dtype from, attn_dtype to) {
  if (from == to)
    return true;
  if (from == ATTN_DTYPE_BOOL || to == ATTN_DTYPE_BOOL)
    return false;
  return attn_dtype_is_float(from) == attn_dtype_is_float(to);
}

// A copy of `view` in dtype `to`. Every conversion goes through double, which is exact for
// every float dtype here and for integers up to 2^53 (weights are never larger).
static attn_status convert(const attn_tensor *view, attn_dtype to, attn_allocator allocator,
                           attn_tensor *out_tensor) {
  ATTN_RETURN_IF_ERROR(attn_tensor_alloc(allocator, to, view->rank, view->dims, out_tensor));
  int64_t count = attn_tensor_element_count(view);
  if (view->dtype == ATTN_DTYPE_F32 && to != ATTN_DTYPE_F32) {
    const float *in = view->data;
    for (int64_t i = 0; i < count; i++) {
      uint16_t bits = to == ATTN_DTYPE_F16 ? attn_f32_to_f16(in[i]) : attn_f32_to_bf16(in[i]);
      memcpy((uint16_t *)out_tensor->data + i, &bits, sizeof(bits));
    }
    return ATTN_OK;
  }
  for (int64_t i = 0; i < count; i++)
    attn_tensor_set_f64(out_tensor, i, attn_tensor_get_f64(view, i));
  return ATTN_OK;
}

static bool shape_matches(const attn_tensor *view, const attn_type *type) {
  if (view->rank != type->rank)
    return false;
  for (uint32_t d = 0; d < type->rank; d++) {
    if (view->dims[d] != type->dims[d])
      return false;
  }
  return true;
}

static attn_status bind_node(const attn_node *node, const attn_weights *weights,
                             attn_allocator allocator, attn_diag *diag, attn_tensor *out_tensor,
                             bool *out_is_owned) {
  const attn_weight_attrs *attrs = node->attrs;
  attn_tensor view;
  const char *file = NULL, *found = NULL;
  bool is_found = false;
  for (uint32_t i = 0; i < attrs->name_count && !is_found; i++)
    is_found = find_with_base_fallback(weights, attrs->names[i], &view, &file, &found);
  if (!is_found) {
    char names[NAMES_TEXT_SIZE];
    format_names_tried(attrs, names, sizeof(names));
    return attn_diag_error(
        diag, node->loc, ATTN_ERROR_NOT_FOUND, "weight '%s' is not in %s (tried %s)",
        attrs->name_count ? attrs->names[0] : "", attn_weights_path(weights), names);
  }
  const char *shard = file ? file : "the weight set";
  char declared[TYPE_TEXT_SIZE], actual[TYPE_TEXT_SIZE];
  attn_tensor_format_type(attrs->type.dtype, attrs->type.rank, attrs->type.dims, declared,
                          sizeof(declared));
  attn_tensor_format_type(view.dtype, view.rank, view.dims, actual, sizeof(actual));
  if (!shape_matches(&view, &attrs->type))
    return attn_diag_error(diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "weight '%s' has shape %s in %s, but the model declares %s", found,
                           actual, shard, declared);
  if (!dtypes_convertible(view.dtype, attrs->type.dtype))
    return attn_diag_error(diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "weight '%s' is %s in %s, but the model declares %s", found, actual,
                           shard, declared);
  if (view.dtype == attrs->type.dtype) {
    *out_tensor = view;
    *out_is_owned = false;
    return ATTN_OK;
  }
  if (convert(&view, attrs->type.dtype, allocator, out_tensor) != ATTN_OK)
    return attn_diag_error(diag, node->loc, ATTN_ERROR_OUT_OF_MEMORY,
                           "out of memory converting weight '%s' from %s to %s", found,
                           attn_dtype_name(view.dtype), attn_dtype_name(attrs->type.dtype));
  *out_is_owned = true;
  return ATTN_OK;
}

attn_status attn_bind_weights(const attn_graph *graph, const attn_weights *weights,
                              attn_allocator allocator, attn_diag *diag,
                              attn_bound_weights *out_bound) {
  memset(out_bound, 0, sizeof(*out_bound));
  attn_bound_weights bound = {0};
  bound.node_count = graph->node_count;
  bound.by_node = attn_allocator_calloc(allocator, graph->node_count, sizeof(*bound.by_node));
  bound.is_owned = attn_allocator_calloc(allocator, graph->node_count, sizeof(*bound.is_owned));
  if (graph->node_count && (!bound.by_node || !bound.is_owned)) {
    attn_bound_weights_deinit(&bound, allocator);
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                           "out of memory binding weights");
  }
  for (uint32_t i = 1; i < graph->node_count; i++) {
    const attn_node *node = &graph->nodes[i];
    if (node->is_dead || node->op != ATTN_OP_WEIGHT)
      continue;
    attn_status status =
        bind_node(node, weights, allocator, diag, &bound.by_node[i], &bound.is_owned[i]);
    if (status != ATTN_OK) {
      attn_bound_weights_deinit(&bound, allocator);
      return status;
    }
  }
  *out_bound = bound;
  return ATTN_OK;
}

void attn_bound_weights_deinit(attn_bound_weights *bound, attn_allocator allocator) {
  for (uint32_t i = 0; bound->by_node && bound->is_owned && i < bound->node_count; i++) {
    if (bound->is_owned[i])
      attn_tensor_free(allocator, &bound->by_node[i]);
  }
  attn_allocator_free(allocator, bound->by_node, bound->node_count * sizeof(*bound->by_node));
  attn_allocator_free(allocator, bound->is_owned, bound->node_count * sizeof(*bound->is_owned));
  memset(bound, 0, sizeof(*bound));
}
