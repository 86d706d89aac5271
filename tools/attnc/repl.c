// `attnc repl`: an interactive session of .attn statements, each executed as it is entered.
//
// The session is kept as text: the file-level items (`let`, `def`), the declared inputs with
// their data, and the body statements, each with the results it computed. A statement is run
// as a small graph of its own whose inputs are the session's current tensors, so a statement
// costs only its own ops; `:run` rebuilds the whole session graph (the inputs and every
// statement) and runs that instead. Every graph goes through the real front end: the REPL
// writes .attn text and parses it, so what the session accepts is exactly the language.
//
// The front end wants each graph output's type declared, and the REPL does not know a result's
// type before it is computed. So the generated graph returns a dummy, and after each assigned
// name the text binds `__repl_probe_NAME = where(true, NAME, NAME)`: that node's second input
// is the value NAME holds at the end, whatever its type; the graph's outputs are then set to
// those values and dead-code elimination drops the probes.
#include <ctype.h>
#include <editline/readline.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codegen/cpu/backend.h"
#include "frontend/parse.h"
#include "ir/interp.h"
#include "ir/print.h"
#include "runtime/base/allocator.h"
#include "runtime/tensor/npy.h"
#include "tools/attnc/cli.h"

static const char usage[] =
    "usage: attnc repl [-b cpu|interp] [-p PASSES] [--time] [FILE]\n"
    "\n"
    "An interactive session of .attn statements (docs/repl.md). Each statement is compiled and\n"
    "run as soon as it is entered, and its results are kept for the statements that follow.\n"
    "FILE, when given, is loaded first (as :load FILE).\n"
    "\n"
    "  -b BACKEND   cpu (compiled kernels, the default) or interp (the reference evaluator)\n"
    "  -p PASSES    the pass pipeline, as attnc run -p ('default' unless given)\n"
    "  --time       time every execution (as :time on)\n"
    "  -h, --help   this text\n"
    "\n"
    "Statements:\n"
    "  let NAME = EXPR             a compile-time value\n"
    "  def NAME(ARGS) { ... }      a subgraph; lines are read until the braces close\n"
    "  NAME = EXPR, A, B = EXPR    tensor assignments, run at once; `repeat` blocks too\n"
    "  :input NAME TYPE = SOURCE   declares a session input; TYPE like f32[2, 3], SOURCE one\n"
    "                              of random (uniform in [-1, 1), the same for the same name),\n"
    "                              zeros, ones, a list [1, 2, ...] (row-major, or one value\n"
    "                              for all), or FILE.npy\n"
    "  :input NAME = FILE.npy      the type taken from the file\n"
    "\n"
    "Commands:\n"
    "  :run                  re-run the whole session graph from its inputs\n"
    "  :print NAME           type, min/max/mean/std, NaN count and the leading values\n"
    "  :backend [cpu|interp] show or set the backend\n"
    "  :passes [PIPELINE]    show or set the pass pipeline\n"
    "  :time [on|off]        time every execution, compilation and run separately\n"
    "  :load FILE            run a file's statements; a model's `graph` adds its inputs (those\n"
    "                        not declared yet get random values) and its body\n"
    "  :save FILE            write the session as an .attn model ('# :input' comments keep\n"
    "                        the inputs' sources for :load; attnc run takes them with -i)\n"
    "  :ir                   the whole session graph after the passes\n"
    "  :help                 this list\n"
    "  :quit                 end the session (also Ctrl-D)\n"
    "\n"
    "An error never ends the session: the failed statement or command changes nothing.\n"
    "On a terminal, lines are edited with libedit and the history is kept in\n"
    "$XDG_STATE_HOME/attnc/history when XDG_STATE_HOME is set, else in ~/.attnc_history.\n"
    "When stdin is not a terminal, lines are read without prompts and the exit status is 1\n"
    "if any statement or command failed.\n";

// The name generated graphs are parsed under; locations in it are mapped back to where each
// line came from before they are printed.
static const char repl_file[] = "<session>";
enum { TYPE_TEXT_SIZE = 160, SHOWN_VALUES = 8, RESULT_VALUES = 6 };

// ---- growable text ---------------------------------------------------------------------------

typedef struct repl_text {
  char *data;
  size_t length;
  size_t capacity;
  bool failed; // an allocation failed; the text is incomplete
} repl_text;

static void text_append(repl_text *text, const char *format, ...) ATTN_PRINTF(2, 3);
static void text_append(repl_text *text, const char *format, ...) {
  if (text->failed)
    return;
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  int needed = vsnprintf(NULL, 0, format, copy);
  va_end(copy);
  if (needed >= 0 && text->length + (size_t)needed + 1 > text->capacity) {
    size_t capacity = (text->capacity ? text->capacity * 2 : 256) + (size_t)needed;
    char *data = realloc(text->data, capacity);
    if (!data) {
      text->failed = true;
      va_end(args);
      return;
    }
    text->data = data;
    text->capacity = capacity;
  }
  if (needed >= 0) {
    vsnprintf(text->data + text->length, text->capacity - text->length, format, args);
    text->length += (size_t)needed;
  }
  va_end(args);
}

static uint32_t count_lines(const char *text) {
  uint32_t lines = 1;
  for (; *text; text++)
    lines += *text == '\n';
  return lines;
}

// Grows an array of `size`-byte items to hold one more; false when memory runs out.
static bool reserve_one(void **items, size_t *capacity, size_t count, size_t size) {
  if (count < *capacity)
    return true;
  size_t grown = *capacity ? *capacity * 2 : 8;
  void *data = realloc(*items, grown * size);
  if (!data)
    return false;
  *items = data;
  *capacity = grown;
  return true;
}

// ---- the session -----------------------------------------------------------------------------

// A piece of .attn text and where it came from, for messages.
typedef struct repl_source {
  char *text;
  char *origin; // "input" or a file name
  uint32_t line;
} repl_source;

// A declared input: its data, and the SOURCE text it came from (":input x f32[2] = SOURCE").
typedef struct repl_input {
  char *name;
  char *spec; // "f32[2, 3] = random"
  attn_tensor tensor;
} repl_input;

typedef struct repl_value {
  char *name;
  attn_tensor tensor;
} repl_value;

typedef struct repl_session {
  repl_source *items; // lets and defs, in order
  size_t item_count, item_capacity;
  repl_source *statements; // body statements, in order
  size_t statement_count, statement_capacity;
  repl_input *inputs;
  size_t input_count, input_capacity;
  repl_value *values; // the current result of every assigned name
  size_t value_count, value_capacity;
} repl_session;

typedef struct repl {
  attn_allocator allocator;
  attn_diag diag;
  repl_session session;
  const char *backend; // static storage: "cpu" or "interp"
  char *passes;
  bool is_timed;
  attn_cpu_backend *cpu; // created when cpu first runs
  uint32_t input_line;   // lines read from the terminal or script, for locations
  bool had_error;
} repl;

static char *copy_text(const char *text, size_t length) {
  char *copy = malloc(length + 1);
  if (copy) {
    memcpy(copy, text, length);
    copy[length] = '\0';
  }
  return copy;
}

static attn_status copy_tensor(attn_allocator allocator, const attn_tensor *from, attn_tensor *to) {
  ATTN_RETURN_IF_ERROR(
      attn_tensor_alloc_uninit(allocator, from->dtype, from->rank, from->dims, to));
  size_t bytes = 0;
  if (attn_tensor_size_bytes(from, &bytes) && bytes)
    memcpy(to->data, from->data, bytes);
  return ATTN_OK;
}

static void source_deinit(repl_source *source) {
  free(source->text);
  free(source->origin);
}

static void session_deinit(repl_session *s, attn_allocator allocator) {
  for (size_t i = 0; i < s->item_count; i++)
    source_deinit(&s->items[i]);
  for (size_t i = 0; i < s->statement_count; i++)
    source_deinit(&s->statements[i]);
  for (size_t i = 0; i < s->input_count; i++) {
    free(s->inputs[i].name);
    free(s->inputs[i].spec);
    attn_tensor_free(allocator, &s->inputs[i].tensor);
  }
  for (size_t i = 0; i < s->value_count; i++) {
    free(s->values[i].name);
    attn_tensor_free(allocator, &s->values[i].tensor);
  }
  free(s->items);
  free(s->statements);
  free(s->inputs);
  free(s->values);
  *s = (repl_session){0};
}

