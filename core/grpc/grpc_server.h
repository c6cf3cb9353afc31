/*
 * grpc_server.h: a gRPC server (HTTP/2 via nghttp2) on a caller's libuv loop.
 *
 * hutchd serves its API as real gRPC so that stock clients (grpcio, grpc-go,
 * grpcurl) can call it. A server listens on unix sockets (peer credentials
 * via SO_PEERCRED) and on TCP, plaintext h2c or TLS with ALPN "h2". Methods
 * are registered as tables of callbacks keyed by their path
 * ("/hutch.v1.Sandboxes/Create"); the layer decodes each request message with
 * the method's protobuf-c descriptor and encodes replies with the message's
 * own descriptor.
 *
 * Threading: everything runs on the loop passed to grpc_server_new. Every
 * function here must be called on that loop's thread, and every callback is
 * invoked there. Nothing blocks the loop.
 *
 * Lifetime of a call: the layer creates a grpc_call_t when a request's
 * headers arrive, checks them (method, content-type, path, grpc-timeout,
 * the authorize hook) and only then shows it to the method through
 * on_start. From then on the method sees exactly one of two endings:
 * it calls grpc_call_finish itself, or the layer calls on_cancel (peer reset,
 * deadline, connection lost, server shutdown, malformed request message).
 * After either, no callback for that call is invoked again. The call object
 * itself stays valid while anyone holds a reference: the layer holds one while
 * the HTTP/2 stream lives; a method that finishes asynchronously (timer,
 * child process) takes its own with grpc_call_ref and drops it with
 * grpc_call_unref when done. Calls may outlive their connection and even the
 * server; on a dead call, sends fail with -ECANCELED and finish is a no-op.
 *
 * Backpressure: inbound, grpc_call_pause_recv stops granting HTTP/2 window
 * to the client, so a client streaming faster than the method consumes
 * eventually blocks in its own send. Outbound, grpc_call_send always queues
 * but returns 1 once the call's queue reaches the high watermark; the method
 * should then stop producing until on_writable. The queue only drains as
 * fast as the client reads (HTTP/2 flow control) and the socket accepts
 * (the transport hands bytes to libuv only while its write queue is small),
 * so a slow reader costs at most about one watermark per call.
 *
 * SIGPIPE: libuv writes to sockets with write(2). grpc_server_new sets
 * SIGPIPE to SIG_IGN if it is still at SIG_DFL, so that a client vanishing
 * mid-write is an EPIPE, not the death of the daemon.
 */
#ifndef HUTCH_GRPC_SERVER_H
#define HUTCH_GRPC_SERVER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hutch/error.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "grpc_status.h"

typedef struct grpc_server grpc_server_t;
typedef struct grpc_call grpc_call_t;

typedef enum grpc_peer_kind {
	GRPC_PEER_MEMORY = 0, /* no socket: a connection fed by hand (fuzzing) */
	GRPC_PEER_UNIX = 1,
	GRPC_PEER_TCP = 2,
} grpc_peer_kind_t;

/* Who is on the other end of a call's connection. Plain data, copied into
 * every call, valid as long as the call. */
typedef struct grpc_peer {
	grpc_peer_kind_t kind;
	bool tls;       /* TCP with TLS; the ALPN protocol is always "h2" */
	bool has_cred;  /* unix: uid/gid/pid below came from SO_PEERCRED */
	uid_t uid;
	gid_t gid;
	pid_t pid;
	/* tcp: "192.0.2.1:5000" or "[2001:db8::1]:5000";
	 * unix: the listening socket's path (possibly truncated). */
	char address[108];
} grpc_peer_t;

/*
 * One RPC method. The table passed to grpc_server_add_methods is copied
 * (path included); the descriptors and callbacks must stay valid until the
 * server is shut down. All callbacks run on the loop thread and receive the
 * call; grpc_call_service_data(call) returns the pointer given when the
 * method was added.
 */
typedef struct grpc_method {
	/* "/package.Service/Method", as sent in the :path header. */
	const char *path;
	/* Every request message is decoded with this descriptor before
	 * on_message; bytes it cannot decode end the call with
	 * INVALID_ARGUMENT (and on_cancel). Required. */
	const ProtobufCMessageDescriptor *request;
	/* false: exactly one request message; a second, or none at
	 * half-close, ends the call with INTERNAL. */
	bool client_streaming;
	/* false: at most one grpc_call_send before grpc_call_finish. */
	bool server_streaming;
	/* Optional. Headers are in and the call passed authorization; the
	 * first callback the method sees for this call. */
	void (*on_start)(grpc_call_t *call);
	/* Required. One decoded request. msg is owned by the layer and freed
	 * when this returns; copy what must be kept. Not called while
	 * receiving is paused. For a method that is not client-streaming it is
	 * called once, after the whole request stream has arrived, and
	 * on_half_close follows at once. */
	void (*on_message)(grpc_call_t *call, const ProtobufCMessage *msg);
	/* Optional. The client finished sending; delivered after the last
	 * on_message, and not while paused. A unary method usually replies
	 * here (or already in on_message). */
	void (*on_half_close)(grpc_call_t *call);
	/* Optional. grpc_call_send returned 1 earlier and the queue has since
	 * drained to the low watermark: produce more. */
	void (*on_writable)(grpc_call_t *call);
	/* Optional (but a method that holds resources per call needs it).
	 * The call ended without the method finishing it: peer reset,
	 * deadline, connection lost, server shutdown, or a malformed request.
	 * grpc_call_cancel_status tells which. The last callback for the
	 * call. */
	void (*on_cancel)(grpc_call_t *call);
} grpc_method_t;

