/*
 * gvisor.h: the runtime-gvisor plugin's insides, shared by its files.
 *
 * The plugin drives the `runsc` binary as an OCI runtime. A sandbox is a
 * directory under <run_dir>/sandboxes/<id> (the OCI bundle plus everything
 * the plugin made for it: the overlay root, the file system holding its
 * writable layer, the private network namespace, runsc's log) and runsc's
 * own state under <run_dir>/runsc. Everything about a sandbox is on disk, nothing in
 * memory, so a restarted daemon finds its sandboxes again and ops on
 * different sandboxes need no lock: the instance itself is read-only after
 * init.
 *
 * Files, one concept each:
 *   plugin.c      descriptor, config table, init/fini, capabilities
 *   probe.c       what this runsc and this host can do (cached on disk)
 *   runsc.c       runsc command lines and running them
 *   bundle.c      the OCI config.json
 *   rootfs.c      the overlay root and its writable layer, mount checks
 *   disk.c        the writable layer as ext4 on a loop device
 *   netns.c       private network namespaces
 *   cgroup.c      cgroup v1/v2 detection, limits check, usage, OOM, cleanup
 *   sandbox.c     create/restore, stop, destroy, status, list
 *   process.c     the sentry, the supervisor and the exit-status waiter
 *   exec.c        the host command of an exec
 *   checkpoint.c  checkpoint
 *   idle_init.c   the built-in idle init for sandboxes without argv
 *   json_scan.c   reading single fields out of runsc's JSON output
 *   fsutil.c      small file helpers
 *   helper.c      runtime-gvisor-helper, the separate host program
 *                 (supervisor/reaper of runsc's processes, exec wrapper)
 */
#ifndef HUTCH_RUNTIME_GVISOR_H
#define HUTCH_RUNTIME_GVISOR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hutch/plugin.h>

#define GV_PLUGIN_NAME "runtime-gvisor"
#define GV_PLUGIN_VERSION "0.1.0"

/* A sandbox's container id for runsc is "<id>" GV_RUNSC_ID_SUFFIX. */
#define GV_RUNSC_ID_SUFFIX ".hutch"

/* The bound [plugin.runtime-gvisor] table (see the config table in
 * plugin.c for meanings and defaults). Owned by the core. */
typedef struct gv_config {
	char *runsc;
	char *platform;       /* auto | systrap | ptrace | kvm */
	char *network;        /* auto | netstack | host-in-netns */
	char *overlay;        /* none | self | memory */
	char *root_dir;
	char *debug_log_dir;
	char **extra_flags;
	char *cgroup_parent;
	int64_t default_memory_bytes;
	int64_t default_cpu_millis;
	int64_t default_pids_max;
	int64_t default_disk_bytes;
	int64_t host_pids_per_task;
	int64_t host_pids_base;
	int64_t probe_timeout_ms;
	bool probe_cache;
	bool probe_kvm;
	bool exit_status;
	char *nvproxy_driver_version;
	char *helper;
	char *private_network;  /* none | same */
	char *writable_layer;   /* disk | memory */
	char *disk_dir;
} gv_config_t;

/* How a sandbox's sentry does networking (runsc --network). */
typedef enum gv_net_mode {
	GV_NET_NONE = 0,     /* gVisor's own loopback only: no host sockets */
	GV_NET_NETSTACK = 1, /* gVisor's netstack on the namespace's interfaces */
	GV_NET_HOST = 2,     /* host sockets, inside the sandbox's namespace */
} gv_net_mode_t;

typedef enum gv_platform {
	GV_SYSTRAP = 0,
	GV_PTRACE = 1,
	GV_KVM = 2,
	GV_N_PLATFORMS = 3,
} gv_platform_t;

typedef enum gv_probe_result {
	GV_PROBE_NOT_RUN = 0,
	GV_PROBE_OK = 1,
	GV_PROBE_FAILED = 2,
} gv_probe_result_t;

typedef enum gv_cgroup_mode {
	GV_CGROUP_V1 = 1, /* one hierarchy per controller (hybrid hosts too) */
	GV_CGROUP_V2 = 2, /* /sys/fs/cgroup is the unified hierarchy */
} gv_cgroup_mode_t;

/* Where the cgroup controllers the plugin reads are mounted. */
typedef struct gv_cgroups {
	gv_cgroup_mode_t mode;
	char v2_root[256];      /* V2 */
	char memory[256];       /* V1 mount points; "" when absent */
	char cpu[256];
	char cpuacct[256];
	char pids[256];
} gv_cgroups_t;

