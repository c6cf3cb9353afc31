/*
 * proxy.h: hutch's one HTTP proxy engine.
 *
 * A listener accepts HTTP/1.1 (keep-alive, pipelined requests answered in
 * order) and HTTP/2 (h2c with prior knowledge, or h2 chosen by ALPN when the
 * listener has a TLS context) and hands every request to a policy: the part
 * each feature (the scaling-group router, the L7 egress proxy, the MCP
 * gateway) writes. The policy decides, per request, to forward it to an
 * upstream (TCP or unix socket, plaintext or TLS) or to answer it locally,
 * and which headers to set or remove each way; the engine does the rest:
 * parsing (llhttp, nghttp2), a keep-alive connection pool per upstream,
 * streaming both ways with backpressure, Upgrade/WebSocket tunnels,
 * timeouts and limits. Requests reach upstreams as HTTP/1.1.
 *
 * Threads: everything runs on the caller's libuv loop, on the thread that
 * runs it. The policy's callbacks are called on that loop and must not
 * block it; a policy that needs to wait (a replica starting) defers its
 * decision (PROXY_ROUTE_DEFER) and completes it later on the same loop.
 *
 * Errors: functions return 0 or -errno and fill the hutch_err_t last
 * argument. What goes wrong with one request (a malformed request, an
 * upstream that is down or slow) never fails the listener: the client gets
 * a status (400, 408, 413, 414, 431, 502, 504) and the policy's log callback
 * hears about it.
 *
 * Ownership: the engine copies what it keeps from the config and from every
 * route; strings it hands the policy (in proxy_request_t, proxy_log_t) are
 * valid only during the call. docs/proxy.md has the design.
 */
#ifndef HUTCH_PROXY_H
#define HUTCH_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <hutch/error.h>
#include <openssl/ssl.h>
#include <uv.h>

typedef struct proxy_listener proxy_listener_t;
/* A route being decided: filled by the policy through the proxy_route_*
 * functions below, opaque otherwise. */
typedef struct proxy_route proxy_route_t;

typedef struct proxy_header {
	const char *name; /* as received (HTTP/2: lower case) */
	const char *value;
} proxy_header_t;

/* A request as the client sent it, for the policy to decide on. */
typedef struct proxy_request {
	const char *method;    /* "GET" */
	const char *scheme;    /* "http" or "https" (the listener's) */
	const char *authority; /* Host or :authority; "" when absent */
	const char *path;      /* the request target, "/a?b" */
	const proxy_header_t *headers; /* every header received, in order */
	size_t n_headers;
	int http_version;       /* 10, 11 or 20 */
	int64_t content_length; /* -1 when not known (chunked, h2 without it) */
	bool upgrade;           /* HTTP/1.1 Upgrade (WebSocket) requested */
	const char *peer;       /* the client's address, "127.0.0.1" */
} proxy_request_t;

/* Where a forwarded request goes. */
typedef struct proxy_upstream {
	/* TCP: addr/addr_len; unix socket: unix_path non-empty. */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char unix_path[108];
	/* TLS toward the upstream. tls_ctx NULL: the listener's default client
	 * context (system CAs, peer verified). sni, when set, is sent and the
	 * certificate is checked against it; without sni nothing names the
	 * peer, so only the chain is checked. The context must outlive the
	 * listener. */
	bool tls;
	SSL_CTX *tls_ctx;
	char sni[256];
} proxy_upstream_t;

/* What the policy's route() returns. */
typedef enum proxy_route_result {
	PROXY_ROUTE_DONE = 0,  /* *route is complete */
	PROXY_ROUTE_DEFER = 1, /* the policy calls proxy_route_done later */
} proxy_route_result_t;

/* Once per request, when it is over (answered, failed or abandoned). */
typedef struct proxy_log {
	const char *method, *authority, *path;
	const char *peer;
	int http_version;
	int status;            /* what the client got; 0: nothing (it left) */
	uint64_t bytes_in;     /* request body bytes received from the client */
	uint64_t bytes_out;    /* response body bytes sent to the client */
	uint64_t total_us;     /* head received -> last byte sent */
	uint64_t connect_us;   /* upstream connect (0: a pooled connection) */
	uint64_t upstream_us;  /* request sent -> response head (TTFB) */
	const char *upstream;  /* "127.0.0.1:8080", "unix:/p", "" (local) */
	bool reused;           /* the upstream connection came from the pool */
	/* Tries after the first: on a fresh connection (a pooled one was
	 * dead) or on the upstream the policy's upstream_failed chose. */
	int retries;
	const char *error;     /* NULL, or why it failed ("upstream timeout") */
} proxy_log_t;

/*
 * The policy: a feature's decisions, as a table (version = size, grows at
 * the end). data is the policy's own; the engine never frees it.
 */
