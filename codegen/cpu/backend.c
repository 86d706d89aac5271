// The CPU backend's compiler and executor. Compilation walks the partition's kernels, matches
// each to a generator (a GEMM kernel to the GEMM template with the longest epilogue prefix it
// can fuse) and JIT-compiles the generated function once per specification. A run binds inputs
// and weights like the reference evaluator, lays the memory plan's buffers out in one block, and
// runs the steps in order: generated code over the thread pool, or the reference evaluator for
// what no generator covers.
#include "codegen/cpu/backend.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cpu/attention.h"
#include "codegen/cpu/jit.h"
#include "codegen/cpu/kernels.h"
#include "codegen/cpu/mlir.h"
#include "runtime/base/allocator.h"
#include "runtime/cpu/pool.h"
#include "runtime/cpu/topk.h"

enum { MAX_NODE_INPUTS = 64, MAX_NODE_OUTPUTS = 256, BUFFER_ALIGN = 64, GUARD_BYTES = 256 };

// The byte guard bands are filled with.
#define GUARD_PATTERN 0xA5

// ---- the backend and its function cache ------------------------------------------------------

typedef struct cached_function {
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  attn_cpu_jit_fn fn;
} cached_function;

struct attn_cpu_backend {
  attn_allocator allocator;
  attn_diag *diag;
  attn_cpu_backend_options options;
  attn_cpu_jit *jit;
  attn_pool *pool;
  attn_cpu_mlir *mlir; // created when a program first needs it
  int vector_width;
  cached_function *functions;
  uint32_t function_count, function_capacity;
};

// The disk cache directory: the option, else $ATTN_CACHE_DIR, else $XDG_CACHE_HOME/attnc, else
// $HOME/.cache/attnc. False (no disk cache) when the chosen one is empty or none is known.
static bool default_cache_dir(const attn_cpu_backend_options *options, char *dir, size_t size) {
  const char *chosen = options->cache_dir ? options->cache_dir : getenv("ATTN_CACHE_DIR");
  const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
  if (chosen)
    snprintf(dir, size, "%s", chosen);
  else if (xdg && *xdg)
    snprintf(dir, size, "%s/attnc", xdg);
  else if (home && *home)
    snprintf(dir, size, "%s/.cache/attnc", home);
  else
    return false;
  return dir[0] != '\0';
}

attn_status attn_cpu_backend_create(const attn_cpu_backend_options *options,
                                    attn_allocator allocator, attn_diag *diag,
                                    attn_cpu_backend **out_backend) {
  *out_backend = NULL;
  attn_cpu_backend *backend = attn_allocator_calloc(allocator, 1, sizeof(*backend));
  if (!backend)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  backend->allocator = allocator;
  backend->diag = diag;
  if (options)
    backend->options = *options;
  attn_pool_options pool_options = {.thread_count = backend->options.thread_count};
  attn_status status = attn_cpu_jit_create(NULL, diag, &backend->jit);
  if (status == ATTN_OK)
    status = attn_pool_create(allocator, diag, &pool_options, &backend->pool);
  if (status != ATTN_OK) {
    attn_cpu_backend_destroy(backend);
    return status;
  }
  backend->vector_width = attn_cpu_features_vector_width(attn_cpu_jit_features(backend->jit));
  char dir[4096];
  if (default_cache_dir(&backend->options, dir, sizeof(dir)))
    status = attn_cpu_jit_set_cache_dir(backend->jit, dir);
  if (status != ATTN_OK) {
    attn_cpu_backend_destroy(backend);
    return status;
  }
  *out_backend = backend;
  return ATTN_OK;
}

void attn_cpu_backend_destroy(attn_cpu_backend *backend) {
  if (!backend)
    return;
  attn_pool_destroy(backend->pool);
  attn_cpu_mlir_destroy(backend->mlir);
  attn_cpu_jit_destroy(backend->jit);
  attn_allocator_free(backend->allocator, backend->functions,
                      backend->function_capacity * sizeof(*backend->functions));
  attn_allocator_free(backend->allocator, backend, sizeof(*backend));
}

static double seconds_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static attn_cpu_jit_fn find_function(const attn_cpu_backend *backend, const char *name) {
  for (uint32_t i = 0; i < backend->function_count; i++)
    if (strcmp(backend->functions[i].name, name) == 0)
      return backend->functions[i].fn;
  return NULL;
}

static attn_status remember_function(attn_cpu_backend *backend, const char *name,
                                     attn_cpu_jit_fn fn) {
  if (backend->function_count == backend->function_capacity) {
    uint32_t capacity = backend->function_capacity ? 2 * backend->function_capacity : 16;
    cached_function *grown = attn_allocator_realloc(backend->allocator, backend->functions,
                                                    backend->function_capacity * sizeof(*grown),
                                                    capacity * sizeof(*grown));
    if (!grown)
      return attn_diag_error(backend->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                             "out of memory");
    backend->functions = grown;
    backend->function_capacity = capacity;
  }
  cached_function *entry = &backend->functions[backend->function_count++];
  snprintf(entry->name, sizeof(entry->name), "%s", name);
  entry->fn = fn;
  return ATTN_OK;
}

// Generates a kernel's module into *out_module (in its own LLVMContext).
typedef attn_status (*generate_fn)(void *ctx, attn_diag *diag, LLVMModuleRef *out_module);

// The function `name`: from memory, else from the disk cache, else generated by `generate` and
// compiled. *out_seconds gets the time spent (0 when it was in memory).
static attn_status get_function(attn_cpu_backend *backend, const char *name, generate_fn generate,
                                void *ctx, attn_cpu_jit_fn *out_fn, double *out_seconds) {
  *out_seconds = 0;
  if ((*out_fn = find_function(backend, name)))
    return ATTN_OK;
  double start = seconds_now();
  bool found;
  ATTN_RETURN_IF_ERROR(attn_cpu_jit_add_cached(backend->jit, name, &found));
  if (!found) {
    LLVMModuleRef module;
    ATTN_RETURN_IF_ERROR(generate(ctx, backend->diag, &module));
    LLVMSetModuleIdentifier(module, name, strlen(name));
    ATTN_RETURN_IF_ERROR(attn_cpu_jit_add_module_owned(backend->jit, module));
  }
  ATTN_RETURN_IF_ERROR(attn_cpu_jit_lookup(backend->jit, name, out_fn));
  *out_seconds = seconds_now() - start;
  return remember_function(backend, name, *out_fn);
}

const char *attn_cpu_step_impl_name(attn_cpu_step_impl impl) {
  switch (impl) {
  case ATTN_CPU_STEP_VIEW:
    return "view";
  case ATTN_CPU_STEP_GEMM:
    return "gemm";
  case ATTN_CPU_STEP_ATTENTION:
    return "attention";
  case ATTN_CPU_STEP_MLIR:
    return "mlir";
  case ATTN_CPU_STEP_TOPK:
    return "topk";
  case ATTN_CPU_STEP_REFERENCE:
    return "reference";
  case ATTN_CPU_STEP_IMPL_COUNT:
    break;
  }
  return NULL;
}

// ---- programs --------------------------------------------------------------------------------

