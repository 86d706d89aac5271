// The reference evaluator's driver: binds symbols and inputs, runs in id order every live node
// the outputs depend on through the evaluator ops.def names, frees each intermediate after its
// last use, and hands the outputs to the caller. Also the leaf ops (weight, constant, iota) and the
// element helpers the op files share. Values are host tensors in their native dtype; graph inputs,
// weights and constants are borrowed, never copied unless a dtype conversion is needed.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ir/interp_eval.h"

enum { MAX_NODE_INPUTS = 64, MAX_NODE_OUTPUTS = 256 };

typedef enum value_state {
  VALUE_PENDING,  // not computed yet
  VALUE_OWNED,    // data allocated by the run
  VALUE_BORROWED, // data belongs to the caller or the graph
  VALUE_RELEASED, // freed after its last use
} value_state;

typedef struct interp_state {
  const attn_graph *graph;
  const attn_interp_args *args;
  attn_allocator allocator;
  attn_diag *diag;
  int64_t *symbols;    // symbol_count
  attn_tensor *values; // value_count
  uint8_t *states;     // value_count value_state
  // value_count: the last needed node reading it; UINT32_MAX for graph outputs, 0 for unread
  uint32_t *last_use;
} interp_state;

static attn_status (*const eval_fns[ATTN_OP_COUNT])(attn_eval_ctx *) = {
#define ATTN_OP(e, name, min_in, max_in, out, attrs, flags, infer, eval) [ATTN_OP_##e] = eval,
#include "ir/ops.def"
#undef ATTN_OP
};

// ---- element helpers -----------------------------------------------------------------------

static uint32_t float_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  return bits;
}

// `value` rounded to a float with "round to odd": exact when representable, otherwise the
// neighbour toward zero with its last bit forced to 1. Rounding that float to nearest even in a
// format with at most 22 fraction bits (f16, bf16) gives the same result as rounding `value`
// directly, so the double is rounded once (Boldo and Melquiond, "Emulation of FMA and correctly
// rounded sums: proved algorithms using rounding to odd", IEEE TC 2008).
static float round_to_odd_f32(double value) {
  float rounded = (float)value;
  if (isnan(value) || isinf(value) || (double)rounded == value)
    return rounded;
  if (fabs((double)rounded) > fabs(value))
    rounded = nextafterf(rounded, 0.0f);
  uint32_t bits = float_bits(rounded) | 1u;
  memcpy(&rounded, &bits, sizeof(rounded));
  return rounded;
}

static int64_t saturate_double(double value, attn_dtype dtype) {
  double lo = dtype == ATTN_DTYPE_I8    ? -128.0
              : dtype == ATTN_DTYPE_I32 ? -2147483648.0
                                        : -9223372036854775808.0;
  double hi = dtype == ATTN_DTYPE_I8    ? 127.0
              : dtype == ATTN_DTYPE_I32 ? 2147483647.0
                                        : 9223372036854775808.0;
  if (isnan(value))
    return 0;
  if (value <= lo)
    return (int64_t)lo;
  if (value >= hi) // 2^63 itself does not fit in int64
    return dtype == ATTN_DTYPE_I64 ? INT64_MAX : (int64_t)hi;
  return (int64_t)value; // truncates toward zero
}

double attn_interp_load(const attn_tensor *tensor, int64_t index) {
  return attn_tensor_get_f64(tensor, index);
}

void attn_interp_store(attn_tensor *tensor, int64_t index, double value) {
  void *data = tensor->data;
  switch (tensor->dtype) {
  case ATTN_DTYPE_F32:
    ((float *)data)[index] = (float)value;
    break;
  case ATTN_DTYPE_F16:
    ((uint16_t *)data)[index] = attn_f32_to_f16(round_to_odd_f32(value));
    break;
  case ATTN_DTYPE_BF16:
    ((uint16_t *)data)[index] = attn_f32_to_bf16(round_to_odd_f32(value));
    break;
  case ATTN_DTYPE_I64:
  case ATTN_DTYPE_I32:
  case ATTN_DTYPE_I8:
    attn_interp_store_int(tensor, index, saturate_double(value, tensor->dtype));
    break;
  case ATTN_DTYPE_BOOL:
    ((uint8_t *)data)[index] = value != 0.0;
    break;
  case ATTN_DTYPE_COUNT:
    break;
  }
}

