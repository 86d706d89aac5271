// Arenas: bump allocation in blocks taken from an attn_allocator, released all at once.
// Graph nodes, attributes, interned strings and diagnostics live in arenas.
#ifndef ATTN_RUNTIME_BASE_ARENA_H_
#define ATTN_RUNTIME_BASE_ARENA_H_

#include <stdarg.h>
#include <stddef.h>

#include "attn/status.h"
#include "runtime/base/allocator.h"

typedef struct attn_arena_block attn_arena_block;

typedef struct attn_arena {
  attn_allocator allocator;
  attn_arena_block *head; // newest block first
  size_t total_bytes;     // bytes taken from the allocator, headers included
} attn_arena;

void attn_arena_init(attn_arena *arena, attn_allocator allocator);
// Returns every block to the allocator. The arena may be initialised again.
void attn_arena_deinit(attn_arena *arena);

// `size` bytes aligned to `align` (a power of two ≤ 64), or NULL when memory runs out.
// The memory is not initialised.
void *attn_arena_alloc(attn_arena *arena, size_t size, size_t align);
// Zero-filled `count * size` bytes with alignment 16; NULL on overflow or when memory runs out.
void *attn_arena_calloc(attn_arena *arena, size_t count, size_t size);
// A NUL-terminated copy of `length` bytes of `text`.
char *attn_arena_strndup(attn_arena *arena, const char *text, size_t length);
char *attn_arena_strdup(attn_arena *arena, const char *text);
char *attn_arena_printf(attn_arena *arena, const char *format, ...) ATTN_PRINTF(2, 3);
char *attn_arena_vprintf(attn_arena *arena, const char *format, va_list args) ATTN_PRINTF(2, 0);

#endif // ATTN_RUNTIME_BASE_ARENA_H_
