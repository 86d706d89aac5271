// The CPU JIT: host target machine + ORC LLJIT. Every LLVMErrorRef, LLVMBool-with-message and
// NULL handle from LLVM becomes an attn_status here, with LLVM's text in the diagnostics.
#include "codegen/cpu/jit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <llvm-c/Analysis.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>

typedef struct kept_object {
  char *name;
  void *data;
  size_t size;
} kept_object;

struct attn_cpu_jit {
  attn_diag *diag;
  LLVMTargetMachineRef target_machine; // for the data layout and the O3 pipeline
  LLVMOrcLLJITRef lljit;
  char *triple;   // LLVM-owned (LLVMDisposeMessage)
  char *cpu;      // LLVM-owned
  char *features; // LLVM-owned
  attn_cpu_features parsed;
  char *cache_dir;    // NULL: no disk cache
  uint64_t cache_key; // the CPU, its features, the LLVM version and the code model, hashed
  // Object code kept for ahead-of-time builds (attn_cpu_jit_keep_objects).
  bool keep_objects;
  kept_object *objects;
  uint32_t object_count, object_capacity;
};

// Whether the comma-separated LLVM feature list `features` enables `name`.
static bool feature_enabled(const char *features, const char *name) {
  size_t name_length = strlen(name);
  const char *p = features;
  while (p && *p) {
    const char *end = strchr(p, ',');
    size_t length = end ? (size_t)(end - p) : strlen(p);
    if (length == name_length + 1 && p[0] == '+' && memcmp(p + 1, name, name_length) == 0)
      return true;
    p = end ? end + 1 : NULL;
  }
  return false;
}

attn_cpu_features attn_cpu_features_parse(const char *features) {
  attn_cpu_features parsed = {
      .avx2 = feature_enabled(features, "avx2"),
      .fma = feature_enabled(features, "fma"),
      .avx512f = feature_enabled(features, "avx512f"),
      .avx512bf16 = feature_enabled(features, "avx512bf16"),
  };
  return parsed;
}

int attn_cpu_features_vector_width(attn_cpu_features features) {
  return features.avx512f ? 16 : 8;
}

// Turns an LLVMErrorRef into a diagnostic (consuming the error) and returns `status`.
static attn_status error_from_llvm(attn_diag *diag, LLVMErrorRef error, attn_status status,
                                   const char *what) {
  char *message = LLVMGetErrorMessage(error);
  attn_status result = attn_diag_error(diag, ATTN_LOC_NONE, status, "%s: %s", what, message);
  LLVMDisposeErrorMessage(message);
  return result;
}

static char *copy_llvm_string(const char *text) {
  // LLVMCreateMessage copies into memory that LLVMDisposeMessage frees, so every string the JIT
  // holds is freed the same way whether it came from the host query or from the options.
  return LLVMCreateMessage(text);
}

static LLVMTargetMachineRef create_target_machine(const attn_cpu_jit *jit, LLVMTargetRef target) {
  return LLVMCreateTargetMachine(target, jit->triple, jit->cpu, jit->features,
                                 LLVMCodeGenLevelAggressive, LLVMRelocPIC, LLVMCodeModelDefault);
}

attn_status attn_cpu_jit_create(const attn_cpu_jit_options *options, attn_diag *diag,
                                attn_cpu_jit **out_jit) {
  *out_jit = NULL;
  if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter())
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                           "LLVM has no code generator for this host");
  attn_cpu_jit *jit = calloc(1, sizeof(*jit));
  if (!jit)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  jit->diag = diag;
  jit->triple = LLVMGetDefaultTargetTriple();
  jit->cpu = options && options->cpu ? copy_llvm_string(options->cpu) : LLVMGetHostCPUName();
  jit->features =
      options && options->features ? copy_llvm_string(options->features) : LLVMGetHostCPUFeatures();
  if (!jit->triple || !jit->cpu || !jit->features) {
    attn_cpu_jit_destroy(jit);
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  jit->parsed = attn_cpu_features_parse(jit->features);

  LLVMTargetRef target = NULL;
  char *message = NULL;
  if (LLVMGetTargetFromTriple(jit->triple, &target, &message)) {
    attn_status status = attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                                         "no LLVM target for '%s': %s", jit->triple, message);
    LLVMDisposeMessage(message);
    attn_cpu_jit_destroy(jit);
    return status;
  }
  // Two machines for the same CPU: LLJIT takes ownership of the one it is built from, and the
  // other stays here to give modules their data layout and to run the O3 pipeline.
  jit->target_machine = create_target_machine(jit, target);
  LLVMTargetMachineRef for_lljit = create_target_machine(jit, target);
  if (!jit->target_machine || !for_lljit) {
    if (for_lljit)
      LLVMDisposeTargetMachine(for_lljit);
    attn_cpu_jit_destroy(jit);
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                           "LLVM cannot create a target machine for '%s' (cpu '%s')", jit->triple,
                           jit->cpu);
  }
  LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
  LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(
      builder, LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(for_lljit));
  LLVMErrorRef error = LLVMOrcCreateLLJIT(&jit->lljit, builder); // consumes the builder
  if (error) {
    jit->lljit = NULL;
    attn_cpu_jit_destroy(jit);
    return error_from_llvm(diag, error, ATTN_ERROR_DEVICE, "cannot create the LLVM JIT");
  }
  *out_jit = jit;
  return ATTN_OK;
}

