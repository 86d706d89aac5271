// The executor. A run binds the inputs and constants, places every buffer in one block (a graph
// output whose buffer is exactly its size straight in the tensor the caller receives), fills the
// iotas, and runs the steps in order, each on tensors placed and shaped for this run's symbols.
#include "runtime/exec/exec.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "runtime/cpu/topk.h"

enum { BUFFER_ALIGN = 64, GUARD_BYTES = 256, MAX_OPERANDS = 64, CHUNK_ELEMENTS = 16384 };

// The byte guard bands are filled with.
#define GUARD_PATTERN 0xA5

typedef enum value_state {
  VALUE_NONE,     // not available
  VALUE_BORROWED, // the caller's, the plan's, or a view
  VALUE_BUFFER,   // in the block (or in an output tensor of the caller)
  VALUE_OWNED,    // allocated by the run
} value_state;

struct attn_exec {
  const attn_plan *plan;
  attn_exec_fn *functions;
  attn_exec_options options;
  attn_allocator allocator;
  attn_arena arena;
  int64_t *symbols;
  int64_t *dim_values; // every dim expression for this run's symbols, where dim_known
  bool *dim_known;
  attn_tensor *values;
  uint8_t *states;
  size_t *buffer_offsets, *buffer_sizes;
  void **buffer_places;
  void *block;
  size_t block_size;
  // Constants bound in another dtype, converted once: the data they came from, the conversion.
  const void **constant_sources;
  attn_tensor *converted;
  double *step_seconds;
  uint64_t *step_runs;
  // The run in progress.
  attn_allocator run_allocator;
  attn_diag *diag;
};

attn_status attn_exec_create(const attn_plan *plan, const attn_exec_fn *functions,
                             const attn_exec_options *options, attn_allocator allocator,
                             attn_diag *diag, attn_exec **out_exec) {
  *out_exec = NULL;
  for (uint32_t s = 0; s < plan->step_count; s++) {
    attn_plan_step_kind kind = plan->steps[s].kind;
    bool calls = kind == ATTN_PLAN_STEP_GEMM || kind == ATTN_PLAN_STEP_ATTENTION ||
                 kind == ATTN_PLAN_STEP_KERNEL;
    if (calls && !functions[plan->steps[s].function])
      return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "step %u (k%u) calls '%s', which has no address", s,
                             plan->steps[s].kernel, plan->functions[plan->steps[s].function]);
  }
  attn_exec *exec = attn_allocator_calloc(allocator, 1, sizeof(*exec));
  if (!exec)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  exec->plan = plan;
  exec->allocator = allocator;
  if (options)
    exec->options = *options;
  attn_arena_init(&exec->arena, allocator);
  attn_arena *arena = &exec->arena;
  exec->functions = attn_arena_calloc(arena, plan->function_count + 1, sizeof(attn_exec_fn));
  exec->symbols = attn_arena_calloc(arena, plan->symbol_count + 1, sizeof(int64_t));
  exec->dim_values = attn_arena_calloc(arena, plan->dim_count + 1, sizeof(int64_t));
  exec->dim_known = attn_arena_calloc(arena, plan->dim_count + 1, sizeof(bool));
  exec->values = attn_arena_calloc(arena, plan->value_count + 1, sizeof(attn_tensor));
  exec->states = attn_arena_calloc(arena, plan->value_count + 1, sizeof(uint8_t));
  exec->buffer_offsets = attn_arena_calloc(arena, plan->buffer_count + 1, sizeof(size_t));
  exec->buffer_sizes = attn_arena_calloc(arena, plan->buffer_count + 1, sizeof(size_t));
  exec->buffer_places = attn_arena_calloc(arena, plan->buffer_count + 1, sizeof(void *));
  exec->constant_sources = attn_arena_calloc(arena, plan->constant_count + 1, sizeof(void *));
  exec->converted = attn_arena_calloc(arena, plan->constant_count + 1, sizeof(attn_tensor));
  exec->step_seconds = attn_arena_calloc(arena, plan->step_count + 1, sizeof(double));
  exec->step_runs = attn_arena_calloc(arena, plan->step_count + 1, sizeof(uint64_t));
  if (!exec->functions || !exec->symbols || !exec->dim_values || !exec->dim_known ||
      !exec->values || !exec->states || !exec->buffer_offsets || !exec->buffer_sizes ||
      !exec->buffer_places || !exec->constant_sources || !exec->converted || !exec->step_seconds ||
      !exec->step_runs) {
    attn_exec_destroy(exec);
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  if (plan->function_count)
    memcpy(exec->functions, functions, plan->function_count * sizeof(attn_exec_fn));
  *out_exec = exec;
  return ATTN_OK;
}

void attn_exec_release_constants(attn_exec *exec) {
  for (uint32_t c = 0; exec->converted && c < exec->plan->constant_count; c++) {
    attn_tensor_free(exec->allocator, &exec->converted[c]);
    exec->constant_sources[c] = NULL;
  }
}

