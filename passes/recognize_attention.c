// recognize-attention: turns unfused softmax attention into one `attention` node. From every
// softmax over the last axis of a rank-4 value it matches back
//   out = matmul(softmax(chain(matmul(q, k, transpose_b=true))), v)
// where the scores matmul may also read a [.., D, Tk] view of K (transpose_b=false; permutes are
// composed and undone) and `chain` is a sequence of these elementwise steps, in any order:
//   - mul or div by a splat (a constant whose elements are all equal, of any shape that keeps the
//     scores' type) or by a scalar computed from constants only (sqrt(64)); q or k multiplied or
//     divided the same way fold in too. The scale attribute is the product, in double, of these
//     factors as the graph holds them, and is always written.
//   - where(visible, x, fill) or where(hidden, fill, x), fill a splat ≤ min-fill (option, default
//     -1e4) or -inf after the factors applied later; and add(x, m) of a float mask m.
// A mask built from constants and iotas only must be proved to be causal (j ≤ Tk - Tq + i) or a
// sliding window with sinks: iota comparisons are proved from their axes and starts, symbolic
// dims included; a mask of constant dims is evaluated with the reference evaluator and compared
// element by element (additive: 0 where visible, ≤ min-fill or -inf where hidden). Such a mask
// must leave every row a visible key (Tk ≥ Tq), or it is left alone. A mask a graph input or a
// weight reaches becomes the attention's explicit mask (bool: visible, after a `not` when it marks
// hidden keys; float: added to the logit); and(causal, padding) splits into both. K and V that
// repeat kv heads as Hugging Face's repeat_kv does (reshape to [B, Hkv, 1, T, D], expand to
// [B, Hkv, n, T, D], reshape to [B, Hkv * n, T, D]), or expand [B, 1, T, D], are read unrepeated:
// query head h then reads kv head h / n, which is that order; a tiled repetition ([k0, k1, k0,
// k1]) is not undone, the attention reads it as H kv heads.
//
// Differences from the unfused graph, beyond rounding (the attention accumulates in double): a
// fill ≤ min-fill is taken as "hidden", although its softmax weight is exp(fill - max), which is 0
// only while the visible logits stay within about 700 of it; and a row whose every key an explicit
// mask hides gives zeros, where the unfused graph gives the average of v over the row (finite
// fill) or NaN (-inf fill). An explicit additive mask must follow every factor (the attention
// adds it unscaled), and a finite fill, of a where or a constant mask, never meets one (their sum
// need not stay hidden).
//
// Not matched: a scores value, softmax output or intermediate with another user; a softmax not
// over the last axis; masks or chains of other forms (a fill above min-fill, an unrecognised
// constant mask, two explicit masks, a negative or zero scale). Those stay as they are. Matched
// nodes are marked dead; the views and masks they leave unused go with dce.
// Requires: verified graph. Invalidates: nothing beyond the nodes it replaces.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ir/interp.h"
#include "passes/pass.h"

static const double default_min_fill = -1e4;

enum {
  MAX_CHAIN = 16,              // elementwise steps between the scores and the softmax
  MAX_MASK_DEPTH = 8,          // not / and / or levels looked through in a bool mask
  MAX_INDEX_DEPTH = 16,        // views and offsets looked through around an iota
  MAX_EVAL_NODES = 256,        // nodes of a constant subgraph the pass evaluates
  MAX_SCALAR_ELEMENTS = 4096,  // elements of a computed scale factor or fill
  MAX_MASK_ELEMENTS = 1 << 22, // elements of any value evaluated, and of a [Tq, Tk] grid
  MAX_STEPS = 256,             // chain steps tried per softmax (an add can be read two ways)
  CACHE_SIZE = 32,             // classified constant masks remembered
  MAX_TERMS = 16,              // symbolic terms of a dim compared by linear_dim
};

static attn_status out_of_memory(attn_pass_context *ctx) {
  return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "recognize-attention: out of memory");
}

// ---- symbolic dims ------------------------------------------------------------------------------

// A dim as a constant plus integer multiples of symbolic atoms (symbols, products, quotients),
// so that (T_past + T) - T and T_past compare equal.
typedef struct linear_dim {
  int64_t constant;
  uint32_t count;
  attn_dim atoms[MAX_TERMS];
  int64_t coeffs[MAX_TERMS];
} linear_dim;

static bool linear_add(const attn_graph *graph, linear_dim *l, attn_dim dim, int64_t coeff,
                       int depth) {
  int64_t term;
  if (attn_dim_is_constant(dim))
    return !__builtin_mul_overflow(dim, coeff, &term) &&
           !__builtin_add_overflow(l->constant, term, &l->constant);
  const attn_dim_expr *e = attn_graph_dim_expr(graph, dim);
  if (!e || depth > 32 || coeff == INT64_MIN)
    return false;
  switch (e->kind) {
  case ATTN_DIM_ADD:
    return linear_add(graph, l, e->lhs, coeff, depth + 1) &&
           linear_add(graph, l, e->rhs, coeff, depth + 1);
  case ATTN_DIM_SUB:
    return linear_add(graph, l, e->lhs, coeff, depth + 1) &&
           linear_add(graph, l, e->rhs, -coeff, depth + 1);
  case ATTN_DIM_MUL:
    if (attn_dim_is_constant(e->rhs))
      return !__builtin_mul_overflow(coeff, e->rhs, &term) &&
             linear_add(graph, l, e->lhs, term, depth + 1);
    if (attn_dim_is_constant(e->lhs))
      return !__builtin_mul_overflow(coeff, e->lhs, &term) &&
             linear_add(graph, l, e->rhs, term, depth + 1);
    break;
  default:
    break;
  }
  for (uint32_t i = 0; i < l->count; i++)
    if (l->atoms[i] == dim)
      return !__builtin_add_overflow(l->coeffs[i], coeff, &l->coeffs[i]);
  if (l->count == MAX_TERMS)
    return false;
  l->atoms[l->count] = dim;
  l->coeffs[l->count++] = coeff;
  return true;
}

static bool linear_is_zero(const linear_dim *l) {
  for (uint32_t i = 0; i < l->count; i++)
    if (l->coeffs[i])
      return false;
  return l->constant == 0;
}

// Every atom is a dim, so ≥ 0: a form with no negative coefficient is ≥ 0.
static bool linear_is_nonnegative(const linear_dim *l) {
  for (uint32_t i = 0; i < l->count; i++)
    if (l->coeffs[i] < 0)
      return false;
  return l->constant >= 0;
}

static bool same_dim(const attn_graph *graph, attn_dim a, attn_dim b) {
  if (a == b)
    return true;
  linear_dim l = {0};
  return linear_add(graph, &l, a, 1, 0) && linear_add(graph, &l, b, -1, 0) && linear_is_zero(&l);
}

// ---- the matcher's state ------------------------------------------------------------------------

