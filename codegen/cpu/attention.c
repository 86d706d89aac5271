// The attention kernel generator: builds, with the LLVM IRBuilder, one function per
// attn_attention_spec (arguments and semantics in attention.h). A work item is a block of
// BLOCK_ROWS query rows of one head (and, for decode, one chunk of keys). Everything runs
// "transposed", with vectors along query rows, so the online softmax needs no horizontal
// reduction:
//   Qᵀ [D][rows], packed once per item and pre-scaled by scale * log2(e) (so exp becomes exp2);
//   for each block of BLOCK_KEYS keys:
//     Sᵀ [keys][rows] = K · Qᵀ, register tiles of KEY_TILE keys x ROW_VECTORS vectors, k elements
//                       broadcast straight from the k rows (no packing); a score mod is applied
//                       to the tiles in registers (Qᵀ then carries scale alone and the mod's
//                       result is multiplied by log2(e));
//     the mask, only on blocks that are not entirely visible; blocks entirely masked are skipped;
//     per row vector: new max, P = 2^(S - max) in place, the running sum and the rescale factor;
//     Oᵀ [Dv][rows] = Oᵀ * rescale + V · Pᵀ, register tiles of VALUE_TILE value rows x
//                       ROW_VECTORS vectors, v elements broadcast from the v rows;
//   then O = Oᵀ / sum, transposed into out, and lse = ln 2 (max + log2(sum)).
// exp2, log and the score mods' exp, log, tanh and pow are vector polynomials (no libm calls).
// All scratch is on the stack.
#include "codegen/cpu/attention.h"

#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

enum {
  ROW_VECTORS = 3, // vectors of query rows in a register tile
  ROW_TILES = 2,   // register tiles side by side in a work item's rows
  KEY_TILE = 4,    // keys of a score register tile
  VALUE_TILE = 4,  // value channels of an output register tile
  BLOCK_KEYS = ATTN_CPU_ATTENTION_BLOCK_KEYS,
};

#define LOG2E 1.44269504088896340736
#define LN2   0.69314718055994530942

attn_cpu_attention_launch_spec attn_attention_spec_launch(const attn_attention_spec *spec) {
  attn_cpu_attention_launch_spec launch = {
      .value_dim = spec->value_dim,
      .norm = spec->norm,
      .lse = spec->lse,
      .dtype = spec->dtype,
      .vector_width = spec->vector_width,
      .capture_count = spec->score_mod ? spec->capture_count : 0,
  };
  for (uint32_t c = 0; c < launch.capture_count && c < ATTN_CPU_ATTENTION_MAX_CAPTURES; c++)
    launch.capture_ranks[c] = spec->captures[c].rank;
  return launch;
}

// FNV-1a, one byte at a time.
static void hash_byte(uint64_t *hash, uint8_t byte) {
  *hash ^= byte;
  *hash *= UINT64_C(0x100000001b3);
}

static void hash_bytes(uint64_t *hash, uint64_t value, int count) {
  for (int i = 0; i < count; i++)
    hash_byte(hash, (uint8_t)(value >> (8 * i)));
}

enum { MAX_EXPR_DEPTH = 64 };

// The expression's structure in prefix order, as attention.h lays it out.
static void hash_expr(uint64_t *hash, const attn_expr *e, int depth) {
  if (!e || depth > MAX_EXPR_DEPTH) {
    hash_byte(hash, 0xff);
    return;
  }
  hash_byte(hash, (uint8_t)e->kind);
  switch (e->kind) {
  case ATTN_EXPR_NUMBER: {
    uint64_t bits;
    memcpy(&bits, &e->number, sizeof(bits));
    hash_bytes(hash, bits, 8);
    break;
  }
  case ATTN_EXPR_VAR:
    hash_byte(hash, (uint8_t)e->var);
    break;
  case ATTN_EXPR_CAPTURE:
    hash_byte(hash, (uint8_t)e->capture);
    hash_byte(hash, (uint8_t)e->arg_count);
    break;
  case ATTN_EXPR_UNARY:
  case ATTN_EXPR_BINARY:
    hash_byte(hash, (uint8_t)e->fn);
    hash_byte(hash, (uint8_t)e->arg_count);
    break;
  case ATTN_EXPR_SELECT:
    hash_byte(hash, (uint8_t)e->arg_count);
    break;
  }
  if (e->kind < ATTN_EXPR_CAPTURE || e->kind > ATTN_EXPR_SELECT)
    return; // no arguments (or an unknown kind, which generation rejects)
  for (uint32_t i = 0; i < e->arg_count && i < ATTN_EXPR_MAX_ARGS; i++)
    hash_expr(hash, e->args[i], depth + 1);
}

uint64_t attn_attention_spec_hash(const attn_attention_spec *spec) {
  uint64_t hash = UINT64_C(0xcbf29ce484222325);
  hash_bytes(&hash, 'a' | 't' << 8 | 't' << 16 | (uint64_t)'n' << 24, 4);
  hash_byte(&hash, 2); // layout version: bump when the kernel's arguments or semantics change
  hash_bytes(&hash, (uint32_t)spec->head_dim, 4);
  hash_bytes(&hash, (uint32_t)spec->value_dim, 4);
  hash_byte(&hash, (uint8_t)spec->mask);
  hash_byte(&hash, (uint8_t)spec->mask_tensor);
  hash_byte(&hash, (uint8_t)spec->norm);
  hash_byte(&hash, (uint8_t)spec->lse);
  hash_byte(&hash, (uint8_t)spec->dtype);
  hash_byte(&hash, (uint8_t)spec->vector_width);
  hash_byte(&hash, spec->score_mod != NULL);
  if (spec->score_mod) {
    hash_byte(&hash, (uint8_t)spec->capture_count);
    for (uint32_t c = 0; c < spec->capture_count && c < ATTN_CPU_ATTENTION_MAX_CAPTURES; c++) {
      hash_byte(&hash, (uint8_t)spec->captures[c].dtype);
      hash_byte(&hash, (uint8_t)spec->captures[c].rank);
    }
    hash_expr(&hash, spec->score_mod, 0);
  }
  return hash;
}

// The state of one generation.
typedef struct attn_gen {
  const attn_attention_spec *spec;
  LLVMContextRef context;
  LLVMModuleRef module;
  LLVMBuilderRef builder;
  LLVMValueRef function;
  int lanes;
  int64_t d, dv, rows; // head dim, value dim, query rows per item
  LLVMTypeRef f32, f64, i1, i8, i16, i32, i64, ptr, element;
  LLVMTypeRef vf32, vi1, vi8, vi32, vi64; // vectors of `lanes`
} attn_gen;

// ---- small IR helpers -----------------------------------------------------------------------

static LLVMValueRef i64c(attn_gen *g, int64_t value) {
  return LLVMConstInt(g->i64, (unsigned long long)value, 1);
}

static LLVMValueRef splat_constant(attn_gen *g, LLVMValueRef scalar) {
  LLVMValueRef elements[16];
  for (int i = 0; i < g->lanes; i++)
    elements[i] = scalar;
  return LLVMConstVector(elements, (unsigned)g->lanes);
}

static LLVMValueRef f32_splat(attn_gen *g, double value) {
  return splat_constant(g, LLVMConstReal(g->f32, value));
}

static LLVMValueRef i32_splat(attn_gen *g, int32_t value) {
  return splat_constant(g, LLVMConstInt(g->i32, (unsigned long long)(int64_t)value, 1));
}

// <0, 1, ..., lanes-1> as i64.
static LLVMValueRef lane_indices(attn_gen *g) {
  LLVMValueRef elements[16];
  for (int i = 0; i < g->lanes; i++)
    elements[i] = i64c(g, i);
  return LLVMConstVector(elements, (unsigned)g->lanes);
}

static LLVMValueRef splat(attn_gen *g, LLVMValueRef scalar, LLVMTypeRef vector_type) {
  LLVMValueRef one = LLVMBuildInsertElement(g->builder, LLVMGetPoison(vector_type), scalar,
                                            LLVMConstInt(g->i32, 0, 0), "");
  LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(g->i32, (unsigned)g->lanes));
  return LLVMBuildShuffleVector(g->builder, one, LLVMGetPoison(vector_type), zeros, "");
}

static LLVMValueRef call_intrinsic(attn_gen *g, const char *name, LLVMTypeRef *overloads,
                                   size_t overload_count, LLVMValueRef *args, unsigned arg_count) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef declaration = LLVMGetIntrinsicDeclaration(g->module, id, overloads, overload_count);
  LLVMTypeRef type = LLVMIntrinsicGetType(g->context, id, overloads, overload_count);
  return LLVMBuildCall2(g->builder, type, declaration, args, arg_count, "");
}

static LLVMValueRef fma_vector(attn_gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[] = {a, b, c};
  return call_intrinsic(g, "llvm.fma", &g->vf32, 1, args, 3);
}

static LLVMValueRef vmul(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFMul(g->builder, a, b, "");
}

static LLVMValueRef vadd(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFAdd(g->builder, a, b, "");
}

static LLVMValueRef vsub(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFSub(g->builder, a, b, "");
}

static LLVMValueRef add(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWAdd(g->builder, a, b, "");
}

static LLVMValueRef sub(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWSub(g->builder, a, b, "");
}

static LLVMValueRef mul(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWMul(g->builder, a, b, "");
}

static LLVMValueRef icmp(attn_gen *g, LLVMIntPredicate predicate, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildICmp(g->builder, predicate, a, b, "");
}

static LLVMValueRef smin(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(g->builder, icmp(g, LLVMIntSLT, a, b), a, b, "");
}

static LLVMValueRef pick(attn_gen *g, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildSelect(g->builder, c, a, b, "");
}

// max(a, b) as a > b ? a : b, which is one vmaxps.
static LLVMValueRef fmax_vector(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return pick(g, LLVMBuildFCmp(g->builder, LLVMRealOGT, a, b, ""), a, b);
}

static LLVMValueRef at(attn_gen *g, LLVMTypeRef type, LLVMValueRef base, LLVMValueRef index) {
  return LLVMBuildGEP2(g->builder, type, base, &index, 1, "");
}

static LLVMValueRef load_vector(attn_gen *g, LLVMValueRef base, LLVMValueRef index,
                                unsigned alignment) {
  LLVMValueRef load = LLVMBuildLoad2(g->builder, g->vf32, at(g, g->f32, base, index), "");
  LLVMSetAlignment(load, alignment);
  return load;
}

static void store_vector(attn_gen *g, LLVMValueRef value, LLVMValueRef base, LLVMValueRef index,
                         unsigned alignment) {
  LLVMValueRef store = LLVMBuildStore(g->builder, value, at(g, g->f32, base, index));
  LLVMSetAlignment(store, alignment);
}

