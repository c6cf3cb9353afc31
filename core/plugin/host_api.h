/*
 * host_api.h: the hutch_host_t table hutchd gives each plugin (and uses
 * itself): logging with the plugin's prefix, child processes, timers, pool
 * work, metrics and audit events.
 *
 * libuv handles may only be touched on the loop thread, but plugin ops run
 * on pool threads. Calls that need the loop (starting a timer, watching a
 * child, queueing work) therefore go through a small request queue that an
 * uv_async_t drains on the loop thread; calls already on the loop thread act
 * at once.
 */
#ifndef HUTCH_HOST_API_H
#define HUTCH_HOST_API_H

#include <uv.h>

#include <hutch/plugin.h>

typedef struct host_core host_core_t;
typedef struct host_ctx host_ctx_t;

/* Loop thread. audit_path may be NULL (audit events are then dropped). */
int host_core_new(uv_loop_t *loop, const char *audit_path, host_core_t **out,
		  hutch_err_t *err);
/* Starts closing the core's handles; the loop must run until they closed. */
/* Before the plugins' fini: children still running are let go, their
 * on_exit called once with status.detached. */
void host_core_detach_children(host_core_t *core);
void host_core_close(host_core_t *core);
void host_core_free(host_core_t *core);
bool host_core_on_loop_thread(const host_core_t *core);
uv_loop_t *host_core_loop(const host_core_t *core);

/* One table per plugin (or "core"): kind_name:name is the log prefix.
 * state_root/run_root: the plugin's dirs are made under them as
 * plugins/<name> (0700). NULL roots leave the dirs unset. */
int host_ctx_new(host_core_t *core, const char *kind_name, const char *name,
		 const char *state_root, const char *run_root, host_ctx_t **out,
		 hutch_err_t *err);
const hutch_host_t *host_ctx_table(host_ctx_t *ctx);
host_ctx_t *host_ctx_from_table(const hutch_host_t *host);
void host_ctx_free(host_ctx_t *ctx);

/* Makes dir and its parents with mode (used for state dirs). */
int mkdir_p(const char *dir, mode_t mode, hutch_err_t *err);

#endif
