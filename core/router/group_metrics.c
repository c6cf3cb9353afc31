/*
 * Per-group numbers for /metrics: requests by status class, how long they
 * took, what is in flight and held, replicas ready and wanted, scale
 * events. Counted in the group's own struct on the request path (no lock,
 * no lookup by name) and written out by a collector when /metrics is
 * rendered, on the same loop.
 */
#include "group_priv.h"

#include <stdio.h>

#include "strbuf.h"

/* Seconds: from a cached static file to a slow model's answer. */
static const double duration_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
					 0.1,    0.25,  0.5,    1,     2.5,  5,     10,  30};
#define N_BOUNDS (sizeof duration_bounds / sizeof duration_bounds[0])

static const char *const class_names[6] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};

static unsigned status_class(int status)
{
	return status >= 100 && status < 600 ? (unsigned)(status / 100) : 0;
}

void group_mgr_count_request(group_mgr_t *m, int status)
{
	m->router_by_class[status_class(status)]++;
}

void group_stats_request(group_t *g, int status, uint64_t total_us)
{
	g->stats.by_class[status_class(status)]++;
	metrics_hist_observe(&g->stats.duration, duration_bounds, N_BOUNDS,
			     (double)total_us / 1e6);
}

void group_stats_scaled(group_t *g, uint32_t from, uint32_t to)
{
	if (to > from)
		g->stats.scale_up++;
	else if (to < from)
		g->stats.scale_down++;
}

static void line(strbuf_t *out, const char *name, const char *labels, double v)
{
	sb_printf(out, "hutch_%s", name);
	metrics_labels_render(out, labels);
	sb_printf(out, " %.17g\n", v);
}

typedef enum family {
	F_REQUESTS, F_DURATION, F_IN_FLIGHT, F_HELD, F_HELD_TOTAL, F_HOLD_TIMEOUTS,
	F_READY, F_REPLICAS, F_WANTED, F_SCALE_EVENTS, F_COUNT
} family_t;

static const struct {
	const char *name, *type;
} families[F_COUNT] = {
	[F_REQUESTS] = {"group_requests_total", "counter"},
	[F_DURATION] = {"group_request_duration_seconds", "histogram"},
	[F_IN_FLIGHT] = {"group_requests_in_flight", "gauge"},
	[F_HELD] = {"group_requests_held", "gauge"},
	[F_HELD_TOTAL] = {"group_requests_held_total", "counter"},
	[F_HOLD_TIMEOUTS] = {"group_hold_timeouts_total", "counter"},
	[F_READY] = {"group_replicas_ready", "gauge"},
	[F_REPLICAS] = {"group_replicas", "gauge"},
	[F_WANTED] = {"group_replicas_wanted", "gauge"},
	[F_SCALE_EVENTS] = {"group_scale_events_total", "counter"},
};

static void render_one(strbuf_t *out, family_t f, const group_t *g)
{
	char labels[512], l2[600];
	snprintf(labels, sizeof labels, "tenant=%s,group=%s", g->tenant, g->spec->name);
	const char *name = families[f].name;
	uint32_t in_flight = 0, ready = 0, live = 0;
	for (const replica_t *r = g->replicas; r; r = r->next) {
		in_flight += r->in_flight;
		ready += r->state == REPLICA_READY;
		live += !r->stopping;
	}
	switch (f) {
	case F_REQUESTS:
		for (unsigned c = 0; c < 6; c++) {
			if (!g->stats.by_class[c] && c != 2 && c != 5)
				continue; /* 2xx and 5xx always: rates exist from the start */
			snprintf(l2, sizeof l2, "%s,code=%s", labels, class_names[c]);
			line(out, name, l2, (double)g->stats.by_class[c]);
		}
		break;
	case F_DURATION:
		metrics_hist_render(out, name, labels, &g->stats.duration, duration_bounds,
				    N_BOUNDS);
		break;
	case F_IN_FLIGHT: line(out, name, labels, in_flight); break;
	case F_HELD: line(out, name, labels, g->n_held); break;
	case F_HELD_TOTAL: line(out, name, labels, (double)g->stats.held_total); break;
	case F_HOLD_TIMEOUTS: line(out, name, labels, (double)g->stats.held_timeouts); break;
	case F_READY: line(out, name, labels, ready); break;
	case F_REPLICAS: line(out, name, labels, live); break;
	case F_WANTED: line(out, name, labels, g->desired); break;
	case F_SCALE_EVENTS:
		snprintf(l2, sizeof l2, "%s,direction=up", labels);
		line(out, name, l2, (double)g->stats.scale_up);
		snprintf(l2, sizeof l2, "%s,direction=down", labels);
		line(out, name, l2, (double)g->stats.scale_down);
		break;
	case F_COUNT: break;
	}
}

/* One family at a time, every group in it: the text format wants a
 * family's lines together, after its TYPE line. */
static void collect(void *data, strbuf_t *out)
{
	group_mgr_t *m = data;
	sb_append(out, "# TYPE hutch_router_requests_total counter\n");
	for (unsigned c = 0; c < 6; c++) {
		char l[32];
		snprintf(l, sizeof l, "code=%s", class_names[c]);
		if (m->router_by_class[c] || c == 2)
			line(out, "router_requests_total", l, (double)m->router_by_class[c]);
	}
	bool any = false;
	for (const group_t *g = m->groups; g; g = g->next)
		any |= !g->deleting;
	if (!any)
		return;
	for (family_t f = 0; f < F_COUNT; f++) {
		sb_printf(out, "# TYPE hutch_%s %s\n", families[f].name, families[f].type);
		for (const group_t *g = m->groups; g; g = g->next)
			if (!g->deleting)
				render_one(out, f, g);
	}
}

void group_metrics_start(group_mgr_t *m)
{
	metrics_collector_add(collect, m);
}

void group_metrics_stop(group_mgr_t *m)
{
	metrics_collector_remove(collect, m);
}
