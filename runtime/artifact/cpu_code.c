// The dynamic loader's side of the generated CPU code: dlopen over a memfd (or a temporary
// file), dlsym, and the host's instruction sets. This file is where dlfcn's conventions (NULL and
// dlerror) become statuses.

// memfd_create is a GNU extension (glibc 2.27) that the project's _POSIX_C_SOURCE hides; it is
// declared here rather than turning on _GNU_SOURCE for the whole project. Where the C library
// does not provide it, loading falls back to a temporary file.
#include <sys/types.h>
int memfd_create(const char *name, unsigned int flags);
#define ATTN_MFD_CLOEXEC 1u // MFD_CLOEXEC of <sys/mman.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/artifact/cpu_code.h"

struct attn_cpu_code {
  attn_allocator allocator;
  void *handle;
  // The memfd, open as long as the code is loaded: the loader knows objects by name first, and
  // another code loaded while this one is would otherwise get the same "/proc/self/fd/N" and
  // with it this one's handle. -1 for a temporary file.
  int fd;
};

#define CODE_LOC ((attn_loc){"cpu code", 0, 0})

// Whether this processor has extension `name` (an LLVM feature name). __builtin_cpu_supports
// takes only string literals, hence the table.
static bool attn_host_has(const char *name) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
#define HOST_HAS(feature)                                                                          \
  if (strcmp(name, feature) == 0)                                                                  \
    return __builtin_cpu_supports(feature) != 0;
  HOST_HAS("sse3")
  HOST_HAS("ssse3")
  HOST_HAS("sse4.1")
  HOST_HAS("sse4.2")
  HOST_HAS("popcnt")
  HOST_HAS("avx")
  HOST_HAS("avx2")
  HOST_HAS("fma")
  HOST_HAS("bmi")
  HOST_HAS("bmi2")
  HOST_HAS("avx512f")
  HOST_HAS("avx512vl")
  HOST_HAS("avx512bw")
  HOST_HAS("avx512dq")
  HOST_HAS("avx512cd")
  HOST_HAS("avx512vnni")
  HOST_HAS("avx512bf16")
  HOST_HAS("avx512vbmi")
  HOST_HAS("avx512ifma")
#undef HOST_HAS
#endif
  (void)name;
  return false;
}

// Whether the comma-separated LLVM feature string `features` enables `name` ("+name").
static bool feature_enabled(const char *features, const char *name) {
  size_t length = strlen(name);
  for (const char *p = features; p && *p;) {
    const char *end = strchr(p, ',');
    size_t item = end ? (size_t)(end - p) : strlen(p);
    if (item == length + 1 && p[0] == '+' && memcmp(p + 1, name, length) == 0)
      return true;
    p = end ? end + 1 : NULL;
  }
  return false;
}

// Which instruction set the code needs and the host lacks, or NULL: the three the artifact
// records, and every extension of its LLVM feature string that the processor can be asked about
// (code compiled for one CPU may use any of them).
static const char *missing_feature(const attn_artifact_cpu_code *code) {
  if (code->needs_avx2 && !attn_host_has("avx2"))
    return "avx2";
  if (code->needs_fma && !attn_host_has("fma"))
    return "fma";
  if (code->needs_avx512f && !attn_host_has("avx512f"))
    return "avx512f";
  static const char *const checked[] = {
      "sse3",     "ssse3",      "sse4.1",     "sse4.2",     "popcnt",     "avx",      "avx2",
      "fma",      "bmi",        "bmi2",       "avx512f",    "avx512vl",   "avx512bw", "avx512dq",
      "avx512cd", "avx512vnni", "avx512bf16", "avx512vbmi", "avx512ifma",
  };
  for (size_t i = 0; code->features && i < sizeof(checked) / sizeof(checked[0]); i++)
    if (feature_enabled(code->features, checked[i]) && !attn_host_has(checked[i]))
      return checked[i];
  return NULL;
}

