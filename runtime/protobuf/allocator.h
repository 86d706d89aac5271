// protobuf-c's allocator interface over an attn_allocator, for the readers of attnc's protobuf
// formats (.attnx artifacts, .attnb graphs).
#ifndef ATTN_RUNTIME_PROTOBUF_ALLOCATOR_H_
#define ATTN_RUNTIME_PROTOBUF_ALLOCATOR_H_

#include <stdbool.h>

#include <protobuf-c/protobuf-c.h>

#include "runtime/base/allocator.h"

typedef struct attn_pb_allocator {
  ProtobufCAllocator base; // pass &allocator.base to protobuf-c
  attn_allocator allocator;
  bool failed; // an allocation failed: a NULL from unpacking is then no verdict on the bytes
} attn_pb_allocator;

// Sets `out` up over `allocator`.
void attn_pb_allocator_init(attn_pb_allocator *out, attn_allocator allocator);

#endif // ATTN_RUNTIME_PROTOBUF_ALLOCATOR_H_
