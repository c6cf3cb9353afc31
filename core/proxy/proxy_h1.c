/*
 * proxy_h1.c: a downstream HTTP/1.x connection.
 *
 * llhttp parses what the client sends; one request is in flight at a time:
 * a pipelined request is parsed only once the response before it has been
 * written (the parser pauses at the end of each message and what follows
 * waits in `pending`, at most one read's worth before reading stops), so
 * responses go out in order without buffering any of them.
 *
 * Request bodies stream to the exchange as they are parsed; when the
 * exchange says the upstream's queue is full, reading stops until it drains.
 * Response bodies arrive from the exchange and are framed for this client
 * (Content-Length as given, chunked otherwise, or close-delimited for
 * HTTP/1.0).
 *
 * Timers: a request head must arrive within header_timeout (408) from its
 * first byte; between requests the connection waits idle_timeout; a stalled
 * request body also gets idle_timeout.
 */
#include <stdlib.h>
#include <strings.h>

#include "proxy_priv.h"

/* Bytes read ahead of the parser (pipelined requests) before reading stops. */
#define PENDING_MAX (64u << 10)

enum h1_state { H1_IDLE, H1_HEAD, H1_BODY, H1_WAIT };

typedef struct proxy_h1 {
	proxy_conn_base_t base;
	proxy_engine_t *eng;
	proxy_sock_t *sock;
	char peer[64];
	llhttp_t parser;
	proxy_head_t head;
	proxy_exchange_t *ex;
	proxy_timer_t *timer;
	strbuf_t pending; /* read, not yet parsed */
	/* A response's head (and what follows it in the same upstream read)
	 * is gathered here and written at once: one write per response in
	 * the common case instead of one per piece. */
	strbuf_t cork;
	enum h1_state state;
	int error_status;  /* set by a callback that found a limit passed */
	bool paused;       /* parser paused at a message's end */
	bool body_paused;  /* the exchange asked to stop the request body */
	bool req_done;     /* the current request was read to its end */
	bool resp_started; /* a final response head went out */
	bool resp_chunked;
	bool resp_close;   /* close once the response is out */
	bool dying;        /* aborted: freed when the exchange lets go */
	bool any_request;  /* the connection served a request already */
	bool in_parse;     /* inside llhttp_execute: freeing waits */
	bool free_due;
} proxy_h1_t;

static void h1_free(proxy_h1_t *c);
static void h1_feed(proxy_h1_t *c, const uint8_t *d, size_t n);
static void h1_flush(void *down);

static proxy_h1_t *h1_of(llhttp_t *p)
{
	return p->data;
}

void proxy_log_early(proxy_engine_t *eng, const char *peer, int status, const char *why);

/* A response of our own (limits, timeouts, parse errors), then close. */
static void h1_fail(proxy_h1_t *c, int status, const char *why)
{
	if (c->ex) {
		/* Cannot happen with a response in flight: the exchange owns
		 * the answer then. */
		proxy_exchange_down_gone(c->ex);
		c->ex = NULL;
	}
	if (!c->resp_started && c->sock) {
		strbuf_t sb = STRBUF_INIT;
		proxy_simple_response(&sb, status, true);
		sock_write(c->sock, sb.buf, sb.len);
		sb_free(&sb);
	}
	proxy_log_early(c->eng, c->peer, status, why);
	h1_free(c);
}

static void h1_close_now(proxy_h1_t *c)
{
	if (c->ex) {
		proxy_exchange_down_gone(c->ex);
		c->ex = NULL;
	}
	if (c->sock) {
		c->sock->ops->close(c->sock);
		c->sock = NULL;
	}
	h1_free(c);
}

static void h1_free(proxy_h1_t *c)
{
	plist_del(&c->base.link);
	if (c->sock)
		c->sock->ops->close_graceful(c->sock);
	proxy_timer_free(c->timer);
	proxy_head_free(&c->head);
	sb_free(&c->pending);
	sb_free(&c->cork);
	free(c);
}

