/*
 * plugin.c: the runtime-gvisor descriptor, its configuration, and the
 * instance's birth (probe, choices) and death.
 */
#include <dlfcn.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

static const char *const platform_choices[] = {"auto", "systrap", "ptrace", "kvm", NULL};
static const char *const network_choices[] = {"auto", "netstack", "host-in-netns", NULL};
static const char *const overlay_choices[] = {"none", "self", "memory", NULL};
static const char *const private_network_choices[] = {"auto", "none", "same", NULL};
static const char *const writable_layer_choices[] = {"disk", "memory", NULL};

#define F(type, key, def, member, desc)                                         \
	{type, key, def, offsetof(gv_config_t, member), desc, 0, NULL}
#define E(key, def, member, choices, desc)                                      \
	{HUTCH_CONFIG_ENUM, key, def, offsetof(gv_config_t, member), desc, 0, choices}

static const hutch_config_field_t config_fields[] = {
	F(HUTCH_CONFIG_STRING, "runsc", "\"runsc\"", runsc,
	  "runsc binary: a path, or a name looked up in PATH"),
	E("platform", "\"auto\"", platform, platform_choices,
	  "gVisor platform; auto: systrap if the probe starts a sandbox with it, else ptrace"),
	E("network", "\"auto\"", network, network_choices,
	  "auto: gVisor's netstack if the probe shows it works, else runsc --network=host inside the sandbox's own network namespace"),
	E("private_network", "\"auto\"", private_network, private_network_choices,
	  "a sandbox without a namespace from the network chain: same = like `network`, in its private loopback-only namespace (port forwards reach it); none = gVisor's own loopback only (runsc --network=none: no host sockets, checkpointable, no port forwards, ~25 ms faster to start); auto = none unless the sandbox exposes ports"),
	E("overlay", "\"none\"", overlay, overlay_choices,
	  "runsc --overlay2 for the root: none = writes land in the upper dir (disk limit holds); self/memory = gVisor's own overlay"),
	E("writable_layer", "\"disk\"", writable_layer, writable_layer_choices,
	  "disk = each sandbox's writable layer is an ext4 of disk_bytes on a loop device (needs mkfs.ext4); memory = a tmpfs, which counts against the sandbox's memory limit"),
	F(HUTCH_CONFIG_PATH, "disk_dir", NULL, disk_dir,
	  "where writable-layer images are made (a disk, not a tmpfs; default <state_dir>/disks); unlinked once mounted"),
	F(HUTCH_CONFIG_PATH, "root_dir", NULL, root_dir,
	  "runsc --root (its state); default <run_dir>/runsc"),
	F(HUTCH_CONFIG_PATH, "debug_log_dir", NULL, debug_log_dir,
	  "if set, runsc --debug logs go to <dir>/<id>.<command>.log"),
	F(HUTCH_CONFIG_STRING_LIST, "extra_flags", "[]", extra_flags,
	  "more runsc global flags, passed to every runsc call"),
	F(HUTCH_CONFIG_STRING, "cgroup_parent", "\"hutch\"", cgroup_parent,
	  "sandboxes' cgroups are /<cgroup_parent>/<id> in every hierarchy"),
	F(HUTCH_CONFIG_SIZE, "default_memory", "\"512Mi\"", default_memory_bytes,
	  "memory limit when the sandbox spec gives none (at least 64Mi)"),
	F(HUTCH_CONFIG_INT, "default_cpu_millis", "1000", default_cpu_millis,
	  "cpu quota in millicores when the spec gives none"),
	F(HUTCH_CONFIG_INT, "default_pids_max", "1024", default_pids_max,
	  "process limit inside the sandbox when the spec gives none"),
	F(HUTCH_CONFIG_SIZE, "default_disk", "\"1Gi\"", default_disk_bytes,
	  "size of the writable layer when the spec gives none"),
	F(HUTCH_CONFIG_INT, "host_pids_base", "128", host_pids_base,
	  "host pids cgroup limit = host_pids_base + host_pids_per_task * pids_max (the sentry's own threads)"),
	F(HUTCH_CONFIG_INT, "host_pids_per_task", "4", host_pids_per_task,
	  "see host_pids_base"),
	F(HUTCH_CONFIG_DURATION, "probe_timeout", "\"10s\"", probe_timeout_ms,
	  "longest a probe sandbox may take at startup"),
	F(HUTCH_CONFIG_BOOL, "probe_cache", "true", probe_cache,
	  "cache probe results in the state dir, keyed by the runsc binary and kernel"),
	F(HUTCH_CONFIG_BOOL, "probe_kvm", "false", probe_kvm,
	  "also probe --platform=kvm (hangs on some hosts; always probed when platform = kvm)"),
	F(HUTCH_CONFIG_BOOL, "exit_status", "true", exit_status,
	  "keep a `runsc wait` per sandbox to learn init's exit status"),
	F(HUTCH_CONFIG_STRING, "nvproxy_driver_version", NULL, nvproxy_driver_version,
	  "runsc --nvproxy-driver-version for GPU sandboxes (empty: autodetect)"),
	F(HUTCH_CONFIG_PATH, "helper", NULL, helper,
	  "runtime-gvisor-helper (reaps sandboxes, forwards signals to execs); default: next to the plugin .so"),
	{0},
};

