// Runs a fuzz target's LLVMFuzzerTestOneInput over files, for builds without libFuzzer: every
// argument is a file or a directory whose regular files are run in name order. Each input is
// copied into a buffer of exactly its size so sanitizers catch reads past the end. Exits 1 when
// an argument cannot be read or no input was found, so a missing corpus does not pass silently.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int run_file(const char *path) {
  FILE *in = fopen(path, "rb");
  if (!in) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return -1;
  }
  size_t capacity = 4096, size = 0;
  unsigned char *bytes = malloc(capacity);
  while (bytes) {
    size_t got = fread(bytes + size, 1, capacity - size, in);
    size += got;
    if (size < capacity)
      break;
    unsigned char *grown = realloc(bytes, capacity * 2);
    if (!grown) {
      free(bytes);
      bytes = NULL;
      break;
    }
    bytes = grown;
    capacity *= 2;
  }
  int read_error = ferror(in);
  fclose(in);
  if (!bytes || read_error) {
    fprintf(stderr, "replay: cannot read %s\n", path);
    free(bytes);
    return -1;
  }
  unsigned char *exact = malloc(size ? size : 1);
  if (!exact) {
    free(bytes);
    return -1;
  }
  memcpy(exact, bytes, size);
  free(bytes);
  LLVMFuzzerTestOneInput(exact, size);
  free(exact);
  return 1;
}

static int compare_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

// Runs every regular file in `dir`; returns how many, or -1 on an error.
static int run_directory(const char *dir) {
  DIR *handle = opendir(dir);
  if (!handle) {
    fprintf(stderr, "replay: cannot open directory %s\n", dir);
    return -1;
  }
  char **names = NULL;
  size_t count = 0, capacity = 0;
  struct dirent *entry;
  int status = 0;
  while ((entry = readdir(handle)) != NULL) {
    if (entry->d_name[0] == '.')
      continue;
    if (count == capacity) {
      capacity = capacity ? capacity * 2 : 64;
      char **grown = realloc(names, capacity * sizeof(*names));
      if (!grown) {
        status = -1;
        break;
      }
      names = grown;
    }
    size_t length = strlen(dir) + strlen(entry->d_name) + 2;
    if (!(names[count] = malloc(length))) {
      status = -1;
      break;
    }
    snprintf(names[count++], length, "%s/%s", dir, entry->d_name);
  }
  closedir(handle);
  if (names)
    qsort(names, count, sizeof(*names), compare_names);
  int runs = 0;
  for (size_t i = 0; i < count; i++) {
    struct stat info;
    if (status == 0 && stat(names[i], &info) == 0 && S_ISREG(info.st_mode)) {
      if (run_file(names[i]) < 0)
        status = -1;
      else
        runs++;
    }
    free(names[i]);
  }
  free(names);
  return status < 0 ? -1 : runs;
}

int main(int argc, char **argv) {
  long runs = 0;
  for (int i = 1; i < argc; i++) {
    struct stat info;
    if (stat(argv[i], &info) != 0) {
      fprintf(stderr, "replay: cannot find %s\n", argv[i]);
      return 1;
    }
    int n = S_ISDIR(info.st_mode) ? run_directory(argv[i]) : run_file(argv[i]);
    if (n < 0)
      return 1;
    runs += n;
  }
  printf("%s: ran %ld inputs\n", argc > 0 ? argv[0] : "replay", runs);
  return runs > 0 ? 0 : 1;
}
