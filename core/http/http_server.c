#include "http_server.h"

#include <ctype.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "strbuf.h"

#define MAX_CONNECTIONS 256

typedef struct http_conn http_conn_t;

struct http_server {
	uv_loop_t *loop;
	http_handler_fn handler;
	void *data;
	uv_tcp_t listener;
	bool listening;
	int port;
	SSL_CTX *tls;
	http_conn_t *conns;
	int n_conns;
	bool closing;
	int open_handles;
};

struct http_pending {
	http_conn_t *c;       /* NULL once the connection is gone */
	http_request_t req;
	char *scratch;
	http_sink_fn sink;    /* relayed requests: where the response goes */
	void *sink_data;
	bool head;            /* a HEAD request, shown to the handler as GET */
};

struct http_conn {
	uv_tcp_t tcp;
	http_pending_t *pending;
	http_server_t *s;
	http_conn_t *next;
	strbuf_t in;
	SSL *ssl;
	BIO *rbio, *wbio;
	bool done;
	char peer[64], local[64];
	uv_timer_t timer;
	int handles;
};

/* ---- parsing ---- */

static bool is_tchar(int c)
{
	return isalnum(c) || strchr("!#$%&'*+-.^_`|~", c);
}

long http_parse_request(const char *data, size_t n, char *scratch, http_request_t *req,
			int *status)
{
	*status = 400;
	size_t limit = n < HTTP_MAX_HEAD ? n : HTTP_MAX_HEAD;
	const char *end = NULL;
	for (size_t i = 0; i + 3 < limit; i++)
		if (data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n') {
			end = data + i;
			break;
		}
	if (!end) {
		if (n >= HTTP_MAX_HEAD) {
			*status = 431;
			return -1;
		}
		return 0;
	}
	size_t head_len = (size_t)(end - data);
	memcpy(scratch, data, head_len);
	scratch[head_len] = '\0';
	memset(req, 0, sizeof *req);
	for (size_t i = 0; i < head_len; i++)
		if (scratch[i] == '\0')
			return -1;

	/* Request line. */
	char *line = scratch;
	char *eol = strstr(line, "\r\n");
	if (eol)
		*eol = '\0';
	char *sp1 = strchr(line, ' ');
	if (!sp1 || sp1 == line)
		return -1;
	*sp1 = '\0';
	for (char *p = line; *p; p++)
		if (!is_tchar((unsigned char)*p))
			return -1;
	char *target = sp1 + 1;
	char *sp2 = strchr(target, ' ');
	if (!sp2 || sp2 == target)
		return -1;
	*sp2 = '\0';
	if (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0)
		return -1;
	if (target[0] != '/')
		return -1;
	for (char *p = target; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return -1;
	req->method = line;
	char *q = strchr(target, '?');
	req->query = "";
	if (q) {
		*q = '\0';
		req->query = q + 1;
	}
	req->path = target;

	/* Headers. */
	char *p = eol ? eol + 2 : scratch + head_len;
	long content_length = 0;
	bool have_length = false;
	while (p < scratch + head_len) {
		char *le = strstr(p, "\r\n");
		if (le)
			*le = '\0';
		if (*p == ' ' || *p == '\t')
			return -1; /* obsolete line folding */
		char *colon = strchr(p, ':');
		if (!colon || colon == p)
			return -1;
		*colon = '\0';
		for (char *c = p; *c; c++) {
			if (!is_tchar((unsigned char)*c))
				return -1;
			*c = (char)tolower((unsigned char)*c);
		}
		char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		char *ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = '\0';
		for (char *c = v; *c; c++)
			if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
				return -1;
		if (req->n_headers == HTTP_MAX_HEADERS) {
			*status = 431;
			return -1;
		}
		req->headers[req->n_headers++] = (http_header_t){p, v};
		if (strcmp(p, "transfer-encoding") == 0)
			return -1; /* not spoken here */
		if (strcmp(p, "content-length") == 0) {
			if (!*v || strlen(v) > 9)
				return *status = strlen(v) > 9 ? 413 : 400, -1;
			for (char *c = v; *c; c++)
				if (!isdigit((unsigned char)*c))
					return -1;
			long cl = strtol(v, NULL, 10);
			if (have_length && cl != content_length)
				return -1; /* two lengths that disagree */
			content_length = cl;
			have_length = true;
		}
		p = le ? le + 2 : scratch + head_len;
	}
	if (content_length > HTTP_MAX_BODY) {
		*status = 413;
		return -1;
	}
	size_t total = head_len + 4 + (size_t)content_length;
	if (n < total)
		return 0;
	memcpy(scratch + head_len + 1, data + head_len + 4, (size_t)content_length);
	scratch[head_len + 1 + content_length] = '\0';
	req->body = scratch + head_len + 1;
	req->body_len = (size_t)content_length;
	return (long)total;
}

const char *http_header(const http_request_t *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (strcmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	return NULL;
}

static int hexval(int c)
{
	return isdigit(c) ? c - '0' : isxdigit(c) ? tolower(c) - 'a' + 10 : -1;
}

bool http_param(const char *query, const char *name, char *buf, size_t cap)
{
	size_t nl = strlen(name);
	const char *p = query;
	while (p && *p) {
		const char *amp = strchr(p, '&');
		size_t len = amp ? (size_t)(amp - p) : strlen(p);
		if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
			size_t k = 0;
			for (const char *c = p + nl + 1; c < p + len; c++) {
				int ch = (unsigned char)*c;
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%') {
					if (c + 2 >= p + len)
						return false;
					int h = hexval((unsigned char)c[1]), l = hexval((unsigned char)c[2]);
					if (h < 0 || l < 0)
						return false;
					ch = h * 16 + l;
					c += 2;
				}
				if (ch == 0 || k + 1 >= cap)
					return false;
				buf[k++] = (char)ch;
			}
			buf[k] = '\0';
			return true;
		}
		p = amp ? amp + 1 : NULL;
	}
	return false;
}

