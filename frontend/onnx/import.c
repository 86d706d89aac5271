// ONNX import. Every ONNX value is either a tensor of the graph being built, or a value known at
// import time: the contents of a Constant or an initializer, or an int64 tensor whose elements
// are dims, possibly symbolic (what Shape makes). Ops whose inputs are all known are evaluated
// here instead of becoming nodes, which is how Shape -> Gather -> Concat -> Reshape chains fold
// into the reshape's attribute. A known value becomes a node only when a tensor op reads it: an
// initializer as a WEIGHT node of its name, anything else as a constant.
//
// One more kind of known value exists for the causal masks exporters write as a buffer sliced by
// the sequence length (GPT-2's `bias[:, :, Tk - Tq : Tk, :Tk]`): a lower-triangular constant is
// held as "key j visible from query i when j - i <= k", so slicing it by symbolic bounds stays
// exact, and it becomes an iota comparison that recognize-attention proves causal.
#include <limits.h>
#include <math.h>
#include <onnx.pb-c.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/onnx/onnx.h"
#include "runtime/tensor/io.h"

enum {
  MIN_OPSET = 13,
  MAX_OPSET = 21,
  FOLD_LIMIT = 1 << 16, // elements of a value evaluated at import
};

// ---- values ----------------------------------------------------------------------------------

typedef struct ov {
  const char *name;
  attn_type type;   // known values: constant dims
  attn_value_id id; // the graph value, once there is one
  // Known contents, row-major: `f` for float dtypes, `i` for the others (bool as 0/1). For i64,
  // `is_sym[k]` says i[k] is a symbolic attn_dim rather than a number (NULL: none is).
  bool is_known;
  double *f;
  int64_t *i;
  bool *is_sym;
  const attn_tensor *init; // an initializer: its data, decoded; becomes a WEIGHT node
  const char *weight_name; // the initializer's name (Identity gives it other names)
  // A causal pattern over the last two dims: element (q, k) is true iff k - q <= pos - neg.
  bool is_tril;
  attn_dim tril_pos, tril_neg;
} ov;

typedef struct importer {
  attn_allocator allocator;
  attn_diag *diag;
  attn_graph *graph;
  attn_arena arena; // everything of the import itself
  const char *model_name;
  const char *base_dir;
  int64_t opset;
  ov **table; // open addressing by name
  size_t table_capacity;
  attn_named_tensor *weights; // initializers read as weights
  size_t weight_count, weight_capacity;
} importer;

typedef struct node_ctx {
  importer *im;
  const Onnx__NodeProto *node;
  attn_loc loc;
  ov *in[16]; // NULL for an absent optional input
  uint32_t in_count;
} node_ctx;

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

static ov *find_value(const importer *im, const char *name) {
  size_t mask = im->table_capacity - 1;
  for (size_t k = hash_name(name) & mask;; k = (k + 1) & mask) {
    if (!im->table[k])
      return NULL;
    if (strcmp(im->table[k]->name, name) == 0)
      return im->table[k];
  }
}

static attn_status oom(importer *im) {
  return attn_diag_error(im->diag, (attn_loc){im->model_name, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY,
                         "out of memory");
}

// A new value named `name` (a later definition of the same name replaces the earlier one).
static attn_status new_value(importer *im, const char *name, ov **out) {
  ov *v = attn_arena_calloc(&im->arena, 1, sizeof(*v));
  if (!v || !(v->name = attn_arena_strdup(&im->arena, name)))
    return oom(im);
  size_t mask = im->table_capacity - 1;
  size_t k = hash_name(name) & mask;
  while (im->table[k] && strcmp(im->table[k]->name, name) != 0)
    k = (k + 1) & mask;
  im->table[k] = v;
  *out = v;
  return ATTN_OK;
}

static int64_t element_count(const attn_type *type) {
  int64_t n = 1;
  for (uint32_t d = 0; d < type->rank; d++)
    n *= type->dims[d];
  return n;
}

static bool dtype_from_onnx(int32_t code, attn_dtype *out) {
  switch (code) {
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
    *out = ATTN_DTYPE_F32;
    return true;
  case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT16:
    *out = ATTN_DTYPE_F16;
    return true;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BFLOAT16:
    *out = ATTN_DTYPE_BF16;
    return true;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    *out = ATTN_DTYPE_I64;
    return true;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    *out = ATTN_DTYPE_I32;
    return true;
  case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    *out = ATTN_DTYPE_I8;
    return true;
  case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
    *out = ATTN_DTYPE_BOOL;
    return true;
  default:
    return false;
  }
}

// ---- errors ----------------------------------------------------------------------------------

static attn_status node_error(const node_ctx *c, attn_status status, const char *format, ...)
    ATTN_PRINTF(3, 4);
static attn_status node_error(const node_ctx *c, attn_status status, const char *format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  return attn_diag_error(c->im->diag, c->loc, status, "%s (opset %lld): %s", c->node->op_type,
                         (long long)c->im->opset, message);
}

// ---- attributes ------------------------------------------------------------------------------

static const Onnx__AttributeProto *attr(const node_ctx *c, const char *name) {
  for (size_t i = 0; i < c->node->n_attribute; i++)
    if (c->node->attribute[i]->name && strcmp(c->node->attribute[i]->name, name) == 0)
      return c->node->attribute[i];
  return NULL;
}

static int64_t attr_int(const node_ctx *c, const char *name, int64_t fallback) {
  const Onnx__AttributeProto *a = attr(c, name);
  return a && a->has_i ? a->i : fallback;
}

static double attr_float(const node_ctx *c, const char *name, double fallback) {
  const Onnx__AttributeProto *a = attr(c, name);
  return a && a->has_f ? (double)a->f : fallback;
}

// ---- tensors ---------------------------------------------------------------------------------

// Whether `location` names a file inside the model's directory: relative, and no ".." part.
static bool is_contained_path(const char *location) {
  if (!*location || location[0] == '/' || strchr(location, '\\'))
    return false;
  for (const char *p = location; *p;) {
    const char *end = strchr(p, '/');
    size_t length = end ? (size_t)(end - p) : strlen(p);
    if (length == 2 && p[0] == '.' && p[1] == '.')
      return false;
    p += length + (end ? 1 : 0);
  }
  return true;
}

// Reads the external data of `t` into `out` (`bytes` bytes).
static attn_status read_external(importer *im, const Onnx__TensorProto *t, attn_loc loc, void *out,
                                 size_t bytes) {
  const char *location = NULL;
  long long offset = 0, length = -1;
  for (size_t i = 0; i < t->n_external_data; i++) {
    const Onnx__StringStringEntryProto *e = t->external_data[i];
    if (!e->key || !e->value)
      continue;
    if (strcmp(e->key, "location") == 0)
      location = e->value;
    else if (strcmp(e->key, "offset") == 0)
      offset = strtoll(e->value, NULL, 10);
    else if (strcmp(e->key, "length") == 0)
      length = strtoll(e->value, NULL, 10);
  }
  if (!location)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE, "external data without a location");
  if (!is_contained_path(location))
    return attn_diag_error(im->diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "external data location '%s' is outside the model's directory",
                           location);
  if (!im->base_dir)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "external data '%s' but the model was not read from a file", location);
  if (offset < 0 || (length >= 0 && (size_t)length != bytes))
    return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE,
                           "external data '%s': offset %lld, length %lld for %zu bytes", location,
                           offset, length, bytes);
  char *path = attn_arena_printf(&im->arena, "%s/%s", im->base_dir, location);
  if (!path)
    return oom(im);
  FILE *file = fopen(path, "rb");
  if (!file)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_IO, "cannot open external data '%s'", path);
  bool ok = fseek(file, (long)offset, SEEK_SET) == 0 && fread(out, 1, bytes, file) == bytes;
  fclose(file);
  if (!ok)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_IO,
                           "external data '%s' is shorter than offset %lld + %zu bytes", path,
                           offset, bytes);
  return ATTN_OK;
}

// Decodes a TensorProto (raw_data, a typed field or external data) into `out`, its data in the
// importer's arena.
static attn_status decode_tensor(importer *im, const Onnx__TensorProto *t, attn_loc loc,
                                 attn_tensor *out) {
  memset(out, 0, sizeof(*out));
  if (!dtype_from_onnx(t->data_type, &out->dtype))
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED,
                           "tensor '%s' has ONNX data type %d, which attnc does not take",
                           t->name ? t->name : "", (int)t->data_type);
  if (t->n_dims > ATTN_MAX_RANK)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED, "tensor '%s' has rank %zu",
                           t->name ? t->name : "", t->n_dims);
  out->rank = (uint32_t)t->n_dims;
  for (size_t d = 0; d < t->n_dims; d++)
    out->dims[d] = t->dims[d];
  size_t bytes;
  if (!attn_tensor_size_bytes(out, &bytes) || bytes > ((size_t)1 << 40))
    return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE, "tensor '%s' has an invalid shape",
                           t->name ? t->name : "");
  int64_t count = attn_tensor_element_count(out);
  out->data = attn_arena_alloc(&im->arena, bytes ? bytes : 1, 16);
  if (!out->data)
    return oom(im);
  if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
    return read_external(im, t, loc, out->data, bytes);
  if (t->has_raw_data) {
    if (t->raw_data.len != bytes)
      return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE,
                             "tensor '%s': raw_data holds %zu bytes, its shape needs %zu",
                             t->name ? t->name : "", t->raw_data.len, bytes);
    if (bytes)
      memcpy(out->data, t->raw_data.data, bytes);
    return ATTN_OK;
  }
  // Typed fields: float_data (f32), int64_data (i64), int32_data (i32, i8, bool, and f16/bf16 as
  // their bit patterns), double_data.
  size_t have;
  switch (out->dtype) {
  case ATTN_DTYPE_F32:
    have = t->n_float_data ? t->n_float_data : t->n_double_data;
    break;
  case ATTN_DTYPE_I64:
    have = t->n_int64_data;
    break;
  default:
    have = t->n_int32_data;
    break;
  }
  if ((int64_t)have != count)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE,
                           "tensor '%s' holds %zu elements, its shape needs %lld",
                           t->name ? t->name : "", have, (long long)count);
  for (int64_t k = 0; k < count; k++) {
    switch (out->dtype) {
    case ATTN_DTYPE_F32:
      ((float *)out->data)[k] = t->n_float_data ? t->float_data[k] : (float)t->double_data[k];
      break;
    case ATTN_DTYPE_I64:
      ((int64_t *)out->data)[k] = t->int64_data[k];
      break;
    case ATTN_DTYPE_I32:
      ((int32_t *)out->data)[k] = t->int32_data[k];
      break;
    case ATTN_DTYPE_F16:
    case ATTN_DTYPE_BF16:
      ((uint16_t *)out->data)[k] = (uint16_t)t->int32_data[k];
      break;
    default:
      ((int8_t *)out->data)[k] = (int8_t)t->int32_data[k];
      break;
    }
  }
  return ATTN_OK;
}

