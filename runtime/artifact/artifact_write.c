// The .attnx writer: the plan and the code's description become the protobuf header, the
// constants and the shared object the data section (or, for the constants, a safetensors file
// beside the artifact). docs/artifact.md has the layout.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "attnx.pb-c.h"
#include "runtime/artifact/artifact.h"
#include "runtime/artifact/format.h"
#include "runtime/base/arena.h"
#include "runtime/tensor/safetensors.h"

// A blob of the data section, in the order they are written.
typedef struct pending_blob {
  const void *bytes;
  size_t size;
  uint64_t offset;
} pending_blob;

typedef struct writer {
  attn_arena arena; // every message and table of the header
  attn_diag *diag;
  const char *path;
  pending_blob *blobs;
  size_t blob_count, blob_capacity;
  uint64_t data_size;
} writer;

static attn_status out_of_memory(writer *w) {
  return attn_diag_error(w->diag, (attn_loc){w->path, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY,
                         "out of memory");
}

// protobuf-c's fields are not const; the writer only packs them, never writes through them.
static char *text(const char *value) {
  return (char *)(uintptr_t)(value ? value : "");
}

#define NEW_MESSAGE(w, type, init, out)                                                            \
  do {                                                                                             \
    (out) = attn_arena_alloc(&(w)->arena, sizeof(type), _Alignof(type));                           \
    if (!(out))                                                                                    \
      return out_of_memory(w);                                                                     \
    init(out);                                                                                     \
  } while (0)

// Places `size` bytes at the next aligned offset of the data section; bytes already placed (a
// weight two constants share: GPT-2's tied embedding and head) are referred to again, not copied.
static attn_status add_blob(writer *w, const void *bytes, size_t size, Attn__Attnx__Blob **out) {
  Attn__Attnx__Blob *blob;
  NEW_MESSAGE(w, Attn__Attnx__Blob, attn__attnx__blob__init, blob);
  for (size_t i = 0; i < w->blob_count && size > 0; i++) {
    if (w->blobs[i].bytes != bytes || w->blobs[i].size != size)
      continue;
    blob->offset = w->blobs[i].offset;
    blob->size = size;
    blob->checksum = attn_artifact_checksum(bytes, size);
    *out = blob;
    return ATTN_OK;
  }
  if (w->blob_count == w->blob_capacity) {
    size_t capacity = w->blob_capacity ? 2 * w->blob_capacity : 8;
    pending_blob *blobs =
        attn_arena_alloc(&w->arena, capacity * sizeof(*blobs), _Alignof(pending_blob));
    if (!blobs)
      return out_of_memory(w);
    if (w->blob_count > 0)
      memcpy(blobs, w->blobs, w->blob_count * sizeof(*blobs));
    w->blobs = blobs;
    w->blob_capacity = capacity;
  }
  uint64_t offset =
      (w->data_size + ATTN_ARTIFACT_ALIGN - 1) / ATTN_ARTIFACT_ALIGN * ATTN_ARTIFACT_ALIGN;
  w->blobs[w->blob_count++] = (pending_blob){bytes, size, offset};
  w->data_size = offset + size;
  blob->offset = offset;
  blob->size = size;
  blob->checksum = attn_artifact_checksum(bytes, size);
  *out = blob;
  return ATTN_OK;
}

// An array of `count` pointers to fresh messages of `type`.
#define NEW_MESSAGES(w, type, init, count, out)                                                    \
  do {                                                                                             \
    (out) = attn_arena_calloc(&(w)->arena, (count) ? (count) : 1, sizeof(type *));                 \
    if (!(out))                                                                                    \
      return out_of_memory(w);                                                                     \
    for (size_t i_ = 0; i_ < (count); i_++)                                                        \
      NEW_MESSAGE(w, type, init, (out)[i_]);                                                       \
  } while (0)

static attn_status copy_strings(writer *w, const char *const *strings, uint32_t count,
                                size_t *out_count, char ***out_strings) {
  char **copies = attn_arena_calloc(&w->arena, count ? count : 1, sizeof(*copies));
  if (!copies)
    return out_of_memory(w);
  for (uint32_t i = 0; i < count; i++)
    copies[i] = text(strings[i]);
  *out_count = count;
  *out_strings = copies;
  return ATTN_OK;
}

static attn_status copy_bindings(writer *w, const attn_plan_binding *bindings, uint32_t count,
                                 size_t *out_count, Attn__Attnx__Binding ***out_bindings) {
  Attn__Attnx__Binding **messages;
  NEW_MESSAGES(w, Attn__Attnx__Binding, attn__attnx__binding__init, count, messages);
  for (uint32_t i = 0; i < count; i++) {
    messages[i]->name = text(bindings[i].name);
    messages[i]->value = bindings[i].value;
  }
  *out_count = count;
  *out_bindings = messages;
  return ATTN_OK;
}

static attn_status copy_int64s(writer *w, const int64_t *values, uint32_t count, size_t *out_count,
                               int64_t **out_values) {
  int64_t *copies = attn_arena_calloc(&w->arena, count ? count : 1, sizeof(*copies));
  if (!copies)
    return out_of_memory(w);
  if (count > 0)
    memcpy(copies, values, count * sizeof(*copies));
  *out_count = count;
  *out_values = copies;
  return ATTN_OK;
}

static attn_status copy_operands(writer *w, const uint32_t *operands, uint32_t count,
                                 size_t *out_count, uint32_t **out_operands) {
  uint32_t *copies = attn_arena_calloc(&w->arena, count ? count : 1, sizeof(*copies));
  if (!copies)
    return out_of_memory(w);
  if (count > 0)
    memcpy(copies, operands, count * sizeof(*copies));
  *out_count = count;
  *out_operands = copies;
  return ATTN_OK;
}

static attn_status build_step(writer *w, const attn_plan_step *step, Attn__Attnx__Step *m) {
  m->kind = (uint32_t)step->kind;
  m->function = step->function;
  m->kernel = step->kernel;
  ATTN_RETURN_IF_ERROR(copy_operands(w, step->inputs, step->input_count, &m->n_inputs, &m->inputs));
  ATTN_RETURN_IF_ERROR(
      copy_operands(w, step->outputs, step->output_count, &m->n_outputs, &m->outputs));
  switch (step->kind) {
  case ATTN_PLAN_STEP_GEMM:
    m->params_case = ATTN__ATTNX__STEP__PARAMS_GEMM;
    NEW_MESSAGE(w, Attn__Attnx__Gemm, attn__attnx__gemm__init, m->gemm);
    m->gemm->transpose_a = step->u.gemm.transpose_a;
    m->gemm->transpose_b = step->u.gemm.transpose_b;
    m->gemm->bias = step->u.gemm.bias;
    m->gemm->residual = step->u.gemm.residual;
    break;
  case ATTN_PLAN_STEP_ATTENTION: {
    const attn_plan_attention *attention = &step->u.attention;
    const attn_cpu_attention_launch_spec *spec = &attention->spec;
    m->params_case = ATTN__ATTNX__STEP__PARAMS_ATTENTION;
    Attn__Attnx__Attention *a;
    NEW_MESSAGE(w, Attn__Attnx__Attention, attn__attnx__attention__init, a);
    a->value_dim = spec->value_dim;
    a->norm = (uint32_t)spec->norm;
    a->lse = spec->lse;
    a->dtype = (uint32_t)spec->dtype;
    a->vector_width = spec->vector_width;
    ATTN_RETURN_IF_ERROR(copy_operands(w, spec->capture_ranks, spec->capture_count,
                                       &a->n_capture_ranks, &a->capture_ranks));
    a->has_mask = attention->has_mask;
    a->window = attention->window;
    a->sinks = attention->sinks;
    a->scale = attention->scale;
    a->sigmoid_bias = attention->sigmoid_bias;
    m->attention = a;
    break;
  }
  case ATTN_PLAN_STEP_KERNEL: {
    const attn_plan_kernel *kernel = &step->u.kernel;
    m->params_case = ATTN__ATTNX__STEP__PARAMS_LOOP_NEST;
    Attn__Attnx__Kernel *k;
    NEW_MESSAGE(w, Attn__Attnx__Kernel, attn__attnx__kernel__init, k);
    k->parallel_rank = kernel->parallel_rank;
    NEW_MESSAGES(w, Attn__Attnx__GatherCheck, attn__attnx__gather_check__init,
                 kernel->gather_check_count, k->gather_checks);
    k->n_gather_checks = kernel->gather_check_count;
    for (uint32_t g = 0; g < kernel->gather_check_count; g++) {
      k->gather_checks[g]->indices = kernel->gather_checks[g].indices;
      k->gather_checks[g]->size = kernel->gather_checks[g].size;
      k->gather_checks[g]->axis = kernel->gather_checks[g].axis;
    }
    m->loop_nest = k;
    break;
  }
  case ATTN_PLAN_STEP_TOPK:
    m->params_case = ATTN__ATTNX__STEP__PARAMS_TOPK;
    NEW_MESSAGE(w, Attn__Attnx__TopK, attn__attnx__top_k__init, m->topk);
    m->topk->axis = step->u.topk.axis;
    m->topk->k = step->u.topk.k;
    m->topk->largest = step->u.topk.largest;
    break;
  default:
    break;
  }
  return ATTN_OK;
}

// The base name of `path`: what the artifact records of its weights file.
static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

static attn_status build_constants(writer *w, const attn_artifact_contents *contents,
                                   Attn__Attnx__Plan *m) {
  const attn_plan *plan = contents->plan;
  NEW_MESSAGES(w, Attn__Attnx__Constant, attn__attnx__constant__init, plan->constant_count,
               m->constants);
  m->n_constants = plan->constant_count;
  for (uint32_t i = 0; i < plan->constant_count; i++) {
    const attn_plan_constant *constant = &plan->constants[i];
    Attn__Attnx__Constant *c = m->constants[i];
    attn_tensor type = {.dtype = constant->dtype, .rank = constant->rank};
    memcpy(type.dims, constant->dims, sizeof(type.dims));
    size_t size;
    if (!attn_tensor_size_bytes(&type, &size))
      return attn_diag_error(w->diag, (attn_loc){w->path, 0, 0}, ATTN_ERROR_INVALID_ARGUMENT,
                             "constant '%s' is too large", constant->name);
    if (!constant->data && size > 0)
      return attn_diag_error(w->diag, (attn_loc){w->path, 0, 0}, ATTN_ERROR_INVALID_ARGUMENT,
                             "constant '%s' has no data bound", constant->name);
    c->name = text(constant->name);
    c->dtype = (uint32_t)constant->dtype;
    ATTN_RETURN_IF_ERROR(copy_int64s(w, constant->dims, constant->rank, &c->n_dims, &c->dims));
    if (contents->weights_file) {
      c->source_case = ATTN__ATTNX__CONSTANT__SOURCE_EXTERNAL;
      NEW_MESSAGE(w, Attn__Attnx__External, attn__attnx__external__init, c->external);
      c->external->file = text(base_name(contents->weights_file));
      c->external->tensor = text(constant->name);
      c->external->size = size;
      c->external->checksum = attn_artifact_checksum(constant->data, size);
    } else {
      c->source_case = ATTN__ATTNX__CONSTANT__SOURCE_EMBEDDED;
      ATTN_RETURN_IF_ERROR(add_blob(w, constant->data, size, &c->embedded));
    }
  }
  return ATTN_OK;
}

static attn_status build_plan(writer *w, const attn_artifact_contents *contents,
                              Attn__Attnx__Plan *m) {
  const attn_plan *plan = contents->plan;
  ATTN_RETURN_IF_ERROR(
      copy_strings(w, plan->symbols, plan->symbol_count, &m->n_symbols, &m->symbols));
  NEW_MESSAGES(w, Attn__Attnx__Dim, attn__attnx__dim__init, plan->dim_count, m->dims);
  m->n_dims = plan->dim_count;
  for (uint32_t i = 0; i < plan->dim_count; i++) {
    m->dims[i]->kind = (uint32_t)plan->dims[i].kind;
    m->dims[i]->lhs = plan->dims[i].lhs;
    m->dims[i]->rhs = plan->dims[i].rhs;
  }
  NEW_MESSAGES(w, Attn__Attnx__Value, attn__attnx__value__init, plan->value_count, m->values);
  m->n_values = plan->value_count;
  for (uint32_t i = 0; i < plan->value_count; i++) {
    const attn_plan_value *value = &plan->values[i];
    Attn__Attnx__Value *v = m->values[i];
    v->dtype = (uint32_t)value->dtype;
    ATTN_RETURN_IF_ERROR(copy_int64s(w, value->dims, value->rank, &v->n_dims, &v->dims));
    v->storage = (uint32_t)value->storage;
    v->index = value->index;
    v->iota_axis = value->iota_axis;
    v->iota_start = value->iota_start;
  }
  ATTN_RETURN_IF_ERROR(
      copy_int64s(w, plan->buffers, plan->buffer_count, &m->n_buffers, &m->buffers));
  ATTN_RETURN_IF_ERROR(copy_bindings(w, plan->inputs, plan->input_count, &m->n_inputs, &m->inputs));
  ATTN_RETURN_IF_ERROR(
      copy_bindings(w, plan->outputs, plan->output_count, &m->n_outputs, &m->outputs));
  ATTN_RETURN_IF_ERROR(build_constants(w, contents, m));
  ATTN_RETURN_IF_ERROR(
      copy_strings(w, plan->functions, plan->function_count, &m->n_functions, &m->functions));
  NEW_MESSAGES(w, Attn__Attnx__Step, attn__attnx__step__init, plan->step_count, m->steps);
  m->n_steps = plan->step_count;
  for (uint32_t i = 0; i < plan->step_count; i++)
    ATTN_RETURN_IF_ERROR(build_step(w, &plan->steps[i], m->steps[i]));
  return ATTN_OK;
}

static attn_status build_header(writer *w, const attn_artifact_contents *contents,
                                Attn__Attnx__Header *header) {
  header->format_version = ATTN_ARTIFACT_FORMAT_VERSION;
  header->producer = text(ATTN_ARTIFACT_PRODUCER);
  header->model_name = text(contents->model_name);
  const attn_artifact_cpu_code *cpu = &contents->cpu;
  // The code goes first in the data section: it is always read (checked and loaded) while the
  // constants may never be touched before the run.
  NEW_MESSAGE(w, Attn__Attnx__CpuCode, attn__attnx__cpu_code__init, header->cpu);
  header->cpu->target_triple = text(cpu->target_triple);
  header->cpu->cpu = text(cpu->cpu);
  header->cpu->features = text(cpu->features);
  header->cpu->needs_avx2 = cpu->needs_avx2;
  header->cpu->needs_fma = cpu->needs_fma;
  header->cpu->needs_avx512f = cpu->needs_avx512f;
  if (cpu->shared_object && cpu->shared_object_size > 0)
    ATTN_RETURN_IF_ERROR(
        add_blob(w, cpu->shared_object, cpu->shared_object_size, &header->cpu->shared_object));
  NEW_MESSAGE(w, Attn__Attnx__Plan, attn__attnx__plan__init, header->plan);
  return build_plan(w, contents, header->plan);
}

static void store_u64(unsigned char *bytes, uint64_t value, size_t size) {
  for (size_t i = 0; i < size; i++)
    bytes[i] = (unsigned char)(value >> (8 * i));
}

static bool write_zeros(FILE *out, uint64_t count) {
  static const unsigned char zeros[ATTN_ARTIFACT_ALIGN];
  while (count > 0) {
    size_t n = count < sizeof(zeros) ? (size_t)count : sizeof(zeros);
    if (fwrite(zeros, 1, n, out) != n)
      return false;
    count -= n;
  }
  return true;
}

static attn_status write_file(writer *w, const unsigned char *header, size_t header_size) {
  attn_loc loc = {w->path, 0, 0};
  FILE *out = fopen(w->path, "wb");
  if (!out)
    return attn_diag_error(w->diag, loc, ATTN_ERROR_IO, "cannot create: %s", strerror(errno));
  unsigned char prefix[ATTN_ARTIFACT_PREFIX_SIZE];
  memcpy(prefix, ATTN_ARTIFACT_MAGIC, ATTN_ARTIFACT_MAGIC_SIZE);
  store_u64(prefix + 8, ATTN_ARTIFACT_FORMAT_VERSION, 4);
  store_u64(prefix + 12, 0, 4);
  store_u64(prefix + 16, header_size, 8);
  store_u64(prefix + 24, attn_artifact_checksum(header, header_size), 8);
  uint64_t header_end = ATTN_ARTIFACT_PREFIX_SIZE + (uint64_t)header_size;
  uint64_t data_start =
      (header_end + ATTN_ARTIFACT_ALIGN - 1) / ATTN_ARTIFACT_ALIGN * ATTN_ARTIFACT_ALIGN;
  bool ok = fwrite(prefix, 1, sizeof(prefix), out) == sizeof(prefix) &&
            fwrite(header, 1, header_size, out) == header_size &&
            write_zeros(out, data_start - header_end);
  uint64_t at = 0;
  for (size_t i = 0; ok && i < w->blob_count; i++) {
    const pending_blob *blob = &w->blobs[i];
    ok = write_zeros(out, blob->offset - at) &&
         (blob->size == 0 || fwrite(blob->bytes, 1, blob->size, out) == blob->size);
    at = blob->offset + blob->size;
  }
  int error = ok ? 0 : errno;
  if (fclose(out) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    remove(w->path);
    return attn_diag_error(w->diag, loc, ATTN_ERROR_IO, "cannot write: %s", strerror(error));
  }
  return ATTN_OK;
}

static attn_status write_weights(writer *w, const attn_artifact_contents *contents) {
  const attn_plan *plan = contents->plan;
  attn_named_tensor *tensors = attn_arena_calloc(
      &w->arena, plan->constant_count ? plan->constant_count : 1, sizeof(*tensors));
  if (!tensors)
    return out_of_memory(w);
  for (uint32_t i = 0; i < plan->constant_count; i++) {
    const attn_plan_constant *constant = &plan->constants[i];
    tensors[i].name = constant->name;
    tensors[i].tensor.dtype = constant->dtype;
    tensors[i].tensor.rank = constant->rank;
    memcpy(tensors[i].tensor.dims, constant->dims, sizeof(constant->dims));
    // Only read: attn_tensor's data is not const because it also holds tensors one writes.
    tensors[i].tensor.data = (void *)(uintptr_t)constant->data;
  }
  return attn_safetensors_write(contents->weights_file, tensors, plan->constant_count,
                                attn_allocator_system(), w->diag);
}

attn_status attn_artifact_write(const attn_artifact_contents *contents, const char *path,
                                attn_diag *diag) {
  ATTN_RETURN_IF_ERROR(attn_plan_validate(contents->plan, diag));
  writer w = {.diag = diag, .path = path};
  attn_arena_init(&w.arena, attn_allocator_system());
  Attn__Attnx__Header *header =
      attn_arena_alloc(&w.arena, sizeof(*header), _Alignof(Attn__Attnx__Header));
  attn_status status = header ? ATTN_OK : out_of_memory(&w);
  if (status == ATTN_OK) {
    attn__attnx__header__init(header);
    status = build_header(&w, contents, header);
  }
  bool wrote_weights = false;
  if (status == ATTN_OK && contents->weights_file) {
    status = write_weights(&w, contents);
    wrote_weights = status == ATTN_OK;
  }
  if (status == ATTN_OK) {
    size_t header_size = attn__attnx__header__get_packed_size(header);
    unsigned char *bytes = attn_arena_alloc(&w.arena, header_size ? header_size : 1, 1);
    if (!bytes) {
      status = out_of_memory(&w);
    } else {
      attn__attnx__header__pack(header, bytes);
      status = write_file(&w, bytes, header_size);
    }
  }
  if (status != ATTN_OK && wrote_weights)
    remove(contents->weights_file);
  attn_arena_deinit(&w.arena);
  return status;
}
