// plan-memory: gives a buffer to every value that crosses a kernel boundary or is a graph output
// (graph inputs, weights and constants live elsewhere; an alias shares its input's buffer),
// walking the kernels in order and reusing a buffer once every value in it is dead. Sizes stay
// symbolic; a buffer is reused only for the same product of symbols: the smallest free one that
// fits, else the largest, grown. An elementwise kernel or epilogue writes in place over an input
// of its shape that dies there. Graph outputs' buffers are never reused.
// Requires: partition (every computed node in a kernel, each kernel contiguous).
// Invalidates: nothing; a later rewrite leaves the plan stale (run both passes again).
#include <string.h>

#include "passes/pass.h"

enum { MAX_FACTORS = 64, MAX_DEPTH = 64 };

// bytes = symbolic * constant, symbolic a product of non-constant dims (1 when there is none).
typedef struct size_form {
  attn_dim symbolic;
  int64_t constant;
} size_form;

typedef struct factors {
  attn_dim items[MAX_FACTORS];
  uint32_t count;
  int64_t constant;
} factors;

// Splits `dim` into a constant and non-constant factors, flattening products.
static bool collect_factors(const attn_graph *graph, attn_dim dim, uint32_t depth, factors *f) {
  if (attn_dim_is_constant(dim))
    return !__builtin_mul_overflow(f->constant, dim, &f->constant);
  const attn_dim_expr *e = attn_graph_dim_expr(graph, dim);
  if (e && e->kind == ATTN_DIM_MUL && depth < MAX_DEPTH)
    return collect_factors(graph, e->lhs, depth + 1, f) &&
           collect_factors(graph, e->rhs, depth + 1, f);
  if (f->count == MAX_FACTORS)
    return false;
  f->items[f->count++] = dim;
  return true;
}

// The byte size of a tensor of `type` in canonical form: the factors sorted by their index in
// the dim table and multiplied left to right, so equal products intern to the same dim.
static attn_status size_of(attn_pass_context *ctx, attn_graph *graph, const attn_type *type,
                           size_form *out) {
  factors f = {.count = 0, .constant = (int64_t)attn_dtype_size(type->dtype)};
  bool is_ok = true;
  for (uint32_t i = 0; i < type->rank && is_ok; i++)
    is_ok = collect_factors(graph, type->dims[i], 0, &f);
  if (!is_ok)
    return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                           "plan-memory: a value's size has too many factors or overflows");
  for (uint32_t i = 1; i < f.count; i++) { // insertion sort; dims are negative, B first
    attn_dim d = f.items[i];
    uint32_t j = i;
    for (; j > 0 && f.items[j - 1] < d; j--)
      f.items[j] = f.items[j - 1];
    f.items[j] = d;
  }
  attn_dim symbolic = f.count ? f.items[0] : 1;
  for (uint32_t i = 1; i < f.count; i++)
    ATTN_RETURN_IF_ERROR(
        attn_graph_dim_binary(graph, ATTN_DIM_MUL, symbolic, f.items[i], &symbolic));
  *out = (size_form){f.constant == 0 ? 1 : symbolic, f.constant};
  return ATTN_OK;
}

typedef struct planner {
  attn_pass_context *ctx;
  attn_graph *graph;
  uint32_t step_count;
  uint32_t *step;         // by kernel: its place in the schedule, 1..step_count
  uint32_t *first;        // by kernel: its first node
  uint32_t *end;          // by kernel: one past its last node
  bool *is_epilogue;      // by node: an elementwise node writing after the kernel's anchor
  uint32_t *last_use;     // by value: the last step that reads it (or an alias of it)
  uint32_t *root;         // by value: the value owning its memory; 0 when not planned
  bool *is_output;        // by value
  uint32_t *value_buffer; // by value (owners only)
  // The buffers, 1..buffer_count.
  size_form *size;
  uint32_t *free_after; // the step after which every value in it is dead
  bool *is_free;
  uint32_t buffer_count;
} planner;

