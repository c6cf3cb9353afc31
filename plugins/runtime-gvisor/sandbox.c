/*
 * sandbox.c: the lifecycle ops: create (and restore), stop, destroy,
 * status, list.
 *
 * A sandbox directory, <run_dir>/sandboxes/<id>/, holds:
 *   config.json   the OCI bundle's spec (bundle.c)
 *   rootfs/       overlay mount, the bundle's root (rootfs.c)
 *   scratch/      the writable layer (ext4 on loop, or tmpfs): upper/, work/
 *   netns         bind mount of the private network namespace (netns.c),
 *                 only when the core gave none
 *   flags         the runsc global flags it was created with, one a line;
 *                 every later runsc call for it replays them (runsc applies
 *                 some flags late: --network is read by `start`)
 *   layers        the image layer dirs, one a line (checked at restore)
 *   runsc.log     runsc's log (--log)
 *   sandbox.pid   written by runsc: the sandbox (sentry) process
 *   meta, waiter  "pid starttime" of the sentry and of the exit-status
 *                 waiter (process.c)
 *   exit.json     init's exit status, from the waiter
 *   netns_path    the namespace whose loopback is the sandbox's (host
 *                 networking only), reported by status for port forwards
 *   oom           present once an OOM kill was seen
 *
 * Status is read from these files, /proc and the cgroup, without running
 * runsc: the sandbox is RUNNING while its sentry process lives.
 *
 * A failed create or restore undoes itself by running destroy, which is
 * idempotent and copes with every partial state.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"
#include "clock_ms.h"

#define MIN_MEMORY_BYTES (64ll << 20)
#define MIN_DISK_BYTES (4ll << 20)

int gv_validate_id(const char *id, hutch_err_t *err)
{
	if (!id || !*id || strlen(id) > 64)
		return hutch_err_set(err, EINVAL, "sandbox id must be 1-64 characters");
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return hutch_err_set(err, EINVAL, "sandbox id `%s`: only [a-z0-9-]", id);
	return 0;
}

char *gv_sb_path(const gv_runtime_t *rt, const char *id, const char *name)
{
	if (!name)
		return xasprintf("%s/%s", rt->sandboxes_dir, id);
	return xasprintf("%s/%s/%s", rt->sandboxes_dir, id, name);
}

/* runsc resolves a container id as a prefix when more than one state
 * file starts with it, even if one matches exactly ("sb-1" is ambiguous
 * once "sb-10" exists). Our ids are [a-z0-9-], so "<id>.hutch" is never a
 * prefix of another sandbox's runsc id. */
void gv_argv_add_runsc_id(gv_argv_t *a, const char *id)
{
	gv_argv_addf(a, "%s" GV_RUNSC_ID_SUFFIX, id);
}

bool gv_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* ---- runsc command lines for one sandbox ---- */

/* Starts argv with runsc and the sandbox's saved global flags (or, for a
 * sandbox that never got that far, the flags it would have had). */
void gv_sandbox_cmd(const gv_runtime_t *rt, const char *id, gv_argv_t *a)
{
	gv_argv_add(a, rt->runsc_path);
	_cleanup_free_ char *flags_path = gv_sb_path(rt, id, "flags");
	_cleanup_free_ char *text = NULL;
	if (gv_read_file(flags_path, &text) == 0) {
		for (char *save = NULL, *l = strtok_r(text, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save))
			gv_argv_add(a, l);
		return;
	}
	_cleanup_free_ char *log = gv_sb_path(rt, id, "runsc.log");
	bool have_dir = gv_exists(rt->sandboxes_dir) && gv_exists(log);
	gv_global_flags(rt, id, have_dir ? log : NULL,
			rt->netstack ? GV_NET_NETSTACK : GV_NET_HOST, false, a);
}

