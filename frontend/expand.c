// The expander: evaluates the syntax tree of a .attn file and builds the flat graph.
//
// Compile-time values (integers, floats, bools, strings, lists, symbolic dims, types) and
// tensors (graph values) share one `value` type, so `name = EXPR` binds either. Subgraph
// calls run their body in a new frame that sees only its parameters and the file's lets;
// `repeat` runs its body once per index in the enclosing frame. Attributes are parsed
// generically from the attribute schema (attn_attrs_get_info), so a field added in
// ir/attrs.c is accepted here without a change.
//
// Every error is recorded once, where it is detected, followed by notes naming the subgraph
// calls it happened in; callers only pass the status up. Limits on steps, nodes, memory,
// call depth and symbolic-dim depth keep hostile input from running away.
#include "frontend/expand.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "runtime/base/tensor.h"

enum {
  DEFAULT_MAX_NODES = 1 << 20,
  MAX_CALL_DEPTH = 64,
  MAX_EVAL_DEPTH = 1000,   // nested expressions and blocks, summed over subgraph calls
  MAX_STRING_BYTES = 4096, // strings built by interpolation and prefixes
  MAX_LIST_ITEMS = 1 << 22,
  MAX_CONSTANT_ELEMENTS = 1 << 22,
  MAX_DIM_EXPRS = 1 << 16,
  MAX_DIM_DEPTH = 64,
  MAX_CAPTURES = 32,
  MAX_FIELDS = 32,
};
#define DEFAULT_MAX_STEPS ((uint64_t)1 << 24)
#define MAX_ARENA_BYTES   ((size_t)1 << 30)

// ---- values --------------------------------------------------------------------------------

typedef enum value_kind {
  VALUE_INT,
  VALUE_FLOAT,
  VALUE_BOOL,
  VALUE_STRING,
  VALUE_LIST,  // of INT, FLOAT, BOOL, STRING or DIM items
  VALUE_NAMES, // alternative weight names: "a" | "b" (STRING items)
  VALUE_DIM,   // a symbolic dim (always < 0; constant dims are INTs)
  VALUE_TYPE,
  VALUE_TENSOR,
  VALUE_TUPLE,   // the outputs of a multi-output op or subgraph
  VALUE_MISSING, // a config key that is absent or null, only seen by '??'
} value_kind;

typedef struct value value;
struct value {
  value_kind kind;
  union {
    int64_t i;
    double f;
    bool b;
    attn_dim dim;
    attn_value_id tensor;
    const attn_type *type;
    struct {
      const char *text;
      uint32_t length;
    } string;
    struct {
      const value *items;
      uint32_t count;
    } list; // LIST, NAMES, TUPLE
  } as;
};

static const char *describe(const value *v) {
  switch (v->kind) {
  case VALUE_INT:
    return "an integer";
  case VALUE_FLOAT:
    return "a float";
  case VALUE_BOOL:
    return "a bool";
  case VALUE_STRING:
    return "a string";
  case VALUE_LIST:
    return "a list";
  case VALUE_NAMES:
    return "weight names";
  case VALUE_DIM:
    return "a symbolic dim";
  case VALUE_TYPE:
    return "a type";
  case VALUE_TENSOR:
    return "a tensor";
  case VALUE_TUPLE:
    return "several values";
  case VALUE_MISSING:
    return "a missing config value";
  }
  return "a value";
}

static bool is_number(const value *v) {
  return v->kind == VALUE_INT || v->kind == VALUE_FLOAT;
}

static double as_double(const value *v) {
  return v->kind == VALUE_INT ? (double)v->as.i : v->as.f;
}

// An integer, or a float with an integral value in range.
static bool to_int(const value *v, int64_t *out) {
  if (v->kind == VALUE_INT) {
    *out = v->as.i;
    return true;
  }
  if (v->kind == VALUE_FLOAT && v->as.f == floor(v->as.f) && v->as.f >= -0x1p63 &&
      v->as.f < 0x1p63) {
    *out = (int64_t)v->as.f;
    return true;
  }
  return false;
}

// ---- frames and the expander ---------------------------------------------------------------

typedef struct binding binding;
struct binding {
  const char *name;
  value value;
  binding *next;
};

typedef struct frame frame;
struct frame {
  binding *bindings;
  const attn_ast *def; // the subgraph being expanded; NULL for the file and the graph body
  attn_loc call_loc;   // where `def` was called
  const char *prefix;  // the weight-name prefix in effect
  frame *caller;
};

typedef struct expander {
  attn_graph *graph;
  attn_diag *diag;
  attn_arena *scratch;
  const attn_config *config;
  const attn_ast *items;
  frame globals; // file-level lets
  frame *frame;  // innermost
  bool in_signature;
  uint64_t steps, max_steps;
  uint32_t max_nodes;
  uint32_t call_depth;
  uint32_t eval_depth; // the C recursion of eval and exec_body
  uint8_t *dim_depths; // depth of each entry of the graph's dim table seen so far
  size_t dim_depth_capacity;
  uint32_t dim_depth_count;
} expander;

enum {
  EVAL_ALLOW_MISSING = 1 << 0, // the left of '??': a missing config key is a value
  EVAL_DIM = 1 << 1,           // a dim: a name prefers the symbol over a tensor
};

// Adds a note for each subgraph call the expansion is inside, innermost first.
static void add_call_notes(expander *x) {
  for (const frame *f = x->frame; f && f->def; f = f->caller) {
    if (f->prefix && f->prefix[0] && (!f->caller || strcmp(f->prefix, f->caller->prefix) != 0))
      attn_diag_note(x->diag, f->call_loc, "in subgraph '%s' called here (weight prefix \"%s\")",
                     f->def->name, f->prefix);
    else
      attn_diag_note(x->diag, f->call_loc, "in subgraph '%s' called here", f->def->name);
  }
}

static attn_status verror(expander *x, attn_loc loc, attn_status status, const char *format,
                          va_list args) ATTN_PRINTF(4, 0);
static attn_status verror(expander *x, attn_loc loc, attn_status status, const char *format,
                          va_list args) {
  attn_diag_verror(x->diag, loc, status, format, args);
  add_call_notes(x);
  return status;
}

static attn_status error(expander *x, attn_loc loc, const char *format, ...) ATTN_PRINTF(3, 4);
static attn_status error(expander *x, attn_loc loc, const char *format, ...) {
  va_list args;
  va_start(args, format);
  attn_status status = verror(x, loc, ATTN_ERROR_PARSE, format, args);
  va_end(args);
  return status;
}

static attn_status out_of_memory(expander *x, attn_loc loc) {
  attn_diag_error(x->diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  return ATTN_ERROR_OUT_OF_MEMORY;
}

// Counts one unit of work and checks the limits on work and memory.
static attn_status step(expander *x, attn_loc loc) {
  if (++x->steps > x->max_steps)
    return error(x, loc,
                 "expanding the model takes more than %" PRIu64
                 " steps; is a repeat range too large?",
                 x->max_steps);
  if (x->scratch->total_bytes > MAX_ARENA_BYTES || x->graph->arena.total_bytes > MAX_ARENA_BYTES)
    return error(x, loc, "expanding the model needs more than %zu MiB of memory",
                 MAX_ARENA_BYTES >> 20);
  return ATTN_OK;
}

static void *scratch_alloc(expander *x, size_t count, size_t size) {
  return attn_arena_calloc(x->scratch, count ? count : 1, size);
}

static binding *find_binding(const frame *f, const char *name) {
  for (binding *b = f->bindings; b; b = b->next)
    if (strcmp(b->name, name) == 0)
      return b;
  return NULL;
}

static const value *lookup(const expander *x, const char *name) {
  const binding *b = find_binding(x->frame, name);
  if (!b && x->frame != &x->globals)
    b = find_binding(&x->globals, name);
  return b ? &b->value : NULL;
}

// Binds `name` in the innermost frame; a name bound there before is rebound.
static attn_status bind(expander *x, const char *name, const value *v, attn_loc loc) {
  binding *b = find_binding(x->frame, name);
  if (!b) {
    b = attn_arena_alloc(x->scratch, sizeof(*b), 16);
    if (!b)
      return out_of_memory(x, loc);
    b->name = name;
    b->next = x->frame->bindings;
    x->frame->bindings = b;
  }
  b->value = *v;
  return ATTN_OK;
}

static const attn_ast *find_def(const expander *x, const char *name) {
  for (const attn_ast *item = x->items; item; item = item->next)
    if (item->kind == ATTN_AST_DEF && strcmp(item->name, name) == 0)
      return item;
  return NULL;
}

// Records the depth of every dim-table entry added since the last call, so that no
// symbolic dim expression nests deeper than the recursive code that walks it can take.
static attn_status track_dims(expander *x, attn_loc loc) {
  attn_graph *g = x->graph;
  if (g->dim_count > MAX_DIM_EXPRS)
    return error(x, loc, "more than %d distinct symbolic dim expressions", MAX_DIM_EXPRS);
  void *depths = x->dim_depths;
  if (!attn_array_reserve(g->allocator, &depths, &x->dim_depth_capacity, g->dim_count,
                          sizeof(uint8_t)))
    return out_of_memory(x, loc);
  x->dim_depths = depths;
  for (; x->dim_depth_count < g->dim_count; x->dim_depth_count++) {
    const attn_dim_expr *e = &g->dims[x->dim_depth_count];
    unsigned depth = 0;
    if (e->kind != ATTN_DIM_SYMBOL) {
      attn_dim children[2] = {e->lhs, e->rhs};
      for (int c = 0; c < 2; c++) {
        uint64_t index =
            attn_dim_is_constant(children[c]) ? UINT64_MAX : (uint64_t)(-(children[c] + 1));
        unsigned child = index < x->dim_depth_count ? x->dim_depths[index] : 0;
        if (child + 1 > depth)
          depth = child + 1;
      }
    }
    if (depth > MAX_DIM_DEPTH)
      return error(x, loc, "a symbolic dim expression nests deeper than %d levels", MAX_DIM_DEPTH);
    x->dim_depths[x->dim_depth_count] = (uint8_t)depth;
  }
  return ATTN_OK;
}

// ---- names and suggestions -----------------------------------------------------------------

typedef enum builtin_fn {
  FN_SQRT,
  FN_EXP,
  FN_LOG,
  FN_MIN,
  FN_MAX,
  FN_POW,
  FN_INT,
  FN_FLOAT,
  FN_LEN,
  FN_COUNT
} builtin_fn;

static const char *const builtin_names[FN_COUNT] = {"sqrt", "exp", "log",   "min", "max",
                                                    "pow",  "int", "float", "len"};

static bool find_builtin(const char *name, builtin_fn *out) {
  for (int i = 0; i < FN_COUNT; i++)
    if (strcmp(builtin_names[i], name) == 0) {
      *out = (builtin_fn)i;
      return true;
    }
  return false;
}

// Levenshtein distance, capped: names longer than 63 bytes are never "close".
static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 63 || lb > 63)
    return SIZE_MAX;
  size_t row[64];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diagonal + (a[i - 1] != b[j - 1]);
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diagonal = up;
    }
  }
  return row[lb];
}

