// Graph rewriting: redirecting uses, counting them, and restoring the topological order after
// a pass appended nodes that earlier nodes now read. Passes build on these; none of them runs
// shape inference again (attn_graph_add_node did, and the verifier checks after every pass).
#include <string.h>

#include "ir/ir.h"

void attn_node_set_input(attn_graph *graph, attn_node_id node, uint32_t index,
                         attn_value_id value) {
  attn_node *n = attn_graph_node(graph, node);
  // Node inputs live in the graph's arena; the const in attn_node keeps passes from writing
  // them by accident, this is the one place that does it on purpose.
  ((attn_value_id *)n->inputs)[index] = value;
}

uint32_t attn_graph_replace_uses(attn_graph *graph, attn_value_id from, attn_value_id to) {
  uint32_t replaced = 0;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    for (uint32_t i = 0; i < node->input_count; i++) {
      if (node->inputs[i].index == from.index) {
        attn_node_set_input(graph, (attn_node_id){n}, i, to);
        replaced++;
      }
    }
  }
  for (uint32_t i = 0; i < graph->output_count; i++) {
    if (graph->outputs[i].index == from.index) {
      graph->outputs[i] = to;
      replaced++;
    }
  }
  return replaced;
}

attn_status attn_graph_count_uses(const attn_graph *graph, attn_arena *arena,
                                  uint32_t **out_counts) {
  uint32_t *counts = attn_arena_calloc(arena, graph->value_count, sizeof(*counts));
  *out_counts = counts;
  if (!counts)
    return attn_diag_error(graph->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    for (uint32_t i = 0; i < node->input_count; i++)
      counts[node->inputs[i].index]++;
  }
  for (uint32_t i = 0; i < graph->output_count; i++)
    counts[graph->outputs[i].index]++;
  return ATTN_OK;
}

attn_status attn_graph_remove_unused(attn_graph *graph, attn_arena *scratch,
                                     uint32_t *out_removed) {
  uint32_t removed = 0;
  if (out_removed)
    *out_removed = 0;
  uint32_t *uses;
  ATTN_RETURN_IF_ERROR(attn_graph_count_uses(graph, scratch, &uses));
  // A node is pushed once at the start and once per output whose count drops to 0. Use counts,
  // not a backward sweep, so a graph out of topological order (mid-pass) is handled too.
  uint32_t *stack =
      attn_arena_calloc(scratch, (size_t)graph->node_count + graph->value_count, sizeof(*stack));
  if (!stack)
    return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  size_t depth = 0;
  for (uint32_t n = graph->node_count; n-- > 1;)
    stack[depth++] = n;
  while (depth) {
    attn_node *node = &graph->nodes[stack[--depth]];
    bool is_read = false;
    for (uint32_t i = 0; i < node->output_count && !is_read; i++)
      is_read = uses[node->outputs[i].index] > 0;
    if (node->is_dead || is_read)
      continue;
    node->is_dead = true;
    removed++;
    for (uint32_t i = 0; i < node->input_count; i++) {
      attn_value_id v = node->inputs[i];
      if (--uses[v.index] == 0 && graph->values[v.index].producer.index)
        stack[depth++] = graph->values[v.index].producer.index;
    }
  }
  if (out_removed)
    *out_removed = removed;
  return ATTN_OK;
}

bool attn_type_is_concrete(const attn_type *type) {
  for (uint32_t d = 0; d < type->rank; d++)
    if (!attn_dim_is_constant(type->dims[d]))
      return false;
  return true;
}

static bool dim_is_concrete(attn_dim dim) {
  return attn_dim_is_constant(dim) || dim == ATTN_DIM_INFER;
}

bool attn_node_attrs_are_concrete(const attn_node *node) {
  const attn_attrs_info *info = attn_attrs_get_info(attn_op_get_info(node->op)->attrs_kind);
  const char *attrs = node->attrs;
  if (!attrs)
    return true;
  for (uint32_t f = 0; f < info->field_count; f++) {
    const attn_field_info *field = &info->fields[f];
    const char *at = attrs + field->offset;
    if (field->type == ATTN_FIELD_DIM && !dim_is_concrete(*(const attn_dim *)at))
      return false;
    if (field->type == ATTN_FIELD_TYPE && !attn_type_is_concrete((const attn_type *)at))
      return false;
    if (field->type == ATTN_FIELD_DIMS) {
      const attn_dim *dims = *(const attn_dim *const *)at;
      uint32_t count = *(const uint32_t *)(attrs + field->count_offset);
      for (uint32_t i = 0; i < count; i++)
        if (!dim_is_concrete(dims[i]))
          return false;
    }
  }
  return true;
}

