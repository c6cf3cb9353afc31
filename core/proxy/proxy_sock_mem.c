/*
 * proxy_sock_mem.c: a proxy_sock in memory, so that a connection can be
 * driven byte by byte without sockets (the fuzz harnesses, unit tests).
 * Writes go to a sink; there is never anything queued.
 */
#include <stdlib.h>

#include "proxy_priv.h"

struct mem_sock {
	proxy_sock_t base;
	void (*sink)(void *arg, const uint8_t *d, size_t n);
	void *arg;
	bool closed;
};

static void mem_write(proxy_sock_t *b, const uv_buf_t *bufs, unsigned n)
{
	struct mem_sock *s = (struct mem_sock *)b;
	for (unsigned i = 0; i < n && !s->closed; i++)
		if (s->sink)
			s->sink(s->arg, (const uint8_t *)bufs[i].base, bufs[i].len);
}

static void mem_nop(proxy_sock_t *b)
{
}

static void mem_close(proxy_sock_t *b)
{
	struct mem_sock *s = (struct mem_sock *)b;
	s->closed = true;
	s->base.cbs = NULL;
}

static const char *mem_alpn(proxy_sock_t *b)
{
	return "";
}

static const proxy_sock_ops_t mem_ops = {
	.write = mem_write,
	.read_start = mem_nop,
	.read_stop = mem_nop,
	.close_graceful = mem_close,
	.close = mem_close,
	.alpn = mem_alpn,
};

proxy_sock_t *proxy_sock_mem_new(void (*sink)(void *arg, const uint8_t *d, size_t n), void *arg)
{
	struct mem_sock *s = xcalloc(1, sizeof *s);
	s->base.ops = &mem_ops;
	s->sink = sink;
	s->arg = arg;
	return &s->base;
}

bool proxy_sock_mem_closed(const proxy_sock_t *b)
{
	return ((const struct mem_sock *)b)->closed;
}

void proxy_sock_mem_free(proxy_sock_t *b)
{
	free(b);
}
