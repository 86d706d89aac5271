// The verifier: structural checks plus re-running shape inference on every live node.
// It runs after parsing and (in debug builds) after every pass.
#include <string.h>

#include "ir/ir.h"

static attn_status node_error(attn_graph *graph, const attn_node *node, const char *what,
                              uint32_t index) {
  return attn_graph_error(graph, node->loc, ATTN_ERROR_INVALID_GRAPH, "verifier: %s: %s %u",
                          attn_op_get_info(node->op)->name, what, index);
}

// True when `id` is a graph input or the output of a live node before `before`.
static bool is_defined_before(const attn_graph *graph, attn_value_id id, uint32_t before) {
  if (id.index == 0 || id.index >= graph->value_count)
    return false;
  const attn_value *value = &graph->values[id.index];
  if (value->producer.index == 0) {
    for (uint32_t i = 0; i < graph->input_count; i++)
      if (graph->inputs[i].index == id.index)
        return true;
    return false;
  }
  return value->producer.index < before && !graph->nodes[value->producer.index].is_dead;
}

attn_status attn_graph_verify(attn_graph *graph) {
  for (uint32_t i = 0; i < graph->input_count; i++) {
    attn_value_id id = graph->inputs[i];
    if (id.index == 0 || id.index >= graph->value_count || graph->values[id.index].producer.index)
      return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                              "verifier: input %u is not an input value", i);
  }
  attn_type inputs[64], outputs[256];
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    const attn_op_info *info = attn_op_get_info(node->op);
    if (!info)
      return attn_graph_error(graph, node->loc, ATTN_ERROR_INVALID_GRAPH,
                              "verifier: node %u has an invalid op", n);
    if ((int)node->input_count < info->min_inputs ||
        (info->max_inputs >= 0 && (int)node->input_count > info->max_inputs) ||
        node->input_count > 64)
      return node_error(graph, node, "wrong number of inputs", node->input_count);
    if (node->output_count != attn_op_output_count(node->op, node->attrs) ||
        node->output_count > 256)
      return node_error(graph, node, "wrong number of outputs", node->output_count);
    if ((info->attrs_kind != ATTN_ATTRS_NONE) != (node->attrs != NULL))
      return node_error(graph, node, "attributes missing or unexpected", 0);
    for (uint32_t i = 0; i < node->input_count; i++) {
      if (!is_defined_before(graph, node->inputs[i], n))
        return node_error(graph, node, "uses a value not defined before it as input", i);
      inputs[i] = graph->values[node->inputs[i].index].type;
    }
    for (uint32_t i = 0; i < node->output_count; i++) {
      attn_value_id id = node->outputs[i];
      if (id.index == 0 || id.index >= graph->value_count ||
          graph->values[id.index].producer.index != n ||
          graph->values[id.index].output_index != i)
        return node_error(graph, node, "output does not point back to its node", i);
    }
    ATTN_RETURN_IF_ERROR(attn_infer_types(graph, node->op, node->attrs, inputs,
                                          node->input_count, node->loc, outputs,
                                          node->output_count));
    for (uint32_t i = 0; i < node->output_count; i++) {
      const attn_type *have = &graph->values[node->outputs[i].index].type;
      if (!attn_type_equal(have, &outputs[i])) {
        char want_text[160], have_text[160];
        attn_graph_type_format(graph, &outputs[i], want_text, sizeof(want_text));
        attn_graph_type_format(graph, have, have_text, sizeof(have_text));
        return attn_graph_error(graph, node->loc, ATTN_ERROR_INVALID_GRAPH,
                                "verifier: %s: output %u has type %s, shape inference says %s",
                                info->name, i, have_text, want_text);
      }
    }
  }
  if (graph->output_count == 0)
    return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                            "verifier: the graph has no outputs");
  for (uint32_t i = 0; i < graph->output_count; i++)
    if (!is_defined_before(graph, graph->outputs[i], graph->node_count))
      return attn_graph_error(graph, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                              "verifier: output '%s' is not defined", graph->output_names[i]);
  return ATTN_OK;
}