typedef struct suggestion {
  const char *name;
  size_t distance;
  size_t limit;
} suggestion;

static void consider(suggestion *s, const char *candidate, const char *name) {
  size_t d = edit_distance(candidate, name);
  if (d <= s->limit && d < s->distance) {
    s->distance = d;
    s->name = candidate;
  }
}

static suggestion new_suggestion(const char *name) {
  size_t length = strlen(name);
  // One- and two-letter names are all close to each other: no suggestion for those.
  return (suggestion){NULL, SIZE_MAX, length <= 2 ? 0 : length < 4 ? 1 : length / 3};
}

// The op, subgraph or function whose name is closest to `name`, or NULL.
static const char *closest_callable(const expander *x, const char *name) {
  suggestion s = new_suggestion(name);
  for (int op = 0; op < ATTN_OP_COUNT; op++)
    consider(&s, attn_op_get_info((attn_op)op)->name, name);
  for (int i = 0; i < FN_COUNT; i++)
    consider(&s, builtin_names[i], name);
  for (const attn_ast *item = x->items; item; item = item->next)
    if (item->kind == ATTN_AST_DEF)
      consider(&s, item->name, name);
  return s.name;
}

static const char *closest_binding(const expander *x, const char *name) {
  suggestion s = new_suggestion(name);
  for (const binding *b = x->frame->bindings; b; b = b->next)
    consider(&s, b->name, name);
  if (x->frame != &x->globals)
    for (const binding *b = x->globals.bindings; b; b = b->next)
      consider(&s, b->name, name);
  for (uint32_t i = 0; i < x->graph->symbol_count; i++)
    consider(&s, attn_graph_symbol_name(x->graph, i), name);
  return s.name;
}

// ---- evaluation ----------------------------------------------------------------------------

static attn_status eval(expander *x, const attn_ast *e, unsigned flags, value *out);

static attn_status symbol_dim(expander *x, const char *name, attn_loc loc, attn_dim *out) {
  attn_status status = attn_graph_dim_symbol(x->graph, name, strlen(name), out);
  if (status != ATTN_OK)
    return out_of_memory(x, loc);
  return track_dims(x, loc);
}

// name: a binding, then inf/nan, then a symbolic dim (created only in the graph signature).
static attn_status eval_name(expander *x, const attn_ast *e, unsigned flags, value *out) {
  const value *v = lookup(x, e->name);
  uint32_t symbol;
  bool has_symbol = attn_graph_find_symbol(x->graph, e->name, &symbol);
  if (v && !(v->kind == VALUE_TENSOR && (flags & EVAL_DIM) && has_symbol)) {
    *out = *v;
    return ATTN_OK;
  }
  if (strcmp(e->name, "inf") == 0 || strcmp(e->name, "nan") == 0) {
    *out = (value){.kind = VALUE_FLOAT, .as.f = e->name[0] == 'i' ? (double)INFINITY : (double)NAN};
    return ATTN_OK;
  }
  if (has_symbol || (x->in_signature && (flags & EVAL_DIM))) {
    out->kind = VALUE_DIM;
    return symbol_dim(x, e->name, e->loc, &out->as.dim);
  }
  attn_op op;
  builtin_fn fn;
  if (find_def(x, e->name) || attn_op_from_name(e->name, strlen(e->name), &op) ||
      find_builtin(e->name, &fn))
    return error(x, e->loc, "'%s' is %s; call it: %s(...)", e->name,
                 find_def(x, e->name) ? "a subgraph" : "an op or function", e->name);
  const char *close = closest_binding(x, e->name);
  if (close)
    return error(x, e->loc, "unknown name '%s'; did you mean '%s'?", e->name, close);
  return error(x, e->loc, "unknown name '%s'", e->name);
}

static attn_status eval_config(expander *x, const attn_ast *e, unsigned flags, value *out) {
  attn_config_value cv = {.kind = ATTN_CONFIG_MISSING};
  if (x->config)
    cv = attn_config_get(x->config, e->name);
  switch (cv.kind) {
  case ATTN_CONFIG_NUMBER:
    if (cv.is_integer && cv.number >= -0x1p63 && cv.number < 0x1p63)
      *out = (value){.kind = VALUE_INT, .as.i = (int64_t)cv.number};
    else
      *out = (value){.kind = VALUE_FLOAT, .as.f = cv.number};
    return ATTN_OK;
  case ATTN_CONFIG_BOOL:
    *out = (value){.kind = VALUE_BOOL, .as.b = cv.number != 0};
    return ATTN_OK;
  case ATTN_CONFIG_STRING:
    out->kind = VALUE_STRING;
    out->as.string.text = cv.string;
    out->as.string.length = (uint32_t)strnlen(cv.string, MAX_STRING_BYTES);
    return ATTN_OK;
  case ATTN_CONFIG_OTHER:
    return error(x, e->loc, "config key '%s' in %s is an array or an object, not a value", e->name,
                 attn_config_name(x->config));
  case ATTN_CONFIG_MISSING:
  case ATTN_CONFIG_NULL:
    break;
  }
  if (flags & EVAL_ALLOW_MISSING) {
    out->kind = VALUE_MISSING;
    return ATTN_OK;
  }
  if (!x->config)
    return error(x, e->loc, "undefined config key '%s': no config.json was given", e->name);
  return error(x, e->loc, "%s config key '%s' in %s (give a fallback with '?\?')",
               cv.kind == ATTN_CONFIG_NULL ? "null" : "undefined", e->name,
               attn_config_name(x->config));
}

// Replaces {name} in a string literal by the name's value (an integer or a string); "{{"
// and "}}" stand for braces.
static attn_status interpolate(expander *x, const attn_ast *e, value *out) {
  const char *text = e->text;
  uint32_t length = e->text_length;
  if (!memchr(text, '{', length) && !memchr(text, '}', length)) {
    *out = (value){.kind = VALUE_STRING, .as.string = {text, length}};
    return ATTN_OK;
  }
  // Two passes: measure, then write.
  char *buffer = NULL;
  size_t used = 0;
  for (int pass = 0; pass < 2; pass++) {
    used = 0;
    for (uint32_t i = 0; i < length;) {
      char c = text[i];
      const char *piece = &text[i];
      size_t piece_length = 1;
      char number[24];
      if ((c == '{' || c == '}') && i + 1 < length && text[i + 1] == c) {
        i += 2;
      } else if (c == '}') {
        return error(x, e->loc, "unmatched '}' in a string; write '}}' for a brace");
      } else if (c == '{') {
        const char *close = memchr(text + i, '}', length - i);
        if (!close)
          return error(x, e->loc, "unmatched '{' in a string; write '{{' for a brace");
        char name[128];
        size_t name_length = (size_t)(close - (text + i) - 1);
        if (name_length == 0 || name_length >= sizeof(name))
          return error(x, e->loc, "'{...}' in a string must hold a name");
        memcpy(name, text + i + 1, name_length);
        name[name_length] = '\0';
        const value *v = lookup(x, name);
        if (!v)
          return error(x, e->loc, "unknown name '%s' in the string", name);
        if (v->kind == VALUE_INT) {
          piece_length = (size_t)snprintf(number, sizeof(number), "%" PRId64, v->as.i);
          piece = number;
        } else if (v->kind == VALUE_STRING) {
          piece = v->as.string.text;
          piece_length = v->as.string.length;
        } else {
          return error(x, e->loc, "'{%s}' in a string needs an integer or a string, got %s", name,
                       describe(v));
        }
        i += (uint32_t)name_length + 2;
      } else {
        i++;
      }
      if (pass == 1)
        memcpy(buffer + used, piece, piece_length);
      used += piece_length;
      if (used > MAX_STRING_BYTES && used > length)
        return error(x, e->loc, "the string grows longer than %d bytes", MAX_STRING_BYTES);
    }
    if (pass == 0 && !(buffer = attn_arena_alloc(x->scratch, used + 1, 1)))
      return out_of_memory(x, e->loc);
  }
  buffer[used] = '\0';
  *out = (value){.kind = VALUE_STRING, .as.string = {buffer, (uint32_t)used}};
  return ATTN_OK;
}

static attn_status eval_neg(expander *x, const attn_ast *e, value *out) {
  value v;
  ATTN_RETURN_IF_ERROR(eval(x, e->lhs, 0, &v));
  if (v.kind == VALUE_INT) {
    if (v.as.i == INT64_MIN)
      return error(x, e->loc, "integer overflow in '-'");
    *out = (value){.kind = VALUE_INT, .as.i = -v.as.i};
    return ATTN_OK;
  }
  if (v.kind == VALUE_FLOAT) {
    *out = (value){.kind = VALUE_FLOAT, .as.f = -v.as.f};
    return ATTN_OK;
  }
  if (v.kind == VALUE_TENSOR)
    return error(x, e->loc, "'-' needs a compile-time number; for a tensor use neg(...)");
  return error(x, e->loc, "'-' needs a number, got %s", describe(&v));
}

static attn_status dim_arith(expander *x, const attn_ast *e, const value *a, const value *b,
                             value *out) {
  static const attn_dim_kind kinds[] = {
      [ATTN_AST_ADD] = ATTN_DIM_ADD,
      [ATTN_AST_SUB] = ATTN_DIM_SUB,
      [ATTN_AST_MUL] = ATTN_DIM_MUL,
      [ATTN_AST_DIV] = ATTN_DIM_DIV,
  };
  const value *operands[2] = {a, b};
  attn_dim dims[2];
  for (int i = 0; i < 2; i++) {
    const value *v = operands[i];
    if (v->kind == VALUE_DIM)
      dims[i] = v->as.dim;
    else if (v->kind == VALUE_INT && v->as.i >= 0)
      dims[i] = v->as.i;
    else if (v->kind == VALUE_INT)
      return error(x, e->loc, "symbolic dim arithmetic needs non-negative integers, got %" PRId64,
                   v->as.i);
    else
      return error(x, e->loc, "'%s' cannot combine a symbolic dim with %s", attn_ast_op_text(e->op),
                   describe(v));
  }
  if (e->op == ATTN_AST_EQ || e->op == ATTN_AST_NE) {
    *out = (value){.kind = VALUE_BOOL, .as.b = (dims[0] == dims[1]) == (e->op == ATTN_AST_EQ)};
    return ATTN_OK;
  }
  if (e->op > ATTN_AST_DIV)
    return error(x, e->loc, "'%s' does not apply to symbolic dims (they take + - * /)",
                 attn_ast_op_text(e->op));
  if (e->op == ATTN_AST_DIV && dims[1] == 0)
    return error(x, e->loc, "division by zero");
  attn_dim result;
  if (attn_graph_dim_binary(x->graph, kinds[e->op], dims[0], dims[1], &result) != ATTN_OK)
    return out_of_memory(x, e->loc);
  ATTN_RETURN_IF_ERROR(track_dims(x, e->loc));
  if (attn_dim_is_constant(result))
    *out = (value){.kind = VALUE_INT, .as.i = result};
  else
    *out = (value){.kind = VALUE_DIM, .as.dim = result};
  return ATTN_OK;
}

