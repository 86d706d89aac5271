// The f32 GEMM generator: builds, with the LLVM IRBuilder, one function per attn_gemm_spec
// (layout and semantics in kernels.h). Loop nest: blocks of rows; in each, column panels of 2
// vectors; in each, blocks of k whose part of B is packed into an L1-sized buffer; in each,
// register tiles of ATTN_GEMM_TILE_ROWS rows whose accumulators stay in registers across the k
// loop. After the last k block comes the epilogue, then plain stores (full tiles) or masked ones.
// The transcendental activations are vector polynomials (no libm calls), so they stay vectorised.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codegen/cpu/kernels.h"

enum { VECTORS_PER_TILE = 2, TILE_ROWS = ATTN_GEMM_TILE_ROWS, ROW_BLOCK_TILES = 32 };

const char *attn_cpu_activation_name(attn_cpu_activation activation) {
  switch (activation) {
  case ATTN_CPU_ACTIVATION_NONE:
    return "none";
  case ATTN_CPU_ACTIVATION_RELU:
    return "relu";
  case ATTN_CPU_ACTIVATION_GELU_TANH:
    return "gelu_tanh";
  case ATTN_CPU_ACTIVATION_GELU_ERF:
    return "gelu_erf";
  case ATTN_CPU_ACTIVATION_SILU:
    return "silu";
  case ATTN_CPU_ACTIVATION_COUNT:
    break;
  }
  return "?";
}

uint64_t attn_gemm_spec_hash(const attn_gemm_spec *spec) {
  const uint8_t bytes[] = {
      'g',
      'e',
      'm',
      'm',
      1, // layout version: bump when the kernel's signature or semantics change
      (uint8_t)spec->transpose_a,
      (uint8_t)spec->transpose_b,
      (uint8_t)spec->bias,
      (uint8_t)spec->activation,
      (uint8_t)spec->residual,
      (uint8_t)spec->vector_width,
  };
  uint64_t hash = UINT64_C(0xcbf29ce484222325);
  for (size_t i = 0; i < sizeof(bytes); i++) {
    hash ^= bytes[i];
    hash *= UINT64_C(0x100000001b3);
  }
  return hash;
}

// The state of one generation: the module under construction and the types it uses.
typedef struct gemm_gen {
  const attn_gemm_spec *spec;
  LLVMContextRef context;
  LLVMModuleRef module;
  LLVMBuilderRef builder;
  LLVMValueRef function;
  int lanes;
  LLVMTypeRef f32, i1, i32, i64, ptr;
  LLVMTypeRef vf32, vi1, vi32, vi64; // vectors of `lanes`
} gemm_gen;

// ---- small IR helpers -----------------------------------------------------------------------

static LLVMValueRef i64_const(gemm_gen *g, int64_t value) {
  return LLVMConstInt(g->i64, (unsigned long long)value, 1);
}

static LLVMValueRef splat_constant(gemm_gen *g, LLVMValueRef scalar) {
  LLVMValueRef elements[16];
  for (int i = 0; i < g->lanes; i++)
    elements[i] = scalar;
  return LLVMConstVector(elements, (unsigned)g->lanes);
}

static LLVMValueRef f32_splat(gemm_gen *g, double value) {
  return splat_constant(g, LLVMConstReal(g->f32, value));
}

static LLVMValueRef i32_splat(gemm_gen *g, int32_t value) {
  return splat_constant(g, LLVMConstInt(g->i32, (unsigned long long)(int64_t)value, 1));
}

// <0, 1, ..., lanes-1> + offset, as i64.
static LLVMValueRef lane_indices(gemm_gen *g, int64_t offset) {
  LLVMValueRef elements[16];
  for (int i = 0; i < g->lanes; i++)
    elements[i] = i64_const(g, offset + i);
  return LLVMConstVector(elements, (unsigned)g->lanes);
}

// A run-time scalar broadcast to every lane.
static LLVMValueRef splat(gemm_gen *g, LLVMValueRef scalar, LLVMTypeRef vector_type,
                          const char *name) {
  LLVMValueRef one = LLVMBuildInsertElement(g->builder, LLVMGetPoison(vector_type), scalar,
                                            LLVMConstInt(g->i32, 0, 0), "");
  LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(g->i32, (unsigned)g->lanes));
  return LLVMBuildShuffleVector(g->builder, one, LLVMGetPoison(vector_type), zeros, name);
}

