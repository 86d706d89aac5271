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
#include "runtime/exec/exec.h"

enum { MAX_NODE_INPUTS = 64, MAX_NODE_OUTPUTS = 256 };

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
  if (backend->options.keep_objects)
    attn_cpu_jit_keep_objects(backend->jit);
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

attn_cpu_backend_target attn_cpu_backend_get_target(const attn_cpu_backend *backend) {
  attn_cpu_features features = attn_cpu_jit_features(backend->jit);
  return (attn_cpu_backend_target){
      .triple = attn_cpu_jit_triple(backend->jit),
      .cpu = attn_cpu_jit_cpu_name(backend->jit),
      .features = attn_cpu_jit_feature_string(backend->jit),
      .needs_avx2 = features.avx2,
      .needs_fma = features.fma,
      .needs_avx512f = features.avx512f,
  };
}

attn_status attn_cpu_backend_object(const attn_cpu_backend *backend, const char *name,
                                    const void **out_data, size_t *out_size) {
  return attn_cpu_jit_object(backend->jit, name, out_data, out_size);
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

// Nodes of a kernel compiled through MLIR: a whole kernel, or the epilogue a GEMM could not fuse
// (then `io` starts after the GEMM's last fused node and reads its result).
typedef struct mlir_part {
  attn_kernel_io io;
  attn_cpu_mlir_kernel kernel;
  attn_cpu_kernel_fn fn;
  const char *function;
} mlir_part;

typedef struct step {
  uint32_t kernel;
  attn_cpu_step_impl impl;
  const char *function;
  gemm_plan gemm;
  attention_plan attention;
  mlir_part mlir; // the MLIR path's kernel, or a GEMM's unfused epilogue
  bool has_mlir_rest;
  double compile_seconds;
} step;

struct attn_cpu_program {
  attn_cpu_backend *backend;
  const attn_graph *graph;
  attn_arena arena;
  attn_kernel_io *io;
  uint32_t *use_counts;
  step *steps; // one per kernel: how it was matched and compiled
  uint32_t step_count;
  // The plan the graph lowers to, and its executor. Plan values are the graph's values, index
  // for index; plan buffers are the memory plan's (buffer 0, the sentinel, is empty).
  attn_plan plan;
  attn_plan_value *values;
  attn_plan_step *plan_steps;
  attn_plan_constant *constants;
  const char **functions;
  attn_exec_fn *addresses;
  uint32_t *step_sources;   // per plan step: its entry of `steps`
  uint32_t *host_begins;    // per plan step: the first node a host step evaluates
  uint32_t *constant_nodes; // per constant: its node
  attn_tensor *run_constants;
  attn_exec *exec;
  // The host steps' scratch: a tensor per graph value, and whether the step allocated it.
  attn_tensor *host_values;
  bool *host_owned;
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

// Compiles `part` (its io set) of the step's kernel through MLIR when the path covers it;
// *out_covered is false (and nothing is recorded) when it does not, so those nodes stay on the
// reference evaluator.
static attn_status compile_mlir(attn_cpu_program *program, step *s, mlir_part *part,
                                bool *out_covered) {
  attn_cpu_backend *backend = program->backend;
  *out_covered = false;
  attn_diag scratch;
  attn_diag_init(&scratch, backend->allocator);
  attn_status status = attn_cpu_mlir_describe(program->graph, s->kernel, &part->io,
                                              backend->vector_width, &scratch, &part->kernel);
  if (status != ATTN_OK && status != ATTN_ERROR_UNSUPPORTED)
    attn_diag_error(backend->diag, ATTN_LOC_NONE, status, "kernel k%u: %s", s->kernel,
                    attn_diag_last_error(&scratch));
  attn_diag_deinit(&scratch);
  if (status != ATTN_OK)
    return status == ATTN_ERROR_UNSUPPORTED ? ATTN_OK : status;
  if (!backend->mlir)
    ATTN_RETURN_IF_ERROR(attn_cpu_mlir_create(backend->diag, &backend->mlir));
  mlir_request request = {backend->mlir, program->graph, s->kernel, &part->io,
                          backend->vector_width};
  attn_cpu_jit_fn fn;
  double seconds;
  ATTN_RETURN_IF_ERROR(
      get_function(backend, part->kernel.name, generate_mlir, &request, &fn, &seconds));
  s->compile_seconds += seconds;
  part->fn = (attn_cpu_kernel_fn)fn;
  part->function = attn_arena_strdup(&program->arena, part->kernel.name);
  if (!part->function)
    return ATTN_ERROR_OUT_OF_MEMORY;
  *out_covered = true;
  return ATTN_OK;
}

// The unfused epilogue of a GEMM kernel through MLIR: its nodes from rest_begin read the kernel's
// inputs and the GEMM's result, and write the kernel's outputs but that result.
static attn_status compile_gemm_rest(attn_cpu_program *program, step *s) {
  const attn_kernel_io *io = &program->io[s->kernel];
  attn_value_id *inputs =
      attn_arena_calloc(&program->arena, io->input_count + 1, sizeof(attn_value_id));
  attn_value_id *outputs =
      attn_arena_calloc(&program->arena, io->output_count + 1, sizeof(attn_value_id));
  if (!inputs || !outputs)
    return ATTN_ERROR_OUT_OF_MEMORY;
  attn_kernel_io *rest = &s->mlir.io;
  *rest = *io;
  rest->first_node = s->gemm.rest_begin;
  rest->input_count = rest->output_count = 0;
  for (uint32_t i = 0; i < io->input_count; i++)
    inputs[rest->input_count++] = io->inputs[i];
  inputs[rest->input_count++] = s->gemm.out;
  for (uint32_t o = 0; o < io->output_count; o++)
    if (io->outputs[o].index != s->gemm.out.index)
      outputs[rest->output_count++] = io->outputs[o];
  rest->inputs = inputs;
  rest->outputs = outputs;
  return compile_mlir(program, s, &s->mlir, &s->has_mlir_rest);
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
      if (s->gemm.rest_begin)
        ATTN_RETURN_IF_ERROR(compile_gemm_rest(program, s));
    } else if (kind == ATTN_KERNEL_ATTENTION && match_attention(program, io, &s->attention)) {
      s->impl = ATTN_CPU_STEP_ATTENTION;
      ATTN_RETURN_IF_ERROR(compile_attention(program, s));
    } else if (kind == ATTN_KERNEL_TOPK && is_f32_topk(graph, io)) {
      s->impl = ATTN_CPU_STEP_TOPK;
    } else if (is_mlir_kind(kind)) {
      bool covered;
      s->mlir.io = *io;
      ATTN_RETURN_IF_ERROR(compile_mlir(program, s, &s->mlir, &covered));
      if (covered) {
        s->impl = ATTN_CPU_STEP_MLIR;
        s->function = s->mlir.function;
      }
    }
  }
  return ATTN_OK;
}

