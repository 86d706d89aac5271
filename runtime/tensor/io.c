// Whole-file reads and little-endian writes for the tensor file formats.
#include "runtime/tensor/io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

attn_status attn_io_read_file(const char *path, attn_allocator allocator, attn_diag *diag,
                              char **out_bytes, size_t *out_size_bytes) {
  *out_bytes = NULL;
  *out_size_bytes = 0;
  attn_loc loc = {path, 0, 0};
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot open: %s", strerror(errno));
  struct stat info;
  int stat_error = fstat(fd, &info) != 0 ? errno : S_ISDIR(info.st_mode) ? EISDIR : 0;
  if (stat_error != 0) {
    close(fd);
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot read: %s", strerror(stat_error));
  }
  // Regular files are read in one go; pipes and the like report size 0 and grow the buffer.
  size_t capacity = 4096;
  if (S_ISREG(info.st_mode) && info.st_size > 0) {
    if ((uintmax_t)info.st_size >= SIZE_MAX) {
      close(fd);
      return attn_diag_error(diag, loc, ATTN_ERROR_IO, "file is too large to read");
    }
    capacity = (size_t)info.st_size + 1;
  }
  char *bytes = attn_allocator_alloc(allocator, capacity);
  size_t size = 0;
  attn_status status = ATTN_OK;
  if (!bytes)
    status = attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory reading the file");
  while (status == ATTN_OK) {
    if (size + 1 == capacity) {
      // Full: a one-byte probe tells end of file from a file that grew, without doubling the
      // buffer of every regular file.
      char probe;
      ssize_t got = read(fd, &probe, 1);
      if (got < 0 && errno == EINTR)
        continue;
      if (got == 0)
        break;
      if (got < 0) {
        status = attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot read: %s", strerror(errno));
        break;
      }
      if (capacity > SIZE_MAX / 2) {
        status = attn_diag_error(diag, loc, ATTN_ERROR_IO, "file is too large to read");
        break;
      }
      char *grown = attn_allocator_realloc(allocator, bytes, capacity, capacity * 2);
      if (!grown) {
        status =
            attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory reading the file");
        break;
      }
      bytes = grown;
      capacity *= 2;
      bytes[size++] = probe;
      continue;
    }
    ssize_t got = read(fd, bytes + size, capacity - 1 - size);
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      status = attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot read: %s", strerror(errno));
      break;
    }
    if (got == 0)
      break;
    size += (size_t)got;
  }
  close(fd);
  if (status != ATTN_OK) {
    attn_allocator_free(allocator, bytes, capacity);
    return status;
  }
  // Give back the slack so the caller can free exactly size + 1 bytes.
  if (capacity != size + 1) {
    char *shrunk = attn_allocator_realloc(allocator, bytes, capacity, size + 1);
    if (!shrunk) {
      attn_allocator_free(allocator, bytes, capacity);
      return attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory reading the file");
    }
    bytes = shrunk;
  }
  bytes[size] = '\0';
  *out_bytes = bytes;
  *out_size_bytes = size;
  return ATTN_OK;
}

bool attn_io_host_is_little_endian(void) {
  const uint16_t probe = 1;
  unsigned char first;
  memcpy(&first, &probe, 1);
  return first == 1;
}

void attn_io_byteswap(void *data, size_t count, size_t element_size) {
  unsigned char *p = data;
  if (element_size < 2)
    return;
  for (size_t i = 0; i < count; i++, p += element_size) {
    for (size_t lo = 0, hi = element_size - 1; lo < hi; lo++, hi--) {
      unsigned char t = p[lo];
      p[lo] = p[hi];
      p[hi] = t;
    }
  }
}

bool attn_io_write_le(FILE *out, const void *data, size_t size_bytes, size_t element_size) {
  if (size_bytes == 0)
    return true;
  if (element_size < 2 || attn_io_host_is_little_endian())
    return fwrite(data, 1, size_bytes, out) == size_bytes;
  // Big-endian host: swap through a small buffer, a whole number of elements at a time.
  unsigned char chunk[4096];
  size_t chunk_bytes = sizeof(chunk) / element_size * element_size;
  const unsigned char *p = data;
  while (size_bytes > 0) {
    size_t n = size_bytes < chunk_bytes ? size_bytes : chunk_bytes;
    memcpy(chunk, p, n);
    attn_io_byteswap(chunk, n / element_size, element_size);
    if (fwrite(chunk, 1, n, out) != n)
      return false;
    p += n;
    size_bytes -= n;
  }
  return true;
}

unsigned long long attn_io_load_le(const unsigned char *bytes, size_t size_bytes) {
  unsigned long long value = 0;
  for (size_t i = size_bytes; i > 0; i--)
    value = value << 8 | bytes[i - 1];
  return value;
}

attn_status attn_io_finish_write(FILE *out, const char *path, bool ok, attn_diag *diag) {
  int saved_errno = errno;
  if (fclose(out) != 0 && ok) {
    ok = false;
    saved_errno = errno;
  }
  if (ok)
    return ATTN_OK;
  remove(path);
  return attn_diag_error(diag, (attn_loc){path, 0, 0}, ATTN_ERROR_IO, "cannot write: %s",
                         strerror(saved_errno));
}

bool attn_io_program_dir(char *dir, size_t size) {
  ssize_t length = readlink("/proc/self/exe", dir, size - 1);
  if (length <= 0 || (size_t)length >= size - 1)
    return false;
  dir[length] = '\0';
  char *slash = strrchr(dir, '/');
  if (!slash)
    return false;
  slash[slash == dir ? 1 : 0] = '\0';
  return true;
}
