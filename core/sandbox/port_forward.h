/*
 * port_forward.h: a sandbox's TCP port, reachable from the host through
 * hutchd.
 *
 * hutchd listens on a host address (127.0.0.1 and a free port by default)
 * and, for every connection, opens one to the port inside the sandbox's
 * network namespace and relays bytes both ways. The connection into the
 * namespace is made on a pool thread that enters the namespace with setns
 * and returns to its own before going back to the pool; the socket keeps
 * the namespace it was made in. Relaying is flow-controlled: a side that
 * does not read stops the other side's reads, so nothing buffers without
 * bound.
 */
#ifndef HUTCH_PORT_FORWARD_H
#define HUTCH_PORT_FORWARD_H

#include <stdint.h>
#include <uv.h>

#include <hutch/error.h>

typedef struct port_fwd port_fwd_t;

/* Listens on listen_host:0 and forwards to sandbox_port inside netns_path.
 * bound receives "host:port". Loop thread. */
int port_fwd_start(uv_loop_t *loop, const char *netns_path, uint16_t sandbox_port,
		   const char *listen_host, port_fwd_t **out, char *bound, size_t cap,
		   hutch_err_t *err);

/* Closes the listener and every relayed connection; frees itself once the
 * handles are closed. */
void port_fwd_stop(port_fwd_t *f);

/* Opens a TCP connection to 127.0.0.1:port inside the namespace at
 * netns_path, from the calling thread (which must be able to block).
 * Returns a connected, non-blocking fd or -errno. */
int netns_tcp_connect(const char *netns_path, uint16_t port, int timeout_ms, hutch_err_t *err);

#endif