static LLVMValueRef load_f32(attn_gen *g, LLVMValueRef base, LLVMValueRef index) {
  return LLVMBuildLoad2(g->builder, g->f32, at(g, g->f32, base, index), "");
}

static void store_f32(attn_gen *g, LLVMValueRef value, LLVMValueRef base, LLVMValueRef index) {
  LLVMBuildStore(g->builder, value, at(g, g->f32, base, index));
}

// Element `index` of a q, k or v tensor of the spec's dtype, as f32. bf16 is the top half of an
// f32, so the conversion is a shift.
static LLVMValueRef load_element(attn_gen *g, LLVMValueRef base, LLVMValueRef index) {
  LLVMValueRef value = LLVMBuildLoad2(g->builder, g->element, at(g, g->element, base, index), "");
  if (g->spec->dtype == ATTN_CPU_ATTENTION_F32)
    return value;
  LLVMValueRef wide = LLVMBuildZExt(g->builder, value, g->i32, "");
  wide = LLVMBuildShl(g->builder, wide, LLVMConstInt(g->i32, 16, 0), "");
  return LLVMBuildBitCast(g->builder, wide, g->f32, "");
}

// Stores an f32 as an element of out: as is, or rounded to bf16 to nearest even (NaN stays a
// quiet NaN).
static void store_element(attn_gen *g, LLVMValueRef value, LLVMValueRef base, LLVMValueRef index) {
  if (g->spec->dtype == ATTN_CPU_ATTENTION_F32) {
    store_f32(g, value, base, index);
    return;
  }
  LLVMValueRef bits = LLVMBuildBitCast(g->builder, value, g->i32, "");
  LLVMValueRef odd =
      LLVMBuildAnd(g->builder, LLVMBuildLShr(g->builder, bits, LLVMConstInt(g->i32, 16, 0), ""),
                   LLVMConstInt(g->i32, 1, 0), "");
  LLVMValueRef rounded = LLVMBuildAdd(
      g->builder, bits, LLVMBuildAdd(g->builder, odd, LLVMConstInt(g->i32, 0x7fff, 0), ""), "");
  rounded = LLVMBuildTrunc(
      g->builder, LLVMBuildLShr(g->builder, rounded, LLVMConstInt(g->i32, 16, 0), ""), g->i16, "");
  LLVMValueRef nan = LLVMBuildFCmp(g->builder, LLVMRealUNO, value, value, "");
  rounded = pick(g, nan, LLVMConstInt(g->i16, 0x7fc0, 0), rounded);
  LLVMBuildStore(g->builder, rounded, at(g, g->i16, base, index));
}

// A counted loop `for (iv = begin; iv < end; iv += step)`, as in gemm.c. loop_begin leaves the
// builder in the body; loop_end closes it and leaves the builder after the loop.
typedef struct counted_loop {
  LLVMBasicBlockRef header, body, exit;
  LLVMValueRef iv;
} counted_loop;

static counted_loop loop_begin(attn_gen *g, LLVMValueRef begin, LLVMValueRef end,
                               const char *name) {
  counted_loop loop;
  LLVMBasicBlockRef preheader = LLVMGetInsertBlock(g->builder);
  char label[64];
  snprintf(label, sizeof(label), "%s.header", name);
  loop.header = LLVMAppendBasicBlockInContext(g->context, g->function, label);
  snprintf(label, sizeof(label), "%s.body", name);
  loop.body = LLVMAppendBasicBlockInContext(g->context, g->function, label);
  snprintf(label, sizeof(label), "%s.exit", name);
  loop.exit = LLVMAppendBasicBlockInContext(g->context, g->function, label);
  LLVMBuildBr(g->builder, loop.header);
  LLVMPositionBuilderAtEnd(g->builder, loop.header);
  loop.iv = LLVMBuildPhi(g->builder, g->i64, name);
  LLVMAddIncoming(loop.iv, &begin, &preheader, 1);
  LLVMBuildCondBr(g->builder, icmp(g, LLVMIntSLT, loop.iv, end), loop.body, loop.exit);
  LLVMPositionBuilderAtEnd(g->builder, loop.body);
  return loop;
}

// A value carried around the loop, `initial` on entry. Call right after loop_begin.
static LLVMValueRef loop_carried(attn_gen *g, counted_loop *loop, LLVMValueRef initial) {
  LLVMBasicBlockRef body_position = LLVMGetInsertBlock(g->builder);
  LLVMPositionBuilderBefore(g->builder, LLVMGetFirstInstruction(loop->header));
  LLVMValueRef phi = LLVMBuildPhi(g->builder, LLVMTypeOf(initial), "");
  LLVMBasicBlockRef preheader = LLVMGetIncomingBlock(loop->iv, 0);
  LLVMAddIncoming(phi, &initial, &preheader, 1);
  LLVMPositionBuilderAtEnd(g->builder, body_position);
  return phi;
}

static void loop_end(attn_gen *g, counted_loop *loop, int64_t step, LLVMValueRef *carried,
                     LLVMValueRef *carried_next, size_t carried_count) {
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->builder);
  LLVMValueRef next = add(g, loop->iv, i64c(g, step));
  LLVMAddIncoming(loop->iv, &next, &latch, 1);
  for (size_t i = 0; i < carried_count; i++)
    LLVMAddIncoming(carried[i], &carried_next[i], &latch, 1);
  LLVMBuildBr(g->builder, loop->header);
  LLVMPositionBuilderAtEnd(g->builder, loop->exit);
}

static LLVMBasicBlockRef new_block(attn_gen *g, const char *name) {
  return LLVMAppendBasicBlockInContext(g->context, g->function, name);
}

// ---- vector exp2 and log --------------------------------------------------------------------

// 2^x for a vector: n = round(x), r = x - n in [-1/2, 1/2], 2^r by the degree-6 polynomial of
// Cephes exp2f (relative error about 1e-7), times 2^n built in the exponent
// bits. x is clamped to [-127, high]: at -127 the exponent field is 0 and the result exactly 0,
// which is what a masked key (-inf) must weigh; `high` <= 127 keeps 2^n normal.
static LLVMValueRef vector_exp2(attn_gen *g, LLVMValueRef x, double high) {
  LLVMValueRef low = f32_splat(g, -127.0);
  x = pick(g, LLVMBuildFCmp(g->builder, LLVMRealOLT, x, low, ""), low, x);
  if (high < 127.5) {
    LLVMValueRef top = f32_splat(g, high);
    x = pick(g, LLVMBuildFCmp(g->builder, LLVMRealOGT, x, top, ""), top, x);
  }
  LLVMValueRef n = call_intrinsic(g, "llvm.rint", &g->vf32, 1, &x, 1);
  LLVMValueRef r = vsub(g, x, n);
  static const double coefficients[] = {1.535336188319500E-4, 1.339887440266574E-3,
                                        9.618437357674640E-3, 5.550332471162809E-2,
                                        2.402264791363012E-1, 6.931472028550421E-1};
  LLVMValueRef p = f32_splat(g, coefficients[0]);
  for (size_t i = 1; i < sizeof(coefficients) / sizeof(coefficients[0]); i++)
    p = fma_vector(g, p, r, f32_splat(g, coefficients[i]));
  p = fma_vector(g, p, r, f32_splat(g, 1.0));
  LLVMValueRef exponent = LLVMBuildFPToSI(g->builder, n, g->vi32, "");
  exponent = LLVMBuildAdd(g->builder, exponent, i32_splat(g, 127), "");
  exponent = LLVMBuildShl(g->builder, exponent, i32_splat(g, 23), "");
  return vmul(g, p, LLVMBuildBitCast(g->builder, exponent, g->vf32, ""));
}

// ln(x) for positive normal x, after Cephes logf: x = 2^e m with m in [sqrt(1/2), sqrt(2)),
// ln(m) = f - f^2/2 + f^3 P(f), f = m - 1. Within a few ulp.
static LLVMValueRef vector_ln(attn_gen *g, LLVMValueRef x) {
  LLVMValueRef bits = LLVMBuildBitCast(g->builder, x, g->vi32, "");
  LLVMValueRef e = LLVMBuildSub(g->builder, LLVMBuildLShr(g->builder, bits, i32_splat(g, 23), ""),
                                i32_splat(g, 127), "");
  LLVMValueRef m_bits =
      LLVMBuildOr(g->builder, LLVMBuildAnd(g->builder, bits, i32_splat(g, 0x7fffff), ""),
                  i32_splat(g, 0x3f800000), "");
  LLVMValueRef m = LLVMBuildBitCast(g->builder, m_bits, g->vf32, "");
  LLVMValueRef big =
      LLVMBuildFCmp(g->builder, LLVMRealOGT, m, f32_splat(g, 1.41421356237309505), "");
  m = pick(g, big, vmul(g, m, f32_splat(g, 0.5)), m);
  e = LLVMBuildAdd(g->builder, e, LLVMBuildZExt(g->builder, big, g->vi32, ""), "");
  LLVMValueRef f = vsub(g, m, f32_splat(g, 1.0));
  static const double coefficients[] = {7.0376836292E-2,  -1.1514610310E-1, 1.1676998740E-1,
                                        -1.2420140846E-1, 1.4249322787E-1,  -1.6668057665E-1,
                                        2.0000714765E-1,  -2.4999993993E-1, 3.3333331174E-1};
  LLVMValueRef p = f32_splat(g, coefficients[0]);
  for (size_t i = 1; i < sizeof(coefficients) / sizeof(coefficients[0]); i++)
    p = fma_vector(g, p, f, f32_splat(g, coefficients[i]));
  LLVMValueRef f2 = vmul(g, f, f);
  LLVMValueRef y = vmul(g, vmul(g, p, f), f2);
  y = fma_vector(g, f2, f32_splat(g, -0.5), y);
  LLVMValueRef ln_m = vadd(g, f, y);
  LLVMValueRef e_f = LLVMBuildSIToFP(g->builder, e, g->vf32, "");
  return fma_vector(g, e_f, f32_splat(g, LN2), ln_m);
}

// ---- vector exp, log and tanh of score mods ---------------------------------------------------

static LLVMValueRef fcmp(attn_gen *g, LLVMRealPredicate predicate, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFCmp(g->builder, predicate, a, b, "");
}

static LLVMValueRef unary_intrinsic(attn_gen *g, const char *name, LLVMValueRef x) {
  return call_intrinsic(g, name, &g->vf32, 1, &x, 1);
}

static LLVMValueRef binary_intrinsic(attn_gen *g, const char *name, LLVMValueRef a,
                                     LLVMValueRef b) {
  LLVMValueRef args[] = {a, b};
  return call_intrinsic(g, name, &g->vf32, 1, args, 2);
}