// Makes `v` a known value of `type` (constant dims) with room for its elements.
static attn_status make_known(importer *im, ov *v, attn_dtype dtype, uint32_t rank,
                              const int64_t *dims) {
  v->type.dtype = dtype;
  v->type.rank = rank;
  for (uint32_t d = 0; d < rank; d++)
    v->type.dims[d] = dims[d];
  int64_t n = element_count(&v->type);
  v->is_known = true;
  if (attn_dtype_is_float(dtype))
    v->f = attn_arena_calloc(&im->arena, (size_t)(n ? n : 1), sizeof(double));
  else
    v->i = attn_arena_calloc(&im->arena, (size_t)(n ? n : 1), sizeof(int64_t));
  return v->f || v->i ? ATTN_OK : oom(im);
}

static attn_status make_sym(importer *im, ov *v) {
  if (v->is_sym)
    return ATTN_OK;
  int64_t n = element_count(&v->type);
  v->is_sym = attn_arena_calloc(&im->arena, (size_t)(n ? n : 1), sizeof(bool));
  return v->is_sym ? ATTN_OK : oom(im);
}

// Fills a known value from tensor data.
static attn_status known_from_tensor(importer *im, ov *v, const attn_tensor *t) {
  ATTN_RETURN_IF_ERROR(make_known(im, v, t->dtype, t->rank, t->dims));
  int64_t n = attn_tensor_element_count(t);
  for (int64_t k = 0; k < n; k++) {
    if (v->f)
      v->f[k] = attn_tensor_get_f64(t, k);
    else if (t->dtype == ATTN_DTYPE_I64)
      v->i[k] = ((const int64_t *)t->data)[k];
    else
      v->i[k] = (int64_t)attn_tensor_get_f64(t, k);
  }
  return ATTN_OK;
}

// Whether `v`'s contents are available, decoding a small initializer on demand.
static attn_status ensure_known(importer *im, ov *v, bool *out_known) {
  if (!v->is_known && v->init && attn_tensor_element_count(v->init) <= FOLD_LIMIT) {
    const attn_tensor *init = v->init;
    ATTN_RETURN_IF_ERROR(known_from_tensor(im, v, init));
    v->init = init; // still a weight when a tensor op reads it
  }
  *out_known = v->is_known;
  return ATTN_OK;
}

static bool has_sym(const ov *v) {
  if (!v->is_sym)
    return false;
  int64_t n = element_count(&v->type);
  for (int64_t k = 0; k < n; k++)
    if (v->is_sym[k])
      return true;
  return false;
}

// ---- making graph values ---------------------------------------------------------------------

static attn_status add_node(const node_ctx *c, attn_op op, const attn_value_id *inputs,
                            uint32_t count, const void *attrs, attn_value_id *out) {
  attn_node_id node;
  ATTN_RETURN_IF_ERROR(attn_graph_add_node(c->im->graph, op, inputs, count, attrs, c->loc, &node));
  if (out)
    *out = attn_node_output(c->im->graph, node, 0);
  return ATTN_OK;
}

// A scalar constant of `dtype`.
static attn_status scalar_const(const node_ctx *c, attn_dtype dtype, double value,
                                attn_value_id *out) {
  attn_tensor t = {dtype, 0, {0}, attn_graph_alloc(c->im->graph, 8)};
  if (!t.data)
    return oom(c->im);
  attn_tensor_set_f64(&t, 0, value);
  attn_constant_attrs attrs = {{dtype, 0, {0}}, t.data};
  return add_node(c, ATTN_OP_CONSTANT, NULL, 0, &attrs, out);
}

// An i64 iota over `type` (dtype i64) along `axis`, starting at `start`.
static attn_status iota(const node_ctx *c, const attn_type *type, int64_t axis, attn_dim start,
                        attn_value_id *out) {
  attn_iota_attrs attrs = {*type, axis, start};
  attrs.type.dtype = ATTN_DTYPE_I64;
  return add_node(c, ATTN_OP_IOTA, NULL, 0, &attrs, out);
}

static attn_status record_weight(importer *im, const char *name, const attn_tensor *t) {
  // Identity gives one initializer several names; the weight set holds it once.
  for (size_t k = 0; k < im->weight_count; k++)
    if (strcmp(im->weights[k].name, name) == 0)
      return ATTN_OK;
  if (im->weight_count == im->weight_capacity) {
    size_t capacity = im->weight_capacity ? 2 * im->weight_capacity : 64;
    attn_named_tensor *grown = attn_arena_calloc(&im->arena, capacity, sizeof(*grown));
    if (!grown)
      return oom(im);
    if (im->weight_count)
      memcpy(grown, im->weights, im->weight_count * sizeof(*grown));
    im->weights = grown;
    im->weight_capacity = capacity;
  }
  im->weights[im->weight_count++] = (attn_named_tensor){name, *t};
  return ATTN_OK;
}

// The graph value of `v`, making a weight, constant or iota comparison node on first use.
static attn_status use(const node_ctx *c, ov *v, attn_value_id *out) {
  importer *im = c->im;
  if (v->id.index) {
    *out = v->id;
    return ATTN_OK;
  }
  if (v->init) {
    const char **names = attn_graph_alloc(im->graph, sizeof(*names));
    if (!names ||
        !(names[0] = attn_graph_strdup(im->graph, v->weight_name, strlen(v->weight_name))))
      return oom(im);
    attn_weight_attrs attrs = {names, 1, {v->init->dtype, v->init->rank, {0}}};
    for (uint32_t d = 0; d < v->init->rank; d++)
      attrs.type.dims[d] = v->init->dims[d];
    ATTN_RETURN_IF_ERROR(record_weight(im, names[0], v->init));
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_WEIGHT, NULL, 0, &attrs, &v->id));
  } else if (v->is_tril) {
    // visible(q, k) iff k + neg <= q + pos, over the value's (possibly symbolic) dims.
    attn_value_id kk, qq, visible;
    uint32_t r = v->type.rank;
    ATTN_RETURN_IF_ERROR(iota(c, &v->type, r - 1, v->tril_neg, &kk));
    ATTN_RETURN_IF_ERROR(iota(c, &v->type, r - 2, v->tril_pos, &qq));
    attn_value_id ins[2] = {kk, qq};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_LE, ins, 2, NULL, &visible));
    if (v->type.dtype != ATTN_DTYPE_BOOL) {
      attn_cast_attrs cast = {v->type.dtype};
      ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_CAST, &visible, 1, &cast, &visible));
    }
    v->id = visible;
  } else if (v->is_known) {
    if (has_sym(v))
      return node_error(c, ATTN_ERROR_UNSUPPORTED,
                        "node '%s': a shape value with symbolic dims ('%s') is used as a tensor",
                        c->node->name ? c->node->name : "", v->name);
    attn_tensor t = {v->type.dtype, v->type.rank, {0}, NULL};
    for (uint32_t d = 0; d < t.rank; d++)
      t.dims[d] = v->type.dims[d];
    size_t bytes;
    if (!attn_tensor_size_bytes(&t, &bytes) || !(t.data = attn_graph_alloc(im->graph, bytes + 8)))
      return oom(im);
    int64_t n = attn_tensor_element_count(&t);
    for (int64_t k = 0; k < n; k++) {
      if (v->f)
        attn_tensor_set_f64(&t, k, v->f[k]);
      else if (t.dtype == ATTN_DTYPE_I64)
        ((int64_t *)t.data)[k] = v->i[k];
      else
        attn_tensor_set_f64(&t, k, (double)v->i[k]);
    }
    attn_constant_attrs attrs = {v->type, t.data};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_CONSTANT, NULL, 0, &attrs, &v->id));
  } else {
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "value '%s' has no definition", v->name);
  }
  *out = v->id;
  return ATTN_OK;
}

// ---- node outputs ----------------------------------------------------------------------------

static attn_status output_value(const node_ctx *c, uint32_t index, ov **out) {
  *out = NULL;
  if (index >= c->node->n_output || !c->node->output[index][0])
    return ATTN_OK; // not wanted
  return new_value(c->im, c->node->output[index], out);
}

static attn_status set_output(const node_ctx *c, uint32_t index, attn_value_id id) {
  ov *v;
  ATTN_RETURN_IF_ERROR(output_value(c, index, &v));
  if (v) {
    v->id = id;
    v->type = attn_graph_value(c->im->graph, id)->type;
  }
  return ATTN_OK;
}

// Input `index`, required.
static attn_status input(const node_ctx *c, uint32_t index, ov **out) {
  *out = NULL;
  if (index >= c->in_count || !c->in[index])
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "node '%s' needs input %u",
                      c->node->name ? c->node->name : "", index);
  *out = c->in[index];
  return ATTN_OK;
}

// Input `index` as a known int64 list (an axes, starts, shape input), elements being dims when
// `dims` is given (symbolic allowed) and plain numbers otherwise.
static attn_status known_ints(const node_ctx *c, uint32_t index, int64_t *values, bool *is_sym,
                              uint32_t *out_count, uint32_t capacity) {
  *out_count = 0;
  ov *v = NULL;
  ATTN_RETURN_IF_ERROR(input(c, index, &v));
  bool known;
  ATTN_RETURN_IF_ERROR(ensure_known(c->im, v, &known));
  if (!known || v->f || v->type.rank > 1)
    return node_error(c, ATTN_ERROR_UNSUPPORTED,
                      "node '%s': input %u ('%s') must be an integer list known at import",
                      c->node->name ? c->node->name : "", index, v->name);
  int64_t n = element_count(&v->type);
  if (n > capacity)
    return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': input %u has %lld entries",
                      c->node->name ? c->node->name : "", index, (long long)n);
  for (int64_t k = 0; k < n; k++) {
    bool sym = v->is_sym && v->is_sym[k];
    if (sym && !is_sym)
      return node_error(c, ATTN_ERROR_UNSUPPORTED,
                        "node '%s': input %u must be constant, it holds a symbolic dim",
                        c->node->name ? c->node->name : "", index);
    values[k] = v->i[k];
    if (is_sym)
      is_sym[k] = sym;
  }
  *out_count = (uint32_t)n;
  return ATTN_OK;
}

// A list of axes from input `index` (opset-13 style) or the attribute "axes"; false in
// *out_given when neither is there.
static attn_status axes_of(const node_ctx *c, uint32_t index, int64_t *axes, uint32_t *count,
                           bool *out_given) {
  *count = 0;
  *out_given = false;
  if (index < c->in_count && c->in[index]) {
    *out_given = true;
    return known_ints(c, index, axes, NULL, count, ATTN_MAX_RANK);
  }
  const Onnx__AttributeProto *a = attr(c, "axes");
  if (a) {
    if (a->n_ints > ATTN_MAX_RANK)
      return node_error(c, ATTN_ERROR_UNSUPPORTED, "too many axes");
    *out_given = true;
    *count = (uint32_t)a->n_ints;
    for (size_t k = 0; k < a->n_ints; k++)
      axes[k] = a->ints[k];
  }
  return ATTN_OK;
}

static attn_status norm_axis(const node_ctx *c, int64_t axis, uint32_t rank, int64_t *out) {
  *out = 0;
  int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= (int64_t)rank)
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT,
                      "node '%s': axis %lld is out of range "
                      "for rank %u",
                      c->node->name ? c->node->name : "", (long long)axis, rank);
  *out = a;
  return ATTN_OK;
}

// ---- evaluation of known values ----------------------------------------------------------------