static void h1_on_timer(void *arg)
{
	proxy_h1_t *c = arg;
	switch (c->state) {
	case H1_HEAD:
		h1_fail(c, 408, "request head timeout");
		break;
	case H1_BODY:
		if (c->resp_started) {
			h1_close_now(c);
		} else {
			h1_fail(c, 408, "request body timeout");
		}
		break;
	default:
		h1_close_now(c); /* idle keep-alive connection */
	}
}

/* ---- llhttp callbacks ---- */

static int on_message_begin(llhttp_t *p)
{
	proxy_h1_t *c = h1_of(p);
	c->state = H1_HEAD;
	c->req_done = false;
	c->resp_started = false;
	c->resp_chunked = false;
	proxy_head_reset(&c->head);
	proxy_timer_arm(c->timer, c->eng->limits.header_timeout_ms);
	return 0;
}

static int head_piece(llhttp_t *p, int what, const char *at, size_t n)
{
	proxy_h1_t *c = h1_of(p);
	int r = proxy_head_append(&c->head, what, at, n, &c->eng->limits);
	if (r == 0)
		return 0;
	c->error_status = r == -ENAMETOOLONG ? 414 : r == -E2BIG ? 431 : 400;
	return -1;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	return head_piece(p, HEAD_URL, at, n);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
	return head_piece(p, HEAD_NAME, at, n);
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
	return head_piece(p, HEAD_VALUE, at, n);
}

static int on_url_complete(llhttp_t *p)
{
	proxy_head_end_item(&h1_of(p)->head, HEAD_URL);
	return 0;
}

static int on_field_complete(llhttp_t *p)
{
	proxy_head_end_item(&h1_of(p)->head, HEAD_NAME);
	return 0;
}

static int on_value_complete(llhttp_t *p)
{
	proxy_head_end_item(&h1_of(p)->head, HEAD_VALUE);
	return 0;
}

extern const proxy_down_ops_t proxy_h1_down_ops;

/* Splits an absolute-form target ("http://host/p") into authority and
 * path; origin-form targets pass through. */
static void split_target(char *url, const char **authority, const char **path)
{
	const char *rest = NULL;
	if (strncasecmp(url, "http://", 7) == 0)
		rest = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		rest = url + 8;
	if (!rest) {
		*path = url;
		return;
	}
	char *slash = strchr(rest, '/');
	static char root[] = "/";
	if (!slash) {
		*authority = rest;
		*path = root;
		return;
	}
	/* Move the authority one byte left to end it with a NUL. */
	size_t al = (size_t)(slash - rest);
	memmove((char *)rest - 1, rest, al);
	((char *)rest)[al - 1] = '\0';
	*authority = rest - 1;
	*path = slash;
}