// e^x for a vector, after Cephes expf: n = round(x log2 e), r = x - n ln 2 in two parts (Cody
// and Waite), e^r = 1 + r + r^2 P(r) of degree 7 (within about 1 ulp), times 2^n built as two
// halves so that every n from -150 to 129 is exact, subnormal results included. Large x gives
// +inf, very negative x 0, NaN stays NaN.
static LLVMValueRef vector_exp(attn_gen *g, LLVMValueRef x) {
  LLVMValueRef low = f32_splat(g, -104.0), high = f32_splat(g, 89.0);
  LLVMValueRef xc = pick(g, fcmp(g, LLVMRealOGE, x, low), x, low); // NaN becomes `low` here
  xc = pick(g, fcmp(g, LLVMRealOGT, xc, high), high, xc);
  LLVMValueRef n = unary_intrinsic(g, "llvm.rint", vmul(g, xc, f32_splat(g, LOG2E)));
  LLVMValueRef r = fma_vector(g, n, f32_splat(g, -0.693359375), xc);
  r = fma_vector(g, n, f32_splat(g, 2.12194440e-4), r);
  static const double coefficients[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                                        4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMValueRef p = f32_splat(g, coefficients[0]);
  for (size_t i = 1; i < sizeof(coefficients) / sizeof(coefficients[0]); i++)
    p = fma_vector(g, p, r, f32_splat(g, coefficients[i]));
  LLVMValueRef y = vadd(g, fma_vector(g, p, vmul(g, r, r), r), f32_splat(g, 1.0));
  LLVMValueRef ni = LLVMBuildFPToSI(g->builder, n, g->vi32, "");
  LLVMValueRef half = LLVMBuildAShr(g->builder, ni, i32_splat(g, 1), "");
  LLVMValueRef halves[] = {half, LLVMBuildSub(g->builder, ni, half, "")};
  for (int i = 0; i < 2; i++) {
    LLVMValueRef bits =
        LLVMBuildShl(g->builder, LLVMBuildAdd(g->builder, halves[i], i32_splat(g, 127), ""),
                     i32_splat(g, 23), "");
    y = vmul(g, y, LLVMBuildBitCast(g->builder, bits, g->vf32, ""));
  }
  return pick(g, fcmp(g, LLVMRealUNO, x, x), x, y);
}

// ln(x) for every x: vector_ln for normal numbers, subnormals scaled by 2^23 first; ln 0 =
// -inf, ln(+inf) = +inf, ln of a negative number or NaN is NaN.
static LLVMValueRef vector_log(attn_gen *g, LLVMValueRef x) {
  LLVMValueRef zero = LLVMConstNull(g->vf32);
  LLVMValueRef tiny = fcmp(g, LLVMRealOLT, x, f32_splat(g, 1.17549435e-38));
  LLVMValueRef scaled = pick(g, tiny, vmul(g, x, f32_splat(g, 8388608.0)), x);
  LLVMValueRef y = vector_ln(g, scaled);
  y = pick(g, tiny, vsub(g, y, f32_splat(g, 23.0 * LN2)), y);
  y = pick(g, fcmp(g, LLVMRealOEQ, x, f32_splat(g, (double)INFINITY)), x, y);
  y = pick(g, fcmp(g, LLVMRealOEQ, x, zero), f32_splat(g, -(double)INFINITY), y);
  y = pick(g, fcmp(g, LLVMRealOLT, x, zero), f32_splat(g, (double)NAN), y);
  return pick(g, fcmp(g, LLVMRealUNO, x, x), x, y);
}

// tanh(x) as an odd rational function p(x) / q(x) of degrees 13 and 6 (the coefficients Eigen
// uses) on x clamped to +-7.9053, where tanh rounds to +-1 in f32: one division and 11 FMAs, no
// branch. Within 4e-7 relative (about 7 ulp at worst, near saturation) on every input; NaN stays
// NaN.
static LLVMValueRef vector_tanh(attn_gen *g, LLVMValueRef x) {
  LLVMValueRef top = f32_splat(g, 7.90531110763549805), bottom = f32_splat(g, -7.90531110763549805);
  x = pick(g, fcmp(g, LLVMRealOGT, x, top), top, x);
  x = pick(g, fcmp(g, LLVMRealOLT, x, bottom), bottom, x);
  LLVMValueRef x2 = vmul(g, x, x);
  static const double numerator[] = {
      -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
      1.48572235717979e-05,  6.37261928875436e-04, 4.89352455891786e-03};
  static const double denominator[] = {1.19825839466702e-06, 1.18534705686654e-04,
                                       2.26843463243900e-03, 4.89352518554385e-03};
  LLVMValueRef p = f32_splat(g, numerator[0]);
  for (size_t i = 1; i < sizeof(numerator) / sizeof(numerator[0]); i++)
    p = fma_vector(g, p, x2, f32_splat(g, numerator[i]));
  LLVMValueRef q = f32_splat(g, denominator[0]);
  for (size_t i = 1; i < sizeof(denominator) / sizeof(denominator[0]); i++)
    q = fma_vector(g, q, x2, f32_splat(g, denominator[i]));
  return LLVMBuildFDiv(g->builder, vmul(g, p, x), q, "");
}

// a^b as C's pow for the cases that matter: |a|^b = e^(b ln |a|), negative a only with an
// integer b (odd b keeps the sign), pow(a, 0) = pow(1, b) = 1.
static LLVMValueRef vector_pow(attn_gen *g, LLVMValueRef a, LLVMValueRef b) {
  LLVMValueRef zero = LLVMConstNull(g->vf32), one = f32_splat(g, 1.0);
  LLVMValueRef y = vector_exp(g, vmul(g, b, vector_log(g, unary_intrinsic(g, "llvm.fabs", a))));
  LLVMValueRef is_integer = fcmp(g, LLVMRealOEQ, b, unary_intrinsic(g, "llvm.rint", b));
  LLVMValueRef half = vmul(g, b, f32_splat(g, 0.5));
  LLVMValueRef odd =
      LLVMBuildAnd(g->builder, is_integer,
                   fcmp(g, LLVMRealUNE, half, unary_intrinsic(g, "llvm.rint", half)), "");
  LLVMValueRef negative_result = pick(
      g, is_integer, pick(g, odd, LLVMBuildFNeg(g->builder, y, ""), y), f32_splat(g, (double)NAN));
  y = pick(g, fcmp(g, LLVMRealOLT, a, zero), negative_result, y);
  LLVMValueRef unit =
      LLVMBuildOr(g->builder, fcmp(g, LLVMRealOEQ, b, zero), fcmp(g, LLVMRealOEQ, a, one), "");
  return pick(g, unit, one, y);
}

// a^n for a small integer n by repeated squaring (exact to a few roundings).
static LLVMValueRef vector_powi(attn_gen *g, LLVMValueRef a, int n) {
  LLVMValueRef result = f32_splat(g, 1.0), square = a;
  for (int m = n < 0 ? -n : n; m > 0; m >>= 1) {
    if (m & 1)
      result = vmul(g, result, square);
    if (m > 1)
      square = vmul(g, square, square);
  }
  return n < 0 ? LLVMBuildFDiv(g->builder, f32_splat(g, 1.0), result, "") : result;
}

// ---- the kernel -----------------------------------------------------------------------------

// Fields of attn_cpu_attention_args, by their index (byte offset / 8).
enum {
  FIELD_Q,
  FIELD_K,
  FIELD_V,
  FIELD_MASK,
  FIELD_OUT,
  FIELD_LSE,
  FIELD_PARTIAL,
  FIELD_BATCH,
  FIELD_HEADS,
  FIELD_KV_HEADS,
  FIELD_TQ,
  FIELD_TK,
  FIELD_WINDOW,
  FIELD_SINKS,
  FIELD_MASK_STRIDES,
  FIELD_KV_SPLITS = FIELD_MASK_STRIDES + 4,
  FIELD_KV_CHUNK,
  FIELD_SCALE,
  FIELD_SIGMOID_BIAS,
  FIELD_CAPTURES,
  FIELD_CAPTURE_DIMS = FIELD_CAPTURES + ATTN_CPU_ATTENTION_MAX_CAPTURES,
  FIELD_END =
      FIELD_CAPTURE_DIMS + ATTN_CPU_ATTENTION_MAX_CAPTURES * ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK,
};

_Static_assert(offsetof(attn_cpu_attention_args, sigmoid_bias) == 8 * FIELD_SIGMOID_BIAS,
               "attn_cpu_attention_args: every field is 8 bytes, in the order of the enum");
_Static_assert(offsetof(attn_cpu_attention_args, mask_strides) == 8 * FIELD_MASK_STRIDES,
               "attn_cpu_attention_args: mask_strides");
_Static_assert(offsetof(attn_cpu_attention_args, kv_splits) == 8 * FIELD_KV_SPLITS,
               "attn_cpu_attention_args: kv_splits");
_Static_assert(offsetof(attn_cpu_attention_args, captures) == 8 * FIELD_CAPTURES,
               "attn_cpu_attention_args: captures");
_Static_assert(offsetof(attn_cpu_attention_args, capture_dims) == 8 * FIELD_CAPTURE_DIMS,
               "attn_cpu_attention_args: capture_dims");
_Static_assert(sizeof(attn_cpu_attention_args) == 8 * FIELD_END,
               "attn_cpu_attention_args: capture_dims is the last field");

static LLVMValueRef load_field(attn_gen *g, int field, LLVMTypeRef type) {
  LLVMValueRef args = LLVMGetParam(g->function, 0);
  LLVMValueRef pointer = at(g, g->i8, args, i64c(g, 8 * (int64_t)field));
  LLVMValueRef load = LLVMBuildLoad2(g->builder, type, pointer, "");
  LLVMSetAlignment(load, 8);
  return load;
}

// What one work item knows, computed at its start.
typedef struct item_state {
  LLVMValueRef b, h, split, splits;
  LLVMValueRef i0, rows;            // first query row of the item and how many it has
  LLVMValueRef q_row0;              // (b H + h) Tq + i0: the item's first row of q, out, lse
  LLVMValueRef k_head, v_head;      // element offsets of the kv head in k and v
  LLVMValueRef pos_first, pos_last; // absolute positions of the first and last row
  LLVMValueRef k_begin, k_end;      // the keys the item may see
  LLVMValueRef qt, st, ot, m, l, alpha, kbuf, vbuf; // stack scratch
  LLVMValueRef b_f, h_f, pos_first_f;               // with a score mod: b, h, pos_first as f32
} item_state;

typedef struct kernel_args {
  LLVMValueRef q, k, v, mask, out, lse, partial;
  LLVMValueRef batch, heads, kv_heads, tq, tk, window, sinks, strides[4], kv_splits, kv_chunk;
  LLVMValueRef scale2, bias2; // scale and sigmoid bias times log2(e), f32
  LLVMValueRef scale;         // scale as f32
  LLVMValueRef captures[ATTN_CPU_ATTENTION_MAX_CAPTURES];
  LLVMValueRef capture_dims[ATTN_CPU_ATTENTION_MAX_CAPTURES][ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK];
} kernel_args;

// ---- score mods -----------------------------------------------------------------------------

// A score-mod value over one vector of query rows (one key): f32 lanes, or the i1 lanes of a
// comparison, which stand for 1 and 0. `uniform` values read neither score nor q_idx, so all
// their lanes are equal: their captures are read with one scalar load instead of a gather.
typedef struct expr_value {
  LLVMValueRef value;
  bool is_mask;
  bool uniform;
} expr_value;

// The variables of a score mod, as f32 vectors.
typedef struct expr_env {
  const kernel_args *args;
  LLVMValueRef vars[ATTN_EXPR_VAR_COUNT];
} expr_env;

static LLVMValueRef as_number(attn_gen *g, expr_value v) {
  return v.is_mask ? pick(g, v.value, f32_splat(g, 1.0), LLVMConstNull(g->vf32)) : v.value;
}

static LLVMValueRef as_mask(attn_gen *g, expr_value v) {
  return v.is_mask ? v.value : fcmp(g, LLVMRealUNE, v.value, LLVMConstNull(g->vf32));
}

static LLVMTypeRef capture_element_type(attn_gen *g, attn_dtype dtype) {
  switch (dtype) {
  case ATTN_DTYPE_F32:
    return g->f32;
  case ATTN_DTYPE_F16:
    return LLVMHalfTypeInContext(g->context);
  case ATTN_DTYPE_BF16:
    return g->i16;
  case ATTN_DTYPE_I64:
    return g->i64;
  case ATTN_DTYPE_I32:
    return g->i32;
  case ATTN_DTYPE_I8:
  case ATTN_DTYPE_BOOL:
  case ATTN_DTYPE_COUNT:
    break;
  }
  return g->i8;
}

// A loaded capture element (scalar, or a vector of `lanes`) as f32.
static LLVMValueRef capture_to_f32(attn_gen *g, LLVMValueRef value, attn_dtype dtype, bool vector) {
  LLVMTypeRef f32 = vector ? g->vf32 : g->f32;
  LLVMTypeRef i32 = vector ? g->vi32 : g->i32;
  switch (dtype) {
  case ATTN_DTYPE_F32:
    return value;
  case ATTN_DTYPE_F16:
    return LLVMBuildFPExt(g->builder, value, f32, "");
  case ATTN_DTYPE_BF16: {
    LLVMValueRef wide = LLVMBuildZExt(g->builder, value, i32, "");
    LLVMValueRef sixteen = LLVMConstInt(g->i32, 16, 0);
    wide = LLVMBuildShl(g->builder, wide, vector ? splat_constant(g, sixteen) : sixteen, "");
    return LLVMBuildBitCast(g->builder, wide, f32, "");
  }
  case ATTN_DTYPE_BOOL:
    return LLVMBuildUIToFP(
        g->builder,
        LLVMBuildICmp(g->builder, LLVMIntNE, value, LLVMConstNull(LLVMTypeOf(value)), ""), f32, "");
  default:
    return LLVMBuildSIToFP(g->builder, value, f32, "");
  }
}

// A subscript (f32, scalar or vector) as an i64 index in [0, size - 1]: NaN and negatives become
// 0 (what truncation toward zero gives on (-1, 0)), values past the end the last index.
static LLVMValueRef clamp_subscript(attn_gen *g, LLVMValueRef x, LLVMValueRef size, bool vector) {
  LLVMValueRef last = sub(g, size, i64c(g, 1));
  LLVMValueRef high = LLVMBuildSIToFP(g->builder, last, g->f32, "");
  // Below 2^31, so that the conversion to i32 is defined.
  LLVMValueRef top = LLVMConstReal(g->f32, 2147483520.0);
  high = pick(g, fcmp(g, LLVMRealOLT, high, top), high, top);
  LLVMValueRef zero = LLVMConstNull(g->f32);
  if (vector) {
    high = splat(g, high, g->vf32);
    zero = LLVMConstNull(g->vf32);
  }
  x = pick(g, fcmp(g, LLVMRealOGT, x, zero), x, zero);
  x = pick(g, fcmp(g, LLVMRealOLT, x, high), x, high);
  LLVMValueRef index = LLVMBuildFPToSI(g->builder, x, vector ? g->vi32 : g->i32, "");
  return LLVMBuildSExt(g->builder, index, vector ? g->vi64 : g->i64, "");
}

static expr_value emit_expr(attn_gen *g, const expr_env *env, const attn_expr *e);

// capture[subscripts...]: one scalar load when every subscript is uniform, else a gather.
static expr_value emit_capture(attn_gen *g, const expr_env *env, const attn_expr *e) {
  const attn_cpu_attention_capture *capture = &g->spec->captures[e->capture];
  const LLVMValueRef *dims = env->args->capture_dims[e->capture];
  LLVMValueRef subscripts[ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK];
  bool uniform = true;
  for (uint32_t d = 0; d < e->arg_count; d++) {
    expr_value v = emit_expr(g, env, e->args[d]);
    subscripts[d] = as_number(g, v);
    uniform = uniform && v.uniform;
  }
  LLVMTypeRef element = capture_element_type(g, capture->dtype);
  LLVMValueRef base = env->args->captures[e->capture];
  if (uniform) {
    LLVMValueRef index = i64c(g, 0);
    for (uint32_t d = 0; d < e->arg_count; d++) {
      LLVMValueRef x =
          LLVMBuildExtractElement(g->builder, subscripts[d], LLVMConstInt(g->i32, 0, 0), "");
      index = add(g, mul(g, index, dims[d]), clamp_subscript(g, x, dims[d], false));
    }
    LLVMValueRef value = LLVMBuildLoad2(g->builder, element, at(g, element, base, index), "");
    value = capture_to_f32(g, value, capture->dtype, false);
    return (expr_value){splat(g, value, g->vf32), false, true};
  }
  LLVMValueRef index = LLVMConstNull(g->vi64);
  for (uint32_t d = 0; d < e->arg_count; d++)
    index =
        LLVMBuildAdd(g->builder, LLVMBuildMul(g->builder, index, splat(g, dims[d], g->vi64), ""),
                     clamp_subscript(g, subscripts[d], dims[d], true), "");
  LLVMTypeRef vector = LLVMVectorType(element, (unsigned)g->lanes);
  LLVMValueRef pointers = LLVMBuildGEP2(g->builder, element, base, &index, 1, "");
  LLVMTypeRef overloads[] = {vector, LLVMVectorType(g->ptr, (unsigned)g->lanes)};
  LLVMValueRef gather_args[] = {pointers, LLVMConstAllOnes(g->vi1), LLVMGetPoison(vector)};
  LLVMValueRef gathered = call_intrinsic(g, "llvm.masked.gather", overloads, 2, gather_args, 3);
  return (expr_value){capture_to_f32(g, gathered, capture->dtype, true), false, false};
}

static LLVMValueRef emit_unary(attn_gen *g, attn_expr_fn fn, LLVMValueRef x) {
  switch (fn) {
  case ATTN_EXPR_NEG:
    return LLVMBuildFNeg(g->builder, x, "");
  case ATTN_EXPR_ABS:
    return unary_intrinsic(g, "llvm.fabs", x);
  case ATTN_EXPR_EXP:
    return vector_exp(g, x);
  case ATTN_EXPR_LOG:
    return vector_log(g, x);
  case ATTN_EXPR_SQRT:
    return unary_intrinsic(g, "llvm.sqrt", x);
  case ATTN_EXPR_TANH:
    return vector_tanh(g, x);
  case ATTN_EXPR_SIGMOID: {
    LLVMValueRef e = vector_exp(g, LLVMBuildFNeg(g->builder, x, ""));
    return LLVMBuildFDiv(g->builder, f32_splat(g, 1.0), vadd(g, f32_splat(g, 1.0), e), "");
  }
  default:
    return f32_splat(g, (double)NAN);
  }
}

// True when `e` is a NUMBER holding a small integer, which pow raises by multiplication.
static bool small_integer(const attn_expr *e, int *out_n) {
  if (e->kind != ATTN_EXPR_NUMBER || !(fabs(e->number) <= 16.0) || e->number != floor(e->number))
    return false;
  *out_n = (int)e->number;
  return true;
}

static expr_value emit_binary(attn_gen *g, const expr_env *env, const attn_expr *e) {
  expr_value av = emit_expr(g, env, e->args[0]), bv = emit_expr(g, env, e->args[1]);
  bool uniform = av.uniform && bv.uniform;
  LLVMValueRef a = as_number(g, av), b = as_number(g, bv);
  LLVMValueRef result;
  int n;
  switch (e->fn) {
  case ATTN_EXPR_ADD:
    result = vadd(g, a, b);
    break;
  case ATTN_EXPR_SUB:
    result = vsub(g, a, b);
    break;
  case ATTN_EXPR_MUL:
    result = vmul(g, a, b);
    break;
  case ATTN_EXPR_DIV:
    // By a constant: times its reciprocal (one rounding more, far cheaper than a division).
    if (e->args[1]->kind == ATTN_EXPR_NUMBER && isnormal((float)(1.0 / e->args[1]->number)))
      result = vmul(g, a, f32_splat(g, 1.0 / e->args[1]->number));
    else
      result = LLVMBuildFDiv(g->builder, a, b, "");
    break;
  case ATTN_EXPR_MIN:
    result = binary_intrinsic(g, "llvm.minnum", a, b);
    break;
  case ATTN_EXPR_MAX:
    result = binary_intrinsic(g, "llvm.maxnum", a, b);
    break;
  case ATTN_EXPR_POW:
    result = small_integer(e->args[1], &n) ? vector_powi(g, a, n) : vector_pow(g, a, b);
    break;
  case ATTN_EXPR_LT:
    return (expr_value){fcmp(g, LLVMRealOLT, a, b), true, uniform};
  case ATTN_EXPR_LE:
    return (expr_value){fcmp(g, LLVMRealOLE, a, b), true, uniform};
  case ATTN_EXPR_EQ:
    return (expr_value){fcmp(g, LLVMRealOEQ, a, b), true, uniform};
  default:
    result = f32_splat(g, (double)NAN);
    break;
  }
  return (expr_value){result, false, uniform};
}

// The value of `e` (validated by attn_cpu_attention_generate) for one vector of query rows.
static expr_value emit_expr(attn_gen *g, const expr_env *env, const attn_expr *e) {
  switch (e->kind) {
  case ATTN_EXPR_NUMBER:
    return (expr_value){f32_splat(g, e->number), false, true};
  case ATTN_EXPR_VAR:
    return (expr_value){env->vars[e->var], false,
                        e->var != ATTN_EXPR_VAR_SCORE && e->var != ATTN_EXPR_VAR_Q_IDX};
  case ATTN_EXPR_CAPTURE:
    return emit_capture(g, env, e);
  case ATTN_EXPR_UNARY: {
    expr_value x = emit_expr(g, env, e->args[0]);
    return (expr_value){emit_unary(g, e->fn, as_number(g, x)), false, x.uniform};
  }
  case ATTN_EXPR_BINARY:
    return emit_binary(g, env, e);
  case ATTN_EXPR_SELECT: {
    expr_value c = emit_expr(g, env, e->args[0]);
    expr_value a = emit_expr(g, env, e->args[1]), b = emit_expr(g, env, e->args[2]);
    bool uniform = c.uniform && a.uniform && b.uniform;
    if (a.is_mask && b.is_mask)
      return (expr_value){pick(g, as_mask(g, c), a.value, b.value), true, uniform};
    return (expr_value){pick(g, as_mask(g, c), as_number(g, a), as_number(g, b)), false, uniform};
  }
  }
  return (expr_value){f32_splat(g, (double)NAN), false, true};
}

// Checks what emit_expr relies on: known kinds, vars and fns, argument counts, declared
// captures, no NULL argument, bounded depth.
static attn_status validate_expr(const attn_attention_spec *spec, const attn_expr *e, int depth,
                                 attn_diag *diag) {
  const char *problem = NULL;
  if (!e)
    problem = "a missing argument";
  else if (depth > MAX_EXPR_DEPTH)
    problem = "nesting deeper than 64";
  else if (e->kind == ATTN_EXPR_VAR && (unsigned)e->var >= ATTN_EXPR_VAR_COUNT)
    problem = "an unknown variable";
  else if (e->kind == ATTN_EXPR_UNARY && (e->arg_count != 1 || (unsigned)e->fn > ATTN_EXPR_SIGMOID))
    problem = "a bad unary function";
  else if (e->kind == ATTN_EXPR_BINARY &&
           (e->arg_count != 2 || e->fn < ATTN_EXPR_ADD || e->fn >= ATTN_EXPR_FN_COUNT))
    problem = "a bad binary function";
  else if (e->kind == ATTN_EXPR_SELECT && e->arg_count != 3)
    problem = "a select without 3 arguments";
  else if (e->kind == ATTN_EXPR_CAPTURE &&
           (e->capture >= spec->capture_count || e->arg_count != spec->captures[e->capture].rank))
    problem = "a capture the spec does not declare, or the wrong number of subscripts";
  else if ((unsigned)e->kind > ATTN_EXPR_SELECT)
    problem = "an unknown expression kind";
  if (problem)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "attention: the score mod has %s", problem);
  if (e->kind == ATTN_EXPR_NUMBER || e->kind == ATTN_EXPR_VAR)
    return ATTN_OK;
  for (uint32_t i = 0; i < e->arg_count; i++)
    ATTN_RETURN_IF_ERROR(validate_expr(spec, e->args[i], depth + 1, diag));
  return ATTN_OK;
}