typedef enum fold_op {
  F_ADD,
  F_SUB,
  F_MUL,
  F_DIV,
  F_POW,
  F_MAX,
  F_MIN,
  F_EQ,
  F_LT,
  F_GT,
  F_LE,
  F_GE,
  F_AND,
  F_OR,
  F_WHERE,
  F_NEG,
  F_SQRT,
  F_EXP,
  F_LOG,
  F_ERF,
  F_TANH,
  F_SIGMOID,
  F_RELU,
  F_NOT,
  F_RECIP,
} fold_op;

// One element of an operand: a number, or a symbolic dim.
typedef struct elem {
  double f;
  int64_t i;
  bool is_sym;
} elem;

static elem get_elem(const ov *v, int64_t k) {
  elem e = {0, 0, false};
  if (v->f) {
    e.f = v->f[k];
  } else {
    e.i = v->i[k];
    e.f = (double)e.i;
    e.is_sym = v->is_sym && v->is_sym[k];
  }
  return e;
}

// A dim from an element: a symbolic dim, or a number ≥ 0.
static bool elem_dim(elem e, attn_dim *out) {
  if (e.is_sym || e.i >= 0) {
    *out = e.i;
    return true;
  }
  return false;
}

// Integer arithmetic on elements that may be symbolic. False when it cannot be told.
static bool fold_int(importer *im, fold_op op, elem a, elem b, elem *out) {
  out->is_sym = false;
  if (!a.is_sym && !b.is_sym) {
    int64_t x = a.i, y = b.i, r;
    switch (op) {
    case F_ADD:
      r = x + y;
      break;
    case F_SUB:
      r = x - y;
      break;
    case F_MUL:
      r = x * y;
      break;
    case F_DIV:
      if (y == 0)
        return false;
      r = x / y;
      break;
    case F_MAX:
      r = x > y ? x : y;
      break;
    case F_MIN:
      r = x < y ? x : y;
      break;
    case F_EQ:
      r = x == y;
      break;
    case F_LT:
      r = x < y;
      break;
    case F_GT:
      r = x > y;
      break;
    case F_LE:
      r = x <= y;
      break;
    case F_GE:
      r = x >= y;
      break;
    case F_AND:
      r = x && y;
      break;
    case F_OR:
      r = x || y;
      break;
    case F_POW:
      r = (int64_t)pow((double)x, (double)y);
      break;
    default:
      return false;
    }
    out->i = r;
    out->f = (double)r;
    return true;
  }
  attn_dim da, db, r;
  if (op == F_EQ && a.is_sym && b.is_sym) {
    out->i = 1; // dims are interned: equal expressions are equal ids; others cannot be told
    return a.i == b.i;
  }
  if (op == F_EQ && ((a.is_sym && b.i < 0) || (b.is_sym && a.i < 0))) {
    out->i = 0; // a dim is never negative
    return true;
  }
  if (!elem_dim(a, &da) || !elem_dim(b, &db))
    return false;
  attn_dim_kind kind;
  switch (op) {
  case F_ADD:
    kind = ATTN_DIM_ADD;
    break;
  case F_SUB:
    kind = ATTN_DIM_SUB;
    break;
  case F_MUL:
    kind = ATTN_DIM_MUL;
    break;
  case F_DIV:
    kind = ATTN_DIM_DIV;
    break;
  default:
    return false;
  }
  if (attn_graph_dim_binary(im->graph, kind, da, db, &r) != ATTN_OK)
    return false;
  out->i = r;
  out->is_sym = !attn_dim_is_constant(r);
  out->f = (double)r;
  return true;
}

static double fold_float(fold_op op, double x, double y) {
  switch (op) {
  case F_ADD:
    return x + y;
  case F_SUB:
    return x - y;
  case F_MUL:
    return x * y;
  case F_DIV:
    return x / y;
  case F_POW:
    return pow(x, y);
  case F_MAX:
    return x > y ? x : y;
  case F_MIN:
    return x < y ? x : y;
  case F_EQ:
    return x == y;
  case F_LT:
    return x < y;
  case F_GT:
    return x > y;
  case F_LE:
    return x <= y;
  case F_GE:
    return x >= y;
  case F_NEG:
    return -x;
  case F_SQRT:
    return sqrt(x);
  case F_EXP:
    return exp(x);
  case F_LOG:
    return log(x);
  case F_ERF:
    return erf(x);
  case F_TANH:
    return tanh(x);
  case F_SIGMOID:
    return 1.0 / (1.0 + exp(-x));
  case F_RELU:
    return x > 0 ? x : 0;
  case F_RECIP:
    return 1.0 / x;
  default:
    return 0;
  }
}

// Rounds to what the dtype holds, so a folded chain computes what the graph would.
static double round_to(attn_dtype dtype, double x) {
  if (dtype == ATTN_DTYPE_F32)
    return (double)(float)x;
  if (dtype == ATTN_DTYPE_F16)
    return (double)attn_f16_to_f32(attn_f32_to_f16((float)x));
  if (dtype == ATTN_DTYPE_BF16)
    return (double)attn_bf16_to_f32(attn_f32_to_bf16((float)x));
  return x;
}

static bool is_compare(fold_op op) {
  return op == F_EQ || op == F_LT || op == F_GT || op == F_LE || op == F_GE;
}

// Evaluates an elementwise op of known operands with broadcasting into a new known value.
// *out_done is false (and nothing is defined) when the result is too large or cannot be told.
static attn_status fold_elementwise(const node_ctx *c, fold_op op, ov *const *ins, uint32_t n,
                                    attn_dtype out_dtype, ov *out, bool *out_done) {
  *out_done = false;
  uint32_t rank = 0;
  for (uint32_t k = 0; k < n; k++)
    rank = ins[k]->type.rank > rank ? ins[k]->type.rank : rank;
  int64_t dims[ATTN_MAX_RANK];
  for (uint32_t d = 0; d < rank; d++) {
    dims[d] = 1;
    for (uint32_t k = 0; k < n; k++) {
      uint32_t lead = rank - ins[k]->type.rank;
      int64_t dk = d < lead ? 1 : ins[k]->type.dims[d - lead];
      if (dk != 1 && dims[d] != 1 && dk != dims[d])
        return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "node '%s': cannot broadcast",
                          c->node->name ? c->node->name : "");
      if (dk != 1)
        dims[d] = dk;
    }
  }
  attn_type shape = {out_dtype, rank, {0}};
  memcpy(shape.dims, dims, rank * sizeof(int64_t));
  int64_t total = element_count(&shape);
  if (total > FOLD_LIMIT)
    return ATTN_OK;
  ov result = {0};
  ATTN_RETURN_IF_ERROR(make_known(c->im, &result, out_dtype, rank, dims));
  bool is_float = attn_dtype_is_float(ins[n == 3 ? 1 : 0]->type.dtype);
  for (int64_t flat = 0; flat < total; flat++) {
    elem e[3];
    for (uint32_t k = 0; k < n; k++) {
      const ov *v = ins[k];
      uint32_t lead = rank - v->type.rank;
      int64_t index = 0, rest = flat;
      int64_t coords[ATTN_MAX_RANK];
      for (int32_t d = (int32_t)rank - 1; d >= 0; d--) {
        coords[d] = rest % dims[d];
        rest /= dims[d];
      }
      for (uint32_t d = lead; d < rank; d++)
        index = index * v->type.dims[d - lead] + (v->type.dims[d - lead] == 1 ? 0 : coords[d]);
      e[k] = get_elem(v, index);
    }
    elem r = {0, 0, false};
    if (op == F_WHERE) {
      r = e[0].i ? e[1] : e[2];
    } else if (op == F_NOT) {
      r.i = !e[0].i;
    } else if (is_float) {
      r.f = fold_float(op, e[0].f, n > 1 ? e[1].f : 0);
      r.i = (int64_t)r.f;
    } else if (n == 1) {
      if (op == F_NEG && !e[0].is_sym)
        r.i = -e[0].i;
      else if (op == F_RELU && !e[0].is_sym)
        r.i = e[0].i > 0 ? e[0].i : 0;
      else
        return ATTN_OK;
    } else if (!fold_int(c->im, op, e[0], e[1], &r)) {
      return ATTN_OK;
    }
    if (result.f)
      result.f[flat] = round_to(out_dtype, is_float || op == F_WHERE ? r.f : (double)r.i);
    else
      result.i[flat] = is_float && !is_compare(op) && op != F_WHERE ? (int64_t)r.f : r.i;
    if (r.is_sym && out_dtype == ATTN_DTYPE_I64) {
      ATTN_RETURN_IF_ERROR(make_sym(c->im, &result));
      result.is_sym[flat] = true;
    }
  }
  out->type = result.type;
  out->is_known = true;
  out->f = result.f;
  out->i = result.i;
  out->is_sym = result.is_sym;
  *out_done = true;
  return ATTN_OK;
}

// Whether every input in [0, n) is known (initializers decoded when small).
static attn_status all_known(const node_ctx *c, uint32_t n, bool *out) {
  *out = true;
  for (uint32_t k = 0; k < n && *out; k++) {
    if (!c->in[k])
      continue;
    ATTN_RETURN_IF_ERROR(ensure_known(c->im, c->in[k], out));
  }
  return ATTN_OK;
}

// ---- op handlers -----------------------------------------------------------------------------

typedef attn_status (*op_fn)(const node_ctx *c);

static attn_status do_identity(const node_ctx *c) {
  ov *x = NULL, *y = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (y) {
    const char *name = y->name;
    *y = *x;
    y->name = name;
  }
  return ATTN_OK;
}

static const struct {
  const char *name;
  fold_op fold;
  attn_op op;
} unary_ops[] = {
    {"Neg", F_NEG, ATTN_OP_NEG},
    {"Sqrt", F_SQRT, ATTN_OP_SQRT},
    {"Exp", F_EXP, ATTN_OP_EXP},
    {"Log", F_LOG, ATTN_OP_LOG},
    {"Erf", F_ERF, ATTN_OP_ERF},
    {"Tanh", F_TANH, ATTN_OP_TANH},
    {"Sigmoid", F_SIGMOID, ATTN_OP_SIGMOID},
    {"Relu", F_RELU, ATTN_OP_RELU},
    {"Not", F_NOT, ATTN_OP_NOT},
    {"Reciprocal", F_RECIP, ATTN_OP_DIV},
};

static attn_status do_unary(const node_ctx *c) {
  size_t u = 0;
  while (strcmp(unary_ops[u].name, c->node->op_type) != 0)
    u++;
  ov *x = NULL, *y = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  bool known;
  ATTN_RETURN_IF_ERROR(all_known(c, 1, &known));
  if (known) {
    ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
    bool done = false;
    if (y)
      ATTN_RETURN_IF_ERROR(fold_elementwise(c, unary_ops[u].fold, &x, 1, x->type.dtype, y, &done));
    if (done || !y)
      return ATTN_OK;
  }
  attn_value_id ins[2];
  ATTN_RETURN_IF_ERROR(use(c, x, &ins[0]));
  attn_value_id out;
  if (unary_ops[u].fold == F_RECIP) {
    ins[1] = ins[0];
    ATTN_RETURN_IF_ERROR(scalar_const(c, x->type.dtype, 1.0, &ins[0]));
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_DIV, ins, 2, NULL, &out));
  } else {
    ATTN_RETURN_IF_ERROR(add_node(c, unary_ops[u].op, ins, 1, NULL, &out));
  }
  return set_output(c, 0, out);
}

