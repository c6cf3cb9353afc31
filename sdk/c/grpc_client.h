/*
 * grpc_client.h: a small blocking gRPC client (HTTP/2 via nghttp2) for the
 * hutch CLI and the C client library.
 *
 * A channel is one HTTP/2 connection to hutchd: "unix:/run/hutch/api.sock"
 * (plaintext; the daemon authenticates by peer uid) or "host:port" over TLS
 * (verified against a CA file or the system store), or plaintext h2c to a
 * loopback address. Many calls may run on one channel at once.
 *
 * Blocking model: no threads and no event loop. Functions that wait
 * (hc_call_send, hc_call_recv, hc_unary, hc_channel_pump) drive the
 * connection themselves, so progress on one call also moves data for the
 * others. For interactive use (exec: stdin and the stream at once), poll()
 * hc_channel_fd() for hc_channel_events() next to your own fds and call
 * hc_channel_pump(ch, 0) when it is ready; then take what arrived with
 * hc_call_recv(..., 0).
 *
 * Flow control works both ways: hc_call_send blocks while the server's
 * window is closed (a paused server stalls the sender), and messages that
 * arrived but were not taken with hc_call_recv stop the server once about
 * two stream windows (opts.stream_window) are buffered for that call.
 *
 * Errors: functions return 0 (or 1, see hc_call_recv) or a negative errno
 * with err filled. When a call ends with a non-OK gRPC status the errno is
 * derived from the status (hc_status_errno) and hc_call_status /
 * hc_call_status_message give the exact code and the server's message.
 * Not thread-safe: use a channel and its calls from one thread at a time.
 * SIGPIPE is never raised (writes use MSG_NOSIGNAL).
 */
#ifndef HUTCH_GRPC_CLIENT_H
#define HUTCH_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>
#include <protobuf-c/protobuf-c.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hc_channel hc_channel_t;
typedef struct hc_call hc_call_t;

/* gRPC status codes (identical on every implementation). */
enum {
	HC_STATUS_OK = 0,
	HC_STATUS_CANCELLED = 1,
	HC_STATUS_UNKNOWN = 2,
	HC_STATUS_INVALID_ARGUMENT = 3,
	HC_STATUS_DEADLINE_EXCEEDED = 4,
	HC_STATUS_NOT_FOUND = 5,
	HC_STATUS_ALREADY_EXISTS = 6,
	HC_STATUS_PERMISSION_DENIED = 7,
	HC_STATUS_RESOURCE_EXHAUSTED = 8,
	HC_STATUS_FAILED_PRECONDITION = 9,
	HC_STATUS_ABORTED = 10,
	HC_STATUS_OUT_OF_RANGE = 11,
	HC_STATUS_UNIMPLEMENTED = 12,
	HC_STATUS_INTERNAL = 13,
	HC_STATUS_UNAVAILABLE = 14,
	HC_STATUS_DATA_LOSS = 15,
	HC_STATUS_UNAUTHENTICATED = 16,
};

typedef struct hc_channel_opts {
	/* TLS: verify the server with this PEM CA bundle instead of the
	 * system store. Implies tls. */
	const char *ca_file;
	/* host:port targets: speak TLS (ALPN h2). Without it (and without
	 * ca_file) the channel speaks plaintext h2c, which is refused unless
	 * the address is loopback. Ignored for unix: targets. */
	bool tls;
	/* Name checked against the certificate and sent as SNI; NULL: the
	 * host part of the target. */
	const char *server_name;
	/* Sent as "authorization: Bearer KEY" on every call; NULL: none. */
	const char *api_key;
	/* Connecting and the TLS handshake together. 0 = 10000 ms. */
	int connect_timeout_ms;
	/* Largest response message accepted; a larger one ends its call with
	 * RESOURCE_EXHAUSTED. 0 = 16 MiB. */
	size_t max_recv_message;
	/* Per-call receive window. Up to about twice this may arrive and
	 * wait for hc_call_recv before the server is stopped. 0 = 1 MiB. */
	uint32_t stream_window;
} hc_channel_opts_t;

/* One request header. Names must be lower-case; "-bin" values must already
 * be base64. */
typedef struct hc_metadata {
	const char *name;
	const char *value;
} hc_metadata_t;

/* Connects to target ("unix:PATH", "unix:///abs/path", "HOST:PORT",
 * "[V6ADDR]:PORT"), completes TLS if asked, and sends the HTTP/2 preface.
 * opts may be NULL (plaintext, defaults). Blocks up to the connect timeout.
 * Returns 0 with *out set (free with hc_channel_close), or -errno:
 * -EINVAL bad target, -EPERM plaintext to a non-loopback address,
 * -ETIMEDOUT, -ECONNREFUSED, -EPROTO (TLS failure, certificate not
 * trusted, server without ALPN h2), ... */
int hc_channel_open(const char *target, const hc_channel_opts_t *opts, hc_channel_t **out,
		    hutch_err_t *err);

/* Sends GOAWAY (best effort), closes the connection and frees the channel.
 * Calls still open end with UNAVAILABLE; they must still be freed with
 * hc_call_free. NULL is ignored. */
