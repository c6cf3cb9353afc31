/* Starting host processes: fds mapped as asked and nothing else leaked,
 * exec failures reported as errors, timeouts enforced. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "proc.h"

static hutch_spawn_opts_t opts(const char *const *argv)
{
	return (hutch_spawn_opts_t){
		.size = sizeof(hutch_spawn_opts_t),
		.argv = argv,
		.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .netns_fd = -1,
	};
}

static void captures_output_and_status(void)
{
	const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 7", NULL};
	hutch_spawn_opts_t o = opts(argv);
	char out[64], er[64];
	hutch_run_result_t res = {sizeof res, 0, 0, false, out, sizeof out, 0, er, sizeof er, 0};
	hutch_err_t err = {0};
	CHECK_EQ_INT(proc_run(&o, &res, &err), 0);
	CHECK_EQ_INT(res.exit_code, 7);
	CHECK_STR(out, "out\n");
	CHECK_STR(er, "err\n");
}

static void exec_failure_is_an_error(void)
{
	const char *argv[] = {"/nonexistent/tool", NULL};
	hutch_spawn_opts_t o = opts(argv);
	hutch_run_result_t res = {.size = sizeof res};
	hutch_err_t err = {0};
	CHECK_EQ_INT(proc_run(&o, &res, &err), -ENOENT);
	CHECK_STR(err.message, "exec `/nonexistent/tool`: No such file or directory");
	const char *argv2[] = {"no-such-command-here", NULL};
	o = opts(argv2);
	CHECK_EQ_INT(proc_run(&o, &res, &err), -ENOENT);
	CHECK_CONTAINS(err.message, "command `no-such-command-here` not found in PATH");
}

static void no_fd_leaks_into_children(void)
{
	/* An fd without CLOEXEC, as another thread might have made. */
	int leaky = open("/dev/null", O_RDONLY);
	CHECK(leaky >= 3);
	int extra = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	const char *argv[] = {"sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '", NULL};
	hutch_spawn_opts_t o = opts(argv);
	o.extra_fds = &extra;
	o.n_extra_fds = 1;
	char out[256];
	hutch_run_result_t res = {.size = sizeof res, .out = out, .out_cap = sizeof out};
	hutch_err_t err = {0};
	CHECK_EQ_INT(proc_run(&o, &res, &err), 0);
	/* 0-2, the extra fd as 3, and the fd ls itself opens on /proc/self/fd. */
	CHECK_STR(out, "0 1 2 3 4 ");
	close(leaky);
	close(extra);
}

static void fds_map_even_when_crossed(void)
{
	/* Pipe A's write end sits at fd 3 and B's at fd 4; the child must get
	 * B as its fd 3 and A as its fd 4. Mapping in place would clobber one
	 * with the other. */
	int a[2], b[2];
	CHECK_EQ_INT(pipe(a), 0);
	CHECK_EQ_INT(pipe(b), 0);
	int a_r = fcntl(a[0], F_DUPFD_CLOEXEC, 100), a_w = fcntl(a[1], F_DUPFD, 100);
	int b_r = fcntl(b[0], F_DUPFD_CLOEXEC, 100), b_w = fcntl(b[1], F_DUPFD, 100);
	close(a[0]), close(a[1]), close(b[0]), close(b[1]);
	CHECK_EQ_INT(dup2(a_w, 3), 3);
	CHECK_EQ_INT(dup2(b_w, 4), 4);
	close(a_w), close(b_w);
	int extras[2] = {4, 3};
	const char *argv[] = {"sh", "-c", "echo to-three >&3; echo to-four >&4", NULL};
	hutch_spawn_opts_t o = opts(argv);
	o.extra_fds = extras;
	o.n_extra_fds = 2;
	hutch_run_result_t res = {.size = sizeof res};
	hutch_err_t err = {0};
	CHECK_EQ_INT(proc_run(&o, &res, &err), 0);
	close(3);
	close(4);
	char fromA[64] = "", fromB[64] = "";
	CHECK(read(a_r, fromA, sizeof fromA - 1) > 0);
	CHECK(read(b_r, fromB, sizeof fromB - 1) > 0);
	CHECK_STR(fromB, "to-three\n");
	CHECK_STR(fromA, "to-four\n");
	close(a_r);
	close(b_r);
}

static void timeout_kills(void)
{
	const char *argv[] = {"sleep", "30", NULL};
	hutch_spawn_opts_t o = opts(argv);
	o.timeout_ms = 200;
	hutch_run_result_t res = {.size = sizeof res};
	hutch_err_t err = {0};
	CHECK_EQ_INT(proc_run(&o, &res, &err), 0);
	CHECK(res.timed_out);
	CHECK_EQ_INT(res.term_signal, SIGKILL);
	char out[16];
	CHECK_EQ_INT(proc_run_argv(argv, 100, out, sizeof out, &err), -ETIMEDOUT);
	CHECK_CONTAINS(err.message, "`sleep` timed out after 100 ms");
}

static void failure_message_carries_stderr(void)
{
	const char *argv[] = {"sh", "-c", "echo 'RTNETLINK answers: File exists' >&2; exit 2", NULL};
	char out[16];
	hutch_err_t err = {0};
	CHECK_EQ_INT(proc_run_argv(argv, 5000, out, sizeof out, &err), -EIO);
	CHECK_STR(err.message, "`sh` exited 2: RTNETLINK answers: File exists");
}

static void signals_reset_in_child(void)
{
	/* hutchd ignores SIGPIPE; its children must not inherit that. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	const char *argv[] = {"sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status", NULL};
	hutch_spawn_opts_t o = opts(argv);
	char out[256];
	hutch_run_result_t res = {.size = sizeof res, .out = out, .out_cap = sizeof out};
	hutch_err_t err = {0};
	CHECK_EQ_INT(proc_run(&o, &res, &err), 0);
	CHECK_CONTAINS(out, "SigBlk:\t0000000000000000");
	CHECK_CONTAINS(out, "SigIgn:\t0000000000000000");
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	signal(SIGPIPE, SIG_DFL);
}

int main(int argc, char **argv)
{
	static const test_case_t cases[] = {
		{"captures_output_and_status", captures_output_and_status},
		{"exec_failure_is_an_error", exec_failure_is_an_error},
		{"no_fd_leaks_into_children", no_fd_leaks_into_children},
		{"fds_map_even_when_crossed", fds_map_even_when_crossed},
		{"timeout_kills", timeout_kills},
		{"failure_message_carries_stderr", failure_message_carries_stderr},
		{"signals_reset_in_child", signals_reset_in_child},
		{NULL, NULL},
	};
	return run_cases(cases, argc, argv);
}
