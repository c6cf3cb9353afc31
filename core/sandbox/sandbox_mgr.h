/*
 * sandbox_mgr.h: sandboxes as hutchd keeps them: lifecycle, persistence,
 * timers, and the agent session through which they are driven.
 *
 * States (sandbox_record.h): CREATING -> RUNNING -> STOPPING -> STOPPED |
 * EXPIRED | FAILED.
 * Create and stop run their slow parts (network plugins, the runtime) on
 * the pool; everything else, and every callback, is on the loop thread.
 * Operations on one sandbox never overlap: a stop asked for during create
 * runs when the create finished. Records are persisted at each transition
 * so a restarted daemon finds running sandboxes again (sandbox_mgr_recover).
 */
#ifndef HUTCH_SANDBOX_MGR_H
#define HUTCH_SANDBOX_MGR_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent_conn.h"
#include "daemon_config.h"
#include "host_api.h"
#include "http_server.h"
#include "plugin_set.h"
#include "policy_set.h"
#include "sandbox_identity.h"
#include "sandbox_record.h"
#include "sandbox_spec.h"
#include "store.h"

typedef struct sandbox_mgr sandbox_mgr_t;
typedef struct sandbox sandbox_t;

/* The secrets a spec names, resolved into "K=V" strings (free: wiped),
 * and kept sealed while the sandbox runs so a restarted hutchd can give its
 * processes the same environment. The service layer provides it over the
 * secret store. */
typedef struct sandbox_secret_source {
	/* Loop thread. Errors name the secret, never a value. */
	int (*resolve)(void *data, const char *tenant, const sandbox_secret_ref_t *refs, size_t n,
		       char ***env, hutch_err_t *err);
	int (*keep)(void *data, const char *tenant, const char *sandbox_id, char *const *env,
		    hutch_err_t *err);
	int (*load)(void *data, const char *sandbox_id, char ***env, hutch_err_t *err);
	void (*forget)(void *data, const char *sandbox_id);
	void *data;
} sandbox_secret_source_t;

typedef struct sandbox_mgr_deps {
	uv_loop_t *loop;
	store_t *store;
	plugin_set_t *plugins;
	const daemon_config_t *cfg;
	host_ctx_t *host;      /* the core's host table (spawn, timers) */
	const char *agent_path; /* host path of the hutch-agent binary */
	const sandbox_codec_t *codec;     /* the stored records' encoding */
	sandbox_secret_source_t secrets;  /* resolves sandbox_spec_t.secrets */
	net_policy_load_fn policies_load; /* the tenant's network policies */
	void *policies_data;
	/* Requests to a sandbox's metadata endpoint (http://169.254.169.254/
	 * inside it), parsed, with the sandbox they came from; answered with
	 * http_reply(). NULL: sandboxes get no metadata endpoint. */
	void (*metadata)(void *data, sandbox_t *sb, const http_request_t *req, http_pending_t *p);
	void *metadata_data;
} sandbox_mgr_deps_t;

int sandbox_mgr_new(const sandbox_mgr_deps_t *deps, sandbox_mgr_t **out, hutch_err_t *err);
/* Finds the sandboxes of the last run again (or cleans them up, per
 * [sandbox] on_restart) and removes runtime leftovers nobody owns. Blocks
 * until done: called once at startup, before the API listens. */
int sandbox_mgr_recover(sandbox_mgr_t *m, hutch_err_t *err);
/* Daemon shutdown: sessions and timers close; sandboxes keep running. */
void sandbox_mgr_close(sandbox_mgr_t *m);
void sandbox_mgr_free(sandbox_mgr_t *m);
uint32_t sandbox_mgr_running_count(const sandbox_mgr_t *m, const char *tenant);
/* Create/stop jobs still on the pool (shutdown waits for them before the
 * plugins are finalised). */
unsigned sandbox_mgr_jobs(const sandbox_mgr_t *m);

typedef void (*sandbox_done_cb)(void *data, sandbox_t *sb, const hutch_err_t *err);

/* Validates spec (taken, also on error) and starts creating; cb runs when
 * the sandbox is RUNNING (or failed: then nothing of it remains). A
 * validation error returns <0 at once and cb is never called. */
int sandbox_create(sandbox_mgr_t *m, const char *tenant, sandbox_spec_t *spec, sandbox_done_cb cb,
		   void *data, hutch_err_t *err);

/* Stops (grace_ms 0: the configured grace). cb when STOPPED; stopping a
 * stopped sandbox calls cb at once. */
void sandbox_stop(sandbox_t *sb, int64_t grace_ms, sandbox_done_cb cb, void *data);

/* A caller's agent session broke (the sandbox's init is gone or it is
 * stopping): cb when it has stopped. Not a stop on request: the sandbox
 * ends as failed with its own reason (e.g. out of memory) unless someone
 * asked for a stop already. */
void sandbox_await_end(sandbox_t *sb, sandbox_done_cb cb, void *data);

/* Forgets a sandbox that is no longer running; -EBUSY if it is. */
int sandbox_delete(sandbox_t *sb, hutch_err_t *err);

