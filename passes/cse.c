// cse: common-subexpression elimination. Two live nodes with the same op, the same inputs (in
// either order for commutative ops) and equal attributes compute the same values, so the later
// one's outputs are redirected to the earlier one's and the later node is removed. Leaves are
// nodes like any other: constants with equal type and bytes merge, and so do weights with the
// same names and type, and iotas.
//
// Attributes are compared field by field through the attribute schema (ir/attrs.c): floats
// bitwise, constant data by bytes, score-mod expressions structurally. Nodes are hashed into an
// open-addressing table as the walk meets them, in topological order, so that a node's inputs
// are already merged when it is looked up; the cost is linear in the graph.
// Requires: verified graph. Invalidates: nothing beyond the nodes it removes.
#include <string.h>

#include "passes/pass.h"

// FNV-1a over bytes, continuing from `h`.
static uint64_t hash_bytes(uint64_t h, const void *data, size_t size) {
  const unsigned char *p = data;
  for (size_t i = 0; i < size; i++)
    h = (h ^ p[i]) * 1099511628211u;
  return h;
}

static uint64_t hash_u64(uint64_t h, uint64_t value) {
  return hash_bytes(h, &value, sizeof(value));
}

static uint64_t hash_type(uint64_t h, const attn_type *type) {
  h = hash_u64(h, (uint64_t)type->dtype);
  h = hash_u64(h, type->rank);
  return hash_bytes(h, type->dims, type->rank * sizeof(attn_dim));
}

static uint64_t hash_expr(uint64_t h, const attn_expr *e) {
  if (!e)
    return hash_u64(h, 0);
  uint64_t number;
  memcpy(&number, &e->number, sizeof(number));
  h = hash_u64(h, (uint64_t)e->kind + 1);
  switch (e->kind) {
  case ATTN_EXPR_NUMBER:
    return hash_u64(h, number);
  case ATTN_EXPR_VAR:
    return hash_u64(h, (uint64_t)e->var);
  case ATTN_EXPR_CAPTURE:
    h = hash_u64(h, e->capture);
    break;
  case ATTN_EXPR_UNARY:
  case ATTN_EXPR_BINARY:
    h = hash_u64(h, (uint64_t)e->fn);
    break;
  case ATTN_EXPR_SELECT:
    break;
  }
  uint32_t count = e->arg_count < ATTN_EXPR_MAX_ARGS ? e->arg_count : ATTN_EXPR_MAX_ARGS;
  h = hash_u64(h, count);
  for (uint32_t i = 0; i < count; i++)
    h = hash_expr(h, e->args[i]);
  return h;
}

static bool expr_equal(const attn_expr *a, const attn_expr *b) {
  if (a == b)
    return true;
  if (!a || !b || a->kind != b->kind || a->arg_count != b->arg_count)
    return false;
  switch (a->kind) {
  case ATTN_EXPR_NUMBER:
    return memcmp(&a->number, &b->number, sizeof(a->number)) == 0;
  case ATTN_EXPR_VAR:
    return a->var == b->var;
  case ATTN_EXPR_CAPTURE:
    if (a->capture != b->capture)
      return false;
    break;
  case ATTN_EXPR_UNARY:
  case ATTN_EXPR_BINARY:
    if (a->fn != b->fn)
      return false;
    break;
  case ATTN_EXPR_SELECT:
    break;
  }
  uint32_t count = a->arg_count < ATTN_EXPR_MAX_ARGS ? a->arg_count : ATTN_EXPR_MAX_ARGS;
  for (uint32_t i = 0; i < count; i++)
    if (!expr_equal(a->args[i], b->args[i]))
      return false;
  return true;
}

// Bytes of the data of a constant of `type` (constant dims).
static size_t data_size(const attn_type *type) {
  size_t count = 1;
  for (uint32_t d = 0; d < type->rank; d++)
    count *= (size_t)type->dims[d];
  return count * attn_dtype_size(type->dtype);
}

// Constant data is hashed by its size and first bytes only: equal data hashes equally, and a
// large constant does not cost a pass over all of it unless another one collides with it.
enum { DATA_HASH_BYTES = 256 };

