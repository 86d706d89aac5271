// Model configs (config.json). cJSON parses the text; the tree is then copied into an arena
// from the injected allocator and cJSON's is freed, so a config holds no cJSON memory.
// cJSON keeps numbers only as doubles, so whether a number was written as an integer is
// recovered from the text: numbers appear in the text in the same order as in a depth-first
// walk of the tree, and a scanner over the text pairs each with its token.
#include <string.h>

#include <cjson/cJSON.h>

#include "runtime/base/arena.h"
#include "runtime/tensor/io.h"
#include "runtime/tensor/weights.h"

// Doubles hold every integer up to 2^53; larger ones are not reported as integers.
#define JSON_MAX_EXACT_INTEGER 9007199254740992.0

typedef struct config_node config_node;

struct config_node {
  attn_config_kind kind; // OTHER for arrays and objects
  bool is_object;
  const char *key; // the member name in the parent object, else NULL
  double number;
  bool is_integer;
  const char *string;
  config_node *children;
  size_t child_count;
};

struct attn_config {
  attn_allocator allocator;
  attn_arena arena; // the name and every node and string
  const char *name;
  config_node root;
};

// Walks the JSON text from number token to number token, skipping strings.
typedef struct number_scanner {
  const char *p;
  const char *end;
} number_scanner;

static bool is_number_char(char c) {
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// Finds the next number token; `*out_is_plain` tells whether it has no fraction or exponent.
static bool next_number(number_scanner *scanner, bool *out_is_plain) {
  while (scanner->p < scanner->end) {
    char c = *scanner->p;
    if (c == '"') {
      scanner->p++;
      while (scanner->p < scanner->end && *scanner->p != '"')
        scanner->p += *scanner->p == '\\' ? 2 : 1;
      scanner->p++;
      continue;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      bool is_plain = true;
      while (scanner->p < scanner->end && is_number_char(*scanner->p)) {
        if (*scanner->p == '.' || *scanner->p == 'e' || *scanner->p == 'E')
          is_plain = false;
        scanner->p++;
      }
      *out_is_plain = is_plain;
      return true;
    }
    scanner->p++;
  }
  return false;
}

static bool copy_node(attn_config *config, const cJSON *item, number_scanner *numbers,
                      config_node *out) {
  memset(out, 0, sizeof(*out));
  if (item->string && !(out->key = attn_arena_strdup(&config->arena, item->string)))
    return false;
  if (cJSON_IsNull(item)) {
    out->kind = ATTN_CONFIG_NULL;
  } else if (cJSON_IsBool(item)) {
    out->kind = ATTN_CONFIG_BOOL;
    out->number = cJSON_IsTrue(item) ? 1.0 : 0.0;
  } else if (cJSON_IsNumber(item)) {
    out->kind = ATTN_CONFIG_NUMBER;
    out->number = item->valuedouble;
    bool is_plain = false;
    if (!next_number(numbers, &is_plain))
      is_plain = false;
    double v = out->number;
    out->is_integer = is_plain && v >= -JSON_MAX_EXACT_INTEGER && v <= JSON_MAX_EXACT_INTEGER &&
                      (double)(long long)v == v;
  } else if (cJSON_IsString(item)) {
    out->kind = ATTN_CONFIG_STRING;
    if (!(out->string = attn_arena_strdup(&config->arena, item->valuestring)))
      return false;
  } else {
    out->kind = ATTN_CONFIG_OTHER;
    out->is_object = cJSON_IsObject(item);
    size_t count = (size_t)cJSON_GetArraySize(item);
    if (count > 0 && !(out->children = attn_arena_calloc(&config->arena, count, sizeof(*out))))
      return false;
    size_t i = 0;
    const cJSON *child;
    cJSON_ArrayForEach(child, item) {
      if (!copy_node(config, child, numbers, &out->children[i++]))
        return false;
    }
    out->child_count = count;
  }
  return true;
}

// 1-based line and column of `at` in `text`.
static attn_loc text_loc(const char *name, const char *text, const char *at) {
  attn_loc loc = {name, 1, 1};
  for (const char *p = text; p < at; p++) {
    if (*p == '\n') {
      loc.line++;
      loc.col = 1;
    } else {
      loc.col++;
    }
  }
  return loc;
}

attn_status attn_config_parse(const char *text, size_t length, const char *name,
                              attn_allocator allocator, attn_diag *diag, attn_config **out_config) {
  *out_config = NULL;
  attn_loc loc = {name, 0, 0};
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(text, length, &end, false);
  if (!root) {
    if (!end || end < text || end > text + length)
      end = text;
    return attn_diag_error(diag, text_loc(name, text, end), ATTN_ERROR_PARSE, "invalid JSON");
  }
  for (const char *p = end; p < text + length; p++) {
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      cJSON_Delete(root);
      return attn_diag_error(diag, text_loc(name, text, p), ATTN_ERROR_PARSE,
                             "unexpected text after the JSON value");
    }
  }
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "a config must be a JSON object");
  }
  attn_config *config = attn_allocator_calloc(allocator, 1, sizeof(*config));
  attn_status status = config ? ATTN_OK : ATTN_ERROR_OUT_OF_MEMORY;
  if (config) {
    config->allocator = allocator;
    attn_arena_init(&config->arena, allocator);
    number_scanner numbers = {text, text + length};
    config->name = attn_arena_strdup(&config->arena, name);
    if (!config->name || !copy_node(config, root, &numbers, &config->root))
      status = ATTN_ERROR_OUT_OF_MEMORY;
  }
  cJSON_Delete(root);
  if (status != ATTN_OK) {
    attn_config_destroy(config);
    return attn_diag_error(diag, loc, status, "out of memory reading the config");
  }
  *out_config = config;
  return ATTN_OK;
}

