// FNV-1a hashed, linearly probed name table.
#include "runtime/tensor/name_table.h"

#include <stdint.h>
#include <string.h>

static uint64_t hash_name(const char *name) {
  uint64_t hash = 14695981039346656037u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    hash = (hash ^ *p) * 1099511628211u;
  return hash;
}

attn_status attn_name_table_init(attn_name_table *table, attn_allocator allocator,
                                 size_t max_count) {
  table->slots = NULL;
  table->capacity = 0;
  size_t capacity = 16;
  while (capacity / 2 <= max_count) {
    if (capacity > SIZE_MAX / 2 / sizeof(attn_name_slot))
      return ATTN_ERROR_OUT_OF_MEMORY;
    capacity *= 2;
  }
  table->slots = attn_allocator_calloc(allocator, capacity, sizeof(attn_name_slot));
  if (!table->slots)
    return ATTN_ERROR_OUT_OF_MEMORY;
  table->capacity = capacity;
  return ATTN_OK;
}

void attn_name_table_deinit(attn_name_table *table, attn_allocator allocator) {
  attn_allocator_free(allocator, table->slots, table->capacity * sizeof(attn_name_slot));
  table->slots = NULL;
  table->capacity = 0;
}

// The slot holding `name`, or the empty slot where it would go.
static attn_name_slot *probe(const attn_name_table *table, const char *name) {
  size_t mask = table->capacity - 1;
  for (size_t i = (size_t)hash_name(name) & mask;; i = (i + 1) & mask) {
    attn_name_slot *slot = &table->slots[i];
    if (!slot->name || strcmp(slot->name, name) == 0)
      return slot;
  }
}

bool attn_name_table_insert(attn_name_table *table, const char *name, size_t index,
                            size_t *out_existing) {
  attn_name_slot *slot = probe(table, name);
  if (slot->name) {
    *out_existing = slot->index;
    return false;
  }
  slot->name = name;
  slot->index = index;
  return true;
}

bool attn_name_table_find(const attn_name_table *table, const char *name, size_t *out_index) {
  if (table->capacity == 0)
    return false;
  const attn_name_slot *slot = probe(table, name);
  if (!slot->name)
    return false;
  *out_index = slot->index;
  return true;
}
