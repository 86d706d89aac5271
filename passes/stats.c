// Reports on a graph: live nodes by op class, the partition's kernels by kind, the memory
// plan's buffers, and, with every symbol bound, the planned bytes against the largest set of
// simultaneously live planned tensors. `attnc opt --stats` prints it; benchmarks reuse it.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "passes/pass.h"

static bool is_computed(const attn_graph *graph, uint32_t n) {
  const attn_node *node = &graph->nodes[n];
  return !node->is_dead && !(attn_op_get_info(node->op)->flags & ATTN_OP_LEAF);
}

// The bytes of a tensor of `type`; false when a symbol is unbound or the product overflows.
static bool eval_bytes(const attn_graph *graph, const attn_type *type, const int64_t *symbol_values,
                       int64_t *out_bytes) {
  int64_t bytes = (int64_t)attn_dtype_size(type->dtype);
  for (uint32_t i = 0; i < type->rank; i++) {
    int64_t d;
    if (attn_graph_dim_eval(graph, type->dims[i], symbol_values, &d) != ATTN_OK ||
        __builtin_mul_overflow(bytes, d, &bytes))
      return false;
  }
  *out_bytes = bytes;
  return true;
}

// The largest sum of the sizes of planned values live at one kernel. A value owning its
// buffer (not an alias's view) is live from its kernel to the last kernel that reads it or an
// alias of it; graph outputs to the end. False when the plan does not match the partition.
static attn_status find_live_peak(const attn_graph *graph, const int64_t *symbol_values,
                                  attn_graph_stats *stats, bool *out_has_peak) {
  *out_has_peak = false;
  attn_arena arena;
  attn_arena_init(&arena, graph->allocator);
  uint32_t k_count = graph->kernel_count, v_count = graph->value_count;
  uint32_t *step = attn_arena_calloc(&arena, k_count, sizeof(uint32_t));
  uint32_t *kernel_at = attn_arena_calloc(&arena, (size_t)k_count + 1, sizeof(uint32_t));
  uint32_t *last_use = attn_arena_calloc(&arena, v_count, sizeof(uint32_t));
  int64_t *change = attn_arena_calloc(&arena, (size_t)k_count + 2, sizeof(int64_t));
  if (!step || !kernel_at || !last_use || !change) {
    attn_arena_deinit(&arena);
    return attn_diag_error(graph->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                           "out of memory computing the graph's statistics");
  }
  uint32_t steps = 0, current = 0;
  bool is_valid = true;
  for (uint32_t n = 1; n < graph->node_count && is_valid; n++) {
    if (!is_computed(graph, n))
      continue;
    uint32_t k = graph->nodes[n].kernel;
    is_valid = k != 0 && k < k_count && (k == current || step[k] == 0);
    if (is_valid && k != current) {
      step[k] = ++steps;
      kernel_at[steps] = k;
      current = k;
    }
  }
  for (uint32_t n = 1; n < graph->node_count && is_valid; n++) {
    const attn_node *node = &graph->nodes[n];
    for (uint32_t i = 0; is_computed(graph, n) && i < node->input_count; i++) {
      uint32_t v = node->inputs[i].index;
      if (last_use[v] < step[node->kernel])
        last_use[v] = step[node->kernel];
    }
  }
  for (uint32_t i = 0; i < graph->output_count; i++)
    last_use[graph->outputs[i].index] = steps;
  for (uint32_t n = graph->node_count - 1; n >= 1 && is_valid; n--) {
    const attn_node *node = &graph->nodes[n];
    if (!is_computed(graph, n) || graph->kernels[node->kernel].kind != ATTN_KERNEL_ALIAS)
      continue;
    uint32_t v = node->outputs[0].index, input = node->inputs[0].index;
    if (graph->values[v].buffer && last_use[input] < last_use[v])
      last_use[input] = last_use[v];
  }
  for (uint32_t n = 1; n < graph->node_count && is_valid; n++) {
    const attn_node *node = &graph->nodes[n];
    if (!is_computed(graph, n) || graph->kernels[node->kernel].kind == ATTN_KERNEL_ALIAS)
      continue;
    for (uint32_t o = 0; o < node->output_count && is_valid; o++) {
      const attn_value *v = &graph->values[node->outputs[o].index];
      int64_t bytes;
      if (!v->buffer)
        continue;
      is_valid = eval_bytes(graph, &v->type, symbol_values, &bytes);
      uint32_t first = step[node->kernel], last = last_use[node->outputs[o].index];
      if (is_valid && last >= first) {
        change[first] += bytes;
        change[last + 1] -= bytes;
      }
    }
  }
  int64_t live = 0;
  for (uint32_t s = 1; s <= steps && is_valid; s++) {
    live += change[s];
    if (live > stats->live_peak_bytes) {
      stats->live_peak_bytes = live;
      stats->live_peak_kernel = kernel_at[s];
    }
  }
  attn_arena_deinit(&arena);
  *out_has_peak = is_valid;
  return ATTN_OK;
}

