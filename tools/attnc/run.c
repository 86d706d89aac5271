// `attnc run` and `attnc bench`: parse a model, bind its weights and inputs, run it on a backend
// (the reference evaluator `interp`, or the compiled kernels of `cpu`), and write or summarise
// the outputs; `bench` runs it repeatedly and reports per-kernel times and the median run.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codegen/cpu/backend.h"
#include "frontend/bind.h"
#include "ir/interp.h"
#include "runtime/api/standalone.h"
#include "runtime/base/allocator.h"
#include "runtime/tensor/npy.h"
#include "tools/attnc/cli.h"

#define RUN_OPTIONS                                                                                \
  "  -w WEIGHTS        a .safetensors file, or a Hugging Face model directory (config.json\n"      \
  "                    + model.safetensors or sharded *.safetensors + index); its\n"               \
  "                    config.json feeds config.* in MODEL\n"                                      \
  "  --config FILE     a config.json for config.* (with a plain .safetensors file)\n"              \
  "  -i NAME=FILE.npy  binds graph input NAME; every input must be bound (integer and float\n"     \
  "                    data are converted to the declared dtype: i32 ids feed an i64 input)\n"     \
  "  -b BACKEND        cpu (compiled kernels on every core; the default: no GPU backend is\n"      \
  "                    built yet), interp (the reference evaluator); cuda is not available\n"      \
  "  -p PASSES         the pass pipeline (see attnc opt --help); 'default' unless given,\n"        \
  "                    'none' runs the graph as written (cpu adds partition,plan-memory)\n"        \
  "  -D NAME=VALUE     the value of a symbolic dim (otherwise taken from the input shapes)\n"      \
  "  -h, --help        this text\n"

static const char usage[] =
    "usage: attnc run MODEL [-w WEIGHTS] [--config FILE] [-i NAME=FILE.npy]...\n"
    "                 [-o NAME=FILE.npy]... [-b cpu|interp|cuda] [-p PASSES] [-D NAME=VALUE]...\n"
    "\n"
    "Runs MODEL (.attn or .attnb) on the inputs and writes or summarises its outputs. A compiled\n"
    "MODEL.attnx (attnc compile --emit artifact) runs without compiling anything and takes\n"
    "-i, -o, --threads N, --iters N and --timing only.\n"
    "\n" RUN_OPTIONS
    "  -o NAME=FILE.npy  writes graph output NAME; outputs not written are summarised on\n"
    "                    stdout (type, min/max/mean, first values)\n"
    "\n"
    "The wall time of the run (and, for cpu, of compilation) is printed on stderr.\n";

static const char bench_usage[] =
    "usage: attnc bench MODEL [-w WEIGHTS] [--config FILE] [-i NAME=FILE.npy]...\n"
    "                   [-b cpu|interp] [-p PASSES] [-D NAME=VALUE]... [--iters N] [--warmup N]\n"
    "\n"
    "Runs MODEL --warmup times (default 2), then --iters times (default 10), and prints the\n"
    "compile time, the time of each kernel (cpu; mean per run, heaviest first, with how it ran)\n"
    "and, as its last line, median_ms=<the median wall time of one run>.\n"
    "\n" RUN_OPTIONS "  --iters N         timed runs (1 to 1000000)\n"
    "  --warmup N        untimed runs first (0 to 1000000)\n";

enum { LIST_TEXT_SIZE = 1024, TYPE_TEXT_SIZE = 160 };

typedef struct run_request {
  const char *model;
  const char *weights_path;
  const char *config_path;
  bool is_bench;
  bool time_passes;
  int64_t iters, warmup;
  const char *backend;
  const char *passes;
  attn_cli_binding *inputs;
  size_t input_count;
  attn_cli_binding *outputs;
  size_t output_count;
  attn_cli_binding *symbols;
  size_t symbol_count;
} run_request;

typedef struct run_state {
  attn_allocator allocator;
  attn_diag diag;
  attn_cli_model model;
  attn_tensor *inputs;  // graph->input_count, owned
  attn_tensor *outputs; // graph->output_count, owned
  int64_t *symbol_values;
} run_state;

static attn_status check_backend(const char *backend, attn_diag *diag) {
  if (strcmp(backend, "interp") == 0 || strcmp(backend, "cpu") == 0)
    return ATTN_OK;
  return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_UNSUPPORTED,
                         "backend '%s' is not available yet in this build; use -b cpu or -b interp",
                         backend);
}