static attn_status out_of_memory(attn_pass_context *ctx) {
  return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "plan-memory: out of memory");
}

static bool is_computed(const attn_graph *graph, uint32_t n) {
  const attn_node *node = &graph->nodes[n];
  return !node->is_dead && !(attn_op_get_info(node->op)->flags & ATTN_OP_LEAF);
}

static uint32_t computed_producer(const attn_graph *graph, attn_value_id value) {
  uint32_t p = graph->values[value.index].producer.index;
  return p && is_computed(graph, p) ? p : 0;
}

static bool same_dims(const attn_type *a, const attn_type *b) {
  if (a->rank != b->rank)
    return false;
  for (uint32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i])
      return false;
  return true;
}

// Numbers the kernels in node order and checks the partition is complete and contiguous.
static attn_status number_steps(planner *p) {
  attn_graph *graph = p->graph;
  if (graph->kernel_count == 0)
    return attn_diag_error(p->ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "plan-memory requires the partition: run 'partition' before it");
  uint32_t current = 0;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    if (!is_computed(graph, n))
      continue;
    const attn_node *node = &graph->nodes[n];
    uint32_t k = node->kernel;
    if (k == 0 || k >= graph->kernel_count)
      return attn_diag_error(p->ctx->diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "plan-memory: this %s is in no kernel (a pass after 'partition' "
                             "added it); run 'partition' again before 'plan-memory'",
                             attn_op_get_info(node->op)->name);
    if (k != current) {
      if (p->step[k])
        return attn_diag_error(p->ctx->diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                               "plan-memory: the nodes of kernel k%u are not contiguous (a pass "
                               "after 'partition' moved them); run 'partition' again",
                               k);
      p->step[k] = ++p->step_count;
      p->first[k] = n;
      current = k;
    }
    p->end[k] = n + 1;
  }
  return ATTN_OK;
}

// Marks the nodes that may write over an input: all of an elementwise kernel, and in a gemm or
// norm kernel the elementwise nodes that depend on the anchor (the epilogue).
static void mark_epilogues(planner *p, bool *depends) {
  const attn_graph *graph = p->graph;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    if (!is_computed(graph, n))
      continue;
    const attn_node *node = &graph->nodes[n];
    attn_kernel_kind kind = graph->kernels[node->kernel].kind;
    bool is_elementwise = (attn_op_get_info(node->op)->flags & ATTN_OP_ELEMENTWISE) != 0;
    if (!is_elementwise) {
      depends[n] = true;
      continue;
    }
    for (uint32_t i = 0; i < node->input_count && !depends[n]; i++) {
      uint32_t producer = computed_producer(graph, node->inputs[i]);
      depends[n] = producer && graph->nodes[producer].kernel == node->kernel && depends[producer];
    }
    p->is_epilogue[n] = kind == ATTN_KERNEL_ELEMENTWISE ||
                        ((kind == ATTN_KERNEL_GEMM || kind == ATTN_KERNEL_NORM) && depends[n]);
  }
}

// Lifetimes and owners: a value is planned when a node of another kernel reads it or it is a
// graph output; an alias's value is owned by its input's owner, whose life then covers the
// alias's readers too.
static void find_lifetimes(planner *p, bool *crosses) {
  attn_graph *graph = p->graph;
  uint32_t forever = p->step_count + 1;
  for (uint32_t i = 0; i < graph->output_count; i++) {
    p->is_output[graph->outputs[i].index] = true;
    p->last_use[graph->outputs[i].index] = forever;
  }
  for (uint32_t n = 1; n < graph->node_count; n++) {
    if (!is_computed(graph, n))
      continue;
    const attn_node *node = &graph->nodes[n];
    uint32_t step = p->step[node->kernel];
    for (uint32_t i = 0; i < node->input_count; i++) {
      uint32_t v = node->inputs[i].index, producer = computed_producer(graph, node->inputs[i]);
      if (!producer)
        continue;
      crosses[v] |= graph->nodes[producer].kernel != node->kernel;
      if (p->last_use[v] < step)
        p->last_use[v] = step;
    }
  }
  for (uint32_t n = 1; n < graph->node_count; n++) {
    if (!is_computed(graph, n))
      continue;
    const attn_node *node = &graph->nodes[n];
    bool is_alias = graph->kernels[node->kernel].kind == ATTN_KERNEL_ALIAS;
    for (uint32_t o = 0; o < node->output_count; o++) {
      uint32_t v = node->outputs[o].index;
      if (!crosses[v] && !p->is_output[v])
        continue;
      p->root[v] = is_alias ? p->root[node->inputs[0].index] : v;
    }
  }
  for (uint32_t n = graph->node_count - 1; n >= 1; n--) {
    const attn_node *node = &graph->nodes[n];
    if (!is_computed(graph, n) || graph->kernels[node->kernel].kind != ATTN_KERNEL_ALIAS)
      continue;
    uint32_t v = node->outputs[0].index, input = node->inputs[0].index;
    if (p->root[v] && p->last_use[input] < p->last_use[v])
      p->last_use[input] = p->last_use[v];
  }
}

