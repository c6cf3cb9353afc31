/*
 * probe.c: what the installed runsc can do on this host, found out by
 * trying rather than by reading a version number.
 *
 *   1. `runsc --version`, `runsc flags`, `runsc help`: the version, whether
 *      --overlay2 and --nvproxy exist, whether checkpoint/restore exist.
 *   2. In parallel, one tiny sandbox per platform (systrap, ptrace, and kvm
 *      only when asked: it hangs on some hosts) and one with gVisor's own
 *      network stack in a fresh network namespace. A tiny sandbox is the
 *      host's / read-only running /bin/true with the same cgroup limits a
 *      real sandbox gets, so it also proves the cgroup setup works.
 *
 * This costs about 0.2 s on a 2-core host (the platform runs overlap), and
 * is cached in <state_dir>/probe-cache, keyed by the runsc binary (path,
 * size, mtime), the kernel release and the plugin version, so that a
 * daemon restart costs nothing. Only a probe that found a working platform
 * is cached.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"
#include "clock_ms.h"

#define CACHE_FORMAT "runtime-gvisor probe cache 1"

static const char *const result_names[] = {"not-run", "ok", "failed"};

const char *gv_platform_name(gv_platform_t p)
{
	switch (p) {
	case GV_SYSTRAP: return "systrap";
	case GV_PTRACE: return "ptrace";
	case GV_KVM: return "kvm";
	default: return "?";
	}
}

/* ---- the cache ---- */

static char *cache_key(const gv_runtime_t *rt)
{
	struct stat st;
	struct utsname u;
	if (stat(rt->runsc_path, &st) < 0 || uname(&u) < 0)
		return NULL;
	return xasprintf("%s|%lld|%lld.%09ld|%s|%s|kvm=%d", rt->runsc_path,
			 (long long)st.st_size, (long long)st.st_mtim.tv_sec,
			 st.st_mtim.tv_nsec, u.release, GV_PLUGIN_VERSION,
			 rt->cfg->probe_kvm || strcmp(rt->cfg->platform, "kvm") == 0);
}

static char *cache_path(const gv_runtime_t *rt)
{
	return rt->host->state_dir ? xasprintf("%s/probe-cache", rt->host->state_dir) : NULL;
}

static gv_probe_result_t parse_result(const char *s)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s, result_names[i]) == 0)
			return (gv_probe_result_t)i;
	return GV_PROBE_NOT_RUN;
}

static bool cache_load(const gv_runtime_t *rt, const char *key, gv_probe_t *out)
{
	_cleanup_free_ char *path = cache_path(rt);
	_cleanup_free_ char *text = NULL;
	if (!path || gv_read_file(path, &text) < 0)
		return false;
	gv_probe_t p = {0};
	bool key_ok = false, format_ok = false;
	for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		if (!eq) {
			format_ok |= strcmp(line, CACHE_FORMAT) == 0;
			continue;
		}
		*eq = '\0';
		const char *k = line, *v = eq + 1;
		if (strcmp(k, "key") == 0)
			key_ok = strcmp(v, key) == 0;
		else if (strcmp(k, "version") == 0)
			snprintf(p.version, sizeof p.version, "%s", v);
		else if (strcmp(k, "netstack") == 0)
			p.netstack = parse_result(v);
		else if (strcmp(k, "netstack.error") == 0)
			snprintf(p.netstack_error, sizeof p.netstack_error, "%s", v);
		else if (strcmp(k, "overlay2") == 0)
			p.has_overlay2 = strcmp(v, "yes") == 0;
		else if (strcmp(k, "nvproxy") == 0)
			p.has_nvproxy = strcmp(v, "yes") == 0;
		else if (strcmp(k, "checkpoint") == 0)
			p.has_checkpoint = strcmp(v, "yes") == 0;
		else if (strcmp(k, "probe_ms") == 0)
			p.probe_ms = strtoll(v, NULL, 10);
		for (int i = 0; i < GV_N_PLATFORMS; i++) {
			char name[64];
			snprintf(name, sizeof name, "platform.%s", gv_platform_name(i));
			if (strcmp(k, name) == 0)
				p.platform[i] = parse_result(v);
			snprintf(name, sizeof name, "platform.%s.error", gv_platform_name(i));
			if (strcmp(k, name) == 0)
				snprintf(p.platform_error[i], sizeof p.platform_error[i], "%s", v);
		}
	}
	if (!format_ok || !key_ok)
		return false;
	p.from_cache = true;
	*out = p;
	return true;
}

/* Values go one per line: keep newlines out of them. */
static void put(strbuf_t *sb, const char *k, const char *v)
{
	sb_printf(sb, "%s=", k);
	for (const char *p = v; *p; p++)
		sb_putc(sb, *p == '\n' ? ' ' : *p);
	sb_putc(sb, '\n');
}

