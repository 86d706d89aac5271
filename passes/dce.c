// dce: dead-code elimination. Marks dead every node no graph output depends on.
// Requires: nothing. Invalidates: nothing beyond the nodes it removes (the manager compacts).
#include "passes/pass.h"

attn_status attn_pass_dce(attn_pass_context *ctx, attn_graph *graph) {
  bool *used = attn_arena_calloc(&ctx->scratch, graph->value_count, sizeof(*used));
  if (!used)
    return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (uint32_t i = 0; i < graph->output_count; i++)
    used[graph->outputs[i].index] = true;
  // Users come after producers, so one backward sweep sees every use before its producer.
  for (uint32_t n = graph->node_count - 1; n >= 1; n--) {
    attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    bool live = false;
    for (uint32_t i = 0; i < node->output_count && !live; i++)
      live = used[node->outputs[i].index];
    if (!live) {
      node->is_dead = true;
      ctx->changed = true;
      continue;
    }
    for (uint32_t i = 0; i < node->input_count; i++)
      used[node->inputs[i].index] = true;
  }
  return ATTN_OK;
}
