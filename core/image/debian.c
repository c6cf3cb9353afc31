#include "debian.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "image_digest.h"
#include "log.h"
#include "proc.h"
#include "strbuf.h"
#include "clock_ms.h"

/* The packages on top of minbase: Python, pip, `python` -> python3. */
#define DEBIAN_PACKAGES "ca-certificates,python3,python3-pip,python-is-python3"

static const struct {
	const char *suite;
	const char *python;
} known_suites[] = {
	{"bullseye", "3.9"},
	{"bookworm", "3.11"},
	{"trixie", "3.13"},
};

/* ---- which suites the mirror serves (asked once per daemon) ---- */

static pthread_mutex_t g_probe_lock = PTHREAD_MUTEX_INITIALIZER;
/* Answers are kept: a yes for good, anything else (the mirror may have
 * been unreachable for a moment) for a minute. */
enum { PROBE_UNREACHABLE = -1, PROBE_NO = 0, PROBE_YES = 1 };
static struct {
	char *mirror;
	char *suite;
	int answer;
	time_t when;
} g_probed[16];
static size_t g_n_probed;

static size_t discard(char *p, size_t s, size_t n, void *d)
{
	(void)p;
	(void)d;
	return s * n;
}

/* Whether the mirror serves suite: PROBE_YES, PROBE_NO (it answered
 * otherwise), PROBE_UNREACHABLE (no answer). */
static int mirror_has(const char *mirror, const char *suite)
{
	pthread_mutex_lock(&g_probe_lock);
	for (size_t i = 0; i < g_n_probed; i++)
		if (strcmp(g_probed[i].mirror, mirror) == 0 && strcmp(g_probed[i].suite, suite) == 0 &&
		    (g_probed[i].answer == PROBE_YES || time(NULL) - g_probed[i].when < 60)) {
			int answer = g_probed[i].answer;
			pthread_mutex_unlock(&g_probe_lock);
			return answer;
		}
	pthread_mutex_unlock(&g_probe_lock);
	_cleanup_free_ char *url = xasprintf("%s/dists/%s/Release", mirror, suite);
	CURL *h = curl_easy_init();
	int answer = PROBE_UNREACHABLE;
	if (h) {
		long code = 0;
		curl_easy_setopt(h, CURLOPT_URL, url);
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(h, CURLOPT_TIMEOUT, 15L);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
		if (curl_easy_perform(h) == CURLE_OK &&
		    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK)
			answer = code == 200 ? PROBE_YES : PROBE_NO;
		curl_easy_cleanup(h);
	}
	pthread_mutex_lock(&g_probe_lock);
	size_t slot = g_n_probed;
	for (size_t i = 0; i < g_n_probed; i++)
		if (strcmp(g_probed[i].mirror, mirror) == 0 && strcmp(g_probed[i].suite, suite) == 0)
			slot = i;
	if (slot == g_n_probed && g_n_probed < ARRAY_SIZE(g_probed)) {
		g_probed[slot].mirror = xstrdup(mirror);
		g_probed[slot].suite = xstrdup(suite);
		g_n_probed++;
	}
	if (slot < ARRAY_SIZE(g_probed)) {
		g_probed[slot].answer = answer;
		g_probed[slot].when = time(NULL);
	}
	pthread_mutex_unlock(&g_probe_lock);
	return answer;
}

/* "3.11" < "3.13" as versions. */
static int version_cmp(const char *a, const char *b)
{
	while (*a || *b) {
		long x = strtol(a, (char **)&a, 10), y = strtol(b, (char **)&b, 10);
		if (x != y)
			return x < y ? -1 : 1;
		if (*a == '.')
			a++;
		if (*b == '.')
			b++;
		if (!*a && !*b)
			break;
	}
	return 0;
}

static bool suite_allowed(const image_config_t *cfg, const char *suite)
{
	for (char **s = cfg->debian_suites; s && *s; s++)
		if (strcmp(*s, suite) == 0)
			return true;
	return false;
}

