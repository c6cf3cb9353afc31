/*
 * Picking a replica (power of two choices on requests in flight, with a
 * per-replica cap) and holding requests that no replica can take yet: the
 * group is at zero, its replicas are starting, or every one is at its cap.
 * Held requests count as load for the autoscaler, leave in order as
 * replicas free up or become ready, and get 503 with Retry-After when the
 * queue is full or [router] hold_timeout passes.
 */
#include "group_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static uint32_t rng_next(group_mgr_t *m)
{
	uint64_t x = m->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	m->rng = x;
	return (uint32_t)(x >> 32);
}

/* exclude: a replica not to pick (one that just failed), or NULL. */
static replica_t *pick(group_t *g, const replica_t *exclude)
{
	replica_t *cand[128];
	size_t n = 0;
	for (replica_t *r = g->replicas; r && n < 128; r = r->next)
		if (r != exclude && r->state == REPLICA_READY && !r->stopping &&
		    r->in_flight < g->spec->max_concurrency)
			cand[n++] = r;
	if (!n)
		return NULL;
	replica_t *a = cand[rng_next(g->m) % n];
	replica_t *b = cand[rng_next(g->m) % n];
	return b->in_flight < a->in_flight ? b : a;
}

replica_t *group_pick(group_t *g, proxy_upstream_t *up)
{
	/* Requests already waiting go first. */
	if (g->held)
		return NULL;
	replica_t *r = pick(g, NULL);
	if (!r)
		return NULL;
	r->in_flight++;
	group_level_add(g, 1);
	g->last_request_ms = group_now_ms();
	*up = r->up;
	return r;
}

bool group_mgr_repick(group_mgr_t *m, const proxy_upstream_t *failed, proxy_upstream_t *up)
{
	/* The route holds a copy of the replica's parsed upstream. */
	for (group_t *g = m->groups; g; g = g->next)
		for (replica_t *r = g->replicas; r; r = r->next) {
			if (!r->in_flight || r->up.addr_len != failed->addr_len ||
			    memcmp(&r->up.addr, &failed->addr, failed->addr_len) != 0)
				continue;
			replica_t *other = pick(g, r);
			if (!other)
				return false; /* the request stays counted on r */
			r->in_flight--;
			other->in_flight++;
			*up = other->up;
			if (r->state == REPLICA_DRAINING && !r->in_flight)
				group_kick(m);
			return true;
		}
	return false;
}

void group_request_done(group_t *g, const proxy_log_t *e, char *replica, size_t cap)
{
	const char *upstream = e->upstream;
	g->requests++;
	g->errors += e->status == 0 || e->status >= 500;
	group_stats_request(g, e->status, e->total_us);
	if (cap)
		replica[0] = '\0';
	if (!upstream || !upstream[0])
		return;
	for (replica_t *r = g->replicas; r; r = r->next)
		if (r->in_flight && strcmp(r->upstream, upstream) == 0) {
			if (cap)
				snprintf(replica, cap, "%s", r->id);
			r->in_flight--;
			group_level_add(g, -1);
			/* A drained replica can stop now; a held request can go. */
			if ((r->state == REPLICA_DRAINING && !r->in_flight) || g->held)
				group_kick(g->m);
			break;
		}
}

static void answer_503(proxy_route_t *route, const char *why)
{
	proxy_route_response_header(route, "Retry-After", "1");
	proxy_route_local(route, 503, "text/plain", why, strlen(why));
}

bool group_hold(group_t *g, proxy_route_t *route)
{
	const router_section_t *cfg = g->m->d.cfg;
	g->last_request_ms = group_now_ms();
	if (g->n_held >= (uint64_t)cfg->hold_queue) {
		answer_503(route, "service busy: too many requests waiting for a replica\n");
		return false;
	}
	group_held_t *h = xcalloc(1, sizeof *h);
	h->route = route;
	h->deadline_ms = g->last_request_ms + cfg->hold_timeout_ms;
	group_held_t **p = &g->held;
	while (*p)
		p = &(*p)->next;
	*p = h;
	g->n_held++;
	g->stats.held_total++;
	group_level_add(g, 1);
	if (g->desired == 0) {
		group_stats_scaled(g, 0, 1);
		g->desired = 1;
		group_event(g, "scaling from zero for a request");
		group_kick(g->m);
	}
	return true;
}

static group_held_t *pop(group_t *g)
{
	group_held_t *h = g->held;
	g->held = h->next;
	g->n_held--;
	group_level_add(g, -1);
	return h;
}

void group_hold_drain(group_t *g)
{
	while (g->held) {
		replica_t *r = pick(g, NULL);
		if (!r)
			return;
		group_held_t *h = pop(g);
		r->in_flight++;
		group_level_add(g, 1);
		proxy_route_forward(h->route, &r->up);
		proxy_route_done(h->route);
		free(h);
	}
}

void group_hold_expire(group_t *g, bool all)
{
	int64_t now = group_now_ms();
	while (g->held && (all || g->held->deadline_ms <= now)) {
		group_held_t *h = pop(g);
		g->stats.held_timeouts++;
		answer_503(h->route, all ? "service going away\n"
					 : "service unavailable: no replica became ready in time\n");
		proxy_route_done(h->route);
		free(h);
	}
}

bool group_unhold(group_mgr_t *m, proxy_route_t *route)
{
	for (group_t *g = m->groups; g; g = g->next)
		for (group_held_t **p = &g->held; *p; p = &(*p)->next)
			if ((*p)->route == route) {
				group_held_t *h = *p;
				*p = h->next;
				g->n_held--;
				group_level_add(g, -1);
				free(h);
				return true;
			}
	return false;
}