// A GEMM kernel: its matmul and the epilogue nodes fused after it; nodes past `rest_begin` (0:
// none) run with the reference evaluator on the fused GEMM's result.
typedef struct gemm_plan {
  const attn_node *matmul;
  attn_value_id bias, residual; // ATTN_VALUE_NONE when absent
  attn_value_id out;            // the value the generated GEMM writes
  uint32_t rest_begin;
  attn_gemm_spec spec;
  attn_gemm_f32_fn fn;
} gemm_plan;

// An attention kernel: its node and the spec of the flash-attention template.
typedef struct attention_plan {
  const attn_node *node;
  attn_attention_spec spec;
  attn_attention_fn fn;
} attention_plan;

typedef struct step {
  uint32_t kernel;
  attn_cpu_step_impl impl;
  const char *function;
  gemm_plan gemm;
  attention_plan attention;
  attn_cpu_mlir_kernel mlir;
  attn_cpu_kernel_fn mlir_fn;
  double compile_seconds, run_seconds;
  uint64_t runs;
} step;

typedef enum value_state {
  VALUE_NONE,     // not available
  VALUE_BORROWED, // the caller's, the graph's, or a view
  VALUE_BUFFER,   // in the memory plan's block
  VALUE_OWNED,    // allocated by the run
} value_state;

struct attn_cpu_program {
  attn_cpu_backend *backend;
  const attn_graph *graph;
  attn_arena arena;
  attn_kernel_io *io;
  uint32_t *use_counts;
  step *steps;
  uint32_t step_count;
  // State of a run, allocated once.
  int64_t *symbols;
  attn_tensor *values;
  uint8_t *states;
  size_t *buffer_offsets, *buffer_sizes;
  void **buffer_places; // where each buffer is this run: in the block, or a graph output's tensor
  // Weights bound in another dtype, converted once: by node id, the bound data they came from
  // and the converted tensor (from the backend's allocator).
  const void **weight_sources;
  attn_tensor *converted_weights;
  void *block; // the memory plan's buffers
  size_t block_size;
  attn_allocator run_allocator;
  attn_diag *run_diag;
};

static const attn_type *value_type(const attn_graph *graph, attn_value_id value) {
  return &graph->values[value.index].type;
}

static bool is_f32(const attn_graph *graph, attn_value_id value) {
  return value_type(graph, value)->dtype == ATTN_DTYPE_F32;
}

// The node after `node` in its kernel (NULL at the kernel's end).
static const attn_node *next_in_kernel(const attn_graph *graph, const attn_kernel_io *io,
                                       uint32_t *inout_index) {
  uint32_t kernel = graph->nodes[*inout_index].kernel;
  for (uint32_t n = *inout_index + 1; n < io->end_node; n++) {
    const attn_node *node = &graph->nodes[n];
    if (!node->is_dead && node->kernel == kernel) {
      *inout_index = n;
      return node;
    }
  }
  return NULL;
}

// Whether `bias` can be a GEMM bias for an output whose last dim is `n`: f32 whose last dim
// is n and every other dim 1.
static bool is_bias_shaped(const attn_type *bias, attn_dim n) {
  if (bias->dtype != ATTN_DTYPE_F32 || bias->rank == 0 || bias->dims[bias->rank - 1] != n)
    return false;
  for (uint32_t d = 0; d + 1 < bias->rank; d++)
    if (bias->dims[d] != 1)
      return false;
  return true;
}

static attn_cpu_activation activation_of(const attn_node *node) {
  switch (node->op) {
  case ATTN_OP_RELU:
    return ATTN_CPU_ACTIVATION_RELU;
  case ATTN_OP_SILU:
    return ATTN_CPU_ACTIVATION_SILU;
  case ATTN_OP_TANH:
    return ATTN_CPU_ACTIVATION_TANH;
  case ATTN_OP_SIGMOID:
    return ATTN_CPU_ACTIVATION_SIGMOID;
  case ATTN_OP_GELU: {
    const attn_gelu_attrs *attrs = node->attrs;
    return attrs && attrs->approximate == ATTN_GELU_TANH ? ATTN_CPU_ACTIVATION_GELU_TANH
                                                         : ATTN_CPU_ACTIVATION_GELU_ERF;
  }
  default:
    return ATTN_CPU_ACTIVATION_COUNT;
  }
}

// Matches a GEMM kernel: a matmul of f32 values, then as much of bias → activation → residual
// (added, or multiplied: a gated MLP's gate) as its epilogue starts with. False when the kernel
// does not start with an f32 matmul.
static bool match_gemm(const attn_cpu_program *program, const attn_kernel_io *io, gemm_plan *plan) {
  const attn_graph *graph = program->graph;
  memset(plan, 0, sizeof(*plan));
  uint32_t n = io->first_node;
  const attn_node *node = &graph->nodes[n];
  if (node->op != ATTN_OP_MATMUL || !is_f32(graph, node->inputs[0]) ||
      !is_f32(graph, node->inputs[1]) || !is_f32(graph, node->outputs[0]))
    return false;
  const attn_matmul_attrs *attrs = node->attrs;
  plan->matmul = node;
  plan->spec.transpose_a = attrs && attrs->transpose_a;
  plan->spec.transpose_b = attrs && attrs->transpose_b;
  plan->spec.vector_width = program->backend->vector_width;
  plan->out = node->outputs[0];
  const attn_type *out_type = value_type(graph, plan->out);
  attn_dim cols = out_type->dims[out_type->rank - 1];
  for (const attn_node *next; (next = next_in_kernel(graph, io, &n));) {
    // The running result must feed only this node, so no one else needs the unfused value.
    bool is_graph_output = false;
    for (uint32_t o = 0; o < graph->output_count; o++)
      is_graph_output = is_graph_output || graph->outputs[o].index == plan->out.index;
    if (program->use_counts[plan->out.index] != 1 || is_graph_output)
      break;
    bool reads_result = false;
    for (uint32_t i = 0; i < next->input_count; i++)
      reads_result = reads_result || next->inputs[i].index == plan->out.index;
    if (!reads_result || !is_f32(graph, next->outputs[0]) ||
        !attn_type_equal(value_type(graph, next->outputs[0]), out_type))
      break;
    attn_cpu_activation activation = activation_of(next);
    if (next->op == ATTN_OP_ADD) {
      attn_value_id other = next->inputs[next->inputs[0].index == plan->out.index ? 1 : 0];
      if (other.index == plan->out.index)
        break;
      const attn_type *type = value_type(graph, other);
      if (!plan->spec.bias && !plan->spec.activation && !plan->spec.residual &&
          is_bias_shaped(type, cols) && !attn_type_equal(type, out_type)) {
        plan->spec.bias = true;
        plan->bias = other;
      } else if (!plan->spec.residual && attn_type_equal(type, out_type)) {
        plan->spec.residual = true;
        plan->spec.residual_op = ATTN_CPU_RESIDUAL_ADD;
        plan->residual = other;
      } else {
        break;
      }
    } else if (next->op == ATTN_OP_MUL) {
      // The gate of a gated MLP: act(x W) * u, u of the result's shape.
      attn_value_id other = next->inputs[next->inputs[0].index == plan->out.index ? 1 : 0];
      if (other.index == plan->out.index || plan->spec.residual ||
          !attn_type_equal(value_type(graph, other), out_type))
        break;
      plan->spec.residual = true;
      plan->spec.residual_op = ATTN_CPU_RESIDUAL_MUL;
      plan->residual = other;
    } else if (activation != ATTN_CPU_ACTIVATION_COUNT && !plan->spec.activation &&
               !plan->spec.residual) {
      plan->spec.activation = activation;
    } else {
      break;
    }
    plan->out = next->outputs[0];
  }
  // The first node after the last fused one, when any is left.
  uint32_t last = plan->out.index == plan->matmul->outputs[0].index
                      ? io->first_node
                      : graph->values[plan->out.index].producer.index;
  uint32_t after = last;
  plan->rest_begin = next_in_kernel(graph, io, &after) ? after : 0;
  return true;
}

