// The .attnx reader: checks the prefix, unpacks the protobuf header, converts it to an attn_plan
// in the artifact's arena, and binds every constant to its bytes. This file is where
// protobuf-c's conventions (NULL on a bad message, malloc-style allocators) meet ours.
#include "runtime/artifact/artifact.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "attnx.pb-c.h"
#include "runtime/artifact/format.h"
#include "runtime/base/arena.h"
#include "runtime/protobuf/allocator.h"
#include "runtime/tensor/safetensors.h"

uint64_t attn_artifact_checksum(const void *data, size_t size) {
  const unsigned char *bytes = data;
  uint64_t hash = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; i++) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

// An external weight file, opened once however many constants it holds.
typedef struct external_file {
  const char *name; // as the header names it
  attn_safetensors *file;
} external_file;

struct attn_artifact {
  attn_allocator allocator;
  attn_arena arena; // the plan's tables and strings, the names
  const char *name; // the path, or "<memory>": every message is at it
  const char *dir;  // where external files are looked for
  void *map;        // the mmap'd file, or NULL for a memory image
  size_t map_size;
  const unsigned char *data; // the data section
  size_t data_size;
  bool check_constants;
  external_file *externals;
  size_t external_count, external_capacity;
  attn_plan plan;
  attn_artifact_cpu_code cpu;
  const char *model_name;
};

static uint64_t load_u64(const unsigned char *bytes, size_t size) {
  uint64_t value = 0;
  for (size_t i = 0; i < size; i++)
    value |= (uint64_t)bytes[i] << (8 * i);
  return value;
}

static attn_status fail(const attn_artifact *artifact, attn_diag *diag, attn_status status,
                        const char *format, ...) ATTN_PRINTF(4, 5);

static attn_status fail(const attn_artifact *artifact, attn_diag *diag, attn_status status,
                        const char *format, ...) {
  va_list args;
  va_start(args, format);
  status = attn_diag_verror(diag, (attn_loc){artifact->name, 0, 0}, status, format, args);
  va_end(args);
  return status;
}