static int on_headers_complete(llhttp_t *p)
{
	proxy_h1_t *c = h1_of(p);
	if (proxy_head_finish(&c->head) < 0) {
		c->error_status = 500;
		return -1;
	}
	proxy_timer_stop(c->timer);
	if (p->method == HTTP_CONNECT) {
		c->error_status = 405;
		return -1;
	}
	proxy_req_info_t info = {0};
	info.method = llhttp_method_name(p->method);
	info.authority = proxy_head_get(&c->head, "host");
	char *url = c->head.url_len ? c->head.buf + c->head.url : (char *)"/";
	split_target(url, &info.authority, &info.path);
	if (!info.authority)
		info.authority = "";
	info.http_version = p->http_major * 10 + p->http_minor;
	info.peer = c->peer;
	info.upgrade = p->upgrade != 0;
	if (p->flags & F_CHUNKED) {
		info.content_length = -1;
		info.has_body = true;
	} else if (p->flags & F_CONTENT_LENGTH) {
		info.content_length = (int64_t)p->content_length;
		info.has_body = p->content_length > 0;
	}
	uint64_t max = c->eng->limits.max_body_bytes;
	if (max && info.content_length > 0 && (uint64_t)info.content_length > max) {
		c->error_status = 413;
		return -1;
	}
	if (!llhttp_should_keep_alive(p))
		c->resp_close = true;
	c->state = info.has_body ? H1_BODY : H1_WAIT;
	if (info.has_body)
		proxy_timer_arm(c->timer, c->eng->limits.idle_timeout_ms);
	/* Refused upgrades leave the client's next bytes unknowable. */
	if (info.upgrade)
		c->resp_close = true;
	c->any_request = true;
	proxy_exchange_start(c->eng, &proxy_h1_down_ops, c, &info, &c->head, &c->ex);
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	proxy_h1_t *c = h1_of(p);
	proxy_timer_arm(c->timer, c->eng->limits.idle_timeout_ms);
	if (c->ex && !proxy_exchange_body(c->ex, (const uint8_t *)at, n) && c->ex &&
	    !c->body_paused) {
		c->body_paused = true;
		if (c->sock)
			c->sock->ops->read_stop(c->sock);
	}
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	proxy_h1_t *c = h1_of(p);
	c->req_done = true;
	if (c->state == H1_BODY)
		proxy_timer_stop(c->timer);
	c->state = H1_WAIT;
	/* The exchange may finish right here (a local answer waits for
	 * nothing): then the next request is parsed at once. */
	if (c->ex)
		proxy_exchange_body_end(c->ex);
	if (c->ex || c->free_due) {
		c->paused = true;
		return HPE_PAUSED;
	}
	c->state = H1_IDLE;
	proxy_timer_arm(c->timer, c->eng->limits.idle_timeout_ms);
	return 0;
}

static const llhttp_settings_t h1_settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_url_complete = on_url_complete,
	.on_header_field_complete = on_field_complete,
	.on_header_value_complete = on_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- feeding bytes ---- */

static void h1_parse_error(proxy_h1_t *c, llhttp_errno_t e)
{
	int status = c->error_status ? c->error_status : 400;
	const char *why = status == 414 ? "request line too long"
			  : status == 431 ? "request headers too large"
			  : status == 413 ? "request body too large"
			  : status == 405 ? "CONNECT is not supported"
					  : llhttp_errno_name(e);
	h1_fail(c, status, why);
}

/* Parses d; what the parser leaves when it pauses goes to pending. Returns
 * false when the connection is gone. */
static void h1_feed(proxy_h1_t *c, const uint8_t *d, size_t n)
{
	if (c->paused || c->pending.len) {
		sb_append_n(&c->pending, d, n);
		if (c->pending.len > PENDING_MAX && c->sock)
			c->sock->ops->read_stop(c->sock);
		return;
	}
	c->in_parse = true;
	llhttp_errno_t e = llhttp_execute(&c->parser, (const char *)d, n);
	c->in_parse = false;
	if (c->free_due) {
		h1_free(c);
		return;
	}
	if (e == HPE_OK)
		return;
	if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
		const uint8_t *pos = (const uint8_t *)llhttp_get_error_pos(&c->parser);
		c->paused = true;
		if (pos && pos >= d && pos < d + n)
			sb_append_n(&c->pending, pos, (size_t)(d + n - pos));
		if (e == HPE_PAUSED_UPGRADE && !c->ex) {
			/* An upgrade request answered locally: what follows
			 * is not HTTP; stop here. */
			c->resp_close = true;
		}
		return;
	}
	h1_parse_error(c, e);
}

/* After a response: parse what waited, or wait for the next request. */
static void h1_next(proxy_h1_t *c)
{
	c->state = H1_IDLE;
	c->resp_started = false;
	if (c->paused) {
		c->paused = false;
		llhttp_resume(&c->parser);
	}
	if (c->body_paused) {
		c->body_paused = false;
	}
	proxy_timer_arm(c->timer, c->eng->limits.idle_timeout_ms);
	if (c->sock)
		c->sock->ops->read_start(c->sock);
	if (c->pending.len) {
		strbuf_t p = c->pending;
		c->pending = (strbuf_t)STRBUF_INIT;
		/* h1_feed may free c (a bad pipelined request): keep p. */
		proxy_engine_t *eng = c->eng;
		(void)eng;
		h1_feed(c, (const uint8_t *)p.buf, p.len);
		sb_free(&p);
	}
}

