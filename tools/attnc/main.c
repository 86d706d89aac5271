// attnc: the driver. Dispatches to the sub-commands; each one parses its own flags, prints
// diagnostics with attn_diag_write, and returns the exit code (0 ok, 1 error, 2 usage).
#include <malloc.h>
#include <stdio.h>
#include <string.h>

#include "tools/attnc/cli.h"

#ifndef ATTN_VERSION
#define ATTN_VERSION "unknown"
#endif

static const char usage[] =
    "usage: attnc COMMAND [ARGS]...\n"
    "\n"
    "attnc compiles and runs transformer models written in the .attn language, with weights\n"
    "bound from safetensors files or Hugging Face checkpoint directories.\n"
    "\n"
    "Commands:\n"
    "  run           run a model (.attn, .onnx, or a compiled .attnx) on .npy inputs and write or\n"
    "                summarise its outputs\n"
    "  compile       compile a model ahead of time: an executable, a .attnx artifact, or a\n"
    "                static library with a header\n"
    "  bench         time a model's runs and each of its kernels\n"
    "  opt           print the flat IR a model description expands to\n"
    "  init-weights  write deterministic random weights for a model\n"
    "  repl          an interactive session: .attn statements compiled and run as entered\n"
    "  import        an ONNX model to a .attn description and a safetensors weight file\n"
    "\n"
    "  -h, --help    this text; 'attnc COMMAND --help' describes a command\n"
    "  --version     the version\n";

typedef struct attn_command {
  const char *name;
  int (*main)(int argc, char **argv);
} attn_command;

// clang-format off
static const attn_command commands[] = {
    {"run", attn_tool_run},
    {"compile", attn_tool_compile},
    {"bench", attn_tool_bench},
    {"opt", attn_tool_opt},
    {"init-weights", attn_tool_init_weights},
    {"repl", attn_tool_repl},
    {"import", attn_tool_import},
};
// clang-format on

int main(int argc, char **argv) {
  // Keep freed memory in the heap rather than handing it back to the system: a run allocates
  // its outputs (logits: tens of MB) afresh, and memory just returned by munmap would be page-
  // faulted in again by the next run. With the heap, repeated runs reuse warm pages.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (argc < 2) {
    fputs(usage, stderr);
    return ATTN_EXIT_USAGE;
  }
  const char *name = argv[1];
  if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
    fputs(usage, stdout);
    return ATTN_EXIT_OK;
  }
  if (strcmp(name, "--version") == 0) {
    printf("attnc %s\n", ATTN_VERSION);
    return ATTN_EXIT_OK;
  }
  for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
    if (strcmp(name, commands[i].name) == 0)
      return commands[i].main(argc - 1, argv + 1);
  }
  fprintf(stderr, "attnc: unknown command '%s'\n\n", name);
  fputs(usage, stderr);
  return ATTN_EXIT_USAGE;
}