typedef enum mask_mode {
  MODE_VISIBLE_IF_TRUE,  // bool: true marks a visible key
  MODE_VISIBLE_IF_FALSE, // bool: true marks a hidden key
  MODE_ADDITIVE,         // float: 0 on visible keys, very negative on hidden ones
} mask_mode;

// What a constant mask was proved to be.
typedef struct mask_pattern {
  bool is_known;
  attn_mask_kind kind;
  int64_t window;
  int64_t sinks;
  double max_hidden; // additive: the largest value on a hidden key (-inf when none)
} mask_pattern;

typedef struct cache_entry {
  uint32_t value;
  mask_mode mode;
  attn_dim tq, tk;
  mask_pattern pattern;
} cache_entry;

typedef struct matcher {
  attn_pass_context *ctx;
  attn_graph *graph;
  double min_fill;
  // Uses of the values that existed when the pass started (value_limit of them); the nodes the
  // pass adds read only values that were read before, so these counts never fall short.
  uint32_t *uses;
  uint32_t value_limit;
  // Nodes that existed when the pass started; those the pass adds read runtime values only.
  uint32_t node_limit;
  uint32_t *mark; // per node: the walk that last reached it
  uint32_t walk;
  uint32_t *stack;     // the walk's stack
  uint32_t *ancestors; // the nodes the last walk reached
  uint32_t *value_map; // per value: its copy in the evaluation graph
  cache_entry cache[CACHE_SIZE];
  uint32_t cache_count, cache_next;
  uint32_t steps; // chain steps tried for the current softmax
} matcher;

static const attn_type *type_of(const matcher *m, attn_value_id v) {
  return &attn_graph_value(m->graph, v)->type;
}

static uint32_t use_count(const matcher *m, attn_value_id v) {
  return v.index < m->value_limit ? m->uses[v.index] : UINT32_MAX;
}

// The id of the live node producing `v` (0 for graph inputs).
static uint32_t producer_id(const matcher *m, attn_value_id v) {
  const attn_node *node = attn_value_producer(m->graph, v);
  return node ? attn_graph_value(m->graph, v)->producer.index : 0;
}

// The live node of `op` producing `v`, or NULL.
static const attn_node *producer_op(const matcher *m, attn_value_id v, attn_op op) {
  const attn_node *node = attn_value_producer(m->graph, v);
  return node && node->op == op ? node : NULL;
}

// ---- constant subgraphs -------------------------------------------------------------------------

typedef struct origin {
  bool is_runtime;  // a graph input or a weight reaches the value
  bool is_concrete; // (not runtime) every node has constant types and attributes
  uint32_t count;   // (not runtime) the nodes it depends on, in m->ancestors
} origin;

// Walks back from `v` through every node it depends on, stopping at the first graph input or
// weight.
static origin walk_back(matcher *m, attn_value_id v) {
  origin o = {false, true, 0};
  uint32_t first = producer_id(m, v);
  if (first == 0 || first >= m->node_limit) {
    o.is_runtime = true;
    return o;
  }
  uint32_t depth = 0;
  m->walk++;
  m->mark[first] = m->walk;
  m->stack[depth++] = first;
  while (depth) {
    uint32_t n = m->stack[--depth];
    const attn_node *node = &m->graph->nodes[n];
    if (node->op == ATTN_OP_WEIGHT) {
      o.is_runtime = true;
      return o;
    }
    m->ancestors[o.count++] = n;
    for (uint32_t i = 0; i < node->output_count; i++)
      o.is_concrete = o.is_concrete && attn_type_is_concrete(type_of(m, node->outputs[i]));
    o.is_concrete = o.is_concrete && attn_node_attrs_are_concrete(node);
    for (uint32_t i = 0; i < node->input_count; i++) {
      uint32_t p = producer_id(m, node->inputs[i]);
      if (p == 0 || p >= m->node_limit) {
        o.is_runtime = true;
        return o;
      }
      if (m->mark[p] != m->walk) {
        m->mark[p] = m->walk;
        m->stack[depth++] = p;
      }
    }
  }
  return o;
}

