/* The reconciler: a group's replicas toward what it should have. */
#include "group_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

static void replica_unlink(replica_t *r)
{
	for (replica_t **p = &r->g->replicas; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			return;
		}
}

bool group_maybe_free(group_t *g)
{
	if (!g->deleting || g->replicas)
		return false;
	for (group_t **p = &g->m->groups; *p; p = &(*p)->next)
		if (*p == g) {
			*p = g->next;
			break;
		}
	group_spec_free(g->spec);
	free(g->tenant);
	free(g);
	return true;
}

/* Never frees the group (this may run inside group_reconcile, from a stop
 * that completes at once): the tick frees deleted groups. */
static void replica_free(replica_t *r)
{
	group_probe_cancel(r);
	replica_unlink(r);
	if (r->sb)
		sandbox_unref(r->sb);
	free(r);
}

static void replica_stopped(void *data, sandbox_t *sb, const hutch_err_t *err)
{
	replica_t *r = data;
	(void)err;
	hutch_err_t e2 = {0};
	if (sandbox_delete(sb, &e2) < 0)
		log_debug("replica %s: %s", r->id, e2.message);
	replica_free(r);
}

static void replica_stop(replica_t *r)
{
	if (r->stopping)
		return;
	r->stopping = true;
	group_probe_cancel(r);
	if (r->state == REPLICA_READY)
		r->state = REPLICA_DRAINING;
	if (r->sb)
		sandbox_stop(r->sb, 0, replica_stopped, r);
	/* else: the create callback stops it */
}

static void replica_created(void *data, sandbox_t *sb, const hutch_err_t *err)
{
	replica_t *r = data;
	group_t *g = r->g;
	if (err) {
		if (!g->m->closing)
			group_event(g, "a replica could not start: %s", err->message);
		replica_free(r);
		return;
	}
	r->sb = sb;
	sandbox_ref(sb);
	snprintf(r->id, sizeof r->id, "%s", sandbox_id(sb));
	if (g->m->closing)
		return; /* kept running; adopted at the next start */
	if (r->stopping) {
		r->stopping = false;
		replica_stop(r);
		return;
	}
	sandbox_record_t rec;
	sandbox_view(sb, &rec);
	hutch_err_t e2 = {0};
	if (!rec.port_addrs || !rec.port_addrs[0] ||
	    proxy_upstream_parse(rec.port_addrs[0], &r->up, &e2) < 0) {
		replica_failed(r, "its port has no forward");
		return;
	}
	snprintf(r->upstream, sizeof r->upstream, "%s", rec.port_addrs[0]);
	replica_note_lifetime(r, &rec);
	group_event(g, "replica %s started (revision %lld)", r->id, (long long)r->revision);
	group_probe_start(r);
}

void replica_note_lifetime(replica_t *r, const sandbox_record_t *rec)
{
	r->expires_unix_ms = rec->expires_ms;
	r->lifetime_ms = rec->expires_ms && rec->started_ms ? rec->expires_ms - rec->started_ms : 0;
}

static void replica_start(group_t *g)
{
	group_mgr_t *m = g->m;
	sandbox_spec_t *spec = m->d.codec->spec_dup(g->spec->tmpl);
	/* A service outlives the default sandbox lifetime: replicas get the
	 * longest allowed unless the template says, are never idle (requests
	 * do not count as a sandbox's activity), and are rotated before they
	 * end (retire_expiring). */
	if (spec->lifetime_seconds == 0)
		spec->lifetime_seconds = m->d.max_lifetime_ms / 1000;
	if (spec->idle_timeout_seconds == 0)
		spec->idle_timeout_seconds = m->d.max_lifetime_ms / 1000;
	free(spec->ports);
	spec->ports = xcalloc(1, sizeof *spec->ports);
	spec->ports[0] = g->spec->port;
	spec->n_ports = 1;
	char rev[24];
	snprintf(rev, sizeof rev, "%lld", (long long)g->revision);
	spec->labels = xrealloc(spec->labels, (spec->n_labels + 2) * sizeof *spec->labels);
	spec->labels[spec->n_labels++] = (sandbox_kv_t){xstrdup("hutch.group"),
							xstrdup(g->spec->name)};
	spec->labels[spec->n_labels++] = (sandbox_kv_t){xstrdup("hutch.revision"), xstrdup(rev)};
	replica_t *r = xcalloc(1, sizeof *r);
	r->g = g;
	r->revision = g->revision;
	r->state = REPLICA_STARTING;
	r->started_ms = group_now_ms();
	r->next = g->replicas;
	g->replicas = r;
	hutch_err_t err = {0};
	if (sandbox_create(m->d.sandboxes, g->tenant, spec, replica_created, r, &err) < 0) {
		group_event(g, "a replica could not start: %s", err.message);
		replica_unlink(r);
		free(r);
	}
}

