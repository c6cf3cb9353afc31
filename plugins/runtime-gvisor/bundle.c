/*
 * bundle.c: the OCI runtime spec (config.json) of a sandbox.
 *
 * Written by hand with strbuf's JSON string escaping. Strings must be valid
 * UTF-8: Go's JSON decoder in runsc would silently turn invalid bytes into
 * U+FFFD, so an argv the user gave would not be the argv that runs; such
 * input is refused instead.
 *
 * Choices that are not the spec's, and why:
 *   - The process runs as root with Docker's default capability set minus
 *     CAP_NET_RAW, and without CAP_SYS_RESOURCE/CAP_SYS_ADMIN so that
 *     RLIMIT_NPROC holds (see pids below).
 *   - pids: gVisor's tasks are not host processes, so the host pids cgroup
 *     cannot count them one for one; a sandbox at a host pids limit dies as a
 *     whole when the sentry cannot make a thread. The sandbox's pids_max is
 *     therefore RLIMIT_NPROC inside gVisor (fork fails with EAGAIN there,
 *     the sandbox lives on), and the host cgroup gets a looser cap
 *     (host_pids_max, from the config) that protects the host.
 *   - Standard mounts: /proc, /dev (tmpfs), /dev/pts, /dev/shm, /sys
 *     read-only, and /tmp: gVisor mounts a tmpfs of its own on an empty /tmp
 *     unless the spec mounts something there, and that tmpfs is bounded by
 *     the memory limit only. The rootfs's own /tmp is therefore bound on
 *     /tmp, so that what is written there counts against the disk limit
 *     like any other write.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

static const char *const default_caps[] = {
	"CAP_CHOWN",    "CAP_DAC_OVERRIDE", "CAP_FSETID",  "CAP_FOWNER",
	"CAP_MKNOD",    "CAP_SETGID",       "CAP_SETUID",  "CAP_SETFCAP",
	"CAP_SETPCAP",  "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
	"CAP_AUDIT_WRITE", NULL,
};

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		unsigned c = *p;
		int n;
		unsigned min;
		if (c < 0x80) {
			p++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1;
			min = 0x80;
			c &= 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2;
			min = 0x800;
			c &= 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3;
			min = 0x10000;
			c &= 0x07;
		} else {
			return false;
		}
		for (int i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			c = (c << 6) | (p[i] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return false;
		p += n + 1;
	}
	return true;
}

/* Appends a JSON string, refusing what runsc would not read back as is. */
static int json_str(strbuf_t *sb, const char *s, const char *what, hutch_err_t *err)
{
	if (!s)
		return hutch_err_set(err, EINVAL, "%s: missing", what);
	if (!utf8_valid(s))
		return hutch_err_set(err, EINVAL, "%s: not valid UTF-8", what);
	sb_json_str(sb, s);
	return 0;
}

static int json_strv(strbuf_t *sb, const char *const *v, const char *what,
		     hutch_err_t *err)
{
	sb_putc(sb, '[');
	for (size_t i = 0; v && v[i]; i++) {
		if (i)
			sb_putc(sb, ',');
		int r = json_str(sb, v[i], what, err);
		if (r < 0)
			return r;
	}
	sb_putc(sb, ']');
	return 0;
}

static int write_env(strbuf_t *sb, const hutch_sandbox_spec_t *spec, hutch_err_t *err)
{
	bool have_path = false;
	sb_append(sb, "\"env\":[");
	for (size_t i = 0; i < spec->n_env; i++) {
		const hutch_kv_t *kv = &spec->env[i];
		if (!kv->key || !*kv->key || strchr(kv->key, '=') || !kv->value)
			return hutch_err_set(err, EINVAL, "env %zu: bad name", i);
		if (strcmp(kv->key, "PATH") == 0)
			have_path = true;
		_cleanup_free_ char *pair = xasprintf("%s=%s", kv->key, kv->value);
		if (i)
			sb_putc(sb, ',');
		int r = json_str(sb, pair, "env", err);
		if (r < 0)
			return r;
	}
	if (!have_path) {
		if (spec->n_env)
			sb_putc(sb, ',');
		sb_json_str(sb, DEFAULT_PATH);
	}
	sb_putc(sb, ']');
	return 0;
}

