/*
 * proxy_exchange.c: one request, from its head to its last response byte.
 *
 * The downstream (an HTTP/1.1 connection or an HTTP/2 stream) hands over a
 * parsed head; the policy routes it; the exchange answers locally or takes
 * an upstream connection from the pool, writes the request as HTTP/1.1 and
 * streams both bodies through, one read at a time:
 *
 *   client body -> upstream socket: when its queue passes the high mark,
 *                  the downstream pauses (stops reading / stops opening
 *                  its HTTP/2 window) until the upstream drains;
 *   upstream body -> client: when the client's queue passes the mark,
 *                  the upstream socket stops reading until it drains.
 *
 * Bytes that arrive before the upstream is connected wait in early_body,
 * and the downstream is paused once that passes the mark too.
 *
 * A failure before any response byte gives the client 502 (refused, reset,
 * malformed) or 504 (timeouts); after, the client's stream is cut so that a
 * truncated response never looks complete. An idempotent request without a
 * body that finds a pooled connection dead before any response byte is
 * tried once more on a fresh connection; one whose upstream cannot be
 * connected to, or closes before answering, is offered to the policy's
 * upstream_failed, which may send it elsewhere (another replica).
 */
#include <stdlib.h>
#include <strings.h>

#include "proxy_priv.h"

/* Finished exchanges an engine keeps for the next requests. */
#define SPARE_EXCHANGES 64

struct proxy_exchange {
	proxy_engine_t *eng;
	const proxy_down_ops_t *dops;
	void *down;
	const proxy_head_t *head; /* the downstream's; valid while we live */
	proxy_req_info_t info;    /* its strings point into head or are static */
	struct proxy_route route;
	proxy_up_t *up;
	strbuf_t early_body; /* request body read before the upstream connected */
	bool body_end;       /* the client's body ended */
	bool req_chunked;    /* we frame the request body in chunks */
	bool connected, req_sent, resp_head, down_paused, up_paused;
	bool head_request, idempotent, finishing;
	bool timed; /* the policy logs: take the times it reads */
	int status;
	int retries;
	bool reused;
	uint64_t bytes_in, bytes_out;
	uint64_t t_start, t_connect, t_connected, t_sent, t_head;
	const char *error;
	char error_buf[HUTCH_ERR_MESSAGE_MAX + 40]; /* a failure's text, kept for the log */
	proxy_exchange_t *next_spare;
};

static void ex_decide(proxy_exchange_t *ex);
static void ex_connect(proxy_exchange_t *ex);
static bool ex_retry_elsewhere(proxy_exchange_t *ex);
extern const proxy_up_events_t proxy_exchange_up_events;

/* ---- the end ---- */

static uint64_t ex_now(const proxy_exchange_t *ex)
{
	return ex->timed ? proxy_now_us() : 0;
}

static void ex_log(proxy_exchange_t *ex)
{
	const proxy_policy_t *pol = ex->eng->policy;
	if (!pol->log)
		return;
	uint64_t now = proxy_now_us();
	char upstream[160] = "";
	if (ex->up)
		snprintf(upstream, sizeof upstream, "%s", proxy_up_name(ex->up));
	else if (ex->route.kind == ROUTE_FORWARD)
		proxy_upstream_name(&ex->route.up, upstream, sizeof upstream, false);
	proxy_log_t e = {
		.method = ex->info.method,
		.authority = ex->info.authority,
		.path = ex->info.path,
		.peer = ex->info.peer,
		.http_version = ex->info.http_version,
		.status = ex->status,
		.bytes_in = ex->bytes_in,
		.bytes_out = ex->bytes_out,
		.total_us = now - ex->t_start,
		.connect_us = ex->t_connected && !ex->reused ? ex->t_connected - ex->t_connect : 0,
		.upstream_us = ex->t_head && ex->t_sent ? ex->t_head - ex->t_sent : 0,
		.upstream = upstream,
		.reused = ex->reused,
		.retries = ex->retries,
		.error = ex->error,
	};
	pol->log(ex->eng->policy_data, &e);
}

