#include "build_sandbox.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "host_api.h"
#include "log.h"
#include "net_chain.h"
#include "proc.h"
#include "rundir.h"
#include "runtime_spec.h"
#include "strbuf.h"

struct build_sandbox {
	build_sandbox_deps_t deps;
	char id[32];
	char *dir;             /* run_root/<id> */
	size_t n_attached;     /* network plugins attached so far */
	bool created;          /* the runtime has it */
	bool stopped;
};

const char *build_sandbox_id(const build_sandbox_t *b)
{
	return b->id;
}

static plugin_t *runtime(const build_sandbox_t *b)
{
	return b->deps.plugins->runtime;
}

static void network_detach(build_sandbox_t *b)
{
	net_chain_detach(b->deps.plugins, b->id, b->n_attached, "build sandbox");
	b->n_attached = 0;
}

/* The network chain, as sandbox_mgr attaches it for any sandbox. */
static int network_attach(build_sandbox_t *b, const build_sandbox_opts_t *o,
			  hutch_net_attachment_t *att, hutch_err_t *err)
{
	hutch_net_attach_t req = {
		.sandbox_id = b->id,
		.tenant = o->tenant,
		.policies = o->policies,
		.n_policies = o->n_policies,
		.policies_set = o->policies_set,
	};
	return net_chain_attach(b->deps.plugins, req, att, &b->n_attached, err);
}

/* /etc/hosts, hostname and resolv.conf, bound read-only into the sandbox
 * (and so never part of a committed layer). */
static int write_etc(build_sandbox_t *b, const hutch_net_attachment_t *att, hutch_err_t *err)
{
	_cleanup_free_ char *etc = xasprintf("%s/etc", b->dir);
	return rundir_write_etc(etc, b->id, att, err);
}

int build_sandbox_create(const build_sandbox_deps_t *deps, const build_sandbox_opts_t *o,
			 build_sandbox_t **out, hutch_err_t *err)
{
	if (!deps->plugins->runtime)
		return hutch_err_set(err, ENOTSUP, "no runtime plugin");
	if (o->network && deps->plugins->n_network == 0)
		return hutch_err_set(err, ENOTSUP,
				     "this build step needs network access, and no network plugin is configured ([plugins] network): build sandboxes have no network without one");
	build_sandbox_t *b = xcalloc(1, sizeof *b);
	b->deps = *deps;
	runtime_id_new("bld", b->id);
	b->dir = xasprintf("%s/%s", deps->run_root, b->id);
	int r = mkdir_p(b->dir, 0700, err);
	if (r < 0) {
		free(b->dir);
		free(b);
		return r;
	}
	hutch_net_attachment_t att = {.size = sizeof att};
	if (o->network && (r = network_attach(b, o, &att, err)) < 0)
		goto fail;
	if ((r = write_etc(b, o->network ? &att : NULL, err)) < 0)
		goto fail;

	runtime_spec_opts_t ro = {
		.id = b->id,
		.tenant = o->tenant,
		.run_dir = b->dir,
		.layers = o->layers,
		.n_layers = o->n_layers,
		.argv = NULL, /* the runtime's idle init: commands come by exec */
		.env = o->env,
		.n_env = o->n_env,
		.cpu_millis = o->cpu_millis,
		.memory_bytes = o->memory_bytes,
		.pids_max = o->pids_max,
		.disk_bytes = o->disk_bytes,
		.mounts = o->mounts,
		.n_mounts = o->n_mounts,
		.netns_path = att.netns_path[0] ? att.netns_path : NULL,
	};
	runtime_spec_t rs;
	runtime_spec_build(&rs, &ro);
	hutch_sandbox_status_t st = {.size = sizeof st};
	plugin_t *rt = runtime(b);
	r = rt->ops.runtime.sandbox_create(rt->instance, &rs.rs, &st, err);
	runtime_spec_release(&rs);
	if (r < 0) {
		hutch_err_prefix(err, "build sandbox: %s", rt->name);
		goto fail;
	}
	b->created = true;
	*out = b;
	return 0;
fail:
	network_detach(b);
	rundir_remove(b->dir);
	free(b->dir);
	free(b);
	return r;
}