// The buffer of an input that value `v` (made by node `n` of kernel `k` at `step`) may take
// over, or 0: the input dies at this kernel, has v's shape and element size, and every read of
// its buffer in this kernel is by an epilogue node of that same shape at the same element.
static uint32_t in_place_buffer(planner *p, uint32_t n, uint32_t k, uint32_t step,
                                const attn_value *v) {
  const attn_graph *graph = p->graph;
  if (!p->is_epilogue[n])
    return 0;
  for (uint32_t m = p->first[k]; m < p->end[k]; m++) {
    const attn_node *member = &graph->nodes[m];
    if (!is_computed(graph, m) || member->kernel != k || !p->is_epilogue[m])
      continue;
    for (uint32_t i = 0; i < member->input_count; i++) {
      attn_value_id input = member->inputs[i];
      const attn_value *u = &graph->values[input.index];
      uint32_t r = p->root[input.index], producer = computed_producer(graph, input);
      if (!r || !producer || graph->nodes[producer].kernel == k || p->is_output[r])
        continue;
      uint32_t b = p->value_buffer[r];
      if (!b || p->free_after[b] != step || !same_dims(&u->type, &v->type) ||
          attn_dtype_size(u->type.dtype) != attn_dtype_size(v->type.dtype))
        continue;
      bool is_safe = true;
      for (uint32_t m2 = p->first[k]; m2 < p->end[k] && is_safe; m2++) {
        const attn_node *reader = &graph->nodes[m2];
        if (!is_computed(graph, m2) || reader->kernel != k)
          continue;
        for (uint32_t j = 0; j < reader->input_count && is_safe; j++) {
          uint32_t x = reader->inputs[j].index;
          if (p->root[x] != r || !computed_producer(graph, reader->inputs[j]))
            continue;
          is_safe = x == input.index && p->is_epilogue[m2] &&
                    same_dims(&graph->values[reader->outputs[0].index].type, &u->type);
        }
      }
      if (is_safe)
        return b;
    }
  }
  return 0;
}

// A free buffer of `size`'s symbolic part: the smallest that holds it, else the largest (to
// grow); 0 when there is none.
static uint32_t best_fit(const planner *p, size_form size) {
  uint32_t fit = 0, largest = 0;
  for (uint32_t b = 1; b <= p->buffer_count; b++) {
    if (!p->is_free[b] || p->size[b].symbolic != size.symbolic)
      continue;
    int64_t c = p->size[b].constant;
    if (c >= size.constant && (!fit || c < p->size[fit].constant))
      fit = b;
    if (!largest || c > p->size[largest].constant)
      largest = b;
  }
  return fit ? fit : largest;
}

