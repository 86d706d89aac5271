// Deterministic data for the pass tests: a splitmix64 stream and an FNV-1a hash that seeds data
// by name (so a pass may renumber weight nodes and the graph still reads the same weights).
#ifndef ATTN_TESTS_UNIT_PASSES_TEST_RANDOM_H_
#define ATTN_TESTS_UNIT_PASSES_TEST_RANDOM_H_

#include <stdint.h>

static inline uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

static inline uint64_t hash_text(const char *text) {
  uint64_t h = 1469598103934665603u;
  for (; *text; text++)
    h = (h ^ (uint8_t)*text) * 1099511628211u;
  return h;
}

#endif // ATTN_TESTS_UNIT_PASSES_TEST_RANDOM_H_
