// The shared object artifact_test loads from memory, standing in for generated kernels: two
// functions whose results the test checks.
#include <stdint.h>

int64_t attn_test_add(int64_t a, int64_t b);
double attn_test_scale(double x);

int64_t attn_test_add(int64_t a, int64_t b) {
  return a + b;
}

double attn_test_scale(double x) {
  return 2.5 * x;
}