// Qᵀ[d][i] = q[row i][d] * scale * log2(e) for the item's rows (without log2(e) with a score
// mod, which reads the logit itself); rows past them are zero.
static void emit_pack_q(attn_gen *g, const kernel_args *a, const item_state *s) {
  LLVMValueRef factor = g->spec->score_mod ? a->scale : a->scale2;
  counted_loop rows = loop_begin(g, i64c(g, 0), s->rows, "pack.i");
  LLVMValueRef row_base = mul(g, add(g, s->q_row0, rows.iv), i64c(g, g->d));
  counted_loop cols = loop_begin(g, i64c(g, 0), i64c(g, g->d), "pack.d");
  LLVMValueRef value = load_element(g, a->q, add(g, row_base, cols.iv));
  store_f32(g, LLVMBuildFMul(g->builder, value, factor, ""), s->qt,
            add(g, mul(g, cols.iv, i64c(g, g->rows)), rows.iv));
  loop_end(g, &cols, 1, NULL, NULL, 0);
  loop_end(g, &rows, 1, NULL, NULL, 0);
  counted_loop pad = loop_begin(g, s->rows, i64c(g, g->rows), "pad.i");
  counted_loop pad_cols = loop_begin(g, i64c(g, 0), i64c(g, g->d), "pad.d");
  store_f32(g, LLVMConstNull(g->f32), s->qt, add(g, mul(g, pad_cols.iv, i64c(g, g->rows)), pad.iv));
  loop_end(g, &pad_cols, 1, NULL, NULL, 0);
  loop_end(g, &pad, 1, NULL, NULL, 0);
}

