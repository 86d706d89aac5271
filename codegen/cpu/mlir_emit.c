// Writes the MLIR of one kernel of a partitioned graph: a func.func @attn_mlir_body over one
// memref per operand (constant dims static, symbolic ones dynamic) and the row range [begin,
// end), whose scf loops walk the kernel's iteration space and compute its nodes with arith. The
// innermost loop runs along the last, contiguous dim so that LLVM's loop vectoriser can take it.
//
// Each elementwise value is computed at the point where it is needed: evaluating value v at
// index tuple idx (in v's own dims) evaluates its producer's inputs at idx projected onto their
// dims (a constant dim of 1 reads index 0: that is broadcasting), loads it from its operand, or
// computes it (iota). Norms and reductions loop over their reduced dims inside a row and read
// their input through the same evaluation, which fuses the prologue; their result then stands
// for the anchor's value while the epilogue and the outputs are evaluated.
//
// exp, log, tanh, erf and sin/cos are polynomials written out in MLIR (functions the LLVM
// inliner folds in), so no libm call is made and the loops stay vectorisable.
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codegen/cpu/mlir.h"

// ---- text ------------------------------------------------------------------------------------

typedef struct text {
  char *data;
  size_t length, capacity;
  bool failed; // out of memory
} text;

static void text_vappend(text *t, const char *format, va_list args) ATTN_PRINTF(2, 0);
static void text_vappend(text *t, const char *format, va_list args) {
  if (t->failed)
    return;
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(NULL, 0, format, copy);
  va_end(copy);
  if (n < 0) {
    t->failed = true;
    return;
  }
  size_t need = t->length + (size_t)n + 1;
  if (need > t->capacity) {
    size_t capacity = t->capacity ? t->capacity : 4096;
    while (capacity < need)
      capacity *= 2;
    char *data = realloc(t->data, capacity);
    if (!data) {
      t->failed = true;
      return;
    }
    t->data = data;
    t->capacity = capacity;
  }
  vsnprintf(t->data + t->length, (size_t)n + 1, format, args);
  t->length += (size_t)n;
}

static void text_append(text *t, const char *format, ...) ATTN_PRINTF(2, 3);
static void text_append(text *t, const char *format, ...) {
  va_list args;
  va_start(args, format);
  text_vappend(t, format, args);
  va_end(args);
}

// ---- the emitter -----------------------------------------------------------------------------

// An SSA value's name: "%v12", "%v12#1", "%a0".
typedef struct ssa {
  char s[24];
} ssa;

typedef struct dim_entry {
  attn_dim dim;
  ssa value;
} dim_entry;

enum { DIM_CACHE_MAX = 64 };

typedef struct emitter {
  const attn_graph *graph;
  uint32_t kernel;
  const attn_kernel_io *io;
  attn_diag *diag;
  attn_status status; // the first error; later ones are dropped
  // The function is assembled from `entry` (dims and constants, defined once at the top so they
  // dominate every use) and `body` (the loops); `module` holds what goes after it.
  text entry, body, module;
  uint32_t next; // next %v number
  uint32_t operand_count;
  attn_value_id operands[ATTN_MAX_RANK * 32];
  dim_entry dims[DIM_CACHE_MAX];
  uint32_t dim_count;
  // While a norm's epilogue is evaluated: the anchor's output value and its SSA value.
  uint32_t anchor_value;
  ssa anchor;
  bool uses_exp, uses_log, uses_erf, uses_tanh, uses_pow, uses_sincos;
} emitter;

static void fail(emitter *e, attn_status status, const char *format, ...) ATTN_PRINTF(3, 4);
static void fail(emitter *e, attn_status status, const char *format, ...) {
  if (e->status != ATTN_OK)
    return;
  va_list args;
  va_start(args, format);
  e->status = attn_diag_verror(e->diag, ATTN_LOC_NONE, status, format, args);
  va_end(args);
}

static const char *op_name(attn_op op) {
  const attn_op_info *info = attn_op_get_info(op);
  return info ? info->name : "?";
}

static void unsupported_op(emitter *e, const attn_node *node, const char *why) {
  fail(e, ATTN_ERROR_UNSUPPORTED, "mlir: kernel k%u (%s): op '%s' %s", e->kernel,
       attn_kernel_kind_name(e->graph->kernels[e->kernel].kind), op_name(node->op), why);
}

static ssa fresh(emitter *e) {
  ssa v;
  snprintf(v.s, sizeof(v.s), "%%v%u", e->next++);
  return v;
}

// Result `part` of the multi-result op whose first value number is `id` ("%v12#1").
static ssa result_part(uint32_t id, int part) {
  ssa v;
  snprintf(v.s, sizeof(v.s), "%%v%u#%d", id, part);
  return v;
}

static void emit(emitter *e, const char *format, ...) ATTN_PRINTF(2, 3);
static void emit(emitter *e, const char *format, ...) {
  va_list args;
  va_start(args, format);
  text_vappend(&e->body, format, args);
  va_end(args);
}

static void emit_entry(emitter *e, const char *format, ...) ATTN_PRINTF(2, 3);
static void emit_entry(emitter *e, const char *format, ...) {
  va_list args;
  va_start(args, format);
  text_vappend(&e->entry, format, args);
  va_end(args);
}

// ---- constants and types ---------------------------------------------------------------------

static ssa const_index(emitter *e, int64_t value) {
  ssa r = fresh(e);
  emit_entry(e, "    %s = arith.constant %" PRId64 " : index\n", r.s, value);
  return r;
}

static ssa const_int(emitter *e, int64_t value, const char *type) {
  ssa r = fresh(e);
  if (strcmp(type, "i1") == 0)
    emit_entry(e, "    %s = arith.constant %s\n", r.s, value ? "true" : "false");
  else
    emit_entry(e, "    %s = arith.constant %" PRId64 " : %s\n", r.s, value, type);
  return r;
}

// Float constants are written as their bit patterns, so they are exact.
static ssa const_f32(emitter *e, double value) {
  float f = (float)value;
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  ssa r = fresh(e);
  emit_entry(e, "    %s = arith.constant 0x%08" PRIX32 " : f32\n", r.s, bits);
  return r;
}

static ssa const_f64(emitter *e, double value) {
  uint64_t bits;
  memcpy(&bits, &value, sizeof(bits));
  ssa r = fresh(e);
  emit_entry(e, "    %s = arith.constant 0x%016" PRIX64 " : f64\n", r.s, bits);
  return r;
}

static bool is_float(attn_dtype dtype) {
  return dtype == ATTN_DTYPE_F32;
}

static bool is_int(attn_dtype dtype) {
  return dtype == ATTN_DTYPE_I64 || dtype == ATTN_DTYPE_I32 || dtype == ATTN_DTYPE_I8;
}

// How a dtype sits in memory; NULL when the MLIR path does not handle it.
static const char *storage_type(attn_dtype dtype) {
  switch (dtype) {
  case ATTN_DTYPE_F32:
    return "f32";
  case ATTN_DTYPE_I64:
    return "i64";
  case ATTN_DTYPE_I32:
    return "i32";
  case ATTN_DTYPE_I8:
  case ATTN_DTYPE_BOOL:
    return "i8";
  default:
    return NULL;
  }
}

// How a dtype is computed with: f32, every integer as i64 (saturated to its dtype after each
// op), bool as i1.
static const char *reg_type(attn_dtype dtype) {
  return is_float(dtype) ? "f32" : dtype == ATTN_DTYPE_BOOL ? "i1" : "i64";
}

static bool check_dtype(emitter *e, attn_dtype dtype) {
  if (storage_type(dtype))
    return true;
  fail(e, ATTN_ERROR_UNSUPPORTED, "mlir: kernel k%u: dtype %s is not supported", e->kernel,
       attn_dtype_name(dtype));
  return false;
}

static const attn_type *value_type(const emitter *e, attn_value_id v) {
  return &attn_graph_value(e->graph, v)->type;
}

static const attn_type *operand_type(const emitter *e, uint32_t k) {
  return value_type(e, e->operands[k]);
}

static void memref_type(const emitter *e, uint32_t k, char *out, size_t size) {
  const attn_type *t = operand_type(e, k);
  size_t n = (size_t)snprintf(out, size, "memref<");
  for (uint32_t d = 0; d < t->rank && n < size; d++) {
    if (attn_dim_is_constant(t->dims[d]))
      n += (size_t)snprintf(out + n, size - n, "%" PRId64 "x", t->dims[d]);
    else
      n += (size_t)snprintf(out + n, size - n, "?x");
  }
  if (n < size)
    snprintf(out + n, size - n, "%s>", storage_type(t->dtype));
}

// ---- small op helpers ------------------------------------------------------------------------

static ssa op1(emitter *e, const char *op, ssa a, const char *type) {
  ssa r = fresh(e);
  emit(e, "    %s = %s %s : %s\n", r.s, op, a.s, type);
  return r;
}

static ssa op2(emitter *e, const char *op, ssa a, ssa b, const char *type) {
  ssa r = fresh(e);
  emit(e, "    %s = %s %s, %s : %s\n", r.s, op, a.s, b.s, type);
  return r;
}

// An op with fast-math flags (reassoc lets LLVM vectorise reductions; contract lets it fuse).
static ssa op2_fast(emitter *e, const char *op, ssa a, ssa b, const char *type, const char *flags) {
  ssa r = fresh(e);
  emit(e, "    %s = %s %s, %s fastmath<%s> : %s\n", r.s, op, a.s, b.s, flags, type);
  return r;
}

static ssa cmp(emitter *e, const char *op, const char *predicate, ssa a, ssa b, const char *type) {
  ssa r = fresh(e);
  emit(e, "    %s = %s %s, %s, %s : %s\n", r.s, op, predicate, a.s, b.s, type);
  return r;
}

static ssa select_value(emitter *e, ssa condition, ssa a, ssa b, const char *type) {
  ssa r = fresh(e);
  emit(e, "    %s = arith.select %s, %s, %s : %s\n", r.s, condition.s, a.s, b.s, type);
  return r;
}

static ssa convert(emitter *e, const char *op, ssa a, const char *from, const char *to) {
  ssa r = fresh(e);
  emit(e, "    %s = %s %s : %s to %s\n", r.s, op, a.s, from, to);
  return r;
}

static ssa call1(emitter *e, const char *function, ssa a, const char *type) {
  ssa r = fresh(e);
  emit(e, "    %s = func.call @%s(%s) : (%s) -> %s\n", r.s, function, a.s, type, type);
  return r;
}

static ssa call_exp(emitter *e, ssa x) {
  e->uses_exp = true;
  return call1(e, "attn_exp", x, "f32");
}

static ssa call_log(emitter *e, ssa x) {
  e->uses_log = true;
  return call1(e, "attn_log", x, "f32");
}

// ---- dims ------------------------------------------------------------------------------------

