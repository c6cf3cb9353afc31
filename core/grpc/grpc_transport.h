/*
 * grpc_transport.h: the socket side of hutch_grpc (listeners, accepted
 * sockets, TLS, writes with backpressure). Internal.
 */
#ifndef HUTCH_GRPC_TRANSPORT_H
#define HUTCH_GRPC_TRANSPORT_H

#include "grpc_internal.h"

/* Closes every listener and every socket (GOAWAY, calls end with
 * UNAVAILABLE). Handles report back through grpc_server_handle_closed. */
void grpc_transport_shutdown(grpc_server_t *server);

#endif
