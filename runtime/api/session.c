// The public runtime API (include/attn/runtime.h): models are an opened artifact and its loaded
// kernels; sessions are an executor of the model's plan with a pool of their own, the inputs
// bound to them and the outputs of their last run.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "attn/runtime.h"
#include "runtime/artifact/artifact.h"
#include "runtime/artifact/cpu_code.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/exec/exec.h"
#include "runtime/tensor/io.h"

struct attn_model {
  attn_allocator allocator;
  attn_artifact *artifact;
  attn_cpu_code *code; // NULL for a linked model
  attn_exec_fn *functions;
};

struct attn_session {
  attn_model *model;
  attn_pool *pool;
  attn_exec *exec;
  attn_diag diag;
  attn_tensor *inputs;
  bool *bound;
  attn_tensor *outputs;
  bool has_outputs;
  char error[512];
};

// Copies the last message of `diag` into `error` (when not NULL).
static void report(attn_error *error, const attn_diag *diag, attn_status status) {
  if (!error)
    return;
  attn_diag_format_last_error(diag, error->message, sizeof(error->message));
  if (!error->message[0])
    snprintf(error->message, sizeof(error->message), "%s", attn_status_name(status));
}

void attn_model_close(attn_model *model) {
  if (!model)
    return;
  attn_cpu_code_close(model->code);
  if (model->artifact)
    attn_allocator_free(model->allocator, model->functions,
                        (attn_artifact_plan(model->artifact)->function_count + 1) *
                            sizeof(attn_exec_fn));
  attn_artifact_close(model->artifact);
  attn_allocator_free(model->allocator, model, sizeof(*model));
}

// Resolves the plan's functions: in the linked table, else in the artifact's shared object.
static attn_status resolve_functions(attn_model *model, const attn_linked_model *linked,
                                     attn_diag *diag) {
  const attn_plan *plan = attn_artifact_plan(model->artifact);
  for (uint32_t s = 0; s < plan->step_count; s++)
    if (plan->steps[s].kind == ATTN_PLAN_STEP_HOST)
      return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                             "kernel k%u of the model needs the compiler's reference evaluator, "
                             "which a compiled model cannot carry",
                             plan->steps[s].kernel);
  model->functions =
      attn_allocator_calloc(model->allocator, plan->function_count + 1, sizeof(attn_exec_fn));
  if (!model->functions)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  if (!linked && plan->function_count) {
    attn_artifact_cpu_code cpu = attn_artifact_cpu(model->artifact);
    ATTN_RETURN_IF_ERROR(attn_cpu_code_load(&cpu, model->allocator, diag, &model->code));
  }
  for (uint32_t f = 0; f < plan->function_count; f++) {
    const char *name = plan->functions[f];
    if (!linked) {
      ATTN_RETURN_IF_ERROR(attn_cpu_code_symbol(model->code, name, diag, &model->functions[f]));
      continue;
    }
    for (size_t i = 0; i < linked->function_count && !model->functions[f]; i++)
      if (strcmp(linked->functions[i].name, name) == 0)
        model->functions[f] = linked->functions[i].address;
    if (!model->functions[f])
      return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_NOT_FOUND,
                             "the linked model lacks its kernel '%s'", name);
  }
  return ATTN_OK;
}