/* What the probe found. Plain data so that it can be cached. */
typedef struct gv_probe {
	char version[64];                       /* "0.0~20240729.0" */
	gv_probe_result_t platform[GV_N_PLATFORMS];
	char platform_error[GV_N_PLATFORMS][256];
	gv_probe_result_t netstack;
	char netstack_error[256];
	bool has_overlay2;
	bool has_nvproxy;
	bool has_checkpoint;                    /* checkpoint + restore commands */
	int64_t probe_ms;                       /* time the real probe took */
	bool from_cache;
} gv_probe_t;

typedef struct gv_runtime {
	const hutch_host_t *host;
	const gv_config_t *cfg;
	char *runsc_path;    /* absolute */
	char *root_dir;      /* runsc --root */
	char *sandboxes_dir; /* <run_dir>/sandboxes */
	char *idle_init;     /* host path of the idle init, NULL if none */
	char *helper;        /* runtime-gvisor-helper; NULL: plain runsc */
	bool layer_on_disk;  /* writable layers on loop-mounted ext4 */
	char *disk_dir;      /* where their image files are made */
	char *mkfs_path;
	gv_platform_t platform;
	bool netstack;       /* false: --network=host inside the sandbox's netns */
	gv_cgroups_t cgroups;
	gv_probe_t probe;
} gv_runtime_t;

const char *gv_platform_name(gv_platform_t p);

/* ---- probe.c ---- */
/* Fills rt->probe (from the cache when it matches the runsc binary). */
int gv_probe(gv_runtime_t *rt, hutch_err_t *err);

/* ---- runsc.c ---- */

/* A command line being built: NULL-terminated, strings owned. */
typedef struct gv_argv {
	char **v;
	size_t n, cap;
} gv_argv_t;

void gv_argv_add(gv_argv_t *a, const char *s);
void gv_argv_addf(gv_argv_t *a, const char *fmt, ...) HUTCH_PRINTF(2, 3);
void gv_argv_free(gv_argv_t *a);

/* The global flags every runsc call for a new sandbox gets (root, platform,
 * network, overlay, log, extra flags...). log_path may be NULL; id names
 * the debug log files. */
void gv_global_flags(const gv_runtime_t *rt, const char *id, const char *log_path,
		     gv_net_mode_t net, bool nvproxy, gv_argv_t *out);
const char *gv_net_mode_name(gv_net_mode_t m);

/* How to run one runsc command. */
typedef struct gv_run {
	int stdin_fd, stdout_fd, stderr_fd; /* -1: /dev/null */
	bool capture_stdout;   /* into out */
	bool capture_stderr;   /* for the error message */
	int netns_fd;          /* -1: hutchd's namespace */
	int64_t timeout_ms;
	const char *log_path;  /* runsc --log file, read for errors; or NULL */
	char *out;             /* caller's buffer when capture_stdout */
	size_t out_cap;
	char *err_out;         /* caller's buffer for stderr, or NULL (a
				* small internal one when capture_stderr) */
	size_t err_out_cap;
	int exit_code;         /* filled */
	int term_signal;
} gv_run_t;

#define GV_RUN_INIT                                                             \
	{.stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1, .netns_fd = -1,     \
	 .timeout_ms = 30000}

/* Runs argv; a non-zero exit is an error whose message is runsc's own
 * (stderr, else the last error in the log file). "what" names the step. */
int gv_runsc_run(const gv_runtime_t *rt, char *const *argv, gv_run_t *run,
		 const char *what, hutch_err_t *err);

/* Reads the last `cap-1` bytes' worth of runsc's final error line from a
 * log file into buf ("" when none). */
void gv_log_last_error(const char *log_path, char *buf, size_t cap);

/* ---- bundle.c ---- */

typedef struct gv_bundle_paths {
	const char *rootfs;     /* absolute */
	const char *netns;      /* network namespace file */
	const char *idle_init;  /* host path bound in as init, or NULL */
	const char *tmp_dir;    /* host dir bound on /tmp, or NULL */
	const char *cgroups_path;
	int64_t memory_bytes, cpu_millis, pids_max;
	int64_t host_pids_max;
	bool init_net_admin;    /* init starts with CAP_NET_ADMIN (it adds the
				 * spec's loopback addresses itself, then drops it) */
} gv_bundle_paths_t;