/* "3.11" or "3.11.2" is the suite's Python when the minor versions match. */
static bool python_matches(const char *want, const char *python)
{
	size_t pl = strlen(python);
	return strncmp(want, python, pl) == 0 && (!want[pl] || want[pl] == '.');
}

/* A Python version names its suite without asking the mirror (a cached
 * base then builds with the mirror out of reach); only "the newest", and
 * the error listing what can be had, ask it. */
int debian_pick(const image_config_t *cfg, const char *want, const char **suite,
		const char **python, hutch_err_t *err)
{
	int best = -1;
	if (want && *want) {
		for (size_t i = 0; i < ARRAY_SIZE(known_suites); i++)
			if (suite_allowed(cfg, known_suites[i].suite) && python_matches(want, known_suites[i].python))
				best = (int)i;
	}
	_cleanup_sb_ strbuf_t offered = STRBUF_INIT;
	bool any_answer = false;
	if (best < 0) {
		for (size_t i = 0; i < ARRAY_SIZE(known_suites); i++) {
			if (!suite_allowed(cfg, known_suites[i].suite))
				continue;
			int has = mirror_has(cfg->debian_mirror, known_suites[i].suite);
			any_answer |= has != PROBE_UNREACHABLE;
			if (has == PROBE_NO)
				continue;
			sb_printf(&offered, "%s%s (%s)", offered.len ? ", " : "", known_suites[i].python,
				  known_suites[i].suite);
			if (!(want && *want) && (best < 0 || version_cmp(known_suites[i].python,
									   known_suites[best].python) > 0))
				best = (int)i;
		}
	}
	if (best < 0) {
		if (!offered.len)
			return hutch_err_set(err, ENOENT,
					     "debian_slim: the Debian mirror %s serves none of the suites in [images] debian_suites",
					     cfg->debian_mirror);
		return hutch_err_set(err, ENOENT,
				     "debian_slim: Python %s cannot be provided; %s Python %s", want,
				     any_answer ? "the configured Debian mirror offers"
						: "[images] debian_suites allow (the mirror could not be asked)",
				     offered.buf);
	}
	*suite = known_suites[best].suite;
	*python = known_suites[best].python;
	return 0;
}

char *debian_resolved(const image_config_t *cfg, const char *suite, const char *python)
{
	strbuf_t sb = STRBUF_INIT;
	sb_append(&sb, "{\"base\":\"debian_slim\",\"suite\":");
	sb_json_str(&sb, suite);
	sb_append(&sb, ",\"python\":");
	sb_json_str(&sb, python);
	sb_append(&sb, ",\"mirror\":");
	sb_json_str(&sb, cfg->debian_mirror);
	sb_printf(&sb, ",\"variant\":\"minbase\",\"packages\":\"%s\",\"arch\":", DEBIAN_PACKAGES);
	sb_json_str(&sb, "amd64");
	sb_append(&sb, ",\"v\":1}");
	return sb_steal(&sb);
}

/* ---- making it ---- */

static void say(const debian_ctx_t *c, const char *fmt, ...) HUTCH_PRINTF(2, 3);

static void say(const debian_ctx_t *c, const char *fmt, ...)
{
	if (!c->on_output)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n > 0)
		c->on_output(c->data, 1, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
}

static void remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 300000, NULL, 0, &e) < 0)
		log_warn("images: remove %s: %s", path, e.message);
}

static int write_file(const char *path, const char *text, hutch_err_t *err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	size_t n = strlen(text);
	if (fd < 0 || write(fd, text, n) != (ssize_t)n)
		return hutch_err_sys(err, errno ? errno : EIO, "write %s", path);
	return 0;
}

static const char *arch_name(void)
{
#if defined(__x86_64__)
	return "amd64";
#elif defined(__aarch64__)
	return "arm64";
#else
	return "amd64";
#endif
}

