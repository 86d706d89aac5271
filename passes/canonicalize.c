// canonicalize: algebraic identities and shape-op simplification, applied until nothing changes.
//   x+0, 0+x, x-0, x*1, 1*x, x/1 → x (the constant all 0s or all 1s, and the result type x's
//     own: a constant that broadcasts x to a bigger shape is not an identity); neg(neg(x)) → x for
//     floats (integer negation saturates); cast to x's own dtype → x.
//   reshape, expand, slice or cast whose result type is x's → x (a slice only with step 1);
//     reshape(reshape(x)) → reshape(x); permute by the identity → x; permute(permute(x)) → one
//     permute by the composed perm; concat of one input → x.
//   A splat constant of rank > 0 operand of an elementwise op becomes a rank-0 constant, and an
//     expand read by an elementwise op is bypassed, both when the op's result type stays.
//   mul(mul(x, c), d) → mul(x, c*d) for f32 scalar constants c and d; x / c → x * (1/c) for a
//     float scalar c whose reciprocal is exact (a power of two), which changes no bit.
// Every rewrite keeps the node's result type; numerics stay within one f32 rounding (only the
// scalar chain rounds differently, which is why it is limited to f32; and x + 0.0 → x keeps a
// -0.0 that the addition would have made +0.0). Nodes left unused afterwards are removed.
// Requires: verified graph. Invalidates: nothing beyond the nodes it replaces.
#include <math.h>
#include <string.h>

#include "passes/pass.h"
#include "runtime/base/tensor.h"

// A bound on the sweeps: every rewrite makes the graph smaller or simpler, so this only stops
// a rule set that someone made cyclic by mistake.
enum { MAX_SWEEPS = 64 };

typedef struct rewriter {
  attn_pass_context *ctx;
  attn_graph *graph;
  // forward[v]: the value that replaced value v (0: none), followed in chains. Nodes are
  // visited in order and read their inputs through it, so a sweep redirects every use without
  // rescanning the graph for each rewrite.
  uint32_t *forward;
  size_t forward_capacity;
  bool is_changed; // in this sweep
} rewriter;

static attn_status out_of_memory(rewriter *rw) {
  return attn_diag_error(rw->ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "canonicalize: out of memory");
}

static attn_value_id resolve(const rewriter *rw, attn_value_id v) {
  while (v.index < rw->forward_capacity && rw->forward[v.index])
    v.index = rw->forward[v.index];
  return v;
}

// Node `n` (one output) is replaced by `by`: its uses will read `by`, and it is removed.
static attn_status replace(rewriter *rw, uint32_t n, attn_value_id by) {
  attn_graph *graph = rw->graph;
  uint32_t from = graph->nodes[n].outputs[0].index;
  if (from >= rw->forward_capacity) {
    size_t capacity = rw->forward_capacity;
    while (capacity <= from)
      capacity *= 2;
    uint32_t *forward = attn_arena_calloc(&rw->ctx->scratch, capacity, sizeof(*forward));
    if (!forward)
      return out_of_memory(rw);
    memcpy(forward, rw->forward, rw->forward_capacity * sizeof(*forward));
    rw->forward = forward;
    rw->forward_capacity = capacity;
  }
  rw->forward[from] = by.index;
  graph->nodes[n].is_dead = true;
  rw->is_changed = true;
  return ATTN_OK;
}

static const attn_type *type_of(const rewriter *rw, attn_value_id v) {
  return &attn_graph_value(rw->graph, v)->type;
}

// Whether `op` on inputs of `types` type-checks and gives exactly `want`. A candidate rewrite
// that does not type-check is simply not applied, so the shape rule's complaint goes to a
// private sink; running out of memory is reported as such.
static attn_status infers_to(rewriter *rw, attn_op op, const void *attrs, const attn_type *types,
                             uint32_t count, const attn_type *want, bool *out_is_same) {
  attn_graph *graph = rw->graph;
  attn_type result;
  attn_diag diag;
  attn_diag_init(&diag, graph->allocator);
  attn_diag *saved = graph->diag;
  graph->diag = &diag;
  attn_status status = attn_infer_types(graph, op, attrs, types, count, ATTN_LOC_NONE, &result, 1);
  graph->diag = saved;
  attn_diag_deinit(&diag);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return out_of_memory(rw);
  *out_is_same = status == ATTN_OK && attn_type_equal(&result, want);
  return ATTN_OK;
}

