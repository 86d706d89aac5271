// partition: groups the live nodes into kernels (DESIGN.md §4) and reorders the nodes kernel by
// kernel, in an order the kernels can run in. Kernels: elementwise trees; norms and reductions
// with an elementwise prologue; norms and matmuls with an elementwise epilogue of their shape;
// attention, gather, topk, rope and layout ops alone; a reshape of a value in memory as an alias.
// Leaves belong to none (kernels read weights and constants, compute iota where they use it) and
// each comes just before the first kernel reading it. Kernels are convex and form a DAG.
// Requires: a verified graph. Invalidates: the memory plan (cleared); nodes added later are in
// no kernel, and plan-memory refuses the graph until partition runs again.
#include <string.h>

#include "passes/pass.h"

attn_op_class attn_op_get_class(attn_op op) {
  switch (op) {
  case ATTN_OP_MATMUL:
    return ATTN_OP_CLASS_MATMUL;
  case ATTN_OP_SOFTMAX:
  case ATTN_OP_LOG_SOFTMAX:
  case ATTN_OP_LAYERNORM:
  case ATTN_OP_RMSNORM:
    return ATTN_OP_CLASS_NORM;
  case ATTN_OP_SUM:
  case ATTN_OP_MEAN:
  case ATTN_OP_MAX:
  case ATTN_OP_MIN:
  case ATTN_OP_ARGMAX:
    return ATTN_OP_CLASS_REDUCTION;
  case ATTN_OP_RESHAPE:
    return ATTN_OP_CLASS_RESHAPE;
  case ATTN_OP_EXPAND:
  case ATTN_OP_PERMUTE:
  case ATTN_OP_SLICE:
  case ATTN_OP_CONCAT:
  case ATTN_OP_SPLIT:
    return ATTN_OP_CLASS_LAYOUT;
  case ATTN_OP_GATHER:
    return ATTN_OP_CLASS_GATHER;
  case ATTN_OP_TOPK:
    return ATTN_OP_CLASS_TOPK;
  case ATTN_OP_ROPE:
    return ATTN_OP_CLASS_ROPE;
  case ATTN_OP_ATTENTION:
    return ATTN_OP_CLASS_ATTENTION;
  default:
    break;
  }
  // Ops added after this table was written: the op table's flags say enough to place them.
  const attn_op_info *info = attn_op_get_info(op);
  unsigned flags = info ? info->flags : 0;
  if (flags & ATTN_OP_LEAF)
    return ATTN_OP_CLASS_LEAF;
  if (flags & ATTN_OP_ELEMENTWISE)
    return ATTN_OP_CLASS_ELEMENTWISE;
  if (flags & ATTN_OP_VIEW)
    return ATTN_OP_CLASS_LAYOUT;
  return ATTN_OP_CLASS_OTHER;
}

const char *attn_op_class_name(attn_op_class op_class) {
  static const char *const names[ATTN_OP_CLASS_COUNT] = {
      [ATTN_OP_CLASS_LEAF] = "leaf",           [ATTN_OP_CLASS_ELEMENTWISE] = "elementwise",
      [ATTN_OP_CLASS_MATMUL] = "matmul",       [ATTN_OP_CLASS_NORM] = "norm",
      [ATTN_OP_CLASS_REDUCTION] = "reduction", [ATTN_OP_CLASS_RESHAPE] = "reshape",
      [ATTN_OP_CLASS_LAYOUT] = "layout",       [ATTN_OP_CLASS_GATHER] = "gather",
      [ATTN_OP_CLASS_TOPK] = "topk",           [ATTN_OP_CLASS_ROPE] = "rope",
      [ATTN_OP_CLASS_ATTENTION] = "attention", [ATTN_OP_CLASS_OTHER] = "other",
  };
  return (unsigned)op_class < ATTN_OP_CLASS_COUNT ? names[op_class] : NULL;
}

