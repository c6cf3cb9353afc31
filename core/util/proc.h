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

#include <stdbool.h>
#include <sys/types.h>

#include <hutch/plugin.h>

/* Starts the process described by opts; *pid_out is its pid, and when
 * pidfd_out is non-NULL, *pidfd_out a pidfd for it (O_CLOEXEC). */
int proc_spawn(const hutch_spawn_opts_t *opts, pid_t *pid_out, int *pidfd_out,
	       hutch_err_t *err);

/* Runs to completion, capturing stdout/stderr into result's buffers when
 * they are given (opts' stdout_fd/stderr_fd are then ignored). Blocks. */
int proc_run(const hutch_spawn_opts_t *opts, hutch_run_result_t *result,
	     hutch_err_t *err);

/* Convenience: run argv with a timeout, capture combined diagnostics into
 * err on failure ("`ip link add ...` exited 2: <stderr>"). */
int proc_run_argv(const char *const *argv, int64_t timeout_ms, char *out,
		  size_t out_cap, hutch_err_t *err);

/* Decodes a waitpid() status into exit_code / term_signal. */
void proc_status_decode(int wstatus, int *exit_code, int *term_signal);

#endif