int64_t attn_interp_load_int(const attn_tensor *tensor, int64_t index) {
  const void *data = tensor->data;
  switch (tensor->dtype) {
  case ATTN_DTYPE_I64:
    return ((const int64_t *)data)[index];
  case ATTN_DTYPE_I32:
    return ((const int32_t *)data)[index];
  case ATTN_DTYPE_I8:
    return ((const int8_t *)data)[index];
  case ATTN_DTYPE_BOOL:
    return ((const uint8_t *)data)[index] != 0;
  default:
    return saturate_double(attn_tensor_get_f64(tensor, index), ATTN_DTYPE_I64);
  }
}

void attn_interp_store_int(attn_tensor *tensor, int64_t index, int64_t value) {
  void *data = tensor->data;
  switch (tensor->dtype) {
  case ATTN_DTYPE_I64:
    ((int64_t *)data)[index] = value;
    break;
  case ATTN_DTYPE_I32:
    ((int32_t *)data)[index] = (int32_t)(value < INT32_MIN   ? INT32_MIN
                                         : value > INT32_MAX ? INT32_MAX
                                                             : value);
    break;
  case ATTN_DTYPE_I8:
    ((int8_t *)data)[index] = (int8_t)(value < -128 ? -128 : value > 127 ? 127 : value);
    break;
  case ATTN_DTYPE_BOOL:
    ((uint8_t *)data)[index] = value != 0;
    break;
  default:
    attn_interp_store(tensor, index, (double)value);
    break;
  }
}

int64_t attn_interp_add_sat(int64_t a, int64_t b) {
  int64_t result;
  if (__builtin_add_overflow(a, b, &result))
    return a < 0 ? INT64_MIN : INT64_MAX;
  return result;
}

int64_t attn_interp_mul_sat(int64_t a, int64_t b) {
  int64_t result;
  if (__builtin_mul_overflow(a, b, &result))
    return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
  return result;
}

void attn_interp_strides(const attn_tensor *tensor, int64_t *out_strides) {
  int64_t stride = 1;
  for (uint32_t d = tensor->rank; d-- > 0;) {
    out_strides[d] = stride;
    stride *= tensor->dims[d];
  }
}

bool attn_interp_broadcast_strides(const attn_tensor *tensor, uint32_t rank, const int64_t *dims,
                                   int64_t *out_strides) {
  if (tensor->rank > rank)
    return false;
  int64_t own[ATTN_MAX_RANK];
  attn_interp_strides(tensor, own);
  uint32_t lead = rank - tensor->rank;
  for (uint32_t d = 0; d < rank; d++) {
    if (d < lead) {
      out_strides[d] = 0;
      continue;
    }
    int64_t have = tensor->dims[d - lead];
    if (have != dims[d] && have != 1)
      return false;
    out_strides[d] = have == dims[d] && have != 1 ? own[d - lead] : 0;
  }
  return true;
}

int64_t attn_interp_offset(int64_t flat, uint32_t rank, const int64_t *dims,
                           const int64_t *strides) {
  int64_t offset = 0;
  for (uint32_t d = rank; d-- > 0;) {
    offset += (flat % dims[d]) * strides[d];
    flat /= dims[d];
  }
  return offset;
}

int64_t attn_interp_dims_product(const attn_tensor *tensor, uint32_t begin, uint32_t end) {
  int64_t product = 1;
  for (uint32_t d = begin; d < end; d++)
    product *= tensor->dims[d];
  return product;
}

uint32_t attn_interp_axis(int64_t axis, uint32_t rank) {
  return (uint32_t)(axis < 0 ? axis + (int64_t)rank : axis);
}

