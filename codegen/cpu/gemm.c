// The f32 GEMM generator: builds, with the LLVM IRBuilder, one function per attn_gemm_spec
// (layout and semantics in kernels.h). Loop nest, after the GotoBLAS / BLIS design: column blocks;
// in each, k blocks whose part of B is packed into panels of 2 vectors' width; in each, row blocks
// whose part of A is packed into tiles of ATTN_GEMM_TILE_ROWS rows; in each, the register tiles,
// panel by panel, whose accumulators stay in registers across the k block. After the last k block
// comes the epilogue, then plain stores (full tiles) or masked ones. The transcendental
// activations are vector polynomials (no libm calls), so they stay vectorised.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codegen/cpu/kernels.h"

enum {
  VECTORS_PER_TILE = 2,
  TILE_ROWS = ATTN_GEMM_TILE_ROWS,
  ROW_BLOCK = ATTN_GEMM_ROW_BLOCK,
  COLUMN_BLOCK = ATTN_GEMM_COLUMN_BLOCK,
  K_UNROLL = 4, // k steps per iteration of the register tile's loop
};

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
  case ATTN_CPU_ACTIVATION_TANH:
    return "tanh";
  case ATTN_CPU_ACTIVATION_SIGMOID:
    return "sigmoid";
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
      3, // layout version: bump when the kernel's signature or semantics change
      (uint8_t)spec->transpose_a,
      (uint8_t)spec->transpose_b,
      (uint8_t)spec->bias,
      (uint8_t)spec->activation,
      (uint8_t)spec->residual,
      (uint8_t)(spec->residual ? spec->residual_op : 0),
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
  LLVMTypeRef v8f32, v8i64;          // vectors of 8, the unit of the packing transposes
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

// <0, 1, ..., count-1> + offset, as i64.
static LLVMValueRef lane_indices_n(gemm_gen *g, int count, int64_t offset) {
  LLVMValueRef elements[16];
  for (int i = 0; i < count; i++)
    elements[i] = i64_const(g, offset + i);
  return LLVMConstVector(elements, (unsigned)count);
}

// <0, 1, ..., lanes-1> + offset, as i64.
static LLVMValueRef lane_indices(gemm_gen *g, int64_t offset) {
  return lane_indices_n(g, g->lanes, offset);
}

// A run-time scalar broadcast to every lane.
static LLVMValueRef splat(gemm_gen *g, LLVMValueRef scalar, LLVMTypeRef vector_type,
                          const char *name) {
  LLVMValueRef one = LLVMBuildInsertElement(g->builder, LLVMGetPoison(vector_type), scalar,
                                            LLVMConstInt(g->i32, 0, 0), "");
  LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(g->i32, LLVMGetVectorSize(vector_type)));
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

// A load of the lanes of `mask` (a vector of i1 as long as `type`); the others read as 0.
static LLVMValueRef masked_load_typed(gemm_gen *g, LLVMTypeRef type, LLVMValueRef pointer,
                                      LLVMValueRef mask, const char *name) {
  LLVMTypeRef overloads[] = {type, g->ptr};
  LLVMValueRef args[] = {pointer, mask, LLVMConstNull(type)};
  LLVMValueRef call = call_intrinsic(g, "llvm.masked.load", overloads, 2, args, 3, name);
  set_pointer_alignment(g, call, 0, 4);
  return call;
}

static LLVMValueRef masked_load(gemm_gen *g, LLVMValueRef pointer, LLVMValueRef mask,
                                const char *name) {
  return masked_load_typed(g, g->vf32, pointer, mask, name);
}

static void masked_store(gemm_gen *g, LLVMValueRef value, LLVMValueRef pointer, LLVMValueRef mask) {
  LLVMTypeRef overloads[] = {g->vf32, g->ptr};
  LLVMValueRef args[] = {value, pointer, mask};
  LLVMValueRef call = call_intrinsic(g, "llvm.masked.store", overloads, 2, args, 3, "");
  set_pointer_alignment(g, call, 1, 4);
}

