// The IR printer: a graph as .attn text (docs/language.md), which the frontend parses back
// to the same graph, and the op reference docs/ops.md generated from the op table.
#ifndef ATTN_IR_PRINT_H_
#define ATTN_IR_PRINT_H_

#include <stdio.h>

#include "ir/ir.h"

// Prints `graph` as one flat `graph NAME(INPUTS) -> (OUTPUTS) { ... }`: one statement per
// live node, attributes only where they differ from the family's defaults, `return` last.
// Values are named by their name hints when those are unique identifiers, otherwise
// `hint_N` or `tN`. Floats are printed with the fewest digits that read back exactly, so
// print → parse → print gives the same text. A partitioned graph also gets a comment line
// `# kernel k3 gemm: matmul, add, gelu` before each kernel's first node, and a planned one a
// comment `# buffer b2` after each node with a planned output; both are comments, so the text
// still parses (to the graph without partition and plan). Returns ATTN_ERROR_IO (with a message in
// graph->diag) when writing fails, ATTN_ERROR_OUT_OF_MEMORY when scratch memory runs out.
attn_status attn_graph_print(const attn_graph *graph, FILE *out) ATTN_MUST_USE;

// Writes the markdown op reference (docs/ops.md): every op of ir/ops.def with its inputs,
// outputs, flags and attributes with their defaults. ATTN_ERROR_IO when writing fails.
attn_status attn_ops_write_doc(FILE *out) ATTN_MUST_USE;

#endif // ATTN_IR_PRINT_H_