static attn_status add_source(repl_source **items, size_t *count, size_t *capacity,
                              const repl_source *source) {
  if (!reserve_one((void **)items, capacity, *count, sizeof(**items)))
    return ATTN_ERROR_OUT_OF_MEMORY;
  repl_source copy = {copy_text(source->text, strlen(source->text)),
                      copy_text(source->origin, strlen(source->origin)), source->line};
  if (!copy.text || !copy.origin) {
    source_deinit(&copy);
    return ATTN_ERROR_OUT_OF_MEMORY;
  }
  (*items)[(*count)++] = copy;
  return ATTN_OK;
}

// Sets input `name` (taking `tensor`), replacing an earlier declaration.
static attn_status set_input(repl_session *s, attn_allocator allocator, const char *name,
                             const char *spec, attn_tensor *tensor) {
  repl_input *input = NULL;
  for (size_t i = 0; i < s->input_count && !input; i++)
    if (strcmp(s->inputs[i].name, name) == 0)
      input = &s->inputs[i];
  char *spec_copy = copy_text(spec, strlen(spec));
  if (!spec_copy)
    return ATTN_ERROR_OUT_OF_MEMORY;
  if (!input) {
    char *name_copy = copy_text(name, strlen(name));
    if (!name_copy ||
        !reserve_one((void **)&s->inputs, &s->input_capacity, s->input_count, sizeof(*s->inputs))) {
      free(name_copy);
      free(spec_copy);
      return ATTN_ERROR_OUT_OF_MEMORY;
    }
    input = &s->inputs[s->input_count++];
    *input = (repl_input){.name = name_copy};
  }
  free(input->spec);
  input->spec = spec_copy;
  attn_tensor_free(allocator, &input->tensor);
  input->tensor = *tensor;
  *tensor = (attn_tensor){0};
  return ATTN_OK;
}

// Sets the result of `name` (taking `tensor`).
static attn_status set_value(repl_session *s, attn_allocator allocator, const char *name,
                             attn_tensor *tensor) {
  for (size_t i = 0; i < s->value_count; i++) {
    if (strcmp(s->values[i].name, name) == 0) {
      attn_tensor_free(allocator, &s->values[i].tensor);
      s->values[i].tensor = *tensor;
      *tensor = (attn_tensor){0};
      return ATTN_OK;
    }
  }
  char *name_copy = copy_text(name, strlen(name));
  if (!name_copy ||
      !reserve_one((void **)&s->values, &s->value_capacity, s->value_count, sizeof(*s->values))) {
    free(name_copy);
    return ATTN_ERROR_OUT_OF_MEMORY;
  }
  s->values[s->value_count++] = (repl_value){name_copy, *tensor};
  *tensor = (attn_tensor){0};
  return ATTN_OK;
}

// A deep copy, so that a :load or an input rebinding can fail without leaving half its work.
static attn_status session_copy(const repl_session *from, attn_allocator allocator,
                                repl_session *to) {
  *to = (repl_session){0};
  attn_status status = ATTN_OK;
  for (size_t i = 0; i < from->item_count && status == ATTN_OK; i++)
    status = add_source(&to->items, &to->item_count, &to->item_capacity, &from->items[i]);
  for (size_t i = 0; i < from->statement_count && status == ATTN_OK; i++)
    status = add_source(&to->statements, &to->statement_count, &to->statement_capacity,
                        &from->statements[i]);
  for (size_t i = 0; i < from->input_count && status == ATTN_OK; i++) {
    attn_tensor tensor;
    status = copy_tensor(allocator, &from->inputs[i].tensor, &tensor);
    if (status == ATTN_OK)
      status = set_input(to, allocator, from->inputs[i].name, from->inputs[i].spec, &tensor);
    attn_tensor_free(allocator, &tensor);
  }
  for (size_t i = 0; i < from->value_count && status == ATTN_OK; i++) {
    attn_tensor tensor;
    status = copy_tensor(allocator, &from->values[i].tensor, &tensor);
    if (status == ATTN_OK)
      status = set_value(to, allocator, from->values[i].name, &tensor);
    attn_tensor_free(allocator, &tensor);
  }
  if (status != ATTN_OK)
    session_deinit(to, allocator);
  return status;
}

static const attn_tensor *find_value(const repl_session *s, const char *name) {
  for (size_t i = 0; i < s->value_count; i++)
    if (strcmp(s->values[i].name, name) == 0)
      return &s->values[i].tensor;
  return NULL;
}

static repl_input *find_input(const repl_session *s, const char *name) {
  for (size_t i = 0; i < s->input_count; i++)
    if (strcmp(s->inputs[i].name, name) == 0)
      return &s->inputs[i];
  return NULL;
}

// ---- scanning .attn text ---------------------------------------------------------------------
// Just enough lexing to split input into statements and find what a statement assigns; the
// front end does the real parsing.

static bool is_ident_start(char c) {
  return isalpha((unsigned char)c) || c == '_';
}

static bool is_ident_char(char c) {
  return isalnum((unsigned char)c) || c == '_';
}

// Skips a string or a comment starting at text[i]; returns the index after it.
static size_t skip_string_or_comment(const char *text, size_t i) {
  if (text[i] == '#') {
    while (text[i] && text[i] != '\n')
      i++;
    return i;
  }
  for (i++; text[i] && text[i] != '"' && text[i] != '\n'; i++)
    if (text[i] == '\\' && text[i + 1])
      i++;
  return text[i] == '"' ? i + 1 : i;
}

// How many brackets of any kind are open at the end of `text`: a statement goes on to the next
// line while this is positive.
static int open_brackets(const char *text) {
  int depth = 0;
  for (size_t i = 0; text[i];) {
    if (text[i] == '#' || text[i] == '"') {
      i = skip_string_or_comment(text, i);
      continue;
    }
    depth += text[i] == '(' || text[i] == '[' || text[i] == '{';
    depth -= text[i] == ')' || text[i] == ']' || text[i] == '}';
    i++;
  }
  return depth;
}

// The first word of `text` after blanks and comment lines, into `word` (empty when none).
static const char *first_word(const char *text, char *word, size_t size) {
  size_t i = 0;
  for (;;) {
    while (isspace((unsigned char)text[i]))
      i++;
    if (text[i] != '#')
      break;
    i = skip_string_or_comment(text, i);
  }
  size_t n = 0;
  while (is_ident_char(text[i + n]) && n + 1 < size) {
    word[n] = text[i + n];
    n++;
  }
  word[n] = '\0';
  return text + i;
}

typedef struct repl_names {
  char **names;
  size_t count, capacity;
} repl_names;

static void names_deinit(repl_names *names) {
  for (size_t i = 0; i < names->count; i++)
    free(names->names[i]);
  free(names->names);
  *names = (repl_names){0};
}

static bool names_contain(const repl_names *names, const char *name) {
  for (size_t i = 0; i < names->count; i++)
    if (strcmp(names->names[i], name) == 0)
      return true;
  return false;
}

static attn_status names_add(repl_names *names, const char *name, size_t length) {
  char *copy = copy_text(name, length);
  if (!copy)
    return ATTN_ERROR_OUT_OF_MEMORY;
  if (names_contain(names, copy)) {
    free(copy);
    return ATTN_OK;
  }
  if (!reserve_one((void **)&names->names, &names->capacity, names->count, sizeof(*names->names))) {
    free(copy);
    return ATTN_ERROR_OUT_OF_MEMORY;
  }
  names->names[names->count++] = copy;
  return ATTN_OK;
}

// The names a statement assigns: the NAME and A, B of `NAME = ...` and `A, B = ...` outside any
// parentheses (keyword arguments are inside), also inside repeat blocks; not `let` names.
static attn_status assigned_names(const char *text, repl_names *out) {
  enum { MAX_GROUP = 32 };
  size_t group_start[MAX_GROUP], group_length[MAX_GROUP], group_count = 0;
  bool after_let = false, expect_name = true;
  int depth = 0;
  for (size_t i = 0; text[i];) {
    char c = text[i];
    if (c == '#' || c == '"') {
      i = skip_string_or_comment(text, i);
      group_count = 0;
      continue;
    }
    if (isspace((unsigned char)c)) {
      i++;
      continue;
    }
    if (is_ident_start(c)) {
      size_t start = i;
      while (is_ident_char(text[i]))
        i++;
      bool is_let = i - start == 3 && strncmp(text + start, "let", 3) == 0;
      if (depth == 0 && expect_name && !after_let && !is_let && group_count < MAX_GROUP) {
        group_start[group_count] = start;
        group_length[group_count++] = i - start;
        expect_name = false;
      } else {
        group_count = 0;
        expect_name = true;
      }
      after_let = is_let;
      continue;
    }
    after_let = false;
    if (depth == 0 && c == ',' && group_count > 0 && !expect_name) {
      expect_name = true;
      i++;
      continue;
    }
    bool is_assign = c == '=' && text[i + 1] != '=';
    if (depth == 0 && is_assign && group_count > 0 && !expect_name) {
      for (size_t g = 0; g < group_count; g++)
        ATTN_RETURN_IF_ERROR(names_add(out, text + group_start[g], group_length[g]));
    }
    depth += c == '(' || c == '[';
    depth -= c == ')' || c == ']';
    group_count = 0;
    expect_name = true;
    // A comparison's second character must not start an assignment: skip "==", "<=", ">=".
    i += (c == '=' || c == '<' || c == '>' || c == '!') && text[i + 1] == '=' ? 2 : 1;
  }
  return ATTN_OK;
}