static LLVMValueRef call_intrinsic(gemm_gen *g, const char *name, LLVMTypeRef *overloads,
                                   size_t overload_count, LLVMValueRef *args, unsigned arg_count,
                                   const char *result_name) {
  unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
  LLVMValueRef declaration = LLVMGetIntrinsicDeclaration(g->module, id, overloads, overload_count);
  LLVMTypeRef type = LLVMIntrinsicGetType(g->context, id, overloads, overload_count);
  return LLVMBuildCall2(g->builder, type, declaration, args, arg_count, result_name);
}

static void set_pointer_alignment(gemm_gen *g, LLVMValueRef call, unsigned argument,
                                  uint64_t alignment) {
  unsigned kind = LLVMGetEnumAttributeKindForName("align", 5);
  // Attribute indices: 0 is the return value, argument i is i + 1.
  LLVMAddCallSiteAttribute(call, argument + 1,
                           LLVMCreateEnumAttribute(g->context, kind, alignment));
}

static LLVMValueRef fma_vector(gemm_gen *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
  LLVMValueRef args[] = {a, b, c};
  return call_intrinsic(g, "llvm.fma", &g->vf32, 1, args, 3, "");
}

static LLVMValueRef masked_load(gemm_gen *g, LLVMValueRef pointer, LLVMValueRef mask,
                                const char *name) {
  LLVMTypeRef overloads[] = {g->vf32, g->ptr};
  LLVMValueRef args[] = {pointer, mask, LLVMConstNull(g->vf32)};
  LLVMValueRef call = call_intrinsic(g, "llvm.masked.load", overloads, 2, args, 3, name);
  set_pointer_alignment(g, call, 0, 4);
  return call;
}

static void masked_store(gemm_gen *g, LLVMValueRef value, LLVMValueRef pointer, LLVMValueRef mask) {
  LLVMTypeRef overloads[] = {g->vf32, g->ptr};
  LLVMValueRef args[] = {value, pointer, mask};
  LLVMValueRef call = call_intrinsic(g, "llvm.masked.store", overloads, 2, args, 3, "");
  set_pointer_alignment(g, call, 1, 4);
}

static LLVMValueRef masked_gather(gemm_gen *g, LLVMValueRef pointers, LLVMValueRef mask,
                                  const char *name) {
  LLVMTypeRef overloads[] = {g->vf32, LLVMVectorType(g->ptr, (unsigned)g->lanes)};
  LLVMValueRef args[] = {pointers, mask, LLVMConstNull(g->vf32)};
  LLVMValueRef call = call_intrinsic(g, "llvm.masked.gather", overloads, 2, args, 3, name);
  set_pointer_alignment(g, call, 0, 4);
  return call;
}

static LLVMValueRef f32_at(gemm_gen *g, LLVMValueRef base, LLVMValueRef index, const char *name) {
  return LLVMBuildGEP2(g->builder, g->f32, base, &index, 1, name);
}

static LLVMValueRef smin(gemm_gen *g, LLVMValueRef a, LLVMValueRef b, const char *name) {
  return LLVMBuildSelect(g->builder, LLVMBuildICmp(g->builder, LLVMIntSLT, a, b, ""), a, b, name);
}

// A counted loop `for (iv = begin; iv < end; iv += step)`. loop_begin leaves the builder in the
// body; loop_end closes it and leaves the builder after the loop. Values carried around the loop
// are extra phis in `header`, which dominates the code after the loop.
typedef struct counted_loop {
  LLVMBasicBlockRef header, body, exit;
  LLVMValueRef iv;
} counted_loop;

static counted_loop loop_begin(gemm_gen *g, LLVMValueRef begin, LLVMValueRef end,
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
  LLVMValueRef more = LLVMBuildICmp(g->builder, LLVMIntSLT, loop.iv, end, "");
  LLVMBuildCondBr(g->builder, more, loop.body, loop.exit);
  LLVMPositionBuilderAtEnd(g->builder, loop.body);
  return loop;
}

// A phi in the loop's header for a value carried around it, `initial` on entry. Call it right
// after loop_begin, before anything else is built in the body.
static LLVMValueRef loop_carried(gemm_gen *g, counted_loop *loop, LLVMValueRef initial,
                                 const char *name) {
  LLVMBasicBlockRef body_position = LLVMGetInsertBlock(g->builder);
  LLVMPositionBuilderBefore(g->builder, LLVMGetFirstInstruction(loop->header));
  LLVMValueRef phi = LLVMBuildPhi(g->builder, LLVMTypeOf(initial), name);
  // The header's only predecessor so far is the preheader, the iv phi's first incoming block.
  LLVMBasicBlockRef preheader = LLVMGetIncomingBlock(loop->iv, 0);
  LLVMAddIncoming(phi, &initial, &preheader, 1);
  LLVMPositionBuilderAtEnd(g->builder, body_position);
  return phi;
}

