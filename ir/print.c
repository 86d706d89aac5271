// The IR printer. The output is .attn text that the frontend parses back to the same graph,
// so every choice here (names, number formats, what is left out) is made so that
// print → parse → print gives identical text. Attributes are printed from the schema of
// ir/attrs.c, the op reference from the rows of ir/ops.def.
#include "ir/print.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/base/tensor.h"

// Words the parser reads as something other than a value name.
static const char *const reserved_words[] = {
    "let", "def", "graph", "repeat", "in",   "return", "true", "false", "config",
    "inf", "nan", "f32",   "f16",    "bf16", "i64",    "i32",  "i8",    "bool",
};

// ---- numbers -------------------------------------------------------------------------------

// Appends ".0" when `text` would read back as an integer.
static void make_float_text(char *text, size_t size) {
  if (!strpbrk(text, ".eni") && strlen(text) + 3 <= size)
    strcat(text, ".0");
}

static bool same_double(double a, double b) {
  return memcmp(&a, &b, sizeof(a)) == 0;
}

// The shortest %g text that strtod reads back as exactly `v`; inf, -inf and nan by name.
static void format_double(double v, char *text, size_t size) {
  if (isnan(v)) {
    snprintf(text, size, "nan");
    return;
  }
  if (isinf(v)) {
    snprintf(text, size, v < 0 ? "-inf" : "inf");
    return;
  }
  // Integral values below 2^53 read better, and back exactly, without an exponent.
  if (v == floor(v) && fabs(v) < 0x1p53) {
    snprintf(text, size, "%.1f", v);
    return;
  }
  for (int precision = 1; precision <= 17; precision++) {
    snprintf(text, size, "%.*g", precision, v);
    if (same_double(strtod(text, NULL), v))
      break;
  }
  make_float_text(text, size);
}

