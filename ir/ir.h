// The graph IR: tensor types with symbolic dims, values, nodes with typed attributes, and
// the graph that owns them. This is the interface other modules (frontend, passes, codegen,
// tools) use; everything lives in the graph's arena and is released by attn_graph_destroy.
//
// Invariants: ids index dense arrays (0 is "none"); every value has exactly one producer node
// or is a graph input; node outputs' types are what shape inference computed from the inputs
// and attributes (the verifier checks it again).
#ifndef ATTN_IR_IR_H_
#define ATTN_IR_IR_H_

#include <stdbool.h>
#include <stdint.h>

#include "attn/runtime.h"
#include "runtime/base/arena.h"
#include "runtime/base/diag.h"

// ---- ops -----------------------------------------------------------------------------------

typedef enum attn_op {
#define ATTN_OP(e, name, min_in, max_in, out, attrs, flags, infer, eval) ATTN_OP_##e,
#include "ir/ops.def"
#undef ATTN_OP
  ATTN_OP_COUNT
} attn_op;

enum {
  ATTN_OP_LEAF = 1 << 0,        // no inputs: weight, constant, iota
  ATTN_OP_ELEMENTWISE = 1 << 1, // output element i depends on input elements at i (broadcast)
  ATTN_OP_COMMUTATIVE = 1 << 2,
  ATTN_OP_REDUCTION = 1 << 3,
  ATTN_OP_VIEW = 1 << 4, // moves data without computing: reshape, permute, slice, ...
};

// The attribute families; each op's row names one.
typedef enum attn_attrs_kind {
  ATTN_ATTRS_NONE,
  ATTN_ATTRS_WEIGHT,
  ATTN_ATTRS_CONSTANT,
  ATTN_ATTRS_IOTA,
  ATTN_ATTRS_GELU,
  ATTN_ATTRS_CAST,
  ATTN_ATTRS_MATMUL,
  ATTN_ATTRS_AXIS,
  ATTN_ATTRS_NORM,
  ATTN_ATTRS_REDUCE,
  ATTN_ATTRS_SHAPE,
  ATTN_ATTRS_PERM,
  ATTN_ATTRS_SLICE,
  ATTN_ATTRS_SPLIT,
  ATTN_ATTRS_ROPE,
  ATTN_ATTRS_TOPK,
  ATTN_ATTRS_ATTENTION,
  ATTN_ATTRS_COUNT
} attn_attrs_kind;

typedef struct attn_op_info {
  const char *name;
  int min_inputs;
  int max_inputs; // -1: any number
  int outputs;    // -1: decided by the attributes
  attn_attrs_kind attrs_kind;
  unsigned flags;
} attn_op_info;

const attn_op_info *attn_op_get_info(attn_op op);
// Finds an op by its text name; false when there is none.
bool attn_op_from_name(const char *name, size_t length, attn_op *out_op);

// ---- dims and types ------------------------------------------------------------------------

// A dimension: a constant when ≥ 0, otherwise a symbolic expression held by the graph
// (index -(d + 1) of its dim table). Expressions are interned, so two dims built the same
// way compare equal with ==.
typedef int64_t attn_dim;

#define attn_dim_is_constant(d) ((d) >= 0)

typedef enum attn_dim_kind {
  ATTN_DIM_SYMBOL, // a named dim bound at run time (B, T, T_past)
  ATTN_DIM_ADD,
  ATTN_DIM_SUB,
  ATTN_DIM_MUL,
  ATTN_DIM_DIV, // exact division; evaluation fails when it is not exact
} attn_dim_kind;

typedef struct attn_dim_expr {
  attn_dim_kind kind;
  const char *name; // SYMBOL
  uint32_t symbol;  // SYMBOL: index among the graph's symbols
  attn_dim lhs, rhs;
} attn_dim_expr;

typedef struct attn_type {
  attn_dtype dtype;
  uint32_t rank;
  attn_dim dims[ATTN_MAX_RANK];
} attn_type;

bool attn_type_equal(const attn_type *a, const attn_type *b);

// ---- score-mod expressions (attention) -----------------------------------------------------

// A small pointwise expression over one attention logit. It reads the logit `score`, the
// indices b, h, q_idx (absolute query position), kv_idx, and elements of captured tensors
// (extra inputs of the attention node) indexed by expressions of those.
typedef enum attn_expr_kind {
  ATTN_EXPR_NUMBER,
  ATTN_EXPR_VAR,
  ATTN_EXPR_CAPTURE, // capture `capture`[args...]; arg_count = the captured tensor's rank
  ATTN_EXPR_UNARY,
  ATTN_EXPR_BINARY,
  ATTN_EXPR_SELECT, // args[0] != 0 ? args[1] : args[2]
} attn_expr_kind;