// ---- groups ----------------------------------------------------------------------------------
// A group is a set of nodes that becomes one kernel, named by one of its nodes (its id). Groups
// start as single nodes and merge; a merge is allowed only when no path runs from one group to
// the other through a third, which keeps every group convex and the groups acyclic.

enum { SEVERAL = UINT32_MAX };

typedef struct partitioner {
  attn_graph *graph;
  uint32_t node_count;
  uint32_t *group;            // by node: its group, 0 for leaves and dead nodes
  uint32_t *next;             // by node: the next member of its group, 0 after the last
  uint32_t *head, *tail;      // by group: first and last member
  uint32_t *size;             // by group: member count
  uint32_t *last;             // by group: its largest node id
  attn_kernel_kind *kind;     // by group
  uint32_t *anchor;           // by group: the member that is not elementwise, 0 if none
  uint32_t *reader;           // by value: the one node reading it, 0 none, SEVERAL (or output)
  bool *is_output;            // by value: a graph output
  uint32_t *consumer_start;   // by node: where its consumers start in `consumers`
  uint32_t *consumers;        // readers of each node's outputs, one per input slot
  uint32_t *stamp, stamp_now; // by group: visited marks of a reachability walk
  uint32_t *stack;
} partitioner;

static bool is_computed(const attn_graph *graph, uint32_t n) {
  const attn_node *node = &graph->nodes[n];
  return !node->is_dead && !(attn_op_get_info(node->op)->flags & ATTN_OP_LEAF);
}

// The live, non-leaf node producing `value`, or 0.
static uint32_t computed_producer(const attn_graph *graph, attn_value_id value) {
  uint32_t p = graph->values[value.index].producer.index;
  return p && is_computed(graph, p) ? p : 0;
}

// True when `value` sits in memory as a row-major tensor a reshape can view: a graph input, a
// weight, a constant or a kernel's output. An iota is computed where it is read, so its
// reshape must compute too.
static bool is_in_memory(const attn_graph *graph, attn_value_id value) {
  uint32_t p = graph->values[value.index].producer.index;
  if (p == 0)
    return true;
  attn_op op = graph->nodes[p].op;
  return op == ATTN_OP_WEIGHT || op == ATTN_OP_CONSTANT || is_computed(graph, p);
}

static bool same_dims(const attn_type *a, const attn_type *b) {
  if (a->rank != b->rank)
    return false;
  for (uint32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i])
      return false;
  return true;
}

static const attn_type *output_type(const attn_graph *graph, uint32_t n) {
  return &graph->values[graph->nodes[n].outputs[0].index].type;
}

static attn_kernel_kind initial_kind(const attn_graph *graph, uint32_t n) {
  const attn_node *node = &graph->nodes[n];
  switch (attn_op_get_class(node->op)) {
  case ATTN_OP_CLASS_ELEMENTWISE:
    return ATTN_KERNEL_ELEMENTWISE;
  case ATTN_OP_CLASS_MATMUL:
    return ATTN_KERNEL_GEMM;
  case ATTN_OP_CLASS_NORM:
    return ATTN_KERNEL_NORM;
  case ATTN_OP_CLASS_REDUCTION:
    return ATTN_KERNEL_REDUCTION;
  case ATTN_OP_CLASS_RESHAPE:
    return is_in_memory(graph, node->inputs[0]) ? ATTN_KERNEL_ALIAS : ATTN_KERNEL_LAYOUT;
  case ATTN_OP_CLASS_LAYOUT:
    return ATTN_KERNEL_LAYOUT;
  case ATTN_OP_CLASS_GATHER:
    return ATTN_KERNEL_GATHER;
  case ATTN_OP_CLASS_TOPK:
    return ATTN_KERNEL_TOPK;
  case ATTN_OP_CLASS_ROPE:
    return ATTN_KERNEL_ROPE;
  case ATTN_OP_CLASS_ATTENTION:
    return ATTN_KERNEL_ATTENTION;
  case ATTN_OP_CLASS_LEAF:
  case ATTN_OP_CLASS_OTHER:
  case ATTN_OP_CLASS_COUNT:
    break;
  }
  return ATTN_KERNEL_OTHER;
}