static int save_flags(const gv_runtime_t *rt, const char *id, gv_net_mode_t net,
		      bool nvproxy, hutch_err_t *err)
{
	_cleanup_free_ char *log = gv_sb_path(rt, id, "runsc.log");
	_cleanup_free_ char *path = gv_sb_path(rt, id, "flags");
	gv_argv_t flags = {0};
	gv_global_flags(rt, id, log, net, nvproxy, &flags);
	_cleanup_sb_ strbuf_t sb = STRBUF_INIT;
	int r = 0;
	for (size_t i = 0; i < flags.n; i++) {
		if (strchr(flags.v[i], '\n')) {
			r = hutch_err_set(err, EINVAL, "runsc flag with a newline: %s", flags.v[i]);
			break;
		}
		sb_printf(&sb, "%s\n", flags.v[i]);
	}
	gv_argv_free(&flags);
	return r < 0 ? r : gv_write_file(path, sb.buf ? sb.buf : "", err);
}

/* ---- status ---- */

static void status_fill(const gv_runtime_t *rt, const char *id,
			hutch_sandbox_status_t *st)
{
	uint32_t size = st->size ? st->size : sizeof *st;
	hutch_sandbox_status_t s = {.size = size};
	s.exit_code = -1;
	s.memory_bytes = s.cpu_usage_ns = s.pids_current = -1;
	s.oom_kills = -1;
	_cleanup_free_ char *dir = gv_sb_path(rt, id, NULL);
	_cleanup_free_ char *oom = gv_sb_path(rt, id, "oom");
	if (!gv_exists(dir)) {
		s.phase = HUTCH_PHASE_UNKNOWN;
	} else {
		gv_proc_t sentry;
		if (gv_sentry_load(rt, id, &sentry) < 0) {
			s.phase = HUTCH_PHASE_CREATING;
		} else if (gv_proc_alive(&sentry)) {
			s.phase = HUTCH_PHASE_RUNNING;
			s.pid = sentry.pid;
		} else {
			s.phase = HUTCH_PHASE_STOPPED;
			s.exit_code = gv_exit_status_read(rt, id);
		}
		gv_cgroup_stats(rt, id, &s);
		_cleanup_free_ char *np = gv_sb_path(rt, id, "netns_path");
		_cleanup_free_ char *ns = NULL;
		if (gv_read_file(np, &ns) == 0) {
			ns[strcspn(ns, "\n")] = '\0';
			snprintf(s.netns_path, sizeof s.netns_path, "%s", ns);
		}
		if (s.oom_killed && !gv_exists(oom)) {
			hutch_err_t e = {0};
			gv_write_file(oom, "1\n", &e);
		}
		if (gv_exists(oom))
			s.oom_killed = true;
	}
	memcpy(st, &s, size < sizeof s ? size : sizeof s);
}

int gv_sandbox_status(void *instance, const char *id, hutch_sandbox_status_t *status,
		      hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	int r = gv_validate_id(id, err);
	if (r < 0)
		return r;
	status_fill(rt, id, status);
	return 0;
}

/* ---- destroy ---- */

