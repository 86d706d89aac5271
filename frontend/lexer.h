// The .attn lexer: source text to a linked list of tokens (docs/language.md, "Lexical
// structure"). Tokens and unescaped string contents live in the caller's arena; every token
// carries its file:line:col.
#ifndef ATTN_FRONTEND_LEXER_H_
#define ATTN_FRONTEND_LEXER_H_

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/base/arena.h"
#include "runtime/base/diag.h"

typedef enum attn_token_kind {
  ATTN_TOKEN_IDENT,
  ATTN_TOKEN_KEYWORD, // let def graph repeat in return true false config
  ATTN_TOKEN_PUNCT,   // ( ) [ ] { } , : = -> @ .. . ? ?? + - * / % < <= > >= == != |
  ATTN_TOKEN_INT,
  ATTN_TOKEN_FLOAT,
  ATTN_TOKEN_STRING,
  ATTN_TOKEN_EOF,
} attn_token_kind;

typedef struct attn_token attn_token;
struct attn_token {
  attn_token_kind kind;
  attn_token *next; // NULL after the EOF token
  const char *text; // the token's characters in the source (not NUL-terminated)
  uint32_t length;
  attn_loc loc;
  int64_t int_value;  // INT
  double float_value; // FLOAT
  const char *string; // STRING: contents with escapes resolved, NUL-terminated
  uint32_t string_length;
};

// Splits `text` (`length` bytes, need not be NUL-terminated) into tokens ending with an EOF
// token. `file` is borrowed and must outlive the tokens; it is the `file` of every location.
// Errors (ATTN_ERROR_PARSE at the offending character, ATTN_ERROR_OUT_OF_MEMORY) go to `diag`.
attn_status attn_lex(const char *file, const char *text, size_t length, attn_arena *arena,
                     attn_diag *diag, attn_token **out_tokens) ATTN_MUST_USE;

// True when `token` is the punctuator or keyword `text`.
bool attn_token_is(const attn_token *token, const char *text);

// Writes a short description of `token` for messages: 'x', "abc", 12, end of file.
void attn_token_describe(const attn_token *token, char *buffer, size_t buffer_size);

#endif // ATTN_FRONTEND_LEXER_H_
