/*
 * test_runtime_gvisor.c: the runtime-gvisor plugin against real runsc.
 *
 * The plugin .so is loaded through the core's own loader and host table
 * (core/plugin), configured from TOML like hutchd does, and driven through
 * its ops from this thread, which plays the role of a pool thread; a second
 * thread runs the libuv loop the host table needs for host->spawn.
 *
 * Each case is one CTest test: `test_runtime_gvisor <case>`. Every case
 * makes its own temp dir (run dir, busybox image layer) and names its
 * sandboxes t-<case>-<pid>-<n>, so cases run in parallel. On failure the
 * case destroys what it created before exiting.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cleanup.h"
#include "host_api.h"
#include "log.h"
#include "plugin_loader.h"
#include "proc.h"
#include "strbuf.h"
#include "toml.h"

#ifndef HUTCH_RT_PLUGIN_PATH
#error "HUTCH_RT_PLUGIN_PATH must name the built runtime-gvisor.so"
#endif
#ifndef HUTCH_RT_CACHE_DIR
#error "HUTCH_RT_CACHE_DIR must name a dir for the shared probe cache"
#endif

/* ---- failing ---- */

static const char *g_case = "?";
static void cleanup_all(void);

#define CHECK(cond, ...)                                                        \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d [%s] %s: ", __FILE__, __LINE__, \
				g_case, #cond);                                \
			fprintf(stderr, __VA_ARGS__);                          \
			fprintf(stderr, "\n");                                 \
			cleanup_all();                                         \
			exit(1);                                               \
		}                                                              \
	} while (0)

#define CHECK_OK(expr, e)                                                       \
	do {                                                                   \
		int _r = (expr);                                               \
		CHECK(_r == 0, "returned %d: %s", _r, (e)->message);           \
	} while (0)

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the loop thread ---- */

static uv_loop_t g_loop;
static host_core_t *g_core;
static uv_async_t g_stop;
static pthread_t g_loop_thread;
static pthread_mutex_t g_ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_ready_cond = PTHREAD_COND_INITIALIZER;
static bool g_ready;

static void on_stop(uv_async_t *a)
{
	uv_stop(a->loop);
}

static void *loop_main(void *arg)
{
	(void)arg;
	hutch_err_t e = {0};
	uv_loop_init(&g_loop);
	if (host_core_new(&g_loop, NULL, &g_core, &e) < 0) {
		fprintf(stderr, "host_core_new: %s\n", e.message);
		exit(1);
	}
	uv_async_init(&g_loop, &g_stop, on_stop);
	pthread_mutex_lock(&g_ready_lock);
	g_ready = true;
	pthread_cond_signal(&g_ready_cond);
	pthread_mutex_unlock(&g_ready_lock);
	uv_run(&g_loop, UV_RUN_DEFAULT);
	return NULL;
}

static void loop_start(void)
{
	pthread_create(&g_loop_thread, NULL, loop_main, NULL);
	pthread_mutex_lock(&g_ready_lock);
	while (!g_ready)
		pthread_cond_wait(&g_ready_cond, &g_ready_lock);
	pthread_mutex_unlock(&g_ready_lock);
}

/* ---- the plugin ---- */

typedef struct rt {
	host_ctx_t *ctx;
	plugin_t *plugin;
	const hutch_runtime_ops_t *ops;
	void *inst;
} rt_t;

static char g_base[256];       /* this case's temp dir */
static char g_layer[PATH_MAX]; /* busybox image layer */
static char g_run_root[PATH_MAX];
static char g_state_root[PATH_MAX];
static rt_t g_rt;

static int rt_load(rt_t *rt, const char *state_root, const char *config,
		   hutch_err_t *err)
{
	memset(rt, 0, sizeof *rt);
	int r = plugin_open(HUTCH_RT_PLUGIN_PATH, &rt->plugin, err);
	if (r < 0)
		return r;
	toml_value_t *table = NULL;
	toml_error_t te = {0};
	const char *text = config ? config : "";
	if (toml_parse(text, strlen(text), &table, &te) < 0) {
		plugin_close(rt->plugin);
		return hutch_err_set(err, EINVAL, "test config: %d:%d: %s", te.line, te.col,
				     te.message);
	}
	r = plugin_configure(rt->plugin, table, NULL, err);
	toml_free(table);
	if (r == 0)
		r = host_ctx_new(g_core, "runtime", "runtime-gvisor", state_root, g_run_root,
				 &rt->ctx, err);
	if (r == 0)
		r = plugin_start(rt->plugin, rt->ctx, err);
	if (r < 0) {
		plugin_close(rt->plugin);
		host_ctx_free(rt->ctx);
		memset(rt, 0, sizeof *rt);
		return r;
	}
	rt->ops = &rt->plugin->ops.runtime;
	rt->inst = rt->plugin->instance;
	return 0;
}

static void rt_unload(rt_t *rt)
{
	plugin_close(rt->plugin);
	host_ctx_free(rt->ctx);
	memset(rt, 0, sizeof *rt);
}

static char *sandbox_dir(const char *id)
{
	return xasprintf("%s/plugins/runtime-gvisor/sandboxes/%s", g_run_root, id);
}

static char *runsc_root(void)
{
	return xasprintf("%s/plugins/runtime-gvisor/runsc", g_run_root);
}

/* ---- sandboxes this case made (destroyed on failure) ---- */

#define MAX_IDS 64
static char *g_ids[MAX_IDS];
static int g_n_ids;
static pthread_mutex_t g_ids_lock = PTHREAD_MUTEX_INITIALIZER;

static char *new_id(void)
{
	pthread_mutex_lock(&g_ids_lock);
	char c[64];
	snprintf(c, sizeof c, "%s", g_case);
	for (char *p = c; *p; p++)
		if (*p == '_')
			*p = '-';
	char *id = xasprintf("t-%s-%d-%d", c, (int)getpid(), g_n_ids);
	g_ids[g_n_ids++] = id;
	pthread_mutex_unlock(&g_ids_lock);
	return id;
}

static char g_extra_mount[PATH_MAX]; /* a test's own mount, if any */
static bool remove_base(void);

/* On failure (and at the end): every sandbox of the case, the case's own
 * mount, and its temp dir. */
static void cleanup_all(void)
{
	static bool once;
	if (once)
		return;
	once = true;
	for (int i = 0; g_rt.ops && i < g_n_ids; i++) {
		hutch_err_t e = {0};
		if (g_rt.ops->sandbox_destroy(g_rt.inst, g_ids[i], &e) < 0)
			fprintf(stderr, "cleanup %s: %s\n", g_ids[i], e.message);
	}
	if (g_extra_mount[0]) {
		umount2(g_extra_mount, MNT_DETACH);
		g_extra_mount[0] = '\0';
	}
	if (g_base[0])
		remove_base();
}

/* ---- setup ---- */

static void build_layer(const char *dir)
{
	const char *subdirs[] = {"bin", "proc", "dev", "sys", "tmp", "etc", "root", "usr", NULL};
	CHECK(mkdir(dir, 0755) == 0, "mkdir %s: %s", dir, strerror(errno));
	for (const char **s = subdirs; *s; s++) {
		_cleanup_free_ char *d = xasprintf("%s/%s", dir, *s);
		CHECK(mkdir(d, 0755) == 0, "mkdir %s", d);
	}
	_cleanup_free_ char *tmp = xasprintf("%s/tmp", dir);
	chmod(tmp, 01777);
	_cleanup_free_ char *bb = xasprintf("%s/bin/busybox", dir);
	const char *cp[] = {"cp", "/bin/busybox", bb, NULL};
	hutch_err_t e = {0};
	CHECK_OK(proc_run_argv(cp, 10000, NULL, 0, &e), &e);
	char *list = xmalloc(1 << 16);
	const char *ls[] = {"/bin/busybox", "--list", NULL};
	CHECK_OK(proc_run_argv(ls, 10000, list, 1 << 16, &e), &e);
	for (char *save = NULL, *a = strtok_r(list, "\n", &save); a;
	     a = strtok_r(NULL, "\n", &save)) {
		if (strcmp(a, "busybox") == 0)
			continue;
		_cleanup_free_ char *link = xasprintf("%s/bin/%s", dir, a);
		CHECK(symlink("busybox", link) == 0, "symlink %s", link);
	}
	free(list);
	_cleanup_free_ char *passwd = xasprintf("%s/etc/passwd", dir);
	FILE *f = fopen(passwd, "w");
	CHECK(f, "write %s", passwd);
	fputs("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n", f);
	fclose(f);
}