void attn_exec_destroy(attn_exec *exec) {
  if (!exec)
    return;
  attn_exec_release_constants(exec);
  attn_allocator_free(exec->allocator, exec->block, exec->block_size);
  attn_arena_deinit(&exec->arena);
  attn_allocator_free(exec->allocator, exec, sizeof(*exec));
}

double attn_exec_step_seconds(const attn_exec *exec, uint32_t index) {
  return exec->step_seconds[index];
}

uint64_t attn_exec_step_runs(const attn_exec *exec, uint32_t index) {
  return exec->step_runs[index];
}

void attn_exec_reset_times(attn_exec *exec) {
  memset(exec->step_seconds, 0, exec->plan->step_count * sizeof(double));
  memset(exec->step_runs, 0, exec->plan->step_count * sizeof(uint64_t));
}

// ---- values ----------------------------------------------------------------------------------

static double seconds_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static attn_status out_of_memory(attn_exec *exec) {
  return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
}

// A dim's value for this run (false when it does not evaluate with the bound symbols).
static bool dim_value(const attn_exec *exec, int64_t dim, int64_t *out_value) {
  return attn_plan_dim_value(dim, exec->plan->dim_count, exec->dim_values, exec->dim_known,
                             out_value);
}

// The concrete dtype and dims of value `v` (data NULL).
static attn_status concrete_tensor(attn_exec *exec, uint32_t v, attn_tensor *out) {
  const attn_plan_value *value = &exec->plan->values[v];
  memset(out, 0, sizeof(*out));
  out->dtype = value->dtype;
  out->rank = value->rank;
  for (uint32_t d = 0; d < value->rank; d++)
    if (!dim_value(exec, value->dims[d], &out->dims[d]))
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "a dim of value %%%u does not evaluate with the bound symbols", v);
  return ATTN_OK;
}

static void release(attn_exec *exec, uint32_t v) {
  if (exec->states[v] == VALUE_OWNED)
    attn_tensor_free(exec->run_allocator, &exec->values[v]);
  exec->states[v] = VALUE_NONE;
  exec->values[v].data = NULL;
}

// Where a step writes value `v`: its buffer, or a tensor allocated for the run.
static attn_status output_value(attn_exec *exec, uint32_t v, attn_tensor **out_tensor) {
  attn_tensor *tensor = &exec->values[v];
  if (exec->states[v] != VALUE_BUFFER) {
    release(exec, v);
    attn_tensor shape;
    ATTN_RETURN_IF_ERROR(concrete_tensor(exec, v, &shape));
    if (attn_tensor_alloc_uninit(exec->run_allocator, shape.dtype, shape.rank, shape.dims,
                                 tensor) != ATTN_OK)
      return out_of_memory(exec);
    exec->states[v] = VALUE_OWNED;
  }
  *out_tensor = tensor;
  return ATTN_OK;
}

static attn_status input_value(attn_exec *exec, const attn_plan_step *step, uint32_t v,
                               const attn_tensor **out_tensor) {
  *out_tensor = &exec->values[v];
  if (exec->states[v] == VALUE_NONE)
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                           "step k%u (%s) reads value %%%u, which no step has computed",
                           step->kernel, attn_plan_step_kind_name(step->kind), v);
  return ATTN_OK;
}

// ---- binding ---------------------------------------------------------------------------------

static void format_dim(const attn_plan *plan, int64_t dim, int depth, char *buffer, size_t size) {
  if (depth > 4) {
    snprintf(buffer, size, "...");
    return;
  }
  if (dim >= 0) {
    snprintf(buffer, size, "%" PRId64, dim);
    return;
  }
  const attn_plan_dim *e = &plan->dims[-dim - 1];
  if (e->kind == ATTN_PLAN_DIM_SYMBOL) {
    snprintf(buffer, size, "%s", plan->symbols[e->lhs]);
    return;
  }
  static const char ops[] = {'?', '+', '-', '*', '/'};
  char lhs[64], rhs[64];
  format_dim(plan, e->lhs, depth + 1, lhs, sizeof(lhs));
  format_dim(plan, e->rhs, depth + 1, rhs, sizeof(rhs));
  // A deep expression is cut short; a message shows what fits.
  if (snprintf(buffer, size, "(%s %c %s)", lhs, ops[e->kind], rhs) >= (int)size && size > 4)
    memcpy(buffer + size - 4, "...", 4);
}