// A gather of the lanes of `mask` from `pointers`, as long as `type`; the others read as 0.
static LLVMValueRef masked_gather(gemm_gen *g, LLVMTypeRef type, LLVMValueRef pointers,
                                  LLVMValueRef mask, const char *name) {
  unsigned lanes = LLVMGetVectorSize(type);
  LLVMTypeRef overloads[] = {type, LLVMVectorType(g->ptr, lanes)};
  LLVMValueRef args[] = {pointers, mask, LLVMConstNull(type)};
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
  case ATTN_CPU_ACTIVATION_TANH: {
    LLVMValueRef s = times_sigmoid(g, f32_splat(g, 2.0), fadd(g, x, x));
    return LLVMBuildFSub(g->builder, s, f32_splat(g, 1.0), "tanh");
  }
  case ATTN_CPU_ACTIVATION_SIGMOID:
    return times_sigmoid(g, f32_splat(g, 1.0), x);
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

static LLVMValueRef param(gemm_gen *g, int index) {
  return LLVMGetParam(g->function, (unsigned)index);
}

static LLVMValueRef iadd(gemm_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWAdd(g->builder, a, b, "");
}

static LLVMValueRef isub(gemm_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWSub(g->builder, a, b, "");
}

static LLVMValueRef imul(gemm_gen *g, LLVMValueRef a, LLVMValueRef b) {
  return LLVMBuildNSWMul(g->builder, a, b, "");
}

// `pointer` + index floats.
static LLVMValueRef f32_offset(gemm_gen *g, LLVMValueRef pointer, LLVMValueRef index) {
  return f32_at(g, pointer, index, "");
}

static LLVMValueRef load(gemm_gen *g, LLVMTypeRef type, LLVMValueRef pointer, unsigned alignment,
                         const char *name) {
  LLVMValueRef value = LLVMBuildLoad2(g->builder, type, pointer, name);
  LLVMSetAlignment(value, alignment);
  return value;
}

static void store(gemm_gen *g, LLVMValueRef value, LLVMValueRef pointer, unsigned alignment) {
  LLVMSetAlignment(LLVMBuildStore(g->builder, value, pointer), alignment);
}

// An if-then: emit_if_begin leaves the builder in the `then` block; emit_if_end joins.
typedef struct if_block {
  LLVMBasicBlockRef then, join;
} if_block;

static if_block emit_if_begin(gemm_gen *g, LLVMValueRef condition, const char *name) {
  if_block block;
  block.then = LLVMAppendBasicBlockInContext(g->context, g->function, name);
  block.join = LLVMAppendBasicBlockInContext(g->context, g->function, "");
  LLVMBuildCondBr(g->builder, condition, block.then, block.join);
  LLVMPositionBuilderAtEnd(g->builder, block.then);
  return block;
}

static void emit_if_end(gemm_gen *g, if_block *block) {
  LLVMBuildBr(g->builder, block->join);
  LLVMPositionBuilderAtEnd(g->builder, block->join);
}

// The 8 x 8 transpose of `rows` (vectors of 8 floats) into `columns`: columns[q][t] = rows[t][q].
// Unpacks, in-lane shuffles and 128-bit lane swaps, the sequence AVX compilers use.
static void emit_transpose8(gemm_gen *g, const LLVMValueRef rows[8], LLVMValueRef columns[8]) {
  static const int unpack_low[8] = {0, 8, 1, 9, 4, 12, 5, 13};
  static const int unpack_high[8] = {2, 10, 3, 11, 6, 14, 7, 15};
  static const int pairs_low[8] = {0, 1, 8, 9, 4, 5, 12, 13};
  static const int pairs_high[8] = {2, 3, 10, 11, 6, 7, 14, 15};
  static const int halves_low[8] = {0, 1, 2, 3, 8, 9, 10, 11};
  static const int halves_high[8] = {4, 5, 6, 7, 12, 13, 14, 15};
  LLVMValueRef masks[6][8];
  const int *patterns[6] = {unpack_low, unpack_high, pairs_low,
                            pairs_high, halves_low,  halves_high};
  for (int p = 0; p < 6; p++)
    for (int i = 0; i < 8; i++)
      masks[p][i] = LLVMConstInt(g->i32, (unsigned long long)patterns[p][i], 0);
  LLVMValueRef shuffle[6];
  for (int p = 0; p < 6; p++)
    shuffle[p] = LLVMConstVector(masks[p], 8);
  LLVMValueRef t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = LLVMBuildShuffleVector(g->builder, rows[2 * i], rows[2 * i + 1], shuffle[0], "");
    t[2 * i + 1] = LLVMBuildShuffleVector(g->builder, rows[2 * i], rows[2 * i + 1], shuffle[1], "");
  }
  // u[0..3] hold rows 0-3 of columns {0, 4}, {1, 5}, {2, 6}, {3, 7}; u[4..7] rows 4-7.
  for (int h = 0; h < 2; h++) {
    LLVMValueRef *tt = &t[4 * h];
    u[4 * h + 0] = LLVMBuildShuffleVector(g->builder, tt[0], tt[2], shuffle[2], "");
    u[4 * h + 1] = LLVMBuildShuffleVector(g->builder, tt[0], tt[2], shuffle[3], "");
    u[4 * h + 2] = LLVMBuildShuffleVector(g->builder, tt[1], tt[3], shuffle[2], "");
    u[4 * h + 3] = LLVMBuildShuffleVector(g->builder, tt[1], tt[3], shuffle[3], "");
  }
  for (int q = 0; q < 4; q++) {
    columns[q] = LLVMBuildShuffleVector(g->builder, u[q], u[q + 4], shuffle[4], "");
    columns[q + 4] = LLVMBuildShuffleVector(g->builder, u[q], u[q + 4], shuffle[5], "");
  }
}

