/*
 * hutch/plugin.h: the plugin ABI.
 *
 * hutchd is a small core that loads shared-object plugins for five roles:
 * the sandbox runtime, accelerators, the network chain, storage (volumes)
 * and workload identity. A plugin is a .so that exports exactly one symbol,
 *
 *     const hutch_plugin_t *hutch_plugin_v1(void);
 *
 * returning a const descriptor. The core checks the descriptor's size and
 * ABI major, binds the plugin's config table from hutchd.toml, calls init()
 * with a host API table, and from then on drives the plugin through the ops
 * struct of its kind. A plugin never links against the daemon: everything it
 * may call in hutchd is in the hutch_host_t table it gets at init.
 *
 * Versioning, in the manner of SQLite's VFS:
 *   - Every struct that crosses the boundary starts with `uint32_t size`
 *     (sizeof the struct as the side that allocated it was compiled), except
 *     four small ones that say why they need none (array elements, and the
 *     child status the host fills).
 *   - Structs only grow at the end. A comment line `v1.N` opens the members
 *     ABI 1.N added; `methods above are valid for ABI 1.N` closes an ops
 *     table's. A reader copies min(size, sizeof ours) into a zeroed struct,
 *     so a member the other side does not know reads as 0/NULL; the
 *     HUTCH_*_SIZE_1_0 macros give the 1.0 size of the structs that grew.
 *   - The caller allocates out-structs (a status, an attachment): it sets
 *     size to its own sizeof, and before the call it sets every member newer
 *     than 1.0 whose zero would be a real answer to the value meaning
 *     "unknown" (today: hutch_sandbox_status_t.oom_kills = -1). A callee
 *     writes only members that lie within size.
 *   - ABI 1.0 is the header as first published. Members added later while
 *     the header still said minor 0 are marked v1.1, so a plugin that says
 *     abi_minor 0 may or may not know them: the core decides what a plugin
 *     knows from sizes and sentinels, never from abi_minor alone.
 *   - An incompatible change is a new major and a new symbol name
 *     (hutch_plugin_v2); an old .so then fails with "symbol not found".
 *   - Optional ops that are NULL mean "not supported"; required ops are
 *     checked when the plugin is loaded and a missing one refuses the load.
 *     An op marked "not yet called by the core" is part of the ABI, but
 *     this hutchd never calls it and refuses the requests that would need
 *     it; implementing it is allowed and harmless.
 *   - hutch's own build freezes the offset and size of every member, and
 *     the size of every struct, per minor (core/plugin/abi_layout.def in
 *     the source tree): a layout change fails the build.
 *
 * Threads. init() and fini() run on the main thread, init before the event
 * loop starts and fini after it ended. Every other op runs on a worker thread
 * of hutchd's pool and may block (run runsc, talk netlink, wait on S3); the
 * core serializes ops that concern the same sandbox (or volume), but ops for
 * different sandboxes run concurrently, so an instance must be thread-safe
 * across them. Callbacks the host makes into a plugin (timers, child exit)
 * run on the loop thread and must not block.
 *
 * Errors. Every fallible op returns 0 or a negative errno and fills the
 * hutch_err_t it is given with a one-line message (see hutch/error.h). The
 * core adds context ("create sandbox sb-1: runtime-gvisor: ...") and maps
 * the errno to an API status: ENOENT not found, EEXIST already exists,
 * EINVAL invalid argument, EPERM/EACCES permission denied, ENOTSUP
 * unimplemented, ENOSPC/ENOMEM/EDQUOT resource exhausted, ETIMEDOUT deadline
 * exceeded, EAGAIN/EBUSY unavailable, anything else internal.
 * A failed op must leave nothing half-made behind.
 *
 * Strings are NUL-terminated UTF-8. Unless a member says otherwise, memory
 * passed into an op belongs to the caller and is valid only for the call;
 * memory a plugin hands out (descriptor, ops, config table) is static.
 */
#ifndef HUTCH_PLUGIN_H
#define HUTCH_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <hutch/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HUTCH_PLUGIN_ABI_MAJOR 1
#define HUTCH_PLUGIN_ABI_MINOR 2
#define HUTCH_PLUGIN_SYMBOL "hutch_plugin_v1"

#if defined(__GNUC__)
#define HUTCH_EXPORT __attribute__((visibility("default")))
#else
#define HUTCH_EXPORT
#endif

typedef enum hutch_plugin_kind {
	HUTCH_PLUGIN_RUNTIME = 1,
	HUTCH_PLUGIN_ACCELERATOR = 2,
	HUTCH_PLUGIN_NETWORK = 3,
	HUTCH_PLUGIN_STORAGE = 4,
	HUTCH_PLUGIN_IDENTITY = 5,
} hutch_plugin_kind_t;

/* ======================================================================
 * Configuration schema
 *
 * A plugin declares its options as a {0}-terminated table. The core reads
 * the plugin's table in hutchd.toml, rejects unknown keys and wrong types
 * with file:line:column, fills a zeroed struct of config_size bytes at the
 * declared offsets (defaults first, then the file), and passes it to init().
 * `hutchd --describe NAME` prints the table. The struct and everything in it
 * is owned by the core and stays valid until after fini().
 * ====================================================================== */

typedef enum hutch_config_type {
	HUTCH_CONFIG_STRING = 1,   /* char *; NULL when unset without default */
	HUTCH_CONFIG_INT = 2,      /* int64_t */
	HUTCH_CONFIG_BOOL = 3,     /* bool */
	HUTCH_CONFIG_DOUBLE = 4,   /* double; TOML integer or float */
	HUTCH_CONFIG_DURATION = 5, /* int64_t milliseconds; "1h30m", "250ms", or integer seconds */
	HUTCH_CONFIG_SIZE = 6,     /* int64_t bytes; "512Mi", "2G", or integer bytes */
	HUTCH_CONFIG_STRING_LIST = 7, /* char **, NULL-terminated; NULL when empty */
	HUTCH_CONFIG_ENUM = 8,     /* char *, one of `choices` */
	HUTCH_CONFIG_PATH = 9,     /* char *, made absolute relative to the config file */
} hutch_config_type_t;

