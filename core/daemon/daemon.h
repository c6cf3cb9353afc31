/*
 * daemon.h: hutchd, the process: its configuration, its loop, its plugins,
 * its store and its API server, and the order they come up and go down.
 *
 * Start: config → log → state dir lock → store → plugins loaded, bound and
 * initialised (all before the loop runs) → API listeners → loop.
 * Stop (SIGTERM/SIGINT): listeners close, calls in flight end, the loop
 * drains, plugins are finalised in reverse order. Sandboxes keep running
 * across a daemon restart and are found again at the next start (or
 * cleaned up, per [sandbox] on_restart).
 */
#ifndef HUTCH_DAEMON_H
#define HUTCH_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "daemon_config.h"
#include "grpc_server.h"
#include "http_server.h"
#include "host_api.h"
#include "plugin_set.h"
#include "store.h"

typedef struct sandbox_mgr sandbox_mgr_t;
typedef struct sandbox sandbox_t;
typedef struct secrets secrets_t;
typedef struct image_service image_service_t;
typedef struct group_mgr group_mgr_t;
typedef struct router router_t;

/* Cached answer of a plugin's capabilities op. */
typedef struct plugin_caps {
	char **keys;
	char **values;
	size_t n;
} plugin_caps_t;

typedef struct daemon_opts {
	const char *config_file; /* NULL: built-in defaults */
	const char *state_dir;   /* overrides */
	const char *run_dir;
	const char *socket;
	const char *log_format;
	const char *log_level;
	const char *plugin_dir;
} daemon_opts_t;

typedef struct daemon {
	daemon_opts_t opts;
	daemon_config_t cfg;
	char *plugin_dir;
	uv_loop_t loop;
	host_core_t *host_core;
	host_ctx_t *core_host; /* the core's own host table ("core") */
	store_t *store;
	plugin_set_t plugins;
	plugin_caps_t *caps; /* one per plugins.all[i] */
	grpc_server_t *grpc;
	uv_signal_t sig_term, sig_int, sig_hup;
	int lock_fd;     /* <state_dir>/hutchd.lock, held while running */
	int run_lock_fd; /* <run_dir>/hutchd.lock, the same for the run dir */
	int64_t started_unix;
	bool stopping;
	sandbox_mgr_t *sandboxes;
	secrets_t *secrets;
	image_service_t *images;
	group_mgr_t *groups; /* scaling groups */
	router_t *router;    /* [router] listener */
	http_server_t *http;  /* [http] listener, or NULL */
	unsigned http_jobs;   /* identity plugin calls on the pool (HTTP, Identity API) */
} daemon_t;

/* Runs hutchd until SIGTERM/SIGINT. Returns 0 after a clean shutdown. */
int daemon_run(const daemon_opts_t *opts, hutch_err_t *err);

/* Loads the config and every plugin it names and binds their tables, as
 * the daemon would, without starting anything (hutchd --check-config). */
int daemon_check_config(const char *file, const char *plugin_dir, FILE *out,
			hutch_err_t *err);

/* Prints a plugin's descriptor and options (hutchd --describe). */
int daemon_describe(const char *name, const char *plugin_dir, FILE *out,
		    hutch_err_t *err);

/* "host:port" or "[v6]:port"; -EINVAL if malformed. */
int daemon_split_host_port(const char *s, char *host, size_t cap, int *port);

/* The tenant a call was authorized as (set by the authorize hook). */
const char *daemon_call_tenant(const grpc_call_t *call);

#endif
