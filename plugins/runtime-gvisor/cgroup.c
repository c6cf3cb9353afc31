/*
 * cgroup.c: the host cgroups of a sandbox.
 *
 * runsc creates the sandbox's cgroup from the bundle's linux.cgroupsPath
 * ("/<cgroup_parent>/<id>", an absolute path in every hierarchy) and writes
 * linux.resources into it; `runsc delete` removes it. What this file adds:
 *
 *   - detection of the layout: cgroup v2 when /sys/fs/cgroup is the unified
 *     hierarchy (what runsc itself checks), else v1 with one mount per
 *     controller (a hybrid host's /sys/fs/cgroup/unified is ignored, as runsc
 *     ignores it). The memory, cpu and pids controllers are required: a
 *     sandbox never runs without its limits.
 *   - a check after start that the limits really are in place;
 *   - usage and OOM counters for status (the sentry is one host process
 *     tree, so the host cgroup OOM killer kills the whole sandbox; the
 *     kernel's oom_kill counter is how we know);
 *   - removal of whatever a failed or crashed runsc left behind.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CGROUP_V2_ROOT "/sys/fs/cgroup"

typedef void (*mount_cb)(void *data, const char *mountpoint, const char *options);

/* Calls cb for every cgroup v1 mount: its mount point and super options. */
static void each_v1_mount(mount_cb cb, void *data)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		char fstype[32], source[256], superopts[512];
		if (sscanf(sep + 3, "%31s %255s %511s", fstype, source, superopts) != 3)
			continue;
		if (strcmp(fstype, "cgroup") != 0)
			continue;
		char mnt[PATH_MAX];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
			continue;
		cb(data, mnt, superopts);
	}
}

static bool has_option(const char *options, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = options; p && *p;) {
		const char *end = strchrnul(p, ',');
		if ((size_t)(end - p) == n && strncmp(p, name, n) == 0)
			return true;
		p = *end ? end + 1 : end;
	}
	return false;
}

static void note_controller(void *data, const char *mnt, const char *opts)
{
	gv_cgroups_t *cg = data;
	struct {
		const char *name;
		char *dst;
	} ctl[] = {
		{"memory", cg->memory},
		{"cpu", cg->cpu},
		{"cpuacct", cg->cpuacct},
		{"pids", cg->pids},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ctl); i++)
		if (!ctl[i].dst[0] && has_option(opts, ctl[i].name))
			snprintf(ctl[i].dst, sizeof cg->memory, "%s", mnt);
}

