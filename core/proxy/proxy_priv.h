/*
 * proxy_priv.h: the engine's parts and how they talk (internal to
 * hutch_proxy; docs/proxy.md has the picture).
 *
 *   proxy_sock     a byte stream: a libuv socket, TLS over one, or memory
 *                  (fuzzing); counts queued bytes for backpressure
 *   proxy_head     one message head as parsed, with the limits
 *   proxy_h1       a downstream HTTP/1.1 connection (llhttp)
 *   proxy_h2       a downstream HTTP/2 connection (nghttp2)
 *   proxy_exchange one request: route, upstream, both bodies, the log
 *   proxy_up       an upstream HTTP/1.1 connection (llhttp)
 *   proxy_pool     idle upstream connections per upstream
 *   proxy_tunnel   raw bytes both ways after a 101
 *
 * Rules that keep it leak- and crash-free: a sock never calls its owner
 * from inside one of its ops (errors found while writing arrive later, from
 * the loop); an object is freed only by its owner, and libuv handles only in
 * their close callbacks (engine->handles counts them, so the listener knows
 * when all is gone).
 */
#ifndef HUTCH_PROXY_PRIV_H
#define HUTCH_PROXY_PRIV_H

#include <llhttp.h>
#include <string.h>

#include "proxy.h"
#include "strbuf.h"

/* Write queue marks: above HIGH the producer stops reading its source; it
 * reads again when the queue falls to LOW. */
#define PROXY_WRITE_HIGH (256u << 10)
#define PROXY_WRITE_LOW (64u << 10)
#define PROXY_MAX_EDITS 16
/* Bytes of header edits (names and values) a route keeps inline; more
 * spill to the heap. */
#define PROXY_ROUTE_ARENA 512

typedef struct proxy_engine proxy_engine_t;
typedef struct proxy_sock proxy_sock_t;
typedef struct proxy_exchange proxy_exchange_t;
typedef struct proxy_up proxy_up_t;
typedef struct proxy_pool proxy_pool_t;
typedef struct proxy_sock_cbs proxy_sock_cbs_t;

/* ---- intrusive list ---- */
struct proxy_link {
	struct proxy_link *prev, *next;
};
static inline void plist_init(struct proxy_link *h)
{
	h->prev = h->next = h;
}
static inline bool plist_empty(const struct proxy_link *h)
{
	return h->next == h;
}
static inline bool plink_linked(const struct proxy_link *l)
{
	return l->next != NULL && l->next != l;
}
static inline void plist_add_tail(struct proxy_link *h, struct proxy_link *l)
{
	l->prev = h->prev;
	l->next = h;
	h->prev->next = l;
	h->prev = l;
}
static inline void plist_del(struct proxy_link *l)
{
	if (!l->next)
		return;
	l->prev->next = l->next;
	l->next->prev = l->prev;
	l->prev = l->next = l;
}
#define plist_entry(l, type, member) ((type *)((char *)(l) - offsetof(type, member)))

/* ---- the engine: what every connection of a listener shares ---- */
struct proxy_engine {
	uv_loop_t *loop;
	proxy_limits_t limits; /* defaults filled in */
	bool add_forwarded;
	bool tls;              /* downstream scheme https */
	const proxy_policy_t *policy;
	proxy_policy_t policy_copy; /* the policy table, zero-extended */
	void *policy_data;
	proxy_pool_t *pool;
	SSL_CTX *client_tls; /* default upstream TLS context, made when first needed */
	/* Reused for every message head the engine writes (never two at a
	 * time: each is built and handed on before the next starts). */
	strbuf_t req_head, resp_lines;
	/* Exchanges of finished requests, kept for the next ones. */
	proxy_exchange_t *spare_ex;
	unsigned n_spare_ex;
	/* How upstream connections are made: proxy_sock_connect unless set
	 * (the fuzz harness hands out in-memory streams). */
	int (*connect)(proxy_engine_t *eng, const proxy_upstream_t *up,
		       const proxy_sock_cbs_t *cbs, void *owner, proxy_sock_t **out,
		       hutch_err_t *err);
	struct proxy_link conns; /* downstream connections (h1, h2) */
	size_t handles;          /* libuv handles not yet closed */
	bool closing;
	void (*closed_cb)(void *arg);
	void *closed_arg;
};

