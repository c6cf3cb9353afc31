/* Scaling groups: the registry, its store, the tick and events. */
#include "group_priv.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "log.h"
#include "route_name.h"
#include "strbuf.h"

#define KIND "scaling_group"
#define REPLICAS_MAX 64

int64_t group_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void group_spec_free(group_spec_t *s)
{
	if (!s)
		return;
	free(s->name);
	sandbox_spec_free(s->tmpl);
	free(s->readiness_path);
	free(s);
}

void group_event(group_t *g, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_info("group %s/%s: %s", g->tenant, g->spec->name, msg);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	for (group_watch_t *w = g->watchers, *next; w; w = next) {
		next = w->next; /* a watcher may remove itself */
		w->cb(w->data, now, msg);
	}
}

group_watch_t *group_watch(group_t *g, group_event_cb cb, void *data)
{
	group_watch_t *w = xcalloc(1, sizeof *w);
	w->g = g;
	w->cb = cb;
	w->data = data;
	w->next = g->watchers;
	g->watchers = w;
	return w;
}

void group_unwatch(group_watch_t *w)
{
	for (group_watch_t **p = &w->g->watchers; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	free(w);
}

/* The group is going: every watcher hears a NULL message once and is
 * forgotten (it must not unwatch then). */
static void watchers_end(group_t *g)
{
	group_watch_t *w = g->watchers;
	g->watchers = NULL;
	while (w) {
		group_watch_t *next = w->next;
		w->cb(w->data, 0, NULL);
		free(w);
		w = next;
	}
}

/* ---- validation and storage ---- */

static int spec_check(group_spec_t *s, hutch_err_t *err)
{
	if (!s->name || !route_label_valid(s->name, strlen(s->name)))
		return hutch_err_set(err, EINVAL,
				     "scaling group name `%s`: use 1 to 63 of a-z, 0-9 and `-` (it is a DNS label)",
				     s->name ? s->name : "");
	if (s->port == 0 || s->port > 65535)
		return hutch_err_set(err, EINVAL, "scaling group %s: port must be 1 to 65535", s->name);
	if (s->max_replicas == 0)
		s->max_replicas = s->min_replicas ? s->min_replicas : 1;
	if (s->min_replicas > s->max_replicas || s->max_replicas > REPLICAS_MAX)
		return hutch_err_set(err, EINVAL,
				     "scaling group %s: need min_replicas <= max_replicas <= %d", s->name,
				     REPLICAS_MAX);
	if (!s->target_concurrency)
		s->target_concurrency = 10;
	if (!s->max_concurrency)
		s->max_concurrency = 4 * s->target_concurrency;
	if (s->max_concurrency < s->target_concurrency)
		return hutch_err_set(err, EINVAL,
				     "scaling group %s: max_concurrency is below target_concurrency",
				     s->name);
	if (s->scaledown_window_ms <= 0)
		s->scaledown_window_ms = 300000;
	if (s->readiness_path && s->readiness_path[0] &&
	    (s->readiness_path[0] != '/' || strpbrk(s->readiness_path, " \r\n")))
		return hutch_err_set(err, EINVAL,
				     "scaling group %s: readiness_path must start with / and hold no spaces",
				     s->name);
	if (!s->tmpl)
		s->tmpl = xcalloc(1, sizeof *s->tmpl);
	for (size_t i = 0; i < s->tmpl->n_secrets; i++)
		if (strcmp(s->tmpl->secrets[i].source ? s->tmpl->secrets[i].source : "", "inline") == 0)
			return hutch_err_set(err, EINVAL,
					     "scaling group %s: secret `%s` is inline; a group's replicas start later, so use a stored secret (Secret.from_env / hutch secret set)",
					     s->name, s->tmpl->secrets[i].name);
	if ((s->tmpl->name && s->tmpl->name[0]) || s->tmpl->n_ports)
		return hutch_err_set(err, EINVAL,
				     "scaling group %s: the template names no sandbox and no ports (the group gives them)",
				     s->name);
	return 0;
}

static int group_store(group_t *g, hutch_err_t *err)
{
	_cleanup_free_ uint8_t *buf = NULL;
	size_t len;
	int r = g->m->d.codec->encode(g->spec, g->revision, &buf, &len, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *id = xasprintf("%s/%s", g->tenant, g->spec->name);
	return store_put(g->m->d.store, KIND, g->tenant, id, g->spec->name, buf, len, err);
}

static bool spec_same(group_mgr_t *m, const group_spec_t *a, const group_spec_t *b)
{
	_cleanup_free_ uint8_t *ba = NULL;
	_cleanup_free_ uint8_t *bb = NULL;
	size_t la, lb;
	hutch_err_t err;
	if (m->d.codec->encode(a, 0, &ba, &la, &err) < 0 ||
	    m->d.codec->encode(b, 0, &bb, &lb, &err) < 0)
		return false;
	return la == lb && memcmp(ba, bb, la) == 0;
}

static group_t *group_alloc(group_mgr_t *m, const char *tenant, group_spec_t *spec)
{
	group_t *g = xcalloc(1, sizeof *g);
	g->m = m;
	g->tenant = xstrdup(tenant);
	g->spec = spec;
	g->created_ms = store_now_ms();
	g->last_request_ms = group_now_ms();
	g->desired = spec->min_replicas;
	g->next = m->groups;
	m->groups = g;
	return g;
}

/* ---- the registry ---- */

group_t *group_find(group_mgr_t *m, const char *tenant, const char *name)
{
	for (group_t *g = m->groups; g; g = g->next)
		if (!g->deleting && strcmp(g->tenant, tenant) == 0 && strcmp(g->spec->name, name) == 0)
			return g;
	return NULL;
}

void group_each(group_mgr_t *m, const char *tenant, group_iter_cb cb, void *data)
{
	for (group_t *g = m->groups; g; g = g->next)
		if (!g->deleting && (!tenant || strcmp(g->tenant, tenant) == 0))
			cb(data, g);
}

int group_deploy(group_mgr_t *m, const char *tenant, group_spec_t *spec, group_t **out,
		 hutch_err_t *err)
{
	int r = spec_check(spec, err);
	if (r < 0) {
		group_spec_free(spec);
		return r;
	}
	group_t *g = group_find(m, tenant, spec->name);
	if (g && spec_same(m, g->spec, spec)) {
		group_spec_free(spec);
		*out = g;
		return 0;
	}
	if (g) {
		group_spec_free(g->spec);
		g->spec = spec;
		g->revision++;
		if (g->desired < spec->min_replicas)
			g->desired = spec->min_replicas;
		if (g->desired > spec->max_replicas)
			g->desired = spec->max_replicas;
		group_event(g, "revision %lld deployed: rolling out", (long long)g->revision);
	} else {
		g = group_alloc(m, tenant, spec);
		g->revision = 1;
		group_event(g, "created (min %u, max %u replicas)", spec->min_replicas,
			    spec->max_replicas);
	}
	if ((r = group_store(g, err)) < 0)
		log_warn("group %s/%s: not stored: %s", tenant, spec->name, err->message);
	group_reconcile(g);
	*out = g;
	return 0;
}

int group_scale(group_t *g, uint32_t min_replicas, uint32_t max_replicas, hutch_err_t *err)
{
	uint32_t max = max_replicas ? max_replicas : g->spec->max_replicas;
	if (max < min_replicas)
		max = min_replicas;
	if (max > REPLICAS_MAX || max == 0)
		return hutch_err_set(err, EINVAL, "scaling group %s: max_replicas must be 1 to %d",
				     g->spec->name, REPLICAS_MAX);
	g->spec->min_replicas = min_replicas;
	g->spec->max_replicas = max;
	if (g->desired < min_replicas)
		g->desired = min_replicas;
	if (g->desired > max)
		g->desired = max;
	group_event(g, "bounds now %u..%u replicas", min_replicas, max);
	int r = group_store(g, err);
	if (r < 0)
		return r;
	group_reconcile(g);
	return 0;
}

void group_delete(group_t *g)
{
	group_mgr_t *m = g->m;
	hutch_err_t err = {0};
	_cleanup_free_ char *id = xasprintf("%s/%s", g->tenant, g->spec->name);
	if (store_delete(m->d.store, KIND, id, &err) < 0)
		log_warn("group %s: stored record not removed: %s", id, err.message);
	group_event(g, "deleted");
	watchers_end(g);
	g->deleting = true;
	group_hold_expire(g, true);
	group_reconcile(g);
}

void group_view(const group_t *g, group_view_t *out)
{
	memset(out, 0, sizeof *out);
	out->spec = g->spec;
	out->tenant = g->tenant;
	out->revision = g->revision;
	out->created_ms = g->created_ms;
	out->desired = g->desired;
	out->queued = g->n_held;
	out->requests = g->requests;
	out->errors = g->errors;
	for (replica_t *r = g->replicas; r; r = r->next)
		out->n_replicas++;
	out->replicas = xcalloc(out->n_replicas ? out->n_replicas : 1, sizeof *out->replicas);
	size_t i = 0;
	for (replica_t *r = g->replicas; r; r = r->next, i++) {
		out->replicas[i] = (replica_view_t){.sandbox_id = r->id, .state = r->state,
						    .revision = r->revision, .in_flight = r->in_flight,
						    .upstream = r->upstream};
		if (r->state == REPLICA_READY)
			out->ready++;
	}
}

/* ---- the tick ---- */

static void on_tick(uv_timer_t *t)
{
	group_mgr_t *m = t->data;
	for (group_t *g = m->groups, *next; g; g = next) {
		next = g->next;
		if (!g->deleting) {
			group_autoscale(g);
			group_hold_expire(g, false);
		}
		group_reconcile(g);
		group_maybe_free(g);
	}
}

static void on_kick(uv_timer_t *t)
{
	group_mgr_t *m = t->data;
	for (group_t *g = m->groups, *next; g; g = next) {
		next = g->next;
		group_reconcile(g);
		group_hold_drain(g);
		group_maybe_free(g);
	}
}

void group_kick(group_mgr_t *m)
{
	if (!m->closing)
		uv_timer_start(&m->kick, on_kick, 0, 0);
}

/* ---- recovery: groups from the store, their live replicas adopted ---- */

typedef struct load_ctx {
	group_mgr_t *m;
} load_ctx_t;

static int load_one(void *ud, const store_obj_t *o)
{
	load_ctx_t *l = ud;
	group_spec_t *spec = NULL;
	int64_t rev = 0;
	hutch_err_t err = {0};
	if (l->m->d.codec->decode(o->data, o->len, &spec, &rev, &err) < 0) {
		log_warn("stored scaling group %s unreadable: %s", o->id, err.message);
		return 0;
	}
	group_t *g = group_alloc(l->m, o->tenant, spec);
	g->revision = rev;
	g->created_ms = o->created_ms;
	return 0;
}

static const char *label(const sandbox_spec_t *s, const char *key)
{
	for (size_t i = 0; s && i < s->n_labels; i++)
		if (strcmp(s->labels[i].key, key) == 0)
			return s->labels[i].value;
	return NULL;
}

static void adopt_one(void *data, sandbox_t *sb)
{
	group_mgr_t *m = data;
	if (sandbox_state(sb) != SANDBOX_RUNNING)
		return;
	const sandbox_spec_t *s = sandbox_spec(sb);
	const char *name = label(s, "hutch.group");
	const char *rev = label(s, "hutch.revision");
	if (!name || !rev)
		return;
	sandbox_record_t rec;
	sandbox_view(sb, &rec);
	group_t *g = group_find(m, rec.tenant, name);
	if (!g || !rec.port_addrs || !rec.port_addrs[0])
		return; /* the reconciler does not know it; left to its owner */
	replica_t *r = xcalloc(1, sizeof *r);
	r->g = g;
	r->sb = sb;
	sandbox_ref(sb);
	snprintf(r->id, sizeof r->id, "%s", sandbox_id(sb));
	r->revision = strtoll(rev, NULL, 10);
	r->state = REPLICA_STARTING;
	r->started_ms = group_now_ms();
	snprintf(r->upstream, sizeof r->upstream, "%s", rec.port_addrs[0]);
	replica_note_lifetime(r, &rec);
	hutch_err_t err;
	proxy_upstream_parse(r->upstream, &r->up, &err);
	r->next = g->replicas;
	g->replicas = r;
	group_probe_start(r);
}

int group_mgr_new(const group_mgr_deps_t *deps, group_mgr_t **out, hutch_err_t *err)
{
	group_mgr_t *m = xcalloc(1, sizeof *m);
	m->d = *deps;
	m->rng = (uint64_t)group_now_ms() * 2654435761u + 1;
	load_ctx_t l = {.m = m};
	int r = store_list(m->d.store, KIND, NULL, load_one, &l, err);
	if (r < 0) {
		free(m);
		return r;
	}
	sandbox_each(m->d.sandboxes, NULL, adopt_one, m);
	uv_timer_init(m->d.loop, &m->tick);
	m->tick.data = m;
	uv_timer_init(m->d.loop, &m->kick);
	m->kick.data = m;
	uint64_t tick = m->d.cfg->tick_ms > 0 ? (uint64_t)m->d.cfg->tick_ms : 1000;
	uv_timer_start(&m->tick, on_tick, tick, tick);
	group_metrics_start(m);
	*out = m;
	return 0;
}

void group_mgr_close(group_mgr_t *m)
{
	if (!m || m->closing)
		return;
	m->closing = true;
	group_metrics_stop(m);
	uv_timer_stop(&m->tick);
	uv_close((uv_handle_t *)&m->tick, NULL);
	uv_timer_stop(&m->kick);
	uv_close((uv_handle_t *)&m->kick, NULL);
	for (group_t *g = m->groups; g; g = g->next) {
		group_hold_expire(g, true);
		for (replica_t *r = g->replicas; r; r = r->next)
			group_probe_cancel(r);
		watchers_end(g);
	}
}

void group_mgr_free(group_mgr_t *m)
{
	if (!m)
		return;
	group_metrics_stop(m);
	while (m->groups) {
		group_t *g = m->groups;
		m->groups = g->next;
		while (g->replicas) {
			replica_t *r = g->replicas;
			g->replicas = r->next;
			if (r->sb)
				sandbox_unref(r->sb);
			free(r);
		}
		group_spec_free(g->spec);
		free(g->tenant);
		free(g);
	}
	free(m);
}