// Reads `text` the way the frontend stores an element of `dtype`: strtod, then rounding to
// float, then to f16/bf16.
static uint32_t float_bits(attn_dtype dtype, const char *text) {
  float f = (float)strtod(text, NULL);
  if (dtype == ATTN_DTYPE_F16)
    return attn_f32_to_f16(f);
  if (dtype == ATTN_DTYPE_BF16)
    return attn_f32_to_bf16(f);
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// A float element of `dtype` whose bits are `bits`, with the fewest digits that read back.
static void format_float_element(attn_dtype dtype, uint32_t bits, char *text, size_t size) {
  float f;
  if (dtype == ATTN_DTYPE_F16)
    f = attn_f16_to_f32((uint16_t)bits);
  else if (dtype == ATTN_DTYPE_BF16)
    f = attn_bf16_to_f32((uint16_t)bits);
  else
    memcpy(&f, &bits, sizeof(f));
  if (isnan(f) || isinf(f) || (f == floorf(f) && fabsf(f) < 0x1p53f)) {
    format_double((double)f, text, size);
    return;
  }
  for (int precision = 1; precision <= 9; precision++) {
    snprintf(text, size, "%.*g", precision, (double)f);
    if (float_bits(dtype, text) == bits)
      break;
  }
  make_float_text(text, size);
}

// INT64_MIN has no literal (its magnitude does not fit), so it is written as an expression.
static void print_int(FILE *out, int64_t v) {
  if (v == INT64_MIN)
    fputs("(-9223372036854775807 - 1)", out);
  else
    fprintf(out, "%" PRId64, v);
}

// ---- names ---------------------------------------------------------------------------------

// A set of strings with counts: open addressing in a scratch arena.
typedef struct name_table {
  const char **keys;
  uint32_t *counts;
  size_t capacity; // a power of two, at least twice the number of keys
} name_table;

static size_t hash_name(const char *s) {
  size_t h = 14695981039346656037u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

static bool table_init(name_table *t, attn_arena *arena, size_t max_keys) {
  t->capacity = 16;
  while (t->capacity < 2 * max_keys + 2)
    t->capacity *= 2;
  t->keys = attn_arena_calloc(arena, t->capacity, sizeof(*t->keys));
  t->counts = attn_arena_calloc(arena, t->capacity, sizeof(*t->counts));
  return t->keys && t->counts;
}

static size_t table_slot(const name_table *t, const char *name) {
  size_t i = hash_name(name) & (t->capacity - 1);
  while (t->keys[i] && strcmp(t->keys[i], name) != 0)
    i = (i + 1) & (t->capacity - 1);
  return i;
}

static void table_add(name_table *t, const char *name) {
  size_t i = table_slot(t, name);
  t->keys[i] = name;
  t->counts[i]++;
}

static uint32_t table_count(const name_table *t, const char *name) {
  return t->counts[table_slot(t, name)];
}

static bool is_identifier(const char *s) {
  if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
    return false;
  size_t n = 0;
  for (; *s; s++, n++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '_'))
      return false;
  return n <= 200;
}

typedef struct printer {
  const attn_graph *graph;
  FILE *out;
  attn_arena arena;
  const char **names; // by value index
  bool *is_live_value;
} printer;

// Picks a name for every value printed: a hint that is a unique identifier keeps its name,
// other values get hint_N or tN (N = the value's index), never a name already taken.
static bool assign_names(printer *p) {
  const attn_graph *g = p->graph;
  name_table used, hints;
  size_t slots = (size_t)g->value_count + g->dim_count + 64;
  p->names = attn_arena_calloc(&p->arena, g->value_count, sizeof(char *));
  p->is_live_value = attn_arena_calloc(&p->arena, g->value_count, sizeof(bool));
  if (!p->names || !p->is_live_value || !table_init(&used, &p->arena, slots) ||
      !table_init(&hints, &p->arena, slots))
    return false;
  for (size_t i = 0; i < sizeof(reserved_words) / sizeof(reserved_words[0]); i++)
    table_add(&used, reserved_words[i]);
  for (uint32_t i = 0; i < g->symbol_count; i++)
    if (attn_graph_symbol_name(g, i))
      table_add(&used, attn_graph_symbol_name(g, i));
  for (uint32_t i = 0; i < g->input_count; i++) {
    const attn_value *v = attn_graph_value(g, g->inputs[i]);
    p->names[g->inputs[i].index] = v->name ? v->name : "input";
    table_add(&used, p->names[g->inputs[i].index]);
  }
  for (uint32_t n = 1; n < g->node_count; n++) {
    const attn_node *node = &g->nodes[n];
    for (uint32_t i = 0; !node->is_dead && i < node->output_count; i++) {
      const attn_value *v = attn_graph_value(g, node->outputs[i]);
      p->is_live_value[node->outputs[i].index] = true;
      if (is_identifier(v->name))
        table_add(&hints, v->name);
    }
  }
  for (uint32_t id = 1; id < g->value_count; id++) {
    const char *hint = g->values[id].name;
    if (p->is_live_value[id] && is_identifier(hint) && table_count(&hints, hint) == 1 &&
        table_count(&used, hint) == 0) {
      p->names[id] = hint;
      table_add(&used, hint);
    }
  }
  for (uint32_t id = 1; id < g->value_count; id++) {
    if (!p->is_live_value[id] || p->names[id])
      continue;
    const char *hint = g->values[id].name;
    char candidate[256];
    if (is_identifier(hint))
      snprintf(candidate, sizeof(candidate), "%s_%u", hint, id);
    if (!is_identifier(hint) || table_count(&used, candidate))
      snprintf(candidate, sizeof(candidate), "t%u", id);
    for (uint32_t k = 1; table_count(&used, candidate); k++)
      snprintf(candidate, sizeof(candidate), "t%u_%u", id, k);
    p->names[id] = attn_arena_strdup(&p->arena, candidate);
    if (!p->names[id])
      return false;
    table_add(&used, p->names[id]);
  }
  return true;
}

static void print_value_name(printer *p, attn_value_id id) {
  const char *name = id.index < p->graph->value_count ? p->names[id.index] : NULL;
  if (name)
    fputs(name, p->out);
  else
    fprintf(p->out, "t%u", id.index);
}

// ---- dims, types, strings ------------------------------------------------------------------

// The same text as attn_graph_dim_format (and so the same parse), written to a stream.
static void print_dim(const attn_graph *g, attn_dim dim, int parent_precedence, FILE *out) {
  if (dim == ATTN_DIM_INFER) {
    fputs("-1", out);
    return;
  }
  if (attn_dim_is_constant(dim)) {
    fprintf(out, "%" PRId64, dim);
    return;
  }
  const attn_dim_expr *e = attn_graph_dim_expr(g, dim);
  if (!e) {
    fputs("?", out);
    return;
  }
  if (e->kind == ATTN_DIM_SYMBOL) {
    fputs(e->name, out);
    return;
  }
  int precedence = e->kind == ATTN_DIM_ADD || e->kind == ATTN_DIM_SUB ? 1 : 2;
  bool parens = precedence < parent_precedence;
  if (parens)
    fputc('(', out);
  print_dim(g, e->lhs, precedence, out);
  fprintf(out, " %c ", " +-*/"[e->kind]);
  print_dim(g, e->rhs, precedence + (e->kind == ATTN_DIM_SUB || e->kind == ATTN_DIM_DIV), out);
  if (parens)
    fputc(')', out);
}

static void print_type(const attn_graph *g, const attn_type *type, FILE *out) {
  fprintf(out, "%s[", attn_dtype_name(type->dtype));
  for (uint32_t i = 0; i < type->rank && i < ATTN_MAX_RANK; i++) {
    if (i)
      fputs(", ", out);
    print_dim(g, type->dims[i], 0, out);
  }
  fputc(']', out);
}

// A string literal; braces are doubled because the parser interpolates {name}.
static void print_string(const char *s, FILE *out) {
  fputc('"', out);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(out, "\\%c", c);
    else if (c == '\n')
      fputs("\\n", out);
    else if (c == '\t')
      fputs("\\t", out);
    else if (c == '{' || c == '}')
      fprintf(out, "%c%c", c, c);
    else if (c < 0x20 || c == 0x7f)
      fprintf(out, "\\x%02x", c);
    else
      fputc(c, out);
  }
  fputc('"', out);
}