// The run-time value (index, defined in the entry) of `dim`: a constant, the dim of an operand
// declared with it, or an expression over those.
static ssa dim_value(emitter *e, attn_dim dim) {
  if (attn_dim_is_constant(dim))
    return const_index(e, dim);
  for (uint32_t i = 0; i < e->dim_count; i++)
    if (e->dims[i].dim == dim)
      return e->dims[i].value;
  ssa r = {{0}};
  bool found = false;
  for (uint32_t k = 0; k < e->operand_count && !found; k++) {
    const attn_type *t = operand_type(e, k);
    for (uint32_t d = 0; d < t->rank && !found; d++) {
      if (t->dims[d] != dim)
        continue;
      char type[256];
      memref_type(e, k, type, sizeof(type));
      ssa axis = const_index(e, d);
      r = fresh(e);
      emit_entry(e, "    %s = memref.dim %%a%u, %s : %s\n", r.s, k, axis.s, type);
      found = true;
    }
  }
  if (!found) {
    const attn_dim_expr *expr = attn_graph_dim_expr(e->graph, dim);
    if (!expr || expr->kind == ATTN_DIM_SYMBOL) {
      fail(e, ATTN_ERROR_UNSUPPORTED,
           "mlir: kernel k%u: symbol '%s' is not a dim of any operand, so the kernel cannot "
           "know it",
           e->kernel, expr && expr->name ? expr->name : "?");
      return const_index(e, 0);
    }
    ssa lhs = dim_value(e, expr->lhs), rhs = dim_value(e, expr->rhs);
    static const char *const ops[] = {[ATTN_DIM_ADD] = "arith.addi",
                                      [ATTN_DIM_SUB] = "arith.subi",
                                      [ATTN_DIM_MUL] = "arith.muli",
                                      [ATTN_DIM_DIV] = "arith.divsi"};
    r = fresh(e);
    emit_entry(e, "    %s = %s %s, %s : index\n", r.s, ops[expr->kind], lhs.s, rhs.s);
  }
  if (e->dim_count < DIM_CACHE_MAX)
    e->dims[e->dim_count++] = (dim_entry){dim, r};
  return r;
}

static void type_dims(emitter *e, const attn_type *t, ssa *out) {
  for (uint32_t d = 0; d < t->rank; d++)
    out[d] = dim_value(e, t->dims[d]);
}

// The product of `count` entry values, in the entry (1 for none).
static ssa product(emitter *e, const ssa *dims, uint32_t count) {
  if (count == 0)
    return const_index(e, 1);
  ssa r = dims[0];
  for (uint32_t i = 1; i < count; i++) {
    ssa p = fresh(e);
    emit_entry(e, "    %s = arith.muli %s, %s : index\n", p.s, r.s, dims[i].s);
    r = p;
  }
  return r;
}

static ssa index_to_i64(emitter *e, ssa index) {
  return convert(e, "arith.index_cast", index, "index", "i64");
}

// Row-major coordinates of `linear` in a box of `dims`.
static void delinearize(emitter *e, ssa linear, const ssa *dims, uint32_t count, ssa *out) {
  for (uint32_t d = count; d-- > 0;) {
    if (d == 0) {
      out[0] = linear;
      break;
    }
    out[d] = op2(e, "arith.remui", linear, dims[d], "index");
    linear = op2(e, "arith.divui", linear, dims[d], "index");
  }
}

// Opens loops over every point of a box of `count` dims, writing the coordinates to `idx`: one
// loop over the flattened leading dims and one over the last (contiguous) dim. Returns how many
// loops box_end must close.
static uint32_t box_begin(emitter *e, const ssa *dims, uint32_t count, ssa *idx) {
  if (count == 0)
    return 0;
  ssa zero = const_index(e, 0), one = const_index(e, 1);
  uint32_t loops = 0;
  if (count > 1) {
    ssa outer = product(e, dims, count - 1);
    ssa q = fresh(e);
    emit(e, "    scf.for %s = %s to %s step %s {\n", q.s, zero.s, outer.s, one.s);
    delinearize(e, q, dims, count - 1, idx);
    loops++;
  }
  idx[count - 1] = fresh(e);
  emit(e, "    scf.for %s = %s to %s step %s {\n", idx[count - 1].s, zero.s, dims[count - 1].s,
       one.s);
  return loops + 1;
}

static void box_end(emitter *e, uint32_t loops) {
  for (uint32_t i = 0; i < loops; i++)
    emit(e, "    }\n");
}

// The loop over the rows [begin, end) of the first `parallel` dims of `dims`; the row's
// coordinates go to idx[0..parallel).
static void rows_begin(emitter *e, const ssa *dims, uint32_t parallel, ssa *idx) {
  ssa one = const_index(e, 1), row = fresh(e);
  emit(e, "    scf.for %s = %%v1 to %%v2 step %s {\n", row.s, one.s);
  if (parallel > 0)
    delinearize(e, row, dims, parallel, idx);
}

static void rows_end(emitter *e) {
  emit(e, "    }\n");
}

// ---- loads, stores and dtypes ----------------------------------------------------------------

static void index_list(const ssa *idx, uint32_t count, char *out, size_t size) {
  size_t n = 0;
  out[0] = 0;
  for (uint32_t i = 0; i < count && n < size; i++)
    n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : "", idx[i].s);
}

// Saturates an i64 register to the range of integer dtype `dtype`.
static ssa fit(emitter *e, ssa v, attn_dtype dtype) {
  if (dtype != ATTN_DTYPE_I32 && dtype != ATTN_DTYPE_I8)
    return v;
  int64_t lo = dtype == ATTN_DTYPE_I32 ? INT32_MIN : INT8_MIN;
  int64_t hi = dtype == ATTN_DTYPE_I32 ? INT32_MAX : INT8_MAX;
  v = op2(e, "arith.maxsi", v, const_int(e, lo, "i64"), "i64");
  return op2(e, "arith.minsi", v, const_int(e, hi, "i64"), "i64");
}

static ssa load_operand(emitter *e, uint32_t k, const ssa *idx) {
  const attn_type *t = operand_type(e, k);
  char type[256], list[512];
  memref_type(e, k, type, sizeof(type));
  index_list(idx, t->rank, list, sizeof(list));
  ssa raw = fresh(e);
  emit(e, "    %s = memref.load %%a%u[%s] : %s\n", raw.s, k, list, type);
  switch (t->dtype) {
  case ATTN_DTYPE_BOOL:
    return cmp(e, "arith.cmpi", "ne", raw, const_int(e, 0, "i8"), "i8");
  case ATTN_DTYPE_I32:
    return convert(e, "arith.extsi", raw, "i32", "i64");
  case ATTN_DTYPE_I8:
    return convert(e, "arith.extsi", raw, "i8", "i64");
  default:
    return raw;
  }
}

static void store_operand(emitter *e, uint32_t k, const ssa *idx, ssa v) {
  const attn_type *t = operand_type(e, k);
  switch (t->dtype) {
  case ATTN_DTYPE_BOOL:
    v = convert(e, "arith.extui", v, "i1", "i8");
    break;
  case ATTN_DTYPE_I32:
    v = convert(e, "arith.trunci", fit(e, v, t->dtype), "i64", "i32");
    break;
  case ATTN_DTYPE_I8:
    v = convert(e, "arith.trunci", fit(e, v, t->dtype), "i64", "i8");
    break;
  default:
    break;
  }
  char type[256], list[512];
  memref_type(e, k, type, sizeof(type));
  index_list(idx, t->rank, list, sizeof(list));
  emit(e, "    memref.store %s, %%a%u[%s] : %s\n", v.s, k, list, type);
}

// Converts a register of dtype `from` to dtype `to` with the reference evaluator's rules: float
// to integer truncates toward zero and saturates (NaN gives 0), anything to bool is "not zero".
static ssa cast_value(emitter *e, ssa v, attn_dtype from, attn_dtype to) {
  if (from == to)
    return v;
  if (to == ATTN_DTYPE_BOOL) {
    if (is_float(from))
      return cmp(e, "arith.cmpf", "une", v, const_f32(e, 0.0), "f32");
    return cmp(e, "arith.cmpi", "ne", v, const_int(e, 0, "i64"), "i64");
  }
  if (is_float(to)) {
    if (from == ATTN_DTYPE_BOOL)
      return convert(e, "arith.uitofp", v, "i1", "f32");
    return convert(e, "arith.sitofp", v, "i64", "f32");
  }
  // to an integer dtype
  if (from == ATTN_DTYPE_BOOL)
    return convert(e, "arith.extui", v, "i1", "i64");
  if (is_int(from))
    return fit(e, v, to);
  double lo = to == ATTN_DTYPE_I8 ? -128.0 : to == ATTN_DTYPE_I32 ? -2147483648.0 : -0x1p63;
  double hi = to == ATTN_DTYPE_I8 ? 127.0 : to == ATTN_DTYPE_I32 ? 2147483647.0 : 0x1p63;
  int64_t lo_int = to == ATTN_DTYPE_I8 ? INT8_MIN : to == ATTN_DTYPE_I32 ? INT32_MIN : INT64_MIN;
  int64_t hi_int = to == ATTN_DTYPE_I8 ? INT8_MAX : to == ATTN_DTYPE_I32 ? INT32_MAX : INT64_MAX;
  ssa t = convert(e, "arith.fptosi", v, "f32", "i64");
  t = select_value(e, cmp(e, "arith.cmpf", "ole", v, const_f32(e, lo), "f32"),
                   const_int(e, lo_int, "i64"), t, "i64");
  t = select_value(e, cmp(e, "arith.cmpf", "oge", v, const_f32(e, hi), "f32"),
                   const_int(e, hi_int, "i64"), t, "i64");
  return select_value(e, cmp(e, "arith.cmpf", "uno", v, v, "f32"), const_int(e, 0, "i64"), t,
                      "i64");
}

// ---- elementwise ops -------------------------------------------------------------------------

static ssa sat_add(emitter *e, ssa a, ssa b) {
  ssa s = op2(e, "arith.addi", a, b, "i64");
  ssa both = op2(e, "arith.andi", op2(e, "arith.xori", a, s, "i64"),
                 op2(e, "arith.xori", b, s, "i64"), "i64");
  ssa zero = const_int(e, 0, "i64");
  ssa overflow = cmp(e, "arith.cmpi", "slt", both, zero, "i64");
  ssa limit = select_value(e, cmp(e, "arith.cmpi", "slt", a, zero, "i64"),
                           const_int(e, INT64_MIN, "i64"), const_int(e, INT64_MAX, "i64"), "i64");
  return select_value(e, overflow, limit, s, "i64");
}

static ssa sat_sub(emitter *e, ssa a, ssa b) {
  ssa s = op2(e, "arith.subi", a, b, "i64");
  ssa both = op2(e, "arith.andi", op2(e, "arith.xori", a, b, "i64"),
                 op2(e, "arith.xori", a, s, "i64"), "i64");
  ssa zero = const_int(e, 0, "i64");
  ssa overflow = cmp(e, "arith.cmpi", "slt", both, zero, "i64");
  ssa limit = select_value(e, cmp(e, "arith.cmpi", "slt", a, zero, "i64"),
                           const_int(e, INT64_MIN, "i64"), const_int(e, INT64_MAX, "i64"), "i64");
  return select_value(e, overflow, limit, s, "i64");
}

static ssa sat_mul(emitter *e, ssa a, ssa b) {
  ssa r = fresh(e);
  emit(e, "    %s:2 = arith.mulsi_extended %s, %s : i64\n", r.s, a.s, b.s);
  ssa lo = result_part(e->next - 1, 0), hi = result_part(e->next - 1, 1);
  ssa sign = op2(e, "arith.shrsi", lo, const_int(e, 63, "i64"), "i64");
  ssa overflow = cmp(e, "arith.cmpi", "ne", hi, sign, "i64");
  ssa zero = const_int(e, 0, "i64");
  ssa negative = op2(e, "arith.xori", cmp(e, "arith.cmpi", "slt", a, zero, "i64"),
                     cmp(e, "arith.cmpi", "slt", b, zero, "i64"), "i1");
  ssa limit = select_value(e, negative, const_int(e, INT64_MIN, "i64"),
                           const_int(e, INT64_MAX, "i64"), "i64");
  return select_value(e, overflow, limit, lo, "i64");
}