#define HUTCH_CONFIG_REQUIRED 0x1u /* the key must be present (no default) */
#define HUTCH_CONFIG_SECRET 0x2u   /* value never printed (describe, logs) */
#define HUTCH_CONFIG_RELOAD 0x4u   /* may change on SIGHUP (see reload) */

/* v1.0. No size field: the plugin hands out an array of these, and the core
 * steps through it by sizeof, so the element can never grow within ABI 1.x
 * (a new member needs ABI 2, or a parallel table). */
typedef struct hutch_config_field {
	hutch_config_type_t type;
	const char *key;           /* TOML key in the plugin's table */
	const char *default_value; /* as TOML would spell it, NULL = none */
	size_t offset;             /* offsetof(your_config, member) */
	const char *description;   /* one line, for --describe */
	uint32_t flags;            /* HUTCH_CONFIG_* */
	const char *const *choices; /* ENUM only: NULL-terminated */
} hutch_config_field_t;

/* ======================================================================
 * Shared data types
 * ====================================================================== */

/* v1.0. No size field, and frozen for 1.x: it only travels in arrays. */
typedef struct hutch_kv {
	const char *key;
	const char *value;
} hutch_kv_t;

/* Emits one key/value pair; used by ops that describe things. */
typedef void (*hutch_kv_cb)(void *data, const char *key, const char *value);

/* A bind mount into a sandbox. v1.0. No size field, and frozen for 1.x: it
 * only travels in arrays. */
#define HUTCH_MOUNT_READONLY 0x1u
typedef struct hutch_mount {
	const char *source; /* absolute host path */
	const char *target; /* absolute path inside the sandbox */
	uint32_t flags;     /* HUTCH_MOUNT_* */
} hutch_mount_t;

/* ======================================================================
 * Host API: what hutchd offers a plugin. One table per plugin instance; the
 * log prefix and the state dir are that plugin's. Members are valid until
 * fini() returns. Every function is safe to call from any thread unless it
 * says otherwise.
 * ====================================================================== */

typedef struct hutch_host hutch_host_t;
typedef struct hutch_timer hutch_timer_t;
typedef struct hutch_child hutch_child_t;

typedef enum hutch_log_level {
	HUTCH_LOG_ERROR = 0,
	HUTCH_LOG_WARN = 1,
	HUTCH_LOG_INFO = 2,
	HUTCH_LOG_DEBUG = 3,
} hutch_log_level_t;

/* How a child process should be started (host->run, host->spawn). */
typedef struct hutch_spawn_opts {
	uint32_t size;
	/* v1.0 */
	const char *const *argv;  /* argv[0] is looked up in PATH */
	const char *const *envp;  /* NULL: a minimal PATH-only environment */
	const char *cwd;          /* NULL: hutchd's */
	int stdin_fd;             /* -1: /dev/null. Dup'ed, not taken. */
	int stdout_fd;            /* -1: /dev/null (run() may capture instead) */
	int stderr_fd;            /* -1: /dev/null (run() may capture instead) */
	const int *extra_fds;     /* become fds 3, 4, ... in the child */
	size_t n_extra_fds;
	int netns_fd;             /* >= 0: setns(CLONE_NEWNET) before exec */
	bool new_session;         /* setsid() in the child */
	int64_t timeout_ms;       /* 0: none; else SIGKILL after it */
} hutch_spawn_opts_t;

/* The result of host->run. The caller supplies the capture buffers. */
typedef struct hutch_run_result {
	uint32_t size;
	/* v1.0 */
	int exit_code;   /* -1 when killed by a signal */
	int term_signal; /* 0 unless killed by a signal */
	bool timed_out;
	char *out;       /* caller's buffer for stdout, NUL-terminated; NULL = discard */
	size_t out_cap;
	size_t out_len;  /* bytes stored (output beyond out_cap-1 is dropped) */
	char *err;       /* caller's buffer for stderr, likewise */
	size_t err_cap;
	size_t err_len;
} hutch_run_result_t;

/* How a spawned child ended, as the host tells on_exit. No size field: the
 * host always allocates it and the plugin only reads it, for the duration of
 * the callback. It grew in 1.1 inside its own padding (12 bytes in both), so
 * a 1.0 plugin reads exactly what it knows; a plugin reads `detached` only
 * when host->abi_minor >= 1 (an older hutchd leaves that byte unspecified).
 * Adding a size field now would move every member: that is ABI 2. */
typedef struct hutch_child_status {
	/* v1.0 */
	int exit_code;   /* -1 when killed by a signal */
	int term_signal;
	bool timed_out;
	/* v1.1 */
	/* hutchd is shutting down and stops watching the child, which keeps
	 * running (e.g. a sandbox's supervisor, for the next hutchd to
	 * recover); on_exit is called this way once, before fini(). */
	bool detached;
} hutch_child_status_t;

typedef void (*hutch_timer_cb)(void *data);
typedef void (*hutch_child_cb)(void *data, const hutch_child_status_t *status);
typedef void (*hutch_work_cb)(void *data);
typedef void (*hutch_after_work_cb)(void *data, int status);

struct hutch_host {
	uint32_t size;
	uint16_t abi_major;
	uint16_t abi_minor;
	/* v1.0 */
	const char *state_dir; /* this plugin's own persistent dir, 0700, exists */
	const char *run_dir;   /* this plugin's own runtime dir (cleared at boot) */
	const char *hutch_version;
	struct uv_loop_s *loop; /* the daemon's libuv loop: loop thread only */

	/* Logs one line with the "[kind:name]" prefix; never log secrets. */
	void (*log)(const hutch_host_t *host, hutch_log_level_t level,
		    const char *fmt, ...) HUTCH_PRINTF(3, 4);