// Packs A[i0 : i0 + TILE_ROWS, k0 : k0 + kc) into `tile`, A[i0 + r, k0 + kk] at
// tile[kk * TILE_ROWS + r], so the register tile reads one contiguous stream. Rows at or past
// row_end hold copies of row row_end - 1 (zeros with transpose_a); their results are never
// stored. Each group of TILE_ROWS floats is written as 8, the last two of which the next group
// overwrites: the buffer has 2 floats of slack after its last group.
static void emit_pack_a_tile(gemm_gen *g, LLVMValueRef tile, LLVMValueRef i0, LLVMValueRef k0,
                             LLVMValueRef kc) {
  LLVMValueRef a = param(g, ARG_A), lda = param(g, ARG_LDA), row_end = param(g, ARG_ROW_END);
  LLVMValueRef group = i64_const(g, TILE_ROWS);
  if (g->spec->transpose_a) {
    // A[i, kk] = a[kk * lda + i]: the tile's rows are contiguous for each kk.
    LLVMValueRef valid = smin(g, isub(g, row_end, i0), group, "valid_rows");
    LLVMValueRef mask = LLVMBuildICmp(g->builder, LLVMIntSLT, lane_indices_n(g, 8, 0),
                                      splat(g, valid, g->v8i64, ""), "row_mask");
    counted_loop loop = loop_begin(g, i64_const(g, 0), kc, "pack_a.kk");
    LLVMValueRef source = f32_offset(g, a, iadd(g, imul(g, iadd(g, k0, loop.iv), lda), i0));
    LLVMValueRef values = masked_load_typed(g, g->v8f32, source, mask, "a.t");
    store(g, values, f32_offset(g, tile, imul(g, loop.iv, group)), 4);
    loop_end(g, &loop, i64_const(g, 1), NULL, NULL, 0);
    return;
  }
  LLVMValueRef last_row = isub(g, row_end, i64_const(g, 1));
  LLVMValueRef row_start[TILE_ROWS];
  for (int r = 0; r < TILE_ROWS; r++) {
    LLVMValueRef row = smin(g, iadd(g, i0, i64_const(g, r)), last_row, "row");
    row_start[r] = f32_offset(g, a, iadd(g, imul(g, row, lda), k0));
  }
  // Blocks of 8 k: load 8 rows (the last two zero), transpose, store 8 groups.
  LLVMValueRef kc8 = LLVMBuildAnd(g->builder, kc, i64_const(g, ~(int64_t)7), "kc8");
  counted_loop blocks = loop_begin(g, i64_const(g, 0), kc8, "pack_a.k8");
  LLVMValueRef rows[8], columns[8];
  for (int r = 0; r < 8; r++)
    rows[r] = r < TILE_ROWS ? load(g, g->v8f32, f32_offset(g, row_start[r], blocks.iv), 4, "a.rows")
                            : LLVMConstNull(g->v8f32);
  emit_transpose8(g, rows, columns);
  for (int q = 0; q < 8; q++) {
    LLVMValueRef kk = iadd(g, blocks.iv, i64_const(g, q));
    store(g, columns[q], f32_offset(g, tile, imul(g, kk, group)), 4);
  }
  loop_end(g, &blocks, i64_const(g, 8), NULL, NULL, 0);
  // The rest of k one group at a time.
  counted_loop rest = loop_begin(g, kc8, kc, "pack_a.kk");
  LLVMValueRef values = LLVMConstNull(g->v8f32);
  for (int r = 0; r < TILE_ROWS; r++) {
    LLVMValueRef value = load(g, g->f32, f32_offset(g, row_start[r], rest.iv), 4, "a");
    values = LLVMBuildInsertElement(g->builder, values, value, LLVMConstInt(g->i32, r, 0), "");
  }
  store(g, values, f32_offset(g, tile, imul(g, rest.iv, group)), 4);
  loop_end(g, &rest, i64_const(g, 1), NULL, NULL, 0);
}