// a / b truncated toward zero; MIN / -1 saturates, a division by zero gives 0 (the reference
// evaluator reports an error there).
static ssa safe_div(emitter *e, ssa a, ssa b) {
  ssa zero = const_int(e, 0, "i64"), one = const_int(e, 1, "i64");
  ssa min = const_int(e, INT64_MIN, "i64"), max = const_int(e, INT64_MAX, "i64");
  ssa by_zero = cmp(e, "arith.cmpi", "eq", b, zero, "i64");
  ssa overflow = op2(e, "arith.andi", cmp(e, "arith.cmpi", "eq", a, min, "i64"),
                     cmp(e, "arith.cmpi", "eq", b, const_int(e, -1, "i64"), "i64"), "i1");
  ssa divisor = select_value(e, op2(e, "arith.ori", by_zero, overflow, "i1"), one, b, "i64");
  ssa q = op2(e, "arith.divsi", a, divisor, "i64");
  q = select_value(e, overflow, max, q, "i64");
  return select_value(e, by_zero, zero, q, "i64");
}

// x / (1 + exp(-z)).
static ssa times_sigmoid(emitter *e, ssa x, ssa z) {
  ssa ex = call_exp(e, op1(e, "arith.negf", z, "f32"));
  return op2(e, "arith.divf", x, op2(e, "arith.addf", const_f32(e, 1.0), ex, "f32"), "f32");
}

static ssa unary_float(emitter *e, const attn_node *node, ssa x) {
  ssa one = const_f32(e, 1.0);
  switch (node->op) {
  case ATTN_OP_NEG:
    return op1(e, "arith.negf", x, "f32");
  case ATTN_OP_ABS:
    return op1(e, "math.absf", x, "f32");
  case ATTN_OP_EXP:
    return call_exp(e, x);
  case ATTN_OP_LOG:
    return call_log(e, x);
  case ATTN_OP_SQRT:
    return op1(e, "math.sqrt", x, "f32");
  case ATTN_OP_RSQRT:
    return op2(e, "arith.divf", one, op1(e, "math.sqrt", x, "f32"), "f32");
  case ATTN_OP_TANH:
    e->uses_tanh = e->uses_exp = true;
    return call1(e, "attn_tanh", x, "f32");
  case ATTN_OP_ERF:
    e->uses_erf = true;
    return call1(e, "attn_erf", x, "f32");
  case ATTN_OP_SIGMOID:
    return times_sigmoid(e, one, x);
  case ATTN_OP_SILU:
    return times_sigmoid(e, x, x);
  case ATTN_OP_RELU: {
    ssa zero = const_f32(e, 0.0);
    return select_value(e, cmp(e, "arith.cmpf", "ugt", x, zero, "f32"), x, zero, "f32");
  }
  case ATTN_OP_GELU: {
    if (((const attn_gelu_attrs *)node->attrs)->approximate == ATTN_GELU_TANH) {
      // 0.5 x (1 + tanh(y)) = x sigmoid(2y), y = sqrt(2/pi) (x + 0.044715 x^3).
      ssa x3 = op2(e, "arith.mulf", op2(e, "arith.mulf", x, x, "f32"), x, "f32");
      ssa y =
          op2(e, "arith.addf", x, op2(e, "arith.mulf", x3, const_f32(e, 0.044715), "f32"), "f32");
      ssa two_y = op2(e, "arith.mulf", y, const_f32(e, 2.0 * 0.79788456080286535588), "f32");
      return times_sigmoid(e, x, two_y);
    }
    e->uses_erf = true;
    ssa erf = call1(e, "attn_erf",
                    op2(e, "arith.mulf", x, const_f32(e, 0.70710678118654752440), "f32"), "f32");
    ssa half_x = op2(e, "arith.mulf", x, const_f32(e, 0.5), "f32");
    return op2(e, "arith.mulf", half_x, op2(e, "arith.addf", one, erf, "f32"), "f32");
  }
  default:
    unsupported_op(e, node, "is not a float unary op");
    return x;
  }
}

static ssa unary_int(emitter *e, const attn_node *node, ssa x) {
  ssa zero = const_int(e, 0, "i64");
  ssa min = const_int(e, INT64_MIN, "i64"), max = const_int(e, INT64_MAX, "i64");
  ssa is_min = cmp(e, "arith.cmpi", "eq", x, min, "i64");
  ssa negated = select_value(e, is_min, max, op2(e, "arith.subi", zero, x, "i64"), "i64");
  switch (node->op) {
  case ATTN_OP_NEG:
    return negated;
  case ATTN_OP_ABS:
    return select_value(e, cmp(e, "arith.cmpi", "slt", x, zero, "i64"), negated, x, "i64");
  case ATTN_OP_RELU:
    return op2(e, "arith.maxsi", x, zero, "i64");
  default:
    unsupported_op(e, node, "does not take integers");
    return x;
  }
}

static const char *compare_predicate(attn_op op, bool is_float_compare) {
  switch (op) {
  case ATTN_OP_EQ:
    return is_float_compare ? "oeq" : "eq";
  case ATTN_OP_NE:
    return is_float_compare ? "une" : "ne";
  case ATTN_OP_LT:
    return is_float_compare ? "olt" : "slt";
  case ATTN_OP_LE:
    return is_float_compare ? "ole" : "sle";
  case ATTN_OP_GT:
    return is_float_compare ? "ogt" : "sgt";
  case ATTN_OP_GE:
    return is_float_compare ? "oge" : "sge";
  default:
    return NULL;
  }
}

// A scalar constant's value when `v` is one (its node is a constant of one element).
static bool scalar_constant(const emitter *e, attn_value_id v, double *out) {
  const attn_constant_attrs *c = attn_value_constant(e->graph, v);
  if (!c || !c->data)
    return false;
  for (uint32_t d = 0; d < c->type.rank; d++)
    if (c->type.dims[d] != 1)
      return false;
  switch (c->type.dtype) {
  case ATTN_DTYPE_F32:
    *out = *(const float *)c->data;
    return true;
  default:
    return false;
  }
}

static ssa binary(emitter *e, const attn_node *node, ssa a, ssa b, attn_dtype dtype) {
  attn_op op = node->op;
  if (op == ATTN_OP_AND || op == ATTN_OP_OR)
    return op2(e, op == ATTN_OP_AND ? "arith.andi" : "arith.ori", a, b, "i1");
  const char *predicate = compare_predicate(op, is_float(dtype));
  if (predicate) {
    if (is_float(dtype))
      return cmp(e, "arith.cmpf", predicate, a, b, "f32");
    if (dtype == ATTN_DTYPE_BOOL) { // compared as the integers 0 and 1
      a = convert(e, "arith.extui", a, "i1", "i64");
      b = convert(e, "arith.extui", b, "i1", "i64");
    }
    return cmp(e, "arith.cmpi", predicate, a, b, "i64");
  }
  if (is_float(dtype)) {
    switch (op) {
    case ATTN_OP_ADD:
      return op2(e, "arith.addf", a, b, "f32");
    case ATTN_OP_SUB:
      return op2(e, "arith.subf", a, b, "f32");
    case ATTN_OP_MUL:
      return op2(e, "arith.mulf", a, b, "f32");
    case ATTN_OP_DIV:
      return op2(e, "arith.divf", a, b, "f32");
    case ATTN_OP_MAXIMUM:
      return op2(e, "arith.maximumf", a, b, "f32");
    case ATTN_OP_MINIMUM:
      return op2(e, "arith.minimumf", a, b, "f32");
    case ATTN_OP_POW: {
      double exponent;
      if (scalar_constant(e, node->inputs[1], &exponent)) {
        if (exponent == 1.0)
          return a;
        if (exponent == 2.0)
          return op2(e, "arith.mulf", a, a, "f32");
        if (exponent == 3.0)
          return op2(e, "arith.mulf", op2(e, "arith.mulf", a, a, "f32"), a, "f32");
      }
      e->uses_pow = e->uses_exp = e->uses_log = true;
      ssa r = fresh(e);
      emit(e, "    %s = func.call @attn_pow(%s, %s) : (f32, f32) -> f32\n", r.s, a.s, b.s);
      return r;
    }
    default:
      break;
    }
  } else {
    switch (op) {
    case ATTN_OP_ADD:
      return sat_add(e, a, b);
    case ATTN_OP_SUB:
      return sat_sub(e, a, b);
    case ATTN_OP_MUL:
      return sat_mul(e, a, b);
    case ATTN_OP_DIV:
      return safe_div(e, a, b);
    case ATTN_OP_MAXIMUM:
      return op2(e, "arith.maxsi", a, b, "i64");
    case ATTN_OP_MINIMUM:
      return op2(e, "arith.minsi", a, b, "i64");
    case ATTN_OP_POW:
      unsupported_op(e, node, "is not supported on integers");
      return a;
    default:
      break;
    }
  }
  unsupported_op(e, node, "is not a binary elementwise op");
  return a;
}

// ---- evaluation at a point -------------------------------------------------------------------

static ssa eval_value(emitter *e, attn_value_id v, const ssa *idx);

// idx (coordinates in `from`) projected onto `to`, which broadcasts to `from`: dims aligned from
// the right, a constant dim of 1 reads index 0.
static void project(emitter *e, const attn_type *from, const ssa *idx, const attn_type *to,
                    ssa *out) {
  if (to->rank > from->rank) {
    fail(e, ATTN_ERROR_UNSUPPORTED, "mlir: kernel k%u: an operand of rank %u feeds rank %u",
         e->kernel, to->rank, from->rank);
    return;
  }
  uint32_t shift = from->rank - to->rank;
  for (uint32_t d = 0; d < to->rank; d++)
    out[d] = to->dims[d] == 1 && from->dims[d + shift] != 1 ? const_index(e, 0) : idx[d + shift];
}

static int64_t operand_of(const emitter *e, attn_value_id v) {
  for (uint32_t i = 0; i < e->io->input_count; i++)
    if (e->io->inputs[i].index == v.index)
      return i;
  return -1;
}

static ssa eval_iota(emitter *e, const attn_node *node, const ssa *idx) {
  const attn_iota_attrs *attrs = node->attrs;
  uint32_t rank = attrs->type.rank;
  uint32_t axis = (uint32_t)(attrs->axis < 0 ? attrs->axis + rank : attrs->axis);
  ssa start = dim_value(e, attrs->start);
  ssa i = index_to_i64(e, op2(e, "arith.addi", start, idx[axis], "index"));
  if (is_float(attrs->type.dtype))
    return convert(e, "arith.sitofp", i, "i64", "f32");
  return fit(e, i, attrs->type.dtype);
}