	/* Runs a command to completion and captures its output. Blocks: call it
	 * from init() or from an op (worker thread), never from a loop callback. */
	int (*run)(const hutch_host_t *host, const hutch_spawn_opts_t *opts,
		   hutch_run_result_t *result, hutch_err_t *err);

	/* Starts a command and returns at once; on_exit runs on the loop thread
	 * when it ends (and the child is reaped by the host). *out stays valid
	 * until on_exit has returned. Any thread. */
	int (*spawn)(const hutch_host_t *host, const hutch_spawn_opts_t *opts,
		     hutch_child_cb on_exit, void *data, hutch_child_t **out,
		     hutch_err_t *err);
	/* Sends a signal to a spawned child; -ESRCH if it already ended. */
	int (*child_kill)(hutch_child_t *child, int signum);
	pid_t (*child_pid)(const hutch_child_t *child);

	/* One-shot (repeat_ms = 0) or repeating timer; cb runs on the loop
	 * thread. timer_stop() frees it; after timer_stop() returns on the loop
	 * thread the callback does not run again. Any thread. */
	int (*timer_start)(const hutch_host_t *host, uint64_t timeout_ms,
			   uint64_t repeat_ms, hutch_timer_cb cb, void *data,
			   hutch_timer_t **out, hutch_err_t *err);
	void (*timer_stop)(hutch_timer_t *timer);

	/* Runs work on the pool, then after(data, 0) on the loop thread
	 * (status -ECANCELED at shutdown). Any thread. */
	int (*queue_work)(const hutch_host_t *host, hutch_work_cb work,
			  hutch_after_work_cb after, void *data);

	/* Metrics, exported by hutchd. name: [a-z_]+; labels: "k=v,k2=v2" or
	 * NULL. Counters only go up. */
	void (*metric_add)(const hutch_host_t *host, const char *name,
			   const char *labels, double delta);
	void (*metric_set)(const hutch_host_t *host, const char *name,
			   const char *labels, double value);

	/* Appends an audit event: `fields_json` is the inside of a JSON object
	 * ("\"sandbox\":\"sb-1\",\"verdict\":\"drop\""); the host adds time,
	 * event name and plugin. */
	void (*audit)(const hutch_host_t *host, const char *event,
		      const char *fields_json);
	/* methods above are valid for ABI 1.0 */
};

/* ======================================================================
 * The sandbox as plugins see it
 * ====================================================================== */

/* What the core asks the runtime to create. Filled by the core after the
 * network chain, storage, identity and accelerators have prepared their
 * parts; every pointer is valid for the duration of the call. */
typedef struct hutch_sandbox_spec {
	uint32_t size;
	/* v1.0 */
	const char *id;      /* "sb-..."; unique on this host, [a-z0-9-] */
	const char *tenant;
	const char *name;    /* user's name, may be NULL */
	const char *hostname;
	const char *const *layers; /* read-only rootfs dirs, lowest first */
	size_t n_layers;
	const char *const *argv;   /* the sandbox's init process (the core
				    * passes its agent); NULL: an idle init */
	int init_stdin_fd;         /* stdio of init: fds the core made (pipes
				    * to its agent); -1: /dev/null. Dup'ed by
				    * the runtime, not taken. */
	int init_stdout_fd;
	int init_stderr_fd;
	const hutch_kv_t *env;     /* for every process in the sandbox */
	size_t n_env;
	const char *workdir;       /* NULL: "/" */
	int64_t cpu_millis;        /* guaranteed cpu, 1000 = one core; 0 = default */
	int64_t memory_bytes;      /* memory limit = guarantee; 0 = default */
	int64_t pids_max;          /* 0 = default */
	int64_t disk_bytes;        /* limit on the writable layer; 0 = default */
	const hutch_mount_t *mounts; /* volumes, identity dir, ... */
	size_t n_mounts;
	const char *netns_path;    /* from the network chain; NULL: the runtime
				    * makes a private loopback-only namespace.
				    * Never the host's. */
	const char *const *devices; /* device nodes granted by accelerators */
	size_t n_devices;
	const hutch_kv_t *annotations; /* plugin-to-plugin hints, e.g. an
					* accelerator's "gpu-nvidia.nvproxy"="1" */
	size_t n_annotations;
	/* v1.1: a runtime reads one of these only when spec->size reaches
	 * past it (an older core's spec ends before them) */
	const uint16_t *ports;     /* TCP ports hutchd will forward into the
				    * sandbox's namespace: sockets listening on
				    * them must be reachable from it */
	size_t n_ports;
	/* IPv4 addresses that must be local inside the sandbox, on its
	 * loopback (the metadata endpoint, 169.254.169.254). A runtime adds
	 * them to the namespace's lo; one whose sandboxes have a network stack
	 * of their own lets the sandbox's init add them instead: init then
	 * starts with CAP_NET_ADMIN, and an init given in argv must drop it
	 * before anything else runs (hutch-agent does). */
	const char *const *loopback_addrs;
	size_t n_loopback_addrs;
} hutch_sandbox_spec_t;

/* sizeof(hutch_sandbox_spec_t) as ABI 1.0 had it. */
#define HUTCH_SANDBOX_SPEC_SIZE_1_0 offsetof(hutch_sandbox_spec_t, ports)

/* Sandbox states as the runtime observes them. */
typedef enum hutch_sandbox_phase {
	HUTCH_PHASE_UNKNOWN = 0, /* the runtime has no such sandbox */
	HUTCH_PHASE_CREATING = 1,
	HUTCH_PHASE_RUNNING = 2,
	HUTCH_PHASE_STOPPED = 3,
} hutch_sandbox_phase_t;