/* ---- exec ---- */

/* Runs argv (on the host) with stdout/stderr streamed to x->on_output,
 * the cancel flag polled and the timeout enforced, in a session of its own
 * so that a kill takes its helpers too. */
static int run_streamed(const char *const *argv, int netns_fd, const build_exec_t *x,
			int *exit_code, hutch_err_t *err)
{
	hutch_spawn_opts_t so = {
		.size = sizeof so,
		.argv = argv,
		.envp = x->host_envp,
		.stdin_fd = -1,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.netns_fd = netns_fd,
		.new_session = true,
	};
	proc_watch_t w = {
		.on_output = x->on_output,
		.data = x->data,
		.streams = x->on_output ? 3 : 0,
		.timeout_ms = x->timeout_ms,
		.cancel = x->cancel,
	};
	proc_end_t end;
	int r = proc_run_watched(&so, &w, &end, err);
	if (r < 0)
		return r;
	*exit_code = end.term_signal ? 128 + end.term_signal : end.exit_code;
	if (end.timed_out)
		return hutch_err_set(err, ETIMEDOUT, "timed out after %lld s",
				     (long long)(x->timeout_ms / 1000));
	if (end.cancelled)
		return hutch_err_set(err, ECANCELED, "cancelled");
	return 0;
}

int build_sandbox_exec(build_sandbox_t *b, const build_exec_t *x, int *exit_code,
		       hutch_err_t *err)
{
	plugin_t *rt = runtime(b);
	hutch_exec_spec_t es = {
		.size = sizeof es,
		.argv = x->argv,
		.env = x->env,
		.n_env = x->n_env,
		.cwd = x->cwd,
	};
	hutch_command_t cmd = {.size = sizeof cmd, .netns_fd = -1};
	int r = rt->ops.runtime.exec_command(rt->instance, b->id, &es, &cmd, err);
	if (r < 0)
		return hutch_err_prefix(err, "%s", rt->name);
	r = run_streamed((const char *const *)cmd.argv, cmd.netns_fd, x, exit_code, err);
	if (cmd.netns_fd >= 0)
		close(cmd.netns_fd);
	strv_free(cmd.argv);
	return r;
}

int build_host_exec(const build_exec_t *x, int *exit_code, hutch_err_t *err)
{
	return run_streamed(x->argv, -1, x, exit_code, err);
}

/* ---- commit and destroy ---- */

static void stop(build_sandbox_t *b)
{
	if (!b->created || b->stopped)
		return;
	plugin_t *rt = runtime(b);
	hutch_err_t e = {0};
	if (rt->ops.runtime.sandbox_stop(rt->instance, b->id, 0, &e) < 0)
		log_warn("build sandbox %s: stop: %s", b->id, e.message);
	b->stopped = true;
}

int build_sandbox_commit(build_sandbox_t *b, const char *dest_dir, hutch_err_t *err)
{
	plugin_t *rt = runtime(b);
	if (rt->ops_size < offsetof(hutch_runtime_ops_t, sandbox_commit) + sizeof(void *) ||
	    !rt->ops.runtime.sandbox_commit)
		return hutch_err_set(err, ENOTSUP,
				     "runtime %s cannot commit a sandbox's writable layer (no sandbox_commit op): images cannot be built with it",
				     rt->name);
	stop(b);
	int r = rt->ops.runtime.sandbox_commit(rt->instance, b->id, dest_dir, err);
	return r < 0 ? hutch_err_prefix(err, "%s", rt->name) : 0;
}

void build_sandbox_destroy(build_sandbox_t *b)
{
	if (!b)
		return;
	stop(b);
	if (b->created) {
		plugin_t *rt = runtime(b);
		hutch_err_t e = {0};
		if (rt->ops.runtime.sandbox_destroy(rt->instance, b->id, &e) < 0)
			log_error("build sandbox %s: destroy: %s", b->id, e.message);
	}
	network_detach(b);
	rundir_remove(b->dir);
	free(b->dir);
	free(b);
}