// ---- score_mod expressions -----------------------------------------------------------------

static int expr_precedence(const attn_expr *e) {
  switch (e->kind) {
  case ATTN_EXPR_SELECT:
    return 1;
  case ATTN_EXPR_BINARY:
    switch (e->fn) {
    case ATTN_EXPR_LT:
    case ATTN_EXPR_LE:
    case ATTN_EXPR_EQ:
      return 2;
    case ATTN_EXPR_ADD:
    case ATTN_EXPR_SUB:
      return 3;
    case ATTN_EXPR_MUL:
    case ATTN_EXPR_DIV:
      return 4;
    default:
      return 6; // min, max, pow are calls
    }
  case ATTN_EXPR_UNARY:
    return e->fn == ATTN_EXPR_NEG ? 5 : 6;
  case ATTN_EXPR_NUMBER:
    return signbit(e->number) ? 5 : 6;
  default:
    return 6;
  }
}

static void print_expr(printer *p, const attn_node *node, uint32_t capture_base, const attn_expr *e,
                       int min_precedence) {
  FILE *out = p->out;
  if (!e) {
    fputs("?", out);
    return;
  }
  int precedence = expr_precedence(e);
  bool parens = precedence < min_precedence;
  if (parens)
    fputc('(', out);
  char text[40];
  switch (e->kind) {
  case ATTN_EXPR_NUMBER:
    format_double(e->number, text, sizeof(text));
    fputs(text, out);
    break;
  case ATTN_EXPR_VAR:
    fputs(attn_expr_var_name(e->var) ? attn_expr_var_name(e->var) : "?", out);
    break;
  case ATTN_EXPR_CAPTURE: {
    uint32_t input = capture_base + e->capture;
    if (input < node->input_count)
      print_value_name(p, node->inputs[input]);
    else
      fputs("?", out);
    fputc('[', out);
    for (uint32_t i = 0; i < e->arg_count && i < ATTN_EXPR_MAX_ARGS; i++) {
      if (i)
        fputs(", ", out);
      print_expr(p, node, capture_base, e->args[i], 1);
    }
    fputc(']', out);
    break;
  }
  case ATTN_EXPR_UNARY:
    if (e->fn == ATTN_EXPR_NEG) {
      fputc('-', out);
      print_expr(p, node, capture_base, e->args[0], 5);
    } else {
      fprintf(out, "%s(", attn_expr_fn_name(e->fn) ? attn_expr_fn_name(e->fn) : "?");
      print_expr(p, node, capture_base, e->args[0], 1);
      fputc(')', out);
    }
    break;
  case ATTN_EXPR_BINARY: {
    static const char *const infix[ATTN_EXPR_FN_COUNT] = {
        [ATTN_EXPR_ADD] = "+", [ATTN_EXPR_SUB] = "-", [ATTN_EXPR_MUL] = "*", [ATTN_EXPR_DIV] = "/",
        [ATTN_EXPR_LT] = "<",  [ATTN_EXPR_LE] = "<=", [ATTN_EXPR_EQ] = "==",
    };
    if ((unsigned)e->fn < ATTN_EXPR_FN_COUNT && infix[e->fn]) {
      // Left-associative: the right operand binds tighter; comparisons do not chain.
      bool is_compare = precedence == 2;
      print_expr(p, node, capture_base, e->args[0], is_compare ? 3 : precedence);
      fprintf(out, " %s ", infix[e->fn]);
      print_expr(p, node, capture_base, e->args[1], is_compare ? 3 : precedence + 1);
    } else {
      fprintf(out, "%s(", attn_expr_fn_name(e->fn) ? attn_expr_fn_name(e->fn) : "?");
      print_expr(p, node, capture_base, e->args[0], 1);
      fputs(", ", out);
      print_expr(p, node, capture_base, e->args[1], 1);
      fputc(')', out);
    }
    break;
  }
  case ATTN_EXPR_SELECT:
    print_expr(p, node, capture_base, e->args[0], 2);
    fputs(" ? ", out);
    print_expr(p, node, capture_base, e->args[1], 1);
    fputs(" : ", out);
    print_expr(p, node, capture_base, e->args[2], 1);
    break;
  }
  if (parens)
    fputc(')', out);
}