static void setup(const char *state_root)
{
	snprintf(g_base, sizeof g_base, "/tmp/hutch-rt-XXXXXX");
	CHECK(mkdtemp(g_base), "mkdtemp: %s", strerror(errno));
	snprintf(g_run_root, sizeof g_run_root, "%s/run", g_base);
	snprintf(g_layer, sizeof g_layer, "%s/layer", g_base);
	snprintf(g_state_root, sizeof g_state_root, "%s", state_root ? state_root : HUTCH_RT_CACHE_DIR);
	CHECK(mkdir(g_run_root, 0700) == 0, "mkdir %s", g_run_root);
	mkdir(g_state_root, 0700);
	build_layer(g_layer);
	loop_start();
}

/* Removes the case's temp dir unless something is still mounted there. */
static bool remove_base(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	bool mounted = false;
	while (f && fgets(line, sizeof line, f))
		if (strstr(line, g_base))
			mounted = true;
	if (f)
		fclose(f);
	if (mounted) {
		fprintf(stderr, "leaving %s: something is still mounted there\n", g_base);
		return false;
	}
	const char *rm[] = {"rm", "-rf", "--", g_base, NULL};
	hutch_err_t e = {0};
	proc_run_argv(rm, 30000, NULL, 0, &e);
	return true;
}

static void teardown(void)
{
	/* Destroyed by the case already: this catches what it forgot. */
	for (int i = 0; g_rt.ops && i < g_n_ids; i++) {
		hutch_err_t e = {0};
		CHECK(g_rt.ops->sandbox_destroy(g_rt.inst, g_ids[i], &e) == 0, "final destroy %s: %s",
		      g_ids[i], e.message);
	}
	if (g_rt.plugin)
		rt_unload(&g_rt);
	uv_async_send(&g_stop);
	pthread_join(g_loop_thread, NULL);
	/* Nothing may be mounted below the case's dir any more. */
	CHECK(remove_base(), "a mount is left under %s", g_base);
}

/* ---- sandboxes ---- */

typedef struct sb_opts {
	const char *const *argv;
	int64_t memory, cpu, pids, disk;
	const char *netns_path;
	int stdin_fd, stdout_fd, stderr_fd;
	const hutch_mount_t *mounts;
	size_t n_mounts;
} sb_opts_t;

#define SB_OPTS_INIT {.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1}

static int sb_create_id(const char *id, const sb_opts_t *o, hutch_sandbox_status_t *st,
			hutch_err_t *e)
{
	const char *layers[] = {g_layer};
	hutch_kv_t env[] = {{"HUTCH_TEST", "1"}};
	hutch_sandbox_spec_t spec = {
		.size = sizeof spec,
		.id = id,
		.tenant = "test",
		.hostname = "sandbox",
		.layers = layers,
		.n_layers = 1,
		.argv = o->argv,
		.init_stdin_fd = o->stdin_fd,
		.init_stdout_fd = o->stdout_fd,
		.init_stderr_fd = o->stderr_fd,
		.env = env,
		.n_env = 1,
		.cpu_millis = o->cpu,
		.memory_bytes = o->memory,
		.pids_max = o->pids,
		.disk_bytes = o->disk,
		.mounts = o->mounts,
		.n_mounts = o->n_mounts,
		.netns_path = o->netns_path,
	};
	hutch_sandbox_status_t s = {.size = sizeof s};
	int r = g_rt.ops->sandbox_create(g_rt.inst, &spec, st ? st : &s, e);
	return r;
}

static char *sb_create(const sb_opts_t *o, hutch_sandbox_status_t *st)
{
	char *id = new_id();
	hutch_err_t e = {0};
	hutch_sandbox_status_t s = {.size = sizeof s};
	int r = sb_create_id(id, o, &s, &e);
	CHECK(r == 0, "create %s: %s", id, e.message);
	CHECK(s.phase == HUTCH_PHASE_RUNNING, "create %s: phase %d", id, s.phase);
	CHECK(s.pid > 0, "create %s: no pid", id);
	if (st)
		*st = s;
	return id;
}

static hutch_sandbox_status_t sb_status(const char *id)
{
	hutch_sandbox_status_t s = {.size = sizeof s};
	hutch_err_t e = {0};
	CHECK_OK(g_rt.ops->sandbox_status(g_rt.inst, id, &s, &e), &e);
	return s;
}

static void sb_destroy(const char *id)
{
	hutch_err_t e = {0};
	CHECK_OK(g_rt.ops->sandbox_stop(g_rt.inst, id, 2000, &e), &e);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e);
}

/* Runs argv in the sandbox the way the core would: the runtime's host
 * command with our stdio. Returns the exit code as the core reports it. */
typedef struct exec_result {
	int code;  /* exit code, or 128+N for a signal */
	char out[65536];
	char err[65536];
	int64_t ms;
} exec_result_t;

static void sb_exec_full(const char *id, const char *const *argv, const char *user,
			 const char *cwd, exec_result_t *res)
{
	hutch_exec_spec_t spec = {.size = sizeof spec, .argv = argv, .user = user, .cwd = cwd};
	hutch_command_t cmd = {.size = sizeof cmd};
	hutch_err_t e = {0};
	int64_t t0 = now_ms();
	CHECK_OK(g_rt.ops->exec_command(g_rt.inst, id, &spec, &cmd, &e), &e);
	CHECK(cmd.argv && cmd.argv[0], "exec_command gave no argv");
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = (const char *const *)cmd.argv,
		.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
		.netns_fd = cmd.netns_fd,
		.timeout_ms = 60000,
	};
	hutch_run_result_t rr = {
		.size = sizeof rr,
		.out = res->out, .out_cap = sizeof res->out,
		.err = res->err, .err_cap = sizeof res->err,
	};
	CHECK_OK(proc_run(&o, &rr, &e), &e);
	res->ms = now_ms() - t0;
	CHECK(!rr.timed_out, "exec %s timed out", argv[0]);
	if (rr.term_signal)
		res->code = 128 + rr.term_signal;
	else
		res->code = rr.exit_code;
	CHECK(cmd.signal_exit_as_128, "runsc reports signals as 128+N; the command must say so");
	strv_free(cmd.argv);
}

static exec_result_t *sb_exec(const char *id, const char *const *argv)
{
	static __thread exec_result_t res;
	sb_exec_full(id, argv, NULL, NULL, &res);
	return &res;
}

static exec_result_t *sb_sh(const char *id, const char *script)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	return sb_exec(id, argv);
}

static void chomp(char *s)
{
	size_t n = strlen(s);
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

/* ---- host-side observations ---- */

static bool path_exists(const char *p)
{
	return access(p, F_OK) == 0;
}

static bool mounted_under(const char *prefix)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	bool found = false;
	while (f && fgets(line, sizeof line, f)) {
		char mp[PATH_MAX];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 &&
		    strncmp(mp, prefix, strlen(prefix)) == 0)
			found = true;
	}
	if (f)
		fclose(f);
	return found;
}

/* Any cgroup directory named .../hutch/<id> in any mounted hierarchy. */
static bool cgroup_left(const char *id, char *where, size_t cap)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	bool found = false;
	while (f && fgets(line, sizeof line, f)) {
		char mp[PATH_MAX];
		char *sep = strstr(line, " - ");
		if (!sep || (strncmp(sep + 3, "cgroup ", 7) != 0 && strncmp(sep + 3, "cgroup2 ", 8) != 0))
			continue;
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		_cleanup_free_ char *d = xasprintf("%s/hutch/%s", mp, id);
		if (path_exists(d)) {
			snprintf(where, cap, "%s", d);
			found = true;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* Sum of Pss (KiB) of the host processes whose command line mentions id. */
static long pss_of(const char *id, int *n_procs)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	long total = 0;
	*n_procs = 0;
	while (d && (de = readdir(d))) {
		pid_t pid = atoi(de->d_name);
		if (pid <= 0 || pid == getpid())
			continue;
		char path[64], buf[8192];
		snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[n] = '\0';
		if (!strstr(buf, id))
			continue;
		snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
		FILE *f = fopen(path, "r");
		char line[256];
		while (f && fgets(line, sizeof line, f)) {
			long kb;
			if (sscanf(line, "Pss: %ld kB", &kb) == 1) {
				total += kb;
				(*n_procs)++;
			}
		}
		if (f)
			fclose(f);
	}
	if (d)
		closedir(d);
	return total;
}

/* A process still in the network namespace with inode ino. */
static pid_t netns_user(ino_t ino)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;
	while (d && (de = readdir(d))) {
		pid_t pid = atoi(de->d_name);
		if (pid <= 0)
			continue;
		char path[64];
		struct stat st;
		snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
		if (stat(path, &st) == 0 && st.st_ino == ino)
			found = pid;
	}
	if (d)
		closedir(d);
	return found;
}