// ---- diagnostics -----------------------------------------------------------------------------

// Lines of a generated graph and where they came from.
typedef struct repl_segment {
  uint32_t first_line; // in the generated text
  uint32_t line_count;
  const char *origin;
  uint32_t origin_line;
} repl_segment;

typedef struct repl_program {
  repl_text text;
  uint32_t line; // the next line of `text`
  repl_segment *segments;
  size_t segment_count, segment_capacity;
} repl_program;

static void program_deinit(repl_program *program) {
  free(program->text.data);
  free(program->segments);
  *program = (repl_program){0};
}

// Appends generated lines (no segment: messages there point at the session).
static void program_emit(repl_program *program, const char *format, ...) ATTN_PRINTF(2, 3);
static void program_emit(repl_program *program, const char *format, ...) {
  char line[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof(line), format, args);
  va_end(args);
  text_append(&program->text, "%s", line);
  for (const char *c = line; *c; c++)
    program->line += *c == '\n';
}

// Appends a source's text and remembers its lines' origin.
static void program_emit_source(repl_program *program, const repl_source *source) {
  if (reserve_one((void **)&program->segments, &program->segment_capacity, program->segment_count,
                  sizeof(*program->segments)))
    program->segments[program->segment_count++] =
        (repl_segment){program->line, count_lines(source->text), source->origin, source->line};
  text_append(&program->text, "%s\n", source->text);
  program->line += count_lines(source->text);
}

// The source line `line` (1-based) of `text`, without its newline.
static void print_source_line(FILE *out, const char *text, uint32_t line, uint32_t col) {
  for (uint32_t l = 1; l < line && text; l++) {
    text = strchr(text, '\n');
    text = text ? text + 1 : NULL;
  }
  if (!text)
    return;
  size_t length = strcspn(text, "\n");
  fprintf(out, "  %.*s\n  %*s^\n", (int)length, text, (int)(col ? col - 1 : 0), "");
}

static const char *severity_name(attn_severity severity) {
  return severity == ATTN_SEVERITY_ERROR     ? "error"
         : severity == ATTN_SEVERITY_WARNING ? "warning"
                                             : "note";
}

// Prints the diagnostics of the last command: in generated text, at the line of the statement,
// item or file they came from, with the source line and a caret.
static void report(repl *r, const repl_program *program) {
  fflush(stdout);
  for (size_t i = 0; i < r->diag.count; i++) {
    const attn_diagnostic *d = &r->diag.items[i];
    attn_loc loc = d->loc;
    const char *kind = severity_name(d->severity);
    const repl_segment *segment = NULL;
    bool is_generated = loc.file && strcmp(loc.file, repl_file) == 0;
    for (size_t s = 0; program && is_generated && s < program->segment_count; s++) {
      const repl_segment *g = &program->segments[s];
      if (loc.line >= g->first_line && loc.line < g->first_line + g->line_count)
        segment = g;
    }
    if (segment) {
      fprintf(stderr, "%s:%u:%u: %s: %s\n", segment->origin,
              segment->origin_line + (loc.line - segment->first_line), loc.col, kind, d->message);
      print_source_line(stderr, program->text.data, loc.line, loc.col);
    } else if (loc.file && loc.line && !is_generated) {
      fprintf(stderr, "%s:%u:%u: %s: %s\n", loc.file, loc.line, loc.col, kind, d->message);
    } else if (loc.file && !is_generated && strcmp(loc.file, attn_cli_loc.file) != 0) {
      fprintf(stderr, "%s: %s: %s\n", loc.file, kind, d->message);
    } else {
      fprintf(stderr, "%s: %s\n", kind, d->message);
    }
  }
  if (r->diag.error_count)
    r->had_error = true;
  // A fresh sink per command, so the sources registered by each parse do not pile up.
  attn_diag_deinit(&r->diag);
  attn_diag_init(&r->diag, r->allocator);
}

static attn_status fail(repl *r, attn_status status, const char *format, ...) ATTN_PRINTF(3, 4);
static attn_status fail(repl *r, attn_status status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  attn_diag_verror(&r->diag, attn_cli_loc, status, format, args);
  va_end(args);
  return status;
}

// ---- building and running graphs -------------------------------------------------------------

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void format_tensor_type(const attn_tensor *tensor, char *buffer, size_t size) {
  attn_tensor_format_type(tensor->dtype, tensor->rank, tensor->dims, buffer, size);
}

// One graph input of a generated graph: its name and data (borrowed from the session).
typedef struct repl_binding {
  const char *name;
  const attn_tensor *tensor;
} repl_binding;

// A generated graph ready to run: where each target's result comes from.
typedef struct repl_graph {
  attn_graph *graph;
  repl_program program;
  repl_binding *inputs; // graph->input_count, in graph input order
  size_t input_count;
  // Per target: the graph output that holds it, or (when the target is just an input, as in
  // `y = x`) the input whose data it is.
  uint32_t *output_of;
  int64_t *input_of; // -1: an output
} repl_graph;

static void repl_graph_deinit(repl_graph *g) {
  attn_graph_destroy(g->graph);
  program_deinit(&g->program);
  free(g->inputs);
  free(g->output_of);
  free(g->input_of);
  *g = (repl_graph){0};
}

static const char probe_prefix[] = "__repl_probe_";

// Writes and parses the graph of `statements` over `inputs`, with `targets` as its outputs,
// and runs the pass pipeline over it (and, for cpu, the partition and memory plan).
static attn_status build_graph(repl *r, const repl_source *statements, size_t statement_count,
                               const repl_binding *inputs, size_t input_count,
                               const repl_names *targets, repl_graph *out) {
  repl_session *s = &r->session;
  repl_program *program = &out->program;
  program->line = 1;
  for (size_t i = 0; i < s->item_count; i++)
    program_emit_source(program, &s->items[i]);
  program_emit(program, "graph repl(");
  for (size_t i = 0; i < input_count; i++) {
    char type[TYPE_TEXT_SIZE];
    format_tensor_type(inputs[i].tensor, type, sizeof(type));
    program_emit(program, "%s%s: %s", i ? ", " : "", inputs[i].name, type);
  }
  program_emit(program, ") -> (__repl_done: bool[]) {\n");
  for (size_t i = 0; i < statement_count; i++)
    program_emit_source(program, &statements[i]);
  for (size_t i = 0; i < targets->count; i++)
    program_emit(program, "%s%s = where(true, %s, %s)\n", probe_prefix, targets->names[i],
                 targets->names[i], targets->names[i]);
  program_emit(program, "__repl_done = constant(bool[], true)\nreturn __repl_done\n}\n");
  if (program->text.failed)
    return fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");

  ATTN_RETURN_IF_ERROR(attn_parse_text(repl_file, program->text.data, program->text.length, NULL,
                                       r->allocator, &r->diag, &out->graph));
  attn_graph *graph = out->graph;
  out->inputs = calloc(graph->input_count + 1, sizeof(*out->inputs));
  out->input_count = graph->input_count;
  out->output_of = calloc(targets->count + 1, sizeof(*out->output_of));
  out->input_of = calloc(targets->count + 1, sizeof(*out->input_of));
  attn_value_id *outputs = calloc(targets->count + 1, sizeof(*outputs));
  const char **output_names = calloc(targets->count + 1, sizeof(*output_names));
  attn_status status = ATTN_OK;
  if (!out->inputs || !out->output_of || !out->input_of || !outputs || !output_names)
    status = fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (uint32_t i = 0; status == ATTN_OK && i < graph->input_count; i++)
    out->inputs[i] = inputs[i]; // the signature lists them in this order
  uint32_t output_count = 0;
  for (size_t t = 0; status == ATTN_OK && t < targets->count; t++) {
    char probe[256];
    snprintf(probe, sizeof(probe), "%s%s", probe_prefix, targets->names[t]);
    attn_value_id value = {0};
    for (uint32_t v = 1; v < graph->value_count && !value.index; v++) {
      const attn_value *candidate = &graph->values[v];
      if (candidate->name && strcmp(candidate->name, probe) == 0 && candidate->producer.index)
        value = attn_graph_node(graph, candidate->producer)->inputs[1];
    }
    if (!value.index) {
      status = fail(r, ATTN_ERROR_INVALID_GRAPH, "no probe for '%s'", targets->names[t]);
      break;
    }
    out->input_of[t] = -1;
    for (uint32_t i = 0; i < graph->input_count; i++)
      if (graph->inputs[i].index == value.index)
        out->input_of[t] = i;
    if (out->input_of[t] >= 0)
      continue;
    // Two names may hold one value (`b = a`): it is one output.
    uint32_t o = 0;
    while (o < output_count && outputs[o].index != value.index)
      o++;
    if (o == output_count) {
      outputs[output_count] = value;
      output_names[output_count++] = targets->names[t];
    }
    out->output_of[t] = o;
  }
  if (status == ATTN_OK && output_count > 0)
    status = attn_graph_set_outputs(graph, outputs, output_names, output_count);
  free(outputs);
  free(output_names);
  ATTN_RETURN_IF_ERROR(status);

  // dce first, whatever the pipeline: it drops the probes, which would otherwise be computed.
  attn_pipeline_run_options options = {0};
  const char *stages[3] = {"dce", r->passes, NULL};
  if (strcmp(r->backend, "cpu") == 0)
    stages[2] = "partition,plan-memory";
  for (size_t i = 0; i < 3 && status == ATTN_OK; i++) {
    if (!stages[i] || strcmp(stages[i], "none") == 0 || (i == 2 && graph->buffer_count != 0))
      continue;
    attn_pipeline pipeline;
    status = attn_cli_parse_passes(stages[i], &options, &r->diag, &pipeline);
    if (status == ATTN_OK)
      status = attn_pipeline_run(&pipeline, graph, &options);
    attn_pipeline_deinit(&pipeline);
  }
  return status;
}