// ---- lowering to a plan ----------------------------------------------------------------------

static attn_status out_of_memory(attn_cpu_program *program) {
  return attn_diag_error(program->backend->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                         "out of memory");
}

// The plan's step `kind` for kernel step `source`, its operands copied into the arena.
static attn_status add_plan_step(attn_cpu_program *program, uint32_t source,
                                 attn_plan_step_kind kind, const attn_value_id *inputs,
                                 uint32_t input_count, const attn_value_id *outputs,
                                 uint32_t output_count, attn_plan_step **out_step) {
  uint32_t index = program->plan.step_count++;
  attn_plan_step *ps = &program->plan_steps[index];
  uint32_t *operands =
      attn_arena_calloc(&program->arena, input_count + output_count + 1, sizeof(uint32_t));
  if (!operands)
    return out_of_memory(program);
  for (uint32_t i = 0; i < input_count; i++)
    operands[i] = inputs[i].index;
  for (uint32_t o = 0; o < output_count; o++)
    operands[input_count + o] = outputs[o].index;
  ps->kind = kind;
  ps->kernel = program->steps[source].kernel;
  ps->inputs = operands;
  ps->input_count = input_count;
  ps->outputs = operands + input_count;
  ps->output_count = output_count;
  program->step_sources[index] = source;
  *out_step = ps;
  return ATTN_OK;
}

