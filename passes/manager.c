// The pass manager: pipeline parsing, and the verify / compact / print / time loop around
// every pass.
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ir/print.h"
#include "passes/pass.h"

// ---- options ---------------------------------------------------------------------------------

static const attn_pass_option_value *find_option(const attn_pass_context *ctx, const char *name,
                                                 attn_pass_option_type type) {
  const attn_pass_info *pass = ctx->pass;
  for (uint32_t i = 0; i < ctx->option_count; i++) {
    const attn_pass_option_info *info = &pass->options[ctx->options[i].option];
    if (strcmp(info->name, name) == 0 && info->type == type)
      return &ctx->options[i];
  }
  return NULL;
}

int64_t attn_pass_option_int(const attn_pass_context *ctx, const char *name, int64_t fallback) {
  const attn_pass_option_value *v = find_option(ctx, name, ATTN_PASS_OPTION_INT);
  return v ? v->as.i : fallback;
}

double attn_pass_option_float(const attn_pass_context *ctx, const char *name, double fallback) {
  const attn_pass_option_value *v = find_option(ctx, name, ATTN_PASS_OPTION_FLOAT);
  return v ? v->as.f : fallback;
}

bool attn_pass_option_bool(const attn_pass_context *ctx, const char *name, bool fallback) {
  const attn_pass_option_value *v = find_option(ctx, name, ATTN_PASS_OPTION_BOOL);
  return v ? v->as.b : fallback;
}

// ---- parsing -----------------------------------------------------------------------------------

typedef struct parser {
  const char *text; // the whole pipeline, for messages
  const char *p;
  attn_diag *diag;
  attn_pipeline *pipeline;
  size_t capacity;
  int depth; // `default` expands to a pipeline text; this bounds that recursion
} parser;

static attn_status syntax_error(parser *ps, const char *format, ...) ATTN_PRINTF(2, 3);
static attn_status syntax_error(parser *ps, const char *format, ...) {
  char message[512];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  return attn_diag_error(ps->diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                         "pass pipeline '%s': %s", ps->text, message);
}

// Appends "a, b, c" (the valid names) to `buffer`.
static void list_passes(char *buffer, size_t size) {
  uint32_t count;
  const attn_pass_info *passes = attn_pass_registry(&count);
  size_t used = (size_t)snprintf(buffer, size, "default, none");
  for (uint32_t i = 0; i < count && used < size; i++)
    used += (size_t)snprintf(buffer + used, size - used, ", %s", passes[i].name);
}

static void list_options(const attn_pass_info *pass, char *buffer, size_t size) {
  size_t used = 0;
  buffer[0] = '\0';
  for (uint32_t i = 0; i < pass->option_count && used < size; i++)
    used +=
        (size_t)snprintf(buffer + used, size - used, "%s%s", i ? ", " : "", pass->options[i].name);
}

static bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

static void skip_spaces(parser *ps) {
  while (*ps->p == ' ' || *ps->p == '\t')
    ps->p++;
}

static size_t scan_name(parser *ps) {
  size_t length = 0;
  while (is_name_char(ps->p[length]))
    length++;
  return length;
}

static attn_status parse_value(parser *ps, const attn_pass_info *pass, uint32_t option,
                               const char *value, size_t length, attn_pass_option_value *out) {
  const attn_pass_option_info *info = &pass->options[option];
  char text[64];
  if (length == 0 || length >= sizeof(text))
    goto bad;
  memcpy(text, value, length);
  text[length] = '\0';
  char *end = NULL;
  errno = 0;
  out->option = option;
  switch (info->type) {
  case ATTN_PASS_OPTION_INT:
    out->as.i = strtoll(text, &end, 10);
    if (errno || *end)
      goto bad;
    return ATTN_OK;
  case ATTN_PASS_OPTION_FLOAT:
    out->as.f = strtod(text, &end);
    if (errno || *end || isnan(out->as.f))
      goto bad;
    return ATTN_OK;
  case ATTN_PASS_OPTION_BOOL:
    if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
      out->as.b = true;
    else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
      out->as.b = false;
    else
      goto bad;
    return ATTN_OK;
  }
bad:;
  static const char *const kinds[] = {"an integer", "a number", "true or false"};
  return syntax_error(ps, "option '%s' of pass '%s' takes %s, not '%.*s'", info->name, pass->name,
                      kinds[info->type], (int)length, value);
}

