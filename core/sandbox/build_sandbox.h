/*
 * build_sandbox.h: throwaway sandboxes for image builds.
 *
 * An image build runs each step (run_commands, apt_install, pip_install,
 * Debian's second stage) in a gVisor sandbox made from an explicit stack of
 * layer directories, then keeps what the step wrote: the sandbox is
 * stopped, its writable layer copied out through the runtime's
 * sandbox_commit op, and the sandbox destroyed. These sandboxes are not
 * sandbox_mgr's: no record, no agent, no timers; commands run through the
 * runtime's exec command. Their ids start with "bld-", and a daemon that
 * restarts finds them as runtime state nobody owns and removes them.
 *
 * Networking: without `network` the runtime gives the sandbox a private
 * namespace with loopback only. With it, the network chain attaches as for
 * any sandbox, with the policies given (the builder's configured build
 * policies), and the sandbox gets a resolv.conf naming the chain's resolver.
 *
 * Every function here blocks (runsc, network plugins, copying a layer):
 * call them from a worker thread, never from the loop. One build sandbox is
 * used by one thread at a time.
 */
#ifndef HUTCH_BUILD_SANDBOX_H
#define HUTCH_BUILD_SANDBOX_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/plugin.h>

#include "plugin_set.h"

typedef struct build_sandbox build_sandbox_t;

typedef struct build_sandbox_deps {
	plugin_set_t *plugins;  /* the runtime and the network chain */
	const char *run_root;   /* <run_dir>/builds: per-sandbox files (/etc/...) */
} build_sandbox_deps_t;

typedef struct build_sandbox_opts {
	const char *tenant;
	const char *const *layers; /* read-only layer dirs, lowest first */
	size_t n_layers;
	const hutch_kv_t *env;     /* for every process */
	size_t n_env;
	bool network;              /* attach the network chain */
	const hutch_net_policy_t *const *policies; /* with network: bound policies */
	size_t n_policies;
	bool policies_set;         /* false: the chain's default egress */
	int64_t cpu_millis, memory_bytes, pids_max, disk_bytes; /* 0: defaults */
	const hutch_mount_t *mounts; /* extra bind mounts (e.g. a build context) */
	size_t n_mounts;
} build_sandbox_opts_t;

/* Makes and starts a sandbox; on failure nothing of it remains. */
int build_sandbox_create(const build_sandbox_deps_t *deps, const build_sandbox_opts_t *opts,
			 build_sandbox_t **out, hutch_err_t *err);

const char *build_sandbox_id(const build_sandbox_t *b);

/* Output of a command as it arrives; stream 1 stdout, 2 stderr. */
typedef void (*build_output_cb)(void *data, int stream, const char *buf, size_t n);

typedef struct build_exec {
	const char *const *argv;
	const hutch_kv_t *env;     /* added to the sandbox's */
	size_t n_env;
	const char *cwd;           /* NULL: "/" */
	int64_t timeout_ms;        /* 0: none */
	const atomic_bool *cancel; /* polled; true: the process is killed */
	build_output_cb on_output;
	void *data;
	const char *const *host_envp; /* build_host_exec only: NULL = PATH only */
} build_exec_t;

/* Runs a command to completion. *exit_code: its exit status, 128+N if it
 * died of signal N. Returns <0 only when it could not be run, timed out
 * (-ETIMEDOUT) or was cancelled (-ECANCELED). */
int build_sandbox_exec(build_sandbox_t *b, const build_exec_t *x, int *exit_code,
		       hutch_err_t *err);

/* The same on the host, for the one step that must run there (debootstrap's
 * first stage, which only downloads and unpacks signed packages). env and
 * cwd are ignored (host_envp gives the environment). */
int build_host_exec(const build_exec_t *x, int *exit_code, hutch_err_t *err);

/* Stops the sandbox and copies its writable layer into dest_dir (empty,
 * existing) as an overlay upper dir (see sandbox_commit in plugin.h).
 * -ENOTSUP when the runtime cannot. */
int build_sandbox_commit(build_sandbox_t *b, const char *dest_dir, hutch_err_t *err);

/* Stops and removes everything of it (runtime state, network, files) and
 * frees b. NULL is ignored. */
void build_sandbox_destroy(build_sandbox_t *b);

#endif
