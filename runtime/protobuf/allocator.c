// protobuf-c frees without a size and attn_allocator wants one, so each block carries its size in
// front (in a max-aligned header, so the block stays aligned for any type).
#include "runtime/protobuf/allocator.h"

#include <stddef.h>
#include <stdint.h>

typedef union block_header {
  size_t size;
  max_align_t align;
} block_header;

static void *pb_alloc(void *self, size_t size) {
  attn_pb_allocator *context = self;
  block_header *block = NULL;
  if (size <= SIZE_MAX - sizeof(block_header))
    block = attn_allocator_alloc(context->allocator, sizeof(block_header) + size);
  if (!block) {
    context->failed = true;
    return NULL;
  }
  block->size = size;
  return block + 1;
}

static void pb_free(void *self, void *pointer) {
  if (!pointer)
    return;
  attn_pb_allocator *context = self;
  block_header *block = (block_header *)pointer - 1;
  attn_allocator_free(context->allocator, block, sizeof(block_header) + block->size);
}

void attn_pb_allocator_init(attn_pb_allocator *out, attn_allocator allocator) {
  out->base = (ProtobufCAllocator){pb_alloc, pb_free, out};
  out->allocator = allocator;
  out->failed = false;
}
