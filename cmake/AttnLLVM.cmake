# LLVM 22 for the code generators: the LLVM C API lives in libLLVM.so (imported target `LLVM`).
# find_package(LLVM 22) is rejected by LLVMConfigVersion.cmake, which wants MAJOR.MINOR, so the
# major version is checked by hand. find_package(MLIR) below needs mlir-22-tools besides
# libmlir-22-dev (MLIRTargets.cmake checks that mlir-tblgen exists).
set(ATTN_LLVM_VERSION 22 CACHE STRING "LLVM major version the code generators are written for")
set(ATTN_LLVM_PREFIX "/usr/lib/llvm-${ATTN_LLVM_VERSION}" CACHE PATH "LLVM install prefix")

find_package(LLVM REQUIRED CONFIG PATHS "${ATTN_LLVM_PREFIX}/lib/cmake/llvm" NO_DEFAULT_PATH)
if(NOT LLVM_VERSION_MAJOR EQUAL ATTN_LLVM_VERSION)
  message(FATAL_ERROR "attnc needs LLVM ${ATTN_LLVM_VERSION}, found ${LLVM_PACKAGE_VERSION} "
                      "in ${LLVM_DIR}")
endif()
message(STATUS "attnc: LLVM ${LLVM_PACKAGE_VERSION} from ${LLVM_DIR}")

# attn_llvm: the LLVM C API headers (as system headers, so our warnings do not apply to them)
# and libLLVM.so. Link it PRIVATE from the libraries and executables that generate code.
add_library(attn_llvm INTERFACE)
target_include_directories(attn_llvm SYSTEM INTERFACE ${LLVM_INCLUDE_DIRS})
target_link_libraries(attn_llvm INTERFACE LLVM)

# attn_mlir: the MLIR C API for codegen/cpu/mlir.c. Its archives hold C++ objects, so C++ is
# enabled for linking, and every executable linking attn_mlir sets LINKER_LANGUAGE CXX. Only the
# CAPI archives themselves are linked (in a group, they reference each other), plus libMLIR.so
# and libLLVM.so: linking the archives' static closure would load a second copy of MLIR's
# registries next to libMLIR.so's.
enable_language(CXX)
find_package(MLIR REQUIRED CONFIG PATHS "${ATTN_LLVM_PREFIX}/lib/cmake/mlir" NO_DEFAULT_PATH)
message(STATUS "attnc: MLIR from ${MLIR_DIR}")
add_library(attn_mlir INTERFACE)
target_include_directories(attn_mlir SYSTEM INTERFACE ${MLIR_INCLUDE_DIRS} ${LLVM_INCLUDE_DIRS})
set(_attn_mlir_capi "")
foreach(capi MLIRCAPIIR MLIRCAPIRegisterEverything MLIRCAPIExecutionEngine MLIRCAPITarget
             MLIRCAPIGPU MLIRCAPITransformDialectTransforms)
  list(APPEND _attn_mlir_capi "$<TARGET_FILE:${capi}>")
endforeach()
target_link_libraries(attn_mlir INTERFACE "-Wl,--start-group" ${_attn_mlir_capi} "-Wl,--end-group"
                                          MLIR LLVM)
