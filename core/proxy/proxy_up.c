/*
 * proxy_up.c: one HTTP/1.1 connection to an upstream: connect (and TLS),
 * the response parsed with llhttp, its timers (connect, response head), and
 * what becomes of it after a response: back to the pool when the response
 * ended cleanly and both sides agreed to keep it, closed otherwise.
 *
 * An idle pooled connection keeps reading, so that an upstream closing it
 * (or sending anything unasked) is noticed and the connection dropped
 * before a request is put on it.
 *
 * One timer serves each state: connect, then the response head, then the
 * gaps between reads of the response (upstream_read_timeout: an upstream
 * that stalls mid-response would otherwise hold both connections until
 * the client gives up), then the idle time in the pool. While the engine
 * itself stops reading (the client is slow), no gap is counted.
 */
#include <stdlib.h>

#include "proxy_priv.h"

enum up_state { UP_CONNECTING, UP_ACTIVE, UP_IDLE };

struct proxy_up {
	proxy_engine_t *eng;
	proxy_sock_t *sock;
	proxy_upstream_t up; /* where it goes: the pool's key */
	char name[160];      /* the same, for the log */
	llhttp_t parser;
	proxy_head_t head;
	proxy_exchange_t *ex;
	const proxy_up_events_t *ev;
	proxy_timer_t *timer;
	struct proxy_link pool_link;
	enum up_state state;
	int status;
	bool reused;      /* this exchange got it from the pool */
	bool got_bytes;   /* a byte of the response arrived */
	bool lost;        /* failed to connect, or closed before any response byte */
	bool head_seen;   /* the final response head was parsed */
	bool head_request;
	bool complete;    /* the response ended */
	bool keep_alive;
	bool failed;      /* an error was reported: no more events */
	bool paused;      /* the exchange stopped reading the response */
	char why[HUTCH_ERR_MESSAGE_MAX + 40]; /* a failure's text, for the event */
};

static void up_error(proxy_up_t *u, int status, const char *why, bool retry)
{
	if (u->failed || !u->ex)
		return;
	u->failed = true;
	proxy_timer_stop(u->timer);
	u->ev->error(u->ex, status, why, retry);
}

static void up_on_timer(void *arg)
{
	proxy_up_t *u = arg;
	switch (u->state) {
	case UP_CONNECTING:
		u->lost = true;
		up_error(u, 504, "upstream connect timeout", false);
		break;
	case UP_ACTIVE:
		if (u->head_seen)
			up_error(u, 504, "upstream stalled mid-response (read timeout)", false);
		else
			up_error(u, 504, "upstream response timeout", false);
		break;
	case UP_IDLE:
		proxy_pool_remove(u->eng->pool, u);
		proxy_up_close(u);
		break;
	}
}

/* ---- llhttp callbacks (responses) ---- */

static int on_message_begin(llhttp_t *p)
{
	proxy_up_t *u = p->data;
	proxy_head_reset(&u->head);
	return 0;
}