static int first_stage(const debian_ctx_t *c, const char *suite, const char *target, hutch_err_t *err)
{
	_cleanup_free_ char *arch = xasprintf("--arch=%s", arch_name());
	const char *argv[] = {"debootstrap", "--foreign", "--variant=minbase", arch,
			      "--include=" DEBIAN_PACKAGES, suite, target, c->cfg->debian_mirror, NULL};
	static const char *const envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
					   "LC_ALL=C", NULL};
	say(c, "debootstrap --foreign --variant=minbase %s (%s) from %s\n", suite, DEBIAN_PACKAGES,
	    c->cfg->debian_mirror);
	build_exec_t x = {
		.argv = argv,
		.timeout_ms = c->cfg->step_timeout_ms,
		.cancel = c->cancel,
		.on_output = c->on_output,
		.data = c->data,
		.host_envp = envp,
	};
	int code = -1;
	int r = build_host_exec(&x, &code, err);
	if (r < 0)
		return hutch_err_prefix(err, "debootstrap (first stage)");
	if (code != 0)
		return hutch_err_set(err, EIO, "debootstrap (first stage) exited %d", code);
	return 0;
}

/* Host-side touches between the stages, file operations only: no resolver
 * or host name of this machine in the image, and dpkg without fsync (the
 * result is a layer; a crash mid-build throws it away anyway). */
static int between_stages(const char *target, hutch_err_t *err)
{
	static const char *const drop[] = {"etc/resolv.conf", "etc/hostname", "etc/hosts", NULL};
	for (const char *const *d = drop; *d; d++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", target, *d);
		unlink(p);
	}
	_cleanup_free_ char *dir = xasprintf("%s/etc/dpkg/dpkg.cfg.d", target);
	_cleanup_free_ char *file = xasprintf("%s/hutch-unsafe-io", dir);
	struct stat st;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return hutch_err_set(err, EIO, "debootstrap left no /etc/dpkg/dpkg.cfg.d");
	return write_file(file, "force-unsafe-io\n", err);
}

static int sandbox_run(const debian_ctx_t *c, build_sandbox_t *b, const char *script, const char *what,
		       hutch_err_t *err)
{
	const char *argv[] = {"/bin/sh", "-c", script, NULL};
	/* container=lxc: debootstrap then does not insist on creating a
	 * device node to prove the target is not nodev (gVisor refuses mknod;
	 * the first stage made /dev's nodes on the host already). */
	hutch_kv_t env[] = {{"DEBIAN_FRONTEND", "noninteractive"}, {"LC_ALL", "C"}, {"container", "lxc"}};
	build_exec_t x = {
		.argv = argv,
		.env = env,
		.n_env = ARRAY_SIZE(env),
		.cwd = "/",
		.timeout_ms = c->cfg->step_timeout_ms,
		.cancel = c->cancel,
		.on_output = c->on_output,
		.data = c->data,
	};
	int code = -1;
	int r = build_sandbox_exec(b, &x, &code, err);
	if (r < 0)
		return hutch_err_prefix(err, "%s", what);
	if (code != 0)
		return hutch_err_set(err, EIO, "%s exited %d", what, code);
	return 0;
}

static int second_stage(const debian_ctx_t *c, const char *target, const char *upper, hutch_err_t *err)
{
	const char *layers[] = {target};
	build_sandbox_opts_t o = {
		.tenant = c->tenant,
		.layers = layers,
		.n_layers = 1,
		.cpu_millis = (int64_t)(c->cfg->build_cpu * 1000),
		.memory_bytes = c->cfg->build_memory,
		.pids_max = c->cfg->build_pids,
		.disk_bytes = c->cfg->build_disk,
	};
	build_sandbox_t *b;
	int r = build_sandbox_create(c->sandbox, &o, &b, err);
	if (r < 0)
		return r;
	say(c, "debootstrap --second-stage (in sandbox %s)\n", build_sandbox_id(b));
	r = sandbox_run(c, b, "/debootstrap/debootstrap --second-stage", "debootstrap --second-stage", err);
	if (r < 0) {
		/* debootstrap's own log says what went wrong. */
		hutch_err_t e2 = {0};
		sandbox_run(c, b, "echo '--- debootstrap.log (last lines) ---'; tail -n 30 /debootstrap/debootstrap.log",
			    "log", &e2);
	}
	if (r == 0)
		r = sandbox_run(c, b,
				"set -e; rm -f /usr/lib/python3*/EXTERNALLY-MANAGED; "
				"rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt/* /var/log/dpkg.log; "
				"python3 --version; python --version; pip --version",
				"checking python", err);
	if (r == 0)
		r = build_sandbox_commit(b, upper, err);
	build_sandbox_destroy(b);
	return r;
}