static char *find_in_path(const char *name)
{
	if (strchr(name, '/'))
		return access(name, X_OK) == 0 ? realpath(name, NULL) : NULL;
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	for (const char *p = path; *p;) {
		const char *end = strchrnul(p, ':');
		if (end > p) {
			_cleanup_free_ char *cand = xasprintf("%.*s/%s", (int)(end - p), p, name);
			struct stat st;
			if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
				return realpath(cand, NULL);
		}
		p = *end ? end + 1 : end;
	}
	return NULL;
}

static void runtime_free(gv_runtime_t *rt)
{
	if (!rt)
		return;
	free(rt->runsc_path);
	free(rt->root_dir);
	free(rt->sandboxes_dir);
	free(rt->idle_init);
	free(rt->helper);
	free(rt->disk_dir);
	free(rt->mkfs_path);
	free(rt);
}

/* runtime-gvisor-helper lives next to this .so unless configured. */
static char *find_helper(const gv_config_t *c)
{
	if (c->helper && *c->helper)
		return access(c->helper, X_OK) == 0 ? xstrdup(c->helper) : NULL;
	Dl_info info;
	if (!dladdr((void *)find_helper, &info) || !info.dli_fname)
		return NULL;
	const char *slash = strrchr(info.dli_fname, '/');
	if (!slash)
		return NULL;
	char *path = xasprintf("%.*s/runtime-gvisor-helper", (int)(slash - info.dli_fname),
			       info.dli_fname);
	if (access(path, X_OK) != 0) {
		free(path);
		return NULL;
	}
	return path;
}

static int mkdir_one(const char *dir, hutch_err_t *err)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", dir);
	return 0;
}

static int choose(gv_runtime_t *rt, hutch_err_t *err)
{
	const gv_config_t *c = rt->cfg;
	const gv_probe_t *p = &rt->probe;
	if (strcmp(c->platform, "auto") == 0) {
		const gv_platform_t order[] = {GV_SYSTRAP, GV_PTRACE, GV_KVM};
		bool found = false;
		for (size_t i = 0; i < ARRAY_SIZE(order) && !found; i++)
			if (p->platform[order[i]] == GV_PROBE_OK) {
				rt->platform = order[i];
				found = true;
			}
		if (!found)
			return hutch_err_set(err, ENOTSUP,
					     "no gVisor platform starts a sandbox here: systrap: %s; ptrace: %s",
					     p->platform_error[GV_SYSTRAP],
					     p->platform_error[GV_PTRACE]);
	} else {
		gv_platform_t want = strcmp(c->platform, "kvm") == 0     ? GV_KVM
				     : strcmp(c->platform, "ptrace") == 0 ? GV_PTRACE
									  : GV_SYSTRAP;
		if (p->platform[want] != GV_PROBE_OK)
			return hutch_err_set(err, ENOTSUP,
					     "platform = \"%s\" is configured but a sandbox does not start with it: %s",
					     c->platform,
					     p->platform_error[want][0] ? p->platform_error[want] : "not probed");
		rt->platform = want;
	}
	if (strcmp(c->network, "netstack") == 0) {
		if (p->netstack != GV_PROBE_OK)
			return hutch_err_set(err, ENOTSUP,
					     "network = \"netstack\" is configured but gVisor's netstack does not work here: %s",
					     p->netstack_error[0] ? p->netstack_error : "not probed");
		rt->netstack = true;
	} else if (strcmp(c->network, "auto") == 0) {
		rt->netstack = p->netstack == GV_PROBE_OK;
	} else {
		rt->netstack = false;
	}
	return 0;
}