// Packs B[k0 : k0 + kc, j : j + panel width) into `panel`, B[k0 + kk, j + l] at
// panel[kk * panel width + l], with the columns at and past n zero-filled.
static void emit_pack_b_panel(gemm_gen *g, LLVMValueRef panel, LLVMValueRef j, LLVMValueRef k0,
                              LLVMValueRef kc) {
  LLVMValueRef b = param(g, ARG_B), ldb = param(g, ARG_LDB), n = param(g, ARG_N);
  int64_t width = (int64_t)VECTORS_PER_TILE * g->lanes;
  LLVMValueRef width_value = i64_const(g, width);
  if (!g->spec->transpose_b) {
    // Rows of B are contiguous: a full panel copies with plain loads, a partial one masks them.
    LLVMValueRef full = LLVMBuildICmp(g->builder, LLVMIntSLE, iadd(g, j, width_value), n, "full");
    LLVMValueRef remaining = splat(g, isub(g, n, j), g->vi64, "");
    LLVMBasicBlockRef full_block = LLVMAppendBasicBlockInContext(g->context, g->function, "");
    LLVMBasicBlockRef partial_block = LLVMAppendBasicBlockInContext(g->context, g->function, "");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(g->context, g->function, "");
    LLVMBuildCondBr(g->builder, full, full_block, partial_block);
    for (int masked = 0; masked < 2; masked++) {
      LLVMPositionBuilderAtEnd(g->builder, masked ? partial_block : full_block);
      counted_loop loop = loop_begin(g, i64_const(g, 0), kc, "pack_b.kk");
      LLVMValueRef source = f32_offset(g, b, iadd(g, imul(g, iadd(g, k0, loop.iv), ldb), j));
      LLVMValueRef target = f32_offset(g, panel, imul(g, loop.iv, width_value));
      for (int v = 0; v < VECTORS_PER_TILE; v++) {
        LLVMValueRef offset = i64_const(g, (int64_t)v * g->lanes);
        LLVMValueRef values;
        if (masked) {
          LLVMValueRef mask = LLVMBuildICmp(g->builder, LLVMIntSLT,
                                            lane_indices(g, (int64_t)v * g->lanes), remaining, "");
          values = masked_load(g, f32_offset(g, source, offset), mask, "b");
        } else {
          values = load(g, g->vf32, f32_offset(g, source, offset), 4, "b");
        }
        store(g, values, f32_offset(g, target, offset), (unsigned)(g->lanes * 4));
      }
      loop_end(g, &loop, i64_const(g, 1), NULL, NULL, 0);
      LLVMBuildBr(g->builder, done);
    }
    LLVMPositionBuilderAtEnd(g->builder, done);
    return;
  }
  // B[kk, j] = b[j * ldb + kk]: each group of 8 columns is 8 rows of b. Full groups transpose
  // blocks of 8 x 8; the rest of k, and groups cut by n, gather one panel row at a time.
  for (int64_t group = 0; group < width; group += 8) {
    LLVMValueRef column = iadd(g, j, i64_const(g, group));
    LLVMValueRef full =
        LLVMBuildICmp(g->builder, LLVMIntSLE, iadd(g, column, i64_const(g, 8)), n, "full");
    LLVMValueRef kc8 = LLVMBuildAnd(g->builder, kc, i64_const(g, ~(int64_t)7), "");
    LLVMValueRef gather_begin = LLVMBuildSelect(g->builder, full, kc8, i64_const(g, 0), "");
    LLVMValueRef transpose_end = gather_begin;
    counted_loop blocks = loop_begin(g, i64_const(g, 0), transpose_end, "pack_bt.k8");
    LLVMValueRef rows[8], columns[8];
    for (int t = 0; t < 8; t++) {
      LLVMValueRef row = imul(g, iadd(g, column, i64_const(g, t)), ldb);
      rows[t] =
          load(g, g->v8f32, f32_offset(g, b, iadd(g, row, iadd(g, k0, blocks.iv))), 4, "b.rows");
    }
    emit_transpose8(g, rows, columns);
    for (int q = 0; q < 8; q++) {
      LLVMValueRef kk = iadd(g, blocks.iv, i64_const(g, q));
      LLVMValueRef slot = iadd(g, imul(g, kk, width_value), i64_const(g, group));
      store(g, columns[q], f32_offset(g, panel, slot), 32);
    }
    loop_end(g, &blocks, i64_const(g, 8), NULL, NULL, 0);

    LLVMValueRef columns_vector =
        LLVMBuildAdd(g->builder, splat(g, column, g->v8i64, ""), lane_indices_n(g, 8, 0), "");
    LLVMValueRef mask = LLVMBuildICmp(g->builder, LLVMIntSLT, columns_vector,
                                      splat(g, n, g->v8i64, ""), "column_mask");
    LLVMValueRef row_index =
        LLVMBuildMul(g->builder, columns_vector, splat(g, ldb, g->v8i64, ""), "");
    counted_loop rest = loop_begin(g, gather_begin, kc, "pack_bt.kk");
    LLVMValueRef index =
        LLVMBuildAdd(g->builder, row_index, splat(g, iadd(g, k0, rest.iv), g->v8i64, ""), "");
    LLVMValueRef pointers = LLVMBuildGEP2(g->builder, g->f32, b, &index, 1, "");
    LLVMValueRef values = masked_gather(g, g->v8f32, pointers, mask, "b.t");
    LLVMValueRef slot = iadd(g, imul(g, rest.iv, width_value), i64_const(g, group));
    store(g, values, f32_offset(g, panel, slot), 32);
    loop_end(g, &rest, i64_const(g, 1), NULL, NULL, 0);
  }
}

// A vector at `pointer`: the lanes of `mask`, or all of them when `mask` is NULL.
static LLVMValueRef load_vector(gemm_gen *g, LLVMValueRef pointer, LLVMValueRef mask,
                                const char *name) {
  return mask ? masked_load(g, pointer, mask, name) : load(g, g->vf32, pointer, 4, name);
}

// The epilogue of one accumulator vector: act(x + bias) + residual (or * residual), the residual
// read at residual_base[row * residual_ld + column].
static LLVMValueRef emit_epilogue(gemm_gen *g, LLVMValueRef x, LLVMValueRef bias_vector,
                                  LLVMValueRef residual_base, LLVMValueRef residual_ld,
                                  LLVMValueRef row, LLVMValueRef column, LLVMValueRef mask) {
  if (g->spec->bias)
    x = fadd(g, x, bias_vector);
  x = activation(g, x);
  if (g->spec->residual) {
    LLVMValueRef index = iadd(g, imul(g, row, residual_ld), column);
    LLVMValueRef residual = load_vector(g, f32_offset(g, residual_base, index), mask, "residual");
    x = g->spec->residual_op == ATTN_CPU_RESIDUAL_MUL ? fmul(g, x, residual) : fadd(g, x, residual);
  }
  return x;
}

// One step of k in the register tile: acc[r][v] += A[r, kk] * B[kk, v-th vector].
static void emit_k_step(gemm_gen *g, LLVMValueRef a_tile, LLVMValueRef b_panel, LLVMValueRef kk,
                        LLVMValueRef acc[TILE_ROWS][VECTORS_PER_TILE]) {
  int64_t width = (int64_t)VECTORS_PER_TILE * g->lanes;
  LLVMValueRef b_row = f32_offset(g, b_panel, imul(g, kk, i64_const(g, width)));
  LLVMValueRef b_vector[VECTORS_PER_TILE];
  for (int v = 0; v < VECTORS_PER_TILE; v++)
    b_vector[v] = load(g, g->vf32, f32_offset(g, b_row, i64_const(g, (int64_t)v * g->lanes)),
                       (unsigned)(g->lanes * 4), "b");
  LLVMValueRef a_group = f32_offset(g, a_tile, imul(g, kk, i64_const(g, TILE_ROWS)));
  for (int r = 0; r < TILE_ROWS; r++) {
    LLVMValueRef a_value = load(g, g->f32, f32_offset(g, a_group, i64_const(g, r)), 4, "a");
    LLVMValueRef a_vector = splat(g, a_value, g->vf32, "a.splat");
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      acc[r][v] = fma_vector(g, a_vector, b_vector[v], acc[r][v]);
  }
}

