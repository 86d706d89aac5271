// Helpers shared by the tensor file readers and writers (module-internal): whole-file reads
// through the injected allocator, byte order, and little-endian writes.
#ifndef ATTN_RUNTIME_TENSOR_IO_H_
#define ATTN_RUNTIME_TENSOR_IO_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "runtime/base/diag.h"

// Reads all of `path` into a buffer from `allocator`, NUL-terminated (the NUL is not counted in
// `*out_size_bytes`; the block is `*out_size_bytes + 1` bytes). Errors: ATTN_ERROR_IO (cannot
// open or read, or `path` is a directory), ATTN_ERROR_OUT_OF_MEMORY; recorded at `path`.
attn_status attn_io_read_file(const char *path, attn_allocator allocator, attn_diag *diag,
                              char **out_bytes, size_t *out_size_bytes) ATTN_MUST_USE;

bool attn_io_host_is_little_endian(void);

// The directory of the running program (from /proc/self/exe), into `dir`. False when it cannot
// be told or does not fit.
bool attn_io_program_dir(char *dir, size_t size);

// Reverses the bytes of each of `count` elements of `element_size` bytes, in place.
void attn_io_byteswap(void *data, size_t count, size_t element_size);

// Writes `size_bytes` bytes of elements of `element_size` bytes to `out` in little-endian
// order. Returns false when the write fails.
bool attn_io_write_le(FILE *out, const void *data, size_t size_bytes, size_t element_size);

// Finishes writing `path` through `out`: closes it and, when `ok` is false or the close fails,
// removes the partial file and records "cannot write" with errno's text at `path`.
attn_status attn_io_finish_write(FILE *out, const char *path, bool ok,
                                 attn_diag *diag) ATTN_MUST_USE;

// Reads a little-endian unsigned integer of 2, 4 or 8 bytes.
unsigned long long attn_io_load_le(const unsigned char *bytes, size_t size_bytes);

#endif // ATTN_RUNTIME_TENSOR_IO_H_
