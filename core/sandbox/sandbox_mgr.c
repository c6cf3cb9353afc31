/* The manager: its sandboxes' list and lifetime, lookups and accessors.
 * The lifecycle's steps are in files of their own (see sandbox_priv.h). */
#include "sandbox_priv.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "strbuf.h"

unsigned sandbox_mgr_jobs(const sandbox_mgr_t *m)
{
	return (unsigned)m->jobs;
}

/* ---- images (issue 5) ---- */

void sandbox_mgr_job_hold(sandbox_mgr_t *m, int delta)
{
	m->jobs += delta;
}

void sandbox_mgr_set_image_source(sandbox_mgr_t *m, const sandbox_image_source_t *src)
{
	m->images = *src;
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state) && sb->image.digest[0] && m->images.adopt)
			m->images.adopt(m->images.data, sb->tenant, &sb->image);
}

/* ---- identifiers ---- */

/* The image's content digest for the identity claim (NULL: not known). */
const char *sandbox_image_digest(const sandbox_t *sb)
{
	return sb->image.digest[0] ? sb->image.digest : NULL;
}


/* ---- lifetime of the object ---- */

/* Frees an environment that may hold secret values: wiped first. */
void sandbox_env_free(char **env)
{
	for (char **e = env; e && *e; e++)
		memset(*e, 0, strlen(*e));
	strv_free(env);
}

void sandbox_free(sandbox_t *sb)
{
	sandbox_spec_free(sb->spec);
	sandbox_env_free(sb->env);
	strv_free(sb->addresses);
	strv_free(sb->port_addrs);
	free(sb->fwds);
	sb_free(&sb->main_log);
	free(sb->tenant);
	free(sb->name);
	free(sb->reason);
	free(sb->run_dir);
	free(sb->image_layer);
	if (sb->m->images.release) /* images (issue 5) */
		sb->m->images.release(sb->m->images.data, &sb->image);
	free(sb->stop_reason);
	free(sb->identity_dir);
	free(sb);
}

void sandbox_ref(sandbox_t *sb)
{
	sb->refs++;
}

void sandbox_unref(sandbox_t *sb)
{
	if (--sb->refs == 0)
		sandbox_free(sb);
}

void sandbox_list_remove(sandbox_mgr_t *m, sandbox_t *sb)
{
	for (sandbox_t **pp = &m->list; *pp; pp = &(*pp)->next) {
		if (*pp == sb) {
			*pp = sb->next;
			sb->next = NULL;
			return;
		}
	}
}

/* ---- accessors ---- */

const char *sandbox_id(const sandbox_t *sb)
{
	return sb->id;
}

sandbox_state_t sandbox_state(const sandbox_t *sb)
{
	return sb->state;
}

const char *sandbox_reason(const sandbox_t *sb)
{
	return sb->reason;
}

const sandbox_spec_t *sandbox_spec(const sandbox_t *sb)
{
	return sb->spec;
}

char *const *sandbox_env(const sandbox_t *sb)
{
	return sb->env;
}

const char *sandbox_workdir(const sandbox_t *sb)
{
	return sb->spec && sb->spec->workdir && *sb->spec->workdir ? sb->spec->workdir : NULL;
}

bool sandbox_oom_killed(const sandbox_t *sb)
{
	return sb->oom_killed;
}

agent_conn_t *sandbox_agent(sandbox_t *sb, hutch_err_t *err)
{
	if (sb->state == SANDBOX_RUNNING && sb->agent &&
	    agent_conn_alive(sb->agent))
		return sb->agent;
	if (sb->state == SANDBOX_RUNNING)
		hutch_err_set(err, EAGAIN, "sandbox %s is not reachable right now (its agent is restarting)",
			      sb->id);
	else
		hutch_err_set(err, EBUSY, "sandbox %s is %s%s%s%s", sb->id, sandbox_state_word(sb->state),
			      sb->reason && *sb->reason ? " (" : "", sb->reason ? sb->reason : "",
			      sb->reason && *sb->reason ? ")" : "");
	return NULL;
}

uint32_t sandbox_mgr_running_count(const sandbox_mgr_t *m, const char *tenant)
{
	uint32_t n = 0;
	for (const sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state) && (!tenant || strcmp(sb->tenant, tenant) == 0))
			n++;
	return n;
}

sandbox_t *sandbox_find(sandbox_mgr_t *m, const char *tenant, const char *id_or_name)
{
	if (!id_or_name || !*id_or_name)
		return NULL;
	sandbox_t *by_name = NULL;
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (tenant && strcmp(sb->tenant, tenant) != 0)
			continue;
		if (strcmp(sb->id, id_or_name) == 0)
			return sb;
		/* Names are unique among live sandboxes; a live one wins over
		 * older stopped ones of the same name. */
		if (sb->name && strcmp(sb->name, id_or_name) == 0 &&
		    (!by_name || (sandbox_state_live(sb->state) && !sandbox_state_live(by_name->state)) ||
		     (sandbox_state_live(sb->state) == sandbox_state_live(by_name->state) && sb->created_ms > by_name->created_ms)))
			by_name = sb;
	}
	return by_name;
}

void sandbox_each(sandbox_mgr_t *m, const char *tenant, sandbox_iter_cb cb, void *data)
{
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (!tenant || strcmp(sb->tenant, tenant) == 0)
			cb(data, sb);
}

void sandbox_who(const sandbox_t *sb, sandbox_who_t *out)
{
	*out = (sandbox_who_t){sb->tenant, sb->id, sb->name, sandbox_image_digest(sb),
			       sb->spec->identity_audience};
}

/* ---- the manager ---- */

int sandbox_mgr_new(const sandbox_mgr_deps_t *deps, sandbox_mgr_t **out, hutch_err_t *err)
{
	sandbox_mgr_t *m = xcalloc(1, sizeof *m);
	m->d = *deps;
	m->run_root = xasprintf("%s/sandboxes", deps->cfg->daemon.run_dir);
	int r = mkdir_p(m->run_root, 0700, err);
	if (r < 0) {
		free(m->run_root);
		free(m);
		return r;
	}
	if (access(deps->agent_path, X_OK) < 0) {
		r = hutch_err_sys(err, errno, "sandbox agent %s", deps->agent_path);
		free(m->run_root);
		free(m);
		return r;
	}
	if (deps->plugins->identity) {
		uv_timer_init(deps->loop, &m->identity_timer);
		m->identity_timer.data = m;
		uv_timer_start(&m->identity_timer, sandbox_identity_tick, 1000, 1000);
		m->identity_timer_on = true;
	}
	*out = m;
	return 0;
}

void sandbox_mgr_close(sandbox_mgr_t *m)
{
	m->closing = true;
	if (m->identity_timer_on) {
		uv_timer_stop(&m->identity_timer);
		uv_close((uv_handle_t *)&m->identity_timer, NULL);
		m->identity_timer_on = false;
	}
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (sb->agent)
			agent_conn_close(sb->agent, "hutchd is shutting down");
		sandbox_ports_stop(sb);
		sandbox_timers_close(sb);
	}
}

void sandbox_mgr_free(sandbox_mgr_t *m)
{
	if (!m)
		return;
	while (m->list) {
		sandbox_t *sb = m->list;
		m->list = sb->next;
		sandbox_unref(sb);
	}
	free(m->run_root);
	free(m);
}
