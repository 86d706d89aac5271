// The .attn lexer. Numbers are classified here (integer unless written with '.', 'e' or
// 'E'), strings are unescaped here; `{name}` interpolation happens later, when a string is
// evaluated, because it needs the values in scope.
#include "frontend/lexer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_STRING_BYTES = 1 << 20 };

static const char *const keywords[] = {"let",    "def",  "graph", "repeat", "in",
                                       "return", "true", "false", "config"};

// Longest first, so "->" is not read as "-" then ">".
static const char *const punctuators[] = {
    "->", "..", "??", "<=", ">=", "==", "!=", "(", ")", "[", "]", "{", "}", ",",
    ":",  "=",  "@",  ".",  "?",  "+",  "-",  "*", "/", "%", "<", ">", "|",
};

typedef struct lexer {
  const char *file;
  const char *text, *end;
  const char *p;
  const char *line_start;
  uint32_t line;
  attn_arena *arena;
  attn_diag *diag;
} lexer;

static attn_loc loc_at(const lexer *lx, const char *p) {
  return (attn_loc){lx->file, lx->line, (uint32_t)(p - lx->line_start) + 1};
}

static attn_status error_at(const lexer *lx, const char *p, const char *format, ...)
    ATTN_PRINTF(3, 4);
static attn_status error_at(const lexer *lx, const char *p, const char *format, ...) {
  va_list args;
  va_start(args, format);
  attn_diag_verror(lx->diag, loc_at(lx, p), ATTN_ERROR_PARSE, format, args);
  va_end(args);
  return ATTN_ERROR_PARSE;
}

static bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

static bool is_ident_char(char c) {
  return is_ident_start(c) || is_digit(c);
}

static attn_token *new_token(lexer *lx, attn_token_kind kind, const char *start, size_t length) {
  attn_token *token = attn_arena_calloc(lx->arena, 1, sizeof(*token));
  if (!token)
    return NULL;
  token->kind = kind;
  token->text = start;
  token->length = (uint32_t)length;
  token->loc = loc_at(lx, start);
  return token;
}

// Skips spaces, newlines and '#' comments.
static void skip_space(lexer *lx) {
  while (lx->p < lx->end) {
    char c = *lx->p;
    if (c == '\n') {
      lx->p++;
      lx->line++;
      lx->line_start = lx->p;
    } else if (c == ' ' || c == '\t' || c == '\r') {
      lx->p++;
    } else if (c == '#') {
      while (lx->p < lx->end && *lx->p != '\n')
        lx->p++;
    } else {
      return;
    }
  }
}