static attn_status out_of_memory(const attn_artifact *artifact, attn_diag *diag) {
  return fail(artifact, diag, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
}

// ---- conversion of the header to a plan ----

static char *copy_string(attn_artifact *artifact, const char *text) {
  return attn_arena_strdup(&artifact->arena, text ? text : "");
}

// A repeated field's count as a plan count: plans index with uint32.
static attn_status count_of(attn_artifact *artifact, attn_diag *diag, size_t count,
                            const char *what, uint32_t *out_count) {
  if (count > UINT32_MAX)
    return fail(artifact, diag, ATTN_ERROR_PARSE, "corrupt header: %zu %s", count, what);
  *out_count = (uint32_t)count;
  return ATTN_OK;
}

// An enum read from the file: values past the runtime's are stored as its count, which
// attn_plan_validate reports as unknown (a cast of an arbitrary uint32 would not be portable).
static uint32_t enum_value(uint32_t value, uint32_t count) {
  return value < count ? value : count;
}

// Copies `count` dims; a rank past ATTN_MAX_RANK is kept as the rank (validation refuses it)
// with only the first ATTN_MAX_RANK stored.
static uint32_t copy_dims(int64_t *to, const int64_t *from, size_t count) {
  size_t stored = count < ATTN_MAX_RANK ? count : ATTN_MAX_RANK;
  if (stored > 0)
    memcpy(to, from, stored * sizeof(int64_t));
  return count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
}

static attn_status convert_strings(attn_artifact *artifact, attn_diag *diag, char **strings,
                                   size_t count, const char *what, uint32_t *out_count,
                                   const char *const **out_strings) {
  ATTN_RETURN_IF_ERROR(count_of(artifact, diag, count, what, out_count));
  const char **copies = attn_arena_calloc(&artifact->arena, count, sizeof(*copies));
  if (count > 0 && !copies)
    return out_of_memory(artifact, diag);
  for (size_t i = 0; i < count; i++)
    if (!(copies[i] = copy_string(artifact, strings[i])))
      return out_of_memory(artifact, diag);
  *out_strings = copies;
  return ATTN_OK;
}

static attn_status convert_bindings(attn_artifact *artifact, attn_diag *diag,
                                    Attn__Attnx__Binding **bindings, size_t count, const char *what,
                                    uint32_t *out_count, const attn_plan_binding **out_bindings) {
  ATTN_RETURN_IF_ERROR(count_of(artifact, diag, count, what, out_count));
  attn_plan_binding *copies = attn_arena_calloc(&artifact->arena, count, sizeof(*copies));
  if (count > 0 && !copies)
    return out_of_memory(artifact, diag);
  for (size_t i = 0; i < count; i++) {
    if (!(copies[i].name = copy_string(artifact, bindings[i]->name)))
      return out_of_memory(artifact, diag);
    copies[i].value = bindings[i]->value;
  }
  *out_bindings = copies;
  return ATTN_OK;
}

static attn_status convert_operands(attn_artifact *artifact, attn_diag *diag,
                                    const uint32_t *operands, size_t count, uint32_t *out_count,
                                    const uint32_t **out_operands) {
  ATTN_RETURN_IF_ERROR(count_of(artifact, diag, count, "operands", out_count));
  uint32_t *copies = attn_arena_calloc(&artifact->arena, count, sizeof(*copies));
  if (count > 0 && !copies)
    return out_of_memory(artifact, diag);
  if (count > 0)
    memcpy(copies, operands, count * sizeof(*copies));
  *out_operands = copies;
  return ATTN_OK;
}

// The oneof case each step kind carries its parameters in; VIEW and HOST carry none.
static Attn__Attnx__Step__ParamsCase params_case_of(attn_plan_step_kind kind) {
  switch (kind) {
  case ATTN_PLAN_STEP_GEMM:
    return ATTN__ATTNX__STEP__PARAMS_GEMM;
  case ATTN_PLAN_STEP_ATTENTION:
    return ATTN__ATTNX__STEP__PARAMS_ATTENTION;
  case ATTN_PLAN_STEP_KERNEL:
    return ATTN__ATTNX__STEP__PARAMS_LOOP_NEST;
  case ATTN_PLAN_STEP_TOPK:
    return ATTN__ATTNX__STEP__PARAMS_TOPK;
  default:
    return ATTN__ATTNX__STEP__PARAMS__NOT_SET;
  }
}

static attn_status convert_step(attn_artifact *artifact, attn_diag *diag, uint32_t index,
                                const Attn__Attnx__Step *from, attn_plan_step *to) {
  to->kind = enum_value(from->kind, ATTN_PLAN_STEP_KIND_COUNT);
  to->function = from->function;
  to->kernel = from->kernel;
  ATTN_RETURN_IF_ERROR(convert_operands(artifact, diag, from->inputs, from->n_inputs,
                                        &to->input_count, &to->inputs));
  ATTN_RETURN_IF_ERROR(convert_operands(artifact, diag, from->outputs, from->n_outputs,
                                        &to->output_count, &to->outputs));
  if (to->kind < ATTN_PLAN_STEP_KIND_COUNT && from->params_case != params_case_of(to->kind))
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "corrupt header: step %u (%s) does not carry its kind's parameters", index,
                attn_plan_step_kind_name(to->kind));
  switch (from->params_case) {
  case ATTN__ATTNX__STEP__PARAMS_GEMM:
    to->u.gemm.transpose_a = from->gemm->transpose_a;
    to->u.gemm.transpose_b = from->gemm->transpose_b;
    to->u.gemm.bias = from->gemm->bias;
    to->u.gemm.residual = from->gemm->residual;
    break;
  case ATTN__ATTNX__STEP__PARAMS_ATTENTION: {
    const Attn__Attnx__Attention *a = from->attention;
    attn_plan_attention *attention = &to->u.attention;
    attention->spec.value_dim = a->value_dim;
    attention->spec.norm = enum_value(a->norm, ATTN_CPU_ATTENTION_NORM_COUNT);
    attention->spec.lse = a->lse;
    attention->spec.dtype = enum_value(a->dtype, ATTN_CPU_ATTENTION_DTYPE_COUNT);
    attention->spec.vector_width = a->vector_width;
    // More captures than the spec holds: the count is kept for validation to refuse.
    attention->spec.capture_count =
        a->n_capture_ranks > UINT32_MAX ? UINT32_MAX : (uint32_t)a->n_capture_ranks;
    for (size_t c = 0; c < a->n_capture_ranks && c < ATTN_CPU_ATTENTION_MAX_CAPTURES; c++)
      attention->spec.capture_ranks[c] = a->capture_ranks[c];
    attention->has_mask = a->has_mask;
    attention->window = a->window;
    attention->sinks = a->sinks;
    attention->scale = a->scale;
    attention->sigmoid_bias = a->sigmoid_bias;
    break;
  }
  case ATTN__ATTNX__STEP__PARAMS_LOOP_NEST: {
    const Attn__Attnx__Kernel *k = from->loop_nest;
    attn_plan_kernel *kernel = &to->u.kernel;
    kernel->parallel_rank = k->parallel_rank;
    ATTN_RETURN_IF_ERROR(
        count_of(artifact, diag, k->n_gather_checks, "gather checks", &kernel->gather_check_count));
    attn_plan_gather_check *checks =
        attn_arena_calloc(&artifact->arena, k->n_gather_checks, sizeof(*checks));
    if (k->n_gather_checks > 0 && !checks)
      return out_of_memory(artifact, diag);
    for (size_t g = 0; g < k->n_gather_checks; g++) {
      checks[g].indices = k->gather_checks[g]->indices;
      checks[g].size = k->gather_checks[g]->size;
      checks[g].axis = k->gather_checks[g]->axis;
    }
    kernel->gather_checks = checks;
    break;
  }
  case ATTN__ATTNX__STEP__PARAMS_TOPK:
    to->u.topk.axis = from->topk->axis;
    to->u.topk.k = from->topk->k;
    to->u.topk.largest = from->topk->largest;
    break;
  default:
    break;
  }
  return ATTN_OK;
}