static const struct {
  const char *name;
  fold_op fold;
  attn_op op;
} binary_ops[] = {
    {"Add", F_ADD, ATTN_OP_ADD},       {"Sub", F_SUB, ATTN_OP_SUB},
    {"Mul", F_MUL, ATTN_OP_MUL},       {"Div", F_DIV, ATTN_OP_DIV},
    {"Pow", F_POW, ATTN_OP_POW},       {"Max", F_MAX, ATTN_OP_MAXIMUM},
    {"Min", F_MIN, ATTN_OP_MINIMUM},   {"Equal", F_EQ, ATTN_OP_EQ},
    {"Less", F_LT, ATTN_OP_LT},        {"Greater", F_GT, ATTN_OP_GT},
    {"LessOrEqual", F_LE, ATTN_OP_LE}, {"GreaterOrEqual", F_GE, ATTN_OP_GE},
    {"And", F_AND, ATTN_OP_AND},       {"Or", F_OR, ATTN_OP_OR},
};

// Binary elementwise ops; Max and Min take any number of inputs, folded left to right.
static attn_status do_binary(const node_ctx *c) {
  size_t b = 0;
  while (strcmp(binary_ops[b].name, c->node->op_type) != 0)
    b++;
  fold_op fold = binary_ops[b].fold;
  uint32_t n = c->in_count;
  if (n < 1 || (n != 2 && fold != F_MAX && fold != F_MIN))
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "node '%s' has %u inputs",
                      c->node->name ? c->node->name : "", n);
  for (uint32_t k = 0; k < n; k++) {
    ov *unused;
    ATTN_RETURN_IF_ERROR(input(c, k, &unused));
  }
  ov *first = c->in[0];
  attn_dtype out_dtype = is_compare(fold) ? ATTN_DTYPE_BOOL : first->type.dtype;
  bool known;
  ATTN_RETURN_IF_ERROR(all_known(c, n, &known));
  if (known && n <= 2) {
    ov *y;
    ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
    bool done = false;
    if (y)
      ATTN_RETURN_IF_ERROR(fold_elementwise(c, fold, c->in, n, out_dtype, y, &done));
    if (done || !y)
      return ATTN_OK;
  }
  attn_value_id acc;
  ATTN_RETURN_IF_ERROR(use(c, first, &acc));
  for (uint32_t k = 1; k < n; k++) {
    attn_value_id rhs;
    ATTN_RETURN_IF_ERROR(use(c, c->in[k], &rhs));
    attn_dtype rd = attn_graph_value(c->im->graph, rhs)->type.dtype;
    if (rd != first->type.dtype && fold == F_POW) { // Pow's exponent may have its own type
      attn_cast_attrs cast = {first->type.dtype};
      ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_CAST, &rhs, 1, &cast, &rhs));
    }
    attn_value_id ins[2] = {acc, rhs};
    ATTN_RETURN_IF_ERROR(add_node(c, binary_ops[b].op, ins, 2, NULL, &acc));
  }
  return set_output(c, 0, acc);
}

static attn_status do_where(const node_ctx *c) {
  ov *cond, *x, *y, *out;
  ATTN_RETURN_IF_ERROR(input(c, 0, &cond));
  ATTN_RETURN_IF_ERROR(input(c, 1, &x));
  ATTN_RETURN_IF_ERROR(input(c, 2, &y));
  bool known;
  ATTN_RETURN_IF_ERROR(all_known(c, 3, &known));
  if (known) {
    ATTN_RETURN_IF_ERROR(output_value(c, 0, &out));
    bool done = false;
    ov *ins[3] = {cond, x, y};
    if (out)
      ATTN_RETURN_IF_ERROR(fold_elementwise(c, F_WHERE, ins, 3, x->type.dtype, out, &done));
    if (done || !out)
      return ATTN_OK;
  }
  attn_value_id ins[3], result;
  ATTN_RETURN_IF_ERROR(use(c, cond, &ins[0]));
  ATTN_RETURN_IF_ERROR(use(c, x, &ins[1]));
  ATTN_RETURN_IF_ERROR(use(c, y, &ins[2]));
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_WHERE, ins, 3, NULL, &result));
  return set_output(c, 0, result);
}

static attn_status cast_to(const node_ctx *c, ov *x, attn_dtype dtype) {
  bool known;
  ATTN_RETURN_IF_ERROR(all_known(c, 1, &known));
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  if (known && !x->is_tril) {
    int64_t n = element_count(&x->type);
    const char *name = y->name;
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, dtype, x->type.rank, x->type.dims));
    y->name = name;
    for (int64_t k = 0; k < n; k++) {
      elem e = get_elem(x, k);
      if (y->f)
        y->f[k] = round_to(dtype, x->f ? e.f : (double)e.i);
      else if (dtype == ATTN_DTYPE_BOOL)
        y->i[k] = x->f ? e.f != 0 : e.i != 0;
      else
        y->i[k] = x->f ? (int64_t)e.f : e.i;
      if (e.is_sym) {
        if (dtype == ATTN_DTYPE_I64) {
          ATTN_RETURN_IF_ERROR(make_sym(c->im, y));
          y->is_sym[k] = true;
        } else if (dtype != ATTN_DTYPE_I32) {
          return node_error(c, ATTN_ERROR_UNSUPPORTED,
                            "node '%s': a symbolic dim cast to a non-integer type is used as a "
                            "tensor",
                            c->node->name ? c->node->name : "");
        } else {
          ATTN_RETURN_IF_ERROR(make_sym(c->im, y));
          y->is_sym[k] = true;
        }
      }
    }
    return ATTN_OK;
  }
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  if (attn_graph_value(c->im->graph, v)->type.dtype != dtype) {
    attn_cast_attrs cast = {dtype};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_CAST, &v, 1, &cast, &v));
  }
  y->id = v;
  y->type = attn_graph_value(c->im->graph, v)->type;
  return ATTN_OK;
}

static attn_status do_cast(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  attn_dtype dtype;
  int64_t to = attr_int(c, "to", -1);
  if (!dtype_from_onnx((int32_t)to, &dtype))
    return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': cast to ONNX data type %lld",
                      c->node->name ? c->node->name : "", (long long)to);
  return cast_to(c, x, dtype);
}

static attn_status do_cast_like(const node_ctx *c) {
  ov *x, *like;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  ATTN_RETURN_IF_ERROR(input(c, 1, &like));
  return cast_to(c, x, like->type.dtype);
}

// Reshapes `x` to `dims` (constant or symbolic, ATTN_DIM_INFER for one -1); known values are
// reshaped in place of evaluation.
static attn_status reshape_to(const node_ctx *c, ov *x, const attn_dim *dims, uint32_t rank) {
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  bool known;
  ATTN_RETURN_IF_ERROR(ensure_known(c->im, x, &known));
  if (known && !x->is_tril) {
    int64_t n = element_count(&x->type), product = 1;
    int64_t out_dims[ATTN_MAX_RANK];
    int infer = -1;
    for (uint32_t d = 0; d < rank; d++) {
      if (dims[d] == ATTN_DIM_INFER) {
        infer = (int)d;
        continue;
      }
      if (!attn_dim_is_constant(dims[d]))
        goto as_node;
      out_dims[d] = dims[d];
      product *= dims[d];
    }
    if (infer >= 0)
      out_dims[infer] = product ? n / product : 0;
    const char *name = y->name;
    *y = *x;
    y->name = name;
    y->init = NULL;
    y->id = ATTN_VALUE_NONE;
    y->type.rank = rank;
    for (uint32_t d = 0; d < rank; d++)
      y->type.dims[d] = out_dims[d];
    if (element_count(&y->type) != n)
      return node_error(c, ATTN_ERROR_INVALID_ARGUMENT,
                        "node '%s': cannot reshape %lld "
                        "elements",
                        c->node->name ? c->node->name : "", (long long)n);
    return ATTN_OK;
  }
as_node:;
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  const attn_type *t = &attn_graph_value(c->im->graph, v)->type;
  bool same = t->rank == rank;
  for (uint32_t d = 0; same && d < rank; d++)
    same = t->dims[d] == dims[d];
  if (!same) {
    attn_dim *copy = attn_graph_alloc(c->im->graph, (rank ? rank : 1) * sizeof(attn_dim));
    if (!copy)
      return oom(c->im);
    memcpy(copy, dims, rank * sizeof(attn_dim));
    attn_shape_attrs attrs = {copy, rank};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_RESHAPE, &v, 1, &attrs, &v));
  }
  y->id = v;
  y->type = attn_graph_value(c->im->graph, v)->type;
  return ATTN_OK;
}

static attn_status do_reshape(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t shape[ATTN_MAX_RANK];
  bool is_sym[ATTN_MAX_RANK];
  uint32_t rank;
  ATTN_RETURN_IF_ERROR(known_ints(c, 1, shape, is_sym, &rank, ATTN_MAX_RANK));
  bool allow_zero = attr_int(c, "allowzero", 0) != 0;
  attn_dim dims[ATTN_MAX_RANK];
  for (uint32_t d = 0; d < rank; d++) {
    if (is_sym[d] || shape[d] > 0 || (shape[d] == 0 && allow_zero))
      dims[d] = shape[d];
    else if (shape[d] == 0 && d < x->type.rank)
      dims[d] = x->type.dims[d]; // 0 copies the input's dim
    else if (shape[d] == -1)
      dims[d] = ATTN_DIM_INFER;
    else
      return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "node '%s': invalid shape entry %lld",
                        c->node->name ? c->node->name : "", (long long)shape[d]);
  }
  return reshape_to(c, x, dims, rank);
}

static attn_status do_unsqueeze(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t axes[ATTN_MAX_RANK];
  uint32_t count;
  bool given;
  ATTN_RETURN_IF_ERROR(axes_of(c, 1, axes, &count, &given));
  uint32_t rank = x->type.rank + count;
  if (rank > ATTN_MAX_RANK)
    return node_error(c, ATTN_ERROR_UNSUPPORTED, "result rank %u", rank);
  bool is_new[ATTN_MAX_RANK] = {false};
  for (uint32_t k = 0; k < count; k++) {
    int64_t a;
    ATTN_RETURN_IF_ERROR(norm_axis(c, axes[k], rank, &a));
    is_new[a] = true;
  }
  attn_dim dims[ATTN_MAX_RANK];
  for (uint32_t d = 0, from = 0; d < rank; d++)
    dims[d] = is_new[d] ? 1 : x->type.dims[from++];
  return reshape_to(c, x, dims, rank);
}

static attn_status do_squeeze(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t axes[ATTN_MAX_RANK];
  uint32_t count;
  bool given;
  ATTN_RETURN_IF_ERROR(axes_of(c, 1, axes, &count, &given));
  bool drop[ATTN_MAX_RANK] = {false};
  for (uint32_t k = 0; k < count; k++) {
    int64_t a;
    ATTN_RETURN_IF_ERROR(norm_axis(c, axes[k], x->type.rank, &a));
    drop[a] = true;
  }
  attn_dim dims[ATTN_MAX_RANK];
  uint32_t rank = 0;
  for (uint32_t d = 0; d < x->type.rank; d++) {
    bool squeeze = given ? drop[d] : x->type.dims[d] == 1;
    if (squeeze && x->type.dims[d] != 1)
      return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "node '%s': dim %u is not 1",
                        c->node->name ? c->node->name : "", d);
    if (!squeeze)
      dims[rank++] = x->type.dims[d];
  }
  return reshape_to(c, x, dims, rank);
}