typedef enum attn_expr_var {
  ATTN_EXPR_VAR_SCORE,
  ATTN_EXPR_VAR_B,
  ATTN_EXPR_VAR_H,
  ATTN_EXPR_VAR_Q_IDX,
  ATTN_EXPR_VAR_KV_IDX,
  ATTN_EXPR_VAR_COUNT
} attn_expr_var;

typedef enum attn_expr_fn {
  // unary
  ATTN_EXPR_NEG,
  ATTN_EXPR_ABS,
  ATTN_EXPR_EXP,
  ATTN_EXPR_LOG,
  ATTN_EXPR_SQRT,
  ATTN_EXPR_TANH,
  ATTN_EXPR_SIGMOID,
  // binary
  ATTN_EXPR_ADD,
  ATTN_EXPR_SUB,
  ATTN_EXPR_MUL,
  ATTN_EXPR_DIV,
  ATTN_EXPR_MIN,
  ATTN_EXPR_MAX,
  ATTN_EXPR_POW,
  ATTN_EXPR_LT, // comparisons give 1 or 0
  ATTN_EXPR_LE,
  ATTN_EXPR_EQ,
  ATTN_EXPR_FN_COUNT
} attn_expr_fn;

enum { ATTN_EXPR_MAX_ARGS = ATTN_MAX_RANK };

typedef struct attn_expr attn_expr;
struct attn_expr {
  attn_expr_kind kind;
  double number;      // NUMBER
  attn_expr_var var;  // VAR
  attn_expr_fn fn;    // UNARY, BINARY
  uint32_t capture;   // CAPTURE: index among the node's captured inputs
  uint32_t arg_count; // UNARY 1, BINARY 2, SELECT 3, CAPTURE rank
  const attn_expr *args[ATTN_EXPR_MAX_ARGS];
};

// Names used by the text form: "score", "b", ... and "exp", "max", ... (NULL if none).
const char *attn_expr_var_name(attn_expr_var var);
const char *attn_expr_fn_name(attn_expr_fn fn);

// ---- attributes ----------------------------------------------------------------------------
// One struct per family. Pointer members point into the owning graph's arena (or static
// storage); attn_graph_add_node copies the struct itself but not what it points to.

// weight: a tensor bound by name from a weight set. `names` are alternatives tried in order
// (a tied lm_head: "lm_head.weight", then "transformer.wte.weight").
typedef struct attn_weight_attrs {
  const char *const *names;
  uint32_t name_count;
  attn_type type; // constant dims only
} attn_weight_attrs;

// constant: literal data, row-major, of `type` (constant dims only).
typedef struct attn_constant_attrs {
  attn_type type;
  const void *data;
} attn_constant_attrs;

// iota: start + index along `axis`, broadcast over the other dims of `type`.
typedef struct attn_iota_attrs {
  attn_type type;
  int64_t axis;
  attn_dim start; // may be symbolic (T_past)
} attn_iota_attrs;

typedef enum attn_gelu_approx { ATTN_GELU_ERF, ATTN_GELU_TANH } attn_gelu_approx;
typedef struct attn_gelu_attrs {
  attn_gelu_approx approximate;
} attn_gelu_attrs;

typedef struct attn_cast_attrs {
  attn_dtype dtype;
} attn_cast_attrs;

// matmul: batched [..., M, K] x [..., K, N], batch dims broadcast; transposes swap the last two.
typedef struct attn_matmul_attrs {
  bool transpose_a;
  bool transpose_b;
} attn_matmul_attrs;

// softmax, log_softmax, concat, gather: one axis (negative counts from the end).
typedef struct attn_axis_attrs {
  int64_t axis;
} attn_axis_attrs;

// layernorm(x[, weight[, bias]]), rmsnorm(x[, weight]): normalise over dims axis..rank-1.
typedef struct attn_norm_attrs {
  int64_t axis;
  double epsilon;
} attn_norm_attrs;

// sum, mean, max, min over `axes` (all axes when axis_count is 0); argmax needs one axis.
typedef struct attn_reduce_attrs {
  const int64_t *axes;
  uint32_t axis_count;
  bool keepdims;
} attn_reduce_attrs;

