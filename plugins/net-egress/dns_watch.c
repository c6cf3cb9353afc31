/*
 * dns_watch.c: denied names, kept resolved.
 *
 * The addresses of a denied hostname are shunned (dropped before anything
 * allows them) once they were answered for it. A sandbox that never asks
 * for the name could still reach the host by its address, when its policy
 * is open (allow_all), allows a prefix holding it, or allows another name
 * that shares it. So the resolver itself looks up every exact denied name
 * of each sandbox (A and AAAA; a wildcard names no one host to look up)
 * when the sandbox's rules change, and again at half the answers' life,
 * and learns the answers as the sandbox's own: their addresses are
 * shunned, with the same expiry. Every exact denied name is looked up,
 * however many there are (a round asks them a few at a time, see
 * watch_pump), and an answer too large for UDP is asked again over TCP,
 * so no address of a denied name is left out. Attach waits for the first round, so a
 * new sandbox starts with them in place; a policy change does not wait
 * (its other parts apply at once, these within a round trip upstream).
 *
 * Resolver thread only, but eg_dns_watch_wait.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "dns_resolver.h"

#define WATCH_INTERVAL_MS 1000
#define WATCH_RETRY_MS 5000

static void on_watch_timer(uv_timer_t *t)
{
	dns_watch_run(t->data);
}

void dns_watch_start(eg_dns_t *dns)
{
	uv_timer_init(&dns->loop, &dns->watch);
	dns->watch.data = dns;
	uv_timer_start(&dns->watch, on_watch_timer, WATCH_INTERVAL_MS, WATCH_INTERVAL_MS);
	uv_unref((uv_handle_t *)&dns->watch);
}

static void watch_names_free(eg_sandbox_t *sb)
{
	strv_free(sb->watch_names);
	sb->watch_names = NULL;
	sb->watch_n = sb->watch_next = 0;
}

static void round_end(eg_dns_t *dns, eg_sandbox_t *sb)
{
	const eg_config_t *c = dns->in->cfg;
	int64_t now = eg_now_ms();
	sb->watch_active = false;
	watch_names_free(sb);
	if (sb->watch_failed) {
		sb->watch_next_ms = now + WATCH_RETRY_MS;
	} else {
		int64_t life = (int64_t)sb->watch_min_ttl * 1000;
		if (life < c->ttl_min_ms)
			life = c->ttl_min_ms;
		if (c->ttl_max_ms && life > c->ttl_max_ms)
			life = c->ttl_max_ms;
		sb->watch_next_ms = now + (life > 2000 ? life / 2 : 1000);
	}
	pthread_mutex_lock(&sb->lock);
	sb->watch_gen = sb->watch_round;
	bool newer = sb->rules_gen != sb->watch_round;
	pthread_cond_broadcast(&sb->watch_cond);
	pthread_mutex_unlock(&sb->lock);
	if (newer) /* the rules changed during the round */
		uv_async_send(&dns->kick);
}

static void query_done(eg_dns_t *dns, eg_sandbox_t *sb, bool ok, uint32_t min_ttl, void *data);

/* Asks for the round's next names, as many as the limits on the
 * resolver's own queries let it (per sandbox, and in all, so a long
 * list neither floods the upstream nor crowds out the sandboxes' own
 * queries); the rest wait for answers, or for the next tick. Every name
 * is asked in the end: none is left out. */
static void watch_pump(eg_dns_t *dns, eg_sandbox_t *sb)
{
	if (!sb->watch_active || sb->watch_pumping)
		return;
	sb->watch_pumping = true; /* a query may end at once, inside */
	while (sb->watch_next < sb->watch_n && sb->watch_inflight + 2 <= WATCH_MAX_INFLIGHT &&
	       dns->n_own + 2 <= DNS_MAX_OWN_PENDING) {
		const char *name = sb->watch_names[sb->watch_next++];
		sb->watch_inflight += 2; /* counted before either starts */
		dns_query_own(dns, sb, name, DNS_TYPE_A, query_done, NULL);
		dns_query_own(dns, sb, name, DNS_TYPE_AAAA, query_done, NULL);
	}
	sb->watch_pumping = false;
	if (sb->watch_inflight == 0 && sb->watch_next == sb->watch_n)
		round_end(dns, sb);
}

static void query_done(eg_dns_t *dns, eg_sandbox_t *sb, bool ok, uint32_t min_ttl, void *data)
{
	(void)data;
	if (!ok)
		sb->watch_failed = true;
	else if (min_ttl && (!sb->watch_min_ttl || min_ttl < sb->watch_min_ttl))
		sb->watch_min_ttl = min_ttl;
	sb->watch_inflight--;
	watch_pump(dns, sb);
}

/* The exact names among rules' denied patterns: every one of them. */
static char **exact_denies(const eg_rules_t *r, size_t *n)
{
	char **v = NULL;
	*n = 0;
	for (size_t i = 0; i < r->n_deny_hosts; i++) {
		if (r->deny_hosts[i].pattern[0] == '*')
			continue;
		strv_push(&v, xstrdup(r->deny_hosts[i].pattern));
		(*n)++;
	}
	return v;
}

void dns_watch_run(eg_dns_t *dns)
{
	size_t n;
	eg_sandbox_t **v = eg_registry_list(dns->in, &n);
	int64_t now = eg_now_ms();
	for (size_t i = 0; i < n; i++) {
		eg_sandbox_t *sb = v[i];
		if (sb->watch_active) {
			watch_pump(dns, sb); /* names still waiting for room */
			continue;
		}
		pthread_mutex_lock(&sb->lock);
		uint64_t gen = sb->rules_gen;
		bool due = !sb->dead && (gen != sb->watch_round ||
					 (sb->watch_next_ms && now >= sb->watch_next_ms));
		size_t n_names = 0;
		char **names = due ? exact_denies(sb->rules, &n_names) : NULL;
		pthread_mutex_unlock(&sb->lock);
		if (!due)
			continue;
		sb->watch_round = gen;
		sb->watch_failed = false;
		sb->watch_min_ttl = 0;
		if (!n_names) {
			sb->watch_next_ms = 0; /* nothing to refresh */
			pthread_mutex_lock(&sb->lock);
			sb->watch_gen = gen;
			pthread_cond_broadcast(&sb->watch_cond);
			pthread_mutex_unlock(&sb->lock);
			continue;
		}
		sb->watch_names = names;
		sb->watch_n = n_names;
		sb->watch_next = 0;
		sb->watch_active = true;
		watch_pump(dns, sb);
	}
	eg_registry_list_free(v, n);
}

int eg_dns_watch_wait(eg_dns_t *dns, eg_sandbox_t *sb, int64_t timeout_ms)
{
	(void)dns;
	struct timespec deadline;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (timeout_ms % 1000) * 1000000;
	if (deadline.tv_nsec >= 1000000000) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000;
	}
	int r = 0;
	pthread_mutex_lock(&sb->lock);
	uint64_t want = sb->rules_gen;
	while (sb->watch_gen < want && !sb->dead && r == 0)
		if (pthread_cond_timedwait(&sb->watch_cond, &sb->lock, &deadline) == ETIMEDOUT)
			r = -ETIMEDOUT;
	pthread_mutex_unlock(&sb->lock);
	return r;
}