static attn_status generate_gemm(void *ctx, attn_diag *diag, LLVMModuleRef *out_module) {
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  return attn_cpu_gemm_generate(ctx, diag, out_module, name);
}

// Looks up, or generates and compiles, the step's function `name` and records it in the step.
static attn_status compile_step(attn_cpu_program *program, step *s, const char *name,
                                generate_fn generate, void *spec, attn_cpu_jit_fn *out_fn) {
  ATTN_RETURN_IF_ERROR(
      get_function(program->backend, name, generate, spec, out_fn, &s->compile_seconds));
  s->function = attn_arena_strdup(&program->arena, name);
  return s->function ? ATTN_OK : ATTN_ERROR_OUT_OF_MEMORY;
}

static attn_status compile_gemm(attn_cpu_program *program, step *s) {
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  snprintf(name, sizeof(name), "attn_gemm_f32_%016" PRIx64, attn_gemm_spec_hash(&s->gemm.spec));
  attn_cpu_jit_fn fn;
  ATTN_RETURN_IF_ERROR(compile_step(program, s, name, generate_gemm, &s->gemm.spec, &fn));
  s->gemm.fn = (attn_gemm_f32_fn)fn;
  return ATTN_OK;
}

// Matches an attention kernel the template covers: f32 or bf16 q, k, v and out of constant
// head dims, a bool or f32 mask tensor, a score mod of at most 8 captures of rank 4 or less.
static bool match_attention(const attn_cpu_program *program, const attn_kernel_io *io,
                            attention_plan *plan) {
  const attn_graph *graph = program->graph;
  memset(plan, 0, sizeof(*plan));
  const attn_node *node = &graph->nodes[io->first_node];
  if (node->op != ATTN_OP_ATTENTION)
    return false;
  const attn_attention_attrs *attrs = node->attrs;
  const attn_type *q = value_type(graph, node->inputs[0]), *k = value_type(graph, node->inputs[1]);
  const attn_type *v = value_type(graph, node->inputs[2]);
  const attn_type *out = value_type(graph, node->outputs[0]);
  attn_dtype dtype = q->dtype;
  if ((dtype != ATTN_DTYPE_F32 && dtype != ATTN_DTYPE_BF16) || k->dtype != dtype ||
      v->dtype != dtype || out->dtype != dtype || q->rank != 4 ||
      !attn_dim_is_constant(q->dims[3]) || !attn_dim_is_constant(v->dims[3]))
    return false;
  attn_attention_spec *spec = &plan->spec;
  spec->head_dim = q->dims[3];
  spec->value_dim = v->dims[3];
  spec->mask = attrs->mask == ATTN_MASK_CAUSAL           ? ATTN_CPU_ATTENTION_MASK_CAUSAL
               : attrs->mask == ATTN_MASK_SLIDING_WINDOW ? ATTN_CPU_ATTENTION_MASK_SLIDING_WINDOW
                                                         : ATTN_CPU_ATTENTION_MASK_NONE;
  if (attrs->has_mask) {
    const attn_type *mask = value_type(graph, node->inputs[3]);
    if (mask->rank > 4 || (mask->dtype != ATTN_DTYPE_BOOL && mask->dtype != ATTN_DTYPE_F32))
      return false;
    spec->mask_tensor = mask->dtype == ATTN_DTYPE_BOOL ? ATTN_CPU_ATTENTION_MASK_TENSOR_BOOL
                                                       : ATTN_CPU_ATTENTION_MASK_TENSOR_F32;
  }
  spec->norm = attrs->norm == ATTN_NORM_SIGMOID ? ATTN_CPU_ATTENTION_NORM_SIGMOID
                                                : ATTN_CPU_ATTENTION_NORM_SOFTMAX;
  spec->lse = attrs->has_lse;
  spec->dtype = dtype == ATTN_DTYPE_BF16 ? ATTN_CPU_ATTENTION_BF16 : ATTN_CPU_ATTENTION_F32;
  // The score mod's captured tensors follow q, k, v and the mask.
  uint32_t base = attrs->has_mask ? 4 : 3;
  spec->score_mod = attrs->score_mod;
  spec->capture_count = node->input_count - base;
  if (spec->capture_count > ATTN_CPU_ATTENTION_MAX_CAPTURES)
    return false;
  for (uint32_t c = 0; c < spec->capture_count; c++) {
    const attn_type *type = value_type(graph, node->inputs[base + c]);
    if (type->rank > ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK)
      return false;
    spec->captures[c] = (attn_cpu_attention_capture){type->dtype, type->rank};
  }
  spec->vector_width = program->backend->vector_width;
  plan->node = node;
  return true;
}

static attn_status generate_attention(void *ctx, attn_diag *diag, LLVMModuleRef *out_module) {
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  return attn_cpu_attention_generate(ctx, diag, out_module, name);
}

static attn_status compile_attention(attn_cpu_program *program, step *s) {
  char name[ATTN_CPU_KERNEL_NAME_MAX];
  snprintf(name, sizeof(name), "attn_attention_%016" PRIx64,
           attn_attention_spec_hash(&s->attention.spec));
  attn_cpu_jit_fn fn;
  ATTN_RETURN_IF_ERROR(compile_step(program, s, name, generate_attention, &s->attention.spec, &fn));
  s->attention.fn = (attn_attention_fn)fn;
  return ATTN_OK;
}

// The kernel kinds the MLIR path may take.
static bool is_mlir_kind(attn_kernel_kind kind) {
  return kind == ATTN_KERNEL_ELEMENTWISE || kind == ATTN_KERNEL_NORM ||
         kind == ATTN_KERNEL_REDUCTION || kind == ATTN_KERNEL_LAYOUT || kind == ATTN_KERNEL_ROPE ||
         kind == ATTN_KERNEL_GATHER;
}

typedef struct mlir_request {
  attn_cpu_mlir *mlir;
  const attn_graph *graph;
  uint32_t kernel;
  const attn_kernel_io *io;
  int vector_width;
} mlir_request;

static attn_status generate_mlir(void *ctx, attn_diag *diag, LLVMModuleRef *out_module) {
  const mlir_request *r = ctx;
  attn_cpu_mlir_kernel kernel;
  return attn_cpu_mlir_generate(r->mlir, r->graph, r->kernel, r->io, r->vector_width, diag,
                                out_module, &kernel);
}