static attn_status convert_plan(attn_artifact *artifact, attn_diag *diag,
                                const Attn__Attnx__Plan *from) {
  attn_plan *plan = &artifact->plan;
  attn_arena *arena = &artifact->arena;
  ATTN_RETURN_IF_ERROR(convert_strings(artifact, diag, from->symbols, from->n_symbols, "symbols",
                                       &plan->symbol_count, &plan->symbols));

  ATTN_RETURN_IF_ERROR(count_of(artifact, diag, from->n_dims, "dims", &plan->dim_count));
  attn_plan_dim *dims = attn_arena_calloc(arena, from->n_dims, sizeof(*dims));
  if (from->n_dims > 0 && !dims)
    return out_of_memory(artifact, diag);
  for (size_t i = 0; i < from->n_dims; i++) {
    dims[i].kind = enum_value(from->dims[i]->kind, ATTN_PLAN_DIM_KIND_COUNT);
    dims[i].lhs = from->dims[i]->lhs;
    dims[i].rhs = from->dims[i]->rhs;
  }
  plan->dims = dims;

  ATTN_RETURN_IF_ERROR(count_of(artifact, diag, from->n_values, "values", &plan->value_count));
  attn_plan_value *values = attn_arena_calloc(arena, from->n_values, sizeof(*values));
  if (from->n_values > 0 && !values)
    return out_of_memory(artifact, diag);
  for (size_t i = 0; i < from->n_values; i++) {
    const Attn__Attnx__Value *v = from->values[i];
    values[i].dtype = enum_value(v->dtype, ATTN_DTYPE_COUNT);
    values[i].rank = copy_dims(values[i].dims, v->dims, v->n_dims);
    values[i].storage = enum_value(v->storage, ATTN_PLAN_STORAGE_COUNT);
    values[i].index = v->index;
    values[i].iota_axis = v->iota_axis;
    values[i].iota_start = v->iota_start;
  }
  plan->values = values;

  ATTN_RETURN_IF_ERROR(count_of(artifact, diag, from->n_buffers, "buffers", &plan->buffer_count));
  int64_t *buffers = attn_arena_calloc(arena, from->n_buffers, sizeof(*buffers));
  if (from->n_buffers > 0 && !buffers)
    return out_of_memory(artifact, diag);
  if (from->n_buffers > 0)
    memcpy(buffers, from->buffers, from->n_buffers * sizeof(*buffers));
  plan->buffers = buffers;

  ATTN_RETURN_IF_ERROR(convert_bindings(artifact, diag, from->inputs, from->n_inputs, "inputs",
                                        &plan->input_count, &plan->inputs));
  ATTN_RETURN_IF_ERROR(convert_bindings(artifact, diag, from->outputs, from->n_outputs, "outputs",
                                        &plan->output_count, &plan->outputs));

  ATTN_RETURN_IF_ERROR(
      count_of(artifact, diag, from->n_constants, "constants", &plan->constant_count));
  attn_plan_constant *constants = attn_arena_calloc(arena, from->n_constants, sizeof(*constants));
  if (from->n_constants > 0 && !constants)
    return out_of_memory(artifact, diag);
  for (size_t i = 0; i < from->n_constants; i++) {
    const Attn__Attnx__Constant *c = from->constants[i];
    if (!(constants[i].name = copy_string(artifact, c->name)))
      return out_of_memory(artifact, diag);
    constants[i].dtype = enum_value(c->dtype, ATTN_DTYPE_COUNT);
    constants[i].rank = copy_dims(constants[i].dims, c->dims, c->n_dims);
  }
  plan->constants = constants;

  ATTN_RETURN_IF_ERROR(convert_strings(artifact, diag, from->functions, from->n_functions,
                                       "functions", &plan->function_count, &plan->functions));

  ATTN_RETURN_IF_ERROR(count_of(artifact, diag, from->n_steps, "steps", &plan->step_count));
  attn_plan_step *steps = attn_arena_calloc(arena, from->n_steps, sizeof(*steps));
  if (from->n_steps > 0 && !steps)
    return out_of_memory(artifact, diag);
  plan->steps = steps;
  for (size_t i = 0; i < from->n_steps; i++)
    ATTN_RETURN_IF_ERROR(convert_step(artifact, diag, (uint32_t)i, from->steps[i], &steps[i]));
  return ATTN_OK;
}

