/*
 * proxy_engine.c: what a listener's connections share (limits, the policy,
 * the pool), the timers they use, and the count of libuv handles that lets
 * a closing listener know when the last one is gone.
 */
#include <stdlib.h>
#include <time.h>

#include "proxy_priv.h"

uint64_t proxy_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define DEFAULT(field, v)                                                      \
	do {                                                                   \
		if (!eng->limits.field)                                        \
			eng->limits.field = (v);                               \
	} while (0)

void proxy_engine_init(proxy_engine_t *eng, uv_loop_t *loop, const proxy_config_t *cfg)
{
	memset(eng, 0, sizeof *eng);
	eng->loop = loop;
	eng->limits = cfg->limits;
	DEFAULT(header_timeout_ms, 10000);
	DEFAULT(idle_timeout_ms, 60000);
	DEFAULT(connect_timeout_ms, 5000);
	DEFAULT(response_timeout_ms, 30000);
	DEFAULT(max_request_line, 8192);
	DEFAULT(max_header_bytes, 32768);
	DEFAULT(max_headers, 100);
	DEFAULT(pool_max_idle, 64);
	DEFAULT(pool_idle_timeout_ms, 30000);
	DEFAULT(h2_max_streams, 128);
	DEFAULT(upstream_read_timeout_ms, 60000);
	eng->add_forwarded = cfg->add_forwarded;
	eng->tls = cfg->tls != NULL;
	/* The policy table as we know it: a shorter (older) one reads as
	 * zero-extended, a longer one is cut to our size. */
	size_t n = cfg->policy->size < sizeof eng->policy_copy ? cfg->policy->size
							       : sizeof eng->policy_copy;
	memcpy(&eng->policy_copy, cfg->policy, n);
	eng->policy = &eng->policy_copy;
	eng->policy_data = cfg->policy_data;
	plist_init(&eng->conns);
	eng->req_head = (strbuf_t)STRBUF_INIT;
	eng->resp_lines = (strbuf_t)STRBUF_INIT;
	proxy_pool_new(eng, &eng->pool);
}

void proxy_engine_final(proxy_engine_t *eng)
{
	proxy_pool_free(eng->pool);
	eng->pool = NULL;
	proxy_exchange_spares_free(eng);
	sb_free(&eng->req_head);
	sb_free(&eng->resp_lines);
}

static void engine_maybe_done(proxy_engine_t *eng)
{
	if (eng->closing && eng->handles == 0 && eng->closed_cb) {
		void (*cb)(void *) = eng->closed_cb;
		eng->closed_cb = NULL;
		cb(eng->closed_arg);
	}
}

void proxy_engine_handle_closed(proxy_engine_t *eng)
{
	eng->handles--;
	engine_maybe_done(eng);
}

void proxy_engine_close(proxy_engine_t *eng)
{
	eng->closing = true;
	while (!plist_empty(&eng->conns)) {
		proxy_conn_base_t *c = plist_entry(eng->conns.next, proxy_conn_base_t, link);
		plist_del(&c->link);
		c->shut(c);
	}
	proxy_pool_close(eng->pool);
	proxy_exchange_spares_free(eng);
	if (eng->client_tls) {
		SSL_CTX_free(eng->client_tls);
		eng->client_tls = NULL;
	}
	engine_maybe_done(eng);
}

static void timer_fired(uv_timer_t *t);

static void timer_start(proxy_timer_t *pt, uint64_t now, uint64_t ms)
{
	uv_timer_start(&pt->t, timer_fired, ms, 0);
	pt->running = true;
	pt->uv_due = now + ms;
}

static void timer_fired(uv_timer_t *t)
{
	proxy_timer_t *pt = (proxy_timer_t *)t;
	pt->running = false;
	if (!pt->armed)
		return; /* stopped since it was started */
	uint64_t now = uv_now(t->loop);
	if (now < pt->due) { /* re-armed for later since */
		timer_start(pt, now, pt->due - now);
		return;
	}
	pt->armed = false;
	pt->fire(pt->arg);
}

static void timer_closed(uv_handle_t *h)
{
	proxy_timer_t *pt = (proxy_timer_t *)h;
	proxy_engine_t *eng = pt->eng;
	free(pt);
	proxy_engine_handle_closed(eng);
}

proxy_timer_t *proxy_timer_new(proxy_engine_t *eng, void (*fire)(void *), void *arg)
{
	proxy_timer_t *t = xcalloc(1, sizeof *t);
	uv_timer_init(eng->loop, &t->t);
	t->eng = eng;
	t->fire = fire;
	t->arg = arg;
	eng->handles++;
	return t;
}

void proxy_timer_arm(proxy_timer_t *t, uint32_t ms)
{
	uint64_t now = uv_now(t->t.loop);
	t->armed = true;
	t->due = now + ms;
	/* A libuv timer due no later fires first and re-arms for the rest. */
	if (t->running && t->uv_due <= t->due)
		return;
	timer_start(t, now, ms);
}

void proxy_timer_stop(proxy_timer_t *t)
{
	t->armed = false;
}

void proxy_timer_free(proxy_timer_t *t)
{
	if (!t)
		return;
	t->armed = false;
	uv_timer_stop(&t->t);
	uv_close((uv_handle_t *)&t->t, timer_closed);
}