static ssa eval_node(emitter *e, const attn_node *node, attn_value_id v, const ssa *idx) {
  const attn_type *t = value_type(e, v);
  ssa args[3];
  attn_dtype dtypes[3];
  if (node->input_count > 3 || !(attn_op_get_info(node->op)->flags & ATTN_OP_ELEMENTWISE)) {
    unsupported_op(e, node, "cannot be fused into this kernel");
    return const_f32(e, 0.0);
  }
  for (uint32_t i = 0; i < node->input_count; i++) {
    const attn_type *it = value_type(e, node->inputs[i]);
    ssa pidx[ATTN_MAX_RANK];
    project(e, t, idx, it, pidx);
    if (e->status != ATTN_OK)
      return args[0];
    args[i] = eval_value(e, node->inputs[i], pidx);
    dtypes[i] = it->dtype;
  }
  attn_dtype dtype = dtypes[0];
  if (node->op == ATTN_OP_WHERE)
    return select_value(e, args[0], args[1], args[2], reg_type(t->dtype));
  if (node->op == ATTN_OP_NOT)
    return op2(e, "arith.xori", args[0], const_int(e, 1, "i1"), "i1");
  if (node->op == ATTN_OP_CAST)
    return cast_value(e, args[0], dtype, t->dtype);
  if (node->input_count == 1)
    return is_float(dtype) ? unary_float(e, node, args[0])
                           : fit(e, unary_int(e, node, args[0]), t->dtype);
  ssa r = binary(e, node, args[0], args[1], dtype);
  return is_int(t->dtype) ? fit(e, r, t->dtype) : r;
}

static ssa eval_value(emitter *e, attn_value_id v, const ssa *idx) {
  if (e->status != ATTN_OK)
    return const_index(e, 0);
  if (v.index == e->anchor_value)
    return e->anchor;
  const attn_value *value = attn_graph_value(e->graph, v);
  if (!check_dtype(e, value->type.dtype))
    return const_index(e, 0);
  // An input first: a kernel's io may begin after nodes of its own kernel (a GEMM's epilogue
  // reads the GEMM's result), whose values it then takes as inputs.
  int64_t operand = operand_of(e, v);
  const attn_node *producer = attn_value_producer(e->graph, v);
  if (operand < 0 && producer && producer->op == ATTN_OP_IOTA)
    return eval_iota(e, producer, idx);
  if (operand < 0 && producer && producer->kernel == e->kernel &&
      !(attn_op_get_info(producer->op)->flags & ATTN_OP_LEAF))
    return eval_node(e, producer, v, idx);
  double scalar;
  if (scalar_constant(e, v, &scalar))
    return const_f32(e, scalar);
  int64_t k = operand_of(e, v);
  if (k < 0) {
    fail(e, ATTN_ERROR_INVALID_ARGUMENT, "mlir: kernel k%u reads a value that is not an input",
         e->kernel);
    return const_index(e, 0);
  }
  return load_operand(e, (uint32_t)k, idx);
}

// ---- kernels ---------------------------------------------------------------------------------

static uint32_t output_operand(const emitter *e, uint32_t output) {
  return e->io->input_count + output;
}

// The kernel's one node that is not elementwise (its norm or reduction).
static const attn_node *find_anchor(const emitter *e) {
  for (uint32_t n = e->io->first_node; n < e->io->end_node; n++) {
    const attn_node *node = &e->graph->nodes[n];
    if (node->is_dead || node->kernel != e->kernel)
      continue;
    if (!(attn_op_get_info(node->op)->flags & ATTN_OP_ELEMENTWISE))
      return node;
  }
  return NULL;
}

static uint32_t normalize_axis(int64_t axis, uint32_t rank) {
  return (uint32_t)(axis < 0 ? axis + (int64_t)rank : axis);
}

// Every output of the kernel evaluated at idx (coordinates of the outputs' common shape).
static void store_outputs(emitter *e, const ssa *idx) {
  for (uint32_t o = 0; o < e->io->output_count; o++) {
    ssa v = eval_value(e, e->io->outputs[o], idx);
    store_operand(e, output_operand(e, o), idx, v);
  }
}

static uint32_t emit_elementwise(emitter *e) {
  if (e->io->output_count != 1) {
    fail(e, ATTN_ERROR_UNSUPPORTED, "mlir: elementwise kernel k%u has %u outputs", e->kernel,
         e->io->output_count);
    return 0;
  }
  const attn_type *t = value_type(e, e->io->outputs[0]);
  uint32_t parallel = t->rank ? t->rank - 1 : 0;
  ssa dims[ATTN_MAX_RANK], idx[ATTN_MAX_RANK];
  type_dims(e, t, dims);
  rows_begin(e, dims, parallel, idx);
  uint32_t loops = box_begin(e, dims + parallel, t->rank - parallel, idx + parallel);
  store_outputs(e, idx);
  box_end(e, loops);
  rows_end(e);
  return parallel;
}

// A loop over [0, count) carrying `acc` (of `type`): opens it, returns the loop variable, and
// names the carried value in *carried. Close it with loop_yield.
static ssa loop_carry(emitter *e, ssa count, ssa init, const char *type, ssa *carried,
                      ssa *result) {
  ssa zero = const_index(e, 0), one = const_index(e, 1);
  *result = fresh(e);
  ssa iv = fresh(e);
  *carried = fresh(e);
  emit(e, "    %s = scf.for %s = %s to %s step %s iter_args(%s = %s) -> (%s) {\n", result->s, iv.s,
       zero.s, count.s, one.s, carried->s, init.s, type);
  return iv;
}

static void loop_yield(emitter *e, ssa v, const char *type) {
  emit(e, "    scf.yield %s : %s\n    }\n", v.s, type);
}

static ssa to_f64(emitter *e, ssa v) {
  return convert(e, "arith.extf", v, "f32", "f64");
}

static ssa index_to_f64(emitter *e, ssa index) {
  return convert(e, "arith.sitofp", index_to_i64(e, index), "i64", "f64");
}

static uint32_t emit_norm(emitter *e) {
  const attn_node *anchor = find_anchor(e);
  if (!anchor) {
    fail(e, ATTN_ERROR_INVALID_ARGUMENT, "mlir: norm kernel k%u has no norm", e->kernel);
    return 0;
  }
  attn_value_id x = anchor->inputs[0], y = anchor->outputs[0];
  const attn_type *t = value_type(e, y);
  if (t->dtype != ATTN_DTYPE_F32) {
    unsupported_op(e, anchor, "is supported on f32 only");
    return 0;
  }
  for (uint32_t o = 0; o < e->io->output_count; o++) {
    const attn_type *ot = value_type(e, e->io->outputs[o]);
    bool same = ot->rank == t->rank;
    for (uint32_t d = 0; same && d < t->rank; d++)
      same = ot->dims[d] == t->dims[d];
    if (!same) {
      unsupported_op(e, anchor, "has an output of another shape in its kernel");
      return 0;
    }
  }
  uint32_t rank = t->rank;
  uint32_t axis = anchor->op == ATTN_OP_SOFTMAX || anchor->op == ATTN_OP_LOG_SOFTMAX
                      ? normalize_axis(((const attn_axis_attrs *)anchor->attrs)->axis, rank)
                      : normalize_axis(((const attn_norm_attrs *)anchor->attrs)->axis, rank);
  ssa dims[ATTN_MAX_RANK], idx[ATTN_MAX_RANK];
  type_dims(e, t, dims);
  rows_begin(e, dims, axis, idx);
  e->anchor_value = y.index;
  if (anchor->op == ATTN_OP_SOFTMAX || anchor->op == ATTN_OP_LOG_SOFTMAX) {
    // Each position of the dims after the axis is one softmax along it.
    uint32_t loops = box_begin(e, dims + axis + 1, rank - axis - 1, idx + axis + 1);
    ssa n = dims[axis], carried, max, sum;
    idx[axis] = loop_carry(e, n, const_f32(e, -INFINITY), "f32", &carried, &max);
    ssa xv = eval_value(e, x, idx);
    loop_yield(e, op2(e, "arith.maximumf", carried, xv, "f32"), "f32");
    idx[axis] = loop_carry(e, n, const_f64(e, 0.0), "f64", &carried, &sum);
    xv = eval_value(e, x, idx);
    ssa ex = to_f64(e, call_exp(e, op2(e, "arith.subf", xv, max, "f32")));
    loop_yield(e, op2_fast(e, "arith.addf", carried, ex, "f64", "reassoc"), "f64");
    ssa scale;
    if (anchor->op == ATTN_OP_SOFTMAX)
      scale = convert(e, "arith.truncf", op2(e, "arith.divf", const_f64(e, 1.0), sum, "f64"), "f64",
                      "f32");
    else
      scale = call_log(e, convert(e, "arith.truncf", sum, "f64", "f32"));
    uint32_t inner = box_begin(e, &dims[axis], 1, &idx[axis]);
    xv = eval_value(e, x, idx);
    ssa shifted = op2(e, "arith.subf", xv, max, "f32");
    e->anchor = anchor->op == ATTN_OP_SOFTMAX
                    ? op2(e, "arith.mulf", call_exp(e, shifted), scale, "f32")
                    : op2(e, "arith.subf", shifted, scale, "f32");
    store_outputs(e, idx);
    box_end(e, inner);
    box_end(e, loops);
  } else {
    // layernorm, rmsnorm: over the flattened dims axis..rank-1.
    const attn_norm_attrs *attrs = anchor->attrs;
    uint32_t region = rank - axis;
    ssa count = product(e, dims + axis, region);
    ssa count_f = index_to_f64(e, count), carried, sum, mean = {{0}}, squares;
    if (anchor->op == ATTN_OP_LAYERNORM) {
      ssa m = loop_carry(e, count, const_f64(e, 0.0), "f64", &carried, &sum);
      delinearize(e, m, dims + axis, region, idx + axis);
      ssa xv = to_f64(e, eval_value(e, x, idx));
      loop_yield(e, op2_fast(e, "arith.addf", carried, xv, "f64", "reassoc"), "f64");
      mean = op2(e, "arith.divf", sum, count_f, "f64");
    }
    ssa m = loop_carry(e, count, const_f64(e, 0.0), "f64", &carried, &squares);
    delinearize(e, m, dims + axis, region, idx + axis);
    ssa xv = to_f64(e, eval_value(e, x, idx));
    if (anchor->op == ATTN_OP_LAYERNORM)
      xv = op2(e, "arith.subf", xv, mean, "f64");
    ssa square = op2(e, "arith.mulf", xv, xv, "f64");
    loop_yield(e, op2_fast(e, "arith.addf", carried, square, "f64", "reassoc"), "f64");
    ssa variance = op2(e, "arith.divf", squares, count_f, "f64");
    ssa inv = op2(e, "arith.divf", const_f64(e, 1.0),
                  op1(e, "math.sqrt",
                      op2(e, "arith.addf", variance, const_f64(e, attrs->epsilon), "f64"), "f64"),
                  "f64");
    uint32_t loops = box_begin(e, dims + axis, region, idx + axis);
    xv = to_f64(e, eval_value(e, x, idx));
    if (anchor->op == ATTN_OP_LAYERNORM)
      xv = op2(e, "arith.subf", xv, mean, "f64");
    ssa v = op2(e, "arith.mulf", xv, inv, "f64");
    for (uint32_t i = 1; i < anchor->input_count; i++) {
      ssa pidx[ATTN_MAX_RANK];
      const attn_type *wt = value_type(e, anchor->inputs[i]);
      project(e, t, idx, wt, pidx);
      if (e->status != ATTN_OK)
        break;
      ssa w = to_f64(e, eval_value(e, anchor->inputs[i], pidx));
      v = op2(e, i == 1 ? "arith.mulf" : "arith.addf", v, w, "f64");
    }
    e->anchor = convert(e, "arith.truncf", v, "f64", "f32");
    store_outputs(e, idx);
    box_end(e, loops);
  }
  e->anchor_value = 0;
  rows_end(e);
  return axis;
}