// The function index of `name`, added to the plan's list on first use.
static attn_status plan_function(attn_cpu_program *program, const char *name, attn_exec_fn address,
                                 uint32_t *out_index) {
  for (uint32_t f = 0; f < program->plan.function_count; f++)
    if (strcmp(program->functions[f], name) == 0) {
      *out_index = f;
      return ATTN_OK;
    }
  *out_index = program->plan.function_count++;
  program->functions[*out_index] = name;
  program->addresses[*out_index] = address;
  return ATTN_OK;
}

// A host step running the reference evaluator over the kernel's nodes from `begin`, reading
// `extra` (the fused GEMM's result) besides the kernel's inputs and writing its outputs but
// `skip` (which the GEMM wrote already).
static attn_status add_host_step(attn_cpu_program *program, uint32_t source, uint32_t begin,
                                 attn_value_id extra, attn_value_id skip) {
  const attn_kernel_io *io = &program->io[program->steps[source].kernel];
  attn_value_id *inputs =
      attn_arena_calloc(&program->arena, io->input_count + 1, sizeof(attn_value_id));
  attn_value_id *outputs =
      attn_arena_calloc(&program->arena, io->output_count + 1, sizeof(attn_value_id));
  if (!inputs || !outputs)
    return out_of_memory(program);
  uint32_t input_count = 0, output_count = 0;
  for (uint32_t i = 0; i < io->input_count; i++)
    inputs[input_count++] = io->inputs[i];
  if (extra.index)
    inputs[input_count++] = extra;
  for (uint32_t o = 0; o < io->output_count; o++)
    if (io->outputs[o].index != skip.index)
      outputs[output_count++] = io->outputs[o];
  attn_plan_step *ps;
  ATTN_RETURN_IF_ERROR(add_plan_step(program, source, ATTN_PLAN_STEP_HOST, inputs, input_count,
                                     outputs, output_count, &ps));
  program->host_begins[program->plan.step_count - 1] = begin;
  return ATTN_OK;
}

static attn_status add_mlir_step(attn_cpu_program *program, uint32_t source, const mlir_part *part);

static attn_status lower_gemm(attn_cpu_program *program, uint32_t source) {
  const step *s = &program->steps[source];
  const gemm_plan *gemm = &s->gemm;
  attn_value_id inputs[4] = {gemm->matmul->inputs[0], gemm->matmul->inputs[1]};
  uint32_t count = 2;
  if (gemm->spec.bias)
    inputs[count++] = gemm->bias;
  if (gemm->spec.residual)
    inputs[count++] = gemm->residual;
  attn_plan_step *ps;
  ATTN_RETURN_IF_ERROR(
      add_plan_step(program, source, ATTN_PLAN_STEP_GEMM, inputs, count, &gemm->out, 1, &ps));
  ps->u.gemm = (attn_plan_gemm){gemm->spec.transpose_a, gemm->spec.transpose_b, gemm->spec.bias,
                                gemm->spec.residual};
  ATTN_RETURN_IF_ERROR(plan_function(program, s->function, (attn_exec_fn)gemm->fn, &ps->function));
  if (s->has_mlir_rest)
    return add_mlir_step(program, source, &s->mlir);
  if (gemm->rest_begin)
    return add_host_step(program, source, gemm->rest_begin, gemm->out, gemm->out);
  return ATTN_OK;
}

static attn_status lower_attention(attn_cpu_program *program, uint32_t source) {
  const step *s = &program->steps[source];
  const attn_node *node = s->attention.node;
  const attn_attention_attrs *attrs = node->attrs;
  attn_plan_step *ps;
  ATTN_RETURN_IF_ERROR(add_plan_step(program, source, ATTN_PLAN_STEP_ATTENTION, node->inputs,
                                     node->input_count, node->outputs,
                                     s->attention.spec.lse ? 2 : 1, &ps));
  ps->u.attention = (attn_plan_attention){
      .spec = attn_attention_spec_launch(&s->attention.spec),
      .has_mask = attrs->has_mask,
      .window = attrs->window,
      .sinks = attrs->sinks,
      .scale = attrs->scale != 0 ? attrs->scale : 1.0 / sqrt((double)s->attention.spec.head_dim),
      .sigmoid_bias = attrs->sigmoid_bias,
  };
  return plan_function(program, s->function, (attn_exec_fn)s->attention.fn, &ps->function);
}