// Appends `op` on `inputs` at node `n`'s location, with n's name hint, and replaces node n by it.
static attn_status replace_by_new(rewriter *rw, uint32_t n, attn_op op, const void *attrs,
                                  const attn_value_id *inputs, uint32_t count) {
  attn_graph *graph = rw->graph;
  attn_node_id id;
  ATTN_RETURN_IF_ERROR(
      attn_graph_add_node(graph, op, inputs, count, attrs, graph->nodes[n].loc, &id));
  attn_value_id value = attn_node_output(graph, id, 0);
  attn_graph_value(graph, value)->name = attn_graph_value(graph, graph->nodes[n].outputs[0])->name;
  return replace(rw, n, value);
}

// replace_by_new, when the new node's result type is node n's; otherwise nothing happens.
static attn_status rebuild(rewriter *rw, uint32_t n, attn_op op, const void *attrs,
                           const attn_value_id *inputs, uint32_t count) {
  attn_type types[2];
  bool is_same;
  if (count > 2)
    return ATTN_OK;
  for (uint32_t i = 0; i < count; i++)
    types[i] = *type_of(rw, inputs[i]);
  ATTN_RETURN_IF_ERROR(infers_to(rw, op, attrs, types, count,
                                 type_of(rw, rw->graph->nodes[n].outputs[0]), &is_same));
  return is_same ? replace_by_new(rw, n, op, attrs, inputs, count) : ATTN_OK;
}

// A rank-0 constant of `dtype` whose one element is at `element`, memory of the graph's arena
// (shared, not copied).
static attn_status add_scalar(rewriter *rw, attn_dtype dtype, const void *element, attn_loc loc,
                              attn_value_id *out) {
  attn_constant_attrs attrs = {{dtype, 0, {0}}, element};
  attn_node_id id;
  ATTN_RETURN_IF_ERROR(attn_graph_add_node(rw->graph, ATTN_OP_CONSTANT, NULL, 0, &attrs, loc, &id));
  *out = attn_node_output(rw->graph, id, 0);
  return ATTN_OK;
}

// ---- constants -------------------------------------------------------------------------------

// A view of the data of the constant producing `v`; false when `v` is not a constant.
static bool constant_view(const rewriter *rw, attn_value_id v, attn_tensor *out) {
  const attn_constant_attrs *c = attn_value_constant(rw->graph, v);
  if (!c)
    return false;
  *out = (attn_tensor){c->type.dtype, c->type.rank, {0}, (void *)(uintptr_t)c->data};
  for (uint32_t d = 0; d < c->type.rank; d++)
    out->dims[d] = c->type.dims[d];
  return true;
}

// Whether `v` is a constant whose every element equals `k`.
static bool is_constant_all(const rewriter *rw, attn_value_id v, double k) {
  attn_tensor t;
  if (!constant_view(rw, v, &t))
    return false;
  int64_t count = attn_tensor_element_count(&t);
  for (int64_t i = 0; i < count; i++)
    if (attn_tensor_get_f64(&t, i) != k)
      return false;
  return true;
}

// Whether `v` is a constant of rank > 0 whose elements all have the same bytes.
static bool is_splat(const rewriter *rw, attn_value_id v) {
  attn_tensor t;
  if (!constant_view(rw, v, &t) || t.rank == 0)
    return false;
  int64_t count = attn_tensor_element_count(&t);
  size_t size = attn_dtype_size(t.dtype);
  const char *data = t.data;
  for (int64_t i = 1; i < count; i++)
    if (memcmp(data, data + (size_t)i * size, size) != 0)
      return false;
  return count > 0;
}

// The value of a one-element float constant `v`.
static bool scalar_value(const rewriter *rw, attn_value_id v, double *out) {
  attn_tensor t;
  if (!constant_view(rw, v, &t) || !attn_dtype_is_float(t.dtype) ||
      attn_tensor_element_count(&t) != 1)
    return false;
  *out = attn_tensor_get_f64(&t, 0);
  return true;
}

// ---- the rules -------------------------------------------------------------------------------