static attn_status out_of_memory(attn_pass_context *ctx) {
  return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "partition: out of memory");
}

static attn_status init(partitioner *p, attn_pass_context *ctx, attn_graph *graph) {
  attn_arena *a = &ctx->scratch;
  uint32_t n_count = graph->node_count, v_count = graph->value_count;
  p->graph = graph;
  p->node_count = n_count;
  p->group = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->next = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->head = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->tail = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->size = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->last = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->kind = attn_arena_calloc(a, n_count, sizeof(attn_kernel_kind));
  p->anchor = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->reader = attn_arena_calloc(a, v_count, sizeof(uint32_t));
  p->is_output = attn_arena_calloc(a, v_count, sizeof(bool));
  p->consumer_start = attn_arena_calloc(a, (size_t)n_count + 1, sizeof(uint32_t));
  p->stamp = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  p->stack = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  if (!p->group || !p->next || !p->head || !p->tail || !p->size || !p->last || !p->kind ||
      !p->anchor || !p->reader || !p->is_output || !p->consumer_start || !p->stamp || !p->stack)
    return out_of_memory(ctx);

  for (uint32_t i = 0; i < graph->output_count; i++) {
    p->is_output[graph->outputs[i].index] = true;
    p->reader[graph->outputs[i].index] = SEVERAL;
  }
  size_t edge_count = 0;
  for (uint32_t n = 1; n < n_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    if (is_computed(graph, n)) {
      p->group[n] = p->head[n] = p->tail[n] = p->last[n] = n;
      p->size[n] = 1;
      p->kind[n] = initial_kind(graph, n);
      p->anchor[n] = p->kind[n] == ATTN_KERNEL_ELEMENTWISE ? 0 : n;
    }
    for (uint32_t i = 0; i < node->input_count; i++) {
      uint32_t v = node->inputs[i].index;
      p->reader[v] = p->reader[v] == 0 || p->reader[v] == n ? n : SEVERAL;
      uint32_t producer = computed_producer(graph, node->inputs[i]);
      if (producer) {
        p->consumer_start[producer + 1]++;
        edge_count++;
      }
    }
  }
  for (uint32_t n = 1; n < n_count; n++)
    p->consumer_start[n + 1] += p->consumer_start[n];
  p->consumers = attn_arena_calloc(a, edge_count + 1, sizeof(uint32_t));
  uint32_t *fill = attn_arena_calloc(a, n_count, sizeof(uint32_t));
  if (!p->consumers || !fill)
    return out_of_memory(ctx);
  for (uint32_t n = 1; n < n_count; n++) {
    const attn_node *node = &graph->nodes[n];
    for (uint32_t i = 0; !node->is_dead && i < node->input_count; i++) {
      uint32_t producer = computed_producer(graph, node->inputs[i]);
      if (producer)
        p->consumers[p->consumer_start[producer] + fill[producer]++] = n;
    }
  }
  return ATTN_OK;
}

// True when a path runs from group `from` to group `to` through some other group. The walk
// moves between whole groups, so it sees the paths of the kernel graph, not only node paths.
static bool reaches_through_others(partitioner *p, uint32_t from, uint32_t to) {
  uint32_t depth = 0;
  p->stamp_now++;
  p->stamp[from] = p->stamp_now;
  for (uint32_t g = from;;) {
    for (uint32_t m = p->head[g]; m; m = p->next[m]) {
      for (uint32_t c = p->consumer_start[m]; c < p->consumer_start[m + 1]; c++) {
        uint32_t h = p->group[p->consumers[c]];
        if (h == to) {
          if (g != from)
            return true;
          continue;
        }
        if (p->stamp[h] == p->stamp_now)
          continue;
        p->stamp[h] = p->stamp_now;
        p->stack[depth++] = h;
      }
    }
    if (depth == 0)
      return false;
    g = p->stack[--depth];
  }
}

