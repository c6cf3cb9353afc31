/*
 * The autoscaler, after Knative's: concurrency (requests in flight on the
 * group's replicas plus requests held for one) is averaged over time
 * between ticks; the desired count is that average over the stable window
 * (60 s) divided by the target per replica. When the panic window's (6 s)
 * average asks for twice the replicas that are ready, the group panics for
 * a stable window: it scales up on the short window and never down. With
 * min_replicas 0 it goes to zero only once no request came for the
 * scaledown window.
 */
#include "group_priv.h"

#include <math.h>
#include <time.h>

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void group_level_add(group_t *g, int delta)
{
	int64_t now = now_us();
	if (g->area_since_us)
		g->area += (double)g->level * (double)(now - g->area_since_us);
	else
		g->sample_since_us = now;
	g->area_since_us = now;
	if (delta < 0 && (uint32_t)-delta > g->level)
		g->level = 0;
	else
		g->level = (uint32_t)((int64_t)g->level + delta);
}

static double window_avg(const group_t *g, size_t n)
{
	if (n > g->n_samples)
		n = g->n_samples;
	if (!n)
		return 0;
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += g->samples[(g->pos + GROUP_SAMPLES_MAX - 1 - i) % GROUP_SAMPLES_MAX];
	return sum / (double)n;
}

static size_t samples_in(int64_t window_ms, int64_t tick_ms)
{
	int64_t n = tick_ms > 0 ? window_ms / tick_ms : 1;
	if (n < 1)
		n = 1;
	return n > GROUP_SAMPLES_MAX ? GROUP_SAMPLES_MAX : (size_t)n;
}

void group_autoscale(group_t *g)
{
	const router_section_t *cfg = g->m->d.cfg;
	group_level_add(g, 0);
	int64_t now = now_us();
	double span = (double)(now - g->sample_since_us);
	double sample = span > 0 ? g->area / span : (double)g->level;
	g->area = 0;
	g->sample_since_us = now;
	g->samples[g->pos] = sample;
	g->pos = (g->pos + 1) % GROUP_SAMPLES_MAX;
	if (g->n_samples < GROUP_SAMPLES_MAX)
		g->n_samples++;

	double target = g->spec->target_concurrency;
	double stable = window_avg(g, samples_in(cfg->stable_window_ms, cfg->tick_ms));
	double panic = window_avg(g, samples_in(cfg->panic_window_ms, cfg->tick_ms));
	uint32_t ready = 0;
	for (replica_t *r = g->replicas; r; r = r->next)
		ready += r->state == REPLICA_READY;
	int64_t ms = group_now_ms();
	if (panic > 0 && panic / target >= 2.0 * (ready ? ready : 1))
		g->panic_until_ms = ms + cfg->stable_window_ms;
	bool panicking = ms < g->panic_until_ms;
	uint32_t want = (uint32_t)ceil(stable / target);
	if (panicking) {
		uint32_t p = (uint32_t)ceil(panic / target);
		want = p > g->desired ? p : g->desired;
	}
	if (g->level > 0 && want == 0)
		want = 1;
	/* Zero only after the scaledown window without a request. */
	if (want == 0 && g->desired > 0 && ms - g->last_request_ms < g->spec->scaledown_window_ms)
		want = 1;
	if (want < g->spec->min_replicas)
		want = g->spec->min_replicas;
	if (want > g->spec->max_replicas)
		want = g->spec->max_replicas;
	if (want != g->desired) {
		group_event(g, "scaled %u -> %u replicas (%s, concurrency %.1f / %.1f)", g->desired,
			    want, panicking ? "panic" : "stable", stable, panic);
		group_stats_scaled(g, g->desired, want);
		g->desired = want;
	}
}