// reshape, expand: the result dims. reshape allows one -1 (inferred) written as
// ATTN_DIM_INFER; expand allows ATTN_DIM_INFER to keep an input dim.
#define ATTN_DIM_INFER INT64_MIN
typedef struct attn_shape_attrs {
  const attn_dim *dims;
  uint32_t rank;
} attn_shape_attrs;

typedef struct attn_perm_attrs {
  const int64_t *perm;
  uint32_t rank;
} attn_perm_attrs;

// slice: elements start, start+step, ... < end along `axis`; negative start/end count from
// the end, as in Python; end = INT64_MAX means "to the end". step ≥ 1.
typedef struct attn_slice_attrs {
  int64_t axis;
  int64_t start;
  int64_t end;
  int64_t step;
} attn_slice_attrs;

// split: `count` outputs along `axis` of the given sizes (symbolic allowed).
typedef struct attn_split_attrs {
  int64_t axis;
  const attn_dim *sizes;
  uint32_t count;
} attn_split_attrs;

// rope(x[..., T, D], positions[T] or [B, T] integer): rotary embedding of the first
// `rotary_dim` channels (0 = all), frequencies theta^(-2i/rotary_dim).
//   HALF:        pairs (i, i + rotary_dim/2)   (Llama / GPT-NeoX rotate-half)
//   INTERLEAVED: pairs (2i, 2i + 1)            (GPT-J, Meta's original)
typedef enum attn_rope_style { ATTN_ROPE_HALF, ATTN_ROPE_INTERLEAVED } attn_rope_style;
typedef struct attn_rope_attrs {
  double theta;
  attn_rope_style style;
  int64_t rotary_dim;
} attn_rope_attrs;

// topk: values and i64 indices of the k largest (or smallest) along `axis`, sorted; ties go
// to the lower index.
typedef struct attn_topk_attrs {
  int64_t k;
  int64_t axis;
  bool largest;
} attn_topk_attrs;

// attention(q[B,H,Tq,D], k[B,Hkv,Tk,D], v[B,Hkv,Tk,Dv][, mask][, captures...])
//   -> out[B,H,Tq,Dv][, lse[B,H,Tq] f32]
// Query head h reads kv head h / (H / Hkv). Query row i sits at absolute position
// pos(i) = Tk - Tq + i. Logit s = scale * q·k (scale 0 means 1/sqrt(D)), then score_mod,
// then the mask; masked keys get weight 0.
//   CAUSAL:          key j visible iff j ≤ pos(i)
//   SLIDING_WINDOW:  causal and (j > pos(i) - window or j < sinks)
// The optional mask tensor (has_mask) broadcasts to [B,H,Tq,Tk]: bool means "visible",
// a float mask is added to the logit. A row with no visible key gives zeros (lse = -inf).
typedef enum attn_mask_kind {
  ATTN_MASK_NONE,
  ATTN_MASK_CAUSAL,
  ATTN_MASK_SLIDING_WINDOW,
} attn_mask_kind;

typedef enum attn_norm_kind {
  ATTN_NORM_SOFTMAX,
  ATTN_NORM_SIGMOID, // p = sigmoid(s + sigmoid_bias), no normalisation over keys
} attn_norm_kind;

typedef struct attn_attention_attrs {
  double scale;
  attn_mask_kind mask;
  int64_t window;
  int64_t sinks;
  bool has_mask;
  attn_norm_kind norm;
  double sigmoid_bias;
  bool has_lse;
  const attn_expr *score_mod; // NULL: the logit as is
} attn_attention_attrs;

// The description of an attribute family, so the printer, the parser and the verifier
// handle attributes generically.
typedef enum attn_field_type {
  ATTN_FIELD_BOOL,    // bool
  ATTN_FIELD_INT,     // int64_t
  ATTN_FIELD_FLOAT,   // double
  ATTN_FIELD_DTYPE,   // attn_dtype
  ATTN_FIELD_ENUM,    // an enum stored as int; `enum_names` lists its values
  ATTN_FIELD_DIM,     // attn_dim
  ATTN_FIELD_INTS,    // const int64_t * + uint32_t count at count_offset
  ATTN_FIELD_DIMS,    // const attn_dim * + uint32_t count at count_offset
  ATTN_FIELD_STRINGS, // const char *const * + uint32_t count at count_offset
  ATTN_FIELD_TYPE,    // attn_type
  ATTN_FIELD_DATA,    // constant data of the TYPE field before it
  ATTN_FIELD_EXPR,    // const attn_expr *
} attn_field_type;

