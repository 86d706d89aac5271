// Arena blocks grow geometrically; a request larger than a block gets a block of its own.
#include "runtime/base/arena.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct attn_arena_block {
  attn_arena_block *next;
  size_t size; // usable bytes after the header
  size_t used;
  unsigned char data[];
};

enum { ARENA_MIN_BLOCK = 4096 };

// The offset ≥ `used` in `block` whose address is a multiple of `align`. The allocator only
// promises scalar alignment, so alignment is computed on addresses, not offsets.
static size_t aligned_offset(const attn_arena_block *block, size_t used, size_t align) {
  uintptr_t base = (uintptr_t)block->data;
  return (size_t)(((base + used + align - 1) & ~(uintptr_t)(align - 1)) - base);
}

void attn_arena_init(attn_arena *arena, attn_allocator allocator) {
  arena->allocator = allocator;
  arena->head = NULL;
  arena->total_bytes = 0;
}

void attn_arena_deinit(attn_arena *arena) {
  attn_arena_block *block = arena->head;
  while (block) {
    attn_arena_block *next = block->next;
    attn_allocator_free(arena->allocator, block, sizeof(*block) + block->size);
    block = next;
  }
  arena->head = NULL;
  arena->total_bytes = 0;
}

void *attn_arena_alloc(attn_arena *arena, size_t size, size_t align) {
  if (align == 0)
    align = 1;
  attn_arena_block *block = arena->head;
  if (block) {
    size_t start = aligned_offset(block, block->used, align);
    if (start <= block->size && size <= block->size - start) {
      block->used = start + size;
      return block->data + start;
    }
  }
  if (size > SIZE_MAX / 2 - sizeof(attn_arena_block) - align)
    return NULL;
  size_t block_size = arena->head ? arena->head->size * 2 : ARENA_MIN_BLOCK;
  if (block_size > (size_t)1 << 24)
    block_size = (size_t)1 << 24;
  if (block_size < size + align)
    block_size = size + align;
  block = attn_allocator_alloc(arena->allocator, sizeof(*block) + block_size);
  if (!block)
    return NULL;
  block->size = block_size;
  size_t start = aligned_offset(block, 0, align);
  block->used = start + size;
  block->next = arena->head;
  arena->head = block;
  arena->total_bytes += sizeof(*block) + block_size;
  return block->data + start;
}

void *attn_arena_calloc(attn_arena *arena, size_t count, size_t size) {
  if (size != 0 && count > SIZE_MAX / size)
    return NULL;
  void *ptr = attn_arena_alloc(arena, count * size, 16);
  if (ptr)
    memset(ptr, 0, count * size);
  return ptr;
}

char *attn_arena_strndup(attn_arena *arena, const char *text, size_t length) {
  if (length == SIZE_MAX)
    return NULL;
  char *copy = attn_arena_alloc(arena, length + 1, 1);
  if (!copy)
    return NULL;
  if (length)
    memcpy(copy, text, length);
  copy[length] = '\0';
  return copy;
}

char *attn_arena_strdup(attn_arena *arena, const char *text) {
  return attn_arena_strndup(arena, text, strlen(text));
}

char *attn_arena_vprintf(attn_arena *arena, const char *format, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int length = vsnprintf(NULL, 0, format, copy);
  va_end(copy);
  if (length < 0)
    return NULL;
  char *text = attn_arena_alloc(arena, (size_t)length + 1, 1);
  if (text)
    vsnprintf(text, (size_t)length + 1, format, args);
  return text;
}

char *attn_arena_printf(attn_arena *arena, const char *format, ...) {
  va_list args;
  va_start(args, format);
  char *text = attn_arena_vprintf(arena, format, args);
  va_end(args);
  return text;
}