// Runs a built graph and gives each target its result in `results` (targets->count tensors,
// owned by the caller).
static attn_status run_graph(repl *r, repl_graph *g, const repl_names *targets,
                             attn_tensor *results) {
  attn_graph *graph = g->graph;
  attn_tensor *inputs = calloc(g->input_count + 1, sizeof(*inputs));
  attn_tensor *outputs = calloc(graph->output_count + 1, sizeof(*outputs));
  if (!inputs || !outputs) {
    free(inputs);
    free(outputs);
    return fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  for (size_t i = 0; i < g->input_count; i++)
    inputs[i] = *g->inputs[i].tensor; // borrowed for the run
  attn_interp_args args = {.inputs = inputs};
  attn_status status = ATTN_OK;
  double compile_ms = 0, start = now_ms();
  if (graph->output_count == 0) {
    // Every target is an input: nothing to compute.
  } else if (strcmp(r->backend, "cpu") == 0) {
    attn_cpu_program *compiled = NULL;
    if (!r->cpu)
      status = attn_cpu_backend_create(NULL, r->allocator, &r->diag, &r->cpu);
    if (status == ATTN_OK)
      status = attn_cpu_program_compile(r->cpu, graph, &compiled);
    compile_ms = now_ms() - start;
    start = now_ms();
    if (status == ATTN_OK)
      status = attn_cpu_program_run(compiled, &args, r->allocator, &r->diag, outputs);
    attn_cpu_program_destroy(compiled);
  } else {
    status = attn_interp_run(graph, &args, r->allocator, &r->diag, outputs);
  }
  double run_ms = now_ms() - start;
  if (status == ATTN_OK && r->is_timed) {
    if (strcmp(r->backend, "cpu") == 0)
      printf("time: compile %.3f ms, run %.3f ms (cpu)\n", compile_ms, run_ms);
    else
      printf("time: run %.3f ms (interp)\n", run_ms);
  }
  for (size_t t = 0; status == ATTN_OK && t < targets->count; t++) {
    const attn_tensor *from =
        g->input_of[t] >= 0 ? g->inputs[g->input_of[t]].tensor : &outputs[g->output_of[t]];
    status = copy_tensor(r->allocator, from, &results[t]);
    if (status != ATTN_OK)
      fail(r, status, "out of memory");
  }
  for (uint32_t i = 0; i < graph->output_count; i++)
    attn_tensor_free(r->allocator, &outputs[i]);
  free(outputs);
  free(inputs);
  return status;
}

// The inputs of a statement's graph: every session name that holds a tensor, a result
// shadowing an input of the same name.
static attn_status current_bindings(repl *r, repl_binding **out, size_t *out_count) {
  repl_session *s = &r->session;
  *out = calloc(s->input_count + s->value_count + 1, sizeof(**out));
  *out_count = 0;
  if (!*out)
    return fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (size_t i = 0; i < s->input_count; i++)
    if (!find_value(s, s->inputs[i].name))
      (*out)[(*out_count)++] = (repl_binding){s->inputs[i].name, &s->inputs[i].tensor};
  for (size_t i = 0; i < s->value_count; i++)
    (*out)[(*out_count)++] = (repl_binding){s->values[i].name, &s->values[i].tensor};
  return ATTN_OK;
}

static void print_result(const char *name, const attn_tensor *tensor) {
  char type[TYPE_TEXT_SIZE];
  format_tensor_type(tensor, type, sizeof(type));
  int64_t count = attn_tensor_element_count(tensor);
  printf("%s: %s [", name, type);
  for (int64_t i = 0; i < count && i < RESULT_VALUES; i++)
    printf("%s%.6g", i ? ", " : "", attn_tensor_get_f64(tensor, i));
  printf("%s]\n", count > RESULT_VALUES ? ", ..." : "");
}

// Runs statements over the current session: one new statement (added on success), or, with
// `is_whole`, every statement from the declared inputs, replacing every result.
static attn_status execute(repl *r, const repl_source *statement, bool is_whole, bool is_quiet) {
  repl_session *s = &r->session;
  repl_names targets = {0};
  repl_binding *bindings = NULL;
  size_t binding_count = 0;
  repl_graph g = {0};
  attn_tensor *results = NULL;
  attn_status status = ATTN_OK;
  if (is_whole) {
    bindings = calloc(s->input_count + 1, sizeof(*bindings));
    if (!bindings)
      status = fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; status == ATTN_OK && i < s->input_count; i++)
      bindings[binding_count++] = (repl_binding){s->inputs[i].name, &s->inputs[i].tensor};
    for (size_t i = 0; status == ATTN_OK && i < s->value_count; i++)
      status = names_add(&targets, s->values[i].name, strlen(s->values[i].name));
  } else {
    status = current_bindings(r, &bindings, &binding_count);
    if (status == ATTN_OK)
      status = assigned_names(statement->text, &targets);
  }
  if (status == ATTN_OK)
    status = build_graph(r, is_whole ? s->statements : statement, is_whole ? s->statement_count : 1,
                         bindings, binding_count, &targets, &g);
  if (status == ATTN_OK) {
    results = calloc(targets.count + 1, sizeof(*results));
    status = results ? run_graph(r, &g, &targets, results)
                     : fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  // Nothing changes until everything succeeded; then the results and the statement go in.
  if (status == ATTN_OK && !is_whole)
    status = add_source(&s->statements, &s->statement_count, &s->statement_capacity, statement);
  for (size_t t = 0; status == ATTN_OK && t < targets.count; t++) {
    if (!is_quiet)
      print_result(targets.names[t], &results[t]);
    status = set_value(s, r->allocator, targets.names[t], &results[t]);
  }
  for (size_t t = 0; results && t < targets.count; t++)
    attn_tensor_free(r->allocator, &results[t]);
  free(results);
  report(r, &g.program);
  repl_graph_deinit(&g);
  free(bindings);
  names_deinit(&targets);
  return status;
}

// Checks a new `let` or `def` by parsing the items with it and an empty graph, then keeps it.
static attn_status add_item(repl *r, const repl_source *item) {
  repl_session *s = &r->session;
  ATTN_RETURN_IF_ERROR(add_source(&s->items, &s->item_count, &s->item_capacity, item));
  repl_names none = {0};
  repl_graph g = {0};
  attn_status status = build_graph(r, NULL, 0, NULL, 0, &none, &g);
  report(r, &g.program);
  repl_graph_deinit(&g);
  if (status != ATTN_OK)
    source_deinit(&s->items[--s->item_count]);
  return status;
}

// ---- inputs ----------------------------------------------------------------------------------

// Parses "f32[2, 3]" (constant dims only).
static bool parse_type(const char *text, attn_dtype *dtype, uint32_t *rank, int64_t *dims) {
  while (isspace((unsigned char)*text))
    text++;
  const char *open = strchr(text, '[');
  if (!open)
    return false;
  size_t length = (size_t)(open - text);
  while (length && isspace((unsigned char)text[length - 1]))
    length--;
  if (!attn_dtype_from_name(text, length, dtype))
    return false;
  const char *p = open + 1;
  *rank = 0;
  for (;;) {
    while (isspace((unsigned char)*p))
      p++;
    if (*p == ']' && *rank == 0)
      break;
    char *end;
    errno = 0;
    long long dim = strtoll(p, &end, 10);
    if (end == p || errno || dim < 0 || *rank >= ATTN_MAX_RANK)
      return false;
    dims[(*rank)++] = dim;
    p = end;
    while (isspace((unsigned char)*p))
      p++;
    if (*p == ']')
      break;
    if (*p != ',')
      return false;
    p++;
  }
  for (p++; isspace((unsigned char)*p); p++) {
  }
  return *p == '\0';
}

static uint64_t hash_name(const char *name) {
  uint64_t h = 1469598103934665603ull; // FNV-1a
  for (; *name; name++)
    h = (h ^ (unsigned char)*name) * 1099511628211ull;
  return h;
}

// Fills `tensor` from SOURCE: random, zeros, ones or a [list].
static attn_status fill_input(repl *r, const char *name, const char *source, attn_tensor *tensor) {
  int64_t count = attn_tensor_element_count(tensor);
  if (strcmp(source, "random") == 0) {
    // xorshift64 seeded by the name: the same input gets the same data in every session.
    uint64_t state = hash_name(name) | 1;
    for (int64_t i = 0; i < count; i++) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      double unit = (double)(state >> 11) / 9007199254740992.0;
      attn_tensor_set_f64(tensor, i,
                          attn_dtype_is_float(tensor->dtype)
                              ? 2.0 * unit - 1.0
                              : floor(unit * (tensor->dtype == ATTN_DTYPE_BOOL ? 2 : 10)));
    }
    return ATTN_OK;
  }
  if (strcmp(source, "zeros") == 0 || strcmp(source, "ones") == 0) {
    for (int64_t i = 0; i < count; i++)
      attn_tensor_set_f64(tensor, i, source[0] == 'o' ? 1.0 : 0.0);
    return ATTN_OK;
  }
  if (source[0] != '[')
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT,
                ":input %s: unknown source '%s'; use random, zeros, ones, [values] or FILE.npy",
                name, source);
  const char *p = source + 1;
  int64_t given = 0;
  double first = 0;
  for (;;) {
    while (isspace((unsigned char)*p))
      p++;
    if (*p == ']' && given == 0)
      break;
    char *end;
    double v = strtod(p, &end);
    if (end == p)
      return fail(r, ATTN_ERROR_INVALID_ARGUMENT, ":input %s: '%.20s' is not a number", name, p);
    if (given < count)
      attn_tensor_set_f64(tensor, given, v);
    first = given == 0 ? v : first;
    given++;
    for (p = end; isspace((unsigned char)*p); p++) {
    }
    if (*p == ']')
      break;
    if (*p != ',')
      return fail(r, ATTN_ERROR_INVALID_ARGUMENT, ":input %s: expected ',' or ']' in the list",
                  name);
    p++;
  }
  if (given == 1) {
    for (int64_t i = 1; i < count; i++)
      attn_tensor_set_f64(tensor, i, first);
  } else if (given != count) {
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT,
                ":input %s: the list has %lld values, the type %lld elements", name,
                (long long)given, (long long)count);
  }
  return ATTN_OK;
}