void attn_cpu_jit_destroy(attn_cpu_jit *jit) {
  if (!jit)
    return;
  if (jit->lljit) {
    LLVMErrorRef error = LLVMOrcDisposeLLJIT(jit->lljit);
    if (error)
      (void)error_from_llvm(jit->diag, error, ATTN_ERROR_DEVICE, "while destroying the LLVM JIT");
  }
  if (jit->target_machine)
    LLVMDisposeTargetMachine(jit->target_machine);
  LLVMDisposeMessage(jit->triple);
  LLVMDisposeMessage(jit->cpu);
  LLVMDisposeMessage(jit->features);
  free(jit->cache_dir);
  for (uint32_t i = 0; i < jit->object_count; i++) {
    free(jit->objects[i].name);
    free(jit->objects[i].data);
  }
  free(jit->objects);
  free(jit);
}

attn_cpu_features attn_cpu_jit_features(const attn_cpu_jit *jit) {
  return jit->parsed;
}

const char *attn_cpu_jit_triple(const attn_cpu_jit *jit) {
  return jit->triple;
}

const char *attn_cpu_jit_cpu_name(const attn_cpu_jit *jit) {
  return jit->cpu;
}

const char *attn_cpu_jit_feature_string(const attn_cpu_jit *jit) {
  return jit->features;
}

void attn_cpu_module_destroy(LLVMModuleRef module) {
  if (!module)
    return;
  LLVMContextRef context = LLVMGetModuleContext(module);
  LLVMDisposeModule(module);
  LLVMContextDispose(context);
}

// ---- the disk cache ---------------------------------------------------------------------------
// One file per function: "<dir>/<function name>-<cache key, 16 hex>.o" holding a header (the
// magic "ATTNOBJ1", the object's size and its FNV-1a hash, each a little-endian u64) and the
// object. A file that does not check out is ignored and rewritten.

enum { CACHE_HEADER_BYTES = 24 };
static const char cache_magic[8] = {'A', 'T', 'T', 'N', 'O', 'B', 'J', '1'};

static uint64_t fnv1a(uint64_t hash, const void *data, size_t size) {
  const unsigned char *bytes = data;
  for (size_t i = 0; i < size; i++)
    hash = (hash ^ bytes[i]) * UINT64_C(0x100000001b3);
  return hash;
}

static void put_u64(unsigned char *out, uint64_t value) {
  for (int i = 0; i < 8; i++)
    out[i] = (unsigned char)(value >> (8 * i));
}

static uint64_t get_u64(const unsigned char *in) {
  uint64_t value = 0;
  for (int i = 0; i < 8; i++)
    value |= (uint64_t)in[i] << (8 * i);
  return value;
}

// Creates `dir` and its missing parents.
static bool make_dirs(char *dir) {
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    bool ok = mkdir(dir, 0755) == 0 || errno == EEXIST;
    *p = '/';
    if (!ok)
      return false;
  }
  return mkdir(dir, 0755) == 0 || errno == EEXIST;
}

