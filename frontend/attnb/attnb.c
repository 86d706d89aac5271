// The .attnb writer and reader. The writer mirrors the graph's arrays into protobuf-c messages
// built in a scratch arena and packs them; the reader unpacks, then checks every index, name
// and attribute kind while it fills the graph's arrays directly (not through
// attn_graph_add_node), so that value ids, and with them the printed names tN, are exactly
// those of the graph that was written. The verifier then re-runs shape inference on it.
#include "frontend/attnb/attnb.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "attnb.pb-c.h"
#include "runtime/base/arena.h"
#include "runtime/protobuf/allocator.h"
#include "runtime/tensor/io.h"

// Limits against hostile files; real graphs stay far below them. The dim table and the
// symbols are checked for duplicates pairwise, hence their small bound.
enum {
  MAX_DIMS = 4096,
  MAX_EXPR_NODES = 4096,
  MAX_FIELDS = 32, // fields of one attribute family
};

// Field kinds as docs and messages name them (the order of attn_field_type).
static const char *field_type_name(attn_field_type type) {
  static const char *const names[] = {"bool", "int",  "float",   "dtype", "enum", "dim",
                                      "ints", "dims", "strings", "type",  "data", "expr"};
  return (unsigned)type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

// The oneof case that carries each field kind.
static Attn__Attnb__Attribute__ValueCase case_of(attn_field_type type) {
  switch (type) {
  case ATTN_FIELD_BOOL:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_BOOL_VALUE;
  case ATTN_FIELD_INT:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_INT_VALUE;
  case ATTN_FIELD_FLOAT:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_FLOAT_VALUE;
  case ATTN_FIELD_DTYPE:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_DTYPE_VALUE;
  case ATTN_FIELD_ENUM:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_ENUM_VALUE;
  case ATTN_FIELD_DIM:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_DIM_VALUE;
  case ATTN_FIELD_INTS:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_INTS_VALUE;
  case ATTN_FIELD_DIMS:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_DIMS_VALUE;
  case ATTN_FIELD_STRINGS:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_STRINGS_VALUE;
  case ATTN_FIELD_TYPE:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_TYPE_VALUE;
  case ATTN_FIELD_DATA:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_DATA_VALUE;
  case ATTN_FIELD_EXPR:
    return ATTN__ATTNB__ATTRIBUTE__VALUE_EXPR_VALUE;
  }
  return ATTN__ATTNB__ATTRIBUTE__VALUE__NOT_SET;
}

// The field kind a oneof case carries, as a name for messages.
static const char *case_name(Attn__Attnb__Attribute__ValueCase value_case) {
  for (int t = ATTN_FIELD_BOOL; t <= ATTN_FIELD_EXPR; t++)
    if (case_of((attn_field_type)t) == value_case)
      return field_type_name((attn_field_type)t);
  return "nothing";
}

static size_t list_count(const void *attrs, const attn_field_info *field) {
  uint32_t count;
  memcpy(&count, (const char *)attrs + field->count_offset, sizeof(count));
  return count;
}

static const void *list_items(const void *attrs, const attn_field_info *field) {
  const void *items;
  memcpy(&items, (const char *)attrs + field->offset, sizeof(items));
  return items;
}

// The bytes of constant data of `type`; false when a dim is symbolic or the size overflows.
static bool data_size(const attn_type *type, size_t *out_size) {
  if ((unsigned)type->dtype >= ATTN_DTYPE_COUNT || type->rank > ATTN_MAX_RANK)
    return false;
  size_t size = attn_dtype_size(type->dtype);
  for (uint32_t i = 0; i < type->rank; i++) {
    if (!attn_dim_is_constant(type->dims[i]) ||
        __builtin_mul_overflow(size, (size_t)type->dims[i], &size))
      return false;
  }
  *out_size = size;
  return true;
}

// Element bytes are little-endian in the file and host order in the graph.
static void swap_to_host(void *data, size_t size, attn_dtype dtype) {
  if (!attn_io_host_is_little_endian() && attn_dtype_size(dtype) > 1)
    attn_io_byteswap(data, size / attn_dtype_size(dtype), attn_dtype_size(dtype));
}

// ==== the writer ===============================================================================

typedef struct writer {
  const attn_graph *graph;
  attn_arena arena; // every message of the file
  attn_diag *diag;
  uint32_t *node_ids; // graph node id -> file node id; 0 for dead nodes
  const char **files;
  uint32_t file_count, file_capacity;
  bool is_out_of_memory;
} writer;

static void *new_block(writer *w, size_t count, size_t size) {
  void *p = attn_arena_calloc(&w->arena, count ? count : 1, size);
  w->is_out_of_memory |= p == NULL;
  return p;
}

// protobuf-c's fields are not const; the writer only packs them, never writes through them.
static char *text(const char *s) {
  return (char *)(s ? s : "");
}

#define NEW_MESSAGE(w, type, init, out)                                                            \
  do {                                                                                             \
    static const type message_init_ = init;                                                        \
    (out) = new_block((w), 1, sizeof(type));                                                       \
    if (out)                                                                                       \
      *(out) = message_init_;                                                                      \
  } while (0)

static Attn__Attnb__Type *write_type(writer *w, const attn_type *type) {
  Attn__Attnb__Type *m;
  NEW_MESSAGE(w, Attn__Attnb__Type, ATTN__ATTNB__TYPE__INIT, m);
  if (!m)
    return NULL;
  m->dtype = text(attn_dtype_name(type->dtype));
  m->n_dims = type->rank < ATTN_MAX_RANK ? type->rank : ATTN_MAX_RANK;
  m->dims = (int64_t *)type->dims;
  return m;
}

// The file index (1-based) of a location's file, added on first use.
static uint32_t write_file(writer *w, const char *file) {
  if (!file)
    return 0;
  for (uint32_t i = w->file_count; i-- > 0;)
    if (w->files[i] == file || strcmp(w->files[i], file) == 0)
      return i + 1;
  if (w->file_count == w->file_capacity) {
    uint32_t capacity = w->file_capacity ? 2 * w->file_capacity : 8;
    const char **files = new_block(w, capacity, sizeof(*files));
    if (!files)
      return 0;
    if (w->file_count)
      memcpy(files, w->files, w->file_count * sizeof(*files));
    w->files = files;
    w->file_capacity = capacity;
  }
  w->files[w->file_count++] = file;
  return w->file_count;
}

static uint32_t count_expr(const attn_expr *e) {
  uint32_t count = 1;
  for (uint32_t i = 0; i < e->arg_count && i < ATTN_EXPR_MAX_ARGS; i++)
    if (e->args[i])
      count += count_expr(e->args[i]);
  return count;
}

// Appends `e` in post-order (arguments first) and returns its index.
static uint32_t write_expr_node(writer *w, const attn_expr *e, Attn__Attnb__ExprNode **nodes,
                                uint32_t *next) {
  uint32_t args[ATTN_EXPR_MAX_ARGS], arg_count = 0;
  for (uint32_t i = 0; i < e->arg_count && i < ATTN_EXPR_MAX_ARGS; i++)
    if (e->args[i])
      args[arg_count++] = write_expr_node(w, e->args[i], nodes, next);
  Attn__Attnb__ExprNode *m;
  NEW_MESSAGE(w, Attn__Attnb__ExprNode, ATTN__ATTNB__EXPR_NODE__INIT, m);
  uint32_t *arg_copy = new_block(w, arg_count, sizeof(uint32_t));
  uint32_t index = (*next)++;
  if (!m || !arg_copy)
    return index;
  static const Attn__Attnb__ExprKind kinds[] = {
      [ATTN_EXPR_NUMBER] = ATTN__ATTNB__EXPR_KIND__EXPR_NUMBER,
      [ATTN_EXPR_VAR] = ATTN__ATTNB__EXPR_KIND__EXPR_VAR,
      [ATTN_EXPR_CAPTURE] = ATTN__ATTNB__EXPR_KIND__EXPR_CAPTURE,
      [ATTN_EXPR_UNARY] = ATTN__ATTNB__EXPR_KIND__EXPR_UNARY,
      [ATTN_EXPR_BINARY] = ATTN__ATTNB__EXPR_KIND__EXPR_BINARY,
      [ATTN_EXPR_SELECT] = ATTN__ATTNB__EXPR_KIND__EXPR_SELECT,
  };
  m->kind = (unsigned)e->kind <= ATTN_EXPR_SELECT ? kinds[e->kind] : (Attn__Attnb__ExprKind)-1;
  m->number = e->number;
  if (e->kind == ATTN_EXPR_VAR)
    m->var = text(attn_expr_var_name(e->var));
  if (e->kind == ATTN_EXPR_UNARY || e->kind == ATTN_EXPR_BINARY)
    m->fn = text(attn_expr_fn_name(e->fn));
  m->capture = e->capture;
  memcpy(arg_copy, args, arg_count * sizeof(uint32_t));
  m->n_args = arg_count;
  m->args = arg_copy;
  nodes[index] = m;
  return index;
}

static Attn__Attnb__Expr *write_expr(writer *w, const attn_expr *e) {
  Attn__Attnb__Expr *m;
  NEW_MESSAGE(w, Attn__Attnb__Expr, ATTN__ATTNB__EXPR__INIT, m);
  uint32_t count = count_expr(e);
  Attn__Attnb__ExprNode **nodes = new_block(w, count, sizeof(*nodes));
  if (!m || !nodes)
    return NULL;
  uint32_t next = 0;
  write_expr_node(w, e, nodes, &next);
  m->n_nodes = count;
  m->nodes = nodes;
  return m;
}

// One attribute field; NULL (without an error) for a field with nothing to write.
static Attn__Attnb__Attribute *write_field(writer *w, const attn_node *node,
                                           const attn_field_info *field) {
  const char *slot = (const char *)node->attrs + field->offset;
  if (field->type == ATTN_FIELD_EXPR && !list_items(node->attrs, field))
    return NULL; // no score_mod: the default
  Attn__Attnb__Attribute *m;
  NEW_MESSAGE(w, Attn__Attnb__Attribute, ATTN__ATTNB__ATTRIBUTE__INIT, m);
  if (!m)
    return NULL;
  m->name = text(field->name);
  m->value_case = case_of(field->type);
  switch (field->type) {
  case ATTN_FIELD_BOOL:
    m->bool_value = *(const bool *)slot;
    break;
  case ATTN_FIELD_INT:
    memcpy(&m->int_value, slot, sizeof(int64_t));
    break;
  case ATTN_FIELD_FLOAT:
    memcpy(&m->float_value, slot, sizeof(double));
    break;
  case ATTN_FIELD_DIM:
    memcpy(&m->dim_value, slot, sizeof(int64_t));
    break;
  case ATTN_FIELD_DTYPE: {
    attn_dtype dtype;
    memcpy(&dtype, slot, sizeof(dtype));
    m->dtype_value = text(attn_dtype_name(dtype));
    break;
  }
  case ATTN_FIELD_ENUM: {
    int v, n = 0;
    memcpy(&v, slot, sizeof(v));
    while (field->enum_names[n])
      n++;
    m->enum_value = text(v >= 0 && v < n ? field->enum_names[v] : NULL);
    break;
  }
  case ATTN_FIELD_INTS:
  case ATTN_FIELD_DIMS: {
    Attn__Attnb__Ints *ints;
    NEW_MESSAGE(w, Attn__Attnb__Ints, ATTN__ATTNB__INTS__INIT, ints);
    if (!ints)
      return NULL;
    ints->n_items = list_items(node->attrs, field) ? list_count(node->attrs, field) : 0;
    ints->items = (int64_t *)list_items(node->attrs, field);
    if (field->type == ATTN_FIELD_INTS)
      m->ints_value = ints;
    else
      m->dims_value = ints;
    break;
  }
  case ATTN_FIELD_STRINGS: {
    Attn__Attnb__Strings *strings;
    NEW_MESSAGE(w, Attn__Attnb__Strings, ATTN__ATTNB__STRINGS__INIT, strings);
    size_t count = list_items(node->attrs, field) ? list_count(node->attrs, field) : 0;
    char **items = new_block(w, count, sizeof(char *));
    if (!strings || !items)
      return NULL;
    const char *const *names = list_items(node->attrs, field);
    for (size_t i = 0; i < count; i++)
      items[i] = text(names[i]);
    strings->n_items = count;
    strings->items = items;
    m->strings_value = strings;
    break;
  }
  case ATTN_FIELD_TYPE:
    m->type_value = write_type(w, (const attn_type *)slot);
    break;
  case ATTN_FIELD_DATA: {
    // DATA describes the TYPE field just before it in the schema.
    const attn_type *type = (const attn_type *)((const char *)node->attrs + (field - 1)->offset);
    const void *data = list_items(node->attrs, field);
    size_t size = 0;
    if (data && !data_size(type, &size))
      return NULL;
    uint8_t *copy = new_block(w, size, 1);
    if (!copy)
      return NULL;
    if (size) {
      memcpy(copy, data, size);
      swap_to_host(copy, size, type->dtype); // the swap is its own inverse
    }
    m->data_value.len = size;
    m->data_value.data = copy;
    break;
  }
  case ATTN_FIELD_EXPR:
    m->expr_value = write_expr(w, list_items(node->attrs, field));
    break;
  }
  return m;
}

static Attn__Attnb__Node *write_node(writer *w, const attn_node *node) {
  const attn_op_info *op = attn_op_get_info(node->op);
  const attn_attrs_info *info = attn_attrs_get_info(op ? op->attrs_kind : ATTN_ATTRS_NONE);
  Attn__Attnb__Node *m;
  Attn__Attnb__Location *loc;
  NEW_MESSAGE(w, Attn__Attnb__Node, ATTN__ATTNB__NODE__INIT, m);
  NEW_MESSAGE(w, Attn__Attnb__Location, ATTN__ATTNB__LOCATION__INIT, loc);
  Attn__Attnb__Attribute **attributes = new_block(w, info->field_count, sizeof(*attributes));
  if (!m || !loc || !attributes)
    return NULL;
  m->op = text(op ? op->name : NULL);
  m->n_inputs = node->input_count;
  m->inputs = (uint32_t *)node->inputs; // attn_value_id is one uint32_t
  m->n_outputs = node->output_count;
  m->outputs = (uint32_t *)node->outputs;
  for (uint32_t i = 0; node->attrs && i < info->field_count; i++) {
    const attn_field_info *field = &info->fields[i];
    Attn__Attnb__Attribute *attribute = write_field(w, node, field);
    if (!attribute && !(field->type == ATTN_FIELD_EXPR && !list_items(node->attrs, field)))
      return NULL; // out of memory, or constant data of no definite size
    if (attribute)
      attributes[m->n_attributes++] = attribute;
  }
  m->attributes = attributes;
  loc->file = write_file(w, node->loc.file);
  loc->line = node->loc.line;
  loc->col = node->loc.col;
  m->location = loc;
  m->kernel = node->kernel;
  return m;
}

static attn_status write_graph(writer *w, Attn__Attnb__Graph *m) {
  const attn_graph *g = w->graph;
  m->magic = ATTN_ATTNB_MAGIC;
  m->end_magic = ATTN_ATTNB_MAGIC;
  m->format_version = ATTN_ATTNB_FORMAT_VERSION;
  m->name = text(g->name);

  m->n_symbols = g->symbol_count;
  m->symbols = new_block(w, g->symbol_count, sizeof(char *));
  m->n_dims = g->dim_count;
  m->dims = new_block(w, g->dim_count, sizeof(*m->dims));
  if (!m->symbols || !m->dims)
    return ATTN_ERROR_OUT_OF_MEMORY;
  for (uint32_t i = 0; i < g->symbol_count; i++)
    m->symbols[i] = text(attn_graph_symbol_name(g, i));
  for (uint32_t i = 0; i < g->dim_count; i++) {
    static const Attn__Attnb__DimKind kinds[] = {
        [ATTN_DIM_SYMBOL] = ATTN__ATTNB__DIM_KIND__DIM_SYMBOL,
        [ATTN_DIM_ADD] = ATTN__ATTNB__DIM_KIND__DIM_ADD,
        [ATTN_DIM_SUB] = ATTN__ATTNB__DIM_KIND__DIM_SUB,
        [ATTN_DIM_MUL] = ATTN__ATTNB__DIM_KIND__DIM_MUL,
        [ATTN_DIM_DIV] = ATTN__ATTNB__DIM_KIND__DIM_DIV,
    };
    const attn_dim_expr *e = &g->dims[i];
    Attn__Attnb__DimExpr *d;
    NEW_MESSAGE(w, Attn__Attnb__DimExpr, ATTN__ATTNB__DIM_EXPR__INIT, d);
    if (!d)
      return ATTN_ERROR_OUT_OF_MEMORY;
    d->kind = (unsigned)e->kind <= ATTN_DIM_DIV ? kinds[e->kind] : (Attn__Attnb__DimKind)-1;
    d->symbol = e->symbol;
    d->lhs = e->lhs;
    d->rhs = e->rhs;
    m->dims[i] = d;
  }

  // Dead nodes are dropped: live nodes are renumbered in order, and values of dead nodes lose
  // their producer, as attn_graph_compact does.
  w->node_ids = new_block(w, g->node_count, sizeof(uint32_t));
  m->nodes = new_block(w, g->node_count, sizeof(*m->nodes));
  uint32_t *kernel_counts = new_block(w, g->kernel_count, sizeof(uint32_t));
  if (!w->node_ids || !m->nodes || !kernel_counts)
    return ATTN_ERROR_OUT_OF_MEMORY;
  for (uint32_t n = 1; n < g->node_count; n++) {
    const attn_node *node = &g->nodes[n];
    if (node->is_dead)
      continue;
    if (node->kernel >= (g->kernel_count ? g->kernel_count : 1))
      return attn_diag_error(w->diag, node->loc, ATTN_ERROR_INVALID_GRAPH,
                             "node %u is in kernel %u, which does not exist", n, node->kernel);
    kernel_counts[node->kernel]++;
    w->node_ids[n] = (uint32_t)m->n_nodes + 1;
    m->nodes[m->n_nodes] = write_node(w, node);
    if (!m->nodes[m->n_nodes++])
      return w->is_out_of_memory ? ATTN_ERROR_OUT_OF_MEMORY
                                 : attn_diag_error(w->diag, node->loc, ATTN_ERROR_INVALID_GRAPH,
                                                   "constant data of node %u has symbolic "
                                                   "dims or overflows",
                                                   n);
  }

  m->n_values = g->value_count - 1;
  m->values = new_block(w, m->n_values, sizeof(*m->values));
  if (!m->values)
    return ATTN_ERROR_OUT_OF_MEMORY;
  for (uint32_t id = 1; id < g->value_count; id++) {
    const attn_value *v = &g->values[id];
    Attn__Attnb__Value *value;
    NEW_MESSAGE(w, Attn__Attnb__Value, ATTN__ATTNB__VALUE__INIT, value);
    if (!value)
      return ATTN_ERROR_OUT_OF_MEMORY;
    value->name = text(v->name);
    value->type = write_type(w, &v->type);
    uint32_t producer = v->producer.index < g->node_count ? w->node_ids[v->producer.index] : 0;
    value->producer = producer;
    value->output_index = producer ? v->output_index : 0;
    value->buffer = v->buffer;
    m->values[id - 1] = value;
  }

  m->n_inputs = g->input_count;
  m->inputs = (uint32_t *)g->inputs;
  m->n_outputs = g->output_count;
  m->outputs = new_block(w, g->output_count, sizeof(*m->outputs));
  if (!m->outputs)
    return ATTN_ERROR_OUT_OF_MEMORY;
  for (uint32_t i = 0; i < g->output_count; i++) {
    Attn__Attnb__Output *output;
    NEW_MESSAGE(w, Attn__Attnb__Output, ATTN__ATTNB__OUTPUT__INIT, output);
    if (!output)
      return ATTN_ERROR_OUT_OF_MEMORY;
    output->name = text(g->output_names[i]);
    output->value = g->outputs[i].index;
    m->outputs[i] = output;
  }

  m->is_partitioned = g->kernel_count != 0;
  m->n_kernels = g->kernel_count ? g->kernel_count - 1 : 0;
  m->kernels = new_block(w, m->n_kernels, sizeof(*m->kernels));
  m->is_memory_planned = g->buffer_count != 0;
  m->n_buffers = g->buffer_count ? g->buffer_count - 1 : 0;
  m->buffers = new_block(w, m->n_buffers, sizeof(*m->buffers));
  if (!m->kernels || !m->buffers)
    return ATTN_ERROR_OUT_OF_MEMORY;
  for (uint32_t k = 0; k < m->n_kernels; k++) {
    Attn__Attnb__Kernel *kernel;
    NEW_MESSAGE(w, Attn__Attnb__Kernel, ATTN__ATTNB__KERNEL__INIT, kernel);
    if (!kernel)
      return ATTN_ERROR_OUT_OF_MEMORY;
    kernel->kind = text(attn_kernel_kind_name(g->kernels[k + 1].kind));
    kernel->node_count = kernel_counts[k + 1]; // recounted: dead nodes are not written
    m->kernels[k] = kernel;
  }
  for (uint32_t b = 0; b < m->n_buffers; b++) {
    Attn__Attnb__Buffer *buffer;
    NEW_MESSAGE(w, Attn__Attnb__Buffer, ATTN__ATTNB__BUFFER__INIT, buffer);
    if (!buffer)
      return ATTN_ERROR_OUT_OF_MEMORY;
    buffer->bytes = g->buffers[b + 1].bytes;
    m->buffers[b] = buffer;
  }
  m->n_files = w->file_count;
  m->files = (char **)w->files;
  return w->is_out_of_memory ? ATTN_ERROR_OUT_OF_MEMORY : ATTN_OK;
}

attn_status attn_attnb_write_memory(const attn_graph *graph, attn_allocator allocator,
                                    attn_diag *diag, void **out_bytes, size_t *out_size) {
  *out_bytes = NULL;
  *out_size = 0;
  writer w = {.graph = graph, .diag = diag};
  attn_arena_init(&w.arena, allocator);
  Attn__Attnb__Graph message = ATTN__ATTNB__GRAPH__INIT;
  attn_status status = write_graph(&w, &message);
  if (status == ATTN_OK) {
    size_t size = attn__attnb__graph__get_packed_size(&message);
    uint8_t *bytes = attn_allocator_alloc(allocator, size ? size : 1);
    if (bytes) {
      *out_size = attn__attnb__graph__pack(&message, bytes);
      *out_bytes = bytes;
    } else {
      status = ATTN_ERROR_OUT_OF_MEMORY;
    }
  }
  attn_arena_deinit(&w.arena);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return attn_diag_error(diag, ATTN_LOC_NONE, status, "out of memory writing .attnb");
  return status;
}

attn_status attn_attnb_write(const attn_graph *graph, const char *path, attn_diag *diag) {
  void *bytes;
  size_t size;
  attn_allocator allocator = graph->allocator;
  ATTN_RETURN_IF_ERROR(attn_attnb_write_memory(graph, allocator, diag, &bytes, &size));
  attn_status status;
  FILE *out = fopen(path, "wb");
  if (!out)
    status = attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_IO, "cannot write: %s",
                             strerror(errno));
  else
    status = attn_io_finish_write(out, path, fwrite(bytes, 1, size, out) == size, diag);
  attn_allocator_free(allocator, bytes, size ? size : 1);
  return status;
}

