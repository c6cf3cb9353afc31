#include "proc.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"
#include "clock_ms.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define MAX_MAPPED_FDS 64

static const char *env_path(const char *const *envp)
{
	if (envp) {
		for (const char *const *e = envp; *e; e++)
			if (strncmp(*e, "PATH=", 5) == 0)
				return *e + 5;
	}
	const char *p = getenv("PATH");
	return p && *p ? p : DEFAULT_PATH;
}

/* Resolves a command name to an executable path, before forking (the
 * child must not allocate). */
static int resolve_exec(const char *name, const char *path, char *out,
			size_t cap, hutch_err_t *err)
{
	if (strchr(name, '/')) {
		if (snprintf(out, cap, "%s", name) >= (int)cap)
			return hutch_err_set(err, ENAMETOOLONG, "command path too long");
		return 0;
	}
	const char *p = path;
	while (*p) {
		const char *end = strchr(p, ':');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n > 0 && snprintf(out, cap, "%.*s/%s", (int)n, p, name) < (int)cap &&
		    access(out, X_OK) == 0) {
			struct stat st;
			if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
				return 0;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return hutch_err_set(err, ENOENT, "command `%s` not found in PATH", name);
}

/* In the child: only async-signal-safe calls from here to execve. */
static void __attribute__((noreturn))
child_exec(const hutch_spawn_opts_t *o, const char *path, char *const *envp,
	   int report_fd, const int *src, int n_src)
{
	int e;
	sigset_t all;
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP)
			continue;
		signal(s, SIG_DFL);
	}

	/* Move the report pipe and every source out of the target range
	 * first, so that mapping one never clobbers another. */
	report_fd = fcntl(report_fd, F_DUPFD_CLOEXEC, n_src + 3);
	if (report_fd < 0)
		_exit(127);
	int moved[MAX_MAPPED_FDS];
	for (int i = 0; i < n_src; i++) {
		int fd = src[i];
		if (fd < 0) {
			fd = open("/dev/null", O_RDWR | O_CLOEXEC);
			if (fd < 0)
				goto fail;
		}
		moved[i] = fcntl(fd, F_DUPFD_CLOEXEC, n_src + 3);
		if (moved[i] < 0)
			goto fail;
	}
	for (int i = 0; i < n_src; i++)
		if (dup2(moved[i], i) < 0)
			goto fail;
	/* Nothing else leaks into the child: not another thread's fds, not
	 * hutchd's sockets. The report pipe is CLOEXEC. */
	close_range((unsigned)n_src, (unsigned)report_fd - 1, 0);
	close_range((unsigned)report_fd + 1, ~0U, 0);
	if (o->new_session && setsid() < 0)
		goto fail;
	if (o->netns_fd >= 0) {
		/* proc_spawn mapped the namespace fd last. */
		if (setns(n_src - 1, CLONE_NEWNET) < 0)
			goto fail;
		close(n_src - 1);
	}
	if (o->cwd && chdir(o->cwd) < 0)
		goto fail;
	execve(path, (char *const *)o->argv, envp);
fail:
	e = errno;
	if (write(report_fd, &e, sizeof e) < 0) {
		/* nothing more to do */
	}
	_exit(127);
}

int proc_spawn(const hutch_spawn_opts_t *o, pid_t *pid_out, int *pidfd_out,
	       hutch_err_t *err)
{
	if (!o->argv || !o->argv[0])
		return hutch_err_set(err, EINVAL, "spawn: empty argv");
	if (o->n_extra_fds > MAX_MAPPED_FDS - 4)
		return hutch_err_set(err, EINVAL, "spawn: too many fds");

	char path[PATH_MAX];
	int r = resolve_exec(o->argv[0], env_path(o->envp), path, sizeof path, err);
	if (r < 0)
		return r;

	static const char *const default_env[] = {"PATH=" DEFAULT_PATH, NULL};
	char *const *envp = (char *const *)(o->envp ? o->envp : default_env);

	/* The fds the child gets: 0, 1, 2, extras, and the netns fd last
	 * (entered and closed before exec). */
	int src[MAX_MAPPED_FDS];
	int n_src = 0;
	src[n_src++] = o->stdin_fd;
	src[n_src++] = o->stdout_fd;
	src[n_src++] = o->stderr_fd;
	for (size_t i = 0; i < o->n_extra_fds; i++)
		src[n_src++] = o->extra_fds[i];
	if (o->netns_fd >= 0)
		src[n_src++] = o->netns_fd;

	int report[2];
	if (pipe2(report, O_CLOEXEC) < 0)
		return hutch_err_sys(err, errno, "spawn `%s`: pipe", o->argv[0]);

	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(report[0]);
		close(report[1]);
		return hutch_err_sys(err, e, "spawn `%s`: fork", o->argv[0]);
	}
	if (pid == 0)
		child_exec(o, path, envp, report[1], src, n_src);

	close(report[1]);
	int child_errno = 0;
	ssize_t n;
	do
		n = read(report[0], &child_errno, sizeof child_errno);
	while (n < 0 && errno == EINTR);
	close(report[0]);
	if (n == sizeof child_errno) {
		int st;
		while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
			;
		return hutch_err_sys(err, child_errno, "exec `%s`", o->argv[0]);
	}
	if (pidfd_out) {
		/* A pidfd where the kernel (or valgrind) offers one; callers
		 * fall back to waitpid polling when it is -1. */
		int pfd = pidfd_open(pid, 0);
		if (pfd < 0 && errno != ENOSYS) {
			int e = errno;
			kill(pid, SIGKILL);
			int st;
			while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
				;
			return hutch_err_sys(err, e, "spawn `%s`: pidfd_open", o->argv[0]);
		}
		*pidfd_out = pfd;
	}
	*pid_out = pid;
	return 0;
}