// Compiles the kernel through MLIR when the path covers it; *out_covered is false (and nothing
// is recorded) when it does not, so the step stays on the reference evaluator.
static attn_status compile_mlir(attn_cpu_program *program, step *s, bool *out_covered) {
  attn_cpu_backend *backend = program->backend;
  const attn_kernel_io *io = &program->io[s->kernel];
  *out_covered = false;
  attn_diag scratch;
  attn_diag_init(&scratch, backend->allocator);
  attn_status status = attn_cpu_mlir_describe(program->graph, s->kernel, io, backend->vector_width,
                                              &scratch, &s->mlir);
  if (status != ATTN_OK && status != ATTN_ERROR_UNSUPPORTED)
    attn_diag_error(backend->diag, ATTN_LOC_NONE, status, "kernel k%u: %s", s->kernel,
                    attn_diag_last_error(&scratch));
  attn_diag_deinit(&scratch);
  if (status != ATTN_OK)
    return status == ATTN_ERROR_UNSUPPORTED ? ATTN_OK : status;
  if (!backend->mlir)
    ATTN_RETURN_IF_ERROR(attn_cpu_mlir_create(backend->diag, &backend->mlir));
  mlir_request request = {backend->mlir, program->graph, s->kernel, io, backend->vector_width};
  attn_cpu_jit_fn fn;
  ATTN_RETURN_IF_ERROR(compile_step(program, s, s->mlir.name, generate_mlir, &request, &fn));
  s->mlir_fn = (attn_cpu_kernel_fn)fn;
  *out_covered = true;
  return ATTN_OK;
}

// A top-k kernel the runtime's routine covers: one topk node over f32.
static bool is_f32_topk(const attn_graph *graph, const attn_kernel_io *io) {
  const attn_node *node = &graph->nodes[io->first_node];
  return node->op == ATTN_OP_TOPK && is_f32(graph, node->inputs[0]) &&
         is_f32(graph, node->outputs[0]) &&
         value_type(graph, node->outputs[1])->dtype == ATTN_DTYPE_I64;
}

static attn_status compile_steps(attn_cpu_program *program) {
  const attn_graph *graph = program->graph;
  attn_cpu_backend *backend = program->backend;
  for (uint32_t k = 1; k < graph->kernel_count; k++) {
    step *s = &program->steps[program->step_count++];
    const attn_kernel_io *io = &program->io[k];
    s->kernel = k;
    s->impl = ATTN_CPU_STEP_REFERENCE;
    attn_kernel_kind kind = graph->kernels[k].kind;
    if (kind == ATTN_KERNEL_ALIAS) {
      s->impl = ATTN_CPU_STEP_VIEW;
      continue;
    }
    if (backend->options.reference_only || io->first_node == 0)
      continue;
    if (kind == ATTN_KERNEL_GEMM && match_gemm(program, io, &s->gemm)) {
      s->impl = ATTN_CPU_STEP_GEMM;
      ATTN_RETURN_IF_ERROR(compile_gemm(program, s));
    } else if (kind == ATTN_KERNEL_ATTENTION && match_attention(program, io, &s->attention)) {
      s->impl = ATTN_CPU_STEP_ATTENTION;
      ATTN_RETURN_IF_ERROR(compile_attention(program, s));
    } else if (kind == ATTN_KERNEL_TOPK && is_f32_topk(graph, io)) {
      s->impl = ATTN_CPU_STEP_TOPK;
    } else if (is_mlir_kind(kind)) {
      bool covered;
      ATTN_RETURN_IF_ERROR(compile_mlir(program, s, &covered));
      if (covered)
        s->impl = ATTN_CPU_STEP_MLIR;
    }
  }
  return ATTN_OK;
}

attn_status attn_cpu_program_compile(attn_cpu_backend *backend, const attn_graph *graph,
                                     attn_cpu_program **out_program) {
  *out_program = NULL;
  attn_diag *diag = backend->diag;
  if (graph->kernel_count == 0 || graph->buffer_count == 0)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "the cpu backend needs a partitioned, memory-planned graph (run the "
                           "passes 'partition' and 'plan-memory')");
  attn_cpu_program *program = attn_allocator_calloc(backend->allocator, 1, sizeof(*program));
  if (!program)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  program->backend = backend;
  program->graph = graph;
  attn_arena_init(&program->arena, backend->allocator);
  attn_arena *arena = &program->arena;
  attn_status status = attn_graph_kernel_io(graph, arena, &program->io);
  if (status == ATTN_OK)
    status = attn_graph_count_uses(graph, arena, &program->use_counts);
  if (status == ATTN_OK) {
    program->steps = attn_arena_calloc(arena, graph->kernel_count, sizeof(*program->steps));
    program->symbols = attn_arena_calloc(arena, graph->symbol_count + 1, sizeof(int64_t));
    program->values = attn_arena_calloc(arena, graph->value_count, sizeof(attn_tensor));
    program->states = attn_arena_calloc(arena, graph->value_count, sizeof(uint8_t));
    program->buffer_offsets = attn_arena_calloc(arena, graph->buffer_count, sizeof(size_t));
    program->buffer_sizes = attn_arena_calloc(arena, graph->buffer_count, sizeof(size_t));
    program->buffer_places = attn_arena_calloc(arena, graph->buffer_count, sizeof(void *));
    program->weight_sources = attn_arena_calloc(arena, graph->node_count, sizeof(void *));
    program->converted_weights = attn_arena_calloc(arena, graph->node_count, sizeof(attn_tensor));
    if (!program->steps || !program->symbols || !program->values || !program->states ||
        !program->buffer_offsets || !program->buffer_sizes || !program->buffer_places ||
        !program->weight_sources || !program->converted_weights)
      status = ATTN_ERROR_OUT_OF_MEMORY;
  }
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    attn_diag_error(diag, ATTN_LOC_NONE, status, "out of memory");
  if (status == ATTN_OK)
    status = compile_steps(program);
  if (status != ATTN_OK) {
    attn_cpu_program_destroy(program);
    return status;
  }
  *out_program = program;
  return ATTN_OK;
}

void attn_cpu_program_release_weights(attn_cpu_program *program) {
  for (uint32_t n = 0; program->converted_weights && n < program->graph->node_count; n++) {
    attn_tensor_free(program->backend->allocator, &program->converted_weights[n]);
    program->weight_sources[n] = NULL;
  }
}

void attn_cpu_program_destroy(attn_cpu_program *program) {
  if (!program)
    return;
  attn_cpu_program_release_weights(program);
  attn_allocator allocator = program->backend->allocator;
  attn_allocator_free(allocator, program->block, program->block_size);
  attn_arena_deinit(&program->arena);
  attn_allocator_free(allocator, program, sizeof(*program));
}

uint32_t attn_cpu_program_step_count(const attn_cpu_program *program) {
  return program->step_count;
}

attn_cpu_step_info attn_cpu_program_step(const attn_cpu_program *program, uint32_t index) {
  const step *s = &program->steps[index];
  return (attn_cpu_step_info){
      .kernel = s->kernel,
      .kind = program->graph->kernels[s->kernel].kind,
      .impl = s->impl,
      .function = s->function,
      .compile_seconds = s->compile_seconds,
      .run_seconds = s->run_seconds,
      .runs = s->runs,
  };
}

void attn_cpu_program_reset_times(attn_cpu_program *program) {
  for (uint32_t i = 0; i < program->step_count; i++) {
    program->steps[i].run_seconds = 0;
    program->steps[i].runs = 0;
  }
}

// ---- running ---------------------------------------------------------------------------------

static attn_status out_of_memory(attn_cpu_program *program) {
  return attn_diag_error(program->run_diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "out of memory");
}

