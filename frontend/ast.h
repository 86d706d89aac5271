// The syntax tree of a .attn file, built by parse.c and expanded into a graph by expand.c.
// One node type serves every construct (chibicc's fat Node): `kind` says which fields are
// used. Lists are chained through `next`. Everything lives in the parse's scratch arena.
#ifndef ATTN_FRONTEND_AST_H_
#define ATTN_FRONTEND_AST_H_

#include <stdint.h>

#include "attn/runtime.h"
#include "runtime/base/diag.h"

typedef enum attn_ast_kind {
  // expressions
  ATTN_AST_INT,      // int_value
  ATTN_AST_FLOAT,    // float_value
  ATTN_AST_BOOL,     // int_value: 0 or 1
  ATTN_AST_STRING,   // text, text_length: escapes resolved, {name} not yet interpolated
  ATTN_AST_NAME,     // name
  ATTN_AST_CONFIG,   // name: the dotted key after "config."
  ATTN_AST_NEG,      // -lhs
  ATTN_AST_BINARY,   // lhs op rhs
  ATTN_AST_COALESCE, // lhs ?? rhs
  ATTN_AST_SELECT,   // cond ? lhs : rhs
  ATTN_AST_ALT,      // lhs | rhs: alternative weight names
  ATTN_AST_LIST,     // [args]
  ATTN_AST_TYPE,     // dtype[args]
  ATTN_AST_CALL,     // name(args, kwargs) with an optional `@ prefix`
  ATTN_AST_INDEX,    // name[args]: a captured tensor inside a score_mod block
  ATTN_AST_BLOCK,    // { lhs }: a score_mod expression
  ATTN_AST_KWARG,    // name = lhs, in a call's kwargs
  ATTN_AST_PARAM,    // name, or name: lhs (a TYPE) in a graph signature
  // statements
  ATTN_AST_LET,    // let name = lhs
  ATTN_AST_ASSIGN, // args (NAMEs) = lhs
  ATTN_AST_REPEAT, // repeat name in lhs..rhs { body }
  ATTN_AST_RETURN, // return args
  // file items
  ATTN_AST_DEF,   // def name(args: PARAMs) { body }
  ATTN_AST_GRAPH, // graph name(args: PARAMs) -> (outputs: PARAMs) { body }
} attn_ast_kind;

typedef enum attn_ast_op {
  ATTN_AST_ADD,
  ATTN_AST_SUB,
  ATTN_AST_MUL,
  ATTN_AST_DIV,
  ATTN_AST_MOD,
  ATTN_AST_LT,
  ATTN_AST_LE,
  ATTN_AST_GT,
  ATTN_AST_GE,
  ATTN_AST_EQ,
  ATTN_AST_NE,
} attn_ast_op;

typedef struct attn_ast attn_ast;
struct attn_ast {
  attn_ast_kind kind;
  attn_loc loc;
  attn_ast *next;
  const char *name;
  int64_t int_value;
  double float_value;
  const char *text;
  uint32_t text_length;
  attn_ast_op op;
  attn_dtype dtype;
  attn_ast *cond, *lhs, *rhs;
  attn_ast *args;
  uint32_t arg_count;
  attn_ast *kwargs;
  attn_ast *prefix; // CALL: the expression after '@', or NULL
  attn_ast *outputs;
  uint32_t output_count;
  attn_ast *body;
};

// Text of a binary operator: "+", "<=", ...
const char *attn_ast_op_text(attn_ast_op op);

#endif // ATTN_FRONTEND_AST_H_