static const attn_node *producer(const rewriter *rw, attn_value_id v, attn_op op) {
  const attn_node *node = attn_value_producer(rw->graph, v);
  return node && node->op == op ? node : NULL;
}

static bool same_type(const rewriter *rw, attn_value_id a, attn_value_id b) {
  return attn_type_equal(type_of(rw, a), type_of(rw, b));
}

// x+0, 0+x, x-0, x*1, 1*x, x/1.
static attn_status identity(rewriter *rw, uint32_t n) {
  const attn_node *node = &rw->graph->nodes[n];
  attn_value_id out = node->outputs[0], a = node->inputs[0], b = node->inputs[1];
  double unit = node->op == ATTN_OP_ADD || node->op == ATTN_OP_SUB ? 0.0 : 1.0;
  bool is_commutative = node->op == ATTN_OP_ADD || node->op == ATTN_OP_MUL;
  if (is_constant_all(rw, b, unit) && same_type(rw, out, a))
    return replace(rw, n, a);
  if (is_commutative && is_constant_all(rw, a, unit) && same_type(rw, out, b))
    return replace(rw, n, b);
  return ATTN_OK;
}

// permute by the identity → x; permute(permute(x, p), q) → permute(x, r), r[i] = p[q[i]].
static attn_status permute(rewriter *rw, uint32_t n) {
  const attn_node *node = &rw->graph->nodes[n];
  const attn_perm_attrs *outer = node->attrs;
  bool is_identity = true;
  for (uint32_t i = 0; i < outer->rank; i++)
    is_identity = is_identity && outer->perm[i] == (int64_t)i;
  if (is_identity)
    return replace(rw, n, node->inputs[0]);
  const attn_node *inner_node = producer(rw, node->inputs[0], ATTN_OP_PERMUTE);
  if (!inner_node)
    return ATTN_OK;
  const attn_perm_attrs *inner = inner_node->attrs;
  attn_value_id x = inner_node->inputs[0];
  int64_t *perm = attn_graph_alloc(rw->graph, outer->rank * sizeof(*perm) + 1);
  if (!perm)
    return out_of_memory(rw);
  for (uint32_t i = 0; i < outer->rank; i++)
    perm[i] = inner->perm[outer->perm[i]];
  attn_perm_attrs attrs = {perm, outer->rank};
  return rebuild(rw, n, ATTN_OP_PERMUTE, &attrs, &x, 1);
}

// An elementwise op reading expand(x) reads x instead, and one reading a splat constant of rank
// > 0 reads a rank-0 constant instead, when the op's result type stays.
static attn_status elementwise_operands(rewriter *rw, uint32_t n) {
  attn_graph *graph = rw->graph;
  uint32_t count = graph->nodes[n].input_count;
  attn_type types[3];
  if (count < 2 || count > 3)
    return ATTN_OK;
  for (uint32_t i = 0; i < count; i++) {
    const attn_node *node = &graph->nodes[n];
    for (uint32_t k = 0; k < count; k++)
      types[k] = *type_of(rw, node->inputs[k]);
    const attn_node *expand = producer(rw, node->inputs[i], ATTN_OP_EXPAND);
    const attn_constant_attrs *splat =
        is_splat(rw, node->inputs[i]) ? attn_value_constant(graph, node->inputs[i]) : NULL;
    if (!expand && !splat)
      continue;
    if (expand)
      types[i] = *type_of(rw, expand->inputs[0]);
    else
      types[i] = (attn_type){splat->type.dtype, 0, {0}};
    bool is_same;
    ATTN_RETURN_IF_ERROR(infers_to(rw, node->op, node->attrs, types, count,
                                   type_of(rw, node->outputs[0]), &is_same));
    if (!is_same)
      continue;
    attn_value_id by;
    if (expand)
      by = expand->inputs[0];
    else
      ATTN_RETURN_IF_ERROR(add_scalar(rw, splat->type.dtype, splat->data, node->loc, &by));
    attn_node_set_input(graph, (attn_node_id){n}, i, by);
    rw->is_changed = true;
  }
  return ATTN_OK;
}

