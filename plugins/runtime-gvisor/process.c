/*
 * process.c: the host processes behind a sandbox, watched without runsc.
 *
 * The sentry (runsc's sandbox process) is not our child: runsc create
 * starts it and exits. Its pid and start time are recorded after start
 * (<dir>/meta), so that liveness is a read of /proc/<pid>/stat and a
 * recycled pid is never taken for it; a zombie counts as gone. Waiting uses
 * a pidfd, which works for any process.
 *
 * The supervisor: runsc create (and restore) run under
 * `runtime-gvisor-helper supervise` (helper.c), a child subreaper that the
 * sentry and gofer are reparented to; it reaps them at once and writes the
 * sentry's exit status, which is init's, to <dir>/exit.status. Its pid is
 * kept in <dir>/supervisor.
 *
 * Without the helper, a `runsc wait` spawned after start writes init's
 * status to <dir>/exit.json instead (gVisor keeps it only while the sandbox
 * runs); its pid is kept in <dir>/waiter so that destroy can end it.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"
#include "clock_ms.h"

/* Reads state and start time of pid from /proc; -ESRCH if gone. */
static int proc_stat(pid_t pid, char *state, unsigned long long *starttime)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -ESRCH;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	/* ") S ppid pgrp ... starttime": state is field 3, starttime 22. */
	p += 2;
	*state = *p;
	for (int field = 3; field < 22 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p)
		return -EINVAL;
	*starttime = strtoull(p, NULL, 10);
	return 0;
}

int gv_proc_load(const gv_runtime_t *rt, const char *id, const char *file,
			gv_proc_t *s)
{
	_cleanup_free_ char *path = gv_sb_path(rt, id, file);
	_cleanup_free_ char *text = NULL;
	int r = gv_read_file(path, &text);
	if (r < 0)
		return r;
	int pid;
	if (sscanf(text, "%d %llu", &pid, &s->starttime) != 2 || pid <= 0)
		return -EINVAL;
	s->pid = pid;
	return 0;
}

int gv_sentry_load(const gv_runtime_t *rt, const char *id, gv_proc_t *s)
{
	return gv_proc_load(rt, id, "meta", s);
}

bool gv_proc_alive(const gv_proc_t *s)
{
	char state;
	unsigned long long st;
	if (proc_stat(s->pid, &state, &st) < 0)
		return false;
	return st == s->starttime && state != 'Z' && state != 'X';
}

/* Waits until the sentry has exited; true if it has. */
bool gv_proc_wait(const gv_proc_t *s, int64_t timeout_ms)
{
	if (!gv_proc_alive(s))
		return true;
	int fd = pidfd_open(s->pid, 0);
	if (fd < 0)
		return !gv_proc_alive(s);
	/* The pid might have been reused between the check and the open. */
	if (!gv_proc_alive(s)) {
		close(fd);
		return true;
	}
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	int64_t deadline = mono_ms() + timeout_ms;
	bool dead = false;
	for (;;) {
		int64_t left = deadline - mono_ms();
		if (left < 0)
			left = 0;
		int r = poll(&pfd, 1, (int)left);
		if (r > 0 || !gv_proc_alive(s)) {
			dead = true;
			break;
		}
		if (left == 0)
			break;
	}
	close(fd);
	return dead;
}

void gv_proc_kill(const gv_proc_t *s)
{
	int fd = pidfd_open(s->pid, 0);
	if (fd < 0)
		return;
	if (gv_proc_alive(s))
		pidfd_send_signal(fd, SIGKILL, NULL, 0);
	close(fd);
}