static bool has_suffix(const char *text, const char *suffix) {
  size_t length = strlen(text), suffix_length = strlen(suffix);
  return length >= suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

static char *trim(char *text) {
  while (isspace((unsigned char)*text))
    text++;
  size_t length = strlen(text);
  while (length && isspace((unsigned char)text[length - 1]))
    text[--length] = '\0';
  return text;
}

// Makes the data of ":input NAME [TYPE] = SOURCE" (`spec` is "[TYPE] = SOURCE").
static attn_status make_input(repl *r, const char *name, char *spec, attn_tensor *out) {
  *out = (attn_tensor){0};
  char *equals = strchr(spec, '=');
  if (!equals)
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT,
                ":input %s: expected '= SOURCE' (random, zeros, ones, [values] or FILE.npy)", name);
  *equals = '\0';
  char *type_text = trim(spec), *source = trim(equals + 1);
  if (has_suffix(source, ".npy")) {
    attn_tensor data;
    ATTN_RETURN_IF_ERROR(attn_npy_read(source, r->allocator, &r->diag, &data));
    attn_dtype dtype;
    uint32_t rank;
    int64_t dims[ATTN_MAX_RANK];
    if (*type_text && (!parse_type(type_text, &dtype, &rank, dims) || dtype != data.dtype ||
                       rank != data.rank || memcmp(dims, data.dims, rank * sizeof(*dims)) != 0)) {
      char actual[TYPE_TEXT_SIZE];
      format_tensor_type(&data, actual, sizeof(actual));
      attn_tensor_free(r->allocator, &data);
      return fail(r, ATTN_ERROR_INVALID_ARGUMENT, ":input %s is declared %s, but %s holds %s", name,
                  type_text, source, actual);
    }
    *out = data;
    return ATTN_OK;
  }
  attn_dtype dtype;
  uint32_t rank;
  int64_t dims[ATTN_MAX_RANK];
  if (!parse_type(type_text, &dtype, &rank, dims))
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT,
                ":input %s: '%s' is not a type with constant dims, like f32[2, 3]", name,
                type_text);
  ATTN_RETURN_IF_ERROR(attn_tensor_alloc(r->allocator, dtype, rank, dims, out));
  attn_status status = fill_input(r, name, source, out);
  if (status != ATTN_OK)
    attn_tensor_free(r->allocator, out);
  return status;
}

// Swaps in `next` for the session after re-running it whole; on failure keeps the old one.
static attn_status commit_rerun(repl *r, repl_session *next, bool is_quiet) {
  repl_session previous = r->session;
  r->session = *next;
  attn_status status = r->session.statement_count ? execute(r, NULL, true, is_quiet) : ATTN_OK;
  if (status == ATTN_OK) {
    session_deinit(&previous, r->allocator);
  } else {
    session_deinit(&r->session, r->allocator);
    r->session = previous;
  }
  *next = (repl_session){0};
  return status;
}

// ":input NAME [TYPE] = SOURCE". A new input is added; a declared one gets new data and the
// session is re-run with it (and left as it was if that fails).
static attn_status command_input(repl *r, char *args) {
  char *name = trim(args);
  size_t length = 0;
  while (is_ident_char(name[length]))
    length++;
  if (!length || !is_ident_start(name[0]))
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT, "usage: :input NAME TYPE = SOURCE");
  char name_text[128];
  snprintf(name_text, sizeof(name_text), "%.*s", (int)length, name);
  char *spec = trim(name + length);
  char spec_copy[1024];
  snprintf(spec_copy, sizeof(spec_copy), "%s", spec);
  if (find_value(&r->session, name_text))
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT,
                ":input %s: '%s' is already assigned by a statement", name_text, name_text);
  attn_tensor tensor;
  ATTN_RETURN_IF_ERROR(make_input(r, name_text, spec, &tensor));
  // Keep the spec with the type written out, so :save writes what the data is.
  char *source = trim(strchr(spec_copy, '=') + 1);
  char type[TYPE_TEXT_SIZE], saved[1200];
  format_tensor_type(&tensor, type, sizeof(type));
  snprintf(saved, sizeof(saved), "%s = %s", type, source);
  bool is_new = !find_input(&r->session, name_text);
  if (is_new) {
    attn_status status = set_input(&r->session, r->allocator, name_text, saved, &tensor);
    attn_tensor_free(r->allocator, &tensor);
    if (status == ATTN_OK)
      print_result(name_text, &find_input(&r->session, name_text)->tensor);
    return status == ATTN_OK ? status : fail(r, status, "out of memory");
  }
  repl_session next;
  attn_status status = session_copy(&r->session, r->allocator, &next);
  if (status == ATTN_OK)
    status = set_input(&next, r->allocator, name_text, saved, &tensor);
  attn_tensor_free(r->allocator, &tensor);
  if (status != ATTN_OK) {
    session_deinit(&next, r->allocator);
    return fail(r, status, "out of memory");
  }
  ATTN_RETURN_IF_ERROR(commit_rerun(r, &next, false));
  print_result(name_text, &find_input(&r->session, name_text)->tensor);
  return ATTN_OK;
}