void proc_status_decode(int wstatus, int *exit_code, int *term_signal)
{
	if (WIFEXITED(wstatus)) {
		*exit_code = WEXITSTATUS(wstatus);
		*term_signal = 0;
	} else if (WIFSIGNALED(wstatus)) {
		*exit_code = -1;
		*term_signal = WTERMSIG(wstatus);
	} else {
		*exit_code = -1;
		*term_signal = 0;
	}
}

/* Hands what is readable on fd to the watcher; false at EOF or error
 * (the caller closes fd), true while it stays open. */
static bool pipe_drain(int fd, int stream, const proc_watch_t *w)
{
	char buf[16384];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n > 0) {
			w->on_output(w->data, stream, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
}

typedef struct watch_state {
	pid_t pid;
	int pidfd;
	int pipes[2]; /* read ends, -1 when closed */
	bool exited, reaped;
	int wstatus;
} watch_state_t;

/* One round: waits for the child or output, reads what came. */
static int watch_round(watch_state_t *ws, const proc_watch_t *w, int64_t deadline,
		       proc_end_t *end)
{
	if (!ws->exited && !end->timed_out && !end->cancelled) {
		if (deadline && mono_ms() >= deadline)
			end->timed_out = true;
		else if (w->cancel && atomic_load(w->cancel))
			end->cancelled = true;
		if (end->timed_out || end->cancelled)
			kill(ws->pid, SIGKILL); /* a negative pid: its group */
	}
	struct pollfd pfds[3] = {
		{.fd = ws->exited ? -1 : ws->pidfd, .events = POLLIN},
		{.fd = ws->pipes[0], .events = POLLIN},
		{.fd = ws->pipes[1], .events = POLLIN},
	};
	bool killed = end->timed_out || end->cancelled;
	int wait = ws->exited ? 100 : -1;
	if (!ws->exited && deadline && !killed)
		wait = (int)(deadline - mono_ms() > 0 ? deadline - mono_ms() : 0);
	if (!ws->exited && (w->cancel || killed) && (wait < 0 || wait > 200))
		wait = 200;
	if (!ws->exited && ws->pidfd < 0 && (wait < 0 || wait > 20))
		wait = 20; /* no pidfd: ask waitpid */
	int pr = poll(pfds, 3, wait);
	if (pr < 0 && errno != EINTR)
		return -errno;
	pid_t pid = ws->pid < 0 ? -ws->pid : ws->pid;
	if (!ws->exited && ws->pidfd < 0 && waitpid(pid, &ws->wstatus, WNOHANG) == pid)
		ws->reaped = ws->exited = true;
	if (!ws->exited && pfds[0].revents)
		ws->exited = true;
	for (int k = 0; k < 2; k++) {
		if (ws->pipes[k] < 0)
			continue;
		/* Once the child is gone, a grandchild that kept the pipe and
		 * stays silent must not hold the caller forever. */
		if (!pipe_drain(ws->pipes[k], k + 1, w) || (ws->exited && pr == 0))
			close(steal_fd(&ws->pipes[k]));
	}
	return 0;
}

int proc_run_watched(const hutch_spawn_opts_t *opts, const proc_watch_t *w, proc_end_t *end,
		     hutch_err_t *err)
{
	hutch_spawn_opts_t o = *opts;
	watch_state_t ws = {.pidfd = -1, .pipes = {-1, -1}};
	int wr[2] = {-1, -1};
	*end = (proc_end_t){.exit_code = -1};
	int r = 0;
	for (int k = 0; k < 2; k++) {
		int p[2];
		if (!w->on_output || !(w->streams & (1u << k)))
			continue;
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
			r = hutch_err_sys(err, errno, "pipe");
			goto out;
		}
		ws.pipes[k] = p[0];
		wr[k] = p[1];
	}
	if (wr[0] >= 0)
		o.stdout_fd = wr[0];
	if (wr[1] >= 0)
		o.stderr_fd = wr[1];
	pid_t pid;
	r = proc_spawn(&o, &pid, &ws.pidfd, err);
	for (int k = 0; k < 2; k++)
		if (wr[k] >= 0)
			close(steal_fd(&wr[k]));
	if (r < 0)
		goto out;
	ws.pid = o.new_session ? -pid : pid;
	int64_t deadline = w->timeout_ms > 0 ? mono_ms() + w->timeout_ms : 0;
	while (!ws.exited || ws.pipes[0] >= 0 || ws.pipes[1] >= 0)
		if (watch_round(&ws, w, deadline, end) < 0)
			break;
	while (!ws.reaped && waitpid(pid, &ws.wstatus, 0) < 0 && errno == EINTR)
		;
	proc_status_decode(ws.wstatus, &end->exit_code, &end->term_signal);
out:
	for (int k = 0; k < 2; k++) {
		if (ws.pipes[k] >= 0)
			close(ws.pipes[k]);
		if (wr[k] >= 0)
			close(wr[k]);
	}
	if (ws.pidfd >= 0)
		close(ws.pidfd);
	return r;
}

