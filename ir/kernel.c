// The interface of each kernel of a partition: which nodes it runs, which values it reads from
// outside and which it leaves for others. Backends build their calls from it.
#include "ir/ir.h"

static bool is_computed(const attn_node *node) {
  return !node->is_dead && !(attn_op_get_info(node->op)->flags & ATTN_OP_LEAF);
}

attn_status attn_graph_kernel_io(const attn_graph *graph, attn_arena *arena,
                                 attn_kernel_io **out_io) {
  *out_io = NULL;
  uint32_t kernel_count = graph->kernel_count;
  if (kernel_count == 0)
    return ATTN_OK;
  attn_kernel_io *io = attn_arena_calloc(arena, kernel_count, sizeof(*io));
  // Per value: the kernel that last listed it as an input (so each is listed once per kernel),
  // and whether it leaves its kernel.
  uint32_t *listed_by = attn_arena_calloc(arena, graph->value_count, sizeof(*listed_by));
  bool *leaves = attn_arena_calloc(arena, graph->value_count, sizeof(*leaves));
  uint32_t *input_counts = attn_arena_calloc(arena, kernel_count, sizeof(*input_counts));
  uint32_t *output_counts = attn_arena_calloc(arena, kernel_count, sizeof(*output_counts));
  if (!io || !listed_by || !leaves || !input_counts || !output_counts)
    return ATTN_ERROR_OUT_OF_MEMORY;

  for (uint32_t o = 0; o < graph->output_count; o++)
    leaves[graph->outputs[o].index] = true;
  // Two sweeps: count, then fill. The first also finds each kernel's node range.
  for (int fill = 0; fill < 2; fill++) {
    for (uint32_t n = 1; n < graph->node_count; n++) {
      const attn_node *node = &graph->nodes[n];
      if (!is_computed(node) || node->kernel == 0 || node->kernel >= kernel_count)
        continue;
      uint32_t k = node->kernel;
      if (!fill) {
        if (io[k].first_node == 0)
          io[k].first_node = n;
        io[k].end_node = n + 1;
      }
      for (uint32_t i = 0; i < node->input_count; i++) {
        attn_value_id value = node->inputs[i];
        const attn_node *producer = attn_value_producer(graph, value);
        if (producer && producer->kernel == k && is_computed(producer))
          continue; // made inside this kernel
        if (producer && producer->op == ATTN_OP_IOTA)
          continue; // computed where it is used
        if (producer && is_computed(producer))
          leaves[value.index] = true;
        if (listed_by[value.index] == k + fill * kernel_count)
          continue;
        listed_by[value.index] = k + fill * kernel_count;
        if (fill)
          ((attn_value_id *)io[k].inputs)[io[k].input_count++] = value;
        else
          input_counts[k]++;
      }
    }
    if (fill)
      break;
    for (uint32_t n = 1; n < graph->node_count; n++) {
      const attn_node *node = &graph->nodes[n];
      if (!is_computed(node) || node->kernel == 0 || node->kernel >= kernel_count)
        continue;
      for (uint32_t o = 0; o < node->output_count; o++)
        output_counts[node->kernel] += leaves[node->outputs[o].index];
    }
    for (uint32_t k = 1; k < kernel_count; k++) {
      io[k].inputs = attn_arena_calloc(arena, input_counts[k] + 1, sizeof(attn_value_id));
      io[k].outputs = attn_arena_calloc(arena, output_counts[k] + 1, sizeof(attn_value_id));
      if (!io[k].inputs || !io[k].outputs)
        return ATTN_ERROR_OUT_OF_MEMORY;
    }
  }
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (!is_computed(node) || node->kernel == 0 || node->kernel >= kernel_count)
      continue;
    attn_kernel_io *k = &io[node->kernel];
    for (uint32_t o = 0; o < node->output_count; o++)
      if (leaves[node->outputs[o].index])
        ((attn_value_id *)k->outputs)[k->output_count++] = node->outputs[o];
  }
  *out_io = io;
  return ATTN_OK;
}