// Sᵀ[j][rows] = K[j0 + j] · Qᵀ for the block's keys j < nk, in tiles of KEY_TILE keys (keys past
// nk in the last tile repeat key nk - 1; their rows of Sᵀ are never read). A score mod applies to
// the register tiles before they are stored: Sᵀ = log2(e) mod(s).
static void emit_scores(attn_gen *g, const kernel_args *a, const item_state *s, LLVMValueRef kp,
                        LLVMValueRef j0, LLVMValueRef nk) {
  unsigned align = (unsigned)g->lanes * 4;
  const attn_expr *score_mod = g->spec->score_mod;
  expr_env env = {.args = a};
  LLVMValueRef q_idx[ROW_TILES][ROW_VECTORS];
  if (score_mod) {
    env.vars[ATTN_EXPR_VAR_B] = splat(g, s->b_f, g->vf32);
    env.vars[ATTN_EXPR_VAR_H] = splat(g, s->h_f, g->vf32);
    LLVMValueRef first = splat(g, s->pos_first_f, g->vf32);
    for (int t = 0; t < ROW_TILES; t++) {
      for (int v = 0; v < ROW_VECTORS; v++) {
        LLVMValueRef offsets[16];
        for (int i = 0; i < g->lanes; i++)
          offsets[i] = LLVMConstReal(g->f32, (double)((t * ROW_VECTORS + v) * g->lanes + i));
        q_idx[t][v] = vadd(g, first, LLVMConstVector(offsets, (unsigned)g->lanes));
      }
    }
  }
  counted_loop keys = loop_begin(g, i64c(g, 0), nk, "s.j");
  LLVMValueRef last = sub(g, nk, i64c(g, 1));
  LLVMValueRef k_row[KEY_TILE];
  for (int r = 0; r < KEY_TILE; r++)
    k_row[r] = at(g, g->f32, kp, mul(g, smin(g, add(g, keys.iv, i64c(g, r)), last), i64c(g, g->d)));
  for (int t = 0; t < ROW_TILES; t++) {
    int64_t col0 = (int64_t)t * ROW_VECTORS * g->lanes;
    counted_loop dl = loop_begin(g, i64c(g, 0), i64c(g, g->d), "s.d");
    LLVMValueRef acc[KEY_TILE][ROW_VECTORS], next[KEY_TILE][ROW_VECTORS];
    for (int r = 0; r < KEY_TILE; r++)
      for (int v = 0; v < ROW_VECTORS; v++)
        acc[r][v] = loop_carried(g, &dl, LLVMConstNull(g->vf32));
    LLVMValueRef q_base = add(g, mul(g, dl.iv, i64c(g, g->rows)), i64c(g, col0));
    LLVMValueRef qv[ROW_VECTORS];
    for (int v = 0; v < ROW_VECTORS; v++)
      qv[v] = load_vector(g, s->qt, add(g, q_base, i64c(g, (int64_t)v * g->lanes)), align);
    for (int r = 0; r < KEY_TILE; r++) {
      LLVMValueRef kb = splat(g, load_f32(g, k_row[r], dl.iv), g->vf32);
      for (int v = 0; v < ROW_VECTORS; v++)
        next[r][v] = fma_vector(g, kb, qv[v], acc[r][v]);
    }
    loop_end(g, &dl, 1, &acc[0][0], &next[0][0], (size_t)KEY_TILE * ROW_VECTORS);
    for (int r = 0; score_mod && r < KEY_TILE; r++) {
      LLVMValueRef j = add(g, j0, add(g, keys.iv, i64c(g, r)));
      env.vars[ATTN_EXPR_VAR_KV_IDX] =
          splat(g, LLVMBuildSIToFP(g->builder, j, g->f32, ""), g->vf32);
      for (int v = 0; v < ROW_VECTORS; v++) {
        env.vars[ATTN_EXPR_VAR_SCORE] = acc[r][v];
        env.vars[ATTN_EXPR_VAR_Q_IDX] = q_idx[t][v];
        acc[r][v] = vmul(g, as_number(g, emit_expr(g, &env, score_mod)), f32_splat(g, LOG2E));
      }
    }
    for (int r = 0; r < KEY_TILE; r++) {
      LLVMValueRef s_base =
          add(g, mul(g, add(g, keys.iv, i64c(g, r)), i64c(g, g->rows)), i64c(g, col0));
      for (int v = 0; v < ROW_VECTORS; v++)
        store_vector(g, acc[r][v], s->st, add(g, s_base, i64c(g, (int64_t)v * g->lanes)), align);
    }
  }
  loop_end(g, &keys, KEY_TILE, NULL, NULL, 0);
}

