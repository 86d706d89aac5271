// safetensors reader (mmap, or a borrowed memory image) and writer.
// Layout: an 8-byte little-endian header length N, N bytes of JSON mapping each tensor name to
// {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data that follows
// the header), and an optional "__metadata__" string map. Everything is validated at open;
// afterwards views are handed out without further checks. The header is read with the runtime's
// own JSON reader (json.h), so programs that load weights need no JSON library; its document
// lives only during open: what we keep (names, types, offsets) is copied into the arena.
#include "runtime/tensor/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/base/arena.h"
#include "runtime/tensor/io.h"
#include "runtime/tensor/json.h"
#include "runtime/tensor/name_table.h"

// The reference implementation refuses headers above this size; so do we, which also bounds
// what a hostile file can make the JSON reader allocate.
#define SAFETENSORS_MAX_HEADER_BYTES 100000000ull

typedef struct st_entry {
  const char *name; // in the arena
  attn_dtype dtype;
  uint32_t rank;
  int64_t dims[ATTN_MAX_RANK];
  uint64_t begin; // byte offsets into the data region
  uint64_t end;
} st_entry;

struct attn_safetensors {
  attn_allocator allocator;
  attn_arena arena; // the path, names and entries
  const char *path;
  void *map; // the mmap'd file, or NULL for a memory image
  size_t map_size;
  const unsigned char *data; // the data region, after the header
  st_entry *entries;
  size_t count;
  attn_name_table table;
};

static const struct {
  const char *name;
  attn_dtype dtype;
} dtype_names[] = {
    {"F32", ATTN_DTYPE_F32},   {"F16", ATTN_DTYPE_F16}, {"BF16", ATTN_DTYPE_BF16},
    {"I64", ATTN_DTYPE_I64},   {"I32", ATTN_DTYPE_I32}, {"I8", ATTN_DTYPE_I8},
    {"BOOL", ATTN_DTYPE_BOOL},
};

const char *attn_safetensors_dtype_name(attn_dtype dtype) {
  for (size_t i = 0; i < sizeof(dtype_names) / sizeof(dtype_names[0]); i++)
    if (dtype_names[i].dtype == dtype)
      return dtype_names[i].name;
  return NULL;
}

// Reads a JSON number that must be a non-negative integer. Returns NULL on success, else what
// is wrong with it. Dims are int64_t, hence the bound; offsets never come near it.
static const char *json_uint(const attn_json_document *document, const attn_json_value *item,
                             uint64_t *out_value) {
  switch (attn_json_get_uint64(document, item, INT64_MAX, out_value)) {
  case ATTN_JSON_INTEGER_OK:
    return NULL;
  case ATTN_JSON_INTEGER_NOT_NUMBER:
    return "is not a number";
  case ATTN_JSON_INTEGER_NOT_INTEGER:
    return "is not an integer";
  case ATTN_JSON_INTEGER_NEGATIVE:
    return "is negative";
  case ATTN_JSON_INTEGER_TOO_LARGE:
    return "is too large";
  }
  return "is not a number";
}

static void format_dims(uint32_t rank, const int64_t *dims, char *buffer, size_t size) {
  size_t used = (size_t)snprintf(buffer, size, "[");
  for (uint32_t i = 0; i < rank && used < size; i++)
    used +=
        (size_t)snprintf(buffer + used, size - used, "%s%lld", i ? ", " : "", (long long)dims[i]);
  if (used < size)
    snprintf(buffer + used, size - used, "]");
}

static attn_status check_metadata(attn_safetensors *file, const attn_json_document *document,
                                  const attn_json_value *metadata, attn_diag *diag) {
  attn_loc loc = {file->path, 0, 0};
  if (metadata->kind != ATTN_JSON_OBJECT)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "\"__metadata__\" is not a JSON object");
  for (const attn_json_value *item = attn_json_first(document, metadata); item;
       item = attn_json_next(document, item)) {
    if (item->kind != ATTN_JSON_STRING)
      return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                             "\"__metadata__\" entry '%s' is not a string",
                             attn_json_key(document, item, NULL));
  }
  return ATTN_OK;
}