static void loop_end(gemm_gen *g, counted_loop *loop, LLVMValueRef step, LLVMValueRef *carried,
                     LLVMValueRef *carried_next, size_t carried_count) {
  LLVMBasicBlockRef latch = LLVMGetInsertBlock(g->builder);
  LLVMValueRef next = LLVMBuildNSWAdd(g->builder, loop->iv, step, "");
  LLVMAddIncoming(loop->iv, &next, &latch, 1);
  for (size_t i = 0; i < carried_count; i++)
    LLVMAddIncoming(carried[i], &carried_next[i], &latch, 1);
  LLVMBuildBr(g->builder, loop->header);
  LLVMPositionBuilderAtEnd(g->builder, loop->exit);
}

// ---- activations ----------------------------------------------------------------------------

static LLVMValueRef fmul(gemm_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFMul(g->builder, a, b, "");
}

static LLVMValueRef fadd(gemm_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildFAdd(g->builder, a, b, "");
}

// select(x < bound, bound, x) and its mirror: NaN passes through both.
static LLVMValueRef clamp(gemm_gen *g, LLVMValueRef x, double low, double high) {
  LLVMValueRef lo = f32_splat(g, low), hi = f32_splat(g, high);
  x = LLVMBuildSelect(g->builder, LLVMBuildFCmp(g->builder, LLVMRealOLT, x, lo, ""), lo, x, "");
  return LLVMBuildSelect(g->builder, LLVMBuildFCmp(g->builder, LLVMRealOGT, x, hi, ""), hi, x, "");
}

// exp(x) for a vector, after Cephes expf: n = floor(x log2(e) + 1/2), r = x - n ln2 (ln2 split in
// two parts so n ln2 is exact enough), exp(r) by a degree-6 polynomial on |r| <= ln2/2, times 2^n
// built in the exponent bits. Within a few ulp for x in [-87.3, 88.3]; the input is clamped
// there, so larger arguments give about 2.4e38 and smaller ones about 1.2e-38.
static LLVMValueRef vector_exp(gemm_gen *g, LLVMValueRef x) {
  x = clamp(g, x, -87.3365447505531, 88.3762626647949);
  LLVMValueRef n = fadd(g, fmul(g, x, f32_splat(g, 1.44269504088896341)), f32_splat(g, 0.5));
  n = call_intrinsic(g, "llvm.floor", &g->vf32, 1, &n, 1, "");
  LLVMValueRef r = LLVMBuildFSub(g->builder, x, fmul(g, n, f32_splat(g, 0.693359375)), "");
  r = LLVMBuildFSub(g->builder, r, fmul(g, n, f32_splat(g, -2.12194440e-4)), "");
  static const double coefficients[] = {1.9875691500E-4, 1.3981999507E-3, 8.3334519073E-3,
                                        4.1665795894E-2, 1.6666665459E-1, 5.0000001201E-1};
  LLVMValueRef p = f32_splat(g, coefficients[0]);
  for (size_t i = 1; i < sizeof(coefficients) / sizeof(coefficients[0]); i++)
    p = fadd(g, fmul(g, p, r), f32_splat(g, coefficients[i]));
  p = fadd(g, fadd(g, fmul(g, p, fmul(g, r, r)), r), f32_splat(g, 1.0));
  // 2^n: n + 127 in the exponent field. The clamp of x keeps n in [-126, 127] (in f32 the
  // bounds give n = -126 and n = 127), so 2^n is a normal number.
  LLVMValueRef exponent = LLVMBuildFPToSI(g->builder, n, g->vi32, "");
  exponent = LLVMBuildAdd(g->builder, exponent, i32_splat(g, 127), "");
  exponent = LLVMBuildShl(g->builder, exponent, i32_splat(g, 23), "");
  return fmul(g, p, LLVMBuildBitCast(g->builder, exponent, g->vf32, ""));
}

// x / (1 + exp(-z)), which is x * sigmoid(z) without cancellation for large |z|.
static LLVMValueRef times_sigmoid(gemm_gen *g, LLVMValueRef x, LLVMValueRef z) {
  LLVMValueRef e = vector_exp(g, LLVMBuildFNeg(g->builder, z, ""));
  return LLVMBuildFDiv(g->builder, x, fadd(g, f32_splat(g, 1.0), e), "");
}

