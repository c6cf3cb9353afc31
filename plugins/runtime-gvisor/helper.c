/*
 * helper.c: runtime-gvisor-helper, the plugin's small host-side program.
 * Two modes:
 *
 *   runtime-gvisor-helper supervise STATUS_FILE PID_FILE RUNSC ARGS...
 *
 *     Runs `RUNSC ARGS...` (runsc create or restore) as a child subreaper.
 *     runsc create starts the sandbox (sentry) and gofer processes and
 *     exits; they are reparented to the nearest subreaper, which is this
 *     process, and not to PID 1. That matters twice: the sentry exits with
 *     init's status (runsc's convention: the code, or 128+N for signal N),
 *     which only its parent can read, and a dead sentry is reaped at once
 *     (runsc polls a dead sentry with kill(pid, 0), so an unreaped zombie
 *     makes `runsc delete` and `runsc wait` wait for PID 1; about 1.5 s on
 *     a host whose init reaps slowly). runsc's exit code goes to fd 3 as
 *     one line when it ends; then stdio is let go (only the sandbox holds
 *     init's stdio), every reparented child is reaped, and the sentry's
 *     status is written to STATUS_FILE ("exit N" or "signal N"). The
 *     helper exits when the last child is gone.
 *
 *   runtime-gvisor-helper exec ID RUNSC [GLOBAL_FLAG...] -- [EXEC_FLAG...] -- ARGV...
 *
 *     The host command of an exec. The core expects a signal sent to it to
 *     reach the process in the sandbox; `runsc exec` (measured with
 *     0.0~20240729) does not forward signals: SIGTERM, SIGINT, SIGHUP kill
 *     runsc itself and the process inside keeps running; others are
 *     ignored. The helper runs `runsc exec --internal-pid-file=...` as its
 *     child, in a process group of its own (so that a signal to the
 *     helper's group, such as ^C on a terminal, does not kill runsc), learns
 *     the process's pid inside the sandbox through a pipe, and forwards
 *     every signal it gets with `runsc kill --pid=PID ID SIG`. It exits
 *     with runsc exec's status: the process's exit code, or 128+N when it
 *     died of signal N. Signals that arrive before the pid is known are
 *     forwarded once it is. SIGKILL cannot be forwarded (the helper dies,
 *     the process lives on). Stdio is inherited: runsc hands the fds to the
 *     sandbox, so nothing copies data here.
 *
 * Plain libc only.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1,
				SIGUSR2, SIGWINCH, SIGALRM, SIGCONT, SIGTSTP};
#define N_FORWARDED (sizeof forwarded / sizeof forwarded[0])

static void die(const char *what)
{
	fprintf(stderr, "runtime-gvisor-helper: %s: %s\n", what, strerror(errno));
	exit(126);
}

/* Runs argv to completion with the default signal mask, stdio untouched
 * except stdout/stderr to /dev/null. */