static bool find_input(const attn_graph *graph, const char *name, uint32_t *out_index) {
  for (uint32_t i = 0; i < graph->input_count; i++) {
    const char *input = attn_graph_value(graph, graph->inputs[i])->name;
    if (input && strcmp(input, name) == 0) {
      *out_index = i;
      return true;
    }
  }
  return false;
}

static bool find_output(const attn_graph *graph, const char *name, uint32_t *out_index) {
  for (uint32_t i = 0; i < graph->output_count; i++) {
    if (graph->output_names[i] && strcmp(graph->output_names[i], name) == 0) {
      *out_index = i;
      return true;
    }
  }
  return false;
}

// Checks every -o name before anything runs, so a typo does not cost a whole evaluation.
static attn_status check_output_names(const attn_graph *graph, const run_request *request,
                                      attn_diag *diag) {
  for (size_t i = 0; i < request->output_count; i++) {
    uint32_t index;
    if (!find_output(graph, request->outputs[i].name, &index)) {
      char names[LIST_TEXT_SIZE];
      attn_cli_format_outputs(graph, names, sizeof(names));
      return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_NOT_FOUND,
                             "-o %s: the graph has no output '%s'; its outputs: %s",
                             request->outputs[i].name, request->outputs[i].name, names);
    }
  }
  return ATTN_OK;
}

// Binds (or checks) the symbols that are whole dims of input `index` from the data's shape.
static attn_status bind_input_symbols(const attn_graph *graph, uint32_t index,
                                      const attn_tensor *data, const char *file, attn_diag *diag,
                                      int64_t *symbol_values) {
  const attn_value *input = attn_graph_value(graph, graph->inputs[index]);
  for (uint32_t d = 0; d < input->type.rank; d++) {
    attn_dim dim = input->type.dims[d];
    if (attn_dim_is_constant(dim)) {
      if (dim != data->dims[d])
        return attn_diag_error(diag, (attn_loc){file, 0, 0}, ATTN_ERROR_INVALID_ARGUMENT,
                               "input '%s': dim %u is %lld, but the model declares %lld",
                               input->name, d, (long long)data->dims[d], (long long)dim);
      continue;
    }
    const attn_dim_expr *expr = attn_graph_dim_expr(graph, dim);
    if (expr->kind != ATTN_DIM_SYMBOL)
      continue; // T_past + T and the like: the evaluator checks them once all symbols are known
    int64_t *value = &symbol_values[expr->symbol];
    if (*value >= 0 && *value != data->dims[d])
      return attn_diag_error(diag, (attn_loc){file, 0, 0}, ATTN_ERROR_INVALID_ARGUMENT,
                             "input '%s': dim %u is %lld, but %s is already %lld", input->name, d,
                             (long long)data->dims[d], expr->name, (long long)*value);
    *value = data->dims[d];
  }
  return ATTN_OK;
}

// Reads one -i file into inputs[index]. Float data of another float dtype is converted here;
// integer data of another integer dtype (i32 ids for an i64 input) is converted by the
// evaluator, which checks that the values fit.
static attn_status load_input(run_state *state, uint32_t index, const char *file) {
  const attn_graph *graph = state->model.graph;
  const attn_value *input = attn_graph_value(graph, graph->inputs[index]);
  attn_loc loc = {file, 0, 0};
  attn_tensor data;
  ATTN_RETURN_IF_ERROR(attn_npy_read(file, state->allocator, &state->diag, &data));
  bool is_float = attn_dtype_is_float(data.dtype);
  bool same_kind = data.dtype == input->type.dtype ||
                   (data.dtype != ATTN_DTYPE_BOOL && input->type.dtype != ATTN_DTYPE_BOOL &&
                    is_float == attn_dtype_is_float(input->type.dtype));
  attn_status status = ATTN_OK;
  if (data.rank != input->type.rank || !same_kind) {
    char declared[TYPE_TEXT_SIZE], actual[TYPE_TEXT_SIZE];
    attn_graph_type_format(graph, &input->type, declared, sizeof(declared));
    attn_tensor_format_type(data.dtype, data.rank, data.dims, actual, sizeof(actual));
    status = attn_diag_error(&state->diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "input '%s' is declared %s, but the file holds %s", input->name,
                             declared, actual);
  }
  if (status == ATTN_OK)
    status = bind_input_symbols(graph, index, &data, file, &state->diag, state->symbol_values);
  if (status == ATTN_OK && is_float && data.dtype != input->type.dtype) {
    attn_tensor converted;
    status =
        attn_tensor_alloc(state->allocator, input->type.dtype, data.rank, data.dims, &converted);
    if (status != ATTN_OK) {
      status = attn_diag_error(&state->diag, loc, status, "out of memory converting input '%s'",
                               input->name);
    } else {
      attn_tensor_convert(&data, &converted);
      attn_tensor_free(state->allocator, &data);
      data = converted;
    }
  }
  if (status != ATTN_OK) {
    attn_tensor_free(state->allocator, &data);
    return status;
  }
  state->inputs[index] = data;
  return ATTN_OK;
}