// The entry's field `key`, or NULL when absent. A field given twice is refused, as the reference
// reader does, rather than silently taking one of the two.
static attn_status get_field(attn_safetensors *file, const attn_json_document *document,
                             const attn_json_value *item, const char *name, const char *key,
                             attn_diag *diag, const attn_json_value **out_field) {
  *out_field = attn_json_get(document, item, key);
  for (const attn_json_value *other = *out_field ? attn_json_next(document, *out_field) : NULL;
       other; other = attn_json_next(document, other)) {
    size_t length;
    const char *other_key = attn_json_key(document, other, &length);
    if (length == strlen(key) && memcmp(other_key, key, length) == 0)
      return attn_diag_error(diag, (attn_loc){file->path, 0, 0}, ATTN_ERROR_PARSE,
                             "tensor '%s': \"%s\" appears twice", name, key);
  }
  return ATTN_OK;
}

// Validates one header entry and fills `entry` (name not yet set).
static attn_status parse_entry(attn_safetensors *file, const attn_json_document *document,
                               const attn_json_value *item, size_t data_size, attn_diag *diag,
                               st_entry *entry) {
  attn_loc loc = {file->path, 0, 0};
  const char *name = attn_json_key(document, item, NULL);
  if (item->kind != ATTN_JSON_OBJECT)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': entry is not a JSON object",
                           name);

  const attn_json_value *dtype;
  ATTN_RETURN_IF_ERROR(get_field(file, document, item, name, "dtype", diag, &dtype));
  if (!dtype)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': missing \"dtype\"", name);
  if (dtype->kind != ATTN_JSON_STRING)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': \"dtype\" is not a string",
                           name);
  const char *dtype_text = attn_json_text(document, dtype, NULL);
  size_t d = 0, dtype_count = sizeof(dtype_names) / sizeof(dtype_names[0]);
  while (d < dtype_count && strcmp(dtype_names[d].name, dtype_text) != 0)
    d++;
  if (d == dtype_count)
    return attn_diag_error(diag, loc, ATTN_ERROR_UNSUPPORTED,
                           "tensor '%s': dtype %.32s is not supported (attnc reads F32 F16 BF16 "
                           "I64 I32 I8 BOOL)",
                           name, dtype_text);
  entry->dtype = dtype_names[d].dtype;

  const attn_json_value *shape;
  ATTN_RETURN_IF_ERROR(get_field(file, document, item, name, "shape", diag, &shape));
  if (!shape)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': missing \"shape\"", name);
  if (shape->kind != ATTN_JSON_ARRAY)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': \"shape\" is not an array",
                           name);
  if (shape->count > ATTN_MAX_RANK)
    return attn_diag_error(diag, loc, ATTN_ERROR_UNSUPPORTED,
                           "tensor '%s': rank %u is more than %d, the most attnc supports", name,
                           shape->count, ATTN_MAX_RANK);
  entry->rank = shape->count;
  uint32_t axis = 0;
  for (const attn_json_value *dim = attn_json_first(document, shape); dim;
       dim = attn_json_next(document, dim)) {
    uint64_t value;
    const char *problem = json_uint(document, dim, &value);
    if (problem)
      return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                             "tensor '%s': dimension %u of \"shape\" %s", name, axis, problem);
    entry->dims[axis++] = (int64_t)value;
  }

  const attn_json_value *offsets;
  ATTN_RETURN_IF_ERROR(get_field(file, document, item, name, "data_offsets", diag, &offsets));
  if (!offsets)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': missing \"data_offsets\"",
                           name);
  if (offsets->kind != ATTN_JSON_ARRAY || offsets->count != 2)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "tensor '%s': \"data_offsets\" is not an array of two integers", name);
  const attn_json_value *begin = attn_json_first(document, offsets);
  const char *problem = json_uint(document, begin, &entry->begin);
  if (!problem)
    problem = json_uint(document, attn_json_next(document, begin), &entry->end);
  if (problem)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': a \"data_offsets\" value %s",
                           name, problem);
  if (entry->begin > entry->end)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "tensor '%s': data_offsets [%llu, %llu] end before they begin", name,
                           (unsigned long long)entry->begin, (unsigned long long)entry->end);
  if (entry->end > data_size)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "tensor '%s': data_offsets end %llu is past the end of the data "
                           "(%zu bytes)",
                           name, (unsigned long long)entry->end, data_size);

  char dims_text[8 * 24];
  format_dims(entry->rank, entry->dims, dims_text, sizeof(dims_text));
  int64_t count;
  size_t element_size = attn_dtype_size(entry->dtype);
  if (!attn_shape_element_count(entry->rank, entry->dims, &count) ||
      (uint64_t)count > SIZE_MAX / element_size)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s': shape %s is too large", name,
                           dims_text);
  uint64_t size_bytes = (uint64_t)count * element_size;
  if (size_bytes != entry->end - entry->begin)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "tensor '%s': shape %s of %s needs %llu bytes, but data_offsets "
                           "[%llu, %llu] hold %llu",
                           name, dims_text, dtype_names[d].name, (unsigned long long)size_bytes,
                           (unsigned long long)entry->begin, (unsigned long long)entry->end,
                           (unsigned long long)(entry->end - entry->begin));
  // Consumers read elements through typed pointers, so a misaligned tensor would be undefined
  // behaviour later; writers (ours and the reference one) always align.
  if (size_bytes > 0 && ((uintptr_t)(file->data + entry->begin)) % element_size != 0)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "tensor '%s': data at offset %llu is not aligned to its %zu-byte "
                           "elements",
                           name, (unsigned long long)entry->begin, element_size);
  return ATTN_OK;
}