static void cache_store(const gv_runtime_t *rt, const char *key, const gv_probe_t *p)
{
	_cleanup_free_ char *path = cache_path(rt);
	if (!path)
		return;
	_cleanup_sb_ strbuf_t sb = STRBUF_INIT;
	sb_printf(&sb, "%s\n", CACHE_FORMAT);
	put(&sb, "key", key);
	put(&sb, "version", p->version);
	for (int i = 0; i < GV_N_PLATFORMS; i++) {
		char name[64];
		snprintf(name, sizeof name, "platform.%s", gv_platform_name(i));
		put(&sb, name, result_names[p->platform[i]]);
		snprintf(name, sizeof name, "platform.%s.error", gv_platform_name(i));
		put(&sb, name, p->platform_error[i]);
	}
	put(&sb, "netstack", result_names[p->netstack]);
	put(&sb, "netstack.error", p->netstack_error);
	put(&sb, "overlay2", p->has_overlay2 ? "yes" : "no");
	put(&sb, "nvproxy", p->has_nvproxy ? "yes" : "no");
	put(&sb, "checkpoint", p->has_checkpoint ? "yes" : "no");
	sb_printf(&sb, "probe_ms=%lld\n", (long long)p->probe_ms);
	hutch_err_t e = {0};
	if (gv_write_file(path, sb.buf, &e) < 0)
		rt->host->log(rt->host, HUTCH_LOG_WARN, "probe cache not saved: %s", e.message);
}

/* ---- running the probes ---- */

typedef struct probe_job {
	const gv_runtime_t *rt;
	gv_argv_t argv;
	gv_run_t run;
	char out[65536];
	char errout[65536];
	hutch_err_t err;
	int status; /* 0 or -errno */
	char id[64];
	pthread_t thread;
	bool started;
} probe_job_t;

static void *probe_job_run(void *arg)
{
	probe_job_t *j = arg;
	j->run.out = j->out;
	j->run.out_cap = sizeof j->out;
	j->status = gv_runsc_run(j->rt, j->argv.v, &j->run, j->id[0] ? j->id : "probe",
				 &j->err);
	return NULL;
}

/* Runs a quick query command and returns its stdout in job->out. */
static int query(const gv_runtime_t *rt, const char *arg, probe_job_t *j,
		 hutch_err_t *err)
{
	memset(j, 0, sizeof *j);
	j->rt = rt;
	j->run = (gv_run_t)GV_RUN_INIT;
	j->run.capture_stdout = true;
	j->run.err_out = j->errout;
	j->run.err_out_cap = sizeof j->errout;
	j->run.timeout_ms = rt->cfg->probe_timeout_ms;
	gv_argv_add(&j->argv, rt->runsc_path);
	gv_argv_add(&j->argv, arg);
	probe_job_run(j);
	gv_argv_free(&j->argv);
	if (j->status < 0) {
		*err = j->err;
		return hutch_err_prefix(err, "`%s %s`", rt->runsc_path, arg);
	}
	return 0;
}

static bool has_flag(const char *help, const char *flag)
{
	size_t n = strlen(flag);
	for (const char *p = strstr(help, "\n  -"); p; p = strstr(p + 1, "\n  -")) {
		const char *name = p + 4;
		if (strncmp(name, flag, n) == 0 && (name[n] == '\n' || name[n] == ' '))
			return true;
	}
	return false;
}

static bool has_command(const char *help, const char *cmd)
{
	size_t n = strlen(cmd);
	for (const char *p = strchr(help, '\n'); p; p = strchr(p + 1, '\n')) {
		const char *s = p + 1;
		while (*s == ' ' || *s == '\t')
			s++;
		if (s != p + 1 && strncmp(s, cmd, n) == 0 && (s[n] == ' ' || s[n] == '\t'))
			return true;
	}
	return false;
}

static const char *true_binary(void)
{
	static const char *const candidates[] = {"/bin/true", "/usr/bin/true", "/bin/busybox",
						 NULL};
	for (const char *const *c = candidates; *c; c++)
		if (access(*c, X_OK) == 0)
			return *c;
	return NULL;
}

/* The probe sandbox's bundle: the host's / read-only, /bin/true, the
 * cgroup limits a real sandbox gets. */