static void ex_free(proxy_exchange_t *ex, bool up_reusable)
{
	if (ex->up) {
		proxy_up_release(ex->up, up_reusable);
		ex->up = NULL;
	}
	if (ex->route.deferred && ex->eng->policy->cancel)
		ex->eng->policy->cancel(ex->eng->policy_data, &ex->route);
	proxy_route_clear(&ex->route);
	sb_free(&ex->early_body);
	proxy_engine_t *eng = ex->eng;
	if (eng->closing || eng->n_spare_ex >= SPARE_EXCHANGES) {
		free(ex);
		return;
	}
	ex->next_spare = eng->spare_ex;
	eng->spare_ex = ex;
	eng->n_spare_ex++;
}

void proxy_exchange_spares_free(proxy_engine_t *eng)
{
	while (eng->spare_ex) {
		proxy_exchange_t *ex = eng->spare_ex;
		eng->spare_ex = ex->next_spare;
		free(ex);
	}
	eng->n_spare_ex = 0;
}

static proxy_exchange_t *ex_alloc(proxy_engine_t *eng)
{
	proxy_exchange_t *ex = eng->spare_ex;
	if (!ex)
		return xcalloc(1, sizeof *ex);
	eng->spare_ex = ex->next_spare;
	eng->n_spare_ex--;
	/* Everything but the route's arena, which nothing reads unwritten. */
	memset(ex, 0, offsetof(proxy_exchange_t, route.arena));
	memset((char *)ex + offsetof(proxy_exchange_t, route.arena) + sizeof ex->route.arena, 0,
	       sizeof *ex - offsetof(proxy_exchange_t, route.arena) - sizeof ex->route.arena);
	return ex;
}

/* The exchange is over: log, free, and let the downstream go on. */
static void ex_finish(proxy_exchange_t *ex, bool up_reusable)
{
	const proxy_down_ops_t *dops = ex->dops;
	void *down = ex->down;
	ex_log(ex);
	ex_free(ex, up_reusable);
	dops->done(down);
}

void proxy_exchange_down_gone(proxy_exchange_t *ex)
{
	if (!ex->error)
		ex->error = "client closed the connection";
	if (!ex->resp_head)
		ex->status = 0;
	ex_log(ex);
	ex_free(ex, false);
}

/* An answer of our own: status, headers from the route, a body. */
static void ex_answer(proxy_exchange_t *ex, int status, const char *type, const void *body,
		      size_t len)
{
	strbuf_t *sb = &ex->eng->resp_lines;
	sb_reset(sb);
	if (type) {
		PROXY_SB_LIT(sb, "Content-Type: ");
		proxy_sb_str(sb, type);
		PROXY_SB_LIT(sb, "\r\n");
	}
	for (size_t i = 0; i < ex->route.n_resp_edits; i++) {
		const struct proxy_edit *e = &ex->route.resp_edits[i];
		if (!e->value || strcasecmp(e->name, "content-type") == 0)
			continue;
		proxy_sb_put(sb, e->name, e->name_len);
		PROXY_SB_LIT(sb, ": ");
		proxy_sb_put(sb, e->value, e->value_len);
		PROXY_SB_LIT(sb, "\r\n");
	}
	ex->status = status;
	ex->resp_head = true;
	bool no_body = ex->head_request || status == 204 || status == 304;
	ex->dops->head(ex->down, status, sb->buf ? sb->buf : "", sb->len,
		       no_body ? BODY_NONE : BODY_LENGTH, len);
	if (!no_body && len) {
		ex->dops->body(ex->down, body, len);
		ex->bytes_out += len;
	}
	ex->dops->end(ex->down);
}

/* Fails the request: an answer saying why (the texts are the engine's:
 * which upstream step failed, never a header or body), or, once the
 * response has begun, a cut stream. */