// ---- :print ----------------------------------------------------------------------------------

static void print_statistics(const char *name, const attn_tensor *tensor) {
  char type[TYPE_TEXT_SIZE];
  format_tensor_type(tensor, type, sizeof(type));
  attn_tensor_stats stats = attn_tensor_get_stats(tensor);
  printf("%s: %s, %lld elements\n", name, type, (long long)stats.count);
  if (stats.finite > 0)
    printf("  min %.6g  max %.6g  mean %.6g  std %.6g\n", stats.min, stats.max, stats.mean,
           stats.std);
  printf("  nan %lld  inf %lld\n", (long long)stats.nans,
         (long long)(stats.count - stats.finite - stats.nans));
  attn_tensor_print_values(stdout, tensor, SHOWN_VALUES);
}

// ---- :save and :load -------------------------------------------------------------------------

static attn_status command_save(repl *r, const char *path) {
  repl_session *s = &r->session;
  if (!*path)
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT, "usage: :save FILE");
  if (s->value_count == 0)
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT,
                "the session has no results yet; a saved graph needs at least one output");
  repl_text text = {0};
  text_append(&text, "# An attnc repl session. The '# :input' lines give the inputs' data to\n"
                     "# :load; attnc run binds the inputs with -i NAME=FILE.npy.\n");
  for (size_t i = 0; i < s->input_count; i++)
    text_append(&text, "# :input %s %s\n", s->inputs[i].name, s->inputs[i].spec);
  for (size_t i = 0; i < s->item_count; i++)
    text_append(&text, "%s\n", s->items[i].text);
  text_append(&text, "graph session(");
  for (size_t i = 0; i < s->input_count; i++) {
    char type[TYPE_TEXT_SIZE];
    format_tensor_type(&s->inputs[i].tensor, type, sizeof(type));
    text_append(&text, "%s%s: %s", i ? ", " : "", s->inputs[i].name, type);
  }
  text_append(&text, ") -> (");
  for (size_t i = 0; i < s->value_count; i++) {
    char type[TYPE_TEXT_SIZE];
    format_tensor_type(&s->values[i].tensor, type, sizeof(type));
    text_append(&text, "%s%s: %s", i ? ", " : "", s->values[i].name, type);
  }
  text_append(&text, ") {\n");
  for (size_t i = 0; i < s->statement_count; i++) {
    // Indent each line of the statement as a body line.
    for (const char *line = s->statements[i].text; line;) {
      const char *end = strchr(line, '\n');
      size_t length = end ? (size_t)(end - line) : strlen(line);
      text_append(&text, "  %.*s\n", (int)length, line);
      line = end ? end + 1 : NULL;
    }
  }
  text_append(&text, "  return ");
  for (size_t i = 0; i < s->value_count; i++)
    text_append(&text, "%s%s", i ? ", " : "", s->values[i].name);
  text_append(&text, "\n}\n");
  attn_status status = ATTN_OK;
  FILE *file = text.failed ? NULL : fopen(path, "w");
  if (text.failed)
    status = fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  else if (!file || fwrite(text.data, 1, text.length, file) != text.length)
    status = attn_diag_error(&r->diag, (attn_loc){path, 0, 0}, ATTN_ERROR_IO, "cannot write: %s",
                             strerror(errno));
  if (file && fclose(file) != 0 && status == ATTN_OK)
    status = attn_diag_error(&r->diag, (attn_loc){path, 0, 0}, ATTN_ERROR_IO, "cannot write: %s",
                             strerror(errno));
  if (status == ATTN_OK)
    printf("saved %zu statement%s, %zu output%s to %s\n", s->statement_count,
           s->statement_count == 1 ? "" : "s", s->value_count, s->value_count == 1 ? "" : "s",
           path);
  free(text.data);
  return status;
}

static attn_status handle_chunk(repl *r, char *chunk, const char *origin, uint32_t line,
                                bool in_file, bool *out_quit);

// Splits `text` at commas outside brackets, calling `fn` on each trimmed piece.
typedef attn_status (*piece_fn)(repl *r, char *piece, void *context);
static attn_status split_top_level(repl *r, char *text, piece_fn fn, void *context) {
  int depth = 0;
  char *start = text;
  for (char *p = text;; p++) {
    if (*p == '"') {
      p += skip_string_or_comment(p, 0) - 1;
      continue;
    }
    depth += *p == '(' || *p == '[' || *p == '{';
    depth -= *p == ')' || *p == ']' || *p == '}';
    if ((*p == ',' && depth == 0) || *p == '\0') {
      bool is_end = *p == '\0';
      *p = '\0';
      char *piece = trim(start);
      if (*piece)
        ATTN_RETURN_IF_ERROR(fn(r, piece, context));
      if (is_end)
        return ATTN_OK;
      start = p + 1;
    }
  }
}

// A graph parameter "NAME: TYPE": declared when the session lacks it (random data).
static attn_status load_param(repl *r, char *param, void *context) {
  (void)context;
  char *colon = strchr(param, ':');
  if (!colon)
    return fail(r, ATTN_ERROR_PARSE, "graph parameter '%s' has no type", param);
  *colon = '\0';
  char *name = trim(param), *type = trim(colon + 1);
  repl_input *input = find_input(&r->session, name);
  attn_dtype dtype;
  uint32_t rank;
  int64_t dims[ATTN_MAX_RANK];
  if (!parse_type(type, &dtype, &rank, dims))
    return input ? ATTN_OK // the session's data decides the symbols
                 : fail(r, ATTN_ERROR_UNSUPPORTED,
                        "graph input '%s: %s' has symbolic dims; declare it first with "
                        ":input %s TYPE = SOURCE",
                        name, type, name);
  if (input)
    return ATTN_OK;
  char spec[TYPE_TEXT_SIZE + 16];
  snprintf(spec, sizeof(spec), "%s = random", type);
  attn_tensor tensor;
  ATTN_RETURN_IF_ERROR(make_input(r, name, spec, &tensor));
  char formatted[TYPE_TEXT_SIZE], saved[TYPE_TEXT_SIZE + 16];
  format_tensor_type(&tensor, formatted, sizeof(formatted));
  snprintf(saved, sizeof(saved), "%s = random", formatted);
  attn_status status = set_input(&r->session, r->allocator, name, saved, &tensor);
  attn_tensor_free(r->allocator, &tensor);
  if (status == ATTN_OK)
    printf("%s: %s = random\n", name, formatted);
  return status;
}

static attn_status collect_piece(repl *r, char *piece, void *context) {
  (void)r;
  return names_add(context, piece, strlen(piece));
}

// An output "NAME: TYPE": its name.
static attn_status collect_output(repl *r, char *piece, void *context) {
  size_t length = 0;
  while (is_ident_char(piece[length]))
    length++;
  if (!length)
    return fail(r, ATTN_ERROR_PARSE, "graph output '%s' has no name", piece);
  return names_add(context, piece, length);
}

// Returns the closing bracket matching the one at `open`, or NULL.
static char *matching(char *open) {
  int depth = 0;
  for (char *p = open; *p; p++) {
    if (*p == '"' || *p == '#') {
      p += skip_string_or_comment(p, 0) - 1;
      continue;
    }
    depth += *p == '(' || *p == '[' || *p == '{';
    depth -= *p == ')' || *p == ']' || *p == '}';
    if (depth == 0)
      return p;
  }
  return NULL;
}