typedef struct attn_field_info {
  const char *name;
  attn_field_type type;
  size_t offset;
  size_t count_offset;           // INTS, DIMS, STRINGS
  const char *const *enum_names; // ENUM, NULL-terminated
  bool is_required;              // the text form must give it
} attn_field_info;

typedef struct attn_attrs_info {
  const char *name;
  size_t size; // sizeof the struct
  const attn_field_info *fields;
  uint32_t field_count;
  const void *defaults; // a struct holding the defaults
} attn_attrs_info;

const attn_attrs_info *attn_attrs_get_info(attn_attrs_kind kind);

// ---- values, nodes, graphs -----------------------------------------------------------------

typedef struct attn_value_id {
  uint32_t index;
} attn_value_id;

typedef struct attn_node_id {
  uint32_t index;
} attn_node_id;

#define ATTN_VALUE_NONE ((attn_value_id){0})
#define ATTN_NODE_NONE  ((attn_node_id){0})

// ---- kernels and buffers -------------------------------------------------------------------
// The partition groups live nodes into kernels (DESIGN.md §4); leaves (weight, constant, iota)
// belong to none, their values are read (iota: computed) by the kernels that use them. After
// passes/partition.c each kernel's nodes are contiguous and kernels appear in execution order.
// The memory plan gives every value that crosses a kernel boundary, or is a graph output, a
// buffer; graph inputs, weights and constants live elsewhere and get none.

typedef enum attn_kernel_kind {
  ATTN_KERNEL_ELEMENTWISE, // a fused tree of elementwise ops
  ATTN_KERNEL_NORM,      // softmax, log_softmax, layernorm, rmsnorm; elementwise prologue/epilogue
  ATTN_KERNEL_GEMM,      // matmul with an elementwise epilogue (bias, activation, residual)
  ATTN_KERNEL_ATTENTION, // the attention op
  ATTN_KERNEL_REDUCTION, // sum, mean, max, min, argmax with an elementwise prologue
  ATTN_KERNEL_GATHER,
  ATTN_KERNEL_TOPK,
  ATTN_KERNEL_ROPE,
  ATTN_KERNEL_LAYOUT, // concat, split, slice, permute, expand; a reshape of an iota
  ATTN_KERNEL_ALIAS,  // reshape of a value held in memory: a view, nothing runs
  ATTN_KERNEL_OTHER,  // one node of an op the partition does not know how to fuse
  ATTN_KERNEL_KIND_COUNT
} attn_kernel_kind;

typedef struct attn_kernel {
  attn_kernel_kind kind;
  uint32_t node_count; // its live nodes (compaction keeps this up to date)
} attn_kernel;

typedef struct attn_buffer {
  attn_dim bytes; // a constant times a product of symbolic dims (B * T * 3072)
} attn_buffer;

// "elementwise", "norm", "gemm", ... (NULL when `kind` is out of range).
const char *attn_kernel_kind_name(attn_kernel_kind kind);

typedef struct attn_value {
  attn_type type;
  attn_node_id producer; // none for graph inputs
  uint32_t output_index;
  const char *name; // a name hint (the .attn variable), or the input's name; may be NULL
  uint32_t buffer;  // the buffer of the memory plan it lives in (graph->buffers); 0: none
} attn_value;

typedef struct attn_node {
  attn_op op;
  uint32_t input_count;
  uint32_t output_count;
  const attn_value_id *inputs;
  const attn_value_id *outputs;
  const void *attrs; // the family's struct; NULL for ATTN_ATTRS_NONE
  attn_loc loc;
  bool is_dead;    // removed by a pass; skipped by every walk, dropped by compaction
  uint32_t kernel; // the kernel of the partition it belongs to (graph->kernels); 0: none
} attn_node;

typedef struct attn_graph {
  attn_arena arena;
  attn_allocator allocator;
  attn_diag *diag; // borrowed; where every error about this graph goes
  const char *name;

  attn_node *nodes; // [0] is a sentinel; nodes appear in a topological order
  uint32_t node_count;
  size_t node_capacity;

  attn_value *values; // [0] is a sentinel
  uint32_t value_count;
  size_t value_capacity;

  attn_value_id *inputs;
  uint32_t input_count;
  size_t input_capacity;

  attn_value_id *outputs;
  const char **output_names;
  uint32_t output_count;

  attn_dim_expr *dims; // the symbolic dim table, interned
  uint32_t dim_count;
  size_t dim_capacity;
  uint32_t symbol_count;

  // The partition (passes/partition.c): kernels[k] describes the nodes whose `kernel` is k.
  // [0] is a sentinel; kernel_count counts it, so 0 means "not partitioned". Arena memory.
  attn_kernel *kernels;
  uint32_t kernel_count;
  // The memory plan (passes/plan_memory.c): buffers[b] holds the values whose `buffer` is b.
  // [0] is a sentinel; buffer_count counts it, so 0 means "not planned". Arena memory.
  attn_buffer *buffers;
  uint32_t buffer_count;
} attn_graph;

