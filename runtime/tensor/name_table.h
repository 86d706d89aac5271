// A hash table from borrowed NUL-terminated names to indices (module-internal). Weight sets
// have thousands of tensors and every WEIGHT node looks one up, so lookups must be O(1).
// Open addressing with linear probing; the table never grows, it is sized at init.
#ifndef ATTN_RUNTIME_TENSOR_NAME_TABLE_H_
#define ATTN_RUNTIME_TENSOR_NAME_TABLE_H_

#include <stdbool.h>
#include <stddef.h>

#include "attn/status.h"
#include "runtime/base/allocator.h"

typedef struct attn_name_slot {
  const char *name; // NULL: empty
  size_t index;
} attn_name_slot;

typedef struct attn_name_table {
  attn_name_slot *slots;
  size_t capacity; // a power of two, more than twice the names it may hold
} attn_name_table;

// Sizes the table for up to `max_count` names. ATTN_ERROR_OUT_OF_MEMORY when it cannot.
attn_status attn_name_table_init(attn_name_table *table, attn_allocator allocator,
                                 size_t max_count) ATTN_MUST_USE;
void attn_name_table_deinit(attn_name_table *table, attn_allocator allocator);

// Adds `name` (borrowed; must outlive the table) → `index`. When the name is already there the
// table is unchanged, `*out_existing` receives its index and the result is false.
bool attn_name_table_insert(attn_name_table *table, const char *name, size_t index,
                            size_t *out_existing);
bool attn_name_table_find(const attn_name_table *table, const char *name, size_t *out_index);

#endif // ATTN_RUNTIME_TENSOR_NAME_TABLE_H_
