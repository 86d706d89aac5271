// What `attnc run model.attnx` shares with standalone executables: running an opened model with
// the -i/-o/--threads/--iters/--timing flags (attn_standalone_main in attn/runtime.h).
#ifndef ATTN_RUNTIME_API_STANDALONE_H_
#define ATTN_RUNTIME_API_STANDALONE_H_

#include "attn/runtime.h"

// Parses argv[1..argc-1] as those flags, runs `model` and writes or summarises its outputs;
// `program` prefixes messages, `start` (from attn_standalone_now) is when the program began.
// Returns the exit status: 0, 1 (a failure) or 2 (bad flags).
int attn_standalone_run(const char *program, attn_model *model, int argc, char **argv,
                        double start);

// Seconds on the monotonic clock.
double attn_standalone_now(void);

#endif // ATTN_RUNTIME_API_STANDALONE_H_