static uint32_t emit_reduction(emitter *e) {
  const attn_node *anchor = find_anchor(e);
  if (!anchor || e->io->output_count != 1 || e->io->outputs[0].index != anchor->outputs[0].index) {
    fail(e, ATTN_ERROR_UNSUPPORTED, "mlir: reduction kernel k%u is not one reduction", e->kernel);
    return 0;
  }
  const attn_reduce_attrs *attrs = anchor->attrs;
  attn_value_id x = anchor->inputs[0];
  const attn_type *xt = value_type(e, x), *ot = value_type(e, anchor->outputs[0]);
  attn_dtype dtype = xt->dtype;
  if (!check_dtype(e, dtype))
    return 0;
  bool reduced[ATTN_MAX_RANK] = {false};
  for (uint32_t i = 0; i < attrs->axis_count; i++)
    reduced[normalize_axis(attrs->axes[i], xt->rank)] = true;
  if (attrs->axis_count == 0)
    for (uint32_t d = 0; d < xt->rank; d++)
      reduced[d] = true;
  ssa odims[ATTN_MAX_RANK], oidx[ATTN_MAX_RANK], xdims[ATTN_MAX_RANK], xidx[ATTN_MAX_RANK];
  ssa rdims[ATTN_MAX_RANK], ridx[ATTN_MAX_RANK];
  type_dims(e, ot, odims);
  type_dims(e, xt, xdims);
  rows_begin(e, odims, ot->rank, oidx);
  uint32_t kept = 0, red = 0;
  for (uint32_t d = 0; d < xt->rank; d++) {
    if (reduced[d]) {
      rdims[red++] = xdims[d];
      if (attrs->keepdims)
        kept++;
    } else {
      xidx[d] = oidx[kept++];
    }
  }
  ssa count = product(e, rdims, red);
  const char *rt = reg_type(dtype);
  attn_op op = anchor->op;
  ssa carried, result, v;
  if (op == ATTN_OP_ARGMAX) {
    ssa init = is_float(dtype) ? const_f32(e, -INFINITY) : const_int(e, INT64_MIN, "i64");
    ssa zero = const_int(e, 0, "i64"), zero_index = const_index(e, 0), one = const_index(e, 1);
    result = fresh(e);
    ssa m = fresh(e), best = fresh(e), best_at = fresh(e);
    emit(e, "    %s:2 = scf.for %s = %s to %s step %s iter_args(%s = %s, %s = %s) -> (%s, i64) {\n",
         result.s, m.s, zero_index.s, count.s, one.s, best.s, init.s, best_at.s, zero.s, rt);
    delinearize(e, m, rdims, red, ridx);
    for (uint32_t d = 0, r = 0; d < xt->rank; d++)
      if (reduced[d])
        xidx[d] = ridx[r++];
    v = eval_value(e, x, xidx);
    ssa better;
    if (is_float(dtype)) {
      ssa nan_first = op2(e, "arith.andi", cmp(e, "arith.cmpf", "uno", v, v, "f32"),
                          cmp(e, "arith.cmpf", "ord", best, best, "f32"), "i1");
      better = op2(e, "arith.ori", nan_first, cmp(e, "arith.cmpf", "ogt", v, best, "f32"), "i1");
    } else {
      better = cmp(e, "arith.cmpi", "sgt", v, best, "i64");
    }
    ssa nb = select_value(e, better, v, best, rt);
    ssa na = select_value(e, better, index_to_i64(e, m), best_at, "i64");
    emit(e, "    scf.yield %s, %s : %s, i64\n    }\n", nb.s, na.s, rt);
    v = result_part((uint32_t)strtoul(result.s + 2, NULL, 10), 1);
  } else {
    bool wide = is_float(dtype) && (op == ATTN_OP_SUM || op == ATTN_OP_MEAN);
    const char *acc_type = wide ? "f64" : rt;
    ssa init;
    if (op == ATTN_OP_SUM || op == ATTN_OP_MEAN)
      init = wide ? const_f64(e, 0.0) : const_int(e, 0, "i64");
    else if (is_float(dtype))
      init = const_f32(e, op == ATTN_OP_MAX ? -INFINITY : INFINITY);
    else
      init = const_int(e, op == ATTN_OP_MAX ? INT64_MIN : INT64_MAX, "i64");
    ssa m = loop_carry(e, count, init, acc_type, &carried, &result);
    delinearize(e, m, rdims, red, ridx);
    for (uint32_t d = 0, r = 0; d < xt->rank; d++)
      if (reduced[d])
        xidx[d] = ridx[r++];
    v = eval_value(e, x, xidx);
    ssa next;
    if (wide)
      next = op2_fast(e, "arith.addf", carried, to_f64(e, v), "f64", "reassoc");
    else if (op == ATTN_OP_SUM)
      next = sat_add(e, carried, v);
    else if (is_float(dtype))
      next = op2(e, op == ATTN_OP_MAX ? "arith.maximumf" : "arith.minimumf", carried, v, "f32");
    else
      next = op2(e, op == ATTN_OP_MAX ? "arith.maxsi" : "arith.minsi", carried, v, "i64");
    loop_yield(e, next, acc_type);
    v = result;
    if (op == ATTN_OP_MEAN)
      v = op2(e, "arith.divf", v, index_to_f64(e, count), "f64");
    if (wide)
      v = convert(e, "arith.truncf", v, "f64", "f32");
  }
  store_operand(e, output_operand(e, 0), oidx, v);
  rows_end(e);
  return ot->rank;
}

static const attn_node *single_node(emitter *e) {
  const attn_node *found = NULL;
  for (uint32_t n = e->io->first_node; n < e->io->end_node; n++) {
    const attn_node *node = &e->graph->nodes[n];
    if (node->is_dead || node->kernel != e->kernel)
      continue;
    if (found) {
      fail(e, ATTN_ERROR_UNSUPPORTED, "mlir: kernel k%u has more than one node", e->kernel);
      return NULL;
    }
    found = node;
  }
  if (!found)
    fail(e, ATTN_ERROR_INVALID_ARGUMENT, "mlir: kernel k%u has no node", e->kernel);
  return found;
}

// The output operand holding node output `index`, or -1 when it does not leave the kernel.
static int64_t output_of(const emitter *e, const attn_node *node, uint32_t index) {
  for (uint32_t o = 0; o < e->io->output_count; o++)
    if (e->io->outputs[o].index == node->outputs[index].index)
      return output_operand(e, o);
  return -1;
}

// Python slice start of `attrs` on an axis of run-time size `dim`, clamped to [0, dim].
static ssa slice_start(emitter *e, const attn_slice_attrs *attrs, ssa dim) {
  ssa r = fresh(e);
  ssa start = const_index(e, attrs->start), zero = const_index(e, 0);
  if (attrs->start >= 0) {
    emit_entry(e, "    %s = arith.minsi %s, %s : index\n", r.s, start.s, dim.s);
    return r;
  }
  ssa sum = fresh(e);
  emit_entry(e, "    %s = arith.addi %s, %s : index\n", sum.s, start.s, dim.s);
  emit_entry(e, "    %s = arith.maxsi %s, %s : index\n", r.s, sum.s, zero.s);
  return r;
}

static uint32_t emit_layout(emitter *e) {
  const attn_node *node = single_node(e);
  if (!node)
    return 0;
  uint32_t rank = value_type(e, node->outputs[0])->rank;
  if (node->op == ATTN_OP_CONCAT || node->op == ATTN_OP_SPLIT) {
    uint32_t axis =
        normalize_axis(node->op == ATTN_OP_CONCAT ? ((const attn_axis_attrs *)node->attrs)->axis
                                                  : ((const attn_split_attrs *)node->attrs)->axis,
                       rank);
    // Rows run over the dims before the axis, which every piece shares.
    ssa dims[ATTN_MAX_RANK], idx[ATTN_MAX_RANK];
    type_dims(e, value_type(e, node->outputs[0]), dims);
    rows_begin(e, dims, axis, idx);
    ssa offset = const_index(e, 0);
    uint32_t pieces = node->op == ATTN_OP_CONCAT ? node->input_count : node->output_count;
    for (uint32_t p = 0; p < pieces; p++) {
      attn_value_id piece = node->op == ATTN_OP_CONCAT ? node->inputs[p] : node->outputs[p];
      const attn_type *pt = value_type(e, piece);
      ssa pdims[ATTN_MAX_RANK], pidx[ATTN_MAX_RANK], widx[ATTN_MAX_RANK];
      type_dims(e, pt, pdims);
      int64_t out = node->op == ATTN_OP_CONCAT ? output_of(e, node, 0) : output_of(e, node, p);
      if (out >= 0) {
        for (uint32_t d = 0; d < axis; d++)
          pidx[d] = idx[d];
        uint32_t loops = box_begin(e, pdims + axis, rank - axis, pidx + axis);
        for (uint32_t d = 0; d < rank; d++)
          widx[d] = pidx[d];
        widx[axis] = op2(e, "arith.addi", pidx[axis], offset, "index");
        if (node->op == ATTN_OP_CONCAT) {
          store_operand(e, (uint32_t)out, widx, eval_value(e, piece, pidx));
        } else {
          store_operand(e, (uint32_t)out, pidx, eval_value(e, node->inputs[0], widx));
        }
        box_end(e, loops);
      }
      ssa next = fresh(e);
      emit_entry(e, "    %s = arith.addi %s, %s : index\n", next.s, offset.s, pdims[axis].s);
      offset = next;
    }
    rows_end(e);
    return axis;
  }
  int64_t out = output_of(e, node, 0);
  if (out < 0) {
    fail(e, ATTN_ERROR_INVALID_ARGUMENT, "mlir: kernel k%u has no output", e->kernel);
    return 0;
  }
  const attn_type *ot = value_type(e, node->outputs[0]);
  const attn_type *it = value_type(e, node->inputs[0]);
  ssa dims[ATTN_MAX_RANK], idx[ATTN_MAX_RANK], iidx[ATTN_MAX_RANK];
  type_dims(e, ot, dims);
  uint32_t parallel = rank ? rank - 1 : 0;
  ssa start = {{0}};
  if (node->op == ATTN_OP_SLICE) {
    const attn_slice_attrs *attrs = node->attrs;
    start = slice_start(e, attrs, dim_value(e, it->dims[normalize_axis(attrs->axis, it->rank)]));
  }
  const attn_node *producer = attn_value_producer(e->graph, node->inputs[0]);
  if (node->op == ATTN_OP_RESHAPE && !(producer && producer->op == ATTN_OP_IOTA)) {
    unsupported_op(e, node, "of a value in memory is an alias, not a kernel");
    return 0;
  }
  if (node->op != ATTN_OP_RESHAPE && node->op != ATTN_OP_PERMUTE && node->op != ATTN_OP_SLICE &&
      node->op != ATTN_OP_EXPAND) {
    unsupported_op(e, node, "is not a layout op");
    return 0;
  }
  ssa idims[ATTN_MAX_RANK];
  type_dims(e, it, idims);
  rows_begin(e, dims, parallel, idx);
  uint32_t loops = box_begin(e, dims + parallel, rank - parallel, idx + parallel);
  switch (node->op) {
  case ATTN_OP_PERMUTE: {
    const attn_perm_attrs *attrs = node->attrs;
    for (uint32_t d = 0; d < rank; d++)
      iidx[attrs->perm[d]] = idx[d];
    break;
  }
  case ATTN_OP_SLICE: {
    const attn_slice_attrs *attrs = node->attrs;
    uint32_t axis = normalize_axis(attrs->axis, rank);
    for (uint32_t d = 0; d < rank; d++)
      iidx[d] = idx[d];
    ssa step = op2(e, "arith.muli", idx[axis], const_index(e, attrs->step), "index");
    iidx[axis] = op2(e, "arith.addi", start, step, "index");
    break;
  }
  case ATTN_OP_EXPAND:
    project(e, ot, idx, it, iidx);
    break;
  default: { // a reshape of an iota: the same row-major position in the iota's shape
    ssa linear = const_index(e, 0);
    for (uint32_t d = 0; d < rank; d++)
      linear =
          op2(e, "arith.addi", op2(e, "arith.muli", linear, dims[d], "index"), idx[d], "index");
    delinearize(e, linear, idims, it->rank, iidx);
    break;
  }
  }
  store_operand(e, (uint32_t)out, idx, eval_value(e, node->inputs[0], iidx));
  box_end(e, loops);
  rows_end(e);
  return parallel;
}