// "input 'x': expected i64[B, T] (B=2), got i64[2, 3, 4]", listing the bound symbols.
static attn_status input_mismatch(attn_exec *exec, const attn_tensor *given, uint32_t index,
                                  const char *detail) {
  const attn_plan *plan = exec->plan;
  const attn_plan_value *value = &plan->values[plan->inputs[index].value];
  char want[256], have[192];
  size_t used = (size_t)snprintf(want, sizeof(want), "%s[", attn_dtype_name(value->dtype));
  for (uint32_t d = 0; d < value->rank && used < sizeof(want); d++) {
    char dim[64];
    format_dim(plan, value->dims[d], 0, dim, sizeof(dim));
    used += (size_t)snprintf(want + used, sizeof(want) - used, "%s%s", d ? ", " : "", dim);
  }
  if (used < sizeof(want))
    used += (size_t)snprintf(want + used, sizeof(want) - used, "]");
  bool any = false;
  for (uint32_t d = 0; d < value->rank && used < sizeof(want); d++) {
    int64_t dim = value->dims[d];
    if (dim >= 0 || plan->dims[-dim - 1].kind != ATTN_PLAN_DIM_SYMBOL)
      continue;
    int64_t symbol = plan->dims[-dim - 1].lhs;
    if (exec->symbols[symbol] < 0)
      continue;
    used += (size_t)snprintf(want + used, sizeof(want) - used, "%s%s=%" PRId64, any ? ", " : " (",
                             plan->symbols[symbol], exec->symbols[symbol]);
    any = true;
  }
  if (any && used < sizeof(want))
    snprintf(want + used, sizeof(want) - used, ")");
  if ((unsigned)given->dtype < ATTN_DTYPE_COUNT && given->rank <= ATTN_MAX_RANK)
    attn_tensor_format_type(given->dtype, given->rank, given->dims, have, sizeof(have));
  else
    snprintf(have, sizeof(have), "an invalid tensor");
  return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                         "input '%s': expected %s, got %s%s", plan->inputs[index].name, want, have,
                         detail);
}

static bool is_int(attn_dtype dtype) {
  return dtype == ATTN_DTYPE_I64 || dtype == ATTN_DTYPE_I32 || dtype == ATTN_DTYPE_I8;
}

// Converts an integer tensor to another integer dtype, refusing elements that do not fit.
static attn_status convert_int_input(attn_exec *exec, uint32_t index, const attn_tensor *given,
                                     attn_dtype dtype, attn_tensor *out) {
  if (attn_tensor_alloc_uninit(exec->run_allocator, dtype, given->rank, given->dims, out) !=
      ATTN_OK)
    return out_of_memory(exec);
  int64_t count = attn_tensor_element_count(given);
  for (int64_t e = 0; e < count; e++) {
    int64_t v = given->dtype == ATTN_DTYPE_I64   ? ((const int64_t *)given->data)[e]
                : given->dtype == ATTN_DTYPE_I32 ? ((const int32_t *)given->data)[e]
                                                 : ((const int8_t *)given->data)[e];
    bool fits = dtype == ATTN_DTYPE_I64   ? true
                : dtype == ATTN_DTYPE_I32 ? v >= INT32_MIN && v <= INT32_MAX
                                          : v >= INT8_MIN && v <= INT8_MAX;
    if (!fits) {
      attn_tensor_free(exec->run_allocator, out);
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "input '%s': element %" PRId64 " = %" PRId64
                             " does not fit the declared %s",
                             exec->plan->inputs[index].name, e, v, attn_dtype_name(dtype));
    }
    if (dtype == ATTN_DTYPE_I64)
      ((int64_t *)out->data)[e] = v;
    else if (dtype == ATTN_DTYPE_I32)
      ((int32_t *)out->data)[e] = (int32_t)v;
    else
      ((int8_t *)out->data)[e] = (int8_t)v;
  }
  return ATTN_OK;
}

static attn_status bind_inputs(attn_exec *exec, const attn_exec_args *args) {
  const attn_plan *plan = exec->plan;
  for (uint32_t s = 0; s < plan->symbol_count; s++)
    exec->symbols[s] = args->symbols ? args->symbols[s] : -1;
  if (plan->input_count && !args->inputs)
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "the program has %u inputs but none were given", plan->input_count);
  // Symbols first, so that an input whose dims are expressions (T_past + T) is checked against
  // symbols a later input binds.
  for (uint32_t i = 0; i < plan->input_count; i++) {
    const attn_plan_value *value = &plan->values[plan->inputs[i].value];
    const attn_tensor *given = &args->inputs[i];
    for (uint32_t d = 0; d < value->rank && given->rank == value->rank; d++) {
      int64_t dim = value->dims[d];
      if (dim >= 0 || plan->dims[-dim - 1].kind != ATTN_PLAN_DIM_SYMBOL)
        continue;
      int64_t *symbol = &exec->symbols[plan->dims[-dim - 1].lhs];
      if (*symbol < 0 && given->dims[d] >= 0)
        *symbol = given->dims[d];
    }
  }
  attn_plan_dims_eval(plan, exec->symbols, exec->dim_values, exec->dim_known);
  for (uint32_t i = 0; i < plan->input_count; i++) {
    uint32_t v = plan->inputs[i].value;
    const attn_plan_value *value = &plan->values[v];
    const attn_tensor *given = &args->inputs[i];
    if ((unsigned)given->dtype >= ATTN_DTYPE_COUNT || given->rank != value->rank)
      return input_mismatch(exec, given, i, "");
    for (uint32_t d = 0; d < given->rank; d++) {
      int64_t want;
      if (!dim_value(exec, value->dims[d], &want))
        return input_mismatch(exec, given, i, " (a dim does not evaluate: a symbol is unbound)");
      if (given->dims[d] != want)
        return input_mismatch(exec, given, i, "");
    }
    bool both_int = is_int(given->dtype) && is_int(value->dtype);
    if (given->dtype != value->dtype && !both_int)
      return input_mismatch(exec, given, i, "");
    if (!given->data && attn_tensor_element_count(given) > 0)
      return input_mismatch(exec, given, i, " with no data");
    if (given->dtype == value->dtype) {
      exec->values[v] = *given;
      exec->states[v] = VALUE_BORROWED;
    } else {
      ATTN_RETURN_IF_ERROR(convert_int_input(exec, i, given, value->dtype, &exec->values[v]));
      exec->states[v] = VALUE_OWNED;
    }
  }
  return ATTN_OK;
}