// ==== the reader ===============================================================================

typedef struct reader {
  const char *name; // the file, where every error is reported
  attn_diag *diag;
  attn_graph *graph;
  const Attn__Attnb__Graph *file;
  const char **files; // Graph.files copied into the graph's arena
} reader;

static attn_status fail(reader *r, attn_status status, const char *format, ...) ATTN_PRINTF(3, 4);

static attn_status fail(reader *r, attn_status status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  status = attn_diag_verror(r->diag, (attn_loc){r->name, 0, 0}, status, format, args);
  va_end(args);
  return status;
}

static attn_status out_of_memory(reader *r) {
  return fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
}

// Whether `dim` is a constant, an entry of the dim table below `limit`, or (when allowed)
// "infer".
static bool dim_is_valid(attn_dim dim, uint64_t limit, bool allow_infer) {
  if (dim == ATTN_DIM_INFER)
    return allow_infer;
  return attn_dim_is_constant(dim) || (uint64_t)(-(dim + 1)) < limit;
}

static attn_status read_type(reader *r, const Attn__Attnb__Type *m, const char *what,
                             uint32_t index, attn_type *out) {
  if (!m)
    return fail(r, ATTN_ERROR_PARSE, "%s %u has no type", what, index);
  memset(out, 0, sizeof(*out));
  if (!attn_dtype_from_name(m->dtype, strlen(m->dtype), &out->dtype))
    return fail(r, ATTN_ERROR_PARSE, "%s %u: unknown dtype '%s'", what, index, m->dtype);
  if (m->n_dims > ATTN_MAX_RANK)
    return fail(r, ATTN_ERROR_PARSE, "%s %u: rank %zu is above %d", what, index, m->n_dims,
                ATTN_MAX_RANK);
  out->rank = (uint32_t)m->n_dims;
  for (uint32_t i = 0; i < out->rank; i++) {
    if (!dim_is_valid(m->dims[i], r->graph->dim_count, false))
      return fail(r, ATTN_ERROR_PARSE, "%s %u: dim %u (%lld) is out of range", what, index, i,
                  (long long)m->dims[i]);
    out->dims[i] = m->dims[i];
  }
  return ATTN_OK;
}