// One register tile: rows i0 .. i0 + TILE_ROWS times columns j .. j + panel width, over
// k0 .. k0 + kc, from the packed tile of A and panel of B. A `full` tile lies inside the rows
// and columns to compute and uses plain loads and stores; the others mask them (rows at or past
// row_end compute garbage and store nothing). The first k block starts from zero, later ones
// from the partial sums they find in c; the last one applies the epilogue. Partial sums round
// to f32 exactly as they would in a register, so the blocking does not change the result.
static void emit_tile_body(gemm_gen *g, bool full, LLVMValueRef a_tile, LLVMValueRef b_panel,
                           LLVMValueRef i0, LLVMValueRef j, LLVMValueRef k0, LLVMValueRef kc,
                           LLVMValueRef residual_base, LLVMValueRef residual_ld) {
  LLVMValueRef c = param(g, ARG_C), ldc = param(g, ARG_LDC), n = param(g, ARG_N);
  LLVMValueRef row_end = param(g, ARG_ROW_END);
  LLVMValueRef last_row = isub(g, row_end, i64_const(g, 1));

  LLVMValueRef row[TILE_ROWS], column[VECTORS_PER_TILE], column_mask[VECTORS_PER_TILE] = {0};
  LLVMValueRef mask[TILE_ROWS][VECTORS_PER_TILE] = {{0}}, c_at[TILE_ROWS][VECTORS_PER_TILE];
  LLVMValueRef no_lanes = LLVMConstNull(g->vi1);
  LLVMValueRef remaining = full ? NULL : splat(g, isub(g, n, j), g->vi64, "");
  for (int v = 0; v < VECTORS_PER_TILE; v++) {
    column[v] = iadd(g, j, i64_const(g, (int64_t)v * g->lanes));
    if (!full)
      column_mask[v] = LLVMBuildICmp(g->builder, LLVMIntSLT, lane_indices(g, (int64_t)v * g->lanes),
                                     remaining, "");
  }
  for (int r = 0; r < TILE_ROWS; r++) {
    LLVMValueRef wanted = iadd(g, i0, i64_const(g, r));
    row[r] = full ? wanted : smin(g, wanted, last_row, "row");
    LLVMValueRef row_valid =
        full ? NULL : LLVMBuildICmp(g->builder, LLVMIntSLT, wanted, row_end, "");
    LLVMValueRef c_row = imul(g, row[r], ldc);
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      if (!full)
        mask[r][v] = LLVMBuildSelect(g->builder, row_valid, column_mask[v], no_lanes, "mask");
      c_at[r][v] = f32_at(g, c, iadd(g, c_row, column[v]), "c");
    }
  }

  // The next tile's partial sums are read right away when it starts: fetch them now, so that its
  // accumulators do not wait on L3 or memory.
  for (int r = 0; full && r < TILE_ROWS; r++) {
    LLVMValueRef next_row = imul(g, iadd(g, i0, i64_const(g, TILE_ROWS + r)), ldc);
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      LLVMValueRef index = iadd(g, next_row, column[v]);
      LLVMValueRef args[] = {LLVMBuildGEP2(g->builder, g->f32, c, &index, 1, ""),
                             LLVMConstInt(g->i32, 1, 0), LLVMConstInt(g->i32, 3, 0),
                             LLVMConstInt(g->i32, 1, 0)};
      call_intrinsic(g, "llvm.prefetch", &g->ptr, 1, args, 4, "");
    }
  }

  // The first k block starts from zero, the others from the partial sums in c.
  LLVMValueRef first_block = LLVMBuildICmp(g->builder, LLVMIntEQ, k0, i64_const(g, 0), "");
  LLVMBasicBlockRef before = LLVMGetInsertBlock(g->builder);
  LLVMBasicBlockRef resume = LLVMAppendBasicBlockInContext(g->context, g->function, "resume");
  LLVMBasicBlockRef start = LLVMAppendBasicBlockInContext(g->context, g->function, "start");
  LLVMBuildCondBr(g->builder, first_block, start, resume);
  LLVMPositionBuilderAtEnd(g->builder, resume);
  LLVMValueRef partial_in[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      partial_in[r][v] = load_vector(g, c_at[r][v], mask[r][v], "partial");
  LLVMBuildBr(g->builder, start);
  LLVMPositionBuilderAtEnd(g->builder, start);
  LLVMValueRef initial[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++) {
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      initial[r][v] = LLVMBuildPhi(g->builder, g->vf32, "initial");
      LLVMValueRef values[] = {LLVMConstNull(g->vf32), partial_in[r][v]};
      LLVMBasicBlockRef blocks[] = {before, resume};
      LLVMAddIncoming(initial[r][v], values, blocks, 2);
    }
  }

  // k in steps of K_UNROLL, then one at a time.
  LLVMValueRef kc_unrolled =
      LLVMBuildAnd(g->builder, kc, i64_const(g, ~(int64_t)(K_UNROLL - 1)), "kc_unrolled");
  LLVMValueRef acc[TILE_ROWS][VECTORS_PER_TILE], phi[TILE_ROWS][VECTORS_PER_TILE];
  counted_loop unrolled = loop_begin(g, i64_const(g, 0), kc_unrolled, "kk4");
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      acc[r][v] = phi[r][v] = loop_carried(g, &unrolled, initial[r][v], "acc");
  for (int u = 0; u < K_UNROLL; u++)
    emit_k_step(g, a_tile, b_panel, iadd(g, unrolled.iv, i64_const(g, u)), acc);
  loop_end(g, &unrolled, i64_const(g, K_UNROLL), &phi[0][0], &acc[0][0],
           (size_t)TILE_ROWS * VECTORS_PER_TILE);
  counted_loop rest = loop_begin(g, kc_unrolled, kc, "kk");
  LLVMValueRef rest_phi[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      acc[r][v] = rest_phi[r][v] = loop_carried(g, &rest, phi[r][v], "acc");
  emit_k_step(g, a_tile, b_panel, rest.iv, acc);
  loop_end(g, &rest, i64_const(g, 1), &rest_phi[0][0], &acc[0][0],
           (size_t)TILE_ROWS * VECTORS_PER_TILE);
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      acc[r][v] = rest_phi[r][v];

  // Not the last k block: the partial sums go back to c. The last: the epilogue.
  LLVMBasicBlockRef partial = LLVMAppendBasicBlockInContext(g->context, g->function, "partial");
  LLVMBasicBlockRef epilogue = LLVMAppendBasicBlockInContext(g->context, g->function, "epilogue");
  LLVMBasicBlockRef store_block = LLVMAppendBasicBlockInContext(g->context, g->function, "store");
  LLVMValueRef k_end = iadd(g, k0, kc);
  LLVMBuildCondBr(g->builder,
                  LLVMBuildICmp(g->builder, LLVMIntSGE, k_end, param(g, ARG_K), "last_block"),
                  epilogue, partial);

  LLVMPositionBuilderAtEnd(g->builder, partial);
  LLVMBuildBr(g->builder, store_block);

  LLVMPositionBuilderAtEnd(g->builder, epilogue);
  LLVMValueRef bias_vector[VECTORS_PER_TILE] = {0};
  if (g->spec->bias)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      bias_vector[v] =
          load_vector(g, f32_offset(g, param(g, ARG_BIAS), column[v]), column_mask[v], "bias");
  LLVMValueRef result[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++)
    for (int v = 0; v < VECTORS_PER_TILE; v++)
      result[r][v] = emit_epilogue(g, acc[r][v], bias_vector[v], residual_base, residual_ld, row[r],
                                   column[v], mask[r][v]);
  LLVMBasicBlockRef epilogue_end = LLVMGetInsertBlock(g->builder);
  LLVMBuildBr(g->builder, store_block);

  // Full tiles store with plain vector stores: masked stores are slow on some CPUs (microcoded
  // on AMD Zen).
  LLVMPositionBuilderAtEnd(g->builder, store_block);
  LLVMValueRef out[TILE_ROWS][VECTORS_PER_TILE];
  for (int r = 0; r < TILE_ROWS; r++) {
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      out[r][v] = LLVMBuildPhi(g->builder, g->vf32, "out");
      LLVMValueRef values[] = {acc[r][v], result[r][v]};
      LLVMBasicBlockRef blocks[] = {partial, epilogue_end};
      LLVMAddIncoming(out[r][v], values, blocks, 2);
    }
  }
  for (int r = 0; r < TILE_ROWS; r++) {
    for (int v = 0; v < VECTORS_PER_TILE; v++) {
      if (full)
        store(g, out[r][v], c_at[r][v], 4);
      else
        masked_store(g, out[r][v], c_at[r][v], mask[r][v]);
    }
  }
}

