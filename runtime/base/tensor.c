// Host tensor helpers, element access by dtype, half-precision conversions.
#include "runtime/base/tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
} dtype_info[ATTN_DTYPE_COUNT] = {
    [ATTN_DTYPE_F32] = {"f32", 4},   [ATTN_DTYPE_F16] = {"f16", 2}, [ATTN_DTYPE_BF16] = {"bf16", 2},
    [ATTN_DTYPE_I64] = {"i64", 8},   [ATTN_DTYPE_I32] = {"i32", 4}, [ATTN_DTYPE_I8] = {"i8", 1},
    [ATTN_DTYPE_BOOL] = {"bool", 1},
};

const char *attn_dtype_name(attn_dtype dtype) {
  return (unsigned)dtype < ATTN_DTYPE_COUNT ? dtype_info[dtype].name : "?";
}

size_t attn_dtype_size(attn_dtype dtype) {
  return (unsigned)dtype < ATTN_DTYPE_COUNT ? dtype_info[dtype].size : 0;
}

bool attn_dtype_from_name(const char *name, size_t length, attn_dtype *out_dtype) {
  for (int d = 0; d < ATTN_DTYPE_COUNT; d++) {
    if (strlen(dtype_info[d].name) == length && memcmp(dtype_info[d].name, name, length) == 0) {
      *out_dtype = (attn_dtype)d;
      return true;
    }
  }
  return false;
}

bool attn_dtype_is_float(attn_dtype dtype) {
  return dtype == ATTN_DTYPE_F32 || dtype == ATTN_DTYPE_F16 || dtype == ATTN_DTYPE_BF16;
}

const char *attn_status_name(attn_status status) {
  static const char *const names[ATTN_STATUS_COUNT] = {
      "ok",          "invalid argument", "invalid graph", "parse error", "not found",
      "unsupported", "out of memory",    "device error",  "I/O error",
  };
  return (unsigned)status < ATTN_STATUS_COUNT ? names[status] : "unknown status";
}

bool attn_shape_element_count(uint32_t rank, const int64_t *dims, int64_t *out_count) {
  int64_t count = 1;
  for (uint32_t i = 0; i < rank; i++) {
    if (dims[i] < 0)
      return false;
    if (dims[i] != 0 && count > INT64_MAX / dims[i])
      return false;
    count *= dims[i];
  }
  *out_count = count;
  return true;
}

bool attn_tensor_size_bytes(const attn_tensor *tensor, size_t *out_size_bytes) {
  int64_t count;
  if (!attn_shape_element_count(tensor->rank, tensor->dims, &count))
    return false;
  size_t item = attn_dtype_size(tensor->dtype);
  if ((uint64_t)count > SIZE_MAX / item)
    return false;
  *out_size_bytes = (size_t)count * item;
  return true;
}

int64_t attn_tensor_element_count(const attn_tensor *tensor) {
  int64_t count = 0;
  attn_shape_element_count(tensor->rank, tensor->dims, &count);
  return count;
}

static attn_status tensor_alloc(attn_allocator allocator, attn_dtype dtype, uint32_t rank,
                                const int64_t *dims, bool zero, attn_tensor *out_tensor) {
  // `dims` may point into `out_tensor` itself (reallocating a tensor of the same shape), so
  // copy it before clearing the result.
  int64_t shape[ATTN_MAX_RANK] = {0};
  if (rank <= ATTN_MAX_RANK && rank)
    memcpy(shape, dims, rank * sizeof(dims[0]));
  memset(out_tensor, 0, sizeof(*out_tensor));
  if (rank > ATTN_MAX_RANK || (unsigned)dtype >= ATTN_DTYPE_COUNT)
    return ATTN_ERROR_INVALID_ARGUMENT;
  out_tensor->dtype = dtype;
  out_tensor->rank = rank;
  memcpy(out_tensor->dims, shape, sizeof(shape));
  size_t size;
  if (!attn_tensor_size_bytes(out_tensor, &size))
    return ATTN_ERROR_INVALID_ARGUMENT;
  out_tensor->data =
      zero ? attn_allocator_calloc(allocator, 1, size) : attn_allocator_alloc(allocator, size);
  return out_tensor->data ? ATTN_OK : ATTN_ERROR_OUT_OF_MEMORY;
}