void proxy_engine_init(proxy_engine_t *eng, uv_loop_t *loop, const proxy_config_t *cfg);
/* Closes every connection and the pool; closed_cb runs when handles is 0. */
void proxy_engine_close(proxy_engine_t *eng);
/* Frees what the engine still holds (the pool, buffers) once closed and
 * every handle is gone. */
void proxy_engine_final(proxy_engine_t *eng);
void proxy_engine_handle_closed(proxy_engine_t *eng);
uint64_t proxy_now_us(void);

/* A timer counted in engine->handles; freed in its close callback.
 * Arming and stopping only note the deadline: the libuv timer is moved
 * only when the new deadline is earlier than the one it runs for, and a
 * timer that fires early re-arms itself for what is left. Each request
 * arms and stops several timers; this keeps them off libuv's timer heap. */
typedef struct proxy_timer {
	uv_timer_t t;
	proxy_engine_t *eng;
	void (*fire)(void *arg);
	void *arg;
	uint64_t due;    /* loop time (ms) it is armed for */
	uint64_t uv_due; /* loop time the libuv timer runs for */
	bool armed, running;
} proxy_timer_t;
proxy_timer_t *proxy_timer_new(proxy_engine_t *eng, void (*fire)(void *), void *arg);
void proxy_timer_arm(proxy_timer_t *t, uint32_t ms);
void proxy_timer_stop(proxy_timer_t *t);
void proxy_timer_free(proxy_timer_t *t);