static attn_status read_dims(reader *r) {
  const Attn__Attnb__Graph *m = r->file;
  attn_graph *g = r->graph;
  if (m->n_dims > MAX_DIMS || m->n_symbols > m->n_dims)
    return fail(r, ATTN_ERROR_PARSE, "%zu dims for %zu symbols (at most %d dims)", m->n_dims,
                m->n_symbols, MAX_DIMS);
  void *dims = NULL;
  bool *is_symbol_used = attn_arena_calloc(&g->arena, m->n_symbols + 1, sizeof(bool));
  if (!is_symbol_used || (m->n_dims && !attn_array_reserve(g->allocator, &dims, &g->dim_capacity,
                                                           m->n_dims, sizeof(attn_dim_expr))))
    return out_of_memory(r);
  g->dims = dims;
  for (uint32_t i = 0; i < m->n_symbols; i++) {
    if (!m->symbols[i][0])
      return fail(r, ATTN_ERROR_PARSE, "symbol %u has no name", i);
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(m->symbols[i], m->symbols[j]) == 0)
        return fail(r, ATTN_ERROR_PARSE, "symbol '%s' is given twice", m->symbols[i]);
  }
  for (uint32_t i = 0; i < m->n_dims; i++) {
    const Attn__Attnb__DimExpr *d = m->dims[i];
    attn_dim_expr e = {0};
    switch (d->kind) {
    case ATTN__ATTNB__DIM_KIND__DIM_SYMBOL:
      if (d->symbol >= m->n_symbols || is_symbol_used[d->symbol])
        return fail(r, ATTN_ERROR_PARSE, "dim %u: symbol %u is out of range or given twice", i,
                    d->symbol);
      is_symbol_used[d->symbol] = true;
      e.kind = ATTN_DIM_SYMBOL;
      e.symbol = d->symbol;
      e.name = attn_arena_strdup(&g->arena, m->symbols[d->symbol]);
      if (!e.name)
        return out_of_memory(r);
      break;
    case ATTN__ATTNB__DIM_KIND__DIM_ADD:
    case ATTN__ATTNB__DIM_KIND__DIM_SUB:
    case ATTN__ATTNB__DIM_KIND__DIM_MUL:
    case ATTN__ATTNB__DIM_KIND__DIM_DIV:
      // Operands come before the entry, so the table has no cycle.
      if (!dim_is_valid(d->lhs, i, false) || !dim_is_valid(d->rhs, i, false))
        return fail(r, ATTN_ERROR_PARSE, "dim %u: an operand is out of range", i);
      e.kind = d->kind == ATTN__ATTNB__DIM_KIND__DIM_ADD   ? ATTN_DIM_ADD
               : d->kind == ATTN__ATTNB__DIM_KIND__DIM_SUB ? ATTN_DIM_SUB
               : d->kind == ATTN__ATTNB__DIM_KIND__DIM_MUL ? ATTN_DIM_MUL
                                                           : ATTN_DIM_DIV;
      e.lhs = d->lhs;
      e.rhs = d->rhs;
      break;
    default:
      return fail(r, ATTN_ERROR_PARSE, "dim %u has unknown kind %d", i, (int)d->kind);
    }
    // Interning makes equal expressions equal dims; a duplicate would break that.
    for (uint32_t j = 0; j < i; j++) {
      const attn_dim_expr *o = &g->dims[j];
      if (o->kind == e.kind && o->lhs == e.lhs && o->rhs == e.rhs && o->symbol == e.symbol)
        return fail(r, ATTN_ERROR_PARSE, "dims %u and %u are the same expression", j, i);
    }
    g->dims[g->dim_count++] = e;
  }
  for (uint32_t i = 0; i < m->n_symbols; i++)
    if (!is_symbol_used[i])
      return fail(r, ATTN_ERROR_PARSE, "symbol '%s' has no dim", m->symbols[i]);
  g->symbol_count = (uint32_t)m->n_symbols;
  return ATTN_OK;
}

