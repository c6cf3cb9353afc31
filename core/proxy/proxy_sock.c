/*
 * proxy_sock.c: the byte stream every connection reads and writes (see
 * proxy_priv.h): a libuv TCP or unix socket, optionally TLS, that counts the
 * bytes queued in the kernel's stead so producers can stop reading their
 * source, and never calls its owner from inside one of its own ops.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_priv.h"

/* How long a gracefully closed socket keeps reading (and dropping) what its
 * peer still sends, so that the peer reads our response before an RST. */
#define LINGER_MS 2000

struct uv_sock {
	proxy_sock_t base;
	union {
		uv_handle_t h;
		uv_stream_t s;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} u;
	uv_connect_t connect_req;
	uv_shutdown_t shutdown_req;
	proxy_engine_t *eng;
	proxy_tls_t *tls;
	proxy_timer_t *timer; /* linger, or a deferred error */
	strbuf_t early;       /* plaintext written before the handshake ended */
	int deferred_err;
	bool reading, closing, graceful, shut, connecting, eof_told;
};

struct sock_write {
	uv_write_t req;
	struct uv_sock *s;
	size_t n;
	uint8_t data[];
};

static _Thread_local uint8_t read_buf[64 << 10];

static void sock_tell_eof(struct uv_sock *s, int err)
{
	if (s->eof_told || s->closing || !s->base.cbs)
		return;
	s->eof_told = true;
	uv_read_stop(&s->u.s);
	s->reading = false;
	s->base.cbs->eof(s->base.owner, err);
}

static void on_timer(void *arg)
{
	struct uv_sock *s = arg;
	if (s->graceful) {
		s->base.ops->close(&s->base);
		return;
	}
	if (s->deferred_err)
		sock_tell_eof(s, s->deferred_err);
}

static void do_shutdown(struct uv_sock *s);

static void on_write(uv_write_t *req, int status)
{
	struct sock_write *w = (struct sock_write *)req;
	struct uv_sock *s = w->s;
	s->base.queued -= w->n;
	free(w);
	if (s->closing)
		return;
	if (status < 0) {
		if (s->graceful)
			s->base.ops->close(&s->base);
		else
			sock_tell_eof(s, status);
		return;
	}
	if (s->graceful && s->base.queued == 0 && !s->shut) {
		do_shutdown(s);
		return;
	}
	if (s->base.above_high && s->base.queued <= PROXY_WRITE_LOW) {
		s->base.above_high = false;
		if (s->base.cbs && s->base.cbs->drain)
			s->base.cbs->drain(s->base.owner);
	}
}

static void defer_error(struct uv_sock *s, int err)
{
	if (s->deferred_err)
		return;
	s->deferred_err = err;
	proxy_timer_arm(s->timer, 0);
}

/* Writes raw bytes (ciphertext when TLS): what the kernel takes at once
 * goes now, the rest is copied into a libuv write request. */
static void raw_write(struct uv_sock *s, const uv_buf_t *bufs, unsigned n)
{
	size_t total = 0, skip = 0;
	for (unsigned i = 0; i < n; i++)
		total += bufs[i].len;
	if (total == 0 || s->deferred_err)
		return;
	if (s->base.queued == 0) {
		int r = uv_try_write(&s->u.s, bufs, n);
		if (r < 0 && r != UV_EAGAIN) {
			defer_error(s, r);
			return;
		}
		if (r > 0)
			skip = (size_t)r;
		if (skip == total)
			return;
	}
	struct sock_write *w = xmalloc(sizeof *w + total - skip);
	size_t off = 0;
	for (unsigned i = 0; i < n; i++) {
		size_t len = bufs[i].len;
		const char *b = bufs[i].base;
		if (skip >= len) {
			skip -= len;
			continue;
		}
		memcpy(w->data + off, b + skip, len - skip);
		off += len - skip;
		skip = 0;
	}
	w->s = s;
	w->n = off;
	uv_buf_t one = uv_buf_init((char *)w->data, (unsigned)off);
	int r = uv_write(&w->req, &s->u.s, &one, 1, on_write);
	if (r < 0) {
		free(w);
		defer_error(s, r);
		return;
	}
	s->base.queued += off;
	if (s->base.queued > PROXY_WRITE_HIGH)
		s->base.above_high = true;
}

static void tls_flush(struct uv_sock *s)
{
	uint8_t buf[16 << 10];
	size_t k;
	while ((k = proxy_tls_take(s->tls, buf, sizeof buf)) > 0) {
		uv_buf_t b = uv_buf_init((char *)buf, (unsigned)k);
		raw_write(s, &b, 1);
	}
}