attn_status attn_cpu_jit_set_cache_dir(attn_cpu_jit *jit, const char *dir) {
  free(jit->cache_dir);
  jit->cache_dir = NULL;
  if (!dir || !*dir)
    return ATTN_OK;
  char *copy = strdup(dir);
  if (!copy)
    return attn_diag_error(jit->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  if (!make_dirs(copy)) {
    attn_status status =
        attn_diag_error(jit->diag, ATTN_LOC_NONE, ATTN_ERROR_IO,
                        "cannot create the kernel cache directory '%s': %s", dir, strerror(errno));
    free(copy);
    return status;
  }
  unsigned major, minor, patch;
  LLVMGetVersion(&major, &minor, &patch);
  // The fourth entry names the code model: position-independent, small, so that the same
  // objects link into shared objects and executables (ahead-of-time builds).
  unsigned version[4] = {major, minor, patch, 2};
  uint64_t key = fnv1a(UINT64_C(0xcbf29ce484222325), jit->cpu, strlen(jit->cpu));
  key = fnv1a(key, jit->features, strlen(jit->features));
  jit->cache_key = fnv1a(key, version, sizeof(version));
  jit->cache_dir = copy;
  return ATTN_OK;
}

const char *attn_cpu_jit_cache_dir(const attn_cpu_jit *jit) {
  return jit->cache_dir;
}

static void cache_path(const attn_cpu_jit *jit, const char *name, char *path, size_t size) {
  snprintf(path, size, "%s/%s-%016" PRIx64 ".o", jit->cache_dir, name, jit->cache_key);
}

// Writes the object to a temporary file beside its place, then renames it there, so readers
// never see half a file. A failure to write only loses the cache entry.
static void cache_store(const attn_cpu_jit *jit, const char *name, const char *data, size_t size) {
  char path[4096], temporary[4200];
  cache_path(jit, name, path, sizeof(path));
  snprintf(temporary, sizeof(temporary), "%s.%ld.tmp", path, (long)getpid());
  FILE *file = fopen(temporary, "wb");
  if (!file)
    return;
  unsigned char header[CACHE_HEADER_BYTES];
  memcpy(header, cache_magic, 8);
  put_u64(header + 8, size);
  put_u64(header + 16, fnv1a(UINT64_C(0xcbf29ce484222325), data, size));
  bool ok = fwrite(header, 1, sizeof(header), file) == sizeof(header) &&
            fwrite(data, 1, size, file) == size;
  ok = fclose(file) == 0 && ok;
  if (!ok || rename(temporary, path) != 0)
    remove(temporary);
}

// Keeps a copy of module `name`'s object code when the JIT keeps objects.
static attn_status keep_object(attn_cpu_jit *jit, const char *name, const char *data, size_t size) {
  if (!jit->keep_objects)
    return ATTN_OK;
  if (jit->object_count == jit->object_capacity) {
    uint32_t capacity = jit->object_capacity ? 2 * jit->object_capacity : 16;
    kept_object *grown = realloc(jit->objects, capacity * sizeof(*grown));
    if (!grown)
      return attn_diag_error(jit->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    jit->objects = grown;
    jit->object_capacity = capacity;
  }
  kept_object *object = &jit->objects[jit->object_count];
  object->name = malloc(strlen(name) + 1);
  object->data = malloc(size ? size : 1);
  if (!object->name || !object->data) {
    free(object->name);
    free(object->data);
    return attn_diag_error(jit->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  memcpy(object->name, name, strlen(name) + 1);
  memcpy(object->data, data, size);
  object->size = size;
  jit->object_count++;
  return ATTN_OK;
}

void attn_cpu_jit_keep_objects(attn_cpu_jit *jit) {
  jit->keep_objects = true;
}

attn_status attn_cpu_jit_object(const attn_cpu_jit *jit, const char *name, const void **out_data,
                                size_t *out_size) {
  for (uint32_t i = 0; i < jit->object_count; i++)
    if (strcmp(jit->objects[i].name, name) == 0) {
      *out_data = jit->objects[i].data;
      *out_size = jit->objects[i].size;
      return ATTN_OK;
    }
  return attn_diag_error(jit->diag, ATTN_LOC_NONE, ATTN_ERROR_NOT_FOUND,
                         "no object code of '%s' was kept", name);
}

// Compiles the optimised module to an object, keeps a copy in the cache and adds it to LLJIT.
static attn_status add_object(attn_cpu_jit *jit, LLVMModuleRef module) {
  size_t name_length = 0;
  const char *module_name = LLVMGetModuleIdentifier(module, &name_length);
  char name[256];
  snprintf(name, sizeof(name), "%.*s", (int)name_length, module_name);
  char *message = NULL;
  LLVMMemoryBufferRef object = NULL;
  LLVMBool failed = LLVMTargetMachineEmitToMemoryBuffer(jit->target_machine, module, LLVMObjectFile,
                                                        &message, &object);
  attn_cpu_module_destroy(module);
  if (failed) {
    attn_status status = attn_diag_error(jit->diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                                         "LLVM cannot compile '%s': %s", name, message);
    LLVMDisposeMessage(message);
    return status;
  }
  cache_store(jit, name, LLVMGetBufferStart(object), LLVMGetBufferSize(object));
  attn_status kept = keep_object(jit, name, LLVMGetBufferStart(object), LLVMGetBufferSize(object));
  if (kept != ATTN_OK) {
    LLVMDisposeMemoryBuffer(object);
    return kept;
  }
  LLVMErrorRef error =
      LLVMOrcLLJITAddObjectFile(jit->lljit, LLVMOrcLLJITGetMainJITDylib(jit->lljit), object);
  if (error)
    return error_from_llvm(jit->diag, error, ATTN_ERROR_DEVICE, "cannot add an object to the JIT");
  return ATTN_OK;
}

attn_status attn_cpu_jit_add_cached(attn_cpu_jit *jit, const char *name, bool *out_found) {
  *out_found = false;
  if (!jit->cache_dir)
    return ATTN_OK;
  char path[4096];
  cache_path(jit, name, path, sizeof(path));
  FILE *file = fopen(path, "rb");
  if (!file)
    return ATTN_OK;
  unsigned char header[CACHE_HEADER_BYTES];
  char *data = NULL;
  uint64_t size = 0;
  bool ok = fread(header, 1, sizeof(header), file) == sizeof(header) &&
            memcmp(header, cache_magic, 8) == 0 && (size = get_u64(header + 8)) > 0 &&
            size < (UINT64_C(1) << 32) && (data = malloc((size_t)size));
  ok = ok && fread(data, 1, (size_t)size, file) == size && fgetc(file) == EOF &&
       fnv1a(UINT64_C(0xcbf29ce484222325), data, (size_t)size) == get_u64(header + 16);
  fclose(file);
  if (!ok) {
    free(data);
    return ATTN_OK; // a stale or damaged entry: compile again, which rewrites it
  }
  attn_status kept = keep_object(jit, name, data, (size_t)size);
  LLVMMemoryBufferRef object = LLVMCreateMemoryBufferWithMemoryRangeCopy(data, (size_t)size, name);
  free(data);
  ATTN_RETURN_IF_ERROR(kept);
  LLVMErrorRef error =
      LLVMOrcLLJITAddObjectFile(jit->lljit, LLVMOrcLLJITGetMainJITDylib(jit->lljit), object);
  if (error)
    return error_from_llvm(jit->diag, error, ATTN_ERROR_DEVICE, "cannot add a cached object");
  *out_found = true;
  return ATTN_OK;
}

attn_status attn_cpu_jit_add_module_owned(attn_cpu_jit *jit, LLVMModuleRef module) {
  LLVMSetTarget(module, jit->triple);
  LLVMTargetDataRef data_layout = LLVMCreateTargetDataLayout(jit->target_machine);
  LLVMSetModuleDataLayout(module, data_layout);
  LLVMDisposeTargetData(data_layout);

  char *message = NULL;
  if (LLVMVerifyModule(module, LLVMReturnStatusAction, &message)) {
    attn_status status = attn_diag_error(jit->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                                         "generated LLVM module '%s' is invalid: %s",
                                         LLVMGetModuleIdentifier(module, &(size_t){0}), message);
    LLVMDisposeMessage(message);
    attn_cpu_module_destroy(module);
    return status;
  }
  LLVMDisposeMessage(message);

  LLVMPassBuilderOptionsRef pass_options = LLVMCreatePassBuilderOptions();
  LLVMErrorRef error = LLVMRunPasses(module, "default<O3>", jit->target_machine, pass_options);
  LLVMDisposePassBuilderOptions(pass_options);
  if (error) {
    attn_cpu_module_destroy(module);
    return error_from_llvm(jit->diag, error, ATTN_ERROR_DEVICE, "the O3 pipeline failed");
  }

  if (jit->cache_dir || jit->keep_objects)
    return add_object(jit, module);
  // The thread-safe context takes the module's LLVMContext, and the thread-safe module the
  // module; the module keeps the context alive after this handle to it is dropped.
  LLVMOrcThreadSafeContextRef ts_context =
      LLVMOrcCreateNewThreadSafeContextFromLLVMContext(LLVMGetModuleContext(module));
  LLVMOrcThreadSafeModuleRef ts_module = LLVMOrcCreateNewThreadSafeModule(module, ts_context);
  LLVMOrcDisposeThreadSafeContext(ts_context);
  error =
      LLVMOrcLLJITAddLLVMIRModule(jit->lljit, LLVMOrcLLJITGetMainJITDylib(jit->lljit), ts_module);
  if (error)
    return error_from_llvm(jit->diag, error, ATTN_ERROR_DEVICE, "cannot add a module to the JIT");
  return ATTN_OK;
}

attn_status attn_cpu_jit_lookup(attn_cpu_jit *jit, const char *name, attn_cpu_jit_fn *out_fn) {
  *out_fn = NULL;
  LLVMOrcExecutorAddress address = 0;
  LLVMErrorRef error = LLVMOrcLLJITLookup(jit->lljit, &address, name);
  if (error)
    return error_from_llvm(jit->diag, error, ATTN_ERROR_NOT_FOUND, "JIT lookup failed");
  // The executor is this process, so an executor address is a function address here.
  *out_fn = (attn_cpu_jit_fn)(uintptr_t)address;
  return ATTN_OK;
}

void attn_cpu_llvm_shutdown(void) {
  LLVMShutdown();
}
