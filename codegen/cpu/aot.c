// Ahead-of-time builds: object files out of the JIT, the C compiler run as a child process, and
// the generated C of a linked model.
#include "codegen/cpu/aot.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

enum { MAX_ARGS = 4096 };

attn_status attn_aot_dir_create(attn_aot_dir *dir, attn_diag *diag) {
  const char *tmp = getenv("TMPDIR");
  int length =
      snprintf(dir->path, sizeof(dir->path), "%s/attnc-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (length < 0 || (size_t)length >= sizeof(dir->path))
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "$TMPDIR is too long a path");
  if (!mkdtemp(dir->path))
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO,
                           "cannot create a build directory '%s': %s", dir->path, strerror(errno));
  return ATTN_OK;
}

void attn_aot_dir_remove(const attn_aot_dir *dir) {
  DIR *d = opendir(dir->path);
  if (d) {
    for (struct dirent *entry; (entry = readdir(d));) {
      if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
        continue;
      char path[4400];
      snprintf(path, sizeof(path), "%s/%s", dir->path, entry->d_name);
      remove(path);
    }
    closedir(d);
  }
  rmdir(dir->path);
}

static void object_path(const attn_aot_dir *dir, uint32_t function, char *path, size_t size) {
  snprintf(path, size, "%s/k%" PRIu32 ".o", dir->path, function);
}

attn_status attn_aot_write_objects(const attn_cpu_backend *backend, const attn_plan *plan,
                                   const attn_aot_dir *dir, attn_diag *diag) {
  for (uint32_t f = 0; f < plan->function_count; f++) {
    const void *data;
    size_t size;
    ATTN_RETURN_IF_ERROR(attn_cpu_backend_object(backend, plan->functions[f], &data, &size));
    char path[4400];
    object_path(dir, f, path, sizeof(path));
    FILE *file = fopen(path, "wb");
    bool ok = file && fwrite(data, 1, size, file) == size;
    ok = file && fclose(file) == 0 && ok;
    if (!ok)
      return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "cannot write '%s'", path);
  }
  return ATTN_OK;
}

attn_status attn_aot_cc(const char *const *args, attn_diag *diag) {
  const char *cc = getenv("CC");
  return attn_aot_run(cc && *cc ? cc : "cc", args, diag);
}

attn_status attn_aot_run(const char *program, const char *const *args, attn_diag *diag) {
  const char *argv[MAX_ARGS];
  size_t count = 0;
  argv[count++] = program;
  for (size_t i = 0; args[i] && count + 1 < MAX_ARGS; i++)
    argv[count++] = args[i];
  argv[count] = NULL;
  pid_t pid;
  int error = posix_spawnp(&pid, program, NULL, NULL, (char *const *)argv, environ);
  if (error != 0)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "cannot run '%s': %s", program,
                           strerror(error));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "waiting for '%s': %s", program,
                             strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    char command[1024];
    size_t used = 0;
    for (size_t i = 0; i < count && i < 6 && used < sizeof(command); i++)
      used +=
          (size_t)snprintf(command + used, sizeof(command) - used, "%s%s", i ? " " : "", argv[i]);
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "'%s%s' failed (%s %d)", command,
                           count > 6 ? " ..." : "", WIFEXITED(status) ? "exit status" : "signal",
                           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  }
  return ATTN_OK;
}

attn_status attn_aot_link_shared(const attn_plan *plan, const attn_aot_dir *dir, const char *path,
                                 attn_diag *diag) {
  if (plan->function_count + 8 > MAX_ARGS)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                           "%u kernels are more than one link takes", plan->function_count);
  char(*objects)[4400] = calloc(plan->function_count + 1, sizeof(*objects));
  const char **args = calloc(plan->function_count + 8, sizeof(char *));
  attn_status status = ATTN_OK;
  if (!objects || !args) {
    status = attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  } else {
    size_t count = 0;
    args[count++] = "-shared";
    args[count++] = "-o";
    args[count++] = path;
    for (uint32_t f = 0; f < plan->function_count; f++) {
      object_path(dir, f, objects[f], sizeof(objects[f]));
      args[count++] = objects[f];
    }
    args[count++] = "-lm";
    args[count] = NULL;
    status = attn_aot_cc(args, diag);
  }
  free(objects);
  free(args);
  return status;
}