// Creates an empty graph whose errors go to `diag` (borrowed, must outlive the graph).
attn_status attn_graph_create(attn_allocator allocator, attn_diag *diag, const char *name,
                              attn_graph **out_graph) ATTN_MUST_USE;
// NULL is a no-op.
void attn_graph_destroy(attn_graph *graph);

static inline attn_node *attn_graph_node(const attn_graph *graph, attn_node_id id) {
  return &graph->nodes[id.index];
}
static inline attn_value *attn_graph_value(const attn_graph *graph, attn_value_id id) {
  return &graph->values[id.index];
}

// Adds a graph input. `type` may use symbolic dims of this graph.
attn_status attn_graph_add_input(attn_graph *graph, const char *name, const attn_type *type,
                                 attn_loc loc, attn_value_id *out_value) ATTN_MUST_USE;

// Adds a node: checks the arity against the op table, runs shape inference, and creates the
// output values. `attrs` points to the op family's struct (NULL for none, or to take the
// family's defaults); the struct is copied, what it points to must live in the graph's arena
// or in static storage. On failure nothing is added and `diag` has a message at `loc`.
// `out_node` may be NULL.
attn_status attn_graph_add_node(attn_graph *graph, attn_op op, const attn_value_id *inputs,
                                uint32_t input_count, const void *attrs, attn_loc loc,
                                attn_node_id *out_node) ATTN_MUST_USE;

// Output `index` of `node`.
attn_value_id attn_node_output(const attn_graph *graph, attn_node_id node, uint32_t index);

// Sets the graph outputs (replacing any); `names` are copied into the arena.
attn_status attn_graph_set_outputs(attn_graph *graph, const attn_value_id *values,
                                   const char *const *names, uint32_t count) ATTN_MUST_USE;

// Arena helpers for attribute payloads.
void *attn_graph_alloc(attn_graph *graph, size_t size);
char *attn_graph_strdup(attn_graph *graph, const char *text, size_t length);

// Records an error about this graph (returns `status`).
attn_status attn_graph_error(attn_graph *graph, attn_loc loc, attn_status status,
                             const char *format, ...) ATTN_PRINTF(4, 5);

// ---- symbolic dims ---------------------------------------------------------------------------

// The dim for the symbol `name`, created on first use.
attn_status attn_graph_dim_symbol(attn_graph *graph, const char *name, size_t length,
                                  attn_dim *out_dim) ATTN_MUST_USE;
// `lhs kind rhs`, folded when both are constants (DIV must then be exact) and simplified
// (x+0, x*1, x*0, x-x, x/1; constants to the right of commutative ops).
attn_status attn_graph_dim_binary(attn_graph *graph, attn_dim_kind kind, attn_dim lhs, attn_dim rhs,
                                  attn_dim *out_dim) ATTN_MUST_USE;
const attn_dim_expr *attn_graph_dim_expr(const attn_graph *graph, attn_dim dim);
// Name of symbol `index` (0 ≤ index < symbol_count).
const char *attn_graph_symbol_name(const attn_graph *graph, uint32_t index);
// Looks a symbol up by name; false when the graph has none of that name.
bool attn_graph_find_symbol(const attn_graph *graph, const char *name, uint32_t *out_index);
// The value of `dim` when symbol i has value symbol_values[i] (< 0: unbound). Fails with
// ATTN_ERROR_INVALID_ARGUMENT for an unbound symbol or an inexact division, no message.
attn_status attn_graph_dim_eval(const attn_graph *graph, attn_dim dim, const int64_t *symbol_values,
                                int64_t *out_value) ATTN_MUST_USE;
// Writes "T_past + T" or "64" into `buffer` (always NUL-terminated).
void attn_graph_dim_format(const attn_graph *graph, attn_dim dim, char *buffer, size_t buffer_size);
// Writes "f32[B, T, 64]".
void attn_graph_type_format(const attn_graph *graph, const attn_type *type, char *buffer,
                            size_t buffer_size);