/* proc_run's collector: what fits of each stream, NUL-terminated. */
static void collect(void *data, int stream, const char *buf, size_t n)
{
	hutch_run_result_t *res = data;
	char *dst = stream == 1 ? res->out : res->err;
	size_t cap = stream == 1 ? res->out_cap : res->err_cap;
	size_t *len = stream == 1 ? &res->out_len : &res->err_len;
	if (!dst || cap == 0)
		return;
	size_t room = cap - 1 - *len;
	size_t take = n < room ? n : room;
	memcpy(dst + *len, buf, take);
	*len += take;
	dst[*len] = '\0';
}

int proc_run(const hutch_spawn_opts_t *opts, hutch_run_result_t *res, hutch_err_t *err)
{
	hutch_spawn_opts_t o = *opts;
	res->exit_code = -1;
	res->term_signal = 0;
	res->timed_out = false;
	res->out_len = res->err_len = 0;
	if (res->out && res->out_cap)
		res->out[0] = '\0';
	if (res->err && res->err_cap)
		res->err[0] = '\0';
	/* Streams the caller does not capture go where opts says. */
	proc_watch_t w = {
		.on_output = collect,
		.data = res,
		.streams = (res->out ? 1u : 0u) | (res->err ? 2u : 0u),
		.timeout_ms = o.timeout_ms,
	};
	proc_end_t end;
	int r = proc_run_watched(&o, &w, &end, err);
	if (r < 0)
		return r;
	res->exit_code = end.exit_code;
	res->term_signal = end.term_signal;
	res->timed_out = end.timed_out;
	return 0;
}

int proc_run_argv(const char *const *argv, int64_t timeout_ms, char *out,
		  size_t out_cap, hutch_err_t *err)
{
	char errbuf[1024];
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = argv,
		.stdin_fd = -1,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.netns_fd = -1,
		.timeout_ms = timeout_ms,
	};
	hutch_run_result_t res = {
		.size = sizeof res,
		.out = out,
		.out_cap = out_cap,
		.err = errbuf,
		.err_cap = sizeof errbuf,
	};
	int r = proc_run(&o, &res, err);
	if (r < 0)
		return r;
	if (res.timed_out)
		return hutch_err_set(err, ETIMEDOUT, "`%s` timed out after %lld ms",
				     argv[0], (long long)timeout_ms);
	if (res.exit_code != 0) {
		/* Trim trailing newlines of the tool's message. */
		while (res.err_len > 0 && (errbuf[res.err_len - 1] == '\n'))
			errbuf[--res.err_len] = '\0';
		if (res.term_signal)
			return hutch_err_set(err, EIO, "`%s` killed by signal %d: %s",
					     argv[0], res.term_signal, errbuf);
		return hutch_err_set(err, EIO, "`%s` exited %d: %s", argv[0],
				     res.exit_code, errbuf);
	}
	return 0;
}
