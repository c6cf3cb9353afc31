/*
 * metrics.h: hutchd's counters and gauges, fed by the core and by plugins
 * through the host table, rendered in the Prometheus text format.
 */
#ifndef HUTCH_METRICS_H
#define HUTCH_METRICS_H

#include "strbuf.h"

void metrics_add(const char *name, const char *labels, double delta);
void metrics_set(const char *name, const char *labels, double value);
/* Current value, 0 if never set. */
double metrics_get(const char *name, const char *labels);
/* Appends every metric as "hutch_<name>{labels} value" lines. */
void metrics_render(strbuf_t *out);
void metrics_reset(void);

#endif