/* A host process whose command line mentions id. */
static pid_t process_with(const char *id)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;
	while (d && (de = readdir(d))) {
		pid_t pid = atoi(de->d_name);
		if (pid <= 0 || pid == getpid())
			continue;
		char path[64], buf[8192];
		snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof buf - 1);
		close(fd);
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n; i++)
			if (!buf[i])
				buf[i] = ' ';
		buf[n] = '\0';
		if (strstr(buf, id))
			found = pid;
	}
	if (d)
		closedir(d);
	return found;
}

static bool runsc_knows(const char *id)
{
	_cleanup_free_ char *root = runsc_root();
	_cleanup_free_ char *flag = xasprintf("--root=%s", root);
	const char *argv[] = {"runsc", flag, "list", "-quiet", NULL};
	char out[65536];
	hutch_err_t e = {0};
	CHECK_OK(proc_run_argv(argv, 30000, out, sizeof out, &e), &e);
	/* The plugin names its runsc containers <id>.hutch. */
	_cleanup_free_ char *rid = xasprintf("%s.hutch", id);
	for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (strcmp(l, id) == 0 || strcmp(l, rid) == 0)
			return true;
	return false;
}

static void check_gone(const char *id, pid_t sentry)
{
	_cleanup_free_ char *dir = sandbox_dir(id);
	char where[PATH_MAX];
	CHECK(!mounted_under(dir), "a mount is left under %s", dir);
	CHECK(!path_exists(dir), "%s is left", dir);
	CHECK(!runsc_knows(id), "runsc still has state for %s", id);
	CHECK(!cgroup_left(id, where, sizeof where), "cgroup %s is left", where);
	if (sentry > 0) {
		char p[64];
		snprintf(p, sizeof p, "/proc/%d", (int)sentry);
		CHECK(!path_exists(p) || kill(sentry, 0) < 0, "sandbox process %d is alive",
		      (int)sentry);
	}
	pid_t left = process_with(id);
	CHECK(left == 0, "process %d still mentions %s", (int)left, id);
	/* No loop device still holds the sandbox's writable layer. */
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4) != 0)
			continue;
		char bf[PATH_MAX], name[256] = "";
		snprintf(bf, sizeof bf, "/sys/block/%s/loop/backing_file", de->d_name);
		FILE *f = fopen(bf, "r");
		if (f) {
			if (!fgets(name, sizeof name, f))
				name[0] = '\0';
			fclose(f);
		}
		_cleanup_free_ char *img = xasprintf("/%s.img", id);
		CHECK(!strstr(name, img), "%s still backs %s", name, de->d_name);
	}
	if (d)
		closedir(d);
	hutch_sandbox_status_t s = sb_status(id);
	CHECK(s.phase == HUTCH_PHASE_UNKNOWN, "status after destroy: phase %d", s.phase);
}

static const char *default_config =
	"probe_cache = true\n";

static void load_default(void)
{
	hutch_err_t e = {0};
	CHECK_OK(rt_load(&g_rt, g_state_root, default_config, &e), &e);
}

/* ====================================================================== */

static void emit_kv(void *data, const char *k, const char *v)
{
	strbuf_t *sb = data;
	sb_printf(sb, "%s=%s\n", k, v);
	fprintf(stderr, "  %s = %s\n", k, v);
}

static char *caps_text(void)
{
	strbuf_t sb = STRBUF_INIT;
	CHECK(g_rt.ops->capabilities, "no capabilities op");
	g_rt.ops->capabilities(g_rt.inst, emit_kv, &sb);
	return sb_steal(&sb);
}

static bool caps_has(const char *caps, const char *kv)
{
	_cleanup_free_ char *line = xasprintf("\n%s\n", kv);
	_cleanup_free_ char *text = xasprintf("\n%s", caps);
	return strstr(text, line) != NULL;
}

/* The probe: fresh (no cache), then cached; a missing runsc is refused. */
static void case_probe(void)
{
	setup(NULL);
	/* A state dir of its own: no probe cache yet. */
	_cleanup_free_ char *state = xasprintf("%s/state", g_base);
	CHECK(mkdir(state, 0700) == 0, "mkdir %s", state);
	hutch_err_t e = {0};
	int64_t t0 = now_ms();
	CHECK_OK(rt_load(&g_rt, state, default_config, &e), &e);
	int64_t fresh = now_ms() - t0;
	_cleanup_free_ char *caps = caps_text();
	CHECK(caps_has(caps, "probe.cached=no"), "first probe came from a cache");
	CHECK(caps_has(caps, "platform=systrap") || caps_has(caps, "platform=ptrace"),
	      "no working platform chosen:\n%s", caps);
	CHECK(strstr(caps, "runsc.version=0") || strstr(caps, "runsc.version=r"),
	      "no runsc version:\n%s", caps);
	/* The chosen network matches what the probe found. */
	if (caps_has(caps, "network.netstack=yes"))
		CHECK(caps_has(caps, "network=netstack"), "netstack works but is not used");
	else
		CHECK(caps_has(caps, "network=host-in-netns"), "fallback not chosen");
	rt_unload(&g_rt);

	t0 = now_ms();
	CHECK_OK(rt_load(&g_rt, state, default_config, &e), &e);
	int64_t cached = now_ms() - t0;
	_cleanup_free_ char *caps2 = caps_text();
	CHECK(caps_has(caps2, "probe.cached=yes"), "second init did not use the cache");
	fprintf(stderr, "probe: fresh %lld ms, cached %lld ms\n", (long long)fresh,
		(long long)cached);
	CHECK(fresh < 2000, "fresh probe took %lld ms", (long long)fresh);
	CHECK(cached < 200, "cached init took %lld ms", (long long)cached);
	rt_unload(&g_rt);

	rt_t bad;
	int r = rt_load(&bad, state, "runsc = \"/nonexistent/runsc\"\n", &e);
	CHECK(r < 0, "init with a missing runsc succeeded");
	CHECK(strstr(e.message, "runsc not found"), "unclear message: %s", e.message);
	fprintf(stderr, "missing runsc: %s\n", e.message);

	teardown();
}

/* gVisor's kernel, not the host's; only the sandbox's processes. */
static void case_kernel(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	char *id = sb_create(&o, NULL); /* no argv: the built-in idle init */
	struct utsname u;
	uname(&u);
	exec_result_t *r = sb_exec(id, (const char *const[]){"uname", "-r", NULL});
	CHECK(r->code == 0, "uname -r exited %d: %s", r->code, r->err);
	chomp(r->out);
	fprintf(stderr, "host kernel %s, sandbox kernel %s\n", u.release, r->out);
	CHECK(r->out[0] && strcmp(r->out, u.release) != 0, "sandbox sees the host kernel %s",
	      r->out);
	r = sb_sh(id, "dmesg | head -3");
	CHECK(strstr(r->out, "gVisor"), "dmesg does not say gVisor: %s", r->out);

	r = sb_exec(id, (const char *const[]){"ps", "-o", "pid,args", NULL});
	CHECK(r->code == 0, "ps exited %d: %s", r->code, r->err);
	fprintf(stderr, "ps in the sandbox:\n%s", r->out);
	int lines = 0;
	for (char *p = r->out; *p; p++)
		lines += *p == '\n';
	CHECK(lines == 3, "expected header + init + ps, got %d lines", lines - 1);
	CHECK(strstr(r->out, "hutch-idle-init"), "pid 1 is not the idle init");
	CHECK(!strstr(r->out, "test_runtime_gvisor") && !strstr(r->out, "runsc"),
	      "host processes visible");
	sb_destroy(id);
	teardown();
}