int gv_sandbox_destroy(void *instance, const char *id, hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	int r = gv_validate_id(id, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *dir = gv_sb_path(rt, id, NULL);
	gv_proc_t sentry = {0};
	bool have_sentry = gv_sentry_load(rt, id, &sentry) == 0;
	int64_t t0 = mono_ms();

	/* The exit-status waiter (only without the helper) first: it can
	 * outlive a dead sandbox by seconds (see process.c), and nobody will
	 * ask for the status any more. */
	gv_proc_t waiter;
	if (gv_proc_load(rt, id, "waiter", &waiter) == 0 && !gv_proc_wait(&waiter, 0)) {
		gv_proc_kill(&waiter);
		gv_proc_wait(&waiter, 2000);
	}

	/* runsc's state, processes and cgroup; succeeds when there is none. */
	gv_argv_t a = {0};
	gv_sandbox_cmd(rt, id, &a);
	gv_argv_add(&a, "delete");
	gv_argv_add(&a, "--force");
	gv_argv_add_runsc_id(&a, id);
	gv_run_t run = GV_RUN_INIT;
	run.capture_stderr = true;
	run.timeout_ms = 60000;
	r = gv_runsc_run(rt, a.v, &run, "runsc delete", err);
	gv_argv_free(&a);
	if (r < 0)
		return hutch_err_prefix(err, "destroy %s", id);
	int64_t t_del = mono_ms();

	/* The sentry should be gone with it; if not, it is ours to end.
	 * The supervisor follows once it has reaped the last of them. */
	if (have_sentry && !gv_proc_wait(&sentry, 5000)) {
		gv_proc_kill(&sentry);
		if (!gv_proc_wait(&sentry, 5000))
			return hutch_err_set(err, EBUSY, "destroy %s: sandbox process %d survives SIGKILL",
					     id, (int)sentry.pid);
	}
	gv_proc_t sup;
	if (gv_proc_load(rt, id, "supervisor", &sup) == 0 && !gv_proc_wait(&sup, 2000)) {
		gv_proc_kill(&sup);
		gv_proc_wait(&sup, 2000);
	}
	if (gv_exists(dir)) {
		if ((r = gv_rootfs_unmount(dir, err)) < 0)
			return hutch_err_prefix(err, "destroy %s", id);
		_cleanup_free_ char *netns = gv_sb_path(rt, id, "netns");
		if ((r = gv_netns_remove(netns, err)) < 0)
			return hutch_err_prefix(err, "destroy %s", id);
	}
	int64_t t_umount = mono_ms();
	if ((r = gv_cgroup_remove(rt, id, err)) < 0)
		return hutch_err_prefix(err, "destroy %s", id);
	int64_t t_cg = mono_ms();
	if (gv_mounted(dir, true))
		return hutch_err_set(err, EBUSY, "destroy %s: something is still mounted under %s",
				     id, dir);
	if ((r = gv_remove_tree(dir, err)) < 0)
		return hutch_err_prefix(err, "destroy %s", id);
	rt->host->log(rt->host, HUTCH_LOG_DEBUG,
		      "%s: destroyed in %lld ms (runsc delete %lld, unmount %lld, cgroup %lld)", id,
		      (long long)(mono_ms() - t0), (long long)(t_del - t0),
		      (long long)(t_umount - t_del), (long long)(t_cg - t_umount));
	return 0;
}

/* ---- stop ---- */

static void kill_all(const gv_runtime_t *rt, const char *id, const char *sig)
{
	gv_argv_t a = {0};
	gv_sandbox_cmd(rt, id, &a);
	gv_argv_add(&a, "kill");
	gv_argv_add(&a, "--all");
	gv_argv_add_runsc_id(&a, id);
	gv_argv_add(&a, sig);
	gv_run_t run = GV_RUN_INIT;
	run.capture_stderr = true;
	run.timeout_ms = 10000;
	hutch_err_t e = {0};
	/* Fails when the sandbox is already stopping; what counts is
	 * whether the sentry goes away. */
	if (gv_runsc_run(rt, a.v, &run, "runsc kill", &e) < 0)
		rt->host->log(rt->host, HUTCH_LOG_DEBUG, "%s: %s", id, e.message);
	gv_argv_free(&a);
}

int gv_sandbox_stop(void *instance, const char *id, int64_t grace_ms, hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	int r = gv_validate_id(id, err);
	if (r < 0)
		return r;
	gv_proc_t sentry;
	if (gv_sentry_load(rt, id, &sentry) < 0 || !gv_proc_alive(&sentry))
		return 0; /* unknown, never started, or stopped already */
	int64_t t0 = mono_ms();
	if (grace_ms > 0) {
		kill_all(rt, id, "SIGTERM");
		if (gv_proc_wait(&sentry, grace_ms)) {
			rt->host->log(rt->host, HUTCH_LOG_DEBUG, "%s: stopped by SIGTERM in %lld ms",
				      id, (long long)(mono_ms() - t0));
			return 0;
		}
	}
	kill_all(rt, id, "SIGKILL");
	if (gv_proc_wait(&sentry, 5000))
		return 0;
	/* runsc could not reach it (a wedged sentry): end it on the host. */
	rt->host->log(rt->host, HUTCH_LOG_WARN, "%s: sandbox ignored SIGKILL via runsc; killing pid %d",
		      id, (int)sentry.pid);
	gv_proc_kill(&sentry);
	if (gv_proc_wait(&sentry, 5000))
		return 0;
	return hutch_err_set(err, ETIMEDOUT, "stop %s: sandbox process %d is still alive", id,
			     (int)sentry.pid);
}

/* ---- create and restore ---- */

static const char *annotation(const hutch_sandbox_spec_t *spec, const char *key)
{
	for (size_t i = 0; i < spec->n_annotations; i++)
		if (spec->annotations[i].key && strcmp(spec->annotations[i].key, key) == 0)
			return spec->annotations[i].value;
	return NULL;
}

static char *layers_text(const hutch_sandbox_spec_t *spec)
{
	strbuf_t sb = STRBUF_INIT;
	for (size_t i = 0; i < spec->n_layers; i++)
		sb_printf(&sb, "%s\n", spec->layers[i] ? spec->layers[i] : "");
	return sb_steal(&sb);
}

typedef struct limits {
	int64_t memory, cpu, pids, disk, host_pids;
} limits_t;

static int limits_resolve(const gv_runtime_t *rt, const hutch_sandbox_spec_t *spec,
			  limits_t *l, hutch_err_t *err)
{
	const gv_config_t *c = rt->cfg;
	l->memory = spec->memory_bytes > 0 ? spec->memory_bytes : c->default_memory_bytes;
	l->cpu = spec->cpu_millis > 0 ? spec->cpu_millis : c->default_cpu_millis;
	l->pids = spec->pids_max > 0 ? spec->pids_max : c->default_pids_max;
	l->disk = spec->disk_bytes > 0 ? spec->disk_bytes : c->default_disk_bytes;
	if (l->memory < MIN_MEMORY_BYTES)
		return hutch_err_set(err, EINVAL,
				     "memory %lld bytes is below the %lld MiB the sandbox's own runsc processes need",
				     (long long)l->memory, MIN_MEMORY_BYTES >> 20);
	if (l->cpu < 10)
		return hutch_err_set(err, EINVAL, "cpu %lld millicores: at least 10",
				     (long long)l->cpu);
	if (l->pids < 1 || l->pids > 4194304)
		return hutch_err_set(err, EINVAL, "pids_max %lld out of range", (long long)l->pids);
	if (l->disk < MIN_DISK_BYTES)
		return hutch_err_set(err, EINVAL, "disk %lld bytes: at least 4 MiB",
				     (long long)l->disk);
	l->host_pids = c->host_pids_base + c->host_pids_per_task * l->pids;
	return 0;
}

static int create_steps(gv_runtime_t *rt, const hutch_sandbox_spec_t *spec,
			const char *image_dir, const limits_t *lim, bool nvproxy,
			hutch_sandbox_status_t *status, hutch_err_t *err)
{
	const char *id = spec->id;
	_cleanup_free_ char *dir = gv_sb_path(rt, id, NULL);
	_cleanup_free_ char *log = gv_sb_path(rt, id, "runsc.log");
	_cleanup_free_ char *rootfs = gv_sb_path(rt, id, "rootfs");
	_cleanup_free_ char *layers_path = gv_sb_path(rt, id, "layers");
	_cleanup_free_ char *layers = layers_text(spec);
	int64_t t0 = mono_ms();
	int r;

	if ((r = gv_write_file(layers_path, layers, err)) < 0)
		return r;
	_cleanup_free_ char *seed = NULL;
	if (image_dir) {
		_cleanup_free_ char *saved = NULL;
		_cleanup_free_ char *saved_path = xasprintf("%s/hutch-layers", image_dir);
		if (gv_read_file(saved_path, &saved) < 0)
			return hutch_err_set(err, EINVAL, "%s is not a checkpoint of this runtime (no hutch-layers)",
					     image_dir);
		if (strcmp(saved, layers) != 0)
			return hutch_err_set(err, EINVAL,
					     "the checkpoint in %s was taken on other image layers", image_dir);
		seed = xasprintf("%s/rootfs-upper", image_dir);
	}
	if ((r = gv_rootfs_mount(rt, id, dir, spec->layers, spec->n_layers, lim->disk, seed, err)) < 0)
		return hutch_err_prefix(err, "root file system");

	/* /tmp: the rootfs's own directory, bound on itself, so that gVisor
	 * puts no memory-only tmpfs there (bundle.c). Not when the spec mounts
	 * something on /tmp, nor when the image's /tmp is not a directory. */
	_cleanup_free_ char *tmp_dir = xasprintf("%s/tmp", rootfs);
	bool tmp_bind = true;
	for (size_t i = 0; i < spec->n_mounts; i++)
		if (spec->mounts[i].target && strcmp(spec->mounts[i].target, "/tmp") == 0)
			tmp_bind = false;
	if (tmp_bind) {
		struct stat st;
		if (lstat(tmp_dir, &st) < 0 && errno == ENOENT) {
			if (mkdir(tmp_dir, 01777) < 0 || chmod(tmp_dir, 01777) < 0)
				return hutch_err_sys(err, errno, "mkdir %s", tmp_dir);
		} else if (lstat(tmp_dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
			tmp_bind = false;
		}
	}

	_cleanup_free_ char *own_netns = gv_sb_path(rt, id, "netns");
	const char *netns = spec->netns_path;
	if (!netns) {
		if ((r = gv_netns_create(own_netns, err)) < 0)
			return r;
		netns = own_netns;
	}
	_cleanup_close_ int netns_fd = -1;
	if ((r = gv_netns_open(netns, &netns_fd, err)) < 0)
		return r;

	/* private_network = "none": without a namespace from the network
	 * chain the sandbox can do without host sockets altogether: gVisor's
	 * own loopback (--network=none) is the same loopback-only view, with a
	 * smaller attack surface, and unlike --network=host it can be
	 * checkpointed; but hutchd's port forwards, which connect inside the
	 * namespace, cannot reach it. */
	gv_net_mode_t net = rt->netstack ? GV_NET_NETSTACK : GV_NET_HOST;
	bool wants_ports = spec->size >= offsetof(hutch_sandbox_spec_t, n_ports) + sizeof(size_t) &&
			   spec->n_ports > 0;
	if (!spec->netns_path && (strcmp(rt->cfg->private_network, "none") == 0 ||
				  (strcmp(rt->cfg->private_network, "auto") == 0 && !wants_ports)))
		net = GV_NET_NONE;
	if ((r = save_flags(rt, id, net, nvproxy, err)) < 0)
		return r;
	/* Addresses the sandbox must have on its loopback: on the namespace's
	 * lo when the sandbox uses it; inside gVisor's own stack, its init
	 * adds them. */
	bool has_lo = spec->size >= offsetof(hutch_sandbox_spec_t, n_loopback_addrs) + sizeof(size_t);
	size_t n_lo = has_lo ? spec->n_loopback_addrs : 0;
	bool init_net_admin = false;
	if (n_lo && net == GV_NET_HOST) {
		if ((r = gv_netns_add_loopback(netns_fd, spec->loopback_addrs, n_lo, err)) < 0)
			return r;
	} else if (n_lo) {
		init_net_admin = spec->argv != NULL;
	}
	/* Where a connection from the host reaches the sandbox's sockets:
	 * only with host networking are they the namespace's. */
	if (net == GV_NET_HOST) {
		_cleanup_free_ char *np = gv_sb_path(rt, id, "netns_path");
		_cleanup_free_ char *line = xasprintf("%s\n", netns);
		if ((r = gv_write_file(np, line, err)) < 0)
			return r;
	}
	_cleanup_free_ char *cg = gv_cgroup_rel(rt, id);
	gv_bundle_paths_t bp = {
		.rootfs = rootfs,
		.netns = netns,
		.idle_init = rt->idle_init,
		.tmp_dir = tmp_bind ? tmp_dir : NULL,
		.cgroups_path = cg,
		.memory_bytes = lim->memory,
		.cpu_millis = lim->cpu,
		.pids_max = lim->pids,
		.host_pids_max = lim->host_pids,
		.init_net_admin = init_net_admin,
	};
	if ((r = gv_bundle_write(dir, spec, &bp, err)) < 0)
		return hutch_err_prefix(err, "bundle");
	int64_t t_prep = mono_ms();

	/* runsc run --detach (or restore): the sandbox inherits this command's
	 * stdio as init's stdio, so nothing is captured here; runsc's own
	 * errors come from its log. In host-in-netns mode the command itself
	 * runs in the sandbox's namespace (the sentry's sockets are host
	 * sockets there). */
	_cleanup_free_ char *pidfile = gv_sb_path(rt, id, "sandbox.pid");
	gv_argv_t a = {0};
	gv_sandbox_cmd(rt, id, &a);
	if (image_dir) {
		gv_argv_add(&a, "restore");
		gv_argv_add(&a, "--detach");
		gv_argv_addf(&a, "--image-path=%s", image_dir);
	} else {
		/* One runsc process (create and start together) instead of
		 * two: a runsc invocation costs tens of milliseconds. */
		gv_argv_add(&a, "run");
		gv_argv_add(&a, "--detach");
	}
	gv_argv_addf(&a, "--bundle=%s", dir);
	gv_argv_addf(&a, "--pid-file=%s", pidfile);
	gv_argv_add_runsc_id(&a, id);
	gv_run_t run = GV_RUN_INIT;
	run.stdin_fd = spec->init_stdin_fd;
	run.stdout_fd = spec->init_stdout_fd;
	run.stderr_fd = spec->init_stderr_fd;
	/* runsc, its gofer and (but with netstack, which joins the
	 * namespace itself) the sentry start inside the sandbox's
	 * namespace, never in hutchd's. */
	run.netns_fd = net == GV_NET_NETSTACK ? -1 : netns_fd;
	run.log_path = log;
	run.timeout_ms = image_dir ? 300000 : 60000;
	const char *what = image_dir ? "runsc restore" : "runsc run";
	if (rt->helper)
		r = gv_supervised_run(rt, id, a.v, &run, what, err);
	else
		r = gv_runsc_run(rt, a.v, &run, what, err);
	gv_argv_free(&a);
	if (r < 0)
		return r;
	int64_t t_create = mono_ms();

	gv_proc_t sentry;
	if ((r = gv_sentry_record(rt, id, &sentry, err)) < 0)
		return r;
	if ((r = gv_cgroup_verify(rt, id, lim->memory, lim->cpu, lim->host_pids, err)) < 0)
		return r;
	gv_waiter_start(rt, id);
	rt->host->log(rt->host, HUTCH_LOG_DEBUG,
		      "%s: %s in %lld ms (prepare %lld, runsc %s %lld, start %lld)", id,
		      image_dir ? "restored" : "created", (long long)(mono_ms() - t0),
		      (long long)(t_prep - t0), image_dir ? "restore" : "run",
		      (long long)(t_create - t_prep), (long long)(mono_ms() - t_create));
	status_fill(rt, id, status);
	return 0;
}

static int create_or_restore(gv_runtime_t *rt, const hutch_sandbox_spec_t *spec,
			     const char *image_dir, hutch_sandbox_status_t *status,
			     hutch_err_t *err)
{
	int r = gv_validate_id(spec->id, err);
	if (r < 0)
		return r;
	if (strlen(rt->root_dir) + strlen("/runsc-" GV_RUNSC_ID_SUFFIX ".sock") + strlen(spec->id) >=
	    sizeof(((struct sockaddr_un *)0)->sun_path))
		return hutch_err_set(err, ENAMETOOLONG,
				     "sandbox id %s is too long for runsc's control socket under %s",
				     spec->id, rt->root_dir);
	limits_t lim = {0};
	if ((r = limits_resolve(rt, spec, &lim, err)) < 0)
		return r;
	const char *nv = annotation(spec, "gpu-nvidia.nvproxy");
	bool nvproxy = nv && strcmp(nv, "1") == 0;
	if (nvproxy && !rt->probe.has_nvproxy)
		return hutch_err_set(err, ENOTSUP, "GPU requested but runsc %s has no --nvproxy",
				     rt->probe.version);
	if (!(spec->argv && spec->argv[0]) && !rt->idle_init)
		return hutch_err_set(err, ENOTSUP,
				     "no argv given and no built-in idle init for this architecture");

	_cleanup_free_ char *dir = gv_sb_path(rt, spec->id, NULL);
	if (mkdir(dir, 0700) < 0) {
		if (errno == EEXIST)
			return hutch_err_set(err, EEXIST, "sandbox %s already exists", spec->id);
		return hutch_err_sys(err, errno, "mkdir %s", dir);
	}
	r = create_steps(rt, spec, image_dir, &lim, nvproxy, status, err);
	if (r < 0) {
		hutch_err_t e = {0};
		if (gv_sandbox_destroy(rt, spec->id, &e) < 0)
			rt->host->log(rt->host, HUTCH_LOG_ERROR,
				      "%s: cleanup after failed create: %s", spec->id, e.message);
	}
	return r;
}

int gv_sandbox_create(void *instance, const hutch_sandbox_spec_t *spec,
		      hutch_sandbox_status_t *status, hutch_err_t *err)
{
	return create_or_restore(instance, spec, NULL, status, err);
}

int gv_sandbox_restore(void *instance, const hutch_sandbox_spec_t *spec,
		       const char *image_dir, hutch_sandbox_status_t *status,
		       hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	if (!rt->probe.has_checkpoint)
		return hutch_err_set(err, ENOTSUP, "runsc %s has no checkpoint/restore",
				     rt->probe.version);
	if (!image_dir || image_dir[0] != '/')
		return hutch_err_set(err, EINVAL, "restore: image dir must be an absolute path");
	return create_or_restore(rt, spec, image_dir, status, err);
}

/* ---- commit ---- */

int gv_sandbox_commit(void *instance, const char *id, const char *dest_dir,
		      hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	int r = gv_validate_id(id, err);
	if (r < 0)
		return r;
	if (!dest_dir || dest_dir[0] != '/')
		return hutch_err_set(err, EINVAL, "commit: dest must be an absolute path");
	_cleanup_free_ char *dir = gv_sb_path(rt, id, NULL);
	if (!gv_exists(dir))
		return hutch_err_set(err, ENOENT, "commit: no sandbox %s", id);
	/* A running sandbox's layer is still changing: a copy of it would be
	 * no particular state. */
	gv_proc_t sentry;
	if (gv_sentry_load(rt, id, &sentry) == 0 && gv_proc_alive(&sentry))
		return hutch_err_set(err, EBUSY, "commit %s: the sandbox is still running (stop it first)", id);
	if ((r = gv_rootfs_commit(rt, dir, dest_dir, err)) < 0)
		return hutch_err_prefix(err, "commit %s", id);
	return 0;
}

/* ---- list ---- */

typedef struct id_set {
	char **v;
	size_t n, cap;
} id_set_t;

static void id_add(id_set_t *s, const char *id)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], id) == 0)
			return;
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->v = xrealloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = xstrdup(id);
}