static void ex_fail(proxy_exchange_t *ex, int status, const char *why)
{
	snprintf(ex->error_buf, sizeof ex->error_buf, "%s", why);
	ex->error = ex->error_buf;
	if (ex->resp_head) {
		ex->dops->abort(ex->down);
		ex_finish(ex, false);
		return;
	}
	char body[sizeof ex->error_buf + 40];
	int n = snprintf(body, sizeof body, "%s: %s\n", proxy_reason(status), why);
	if (n < 0 || (size_t)n >= sizeof body)
		n = (int)strlen(body);
	ex_answer(ex, status, "text/plain", body, (size_t)n);
	ex_finish(ex, false);
}

/* ---- the request toward the upstream ---- */

static void emit_forwarded(proxy_exchange_t *ex, strbuf_t *sb)
{
	const char *scheme = ex->eng->tls ? "https" : "http";
	if (ex->info.http_version == 20)
		PROXY_SB_LIT(sb, "Via: 2 hutch\r\nX-Forwarded-For: ");
	else
		PROXY_SB_LIT(sb, "Via: 1.1 hutch\r\nX-Forwarded-For: ");
	proxy_sb_str(sb, ex->info.peer);
	PROXY_SB_LIT(sb, "\r\nX-Forwarded-Proto: ");
	proxy_sb_str(sb, scheme);
	PROXY_SB_LIT(sb, "\r\nX-Forwarded-Host: ");
	proxy_sb_str(sb, ex->info.authority);
	bool v6 = strchr(ex->info.peer, ':') != NULL;
	PROXY_SB_LIT(sb, "\r\nForwarded: for=");
	if (v6)
		PROXY_SB_LIT(sb, "\"[");
	proxy_sb_str(sb, ex->info.peer);
	if (v6)
		PROXY_SB_LIT(sb, "]\"");
	PROXY_SB_LIT(sb, ";proto=");
	proxy_sb_str(sb, scheme);
	PROXY_SB_LIT(sb, ";host=\"");
	proxy_sb_str(sb, ex->info.authority);
	PROXY_SB_LIT(sb, "\"\r\n");
}

/* The request head toward the upstream, built with plain copies into the
 * engine's buffer (the socket copies what it cannot send at once). */
static void ex_send_head(proxy_exchange_t *ex)
{
	strbuf_t *sb = &ex->eng->req_head;
	sb_reset(sb);
	const char *path = ex->route.path ? ex->route.path : ex->info.path;
	proxy_sb_str(sb, ex->info.method);
	PROXY_SB_LIT(sb, " ");
	proxy_sb_str(sb, path);
	PROXY_SB_LIT(sb, " HTTP/1.1\r\nHost: ");
	proxy_sb_str(sb, ex->info.authority);
	PROXY_SB_LIT(sb, "\r\n");
	struct proxy_edit edits[PROXY_MAX_EDITS + 4];
	size_t n = ex->route.n_req_edits;
	memcpy(edits, ex->route.req_edits, n * sizeof edits[0]);
	if (ex->eng->add_forwarded) {
		/* The client's own say on these is not to be trusted. */
		static char xfp[] = "x-forwarded-proto", xfh[] = "x-forwarded-host";
		edits[n++] = (struct proxy_edit){xfp, NULL, sizeof xfp - 1, 0};
		edits[n++] = (struct proxy_edit){xfh, NULL, sizeof xfh - 1, 0};
	}
	const char *conn = proxy_head_get(ex->head, "connection");
	proxy_headers_emit(sb, ex->head, conn, edits, n);
	if (ex->eng->add_forwarded)
		emit_forwarded(ex, sb);
	if (ex->info.upgrade) {
		const char *up = proxy_head_get(ex->head, "upgrade");
		PROXY_SB_LIT(sb, "Connection: upgrade\r\nUpgrade: ");
		proxy_sb_str(sb, up ? up : "");
		PROXY_SB_LIT(sb, "\r\n");
	}
	if (ex->info.content_length >= 0 && (ex->info.has_body || ex->info.content_length > 0)) {
		PROXY_SB_LIT(sb, "Content-Length: ");
		proxy_sb_u64(sb, (uint64_t)ex->info.content_length);
		PROXY_SB_LIT(sb, "\r\n");
	} else if (ex->info.has_body && ex->info.content_length < 0) {
		ex->req_chunked = true;
		PROXY_SB_LIT(sb, "Transfer-Encoding: chunked\r\n");
	}
	PROXY_SB_LIT(sb, "\r\n");
	proxy_up_write(ex->up, sb->buf, sb->len);
}

