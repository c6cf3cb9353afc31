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

void metrics_render(strbuf_t *out)
{
	pthread_mutex_lock(&g_lock);
	for (size_t i = 0; i < g_len; i++) {
		metric_t *m = &g_metrics[i];
		sb_printf(out, "hutch_%s", m->name);
		render_labels(out, m->labels);
		sb_printf(out, " %.17g\n", m->value);
	}
	pthread_mutex_unlock(&g_lock);
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
