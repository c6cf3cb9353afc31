/* The network policies of a running sandbox: replaced on request, or when
 * a bound policy changes. */
#include "sandbox_priv.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

typedef struct policy_job {
	uv_work_t req;
	sandbox_t *sb;
	net_policy_set_t set;
	bool use_default;
	char **names; /* what the spec will say */
	sandbox_done_cb cb;
	void *data;
	hutch_err_t err;
	int result;
} policy_job_t;

static void policy_work(uv_work_t *req)
{
	policy_job_t *j = req->data;
	plugin_set_t *ps = j->sb->m->d.plugins;
	j->result = 0;
	for (size_t i = 0; i < ps->n_network && j->result == 0; i++) {
		plugin_t *p = ps->network[i];
		if (!p->ops.network.policy_update)
			continue;
		j->result = p->ops.network.policy_update(p->instance, j->sb->id,
							 (const hutch_net_policy_t *const *)j->set.items,
							 j->set.n, !j->use_default, &j->err);
		if (j->result < 0)
			hutch_err_prefix(&j->err, "%s", p->name);
	}
}

static void policy_done(uv_work_t *req, int status)
{
	policy_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	(void)status;
	sb->m->jobs--;
	sb->busy = false;
	if (j->result == 0) {
		/* The spec records what is bound now. */
		sandbox_spec_t *s = sb->spec;
		for (size_t i = 0; i < s->n_network_policies; i++)
			free(s->network_policies[i]);
		free(s->network_policies);
		s->n_network_policies = strv_len(j->names);
		s->network_policies = s->n_network_policies ? j->names : NULL;
		if (!s->n_network_policies)
			strv_free(j->names);
		j->names = NULL;
		sandbox_persist(sb);
		log_info("sandbox %s: network policies now %s", sb->id,
			 s->n_network_policies ? "as bound" : "the default");
	} else {
		hutch_err_prefix(&j->err, "update policies of sandbox %s", sb->id);
	}
	if (j->cb)
		j->cb(j->data, sb, j->result < 0 ? &j->err : NULL);
	strv_free(j->names);
	net_policy_set_free(&j->set);
	/* A stop asked for meanwhile waited for this to finish. */
	if (sb->stop_requested && sb->state == SANDBOX_RUNNING)
		sandbox_stop_internal(sb, sb->stop_grace_ms, sb->stop_final, sb->stop_reason, NULL, NULL);
	sandbox_unref(sb);
	free(j);
}

int sandbox_update_policies(sandbox_t *sb, char *const *names, size_t n, bool use_default,
			    sandbox_done_cb cb, void *data, hutch_err_t *err)
{
	sandbox_mgr_t *m = sb->m;
	if (sb->state != SANDBOX_RUNNING || sb->stop_requested)
		return hutch_err_set(err, EBUSY, "sandbox %s is %s, not running", sb->id,
				     sb->stop_requested ? "stopping" : sandbox_state_word(sb->state));
	if (sb->busy)
		return hutch_err_set(err, EBUSY, "sandbox %s is changing its policies already; try again",
				     sb->id);
	if (m->d.plugins->n_network == 0)
		return hutch_err_set(err, ENOTSUP,
				     "network policies need a network plugin (none is configured in [plugins] network)");
	bool any = false;
	for (size_t i = 0; i < m->d.plugins->n_network; i++)
		any |= m->d.plugins->network[i]->ops.network.policy_update != NULL;
	if (!any)
		return hutch_err_set(err, ENOTSUP, "no network plugin can change the policies of a running sandbox");
	if (n == 0 && !use_default)
		return hutch_err_set(err, EINVAL, "name at least one policy, or ask for the default");
	policy_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->use_default = use_default && n == 0;
	j->cb = cb;
	j->data = data;
	int r = m->d.policies_load(m->d.policies_data, sb->tenant, names, n, &j->set, err);
	if (r < 0) {
		free(j);
		return r;
	}
	for (size_t i = 0; i < n; i++)
		strv_push(&j->names, xstrdup(names[i]));
	sandbox_ref(sb);
	sb->busy = true;
	m->jobs++;
	if (uv_queue_work(m->d.loop, &j->req, policy_work, policy_done) < 0) {
		m->jobs--;
		sb->busy = false;
		sandbox_unref(sb);
		strv_free(j->names);
		net_policy_set_free(&j->set);
		free(j);
		return hutch_err_set(err, EAGAIN, "cannot queue the update");
	}
	return 0;
}

static bool binds(const sandbox_t *sb, const char *tenant, const char *policy)
{
	if (strcmp(sb->tenant, tenant) != 0 || !sb->spec)
		return false;
	for (size_t i = 0; i < sb->spec->n_network_policies; i++)
		if (strcmp(sb->spec->network_policies[i], policy) == 0)
			return true;
	return false;
}

char **sandbox_mgr_policy_users(sandbox_mgr_t *m, const char *tenant, const char *policy)
{
	char **ids = NULL;
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state) && binds(sb, tenant, policy))
			strv_push(&ids, xstrdup(sb->id));
	return ids;
}

void sandbox_mgr_policy_changed(sandbox_mgr_t *m, const char *tenant, const char *policy)
{
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (sb->state != SANDBOX_RUNNING ||
		    !binds(sb, tenant, policy))
			continue;
		hutch_err_t err = {0};
		if (sandbox_update_policies(sb, sb->spec->network_policies,
					    sb->spec->n_network_policies, false, NULL, NULL, &err) < 0)
			log_error("sandbox %s: policy `%s` changed but could not be applied: %s", sb->id,
				  policy, err.message);
	}
}
