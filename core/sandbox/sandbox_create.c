/* Create: validation and defaults (sandbox_validate.c), then the slow
 * part on the pool (image layers, run dir, network, identity, the
 * runtime), then the agent session, ports and main command on the loop. */
#include "sandbox_priv.h"
#include "runtime_call.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "image_builtin.h"
#include "log.h"
#include "metrics.h"
#include "rundir.h"
#include "runtime_spec.h"
#include "strbuf.h"

/* The runtime's spec of a user sandbox: hutch-agent as its init on the
 * job's pipes, the agent binary and the identity dir bound read-only. */
static int runtime_create(sandbox_t *sb, const char *netns, int in_fd, int out_fd,
			  hutch_sandbox_status_t *status, hutch_err_t *err)
{
	const sandbox_spec_t *s = sb->spec;
	static const char *const meta_addrs[] = {AGENT_META_ADDR};
	static const char *const argv[] = {AGENT_IN_SANDBOX, "init", NULL};
	hutch_mount_t mounts[2];
	size_t nm = 0;
	mounts[nm++] = (hutch_mount_t){sb->m->d.agent_path, AGENT_IN_SANDBOX, HUTCH_MOUNT_READONLY};
	if (sb->identity_dir)
		mounts[nm++] = (hutch_mount_t){sb->identity_dir, IDENTITY_DIR_IN_SANDBOX,
					       HUTCH_MOUNT_READONLY};
	const char *builtin[] = {sb->image_layer, NULL};
	runtime_spec_opts_t o = {
		.id = sb->id,
		.tenant = sb->tenant,
		.name = sb->name,
		.run_dir = sb->run_dir,
		.layers = builtin,
		.n_layers = 1,
		.argv = argv,
		.init_stdin_fd = in_fd,
		.init_stdout_fd = out_fd,
		.cpu_millis = s->cpu_millis,
		.memory_bytes = s->memory_bytes,
		.pids_max = s->pids_max,
		.disk_bytes = s->disk_bytes,
		.mounts = mounts,
		.n_mounts = nm,
		.netns_path = netns,
		.ports = s->ports,
		.n_ports = s->n_ports,
		.loopback_addrs = sb->m->d.metadata ? meta_addrs : NULL,
		.n_loopback_addrs = sb->m->d.metadata ? 1 : 0,
	};
	if (sb->image.layers) { /* images (issue 5): the image's layers */
		o.layers = (const char *const *)sb->image.layers;
		o.n_layers = strv_len(sb->image.layers);
	}
	runtime_spec_t rs;
	runtime_spec_build(&rs, &o);
	plugin_t *rt = sb->m->d.plugins->runtime;
	status->size = sizeof *status;
	int r = rt->ops.runtime.sandbox_create(rt->instance, &rs.rs, status, err);
	runtime_spec_release(&rs);
	return r < 0 ? hutch_err_prefix(err, "%s", rt->name) : 0;
}

typedef struct create_job {
	uv_work_t req;
	sandbox_t *sb;
	int agent_in;   /* the agent's stdin (read end) */
	int agent_out;  /* the agent's stdout (write end) */
	int to_agent, from_agent; /* ours */
	sandbox_done_cb cb;
	void *data;
	hutch_err_t err;
	int result;
	hutch_sandbox_status_t status;
	char **addresses;
	char netns_path[256];
	net_policy_set_t policies; /* loaded on the loop: the store is the loop's */
} create_job_t;

static void create_work(uv_work_t *req)
{
	create_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sandbox_mgr_t *m = sb->m;
	hutch_err_t *err = &j->err;
	int r;

	if (m->images.prepare) /* images (issue 5) */
		r = m->images.prepare(m->images.data, &sb->image, err);
	else
		r = image_builtin_layer(m->d.cfg->daemon.state_dir,
					sb->spec->image && *sb->spec->image ? sb->spec->image
									     : m->d.cfg->sandbox.default_image,
					&sb->image_layer, err);
	if (r < 0)
		goto out;
	if ((r = mkdir_p(sb->run_dir, 0700, err)) < 0)
		goto out;
	hutch_net_attachment_t att;
	if ((r = sandbox_network_attach(sb, &j->policies, &att, err)) < 0)
		goto undo;
	for (int i = 0; i < HUTCH_NET_MAX_ADDRS; i++)
		if (att.addresses[i][0])
			strv_push(&j->addresses, xstrdup(att.addresses[i]));
	if ((r = sandbox_write_etc(sb, &att, err)) < 0)
		goto undo;
	if (m->d.plugins->identity) {
		sb->identity_dir = xasprintf("%s/identity", sb->run_dir);
		sandbox_who_t who;
		sandbox_who(sb, &who);
		if ((r = identity_write_file(m->d.plugins->identity, sb->identity_dir, &who,
					     sb->spec->identity_audience, &sb->identity_expires,
					     err)) < 0)
			goto undo;
	}

	if ((r = runtime_create(sb, att.netns_path[0] ? att.netns_path : NULL, j->agent_in,
				j->agent_out, &j->status, err)) < 0)
		goto undo;
	plugin_t *rt = m->d.plugins->runtime;
	/* Where port forwards connect: the chain's namespace, or the one the
	 * runtime made. */
	if (att.netns_path[0]) {
		snprintf(j->netns_path, sizeof j->netns_path, "%s", att.netns_path);
	} else {
		hutch_sandbox_status_t st;
		hutch_err_t e2 = {0};
		if (runtime_sandbox_status(rt, sb->id, &st, &e2) == 0)
			snprintf(j->netns_path, sizeof j->netns_path, "%s", st.netns_path);
	}
	goto out;
undo: {
	hutch_err_t e2 = {0};
	rt = m->d.plugins->runtime;
	rt->ops.runtime.sandbox_destroy(rt->instance, sb->id, &e2);
	sandbox_network_detach(sb);
	rundir_remove(sb->run_dir);
}
out:
	j->result = r;
}