int gv_sentry_record(const gv_runtime_t *rt, const char *id, gv_proc_t *s,
			 hutch_err_t *err)
{
	_cleanup_free_ char *pidfile = gv_sb_path(rt, id, "sandbox.pid");
	_cleanup_free_ char *text = NULL;
	int r = gv_read_file(pidfile, &text);
	if (r < 0)
		return hutch_err_sys(err, r, "read %s", pidfile);
	int pid = atoi(text);
	char state;
	if (pid <= 0 || proc_stat(pid, &state, &s->starttime) < 0)
		return hutch_err_set(err, ESRCH, "the sandbox process (pid %d) is gone right after start",
				     pid);
	s->pid = pid;
	_cleanup_free_ char *meta = gv_sb_path(rt, id, "meta");
	_cleanup_free_ char *line = xasprintf("%d %llu\n", pid, s->starttime);
	return gv_write_file(meta, line, err);
}

/* ---- host children we keep track of ---- */

/* A spawned child's pid is read under a lock shared with its exit
 * callback: the host frees the child handle once on_exit has returned. */
typedef struct tracked {
	pthread_mutex_t lock;
	bool exited;
	int refs;
} tracked_t;

static void tracked_unref(tracked_t *t)
{
	pthread_mutex_lock(&t->lock);
	bool last = --t->refs == 0;
	pthread_mutex_unlock(&t->lock);
	if (last) {
		pthread_mutex_destroy(&t->lock);
		free(t);
	}
}

static void tracked_exited(void *data, const hutch_child_status_t *st)
{
	(void)st;
	tracked_t *t = data;
	pthread_mutex_lock(&t->lock);
	t->exited = true;
	pthread_mutex_unlock(&t->lock);
	tracked_unref(t);
}

/* host->spawn, then "pid starttime" into <dir>/<file> (destroy ends what
 * outlives its sandbox). */
static int spawn_tracked(const gv_runtime_t *rt, const char *id, const hutch_spawn_opts_t *o,
			 const char *file, hutch_err_t *err)
{
	tracked_t *t = xcalloc(1, sizeof *t);
	pthread_mutex_init(&t->lock, NULL);
	t->refs = 2;
	hutch_child_t *child = NULL;
	int r = rt->host->spawn(rt->host, o, tracked_exited, t, &child, err);
	if (r < 0) {
		pthread_mutex_destroy(&t->lock);
		free(t);
		return r;
	}
	pid_t pid = 0;
	pthread_mutex_lock(&t->lock);
	if (!t->exited)
		pid = rt->host->child_pid(child);
	pthread_mutex_unlock(&t->lock);
	tracked_unref(t);
	char state;
	unsigned long long start;
	if (pid > 0 && proc_stat(pid, &state, &start) == 0) {
		_cleanup_free_ char *path = gv_sb_path(rt, id, file);
		_cleanup_free_ char *line = xasprintf("%d %llu\n", (int)pid, start);
		hutch_err_t e = {0};
		gv_write_file(path, line, &e);
	}
	return 0;
}

/* ---- runsc create/restore under the supervisor ---- */