static void ex_write_body(proxy_exchange_t *ex, const uint8_t *d, size_t n)
{
	if (!n)
		return;
	if (ex->req_chunked) {
		/* Size line, data and CRLF in one write. */
		char size[26];
		char *p = proxy_fmt_u64(size, n, 16);
		size[24] = '\r';
		size[25] = '\n';
		uv_buf_t b[3] = {uv_buf_init(p, (unsigned)(size + 26 - p)),
				 uv_buf_init((char *)d, (unsigned)n), uv_buf_init((char *)"\r\n", 2)};
		proxy_up_writev(ex->up, b, 3);
		return;
	}
	proxy_up_write(ex->up, d, n);
}

static void ex_request_end(proxy_exchange_t *ex)
{
	if (ex->req_sent)
		return;
	if (ex->req_chunked)
		proxy_up_write(ex->up, "0\r\n\r\n", 5);
	ex->req_sent = true;
	ex->t_sent = ex_now(ex);
	proxy_up_request_sent(ex->up, ex->head_request);
}

static void ev_connected(proxy_exchange_t *ex)
{
	ex->connected = true;
	ex->t_connected = ex_now(ex);
	ex_send_head(ex);
	if (ex->early_body.len) {
		ex_write_body(ex, (const uint8_t *)ex->early_body.buf, ex->early_body.len);
		sb_free(&ex->early_body);
	}
	if (!ex->info.has_body || ex->body_end)
		ex_request_end(ex);
	else if (ex->down_paused && !proxy_up_blocked(ex->up)) {
		ex->down_paused = false;
		ex->dops->resume(ex->down);
	}
}

bool proxy_exchange_body(proxy_exchange_t *ex, const uint8_t *d, size_t n)
{
	ex->bytes_in += n;
	uint64_t max = ex->eng->limits.max_body_bytes;
	if (max && ex->bytes_in > max) {
		/* Only a chunked body gets here (a long Content-Length was
		 * refused up front). */
		ex_fail(ex, 413, "request body too large");
		return false;
	}
	if (ex->route.kind != ROUTE_FORWARD || ex->finishing)
		return true; /* answered already: the rest is dropped */
	if (!ex->connected) {
		sb_append_n(&ex->early_body, d, n);
		if (ex->early_body.len > PROXY_WRITE_HIGH)
			ex->down_paused = true;
		return !ex->down_paused;
	}
	ex_write_body(ex, d, n);
	if (proxy_up_blocked(ex->up))
		ex->down_paused = true;
	return !ex->down_paused;
}

void proxy_exchange_body_end(proxy_exchange_t *ex)
{
	ex->body_end = true;
	if (ex->connected && ex->up)
		ex_request_end(ex);
}

/* ---- the response ---- */

static void ev_head(proxy_exchange_t *ex, int status, proxy_head_t *h, bool keep_body,
		    int64_t content_length, bool upgrade)
{
	if (!ex->t_head)
		ex->t_head = ex_now(ex);
	strbuf_t *sb = &ex->eng->resp_lines;
	sb_reset(sb);
	const char *conn = proxy_head_get(h, "connection");
	proxy_headers_emit(sb, h, conn, ex->route.resp_edits, ex->route.n_resp_edits);
	if (status < 200 && status != 101) { /* 100 Continue and friends */
		ex->dops->head(ex->down, status, sb->buf ? sb->buf : "", sb->len, BODY_NONE, 0);
		return;
	}
	ex->status = status;
	ex->resp_head = true;
	enum proxy_body_mode mode = BODY_UNKNOWN;
	uint64_t len = UINT64_MAX;
	if (status == 101) {
		const char *u = proxy_head_get(h, "upgrade");
		PROXY_SB_LIT(sb, "Connection: upgrade\r\nUpgrade: ");
		proxy_sb_str(sb, u ? u : "");
		PROXY_SB_LIT(sb, "\r\n");
		mode = BODY_NONE;
	} else if (!keep_body) {
		mode = BODY_NONE;
		if (status != 204 && content_length >= 0)
			len = (uint64_t)content_length;
	} else if (content_length >= 0) {
		mode = BODY_LENGTH;
		len = (uint64_t)content_length;
	}
	ex->dops->head(ex->down, status, sb->buf ? sb->buf : "", sb->len, mode, len);
}