static bool compare_doubles(attn_ast_op op, double a, double b) {
  switch (op) {
  case ATTN_AST_LT:
    return a < b;
  case ATTN_AST_LE:
    return a <= b;
  case ATTN_AST_GT:
    return a > b;
  case ATTN_AST_GE:
    return a >= b;
  case ATTN_AST_EQ:
    return a == b;
  default:
    return a != b;
  }
}

static attn_status int_arith(expander *x, const attn_ast *e, int64_t a, int64_t b, value *out) {
  int64_t r = 0;
  bool overflow = false;
  switch (e->op) {
  case ATTN_AST_ADD:
    overflow = __builtin_add_overflow(a, b, &r);
    break;
  case ATTN_AST_SUB:
    overflow = __builtin_sub_overflow(a, b, &r);
    break;
  case ATTN_AST_MUL:
    overflow = __builtin_mul_overflow(a, b, &r);
    break;
  case ATTN_AST_DIV:
  case ATTN_AST_MOD:
    if (b == 0)
      return error(x, e->loc, "division by zero");
    if (a == INT64_MIN && b == -1) {
      overflow = e->op == ATTN_AST_DIV;
      break;
    }
    if (e->op == ATTN_AST_MOD) {
      r = a % b;
    } else if (a % b == 0) {
      r = a / b;
    } else {
      *out = (value){.kind = VALUE_FLOAT, .as.f = (double)a / (double)b};
      return ATTN_OK;
    }
    break;
  case ATTN_AST_LT:
    *out = (value){.kind = VALUE_BOOL, .as.b = a < b};
    return ATTN_OK;
  case ATTN_AST_LE:
    *out = (value){.kind = VALUE_BOOL, .as.b = a <= b};
    return ATTN_OK;
  case ATTN_AST_GT:
    *out = (value){.kind = VALUE_BOOL, .as.b = a > b};
    return ATTN_OK;
  case ATTN_AST_GE:
    *out = (value){.kind = VALUE_BOOL, .as.b = a >= b};
    return ATTN_OK;
  case ATTN_AST_EQ:
    *out = (value){.kind = VALUE_BOOL, .as.b = a == b};
    return ATTN_OK;
  case ATTN_AST_NE:
    *out = (value){.kind = VALUE_BOOL, .as.b = a != b};
    return ATTN_OK;
  }
  if (overflow)
    return error(x, e->loc, "integer overflow in '%s'", attn_ast_op_text(e->op));
  *out = (value){.kind = VALUE_INT, .as.i = r};
  return ATTN_OK;
}

static attn_status eval_binary(expander *x, const attn_ast *e, unsigned flags, value *out) {
  static const char *const tensor_ops[] = {"add", "sub", "mul", "div", "?", "lt",
                                           "le",  "gt",  "ge",  "eq",  "ne"};
  value a, b;
  ATTN_RETURN_IF_ERROR(eval(x, e->lhs, flags & EVAL_DIM, &a));
  ATTN_RETURN_IF_ERROR(eval(x, e->rhs, flags & EVAL_DIM, &b));
  if (a.kind == VALUE_INT && b.kind == VALUE_INT)
    return int_arith(x, e, a.as.i, b.as.i, out);
  if ((a.kind == VALUE_DIM || b.kind == VALUE_DIM) &&
      (a.kind == VALUE_DIM || a.kind == VALUE_INT) && (b.kind == VALUE_DIM || b.kind == VALUE_INT))
    return dim_arith(x, e, &a, &b, out);
  if (is_number(&a) && is_number(&b)) {
    double p = as_double(&a), q = as_double(&b), r;
    switch (e->op) {
    case ATTN_AST_ADD:
      r = p + q;
      break;
    case ATTN_AST_SUB:
      r = p - q;
      break;
    case ATTN_AST_MUL:
      r = p * q;
      break;
    case ATTN_AST_DIV:
      if (q == 0)
        return error(x, e->loc, "division by zero");
      r = p / q;
      break;
    case ATTN_AST_MOD:
      return error(x, e->loc, "'%%' needs integers");
    default:
      *out = (value){.kind = VALUE_BOOL, .as.b = compare_doubles(e->op, p, q)};
      return ATTN_OK;
    }
    if (!isfinite(r) && isfinite(p) && isfinite(q))
      return error(x, e->loc, "float overflow in '%s'", attn_ast_op_text(e->op));
    *out = (value){.kind = VALUE_FLOAT, .as.f = r};
    return ATTN_OK;
  }
  if ((e->op == ATTN_AST_EQ || e->op == ATTN_AST_NE) && a.kind == b.kind &&
      (a.kind == VALUE_STRING || a.kind == VALUE_BOOL)) {
    bool same = a.kind == VALUE_BOOL
                    ? a.as.b == b.as.b
                    : a.as.string.length == b.as.string.length &&
                          memcmp(a.as.string.text, b.as.string.text, a.as.string.length) == 0;
    *out = (value){.kind = VALUE_BOOL, .as.b = same == (e->op == ATTN_AST_EQ)};
    return ATTN_OK;
  }
  if (a.kind == VALUE_TENSOR || b.kind == VALUE_TENSOR)
    return error(x, e->loc, "'%s' works on compile-time values; for tensors call the op: %s(a, b)",
                 attn_ast_op_text(e->op), tensor_ops[e->op]);
  return error(x, e->loc, "'%s' does not apply to %s and %s", attn_ast_op_text(e->op), describe(&a),
               describe(&b));
}

// A list item: a number, a bool, a string or a dim.
static attn_status eval_list(expander *x, const attn_ast *e, unsigned flags, value *out) {
  if (e->arg_count > MAX_LIST_ITEMS)
    return error(x, e->loc, "a list holds at most %d items", MAX_LIST_ITEMS);
  value *items = scratch_alloc(x, e->arg_count, sizeof(value));
  if (!items)
    return out_of_memory(x, e->loc);
  uint32_t i = 0;
  for (const attn_ast *a = e->args; a; a = a->next, i++) {
    ATTN_RETURN_IF_ERROR(eval(x, a, flags & EVAL_DIM, &items[i]));
    value_kind k = items[i].kind;
    if (k != VALUE_INT && k != VALUE_FLOAT && k != VALUE_BOOL && k != VALUE_STRING &&
        k != VALUE_DIM)
      return error(x, a->loc, "a list holds numbers, bools, strings or dims; this is %s",
                   describe(&items[i]));
  }
  *out = (value){.kind = VALUE_LIST, .as.list = {items, e->arg_count}};
  return ATTN_OK;
}

// A dim of a type or a dims attribute: a non-negative integer or a symbolic dim. With
// `allow_infer`, -1 stands for ATTN_DIM_INFER.
static attn_status to_dim(expander *x, const attn_ast *e, const value *v, bool allow_infer,
                          attn_dim *out) {
  int64_t i;
  if (v->kind == VALUE_DIM) {
    *out = v->as.dim;
    return ATTN_OK;
  }
  if (to_int(v, &i) && i >= 0) {
    *out = i;
    return ATTN_OK;
  }
  if (to_int(v, &i) && i == -1 && allow_infer) {
    *out = ATTN_DIM_INFER;
    return ATTN_OK;
  }
  if (to_int(v, &i))
    return error(x, e->loc, "a dim must be ≥ 0%s, got %" PRId64,
                 allow_infer ? " (or -1 to infer it)" : "", i);
  return error(x, e->loc, "a dim must be an integer or a symbolic dim, got %s", describe(v));
}

static attn_status eval_type(expander *x, const attn_ast *e, value *out) {
  attn_type *type = attn_arena_calloc(x->scratch, 1, sizeof(*type));
  if (!type)
    return out_of_memory(x, e->loc);
  type->dtype = e->dtype;
  for (const attn_ast *a = e->args; a; a = a->next) {
    value v;
    ATTN_RETURN_IF_ERROR(eval(x, a, EVAL_DIM, &v));
    ATTN_RETURN_IF_ERROR(to_dim(x, a, &v, false, &type->dims[type->rank++]));
  }
  *out = (value){.kind = VALUE_TYPE, .as.type = type};
  return ATTN_OK;
}

static attn_status eval_alt(expander *x, const attn_ast *e, value *out) {
  value sides[2];
  ATTN_RETURN_IF_ERROR(eval(x, e->lhs, 0, &sides[0]));
  ATTN_RETURN_IF_ERROR(eval(x, e->rhs, 0, &sides[1]));
  uint32_t count = 0;
  for (int s = 0; s < 2; s++) {
    if (sides[s].kind == VALUE_STRING)
      count++;
    else if (sides[s].kind == VALUE_NAMES)
      count += sides[s].as.list.count;
    else
      return error(x, s ? e->rhs->loc : e->lhs->loc,
                   "'|' joins alternative weight names (strings), got %s", describe(&sides[s]));
  }
  value *items = scratch_alloc(x, count, sizeof(value));
  if (!items)
    return out_of_memory(x, e->loc);
  uint32_t n = 0;
  for (int s = 0; s < 2; s++) {
    if (sides[s].kind == VALUE_STRING)
      items[n++] = sides[s];
    else
      for (uint32_t i = 0; i < sides[s].as.list.count; i++)
        items[n++] = sides[s].as.list.items[i];
  }
  *out = (value){.kind = VALUE_NAMES, .as.list = {items, count}};
  return ATTN_OK;
}

static attn_status eval_call(expander *x, const attn_ast *e, value *out);