// Sets the logits of invisible (row, key) pairs of the block to -inf and adds the f32 mask.
static void emit_mask(attn_gen *g, const kernel_args *a, const item_state *s, LLVMValueRef j0,
                      LLVMValueRef nk) {
  unsigned align = (unsigned)g->lanes * 4;
  const attn_attention_spec *spec = g->spec;
  LLVMValueRef minus_inf = f32_splat(g, -(double)INFINITY);
  LLVMValueRef offset = sub(g, a->tk, a->tq); // pos(i) = Tk - Tq + i
  LLVMValueRef mask_base = NULL;
  if (spec->mask_tensor != ATTN_CPU_ATTENTION_MASK_TENSOR_NONE)
    mask_base = add(g, mul(g, s->b, a->strides[0]), mul(g, s->h, a->strides[1]));
  counted_loop cols = loop_begin(g, i64c(g, 0), i64c(g, g->rows / g->lanes), "mask.c");
  LLVMValueRef col = mul(g, cols.iv, i64c(g, g->lanes));
  LLVMValueRef i_vec =
      LLVMBuildAdd(g->builder, splat(g, add(g, s->i0, col), g->vi64), lane_indices(g), "");
  LLVMValueRef pos = LLVMBuildAdd(g->builder, i_vec, splat(g, offset, g->vi64), "");
  LLVMValueRef row_valid = icmp(g, LLVMIntSLT, i_vec, splat(g, a->tq, g->vi64));
  LLVMValueRef mask_rows = NULL;
  if (mask_base)
    mask_rows =
        LLVMBuildAdd(g->builder, splat(g, mask_base, g->vi64),
                     LLVMBuildMul(g->builder, i_vec, splat(g, a->strides[2], g->vi64), ""), "");
  LLVMValueRef window_low =
      LLVMBuildSub(g->builder, pos, splat(g, a->window, g->vi64), ""); // keys above are in
  counted_loop keys = loop_begin(g, i64c(g, 0), nk, "mask.j");
  LLVMValueRef j = add(g, j0, keys.iv);
  LLVMValueRef j_vec = splat(g, j, g->vi64);
  LLVMValueRef visible = NULL;
  if (spec->mask != ATTN_CPU_ATTENTION_MASK_NONE)
    visible = icmp(g, LLVMIntSLE, j_vec, pos);
  if (spec->mask == ATTN_CPU_ATTENTION_MASK_SLIDING_WINDOW) {
    LLVMValueRef in_window = icmp(g, LLVMIntSGT, j_vec, window_low);
    LLVMValueRef is_sink = splat(g, icmp(g, LLVMIntSLT, j, a->sinks), g->vi1);
    visible =
        LLVMBuildAnd(g->builder, visible, LLVMBuildOr(g->builder, in_window, is_sink, ""), "");
  }
  LLVMValueRef index = add(g, mul(g, keys.iv, i64c(g, g->rows)), col);
  LLVMValueRef score = load_vector(g, s->st, index, align);
  if (mask_rows) {
    LLVMValueRef element =
        LLVMBuildAdd(g->builder, mask_rows, splat(g, mul(g, j, a->strides[3]), g->vi64), "");
    bool is_bool = spec->mask_tensor == ATTN_CPU_ATTENTION_MASK_TENSOR_BOOL;
    LLVMTypeRef scalar = is_bool ? g->i8 : g->f32;
    LLVMTypeRef vector = is_bool ? g->vi8 : g->vf32;
    LLVMValueRef pointers = LLVMBuildGEP2(g->builder, scalar, a->mask, &element, 1, "");
    LLVMTypeRef overloads[] = {vector, LLVMVectorType(g->ptr, (unsigned)g->lanes)};
    LLVMValueRef gather_args[] = {pointers, row_valid, LLVMConstNull(vector)};
    LLVMValueRef gathered = call_intrinsic(g, "llvm.masked.gather", overloads, 2, gather_args, 3);
    if (is_bool) {
      LLVMValueRef set = icmp(g, LLVMIntNE, gathered, LLVMConstNull(g->vi8));
      visible = visible ? LLVMBuildAnd(g->builder, visible, set, "") : set;
    } else {
      score = fma_vector(g, gathered, f32_splat(g, LOG2E), score);
    }
  }
  if (visible)
    score = pick(g, visible, score, minus_inf);
  store_vector(g, score, s->st, index, align);
  loop_end(g, &keys, 1, NULL, NULL, 0);
  loop_end(g, &cols, 1, NULL, NULL, 0);
}

// The online softmax step of one block, per vector of rows: the new running max, P in place of
// S, the running sum, and the factor `alpha` that rescales the output accumulated so far. With
// sigmoid, P is the sigmoid weight and alpha 1; the max and sum then only serve lse.
static void emit_softmax(attn_gen *g, const kernel_args *a, const item_state *s, LLVMValueRef nk) {
  unsigned align = (unsigned)g->lanes * 4;
  bool sigmoid = g->spec->norm == ATTN_CPU_ATTENTION_NORM_SIGMOID;
  bool stats = !sigmoid || g->spec->lse;
  LLVMValueRef minus_inf = f32_splat(g, -(double)INFINITY);
  counted_loop cols = loop_begin(g, i64c(g, 0), i64c(g, g->rows / g->lanes), "sm.c");
  LLVMValueRef col = mul(g, cols.iv, i64c(g, g->lanes));
  LLVMValueRef m_old = load_vector(g, s->m, col, align);
  LLVMValueRef m_safe = NULL, m_new = NULL;
  if (stats) {
    counted_loop pass1 = loop_begin(g, i64c(g, 0), nk, "sm.max");
    LLVMValueRef running = loop_carried(g, &pass1, m_old);
    LLVMValueRef score =
        load_vector(g, s->st, add(g, mul(g, pass1.iv, i64c(g, g->rows)), col), align);
    LLVMValueRef next = fmax_vector(g, score, running);
    loop_end(g, &pass1, 1, &running, &next, 1);
    m_new = running;
    // A row with no visible key so far keeps max -inf; subtracting 0 instead keeps 2^(-inf - 0)
    // = 0 where -inf - -inf would be NaN.
    m_safe = pick(g, LLVMBuildFCmp(g->builder, LLVMRealOEQ, m_new, minus_inf, ""),
                  LLVMConstNull(g->vf32), m_new);
  }
  counted_loop pass2 = loop_begin(g, i64c(g, 0), nk, "sm.exp");
  LLVMValueRef sum = loop_carried(g, &pass2, LLVMConstNull(g->vf32));
  LLVMValueRef index = add(g, mul(g, pass2.iv, i64c(g, g->rows)), col);
  LLVMValueRef score = load_vector(g, s->st, index, align);
  LLVMValueRef sum_next = sum;
  if (stats) {
    LLVMValueRef p = vector_exp2(g, vsub(g, score, m_safe), 0.0);
    sum_next = vadd(g, sum, p);
    if (!sigmoid)
      store_vector(g, p, s->st, index, align);
  }
  if (sigmoid) {
    // sigmoid(x) = 1 / (1 + 2^(-x log2 e)); a masked key (-inf) weighs exactly 0.
    LLVMValueRef minus_x =
        LLVMBuildFNeg(g->builder, vadd(g, score, splat(g, a->bias2, g->vf32)), "");
    LLVMValueRef e = vector_exp2(g, minus_x, 126.0);
    LLVMValueRef p =
        LLVMBuildFDiv(g->builder, f32_splat(g, 1.0), vadd(g, f32_splat(g, 1.0), e), "");
    p = pick(g, LLVMBuildFCmp(g->builder, LLVMRealOEQ, score, minus_inf, ""),
             LLVMConstNull(g->vf32), p);
    store_vector(g, p, s->st, index, align);
  }
  loop_end(g, &pass2, 1, &sum, &sum_next, 1);
  if (stats) {
    LLVMValueRef alpha = vector_exp2(g, vsub(g, m_old, m_safe), 0.0);
    LLVMValueRef l = load_vector(g, s->l, col, align);
    store_vector(g, fma_vector(g, l, alpha, sum), s->l, col, align);
    store_vector(g, m_new, s->m, col, align);
    if (!sigmoid)
      store_vector(g, alpha, s->alpha, col, align);
  }
  loop_end(g, &cols, 1, NULL, NULL, 0);
}

// Oᵀ[c][rows] = Oᵀ[c][rows] * alpha + sum_j V[j0 + j][c] Pᵀ[j][rows] for `channels` value
// channels from c0, over every row tile.
static void emit_value_tile(attn_gen *g, const item_state *s, LLVMValueRef vp, LLVMValueRef nk,
                            LLVMValueRef c0, int channels) {
  unsigned align = (unsigned)g->lanes * 4;
  bool rescale = g->spec->norm == ATTN_CPU_ATTENTION_NORM_SOFTMAX;
  for (int t = 0; t < ROW_TILES; t++) {
    int64_t col0 = (int64_t)t * ROW_VECTORS * g->lanes;
    LLVMValueRef initial[VALUE_TILE][ROW_VECTORS], o_index[VALUE_TILE][ROW_VECTORS];
    LLVMValueRef alpha[ROW_VECTORS];
    for (int v = 0; v < ROW_VECTORS; v++)
      alpha[v] =
          rescale ? load_vector(g, s->alpha, i64c(g, col0 + (int64_t)v * g->lanes), align) : NULL;
    for (int c = 0; c < channels; c++) {
      LLVMValueRef base = add(g, mul(g, add(g, c0, i64c(g, c)), i64c(g, g->rows)), i64c(g, col0));
      for (int v = 0; v < ROW_VECTORS; v++) {
        o_index[c][v] = add(g, base, i64c(g, (int64_t)v * g->lanes));
        initial[c][v] = load_vector(g, s->ot, o_index[c][v], align);
        if (rescale)
          initial[c][v] = vmul(g, initial[c][v], alpha[v]);
      }
    }
    counted_loop keys = loop_begin(g, i64c(g, 0), nk, "pv.j");
    LLVMValueRef acc[VALUE_TILE][ROW_VECTORS], next[VALUE_TILE][ROW_VECTORS];
    for (int c = 0; c < channels; c++)
      for (int v = 0; v < ROW_VECTORS; v++)
        acc[c][v] = loop_carried(g, &keys, initial[c][v]);
    LLVMValueRef p_base = add(g, mul(g, keys.iv, i64c(g, g->rows)), i64c(g, col0));
    LLVMValueRef pv[ROW_VECTORS];
    for (int v = 0; v < ROW_VECTORS; v++)
      pv[v] = load_vector(g, s->st, add(g, p_base, i64c(g, (int64_t)v * g->lanes)), align);
    LLVMValueRef v_base = add(g, mul(g, keys.iv, i64c(g, g->dv)), c0);
    for (int c = 0; c < channels; c++) {
      LLVMValueRef vb = splat(g, load_f32(g, vp, add(g, v_base, i64c(g, c))), g->vf32);
      for (int v = 0; v < ROW_VECTORS; v++)
        next[c][v] = fma_vector(g, vb, pv[v], acc[c][v]);
    }
    loop_end(g, &keys, 1, &acc[0][0], &next[0][0], (size_t)channels * ROW_VECTORS);
    for (int c = 0; c < channels; c++)
      for (int v = 0; v < ROW_VECTORS; v++)
        store_vector(g, acc[c][v], s->ot, o_index[c][v], align);
  }
}

static void emit_values(attn_gen *g, const item_state *s, LLVMValueRef vp, LLVMValueRef nk) {
  int64_t full = g->dv / VALUE_TILE * VALUE_TILE;
  if (full > 0) {
    counted_loop tiles = loop_begin(g, i64c(g, 0), i64c(g, full), "pv.c");
    emit_value_tile(g, s, vp, nk, tiles.iv, VALUE_TILE);
    loop_end(g, &tiles, VALUE_TILE, NULL, NULL, 0);
  }
  if (g->dv > full)
    emit_value_tile(g, s, vp, nk, i64c(g, full), (int)(g->dv - full));
}

