// Weight sets and model configs: what `-w` names.
// A weight set is one .safetensors file, or a Hugging Face model directory holding
// config.json and either model.safetensors or a sharded model.safetensors.index.json.
// Thread safety: an opened config or weight set may be read from any number of threads;
// opening and parsing use cJSON, which keeps its last error in a global (see safetensors.h).
#ifndef ATTN_RUNTIME_TENSOR_WEIGHTS_H_
#define ATTN_RUNTIME_TENSOR_WEIGHTS_H_

#include <stdbool.h>

#include "runtime/base/diag.h"
#include "runtime/base/tensor.h"
#include "runtime/tensor/safetensors.h"

// ---- config.json -----------------------------------------------------------------------------

typedef struct attn_config attn_config;

typedef enum attn_config_kind {
  ATTN_CONFIG_MISSING, // no such key (or a key on the path is not an object)
  ATTN_CONFIG_NULL,
  ATTN_CONFIG_NUMBER,
  ATTN_CONFIG_BOOL,
  ATTN_CONFIG_STRING,
  ATTN_CONFIG_OTHER, // an array or an object
} attn_config_kind;

typedef struct attn_config_value {
  attn_config_kind kind;
  double number;      // NUMBER; BOOL as 0/1
  bool is_integer;    // NUMBER written without fraction or exponent, integral, |v| <= 2^53
  const char *string; // STRING, borrowed from the config
  size_t count;       // OTHER: elements of the array or members of the object
} attn_config_value;

// Parses a config.json. `name` is used in messages.
attn_status attn_config_parse(const char *text, size_t length, const char *name,
                              attn_allocator allocator, attn_diag *diag,
                              attn_config **out_config) ATTN_MUST_USE;
attn_status attn_config_read(const char *path, attn_allocator allocator, attn_diag *diag,
                             attn_config **out_config) ATTN_MUST_USE;
void attn_config_destroy(attn_config *config);
// Looks up a dotted path such as "rope_parameters.rope_theta".
attn_config_value attn_config_get(const attn_config *config, const char *path);
// The file it came from, for messages.
const char *attn_config_name(const attn_config *config);

// ---- weight sets -----------------------------------------------------------------------------

typedef struct attn_weights attn_weights;

// Opens `path`: a .safetensors file, or a directory (config.json + model.safetensors, or
// model.safetensors.index.json and its shards). Every shard is validated up front and every
// name in the index must exist in the shard it names; shard names must be plain file names in
// the directory. A tensor the index does not list is still found in whichever shard holds it
// (two shards holding it is an error). For a lone file, a config.json beside it is loaded.
// Errors, recorded in `diag` at the file concerned: ATTN_ERROR_NOT_FOUND (a directory without
// config.json or weights; an index entry its shard lacks), ATTN_ERROR_PARSE, ATTN_ERROR_UNSUPPORTED
// (a dtype), ATTN_ERROR_IO, ATTN_ERROR_OUT_OF_MEMORY. On failure nothing is left open.
attn_status attn_weights_open(const char *path, attn_allocator allocator, attn_diag *diag,
                              attn_weights **out_weights) ATTN_MUST_USE;
// A weight set held in memory: copies of `tensors` (names and data), for models whose weights
// come inside the model file (ONNX initializers). `name` stands for the file in messages and is
// what attn_weights_path returns. It has no config. Errors: ATTN_ERROR_INVALID_ARGUMENT (an
// unnamed tensor, a bad shape, a name given twice), ATTN_ERROR_OUT_OF_MEMORY.
attn_status attn_weights_from_tensors(const char *name, const attn_named_tensor *tensors,
                                      size_t count, attn_allocator allocator, attn_diag *diag,
                                      attn_weights **out_weights) ATTN_MUST_USE;
void attn_weights_close(attn_weights *weights);
// The path `weights` was opened with (a file or a directory); borrowed from `weights`.
const char *attn_weights_path(const attn_weights *weights);

// Finds a tensor by name; the view is valid while `weights` is open. `out_file` (may be NULL)
// receives the path of the shard, for messages.
bool attn_weights_find(const attn_weights *weights, const char *name, attn_tensor *out_view,
                       const char **out_file);
size_t attn_weights_count(const attn_weights *weights);
const char *attn_weights_name(const attn_weights *weights, size_t index);

// The config.json of a model directory, or of the directory holding a lone .safetensors
// file when one is there; NULL when there is none. Owned by `weights`.
const attn_config *attn_weights_config(const attn_weights *weights);

#endif // ATTN_RUNTIME_TENSOR_WEIGHTS_H_