static const char *result_word(gv_probe_result_t r)
{
	return r == GV_PROBE_OK ? "yes" : r == GV_PROBE_FAILED ? "no" : "not probed";
}

static int gv_init(const hutch_host_t *host, const void *config, void **instance,
		   hutch_err_t *err)
{
	const gv_config_t *c = config;
	if (!host->run_dir || !host->state_dir)
		return hutch_err_set(err, EINVAL, "the host gave no run_dir/state_dir");
	if (!host->run || !host->spawn)
		return hutch_err_set(err, ENOTSUP, "the host table lacks run/spawn");
	gv_runtime_t *rt = xcalloc(1, sizeof *rt);
	rt->host = host;
	rt->cfg = c;
	_cleanup_free_ char *idle = xasprintf("%s/idle-init", host->run_dir);
	int r;

	const char *runsc = c->runsc && *c->runsc ? c->runsc : "runsc";
	rt->runsc_path = find_in_path(runsc);
	if (!rt->runsc_path) {
		r = hutch_err_set(err, ENOENT,
				  "runsc not found (runsc = \"%s\", looked up in PATH): install gVisor's runsc or set [plugin.runtime-gvisor] runsc",
				  runsc);
		goto fail;
	}
	rt->root_dir = c->root_dir && *c->root_dir ? xstrdup(c->root_dir)
						   : xasprintf("%s/runsc", host->run_dir);
	rt->sandboxes_dir = xasprintf("%s/sandboxes", host->run_dir);
	if ((r = mkdir_one(rt->root_dir, err)) < 0 || (r = mkdir_one(rt->sandboxes_dir, err)) < 0)
		goto fail;
	/* runsc puts its control socket at <root>/runsc-<id>.sock. */
	if (strlen(rt->root_dir) + strlen("/runsc-.sock") + 24 >=
	    sizeof(((struct sockaddr_un *)0)->sun_path)) {
		r = hutch_err_set(err, ENAMETOOLONG,
				  "runsc root %s is too long: runsc's control sockets (<root>/runsc-<id>.sock) would not fit in %zu bytes",
				  rt->root_dir, sizeof(((struct sockaddr_un *)0)->sun_path));
		goto fail;
	}
	for (char **f = c->extra_flags; f && *f; f++) {
		if (strcmp(*f, "--") == 0 || strchr(*f, '\n') || (*f)[0] != '-') {
			r = hutch_err_set(err, EINVAL, "extra_flags: `%s` is not a runsc global flag", *f);
			goto fail;
		}
	}
	if ((r = gv_cgroup_detect(&rt->cgroups, err)) < 0)
		goto fail;
	if (!c->cgroup_parent || !*c->cgroup_parent || strstr(c->cgroup_parent, "..") ||
	    c->cgroup_parent[0] == '/') {
		r = hutch_err_set(err, EINVAL, "cgroup_parent must be a relative cgroup path");
		goto fail;
	}
	gv_cgroup_prepare(rt);
	if ((r = gv_probe(rt, err)) < 0)
		goto fail;
	if ((r = choose(rt, err)) < 0)
		goto fail;

	hutch_err_t e = {0};
	if (gv_idle_init_write(idle, &e) == 0)
		rt->idle_init = steal_ptr(&idle);
	else
		host->log(host, HUTCH_LOG_WARN, "sandboxes need an argv: %s", e.message);

	rt->disk_dir = c->disk_dir && *c->disk_dir ? xstrdup(c->disk_dir)
						   : xasprintf("%s/disks", host->state_dir);
	if (strcmp(c->writable_layer, "disk") == 0) {
		char why[256];
		if (gv_disk_setup(rt, why, sizeof why) == 0)
			rt->layer_on_disk = true;
		else
			host->log(host, HUTCH_LOG_WARN,
				  "writable layers fall back to tmpfs (counted against the memory limit): %s",
				  why);
	}
	rt->helper = find_helper(c);
	if (!rt->helper)
		host->log(host, HUTCH_LOG_WARN,
			  "runtime-gvisor-helper not found%s%s: execs run plain `runsc exec`, which does not forward signals, and init's exit status comes late from `runsc wait`",
			  c->helper ? " at " : "", c->helper ? c->helper : " next to the plugin");

	const gv_probe_t *p = &rt->probe;
	host->log(host, HUTCH_LOG_INFO,
		  "runsc %s (%s): platform %s [systrap %s, ptrace %s, kvm %s]; network %s [netstack %s%s%s]; "
		  "cgroup v%d; overlay %s; checkpoint %s; nvproxy %s; probe %lld ms%s",
		  p->version, rt->runsc_path, gv_platform_name(rt->platform),
		  result_word(p->platform[GV_SYSTRAP]), result_word(p->platform[GV_PTRACE]),
		  result_word(p->platform[GV_KVM]),
		  rt->netstack ? "netstack" : "host-in-netns", result_word(p->netstack),
		  p->netstack_error[0] ? ": " : "", p->netstack_error,
		  rt->cgroups.mode == GV_CGROUP_V2 ? 2 : 1,
		  p->has_overlay2 ? c->overlay : "(no --overlay2)",
		  p->has_checkpoint ? "yes" : "no", p->has_nvproxy ? "yes" : "no",
		  (long long)p->probe_ms, p->from_cache ? " (cached)" : "");
	*instance = rt;
	return 0;
fail:
	runtime_free(rt);
	return r;
}

