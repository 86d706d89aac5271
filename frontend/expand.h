// The expander: walks the syntax tree of a .attn file and builds the flat graph, folding
// compile-time values and config.* keys, inlining subgraph calls with their weight-name
// prefixes, unrolling repeat loops and turning score_mod blocks into attn_expr trees.
#ifndef ATTN_FRONTEND_EXPAND_H_
#define ATTN_FRONTEND_EXPAND_H_

#include "frontend/ast.h"
#include "frontend/parse.h"

// Expands the file items `items` (lets, defs and the one graph, in file order) into `graph`,
// which must be empty. `scratch` holds compile-time values and is released by the caller.
// Errors go to graph->diag at the offending node's location.
attn_status attn_expand(const attn_ast *items, const attn_parse_options *options, attn_graph *graph,
                        attn_arena *scratch) ATTN_MUST_USE;

#endif // ATTN_FRONTEND_EXPAND_H_
