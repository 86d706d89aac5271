// A program in the runtime's terms: what the executor (runtime/exec/exec.h) runs, what a .attnx
// artifact stores, and all a deployed binary knows of its model. The compiler lowers a
// partitioned, memory-planned graph to a plan (codegen/cpu/backend.c); nothing here refers to
// the IR.
//
// A plan is a table of values and a list of steps. Every value has a dtype and a shape whose
// dims may name symbols bound at run time (B, T); a value lives in a graph input, a constant
// (a weight), a buffer of the memory plan, a tensor allocated for the run, or is a view of
// another value. Steps run in order; each reads and writes values by index and runs one kernel:
// a generated function found by name (`functions`), a runtime routine, or a host callback.
//
// Dims are int64: a value >= 0 is a constant; a value < 0 is expression -(1 + i) of `dims`,
// an expression over symbols (B * T, T + T_past, D / H exact).
#ifndef ATTN_RUNTIME_EXEC_PLAN_H_
#define ATTN_RUNTIME_EXEC_PLAN_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/arena.h"
#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"
#include "runtime/cpu/launch.h"

// ---- dims ----

typedef enum attn_plan_dim_kind {
  ATTN_PLAN_DIM_SYMBOL, // symbol `lhs` (an index into the plan's symbols)
  ATTN_PLAN_DIM_ADD,    // lhs + rhs, each a dim (constant or expression)
  ATTN_PLAN_DIM_SUB,
  ATTN_PLAN_DIM_MUL,
  ATTN_PLAN_DIM_DIV, // exact division; evaluation fails when it is not exact
  ATTN_PLAN_DIM_KIND_COUNT
} attn_plan_dim_kind;

typedef struct attn_plan_dim {
  attn_plan_dim_kind kind;
  int64_t lhs, rhs;
} attn_plan_dim;

// ---- values ----

typedef enum attn_plan_storage {
  ATTN_PLAN_STORAGE_NONE,     // not needed by any step
  ATTN_PLAN_STORAGE_INPUT,    // graph input `index`
  ATTN_PLAN_STORAGE_CONSTANT, // constant `index`
  ATTN_PLAN_STORAGE_BUFFER,   // buffer `index` of the memory plan
  ATTN_PLAN_STORAGE_TEMP,     // allocated for the run by the step that writes it
  ATTN_PLAN_STORAGE_VIEW,     // set by a view step: the data of another value, another shape
  ATTN_PLAN_STORAGE_IOTA,     // filled before the steps: iota_start + the index along iota_axis
  ATTN_PLAN_STORAGE_COUNT
} attn_plan_storage;

typedef struct attn_plan_value {
  attn_dtype dtype;
  uint32_t rank;
  int64_t dims[ATTN_MAX_RANK];
  attn_plan_storage storage;
  uint32_t index;     // INPUT, CONSTANT, BUFFER
  uint32_t iota_axis; // IOTA
  int64_t iota_start; // IOTA: a dim
} attn_plan_value;

// ---- steps ----

typedef enum attn_plan_step_kind {
  ATTN_PLAN_STEP_VIEW,      // outputs[0] views inputs[0] in its own shape (a reshape)
  ATTN_PLAN_STEP_GEMM,      // inputs a, b [, bias] [, residual]; outputs c (runtime/cpu/launch.h)
  ATTN_PLAN_STEP_ATTENTION, // inputs q, k, v [, mask], captures...; outputs out [, lse]
  ATTN_PLAN_STEP_KERNEL,    // a generated loop nest: attn_cpu_kernel_fn over its operands
  ATTN_PLAN_STEP_TOPK,      // inputs x; outputs values, indices (i64)
  ATTN_PLAN_STEP_HOST,      // the executor's host callback (the compiler's reference evaluator)
  ATTN_PLAN_STEP_KIND_COUNT
} attn_plan_step_kind;

typedef struct attn_plan_gemm {
  bool transpose_a, transpose_b;
  bool bias, residual; // whether inputs[2] (and inputs[3], or [2] without a bias) are present
} attn_plan_gemm;