// `{key=value,...}` after a pass name.
static attn_status parse_options(parser *ps, attn_pipeline_entry *entry) {
  const attn_pass_info *pass = entry->pass;
  ps->p++; // '{'
  attn_pass_option_value *values = NULL;
  uint32_t count = 0;
  if (pass->option_count) {
    values = attn_arena_calloc(&ps->pipeline->arena, pass->option_count, sizeof(*values));
    if (!values)
      return attn_diag_error(ps->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  }
  char valid[512];
  for (;;) {
    skip_spaces(ps);
    size_t length = scan_name(ps);
    if (length == 0)
      return syntax_error(ps, "expected an option name at '%s'", ps->p);
    uint32_t option = 0;
    while (option < pass->option_count && !(strlen(pass->options[option].name) == length &&
                                            memcmp(pass->options[option].name, ps->p, length) == 0))
      option++;
    if (option == pass->option_count) {
      if (pass->option_count == 0)
        return syntax_error(ps, "pass '%s' takes no options", pass->name);
      list_options(pass, valid, sizeof(valid));
      return syntax_error(ps, "unknown option '%.*s' for pass '%s'; valid: %s", (int)length, ps->p,
                          pass->name, valid);
    }
    for (uint32_t i = 0; i < count; i++)
      if (values[i].option == option)
        return syntax_error(ps, "option '%s' of pass '%s' given twice", pass->options[option].name,
                            pass->name);
    ps->p += length;
    skip_spaces(ps);
    if (*ps->p != '=')
      return syntax_error(ps, "expected '=' after option '%s'", pass->options[option].name);
    ps->p++;
    skip_spaces(ps);
    const char *value = ps->p;
    while (*ps->p && *ps->p != ',' && *ps->p != '}' && *ps->p != ' ')
      ps->p++;
    ATTN_RETURN_IF_ERROR(
        parse_value(ps, pass, option, value, (size_t)(ps->p - value), &values[count++]));
    skip_spaces(ps);
    if (*ps->p == ',') {
      ps->p++;
      continue;
    }
    if (*ps->p == '}') {
      ps->p++;
      break;
    }
    return syntax_error(ps, "expected ',' or '}' in the options of '%s'", pass->name);
  }
  entry->options = values;
  entry->option_count = count;
  return ATTN_OK;
}

static attn_status append(parser *ps, const attn_pass_info *pass, attn_pipeline_entry **out) {
  attn_pipeline *pl = ps->pipeline;
  if (pl->count == ps->capacity) {
    size_t capacity = ps->capacity ? 2 * ps->capacity : 16;
    attn_pipeline_entry *entries = attn_arena_alloc(&pl->arena, capacity * sizeof(*entries), 16);
    if (!entries)
      return attn_diag_error(ps->diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    if (pl->count)
      memcpy(entries, pl->entries, pl->count * sizeof(*entries));
    pl->entries = entries;
    ps->capacity = capacity;
  }
  *out = &pl->entries[pl->count++];
  **out = (attn_pipeline_entry){pass, NULL, 0};
  return ATTN_OK;
}

static attn_status parse_items(parser *ps, const char *text) {
  const char *saved = ps->p;
  ps->p = text;
  for (;;) {
    skip_spaces(ps);
    if (*ps->p == '\0')
      break;
    size_t length = scan_name(ps);
    if (length == 0)
      return syntax_error(ps, "expected a pass name at '%s'", ps->p);
    const char *name = ps->p;
    ps->p += length;
    if ((length == 7 && memcmp(name, "default", 7) == 0) ||
        (length == 4 && memcmp(name, "none", 4) == 0)) {
      if (name[0] == 'd') {
        if (ps->depth++ > 0)
          return syntax_error(ps, "the default pipeline names itself");
        ATTN_RETURN_IF_ERROR(parse_items(ps, attn_pipeline_default_text()));
        ps->depth--;
      }
    } else {
      const attn_pass_info *pass = attn_pass_find(name, length);
      if (!pass) {
        char valid[1024];
        list_passes(valid, sizeof(valid));
        return syntax_error(ps, "unknown pass '%.*s'; valid: %s", (int)length, name, valid);
      }
      attn_pipeline_entry *entry = NULL;
      ATTN_RETURN_IF_ERROR(append(ps, pass, &entry));
      skip_spaces(ps);
      if (*ps->p == '{')
        ATTN_RETURN_IF_ERROR(parse_options(ps, entry));
    }
    skip_spaces(ps);
    if (*ps->p == ',') {
      ps->p++;
      skip_spaces(ps);
      if (*ps->p == '\0')
        return syntax_error(ps, "a pass name must follow ','");
      continue;
    }
    if (*ps->p != '\0')
      return syntax_error(ps, "expected ',' at '%s'", ps->p);
  }
  ps->p = saved;
  return ATTN_OK;
}

attn_status attn_pipeline_parse(const char *text, attn_allocator allocator, attn_diag *diag,
                                attn_pipeline *out) {
  *out = (attn_pipeline){0};
  attn_arena_init(&out->arena, allocator);
  parser ps = {text, text, diag, out, 0, 0};
  return parse_items(&ps, text);
}

void attn_pipeline_deinit(attn_pipeline *pipeline) {
  attn_arena_deinit(&pipeline->arena);
  *pipeline = (attn_pipeline){0};
}

// ---- running -----------------------------------------------------------------------------------

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static uint32_t live_nodes(const attn_graph *graph) {
  uint32_t count = 0;
  for (uint32_t n = 1; n < graph->node_count; n++)
    count += !graph->nodes[n].is_dead;
  return count;
}

#ifdef NDEBUG
enum { VERIFY_ALWAYS = 0 };
#else
enum { VERIFY_ALWAYS = 1 };
#endif

attn_status attn_pipeline_run(const attn_pipeline *pipeline, attn_graph *graph,
                              const attn_pipeline_run_options *options) {
  static const attn_pipeline_run_options no_options = {0};
  if (!options)
    options = &no_options;
  FILE *out = options->out ? options->out : stderr;
  double total_ms = 0.0;
  if (options->time_passes)
    fprintf(out, "# %-24s %10s %8s %8s\n", "pass", "ms", "nodes", "after");
  for (uint32_t i = 0; i < pipeline->count; i++) {
    const attn_pipeline_entry *entry = &pipeline->entries[i];
    attn_pass_context ctx = {
        .pass = entry->pass,
        .diag = graph->diag,
        .options = entry->options,
        .option_count = entry->option_count,
        .symbol_values = options->symbol_values,
    };
    attn_arena_init(&ctx.scratch, graph->allocator);
    uint32_t before = live_nodes(graph);
    double start = now_ms();
    attn_status status = entry->pass->run(&ctx, graph);
    attn_arena_deinit(&ctx.scratch);
    if (status == ATTN_OK)
      status = attn_graph_compact(graph);
    double elapsed = now_ms() - start;
    total_ms += elapsed;
    if (status == ATTN_OK && (VERIFY_ALWAYS || options->verify_each)) {
      status = attn_graph_verify(graph);
      if (status != ATTN_OK)
        attn_diag_note(graph->diag, ATTN_LOC_NONE, "the graph was valid before pass '%s'",
                       entry->pass->name);
    }
    if (status != ATTN_OK)
      return status;
    if (options->time_passes)
      fprintf(out, "# %-24s %10.3f %8" PRIu32 " %8" PRIu32 "%s\n", entry->pass->name, elapsed,
              before, live_nodes(graph), ctx.changed ? "" : "  (unchanged)");
    if (options->print_after_all ||
        (options->print_after && strcmp(options->print_after, entry->pass->name) == 0)) {
      fprintf(out, "# ---- IR after %s ----\n", entry->pass->name);
      ATTN_RETURN_IF_ERROR(attn_graph_print(graph, out));
    }
  }
  if (options->time_passes)
    fprintf(out, "# %-24s %10.3f\n", "total", total_ms);
  return ATTN_OK;
}