static attn_status load_inputs(run_state *state, const run_request *request) {
  const attn_graph *graph = state->model.graph;
  char names[LIST_TEXT_SIZE];
  for (size_t i = 0; i < request->input_count; i++) {
    const attn_cli_binding *b = &request->inputs[i];
    uint32_t index;
    if (!find_input(graph, b->name, &index)) {
      attn_cli_format_inputs(graph, names, sizeof(names));
      return attn_diag_error(&state->diag, attn_cli_loc, ATTN_ERROR_NOT_FOUND,
                             "-i %s: the graph has no input '%s'; its inputs: %s", b->name, b->name,
                             names);
    }
    if (state->inputs[index].data)
      return attn_diag_error(&state->diag, attn_cli_loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "input '%s' is bound twice", b->name);
    ATTN_RETURN_IF_ERROR(load_input(state, index, b->value));
  }
  for (uint32_t i = 0; i < graph->input_count; i++) {
    if (!state->inputs[i].data) {
      const char *name = attn_graph_value(graph, graph->inputs[i])->name;
      return attn_diag_error(&state->diag, attn_cli_loc, ATTN_ERROR_INVALID_ARGUMENT,
                             "input '%s' is not bound; pass -i %s=FILE.npy", name, name);
    }
  }
  return ATTN_OK;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

// One output on stdout: its type, min/max/mean over the finite values, how many are not
// finite, and the first few values.
static attn_status write_outputs(run_state *state, const run_request *request) {
  const attn_graph *graph = state->model.graph;
  for (size_t i = 0; i < request->output_count; i++) {
    uint32_t index;
    if (find_output(graph, request->outputs[i].name, &index)) // check_output_names made sure
      ATTN_RETURN_IF_ERROR(
          attn_npy_write(request->outputs[i].value, &state->outputs[index], &state->diag));
  }
  for (uint32_t o = 0; o < graph->output_count; o++) {
    bool is_written = false;
    for (size_t i = 0; i < request->output_count && !is_written; i++)
      is_written = strcmp(request->outputs[i].name, graph->output_names[o]) == 0;
    if (!is_written)
      attn_tensor_print_summary(stdout, graph->output_names[o], &state->outputs[o]);
  }
  return ATTN_OK;
}

static attn_status run_once(run_state *state, const run_request *request,
                            const attn_interp_args *args) {
  const attn_graph *graph = state->model.graph;
  for (uint32_t i = 0; i < graph->output_count; i++)
    attn_tensor_free(state->allocator, &state->outputs[i]);
  if (state->model.program)
    return attn_cpu_program_run(state->model.program, args, state->allocator, &state->diag,
                                state->outputs);
  (void)request;
  return attn_interp_run(graph, args, state->allocator, &state->diag, state->outputs);
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int compare_step_time(const void *a, const void *b) {
  const attn_cpu_step_info *x = a, *y = b;
  return x->run_seconds > y->run_seconds ? -1 : x->run_seconds < y->run_seconds;
}

// The per-kernel table of `attnc bench`: mean time per run of each kernel, heaviest first, and
// the totals of each way of running one.
static void report_steps(const attn_cpu_program *program, int64_t iters) {
  enum { SHOWN = 30 };
  uint32_t count = attn_cpu_program_step_count(program);
  attn_cpu_step_info *steps = calloc(count + 1, sizeof(*steps));
  if (!steps)
    return;
  double by_impl[ATTN_CPU_STEP_IMPL_COUNT] = {0}, compile = 0;
  uint32_t impl_count[ATTN_CPU_STEP_IMPL_COUNT] = {0};
  for (uint32_t i = 0; i < count; i++) {
    steps[i] = attn_cpu_program_step(program, i);
    by_impl[steps[i].impl] += steps[i].run_seconds;
    impl_count[steps[i].impl]++;
    compile += steps[i].compile_seconds;
  }
  qsort(steps, count, sizeof(*steps), compare_step_time);
  printf("%-6s %-12s %-10s %10s  %s\n", "kernel", "kind", "impl", "ms/run", "function");
  for (uint32_t i = 0; i < count && i < SHOWN; i++)
    printf("k%-5u %-12s %-10s %10.3f  %s\n", steps[i].kernel, attn_kernel_kind_name(steps[i].kind),
           attn_cpu_step_impl_name(steps[i].impl), steps[i].run_seconds * 1e3 / (double)iters,
           steps[i].function ? steps[i].function : "-");
  if (count > SHOWN)
    printf("... and %u more kernels\n", count - SHOWN);
  for (int impl = 0; impl < ATTN_CPU_STEP_IMPL_COUNT; impl++)
    if (impl_count[impl])
      printf("total %-10s %4u kernels %10.3f ms/run\n",
             attn_cpu_step_impl_name((attn_cpu_step_impl)impl), impl_count[impl],
             by_impl[impl] * 1e3 / (double)iters);
  printf("kernel code generation and compilation: %.1f ms\n", compile * 1e3);
  free(steps);
}

// The code generation lines of --time-passes, in the pass table's form: for each way kernels
// run, its generation and compilation time, its kernels, and the functions it compiled (kernels
// that share a spec share one; functions found in the disk cache cost only their loading).
static void report_codegen(const attn_cpu_program *program, double compile_ms) {
  double ms[ATTN_CPU_STEP_IMPL_COUNT] = {0};
  uint32_t kernels[ATTN_CPU_STEP_IMPL_COUNT] = {0}, compiled[ATTN_CPU_STEP_IMPL_COUNT] = {0};
  for (uint32_t i = 0; i < attn_cpu_program_step_count(program); i++) {
    attn_cpu_step_info step = attn_cpu_program_step(program, i);
    ms[step.impl] += step.compile_seconds * 1e3;
    kernels[step.impl]++;
    compiled[step.impl] += step.compile_seconds > 0;
  }
  for (int impl = 0; impl < ATTN_CPU_STEP_IMPL_COUNT; impl++) {
    if (!kernels[impl])
      continue;
    char name[32];
    snprintf(name, sizeof(name), "codegen %s", attn_cpu_step_impl_name((attn_cpu_step_impl)impl));
    fprintf(stderr, "# %-24s %10.3f %8u kernels, %u functions compiled or loaded\n", name, ms[impl],
            kernels[impl], compiled[impl]);
  }
  fprintf(stderr, "# %-24s %10.3f\n", "codegen total", compile_ms);
}

static attn_status run(run_state *state, const run_request *request) {
  attn_allocator allocator = state->allocator;
  attn_diag *diag = &state->diag;
  ATTN_RETURN_IF_ERROR(check_backend(request->backend, diag));
  bool is_cpu = strcmp(request->backend, "cpu") == 0;
  attn_pipeline_run_options pass_options = {.time_passes = request->time_passes};
  ATTN_RETURN_IF_ERROR(
      attn_cli_parse_passes(request->passes, &pass_options, diag, &state->model.pipeline));
  ATTN_RETURN_IF_ERROR(attn_cli_load(request->model, request->weights_path, request->config_path,
                                     allocator, diag, &state->model.weights, &state->model.config,
                                     &state->model.graph));
  attn_graph *graph = state->model.graph;
  ATTN_RETURN_IF_ERROR(check_output_names(graph, request, diag));

  state->symbol_values = calloc(graph->symbol_count + 1, sizeof(*state->symbol_values));
  state->inputs = calloc(graph->input_count + 1, sizeof(*state->inputs));
  state->outputs = calloc(graph->output_count + 1, sizeof(*state->outputs));
  if (!state->symbol_values || !state->inputs || !state->outputs)
    return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (uint32_t i = 0; i < graph->symbol_count; i++)
    state->symbol_values[i] = -1;
  ATTN_RETURN_IF_ERROR(attn_cli_bind_symbols(graph, request->symbols, request->symbol_count, diag,
                                             state->symbol_values));
  // Inputs first, so their shapes are checked against -D (and bind the other symbols) before
  // any pass specialises on them; passes before weights, which are bound by node id.
  ATTN_RETURN_IF_ERROR(load_inputs(state, request));
  pass_options.symbol_values = state->symbol_values;
  ATTN_RETURN_IF_ERROR(attn_pipeline_run(&state->model.pipeline, graph, &pass_options));
  if (is_cpu)
    ATTN_RETURN_IF_ERROR(attn_cli_plan_for_cpu(state->model.graph, &pass_options, &state->diag));
  ATTN_RETURN_IF_ERROR(attn_cli_require_weights(graph, state->model.weights, diag));
  if (state->model.weights)
    ATTN_RETURN_IF_ERROR(
        attn_bind_weights(graph, state->model.weights, allocator, diag, &state->model.bound));

  double compile_ms = 0;
  if (is_cpu) {
    double start = now_ms();
    ATTN_RETURN_IF_ERROR(attn_cpu_backend_create(NULL, allocator, diag, &state->model.cpu));
    ATTN_RETURN_IF_ERROR(attn_cpu_program_compile(state->model.cpu, graph, &state->model.program));
    compile_ms = now_ms() - start;
    if (request->time_passes)
      report_codegen(state->model.program, compile_ms);
  }
  attn_interp_args args = {
      .inputs = state->inputs,
      .weights = state->model.bound.by_node,
      .symbol_values = state->symbol_values,
  };
  int64_t runs = request->is_bench ? request->warmup + request->iters : 1;
  double *times = calloc((size_t)runs + 1, sizeof(*times));
  if (!times)
    return attn_diag_error(diag, attn_cli_loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  attn_status status = ATTN_OK;
  for (int64_t r = 0; r < runs && status == ATTN_OK; r++) {
    if (state->model.program && request->is_bench && r == request->warmup)
      attn_cpu_program_reset_times(state->model.program);
    double start = now_ms();
    status = run_once(state, request, &args);
    times[r] = now_ms() - start;
  }
  if (status == ATTN_OK && !request->is_bench) {
    status = write_outputs(state, request);
    fflush(stdout);
    if (is_cpu)
      fprintf(stderr, "cpu: compile %.1f ms, run %.1f ms\n", compile_ms, times[0]);
    else
      fprintf(stderr, "interp: %.1f ms\n", times[0]);
  } else if (status == ATTN_OK) {
    double *timed = times + request->warmup;
    qsort(timed, (size_t)request->iters, sizeof(*timed), compare_doubles);
    int64_t half = request->iters / 2;
    double median = request->iters % 2 ? timed[half] : 0.5 * (timed[half - 1] + timed[half]);
    printf("backend %s, %lld runs after %lld warmup; compile %.1f ms\n", request->backend,
           (long long)request->iters, (long long)request->warmup, compile_ms);
    if (state->model.program)
      report_steps(state->model.program, request->iters);
    printf("min_ms=%.3f\nmedian_ms=%.3f\n", timed[0], median);
    fflush(stdout);
  }
  free(times);
  return status;
}

static void run_state_deinit(run_state *state) {
  const attn_graph *graph = state->model.graph;
  for (uint32_t i = 0; graph && state->outputs && i < graph->output_count; i++)
    attn_tensor_free(state->allocator, &state->outputs[i]);
  for (uint32_t i = 0; graph && state->inputs && i < graph->input_count; i++)
    attn_tensor_free(state->allocator, &state->inputs[i]);
  free(state->outputs);
  free(state->inputs);
  free(state->symbol_values);
  attn_cli_model_deinit(&state->model, state->allocator);
  attn_diag_deinit(&state->diag);
}

static bool parse_count(const char *text, int64_t min, int64_t *out_value) {
  return attn_cli_parse_int(text, out_value) && *out_value >= min && *out_value <= 1000000;
}

static int run_command(const char *command, const char *command_usage, bool is_bench, int argc,
                       char **argv) {
  run_request request = {.backend = "cpu", .passes = "default", .is_bench = is_bench};
  const char *iters = "10", *warmup = "2";
  request.inputs = calloc((size_t)argc, sizeof(*request.inputs));
  request.outputs = calloc((size_t)argc, sizeof(*request.outputs));
  request.symbols = calloc((size_t)argc, sizeof(*request.symbols));
  int exit_code = ATTN_EXIT_OK;
  bool is_ready = false;
  if (!request.inputs || !request.outputs || !request.symbols) {
    fprintf(stderr, "attnc %s: out of memory\n", command);
    exit_code = ATTN_EXIT_ERROR;
  }
  attn_cli_option options[9] = {
      {"-w", &request.weights_path, NULL, NULL, NULL},
      {"--config", &request.config_path, NULL, NULL, NULL},
      {"-i", NULL, request.inputs, &request.input_count, NULL},
      {"-b", &request.backend, NULL, NULL, NULL},
      {"-p", &request.passes, NULL, NULL, NULL},
      {"-D", NULL, request.symbols, &request.symbol_count, NULL},
      {"--time-passes", NULL, NULL, NULL, &request.time_passes},
  };
  size_t option_count = 7;
  if (is_bench) {
    options[option_count++] = (attn_cli_option){"--iters", &iters, NULL, NULL, NULL};
    options[option_count++] = (attn_cli_option){"--warmup", &warmup, NULL, NULL, NULL};
  } else {
    options[option_count++] =
        (attn_cli_option){"-o", NULL, request.outputs, &request.output_count, NULL};
  }
  if (exit_code == ATTN_EXIT_OK) {
    attn_cli_parse_result parsed =
        attn_cli_parse(command, command_usage, argc, argv, options, option_count, &request.model);
    if (parsed == ATTN_CLI_BAD_USAGE)
      exit_code = ATTN_EXIT_USAGE;
    else if (parsed == ATTN_CLI_PARSED && strcmp(request.backend, "interp") != 0 &&
             strcmp(request.backend, "cpu") != 0 && strcmp(request.backend, "cuda") != 0)
      exit_code = attn_cli_usage_error(command, "unknown backend '%s'; valid: cpu, interp, cuda",
                                       request.backend);
    else if (parsed == ATTN_CLI_PARSED && is_bench && !parse_count(iters, 1, &request.iters))
      exit_code = attn_cli_usage_error(command,
                                       "--iters wants an integer from 1 to 1000000, not "
                                       "'%s'",
                                       iters);
    else if (parsed == ATTN_CLI_PARSED && is_bench && !parse_count(warmup, 0, &request.warmup))
      exit_code = attn_cli_usage_error(command,
                                       "--warmup wants an integer from 0 to 1000000, "
                                       "not '%s'",
                                       warmup);
    else
      is_ready = parsed == ATTN_CLI_PARSED;
  }
  if (is_ready) {
    run_state state = {.allocator = attn_allocator_system()};
    attn_diag_init(&state.diag, state.allocator);
    attn_status status = run(&state, &request);
    attn_diag_write(&state.diag, stderr);
    run_state_deinit(&state);
    exit_code = status == ATTN_OK ? ATTN_EXIT_OK : ATTN_EXIT_ERROR;
  }
  free(request.symbols);
  free(request.outputs);
  free(request.inputs);
  return exit_code;
}

// Whether `path` names a compiled artifact.
static bool is_artifact(const char *path) {
  size_t length = strlen(path);
  return length > 6 && strcmp(path + length - 6, ".attnx") == 0;
}

// `attnc run MODEL.attnx ...`: the runtime alone runs it, with the flags of a standalone program
// (-i, -o, --threads, --iters, --timing): nothing is compiled, so -w, -b, -p and -D do not apply.
static int run_artifact(int argc, char **argv, int model_index) {
  double start = attn_standalone_now();
  const char *path = argv[model_index];
  attn_model *model = NULL;
  attn_error error;
  if (attn_model_open(path, NULL, &model, &error) != ATTN_OK) {
    fprintf(stderr, "attnc run: %s\n", error.message);
    return ATTN_EXIT_ERROR;
  }
  // The flags without the model: argv[0] stays, as a program's name would.
  char **flags = calloc((size_t)argc + 1, sizeof(char *));
  int status = ATTN_EXIT_ERROR;
  if (flags) {
    int count = 0;
    for (int a = 0; a < argc; a++)
      if (a != model_index)
        flags[count++] = argv[a];
    status = attn_standalone_run("attnc run", model, count, flags, start);
  }
  free(flags);
  attn_model_close(model);
  return status;
}

int attn_tool_run(int argc, char **argv) {
  for (int a = 1; a < argc; a++) {
    bool is_value = a > 1 && argv[a - 1][0] == '-' && strcmp(argv[a - 1], "--timing") != 0;
    if (!is_value && is_artifact(argv[a]))
      return run_artifact(argc, argv, a);
  }
  return run_command("run", usage, false, argc, argv);
}

int attn_tool_bench(int argc, char **argv) {
  return run_command("bench", bench_usage, true, argc, argv);
}
