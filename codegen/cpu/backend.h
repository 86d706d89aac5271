// The CPU backend: compiles a partitioned, memory-planned graph into a program of one step per
// kernel and runs it on the thread pool. Each step runs the kernel's generated code (the GEMM and
// attention templates, MLIR for the long tail) or, for a kernel no generator handles yet, the
// reference evaluator node by node; a view (alias kernel) runs nothing. Generated functions are
// cached by the hash of their specification, so identical layers share one.
#ifndef ATTN_CODEGEN_CPU_BACKEND_H_
#define ATTN_CODEGEN_CPU_BACKEND_H_

#include <stdint.h>

#include "ir/interp.h"
#include "ir/ir.h"
#include "runtime/base/diag.h"
#include "runtime/exec/plan.h"

typedef struct attn_cpu_backend attn_cpu_backend;

typedef struct attn_cpu_backend_options {
  // Threads of the pool (0: ATTN_NUM_THREADS, else one per core; see runtime/cpu/pool.h).
  uint32_t thread_count;
  // Where compiled kernels are kept between processes: NULL takes $ATTN_CACHE_DIR, else
  // $XDG_CACHE_HOME/attnc, else $HOME/.cache/attnc; "" keeps them in memory only.
  const char *cache_dir;
  // Run every kernel with the reference evaluator (the conformance tests' control).
  bool reference_only;
  // Surround every buffer with guard bands of a known pattern and check them after each step:
  // a kernel that writes outside its outputs fails the run (ATTN_ERROR_INVALID_GRAPH, naming
  // the kernel). For tests; it costs a scan of the bands per step.
  bool guard_bands;
  // Keep the object code of every kernel compiled (attn_cpu_backend_object), for ahead-of-time
  // builds: artifacts, executables and static libraries.
  bool keep_objects;
} attn_cpu_backend_options;

// Creates a backend: the host JIT and the thread pool. `options` may be NULL. `diag` is borrowed
// and must outlive the backend. Errors: those of attn_cpu_jit_create and attn_pool_create.
attn_status attn_cpu_backend_create(const attn_cpu_backend_options *options,
                                    attn_allocator allocator, attn_diag *diag,
                                    attn_cpu_backend **out_backend) ATTN_MUST_USE;
// NULL is a no-op. Every program of the backend must be destroyed first.
void attn_cpu_backend_destroy(attn_cpu_backend *backend);

// What the backend's code is for: the target triple, the CPU and its LLVM feature string (owned
// by the backend), and the features a CPU running it must have.
typedef struct attn_cpu_backend_target {
  const char *triple, *cpu, *features;
  bool needs_avx2, needs_fma, needs_avx512f;
} attn_cpu_backend_target;

attn_cpu_backend_target attn_cpu_backend_get_target(const attn_cpu_backend *backend);

// The object code of generated function `name` (owned by the backend), of a backend created with
// keep_objects. ATTN_ERROR_NOT_FOUND, with a message in the backend's diag, otherwise.
attn_status attn_cpu_backend_object(const attn_cpu_backend *backend, const char *name,
                                    const void **out_data, size_t *out_size) ATTN_MUST_USE;

// How a step runs its kernel.
typedef enum attn_cpu_step_impl {
  ATTN_CPU_STEP_VIEW,      // nothing runs: the output is a view of the input
  ATTN_CPU_STEP_GEMM,      // the GEMM template, epilogue fused
  ATTN_CPU_STEP_ATTENTION, // the flash-attention template (decode splits the keys)
  ATTN_CPU_STEP_MLIR,      // a kernel generated through MLIR (elementwise, norms, layout, ...)
  ATTN_CPU_STEP_TOPK,      // the runtime's top-k routine
  ATTN_CPU_STEP_REFERENCE, // the reference evaluator, node by node
  ATTN_CPU_STEP_IMPL_COUNT
} attn_cpu_step_impl;

// "view", "gemm", "attention", "mlir", "topk", "reference".
const char *attn_cpu_step_impl_name(attn_cpu_step_impl impl);

typedef struct attn_cpu_program attn_cpu_program;

// Compiles `graph`, which must be partitioned and memory-planned (passes `partition` and
// `plan-memory`) and must outlive the program. Generates and JIT-compiles the code of every
// kernel a generator handles. Errors: ATTN_ERROR_INVALID_ARGUMENT (the graph is not planned),
// ATTN_ERROR_DEVICE (LLVM failed), ATTN_ERROR_OUT_OF_MEMORY; messages in the backend's diag.
attn_status attn_cpu_program_compile(attn_cpu_backend *backend, const attn_graph *graph,
                                     attn_cpu_program **out_program) ATTN_MUST_USE;
// NULL is a no-op.
void attn_cpu_program_destroy(attn_cpu_program *program);

// Frees the converted weights the program keeps; the next run converts them again.
void attn_cpu_program_release_weights(attn_cpu_program *program);

// Runs the program with the contract of attn_interp_run: binds symbols and checks inputs the
// same way, reads weights by node id, allocates the outputs with `allocator` (the caller frees
// them), and on failure zeroes `out_outputs`. Not reentrant: one run of a program at a time.
// A weight bound in another dtype than declared (bf16 data for an f32 weight) is converted the
// first time its data pointer is seen and the conversion is kept for later runs with the same
// pointer: a caller that changes weight data in place calls attn_cpu_program_release_weights.
attn_status attn_cpu_program_run(attn_cpu_program *program, const attn_interp_args *args,
                                 attn_allocator allocator, attn_diag *diag,
                                 attn_tensor *out_outputs) ATTN_MUST_USE;

// The plan the program lowered the graph to (runtime/exec/plan.h): what an artifact stores.
// Its values are the graph's, index for index; its functions are the JIT's. Constants of WEIGHT
// nodes have no data: runs take them from their arguments.
const attn_plan *attn_cpu_program_plan(const attn_cpu_program *program);
// The node of the plan's constant `constant` (a WEIGHT or CONSTANT node).
uint32_t attn_cpu_program_constant_node(const attn_cpu_program *program, uint32_t constant);

// What one step of the plan is and what it has cost so far.
typedef struct attn_cpu_step_info {
  uint32_t kernel;
  attn_kernel_kind kind;
  attn_cpu_step_impl impl;
  const char *function;   // the generated function's name, or NULL
  double compile_seconds; // generation and JIT compilation of its code (0 when cached)
  double run_seconds;     // summed over runs
  uint64_t runs;
} attn_cpu_step_info;

uint32_t attn_cpu_program_step_count(const attn_cpu_program *program);
attn_cpu_step_info attn_cpu_program_step(const attn_cpu_program *program, uint32_t index);
// Clears the steps' run times and counts.
void attn_cpu_program_reset_times(attn_cpu_program *program);

#endif // ATTN_CODEGEN_CPU_BACKEND_H_
