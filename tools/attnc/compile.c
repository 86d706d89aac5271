// `attnc compile`: a model compiled ahead of time for the cpu backend, as a .attnx artifact, a
// standalone executable, or a static library with a header. The graph goes through the passes
// and the cpu backend as for `attnc run`; the kernels' object code is kept and linked by the
// system C compiler with the runtime (libattnrt.a), which attnc finds beside itself: in
// PREFIX/lib when installed, else in its build tree.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codegen/cpu/aot.h"
#include "codegen/cpu/backend.h"
#include "frontend/bind.h"
#include "runtime/artifact/artifact.h"
#include "runtime/base/allocator.h"
#include "runtime/tensor/io.h"
#include "tools/attnc/cli.h"

static const char compile_usage[] =
    "usage: attnc compile MODEL -o OUT [--emit exe|artifact|static-lib] [-w WEIGHTS]\n"
    "                     [--config FILE] [-p PASSES] [-D NAME=VALUE]... [--weights-external]\n"
    "                     [--name NAME]\n"
    "\n"
    "Compiles MODEL (.attn or .attnb) with its weights for the cpu backend, ahead of time:\n"
    "  --emit exe         (the default) the executable OUT: the runtime, the kernels and the\n"
    "                     weights in one program that needs no attnc, LLVM or MLIR; it takes the\n"
    "                     -i/-o flags of attnc run (see OUT --help)\n"
    "  --emit artifact    OUT, a .attnx artifact: attnc run OUT, or attn_model_open in a program\n"
    "  --emit static-lib  OUT's directory gets libNAME.a and NAME.h (NAME: OUT's base name, or\n"
    "                     --name): NAME_open and NAME_run with typed inputs and outputs; link\n"
    "                     it with libattnrt.a (pkg-config attnc, or find_package(attnc))\n"
    "\n"
    "  -w WEIGHTS         a .safetensors file, or a Hugging Face model directory\n"
    "  --config FILE      a config.json for config.* (with a plain .safetensors file)\n"
    "  -p PASSES          the pass pipeline (see attnc opt --help); 'default' unless given\n"
    "  -D NAME=VALUE      fixes symbol NAME (the kernels specialise on it)\n"
    "  --weights-external the weights go to OUT.safetensors beside OUT (its base name is\n"
    "                     recorded, with a checksum) instead of into OUT\n"
    "  --name NAME        the C name of a static library's symbols\n"
    "\n"
    "Kernels are compiled for this machine's CPU; the result refuses to run on a CPU without\n"
    "its vector features. Linking uses the C compiler $CC (default cc).\n";

// Room in a link command for what is not an object: flags, sources, libraries.
enum { LINK_ARGS = 32 };

typedef struct compile_request {
  const char *model, *out, *emit, *weights_path, *config_path, *passes, *name;
  bool weights_external;
  attn_cli_binding *symbols;
  size_t symbol_count;
} compile_request;

typedef struct compile_state {
  attn_allocator allocator;
  attn_diag diag;
  attn_cli_model model;
  int64_t *symbol_values;
  attn_tensor *converted; // per constant: weights converted to their declared dtype
  attn_aot_dir dir;
  bool has_dir;
} compile_state;

// ---- where the runtime is --------------------------------------------------------------------

static bool file_exists(const char *path) {
  return access(path, R_OK) == 0;
}

// The runtime library and the include directory: PREFIX/lib and PREFIX/include of an installed
// attnc (PREFIX/bin/attnc), else those of the build tree it was built in.
static attn_status find_runtime(attn_diag *diag, char *library, char *include, size_t size) {
  char dir[PATH_MAX];
  if (attn_io_program_dir(dir, sizeof(dir))) {
    snprintf(library, size, "%s/../lib/libattnrt.a", dir);
    snprintf(include, size, "%s/../include", dir);
    char header[PATH_MAX + 64];
    snprintf(header, sizeof(header), "%s/attn/runtime.h", include);
    if (file_exists(library) && file_exists(header))
      return ATTN_OK;
  }
  snprintf(library, size, "%s", ATTN_BUILD_RUNTIME_LIBRARY);
  snprintf(include, size, "%s", ATTN_SOURCE_INCLUDE_DIR);
  if (file_exists(library))
    return ATTN_OK;
  return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_NOT_FOUND,
                         "cannot find libattnrt.a beside attnc (in ../lib) or in its build tree "
                         "(%s)",
                         ATTN_BUILD_RUNTIME_LIBRARY);
}