// Whether `value` is one of the kernel's inputs.
static bool is_kernel_input(const attn_kernel_io *io, attn_value_id value) {
  for (uint32_t i = 0; i < io->input_count; i++)
    if (io->inputs[i].index == value.index)
      return true;
  return false;
}

// A step running `part`'s MLIR kernel. Gathers whose data and indices come from outside the
// part have their indices checked first.
static attn_status add_mlir_step(attn_cpu_program *program, uint32_t source,
                                 const mlir_part *part) {
  const attn_graph *graph = program->graph;
  uint32_t kernel = program->steps[source].kernel;
  const attn_kernel_io *io = &part->io;
  attn_plan_step *ps;
  ATTN_RETURN_IF_ERROR(add_plan_step(program, source, ATTN_PLAN_STEP_KERNEL, io->inputs,
                                     io->input_count, io->outputs, io->output_count, &ps));
  ps->u.kernel.parallel_rank = part->kernel.parallel_rank;
  attn_plan_gather_check *checks = NULL;
  uint32_t count = 0;
  for (uint32_t n = io->first_node; n < io->end_node; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->kernel != kernel || node->op != ATTN_OP_GATHER ||
        !is_kernel_input(io, node->inputs[0]) || !is_kernel_input(io, node->inputs[1]))
      continue;
    attn_plan_gather_check *grown = attn_arena_calloc(&program->arena, count + 1, sizeof(*grown));
    if (!grown)
      return out_of_memory(program);
    if (count)
      memcpy(grown, checks, count * sizeof(*grown));
    const attn_axis_attrs *attrs = node->attrs;
    const attn_type *data = value_type(graph, node->inputs[0]);
    int64_t axis = attrs->axis < 0 ? attrs->axis + data->rank : attrs->axis;
    grown[count++] = (attn_plan_gather_check){node->inputs[1].index, data->dims[axis], axis};
    checks = grown;
  }
  ps->u.kernel.gather_checks = checks;
  ps->u.kernel.gather_check_count = count;
  return plan_function(program, part->function, (attn_exec_fn)part->fn, &ps->function);
}

static attn_status lower_topk(attn_cpu_program *program, uint32_t source) {
  const attn_node *node =
      &program->graph->nodes[program->io[program->steps[source].kernel].first_node];
  const attn_topk_attrs *attrs = node->attrs;
  uint32_t rank = value_type(program->graph, node->inputs[0])->rank;
  attn_plan_step *ps;
  ATTN_RETURN_IF_ERROR(
      add_plan_step(program, source, ATTN_PLAN_STEP_TOPK, node->inputs, 1, node->outputs, 2, &ps));
  ps->u.topk = (attn_plan_topk){attrs->axis < 0 ? attrs->axis + rank : attrs->axis, attrs->k,
                                attrs->largest};
  return ATTN_OK;
}

static attn_status lower_views(attn_cpu_program *program, uint32_t source) {
  const attn_graph *graph = program->graph;
  uint32_t kernel = program->steps[source].kernel;
  const attn_kernel_io *io = &program->io[kernel];
  for (uint32_t n = io->first_node; n < io->end_node; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->kernel != kernel)
      continue;
    attn_plan_step *ps;
    ATTN_RETURN_IF_ERROR(add_plan_step(program, source, ATTN_PLAN_STEP_VIEW, node->inputs, 1,
                                       node->outputs, 1, &ps));
    program->values[node->outputs[0].index].storage = ATTN_PLAN_STORAGE_VIEW;
  }
  return ATTN_OK;
}

static attn_status lower_steps(attn_cpu_program *program) {
  for (uint32_t source = 0; source < program->step_count; source++) {
    const step *s = &program->steps[source];
    switch (s->impl) {
    case ATTN_CPU_STEP_VIEW:
      ATTN_RETURN_IF_ERROR(lower_views(program, source));
      break;
    case ATTN_CPU_STEP_GEMM:
      ATTN_RETURN_IF_ERROR(lower_gemm(program, source));
      break;
    case ATTN_CPU_STEP_ATTENTION:
      ATTN_RETURN_IF_ERROR(lower_attention(program, source));
      break;
    case ATTN_CPU_STEP_MLIR:
      ATTN_RETURN_IF_ERROR(add_mlir_step(program, source, &s->mlir));
      break;
    case ATTN_CPU_STEP_TOPK:
      ATTN_RETURN_IF_ERROR(lower_topk(program, source));
      break;
    case ATTN_CPU_STEP_REFERENCE:
    case ATTN_CPU_STEP_IMPL_COUNT:
      if (program->io[s->kernel].first_node)
        ATTN_RETURN_IF_ERROR(add_host_step(program, source, program->io[s->kernel].first_node,
                                           (attn_value_id){0}, (attn_value_id){0}));
      break;
    }
  }
  return ATTN_OK;
}

