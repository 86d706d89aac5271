// fold-constants: evaluates every node whose inputs are all constants, or iotas of constant
// type and start, with the reference evaluator, and replaces its outputs by CONSTANT nodes that
// keep the values' name hints. The evaluator runs on a temporary graph holding just that node
// and its leaf inputs, so the folded data is bit-for-bit what the graph would have computed.
//
// Not folded: weights (their data is bound later), leaves on their own (an iota is cheaper than
// its data), outputs with symbolic dims or attributes with symbolic dims, outputs larger than
// the option max-bytes (default 1 MiB), and nodes whose evaluation fails (an integer division
// by zero, a gather out of range): those stay, to fail at run time with the evaluator's message.
// Nodes left unused afterwards (the inputs only folded nodes read) are removed.
// Requires: verified graph. Invalidates: nothing beyond the nodes it replaces.
#include <string.h>

#include "ir/interp.h"
#include "passes/pass.h"

static const int64_t default_max_bytes = 1 << 20;

static attn_status out_of_memory(attn_pass_context *ctx) {
  return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "fold-constants: out of memory");
}

// A leaf whose value is known now: a constant, or an iota of constant type and start.
static bool is_known_leaf(const attn_node *node) {
  if (node->op == ATTN_OP_CONSTANT)
    return true;
  if (node->op != ATTN_OP_IOTA)
    return false;
  const attn_iota_attrs *iota = node->attrs;
  return attn_type_is_concrete(&iota->type) && attn_dim_is_constant(iota->start);
}

// Bytes of a concrete type, or false when it does not fit `limit`.
static bool fits(const attn_type *type, int64_t limit) {
  int64_t count = 1;
  for (uint32_t d = 0; d < type->rank; d++)
    if (__builtin_mul_overflow(count, type->dims[d], &count))
      return false;
  int64_t bytes;
  if (__builtin_mul_overflow(count, (int64_t)attn_dtype_size(type->dtype), &bytes))
    return false;
  return bytes <= limit;
}

// Whether node `n` can be folded under the size limit.
static bool is_foldable(const attn_graph *graph, uint32_t n, int64_t max_bytes) {
  const attn_node *node = &graph->nodes[n];
  if (node->is_dead || node->input_count == 0 || !attn_node_attrs_are_concrete(node))
    return false;
  for (uint32_t i = 0; i < node->input_count; i++) {
    const attn_node *producer = attn_value_producer(graph, node->inputs[i]);
    if (!producer || !is_known_leaf(producer))
      return false;
  }
  for (uint32_t i = 0; i < node->output_count; i++) {
    const attn_type *type = &attn_graph_value(graph, node->outputs[i])->type;
    if (!attn_type_is_concrete(type) || !fits(type, max_bytes))
      return false;
  }
  return true;
}

// Builds, in `scratch_graph`, the leaves node `n` reads and a copy of it, and evaluates it into
// `outputs` (node->output_count tensors). Attribute payloads stay in `graph`'s arena, which
// outlives the temporary graph.
static attn_status evaluate_in(const attn_graph *graph, uint32_t n, attn_graph *scratch_graph,
                               attn_allocator allocator, attn_diag *diag, attn_tensor *outputs) {
  const attn_node *node = &graph->nodes[n];
  attn_value_id inputs[64];
  attn_value_id *ids = inputs;
  if (node->input_count > 64) {
    ids = attn_graph_alloc(scratch_graph, node->input_count * sizeof(*ids));
    if (!ids)
      return ATTN_ERROR_OUT_OF_MEMORY;
  }
  for (uint32_t i = 0; i < node->input_count; i++) {
    const attn_node *leaf = attn_value_producer(graph, node->inputs[i]);
    attn_node_id id;
    ATTN_RETURN_IF_ERROR(
        attn_graph_add_node(scratch_graph, leaf->op, NULL, 0, leaf->attrs, leaf->loc, &id));
    ids[i] = attn_node_output(scratch_graph, id, 0);
  }
  attn_node_id copy;
  ATTN_RETURN_IF_ERROR(attn_graph_add_node(scratch_graph, node->op, ids, node->input_count,
                                           node->attrs, node->loc, &copy));
  const char **names = attn_graph_alloc(scratch_graph, node->output_count * sizeof(*names));
  attn_value_id *results = attn_graph_alloc(scratch_graph, node->output_count * sizeof(*results));
  if (!names || !results)
    return ATTN_ERROR_OUT_OF_MEMORY;
  for (uint32_t i = 0; i < node->output_count; i++) {
    names[i] = "folded";
    results[i] = attn_node_output(scratch_graph, copy, i);
  }
  ATTN_RETURN_IF_ERROR(attn_graph_set_outputs(scratch_graph, results, names, node->output_count));
  attn_interp_args args = {NULL, NULL, NULL};
  return attn_interp_run(scratch_graph, &args, allocator, diag, outputs);
}