// A register tile (emit_tile_body), full or not as the tile's rows and columns say.
static void emit_tile(gemm_gen *g, LLVMValueRef a_tile, LLVMValueRef b_panel, LLVMValueRef i0,
                      LLVMValueRef j, LLVMValueRef k0, LLVMValueRef kc, LLVMValueRef residual_base,
                      LLVMValueRef residual_ld) {
  int64_t width = (int64_t)VECTORS_PER_TILE * g->lanes;
  LLVMValueRef rows_full = LLVMBuildICmp(
      g->builder, LLVMIntSLE, iadd(g, i0, i64_const(g, TILE_ROWS)), param(g, ARG_ROW_END), "");
  LLVMValueRef columns_full =
      LLVMBuildICmp(g->builder, LLVMIntSLE, iadd(g, j, i64_const(g, width)), param(g, ARG_N), "");
  LLVMBasicBlockRef full = LLVMAppendBasicBlockInContext(g->context, g->function, "tile.full");
  LLVMBasicBlockRef partial =
      LLVMAppendBasicBlockInContext(g->context, g->function, "tile.partial");
  LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(g->context, g->function, "tile.done");
  LLVMBuildCondBr(g->builder, LLVMBuildAnd(g->builder, rows_full, columns_full, "full"), full,
                  partial);
  for (int is_full = 1; is_full >= 0; is_full--) {
    LLVMPositionBuilderAtEnd(g->builder, is_full ? full : partial);
    emit_tile_body(g, is_full, a_tile, b_panel, i0, j, k0, kc, residual_base, residual_ld);
    LLVMBuildBr(g->builder, done);
  }
  LLVMPositionBuilderAtEnd(g->builder, done);
}

// 24 KiB of packed B per panel, which stays in L1 (32 KiB or more) while a row block passes.
int64_t attn_gemm_k_block(int vector_width) {
  return 24 * 1024 / (4 * VECTORS_PER_TILE * vector_width);
}