// A model's `graph NAME(INPUTS) -> (OUTPUTS) { BODY }`: its inputs join the session, its body
// becomes one statement, and its return binds the output names.
static attn_status load_graph(repl *r, char *chunk, const char *origin, uint32_t line) {
  char *open = strchr(chunk, '(');
  char *close = open ? matching(open) : NULL;
  char *arrow = close ? strstr(close, "->") : NULL;
  char *out_open = arrow ? strchr(arrow, '(') : NULL;
  char *out_close = out_open ? matching(out_open) : NULL;
  char *body_open = out_close ? strchr(out_close, '{') : NULL;
  char *body_close = body_open ? matching(body_open) : NULL;
  if (!body_close)
    return attn_diag_error(&r->diag, (attn_loc){origin, line, 0}, ATTN_ERROR_PARSE,
                           "expected 'graph NAME(INPUTS) -> (OUTPUTS) { BODY }'");
  *close = *out_close = *body_close = '\0';
  ATTN_RETURN_IF_ERROR(split_top_level(r, open + 1, load_param, NULL));
  repl_names names = {0};
  attn_status status = split_top_level(r, out_open + 1, collect_output, &names);
  // The body: everything before the last `return`, then the return as assignments.
  char *body = body_open + 1;
  char *ret = NULL;
  for (char *p = body; status == ATTN_OK && *p; p++) {
    if (*p == '"' || *p == '#') {
      p += skip_string_or_comment(p, 0) - 1;
      continue;
    }
    if (strncmp(p, "return", 6) == 0 && !is_ident_char(p[6]) &&
        (p == body || !is_ident_char(p[-1])))
      ret = p;
  }
  if (status == ATTN_OK && !ret)
    status = attn_diag_error(&r->diag, (attn_loc){origin, line, 0}, ATTN_ERROR_PARSE,
                             "the graph body has no return");
  repl_names returned = {0};
  repl_text text = {0};
  if (status == ATTN_OK) {
    *ret = '\0';
    status = split_top_level(r, ret + 6, collect_piece, &returned);
  }
  if (status == ATTN_OK) {
    // The body's lines as written (indentation included), so columns in messages hold.
    text_append(&text, "%s", body);
    if (returned.count == 1 && names.count > 1) {
      for (size_t i = 0; i < names.count; i++)
        text_append(&text, "%s%s", i ? ", " : "", names.names[i]);
      text_append(&text, " = %s", returned.names[0]);
    } else if (returned.count == names.count) {
      for (size_t i = 0; i < names.count; i++)
        if (strcmp(names.names[i], returned.names[i]) != 0)
          text_append(&text, "%s = %s\n", names.names[i], returned.names[i]);
    } else {
      status = attn_diag_error(&r->diag, (attn_loc){origin, line, 0}, ATTN_ERROR_PARSE,
                               "the graph returns %zu values for %zu outputs", returned.count,
                               names.count);
    }
  }
  if (status == ATTN_OK && text.failed)
    status = fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  if (status == ATTN_OK) {
    // Blank lines before the first statement move its line: count them into the origin.
    uint32_t body_line = line;
    for (char *p = chunk; p < body_open; p++)
      body_line += *p == '\n';
    char *statement = text.data;
    while (*statement == '\n') {
      statement++;
      body_line++;
    }
    char *end = statement + strlen(statement);
    while (end > statement && isspace((unsigned char)end[-1]))
      *--end = '\0';
    bool quit = false;
    status = handle_chunk(r, statement, origin, body_line, true, &quit);
  }
  free(text.data);
  names_deinit(&returned);
  names_deinit(&names);
  return status;
}

static attn_status process_text(repl *r, const char *text, const char *origin, bool in_file);

static attn_status command_load(repl *r, const char *path) {
  if (!*path)
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT, "usage: :load FILE");
  FILE *file = fopen(path, "rb");
  if (!file)
    return attn_diag_error(&r->diag, (attn_loc){path, 0, 0}, ATTN_ERROR_IO, "cannot read: %s",
                           strerror(errno));
  repl_text text = {0};
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), file)) > 0)
    text_append(&text, "%.*s", (int)n, buffer);
  fclose(file);
  if (text.failed || !text.data) {
    free(text.data);
    return text.failed ? fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory") : ATTN_OK;
  }
  // On a copy: a file that fails part way leaves the session as it was.
  repl_session saved = r->session;
  repl_session next;
  attn_status status = session_copy(&saved, r->allocator, &next);
  if (status == ATTN_OK) {
    r->session = next;
    status = process_text(r, text.data, path, true);
    if (status == ATTN_OK) {
      printf("loaded %s: %zu statement%s, %zu result%s\n", path, r->session.statement_count,
             r->session.statement_count == 1 ? "" : "s", r->session.value_count,
             r->session.value_count == 1 ? "" : "s");
      session_deinit(&saved, r->allocator);
    } else {
      session_deinit(&r->session, r->allocator);
      r->session = saved;
    }
  }
  free(text.data);
  return status;
}

// ---- commands --------------------------------------------------------------------------------

static attn_status command_ir(repl *r) {
  repl_session *s = &r->session;
  repl_names targets = {0};
  repl_binding *bindings = calloc(s->input_count + 1, sizeof(*bindings));
  attn_status status = bindings ? ATTN_OK : fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (size_t i = 0; status == ATTN_OK && i < s->input_count; i++)
    bindings[i] = (repl_binding){s->inputs[i].name, &s->inputs[i].tensor};
  for (size_t i = 0; status == ATTN_OK && i < s->value_count; i++)
    status = names_add(&targets, s->values[i].name, strlen(s->values[i].name));
  repl_graph g = {0};
  if (status == ATTN_OK)
    status =
        build_graph(r, s->statements, s->statement_count, bindings, s->input_count, &targets, &g);
  if (status == ATTN_OK) {
    fflush(stdout);
    status = attn_graph_print(g.graph, stdout);
  }
  report(r, &g.program);
  repl_graph_deinit(&g);
  names_deinit(&targets);
  free(bindings);
  return status;
}

static const char help_text[] =
    "  let NAME = EXPR, def NAME(ARGS) { ... }, NAME = EXPR   .attn statements\n"
    "  :input NAME TYPE = random|zeros|ones|[v, ...]|FILE.npy   declare an input\n"
    "  :run  :print NAME  :backend [cpu|interp]  :passes [PIPELINE]  :time [on|off]\n"
    "  :load FILE  :save FILE  :ir  :help  :quit      (attnc repl --help says more)\n";

// Runs one command line (":name args"); sets *out_quit for :quit.
static attn_status run_command(repl *r, char *line, bool *out_quit) {
  char *name = line + 1;
  size_t length = 0;
  while (is_ident_char(name[length]))
    length++;
  if (name[length] != '\0' && !isspace((unsigned char)name[length]))
    return fail(r, ATTN_ERROR_INVALID_ARGUMENT, "unknown command '%s'; :help lists them", line);
  char *args = trim(name + length);
  name[length] = '\0'; // a blank or the end: args start after it
#define IS(word) (strcmp(name, word) == 0)
  if (IS("quit") || IS("q") || IS("exit")) {
    *out_quit = true;
    return ATTN_OK;
  }
  if (IS("help") || IS("h")) {
    fputs(help_text, stdout);
    return ATTN_OK;
  }
  if (IS("input"))
    return command_input(r, args);
  if (IS("run")) {
    if (r->session.statement_count == 0) {
      printf("nothing to run\n");
      return ATTN_OK;
    }
    return execute(r, NULL, true, false);
  }
  if (IS("print") || IS("p")) {
    const attn_tensor *tensor = find_value(&r->session, args);
    const repl_input *input = find_input(&r->session, args);
    if (!tensor && input)
      tensor = &input->tensor;
    if (!tensor)
      return fail(r, ATTN_ERROR_NOT_FOUND, ":print: no tensor named '%s'", args);
    print_statistics(args, tensor);
    return ATTN_OK;
  }
  if (IS("backend")) {
    if (!*args) {
      printf("backend %s\n", r->backend);
      return ATTN_OK;
    }
    if (strcmp(args, "cpu") != 0 && strcmp(args, "interp") != 0)
      return fail(r, ATTN_ERROR_UNSUPPORTED, ":backend: unknown backend '%s'; valid: cpu, interp",
                  args);
    r->backend = strcmp(args, "cpu") == 0 ? "cpu" : "interp";
    printf("backend %s\n", r->backend);
    return ATTN_OK;
  }
  if (IS("passes")) {
    if (!*args) {
      printf("passes %s\n", r->passes);
      return ATTN_OK;
    }
    attn_pipeline pipeline;
    attn_pipeline_run_options options = {0};
    attn_status status = attn_cli_parse_passes(args, &options, &r->diag, &pipeline);
    attn_pipeline_deinit(&pipeline);
    ATTN_RETURN_IF_ERROR(status);
    char *copy = copy_text(args, strlen(args));
    if (!copy)
      return fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    free(r->passes);
    r->passes = copy;
    printf("passes %s\n", r->passes);
    return ATTN_OK;
  }
  if (IS("time")) {
    if (strcmp(args, "on") == 0 || strcmp(args, "off") == 0)
      r->is_timed = args[1] == 'n';
    else if (*args)
      return fail(r, ATTN_ERROR_INVALID_ARGUMENT, "usage: :time [on|off]");
    printf("time %s\n", r->is_timed ? "on" : "off");
    return ATTN_OK;
  }
  if (IS("load"))
    return command_load(r, args);
  if (IS("save"))
    return command_save(r, args);
  if (IS("ir"))
    return command_ir(r);
#undef IS
  return fail(r, ATTN_ERROR_INVALID_ARGUMENT, "unknown command ':%s'; :help lists them", name);
}