// The constant `c` for this run: the caller's, converted once when its float dtype differs from
// the declared one, else the plan's.
static attn_status bind_constant(attn_exec *exec, const attn_exec_args *args, uint32_t c,
                                 attn_tensor *out) {
  const attn_plan_constant *constant = &exec->plan->constants[c];
  *out = (attn_tensor){constant->dtype, constant->rank, {0}, (void *)constant->data};
  memcpy(out->dims, constant->dims, constant->rank * sizeof(int64_t));
  const attn_tensor *given =
      args->constants && args->constants[c].data ? &args->constants[c] : NULL;
  if (!given) {
    if (!out->data && attn_tensor_element_count(out) > 0)
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "constant '%s' has no data", constant->name);
    return ATTN_OK;
  }
  bool same_shape = given->rank == constant->rank &&
                    memcmp(given->dims, constant->dims, constant->rank * sizeof(int64_t)) == 0;
  bool convertible = attn_dtype_is_float(given->dtype) && attn_dtype_is_float(constant->dtype);
  if (!same_shape || (given->dtype != constant->dtype && !convertible)) {
    char want[128], have[128];
    attn_tensor_format_type(constant->dtype, constant->rank, constant->dims, want, sizeof(want));
    attn_tensor_format_type(given->dtype, given->rank, given->dims, have, sizeof(have));
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "constant '%s': expected %s, got %s", constant->name, want, have);
  }
  if (given->dtype == constant->dtype) {
    out->data = given->data;
    return ATTN_OK;
  }
  if (exec->constant_sources[c] != given->data) {
    attn_tensor_free(exec->allocator, &exec->converted[c]);
    exec->constant_sources[c] = NULL;
    if (attn_tensor_alloc_uninit(exec->allocator, constant->dtype, constant->rank, constant->dims,
                                 &exec->converted[c]) != ATTN_OK)
      return out_of_memory(exec);
    attn_tensor_convert(given, &exec->converted[c]);
    exec->constant_sources[c] = given->data;
  }
  out->data = exec->converted[c].data;
  return ATTN_OK;
}

// Binds the constants and fills the iotas that steps read.
static attn_status bind_leaves(attn_exec *exec, const attn_exec_args *args) {
  const attn_plan *plan = exec->plan;
  for (uint32_t v = 0; v < plan->value_count; v++) {
    const attn_plan_value *value = &plan->values[v];
    if (value->storage == ATTN_PLAN_STORAGE_CONSTANT) {
      ATTN_RETURN_IF_ERROR(bind_constant(exec, args, value->index, &exec->values[v]));
      exec->states[v] = VALUE_BORROWED;
    } else if (value->storage == ATTN_PLAN_STORAGE_IOTA) {
      attn_tensor *tensor;
      int64_t start;
      ATTN_RETURN_IF_ERROR(output_value(exec, v, &tensor));
      if (!dim_value(exec, value->iota_start, &start))
        return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                               "the start of iota %%%u does not evaluate", v);
      int64_t inner = 1, count = attn_tensor_element_count(tensor);
      for (uint32_t d = value->iota_axis + 1; d < tensor->rank; d++)
        inner *= tensor->dims[d];
      int64_t size = tensor->dims[value->iota_axis];
      for (int64_t e = 0; e < count; e++) {
        int64_t index = start + (inner ? e / inner % size : 0);
        if (tensor->dtype == ATTN_DTYPE_I64)
          ((int64_t *)tensor->data)[e] = index;
        else
          attn_tensor_set_f64(tensor, e, (double)index);
      }
    }
  }
  return ATTN_OK;
}