// ---- blobs and constants ----

// The bytes of `blob`, checked to lie in the data section at an aligned offset and, when
// `check`, to match their checksum. `what` names the blob in messages.
static attn_status blob_bytes(attn_artifact *artifact, attn_diag *diag,
                              const Attn__Attnx__Blob *blob, bool check, const char *what,
                              const unsigned char **out_bytes) {
  if (blob->offset % ATTN_ARTIFACT_ALIGN != 0)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "corrupt header: %s starts at offset %llu of the data section, not a multiple of "
                "%d",
                what, (unsigned long long)blob->offset, ATTN_ARTIFACT_ALIGN);
  if (blob->offset > artifact->data_size || blob->size > artifact->data_size - blob->offset)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "%s (%llu bytes at offset %llu of the data section) lies outside the file (its "
                "data section is %zu bytes): truncated?",
                what, (unsigned long long)blob->size, (unsigned long long)blob->offset,
                artifact->data_size);
  const unsigned char *bytes = artifact->data + blob->offset;
  if (check && attn_artifact_checksum(bytes, (size_t)blob->size) != blob->checksum)
    return fail(artifact, diag, ATTN_ERROR_PARSE, "%s does not match its checksum: corrupt", what);
  *out_bytes = bytes;
  return ATTN_OK;
}

// A name is refused when it could leave the artifact's directory: absolute, or with a ".."
// component. Names with other '/' components (a subdirectory) are allowed.
static bool external_name_escapes(const char *name) {
  if (name[0] == '/')
    return true;
  for (const char *p = name; *p;) {
    const char *end = strchr(p, '/');
    size_t length = end ? (size_t)(end - p) : strlen(p);
    if (length == 2 && p[0] == '.' && p[1] == '.')
      return true;
    p += length;
    if (*p == '/')
      p++;
  }
  return false;
}

