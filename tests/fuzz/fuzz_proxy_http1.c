/* Fuzzes hutch_proxy's downstream request path (core/proxy): bytes a client
 * sends, fed to a real connection object over an in-memory stream (no
 * sockets), through the sniffer (h1 or h2c), llhttp, the limits, the
 * exchange and a policy that answers locally, defers or edits headers.
 * The input's first byte picks how it is cut into reads. Checks: no crash,
 * no leak, every reply starts as an HTTP/1.x status line. */
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

static void sink(void *arg, const uint8_t *d, size_t n)
{
	struct sink_state *s = arg;
	if (s->bytes == 0 && !s->h2 && n && (n < 9 || memcmp(d, "HTTP/1.", 7) != 0))
		__builtin_trap();
	s->bytes += n;
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
	proxy_config_t cfg = {
		.listen = "mem",
		.policy = &fz_policy,
		.limits = {.max_request_line = 256, .max_header_bytes = 1024, .max_headers = 16,
			   .max_body_bytes = 4096},
		.add_forwarded = true,
	};
	proxy_engine_t eng;
	proxy_engine_init(&eng, &loop, &cfg);
	struct sink_state st = {0, size >= 3 && memcmp(data, "PRI", 3) == 0};
	proxy_sock_t *sock = proxy_sock_mem_new(sink, &st);
	proxy_conn_start(&eng, sock, "192.0.2.1");
	size_t step = cut == 64 ? size : cut;
	for (size_t off = 0; off < size && sock->cbs && !proxy_sock_mem_closed(sock); off += step) {
		size_t n = size - off < step ? size - off : step;
		sock->cbs->data(sock->owner, data + off, n);
	}
	if (sock->cbs && !proxy_sock_mem_closed(sock))
		sock->cbs->eof(sock->owner, 0);
	proxy_engine_close(&eng);
	while (eng.handles)
		uv_run(&loop, UV_RUN_NOWAIT);
	void proxy_pool_free(proxy_pool_t * p);
	proxy_pool_free(eng.pool);
	proxy_sock_mem_free(sock);
	return 0;
}