static void run_quiet(char *const *argv)
{
	pid_t pid = fork();
	if (pid < 0)
		return;
	if (pid == 0) {
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		int devnull = open("/dev/null", O_RDWR);
		if (devnull >= 0) {
			dup2(devnull, 0);
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
}

/* argv: exec ID RUNSC [FLAG...] -- [EXEC_FLAG...] -- ARGV... */
static int exec_main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: runtime-gvisor-helper exec ID RUNSC [FLAG...] -- [EXEC_FLAG...] -- ARGV...\n");
		return 125;
	}
	const char *id = argv[1];
	int first = -1, second = -1;
	for (int i = 3; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			if (first < 0) {
				first = i;
			} else {
				second = i;
				break;
			}
		}
	}
	if (first < 0 || second < 0 || second + 1 >= argc) {
		fprintf(stderr, "runtime-gvisor-helper: malformed exec command line\n");
		return 125;
	}
	int n_global = first - 2;    /* RUNSC and its global flags */
	int n_flags = second - first - 1;
	int n_cmd = argc - second - 1;

	/* runsc <global> exec --internal-pid-file=/proc/self/fd/3 <flags> ID ARGV */
	char *exec_argv[n_global + n_flags + n_cmd + 4];
	/* runsc <global> kill --pid=PID ID SIG */
	char *kill_argv[n_global + 5];
	int k = 0;
	for (int i = 0; i < n_global; i++)
		exec_argv[k++] = argv[2 + i];
	exec_argv[k++] = "exec";
	exec_argv[k++] = "--internal-pid-file=/proc/self/fd/3";
	for (int i = 0; i < n_flags; i++)
		exec_argv[k++] = argv[first + 1 + i];
	exec_argv[k++] = (char *)id;
	for (int i = 0; i < n_cmd; i++)
		exec_argv[k++] = argv[second + 1 + i];
	exec_argv[k] = NULL;
	char pid_arg[64], sig_arg[16];
	k = 0;
	for (int i = 0; i < n_global; i++)
		kill_argv[k++] = argv[2 + i];
	kill_argv[k++] = "kill";
	kill_argv[k++] = pid_arg;
	kill_argv[k++] = (char *)id;
	kill_argv[k++] = sig_arg;
	kill_argv[k] = NULL;

	sigset_t mask;
	sigemptyset(&mask);
	for (size_t i = 0; i < N_FORWARDED; i++)
		sigaddset(&mask, forwarded[i]);
	sigaddset(&mask, SIGCHLD);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		die("sigprocmask");
	int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0)
		die("signalfd");

	int pp[2];
	if (pipe2(pp, O_CLOEXEC) < 0)
		die("pipe");
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		/* Own process group: signals to the helper's group are the
		 * helper's to forward, they must not kill runsc. */
		setpgid(0, 0);
		if (dup2(pp[1], 3) < 0) /* dup2 clears CLOEXEC */
			_exit(126);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(exec_argv[0], exec_argv);
		fprintf(stderr, "runtime-gvisor-helper: exec %s: %s\n", exec_argv[0], strerror(errno));
		_exit(126);
	}
	close(pp[1]);
	int pid_fd = pp[0];
	char pid_buf[32];
	size_t pid_len = 0;
	long inner = 0;
	unsigned pending = 0; /* bit i: forwarded[i] arrived before the pid */

	for (;;) {
		struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN}, {.fd = pid_fd, .events = POLLIN}};
		int n = poll(pfd, pid_fd >= 0 ? 2 : 1, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("poll");
		if (pid_fd >= 0 && pfd[1].revents) {
			/* runsc writes the pid with one small write(2) but keeps
			 * fd 3 open until it exits: take the pid when it comes,
			 * not at EOF. */
			ssize_t r = read(pid_fd, pid_buf + pid_len, sizeof pid_buf - 1 - pid_len);
			if (r > 0) {
				pid_len += (size_t)r;
				pid_buf[pid_len] = '\0';
				inner = strtol(pid_buf, NULL, 10);
			}
			if (inner > 0 || r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
				close(pid_fd);
				pid_fd = -1;
				snprintf(pid_arg, sizeof pid_arg, "--pid=%ld", inner);
				for (size_t i = 0; inner > 0 && i < N_FORWARDED; i++) {
					if (pending & (1u << i)) {
						snprintf(sig_arg, sizeof sig_arg, "%d", forwarded[i]);
						run_quiet(kill_argv);
					}
				}
				pending = 0;
			}
		}
		if (!pfd[0].revents)
			continue;
		struct signalfd_siginfo si;
		if (read(sfd, &si, sizeof si) != (ssize_t)sizeof si)
			continue;
		if ((int)si.ssi_signo == SIGCHLD) {
			int st;
			pid_t w = waitpid(child, &st, WNOHANG);
			if (w == child) {
				if (WIFEXITED(st))
					return WEXITSTATUS(st);
				if (WIFSIGNALED(st))
					return 128 + WTERMSIG(st);
				return 125;
			}
			continue;
		}
		for (size_t i = 0; i < N_FORWARDED; i++) {
			if ((int)si.ssi_signo != forwarded[i])
				continue;
			if (inner > 0) {
				snprintf(sig_arg, sizeof sig_arg, "%d", forwarded[i]);
				run_quiet(kill_argv);
			} else {
				pending |= 1u << i;
			}
		}
	}
}

static void write_status(const char *path, int wstatus)
{
	char tmp[4096], line[64];
	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return;
	int n = WIFSIGNALED(wstatus)
			? snprintf(line, sizeof line, "signal %d\n", WTERMSIG(wstatus))
			: snprintf(line, sizeof line, "exit %d\n", WEXITSTATUS(wstatus));
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) == n)
		rename(tmp, path);
	else
		unlink(tmp);
	close(fd);
}

static pid_t read_pid(const char *path)
{
	char buf[32];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return (pid_t)strtol(buf, NULL, 10);
}

/* argv: supervise STATUS_FILE PID_FILE RUNSC ARGS...; fd 3: the report. */
static int supervise_main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: runtime-gvisor-helper supervise STATUS_FILE PID_FILE RUNSC ARGS...\n");
		return 125;
	}
	const char *status_file = argv[1], *pid_file = argv[2];
	int report = 3;
	if (fcntl(report, F_SETFD, FD_CLOEXEC) < 0) {
		fprintf(stderr, "runtime-gvisor-helper: supervise: no report fd 3\n");
		return 125;
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
		die("prctl(PR_SET_CHILD_SUBREAPER)");
	/* Outlive a terminal or a daemon that goes away: the sandbox does. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	if (chdir("/") < 0)
		die("chdir /");

	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		signal(SIGHUP, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		execv(argv[3], argv + 3);
		fprintf(stderr, "runtime-gvisor-helper: exec %s: %s\n", argv[3], strerror(errno));
		_exit(127);
	}
	int st;
	while (waitpid(child, &st, 0) < 0) {
		if (errno != EINTR)
			die("waitpid");
	}
	int code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	char line[16];
	int n = snprintf(line, sizeof line, "%d\n", code);
	if (write(report, line, (size_t)n) != n) {
		/* The plugin gave up waiting; the reaping below still matters. */
	}
	close(report);

	/* Only the sandbox holds init's stdio from now on. */
	int devnull = open("/dev/null", O_RDWR);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		if (devnull > 2)
			close(devnull);
	}
	pid_t sentry = code == 0 ? read_pid(pid_file) : 0;
	for (;;) {
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			break; /* ECHILD: nothing left */
		}
		if (w == sentry && sentry > 0)
			write_status(status_file, st);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "exec") == 0)
		return exec_main(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "supervise") == 0)
		return supervise_main(argc - 1, argv + 1);
	fprintf(stderr, "usage: runtime-gvisor-helper exec|supervise ...\n");
	return 125;
}