attn_status attn_interp_to_f64(attn_eval_ctx *ctx, const attn_tensor *tensor, double **out_values) {
  int64_t count = attn_tensor_element_count(tensor);
  *out_values = attn_allocator_calloc(ctx->allocator, (size_t)(count ? count : 1), sizeof(double));
  if (!*out_values)
    return attn_interp_error(ctx, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (int64_t i = 0; i < count; i++)
    (*out_values)[i] = attn_tensor_get_f64(tensor, i);
  return ATTN_OK;
}

void attn_interp_free_f64(attn_eval_ctx *ctx, double *values, const attn_tensor *tensor) {
  int64_t count = attn_tensor_element_count(tensor);
  attn_allocator_free(ctx->allocator, values, (size_t)(count ? count : 1) * sizeof(double));
}

attn_status attn_interp_error(attn_eval_ctx *ctx, attn_status status, const char *format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  return attn_diag_error(ctx->diag, ctx->node->loc, status, "%s: %s",
                         attn_op_get_info(ctx->node->op)->name, message);
}

attn_status attn_interp_alloc_output(attn_eval_ctx *ctx, uint32_t index) {
  attn_tensor *out = &ctx->outputs[index];
  attn_tensor type = *out; // the requested type, for the message when allocation fails
  attn_status status = attn_tensor_alloc(ctx->allocator, type.dtype, type.rank, type.dims, out);
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    return attn_interp_error(ctx, status, "out of memory");
  if (status != ATTN_OK) {
    char text[160];
    attn_tensor_format_type(type.dtype, type.rank, type.dims, text, sizeof(text));
    *out = type;
    out->data = NULL;
    return attn_interp_error(ctx, status, "output %u %s is too large", index, text);
  }
  return ATTN_OK;
}

// The first unbound symbol `dim` depends on, or NULL.
static const char *unbound_symbol(const attn_graph *graph, attn_dim dim, const int64_t *symbols) {
  const attn_dim_expr *e = attn_graph_dim_expr(graph, dim);
  if (!e)
    return NULL;
  if (e->kind == ATTN_DIM_SYMBOL)
    return symbols[e->symbol] < 0 ? e->name : NULL;
  const char *name = unbound_symbol(graph, e->lhs, symbols);
  return name ? name : unbound_symbol(graph, e->rhs, symbols);
}

// ---- leaves ----------------------------------------------------------------------------------

static bool same_shape(const attn_tensor *a, const attn_tensor *b) {
  if (a->rank != b->rank)
    return false;
  for (uint32_t d = 0; d < a->rank; d++)
    if (a->dims[d] != b->dims[d])
      return false;
  return true;
}

attn_status attn_eval_weight(attn_eval_ctx *ctx) {
  const attn_weight_attrs *attrs = ctx->attrs;
  const attn_tensor *given = ctx->weight;
  attn_tensor *out = &ctx->outputs[0];
  const char *name = attrs->name_count ? attrs->names[0] : "?";
  if (!given || (!given->data && attn_tensor_element_count(out) > 0))
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT, "weight '%s' has no data bound",
                             name);
  if (given->rank > ATTN_MAX_RANK || (unsigned)given->dtype >= ATTN_DTYPE_COUNT)
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                             "weight '%s' is bound to an invalid tensor", name);
  bool both_float = attn_dtype_is_float(given->dtype) && attn_dtype_is_float(out->dtype);
  bool both_int = attn_interp_is_int(given->dtype) && attn_interp_is_int(out->dtype);
  if (!same_shape(given, out) || (given->dtype != out->dtype && !both_float && !both_int)) {
    char want[160], have[160];
    attn_tensor_format_type(out->dtype, out->rank, out->dims, want, sizeof(want));
    attn_tensor_format_type(given->dtype, given->rank, given->dims, have, sizeof(have));
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                             "weight '%s' is declared %s but the bound tensor is %s", name, want,
                             have);
  }
  if (given->dtype == out->dtype) {
    out->data = given->data;
    ctx->is_output_borrowed = true;
    return ATTN_OK;
  }
  ATTN_RETURN_IF_ERROR(attn_interp_alloc_output(ctx, 0));
  int64_t count = attn_tensor_element_count(out);
  for (int64_t i = 0; i < count; i++) {
    if (both_int)
      attn_interp_store_int(out, i, attn_interp_load_int(given, i));
    else
      attn_interp_store(out, i, attn_interp_load(given, i));
  }
  return ATTN_OK;
}

