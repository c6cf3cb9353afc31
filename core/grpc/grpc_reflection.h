/*
 * grpc_reflection.h: gRPC server reflection (grpc.reflection.v1alpha and
 * grpc.reflection.v1 ServerReflection, proto/grpc/reflection/), on a
 * grpc_server.
 *
 * Lets tools that have no .proto files (grpcurl, grpcui, Postman) list the
 * services and fetch the schemas: list_services names every service with
 * registered methods; file_by_filename and file_containing_symbol (a
 * service, method, message or enum, fully qualified) answer with the
 * defining file's FileDescriptorProto followed by those of every file it
 * imports, directly or not. The schemas come from a descriptor set the
 * caller embeds (protoc --include_imports --descriptor_set_out=FILE), served
 * byte for byte; it must hold the file of every registered service.
 * Extensions are not used here: file_containing_extension is NOT_FOUND and
 * all_extension_numbers_of_type lists none for a known message.
 *
 * Nothing is kept between requests: each one parses the set (tens of
 * KiB), so the services hold no state and need no cleanup.
 */
#ifndef HUTCH_GRPC_REFLECTION_H
#define HUTCH_GRPC_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "grpc_server.h"

/* A serialized google.protobuf.FileDescriptorSet. */
typedef struct grpc_descriptor_set {
	const uint8_t *data;
	size_t len;
} grpc_descriptor_set_t;

/* Registers both reflection services on server. set (and what it points
 * to) must stay valid until the server is shut down; it is checked here:
 * -EINVAL if it does not parse. Otherwise returns as grpc_server_add_methods
 * does. */
int grpc_reflection_register(grpc_server_t *server, const grpc_descriptor_set_t *set,
			     hutch_err_t *err);

#endif