// Evaluates node `n` into `outputs`. *out_is_folded is false, with ATTN_OK, when the evaluator
// rejects the node; only running out of memory is an error.
static attn_status evaluate(attn_pass_context *ctx, const attn_graph *graph, uint32_t n,
                            attn_tensor *outputs, bool *out_is_folded) {
  *out_is_folded = false;
  // The evaluator's complaints about this node belong to run time, not to this pass, so they
  // go to a private sink.
  attn_diag diag;
  attn_diag_init(&diag, graph->allocator);
  attn_graph *scratch_graph = NULL;
  attn_status status = attn_graph_create(graph->allocator, &diag, "fold", &scratch_graph);
  if (status == ATTN_OK)
    status = evaluate_in(graph, n, scratch_graph, graph->allocator, &diag, outputs);
  attn_graph_destroy(scratch_graph);
  attn_diag_deinit(&diag);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return out_of_memory(ctx);
  *out_is_folded = status == ATTN_OK;
  return ATTN_OK;
}

// Replaces the used outputs of node `n` by constants holding `outputs`; forward[v] records the
// replacement of each output value v.
static attn_status replace(attn_pass_context *ctx, attn_graph *graph, uint32_t n,
                           const attn_tensor *outputs, const uint32_t *uses, uint32_t *forward) {
  uint32_t output_count = graph->nodes[n].output_count;
  attn_loc loc = graph->nodes[n].loc;
  for (uint32_t i = 0; i < output_count; i++) {
    attn_value_id old = graph->nodes[n].outputs[i];
    if (!uses[old.index])
      continue;
    size_t size = 0;
    attn_tensor_size_bytes(&outputs[i], &size);
    void *data = attn_graph_alloc(graph, size ? size : 1);
    if (!data)
      return out_of_memory(ctx);
    if (size)
      memcpy(data, outputs[i].data, size);
    attn_constant_attrs attrs = {attn_graph_value(graph, old)->type, data};
    attn_node_id id;
    ATTN_RETURN_IF_ERROR(attn_graph_add_node(graph, ATTN_OP_CONSTANT, NULL, 0, &attrs, loc, &id));
    attn_value_id folded = attn_node_output(graph, id, 0);
    attn_graph_value(graph, folded)->name = attn_graph_value(graph, old)->name;
    forward[old.index] = folded.index;
  }
  graph->nodes[n].is_dead = true;
  return ATTN_OK;
}

attn_status attn_pass_fold_constants(attn_pass_context *ctx, attn_graph *graph) {
  int64_t max_bytes = attn_pass_option_int(ctx, "max-bytes", default_max_bytes);
  uint32_t *uses;
  ATTN_RETURN_IF_ERROR(attn_graph_count_uses(graph, &ctx->scratch, &uses));
  // Folded values are forwarded to their constants: each node reads its inputs through
  // `forward` when the walk reaches it, so a chain of constant nodes folds in one walk without
  // rescanning the graph for every replacement.
  uint32_t value_count = graph->value_count, node_count = graph->node_count;
  uint32_t *forward = attn_arena_calloc(&ctx->scratch, value_count, sizeof(*forward));
  attn_tensor *outputs = attn_arena_calloc(&ctx->scratch, 256, sizeof(*outputs));
  if (!forward || !outputs)
    return out_of_memory(ctx);
  for (uint32_t n = 1; n < node_count; n++) {
    if (graph->nodes[n].is_dead)
      continue;
    for (uint32_t i = 0; i < graph->nodes[n].input_count; i++) {
      uint32_t v = graph->nodes[n].inputs[i].index;
      if (v < value_count && forward[v])
        attn_node_set_input(graph, (attn_node_id){n}, i, (attn_value_id){forward[v]});
    }
    bool is_used = false;
    for (uint32_t i = 0; i < graph->nodes[n].output_count; i++)
      is_used = is_used || uses[graph->nodes[n].outputs[i].index];
    if (!is_used || !is_foldable(graph, n, max_bytes))
      continue;
    bool is_folded;
    ATTN_RETURN_IF_ERROR(evaluate(ctx, graph, n, outputs, &is_folded));
    if (!is_folded)
      continue;
    uint32_t output_count = graph->nodes[n].output_count;
    attn_status status = replace(ctx, graph, n, outputs, uses, forward);
    for (uint32_t i = 0; i < output_count; i++)
      attn_tensor_free(graph->allocator, &outputs[i]);
    ATTN_RETURN_IF_ERROR(status);
    ctx->changed = true;
  }
  for (uint32_t i = 0; i < graph->output_count; i++) {
    uint32_t v = graph->outputs[i].index;
    if (v < value_count && forward[v])
      graph->outputs[i] = (attn_value_id){forward[v]};
  }
  return ctx->changed ? attn_graph_remove_unused(graph, &ctx->scratch, NULL) : ATTN_OK;
}