/* A create that fails after validation failed on the host (a plugin, the
 * runtime, hutchd's own files): the client's message keeps what happened
 * but not where, since the host's paths tell a client nothing it can act
 * on and much about the host. The log keeps them. Absolute paths are
 * recognised where a token starts with '/' (so URLs stay). */
static void err_hide_host_paths(hutch_err_t *err)
{
	static const char hidden[] = "<host path>";
	char out[sizeof err->message];
	size_t n = 0;
	const char *p = err->message;
	char prev = ' ';
	while (*p && n + 1 < sizeof out) {
		if (*p == '/' && strchr(" `'\"(=[", prev)) {
			while (*p && !strchr(" `'\"):,;]", *p))
				p++;
			for (const char *h = hidden; *h && n + 1 < sizeof out; h++)
				out[n++] = *h;
			prev = '>';
			continue;
		}
		prev = *p;
		out[n++] = *p++;
	}
	out[n] = '\0';
	memcpy(err->message, out, n + 1);
}

static void create_done(uv_work_t *req, int status)
{
	create_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sb->m->jobs--;
	net_policy_set_free(&j->policies);
	/* The agent's ends now live in the sandbox (or nowhere). */
	close(j->agent_in);
	close(j->agent_out);
	sb->busy = false;
	if (j->result == 0 && sb->m->closing) {
		/* hutchd is going down: the sandbox runs on and is found
		 * again at the next start. */
		close(j->to_agent);
		close(j->from_agent);
		sb->state = SANDBOX_RUNNING;
		sb->started_ms = now_ms();
		sb->expires_ms = sb->started_ms + sb->spec->lifetime_seconds * 1000;
		sandbox_persist(sb);
		if (j->cb) {
			hutch_err_t e = {0};
			hutch_err_set(&e, ESHUTDOWN, "hutchd is shutting down");
			j->cb(j->data, NULL, &e);
		}
		strv_free(j->addresses);
		sandbox_unref(sb);
		free(j);
		return;
	}
	if (status < 0 && j->result == 0)
		j->result = hutch_err_set(&j->err, ECANCELED, "cancelled");
	snprintf(sb->netns_path, sizeof sb->netns_path, "%s", j->netns_path);
	if (j->result == 0)
		j->result = sandbox_agent_attach(sb, j->to_agent, j->from_agent, &j->err);
	else {
		close(j->to_agent);
		close(j->from_agent);
	}
	if (j->result < 0) {
		hutch_err_prefix(&j->err, "create sandbox %s", sb->id);
		log_warn("%s", j->err.message);
		err_hide_host_paths(&j->err);
		/* Nothing of it remains: not even the record. */
		hutch_err_t e2 = {0};
		store_delete(sb->m->d.store, KIND, sb->id, &e2);
		if (sb->has_secrets)
			sb->m->d.secrets.forget(sb->m->d.secrets.data, sb->id);
		sb->forgotten = true;
		sandbox_list_remove(sb->m, sb);
		metrics_add("sandboxes_failed_total", NULL, 1);
		if (j->cb)
			j->cb(j->data, NULL, &j->err);
		sandbox_waiters_fire(sb);
		strv_free(j->addresses);
		sandbox_unref(sb); /* the list's reference */
		sandbox_unref(sb); /* the job's */
		free(j);
		return;
	}
	sb->state = SANDBOX_RUNNING;
	sb->started_ms = now_ms();
	sb->expires_ms = sb->started_ms + sb->spec->lifetime_seconds * 1000;
	strv_free(sb->addresses);
	sb->addresses = j->addresses;
	hutch_err_t perr = {0};
	if (sandbox_ports_start(sb, &perr) < 0) {
		/* The sandbox runs but cannot be reached as asked: the create
		 * fails, and the sandbox goes away with nothing left of it. */
		hutch_err_prefix(&perr, "create sandbox %s: ports", sb->id);
		log_warn("%s", perr.message);
		err_hide_host_paths(&perr);
		sb->delete_after_stop = true;
		sandbox_persist(sb);
		if (j->cb)
			j->cb(j->data, NULL, &perr);
		sandbox_stop_internal(sb, 0, SANDBOX_FAILED,
			      "ports could not be forwarded", NULL, NULL);
		sandbox_unref(sb);
		free(j);
		return;
	}
	sandbox_persist(sb);
	sandbox_timers_start(sb);
	if (sb->identity_expires)
		sb->identity_renew_ms = identity_renew_at_ms(now_ms(), sb->identity_expires);
	sandbox_main_start(sb);
	metrics_add("sandboxes_created_total", NULL, 1);
	log_info("sandbox %s running (tenant %s, %.2f cpu, %lld MiB)", sb->id, sb->tenant,
		 sb->spec->cpu_millis / 1000.0, (long long)(sb->spec->memory_bytes >> 20));
	if (j->cb)
		j->cb(j->data, sb, NULL);
	if (sb->stop_requested)
		sandbox_stop_internal(sb, sb->stop_grace_ms, sb->stop_final, sb->stop_reason, NULL, NULL);
	sandbox_unref(sb);
	free(j);
}