// The values: inputs, constants (weights and literals), iotas, buffers; the rest are written by
// the steps into tensors of their own.
static attn_status lower_values(attn_cpu_program *program) {
  const attn_graph *graph = program->graph;
  for (uint32_t v = 1; v < graph->value_count; v++) {
    const attn_type *type = &graph->values[v].type;
    attn_plan_value *value = &program->values[v];
    value->dtype = type->dtype;
    value->rank = type->rank;
    memcpy(value->dims, type->dims, type->rank * sizeof(int64_t));
    uint32_t b = graph->values[v].buffer;
    if (value->storage == ATTN_PLAN_STORAGE_VIEW)
      continue;
    value->storage = ATTN_PLAN_STORAGE_TEMP;
    if (b && b < graph->buffer_count && attn_value_producer(graph, (attn_value_id){v})) {
      value->storage = ATTN_PLAN_STORAGE_BUFFER;
      value->index = b;
    }
  }
  for (uint32_t i = 0; i < graph->input_count; i++) {
    attn_plan_value *value = &program->values[graph->inputs[i].index];
    value->storage = ATTN_PLAN_STORAGE_INPUT;
    value->index = i;
  }
  for (uint32_t n = 1; n < graph->node_count; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || !(attn_op_get_info(node->op)->flags & ATTN_OP_LEAF) ||
        program->use_counts[node->outputs[0].index] == 0)
      continue;
    uint32_t v = node->outputs[0].index;
    attn_plan_value *value = &program->values[v];
    if (node->op == ATTN_OP_IOTA) {
      const attn_iota_attrs *attrs = node->attrs;
      value->storage = ATTN_PLAN_STORAGE_IOTA;
      value->iota_axis = (uint32_t)attrs->axis;
      value->iota_start = attrs->start;
      continue;
    }
    const attn_type *type = &graph->values[v].type;
    for (uint32_t d = 0; d < type->rank; d++)
      if (!attn_dim_is_constant(type->dims[d]))
        return attn_diag_error(program->backend->diag, node->loc, ATTN_ERROR_UNSUPPORTED,
                               "%s: a symbolic shape is not supported for a leaf",
                               attn_op_get_info(node->op)->name);
    uint32_t c = program->plan.constant_count++;
    attn_plan_constant *constant = &program->constants[c];
    constant->dtype = type->dtype;
    constant->rank = type->rank;
    memcpy(constant->dims, type->dims, type->rank * sizeof(int64_t));
    if (node->op == ATTN_OP_WEIGHT) {
      const attn_weight_attrs *attrs = node->attrs;
      constant->name = attrs->name_count ? attrs->names[0] : graph->values[v].name;
    } else {
      const attn_constant_attrs *attrs = node->attrs;
      constant->name = graph->values[v].name ? graph->values[v].name : "constant";
      constant->data = attrs->data;
    }
    program->constant_nodes[c] = n;
    value->storage = ATTN_PLAN_STORAGE_CONSTANT;
    value->index = c;
  }
  return ATTN_OK;
}