// The concrete dtype and dims of `value` (data NULL).
static attn_status concrete_tensor(attn_cpu_program *program, attn_value_id value,
                                   attn_tensor *out) {
  const attn_type *type = value_type(program->graph, value);
  memset(out, 0, sizeof(*out));
  out->dtype = type->dtype;
  out->rank = type->rank;
  for (uint32_t d = 0; d < type->rank; d++)
    if (attn_graph_dim_eval(program->graph, type->dims[d], program->symbols, &out->dims[d]) !=
        ATTN_OK)
      return attn_diag_error(program->run_diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "a dim of value %%%u does not evaluate with the bound symbols",
                             value.index);
  return ATTN_OK;
}

static void release(attn_cpu_program *program, uint32_t value) {
  if (program->states[value] == VALUE_OWNED)
    attn_tensor_free(program->run_allocator, &program->values[value]);
  program->states[value] = VALUE_NONE;
  program->values[value].data = NULL;
}

// Lays the buffers out in one block, growing it when the symbols make them larger.
static attn_status place_buffers(attn_cpu_program *program, attn_tensor *out_outputs) {
  const attn_graph *graph = program->graph;
  size_t guard = program->backend->options.guard_bands ? GUARD_BYTES : 0;
  size_t total = guard;
  for (uint32_t b = 1; b < graph->buffer_count; b++) {
    int64_t bytes;
    if (attn_graph_dim_eval(graph, graph->buffers[b].bytes, program->symbols, &bytes) != ATTN_OK ||
        bytes < 0)
      return attn_diag_error(program->run_diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "the size of buffer b%u does not evaluate with the bound symbols", b);
    program->buffer_offsets[b] = total;
    program->buffer_sizes[b] = (size_t)bytes;
    total += ((size_t)bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN + guard;
  }
  if (total > program->block_size) {
    attn_allocator allocator = program->backend->allocator;
    attn_allocator_free(allocator, program->block, program->block_size);
    program->block_size = 0;
    program->block = attn_allocator_alloc(allocator, total);
    if (!program->block)
      return out_of_memory(program);
    program->block_size = total;
  }
  if (guard)
    memset(program->block, GUARD_PATTERN, total);
  for (uint32_t b = 1; b < graph->buffer_count; b++)
    program->buffer_places[b] = (char *)program->block + program->buffer_offsets[b];
  // A graph output whose buffer is exactly its size is computed straight into the tensor the
  // caller receives, which saves copying it out (the plan never reuses an output's buffer).
  // Not with guard bands, which only surround the block.
  for (uint32_t o = 0; o < graph->output_count && !guard; o++) {
    attn_value_id value = graph->outputs[o];
    uint32_t b = graph->values[value.index].buffer;
    if (b == 0 || b >= graph->buffer_count || !attn_value_producer(graph, value) ||
        program->buffer_places[b] != (char *)program->block + program->buffer_offsets[b])
      continue;
    attn_tensor shape;
    size_t bytes = 0;
    ATTN_RETURN_IF_ERROR(concrete_tensor(program, value, &shape));
    if (!attn_tensor_size_bytes(&shape, &bytes) || bytes != program->buffer_sizes[b] || !bytes)
      continue;
    if (attn_tensor_alloc_uninit(program->run_allocator, shape.dtype, shape.rank, shape.dims,
                                 &out_outputs[o]) != ATTN_OK)
      return out_of_memory(program);
    program->buffer_places[b] = out_outputs[o].data;
  }
  for (uint32_t v = 1; v < graph->value_count; v++) {
    uint32_t b = graph->values[v].buffer;
    if (b == 0 || b >= graph->buffer_count || !attn_value_producer(graph, (attn_value_id){v}))
      continue;
    ATTN_RETURN_IF_ERROR(concrete_tensor(program, (attn_value_id){v}, &program->values[v]));
    program->values[v].data = program->buffer_places[b];
    program->states[v] = VALUE_BUFFER;
  }
  return ATTN_OK;
}

// Checks that the bytes between and around the buffers still hold the guard pattern.
static attn_status check_guards(attn_cpu_program *program, const step *s) {
  const attn_graph *graph = program->graph;
  const unsigned char *block = program->block;
  size_t begin = 0;
  for (uint32_t b = 1; b <= graph->buffer_count; b++) {
    size_t end = b < graph->buffer_count ? program->buffer_offsets[b] : program->block_size;
    for (size_t i = begin; i < end; i++)
      if (block[i] != GUARD_PATTERN)
        return attn_diag_error(program->run_diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                               "kernel k%u (%s, run as %s) wrote outside its output buffers, "
                               "%zu bytes into the block",
                               s->kernel, attn_kernel_kind_name(graph->kernels[s->kernel].kind),
                               attn_cpu_step_impl_name(s->impl), i);
    if (b < graph->buffer_count)
      begin = program->buffer_offsets[b] + program->buffer_sizes[b];
  }
  return ATTN_OK;
}

static attn_status bind_inputs(attn_cpu_program *program, const attn_interp_args *args) {
  const attn_graph *graph = program->graph;
  for (uint32_t s = 0; s < graph->symbol_count; s++)
    program->symbols[s] = args->symbol_values ? args->symbol_values[s] : -1;
  ATTN_RETURN_IF_ERROR(
      attn_interp_bind_inputs(graph, args->inputs, program->symbols, program->run_diag));
  for (uint32_t i = 0; i < graph->input_count; i++) {
    uint32_t v = graph->inputs[i].index;
    if (args->inputs[i].dtype == value_type(graph, graph->inputs[i])->dtype) {
      program->values[v] = args->inputs[i];
      program->states[v] = VALUE_BORROWED;
      continue;
    }
    ATTN_RETURN_IF_ERROR(attn_interp_convert_input(graph, i, &args->inputs[i],
                                                   program->run_allocator, program->run_diag,
                                                   &program->values[v]));
    program->states[v] = VALUE_OWNED;
  }
  return ATTN_OK;
}

// Evaluates the leaves that live nodes read: weights, constants, iotas. A weight bound in another
// dtype is converted the first time its data is seen and kept for later runs.
static attn_status bind_leaves(attn_cpu_program *program, const attn_interp_args *args) {
  const attn_graph *graph = program->graph;
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    uint32_t v = node->outputs ? node->outputs[0].index : 0;
    if (node->is_dead || !(attn_op_get_info(node->op)->flags & ATTN_OP_LEAF) ||
        program->use_counts[v] == 0)
      continue;
    const attn_tensor *weight = args->weights ? &args->weights[n] : NULL;
    bool is_weight = node->op == ATTN_OP_WEIGHT && weight && weight->data;
    if (is_weight && program->weight_sources[n] == weight->data) {
      program->values[v] = program->converted_weights[n];
      program->states[v] = VALUE_BORROWED;
      continue;
    }
    attn_allocator allocator = is_weight ? program->backend->allocator : program->run_allocator;
    bool is_borrowed;
    attn_tensor output;
    ATTN_RETURN_IF_ERROR(attn_interp_eval_node(graph, (attn_node_id){n}, NULL, program->symbols,
                                               weight, allocator, program->run_diag, &output,
                                               &is_borrowed));
    program->values[v] = output;
    program->states[v] = is_borrowed ? VALUE_BORROWED : VALUE_OWNED;
    if (is_weight && !is_borrowed) {
      attn_tensor_free(allocator, &program->converted_weights[n]);
      program->converted_weights[n] = output;
      program->weight_sources[n] = weight->data;
      program->states[v] = VALUE_BORROWED;
    }
  }
  return ATTN_OK;
}