// Lays the buffers out in one block, growing it when the symbols make them larger. A graph output
// whose buffer is exactly its size is computed straight into the tensor the caller receives (the
// memory plan never reuses an output's buffer); not with guard bands, which only surround the
// block.
static attn_status place_buffers(attn_exec *exec, attn_tensor *out_outputs) {
  const attn_plan *plan = exec->plan;
  size_t guard = exec->options.guard_bands ? GUARD_BYTES : 0;
  size_t total = guard;
  for (uint32_t b = 0; b < plan->buffer_count; b++) {
    int64_t bytes;
    if (!dim_value(exec, plan->buffers[b], &bytes) || bytes < 0)
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "the size of buffer b%u does not evaluate with the bound symbols", b);
    exec->buffer_offsets[b] = total;
    exec->buffer_sizes[b] = (size_t)bytes;
    size_t padded = ((size_t)bytes + BUFFER_ALIGN - 1) / BUFFER_ALIGN * BUFFER_ALIGN;
    if ((uint64_t)bytes > SIZE_MAX - BUFFER_ALIGN ||
        __builtin_add_overflow(total, padded, &total) ||
        __builtin_add_overflow(total, guard, &total))
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY,
                             "the buffers of this run add up to more than memory can hold");
  }
  if (total > exec->block_size) {
    attn_allocator_free(exec->allocator, exec->block, exec->block_size);
    exec->block_size = 0;
    exec->block = attn_allocator_alloc(exec->allocator, total);
    if (!exec->block)
      return out_of_memory(exec);
    exec->block_size = total;
  }
  if (guard)
    memset(exec->block, GUARD_PATTERN, total);
  for (uint32_t b = 0; b < plan->buffer_count; b++)
    exec->buffer_places[b] = (char *)exec->block + exec->buffer_offsets[b];
  for (uint32_t o = 0; o < plan->output_count && !guard; o++) {
    uint32_t v = plan->outputs[o].value;
    const attn_plan_value *value = &plan->values[v];
    if (value->storage != ATTN_PLAN_STORAGE_BUFFER ||
        exec->buffer_places[value->index] !=
            (char *)exec->block + exec->buffer_offsets[value->index])
      continue;
    attn_tensor shape;
    size_t bytes = 0;
    ATTN_RETURN_IF_ERROR(concrete_tensor(exec, v, &shape));
    if (!attn_tensor_size_bytes(&shape, &bytes) || bytes != exec->buffer_sizes[value->index] ||
        !bytes)
      continue;
    if (attn_tensor_alloc_uninit(exec->run_allocator, shape.dtype, shape.rank, shape.dims,
                                 &out_outputs[o]) != ATTN_OK)
      return out_of_memory(exec);
    exec->buffer_places[value->index] = out_outputs[o].data;
  }
  for (uint32_t v = 0; v < plan->value_count; v++) {
    const attn_plan_value *value = &plan->values[v];
    if (value->storage != ATTN_PLAN_STORAGE_BUFFER)
      continue;
    ATTN_RETURN_IF_ERROR(concrete_tensor(exec, v, &exec->values[v]));
    // The memory plan sized the buffer for its values; a plan that did not is refused here
    // rather than written past.
    size_t bytes;
    if (!attn_tensor_size_bytes(&exec->values[v], &bytes) ||
        bytes > exec->buffer_sizes[value->index])
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "value %%%u does not fit its buffer b%u (%zu bytes of %zu)", v,
                             value->index, bytes, exec->buffer_sizes[value->index]);
    exec->values[v].data = exec->buffer_places[value->index];
    exec->states[v] = VALUE_BUFFER;
  }
  return ATTN_OK;
}

// Checks that the bytes between and around the buffers still hold the guard pattern.
static attn_status check_guards(attn_exec *exec, const attn_plan_step *step) {
  const attn_plan *plan = exec->plan;
  const unsigned char *block = exec->block;
  size_t begin = 0;
  for (uint32_t b = 0; b <= plan->buffer_count; b++) {
    size_t end = b < plan->buffer_count ? exec->buffer_offsets[b] : exec->block_size;
    for (size_t i = begin; i < end; i++)
      if (block[i] != GUARD_PATTERN)
        return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                               "kernel k%u (run as %s) wrote outside its output buffers, %zu "
                               "bytes into the block",
                               step->kernel, attn_plan_step_kind_name(step->kind), i);
    if (b < plan->buffer_count)
      begin = exec->buffer_offsets[b] + exec->buffer_sizes[b];
  }
  return ATTN_OK;
}

// ---- steps -----------------------------------------------------------------------------------

static attn_status run_view(attn_exec *exec, const attn_plan_step *step) {
  const attn_tensor *in;
  ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[0], &in));
  uint32_t out = step->outputs[0];
  attn_tensor view;
  ATTN_RETURN_IF_ERROR(concrete_tensor(exec, out, &view));
  size_t in_bytes = 0, out_bytes = 0;
  if (!attn_tensor_size_bytes(in, &in_bytes) || !attn_tensor_size_bytes(&view, &out_bytes) ||
      in_bytes != out_bytes)
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "view k%u: %zu bytes cannot be viewed as %zu", step->kernel, in_bytes,
                           out_bytes);
  view.data = in->data;
  release(exec, out);
  exec->values[out] = view;
  exec->states[out] = VALUE_BORROWED;
  return ATTN_OK;
}