static void sock_write_impl(proxy_sock_t *base, const uv_buf_t *bufs, unsigned n)
{
	struct uv_sock *s = (struct uv_sock *)base;
	if (s->closing || s->graceful)
		return;
	if (!s->tls) {
		raw_write(s, bufs, n);
		return;
	}
	hutch_err_t err;
	for (unsigned i = 0; i < n; i++) {
		if (!proxy_tls_done(s->tls)) {
			sb_append_n(&s->early, bufs[i].base, bufs[i].len);
			continue;
		}
		if (proxy_tls_write(s->tls, (const uint8_t *)bufs[i].base, bufs[i].len, &err) < 0) {
			defer_error(s, -EPROTO);
			return;
		}
	}
	tls_flush(s);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	*buf = uv_buf_init((char *)read_buf, sizeof read_buf);
}

static void tls_plain(void *arg, const uint8_t *d, size_t n)
{
	struct uv_sock *s = arg;
	if (!s->closing && !s->graceful && s->base.cbs)
		s->base.cbs->data(s->base.owner, d, n);
}

static void tell_connected(struct uv_sock *s, int status, const char *why)
{
	s->connecting = false;
	if (s->base.cbs)
		s->base.cbs->connected(s->base.owner, status, why);
}

static void on_tls_data(struct uv_sock *s, const uint8_t *d, size_t n)
{
	hutch_err_t err = {0};
	int r = proxy_tls_read(s->tls, d, n, tls_plain, s, &err);
	if (s->closing)
		return;
	tls_flush(s);
	if (r < 0 && s->connecting) {
		tell_connected(s, -EPROTO, err.message);
		return;
	}
	if (r < 0) {
		sock_tell_eof(s, r == -ECONNRESET ? 0 : r);
		return;
	}
	if (r == 1) {
		if (s->early.len) {
			strbuf_t e = s->early;
			s->early = (strbuf_t)STRBUF_INIT;
			uv_buf_t b = uv_buf_init(e.buf, (unsigned)e.len);
			sock_write_impl(&s->base, &b, 1);
			sb_free(&e);
		}
		if (s->connecting)
			tell_connected(s, 0, NULL);
	}
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct uv_sock *s = st->data;
	if (nread == 0 || s->closing)
		return;
	if (s->graceful) {
		/* Lingering: drop what comes; close at its end. */
		if (nread < 0)
			s->base.ops->close(&s->base);
		return;
	}
	if (nread < 0) {
		if (s->connecting) { /* TLS handshake cut short */
			tell_connected(s, -EPROTO, "TLS handshake: the upstream closed the connection");
			return;
		}
		sock_tell_eof(s, nread == UV_EOF ? 0 : (int)nread);
		return;
	}
	if (s->tls) {
		on_tls_data(s, (const uint8_t *)buf->base, (size_t)nread);
		return;
	}
	if (s->base.cbs)
		s->base.cbs->data(s->base.owner, (const uint8_t *)buf->base, (size_t)nread);
}

static void sock_read_start(proxy_sock_t *base)
{
	struct uv_sock *s = (struct uv_sock *)base;
	if (s->reading || s->closing || s->eof_told)
		return;
	if (uv_read_start(&s->u.s, on_alloc, on_read) == 0)
		s->reading = true;
}

static void sock_read_stop(proxy_sock_t *base)
{
	struct uv_sock *s = (struct uv_sock *)base;
	if (!s->reading || s->closing)
		return;
	/* While connecting over TLS the handshake needs reading. */
	if (s->connecting)
		return;
	uv_read_stop(&s->u.s);
	s->reading = false;
}

static void on_close(uv_handle_t *h)
{
	struct uv_sock *s = h->data;
	proxy_engine_t *eng = s->eng;
	proxy_tls_free(s->tls);
	sb_free(&s->early);
	free(s);
	proxy_engine_handle_closed(eng);
}

static void sock_close(proxy_sock_t *base)
{
	struct uv_sock *s = (struct uv_sock *)base;
	if (s->closing)
		return;
	s->closing = true;
	s->base.cbs = NULL;
	proxy_timer_free(s->timer);
	s->timer = NULL;
	uv_close(&s->u.h, on_close);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
	struct uv_sock *s = req->data;
	if (s->closing)
		return;
	if (status < 0) {
		s->base.ops->close(&s->base);
		return;
	}
	s->reading = false;
	if (uv_read_start(&s->u.s, on_alloc, on_read) < 0)
		s->base.ops->close(&s->base);
}

static void do_shutdown(struct uv_sock *s)
{
	s->shut = true;
	if (s->tls) {
		proxy_tls_shutdown(s->tls);
		tls_flush(s);
		if (s->base.queued) {
			s->shut = false; /* after the close_notify is out */
			return;
		}
	}
	s->shutdown_req.data = s;
	proxy_timer_arm(s->timer, LINGER_MS);
	if (uv_shutdown(&s->shutdown_req, &s->u.s, on_shutdown) < 0)
		s->base.ops->close(&s->base);
}

static void sock_close_graceful(proxy_sock_t *base)
{
	struct uv_sock *s = (struct uv_sock *)base;
	if (s->closing || s->graceful)
		return;
	if (s->deferred_err || s->connecting) {
		sock_close(base);
		return;
	}
	s->graceful = true;
	s->base.cbs = NULL;
	uv_read_stop(&s->u.s);
	s->reading = false;
	if (s->tls) {
		proxy_tls_shutdown(s->tls);
		tls_flush(s);
	}
	if (s->base.queued == 0)
		do_shutdown(s);
	else
		proxy_timer_arm(s->timer, LINGER_MS * 5); /* a peer that never reads */
}