typedef struct hutch_sandbox_status {
	uint32_t size;
	/* v1.0 */
	hutch_sandbox_phase_t phase;
	pid_t pid;              /* the sandbox's root process on the host */
	bool oom_killed;        /* a process was killed at the memory limit */
	int exit_code;          /* init's exit, when STOPPED */
	int64_t memory_bytes;   /* current usage, -1 unknown */
	int64_t cpu_usage_ns;   /* cumulative, -1 unknown */
	int64_t pids_current;   /* -1 unknown */
	/* v1.1 */
	char netns_path[256];   /* the network namespace the sandbox runs in
				 * (for port forwarding); "" unknown */
	int64_t oom_kills;      /* processes killed at the memory limit so
				 * far (a counter); -1 unknown. The core sets
				 * -1 before every call (a 1.0 runtime never
				 * writes it) and then goes by oom_killed. */
} hutch_sandbox_status_t;

/* sizeof(hutch_sandbox_status_t) as ABI 1.0 had it. */
#define HUTCH_SANDBOX_STATUS_SIZE_1_0 offsetof(hutch_sandbox_status_t, netns_path)

/* A process to run inside a running sandbox. */
typedef struct hutch_exec_spec {
	uint32_t size;
	/* v1.0 */
	const char *const *argv;
	const hutch_kv_t *env;  /* added to the sandbox's env */
	size_t n_env;
	const char *cwd;        /* NULL: the sandbox's workdir */
	const char *user;       /* "uid[:gid]" or NULL for the default */
	bool tty;               /* the stdio fds are a terminal */
} hutch_exec_spec_t;

/* The host command that runs an exec: the runtime fills it, the core runs it
 * with the exec's stdio (pipes or a pty) and streams them. Its exit status is
 * the process's, and a signal sent to it reaches the process. */
typedef struct hutch_command {
	uint32_t size;
	/* v1.0 */
	char **argv;   /* NULL-terminated; the array and each string are
			* malloc'ed by the plugin and freed by the core */
	int netns_fd;  /* -1, or an fd the core enters before exec and closes */
	bool signal_exit_as_128; /* the command reports "killed by signal N"
				  * as exit code 128+N (runsc does) */
} hutch_command_t;

/* ======================================================================
 * Runtime: creates and runs sandboxes. Exactly one per daemon.
 * ====================================================================== */

typedef void (*hutch_sandbox_found_cb)(void *data, const char *id,
				       const hutch_sandbox_status_t *status);

typedef struct hutch_runtime_ops {
	uint32_t size;
	/* v1.0 */
	/* Required. Creates the sandbox and starts it; on return it is
	 * RUNNING. On failure nothing of it remains. */
	int (*sandbox_create)(void *instance, const hutch_sandbox_spec_t *spec,
			      hutch_sandbox_status_t *status, hutch_err_t *err);
	/* Required. Stops every process: SIGTERM, then SIGKILL after grace_ms.
	 * Stopping a stopped or unknown sandbox succeeds. */
	int (*sandbox_stop)(void *instance, const char *id, int64_t grace_ms,
			    hutch_err_t *err);
	/* Required. Releases everything the runtime holds for the sandbox
	 * (state, rootfs, cgroup, mounts). Idempotent: succeeds when nothing is
	 * left. Called after stop, and on recovery for leftovers. */
	int (*sandbox_destroy)(void *instance, const char *id, hutch_err_t *err);
	/* Required. Current status; phase UNKNOWN if the runtime has no such
	 * sandbox (not an error). */
	int (*sandbox_status)(void *instance, const char *id,
			      hutch_sandbox_status_t *status, hutch_err_t *err);
	/* Required. Fills the host command that runs spec in the sandbox. */
	int (*exec_command)(void *instance, const char *id,
			    const hutch_exec_spec_t *spec, hutch_command_t *cmd,
			    hutch_err_t *err);
	/* Required. Reports every sandbox the runtime still has state for
	 * (after a daemon restart the core reconciles them with its records). */
	int (*sandbox_list)(void *instance, hutch_sandbox_found_cb cb, void *data,
			    hutch_err_t *err);
	/* Optional. Emits what the runtime supports ("network.netstack" =
	 * "no", "platform" = "systrap", ...), shown by `hutch status`. */
	void (*capabilities)(void *instance, hutch_kv_cb emit, void *data);
	/* Optional; not yet called by the core (no API asks for a checkpoint
	 * yet; runtime-gvisor's own tests drive it). Saves a running sandbox's
	 * memory and state to a directory, or starts one from such a directory
	 * (spec as for create). */
	int (*sandbox_checkpoint)(void *instance, const char *id,
				  const char *image_dir, hutch_err_t *err);
	int (*sandbox_restore)(void *instance, const hutch_sandbox_spec_t *spec,
			       const char *image_dir, hutch_sandbox_status_t *status,
			       hutch_err_t *err);
	/* methods above are valid for ABI 1.0 */
	/* v1.1 */
	/* Optional: the core's copy of a 1.0 runtime's smaller ops reads it as
	 * NULL, and an image build step then fails ("cannot commit").
	 * Copies the writable layer of a stopped sandbox (after sandbox_stop,
	 * before sandbox_destroy) into dest_dir, an empty directory the caller
	 * made on a file system that holds device nodes and trusted.* xattrs.
	 * The copy is an overlayfs upper directory: what the sandbox created or
	 * changed, with owners, modes, times and xattrs; a path it deleted from
	 * the lower layers as a whiteout (a 0:0 character device of that name);
	 * a directory that hides the lower layers' contents marked with the
	 * xattr trusted.overlay.opaque = "y"; no other overlay metadata.
	 * -EBUSY while the sandbox still runs, -ENOENT for an unknown one. On
	 * failure dest_dir may hold a partial copy (the caller removes it). The
	 * image builder turns the copy into a layer. */
	int (*sandbox_commit)(void *instance, const char *id, const char *dest_dir,
			      hutch_err_t *err);
	/* methods above are valid for ABI 1.1 */
} hutch_runtime_ops_t;

/* sizeof(hutch_runtime_ops_t) as ABI 1.0 had it. */
#define HUTCH_RUNTIME_OPS_SIZE_1_0 offsetof(hutch_runtime_ops_t, sandbox_commit)