static int write_process(strbuf_t *sb, const hutch_sandbox_spec_t *spec,
			 const gv_bundle_paths_t *p, hutch_err_t *err)
{
	sb_append(sb, "\"process\":{\"terminal\":false,\"user\":{\"uid\":0,\"gid\":0},\"args\":");
	int r;
	if (spec->argv && spec->argv[0]) {
		r = json_strv(sb, spec->argv, "argv", err);
	} else {
		if (!p->idle_init)
			return hutch_err_set(err, ENOTSUP,
					     "no argv given and no built-in idle init for this architecture");
		r = json_strv(sb, (const char *const[]){GV_IDLE_INIT_TARGET, NULL}, "argv", err);
	}
	if (r < 0)
		return r;
	sb_putc(sb, ',');
	if ((r = write_env(sb, spec, err)) < 0)
		return r;
	sb_append(sb, ",\"cwd\":");
	const char *cwd = spec->workdir && *spec->workdir ? spec->workdir : "/";
	if (cwd[0] != '/')
		return hutch_err_set(err, EINVAL, "workdir %s: not absolute", cwd);
	if ((r = json_str(sb, cwd, "workdir", err)) < 0)
		return r;
	sb_append(sb, ",\"capabilities\":{");
	const char *sets[] = {"bounding", "effective", "permitted"};
	/* CAP_NET_ADMIN for init only when it must add loopback addresses in
	 * gVisor's own network stack; it drops it before anything else runs
	 * (hutch_sandbox_spec_t.loopback_addrs). */
	const char *caps[ARRAY_SIZE(default_caps) + 1];
	size_t nc = 0;
	for (const char *const *c = default_caps; *c; c++)
		caps[nc++] = *c;
	if (p->init_net_admin)
		caps[nc++] = "CAP_NET_ADMIN";
	caps[nc] = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(sets); i++) {
		sb_printf(sb, "%s\"%s\":", i ? "," : "", sets[i]);
		json_strv(sb, caps, "caps", err);
	}
	sb_printf(sb, "},\"rlimits\":["
		      "{\"type\":\"RLIMIT_NOFILE\",\"hard\":65536,\"soft\":65536},"
		      "{\"type\":\"RLIMIT_NPROC\",\"hard\":%lld,\"soft\":%lld}],"
		      "\"noNewPrivileges\":true}",
		  (long long)p->pids_max, (long long)p->pids_max);
	return 0;
}

static int write_mounts(strbuf_t *sb, const hutch_sandbox_spec_t *spec,
			const gv_bundle_paths_t *p, hutch_err_t *err)
{
	sb_append(sb,
		  "\"mounts\":["
		  "{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
		  "{\"destination\":\"/dev\",\"type\":\"tmpfs\",\"source\":\"tmpfs\","
		  "\"options\":[\"nosuid\",\"strictatime\",\"mode=755\",\"size=65536k\"]},"
		  "{\"destination\":\"/dev/pts\",\"type\":\"devpts\",\"source\":\"devpts\","
		  "\"options\":[\"nosuid\",\"noexec\",\"newinstance\",\"ptmxmode=0666\",\"mode=0620\"]},"
		  "{\"destination\":\"/dev/shm\",\"type\":\"tmpfs\",\"source\":\"shm\","
		  "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"mode=1777\",\"size=65536k\"]},"
		  "{\"destination\":\"/sys\",\"type\":\"sysfs\",\"source\":\"sysfs\","
		  "\"options\":[\"nosuid\",\"noexec\",\"nodev\",\"ro\"]}");
	for (size_t i = 0; i < spec->n_mounts; i++) {
		const hutch_mount_t *m = &spec->mounts[i];
		if (!m->source || m->source[0] != '/' || !m->target || m->target[0] != '/')
			return hutch_err_set(err, EINVAL, "mount %zu: source and target must be absolute paths", i);
		struct stat st;
		if (stat(m->source, &st) < 0)
			return hutch_err_sys(err, errno, "mount %s", m->source);
		sb_append(sb, ",{\"destination\":");
		int r = json_str(sb, m->target, "mount target", err);
		if (r < 0)
			return r;
		sb_append(sb, ",\"type\":\"bind\",\"source\":");
		if ((r = json_str(sb, m->source, "mount source", err)) < 0)
			return r;
		sb_printf(sb, ",\"options\":[\"rbind\",\"%s\"]}",
			  (m->flags & HUTCH_MOUNT_READONLY) ? "ro" : "rw");
	}
	if (p->tmp_dir) {
		sb_append(sb, ",{\"destination\":\"/tmp\",\"type\":\"bind\",\"source\":");
		int r = json_str(sb, p->tmp_dir, "tmp", err);
		if (r < 0)
			return r;
		sb_append(sb, ",\"options\":[\"rbind\",\"rw\"]}");
	}
	if (!(spec->argv && spec->argv[0])) {
		sb_append(sb, ",{\"destination\":\"" GV_IDLE_INIT_TARGET "\",\"type\":\"bind\",\"source\":");
		int r = json_str(sb, p->idle_init, "idle init", err);
		if (r < 0)
			return r;
		sb_append(sb, ",\"options\":[\"bind\",\"ro\"]}");
	}
	sb_putc(sb, ']');
	return 0;
}