// Copies residual[rows, j0 : j0 + columns) into `copy` (row stride COLUMN_BLOCK), rows
// row0 .. row1. Lanes past n are read as 0.
static void emit_copy_residual(gemm_gen *g, LLVMValueRef copy, LLVMValueRef row0, LLVMValueRef row1,
                               LLVMValueRef j0, LLVMValueRef columns) {
  LLVMValueRef residual = param(g, ARG_RESIDUAL), ldr = param(g, ARG_LDR);
  counted_loop rows = loop_begin(g, row0, row1, "copy.i");
  LLVMValueRef source = f32_offset(g, residual, iadd(g, imul(g, rows.iv, ldr), j0));
  LLVMValueRef target =
      f32_offset(g, copy, imul(g, isub(g, rows.iv, row0), i64_const(g, COLUMN_BLOCK)));
  counted_loop cols = loop_begin(g, i64_const(g, 0), columns, "copy.j");
  LLVMValueRef mask = LLVMBuildICmp(g->builder, LLVMIntSLT, lane_indices(g, 0),
                                    splat(g, isub(g, columns, cols.iv), g->vi64, ""), "");
  LLVMValueRef values = masked_load(g, f32_offset(g, source, cols.iv), mask, "residual");
  store(g, values, f32_offset(g, target, cols.iv), (unsigned)(g->lanes * 4));
  loop_end(g, &cols, i64_const(g, g->lanes), NULL, NULL, 0);
  loop_end(g, &rows, i64_const(g, 1), NULL, NULL, 0);
}