static attn_status eval_node(expander *x, const attn_ast *e, unsigned flags, value *out) {
  switch (e->kind) {
  case ATTN_AST_INT:
    *out = (value){.kind = VALUE_INT, .as.i = e->int_value};
    return ATTN_OK;
  case ATTN_AST_FLOAT:
    *out = (value){.kind = VALUE_FLOAT, .as.f = e->float_value};
    return ATTN_OK;
  case ATTN_AST_BOOL:
    *out = (value){.kind = VALUE_BOOL, .as.b = e->int_value != 0};
    return ATTN_OK;
  case ATTN_AST_STRING:
    return interpolate(x, e, out);
  case ATTN_AST_NAME:
    return eval_name(x, e, flags, out);
  case ATTN_AST_CONFIG:
    return eval_config(x, e, flags, out);
  case ATTN_AST_NEG:
    return eval_neg(x, e, out);
  case ATTN_AST_BINARY:
    return eval_binary(x, e, flags, out);
  case ATTN_AST_COALESCE:
    ATTN_RETURN_IF_ERROR(eval(x, e->lhs, (flags & EVAL_DIM) | EVAL_ALLOW_MISSING, out));
    if (out->kind == VALUE_MISSING)
      return eval(x, e->rhs, flags, out);
    return ATTN_OK;
  case ATTN_AST_SELECT: {
    value cond;
    ATTN_RETURN_IF_ERROR(eval(x, e->cond, 0, &cond));
    if (cond.kind != VALUE_BOOL)
      return error(x, e->cond->loc, "the condition of '? :' must be a bool, got %s",
                   describe(&cond));
    return eval(x, cond.as.b ? e->lhs : e->rhs, flags, out);
  }
  case ATTN_AST_ALT:
    return eval_alt(x, e, out);
  case ATTN_AST_LIST:
    return eval_list(x, e, flags, out);
  case ATTN_AST_TYPE:
    return eval_type(x, e, out);
  case ATTN_AST_CALL:
    return eval_call(x, e, out);
  case ATTN_AST_INDEX:
    return error(x, e->loc, "indexing '%s[...]' is only possible inside a score_mod block",
                 e->name);
  case ATTN_AST_BLOCK:
    return error(x, e->loc, "a '{ ... }' expression is only possible as attention's score_mod");
  default:
    return error(x, e->loc, "expected an expression");
  }
}

// Each subgraph body is limited to the parser's nesting, but calls stack them, so the
// recursion of eval and exec_body is bounded as a whole.
static attn_status enter(expander *x, attn_loc loc) {
  ATTN_RETURN_IF_ERROR(step(x, loc));
  if (x->eval_depth >= MAX_EVAL_DEPTH)
    return error(x, loc, "expressions and blocks nest deeper than %d levels across subgraph calls",
                 MAX_EVAL_DEPTH);
  x->eval_depth++;
  return ATTN_OK;
}

static attn_status eval(expander *x, const attn_ast *e, unsigned flags, value *out) {
  ATTN_RETURN_IF_ERROR(enter(x, e->loc));
  attn_status status = eval_node(x, e, flags, out);
  x->eval_depth--;
  return status;
}

// ---- compile-time functions ----------------------------------------------------------------

// len(config.KEY): the number of elements of a config array or members of an object (a
// classifier's labels are counted as len(config.id2label)), or of characters of a string.
static attn_status config_length(expander *x, const attn_ast *e, value *out) {
  const attn_ast *key = e->args;
  attn_config_value whole = {.kind = ATTN_CONFIG_MISSING};
  if (x->config)
    whole = attn_config_get(x->config, key->name);
  if (whole.kind == ATTN_CONFIG_OTHER) {
    *out = (value){.kind = VALUE_INT, .as.i = (int64_t)whole.count};
    return ATTN_OK;
  }
  if (whole.kind == ATTN_CONFIG_STRING) {
    *out = (value){.kind = VALUE_INT, .as.i = (int64_t)strlen(whole.string)};
    return ATTN_OK;
  }
  if (whole.kind != ATTN_CONFIG_MISSING && whole.kind != ATTN_CONFIG_NULL)
    return error(x, key->loc, "len() needs a config array, object or string; '%s' in %s is %s",
                 key->name, attn_config_name(x->config),
                 whole.kind == ATTN_CONFIG_BOOL ? "a bool" : "a number");
  return eval_config(x, key, 0, out); // reports the missing key
}

static attn_status int_pow(expander *x, const attn_ast *e, int64_t base, int64_t exponent,
                           value *out) {
  int64_t result = 1;
  while (exponent > 0) {
    if ((exponent & 1) && __builtin_mul_overflow(result, base, &result))
      return error(x, e->loc, "integer overflow in pow()");
    exponent >>= 1;
    if (exponent && __builtin_mul_overflow(base, base, &base))
      return error(x, e->loc, "integer overflow in pow()");
  }
  *out = (value){.kind = VALUE_INT, .as.i = result};
  return ATTN_OK;
}

static attn_status call_builtin(expander *x, const attn_ast *e, builtin_fn fn, const value *args,
                                value *out) {
  const char *name = builtin_names[fn];
  uint32_t n = e->arg_count;
  if (e->kwargs)
    return error(x, e->kwargs->loc, "%s() takes no keyword arguments", name);
  bool variadic = fn == FN_MIN || fn == FN_MAX;
  uint32_t want = fn == FN_POW ? 2 : 1;
  if (variadic ? n < 2 : n != want)
    return error(x, e->loc, "%s() takes %s%u argument%s, got %u", name, variadic ? "at least " : "",
                 variadic ? 2 : want, want == 1 && !variadic ? "" : "s", n);
  if (fn == FN_LEN) {
    if (args[0].kind == VALUE_LIST || args[0].kind == VALUE_NAMES)
      *out = (value){.kind = VALUE_INT, .as.i = args[0].as.list.count};
    else if (args[0].kind == VALUE_STRING)
      *out = (value){.kind = VALUE_INT, .as.i = args[0].as.string.length};
    else
      return error(x, e->args->loc, "len() needs a list, a string or a config array, got %s",
                   describe(&args[0]));
    return ATTN_OK;
  }
  if (fn == FN_INT && args[0].kind == VALUE_BOOL) {
    *out = (value){.kind = VALUE_INT, .as.i = args[0].as.b};
    return ATTN_OK;
  }
  const attn_ast *a = e->args;
  for (uint32_t i = 0; i < n; i++, a = a->next)
    if (!is_number(&args[i]))
      return error(x, a->loc, "%s() needs numbers, got %s", name, describe(&args[i]));
  bool all_int = true;
  for (uint32_t i = 0; i < n; i++)
    all_int = all_int && args[i].kind == VALUE_INT;
  double v = as_double(&args[0]), r = 0;
  switch (fn) {
  case FN_SQRT:
    r = sqrt(v);
    break;
  case FN_EXP:
    r = exp(v);
    break;
  case FN_LOG:
    r = log(v);
    break;
  case FN_MIN:
  case FN_MAX: {
    value best = args[0];
    for (uint32_t i = 1; i < n; i++) {
      bool less = all_int ? args[i].as.i < best.as.i : as_double(&args[i]) < as_double(&best);
      bool more = all_int ? args[i].as.i > best.as.i : as_double(&args[i]) > as_double(&best);
      if (fn == FN_MIN ? less : more)
        best = args[i];
    }
    if (!all_int)
      best = (value){.kind = VALUE_FLOAT, .as.f = as_double(&best)};
    *out = best;
    return ATTN_OK;
  }
  case FN_POW:
    if (all_int && args[1].as.i >= 0)
      return int_pow(x, e, args[0].as.i, args[1].as.i, out);
    r = pow(v, as_double(&args[1]));
    break;
  case FN_INT: {
    if (args[0].kind == VALUE_INT) {
      *out = args[0];
      return ATTN_OK;
    }
    double t = trunc(v);
    if (!(t >= -0x1p63 && t < 0x1p63))
      return error(x, e->loc, "int(%g) is out of range", v);
    *out = (value){.kind = VALUE_INT, .as.i = (int64_t)t};
    return ATTN_OK;
  }
  case FN_FLOAT:
    r = v;
    break;
  case FN_LEN:
  case FN_COUNT:
    break;
  }
  if (!isfinite(r) && isfinite(v))
    return error(x, e->loc, "%s() of this argument is not a finite number", name);
  *out = (value){.kind = VALUE_FLOAT, .as.f = r};
  return ATTN_OK;
}

// ---- statements ----------------------------------------------------------------------------

static attn_status exec_body(expander *x, const attn_ast *stmts, value *out_return);

// Gives a tensor the name it is first bound to, as a hint for printing.
static attn_status name_tensor(expander *x, const value *v, const char *name, attn_loc loc) {
  if (v->kind != VALUE_TENSOR)
    return ATTN_OK;
  attn_value *target = attn_graph_value(x->graph, v->as.tensor);
  if (target->name)
    return ATTN_OK;
  target->name = attn_graph_strdup(x->graph, name, strlen(name));
  return target->name ? ATTN_OK : out_of_memory(x, loc);
}

static const char *count_text(uint32_t count, char *buffer, size_t size) {
  snprintf(buffer, size, "%u value%s", count, count == 1 ? "" : "s");
  return buffer;
}

static attn_status exec_assign(expander *x, const attn_ast *s) {
  value v;
  ATTN_RETURN_IF_ERROR(eval(x, s->lhs, 0, &v));
  uint32_t have = v.kind == VALUE_TUPLE ? v.as.list.count : 1;
  if (have != s->arg_count) {
    char text[32];
    return error(x, s->lhs->loc, "the right of '=' gives %s but the left names %u",
                 count_text(have, text, sizeof(text)), s->arg_count);
  }
  const attn_ast *name = s->args;
  for (uint32_t i = 0; i < s->arg_count; i++, name = name->next) {
    const value *item = v.kind == VALUE_TUPLE ? &v.as.list.items[i] : &v;
    ATTN_RETURN_IF_ERROR(name_tensor(x, item, name->name, name->loc));
    ATTN_RETURN_IF_ERROR(bind(x, name->name, item, name->loc));
  }
  return ATTN_OK;
}

static attn_status exec_repeat(expander *x, const attn_ast *s) {
  value lo, hi;
  int64_t first, end;
  ATTN_RETURN_IF_ERROR(eval(x, s->lhs, 0, &lo));
  if (!to_int(&lo, &first))
    return error(x, s->lhs->loc, "a repeat range needs integers, got %s", describe(&lo));
  ATTN_RETURN_IF_ERROR(eval(x, s->rhs, 0, &hi));
  if (!to_int(&hi, &end))
    return error(x, s->rhs->loc, "a repeat range needs integers, got %s", describe(&hi));
  for (int64_t i = first; i < end; i++) {
    value index = {.kind = VALUE_INT, .as.i = i};
    ATTN_RETURN_IF_ERROR(step(x, s->loc));
    ATTN_RETURN_IF_ERROR(bind(x, s->name, &index, s->loc));
    ATTN_RETURN_IF_ERROR(exec_body(x, s->body, NULL));
  }
  return ATTN_OK;
}

static attn_status exec_return(expander *x, const attn_ast *s, value *out) {
  if (s->arg_count == 1)
    return eval(x, s->args, 0, out);
  value *items = scratch_alloc(x, s->arg_count, sizeof(value));
  if (!items)
    return out_of_memory(x, s->loc);
  uint32_t i = 0;
  for (const attn_ast *a = s->args; a; a = a->next, i++) {
    ATTN_RETURN_IF_ERROR(eval(x, a, 0, &items[i]));
    if (items[i].kind == VALUE_TUPLE)
      return error(x, a->loc, "each value in a return list must be a single value, not %u",
                   items[i].as.list.count);
  }
  *out = (value){.kind = VALUE_TUPLE, .as.list = {items, s->arg_count}};
  return ATTN_OK;
}

