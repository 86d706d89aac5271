// Weight sets: one safetensors file, or a Hugging Face model directory (config.json plus
// model.safetensors, or model.safetensors.index.json and its shards). Every shard is opened
// and validated once, up front; names from all shards go into one hash table so a lookup is
// O(1) whatever the number of tensors. The index's weight_map decides which shard a name
// comes from when shards disagree; tensors it does not list are still found.
#include "runtime/tensor/weights.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "runtime/base/arena.h"
#include "runtime/tensor/io.h"
#include "runtime/tensor/name_table.h"
#include "runtime/tensor/safetensors.h"

typedef struct weight_entry {
  const char *name; // borrowed from the shard (or the weights' arena)
  uint32_t shard;
  size_t index;       // in the shard
  attn_tensor tensor; // an in-memory set's tensor, its data in the weights' arena
} weight_entry;

struct attn_weights {
  attn_allocator allocator;
  attn_arena arena; // paths
  const char *path;
  attn_config *config;
  attn_safetensors **shards;
  size_t shard_count;
  weight_entry *entries;
  size_t count;
  attn_name_table table;
  bool is_memory; // made by attn_weights_from_tensors: entries hold the tensors, no shards
};

// ---- building --------------------------------------------------------------------------------

static attn_status out_of_memory(attn_diag *diag, const char *path) {
  return attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
}

static bool exists(const char *path) {
  struct stat info;
  return stat(path, &info) == 0;
}

// "dir/file", in the weights' arena.
static char *join(attn_weights *weights, const char *dir, const char *file) {
  return attn_arena_printf(&weights->arena, "%s/%s", dir, file);
}

// Reserves room for `count` shards (all NULL).
static attn_status reserve_shards(attn_weights *weights, size_t count, attn_diag *diag) {
  weights->shards = attn_arena_calloc(&weights->arena, count ? count : 1, sizeof(*weights->shards));
  return weights->shards ? ATTN_OK : out_of_memory(diag, weights->path);
}

static attn_status open_shard(attn_weights *weights, const char *path, attn_diag *diag) {
  attn_safetensors *file;
  ATTN_RETURN_IF_ERROR(attn_safetensors_open(path, weights->allocator, diag, &file));
  weights->shards[weights->shard_count++] = file;
  return ATTN_OK;
}

// Sizes the entry array and the table for every tensor of every shard.
static attn_status reserve_entries(attn_weights *weights, attn_diag *diag) {
  size_t total = 0;
  for (size_t s = 0; s < weights->shard_count; s++)
    total += attn_safetensors_count(weights->shards[s]);
  weights->entries = attn_arena_calloc(&weights->arena, total ? total : 1, sizeof(weight_entry));
  if (!weights->entries ||
      attn_name_table_init(&weights->table, weights->allocator, total) != ATTN_OK)
    return out_of_memory(diag, weights->path);
  return ATTN_OK;
}

static void add_entry(attn_weights *weights, const char *name, uint32_t shard, size_t index) {
  size_t existing;
  if (attn_name_table_insert(&weights->table, name, weights->count, &existing))
    weights->entries[weights->count++] = (weight_entry){name, shard, index, {0}};
}

// The single-file case: every tensor of shard 0.
static attn_status index_single_file(attn_weights *weights, attn_diag *diag) {
  ATTN_RETURN_IF_ERROR(reserve_entries(weights, diag));
  const attn_safetensors *file = weights->shards[0];
  for (size_t i = 0; i < attn_safetensors_count(file); i++)
    add_entry(weights, attn_safetensors_name(file, i), 0, i);
  return ATTN_OK;
}

// Loads `dir/config.json` when it exists (it must then be valid).
static attn_status load_config_if_present(attn_weights *weights, const char *dir, attn_diag *diag) {
  char *path = join(weights, dir, "config.json");
  if (!path)
    return out_of_memory(diag, weights->path);
  if (!exists(path))
    return ATTN_OK;
  return attn_config_read(path, weights->allocator, diag, &weights->config);
}

static attn_status open_single_file(attn_weights *weights, const char *path, attn_diag *diag) {
  ATTN_RETURN_IF_ERROR(reserve_shards(weights, 1, diag));
  ATTN_RETURN_IF_ERROR(open_shard(weights, path, diag));
  // The directory holding the file: "" for "/x" (so config.json is "/config.json"), "." for "x".
  const char *slash = strrchr(path, '/');
  const char *dir =
      !slash ? "." : attn_arena_strndup(&weights->arena, path, (size_t)(slash - path));
  if (!dir)
    return out_of_memory(diag, path);
  ATTN_RETURN_IF_ERROR(load_config_if_present(weights, dir, diag));
  return index_single_file(weights, diag);
}