// Converts `count` bf16 elements from `source` + `offset` into the f32 buffer `target`.
static void emit_widen(attn_gen *g, LLVMValueRef target, LLVMValueRef source, LLVMValueRef offset,
                       LLVMValueRef count) {
  counted_loop loop = loop_begin(g, i64c(g, 0), count, "widen");
  store_f32(g, load_element(g, source, add(g, offset, loop.iv)), target, loop.iv);
  loop_end(g, &loop, 1, NULL, NULL, 0);
}

// One block of keys [j0, j0 + nk).
static void emit_block(attn_gen *g, const kernel_args *a, const item_state *s, LLVMValueRef j0,
                       LLVMValueRef nk) {
  const attn_attention_spec *spec = g->spec;
  LLVMValueRef kp, vp;
  LLVMValueRef k_offset = add(g, s->k_head, mul(g, j0, i64c(g, g->d)));
  LLVMValueRef v_offset = add(g, s->v_head, mul(g, j0, i64c(g, g->dv)));
  if (spec->dtype == ATTN_CPU_ATTENTION_BF16) {
    emit_widen(g, s->kbuf, a->k, k_offset, mul(g, nk, i64c(g, g->d)));
    emit_widen(g, s->vbuf, a->v, v_offset, mul(g, nk, i64c(g, g->dv)));
    kp = s->kbuf;
    vp = s->vbuf;
  } else {
    kp = at(g, g->f32, a->k, k_offset);
    vp = at(g, g->f32, a->v, v_offset);
  }
  emit_scores(g, a, s, kp, j0, nk);

  bool may_mask = spec->mask != ATTN_CPU_ATTENTION_MASK_NONE ||
                  spec->mask_tensor != ATTN_CPU_ATTENTION_MASK_TENSOR_NONE;
  if (may_mask) {
    // Only blocks some of whose (row, key) pairs are invisible evaluate the mask.
    LLVMValueRef last_key = sub(g, add(g, j0, nk), i64c(g, 1));
    LLVMValueRef all_visible = LLVMConstInt(g->i1, 1, 0);
    if (spec->mask_tensor != ATTN_CPU_ATTENTION_MASK_TENSOR_NONE)
      all_visible = LLVMConstInt(g->i1, 0, 0);
    if (spec->mask != ATTN_CPU_ATTENTION_MASK_NONE)
      all_visible =
          LLVMBuildAnd(g->builder, all_visible, icmp(g, LLVMIntSLE, last_key, s->pos_first), "");
    if (spec->mask == ATTN_CPU_ATTENTION_MASK_SLIDING_WINDOW) {
      LLVMValueRef in_window = icmp(g, LLVMIntSGT, j0, sub(g, s->pos_last, a->window));
      LLVMValueRef sinks_only = icmp(g, LLVMIntSLT, last_key, a->sinks);
      all_visible = LLVMBuildAnd(g->builder, all_visible,
                                 LLVMBuildOr(g->builder, in_window, sinks_only, ""), "");
    }
    LLVMBasicBlockRef masked = new_block(g, "block.masked");
    LLVMBasicBlockRef softmax = new_block(g, "block.softmax");
    LLVMBuildCondBr(g->builder, all_visible, softmax, masked);
    LLVMPositionBuilderAtEnd(g->builder, masked);
    emit_mask(g, a, s, j0, nk);
    LLVMBuildBr(g->builder, softmax);
    LLVMPositionBuilderAtEnd(g->builder, softmax);
  }
  emit_softmax(g, a, s, nk);
  emit_values(g, s, vp, nk);
}

// The end of an item: out = Oᵀ / sum transposed (and lse), or the partial records.
static void emit_finish(attn_gen *g, const kernel_args *a, const item_state *s) {
  unsigned align = (unsigned)g->lanes * 4;
  bool sigmoid = g->spec->norm == ATTN_CPU_ATTENTION_NORM_SIGMOID;
  LLVMBasicBlockRef partial = new_block(g, "finish.partial");
  LLVMBasicBlockRef final = new_block(g, "finish.out");
  LLVMBasicBlockRef done = new_block(g, "finish.done");
  LLVMBuildCondBr(g->builder, LLVMBuildIsNotNull(g->builder, a->partial, ""), partial, final);

  LLVMPositionBuilderAtEnd(g->builder, partial);
  {
    int64_t record = g->dv + 2;
    counted_loop rows = loop_begin(g, i64c(g, 0), s->rows, "part.i");
    LLVMValueRef r = add(g, mul(g, add(g, s->q_row0, rows.iv), s->splits), s->split);
    LLVMValueRef base = mul(g, r, i64c(g, record));
    store_f32(g, load_f32(g, s->m, rows.iv), a->partial, base);
    store_f32(g, load_f32(g, s->l, rows.iv), a->partial, add(g, base, i64c(g, 1)));
    counted_loop ch = loop_begin(g, i64c(g, 0), i64c(g, g->dv), "part.c");
    LLVMValueRef o = load_f32(g, s->ot, add(g, mul(g, ch.iv, i64c(g, g->rows)), rows.iv));
    store_f32(g, o, a->partial, add(g, base, add(g, ch.iv, i64c(g, 2))));
    loop_end(g, &ch, 1, NULL, NULL, 0);
    loop_end(g, &rows, 1, NULL, NULL, 0);
    LLVMBuildBr(g->builder, done);
  }

  LLVMPositionBuilderAtEnd(g->builder, final);
  {
    // Per vector of rows: 1 / sum into alpha (0 for a row without a visible key, so it comes
    // out as zeros) and lse into m.
    counted_loop cols = loop_begin(g, i64c(g, 0), i64c(g, g->rows / g->lanes), "fin.c");
    LLVMValueRef col = mul(g, cols.iv, i64c(g, g->lanes));
    LLVMValueRef l = load_vector(g, s->l, col, align);
    LLVMValueRef any = LLVMBuildFCmp(g->builder, LLVMRealOGT, l, LLVMConstNull(g->vf32), "");
    LLVMValueRef inverse = sigmoid
                               ? f32_splat(g, 1.0)
                               : pick(g, any, LLVMBuildFDiv(g->builder, f32_splat(g, 1.0), l, ""),
                                      LLVMConstNull(g->vf32));
    store_vector(g, inverse, s->alpha, col, align);
    if (g->spec->lse) {
      // l is 0 or at least 1 (the max key weighs 1), so ln sees only normal numbers.
      LLVMValueRef safe_l = pick(g, any, l, f32_splat(g, 1.0));
      LLVMValueRef m = load_vector(g, s->m, col, align);
      LLVMValueRef lse = fma_vector(g, m, f32_splat(g, LN2), vector_ln(g, safe_l));
      store_vector(g, pick(g, any, lse, f32_splat(g, -(double)INFINITY)), s->m, col, align);
    }
    loop_end(g, &cols, 1, NULL, NULL, 0);

    counted_loop rows = loop_begin(g, i64c(g, 0), s->rows, "out.i");
    LLVMValueRef inverse_row = load_f32(g, s->alpha, rows.iv);
    LLVMValueRef out_base = mul(g, add(g, s->q_row0, rows.iv), i64c(g, g->dv));
    counted_loop ch = loop_begin(g, i64c(g, 0), i64c(g, g->dv), "out.c");
    LLVMValueRef o = load_f32(g, s->ot, add(g, mul(g, ch.iv, i64c(g, g->rows)), rows.iv));
    store_element(g, LLVMBuildFMul(g->builder, o, inverse_row, ""), a->out,
                  add(g, out_base, ch.iv));
    loop_end(g, &ch, 1, NULL, NULL, 0);
    if (g->spec->lse)
      store_f32(g, load_f32(g, s->m, rows.iv), a->lse, add(g, s->q_row0, rows.iv));
    loop_end(g, &rows, 1, NULL, NULL, 0);
    LLVMBuildBr(g->builder, done);
  }
  LLVMPositionBuilderAtEnd(g->builder, done);
}

static LLVMValueRef stack_buffer(attn_gen *g, LLVMTypeRef type, int64_t count, const char *name) {
  LLVMValueRef buffer =
      LLVMBuildAlloca(g->builder, LLVMArrayType2(type, (uint64_t)(count > 0 ? count : 1)), name);
  LLVMSetAlignment(buffer, 64);
  return buffer;
}

