/*
 * proxy_h2.c: a downstream HTTP/2 connection (nghttp2, server side): h2c
 * with prior knowledge, or h2 chosen by ALPN. Every request stream becomes
 * an exchange, which reaches its upstream as HTTP/1.1.
 *
 * Flow control is the backpressure: automatic WINDOW_UPDATE is off; the
 * connection window is opened as soon as DATA is read (so one stalled
 * stream does not stall the others), a stream's own window only once the
 * exchange has taken its bytes (while the upstream is full the client
 * simply cannot send more on that stream). Response bodies wait in a
 * per-stream buffer that nghttp2 pulls from as the client's windows allow;
 * above the high mark the upstream stops being read.
 *
 * Bytes to the socket are produced (nghttp2_session_mem_send) only while
 * the socket's queue is under the high mark, and again when it drains.
 */
#include <ctype.h>
#include <nghttp2/nghttp2.h>
#include <stdlib.h>
#include <strings.h>

#include "proxy_priv.h"

#define H2_STREAM_WINDOW (256u << 10)

typedef struct h2_conn {
	proxy_conn_base_t base;
	proxy_engine_t *eng;
	proxy_sock_t *sock;
	nghttp2_session *session;
	char peer[64];
	proxy_timer_t *timer; /* idle: no stream open */
	/* What the exchange calls never flushes at once: a flush can close a
	 * stream, and the exchange must not hear of that while it is still
	 * in the middle of a call. A 0 ms timer flushes on the next turn. */
	proxy_timer_t *flush_timer;
	bool flush_due;
	struct proxy_link streams;
	size_t n_streams;
	bool in_nghttp2; /* inside mem_recv/mem_send: flushing waits */
	bool dying;
} h2_conn_t;

typedef struct h2_stream {
	struct proxy_link link; /* conn->streams */
	h2_conn_t *c;
	int32_t id;
	proxy_head_t head;
	proxy_exchange_t *ex;
	strbuf_t out; /* response body not yet taken by nghttp2 */
	size_t out_off;
	size_t unconsumed; /* request bytes read, their window not reopened */
	int error_status;
	bool out_end, data_deferred, up_waiting, body_paused, closed, answered;
} h2_stream_t;

static void h2_flush(h2_conn_t *c);
static void h2_free(h2_conn_t *c);

static void h2_flush_later(h2_conn_t *c)
{
	if (c->flush_due || c->in_nghttp2 || c->dying)
		return; /* inside nghttp2, the caller flushes after */
	c->flush_due = true;
	proxy_timer_arm(c->flush_timer, 0);
}

static void h2_flush_fire(void *arg)
{
	h2_conn_t *c = arg;
	c->flush_due = false;
	h2_flush(c);
}
extern const proxy_down_ops_t proxy_h2_down_ops;

static void stream_free(h2_stream_t *st)
{
	plist_del(&st->link);
	st->c->n_streams--;
	if (st->c->n_streams == 0 && !st->c->dying)
		proxy_timer_arm(st->c->timer, st->c->eng->limits.idle_timeout_ms);
	proxy_head_free(&st->head);
	sb_free(&st->out);
	free(st);
}

static size_t out_pending(const h2_stream_t *st)
{
	return st->out.len - st->out_off;
}

/* ---- response bodies, pulled by nghttp2 ---- */