static attn_status external_file_get(attn_artifact *artifact, attn_diag *diag, const char *name,
                                     attn_safetensors **out_file) {
  for (size_t i = 0; i < artifact->external_count; i++) {
    if (strcmp(artifact->externals[i].name, name) == 0) {
      *out_file = artifact->externals[i].file;
      return ATTN_OK;
    }
  }
  void *items = artifact->externals;
  if (!attn_array_reserve(artifact->allocator, &items, &artifact->external_capacity,
                          artifact->external_count + 1, sizeof(external_file)))
    return out_of_memory(artifact, diag);
  artifact->externals = items;
  const char *path = attn_arena_printf(&artifact->arena, "%s/%s", artifact->dir, name);
  const char *name_copy = attn_arena_strdup(&artifact->arena, name);
  if (!path || !name_copy)
    return out_of_memory(artifact, diag);
  struct stat info;
  if (stat(path, &info) != 0 && errno == ENOENT)
    return fail(artifact, diag, ATTN_ERROR_NOT_FOUND, "its weights file '%s' does not exist", path);
  attn_safetensors *file;
  attn_status status = attn_safetensors_open(path, artifact->allocator, diag, &file);
  if (status != ATTN_OK)
    return fail(artifact, diag, status, "cannot read its weights file '%s'", path);
  artifact->externals[artifact->external_count++] = (external_file){name_copy, file};
  *out_file = file;
  return ATTN_OK;
}

static attn_status bind_external(attn_artifact *artifact, attn_diag *diag,
                                 attn_plan_constant *constant, const Attn__Attnx__External *ext,
                                 size_t size) {
  const char *file_name = ext->file ? ext->file : "";
  const char *tensor_name = ext->tensor ? ext->tensor : "";
  if (file_name[0] == '\0' || external_name_escapes(file_name))
    return fail(artifact, diag, ATTN_ERROR_INVALID_ARGUMENT,
                "constant '%s': weights file '%s' is not a name inside the artifact's directory",
                constant->name, file_name);
  attn_safetensors *file = NULL;
  ATTN_RETURN_IF_ERROR(external_file_get(artifact, diag, file_name, &file));
  attn_tensor tensor;
  if (!attn_safetensors_find(file, tensor_name, &tensor))
    return fail(artifact, diag, ATTN_ERROR_NOT_FOUND,
                "constant '%s': weights file '%s' has no tensor '%s'", constant->name, file_name,
                tensor_name);
  bool same_shape = tensor.dtype == constant->dtype && tensor.rank == constant->rank;
  for (uint32_t d = 0; same_shape && d < tensor.rank; d++)
    same_shape = tensor.dims[d] == constant->dims[d];
  if (!same_shape) {
    char want[128], got[128];
    attn_tensor_format_type(constant->dtype, constant->rank, constant->dims, want, sizeof(want));
    attn_tensor_format_type(tensor.dtype, tensor.rank, tensor.dims, got, sizeof(got));
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "constant '%s' is %s but tensor '%s' of '%s' is %s", constant->name, want,
                tensor_name, file_name, got);
  }
  if (ext->size != size)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "corrupt header: constant '%s' records %llu bytes, its type needs %zu",
                constant->name, (unsigned long long)ext->size, size);
  // Always checked: the file beside the artifact may have been replaced since it was written.
  if (attn_artifact_checksum(tensor.data, size) != ext->checksum)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "constant '%s': tensor '%s' of '%s' does not match the checksum the artifact "
                "recorded (a different or modified weights file)",
                constant->name, tensor_name, file_name);
  constant->data = tensor.data;
  return ATTN_OK;
}