attn_status attn_graph_stats_compute(const attn_graph *graph, const int64_t *symbol_values,
                                     attn_graph_stats *out_stats) {
  attn_graph_stats *stats = out_stats;
  memset(stats, 0, sizeof(*stats));
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    stats->live_node_count++;
    stats->op_class_counts[attn_op_get_class(node->op)]++;
    stats->attention_count += node->op == ATTN_OP_ATTENTION;
  }
  stats->is_partitioned = graph->kernel_count > 0;
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    if (graph->kernels[k].node_count == 0 ||
        (unsigned)graph->kernels[k].kind >= ATTN_KERNEL_KIND_COUNT)
      continue;
    stats->kernel_count++;
    stats->kernel_kind_counts[graph->kernels[k].kind]++;
  }
  stats->is_planned = graph->buffer_count > 0 && stats->is_partitioned;
  stats->buffer_count = graph->buffer_count ? graph->buffer_count - 1 : 0;
  if (!stats->is_planned)
    return ATTN_OK;
  bool has_bytes = true;
  for (uint32_t b = 1; b < graph->buffer_count && has_bytes; b++) {
    int64_t bytes;
    has_bytes =
        attn_graph_dim_eval(graph, graph->buffers[b].bytes, symbol_values, &bytes) == ATTN_OK &&
        !__builtin_add_overflow(stats->planned_bytes, bytes, &stats->planned_bytes);
  }
  if (has_bytes)
    ATTN_RETURN_IF_ERROR(find_live_peak(graph, symbol_values, stats, &has_bytes));
  stats->has_bytes = has_bytes;
  if (!has_bytes) {
    stats->planned_bytes = 0;
    stats->live_peak_bytes = 0;
    stats->live_peak_kernel = 0;
  }
  return ATTN_OK;
}

// ---- the report --------------------------------------------------------------------------------

// `bytes` as a symbolic part times a constant (B * T * 3072 is B * T and 3072).
static void split_bytes(const attn_graph *graph, attn_dim bytes, attn_dim *out_symbolic,
                        int64_t *out_constant) {
  const attn_dim_expr *e = attn_graph_dim_expr(graph, bytes);
  if (attn_dim_is_constant(bytes)) {
    *out_symbolic = 1;
    *out_constant = bytes;
  } else if (e && e->kind == ATTN_DIM_MUL && attn_dim_is_constant(e->rhs)) {
    *out_symbolic = e->lhs;
    *out_constant = e->rhs;
  } else {
    *out_symbolic = bytes;
    *out_constant = 1;
  }
}

// "B * T * 245760 + B * T * T * 48": the buffer sizes summed per symbolic part.
static void print_symbolic_total(const attn_graph *graph, FILE *out) {
  const char *separator = "";
  for (uint32_t b = 1; b < graph->buffer_count; b++) {
    attn_dim symbolic, other;
    int64_t constant, sum = 0;
    split_bytes(graph, graph->buffers[b].bytes, &symbolic, &constant);
    bool is_seen = false;
    for (uint32_t c = 1; c < b && !is_seen; c++) {
      split_bytes(graph, graph->buffers[c].bytes, &other, &constant);
      is_seen = other == symbolic;
    }
    if (is_seen)
      continue;
    for (uint32_t c = b; c < graph->buffer_count; c++) {
      split_bytes(graph, graph->buffers[c].bytes, &other, &constant);
      if (other == symbolic && __builtin_add_overflow(sum, constant, &sum))
        sum = INT64_MAX;
    }
    char text[256];
    attn_graph_dim_format(graph, symbolic, text, sizeof(text));
    if (attn_dim_is_constant(symbolic))
      fprintf(out, "%s%" PRId64, separator, sum);
    else
      fprintf(out, "%s%s * %" PRId64, separator, text, sum);
    separator = " + ";
  }
  if (!*separator)
    fputs("0", out);
}