// ---- attributes ----------------------------------------------------------------------------

static uint32_t field_count_of(const void *attrs, const attn_field_info *field) {
  uint32_t count;
  memcpy(&count, (const char *)attrs + field->count_offset, sizeof(count));
  return count;
}

static const void *field_pointer(const void *attrs, const attn_field_info *field) {
  const void *pointer;
  memcpy(&pointer, (const char *)attrs + field->offset, sizeof(pointer));
  return pointer;
}

static size_t list_item_size(const attn_field_info *field) {
  return field->type == ATTN_FIELD_STRINGS ? sizeof(char *) : sizeof(int64_t);
}

// True when `field` of `attrs` holds the family default.
static bool is_default(const attn_field_info *field, const void *attrs, const void *defaults) {
  const char *a = (const char *)attrs + field->offset;
  const char *d = (const char *)defaults + field->offset;
  switch (field->type) {
  case ATTN_FIELD_BOOL:
    return memcmp(a, d, sizeof(bool)) == 0;
  case ATTN_FIELD_INT:
  case ATTN_FIELD_DIM:
  case ATTN_FIELD_FLOAT:
    return memcmp(a, d, sizeof(int64_t)) == 0;
  case ATTN_FIELD_DTYPE:
    return memcmp(a, d, sizeof(attn_dtype)) == 0;
  case ATTN_FIELD_ENUM:
    return memcmp(a, d, sizeof(int)) == 0;
  case ATTN_FIELD_TYPE:
    return attn_type_equal((const attn_type *)a, (const attn_type *)d);
  case ATTN_FIELD_EXPR:
    return field_pointer(attrs, field) == field_pointer(defaults, field);
  case ATTN_FIELD_DATA:
    return false;
  case ATTN_FIELD_INTS:
  case ATTN_FIELD_DIMS:
  case ATTN_FIELD_STRINGS: {
    uint32_t count = field_count_of(attrs, field);
    if (count != field_count_of(defaults, field))
      return false;
    const void *items = field_pointer(attrs, field),
               *default_items = field_pointer(defaults, field);
    if (count == 0 || items == default_items)
      return true;
    if (!items || !default_items)
      return false;
    if (field->type != ATTN_FIELD_STRINGS)
      return memcmp(items, default_items, count * list_item_size(field)) == 0;
    for (uint32_t i = 0; i < count; i++)
      if (strcmp(((const char *const *)items)[i], ((const char *const *)default_items)[i]) != 0)
        return false;
    return true;
  }
  }
  return false;
}