typedef struct grpc_server_opts {
	/* Largest request message accepted; larger ones end the call with
	 * RESOURCE_EXHAUSTED as soon as their length prefix arrives.
	 * 0 = 16 MiB. */
	size_t max_recv_message;
	/* Largest request header block (names + values + 32 per field, as
	 * HTTP/2 counts it); larger ends the call with RESOURCE_EXHAUSTED.
	 * 0 = 16 KiB. */
	size_t max_metadata;
	/* SETTINGS_MAX_CONCURRENT_STREAMS per connection; streams beyond it
	 * are refused (REFUSED_STREAM, which clients retry). 0 = 256. */
	uint32_t max_concurrent_streams;
	/* Per-stream receive window (SETTINGS_INITIAL_WINDOW_SIZE): how much a
	 * client may send to a paused call before it blocks. 0 = 64 KiB. */
	uint32_t stream_window;
	/* Connection receive window. 0 = 1 MiB. */
	uint32_t conn_window;
	/* Per-call outbound queue size at which grpc_call_send starts
	 * returning 1; on_writable fires when it drains to half of this.
	 * 0 = 256 KiB. */
	size_t send_high_watermark;
	/* Connections beyond this are accepted and closed at once.
	 * 0 = 1024. */
	unsigned max_connections;
	/* A connection that has not completed TLS and the HTTP/2 preface in
	 * this time is closed. 0 = 10000 ms. */
	unsigned handshake_timeout_ms;

	/* Optional. Called for every call whose method exists, before
	 * on_start. Returns GRPC_STATUS_OK to let the call through, or the
	 * status to end it with (typically UNAUTHENTICATED or
	 * PERMISSION_DENIED), writing a message for the client into msg
	 * (cap bytes, NUL-terminated; may be left empty). It may inspect
	 * grpc_call_metadata ("authorization"), grpc_call_peer and
	 * grpc_call_path, and attach the caller's identity with
	 * grpc_call_set_auth. It must not send or finish the call. */
	grpc_status_t (*authorize)(void *data, grpc_call_t *call, char *msg, size_t cap);
	void *authorize_data;
	/* Optional. Releases what grpc_call_set_auth attached, when the call
	 * object is freed. Receives authorize_data. */
	void (*auth_release)(void *data, void *auth);

	/* Optional. Connection-level events (protocol errors, TLS failures,
	 * refused connections). level is a syslog LOG_* value; msg is one
	 * line without a newline. NULL: nothing is logged. */
	void (*log)(void *data, int level, const char *msg);
	void *log_data;
} grpc_server_opts_t;

/* Creates a server on loop, listening nowhere yet. opts may be NULL (all
 * defaults) and is copied. On success *out is the new server, owned by the
 * caller until grpc_server_shutdown. Returns 0 or -errno (-ENOMEM). */
int grpc_server_new(uv_loop_t *loop, const grpc_server_opts_t *opts, grpc_server_t **out,
		    hutch_err_t *err);

/* Registers n methods; service_data is what grpc_call_service_data returns
 * for calls to them. Returns -EEXIST if a path is already registered (none
 * of the n is then added), -EINVAL for a method without path, request
 * descriptor or on_message, -ENOMEM. May be called at any time before
 * shutdown; calls already running are not affected. */
int grpc_server_add_methods(grpc_server_t *server, const grpc_method_t *methods, size_t n,
			    void *service_data, hutch_err_t *err);

/* Calls fn once for each service that has methods registered, in sorted
 * order, with its full name ("hutch.v1.Sandboxes": the path's part between
 * the slashes; name is not NUL-terminated, len bytes). For the health and
 * reflection services (grpc_health.h, grpc_reflection.h). */
void grpc_server_each_service(const grpc_server_t *server,
			      void (*fn)(void *data, const char *name, size_t len), void *data);

/* Listens on a unix socket at path with file mode mode (e.g. 0660). The
 * socket is created under a temporary name, chmod'ed and renamed into
 * place, so it is never reachable with looser permissions. A stale socket
 * file (nobody accepting) is replaced; a live one fails with -EADDRINUSE;
 * a path that exists and is not a socket fails with -EEXIST. The socket file
 * is removed at shutdown if it is still ours. */
int grpc_server_listen_unix(grpc_server_t *server, const char *path, mode_t mode,
			    hutch_err_t *err);