static attn_status copy_file(const char *from, const char *to, attn_diag *diag) {
  char *bytes;
  size_t size;
  ATTN_RETURN_IF_ERROR(attn_io_read_file(from, attn_allocator_system(), diag, &bytes, &size));
  FILE *out = fopen(to, "wb");
  bool ok = out && fwrite(bytes, 1, size, out) == size;
  ok = out && fclose(out) == 0 && ok;
  attn_allocator_free(attn_allocator_system(), bytes, size + 1);
  if (!ok)
    return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_IO, "cannot write '%s'", to);
  return ATTN_OK;
}

// ---- compiling -------------------------------------------------------------------------------

// Gives every constant of a weight its data, converted to the declared dtype when the weights
// file holds another (bf16 checkpoints for f32 models).
static attn_status bind_constants(compile_state *state) {
  attn_plan *plan = (attn_plan *)attn_cpu_program_plan(state->model.program);
  state->converted = calloc(plan->constant_count + 1, sizeof(attn_tensor));
  if (!state->converted)
    return attn_diag_error(&state->diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (uint32_t c = 0; c < plan->constant_count; c++) {
    attn_plan_constant *constant = &plan->constants[c];
    uint32_t node = attn_cpu_program_constant_node(state->model.program, c);
    if (state->model.graph->nodes[node].op != ATTN_OP_WEIGHT)
      continue;
    const attn_tensor *weight =
        state->model.bound.by_node ? &state->model.bound.by_node[node] : NULL;
    if (!weight || !weight->data)
      return attn_diag_error(&state->diag, state->model.graph->nodes[node].loc,
                             ATTN_ERROR_NOT_FOUND, "weight '%s' has no data", constant->name);
    if (weight->dtype == constant->dtype) {
      constant->data = weight->data;
      continue;
    }
    attn_tensor *converted = &state->converted[c];
    if (attn_tensor_alloc_uninit(state->allocator, constant->dtype, constant->rank, constant->dims,
                                 converted) != ATTN_OK)
      return attn_diag_error(&state->diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    attn_tensor_convert(weight, converted);
    constant->data = converted->data;
  }
  return ATTN_OK;
}

// Refuses a plan that needs the compiler at run time.
static attn_status check_no_host_steps(const compile_state *state, const attn_plan *plan) {
  for (uint32_t s = 0; s < plan->step_count; s++) {
    if (plan->steps[s].kind != ATTN_PLAN_STEP_HOST)
      continue;
    uint32_t kernel = plan->steps[s].kernel;
    return attn_diag_error(
        (attn_diag *)&state->diag, attn_cli_loc, ATTN_ERROR_UNSUPPORTED,
        "kernel k%u (%s) has no generated code on the cpu backend, and a compiled program "
        "cannot carry the reference evaluator",
        kernel, attn_kernel_kind_name(state->model.graph->kernels[kernel].kind));
  }
  return ATTN_OK;
}

static attn_status prepare(compile_state *state, const compile_request *request) {
  attn_allocator allocator = state->allocator;
  attn_diag *diag = &state->diag;
  attn_pipeline_run_options pass_options = {0};
  ATTN_RETURN_IF_ERROR(
      attn_cli_parse_passes(request->passes, &pass_options, diag, &state->model.pipeline));
  ATTN_RETURN_IF_ERROR(attn_cli_load(request->model, request->weights_path, request->config_path,
                                     allocator, diag, &state->model.weights, &state->model.config,
                                     &state->model.graph));
  attn_graph *graph = state->model.graph;
  state->symbol_values = calloc(graph->symbol_count + 1, sizeof(int64_t));
  if (!state->symbol_values)
    return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (uint32_t i = 0; i < graph->symbol_count; i++)
    state->symbol_values[i] = -1;
  ATTN_RETURN_IF_ERROR(attn_cli_bind_symbols(graph, request->symbols, request->symbol_count, diag,
                                             state->symbol_values));
  pass_options.symbol_values = state->symbol_values;
  ATTN_RETURN_IF_ERROR(attn_pipeline_run(&state->model.pipeline, graph, &pass_options));
  ATTN_RETURN_IF_ERROR(attn_cli_plan_for_cpu(graph, &pass_options, diag));
  ATTN_RETURN_IF_ERROR(attn_cli_require_weights(graph, state->model.weights, diag));
  if (state->model.weights)
    ATTN_RETURN_IF_ERROR(
        attn_bind_weights(graph, state->model.weights, allocator, diag, &state->model.bound));
  attn_cpu_backend_options options = {.keep_objects = true, .thread_count = 1};
  ATTN_RETURN_IF_ERROR(attn_cpu_backend_create(&options, allocator, diag, &state->model.cpu));
  ATTN_RETURN_IF_ERROR(attn_cpu_program_compile(state->model.cpu, graph, &state->model.program));
  ATTN_RETURN_IF_ERROR(check_no_host_steps(state, attn_cpu_program_plan(state->model.program)));
  ATTN_RETURN_IF_ERROR(bind_constants(state));
  ATTN_RETURN_IF_ERROR(attn_aot_dir_create(&state->dir, diag));
  state->has_dir = true;
  return attn_aot_write_objects(state->model.cpu, attn_cpu_program_plan(state->model.program),
                                &state->dir, diag);
}

// Writes the artifact to `path`: with the kernels as a shared object, or without them (a program
// that links them in); the weights embedded or in `weights_file`.
static attn_status write_artifact(compile_state *state, const char *path, const char *name,
                                  bool with_code, const char *weights_file) {
  const attn_plan *plan = attn_cpu_program_plan(state->model.program);
  attn_cpu_backend_target target = attn_cpu_backend_get_target(state->model.cpu);
  attn_artifact_contents contents = {
      .plan = plan,
      .model_name = name,
      .cpu = {.target_triple = target.triple,
              .cpu = target.cpu,
              .features = target.features,
              .needs_avx2 = target.needs_avx2,
              .needs_fma = target.needs_fma,
              .needs_avx512f = target.needs_avx512f},
      .weights_file = weights_file,
  };
  char *object = NULL;
  size_t object_size = 0;
  if (with_code && plan->function_count) {
    char shared[PATH_MAX];
    snprintf(shared, sizeof(shared), "%s/kernels.so", state->dir.path);
    ATTN_RETURN_IF_ERROR(attn_aot_link_shared(plan, &state->dir, shared, &state->diag));
    ATTN_RETURN_IF_ERROR(
        attn_io_read_file(shared, state->allocator, &state->diag, &object, &object_size));
    contents.cpu.shared_object = object;
    contents.cpu.shared_object_size = object_size;
  }
  attn_status status = attn_artifact_write(&contents, path, &state->diag);
  attn_allocator_free(state->allocator, object, object_size + 1);
  return status;
}

// OUT without a final ".attnx" or ".a", then ".safetensors".
static void weights_path_for(const char *out, char *path, size_t size) {
  snprintf(path, size, "%s", out);
  char *dot = strrchr(path, '.');
  char *slash = strrchr(path, '/');
  if (dot && (!slash || dot > slash) &&
      (strcmp(dot, ".attnx") == 0 || strcmp(dot, ".a") == 0 || strcmp(dot, ".exe") == 0))
    *dot = '\0';
  size_t length = strlen(path);
  snprintf(path + length, size - length, ".safetensors");
}

// The C name of the model: --name, else OUT's base name made an identifier.
static void model_name(const compile_request *request, char *name, size_t size) {
  const char *base = request->name;
  if (!base) {
    const char *slash = strrchr(request->out, '/');
    base = slash ? slash + 1 : request->out;
  }
  // The base name up to its first '.', as a C identifier.
  char stem[128];
  snprintf(stem, sizeof(stem), "%.*s", (int)strcspn(base, "."), base);
  attn_aot_identifier(stem[0] ? stem : "model", name, size);
}

// Compiles the linked model's source (and links it into an executable or archives it).
static attn_status build_linked(compile_state *state, const compile_request *request,
                                const char *name, bool is_exe) {
  const attn_plan *plan = attn_cpu_program_plan(state->model.program);
  attn_diag *diag = &state->diag;
  char library[PATH_MAX], include[PATH_MAX], artifact[PATH_MAX], source_path[PATH_MAX];
  char weights[PATH_MAX], header[PATH_MAX], object[PATH_MAX];
  ATTN_RETURN_IF_ERROR(find_runtime(diag, library, include, sizeof(library)));
  snprintf(artifact, sizeof(artifact), "%s/model.attnx", state->dir.path);
  weights_path_for(request->out, weights, sizeof(weights));
  ATTN_RETURN_IF_ERROR(
      write_artifact(state, artifact, name, false, request->weights_external ? weights : NULL));
  struct stat artifact_stat;
  if (stat(artifact, &artifact_stat) != 0)
    return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_IO, "cannot read '%s'", artifact);
  attn_aot_linked_source source = {plan, name, artifact, (size_t)artifact_stat.st_size, is_exe};
  snprintf(source_path, sizeof(source_path), "%s/%s_model.c", state->dir.path, name);
  snprintf(header, sizeof(header), "%s/%s.h", state->dir.path, name);
  ATTN_RETURN_IF_ERROR(attn_aot_write_source(&source, source_path, diag));
  if (!is_exe)
    ATTN_RETURN_IF_ERROR(attn_aot_write_header(&source, header, diag));
  char include_flag[PATH_MAX + 8], dir_flag[PATH_MAX + 8];
  snprintf(include_flag, sizeof(include_flag), "-I%s", include);
  snprintf(dir_flag, sizeof(dir_flag), "-I%s", state->dir.path);
  size_t object_count = plan->function_count;
  const char **args = calloc(object_count + LINK_ARGS, sizeof(char *));
  char(*objects)[PATH_MAX] = calloc(object_count + 1, sizeof(*objects));
  attn_status status = ATTN_OK;
  if (!args || !objects)
    status = attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (size_t f = 0; f < object_count && status == ATTN_OK; f++)
    snprintf(objects[f], sizeof(objects[f]), "%s/k%zu.o", state->dir.path, f);
  size_t n = 0;
  if (status == ATTN_OK && is_exe) {
    args[n++] = "-O2";
    args[n++] = "-o";
    args[n++] = request->out;
    args[n++] = source_path;
    args[n++] = include_flag;
    for (size_t f = 0; f < object_count; f++)
      args[n++] = objects[f];
    args[n++] = library;
    args[n++] = "-lm";
    args[n++] = "-lpthread";
    args[n++] = "-ldl";
    // The link flags the runtime was built with (a sanitizer's), one word each.
    char link_flags[] = ATTN_RUNTIME_LINK_FLAGS;
    for (char *word = strtok(link_flags, " "); word && n + 1 < object_count + LINK_ARGS;
         word = strtok(NULL, " "))
      args[n++] = word;
    args[n] = NULL;
    status = attn_aot_cc(args, diag);
  } else if (status == ATTN_OK) {
    snprintf(object, sizeof(object), "%s/%s_model.o", state->dir.path, name);
    const char *cc_args[] = {"-O2",       "-fPIC",      "-c",     "-o", object,
                             source_path, include_flag, dir_flag, NULL};
    status = attn_aot_cc(cc_args, diag);
    char archive[PATH_MAX + 160], out_dir[PATH_MAX], out_header[PATH_MAX + 160];
    snprintf(out_dir, sizeof(out_dir), "%s", request->out);
    char *slash = strrchr(out_dir, '/');
    if (slash)
      slash[1] = '\0';
    else
      out_dir[0] = '\0';
    snprintf(archive, sizeof(archive), "%slib%s.a", out_dir, name);
    snprintf(out_header, sizeof(out_header), "%s%s.h", out_dir, name);
    remove(archive);
    // `cc` has no archiver mode: ar, from the same toolchain.
    args[n++] = "rcs";
    args[n++] = archive;
    args[n++] = object;
    for (size_t f = 0; f < object_count; f++)
      args[n++] = objects[f];
    args[n] = NULL;
    if (status == ATTN_OK)
      status = attn_aot_run("ar", args, diag);
    if (status == ATTN_OK)
      status = copy_file(header, out_header, diag);
    if (status == ATTN_OK)
      fprintf(stderr, "wrote %s and %s\n", archive, out_header);
  }
  free(args);
  free(objects);
  return status;
}

static attn_status compile(compile_state *state, const compile_request *request) {
  char name[128];
  model_name(request, name, sizeof(name));
  ATTN_RETURN_IF_ERROR(prepare(state, request));
  if (strcmp(request->emit, "artifact") == 0) {
    char weights[PATH_MAX];
    weights_path_for(request->out, weights, sizeof(weights));
    return write_artifact(state, request->out, name, true,
                          request->weights_external ? weights : NULL);
  }
  return build_linked(state, request, name, strcmp(request->emit, "exe") == 0);
}

static void compile_state_deinit(compile_state *state) {
  if (state->has_dir)
    attn_aot_dir_remove(&state->dir);
  const attn_plan *plan = state->model.program ? attn_cpu_program_plan(state->model.program) : NULL;
  for (uint32_t c = 0; plan && state->converted && c < plan->constant_count; c++)
    attn_tensor_free(state->allocator, &state->converted[c]);
  free(state->converted);
  free(state->symbol_values);
  attn_cli_model_deinit(&state->model, state->allocator);
  attn_diag_deinit(&state->diag);
}

int attn_tool_compile(int argc, char **argv) {
  compile_request request = {.emit = "exe", .passes = "default"};
  request.symbols = calloc((size_t)argc, sizeof(*request.symbols));
  if (!request.symbols) {
    fprintf(stderr, "attnc compile: out of memory\n");
    return ATTN_EXIT_ERROR;
  }
  attn_cli_option options[] = {
      {"-o", &request.out, NULL, NULL, NULL},
      {"--emit", &request.emit, NULL, NULL, NULL},
      {"-w", &request.weights_path, NULL, NULL, NULL},
      {"--config", &request.config_path, NULL, NULL, NULL},
      {"-p", &request.passes, NULL, NULL, NULL},
      {"-D", NULL, request.symbols, &request.symbol_count, NULL},
      {"--weights-external", NULL, NULL, NULL, &request.weights_external},
      {"--name", &request.name, NULL, NULL, NULL},
  };
  attn_cli_parse_result parsed =
      attn_cli_parse("compile", compile_usage, argc, argv, options,
                     sizeof(options) / sizeof(options[0]), &request.model);
  int exit_code = ATTN_EXIT_OK;
  if (parsed == ATTN_CLI_BAD_USAGE)
    exit_code = ATTN_EXIT_USAGE;
  else if (parsed == ATTN_CLI_PARSED && !request.out)
    exit_code = attn_cli_usage_error("compile", "-o OUT is required");
  else if (parsed == ATTN_CLI_PARSED && strcmp(request.emit, "exe") != 0 &&
           strcmp(request.emit, "artifact") != 0 && strcmp(request.emit, "static-lib") != 0)
    exit_code = attn_cli_usage_error("compile",
                                     "unknown --emit '%s'; valid: exe, artifact, "
                                     "static-lib",
                                     request.emit);
  if (parsed != ATTN_CLI_PARSED || exit_code != ATTN_EXIT_OK) {
    free(request.symbols);
    return exit_code;
  }
  compile_state state = {.allocator = attn_allocator_system()};
  attn_diag_init(&state.diag, state.allocator);
  attn_status status = compile(&state, &request);
  if (status != ATTN_OK) {
    attn_diag_write(&state.diag, stderr);
    exit_code = ATTN_EXIT_ERROR;
  }
  compile_state_deinit(&state);
  free(request.symbols);
  return exit_code;
}