static void h1_sock_data(void *owner, const uint8_t *d, size_t n)
{
	proxy_h1_t *c = owner;
	h1_feed(c, d, n);
}

static void h1_sock_eof(void *owner, int err)
{
	proxy_h1_t *c = owner;
	/* A client that goes away takes its request with it (the upstream
	 * connection is closed, not reused). */
	h1_close_now(c);
}

static void h1_sock_drain(void *owner)
{
	proxy_h1_t *c = owner;
	if (c->ex)
		proxy_exchange_down_drained(c->ex);
}

static const proxy_sock_cbs_t h1_sock_cbs = {
	.data = h1_sock_data,
	.eof = h1_sock_eof,
	.drain = h1_sock_drain,
};

/* ---- what the exchange calls ---- */

static void h1_head(void *down, int status, const char *lines, size_t len,
		    enum proxy_body_mode mode, uint64_t length)
{
	proxy_h1_t *c = down;
	if (!c->sock)
		return;
	/* Straight into the cork: the head leaves with what follows it. */
	strbuf_t *sb = &c->cork;
	int minor = c->parser.http_minor;
	char st[3] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
		      (char)('0' + status % 10)};
	if (minor)
		PROXY_SB_LIT(sb, "HTTP/1.1 ");
	else
		PROXY_SB_LIT(sb, "HTTP/1.0 ");
	proxy_sb_put(sb, st, 3);
	PROXY_SB_LIT(sb, " ");
	proxy_sb_str(sb, proxy_reason(status));
	PROXY_SB_LIT(sb, "\r\n");
	proxy_sb_put(sb, lines, len);
	if (status >= 200) {
		c->resp_started = true;
		if (mode == BODY_LENGTH || (mode == BODY_NONE && length != UINT64_MAX)) {
			PROXY_SB_LIT(sb, "Content-Length: ");
			proxy_sb_u64(sb, length);
			PROXY_SB_LIT(sb, "\r\n");
		} else if (mode == BODY_UNKNOWN && minor >= 1) {
			c->resp_chunked = true;
			PROXY_SB_LIT(sb, "Transfer-Encoding: chunked\r\n");
		} else if (mode == BODY_UNKNOWN) {
			c->resp_close = true;
		}
		if (c->resp_close)
			PROXY_SB_LIT(sb, "Connection: close\r\n");
		else if (minor == 0)
			PROXY_SB_LIT(sb, "Connection: keep-alive\r\n");
	}
	PROXY_SB_LIT(sb, "\r\n");
	if (status < 200)
		h1_flush(c); /* an interim response goes at once */
}

static void h1_flush(void *down)
{
	proxy_h1_t *c = down;
	if (c->sock && c->cork.len)
		sock_write(c->sock, c->cork.buf, c->cork.len);
	c->cork.len = 0;
}

/* Small pieces join the cork; a big one goes out with it in one write. */
#define CORK_MAX (32u << 10)

static void h1_body(void *down, const uint8_t *d, size_t n)
{
	proxy_h1_t *c = down;
	if (!c->sock || n == 0)
		return;
	char size[26];
	char *sp = size + 26;
	if (c->resp_chunked) {
		sp = proxy_fmt_u64(size, n, 16);
		size[24] = '\r';
		size[25] = '\n';
	}
	size_t k = (size_t)(size + 26 - sp);
	if (c->cork.len + n < CORK_MAX) {
		proxy_sb_put(&c->cork, sp, k);
		proxy_sb_put(&c->cork, d, n);
		if (c->resp_chunked)
			PROXY_SB_LIT(&c->cork, "\r\n");
		return;
	}
	uv_buf_t b[4] = {uv_buf_init(c->cork.buf, (unsigned)c->cork.len),
			 uv_buf_init(sp, (unsigned)k), uv_buf_init((char *)d, (unsigned)n),
			 uv_buf_init((char *)"\r\n", c->resp_chunked ? 2 : 0)};
	c->sock->ops->write(c->sock, b, 4);
	c->cork.len = 0;
}