static int compare_ids(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

// Copies the `count` nodes of m->ancestors (sorted by id, which is a topological order since
// they all predate the pass) into `scratch_graph` and evaluates `v` there.
static attn_status evaluate_in(matcher *m, attn_value_id v, uint32_t count,
                               attn_graph *scratch_graph, attn_diag *diag, attn_tensor *out) {
  const attn_graph *graph = m->graph;
  qsort(m->ancestors, count, sizeof(*m->ancestors), compare_ids);
  for (uint32_t a = 0; a < count; a++) {
    const attn_node *node = &graph->nodes[m->ancestors[a]];
    attn_value_id inputs[8];
    attn_value_id *ids = inputs;
    if (node->input_count > 8) {
      ids = attn_graph_alloc(scratch_graph, node->input_count * sizeof(*ids));
      if (!ids)
        return ATTN_ERROR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; i < node->input_count; i++)
      ids[i] = (attn_value_id){m->value_map[node->inputs[i].index]};
    attn_node_id id;
    ATTN_RETURN_IF_ERROR(attn_graph_add_node(scratch_graph, node->op, ids, node->input_count,
                                             node->attrs, node->loc, &id));
    for (uint32_t i = 0; i < node->output_count; i++)
      m->value_map[node->outputs[i].index] = attn_node_output(scratch_graph, id, i).index;
  }
  attn_value_id result = {m->value_map[v.index]};
  const char *name = "value";
  ATTN_RETURN_IF_ERROR(attn_graph_set_outputs(scratch_graph, &result, &name, 1));
  attn_interp_args args = {NULL, NULL, NULL};
  return attn_interp_run(scratch_graph, &args, graph->allocator, diag, out);
}

// Evaluates `v` when it is computed from constants and iotas only, with constant dims, at most
// MAX_EVAL_NODES nodes and `max_elements` elements. *out_ok is false (status OK) when it is not,
// or when the evaluator rejects it; only running out of memory is an error. The caller frees
// `out` with the graph's allocator when *out_ok.
static attn_status evaluate_constant(matcher *m, attn_value_id v, int64_t max_elements,
                                     attn_tensor *out, bool *out_ok) {
  *out_ok = false;
  const attn_type *type = type_of(m, v);
  int64_t count = 1;
  for (uint32_t d = 0; d < type->rank; d++)
    if (!attn_dim_is_constant(type->dims[d]) ||
        __builtin_mul_overflow(count, type->dims[d], &count))
      return ATTN_OK;
  if (count > max_elements)
    return ATTN_OK;
  origin o = walk_back(m, v);
  if (o.is_runtime || !o.is_concrete || o.count > MAX_EVAL_NODES)
    return ATTN_OK;
  for (uint32_t a = 0; a < o.count; a++) {
    const attn_node *node = &m->graph->nodes[m->ancestors[a]];
    for (uint32_t i = 0; i < node->output_count; i++) {
      const attn_type *t = type_of(m, node->outputs[i]);
      int64_t elements = 1;
      for (uint32_t d = 0; d < t->rank; d++)
        if (__builtin_mul_overflow(elements, t->dims[d], &elements))
          return ATTN_OK;
      if (elements > MAX_MASK_ELEMENTS)
        return ATTN_OK;
    }
  }
  // The evaluator's complaints belong to this node's run time, not to this pass.
  attn_diag diag;
  attn_diag_init(&diag, m->graph->allocator);
  attn_graph *scratch_graph = NULL;
  attn_status status = attn_graph_create(m->graph->allocator, &diag, "mask", &scratch_graph);
  if (status == ATTN_OK)
    status = evaluate_in(m, v, o.count, scratch_graph, &diag, out);
  attn_graph_destroy(scratch_graph);
  attn_diag_deinit(&diag);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return out_of_memory(m->ctx);
  *out_ok = status == ATTN_OK;
  return ATTN_OK;
}

// The value every element of the float tensor holds; false when they differ, are NaN or there
// are none.
static bool splat_value(const attn_tensor *t, double *out) {
  int64_t count = attn_tensor_element_count(t);
  if (count < 1 || !attn_dtype_is_float(t->dtype))
    return false;
  double first = attn_tensor_get_f64(t, 0);
  if (isnan(first))
    return false;
  for (int64_t i = 1; i < count; i++)
    if (attn_tensor_get_f64(t, i) != first)
      return false;
  *out = first;
  return true;
}

// The one value of every element of `v`, a float computed from constants only (a constant, or
// sqrt(64) before fold-constants ran), exactly as the graph holds it.
static attn_status scalar_of(matcher *m, attn_value_id v, bool *out_ok, double *out) {
  const attn_constant_attrs *c = attn_value_constant(m->graph, v);
  if (c) {
    attn_tensor t = {c->type.dtype, c->type.rank, {0}, (void *)(uintptr_t)c->data};
    memcpy(t.dims, c->type.dims, c->type.rank * sizeof(int64_t));
    *out_ok = splat_value(&t, out);
    return ATTN_OK;
  }
  *out_ok = false;
  if (!attn_dtype_is_float(type_of(m, v)->dtype) || !attn_value_producer(m->graph, v))
    return ATTN_OK;
  attn_tensor t = {0};
  bool is_evaluated;
  ATTN_RETURN_IF_ERROR(evaluate_constant(m, v, MAX_SCALAR_ELEMENTS, &t, &is_evaluated));
  if (is_evaluated) {
    *out_ok = splat_value(&t, out);
    attn_tensor_free(m->graph->allocator, &t);
  }
  return ATTN_OK;
}

// The value of an i64 constant whose elements are all equal.
static bool int_splat(const matcher *m, attn_value_id v, int64_t *out) {
  const attn_constant_attrs *c = attn_value_constant(m->graph, v);
  if (!c || c->type.dtype != ATTN_DTYPE_I64)
    return false;
  int64_t count = 1;
  for (uint32_t d = 0; d < c->type.rank; d++)
    count *= c->type.dims[d];
  const int64_t *data = c->data;
  if (count < 1)
    return false;
  for (int64_t i = 1; i < count; i++)
    if (data[i] != data[0])
      return false;
  *out = data[0];
  return true;
}

// ---- masks built from iotas ---------------------------------------------------------------------
// Proofs that need no evaluation, so symbolic dims are fine. Masks broadcast right-aligned into
// the scores [B, H, Tq, Tk], so a value's last axis runs over keys and the one before over
// queries.

// Looks through views that keep every element at the same position counted from the last axis:
// expand, and reshape that only adds or drops leading 1s.
static attn_value_id through_views(const matcher *m, attn_value_id v) {
  for (int i = 0; i < MAX_INDEX_DEPTH; i++) {
    const attn_node *node = attn_value_producer(m->graph, v);
    if (!node || (node->op != ATTN_OP_EXPAND && node->op != ATTN_OP_RESHAPE))
      return v;
    if (node->op == ATTN_OP_RESHAPE) {
      const attn_type *in = type_of(m, node->inputs[0]), *out = type_of(m, v);
      uint32_t a = 0, b = 0;
      while (a < in->rank && in->dims[a] == 1)
        a++;
      while (b < out->rank && out->dims[b] == 1)
        b++;
      if (in->rank - a != out->rank - b)
        return v;
      for (uint32_t d = 0; a + d < in->rank; d++)
        if (!same_dim(m->graph, in->dims[a + d], out->dims[b + d]))
          return v;
    }
    v = node->inputs[0];
  }
  return v;
}

typedef enum index_role { ROLE_QUERY, ROLE_KEY } index_role;

// Whether the element of `v` at query row i and key column j is i + offset (ROLE_QUERY) or
// j + offset (ROLE_KEY): an i64 iota along the last axis (of length Tk) or the one before (of
// length Tq), with added or subtracted splat constants.
static bool index_of(const matcher *m, attn_value_id v, attn_dim tq, attn_dim tk, int depth,
                     index_role *out_role, linear_dim *offset) {
  if (depth > MAX_INDEX_DEPTH)
    return false;
  v = through_views(m, v);
  const attn_node *node = attn_value_producer(m->graph, v);
  if (!node)
    return false;
  int64_t c;
  switch (node->op) {
  case ATTN_OP_IOTA: {
    const attn_iota_attrs *iota = node->attrs;
    uint32_t rank = iota->type.rank;
    int64_t axis = iota->axis < 0 ? iota->axis + (int64_t)rank : iota->axis;
    if (iota->type.dtype != ATTN_DTYPE_I64 || axis < 0 || axis >= (int64_t)rank)
      return false;
    attn_dim length = iota->type.dims[axis];
    if (axis == (int64_t)rank - 1 && same_dim(m->graph, length, tk))
      *out_role = ROLE_KEY;
    else if (axis == (int64_t)rank - 2 && same_dim(m->graph, length, tq))
      *out_role = ROLE_QUERY;
    else
      return false;
    return linear_add(m->graph, offset, iota->start, 1, 0);
  }
  case ATTN_OP_ADD:
    for (uint32_t side = 0; side < 2; side++)
      if (int_splat(m, node->inputs[1 - side], &c))
        return index_of(m, node->inputs[side], tq, tk, depth + 1, out_role, offset) &&
               !__builtin_add_overflow(offset->constant, c, &offset->constant);
    return false;
  case ATTN_OP_SUB:
    return int_splat(m, node->inputs[1], &c) &&
           index_of(m, node->inputs[0], tq, tk, depth + 1, out_role, offset) &&
           !__builtin_sub_overflow(offset->constant, c, &offset->constant);
  default:
    return false;
  }
}

// Whether the bool `v` (visible where it is true when `polarity`, where it is false otherwise)
// is the causal mask: a comparison of a key index with a query index whose offsets make key j
// visible from row i exactly when j ≤ Tk - Tq + i, with Tk ≥ Tq.
static bool iota_is_causal(const matcher *m, attn_value_id v, bool polarity, attn_dim tq,
                           attn_dim tk, int depth) {
  if (depth > MAX_MASK_DEPTH)
    return false;
  v = through_views(m, v);
  const attn_node *node = attn_value_producer(m->graph, v);
  if (!node)
    return false;
  if (node->op == ATTN_OP_NOT)
    return iota_is_causal(m, node->inputs[0], !polarity, tq, tk, depth + 1);
  // The relation as "lhs op rhs", turned into "key op query".
  attn_op op = node->op;
  if (op != ATTN_OP_LE && op != ATTN_OP_LT && op != ATTN_OP_GE && op != ATTN_OP_GT)
    return false;
  index_role lhs_role, rhs_role;
  linear_dim lhs = {0}, rhs = {0};
  if (!index_of(m, node->inputs[0], tq, tk, 0, &lhs_role, &lhs) ||
      !index_of(m, node->inputs[1], tq, tk, 0, &rhs_role, &rhs) || lhs_role == rhs_role)
    return false;
  if (lhs_role == ROLE_QUERY) { // q op k is k op' q
    linear_dim swap = lhs;
    lhs = rhs;
    rhs = swap;
    op = op == ATTN_OP_LE   ? ATTN_OP_GE
         : op == ATTN_OP_LT ? ATTN_OP_GT
         : op == ATTN_OP_GE ? ATTN_OP_LE
                            : ATTN_OP_LT;
  }
  if (!polarity) // visible where the comparison is false
    op = op == ATTN_OP_LE   ? ATTN_OP_GT
         : op == ATTN_OP_LT ? ATTN_OP_GE
         : op == ATTN_OP_GE ? ATTN_OP_LT
                            : ATTN_OP_LE;
  // Visible iff j + lhs op i + rhs; causal is j ≤ i + (Tk - Tq), i.e. j < i + (Tk - Tq) + 1.
  if (op != ATTN_OP_LE && op != ATTN_OP_LT)
    return false;
  linear_dim diff = {0}, span = {0};
  for (uint32_t i = 0; i < rhs.count; i++)
    if (!linear_add(m->graph, &diff, rhs.atoms[i], rhs.coeffs[i], 0))
      return false;
  for (uint32_t i = 0; i < lhs.count; i++)
    if (lhs.coeffs[i] == INT64_MIN || !linear_add(m->graph, &diff, lhs.atoms[i], -lhs.coeffs[i], 0))
      return false;
  if (__builtin_sub_overflow(rhs.constant, lhs.constant, &diff.constant) ||
      (op == ATTN_OP_LT && __builtin_sub_overflow(diff.constant, 1, &diff.constant)))
    return false;
  // diff = Tk - Tq, and every row keeps a visible key: Tk - Tq ≥ 0.
  return linear_add(m->graph, &span, tk, 1, 0) && linear_add(m->graph, &span, tq, -1, 0) &&
         linear_is_nonnegative(&span) && linear_add(m->graph, &diff, tk, -1, 0) &&
         linear_add(m->graph, &diff, tq, 1, 0) && linear_is_zero(&diff);
}

// An additive mask where(visible, 0, fill) or where(hidden, fill, 0) over a causal comparison.
static attn_status iota_additive(matcher *m, attn_value_id v, attn_dim tq, attn_dim tk,
                                 mask_pattern *out) {
  const attn_node *node = producer_op(m, through_views(m, v), ATTN_OP_WHERE);
  if (!node)
    return ATTN_OK;
  attn_value_id cond = node->inputs[0], a = node->inputs[1], b = node->inputs[2];
  double x, y;
  bool is_a, is_b;
  ATTN_RETURN_IF_ERROR(scalar_of(m, a, &is_a, &x));
  ATTN_RETURN_IF_ERROR(scalar_of(m, b, &is_b, &y));
  if (!is_a || !is_b || (x != 0.0 && y != 0.0))
    return ATTN_OK;
  bool polarity = x == 0.0;
  if (iota_is_causal(m, cond, polarity, tq, tk, 0))
    *out = (mask_pattern){true, ATTN_MASK_CAUSAL, 0, 0, polarity ? y : x};
  return ATTN_OK;
}

// ---- masks evaluated ----------------------------------------------------------------------------

// The pattern of a [Tq, Tk] visibility grid: none (all visible), causal, or a sliding window
// with sinks; unknown for anything else or when a row could be left without a visible key.
static mask_pattern classify_grid(const uint8_t *grid, int64_t tq, int64_t tk) {
  mask_pattern none = {false, ATTN_MASK_NONE, 0, 0, -(double)INFINITY};
  bool all = true, causal = true;
  for (int64_t i = 0; i < tq; i++)
    for (int64_t j = 0; j < tk; j++) {
      all = all && grid[i * tk + j];
      causal = causal && grid[i * tk + j] == (j <= tk - tq + i);
    }
  if (all) {
    none.is_known = true;
    return none;
  }
  if (tk < tq || tq < 1)
    return none;
  if (causal)
    return (mask_pattern){true, ATTN_MASK_CAUSAL, 0, 0, -(double)INFINITY};
  // Not causal, so the last row (position Tk - 1) hides a key between the sinks and the window:
  // the visible run that ends at Tk - 1 is the window, the one that starts at 0 the sinks.
  const uint8_t *last = grid + (tq - 1) * tk;
  int64_t window = 0, sinks = 0;
  while (window < tk && last[tk - 1 - window])
    window++;
  while (sinks < tk && last[sinks])
    sinks++;
  if (window < 1 || window >= tk)
    return none;
  for (int64_t i = 0; i < tq; i++) {
    int64_t pos = tk - tq + i;
    for (int64_t j = 0; j < tk; j++)
      if (grid[i * tk + j] != (j <= pos && (j > pos - window || j < sinks)))
        return none;
  }
  return (mask_pattern){true, ATTN_MASK_SLIDING_WINDOW, window, sinks, -(double)INFINITY};
}

// Classifies the evaluated mask `t`, which broadcasts to [.., tq, tk].
static attn_status classify_tensor(matcher *m, const attn_tensor *t, mask_mode mode, int64_t tq,
                                   int64_t tk, mask_pattern *out) {
  uint32_t r = t->rank;
  int64_t dq = r >= 2 ? t->dims[r - 2] : 1, dk = r >= 1 ? t->dims[r - 1] : 1;
  int64_t cells;
  if (r > 4 || (dq != 1 && dq != tq) || (dk != 1 && dk != tk) || tq < 1 || tk < 1 ||
      __builtin_mul_overflow(tq, tk, &cells) || cells > MAX_MASK_ELEMENTS)
    return ATTN_OK;
  int64_t slices = 1;
  for (uint32_t d = 0; d + 2 < r; d++)
    slices *= t->dims[d];
  attn_allocator allocator = m->graph->allocator;
  uint8_t *grid = attn_allocator_alloc(allocator, (size_t)cells);
  if (!grid)
    return out_of_memory(m->ctx);
  double max_hidden = -(double)INFINITY;
  bool is_consistent = true;
  for (int64_t s = 0; s < slices && is_consistent; s++) {
    for (int64_t i = 0; i < tq && is_consistent; i++) {
      for (int64_t j = 0; j < tk; j++) {
        double value =
            attn_tensor_get_f64(t, s * dq * dk + (dq == 1 ? 0 : i) * dk + (dk == 1 ? 0 : j));
        bool visible;
        if (mode == MODE_ADDITIVE) {
          visible = value == 0.0;
          if (isnan(value)) {
            is_consistent = false;
            break;
          }
          if (!visible && value > max_hidden)
            max_hidden = value;
        } else {
          visible = (value != 0.0) == (mode == MODE_VISIBLE_IF_TRUE);
        }
        if (s == 0)
          grid[i * tk + j] = visible;
        else if (grid[i * tk + j] != visible)
          is_consistent = false;
      }
    }
  }
  if (is_consistent) {
    *out = classify_grid(grid, tq, tk);
    out->max_hidden = max_hidden;
  }
  attn_allocator_free(allocator, grid, (size_t)cells);
  return ATTN_OK;
}

// What the constant mask `v` is, read in `mode`, for scores [.., tq, tk]: proved from iotas,
// else evaluated when every dim is constant. Remembered, since layers share their mask.
static attn_status classify_constant(matcher *m, attn_value_id v, mask_mode mode, attn_dim tq,
                                     attn_dim tk, mask_pattern *out) {
  for (uint32_t i = 0; i < m->cache_count; i++) {
    const cache_entry *e = &m->cache[i];
    if (e->value == v.index && e->mode == mode && e->tq == tq && e->tk == tk) {
      *out = e->pattern;
      return ATTN_OK;
    }
  }
  mask_pattern pattern = {false, ATTN_MASK_NONE, 0, 0, -(double)INFINITY};
  if (mode == MODE_ADDITIVE)
    ATTN_RETURN_IF_ERROR(iota_additive(m, v, tq, tk, &pattern));
  else if (iota_is_causal(m, v, mode == MODE_VISIBLE_IF_TRUE, tq, tk, 0))
    pattern = (mask_pattern){true, ATTN_MASK_CAUSAL, 0, 0, -(double)INFINITY};
  if (!pattern.is_known && attn_dim_is_constant(tq) && attn_dim_is_constant(tk)) {
    attn_tensor t = {0};
    bool is_evaluated;
    ATTN_RETURN_IF_ERROR(evaluate_constant(m, v, MAX_MASK_ELEMENTS, &t, &is_evaluated));
    if (is_evaluated) {
      attn_status status = classify_tensor(m, &t, mode, tq, tk, &pattern);
      attn_tensor_free(m->graph->allocator, &t);
      ATTN_RETURN_IF_ERROR(status);
    }
  }
  uint32_t slot = m->cache_count < CACHE_SIZE ? m->cache_count++ : m->cache_next++ % CACHE_SIZE;
  m->cache[slot] = (cache_entry){v.index, mode, tq, tk, pattern};
  *out = pattern;
  return ATTN_OK;
}

// ---- the candidate ------------------------------------------------------------------------------

// What the masks of one softmax add up to.
typedef struct mask_set {
  attn_mask_kind kind;
  int64_t window;
  int64_t sinks;
  attn_value_id explicit_mask; // none, or the attention's mask input
  bool is_negated;             // the explicit (bool) mask marks hidden keys: read not(mask)
} mask_set;

// A q, k or v operand as the attention reads it: `base`, permuted by `perm` when is_permuted,
// or reshaped from [B, Hkv, 1, T, D] to [B, Hkv, T, D] when needs_reshape.
typedef struct operand {
  attn_value_id base;
  bool is_permuted;
  int64_t perm[4];
  bool needs_reshape;
  attn_type type;
} operand;

typedef struct candidate {
  attn_type scores_type; // [B, H, Tq, Tk]
  uint32_t chain[MAX_CHAIN];
  uint32_t chain_count;
  uint32_t scores_matmul;
  double scale; // the factors of the chain; then of q and k too
  mask_set masks;
  operand q, k, v;
} candidate;

// Adds a mask kind; causal within a sliding window is the window.
static bool add_kind(mask_set *set, const mask_pattern *p) {
  if (p->kind == ATTN_MASK_NONE)
    return true;
  if (set->kind == ATTN_MASK_NONE || set->kind == ATTN_MASK_CAUSAL) {
    if (p->kind == ATTN_MASK_CAUSAL && set->kind == ATTN_MASK_CAUSAL)
      return true;
    set->kind = p->kind;
    set->window = p->window;
    set->sinks = p->sinks;
    return true;
  }
  // set is a sliding window
  return p->kind == ATTN_MASK_CAUSAL || (p->window == set->window && p->sinks == set->sinks);
}

static bool set_explicit(const matcher *m, mask_set *set, attn_value_id v, bool is_negated) {
  if (set->explicit_mask.index || type_of(m, v)->rank > 4)
    return false;
  set->explicit_mask = v;
  set->is_negated = is_negated;
  return true;
}

// Adds the bool mask `v` (visible where it is true when `polarity`, where false otherwise).
static attn_status add_bool_mask(matcher *m, candidate *c, attn_value_id v, bool polarity,
                                 int depth, bool *out_ok) {
  attn_dim tq = c->scores_type.dims[2], tk = c->scores_type.dims[3];
  *out_ok = false;
  origin o = walk_back(m, v);
  if (!o.is_runtime) {
    mask_pattern p;
    ATTN_RETURN_IF_ERROR(classify_constant(
        m, v, polarity ? MODE_VISIBLE_IF_TRUE : MODE_VISIBLE_IF_FALSE, tq, tk, &p));
    *out_ok = p.is_known && add_kind(&c->masks, &p);
    return ATTN_OK;
  }
  const attn_node *node = attn_value_producer(m->graph, v);
  if (node && depth < MAX_MASK_DEPTH) {
    if (node->op == ATTN_OP_NOT)
      return add_bool_mask(m, c, node->inputs[0], !polarity, depth + 1, out_ok);
    // visible = a and b (or: hidden = a or b): a constant side and a runtime side split into a
    // mask kind and the explicit mask.
    if ((node->op == ATTN_OP_AND && polarity) || (node->op == ATTN_OP_OR && !polarity)) {
      attn_value_id a = node->inputs[0], b = node->inputs[1];
      bool a_runtime = walk_back(m, a).is_runtime, b_runtime = walk_back(m, b).is_runtime;
      if (a_runtime != b_runtime) {
        mask_set saved = c->masks;
        bool is_constant_ok, is_runtime_ok = false;
        ATTN_RETURN_IF_ERROR(
            add_bool_mask(m, c, a_runtime ? b : a, polarity, depth + 1, &is_constant_ok));
        if (is_constant_ok)
          ATTN_RETURN_IF_ERROR(
              add_bool_mask(m, c, a_runtime ? a : b, polarity, depth + 1, &is_runtime_ok));
        if (is_constant_ok && is_runtime_ok) {
          *out_ok = true;
          return ATTN_OK;
        }
        c->masks = saved;
      }
    }
  }
  *out_ok = set_explicit(m, &c->masks, v, !polarity);
  return ATTN_OK;
}

// Whether a fill, after the factors applied later, hides its key.
static bool is_hiding(const matcher *m, double fill) {
  return fill == -(double)INFINITY || fill <= m->min_fill;
}

typedef struct chain_state {
  double after;         // the product of the factors applied after this point
  bool explicit_added;  // an explicit additive mask is added after this point
  bool finite_additive; // a constant additive mask with finite hidden values is added after it
} chain_state;

static attn_status walk_chain(matcher *m, candidate *c, attn_value_id v, chain_state st,
                              bool *out_ok);

// Continues the chain at `x` with `factor` applied from here on.
static attn_status scaled(matcher *m, candidate *c, attn_value_id x, chain_state st, double factor,
                          bool *out_ok) {
  st.after *= factor;
  if (!isfinite(st.after) || st.after == 0.0) {
    *out_ok = false;
    return ATTN_OK;
  }
  return walk_chain(m, c, x, st, out_ok);
}

// Node `n` of the chain, read with input `x_index` as the chain and the other input as a scale
// factor, a fill or a mask.
static attn_status chain_step(matcher *m, candidate *c, uint32_t n, uint32_t x_index,
                              chain_state st, bool *out_ok) {
  *out_ok = false;
  const attn_node *node = &m->graph->nodes[n];
  attn_value_id x = node->inputs[x_index];
  if (!attn_type_equal(type_of(m, x), &c->scores_type))
    return ATTN_OK;
  attn_value_id other = node->inputs[node->op == ATTN_OP_WHERE ? 3 - x_index : 1 - x_index];
  double value;
  bool is_scalar;
  switch (node->op) {
  case ATTN_OP_MUL:
  case ATTN_OP_DIV:
    ATTN_RETURN_IF_ERROR(scalar_of(m, other, &is_scalar, &value));
    if (!is_scalar || (node->op == ATTN_OP_DIV && x_index != 0))
      return ATTN_OK;
    return scaled(m, c, x, st, node->op == ATTN_OP_MUL ? value : 1.0 / value, out_ok);
  case ATTN_OP_WHERE: {
    ATTN_RETURN_IF_ERROR(scalar_of(m, other, &is_scalar, &value));
    if (!is_scalar)
      return ATTN_OK;
    double fill = value * st.after;
    if (!is_hiding(m, fill) || (st.explicit_added && fill != -(double)INFINITY))
      return ATTN_OK;
    bool is_mask;
    ATTN_RETURN_IF_ERROR(add_bool_mask(m, c, node->inputs[0], x_index == 1, 0, &is_mask));
    return is_mask ? walk_chain(m, c, x, st, out_ok) : ATTN_OK;
  }
  case ATTN_OP_ADD: {
    if (walk_back(m, other).is_runtime) {
      // An explicit mask is added to the logit as it is: no factor may follow it, and no finite
      // constant mask may be added after it (their sum need not stay hidden).
      if (st.after != 1.0 || st.finite_additive || !set_explicit(m, &c->masks, other, false))
        return ATTN_OK;
      st.explicit_added = true;
      return walk_chain(m, c, x, st, out_ok);
    }
    mask_pattern p;
    ATTN_RETURN_IF_ERROR(classify_constant(m, other, MODE_ADDITIVE, c->scores_type.dims[2],
                                           c->scores_type.dims[3], &p));
    if (!p.is_known)
      return ATTN_OK;
    double hidden = p.max_hidden * st.after;
    if (p.kind != ATTN_MASK_NONE) {
      if (!is_hiding(m, hidden) || (st.explicit_added && hidden != -(double)INFINITY))
        return ATTN_OK;
      st.finite_additive = st.finite_additive || hidden != -(double)INFINITY;
    }
    return add_kind(&c->masks, &p) ? walk_chain(m, c, x, st, out_ok) : ATTN_OK;
  }
  default:
    return ATTN_OK;
  }
}

// Walks from `v` (the softmax input, then each step's chain operand) back to the scores matmul.
static attn_status walk_chain(matcher *m, candidate *c, attn_value_id v, chain_state st,
                              bool *out_ok) {
  *out_ok = false;
  uint32_t n = producer_id(m, v);
  if (n == 0 || use_count(m, v) != 1 || ++m->steps > MAX_STEPS)
    return ATTN_OK;
  attn_op op = m->graph->nodes[n].op;
  if (op == ATTN_OP_MATMUL) {
    c->scores_matmul = n;
    c->scale = st.after;
    *out_ok = true;
    return ATTN_OK;
  }
  if (c->chain_count == MAX_CHAIN ||
      (op != ATTN_OP_MUL && op != ATTN_OP_DIV && op != ATTN_OP_ADD && op != ATTN_OP_WHERE))
    return ATTN_OK;
  c->chain[c->chain_count++] = n;
  // mul and add may hold the chain on either side, where on either branch, div on the left.
  uint32_t first = op == ATTN_OP_WHERE ? 1 : 0, last = op == ATTN_OP_DIV ? 0 : first + 1;
  candidate saved = *c;
  for (uint32_t side = first; side <= last; side++) {
    ATTN_RETURN_IF_ERROR(chain_step(m, c, n, side, st, out_ok));
    if (*out_ok)
      return ATTN_OK;
    *c = saved;
  }
  return ATTN_OK;
}

// ---- q, k and v ---------------------------------------------------------------------------------

// Folds multiplications and divisions of `o->base` by splats into `scale`.
static attn_status peel_scale(matcher *m, operand *o, double *scale) {
  for (int i = 0; i < MAX_CHAIN; i++) {
    const attn_node *node = attn_value_producer(m->graph, o->base);
    if (!node || (node->op != ATTN_OP_MUL && node->op != ATTN_OP_DIV))
      return ATTN_OK;
    bool is_folded = false;
    for (uint32_t side = 0; side < 2 && !is_folded; side++) {
      attn_value_id x = node->inputs[side];
      double value;
      bool is_scalar = false;
      if ((node->op == ATTN_OP_DIV && side != 0) ||
          !attn_type_equal(type_of(m, x), type_of(m, o->base)))
        continue;
      ATTN_RETURN_IF_ERROR(scalar_of(m, node->inputs[1 - side], &is_scalar, &value));
      if (is_scalar) {
        *scale *= node->op == ATTN_OP_MUL ? value : 1.0 / value;
        o->base = x;
        is_folded = true;
      }
    }
    if (!is_folded)
      return ATTN_OK;
  }
  return ATTN_OK;
}

static bool is_identity(const int64_t *perm) {
  return perm[0] == 0 && perm[1] == 1 && perm[2] == 2 && perm[3] == 3;
}

// The operand `v` as the attention reads it: v itself, or its last two axes swapped when
// `is_transposed`, with permutes composed away and (when `scale` is not NULL) splat factors
// folded into *scale.
static attn_status resolve(matcher *m, attn_value_id v, bool is_transposed, double *scale,
                           operand *out) {
  *out = (operand){v, false, {0, 1, 2, 3}, false, {0}};
  if (is_transposed) {
    out->perm[2] = 3;
    out->perm[3] = 2;
  }
  for (int i = 0; i < MAX_CHAIN; i++) {
    if (scale)
      ATTN_RETURN_IF_ERROR(peel_scale(m, out, scale));
    const attn_node *node = producer_op(m, out->base, ATTN_OP_PERMUTE);
    if (is_identity(out->perm) || !node || type_of(m, out->base)->rank != 4)
      break;
    // base = permute(x, q), so permute(base, p) = permute(x, q∘p).
    const int64_t *q = ((const attn_perm_attrs *)node->attrs)->perm;
    for (int d = 0; d < 4; d++)
      out->perm[d] = q[out->perm[d]];
    out->base = node->inputs[0];
  }
  const attn_type *t = type_of(m, out->base);
  out->is_permuted = !is_identity(out->perm);
  out->type = *t;
  if (t->rank != 4)
    return ATTN_OK;
  for (int d = 0; d < 4; d++)
    out->type.dims[d] = t->dims[out->perm[d]];
  return ATTN_OK;
}

// Reads K or V unrepeated when it repeats kv heads in the attention's order: reshape to
// [B, Hkv * n, T, D] of expand to [B, Hkv, n, T, D] of x = [B, Hkv, 1, T, D] (then
// [B, Hkv, T, D] is x reshaped, or the value x was reshaped from), or expand of [B, 1, T, D].
static void unrepeat(const matcher *m, operand *o) {
  const attn_graph *g = m->graph;
  const attn_type *t = &o->type;
  if (o->is_permuted || t->rank != 4)
    return;
  const attn_node *node = attn_value_producer(g, o->base);
  if (node && node->op == ATTN_OP_EXPAND) {
    const attn_type *x = type_of(m, node->inputs[0]);
    if (x->rank == 4 && x->dims[1] == 1 && same_dim(g, x->dims[0], t->dims[0]) &&
        same_dim(g, x->dims[2], t->dims[2]) && same_dim(g, x->dims[3], t->dims[3])) {
      o->base = node->inputs[0];
      o->type = *x;
    }
    return;
  }
  if (!node || node->op != ATTN_OP_RESHAPE)
    return;
  const attn_node *expand = producer_op(m, node->inputs[0], ATTN_OP_EXPAND);
  if (!expand)
    return;
  const attn_type *y = type_of(m, node->inputs[0]), *x = type_of(m, expand->inputs[0]);
  if (y->rank != 5 || x->rank != 5)
    return;
  for (int d = 0; d < 5; d++)
    if (d != 1 && d != 2 &&
        !(same_dim(g, y->dims[d], t->dims[d < 2 ? d : d - 1]) &&
          same_dim(g, x->dims[d], t->dims[d < 2 ? d : d - 1])))
      return;
  // Head h of the result is y's (h / n, h % n); it reads x's kv head h / n when only axis 2
  // was expanded, or the one kv head when x has one.
  bool is_interleaved = x->dims[2] == 1 && same_dim(g, x->dims[1], y->dims[1]);
  bool is_single = x->dims[1] == 1 && x->dims[2] == 1;
  if (!is_interleaved && !is_single)
    return;
  attn_type small = {t->dtype, 4, {t->dims[0], x->dims[1], t->dims[2], t->dims[3]}};
  const attn_node *unsqueeze = producer_op(m, expand->inputs[0], ATTN_OP_RESHAPE);
  o->type = small;
  if (unsqueeze && attn_type_equal(type_of(m, unsqueeze->inputs[0]), &small)) {
    o->base = unsqueeze->inputs[0];
    return;
  }
  o->base = expand->inputs[0];
  o->needs_reshape = true;
}

// Matches the scores matmul and the output matmul reading `p`: q, k, v and their scale.
static attn_status match_operands(matcher *m, candidate *c, const attn_node *out_matmul,
                                  bool *out_ok) {
  *out_ok = false;
  const attn_node *scores = &m->graph->nodes[c->scores_matmul];
  const attn_matmul_attrs *sa = scores->attrs, *oa = out_matmul->attrs;
  if (oa->transpose_a || !attn_type_equal(type_of(m, scores->outputs[0]), &c->scores_type))
    return ATTN_OK;
  attn_value_id q = scores->inputs[0], k = scores->inputs[1], v = out_matmul->inputs[1];
  double q_scale = 1.0, k_scale = 1.0;
  ATTN_RETURN_IF_ERROR(resolve(m, q, sa->transpose_a, &q_scale, &c->q));
  ATTN_RETURN_IF_ERROR(resolve(m, k, !sa->transpose_b, &k_scale, &c->k));
  ATTN_RETURN_IF_ERROR(resolve(m, v, oa->transpose_b, NULL, &c->v));
  // K and V read unrepeated only when both repeat their heads the same way.
  operand k_full = c->k, v_full = c->v;
  unrepeat(m, &c->k);
  unrepeat(m, &c->v);
  if (c->k.type.rank != 4 || c->v.type.rank != 4 ||
      !same_dim(m->graph, c->k.type.dims[1], c->v.type.dims[1])) {
    c->k = k_full;
    c->v = v_full;
  }
  ATTN_RETURN_IF_ERROR(peel_scale(m, &c->k, &k_scale));
  c->scale *= q_scale * k_scale;
  *out_ok = isfinite(c->scale) && c->scale > 0.0;
  return ATTN_OK;
}

// ---- rewriting ----------------------------------------------------------------------------------

static attn_status materialize(matcher *m, const operand *o, attn_loc loc, attn_value_id *out) {
  attn_graph *graph = m->graph;
  *out = o->base;
  attn_node_id id;
  if (o->needs_reshape) {
    attn_dim *dims = attn_graph_alloc(graph, 4 * sizeof(*dims));
    if (!dims)
      return out_of_memory(m->ctx);
    memcpy(dims, o->type.dims, 4 * sizeof(*dims));
    attn_shape_attrs attrs = {dims, 4};
    ATTN_RETURN_IF_ERROR(attn_graph_add_node(graph, ATTN_OP_RESHAPE, out, 1, &attrs, loc, &id));
    *out = attn_node_output(graph, id, 0);
  }
  if (o->is_permuted) {
    int64_t *perm = attn_graph_alloc(graph, 4 * sizeof(*perm));
    if (!perm)
      return out_of_memory(m->ctx);
    memcpy(perm, o->perm, 4 * sizeof(*perm));
    attn_perm_attrs attrs = {perm, 4};
    ATTN_RETURN_IF_ERROR(attn_graph_add_node(graph, ATTN_OP_PERMUTE, out, 1, &attrs, loc, &id));
    *out = attn_node_output(graph, id, 0);
  }
  return ATTN_OK;
}

// Whether the attention node of `attrs` over the candidate's operands type-checks and gives
// `want`; its shape rule's complaints go to a private sink (the candidate is then left alone).
static attn_status attention_fits(matcher *m, const candidate *c, const attn_attention_attrs *attrs,
                                  const attn_type *want, bool *out_ok) {
  attn_graph *graph = m->graph;
  attn_type types[4] = {c->q.type, c->k.type, c->v.type, {0}};
  uint32_t count = 3;
  if (attrs->has_mask)
    types[count++] = *type_of(m, c->masks.explicit_mask);
  attn_type result;
  attn_diag diag;
  attn_diag_init(&diag, graph->allocator);
  attn_diag *saved = graph->diag;
  graph->diag = &diag;
  attn_status status =
      attn_infer_types(graph, ATTN_OP_ATTENTION, attrs, types, count, ATTN_LOC_NONE, &result, 1);
  graph->diag = saved;
  attn_diag_deinit(&diag);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return out_of_memory(m->ctx);
  *out_ok = status == ATTN_OK && attn_type_equal(&result, want);
  return ATTN_OK;
}

// Replaces the softmax `n`, the matmuls around it and the chain by one attention node.
static attn_status rewrite(matcher *m, const candidate *c, uint32_t n, uint32_t out_matmul) {
  attn_graph *graph = m->graph;
  attn_attention_attrs attrs = {
      .scale = c->scale,
      .mask = c->masks.kind,
      .window = c->masks.window,
      .sinks = c->masks.sinks,
      .has_mask = c->masks.explicit_mask.index != 0,
      .norm = ATTN_NORM_SOFTMAX,
  };
  attn_value_id old = graph->nodes[out_matmul].outputs[0];
  attn_type want = *type_of(m, old);
  bool is_fit = false;
  ATTN_RETURN_IF_ERROR(attention_fits(m, c, &attrs, &want, &is_fit));
  if (!is_fit)
    return ATTN_OK;
  attn_loc loc = graph->nodes[n].loc;
  attn_value_id inputs[4];
  ATTN_RETURN_IF_ERROR(materialize(m, &c->q, loc, &inputs[0]));
  ATTN_RETURN_IF_ERROR(materialize(m, &c->k, loc, &inputs[1]));
  ATTN_RETURN_IF_ERROR(materialize(m, &c->v, loc, &inputs[2]));
  uint32_t count = 3;
  if (attrs.has_mask) {
    inputs[count] = c->masks.explicit_mask;
    if (c->masks.is_negated) {
      attn_node_id id;
      ATTN_RETURN_IF_ERROR(
          attn_graph_add_node(graph, ATTN_OP_NOT, &inputs[count], 1, NULL, loc, &id));
      inputs[count] = attn_node_output(graph, id, 0);
    }
    count++;
  }
  attn_node_id id;
  ATTN_RETURN_IF_ERROR(
      attn_graph_add_node(graph, ATTN_OP_ATTENTION, inputs, count, &attrs, loc, &id));
  attn_value_id result = attn_node_output(graph, id, 0);
  attn_graph_value(graph, result)->name = attn_graph_value(graph, old)->name;
  attn_graph_replace_uses(graph, old, result);
  graph->nodes[out_matmul].is_dead = true;
  graph->nodes[n].is_dead = true;
  for (uint32_t i = 0; i < c->chain_count; i++)
    graph->nodes[c->chain[i]].is_dead = true;
  graph->nodes[c->scores_matmul].is_dead = true;
  m->ctx->changed = true;
  return ATTN_OK;
}

// Matches the softmax node `n` and rewrites it when everything around it fits.
static attn_status recognize(matcher *m, uint32_t n) {
  attn_graph *graph = m->graph;
  const attn_node *softmax = &graph->nodes[n];
  attn_value_id scores = softmax->inputs[0], p = softmax->outputs[0];
  const attn_type *type = type_of(m, scores);
  int64_t axis = ((const attn_axis_attrs *)softmax->attrs)->axis;
  if (type->rank != 4 || (axis != -1 && axis != 3) || use_count(m, p) != 1)
    return ATTN_OK;
  // p's one use: the output matmul's first input (and not its second too).
  uint32_t out_matmul = 0;
  for (uint32_t u = n + 1; u < graph->node_count && !out_matmul; u++) {
    const attn_node *node = &graph->nodes[u];
    for (uint32_t i = 0; i < node->input_count && !node->is_dead; i++)
      if (node->inputs[i].index == p.index)
        out_matmul = u;
  }
  if (!out_matmul || graph->nodes[out_matmul].op != ATTN_OP_MATMUL ||
      graph->nodes[out_matmul].inputs[0].index != p.index ||
      graph->nodes[out_matmul].inputs[1].index == p.index)
    return ATTN_OK;
  candidate c = {.scores_type = *type};
  chain_state st = {1.0, false, false};
  bool is_match;
  m->steps = 0;
  ATTN_RETURN_IF_ERROR(walk_chain(m, &c, scores, st, &is_match));
  if (is_match)
    ATTN_RETURN_IF_ERROR(match_operands(m, &c, &graph->nodes[out_matmul], &is_match));
  return is_match ? rewrite(m, &c, n, out_matmul) : ATTN_OK;
}

attn_status attn_pass_recognize_attention(attn_pass_context *ctx, attn_graph *graph) {
  matcher m = {.ctx = ctx, .graph = graph};
  m.min_fill = attn_pass_option_float(ctx, "min-fill", default_min_fill);
  m.value_limit = graph->value_count;
  m.node_limit = graph->node_count;
  ATTN_RETURN_IF_ERROR(attn_graph_count_uses(graph, &ctx->scratch, &m.uses));
  m.mark = attn_arena_calloc(&ctx->scratch, m.node_limit, sizeof(*m.mark));
  m.stack = attn_arena_calloc(&ctx->scratch, m.node_limit, sizeof(*m.stack));
  m.ancestors = attn_arena_calloc(&ctx->scratch, m.node_limit, sizeof(*m.ancestors));
  m.value_map = attn_arena_calloc(&ctx->scratch, m.value_limit, sizeof(*m.value_map));
  if (!m.mark || !m.stack || !m.ancestors || !m.value_map)
    return out_of_memory(ctx);
  for (uint32_t n = 1; n < m.node_limit; n++) {
    const attn_node *node = &graph->nodes[n];
    if (!node->is_dead && node->op == ATTN_OP_SOFTMAX &&
        attn_dtype_is_float(type_of(&m, node->inputs[0])->dtype))
      ATTN_RETURN_IF_ERROR(recognize(&m, n));
  }
  return ATTN_OK;
}