static attn_status read_expr(reader *r, uint32_t n, const char *op, const Attn__Attnb__Expr *m,
                             const attn_expr **out) {
  attn_graph *g = r->graph;
  if (!m || m->n_nodes == 0 || m->n_nodes > MAX_EXPR_NODES)
    return fail(r, ATTN_ERROR_PARSE, "node %u (%s): score_mod has %zu entries (1 to %d)", n, op,
                m ? m->n_nodes : 0, MAX_EXPR_NODES);
  attn_expr *items = attn_arena_calloc(&g->arena, m->n_nodes, sizeof(attn_expr));
  bool *is_used = attn_arena_calloc(&g->arena, m->n_nodes, sizeof(bool));
  if (!items || !is_used)
    return out_of_memory(r);
  for (uint32_t i = 0; i < m->n_nodes; i++) {
    const Attn__Attnb__ExprNode *pb = m->nodes[i];
    attn_expr *e = &items[i];
    switch (pb->kind) {
    case ATTN__ATTNB__EXPR_KIND__EXPR_NUMBER:
      e->kind = ATTN_EXPR_NUMBER;
      e->number = pb->number;
      break;
    case ATTN__ATTNB__EXPR_KIND__EXPR_VAR: {
      e->kind = ATTN_EXPR_VAR;
      int v = 0;
      while (v < ATTN_EXPR_VAR_COUNT && strcmp(attn_expr_var_name((attn_expr_var)v), pb->var))
        v++;
      if (v == ATTN_EXPR_VAR_COUNT)
        return fail(r, ATTN_ERROR_PARSE, "node %u (%s): unknown score_mod variable '%s'", n, op,
                    pb->var);
      e->var = (attn_expr_var)v;
      break;
    }
    case ATTN__ATTNB__EXPR_KIND__EXPR_CAPTURE:
      e->kind = ATTN_EXPR_CAPTURE;
      e->capture = pb->capture;
      break;
    case ATTN__ATTNB__EXPR_KIND__EXPR_UNARY:
    case ATTN__ATTNB__EXPR_KIND__EXPR_BINARY: {
      e->kind = pb->kind == ATTN__ATTNB__EXPR_KIND__EXPR_UNARY ? ATTN_EXPR_UNARY : ATTN_EXPR_BINARY;
      int f = 0;
      while (f < ATTN_EXPR_FN_COUNT && strcmp(attn_expr_fn_name((attn_expr_fn)f), pb->fn))
        f++;
      if (f == ATTN_EXPR_FN_COUNT)
        return fail(r, ATTN_ERROR_PARSE, "node %u (%s): unknown score_mod function '%s'", n, op,
                    pb->fn);
      e->fn = (attn_expr_fn)f;
      break;
    }
    case ATTN__ATTNB__EXPR_KIND__EXPR_SELECT:
      e->kind = ATTN_EXPR_SELECT;
      break;
    default:
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): score_mod entry %u has unknown kind %d", n,
                  op, i, (int)pb->kind);
    }
    if (pb->n_args > ATTN_EXPR_MAX_ARGS)
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): score_mod entry %u has %zu arguments", n, op,
                  i, pb->n_args);
    // A tree: each argument is an earlier entry no other entry uses, so the walks over it
    // (shape inference, the printer, the evaluators) see every entry once.
    for (uint32_t a = 0; a < pb->n_args; a++) {
      uint32_t arg = pb->args[a];
      if (arg >= i || is_used[arg])
        return fail(r, ATTN_ERROR_PARSE,
                    "node %u (%s): score_mod entry %u has argument %u, not an unused earlier "
                    "entry",
                    n, op, i, arg);
      is_used[arg] = true;
      e->args[a] = &items[arg];
    }
    e->arg_count = (uint32_t)pb->n_args;
  }
  for (uint32_t i = 0; i + 1 < m->n_nodes; i++)
    if (!is_used[i])
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): score_mod entry %u is not used", n, op, i);
  *out = &items[m->n_nodes - 1];
  return ATTN_OK;
}