static attn_status missing_value(attn_cpu_program *program, const attn_node *node) {
  return attn_diag_error(program->run_diag, node->loc, ATTN_ERROR_INVALID_GRAPH,
                         "%s: reads a value no kernel has computed (an invalid partition)",
                         attn_op_get_info(node->op)->name);
}

// Runs the kernel's nodes from `begin` with the reference evaluator, each into its own tensor,
// then copies the kernel's outputs into their buffers. Outputs go to the buffers only at the
// end, because the plan may give an output the buffer of an input a later node still reads.
static attn_status run_reference(attn_cpu_program *program, const attn_kernel_io *io,
                                 uint32_t kernel, uint32_t begin) {
  const attn_graph *graph = program->graph;
  attn_status status = ATTN_OK;
  for (uint32_t n = begin; n < io->end_node && status == ATTN_OK; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->kernel != kernel)
      continue;
    if (node->input_count > MAX_NODE_INPUTS || node->output_count > MAX_NODE_OUTPUTS)
      return attn_diag_error(program->run_diag, node->loc, ATTN_ERROR_UNSUPPORTED,
                             "%s: too many inputs or outputs", attn_op_get_info(node->op)->name);
    attn_tensor inputs[MAX_NODE_INPUTS], outputs[MAX_NODE_OUTPUTS];
    for (uint32_t i = 0; i < node->input_count; i++) {
      if (program->states[node->inputs[i].index] == VALUE_NONE)
        return missing_value(program, node);
      inputs[i] = program->values[node->inputs[i].index];
    }
    bool is_borrowed;
    status =
        attn_interp_eval_node(graph, (attn_node_id){n}, inputs, program->symbols, NULL,
                              program->run_allocator, program->run_diag, outputs, &is_borrowed);
    for (uint32_t o = 0; o < node->output_count && status == ATTN_OK; o++) {
      // Planned values take their buffer back at the end (the plan gives the place again).
      uint32_t v = node->outputs[o].index;
      if (program->states[v] == VALUE_OWNED)
        release(program, v);
      program->values[v] = outputs[o];
      program->states[v] = is_borrowed ? VALUE_BORROWED : VALUE_OWNED;
    }
  }
  if (status != ATTN_OK)
    return status;
  // Move every output that has a buffer into it; free what the kernel made for itself.
  for (uint32_t n = begin; n < io->end_node; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->kernel != kernel)
      continue;
    for (uint32_t o = 0; o < node->output_count; o++) {
      uint32_t v = node->outputs[o].index;
      uint32_t b = graph->values[v].buffer;
      if (b == 0 || b >= graph->buffer_count)
        continue;
      if (program->states[v] != VALUE_OWNED)
        continue;
      attn_tensor result = program->values[v];
      size_t bytes = 0;
      attn_tensor_size_bytes(&result, &bytes);
      void *place = program->buffer_places[b];
      if (bytes)
        memmove(place, result.data, bytes);
      attn_tensor_free(program->run_allocator, &program->values[v]);
      program->values[v] = result;
      program->values[v].data = place;
      program->states[v] = VALUE_BUFFER;
    }
  }
  return ATTN_OK;
}

static void run_view(attn_cpu_program *program, const attn_kernel_io *io, uint32_t kernel) {
  const attn_graph *graph = program->graph;
  for (uint32_t n = io->first_node; n < io->end_node; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->kernel != kernel)
      continue;
    uint32_t in = node->inputs[0].index, out = node->outputs[0].index;
    attn_tensor view;
    if (concrete_tensor(program, node->outputs[0], &view) != ATTN_OK)
      continue; // the reshape's shape was checked when the input was placed
    view.data = program->values[in].data;
    if (program->states[out] == VALUE_OWNED)
      release(program, out);
    program->values[out] = view;
    program->states[out] = VALUE_BORROWED;
  }
}

// Where a kernel writes `value`: its buffer, or a tensor allocated for the run when the plan
// gave it none (a result no later kernel reads, say).
static attn_status output_value(attn_cpu_program *program, attn_value_id value,
                                attn_tensor **out_tensor) {
  attn_tensor *tensor = &program->values[value.index];
  if (program->states[value.index] != VALUE_BUFFER) {
    attn_tensor shape;
    ATTN_RETURN_IF_ERROR(concrete_tensor(program, value, &shape));
    if (attn_tensor_alloc_uninit(program->run_allocator, shape.dtype, shape.rank, shape.dims,
                                 tensor) != ATTN_OK)
      return out_of_memory(program);
    program->states[value.index] = VALUE_OWNED;
  }
  *out_tensor = tensor;
  return ATTN_OK;
}

static attn_status output_tensor(attn_cpu_program *program, const attn_node *node, uint32_t index,
                                 attn_tensor **out_tensor) {
  return output_value(program, node->outputs[index], out_tensor);
}

// ---- the GEMM step ---------------------------------------------------------------------------

// Element offsets of each batch item of `t` broadcast to the batch dims of `out` (all dims but
// the last two).
static void batch_offsets(const attn_tensor *t, const attn_tensor *out, int64_t batch,
                          int64_t *offsets) {
  uint32_t out_batch_rank = out->rank - 2;
  int64_t matrix = t->dims[t->rank - 1] * t->dims[t->rank - 2];
  int64_t strides[ATTN_MAX_RANK] = {0};
  int64_t stride = matrix;
  for (uint32_t d = t->rank - 2; d-- > 0;) {
    uint32_t od = d + out_batch_rank - (t->rank - 2);
    strides[od] = t->dims[d] == 1 ? 0 : stride;
    stride *= t->dims[d];
  }
  for (int64_t item = 0; item < batch; item++) {
    int64_t rest = item, offset = 0;
    for (uint32_t d = out_batch_rank; d-- > 0;) {
      offset += (rest % out->dims[d]) * strides[d];
      rest /= out->dims[d];
    }
    offsets[item] = offset;
  }
}

// Whether offsets[i] = i * stride for every item (then *out_stride is that stride).
static bool is_progression(const int64_t *offsets, int64_t batch, int64_t *out_stride) {
  *out_stride = batch > 1 ? offsets[1] - offsets[0] : 0;
  for (int64_t i = 0; i < batch; i++)
    if (offsets[i] != i * *out_stride)
      return false;
  return true;
}