/* A host file is not visible; hostname and env are the spec's. */
static void case_canary(void)
{
	setup(NULL);
	load_default();
	_cleanup_free_ char *canary = xasprintf("/tmp/hutch-canary-%d", (int)getpid());
	FILE *f = fopen(canary, "w");
	CHECK(f, "create %s", canary);
	fputs("secret\n", f);
	fclose(f);
	sb_opts_t o = SB_OPTS_INIT;
	char *id = sb_create(&o, NULL);
	_cleanup_free_ char *script = xasprintf("cat %s; ls /tmp; hostname; echo env=$HUTCH_TEST", canary);
	exec_result_t *r = sb_sh(id, script);
	fprintf(stderr, "%s%s", r->out, r->err);
	CHECK(!strstr(r->out, "secret"), "the host's canary file is readable inside");
	CHECK(!strstr(r->out, canary + 5), "the canary is listed inside");
	CHECK(strstr(r->err, "No such file"), "cat did not fail as expected: %s", r->err);
	CHECK(strstr(r->out, "sandbox\n"), "hostname is not the spec's");
	CHECK(strstr(r->out, "env=1"), "spec env missing");
	/* Not the host's root either. */
	r = sb_sh(id, "ls /home /var /usr/lib 2>&1 | head -3; test -e /etc/hostname && echo has-hostname");
	CHECK(!strstr(r->out, "has-hostname"), "host /etc visible");
	unlink(canary);
	sb_destroy(id);
	teardown();
}

/* Writes land in the private layer, vanish at destroy; two sandboxes do not
 * see each other's files. */
static void case_private_layer(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	char *a = sb_create(&o, NULL);
	char *b = sb_create(&o, NULL);
	exec_result_t *r = sb_sh(a, "echo from-a > /written-by-a && cat /written-by-a");
	CHECK(r->code == 0 && strstr(r->out, "from-a"), "write in a: %d %s", r->code, r->err);
	_cleanup_free_ char *dir_a = sandbox_dir(a);
	_cleanup_free_ char *upper = xasprintf("%s/scratch/upper/written-by-a", dir_a);
	CHECK(path_exists(upper), "write did not land in the upper dir %s", upper);
	_cleanup_free_ char *in_layer = xasprintf("%s/written-by-a", g_layer);
	CHECK(!path_exists(in_layer), "write reached the image layer");
	r = sb_sh(b, "cat /written-by-a");
	CHECK(r->code != 0 && !strstr(r->out, "from-a"), "b reads a's file: %s", r->out);
	r = sb_sh(b, "ls /");
	CHECK(r->code == 0 && !strstr(r->out, "written-by-a"), "b lists a's file: %s", r->out);
	/* Deleting an image file in a hides it there only. */
	r = sb_sh(a, "rm /bin/vi && test ! -e /bin/vi && echo gone");
	CHECK(strstr(r->out, "gone"), "rm in a: %s", r->err);
	r = sb_sh(b, "test -e /bin/vi && echo still");
	CHECK(strstr(r->out, "still"), "a's delete leaked into b");
	_cleanup_free_ char *vi = xasprintf("%s/bin/vi", g_layer);
	struct stat st;
	CHECK(lstat(vi, &st) == 0, "a's delete reached the image layer");
	sb_destroy(a);
	CHECK(!path_exists(upper), "upper dir survived destroy");
	sb_destroy(b);
	teardown();
}

/* The memory limit holds and an OOM is reported as such. */
static void case_memory(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	o.memory = 128ll << 20;
	char *id = sb_create(&o, NULL);
	exec_result_t *r = sb_sh(id, "grep MemTotal /proc/meminfo");
	fprintf(stderr, "inside: %s", r->out);
	CHECK(strstr(r->out, "131072 kB"), "MemTotal does not show the limit: %s", r->out);
	hutch_sandbox_status_t s = sb_status(id);
	CHECK(!s.oom_killed, "OOM before the bomb");
	CHECK(s.memory_bytes > 0 && s.memory_bytes < (128ll << 20), "usage %lld",
	      (long long)s.memory_bytes);
	/* dd fills a 512 MiB buffer from /dev/zero: touches every page. */
	r = sb_sh(id, "dd if=/dev/zero of=/dev/null bs=512M count=1 && echo survived");
	fprintf(stderr, "bomb: exit %d, out %s, err %s\n", r->code, r->out, r->err);
	CHECK(!strstr(r->out, "survived"), "a 512 MiB allocation succeeded under a 128 MiB limit");
	s = sb_status(id);
	fprintf(stderr, "after the bomb: phase %d oom_killed %d exit %d\n", s.phase, s.oom_killed,
		s.exit_code);
	CHECK(s.oom_killed, "the OOM is not reported");
	sb_destroy(id);

	/* A shell that grows a string: smaller steps, the same end. */
	id = sb_create(&o, NULL);
	r = sb_sh(id, "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x$x$x; done");
	s = sb_status(id);
	fprintf(stderr, "string bomb: exit %d err %s; phase %d oom_killed %d\n", r->code, r->err,
		s.phase, s.oom_killed);
	CHECK(r->code != 0, "the string bomb ended well?");
	CHECK(s.oom_killed, "the OOM is not reported");
	sb_destroy(id);
	teardown();
}

/* A fork bomb stops at pids_max inside; the sandbox lives on. */
static void case_pids(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	o.pids = 32;
	char *id = sb_create(&o, NULL);
	exec_result_t *r = sb_sh(id, "i=0; while [ $i -lt 200 ]; do sleep 4 & i=$((i+1)); done; echo spawned-all");
	fprintf(stderr, "bomb: exit %d err %.200s\n", r->code, r->err);
	CHECK(!strstr(r->out, "spawned-all"), "200 processes started under pids_max 32");
	CHECK(strstr(r->err, "fork") || strstr(r->err, "Resource"), "no fork failure seen: %s",
	      r->err);
	/* While the sleeps live: count them with one process. */
	r = sb_exec(id, (const char *const[]){"ps", NULL});
	int n = -1;
	for (char *p = r->out; *p; p++)
		n += *p == '\n';
	hutch_sandbox_status_t s = sb_status(id);
	fprintf(stderr, "ps: exit %d, %d processes inside; host pids %lld\n", r->code, n,
		(long long)s.pids_current);
	CHECK(s.phase == HUTCH_PHASE_RUNNING, "the sandbox died of the fork bomb (phase %d)",
	      s.phase);
	CHECK(r->code != 0 || (n >= 20 && n <= 33), "%d processes inside", n);
	CHECK(s.pids_current > 0 && s.pids_current <= 128 + 4 * 32, "host pids %lld",
	      (long long)s.pids_current);
	/* Once they are gone the sandbox works as before. */
	usleep(4500 * 1000);
	r = sb_sh(id, "ps | wc -l");
	CHECK(r->code == 0 && atoi(r->out) <= 5, "after the bomb: exit %d, %s lines, %s", r->code,
	      r->out, r->err);
	sb_destroy(id);
	teardown();
}

/* Exit codes and signals through the exec command. */
static void case_exit_codes(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	char *id = sb_create(&o, NULL);
	exec_result_t *r = sb_sh(id, "exit 7");
	CHECK(r->code == 7, "exit 7 -> %d", r->code);
	r = sb_sh(id, "kill -KILL $$");
	CHECK(r->code == 128 + SIGKILL, "SIGKILL -> %d", r->code);
	r = sb_sh(id, "kill -TERM $$");
	CHECK(r->code == 128 + SIGTERM, "SIGTERM -> %d", r->code);
	r = sb_exec(id, (const char *const[]){"/no/such/binary", NULL});
	fprintf(stderr, "missing binary: exit %d: %s", r->code, r->err);
	CHECK(r->code != 0, "a missing binary succeeded");

	/* A signal sent to the host command reaches the process. */
	const char *argv[] = {"sleep", "30", NULL};
	hutch_exec_spec_t spec = {.size = sizeof spec, .argv = argv};
	hutch_command_t cmd = {.size = sizeof cmd};
	hutch_err_t e = {0};
	CHECK_OK(g_rt.ops->exec_command(g_rt.inst, id, &spec, &cmd, &e), &e);
	hutch_spawn_opts_t so = {.size = sizeof so, .argv = (const char *const *)cmd.argv,
				 .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .netns_fd = -1};
	pid_t pid;
	CHECK_OK(proc_spawn(&so, &pid, NULL, &e), &e);
	usleep(500 * 1000);
	int64_t t0 = now_ms();
	kill(pid, SIGTERM);
	int st;
	waitpid(pid, &st, 0);
	int64_t dt = now_ms() - t0;
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM,
	      "SIGTERM to runsc exec: status 0x%x", st);
	CHECK(dt < 2000, "runsc exec took %lld ms to end", (long long)dt);
	strv_free(cmd.argv);
	r = sb_sh(id, "ps -o args | grep -c '^sleep 3[0]' || true");
	CHECK(atoi(r->out) == 0, "the sleep survived the forwarded SIGTERM");

	/* User and cwd. */
	exec_result_t res;
	sb_exec_full(id, (const char *const[]){"/bin/sh", "-c", "id -u; pwd", NULL}, "65534:65534",
		     "/tmp", &res);
	CHECK(strstr(res.out, "65534\n/tmp"), "user/cwd not applied: %s %s", res.out, res.err);

	/* Timing: exec of `true`, p50 of 9. */
	int64_t times[9];
	for (int i = 0; i < 9; i++) {
		r = sb_exec(id, (const char *const[]){"true", NULL});
		CHECK(r->code == 0, "true -> %d", r->code);
		times[i] = r->ms;
	}
	for (int i = 0; i < 9; i++)
		for (int j = i + 1; j < 9; j++)
			if (times[j] < times[i]) {
				int64_t t = times[i];
				times[i] = times[j];
				times[j] = t;
			}
	fprintf(stderr, "exec `true`: p50 %lld ms (min %lld, max %lld)\n", (long long)times[4],
		(long long)times[0], (long long)times[8]);
	sb_destroy(id);
	teardown();
}