// erf(x) as the rational approximation of Eigen's generic_fast_erf_float (also XLA's): an odd
// degree-13 numerator over an even degree-8 denominator on x clamped to [-4, 4], where f32 erf
// is +-1. Absolute error below 1e-7.
static LLVMValueRef vector_erf(gemm_gen *g, LLVMValueRef x) {
  static const double alpha[] = {
      -2.72614225801306e-10, 2.77068142495902e-08,  -2.10102402082508e-06, -5.69250639462346e-05,
      -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02};
  static const double beta[] = {-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
                                -7.37332916720468e-03, -1.42647390514189e-02};
  x = clamp(g, x, -4.0, 4.0);
  LLVMValueRef x2 = fmul(g, x, x);
  LLVMValueRef p = f32_splat(g, alpha[0]);
  for (size_t i = 1; i < sizeof(alpha) / sizeof(alpha[0]); i++)
    p = fadd(g, fmul(g, p, x2), f32_splat(g, alpha[i]));
  p = fmul(g, p, x);
  LLVMValueRef q = f32_splat(g, beta[0]);
  for (size_t i = 1; i < sizeof(beta) / sizeof(beta[0]); i++)
    q = fadd(g, fmul(g, q, x2), f32_splat(g, beta[i]));
  return LLVMBuildFDiv(g->builder, p, q, "");
}

static LLVMValueRef activation(gemm_gen *g, LLVMValueRef x) {
  switch (g->spec->activation) {
  case ATTN_CPU_ACTIVATION_NONE:
  case ATTN_CPU_ACTIVATION_COUNT:
    return x;
  case ATTN_CPU_ACTIVATION_RELU: {
    LLVMValueRef zero = LLVMConstNull(g->vf32);
    LLVMValueRef positive = LLVMBuildFCmp(g->builder, LLVMRealOGT, x, zero, "");
    return LLVMBuildSelect(g->builder, positive, x, zero, "relu");
  }
  case ATTN_CPU_ACTIVATION_GELU_TANH: {
    // 0.5 x (1 + tanh(y)) = x sigmoid(2y), y = sqrt(2/pi) (x + 0.044715 x^3).
    LLVMValueRef x3 = fmul(g, fmul(g, x, x), x);
    LLVMValueRef y = fadd(g, x, fmul(g, x3, f32_splat(g, 0.044715)));
    LLVMValueRef two_y = fmul(g, y, f32_splat(g, 2.0 * 0.79788456080286535588));
    return times_sigmoid(g, x, two_y);
  }
  case ATTN_CPU_ACTIVATION_GELU_ERF: {
    LLVMValueRef e = vector_erf(g, fmul(g, x, f32_splat(g, 0.70710678118654752440)));
    return fmul(g, fmul(g, x, f32_splat(g, 0.5)), fadd(g, f32_splat(g, 1.0), e));
  }
  case ATTN_CPU_ACTIVATION_SILU:
    return times_sigmoid(g, x, x);
  }
  return x;
}

// ---- the kernel -----------------------------------------------------------------------------

enum {
  ARG_A,
  ARG_B,
  ARG_C,
  ARG_M,
  ARG_N,
  ARG_K,
  ARG_LDA,
  ARG_LDB,
  ARG_LDC,
  ARG_BIAS,
  ARG_RESIDUAL,
  ARG_LDR,
  ARG_ROW_BEGIN,
  ARG_ROW_END,
  ARG_COUNT
};

