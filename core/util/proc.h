/*
 * proc.h: starting host processes safely from any thread.
 *
 * hutchd is multi-threaded (libuv's pool) and starts many short-lived
 * helpers (runsc, ip, ...). proc_spawn() forks and, in the child, does only
 * async-signal-safe work: it maps the requested fds onto 0, 1, 2, 3..., closes
 * every other fd (so nothing leaks into a sandbox), resets the signal mask
 * and dispositions, optionally enters a network namespace and a new session,
 * and execs a path resolved before the fork. An exec failure is reported
 * back to the parent as an error, not as a mysterious exit code 127.
 *
 * Children are never reaped by anyone but their starter: callers waitpid()
 * their own pid (libuv only reaps the pids it spawned itself).
 */
#ifndef HUTCH_PROC_H
#define HUTCH_PROC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hutch/plugin.h>

/* Starts the process described by opts; *pid_out is its pid, and when
 * pidfd_out is non-NULL, *pidfd_out a pidfd for it (O_CLOEXEC). */
int proc_spawn(const hutch_spawn_opts_t *opts, pid_t *pid_out, int *pidfd_out,
	       hutch_err_t *err);

/* Output of a watched process as it arrives: stream 1 stdout, 2 stderr. */
typedef void (*proc_output_cb)(void *data, int stream, const char *buf, size_t n);

typedef struct proc_watch {
	proc_output_cb on_output;  /* the streams below come here */
	void *data;
	unsigned streams;          /* with on_output: 1 stdout, 2 stderr, 3 both
				    * (opts' fd for those is ignored) */
	int64_t timeout_ms;        /* 0: none */
	const atomic_bool *cancel; /* polled (200 ms at most); true: killed */
} proc_watch_t;

typedef struct proc_end {
	int exit_code, term_signal; /* as proc_status_decode */
	bool timed_out, cancelled;  /* why it was killed, if it was */
} proc_end_t;

/* The core's one blocking child runner: runs opts to completion, streams
 * its output, kills it at the timeout or on cancel (its whole process
 * group when opts->new_session made it a leader, so its helpers go too).
 * Returns <0 only if it could not be started. Once it has exited, a pipe
 * a grandchild still holds is given up after 100 ms of silence. Blocks:
 * pool threads and tools only.
 *
 * The loop's asynchronous spawn (host_api.c's host->spawn: reaped on
 * SIGCHLD, its callback on the loop) stays separate: a blocking runner
 * cannot serve the loop, and the loop's runner cannot serve a pool thread
 * that must wait. Both start children with proc_spawn. */
int proc_run_watched(const hutch_spawn_opts_t *opts, const proc_watch_t *w, proc_end_t *end,
		     hutch_err_t *err);

/* Runs to completion, capturing stdout/stderr into result's buffers when
 * they are given (opts' stdout_fd/stderr_fd are then ignored). Blocks.
 * (proc_run_watched, collecting.) */
int proc_run(const hutch_spawn_opts_t *opts, hutch_run_result_t *result,
	     hutch_err_t *err);

/* Convenience: run argv with a timeout, capture combined diagnostics into
 * err on failure ("`ip link add ...` exited 2: <stderr>"). */
int proc_run_argv(const char *const *argv, int64_t timeout_ms, char *out,
		  size_t out_cap, hutch_err_t *err);

/* Decodes a waitpid() status into exit_code / term_signal. */
void proc_status_decode(int wstatus, int *exit_code, int *term_signal);

#endif
