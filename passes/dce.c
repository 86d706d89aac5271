// dce: dead-code elimination. Marks dead every node no graph output depends on.
// Requires: nothing. Invalidates: nothing beyond the nodes it removes (the manager compacts).
#include "passes/pass.h"

attn_status attn_pass_dce(attn_pass_context *ctx, attn_graph *graph) {
  uint32_t removed;
  ATTN_RETURN_IF_ERROR(attn_graph_remove_unused(graph, &ctx->scratch, &removed));
  ctx->changed = removed > 0;
  return ATTN_OK;
}
