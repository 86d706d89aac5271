// The MLIR context and the lowering of generated kernels: parses the text mlir_emit.c writes,
// runs the pass pipeline down to the LLVM dialect, translates the result into a fresh LLVM
// context and adds the attn_cpu_kernel_fn wrapper that unpacks data and dims into the memref
// descriptors of the body. MLIR's diagnostics become attn_diag messages here.
#include "codegen/cpu/mlir.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mlir-c/Diagnostics.h>
#include <mlir-c/IR.h>
#include <mlir-c/Pass.h>
#include <mlir-c/RegisterEverything.h>
#include <mlir-c/Target/LLVMIR.h>

#include "codegen/cpu/jit.h"

// scf loops to cf, everything to the LLVM dialect. Canonicalisation and CSE first fold the
// constants and index arithmetic the emitter writes plainly.
static const char lowering_pipeline[] =
    "builtin.module(canonicalize,cse,convert-scf-to-cf,convert-math-to-llvm,"
    "convert-arith-to-llvm,expand-strided-metadata,finalize-memref-to-llvm,convert-cf-to-llvm,"
    "convert-func-to-llvm,convert-index-to-llvm,reconcile-unrealized-casts)";

enum { MESSAGES_MAX = 4096 };

struct attn_cpu_mlir {
  MlirContext context;
  MlirPassManager pass_manager;
  // MLIR's diagnostics since the last generate, for the error message.
  char messages[MESSAGES_MAX];
  size_t message_length;
};

static void append_message(MlirStringRef text, void *user_data) {
  attn_cpu_mlir *mlir = user_data;
  size_t room = MESSAGES_MAX - 1 - mlir->message_length;
  size_t n = text.length < room ? text.length : room;
  memcpy(mlir->messages + mlir->message_length, text.data, n);
  mlir->message_length += n;
  mlir->messages[mlir->message_length] = 0;
}

static MlirLogicalResult on_diagnostic(MlirDiagnostic diagnostic, void *user_data) {
  attn_cpu_mlir *mlir = user_data;
  if (mlir->message_length)
    append_message(mlirStringRefCreateFromCString("; "), mlir);
  mlirDiagnosticPrint(diagnostic, append_message, mlir);
  return mlirLogicalResultSuccess();
}

static void clear_messages(attn_cpu_mlir *mlir) {
  mlir->message_length = 0;
  mlir->messages[0] = 0;
}

attn_status attn_cpu_mlir_create(attn_diag *diag, attn_cpu_mlir **out_mlir) {
  *out_mlir = NULL;
  attn_cpu_mlir *mlir = calloc(1, sizeof(*mlir));
  if (!mlir)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "mlir: out of memory");
  // Registering passes is process-wide and idempotent in effect; do it once.
  static bool passes_registered = false;
  if (!passes_registered) {
    mlirRegisterAllPasses();
    passes_registered = true;
  }
  mlir->context = mlirContextCreateWithThreading(false);
  MlirDialectRegistry registry = mlirDialectRegistryCreate();
  mlirRegisterAllDialects(registry);
  mlirContextAppendDialectRegistry(mlir->context, registry);
  mlirDialectRegistryDestroy(registry);
  mlirContextLoadAllAvailableDialects(mlir->context);
  mlirRegisterAllLLVMTranslations(mlir->context);
  mlirContextAttachDiagnosticHandler(mlir->context, on_diagnostic, mlir, NULL);

  mlir->pass_manager = mlirPassManagerCreate(mlir->context);
  MlirLogicalResult parsed = mlirParsePassPipeline(
      mlirPassManagerGetAsOpPassManager(mlir->pass_manager),
      mlirStringRefCreateFromCString(lowering_pipeline), append_message, mlir);
  if (mlirLogicalResultIsFailure(parsed)) {
    attn_status status =
        attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                        "mlir: the lowering pipeline does not parse: %s", mlir->messages);
    attn_cpu_mlir_destroy(mlir);
    return status;
  }
  *out_mlir = mlir;
  return ATTN_OK;
}

void attn_cpu_mlir_destroy(attn_cpu_mlir *mlir) {
  if (!mlir)
    return;
  if (!mlirPassManagerIsNull(mlir->pass_manager))
    mlirPassManagerDestroy(mlir->pass_manager);
  mlirContextDestroy(mlir->context);
  free(mlir);
}

