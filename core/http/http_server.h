/*
 * http_server.h: a small HTTP/1.1 server on the loop, for what hutchd
 * serves to plain HTTP clients: the OIDC issuer documents (discovery, JWKS),
 * token exchange, metrics.
 *
 * One request per connection (responses carry `Connection: close`), bounded
 * request line, headers (16 KiB) and body (64 KiB); what
 * does not parse gets 400 and the connection closes. Optional TLS with
 * OpenSSL through memory BIOs. The request parser is fuzzed
 * (tests/fuzz/fuzz_http.c).
 *
 * HEAD is answered as GET without the body (RFC 9110 section 9.3.2): handlers
 * see such a request with method "GET", and the server leaves the body out of
 * the response (keeping its Content-Length). A handler refusing a method
 * answers 405 with an `Allow` header listing what it accepts (section 15.5.6).
 */
#ifndef HUTCH_HTTP_SERVER_H
#define HUTCH_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include <hutch/error.h>

#define HTTP_MAX_HEAD (16 * 1024)
#define HTTP_MAX_BODY (64 * 1024)
#define HTTP_MAX_HEADERS 64

typedef struct http_header {
	const char *name; /* lower-cased */
	const char *value;
} http_header_t;

typedef struct http_request {
	const char *method;
	const char *path;  /* without the query */
	const char *query; /* after '?', or "" */
	http_header_t headers[HTTP_MAX_HEADERS];
	size_t n_headers;
	const char *body;
	size_t body_len;
	const char *peer;  /* "ip:port" */
	const char *local; /* the address it arrived on, "ip:port" */
} http_request_t;

typedef struct http_response {
	int status;
	char content_type[64];
	char *body; /* malloc'ed; freed by the server */
	size_t body_len;
	char extra_headers[256]; /* "Name: value\r\n"... */
} http_response_t;

/* A request waiting for its answer. */
typedef struct http_pending http_pending_t;

/* Called on the loop for every request; must not block. It answers with
 * http_reply() exactly once, at once or later (from the loop), for example
 * after work on the pool. req stays valid until then. */
typedef void (*http_handler_fn)(void *data, const http_request_t *req, http_pending_t *p);

/* Sends resp (takes resp->body) and ends the exchange. If the client went
 * away meanwhile, it is dropped quietly. */
void http_reply(http_pending_t *p, http_response_t *resp);

/* Formats a whole response (status line, headers, body). */
struct strbuf;
void http_format_response(const http_response_t *resp, struct strbuf *out);

/* Requests that reach hutchd some other way than this server's sockets
 * (the metadata endpoint, relayed by a sandbox's agent) are answered
 * through the same handlers: the response bytes go to sink. The pending
 * request takes scratch (which req points into). */
typedef void (*http_sink_fn)(void *data, const char *bytes, size_t n);
http_pending_t *http_pending_relay(const http_request_t *req, char *scratch, http_sink_fn sink,
				   void *data);
const http_request_t *http_pending_request(const http_pending_t *p);

typedef struct http_server http_server_t;

int http_server_new(uv_loop_t *loop, http_handler_fn handler, void *data, http_server_t **out,
		    hutch_err_t *err);
/* "host:port" (port 0 picks one); with cert and key, HTTPS. */
int http_server_listen(http_server_t *s, const char *host, int port, const char *cert_file,
		       const char *key_file, hutch_err_t *err);
int http_server_port(const http_server_t *s);
/* Closes listeners and connections; frees itself when the handles closed. */
void http_server_close(http_server_t *s);

/* The value of a request header (name lower-case), or NULL. */
const char *http_header(const http_request_t *req, const char *name);
/* The value of a query or form parameter, decoded, into buf; false if
 * absent or too long. */
bool http_param(const char *query, const char *name, char *buf, size_t cap);

/* Parses one request from data[0..n). Returns the bytes it takes (> 0),
 * 0 if more is needed, or -1 if it is malformed or too large (status 400,
 * 413 or 431 in *status). Strings in req point into scratch, which must
 * hold at least n bytes and live as long as req. */
long http_parse_request(const char *data, size_t n, char *scratch, http_request_t *req,
			int *status);

void http_response_set(http_response_t *resp, int status, const char *content_type,
		       const char *body);

#endif