/* Listens on TCP. host is a numeric IPv4/IPv6 address or "localhost"
 * (127.0.0.1); port 0 picks a free port (see grpc_server_bound_port). With
 * cert_file and key_file (PEM; the cert file may hold a chain) connections
 * must speak TLS >= 1.2 and offer ALPN "h2", else the handshake is refused;
 * with both NULL the listener speaks plaintext HTTP/2 with prior knowledge
 * (h2c), which is only sensible on loopback. One of the two set is -EINVAL.
 * Certificate or key errors are reported here, not at accept time. */
int grpc_server_listen_tcp(grpc_server_t *server, const char *host, int port,
			   const char *cert_file, const char *key_file, hutch_err_t *err);

/* The port of the most recent successful grpc_server_listen_tcp (useful with
 * port 0), or -1 if there is none. */
int grpc_server_bound_port(const grpc_server_t *server);

/* Stops the server: closes the listeners (removing unix socket files),
 * sends GOAWAY on every connection, ends every live call (on_cancel with
 * UNAVAILABLE), closes every handle, then frees the server and calls
 * done(data) from the loop, never from inside this function. Calls the
 * methods still hold references to stay valid (and dead) until unref'd.
 * May be called from inside a callback. After this call the server pointer
 * must not be used. Calling it twice is a bug. */
void grpc_server_shutdown(grpc_server_t *server, void (*done)(void *data), void *data);

/* ---- per call; all of these accept only a call the caller holds (a callback
 * argument, or a reference) ---- */

/* Encodes msg and queues it, preceded by the response headers if this is the
 * first output. Returns 0 when queued, 1 when queued and the call's queue
 * is now at or above the high watermark (wait for on_writable before
 * sending more), -ECANCELED when the call is dead or already finished,
 * -EINVAL for a second message on a method that is not server-streaming,
 * -ENOMEM. Never blocks. */
int grpc_call_send(grpc_call_t *call, const ProtobufCMessage *msg);

/* Ends the call: queued messages are sent, then trailers with status and
 * message (NULL = none; percent-encoded on the wire and cut, between UTF-8
 * characters, to 4 KiB encoded, which stock clients accept).
 * With nothing sent yet this is a Trailers-Only response. No-op on a call
 * that is dead or already finished. No callback follows for this call. */
void grpc_call_finish(grpc_call_t *call, grpc_status_t status, const char *message);

/* Bytes queued by grpc_call_send and not yet framed into HTTP/2 DATA. */
size_t grpc_call_pending(const grpc_call_t *call);

/* paused = true: stop delivering messages and stop granting the client
 * HTTP/2 window, so at most one stream window (opts.stream_window) more is
 * buffered; the client blocks after that. false: deliver what was
 * buffered (from the loop, not from inside this function) and grant window
 * again. Idempotent; no-op on a dead call. */
void grpc_call_pause_recv(grpc_call_t *call, bool paused);

/* The value of request header name (lower-case, e.g. "authorization",
 * "x-request-id", ":authority"); the first one if repeated; NULL if absent.
 * "-bin" headers are returned as sent (base64). Valid as long as the call. */
const char *grpc_call_metadata(const grpc_call_t *call, const char *name);

/* The method path ("/hutch.v1.Sandboxes/Create"). Valid as long as the
 * call. */
const char *grpc_call_path(const grpc_call_t *call);

/* The peer of the call's connection. Valid as long as the call. */
const grpc_peer_t *grpc_call_peer(const grpc_call_t *call);

/* The method's private per-call pointer; the layer never touches it. */
void grpc_call_set_data(grpc_call_t *call, void *data);
void *grpc_call_get_data(const grpc_call_t *call);

/* The caller's identity (tenant), set by the authorize hook and released by
 * opts.auth_release when the call is freed. Setting it twice releases the
 * first. */
void grpc_call_set_auth(grpc_call_t *call, void *auth);
void *grpc_call_auth(const grpc_call_t *call);

/* The server the call arrived at; NULL once the call is dead (its
 * connection gone). */
grpc_server_t *grpc_call_server(const grpc_call_t *call);

/* service_data of the method the call is for. */
void *grpc_call_service_data(const grpc_call_t *call);

/* Why the call ended without the method finishing it, meaningful in and
 * after on_cancel: CANCELLED (client reset the stream), DEADLINE_EXCEEDED,
 * UNAVAILABLE (connection lost or server shutdown), INVALID_ARGUMENT /
 * INTERNAL / RESOURCE_EXHAUSTED / UNIMPLEMENTED (malformed or oversized
 * request). GRPC_STATUS_OK while the call is alive or if the method
 * finished it. */
grpc_status_t grpc_call_cancel_status(const grpc_call_t *call);

/* true until the call is finished or cancelled. */
bool grpc_call_alive(const grpc_call_t *call);

/* Reference counting. A method that keeps using the call after its callback
 * returns (timers, child processes) must hold a reference. */
void grpc_call_ref(grpc_call_t *call);
void grpc_call_unref(grpc_call_t *call);

#endif