// A shard file name from the index must name a file in the model directory itself.
static bool is_safe_shard_name(const char *name) {
  return *name && !strchr(name, '/') && !strchr(name, '\\') && !strstr(name, "..") &&
         strcmp(name, ".") != 0;
}

static int compare_strings(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// State for reading an index: the parsed JSON, its shard names and a name → shard table.
typedef struct index_reader {
  attn_weights *weights;
  attn_diag *diag;
  const char *index_path;
  attn_loc loc; // the index file
  cJSON *root;
  const cJSON *weight_map;
  size_t map_count;
  const char **shard_names; // sorted, unique; in the arena
  size_t shard_name_count;
  attn_name_table shard_table;  // shard name → position in shard_names
  attn_name_table mapped_table; // tensor name → position of its shard in shard_names
} index_reader;

// Parses the index file and checks the shape of "weight_map".
static attn_status read_index_json(index_reader *reader) {
  attn_weights *weights = reader->weights;
  attn_loc loc = reader->loc;
  char *text;
  size_t length;
  ATTN_RETURN_IF_ERROR(
      attn_io_read_file(reader->index_path, weights->allocator, reader->diag, &text, &length));
  const char *end = NULL;
  reader->root = cJSON_ParseWithLengthOpts(text, length, &end, false);
  bool has_garbage = false;
  for (const char *p = end; reader->root && p < text + length; p++)
    has_garbage |= *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r';
  attn_allocator_free(weights->allocator, text, length + 1);
  if (!reader->root || has_garbage)
    return attn_diag_error(reader->diag, loc, ATTN_ERROR_PARSE, "invalid JSON");
  reader->weight_map = cJSON_GetObjectItemCaseSensitive(reader->root, "weight_map");
  if (!cJSON_IsObject(reader->root) || !reader->weight_map)
    return attn_diag_error(reader->diag, loc, ATTN_ERROR_PARSE, "missing \"weight_map\"");
  if (!cJSON_IsObject(reader->weight_map))
    return attn_diag_error(reader->diag, loc, ATTN_ERROR_PARSE,
                           "\"weight_map\" is not a JSON object");
  const cJSON *item;
  cJSON_ArrayForEach(item, reader->weight_map) {
    if (!cJSON_IsString(item))
      return attn_diag_error(reader->diag, loc, ATTN_ERROR_PARSE,
                             "\"weight_map\" entry '%s' is not a string", item->string);
    if (!is_safe_shard_name(item->valuestring))
      return attn_diag_error(reader->diag, loc, ATTN_ERROR_PARSE,
                             "\"weight_map\" entry '%s' names shard '%s', which is not a plain "
                             "file name in the model directory",
                             item->string, item->valuestring);
    reader->map_count++;
  }
  if (reader->map_count == 0)
    return attn_diag_error(reader->diag, loc, ATTN_ERROR_PARSE, "\"weight_map\" lists no tensors");
  return ATTN_OK;
}

// Collects the distinct shard names, sorted so shards open in a stable order.
static attn_status collect_shard_names(index_reader *reader) {
  attn_weights *weights = reader->weights;
  attn_name_table seen;
  if (attn_name_table_init(&seen, weights->allocator, reader->map_count) != ATTN_OK)
    return out_of_memory(reader->diag, reader->index_path);
  reader->shard_names = attn_arena_calloc(&weights->arena, reader->map_count, sizeof(char *));
  if (!reader->shard_names) {
    attn_name_table_deinit(&seen, weights->allocator);
    return out_of_memory(reader->diag, reader->index_path);
  }
  const cJSON *item;
  cJSON_ArrayForEach(item, reader->weight_map) {
    size_t existing;
    if (attn_name_table_insert(&seen, item->valuestring, reader->shard_name_count, &existing))
      reader->shard_names[reader->shard_name_count++] = item->valuestring;
  }
  attn_name_table_deinit(&seen, weights->allocator);
  qsort(reader->shard_names, reader->shard_name_count, sizeof(char *), compare_strings);
  if (attn_name_table_init(&reader->shard_table, weights->allocator, reader->shard_name_count) !=
      ATTN_OK)
    return out_of_memory(reader->diag, reader->index_path);
  for (size_t i = 0; i < reader->shard_name_count; i++) {
    size_t existing;
    attn_name_table_insert(&reader->shard_table, reader->shard_names[i], i, &existing);
  }
  return ATTN_OK;
}

// Maps every listed tensor to its shard and checks that the shard has it.
static attn_status check_weight_map(index_reader *reader) {
  attn_weights *weights = reader->weights;
  if (attn_name_table_init(&reader->mapped_table, weights->allocator, reader->map_count) != ATTN_OK)
    return out_of_memory(reader->diag, reader->index_path);
  const cJSON *item;
  cJSON_ArrayForEach(item, reader->weight_map) {
    size_t shard = 0, existing;
    attn_name_table_find(&reader->shard_table, item->valuestring, &shard);
    if (!attn_name_table_insert(&reader->mapped_table, item->string, shard, &existing) &&
        existing != shard)
      return attn_diag_error(reader->diag, reader->loc, ATTN_ERROR_PARSE,
                             "\"weight_map\" lists '%s' twice, in different shards", item->string);
    size_t index;
    if (!attn_safetensors_find_index(weights->shards[shard], item->string, &index))
      return attn_diag_error(reader->diag, reader->loc, ATTN_ERROR_NOT_FOUND,
                             "\"weight_map\" puts '%s' in %s, which has no such tensor",
                             item->string, attn_safetensors_path(weights->shards[shard]));
  }
  return ATTN_OK;
}

// Adds every tensor of every shard. A tensor the weight map places in another shard is a stale
// copy and skipped; an unlisted name found in two shards is ambiguous.
static attn_status index_shards(index_reader *reader) {
  attn_weights *weights = reader->weights;
  ATTN_RETURN_IF_ERROR(reserve_entries(weights, reader->diag));
  for (size_t s = 0; s < weights->shard_count; s++) {
    const attn_safetensors *file = weights->shards[s];
    for (size_t i = 0; i < attn_safetensors_count(file); i++) {
      const char *name = attn_safetensors_name(file, i);
      size_t mapped_shard, existing;
      if (attn_name_table_find(&reader->mapped_table, name, &mapped_shard) && mapped_shard != s)
        continue;
      if (!attn_name_table_insert(&weights->table, name, weights->count, &existing))
        return attn_diag_error(
            reader->diag, reader->loc, ATTN_ERROR_PARSE,
            "tensor '%s' is in both %s and %s, and \"weight_map\" does not say which to use", name,
            attn_safetensors_path(weights->shards[weights->entries[existing].shard]),
            attn_safetensors_path(file));
      weights->entries[weights->count++] = (weight_entry){name, (uint32_t)s, i, {0}};
    }
  }
  return ATTN_OK;
}

static attn_status open_sharded(attn_weights *weights, const char *dir, const char *index_path,
                                attn_diag *diag) {
  index_reader reader;
  memset(&reader, 0, sizeof(reader));
  reader.weights = weights;
  reader.diag = diag;
  reader.index_path = index_path;
  reader.loc = (attn_loc){index_path, 0, 0};
  attn_status status = read_index_json(&reader);
  if (status == ATTN_OK)
    status = collect_shard_names(&reader);
  if (status == ATTN_OK)
    status = reserve_shards(weights, reader.shard_name_count, diag);
  for (size_t i = 0; status == ATTN_OK && i < reader.shard_name_count; i++) {
    char *path = join(weights, dir, reader.shard_names[i]);
    status = path ? open_shard(weights, path, diag) : out_of_memory(diag, index_path);
  }
  if (status == ATTN_OK)
    status = check_weight_map(&reader);
  if (status == ATTN_OK)
    status = index_shards(&reader);
  attn_name_table_deinit(&reader.mapped_table, weights->allocator);
  attn_name_table_deinit(&reader.shard_table, weights->allocator);
  cJSON_Delete(reader.root);
  return status;
}

static attn_status open_directory(attn_weights *weights, const char *dir, attn_diag *diag) {
  attn_loc loc = {dir, 0, 0};
  char *config_path = join(weights, dir, "config.json");
  char *single_path = join(weights, dir, "model.safetensors");
  char *index_path = join(weights, dir, "model.safetensors.index.json");
  if (!config_path || !single_path || !index_path)
    return out_of_memory(diag, dir);
  if (!exists(config_path))
    return attn_diag_error(diag, loc, ATTN_ERROR_NOT_FOUND,
                           "no config.json in this directory (a Hugging Face model directory "
                           "holds config.json and model.safetensors or "
                           "model.safetensors.index.json)");
  ATTN_RETURN_IF_ERROR(attn_config_read(config_path, weights->allocator, diag, &weights->config));
  // transformers prefers the single file when both are present; so do we.
  if (exists(single_path)) {
    ATTN_RETURN_IF_ERROR(reserve_shards(weights, 1, diag));
    ATTN_RETURN_IF_ERROR(open_shard(weights, single_path, diag));
    return index_single_file(weights, diag);
  }
  if (exists(index_path))
    return open_sharded(weights, dir, index_path, diag);
  return attn_diag_error(diag, loc, ATTN_ERROR_NOT_FOUND,
                         "no model.safetensors or model.safetensors.index.json in this directory");
}

// `path` without trailing slashes ("dir/" → "dir", but "/" stays), so joined paths read well.
static const char *copy_path(attn_weights *weights, const char *path) {
  size_t length = strlen(path);
  while (length > 1 && path[length - 1] == '/')
    length--;
  return attn_arena_strndup(&weights->arena, path, length);
}

attn_status attn_weights_open(const char *path, attn_allocator allocator, attn_diag *diag,
                              attn_weights **out_weights) {
  *out_weights = NULL;
  attn_loc loc = {path, 0, 0};
  attn_weights *weights = attn_allocator_calloc(allocator, 1, sizeof(*weights));
  if (!weights)
    return attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  weights->allocator = allocator;
  attn_arena_init(&weights->arena, allocator);
  attn_status status = ATTN_OK;
  struct stat info;
  if (stat(path, &info) != 0)
    status = attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot open: %s", strerror(errno));
  else if (!(weights->path = copy_path(weights, path)))
    status = out_of_memory(diag, path);
  else if (S_ISDIR(info.st_mode))
    status = open_directory(weights, weights->path, diag);
  else
    status = open_single_file(weights, weights->path, diag);
  if (status != ATTN_OK) {
    attn_weights_close(weights);
    return status;
  }
  *out_weights = weights;
  return ATTN_OK;
}

attn_status attn_weights_from_tensors(const char *name, const attn_named_tensor *tensors,
                                      size_t count, attn_allocator allocator, attn_diag *diag,
                                      attn_weights **out_weights) {
  *out_weights = NULL;
  attn_loc loc = {name, 0, 0};
  attn_weights *weights = attn_allocator_calloc(allocator, 1, sizeof(*weights));
  if (!weights)
    return attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  weights->allocator = allocator;
  weights->is_memory = true;
  attn_arena_init(&weights->arena, allocator);
  attn_status status = ATTN_OK;
  weights->path = attn_arena_strdup(&weights->arena, name);
  weights->entries = attn_arena_calloc(&weights->arena, count ? count : 1, sizeof(weight_entry));
  if (!weights->path || !weights->entries ||
      attn_name_table_init(&weights->table, allocator, count) != ATTN_OK)
    status = out_of_memory(diag, name);
  for (size_t i = 0; i < count && status == ATTN_OK; i++) {
    const attn_named_tensor *t = &tensors[i];
    size_t bytes;
    if (!t->name || !t->name[0] || !attn_tensor_size_bytes(&t->tensor, &bytes)) {
      status = attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT,
                               "tensor %zu has no name or an invalid shape", i);
      break;
    }
    weight_entry entry = {attn_arena_strdup(&weights->arena, t->name), 0, i, t->tensor};
    entry.tensor.data = attn_arena_alloc(&weights->arena, bytes ? bytes : 1, 16);
    if (!entry.name || !entry.tensor.data) {
      status = out_of_memory(diag, name);
      break;
    }
    if (bytes)
      memcpy(entry.tensor.data, t->tensor.data, bytes);
    size_t existing;
    if (!attn_name_table_insert(&weights->table, entry.name, weights->count, &existing)) {
      status = attn_diag_error(diag, loc, ATTN_ERROR_INVALID_ARGUMENT, "two tensors are named '%s'",
                               entry.name);
      break;
    }
    weights->entries[weights->count++] = entry;
  }
  if (status != ATTN_OK) {
    attn_weights_close(weights);
    return status;
  }
  *out_weights = weights;
  return ATTN_OK;
}