static attn_status exec_let(expander *x, const attn_ast *s) {
  value v;
  ATTN_RETURN_IF_ERROR(eval(x, s->lhs, 0, &v));
  if (v.kind == VALUE_TENSOR || v.kind == VALUE_TUPLE)
    return error(x, s->lhs->loc,
                 "'let' binds compile-time values, and this is %s (write %s = ... for tensors)",
                 describe(&v), s->name);
  return bind(x, s->name, &v, s->loc);
}

static attn_status exec_stmts(expander *x, const attn_ast *stmts, value *out_return) {
  for (const attn_ast *s = stmts; s; s = s->next) {
    ATTN_RETURN_IF_ERROR(step(x, s->loc));
    switch (s->kind) {
    case ATTN_AST_LET:
      ATTN_RETURN_IF_ERROR(exec_let(x, s));
      break;
    case ATTN_AST_ASSIGN:
      ATTN_RETURN_IF_ERROR(exec_assign(x, s));
      break;
    case ATTN_AST_REPEAT:
      ATTN_RETURN_IF_ERROR(exec_repeat(x, s));
      break;
    case ATTN_AST_RETURN:
      return exec_return(x, s, out_return);
    default:
      return error(x, s->loc, "expected a statement");
    }
  }
  return ATTN_OK;
}

// Runs statements in order; the body's `return` (its last statement) gives *out_return.
static attn_status exec_body(expander *x, const attn_ast *stmts, value *out_return) {
  if (!stmts)
    return ATTN_OK;
  ATTN_RETURN_IF_ERROR(enter(x, stmts->loc));
  attn_status status = exec_stmts(x, stmts, out_return);
  x->eval_depth--;
  return status;
}

// ---- subgraph calls ------------------------------------------------------------------------

static attn_status call_def(expander *x, const attn_ast *e, const attn_ast *def, value *out) {
  for (const frame *f = x->frame; f; f = f->caller) {
    if (f->def != def)
      continue;
    if (x->frame->def == def)
      return error(x, e->loc, "subgraph '%s' calls itself; recursion is not allowed", def->name);
    return error(x, e->loc, "recursive call: subgraph '%s' calls '%s', which is still expanding",
                 x->frame->def->name, def->name);
  }
  if (x->call_depth >= MAX_CALL_DEPTH)
    return error(x, e->loc, "subgraph calls nest deeper than %d", MAX_CALL_DEPTH);
  if (e->kwargs)
    return error(x, e->kwargs->loc, "subgraph '%s' takes no keyword arguments (got '%s')",
                 def->name, e->kwargs->name);
  if (e->arg_count != def->arg_count)
    return error(x, e->loc, "subgraph '%s' takes %u argument%s, got %u", def->name, def->arg_count,
                 def->arg_count == 1 ? "" : "s", e->arg_count);

  frame callee = {NULL, def, e->loc, x->frame->prefix, x->frame};
  const attn_ast *arg = e->args;
  for (const attn_ast *param = def->args; param; param = param->next, arg = arg->next) {
    value v;
    ATTN_RETURN_IF_ERROR(eval(x, arg, 0, &v));
    if (v.kind == VALUE_TUPLE)
      return error(x, arg->loc, "an argument must be a single value, got %u", v.as.list.count);
    binding *b = attn_arena_alloc(x->scratch, sizeof(*b), 16);
    if (!b)
      return out_of_memory(x, arg->loc);
    *b = (binding){param->name, v, callee.bindings};
    callee.bindings = b;
  }
  if (e->prefix) {
    value prefix;
    ATTN_RETURN_IF_ERROR(eval(x, e->prefix, 0, &prefix));
    if (prefix.kind != VALUE_STRING)
      return error(x, e->prefix->loc, "a weight-name prefix must be a string, got %s",
                   describe(&prefix));
    size_t outer = strlen(callee.prefix), length = outer + prefix.as.string.length;
    if (length > MAX_STRING_BYTES)
      return error(x, e->prefix->loc, "the weight-name prefix grows longer than %d bytes",
                   MAX_STRING_BYTES);
    char *joined = attn_arena_alloc(x->scratch, length + 1, 1);
    if (!joined)
      return out_of_memory(x, e->loc);
    memcpy(joined, callee.prefix, outer);
    memcpy(joined + outer, prefix.as.string.text, prefix.as.string.length);
    joined[length] = '\0';
    callee.prefix = joined;
  }
  x->frame = &callee;
  x->call_depth++;
  attn_status status = exec_body(x, def->body, out);
  x->call_depth--;
  x->frame = callee.caller;
  return status;
}

// ---- op calls ------------------------------------------------------------------------------

// One op call being built: the attribute struct, which fields were given, and the tensors a
// score_mod captured.
typedef struct op_call {
  const attn_ast *call;
  attn_op op;
  const attn_op_info *info;
  const attn_attrs_info *attrs_info;
  void *attrs;
  bool is_set[MAX_FIELDS];
  const attn_ast *data; // the DATA field's expression, converted once the type is known
  attn_value_id captures[MAX_CAPTURES];
  uint32_t capture_count;
} op_call;

static const char *field_type_text(const attn_field_info *field) {
  switch (field->type) {
  case ATTN_FIELD_BOOL:
    return "a bool";
  case ATTN_FIELD_INT:
    return "an integer";
  case ATTN_FIELD_FLOAT:
    return "a number";
  case ATTN_FIELD_DTYPE:
    return "a dtype (f32, f16, bf16, i64, i32, i8, bool)";
  case ATTN_FIELD_ENUM:
    return "one of its values";
  case ATTN_FIELD_DIM:
    return "a dim";
  case ATTN_FIELD_INTS:
    return "a list of integers";
  case ATTN_FIELD_DIMS:
    return "a list of dims";
  case ATTN_FIELD_STRINGS:
    return "a string or alternatives \"a\" | \"b\"";
  case ATTN_FIELD_TYPE:
    return "a tensor type such as f32[B, T]";
  case ATTN_FIELD_DATA:
    return "a number or a list of numbers";
  case ATTN_FIELD_EXPR:
    return "a '{ ... }' expression";
  }
  return "a value";
}

static attn_status field_error(expander *x, const op_call *c, const attn_field_info *field,
                               const attn_ast *e, const value *got) {
  return error(x, e->loc, "'%s' of %s needs %s, got %s", field->name, c->info->name,
               field_type_text(field), describe(got));
}

static attn_status enum_error(expander *x, const op_call *c, const attn_field_info *field,
                              const attn_ast *e, const char *word) {
  char valid[256];
  size_t used = 0;
  valid[0] = '\0';
  for (const char *const *n = field->enum_names; *n && used < sizeof(valid); n++)
    used += (size_t)snprintf(valid + used, sizeof(valid) - used, "%s%s",
                             n == field->enum_names ? "" : ", ", *n);
  return error(x, e->loc, "unknown value '%s' for '%s' of %s; valid: %s", word, field->name,
               c->info->name, valid);
}

// An ENUM or DTYPE field: a bare word, or an expression giving a string.
static attn_status set_word_field(expander *x, op_call *c, const attn_field_info *field,
                                  const attn_ast *e, void *slot) {
  const char *word = NULL;
  char buffer[64];
  attn_dtype dtype;
  bool is_word = false;
  if (e->kind == ATTN_AST_NAME && field->type == ATTN_FIELD_DTYPE)
    is_word = attn_dtype_from_name(e->name, strlen(e->name), &dtype);
  for (int i = 0;
       e->kind == ATTN_AST_NAME && field->type == ATTN_FIELD_ENUM && field->enum_names[i]; i++)
    is_word = is_word || strcmp(field->enum_names[i], e->name) == 0;
  // A bare word that is an allowed value, or is not bound to anything, is the value itself.
  if (e->kind == ATTN_AST_NAME && (is_word || !lookup(x, e->name))) {
    word = e->name;
  } else {
    value v;
    ATTN_RETURN_IF_ERROR(eval(x, e, 0, &v));
    if (v.kind != VALUE_STRING)
      return field_error(x, c, field, e, &v);
    snprintf(buffer, sizeof(buffer), "%.*s", (int)v.as.string.length, v.as.string.text);
    word = buffer;
  }
  if (field->type == ATTN_FIELD_DTYPE) {
    if (!attn_dtype_from_name(word, strlen(word), &dtype))
      return error(x, e->loc,
                   "unknown dtype '%s' for '%s' of %s (f32, f16, bf16, i64, i32, i8, "
                   "bool)",
                   word, field->name, c->info->name);
    memcpy(slot, &dtype, sizeof(dtype));
    return ATTN_OK;
  }
  for (int i = 0; field->enum_names[i]; i++)
    if (strcmp(field->enum_names[i], word) == 0) {
      memcpy(slot, &i, sizeof(i));
      return ATTN_OK;
    }
  return enum_error(x, c, field, e, word);
}

static attn_status score_expr(expander *x, op_call *c, const attn_ast *e, int depth,
                              const attn_expr **out);

static attn_status set_list_field(expander *x, op_call *c, const attn_field_info *field,
                                  const attn_ast *e, void *slot) {
  value v;
  ATTN_RETURN_IF_ERROR(eval(x, e, field->type == ATTN_FIELD_DIMS ? EVAL_DIM : 0, &v));
  const value *items = &v;
  uint32_t count = 1;
  if (v.kind == VALUE_LIST || v.kind == VALUE_NAMES) {
    items = v.as.list.items;
    count = v.as.list.count;
  } else if (field->type != ATTN_FIELD_STRINGS || v.kind != VALUE_STRING) {
    return field_error(x, c, field, e, &v);
  }
  void *array = NULL;
  if (field->type == ATTN_FIELD_INTS || field->type == ATTN_FIELD_DIMS)
    array = attn_graph_alloc(x->graph, (count ? count : 1) * sizeof(int64_t));
  else
    array = attn_graph_alloc(x->graph, (count ? count : 1) * sizeof(char *));
  if (!array)
    return out_of_memory(x, e->loc);
  const char *prefix = c->op == ATTN_OP_WEIGHT ? x->frame->prefix : "";
  for (uint32_t i = 0; i < count; i++) {
    const value *item = &items[i];
    int64_t n;
    switch (field->type) {
    case ATTN_FIELD_INTS:
      if (!to_int(item, &n))
        return error(x, e->loc, "'%s' of %s needs integers; item %u is %s", field->name,
                     c->info->name, i, describe(item));
      ((int64_t *)array)[i] = n;
      break;
    case ATTN_FIELD_DIMS:
      ATTN_RETURN_IF_ERROR(to_dim(x, e, item, true, &((attn_dim *)array)[i]));
      break;
    default: {
      if (item->kind != VALUE_STRING)
        return error(x, e->loc, "'%s' of %s needs strings; item %u is %s", field->name,
                     c->info->name, i, describe(item));
      size_t outer = strlen(prefix), length = outer + item->as.string.length;
      char *name = attn_graph_alloc(x->graph, length + 1);
      if (!name)
        return out_of_memory(x, e->loc);
      memcpy(name, prefix, outer);
      memcpy(name + outer, item->as.string.text, item->as.string.length);
      name[length] = '\0';
      if (strlen(name) != length)
        return error(x, e->loc, "a name cannot hold a NUL byte");
      ((const char **)array)[i] = name;
    }
    }
  }
  memcpy(slot, &array, sizeof(array));
  memcpy((char *)c->attrs + field->count_offset, &count, sizeof(count));
  return ATTN_OK;
}