attn_status attn_eval_constant(attn_eval_ctx *ctx) {
  const attn_constant_attrs *attrs = ctx->attrs;
  ctx->outputs[0].data =
      (void *)(uintptr_t)attrs->data; // read-only: borrowed data is never written
  ctx->is_output_borrowed = true;
  return ATTN_OK;
}

attn_status attn_eval_iota(attn_eval_ctx *ctx) {
  const attn_iota_attrs *attrs = ctx->attrs;
  attn_tensor *out = &ctx->outputs[0];
  int64_t start;
  if (attn_graph_dim_eval(ctx->graph, attrs->start, ctx->symbol_values, &start) != ATTN_OK) {
    char text[96];
    attn_graph_dim_format(ctx->graph, attrs->start, text, sizeof(text));
    const char *symbol = unbound_symbol(ctx->graph, attrs->start, ctx->symbol_values);
    if (symbol)
      return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT,
                               "start %s: symbol '%s' is unbound (it is not a dim of any input; "
                               "give its value)",
                               text, symbol);
    return attn_interp_error(ctx, ATTN_ERROR_INVALID_ARGUMENT, "cannot evaluate start %s", text);
  }
  ATTN_RETURN_IF_ERROR(attn_interp_alloc_output(ctx, 0));
  uint32_t axis = attn_interp_axis(attrs->axis, out->rank);
  int64_t inner = attn_interp_dims_product(out, axis + 1, out->rank);
  int64_t count = attn_tensor_element_count(out);
  for (int64_t i = 0; i < count; i++) {
    int64_t value = attn_interp_add_sat(start, (i / inner) % out->dims[axis]);
    attn_interp_store_int(out, i, value);
  }
  return ATTN_OK;
}

// ---- the driver ------------------------------------------------------------------------------

// Concrete dims of `type`; on failure records why at `loc` (for `what`).
static attn_status eval_type(const attn_graph *graph, const int64_t *symbols, attn_diag *diag,
                             const attn_type *type, attn_loc loc, const char *what,
                             attn_tensor *out) {
  memset(out, 0, sizeof(*out));
  out->dtype = type->dtype;
  out->rank = type->rank;
  for (uint32_t d = 0; d < type->rank; d++) {
    if (attn_graph_dim_eval(graph, type->dims[d], symbols, &out->dims[d]) == ATTN_OK)
      continue;
    char text[96];
    attn_graph_dim_format(graph, type->dims[d], text, sizeof(text));
    const char *symbol = unbound_symbol(graph, type->dims[d], symbols);
    if (symbol)
      return attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "%s: symbol '%s' is unbound (it is not a dim of any input; give "
                             "its value)",
                             what, symbol);
    return attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "%s: dim %s is negative or not an exact division with the bound "
                           "symbols",
                           what, text);
  }
  return ATTN_OK;
}

// Appends the names of the symbols `dim` uses to `names` (each once, at most `capacity`).
static void collect_symbols(const attn_graph *graph, attn_dim dim, const char **names,
                            uint32_t *inout_count, uint32_t capacity) {
  const attn_dim_expr *e = attn_graph_dim_expr(graph, dim);
  if (!e)
    return;
  if (e->kind != ATTN_DIM_SYMBOL) {
    collect_symbols(graph, e->lhs, names, inout_count, capacity);
    collect_symbols(graph, e->rhs, names, inout_count, capacity);
    return;
  }
  for (uint32_t i = 0; i < *inout_count; i++)
    if (names[i] == e->name)
      return;
  if (*inout_count < capacity)
    names[(*inout_count)++] = e->name;
}