typedef struct st_range {
  uint64_t begin;
  uint64_t end;
  size_t index;
} st_range;

static int compare_ranges(const void *a, const void *b) {
  const st_range *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return x->index < y->index ? -1 : x->index > y->index;
}

// Refuses tensors whose bytes overlap. Empty tensors occupy nothing and never overlap.
static attn_status check_overlaps(attn_safetensors *file, attn_diag *diag) {
  attn_loc loc = {file->path, 0, 0};
  if (file->count < 2)
    return ATTN_OK;
  st_range *ranges = attn_allocator_calloc(file->allocator, file->count, sizeof(*ranges));
  if (!ranges)
    return attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  for (size_t i = 0; i < file->count; i++)
    ranges[i] = (st_range){file->entries[i].begin, file->entries[i].end, i};
  qsort(ranges, file->count, sizeof(*ranges), compare_ranges);
  attn_status status = ATTN_OK;
  const st_range *previous = NULL;
  for (size_t i = 0; i < file->count && status == ATTN_OK; i++) {
    const st_range *range = &ranges[i];
    if (range->begin == range->end)
      continue;
    if (previous && range->begin < previous->end)
      status =
          attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                          "tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap",
                          file->entries[previous->index].name, (unsigned long long)previous->begin,
                          (unsigned long long)previous->end, file->entries[range->index].name,
                          (unsigned long long)range->begin, (unsigned long long)range->end);
    previous = range;
  }
  attn_allocator_free(file->allocator, ranges, file->count * sizeof(*ranges));
  return status;
}