static int read_small(const char *path, char *buf, size_t cap)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = read(fd, buf, cap - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

int gv_cgroup_detect(gv_cgroups_t *cg, hutch_err_t *err)
{
	memset(cg, 0, sizeof *cg);
	struct statfs sf;
	if (statfs(CGROUP_V2_ROOT, &sf) < 0)
		return hutch_err_sys(err, errno, "cgroups: %s", CGROUP_V2_ROOT);
	if ((unsigned long)sf.f_type == CGROUP2_SUPER_MAGIC) {
		cg->mode = GV_CGROUP_V2;
		snprintf(cg->v2_root, sizeof cg->v2_root, "%s", CGROUP_V2_ROOT);
		char ctl[512];
		if (read_small(CGROUP_V2_ROOT "/cgroup.controllers", ctl, sizeof ctl) < 0)
			return hutch_err_sys(err, errno, "cgroups: read %s/cgroup.controllers",
					     CGROUP_V2_ROOT);
		char missing[128] = "";
		for (const char *const *c = (const char *const[]){"memory", "cpu", "pids", NULL};
		     *c; c++) {
			char *tok, *save = NULL, copy[512];
			bool found = false;
			snprintf(copy, sizeof copy, "%s", ctl);
			for (tok = strtok_r(copy, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save))
				found |= strcmp(tok, *c) == 0;
			if (!found)
				snprintf(missing + strlen(missing), sizeof missing - strlen(missing),
					 "%s%s", missing[0] ? ", " : "", *c);
		}
		if (missing[0])
			return hutch_err_set(err, ENOTSUP,
					     "cgroup v2 at %s lacks the %s controller(s); a sandbox never runs without its memory, cpu and pids limits",
					     CGROUP_V2_ROOT, missing);
		return 0;
	}
	cg->mode = GV_CGROUP_V1;
	each_v1_mount(note_controller, cg);
	char missing[128] = "";
	if (!cg->memory[0])
		strcat(missing, "memory");
	if (!cg->cpu[0])
		strcat(missing, missing[0] ? ", cpu" : "cpu");
	if (!cg->pids[0])
		strcat(missing, missing[0] ? ", pids" : "pids");
	if (missing[0])
		return hutch_err_set(err, ENOTSUP,
				     "cgroup v1: no hierarchy with the %s controller(s) is mounted; a sandbox never runs without its memory, cpu and pids limits",
				     missing);
	return 0;
}

char *gv_cgroup_rel(const gv_runtime_t *rt, const char *id)
{
	const char *parent = rt->cfg->cgroup_parent && *rt->cfg->cgroup_parent
				     ? rt->cfg->cgroup_parent
				     : "hutch";
	while (*parent == '/')
		parent++;
	return xasprintf("%s/%s", parent, id);
}

/* <mount>/<parent>/<id>/<file> for a v1 controller mount, or the v2 dir. */
static char *cg_file(const gv_runtime_t *rt, const char *v1_mount, const char *id,
		     const char *file)
{
	_cleanup_free_ char *rel = gv_cgroup_rel(rt, id);
	const char *base = rt->cgroups.mode == GV_CGROUP_V2 ? rt->cgroups.v2_root : v1_mount;
	return xasprintf("%s/%s/%s", base, rel, file);
}

static int read_int(const char *path, int64_t *out)
{
	char buf[64];
	int r = read_small(path, buf, sizeof buf);
	if (r < 0)
		return r;
	if (strncmp(buf, "max", 3) == 0) {
		*out = INT64_MAX;
		return 0;
	}
	char *end;
	long long v = strtoll(buf, &end, 10);
	if (end == buf)
		return -EINVAL;
	*out = v;
	return 0;
}

/* "key value" lines (memory.events, cpu.stat, memory.oom_control). */
static int read_keyed(const char *path, const char *key, int64_t *out)
{
	char buf[4096];
	int r = read_small(path, buf, sizeof buf);
	if (r < 0)
		return r;
	size_t kl = strlen(key);
	for (char *line = buf; *line;) {
		char *end = strchrnul(line, '\n');
		if (strncmp(line, key, kl) == 0 && line[kl] == ' ') {
			*out = strtoll(line + kl + 1, NULL, 10);
			return 0;
		}
		line = *end ? end + 1 : end;
	}
	return -ENOENT;
}

int gv_cgroup_verify(const gv_runtime_t *rt, const char *id, int64_t memory_bytes,
		     int64_t cpu_millis, int64_t host_pids_max, hutch_err_t *err)
{
	const gv_cgroups_t *cg = &rt->cgroups;
	bool v2 = cg->mode == GV_CGROUP_V2;
	int64_t page = sysconf(_SC_PAGESIZE);
	int64_t want_quota = cpu_millis * 100; /* per 100 ms period */
	int64_t v = 0;

	_cleanup_free_ char *mem = cg_file(rt, cg->memory, id,
					   v2 ? "memory.max" : "memory.limit_in_bytes");
	int r = read_int(mem, &v);
	if (r < 0)
		return hutch_err_sys(err, r, "cgroup check: %s", mem);
	if (v > memory_bytes || v < memory_bytes - page)
		return hutch_err_set(err, EIO, "cgroup check: %s is %lld, not the memory limit %lld",
				     mem, (long long)v, (long long)memory_bytes);

	_cleanup_free_ char *pids = cg_file(rt, cg->pids, id, "pids.max");
	r = read_int(pids, &v);
	if (r < 0)
		return hutch_err_sys(err, r, "cgroup check: %s", pids);
	if (v != host_pids_max)
		return hutch_err_set(err, EIO, "cgroup check: %s is %lld, not %lld", pids,
				     (long long)v, (long long)host_pids_max);

	if (v2) {
		_cleanup_free_ char *cpu = cg_file(rt, NULL, id, "cpu.max");
		char buf[64];
		r = read_small(cpu, buf, sizeof buf);
		if (r < 0)
			return hutch_err_sys(err, r, "cgroup check: %s", cpu);
		long long q = -1, p = -1;
		if (sscanf(buf, "%lld %lld", &q, &p) != 2 || q != want_quota || p != 100000)
			return hutch_err_set(err, EIO, "cgroup check: %s is \"%.*s\", not \"%lld 100000\"",
					     cpu, (int)strcspn(buf, "\n"), buf, (long long)want_quota);
	} else {
		_cleanup_free_ char *cpu = cg_file(rt, cg->cpu, id, "cpu.cfs_quota_us");
		r = read_int(cpu, &v);
		if (r < 0)
			return hutch_err_sys(err, r, "cgroup check: %s", cpu);
		if (v != want_quota)
			return hutch_err_set(err, EIO, "cgroup check: %s is %lld, not %lld", cpu,
					     (long long)v, (long long)want_quota);
	}
	return 0;
}

int64_t gv_cgroup_oom_kills(const gv_runtime_t *rt, const char *id)
{
	const gv_cgroups_t *cg = &rt->cgroups;
	int64_t n = 0;
	_cleanup_free_ char *p = cg_file(rt, cg->memory, id,
					 cg->mode == GV_CGROUP_V2 ? "memory.events"
								  : "memory.oom_control");
	return read_keyed(p, "oom_kill", &n) == 0 ? n : -1;
}

bool gv_cgroup_oom(const gv_runtime_t *rt, const char *id)
{
	return gv_cgroup_oom_kills(rt, id) > 0;
}

void gv_cgroup_stats(const gv_runtime_t *rt, const char *id,
		     hutch_sandbox_status_t *st)
{
	const gv_cgroups_t *cg = &rt->cgroups;
	bool v2 = cg->mode == GV_CGROUP_V2;
	int64_t v;
	st->memory_bytes = st->cpu_usage_ns = st->pids_current = -1;

	_cleanup_free_ char *mem = cg_file(rt, cg->memory, id,
					   v2 ? "memory.current" : "memory.usage_in_bytes");
	if (read_int(mem, &v) == 0)
		st->memory_bytes = v;
	if (v2) {
		_cleanup_free_ char *cpu = cg_file(rt, NULL, id, "cpu.stat");
		if (read_keyed(cpu, "usage_usec", &v) == 0)
			st->cpu_usage_ns = v * 1000;
	} else if (cg->cpuacct[0]) {
		_cleanup_free_ char *cpu = cg_file(rt, cg->cpuacct, id, "cpuacct.usage");
		if (read_int(cpu, &v) == 0)
			st->cpu_usage_ns = v;
	}
	_cleanup_free_ char *pids = cg_file(rt, cg->pids, id, "pids.current");
	if (read_int(pids, &v) == 0)
		st->pids_current = v;
	st->oom_kills = gv_cgroup_oom_kills(rt, id);
	if (st->oom_kills > 0)
		st->oom_killed = true;
}

typedef struct remove_ctx {
	const gv_runtime_t *rt;
	const char *id;
	int error;
	char path[PATH_MAX];
	bool exists_only;
	bool found;
} remove_ctx_t;

static void remove_in(remove_ctx_t *ctx, const char *base)
{
	_cleanup_free_ char *rel = gv_cgroup_rel(ctx->rt, ctx->id);
	_cleanup_free_ char *dir = xasprintf("%s/%s", base, rel);
	if (ctx->exists_only) {
		if (access(dir, F_OK) == 0)
			ctx->found = true;
		return;
	}
	/* A cgroup whose last task is still exiting refuses rmdir (EBUSY)
	 * for a moment. */
	for (int tries = 0; tries < 100; tries++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return;
		if (errno != EBUSY)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (!ctx->error) {
		ctx->error = errno;
		snprintf(ctx->path, sizeof ctx->path, "%s", dir);
	}
}

static void remove_v1(void *data, const char *mnt, const char *opts)
{
	(void)opts;
	remove_in(data, mnt);
}

int gv_cgroup_remove(const gv_runtime_t *rt, const char *id, hutch_err_t *err)
{
	remove_ctx_t ctx = {.rt = rt, .id = id};
	if (rt->cgroups.mode == GV_CGROUP_V2)
		remove_in(&ctx, rt->cgroups.v2_root);
	else
		each_v1_mount(remove_v1, &ctx);
	if (ctx.error)
		return hutch_err_sys(err, ctx.error, "remove cgroup %s", ctx.path);
	return 0;
}

static void make_parent_in(void *data, const char *mnt, const char *opts)
{
	(void)opts;
	const gv_runtime_t *rt = data;
	_cleanup_free_ char *rel = gv_cgroup_rel(rt, "x");
	rel[strlen(rel) - 2] = '\0'; /* "<parent>/x" -> "<parent>" */
	_cleanup_free_ char *dir = xasprintf("%s/%s", mnt, rel);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		rt->host->log(rt->host, HUTCH_LOG_WARN, "cgroup parent %s: %s", dir, strerror(errno));
}

void gv_cgroup_prepare(const gv_runtime_t *rt)
{
	/* runsc removes the cgroup directories it created when a sandbox is
	 * deleted; with cgroup v2 that includes a parent it had to create,
	 * which fails (EBUSY, retried for 5 s) while other sandboxes live in
	 * it. The parent is therefore made here, once, and never runsc's. */
	if (rt->cgroups.mode == GV_CGROUP_V2)
		make_parent_in((void *)rt, rt->cgroups.v2_root, NULL);
	else
		each_v1_mount(make_parent_in, (void *)rt);
}

bool gv_cgroup_exists(const gv_runtime_t *rt, const char *id)
{
	remove_ctx_t ctx = {.rt = rt, .id = id, .exists_only = true};
	if (rt->cgroups.mode == GV_CGROUP_V2)
		remove_in(&ctx, rt->cgroups.v2_root);
	else
		each_v1_mount(remove_v1, &ctx);
	return ctx.found;
}