// "input 'x': expected i64[B, T] (B=2), got i64[2, 3, 4]", listing the bound symbols.
static attn_status input_mismatch(const attn_graph *graph, const attn_tensor *inputs,
                                  const int64_t *symbols, attn_diag *diag, uint32_t index,
                                  const char *detail) {
  const attn_value *value = attn_graph_value(graph, graph->inputs[index]);
  const attn_tensor *given = &inputs[index];
  char want[192], have[192], bindings[192] = "";
  attn_graph_type_format(graph, &value->type, want, sizeof(want));
  if ((unsigned)given->dtype < ATTN_DTYPE_COUNT && given->rank <= ATTN_MAX_RANK)
    attn_tensor_format_type(given->dtype, given->rank, given->dims, have, sizeof(have));
  else
    snprintf(have, sizeof(have), "an invalid tensor");
  size_t used = 0;
  const char *names[4 * ATTN_MAX_RANK];
  uint32_t symbol_count = 0;
  for (uint32_t d = 0; d < value->type.rank; d++)
    collect_symbols(graph, value->type.dims[d], names, &symbol_count, 4 * ATTN_MAX_RANK);
  for (uint32_t i = 0; i < symbol_count && used < sizeof(bindings); i++) {
    uint32_t symbol;
    if (!attn_graph_find_symbol(graph, names[i], &symbol) || symbols[symbol] < 0)
      continue;
    used += (size_t)snprintf(bindings + used, sizeof(bindings) - used, "%s%s=%" PRId64,
                             used ? ", " : " (", names[i], symbols[symbol]);
  }
  if (used && used < sizeof(bindings))
    snprintf(bindings + used, sizeof(bindings) - used, ")");
  return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                         "input '%s': expected %s%s, got %s%s", value->name, want, bindings, have,
                         detail);
}

attn_status attn_interp_bind_inputs(const attn_graph *graph, const attn_tensor *inputs,
                                    int64_t *symbols, attn_diag *diag) {
  if (graph->input_count && !inputs)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "the graph has %u inputs but none were given", graph->input_count);
  // Bind symbols first, so that an input whose dims are expressions (T_past + T) can be
  // checked against symbols bound by a later input.
  for (uint32_t i = 0; i < graph->input_count; i++) {
    const attn_type *type = &attn_graph_value(graph, graph->inputs[i])->type;
    const attn_tensor *given = &inputs[i];
    if (given->rank != type->rank)
      continue;
    for (uint32_t d = 0; d < type->rank; d++) {
      const attn_dim_expr *e = attn_graph_dim_expr(graph, type->dims[d]);
      if (e && e->kind == ATTN_DIM_SYMBOL && symbols[e->symbol] < 0 && given->dims[d] >= 0)
        symbols[e->symbol] = given->dims[d];
    }
  }
  for (uint32_t i = 0; i < graph->input_count; i++) {
    attn_value_id id = graph->inputs[i];
    const attn_value *value = attn_graph_value(graph, id);
    const attn_tensor *given = &inputs[i];
    if ((unsigned)given->dtype >= ATTN_DTYPE_COUNT || given->rank != value->type.rank)
      return input_mismatch(graph, inputs, symbols, diag, i, "");
    for (uint32_t d = 0; d < given->rank; d++) {
      int64_t want;
      if (attn_graph_dim_eval(graph, value->type.dims[d], symbols, &want) != ATTN_OK) {
        const char *symbol = unbound_symbol(graph, value->type.dims[d], symbols);
        char detail[128];
        snprintf(detail, sizeof(detail), " (symbol '%s' is unbound)", symbol ? symbol : "?");
        return input_mismatch(graph, inputs, symbols, diag, i,
                              symbol ? detail : " (a dim does not evaluate)");
      }
      if (given->dims[d] != want)
        return input_mismatch(graph, inputs, symbols, diag, i, "");
    }
    bool both_int = attn_interp_is_int(given->dtype) && attn_interp_is_int(value->type.dtype);
    if (given->dtype != value->type.dtype && !both_int)
      return input_mismatch(graph, inputs, symbols, diag, i, "");
    int64_t count = attn_tensor_element_count(given);
    if (!given->data && count > 0)
      return input_mismatch(graph, inputs, symbols, diag, i, " with no data");
  }
  return ATTN_OK;
}