static attn_status parse_header(attn_safetensors *file, const attn_json_document *document,
                                size_t data_size, attn_diag *diag) {
  attn_loc loc = {file->path, 0, 0};
  const attn_json_value *root = attn_json_root(document);
  if (root->kind != ATTN_JSON_OBJECT)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "header is not a JSON object");
  size_t capacity = root->count;
  file->entries = attn_arena_calloc(&file->arena, capacity ? capacity : 1, sizeof(st_entry));
  if (!file->entries || attn_name_table_init(&file->table, file->allocator, capacity) != ATTN_OK)
    return attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  bool has_metadata = false;
  for (const attn_json_value *item = attn_json_first(document, root); item;
       item = attn_json_next(document, item)) {
    size_t name_length;
    const char *name = attn_json_key(document, item, &name_length);
    if (strcmp(name, "__metadata__") == 0 && name_length == strlen(name)) {
      if (has_metadata)
        return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "\"__metadata__\" appears twice");
      has_metadata = true;
      ATTN_RETURN_IF_ERROR(check_metadata(file, document, item, diag));
      continue;
    }
    // Names are C strings from here on; one holding "\u0000" would be cut short and could
    // collide with another.
    if (name_length != strlen(name))
      return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                             "tensor '%s...': the name contains a NUL character", name);
    st_entry *entry = &file->entries[file->count];
    ATTN_RETURN_IF_ERROR(parse_entry(file, document, item, data_size, diag, entry));
    entry->name = attn_arena_strndup(&file->arena, name, name_length);
    if (!entry->name)
      return attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    size_t existing;
    if (!attn_name_table_insert(&file->table, entry->name, file->count, &existing))
      return attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "tensor '%s' appears twice in the header",
                             entry->name);
    file->count++;
  }
  return check_overlaps(file, diag);
}

// Validates the image `bytes` and fills `file`'s entries.
static attn_status load(attn_safetensors *file, const unsigned char *bytes, size_t size_bytes,
                        attn_diag *diag) {
  attn_loc loc = {file->path, 0, 0};
  if (size_bytes < 8)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "file is %zu bytes, too short for the 8-byte header length", size_bytes);
  unsigned long long header_length = attn_io_load_le(bytes, 8);
  if (header_length > size_bytes - 8)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "header length %llu is larger than the file (%zu bytes)", header_length,
                           size_bytes);
  if (header_length > SAFETENSORS_MAX_HEADER_BYTES)
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "header length %llu is more than the %llu bytes safetensors allows",
                           header_length, SAFETENSORS_MAX_HEADER_BYTES);
  const char *header = (const char *)bytes + 8;
  size_t data_start = 8 + (size_t)header_length;
  file->data = bytes + data_start;

  attn_json_document document;
  attn_json_error error;
  attn_status status =
      attn_json_parse(header, (size_t)header_length, NULL, file->allocator, &document, &error);
  switch (error.code) {
  case ATTN_JSON_ERROR_NONE:
    break;
  case ATTN_JSON_ERROR_MEMORY:
    return attn_diag_error(diag, loc, status, "out of memory");
  case ATTN_JSON_ERROR_TRAILING:
    // The format pads the header with spaces; anything else after the JSON value is garbage.
    return attn_diag_error(diag, loc, status,
                           "unexpected bytes after the JSON header (at byte %zu of the header)",
                           error.offset);
  case ATTN_JSON_ERROR_LIMIT:
    return attn_diag_error(diag, loc, status, "header is refused: %s (at byte %zu of the header)",
                           error.message, error.offset);
  case ATTN_JSON_ERROR_SYNTAX:
    return attn_diag_error(diag, loc, status,
                           "header is not valid JSON: %s (at byte %zu of the header)",
                           error.message, error.offset);
  }
  status = parse_header(file, &document, size_bytes - data_start, diag);
  attn_json_document_deinit(&document);
  return status;
}

// A file object with its path copied, or NULL (and a diagnostic) when memory runs out.
static attn_safetensors *create_file(const char *path, attn_allocator allocator, attn_diag *diag) {
  attn_safetensors *file = attn_allocator_calloc(allocator, 1, sizeof(*file));
  if (!file) {
    attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    return NULL;
  }
  file->allocator = allocator;
  attn_arena_init(&file->arena, allocator);
  file->path = attn_arena_strdup(&file->arena, path);
  if (!file->path) {
    attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
    attn_safetensors_close(file);
    return NULL;
  }
  return file;
}