// Packs B[k0 : k0 + kc, j0 : j0 + panel_width) into `panel` as kc rows of panel_width floats,
// with the columns at and beyond n zero-filled (`column_mask` marks the valid lanes of each
// vector).
static void emit_pack_panel(gemm_gen *g, LLVMValueRef panel, LLVMValueRef k0, LLVMValueRef kc,
                            LLVMValueRef j0, const LLVMValueRef *column_mask) {
  LLVMValueRef b = LLVMGetParam(g->function, ARG_B);
  LLVMValueRef ldb = LLVMGetParam(g->function, ARG_LDB);
  int64_t panel_width = (int64_t)VECTORS_PER_TILE * g->lanes;
  counted_loop loop = loop_begin(g, i64_const(g, 0), kc, "pack.kk");
  LLVMValueRef kk = LLVMBuildNSWAdd(g->builder, k0, loop.iv, "");
  LLVMValueRef row = LLVMBuildNSWMul(g->builder, loop.iv, i64_const(g, panel_width), "");
  for (int v = 0; v < VECTORS_PER_TILE; v++) {
    LLVMValueRef column = LLVMBuildNSWAdd(g->builder, j0, i64_const(g, (int64_t)v * g->lanes), "");
    LLVMValueRef values;
    if (g->spec->transpose_b) {
      // B[kk, j] = b[j * ldb + kk]: one gather down the columns of the panel.
      LLVMValueRef columns =
          LLVMBuildAdd(g->builder, splat(g, column, g->vi64, ""), lane_indices(g, 0), "");
      LLVMValueRef index = LLVMBuildAdd(
          g->builder, LLVMBuildMul(g->builder, columns, splat(g, ldb, g->vi64, ""), ""),
          splat(g, kk, g->vi64, ""), "");
      LLVMValueRef pointers = LLVMBuildGEP2(g->builder, g->f32, b, &index, 1, "");
      values = masked_gather(g, pointers, column_mask[v], "b.t");
    } else {
      LLVMValueRef index =
          LLVMBuildNSWAdd(g->builder, LLVMBuildNSWMul(g->builder, kk, ldb, ""), column, "");
      values = masked_load(g, f32_at(g, b, index, ""), column_mask[v], "b");
    }
    LLVMValueRef slot = LLVMBuildNSWAdd(g->builder, row, i64_const(g, (int64_t)v * g->lanes), "");
    LLVMValueRef store = LLVMBuildStore(g->builder, values, f32_at(g, panel, slot, ""));
    LLVMSetAlignment(store, (unsigned)(g->lanes * 4));
  }
  loop_end(g, &loop, i64_const(g, 1), NULL, NULL, 0);
}

// The epilogue of one accumulator vector: act(x + bias) + residual.
static LLVMValueRef emit_epilogue(gemm_gen *g, LLVMValueRef x, LLVMValueRef bias_vector,
                                  LLVMValueRef row, LLVMValueRef column, LLVMValueRef mask) {
  if (g->spec->bias)
    x = fadd(g, x, bias_vector);
  x = activation(g, x);
  if (g->spec->residual) {
    LLVMValueRef residual = LLVMGetParam(g->function, ARG_RESIDUAL);
    LLVMValueRef ldr = LLVMGetParam(g->function, ARG_LDR);
    LLVMValueRef index =
        LLVMBuildNSWAdd(g->builder, LLVMBuildNSWMul(g->builder, row, ldr, ""), column, "");
    x = fadd(g, x, masked_load(g, f32_at(g, residual, index, ""), mask, "residual"));
  }
  return x;
}

