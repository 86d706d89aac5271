// The main() of standalone executables (`attnc compile --emit exe`): the flags of `attnc run`
// that make sense without a compiler, over the public API. Inputs are .npy files; outputs are
// written to .npy files or summarised on stdout, as `attnc run` does.
#include "runtime/api/standalone.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attn/runtime.h"
#include "runtime/base/allocator.h"
#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"
#include "runtime/tensor/npy.h"

enum { MAX_BINDINGS = 64 };

static const char usage[] =
    "usage: %s [-i NAME=FILE.npy]... [-o NAME=FILE.npy]... [--threads N] [--iters N]\n"
    "          [--timing] [--help]\n"
    "\n"
    "Runs the model '%s', compiled into this program by attnc, on .npy inputs.\n"
    "\n"
    "  -i NAME=FILE.npy  binds input NAME; every input must be bound (integer data is converted\n"
    "                    to the declared integer dtype)\n"
    "  -o NAME=FILE.npy  writes output NAME; outputs not written are summarised on stdout\n"
    "                    (type, min/max/mean, first values)\n"
    "  --threads N       threads of the run (default: $ATTN_NUM_THREADS, else one per core)\n"
    "  --iters N         runs the model N times (default 1) and reports the median on stderr\n"
    "  --timing          prints on stderr how long loading took and when the first kernel\n"
    "                    started, in ms since main() was entered and on CLOCK_MONOTONIC\n"
    "\n"
    "Inputs:\n";

typedef struct binding {
  const char *name, *path;
} binding;

typedef struct standalone {
  binding inputs[MAX_BINDINGS], outputs[MAX_BINDINGS];
  int input_count, output_count;
  long threads, iters;
  bool timing;
} standalone;

static double seconds_now(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

static void print_usage(const char *program, const attn_model *model) {
  printf(usage, program, attn_model_name(model));
  for (uint32_t i = 0; i < attn_model_input_count(model); i++) {
    attn_tensor_info info = attn_model_input(model, i);
    printf("  %s: %s[", info.name, attn_dtype_name(info.dtype));
    for (uint32_t d = 0; d < info.rank; d++)
      info.dim_names[d]  ? printf("%s%s", d ? ", " : "", info.dim_names[d])
      : info.dims[d] < 0 ? printf("%s?", d ? ", " : "")
                         : printf("%s%lld", d ? ", " : "", (long long)info.dims[d]);
    printf("]\n");
  }
  printf("Outputs:\n");
  for (uint32_t o = 0; o < attn_model_output_count(model); o++)
    printf("  %s\n", attn_model_output(model, o).name);
}

// Splits "NAME=PATH" into `binding`; false when there is no '=' or either side is empty.
static bool parse_binding(char *text, binding *out) {
  char *equals = strchr(text, '=');
  if (!equals || equals == text || !equals[1])
    return false;
  *equals = '\0';
  *out = (binding){text, equals + 1};
  return true;
}

static bool parse_count(const char *text, long low, long high, long *out) {
  char *end;
  long value = strtol(text, &end, 10);
  if (!*text || *end || value < low || value > high)
    return false;
  *out = value;
  return true;
}

// Parses the flags; returns -1 to go on, else the exit status (0 for --help).
static int parse_args(const char *program, int argc, char **argv, const attn_model *model,
                      standalone *s) {
  for (int a = 1; a < argc; a++) {
    const char *flag = argv[a];
    const char *value = a + 1 < argc ? argv[a + 1] : NULL;
    if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
      print_usage(program, model);
      return 0;
    }
    if (strcmp(flag, "--timing") == 0) {
      s->timing = true;
      continue;
    }
    bool ok = value != NULL;
    if (ok && (strcmp(flag, "-i") == 0 || strcmp(flag, "-o") == 0)) {
      bool is_input = flag[1] == 'i';
      int *count = is_input ? &s->input_count : &s->output_count;
      ok = *count < MAX_BINDINGS &&
           parse_binding(argv[a + 1], &(is_input ? s->inputs : s->outputs)[*count]);
      *count += ok;
    } else if (ok && strcmp(flag, "--threads") == 0) {
      ok = parse_count(value, 1, 1024, &s->threads);
    } else if (ok && strcmp(flag, "--iters") == 0) {
      ok = parse_count(value, 1, 1000000, &s->iters);
    } else {
      fprintf(stderr, "%s: unknown or incomplete flag '%s' (see --help)\n", program, flag);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "%s: bad value '%s' for %s (see --help)\n", program, value, flag);
      return 2;
    }
    a++;
  }
  return -1;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Reads the inputs, runs, writes the outputs. Returns the exit status.