static attn_status bind_constants(attn_artifact *artifact, attn_diag *diag,
                                  const Attn__Attnx__Plan *from) {
  for (size_t i = 0; i < from->n_constants; i++) {
    attn_plan_constant *constant = &artifact->plan.constants[i];
    const Attn__Attnx__Constant *c = from->constants[i];
    size_t size;
    attn_tensor type = {.dtype = constant->dtype, .rank = constant->rank};
    memcpy(type.dims, constant->dims, sizeof(type.dims));
    if (!attn_tensor_size_bytes(&type, &size))
      return fail(artifact, diag, ATTN_ERROR_PARSE, "corrupt header: constant '%s' is too large",
                  constant->name);
    if (c->source_case == ATTN__ATTNX__CONSTANT__SOURCE_EMBEDDED) {
      if (c->embedded->size != size)
        return fail(artifact, diag, ATTN_ERROR_PARSE,
                    "corrupt header: constant '%s' has %llu bytes, its type needs %zu",
                    constant->name, (unsigned long long)c->embedded->size, size);
      const char *what = attn_arena_printf(&artifact->arena, "constant '%s'", constant->name);
      if (!what)
        return out_of_memory(artifact, diag);
      const unsigned char *bytes;
      ATTN_RETURN_IF_ERROR(
          blob_bytes(artifact, diag, c->embedded, artifact->check_constants, what, &bytes));
      constant->data = bytes;
    } else if (c->source_case == ATTN__ATTNX__CONSTANT__SOURCE_EXTERNAL) {
      ATTN_RETURN_IF_ERROR(bind_external(artifact, diag, constant, c->external, size));
    } else {
      return fail(artifact, diag, ATTN_ERROR_PARSE, "corrupt header: constant '%s' has no data",
                  constant->name);
    }
  }
  return ATTN_OK;
}

static attn_status read_code(attn_artifact *artifact, attn_diag *diag,
                             const Attn__Attnx__Header *header) {
  attn_artifact_cpu_code *cpu = &artifact->cpu;
  const Attn__Attnx__CpuCode *from = header->cpu;
  cpu->target_triple = copy_string(artifact, from ? from->target_triple : NULL);
  cpu->cpu = copy_string(artifact, from ? from->cpu : NULL);
  cpu->features = copy_string(artifact, from ? from->features : NULL);
  if (!cpu->target_triple || !cpu->cpu || !cpu->features)
    return out_of_memory(artifact, diag);
  if (from) {
    cpu->needs_avx2 = from->needs_avx2;
    cpu->needs_fma = from->needs_fma;
    cpu->needs_avx512f = from->needs_avx512f;
    // The code is always checked: a flipped bit in it is a crash or a wrong result, and it is
    // small next to the weights.
    if (from->shared_object && from->shared_object->size > 0) {
      const unsigned char *bytes;
      ATTN_RETURN_IF_ERROR(
          blob_bytes(artifact, diag, from->shared_object, true, "the CPU code", &bytes));
      cpu->shared_object = bytes;
      cpu->shared_object_size = (size_t)from->shared_object->size;
    }
  }
  for (size_t i = 0; i < header->n_cuda; i++) {
    const unsigned char *bytes;
    if (header->cuda[i]->ptx)
      ATTN_RETURN_IF_ERROR(
          blob_bytes(artifact, diag, header->cuda[i]->ptx, true, "the CUDA code", &bytes));
  }
  return ATTN_OK;
}

// ---- the file ----

static bool magic_prefix_matches(const unsigned char *bytes, size_t size) {
  size_t n = size < ATTN_ARTIFACT_MAGIC_SIZE ? size : ATTN_ARTIFACT_MAGIC_SIZE;
  return memcmp(bytes, ATTN_ARTIFACT_MAGIC, n) == 0;
}

