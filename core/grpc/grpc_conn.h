/*
 * grpc_conn.h: one server-side HTTP/2 connection carrying gRPC calls, with no
 * I/O of its own.
 *
 * Bytes read from the client go in with grpc_conn_feed; they turn into calls
 * and callbacks of the registered methods. Bytes to send to the client come
 * out of grpc_conn_pull, as much or as little as the owner wants to take:
 * that is where outbound backpressure is applied. The socket transport
 * (grpc_transport.c) and TLS sit on top of this; the fuzz harness uses it
 * directly with no socket at all.
 *
 * All functions run on the server's loop thread. The owner must not free
 * the connection from inside one of its callbacks; grpc_conn_busy tells
 * whether that is the case.
 */
#ifndef HUTCH_GRPC_CONN_H
#define HUTCH_GRPC_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "grpc_server.h"

typedef struct grpc_conn grpc_conn_t;

typedef struct grpc_conn_io {
	/* Called when the connection has output to pull or deferred work for
	 * grpc_conn_process, e.g. after a method sends from a timer. It may be
	 * called from inside any grpc_conn_* or grpc_call_* function, so it
	 * must only schedule, never pull or free. Required. */
	void (*wake)(void *data);
	void *data;
} grpc_conn_io_t;

/* Creates a connection for server; peer is copied into every call. The
 * HTTP/2 server preface (SETTINGS) is queued at once. io is copied.
 * Returns 0 or -ENOMEM. */
int grpc_conn_new(grpc_server_t *server, const grpc_peer_t *peer, const grpc_conn_io_t *io,
		  grpc_conn_t **out, hutch_err_t *err);

/* Processes len bytes from the client. Returns 0, or -EPROTO when the
 * connection is broken beyond repair (bad preface, protocol error, flood):
 * the owner should then pull what is left (a GOAWAY, maybe) and close.
 * Stream-level errors (a bad request on one stream) are answered on that
 * stream and do not show here. */
int grpc_conn_feed(grpc_conn_t *conn, const uint8_t *data, size_t len);

/* Points *data at the next chunk of bytes for the client and returns its
 * length, or 0 when there is nothing to send now. The chunk is valid until
 * the next call on conn. Taking a chunk means it will be sent. */
ssize_t grpc_conn_pull(grpc_conn_t *conn, const uint8_t **data);

/* Runs deferred work: messages released by grpc_call_pause_recv(false) and
 * on_writable notifications. Call after feeding and pulling, when wake
 * fired. */
void grpc_conn_process(grpc_conn_t *conn);

/* Sends GOAWAY (with an HTTP/2 error code, 0 = NO_ERROR) and ends every live
 * call with on_cancel(status). The connection accepts nothing afterwards;
 * pull the GOAWAY and close. Must not be called while busy. */
void grpc_conn_terminate(grpc_conn_t *conn, uint32_t h2_error, grpc_status_t status);

/* true while one of conn's callbacks is running (inside feed, pull, process
 * or terminate). */
bool grpc_conn_busy(const grpc_conn_t *conn);

/* true once the client preface and first SETTINGS have arrived. */
bool grpc_conn_established(const grpc_conn_t *conn);

/* true when the connection neither wants to read nor has anything left to
 * send: the owner should close the socket. */
bool grpc_conn_finished(const grpc_conn_t *conn);

/* Ends all calls (on_cancel with UNAVAILABLE, if still live) and frees the
 * connection. Must not be called while busy. */
void grpc_conn_free(grpc_conn_t *conn);

#endif