int gv_sandbox_list(void *instance, hutch_sandbox_found_cb cb, void *data,
		    hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	id_set_t ids = {0};
	hutch_err_t e = {0};

	/* Our directories... */
	DIR *d = opendir(rt->sandboxes_dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.' && gv_validate_id(de->d_name, &e) == 0)
				id_add(&ids, de->d_name);
		closedir(d);
	}
	/* ...and whatever runsc still has state for under our root. */
	gv_argv_t a = {0};
	gv_argv_add(&a, rt->runsc_path);
	gv_argv_addf(&a, "--root=%s", rt->root_dir);
	gv_argv_add(&a, "list");
	gv_argv_add(&a, "-quiet");
	char *out = xmalloc(1 << 20);
	gv_run_t run = GV_RUN_INIT;
	run.capture_stdout = true;
	run.capture_stderr = true;
	run.out = out;
	run.out_cap = 1 << 20;
	int r = gv_runsc_run(rt, a.v, &run, "runsc list", err);
	gv_argv_free(&a);
	if (r == 0) {
		size_t sl = strlen(GV_RUNSC_ID_SUFFIX);
		for (char *save = NULL, *l = strtok_r(out, "\n", &save); l;
		     l = strtok_r(NULL, "\n", &save)) {
			size_t n = strlen(l);
			if (n <= sl || strcmp(l + n - sl, GV_RUNSC_ID_SUFFIX) != 0)
				continue; /* not one of ours */
			l[n - sl] = '\0';
			if (gv_validate_id(l, &e) == 0)
				id_add(&ids, l);
		}
	}
	free(out);
	for (size_t i = 0; i < ids.n; i++) {
		if (r == 0) {
			hutch_sandbox_status_t st = {.size = sizeof st};
			status_fill(rt, ids.v[i], &st);
			/* runsc state without our directory: a leftover that
			 * destroy will clean. */
			if (st.phase == HUTCH_PHASE_UNKNOWN)
				st.phase = HUTCH_PHASE_STOPPED;
			cb(data, ids.v[i], &st);
		}
		free(ids.v[i]);
	}
	free(ids.v);
	return r;
}