static attn_status assign(planner *p, uint32_t n, uint32_t value) {
  attn_graph *graph = p->graph;
  const attn_value *v = &graph->values[value];
  uint32_t k = graph->nodes[n].kernel, step = p->step[k];
  size_form size;
  ATTN_RETURN_IF_ERROR(size_of(p->ctx, graph, &v->type, &size));
  uint32_t b = in_place_buffer(p, n, k, step, v);
  if (!b)
    b = best_fit(p, size);
  if (!b) {
    b = ++p->buffer_count;
    p->size[b] = size;
  }
  if (p->size[b].constant < size.constant)
    p->size[b].constant = size.constant;
  p->is_free[b] = false;
  p->free_after[b] = p->last_use[value];
  p->value_buffer[value] = b;
  return ATTN_OK;
}

attn_status attn_pass_plan_memory(attn_pass_context *ctx, attn_graph *graph) {
  attn_arena *a = &ctx->scratch;
  uint32_t n_count = graph->node_count, v_count = graph->value_count;
  size_t k_count = graph->kernel_count ? graph->kernel_count : 1;
  planner p = {.ctx = ctx, .graph = graph};
  p.step = attn_arena_calloc(a, k_count, sizeof(uint32_t));
  p.first = attn_arena_calloc(a, k_count, sizeof(uint32_t));
  p.end = attn_arena_calloc(a, k_count, sizeof(uint32_t));
  p.is_epilogue = attn_arena_calloc(a, n_count, sizeof(bool));
  p.last_use = attn_arena_calloc(a, v_count, sizeof(uint32_t));
  p.root = attn_arena_calloc(a, v_count, sizeof(uint32_t));
  p.is_output = attn_arena_calloc(a, v_count, sizeof(bool));
  p.value_buffer = attn_arena_calloc(a, v_count, sizeof(uint32_t));
  p.size = attn_arena_calloc(a, v_count, sizeof(size_form));
  p.free_after = attn_arena_calloc(a, v_count, sizeof(uint32_t));
  p.is_free = attn_arena_calloc(a, v_count, sizeof(bool));
  bool *depends = attn_arena_calloc(a, n_count, sizeof(bool));
  bool *crosses = attn_arena_calloc(a, v_count, sizeof(bool));
  if (!p.step || !p.first || !p.end || !p.is_epilogue || !p.last_use || !p.root || !p.is_output ||
      !p.value_buffer || !p.size || !p.free_after || !p.is_free || !depends || !crosses)
    return out_of_memory(ctx);
  ATTN_RETURN_IF_ERROR(number_steps(&p));
  mark_epilogues(&p, depends);
  find_lifetimes(&p, crosses);

  // Kernel by kernel: the outputs take buffers, then the buffers whose values all died at
  // this kernel become free (not before: the kernel still reads them).
  uint32_t current = 0;
  for (uint32_t n = 1; n < n_count; n++) {
    if (!is_computed(graph, n))
      continue;
    const attn_node *node = &graph->nodes[n];
    uint32_t step = p.step[node->kernel];
    if (step != current) {
      for (uint32_t b = 1; current && b <= p.buffer_count; b++)
        if (!p.is_free[b] && p.free_after[b] == current)
          p.is_free[b] = true;
      current = step;
    }
    for (uint32_t o = 0; o < node->output_count; o++) {
      uint32_t v = node->outputs[o].index;
      if (p.root[v] == v)
        ATTN_RETURN_IF_ERROR(assign(&p, n, v));
    }
  }

  attn_buffer *buffers = attn_graph_alloc(graph, ((size_t)p.buffer_count + 1) * sizeof(*buffers));
  if (!buffers)
    return out_of_memory(ctx);
  buffers[0] = (attn_buffer){0};
  for (uint32_t b = 1; b <= p.buffer_count; b++)
    ATTN_RETURN_IF_ERROR(attn_graph_dim_binary(graph, ATTN_DIM_MUL, p.size[b].symbolic,
                                               p.size[b].constant, &buffers[b].bytes));
  for (uint32_t v = 1; v < v_count; v++)
    graph->values[v].buffer = p.root[v] ? p.value_buffer[p.root[v]] : 0;
  graph->buffers = buffers;
  graph->buffer_count = p.buffer_count + 1;
  ctx->changed = true;
  return ATTN_OK;
}