/* By id, or by name among the tenant's sandboxes (newest first). */
sandbox_t *sandbox_find(sandbox_mgr_t *m, const char *tenant, const char *id_or_name);

typedef void (*sandbox_iter_cb)(void *data, sandbox_t *sb);
void sandbox_each(sandbox_mgr_t *m, const char *tenant, sandbox_iter_cb cb, void *data);

/* The sandbox as stored and shown, pointing into sb: valid until sb
 * changes (on the loop), never released. */
void sandbox_view(const sandbox_t *sb, sandbox_record_t *out);

const char *sandbox_id(const sandbox_t *sb);
/* Who it is, for its identity (pointers into sb). */
void sandbox_who(const sandbox_t *sb, sandbox_who_t *out);
sandbox_state_t sandbox_state(const sandbox_t *sb);
/* Why it stopped or failed; NULL while it runs. */
const char *sandbox_reason(const sandbox_t *sb);
/* As resolved (defaults filled, secret values removed). */
const sandbox_spec_t *sandbox_spec(const sandbox_t *sb);
/* The live agent session, or NULL (not running) with a reason in err. */
agent_conn_t *sandbox_agent(sandbox_t *sb, hutch_err_t *err);
/* The environment every process of the sandbox starts with ("K=V"). */
char *const *sandbox_env(const sandbox_t *sb);
const char *sandbox_workdir(const sandbox_t *sb);
/* Activity (exec, files) resets the idle timer; active execs hold it. */
void sandbox_activity(sandbox_t *sb, int delta_active);
bool sandbox_oom_killed(const sandbox_t *sb);
/* Replaces the network policies bound to a running sandbox (names in its
 * tenant); use_default with n = 0 goes back to the configured default.
 * cb when the network chain applied it (err set if it failed; the old
 * binding then stays). */
int sandbox_update_policies(sandbox_t *sb, char *const *names, size_t n, bool use_default,
			    sandbox_done_cb cb, void *data, hutch_err_t *err);
/* Live sandboxes of tenant bound to policy (NULL-terminated, free with
 * strv_free; NULL if none). */
char **sandbox_mgr_policy_users(sandbox_mgr_t *m, const char *tenant, const char *policy);
/* The policy was replaced: every running sandbox bound to it gets the
 * new version. */
void sandbox_mgr_policy_changed(sandbox_mgr_t *m, const char *tenant, const char *policy);

/* Asks the runtime whether a process was killed at the memory limit since
 * the last check; cb(data, true) if so (the sandbox then reports
 * oom_killed). Called after a process ends unexpectedly. */
typedef void (*sandbox_oom_cb)(void *data, bool oom);
void sandbox_check_oom(sandbox_t *sb, sandbox_oom_cb cb, void *data);

/* The main command's last output (bounded), for logs. */
const char *sandbox_main_log(const sandbox_t *sb, size_t *len);

void sandbox_ref(sandbox_t *sb);
void sandbox_unref(sandbox_t *sb);

/* ---- images (issue 5): where a sandbox's layers come from ----
 *
 * Without a source every sandbox gets the built-in busybox root
 * (image_builtin.c). The image service sets one: it resolves the spec's
 * image in the caller's tenant, merges the image's config into the spec,
 * and makes the layers ready (checked against their digests) on the pool
 * before the runtime stacks them. */
typedef struct sandbox_image {
	char digest[80];  /* the image's manifest digest; "" until known */
	char **layers;    /* layer directories, lowest first (prepare fills) */
	void *handle;     /* the source's own (what it holds for the sandbox) */
} sandbox_image_t;

typedef struct sandbox_image_source {
	/* Loop thread. Resolves spec->image for tenant and fills out; merges
	 * the image's config into spec (env the spec does not set, workdir if
	 * none, entrypoint before a command). <0 with err: the create fails. */
	int (*resolve)(void *data, const char *tenant, sandbox_spec_t *spec, sandbox_image_t *out,
		       hutch_err_t *err);
	/* Pool thread: checks (or makes) the layers; fills img->layers. */
	int (*prepare)(void *data, sandbox_image_t *img, hutch_err_t *err);
	/* Loop thread: a sandbox found running at recovery uses img->digest. */
	void (*adopt)(void *data, const char *tenant, sandbox_image_t *img);
	/* Loop thread: lets go of what resolve/prepare/adopt hold (the digest
	 * stays). Idempotent. */
	void (*release)(void *data, sandbox_image_t *img);
	void *data;
} sandbox_image_source_t;

/* Loop thread, after recovery; src is copied. Live sandboxes are adopted. */
void sandbox_mgr_set_image_source(sandbox_mgr_t *m, const sandbox_image_source_t *src);
/* Work on the pool (or own threads) for others, e.g. image builds, that
 * shutdown must wait for like creates and stops: +1 when it starts, -1
 * when its result is back on the loop. */
void sandbox_mgr_job_hold(sandbox_mgr_t *m, int delta);

#endif
