#include "build_sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
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

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

static bool cancelled(const build_exec_t *x)
{
	return x->cancel && atomic_load(x->cancel);
}

/* Runs argv (on the host) with stdout/stderr streamed to x->on_output,
 * the cancel flag polled and the timeout enforced. */
static int run_streamed(const char *const *argv, int netns_fd, const build_exec_t *x,
			int *exit_code, hutch_err_t *err)
{
	int r;
	int out_p[2] = {-1, -1}, err_p[2] = {-1, -1};
	pid_t pid = -1;
	_cleanup_close_ int pidfd = -1;
	if (pipe2(out_p, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(err_p, O_CLOEXEC | O_NONBLOCK) < 0) {
		r = hutch_err_sys(err, errno, "pipe");
		goto out;
	}
	hutch_spawn_opts_t so = {
		.size = sizeof so,
		.argv = argv,
		.envp = x->host_envp,
		.stdin_fd = -1,
		.stdout_fd = out_p[1],
		.stderr_fd = err_p[1],
		.netns_fd = netns_fd,
		.new_session = true,
	};
	r = proc_spawn(&so, &pid, &pidfd, err);
	close(out_p[1]);
	close(err_p[1]);
	out_p[1] = err_p[1] = -1;
	if (r < 0)
		goto out;

	int64_t deadline = x->timeout_ms > 0 ? now_ms() + x->timeout_ms : 0;
	bool exited = false, timed_out = false, was_cancelled = false;
	int st = 0;
	bool reaped = false;
	char buf[16384];
	while (!exited || out_p[0] >= 0 || err_p[0] >= 0) {
		if (!timed_out && !was_cancelled && !exited) {
			if (deadline && now_ms() >= deadline)
				timed_out = true;
			else if (cancelled(x))
				was_cancelled = true;
			if (timed_out || was_cancelled)
				kill(-pid, SIGKILL); /* its session: helpers too */
		}
		struct pollfd pfds[3] = {
			{.fd = exited ? -1 : pidfd, .events = POLLIN},
			{.fd = out_p[0], .events = POLLIN},
			{.fd = err_p[0], .events = POLLIN},
		};
		/* Wake at least every 200 ms to see a cancel; without a pidfd,
		 * every 20 ms to ask waitpid. */
		int pr = poll(pfds, 3, pidfd < 0 ? 20 : 200);
		if (pr < 0 && errno != EINTR)
			break;
		if (!exited && pidfd < 0 && waitpid(pid, &st, WNOHANG) == pid)
			reaped = exited = true;
		if (!exited && pfds[0].revents)
			exited = true;
		for (int k = 1; k <= 2; k++) {
			int *fd = k == 1 ? &out_p[0] : &err_p[0];
			if (*fd < 0)
				continue;
			for (;;) {
				ssize_t n = read(*fd, buf, sizeof buf);
				if (n > 0) {
					if (x->on_output)
						x->on_output(x->data, k, buf, (size_t)n);
					continue;
				}
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0 && errno == EAGAIN) {
					/* Once the command is gone, a background child that
					 * kept the pipe must not hold the step forever. */
					if (exited && pr == 0) {
						close(*fd);
						*fd = -1;
					}
					break;
				}
				close(*fd);
				*fd = -1;
				break;
			}
		}
	}
	while (!reaped && waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	int code, sig;
	proc_status_decode(st, &code, &sig);
	if (sig)
		code = 128 + sig;
	*exit_code = code;
	if (timed_out)
		r = hutch_err_set(err, ETIMEDOUT, "timed out after %lld s", (long long)(x->timeout_ms / 1000));
	else if (was_cancelled)
		r = hutch_err_set(err, ECANCELED, "cancelled");
	else
		r = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (out_p[i] >= 0)
			close(out_p[i]);
		if (err_p[i] >= 0)
			close(err_p[i]);
	}
	return r;
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