static uint64_t hash_attrs(uint64_t h, const attn_attrs_info *info, const void *attrs) {
  const char *base = attrs;
  const attn_type *last_type = NULL;
  for (uint32_t f = 0; f < info->field_count; f++) {
    const attn_field_info *field = &info->fields[f];
    const char *at = base + field->offset;
    uint32_t count = field->count_offset ? *(const uint32_t *)(base + field->count_offset) : 0;
    switch (field->type) {
    case ATTN_FIELD_BOOL:
      h = hash_u64(h, *(const bool *)at);
      break;
    case ATTN_FIELD_INT:
    case ATTN_FIELD_DIM:
      h = hash_bytes(h, at, sizeof(int64_t));
      break;
    case ATTN_FIELD_FLOAT:
      h = hash_bytes(h, at, sizeof(double));
      break;
    case ATTN_FIELD_DTYPE:
    case ATTN_FIELD_ENUM:
      h = hash_bytes(h, at, sizeof(int));
      break;
    case ATTN_FIELD_INTS:
    case ATTN_FIELD_DIMS:
      h = hash_u64(h, count);
      h = hash_bytes(h, *(const int64_t *const *)at, count * sizeof(int64_t));
      break;
    case ATTN_FIELD_STRINGS: {
      const char *const *strings = *(const char *const *const *)at;
      h = hash_u64(h, count);
      for (uint32_t i = 0; i < count; i++)
        h = hash_bytes(h, strings[i], strlen(strings[i]) + 1);
      break;
    }
    case ATTN_FIELD_TYPE:
      last_type = (const attn_type *)at;
      h = hash_type(h, last_type);
      break;
    case ATTN_FIELD_DATA: {
      size_t size = last_type ? data_size(last_type) : 0;
      const void *data = *(const void *const *)at;
      h = hash_u64(h, size);
      if (data)
        h = hash_bytes(h, data, size < DATA_HASH_BYTES ? size : DATA_HASH_BYTES);
      break;
    }
    case ATTN_FIELD_EXPR:
      h = hash_expr(h, *(const attn_expr *const *)at);
      break;
    }
  }
  return h;
}

static bool attrs_equal(const attn_attrs_info *info, const void *a_attrs, const void *b_attrs) {
  const char *a_base = a_attrs, *b_base = b_attrs;
  const attn_type *last_type = NULL;
  for (uint32_t f = 0; f < info->field_count; f++) {
    const attn_field_info *field = &info->fields[f];
    const char *a = a_base + field->offset, *b = b_base + field->offset;
    uint32_t a_count = 0, b_count = 0;
    if (field->count_offset) {
      a_count = *(const uint32_t *)(a_base + field->count_offset);
      b_count = *(const uint32_t *)(b_base + field->count_offset);
      if (a_count != b_count)
        return false;
    }
    bool same = true;
    switch (field->type) {
    case ATTN_FIELD_BOOL:
      same = *(const bool *)a == *(const bool *)b;
      break;
    case ATTN_FIELD_INT:
    case ATTN_FIELD_DIM:
      same = *(const int64_t *)a == *(const int64_t *)b;
      break;
    case ATTN_FIELD_FLOAT:
      same = memcmp(a, b, sizeof(double)) == 0;
      break;
    case ATTN_FIELD_DTYPE:
    case ATTN_FIELD_ENUM:
      same = *(const int *)a == *(const int *)b;
      break;
    case ATTN_FIELD_INTS:
    case ATTN_FIELD_DIMS: {
      const int64_t *x = *(const int64_t *const *)a, *y = *(const int64_t *const *)b;
      same = a_count == 0 || x == y || memcmp(x, y, a_count * sizeof(int64_t)) == 0;
      break;
    }
    case ATTN_FIELD_STRINGS: {
      const char *const *x = *(const char *const *const *)a;
      const char *const *y = *(const char *const *const *)b;
      for (uint32_t i = 0; i < a_count && same; i++)
        same = strcmp(x[i], y[i]) == 0;
      break;
    }
    case ATTN_FIELD_TYPE:
      last_type = (const attn_type *)a;
      same = attn_type_equal(last_type, (const attn_type *)b);
      break;
    case ATTN_FIELD_DATA: {
      const void *x = *(const void *const *)a, *y = *(const void *const *)b;
      size_t size = last_type ? data_size(last_type) : 0;
      same = x == y || (x && y && memcmp(x, y, size) == 0);
      break;
    }
    case ATTN_FIELD_EXPR:
      same = expr_equal(*(const attn_expr *const *)a, *(const attn_expr *const *)b);
      break;
    }
    if (!same)
      return false;
  }
  return true;
}