static int probe_bundle(const gv_runtime_t *rt, const char *dir, const char *id,
			const char *netns, hutch_err_t *err)
{
	const char *t = true_binary();
	if (!t)
		return hutch_err_set(err, ENOENT, "probe: no /bin/true on the host to run");
	_cleanup_free_ char *cg = gv_cgroup_rel(rt, id);
	_cleanup_sb_ strbuf_t sb = STRBUF_INIT;
	sb_append(&sb, "{\"ociVersion\":\"1.0.2\",\"process\":{\"user\":{\"uid\":0,\"gid\":0},\"args\":[");
	sb_json_str(&sb, t);
	if (strstr(t, "busybox"))
		sb_append(&sb, ",\"true\"");
	sb_append(&sb, "],\"env\":[\"PATH=/usr/bin:/bin\"],\"cwd\":\"/\"},"
		       "\"root\":{\"path\":\"/\",\"readonly\":true},\"hostname\":\"probe\","
		       "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"}],"
		       "\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"ipc\"},{\"type\":\"uts\"},"
		       "{\"type\":\"mount\"},{\"type\":\"network\"");
	if (netns) {
		sb_append(&sb, ",\"path\":");
		sb_json_str(&sb, netns);
	}
	sb_append(&sb, "}],\"cgroupsPath\":");
	_cleanup_free_ char *cgabs = xasprintf("/%s", cg);
	sb_json_str(&sb, cgabs);
	sb_append(&sb, ",\"resources\":{\"memory\":{\"limit\":268435456},"
		       "\"cpu\":{\"quota\":100000,\"period\":100000},\"pids\":{\"limit\":512}}}}\n");
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "probe: mkdir %s", dir);
	_cleanup_free_ char *path = xasprintf("%s/config.json", dir);
	return gv_write_file(path, sb.buf, err);
}

static void sandbox_job(const gv_runtime_t *rt, probe_job_t *j, const char *base,
			const char *name, const char *platform, bool netstack,
			const char *netns, int netns_fd, int64_t timeout_ms)
{
	memset(j, 0, sizeof *j);
	j->rt = rt;
	snprintf(j->id, sizeof j->id, "hutch-probe-%d-%s", (int)getpid(), name);
	_cleanup_free_ char *dir = xasprintf("%s/%s", base, name);
	_cleanup_free_ char *log = xasprintf("%s/%s.log", base, name);
	j->run = (gv_run_t)GV_RUN_INIT;
	j->run.capture_stderr = true;
	j->run.timeout_ms = timeout_ms;
	j->run.netns_fd = netns_fd;
	j->run.log_path = NULL; /* its stderr is enough; and log may vanish */
	j->status = probe_bundle(rt, dir, j->id, netns, &j->err);
	if (j->status < 0)
		return;
	gv_argv_add(&j->argv, rt->runsc_path);
	gv_argv_addf(&j->argv, "--root=%s/root", base);
	gv_argv_addf(&j->argv, "--platform=%s", platform);
	gv_argv_add(&j->argv, netstack ? "--network=sandbox" : "--network=none");
	if (rt->probe.has_overlay2)
		gv_argv_add(&j->argv, "--overlay2=none");
	gv_argv_addf(&j->argv, "--log=%s", log);
	gv_argv_add(&j->argv, "run");
	gv_argv_addf(&j->argv, "--bundle=%s", dir);
	gv_argv_add(&j->argv, j->id);
	if (pthread_create(&j->thread, NULL, probe_job_run, j) == 0)
		j->started = true;
	else
		j->status = hutch_err_set(&j->err, EAGAIN, "probe: no thread");
}

/* After a probe that timed out (kvm hangs) runsc left state behind. */
static void sandbox_job_cleanup(const gv_runtime_t *rt, probe_job_t *j, const char *base)
{
	if (j->started)
		pthread_join(j->thread, NULL);
	if (j->status < 0 && j->argv.v) {
		gv_argv_t del = {0};
		gv_argv_add(&del, rt->runsc_path);
		gv_argv_addf(&del, "--root=%s/root", base);
		gv_argv_add(&del, "delete");
		gv_argv_add(&del, "--force");
		gv_argv_add(&del, j->id);
		gv_run_t run = GV_RUN_INIT;
		run.timeout_ms = 10000;
		hutch_err_t e = {0};
		gv_runsc_run(rt, del.v, &run, "probe cleanup", &e);
		gv_argv_free(&del);
	}
	if (j->id[0]) {
		hutch_err_t e = {0};
		if (gv_cgroup_remove(rt, j->id, &e) < 0)
			rt->host->log(rt->host, HUTCH_LOG_WARN, "probe: %s", e.message);
	}
	gv_argv_free(&j->argv);
}

static void record(gv_probe_result_t *res, char *msg, size_t cap, const probe_job_t *j)
{
	if (j->status == 0) {
		*res = GV_PROBE_OK;
		msg[0] = '\0';
	} else {
		*res = GV_PROBE_FAILED;
		snprintf(msg, cap, "%.*s", (int)cap - 1, j->err.message);
	}
}