// Converts the expression `e` into the field `field` of the op's attribute struct.
static attn_status set_field(expander *x, op_call *c, const attn_field_info *field,
                             const attn_ast *e) {
  void *slot = (char *)c->attrs + field->offset;
  value v;
  int64_t n;
  switch (field->type) {
  case ATTN_FIELD_DTYPE:
  case ATTN_FIELD_ENUM:
    return set_word_field(x, c, field, e, slot);
  case ATTN_FIELD_INTS:
  case ATTN_FIELD_DIMS:
  case ATTN_FIELD_STRINGS:
    return set_list_field(x, c, field, e, slot);
  case ATTN_FIELD_DATA:
    c->data = e;
    return ATTN_OK;
  case ATTN_FIELD_EXPR: {
    if (e->kind != ATTN_AST_BLOCK)
      return error(x, e->loc, "'%s' of %s needs a '{ ... }' expression", field->name,
                   c->info->name);
    const attn_expr *expr;
    ATTN_RETURN_IF_ERROR(score_expr(x, c, e->lhs, 0, &expr));
    memcpy(slot, &expr, sizeof(expr));
    return ATTN_OK;
  }
  default:
    break;
  }
  ATTN_RETURN_IF_ERROR(eval(
      x, e, field->type == ATTN_FIELD_DIM || field->type == ATTN_FIELD_TYPE ? EVAL_DIM : 0, &v));
  switch (field->type) {
  case ATTN_FIELD_BOOL:
    if (v.kind != VALUE_BOOL)
      return field_error(x, c, field, e, &v);
    memcpy(slot, &v.as.b, sizeof(bool));
    return ATTN_OK;
  case ATTN_FIELD_INT:
    if (!to_int(&v, &n))
      return field_error(x, c, field, e, &v);
    memcpy(slot, &n, sizeof(n));
    return ATTN_OK;
  case ATTN_FIELD_FLOAT: {
    if (!is_number(&v))
      return field_error(x, c, field, e, &v);
    double d = as_double(&v);
    memcpy(slot, &d, sizeof(d));
    return ATTN_OK;
  }
  case ATTN_FIELD_DIM: {
    attn_dim dim;
    if (v.kind != VALUE_DIM && !is_number(&v))
      return field_error(x, c, field, e, &v);
    ATTN_RETURN_IF_ERROR(to_dim(x, e, &v, false, &dim));
    memcpy(slot, &dim, sizeof(dim));
    return ATTN_OK;
  }
  case ATTN_FIELD_TYPE:
    if (v.kind != VALUE_TYPE)
      return field_error(x, c, field, e, &v);
    memcpy(slot, v.as.type, sizeof(attn_type));
    return ATTN_OK;
  default:
    return error(x, e->loc, "'%s' of %s cannot be set here", field->name, c->info->name);
  }
}

// Stores `v` as element `index` of `dtype` data; floats must fit the dtype's range, integers
// the integer dtype's, bools only bool.
static attn_status store_element(expander *x, attn_loc loc, attn_dtype dtype, const value *v,
                                 void *data, size_t index) {
  int64_t n;
  double d = is_number(v) ? as_double(v) : 0;
  if (dtype == ATTN_DTYPE_BOOL) {
    if (v->kind == VALUE_BOOL || (to_int(v, &n) && (n == 0 || n == 1))) {
      ((uint8_t *)data)[index] = v->kind == VALUE_BOOL ? v->as.b : (uint8_t)n;
      return ATTN_OK;
    }
    return error(x, loc, "a bool element must be true or false, got %s", describe(v));
  }
  if (!is_number(v))
    return error(x, loc, "a %s element must be a number, got %s", attn_dtype_name(dtype),
                 describe(v));
  if (attn_dtype_is_float(dtype)) {
    float f = (float)d;
    if (isinf(f) && isfinite(d))
      return error(x, loc, "%g does not fit %s", d, attn_dtype_name(dtype));
    if (dtype == ATTN_DTYPE_F32) {
      ((float *)data)[index] = f;
      return ATTN_OK;
    }
    uint16_t bits = dtype == ATTN_DTYPE_F16 ? attn_f32_to_f16(f) : attn_f32_to_bf16(f);
    float back = dtype == ATTN_DTYPE_F16 ? attn_f16_to_f32(bits) : attn_bf16_to_f32(bits);
    if (isinf(back) && isfinite(d))
      return error(x, loc, "%g does not fit %s", d, attn_dtype_name(dtype));
    ((uint16_t *)data)[index] = bits;
    return ATTN_OK;
  }
  int64_t lo = dtype == ATTN_DTYPE_I8 ? INT8_MIN : dtype == ATTN_DTYPE_I32 ? INT32_MIN : INT64_MIN;
  int64_t hi = dtype == ATTN_DTYPE_I8 ? INT8_MAX : dtype == ATTN_DTYPE_I32 ? INT32_MAX : INT64_MAX;
  if (!to_int(v, &n))
    return error(x, loc, "a %s element must be an integer, got %g", attn_dtype_name(dtype), d);
  if (n < lo || n > hi)
    return error(x, loc, "%" PRId64 " does not fit %s", n, attn_dtype_name(dtype));
  if (dtype == ATTN_DTYPE_I64)
    ((int64_t *)data)[index] = n;
  else if (dtype == ATTN_DTYPE_I32)
    ((int32_t *)data)[index] = (int32_t)n;
  else
    ((int8_t *)data)[index] = (int8_t)n;
  return ATTN_OK;
}

// constant data: one value per element in row-major order, or one value for every element.
static attn_status set_data(expander *x, op_call *c, const attn_field_info *field,
                            const attn_type *type) {
  const attn_ast *e = c->data;
  int64_t count = 1;
  for (uint32_t i = 0; i < type->rank; i++) {
    if (!attn_dim_is_constant(type->dims[i]))
      return error(x, e->loc, "a %s needs constant dims", c->info->name);
    if (__builtin_mul_overflow(count, type->dims[i], &count) || count > MAX_CONSTANT_ELEMENTS)
      return error(x, e->loc, "a %s holds at most %d elements", c->info->name,
                   MAX_CONSTANT_ELEMENTS);
  }
  if ((unsigned)type->dtype >= ATTN_DTYPE_COUNT)
    return error(x, e->loc, "invalid dtype");
  value v;
  ATTN_RETURN_IF_ERROR(eval(x, e, 0, &v));
  bool is_list = v.kind == VALUE_LIST;
  if (is_list && (int64_t)v.as.list.count != count)
    return error(x, e->loc, "%s of %" PRId64 " element%s needs as many values (or one), got %u",
                 c->info->name, count, count == 1 ? "" : "s", v.as.list.count);
  size_t size = (size_t)count * attn_dtype_size(type->dtype);
  void *data = attn_graph_alloc(x->graph, size ? size : 1);
  if (!data)
    return out_of_memory(x, e->loc);
  for (int64_t i = 0; i < count; i++)
    ATTN_RETURN_IF_ERROR(
        store_element(x, e->loc, type->dtype, is_list ? &v.as.list.items[i] : &v, data, (size_t)i));
  memcpy((char *)c->attrs + field->offset, &data, sizeof(data));
  return ATTN_OK;
}

static attn_status add_node(expander *x, attn_op op, const attn_value_id *inputs, uint32_t count,
                            const void *attrs, attn_loc loc, attn_node_id *out) {
  if (x->graph->node_count > x->max_nodes)
    return error(x, loc, "the expanded graph has more than %u nodes", x->max_nodes);
  attn_status status = attn_graph_add_node(x->graph, op, inputs, count, attrs, loc, out);
  if (status != ATTN_OK) {
    add_call_notes(x);
    return status;
  }
  return track_dims(x, loc);
}

// A scalar constant node for a number written where the op takes a tensor.
static attn_status literal_tensor(expander *x, const value *v, attn_dtype dtype, attn_loc loc,
                                  attn_value_id *out) {
  void *data = attn_graph_alloc(x->graph, 8);
  if (!data)
    return out_of_memory(x, loc);
  ATTN_RETURN_IF_ERROR(store_element(x, loc, dtype, v, data, 0));
  attn_constant_attrs attrs = {{dtype, 0, {0}}, data};
  attn_node_id node;
  ATTN_RETURN_IF_ERROR(add_node(x, ATTN_OP_CONSTANT, NULL, 0, &attrs, loc, &node));
  *out = attn_node_output(x->graph, node, 0);
  return ATTN_OK;
}

static attn_dtype literal_dtype(const expander *x, attn_op op, const value *args, uint32_t count,
                                uint32_t index) {
  if (op == ATTN_OP_WHERE) {
    if (index == 0)
      return ATTN_DTYPE_BOOL;
    const value *other = &args[index == 1 ? 2 : 1];
    return other->kind == VALUE_TENSOR ? attn_graph_value(x->graph, other->as.tensor)->type.dtype
                                       : ATTN_DTYPE_F32;
  }
  for (uint32_t i = 0; i < count; i++)
    if (args[i].kind == VALUE_TENSOR)
      return attn_graph_value(x->graph, args[i].as.tensor)->type.dtype;
  return ATTN_DTYPE_F32;
}

static int find_field(const attn_attrs_info *info, const char *name) {
  for (uint32_t i = 0; i < info->field_count; i++)
    if (strcmp(info->fields[i].name, name) == 0)
      return (int)i;
  return -1;
}

static attn_status unknown_attribute(expander *x, const op_call *c, const attn_ast *kwarg) {
  if (c->attrs_info->field_count == 0)
    return error(x, kwarg->loc, "%s takes no attributes (got '%s')", c->info->name, kwarg->name);
  char valid[512];
  size_t used = 0;
  for (uint32_t i = 0; i < c->attrs_info->field_count && used < sizeof(valid); i++)
    used += (size_t)snprintf(valid + used, sizeof(valid) - used, "%s%s", i ? ", " : "",
                             c->attrs_info->fields[i].name);
  return error(x, kwarg->loc, "unknown attribute '%s' for %s; valid: %s", kwarg->name,
               c->info->name, valid);
}

