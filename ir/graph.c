// Graph construction: values, nodes, inputs and outputs, with shape inference on every
// node added. Arrays grow through the graph's allocator; everything else is arena memory.
#include <stdio.h>
#include <string.h>

#include "ir/ir.h"

static const attn_op_info op_infos[ATTN_OP_COUNT] = {
#define ATTN_OP(e, text, min_in, max_in, out, attrs, fl, infer, eval)                              \
  [ATTN_OP_##e] = {text, min_in, max_in, out, ATTN_ATTRS_##attrs, fl},
#include "ir/ops.def"
#undef ATTN_OP
};

const attn_op_info *attn_op_get_info(attn_op op) {
  return (unsigned)op < ATTN_OP_COUNT ? &op_infos[op] : NULL;
}

bool attn_op_from_name(const char *name, size_t length, attn_op *out_op) {
  for (int op = 0; op < ATTN_OP_COUNT; op++) {
    if (strlen(op_infos[op].name) == length && memcmp(op_infos[op].name, name, length) == 0) {
      *out_op = (attn_op)op;
      return true;
    }
  }
  return false;
}

const char *attn_kernel_kind_name(attn_kernel_kind kind) {
  static const char *const names[ATTN_KERNEL_KIND_COUNT] = {
      [ATTN_KERNEL_ELEMENTWISE] = "elementwise",
      [ATTN_KERNEL_NORM] = "norm",
      [ATTN_KERNEL_GEMM] = "gemm",
      [ATTN_KERNEL_ATTENTION] = "attention",
      [ATTN_KERNEL_REDUCTION] = "reduction",
      [ATTN_KERNEL_GATHER] = "gather",
      [ATTN_KERNEL_TOPK] = "topk",
      [ATTN_KERNEL_ROPE] = "rope",
      [ATTN_KERNEL_LAYOUT] = "layout",
      [ATTN_KERNEL_ALIAS] = "alias",
      [ATTN_KERNEL_OTHER] = "other",
  };
  return (unsigned)kind < ATTN_KERNEL_KIND_COUNT ? names[kind] : NULL;
}

bool attn_type_equal(const attn_type *a, const attn_type *b) {
  if (a->dtype != b->dtype || a->rank != b->rank)
    return false;
  for (uint32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i])
      return false;
  return true;
}

attn_status attn_graph_create(attn_allocator allocator, attn_diag *diag, const char *name,
                              attn_graph **out_graph) {
  *out_graph = NULL;
  attn_graph *graph = attn_allocator_calloc(allocator, 1, sizeof(*graph));
  if (!graph)
    return ATTN_ERROR_OUT_OF_MEMORY;
  graph->allocator = allocator;
  graph->diag = diag;
  attn_arena_init(&graph->arena, allocator);
  void *nodes = NULL, *values = NULL;
  graph->name = attn_arena_strdup(&graph->arena, name ? name : "main");
  if (!graph->name ||
      !attn_array_reserve(allocator, &nodes, &graph->node_capacity, 64, sizeof(attn_node)) ||
      !attn_array_reserve(allocator, &values, &graph->value_capacity, 64, sizeof(attn_value))) {
    graph->nodes = nodes;
    graph->values = values;
    attn_graph_destroy(graph);
    return ATTN_ERROR_OUT_OF_MEMORY;
  }
  graph->nodes = nodes;
  graph->values = values;
  memset(&graph->nodes[0], 0, sizeof(attn_node));
  memset(&graph->values[0], 0, sizeof(attn_value));
  graph->node_count = 1;
  graph->value_count = 1;
  *out_graph = graph;
  return ATTN_OK;
}

void attn_graph_destroy(attn_graph *graph) {
  if (!graph)
    return;
  attn_allocator allocator = graph->allocator;
  attn_allocator_free(allocator, graph->nodes, graph->node_capacity * sizeof(attn_node));
  attn_allocator_free(allocator, graph->values, graph->value_capacity * sizeof(attn_value));
  attn_allocator_free(allocator, graph->inputs, graph->input_capacity * sizeof(attn_value_id));
  attn_allocator_free(allocator, graph->dims, graph->dim_capacity * sizeof(attn_dim_expr));
  attn_arena_deinit(&graph->arena);
  attn_allocator_free(allocator, graph, sizeof(*graph));
}

