/* Recovery at startup: records read back, running sandboxes reconnected
 * (or cleaned up, per [sandbox] on_restart), runtime and network leftovers
 * nobody owns removed. */
#include "sandbox_priv.h"
#include "runtime_call.h"

#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "net_chain.h"
#include "rundir.h"
#include "strbuf.h"

typedef struct found {
	char **ids;
	hutch_sandbox_phase_t *phases;
	size_t n;
} found_t;

static void on_found(void *data, const char *id, const hutch_sandbox_status_t *st)
{
	found_t *f = data;
	f->ids = xrealloc(f->ids, (f->n + 1) * sizeof *f->ids);
	f->phases = xrealloc(f->phases, (f->n + 1) * sizeof *f->phases);
	f->ids[f->n] = xstrdup(id);
	f->phases[f->n] = st ? st->phase : HUTCH_PHASE_UNKNOWN;
	f->n++;
}

static void cleanup_leftover(sandbox_mgr_t *m, const char *id)
{
	plugin_t *rt = m->d.plugins->runtime;
	hutch_err_t e = {0};
	rt->ops.runtime.sandbox_stop(rt->instance, id, 0, &e);
	if (rt->ops.runtime.sandbox_destroy(rt->instance, id, &e) < 0)
		log_error("leftover sandbox %s: destroy: %s", id, e.message);
	net_chain_detach(m->d.plugins, id, m->d.plugins->n_network, "leftover sandbox");
	_cleanup_free_ char *dir = xasprintf("%s/%s", m->run_root, id);
	rundir_remove(dir);
}

int sandbox_mgr_recover(sandbox_mgr_t *m, hutch_err_t *err)
{
	int r = store_list(m->d.store, KIND, NULL, sandbox_record_load, m, err);
	if (r < 0)
		return r;
	plugin_t *rt = m->d.plugins->runtime;
	found_t f = {0};
	r = rt->ops.runtime.sandbox_list(rt->instance, on_found, &f, err);
	if (r < 0)
		return hutch_err_prefix(err, "recover: %s: list", rt->name);
	bool cleanup = strcmp(m->d.cfg->sandbox.on_restart, "cleanup") == 0;
	int recovered = 0, lost = 0, orphans = 0;

	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (!sandbox_state_live(sb->state))
			continue;
		hutch_sandbox_status_t st;
		hutch_err_t e = {0};
		bool running = runtime_sandbox_status(rt, sb->id, &st, &e) == 0 &&
			       st.phase == HUTCH_PHASE_RUNNING;
		if (running && !cleanup && sb->state == SANDBOX_RUNNING &&
		    sandbox_reattach(sb, &e) == 0) {
			snprintf(sb->netns_path, sizeof sb->netns_path, "%s", st.netns_path);
			if (sandbox_ports_start(sb, &e) < 0)
				log_warn("sandbox %s: ports not restored: %s", sb->id, e.message);
			sandbox_timers_start(sb);
			recovered++;
			continue;
		}
		if (running && !cleanup)
			log_warn("sandbox %s: cannot reconnect (%s); stopping it", sb->id, e.message);
		cleanup_leftover(m, sb->id);
		sb->state = cleanup ? SANDBOX_STOPPED
				    : SANDBOX_FAILED;
		sandbox_str_set(&sb->reason, cleanup ? "stopped at daemon restart (on_restart = cleanup)"
				     : running ? "could not be reconnected after a daemon restart"
					       : "lost while hutchd was down");
		sb->oom_killed = st.oom_killed;
		sb->stopped_ms = now_ms();
		sandbox_persist(sb);
		lost++;
	}
	/* Runtime state nobody owns: a crash between create and record. */
	for (size_t i = 0; i < f.n; i++) {
		sandbox_t *sb = sandbox_find(m, NULL, f.ids[i]);
		if (!sb || !sandbox_state_live(sb->state)) {
			log_warn("removing leftover sandbox %s", f.ids[i]);
			cleanup_leftover(m, f.ids[i]);
			orphans++;
		}
		free(f.ids[i]);
	}
	free(f.ids);
	free(f.phases);
	/* Network leftovers of sandboxes that are gone. */
	char **live = NULL;
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state))
			strv_push(&live, xstrdup(sb->id));
	for (size_t i = 0; i < m->d.plugins->n_network; i++) {
		plugin_t *p = m->d.plugins->network[i];
		hutch_err_t e = {0};
		if (p->ops.network.gc && p->ops.network.gc(p->instance, (const char *const *)live,
							  strv_len(live), &e) < 0)
			log_warn("%s: gc: %s", p->name, e.message);
	}
	strv_free(live);
	if (recovered || lost || orphans)
		log_info("recovery: %d sandboxes reconnected, %d lost or cleaned up, %d leftovers removed",
			 recovered, lost, orphans);
	return 0;
}