static void h1_end(void *down)
{
	proxy_h1_t *c = down;
	if (c->resp_chunked)
		PROXY_SB_LIT(&c->cork, "0\r\n\r\n");
	h1_flush(c);
}

static void h1_abort(void *down)
{
	proxy_h1_t *c = down;
	/* A response cut short must not look complete: reset the stream. */
	c->dying = true;
	c->cork.len = 0;
	if (c->sock) {
		c->sock->ops->close(c->sock);
		c->sock = NULL;
	}
}

static void h1_pause(void *down)
{
	proxy_h1_t *c = down;
	if (!c->body_paused && c->sock) {
		c->body_paused = true;
		c->sock->ops->read_stop(c->sock);
	}
}

static void h1_resume(void *down)
{
	proxy_h1_t *c = down;
	if (c->body_paused && c->sock) {
		c->body_paused = false;
		if (c->pending.len <= PENDING_MAX)
			c->sock->ops->read_start(c->sock);
	}
}

static bool h1_blocked(void *down)
{
	proxy_h1_t *c = down;
	return c->sock && sock_blocked(c->sock);
}

static proxy_sock_t *h1_take_sock(void *down, strbuf_t *rest)
{
	proxy_h1_t *c = down;
	h1_flush(c); /* the 101 */
	proxy_sock_t *s = c->sock;
	c->sock = NULL;
	*rest = c->pending;
	c->pending = (strbuf_t)STRBUF_INIT;
	c->dying = true;
	return s;
}

static void h1_done(void *down)
{
	proxy_h1_t *c = down;
	c->ex = NULL;
	if (c->dying || !c->sock || c->resp_close) {
		/* Graceful unless aborted: flush, FIN, linger. */
		if (c->in_parse)
			c->free_due = true;
		else
			h1_free(c);
		return;
	}
	if (!c->req_done) {
		/* Answered before the request body ended: read and drop the
		 * rest, then go on with the next request. */
		h1_resume(c);
		return;
	}
	if (!c->in_parse) /* else on_message_complete goes on */
		h1_next(c);
}

const proxy_down_ops_t proxy_h1_down_ops = {
	.head = h1_head,
	.body = h1_body,
	.end = h1_end,
	.abort = h1_abort,
	.pause = h1_pause,
	.resume = h1_resume,
	.blocked = h1_blocked,
	.take_sock = h1_take_sock,
	.done = h1_done,
	.flush = h1_flush,
};

static void h1_shut(proxy_conn_base_t *b)
{
	proxy_h1_t *c = (proxy_h1_t *)b;
	h1_close_now(c);
}

void proxy_h1_start(proxy_engine_t *eng, proxy_sock_t *sock, const char *peer,
		    const uint8_t *first, size_t n)
{
	proxy_h1_t *c = xcalloc(1, sizeof *c);
	c->base.shut = h1_shut;
	plist_add_tail(&eng->conns, &c->base.link);
	c->eng = eng;
	c->sock = sock;
	snprintf(c->peer, sizeof c->peer, "%s", peer);
	c->pending = (strbuf_t)STRBUF_INIT;
	c->cork = (strbuf_t)STRBUF_INIT;
	llhttp_init(&c->parser, HTTP_REQUEST, &h1_settings);
	c->parser.data = c;
	c->timer = proxy_timer_new(eng, h1_on_timer, c);
	proxy_timer_arm(c->timer, eng->limits.header_timeout_ms);
	sock_set_owner(sock, &h1_sock_cbs, c);
	sock->ops->read_start(sock);
	if (n)
		h1_feed(c, first, n);
}
