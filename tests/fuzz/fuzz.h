// The libFuzzer entry point every target in tests/fuzz defines, declared once for the targets
// and for replay_main.c.
#ifndef ATTN_TESTS_FUZZ_FUZZ_H_
#define ATTN_TESTS_FUZZ_FUZZ_H_

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif // ATTN_TESTS_FUZZ_FUZZ_H_