static void emit_function(attn_gen *g) {
  const attn_attention_spec *spec = g->spec;
  unsigned align = (unsigned)g->lanes * 4;
  LLVMBasicBlockRef entry = new_block(g, "entry");
  LLVMPositionBuilderAtEnd(g->builder, entry);
  item_state s = {0};
  s.qt = stack_buffer(g, g->f32, g->d * g->rows, "qt");
  s.st = stack_buffer(g, g->f32, (int64_t)BLOCK_KEYS * g->rows, "st");
  s.ot = stack_buffer(g, g->f32, g->dv * g->rows, "ot");
  s.m = stack_buffer(g, g->f32, g->rows, "m");
  s.l = stack_buffer(g, g->f32, g->rows, "l");
  s.alpha = stack_buffer(g, g->f32, g->rows, "alpha");
  if (spec->dtype == ATTN_CPU_ATTENTION_BF16) {
    s.kbuf = stack_buffer(g, g->f32, (int64_t)BLOCK_KEYS * g->d, "kbuf");
    s.vbuf = stack_buffer(g, g->f32, (int64_t)BLOCK_KEYS * g->dv, "vbuf");
  }

  kernel_args a;
  a.q = load_field(g, FIELD_Q, g->ptr);
  a.k = load_field(g, FIELD_K, g->ptr);
  a.v = load_field(g, FIELD_V, g->ptr);
  a.mask = load_field(g, FIELD_MASK, g->ptr);
  a.out = load_field(g, FIELD_OUT, g->ptr);
  a.lse = load_field(g, FIELD_LSE, g->ptr);
  a.partial = load_field(g, FIELD_PARTIAL, g->ptr);
  a.batch = load_field(g, FIELD_BATCH, g->i64);
  a.heads = load_field(g, FIELD_HEADS, g->i64);
  a.kv_heads = load_field(g, FIELD_KV_HEADS, g->i64);
  a.tq = load_field(g, FIELD_TQ, g->i64);
  a.tk = load_field(g, FIELD_TK, g->i64);
  a.window = load_field(g, FIELD_WINDOW, g->i64);
  a.sinks = load_field(g, FIELD_SINKS, g->i64);
  for (int i = 0; i < 4; i++)
    a.strides[i] = load_field(g, FIELD_MASK_STRIDES + i, g->i64);
  a.kv_splits = load_field(g, FIELD_KV_SPLITS, g->i64);
  a.kv_chunk = load_field(g, FIELD_KV_CHUNK, g->i64);
  LLVMValueRef scale = load_field(g, FIELD_SCALE, g->f64);
  LLVMValueRef bias = load_field(g, FIELD_SIGMOID_BIAS, g->f64);
  a.scale2 = LLVMBuildFPTrunc(
      g->builder, LLVMBuildFMul(g->builder, scale, LLVMConstReal(g->f64, LOG2E), ""), g->f32, "");
  a.bias2 = LLVMBuildFPTrunc(
      g->builder, LLVMBuildFMul(g->builder, bias, LLVMConstReal(g->f64, LOG2E), ""), g->f32, "");
  a.scale = LLVMBuildFPTrunc(g->builder, scale, g->f32, "");
  for (uint32_t c = 0; spec->score_mod && c < spec->capture_count; c++) {
    a.captures[c] = load_field(g, FIELD_CAPTURES + (int)c, g->ptr);
    for (uint32_t d = 0; d < spec->captures[c].rank; d++)
      a.capture_dims[c][d] = load_field(
          g, FIELD_CAPTURE_DIMS + (int)(c * ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK + d), g->i64);
  }

  LLVMValueRef split_keys = icmp(g, LLVMIntSGT, a.kv_splits, i64c(g, 1));
  s.splits = pick(g, split_keys, a.kv_splits, i64c(g, 1));
  LLVMValueRef chunk = pick(g, split_keys, a.kv_chunk, a.tk);
  LLVMValueRef q_blocks =
      LLVMBuildSDiv(g->builder, add(g, a.tq, i64c(g, g->rows - 1)), i64c(g, g->rows), "");
  LLVMValueRef group = LLVMBuildSDiv(g->builder, a.heads, a.kv_heads, "group");

  counted_loop items =
      loop_begin(g, LLVMGetParam(g->function, 1), LLVMGetParam(g->function, 2), "item");
  LLVMValueRef n = items.iv;
  s.split = LLVMBuildSRem(g->builder, n, s.splits, "split");
  LLVMValueRef rest = LLVMBuildSDiv(g->builder, n, s.splits, "");
  LLVMValueRef qb =
      sub(g, sub(g, q_blocks, i64c(g, 1)), LLVMBuildSRem(g->builder, rest, q_blocks, ""));
  LLVMValueRef bh = LLVMBuildSDiv(g->builder, rest, q_blocks, "bh");
  s.h = LLVMBuildSRem(g->builder, bh, a.heads, "h");
  s.b = LLVMBuildSDiv(g->builder, bh, a.heads, "b");
  LLVMValueRef kv_head = add(g, mul(g, s.b, a.kv_heads), LLVMBuildSDiv(g->builder, s.h, group, ""));
  s.i0 = mul(g, qb, i64c(g, g->rows));
  s.rows = smin(g, i64c(g, g->rows), sub(g, a.tq, s.i0));
  s.q_row0 = add(g, mul(g, bh, a.tq), s.i0);
  s.k_head = mul(g, mul(g, kv_head, a.tk), i64c(g, g->d));
  s.v_head = mul(g, mul(g, kv_head, a.tk), i64c(g, g->dv));
  s.pos_first = add(g, sub(g, a.tk, a.tq), s.i0);
  s.pos_last = sub(g, add(g, s.pos_first, s.rows), i64c(g, 1));
  if (spec->score_mod) {
    s.b_f = LLVMBuildSIToFP(g->builder, s.b, g->f32, "");
    s.h_f = LLVMBuildSIToFP(g->builder, s.h, g->f32, "");
    s.pos_first_f = LLVMBuildSIToFP(g->builder, s.pos_first, g->f32, "");
  }
  s.k_begin = mul(g, s.split, chunk);
  s.k_end = smin(g, a.tk, add(g, s.k_begin, chunk));
  if (spec->mask != ATTN_CPU_ATTENTION_MASK_NONE)
    s.k_end = smin(g, s.k_end, add(g, s.pos_last, i64c(g, 1)));

  emit_pack_q(g, &a, &s);
  counted_loop init = loop_begin(g, i64c(g, 0), i64c(g, g->rows / g->lanes), "init");
  LLVMValueRef col = mul(g, init.iv, i64c(g, g->lanes));
  store_vector(g, f32_splat(g, -(double)INFINITY), s.m, col, align);
  store_vector(g, LLVMConstNull(g->vf32), s.l, col, align);
  store_vector(g, f32_splat(g, 1.0), s.alpha, col, align);
  loop_end(g, &init, 1, NULL, NULL, 0);
  counted_loop zero = loop_begin(g, i64c(g, 0), i64c(g, g->dv * g->rows), "zero");
  store_vector(g, LLVMConstNull(g->vf32), s.ot, zero.iv, align);
  loop_end(g, &zero, g->lanes, NULL, NULL, 0);

  counted_loop blocks = loop_begin(g, s.k_begin, s.k_end, "block");
  LLVMValueRef j0 = blocks.iv;
  LLVMValueRef nk = smin(g, i64c(g, BLOCK_KEYS), sub(g, s.k_end, j0));
  LLVMBasicBlockRef next = new_block(g, "block.next");
  if (spec->mask == ATTN_CPU_ATTENTION_MASK_SLIDING_WINDOW) {
    // Skip blocks between the sinks and the window of the first row: all their keys are at or
    // below pos(i) - window for every row and not sinks.
    LLVMValueRef last_key = sub(g, add(g, j0, nk), i64c(g, 1));
    LLVMValueRef skip =
        LLVMBuildAnd(g->builder, icmp(g, LLVMIntSGE, j0, a.sinks),
                     icmp(g, LLVMIntSLE, last_key, sub(g, s.pos_first, a.window)), "skip");
    LLVMBasicBlockRef work = new_block(g, "block.work");
    LLVMBuildCondBr(g->builder, skip, next, work);
    LLVMPositionBuilderAtEnd(g->builder, work);
  }
  emit_block(g, &a, &s, j0, nk);
  LLVMBuildBr(g->builder, next);
  LLVMPositionBuilderAtEnd(g->builder, next);
  loop_end(g, &blocks, BLOCK_KEYS, NULL, NULL, 0);

  emit_finish(g, &a, &s);
  loop_end(g, &items, 1, NULL, NULL, 0);
  LLVMBuildRetVoid(g->builder);
}

attn_status attn_cpu_attention_generate(const attn_attention_spec *spec, attn_diag *diag,
                                        LLVMModuleRef *out_module,
                                        char out_name[ATTN_CPU_KERNEL_NAME_MAX]) {
  *out_module = NULL;
  out_name[0] = '\0';
  if (spec->vector_width != 8 && spec->vector_width != 16)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "attention: vector width %d is not 8 or 16", spec->vector_width);
  if (spec->head_dim < 1 || spec->head_dim > 512 || spec->value_dim < 1 || spec->value_dim > 512)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "attention: head dim %" PRId64 " or value dim %" PRId64
                           " outside 1..512",
                           spec->head_dim, spec->value_dim);
  if ((unsigned)spec->mask >= ATTN_CPU_ATTENTION_MASK_COUNT ||
      (unsigned)spec->mask_tensor >= ATTN_CPU_ATTENTION_MASK_TENSOR_COUNT ||
      (unsigned)spec->norm >= ATTN_CPU_ATTENTION_NORM_COUNT ||
      (unsigned)spec->dtype >= ATTN_CPU_ATTENTION_DTYPE_COUNT)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "attention: unknown mask, mask tensor, norm or dtype");
  if (spec->score_mod) {
    if (spec->capture_count > ATTN_CPU_ATTENTION_MAX_CAPTURES)
      return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                             "attention: the score mod captures %u tensors, more than %d",
                             spec->capture_count, ATTN_CPU_ATTENTION_MAX_CAPTURES);
    for (uint32_t c = 0; c < spec->capture_count; c++) {
      if (spec->captures[c].rank > ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK)
        return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_UNSUPPORTED,
                               "attention: capture %u of the score mod has %u dims, more than %d",
                               c, spec->captures[c].rank, ATTN_CPU_ATTENTION_MAX_CAPTURE_RANK);
      if ((unsigned)spec->captures[c].dtype >= ATTN_DTYPE_COUNT)
        return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                               "attention: capture %u of the score mod has an unknown dtype", c);
    }
    ATTN_RETURN_IF_ERROR(validate_expr(spec, spec->score_mod, 0, diag));
  }
  snprintf(out_name, ATTN_CPU_KERNEL_NAME_MAX, "attn_attention_%016" PRIx64,
           attn_attention_spec_hash(spec));

  attn_gen g = {.spec = spec, .lanes = spec->vector_width};
  g.d = spec->head_dim;
  g.dv = spec->value_dim;
  g.rows = attn_cpu_attention_block_rows(g.lanes);
  g.context = LLVMContextCreate();
  g.module = LLVMModuleCreateWithNameInContext(out_name, g.context);
  g.builder = LLVMCreateBuilderInContext(g.context);
  g.f32 = LLVMFloatTypeInContext(g.context);
  g.f64 = LLVMDoubleTypeInContext(g.context);
  g.i1 = LLVMInt1TypeInContext(g.context);
  g.i8 = LLVMInt8TypeInContext(g.context);
  g.i16 = LLVMInt16TypeInContext(g.context);
  g.i32 = LLVMInt32TypeInContext(g.context);
  g.i64 = LLVMInt64TypeInContext(g.context);
  g.ptr = LLVMPointerTypeInContext(g.context, 0);
  g.element = spec->dtype == ATTN_CPU_ATTENTION_BF16 ? g.i16 : g.f32;
  g.vf32 = LLVMVectorType(g.f32, (unsigned)g.lanes);
  g.vi1 = LLVMVectorType(g.i1, (unsigned)g.lanes);
  g.vi8 = LLVMVectorType(g.i8, (unsigned)g.lanes);
  g.vi32 = LLVMVectorType(g.i32, (unsigned)g.lanes);
  g.vi64 = LLVMVectorType(g.i64, (unsigned)g.lanes);

  LLVMTypeRef params[] = {g.ptr, g.i64, g.i64};
  LLVMTypeRef type = LLVMFunctionType(LLVMVoidTypeInContext(g.context), params, 3, 0);
  g.function = LLVMAddFunction(g.module, out_name, type);
  static const char *const param_names[] = {"args", "item_begin", "item_end"};
  for (unsigned i = 0; i < 3; i++)
    LLVMSetValueName2(LLVMGetParam(g.function, i), param_names[i], strlen(param_names[i]));
  emit_function(&g);
  LLVMDisposeBuilder(g.builder);
  *out_module = g.module;
  return ATTN_OK;
}
