/*
 * wggo.c: the userspace backend: one wireguard-go process per member.
 *
 * The process gets two fds: the member's TUN device (WG_TUN_FD), opened
 * and brought up by the plugin in the host's namespace, and the listening
 * UAPI socket (WG_UAPI_FD), bound by the plugin at
 * /var/run/wireguard/<name>.sock (where wireguard-go expects it, and where
 * `wg show <name>` finds it). The plugin keeps no copy of the listener, so
 * a wireguard-go that died refuses connections at once. GOMEMLIMIT keeps
 * its heap near memory_limit: without it, it grows to hundreds of MiB
 * under load.
 *
 * Children are started through the host (host->spawn); the plugin follows
 * each through a pidfd, so stopping one waits for its end on the worker
 * thread, and a member adopted after a hutchd restart (no longer hutchd's
 * child) is stopped the same way.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"
#include "wg.h"
#include "clock_ms.h"

#define WG_SOCK_DIR "/var/run/wireguard"

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_signal(int pidfd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* A unique device name: the prefix and 8 random hex digits (15 at most). */
static void name_new(const wg_instance_t *in, char out[16])
{
	uint32_t v = 0;
	if (getrandom(&v, sizeof v, 0) != sizeof v)
		v = (uint32_t)mono_ms() ^ (uint32_t)getpid() << 16;
	snprintf(out, 16, "%s%08" PRIx32, in->cfg->host_prefix, v);
}

/* Binds the listening UAPI socket at p->sock_path (0600). */
static int uapi_listen(wg_proc_t *p, hutch_err_t *err)
{
	if (mkdir(WG_SOCK_DIR, 0755) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", WG_SOCK_DIR);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(p->sock_path, sizeof p->sock_path, WG_SOCK_DIR "/%s.sock", p->host_name);
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", p->sock_path);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hutch_err_sys(err, errno, "UAPI socket");
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		return hutch_err_sys(err, errno, "bind %s", p->sock_path);
	if (chmod(p->sock_path, 0600) < 0 || listen(fd, 16) < 0) {
		int e = errno;
		unlink(p->sock_path);
		return hutch_err_sys(err, e, "listen on %s", p->sock_path);
	}
	return steal_fd(&fd);
}

/* The spawned child, shared by the worker that started it and on_exit on
 * the loop: whoever lets go last frees it. */
typedef struct spawn_ref {
	pthread_mutex_t lock;
	hutch_child_t *child;
	bool exited;
	int refs;
} spawn_ref_t;

static void spawn_ref_put(spawn_ref_t *ref)
{
	pthread_mutex_lock(&ref->lock);
	bool last = --ref->refs == 0;
	pthread_mutex_unlock(&ref->lock);
	if (last) {
		pthread_mutex_destroy(&ref->lock);
		free(ref);
	}
}

static void on_child_exit(void *data, const hutch_child_status_t *status)
{
	(void)status;
	spawn_ref_t *ref = data;
	pthread_mutex_lock(&ref->lock);
	ref->exited = true;
	pthread_mutex_unlock(&ref->lock);
	spawn_ref_put(ref);
}

/* Starts argv with the fds as 3, 4 and returns a pidfd for it. */
static int go_spawn(wg_instance_t *in, const char *const *argv, const int *fds, size_t n_fds,
		    const char *const *envp, pid_t *pid_out, int *pidfd_out, hutch_err_t *err)
{
	spawn_ref_t *ref = xcalloc(1, sizeof *ref);
	pthread_mutex_init(&ref->lock, NULL);
	ref->refs = 2;
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = argv,
		.envp = envp,
		.stdin_fd = -1,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.extra_fds = fds,
		.n_extra_fds = n_fds,
		.netns_fd = -1,
		.new_session = true,
	};
	int r = in->host->spawn(in->host, &o, on_child_exit, ref, &ref->child, err);
	if (r < 0) {
		pthread_mutex_destroy(&ref->lock);
		free(ref);
		return hutch_err_prefix(err, "start %s", argv[0]);
	}
	pthread_mutex_lock(&ref->lock);
	pid_t pid = ref->exited ? -1 : in->host->child_pid(ref->child);
	pthread_mutex_unlock(&ref->lock);
	spawn_ref_put(ref);
	int pidfd = pid > 0 ? pidfd_open_(pid) : -1;
	if (pidfd < 0)
		return hutch_err_set(err, ECHILD, "%s ended at once (is it installed? `%s`)", argv[0],
				     in->cfg->wireguard_go);
	*pid_out = pid;
	*pidfd_out = pidfd;
	return 0;
}