// The offsets (in elements) of every batch item of `operand` in a batched matmul whose output is
// `out`: the operand's batch dims broadcast against the output's, right-aligned.
static void batch_offsets(const attn_tensor *operand, const attn_tensor *out, int64_t batch,
                          int64_t *offsets) {
  uint32_t out_batch_rank = out->rank - 2, batch_rank = operand->rank - 2;
  int64_t matrix = operand->dims[operand->rank - 2] * operand->dims[operand->rank - 1];
  int64_t strides[ATTN_MAX_RANK] = {0};
  int64_t stride = matrix;
  for (uint32_t d = batch_rank; d-- > 0;) {
    uint32_t od = out_batch_rank - batch_rank + d;
    strides[od] = operand->dims[d] == 1 ? 0 : stride;
    stride *= operand->dims[d];
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
static attn_status run_batched_gemm(attn_exec *exec, attn_gemm_f32_fn fn, bool transpose_a,
                                    const attn_tensor *a, const attn_tensor *b,
                                    const attn_tensor *out, int64_t batch, attn_gemm_call *call) {
  int64_t m = call->m, n = call->n;
  size_t offsets_size = 2 * (size_t)batch * sizeof(int64_t);
  int64_t *offsets = attn_allocator_alloc(exec->run_allocator, offsets_size);
  if (!offsets)
    return out_of_memory(exec);
  batch_offsets(a, out, batch, offsets);
  batch_offsets(b, out, batch, offsets + batch);
  int64_t stride_a, stride_b;
  attn_status status = ATTN_OK;
  if (is_progression(offsets, batch, &stride_a) &&
      is_progression(offsets + batch, batch, &stride_b)) {
    if (stride_b == 0 && !transpose_a && stride_a == m * call->lda) {
      call->m = batch * m; // one weight for every item: one taller GEMM
    } else {
      call->batch = batch;
      call->batch_stride_a = stride_a;
      call->batch_stride_b = stride_b;
      call->batch_stride_c = m * n;
      call->batch_stride_residual = call->residual ? m * n : 0;
    }
    status = attn_cpu_gemm_launch(fn, call, exec->options.pool, exec->diag);
  } else {
    // Broadcast patterns no single stride describes: item by item.
    for (int64_t item = 0; item < batch && status == ATTN_OK; item++) {
      attn_gemm_call one = *call;
      one.a += offsets[item];
      one.b += offsets[batch + item];
      one.c += item * m * n;
      one.residual = call->residual ? call->residual + item * m * n : NULL;
      status = attn_cpu_gemm_launch(fn, &one, exec->options.pool, exec->diag);
    }
  }
  attn_allocator_free(exec->run_allocator, offsets, offsets_size);
  return status;
}

static attn_status run_gemm(attn_exec *exec, const attn_plan_step *step) {
  const attn_plan_gemm *gemm = &step->u.gemm;
  const attn_tensor *a, *b, *bias = NULL, *residual = NULL;
  ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[0], &a));
  ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[1], &b));
  uint32_t next = 2;
  if (gemm->bias)
    ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[next++], &bias));
  if (gemm->residual)
    ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[next++], &residual));
  attn_tensor *out;
  ATTN_RETURN_IF_ERROR(output_value(exec, step->outputs[0], &out));
  int64_t m = out->dims[out->rank - 2], n = out->dims[out->rank - 1];
  int64_t batch = 1;
  for (uint32_t d = 0; d + 2 < out->rank; d++)
    batch *= out->dims[d];
  attn_gemm_f32_fn fn = (attn_gemm_f32_fn)exec->functions[step->function];
  attn_gemm_call call = {
      .a = a->data,
      .b = b->data,
      .c = out->data,
      .m = m,
      .n = n,
      .k = gemm->transpose_a ? a->dims[a->rank - 2] : a->dims[a->rank - 1],
      .lda = a->dims[a->rank - 1],
      .ldb = b->dims[b->rank - 1],
      .ldc = n,
      .bias = bias ? bias->data : NULL,
      .residual = residual ? residual->data : NULL,
      .ldr = n,
      .transpose_b = gemm->transpose_b,
      .batch = 1,
  };
  if (batch == 0 || m == 0 || n == 0)
    return ATTN_OK; // an empty result: nothing to write (the launcher takes batch 0 as 1)
  if (batch == 1)
    return attn_cpu_gemm_launch(fn, &call, exec->options.pool, exec->diag);
  return run_batched_gemm(exec, fn, gemm->transpose_a, a, b, out, batch, &call);
}

static attn_status run_attention(attn_exec *exec, const attn_plan_step *step) {
  const attn_plan_attention *attention = &step->u.attention;
  const attn_tensor *q, *k, *v;
  ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[0], &q));
  ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[1], &k));
  ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[2], &v));
  attn_tensor *out, *lse = NULL;
  ATTN_RETURN_IF_ERROR(output_value(exec, step->outputs[0], &out));
  if (attention->spec.lse)
    ATTN_RETURN_IF_ERROR(output_value(exec, step->outputs[1], &lse));
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
      .window = attention->window,
      .sinks = attention->sinks,
      .scale = attention->scale,
      .sigmoid_bias = attention->sigmoid_bias,
  };
  uint32_t base = attention->has_mask ? 4 : 3;
  for (uint32_t c = 0; c < attention->spec.capture_count; c++) {
    const attn_tensor *capture;
    ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[base + c], &capture));
    args.captures[c] = capture->data;
    for (uint32_t d = 0; d < capture->rank && d < ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK; d++)
      args.capture_dims[c][d] = capture->dims[d];
  }
  if (attention->has_mask) {
    // The mask's dims, right-aligned to [B, H, Tq, Tk]; a dim of 1 broadcasts.
    const attn_tensor *mask;
    ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[3], &mask));
    args.mask = mask->data;
    int64_t stride = 1;
    for (uint32_t d = mask->rank; d-- > 0;) {
      args.mask_strides[4 - mask->rank + d] = mask->dims[d] == 1 ? 0 : stride;
      stride *= mask->dims[d];
    }
  }
  return attn_cpu_attention_launch((attn_attention_fn)exec->functions[step->function],
                                   &attention->spec, &args, exec->options.pool, exec->run_allocator,
                                   exec->diag);
}