/* ======================================================================
 * Network: an ordered chain. The first plugin creates the sandbox's network
 * namespace; later plugins (tunnels, ...) attach inside it. Detach runs in
 * reverse order.
 * ====================================================================== */

/* Egress policy, as bound to a sandbox. Several may be bound at once:
 * allows add up, any deny wins. */
typedef struct hutch_net_policy {
	uint32_t size;
	/* v1.0 */
	const char *name;
	bool allow_all;
	const char *const *allowed_hostnames; /* exact or "*.suffix"; NULL-terminated */
	const char *const *allowed_cidrs;     /* "10.0.0.0/8", "2001:db8::/32" */
	const char *const *denied_hostnames;
	const char *const *denied_cidrs;
} hutch_net_policy_t;

/* A tunnel a sandbox is in, by name; the name is the tenant's (the same
 * name in two tenants is two tunnels). */
typedef struct hutch_net_tunnel {
	uint32_t size;
	/* v1.0 */
	const char *name;         /* [a-z0-9-], 1-63 */
	const char *peer_sandbox; /* id of the sandbox at the other end, or NULL
				   * (a mesh has no one other end) */
	const char *config;       /* plugin-specific, or NULL (net-wireguard:
				   * "subnet=a.b.c.d/n" at tunnel_create) */
} hutch_net_tunnel_t;

/* v1.2. A member of a tunnel, as tunnel_list reports it. Strings are the
 * plugin's, valid during the callback. */
typedef struct hutch_net_tunnel_member {
	uint32_t size;
	/* v1.2 */
	const char *sandbox_id;
	const char *address;         /* the member's, CIDR ("10.250.0.2/24") */
	const char *interface;       /* its name inside the sandbox ("wg0") */
	const char *public_key;      /* base64, as wg prints it */
	int64_t joined_unix;
	int64_t last_handshake_unix; /* latest with any peer; 0: none yet */
} hutch_net_tunnel_member_t;

/* v1.2. An external peer of a tunnel: a WireGuard device elsewhere (an
 * on-premise network) that the tunnel's gateway routes to and from. In
 * tunnel_peer_add the caller fills name .. allowed_ips; tunnel_list fills
 * every member (strings the plugin's, valid during the callback). */
typedef struct hutch_net_tunnel_peer {
	uint32_t size;
	/* v1.2 */
	const char *name;            /* [a-z0-9-], 1-63, unique in the tunnel */
	const char *public_key;      /* base64, as wg prints it */
	const char *endpoint;        /* "ip:port", or NULL: it reaches the gateway */
	const char *const *allowed_ips; /* IPv4 networks behind it, NULL-terminated */
	const char *address;         /* tunnel_list: its address in the tunnel */
	int64_t last_handshake_unix; /* tunnel_list: with the gateway; 0: none */
} hutch_net_tunnel_peer_t;

/* v1.2. One tunnel, as tunnel_list reports it (the plugin allocates it and
 * everything it points to, for the duration of the callback). */
typedef struct hutch_net_tunnel_info {
	uint32_t size;
	/* v1.2 */
	const char *name;
	const char *subnet;          /* CIDR */
	bool persistent;             /* made by tunnel_create: stays without members */
	const hutch_net_tunnel_member_t *const *members;
	size_t n_members;
	const hutch_net_tunnel_peer_t *const *peers; /* external peers */
	size_t n_peers;
	const char *gateway_public_key; /* stable; "" while it has no gateway yet */
	const char *gateway_endpoint;   /* "host:port" external peers reach it at, or "" */
} hutch_net_tunnel_info_t;

typedef void (*hutch_net_tunnel_info_cb)(void *data, const hutch_net_tunnel_info_t *info);

typedef struct hutch_net_attach {
	uint32_t size;
	/* v1.0 */
	const char *sandbox_id;
	const char *tenant;
	const char *netns_path;   /* NULL for the first plugin in the chain */
	const hutch_net_policy_t *const *policies; /* bound at create */
	size_t n_policies;
	bool policies_set;        /* false: the configured default applies */
	const hutch_net_tunnel_t *const *tunnels; /* the tunnels to join (the
						    * core passes them only when
						    * a plugin has tunnel_add) */
	size_t n_tunnels;
	const uint16_t *ports;    /* TCP ports the sandbox exposes */
	size_t n_ports;
	/* v1.2: read only when req->size reaches past it */
	const char *sandbox_name; /* the user's name for it, or NULL (for names
				   * a plugin publishes, e.g. a tunnel's) */
} hutch_net_attach_t;

/* sizeof(hutch_net_attach_t) as ABI 1.0 and 1.1 had it. */
#define HUTCH_NET_ATTACH_SIZE_1_1 offsetof(hutch_net_attach_t, sandbox_name)

#define HUTCH_NET_MAX_ADDRS 4
typedef struct hutch_net_attachment {
	uint32_t size;
	/* v1.0 */
	char netns_path[256];      /* set by the namespace owner */
	char addresses[HUTCH_NET_MAX_ADDRS][64]; /* the sandbox's, CIDR form */
	char dns_server[64];       /* for the sandbox's resolv.conf; "" none */
	char search_domain[128];
} hutch_net_attachment_t;