// ---- the generated C -------------------------------------------------------------------------

static const char *c_type(attn_dtype dtype) {
  switch (dtype) {
  case ATTN_DTYPE_F32:
    return "float";
  case ATTN_DTYPE_F16:
  case ATTN_DTYPE_BF16:
    return "uint16_t";
  case ATTN_DTYPE_I64:
    return "int64_t";
  case ATTN_DTYPE_I32:
    return "int32_t";
  case ATTN_DTYPE_I8:
    return "int8_t";
  case ATTN_DTYPE_BOOL:
  case ATTN_DTYPE_COUNT:
    break;
  }
  return "uint8_t";
}

static bool is_c_keyword(const char *name) {
  static const char *const keywords[] = {
      "auto",          "break",    "case",     "char",     "const",     "continue",
      "default",       "do",       "double",   "else",     "enum",      "extern",
      "float",         "for",      "goto",     "if",       "inline",    "int",
      "long",          "register", "restrict", "return",   "short",     "signed",
      "sizeof",        "static",   "struct",   "switch",   "typedef",   "union",
      "unsigned",      "void",     "volatile", "while",    "_Bool",     "_Complex",
      "_Alignas",      "_Alignof", "_Atomic",  "_Generic", "_Noreturn", "_Static_assert",
      "_Thread_local", "bool",     "true",     "false",    "NULL"};
  for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
    if (strcmp(name, keywords[i]) == 0)
      return true;
  return false;
}

void attn_aot_identifier(const char *name, char *out, size_t size) {
  size_t n = 0;
  if (name[0] >= '0' && name[0] <= '9' && n + 1 < size)
    out[n++] = '_';
  for (const char *p = name; *p && n + 1 < size; p++) {
    char c = *p;
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    out[n++] = ok ? c : '_';
  }
  out[n] = '\0';
  if (is_c_keyword(out) && n + 1 < size) {
    out[n++] = '_';
    out[n] = '\0';
  }
}

// Refuses bindings whose fields in NAME_inputs or NAME_outputs would collide: "a.b" and "a_b", or
// "x" (whose dims are x_dims) and "x_dims".
static attn_status check_fields(const attn_plan_binding *bindings, uint32_t count, const char *what,
                                attn_diag *diag) {
  for (uint32_t i = 0; i < count; i++) {
    char a[256], a_dims[272];
    attn_aot_identifier(bindings[i].name, a, sizeof(a));
    snprintf(a_dims, sizeof(a_dims), "%s_dims", a);
    for (uint32_t j = 0; j < count; j++) {
      char b[256];
      attn_aot_identifier(bindings[j].name, b, sizeof(b));
      if ((j > i && strcmp(a, b) == 0) || strcmp(a_dims, b) == 0)
        return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                               "%s '%s' and '%s' make the same C names in the generated header; "
                               "rename one",
                               what, bindings[i].name, bindings[j].name);
    }
  }
  return ATTN_OK;
}

// "f32[B, T, 256]" for a comment.
static void format_type(const attn_plan *plan, uint32_t value, char *out, size_t size) {
  const attn_plan_value *v = &plan->values[value];
  size_t used = (size_t)snprintf(out, size, "%s[", attn_dtype_name(v->dtype));
  for (uint32_t d = 0; d < v->rank && used < size; d++) {
    int64_t dim = v->dims[d];
    if (dim >= 0)
      used += (size_t)snprintf(out + used, size - used, "%s%" PRId64, d ? ", " : "", dim);
    else if (plan->dims[-dim - 1].kind == ATTN_PLAN_DIM_SYMBOL)
      used += (size_t)snprintf(out + used, size - used, "%s%s", d ? ", " : "",
                               plan->symbols[plan->dims[-dim - 1].lhs]);
    else
      used += (size_t)snprintf(out + used, size - used, "%s?", d ? ", " : "");
  }
  if (used < size)
    snprintf(out + used, size - used, "]");
}