// Binds and checks the inputs, then borrows each, or converts it to its declared integer dtype.
static attn_status bind_inputs(interp_state *st) {
  const attn_graph *graph = st->graph;
  ATTN_RETURN_IF_ERROR(attn_interp_bind_inputs(graph, st->args->inputs, st->symbols, st->diag));
  for (uint32_t i = 0; i < graph->input_count; i++) {
    attn_value_id id = graph->inputs[i];
    const attn_value *value = attn_graph_value(graph, id);
    const attn_tensor *given = &st->args->inputs[i];
    attn_tensor *slot = &st->values[id.index];
    if (given->dtype == value->type.dtype) {
      *slot = *given;
      st->states[id.index] = VALUE_BORROWED;
      continue;
    }
    ATTN_RETURN_IF_ERROR(attn_interp_convert_input(graph, i, given, st->allocator, st->diag, slot));
    st->states[id.index] = VALUE_OWNED;
  }
  return ATTN_OK;
}

attn_status attn_interp_convert_input(const attn_graph *graph, uint32_t index,
                                      const attn_tensor *given, attn_allocator allocator,
                                      attn_diag *diag, attn_tensor *out) {
  const attn_value *value = attn_graph_value(graph, graph->inputs[index]);
  if (attn_tensor_alloc(allocator, value->type.dtype, given->rank, given->dims, out) != ATTN_OK)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  int64_t count = attn_tensor_element_count(given);
  attn_tensor probe = {value->type.dtype, 0, {0}, &(int64_t){0}};
  for (int64_t e = 0; e < count; e++) {
    int64_t v = attn_interp_load_int(given, e);
    attn_interp_store_int(&probe, 0, v);
    if (attn_interp_load_int(&probe, 0) != v) {
      attn_tensor_free(allocator, out);
      return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "input '%s': element %" PRId64 " = %" PRId64
                             " does not fit the declared %s",
                             value->name, e, v, attn_dtype_name(value->type.dtype));
    }
    attn_interp_store_int(out, e, v);
  }
  return ATTN_OK;
}

static void release_value(interp_state *st, uint32_t index) {
  if (st->states[index] == VALUE_OWNED)
    attn_tensor_free(st->allocator, &st->values[index]);
  if (st->states[index] == VALUE_OWNED || st->states[index] == VALUE_BORROWED)
    st->states[index] = VALUE_RELEASED;
}

static attn_status internal_error(interp_state *st, const attn_node *node, const char *what) {
  return attn_diag_error(st->diag, node->loc, ATTN_ERROR_INVALID_GRAPH, "%s: %s",
                         attn_op_get_info(node->op) ? attn_op_get_info(node->op)->name : "?", what);
}

attn_status attn_interp_eval_node(const attn_graph *graph, attn_node_id id,
                                  const attn_tensor *inputs, const int64_t *symbol_values,
                                  const attn_tensor *weight, attn_allocator allocator,
                                  attn_diag *diag, attn_tensor *out_outputs,
                                  bool *out_is_borrowed) {
  const attn_node *node = attn_graph_node(graph, id);
  const attn_op_info *info = attn_op_get_info(node->op);
  *out_is_borrowed = false;
  for (uint32_t i = 0; i < node->output_count; i++)
    memset(&out_outputs[i], 0, sizeof(out_outputs[i]));
  if (!info)
    return attn_diag_error(diag, node->loc, ATTN_ERROR_INVALID_GRAPH,
                           "?: invalid op (run the verifier)");
  for (uint32_t i = 0; i < node->output_count; i++)
    ATTN_RETURN_IF_ERROR(eval_type(graph, symbol_values, diag,
                                   &graph->values[node->outputs[i].index].type, node->loc,
                                   info->name, &out_outputs[i]));
  attn_eval_ctx ctx = {
      .graph = graph,
      .node = node,
      .attrs = node->attrs ? node->attrs : attn_attrs_get_info(info->attrs_kind)->defaults,
      .inputs = inputs,
      .input_count = node->input_count,
      .outputs = out_outputs,
      .output_count = node->output_count,
      .symbol_values = symbol_values,
      .weight = weight,
      .allocator = allocator,
      .diag = diag,
  };
  attn_status status = ATTN_OK;
  if (!(info->flags & ATTN_OP_LEAF))
    for (uint32_t i = 0; i < node->output_count && status == ATTN_OK; i++)
      status = attn_interp_alloc_output(&ctx, i);
  if (status == ATTN_OK)
    status = eval_fns[node->op](&ctx);
  if (status != ATTN_OK) {
    if (!ctx.is_output_borrowed)
      for (uint32_t i = 0; i < node->output_count; i++)
        attn_tensor_free(allocator, &out_outputs[i]);
    return status;
  }
  *out_is_borrowed = ctx.is_output_borrowed;
  return ATTN_OK;
}