static void gv_fini(void *instance)
{
	runtime_free(instance);
}

static void gv_capabilities(void *instance, hutch_kv_cb emit, void *data)
{
	gv_runtime_t *rt = instance;
	const gv_probe_t *p = &rt->probe;
	char buf[64];
	emit(data, "runsc.version", p->version);
	emit(data, "runsc.path", rt->runsc_path);
	emit(data, "platform", gv_platform_name(rt->platform));
	for (int i = 0; i < GV_N_PLATFORMS; i++) {
		char key[64];
		snprintf(key, sizeof key, "platform.%s", gv_platform_name(i));
		emit(data, key, result_word(p->platform[i]));
	}
	emit(data, "network", rt->netstack ? "netstack" : "host-in-netns");
	const char *shared = rt->netstack ? "netstack" : "host-in-netns";
	emit(data, "network.private",
	     strcmp(rt->cfg->private_network, "none") == 0 ? "none"
	     : strcmp(rt->cfg->private_network, "same") == 0 ? shared
	     : rt->netstack ? "none, netstack with ports" : "none, host-in-netns with ports");
	emit(data, "network.netstack", result_word(p->netstack));
	if (p->netstack_error[0])
		emit(data, "network.netstack.error", p->netstack_error);
	emit(data, "cgroup", rt->cgroups.mode == GV_CGROUP_V2 ? "v2" : "v1");
	emit(data, "overlay", p->has_overlay2 ? rt->cfg->overlay : "unsupported");
	emit(data, "checkpoint", p->has_checkpoint ? "yes" : "no");
	emit(data, "gpu.nvproxy", p->has_nvproxy ? "yes" : "no");
	emit(data, "idle_init", rt->idle_init ? "built-in" : "none");
	emit(data, "writable_layer", rt->layer_on_disk ? "disk (ext4 on loop)" : "memory (tmpfs)");
	emit(data, "helper", rt->helper ? rt->helper : "none");
	emit(data, "exec.signal_forwarding", rt->helper ? "yes" : "no");
	snprintf(buf, sizeof buf, "%lld", (long long)p->probe_ms);
	emit(data, "probe.ms", buf);
	emit(data, "probe.cached", p->from_cache ? "yes" : "no");
}

static const hutch_runtime_ops_t runtime_ops = {
	.size = sizeof(hutch_runtime_ops_t),
	.sandbox_create = gv_sandbox_create,
	.sandbox_stop = gv_sandbox_stop,
	.sandbox_destroy = gv_sandbox_destroy,
	.sandbox_status = gv_sandbox_status,
	.exec_command = gv_exec_command,
	.sandbox_list = gv_sandbox_list,
	.capabilities = gv_capabilities,
	.sandbox_checkpoint = gv_sandbox_checkpoint,
	.sandbox_restore = gv_sandbox_restore,
	.sandbox_commit = gv_sandbox_commit,
};

static const hutch_plugin_t descriptor = {
	.size = sizeof(hutch_plugin_t),
	.abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR,
	.kind = HUTCH_PLUGIN_RUNTIME,
	.name = GV_PLUGIN_NAME,
	.version = GV_PLUGIN_VERSION,
	.description = "gVisor sandboxes through runsc (OCI), with overlay roots, cgroup limits and private network namespaces",
	.config = config_fields,
	.config_size = sizeof(gv_config_t),
	.init = gv_init,
	.fini = gv_fini,
	.ops = &runtime_ops,
};

HUTCH_PLUGIN_DEFINE(descriptor)
