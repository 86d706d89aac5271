# Warning flags for attnc's own sources, applied per target with attn_set_warnings().
set(ATTN_WARNING_FLAGS
    -Wall -Wextra -Wpedantic -Wshadow -Wundef -Wwrite-strings -Wstrict-prototypes
    -Wmissing-prototypes -Wold-style-definition -Wformat=2 -Wimplicit-fallthrough -Wvla
    -Wdouble-promotion)
if(ATTN_WERROR)
  list(APPEND ATTN_WARNING_FLAGS -Werror)
endif()

function(attn_set_warnings target)
  target_compile_options(${target} PRIVATE ${ATTN_WARNING_FLAGS})
endfunction()

# attn_library(NAME SOURCES... DEPS ...): one CMake library per source folder.
function(attn_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/include)
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
  attn_set_warnings(${name})
endfunction()