/* The writable layer is disk_bytes and a write beyond it gets ENOSPC. */
static void case_disk(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	o.disk = 16ll << 20;
	char *id = sb_create(&o, NULL);
	exec_result_t *r = sb_sh(id, "dd if=/dev/zero of=/fill bs=1M count=64; echo dd=$?; ls -l /fill");
	fprintf(stderr, "%s%s", r->out, r->err);
	CHECK(strstr(r->err, "No space left on device"), "no ENOSPC: %s", r->err);
	CHECK(!strstr(r->out, "dd=0"), "dd succeeded past the limit");
	long long size = 0;
	char *l = strstr(r->out, "/fill");
	CHECK(l, "no /fill");
	/* ls -l: perms links user group size ... */
	sscanf(r->out + (strstr(r->out, "\n") - r->out) + 1, "%*s %*s %*s %*s %lld", &size);
	CHECK(size > 0 && size <= (16ll << 20), "/fill is %lld bytes", size);
	/* Deleting frees the space again. */
	r = sb_sh(id, "rm /fill && dd if=/dev/zero of=/again bs=1M count=8 2>/dev/null && echo ok && rm /again");
	CHECK(strstr(r->out, "ok"), "space not freed: %s", r->err);
	/* /tmp is part of the writable layer too (gVisor would otherwise put
	 * a tmpfs there that only the memory limit bounds). */
	r = sb_sh(id, "cat /proc/mounts; dd if=/dev/zero of=/tmp/fill bs=1M count=64; echo dd=$?");
	fprintf(stderr, "%s%s", r->out, r->err);
	CHECK(strstr(r->err, "No space left on device") && !strstr(r->out, "dd=0"),
	      "/tmp is not bounded by the disk limit");
	sb_destroy(id);

	/* The writable layer is not the memory limit: 300 MB written under a
	 * 128 MiB memory limit (on a tmpfs this was an OOM kill). */
	o.disk = 512ll << 20;
	o.memory = 128ll << 20;
	id = sb_create(&o, NULL);
	r = sb_sh(id, "dd if=/dev/zero of=/fill bs=1M count=300 2>&1; echo dd=$?; ls -l /fill");
	hutch_sandbox_status_t s = sb_status(id);
	fprintf(stderr, "300 MB under 128 MiB: %s phase %d oom %d\n", r->out, s.phase, s.oom_killed);
	CHECK(strstr(r->out, "dd=0") && strstr(r->out, "314572800"), "the write failed: %s", r->out);
	CHECK(s.phase == HUTCH_PHASE_RUNNING && !s.oom_killed, "disk writes OOM-killed the sandbox");
	sb_destroy(id);
	teardown();
}

/* init's stdio is the core's fds; runsc's own chatter stays off them. */
static void case_init_stdio(void)
{
	setup(NULL);
	load_default();
	int in[2], out[2];
	CHECK(pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0, "pipe");
	sb_opts_t o = SB_OPTS_INIT;
	const char *argv[] = {"/bin/sh", "-c",
			      "echo hello-from-init; read line; echo got:$line; sleep 600", NULL};
	o.argv = argv;
	o.stdin_fd = in[0];
	o.stdout_fd = out[1];
	char *id = sb_create(&o, NULL);
	close(in[0]);
	close(out[1]);
	CHECK(write(in[1], "ping\n", 5) == 5, "write");
	char buf[256] = "";
	size_t n = 0;
	int64_t deadline = now_ms() + 10000;
	while (!strstr(buf, "got:ping") && now_ms() < deadline && n < sizeof buf - 1) {
		ssize_t k = read(out[0], buf + n, sizeof buf - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
		buf[n] = '\0';
	}
	fprintf(stderr, "init said: %s", buf);
	CHECK(strcmp(buf, "hello-from-init\ngot:ping\n") == 0, "init's stdout is %s", buf);
	hutch_err_t e = {0};
	hutch_sandbox_status_t s = sb_status(id);
	CHECK(s.phase == HUTCH_PHASE_RUNNING, "phase %d", s.phase);
	/* SIGTERM ends the sleep, and the shell with it. */
	int64_t t0 = now_ms();
	CHECK_OK(g_rt.ops->sandbox_stop(g_rt.inst, id, 5000, &e), &e);
	int64_t dt = now_ms() - t0;
	fprintf(stderr, "stop of sh+sleep: %lld ms\n", (long long)dt);
	s = sb_status(id);
	CHECK(s.phase == HUTCH_PHASE_STOPPED, "phase %d after stop", s.phase);
	/* stdout reaches EOF: nothing in the sandbox holds it any more. */
	ssize_t k = read(out[0], buf, sizeof buf);
	CHECK(k == 0, "init's stdout still open after stop (%zd)", k);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e);
	close(in[1]);
	close(out[0]);

	/* An init that ignores SIGTERM: stop waits the grace, then SIGKILL. */
	o = (sb_opts_t)SB_OPTS_INIT;
	o.argv = (const char *const[]){"/bin/sh", "-c",
				       "trap '' TERM; touch /tmp/trapped; while true; do sleep 1; done", NULL};
	id = sb_create(&o, NULL);
	for (int i = 0; i < 100 && sb_sh(id, "test -e /tmp/trapped")->code != 0; i++)
		usleep(50 * 1000);
	t0 = now_ms();
	CHECK_OK(g_rt.ops->sandbox_stop(g_rt.inst, id, 700, &e), &e);
	dt = now_ms() - t0;
	s = sb_status(id);
	fprintf(stderr, "stop of a SIGTERM-ignoring init, 700 ms grace: %lld ms\n", (long long)dt);
	CHECK(s.phase == HUTCH_PHASE_STOPPED, "phase %d after stop", s.phase);
	CHECK(dt >= 650 && dt < 5000, "stop took %lld ms", (long long)dt);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e);

	/* An init that exits by itself: its status is kept. */
	const char *argv2[] = {"/bin/sh", "-c", "sleep 1; exit 5", NULL};
	o = (sb_opts_t)SB_OPTS_INIT;
	o.argv = argv2;
	id = sb_create(&o, NULL);
	deadline = now_ms() + 10000;
	while (sb_status(id).phase == HUTCH_PHASE_RUNNING && now_ms() < deadline)
		usleep(50 * 1000);
	s = sb_status(id);
	CHECK(s.phase == HUTCH_PHASE_STOPPED, "phase %d", s.phase);
	for (int i = 0; i < 50 && s.exit_code == -1; i++) {
		usleep(100 * 1000);
		s = sb_status(id);
	}
	CHECK(s.exit_code == 5, "init's exit code is %d, not 5", s.exit_code);
	sb_destroy(id);
	teardown();
}