static void emit_function(gemm_gen *g) {
  LLVMValueRef n = param(g, ARG_N), k = param(g, ARG_K);
  LLVMValueRef row_begin = param(g, ARG_ROW_BEGIN), row_end = param(g, ARG_ROW_END);
  int64_t width = (int64_t)VECTORS_PER_TILE * g->lanes;
  int64_t kc_max = attn_gemm_k_block(g->lanes);

  LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(g->context, g->function, "entry");
  LLVMPositionBuilderAtEnd(g->builder, entry);
  uint64_t a_floats = (uint64_t)(ROW_BLOCK * kc_max + 8);
  uint64_t b_floats = (uint64_t)(COLUMN_BLOCK * kc_max);
  LLVMValueRef a_pack = LLVMBuildAlloca(g->builder, LLVMArrayType2(g->f32, a_floats), "a_pack");
  LLVMValueRef b_pack = LLVMBuildAlloca(g->builder, LLVMArrayType2(g->f32, b_floats), "b_pack");
  LLVMSetAlignment(a_pack, 64);
  LLVMSetAlignment(b_pack, 64);
  LLVMValueRef residual_copy = NULL;
  LLVMValueRef in_place = LLVMConstInt(g->i1, 0, 0);
  if (g->spec->residual) {
    uint64_t r_floats = (uint64_t)ROW_BLOCK * COLUMN_BLOCK;
    residual_copy = LLVMBuildAlloca(g->builder, LLVMArrayType2(g->f32, r_floats), "residual_copy");
    LLVMSetAlignment(residual_copy, 64);
    // In place with more than one k block: the partial sums would overwrite the residual, so
    // each block of rows x columns copies its residual first.
    LLVMValueRef same_pointer =
        LLVMBuildICmp(g->builder, LLVMIntEQ, param(g, ARG_RESIDUAL), param(g, ARG_C), "");
    LLVMValueRef same_stride =
        LLVMBuildICmp(g->builder, LLVMIntEQ, param(g, ARG_LDR), param(g, ARG_LDC), "");
    LLVMValueRef several_blocks =
        LLVMBuildICmp(g->builder, LLVMIntSGT, k, i64_const(g, kc_max), "");
    in_place = LLVMBuildAnd(g->builder, LLVMBuildAnd(g->builder, same_pointer, same_stride, ""),
                            several_blocks, "in_place");
  }
  // With k = 0 one k block of zero rows still runs, so that c gets the epilogue of 0.
  LLVMValueRef k_blocks_end =
      LLVMBuildSelect(g->builder, LLVMBuildICmp(g->builder, LLVMIntSGT, k, i64_const(g, 0), ""), k,
                      i64_const(g, 1), "k_blocks_end");
  // k blocks of equal size (a multiple of 8, at most kc_max), so that no block is short.
  LLVMValueRef k_block_count = LLVMBuildSDiv(
      g->builder, iadd(g, k_blocks_end, i64_const(g, kc_max - 1)), i64_const(g, kc_max), "");
  LLVMValueRef k_step =
      LLVMBuildSDiv(g->builder, iadd(g, k_blocks_end, isub(g, k_block_count, i64_const(g, 1))),
                    k_block_count, "");
  k_step = LLVMBuildAnd(g->builder, iadd(g, k_step, i64_const(g, 7)), i64_const(g, ~(int64_t)7),
                        "k_step");
  // Outer row blocks: the whole range, or ROW_BLOCK rows when the residual must be copied.
  LLVMValueRef range = isub(g, row_end, row_begin);
  range =
      LLVMBuildSelect(g->builder, LLVMBuildICmp(g->builder, LLVMIntSGT, range, i64_const(g, 0), ""),
                      range, i64_const(g, 1), "");
  LLVMValueRef outer_step =
      LLVMBuildSelect(g->builder, in_place, i64_const(g, ROW_BLOCK), range, "outer_step");

  counted_loop outer = loop_begin(g, row_begin, row_end, "io");
  LLVMValueRef outer_end = smin(g, iadd(g, outer.iv, outer_step), row_end, "io_end");
  counted_loop column_blocks = loop_begin(g, i64_const(g, 0), n, "jc");
  LLVMValueRef jc = column_blocks.iv;
  LLVMValueRef columns = smin(g, isub(g, n, jc), i64_const(g, COLUMN_BLOCK), "nc");

  LLVMValueRef residual_base = g->spec->residual ? param(g, ARG_RESIDUAL) : NULL;
  LLVMValueRef residual_ld = param(g, ARG_LDR);
  if (g->spec->residual) {
    if_block copy = emit_if_begin(g, in_place, "copy_residual");
    emit_copy_residual(g, residual_copy, outer.iv, outer_end, jc, columns);
    emit_if_end(g, &copy);
    // residual_copy[(i - io) * COLUMN_BLOCK + (j - jc)] as base[i * COLUMN_BLOCK + j].
    LLVMValueRef shift =
        LLVMBuildNeg(g->builder, iadd(g, imul(g, outer.iv, i64_const(g, COLUMN_BLOCK)), jc), "");
    LLVMValueRef copy_base = LLVMBuildGEP2(g->builder, g->f32, residual_copy, &shift, 1, "");
    residual_base = LLVMBuildSelect(g->builder, in_place, copy_base, residual_base, "");
    residual_ld =
        LLVMBuildSelect(g->builder, in_place, i64_const(g, COLUMN_BLOCK), residual_ld, "");
  }

  counted_loop k_blocks = loop_begin(g, i64_const(g, 0), k_blocks_end, "k0");
  LLVMValueRef k0 = k_blocks.iv;
  LLVMValueRef kc = smin(g, isub(g, k, k0), k_step, "kc");
  LLVMValueRef panel_floats = i64_const(g, kc_max * width);
  LLVMValueRef tile_floats = i64_const(g, kc_max * TILE_ROWS);
  // Pack B[k0 : k0 + kc, jc : jc + nc) once per outer row block.
  counted_loop pack_b = loop_begin(g, i64_const(g, 0), columns, "pack_b.j");
  LLVMValueRef panel_index = LLVMBuildSDiv(g->builder, pack_b.iv, i64_const(g, width), "");
  emit_pack_b_panel(g, f32_offset(g, b_pack, imul(g, panel_index, panel_floats)),
                    iadd(g, jc, pack_b.iv), k0, kc);
  loop_end(g, &pack_b, i64_const(g, width), NULL, NULL, 0);

  counted_loop row_blocks = loop_begin(g, outer.iv, outer_end, "ic");
  LLVMValueRef ic = row_blocks.iv;
  LLVMValueRef block_end = smin(g, iadd(g, ic, i64_const(g, ROW_BLOCK)), outer_end, "ic_end");
  counted_loop pack_a = loop_begin(g, ic, block_end, "pack_a.i");
  LLVMValueRef tile_index =
      LLVMBuildSDiv(g->builder, isub(g, pack_a.iv, ic), i64_const(g, TILE_ROWS), "");
  emit_pack_a_tile(g, f32_offset(g, a_pack, imul(g, tile_index, tile_floats)), pack_a.iv, k0, kc);
  loop_end(g, &pack_a, i64_const(g, TILE_ROWS), NULL, NULL, 0);

  counted_loop panels = loop_begin(g, i64_const(g, 0), columns, "jr");
  LLVMValueRef b_panel = f32_offset(
      g, b_pack,
      imul(g, LLVMBuildSDiv(g->builder, panels.iv, i64_const(g, width), ""), panel_floats));
  counted_loop tiles = loop_begin(g, ic, block_end, "ir");
  LLVMValueRef a_tile = f32_offset(
      g, a_pack,
      imul(g, LLVMBuildSDiv(g->builder, isub(g, tiles.iv, ic), i64_const(g, TILE_ROWS), ""),
           tile_floats));
  emit_tile(g, a_tile, b_panel, tiles.iv, iadd(g, jc, panels.iv), k0, kc, residual_base,
            residual_ld);
  loop_end(g, &tiles, i64_const(g, TILE_ROWS), NULL, NULL, 0);
  loop_end(g, &panels, i64_const(g, width), NULL, NULL, 0);
  loop_end(g, &row_blocks, i64_const(g, ROW_BLOCK), NULL, NULL, 0);
  loop_end(g, &k_blocks, k_step, NULL, NULL, 0);
  loop_end(g, &column_blocks, i64_const(g, COLUMN_BLOCK), NULL, NULL, 0);
  loop_end(g, &outer, outer_step, NULL, NULL, 0);
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
  if ((unsigned)spec->residual_op >= ATTN_CPU_RESIDUAL_OP_COUNT)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "gemm: unknown residual op %d", (int)spec->residual_op);
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
  g.v8f32 = LLVMVectorType(g.f32, 8);
  g.v8i64 = LLVMVectorType(g.i64, 8);

  LLVMTypeRef params[ARG_COUNT];
  for (int i = 0; i < ARG_COUNT; i++)
    params[i] = g.i64;
  params[ARG_A] = params[ARG_B] = params[ARG_C] = g.ptr;
  params[ARG_BIAS] = params[ARG_RESIDUAL] = g.ptr;
  LLVMTypeRef type = LLVMFunctionType(LLVMVoidTypeInContext(g.context), params, ARG_COUNT, 0);
  g.function = LLVMAddFunction(g.module, out_name, type);
  // The frame holds the packed A and B (and the residual copy): probe it page by page, so that
  // a thread's guard page is never jumped over.
  LLVMAddAttributeAtIndex(
      g.function, LLVMAttributeFunctionIndex,
      LLVMCreateStringAttribute(g.context, "probe-stack", 11, "inline-asm", 10));
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