static int run(const char *program, attn_model *model, const standalone *s, double start) {
  attn_allocator allocator = attn_allocator_system();
  attn_diag diag;
  attn_diag_init(&diag, allocator);
  attn_tensor inputs[MAX_BINDINGS] = {{0}};
  attn_session *session = NULL;
  attn_error error;
  double *times = NULL;
  int status = 1;
  attn_session_options options = {.thread_count = (uint32_t)s->threads};
  if (attn_session_create(model, &options, &session, &error) != ATTN_OK) {
    fprintf(stderr, "%s: %s\n", program, error.message);
    goto done;
  }
  for (int i = 0; i < s->input_count; i++) {
    if (attn_npy_read(s->inputs[i].path, allocator, &diag, &inputs[i]) != ATTN_OK) {
      fprintf(stderr, "%s: %s\n", program, attn_diag_last_error(&diag));
      goto done;
    }
    if (attn_session_set_input(session, s->inputs[i].name, inputs[i].dtype, inputs[i].rank,
                               inputs[i].dims, inputs[i].data) != ATTN_OK) {
      fprintf(stderr, "%s: %s\n", program, attn_session_error(session));
      goto done;
    }
  }
  times = calloc((size_t)s->iters, sizeof(double));
  if (!times)
    goto done;
  for (long r = 0; r < s->iters; r++) {
    double begin = seconds_now();
    if (r == 0 && s->timing)
      fprintf(stderr, "first kernel: %.3f ms after main() (monotonic clock %.6f s)\n",
              (begin - start) * 1e3, begin);
    if (attn_session_run(session) != ATTN_OK) {
      fprintf(stderr, "%s: %s\n", program, attn_session_error(session));
      goto done;
    }
    times[r] = seconds_now() - begin;
  }
  if (s->iters > 1) {
    qsort(times, (size_t)s->iters, sizeof(double), compare_doubles);
    fprintf(stderr, "median_ms=%.3f\n", times[s->iters / 2] * 1e3);
  }
  for (uint32_t o = 0; o < attn_model_output_count(model); o++) {
    const char *name = attn_model_output(model, o).name;
    attn_tensor output = {0};
    const void *data;
    if (attn_session_output(session, name, &output.dtype, &output.rank, output.dims, &data) !=
        ATTN_OK) {
      fprintf(stderr, "%s: %s\n", program, attn_session_error(session));
      goto done;
    }
    output.data = (void *)data;
    const char *path = NULL;
    for (int i = 0; i < s->output_count; i++)
      if (strcmp(s->outputs[i].name, name) == 0)
        path = s->outputs[i].path;
    if (!path) {
      attn_tensor_print_summary(stdout, name, &output);
    } else if (attn_npy_write(path, &output, &diag) != ATTN_OK) {
      fprintf(stderr, "%s: %s\n", program, attn_diag_last_error(&diag));
      goto done;
    }
  }
  status = 0;
done:
  free(times);
  attn_session_destroy(session);
  for (int i = 0; i < s->input_count; i++)
    attn_tensor_free(allocator, &inputs[i]);
  attn_diag_deinit(&diag);
  return status;
}

int attn_standalone_main(int argc, char **argv, const attn_linked_model *linked) {
  double start = seconds_now();
  const char *program = argc > 0 ? argv[0] : "model";
  attn_model *model = NULL;
  attn_error error;
  // The weights are in this program's own image: summing them would read every page of it
  // before the first kernel, which is what a standalone program is built to avoid.
  attn_model_options options = {.skip_weight_checksums = true};
  if (attn_model_open_linked(linked, &options, &model, &error) != ATTN_OK) {
    fprintf(stderr, "%s: %s\n", program, error.message);
    return 1;
  }
  int status = attn_standalone_run(program, model, argc, argv, start);
  attn_model_close(model);
  return status;
}

int attn_standalone_run(const char *program, attn_model *model, int argc, char **argv,
                        double start) {
  standalone s = {.iters = 1};
  int status = parse_args(program, argc, argv, model, &s);
  if (status < 0) {
    for (int o = 0; o < s.output_count; o++) {
      bool known = false;
      for (uint32_t m = 0; m < attn_model_output_count(model) && !known; m++)
        known = strcmp(attn_model_output(model, m).name, s.outputs[o].name) == 0;
      if (!known) {
        fprintf(stderr, "%s: the model has no output '%s'\n", program, s.outputs[o].name);
        status = 2;
      }
    }
  }
  if (status < 0) {
    if (s.timing)
      fprintf(stderr, "loaded in %.3f ms\n", (seconds_now() - start) * 1e3);
    status = run(program, model, &s, start);
  }
  return status;
}

double attn_standalone_now(void) {
  return seconds_now();
}