static attn_status do_flatten(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t axis = attr_int(c, "axis", 1);
  if (axis < 0)
    axis += x->type.rank;
  if (axis < 0 || axis > (int64_t)x->type.rank)
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "axis %lld", (long long)axis);
  attn_dim dims[2] = {1, 1};
  for (uint32_t d = 0; d < x->type.rank; d++)
    if (attn_graph_dim_binary(c->im->graph, ATTN_DIM_MUL, dims[d >= axis], x->type.dims[d],
                              &dims[d >= axis]) != ATTN_OK)
      return oom(c->im);
  return reshape_to(c, x, dims, 2);
}

static attn_status do_shape(const node_ctx *c) {
  ov *x = NULL, *y = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  int64_t rank = x->type.rank;
  int64_t start = attr_int(c, "start", 0), end = attr_int(c, "end", rank);
  start = start < 0 ? start + rank : start;
  end = end < 0 ? end + rank : end;
  start = start < 0 ? 0 : start > rank ? rank : start;
  end = end < start ? start : end > rank ? rank : end;
  int64_t n = end - start;
  ATTN_RETURN_IF_ERROR(make_known(c->im, y, ATTN_DTYPE_I64, 1, &n));
  ATTN_RETURN_IF_ERROR(make_sym(c->im, y));
  for (int64_t k = 0; k < n; k++) {
    y->i[k] = x->type.dims[start + k];
    y->is_sym[k] = !attn_dim_is_constant(y->i[k]);
  }
  return ATTN_OK;
}

static attn_status do_size(const node_ctx *c) {
  ov *x = NULL, *y = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  attn_dim n = 1;
  for (uint32_t d = 0; d < x->type.rank; d++)
    if (attn_graph_dim_binary(c->im->graph, ATTN_DIM_MUL, n, x->type.dims[d], &n) != ATTN_OK)
      return oom(c->im);
  ATTN_RETURN_IF_ERROR(make_known(c->im, y, ATTN_DTYPE_I64, 0, NULL));
  ATTN_RETURN_IF_ERROR(make_sym(c->im, y));
  y->i[0] = n;
  y->is_sym[0] = !attn_dim_is_constant(n);
  return ATTN_OK;
}

// Constant's value attributes: value (a tensor), value_float(s), value_int(s).
static attn_status do_constant(const node_ctx *c) {
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  const Onnx__AttributeProto *a;
  if ((a = attr(c, "value")) && a->t) {
    attn_tensor t;
    ATTN_RETURN_IF_ERROR(decode_tensor(c->im, a->t, c->loc, &t));
    return known_from_tensor(c->im, y, &t);
  }
  if ((a = attr(c, "value_float")) && a->has_f) {
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, ATTN_DTYPE_F32, 0, NULL));
    y->f[0] = (double)a->f;
    return ATTN_OK;
  }
  if ((a = attr(c, "value_int")) && a->has_i) {
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, ATTN_DTYPE_I64, 0, NULL));
    y->i[0] = a->i;
    return ATTN_OK;
  }
  if ((a = attr(c, "value_floats"))) {
    int64_t n = (int64_t)a->n_floats;
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, ATTN_DTYPE_F32, 1, &n));
    for (int64_t k = 0; k < n; k++)
      y->f[k] = (double)a->floats[k];
    return ATTN_OK;
  }
  if ((a = attr(c, "value_ints"))) {
    int64_t n = (int64_t)a->n_ints;
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, ATTN_DTYPE_I64, 1, &n));
    for (int64_t k = 0; k < n; k++)
      y->i[k] = a->ints[k];
    return ATTN_OK;
  }
  return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': no value attribute attnc takes",
                    c->node->name ? c->node->name : "");
}

static attn_status do_constant_of_shape(const node_ctx *c) {
  int64_t shape[ATTN_MAX_RANK];
  bool is_sym[ATTN_MAX_RANK];
  uint32_t rank;
  ATTN_RETURN_IF_ERROR(known_ints(c, 0, shape, is_sym, &rank, ATTN_MAX_RANK));
  attn_dtype dtype = ATTN_DTYPE_F32;
  double value = 0;
  const Onnx__AttributeProto *a = attr(c, "value");
  if (a && a->t) {
    attn_tensor t;
    ATTN_RETURN_IF_ERROR(decode_tensor(c->im, a->t, c->loc, &t));
    if (attn_tensor_element_count(&t) != 1)
      return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "value must hold one element");
    dtype = t.dtype;
    value = attn_tensor_get_f64(&t, 0);
  }
  bool symbolic = false;
  int64_t total = 1;
  for (uint32_t d = 0; d < rank; d++) {
    symbolic |= is_sym[d];
    total *= is_sym[d] ? 1 : shape[d];
  }
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  if (!symbolic && total <= FOLD_LIMIT) {
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, dtype, rank, shape));
    for (int64_t k = 0; k < total; k++) {
      if (y->f)
        y->f[k] = value;
      else
        y->i[k] = (int64_t)value;
    }
    return ATTN_OK;
  }
  // A splat of symbolic shape: a scalar expanded.
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(scalar_const(c, dtype, value, &v));
  attn_dim *dims = attn_graph_alloc(c->im->graph, (rank ? rank : 1) * sizeof(attn_dim));
  if (!dims)
    return oom(c->im);
  for (uint32_t d = 0; d < rank; d++)
    dims[d] = shape[d];
  attn_shape_attrs attrs = {dims, rank};
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_EXPAND, &v, 1, &attrs, &v));
  y->id = v;
  y->type = attn_graph_value(c->im->graph, v)->type;
  return ATTN_OK;
}

static attn_status do_range(const node_ctx *c) {
  ov *in[3];
  for (uint32_t k = 0; k < 3; k++) {
    ATTN_RETURN_IF_ERROR(input(c, k, &in[k]));
    bool known;
    ATTN_RETURN_IF_ERROR(ensure_known(c->im, in[k], &known));
    if (!known || element_count(&in[k]->type) != 1)
      return node_error(c, ATTN_ERROR_UNSUPPORTED,
                        "node '%s': start, limit and delta must be scalars known at import",
                        c->node->name ? c->node->name : "");
  }
  elem start = get_elem(in[0], 0), limit = get_elem(in[1], 0), delta = get_elem(in[2], 0);
  attn_dtype dtype = in[0]->type.dtype;
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  if (!start.is_sym && !limit.is_sym) {
    double n = ceil((limit.f - start.f) / delta.f);
    int64_t count = n > 0 ? (int64_t)n : 0;
    if (count > FOLD_LIMIT)
      return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': a range of %lld elements",
                        c->node->name ? c->node->name : "", (long long)count);
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, dtype, 1, &count));
    for (int64_t k = 0; k < count; k++) {
      if (y->f)
        y->f[k] = round_to(dtype, start.f + (double)k * delta.f);
      else
        y->i[k] = start.i + k * delta.i;
    }
    return ATTN_OK;
  }
  // range(start, limit) of dims with step 1: an iota of length limit - start.
  attn_dim s, l, n;
  if (attn_dtype_is_float(dtype) || delta.is_sym || delta.i != 1 || !elem_dim(start, &s) ||
      !elem_dim(limit, &l) ||
      attn_graph_dim_binary(c->im->graph, ATTN_DIM_SUB, l, s, &n) != ATTN_OK)
    return node_error(c, ATTN_ERROR_UNSUPPORTED,
                      "node '%s': a symbolic range needs integer dims and step 1",
                      c->node->name ? c->node->name : "");
  attn_type type = {ATTN_DTYPE_I64, 1, {n}};
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(iota(c, &type, 0, s, &v));
  if (dtype != ATTN_DTYPE_I64) {
    attn_cast_attrs cast = {dtype};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_CAST, &v, 1, &cast, &v));
  }
  y->id = v;
  y->type = attn_graph_value(c->im->graph, v)->type;
  return ATTN_OK;
}

static attn_status do_concat(const node_ctx *c) {
  ov *first;
  ATTN_RETURN_IF_ERROR(input(c, 0, &first));
  int64_t axis = 0;
  ATTN_RETURN_IF_ERROR(norm_axis(c, attr_int(c, "axis", 0), first->type.rank, &axis));
  bool known;
  ATTN_RETURN_IF_ERROR(all_known(c, c->in_count, &known));
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  if (known && first->type.rank == 1) { // shape vectors
    int64_t n = 0;
    for (uint32_t k = 0; k < c->in_count; k++)
      n += c->in[k] ? element_count(&c->in[k]->type) : 0;
    if (n <= FOLD_LIMIT) {
      const char *name = y->name;
      ATTN_RETURN_IF_ERROR(make_known(c->im, y, first->type.dtype, 1, &n));
      y->name = name;
      int64_t at = 0;
      for (uint32_t k = 0; k < c->in_count; k++) {
        const ov *v = c->in[k];
        if (!v)
          continue;
        if (v->type.dtype != first->type.dtype || v->type.rank != 1)
          return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "inputs differ in type");
        for (int64_t e = 0; e < v->type.dims[0]; e++, at++) {
          if (y->f)
            y->f[at] = v->f[e];
          else
            y->i[at] = v->i[e];
          if (v->is_sym && v->is_sym[e]) {
            ATTN_RETURN_IF_ERROR(make_sym(c->im, y));
            y->is_sym[at] = true;
          }
        }
      }
      return ATTN_OK;
    }
  }
  attn_value_id ins[16];
  uint32_t n = 0;
  for (uint32_t k = 0; k < c->in_count; k++) {
    if (!c->in[k])
      continue;
    ATTN_RETURN_IF_ERROR(use(c, c->in[k], &ins[n]));
    n++;
  }
  attn_axis_attrs attrs = {axis};
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_CONCAT, ins, n, &attrs, &v));
  y->id = v;
  y->type = attn_graph_value(c->im->graph, v)->type;
  return ATTN_OK;
}

