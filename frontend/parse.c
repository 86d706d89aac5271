// The .attn parser: recursive descent from tokens to the syntax tree of ast.h, then the
// entry points that run lexer → parser → expander (expand.c) → verifier. This stage checks
// syntax only; names, values and shapes are checked when the tree is expanded. The first
// error stops parsing, so there are no cascades.
#include "frontend/parse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "frontend/ast.h"
#include "frontend/expand.h"
#include "frontend/lexer.h"

enum {
  MAX_DEPTH = 200,              // nesting of expressions and blocks
  MAX_TEXT_BYTES = 1 << 28,     // a model description larger than this is not one
  MAX_CONFIG_PATH_BYTES = 1024, // config.a.b.c
};

typedef struct parser {
  attn_token *tok;
  attn_arena *arena;
  attn_diag *diag;
  attn_status status; // the first error; every function returns NULL once it is set
  int depth;
} parser;

static const char *const op_texts[] = {"+", "-", "*", "/", "%", "<", "<=", ">", ">=", "==", "!="};

const char *attn_ast_op_text(attn_ast_op op) {
  return (unsigned)op < sizeof(op_texts) / sizeof(op_texts[0]) ? op_texts[op] : "?";
}

// ---- helpers -------------------------------------------------------------------------------

static attn_ast *fail_at(parser *p, attn_loc loc, const char *format, ...) ATTN_PRINTF(3, 4);
static attn_ast *fail_at(parser *p, attn_loc loc, const char *format, ...) {
  if (p->status == ATTN_OK) {
    va_list args;
    va_start(args, format);
    p->status = attn_diag_verror(p->diag, loc, ATTN_ERROR_PARSE, format, args);
    va_end(args);
  }
  return NULL;
}

