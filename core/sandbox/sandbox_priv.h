/*
 * sandbox_priv.h: the sandbox manager's insides, shared by its files.
 *
 * A sandbox's life, one file per step or concern:
 *   sandbox_mgr.c            the manager, the list, lookups, accessors
 *   sandbox_validate.c       what a spec may ask for; defaults
 *   sandbox_env.c            the environment of its processes
 *   sandbox_create.c         create: pool work, then session, ports, main
 *   sandbox_network.c        the network chain and /etc files of a sandbox
 *   sandbox_session.c        the agent session (attach, reattach, its end)
 *   sandbox_main.c           the main command
 *   sandbox_ports.c          forwarded ports
 *   sandbox_timers.c         lifetime and idle timers
 *   sandbox_stop.c           stop, await_end, delete
 *   sandbox_policies.c       network policies of a running sandbox
 *   sandbox_oom.c            OOM checks after a process died
 *   sandbox_identity_renew.c token file renewal
 *   sandbox_persist.c        records: stored at each transition, read back
 *   sandbox_recover.c        recovery at startup, leftovers
 * Everything here runs on the loop thread unless it says "pool".
 */
#ifndef HUTCH_SANDBOX_PRIV_H
#define HUTCH_SANDBOX_PRIV_H

#include "sandbox_mgr.h"

#include "port_forward.h"
#include "sandbox_meta.h"
#include "strbuf.h"

#define KIND "sandbox"
/* Where the agent binary appears inside every sandbox. */
#define AGENT_IN_SANDBOX "/.hutch/agent"

typedef struct waiter {
	sandbox_done_cb cb;
	void *data;
	struct waiter *next;
} waiter_t;

struct sandbox {
	sandbox_mgr_t *m;
	sandbox_t *next;
	int refs;
	char id[32];
	char *tenant;
	char *name;
	sandbox_state_t state;
	char *reason;
	int64_t created_ms, started_ms, stopped_ms, expires_ms;
	sandbox_spec_t *spec;         /* resolved; owned */
	char **env;                   /* "K=V" for every process */
	char *run_dir;
	char *image_layer;
	sandbox_image_t image;        /* images (issue 5): from the image source */
	agent_conn_t *agent;
	char agent_down_reason[256];
	bool busy;                    /* create/stop job in flight */
	bool stop_requested;
	int64_t stop_grace_ms;
	sandbox_state_t stop_final;
	char *stop_reason;
	waiter_t *stop_waiters;
	uv_timer_t life_timer, idle_timer;
	bool timers_init;
	int active;
	bool oom_killed;
	int64_t oom_seen;             /* the runtime's OOM-kill counter, last read */
	char **addresses;
	size_t n_network_attached;
	char netns_path[256];
	port_fwd_t **fwds;            /* one per spec port, while running */
	char **port_addrs;            /* "127.0.0.1:NNNN", parallel to fwds */
	uint32_t main_sid;            /* the main command's agent stream */
	strbuf_t main_log;            /* its last output (bounded) */
	bool forgotten;               /* deleted; freed at the last unref */
	bool delete_after_stop;       /* create failed late: leave no record */
	bool has_secrets;             /* a sealed copy of its secret env is stored */
	int64_t identity_expires;     /* unix s of the token file's token; 0: none */
	int64_t identity_renew_ms;    /* when to renew it */
	bool identity_renewing;       /* a renewal is on the pool */
	char *identity_dir;           /* <run_dir>/identity (create only) */
	meta_relay_t *meta;           /* its metadata endpoint, with the session */
};

struct sandbox_mgr {
	sandbox_mgr_deps_t d;
	sandbox_t *list;
	char *run_root;
	uv_timer_t identity_timer;    /* renews token files */
	bool identity_timer_on;
	bool closing;
	int jobs; /* create/stop jobs on the pool */
	sandbox_image_source_t images; /* images (issue 5); zeroed: built-in only */
};


static inline int64_t now_ms(void)
{
	return store_now_ms();
}

/* sandbox_mgr.c */
/* The image's content digest for the identity claim (NULL: not known). */
const char *sandbox_image_digest(const sandbox_t *sb);
void sandbox_free(sandbox_t *sb);
void sandbox_list_remove(sandbox_mgr_t *m, sandbox_t *sb);
/* Frees an environment that may hold secret values: wiped first. */
void sandbox_env_free(char **env);

/* sandbox_validate.c: checks the request and fills in defaults. */
int sandbox_spec_resolve(sandbox_mgr_t *m, const char *tenant, sandbox_spec_t *s,
			 hutch_err_t *err);
/* sandbox_env.c: defaults, then the spec's env, then the resolved secrets
 * (which win). */
char **sandbox_env_build(const sandbox_spec_t *s, const char *hostname, char *const *secret_env,
			 bool identity);

/* sandbox_network.c (pool) */
int sandbox_network_attach(sandbox_t *sb, const net_policy_set_t *policies,
			   hutch_net_attachment_t *att, hutch_err_t *err);
void sandbox_network_detach(sandbox_t *sb);
int sandbox_write_etc(sandbox_t *sb, const hutch_net_attachment_t *att, hutch_err_t *err);

/* sandbox_session.c */
int sandbox_agent_attach(sandbox_t *sb, int to_agent, int from_agent, hutch_err_t *err);
int sandbox_reattach(sandbox_t *sb, hutch_err_t *err);

/* sandbox_main.c, sandbox_ports.c, sandbox_timers.c */
void sandbox_main_start(sandbox_t *sb);
int sandbox_ports_start(sandbox_t *sb, hutch_err_t *err);
void sandbox_ports_stop(sandbox_t *sb);
void sandbox_timers_start(sandbox_t *sb);
void sandbox_timers_close(sandbox_t *sb);

/* sandbox_stop.c: stops with final state and reason unless a stop was
 * asked for already (the first one's state and reason win). */
void sandbox_stop_internal(sandbox_t *sb, int64_t grace_ms, sandbox_state_t final,
			   const char *reason, sandbox_done_cb cb, void *data);
void sandbox_waiters_fire(sandbox_t *sb);

/* sandbox_persist.c */
void sandbox_persist(sandbox_t *sb);
int sandbox_record_load(void *m, const store_obj_t *o);

/* sandbox_identity_renew.c: the manager's timer */
void sandbox_identity_tick(uv_timer_t *t);

#endif