static attn_status run_node(interp_state *st, uint32_t n) {
  const attn_graph *graph = st->graph;
  const attn_node *node = &graph->nodes[n];
  const attn_op_info *info = attn_op_get_info(node->op);
  if (!info)
    return internal_error(st, node, "invalid op (run the verifier)");
  if (node->input_count > MAX_NODE_INPUTS || node->output_count > MAX_NODE_OUTPUTS ||
      node->output_count == 0)
    return internal_error(st, node, "too many inputs or outputs (run the verifier)");
  attn_tensor inputs[MAX_NODE_INPUTS];
  attn_tensor outputs[MAX_NODE_OUTPUTS];
  for (uint32_t i = 0; i < node->input_count; i++) {
    uint32_t v = node->inputs[i].index;
    if (v == 0 || v >= graph->value_count ||
        (st->states[v] != VALUE_OWNED && st->states[v] != VALUE_BORROWED))
      return internal_error(st, node, "reads a value that is not computed (run the verifier)");
    inputs[i] = st->values[v];
  }
  for (uint32_t i = 0; i < node->output_count; i++) {
    uint32_t v = node->outputs[i].index;
    if (v == 0 || v >= graph->value_count || st->states[v] != VALUE_PENDING)
      return internal_error(st, node, "output value is invalid (run the verifier)");
  }
  bool is_borrowed;
  ATTN_RETURN_IF_ERROR(attn_interp_eval_node(graph, (attn_node_id){n}, inputs, st->symbols,
                                             st->args->weights ? &st->args->weights[n] : NULL,
                                             st->allocator, st->diag, outputs, &is_borrowed));
  for (uint32_t i = 0; i < node->output_count; i++) {
    uint32_t v = node->outputs[i].index;
    st->values[v] = outputs[i];
    st->states[v] = is_borrowed ? VALUE_BORROWED : VALUE_OWNED;
  }
  // Free what no later node reads: inputs read for the last time, outputs nobody reads.
  for (uint32_t i = 0; i < node->input_count; i++)
    if (st->last_use[node->inputs[i].index] <= n)
      release_value(st, node->inputs[i].index);
  for (uint32_t i = 0; i < node->output_count; i++)
    if (st->last_use[node->outputs[i].index] <= n)
      release_value(st, node->outputs[i].index);
  return ATTN_OK;
}