// One register tile: rows i0 .. i0 + TILE_ROWS (rows at or past row_end recompute row_end - 1
// and store nothing) times the packed panel of B[k0 : k0 + kc, j0 : j0 + panel width). The first
// k block starts from zero, later ones from the partial sums they find in c; the last one applies
// the epilogue. Partial sums round to f32 exactly as they would in a register, so the blocking
// does not change the result.
static void emit_tile(gemm_gen *g, LLVMValueRef panel, LLVMValueRef i0, LLVMValueRef j0,
                      LLVMValueRef k0, LLVMValueRef kc, const LLVMValueRef *column_mask) {
  LLVMValueRef a = LLVMGetParam(g->function, ARG_A);
  LLVMValueRef c = LLVMGetParam(g->function, ARG_C);
  LLVMValueRef k = LLVMGetParam(g->function, ARG_K);
  LLVMValueRef lda = LLVMGetParam(g->function, ARG_LDA);
  LLVMValueRef ldc = LLVMGetParam(g->function, ARG_LDC);
  LLVMValueRef row_end = LLVMGetParam(g->function, ARG_ROW_END);
  LLVMValueRef last_row = LLVMBuildNSWSub(g->builder, row_end, i64_const(g, 1), "last_row");
  int64_t panel_width = (int64_t)VECTORS_PER_TILE * g->lanes;

  LLVMValueRef row[TILE_ROWS], a_row[TILE_ROWS];
  LLVMValueRef column[VECTORS_PER_TILE], mask[TILE_ROWS][VECTORS_PER_TILE];
  LLVMValueRef c_at[TILE_ROWS][VECTORS_PER_TILE];
  LLVMValueRef no_lanes = LLVMConstNull(g->vi1);
  for (int v = 0; v < VECTORS_PER_TILE; v++)
    column[v] = LLVMBuildNSWAdd(g->builder, j0, i64_const(g, (int64_t)v * g->lanes), "");
  for (int r = 0; r < TILE_ROWS; r++) {
    LLVMValueRef wanted = LLVMBuildNSWAdd(g->builder, i0, i64_const(g, r), "");
    LLVMValueRef row_valid = LLVMBuildICmp(g->builder, LLVMIntSLT, wanted, row_end, "");
    row[r] = smin(g, wanted, last_row, "row");
    // A[row, kk] is a_row[r][kk] (stride 1), or a_row[r][kk * lda] with transpose_a.
    LLVMValueRef offset =
        g->spec->transpose_a ? row[r] : LLVMBuildNSWMul(g->builder, row[r], lda, "");
    a_row[r] = f32_at(g, a, offset, "a.row");
    LLVMValueRef c_row = LLVMBuildNSWMul(g->builder, row[r], ldc, "");
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      mask[r][v] = LLVMBuildSelect(g->builder, row_valid, column_mask[v], no_lanes, "mask");
      c_at[r][v] = f32_at(g, c, LLVMBuildNSWAdd(g->builder, c_row, column[v], ""), "c");
    }
  }

  LLVMValueRef first_block = LLVMBuildICmp(g->builder, LLVMIntEQ, k0, i64_const(g, 0), "");
  LLVMValueRef initial[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      initial[r][v] = LLVMBuildSelect(g->builder, first_block, LLVMConstNull(g->vf32),
                                      masked_load(g, c_at[r][v], mask[r][v], "partial"), "");

  counted_loop loop = loop_begin(g, i64_const(g, 0), kc, "kk");
  LLVMValueRef acc[TILE_ROWS][VECTORS_PER_TILE], next[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      acc[r][v] = loop_carried(g, &loop, initial[r][v], "acc");
  LLVMValueRef panel_row = LLVMBuildNSWMul(g->builder, loop.iv, i64_const(g, panel_width), "");
  LLVMValueRef b_vector[VECTORS_PER_TILE];
  for (int v = 0; v < VECTORS_PER_TILE; v++) {
    LLVMValueRef slot =
        LLVMBuildNSWAdd(g->builder, panel_row, i64_const(g, (int64_t)v * g->lanes), "");
    b_vector[v] = LLVMBuildLoad2(g->builder, g->vf32, f32_at(g, panel, slot, ""), "b");
    LLVMSetAlignment(b_vector[v], (unsigned)(g->lanes * 4));
  }
  LLVMValueRef kk = LLVMBuildNSWAdd(g->builder, k0, loop.iv, "");
  LLVMValueRef a_offset = g->spec->transpose_a ? LLVMBuildNSWMul(g->builder, kk, lda, "") : kk;
  for (int r = 0; r < TILE_ROWS; r++) {
    LLVMValueRef a_value =
        LLVMBuildLoad2(g->builder, g->f32, f32_at(g, a_row[r], a_offset, ""), "a");
    LLVMValueRef a_vector = splat(g, a_value, g->vf32, "a.splat");
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      next[r][v] = fma_vector(g, a_vector, b_vector[v], acc[r][v]);
  }
  loop_end(g, &loop, i64_const(g, 1), &acc[0][0], &next[0][0],
           (size_t)TILE_ROWS * VECTORS_PER_TILE);

  // Not the last k block: the partial sums go back to c. The last: the epilogue. Full tiles store
  // with plain vector stores: masked stores are slow on some CPUs (microcoded on AMD Zen).
  LLVMBasicBlockRef partial = LLVMAppendBasicBlockInContext(g->context, g->function, "partial");
  LLVMBasicBlockRef epilogue = LLVMAppendBasicBlockInContext(g->context, g->function, "epilogue");
  LLVMBasicBlockRef store = LLVMAppendBasicBlockInContext(g->context, g->function, "store");
  LLVMBasicBlockRef store_full =
      LLVMAppendBasicBlockInContext(g->context, g->function, "store.full");
  LLVMBasicBlockRef store_masked =
      LLVMAppendBasicBlockInContext(g->context, g->function, "store.masked");
  LLVMBasicBlockRef stored = LLVMAppendBasicBlockInContext(g->context, g->function, "stored");
  LLVMValueRef k_end = LLVMBuildNSWAdd(g->builder, k0, kc, "");
  LLVMBuildCondBr(g->builder, LLVMBuildICmp(g->builder, LLVMIntSGE, k_end, k, "last_block"),
                  epilogue, partial);

  LLVMPositionBuilderAtEnd(g->builder, partial);
  LLVMBuildBr(g->builder, store);

  LLVMPositionBuilderAtEnd(g->builder, epilogue);
  LLVMValueRef bias_vector[VECTORS_PER_TILE] = {0};
  if (g->spec->bias) {
    LLVMValueRef bias = LLVMGetParam(g->function, ARG_BIAS);
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      bias_vector[v] = masked_load(g, f32_at(g, bias, column[v], ""), column_mask[v], "bias");
  }
  LLVMValueRef result[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      result[r][v] = emit_epilogue(g, acc[r][v], bias_vector[v], row[r], column[v], mask[r][v]);
  LLVMBasicBlockRef epilogue_end = LLVMGetInsertBlock(g->builder);
  LLVMBuildBr(g->builder, store);

  LLVMPositionBuilderAtEnd(g->builder, store);
  LLVMValueRef out[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++) {
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      out[r][v] = LLVMBuildPhi(g->builder, g->vf32, "out");
      LLVMValueRef values[] = {acc[r][v], result[r][v]};
      LLVMBasicBlockRef blocks[] = {partial, epilogue_end};
      LLVMAddIncoming(out[r][v], values, blocks, 2);
    }
  }
  LLVMValueRef rows_full =
      LLVMBuildICmp(g->builder, LLVMIntSLE,
                    LLVMBuildNSWAdd(g->builder, i0, i64_const(g, TILE_ROWS), ""), row_end, "");
  LLVMValueRef columns_full = LLVMBuildICmp(
      g->builder, LLVMIntSLE, LLVMBuildNSWAdd(g->builder, j0, i64_const(g, panel_width), ""),
      LLVMGetParam(g->function, ARG_N), "");
  LLVMBuildCondBr(g->builder, LLVMBuildAnd(g->builder, rows_full, columns_full, "full"), store_full,
                  store_masked);

  LLVMPositionBuilderAtEnd(g->builder, store_full);
  for (int r = 0; r < TILE_ROWS; r++) {
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      LLVMValueRef plain = LLVMBuildStore(g->builder, out[r][v], c_at[r][v]);
      LLVMSetAlignment(plain, 4);
    }
  }
  LLVMBuildBr(g->builder, stored);

  LLVMPositionBuilderAtEnd(g->builder, store_masked);
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      masked_store(g, out[r][v], c_at[r][v], mask[r][v]);
  LLVMBuildBr(g->builder, stored);
  LLVMPositionBuilderAtEnd(g->builder, stored);
}