attn_status attn_safetensors_open_memory(const void *bytes, size_t size_bytes, const char *name,
                                         attn_allocator allocator, attn_diag *diag,
                                         attn_safetensors **out_file) {
  *out_file = NULL;
  attn_safetensors *file = create_file(name, allocator, diag);
  if (!file)
    return ATTN_ERROR_OUT_OF_MEMORY;
  attn_status status = load(file, bytes, size_bytes, diag);
  if (status != ATTN_OK) {
    attn_safetensors_close(file);
    return status;
  }
  *out_file = file;
  return ATTN_OK;
}

attn_status attn_safetensors_open(const char *path, attn_allocator allocator, attn_diag *diag,
                                  attn_safetensors **out_file) {
  *out_file = NULL;
  attn_loc loc = {path, 0, 0};
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot open: %s", strerror(errno));
  struct stat info;
  if (fstat(fd, &info) != 0) {
    int error = errno;
    close(fd);
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot read: %s", strerror(error));
  }
  if (!S_ISREG(info.st_mode)) {
    close(fd);
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "not a regular file");
  }
  if (info.st_size < 8) {
    close(fd);
    return attn_diag_error(diag, loc, ATTN_ERROR_PARSE,
                           "file is %lld bytes, too short for the 8-byte header length",
                           (long long)info.st_size);
  }
  if ((uintmax_t)info.st_size > SIZE_MAX) {
    close(fd);
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "file is too large to map");
  }
  size_t size = (size_t)info.st_size;
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int map_error = errno;
  close(fd);
  if (map == MAP_FAILED)
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot map: %s", strerror(map_error));
  attn_safetensors *file = create_file(path, allocator, diag);
  if (!file) {
    munmap(map, size);
    return ATTN_ERROR_OUT_OF_MEMORY;
  }
  file->map = map;
  file->map_size = size;
  attn_status status = load(file, map, size, diag);
  if (status != ATTN_OK) {
    attn_safetensors_close(file);
    return status;
  }
  *out_file = file;
  return ATTN_OK;
}

void attn_safetensors_close(attn_safetensors *file) {
  if (!file)
    return;
  if (file->map)
    munmap(file->map, file->map_size);
  attn_name_table_deinit(&file->table, file->allocator);
  attn_arena_deinit(&file->arena);
  attn_allocator_free(file->allocator, file, sizeof(*file));
}

size_t attn_safetensors_count(const attn_safetensors *file) {
  return file->count;
}

const char *attn_safetensors_name(const attn_safetensors *file, size_t index) {
  return file->entries[index].name;
}

const char *attn_safetensors_path(const attn_safetensors *file) {
  return file->path;
}

void attn_safetensors_get(const attn_safetensors *file, size_t index, attn_tensor *out_view) {
  const st_entry *entry = &file->entries[index];
  memset(out_view, 0, sizeof(*out_view));
  out_view->dtype = entry->dtype;
  out_view->rank = entry->rank;
  memcpy(out_view->dims, entry->dims, sizeof(entry->dims));
  // The mapping is read-only; attn_tensor has no const data, so views must not be written.
  out_view->data = (void *)(uintptr_t)(file->data + entry->begin);
}

bool attn_safetensors_find(const attn_safetensors *file, const char *name, attn_tensor *out_view) {
  size_t index;
  if (!attn_safetensors_find_index(file, name, &index))
    return false;
  attn_safetensors_get(file, index, out_view);
  return true;
}

bool attn_safetensors_find_index(const attn_safetensors *file, const char *name,
                                 size_t *out_index) {
  return attn_name_table_find(&file->table, name, out_index);
}
