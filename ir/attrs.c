// The attribute families' descriptions and defaults: one table the printer, the parser and
// the verifier read, so an attribute added here is printed, parsed and checked everywhere.
#include <stddef.h>
#include <stdint.h>

#include "ir/ir.h"

#define FIELD(s, n, t, member, req) {n, ATTN_FIELD_##t, offsetof(s, member), 0, NULL, req}
#define LIST(s, n, t, member, count, req)                                                          \
  {n, ATTN_FIELD_##t, offsetof(s, member), offsetof(s, count), NULL, req}
#define ENUM(s, n, member, names) {n, ATTN_FIELD_ENUM, offsetof(s, member), 0, names, false}
#define FAMILY(kind, text, s, fields, defaults)                                                    \
  [ATTN_ATTRS_##kind] = {text, sizeof(s), fields, sizeof(fields) / sizeof(fields[0]), &defaults}

static const char *const gelu_names[] = {"erf", "tanh", NULL};
static const char *const rope_names[] = {"half", "interleaved", NULL};
static const char *const mask_names[] = {"none", "causal", "sliding_window", NULL};
static const char *const norm_names[] = {"softmax", "sigmoid", NULL};

static const attn_field_info weight_fields[] = {
    LIST(attn_weight_attrs, "name", STRINGS, names, name_count, true),
    FIELD(attn_weight_attrs, "type", TYPE, type, true),
};
static const attn_field_info constant_fields[] = {
    FIELD(attn_constant_attrs, "type", TYPE, type, true),
    FIELD(attn_constant_attrs, "data", DATA, data, true),
};
static const attn_field_info iota_fields[] = {
    FIELD(attn_iota_attrs, "type", TYPE, type, true),
    FIELD(attn_iota_attrs, "axis", INT, axis, false),
    FIELD(attn_iota_attrs, "start", DIM, start, false),
};
static const attn_field_info gelu_fields[] = {
    ENUM(attn_gelu_attrs, "approximate", approximate, gelu_names),
};
static const attn_field_info cast_fields[] = {
    FIELD(attn_cast_attrs, "dtype", DTYPE, dtype, true),
};
static const attn_field_info matmul_fields[] = {
    FIELD(attn_matmul_attrs, "transpose_a", BOOL, transpose_a, false),
    FIELD(attn_matmul_attrs, "transpose_b", BOOL, transpose_b, false),
};
static const attn_field_info axis_fields[] = {
    FIELD(attn_axis_attrs, "axis", INT, axis, false),
};
static const attn_field_info norm_fields[] = {
    FIELD(attn_norm_attrs, "axis", INT, axis, false),
    FIELD(attn_norm_attrs, "epsilon", FLOAT, epsilon, false),
};
static const attn_field_info reduce_fields[] = {
    LIST(attn_reduce_attrs, "axes", INTS, axes, axis_count, false),
    FIELD(attn_reduce_attrs, "keepdims", BOOL, keepdims, false),
};
static const attn_field_info shape_fields[] = {
    LIST(attn_shape_attrs, "shape", DIMS, dims, rank, true),
};
static const attn_field_info perm_fields[] = {
    LIST(attn_perm_attrs, "perm", INTS, perm, rank, true),
};
static const attn_field_info slice_fields[] = {
    FIELD(attn_slice_attrs, "axis", INT, axis, false),
    FIELD(attn_slice_attrs, "start", INT, start, false),
    FIELD(attn_slice_attrs, "end", INT, end, false),
    FIELD(attn_slice_attrs, "step", INT, step, false),
};
static const attn_field_info split_fields[] = {
    FIELD(attn_split_attrs, "axis", INT, axis, false),
    LIST(attn_split_attrs, "sizes", DIMS, sizes, count, true),
};
static const attn_field_info rope_fields[] = {
    FIELD(attn_rope_attrs, "theta", FLOAT, theta, false),
    ENUM(attn_rope_attrs, "style", style, rope_names),
    FIELD(attn_rope_attrs, "rotary_dim", INT, rotary_dim, false),
};
static const attn_field_info topk_fields[] = {
    FIELD(attn_topk_attrs, "k", INT, k, true),
    FIELD(attn_topk_attrs, "axis", INT, axis, false),
    FIELD(attn_topk_attrs, "largest", BOOL, largest, false),
};
static const attn_field_info attention_fields[] = {
    FIELD(attn_attention_attrs, "scale", FLOAT, scale, false),
    ENUM(attn_attention_attrs, "mask", mask, mask_names),
    FIELD(attn_attention_attrs, "window", INT, window, false),
    FIELD(attn_attention_attrs, "sinks", INT, sinks, false),
    FIELD(attn_attention_attrs, "has_mask", BOOL, has_mask, false),
    ENUM(attn_attention_attrs, "norm", norm, norm_names),
    FIELD(attn_attention_attrs, "sigmoid_bias", FLOAT, sigmoid_bias, false),
    FIELD(attn_attention_attrs, "lse", BOOL, has_lse, false),
    FIELD(attn_attention_attrs, "score_mod", EXPR, score_mod, false),
};

static const attn_weight_attrs weight_defaults = {0};
static const attn_constant_attrs constant_defaults = {0};
static const attn_iota_attrs iota_defaults = {.type = {ATTN_DTYPE_I64, 0, {0}}};
static const attn_gelu_attrs gelu_defaults = {ATTN_GELU_ERF};
static const attn_cast_attrs cast_defaults = {ATTN_DTYPE_F32};
static const attn_matmul_attrs matmul_defaults = {false, false};
static const attn_axis_attrs axis_defaults = {-1};
static const attn_norm_attrs norm_defaults = {-1, 1e-5};
static const attn_reduce_attrs reduce_defaults = {NULL, 0, false};
static const attn_shape_attrs shape_defaults = {NULL, 0};
static const attn_perm_attrs perm_defaults = {NULL, 0};
static const attn_slice_attrs slice_defaults = {0, 0, INT64_MAX, 1};
static const attn_split_attrs split_defaults = {-1, NULL, 0};
static const attn_rope_attrs rope_defaults = {10000.0, ATTN_ROPE_HALF, 0};
static const attn_topk_attrs topk_defaults = {1, -1, true};
static const attn_attention_attrs attention_defaults = {0.0, ATTN_MASK_NONE, 0, 0, false,
                                                        ATTN_NORM_SOFTMAX, 0.0, false, NULL};
static const char none_defaults = 0;

static const attn_attrs_info attrs_infos[ATTN_ATTRS_COUNT] = {
    [ATTN_ATTRS_NONE] = {"none", 0, NULL, 0, &none_defaults},
    FAMILY(WEIGHT, "weight", attn_weight_attrs, weight_fields, weight_defaults),
    FAMILY(CONSTANT, "constant", attn_constant_attrs, constant_fields, constant_defaults),
    FAMILY(IOTA, "iota", attn_iota_attrs, iota_fields, iota_defaults),
    FAMILY(GELU, "gelu", attn_gelu_attrs, gelu_fields, gelu_defaults),
    FAMILY(CAST, "cast", attn_cast_attrs, cast_fields, cast_defaults),
    FAMILY(MATMUL, "matmul", attn_matmul_attrs, matmul_fields, matmul_defaults),
    FAMILY(AXIS, "axis", attn_axis_attrs, axis_fields, axis_defaults),
    FAMILY(NORM, "norm", attn_norm_attrs, norm_fields, norm_defaults),
    FAMILY(REDUCE, "reduce", attn_reduce_attrs, reduce_fields, reduce_defaults),
    FAMILY(SHAPE, "shape", attn_shape_attrs, shape_fields, shape_defaults),
    FAMILY(PERM, "perm", attn_perm_attrs, perm_fields, perm_defaults),
    FAMILY(SLICE, "slice", attn_slice_attrs, slice_fields, slice_defaults),
    FAMILY(SPLIT, "split", attn_split_attrs, split_fields, split_defaults),
    FAMILY(ROPE, "rope", attn_rope_attrs, rope_fields, rope_defaults),
    FAMILY(TOPK, "topk", attn_topk_attrs, topk_fields, topk_defaults),
    FAMILY(ATTENTION, "attention", attn_attention_attrs, attention_fields, attention_defaults),
};

const attn_attrs_info *attn_attrs_get_info(attn_attrs_kind kind) {
  return (unsigned)kind < ATTN_ATTRS_COUNT ? &attrs_infos[kind] : &attrs_infos[0];
}

const char *attn_expr_var_name(attn_expr_var var) {
  static const char *const names[ATTN_EXPR_VAR_COUNT] = {"score", "b", "h", "q_idx", "kv_idx"};
  return (unsigned)var < ATTN_EXPR_VAR_COUNT ? names[var] : NULL;
}

const char *attn_expr_fn_name(attn_expr_fn fn) {
  static const char *const names[ATTN_EXPR_FN_COUNT] = {
      "neg", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "add", "sub",
      "mul", "div", "min", "max", "pow",  "lt",   "le",      "eq",
  };
  return (unsigned)fn < ATTN_EXPR_FN_COUNT ? names[fn] : NULL;
}