const attn_node *attn_value_producer(const attn_graph *graph, attn_value_id value) {
  attn_node_id producer = graph->values[value.index].producer;
  if (producer.index == 0 || graph->nodes[producer.index].is_dead)
    return NULL;
  return &graph->nodes[producer.index];
}

const attn_constant_attrs *attn_value_constant(const attn_graph *graph, attn_value_id value) {
  const attn_node *node = attn_value_producer(graph, value);
  return node && node->op == ATTN_OP_CONSTANT ? node->attrs : NULL;
}

// Compaction: a depth-first walk that places each live node after the producers of its
// inputs, visiting nodes in their current order, so an already sorted graph keeps its order
// and a node a pass appended moves up to just before its first user. Nodes are moved whole, so
// their kernel (and their values' buffers) survive; a partitioned graph stays partitioned.
attn_status attn_graph_compact(attn_graph *graph) {
  uint32_t count = graph->node_count;
  attn_allocator allocator = graph->allocator;
  size_t order_size = (size_t)count * sizeof(uint32_t);
  size_t stack_size = (size_t)count * sizeof(uint32_t) * 2;
  size_t nodes_size = (size_t)count * sizeof(attn_node);
  uint32_t *order = attn_allocator_alloc(allocator, order_size);
  uint32_t *stack = attn_allocator_alloc(allocator, stack_size); // (node, next input) pairs
  uint8_t *state = attn_allocator_calloc(allocator, count, 1);   // 0 new, 1 open, 2 placed
  attn_node *nodes = attn_allocator_alloc(allocator, nodes_size);
  attn_status status = ATTN_OK;
  if (!order || !stack || !state || !nodes) {
    status = attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    goto done;
  }
  uint32_t placed = 0;
  for (uint32_t root = 1; root < count && status == ATTN_OK; root++) {
    if (graph->nodes[root].is_dead || state[root])
      continue;
    uint32_t depth = 0;
    stack[0] = root;
    stack[1] = 0;
    state[root] = 1;
    depth = 1;
    while (depth) {
      uint32_t n = stack[2 * (depth - 1)];
      uint32_t *next = &stack[2 * (depth - 1) + 1];
      const attn_node *node = &graph->nodes[n];
      if (*next < node->input_count) {
        attn_node_id producer = graph->values[node->inputs[(*next)++].index].producer;
        uint32_t p = producer.index;
        if (p == 0 || graph->nodes[p].is_dead || state[p] == 2)
          continue;
        if (state[p] == 1) {
          status = attn_graph_error(graph, node->loc, ATTN_ERROR_INVALID_GRAPH,
                                    "the graph has a cycle through %s",
                                    attn_op_get_info(node->op)->name);
          break;
        }
        state[p] = 1;
        stack[2 * depth] = p;
        stack[2 * depth + 1] = 0;
        depth++;
        continue;
      }
      state[n] = 2;
      order[placed++] = n;
      depth--;
    }
  }
  if (status != ATTN_OK)
    goto done;
  // Old ids to new ones, in the stack's memory; values of dropped nodes get no producer.
  uint32_t *new_id = stack;
  memset(new_id, 0, (size_t)count * sizeof(uint32_t));
  nodes[0] = graph->nodes[0];
  for (uint32_t i = 0; i < placed; i++) {
    nodes[i + 1] = graph->nodes[order[i]];
    new_id[order[i]] = i + 1;
  }
  for (uint32_t v = 1; v < graph->value_count; v++) {
    attn_value *value = &graph->values[v];
    if (value->producer.index)
      value->producer.index = new_id[value->producer.index];
  }
  memcpy(graph->nodes, nodes, (size_t)(placed + 1) * sizeof(attn_node));
  graph->node_count = placed + 1;
  // Nodes keep their kernel; a kernel's count follows the nodes dropped here.
  for (uint32_t k = 0; k < graph->kernel_count; k++)
    graph->kernels[k].node_count = 0;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    uint32_t k = graph->nodes[n].kernel;
    if (k && k < graph->kernel_count)
      graph->kernels[k].node_count++;
  }

done:
  attn_allocator_free(allocator, order, order_size);
  attn_allocator_free(allocator, stack, stack_size);
  attn_allocator_free(allocator, state, count);
  attn_allocator_free(allocator, nodes, nodes_size);
  return status;
}
