# LLVM 22 for the code generators: the LLVM C API lives in libLLVM.so (imported target `LLVM`).
# find_package(LLVM 22) is rejected by LLVMConfigVersion.cmake, which wants MAJOR.MINOR, so the
# major version is checked by hand. MLIR is not needed yet; find_package(MLIR) would also demand
# mlir-22-tools (MLIRTargets.cmake checks that mlir-tblgen exists).
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