attn_status attn_tensor_alloc(attn_allocator allocator, attn_dtype dtype, uint32_t rank,
                              const int64_t *dims, attn_tensor *out_tensor) {
  return tensor_alloc(allocator, dtype, rank, dims, true, out_tensor);
}

attn_status attn_tensor_alloc_uninit(attn_allocator allocator, attn_dtype dtype, uint32_t rank,
                                     const int64_t *dims, attn_tensor *out_tensor) {
  return tensor_alloc(allocator, dtype, rank, dims, false, out_tensor);
}

void attn_tensor_free(attn_allocator allocator, attn_tensor *tensor) {
  if (!tensor->data)
    return;
  size_t size = 0;
  attn_tensor_size_bytes(tensor, &size);
  attn_allocator_free(allocator, tensor->data, size);
  tensor->data = NULL;
}

double attn_tensor_get_f64(const attn_tensor *tensor, int64_t index) {
  const void *data = tensor->data;
  switch (tensor->dtype) {
  case ATTN_DTYPE_F32:
    return (double)((const float *)data)[index];
  case ATTN_DTYPE_F16:
    return (double)attn_f16_to_f32(((const uint16_t *)data)[index]);
  case ATTN_DTYPE_BF16:
    return (double)attn_bf16_to_f32(((const uint16_t *)data)[index]);
  case ATTN_DTYPE_I64:
    return (double)((const int64_t *)data)[index];
  case ATTN_DTYPE_I32:
    return ((const int32_t *)data)[index];
  case ATTN_DTYPE_I8:
    return ((const int8_t *)data)[index];
  case ATTN_DTYPE_BOOL:
    return ((const uint8_t *)data)[index] != 0;
  case ATTN_DTYPE_COUNT:
    break;
  }
  return 0.0;
}

// Float to integer conversion that never invokes undefined behaviour: NaN becomes 0 and
// out-of-range values saturate.
static int64_t saturate(double value, double lo, double hi) {
  if (isnan(value))
    return 0;
  if (value <= lo)
    return (int64_t)lo;
  if (value >= hi)
    return (int64_t)hi;
  return (int64_t)value;
}

void attn_tensor_set_f64(attn_tensor *tensor, int64_t index, double value) {
  void *data = tensor->data;
  switch (tensor->dtype) {
  case ATTN_DTYPE_F32:
    ((float *)data)[index] = (float)value;
    break;
  case ATTN_DTYPE_F16:
    ((uint16_t *)data)[index] = attn_f32_to_f16((float)value);
    break;
  case ATTN_DTYPE_BF16:
    ((uint16_t *)data)[index] = attn_f32_to_bf16((float)value);
    break;
  case ATTN_DTYPE_I64:
    ((int64_t *)data)[index] = saturate(value, -9223372036854775808.0, 9223372036854774784.0);
    break;
  case ATTN_DTYPE_I32:
    ((int32_t *)data)[index] = (int32_t)saturate(value, -2147483648.0, 2147483647.0);
    break;
  case ATTN_DTYPE_I8:
    ((int8_t *)data)[index] = (int8_t)saturate(value, -128.0, 127.0);
    break;
  case ATTN_DTYPE_BOOL:
    ((uint8_t *)data)[index] = value != 0.0;
    break;
  case ATTN_DTYPE_COUNT:
    break;
  }
}

void attn_tensor_format_type(attn_dtype dtype, uint32_t rank, const int64_t *dims, char *buffer,
                             size_t buffer_size) {
  size_t used = (size_t)snprintf(buffer, buffer_size, "%s[", attn_dtype_name(dtype));
  for (uint32_t i = 0; i < rank && used < buffer_size; i++)
    used += (size_t)snprintf(buffer + used, buffer_size - used, "%s%lld", i ? ", " : "",
                             (long long)dims[i]);
  if (used < buffer_size)
    snprintf(buffer + used, buffer_size - used, "]");
}

static uint32_t float_bits(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof(bits));
  return bits;
}