static bool can_merge(partitioner *p, uint32_t a, uint32_t b) {
  return !reaches_through_others(p, a, b) && !reaches_through_others(p, b, a);
}

// Merges group `b` into group `a` (or the other way round, whichever moves fewer members);
// the result has `kind` and `anchor`.
static void merge(partitioner *p, uint32_t a, uint32_t b, attn_kernel_kind kind, uint32_t anchor) {
  if (p->size[a] < p->size[b]) {
    uint32_t t = a;
    a = b;
    b = t;
  }
  for (uint32_t m = p->head[b]; m; m = p->next[m])
    p->group[m] = a;
  p->next[p->tail[a]] = p->head[b];
  p->tail[a] = p->tail[b];
  p->size[a] += p->size[b];
  p->last[a] = p->last[a] > p->last[b] ? p->last[a] : p->last[b];
  p->kind[a] = kind;
  p->anchor[a] = anchor;
}

// Elementwise node `n` joins the group of a producer it is the only reader of: one matmul's or
// norm's group as an epilogue when it computes the anchor's shape (its other operands are then
// read from memory), else every elementwise group it is the only reader of (a tree; broadcasting
// is fine there, a producer is recomputed per element it feeds). Anchored groups are tried
// first: an epilogue saves the larger round trip to memory.
static void fuse_into_producer(partitioner *p, uint32_t n) {
  const attn_graph *graph = p->graph;
  const attn_node *node = &graph->nodes[n];
  for (int pass = 0; pass < 2; pass++) {
    for (uint32_t i = 0; i < node->input_count; i++) {
      uint32_t producer = computed_producer(graph, node->inputs[i]);
      if (!producer || p->reader[node->inputs[i].index] != n)
        continue;
      uint32_t g = p->group[producer];
      attn_kernel_kind kind = p->kind[g];
      bool is_epilogue = kind == ATTN_KERNEL_GEMM || kind == ATTN_KERNEL_NORM;
      if (g == p->group[n] || (pass == 0 ? !is_epilogue : kind != ATTN_KERNEL_ELEMENTWISE))
        continue;
      if (is_epilogue && !same_dims(output_type(graph, n), output_type(graph, p->anchor[g])))
        continue;
      if (!can_merge(p, g, p->group[n]))
        continue;
      merge(p, g, p->group[n], kind, p->anchor[g]);
      if (is_epilogue)
        return;
    }
  }
}

// True when nothing outside group `g` but node `n` reads what `g` computes.
static bool only_feeds(const partitioner *p, uint32_t g, uint32_t n) {
  const attn_graph *graph = p->graph;
  for (uint32_t m = p->head[g]; m; m = p->next[m]) {
    const attn_node *member = &graph->nodes[m];
    for (uint32_t o = 0; o < member->output_count; o++)
      if (p->is_output[member->outputs[o].index])
        return false;
    for (uint32_t c = p->consumer_start[m]; c < p->consumer_start[m + 1]; c++)
      if (p->consumers[c] != n && p->group[p->consumers[c]] != g)
        return false;
  }
  return true;
}

// A norm or reduction `n` takes in the elementwise groups that only it reads (its prologue).
static void fuse_prologues(partitioner *p, uint32_t n) {
  const attn_graph *graph = p->graph;
  const attn_node *node = &graph->nodes[n];
  for (uint32_t i = 0; i < node->input_count; i++) {
    uint32_t producer = computed_producer(graph, node->inputs[i]);
    if (!producer)
      continue;
    uint32_t g = p->group[producer], own = p->group[n];
    if (g == own || p->kind[g] != ATTN_KERNEL_ELEMENTWISE || !only_feeds(p, g, n) ||
        !can_merge(p, g, own))
      continue;
    merge(p, own, g, p->kind[own], p->anchor[own]);
  }
}