// Moves (or copies) the graph outputs into `out_outputs`.
static attn_status take_outputs(interp_state *st, attn_tensor *out_outputs) {
  const attn_graph *graph = st->graph;
  for (uint32_t i = 0; i < graph->output_count; i++) {
    uint32_t v = graph->outputs[i].index;
    if (v == 0 || v >= graph->value_count ||
        (st->states[v] != VALUE_OWNED && st->states[v] != VALUE_BORROWED))
      return attn_diag_error(st->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                             "output '%s' is not computed (run the verifier)",
                             graph->output_names[i]);
    bool used_later = false;
    for (uint32_t j = i + 1; j < graph->output_count; j++)
      used_later = used_later || graph->outputs[j].index == v;
    attn_tensor *value = &st->values[v];
    if (st->states[v] == VALUE_OWNED && !used_later) {
      out_outputs[i] = *value;
      value->data = NULL;
      st->states[v] = VALUE_RELEASED;
      continue;
    }
    if (attn_tensor_alloc(st->allocator, value->dtype, value->rank, value->dims, &out_outputs[i]) !=
        ATTN_OK)
      return attn_diag_error(st->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    size_t size = 0;
    if (attn_tensor_size_bytes(value, &size) && size)
      memcpy(out_outputs[i].data, value->data, size);
  }
  return ATTN_OK;
}

// Whether node `n` is live and some output of it is read by a needed node or is a graph output.
static bool is_needed(const interp_state *st, uint32_t n) {
  const attn_node *node = &st->graph->nodes[n];
  if (node->is_dead)
    return false;
  for (uint32_t i = 0; i < node->output_count; i++)
    if (node->outputs[i].index < st->graph->value_count && st->last_use[node->outputs[i].index])
      return true;
  return false;
}

static attn_status run(interp_state *st, attn_tensor *out_outputs) {
  const attn_graph *graph = st->graph;
  for (uint32_t s = 0; s < graph->symbol_count; s++)
    st->symbols[s] = st->args->symbol_values ? st->args->symbol_values[s] : -1;
  // Walk back from the outputs: a node runs only when something needed reads one of its outputs,
  // and the first reader met on the way back is a value's last use.
  for (uint32_t i = 0; i < graph->output_count; i++)
    if (graph->outputs[i].index < graph->value_count)
      st->last_use[graph->outputs[i].index] = UINT32_MAX;
  for (uint32_t n = graph->node_count; n-- > 1;) {
    if (!is_needed(st, n))
      continue;
    const attn_node *node = &graph->nodes[n];
    for (uint32_t i = 0; i < node->input_count; i++)
      if (node->inputs[i].index < graph->value_count && st->last_use[node->inputs[i].index] == 0)
        st->last_use[node->inputs[i].index] = n;
  }
  ATTN_RETURN_IF_ERROR(bind_inputs(st));
  for (uint32_t n = 1; n < graph->node_count; n++)
    if (is_needed(st, n))
      ATTN_RETURN_IF_ERROR(run_node(st, n));
  return take_outputs(st, out_outputs);
}

attn_status attn_interp_run(const attn_graph *graph, const attn_interp_args *args,
                            attn_allocator allocator, attn_diag *diag, attn_tensor *out_outputs) {
  memset(out_outputs, 0, graph->output_count * sizeof(*out_outputs));
  interp_state st = {graph, args, allocator, diag, NULL, NULL, NULL, NULL};
  size_t symbol_count = graph->symbol_count + 1, value_count = graph->value_count;
  st.symbols = attn_allocator_calloc(allocator, symbol_count, sizeof(*st.symbols));
  st.values = attn_allocator_calloc(allocator, value_count, sizeof(*st.values));
  st.states = attn_allocator_calloc(allocator, value_count, sizeof(*st.states));
  st.last_use = attn_allocator_calloc(allocator, value_count, sizeof(*st.last_use));
  attn_status status = ATTN_OK;
  if (!st.symbols || !st.values || !st.states || !st.last_use)
    status = attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  else
    status = run(&st, out_outputs);
  if (status != ATTN_OK)
    for (uint32_t i = 0; i < graph->output_count; i++)
      attn_tensor_free(allocator, &out_outputs[i]);
  for (uint32_t v = 0; st.states && st.values && v < value_count; v++)
    if (st.states[v] == VALUE_OWNED)
      attn_tensor_free(allocator, &st.values[v]);
  attn_allocator_free(allocator, st.symbols, symbol_count * sizeof(*st.symbols));
  attn_allocator_free(allocator, st.values, value_count * sizeof(*st.values));
  attn_allocator_free(allocator, st.states, value_count * sizeof(*st.states));
  attn_allocator_free(allocator, st.last_use, value_count * sizeof(*st.last_use));
  return status;
}