/* ---- building heads without printf (every request does this) ---- */
static inline void proxy_sb_put(strbuf_t *sb, const void *d, size_t n)
{
	sb_reserve(sb, n);
	memcpy(sb->buf + sb->len, d, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}
#define PROXY_SB_LIT(sb, lit) proxy_sb_put((sb), (lit), sizeof(lit) - 1)
static inline void proxy_sb_str(strbuf_t *sb, const char *s)
{
	proxy_sb_put(sb, s, strlen(s));
}
/* Writes v in decimal (hex) at the end of buf[0..24) and returns where it
 * starts. */
static inline char *proxy_fmt_u64(char buf[24], uint64_t v, unsigned base)
{
	char *p = buf + 24;
	do {
		*--p = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	return p;
}
static inline void proxy_sb_u64(strbuf_t *sb, uint64_t v)
{
	char b[24];
	char *p = proxy_fmt_u64(b, v, 10);
	proxy_sb_put(sb, p, (size_t)(b + 24 - p));
}

/* ---- byte streams ---- */
struct proxy_sock_cbs {
	void (*data)(void *owner, const uint8_t *d, size_t n);
	/* The stream ended: 0 clean EOF, -errno otherwise (a failed write,
	 * a TLS error). Reading has stopped; the owner closes the sock. */
	void (*eof)(void *owner, int err);
	/* queued fell to PROXY_WRITE_LOW after passing PROXY_WRITE_HIGH. */
	void (*drain)(void *owner);
	/* Upstream sockets: connected (and TLS handshake done), or not:
	 * status < 0 and why it failed (valid during the call). */
	void (*connected)(void *owner, int status, const char *why);
};

typedef struct proxy_sock_ops {
	void (*write)(proxy_sock_t *s, const uv_buf_t *bufs, unsigned n);
	void (*read_start)(proxy_sock_t *s);
	void (*read_stop)(proxy_sock_t *s);
	/* Flushes what is queued, sends FIN, reads (and drops) what the peer
	 * still sends for a moment so it gets the response, then closes. */
	void (*close_graceful)(proxy_sock_t *s);
	void (*close)(proxy_sock_t *s);
	/* ALPN protocol the TLS handshake chose, "" otherwise. */
	const char *(*alpn)(proxy_sock_t *s);
} proxy_sock_ops_t;

struct proxy_sock {
	const proxy_sock_ops_t *ops;
	const proxy_sock_cbs_t *cbs; /* NULL after close */
	void *owner;
	size_t queued;   /* bytes written, not yet on the wire */
	bool above_high; /* queued passed HIGH; drain due at LOW */
};

static inline void sock_write(proxy_sock_t *s, const void *d, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
	if (n)
		s->ops->write(s, &b, 1);
}
static inline bool sock_blocked(const proxy_sock_t *s)
{
	return s->queued > PROXY_WRITE_HIGH;
}
static inline void sock_set_owner(proxy_sock_t *s, const proxy_sock_cbs_t *cbs, void *owner)
{
	s->cbs = cbs;
	s->owner = owner;
}
/* Wraps an accepted uv_tcp_t/uv_pipe_t (taken; engine->handles already
 * counts it). ssl: server TLS, or NULL. */
int proxy_sock_accepted(proxy_engine_t *eng, uv_stream_t *stream, SSL_CTX *ssl,
			proxy_sock_t **out, hutch_err_t *err);
/* Starts connecting to up; cbs->connected reports the outcome. */
int proxy_sock_connect(proxy_engine_t *eng, const proxy_upstream_t *up,
		       const proxy_sock_cbs_t *cbs, void *owner, proxy_sock_t **out,
		       hutch_err_t *err);
/* A stream in memory (fuzzing, tests): writes go to sink(arg, ...). */
proxy_sock_t *proxy_sock_mem_new(void (*sink)(void *arg, const uint8_t *d, size_t n),
				 void *arg);
bool proxy_sock_mem_closed(const proxy_sock_t *s);
void proxy_sock_mem_free(proxy_sock_t *s);

/* ---- TLS through memory BIOs ---- */
typedef struct proxy_tls proxy_tls_t;
int proxy_tls_new(SSL_CTX *ctx, bool server, const char *sni, proxy_tls_t **out,
		  hutch_err_t *err);
void proxy_tls_free(proxy_tls_t *t);
/* Feeds ciphertext; passes plaintext to plain(); returns 0, 1 when the
 * handshake has just completed, or -errno with err set. */
int proxy_tls_read(proxy_tls_t *t, const uint8_t *d, size_t n,
		   void (*plain)(void *arg, const uint8_t *d, size_t n), void *arg,
		   hutch_err_t *err);
int proxy_tls_write(proxy_tls_t *t, const uint8_t *d, size_t n, hutch_err_t *err);
/* Starts a client handshake (ClientHello into the output). */
int proxy_tls_start(proxy_tls_t *t, hutch_err_t *err);
void proxy_tls_shutdown(proxy_tls_t *t);
bool proxy_tls_done(const proxy_tls_t *t);
const char *proxy_tls_alpn(const proxy_tls_t *t);
size_t proxy_tls_pending(const proxy_tls_t *t);
size_t proxy_tls_take(proxy_tls_t *t, uint8_t *buf, size_t cap);
/* ca_file: PEM CAs to trust, NULL for the system's. */
int proxy_tls_client_ctx(const char *ca_file, SSL_CTX **out, hutch_err_t *err);

/* ---- a message head ---- */
struct proxy_hdr_off {
	uint32_t name, name_len, value, value_len;
};
typedef struct proxy_head {
	char *buf; /* names and values, each NUL-terminated */
	size_t len, cap;
	struct proxy_hdr_off *hdrs;
	size_t n, hcap;
	uint32_t url, url_len; /* request target, or reason phrase */
	bool item_open;        /* an item is being appended to */
	size_t header_bytes;
	/* Built by proxy_head_finish, pointing into buf; kept (lcap
	 * entries) for the connection's next message. */
	proxy_header_t *list;
	size_t lcap;
} proxy_head_t;

enum { HEAD_URL, HEAD_NAME, HEAD_VALUE };
/* Appends a piece of the URL, a header name or a value. -ENAMETOOLONG (the
 * request line) or -E2BIG (headers) when a limit is passed. */
int proxy_head_append(proxy_head_t *h, int what, const char *d, size_t n,
		      const proxy_limits_t *lim);
void proxy_head_end_item(proxy_head_t *h, int what);
/* Makes h->list; returns 0 or -ENOMEM. */
int proxy_head_finish(proxy_head_t *h);
const char *proxy_head_url(const proxy_head_t *h);
const char *proxy_head_get(const proxy_head_t *h, const char *name);
void proxy_head_reset(proxy_head_t *h);
void proxy_head_free(proxy_head_t *h);

/* True for headers that belong to one connection (RFC 9110 7.6.1), plus the
 * framing ones the engine writes itself; connection is the message's
 * Connection header (its tokens name more). */
bool proxy_hop_by_hop(const char *name, const char *connection);
bool proxy_hop_by_hop_n(const char *name, size_t len, const char *connection);

/* ---- routes ---- */
struct proxy_edit {
	char *name;
	char *value; /* NULL: remove */
	uint32_t name_len, value_len;
};
enum proxy_route_kind { ROUTE_NONE, ROUTE_FORWARD, ROUTE_LOCAL };
struct proxy_route {
	enum proxy_route_kind kind;
	proxy_upstream_t up;
	int status;
	char *content_type;
	char *body;
	size_t body_len;
	char *path;
	struct proxy_edit req_edits[PROXY_MAX_EDITS], resp_edits[PROXY_MAX_EDITS];
	size_t n_req_edits, n_resp_edits;
	proxy_exchange_t *ex; /* back pointer for proxy_route_done */
	bool deferred;
	/* Edit strings live here while they fit (no allocation per edit). */
	size_t arena_used;
	char arena[PROXY_ROUTE_ARENA];
};
/* Frees what the route holds; it is to be initialised again before use. */
void proxy_route_clear(struct proxy_route *r);
/* Writes "name: value\r\n" for every header of h that passes the hop-by-
 * hop filter and is not touched by edits, then the edits that set. */
void proxy_headers_emit(strbuf_t *sb, const proxy_head_t *h, const char *connection,
			const struct proxy_edit *edits, size_t n_edits);
/* Same address, socket path and TLS identity: one pool serves both. */
bool proxy_upstream_same(const proxy_upstream_t *a, const proxy_upstream_t *b);
void proxy_upstream_name(const proxy_upstream_t *up, char *buf, size_t cap, bool as_key);

/* ---- a downstream, as the exchange sees it (h1 connection or h2 stream) ---- */
enum proxy_body_mode {
	BODY_NONE,    /* no body (HEAD, 204, 304) */
	BODY_LENGTH,  /* Content-Length: length */
	BODY_UNKNOWN, /* streamed until the end (chunked, h2 DATA) */
};
typedef struct proxy_down_ops {
	/* Response head: status, headers already filtered (and edited) as
	 * "name: value\r\n" lines; how the body is framed. */
	void (*head)(void *down, int status, const char *lines, size_t len,
		     enum proxy_body_mode mode, uint64_t length);
	void (*body)(void *down, const uint8_t *d, size_t n);
	void (*end)(void *down);
	/* The response cannot complete: cut the stream (h1: the connection). */
	void (*abort)(void *down);
	/* Request body: stop / go on handing it over. */
	void (*pause)(void *down);
	void (*resume)(void *down);
	bool (*blocked)(void *down); /* its write queue is over HIGH */
	/* 101: the h1 connection hands its sock (and unparsed bytes) over. */
	proxy_sock_t *(*take_sock)(void *down, strbuf_t *rest);
	/* The exchange is over and freed; forget it. */
	void (*done)(void *down);
	/* Optional: write what head/body gathered (after each upstream read). */
	void (*flush)(void *down);
} proxy_down_ops_t;

/* The request as the downstream parsed it; the exchange takes head. */
typedef struct proxy_req_info {
	const char *method;
	const char *authority;
	const char *path;
	int http_version;
	int64_t content_length;
	bool has_body; /* more than the head follows */
	bool upgrade;
	const char *peer;
} proxy_req_info_t;

int proxy_exchange_start(proxy_engine_t *eng, const proxy_down_ops_t *ops, void *down,
			 const proxy_req_info_t *info, proxy_head_t *head,
			 proxy_exchange_t **out);
/* Request body from the downstream; false when it should pause. */
bool proxy_exchange_body(proxy_exchange_t *ex, const uint8_t *d, size_t n);
void proxy_exchange_body_end(proxy_exchange_t *ex);
/* The downstream can take more response body. */
void proxy_exchange_down_drained(proxy_exchange_t *ex);
/* The client left (or the connection is closing): free the exchange. */
void proxy_exchange_down_gone(proxy_exchange_t *ex);
/* Frees the spare exchanges the engine keeps. */
void proxy_exchange_spares_free(proxy_engine_t *eng);
/* A local answer with no exchange (parse errors, timeouts): status line,
 * a short text body; Connection: close when close. */
void proxy_simple_response(strbuf_t *sb, int status, bool close);
const char *proxy_reason(int status);

/* ---- upstream connections ---- */
typedef struct proxy_up_events {
	void (*connected)(proxy_exchange_t *ex);
	void (*head)(proxy_exchange_t *ex, int status, proxy_head_t *head, bool keep_body,
		     int64_t content_length, bool upgrade);
	void (*body)(proxy_exchange_t *ex, const uint8_t *d, size_t n);
	void (*end)(proxy_exchange_t *ex);
	/* Failed: status 502/504 and why. retry: nothing of a response came
	 * on a reused connection, so an idempotent request may go again. */
	void (*error)(proxy_exchange_t *ex, int status, const char *why, bool retry);
	void (*drain)(proxy_exchange_t *ex);
	/* 101 parsed: bytes after it are the tunnel's. */
	void (*upgraded)(proxy_exchange_t *ex, const uint8_t *rest, size_t n);
	/* One read's worth parsed, the response goes on. */
	void (*flush)(proxy_exchange_t *ex);
} proxy_up_events_t;

/* Takes a pooled connection to up or opens one, for ex. */
int proxy_up_get(proxy_engine_t *eng, const proxy_upstream_t *up, proxy_exchange_t *ex,
		 const proxy_up_events_t *ev, proxy_up_t **out, hutch_err_t *err);
bool proxy_up_reused(const proxy_up_t *u);
/* It failed to connect (refused, unreachable, timed out, TLS handshake) or
 * was closed or reset before any byte of a response: the upstream never
 * answered this request. */
bool proxy_up_lost(const proxy_up_t *u);
/* Request head and body bytes, written as given. */
void proxy_up_write(proxy_up_t *u, const void *d, size_t n);
void proxy_up_writev(proxy_up_t *u, const uv_buf_t *bufs, unsigned n);
/* "127.0.0.1:8080", for the log (kept with the connection). */
const char *proxy_up_name(const proxy_up_t *u);
bool proxy_up_blocked(const proxy_up_t *u);
/* The request is fully written: start the response timer. head_request:
 * the response has no body whatever its headers say. */
void proxy_up_request_sent(proxy_up_t *u, bool head_request);
void proxy_up_pause(proxy_up_t *u);
void proxy_up_resume(proxy_up_t *u);
/* The exchange is done with it: back to the pool when the response ended
 * cleanly and both sides agreed to keep the connection, closed otherwise. */
void proxy_up_release(proxy_up_t *u, bool reusable);
proxy_sock_t *proxy_up_take_sock(proxy_up_t *u);

/* ---- pool ---- */
int proxy_pool_new(proxy_engine_t *eng, proxy_pool_t **out);
/* An idle connection to up (taken out of the pool), or NULL. */
proxy_up_t *proxy_pool_take(proxy_pool_t *p, const proxy_upstream_t *up);
void proxy_pool_put(proxy_pool_t *p, proxy_up_t *u);
void proxy_pool_remove(proxy_pool_t *p, proxy_up_t *u);
void proxy_pool_close(proxy_pool_t *p);
void proxy_pool_free(proxy_pool_t *p);
/* For proxy_pool: the idle connection's own parts. */
struct proxy_link *proxy_up_pool_link(proxy_up_t *u);
proxy_up_t *proxy_up_from_pool_link(struct proxy_link *l);
const proxy_upstream_t *proxy_up_upstream(const proxy_up_t *u);
void proxy_up_close(proxy_up_t *u);
void proxy_up_park(proxy_up_t *u, uint32_t idle_ms);

/* ---- tunnels ---- */
/* Joins two socks (both taken) after a 101; pending bytes already read
 * from each side go to the other first. */
void proxy_tunnel_start(proxy_engine_t *eng, proxy_sock_t *down, proxy_sock_t *up,
			const uint8_t *down_rest, size_t down_n, const uint8_t *up_rest,
			size_t up_n);

/* ---- downstream connections ---- */
/* A connection accepted on the listener: sniffs h2c's preface or ALPN and
 * becomes proxy_h1 or proxy_h2. Takes sock. */
void proxy_conn_start(proxy_engine_t *eng, proxy_sock_t *sock, const char *peer);
typedef struct proxy_conn_base {
	struct proxy_link link; /* eng->conns */
	void (*shut)(struct proxy_conn_base *c); /* engine closing */
} proxy_conn_base_t;
void proxy_h1_start(proxy_engine_t *eng, proxy_sock_t *sock, const char *peer,
		    const uint8_t *first, size_t n);
void proxy_h2_start(proxy_engine_t *eng, proxy_sock_t *sock, const char *peer,
		    const uint8_t *first, size_t n);

#endif