static attn_status do_gather(const node_ctx *c) {
  ov *data = NULL, *indices = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &data));
  ATTN_RETURN_IF_ERROR(input(c, 1, &indices));
  int64_t axis = 0;
  ATTN_RETURN_IF_ERROR(norm_axis(c, attr_int(c, "axis", 0), data->type.rank, &axis));
  bool known;
  ATTN_RETURN_IF_ERROR(all_known(c, 2, &known));
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  if (known && data->type.rank == 1 && !data->is_tril) {
    int64_t n = element_count(&indices->type), size = data->type.dims[0];
    const char *name = y->name;
    ATTN_RETURN_IF_ERROR(
        make_known(c->im, y, data->type.dtype, indices->type.rank, indices->type.dims));
    y->name = name;
    for (int64_t k = 0; k < n; k++) {
      int64_t at = indices->i[k] < 0 ? indices->i[k] + size : indices->i[k];
      if (at < 0 || at >= size)
        return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "node '%s': index %lld out of range",
                          c->node->name ? c->node->name : "", (long long)indices->i[k]);
      if (y->f)
        y->f[k] = data->f[at];
      else
        y->i[k] = data->i[at];
      if (data->is_sym && data->is_sym[at]) {
        ATTN_RETURN_IF_ERROR(make_sym(c->im, y));
        y->is_sym[k] = true;
      }
    }
    return ATTN_OK;
  }
  attn_value_id ins[2];
  ATTN_RETURN_IF_ERROR(use(c, data, &ins[0]));
  bool indices_known;
  ATTN_RETURN_IF_ERROR(ensure_known(c->im, indices, &indices_known));
  if (indices_known && attn_dim_is_constant(data->type.dims[axis])) {
    // Negative indices count from the end in ONNX; the IR's gather takes them as they are.
    for (int64_t k = 0; k < element_count(&indices->type); k++)
      if (indices->i[k] < 0)
        indices->i[k] += data->type.dims[axis];
  }
  ATTN_RETURN_IF_ERROR(use(c, indices, &ins[1]));
  attn_axis_attrs attrs = {axis};
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_GATHER, ins, 2, &attrs, &v));
  y->id = v;
  y->type = attn_graph_value(c->im->graph, v)->type;
  return ATTN_OK;
}

static attn_status do_transpose(const node_ctx *c) {
  ov *x = NULL, *y = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  uint32_t rank = x->type.rank;
  int64_t *perm = attn_graph_alloc(c->im->graph, (rank ? rank : 1) * sizeof(int64_t));
  if (!perm)
    return oom(c->im);
  const Onnx__AttributeProto *a = attr(c, "perm");
  if (a && a->n_ints != rank)
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "perm has %zu entries for rank %u", a->n_ints,
                      rank);
  for (uint32_t d = 0; d < rank; d++)
    perm[d] = a ? a->ints[d] : (int64_t)(rank - 1 - d);
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  attn_perm_attrs attrs = {perm, rank};
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_PERMUTE, &v, 1, &attrs, &v));
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (y) {
    y->id = v;
    y->type = attn_graph_value(c->im->graph, v)->type;
  }
  return ATTN_OK;
}

// ONNX clamps slice bounds; for a constant dim so do we, a symbolic one keeps them as they are.
static attn_status do_slice(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t starts[ATTN_MAX_RANK], ends[ATTN_MAX_RANK], axes[ATTN_MAX_RANK], steps[ATTN_MAX_RANK];
  bool start_sym[ATTN_MAX_RANK], end_sym[ATTN_MAX_RANK];
  uint32_t n, n_ends, n_axes, n_steps;
  ATTN_RETURN_IF_ERROR(known_ints(c, 1, starts, start_sym, &n, ATTN_MAX_RANK));
  ATTN_RETURN_IF_ERROR(known_ints(c, 2, ends, end_sym, &n_ends, ATTN_MAX_RANK));
  if (n_ends != n)
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "starts and ends differ in length");
  if (c->in_count > 3 && c->in[3]) {
    ATTN_RETURN_IF_ERROR(known_ints(c, 3, axes, NULL, &n_axes, ATTN_MAX_RANK));
  } else {
    n_axes = n;
    for (uint32_t k = 0; k < n; k++)
      axes[k] = k;
  }
  if (c->in_count > 4 && c->in[4]) {
    ATTN_RETURN_IF_ERROR(known_ints(c, 4, steps, NULL, &n_steps, ATTN_MAX_RANK));
  } else {
    n_steps = n;
    for (uint32_t k = 0; k < n; k++)
      steps[k] = 1;
  }
  if (n_axes != n || n_steps != n)
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "axes or steps differ in length");
  ov *y;
  ATTN_RETURN_IF_ERROR(output_value(c, 0, &y));
  if (!y)
    return ATTN_OK;
  bool known;
  ATTN_RETURN_IF_ERROR(ensure_known(c->im, x, &known));
  // Known values: slices of shape vectors and of causal patterns.
  bool symbolic = false;
  for (uint32_t k = 0; k < n; k++)
    symbolic |= start_sym[k] || end_sym[k];
  if (known && x->type.rank == 1 && !symbolic && steps[0] == 1 && !x->is_tril) {
    int64_t size = x->type.dims[0];
    int64_t s = starts[0] < 0 ? starts[0] + size : starts[0];
    int64_t e = ends[0] < 0 ? ends[0] + size : ends[0];
    s = s < 0 ? 0 : s > size ? size : s;
    e = e < s ? s : e > size ? size : e;
    int64_t count = e - s;
    const char *name = y->name;
    ATTN_RETURN_IF_ERROR(make_known(c->im, y, x->type.dtype, 1, &count));
    y->name = name;
    for (int64_t k = 0; k < count; k++) {
      if (y->f)
        y->f[k] = x->f[s + k];
      else
        y->i[k] = x->i[s + k];
      if (x->is_sym && x->is_sym[s + k]) {
        ATTN_RETURN_IF_ERROR(make_sym(c->im, y));
        y->is_sym[k] = true;
      }
    }
    return ATTN_OK;
  }
  if (symbolic && !x->is_tril && known && x->type.rank >= 2) {
    // A lower-triangular constant: j - i <= k over the last two dims, leading dims all 1.
    uint32_t r = x->type.rank;
    bool is_tril = !x->f;
    for (uint32_t d = 0; d + 2 < r && is_tril; d++)
      is_tril = x->type.dims[d] == 1;
    int64_t rows = x->type.dims[r - 2], cols = x->type.dims[r - 1], k = -1;
    if (is_tril && rows > 0 && cols > 0) {
      while (k + 1 < cols && x->i[k + 1] != 0)
        k++;
      for (int64_t i = 0; i < rows && is_tril; i++)
        for (int64_t j = 0; j < cols && is_tril; j++)
          is_tril = (x->i[i * cols + j] != 0) == (j - i <= k);
    }
    if (is_tril && k >= 0) {
      const char *name = y->name;
      *y = *x;
      y->name = name;
      y->init = NULL;
      y->is_known = false;
      y->is_tril = true;
      y->tril_pos = k;
      y->tril_neg = 0;
      x = y; // slice the pattern below
    }
  }
  if (x->is_tril) {
    uint32_t r = x->type.rank;
    attn_type type = x->type;
    attn_dim pos = x->tril_pos, neg = x->tril_neg;
    for (uint32_t k = 0; k < n; k++) {
      int64_t a;
      ATTN_RETURN_IF_ERROR(norm_axis(c, axes[k], r, &a));
      attn_dim dim = type.dims[a], s = starts[k], e = ends[k];
      if (steps[k] != 1 || (!start_sym[k] && starts[k] < 0) || (!end_sym[k] && ends[k] < 0))
        return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': this slice of a causal mask",
                          c->node->name ? c->node->name : "");
      if (!end_sym[k] && attn_dim_is_constant(dim) && e > dim)
        e = dim;
      if (!end_sym[k] && !attn_dim_is_constant(dim) && e == INT64_MAX)
        e = dim;
      attn_dim length;
      if (attn_graph_dim_binary(c->im->graph, ATTN_DIM_SUB, e, s, &length) != ATTN_OK)
        return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': slice bounds",
                          c->node->name ? c->node->name : "");
      type.dims[a] = length;
      // rows from s: i' = i - s, so j - i' <= k + s; cols from s: j' = j - s, j' - i <= k - s.
      attn_dim *grow = a == (int64_t)r - 2 ? &pos : a == (int64_t)r - 1 ? &neg : NULL;
      if (!grow) {
        if (s != 0)
          return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': this slice of a causal mask",
                            c->node->name ? c->node->name : "");
        continue;
      }
      if (attn_graph_dim_binary(c->im->graph, ATTN_DIM_ADD, *grow, s, grow) != ATTN_OK)
        return oom(c->im);
    }
    const char *name = y->name;
    *y = *x;
    y->name = name;
    y->type = type;
    y->tril_pos = pos;
    y->tril_neg = neg;
    return ATTN_OK;
  }
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  for (uint32_t k = 0; k < n; k++) {
    const attn_type *t = &attn_graph_value(c->im->graph, v)->type;
    int64_t a;
    ATTN_RETURN_IF_ERROR(norm_axis(c, axes[k], t->rank, &a));
    attn_dim dim = t->dims[a];
    if (steps[k] < 1)
      return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': slice step %lld",
                        c->node->name ? c->node->name : "", (long long)steps[k]);
    int64_t s = starts[k], e = ends[k];
    if (end_sym[k] && e == dim)
      e = INT64_MAX, end_sym[k] = false;
    if (start_sym[k] || end_sym[k]) {
      // Symbolic bounds: gather the rows [s, e) through an iota.
      attn_dim length;
      if (steps[k] != 1 || (!start_sym[k] && s < 0) || (!end_sym[k] && e < 0) ||
          attn_graph_dim_binary(c->im->graph, ATTN_DIM_SUB, e, s, &length) != ATTN_OK)
        return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': slice with symbolic bounds",
                          c->node->name ? c->node->name : "");
      attn_type it = {ATTN_DTYPE_I64, 1, {length}};
      attn_value_id ins[2] = {v, ATTN_VALUE_NONE};
      ATTN_RETURN_IF_ERROR(iota(c, &it, 0, s, &ins[1]));
      attn_axis_attrs attrs = {a};
      ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_GATHER, ins, 2, &attrs, &v));
      continue;
    }
    if (attn_dim_is_constant(dim)) {
      s = s < 0 ? s + dim : s;
      e = e < 0 ? e + dim : e;
      s = s < 0 ? 0 : s > dim ? dim : s;
      e = e < s ? s : e > dim ? dim : e;
      if (s == 0 && e == dim && steps[k] == 1)
        continue;
    } else if (e > INT64_MAX / 2) {
      e = INT64_MAX;
    }
    if (s == 0 && e == INT64_MAX && steps[k] == 1)
      continue;
    attn_slice_attrs attrs = {a, s, e, steps[k]};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_SLICE, &v, 1, &attrs, &v));
  }
  y->id = v;
  y->type = attn_graph_value(c->im->graph, v)->type;
  return ATTN_OK;
}

static attn_status do_split(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t axis = 0;
  ATTN_RETURN_IF_ERROR(norm_axis(c, attr_int(c, "axis", 0), x->type.rank, &axis));
  uint32_t count = (uint32_t)c->node->n_output;
  if (count == 0 || count > 64)
    return node_error(c, ATTN_ERROR_UNSUPPORTED, "%u outputs", count);
  attn_dim *sizes = attn_graph_alloc(c->im->graph, count * sizeof(attn_dim));
  if (!sizes)
    return oom(c->im);
  int64_t given[64];
  uint32_t n_given = 0;
  const Onnx__AttributeProto *a = attr(c, "split");
  if (c->in_count > 1 && c->in[1]) {
    ATTN_RETURN_IF_ERROR(known_ints(c, 1, given, NULL, &n_given, 64));
  } else if (a) {
    n_given = (uint32_t)(a->n_ints < 64 ? a->n_ints : 64);
    for (uint32_t k = 0; k < n_given; k++)
      given[k] = a->ints[k];
  }
  attn_dim dim = x->type.dims[axis];
  if (n_given) {
    if (n_given != count)
      return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "%u sizes for %u outputs", n_given, count);
    for (uint32_t k = 0; k < count; k++)
      sizes[k] = given[k];
  } else {
    if (!attn_dim_is_constant(dim))
      return node_error(c, ATTN_ERROR_UNSUPPORTED, "node '%s': an even split of a symbolic dim",
                        c->node->name ? c->node->name : "");
    int64_t part = (dim + count - 1) / count;
    for (uint32_t k = 0; k < count; k++)
      sizes[k] = k + 1 < count ? part : dim - part * (count - 1);
  }
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  attn_split_attrs attrs = {axis, sizes, count};
  attn_node_id node;
  ATTN_RETURN_IF_ERROR(
      attn_graph_add_node(c->im->graph, ATTN_OP_SPLIT, &v, 1, &attrs, c->loc, &node));
  for (uint32_t k = 0; k < count; k++)
    ATTN_RETURN_IF_ERROR(set_output(c, k, attn_node_output(c->im->graph, node, k)));
  return ATTN_OK;
}

