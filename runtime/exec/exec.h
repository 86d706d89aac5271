// The executor: runs a plan (runtime/exec/plan.h) on host tensors. It binds the symbols from the
// inputs' shapes, lays the memory plan's buffers out in one block, and runs the steps in order:
// generated functions through the launchers of runtime/cpu/launch.h over a thread pool, the
// runtime's own routines, and host callbacks for what the plan leaves to its creator (the
// compiler runs its reference evaluator there; a loaded artifact has no host steps).
//
// An executor holds the state of runs (buffers, converted constants, profiles), so one thread
// runs it at a time. Executors of one plan are independent: several may run at once on different
// threads, each with its own pool.
#ifndef ATTN_RUNTIME_EXEC_EXEC_H_
#define ATTN_RUNTIME_EXEC_EXEC_H_

#include <stdbool.h>
#include <stdint.h>

#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"
#include "runtime/cpu/pool.h"
#include "runtime/exec/plan.h"

// Runs host step `step_index` of the plan with the run's `symbols`: reads `inputs` (one per step
// input) and writes every element of `outputs` (one per step output, placed and shaped by the
// executor). Temporary memory comes from `allocator`; errors go to `diag`.
typedef attn_status (*attn_exec_host_fn)(void *ctx, uint32_t step_index, const int64_t *symbols,
                                         const attn_tensor *inputs, attn_tensor *outputs,
                                         attn_allocator allocator, attn_diag *diag);

// A generated function, cast by the executor to the type its step kind calls.
typedef void (*attn_exec_fn)(void);

typedef struct attn_exec_options {
  attn_pool *pool;        // borrowed; NULL runs every loop on the calling thread
  attn_exec_host_fn host; // for HOST steps; a plan with host steps and no callback fails to run
  void *host_ctx;
  // Surround every buffer with guard bands of a known pattern and check them after each step:
  // a kernel that writes outside its outputs fails the run (ATTN_ERROR_INVALID_GRAPH, naming
  // the step). For tests; it costs a scan of the bands per step.
  bool guard_bands;
} attn_exec_options;

typedef struct attn_exec attn_exec;

// Creates an executor of `plan` (borrowed; it must outlive the executor and pass
// attn_plan_validate). `functions` holds plan->function_count addresses, in the plan's order
// (copied). `allocator` gives the block and the converted constants. Errors:
// ATTN_ERROR_INVALID_ARGUMENT (a function a step calls is NULL), ATTN_ERROR_OUT_OF_MEMORY.
attn_status attn_exec_create(const attn_plan *plan, const attn_exec_fn *functions,
                             const attn_exec_options *options, attn_allocator allocator,
                             attn_diag *diag, attn_exec **out_exec) ATTN_MUST_USE;
// NULL is a no-op.
void attn_exec_destroy(attn_exec *exec);

typedef struct attn_exec_args {
  // plan->input_count tensors, in the plan's input order; borrowed for the run. An integer input
  // of another integer dtype is converted (each element must fit).
  const attn_tensor *inputs;
  // NULL, or plan->symbol_count values; < 0 means unbound, to be bound from the inputs' shapes.
  const int64_t *symbols;
  // NULL: every constant's data is the plan's. Otherwise plan->constant_count tensors; an entry
  // with data overrides the plan's constant (same shape; a float constant of another float dtype
  // is converted once and kept while the same data pointer is passed).
  const attn_tensor *constants;
} attn_exec_args;

// Runs the plan. Binds symbols from the inputs whose declared dim is a plain symbol, checks every
// input against its declared type ("input 'x': expected i64[B, T] (B=2), got i64[2, 3, 4]"),
// allocates plan->output_count tensors with `allocator` into `out_outputs` (the caller frees
// each with attn_tensor_free; zeroed on failure). Errors: ATTN_ERROR_INVALID_ARGUMENT (inputs,
// out-of-range gather indices, top-k's k), ATTN_ERROR_OUT_OF_MEMORY, and those of host steps.
attn_status attn_exec_run(attn_exec *exec, const attn_exec_args *args, attn_allocator allocator,
                          attn_diag *diag, attn_tensor *out_outputs) ATTN_MUST_USE;

// The seconds step `index` has run, summed over runs, and its runs; and clearing them.
double attn_exec_step_seconds(const attn_exec *exec, uint32_t index);
uint64_t attn_exec_step_runs(const attn_exec *exec, uint32_t index);
void attn_exec_reset_times(attn_exec *exec);

// Frees the converted constants the executor keeps; the next run converts them again.
void attn_exec_release_constants(attn_exec *exec);

#endif // ATTN_RUNTIME_EXEC_EXEC_H_
