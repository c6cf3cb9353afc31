# hutch_protoc_c(TARGET <static-lib-name> PROTO_ROOT <dir> PROTOS <a.proto> ...)
# Generates protobuf-c sources for PROTOS (paths relative to PROTO_ROOT) with
# protoc-c and builds them into a static library whose include path exposes
# the generated headers as "<dir-of-proto>/<name>.pb-c.h".
function(hutch_protoc_c)
  cmake_parse_arguments(P "" "TARGET;PROTO_ROOT" "PROTOS" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/pb)
  set(srcs)
  foreach(proto ${P_PROTOS})
    get_filename_component(dir ${proto} DIRECTORY)
    get_filename_component(base ${proto} NAME_WE)
    if(dir)
      set(stem ${out_dir}/${dir}/${base})
    else()
      set(stem ${out_dir}/${base})
    endif()
    add_custom_command(
      OUTPUT ${stem}.pb-c.c ${stem}.pb-c.h
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND ${PROTOC_C} --proto_path=${P_PROTO_ROOT} --c_out=${out_dir} ${P_PROTO_ROOT}/${proto}
      DEPENDS ${P_PROTO_ROOT}/${proto}
      COMMENT "protoc-c ${proto}"
      VERBATIM)
    list(APPEND srcs ${stem}.pb-c.c)
  endforeach()
  add_library(${P_TARGET} STATIC ${srcs})
  target_include_directories(${P_TARGET} PUBLIC ${out_dir})
  target_link_libraries(${P_TARGET} PUBLIC PkgConfig::PROTOBUF_C)
  set_target_properties(${P_TARGET} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  # Generated code is not ours to make warning-clean.
  target_compile_options(${P_TARGET} PRIVATE -w)
endfunction()