/* stop + destroy leave nothing behind. */
static void case_cleanup(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	hutch_sandbox_status_t s;
	int64_t t0 = now_ms();
	char *id = sb_create(&o, &s);
	int64_t t_create = now_ms() - t0;
	pid_t sentry = s.pid;
	_cleanup_free_ char *dir = sandbox_dir(id);
	_cleanup_free_ char *netns = xasprintf("%s/netns", dir);
	CHECK(mounted_under(dir), "nothing mounted for a running sandbox?");
	char where[PATH_MAX];
	CHECK(cgroup_left(id, where, sizeof where), "no cgroup for a running sandbox?");
	CHECK(runsc_knows(id), "runsc does not know the sandbox");
	CHECK(path_exists(netns), "no private netns");

	/* The namespace the sentry runs in (runsc makes a fresh one inside the
	 * private one with --network=none). */
	struct stat nst;
	char nspath[64];
	snprintf(nspath, sizeof nspath, "/proc/%d/ns/net", (int)sentry);
	CHECK(stat(nspath, &nst) == 0, "stat %s", nspath);
	CHECK(netns_user(nst.st_ino) > 0, "nothing runs in the sandbox's namespace?");

	/* The memory an idle sandbox costs on the host. */
	usleep(500 * 1000);
	s = sb_status(id);
	int n_procs;
	long pss = pss_of(id, &n_procs);
	fprintf(stderr, "idle sandbox: cgroup memory %lld KiB, Pss %ld KiB in %d host processes (sentry, gofer, supervisor), host pids %lld\n",
		(long long)s.memory_bytes / 1024, pss, n_procs, (long long)s.pids_current);

	hutch_err_t e = {0};
	t0 = now_ms();
	CHECK_OK(g_rt.ops->sandbox_stop(g_rt.inst, id, 5000, &e), &e);
	int64_t t_stop = now_ms() - t0;
	CHECK(t_stop < 2000, "the idle init did not end on SIGTERM (%lld ms)", (long long)t_stop);
	s = sb_status(id);
	CHECK(s.phase == HUTCH_PHASE_STOPPED, "phase %d after stop", s.phase);
	/* runsc wait learns init's status a moment after the sandbox ends. */
	for (int i = 0; i < 50 && s.exit_code == -1; i++) {
		usleep(100 * 1000);
		s = sb_status(id);
	}
	CHECK(s.exit_code == 0, "idle init's exit %d", s.exit_code);
	/* Stopping again is fine. */
	CHECK_OK(g_rt.ops->sandbox_stop(g_rt.inst, id, 5000, &e), &e);
	t0 = now_ms();
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e);
	int64_t t_destroy = now_ms() - t0;
	check_gone(id, sentry);
	pid_t in_ns = netns_user(nst.st_ino);
	CHECK(in_ns == 0, "process %d still in the sandbox's network namespace", (int)in_ns);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e); /* idempotent */
	fprintf(stderr, "create %lld ms, stop %lld ms, destroy %lld ms\n", (long long)t_create,
		(long long)t_stop, (long long)t_destroy);

	/* destroy without stop, of a running sandbox. */
	id = sb_create(&o, &s);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e);
	check_gone(id, s.pid);
	/* Unknown ids: stop and destroy succeed, status says unknown. */
	CHECK_OK(g_rt.ops->sandbox_stop(g_rt.inst, "t-never-was", 100, &e), &e);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, "t-never-was", &e), &e);
	teardown();
}

/* A create that fails part-way leaves nothing behind. */
static void case_create_failure(void)
{
	setup(NULL);
	load_default();
	hutch_err_t e = {0};
	/* runsc fails: the binary is not in the image. */
	sb_opts_t o = SB_OPTS_INIT;
	const char *argv[] = {"/no/such/init", NULL};
	o.argv = argv;
	char *id = new_id();
	int r = sb_create_id(id, &o, NULL, &e);
	fprintf(stderr, "missing init: %d: %s\n", r, e.message);
	CHECK(r < 0, "create with a missing init succeeded");
	CHECK(strstr(e.message, "/no/such/init"), "the message does not name the problem: %s",
	      e.message);
	check_gone(id, 0);

	/* The host's own network namespace is refused. */
	o = (sb_opts_t)SB_OPTS_INIT;
	o.netns_path = "/proc/self/ns/net";
	id = new_id();
	r = sb_create_id(id, &o, NULL, &e);
	fprintf(stderr, "host netns: %d: %s\n", r, e.message);
	CHECK(r == -EPERM, "the host netns was not refused: %d %s", r, e.message);
	check_gone(id, 0);

	/* A duplicate id is EEXIST and does not harm the first. */
	o = (sb_opts_t)SB_OPTS_INIT;
	id = sb_create(&o, NULL);
	r = sb_create_id(id, &o, NULL, &e);
	CHECK(r == -EEXIST, "duplicate id: %d %s", r, e.message);
	CHECK(sb_status(id).phase == HUTCH_PHASE_RUNNING, "the first sandbox was harmed");
	sb_destroy(id);

	/* An image layer that is not there: nothing is mounted. */
	o = (sb_opts_t)SB_OPTS_INIT;
	id = new_id();
	{
		const char *layers[] = {g_layer, "/nonexistent/layer"};
		hutch_sandbox_spec_t spec = {.size = sizeof spec, .id = id, .layers = layers,
					     .n_layers = 2, .init_stdin_fd = -1,
					     .init_stdout_fd = -1, .init_stderr_fd = -1};
		hutch_sandbox_status_t st = {.size = sizeof st};
		r = g_rt.ops->sandbox_create(g_rt.inst, &spec, &st, &e);
		fprintf(stderr, "missing layer: %d: %s\n", r, e.message);
		CHECK(r == -ENOENT, "missing layer: %d %s", r, e.message);
		check_gone(id, 0);
	}

	/* A memory limit below what runsc itself needs. */
	o.memory = 1 << 20;
	id = new_id();
	r = sb_create_id(id, &o, NULL, &e);
	CHECK(r == -EINVAL, "1 MiB memory accepted: %d", r);
	check_gone(id, 0);
	teardown();
}

/* The sandbox is in its own network namespace with only loopback. */
/* Without ports and without a namespace from the chain, a sandbox needs
 * no host sockets: it runs with gVisor's own loopback only. */
static void case_network_auto(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	char *id = sb_create(&o, NULL);
	hutch_sandbox_status_t s = sb_status(id);
	CHECK(s.netns_path[0] == '\0', "a portless sandbox has host networking (%s)", s.netns_path);
	exec_result_t *r = sb_sh(id, "(echo hi | nc -l -p 8080 127.0.0.1 &) ; sleep 0.3; nc 127.0.0.1 8080 </dev/null");
	CHECK(strstr(r->out, "hi"), "loopback inside does not work: %s %s", r->out, r->err);
	sb_destroy(id);
}

static void case_network(void)
{
	setup(NULL);
	hutch_err_t le = {0};
	/* The private namespace with host networking in it: what a sandbox
	 * with ports gets (private_network = "auto"), forced here. */
	CHECK_OK(rt_load(&g_rt, g_state_root, "probe_cache = true\nprivate_network = \"same\"\n",
			 &le), &le);
	sb_opts_t o = SB_OPTS_INIT;
	hutch_sandbox_status_t s;
	char *id = sb_create(&o, &s);
	char p1[64], l1[128] = "", l2[128] = "";
	snprintf(p1, sizeof p1, "/proc/%d/ns/net", (int)s.pid);
	CHECK(readlink(p1, l1, sizeof l1 - 1) > 0, "readlink %s", p1);
	CHECK(readlink("/proc/self/ns/net", l2, sizeof l2 - 1) > 0, "readlink self");
	fprintf(stderr, "sandbox netns %s, host %s\n", l1, l2);
	CHECK(strcmp(l1, l2) != 0, "the sandbox runs in the host's network namespace");
	/* status names the namespace (hutchd's port forwards connect there),
	 * and it is the one the sentry is in. */
	s = sb_status(id);
	_cleanup_free_ char *own_dir = sandbox_dir(id);
	_cleanup_free_ char *own = xasprintf("%s/netns", own_dir);
	CHECK(strcmp(s.netns_path, own) == 0, "status netns_path %s, not %s", s.netns_path, own);
	char l3[128] = "";
	CHECK(readlink(own, l3, sizeof l3 - 1) < 0, "netns file is a symlink?");
	struct stat a, b;
	CHECK(stat(own, &a) == 0 && stat(p1, &b) == 0 && a.st_ino == b.st_ino,
	      "the sentry is not in the private namespace");
	exec_result_t *r = sb_sh(id, "cat /proc/net/dev; ip -o link 2>/dev/null || ifconfig -a");
	fprintf(stderr, "%s", r->out);
	CHECK(strstr(r->out, "lo"), "no loopback inside");
	CHECK(!strstr(r->out, "eth0") && !strstr(r->out, "ens"), "host interfaces visible");
	/* Loopback works inside. */
	r = sb_sh(id, "(echo hi | nc -l -p 8080 127.0.0.1 &) ; sleep 0.3; nc 127.0.0.1 8080 </dev/null");
	fprintf(stderr, "loopback: exit %d out %s err %s\n", r->code, r->out, r->err);
	CHECK(strstr(r->out, "hi"), "loopback inside does not work");
	sb_destroy(id);

	/* A namespace from the network chain is used as given. */
	_cleanup_free_ char *ns = xasprintf("%s/chain-netns", g_base);
	const char *mk[] = {"sh", "-c", "", NULL};
	_cleanup_free_ char *script = xasprintf(
		"touch %s && unshare --net=%s sh -c 'ip link set lo up && ip link add hutchtest0 type veth peer name hutchtest1'",
		ns, ns);
	mk[2] = script;
	hutch_err_t e = {0};
	snprintf(g_extra_mount, sizeof g_extra_mount, "%s", ns);
	CHECK_OK(proc_run_argv(mk, 10000, NULL, 0, &e), &e);
	o.netns_path = ns;
	id = sb_create(&o, NULL);
	CHECK(strcmp(sb_status(id).netns_path, ns) == 0, "status does not name the chain's namespace");
	r = sb_sh(id, "cat /proc/net/dev");
	CHECK(strstr(r->out, "hutchtest0"), "the chain's namespace is not the sandbox's: %s",
	      r->out);
	/* gVisor cannot checkpoint host networking: said up front. */
	_cleanup_free_ char *img = xasprintf("%s/img", g_base);
	int cr = g_rt.ops->sandbox_checkpoint(g_rt.inst, id, img, &e);
	CHECK(cr == -ENOTSUP, "checkpoint with host networking: %d %s", cr, e.message);
	CHECK(sb_status(id).phase == HUTCH_PHASE_RUNNING, "the refused checkpoint stopped it");
	sb_destroy(id);
	CHECK(path_exists(ns), "destroy removed the chain's namespace file");
	umount2(ns, MNT_DETACH);
	unlink(ns);
	g_extra_mount[0] = '\0';
	teardown();
}