static uint64_t fnv1a(uint64_t hash, const void *data, size_t size) {
  const uint8_t *bytes = data;
  for (size_t i = 0; i < size; i++) {
    hash ^= bytes[i];
    hash *= UINT64_C(0x100000001b3);
  }
  return hash;
}

// Adds `name`, of type attn_cpu_kernel_fn, which builds each operand's memref descriptor
// (pointer twice, offset 0, sizes, row-major strides) from data and dims and calls the body.
// Makes the body and its helpers internal and always inlined.
static attn_status add_wrapper(const attn_graph *graph, const attn_kernel_io *io,
                               LLVMModuleRef module, const char *name, attn_diag *diag) {
  LLVMValueRef body = LLVMGetNamedFunction(module, "attn_mlir_body");
  if (!body)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                           "mlir: the translated module has no body function");
  uint32_t operand_count = io->input_count + io->output_count;
  unsigned param_count = 2;
  for (uint32_t k = 0; k < operand_count; k++) {
    attn_value_id v = k < io->input_count ? io->inputs[k] : io->outputs[k - io->input_count];
    param_count += 3 + 2 * attn_graph_value(graph, v)->type.rank;
  }
  if (LLVMCountParams(body) != param_count)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                           "mlir: the body takes %u parameters, expected %u", LLVMCountParams(body),
                           param_count);
  LLVMContextRef context = LLVMGetModuleContext(module);
  LLVMTypeRef ptr = LLVMPointerTypeInContext(context, 0);
  LLVMTypeRef i64 = LLVMInt64TypeInContext(context);
  LLVMTypeRef params[] = {ptr, ptr, i64, i64};
  LLVMTypeRef type = LLVMFunctionType(LLVMVoidTypeInContext(context), params, 4, 0);
  LLVMValueRef function = LLVMAddFunction(module, name, type);
  LLVMValueRef *args = calloc(param_count, sizeof(*args));
  if (!args)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_OUT_OF_MEMORY, "mlir: out of memory");
  LLVMBuilderRef builder = LLVMCreateBuilderInContext(context);
  LLVMPositionBuilderAtEnd(builder, LLVMAppendBasicBlockInContext(context, function, "entry"));
  LLVMValueRef data = LLVMGetParam(function, 0), dims = LLVMGetParam(function, 1);
  unsigned a = 0;
  uint32_t dim_at = 0;
  for (uint32_t k = 0; k < operand_count; k++) {
    attn_value_id v = k < io->input_count ? io->inputs[k] : io->outputs[k - io->input_count];
    uint32_t rank = attn_graph_value(graph, v)->type.rank;
    LLVMValueRef index = LLVMConstInt(i64, k, 0);
    LLVMValueRef pointer =
        LLVMBuildLoad2(builder, ptr, LLVMBuildGEP2(builder, ptr, data, &index, 1, ""), "");
    args[a++] = pointer;
    args[a++] = pointer;
    args[a++] = LLVMConstInt(i64, 0, 0);
    LLVMValueRef sizes[ATTN_MAX_RANK], strides[ATTN_MAX_RANK];
    for (uint32_t d = 0; d < rank; d++) {
      LLVMValueRef at = LLVMConstInt(i64, dim_at + d, 0);
      sizes[d] = LLVMBuildLoad2(builder, i64, LLVMBuildGEP2(builder, i64, dims, &at, 1, ""), "");
    }
    for (uint32_t d = rank; d-- > 0;)
      strides[d] = d + 1 == rank ? LLVMConstInt(i64, 1, 0)
                                 : LLVMBuildMul(builder, strides[d + 1], sizes[d + 1], "");
    for (uint32_t d = 0; d < rank; d++)
      args[a++] = sizes[d];
    for (uint32_t d = 0; d < rank; d++)
      args[a++] = strides[d];
    dim_at += rank;
  }
  args[a++] = LLVMGetParam(function, 2);
  args[a++] = LLVMGetParam(function, 3);
  LLVMBuildCall2(builder, LLVMGlobalGetValueType(body), body, args, param_count, "");
  LLVMBuildRetVoid(builder);
  LLVMDisposeBuilder(builder);
  free(args);

  unsigned always_inline = LLVMGetEnumAttributeKindForName("alwaysinline", 12);
  for (LLVMValueRef f = LLVMGetFirstFunction(module); f; f = LLVMGetNextFunction(f)) {
    if (f == function || LLVMIsDeclaration(f))
      continue;
    LLVMSetLinkage(f, LLVMInternalLinkage);
    LLVMAddAttributeAtIndex(f, LLVMAttributeFunctionIndex,
                            LLVMCreateEnumAttribute(context, always_inline, 0));
  }
  for (LLVMValueRef g = LLVMGetFirstGlobal(module); g; g = LLVMGetNextGlobal(g))
    if (!LLVMIsDeclaration(g))
      LLVMSetLinkage(g, LLVMInternalLinkage);
  return ATTN_OK;
}