attn_status attn_config_read(const char *path, attn_allocator allocator, attn_diag *diag,
                             attn_config **out_config) {
  *out_config = NULL;
  char *text;
  size_t length;
  ATTN_RETURN_IF_ERROR(attn_io_read_file(path, allocator, diag, &text, &length));
  attn_status status = attn_config_parse(text, length, path, allocator, diag, out_config);
  attn_allocator_free(allocator, text, length + 1);
  return status;
}

void attn_config_destroy(attn_config *config) {
  if (!config)
    return;
  attn_allocator allocator = config->allocator;
  attn_arena_deinit(&config->arena);
  attn_allocator_free(allocator, config, sizeof(*config));
}

// The member `key` (of `length` bytes) of object `node`; the last one when a key repeats, as
// Python's json module (which wrote the file) would read it.
static const config_node *find_member(const config_node *node, const char *key, size_t length) {
  if (!node->is_object)
    return NULL;
  const config_node *found = NULL;
  for (size_t i = 0; i < node->child_count; i++) {
    const char *k = node->children[i].key;
    if (strncmp(k, key, length) == 0 && k[length] == '\0')
      found = &node->children[i];
  }
  return found;
}

attn_config_value attn_config_get(const attn_config *config, const char *path) {
  attn_config_value value = {ATTN_CONFIG_MISSING, 0.0, false, NULL, 0};
  if (!config || !path)
    return value;
  const config_node *node = &config->root;
  for (const char *p = path;;) {
    const char *dot = strchr(p, '.');
    size_t length = dot ? (size_t)(dot - p) : strlen(p);
    if (!(node = find_member(node, p, length)))
      return value;
    if (!dot)
      break;
    p = dot + 1;
  }
  value.kind = node->kind;
  value.number = node->number;
  value.is_integer = node->is_integer;
  value.string = node->string;
  value.count = node->child_count;
  return value;
}

const char *attn_config_name(const attn_config *config) {
  return config->name;
}