// ---- rewriting (ir/rewrite.c) ------------------------------------------------------------
// Passes rewrite by appending nodes, redirecting uses and marking nodes dead; the pass manager
// then compacts the graph. Value ids are stable across all of this, node ids are not.

// Makes input `index` of `node` read `value`. The verifier checks the types later.
void attn_node_set_input(attn_graph *graph, attn_node_id node, uint32_t index, attn_value_id value);
// Redirects every use of `from` (inputs of live nodes, graph outputs) to `to`; returns how
// many uses it changed.
uint32_t attn_graph_replace_uses(attn_graph *graph, attn_value_id from, attn_value_id to);
// value_count counts, indexed by value id, of uses by live nodes and graph outputs, allocated
// in `arena`.
attn_status attn_graph_count_uses(const attn_graph *graph, attn_arena *arena,
                                  uint32_t **out_counts) ATTN_MUST_USE;
// Marks dead every live node no graph output depends on (through live nodes), counting uses,
// so it works mid-pass on a graph out of topological order. `out_removed` may be NULL.
attn_status attn_graph_remove_unused(attn_graph *graph, attn_arena *scratch,
                                     uint32_t *out_removed) ATTN_MUST_USE;
// Whether every dim of `type` is a constant.
bool attn_type_is_concrete(const attn_type *type);
// Whether no DIM, DIMS or TYPE attribute of `node` holds a symbolic dim (so the node can be
// rebuilt in a graph without symbols, e.g. to evaluate it at compile time).
bool attn_node_attrs_are_concrete(const attn_node *node);
// The live node producing `value`, or NULL for graph inputs and values of dead nodes.
const attn_node *attn_value_producer(const attn_graph *graph, attn_value_id value);
// The attributes of the constant node producing `value`, or NULL when it is not a constant.
const attn_constant_attrs *attn_value_constant(const attn_graph *graph, attn_value_id value);
// Drops dead nodes and restores a topological order (nodes keep their relative order except
// where one must move before a user). Node ids change; values of dropped nodes lose their
// producer. Nodes keep their kernel and the kernels' node counts are recounted. Fails with
// ATTN_ERROR_INVALID_GRAPH on a cycle.
attn_status attn_graph_compact(attn_graph *graph) ATTN_MUST_USE;

// ---- kernel interfaces (ir/kernel.c) -------------------------------------------------------

// What one kernel of the partition runs, reads and writes.
typedef struct attn_kernel_io {
  // Its nodes are the live computed nodes of [first_node, end_node) (contiguous after
  // partition); both 0 for a kernel that has none.
  uint32_t first_node, end_node;
  // The values its nodes read that are made outside it (graph inputs, weights, constants,
  // outputs of earlier kernels), each once, in order of first use. Values of iota nodes are
  // not listed: a kernel computes the iotas it reads.
  const attn_value_id *inputs;
  uint32_t input_count;
  // The values its nodes make that a node of another kernel reads or that are graph outputs,
  // in the order they are made.
  const attn_value_id *outputs;
  uint32_t output_count;
} attn_kernel_io;

// Fills `*out_io` with an array of graph->kernel_count entries indexed by kernel id ([0], the
// sentinel, is empty), allocated in `arena`; NULL when the graph is not partitioned. Fails only
// with ATTN_ERROR_OUT_OF_MEMORY (no message).
attn_status attn_graph_kernel_io(const attn_graph *graph, attn_arena *arena,
                                 attn_kernel_io **out_io) ATTN_MUST_USE;

// ---- shape inference and verification ------------------------------------------------------

typedef struct attn_infer_ctx {
  attn_graph *graph;
  attn_op op;
  const void *attrs;
  const attn_type *inputs;
  uint32_t input_count;
  attn_type *outputs; // room for output_count types
  uint32_t output_count;
  attn_loc loc;
} attn_infer_ctx;

// The number of outputs a node of `op` with `attrs` has.
uint32_t attn_op_output_count(attn_op op, const void *attrs);

// Runs the op's shape rule on the given input types (used by add_node and the verifier).
attn_status attn_infer_types(attn_graph *graph, attn_op op, const void *attrs,
                             const attn_type *inputs, uint32_t input_count, attn_loc loc,
                             attn_type *out_types, uint32_t output_count) ATTN_MUST_USE;

// Checks ids, arity, acyclicity (inputs defined before use), that output types agree with
// shape inference, and that every graph output is defined. Messages go to graph->diag.
attn_status attn_graph_verify(attn_graph *graph) ATTN_MUST_USE;

#endif // ATTN_IR_IR_H_