typedef struct hutch_network_ops {
	uint32_t size;
	/* v1.0 */
	/* Required. Prepares the sandbox's network (first plugin: creates the
	 * namespace and fills out->netns_path). out already holds what earlier
	 * plugins filled; a plugin adds to it. */
	int (*attach)(void *instance, const hutch_net_attach_t *req,
		      hutch_net_attachment_t *out, hutch_err_t *err);
	/* Required. Undoes attach; idempotent. */
	int (*detach)(void *instance, const char *sandbox_id, hutch_err_t *err);
	/* Optional. Replaces the policies bound to a running sandbox; applies to
	 * new connections. n = 0 with set = false restores the default. */
	int (*policy_update)(void *instance, const char *sandbox_id,
			     const hutch_net_policy_t *const *policies, size_t n,
			     bool set, hutch_err_t *err);
	/* Optional. Checks a policy before it is stored (hostname patterns,
	 * CIDRs); a clear error for what the plugin cannot enforce. */
	int (*policy_validate)(void *instance, const hutch_net_policy_t *policy,
			       hutch_err_t *err);
	/* Optional. Removes leftovers of sandboxes not in live_ids (after a
	 * crash). */
	int (*gc)(void *instance, const char *const *live_ids, size_t n,
		  hutch_err_t *err);
	/* Optional: a plugin with tunnel_add makes tunnels; the core refuses a
	 * sandbox with tunnels when no plugin has it. Adds / removes a tunnel
	 * on a running sandbox (attach joins req->tunnels itself); remove is
	 * -ENOENT when the sandbox is not in it. */
	int (*tunnel_add)(void *instance, const char *sandbox_id,
			  const hutch_net_tunnel_t *tunnel, hutch_err_t *err);
	int (*tunnel_remove)(void *instance, const char *sandbox_id,
			     const char *name, hutch_err_t *err);
	/* Optional; not yet called by the core, which forwards ports by
	 * entering the namespace itself (hutch_sandbox_status_t.netns_path).
	 * Opens a TCP connection to port inside the sandbox, for hutchd's port
	 * forwarding; returns a connected fd (caller closes). */
	int (*connect_port)(void *instance, const char *sandbox_id, uint16_t port,
			    int *fd_out, hutch_err_t *err);
	void (*capabilities)(void *instance, hutch_kv_cb emit, void *data);
	/* methods above are valid for ABI 1.0 */
	/* v1.2: optional; the core's copy of an older plugin's smaller ops
	 * reads them as NULL, and the Tunnels API then answers UNIMPLEMENTED. */
	/* Makes tunnel->name of tenant a persistent tunnel (one a sandbox's
	 * attach would make stays only while it has members); -EEXIST when it
	 * exists. */
	int (*tunnel_create)(void *instance, const char *tenant,
			     const hutch_net_tunnel_t *tunnel, hutch_err_t *err);
	/* Removes an empty tunnel; -EBUSY while it has members, -ENOENT when
	 * there is none. */
	int (*tunnel_delete)(void *instance, const char *tenant, const char *name,
			     hutch_err_t *err);
	/* Reports tenant's tunnels (name NULL) or one (-ENOENT when there is
	 * no such tunnel), one cb call each. */
	int (*tunnel_list)(void *instance, const char *tenant, const char *name,
			   hutch_net_tunnel_info_cb cb, void *data, hutch_err_t *err);
	/* Adds an external peer to a tunnel (making it persistent): the members
	 * get routes to its networks, through the tunnel's gateway. */
	int (*tunnel_peer_add)(void *instance, const char *tenant, const char *tunnel,
			       const hutch_net_tunnel_peer_t *peer, hutch_err_t *err);
	int (*tunnel_peer_remove)(void *instance, const char *tenant, const char *tunnel,
				  const char *name, hutch_err_t *err);
	/* Writes the configuration the peer's side needs (a wg-quick file,
	 * without its private key) into buf; -ERANGE when cap is too small. */
	int (*tunnel_peer_config)(void *instance, const char *tenant, const char *tunnel,
				  const char *name, char *buf, size_t cap, hutch_err_t *err);
	/* methods above are valid for ABI 1.2 */
} hutch_network_ops_t;

/* sizeof(hutch_network_ops_t) as ABI 1.0 and 1.1 had it. */
#define HUTCH_NETWORK_OPS_SIZE_1_1 offsetof(hutch_network_ops_t, tunnel_create)

/* ======================================================================
 * Storage: persistent, versioned volumes, forkable, mounted on the host
 * (e.g. by FUSE) and bind-mounted into sandboxes.
 *
 * Not yet called by the core: a storage plugin is loaded and checked, and
 * its capabilities are shown by `hutch status`, but no other op is called
 * (there is no volume API yet) and a sandbox that asks for volumes is
 * refused.
 * ====================================================================== */

typedef struct hutch_volume_ref {
	uint32_t size;
	/* v1.0 */
	const char *tenant;
	const char *name;
	const char *version; /* NULL: the head */
} hutch_volume_ref_t;

typedef struct hutch_volume_info {
	uint32_t size;
	/* v1.0 */
	char name[128];
	char head_version[72];
	int64_t size_bytes;    /* -1 unknown */
	int64_t created_unix;
	char forked_from[200]; /* "name@version" or "" */
} hutch_volume_info_t;

typedef struct hutch_volume_version {
	uint32_t size;
	/* v1.0 */
	char version[72];
	char parent[72];
	int64_t created_unix;
	char message[256];
} hutch_volume_version_t;

typedef void (*hutch_volume_version_cb)(void *data,
					const hutch_volume_version_t *v);
typedef void (*hutch_volume_info_cb)(void *data, const hutch_volume_info_t *v);