static uint32_t emit_rope(emitter *e) {
  const attn_node *node = single_node(e);
  if (!node)
    return 0;
  const attn_rope_attrs *attrs = node->attrs;
  attn_value_id x = node->inputs[0], positions = node->inputs[1];
  const attn_type *t = value_type(e, x), *pt = value_type(e, positions);
  int64_t out = output_of(e, node, 0);
  if (t->dtype != ATTN_DTYPE_F32 || out < 0 || !attn_dim_is_constant(t->dims[t->rank - 1])) {
    unsupported_op(e, node, "is supported on f32 with a constant last dim only");
    return 0;
  }
  int64_t d_count = t->dims[t->rank - 1];
  int64_t rotary = attrs->rotary_dim ? attrs->rotary_dim : d_count, half = rotary / 2;
  // The frequencies theta^(-2i/rotary), computed here in double as the reference does.
  text_append(&e->module,
              "  memref.global \"private\" constant @attn_rope_freq : memref<%" PRId64
              "xf64> = dense<[",
              half);
  for (int64_t i = 0; i < half; i++)
    text_append(&e->module, "%s%.17e", i ? ", " : "",
                pow(attrs->theta, -2.0 * (double)i / (double)rotary));
  text_append(&e->module, "]>\n");
  ssa freq = fresh(e);
  emit_entry(e, "    %s = memref.get_global @attn_rope_freq : memref<%" PRId64 "xf64>\n", freq.s,
             half);
  e->uses_sincos = true;
  uint32_t rank = t->rank, parallel = rank - 1;
  ssa dims[ATTN_MAX_RANK], idx[ATTN_MAX_RANK], pidx[2];
  type_dims(e, t, dims);
  rows_begin(e, dims, parallel, idx);
  pidx[0] = pt->rank == 1 ? idx[rank - 2] : idx[0];
  pidx[1] = idx[rank - 2];
  ssa pos = convert(e, "arith.sitofp", eval_value(e, positions, pidx), "i64", "f64");
  ssa zero = const_index(e, 0), one = const_index(e, 1), i = fresh(e);
  emit(e, "    scf.for %s = %s to %s step %s {\n", i.s, zero.s, const_index(e, half).s, one.s);
  ssa f = fresh(e);
  emit(e, "    %s = memref.load %s[%s] : memref<%" PRId64 "xf64>\n", f.s, freq.s, i.s, half);
  ssa angle = op2(e, "arith.mulf", pos, f, "f64"), sc = fresh(e);
  emit(e, "    %s:2 = func.call @attn_sincos(%s) : (f64) -> (f64, f64)\n", sc.s, angle.s);
  uint32_t sc_id = e->next - 1;
  ssa s = result_part(sc_id, 0), c = result_part(sc_id, 1);
  ssa first, second;
  if (attrs->style == ATTN_ROPE_HALF) {
    first = i;
    second = op2(e, "arith.addi", i, const_index(e, half), "index");
  } else {
    first = op2(e, "arith.muli", i, const_index(e, 2), "index");
    second = op2(e, "arith.addi", first, one, "index");
  }
  ssa xidx[ATTN_MAX_RANK];
  memcpy(xidx, idx, sizeof(xidx));
  xidx[rank - 1] = first;
  ssa x1 = to_f64(e, eval_value(e, x, xidx));
  ssa yidx1[ATTN_MAX_RANK];
  memcpy(yidx1, xidx, sizeof(yidx1));
  xidx[rank - 1] = second;
  ssa x2 = to_f64(e, eval_value(e, x, xidx));
  ssa y1 = op2(e, "arith.subf", op2(e, "arith.mulf", x1, c, "f64"),
               op2(e, "arith.mulf", x2, s, "f64"), "f64");
  ssa y2 = op2(e, "arith.addf", op2(e, "arith.mulf", x2, c, "f64"),
               op2(e, "arith.mulf", x1, s, "f64"), "f64");
  store_operand(e, (uint32_t)out, yidx1, convert(e, "arith.truncf", y1, "f64", "f32"));
  store_operand(e, (uint32_t)out, xidx, convert(e, "arith.truncf", y2, "f64", "f32"));
  emit(e, "    }\n");
  if (rotary < d_count) {
    idx[rank - 1] = fresh(e);
    emit(e, "    scf.for %s = %s to %s step %s {\n", idx[rank - 1].s, const_index(e, rotary).s,
         dims[rank - 1].s, one.s);
    store_operand(e, (uint32_t)out, idx, eval_value(e, x, idx));
    emit(e, "    }\n");
  }
  rows_end(e);
  return parallel;
}

static uint32_t emit_gather(emitter *e) {
  const attn_node *node = single_node(e);
  if (!node)
    return 0;
  attn_value_id data = node->inputs[0], indices = node->inputs[1];
  const attn_type *dt = value_type(e, data), *it = value_type(e, indices);
  const attn_type *ot = value_type(e, node->outputs[0]);
  int64_t out = output_of(e, node, 0);
  if (out < 0) {
    fail(e, ATTN_ERROR_INVALID_ARGUMENT, "mlir: kernel k%u has no output", e->kernel);
    return 0;
  }
  uint32_t axis = normalize_axis(((const attn_axis_attrs *)node->attrs)->axis, dt->rank);
  uint32_t rank = ot->rank, parallel = rank ? rank - 1 : 0;
  ssa dims[ATTN_MAX_RANK], idx[ATTN_MAX_RANK], iidx[ATTN_MAX_RANK], didx[ATTN_MAX_RANK];
  type_dims(e, ot, dims);
  ssa dim = index_to_i64(e, dim_value(e, dt->dims[axis]));
  rows_begin(e, dims, parallel, idx);
  uint32_t loops = box_begin(e, dims + parallel, rank - parallel, idx + parallel);
  for (uint32_t d = 0; d < it->rank; d++)
    iidx[d] = idx[axis + d];
  ssa at = eval_value(e, indices, iidx);
  ssa zero = const_int(e, 0, "i64");
  // Negative indices count from the end; the rest is clamped into the axis.
  at = select_value(e, cmp(e, "arith.cmpi", "slt", at, zero, "i64"),
                    op2(e, "arith.addi", at, dim, "i64"), at, "i64");
  at = op2(e, "arith.maxsi", at, zero, "i64");
  at = op2(e, "arith.minsi", at, op2(e, "arith.subi", dim, const_int(e, 1, "i64"), "i64"), "i64");
  for (uint32_t d = 0; d < axis; d++)
    didx[d] = idx[d];
  didx[axis] = convert(e, "arith.index_cast", at, "i64", "index");
  for (uint32_t d = axis + 1; d < dt->rank; d++)
    didx[d] = idx[d - 1 + it->rank];
  store_operand(e, (uint32_t)out, idx, eval_value(e, data, didx));
  box_end(e, loops);
  rows_end(e);
  return parallel;
}

// ---- the functions the kernels call ----------------------------------------------------------

// exp after Cephes expf: n = floor(x log2(e) + 1/2), r = x - n ln2 (ln2 in two parts), exp(r) by
// a degree-6 polynomial, times 2^n built in the exponent bits. x above ln(FLT_MAX) gives +inf,
// below -103.9 gives 0; NaN stays NaN.
static const char exp_function[] = "  func.func private @attn_exp(%in: f32) -> f32 {\n"
                                   "    %lo = arith.constant -87.3365447505531 : f32\n"
                                   "    %hi = arith.constant 88.3762626647949 : f32\n"
                                   "    %below = arith.cmpf olt, %in, %lo : f32\n"
                                   "    %x1 = arith.select %below, %lo, %in : f32\n"
                                   "    %above = arith.cmpf ogt, %x1, %hi : f32\n"
                                   "    %x = arith.select %above, %hi, %x1 : f32\n"
                                   "    %log2e = arith.constant 1.44269504088896341 : f32\n"
                                   "    %half = arith.constant 0.5 : f32\n"
                                   "    %t0 = arith.mulf %x, %log2e : f32\n"
                                   "    %t1 = arith.addf %t0, %half : f32\n"
                                   "    %n = math.floor %t1 : f32\n"
                                   "    %ln2hi = arith.constant 0.693359375 : f32\n"
                                   "    %ln2lo = arith.constant -2.12194440e-4 : f32\n"
                                   "    %a = arith.mulf %n, %ln2hi : f32\n"
                                   "    %r1 = arith.subf %x, %a : f32\n"
                                   "    %b = arith.mulf %n, %ln2lo : f32\n"
                                   "    %r = arith.subf %r1, %b : f32\n"
                                   "    %c0 = arith.constant 1.9875691500E-4 : f32\n"
                                   "    %c1 = arith.constant 1.3981999507E-3 : f32\n"
                                   "    %c2 = arith.constant 8.3334519073E-3 : f32\n"
                                   "    %c3 = arith.constant 4.1665795894E-2 : f32\n"
                                   "    %c4 = arith.constant 1.6666665459E-1 : f32\n"
                                   "    %c5 = arith.constant 5.0000001201E-1 : f32\n"
                                   "    %p0 = arith.mulf %c0, %r fastmath<contract> : f32\n"
                                   "    %p1 = arith.addf %p0, %c1 fastmath<contract> : f32\n"
                                   "    %p2 = arith.mulf %p1, %r fastmath<contract> : f32\n"
                                   "    %p3 = arith.addf %p2, %c2 fastmath<contract> : f32\n"
                                   "    %p4 = arith.mulf %p3, %r fastmath<contract> : f32\n"
                                   "    %p5 = arith.addf %p4, %c3 fastmath<contract> : f32\n"
                                   "    %p6 = arith.mulf %p5, %r fastmath<contract> : f32\n"
                                   "    %p7 = arith.addf %p6, %c4 fastmath<contract> : f32\n"
                                   "    %p8 = arith.mulf %p7, %r fastmath<contract> : f32\n"
                                   "    %p9 = arith.addf %p8, %c5 fastmath<contract> : f32\n"
                                   "    %rr = arith.mulf %r, %r : f32\n"
                                   "    %q0 = arith.mulf %p9, %rr fastmath<contract> : f32\n"
                                   "    %q1 = arith.addf %q0, %r fastmath<contract> : f32\n"
                                   "    %one = arith.constant 1.0 : f32\n"
                                   "    %q2 = arith.addf %q1, %one : f32\n"
                                   "    %ni = arith.fptosi %n : f32 to i32\n"
                                   "    %bias = arith.constant 127 : i32\n"
                                   "    %shift = arith.constant 23 : i32\n"
                                   "    %e1 = arith.addi %ni, %bias : i32\n"
                                   "    %e2 = arith.shli %e1, %shift : i32\n"
                                   "    %scale = arith.bitcast %e2 : i32 to f32\n"
                                   "    %y0 = arith.mulf %q2, %scale : f32\n"
                                   "    %overflow = arith.constant 88.72283935546875 : f32\n"
                                   "    %inf = arith.constant 0x7F800000 : f32\n"
                                   "    %big = arith.cmpf ogt, %in, %overflow : f32\n"
                                   "    %y1 = arith.select %big, %inf, %y0 : f32\n"
                                   "    %underflow = arith.constant -103.97 : f32\n"
                                   "    %zero = arith.constant 0.0 : f32\n"
                                   "    %tiny = arith.cmpf olt, %in, %underflow : f32\n"
                                   "    %y2 = arith.select %tiny, %zero, %y1 : f32\n"
                                   "    %nan = arith.cmpf uno, %in, %in : f32\n"
                                   "    %y = arith.select %nan, %in, %y2 : f32\n"
                                   "    return %y : f32\n"
                                   "  }\n";