static void write_bindings(FILE *out, const attn_plan *plan, const attn_plan_binding *bindings,
                           uint32_t count, bool is_input) {
  for (uint32_t i = 0; i < count; i++) {
    char field[256], type[256];
    attn_aot_identifier(bindings[i].name, field, sizeof(field));
    format_type(plan, bindings[i].value, type, sizeof(type));
    fprintf(out, "  const %s *%s; // %s\n", c_type(plan->values[bindings[i].value].dtype), field,
            type);
    fprintf(out, "  int64_t %s_dims[%u];%s\n", field,
            plan->values[bindings[i].value].rank ? plan->values[bindings[i].value].rank : 1,
            is_input ? "" : " // set by the run");
  }
}

attn_status attn_aot_write_header(const attn_aot_linked_source *source, const char *path,
                                  attn_diag *diag) {
  const attn_plan *plan = source->plan;
  const char *n = source->name;
  ATTN_RETURN_IF_ERROR(check_fields(plan->inputs, plan->input_count, "inputs", diag));
  ATTN_RETURN_IF_ERROR(check_fields(plan->outputs, plan->output_count, "outputs", diag));
  FILE *out = fopen(path, "w");
  if (!out)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "cannot write '%s': %s", path,
                           strerror(errno));
  fprintf(out,
          "// The model '%s', compiled by attnc. Link lib%s.a and libattnrt.a (pkg-config attnc,\n"
          "// or CMake's find_package(attnc) and attnc::attnrt).\n"
          "#ifndef ATTN_MODEL_%s_H_\n#define ATTN_MODEL_%s_H_\n\n#include <stdint.h>\n\n"
          "#include \"attn/runtime.h\"\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n",
          n, n, n, n);
  fprintf(out,
          "// The inputs of a run: row-major data, borrowed until the run returns, and its "
          "dims.\ntypedef struct %s_inputs {\n",
          n);
  write_bindings(out, plan, plan->inputs, plan->input_count, true);
  fprintf(out,
          "} %s_inputs;\n\n// The outputs of a run: data owned by the session, valid until "
          "its next run.\ntypedef struct %s_outputs {\n",
          n, n);
  write_bindings(out, plan, plan->outputs, plan->output_count, false);
  fprintf(out,
          "} %s_outputs;\n\n"
          "// The model linked into this library, for attn_model_open_linked.\n"
          "const attn_linked_model *%s_linked_model(void);\n\n"
          "// Opens the model (close it with attn_model_close); `error` may be NULL.\n"
          "attn_status %s_open(attn_model **out_model, attn_error *error);\n\n"
          "// Runs `session`, a session of that model, on `inputs`, and points `outputs` at the\n"
          "// results. On failure attn_session_error(session) says why.\n"
          "attn_status %s_run(attn_session *session, const %s_inputs *inputs,\n"
          "                   %s_outputs *outputs);\n\n"
          "#ifdef __cplusplus\n}\n#endif\n\n#endif\n",
          n, n, n, n, n, n);
  if (fclose(out) != 0)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "cannot write '%s'", path);
  return ATTN_OK;
}

