/*
 * group_priv.h: the scaling groups' parts (internal to core/router).
 *
 *   group_mgr.c       the registry: deploy, scale, delete, store, recovery,
 *                     the tick, events
 *   group_replicas.c  the reconciler: start, replace, roll out, drain, stop
 *   group_probe.c     readiness: the port answers HTTP
 *   group_scale.c     the autoscaler's windows
 *   group_hold.c      picking a replica, holding requests for one
 *   group_metrics.c   per-group counters and histograms for /metrics
 *
 * Lifetimes: a replica is freed only when its sandbox is gone (created and
 * stopped, or failed to create); a deleted group is freed when its last
 * replica is. Callbacks of sandbox operations find their replica through
 * the pointer they were given, never the other way round.
 */
#ifndef HUTCH_GROUP_PRIV_H
#define HUTCH_GROUP_PRIV_H

#include "group.h"
#include "metrics.h"

#define GROUP_SAMPLES_MAX 4096

typedef struct group_probe group_probe_t;

struct replica {
	group_t *g;
	sandbox_t *sb;         /* referenced; NULL while being created */
	char id[64];           /* the sandbox's id, once known */
	int64_t revision;
	replica_state_t state;
	uint32_t in_flight;
	proxy_upstream_t up;
	char upstream[64];     /* "127.0.0.1:port", as the proxy names it */
	group_probe_t *probe;  /* readiness probe in progress */
	int64_t started_ms;
	int64_t expires_unix_ms; /* its sandbox's end of lifetime; 0: not known */
	int64_t lifetime_ms;
	bool retiring;         /* near that end: replaced, then drained */
	bool stopping;         /* sandbox_stop asked; freed in its callback */
	replica_t *next;
};

typedef struct group_held {
	proxy_route_t *route;
	int64_t deadline_ms;
	struct group_held *next;
} group_held_t;

struct group_watch {
	group_t *g;
	group_event_cb cb;
	void *data;
	group_watch_t *next;
};

/* What /metrics shows of a group (group_metrics.c). */
typedef struct group_stats {
	uint64_t by_class[6];  /* [0]: no response; [1..5]: 1xx..5xx */
	uint64_t held_total;   /* requests that waited for a replica */
	uint64_t held_timeouts; /* ... and got 503 instead */
	uint64_t scale_up, scale_down;
	metrics_hist_t duration; /* seconds, head received -> last byte */
} group_stats_t;

struct group {
	group_mgr_t *m;
	char *tenant;
	group_spec_t *spec;
	int64_t revision, created_ms;
	replica_t *replicas;
	uint32_t desired;
	uint64_t requests, errors;
	int64_t last_request_ms;
	group_held_t *held;    /* oldest first */
	uint32_t n_held;
	/* autoscaler: time-weighted concurrency since the last tick, and one
	 * sample per tick (a ring) */
	double area;
	int64_t area_since_us;
	int64_t sample_since_us;
	uint32_t level;        /* in flight + held, now */
	double samples[GROUP_SAMPLES_MAX];
	size_t n_samples, pos;
	int64_t panic_until_ms;
	group_watch_t *watchers;
	group_stats_t stats;
	bool deleting;
	group_t *next;
};

struct group_mgr {
	group_mgr_deps_t d;
	group_t *groups;
	uv_timer_t tick;
	uv_timer_t kick; /* held requests looked at again, outside the proxy's calls */
	bool closing;
	uint64_t rng;
	uint64_t router_by_class[6]; /* every request the router answered */
};

int64_t group_now_ms(void);
/* Reconciles every group and lets held requests go, on the next loop turn
 * (not inside the proxy's callbacks). */
void group_kick(group_mgr_t *m);
void group_event(group_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* group_replicas.c */
void group_reconcile(group_t *g);
/* how: what told ("its port accepts (its agent said)", ...) */
void replica_ready(replica_t *r, const char *how);
void replica_failed(replica_t *r, const char *why);
/* Remembers when r's sandbox ends (rec: its view). */
void replica_note_lifetime(replica_t *r, const sandbox_record_t *rec);
/* Frees g when it is deleted and has no replica left; true if freed. */
bool group_maybe_free(group_t *g);

/* group_probe.c */
void group_probe_start(replica_t *r);
void group_probe_cancel(replica_t *r);

/* group_scale.c */
void group_level_add(group_t *g, int delta);
void group_autoscale(group_t *g);

/* group_metrics.c */
void group_metrics_start(group_mgr_t *m);
void group_metrics_stop(group_mgr_t *m);
void group_stats_request(group_t *g, int status, uint64_t total_us);
/* A change of the desired count (autoscaler, scale from zero). */
void group_stats_scaled(group_t *g, uint32_t from, uint32_t to);

/* group_hold.c */
void group_hold_drain(group_t *g);
void group_hold_expire(group_t *g, bool all);

#endif
