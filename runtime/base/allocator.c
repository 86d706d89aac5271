// The system allocator, helpers over the hook, and the counting allocator for tests.
#include "runtime/base/allocator.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *system_realloc(void *self, void *ptr, size_t old_size, size_t new_size) {
  (void)self;
  (void)old_size;
  if (new_size == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, new_size);
}

attn_allocator attn_allocator_system(void) {
  return (attn_allocator){NULL, system_realloc};
}

void *attn_allocator_alloc(attn_allocator allocator, size_t size) {
  if (size == 0)
    size = 1;
  return allocator.realloc_fn(allocator.self, NULL, 0, size);
}

void *attn_allocator_calloc(attn_allocator allocator, size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size)
    return NULL;
  void *ptr = attn_allocator_alloc(allocator, count * size);
  if (ptr)
    memset(ptr, 0, count * size == 0 ? 1 : count * size);
  return ptr;
}

void *attn_allocator_realloc(attn_allocator allocator, void *ptr, size_t old_size,
                             size_t new_size) {
  if (new_size == 0)
    new_size = 1;
  return allocator.realloc_fn(allocator.self, ptr, ptr ? old_size : 0, new_size);
}

void attn_allocator_free(attn_allocator allocator, void *ptr, size_t size) {
  if (ptr)
    allocator.realloc_fn(allocator.self, ptr, size == 0 ? 1 : size, 0);
}

_Bool attn_array_reserve(attn_allocator allocator, void **inout_items, size_t *inout_capacity,
                         size_t needed, size_t item_size) {
  if (needed <= *inout_capacity)
    return 1;
  size_t capacity = *inout_capacity ? *inout_capacity : 8;
  while (capacity < needed) {
    if (capacity > SIZE_MAX / 2)
      return 0;
    capacity *= 2;
  }
  if (capacity > SIZE_MAX / item_size)
    return 0;
  void *items = attn_allocator_realloc(allocator, *inout_items, *inout_capacity * item_size,
                                       capacity * item_size);
  if (!items)
    return 0;
  *inout_items = items;
  *inout_capacity = capacity;
  return 1;
}

static void *counting_realloc(void *self, void *ptr, size_t old_size, size_t new_size) {
  attn_counting_allocator *counter = self;
  if (new_size == 0) {
    counter->live_bytes -= old_size;
    counter->live_blocks--;
    return counter->parent.realloc_fn(counter->parent.self, ptr, old_size, 0);
  }
  if (counter->fail_after >= 0 && (long)counter->total_requests >= counter->fail_after)
    return NULL;
  if ((long)counter->total_requests++ == counter->fail_at)
    return NULL;
  void *result = counter->parent.realloc_fn(counter->parent.self, ptr, old_size, new_size);
  if (!result)
    return NULL;
  if (ptr) {
    counter->live_bytes -= old_size;
  } else {
    counter->live_blocks++;
  }
  counter->live_bytes += new_size;
  return result;
}

void attn_counting_allocator_init(attn_counting_allocator *counter, attn_allocator parent) {
  memset(counter, 0, sizeof(*counter));
  counter->parent = parent;
  counter->fail_after = -1;
  counter->fail_at = -1;
}

attn_allocator attn_counting_allocator_get(attn_counting_allocator *counter) {
  return (attn_allocator){counter, counting_realloc};
}