static ssize_t data_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *user)
{
	h2_stream_t *st = src->ptr;
	size_t n = out_pending(st);
	if (n > len)
		n = len;
	if (n == 0 && !st->out_end) {
		st->data_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	memcpy(buf, st->out.buf + st->out_off, n);
	st->out_off += n;
	if (out_pending(st) == 0) {
		st->out.len = st->out_off = 0;
		if (st->out_end)
			*flags |= NGHTTP2_DATA_FLAG_EOF;
	}
	if (st->up_waiting && out_pending(st) <= PROXY_WRITE_LOW && st->ex) {
		st->up_waiting = false;
		proxy_exchange_down_drained(st->ex);
	}
	return (ssize_t)n;
}

static void submit(h2_stream_t *st, int status, const char *lines, size_t len,
		   bool body, uint64_t length)
{
	nghttp2_nv nv[128];
	char st_buf[8], len_buf[24];
	size_t n = 0;
	snprintf(st_buf, sizeof st_buf, "%d", status);
	nv[n++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)st_buf, 7, strlen(st_buf),
			       NGHTTP2_NV_FLAG_NONE};
	/* Header names are lower case in HTTP/2: lower the copy in place. */
	char *copy = xstrndup(lines, len);
	for (char *p = copy; *p && n < 126;) {
		char *eol = strstr(p, "\r\n");
		char *colon = strchr(p, ':');
		if (!eol || !colon || colon > eol)
			break;
		*eol = '\0';
		*colon = '\0';
		for (char *q = p; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		char *v = colon + 1;
		while (*v == ' ')
			v++;
		nv[n++] = (nghttp2_nv){(uint8_t *)p, (uint8_t *)v, strlen(p), strlen(v),
				       NGHTTP2_NV_FLAG_NONE};
		p = eol + 2;
	}
	if (length != UINT64_MAX) {
		snprintf(len_buf, sizeof len_buf, "%llu", (unsigned long long)length);
		nv[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)len_buf, 14,
				       strlen(len_buf), NGHTTP2_NV_FLAG_NONE};
	}
	nghttp2_data_provider dp = {.source.ptr = st, .read_callback = data_read};
	nghttp2_submit_response(st->c->session, st->id, nv, n, body ? &dp : NULL);
	st->answered = true;
	free(copy);
}

static void h2_head(void *down, int status, const char *lines, size_t len,
		    enum proxy_body_mode mode, uint64_t length)
{
	h2_stream_t *st = down;
	if (status < 200 || st->closed)
		return; /* interim responses are not passed on */
	submit(st, status, lines, len, mode != BODY_NONE, mode == BODY_UNKNOWN ? UINT64_MAX : length);
	h2_flush_later(st->c);
}

static void resume_data(h2_stream_t *st)
{
	if (st->data_deferred && !st->closed) {
		st->data_deferred = false;
		nghttp2_session_resume_data(st->c->session, st->id);
	}
	h2_flush_later(st->c);
}

static void h2_body(void *down, const uint8_t *d, size_t n)
{
	h2_stream_t *st = down;
	if (st->closed)
		return;
	sb_append_n(&st->out, d, n);
	resume_data(st);
}

static void h2_end(void *down)
{
	h2_stream_t *st = down;
	st->out_end = true;
	resume_data(st);
}

static void h2_abort(void *down)
{
	h2_stream_t *st = down;
	if (!st->closed)
		nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id,
					  NGHTTP2_INTERNAL_ERROR);
	h2_flush_later(st->c);
}

static void h2_pause(void *down)
{
	((h2_stream_t *)down)->body_paused = true;
}

static void h2_resume(void *down)
{
	h2_stream_t *st = down;
	st->body_paused = false;
	if (st->unconsumed && !st->closed) {
		nghttp2_session_consume_stream(st->c->session, st->id, st->unconsumed);
		st->unconsumed = 0;
		h2_flush_later(st->c);
	}
}

static bool h2_blocked(void *down)
{
	h2_stream_t *st = down;
	if (out_pending(st) > PROXY_WRITE_HIGH) {
		st->up_waiting = true;
		return true;
	}
	return false;
}

static void h2_done(void *down)
{
	h2_stream_t *st = down;
	st->ex = NULL;
	if (st->closed)
		stream_free(st);
}

const proxy_down_ops_t proxy_h2_down_ops = {
	.head = h2_head,
	.body = h2_body,
	.end = h2_end,
	.abort = h2_abort,
	.pause = h2_pause,
	.resume = h2_resume,
	.blocked = h2_blocked,
	.take_sock = NULL,
	.done = h2_done,
};

/* ---- nghttp2 callbacks ---- */