static attn_status read_field(reader *r, uint32_t n, const char *op, const attn_field_info *field,
                              const Attn__Attnb__Attribute *m, void *attrs) {
  attn_graph *g = r->graph;
  char *slot = (char *)attrs + field->offset;
  switch (field->type) {
  case ATTN_FIELD_BOOL:
    *(bool *)slot = m->bool_value != 0;
    break;
  case ATTN_FIELD_INT:
    memcpy(slot, &m->int_value, sizeof(int64_t));
    break;
  case ATTN_FIELD_FLOAT:
    memcpy(slot, &m->float_value, sizeof(double));
    break;
  case ATTN_FIELD_DIM:
    if (!dim_is_valid(m->dim_value, g->dim_count, false))
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): %s: dim %lld is out of range", n, op,
                  field->name, (long long)m->dim_value);
    memcpy(slot, &m->dim_value, sizeof(int64_t));
    break;
  case ATTN_FIELD_DTYPE: {
    attn_dtype dtype;
    if (!attn_dtype_from_name(m->dtype_value, strlen(m->dtype_value), &dtype))
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): %s: unknown dtype '%s'", n, op, field->name,
                  m->dtype_value);
    memcpy(slot, &dtype, sizeof(dtype));
    break;
  }
  case ATTN_FIELD_ENUM: {
    int v = 0;
    while (field->enum_names[v] && strcmp(field->enum_names[v], m->enum_value) != 0)
      v++;
    if (!field->enum_names[v])
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): %s: unknown value '%s'", n, op, field->name,
                  m->enum_value);
    memcpy(slot, &v, sizeof(v));
    break;
  }
  case ATTN_FIELD_INTS:
  case ATTN_FIELD_DIMS:
  case ATTN_FIELD_STRINGS: {
    size_t count = field->type == ATTN_FIELD_INTS   ? m->ints_value->n_items
                   : field->type == ATTN_FIELD_DIMS ? m->dims_value->n_items
                                                    : m->strings_value->n_items;
    if (count > UINT32_MAX)
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): %s has %zu items", n, op, field->name, count);
    void *items;
    if (field->type == ATTN_FIELD_STRINGS) {
      const char **names = attn_arena_calloc(&g->arena, count + 1, sizeof(char *));
      for (size_t i = 0; names && i < count; i++)
        if (!(names[i] = attn_arena_strdup(&g->arena, m->strings_value->items[i])))
          names = NULL;
      items = names;
    } else {
      const Attn__Attnb__Ints *ints =
          field->type == ATTN_FIELD_INTS ? m->ints_value : m->dims_value;
      for (size_t i = 0; field->type == ATTN_FIELD_DIMS && i < count; i++)
        if (!dim_is_valid(ints->items[i], g->dim_count, true))
          return fail(r, ATTN_ERROR_PARSE, "node %u (%s): %s: dim %lld is out of range", n, op,
                      field->name, (long long)ints->items[i]);
      items = attn_arena_calloc(&g->arena, count + 1, sizeof(int64_t));
      if (items && count)
        memcpy(items, ints->items, count * sizeof(int64_t));
    }
    if (!items)
      return out_of_memory(r);
    uint32_t count32 = (uint32_t)count;
    memcpy(slot, &items, sizeof(items));
    memcpy((char *)attrs + field->count_offset, &count32, sizeof(count32));
    break;
  }
  case ATTN_FIELD_TYPE: {
    attn_type type;
    ATTN_RETURN_IF_ERROR(read_type(r, m->type_value, "the type attribute of node", n, &type));
    memcpy(slot, &type, sizeof(type));
    break;
  }
  case ATTN_FIELD_DATA: {
    // DATA describes the TYPE field just before it, which may come later in the file.
    break;
  }
  case ATTN_FIELD_EXPR: {
    const attn_expr *expr = NULL;
    ATTN_RETURN_IF_ERROR(read_expr(r, n, op, m->expr_value, &expr));
    memcpy(slot, &expr, sizeof(expr));
    break;
  }
  }
  return ATTN_OK;
}