static void envp_build(const wg_instance_t *in, bool with_tun, char env[5][64],
		       const char *envp[6])
{
	size_t n = 0;
	snprintf(env[n], 64, "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
	envp[n] = env[n];
	n++;
	snprintf(env[n], 64, "WG_PROCESS_FOREGROUND=1");
	envp[n] = env[n];
	n++;
	snprintf(env[n], 64, "WG_UAPI_FD=%d", with_tun ? 4 : 3);
	envp[n] = env[n];
	n++;
	if (with_tun) {
		snprintf(env[n], 64, "WG_TUN_FD=3");
		envp[n] = env[n];
		n++;
	}
	if (in->cfg->memory_limit > 0) {
		snprintf(env[n], 64, "GOMEMLIMIT=%" PRId64 "B", in->cfg->memory_limit);
		envp[n] = env[n];
		n++;
	}
	envp[n] = NULL;
}

/* Waits until wireguard-go listens on its UDP port: get=1 says a port
 * other than 0 only once the device is up and the socket bound. */
static int wait_listening(wg_instance_t *in, wg_proc_t *p, int64_t deadline, hutch_err_t *err)
{
	for (int delay = 1;; delay = delay < 8 ? delay * 2 : 8) {
		wg_uapi_state_t st;
		int left = (int)(deadline - mono_ms());
		if (left <= 0)
			return hutch_err_set(err, ETIMEDOUT,
					     "wireguard-go on %s did not open its UDP socket within %" PRId64
					     " ms",
					     p->host_name, in->cfg->start_timeout_ms);
		int r = wg_uapi_get(p->sock_path, left, &st, err);
		if (r < 0)
			return r;
		p->port = st.listen_port;
		wg_uapi_state_free(&st);
		if (p->port)
			return 0;
		sleep_ms(delay);
	}
}

int wg_go_start(wg_instance_t *in, const wg_key_t *priv, const char *body, uint16_t port,
		wg_proc_t *p, int *ifindex, hutch_err_t *err)
{
	memset(p, 0, sizeof *p);
	p->pidfd = -1;
	p->pid = -1;
	int64_t deadline = mono_ms() + in->cfg->start_timeout_ms;
	_cleanup_close_ int tun = -1;
	_cleanup_close_ int lsn = -1;
	int r = 0;
	for (int tries = 0; tries < 4; tries++) {
		name_new(in, p->host_name);
		r = wg_tun_open(p->host_name, in->tun_flags, &tun, ifindex, err);
		if (r != -EEXIST && r != -EBUSY)
			break;
	}
	if (r < 0)
		return r;
	if ((lsn = uapi_listen(p, err)) < 0)
		return lsn;
	char env[5][64];
	const char *envp[6];
	envp_build(in, true, env, envp);
	const char *argv[] = {in->cfg->wireguard_go, "-f", p->host_name, NULL};
	const int fds[2] = {tun, lsn};
	r = go_spawn(in, argv, fds, 2, envp, &p->pid, &p->pidfd, err);
	/* Ours go: the device lives as long as wireguard-go holds it, and the
	 * listener answers only while wireguard-go does. */
	close(steal_fd(&tun));
	close(steal_fd(&lsn));
	if (r < 0) {
		unlink(p->sock_path);
		return r;
	}
	char hex[2 * WG_KEY_LEN + 1];
	wg_key_hex(priv, hex);
	strbuf_t req = STRBUF_INIT;
	sb_reserve(&req, 256 + strlen(body));
	sb_printf(&req, "private_key=%s\nlisten_port=0\nreplace_peers=true\n%s", hex, body);
	wg_wipe(hex, sizeof hex);
	r = wg_uapi_set(p->sock_path, req.buf, (int)(deadline - mono_ms()), err);
	wg_wipe(req.buf, req.cap);
	sb_free(&req);
	if (r == 0)
		r = wait_listening(in, p, deadline, err);
	/* A fixed port (a gateway's) only now: wireguard-go reports a port
	 * set by hand whether or not it could bind it, so the ephemeral one
	 * above is what proved the device up; moving to port fails loudly
	 * when it is taken. */
	if (r == 0 && port) {
		char line[32];
		snprintf(line, sizeof line, "listen_port=%u\n", port);
		r = wg_uapi_set(p->sock_path, line, (int)(deadline - mono_ms()), err);
		if (r == 0)
			p->port = port;
		else
			hutch_err_prefix(err, "UDP port %u", port);
	}
	if (r < 0) {
		wg_go_stop(in, p);
		return hutch_err_prefix(err, "wireguard-go");
	}
	return 0;
}

void wg_go_stop(wg_instance_t *in, wg_proc_t *p)
{
	(void)in;
	if (p->pidfd >= 0) {
		struct pollfd pf = {.fd = p->pidfd, .events = POLLIN};
		if (pidfd_signal(p->pidfd, SIGTERM) == 0 && poll(&pf, 1, 2000) == 0) {
			pidfd_signal(p->pidfd, SIGKILL);
			poll(&pf, 1, 2000);
		}
		close(p->pidfd);
		p->pidfd = -1;
	} else if (p->pid > 0 && wg_go_alive(p)) {
		/* Adopted without a pidfd (cannot happen on kernels with
		 * pidfd_open; kept for clarity): signal by pid. */
		kill(p->pid, SIGKILL);
	}
	if (p->sock_path[0])
		unlink(p->sock_path);
	p->pid = -1;
}

bool wg_go_alive(const wg_proc_t *p)
{
	if (p->pid <= 0)
		return false;
	char path[64], cmd[256];
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)p->pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : -1;
	if (n <= 0)
		return false;
	cmd[n] = '\0';
	/* argv is NUL-separated: "wireguard-go\0-f\0<name>\0". */
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(cmd + i) + 1)
		if (strcmp(cmd + i, p->host_name) == 0)
			return true;
	return false;
}