// Writes the kernel's MLIR text (into *out_source, malloc'ed) and names it: the hash covers the
// text (no ids, names or locations in it) and the vector width.
static attn_status emit_and_name(const attn_graph *graph, uint32_t kernel, const attn_kernel_io *io,
                                 int vector_width, attn_diag *diag, char **out_source,
                                 attn_cpu_mlir_kernel *out_kernel) {
  memset(out_kernel, 0, sizeof(*out_kernel));
  if (vector_width != 8 && vector_width != 16)
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_INVALID_ARGUMENT,
                           "mlir: vector width %d is not 8 or 16", vector_width);
  uint32_t parallel_rank = 0;
  ATTN_RETURN_IF_ERROR(attn_cpu_mlir_emit(graph, kernel, io, diag, out_source, &parallel_rank));
  uint64_t hash = fnv1a(UINT64_C(0xcbf29ce484222325), *out_source, strlen(*out_source));
  uint8_t width = (uint8_t)vector_width;
  hash = fnv1a(hash, &width, 1);
  out_kernel->hash = hash;
  out_kernel->parallel_rank = parallel_rank;
  snprintf(out_kernel->name, sizeof(out_kernel->name), "attn_mlir_%016" PRIx64, hash);
  return ATTN_OK;
}

attn_status attn_cpu_mlir_describe(const attn_graph *graph, uint32_t kernel,
                                   const attn_kernel_io *io, int vector_width, attn_diag *diag,
                                   attn_cpu_mlir_kernel *out_kernel) {
  char *source = NULL;
  attn_status status = emit_and_name(graph, kernel, io, vector_width, diag, &source, out_kernel);
  free(source);
  return status;
}

attn_status attn_cpu_mlir_generate(attn_cpu_mlir *mlir, const attn_graph *graph, uint32_t kernel,
                                   const attn_kernel_io *io, int vector_width, attn_diag *diag,
                                   LLVMModuleRef *out_module, attn_cpu_mlir_kernel *out_kernel) {
  *out_module = NULL;
  memset(out_kernel, 0, sizeof(*out_kernel));
  char *source = NULL;
  attn_cpu_mlir_kernel result;
  ATTN_RETURN_IF_ERROR(emit_and_name(graph, kernel, io, vector_width, diag, &source, &result));

  clear_messages(mlir);
  MlirModule module = mlirModuleCreateParse(mlir->context, mlirStringRefCreateFromCString(source));
  if (mlirModuleIsNull(module)) {
    attn_status status =
        attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                        "mlir: kernel k%u: the generated MLIR does not parse: %s\n%s", kernel,
                        mlir->messages, source);
    free(source);
    return status;
  }
  MlirOperation operation = mlirModuleGetOperation(module);
  if (mlirLogicalResultIsFailure(mlirPassManagerRunOnOp(mlir->pass_manager, operation))) {
    attn_status status =
        attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                        "mlir: kernel k%u: lowering failed: %s", kernel, mlir->messages);
    mlirModuleDestroy(module);
    free(source);
    return status;
  }
  free(source);
  LLVMContextRef context = LLVMContextCreate();
  LLVMModuleRef llvm_module = mlirTranslateModuleToLLVMIR(operation, context);
  mlirModuleDestroy(module);
  if (!llvm_module) {
    LLVMContextDispose(context);
    return attn_diag_error(diag, ATTN_LOC_NONE, ATTN_ERROR_DEVICE,
                           "mlir: kernel k%u: translation to LLVM IR failed: %s", kernel,
                           mlir->messages);
  }
  LLVMSetModuleIdentifier(llvm_module, result.name, strlen(result.name));
  attn_status status = add_wrapper(graph, io, llvm_module, result.name, diag);
  if (status != ATTN_OK) {
    attn_cpu_module_destroy(llvm_module);
    return status;
  }
  *out_module = llvm_module;
  *out_kernel = result;
  return ATTN_OK;
}