static attn_status load_header(attn_artifact *artifact, attn_diag *diag,
                               const Attn__Attnx__Header *header) {
  if (header->format_version != ATTN_ARTIFACT_FORMAT_VERSION)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "corrupt header: it says format %u, the file's prefix %d", header->format_version,
                ATTN_ARTIFACT_FORMAT_VERSION);
  if (!header->plan)
    return fail(artifact, diag, ATTN_ERROR_PARSE, "corrupt header: it has no plan");
  if (!(artifact->model_name = copy_string(artifact, header->model_name)))
    return out_of_memory(artifact, diag);
  ATTN_RETURN_IF_ERROR(convert_plan(artifact, diag, header->plan));
  attn_status status = attn_plan_validate(&artifact->plan, diag);
  if (status != ATTN_OK)
    return fail(artifact, diag, status, "its plan is invalid: %s", attn_diag_last_error(diag));
  ATTN_RETURN_IF_ERROR(read_code(artifact, diag, header));
  return bind_constants(artifact, diag, header->plan);
}

static attn_status load(attn_artifact *artifact, const unsigned char *bytes, size_t size,
                        attn_diag *diag) {
  if (!magic_prefix_matches(bytes, size))
    return fail(artifact, diag, ATTN_ERROR_PARSE, "not an attnc artifact (bad magic)");
  if (size < ATTN_ARTIFACT_PREFIX_SIZE)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "truncated: %zu bytes, less than the %d-byte prefix", size,
                ATTN_ARTIFACT_PREFIX_SIZE);
  uint32_t version = (uint32_t)load_u64(bytes + 8, 4);
  uint32_t flags = (uint32_t)load_u64(bytes + 12, 4);
  uint64_t header_size = load_u64(bytes + 16, 8);
  uint64_t header_checksum = load_u64(bytes + 24, 8);
  if (version > ATTN_ARTIFACT_FORMAT_VERSION)
    return fail(artifact, diag, ATTN_ERROR_UNSUPPORTED,
                "was written by a newer attnc (format %u; this runtime reads up to %d)", version,
                ATTN_ARTIFACT_FORMAT_VERSION);
  if (version == 0)
    return fail(artifact, diag, ATTN_ERROR_PARSE, "corrupt: format version 0");
  if (flags != 0)
    return fail(artifact, diag, ATTN_ERROR_UNSUPPORTED,
                "uses features this runtime does not know (flags 0x%x)", flags);
  size_t available = size - ATTN_ARTIFACT_PREFIX_SIZE;
  if (header_size > available)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "truncated: the header is %llu bytes, %zu follow the prefix",
                (unsigned long long)header_size, available);
  const unsigned char *header_bytes = bytes + ATTN_ARTIFACT_PREFIX_SIZE;
  if (attn_artifact_checksum(header_bytes, (size_t)header_size) != header_checksum)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "corrupt: the header does not match its checksum");
  size_t header_end = ATTN_ARTIFACT_PREFIX_SIZE + (size_t)header_size;
  size_t data_start =
      (header_end + ATTN_ARTIFACT_ALIGN - 1) / ATTN_ARTIFACT_ALIGN * ATTN_ARTIFACT_ALIGN;
  if (data_start > size)
    return fail(artifact, diag, ATTN_ERROR_PARSE,
                "truncated: %zu bytes, the data section starts at %zu", size, data_start);
  artifact->data = bytes + data_start;
  artifact->data_size = size - data_start;

  attn_pb_allocator pb;
  attn_pb_allocator_init(&pb, artifact->allocator);
  Attn__Attnx__Header *header =
      attn__attnx__header__unpack(&pb.base, (size_t)header_size, header_bytes);
  // protobuf-c says only NULL, for a malformed message and for no memory alike; the context
  // knows whether an allocation failed.
  if (!header && pb.failed)
    return out_of_memory(artifact, diag);
  if (!header)
    return fail(artifact, diag, ATTN_ERROR_PARSE, "corrupt: the header does not unpack");
  attn_status status = load_header(artifact, diag, header);
  attn__attnx__header__free_unpacked(header, &pb.base);
  return status;
}

