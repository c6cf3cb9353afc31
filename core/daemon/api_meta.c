/* The standard gRPC services that describe the server rather than hutch:
 * grpc.health.v1.Health (probes) and server reflection (grpcurl and other
 * tools without .proto files), over every service hutchd registers. See
 * docs/grpc.md. */
#include "api.h"
#include "grpc_health.h"
#include "grpc_reflection.h"

/* api_descriptors.c, generated at build time (core/daemon/CMakeLists.txt):
 * the FileDescriptorSet of the hutch.v1 protos and the health and reflection
 * protos. */
extern const unsigned char hutch_api_descriptors[];
extern const size_t hutch_api_descriptors_len;

int api_meta_register(daemon_t *d, hutch_err_t *err)
{
	static grpc_descriptor_set_t set; /* the server keeps a pointer to it */
	set.data = hutch_api_descriptors;
	set.len = hutch_api_descriptors_len;
	int r = grpc_health_register(d->grpc, err);
	if (r == 0)
		r = grpc_reflection_register(d->grpc, &set, err);
	return r;
}
