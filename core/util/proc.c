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

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Appends what is readable on fd into buf; returns 0 at EOF, 1 if open. */
static int drain(int fd, char *buf, size_t cap, size_t *len)
{
	char tmp[16384];
	for (;;) {
		ssize_t n = read(fd, tmp, sizeof tmp);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? 1 : 0;
		if (n == 0)
			return 0;
		if (buf && cap > 0) {
			size_t room = cap - 1 - *len;
			size_t take = (size_t)n < room ? (size_t)n : room;
			memcpy(buf + *len, tmp, take);
			*len += take;
			buf[*len] = '\0';
		}
	}
}

int proc_run(const hutch_spawn_opts_t *opts, hutch_run_result_t *res,
	     hutch_err_t *err)
{
	hutch_spawn_opts_t o = *opts;
	_cleanup_close_ int out_r = -1, out_w = -1, err_r = -1, err_w = -1;
	_cleanup_close_ int pidfd = -1;
	int p[2];

	res->exit_code = -1;
	res->term_signal = 0;
	res->timed_out = false;
	res->out_len = res->err_len = 0;
	if (res->out && res->out_cap)
		res->out[0] = '\0';
	if (res->err && res->err_cap)
		res->err[0] = '\0';

	if (res->out) {
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
			return hutch_err_sys(err, errno, "pipe");
		out_r = p[0];
		out_w = p[1];
		o.stdout_fd = out_w;
	}
	if (res->err) {
		if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
			return hutch_err_sys(err, errno, "pipe");
		err_r = p[0];
		err_w = p[1];
		o.stderr_fd = err_w;
	}
	pid_t pid;
	int r = proc_spawn(&o, &pid, &pidfd, err);
	if (r < 0)
		return r;
	close(steal_fd(&out_w));
	close(steal_fd(&err_w));

	int64_t deadline = o.timeout_ms > 0 ? now_ms() + o.timeout_ms : 0;
	bool exited = false;
	int st = 0;
	bool reaped = false;
	while (!exited) {
		struct pollfd pfds[3];
		int n = 0;
		/* fd -1 is ignored by poll: without a pidfd the loop wakes every
		 * 20 ms to ask waitpid instead. */
		pfds[n++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		if (out_r >= 0)
			pfds[n++] = (struct pollfd){.fd = out_r, .events = POLLIN};
		if (err_r >= 0)
			pfds[n++] = (struct pollfd){.fd = err_r, .events = POLLIN};
		int wait = -1;
		if (deadline) {
			int64_t left = deadline - now_ms();
			if (left <= 0) {
				kill(pid, SIGKILL);
				res->timed_out = true;
				deadline = 0;
				continue;
			}
			wait = (int)left;
		}
		if (pidfd < 0 && (wait < 0 || wait > 20))
			wait = 20;
		int pr = poll(pfds, (nfds_t)n, wait);
		if (pr < 0 && errno != EINTR)
			break;
		if (pidfd < 0 && waitpid(pid, &st, WNOHANG) == pid) {
			reaped = true;
			exited = true;
		}
		if (pr <= 0 && !exited)
			continue;
		if (pfds[0].revents)
			exited = true;
		/* Read whatever is there; a grandchild that inherited the pipe
		 * may keep it open after the child exits, so EOF is not awaited
		 * once the child is gone. */
		if (out_r >= 0 && !drain(out_r, res->out, res->out_cap, &res->out_len))
			close(steal_fd(&out_r));
		if (err_r >= 0 && !drain(err_r, res->err, res->err_cap, &res->err_len))
			close(steal_fd(&err_r));
	}
	while (!reaped && waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	proc_status_decode(st, &res->exit_code, &res->term_signal);
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