static attn_status lower(attn_cpu_program *program) {
  const attn_graph *graph = program->graph;
  attn_arena *arena = &program->arena;
  attn_plan *plan = &program->plan;
  uint32_t max_steps = graph->node_count + 2 * graph->kernel_count + 1;
  program->values = attn_arena_calloc(arena, graph->value_count + 1, sizeof(attn_plan_value));
  program->plan_steps = attn_arena_calloc(arena, max_steps, sizeof(attn_plan_step));
  program->step_sources = attn_arena_calloc(arena, max_steps, sizeof(uint32_t));
  program->host_begins = attn_arena_calloc(arena, max_steps, sizeof(uint32_t));
  program->constants = attn_arena_calloc(arena, graph->node_count + 1, sizeof(attn_plan_constant));
  program->constant_nodes = attn_arena_calloc(arena, graph->node_count + 1, sizeof(uint32_t));
  program->run_constants = attn_arena_calloc(arena, graph->node_count + 1, sizeof(attn_tensor));
  // A kernel calls at most two functions: a GEMM and the MLIR kernel of its unfused epilogue.
  program->functions = attn_arena_calloc(arena, 2 * graph->kernel_count + 1, sizeof(char *));
  program->addresses = attn_arena_calloc(arena, 2 * graph->kernel_count + 1, sizeof(attn_exec_fn));
  program->host_values = attn_arena_calloc(arena, graph->value_count + 1, sizeof(attn_tensor));
  program->host_owned = attn_arena_calloc(arena, graph->value_count + 1, sizeof(bool));
  const char **symbols = attn_arena_calloc(arena, graph->symbol_count + 1, sizeof(char *));
  attn_plan_dim *dims = attn_arena_calloc(arena, graph->dim_count + 1, sizeof(attn_plan_dim));
  int64_t *buffers = attn_arena_calloc(arena, graph->buffer_count + 1, sizeof(int64_t));
  attn_plan_binding *inputs = attn_arena_calloc(arena, graph->input_count + 1, sizeof(*inputs));
  attn_plan_binding *outputs = attn_arena_calloc(arena, graph->output_count + 1, sizeof(*outputs));
  if (!program->values || !program->plan_steps || !program->step_sources || !program->host_begins ||
      !program->constants || !program->constant_nodes || !program->run_constants ||
      !program->functions || !program->addresses || !program->host_values || !program->host_owned ||
      !symbols || !dims || !buffers || !inputs || !outputs)
    return out_of_memory(program);
  for (uint32_t s = 0; s < graph->symbol_count; s++)
    symbols[s] = attn_graph_symbol_name(graph, s);
  // The graph's dims are interned with operands first, as the plan requires.
  for (uint32_t d = 0; d < graph->dim_count; d++) {
    const attn_dim_expr *e = &graph->dims[d];
    dims[d].kind = e->kind == ATTN_DIM_SYMBOL ? ATTN_PLAN_DIM_SYMBOL
                   : e->kind == ATTN_DIM_ADD  ? ATTN_PLAN_DIM_ADD
                   : e->kind == ATTN_DIM_SUB  ? ATTN_PLAN_DIM_SUB
                   : e->kind == ATTN_DIM_MUL  ? ATTN_PLAN_DIM_MUL
                                              : ATTN_PLAN_DIM_DIV;
    dims[d].lhs = e->kind == ATTN_DIM_SYMBOL ? (int64_t)e->symbol : e->lhs;
    dims[d].rhs = e->kind == ATTN_DIM_SYMBOL ? 0 : e->rhs;
  }
  for (uint32_t b = 1; b < graph->buffer_count; b++)
    buffers[b] = graph->buffers[b].bytes;
  for (uint32_t i = 0; i < graph->input_count; i++)
    inputs[i] =
        (attn_plan_binding){graph->values[graph->inputs[i].index].name, graph->inputs[i].index};
  for (uint32_t o = 0; o < graph->output_count; o++)
    outputs[o] = (attn_plan_binding){graph->output_names[o], graph->outputs[o].index};
  ATTN_RETURN_IF_ERROR(lower_steps(program));
  ATTN_RETURN_IF_ERROR(lower_values(program));
  plan->symbol_count = graph->symbol_count;
  plan->dim_count = graph->dim_count;
  plan->value_count = graph->value_count;
  plan->buffer_count = graph->buffer_count;
  plan->input_count = graph->input_count;
  plan->output_count = graph->output_count;
  plan->symbols = symbols;
  plan->dims = dims;
  plan->values = program->values;
  plan->buffers = buffers;
  plan->inputs = inputs;
  plan->outputs = outputs;
  plan->constants = program->constants;
  plan->functions = program->functions;
  plan->steps = program->plan_steps;
  return attn_plan_validate(plan, program->backend->diag);
}

// ---- host steps: the reference evaluator -----------------------------------------------------