// Fills the attribute struct from the call's positional arguments (leaf ops: weight,
// constant, iota take their required fields positionally) and keyword arguments.
static attn_status set_attrs(expander *x, op_call *c) {
  const attn_attrs_info *info = c->attrs_info;
  if (info->field_count > MAX_FIELDS)
    return error(x, c->call->loc, "%s has too many attribute fields", c->info->name);
  if (info->size) {
    c->attrs = attn_arena_alloc(x->scratch, info->size, 16); // add_node copies the struct
    if (!c->attrs)
      return out_of_memory(x, c->call->loc);
    memcpy(c->attrs, info->defaults, info->size);
  }
  if (c->info->flags & ATTN_OP_LEAF) {
    uint32_t field = 0, positional = 0;
    for (uint32_t i = 0; i < info->field_count; i++)
      positional += info->fields[i].is_required;
    for (const attn_ast *a = c->call->args; a; a = a->next, field++) {
      while (field < info->field_count && !info->fields[field].is_required)
        field++;
      if (field == info->field_count)
        return error(x, a->loc, "%s takes %u positional argument%s, got %u", c->info->name,
                     positional, positional == 1 ? "" : "s", c->call->arg_count);
      ATTN_RETURN_IF_ERROR(set_field(x, c, &info->fields[field], a));
      c->is_set[field] = true;
    }
  }
  for (const attn_ast *kwarg = c->call->kwargs; kwarg; kwarg = kwarg->next) {
    int i = find_field(info, kwarg->name);
    if (i < 0)
      return unknown_attribute(x, c, kwarg);
    if (c->is_set[i])
      return error(x, kwarg->loc, "'%s' of %s is already given as a positional argument",
                   kwarg->name, c->info->name);
    ATTN_RETURN_IF_ERROR(set_field(x, c, &info->fields[i], kwarg->lhs));
    c->is_set[i] = true;
  }
  for (uint32_t i = 0; i < info->field_count; i++) {
    const attn_field_info *field = &info->fields[i];
    if (field->is_required && !c->is_set[i])
      return error(x, c->call->loc, "%s needs '%s' (%s)", c->info->name, field->name,
                   field_type_text(field));
    if (field->type == ATTN_FIELD_DATA) {
      // DATA follows the TYPE field it describes.
      if (i == 0 || info->fields[i - 1].type != ATTN_FIELD_TYPE)
        return error(x, c->call->loc, "%s: data without a type", c->info->name);
      const attn_type *type =
          (const attn_type *)((const char *)c->attrs + info->fields[i - 1].offset);
      ATTN_RETURN_IF_ERROR(set_data(x, c, field, type));
    }
  }
  return ATTN_OK;
}

// An op call: `args` are the evaluated positional arguments (NULL for leaf ops, whose
// positional arguments are attributes).
static attn_status call_op(expander *x, const attn_ast *e, attn_op op, const value *args,
                           value *out) {
  op_call *c = attn_arena_calloc(x->scratch, 1, sizeof(*c));
  if (!c)
    return out_of_memory(x, e->loc);
  c->call = e;
  c->op = op;
  c->info = attn_op_get_info(op);
  c->attrs_info = attn_attrs_get_info(c->info->attrs_kind);
  ATTN_RETURN_IF_ERROR(set_attrs(x, c));

  uint32_t count = args ? e->arg_count : 0;
  if (op == ATTN_OP_ATTENTION) {
    bool has_mask = ((const attn_attention_attrs *)c->attrs)->has_mask;
    if (count != 3u + has_mask)
      return error(x, e->loc,
                   "attention takes q, k, v%s, got %u tensor%s (captured tensors go inside "
                   "score_mod)",
                   has_mask ? " and the mask (has_mask=true)" : "", count, count == 1 ? "" : "s");
  }
  attn_value_id *inputs = scratch_alloc(x, (size_t)count + c->capture_count, sizeof(attn_value_id));
  if (!inputs)
    return out_of_memory(x, e->loc);
  const attn_ast *a = e->args;
  for (uint32_t i = 0; i < count; i++, a = a->next) {
    const value *v = &args[i];
    if (v->kind == VALUE_TENSOR) {
      inputs[i] = v->as.tensor;
    } else if (is_number(v) || v->kind == VALUE_BOOL) {
      attn_dtype dtype = literal_dtype(x, op, args, count, i);
      ATTN_RETURN_IF_ERROR(literal_tensor(x, v, dtype, a->loc, &inputs[i]));
    } else if (v->kind == VALUE_TUPLE) {
      return error(x, a->loc,
                   "argument %u of %s is %u values; bind them first (a, b = ...) and pass one",
                   i + 1, c->info->name, v->as.list.count);
    } else {
      return error(x, a->loc, "argument %u of %s must be a tensor, got %s", i + 1, c->info->name,
                   describe(v));
    }
  }
  memcpy(inputs + count, c->captures, c->capture_count * sizeof(attn_value_id));
  attn_node_id node;
  ATTN_RETURN_IF_ERROR(add_node(x, op, inputs, count + c->capture_count, c->attrs, e->loc, &node));
  const attn_node *n = attn_graph_node(x->graph, node);
  if (n->output_count == 1) {
    *out = (value){.kind = VALUE_TENSOR, .as.tensor = n->outputs[0]};
    return ATTN_OK;
  }
  value *items = scratch_alloc(x, n->output_count, sizeof(value));
  if (!items)
    return out_of_memory(x, e->loc);
  for (uint32_t i = 0; i < n->output_count; i++)
    items[i] = (value){.kind = VALUE_TENSOR, .as.tensor = n->outputs[i]};
  *out = (value){.kind = VALUE_TUPLE, .as.list = {items, n->output_count}};
  return ATTN_OK;
}

// call: a subgraph, an op, or a compile-time function. sqrt, exp, log, min, max and pow are
// both: with only compile-time arguments they are folded.
static attn_status eval_call(expander *x, const attn_ast *e, value *out) {
  const attn_ast *def = find_def(x, e->name);
  if (def)
    return call_def(x, e, def, out);
  attn_op op;
  builtin_fn fn = FN_LEN; // find_builtin sets it when it returns true
  bool is_op = attn_op_from_name(e->name, strlen(e->name), &op);
  bool is_fn = find_builtin(e->name, &fn);
  if (!is_op && !is_fn) {
    const char *close = closest_callable(x, e->name);
    if (close)
      return error(x, e->loc, "unknown op '%s'; did you mean '%s'?", e->name, close);
    return error(x, e->loc, "unknown op '%s' (docs/ops.md lists the ops)", e->name);
  }
  if (e->prefix)
    return error(x, e->prefix->loc,
                 "a weight-name prefix '@' applies to a subgraph call; '%s' is %s", e->name,
                 is_op ? "an op" : "a function");
  if (is_op && (attn_op_get_info(op)->flags & ATTN_OP_LEAF))
    return call_op(x, e, op, NULL, out);
  if (is_fn && fn == FN_LEN && e->arg_count == 1 && e->args->kind == ATTN_AST_CONFIG && !e->kwargs)
    return config_length(x, e, out);
  value *args = scratch_alloc(x, e->arg_count, sizeof(value));
  if (!args)
    return out_of_memory(x, e->loc);
  bool has_tensor = false;
  uint32_t i = 0;
  for (const attn_ast *a = e->args; a; a = a->next, i++) {
    ATTN_RETURN_IF_ERROR(eval(x, a, 0, &args[i]));
    has_tensor = has_tensor || args[i].kind == VALUE_TENSOR || args[i].kind == VALUE_TUPLE;
  }
  if (is_fn && (!is_op || (!has_tensor && !e->kwargs)))
    return call_builtin(x, e, fn, args, out);
  return call_op(x, e, op, args, out);
}

// ---- score_mod -----------------------------------------------------------------------------

static attn_status new_expr(expander *x, attn_loc loc, attn_expr_kind kind, attn_expr **out) {
  *out = attn_graph_alloc(x->graph, sizeof(attn_expr));
  if (!*out)
    return out_of_memory(x, loc);
  memset(*out, 0, sizeof(attn_expr));
  (*out)->kind = kind;
  return ATTN_OK;
}

static attn_status score_number(expander *x, const attn_ast *e, const value *v,
                                const attn_expr **out) {
  if (!is_number(v))
    return error(x, e->loc, "score_mod works on numbers; this is %s", describe(v));
  attn_expr *node;
  ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_NUMBER, &node));
  node->number = as_double(v);
  *out = node;
  return ATTN_OK;
}

static attn_status score_capture(expander *x, op_call *c, const attn_ast *e, int depth,
                                 attn_expr *node) {
  const value *v = lookup(x, e->name);
  if (!v || v->kind != VALUE_TENSOR)
    return error(x, e->loc, "'%s[...]' needs a tensor in scope, and '%s' is %s", e->name, e->name,
                 v ? describe(v) : "not defined");
  uint32_t index = 0;
  while (index < c->capture_count && c->captures[index].index != v->as.tensor.index)
    index++;
  if (index == c->capture_count) {
    if (c->capture_count == MAX_CAPTURES)
      return error(x, e->loc, "score_mod captures more than %d tensors", MAX_CAPTURES);
    c->captures[c->capture_count++] = v->as.tensor;
  }
  node->capture = index;
  node->arg_count = e->arg_count;
  uint32_t i = 0;
  for (const attn_ast *a = e->args; a; a = a->next, i++)
    ATTN_RETURN_IF_ERROR(score_expr(x, c, a, depth + 1, &node->args[i]));
  return ATTN_OK;
}

static attn_status score_call(expander *x, op_call *c, const attn_ast *e, int depth,
                              attn_expr *node) {
  static const struct {
    const char *name;
    attn_expr_fn fn;
  } fns[] = {
      {"exp", ATTN_EXPR_EXP},   {"log", ATTN_EXPR_LOG},         {"sqrt", ATTN_EXPR_SQRT},
      {"tanh", ATTN_EXPR_TANH}, {"sigmoid", ATTN_EXPR_SIGMOID}, {"abs", ATTN_EXPR_ABS},
      {"min", ATTN_EXPR_MIN},   {"max", ATTN_EXPR_MAX},         {"pow", ATTN_EXPR_POW},
  };
  size_t i = 0;
  while (i < sizeof(fns) / sizeof(fns[0]) && strcmp(fns[i].name, e->name) != 0)
    i++;
  if (i == sizeof(fns) / sizeof(fns[0]))
    return error(x, e->loc,
                 "score_mod cannot call '%s'; it knows exp, log, sqrt, tanh, sigmoid, abs, min, "
                 "max and pow",
                 e->name);
  uint32_t want = fns[i].fn >= ATTN_EXPR_ADD ? 2 : 1;
  if (e->kwargs || e->prefix || e->arg_count != want)
    return error(x, e->loc, "%s() in score_mod takes %u argument%s", e->name, want,
                 want == 1 ? "" : "s");
  node->kind = want == 1 ? ATTN_EXPR_UNARY : ATTN_EXPR_BINARY;
  node->fn = fns[i].fn;
  node->arg_count = want;
  uint32_t k = 0;
  for (const attn_ast *a = e->args; a; a = a->next, k++)
    ATTN_RETURN_IF_ERROR(score_expr(x, c, a, depth + 1, &node->args[k]));
  return ATTN_OK;
}