/* The path inside the sandbox the idle init is bound to. */
#define GV_IDLE_INIT_TARGET "/dev/.hutch-idle-init"

/* Writes <dir>/config.json for spec. */
int gv_bundle_write(const char *dir, const hutch_sandbox_spec_t *spec,
		    const gv_bundle_paths_t *p, hutch_err_t *err);

/* ---- rootfs.c ---- */

/* Mounts a file system of disk_bytes on <dir>/scratch (ext4 on a loop
 * device, or a tmpfs) and an overlay of layers (lowest first) with its
 * upper dir there on <dir>/rootfs. seed_upper, when not NULL, is copied
 * into the upper dir first (restore). */
int gv_rootfs_mount(const gv_runtime_t *rt, const char *id, const char *dir,
		    const char *const *layers, size_t n_layers, int64_t disk_bytes,
		    const char *seed_upper, hutch_err_t *err);
/* cp -a from/. to (to exists). */
int gv_copy_tree(const gv_runtime_t *rt, const char *from, const char *to,
		 hutch_err_t *err);
/* Unmounts both; idempotent. */
int gv_rootfs_unmount(const char *dir, hutch_err_t *err);
/* Copies the writable layer of the sandbox in dir (scratch/upper) to dest
 * as an overlay upper dir: whiteouts and opaque markers kept, every other
 * trusted.overlay.* xattr (origin, impure, ...) dropped (sandbox_commit). */
int gv_rootfs_commit(const gv_runtime_t *rt, const char *dir, const char *dest,
		     hutch_err_t *err);
/* true if path is a mount point in our mount namespace, or anything below
 * prefix is (prefix form, when below is true). */
bool gv_mounted(const char *path, bool below);

/* ---- disk.c ---- */

/* Checks for mkfs.ext4 and loop devices; why says what is missing. */
int gv_disk_setup(gv_runtime_t *rt, char *why, size_t cap);
/* An ext4 file system of bytes on a fresh loop device, mounted on target. */
int gv_disk_mount(const gv_runtime_t *rt, const char *id, const char *target,
		  int64_t bytes, hutch_err_t *err);

/* ---- netns.c ---- */

/* A new network namespace with only loopback up, bind-mounted on path. */
int gv_netns_create(const char *path, hutch_err_t *err);
/* Opens a network namespace file; refuses hutchd's own namespace. */
int gv_netns_open(const char *path, int *fd_out, hutch_err_t *err);
/* Unmounts and removes path; idempotent. */
int gv_netns_remove(const char *path, hutch_err_t *err);
/* Adds each IPv4 address (/32) to the loopback of the namespace netns_fd. */
int gv_netns_add_loopback(int netns_fd, const char *const *addrs, size_t n, hutch_err_t *err);

/* ---- cgroup.c ---- */

int gv_cgroup_detect(gv_cgroups_t *cg, hutch_err_t *err);
/* Makes the hutch-owned parent cgroup in every hierarchy (init). */
void gv_cgroup_prepare(const gv_runtime_t *rt);
/* The relative cgroup of a sandbox: "<parent>/<id>". */
char *gv_cgroup_rel(const gv_runtime_t *rt, const char *id);
/* The limits a sandbox's cgroup must show after start, checked. */
int gv_cgroup_verify(const gv_runtime_t *rt, const char *id,
		     int64_t memory_bytes, int64_t cpu_millis,
		     int64_t host_pids_max, hutch_err_t *err);
/* Fills usage and the OOM flag; -1 for what cannot be read. */
void gv_cgroup_stats(const gv_runtime_t *rt, const char *id,
		     hutch_sandbox_status_t *st);
/* true if the sandbox's cgroup saw an OOM kill. */
bool gv_cgroup_oom(const gv_runtime_t *rt, const char *id);
/* The memory cgroup's oom_kill counter, -1 if unreadable. */
int64_t gv_cgroup_oom_kills(const gv_runtime_t *rt, const char *id);
/* Removes what is left of the sandbox's cgroups in every hierarchy. */
int gv_cgroup_remove(const gv_runtime_t *rt, const char *id, hutch_err_t *err);
/* true if any hierarchy still has a cgroup for id. */
bool gv_cgroup_exists(const gv_runtime_t *rt, const char *id);

/* ---- idle_init.c ---- */