static void print_data(printer *p, const attn_type *type, const void *data) {
  FILE *out = p->out;
  int64_t count = 1;
  for (uint32_t i = 0; i < type->rank; i++)
    count *= attn_dim_is_constant(type->dims[i]) ? type->dims[i] : 0;
  size_t size = attn_dtype_size(type->dtype);
  if (!data || (unsigned)type->dtype >= ATTN_DTYPE_COUNT) {
    fputs("[]", out);
    return;
  }
  // One value stands for all elements when they are all equal.
  bool all_equal = count >= 1;
  for (int64_t i = 1; all_equal && i < count; i++)
    all_equal = memcmp((const char *)data + i * (int64_t)size, data, size) == 0;
  int64_t shown = all_equal ? 1 : count;
  if (!all_equal)
    fputc('[', out);
  for (int64_t i = 0; i < shown; i++) {
    const char *element = (const char *)data + i * (int64_t)size;
    char text[40];
    if (i)
      fputs(", ", out);
    switch (type->dtype) {
    case ATTN_DTYPE_F32: {
      uint32_t bits;
      memcpy(&bits, element, sizeof(bits));
      format_float_element(type->dtype, bits, text, sizeof(text));
      fputs(text, out);
      break;
    }
    case ATTN_DTYPE_F16:
    case ATTN_DTYPE_BF16: {
      uint16_t bits;
      memcpy(&bits, element, sizeof(bits));
      format_float_element(type->dtype, bits, text, sizeof(text));
      fputs(text, out);
      break;
    }
    case ATTN_DTYPE_I64: {
      int64_t v;
      memcpy(&v, element, sizeof(v));
      print_int(out, v);
      break;
    }
    case ATTN_DTYPE_I32: {
      int32_t v;
      memcpy(&v, element, sizeof(v));
      fprintf(out, "%" PRId32, v);
      break;
    }
    case ATTN_DTYPE_I8:
      fprintf(out, "%d", (int)*(const int8_t *)element);
      break;
    case ATTN_DTYPE_BOOL:
      fputs(*(const uint8_t *)element ? "true" : "false", out);
      break;
    default:
      break;
    }
  }
  if (!all_equal)
    fputc(']', out);
}

// The scalar fields (bool, float, dtype, enum), as the IR and the op docs both print them;
// false for other field types.
static bool print_scalar_field(FILE *out, const attn_field_info *field, const char *slot) {
  char text[40];
  switch (field->type) {
  case ATTN_FIELD_BOOL:
    fputs(*(const bool *)slot ? "true" : "false", out);
    return true;
  case ATTN_FIELD_FLOAT: {
    double v;
    memcpy(&v, slot, sizeof(v));
    format_double(v, text, sizeof(text));
    fputs(text, out);
    return true;
  }
  case ATTN_FIELD_DTYPE: {
    attn_dtype dtype;
    memcpy(&dtype, slot, sizeof(dtype));
    fputs((unsigned)dtype < ATTN_DTYPE_COUNT ? attn_dtype_name(dtype) : "?", out);
    return true;
  }
  case ATTN_FIELD_ENUM: {
    int v, n = 0;
    memcpy(&v, slot, sizeof(v));
    while (field->enum_names[n])
      n++;
    fputs(v >= 0 && v < n ? field->enum_names[v] : "?", out);
    return true;
  }
  default:
    return false;
  }
}