static const void *attrs_of(const attn_node *node, const attn_attrs_info *info) {
  return node->attrs ? node->attrs : info->defaults;
}

// Commutative ops are binary; their inputs are hashed and compared as an unordered pair.
static bool is_commutative(const attn_node *node) {
  return (attn_op_get_info(node->op)->flags & ATTN_OP_COMMUTATIVE) && node->input_count == 2;
}

static uint64_t hash_node(const attn_node *node) {
  const attn_attrs_info *info = attn_attrs_get_info(attn_op_get_info(node->op)->attrs_kind);
  uint64_t h = hash_u64(14695981039346656037u, (uint64_t)node->op);
  h = hash_u64(h, node->input_count);
  if (is_commutative(node)) {
    uint32_t a = node->inputs[0].index, b = node->inputs[1].index;
    h = hash_u64(h, a < b ? a : b);
    h = hash_u64(h, a < b ? b : a);
  } else {
    for (uint32_t i = 0; i < node->input_count; i++)
      h = hash_u64(h, node->inputs[i].index);
  }
  return hash_attrs(h, info, attrs_of(node, info));
}

static bool nodes_equal(const attn_node *a, const attn_node *b) {
  if (a->op != b->op || a->input_count != b->input_count || a->output_count != b->output_count)
    return false;
  bool same_inputs = true;
  for (uint32_t i = 0; i < a->input_count && same_inputs; i++)
    same_inputs = a->inputs[i].index == b->inputs[i].index;
  if (!same_inputs && is_commutative(a))
    same_inputs =
        a->inputs[0].index == b->inputs[1].index && a->inputs[1].index == b->inputs[0].index;
  if (!same_inputs)
    return false;
  const attn_attrs_info *info = attn_attrs_get_info(attn_op_get_info(a->op)->attrs_kind);
  return attrs_equal(info, attrs_of(a, info), attrs_of(b, info));
}

attn_status attn_pass_cse(attn_pass_context *ctx, attn_graph *graph) {
  uint32_t node_count = graph->node_count, value_count = graph->value_count;
  size_t capacity = 16;
  while (capacity < 2 * (size_t)node_count)
    capacity *= 2;
  // slots: node ids (0 empty); forward: the value that replaces a value of a removed node.
  uint32_t *slots = attn_arena_calloc(&ctx->scratch, capacity, sizeof(*slots));
  uint32_t *forward = attn_arena_calloc(&ctx->scratch, value_count, sizeof(*forward));
  if (!slots || !forward)
    return attn_diag_error(ctx->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                           "cse: out of memory");
  for (uint32_t n = 1; n < node_count; n++) {
    attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    // Producers come first, so every input already reads the value it was merged into.
    for (uint32_t i = 0; i < node->input_count; i++)
      if (forward[node->inputs[i].index])
        attn_node_set_input(graph, (attn_node_id){n}, i,
                            (attn_value_id){forward[node->inputs[i].index]});
    size_t slot = (size_t)hash_node(node) & (capacity - 1);
    while (slots[slot] && !nodes_equal(&graph->nodes[slots[slot]], node))
      slot = (slot + 1) & (capacity - 1);
    if (!slots[slot]) {
      slots[slot] = n;
      continue;
    }
    const attn_node *earlier = &graph->nodes[slots[slot]];
    for (uint32_t i = 0; i < node->output_count; i++)
      forward[node->outputs[i].index] = earlier->outputs[i].index;
    node->is_dead = true;
    ctx->changed = true;
  }
  for (uint32_t i = 0; i < graph->output_count; i++)
    if (forward[graph->outputs[i].index])
      graph->outputs[i] = (attn_value_id){forward[graph->outputs[i].index]};
  return ATTN_OK;
}
