// Status codes returned by every fallible attnc function.
// A status says what class of failure happened; the message, with its source
// location, is recorded in the diagnostics sink of the object that failed.
#ifndef ATTN_INCLUDE_ATTN_STATUS_H_
#define ATTN_INCLUDE_ATTN_STATUS_H_

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define ATTN_MUST_USE      __attribute__((warn_unused_result))
#define ATTN_PRINTF(f, a)  __attribute__((format(printf, f, a)))
#define ATTN_API           __attribute__((visibility("default")))
#else
#define ATTN_MUST_USE
#define ATTN_PRINTF(f, a)
#define ATTN_API
#endif

typedef enum attn_status {
  ATTN_OK = 0,
  ATTN_ERROR_INVALID_ARGUMENT, // the caller passed something malformed
  ATTN_ERROR_INVALID_GRAPH,    // the verifier or shape inference rejected the IR
  ATTN_ERROR_PARSE,            // a model description or data file is malformed
  ATTN_ERROR_NOT_FOUND,        // a named thing (weight, file, input) does not exist
  ATTN_ERROR_UNSUPPORTED,      // well-formed, but no target handles it yet
  ATTN_ERROR_OUT_OF_MEMORY,
  ATTN_ERROR_DEVICE,           // driver failure; the diagnostic has the details
  ATTN_ERROR_IO,
  ATTN_STATUS_COUNT
} attn_status;

// A short constant name for `status`, such as "invalid argument".
ATTN_API const char *attn_status_name(attn_status status);

#define ATTN_RETURN_IF_ERROR(expr)                                                                 \
  do {                                                                                             \
    attn_status attn_status_ = (expr);                                                             \
    if (attn_status_ != ATTN_OK)                                                                   \
      return attn_status_;                                                                         \
  } while (0)

#ifdef __cplusplus
}
#endif

#endif // ATTN_INCLUDE_ATTN_STATUS_H_