static int probe_run(gv_runtime_t *rt, hutch_err_t *err)
{
	gv_probe_t *p = &rt->probe;
	const gv_config_t *c = rt->cfg;
	int64_t t0 = mono_ms();
	memset(p, 0, sizeof *p);

	/* 1: what the binary says about itself. */
	probe_job_t *q = xcalloc(1, sizeof *q);
	int r = query(rt, "--version", q, err);
	if (r < 0) {
		free(q);
		return r;
	}
	const char *v = strstr(q->out, "version ");
	snprintf(p->version, sizeof p->version, "%.*s", v ? (int)strcspn(v + 8, "\n") : 0,
		 v ? v + 8 : "");
	if ((r = query(rt, "flags", q, err)) < 0) {
		free(q);
		return r;
	}
	/* runsc prints its flags on stderr. */
	p->has_overlay2 = has_flag(q->out, "overlay2") || has_flag(q->errout, "overlay2");
	p->has_nvproxy = has_flag(q->out, "nvproxy") || has_flag(q->errout, "nvproxy");
	if ((r = query(rt, "help", q, err)) < 0) {
		free(q);
		return r;
	}
	p->has_checkpoint = (has_command(q->out, "checkpoint") && has_command(q->out, "restore")) ||
			    (has_command(q->errout, "checkpoint") && has_command(q->errout, "restore"));
	free(q);

	/* 2: tiny sandboxes, all at once. */
	_cleanup_free_ char *base = xasprintf("%s/probe-%d", rt->host->run_dir, (int)getpid());
	hutch_err_t e = {0};
	gv_remove_tree(base, &e);
	if (mkdir(base, 0700) < 0)
		return hutch_err_sys(err, errno, "probe: mkdir %s", base);
	_cleanup_free_ char *netns = xasprintf("%s/netns", base);
	int netns_fd = -1;
	hutch_err_t nerr = {0};
	bool have_netns = gv_netns_create(netns, &nerr) == 0 &&
			  gv_netns_open(netns, &netns_fd, &nerr) == 0;

	bool want_kvm = c->probe_kvm || strcmp(c->platform, "kvm") == 0;
	int64_t kvm_timeout = c->probe_timeout_ms < 2000 ? c->probe_timeout_ms : 2000;
	probe_job_t *jobs = xcalloc(GV_N_PLATFORMS + 1, sizeof *jobs);
	sandbox_job(rt, &jobs[GV_SYSTRAP], base, "systrap", "systrap", false, NULL, -1,
		    c->probe_timeout_ms);
	sandbox_job(rt, &jobs[GV_PTRACE], base, "ptrace", "ptrace", false, NULL, -1,
		    c->probe_timeout_ms);
	if (want_kvm)
		sandbox_job(rt, &jobs[GV_KVM], base, "kvm", "kvm", false, NULL, -1, kvm_timeout);
	probe_job_t *ns_job = &jobs[GV_N_PLATFORMS];
	if (have_netns)
		sandbox_job(rt, ns_job, base, "netstack", "ptrace", true, netns, netns_fd,
			    c->probe_timeout_ms);

	for (int i = 0; i < GV_N_PLATFORMS; i++) {
		if (i == GV_KVM && !want_kvm)
			continue;
		sandbox_job_cleanup(rt, &jobs[i], base);
		record(&p->platform[i], p->platform_error[i], sizeof p->platform_error[i],
		       &jobs[i]);
	}
	if (have_netns) {
		sandbox_job_cleanup(rt, ns_job, base);
		record(&p->netstack, p->netstack_error, sizeof p->netstack_error, ns_job);
		if (p->netstack == GV_PROBE_FAILED && p->platform[GV_PTRACE] != GV_PROBE_OK)
			p->netstack = GV_PROBE_NOT_RUN; /* says nothing about netstack */
	} else {
		p->netstack = GV_PROBE_FAILED;
		snprintf(p->netstack_error, sizeof p->netstack_error, "%.*s",
			 (int)sizeof p->netstack_error - 1, nerr.message);
	}
	free(jobs);
	if (netns_fd >= 0)
		close(netns_fd);
	gv_netns_remove(netns, &e);
	if (gv_remove_tree(base, &e) < 0)
		rt->host->log(rt->host, HUTCH_LOG_WARN, "probe: %s", e.message);
	p->probe_ms = mono_ms() - t0;
	return 0;
}

int gv_probe(gv_runtime_t *rt, hutch_err_t *err)
{
	_cleanup_free_ char *key = cache_key(rt);
	if (rt->cfg->probe_cache && key && cache_load(rt, key, &rt->probe))
		return 0;
	int r = probe_run(rt, err);
	if (r < 0)
		return r;
	bool any = false;
	for (int i = 0; i < GV_N_PLATFORMS; i++)
		any |= rt->probe.platform[i] == GV_PROBE_OK;
	if (any && key && rt->cfg->probe_cache)
		cache_store(rt, key, &rt->probe);
	return 0;
}