typedef struct kernel_call {
  attn_cpu_kernel_fn fn;
  void *data[MAX_OPERANDS];
  int64_t dims[MAX_OPERANDS * ATTN_MAX_RANK];
} kernel_call;

static attn_status kernel_chunk(void *ctx, int64_t begin, int64_t end, uint32_t thread_index) {
  (void)thread_index;
  const kernel_call *call = ctx;
  call->fn(call->data, call->dims, begin, end);
  return ATTN_OK;
}

// The generated gather clamps indices; bad ones are reported first, as the compiler's reference
// evaluator reports them.
static attn_status check_gather(attn_exec *exec, const attn_plan_step *step,
                                const attn_plan_gather_check *check) {
  const attn_tensor *indices;
  ATTN_RETURN_IF_ERROR(input_value(exec, step, check->indices, &indices));
  int64_t dim;
  if (!dim_value(exec, check->size, &dim))
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "gather k%u: the axis size does not evaluate", step->kernel);
  int64_t count = attn_tensor_element_count(indices);
  for (int64_t i = 0; i < count; i++) {
    int64_t index = indices->dtype == ATTN_DTYPE_I64   ? ((const int64_t *)indices->data)[i]
                    : indices->dtype == ATTN_DTYPE_I32 ? ((const int32_t *)indices->data)[i]
                                                       : (int64_t)attn_tensor_get_f64(indices, i);
    if (index < -dim || index >= dim)
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                             "gather: index %" PRId64 " (element %" PRId64
                             " of the indices) is out of range for axis %" PRId64
                             " of size %" PRId64,
                             index, i, check->axis, dim);
  }
  return ATTN_OK;
}

static attn_status run_kernel(attn_exec *exec, const attn_plan_step *step) {
  uint32_t operands = step->input_count + step->output_count;
  if (operands > MAX_OPERANDS)
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                           "kernel k%u has %u operands; the executor passes at most %d",
                           step->kernel, operands, MAX_OPERANDS);
  kernel_call call = {.fn = (attn_cpu_kernel_fn)exec->functions[step->function]};
  uint32_t dim_count = 0;
  for (uint32_t i = 0; i < operands; i++) {
    attn_tensor *tensor = NULL;
    if (i < step->input_count)
      ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[i], (const attn_tensor **)&tensor));
    else
      ATTN_RETURN_IF_ERROR(output_value(exec, step->outputs[i - step->input_count], &tensor));
    call.data[i] = tensor->data;
    for (uint32_t d = 0; d < tensor->rank; d++)
      call.dims[dim_count++] = tensor->dims[d];
  }
  for (uint32_t c = 0; c < step->u.kernel.gather_check_count; c++)
    ATTN_RETURN_IF_ERROR(check_gather(exec, step, &step->u.kernel.gather_checks[c]));
  const attn_tensor *first = &exec->values[step->outputs[0]];
  int64_t rows = 1;
  for (uint32_t d = 0; d < step->u.kernel.parallel_rank && d < first->rank; d++)
    rows *= first->dims[d];
  int64_t elements = attn_tensor_element_count(first);
  int64_t row_elements = rows > 0 ? elements / rows : 0;
  int64_t grain = row_elements > 0 ? CHUNK_ELEMENTS / row_elements : rows;
  return attn_pool_parallel_for(exec->options.pool, rows, grain < 1 ? 1 : grain, kernel_chunk,
                                &call);
}

static attn_status run_topk(attn_exec *exec, const attn_plan_step *step) {
  const attn_plan_topk *topk = &step->u.topk;
  const attn_tensor *x;
  ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[0], &x));
  int64_t outer = 1, inner = 1, n = x->dims[topk->axis];
  for (int64_t d = 0; d < topk->axis; d++)
    outer *= x->dims[d];
  for (uint32_t d = (uint32_t)topk->axis + 1; d < x->rank; d++)
    inner *= x->dims[d];
  if (topk->k > n)
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "topk: k = %" PRId64 " exceeds the %" PRId64
                           " elements of axis %" PRId64,
                           topk->k, n, topk->axis);
  attn_tensor *values, *indices;
  ATTN_RETURN_IF_ERROR(output_value(exec, step->outputs[0], &values));
  ATTN_RETURN_IF_ERROR(output_value(exec, step->outputs[1], &indices));
  return attn_cpu_topk_f32(x->data, outer, n, inner, topk->k, topk->largest, values->data,
                           indices->data, exec->options.pool, exec->run_allocator, exec->diag);
}