static attn_status read_data(reader *r, uint32_t n, const char *op, const attn_field_info *field,
                             const Attn__Attnb__Attribute *m, void *attrs) {
  const attn_type *type = (const attn_type *)((const char *)attrs + (field - 1)->offset);
  size_t size;
  if (!data_size(type, &size))
    return fail(r, ATTN_ERROR_PARSE, "node %u (%s): %s needs a type of constant dims", n, op,
                field->name);
  if (m->data_value.len != size)
    return fail(r, ATTN_ERROR_PARSE, "node %u (%s): %s holds %zu bytes, its type needs %zu", n, op,
                field->name, m->data_value.len, size);
  void *data = attn_arena_alloc(&r->graph->arena, size ? size : 1, 16);
  if (!data)
    return out_of_memory(r);
  if (size) {
    memcpy(data, m->data_value.data, size);
    swap_to_host(data, size, type->dtype);
  }
  memcpy((char *)attrs + field->offset, &data, sizeof(data));
  return ATTN_OK;
}

static attn_status read_attributes(reader *r, uint32_t n, const attn_op_info *op,
                                   const Attn__Attnb__Node *m, const void **out_attrs) {
  const attn_attrs_info *info = attn_attrs_get_info(op->attrs_kind);
  *out_attrs = NULL;
  if (info->size == 0) {
    if (m->n_attributes)
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s) takes no attributes, the file gives '%s'", n,
                  op->name, m->attributes[0]->name);
    return ATTN_OK;
  }
  if (info->field_count > MAX_FIELDS) // a family grew past this reader's table
    return fail(r, ATTN_ERROR_UNSUPPORTED, "node %u (%s): too many attribute fields", n, op->name);
  void *attrs = attn_graph_alloc(r->graph, info->size);
  if (!attrs)
    return out_of_memory(r);
  memcpy(attrs, info->defaults, info->size);
  const Attn__Attnb__Attribute *given[MAX_FIELDS] = {0};
  for (size_t a = 0; a < m->n_attributes; a++) {
    const Attn__Attnb__Attribute *attribute = m->attributes[a];
    uint32_t f = 0;
    while (f < info->field_count && strcmp(info->fields[f].name, attribute->name) != 0)
      f++;
    if (f == info->field_count)
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s) has no attribute '%s'", n, op->name,
                  attribute->name);
    const attn_field_info *field = &info->fields[f];
    if (given[f])
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): attribute '%s' is given twice", n, op->name,
                  field->name);
    if (attribute->value_case != case_of(field->type))
      return fail(r, ATTN_ERROR_PARSE,
                  "node %u (%s): attribute '%s' should be %s, the file holds %s", n, op->name,
                  field->name, field_type_name(field->type), case_name(attribute->value_case));
    given[f] = attribute;
    ATTN_RETURN_IF_ERROR(read_field(r, n, op->name, field, attribute, attrs));
  }
  for (uint32_t f = 0; f < info->field_count; f++) {
    const attn_field_info *field = &info->fields[f];
    if (!given[f] && field->is_required)
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): attribute '%s' is missing", n, op->name,
                  field->name);
    if (given[f] && field->type == ATTN_FIELD_DATA)
      ATTN_RETURN_IF_ERROR(read_data(r, n, op->name, field, given[f], attrs));
  }
  *out_attrs = attrs;
  return ATTN_OK;
}

static attn_status read_values(reader *r) {
  const Attn__Attnb__Graph *m = r->file;
  attn_graph *g = r->graph;
  if (m->n_values >= UINT32_MAX || m->n_nodes >= UINT32_MAX)
    return fail(r, ATTN_ERROR_PARSE, "too many values or nodes");
  void *values = g->values;
  if (!attn_array_reserve(g->allocator, &values, &g->value_capacity, m->n_values + 1,
                          sizeof(attn_value)))
    return out_of_memory(r);
  g->values = values;
  for (uint32_t i = 0; i < m->n_values; i++) {
    const Attn__Attnb__Value *pb = m->values[i];
    attn_value *v = &g->values[i + 1];
    memset(v, 0, sizeof(*v));
    ATTN_RETURN_IF_ERROR(read_type(r, pb->type, "value", i + 1, &v->type));
    if (pb->producer > m->n_nodes)
      return fail(r, ATTN_ERROR_PARSE, "value %u: producer %u is out of range", i + 1,
                  pb->producer);
    v->producer = (attn_node_id){pb->producer};
    v->output_index = pb->output_index;
    v->buffer = pb->buffer;
    if (pb->name[0] && !(v->name = attn_arena_strdup(&g->arena, pb->name)))
      return out_of_memory(r);
  }
  g->value_count = (uint32_t)m->n_values + 1;
  return ATTN_OK;
}