static void print_field(printer *p, const attn_node *node, const attn_field_info *field,
                        const attn_attrs_info *info, uint32_t capture_base) {
  FILE *out = p->out;
  const void *attrs = node->attrs;
  const char *slot = (const char *)attrs + field->offset;
  if (print_scalar_field(out, field, slot))
    return;
  switch (field->type) {
  case ATTN_FIELD_BOOL:
  case ATTN_FIELD_FLOAT:
  case ATTN_FIELD_DTYPE:
  case ATTN_FIELD_ENUM:
    break; // printed above
  case ATTN_FIELD_INT: {
    int64_t v;
    memcpy(&v, slot, sizeof(v));
    print_int(out, v);
    break;
  }
  case ATTN_FIELD_DIM: {
    attn_dim dim;
    memcpy(&dim, slot, sizeof(dim));
    print_dim(p->graph, dim, 0, out);
    break;
  }
  case ATTN_FIELD_INTS:
  case ATTN_FIELD_DIMS: {
    uint32_t count = field_count_of(attrs, field);
    const int64_t *items = field_pointer(attrs, field);
    fputc('[', out);
    for (uint32_t i = 0; items && i < count; i++) {
      if (i)
        fputs(", ", out);
      if (field->type == ATTN_FIELD_DIMS)
        print_dim(p->graph, items[i], 0, out);
      else
        print_int(out, items[i]);
    }
    fputc(']', out);
    break;
  }
  case ATTN_FIELD_STRINGS: {
    uint32_t count = field_count_of(attrs, field);
    const char *const *items = field_pointer(attrs, field);
    for (uint32_t i = 0; items && i < count; i++) {
      if (i)
        fputs(" | ", out);
      print_string(items[i] ? items[i] : "", out);
    }
    break;
  }
  case ATTN_FIELD_TYPE:
    print_type(p->graph, (const attn_type *)slot, out);
    break;
  case ATTN_FIELD_DATA: {
    // DATA describes the TYPE field just before it in the schema.
    const attn_type *type = (const attn_type *)((const char *)attrs + (field - 1)->offset);
    print_data(p, type, field_pointer(attrs, field));
    break;
  }
  case ATTN_FIELD_EXPR:
    fputs("{ ", out);
    print_expr(p, node, capture_base, field_pointer(attrs, field), 1);
    fputs(" }", out);
    break;
  }
  (void)info;
}

// ---- nodes and the graph -------------------------------------------------------------------

// The memory plan as a comment after a node: "  # buffer b2", or "  # buffers b2, -, b3" for
// a node with several outputs (- for an output without a buffer). Nothing without a plan.
static void print_buffers(printer *p, const attn_node *node) {
  const attn_graph *g = p->graph;
  bool has_buffer = false;
  for (uint32_t i = 0; i < node->output_count; i++)
    has_buffer |= g->values[node->outputs[i].index].buffer != 0;
  if (!has_buffer)
    return;
  fputs(node->output_count == 1 ? "  # buffer " : "  # buffers ", p->out);
  for (uint32_t i = 0; i < node->output_count; i++) {
    uint32_t buffer = g->values[node->outputs[i].index].buffer;
    if (i)
      fputs(", ", p->out);
    if (buffer)
      fprintf(p->out, "b%" PRIu32, buffer);
    else
      fputc('-', p->out);
  }
}

// The partition as a comment before a kernel's first node: "  # kernel k3 gemm: matmul, add,
// gelu", listing the ops of the nodes that follow in the same kernel.
static void print_kernel(printer *p, uint32_t first) {
  const attn_graph *g = p->graph;
  uint32_t kernel = g->nodes[first].kernel;
  const char *kind =
      kernel < g->kernel_count ? attn_kernel_kind_name(g->kernels[kernel].kind) : NULL;
  fprintf(p->out, "  # kernel k%" PRIu32 " %s:", kernel, kind ? kind : "?");
  const char *separator = " ";
  for (uint32_t n = first; n < g->node_count; n++) {
    const attn_node *node = &g->nodes[n];
    if (node->is_dead || node->kernel == 0)
      continue;
    if (node->kernel != kernel)
      break;
    fprintf(p->out, "%s%s", separator, attn_op_get_info(node->op)->name);
    separator = ", ";
  }
  fputc('\n', p->out);
}

