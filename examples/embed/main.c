// An application that embeds a model compiled by attnc: `attnc compile models/tiny.attn
// --emit static-lib -o tiny` gives libtiny.a and tiny.h; this program links them with the
// runtime (libattnrt.a) and predicts the next token after each position of a token sequence.
//
//   tiny_app [TOKEN]...      (default: 1 2 3 4 5 6 7 8)
#include <stdio.h>
#include <stdlib.h>

#include "tiny.h"

enum { MAX_TOKENS = 64 };

int main(int argc, char **argv) {
  int64_t ids[MAX_TOKENS];
  int64_t count = 0;
  for (int a = 1; a < argc && count < MAX_TOKENS; a++)
    ids[count++] = strtoll(argv[a], NULL, 10);
  for (; count == 0 || (argc <= 1 && count < 8); count++)
    ids[count] = count + 1;

  // The model is loaded once; each thread that runs it would open a session of its own.
  attn_model *model;
  attn_error error;
  if (tiny_open(&model, &error) != ATTN_OK) {
    fprintf(stderr, "tiny_app: %s\n", error.message);
    return 1;
  }
  attn_session *session;
  if (attn_session_create(model, NULL, &session, &error) != ATTN_OK) {
    fprintf(stderr, "tiny_app: %s\n", error.message);
    attn_model_close(model);
    return 1;
  }

  // One sequence (B = 1) of `count` tokens (T = count).
  tiny_inputs inputs = {.input_ids = ids, .input_ids_dims = {1, count}};
  tiny_outputs outputs;
  int status = 0;
  if (tiny_run(session, &inputs, &outputs) != ATTN_OK) {
    fprintf(stderr, "tiny_app: %s\n", attn_session_error(session));
    status = 1;
  } else {
    int64_t vocab = outputs.logits_dims[2];
    printf("logits: [%lld, %lld, %lld]\n", (long long)outputs.logits_dims[0],
           (long long)outputs.logits_dims[1], (long long)vocab);
    for (int64_t t = 0; t < count; t++) {
      const float *row = outputs.logits + t * vocab;
      int64_t best = 0;
      for (int64_t v = 1; v < vocab; v++)
        best = row[v] > row[best] ? v : best;
      printf("after token %lld at %lld: %lld\n", (long long)ids[t], (long long)t, (long long)best);
    }
  }
  attn_session_destroy(session);
  attn_model_close(model);
  return status;
}