// Writes "B, T", the symbols without a value, to `out` (when not NULL); false when every
// symbol has one.
static bool print_unbound(const attn_graph *graph, const int64_t *symbol_values, FILE *out) {
  const char *separator = "";
  for (uint32_t s = 0; s < graph->symbol_count; s++) {
    if (symbol_values && symbol_values[s] >= 0)
      continue;
    if (out)
      fprintf(out, "%s%s", separator, attn_graph_symbol_name(graph, s));
    separator = ", ";
  }
  return *separator != '\0';
}

attn_status attn_graph_stats_print(const attn_graph *graph, const attn_graph_stats *stats,
                                   const int64_t *symbol_values, FILE *out) {
  fprintf(out, "graph: %s\n", graph->name);
  fprintf(out, "live nodes: %" PRIu32 "\n", stats->live_node_count);
  fputs("nodes by op class:", out);
  const char *separator = " ";
  for (int c = 0; c < ATTN_OP_CLASS_COUNT; c++) {
    if (!stats->op_class_counts[c])
      continue;
    fprintf(out, "%s%s %" PRIu32, separator, attn_op_class_name((attn_op_class)c),
            stats->op_class_counts[c]);
    separator = ", ";
  }
  fprintf(out, "%s\n", *separator == ' ' ? " none" : "");
  fprintf(out, "attention nodes: %" PRIu32 "\n", stats->attention_count);

  fprintf(out, "kernels: %" PRIu32 "%s\n", stats->kernel_count,
          stats->is_partitioned ? "" : " (not partitioned: run the partition pass)");
  fputs("kernels by kind:", out);
  separator = " ";
  for (int k = 0; k < ATTN_KERNEL_KIND_COUNT; k++) {
    if (!stats->kernel_kind_counts[k])
      continue;
    fprintf(out, "%s%s %" PRIu32, separator, attn_kernel_kind_name((attn_kernel_kind)k),
            stats->kernel_kind_counts[k]);
    separator = ", ";
  }
  fprintf(out, "%s\n", *separator == ' ' ? " none" : "");

  if (!stats->is_planned) {
    fputs("buffers: 0 (no memory plan: run plan-memory after partition)\n"
          "planned peak bytes: not available (no memory plan)\n"
          "largest live set bytes: not available (no memory plan)\n"
          "planned / largest live set: not available\n",
          out);
    return ferror(out) ? ATTN_ERROR_IO : ATTN_OK;
  }
  fprintf(out, "buffers: %" PRIu32 "\n", stats->buffer_count);
  for (uint32_t b = 1; b < graph->buffer_count; b++) {
    char text[256];
    int64_t bytes;
    attn_dim dim = graph->buffers[b].bytes;
    attn_graph_dim_format(graph, dim, text, sizeof(text));
    if (attn_dim_is_constant(dim))
      fprintf(out, "  b%" PRIu32 ": %s bytes\n", b, text);
    else if (attn_graph_dim_eval(graph, dim, symbol_values, &bytes) == ATTN_OK)
      fprintf(out, "  b%" PRIu32 ": %" PRId64 " bytes (%s)\n", b, bytes, text);
    else
      fprintf(out, "  b%" PRIu32 ": %s bytes\n", b, text);
  }
  if (stats->has_bytes) {
    fprintf(out, "planned peak bytes: %" PRId64 "\n", stats->planned_bytes);
    if (stats->live_peak_kernel)
      fprintf(out, "largest live set bytes: %" PRId64 " (at kernel k%" PRIu32 ")\n",
              stats->live_peak_bytes, stats->live_peak_kernel);
    else
      fprintf(out, "largest live set bytes: %" PRId64 "\n", stats->live_peak_bytes);
    if (stats->live_peak_bytes > 0)
      fprintf(out, "planned / largest live set: %.3f\n",
              (double)stats->planned_bytes / (double)stats->live_peak_bytes);
    else
      fputs("planned / largest live set: not available (nothing is planned)\n", out);
  } else if (!print_unbound(graph, symbol_values, NULL)) {
    fputs("planned peak bytes: not available (the plan does not match the partition: run "
          "partition and plan-memory again)\n"
          "largest live set bytes: not available\n"
          "planned / largest live set: not available\n",
          out);
  } else {
    fputs("planned peak bytes: ", out);
    print_symbolic_total(graph, out);
    fputs(" (bind ", out);
    print_unbound(graph, symbol_values, out);
    fputs(" with -D for numbers)\n", out);
    fputs("largest live set bytes: not available (bind ", out);
    print_unbound(graph, symbol_values, out);
    fputs(" with -D)\nplanned / largest live set: not available\n", out);
  }
  return ferror(out) ? ATTN_ERROR_IO : ATTN_OK;
}