static h2_stream_t *stream_of(nghttp2_session *s, int32_t id)
{
	return nghttp2_session_get_stream_user_data(s, id);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	h2_conn_t *c = user;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	h2_stream_t *st = xcalloc(1, sizeof *st);
	st->c = c;
	st->id = f->hd.stream_id;
	st->out = (strbuf_t)STRBUF_INIT;
	plist_add_tail(&c->streams, &st->link);
	c->n_streams++;
	proxy_timer_stop(c->timer);
	nghttp2_session_set_stream_user_data(s, st->id, st);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user)
{
	h2_conn_t *c = user;
	h2_stream_t *st = stream_of(s, f->hd.stream_id);
	if (!st || f->headers.cat != NGHTTP2_HCAT_REQUEST || st->error_status)
		return 0; /* trailers are not forwarded */
	const proxy_limits_t *lim = &c->eng->limits;
	int r = proxy_head_append(&st->head, HEAD_NAME, (const char *)name, namelen, lim);
	proxy_head_end_item(&st->head, HEAD_NAME);
	if (r == 0) {
		if (valuelen)
			r = proxy_head_append(&st->head, HEAD_VALUE, (const char *)value, valuelen, lim);
		proxy_head_end_item(&st->head, HEAD_VALUE);
	}
	if (r < 0)
		st->error_status = 431;
	return 0;
}

/* A stream's answer of our own (limits), without an exchange. */
static void stream_answer(h2_stream_t *st, int status)
{
	const char *reason = proxy_reason(status);
	sb_printf(&st->out, "%s\n", reason);
	st->out_end = true;
	submit(st, status, "content-type: text/plain\r\n", 26, true, st->out.len);
}

static void stream_request(h2_conn_t *c, h2_stream_t *st, bool end_stream)
{
	if (st->error_status || proxy_head_finish(&st->head) < 0) {
		stream_answer(st, st->error_status ? st->error_status : 500);
		return;
	}
	proxy_req_info_t info = {0};
	info.method = proxy_head_get(&st->head, ":method");
	info.path = proxy_head_get(&st->head, ":path");
	info.authority = proxy_head_get(&st->head, ":authority");
	if (!info.authority)
		info.authority = proxy_head_get(&st->head, "host");
	if (!info.authority)
		info.authority = "";
	if (!info.method || !info.path || strcmp(info.method, "CONNECT") == 0) {
		stream_answer(st, info.method ? 405 : 400);
		return;
	}
	info.http_version = 20;
	info.peer = c->peer;
	info.has_body = !end_stream;
	const char *cl = proxy_head_get(&st->head, "content-length");
	info.content_length = cl ? strtoll(cl, NULL, 10) : (end_stream ? 0 : -1);
	uint64_t max = c->eng->limits.max_body_bytes;
	if (max && info.content_length > 0 && (uint64_t)info.content_length > max) {
		stream_answer(st, 413);
		return;
	}
	proxy_exchange_start(c->eng, &proxy_h2_down_ops, st, &info, &st->head, &st->ex);
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *user)
{
	h2_conn_t *c = user;
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
	h2_stream_t *st = stream_of(s, f->hd.stream_id);
	if (!st)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		stream_request(c, st, end);
		return 0;
	}
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && end && st->ex)
		proxy_exchange_body_end(st->ex);
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d,
			 size_t n, void *user)
{
	h2_stream_t *st = stream_of(s, id);
	/* The connection's window reopens at once; the stream's only when
	 * the exchange could take the bytes. */
	nghttp2_session_consume_connection(s, n);
	if (!st || !st->ex) {
		nghttp2_session_consume_stream(s, id, n);
		return 0;
	}
	bool more = proxy_exchange_body(st->ex, d, n);
	if (!stream_of(s, id)) /* freed meanwhile: cannot happen before close */
		return 0;
	if (more && !st->body_paused)
		nghttp2_session_consume_stream(s, id, n);
	else
		st->unconsumed += n;
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *user)
{
	h2_conn_t *c = user;
	h2_stream_t *st = stream_of(s, id);
	if (!st || c->dying)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
	st->closed = true;
	if (st->ex) {
		/* Reset by the client, or ended before the exchange did. */
		proxy_exchange_t *ex = st->ex;
		st->ex = NULL;
		proxy_exchange_down_gone(ex);
	}
	stream_free(st);
	return 0;
}