bool wg_go_adopt(wg_proc_t *p)
{
	p->pidfd = -1;
	if (!wg_go_alive(p))
		return false;
	p->pidfd = pidfd_open_(p->pid);
	/* It could have ended between the two looks. */
	if (p->pidfd < 0 || !wg_go_alive(p)) {
		if (p->pidfd >= 0)
			close(p->pidfd);
		p->pidfd = -1;
		return false;
	}
	return true;
}

/* ---- the probe ---- */

static void version_read(wg_instance_t *in)
{
	char out[256] = "";
	hutch_run_result_t res = {.size = sizeof res, .out = out, .out_cap = sizeof out};
	const char *argv[] = {in->cfg->wireguard_go, "--version", NULL};
	hutch_spawn_opts_t o = {.size = sizeof o, .argv = argv, .stdin_fd = -1, .stdout_fd = -1,
				.stderr_fd = -1, .netns_fd = -1, .timeout_ms = 5000};
	hutch_err_t e = {0};
	if (in->host->run(in->host, &o, &res, &e) == 0 && res.exit_code == 0) {
		/* "wireguard-go v0.0.20230223\n\nUserspace ..." */
		char *v = strstr(out, " v");
		if (v)
			snprintf(in->go_version, sizeof in->go_version, "%.*s",
				 (int)strcspn(v + 1, "\n"), v + 1);
	}
}

int wg_go_probe(wg_instance_t *in, hutch_err_t *err)
{
	version_read(in);
	if (!in->go_version[0])
		return hutch_err_set(err, ENOENT,
				     "`%s --version` failed: install wireguard-go (scripts/install-deps.sh) or set wireguard_go",
				     in->cfg->wireguard_go);
	/* wireguard-go makes a device itself, with the flags it speaks: the
	 * members' devices get the same (IFF_VNET_HDR, where it does
	 * offloads, makes it several times faster; an older one that does not
	 * know the header would read garbage with it). */
	wg_proc_t p = {.pidfd = -1, .pid = -1};
	name_new(in, p.host_name);
	_cleanup_close_ int lsn = uapi_listen(&p, err);
	if (lsn < 0)
		return lsn;
	char env[5][64];
	const char *envp[6];
	envp_build(in, false, env, envp);
	const char *argv[] = {in->cfg->wireguard_go, "-f", p.host_name, NULL};
	const int fds[1] = {lsn};
	int r = go_spawn(in, argv, fds, 1, envp, &p.pid, &p.pidfd, err);
	close(steal_fd(&lsn));
	if (r < 0) {
		unlink(p.sock_path);
		return r;
	}
	wg_uapi_state_t st;
	r = wg_uapi_get(p.sock_path, (int)in->cfg->start_timeout_ms, &st, err);
	if (r == 0) {
		wg_uapi_state_free(&st);
		r = wg_tun_flags(p.host_name, &in->tun_flags, err);
	}
	wg_go_stop(in, &p);
	if (r < 0)
		return hutch_err_prefix(err, "probing %s", in->cfg->wireguard_go);
	return 0;
}