static attn_ast *out_of_memory(parser *p) {
  if (p->status == ATTN_OK)
    p->status = attn_diag_error(p->diag, p->tok->loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  return NULL;
}

// "expected ')' after arguments, found 'x'"
static attn_ast *expected(parser *p, const char *what, const char *context) {
  char found[64];
  attn_token_describe(p->tok, found, sizeof(found));
  return fail_at(p, p->tok->loc, "expected %s%s%s, found %s", what, context[0] ? " " : "", context,
                 found);
}

static bool equal(const parser *p, const char *text) {
  return attn_token_is(p->tok, text);
}

static bool consume(parser *p, const char *text) {
  if (!equal(p, text))
    return false;
  p->tok = p->tok->next;
  return true;
}

// Consumes the punctuator or keyword `text`, or records "expected 'text' CONTEXT".
static bool expect(parser *p, const char *text, const char *context) {
  if (consume(p, text))
    return true;
  char what[16];
  snprintf(what, sizeof(what), "'%s'", text);
  expected(p, what, context);
  return false;
}

static attn_ast *new_node(parser *p, attn_ast_kind kind, const attn_token *tok) {
  attn_ast *node = attn_arena_calloc(p->arena, 1, sizeof(*node));
  if (!node)
    return out_of_memory(p);
  node->kind = kind;
  node->loc = tok->loc;
  return node;
}

static const char *token_name(parser *p, const attn_token *tok) {
  const char *name = attn_arena_strndup(p->arena, tok->text, tok->length);
  if (!name)
    out_of_memory(p);
  return name;
}

// Expects an identifier and returns its name.
static const char *expect_ident(parser *p, const char *what, const char *context) {
  if (p->tok->kind != ATTN_TOKEN_IDENT) {
    expected(p, what, context);
    return NULL;
  }
  const char *name = token_name(p, p->tok);
  p->tok = p->tok->next;
  return name;
}

static bool enter(parser *p) {
  if (++p->depth <= MAX_DEPTH)
    return true;
  fail_at(p, p->tok->loc, "nested too deeply (the limit is %d levels)", MAX_DEPTH);
  return false;
}

static bool is_dtype_name(const attn_token *tok) {
  attn_dtype dtype;
  return tok->kind == ATTN_TOKEN_IDENT && attn_dtype_from_name(tok->text, tok->length, &dtype);
}

// ---- expressions ---------------------------------------------------------------------------

static attn_ast *expr(parser *p);

// Parses `expr (',' expr)* ','?` up to `close`, appending to *out_list; NULL on error.
static bool expr_list(parser *p, const char *close, const char *context, attn_ast **out_list,
                      uint32_t *out_count) {
  attn_ast head = {0}, *tail = &head;
  uint32_t count = 0;
  while (!consume(p, close)) {
    if (count > 0 && !expect(p, ",", context))
      return false;
    if (count > 0 && consume(p, close))
      break; // a trailing comma
    attn_ast *item = expr(p);
    if (!item)
      return false;
    tail = tail->next = item;
    count++;
  }
  *out_list = head.next;
  *out_count = count;
  return true;
}

// args = (arg (',' arg)* ','?)? ')'
// arg  = IDENT '=' expr | expr          (keyword arguments come last)
static attn_ast *call_args(parser *p, attn_ast *call) {
  attn_ast args = {0}, kwargs = {0};
  attn_ast *args_tail = &args, *kwargs_tail = &kwargs;
  bool first = true;
  while (!consume(p, ")")) {
    if (!first && !expect(p, ",", "between arguments"))
      return NULL;
    if (!first && consume(p, ")"))
      break;
    first = false;
    const attn_token *start = p->tok;
    if (start->kind == ATTN_TOKEN_IDENT && attn_token_is(start->next, "=")) {
      attn_ast *kwarg = new_node(p, ATTN_AST_KWARG, start);
      if (!kwarg || !(kwarg->name = token_name(p, start)))
        return NULL;
      p->tok = start->next->next;
      if (!(kwarg->lhs = expr(p)))
        return NULL;
      for (attn_ast *k = kwargs.next; k; k = k->next)
        if (strcmp(k->name, kwarg->name) == 0)
          return fail_at(p, start->loc, "attribute '%s' is given twice", kwarg->name);
      kwargs_tail = kwargs_tail->next = kwarg;
      continue;
    }
    if (kwargs.next)
      return fail_at(p, start->loc, "a positional argument cannot follow keyword arguments");
    attn_ast *arg = expr(p);
    if (!arg)
      return NULL;
    args_tail = args_tail->next = arg;
    call->arg_count++;
    if (call->arg_count > 4096)
      return fail_at(p, start->loc, "more than 4096 arguments");
  }
  call->args = args.next;
  call->kwargs = kwargs.next;
  return call;
}

// config_key = 'config' ('.' (IDENT | INT | keyword))+
static attn_ast *config_key(parser *p) {
  attn_ast *node = new_node(p, ATTN_AST_CONFIG, p->tok);
  if (!node)
    return NULL;
  p->tok = p->tok->next;
  char path[MAX_CONFIG_PATH_BYTES];
  size_t used = 0;
  if (!equal(p, "."))
    return expected(p, "'.'", "after 'config' (config.KEY)");
  while (consume(p, ".")) {
    const attn_token *part = p->tok;
    if (part->kind != ATTN_TOKEN_IDENT && part->kind != ATTN_TOKEN_KEYWORD &&
        part->kind != ATTN_TOKEN_INT)
      return expected(p, "a key", "after '.'");
    if (used + part->length + 2 > sizeof(path))
      return fail_at(p, part->loc, "config key longer than %d bytes", MAX_CONFIG_PATH_BYTES);
    if (used)
      path[used++] = '.';
    memcpy(path + used, part->text, part->length);
    used += part->length;
    p->tok = part->next;
  }
  if (!(node->name = attn_arena_strndup(p->arena, path, used)))
    return out_of_memory(p);
  return node;
}

// primary = INT | FLOAT | STRING | 'true' | 'false' | config_key
//         | '(' expr ')' | '[' exprs ']' | '{' expr '}'
//         | DTYPE '[' exprs ']'            a tensor type: f32[B, T, 64]
//         | IDENT '(' args                 a call
//         | IDENT '[' exprs ']'            a captured tensor (score_mod)
//         | IDENT
static attn_ast *primary(parser *p) {
  attn_token *tok = p->tok;
  attn_ast *node;
  switch (tok->kind) {
  case ATTN_TOKEN_INT:
    if ((node = new_node(p, ATTN_AST_INT, tok)))
      node->int_value = tok->int_value;
    p->tok = tok->next;
    return node;
  case ATTN_TOKEN_FLOAT:
    if ((node = new_node(p, ATTN_AST_FLOAT, tok)))
      node->float_value = tok->float_value;
    p->tok = tok->next;
    return node;
  case ATTN_TOKEN_STRING:
    if ((node = new_node(p, ATTN_AST_STRING, tok))) {
      node->text = tok->string;
      node->text_length = tok->string_length;
    }
    p->tok = tok->next;
    return node;
  case ATTN_TOKEN_KEYWORD:
    if (attn_token_is(tok, "true") || attn_token_is(tok, "false")) {
      if ((node = new_node(p, ATTN_AST_BOOL, tok)))
        node->int_value = attn_token_is(tok, "true");
      p->tok = tok->next;
      return node;
    }
    if (attn_token_is(tok, "config"))
      return config_key(p);
    return expected(p, "an expression", "");
  case ATTN_TOKEN_PUNCT:
    if (consume(p, "(")) {
      node = expr(p);
      if (node && !expect(p, ")", "to close '('"))
        return NULL;
      return node;
    }
    if (consume(p, "[")) {
      node = new_node(p, ATTN_AST_LIST, tok);
      if (!node || !expr_list(p, "]", "between list items", &node->args, &node->arg_count))
        return NULL;
      return node;
    }
    if (consume(p, "{")) {
      node = new_node(p, ATTN_AST_BLOCK, tok);
      if (!node || !(node->lhs = expr(p)) || !expect(p, "}", "to close the '{ ... }' expression"))
        return NULL;
      return node;
    }
    return expected(p, "an expression", "");
  case ATTN_TOKEN_IDENT:
    break;
  default:
    return expected(p, "an expression", "");
  }

  if (is_dtype_name(tok) && attn_token_is(tok->next, "[")) {
    node = new_node(p, ATTN_AST_TYPE, tok);
    if (!node)
      return NULL;
    (void)attn_dtype_from_name(tok->text, tok->length, &node->dtype);
    p->tok = tok->next->next;
    if (!expr_list(p, "]", "between dims", &node->args, &node->arg_count))
      return NULL;
    if (node->arg_count > ATTN_MAX_RANK)
      return fail_at(p, tok->loc, "a type has at most %d dims", ATTN_MAX_RANK);
    return node;
  }
  attn_ast_kind kind = attn_token_is(tok->next, "(")   ? ATTN_AST_CALL
                       : attn_token_is(tok->next, "[") ? ATTN_AST_INDEX
                                                       : ATTN_AST_NAME;
  node = new_node(p, kind, tok);
  if (!node || !(node->name = token_name(p, tok)))
    return NULL;
  p->tok = tok->next;
  if (kind == ATTN_AST_CALL) {
    p->tok = p->tok->next;
    return call_args(p, node);
  }
  if (kind == ATTN_AST_INDEX) {
    p->tok = p->tok->next;
    if (!expr_list(p, "]", "between subscripts", &node->args, &node->arg_count))
      return NULL;
    if (node->arg_count == 0 || node->arg_count > ATTN_MAX_RANK)
      return fail_at(p, tok->loc, "'%s[...]' needs 1 to %d subscripts", node->name, ATTN_MAX_RANK);
  }
  return node;
}

// postfix = primary ('@' primary)?      a weight-name prefix for a subgraph call
static attn_ast *postfix(parser *p) {
  attn_ast *node = primary(p);
  if (!node || !equal(p, "@"))
    return node;
  if (node->kind != ATTN_AST_CALL)
    return fail_at(p, p->tok->loc, "a weight-name prefix '@' must follow a subgraph call");
  p->tok = p->tok->next;
  node->prefix = primary(p);
  return node->prefix ? node : NULL;
}

// unary = '-' unary | postfix
static attn_ast *unary(parser *p) {
  const attn_token *tok = p->tok;
  if (!consume(p, "-"))
    return postfix(p);
  attn_ast *node = new_node(p, ATTN_AST_NEG, tok);
  if (!node || !enter(p))
    return NULL;
  node->lhs = unary(p);
  p->depth--;
  return node->lhs ? node : NULL;
}

static attn_ast *binary(parser *p, const attn_token *tok, attn_ast_op op, attn_ast *lhs,
                        attn_ast *rhs) {
  if (!lhs || !rhs)
    return NULL;
  attn_ast *node = new_node(p, ATTN_AST_BINARY, tok);
  if (!node)
    return NULL;
  node->op = op;
  node->lhs = lhs;
  node->rhs = rhs;
  return node;
}

// term = unary (('*' | '/' | '%') unary)*
static attn_ast *term(parser *p) {
  attn_ast *node = unary(p);
  while (node) {
    const attn_token *tok = p->tok;
    if (consume(p, "*"))
      node = binary(p, tok, ATTN_AST_MUL, node, unary(p));
    else if (consume(p, "/"))
      node = binary(p, tok, ATTN_AST_DIV, node, unary(p));
    else if (consume(p, "%"))
      node = binary(p, tok, ATTN_AST_MOD, node, unary(p));
    else
      break;
  }
  return node;
}

// additive = term (('+' | '-') term)*
static attn_ast *additive(parser *p) {
  attn_ast *node = term(p);
  while (node) {
    const attn_token *tok = p->tok;
    if (consume(p, "+"))
      node = binary(p, tok, ATTN_AST_ADD, node, term(p));
    else if (consume(p, "-"))
      node = binary(p, tok, ATTN_AST_SUB, node, term(p));
    else
      break;
  }
  return node;
}

// compare = additive (('<' | '<=' | '>' | '>=' | '==' | '!=') additive)?
static attn_ast *compare(parser *p) {
  static const attn_ast_op ops[] = {ATTN_AST_LT, ATTN_AST_LE, ATTN_AST_GT,
                                    ATTN_AST_GE, ATTN_AST_EQ, ATTN_AST_NE};
  attn_ast *node = additive(p);
  for (size_t i = 0; node && i < sizeof(ops) / sizeof(ops[0]); i++) {
    const attn_token *tok = p->tok;
    if (consume(p, attn_ast_op_text(ops[i]))) {
      node = binary(p, tok, ops[i], node, additive(p));
      for (size_t j = 0; node && j < sizeof(ops) / sizeof(ops[0]); j++)
        if (equal(p, attn_ast_op_text(ops[j])))
          return fail_at(p, p->tok->loc, "comparisons do not chain; use parentheses");
      break;
    }
  }
  return node;
}

// alt = compare ('|' compare)*           "lm_head.weight" | "wte.weight"
static attn_ast *alt(parser *p) {
  attn_ast *node = compare(p);
  while (node && equal(p, "|")) {
    attn_ast *alternative = new_node(p, ATTN_AST_ALT, p->tok);
    p->tok = p->tok->next;
    if (!alternative)
      return NULL;
    alternative->lhs = node;
    alternative->rhs = compare(p);
    node = alternative->rhs ? alternative : NULL;
  }
  return node;
}

// coalesce = alt ('??' coalesce)?        right-associative: a ?? b ?? c
static attn_ast *coalesce(parser *p) {
  attn_ast *node = alt(p);
  if (!node || !equal(p, "??"))
    return node;
  attn_ast *c = new_node(p, ATTN_AST_COALESCE, p->tok);
  p->tok = p->tok->next;
  if (!c || !enter(p))
    return NULL;
  c->lhs = node;
  c->rhs = coalesce(p);
  p->depth--;
  return c->rhs ? c : NULL;
}

// expr = coalesce ('?' expr ':' expr)?
static attn_ast *expr(parser *p) {
  if (!enter(p))
    return NULL;
  attn_ast *node = coalesce(p);
  if (node && equal(p, "?")) {
    attn_ast *select = new_node(p, ATTN_AST_SELECT, p->tok);
    p->tok = p->tok->next;
    if (!select)
      return NULL;
    select->cond = node;
    node = NULL;
    if ((select->lhs = expr(p)) && expect(p, ":", "in 'condition ? a : b'") &&
        (select->rhs = expr(p)))
      node = select;
  }
  p->depth--;
  return node;
}

// ---- statements ----------------------------------------------------------------------------

typedef enum body_kind { BODY_DEF, BODY_GRAPH, BODY_REPEAT } body_kind;

static bool body(parser *p, body_kind kind, attn_ast **out_stmts);

// stmt = 'let' IDENT '=' expr
//      | 'repeat' IDENT 'in' expr '..' expr body
//      | 'return' expr (',' expr)*
//      | IDENT (',' IDENT)* '=' expr
static attn_ast *stmt(parser *p) {
  attn_token *tok = p->tok;
  attn_ast *node;
  if (consume(p, "let")) {
    if (!(node = new_node(p, ATTN_AST_LET, tok)) ||
        !(node->name = expect_ident(p, "a name", "after 'let'")) ||
        !expect(p, "=", "after the name in 'let'") || !(node->lhs = expr(p)))
      return NULL;
    return node;
  }
  if (consume(p, "repeat")) {
    if (!(node = new_node(p, ATTN_AST_REPEAT, tok)) ||
        !(node->name = expect_ident(p, "a loop variable", "after 'repeat'")) ||
        !expect(p, "in", "after the loop variable (repeat i in LO..HI)") ||
        !(node->lhs = expr(p)) || !expect(p, "..", "in the range LO..HI") ||
        !(node->rhs = expr(p)) || !body(p, BODY_REPEAT, &node->body))
      return NULL;
    return node;
  }
  if (consume(p, "return")) {
    if (!(node = new_node(p, ATTN_AST_RETURN, tok)))
      return NULL;
    attn_ast head = {0}, *tail = &head;
    do {
      if (!(tail = tail->next = expr(p)))
        return NULL;
      node->arg_count++;
    } while (consume(p, ","));
    node->args = head.next;
    return node;
  }
  if (tok->kind != ATTN_TOKEN_IDENT)
    return expected(p, "a statement (NAME = ..., let, repeat or return)", "");
  if (attn_token_is(tok->next, "("))
    return fail_at(p, tok->loc, "the result of '%.*s(...)' must be bound: NAME = %.*s(...)",
                   (int)tok->length, tok->text, (int)tok->length, tok->text);
  if (!(node = new_node(p, ATTN_AST_ASSIGN, tok)))
    return NULL;
  attn_ast head = {0}, *tail = &head;
  do {
    const attn_token *name_tok = p->tok;
    attn_ast *name = new_node(p, ATTN_AST_NAME, name_tok);
    if (!name || !(name->name = expect_ident(p, "a name", node->arg_count ? "after ','" : "")))
      return NULL;
    for (attn_ast *n = head.next; n; n = n->next)
      if (strcmp(n->name, name->name) == 0)
        return fail_at(p, name_tok->loc, "'%s' appears twice on the left of '='", name->name);
    tail = tail->next = name;
    node->arg_count++;
  } while (consume(p, ","));
  node->args = head.next;
  if (!expect(p, "=", node->arg_count > 1 ? "after the names" : "after the name") ||
      !(node->lhs = expr(p)))
    return NULL;
  return node;
}

// body = '{' stmt* '}'
// A def or graph body ends with its one 'return'; a repeat body has none.
static bool body(parser *p, body_kind kind, attn_ast **out_stmts) {
  if (!expect(p, "{", kind == BODY_REPEAT ? "before the loop body" : "before the body") ||
      !enter(p))
    return false;
  attn_ast head = {0}, *tail = &head;
  while (!equal(p, "}")) {
    if (tail->kind == ATTN_AST_RETURN && tail != &head) {
      fail_at(p, p->tok->loc, "'return' must be the last statement of a body");
      return false;
    }
    if (p->tok->kind == ATTN_TOKEN_EOF) {
      expected(p, "'}'", "to close the body");
      return false;
    }
    attn_ast *s = stmt(p);
    if (!s)
      return false;
    if (s->kind == ATTN_AST_RETURN && kind == BODY_REPEAT) {
      fail_at(p, s->loc, "'return' cannot be inside 'repeat'");
      return false;
    }
    tail = tail->next = s;
  }
  if (kind != BODY_REPEAT && (tail == &head || tail->kind != ATTN_AST_RETURN)) {
    fail_at(p, p->tok->loc, "a %s body must end with 'return'",
            kind == BODY_DEF ? "subgraph" : "graph");
    return false;
  }
  p->tok = p->tok->next;
  p->depth--;
  *out_stmts = head.next;
  return true;
}

// ---- file ----------------------------------------------------------------------------------

// params = (param (',' param)*)? ')'
// param  = IDENT                  (def)
//        | IDENT ':' DTYPE '[' exprs ']'     (graph)
static bool params(parser *p, bool is_typed, attn_ast **out_list, uint32_t *out_count) {
  attn_ast head = {0}, *tail = &head;
  uint32_t count = 0;
  while (!consume(p, ")")) {
    if (count > 0 && !expect(p, ",", "between parameters"))
      return false;
    if (count > 0 && consume(p, ")"))
      break; // a trailing comma
    const attn_token *tok = p->tok;
    attn_ast *param = new_node(p, ATTN_AST_PARAM, tok);
    if (!param || !(param->name = expect_ident(p, "a parameter name", "")))
      return false;
    for (attn_ast *q = head.next; q; q = q->next)
      if (strcmp(q->name, param->name) == 0) {
        fail_at(p, tok->loc, "'%s' appears twice", param->name);
        return false;
      }
    if (is_typed) {
      char context[96];
      snprintf(context, sizeof(context), "after '%s'", param->name);
      if (!expect(p, ":", context))
        return false;
      if (!is_dtype_name(p->tok) || !attn_token_is(p->tok->next, "[")) {
        snprintf(context, sizeof(context), "after '%s:'", param->name);
        expected(p, "a tensor type such as f32[B, T]", context);
        return false;
      }
      if (!(param->lhs = primary(p)))
        return false;
    }
    tail = tail->next = param;
    count++;
  }
  *out_list = head.next;
  *out_count = count;
  return true;
}

// def = 'def' IDENT '(' params body
static attn_ast *def_item(parser *p) {
  attn_ast *node = new_node(p, ATTN_AST_DEF, p->tok);
  p->tok = p->tok->next;
  if (!node || !(node->name = expect_ident(p, "a subgraph name", "after 'def'")) ||
      !expect(p, "(", "after the subgraph name") ||
      !params(p, false, &node->args, &node->arg_count) || !body(p, BODY_DEF, &node->body))
    return NULL;
  return node;
}

// graph = 'graph' IDENT '(' params '->' '(' params body
static attn_ast *graph_item(parser *p) {
  attn_ast *node = new_node(p, ATTN_AST_GRAPH, p->tok);
  p->tok = p->tok->next;
  if (!node || !(node->name = expect_ident(p, "a graph name", "after 'graph'")) ||
      !expect(p, "(", "after the graph name") || !params(p, true, &node->args, &node->arg_count) ||
      !expect(p, "->", "after the inputs (graph NAME(INPUTS) -> (OUTPUTS))") ||
      !expect(p, "(", "before the outputs") ||
      !params(p, true, &node->outputs, &node->output_count))
    return NULL;
  if (node->output_count == 0)
    return fail_at(p, node->loc, "graph '%s' declares no outputs", node->name);
  if (!body(p, BODY_GRAPH, &node->body))
    return NULL;
  return node;
}

// file = (stmt_let | def | graph)* EOF     with exactly one graph
static attn_ast *file_items(parser *p) {
  attn_ast head = {0}, *tail = &head;
  const attn_ast *the_graph = NULL;
  while (p->tok->kind != ATTN_TOKEN_EOF) {
    attn_ast *item;
    if (equal(p, "let")) {
      item = stmt(p);
    } else if (equal(p, "def")) {
      item = def_item(p);
      for (const attn_ast *d = head.next; item && d; d = d->next)
        if (d->kind == ATTN_AST_DEF && strcmp(d->name, item->name) == 0)
          return fail_at(p, item->loc, "subgraph '%s' is already defined at %u:%u", item->name,
                         d->loc.line, d->loc.col);
    } else if (equal(p, "graph")) {
      item = graph_item(p);
      if (item && the_graph)
        return fail_at(p, item->loc, "a file holds one graph; '%s' is already defined at %u:%u",
                       the_graph->name, the_graph->loc.line, the_graph->loc.col);
      the_graph = item;
    } else {
      return expected(p, "'let', 'def' or 'graph'", "at file level");
    }
    if (!item)
      return NULL;
    tail = tail->next = item;
  }
  if (!the_graph)
    return fail_at(p, p->tok->loc,
                   "no 'graph' in the file (graph NAME(INPUTS) -> (OUTPUTS) { ... })");
  return head.next;
}

// ---- entry points --------------------------------------------------------------------------

attn_status attn_parse_text(const char *file_name, const char *text, size_t length,
                            const attn_parse_options *options, attn_allocator allocator,
                            attn_diag *diag, attn_graph **out_graph) {
  *out_graph = NULL;
  attn_parse_options defaults = {0};
  if (!options)
    options = &defaults;
  if (!file_name)
    file_name = "<input>";
  if (length > MAX_TEXT_BYTES)
    return attn_diag_error(diag, (attn_loc){file_name, 0, 0}, ATTN_ERROR_PARSE,
                           "the file is larger than %d bytes", MAX_TEXT_BYTES);
  attn_diag_add_source(diag, file_name, text, length);

  attn_graph *graph;
  if (attn_graph_create(allocator, diag, "main", &graph) != ATTN_OK)
    return attn_diag_error(diag, (attn_loc){file_name, 0, 0}, ATTN_ERROR_OUT_OF_MEMORY,
                           "out of memory");
  attn_arena scratch;
  attn_arena_init(&scratch, allocator);
  // Locations point at this copy, which lives as long as the graph.
  const char *file = attn_graph_strdup(graph, file_name, strlen(file_name));
  attn_token *tokens = NULL;
  attn_status status = file ? ATTN_OK
                            : attn_diag_error(diag, (attn_loc){file_name, 0, 0},
                                              ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
  if (status == ATTN_OK)
    status = attn_lex(file, text, length, &scratch, diag, &tokens);
  attn_ast *items = NULL;
  if (status == ATTN_OK) {
    parser p = {tokens, &scratch, diag, ATTN_OK, 0};
    items = file_items(&p);
    status = p.status;
  }
  if (status == ATTN_OK)
    status = attn_expand(items, options, graph, &scratch);
  if (status == ATTN_OK)
    status = attn_graph_verify(graph);
  attn_arena_deinit(&scratch);
  if (status != ATTN_OK) {
    attn_graph_destroy(graph);
    return status;
  }
  *out_graph = graph;
  return ATTN_OK;
}

attn_status attn_parse_file(const char *path, const attn_parse_options *options,
                            attn_allocator allocator, attn_diag *diag, attn_graph **out_graph) {
  *out_graph = NULL;
  attn_loc loc = {path, 0, 0};
  FILE *f = fopen(path, "rb");
  if (!f)
    return attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot open: %s", strerror(errno));
  char *text = NULL;
  size_t length = 0, capacity = 0;
  attn_status status = ATTN_OK;
  for (;;) {
    if (length == capacity) {
      size_t new_capacity = capacity ? capacity * 2 : 1 << 16;
      if (new_capacity > (size_t)MAX_TEXT_BYTES + 1) {
        status = attn_diag_error(diag, loc, ATTN_ERROR_PARSE, "the file is larger than %d bytes",
                                 MAX_TEXT_BYTES);
        break;
      }
      char *grown = attn_allocator_realloc(allocator, text, capacity, new_capacity);
      if (!grown) {
        status = attn_diag_error(diag, loc, ATTN_ERROR_OUT_OF_MEMORY, "out of memory");
        break;
      }
      text = grown;
      capacity = new_capacity;
    }
    size_t n = fread(text + length, 1, capacity - length, f);
    length += n;
    if (n == 0) {
      if (ferror(f))
        status = attn_diag_error(diag, loc, ATTN_ERROR_IO, "cannot read: %s", strerror(errno));
      break;
    }
  }
  fclose(f);
  if (status == ATTN_OK)
    status = attn_parse_text(path, text, length, options, allocator, diag, out_graph);
  attn_allocator_free(allocator, text, capacity);
  return status;
}