/* Writes the idle init executable to path; -ENOTSUP on an architecture
 * without one. */
int gv_idle_init_write(const char *path, hutch_err_t *err);

/* ---- json_scan.c ---- */

/* Finds "key": <integer> / "key": "<string>" at any depth of a small JSON
 * text written by runsc. Returns 0, or -ENOENT. */
int gv_json_int(const char *json, const char *key, int64_t *out);
int gv_json_str(const char *json, const char *key, char *buf, size_t cap);

/* ---- sandbox.c: the runtime ops ---- */

int gv_sandbox_create(void *instance, const hutch_sandbox_spec_t *spec,
		      hutch_sandbox_status_t *status, hutch_err_t *err);
int gv_sandbox_stop(void *instance, const char *id, int64_t grace_ms,
		    hutch_err_t *err);
int gv_sandbox_destroy(void *instance, const char *id, hutch_err_t *err);
int gv_sandbox_status(void *instance, const char *id,
		      hutch_sandbox_status_t *status, hutch_err_t *err);
int gv_exec_command(void *instance, const char *id, const hutch_exec_spec_t *spec,
		    hutch_command_t *cmd, hutch_err_t *err);
int gv_sandbox_list(void *instance, hutch_sandbox_found_cb cb, void *data,
		    hutch_err_t *err);
int gv_sandbox_checkpoint(void *instance, const char *id, const char *image_dir,
			  hutch_err_t *err);
int gv_sandbox_restore(void *instance, const hutch_sandbox_spec_t *spec,
		       const char *image_dir, hutch_sandbox_status_t *status,
		       hutch_err_t *err);
int gv_sandbox_commit(void *instance, const char *id, const char *dest_dir,
		      hutch_err_t *err);

/* ---- sandbox.c: helpers shared by the sandbox files ---- */

int gv_validate_id(const char *id, hutch_err_t *err);
/* <sandboxes_dir>/<id>[/<name>], malloc'ed. */
char *gv_sb_path(const gv_runtime_t *rt, const char *id, const char *name);
bool gv_exists(const char *path);
/* Appends the sandbox's runsc container id, "<id>" GV_RUNSC_ID_SUFFIX. */
void gv_argv_add_runsc_id(gv_argv_t *a, const char *id);
/* Appends runsc and the sandbox's saved global flags. */
void gv_sandbox_cmd(const gv_runtime_t *rt, const char *id, gv_argv_t *a);

/* ---- process.c: the sentry and the exit-status waiter ---- */

typedef struct gv_proc {
	pid_t pid;
	unsigned long long starttime; /* /proc/<pid>/stat field 22 */
} gv_proc_t;

/* Reads "pid starttime" from <dir>/<file>. */
int gv_proc_load(const gv_runtime_t *rt, const char *id, const char *file,
		 gv_proc_t *p);
int gv_sentry_load(const gv_runtime_t *rt, const char *id, gv_proc_t *p);
/* Records the sentry (from runsc's pid file) in <dir>/meta. */
int gv_sentry_record(const gv_runtime_t *rt, const char *id, gv_proc_t *p,
		     hutch_err_t *err);
bool gv_proc_alive(const gv_proc_t *p);
/* Waits up to timeout_ms for it to end; true once it has. */
bool gv_proc_wait(const gv_proc_t *p, int64_t timeout_ms);
void gv_proc_kill(const gv_proc_t *p);
void gv_waiter_start(const gv_runtime_t *rt, const char *id);
/* Runs runsc_argv (create or restore) under the helper's supervisor with
 * run's stdio, netns and timeout; 0 when runsc exited 0. */
int gv_supervised_run(const gv_runtime_t *rt, const char *id, char *const *runsc_argv,
		      const gv_run_t *run, const char *what, hutch_err_t *err);
/* init's exit status from <dir>/exit.json, -1 if not known (yet). */
int gv_exit_status_read(const gv_runtime_t *rt, const char *id);

/* ---- small file helpers (fsutil.c) ---- */

/* Reads a whole small file into a malloc'ed NUL-terminated string. */
int gv_read_file(const char *path, char **out);
/* Writes data to path atomically (tmp + rename), mode 0600. */
int gv_write_file(const char *path, const char *data, hutch_err_t *err);
/* rm -r that never crosses into another file system. */
int gv_remove_tree(const char *path, hutch_err_t *err);

#endif