typedef struct hutch_storage_ops {
	uint32_t size;
	/* v1.0 */
	/* Every op but capabilities: not yet called by the core (see above). */
	/* Required. */
	int (*volume_create)(void *instance, const hutch_volume_ref_t *ref,
			     int64_t quota_bytes, hutch_err_t *err);
	int (*volume_delete)(void *instance, const hutch_volume_ref_t *ref,
			     hutch_err_t *err);
	int (*volume_info)(void *instance, const hutch_volume_ref_t *ref,
			   hutch_volume_info_t *out, hutch_err_t *err);
	int (*volume_list)(void *instance, const char *tenant,
			   hutch_volume_info_cb cb, void *data, hutch_err_t *err);
	/* Mounts ref for one sandbox; host_path receives the mount point. */
	int (*volume_mount)(void *instance, const hutch_volume_ref_t *ref,
			    const char *sandbox_id, bool read_only,
			    char *host_path, size_t host_path_cap,
			    hutch_err_t *err);
	/* Flushes and unmounts; idempotent. */
	int (*volume_unmount)(void *instance, const char *sandbox_id,
			      const char *name, hutch_err_t *err);
	/* Optional: versions and forks. */
	int (*volume_commit)(void *instance, const hutch_volume_ref_t *ref,
			     const char *message, hutch_volume_version_t *out,
			     hutch_err_t *err);
	int (*volume_versions)(void *instance, const hutch_volume_ref_t *ref,
			       hutch_volume_version_cb cb, void *data,
			       hutch_err_t *err);
	/* Copy-on-write fork of src (at src->version) into a new volume. */
	int (*volume_fork)(void *instance, const hutch_volume_ref_t *src,
			   const char *new_name, hutch_err_t *err);
	int (*gc)(void *instance, const char *const *live_sandbox_ids, size_t n,
		  hutch_err_t *err);
	void (*capabilities)(void *instance, hutch_kv_cb emit, void *data);
	/* methods above are valid for ABI 1.0 */
} hutch_storage_ops_t;

/* ======================================================================
 * Identity: per-sandbox workload identity (signed tokens), verification,
 * the provider's discovery documents, and token exchange.
 * ====================================================================== */

typedef struct hutch_identity_subject {
	uint32_t size;
	/* v1.0 */
	const char *tenant;
	const char *sandbox_id;
	const char *sandbox_name;
	const char *image_digest;
} hutch_identity_subject_t;

typedef struct hutch_identity_token {
	uint32_t size;
	/* v1.0 */
	char *token;          /* caller's buffer */
	size_t token_cap;     /* -ERANGE if too small */
	int64_t expires_unix;
} hutch_identity_token_t;

typedef struct hutch_identity_claims {
	uint32_t size;
	/* v1.0 */
	char issuer[256];
	char subject[256];
	char audience[256];
	char tenant[128];
	char sandbox_id[64];
	char sandbox_name[128];
	char image_digest[80];
	char key_id[64];
	char token_id[64];
	int64_t issued_unix, not_before_unix, expires_unix;
} hutch_identity_claims_t;

/* A document the identity plugin serves over HTTP (discovery, JWKS). */
typedef struct hutch_http_doc {
	uint32_t size;
	/* v1.0 */
	char *body;           /* caller's buffer */
	size_t body_cap;      /* -ERANGE if too small */
	size_t body_len;
	char content_type[64];
} hutch_http_doc_t;

typedef struct hutch_identity_ops {
	uint32_t size;
	/* v1.0 */
	/* Required. Issues a token for subj with the audience (NULL: the
	 * plugin's default). */
	int (*token_issue)(void *instance, const hutch_identity_subject_t *subj,
			   const char *audience, hutch_identity_token_t *out,
			   hutch_err_t *err);
	/* Required. Verifies signature, issuer, audience (NULL: the default),
	 * and times; fills claims. -EACCES with a reason when it fails. */
	int (*token_verify)(void *instance, const char *token,
			    const char *audience, hutch_identity_claims_t *claims,
			    hutch_err_t *err);
	/* Optional. Serves path ("/.well-known/openid-configuration",
	 * "/jwks.json", ...); -ENOENT for paths it does not serve. */
	int (*http_get)(void *instance, const char *path, hutch_http_doc_t *doc,
			hutch_err_t *err);
	/* Optional. Rotates the signing key now. */
	int (*key_rotate)(void *instance, hutch_err_t *err);
	/* Optional. RFC 8693-style exchange of a subject token for a credential
	 * of a configured upstream; -EACCES when policy forbids it. */
	int (*token_exchange)(void *instance, const char *subject_token,
			      const char *resource, hutch_identity_token_t *out,
			      hutch_err_t *err);
	/* Optional. The sandbox stopped: issue nothing more for it. */
	void (*subject_revoke)(void *instance, const char *sandbox_id);
	void (*capabilities)(void *instance, hutch_kv_cb emit, void *data);
	/* methods above are valid for ABI 1.0 */
} hutch_identity_ops_t;

/* ======================================================================
 * Accelerators: inventory of devices and their grant to sandboxes.
 *
 * Not yet called by the core: an accelerator plugin is loaded and checked,
 * and its capabilities are shown by `hutch status`, but inventory, allocate
 * and release are not called, and a sandbox that asks for a gpu is refused.
 * ====================================================================== */

typedef struct hutch_accel_device {
	uint32_t size;
	/* v1.0 */
	char id[64];         /* stable, e.g. "GPU-<uuid>" */
	char model[128];     /* "NVIDIA H100 80GB HBM3" */
	int index;
	int64_t memory_bytes;
	bool allocated;
	char sandbox_id[64]; /* holder when allocated */
} hutch_accel_device_t;

typedef void (*hutch_accel_device_cb)(void *data, const hutch_accel_device_t *d);

/* What a sandbox gets: device nodes, env, mounts and runtime annotations.
 * Arrays and strings are the plugin's and stay valid until release(). */
typedef struct hutch_accel_grant {
	uint32_t size;
	/* v1.0 */
	const char *const *devices;
	size_t n_devices;
	const hutch_kv_t *env;
	size_t n_env;
	const hutch_mount_t *mounts;
	size_t n_mounts;
	const hutch_kv_t *annotations;
	size_t n_annotations;
} hutch_accel_grant_t;

typedef struct hutch_accelerator_ops {
	uint32_t size;
	/* v1.0 */
	/* inventory, allocate, release: not yet called by the core (see above). */
	/* Required. */
	int (*inventory)(void *instance, hutch_accel_device_cb cb, void *data,
			 hutch_err_t *err);
	/* Required. request: "<count>" or "<model>:<count>" ("h100:1"). */
	int (*allocate)(void *instance, const char *sandbox_id,
			const char *request, hutch_accel_grant_t *grant,
			hutch_err_t *err);
	/* Required. Idempotent. */
	int (*release)(void *instance, const char *sandbox_id, hutch_err_t *err);
	void (*capabilities)(void *instance, hutch_kv_cb emit, void *data);
	/* methods above are valid for ABI 1.0 */
} hutch_accelerator_ops_t;