static int head_piece(llhttp_t *p, int what, const char *at, size_t n)
{
	proxy_up_t *u = p->data;
	return proxy_head_append(&u->head, what, at, n, &u->eng->limits) < 0 ? -1 : 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
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

static int on_status_complete(llhttp_t *p)
{
	proxy_head_end_item(&((proxy_up_t *)p->data)->head, HEAD_URL);
	return 0;
}

static int on_field_complete(llhttp_t *p)
{
	proxy_head_end_item(&((proxy_up_t *)p->data)->head, HEAD_NAME);
	return 0;
}

static int on_value_complete(llhttp_t *p)
{
	proxy_head_end_item(&((proxy_up_t *)p->data)->head, HEAD_VALUE);
	return 0;
}

static int on_headers_complete(llhttp_t *p)
{
	proxy_up_t *u = p->data;
	if (proxy_head_finish(&u->head) < 0)
		return -1;
	int status = p->status_code;
	bool interim = status < 200 && status != 101;
	bool body = !(u->head_request || status < 200 || status == 204 || status == 304);
	int64_t cl = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
	if (!interim) {
		u->head_seen = true;
		u->status = status;
		proxy_timer_arm(u->timer, u->eng->limits.upstream_read_timeout_ms);
	}
	u->ev->head(u->ex, status, &u->head, body, cl, status == 101);
	/* A HEAD response has no body whatever its headers say. */
	return u->head_request && !interim ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	proxy_up_t *u = p->data;
	u->ev->body(u->ex, (const uint8_t *)at, n);
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	proxy_up_t *u = p->data;
	if (!u->head_seen)
		return 0; /* an interim (1xx) response: the real one follows */
	if (u->status == 101)
		return 0; /* llhttp stops with HPE_PAUSED_UPGRADE */
	u->complete = true;
	u->keep_alive = llhttp_should_keep_alive(p);
	/* Whatever follows is not ours to read. */
	return HPE_PAUSED;
}

static const llhttp_settings_t up_settings = {
	.on_message_begin = on_message_begin,
	.on_status = on_status,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_status_complete = on_status_complete,
	.on_header_field_complete = on_field_complete,
	.on_header_value_complete = on_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* ---- the socket ---- */

static void up_sock_connected(void *owner, int status, const char *why)
{
	proxy_up_t *u = owner;
	if (status < 0) {
		u->lost = true;
		/* The exchange copies the text before this returns. */
		if (status == UV_ECONNREFUSED)
			why = "upstream connection refused";
		else if (status == -EPROTO)
			snprintf(u->why, sizeof u->why, "upstream TLS: %s", why ? why : "failed");
		else
			snprintf(u->why, sizeof u->why, "upstream connect failed: %s",
				 why ? why : uv_strerror(status));
		up_error(u, 502, status == UV_ECONNREFUSED ? why : u->why, false);
		return;
	}
	proxy_timer_stop(u->timer);
	u->state = UP_ACTIVE;
	u->sock->ops->read_start(u->sock);
	u->ev->connected(u->ex);
}

static void up_sock_data(void *owner, const uint8_t *d, size_t n)
{
	proxy_up_t *u = owner;
	if (u->state == UP_IDLE || !u->ex || u->failed || u->complete) {
		/* Unasked bytes: the connection is not in a known state. */
		if (u->state == UP_IDLE) {
			proxy_pool_remove(u->eng->pool, u);
			proxy_up_close(u);
		}
		return;
	}
	u->got_bytes = true;
	llhttp_errno_t e = llhttp_execute(&u->parser, (const char *)d, n);
	if (e == HPE_PAUSED_UPGRADE && u->status == 101) {
		const uint8_t *pos = (const uint8_t *)llhttp_get_error_pos(&u->parser);
		size_t rest = pos && pos >= d && pos <= d + n ? (size_t)(d + n - pos) : 0;
		u->failed = true; /* the tunnel owns what follows */
		u->ev->upgraded(u->ex, d + n - rest, rest);
		return;
	}
	if (e == HPE_OK && !u->complete) {
		/* Counts the gap to the next read (arming is cheap: the timer
		 * only notes the deadline). */
		if (u->head_seen && !u->paused)
			proxy_timer_arm(u->timer, u->eng->limits.upstream_read_timeout_ms);
		u->ev->flush(u->ex);
		return;
	}
	if (u->complete) {
		u->failed = true;
		u->ev->end(u->ex);
		return;
	}
	up_error(u, 502, "upstream sent a malformed response", false);
}

static void up_sock_eof(void *owner, int err)
{
	proxy_up_t *u = owner;
	if (u->state == UP_IDLE) {
		proxy_pool_remove(u->eng->pool, u);
		proxy_up_close(u);
		return;
	}
	if (u->failed || !u->ex)
		return;
	if (err == 0 && u->head_seen && llhttp_message_needs_eof(&u->parser)) {
		/* A close-delimited body ends here. */
		if (llhttp_finish(&u->parser) == HPE_OK || u->complete) {
			u->complete = true;
			u->keep_alive = false;
			u->failed = true;
			u->ev->end(u->ex);
			return;
		}
	}
	if (!u->got_bytes) {
		u->lost = true;
		up_error(u, 502, "upstream closed the connection", u->reused);
	} else {
		up_error(u, 502, "upstream closed the connection mid-response", false);
	}
}

static void up_sock_drain(void *owner)
{
	proxy_up_t *u = owner;
	if (u->ex && !u->failed)
		u->ev->drain(u->ex);
}

static const proxy_sock_cbs_t up_sock_cbs = {
	.data = up_sock_data,
	.eof = up_sock_eof,
	.drain = up_sock_drain,
	.connected = up_sock_connected,
};

/* ---- what the exchange calls ---- */

static void up_attach(proxy_up_t *u, proxy_exchange_t *ex, const proxy_up_events_t *ev)
{
	u->ex = ex;
	u->ev = ev;
	u->got_bytes = u->head_seen = u->complete = u->failed = u->paused = false;
	u->lost = false;
	u->head_request = false;
	u->keep_alive = false;
	u->status = 0;
	llhttp_init(&u->parser, HTTP_RESPONSE, &up_settings);
	u->parser.data = u;
}

int proxy_up_get(proxy_engine_t *eng, const proxy_upstream_t *up, proxy_exchange_t *ex,
		 const proxy_up_events_t *ev, proxy_up_t **out, hutch_err_t *err)
{
	proxy_up_t *u = proxy_pool_take(eng->pool, up);
	if (u) {
		proxy_timer_stop(u->timer);
		up_attach(u, ex, ev);
		u->state = UP_ACTIVE;
		u->reused = true;
		*out = u;
		return 1;
	}
	u = xcalloc(1, sizeof *u);
	u->eng = eng;
	u->up = *up;
	proxy_upstream_name(up, u->name, sizeof u->name, false);
	up_attach(u, ex, ev);
	u->state = UP_CONNECTING;
	u->timer = proxy_timer_new(eng, up_on_timer, u);
	int r = (eng->connect ? eng->connect : proxy_sock_connect)(eng, up, &up_sock_cbs, u,
								   &u->sock, err);
	if (r < 0) {
		proxy_timer_free(u->timer);
		free(u);
		return r;
	}
	proxy_timer_arm(u->timer, eng->limits.connect_timeout_ms);
	*out = u;
	return 0;
}

bool proxy_up_lost(const proxy_up_t *u)
{
	return u->lost;
}

bool proxy_up_reused(const proxy_up_t *u)
{
	return u->reused;
}

void proxy_up_write(proxy_up_t *u, const void *d, size_t n)
{
	if (u->sock)
		sock_write(u->sock, d, n);
}

void proxy_up_writev(proxy_up_t *u, const uv_buf_t *bufs, unsigned n)
{
	if (u->sock)
		u->sock->ops->write(u->sock, bufs, n);
}

const char *proxy_up_name(const proxy_up_t *u)
{
	return u->name;
}

bool proxy_up_blocked(const proxy_up_t *u)
{
	return u->sock && sock_blocked(u->sock);
}

void proxy_up_request_sent(proxy_up_t *u, bool head_request)
{
	u->head_request = head_request;
	if (!u->head_seen && !u->failed)
		proxy_timer_arm(u->timer, u->eng->limits.response_timeout_ms);
}

void proxy_up_pause(proxy_up_t *u)
{
	u->paused = true;
	/* Waiting for the client is not the upstream stalling. */
	if (u->head_seen && !u->complete && !u->failed)
		proxy_timer_stop(u->timer);
	if (u->sock)
		u->sock->ops->read_stop(u->sock);
}

void proxy_up_resume(proxy_up_t *u)
{
	u->paused = false;
	if (u->head_seen && !u->complete && !u->failed)
		proxy_timer_arm(u->timer, u->eng->limits.upstream_read_timeout_ms);
	if (u->sock)
		u->sock->ops->read_start(u->sock);
}

proxy_sock_t *proxy_up_take_sock(proxy_up_t *u)
{
	proxy_sock_t *s = u->sock;
	u->sock = NULL;
	return s;
}

void proxy_up_close(proxy_up_t *u)
{
	if (u->sock)
		u->sock->ops->close(u->sock);
	proxy_timer_free(u->timer);
	proxy_head_free(&u->head);
	free(u);
}

void proxy_up_release(proxy_up_t *u, bool reusable)
{
	u->ex = NULL;
	if (reusable && u->complete && u->keep_alive && u->sock && !u->eng->closing) {
		u->reused = false;
		proxy_pool_put(u->eng->pool, u);
		return;
	}
	proxy_up_close(u);
}

void proxy_up_park(proxy_up_t *u, uint32_t idle_ms)
{
	u->state = UP_IDLE;
	u->sock->ops->read_start(u->sock);
	proxy_timer_arm(u->timer, idle_ms);
}

struct proxy_link *proxy_up_pool_link(proxy_up_t *u)
{
	return &u->pool_link;
}

proxy_up_t *proxy_up_from_pool_link(struct proxy_link *l)
{
	return plist_entry(l, proxy_up_t, pool_link);
}

const proxy_upstream_t *proxy_up_upstream(const proxy_up_t *u)
{
	return &u->up;
}