// A batch of GEMMs: one launch when the items' offsets are strides (one taller GEMM when they
// share the weight), else one launch per item.
static attn_status run_batched_gemm(attn_cpu_program *program, const gemm_plan *plan,
                                    const attn_tensor *a, const attn_tensor *b,
                                    const attn_tensor *out, int64_t batch, attn_gemm_call *call) {
  int64_t m = call->m, n = call->n;
  size_t offsets_size = 2 * (size_t)batch * sizeof(int64_t);
  int64_t *offsets = attn_allocator_alloc(program->run_allocator, offsets_size);
  if (!offsets)
    return out_of_memory(program);
  batch_offsets(a, out, batch, offsets);
  batch_offsets(b, out, batch, offsets + batch);
  int64_t stride_a, stride_b;
  attn_status status = ATTN_OK;
  if (is_progression(offsets, batch, &stride_a) &&
      is_progression(offsets + batch, batch, &stride_b)) {
    if (stride_b == 0 && !plan->spec.transpose_a && stride_a == m * call->lda) {
      call->m = batch * m; // one weight for every item: one taller GEMM
    } else {
      call->batch = batch;
      call->batch_stride_a = stride_a;
      call->batch_stride_b = stride_b;
      call->batch_stride_c = m * n;
      call->batch_stride_residual = call->residual ? m * n : 0;
    }
    status = attn_cpu_gemm_launch(plan->fn, call, program->backend->pool, program->run_diag);
  } else {
    // Broadcast patterns no single stride describes: item by item.
    for (int64_t item = 0; item < batch && status == ATTN_OK; item++) {
      attn_gemm_call one = *call;
      one.a += offsets[item];
      one.b += offsets[batch + item];
      one.c += item * m * n;
      one.residual = call->residual ? call->residual + item * m * n : NULL;
      status = attn_cpu_gemm_launch(plan->fn, &one, program->backend->pool, program->run_diag);
    }
  }
  attn_allocator_free(program->run_allocator, offsets, offsets_size);
  return status;
}

static attn_status run_gemm(attn_cpu_program *program, const step *s) {
  const gemm_plan *plan = &s->gemm;
  const attn_node *matmul = plan->matmul;
  if (program->states[matmul->inputs[0].index] == VALUE_NONE ||
      program->states[matmul->inputs[1].index] == VALUE_NONE)
    return missing_value(program, matmul);
  const attn_tensor *a = &program->values[matmul->inputs[0].index];
  const attn_tensor *b = &program->values[matmul->inputs[1].index];
  attn_tensor *out;
  ATTN_RETURN_IF_ERROR(output_value(program, plan->out, &out));
  int64_t m = out->dims[out->rank - 2], n = out->dims[out->rank - 1];
  int64_t batch = 1;
  for (uint32_t d = 0; d + 2 < out->rank; d++)
    batch *= out->dims[d];
  attn_gemm_call call = {
      .a = a->data,
      .b = b->data,
      .c = out->data,
      .m = m,
      .n = n,
      .k = plan->spec.transpose_a ? a->dims[a->rank - 2] : a->dims[a->rank - 1],
      .lda = a->dims[a->rank - 1],
      .ldb = b->dims[b->rank - 1],
      .ldc = n,
      .bias = plan->spec.bias ? program->values[plan->bias.index].data : NULL,
      .residual = plan->spec.residual ? program->values[plan->residual.index].data : NULL,
      .ldr = n,
      .transpose_b = plan->spec.transpose_b,
      .batch = 1,
  };
  ATTN_RETURN_IF_ERROR(
      batch <= 1 || m == 0 || n == 0
          ? attn_cpu_gemm_launch(plan->fn, &call, program->backend->pool, program->run_diag)
          : run_batched_gemm(program, plan, a, b, out, batch, &call));
  if (plan->rest_begin)
    ATTN_RETURN_IF_ERROR(
        run_reference(program, &program->io[s->kernel], s->kernel, plan->rest_begin));
  return ATTN_OK;
}

// ---- the attention step ----------------------------------------------------------------------

static attn_status run_attention(attn_cpu_program *program, const step *s) {
  const attention_plan *plan = &s->attention;
  const attn_node *node = plan->node;
  const attn_attention_attrs *attrs = node->attrs;
  for (uint32_t i = 0; i < node->input_count; i++)
    if (program->states[node->inputs[i].index] == VALUE_NONE)
      return missing_value(program, node);
  const attn_tensor *q = &program->values[node->inputs[0].index];
  const attn_tensor *k = &program->values[node->inputs[1].index];
  const attn_tensor *v = &program->values[node->inputs[2].index];
  attn_tensor *out, *lse = NULL;
  ATTN_RETURN_IF_ERROR(output_tensor(program, node, 0, &out));
  if (plan->spec.lse)
    ATTN_RETURN_IF_ERROR(output_tensor(program, node, 1, &lse));
  attn_cpu_attention_args args = {
      .q = q->data,
      .k = k->data,
      .v = v->data,
      .out = out->data,
      .lse = lse ? lse->data : NULL,
      .batch = q->dims[0],
      .heads = q->dims[1],
      .kv_heads = k->dims[1],
      .tq = q->dims[2],
      .tk = k->dims[2],
      .window = attrs->window,
      .sinks = attrs->sinks,
      .scale = attrs->scale != 0 ? attrs->scale : 1.0 / sqrt((double)plan->spec.head_dim),
      .sigmoid_bias = attrs->sigmoid_bias,
  };
  uint32_t base = attrs->has_mask ? 4 : 3;
  for (uint32_t c = 0; c < plan->spec.capture_count; c++) {
    const attn_tensor *capture = &program->values[node->inputs[base + c].index];
    args.captures[c] = capture->data;
    for (uint32_t d = 0; d < capture->rank; d++)
      args.capture_dims[c][d] = capture->dims[d];
  }
  if (attrs->has_mask) {
    // The mask's dims, right-aligned to [B, H, Tq, Tk]; a dim of 1 broadcasts.
    const attn_tensor *mask = &program->values[node->inputs[3].index];
    args.mask = mask->data;
    int64_t stride = 1;
    for (uint32_t d = mask->rank; d-- > 0;) {
      args.mask_strides[4 - mask->rank + d] = mask->dims[d] == 1 ? 0 : stride;
      stride *= mask->dims[d];
    }
  }
  attn_cpu_attention_launch_spec launch = attn_attention_spec_launch(&plan->spec);
  return attn_cpu_attention_launch(plan->fn, &launch, &args, program->backend->pool,
                                   program->run_allocator, program->run_diag);
}

// ---- the MLIR step ---------------------------------------------------------------------------

enum { MLIR_MAX_OPERANDS = 64, MLIR_CHUNK_ELEMENTS = 16384 };

typedef struct mlir_call {
  attn_cpu_kernel_fn fn;
  void *data[MLIR_MAX_OPERANDS];
  int64_t dims[MLIR_MAX_OPERANDS * ATTN_MAX_RANK];
} mlir_call;

static attn_status mlir_chunk(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)thread_index;
  const mlir_call *call = ctx;
  call->fn(call->data, call->dims, begin, end);
  return ATTN_OK;
}

// The generated gather clamps indices; bad ones must be reported as the reference evaluator
// reports them, so they are checked first.
static attn_status check_gather_indices(attn_cpu_program *program, const attn_kernel_io *io,
                                        uint32_t kernel) {
  const attn_graph *graph = program->graph;
  for (uint32_t n = io->first_node; n < io->end_node; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->kernel != kernel || node->op != ATTN_OP_GATHER)
      continue;
    const attn_tensor *data = &program->values[node->inputs[0].index];
    const attn_tensor *indices = &program->values[node->inputs[1].index];
    if (!data->data || !indices->data)
      continue; // computed inside the kernel: the generated code sees them
    const attn_axis_attrs *attrs = node->attrs;
    int64_t axis = attrs->axis < 0 ? attrs->axis + data->rank : attrs->axis;
    int64_t dim = data->dims[axis], count = attn_tensor_element_count(indices);
    for (int64_t i = 0; i < count; i++) {
      int64_t index = indices->dtype == ATTN_DTYPE_I64   ? ((const int64_t *)indices->data)[i]
                      : indices->dtype == ATTN_DTYPE_I32 ? ((const int32_t *)indices->data)[i]
                                                         : (int64_t)attn_tensor_get_f64(indices, i);
      if (index < -dim || index >= dim)
        return attn_diag_error(program->run_diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                               "gather: index %" PRId64 " (element %" PRId64
                               " of the indices) is out of range for axis %" PRId64
                               " of size %" PRId64,
                               index, i, axis, dim);
    }
  }
  return ATTN_OK;
}