/* After the plugin is unloaded and loaded again, list finds the sandbox. */
typedef struct found {
	char id[128];
	hutch_sandbox_status_t st;
	int n;
	const char *want;
} found_t;

static void on_found(void *data, const char *id, const hutch_sandbox_status_t *st)
{
	found_t *f = data;
	fprintf(stderr, "  listed %s phase %d pid %d\n", id, st->phase, (int)st->pid);
	if (strcmp(id, f->want) == 0) {
		snprintf(f->id, sizeof f->id, "%s", id);
		f->st = *st;
		f->n++;
	}
}

static void case_recovery(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	hutch_sandbox_status_t s;
	char *id = sb_create(&o, &s);
	exec_result_t *r = sb_sh(id, "echo before > /mark");
	CHECK(r->code == 0, "write");
	rt_unload(&g_rt); /* the daemon goes away; the sandbox stays */
	CHECK(kill(s.pid, 0) == 0, "the sandbox died with the plugin");
	load_default();

	found_t f = {.want = id};
	hutch_err_t e = {0};
	CHECK_OK(g_rt.ops->sandbox_list(g_rt.inst, on_found, &f, &e), &e);
	CHECK(f.n == 1, "the sandbox was listed %d times", f.n);
	CHECK(f.st.phase == HUTCH_PHASE_RUNNING && f.st.pid == s.pid, "listed as phase %d pid %d",
	      f.st.phase, (int)f.st.pid);
	r = sb_sh(id, "cat /mark");
	CHECK(strstr(r->out, "before"), "the recovered sandbox lost its file");

	/* A sandbox whose daemon crashed mid-create (a directory, no runsc
	 * state) is listed too, and destroy clears it. */
	char *half = new_id();
	_cleanup_free_ char *half_dir = sandbox_dir(half);
	CHECK(mkdir(half_dir, 0700) == 0, "mkdir %s", half_dir);
	found_t h = {.want = half};
	CHECK_OK(g_rt.ops->sandbox_list(g_rt.inst, on_found, &h, &e), &e);
	CHECK(h.n == 1 && h.st.phase == HUTCH_PHASE_CREATING, "half-made sandbox: n %d phase %d",
	      h.n, h.st.phase);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, half, &e), &e);
	check_gone(half, 0);

	sb_destroy(id);
	check_gone(id, s.pid);
	teardown();
}

/* 20 sandboxes at once, created from 4 threads. */
#define MANY 20
static char *g_many[MANY];
static int64_t g_many_ms[MANY];

static void *many_worker(void *arg)
{
	long t = (long)arg;
	for (int i = (int)t; i < MANY; i += 4) {
		sb_opts_t o = SB_OPTS_INIT;
		o.memory = 128ll << 20;
		int64_t t0 = now_ms();
		g_many[i] = sb_create(&o, NULL);
		g_many_ms[i] = now_ms() - t0;
	}
	return NULL;
}

static void *many_destroy(void *arg)
{
	long t = (long)arg;
	for (int i = (int)t; i < MANY; i += 4)
		sb_destroy(g_many[i]);
	return NULL;
}

static void case_many(void)
{
	setup(NULL);
	load_default();
	pthread_t th[4];
	int64_t t0 = now_ms();
	for (long i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, many_worker, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	int64_t all = now_ms() - t0;
	int64_t mem = 0;
	for (int i = 0; i < MANY; i++) {
		_cleanup_free_ char *script = xasprintf("echo %s > /me; cat /me", g_many[i]);
		exec_result_t *r = sb_sh(g_many[i], script);
		chomp(r->out);
		CHECK(strcmp(r->out, g_many[i]) == 0, "sandbox %d said %s", i, r->out);
		hutch_sandbox_status_t s = sb_status(g_many[i]);
		CHECK(s.phase == HUTCH_PHASE_RUNNING, "sandbox %d phase %d", i, s.phase);
		mem += s.memory_bytes;
	}
	/* Each sees only its own file. */
	exec_result_t *r = sb_sh(g_many[0], "ls /");
	CHECK(!strstr(r->out, "t-many"), "sandbox 0 sees others' files");
	fprintf(stderr, "%d sandboxes created in %lld ms (%lld ms each in 4 threads); host memory %lld MiB total\n",
		MANY, (long long)all, (long long)all * 4 / MANY, (long long)mem >> 20);
	t0 = now_ms();
	for (long i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, many_destroy, (void *)i);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	fprintf(stderr, "all destroyed in %lld ms\n", (long long)(now_ms() - t0));
	for (int i = 0; i < MANY; i++)
		check_gone(g_many[i], 0);
	teardown();
}

/* Checkpoint a running sandbox and restore it as a new one. */
static void case_checkpoint(void)
{
	setup(NULL);
	/* gVisor cannot checkpoint host networking: these sandboxes get
	 * gVisor's own loopback only. */
	hutch_err_t le = {0};
	CHECK_OK(rt_load(&g_rt, g_state_root, "private_network = \"none\"\n", &le), &le);
	_cleanup_free_ char *caps = caps_text();
	CHECK(caps_has(caps, "checkpoint=yes"), "runsc here has no checkpoint");
	CHECK(g_rt.ops->sandbox_checkpoint && g_rt.ops->sandbox_restore, "ops missing");
	sb_opts_t o = SB_OPTS_INIT;
	const char *argv[] = {"/bin/sh", "-c",
			      "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done", NULL};
	o.argv = argv;
	char *id = sb_create(&o, NULL);
	exec_result_t *r = sb_sh(id, "echo kept > /file; sleep 0.5; cat /tmp/count");
	int before = atoi(r->out);
	CHECK(before > 3, "counter %d", before);
	_cleanup_free_ char *img = xasprintf("%s/image", g_base);
	hutch_err_t e = {0};
	int64_t t0 = now_ms();
	CHECK_OK(g_rt.ops->sandbox_checkpoint(g_rt.inst, id, img, &e), &e);
	int64_t t_ck = now_ms() - t0;
	hutch_sandbox_status_t s = sb_status(id);
	CHECK(s.phase == HUTCH_PHASE_STOPPED, "phase %d after checkpoint", s.phase);
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e);

	char *id2 = new_id();
	const char *layers[] = {g_layer};
	hutch_sandbox_spec_t spec = {
		.size = sizeof spec, .id = id2, .hostname = "sandbox", .layers = layers,
		.n_layers = 1, .argv = argv, .init_stdin_fd = -1, .init_stdout_fd = -1,
		.init_stderr_fd = -1,
	};
	hutch_sandbox_status_t st = {.size = sizeof st};
	t0 = now_ms();
	CHECK_OK(g_rt.ops->sandbox_restore(g_rt.inst, &spec, img, &st, &e), &e);
	int64_t t_rs = now_ms() - t0;
	CHECK(st.phase == HUTCH_PHASE_RUNNING, "restored phase %d", st.phase);
	usleep(300 * 1000);
	r = sb_sh(id2, "cat /file /tmp/count");
	fprintf(stderr, "checkpoint %lld ms, restore %lld ms; before %d, after: %s",
		(long long)t_ck, (long long)t_rs, before, r->out);
	CHECK(strstr(r->out, "kept\n"), "the writable layer was not restored");
	int after = atoi(strchr(r->out, '\n') + 1);
	CHECK(after > before, "the counter restarted (%d after %d): memory was not restored",
	      after, before);
	sb_destroy(id2);
	check_gone(id2, 0);

	/* Other layers: refused. */
	char *id3 = new_id();
	const char *other[] = {g_base};
	spec.id = id3;
	spec.layers = other;
	int rr = g_rt.ops->sandbox_restore(g_rt.inst, &spec, img, &st, &e);
	CHECK(rr == -EINVAL, "restore on other layers: %d %s", rr, e.message);
	check_gone(id3, 0);
	teardown();
}

