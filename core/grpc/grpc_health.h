/*
 * grpc_health.h: the standard gRPC health service, grpc.health.v1.Health
 * (proto/grpc/health/v1/health.proto), on a grpc_server.
 *
 * What orchestrators' probes (Kubernetes' grpc probe, grpc-health-probe),
 * load balancers and stock clients' health checking call. A server that
 * answers is serving: Check says SERVING for "" (the server as a whole) and
 * for every service with registered methods, and NOT_FOUND for any other
 * name. Watch sends the same status (SERVICE_UNKNOWN for an unknown name,
 * as the protocol asks) and keeps the stream open; a server going down ends
 * it with UNAVAILABLE, which clients read as not serving.
 */
#ifndef HUTCH_GRPC_HEALTH_H
#define HUTCH_GRPC_HEALTH_H

#include "grpc_server.h"

/* Registers /grpc.health.v1.Health/Check and /Watch on server. Returns 0 or
 * -errno as grpc_server_add_methods does. */
int grpc_health_register(grpc_server_t *server, hutch_err_t *err);

#endif