static void print_node(printer *p, const attn_node *node) {
  FILE *out = p->out;
  const attn_op_info *op = attn_op_get_info(node->op);
  const attn_attrs_info *info = attn_attrs_get_info(op->attrs_kind);
  fputs("  ", out);
  for (uint32_t i = 0; i < node->output_count; i++) {
    if (i)
      fputs(", ", out);
    print_value_name(p, node->outputs[i]);
  }
  fprintf(out, " = %s(", op->name);
  bool is_leaf = (op->flags & ATTN_OP_LEAF) != 0;
  // Captured tensors of attention are printed inside score_mod, not as arguments.
  uint32_t positional = node->input_count, capture_base = node->input_count;
  if (node->op == ATTN_OP_ATTENTION && node->attrs) {
    capture_base = 3u + ((const attn_attention_attrs *)node->attrs)->has_mask;
    positional = capture_base < node->input_count ? capture_base : node->input_count;
  }
  bool first = true;
  for (uint32_t i = 0; i < positional; i++, first = false) {
    if (!first)
      fputs(", ", out);
    print_value_name(p, node->inputs[i]);
  }
  for (uint32_t i = 0; node->attrs && i < info->field_count; i++) {
    const attn_field_info *field = &info->fields[i];
    bool as_positional = is_leaf && field->is_required;
    if (!as_positional && !field->is_required && is_default(field, node->attrs, info->defaults))
      continue;
    if (!first)
      fputs(", ", out);
    first = false;
    if (!as_positional)
      fprintf(out, "%s=", field->name);
    print_field(p, node, field, info, capture_base);
  }
  fputc(')', out);
  print_buffers(p, node);
  fputc('\n', out);
}

static void print_signature_item(printer *p, const char *name, const attn_type *type,
                                 bool is_first) {
  if (!is_first)
    fputs(", ", p->out);
  fprintf(p->out, "%s: ", name ? name : "output");
  print_type(p->graph, type, p->out);
}

attn_status attn_graph_print(const attn_graph *graph, FILE *out) {
  printer p = {.graph = graph, .out = out};
  attn_arena_init(&p.arena, graph->allocator);
  if (!assign_names(&p)) {
    attn_arena_deinit(&p.arena);
    return attn_diag_error(graph->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                           "out of memory printing the graph");
  }
  fprintf(out, "graph %s(", is_identifier(graph->name) ? graph->name : "main");
  for (uint32_t i = 0; i < graph->input_count; i++)
    print_signature_item(&p, p.names[graph->inputs[i].index],
                         &attn_graph_value(graph, graph->inputs[i])->type, i == 0);
  fputs(") -> (", out);
  for (uint32_t i = 0; i < graph->output_count; i++)
    print_signature_item(&p, graph->output_names[i],
                         &attn_graph_value(graph, graph->outputs[i])->type, i == 0);
  fputs(") {\n", out);
  uint32_t kernel = 0; // the kernel of the last node printed that has one
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead)
      continue;
    if (graph->kernel_count && node->kernel && node->kernel != kernel) {
      print_kernel(&p, n);
      kernel = node->kernel;
    }
    print_node(&p, node);
  }
  fputs("  return ", out);
  for (uint32_t i = 0; i < graph->output_count; i++) {
    if (i)
      fputs(", ", out);
    print_value_name(&p, graph->outputs[i]);
  }
  fputs("\n}\n", out);
  attn_arena_deinit(&p.arena);
  if (ferror(out))
    return attn_diag_error(graph->diag, ATTN_LOC_NONE, ATTN_ERROR_IO,
                           "cannot write the printed graph");
  return ATTN_OK;
}

// ---- docs/ops.md ---------------------------------------------------------------------------

static const char *field_type_name(attn_field_type type) {
  static const char *const names[] = {"bool", "int",  "float",   "dtype", "enum", "dim",
                                      "ints", "dims", "strings", "type",  "data", "expr"};
  return (unsigned)type < sizeof(names) / sizeof(names[0]) ? names[type] : "?";
}

