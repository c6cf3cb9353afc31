#include "metrics.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct metric {
	char *name;
	char *labels; /* "" when none */
	double value;
	bool counter;
} metric_t;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static metric_t *g_metrics;
static size_t g_len, g_cap;

static bool valid_name(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static metric_t *find_locked(const char *name, const char *labels, bool create)
{
	const char *l = labels ? labels : "";
	for (size_t i = 0; i < g_len; i++)
		if (strcmp(g_metrics[i].name, name) == 0 && strcmp(g_metrics[i].labels, l) == 0)
			return &g_metrics[i];
	if (!create)
		return NULL;
	if (g_len == g_cap) {
		g_cap = g_cap ? g_cap * 2 : 32;
		g_metrics = xrealloc(g_metrics, g_cap * sizeof *g_metrics);
	}
	metric_t *m = &g_metrics[g_len++];
	m->name = xstrdup(name);
	m->labels = xstrdup(l);
	m->value = 0;
	m->counter = false;
	return m;
}

void metrics_add(const char *name, const char *labels, double delta)
{
	if (!valid_name(name) || delta < 0)
		return;
	pthread_mutex_lock(&g_lock);
	metric_t *m = find_locked(name, labels, true);
	m->value += delta;
	m->counter = true;
	pthread_mutex_unlock(&g_lock);
}

void metrics_set(const char *name, const char *labels, double value)
{
	if (!valid_name(name))
		return;
	pthread_mutex_lock(&g_lock);
	metric_t *m = find_locked(name, labels, true);
	m->value = value;
	pthread_mutex_unlock(&g_lock);
}

double metrics_get(const char *name, const char *labels)
{
	pthread_mutex_lock(&g_lock);
	metric_t *m = find_locked(name, labels, false);
	double v = m ? m->value : 0;
	pthread_mutex_unlock(&g_lock);
	return v;
}

/* labels "k=v,k2=v2" -> {k="v",k2="v2"} */
static void render_labels(strbuf_t *out, const char *labels)
{
	if (!*labels)
		return;
	sb_putc(out, '{');
	const char *p = labels;
	bool first = true;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		const char *eq = memchr(p, '=', n);
		if (eq) {
			if (!first)
				sb_putc(out, ',');
			first = false;
			sb_append_n(out, p, (size_t)(eq - p));
			sb_append(out, "=\"");
			for (const char *c = eq + 1; c < p + n; c++) {
				if (*c == '"' || *c == '\\')
					sb_putc(out, '\\');
				if (*c == '\n')
					sb_append(out, "\\n");
				else
					sb_putc(out, *c);
			}
			sb_putc(out, '"');
		}
		p += n;
		if (*p == ',')
			p++;
	}
	sb_putc(out, '}');
}

typedef struct collector {
	metrics_collect_cb cb;
	void *data;
} collector_t;

static collector_t *g_collectors;
static size_t g_n_collectors;

void metrics_collector_add(metrics_collect_cb cb, void *data)
{
	pthread_mutex_lock(&g_lock);
	g_collectors = xrealloc(g_collectors, (g_n_collectors + 1) * sizeof *g_collectors);
	g_collectors[g_n_collectors++] = (collector_t){cb, data};
	pthread_mutex_unlock(&g_lock);
}

void metrics_collector_remove(metrics_collect_cb cb, void *data)
{
	pthread_mutex_lock(&g_lock);
	for (size_t i = 0; i < g_n_collectors; i++)
		if (g_collectors[i].cb == cb && g_collectors[i].data == data) {
			memmove(&g_collectors[i], &g_collectors[i + 1],
				(g_n_collectors - i - 1) * sizeof *g_collectors);
			g_n_collectors--;
			break;
		}
	if (!g_n_collectors) {
		free(g_collectors);
		g_collectors = NULL;
	}
	pthread_mutex_unlock(&g_lock);
}

void metrics_labels_render(strbuf_t *out, const char *labels)
{
	render_labels(out, labels ? labels : "");
}

void metrics_hist_observe(metrics_hist_t *h, const double *bounds, size_t n_bounds, double v)
{
	if (n_bounds > METRICS_HIST_MAX)
		n_bounds = METRICS_HIST_MAX;
	size_t i = 0;
	while (i < n_bounds && v > bounds[i])
		i++;
	h->counts[i]++;
	h->sum += v;
	h->count++;
}

void metrics_hist_render(strbuf_t *out, const char *name, const char *labels,
			 const metrics_hist_t *h, const double *bounds, size_t n_bounds)
{
	if (n_bounds > METRICS_HIST_MAX)
		n_bounds = METRICS_HIST_MAX;
	const char *l = labels ? labels : "";
	uint64_t cum = 0;
	for (size_t i = 0; i <= n_bounds; i++) {
		cum += h->counts[i];
		char le[64];
		if (i < n_bounds)
			snprintf(le, sizeof le, "%s%sle=%g", l, *l ? "," : "", bounds[i]);
		else
			snprintf(le, sizeof le, "%s%sle=+Inf", l, *l ? "," : "");
		sb_printf(out, "hutch_%s_bucket", name);
		render_labels(out, le);
		sb_printf(out, " %llu\n", (unsigned long long)cum);
	}
	sb_printf(out, "hutch_%s_sum", name);
	render_labels(out, l);
	sb_printf(out, " %.17g\nhutch_%s_count", h->sum, name);
	render_labels(out, l);
	sb_printf(out, " %llu\n", (unsigned long long)h->count);
}

void metrics_render(strbuf_t *out)
{
	pthread_mutex_lock(&g_lock);
	for (size_t i = 0; i < g_len; i++) {
		metric_t *m = &g_metrics[i];
		sb_printf(out, "hutch_%s", m->name);
		render_labels(out, m->labels);
		sb_printf(out, " %.17g\n", m->value);
	}
	/* A copy: a collector may take other locks, not this one. */
	size_t n = g_n_collectors;
	collector_t *cs = n ? xmalloc(n * sizeof *cs) : NULL;
	if (n)
		memcpy(cs, g_collectors, n * sizeof *cs);
	pthread_mutex_unlock(&g_lock);
	for (size_t i = 0; i < n; i++)
		cs[i].cb(cs[i].data, out);
	free(cs);
}

void metrics_reset(void)
{
	pthread_mutex_lock(&g_lock);
	for (size_t i = 0; i < g_len; i++) {
		free(g_metrics[i].name);
		free(g_metrics[i].labels);
	}
	free(g_metrics);
	g_metrics = NULL;
	g_len = g_cap = 0;
	pthread_mutex_unlock(&g_lock);
}
