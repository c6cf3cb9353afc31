/*
 * proxy_pool.c: idle keep-alive connections, per upstream (keyed by address
 * and TLS identity), at most pool_max_idle each, each closed after
 * pool_idle_timeout. The most recently used connection is handed out first:
 * it is the likeliest to be alive, and the rest age out.
 */
#include <stdlib.h>

#include "proxy_priv.h"

struct pool_bucket {
	struct proxy_link link; /* pool->buckets */
	struct proxy_link idle; /* oldest first */
	size_t n;
	proxy_upstream_t up;
};

struct proxy_pool {
	proxy_engine_t *eng;
	struct proxy_link buckets;
};

int proxy_pool_new(proxy_engine_t *eng, proxy_pool_t **out)
{
	proxy_pool_t *p = xcalloc(1, sizeof *p);
	p->eng = eng;
	plist_init(&p->buckets);
	*out = p;
	return 0;
}

static struct pool_bucket *bucket_find(proxy_pool_t *p, const proxy_upstream_t *up, bool create)
{
	for (struct proxy_link *l = p->buckets.next; l != &p->buckets; l = l->next) {
		struct pool_bucket *b = plist_entry(l, struct pool_bucket, link);
		if (proxy_upstream_same(&b->up, up)) {
			/* The busiest upstreams stay at the front. */
			if (l != p->buckets.next) {
				plist_del(l);
				l->next = p->buckets.next;
				l->prev = &p->buckets;
				p->buckets.next->prev = l;
				p->buckets.next = l;
			}
			return b;
		}
	}
	if (!create)
		return NULL;
	struct pool_bucket *b = xcalloc(1, sizeof *b);
	b->up = *up;
	plist_init(&b->idle);
	plist_add_tail(&p->buckets, &b->link);
	return b;
}

proxy_up_t *proxy_pool_take(proxy_pool_t *p, const proxy_upstream_t *up)
{
	struct pool_bucket *b = bucket_find(p, up, false);
	if (!b || plist_empty(&b->idle))
		return NULL;
	struct proxy_link *l = b->idle.prev;
	plist_del(l);
	b->n--;
	return proxy_up_from_pool_link(l);
}

void proxy_pool_put(proxy_pool_t *p, proxy_up_t *u)
{
	struct pool_bucket *b = bucket_find(p, proxy_up_upstream(u), true);
	if (b->n >= p->eng->limits.pool_max_idle) {
		struct proxy_link *oldest = b->idle.next;
		plist_del(oldest);
		b->n--;
		proxy_up_close(proxy_up_from_pool_link(oldest));
	}
	plist_add_tail(&b->idle, proxy_up_pool_link(u));
	b->n++;
	proxy_up_park(u, p->eng->limits.pool_idle_timeout_ms);
}

void proxy_pool_remove(proxy_pool_t *p, proxy_up_t *u)
{
	struct pool_bucket *b = bucket_find(p, proxy_up_upstream(u), false);
	struct proxy_link *l = proxy_up_pool_link(u);
	if (!b || !plink_linked(l))
		return;
	plist_del(l);
	b->n--;
}

void proxy_pool_close(proxy_pool_t *p)
{
	if (!p)
		return;
	while (!plist_empty(&p->buckets)) {
		struct pool_bucket *b = plist_entry(p->buckets.next, struct pool_bucket, link);
		while (!plist_empty(&b->idle)) {
			struct proxy_link *l = b->idle.next;
			plist_del(l);
			proxy_up_close(proxy_up_from_pool_link(l));
		}
		plist_del(&b->link);
		free(b);
	}
}

void proxy_pool_free(proxy_pool_t *p)
{
	proxy_pool_close(p);
	free(p);
}
