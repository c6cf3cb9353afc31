/* Stop: the runtime stops and destroys the sandbox, its network is
 * detached and its files go; the reason (request, expiry, OOM, death) is
 * recorded. Also await_end and delete. */
#include "sandbox_priv.h"
#include "runtime_call.h"

#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "rundir.h"
#include "strbuf.h"

/* Tells everyone waiting for the sandbox to stop that it has. */
void sandbox_waiters_fire(sandbox_t *sb)
{
	waiter_t *w = sb->stop_waiters;
	sb->stop_waiters = NULL;
	while (w) {
		waiter_t *next = w->next;
		if (w->cb)
			w->cb(w->data, sb, NULL);
		free(w);
		w = next;
	}
}

typedef struct stop_job {
	uv_work_t req;
	sandbox_t *sb;
	int64_t grace_ms;
	bool oom;
	bool was_running;
} stop_job_t;

static void stop_work(uv_work_t *req)
{
	stop_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	plugin_t *rt = sb->m->d.plugins->runtime;
	hutch_err_t e = {0};
	hutch_sandbox_status_t st;
	if (runtime_sandbox_status(rt, sb->id, &st, &e) == 0) {
		j->oom = st.oom_killed;
		j->was_running = st.phase == HUTCH_PHASE_RUNNING;
	}
	if (rt->ops.runtime.sandbox_stop(rt->instance, sb->id, j->grace_ms, &e) < 0)
		log_warn("sandbox %s: %s: stop: %s", sb->id, rt->name, e.message);
	if (!j->oom && runtime_sandbox_status(rt, sb->id, &st, &e) == 0)
		j->oom = st.oom_killed;
	if (rt->ops.runtime.sandbox_destroy(rt->instance, sb->id, &e) < 0)
		log_error("sandbox %s: %s: destroy: %s", sb->id, rt->name, e.message);
	plugin_t *idp = sb->m->d.plugins->identity;
	if (idp && idp->ops.identity.subject_revoke)
		idp->ops.identity.subject_revoke(idp->instance, sb->id);
	sandbox_network_detach(sb);
	rundir_remove(sb->run_dir);
}

static void stop_done(uv_work_t *req, int status)
{
	stop_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	(void)status;
	sb->m->jobs--;
	sb->busy = false;
	sb->state = sb->stop_final;
	if (sb->m->images.release) /* images (issue 5): its layers may go */
		sb->m->images.release(sb->m->images.data, &sb->image);
	if (j->oom) {
		sb->oom_killed = true;
		if (sb->state == SANDBOX_FAILED ||
		    !sb->stop_reason) {
			char why[128];
			snprintf(why, sizeof why, "out of memory: killed at its %lld MiB limit",
				 (long long)(sb->spec->memory_bytes >> 20));
			sandbox_str_set(&sb->stop_reason, why);
			sb->state = SANDBOX_FAILED;
		}
	}
	if (!sb->stop_reason)
		sandbox_str_set(&sb->stop_reason, sb->state == SANDBOX_FAILED
						  ? "sandbox exited unexpectedly" : "stopped on request");
	sandbox_str_set(&sb->reason, sb->stop_reason);
	sb->stopped_ms = now_ms();
	sandbox_persist(sb);
	if (sb->has_secrets) {
		sb->m->d.secrets.forget(sb->m->d.secrets.data, sb->id);
		sb->has_secrets = false;
	}
	metrics_add("sandboxes_stopped_total", NULL, 1);
	if (sb->delete_after_stop && !sb->forgotten) {
		hutch_err_t e2 = {0};
		store_delete(sb->m->d.store, KIND, sb->id, &e2);
		sb->forgotten = true;
		sandbox_list_remove(sb->m, sb);
		sandbox_timers_close(sb);
		sandbox_unref(sb); /* the list's */
	}
	log_info("sandbox %s %s (%s)", sb->id, sandbox_state_word(sb->state), sb->reason);
	sandbox_waiters_fire(sb);
	sandbox_unref(sb);
	free(j);
}

void sandbox_stop_internal(sandbox_t *sb, int64_t grace_ms, sandbox_state_t final,
			  const char *reason, sandbox_done_cb cb, void *data)
{
	if (!sandbox_state_live(sb->state)) {
		if (cb)
			cb(data, sb, NULL);
		return;
	}
	if (cb) {
		waiter_t *w = xcalloc(1, sizeof *w);
		w->cb = cb;
		w->data = data;
		w->next = sb->stop_waiters;
		sb->stop_waiters = w;
	}
	if (sb->stop_requested && sb->state == SANDBOX_STOPPING)
		return; /* already on its way */
	if (!sb->stop_requested) {
		sb->stop_requested = true;
		sb->stop_final = final;
		sb->stop_grace_ms = grace_ms > 0 ? grace_ms : sb->m->d.cfg->sandbox.stop_grace_ms;
		sandbox_str_set(&sb->stop_reason, reason);
	}
	if (sb->busy)
		return; /* the create in flight runs the stop when done */
	sb->state = SANDBOX_STOPPING;
	sandbox_persist(sb);
	if (sb->timers_init) {
		uv_timer_stop(&sb->life_timer);
		uv_timer_stop(&sb->idle_timer);
	}
	sandbox_ports_stop(sb);
	if (sb->agent) {
		char why[300];
		snprintf(why, sizeof why, "sandbox %s is stopping%s%s%s", sb->id,
			 sb->stop_reason ? " (" : "", sb->stop_reason ? sb->stop_reason : "",
			 sb->stop_reason ? ")" : "");
		agent_conn_close(sb->agent, why);
	}
	stop_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->grace_ms = sb->stop_grace_ms;
	sb->busy = true;
	sandbox_ref(sb);
	sb->m->jobs++;
	if (uv_queue_work(sb->m->d.loop, &j->req, stop_work, stop_done) < 0) {
		sb->m->jobs--;
		sb->busy = false;
		sandbox_unref(sb);
		free(j);
	}
}

void sandbox_stop(sandbox_t *sb, int64_t grace_ms, sandbox_done_cb cb, void *data)
{
	sandbox_stop_internal(sb, grace_ms, SANDBOX_STOPPED,
		      "stopped on request", cb, data);
}

void sandbox_await_end(sandbox_t *sb, sandbox_done_cb cb, void *data)
{
	/* As agent_closed ends it: whichever comes first, the sandbox's end
	 * keeps its own reason. */
	sandbox_stop_internal(sb, 0, SANDBOX_FAILED, NULL, cb, data);
}

int sandbox_delete(sandbox_t *sb, hutch_err_t *err)
{
	if (sandbox_state_live(sb->state) || sb->busy)
		return hutch_err_set(err, EBUSY, "sandbox %s is %s: stop it first", sb->id,
				     sandbox_state_word(sb->state));
	hutch_err_t e2 = {0};
	store_delete(sb->m->d.store, KIND, sb->id, &e2);
	sb->forgotten = true;
	sandbox_list_remove(sb->m, sb);
	sandbox_timers_close(sb);
	sandbox_unref(sb);
	return 0;
}