static int write_devices(strbuf_t *sb, const hutch_sandbox_spec_t *spec,
			 hutch_err_t *err)
{
	sb_append(sb, "\"devices\":[");
	for (size_t i = 0; i < spec->n_devices; i++) {
		const char *path = spec->devices[i];
		struct stat st;
		if (!path || path[0] != '/')
			return hutch_err_set(err, EINVAL, "device %zu: not an absolute path", i);
		if (stat(path, &st) < 0)
			return hutch_err_sys(err, errno, "device %s", path);
		if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
			return hutch_err_set(err, EINVAL, "device %s: not a device node", path);
		if (i)
			sb_putc(sb, ',');
		sb_append(sb, "{\"path\":");
		int r = json_str(sb, path, "device", err);
		if (r < 0)
			return r;
		sb_printf(sb, ",\"type\":\"%c\",\"major\":%u,\"minor\":%u,\"fileMode\":%u,\"uid\":%u,\"gid\":%u}",
			  S_ISCHR(st.st_mode) ? 'c' : 'b', major(st.st_rdev), minor(st.st_rdev),
			  (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid, (unsigned)st.st_gid);
	}
	sb_putc(sb, ']');
	return 0;
}

int gv_bundle_write(const char *dir, const hutch_sandbox_spec_t *spec,
		    const gv_bundle_paths_t *p, hutch_err_t *err)
{
	_cleanup_sb_ strbuf_t sb = STRBUF_INIT;
	int r;
	sb_append(&sb, "{\"ociVersion\":\"1.0.2\",");
	if ((r = write_process(&sb, spec, p, err)) < 0)
		return r;
	sb_append(&sb, ",\"root\":{\"path\":");
	if ((r = json_str(&sb, p->rootfs, "rootfs", err)) < 0)
		return r;
	sb_append(&sb, ",\"readonly\":false},\"hostname\":");
	const char *hostname = spec->hostname && *spec->hostname ? spec->hostname : spec->id;
	if ((r = json_str(&sb, hostname, "hostname", err)) < 0)
		return r;
	sb_putc(&sb, ',');
	if ((r = write_mounts(&sb, spec, p, err)) < 0)
		return r;

	int64_t quota = p->cpu_millis * 100;
	int64_t shares = p->cpu_millis * 1024 / 1000;
	if (shares < 2)
		shares = 2;
	sb_append(&sb, ",\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"ipc\"},"
		       "{\"type\":\"uts\"},{\"type\":\"mount\"},{\"type\":\"network\",\"path\":");
	if ((r = json_str(&sb, p->netns, "netns", err)) < 0)
		return r;
	sb_append(&sb, "}],\"cgroupsPath\":");
	_cleanup_free_ char *cg = xasprintf("/%s", p->cgroups_path);
	if ((r = json_str(&sb, cg, "cgroup", err)) < 0)
		return r;
	sb_printf(&sb,
		  ",\"resources\":{\"memory\":{\"limit\":%lld,\"reservation\":%lld},"
		  "\"cpu\":{\"shares\":%lld,\"quota\":%lld,\"period\":100000},"
		  "\"pids\":{\"limit\":%lld}},",
		  (long long)p->memory_bytes, (long long)p->memory_bytes, (long long)shares,
		  (long long)quota, (long long)p->host_pids_max);
	if ((r = write_devices(&sb, spec, err)) < 0)
		return r;
	sb_append(&sb, "}}\n");

	_cleanup_free_ char *path = xasprintf("%s/config.json", dir);
	return gv_write_file(path, sb.buf, err);
}