// log after Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a degree-9
// polynomial in m - 1. Subnormals are scaled first; 0 gives -inf, negatives and NaN give NaN,
// +inf gives +inf.
static const char log_function[] = "  func.func private @attn_log(%in: f32) -> f32 {\n"
                                   "    %fmin = arith.constant 1.17549435e-38 : f32\n"
                                   "    %sub = arith.cmpf olt, %in, %fmin : f32\n"
                                   "    %two23 = arith.constant 8388608.0 : f32\n"
                                   "    %scaled = arith.mulf %in, %two23 : f32\n"
                                   "    %x = arith.select %sub, %scaled, %in : f32\n"
                                   "    %c23f = arith.constant 23.0 : f32\n"
                                   "    %zero = arith.constant 0.0 : f32\n"
                                   "    %eadj = arith.select %sub, %c23f, %zero : f32\n"
                                   "    %bits = arith.bitcast %x : f32 to i32\n"
                                   "    %c23 = arith.constant 23 : i32\n"
                                   "    %ebits = arith.shrui %bits, %c23 : i32\n"
                                   "    %c126 = arith.constant 126 : i32\n"
                                   "    %ei = arith.subi %ebits, %c126 : i32\n"
                                   "    %mask = arith.constant 8388607 : i32\n"
                                   "    %mant = arith.andi %bits, %mask : i32\n"
                                   "    %halfbits = arith.constant 1056964608 : i32\n"
                                   "    %mbits = arith.ori %mant, %halfbits : i32\n"
                                   "    %m = arith.bitcast %mbits : i32 to f32\n"
                                   "    %ef0 = arith.sitofp %ei : i32 to f32\n"
                                   "    %ef1 = arith.subf %ef0, %eadj : f32\n"
                                   "    %sqrthf = arith.constant 0.707106781186547524 : f32\n"
                                   "    %small = arith.cmpf olt, %m, %sqrthf : f32\n"
                                   "    %one = arith.constant 1.0 : f32\n"
                                   "    %ef2 = arith.subf %ef1, %one : f32\n"
                                   "    %e = arith.select %small, %ef2, %ef1 : f32\n"
                                   "    %m2 = arith.addf %m, %m : f32\n"
                                   "    %mm = arith.select %small, %m2, %m : f32\n"
                                   "    %f = arith.subf %mm, %one : f32\n"
                                   "    %z = arith.mulf %f, %f : f32\n"
                                   "    %k0 = arith.constant 7.0376836292E-2 : f32\n"
                                   "    %k1 = arith.constant -1.1514610310E-1 : f32\n"
                                   "    %k2 = arith.constant 1.1676998740E-1 : f32\n"
                                   "    %k3 = arith.constant -1.2420140846E-1 : f32\n"
                                   "    %k4 = arith.constant 1.4249322787E-1 : f32\n"
                                   "    %k5 = arith.constant -1.6668057665E-1 : f32\n"
                                   "    %k6 = arith.constant 2.0000714765E-1 : f32\n"
                                   "    %k7 = arith.constant -2.4999993993E-1 : f32\n"
                                   "    %k8 = arith.constant 3.3333331174E-1 : f32\n"
                                   "    %p0 = arith.mulf %k0, %f fastmath<contract> : f32\n"
                                   "    %p1 = arith.addf %p0, %k1 fastmath<contract> : f32\n"
                                   "    %p2 = arith.mulf %p1, %f fastmath<contract> : f32\n"
                                   "    %p3 = arith.addf %p2, %k2 fastmath<contract> : f32\n"
                                   "    %p4 = arith.mulf %p3, %f fastmath<contract> : f32\n"
                                   "    %p5 = arith.addf %p4, %k3 fastmath<contract> : f32\n"
                                   "    %p6 = arith.mulf %p5, %f fastmath<contract> : f32\n"
                                   "    %p7 = arith.addf %p6, %k4 fastmath<contract> : f32\n"
                                   "    %p8 = arith.mulf %p7, %f fastmath<contract> : f32\n"
                                   "    %p9 = arith.addf %p8, %k5 fastmath<contract> : f32\n"
                                   "    %p10 = arith.mulf %p9, %f fastmath<contract> : f32\n"
                                   "    %p11 = arith.addf %p10, %k6 fastmath<contract> : f32\n"
                                   "    %p12 = arith.mulf %p11, %f fastmath<contract> : f32\n"
                                   "    %p13 = arith.addf %p12, %k7 fastmath<contract> : f32\n"
                                   "    %p14 = arith.mulf %p13, %f fastmath<contract> : f32\n"
                                   "    %p15 = arith.addf %p14, %k8 fastmath<contract> : f32\n"
                                   "    %fz = arith.mulf %f, %z : f32\n"
                                   "    %y0 = arith.mulf %p15, %fz : f32\n"
                                   "    %lnlo = arith.constant -2.12194440e-4 : f32\n"
                                   "    %t0 = arith.mulf %e, %lnlo : f32\n"
                                   "    %y1 = arith.addf %y0, %t0 : f32\n"
                                   "    %mhalf = arith.constant -0.5 : f32\n"
                                   "    %t1 = arith.mulf %z, %mhalf : f32\n"
                                   "    %y2 = arith.addf %y1, %t1 : f32\n"
                                   "    %r0 = arith.addf %f, %y2 : f32\n"
                                   "    %lnhi = arith.constant 0.693359375 : f32\n"
                                   "    %t2 = arith.mulf %e, %lnhi : f32\n"
                                   "    %r1 = arith.addf %r0, %t2 : f32\n"
                                   "    %ninf = arith.constant 0xFF800000 : f32\n"
                                   "    %pinf = arith.constant 0x7F800000 : f32\n"
                                   "    %qnan = arith.constant 0x7FC00000 : f32\n"
                                   "    %is_inf = arith.cmpf oeq, %in, %pinf : f32\n"
                                   "    %r2 = arith.select %is_inf, %pinf, %r1 : f32\n"
                                   "    %is_zero = arith.cmpf oeq, %in, %zero : f32\n"
                                   "    %r3 = arith.select %is_zero, %ninf, %r2 : f32\n"
                                   "    %is_neg = arith.cmpf ult, %in, %zero : f32\n"
                                   "    %r = arith.select %is_neg, %qnan, %r3 : f32\n"
                                   "    return %r : f32\n"
                                   "  }\n";

// erf as Eigen's generic_fast_erf_float (also XLA's): an odd degree-13 numerator over an even
// degree-8 denominator on x clamped to [-4, 4]. Absolute error below 1e-7.
static const char erf_function[] = "  func.func private @attn_erf(%in: f32) -> f32 {\n"
                                   "    %lo = arith.constant -4.0 : f32\n"
                                   "    %hi = arith.constant 4.0 : f32\n"
                                   "    %below = arith.cmpf olt, %in, %lo : f32\n"
                                   "    %x1 = arith.select %below, %lo, %in : f32\n"
                                   "    %above = arith.cmpf ogt, %x1, %hi : f32\n"
                                   "    %x = arith.select %above, %hi, %x1 : f32\n"
                                   "    %x2 = arith.mulf %x, %x : f32\n"
                                   "    %a0 = arith.constant -2.72614225801306e-10 : f32\n"
                                   "    %a1 = arith.constant 2.77068142495902e-08 : f32\n"
                                   "    %a2 = arith.constant -2.10102402082508e-06 : f32\n"
                                   "    %a3 = arith.constant -5.69250639462346e-05 : f32\n"
                                   "    %a4 = arith.constant -7.34990630326855e-04 : f32\n"
                                   "    %a5 = arith.constant -2.95459980854025e-03 : f32\n"
                                   "    %a6 = arith.constant -1.60960333262415e-02 : f32\n"
                                   "    %p0 = arith.mulf %a0, %x2 fastmath<contract> : f32\n"
                                   "    %p1 = arith.addf %p0, %a1 fastmath<contract> : f32\n"
                                   "    %p2 = arith.mulf %p1, %x2 fastmath<contract> : f32\n"
                                   "    %p3 = arith.addf %p2, %a2 fastmath<contract> : f32\n"
                                   "    %p4 = arith.mulf %p3, %x2 fastmath<contract> : f32\n"
                                   "    %p5 = arith.addf %p4, %a3 fastmath<contract> : f32\n"
                                   "    %p6 = arith.mulf %p5, %x2 fastmath<contract> : f32\n"
                                   "    %p7 = arith.addf %p6, %a4 fastmath<contract> : f32\n"
                                   "    %p8 = arith.mulf %p7, %x2 fastmath<contract> : f32\n"
                                   "    %p9 = arith.addf %p8, %a5 fastmath<contract> : f32\n"
                                   "    %p10 = arith.mulf %p9, %x2 fastmath<contract> : f32\n"
                                   "    %p11 = arith.addf %p10, %a6 fastmath<contract> : f32\n"
                                   "    %p = arith.mulf %p11, %x : f32\n"
                                   "    %b0 = arith.constant -1.45660718464996e-05 : f32\n"
                                   "    %b1 = arith.constant -2.13374055278905e-04 : f32\n"
                                   "    %b2 = arith.constant -1.68282697438203e-03 : f32\n"
                                   "    %b3 = arith.constant -7.37332916720468e-03 : f32\n"
                                   "    %b4 = arith.constant -1.42647390514189e-02 : f32\n"
                                   "    %q0 = arith.mulf %b0, %x2 fastmath<contract> : f32\n"
                                   "    %q1 = arith.addf %q0, %b1 fastmath<contract> : f32\n"
                                   "    %q2 = arith.mulf %q1, %x2 fastmath<contract> : f32\n"
                                   "    %q3 = arith.addf %q2, %b2 fastmath<contract> : f32\n"
                                   "    %q4 = arith.mulf %q3, %x2 fastmath<contract> : f32\n"
                                   "    %q5 = arith.addf %q4, %b3 fastmath<contract> : f32\n"
                                   "    %q6 = arith.mulf %q5, %x2 fastmath<contract> : f32\n"
                                   "    %q = arith.addf %q6, %b4 fastmath<contract> : f32\n"
                                   "    %r = arith.divf %p, %q : f32\n"
                                   "    return %r : f32\n"
                                   "  }\n";

