/*
 * grpc_internal.h: the structures shared by the files of hutch_grpc. Nothing
 * outside core/grpc includes this; the public view is grpc_server.h.
 *
 * Who owns what:
 *  - grpc_server owns its method table, listeners and sockets.
 *  - a socket (grpc_transport.c) owns its grpc_conn and TLS state.
 *  - a grpc_conn owns its nghttp2 session and holds one reference on each
 *    call whose stream is open.
 *  - a call owns its headers, queued output, held input and deadline timer;
 *    it is freed when the last reference goes (and its timer has closed).
 */
#ifndef HUTCH_GRPC_INTERNAL_H
#define HUTCH_GRPC_INTERNAL_H

#include <nghttp2/nghttp2.h>
#include <stdarg.h>

#include "grpc_conn.h"
#include "grpc_list.h"
#include "grpc_server.h"
#include "grpc_wire.h"

#define GRPC_DEFAULT_MAX_RECV_MESSAGE (16u << 20)
#define GRPC_DEFAULT_MAX_METADATA (16u << 10)
#define GRPC_DEFAULT_MAX_STREAMS 256u
#define GRPC_DEFAULT_STREAM_WINDOW (64u << 10)
#define GRPC_DEFAULT_CONN_WINDOW (1u << 20)
#define GRPC_DEFAULT_SEND_HIGH (256u << 10)
#define GRPC_DEFAULT_MAX_CONNECTIONS 1024u
#define GRPC_DEFAULT_HANDSHAKE_MS 10000u
/* Encoded grpc-message values are cut to this many bytes: grpcio, for one,
 * fails the whole call with RESOURCE_EXHAUSTED when the trailers exceed its
 * 8 KiB metadata limit, which would hide the real status. */
#define GRPC_MAX_STATUS_MESSAGE 4096
/* The server-wide socket read buffer. */
#define GRPC_READ_BUF_SIZE (64u << 10)

struct grpc_method_entry {
	grpc_method_t method; /* method.path points at path below */
	char *path;
	void *service_data;
};

struct grpc_server {
	uv_loop_t *loop;
	grpc_server_opts_t opts; /* with defaults filled in */

	/* Sorted by path. Entries are allocated one by one and never move:
	 * live calls point at them while methods are being added. */
	struct grpc_method_entry **methods;
	size_t n_methods, cap_methods;

	struct grpc_link listeners;
	struct grpc_link sockets;
	struct grpc_link dirty; /* sockets with work for the prepare callback */
	unsigned n_sockets;

	/* Runs just before the loop blocks: flushes dirty sockets, so that
	 * output queued by any callback goes out in one write per socket. */
	uv_prepare_t prepare;
	/* Once a second: closes connections stuck in the handshake. */
	uv_timer_t sweep;
	bool sweep_running;

	uint8_t *read_buf; /* shared: libuv reads one socket at a time */

	/* uv handles not yet closed, call deadline timers included; shutdown
	 * completes when this reaches 0. */
	unsigned open_handles;
	bool shutting_down;
	bool internal_closing;
	void (*done)(void *);
	void *done_data;
	int bound_port;
};

/* Held request messages and queued replies are both lists of chunks. */
struct grpc_out_chunk {
	struct grpc_link link;
	size_t len, off;
	uint8_t data[];
};

struct grpc_header {
	char *name, *value;
};

struct grpc_call {
	unsigned refs;
	grpc_conn_t *conn; /* NULL once detached (stream closed, conn gone) */
	int32_t stream_id;
	struct grpc_link conn_link;     /* conn->calls */
	struct grpc_link dispatch_link; /* conn->dispatch */

	const struct grpc_method_entry *method; /* NULL until routed; only while attached */
	void *service_data;
	void *data;
	void *auth;
	void (*auth_release)(void *, void *);
	void *auth_release_data;
	grpc_peer_t peer;
	char *path;

	struct grpc_header *headers;
	size_t n_headers, cap_headers;
	size_t header_bytes;
	bool headers_too_large;

	/* What the method may still see. */
	bool started;        /* routed, authorized, on_start called */
	bool app_done;       /* method finished it or got on_cancel */
	bool finished;       /* final status decided (trailers queued or sent) */
	bool ignore_input;   /* rejected or failed: drop further DATA */
	grpc_status_t cancel_status;

	/* Inbound. */
	struct grpc_deframer deframer;
	struct grpc_link held;     /* complete grpc_msg not yet delivered */
	bool paused;
	bool delivering;           /* inside call_deliver: no recursion */
	bool remote_closed;        /* END_STREAM seen */
	bool half_close_delivered;
	unsigned messages_in;
	size_t unconsumed;         /* stream window withheld while paused */

	/* Outbound. */
	struct grpc_link out;      /* grpc_out_chunk */
	size_t pending;
	unsigned messages_out;
	bool headers_sent;         /* response HEADERS submitted */
	bool data_deferred;        /* data source returned DEFERRED */
	bool trailers_pending;     /* send trailers once out is empty */
	bool writable_wanted;      /* send returned 1; on_writable owed */
	grpc_status_t status;
	char *status_message;      /* percent-encoded, or NULL */
	bool accept_encoding_hint; /* add grpc-accept-encoding to trailers */

	/* Deadline (grpc-timeout). The timer holds a reference while open. */
	uv_timer_t deadline;
	bool deadline_open;
	grpc_server_t *timer_server; /* for open_handles; set while open */
};

struct grpc_conn {
	grpc_server_t *server;
	nghttp2_session *session;
	grpc_peer_t peer;
	grpc_conn_io_t io;
	struct grpc_link calls;
	struct grpc_link dispatch; /* calls with deferred work */
	unsigned busy;
	bool broken;      /* fatal error: no more input, maybe a GOAWAY to pull */
	bool flooded;     /* no more output: peer floods us or session unusable */
	bool established;
	bool terminated;
};

/* grpc_server.c */
const struct grpc_method_entry *grpc_server_find_method(const grpc_server_t *server,
							const char *path);
void grpc_server_handle_closed(grpc_server_t *server);
__attribute__((format(printf, 3, 4))) void grpc_server_log(const grpc_server_t *server, int level,
							   const char *fmt, ...);

/* grpc_call.c: used by grpc_conn.c */
grpc_call_t *grpc_call_create(grpc_conn_t *conn, int32_t stream_id);
void grpc_call_on_header(grpc_call_t *call, const uint8_t *name, size_t namelen,
			 const uint8_t *value, size_t valuelen);
void grpc_call_on_headers_done(grpc_call_t *call, bool end_stream);
int grpc_call_on_data(grpc_call_t *call, const uint8_t *data, size_t len);
void grpc_call_on_end_stream(grpc_call_t *call);
void grpc_call_on_trailers_sent(grpc_call_t *call);
/* The stream is gone (closed, reset, connection lost): detach from the
 * connection, notify the method with status if it has not finished, drop
 * the stream's reference. */
void grpc_call_detach(grpc_call_t *call, grpc_status_t status);
/* Deferred work queued on conn->dispatch. */
void grpc_call_run_deferred(grpc_call_t *call);
ssize_t grpc_call_read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			    size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			    void *user_data);

/* grpc_conn.c: used by grpc_call.c */
void grpc_conn_wake(grpc_conn_t *conn);
void grpc_conn_schedule(grpc_conn_t *conn, grpc_call_t *call);

#endif