static attn_status read_node(reader *r, uint32_t n, const Attn__Attnb__Node *m, attn_node *node) {
  attn_graph *g = r->graph;
  attn_op op;
  memset(node, 0, sizeof(*node));
  if (!attn_op_from_name(m->op, strlen(m->op), &op))
    return fail(r, ATTN_ERROR_PARSE, "node %u: unknown op '%s'", n, m->op);
  const attn_op_info *info = attn_op_get_info(op);
  node->op = op;
  if (m->n_inputs >= UINT32_MAX || m->n_outputs >= UINT32_MAX)
    return fail(r, ATTN_ERROR_PARSE, "node %u (%s): too many inputs or outputs", n, info->name);
  attn_value_id *inputs = attn_arena_calloc(&g->arena, m->n_inputs + 1, sizeof(attn_value_id));
  attn_value_id *outputs = attn_arena_calloc(&g->arena, m->n_outputs + 1, sizeof(attn_value_id));
  if (!inputs || !outputs)
    return out_of_memory(r);
  for (uint32_t i = 0; i < m->n_inputs; i++) {
    if (m->inputs[i] == 0 || m->inputs[i] >= g->value_count)
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): input %u is value %u, out of range", n,
                  info->name, i, m->inputs[i]);
    inputs[i] = (attn_value_id){m->inputs[i]};
  }
  for (uint32_t i = 0; i < m->n_outputs; i++) {
    uint32_t id = m->outputs[i];
    if (id == 0 || id >= g->value_count || g->values[id].producer.index != n ||
        g->values[id].output_index != i)
      return fail(r, ATTN_ERROR_PARSE,
                  "node %u (%s): output %u is value %u, which is out of range or does not "
                  "name this node as its producer",
                  n, info->name, i, id);
    outputs[i] = (attn_value_id){id};
  }
  node->input_count = (uint32_t)m->n_inputs;
  node->output_count = (uint32_t)m->n_outputs;
  node->inputs = inputs;
  node->outputs = outputs;
  ATTN_RETURN_IF_ERROR(read_attributes(r, n, info, m, &node->attrs));
  if (m->location) {
    if (m->location->file > r->file->n_files)
      return fail(r, ATTN_ERROR_PARSE, "node %u (%s): location file %u is out of range", n,
                  info->name, m->location->file);
    node->loc = (attn_loc){m->location->file ? r->files[m->location->file - 1] : NULL,
                           m->location->line, m->location->col};
  }
  node->kernel = m->kernel;
  return ATTN_OK;
}

static attn_status read_nodes(reader *r) {
  const Attn__Attnb__Graph *m = r->file;
  attn_graph *g = r->graph;
  r->files = attn_arena_calloc(&g->arena, m->n_files + 1, sizeof(char *));
  if (!r->files)
    return out_of_memory(r);
  for (size_t i = 0; i < m->n_files; i++)
    if (!(r->files[i] = attn_arena_strdup(&g->arena, m->files[i])))
      return out_of_memory(r);
  void *nodes = g->nodes;
  if (!attn_array_reserve(g->allocator, &nodes, &g->node_capacity, m->n_nodes + 1,
                          sizeof(attn_node)))
    return out_of_memory(r);
  g->nodes = nodes;
  for (uint32_t i = 0; i < m->n_nodes; i++) {
    ATTN_RETURN_IF_ERROR(read_node(r, i + 1, m->nodes[i], &g->nodes[i + 1]));
    g->node_count = i + 2; // the node is complete: destroying the graph may now walk it
  }
  // The other direction of the output check: a value naming a producer is that output of it.
  for (uint32_t id = 1; id < g->value_count; id++) {
    const attn_value *v = &g->values[id];
    if (v->producer.index == 0)
      continue;
    const attn_node *node = &g->nodes[v->producer.index];
    if (v->output_index >= node->output_count || node->outputs[v->output_index].index != id)
      return fail(r, ATTN_ERROR_PARSE,
                  "value %u names node %u as its producer, which does not "
                  "make it",
                  id, v->producer.index);
  }
  return ATTN_OK;
}

static attn_status read_inputs_outputs(reader *r) {
  const Attn__Attnb__Graph *m = r->file;
  attn_graph *g = r->graph;
  if (m->n_inputs >= UINT32_MAX || m->n_outputs >= UINT32_MAX)
    return fail(r, ATTN_ERROR_PARSE, "too many inputs or outputs");
  void *inputs = NULL;
  if (m->n_inputs && !attn_array_reserve(g->allocator, &inputs, &g->input_capacity, m->n_inputs,
                                         sizeof(attn_value_id)))
    return out_of_memory(r);
  g->inputs = inputs;
  for (uint32_t i = 0; i < m->n_inputs; i++) {
    uint32_t id = m->inputs[i];
    if (id == 0 || id >= g->value_count || g->values[id].producer.index != 0 || !g->values[id].name)
      return fail(r, ATTN_ERROR_PARSE, "input %u is value %u, not a named value without a producer",
                  i, id);
    for (uint32_t j = 0; j < i; j++)
      if (strcmp(g->values[g->inputs[j].index].name, g->values[id].name) == 0)
        return fail(r, ATTN_ERROR_PARSE, "input '%s' is given twice", g->values[id].name);
    g->inputs[g->input_count++] = (attn_value_id){id};
  }
  g->outputs = attn_arena_calloc(&g->arena, m->n_outputs + 1, sizeof(attn_value_id));
  g->output_names = attn_arena_calloc(&g->arena, m->n_outputs + 1, sizeof(char *));
  if (!g->outputs || !g->output_names)
    return out_of_memory(r);
  for (uint32_t i = 0; i < m->n_outputs; i++) {
    const Attn__Attnb__Output *output = m->outputs[i];
    if (output->value == 0 || output->value >= g->value_count)
      return fail(r, ATTN_ERROR_PARSE, "output %u is value %u, out of range", i, output->value);
    g->outputs[i] = (attn_value_id){output->value};
    if (output->name[0] && !(g->output_names[i] = attn_arena_strdup(&g->arena, output->name)))
      return out_of_memory(r);
  }
  g->output_count = (uint32_t)m->n_outputs;
  return ATTN_OK;
}