// ---- scheduling --------------------------------------------------------------------------------
// Kahn's algorithm over the groups; among the groups ready to run, the one whose last node
// comes first in the current order goes first, so the schedule stays close to the program order
// (which is what the author, and the passes before, chose for liveness).

typedef struct heap {
  uint32_t *items;
  uint32_t count;
  const uint32_t *key;
} heap;

static void heap_push(heap *h, uint32_t item) {
  uint32_t i = h->count++;
  while (i > 0 && h->key[h->items[(i - 1) / 2]] > h->key[item]) {
    h->items[i] = h->items[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  h->items[i] = item;
}

static uint32_t heap_pop(heap *h) {
  uint32_t top = h->items[0], item = h->items[--h->count], i = 0;
  for (;;) {
    uint32_t child = 2 * i + 1;
    if (child >= h->count)
      break;
    if (child + 1 < h->count && h->key[h->items[child + 1]] < h->key[h->items[child]])
      child++;
    if (h->key[h->items[child]] >= h->key[item])
      break;
    h->items[i] = h->items[child];
    i = child;
  }
  if (h->count)
    h->items[i] = item;
  return top;
}

// Numbers the groups 1..K in execution order into kernel_of (by group).
static attn_status schedule(partitioner *p, attn_pass_context *ctx, uint32_t *kernel_of,
                            uint32_t *out_kernel_count) {
  const attn_graph *graph = p->graph;
  uint32_t *pending = attn_arena_calloc(&ctx->scratch, p->node_count, sizeof(uint32_t));
  heap ready = {attn_arena_calloc(&ctx->scratch, p->node_count, sizeof(uint32_t)), 0, p->last};
  if (!pending || !ready.items)
    return out_of_memory(ctx);
  uint32_t group_count = 0;
  for (uint32_t n = 1; n < p->node_count; n++) {
    if (!p->group[n])
      continue;
    group_count += p->group[n] == n;
    const attn_node *node = &graph->nodes[n];
    for (uint32_t i = 0; i < node->input_count; i++) {
      uint32_t producer = computed_producer(graph, node->inputs[i]);
      pending[p->group[n]] += producer && p->group[producer] != p->group[n];
    }
  }
  for (uint32_t n = 1; n < p->node_count; n++)
    if (p->group[n] == n && pending[n] == 0)
      heap_push(&ready, n);
  uint32_t kernel_count = 0;
  while (ready.count) {
    uint32_t g = heap_pop(&ready);
    kernel_of[g] = ++kernel_count;
    for (uint32_t m = p->head[g]; m; m = p->next[m]) {
      for (uint32_t c = p->consumer_start[m]; c < p->consumer_start[m + 1]; c++) {
        uint32_t h = p->group[p->consumers[c]];
        if (h != g && --pending[h] == 0)
          heap_push(&ready, h);
      }
    }
  }
  if (kernel_count != group_count)
    return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                           "partition: the kernels form a cycle (%u of %u scheduled)", kernel_count,
                           group_count);
  *out_kernel_count = kernel_count;
  return ATTN_OK;
}

// ---- the pass
// ------------------------------------------------------------------------------------

attn_status attn_pass_partition(attn_pass_context *ctx, attn_graph *graph) {
  partitioner p = {0};
  ATTN_RETURN_IF_ERROR(init(&p, ctx, graph));
  uint32_t n_count = graph->node_count;
  for (uint32_t n = 1; n < n_count; n++)
    if (p.group[n] && p.kind[p.group[n]] == ATTN_KERNEL_ELEMENTWISE)
      fuse_into_producer(&p, n);
  for (uint32_t n = 1; n < n_count; n++) {
    attn_op_class op_class = attn_op_get_class(graph->nodes[n].op);
    if (p.group[n] && (op_class == ATTN_OP_CLASS_NORM || op_class == ATTN_OP_CLASS_REDUCTION))
      fuse_prologues(&p, n);
  }

  uint32_t *kernel_of = attn_arena_calloc(&ctx->scratch, n_count, sizeof(uint32_t));
  if (!kernel_of)
    return out_of_memory(ctx);
  uint32_t kernel_count = 0;
  ATTN_RETURN_IF_ERROR(schedule(&p, ctx, kernel_of, &kernel_count));

  // The new order: kernel by kernel, members in their current relative order (a topological
  // one), each leaf just before the first kernel that reads it; leaves no kernel reads last.
  uint32_t *start = attn_arena_calloc(&ctx->scratch, (size_t)kernel_count + 2, sizeof(uint32_t));
  uint32_t *members = attn_arena_calloc(&ctx->scratch, n_count, sizeof(uint32_t));
  uint32_t *order = attn_arena_calloc(&ctx->scratch, n_count, sizeof(uint32_t));
  uint32_t *new_id = attn_arena_calloc(&ctx->scratch, n_count, sizeof(uint32_t));
  attn_node *nodes = attn_arena_calloc(&ctx->scratch, n_count, sizeof(attn_node));
  attn_kernel *kernels = attn_graph_alloc(graph, ((size_t)kernel_count + 1) * sizeof(attn_kernel));
  if (!start || !members || !order || !new_id || !nodes || !kernels)
    return out_of_memory(ctx);
  for (uint32_t n = 1; n < n_count; n++)
    if (p.group[n])
      start[kernel_of[p.group[n]] + 1]++;
  for (uint32_t k = 1; k <= kernel_count; k++)
    start[k + 1] += start[k];
  for (uint32_t n = 1; n < n_count; n++)
    if (p.group[n])
      members[start[kernel_of[p.group[n]]]++] = n;
  // `start` now holds each kernel's end; kernel k's members are members[start[k-1]..start[k]).
  uint32_t placed = 0;
  for (uint32_t k = 1; k <= kernel_count; k++) {
    for (uint32_t i = start[k - 1]; i < start[k]; i++) {
      const attn_node *node = &graph->nodes[members[i]];
      for (uint32_t j = 0; j < node->input_count; j++) {
        uint32_t producer = graph->values[node->inputs[j].index].producer.index;
        if (producer && !graph->nodes[producer].is_dead && !p.group[producer] &&
            !new_id[producer]) {
          order[placed++] = producer;
          new_id[producer] = placed;
        }
      }
    }
    for (uint32_t i = start[k - 1]; i < start[k]; i++) {
      order[placed++] = members[i];
      new_id[members[i]] = placed;
    }
    kernels[k] = (attn_kernel){p.kind[p.group[members[start[k - 1]]]], start[k] - start[k - 1]};
  }
  for (uint32_t n = 1; n < n_count; n++) {
    if (!graph->nodes[n].is_dead && !new_id[n]) {
      order[placed++] = n;
      new_id[n] = placed;
    }
  }

  // Nothing has changed yet; from here on nothing can fail.
  nodes[0] = graph->nodes[0];
  for (uint32_t i = 0; i < placed; i++) {
    nodes[i + 1] = graph->nodes[order[i]];
    nodes[i + 1].kernel = p.group[order[i]] ? kernel_of[p.group[order[i]]] : 0;
  }
  memcpy(graph->nodes, nodes, ((size_t)placed + 1) * sizeof(attn_node));
  graph->node_count = placed + 1;
  for (uint32_t v = 1; v < graph->value_count; v++) {
    attn_value *value = &graph->values[v];
    if (value->producer.index)
      value->producer.index = new_id[value->producer.index];
    value->buffer = 0;
  }
  kernels[0] = (attn_kernel){ATTN_KERNEL_OTHER, 0};
  graph->kernels = kernels;
  graph->kernel_count = kernel_count + 1;
  graph->buffers = NULL;
  graph->buffer_count = 0;
  ctx->changed = true;
  return ATTN_OK;
}