void attn_weights_close(attn_weights *weights) {
  if (!weights)
    return;
  for (size_t s = 0; s < weights->shard_count; s++)
    attn_safetensors_close(weights->shards[s]);
  attn_config_destroy(weights->config);
  attn_name_table_deinit(&weights->table, weights->allocator);
  attn_allocator allocator = weights->allocator;
  attn_arena_deinit(&weights->arena);
  attn_allocator_free(allocator, weights, sizeof(*weights));
}

// ---- queries ---------------------------------------------------------------------------------

bool attn_weights_find(const attn_weights *weights, const char *name, attn_tensor *out_view,
                       const char **out_file) {
  size_t index;
  if (!attn_name_table_find(&weights->table, name, &index))
    return false;
  const weight_entry *entry = &weights->entries[index];
  if (weights->is_memory) {
    *out_view = entry->tensor;
    if (out_file)
      *out_file = weights->path;
    return true;
  }
  const attn_safetensors *shard = weights->shards[entry->shard];
  attn_safetensors_get(shard, entry->index, out_view);
  if (out_file)
    *out_file = attn_safetensors_path(shard);
  return true;
}

size_t attn_weights_count(const attn_weights *weights) {
  return weights->count;
}

const char *attn_weights_name(const attn_weights *weights, size_t index) {
  return weights->entries[index].name;
}

const attn_config *attn_weights_config(const attn_weights *weights) {
  return weights->config;
}

const char *attn_weights_path(const attn_weights *weights) {
  return weights->path;
}