typedef struct attn_plan_attention {
  attn_cpu_attention_launch_spec spec;
  bool has_mask; // inputs[3] is the mask; the captures follow q, k, v and the mask
  int64_t window, sinks;
  double scale; // resolved: never 0
  double sigmoid_bias;
} attn_plan_attention;

// Loop nests of the MLIR path: rows of the first output's leading `parallel_rank` dims are split
// over the threads. Gather steps check their indices first (the generated code clamps them).
typedef struct attn_plan_gather_check {
  uint32_t indices; // a value: an input of the step
  int64_t size;     // a dim: the size of the gathered axis
  int64_t axis;     // for the message
} attn_plan_gather_check;

typedef struct attn_plan_kernel {
  uint32_t parallel_rank;
  uint32_t gather_check_count;
  const attn_plan_gather_check *gather_checks;
} attn_plan_kernel;

typedef struct attn_plan_topk {
  int64_t axis; // normalised: 0 <= axis < rank
  int64_t k;
  bool largest;
} attn_plan_topk;

typedef struct attn_plan_step {
  attn_plan_step_kind kind;
  uint32_t function; // GEMM, ATTENTION, KERNEL: an index into the plan's functions
  uint32_t kernel;   // the compiler's kernel id, for messages ("k12") and profiles
  uint32_t input_count, output_count;
  const uint32_t *inputs; // value indices
  const uint32_t *outputs;
  union {
    attn_plan_gemm gemm;
    attn_plan_attention attention;
    attn_plan_kernel kernel;
    attn_plan_topk topk;
  } u;
} attn_plan_step;

// ---- the plan ----

typedef struct attn_plan_binding {
  const char *name;
  uint32_t value;
} attn_plan_binding;

// A constant: a weight or a literal of the graph. `data` is NULL until the loader (or the
// compiler) binds it; the executor may also take the constants of a run from its caller.
typedef struct attn_plan_constant {
  const char *name;
  attn_dtype dtype;
  uint32_t rank;
  int64_t dims[ATTN_MAX_RANK]; // constants
  const void *data;
} attn_plan_constant;

typedef struct attn_plan {
  uint32_t symbol_count, dim_count, value_count, buffer_count;
  uint32_t input_count, output_count, constant_count, function_count, step_count;
  const char *const *symbols;
  const attn_plan_dim *dims;
  const attn_plan_value *values;
  const int64_t *buffers; // the size of each buffer in bytes: a dim
  const attn_plan_binding *inputs;
  const attn_plan_binding *outputs;
  attn_plan_constant *constants;
  const char *const *functions; // the names of the generated functions the steps call
  const attn_plan_step *steps;
} attn_plan;

// "view", "gemm", "attention", "kernel", "topk", "host".
const char *attn_plan_step_kind_name(attn_plan_step_kind kind);

// Evaluates dim `dim` with `symbols` (symbol_count entries, -1 when unbound). False when a symbol
// it needs is unbound, a division is not exact, the result overflows or is negative, or `dim`
// is malformed. Time linear in the expressions before it.
bool attn_plan_dim_eval(const attn_plan *plan, int64_t dim, const int64_t *symbols,
                        int64_t *out_value);

// Evaluates every expression of the table at once: values[i] (dim_count entries) where known[i];
// known[i] is false where attn_plan_dim_eval would fail. Then attn_plan_dim_value reads any dim
// from the table. What the executor does once per run.
void attn_plan_dims_eval(const attn_plan *plan, const int64_t *symbols, int64_t *values,
                         bool *known);
bool attn_plan_dim_value(int64_t dim, uint32_t dim_count, const int64_t *values,
                         const bool *known, int64_t *out_value);

// Checks what the executor relies on: every index in range, dims that refer only to earlier
// dims, steps of a known kind with the operands their kind needs, values of valid dtype and rank.
// Returns ATTN_ERROR_INVALID_ARGUMENT naming the first fault. A plan read from a file is checked
// with this before anything runs it.
attn_status attn_plan_validate(const attn_plan *plan, attn_diag *diag) ATTN_MUST_USE;

#endif // ATTN_RUNTIME_EXEC_PLAN_H_