int sandbox_create(sandbox_mgr_t *m, const char *tenant, sandbox_spec_t *s, sandbox_done_cb cb,
		   void *data, hutch_err_t *err)
{
	if (m->closing) {
		sandbox_spec_free(s);
		return hutch_err_set(err, ESHUTDOWN, "hutchd is shutting down");
	}
	int r = sandbox_spec_resolve(m, tenant, s, err);
	sandbox_image_t image = {0}; /* images (issue 5) */
	if (r == 0 && m->images.resolve)
		r = m->images.resolve(m->images.data, tenant, s, &image, err);
	char **secret_env = NULL;
	if (r == 0 && s->n_secrets > 0)
		r = m->d.secrets.resolve(m->d.secrets.data, tenant, s->secrets, s->n_secrets,
					 &secret_env, err);
	/* Inline values never get stored or shown again. */
	sandbox_spec_strip_secrets(s);
	if (r < 0) {
		if (m->images.release)
			m->images.release(m->images.data, &image);
		sandbox_spec_free(s);
		return r;
	}
	sandbox_t *sb = xcalloc(1, sizeof *sb);
	sb->m = m;
	sb->refs = 1; /* the list's */
	runtime_id_new("sb", sb->id);
	sb->tenant = xstrdup(tenant);
	sb->name = s->name && *s->name ? xstrdup(s->name) : NULL;
	sb->spec = s;
	sb->image = image;
	sb->state = SANDBOX_CREATING;
	sb->created_ms = now_ms();
	sb->env = sandbox_env_build(s, sb->id, secret_env, m->d.plugins->identity != NULL);
	sb->run_dir = xasprintf("%s/%s", m->run_root, sb->id);
	if (secret_env) {
		/* Kept sealed so a restarted hutchd can give the sandbox's
		 * processes the same environment. */
		r = m->d.secrets.keep(m->d.secrets.data, tenant, sb->id, secret_env, err);
		sandbox_env_free(secret_env);
		if (r < 0) {
			sandbox_free(sb);
			return r;
		}
		sb->has_secrets = true;
	}

	create_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->cb = cb;
	j->data = data;
	r = m->d.policies_load(m->d.policies_data, tenant, s->network_policies,
			       s->n_network_policies, &j->policies, err);
	if (r < 0) {
		free(j);
		sandbox_free(sb);
		return r;
	}
	int to[2], from[2];
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		r = hutch_err_sys(err, errno, "create sandbox: pipe");
		net_policy_set_free(&j->policies);
		free(j);
		sandbox_free(sb);
		return r;
	}
	j->agent_in = to[0];
	j->to_agent = to[1];
	j->from_agent = from[0];
	j->agent_out = from[1];
	sb->next = m->list;
	m->list = sb;
	sb->busy = true;
	sandbox_ref(sb); /* the job's */
	sandbox_persist(sb);
	m->jobs++;
	r = uv_queue_work(m->d.loop, &j->req, create_work, create_done);
	if (r < 0) {
		/* Cannot happen with a live loop; fail cleanly anyway. */
		hutch_err_set(err, -r, "create sandbox: %s", uv_strerror(r));
		m->jobs--;
		close(to[0]), close(to[1]), close(from[0]), close(from[1]);
		sandbox_list_remove(m, sb);
		hutch_err_t e2 = {0};
		store_delete(m->d.store, KIND, sb->id, &e2);
		sandbox_unref(sb);
		sandbox_unref(sb);
		net_policy_set_free(&j->policies);
		free(j);
		return -err->code;
	}
	return 0;
}