// mul(mul(x, c), d) → mul(x, c*d) for one-element f32 constants c and d (in any operand order).
// The product is rounded to f32 once where the original rounded twice, which is why other dtypes
// are left alone; a product that overflows or underflows is left alone too.
static attn_status scalar_chain(rewriter *rw, uint32_t n) {
  attn_graph *graph = rw->graph;
  const attn_type *want = type_of(rw, graph->nodes[n].outputs[0]);
  if (want->dtype != ATTN_DTYPE_F32)
    return ATTN_OK;
  for (uint32_t side = 0; side < 2; side++) {
    const attn_node *node = &graph->nodes[n];
    const attn_node *inner = producer(rw, node->inputs[side], ATTN_OP_MUL);
    double c, d;
    if (!inner || !scalar_value(rw, node->inputs[1 - side], &d))
      continue;
    for (uint32_t inner_side = 0; inner_side < 2; inner_side++) {
      attn_value_id x = inner->inputs[inner_side];
      if (!scalar_value(rw, inner->inputs[1 - inner_side], &c))
        continue;
      float product = (float)(c * d);
      if (!isfinite(product) || (product == 0.0f && c != 0.0 && d != 0.0))
        continue;
      attn_type types[2] = {*type_of(rw, x), {ATTN_DTYPE_F32, 0, {0}}};
      bool is_same;
      ATTN_RETURN_IF_ERROR(infers_to(rw, ATTN_OP_MUL, NULL, types, 2, want, &is_same));
      if (!is_same)
        continue;
      float *data = attn_graph_alloc(graph, sizeof(*data));
      if (!data)
        return out_of_memory(rw);
      *data = product;
      attn_value_id inputs[2] = {x, ATTN_VALUE_NONE};
      ATTN_RETURN_IF_ERROR(add_scalar(rw, ATTN_DTYPE_F32, data, node->loc, &inputs[1]));
      return replace_by_new(rw, n, ATTN_OP_MUL, NULL, inputs, 2);
    }
  }
  return ATTN_OK;
}

// x / c → x * (1/c) for a one-element float constant c whose reciprocal is exact in its dtype (c
// a power of two): the evaluator rounds the exact quotient once either way, so no bit changes,
// and the product may then join a scalar chain.
static attn_status reciprocal(rewriter *rw, uint32_t n) {
  attn_graph *graph = rw->graph;
  const attn_node *node = &graph->nodes[n];
  attn_value_id x = node->inputs[0];
  attn_dtype dtype = type_of(rw, node->inputs[1])->dtype;
  double c;
  int exponent;
  if (!attn_dtype_is_float(dtype) || !scalar_value(rw, node->inputs[1], &c) || !isfinite(c) ||
      fabs(frexp(c, &exponent)) != 0.5)
    return ATTN_OK;
  double bytes[1];
  attn_tensor t = {dtype, 0, {0}, bytes};
  attn_tensor_set_f64(&t, 0, 1.0 / c);
  attn_type types[2] = {*type_of(rw, x), {dtype, 0, {0}}};
  bool is_same;
  if (attn_tensor_get_f64(&t, 0) != 1.0 / c)
    return ATTN_OK;
  ATTN_RETURN_IF_ERROR(
      infers_to(rw, ATTN_OP_MUL, NULL, types, 2, type_of(rw, node->outputs[0]), &is_same));
  if (!is_same)
    return ATTN_OK;
  void *data = attn_graph_alloc(graph, attn_dtype_size(dtype));
  if (!data)
    return out_of_memory(rw);
  memcpy(data, bytes, attn_dtype_size(dtype));
  attn_value_id inputs[2] = {x, ATTN_VALUE_NONE};
  ATTN_RETURN_IF_ERROR(add_scalar(rw, dtype, data, node->loc, &inputs[1]));
  return replace_by_new(rw, n, ATTN_OP_MUL, NULL, inputs, 2);
}