static const char *sock_alpn(proxy_sock_t *base)
{
	struct uv_sock *s = (struct uv_sock *)base;
	return s->tls ? proxy_tls_alpn(s->tls) : "";
}

static const proxy_sock_ops_t uv_sock_ops = {
	.write = sock_write_impl,
	.read_start = sock_read_start,
	.read_stop = sock_read_stop,
	.close_graceful = sock_close_graceful,
	.close = sock_close,
	.alpn = sock_alpn,
};

static struct uv_sock *sock_alloc(proxy_engine_t *eng)
{
	struct uv_sock *s = xcalloc(1, sizeof *s);
	s->base.ops = &uv_sock_ops;
	s->eng = eng;
	s->early = (strbuf_t)STRBUF_INIT;
	s->timer = proxy_timer_new(eng, on_timer, s);
	return s;
}

int proxy_sock_accepted(proxy_engine_t *eng, uv_stream_t *stream, SSL_CTX *ssl,
			proxy_sock_t **out, hutch_err_t *err)
{
	/* The handle lives inside the sock: the listener accepted into it. */
	struct uv_sock *s = (struct uv_sock *)stream->data;
	if (ssl) {
		int r = proxy_tls_new(ssl, true, NULL, &s->tls, err);
		if (r < 0)
			return r;
	}
	*out = &s->base;
	return 0;
}

/* For the listener: a sock whose handle it can init and accept into. */
uv_stream_t *proxy_sock_prepare_accept(proxy_engine_t *eng, bool is_unix);
uv_stream_t *proxy_sock_prepare_accept(proxy_engine_t *eng, bool is_unix)
{
	struct uv_sock *s = sock_alloc(eng);
	if (is_unix)
		uv_pipe_init(eng->loop, &s->u.pipe, 0);
	else
		uv_tcp_init(eng->loop, &s->u.tcp);
	s->u.h.data = s;
	eng->handles++;
	return &s->u.s;
}

void proxy_sock_accept_failed(uv_stream_t *stream);
void proxy_sock_accept_failed(uv_stream_t *stream)
{
	struct uv_sock *s = stream->data;
	sock_close(&s->base);
}

void proxy_sock_nodelay(uv_stream_t *stream);
void proxy_sock_nodelay(uv_stream_t *stream)
{
	if (stream->type == UV_TCP)
		uv_tcp_nodelay((uv_tcp_t *)stream, 1);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct uv_sock *s = req->data;
	if (s->closing)
		return;
	if (status < 0) {
		tell_connected(s, status, uv_strerror(status));
		return;
	}
	proxy_sock_nodelay(&s->u.s);
	if (!s->tls) {
		tell_connected(s, 0, NULL);
		return;
	}
	hutch_err_t err = {0};
	if (proxy_tls_start(s->tls, &err) < 0) {
		tell_connected(s, -EPROTO, err.message);
		return;
	}
	tls_flush(s);
	if (uv_read_start(&s->u.s, on_alloc, on_read) == 0)
		s->reading = true;
}

int proxy_sock_connect(proxy_engine_t *eng, const proxy_upstream_t *up,
		       const proxy_sock_cbs_t *cbs, void *owner, proxy_sock_t **out,
		       hutch_err_t *err)
{
	struct uv_sock *s = sock_alloc(eng);
	sock_set_owner(&s->base, cbs, owner);
	if (up->tls) {
		SSL_CTX *ctx = up->tls_ctx;
		if (!ctx && !eng->client_tls && proxy_tls_client_ctx(NULL, &eng->client_tls, err) < 0)
			goto fail_early;
		if (!ctx)
			ctx = eng->client_tls;
		if (proxy_tls_new(ctx, false, up->sni, &s->tls, err) < 0)
			goto fail_early;
	}
	s->u.h.data = s;
	s->connect_req.data = s;
	s->connecting = true;
	int r;
	if (up->unix_path[0]) {
		uv_pipe_init(eng->loop, &s->u.pipe, 0);
		eng->handles++;
		uv_pipe_connect(&s->connect_req, &s->u.pipe, up->unix_path, on_connect);
		r = 0;
	} else {
		uv_tcp_init(eng->loop, &s->u.tcp);
		eng->handles++;
		r = uv_tcp_connect(&s->connect_req, &s->u.tcp, (const struct sockaddr *)&up->addr,
				   on_connect);
	}
	if (r < 0) {
		sock_close(&s->base);
		return hutch_err_set(err, -r, "connect: %s", uv_strerror(r));
	}
	*out = &s->base;
	return 0;
fail_early:
	proxy_tls_free(s->tls);
	proxy_timer_free(s->timer);
	free(s);
	return -err->code;
}