// 16 KiB of panel, which stays in L1 across the row tiles.
int64_t attn_gemm_k_block(int vector_width) {
  return 16 * 1024 / (4 * VECTORS_PER_TILE * vector_width);
}

static void emit_function(gemm_gen *g) {
  LLVMValueRef n = LLVMGetParam(g->function, ARG_N);
  LLVMValueRef k = LLVMGetParam(g->function, ARG_K);
  LLVMValueRef row_begin = LLVMGetParam(g->function, ARG_ROW_BEGIN);
  LLVMValueRef row_end = LLVMGetParam(g->function, ARG_ROW_END);
  int64_t panel_width = (int64_t)VECTORS_PER_TILE * g->lanes;
  int64_t kc_max = attn_gemm_k_block(g->lanes);

  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(g->context, g->function, "entry");
  LLVMPositionBuilderAtEnd(g->builder, entry);
  LLVMTypeRef panel_type = LLVMArrayType2(g->f32, (uint64_t)(kc_max * panel_width));
  LLVMValueRef panel = LLVMBuildAlloca(g->builder, panel_type, "panel");
  LLVMSetAlignment(panel, 64);
  // With k = 0 one k block of zero rows still runs, so that c gets the epilogue of 0.
  LLVMValueRef k_blocks_end =
      LLVMBuildSelect(g->builder, LLVMBuildICmp(g->builder, LLVMIntSGT, k, i64_const(g, 0), ""), k,
                      i64_const(g, 1), "k_blocks_end");

  // Rows in blocks of ROW_BLOCK_TILES tiles, so that the block's part of A stays in L2 while
  // every column panel of B passes by it (B is packed once per row block).
  counted_loop row_blocks = loop_begin(g, row_begin, row_end, "ib");
  LLVMValueRef block_end = smin(
      g, LLVMBuildNSWAdd(g->builder, row_blocks.iv, i64_const(g, ROW_BLOCK_TILES * TILE_ROWS), ""),
      row_end, "block_end");
  counted_loop columns = loop_begin(g, i64_const(g, 0), n, "j0");
  LLVMValueRef j0 = columns.iv;
  LLVMValueRef remaining = splat(g, LLVMBuildNSWSub(g->builder, n, j0, ""), g->vi64, "");
  LLVMValueRef column_mask[VECTORS_PER_TILE];
  for (int v = 0; v < VECTORS_PER_TILE; v++)
    column_mask[v] = LLVMBuildICmp(g->builder, LLVMIntSLT, lane_indices(g, (int64_t)v * g->lanes),
                                   remaining, "column_mask");
  counted_loop blocks = loop_begin(g, i64_const(g, 0), k_blocks_end, "k0");
  LLVMValueRef k0 = blocks.iv;
  LLVMValueRef kc = smin(g, LLVMBuildNSWSub(g->builder, k, k0, ""), i64_const(g, kc_max), "kc");
  emit_pack_panel(g, panel, k0, kc, j0, column_mask);
  counted_loop rows = loop_begin(g, row_blocks.iv, block_end, "i0");
  emit_tile(g, panel, rows.iv, j0, k0, kc, column_mask);
  loop_end(g, &rows, i64_const(g, TILE_ROWS), NULL, NULL, 0);
  loop_end(g, &blocks, i64_const(g, kc_max), NULL, NULL, 0);
  loop_end(g, &columns, i64_const(g, panel_width), NULL, NULL, 0);
  loop_end(g, &row_blocks, i64_const(g, ROW_BLOCK_TILES * TILE_ROWS), NULL, NULL, 0);
  LLVMBuildRetVoid(g->builder);
}

