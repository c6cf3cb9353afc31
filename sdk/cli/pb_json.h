/*
 * pb_json.h: protobuf-c messages as JSON, driven by their descriptors, for
 * `--json` output. Field names are the proto names; bytes are base64;
 * enums are their names; 64-bit integers are numbers.
 */
#ifndef HUTCH_PB_JSON_H
#define HUTCH_PB_JSON_H

#include <protobuf-c/protobuf-c.h>
#include <stdio.h>

void pb_json_print(FILE *out, const ProtobufCMessage *msg, int indent);

#endif
