# hutch_add_plugin(NAME src...)
# Builds plugins/<NAME> as a MODULE named exactly <NAME>.so under
# build/lib/hutch/plugins/, against the public SDK headers only: a plugin
# never links against the daemon; it gets the host API table at init.
function(hutch_add_plugin name)
  add_library(plugin_${name} MODULE ${ARGN})
  set_target_properties(plugin_${name} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${name}
    LIBRARY_OUTPUT_DIRECTORY ${HUTCH_PLUGIN_OUTPUT_DIR}
    C_VISIBILITY_PRESET hidden)
  target_link_libraries(plugin_${name} PRIVATE hutch_sdk_headers)
  target_link_options(plugin_${name} PRIVATE -Wl,--no-undefined)
  install(TARGETS plugin_${name} LIBRARY DESTINATION ${HUTCH_PLUGIN_INSTALL_DIR})
endfunction()