typedef struct proxy_policy {
	uint32_t size; /* sizeof(proxy_policy_t) the policy was built with */
	/* Required. Decides where req goes by filling route with
	 * proxy_route_forward or proxy_route_local (and header edits). A
	 * request left undecided gets 502. Returns PROXY_ROUTE_DONE, or
	 * PROXY_ROUTE_DEFER to decide later with proxy_route_done(route),
	 * on this loop; until then route stays valid unless cancel is
	 * called. req is valid only during this call. */
	proxy_route_result_t (*route)(void *data, const proxy_request_t *req,
				      proxy_route_t *route);
	/* Optional (needed with DEFER): the client left while a decision was
	 * deferred; route is gone after this returns. */
	void (*cancel)(void *data, proxy_route_t *route);
	/* Optional: called once per request when it is over. */
	void (*log)(void *data, const proxy_log_t *entry);
	/* methods above are valid for size >= 32 */
	/* Optional: the upstream route named could not be connected to
	 * (refused, unreachable, connect timeout, TLS handshake), or it closed
	 * or reset the connection before any byte of a response (a relay in
	 * front of a dead server does that). Asked only for an idempotent
	 * request (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) without a body,
	 * which RFC 9110 lets a proxy send again. failed is
	 * that upstream; attempt counts the failures so far (1, 2, ...). The
	 * policy may fill route again (proxy_route_forward to another
	 * upstream, or proxy_route_local) and return true to have it used;
	 * false fails the request as it would have (502, or 504 on a connect
	 * timeout). req and failed are valid only during the call; the engine
	 * keeps asking on every failure, so the policy bounds the attempts. */
	bool (*upstream_failed)(void *data, const proxy_request_t *req, proxy_route_t *route,
				const proxy_upstream_t *failed, int attempt);
	/* methods above are valid for size >= 40 */
} proxy_policy_t;
_Static_assert(offsetof(proxy_policy_t, log) + sizeof(void *) == 32 || sizeof(void *) != 8,
	       "proxy_policy_t: the size-32 members moved");
_Static_assert(offsetof(proxy_policy_t, upstream_failed) + sizeof(void *) == 40 ||
		       sizeof(void *) != 8,
	       "proxy_policy_t: the size-40 members moved");

/* Timeouts (milliseconds) and limits; 0 takes the default shown. */
typedef struct proxy_limits {
	uint32_t header_timeout_ms;     /* 10000: a request head, from its first byte (408) */
	uint32_t idle_timeout_ms;       /* 60000: keep-alive wait for the next request */
	uint32_t connect_timeout_ms;    /* 5000: upstream connect (504) */
	uint32_t response_timeout_ms;   /* 30000: request sent -> response head (504) */
	uint32_t max_request_line;      /* 8192 bytes (414) */
	uint32_t max_header_bytes;      /* 32768: names + values (431) */
	uint32_t max_headers;           /* 100 (431) */
	uint64_t max_body_bytes;        /* 0: no limit (413) */
	uint32_t pool_max_idle;         /* 64 idle connections per upstream */
	uint32_t pool_idle_timeout_ms;  /* 30000 */
	uint32_t h2_max_streams;        /* 128 concurrent streams per connection */
	/* 60000: once the response head arrived, no byte from the upstream
	 * for this long (while the engine is reading it) cuts the response:
	 * the client's connection (HTTP/2: stream) is reset, the log says
	 * "upstream stalled mid-response". */
	uint32_t upstream_read_timeout_ms;
} proxy_limits_t;

typedef struct proxy_config {
	/* "127.0.0.1:0", "[::1]:8080" or "unix:/path". Port 0: ephemeral, see
	 * proxy_listener_port. */
	const char *listen;
	/* Optional server context (the listener takes a reference): TLS,
	 * offering h2 and http/1.1 by ALPN. */
	SSL_CTX *tls;
	proxy_limits_t limits;
	/* Add Via, X-Forwarded-For/-Proto/-Host and Forwarded toward
	 * upstreams (a reverse proxy's duty; off for a transparent one). */
	bool add_forwarded;
	const proxy_policy_t *policy;
	void *policy_data;
	/* TCP: bind even if the address is not (yet) on an interface
	 * (IP_FREEBIND), for an address that comes and goes with others'
	 * interfaces (the sandboxes' gateway). */
	bool freebind;
} proxy_config_t;

int proxy_listener_new(uv_loop_t *loop, const proxy_config_t *cfg, proxy_listener_t **out,
		       hutch_err_t *err);
/* The TCP port it listens on (useful after ":0"); 0 for unix sockets. */
int proxy_listener_port(const proxy_listener_t *l);
/* Stops accepting, closes every connection (requests in flight are cut,
 * deferred routes cancelled), then calls done(arg) once everything is
 * freed. The loop must run for that. */
void proxy_listener_close(proxy_listener_t *l, void (*done)(void *arg), void *arg);

/* ---- filling a route (from route(), or before proxy_route_done) ---- */

/* Forward to up (copied). */
void proxy_route_forward(proxy_route_t *route, const proxy_upstream_t *up);
/* Answer locally with status, body (copied; may be NULL) and its type. */
void proxy_route_local(proxy_route_t *route, int status, const char *content_type,
		       const void *body, size_t len);
/* Set (value non-NULL, replacing any header of that name) or remove (NULL)
 * a header toward the upstream, or toward the client. Copied. A route holds
 * up to 16 edits each way; more are ignored. Hop-by-hop and framing headers
 * (Connection, Content-Length, Transfer-Encoding, ...) are the engine's and
 * cannot be set. */
void proxy_route_request_header(proxy_route_t *route, const char *name, const char *value);
void proxy_route_response_header(proxy_route_t *route, const char *name, const char *value);
/* Replace the path (request target) sent upstream. */
void proxy_route_set_path(proxy_route_t *route, const char *path);
/* Completes a deferred route. */
void proxy_route_done(proxy_route_t *route);

/* Fills up from "host:port" (numeric IPv4/IPv6), or "unix:/path". */
int proxy_upstream_parse(const char *s, proxy_upstream_t *up, hutch_err_t *err);

/* A client TLS context for proxy_upstream_t.tls_ctx: TLS 1.2 or later, the
 * upstream's certificate verified against the CAs in ca_file (PEM), or the
 * system's when ca_file is NULL. The caller owns it (SSL_CTX_free) and keeps
 * it as long as any listener may use it. A certificate that does not verify
 * (unknown CA, expired, not for the SNI name) fails the request with 502,
 * its reason in the response and the log. */
int proxy_upstream_tls_ctx(const char *ca_file, SSL_CTX **out, hutch_err_t *err);

#endif