static attn_status run_host(attn_exec *exec, const attn_plan_step *step, uint32_t index) {
  if (!exec->options.host)
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                           "kernel k%u needs the compiler (a host step), which this program "
                           "does not have",
                           step->kernel);
  if (step->input_count > MAX_OPERANDS || step->output_count > MAX_OPERANDS)
    return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                           "kernel k%u has more than %d inputs or outputs", step->kernel,
                           MAX_OPERANDS);
  attn_tensor inputs[MAX_OPERANDS], outputs[MAX_OPERANDS];
  for (uint32_t i = 0; i < step->input_count; i++) {
    const attn_tensor *tensor = NULL;
    ATTN_RETURN_IF_ERROR(input_value(exec, step, step->inputs[i], &tensor));
    inputs[i] = *tensor;
  }
  for (uint32_t o = 0; o < step->output_count; o++) {
    attn_tensor *tensor;
    ATTN_RETURN_IF_ERROR(output_value(exec, step->outputs[o], &tensor));
    outputs[o] = *tensor;
  }
  return exec->options.host(exec->options.host_ctx, index, exec->symbols, inputs, outputs,
                            exec->run_allocator, exec->diag);
}

static attn_status run_step(attn_exec *exec, uint32_t index) {
  const attn_plan_step *step = &exec->plan->steps[index];
  switch (step->kind) {
  case ATTN_PLAN_STEP_VIEW:
    return run_view(exec, step);
  case ATTN_PLAN_STEP_GEMM:
    return run_gemm(exec, step);
  case ATTN_PLAN_STEP_ATTENTION:
    return run_attention(exec, step);
  case ATTN_PLAN_STEP_KERNEL:
    return run_kernel(exec, step);
  case ATTN_PLAN_STEP_TOPK:
    return run_topk(exec, step);
  case ATTN_PLAN_STEP_HOST:
    return run_host(exec, step, index);
  case ATTN_PLAN_STEP_KIND_COUNT:
    break;
  }
  return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                         "step %u has an unknown kind", index);
}

static attn_status take_outputs(attn_exec *exec, attn_tensor *out_outputs) {
  const attn_plan *plan = exec->plan;
  for (uint32_t o = 0; o < plan->output_count; o++) {
    uint32_t v = plan->outputs[o].value;
    if (exec->states[v] == VALUE_NONE)
      return attn_diag_error(exec->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_GRAPH,
                             "output '%s' is not computed", plan->outputs[o].name);
    const attn_tensor *value = &exec->values[v];
    if (out_outputs[o].data && out_outputs[o].data == value->data)
      continue; // computed in place (place_buffers)
    if (exec->states[v] == VALUE_OWNED && !out_outputs[o].data) {
      out_outputs[o] = *value; // hand the run's own tensor over
      exec->states[v] = VALUE_NONE;
      exec->values[v].data = NULL;
      continue;
    }
    if (attn_tensor_alloc_uninit(exec->run_allocator, value->dtype, value->rank, value->dims,
                                 &out_outputs[o]) != ATTN_OK)
      return out_of_memory(exec);
    size_t bytes = 0;
    if (attn_tensor_size_bytes(value, &bytes) && bytes)
      memcpy(out_outputs[o].data, value->data, bytes);
  }
  return ATTN_OK;
}

static attn_status run(attn_exec *exec, const attn_exec_args *args, attn_tensor *out_outputs) {
  ATTN_RETURN_IF_ERROR(bind_inputs(exec, args));
  ATTN_RETURN_IF_ERROR(place_buffers(exec, out_outputs));
  ATTN_RETURN_IF_ERROR(bind_leaves(exec, args));
  for (uint32_t s = 0; s < exec->plan->step_count; s++) {
    double start = seconds_now();
    ATTN_RETURN_IF_ERROR(run_step(exec, s));
    exec->step_seconds[s] += seconds_now() - start;
    exec->step_runs[s]++;
    if (exec->options.guard_bands)
      ATTN_RETURN_IF_ERROR(check_guards(exec, &exec->plan->steps[s]));
  }
  return take_outputs(exec, out_outputs);
}

attn_status attn_exec_run(attn_exec *exec, const attn_exec_args *args, attn_allocator allocator,
                          attn_diag *diag, attn_tensor *out_outputs) {
  const attn_plan *plan = exec->plan;
  memset(out_outputs, 0, plan->output_count * sizeof(*out_outputs));
  exec->run_allocator = allocator;
  exec->diag = diag;
  memset(exec->states, 0, plan->value_count * sizeof(*exec->states));
  attn_status status = run(exec, args, out_outputs);
  if (status != ATTN_OK)
    for (uint32_t o = 0; o < plan->output_count; o++)
      attn_tensor_free(allocator, &out_outputs[o]);
  for (uint32_t v = 0; v < plan->value_count; v++)
    release(exec, v);
  return status;
}