static bool write_all(int fd, const void *data, size_t size) {
  const unsigned char *bytes = data;
  while (size > 0) {
    ssize_t n = write(fd, bytes, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    bytes += n;
    size -= (size_t)n;
  }
  return true;
}

// dlopen of the bytes through a memfd: nothing touches the file system. NULL with `*out_tried`
// false when memfd_create is not available, so the caller falls back.
static void *open_memfd(const attn_artifact_cpu_code *code, bool *out_tried, int *out_fd,
                        attn_diag *diag, attn_status *out_status) {
  *out_tried = false;
  *out_fd = -1;
  int fd = memfd_create("attnx-cpu-code", ATTN_MFD_CLOEXEC);
  if (fd < 0)
    return NULL;
  *out_tried = true;
  if (!write_all(fd, code->shared_object, code->shared_object_size)) {
    *out_status =
        attn_diag_error(diag, CODE_LOC, ATTN_ERROR_IO,
                        "cannot write the CPU code to a memory file: %s", strerror(errno));
    close(fd);
    return NULL;
  }
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char *error = dlerror();
    *out_status = attn_diag_error(diag, CODE_LOC, ATTN_ERROR_IO, "cannot load the CPU code: %s",
                                  error ? error : "unknown error");
  }
  if (handle)
    *out_fd = fd;
  else
    close(fd);
  return handle;
}

static void *open_temp_file(const attn_artifact_cpu_code *code, attn_diag *diag,
                            attn_status *out_status) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !dir[0])
    dir = "/tmp";
  char path[4096];
  if (snprintf(path, sizeof(path), "%s/attnx-cpu-code-XXXXXX", dir) >= (int)sizeof(path)) {
    *out_status = attn_diag_error(diag, CODE_LOC, ATTN_ERROR_IO, "TMPDIR is too long");
    return NULL;
  }
  int fd = mkstemp(path);
  if (fd < 0) {
    *out_status = attn_diag_error(diag, CODE_LOC, ATTN_ERROR_IO,
                                  "cannot create a temporary file in %s: %s", dir, strerror(errno));
    return NULL;
  }
  bool written = write_all(fd, code->shared_object, code->shared_object_size);
  int write_error = errno;
  close(fd);
  void *handle = NULL;
  if (!written) {
    *out_status = attn_diag_error(diag, CODE_LOC, ATTN_ERROR_IO, "cannot write %s: %s", path,
                                  strerror(write_error));
  } else if (!(handle = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
    const char *error = dlerror();
    *out_status = attn_diag_error(diag, CODE_LOC, ATTN_ERROR_IO, "cannot load the CPU code: %s",
                                  error ? error : "unknown error");
  }
  // Loaded (or not), the file has done its work: the mapping outlives the name.
  unlink(path);
  return handle;
}

attn_status attn_cpu_code_load(const attn_artifact_cpu_code *code, attn_allocator allocator,
                               attn_diag *diag, attn_cpu_code **out) {
  *out = NULL;
  if (!code->shared_object || code->shared_object_size == 0)
    return attn_diag_error(diag, CODE_LOC, ATTN_ERROR_INVALID_ARGUMENT,
                           "the artifact carries no CPU code");
  const char *missing = missing_feature(code);
  if (missing)
    return attn_diag_error(diag, CODE_LOC, ATTN_ERROR_UNSUPPORTED,
                           "the CPU code needs %s, which this processor lacks (compiled for %s, "
                           "cpu '%s')",
                           missing, code->target_triple ? code->target_triple : "?",
                           code->cpu ? code->cpu : "?");
  attn_cpu_code *loaded = attn_allocator_calloc(allocator, 1, sizeof(*loaded));
  if (!loaded)
    return attn_diag_error(diag, CODE_LOC, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  loaded->allocator = allocator;
  attn_status status = ATTN_OK;
  bool tried;
  loaded->handle = open_memfd(code, &tried, &loaded->fd, diag, &status);
  if (!loaded->handle && !tried)
    loaded->handle = open_temp_file(code, diag, &status);
  if (!loaded->handle) {
    attn_allocator_free(allocator, loaded, sizeof(*loaded));
    return status;
  }
  *out = loaded;
  return ATTN_OK;
}

attn_status attn_cpu_code_symbol(const attn_cpu_code *code, const char *name, attn_diag *diag,
                                 void (**out_fn)(void)) {
  *out_fn = NULL;
  dlerror();
  void *symbol = dlsym(code->handle, name);
  if (!symbol)
    return attn_diag_error(diag, CODE_LOC, ATTN_ERROR_NOT_FOUND,
                           "the CPU code has no function '%s'", name);
  // POSIX requires object and function pointers to convert (dlsym relies on it); memcpy avoids
  // ISO C's -Wpedantic objection to the cast.
  memcpy(out_fn, &symbol, sizeof(symbol));
  return ATTN_OK;
}

void attn_cpu_code_close(attn_cpu_code *code) {
  if (!code)
    return;
  dlclose(code->handle);
  if (code->fd >= 0)
    close(code->fd);
  attn_allocator_free(code->allocator, code, sizeof(*code));
}