static attn_status do_expand(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t shape[ATTN_MAX_RANK];
  bool is_sym[ATTN_MAX_RANK];
  uint32_t rank;
  ATTN_RETURN_IF_ERROR(known_ints(c, 1, shape, is_sym, &rank, ATTN_MAX_RANK));
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  const attn_type *t = &attn_graph_value(c->im->graph, v)->type;
  uint32_t out_rank = rank > t->rank ? rank : t->rank;
  attn_dim *dims = attn_graph_alloc(c->im->graph, (out_rank ? out_rank : 1) * sizeof(attn_dim));
  if (!dims)
    return oom(c->im);
  bool same = out_rank == t->rank;
  for (uint32_t d = 0; d < out_rank; d++) {
    attn_dim have = d < out_rank - t->rank ? 1 : t->dims[d - (out_rank - t->rank)];
    attn_dim want = d < out_rank - rank ? 1 : shape[d - (out_rank - rank)];
    // Expand broadcasts both ways: a 1 in the shape keeps the input's dim.
    dims[d] = want == 1 ? have : want;
    same &= dims[d] == have;
  }
  if (!same) {
    attn_shape_attrs attrs = {dims, out_rank};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_EXPAND, &v, 1, &attrs, &v));
  }
  return set_output(c, 0, v);
}

static attn_status do_matmul(const node_ctx *c) {
  ov *a = NULL, *b = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &a));
  ATTN_RETURN_IF_ERROR(input(c, 1, &b));
  attn_value_id ins[2];
  ATTN_RETURN_IF_ERROR(use(c, a, &ins[0]));
  ATTN_RETURN_IF_ERROR(use(c, b, &ins[1]));
  attn_type ta = attn_graph_value(c->im->graph, ins[0])->type;
  attn_type tb = attn_graph_value(c->im->graph, ins[1])->type;
  if (ta.rank == 0 || tb.rank == 0)
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "scalar operand");
  // Vectors are promoted to matrices and the added dim dropped again, as numpy does.
  if (ta.rank == 1) {
    attn_dim *d = attn_graph_alloc(c->im->graph, 2 * sizeof(attn_dim));
    if (!d)
      return oom(c->im);
    d[0] = 1, d[1] = ta.dims[0];
    attn_shape_attrs attrs = {d, 2};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_RESHAPE, &ins[0], 1, &attrs, &ins[0]));
  }
  if (tb.rank == 1) {
    attn_dim *d = attn_graph_alloc(c->im->graph, 2 * sizeof(attn_dim));
    if (!d)
      return oom(c->im);
    d[0] = tb.dims[0], d[1] = 1;
    attn_shape_attrs attrs = {d, 2};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_RESHAPE, &ins[1], 1, &attrs, &ins[1]));
  }
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_MATMUL, ins, 2, NULL, &v));
  if (ta.rank == 1 || tb.rank == 1) {
    attn_type t = attn_graph_value(c->im->graph, v)->type;
    attn_dim *d = attn_graph_alloc(c->im->graph, ATTN_MAX_RANK * sizeof(attn_dim));
    if (!d)
      return oom(c->im);
    uint32_t rank = 0;
    for (uint32_t k = 0; k < t.rank; k++) {
      bool drop = (ta.rank == 1 && k == t.rank - 2) || (tb.rank == 1 && k == t.rank - 1);
      if (!drop)
        d[rank++] = t.dims[k];
    }
    attn_shape_attrs attrs = {d, rank};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_RESHAPE, &v, 1, &attrs, &v));
  }
  return set_output(c, 0, v);
}

// Gemm: alpha * op(A) op(B) + beta * C.
static attn_status do_gemm(const node_ctx *c) {
  ov *a = NULL, *b = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &a));
  ATTN_RETURN_IF_ERROR(input(c, 1, &b));
  attn_value_id ins[2], v;
  ATTN_RETURN_IF_ERROR(use(c, a, &ins[0]));
  ATTN_RETURN_IF_ERROR(use(c, b, &ins[1]));
  attn_matmul_attrs mm = {attr_int(c, "transA", 0) != 0, attr_int(c, "transB", 0) != 0};
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_MATMUL, ins, 2, &mm, &v));
  attn_dtype dtype = attn_graph_value(c->im->graph, v)->type.dtype;
  double alpha = attr_float(c, "alpha", 1.0), beta = attr_float(c, "beta", 1.0);
  if (alpha != 1.0) {
    attn_value_id m[2] = {v, ATTN_VALUE_NONE};
    ATTN_RETURN_IF_ERROR(scalar_const(c, dtype, alpha, &m[1]));
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_MUL, m, 2, NULL, &v));
  }
  if (c->in_count > 2 && c->in[2] && beta != 0.0) {
    attn_value_id bias;
    ATTN_RETURN_IF_ERROR(use(c, c->in[2], &bias));
    if (beta != 1.0) {
      attn_value_id m[2] = {bias, ATTN_VALUE_NONE};
      ATTN_RETURN_IF_ERROR(scalar_const(c, dtype, beta, &m[1]));
      ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_MUL, m, 2, NULL, &bias));
    }
    attn_value_id m[2] = {v, bias};
    ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_ADD, m, 2, NULL, &v));
  }
  return set_output(c, 0, v);
}

static attn_status do_softmax(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  attn_axis_attrs attrs = {attr_int(c, "axis", -1)};
  bool is_log = strcmp(c->node->op_type, "LogSoftmax") == 0;
  ATTN_RETURN_IF_ERROR(
      add_node(c, is_log ? ATTN_OP_LOG_SOFTMAX : ATTN_OP_SOFTMAX, &v, 1, &attrs, &v));
  return set_output(c, 0, v);
}

static attn_status do_layernorm(const node_ctx *c) {
  for (uint32_t k = 1; k < c->node->n_output; k++)
    if (c->node->output[k][0])
      return node_error(c, ATTN_ERROR_UNSUPPORTED,
                        "node '%s': the Mean and InvStdDev outputs are not supported",
                        c->node->name ? c->node->name : "");
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  attn_value_id ins[3];
  uint32_t n = 1;
  ATTN_RETURN_IF_ERROR(use(c, x, &ins[0]));
  for (uint32_t k = 1; k < 3 && k < c->in_count && c->in[k]; k++)
    ATTN_RETURN_IF_ERROR(use(c, c->in[k], &ins[n++]));
  attn_norm_attrs attrs = {attr_int(c, "axis", -1), attr_float(c, "epsilon", 1e-5)};
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_LAYERNORM, ins, n, &attrs, &v));
  return set_output(c, 0, v);
}

static attn_status do_reduce(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  const char *op_type = c->node->op_type;
  attn_op op = strcmp(op_type, "ReduceMean") == 0  ? ATTN_OP_MEAN
               : strcmp(op_type, "ReduceSum") == 0 ? ATTN_OP_SUM
                                                   : ATTN_OP_MAX;
  int64_t *axes = attn_graph_alloc(c->im->graph, ATTN_MAX_RANK * sizeof(int64_t));
  if (!axes)
    return oom(c->im);
  uint32_t count;
  bool given;
  ATTN_RETURN_IF_ERROR(axes_of(c, 1, axes, &count, &given));
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  if (count == 0 && attr_int(c, "noop_with_empty_axes", 0))
    return set_output(c, 0, v);
  attn_reduce_attrs attrs = {axes, count, attr_int(c, "keepdims", 1) != 0};
  ATTN_RETURN_IF_ERROR(add_node(c, op, &v, 1, &attrs, &v));
  return set_output(c, 0, v);
}

// Trilu: keeps the lower (upper = 0) or upper triangle of the last two dims, offset by k.
static attn_status do_trilu(const node_ctx *c) {
  ov *x = NULL;
  ATTN_RETURN_IF_ERROR(input(c, 0, &x));
  int64_t k = 0;
  if (c->in_count > 1 && c->in[1]) {
    int64_t values[1];
    uint32_t n;
    ATTN_RETURN_IF_ERROR(known_ints(c, 1, values, NULL, &n, 1));
    k = n ? values[0] : 0;
  }
  bool upper = attr_int(c, "upper", 1) != 0;
  attn_value_id v;
  ATTN_RETURN_IF_ERROR(use(c, x, &v));
  attn_type t = attn_graph_value(c->im->graph, v)->type;
  if (t.rank < 2)
    return node_error(c, ATTN_ERROR_INVALID_ARGUMENT, "needs rank >= 2");
  // keep (i, j) iff j - i <= k (lower) or j - i >= k (upper): compare iotas j + a and i + b
  // with a, b >= 0 chosen so the offset stays a dim.
  attn_value_id jj, ii, keep, zero;
  attn_dim ja = k < 0 ? -k : 0, ib = k > 0 ? k : 0;
  ATTN_RETURN_IF_ERROR(iota(c, &t, t.rank - 1, ja, &jj));
  ATTN_RETURN_IF_ERROR(iota(c, &t, t.rank - 2, ib, &ii));
  attn_value_id cmp[2] = {jj, ii};
  ATTN_RETURN_IF_ERROR(add_node(c, upper ? ATTN_OP_GE : ATTN_OP_LE, cmp, 2, NULL, &keep));
  ATTN_RETURN_IF_ERROR(scalar_const(c, t.dtype, 0.0, &zero));
  attn_value_id ins[3] = {keep, v, zero};
  ATTN_RETURN_IF_ERROR(add_node(c, ATTN_OP_WHERE, ins, 3, NULL, &v));
  return set_output(c, 0, v);
}