void replica_ready(replica_t *r, const char *how)
{
	group_t *g = r->g;
	r->state = REPLICA_READY;
	group_event(g, "replica %s ready after %lld ms: %s", r->id,
		    (long long)(group_now_ms() - r->started_ms), how);
	group_hold_drain(g);
	group_reconcile(g);
}

void replica_failed(replica_t *r, const char *why)
{
	group_event(r->g, "replica %s replaced: %s", r->id, why);
	replica_stop(r);
}

/* A replica whose sandbox is no longer running is replaced. */
static void reap_dead(group_t *g)
{
	for (replica_t *r = g->replicas, *next; r; r = next) {
		next = r->next;
		if (!r->sb || r->stopping)
			continue;
		sandbox_state_t s = sandbox_state(r->sb);
		if (s != SANDBOX_RUNNING) {
			const char *why = sandbox_reason(r->sb);
			char msg[256];
			snprintf(msg, sizeof msg, "its sandbox is %s%s%s", sandbox_state_word(s),
				 why ? ": " : "", why ? why : "");
			if (r->state == REPLICA_READY)
				r->state = REPLICA_DRAINING;
			replica_failed(r, msg);
		}
	}
}

/* How long before its end a replica is replaced: long enough for a new
 * one to start and the old one to finish what it has. */
static int64_t retire_margin_ms(const replica_t *r)
{
	int64_t m = r->lifetime_ms / 4;
	return m > 300000 ? 300000 : m;
}

/* A ready replica near the end of its lifetime retires: it keeps serving
 * while a replacement starts, and is drained once that one is ready (as an
 * old revision's replica is in a roll-out), so it never expires under
 * load. */
static void retire_expiring(group_t *g)
{
	int64_t now = store_now_ms();
	for (replica_t *r = g->replicas; r; r = r->next)
		if (r->state == REPLICA_READY && !r->stopping && !r->retiring && r->expires_unix_ms &&
		    now >= r->expires_unix_ms - retire_margin_ms(r)) {
			r->retiring = true;
			group_event(g, "replica %s retiring before its lifetime ends: replaced, then drained",
				    r->id);
		}
}

static bool current(const group_t *g, const replica_t *r)
{
	return r->revision == g->revision && !r->retiring;
}

void group_reconcile(group_t *g)
{
	if (g->m->closing)
		return;
	reap_dead(g);
	if (!g->deleting)
		retire_expiring(g);
	if (g->deleting) {
		for (replica_t *r = g->replicas, *next; r; r = next) {
			next = r->next;
			replica_stop(r);
		}
		return;
	}
	uint32_t want = g->desired;
	if (want < g->spec->min_replicas)
		want = g->spec->min_replicas;
	if (want > g->spec->max_replicas)
		want = g->spec->max_replicas;
	uint32_t cur_live = 0, cur_ready = 0, old_ready = 0;
	for (replica_t *r = g->replicas, *next; r; r = next) {
		next = r->next;
		if (r->stopping || r->state == REPLICA_DRAINING)
			continue;
		if (current(g, r)) {
			cur_live++;
			cur_ready += r->state == REPLICA_READY;
		} else if (r->state == REPLICA_READY) {
			old_ready++;
		} else {
			replica_stop(r); /* an old revision still starting serves nothing */
		}
	}
	for (; cur_live < want; cur_live++)
		replica_start(g);
	/* Too many of the current revision: the ones not ready go first, then
	 * ready ones are drained. */
	for (replica_t *r = g->replicas, *next; r && cur_live > want; r = next) {
		next = r->next;
		if (!r->stopping && current(g, r) && r->state == REPLICA_STARTING) {
			replica_stop(r);
			cur_live--;
		}
	}
	for (replica_t *r = g->replicas; r && cur_live > want; r = r->next)
		if (!r->stopping && current(g, r) && r->state == REPLICA_READY) {
			r->state = REPLICA_DRAINING;
			cur_live--;
			cur_ready--;
		}
	/* Rolling out: an old replica is drained only once the new ones
	 * cover what is wanted without it. */
	for (replica_t *r = g->replicas; r && old_ready && cur_ready + old_ready > want;
	     r = r->next)
		if (!r->stopping && !current(g, r) && r->state == REPLICA_READY) {
			r->state = REPLICA_DRAINING;
			group_event(g, "replica %s (revision %lld%s) draining", r->id,
				    (long long)r->revision, r->retiring ? ", retiring" : "");
			old_ready--;
		}
	for (replica_t *r = g->replicas, *next; r; r = next) {
		next = r->next;
		if (r->state == REPLICA_DRAINING && !r->stopping && r->in_flight == 0)
			replica_stop(r);
	}
}