static attn_artifact *create(const char *name, const char *dir,
                             const attn_artifact_open_options *options, attn_allocator allocator,
                             attn_diag *diag) {
  attn_artifact *artifact = attn_allocator_calloc(allocator, 1, sizeof(*artifact));
  if (!artifact) {
    attn_diag_error(diag, (attn_loc){name, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    return NULL;
  }
  artifact->allocator = allocator;
  attn_arena_init(&artifact->arena, allocator);
  artifact->check_constants = !(options && options->skip_constant_checksums);
  artifact->name = attn_arena_strdup(&artifact->arena, name);
  artifact->dir = attn_arena_strdup(&artifact->arena, dir);
  if (!artifact->name || !artifact->dir) {
    attn_diag_error(diag, (attn_loc){name, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    attn_artifact_close(artifact);
    return NULL;
  }
  return artifact;
}

attn_status attn_artifact_open_memory(const void *data, size_t size, const char *dir,
                                      const attn_artifact_open_options *options,
                                      attn_allocator allocator, attn_diag *diag,
                                      attn_artifact **out) {
  *out = NULL;
  attn_artifact *artifact = create("<memory>", dir ? dir : ".", options, allocator, diag);
  if (!artifact)
    return ATTN_ERROR_OUT_OF_MEMORY;
  attn_status status = load(artifact, data, size, diag);
  if (status != ATTN_OK) {
    attn_artifact_close(artifact);
    return status;
  }
  *out = artifact;
  return ATTN_OK;
}

// The directory part of `path` ("." for a bare name), in `buffer`.
static const char *dir_of(const char *path, char *buffer, size_t size) {
  const char *slash = strrchr(path, '/');
  if (!slash)
    return ".";
  if (slash == path)
    return "/";
  size_t length = (size_t)(slash - path);
  if (length >= size)
    return NULL;
  memcpy(buffer, path, length);
  buffer[length] = '\0';
  return buffer;
}

attn_status attn_artifact_open(const char *path, const attn_artifact_open_options *options,
                               attn_allocator allocator, attn_diag *diag, attn_artifact **out) {
  *out = NULL;
  attn_loc loc = {path, 0, 0};
  char dir_buffer[4096];
  const char *dir = dir_of(path, dir_buffer, sizeof(dir_buffer));
  if (!dir)
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "path too long");
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return attn_diag_error(diag, loc, errno == ENOENT ? ATTN_ERROR_NOT_FOUND : ATTN_ERROR_IO,
                           "cannot open: %s", strerror(errno));
  struct stat info;
  if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    close(fd);
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "not a regular file");
  }
  if ((uintmax_t)info.st_size > SIZE_MAX) {
    close(fd);
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "too large to map");
  }
  size_t size = (size_t)info.st_size;
  void *map = NULL;
  if (size > 0) {
    map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_error = errno;
    close(fd);
    if (map == MAP_FAILED)
      return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot map: %s", strerror(map_error));
  } else {
    close(fd);
  }
  attn_artifact *artifact = create(path, dir, options, allocator, diag);
  if (!artifact) {
    if (map)
      munmap(map, size);
    return ATTN_ERROR_OUT_OF_MEMORY;
  }
  artifact->map = map;
  artifact->map_size = size;
  static const unsigned char empty[1];
  attn_status status = load(artifact, map ? map : empty, size, diag);
  if (status != ATTN_OK) {
    attn_artifact_close(artifact);
    return status;
  }
  *out = artifact;
  return ATTN_OK;
}

void attn_artifact_close(attn_artifact *artifact) {
  if (!artifact)
    return;
  for (size_t i = 0; i < artifact->external_count; i++)
    attn_safetensors_close(artifact->externals[i].file);
  attn_allocator_free(artifact->allocator, artifact->externals,
                      artifact->external_capacity * sizeof(external_file));
  if (artifact->map)
    munmap(artifact->map, artifact->map_size);
  attn_arena_deinit(&artifact->arena);
  attn_allocator_free(artifact->allocator, artifact, sizeof(*artifact));
}

const attn_plan *attn_artifact_plan(const attn_artifact *artifact) {
  return &artifact->plan;
}

attn_artifact_cpu_code attn_artifact_cpu(const attn_artifact *artifact) {
  return artifact->cpu;
}

const char *attn_artifact_model_name(const attn_artifact *artifact) {
  return artifact->model_name;
}