/* The writable layer of a stopped sandbox as an overlay upper dir: new and
 * changed files, whiteouts for deletions, an opaque marker for a directory
 * replaced as a whole; stacked as a second layer it shows the same tree. */
static void case_commit(void)
{
	setup(NULL);
	load_default();
	CHECK(g_rt.ops->sandbox_commit, "runtime-gvisor has no sandbox_commit op");
	sb_opts_t o = SB_OPTS_INIT;
	char *id = sb_create(&o, NULL);
	exec_result_t *r = sb_sh(id, "echo new > /added && echo changed > /etc/passwd && rm /bin/vi && "
				     "rm -rf /usr && mkdir /usr && echo only > /usr/only && mkdir -p /d/e && "
				     "ln -s /added /link && chmod 0750 /d");
	CHECK(r->code == 0, "changes: %d %s", r->code, r->err);
	_cleanup_free_ char *dest = xasprintf("%s/commit", g_base);
	CHECK(mkdir(dest, 0755) == 0, "mkdir %s", dest);
	hutch_err_t e = {0};
	int rr = g_rt.ops->sandbox_commit(g_rt.inst, id, dest, &e);
	CHECK(rr == -EBUSY, "commit of a running sandbox: %d %s", rr, e.message);
	CHECK_OK(g_rt.ops->sandbox_stop(g_rt.inst, id, 2000, &e), &e);
	int64_t t0 = now_ms();
	CHECK_OK(g_rt.ops->sandbox_commit(g_rt.inst, id, dest, &e), &e);
	fprintf(stderr, "commit took %lld ms\n", (long long)(now_ms() - t0));
	CHECK_OK(g_rt.ops->sandbox_destroy(g_rt.inst, id, &e), &e);

	struct stat st;
	_cleanup_free_ char *added = xasprintf("%s/added", dest);
	CHECK(lstat(added, &st) == 0 && S_ISREG(st.st_mode), "new file missing from the commit");
	_cleanup_free_ char *vi = xasprintf("%s/bin/vi", dest);
	CHECK(lstat(vi, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0,
	      "the deletion of /bin/vi is not a 0:0 whiteout");
	_cleanup_free_ char *usr = xasprintf("%s/usr", dest);
	char v[8] = "";
	ssize_t vl = lgetxattr(usr, "trusted.overlay.opaque", v, sizeof v);
	CHECK(vl == 1 && v[0] == 'y', "the replaced /usr is not marked opaque (%zd)", vl);
	char names[4096];
	ssize_t nl = llistxattr(added, names, sizeof names);
	for (char *p = names; nl > 0 && p < names + nl; p += strlen(p) + 1)
		CHECK(strncmp(p, "trusted.overlay.", 16) != 0, "overlay metadata %s left on a file", p);
	_cleanup_free_ char *d = xasprintf("%s/d", dest);
	CHECK(lstat(d, &st) == 0 && (st.st_mode & 07777) == 0750, "mode of /d not kept");
	/* Nothing of the lower layer that did not change. */
	_cleanup_free_ char *sh = xasprintf("%s/bin/sh", dest);
	CHECK(lstat(sh, &st) < 0, "an unchanged lower file was copied");

	/* Stacked on the original layer, the commit is the sandbox's view. */
	const char *layers[] = {g_layer, dest};
	char *id2 = new_id();
	hutch_sandbox_spec_t spec = {
		.size = sizeof spec, .id = id2, .hostname = "sandbox", .layers = layers,
		.n_layers = 2, .init_stdin_fd = -1, .init_stdout_fd = -1, .init_stderr_fd = -1,
	};
	hutch_sandbox_status_t ss = {.size = sizeof ss};
	CHECK_OK(g_rt.ops->sandbox_create(g_rt.inst, &spec, &ss, &e), &e);
	r = sb_sh(id2, "cat /added /etc/passwd /usr/only; ls /usr; test -e /bin/vi || echo no-vi; "
		       "readlink /link");
	fprintf(stderr, "stacked view:\n%s%s", r->out, r->err);
	CHECK(strstr(r->out, "new\nchanged\nonly\nonly\nno-vi\n/added\n"), "stacked view differs: %s",
	      r->out);
	sb_destroy(id2);
	teardown();
}

/* An exec whose stdio is a pty slave: terminal ioctls reach the pty. */
static void case_tty(void)
{
	setup(NULL);
	load_default();
	sb_opts_t o = SB_OPTS_INIT;
	char *id = sb_create(&o, NULL);
	int master, slave;
	struct winsize ws = {.ws_row = 33, .ws_col = 99};
	CHECK(openpty(&master, &slave, NULL, NULL, &ws) == 0, "openpty");
	const char *argv[] = {"/bin/sh", "-c", "stty size; test -t 0 && echo is-a-tty", NULL};
	hutch_exec_spec_t spec = {.size = sizeof spec, .argv = argv, .tty = true};
	hutch_command_t cmd = {.size = sizeof cmd};
	hutch_err_t e = {0};
	CHECK_OK(g_rt.ops->exec_command(g_rt.inst, id, &spec, &cmd, &e), &e);
	hutch_spawn_opts_t so = {.size = sizeof so, .argv = (const char *const *)cmd.argv,
				 .stdin_fd = slave, .stdout_fd = slave, .stderr_fd = slave,
				 .netns_fd = -1, .new_session = true};
	pid_t pid;
	CHECK_OK(proc_spawn(&so, &pid, NULL, &e), &e);
	close(slave);
	char buf[4096] = "";
	size_t n = 0;
	for (;;) {
		ssize_t k = read(master, buf + n, sizeof buf - 1 - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	buf[n] = '\0';
	int st;
	waitpid(pid, &st, 0);
	fprintf(stderr, "tty exec said: %s", buf);
	CHECK(strstr(buf, "33 99"), "the pty's size is not seen inside: %s", buf);
	CHECK(strstr(buf, "is-a-tty"), "stdin is not a tty inside");
	strv_free(cmd.argv);
	close(master);
	sb_destroy(id);
	teardown();
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	g_case = argv[1];
	/* What these tests need from the host; without it they skip. */
	if (geteuid() != 0) {
		fprintf(stderr, "SKIP: needs root (mounts, namespaces, cgroups)\n");
		return 77;
	}
	if (access("/bin/busybox", X_OK) != 0) {
		fprintf(stderr, "SKIP: needs /bin/busybox (static) for the image layer\n");
		return 77;
	}
	{
		const char *which[] = {"sh", "-c", "command -v runsc", NULL};
		hutch_err_t e = {0};
		if (proc_run_argv(which, 5000, NULL, 0, &e) < 0) {
			fprintf(stderr, "SKIP: no runsc in PATH\n");
			return 77;
		}
	}
	log_setup(HUTCH_LOG_DEBUG, LOG_FORMAT_TEXT, 2);
	signal(SIGPIPE, SIG_IGN);
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"probe", case_probe},
		{"kernel", case_kernel},
		{"canary", case_canary},
		{"private_layer", case_private_layer},
		{"memory", case_memory},
		{"pids", case_pids},
		{"exit_codes", case_exit_codes},
		{"disk", case_disk},
		{"init_stdio", case_init_stdio},
		{"cleanup", case_cleanup},
		{"create_failure", case_create_failure},
		{"network", case_network},
		{"network_auto", case_network_auto},
		{"recovery", case_recovery},
		{"many", case_many},
		{"checkpoint", case_checkpoint},
		{"tty", case_tty},
		{"commit", case_commit},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(cases[i].name, argv[1]) == 0) {
			cases[i].fn();
			fprintf(stderr, "PASS %s\n", argv[1]);
			return 0;
		}
	}
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
