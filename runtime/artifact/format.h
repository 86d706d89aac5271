// The .attnx file's fixed parts, shared by the reader and the writer (module-internal):
// docs/artifact.md describes them.
#ifndef ATTN_RUNTIME_ARTIFACT_FORMAT_H_
#define ATTN_RUNTIME_ARTIFACT_FORMAT_H_

#include <stddef.h>
#include <stdint.h>

// Like PNG's signature: a high-bit byte first (a 7-bit channel or a text tool notices), a
// CR LF pair (line-ending conversion changes it) and ^Z (stops DOS `type`).
#define ATTN_ARTIFACT_MAGIC                                                                        \
  "\x89"                                                                                           \
  "ATX\r\n\x1a\n"
#define ATTN_ARTIFACT_MAGIC_SIZE 8
// magic, u32 version, u32 flags, u64 header size, u64 header checksum.
#define ATTN_ARTIFACT_PREFIX_SIZE 32
// Of the data section's start and of every blob in it: enough for any tensor and a cache line.
#define ATTN_ARTIFACT_ALIGN    64
#define ATTN_ARTIFACT_PRODUCER "attnc 0.1.0"

// 64-bit FNV-1a: small, dependency-free and enough to catch corruption (not an attacker).
uint64_t attn_artifact_checksum(const void *data, size_t size);

#endif // ATTN_RUNTIME_ARTIFACT_FORMAT_H_