static attn_status open_model(const char *path, const attn_linked_model *linked,
                              const attn_model_options *options, attn_model **out_model,
                              attn_error *error) {
  *out_model = NULL;
  if (error)
    error->message[0] = '\0';
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_model *model = attn_allocator_calloc(allocator, 1, sizeof(*model));
  attn_status status = ATTN_OK;
  if (!model) {
    status = attn_diag_error(&diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  } else {
    model->allocator = allocator;
    attn_artifact_open_options open_options = {
        .skip_constant_checksums = options && options->skip_weight_checksums,
    };
    char program_dir[4096];
    const char *weights_dir = options ? options->weights_dir : NULL;
    if (linked && !weights_dir && attn_io_program_dir(program_dir, sizeof(program_dir)))
      weights_dir = program_dir;
    status = linked
                 ? attn_artifact_open_memory(linked->artifact, linked->artifact_size, weights_dir,
                                             &open_options, allocator, &diag, &model->artifact)
                 : attn_artifact_open(path, &open_options, allocator, &diag, &model->artifact);
    if (status == ATTN_OK)
      status = resolve_functions(model, linked, &diag);
  }
  if (status != ATTN_OK) {
    report(error, &diag, status);
    attn_model_close(model);
  } else {
    *out_model = model;
  }
  attn_diag_deinit(&diag);
  return status;
}

attn_status attn_model_open(const char *path, const attn_model_options *options,
                            attn_model **out_model, attn_error *error) {
  return open_model(path, NULL, options, out_model, error);
}

attn_status attn_model_open_linked(const attn_linked_model *linked,
                                   const attn_model_options *options, attn_model **out_model,
                                   attn_error *error) {
  return open_model(NULL, linked, options, out_model, error);
}

const char *attn_model_name(const attn_model *model) {
  return attn_artifact_model_name(model->artifact);
}

uint32_t attn_model_input_count(const attn_model *model) {
  return attn_artifact_plan(model->artifact)->input_count;
}

uint32_t attn_model_output_count(const attn_model *model) {
  return attn_artifact_plan(model->artifact)->output_count;
}

static attn_tensor_info binding_info(const attn_plan *plan, const attn_plan_binding *binding) {
  const attn_plan_value *value = &plan->values[binding->value];
  attn_tensor_info info = {.name = binding->name, .dtype = value->dtype, .rank = value->rank};
  for (uint32_t d = 0; d < value->rank; d++) {
    int64_t dim = value->dims[d];
    info.dims[d] = dim >= 0 ? dim : -1;
    if (dim < 0 && plan->dims[-dim - 1].kind == ATTN_PLAN_DIM_SYMBOL)
      info.dim_names[d] = plan->symbols[plan->dims[-dim - 1].lhs];
  }
  return info;
}

attn_tensor_info attn_model_input(const attn_model *model, uint32_t index) {
  const attn_plan *plan = attn_artifact_plan(model->artifact);
  return binding_info(plan, &plan->inputs[index]);
}

attn_tensor_info attn_model_output(const attn_model *model, uint32_t index) {
  const attn_plan *plan = attn_artifact_plan(model->artifact);
  return binding_info(plan, &plan->outputs[index]);
}

// ---- sessions --------------------------------------------------------------------------------

static void free_outputs(attn_session *session) {
  const attn_plan *plan = attn_artifact_plan(session->model->artifact);
  for (uint32_t o = 0; session->outputs && o < plan->output_count; o++)
    attn_tensor_free(session->model->allocator, &session->outputs[o]);
  session->has_outputs = false;
}

void attn_session_destroy(attn_session *session) {
  if (!session)
    return;
  attn_allocator allocator = session->model->allocator;
  const attn_plan *plan = attn_artifact_plan(session->model->artifact);
  free_outputs(session);
  attn_exec_destroy(session->exec);
  attn_pool_destroy(session->pool);
  attn_allocator_free(allocator, session->inputs, (plan->input_count + 1) * sizeof(attn_tensor));
  attn_allocator_free(allocator, session->bound, (plan->input_count + 1) * sizeof(bool));
  attn_allocator_free(allocator, session->outputs, (plan->output_count + 1) * sizeof(attn_tensor));
  attn_diag_deinit(&session->diag);
  attn_allocator_free(allocator, session, sizeof(*session));
}

attn_status attn_session_create(attn_model *model, const attn_session_options *options,
                                attn_session **out_session, attn_error *error) {
  *out_session = NULL;
  if (error)
    error->message[0] = '\0';
  attn_allocator allocator = model->allocator;
  const attn_plan *plan = attn_artifact_plan(model->artifact);
  attn_session *session = attn_allocator_calloc(allocator, 1, sizeof(*session));
  if (!session) {
    if (error)
      snprintf(error->message, sizeof(error->message), "out of memory");
    return ATTN_ERROR_OUT_OF_MEMORY;
  }
  session->model = model;
  attn_diag_init(&session->diag, allocator);
  session->inputs = attn_allocator_calloc(allocator, plan->input_count + 1, sizeof(attn_tensor));
  session->bound = attn_allocator_calloc(allocator, plan->input_count + 1, sizeof(bool));
  session->outputs = attn_allocator_calloc(allocator, plan->output_count + 1, sizeof(attn_tensor));
  attn_status status = ATTN_OK;
  if (!session->inputs || !session->bound || !session->outputs)
    status =
        attn_diag_error(&session->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  attn_pool_options pool_options = {.thread_count = options ? options->thread_count : 0};
  if (status == ATTN_OK)
    status = attn_pool_create(allocator, &session->diag, &pool_options, &session->pool);
  attn_exec_options exec_options = {.pool = session->pool};
  if (status == ATTN_OK)
    status = attn_exec_create(plan, model->functions, &exec_options, allocator, &session->diag,
                              &session->exec);
  if (status != ATTN_OK) {
    report(error, &session->diag, status);
    attn_session_destroy(session);
    return status;
  }
  *out_session = session;
  return ATTN_OK;
}

// Records a failure in the session and returns its status.
static attn_status fail(attn_session *session, attn_status status, const char *format, ...)
    ATTN_PRINTF(3, 4);
static attn_status fail(attn_session *session, attn_status status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(session->error, sizeof(session->error), format, args);
  va_end(args);
  return status;
}

attn_status attn_session_set_input(attn_session *session, const char *name, attn_dtype dtype,
                                   uint32_t rank, const int64_t *dims, const void *data) {
  session->error[0] = '\0';
  const attn_plan *plan = attn_artifact_plan(session->model->artifact);
  if (rank > ATTN_MAX_RANK || (unsigned)dtype >= ATTN_DTYPE_COUNT)
    return fail(session, ATTN_ERROR_INVALID_ARGUMENT,
                "input '%s': rank %u or dtype %d is out of range", name, rank, (int)dtype);
  for (uint32_t i = 0; i < plan->input_count; i++) {
    if (strcmp(plan->inputs[i].name, name) != 0)
      continue;
    attn_tensor *input = &session->inputs[i];
    *input = (attn_tensor){.dtype = dtype, .rank = rank, .data = (void *)data};
    if (rank)
      memcpy(input->dims, dims, rank * sizeof(int64_t));
    session->bound[i] = true;
    return ATTN_OK;
  }
  return fail(session, ATTN_ERROR_NOT_FOUND, "the model has no input '%s'", name);
}

attn_status attn_session_run(attn_session *session) {
  session->error[0] = '\0';
  const attn_plan *plan = attn_artifact_plan(session->model->artifact);
  free_outputs(session);
  for (uint32_t i = 0; i < plan->input_count; i++)
    if (!session->bound[i])
      return fail(session, ATTN_ERROR_INVALID_ARGUMENT, "input '%s' is not bound",
                  plan->inputs[i].name);
  attn_exec_args args = {.inputs = session->inputs};
  // A fresh sink per run: clearing one keeps its arena, which would grow with every failure.
  attn_diag_deinit(&session->diag);
  attn_diag_init(&session->diag, session->model->allocator);
  attn_status status = attn_exec_run(session->exec, &args, session->model->allocator,
                                     &session->diag, session->outputs);
  if (status != ATTN_OK) {
    attn_diag_format_last_error(&session->diag, session->error, sizeof(session->error));
    return status;
  }
  session->has_outputs = true;
  return ATTN_OK;
}

attn_status attn_session_output(attn_session *session, const char *name, attn_dtype *out_dtype,
                                uint32_t *out_rank, int64_t *out_dims, const void **out_data) {
  session->error[0] = '\0';
  const attn_plan *plan = attn_artifact_plan(session->model->artifact);
  for (uint32_t o = 0; o < plan->output_count; o++) {
    if (strcmp(plan->outputs[o].name, name) != 0)
      continue;
    if (!session->has_outputs)
      return fail(session, ATTN_ERROR_NOT_FOUND, "output '%s': the session has not run", name);
    const attn_tensor *output = &session->outputs[o];
    if (out_dtype)
      *out_dtype = output->dtype;
    if (out_rank)
      *out_rank = output->rank;
    if (out_dims)
      memcpy(out_dims, output->dims, output->rank * sizeof(int64_t));
    if (out_data)
      *out_data = output->data;
    return ATTN_OK;
  }
  return fail(session, ATTN_ERROR_NOT_FOUND, "the model has no output '%s'", name);
}

const char *attn_session_error(const attn_session *session) {
  return session->error;
}