/* ======================================================================
 * The descriptor
 * ====================================================================== */

typedef struct hutch_plugin {
	uint32_t size;          /* sizeof(hutch_plugin_t) */
	uint16_t abi_major;     /* HUTCH_PLUGIN_ABI_MAJOR */
	uint16_t abi_minor;     /* HUTCH_PLUGIN_ABI_MINOR the plugin was built with */
	/* v1.0 */
	hutch_plugin_kind_t kind;
	const char *name;       /* "runtime-gvisor": [a-z0-9-], matches the .so */
	const char *version;    /* the plugin's own version */
	const char *description;
	const hutch_config_field_t *config; /* {0}-terminated, or NULL */
	size_t config_size;     /* bytes of the config struct */
	/* Creates an instance. config: the bound struct (owned by the core).
	 * Runs on the main thread before the loop; may block briefly (probes). */
	int (*init)(const hutch_host_t *host, const void *config,
		    void **instance, hutch_err_t *err);
	/* Destroys it; main thread, after the loop stopped. May be NULL. */
	void (*fini)(void *instance);
	/* Optional. SIGHUP: the config, re-read and re-bound; only fields
	 * flagged HUTCH_CONFIG_RELOAD differ. Loop thread; must not block. */
	int (*reload)(void *instance, const void *config, hutch_err_t *err);
	/* The kind's ops: hutch_runtime_ops_t for RUNTIME, and so on. */
	const void *ops;
	/* methods above are valid for ABI 1.0 */
} hutch_plugin_t;

typedef const hutch_plugin_t *(*hutch_plugin_entry_fn)(void);

/* C11's _Static_assert is static_assert in C++. */
#ifdef __cplusplus
#define HUTCH_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define HUTCH_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Layout guards: the descriptor's head is fixed for every 1.x, and every
 * versioned struct starts with its size. */
HUTCH_STATIC_ASSERT(offsetof(hutch_plugin_t, size) == 0, "size first");
HUTCH_STATIC_ASSERT(offsetof(hutch_plugin_t, abi_major) == 4, "abi_major at 4");
HUTCH_STATIC_ASSERT(offsetof(hutch_plugin_t, abi_minor) == 6, "abi_minor at 6");
HUTCH_STATIC_ASSERT(offsetof(hutch_plugin_t, kind) == 8, "kind at 8");
HUTCH_STATIC_ASSERT(offsetof(hutch_runtime_ops_t, size) == 0, "size first");
HUTCH_STATIC_ASSERT(offsetof(hutch_network_ops_t, size) == 0, "size first");
HUTCH_STATIC_ASSERT(offsetof(hutch_storage_ops_t, size) == 0, "size first");
HUTCH_STATIC_ASSERT(offsetof(hutch_identity_ops_t, size) == 0, "size first");
HUTCH_STATIC_ASSERT(offsetof(hutch_accelerator_ops_t, size) == 0, "size first");
HUTCH_STATIC_ASSERT(offsetof(hutch_host_t, size) == 0, "size first");

/* The structs that grew, at the size of each minor (LP64: x86-64, arm64).
 * When a minor adds members, the sizes of the earlier ones stay here, each
 * through its HUTCH_*_SIZE_1_N macro. */
#if defined(__LP64__)
HUTCH_STATIC_ASSERT(HUTCH_SANDBOX_SPEC_SIZE_1_0 == 192, "hutch_sandbox_spec_t 1.0 size");
HUTCH_STATIC_ASSERT(sizeof(hutch_sandbox_spec_t) == 224, "hutch_sandbox_spec_t 1.1 size");
HUTCH_STATIC_ASSERT(HUTCH_SANDBOX_STATUS_SIZE_1_0 == 48, "hutch_sandbox_status_t 1.0 size");
HUTCH_STATIC_ASSERT(sizeof(hutch_sandbox_status_t) == 312, "hutch_sandbox_status_t 1.1 size");
HUTCH_STATIC_ASSERT(HUTCH_RUNTIME_OPS_SIZE_1_0 == 80, "hutch_runtime_ops_t 1.0 size");
HUTCH_STATIC_ASSERT(sizeof(hutch_runtime_ops_t) == 88, "hutch_runtime_ops_t 1.1 size");
HUTCH_STATIC_ASSERT(HUTCH_NETWORK_OPS_SIZE_1_1 == 80, "hutch_network_ops_t 1.1 size");
HUTCH_STATIC_ASSERT(HUTCH_NET_ATTACH_SIZE_1_1 == 88, "hutch_net_attach_t 1.1 size");
HUTCH_STATIC_ASSERT(sizeof(hutch_net_attach_t) == 96, "hutch_net_attach_t 1.2 size");
HUTCH_STATIC_ASSERT(sizeof(hutch_network_ops_t) == 128, "hutch_network_ops_t 1.2 size");
HUTCH_STATIC_ASSERT(offsetof(hutch_child_status_t, detached) == 9 &&
			    sizeof(hutch_child_status_t) == 12,
		    "hutch_child_status_t grew in its padding: 12 bytes in 1.0 and 1.1");
#endif

/* Define the entry point: HUTCH_PLUGIN_DEFINE(my_descriptor); */
#define HUTCH_PLUGIN_DEFINE(descriptor)                                        \
	HUTCH_EXPORT const hutch_plugin_t *hutch_plugin_v1(void);              \
	HUTCH_EXPORT const hutch_plugin_t *hutch_plugin_v1(void)               \
	{                                                                      \
		return &(descriptor);                                          \
	}

#ifdef __cplusplus
}
#endif
#endif /* HUTCH_PLUGIN_H */