int gv_supervised_run(const gv_runtime_t *rt, const char *id, char *const *runsc_argv,
		      const gv_run_t *run, const char *what, hutch_err_t *err)
{
	_cleanup_free_ char *status = gv_sb_path(rt, id, "exit.status");
	_cleanup_free_ char *pidfile = gv_sb_path(rt, id, "sandbox.pid");
	gv_argv_t a = {0};
	gv_argv_add(&a, rt->helper);
	gv_argv_add(&a, "supervise");
	gv_argv_add(&a, status);
	gv_argv_add(&a, pidfile);
	for (char *const *p = runsc_argv; *p; p++)
		gv_argv_add(&a, *p);
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		gv_argv_free(&a);
		return hutch_err_sys(err, errno, "%s: pipe", what);
	}
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = (const char *const *)a.v,
		.stdin_fd = run->stdin_fd,
		.stdout_fd = run->stdout_fd,
		.stderr_fd = run->stderr_fd,
		.extra_fds = &p[1],
		.n_extra_fds = 1,
		.netns_fd = run->netns_fd,
		/* Signals to hutchd's process group are not the sandbox's. */
		.new_session = true,
	};
	int r = spawn_tracked(rt, id, &o, "supervisor", err);
	gv_argv_free(&a);
	close(p[1]);
	if (r < 0) {
		close(p[0]);
		return hutch_err_prefix(err, "%s", what);
	}
	/* The helper reports runsc's exit code as one line, then carries on
	 * as the sandbox's reaper. */
	char line[32] = "";
	size_t n = 0;
	int64_t deadline = mono_ms() + run->timeout_ms;
	while (n < sizeof line - 1) {
		struct pollfd pfd = {.fd = p[0], .events = POLLIN};
		int64_t left = deadline - mono_ms();
		if (left <= 0) {
			close(p[0]);
			gv_proc_t sup;
			if (gv_proc_load(rt, id, "supervisor", &sup) == 0)
				gv_proc_kill(&sup);
			return hutch_err_set(err, ETIMEDOUT, "%s: runsc timed out after %lld ms", what,
					     (long long)run->timeout_ms);
		}
		int pr = poll(&pfd, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		ssize_t k = read(p[0], line + n, sizeof line - 1 - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		n += (size_t)k;
		if (memchr(line, '\n', n))
			break;
	}
	close(p[0]);
	line[n] = '\0';
	if (n == 0)
		return hutch_err_set(err, EIO, "%s: the supervisor (%s) ended without a word", what,
				     rt->helper);
	int code = atoi(line);
	if (code == 0)
		return 0;
	char why[1024];
	gv_log_last_error(run->log_path, why, sizeof why);
	return hutch_err_set(err, EIO, "%s: runsc exited %d%s%s", what, code, why[0] ? ": " : "",
			     why);
}

/* ---- init's exit status ---- */

/* Without the helper: `runsc wait` answers with init's status when init
 * ends, about 1.7 s after the sentry exits on a host whose init reaps
 * orphans slowly (runsc polls for the dead sentry); exit.json gets it. */
void gv_waiter_start(const gv_runtime_t *rt, const char *id)
{
	if (!rt->cfg->exit_status || rt->helper)
		return;
	_cleanup_free_ char *path = gv_sb_path(rt, id, "exit.json");
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rt->host->log(rt->host, HUTCH_LOG_WARN, "%s: no exit status: open %s: %s", id,
			      path, strerror(errno));
		return;
	}
	_cleanup_free_ char *log_path = gv_sb_path(rt, id, "wait.log");
	_cleanup_close_ int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	gv_argv_t a = {0};
	gv_sandbox_cmd(rt, id, &a);
	gv_argv_add(&a, "wait");
	gv_argv_add_runsc_id(&a, id);
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = (const char *const *)a.v,
		.stdin_fd = -1,
		.stdout_fd = fd,
		.stderr_fd = log_fd,
		.netns_fd = -1,
	};
	hutch_err_t e = {0};
	if (spawn_tracked(rt, id, &o, "waiter", &e) < 0)
		rt->host->log(rt->host, HUTCH_LOG_WARN, "%s: no exit status: %s", id, e.message);
	gv_argv_free(&a);
}

int gv_exit_status_read(const gv_runtime_t *rt, const char *id)
{
	/* The supervisor's record of the sentry's exit: runsc's boot process
	 * exits with init's status (128+N for a signal). A sentry killed
	 * itself (the OOM killer) reads as 128+N too. */
	_cleanup_free_ char *spath = gv_sb_path(rt, id, "exit.status");
	_cleanup_free_ char *stext = NULL;
	int v32;
	if (gv_read_file(spath, &stext) == 0) {
		if (sscanf(stext, "exit %d", &v32) == 1)
			return v32;
		if (sscanf(stext, "signal %d", &v32) == 1)
			return 128 + v32;
	}
	_cleanup_free_ char *path = gv_sb_path(rt, id, "exit.json");
	_cleanup_free_ char *text = NULL;
	int64_t v;
	if (gv_read_file(path, &text) < 0 || gv_json_int(text, "exitStatus", &v) < 0)
		return -1;
	return (int)v;
}