/* One directory from the first stage and the second's writable layer: a
 * read-only overlay of the two, copied out. */
static int merge(const char *lower, const char *upper, const char *mnt, const char *out,
		 hutch_err_t *err)
{
	if (strpbrk(lower, ":,\\") || strpbrk(upper, ":,\\"))
		return hutch_err_set(err, EINVAL, "state dir path has ':', ',' or '\\'");
	_cleanup_free_ char *opts = xasprintf("lowerdir=%s:%s,redirect_dir=nofollow,metacopy=off", upper, lower);
	if (mount("overlay", mnt, "overlay", MS_RDONLY | MS_NODEV | MS_NOSUID, opts) < 0)
		return hutch_err_sys(err, errno, "mount overlay on %s", mnt);
	_cleanup_free_ char *src = xasprintf("%s/.", mnt);
	const char *argv[] = {"cp", "-a", "--", src, out, NULL};
	int r = proc_run_argv(argv, 600000, NULL, 0, err);
	if (umount2(mnt, MNT_DETACH) < 0)
		log_warn("images: unmount %s: %s", mnt, strerror(errno));
	return r < 0 ? hutch_err_prefix(err, "merge the two stages") : 0;
}

/* What must not be in the base: the stages' leftovers, device nodes (the
 * sandbox has its own /dev), and the files hutchd mounts into sandboxes. */
static void tidy(const char *root)
{
	static const char *const drop[] = {"debootstrap", "etc/resolv.conf", "etc/hostname",
					   "etc/hosts", ".hutch", NULL};
	for (const char *const *d = drop; *d; d++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", root, *d);
		remove_tree(p);
	}
	_cleanup_free_ char *dev = xasprintf("%s/dev", root);
	remove_tree(dev);
	mkdir(dev, 0755);
}

int debian_make_root(const debian_ctx_t *c, const char *suite, char **root_out, hutch_err_t *err)
{
	_cleanup_free_ char *work = image_store_tmp_dir(c->store, "debian", err);
	if (!work)
		return -err->code;
	_cleanup_free_ char *target = xasprintf("%s/first", work);
	_cleanup_free_ char *upper = xasprintf("%s/second", work);
	_cleanup_free_ char *mnt = xasprintf("%s/mnt", work);
	char *out = image_store_tmp_dir(c->store, "debian-root", err);
	if (!out)
		return -err->code;
	int r;
	if (mkdir(upper, 0755) < 0 || mkdir(mnt, 0755) < 0) {
		r = hutch_err_sys(err, errno, "mkdir in %s", work);
		goto out;
	}
	int64_t t0 = mono_ms();
	if ((r = first_stage(c, suite, target, err)) < 0 || (r = between_stages(target, err)) < 0)
		goto out;
	int64_t t1 = mono_ms();
	say(c, "first stage done in %.1fs\n", (double)(t1 - t0) / 1000);
	if ((r = second_stage(c, target, upper, err)) < 0)
		goto out;
	int64_t t2 = mono_ms();
	say(c, "second stage done in %.1fs; merging the two stages\n", (double)(t2 - t1) / 1000);
	if ((r = merge(target, upper, mnt, out, err)) < 0)
		goto out;
	tidy(out);
	say(c, "merged in %.1fs\n", (double)(mono_ms() - t2) / 1000);
out:
	remove_tree(work);
	if (r < 0) {
		remove_tree(out);
		free(out);
		return r;
	}
	*root_out = out;
	return 0;
}