// tanh: an odd Taylor polynomial (to x^9) below |x| = 0.125, else (1 - e) / (1 + e) with
// e = exp(-2|x|) and the sign of x.
static const char tanh_function[] = "  func.func private @attn_tanh(%x: f32) -> f32 {\n"
                                    "    %ax = math.absf %x : f32\n"
                                    "    %m2 = arith.constant -2.0 : f32\n"
                                    "    %t = arith.mulf %ax, %m2 : f32\n"
                                    "    %e = func.call @attn_exp(%t) : (f32) -> f32\n"
                                    "    %one = arith.constant 1.0 : f32\n"
                                    "    %num = arith.subf %one, %e : f32\n"
                                    "    %den = arith.addf %one, %e : f32\n"
                                    "    %q = arith.divf %num, %den : f32\n"
                                    "    %large = math.copysign %q, %x : f32\n"
                                    "    %x2 = arith.mulf %x, %x : f32\n"
                                    "    %c9 = arith.constant 0.021869488536155203 : f32\n"
                                    "    %c7 = arith.constant -0.05396825396825397 : f32\n"
                                    "    %c5 = arith.constant 0.13333333333333333 : f32\n"
                                    "    %c3 = arith.constant -0.3333333333333333 : f32\n"
                                    "    %p0 = arith.mulf %c9, %x2 fastmath<contract> : f32\n"
                                    "    %p1 = arith.addf %p0, %c7 fastmath<contract> : f32\n"
                                    "    %p2 = arith.mulf %p1, %x2 fastmath<contract> : f32\n"
                                    "    %p3 = arith.addf %p2, %c5 fastmath<contract> : f32\n"
                                    "    %p4 = arith.mulf %p3, %x2 fastmath<contract> : f32\n"
                                    "    %p5 = arith.addf %p4, %c3 fastmath<contract> : f32\n"
                                    "    %x3 = arith.mulf %x2, %x : f32\n"
                                    "    %p6 = arith.mulf %p5, %x3 fastmath<contract> : f32\n"
                                    "    %small = arith.addf %p6, %x fastmath<contract> : f32\n"
                                    "    %limit = arith.constant 0.125 : f32\n"
                                    "    %is_small = arith.cmpf olt, %ax, %limit : f32\n"
                                    "    %r = arith.select %is_small, %small, %large : f32\n"
                                    "    return %r : f32\n"
                                    "  }\n";

// a^b as exp(b log|a|), with the sign of a negative base for an integer b (NaN for another b),
// and pow(a, 0) = pow(1, b) = 1.
static const char pow_function[] = "  func.func private @attn_pow(%a: f32, %b: f32) -> f32 {\n"
                                   "    %aa = math.absf %a : f32\n"
                                   "    %l = func.call @attn_log(%aa) : (f32) -> f32\n"
                                   "    %t = arith.mulf %b, %l : f32\n"
                                   "    %r0 = func.call @attn_exp(%t) : (f32) -> f32\n"
                                   "    %zero = arith.constant 0.0 : f32\n"
                                   "    %one = arith.constant 1.0 : f32\n"
                                   "    %half = arith.constant 0.5 : f32\n"
                                   "    %fb = math.floor %b : f32\n"
                                   "    %is_int = arith.cmpf oeq, %fb, %b : f32\n"
                                   "    %hb = arith.mulf %b, %half : f32\n"
                                   "    %fhb = math.floor %hb : f32\n"
                                   "    %even = arith.cmpf oeq, %fhb, %hb : f32\n"
                                   "    %true = arith.constant true\n"
                                   "    %not_even = arith.xori %even, %true : i1\n"
                                   "    %odd = arith.andi %is_int, %not_even : i1\n"
                                   "    %neg = arith.cmpf olt, %a, %zero : f32\n"
                                   "    %flip = arith.andi %neg, %odd : i1\n"
                                   "    %nr = arith.negf %r0 : f32\n"
                                   "    %r1 = arith.select %flip, %nr, %r0 : f32\n"
                                   "    %not_int = arith.xori %is_int, %true : i1\n"
                                   "    %bad = arith.andi %neg, %not_int : i1\n"
                                   "    %qnan = arith.constant 0x7FC00000 : f32\n"
                                   "    %r2 = arith.select %bad, %qnan, %r1 : f32\n"
                                   "    %b0 = arith.cmpf oeq, %b, %zero : f32\n"
                                   "    %a1 = arith.cmpf oeq, %a, %one : f32\n"
                                   "    %unit = arith.ori %b0, %a1 : i1\n"
                                   "    %r = arith.select %unit, %one, %r2 : f32\n"
                                   "    return %r : f32\n"
                                   "  }\n";

// sin and cos of an f64 angle: reduced to [-pi, pi] by a multiple of 2 pi (in two parts), then
// Taylor series to x^23 and x^22 (error below 2e-12).
static void append_sincos(text *t) {
  text_append(t, "%s",
              "  func.func private @attn_sincos(%angle: f64) -> (f64, f64) {\n"
              "    %inv2pi = arith.constant 0.15915494309189535 : f64\n"
              "    %q = arith.mulf %angle, %inv2pi : f64\n"
              "    %k = math.roundeven %q : f64\n"
              "    %hi = arith.constant 6.283185307179586 : f64\n"
              "    %lo = arith.constant 2.4492935982947064e-16 : f64\n"
              "    %khi = arith.mulf %k, %hi : f64\n"
              "    %r0 = arith.subf %angle, %khi : f64\n"
              "    %klo = arith.mulf %k, %lo : f64\n"
              "    %r = arith.subf %r0, %klo : f64\n"
              "    %r2 = arith.mulf %r, %r : f64\n");
  // sin r = r (1 + r2 (s1 + r2 (s2 + ...))), s_k = (-1)^k / (2k+1)!; cos likewise with (2k)!.
  for (int f = 0; f < 2; f++) {
    const char *name = f ? "c" : "s";
    double coefficients[12];
    int count = 11;
    for (int k = 1; k <= count; k++) {
      double factorial = 1.0;
      for (int i = 2; i <= 2 * k + (f ? 0 : 1); i++)
        factorial *= i;
      coefficients[k] = (k % 2 ? -1.0 : 1.0) / factorial;
    }
    text_append(t, "    %%%s11 = arith.constant %.17e : f64\n", name, coefficients[count]);
    for (int k = count - 1; k >= 1; k--) {
      text_append(t, "    %%%sk%d = arith.constant %.17e : f64\n", name, k, coefficients[k]);
      text_append(t, "    %%%sm%d = arith.mulf %%%s%d, %%r2 : f64\n", name, k, name, k + 1);
      text_append(t, "    %%%s%d = arith.addf %%%sm%d, %%%sk%d : f64\n", name, k, name, k, name, k);
    }
    text_append(t, "    %%%sone = arith.constant 1.0 : f64\n", name);
    text_append(t, "    %%%sm0 = arith.mulf %%%s1, %%r2 : f64\n", name, name);
    text_append(t, "    %%%s0 = arith.addf %%%sm0, %%%sone : f64\n", name, name, name);
  }
  text_append(t, "    %%sin = arith.mulf %%s0, %%r : f64\n"
                 "    return %%sin, %%c0 : f64, f64\n"
                 "  }\n");
}

// ---- the module ------------------------------------------------------------------------------

attn_status attn_cpu_mlir_emit(const attn_graph *graph, uint32_t kernel, const attn_kernel_io *io,
                               attn_diag *diag, char **out_text, uint32_t *out_parallel_rank) {
  *out_text = NULL;
  *out_parallel_rank = 0;
  if (kernel == 0 || kernel >= graph->kernel_count || !io)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "mlir: kernel %u is not a kernel of the partition", kernel);
  emitter *e = calloc(1, sizeof(*e));
  if (!e)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "mlir: out of memory");
  e->graph = graph;
  e->kernel = kernel;
  e->io = io;
  e->diag = diag;
  e->next = 3; // %v1 and %v2 are begin and end
  e->operand_count = io->input_count + io->output_count;
  if (e->operand_count > sizeof(e->operands) / sizeof(e->operands[0])) {
    free(e);
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                           "mlir: kernel k%u has too many operands (%u)", kernel,
                           io->input_count + io->output_count);
  }
  for (uint32_t i = 0; i < io->input_count; i++)
    e->operands[i] = io->inputs[i];
  for (uint32_t o = 0; o < io->output_count; o++)
    e->operands[io->input_count + o] = io->outputs[o];
  for (uint32_t k = 0; k < e->operand_count; k++)
    check_dtype(e, operand_type(e, k)->dtype);

  uint32_t parallel = 0;
  attn_kernel_kind kind = graph->kernels[kernel].kind;
  if (e->status == ATTN_OK && io->output_count == 0)
    fail(e, ATTN_ERROR_INVALID_ARGUMENT, "mlir: kernel k%u has no outputs", kernel);
  if (e->status == ATTN_OK) {
    switch (kind) {
    case ATTN_KERNEL_ELEMENTWISE:
    case ATTN_KERNEL_GEMM: // the epilogue a GEMM template did not fuse: its io starts after it
      parallel = emit_elementwise(e);
      break;
    case ATTN_KERNEL_NORM:
      parallel = emit_norm(e);
      break;
    case ATTN_KERNEL_REDUCTION:
      parallel = emit_reduction(e);
      break;
    case ATTN_KERNEL_LAYOUT:
      parallel = emit_layout(e);
      break;
    case ATTN_KERNEL_ROPE:
      parallel = emit_rope(e);
      break;
    case ATTN_KERNEL_GATHER:
      parallel = emit_gather(e);
      break;
    default:
      fail(e, ATTN_ERROR_UNSUPPORTED, "mlir: kernel k%u: %s kernels are not supported", kernel,
           attn_kernel_kind_name(kind));
      break;
    }
  }

  text out = {0};
  if (e->status == ATTN_OK) {
    text_append(&out, "module {\n  func.func @attn_mlir_body(");
    for (uint32_t k = 0; k < e->operand_count; k++) {
      char type[256];
      memref_type(e, k, type, sizeof(type));
      text_append(&out, "%%a%u: %s, ", k, type);
    }
    text_append(&out, "%%v1: index, %%v2: index) {\n");
    text_append(&out, "%s%s    return\n  }\n", e->entry.data ? e->entry.data : "",
                e->body.data ? e->body.data : "");
    if (e->uses_exp)
      text_append(&out, "%s", exp_function);
    if (e->uses_log)
      text_append(&out, "%s", log_function);
    if (e->uses_erf)
      text_append(&out, "%s", erf_function);
    if (e->uses_tanh)
      text_append(&out, "%s", tanh_function);
    if (e->uses_pow)
      text_append(&out, "%s", pow_function);
    if (e->uses_sincos)
      append_sincos(&out);
    text_append(&out, "%s}\n", e->module.data ? e->module.data : "");
  }
  attn_status status = e->status;
  if (status == ATTN_OK && (out.failed || e->entry.failed || e->body.failed || e->module.failed))
    status = attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "mlir: out of memory");
  free(e->entry.data);
  free(e->body.data);
  free(e->module.data);
  free(e);
  if (status != ATTN_OK) {
    free(out.data);
    return status;
  }
  *out_text = out.data;
  *out_parallel_rank = parallel;
  return ATTN_OK;
}
