// What the pass tests share: deterministic data, evaluating a graph with the reference evaluator
// before and after passes, comparing the outputs, and printing a graph to a string.
//
// Inputs are seeded by their name and position and weights by their first name, so a pass may
// renumber or merge weight nodes and the graph after it still reads the same data.
#ifndef ATTN_TESTS_UNIT_PASSES_PASS_TEST_UTIL_H_
#define ATTN_TESTS_UNIT_PASSES_PASS_TEST_UTIL_H_

#include <stdbool.h>
#include <stdint.h>

#include "ir/interp.h"
#include "ir/ir.h"
#include "runtime/base/tensor.h"

enum { PASS_TEST_MAX_OUTPUTS = 32 };

static inline uint64_t next_random(uint64_t *state) { // splitmix64
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static inline uint64_t hash_text(const char *text) { // FNV-1a
  uint64_t h = 1469598103934665603u;
  for (; *text; text++)
    h = (h ^ (uint8_t)*text) * 1099511628211u;
  return h;
}

// How random data is drawn: floats uniform in [-float_scale, float_scale), integers in
// [0, int_bound) (0 when int_bound is 0), bools 0 or 1 — with the first element of every
// last-axis row true when `keeps_a_key_per_row` (a padding mask that hides no whole row).
typedef struct pass_test_data {
  double float_scale;
  int64_t int_bound;
  bool keeps_a_key_per_row;
} pass_test_data;

void pass_test_fill(attn_tensor *tensor, uint64_t seed, const pass_test_data *data);

typedef struct pass_test_outputs {
  attn_tensor tensors[PASS_TEST_MAX_OUTPUTS];
  uint32_t count;
} pass_test_outputs;

// Runs `graph` through the reference evaluator with `symbols` bound (graph->symbol_count values),
// inputs drawn as `inputs` says and weights as `weights` says. On failure the message is in
// `diag` and `out` is empty.
attn_status pass_test_evaluate(const attn_graph *graph, const int64_t *symbols,
                               const pass_test_data *inputs, const pass_test_data *weights,
                               attn_diag *diag, pass_test_outputs *out);
void pass_test_outputs_free(pass_test_outputs *outputs);

// What runs a graph for pass_test_evaluate_with: attn_interp_run's contract, outputs allocated
// with the system allocator.
typedef attn_status (*pass_test_runner)(void *ctx, const attn_graph *graph,
                                        const attn_interp_args *args, attn_diag *diag,
                                        attn_tensor *out_outputs);

// pass_test_evaluate with another runner (a backend) in place of the reference evaluator.
attn_status pass_test_evaluate_with(const attn_graph *graph, const int64_t *symbols,
                                    const pass_test_data *inputs, const pass_test_data *weights,
                                    pass_test_runner runner, void *runner_ctx, attn_diag *diag,
                                    pass_test_outputs *out);

enum {
  PASS_TEST_EXACT = 1 << 0,  // every output bit for bit
  PASS_TEST_FINITE = 1 << 1, // every value finite, before and after
};

// The outputs have equal types and agree: integers, bools and non-finite floats exactly, floats
// within `tolerance` relative L2 (or bit for bit with PASS_TEST_EXACT). `what` names the case in
// the failure message.
void pass_test_compare(const char *what, const pass_test_outputs *before,
                       const pass_test_outputs *after, double tolerance, unsigned flags);

// graph->symbol_count symbol values (malloc'ed) from "B=2,T=7": symbols not named there get
// `fallback`.
int64_t *pass_test_symbols(const attn_graph *graph, const char *bindings, int64_t fallback);

// `graph` printed as .attn into a malloc'ed string.
char *pass_test_print(const attn_graph *graph);

#endif // ATTN_TESTS_UNIT_PASSES_PASS_TEST_UTIL_H_