static void write_default(FILE *out, const attn_field_info *field, const void *defaults) {
  const char *slot = (const char *)defaults + field->offset;
  if (print_scalar_field(out, field, slot))
    return;
  switch (field->type) {
  case ATTN_FIELD_INT:
  case ATTN_FIELD_DIM: {
    int64_t v;
    memcpy(&v, slot, sizeof(v));
    if (v == INT64_MAX)
      fputs("end", out);
    else
      fprintf(out, "%" PRId64, v);
    break;
  }
  case ATTN_FIELD_INTS:
  case ATTN_FIELD_DIMS:
    fputs("[]", out);
    break;
  case ATTN_FIELD_EXPR:
    fputs("none", out);
    break;
  default:
    fputs("-", out);
    break;
  }
}

attn_status attn_ops_write_doc(FILE *out) {
  fputs("# Ops\n"
        "\n"
        "Generated by `attn_ops_write_doc()` (ir/print.c) from the op table `ir/ops.def` and the\n"
        "attribute schema in `ir/attrs.c`; a unit test fails when this file differs from what\n"
        "the function writes. [language.md](language.md) describes how calls are written: tensor\n"
        "inputs are positional, attributes are keyword arguments (`name=value`), and the leaf ops\n"
        "`weight`, `constant` and `iota` take their required attributes positionally\n"
        "(`weight(\"wte.weight\", f32[V, D])`). Attributes marked *required* have no default.\n"
        "\n"
        "| op | inputs | outputs | flags | attributes (type = default) |\n"
        "|---|---|---|---|---|\n",
        out);
  static const char *const flag_names[] = {"leaf", "elementwise", "commutative", "reduction",
                                           "view"};
  for (int o = 0; o < ATTN_OP_COUNT; o++) {
    const attn_op_info *op = attn_op_get_info((attn_op)o);
    const attn_attrs_info *info = attn_attrs_get_info(op->attrs_kind);
    fprintf(out, "| `%s` | ", op->name);
    if (op->max_inputs < 0)
      fprintf(out, "%d or more", op->min_inputs);
    else if (op->min_inputs == op->max_inputs)
      fprintf(out, "%d", op->min_inputs);
    else
      fprintf(out, "%d to %d", op->min_inputs, op->max_inputs);
    if (op->outputs < 0)
      fputs(" | by attributes | ", out);
    else
      fprintf(out, " | %d | ", op->outputs);
    bool first = true;
    for (size_t f = 0; f < sizeof(flag_names) / sizeof(flag_names[0]); f++)
      if (op->flags & (1u << f)) {
        fprintf(out, "%s%s", first ? "" : ", ", flag_names[f]);
        first = false;
      }
    fputs(first ? "- | " : " | ", out);
    if (info->field_count == 0)
      fputs("none", out);
    for (uint32_t i = 0; i < info->field_count; i++) {
      const attn_field_info *field = &info->fields[i];
      fprintf(out, "%s`%s`: ", i ? "; " : "", field->name);
      if (field->type == ATTN_FIELD_ENUM) {
        for (int e = 0; field->enum_names[e]; e++)
          fprintf(out, "%s%s", e ? ", " : "", field->enum_names[e]);
      } else {
        fputs(field_type_name(field->type), out);
      }
      if (field->is_required) {
        fputs(" (*required*)", out);
      } else {
        fputs(" = ", out);
        write_default(out, field, info->defaults);
      }
    }
    fputs(" |\n", out);
  }
  fputs(
      "\n"
      "Attribute types: `bool` (`true`, `false`); `int`; `float`; `dtype` (`f32`, `f16`, `bf16`,\n"
      "`i64`, `i32`, `i8`, `bool`); an enum, written as a bare word (`mask=causal`); `dim` (an\n"
      "integer or a symbolic dim, `T_past`); `ints` (`[0, 2, 1]`); `dims` (`[B, T, H, D / H]`,\n"
      "where `-1` asks `reshape` to infer a dim and `expand` to keep one); `strings` (`\"a\"` or\n"
      "alternatives `\"a\" | \"b\"`); `type` (`f32[B, T]`); `data` (a number for every element,\n"
      "or a list of them in row-major order); `expr` (a score_mod `{ ... }`). A slice `end`\n"
      "of `end` means the end of the axis.\n",
      out);
  return ferror(out) ? ATTN_ERROR_IO : ATTN_OK;
}