void hc_channel_close(hc_channel_t *ch);

/* The socket, for poll(); never read or write it yourself. */
int hc_channel_fd(const hc_channel_t *ch);

/* The poll events to wait for on hc_channel_fd: POLLIN, plus POLLOUT while
 * output is waiting for the socket. */
short hc_channel_events(const hc_channel_t *ch);

/* Moves data both ways, waiting up to timeout_ms (0: don't wait; -1: until
 * something happens) for the socket. Also enforces call deadlines. Returns
 * 0, or -errno once the connection has failed (all its calls then end with
 * UNAVAILABLE). */
int hc_channel_pump(hc_channel_t *ch, int timeout_ms, hutch_err_t *err);

/* Starts a call to path ("/hutch.v1.Exec/Run"). timeout_ms > 0 sets the
 * deadline (sent as grpc-timeout; enforced here too: the call then ends with
 * DEADLINE_EXCEEDED); <= 0 means none. md/n_md: extra request headers.
 * Does not wait for the server. Returns 0 with *out set (free with
 * hc_call_free), or -errno (channel failed, -ENOMEM). */
int hc_call_start(hc_channel_t *ch, const char *path, int timeout_ms, const hc_metadata_t *md,
		  size_t n_md, hc_call_t **out, hutch_err_t *err);

/* Queues one request message and sends it, blocking while more than 64 KiB
 * of this call's messages are waiting for the server's flow-control window
 * (pumping the connection meanwhile). Returns 0, -EINVAL after
 * hc_call_close_send, or the call's error once it has ended (see
 * hc_call_recv). */
int hc_call_send(hc_call_t *call, const ProtobufCMessage *msg, hutch_err_t *err);

/* true when hc_call_send would not block: the call is alive, still sending,
 * and its unsent backlog is under 64 KiB. */
bool hc_call_writable(const hc_call_t *call);

/* Half-closes: tells the server no more requests follow. Idempotent.
 * Returns 0 or the call's error once it has ended. */
int hc_call_close_send(hc_call_t *call, hutch_err_t *err);

/* Takes the next response message, waiting up to timeout_ms (0: don't wait;
 * -1: no limit other than the call's deadline). Returns
 *   1  with *msg set (free with protobuf_c_message_free_unpacked(*msg, NULL)),
 *   0  the call ended with status OK and no message is left,
 *  -EAGAIN  nothing arrived within timeout_ms; the call goes on,
 *  <0 other: the call ended with a non-OK status (-hc_status_errno(status):
 *     e.g. -ENOENT for NOT_FOUND, -ETIMEDOUT for DEADLINE_EXCEEDED) or a
 *     response could not be decoded with desc (-EBADMSG, status INTERNAL);
 *     err says "STATUS: message" and hc_call_status tells the code.
 * Messages that arrived before the end are returned before the status. */
int hc_call_recv(hc_call_t *call, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
		 int timeout_ms, hutch_err_t *err);

/* The final gRPC status, or -1 while the call is still running. */
int hc_call_status(const hc_call_t *call);

/* The final status message (percent-decoded grpc-message, or a
 * description of a local/transport failure); "" when none or still
 * running. Valid until hc_call_free. */
const char *hc_call_status_message(const hc_call_t *call);

/* Cancels a running call (RST_STREAM CANCEL); its status becomes
 * CANCELLED. No-op on an ended call. */
void hc_call_cancel(hc_call_t *call);

/* Frees a call, cancelling it first if it is still running. NULL is
 * ignored. Works after hc_channel_close too. */
void hc_call_free(hc_call_t *call);

/* One request, one response: start, send, close, receive. On success
 * *resp is set (free with protobuf_c_message_free_unpacked) and 0 is
 * returned. On failure returns -errno as hc_call_recv does; *status_out (if
 * not NULL) receives the gRPC status either way (OK on success). */
int hc_unary(hc_channel_t *ch, const char *path, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, int timeout_ms,
	     const hc_metadata_t *md, size_t n_md, int *status_out, hutch_err_t *err);

/* "NOT_FOUND" etc.; "UNKNOWN" outside 0..16. */
const char *hc_status_name(int status);

/* The errno a status maps to: CANCELLED ECANCELED, UNKNOWN EIO,
 * INVALID_ARGUMENT EINVAL, DEADLINE_EXCEEDED ETIMEDOUT, NOT_FOUND ENOENT,
 * ALREADY_EXISTS EEXIST, PERMISSION_DENIED EACCES, RESOURCE_EXHAUSTED
 * ENOSPC, FAILED_PRECONDITION EBUSY, ABORTED ECONNABORTED, OUT_OF_RANGE
 * ERANGE, UNIMPLEMENTED ENOSYS, INTERNAL EPROTO, UNAVAILABLE ECONNREFUSED,
 * DATA_LOSS EBADMSG, UNAUTHENTICATED EKEYREJECTED; 0 for OK. */
int hc_status_errno(int status);

#ifdef __cplusplus
}
#endif
#endif