// number = digits ('.' digits)? ([eE] [+-]? digits)?
static attn_status lex_number(lexer *lx, attn_token **out) {
  const char *start = lx->p, *q = lx->p;
  bool is_float = false;
  while (q < lx->end && is_digit(*q))
    q++;
  if (q + 1 < lx->end && *q == '.' && is_digit(q[1])) {
    is_float = true;
    for (q++; q < lx->end && is_digit(*q);)
      q++;
  }
  if (q < lx->end && (*q == 'e' || *q == 'E')) {
    const char *e = q + 1;
    if (e < lx->end && (*e == '+' || *e == '-'))
      e++;
    if (e < lx->end && is_digit(*e)) {
      is_float = true;
      for (q = e; q < lx->end && is_digit(*q);)
        q++;
    }
  }
  // A '.' may follow a number only as "0..2" (a range) or "config.layers.0.name" (a path).
  bool bad_dot =
      q < lx->end && *q == '.' && !(q + 1 < lx->end && (q[1] == '.' || is_ident_start(q[1])));
  if (q < lx->end && (is_ident_char(*q) || bad_dot)) {
    const char *bad = q;
    while (bad < lx->end && (is_ident_char(*bad) || *bad == '.') && bad - start < 40)
      bad++;
    return error_at(lx, start, "malformed number '%.*s'", (int)(bad - start), start);
  }
  size_t length = (size_t)(q - start);
  attn_token *token = new_token(lx, is_float ? ATTN_TOKEN_FLOAT : ATTN_TOKEN_INT, start, length);
  if (!token)
    return attn_diag_error(lx->diag, loc_at(lx, start), ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  if (is_float) {
    char *copy = attn_arena_strndup(lx->arena, start, length);
    if (!copy)
      return attn_diag_error(lx->diag, loc_at(lx, start), ATTN_ERROR_OUT_OF_MEMORY,
                             "out of memory");
    errno = 0;
    token->float_value = strtod(copy, NULL);
    if (isinf(token->float_value))
      return error_at(lx, start, "number '%.*s' is too large", (int)(length > 40 ? 40 : length),
                      start);
  } else {
    int64_t value = 0;
    for (const char *d = start; d < q; d++) {
      if (__builtin_mul_overflow(value, 10, &value) ||
          __builtin_add_overflow(value, *d - '0', &value))
        return error_at(lx, start, "integer '%.*s' is too large (the largest is %lld)",
                        (int)(length > 40 ? 40 : length), start, (long long)INT64_MAX);
    }
    token->int_value = value;
  }
  lx->p = q;
  *out = token;
  return ATTN_OK;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

// string = '"' (char | '\' ["\\nt] | '\x' hex hex)* '"'
static attn_status lex_string(lexer *lx, attn_token **out) {
  const char *start = lx->p;
  // First pass: find the end and check the escapes; the unescaped text is never longer.
  const char *q = start + 1;
  for (;;) {
    if (q >= lx->end || *q == '\n')
      return error_at(lx, start, "unterminated string");
    if (*q == '"')
      break;
    if (q - start > MAX_STRING_BYTES)
      return error_at(lx, start, "string longer than %d bytes", MAX_STRING_BYTES);
    unsigned char c = (unsigned char)*q;
    if (c < 0x20 && c != '\t')
      return error_at(lx, q, "control character 0x%02x in a string; write it as \\x%02x", c, c);
    if (c == '\\') {
      char e = q + 1 < lx->end ? q[1] : '\0';
      if (e == 'x') {
        int hi = q + 2 < lx->end ? hex_value(q[2]) : -1;
        int lo = q + 3 < lx->end ? hex_value(q[3]) : -1;
        if (hi < 0 || lo < 0)
          return error_at(lx, q, "'\\x' needs two hex digits");
        if (hi == 0 && lo == 0)
          return error_at(lx, q, "a string cannot hold a NUL byte");
        q += 4;
        continue;
      }
      if (e != '"' && e != '\\' && e != 'n' && e != 't')
        return error_at(lx, q, "unknown escape '\\%c' (known: \\\" \\\\ \\n \\t \\xHH)",
                        e >= 0x20 && e < 0x7f ? e : '?');
      q += 2;
      continue;
    }
    q++;
  }
  const char *close = q;
  attn_token *token = new_token(lx, ATTN_TOKEN_STRING, start, (size_t)(close + 1 - start));
  char *text = attn_arena_alloc(lx->arena, (size_t)(close - start), 1);
  if (!token || !text)
    return attn_diag_error(lx->diag, loc_at(lx, start), ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  size_t n = 0;
  for (q = start + 1; q < close;) {
    if (*q != '\\') {
      text[n++] = *q++;
      continue;
    }
    char e = q[1];
    if (e == 'x') {
      text[n++] = (char)(hex_value(q[2]) * 16 + hex_value(q[3]));
      q += 4;
      continue;
    }
    text[n++] = e == 'n' ? '\n' : e == 't' ? '\t' : e;
    q += 2;
  }
  text[n] = '\0';
  token->string = text;
  token->string_length = (uint32_t)n;
  lx->p = close + 1;
  *out = token;
  return ATTN_OK;
}

static attn_status lex_one(lexer *lx, attn_token **out) {
  const char *start = lx->p;
  char c = *start;
  if (is_ident_start(c)) {
    const char *q = start;
    while (q < lx->end && is_ident_char(*q))
      q++;
    size_t length = (size_t)(q - start);
    attn_token_kind kind = ATTN_TOKEN_IDENT;
    for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
      if (strlen(keywords[i]) == length && memcmp(keywords[i], start, length) == 0)
        kind = ATTN_TOKEN_KEYWORD;
    *out = new_token(lx, kind, start, length);
    lx->p = q;
  } else if (is_digit(c)) {
    return lex_number(lx, out);
  } else if (c == '"') {
    return lex_string(lx, out);
  } else {
    size_t left = (size_t)(lx->end - start);
    *out = NULL;
    for (size_t i = 0; i < sizeof(punctuators) / sizeof(punctuators[0]); i++) {
      size_t length = strlen(punctuators[i]);
      if (length <= left && memcmp(punctuators[i], start, length) == 0) {
        *out = new_token(lx, ATTN_TOKEN_PUNCT, start, length);
        lx->p += length;
        break;
      }
    }
    if (lx->p == start) {
      unsigned char u = (unsigned char)c;
      if (u >= 0x21 && u < 0x7f)
        return error_at(lx, start, "unexpected character '%c'", c);
      return error_at(lx, start, "unexpected byte 0x%02x", u);
    }
  }
  if (!*out)
    return attn_diag_error(lx->diag, loc_at(lx, start), ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  return ATTN_OK;
}

attn_status attn_lex(const char *file, const char *text, size_t length, attn_arena *arena,
                     attn_diag *diag, attn_token **out_tokens) {
  *out_tokens = NULL;
  lexer lx = {file, text, text + length, text, text, 1, arena, diag};
  attn_token head = {0};
  attn_token *tail = &head;
  for (;;) {
    skip_space(&lx);
    if (lx.line == UINT32_MAX)
      return error_at(&lx, lx.p, "too many lines");
    if (lx.p >= lx.end)
      break;
    attn_token *token = NULL;
    ATTN_RETURN_IF_ERROR(lex_one(&lx, &token));
    tail = tail->next = token;
  }
  attn_token *eof = new_token(&lx, ATTN_TOKEN_EOF, lx.p, 0);
  if (!eof)
    return attn_diag_error(diag, loc_at(&lx, lx.p), ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  tail->next = eof;
  *out_tokens = head.next;
  return ATTN_OK;
}

bool attn_token_is(const attn_token *token, const char *text) {
  return (token->kind == ATTN_TOKEN_PUNCT || token->kind == ATTN_TOKEN_KEYWORD) &&
         strlen(text) == token->length && memcmp(token->text, text, token->length) == 0;
}

void attn_token_describe(const attn_token *token, char *buffer, size_t buffer_size) {
  if (token->kind == ATTN_TOKEN_EOF) {
    snprintf(buffer, buffer_size, "end of file");
    return;
  }
  int length = token->length > 32 ? 32 : (int)token->length;
  const char *more = token->length > 32 ? "..." : "";
  if (token->kind == ATTN_TOKEN_STRING || token->kind == ATTN_TOKEN_INT ||
      token->kind == ATTN_TOKEN_FLOAT)
    snprintf(buffer, buffer_size, "%.*s%s", length, token->text, more);
  else
    snprintf(buffer, buffer_size, "'%.*s%s'", length, token->text, more);
}