static void host_release(attn_cpu_program *program, uint32_t v, attn_allocator allocator) {
  if (program->host_owned[v])
    attn_tensor_free(allocator, &program->host_values[v]);
  program->host_owned[v] = false;
  program->host_values[v].data = NULL;
}

// Evaluates the nodes of the step's kernel from its first node with the reference evaluator,
// each into a tensor of its own, then copies the outputs into their places. Outputs are placed
// only at the end, because the memory plan may give an output the buffer of an input a later
// node of the kernel still reads.
static attn_status host_nodes(attn_cpu_program *program, const attn_plan_step *ps, uint32_t begin,
                              const int64_t *symbols, attn_allocator allocator, attn_diag *diag) {
  const attn_graph *graph = program->graph;
  const attn_kernel_io *io = &program->io[ps->kernel];
  for (uint32_t n = begin; n < io->end_node; n++) {
    const attn_node *node = &graph->nodes[n];
    if (node->is_dead || node->kernel != ps->kernel)
      continue;
    if (node->input_count > MAX_NODE_INPUTS || node->output_count > MAX_NODE_OUTPUTS)
      return attn_diag_error(diag, node->loc, ATTN_ERROR_UNSUPPORTED,
                             "%s: too many inputs or outputs", attn_op_get_info(node->op)->name);
    attn_tensor inputs[MAX_NODE_INPUTS], outputs[MAX_NODE_OUTPUTS];
    for (uint32_t i = 0; i < node->input_count; i++) {
      uint32_t v = node->inputs[i].index;
      const attn_node *producer = &graph->nodes[graph->values[v].producer.index];
      if (!program->host_values[v].data && producer->op == ATTN_OP_IOTA) {
        // Iotas are computed by the kernels that read them.
        bool is_borrowed;
        ATTN_RETURN_IF_ERROR(attn_interp_eval_node(graph, graph->values[v].producer, NULL, symbols,
                                                   NULL, allocator, diag, &program->host_values[v],
                                                   &is_borrowed));
        program->host_owned[v] = !is_borrowed;
      }
      inputs[i] = program->host_values[v];
    }
    bool is_borrowed;
    ATTN_RETURN_IF_ERROR(attn_interp_eval_node(graph, (attn_node_id){n}, inputs, symbols, NULL,
                                               allocator, diag, outputs, &is_borrowed));
    for (uint32_t o = 0; o < node->output_count; o++) {
      uint32_t v = node->outputs[o].index;
      host_release(program, v, allocator);
      program->host_values[v] = outputs[o];
      program->host_owned[v] = !is_borrowed;
    }
  }
  return ATTN_OK;
}

static attn_status run_host_step(void *ctx, uint32_t step_index, const int64_t *symbols,
                                 const attn_tensor *inputs, attn_tensor *outputs,
                                 attn_allocator allocator, attn_diag *diag) {
  attn_cpu_program *program = ctx;
  const attn_plan_step *ps = &program->plan_steps[step_index];
  for (uint32_t i = 0; i < ps->input_count; i++)
    program->host_values[ps->inputs[i]] = inputs[i];
  attn_status status =
      host_nodes(program, ps, program->host_begins[step_index], symbols, allocator, diag);
  for (uint32_t o = 0; o < ps->output_count && status == ATTN_OK; o++) {
    const attn_tensor *result = &program->host_values[ps->outputs[o]];
    size_t bytes = 0, place = 0;
    if (!attn_tensor_size_bytes(result, &bytes) || !attn_tensor_size_bytes(&outputs[o], &place) ||
        bytes != place || (bytes && !result->data))
      status = attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                               "kernel k%u: the reference result of value %%%u does not fit its "
                               "place",
                               ps->kernel, ps->outputs[o]);
    else if (bytes)
      memmove(outputs[o].data, result->data, bytes);
  }
  const attn_graph *graph = program->graph;
  for (uint32_t v = 0; v < graph->value_count; v++)
    host_release(program, v, allocator);
  return status;
}