// The partition and the memory plan, when the file has them.
static attn_status read_kernels_buffers(reader *r) {
  const Attn__Attnb__Graph *m = r->file;
  attn_graph *g = r->graph;
  if (!m->is_partitioned && m->n_kernels)
    return fail(r, ATTN_ERROR_PARSE, "%zu kernels in a graph that is not partitioned",
                m->n_kernels);
  if (!m->is_memory_planned && m->n_buffers)
    return fail(r, ATTN_ERROR_PARSE, "%zu buffers in a graph without a memory plan", m->n_buffers);
  if (m->n_kernels >= UINT32_MAX || m->n_buffers >= UINT32_MAX)
    return fail(r, ATTN_ERROR_PARSE, "too many kernels or buffers");
  uint32_t kernel_count = m->is_partitioned ? (uint32_t)m->n_kernels + 1 : 0;
  uint32_t buffer_count = m->is_memory_planned ? (uint32_t)m->n_buffers + 1 : 0;
  g->kernels = attn_arena_calloc(&g->arena, kernel_count + 1, sizeof(attn_kernel));
  g->buffers = attn_arena_calloc(&g->arena, buffer_count + 1, sizeof(attn_buffer));
  if (!g->kernels || !g->buffers)
    return out_of_memory(r);
  for (uint32_t k = 1; k < kernel_count; k++) {
    const Attn__Attnb__Kernel *kernel = m->kernels[k - 1];
    int kind = 0;
    while (kind < ATTN_KERNEL_KIND_COUNT &&
           strcmp(attn_kernel_kind_name((attn_kernel_kind)kind), kernel->kind) != 0)
      kind++;
    if (kind == ATTN_KERNEL_KIND_COUNT)
      return fail(r, ATTN_ERROR_PARSE, "kernel %u: unknown kind '%s'", k, kernel->kind);
    g->kernels[k].kind = (attn_kernel_kind)kind;
  }
  // The partition's shape (ir.h): leaves belong to no kernel, each kernel's nodes are
  // contiguous and kernels come in execution order, which backends rely on.
  uint32_t last_kernel = 0;
  for (uint32_t n = 1; n < g->node_count; n++) {
    uint32_t kernel = g->nodes[n].kernel;
    if (kernel != 0 && kernel >= kernel_count)
      return fail(r, ATTN_ERROR_PARSE, "node %u is in kernel %u, out of range", n, kernel);
    if (kernel != 0 && (attn_op_get_info(g->nodes[n].op)->flags & ATTN_OP_LEAF))
      return fail(r, ATTN_ERROR_PARSE, "node %u is a leaf but in kernel %u", n, kernel);
    if (kernel != 0 && kernel < last_kernel)
      return fail(r, ATTN_ERROR_PARSE,
                  "node %u is in kernel %u after a node of kernel %u: kernels are not "
                  "contiguous or not in order",
                  n, kernel, last_kernel);
    last_kernel = kernel ? kernel : last_kernel;
    g->kernels[kernel].node_count++;
  }
  g->kernels[0].node_count = 0;
  for (uint32_t k = 1; k < kernel_count; k++)
    if (g->kernels[k].node_count != m->kernels[k - 1]->node_count)
      return fail(r, ATTN_ERROR_PARSE, "kernel %u has %u nodes, the file says %u", k,
                  g->kernels[k].node_count, m->kernels[k - 1]->node_count);
  for (uint32_t b = 1; b < buffer_count; b++) {
    if (!dim_is_valid(m->buffers[b - 1]->bytes, g->dim_count, false))
      return fail(r, ATTN_ERROR_PARSE, "buffer %u: size %lld is out of range", b,
                  (long long)m->buffers[b - 1]->bytes);
    g->buffers[b].bytes = m->buffers[b - 1]->bytes;
  }
  for (uint32_t id = 1; id < g->value_count; id++)
    if (g->values[id].buffer != 0 && g->values[id].buffer >= buffer_count)
      return fail(r, ATTN_ERROR_PARSE, "value %u is in buffer %u, out of range", id,
                  g->values[id].buffer);
  g->kernel_count = kernel_count;
  g->buffer_count = buffer_count;
  return ATTN_OK;
}

static attn_status read_graph(reader *r) {
  const Attn__Attnb__Graph *m = r->file;
  if (m->magic != ATTN_ATTNB_MAGIC)
    return fail(r, ATTN_ERROR_PARSE, "not an .attnb file (no magic number)");
  if (m->format_version > ATTN_ATTNB_FORMAT_VERSION)
    return fail(r, ATTN_ERROR_UNSUPPORTED,
                "written in .attnb format version %u by a newer attnc; this build reads up to "
                "version %d",
                m->format_version, ATTN_ATTNB_FORMAT_VERSION);
  if (m->format_version == 0)
    return fail(r, ATTN_ERROR_PARSE, "corrupt: no format version");
  if (m->end_magic != ATTN_ATTNB_MAGIC)
    return fail(r, ATTN_ERROR_PARSE, "truncated: the file ends before its last field");
  ATTN_RETURN_IF_ERROR(read_dims(r));
  ATTN_RETURN_IF_ERROR(read_values(r));
  ATTN_RETURN_IF_ERROR(read_nodes(r));
  ATTN_RETURN_IF_ERROR(read_inputs_outputs(r));
  return read_kernels_buffers(r);
}

attn_status attn_attnb_read_memory(const char *name, const void *bytes, size_t size,
                                   attn_allocator allocator, attn_diag *diag,
                                   attn_graph **out_graph) {
  *out_graph = NULL;
  reader r = {.name = name, .diag = diag};
  attn_pb_allocator pb;
  attn_pb_allocator_init(&pb, allocator);
  Attn__Attnb__Graph *file = attn__attnb__graph__unpack(&pb.base, size, bytes);
  // protobuf-c says only NULL, for a malformed message and for no memory alike; the context
  // knows whether an allocation failed.
  if (!file)
    return pb.failed ? out_of_memory(&r)
                     : fail(&r, ATTN_ERROR_PARSE,
                            "not an .attnb file, or truncated: the message does not decode");
  r.file = file;
  // The graph's own errors (shape inference, the verifier, out of memory) go to a scratch sink
  // while it is read, and come out as one error naming the file.
  attn_diag scratch;
  attn_diag_init(&scratch, allocator);
  attn_status status = attn_graph_create(allocator, &scratch, file->name, &r.graph);
  if (status != ATTN_OK) {
    status = out_of_memory(&r);
  } else {
    status = read_graph(&r);
    if (status == ATTN_OK) {
      status = attn_graph_verify(r.graph);
      if (status != ATTN_OK) {
        char message[1024];
        attn_diag_format_last_error(&scratch, message, sizeof(message));
        status = fail(&r, status, "invalid graph: %s", message);
      }
    }
  }
  attn__attnb__graph__free_unpacked(file, &pb.base);
  attn_diag_deinit(&scratch);
  if (status != ATTN_OK) {
    if (r.graph)
      r.graph->diag = diag;
    attn_graph_destroy(r.graph);
    return status;
  }
  r.graph->diag = diag;
  *out_graph = r.graph;
  return ATTN_OK;
}

attn_status attn_attnb_read(const char *path, attn_allocator allocator, attn_diag *diag,
                            attn_graph **out_graph) {
  *out_graph = NULL;
  char *bytes;
  size_t size;
  ATTN_RETURN_IF_ERROR(attn_io_read_file(path, allocator, diag, &bytes, &size));
  attn_status status = attn_attnb_read_memory(path, bytes, size, allocator, diag, out_graph);
  attn_allocator_free(allocator, bytes, size + 1);
  return status;
}