/* ---- the connection ---- */

static void h2_flush(h2_conn_t *c)
{
	if (c->in_nghttp2 || c->dying || !c->sock)
		return;
	c->in_nghttp2 = true;
	while (!sock_blocked(c->sock)) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(c->session, &data);
		if (n <= 0)
			break;
		sock_write(c->sock, data, (size_t)n);
	}
	c->in_nghttp2 = false;
	if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session))
		h2_free(c);
}

static void h2_sock_data(void *owner, const uint8_t *d, size_t n)
{
	h2_conn_t *c = owner;
	c->in_nghttp2 = true;
	ssize_t r = nghttp2_session_mem_recv(c->session, d, n);
	c->in_nghttp2 = false;
	if (r < 0) {
		/* nghttp2 queued a GOAWAY where it could. */
		nghttp2_session_terminate_session(c->session, NGHTTP2_PROTOCOL_ERROR);
	}
	h2_flush(c);
}

static void h2_sock_eof(void *owner, int err)
{
	h2_free(owner);
}

static void h2_sock_drain(void *owner)
{
	h2_flush(owner);
}

static const proxy_sock_cbs_t h2_sock_cbs = {
	.data = h2_sock_data,
	.eof = h2_sock_eof,
	.drain = h2_sock_drain,
};

static void h2_free(h2_conn_t *c)
{
	if (c->dying)
		return;
	c->dying = true;
	plist_del(&c->base.link);
	while (!plist_empty(&c->streams)) {
		h2_stream_t *st = plist_entry(c->streams.next, h2_stream_t, link);
		if (st->ex) {
			proxy_exchange_t *ex = st->ex;
			st->ex = NULL;
			proxy_exchange_down_gone(ex);
		}
		stream_free(st);
	}
	nghttp2_session_del(c->session);
	if (c->sock)
		c->sock->ops->close_graceful(c->sock);
	proxy_timer_free(c->timer);
	proxy_timer_free(c->flush_timer);
	free(c);
}

static void h2_on_timer(void *arg)
{
	h2_conn_t *c = arg;
	/* GOAWAY; the connection goes once it is written (h2_flush). */
	nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
	h2_flush(c);
}

static void h2_shut(proxy_conn_base_t *b)
{
	h2_free((h2_conn_t *)b);
}

static nghttp2_session_callbacks *h2_callbacks(void)
{
	static nghttp2_session_callbacks *cbs;
	if (cbs)
		return cbs;
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	return cbs;
}

void proxy_h2_start(proxy_engine_t *eng, proxy_sock_t *sock, const char *peer,
		    const uint8_t *first, size_t n)
{
	h2_conn_t *c = xcalloc(1, sizeof *c);
	c->base.shut = h2_shut;
	plist_add_tail(&eng->conns, &c->base.link);
	plist_init(&c->streams);
	c->eng = eng;
	c->sock = sock;
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	c->timer = proxy_timer_new(eng, h2_on_timer, c);
	c->flush_timer = proxy_timer_new(eng, h2_flush_fire, c);
	proxy_timer_arm(c->timer, eng->limits.idle_timeout_ms);
	nghttp2_option *opt;
	nghttp2_option_new(&opt);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_session_server_new2(&c->session, h2_callbacks(), c, opt);
	nghttp2_option_del(opt);
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, eng->limits.h2_max_streams},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, eng->limits.max_header_bytes},
	};
	nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 3);
	/* A connection window as large as the streams' together. */
	nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 4u << 20);
	sock_set_owner(sock, &h2_sock_cbs, c);
	sock->ops->read_start(sock);
	if (n)
		h2_sock_data(c, first, n);
	else
		h2_flush(c);
}