static void ev_body(proxy_exchange_t *ex, const uint8_t *d, size_t n)
{
	ex->bytes_out += n;
	ex->dops->body(ex->down, d, n);
	if (!ex->up_paused && ex->dops->blocked(ex->down)) {
		ex->up_paused = true;
		proxy_up_pause(ex->up);
	}
}

void proxy_exchange_down_drained(proxy_exchange_t *ex)
{
	if (ex->up_paused && ex->up) {
		ex->up_paused = false;
		proxy_up_resume(ex->up);
	}
}

static void ev_end(proxy_exchange_t *ex)
{
	ex->dops->end(ex->down);
	/* A connection whose request was not sent in full cannot be reused. */
	ex_finish(ex, ex->req_sent);
}

static void ev_drain(proxy_exchange_t *ex)
{
	if (ex->down_paused) {
		ex->down_paused = false;
		ex->dops->resume(ex->down);
	}
}

static void ev_error(proxy_exchange_t *ex, int status, const char *why, bool retry)
{
	if (retry && ex->idempotent && !ex->info.has_body && ex->retries == 0 && !ex->resp_head) {
		/* A pooled connection the upstream had closed meanwhile. */
		ex->retries++;
		proxy_up_release(ex->up, false);
		ex->up = NULL;
		ex->connected = ex->req_sent = false;
		ex_connect(ex);
		return;
	}
	if (proxy_up_lost(ex->up) && ex_retry_elsewhere(ex))
		return;
	ex_fail(ex, status, why);
}

static void ev_upgraded(proxy_exchange_t *ex, const uint8_t *rest, size_t n)
{
	strbuf_t down_rest = STRBUF_INIT;
	proxy_sock_t *ds = ex->dops->take_sock ? ex->dops->take_sock(ex->down, &down_rest) : NULL;
	proxy_sock_t *us = proxy_up_take_sock(ex->up);
	if (!ds || !us) {
		if (us)
			us->ops->close(us);
		sb_free(&down_rest);
		ex->dops->abort(ex->down);
		ex_finish(ex, false);
		return;
	}
	proxy_tunnel_start(ex->eng, ds, us, (const uint8_t *)down_rest.buf, down_rest.len, rest, n);
	sb_free(&down_rest);
	ex_finish(ex, false);
}

static void ev_flush(proxy_exchange_t *ex)
{
	if (ex->dops->flush)
		ex->dops->flush(ex->down);
}

const proxy_up_events_t proxy_exchange_up_events = {
	.flush = ev_flush,
	.connected = ev_connected,
	.head = ev_head,
	.body = ev_body,
	.end = ev_end,
	.error = ev_error,
	.drain = ev_drain,
	.upgraded = ev_upgraded,
};

/* ---- routing ---- */

static void ex_connect(proxy_exchange_t *ex)
{
	hutch_err_t err;
	ex->t_connect = ex_now(ex);
	int r = proxy_up_get(ex->eng, &ex->route.up, ex, &proxy_exchange_up_events, &ex->up, &err);
	if (r < 0) {
		if (!ex_retry_elsewhere(ex))
			ex_fail(ex, 502, "upstream connect failed");
		return;
	}
	ex->reused = r == 1;
	if (r == 1)
		ev_connected(ex);
}