// Builds the attn_expr of a score_mod block: score, b, h, q_idx, kv_idx, numbers
// (compile-time values fold to numbers), arithmetic, comparisons, '? :', a few functions,
// and captured tensors indexed as name[i, ...].
static attn_status score_expr(expander *x, op_call *c, const attn_ast *e, int depth,
                              const attn_expr **out) {
  ATTN_RETURN_IF_ERROR(step(x, e->loc));
  if (depth > 64)
    return error(x, e->loc, "score_mod is nested too deeply");
  value v;
  attn_expr *node;
  switch (e->kind) {
  case ATTN_AST_NAME:
    for (int var = 0; var < ATTN_EXPR_VAR_COUNT; var++) {
      if (strcmp(attn_expr_var_name((attn_expr_var)var), e->name) == 0) {
        ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_VAR, &node));
        node->var = (attn_expr_var)var;
        *out = node;
        return ATTN_OK;
      }
    }
    if (lookup(x, e->name) && lookup(x, e->name)->kind == VALUE_TENSOR)
      return error(x, e->loc, "'%s' is a tensor; index it, as in %s[h]", e->name, e->name);
    ATTN_RETURN_IF_ERROR(eval(x, e, 0, &v));
    return score_number(x, e, &v, out);
  case ATTN_AST_INT:
  case ATTN_AST_FLOAT:
  case ATTN_AST_CONFIG:
  case ATTN_AST_COALESCE:
    ATTN_RETURN_IF_ERROR(eval(x, e, 0, &v));
    return score_number(x, e, &v, out);
  case ATTN_AST_NEG:
    ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_UNARY, &node));
    node->fn = ATTN_EXPR_NEG;
    node->arg_count = 1;
    ATTN_RETURN_IF_ERROR(score_expr(x, c, e->lhs, depth + 1, &node->args[0]));
    *out = node;
    return ATTN_OK;
  case ATTN_AST_BINARY: {
    static const attn_expr_fn fns[] = {
        [ATTN_AST_ADD] = ATTN_EXPR_ADD, [ATTN_AST_SUB] = ATTN_EXPR_SUB,
        [ATTN_AST_MUL] = ATTN_EXPR_MUL, [ATTN_AST_DIV] = ATTN_EXPR_DIV,
        [ATTN_AST_LT] = ATTN_EXPR_LT,   [ATTN_AST_LE] = ATTN_EXPR_LE,
        [ATTN_AST_GT] = ATTN_EXPR_LT,   [ATTN_AST_GE] = ATTN_EXPR_LE,
        [ATTN_AST_EQ] = ATTN_EXPR_EQ,   [ATTN_AST_NE] = ATTN_EXPR_EQ,
    };
    if (e->op == ATTN_AST_MOD)
      return error(x, e->loc, "score_mod has no '%%'");
    const attn_expr *lhs, *rhs;
    ATTN_RETURN_IF_ERROR(score_expr(x, c, e->lhs, depth + 1, &lhs));
    ATTN_RETURN_IF_ERROR(score_expr(x, c, e->rhs, depth + 1, &rhs));
    ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_BINARY, &node));
    node->fn = fns[e->op];
    node->arg_count = 2;
    bool swap = e->op == ATTN_AST_GT || e->op == ATTN_AST_GE; // a > b is b < a
    node->args[0] = swap ? rhs : lhs;
    node->args[1] = swap ? lhs : rhs;
    if (e->op == ATTN_AST_NE) { // a != b is 1 - (a == b)
      attn_expr *one, *ne;
      ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_NUMBER, &one));
      ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_BINARY, &ne));
      one->number = 1;
      ne->fn = ATTN_EXPR_SUB;
      ne->arg_count = 2;
      ne->args[0] = one;
      ne->args[1] = node;
      node = ne;
    }
    *out = node;
    return ATTN_OK;
  }
  case ATTN_AST_SELECT:
    ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_SELECT, &node));
    node->arg_count = 3;
    ATTN_RETURN_IF_ERROR(score_expr(x, c, e->cond, depth + 1, &node->args[0]));
    ATTN_RETURN_IF_ERROR(score_expr(x, c, e->lhs, depth + 1, &node->args[1]));
    ATTN_RETURN_IF_ERROR(score_expr(x, c, e->rhs, depth + 1, &node->args[2]));
    *out = node;
    return ATTN_OK;
  case ATTN_AST_CALL:
    ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_UNARY, &node));
    ATTN_RETURN_IF_ERROR(score_call(x, c, e, depth, node));
    *out = node;
    return ATTN_OK;
  case ATTN_AST_INDEX:
    ATTN_RETURN_IF_ERROR(new_expr(x, e->loc, ATTN_EXPR_CAPTURE, &node));
    ATTN_RETURN_IF_ERROR(score_capture(x, c, e, depth, node));
    *out = node;
    return ATTN_OK;
  default:
    return error(x, e->loc,
                 "score_mod takes arithmetic on score, b, h, q_idx, kv_idx, numbers and indexed "
                 "tensors");
  }
}

// ---- the graph -----------------------------------------------------------------------------

static attn_status expand_graph(expander *x, const attn_ast *g) {
  attn_graph *graph = x->graph;
  graph->name = attn_graph_strdup(graph, g->name, strlen(g->name));
  if (!graph->name)
    return out_of_memory(x, g->loc);
  frame body = {NULL, NULL, g->loc, "", &x->globals};
  x->frame = &body;
  x->in_signature = true;
  for (const attn_ast *p = g->args; p; p = p->next) {
    value type;
    attn_value_id id;
    ATTN_RETURN_IF_ERROR(eval(x, p->lhs, 0, &type));
    attn_status status = attn_graph_add_input(graph, p->name, type.as.type, p->loc, &id);
    if (status != ATTN_OK)
      return status;
    value tensor = {.kind = VALUE_TENSOR, .as.tensor = id};
    ATTN_RETURN_IF_ERROR(bind(x, p->name, &tensor, p->loc));
  }
  const attn_type **declared = scratch_alloc(x, g->output_count, sizeof(attn_type *));
  const char **names = scratch_alloc(x, g->output_count, sizeof(char *));
  attn_value_id *outputs = scratch_alloc(x, g->output_count, sizeof(attn_value_id));
  if (!declared || !names || !outputs)
    return out_of_memory(x, g->loc);
  uint32_t i = 0;
  for (const attn_ast *p = g->outputs; p; p = p->next, i++) {
    value type;
    ATTN_RETURN_IF_ERROR(eval(x, p->lhs, 0, &type));
    declared[i] = type.as.type;
    names[i] = p->name;
  }
  x->in_signature = false;

  value result;
  const attn_ast *ret = g->body;
  while (ret->next)
    ret = ret->next;
  ATTN_RETURN_IF_ERROR(exec_body(x, g->body, &result));
  uint32_t have = result.kind == VALUE_TUPLE ? result.as.list.count : 1;
  if (have != g->output_count) {
    char text[32];
    return error(x, ret->loc, "graph '%s' returns %s, its signature declares %u output%s", g->name,
                 count_text(have, text, sizeof(text)), g->output_count,
                 g->output_count == 1 ? "" : "s");
  }
  const attn_ast *value_ast = ret->args;
  const attn_ast *out_param = g->outputs;
  for (i = 0; i < g->output_count; i++, out_param = out_param->next) {
    const value *v = result.kind == VALUE_TUPLE ? &result.as.list.items[i] : &result;
    attn_loc loc = value_ast ? value_ast->loc : ret->loc;
    if (v->kind != VALUE_TENSOR)
      return error(x, loc, "output '%s' must be a tensor, got %s", names[i], describe(v));
    const attn_type *have_type = &attn_graph_value(graph, v->as.tensor)->type;
    if (!attn_type_equal(have_type, declared[i])) {
      char want_text[256], have_text[256];
      attn_graph_type_format(graph, declared[i], want_text, sizeof(want_text));
      attn_graph_type_format(graph, have_type, have_text, sizeof(have_text));
      return error(x, loc, "output '%s' is declared %s but the returned value is %s", names[i],
                   want_text, have_text);
    }
    outputs[i] = v->as.tensor;
    ATTN_RETURN_IF_ERROR(name_tensor(x, v, out_param->name, loc));
    if (ret->arg_count == g->output_count && value_ast)
      value_ast = value_ast->next;
  }
  if (attn_graph_set_outputs(graph, outputs, names, g->output_count) != ATTN_OK)
    return ATTN_ERROR_OUT_OF_MEMORY;
  x->frame = &x->globals;
  return ATTN_OK;
}

attn_status attn_expand(const attn_ast *items, const attn_parse_options *options, attn_graph *graph,
                        attn_arena *scratch) {
  expander x = {
      .graph = graph,
      .diag = graph->diag,
      .scratch = scratch,
      .config = options->config,
      .items = items,
      .max_steps = options->max_steps ? options->max_steps : DEFAULT_MAX_STEPS,
      .max_nodes = options->max_nodes ? options->max_nodes : DEFAULT_MAX_NODES,
  };
  x.globals.prefix = "";
  x.frame = &x.globals;
  attn_status status = ATTN_OK;
  for (const attn_ast *item = items; item && status == ATTN_OK; item = item->next) {
    attn_op op;
    builtin_fn fn;
    switch (item->kind) {
    case ATTN_AST_LET:
      status = exec_let(&x, item);
      break;
    case ATTN_AST_DEF:
      if (attn_op_from_name(item->name, strlen(item->name), &op) || find_builtin(item->name, &fn))
        status =
            error(&x, item->loc, "'%s' is %s; a subgraph cannot take its name", item->name,
                  attn_op_from_name(item->name, strlen(item->name), &op) ? "an op" : "a function");
      break;
    case ATTN_AST_GRAPH:
      status = expand_graph(&x, item);
      break;
    default:
      status = error(&x, item->loc, "expected 'let', 'def' or 'graph'");
    }
  }
  attn_allocator_free(graph->allocator, x.dim_depths, x.dim_depth_capacity);
  return status;
}