// ---- programs --------------------------------------------------------------------------------

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
    if (!program->steps)
      status = ATTN_ERROR_OUT_OF_MEMORY;
  }
  if (status == ATTN_ERROR_OUT_OF_MEMORY)
    attn_diag_error(diag, ATTN_LOC_NONE, status, "out of memory");
  if (status == ATTN_OK)
    status = compile_steps(program);
  if (status == ATTN_OK)
    status = lower(program);
  if (status == ATTN_OK) {
    attn_exec_options options = {
        .pool = backend->pool,
        .host = run_host_step,
        .host_ctx = program,
        .guard_bands = backend->options.guard_bands,
    };
    status = attn_exec_create(&program->plan, program->addresses, &options, backend->allocator,
                              diag, &program->exec);
  }
  if (status != ATTN_OK) {
    attn_cpu_program_destroy(program);
    return status;
  }
  *out_program = program;
  return ATTN_OK;
}

void attn_cpu_program_release_weights(attn_cpu_program *program) {
  attn_exec_release_constants(program->exec);
}

void attn_cpu_program_destroy(attn_cpu_program *program) {
  if (!program)
    return;
  attn_exec_destroy(program->exec);
  attn_allocator allocator = program->backend->allocator;
  attn_arena_deinit(&program->arena);
  attn_allocator_free(allocator, program, sizeof(*program));
}

const attn_plan *attn_cpu_program_plan(const attn_cpu_program *program) {
  return &program->plan;
}

uint32_t attn_cpu_program_constant_node(const attn_cpu_program *program, uint32_t constant) {
  return program->constant_nodes[constant];
}

uint32_t attn_cpu_program_step_count(const attn_cpu_program *program) {
  return program->plan.step_count;
}

static attn_cpu_step_impl impl_of(attn_plan_step_kind kind) {
  switch (kind) {
  case ATTN_PLAN_STEP_VIEW:
    return ATTN_CPU_STEP_VIEW;
  case ATTN_PLAN_STEP_GEMM:
    return ATTN_CPU_STEP_GEMM;
  case ATTN_PLAN_STEP_ATTENTION:
    return ATTN_CPU_STEP_ATTENTION;
  case ATTN_PLAN_STEP_KERNEL:
    return ATTN_CPU_STEP_MLIR;
  case ATTN_PLAN_STEP_TOPK:
    return ATTN_CPU_STEP_TOPK;
  case ATTN_PLAN_STEP_HOST:
  case ATTN_PLAN_STEP_KIND_COUNT:
    break;
  }
  return ATTN_CPU_STEP_REFERENCE;
}

attn_cpu_step_info attn_cpu_program_step(const attn_cpu_program *program, uint32_t index) {
  const attn_plan_step *ps = &program->plan_steps[index];
  const step *s = &program->steps[program->step_sources[index]];
  bool calls = ps->kind == ATTN_PLAN_STEP_GEMM || ps->kind == ATTN_PLAN_STEP_ATTENTION ||
               ps->kind == ATTN_PLAN_STEP_KERNEL;
  // A kernel's compile time is counted once, on its first plan step.
  bool first = index == 0 || program->step_sources[index - 1] != program->step_sources[index];
  return (attn_cpu_step_info){
      .kernel = ps->kernel,
      .kind = program->graph->kernels[ps->kernel].kind,
      .impl = impl_of(ps->kind),
      .function = calls ? program->functions[ps->function] : NULL,
      .compile_seconds = first ? s->compile_seconds : 0,
      .run_seconds = attn_exec_step_seconds(program->exec, index),
      .runs = attn_exec_step_runs(program->exec, index),
  };
}

void attn_cpu_program_reset_times(attn_cpu_program *program) {
  attn_exec_reset_times(program->exec);
}

// ---- running ---------------------------------------------------------------------------------

attn_status attn_cpu_program_run(attn_cpu_program *program, const attn_interp_args *args,
                                 attn_allocator allocator, attn_diag *diag,
                                 attn_tensor *out_outputs) {
  // Weights come by node id; the plan takes them by constant.
  for (uint32_t c = 0; c < program->plan.constant_count; c++) {
    uint32_t node = program->constant_nodes[c];
    program->run_constants[c] = args->weights && program->graph->nodes[node].op == ATTN_OP_WEIGHT
                                    ? args->weights[node]
                                    : (attn_tensor){0};
  }
  attn_exec_args exec_args = {
      .inputs = args->inputs,
      .symbols = args->symbol_values,
      .constants = program->run_constants,
  };
  return attn_exec_run(program->exec, &exec_args, allocator, diag, out_outputs);
}