// One complete statement or command. In a file, '# :input' comment lines are commands.
// *out_quit is set by :quit.
static attn_status handle_chunk(repl *r, char *chunk, const char *origin, uint32_t line,
                                bool in_file, bool *out_quit) {
  char word[16];
  char *start = (char *)first_word(chunk, word, sizeof(word));
  if (in_file && strncmp(trim(chunk), "# :input", 8) == 0)
    start = trim(chunk) + 2;
  else if (*start == '\0')
    return ATTN_OK; // blank or comments only
  // Lines before `start` (comments) still count for locations.
  for (const char *p = chunk; p < start; p++)
    line += *p == '\n';
  if (*start == ':') {
    char *command = trim(start);
    attn_status status = run_command(r, command, out_quit);
    if (*out_quit && in_file) {
      *out_quit = false;
      status = fail(r, ATTN_ERROR_INVALID_ARGUMENT, ":quit in a loaded file");
    }
    return status;
  }
  if (strcmp(word, "graph") == 0) {
    if (!in_file)
      return fail(r, ATTN_ERROR_UNSUPPORTED,
                  "a whole graph is loaded with :load FILE; enter its statements one by one");
    return load_graph(r, start, origin, line);
  }
  // From the start of its line, so that columns in messages count the indentation too.
  char *line_start = start;
  while (line_start > chunk && line_start[-1] != '\n')
    line_start--;
  repl_source source = {line_start, (char *)origin, line};
  if (strcmp(word, "let") == 0 || strcmp(word, "def") == 0)
    return add_item(r, &source);
  return execute(r, &source, false, in_file);
}

// Splits `text` into statements (a line, continued while brackets are open) and handles each;
// stops at the first failure.
static attn_status process_text(repl *r, const char *text, const char *origin, bool in_file) {
  repl_text chunk = {0};
  uint32_t line = 1, chunk_line = 1;
  attn_status status = ATTN_OK;
  for (const char *p = text; *p && status == ATTN_OK;) {
    const char *end = strchr(p, '\n');
    size_t length = end ? (size_t)(end - p) : strlen(p);
    if (chunk.length == 0)
      chunk_line = line;
    text_append(&chunk, "%s%.*s", chunk.length ? "\n" : "", (int)length, p);
    line++;
    p = end ? end + 1 : p + length;
    if (chunk.failed) {
      status = fail(r, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
      break;
    }
    if (open_brackets(chunk.data) > 0 && *p)
      continue;
    bool quit = false;
    status = handle_chunk(r, chunk.data, origin, chunk_line, in_file, &quit);
    chunk.length = 0;
    chunk.data[0] = '\0';
  }
  free(chunk.data);
  return status;
}

// ---- the terminal ----------------------------------------------------------------------------

// $XDG_STATE_HOME/attnc/history, or ~/.attnc_history; NULL when neither is known.
static char *history_path(void) {
  const char *state = getenv("XDG_STATE_HOME");
  const char *home = getenv("HOME");
  char path[4096];
  if (state && *state) {
    snprintf(path, sizeof(path), "%s/attnc", state);
    mkdir(path, 0700); // may exist already; a failure shows when the history is written
    snprintf(path, sizeof(path), "%s/attnc/history", state);
  } else if (home && *home) {
    snprintf(path, sizeof(path), "%s/.attnc_history", home);
  } else {
    return NULL;
  }
  return copy_text(path, strlen(path));
}

// Reads one statement (several lines while brackets are open). NULL at end of input.
static char *read_statement(repl *r, bool is_terminal, uint32_t *out_line) {
  repl_text text = {0};
  *out_line = r->input_line + 1;
  for (;;) {
    char *line = NULL;
    if (is_terminal) {
      line = readline(text.length ? "...   " : "attn> ");
    } else {
      size_t capacity = 0;
      ssize_t got = getline(&line, &capacity, stdin);
      if (got < 0) {
        free(line);
        line = NULL;
      } else if (got > 0 && line[got - 1] == '\n') {
        line[got - 1] = '\0';
      }
    }
    if (!line) {
      if (text.length)
        return text.data; // an unfinished statement at the end: let the parser say what is open
      free(text.data);
      return NULL;
    }
    r->input_line++;
    text_append(&text, "%s%s", text.length ? "\n" : "", line);
    free(line);
    if (text.failed) {
      free(text.data);
      return NULL;
    }
    if (open_brackets(text.data) <= 0)
      return text.data;
  }
}

static int repl_main(repl *r, const char *initial_file) {
  bool is_terminal = isatty(STDIN_FILENO);
  char *history = NULL;
  if (is_terminal) {
    using_history();
    history = history_path();
    if (history)
      read_history(history);
    printf("attnc repl (backend %s); :help lists the commands, :quit or Ctrl-D ends\n", r->backend);
  }
  if (initial_file) {
    char command[4200];
    snprintf(command, sizeof(command), ":load %s", initial_file);
    bool quit = false;
    if (run_command(r, command, &quit) != ATTN_OK)
      report(r, NULL);
  }
  for (;;) {
    uint32_t line;
    char *statement = read_statement(r, is_terminal, &line);
    if (!statement)
      break;
    if (is_terminal && *trim(statement))
      add_history(statement);
    bool quit = false;
    attn_status status =
        open_brackets(statement) > 0
            ? fail(r, ATTN_ERROR_PARSE, "input:%u: the input ended inside an open bracket", line)
            : handle_chunk(r, statement, "input", line, false, &quit);
    free(statement);
    // Errors from commands were recorded but not yet printed; statements printed theirs.
    if (status != ATTN_OK)
      report(r, NULL);
    fflush(stdout);
    if (quit)
      break;
  }
  if (is_terminal) {
    putchar('\n');
    if (history)
      write_history(history);
  }
  free(history);
  return !is_terminal && r->had_error ? ATTN_EXIT_ERROR : ATTN_EXIT_OK;
}

int attn_tool_repl(int argc, char **argv) {
  const char *backend = "cpu", *passes = "default", *file = NULL;
  bool is_timed = false;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
      fputs(usage, stdout);
      return ATTN_EXIT_OK;
    }
    if (strcmp(arg, "--time") == 0) {
      is_timed = true;
    } else if ((strcmp(arg, "-b") == 0 || strcmp(arg, "-p") == 0) && i + 1 < argc) {
      *(arg[1] == 'b' ? &backend : &passes) = argv[++i];
    } else if (arg[0] == '-') {
      return attn_cli_usage_error("repl", "unknown option or missing value '%s'", arg);
    } else if (file) {
      return attn_cli_usage_error("repl", "unexpected argument '%s' (FILE is '%s')", arg, file);
    } else {
      file = arg;
    }
  }
  if (strcmp(backend, "cpu") != 0 && strcmp(backend, "interp") != 0)
    return attn_cli_usage_error("repl", "unknown backend '%s'; valid: cpu, interp", backend);
  repl r = {.allocator = attn_allocator_system(), .is_timed = is_timed};
  r.backend = strcmp(backend, "cpu") == 0 ? "cpu" : "interp";
  r.passes = copy_text(passes, strlen(passes));
  attn_diag_init(&r.diag, r.allocator);
  int exit_code = ATTN_EXIT_ERROR;
  if (r.passes) {
    attn_pipeline pipeline;
    attn_pipeline_run_options options = {0};
    attn_status status = attn_cli_parse_passes(r.passes, &options, &r.diag, &pipeline);
    attn_pipeline_deinit(&pipeline);
    if (status == ATTN_OK)
      exit_code = repl_main(&r, file);
    else
      report(&r, NULL);
  }
  session_deinit(&r.session, r.allocator);
  attn_cpu_backend_destroy(r.cpu);
  attn_diag_deinit(&r.diag);
  free(r.passes);
  return exit_code;
}
