/* Fuzzes hutch_proxy's HTTP/1 paths over in-memory streams (no sockets):
 *
 *  - the request path: bytes a client sends, fed to a real connection
 *    object through the sniffer (h1 or h2c), llhttp, the limits, the
 *    exchange and a policy that answers locally, defers or edits headers;
 *  - the response path (inputs whose second byte is 'U'): a fixed request
 *    forwarded to an upstream whose reply is the rest of the input, through
 *    the upstream parser, the header filter, framing toward the client,
 *    101 tunnels and the pool. Upstreams run code a user deployed, so what
 *    they answer is as untrusted as what clients send.
 *
 * The input's first byte picks how it is cut into reads. Checks: no crash,
 * no leak, every reply starts as an HTTP/1.x status line, and no response
 * head toward the client carries both Content-Length and Transfer-Encoding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy_priv.h"

static uv_loop_t loop;

static proxy_route_result_t fz_route(void *data, const proxy_request_t *req, proxy_route_t *r)
{
	size_t plen = strlen(req->path);
	proxy_route_response_header(r, "X-Test", req->authority);
	proxy_route_request_header(r, "X-Bad\r\nName", "x"); /* refused */
	if (strncmp(req->path, "/up", 3) == 0) {
		proxy_upstream_t up;
		hutch_err_t err;
		proxy_upstream_parse("192.0.2.2:80", &up, &err);
		proxy_route_response_header(r, "X-Removed", NULL);
		proxy_route_forward(r, &up);
		return PROXY_ROUTE_DONE;
	}
	if (plen % 5 == 4)
		return PROXY_ROUTE_DEFER; /* never decided: cancelled at close */
	int status = plen % 3 == 0 ? 200 : plen % 3 == 1 ? 204 : 404;
	proxy_route_local(r, status, "text/plain", req->path, plen);
	return PROXY_ROUTE_DONE;
}

static void fz_cancel(void *data, proxy_route_t *r)
{
}

static void fz_log(void *data, const proxy_log_t *e)
{
	if (!e->method || !e->path || !e->authority || !e->peer || !e->upstream)
		__builtin_trap();
}

static const proxy_policy_t fz_policy = {
	.size = sizeof(proxy_policy_t),
	.route = fz_route,
	.cancel = fz_cancel,
	.log = fz_log,
};

struct sink_state {
	size_t bytes;
	bool h2;
};

static void check_head(const uint8_t *d, size_t n)
{
	const uint8_t *end = memmem(d, n, "\r\n\r\n", 4);
	size_t hn = end ? (size_t)(end - d) : n;
	if (memmem(d, hn, "\r\nContent-Length:", 17) && memmem(d, hn, "\r\nTransfer-Encoding:", 20))
		__builtin_trap();
}

static void sink(void *arg, const uint8_t *d, size_t n)
{
	struct sink_state *s = arg;
	if (s->bytes == 0 && !s->h2 && n) {
		if (n < 9 || memcmp(d, "HTTP/1.", 7) != 0)
			__builtin_trap();
		check_head(d, n);
	}
	s->bytes += n;
}

static void drop(void *arg, const uint8_t *d, size_t n)
{
}

/* The upstream connection the exchange asked for, in memory. */
static proxy_sock_t *up_sock;

static int fz_connect(proxy_engine_t *eng, const proxy_upstream_t *up,
		      const proxy_sock_cbs_t *cbs, void *owner, proxy_sock_t **out,
		      hutch_err_t *err)
{
	if (up_sock) /* one per input: a second connect fails like a refusal */
		return hutch_err_set(err, ECONNREFUSED, "connect: refused");
	up_sock = proxy_sock_mem_new(drop, NULL);
	sock_set_owner(up_sock, cbs, owner);
	*out = up_sock;
	return 0;
}

static bool usable(proxy_sock_t *s)
{
	return s && s->cbs && !proxy_sock_mem_closed(s);
}

/* Feeds data to s in reads of step bytes while it is open. */
static void feed(proxy_sock_t *s, const uint8_t *data, size_t size, size_t step)
{
	for (size_t off = 0; off < size && usable(s); off += step) {
		size_t n = size - off < step ? size - off : step;
		s->cbs->data(s->owner, data + off, n);
	}
	if (usable(s))
		s->cbs->eof(s->owner, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool init;
	if (!init) {
		uv_loop_init(&loop);
		init = true;
	}
	if (size == 0)
		return 0;
	size_t cut = 1 + data[0] % 64; /* read size; 64 -> all at once */
	data++;
	size--;
	bool upstream = size > 0 && data[0] == 'U';
	proxy_config_t cfg = {
		.listen = "mem",
		.policy = &fz_policy,
		.limits = {.max_request_line = 256, .max_header_bytes = 1024, .max_headers = 16,
			   .max_body_bytes = 4096},
		.add_forwarded = true,
	};
	proxy_engine_t eng;
	proxy_engine_init(&eng, &loop, &cfg);
	eng.connect = fz_connect;
	up_sock = NULL;
	struct sink_state st = {0, !upstream && size >= 3 && memcmp(data, "PRI", 3) == 0};
	proxy_sock_t *sock = proxy_sock_mem_new(sink, &st);
	proxy_conn_start(&eng, sock, "192.0.2.1");
	size_t step = cut == 64 ? size : cut;
	if (upstream) {
		static const char req[] = "GET /up HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
		sock->cbs->data(sock->owner, (const uint8_t *)req, sizeof req - 1);
		if (up_sock && up_sock->cbs)
			up_sock->cbs->connected(up_sock->owner, 0, NULL);
		feed(up_sock, data + 1, size - 1, step ? step : 1);
	} else {
		feed(sock, data, size, step);
	}
	proxy_engine_close(&eng);
	while (eng.handles)
		uv_run(&loop, UV_RUN_NOWAIT);
	proxy_engine_final(&eng);
	proxy_sock_mem_free(sock);
	if (up_sock)
		proxy_sock_mem_free(up_sock);
	return 0;
}