static attn_status run_mlir(attn_cpu_program *program, const step *s) {
  const attn_kernel_io *io = &program->io[s->kernel];
  uint32_t operands = io->input_count + io->output_count;
  if (operands > MLIR_MAX_OPERANDS)
    return attn_diag_error(program->run_diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                           "kernel k%u has %u operands; the cpu backend passes at most %d",
                           s->kernel, operands, MLIR_MAX_OPERANDS);
  mlir_call call = {.fn = s->mlir_fn};
  uint32_t dim_count = 0;
  for (uint32_t i = 0; i < operands; i++) {
    bool is_input = i < io->input_count;
    attn_value_id value = is_input ? io->inputs[i] : io->outputs[i - io->input_count];
    if (is_input && program->states[value.index] == VALUE_NONE)
      return missing_value(program, &program->graph->nodes[io->first_node]);
    attn_tensor *tensor = &program->values[value.index];
    if (!is_input)
      ATTN_RETURN_IF_ERROR(output_value(program, value, &tensor));
    call.data[i] = tensor->data;
    for (uint32_t d = 0; d < tensor->rank; d++)
      call.dims[dim_count++] = tensor->dims[d];
  }
  if (program->graph->kernels[s->kernel].kind == ATTN_KERNEL_GATHER)
    ATTN_RETURN_IF_ERROR(check_gather_indices(program, io, s->kernel));
  const attn_tensor *first = &program->values[io->outputs[0].index];
  int64_t rows = 1;
  for (uint32_t d = 0; d < s->mlir.parallel_rank && d < first->rank; d++)
    rows *= first->dims[d];
  int64_t elements = attn_tensor_element_count(first);
  int64_t row_elements = rows > 0 ? elements / rows : 0;
  int64_t grain = row_elements > 0 ? MLIR_CHUNK_ELEMENTS / row_elements : rows;
  return attn_pool_parallel_for(program->backend->pool, rows, grain < 1 ? 1 : grain, mlir_chunk,
                                &call);
}

// ---- the top-k step ----------------------------------------------------------------------------

static attn_status run_topk(attn_cpu_program *program, const step *s) {
  const attn_node *node = &program->graph->nodes[program->io[s->kernel].first_node];
  const attn_topk_attrs *attrs = node->attrs;
  if (program->states[node->inputs[0].index] == VALUE_NONE)
    return missing_value(program, node);
  const attn_tensor *x = &program->values[node->inputs[0].index];
  int64_t axis = attrs->axis < 0 ? attrs->axis + x->rank : attrs->axis;
  int64_t outer = 1, inner = 1, n = x->dims[axis];
  for (int64_t d = 0; d < axis; d++)
    outer *= x->dims[d];
  for (uint32_t d = (uint32_t)axis + 1; d < x->rank; d++)
    inner *= x->dims[d];
  if (attrs->k > n)
    return attn_diag_error(program->run_diag, node->loc, ATTN_ERROR_INVALID_ARGUMENT,
                           "topk: k = %" PRId64 " exceeds the %" PRId64
                           " elements of axis %" PRId64,
                           attrs->k, n, axis);
  attn_tensor *values, *indices;
  ATTN_RETURN_IF_ERROR(output_tensor(program, node, 0, &values));
  ATTN_RETURN_IF_ERROR(output_tensor(program, node, 1, &indices));
  return attn_cpu_topk_f32(x->data, outer, n, inner, attrs->k, attrs->largest, values->data,
                           indices->data, program->backend->pool, program->run_allocator,
                           program->run_diag);
}

static attn_status run_step(attn_cpu_program *program, step *s) {
  const attn_kernel_io *io = &program->io[s->kernel];
  switch (s->impl) {
  case ATTN_CPU_STEP_VIEW:
    run_view(program, io, s->kernel);
    return ATTN_OK;
  case ATTN_CPU_STEP_GEMM:
    return run_gemm(program, s);
  case ATTN_CPU_STEP_ATTENTION:
    return run_attention(program, s);
  case ATTN_CPU_STEP_MLIR:
    return run_mlir(program, s);
  case ATTN_CPU_STEP_TOPK:
    return run_topk(program, s);
  case ATTN_CPU_STEP_REFERENCE:
  case ATTN_CPU_STEP_IMPL_COUNT:
    break;
  }
  return run_reference(program, io, s->kernel, io->first_node);
}

static attn_status take_outputs(attn_cpu_program *program, attn_tensor *out_outputs) {
  const attn_graph *graph = program->graph;
  for (uint32_t i = 0; i < graph->output_count; i++) {
    uint32_t v = graph->outputs[i].index;
    if (program->states[v] == VALUE_NONE)
      return attn_diag_error(program->run_diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                             "output '%s' is not computed (an invalid partition)",
                             graph->output_names[i]);
    const attn_tensor *value = &program->values[v];
    if (out_outputs[i].data && out_outputs[i].data == value->data)
      continue; // computed in place (place_buffers)
    if (attn_tensor_alloc_uninit(program->run_allocator, value->dtype, value->rank, value->dims,
                                 &out_outputs[i]) != ATTN_OK)
      return out_of_memory(program);
    size_t bytes = 0;
    if (attn_tensor_size_bytes(value, &bytes) && bytes)
      memcpy(out_outputs[i].data, value->data, bytes);
  }
  return ATTN_OK;
}

static attn_status run(attn_cpu_program *program, const attn_interp_args *args,
                       attn_tensor *out_outputs) {
  ATTN_RETURN_IF_ERROR(bind_inputs(program, args));
  ATTN_RETURN_IF_ERROR(place_buffers(program, out_outputs));
  ATTN_RETURN_IF_ERROR(bind_leaves(program, args));
  for (uint32_t i = 0; i < program->step_count; i++) {
    step *s = &program->steps[i];
    double start = seconds_now();
    ATTN_RETURN_IF_ERROR(run_step(program, s));
    s->run_seconds += seconds_now() - start;
    s->runs++;
    if (program->backend->options.guard_bands)
      ATTN_RETURN_IF_ERROR(check_guards(program, s));
  }
  return take_outputs(program, out_outputs);
}

attn_status attn_cpu_program_run(attn_cpu_program *program, const attn_interp_args *args,
                                 attn_allocator allocator, attn_diag *diag,
                                 attn_tensor *out_outputs) {
  const attn_graph *graph = program->graph;
  memset(out_outputs, 0, graph->output_count * sizeof(*out_outputs));
  program->run_allocator = allocator;
  program->run_diag = diag;
  memset(program->states, 0, graph->value_count * sizeof(*program->states));
  attn_status status = run(program, args, out_outputs);
  if (status != ATTN_OK)
    for (uint32_t i = 0; i < graph->output_count; i++)
      attn_tensor_free(allocator, &out_outputs[i]);
  for (uint32_t v = 1; v < graph->value_count; v++)
    release(program, v);
  return status;
}