static const struct {
  const char *op_type;
  op_fn fn;
} op_table[] = {
    {"Identity", do_identity},
    {"Neg", do_unary},
    {"Sqrt", do_unary},
    {"Exp", do_unary},
    {"Log", do_unary},
    {"Erf", do_unary},
    {"Tanh", do_unary},
    {"Sigmoid", do_unary},
    {"Relu", do_unary},
    {"Not", do_unary},
    {"Reciprocal", do_unary},
    {"Add", do_binary},
    {"Sub", do_binary},
    {"Mul", do_binary},
    {"Div", do_binary},
    {"Pow", do_binary},
    {"Max", do_binary},
    {"Min", do_binary},
    {"Equal", do_binary},
    {"Less", do_binary},
    {"Greater", do_binary},
    {"LessOrEqual", do_binary},
    {"GreaterOrEqual", do_binary},
    {"And", do_binary},
    {"Or", do_binary},
    {"Where", do_where},
    {"Cast", do_cast},
    {"CastLike", do_cast_like},
    {"Reshape", do_reshape},
    {"Unsqueeze", do_unsqueeze},
    {"Squeeze", do_squeeze},
    {"Flatten", do_flatten},
    {"Shape", do_shape},
    {"Size", do_size},
    {"Constant", do_constant},
    {"ConstantOfShape", do_constant_of_shape},
    {"Range", do_range},
    {"Concat", do_concat},
    {"Gather", do_gather},
    {"Transpose", do_transpose},
    {"Slice", do_slice},
    {"Split", do_split},
    {"Expand", do_expand},
    {"MatMul", do_matmul},
    {"Gemm", do_gemm},
    {"Softmax", do_softmax},
    {"LogSoftmax", do_softmax},
    {"LayerNormalization", do_layernorm},
    {"ReduceMean", do_reduce},
    {"ReduceSum", do_reduce},
    {"ReduceMax", do_reduce},
    {"Trilu", do_trilu},
};

// ---- the graph -------------------------------------------------------------------------------

static attn_status import_node(importer *im, const Onnx__NodeProto *node) {
  const char *name = node->name && node->name[0] ? node->name : "(unnamed)";
  node_ctx c = {im, node, {NULL, 0, 0}, {NULL}, 0};
  c.loc.file = attn_arena_strdup(&im->arena, name);
  if (!c.loc.file)
    return oom(im);
  const char *op_type = node->op_type ? node->op_type : "";
  bool is_default_domain =
      !node->domain || !node->domain[0] || strcmp(node->domain, "ai.onnx") == 0;
  op_fn fn = NULL;
  for (size_t k = 0; is_default_domain && k < sizeof(op_table) / sizeof(op_table[0]); k++)
    if (strcmp(op_table[k].op_type, op_type) == 0)
      fn = op_table[k].fn;
  if (!fn)
    return attn_diag_error(im->diag, c.loc, ATTN_ERROR_UNSUPPORTED,
                           "unsupported ONNX op '%s%s%s' (node '%s', opset %lld)",
                           is_default_domain ? "" : node->domain, is_default_domain ? "" : ".",
                           op_type, name, (long long)im->opset);
  if (node->n_input > sizeof(c.in) / sizeof(c.in[0]))
    return attn_diag_error(im->diag, c.loc, ATTN_ERROR_UNSUPPORTED, "%s node '%s' has %zu inputs",
                           op_type, name, node->n_input);
  c.in_count = (uint32_t)node->n_input;
  for (uint32_t k = 0; k < c.in_count; k++) {
    if (!node->input[k][0])
      continue; // an absent optional input
    if (!(c.in[k] = find_value(im, node->input[k])))
      return attn_diag_error(im->diag, c.loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "%s node '%s' reads '%s', which no earlier node defines", op_type,
                             name, node->input[k]);
  }
  return fn(&c);
}

static attn_status import_type(importer *im, const Onnx__ValueInfoProto *info, attn_type *out) {
  attn_loc loc = {info->name, 0, 0};
  const Onnx__TypeProto *tp = info->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED,
                           "graph input '%s' is not a tensor", info->name);
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  if (!dtype_from_onnx(tt->elem_type, &out->dtype))
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED,
                           "graph input '%s' has ONNX data type %d", info->name,
                           (int)tt->elem_type);
  if (!tt->shape)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED, "graph input '%s' has no shape",
                           info->name);
  if (tt->shape->n_dim > ATTN_MAX_RANK)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED, "graph input '%s' has rank %zu",
                           info->name, tt->shape->n_dim);
  out->rank = (uint32_t)tt->shape->n_dim;
  for (uint32_t d = 0; d < out->rank; d++) {
    const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
    if (dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
        dim->dim_value >= 0) {
      out->dims[d] = dim->dim_value;
      continue;
    }
    const char *symbol =
        dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM && dim->dim_param[0]
            ? dim->dim_param
            : attn_arena_printf(&im->arena, "%s_dim%u", info->name, d);
    if (!symbol)
      return oom(im);
    ATTN_RETURN_IF_ERROR(attn_graph_dim_symbol(im->graph, symbol, strlen(symbol), &out->dims[d]));
  }
  return ATTN_OK;
}

static attn_status import_graph(importer *im, const Onnx__ModelProto *model) {
  const Onnx__GraphProto *g = model->graph;
  attn_loc loc = {im->model_name, 0, 0};
  if (!g)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE, "the model has no graph");
  size_t values = g->n_input + g->n_initializer + 1;
  for (size_t k = 0; k < g->n_node; k++)
    values += g->node[k]->n_output;
  im->table_capacity = 16;
  while (im->table_capacity < 2 * values)
    im->table_capacity *= 2;
  im->table = attn_arena_calloc(&im->arena, im->table_capacity, sizeof(*im->table));
  if (!im->table)
    return oom(im);
  for (size_t k = 0; k < g->n_initializer; k++) {
    const Onnx__TensorProto *t = g->initializer[k];
    if (!t->name || !t->name[0])
      return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE, "initializer %zu has no name", k);
    attn_tensor *tensor = attn_arena_calloc(&im->arena, 1, sizeof(*tensor));
    if (!tensor)
      return oom(im);
    ATTN_RETURN_IF_ERROR(decode_tensor(im, t, (attn_loc){t->name, 0, 0}, tensor));
    ov *v;
    ATTN_RETURN_IF_ERROR(new_value(im, t->name, &v));
    v->init = tensor;
    v->weight_name = v->name;
    v->type.dtype = tensor->dtype;
    v->type.rank = tensor->rank;
    for (uint32_t d = 0; d < tensor->rank; d++)
      v->type.dims[d] = tensor->dims[d];
  }
  for (size_t k = 0; k < g->n_input; k++) {
    const Onnx__ValueInfoProto *info = g->input[k];
    if (!info->name || !info->name[0])
      return attn_diag_error(im->diag, loc, ATTN_ERROR_PARSE, "graph input %zu has no name", k);
    if (find_value(im, info->name))
      continue; // an initializer listed as an input (IR version < 4)
    attn_type type = {0};
    ATTN_RETURN_IF_ERROR(import_type(im, info, &type));
    ov *v;
    ATTN_RETURN_IF_ERROR(new_value(im, info->name, &v));
    v->type = type;
    ATTN_RETURN_IF_ERROR(
        attn_graph_add_input(im->graph, info->name, &type, (attn_loc){info->name, 0, 0}, &v->id));
  }
  for (size_t k = 0; k < g->n_node; k++)
    ATTN_RETURN_IF_ERROR(import_node(im, g->node[k]));
  if (g->n_output == 0)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_INVALID_ARGUMENT, "the graph has no outputs");
  attn_value_id *outputs = attn_arena_calloc(&im->arena, g->n_output, sizeof(*outputs));
  const char **names = attn_arena_calloc(&im->arena, g->n_output, sizeof(*names));
  if (!outputs || !names)
    return oom(im);
  for (size_t k = 0; k < g->n_output; k++) {
    const char *name = g->output[k]->name ? g->output[k]->name : "";
    ov *v = find_value(im, name);
    if (!v)
      return attn_diag_error(im->diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "graph output '%s' is not defined", name);
    node_ctx c = {im, NULL, {name, 0, 0}, {NULL}, 0};
    Onnx__NodeProto output_node = ONNX__NODE_PROTO__INIT;
    output_node.op_type = (char *)"output";
    output_node.name = (char *)name;
    c.node = &output_node;
    ATTN_RETURN_IF_ERROR(use(&c, v, &outputs[k]));
    names[k] = name;
  }
  return attn_graph_set_outputs(im->graph, outputs, names, (uint32_t)g->n_output);
}

static attn_status check_opset(importer *im, const Onnx__ModelProto *model) {
  attn_loc loc = {im->model_name, 0, 0};
  im->opset = -1;
  for (size_t k = 0; k < model->n_opset_import; k++) {
    const Onnx__OperatorSetIdProto *o = model->opset_import[k];
    if (!o->domain || !o->domain[0] || strcmp(o->domain, "ai.onnx") == 0)
      im->opset = o->version;
  }
  if (im->opset < 0)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED,
                           "the model imports no opset of the default ONNX domain");
  if (im->opset < MIN_OPSET || im->opset > MAX_OPSET)
    return attn_diag_error(im->diag, loc, ATTN_ERROR_UNSUPPORTED,
                           "opset %lld is not supported (attnc imports opsets %d to %d)",
                           (long long)im->opset, MIN_OPSET, MAX_OPSET);
  return ATTN_OK;
}

attn_status attn_onnx_import(const void *bytes, size_t size, const char *name, const char *base_dir,
                             attn_allocator allocator, attn_diag *diag, attn_graph **out_graph,
                             attn_weights **out_weights) {
  *out_graph = NULL;
  *out_weights = NULL;
  attn_loc loc = {name, 0, 0};
  Onnx__ModelProto *model = onnx__model_proto__unpack(NULL, size, bytes);
  if (!model)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "not an ONNX model (the protobuf does not parse as a ModelProto)");
  importer im = {.allocator = allocator, .diag = diag, .model_name = name, .base_dir = base_dir};
  attn_arena_init(&im.arena, allocator);
  attn_status status = check_opset(&im, model);
  if (status == ATTN_OK)
    status = attn_graph_create(allocator, diag,
                               model->graph && model->graph->name ? model->graph->name : "onnx",
                               &im.graph);
  if (status == ATTN_OK)
    status = import_graph(&im, model);
  if (status == ATTN_OK)
    status = attn_graph_verify(im.graph);
  if (status == ATTN_OK)
    status =
        attn_weights_from_tensors(name, im.weights, im.weight_count, allocator, diag, out_weights);
  onnx__model_proto__free_unpacked(model, NULL);
  attn_arena_deinit(&im.arena);
  if (status != ATTN_OK) {
    attn_graph_destroy(im.graph);
    return status;
  }
  *out_graph = im.graph;
  return ATTN_OK;
}

attn_status attn_onnx_import_file(const char *path, attn_allocator allocator, attn_diag *diag,
                                  attn_graph **out_graph, attn_weights **out_weights) {
  *out_graph = NULL;
  *out_weights = NULL;
  char *bytes;
  size_t size;
  ATTN_RETURN_IF_ERROR(attn_io_read_file(path, allocator, diag, &bytes, &size));
  const char *slash = strrchr(path, '/');
  size_t dir_length = slash ? (size_t)(slash - path) : 1;
  char *dir = attn_allocator_alloc(allocator, dir_length + 2);
  attn_status status = ATTN_OK;
  if (!dir) {
    status =
        attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  } else {
    memcpy(dir, slash ? path : ".", dir_length);
    dir[dir_length] = '\0';
    if (slash && dir_length == 0)
      strcpy(dir, "/");
    status = attn_onnx_import(bytes, size, path, dir, allocator, diag, out_graph, out_weights);
    attn_allocator_free(allocator, dir, dir_length + 2);
  }
  attn_allocator_free(allocator, bytes, size + 1);
  return status;
}