static void ex_decide(proxy_exchange_t *ex)
{
	struct proxy_route *r = &ex->route;
	switch (r->kind) {
	case ROUTE_LOCAL:
		ex->finishing = true;
		ex_answer(ex, r->status, r->content_type, r->body, r->body_len);
		ex_finish(ex, false);
		return;
	case ROUTE_FORWARD:
		ex_connect(ex);
		return;
	default:
		ex_fail(ex, 502, "no route");
	}
}

void proxy_route_done(proxy_route_t *route)
{
	if (!route->deferred || !route->ex)
		return;
	route->deferred = false;
	ex_decide(route->ex);
}

static void ex_request(const proxy_exchange_t *ex, proxy_request_t *req)
{
	const proxy_req_info_t *info = &ex->info;
	*req = (proxy_request_t){
		.method = info->method,
		.scheme = ex->eng->tls ? "https" : "http",
		.authority = info->authority,
		.path = info->path,
		.headers = ex->head->list,
		.n_headers = ex->head->n,
		.http_version = info->http_version,
		.content_length = info->has_body ? info->content_length : 0,
		.upgrade = info->upgrade,
		.peer = info->peer,
	};
}

/* The route's upstream could not be connected to, or closed the connection
 * before answering: the policy may name another upstream for a request
 * that is safe to send twice (RFC 9110 9.2.2: idempotent, and no body to
 * replay). True when the exchange goes on (elsewhere). */
static bool ex_retry_elsewhere(proxy_exchange_t *ex)
{
	const proxy_policy_t *pol = ex->eng->policy;
	if (!pol->upstream_failed || !ex->idempotent || ex->info.has_body || ex->resp_head ||
	    ex->finishing || ex->route.kind != ROUTE_FORWARD)
		return false;
	proxy_upstream_t failed = ex->route.up;
	proxy_request_t req;
	ex_request(ex, &req);
	if (!pol->upstream_failed(ex->eng->policy_data, &req, &ex->route, &failed,
				  ex->retries + 1)) {
		/* The log names the upstream that failed, whatever was filled. */
		ex->route.kind = ROUTE_FORWARD;
		ex->route.up = failed;
		return false;
	}
	ex->retries++;
	if (ex->up) {
		proxy_up_release(ex->up, false);
		ex->up = NULL;
	}
	ex->connected = ex->req_sent = false;
	ex_decide(ex);
	return true;
}

static bool method_idempotent(const char *m)
{
	static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
		if (strcmp(m, ok[i]) == 0)
			return true;
	return false;
}

int proxy_exchange_start(proxy_engine_t *eng, const proxy_down_ops_t *ops, void *down,
			 const proxy_req_info_t *info, proxy_head_t *head,
			 proxy_exchange_t **out)
{
	proxy_exchange_t *ex = ex_alloc(eng);
	ex->eng = eng;
	ex->timed = eng->policy->log != NULL;
	ex->dops = ops;
	ex->down = down;
	ex->head = head;
	ex->info = *info;
	ex->early_body = (strbuf_t)STRBUF_INIT;
	ex->t_start = ex_now(ex);
	ex->head_request = strcmp(info->method, "HEAD") == 0;
	ex->idempotent = method_idempotent(info->method);
	ex->route.ex = ex;
	*out = ex;

	proxy_request_t req;
	ex_request(ex, &req);
	proxy_route_result_t res = eng->policy->route(eng->policy_data, &req, &ex->route);
	if (res == PROXY_ROUTE_DEFER) {
		ex->route.deferred = true;
		return 0;
	}
	ex_decide(ex);
	return 0;
}

void proxy_log_early(proxy_engine_t *eng, const char *peer, int status, const char *why);
void proxy_log_early(proxy_engine_t *eng, const char *peer, int status, const char *why)
{
	if (!eng->policy->log)
		return;
	proxy_log_t e = {
		.method = "", .authority = "", .path = "", .peer = peer, .status = status,
		.upstream = "", .error = why, .http_version = 11,
	};
	eng->policy->log(eng->policy_data, &e);
}