void *attn_graph_alloc(attn_graph *graph, size_t size) {
  return attn_arena_alloc(&graph->arena, size, 16);
}

char *attn_graph_strdup(attn_graph *graph, const char *text, size_t length) {
  return attn_arena_strndup(&graph->arena, text, length);
}

attn_status attn_graph_error(attn_graph *graph, attn_loc loc, attn_status status,
                             const char *format, ...) {
  va_list args;
  va_start(args, format);
  attn_diag_verror(graph->diag, loc, status, format, args);
  va_end(args);
  return status;
}

static attn_status out_of_memory(attn_graph *graph, attn_loc loc) {
  return attn_graph_error(graph, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
}

// Appends a value and returns its id, or none when memory runs out.
static attn_value_id new_value(attn_graph *graph, const attn_type *type, attn_node_id producer,
                               uint32_t output_index, const char *name) {
  void *values = graph->values;
  if (graph->value_count == UINT32_MAX ||
      !attn_array_reserve(graph->allocator, &values, &graph->value_capacity,
                          (size_t)graph->value_count + 1, sizeof(attn_value)))
    return ATTN_VALUE_NONE;
  graph->values = values;
  attn_value_id id = {graph->value_count++};
  graph->values[id.index] = (attn_value){*type, producer, output_index, name, 0};
  return id;
}

attn_status attn_graph_add_input(attn_graph *graph, const char *name, const attn_type *type,
                                 attn_loc loc, attn_value_id *out_value) {
  *out_value = ATTN_VALUE_NONE;
  for (uint32_t i = 0; i < graph->input_count; i++) {
    const attn_value *other = attn_graph_value(graph, graph->inputs[i]);
    if (strcmp(other->name, name) == 0)
      return attn_graph_error(graph, loc, ATTN_ERROR_INVALID_GRAPH, "duplicate input '%s'",
                              name);
  }
  const char *copy = attn_arena_strdup(&graph->arena, name);
  void *inputs = graph->inputs;
  if (!copy || !attn_array_reserve(graph->allocator, &inputs, &graph->input_capacity,
                                   (size_t)graph->input_count + 1, sizeof(attn_value_id)))
    return out_of_memory(graph, loc);
  graph->inputs = inputs;
  attn_value_id id = new_value(graph, type, ATTN_NODE_NONE, 0, copy);
  if (!id.index)
    return out_of_memory(graph, loc);
  graph->inputs[graph->input_count++] = id;
  *out_value = id;
  return ATTN_OK;
}

uint32_t attn_op_output_count(attn_op op, const void *attrs) {
  const attn_op_info *info = attn_op_get_info(op);
  if (info->outputs >= 0)
    return (uint32_t)info->outputs;
  if (op == ATTN_OP_SPLIT)
    return ((const attn_split_attrs *)attrs)->count;
  if (op == ATTN_OP_ATTENTION)
    return ((const attn_attention_attrs *)attrs)->has_lse ? 2 : 1;
  return 1;
}

attn_status attn_graph_add_node(attn_graph *graph, attn_op op, const attn_value_id *inputs,
                                uint32_t input_count, const void *attrs, attn_loc loc,
                                attn_node_id *out_node) {
  if (out_node)
    *out_node = ATTN_NODE_NONE;
  const attn_op_info *info = attn_op_get_info(op);
  if (!info)
    return attn_graph_error(graph, loc, ATTN_ERROR_INVALID_ARGUMENT, "invalid op %d", (int)op);
  if ((int)input_count < info->min_inputs ||
      (info->max_inputs >= 0 && (int)input_count > info->max_inputs)) {
    if (info->min_inputs == info->max_inputs)
      return attn_graph_error(graph, loc, ATTN_ERROR_INVALID_GRAPH,
                              "%s takes %d input%s, got %u", info->name, info->min_inputs,
                              info->min_inputs == 1 ? "" : "s", input_count);
    return attn_graph_error(graph, loc, ATTN_ERROR_INVALID_GRAPH,
                            "%s takes %d to %d inputs, got %u", info->name, info->min_inputs,
                            info->max_inputs < 0 ? 1 << 30 : info->max_inputs, input_count);
  }
  const attn_attrs_info *attrs_info = attn_attrs_get_info(info->attrs_kind);
  if (!attrs)
    attrs = attrs_info->defaults;
  attn_type input_types[64];
  attn_type *types = input_types;
  if (input_count > 64) {
    types = attn_arena_alloc(&graph->arena, input_count * sizeof(attn_type), 16);
    if (!types)
      return out_of_memory(graph, loc);
  }
  for (uint32_t i = 0; i < input_count; i++) {
    if (inputs[i].index == 0 || inputs[i].index >= graph->value_count)
      return attn_graph_error(graph, loc, ATTN_ERROR_INVALID_ARGUMENT,
                              "%s: input %u is not a value of this graph", info->name, i);
    types[i] = graph->values[inputs[i].index].type;
  }
  uint32_t output_count = attn_op_output_count(op, attrs);
  if (output_count == 0 || output_count > 256)
    return attn_graph_error(graph, loc, ATTN_ERROR_INVALID_GRAPH, "%s: %u outputs", info->name,
                            output_count);
  attn_type output_types[256];
  ATTN_RETURN_IF_ERROR(attn_infer_types(graph, op, attrs, types, input_count, loc, output_types,
                                        output_count));

  void *nodes = graph->nodes;
  attn_value_id *input_copy = attn_arena_alloc(&graph->arena, input_count * sizeof(*inputs) + 1, 16);
  attn_value_id *output_ids = attn_arena_alloc(&graph->arena, output_count * sizeof(*inputs), 16);
  void *attrs_copy = NULL;
  if (attrs_info->size) {
    attrs_copy = attn_arena_alloc(&graph->arena, attrs_info->size, 16);
    if (attrs_copy)
      memcpy(attrs_copy, attrs, attrs_info->size);
  }
  if (!input_copy || !output_ids || (attrs_info->size && !attrs_copy) ||
      graph->node_count == UINT32_MAX ||
      !attn_array_reserve(graph->allocator, &nodes, &graph->node_capacity,
                          (size_t)graph->node_count + 1, sizeof(attn_node)))
    return out_of_memory(graph, loc);
  graph->nodes = nodes;
  if (input_count)
    memcpy(input_copy, inputs, input_count * sizeof(*inputs));
  attn_node_id id = {graph->node_count};
  uint32_t first_value = graph->value_count;
  for (uint32_t i = 0; i < output_count; i++) {
    output_ids[i] = new_value(graph, &output_types[i], id, i, NULL);
    if (!output_ids[i].index) {
      graph->value_count = first_value;
      return out_of_memory(graph, loc);
    }
  }
  graph->nodes[graph->node_count++] =
      (attn_node){op, input_count, output_count, input_copy, output_ids, attrs_copy, loc, false, 0};
  if (out_node)
    *out_node = id;
  return ATTN_OK;
}

attn_value_id attn_node_output(const attn_graph *graph, attn_node_id node, uint32_t index) {
  const attn_node *n = attn_graph_node(graph, node);
  return index < n->output_count ? n->outputs[index] : ATTN_VALUE_NONE;
}

attn_status attn_graph_set_outputs(attn_graph *graph, const attn_value_id *values,
                                   const char *const *names, uint32_t count) {
  attn_value_id *ids = attn_arena_alloc(&graph->arena, count * sizeof(*ids) + 1, 16);
  const char **name_copies = attn_arena_alloc(&graph->arena, count * sizeof(char *) + 1, 16);
  if (!ids || !name_copies)
    return out_of_memory(graph, ATTN_LOC_NONE);
  for (uint32_t i = 0; i < count; i++) {
    if (values[i].index == 0 || values[i].index >= graph->value_count)
      return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                              "output %u is not a value of this graph", i);
    ids[i] = values[i];
    name_copies[i] = attn_arena_strdup(&graph->arena, names[i]);
    if (!name_copies[i])
      return out_of_memory(graph, ATTN_LOC_NONE);
  }
  graph->outputs = ids;
  graph->output_names = name_copies;
  graph->output_count = count;
  return ATTN_OK;
}