void http_response_set(http_response_t *resp, int status, const char *content_type,
		       const char *body)
{
	resp->status = status;
	snprintf(resp->content_type, sizeof resp->content_type, "%s", content_type);
	free(resp->body);
	resp->body = xstrdup(body);
	resp->body_len = strlen(body);
}

/* ---- connections ---- */

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Content Too Large";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	default: return "Status";
	}
}

static void conn_handle_closed(uv_handle_t *h)
{
	http_conn_t *c = h->data;
	if (--c->handles > 0)
		return;
	http_server_t *s = c->s;
	for (http_conn_t **pp = &s->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	s->n_conns--;
	if (c->ssl)
		SSL_free(c->ssl); /* frees the BIOs */
	sb_free(&c->in);
	free(c);
	if (--s->open_handles == 0 && s->closing) {
		if (s->tls)
			SSL_CTX_free(s->tls);
		free(s);
	}
}

static void conn_close(http_conn_t *c)
{
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	if (c->pending) {
		c->pending->c = NULL; /* its answer will find nobody */
		c->pending = NULL;
	}
	uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

typedef struct write_req {
	uv_write_t req;
	http_conn_t *c;
	char *buf;
	bool last;
} write_req_t;

static void on_written(uv_write_t *req, int status)
{
	write_req_t *w = (write_req_t *)req;
	(void)status;
	if (w->last)
		conn_close(w->c);
	free(w->buf);
	free(w);
}

static void send_raw(http_conn_t *c, const char *data, size_t n, bool last)
{
	write_req_t *w = xcalloc(1, sizeof *w);
	w->c = c;
	w->buf = xmalloc(n ? n : 1);
	memcpy(w->buf, data, n);
	w->last = last;
	uv_buf_t b = uv_buf_init(w->buf, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
		free(w->buf);
		free(w);
		conn_close(c);
	}
}

/* Moves what TLS wrote into its memory BIO onto the socket. */
static void tls_flush(http_conn_t *c, bool last)
{
	char buf[16384];
	int n;
	bool sent = false;
	while ((n = BIO_read(c->wbio, buf, sizeof buf)) > 0) {
		bool more = BIO_pending(c->wbio) > 0;
		send_raw(c, buf, (size_t)n, last && !more);
		sent = true;
	}
	if (last && !sent)
		conn_close(c);
}

/* head: the answer to a HEAD request, which has the headers (Content-Length
 * included) a GET would get and no body (RFC 9110 section 9.3.2). */
static void format_response(const http_response_t *resp, bool head, strbuf_t *out)
{
	sb_printf(out,
		  "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		  "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%sConnection: close\r\n\r\n",
		  resp->status, reason(resp->status),
		  resp->content_type[0] ? resp->content_type : "text/plain; charset=utf-8",
		  resp->body_len, resp->extra_headers);
	if (resp->body_len && !head)
		sb_append_n(out, resp->body, resp->body_len);
}

void http_format_response(const http_response_t *resp, strbuf_t *out)
{
	format_response(resp, false, out);
}

static void respond(http_conn_t *c, const http_response_t *resp, bool head)
{
	strbuf_t out = STRBUF_INIT;
	format_response(resp, head, &out);
	c->done = true;
	if (c->ssl) {
		SSL_write(c->ssl, out.buf, (int)out.len);
		tls_flush(c, true);
	} else {
		send_raw(c, out.buf, out.len, true);
	}
	sb_free(&out);
}

void http_reply(http_pending_t *p, http_response_t *resp)
{
	if (p->c) {
		p->c->pending = NULL;
		respond(p->c, resp, p->head);
	} else if (p->sink) {
		_cleanup_sb_ strbuf_t out = STRBUF_INIT;
		format_response(resp, p->head, &out);
		p->sink(p->sink_data, out.buf, out.len);
	}
	free(resp->body);
	resp->body = NULL;
	free(p->scratch);
	free(p);
}

/* Handlers answer HEAD as they answer GET; the body is left out when the
 * response is written. */
static void pending_take_head(http_pending_t *p)
{
	if (strcmp(p->req.method, "HEAD") == 0) {
		p->head = true;
		p->req.method = "GET";
	}
}

http_pending_t *http_pending_relay(const http_request_t *req, char *scratch, http_sink_fn sink,
				   void *data)
{
	http_pending_t *p = xcalloc(1, sizeof *p);
	p->req = *req;
	pending_take_head(p);
	p->scratch = scratch;
	p->sink = sink;
	p->sink_data = data;
	return p;
}

const http_request_t *http_pending_request(const http_pending_t *p)
{
	return &p->req;
}

static void handle_bytes(http_conn_t *c)
{
	if (c->done || c->pending)
		return;
	char *scratch = xmalloc(c->in.len + 1);
	http_request_t req;
	int status;
	long used = http_parse_request(c->in.buf, c->in.len, scratch, &req, &status);
	if (used < 0) {
		http_response_t resp = {0};
		http_response_set(&resp, status, "text/plain; charset=utf-8", "bad request\n");
		respond(c, &resp, false);
		free(resp.body);
		free(scratch);
	} else if (used > 0) {
		http_pending_t *p = xcalloc(1, sizeof *p);
		p->c = c;
		p->req = req;
		p->req.peer = c->peer;
		p->req.local = c->local;
		p->scratch = scratch;
		pending_take_head(p);
		c->pending = p;
		c->done = true; /* one request per connection */
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->s->handler(c->s->data, &p->req, p);
	} else {
		free(scratch);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[65536];
	*buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	http_conn_t *c = st->data;
	if (n < 0) {
		conn_close(c);
		return;
	}
	if (n == 0 || c->done)
		return;
	if (c->ssl) {
		BIO_write(c->rbio, buf->base, (int)n);
		char plain[16384];
		int k;
		while ((k = SSL_read(c->ssl, plain, sizeof plain)) > 0)
			sb_append_n(&c->in, plain, (size_t)k);
		int e = SSL_get_error(c->ssl, k);
		tls_flush(c, false); /* handshake messages */
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_ZERO_RETURN) {
			conn_close(c);
			return;
		}
	} else {
		sb_append_n(&c->in, buf->base, (size_t)n);
	}
	if (c->in.len > HTTP_MAX_HEAD + HTTP_MAX_BODY + 8) {
		http_response_t resp = {0};
		http_response_set(&resp, 413, "text/plain; charset=utf-8", "too large\n");
		respond(c, &resp, false);
		free(resp.body);
		return;
	}
	if (c->in.len)
		handle_bytes(c);
}

static void on_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static void name_of(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char ip[64] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		uv_ip4_name((const struct sockaddr_in *)ss, ip, sizeof ip);
		port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
		snprintf(out, cap, "%s:%d", ip, port);
	} else if (ss->ss_family == AF_INET6) {
		uv_ip6_name((const struct sockaddr_in6 *)ss, ip, sizeof ip);
		port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
		snprintf(out, cap, "[%s]:%d", ip, port);
	} else {
		snprintf(out, cap, "?");
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	http_server_t *s = server->data;
	if (status < 0 || s->closing)
		return;
	http_conn_t *c = xcalloc(1, sizeof *c);
	c->s = s;
	uv_tcp_init(s->loop, &c->tcp);
	uv_timer_init(s->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	c->next = s->conns;
	s->conns = c;
	s->n_conns++;
	s->open_handles++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || s->n_conns > MAX_CONNECTIONS) {
		conn_close(c);
		return;
	}
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		name_of(&ss, c->peer, sizeof c->peer);
	len = sizeof ss;
	if (uv_tcp_getsockname(&c->tcp, (struct sockaddr *)&ss, &len) == 0)
		name_of(&ss, c->local, sizeof c->local);
	if (s->tls) {
		c->ssl = SSL_new(s->tls);
		c->rbio = BIO_new(BIO_s_mem());
		c->wbio = BIO_new(BIO_s_mem());
		SSL_set_bio(c->ssl, c->rbio, c->wbio);
		SSL_set_accept_state(c->ssl);
	}
	/* A slow or silent client does not hold a connection for long. */
	uv_timer_start(&c->timer, on_timeout, 10000, 0);
	uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int http_server_new(uv_loop_t *loop, http_handler_fn handler, void *data, http_server_t **out,
		    hutch_err_t *err)
{
	(void)err;
	http_server_t *s = xcalloc(1, sizeof *s);
	s->loop = loop;
	s->handler = handler;
	s->data = data;
	s->port = -1;
	*out = s;
	return 0;
}

int http_server_listen(http_server_t *s, const char *host, int port, const char *cert_file,
		       const char *key_file, hutch_err_t *err)
{
	if ((cert_file == NULL) != (key_file == NULL))
		return hutch_err_set(err, EINVAL, "http: tls cert and key go together");
	if (cert_file) {
		s->tls = SSL_CTX_new(TLS_server_method());
		SSL_CTX_set_min_proto_version(s->tls, TLS1_2_VERSION);
		if (SSL_CTX_use_certificate_chain_file(s->tls, cert_file) != 1 ||
		    SSL_CTX_use_PrivateKey_file(s->tls, key_file, SSL_FILETYPE_PEM) != 1) {
			unsigned long e = ERR_get_error();
			char msg[256];
			ERR_error_string_n(e, msg, sizeof msg);
			SSL_CTX_free(s->tls);
			s->tls = NULL;
			return hutch_err_set(err, EINVAL, "http: TLS certificate or key: %s", msg);
		}
	}
	struct sockaddr_storage ss;
	int r = uv_ip4_addr(host, port, (struct sockaddr_in *)&ss);
	if (r < 0)
		r = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss);
	if (r < 0)
		return hutch_err_set(err, EINVAL, "http: `%s` is not a numeric address", host);
	uv_tcp_init(s->loop, &s->listener);
	s->listener.data = s;
	s->listening = true;
	s->open_handles++;
	r = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
	if (r < 0)
		return hutch_err_set(err, -r, "http: listen on %s:%d: %s", host, port, uv_strerror(r));
	int len = sizeof ss;
	uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len);
	s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						: ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

int http_server_port(const http_server_t *s)
{
	return s->port;
}

static void listener_closed(uv_handle_t *h)
{
	http_server_t *s = h->data;
	if (--s->open_handles == 0) {
		if (s->tls)
			SSL_CTX_free(s->tls);
		free(s);
	}
}

void http_server_close(http_server_t *s)
{
	if (!s)
		return;
	s->closing = true;
	for (http_conn_t *c = s->conns; c; c = c->next)
		conn_close(c);
	if (s->listening) {
		uv_close((uv_handle_t *)&s->listener, listener_closed);
	} else if (s->open_handles == 0) {
		if (s->tls)
			SSL_CTX_free(s->tls);
		free(s);
	}
}
