// The injected allocator: one hook through which attnc takes all its heap memory.
// Embedders pass their own; tests pass a counting one that can fail on demand.
#ifndef ATTN_RUNTIME_BASE_ALLOCATOR_H_
#define ATTN_RUNTIME_BASE_ALLOCATOR_H_

#include <stddef.h>

// One function does everything, as Lua's lua_Alloc does:
//   ptr == NULL, new_size > 0   allocate new_size bytes
//   ptr != NULL, new_size > 0   resize a block of old_size bytes
//   ptr != NULL, new_size == 0  free a block of old_size bytes; returns NULL
// Returns NULL when memory cannot be had. Blocks are aligned for any scalar type.
typedef void *(*attn_realloc_fn)(void *self, void *ptr, size_t old_size, size_t new_size);

typedef struct attn_allocator {
  void *self;
  attn_realloc_fn realloc_fn;
} attn_allocator;

// malloc/realloc/free.
attn_allocator attn_allocator_system(void);

void *attn_allocator_alloc(attn_allocator allocator, size_t size);
// Zero-filled. Fails (NULL) when count * size overflows.
void *attn_allocator_calloc(attn_allocator allocator, size_t count, size_t size);
void *attn_allocator_realloc(attn_allocator allocator, void *ptr, size_t old_size, size_t new_size);
// No-op for NULL.
void attn_allocator_free(attn_allocator allocator, void *ptr, size_t size);

// Grows a dynamic array `*inout_items` of `*inout_capacity` elements of `item_size` so it can
// hold at least `needed` elements. Returns false (array untouched) when memory runs out.
_Bool attn_array_reserve(attn_allocator allocator, void **inout_items, size_t *inout_capacity,
                         size_t needed, size_t item_size);

// A counting allocator for tests and fault injection. It tracks live bytes and blocks, and
// fails every request after `fail_after` successful ones (fail_after < 0: never fails), or only
// request number `fail_at` (counting from 0; < 0: none), so that a failure a caller swallows
// shows up as a wrong result instead of being hidden by the failures after it.
typedef struct attn_counting_allocator {
  attn_allocator parent;
  size_t live_bytes;
  size_t live_blocks;
  size_t total_requests; // allocations and resizes made, the one failed by fail_at included
  long fail_after;
  long fail_at;
} attn_counting_allocator;

void attn_counting_allocator_init(attn_counting_allocator *counter, attn_allocator parent);
attn_allocator attn_counting_allocator_get(attn_counting_allocator *counter);

#endif // ATTN_RUNTIME_BASE_ALLOCATOR_H_
