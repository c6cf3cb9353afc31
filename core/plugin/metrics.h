/*
 * metrics.h: hutchd's counters and gauges, fed by the core and by plugins
 * through the host table, rendered in the Prometheus text format.
 *
 * Hot paths (the router's per-request counters) do not go through the
 * named table: they keep their numbers in their own structs and register
 * a collector that writes them out when /metrics is rendered. Collectors
 * run on the thread that renders (hutchd's loop, like everything that
 * registers one).
 */
#ifndef HUTCH_METRICS_H
#define HUTCH_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

void metrics_add(const char *name, const char *labels, double delta);
void metrics_set(const char *name, const char *labels, double value);
/* Current value, 0 if never set. */
double metrics_get(const char *name, const char *labels);
/* Appends every metric as "hutch_<name>{labels} value" lines. */
void metrics_render(strbuf_t *out);
void metrics_reset(void);

typedef void (*metrics_collect_cb)(void *data, strbuf_t *out);
/* Adds a collector: cb writes complete Prometheus lines (names with the
 * hutch_ prefix) each time metrics are rendered, after the table. */
void metrics_collector_add(metrics_collect_cb cb, void *data);
void metrics_collector_remove(metrics_collect_cb cb, void *data);

/* A histogram with fixed upper bounds (ascending; +Inf is implied). */
#define METRICS_HIST_MAX 16
typedef struct metrics_hist {
	uint64_t counts[METRICS_HIST_MAX + 1]; /* per bucket (not cumulative); last: +Inf */
	double sum;
	uint64_t count;
} metrics_hist_t;

void metrics_hist_observe(metrics_hist_t *h, const double *bounds, size_t n_bounds, double v);
/* "hutch_<name>_bucket{labels,le=...}", _sum and _count lines; labels as
 * in metrics_add ("k=v,k2=v2", may be empty). */
void metrics_hist_render(strbuf_t *out, const char *name, const char *labels,
			 const metrics_hist_t *h, const double *bounds, size_t n_bounds);
/* Writes {labels} (as in metrics_add, escaped); nothing when empty. */
void metrics_labels_render(strbuf_t *out, const char *labels);

#endif