// Applies the first rule that matches node `n`.
static attn_status simplify(rewriter *rw, uint32_t n) {
  attn_graph *graph = rw->graph;
  const attn_node *node = &graph->nodes[n];
  attn_value_id x = node->input_count ? node->inputs[0] : ATTN_VALUE_NONE;
  bool is_same_as_input = node->output_count == 1 && x.index && same_type(rw, node->outputs[0], x);
  switch (node->op) {
  case ATTN_OP_ADD:
  case ATTN_OP_SUB:
  case ATTN_OP_MUL:
  case ATTN_OP_DIV: {
    attn_op op = node->op;
    ATTN_RETURN_IF_ERROR(identity(rw, n));
    if (!graph->nodes[n].is_dead && op == ATTN_OP_MUL)
      ATTN_RETURN_IF_ERROR(scalar_chain(rw, n));
    if (!graph->nodes[n].is_dead && op == ATTN_OP_DIV)
      ATTN_RETURN_IF_ERROR(reciprocal(rw, n));
    return graph->nodes[n].is_dead ? ATTN_OK : elementwise_operands(rw, n);
  }
  case ATTN_OP_NEG: {
    // Integer negation saturates (neg(neg(-128)) is -127 in i8), so only floats.
    const attn_node *inner = producer(rw, x, ATTN_OP_NEG);
    bool is_float = attn_dtype_is_float(type_of(rw, x)->dtype);
    return inner && is_float ? replace(rw, n, inner->inputs[0]) : ATTN_OK;
  }
  case ATTN_OP_CAST:
  case ATTN_OP_EXPAND:
    return is_same_as_input ? replace(rw, n, x) : ATTN_OK;
  case ATTN_OP_RESHAPE: {
    if (is_same_as_input)
      return replace(rw, n, x);
    const attn_node *inner = producer(rw, x, ATTN_OP_RESHAPE);
    if (!inner)
      return ATTN_OK;
    attn_value_id source = inner->inputs[0];
    return rebuild(rw, n, ATTN_OP_RESHAPE, node->attrs, &source, 1);
  }
  case ATTN_OP_PERMUTE:
    return permute(rw, n);
  case ATTN_OP_SLICE: {
    const attn_slice_attrs *slice = node->attrs;
    return is_same_as_input && slice->step == 1 ? replace(rw, n, x) : ATTN_OK;
  }
  case ATTN_OP_CONCAT:
    return node->input_count == 1 ? replace(rw, n, x) : ATTN_OK;
  default:
    if (attn_op_get_info(node->op)->flags & ATTN_OP_ELEMENTWISE)
      return elementwise_operands(rw, n);
    return ATTN_OK;
  }
}

// Makes every input of node `n` read the value that replaced it.
static void read_through(rewriter *rw, uint32_t n) {
  attn_node *node = &rw->graph->nodes[n];
  for (uint32_t i = 0; i < node->input_count; i++) {
    attn_value_id v = resolve(rw, node->inputs[i]);
    if (v.index != node->inputs[i].index)
      attn_node_set_input(rw->graph, (attn_node_id){n}, i, v);
  }
}

attn_status attn_pass_canonicalize(attn_pass_context *ctx, attn_graph *graph) {
  rewriter rw = {ctx, graph, NULL, 0, false};
  rw.forward_capacity = (size_t)graph->value_count + 16;
  rw.forward = attn_arena_calloc(&ctx->scratch, rw.forward_capacity, sizeof(*rw.forward));
  if (!rw.forward)
    return out_of_memory(&rw);
  bool is_changed = false;
  for (int sweep = 0; sweep < MAX_SWEEPS; sweep++) {
    rw.is_changed = false;
    // Nodes appended by a rewrite are visited in the same sweep (node_count grows).
    for (uint32_t n = 1; n < graph->node_count; n++) {
      if (graph->nodes[n].is_dead)
        continue;
      read_through(&rw, n);
      ATTN_RETURN_IF_ERROR(simplify(&rw, n));
    }
    is_changed = is_changed || rw.is_changed;
    if (!rw.is_changed)
      break;
  }
  // A node visited before the rewrite of an appended node it reads still reads the old value
  // when the sweeps stopped at the bound; and graph outputs are read here.
  for (uint32_t n = 1; n < graph->node_count; n++)
    if (!graph->nodes[n].is_dead)
      read_through(&rw, n);
  for (uint32_t i = 0; i < graph->output_count; i++)
    graph->outputs[i] = resolve(&rw, graph->outputs[i]);
  if (!is_changed)
    return ATTN_OK;
  ctx->changed = true;
  return attn_graph_remove_unused(graph, &ctx->scratch, NULL);
}
