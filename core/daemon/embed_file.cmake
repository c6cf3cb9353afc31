# cmake -DIN=FILE -DOUT=FILE.c -DNAME=symbol -P embed_file.cmake
# Writes FILE's bytes as `const unsigned char NAME[]` and `NAME_len` in a C
# source, for data built at build time that hutchd carries inside itself.
file(READ ${IN} hex HEX)
get_filename_component(in_name ${IN} NAME)
string(LENGTH "${hex}" n)
math(EXPR len "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "((0x..,){16})" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* Generated from ${in_name} by embed_file.cmake. */\n#include <stddef.h>\n"
  "const unsigned char ${NAME}[] = {\n${bytes}\n};\nconst size_t ${NAME}_len = ${len};\n")