static float bits_float(uint32_t bits) {
  float value;
  memcpy(&value, &bits, sizeof(value));
  return value;
}

float attn_bf16_to_f32(uint16_t bits) {
  return bits_float((uint32_t)bits << 16);
}

uint16_t attn_f32_to_bf16(float value) {
  uint32_t bits = float_bits(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u) // NaN: keep it quiet and a NaN
    return (uint16_t)((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)(bits >> 16);
}

float attn_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f)
    return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    float magnitude = ldexpf((float)mantissa, -24);
    return sign ? -magnitude : magnitude;
  }
  return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

uint16_t attn_f32_to_f16(float value) {
  uint32_t bits = float_bits(value);
  uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
  uint32_t abs_bits = bits & 0x7fffffffu;
  if (abs_bits > 0x7f800000u)
    return (uint16_t)(sign | 0x7e00u);
  if (abs_bits >= 0x477ff000u) // rounds to ≥ 65520: infinity
    return (uint16_t)(sign | 0x7c00u);
  if (abs_bits < 0x38800000u) { // subnormal or zero in f16
    float magnitude = bits_float(abs_bits);
    // Scale so that one f16 subnormal step is 1.0, then round to nearest even.
    float scaled = magnitude * 16777216.0f;
    uint32_t rounded = (uint32_t)nearbyintf(scaled);
    return (uint16_t)(sign | rounded);
  }
  uint32_t mantissa = abs_bits & 0x7fffffu;
  uint32_t exponent = (abs_bits >> 23) - 112u;
  uint32_t half = (exponent << 10) | (mantissa >> 13);
  uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u)))
    half++;
  return (uint16_t)(sign | half);
}

void attn_tensor_convert(const attn_tensor *from, attn_tensor *to) {
  int64_t count = attn_tensor_element_count(from);
  for (int64_t e = 0; e < count; e++)
    attn_tensor_set_f64(to, e, attn_tensor_get_f64(from, e));
}

attn_tensor_stats attn_tensor_get_stats(const attn_tensor *tensor) {
  attn_tensor_stats stats = {.count = attn_tensor_element_count(tensor),
                             .min = (double)INFINITY,
                             .max = -(double)INFINITY};
  double sum = 0.0, sum_sq = 0.0;
  for (int64_t i = 0; i < stats.count; i++) {
    double v = attn_tensor_get_f64(tensor, i);
    stats.nans += isnan(v);
    if (!isfinite(v))
      continue;
    stats.finite++;
    stats.min = v < stats.min ? v : stats.min;
    stats.max = v > stats.max ? v : stats.max;
    sum += v;
  }
  stats.mean = stats.finite ? sum / (double)stats.finite : 0.0;
  for (int64_t i = 0; i < stats.count; i++) {
    double v = attn_tensor_get_f64(tensor, i);
    if (isfinite(v))
      sum_sq += (v - stats.mean) * (v - stats.mean);
  }
  stats.std = stats.finite ? sqrt(sum_sq / (double)stats.finite) : 0.0;
  return stats;
}

void attn_tensor_print_values(FILE *out, const attn_tensor *tensor, int64_t count) {
  int64_t total = attn_tensor_element_count(tensor);
  fprintf(out, "  [");
  for (int64_t i = 0; i < total && i < count; i++)
    fprintf(out, "%s%.6g", i ? ", " : "", attn_tensor_get_f64(tensor, i));
  fprintf(out, "%s]\n", total > count ? ", ..." : "");
}

void attn_tensor_print_summary(FILE *out, const char *name, const attn_tensor *tensor) {
  char type[160];
  attn_tensor_format_type(tensor->dtype, tensor->rank, tensor->dims, type, sizeof(type));
  attn_tensor_stats stats = attn_tensor_get_stats(tensor);
  fprintf(out, "%s: %s\n", name, type);
  if (stats.finite > 0)
    fprintf(out, "  min %.6g  max %.6g  mean %.6g", stats.min, stats.max, stats.mean);
  if (stats.finite < stats.count)
    fprintf(out, "  %lld not finite", (long long)(stats.count - stats.finite));
  fprintf(out, "\n");
  attn_tensor_print_values(out, tensor, 8);
}