// NAME_run: binds each input, runs, reads each output.
static void write_run(FILE *out, const attn_aot_linked_source *source) {
  const attn_plan *plan = source->plan;
  const char *n = source->name;
  fprintf(out,
          "attn_status %s_run(attn_session *session, const %s_inputs *inputs,\n"
          "                   %s_outputs *outputs) {\n  attn_status status;\n",
          n, n, n);
  for (uint32_t i = 0; i < plan->input_count; i++) {
    char field[256];
    attn_aot_identifier(plan->inputs[i].name, field, sizeof(field));
    const attn_plan_value *v = &plan->values[plan->inputs[i].value];
    fprintf(out,
            "  if ((status = attn_session_set_input(session, \"%s\", (attn_dtype)%d, %u, "
            "inputs->%s_dims, inputs->%s)) != ATTN_OK)\n    return status;\n",
            plan->inputs[i].name, (int)v->dtype, v->rank, field, field);
  }
  fprintf(out, "  if ((status = attn_session_run(session)) != ATTN_OK)\n    return status;\n");
  for (uint32_t o = 0; o < plan->output_count; o++) {
    char field[256];
    attn_aot_identifier(plan->outputs[o].name, field, sizeof(field));
    fprintf(out,
            "  const void *data_%s;\n"
            "  if ((status = attn_session_output(session, \"%s\", NULL, NULL, "
            "outputs->%s_dims, &data_%s)) != ATTN_OK)\n    return status;\n"
            "  outputs->%s = data_%s;\n",
            field, plan->outputs[o].name, field, field, field, field);
  }
  fprintf(out, "  return ATTN_OK;\n}\n");
}

attn_status attn_aot_write_source(const attn_aot_linked_source *source, const char *path,
                                  attn_diag *diag) {
  const attn_plan *plan = source->plan;
  const char *n = source->name;
  if (strchr(source->artifact_path, '"') || strchr(source->artifact_path, '\\'))
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "the build directory '%s' has a quote or backslash in its path",
                           source->artifact_path);
  FILE *out = fopen(path, "w");
  if (!out)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "cannot write '%s': %s", path,
                           strerror(errno));
  fprintf(out, "// The model '%s' linked into a program; generated by attnc.\n", n);
  fprintf(out, "#include <stddef.h>\n#include <stdint.h>\n\n#include \"attn/runtime.h\"\n");
  if (!source->with_main)
    fprintf(out, "#include \"%s.h\"\n", n);
  // The artifact (plan and weights) as read-only data, aligned as its blobs expect.
  fprintf(out,
          "\n__asm__(\".section .rodata\\n\"\n        \".balign 64\\n\"\n"
          "        \".globl %s_artifact_begin\\n\"\n        \".hidden %s_artifact_begin\\n\"\n"
          "        \"%s_artifact_begin:\\n\"\n        \".incbin \\\"%s\\\"\\n\"\n"
          "        \".previous\\n\");\n"
          "extern const unsigned char %s_artifact_begin[];\n\n",
          n, n, n, source->artifact_path, n);
  for (uint32_t f = 0; f < plan->function_count; f++)
    fprintf(out, "void %s(void);\n", plan->functions[f]);
  fprintf(out, "\nstatic const attn_linked_function functions[] = {\n");
  for (uint32_t f = 0; f < plan->function_count; f++)
    fprintf(out, "    {\"%s\", %s},\n", plan->functions[f], plan->functions[f]);
  if (plan->function_count == 0)
    fprintf(out, "    {NULL, NULL},\n");
  // A constant: threads may open the model at once.
  fprintf(
      out,
      "};\n\nstatic const attn_linked_model model = {%s_artifact_begin, %zu, functions, %u};\n\n"
      "%sconst attn_linked_model *%s_linked_model(void) {\n  return &model;\n}\n\n",
      n, source->artifact_size, plan->function_count, source->with_main ? "static " : "", n);
  if (source->with_main) {
    fprintf(out,
            "int main(int argc, char **argv) {\n"
            "  return attn_standalone_main(argc, argv, %s_linked_model());\n}\n",
            n);
  } else {
    fprintf(out,
            "attn_status %s_open(attn_model **out_model, attn_error *error) {\n"
            "  return attn_model_open_linked(%s_linked_model(), NULL, out_model, error);\n}\n\n",
            n, n);
    write_run(out, source);
  }
  if (fclose(out) != 0)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_IO, "cannot write '%s'", path);
  return ATTN_OK;
}