attn_status attn_cpu_gemm_generate(const attn_gemm_spec *spec, attn_diag *diag,
                                   LLVMModuleRef *out_module,
                                   char out_name[ATTN_CPU_KERNEL_NAME_MAX]) {
  *out_module = NULL;
  out_name[0] = '\0';
  if (spec->vector_width != 8 && spec->vector_width != 16)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "gemm: vector width %d is not 8 or 16", spec->vector_width);
  if ((unsigned)spec->activation >= ATTN_CPU_ACTIVATION_COUNT)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "gemm: unknown activation %d", (int)spec->activation);
  snprintf(out_name, ATTN_CPU_KERNEL_NAME_MAX, "attn_gemm_f32_%016" PRIx64,
           attn_gemm_spec_hash(spec));

  gemm_gen g = {.spec = spec, .lanes = spec->vector_width};
  g.context = LLVMContextCreate();
  g.module = LLVMModuleCreateWithNameInContext(out_name, g.context);
  g.builder = LLVMCreateBuilderInContext(g.context);
  g.f32 = LLVMFloatTypeInContext(g.context);
  g.i1 = LLVMInt1TypeInContext(g.context);
  g.i32 = LLVMInt32TypeInContext(g.context);
  g.i64 = LLVMInt64TypeInContext(g.context);
  g.ptr = LLVMPointerTypeInContext(g.context, 0);
  g.vf32 = LLVMVectorType(g.f32, (unsigned)g.lanes);
  g.vi1 = LLVMVectorType(g.i1, (unsigned)g.lanes);
  g.vi32 = LLVMVectorType(g.i32, (unsigned)g.lanes);
  g.vi64 = LLVMVectorType(g.i64, (unsigned)g.lanes);

  LLVMTypeRef params[ARG_COUNT];
  for (int i = 0; i < ARG_COUNT; i++)
    params[i] = g.i64;
  params[ARG_A] = params[ARG_B] = params[ARG_C] = g.ptr;
  params[ARG_BIAS] = params[ARG_RESIDUAL] = g.ptr;
  LLVMTypeRef type = LLVMFunctionType(LLVMVoidTypeInContext(g.context), params, ARG_COUNT, 0);
  g.function = LLVMAddFunction(g.module, out_name, type);
  static const char *const param_names[ARG_COUNT] = {
      "a",   "b",   "c",    "m",        "n",   "k",         "lda",
      "ldb", "ldc", "bias", "residual", "ldr", "row_begin", "row_end"};
  for (int i = 0; i < ARG_COUNT; i++)
    LLVMSetValueName2(LLVMGetParam(g.function, (unsigned)i), param_names[i],
                      strlen(param_names[i]));
  emit_function(&g);
  LLVMDisposeBuilder(g.builder);
  *out_module = g.module;
  return ATTN_OK;
}
