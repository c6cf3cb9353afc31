/*
 * grpc_client_internal.h: structures shared by grpc_client_channel.c (the
 * connection: socket, TLS, HTTP/2 session) and grpc_client_call.c (calls).
 */
#ifndef HUTCH_GRPC_CLIENT_INTERNAL_H
#define HUTCH_GRPC_CLIENT_INTERNAL_H

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "grpc_client.h"

#define HC_SEND_BUFFER (64u << 10)
#define HC_DEFAULT_MAX_RECV (16u << 20)
#define HC_DEFAULT_STREAM_WINDOW (1u << 20)
#define HC_CONN_WINDOW (16u << 20)
#define HC_DEFAULT_CONNECT_TIMEOUT_MS 10000
#define HC_PREFIX_LEN 5

/* A queued message, outbound (with its 5-byte prefix) or inbound (without). */
struct hc_chunk {
	struct hc_chunk *next;
	size_t len, off;
	uint8_t data[];
};

struct hc_queue {
	struct hc_chunk *head, *tail;
	size_t bytes; /* unsent/unread bytes in the queue */
};

struct hc_call {
	hc_channel_t *ch; /* NULL once the channel is closed */
	struct hc_call *prev, *next;
	int32_t stream_id;
	bool closed; /* the HTTP/2 stream is gone */
	uint64_t deadline; /* monotonic ms; 0 = none */

	struct hc_queue out;
	bool send_closed;
	bool deferred;

	/* Response message reassembly. */
	uint8_t hdr[HC_PREFIX_LEN];
	size_t hdr_len;
	struct hc_chunk *partial; /* len = bytes so far, off = announced length */
	struct hc_queue in;       /* complete messages not yet taken */
	size_t unconsumed;        /* stream window withheld from the server */

	int http_status;
	int grpc_status; /* from the response; -1 until seen */
	char *grpc_message;

	bool ended;
	int status; /* final; valid once ended */
	char *status_message;
};

struct hc_channel {
	int fd;
	bool tls;
	SSL_CTX *ssl_ctx;
	SSL *ssl;
	BIO *rbio, *wbio;
	nghttp2_session *session;
	char *authority;
	char *authorization; /* "Bearer KEY" or NULL */
	size_t max_recv;
	uint32_t stream_window;

	/* Bytes (ciphertext with TLS) waiting for the socket. */
	uint8_t *out;
	size_t out_len, out_off, out_cap;

	bool dead;
	int dead_errno;
	char dead_msg[256];

	struct hc_call *calls;
};

uint64_t hc_now_ms(void);

/* grpc_client_channel.c */
/* Moves what nghttp2 has to the socket without blocking. */
int hc_channel_flush(hc_channel_t *ch);
/* The connection failed: every running call ends with UNAVAILABLE. */
void hc_channel_fail(hc_channel_t *ch, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
struct hc_call *hc_channel_find_call(hc_channel_t *ch, int32_t stream_id);

/* grpc_client_call.c: nghttp2 callbacks that concern calls */
void hc_call_end(hc_call_t *call, int status, const char *message);
void hc_call_on_header(hc_call_t *call, const uint8_t *name, size_t namelen,
		       const uint8_t *value, size_t valuelen);
void hc_call_on_data(hc_call_t *call, const uint8_t *data, size_t len);
void hc_call_on_close(hc_call_t *call, uint32_t error_code);
ssize_t hc_call_read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			  size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			  void *user_data);
void hc_call_check_deadline(hc_call_t *call, uint64_t now);

#endif
