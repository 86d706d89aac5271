# protobuf-c for attnc's protobuf formats (.attnx, .attnb) and ONNX import: protoc-c compiles a
# .proto into C at build time, and the runtime links protobuf-c statically (a deployed program
# must not need libprotobuf-c.so).
find_program(ATTN_PROTOC_C protoc-c REQUIRED)
pkg_get_variable(_attn_protobuf_c_libdir libprotobuf-c libdir)
find_library(ATTN_PROTOBUF_C_STATIC NAMES libprotobuf-c.a HINTS ${_attn_protobuf_c_libdir}
             REQUIRED)
find_path(ATTN_PROTOBUF_C_INCLUDE protobuf-c/protobuf-c.h REQUIRED)

# attn_protobuf_c(PROTO OUT_DIR OUT_SOURCE): generates NAME.pb-c.c and NAME.pb-c.h from PROTO
# into OUT_DIR when the build runs, and sets OUT_SOURCE to the .c, which is compiled without the
# project's warnings (it is protoc-c's code, not ours).
function(attn_protobuf_c proto out_dir out_source)
  get_filename_component(name ${proto} NAME_WE)
  get_filename_component(proto_dir ${proto} DIRECTORY)
  add_custom_command(
    OUTPUT ${out_dir}/${name}.pb-c.c ${out_dir}/${name}.pb-c.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
    COMMAND ${ATTN_PROTOC_C} --c_out=${out_dir} --proto_path=${proto_dir} ${proto}
    DEPENDS ${proto}
    COMMENT "protoc-c ${name}.proto"
    VERBATIM)
  set_source_files_properties(${out_dir}/${name}.pb-c.c PROPERTIES COMPILE_OPTIONS "-w")
  set(${out_source} ${out_dir}/${name}.pb-c.c PARENT_SCOPE)
endfunction()
