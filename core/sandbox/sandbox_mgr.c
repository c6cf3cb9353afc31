#include "sandbox_mgr.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "image_builtin.h"
#include "log.h"
#include "metrics.h"
#include "net_chain.h"
#include "policy_set.h"
#include "sandbox_identity.h"
#include "sandbox_meta.h"
#include "port_forward.h"
#include "proc.h"
#include "rundir.h"
#include "strbuf.h"

#define KIND "sandbox"
/* Where the agent binary appears inside every sandbox. */
#define AGENT_IN_SANDBOX "/.hutch/agent"
#define MIN_MEMORY (64LL << 20)
/* The most a spec may ask for, whatever the config: the kernel's own
 * pid limit (PID_MAX_LIMIT), and a writable layer of 1 TiB. */
#define SANDBOX_PIDS_MAX (4 * 1024 * 1024)
#define SANDBOX_DISK_MAX (1LL << 40)

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
	char *etc_paths[3], *etc_targets[3]; /* /etc files mounted in (create only) */
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

unsigned sandbox_mgr_jobs(const sandbox_mgr_t *m)
{
	return (unsigned)m->jobs;
}

/* ---- images (issue 5) ---- */

void sandbox_mgr_job_hold(sandbox_mgr_t *m, int delta)
{
	m->jobs += delta;
}

void sandbox_mgr_set_image_source(sandbox_mgr_t *m, const sandbox_image_source_t *src)
{
	m->images = *src;
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state) && sb->image.digest[0] && m->images.adopt)
			m->images.adopt(m->images.data, sb->tenant, &sb->image);
}

/* ---- small helpers ---- */

static int64_t now_ms(void)
{
	return store_now_ms();
}

/* The image's content digest for the identity claim (NULL: not known). */
static const char *sandbox_image_digest(const sandbox_t *sb)
{
	return sb->image.digest[0] ? sb->image.digest : NULL;
}

static void new_id(char out[32])
{
	uint8_t b[6];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (uint8_t)rand();
	snprintf(out, 32, "sb-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
}

/* ---- persistence ---- */

void sandbox_view(const sandbox_t *sb, sandbox_record_t *out)
{
	plugin_t *rt = sb->m->d.plugins->runtime;
	*out = (sandbox_record_t){
		.id = (char *)sb->id,
		.name = sb->name,
		.tenant = sb->tenant,
		.state = sb->state,
		.reason = sb->reason,
		.spec = sb->spec,
		.created_ms = sb->created_ms,
		.started_ms = sb->started_ms,
		.stopped_ms = sb->stopped_ms,
		.expires_ms = sb->expires_ms,
		.runtime = rt ? rt->name : (char *)"",
		.image_digest = (char *)sb->image.digest,
		.oom_killed = sb->oom_killed,
		.addresses = sb->addresses,
		.port_addrs = sb->port_addrs,
	};
}

static void persist(sandbox_t *sb)
{
	if (sb->forgotten)
		return;
	sandbox_record_t rec;
	sandbox_view(sb, &rec);
	_cleanup_free_ uint8_t *buf = NULL;
	size_t n = 0;
	hutch_err_t err = {0};
	if (sb->m->d.codec->encode(&rec, &buf, &n, &err) < 0 ||
	    store_put(sb->m->d.store, KIND, sb->tenant, sb->id, sb->name, buf, n, &err) < 0)
		log_error("sandbox %s: %s", sb->id, err.message);
}

/* ---- lifetime of the object ---- */

/* Frees an environment that may hold secret values: wiped first. */
static void env_free(char **env)
{
	for (char **e = env; e && *e; e++)
		memset(*e, 0, strlen(*e));
	strv_free(env);
}

/* Tells everyone waiting for the sandbox to stop that it has. */
static void waiters_fire(sandbox_t *sb)
{
	waiter_t *w = sb->stop_waiters;
	sb->stop_waiters = NULL;
	while (w) {
		waiter_t *next = w->next;
		if (w->cb)
			w->cb(w->data, sb, NULL);
		free(w);
		w = next;
	}
}

static void sandbox_free(sandbox_t *sb)
{
	sandbox_spec_free(sb->spec);
	env_free(sb->env);
	strv_free(sb->addresses);
	strv_free(sb->port_addrs);
	free(sb->fwds);
	for (int i = 0; i < 3; i++) {
		free(sb->etc_paths[i]);
		free(sb->etc_targets[i]);
	}
	sb_free(&sb->main_log);
	free(sb->tenant);
	free(sb->name);
	free(sb->reason);
	free(sb->run_dir);
	free(sb->image_layer);
	if (sb->m->images.release) /* images (issue 5) */
		sb->m->images.release(sb->m->images.data, &sb->image);
	free(sb->stop_reason);
	free(sb->identity_dir);
	free(sb);
}

void sandbox_ref(sandbox_t *sb)
{
	sb->refs++;
}

void sandbox_unref(sandbox_t *sb)
{
	if (--sb->refs == 0)
		sandbox_free(sb);
}

static void list_remove(sandbox_mgr_t *m, sandbox_t *sb)
{
	for (sandbox_t **pp = &m->list; *pp; pp = &(*pp)->next) {
		if (*pp == sb) {
			*pp = sb->next;
			sb->next = NULL;
			return;
		}
	}
}

static void timer_closed(uv_handle_t *h)
{
	sandbox_unref(h->data);
}

static void timers_close(sandbox_t *sb)
{
	if (!sb->timers_init)
		return;
	sb->timers_init = false;
	uv_close((uv_handle_t *)&sb->life_timer, timer_closed);
	uv_close((uv_handle_t *)&sb->idle_timer, timer_closed);
}

/* ---- accessors ---- */

const char *sandbox_id(const sandbox_t *sb)
{
	return sb->id;
}

sandbox_state_t sandbox_state(const sandbox_t *sb)
{
	return sb->state;
}

const char *sandbox_reason(const sandbox_t *sb)
{
	return sb->reason;
}

const sandbox_spec_t *sandbox_spec(const sandbox_t *sb)
{
	return sb->spec;
}

char *const *sandbox_env(const sandbox_t *sb)
{
	return sb->env;
}

const char *sandbox_workdir(const sandbox_t *sb)
{
	return sb->spec && sb->spec->workdir && *sb->spec->workdir ? sb->spec->workdir : NULL;
}

bool sandbox_oom_killed(const sandbox_t *sb)
{
	return sb->oom_killed;
}

agent_conn_t *sandbox_agent(sandbox_t *sb, hutch_err_t *err)
{
	if (sb->state == SANDBOX_RUNNING && sb->agent &&
	    agent_conn_alive(sb->agent))
		return sb->agent;
	if (sb->state == SANDBOX_RUNNING)
		hutch_err_set(err, EAGAIN, "sandbox %s is not reachable right now (its agent is restarting)",
			      sb->id);
	else
		hutch_err_set(err, EBUSY, "sandbox %s is %s%s%s%s", sb->id, sandbox_state_word(sb->state),
			      sb->reason && *sb->reason ? " (" : "", sb->reason ? sb->reason : "",
			      sb->reason && *sb->reason ? ")" : "");
	return NULL;
}

uint32_t sandbox_mgr_running_count(const sandbox_mgr_t *m, const char *tenant)
{
	uint32_t n = 0;
	for (const sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state) && (!tenant || strcmp(sb->tenant, tenant) == 0))
			n++;
	return n;
}

sandbox_t *sandbox_find(sandbox_mgr_t *m, const char *tenant, const char *id_or_name)
{
	if (!id_or_name || !*id_or_name)
		return NULL;
	sandbox_t *by_name = NULL;
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (tenant && strcmp(sb->tenant, tenant) != 0)
			continue;
		if (strcmp(sb->id, id_or_name) == 0)
			return sb;
		/* Names are unique among live sandboxes; a live one wins over
		 * older stopped ones of the same name. */
		if (sb->name && strcmp(sb->name, id_or_name) == 0 &&
		    (!by_name || (sandbox_state_live(sb->state) && !sandbox_state_live(by_name->state)) ||
		     (sandbox_state_live(sb->state) == sandbox_state_live(by_name->state) && sb->created_ms > by_name->created_ms)))
			by_name = sb;
	}
	return by_name;
}

void sandbox_each(sandbox_mgr_t *m, const char *tenant, sandbox_iter_cb cb, void *data)
{
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (!tenant || strcmp(sb->tenant, tenant) == 0)
			cb(data, sb);
}

/* ---- timers ---- */

static void stop_internal(sandbox_t *sb, int64_t grace_ms, sandbox_state_t final,
			  const char *reason, sandbox_done_cb cb, void *data);

static void on_lifetime(uv_timer_t *t)
{
	sandbox_t *sb = t->data;
	char why[96];
	snprintf(why, sizeof why, "lifetime of %llds expired",
		 (long long)(sb->spec ? sb->spec->lifetime_seconds : 0));
	stop_internal(sb, 0, SANDBOX_EXPIRED, why, NULL, NULL);
}

static void on_idle(uv_timer_t *t)
{
	sandbox_t *sb = t->data;
	if (sb->active > 0)
		return; /* an exec is running: not idle */
	char why[96];
	snprintf(why, sizeof why, "idle for %llds",
		 (long long)(sb->spec ? sb->spec->idle_timeout_seconds : 0));
	stop_internal(sb, 0, SANDBOX_EXPIRED, why, NULL, NULL);
}

static void timers_start(sandbox_t *sb)
{
	uv_loop_t *loop = sb->m->d.loop;
	if (!sb->timers_init) {
		uv_timer_init(loop, &sb->life_timer);
		uv_timer_init(loop, &sb->idle_timer);
		sb->life_timer.data = sb->idle_timer.data = sb;
		sandbox_ref(sb);
		sandbox_ref(sb);
		sb->timers_init = true;
	}
	int64_t left = sb->expires_ms - now_ms();
	uv_timer_start(&sb->life_timer, on_lifetime, left > 0 ? (uint64_t)left : 0, 0);
	if (sb->spec && sb->spec->idle_timeout_seconds > 0) {
		uint64_t idle = (uint64_t)sb->spec->idle_timeout_seconds * 1000;
		uv_timer_start(&sb->idle_timer, on_idle, idle, idle);
	}
}

void sandbox_activity(sandbox_t *sb, int delta_active)
{
	sb->active += delta_active;
	if (sb->timers_init && sb->spec && sb->spec->idle_timeout_seconds > 0 &&
	    sb->state == SANDBOX_RUNNING)
		uv_timer_again(&sb->idle_timer);
}

/* ---- the agent session ---- */

static void agent_closed(void *data, const char *reason)
{
	sandbox_t *sb = data;
	sb->agent = NULL;
	meta_relay_free(sb->meta);
	sb->meta = NULL;
	snprintf(sb->agent_down_reason, sizeof sb->agent_down_reason, "%s", reason);
	if (sb->state == SANDBOX_RUNNING && !sb->m->closing &&
	    !sb->stop_requested) {
		/* Nobody asked for this: the sandbox's init is gone. */
		log_warn("sandbox %s: agent session ended (%s); stopping it", sb->id, reason);
		stop_internal(sb, 0, SANDBOX_FAILED, NULL, NULL, NULL);
	}
	sandbox_unref(sb);
}

static void meta_request(void *data, const http_request_t *req, http_pending_t *p)
{
	sandbox_t *sb = data;
	sb->m->d.metadata(sb->m->d.metadata_data, sb, req, p);
}

static int agent_attach(sandbox_t *sb, int to_agent, int from_agent, hutch_err_t *err)
{
	agent_conn_t *c;
	int r = agent_conn_open(sb->m->d.loop, to_agent, from_agent, agent_closed, sb, &c, err);
	if (r < 0)
		return r;
	sandbox_ref(sb); /* held by the session until agent_closed */
	sb->agent = c;
	if (sb->m->d.metadata)
		sb->meta = meta_relay_new(c, sb->id, meta_request, sb);
	return 0;
}

/* ---- plugin calls (pool threads) ---- */

static void fill_runtime_spec(sandbox_t *sb, hutch_sandbox_spec_t *rs, const char *netns,
			      const char **layers, hutch_mount_t *mounts, size_t *n_mounts,
			      hutch_kv_t *env, const char **argv, int in_fd, int out_fd,
			      uint16_t *ports)
{
	const sandbox_spec_t *s = sb->spec;
	size_t nm = 0;
	mounts[nm++] = (hutch_mount_t){sb->m->d.agent_path, AGENT_IN_SANDBOX, HUTCH_MOUNT_READONLY};
	/* Written by write_etc_files; read-only, so a sandbox cannot grow
	 * files on the host's run dir. */
	static const char *const etc_names[] = {"hosts", "hostname", "resolv.conf"};
	for (size_t i = 0; i < 3; i++) {
		sb->etc_paths[i] = xasprintf("%s/etc/%s", sb->run_dir, etc_names[i]);
		sb->etc_targets[i] = xasprintf("/etc/%s", etc_names[i]);
		mounts[nm++] = (hutch_mount_t){sb->etc_paths[i], sb->etc_targets[i], HUTCH_MOUNT_READONLY};
	}
	if (sb->identity_dir)
		mounts[nm++] = (hutch_mount_t){sb->identity_dir, IDENTITY_DIR_IN_SANDBOX,
					       HUTCH_MOUNT_READONLY};
	*n_mounts = nm;
	static const char *const meta_addrs[] = {AGENT_META_ADDR};
	layers[0] = sb->image_layer;
	argv[0] = AGENT_IN_SANDBOX;
	argv[1] = "init";
	argv[2] = NULL;
	env[0] = (hutch_kv_t){"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
	*rs = (hutch_sandbox_spec_t){
		.size = sizeof *rs,
		.id = sb->id,
		.tenant = sb->tenant,
		.name = sb->name,
		.hostname = sb->id,
		.layers = layers,
		.n_layers = 1,
		.argv = argv,
		.init_stdin_fd = in_fd,
		.init_stdout_fd = out_fd,
		.init_stderr_fd = -1,
		.env = env,
		.n_env = 1,
		.workdir = "/",
		.cpu_millis = s->cpu_millis,
		.memory_bytes = s->memory_bytes,
		.pids_max = s->pids_max,
		.disk_bytes = s->disk_bytes,
		.mounts = mounts,
		.n_mounts = nm,
		.netns_path = netns,
		.ports = ports,
		.n_ports = s->n_ports,
		.loopback_addrs = sb->m->d.metadata ? meta_addrs : NULL,
		.n_loopback_addrs = sb->m->d.metadata ? 1 : 0,
	};
	for (size_t i = 0; i < s->n_ports; i++)
		ports[i] = (uint16_t)s->ports[i];
	if (sb->image.layers) { /* images (issue 5): the image's layers */
		rs->layers = (const char *const *)sb->image.layers;
		rs->n_layers = strv_len(sb->image.layers);
	}
}

static int network_attach_all(sandbox_t *sb, const net_policy_set_t *policies,
			      hutch_net_attachment_t *att, hutch_err_t *err)
{
	_cleanup_free_ uint16_t *ports = xcalloc(sb->spec->n_ports + 1, sizeof *ports);
	for (size_t i = 0; i < sb->spec->n_ports; i++)
		ports[i] = (uint16_t)sb->spec->ports[i];
	hutch_net_attach_t req = {
		.sandbox_id = sb->id,
		.tenant = sb->tenant,
		.policies = (const hutch_net_policy_t *const *)policies->items,
		.n_policies = policies->n,
		.policies_set = sb->spec->n_network_policies > 0,
		.ports = ports,
		.n_ports = sb->spec->n_ports,
	};
	return net_chain_attach(sb->m->d.plugins, req, att, &sb->n_network_attached, err);
}

/* All of the chain when nothing is counted (a recovered sandbox). */
static void network_detach_all(sandbox_t *sb)
{
	plugin_set_t *ps = sb->m->d.plugins;
	net_chain_detach(ps, sb->id, sb->n_network_attached ? sb->n_network_attached : ps->n_network,
			 "sandbox");
	sb->n_network_attached = 0;
}

/* ---- /etc files ---- */

/* The sandbox's /etc/hosts, /etc/hostname and /etc/resolv.conf (see
 * rundir_write_etc). */
static int write_etc_files(sandbox_t *sb, const hutch_net_attachment_t *att, hutch_err_t *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/etc", sb->run_dir);
	return rundir_write_etc(dir, sb->id, att, err);
}

/* ---- create ---- */

typedef struct create_job {
	uv_work_t req;
	sandbox_t *sb;
	int agent_in;   /* the agent's stdin (read end) */
	int agent_out;  /* the agent's stdout (write end) */
	int to_agent, from_agent; /* ours */
	sandbox_done_cb cb;
	void *data;
	hutch_err_t err;
	int result;
	hutch_sandbox_status_t status;
	char **addresses;
	char netns_path[256];
	net_policy_set_t policies; /* loaded on the loop: the store is the loop's */
} create_job_t;

static void create_work(uv_work_t *req)
{
	create_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sandbox_mgr_t *m = sb->m;
	hutch_err_t *err = &j->err;
	int r;
	_cleanup_free_ uint16_t *ports = NULL; /* before any goto */

	if (m->images.prepare) /* images (issue 5) */
		r = m->images.prepare(m->images.data, &sb->image, err);
	else
		r = image_builtin_layer(m->d.cfg->daemon.state_dir,
					sb->spec->image && *sb->spec->image ? sb->spec->image
									     : m->d.cfg->sandbox.default_image,
					&sb->image_layer, err);
	if (r < 0)
		goto out;
	if ((r = mkdir_p(sb->run_dir, 0700, err)) < 0)
		goto out;
	hutch_net_attachment_t att;
	if ((r = network_attach_all(sb, &j->policies, &att, err)) < 0)
		goto undo;
	for (int i = 0; i < HUTCH_NET_MAX_ADDRS; i++)
		if (att.addresses[i][0])
			strv_push(&j->addresses, xstrdup(att.addresses[i]));
	if ((r = write_etc_files(sb, &att, err)) < 0)
		goto undo;
	if (m->d.plugins->identity) {
		sb->identity_dir = xasprintf("%s/identity", sb->run_dir);
		sandbox_who_t who;
		sandbox_who(sb, &who);
		if ((r = identity_write_file(m->d.plugins->identity, sb->identity_dir, &who,
					     sb->spec->identity_audience, &sb->identity_expires,
					     err)) < 0)
			goto undo;
	}

	hutch_sandbox_spec_t rs;
	const char *layers[1];
	hutch_mount_t mounts[8];
	size_t n_mounts;
	hutch_kv_t env[1];
	const char *argv[3];
	ports = xcalloc(sb->spec->n_ports + 1, sizeof *ports);
	fill_runtime_spec(sb, &rs, att.netns_path[0] ? att.netns_path : NULL, layers, mounts,
			  &n_mounts, env, argv, j->agent_in, j->agent_out, ports);
	plugin_t *rt = m->d.plugins->runtime;
	j->status.size = sizeof j->status;
	r = rt->ops.runtime.sandbox_create(rt->instance, &rs, &j->status, err);
	if (r < 0) {
		hutch_err_prefix(err, "%s", rt->name);
		goto undo;
	}
	/* Where port forwards connect: the chain's namespace, or the one the
	 * runtime made. */
	if (att.netns_path[0]) {
		snprintf(j->netns_path, sizeof j->netns_path, "%s", att.netns_path);
	} else {
		hutch_sandbox_status_t st = {.size = sizeof st};
		hutch_err_t e2 = {0};
		if (rt->ops.runtime.sandbox_status(rt->instance, sb->id, &st, &e2) == 0)
			snprintf(j->netns_path, sizeof j->netns_path, "%s", st.netns_path);
	}
	goto out;
undo: {
	hutch_err_t e2 = {0};
	rt = m->d.plugins->runtime;
	rt->ops.runtime.sandbox_destroy(rt->instance, sb->id, &e2);
	network_detach_all(sb);
	rundir_remove(sb->run_dir);
}
out:
	j->result = r;
}

/* ---- ports ---- */

static void ports_stop(sandbox_t *sb)
{
	size_t n = strv_len(sb->port_addrs);
	for (size_t i = 0; i < n; i++)
		port_fwd_stop(sb->fwds[i]);
	free(sb->fwds);
	sb->fwds = NULL;
	strv_free(sb->port_addrs);
	sb->port_addrs = NULL;
}

static int ports_start(sandbox_t *sb, hutch_err_t *err)
{
	if (!sb->spec->n_ports)
		return 0;
	sb->fwds = xcalloc(sb->spec->n_ports, sizeof *sb->fwds);
	for (size_t i = 0; i < sb->spec->n_ports; i++) {
		char bound[80];
		port_fwd_t *f;
		int r = port_fwd_start(sb->m->d.loop, sb->netns_path, (uint16_t)sb->spec->ports[i],
				       "127.0.0.1", &f, bound, sizeof bound, err);
		if (r < 0) {
			ports_stop(sb);
			return r;
		}
		sb->fwds[i] = f;
		strv_push(&sb->port_addrs, xstrdup(bound));
	}
	return 0;
}

/* ---- the main command ---- */

#define MAIN_LOG_MAX (256 * 1024)

static void main_output(void *ud, const uint8_t *d, size_t n)
{
	sandbox_t *sb = ud;
	/* Keep the last MAIN_LOG_MAX bytes. */
	sb_append_n(&sb->main_log, d, n);
	if (sb->main_log.len > MAIN_LOG_MAX) {
		size_t drop = sb->main_log.len - MAIN_LOG_MAX;
		memmove(sb->main_log.buf, sb->main_log.buf + drop, MAIN_LOG_MAX);
		sb->main_log.len = MAIN_LOG_MAX;
		sb->main_log.buf[MAIN_LOG_MAX] = '\0';
	}
	if (sb->agent)
		agent_send_credit(sb->agent, sb->main_sid, (uint32_t)n);
}

static void main_exit(void *ud, int code, int sig)
{
	sandbox_t *sb = ud;
	sb->main_sid = 0;
	char why[128];
	if (sig)
		snprintf(why, sizeof why, "main process killed by signal %d", sig);
	else
		snprintf(why, sizeof why, "main process exited with code %d", code);
	stop_internal(sb, 0,
		      code == 0 && !sig ? SANDBOX_STOPPED
					: SANDBOX_FAILED,
		      why, NULL, NULL);
}

static void main_error(void *ud, int e, const char *msg)
{
	sandbox_t *sb = ud;
	sb->main_sid = 0;
	if (e == EPIPE)
		return; /* the session ended: handled as the sandbox's end */
	_cleanup_free_ char *why = xasprintf("main process: %s", msg);
	stop_internal(sb, 0, SANDBOX_FAILED, why, NULL, NULL);
}

static const agent_stream_ops_t main_ops = {
	.on_stdout = main_output,
	.on_stderr = main_output,
	.on_exit = main_exit,
	.on_error = main_error,
};

static void main_start(sandbox_t *sb)
{
	const sandbox_spec_t *s = sb->spec;
	if (!s->n_command || !sb->agent)
		return;
	const char **argv = xcalloc(s->n_command + 1, sizeof *argv);
	for (size_t i = 0; i < s->n_command; i++)
		argv[i] = s->command[i];
	agent_exec_req_t req = {
		.argv = argv,
		.env = (const char *const *)sb->env,
		.cwd = s->workdir && *s->workdir ? s->workdir : NULL,
	};
	sb->main_sid = agent_stream_open(sb->agent, &main_ops, sb);
	agent_send_exec(sb->agent, sb->main_sid, &req);
	free(argv);
}

void sandbox_who(const sandbox_t *sb, sandbox_who_t *out)
{
	*out = (sandbox_who_t){sb->tenant, sb->id, sb->name, sandbox_image_digest(sb),
			       sb->spec->identity_audience};
}

const char *sandbox_main_log(const sandbox_t *sb, size_t *len)
{
	*len = sb->main_log.len;
	return sb->main_log.buf ? sb->main_log.buf : "";
}

/* A create that fails after validation failed on the host (a plugin, the
 * runtime, hutchd's own files): the client's message keeps what happened
 * but not where, since the host's paths tell a client nothing it can act
 * on and much about the host. The log keeps them. Absolute paths are
 * recognised where a token starts with '/' (so URLs stay). */
static void err_hide_host_paths(hutch_err_t *err)
{
	static const char hidden[] = "<host path>";
	char out[sizeof err->message];
	size_t n = 0;
	const char *p = err->message;
	char prev = ' ';
	while (*p && n + 1 < sizeof out) {
		if (*p == '/' && strchr(" `'\"(=[", prev)) {
			while (*p && !strchr(" `'\"):,;]", *p))
				p++;
			for (const char *h = hidden; *h && n + 1 < sizeof out; h++)
				out[n++] = *h;
			prev = '>';
			continue;
		}
		prev = *p;
		out[n++] = *p++;
	}
	out[n] = '\0';
	memcpy(err->message, out, n + 1);
}

static void create_done(uv_work_t *req, int status)
{
	create_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sb->m->jobs--;
	net_policy_set_free(&j->policies);
	/* The agent's ends now live in the sandbox (or nowhere). */
	close(j->agent_in);
	close(j->agent_out);
	sb->busy = false;
	if (j->result == 0 && sb->m->closing) {
		/* hutchd is going down: the sandbox runs on and is found
		 * again at the next start. */
		close(j->to_agent);
		close(j->from_agent);
		sb->state = SANDBOX_RUNNING;
		sb->started_ms = now_ms();
		sb->expires_ms = sb->started_ms + sb->spec->lifetime_seconds * 1000;
		persist(sb);
		if (j->cb) {
			hutch_err_t e = {0};
			hutch_err_set(&e, ESHUTDOWN, "hutchd is shutting down");
			j->cb(j->data, NULL, &e);
		}
		strv_free(j->addresses);
		sandbox_unref(sb);
		free(j);
		return;
	}
	if (status < 0 && j->result == 0)
		j->result = hutch_err_set(&j->err, ECANCELED, "cancelled");
	snprintf(sb->netns_path, sizeof sb->netns_path, "%s", j->netns_path);
	if (j->result == 0)
		j->result = agent_attach(sb, j->to_agent, j->from_agent, &j->err);
	else {
		close(j->to_agent);
		close(j->from_agent);
	}
	if (j->result < 0) {
		hutch_err_prefix(&j->err, "create sandbox %s", sb->id);
		log_warn("%s", j->err.message);
		err_hide_host_paths(&j->err);
		/* Nothing of it remains: not even the record. */
		hutch_err_t e2 = {0};
		store_delete(sb->m->d.store, KIND, sb->id, &e2);
		if (sb->has_secrets)
			sb->m->d.secrets.forget(sb->m->d.secrets.data, sb->id);
		sb->forgotten = true;
		list_remove(sb->m, sb);
		metrics_add("sandboxes_failed_total", NULL, 1);
		if (j->cb)
			j->cb(j->data, NULL, &j->err);
		waiters_fire(sb);
		strv_free(j->addresses);
		sandbox_unref(sb); /* the list's reference */
		sandbox_unref(sb); /* the job's */
		free(j);
		return;
	}
	sb->state = SANDBOX_RUNNING;
	sb->started_ms = now_ms();
	sb->expires_ms = sb->started_ms + sb->spec->lifetime_seconds * 1000;
	strv_free(sb->addresses);
	sb->addresses = j->addresses;
	hutch_err_t perr = {0};
	if (ports_start(sb, &perr) < 0) {
		/* The sandbox runs but cannot be reached as asked: the create
		 * fails, and the sandbox goes away with nothing left of it. */
		hutch_err_prefix(&perr, "create sandbox %s: ports", sb->id);
		log_warn("%s", perr.message);
		err_hide_host_paths(&perr);
		sb->delete_after_stop = true;
		persist(sb);
		if (j->cb)
			j->cb(j->data, NULL, &perr);
		stop_internal(sb, 0, SANDBOX_FAILED,
			      "ports could not be forwarded", NULL, NULL);
		sandbox_unref(sb);
		free(j);
		return;
	}
	persist(sb);
	timers_start(sb);
	if (sb->identity_expires)
		sb->identity_renew_ms = identity_renew_at_ms(now_ms(), sb->identity_expires);
	main_start(sb);
	metrics_add("sandboxes_created_total", NULL, 1);
	log_info("sandbox %s running (tenant %s, %.2f cpu, %lld MiB)", sb->id, sb->tenant,
		 sb->spec->cpu_millis / 1000.0, (long long)(sb->spec->memory_bytes >> 20));
	if (j->cb)
		j->cb(j->data, sb, NULL);
	if (sb->stop_requested)
		stop_internal(sb, sb->stop_grace_ms, sb->stop_final, sb->stop_reason, NULL, NULL);
	sandbox_unref(sb);
	free(j);
}

static bool valid_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

static bool valid_env_key(const char *k)
{
	if (!k || !*k || (*k >= '0' && *k <= '9'))
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_'))
			return false;
	return true;
}

/* Checks the request and fills in defaults: the stored spec says what the
 * sandbox really got. */
static int resolve_spec(sandbox_mgr_t *m, const char *tenant, sandbox_spec_t *s,
			hutch_err_t *err)
{
	const sandbox_section_t *c = &m->d.cfg->sandbox;
	if (!s->image || !*s->image)
		sandbox_str_set(&s->image, c->default_image);
	if (!m->images.resolve && !image_builtin_known(s->image))
		return hutch_err_set(err, ENOENT, "image `%s` not found (available: busybox)", s->image);
	if (s->name && *s->name) {
		if (!valid_name(s->name))
			return hutch_err_set(err, EINVAL,
					     "name `%s`: use 1-63 characters of letters, digits, - _ .",
					     s->name);
		for (sandbox_t *o = m->list; o; o = o->next)
			if (sandbox_state_live(o->state) && o->name && strcmp(o->name, s->name) == 0 &&
			    strcmp(o->tenant, tenant) == 0)
				return hutch_err_set(err, EEXIST, "a sandbox named `%s` is already running (%s)",
						     s->name, o->id);
	}
	if (s->cpu_millis < 0 || s->memory_bytes < 0 || s->lifetime_seconds < 0 ||
	    s->idle_timeout_seconds < 0 || s->pids_max < 0 || s->disk_bytes < 0)
		return hutch_err_set(err, EINVAL, "resource values must not be negative");
	if (s->cpu_millis == 0)
		s->cpu_millis = (int64_t)(c->cpu * 1000);
	if (s->cpu_millis < 10)
		return hutch_err_set(err, EINVAL, "cpu %lldm is too little (at least 10m)",
				     (long long)s->cpu_millis);
	if (s->cpu_millis > (int64_t)(c->max_cpu * 1000))
		return hutch_err_set(err, EINVAL, "cpu %.2f is more than the %.2f allowed",
				     s->cpu_millis / 1000.0, c->max_cpu);
	if (s->memory_bytes == 0)
		s->memory_bytes = c->memory;
	if (s->memory_bytes < MIN_MEMORY)
		return hutch_err_set(err, EINVAL, "memory %lld MiB is too little (at least %lld MiB)",
				     (long long)(s->memory_bytes >> 20), MIN_MEMORY >> 20);
	if (s->memory_bytes > c->max_memory)
		return hutch_err_set(err, EINVAL, "memory %lld MiB is more than the %lld MiB allowed",
				     (long long)(s->memory_bytes >> 20), (long long)(c->max_memory >> 20));
	/* Durations are compared in seconds: a client's value times 1000
	 * could overflow (2^62 s once wrapped to an expiry a second away). */
	int64_t max_life_s = c->max_lifetime_ms / 1000;
	if (s->lifetime_seconds == 0)
		s->lifetime_seconds = c->lifetime_ms / 1000;
	if (s->lifetime_seconds > max_life_s)
		return hutch_err_set(err, EINVAL, "lifetime %llds is longer than the %llds allowed",
				     (long long)s->lifetime_seconds, (long long)max_life_s);
	if (s->idle_timeout_seconds == 0)
		s->idle_timeout_seconds = c->idle_timeout_ms / 1000;
	/* An idle timeout past the longest lifetime could never fire. */
	if (s->idle_timeout_seconds > max_life_s)
		return hutch_err_set(err, EINVAL,
				     "idle timeout %llds is longer than the %llds a sandbox may live",
				     (long long)s->idle_timeout_seconds, (long long)max_life_s);
	if (s->pids_max == 0)
		s->pids_max = c->pids_max;
	if (s->pids_max > SANDBOX_PIDS_MAX)
		return hutch_err_set(err, EINVAL, "pids %lld is more than the %d allowed",
				     (long long)s->pids_max, SANDBOX_PIDS_MAX);
	if (s->disk_bytes == 0)
		s->disk_bytes = c->disk;
	if (s->disk_bytes > SANDBOX_DISK_MAX)
		return hutch_err_set(err, EINVAL, "disk %lld GiB is more than the %lld GiB allowed",
				     (long long)(s->disk_bytes >> 30), (long long)(SANDBOX_DISK_MAX >> 30));
	if (s->workdir && *s->workdir && s->workdir[0] != '/')
		return hutch_err_set(err, EINVAL, "workdir `%s` must be an absolute path", s->workdir);
	for (size_t i = 0; i < s->n_env; i++)
		if (!valid_env_key(s->env[i].key))
			return hutch_err_set(err, EINVAL, "env key `%s`: use letters, digits and _",
					     s->env[i].key ? s->env[i].key : "");
	for (size_t i = 0; i < s->n_ports; i++)
		if (s->ports[i] == 0 || s->ports[i] > 65535)
			return hutch_err_set(err, EINVAL, "port %u is not a TCP port", s->ports[i]);
	if (s->n_network_policies > 0 && m->d.plugins->n_network == 0)
		return hutch_err_set(err, ENOTSUP,
				     "network policies need a network plugin (none is configured in [plugins] network)");
	/* Never accept a device that would not be there: the core does not
	 * drive the accelerator ABI yet, loaded plugin or not. */
	if (s->gpu && *s->gpu && m->d.plugins->n_accelerators == 0)
		return hutch_err_set(err, ENOTSUP,
				     "gpu `%s`: no accelerator is wired into sandboxes in this hutchd yet (no accelerator plugin is configured)",
				     s->gpu);
	if (s->gpu && *s->gpu)
		return hutch_err_set(err, ENOTSUP,
				     "gpu `%s`: no accelerator is wired into sandboxes in this hutchd yet (accelerator plugin `%s` is loaded, but sandboxes cannot use its devices)",
				     s->gpu, m->d.plugins->accelerators[0]->name);
	if (s->n_volumes > 0 && !m->d.plugins->storage)
		return hutch_err_set(err, ENOTSUP, "volumes need a storage plugin (none is configured)");
	if (s->n_volumes > 0) /* never accept a mount that would not happen */
		return hutch_err_set(err, ENOTSUP,
				     "volume mounts are not implemented in this hutchd yet (storage plugin `%s` is loaded, but sandboxes cannot mount volumes)",
				     m->d.plugins->storage->name);
	if (s->n_tunnels > 0)
		return hutch_err_set(err, ENOTSUP, "tunnels need a tunnel network plugin (none is configured)");
	for (size_t i = 0; i < s->n_command; i++)
		if (!s->command[i] || (i == 0 && !*s->command[i]))
			return hutch_err_set(err, EINVAL, "command must name a program");
	for (size_t i = 0; i < s->n_ports; i++)
		for (size_t k = 0; k < i; k++)
			if (s->ports[i] == s->ports[k])
				return hutch_err_set(err, EINVAL, "port %u is listed twice", s->ports[i]);
	uint32_t running = sandbox_mgr_running_count(m, NULL);
	if (running >= (uint32_t)m->d.cfg->sandbox.max_sandboxes)
		return hutch_err_set(err, EAGAIN, "%u sandboxes are running, the most this host allows",
				     running);
	return 0;
}

/* Defaults, then the spec's env, then the resolved secrets (which win). */
static char **build_env(const sandbox_spec_t *s, const char *hostname,
			char *const *secret_env, bool identity)
{
	char **env = NULL;
	strv_push(&env, xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	strv_push(&env, xstrdup("HOME=/root"));
	strv_push(&env, xasprintf("HOSTNAME=%s", hostname));
	if (identity)
		strv_push(&env, xstrdup("HUTCH_IDENTITY_TOKEN_FILE=" IDENTITY_TOKEN_IN_SANDBOX));
	for (size_t i = 0; i < s->n_env; i++) {
		/* A user value replaces a default of the same key. */
		size_t kl = strlen(s->env[i].key);
		for (size_t k = 0; env[k]; k++) {
			if (strncmp(env[k], s->env[i].key, kl) == 0 && env[k][kl] == '=') {
				free(env[k]);
				size_t n = strv_len(env);
				memmove(&env[k], &env[k + 1], (n - k) * sizeof *env);
				break;
			}
		}
		strv_push(&env, xasprintf("%s=%s", s->env[i].key, s->env[i].value ? s->env[i].value : ""));
	}
	for (char *const *e = secret_env; e && *e; e++) {
		size_t kl = strcspn(*e, "=");
		for (size_t k = 0; env[k]; k++) {
			if (strncmp(env[k], *e, kl) == 0 && env[k][kl] == '=') {
				memset(env[k], 0, strlen(env[k]));
				free(env[k]);
				size_t n = strv_len(env);
				memmove(&env[k], &env[k + 1], (n - k) * sizeof *env);
				break;
			}
		}
		strv_push(&env, xstrdup(*e));
	}
	return env;
}

int sandbox_create(sandbox_mgr_t *m, const char *tenant, sandbox_spec_t *s, sandbox_done_cb cb,
		   void *data, hutch_err_t *err)
{
	if (m->closing) {
		sandbox_spec_free(s);
		return hutch_err_set(err, ESHUTDOWN, "hutchd is shutting down");
	}
	int r = resolve_spec(m, tenant, s, err);
	sandbox_image_t image = {0}; /* images (issue 5) */
	if (r == 0 && m->images.resolve)
		r = m->images.resolve(m->images.data, tenant, s, &image, err);
	char **secret_env = NULL;
	if (r == 0 && s->n_secrets > 0)
		r = m->d.secrets.resolve(m->d.secrets.data, tenant, s->secrets, s->n_secrets,
					 &secret_env, err);
	/* Inline values never get stored or shown again. */
	sandbox_spec_strip_secrets(s);
	if (r < 0) {
		if (m->images.release)
			m->images.release(m->images.data, &image);
		sandbox_spec_free(s);
		return r;
	}
	sandbox_t *sb = xcalloc(1, sizeof *sb);
	sb->m = m;
	sb->refs = 1; /* the list's */
	new_id(sb->id);
	sb->tenant = xstrdup(tenant);
	sb->name = s->name && *s->name ? xstrdup(s->name) : NULL;
	sb->spec = s;
	sb->image = image;
	sb->state = SANDBOX_CREATING;
	sb->created_ms = now_ms();
	sb->env = build_env(s, sb->id, secret_env, m->d.plugins->identity != NULL);
	sb->run_dir = xasprintf("%s/%s", m->run_root, sb->id);
	if (secret_env) {
		/* Kept sealed so a restarted hutchd can give the sandbox's
		 * processes the same environment. */
		r = m->d.secrets.keep(m->d.secrets.data, tenant, sb->id, secret_env, err);
		env_free(secret_env);
		if (r < 0) {
			sandbox_free(sb);
			return r;
		}
		sb->has_secrets = true;
	}

	create_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->cb = cb;
	j->data = data;
	r = m->d.policies_load(m->d.policies_data, tenant, s->network_policies,
			       s->n_network_policies, &j->policies, err);
	if (r < 0) {
		free(j);
		sandbox_free(sb);
		return r;
	}
	int to[2], from[2];
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		r = hutch_err_sys(err, errno, "create sandbox: pipe");
		net_policy_set_free(&j->policies);
		free(j);
		sandbox_free(sb);
		return r;
	}
	j->agent_in = to[0];
	j->to_agent = to[1];
	j->from_agent = from[0];
	j->agent_out = from[1];
	sb->next = m->list;
	m->list = sb;
	sb->busy = true;
	sandbox_ref(sb); /* the job's */
	persist(sb);
	m->jobs++;
	r = uv_queue_work(m->d.loop, &j->req, create_work, create_done);
	if (r < 0) {
		/* Cannot happen with a live loop; fail cleanly anyway. */
		hutch_err_set(err, -r, "create sandbox: %s", uv_strerror(r));
		m->jobs--;
		close(to[0]), close(to[1]), close(from[0]), close(from[1]);
		list_remove(m, sb);
		hutch_err_t e2 = {0};
		store_delete(m->d.store, KIND, sb->id, &e2);
		sandbox_unref(sb);
		sandbox_unref(sb);
		net_policy_set_free(&j->policies);
		free(j);
		return -err->code;
	}
	return 0;
}

/* ---- stop ---- */

typedef struct stop_job {
	uv_work_t req;
	sandbox_t *sb;
	int64_t grace_ms;
	bool oom;
	bool was_running;
} stop_job_t;

static void stop_work(uv_work_t *req)
{
	stop_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	plugin_t *rt = sb->m->d.plugins->runtime;
	hutch_err_t e = {0};
	hutch_sandbox_status_t st = {.size = sizeof st};
	if (rt->ops.runtime.sandbox_status(rt->instance, sb->id, &st, &e) == 0) {
		j->oom = st.oom_killed;
		j->was_running = st.phase == HUTCH_PHASE_RUNNING;
	}
	if (rt->ops.runtime.sandbox_stop(rt->instance, sb->id, j->grace_ms, &e) < 0)
		log_warn("sandbox %s: %s: stop: %s", sb->id, rt->name, e.message);
	if (!j->oom && rt->ops.runtime.sandbox_status(rt->instance, sb->id, &st, &e) == 0)
		j->oom = st.oom_killed;
	if (rt->ops.runtime.sandbox_destroy(rt->instance, sb->id, &e) < 0)
		log_error("sandbox %s: %s: destroy: %s", sb->id, rt->name, e.message);
	plugin_t *idp = sb->m->d.plugins->identity;
	if (idp && idp->ops.identity.subject_revoke)
		idp->ops.identity.subject_revoke(idp->instance, sb->id);
	network_detach_all(sb);
	rundir_remove(sb->run_dir);
}

static void stop_done(uv_work_t *req, int status)
{
	stop_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	(void)status;
	sb->m->jobs--;
	sb->busy = false;
	sb->state = sb->stop_final;
	if (sb->m->images.release) /* images (issue 5): its layers may go */
		sb->m->images.release(sb->m->images.data, &sb->image);
	if (j->oom) {
		sb->oom_killed = true;
		if (sb->state == SANDBOX_FAILED ||
		    !sb->stop_reason) {
			char why[128];
			snprintf(why, sizeof why, "out of memory: killed at its %lld MiB limit",
				 (long long)(sb->spec->memory_bytes >> 20));
			sandbox_str_set(&sb->stop_reason, why);
			sb->state = SANDBOX_FAILED;
		}
	}
	if (!sb->stop_reason)
		sandbox_str_set(&sb->stop_reason, sb->state == SANDBOX_FAILED
						  ? "sandbox exited unexpectedly" : "stopped on request");
	sandbox_str_set(&sb->reason, sb->stop_reason);
	sb->stopped_ms = now_ms();
	persist(sb);
	if (sb->has_secrets) {
		sb->m->d.secrets.forget(sb->m->d.secrets.data, sb->id);
		sb->has_secrets = false;
	}
	metrics_add("sandboxes_stopped_total", NULL, 1);
	if (sb->delete_after_stop && !sb->forgotten) {
		hutch_err_t e2 = {0};
		store_delete(sb->m->d.store, KIND, sb->id, &e2);
		sb->forgotten = true;
		list_remove(sb->m, sb);
		timers_close(sb);
		sandbox_unref(sb); /* the list's */
	}
	log_info("sandbox %s %s (%s)", sb->id, sandbox_state_word(sb->state), sb->reason);
	waiters_fire(sb);
	sandbox_unref(sb);
	free(j);
}

static void stop_internal(sandbox_t *sb, int64_t grace_ms, sandbox_state_t final,
			  const char *reason, sandbox_done_cb cb, void *data)
{
	if (!sandbox_state_live(sb->state)) {
		if (cb)
			cb(data, sb, NULL);
		return;
	}
	if (cb) {
		waiter_t *w = xcalloc(1, sizeof *w);
		w->cb = cb;
		w->data = data;
		w->next = sb->stop_waiters;
		sb->stop_waiters = w;
	}
	if (sb->stop_requested && sb->state == SANDBOX_STOPPING)
		return; /* already on its way */
	if (!sb->stop_requested) {
		sb->stop_requested = true;
		sb->stop_final = final;
		sb->stop_grace_ms = grace_ms > 0 ? grace_ms : sb->m->d.cfg->sandbox.stop_grace_ms;
		sandbox_str_set(&sb->stop_reason, reason);
	}
	if (sb->busy)
		return; /* the create in flight runs the stop when done */
	sb->state = SANDBOX_STOPPING;
	persist(sb);
	if (sb->timers_init) {
		uv_timer_stop(&sb->life_timer);
		uv_timer_stop(&sb->idle_timer);
	}
	ports_stop(sb);
	if (sb->agent) {
		char why[300];
		snprintf(why, sizeof why, "sandbox %s is stopping%s%s%s", sb->id,
			 sb->stop_reason ? " (" : "", sb->stop_reason ? sb->stop_reason : "",
			 sb->stop_reason ? ")" : "");
		agent_conn_close(sb->agent, why);
	}
	stop_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->grace_ms = sb->stop_grace_ms;
	sb->busy = true;
	sandbox_ref(sb);
	sb->m->jobs++;
	if (uv_queue_work(sb->m->d.loop, &j->req, stop_work, stop_done) < 0) {
		sb->m->jobs--;
		sb->busy = false;
		sandbox_unref(sb);
		free(j);
	}
}

void sandbox_stop(sandbox_t *sb, int64_t grace_ms, sandbox_done_cb cb, void *data)
{
	stop_internal(sb, grace_ms, SANDBOX_STOPPED,
		      "stopped on request", cb, data);
}

void sandbox_await_end(sandbox_t *sb, sandbox_done_cb cb, void *data)
{
	/* As agent_closed ends it: whichever comes first, the sandbox's end
	 * keeps its own reason. */
	stop_internal(sb, 0, SANDBOX_FAILED, NULL, cb, data);
}

int sandbox_delete(sandbox_t *sb, hutch_err_t *err)
{
	if (sandbox_state_live(sb->state) || sb->busy)
		return hutch_err_set(err, EBUSY, "sandbox %s is %s: stop it first", sb->id,
				     sandbox_state_word(sb->state));
	hutch_err_t e2 = {0};
	store_delete(sb->m->d.store, KIND, sb->id, &e2);
	sb->forgotten = true;
	list_remove(sb->m, sb);
	timers_close(sb);
	sandbox_unref(sb);
	return 0;
}

/* ---- network policies of a running sandbox ---- */

typedef struct policy_job {
	uv_work_t req;
	sandbox_t *sb;
	net_policy_set_t set;
	bool use_default;
	char **names; /* what the spec will say */
	sandbox_done_cb cb;
	void *data;
	hutch_err_t err;
	int result;
} policy_job_t;

static void policy_work(uv_work_t *req)
{
	policy_job_t *j = req->data;
	plugin_set_t *ps = j->sb->m->d.plugins;
	j->result = 0;
	for (size_t i = 0; i < ps->n_network && j->result == 0; i++) {
		plugin_t *p = ps->network[i];
		if (!p->ops.network.policy_update)
			continue;
		j->result = p->ops.network.policy_update(p->instance, j->sb->id,
							 (const hutch_net_policy_t *const *)j->set.items,
							 j->set.n, !j->use_default, &j->err);
		if (j->result < 0)
			hutch_err_prefix(&j->err, "%s", p->name);
	}
}

static void policy_done(uv_work_t *req, int status)
{
	policy_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	(void)status;
	sb->m->jobs--;
	sb->busy = false;
	if (j->result == 0) {
		/* The spec records what is bound now. */
		sandbox_spec_t *s = sb->spec;
		for (size_t i = 0; i < s->n_network_policies; i++)
			free(s->network_policies[i]);
		free(s->network_policies);
		s->n_network_policies = strv_len(j->names);
		s->network_policies = s->n_network_policies ? j->names : NULL;
		if (!s->n_network_policies)
			strv_free(j->names);
		j->names = NULL;
		persist(sb);
		log_info("sandbox %s: network policies now %s", sb->id,
			 s->n_network_policies ? "as bound" : "the default");
	} else {
		hutch_err_prefix(&j->err, "update policies of sandbox %s", sb->id);
	}
	if (j->cb)
		j->cb(j->data, sb, j->result < 0 ? &j->err : NULL);
	strv_free(j->names);
	net_policy_set_free(&j->set);
	/* A stop asked for meanwhile waited for this to finish. */
	if (sb->stop_requested && sb->state == SANDBOX_RUNNING)
		stop_internal(sb, sb->stop_grace_ms, sb->stop_final, sb->stop_reason, NULL, NULL);
	sandbox_unref(sb);
	free(j);
}

int sandbox_update_policies(sandbox_t *sb, char *const *names, size_t n, bool use_default,
			    sandbox_done_cb cb, void *data, hutch_err_t *err)
{
	sandbox_mgr_t *m = sb->m;
	if (sb->state != SANDBOX_RUNNING || sb->stop_requested)
		return hutch_err_set(err, EBUSY, "sandbox %s is %s, not running", sb->id,
				     sb->stop_requested ? "stopping" : sandbox_state_word(sb->state));
	if (sb->busy)
		return hutch_err_set(err, EBUSY, "sandbox %s is changing its policies already; try again",
				     sb->id);
	if (m->d.plugins->n_network == 0)
		return hutch_err_set(err, ENOTSUP,
				     "network policies need a network plugin (none is configured in [plugins] network)");
	bool any = false;
	for (size_t i = 0; i < m->d.plugins->n_network; i++)
		any |= m->d.plugins->network[i]->ops.network.policy_update != NULL;
	if (!any)
		return hutch_err_set(err, ENOTSUP, "no network plugin can change the policies of a running sandbox");
	if (n == 0 && !use_default)
		return hutch_err_set(err, EINVAL, "name at least one policy, or ask for the default");
	policy_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->use_default = use_default && n == 0;
	j->cb = cb;
	j->data = data;
	int r = m->d.policies_load(m->d.policies_data, sb->tenant, names, n, &j->set, err);
	if (r < 0) {
		free(j);
		return r;
	}
	for (size_t i = 0; i < n; i++)
		strv_push(&j->names, xstrdup(names[i]));
	sandbox_ref(sb);
	sb->busy = true;
	m->jobs++;
	if (uv_queue_work(m->d.loop, &j->req, policy_work, policy_done) < 0) {
		m->jobs--;
		sb->busy = false;
		sandbox_unref(sb);
		strv_free(j->names);
		net_policy_set_free(&j->set);
		free(j);
		return hutch_err_set(err, EAGAIN, "cannot queue the update");
	}
	return 0;
}

static bool binds(const sandbox_t *sb, const char *tenant, const char *policy)
{
	if (strcmp(sb->tenant, tenant) != 0 || !sb->spec)
		return false;
	for (size_t i = 0; i < sb->spec->n_network_policies; i++)
		if (strcmp(sb->spec->network_policies[i], policy) == 0)
			return true;
	return false;
}

char **sandbox_mgr_policy_users(sandbox_mgr_t *m, const char *tenant, const char *policy)
{
	char **ids = NULL;
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state) && binds(sb, tenant, policy))
			strv_push(&ids, xstrdup(sb->id));
	return ids;
}

void sandbox_mgr_policy_changed(sandbox_mgr_t *m, const char *tenant, const char *policy)
{
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (sb->state != SANDBOX_RUNNING ||
		    !binds(sb, tenant, policy))
			continue;
		hutch_err_t err = {0};
		if (sandbox_update_policies(sb, sb->spec->network_policies,
					    sb->spec->n_network_policies, false, NULL, NULL, &err) < 0)
			log_error("sandbox %s: policy `%s` changed but could not be applied: %s", sb->id,
				  policy, err.message);
	}
}

/* ---- OOM checks ---- */

typedef struct oom_job {
	uv_work_t req;
	sandbox_t *sb;
	sandbox_oom_cb cb;
	void *data;
	int64_t kills;
} oom_job_t;

static void oom_work(uv_work_t *req)
{
	oom_job_t *j = req->data;
	plugin_t *rt = j->sb->m->d.plugins->runtime;
	hutch_sandbox_status_t st = {.size = sizeof st};
	hutch_err_t e = {0};
	j->kills = -1;
	if (rt->ops.runtime.sandbox_status(rt->instance, j->sb->id, &st, &e) == 0)
		j->kills = st.oom_kills >= 0 ? st.oom_kills : (st.oom_killed ? 1 : 0);
}

static void oom_done(uv_work_t *req, int status)
{
	oom_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	(void)status;
	bool fresh = j->kills > sb->oom_seen;
	if (fresh) {
		sb->oom_seen = j->kills;
		sb->oom_killed = true;
		persist(sb);
		metrics_add("sandbox_oom_kills_total", NULL, 1);
	}
	j->cb(j->data, fresh);
	sandbox_unref(sb);
	free(j);
}

void sandbox_check_oom(sandbox_t *sb, sandbox_oom_cb cb, void *data)
{
	oom_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->cb = cb;
	j->data = data;
	sandbox_ref(sb);
	if (uv_queue_work(sb->m->d.loop, &j->req, oom_work, oom_done) < 0) {
		cb(data, false);
		sandbox_unref(sb);
		free(j);
	}
}

/* ---- manager ---- */

/* ---- identity: token file renewal ---- */

typedef struct renew_job {
	uv_work_t req;
	sandbox_t *sb;
	int64_t expires;
	hutch_err_t err;
	int result;
} renew_job_t;

static void renew_work(uv_work_t *req)
{
	renew_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sandbox_who_t who;
	sandbox_who(sb, &who);
	j->result = identity_write_file(sb->m->d.plugins->identity, sb->identity_dir, &who,
					sb->spec->identity_audience, &j->expires, &j->err);
}

static void renew_done(uv_work_t *req, int status)
{
	renew_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sb->m->jobs--;
	sb->identity_renewing = false;
	if (status == 0 && j->result == 0) {
		sb->identity_expires = j->expires;
		sb->identity_renew_ms = identity_renew_at_ms(now_ms(), j->expires);
		metrics_add("identity_token_renewals_total", NULL, 1);
	} else {
		/* Try again soon; the old token stays until it expires. */
		sb->identity_renew_ms = now_ms() + 5000;
		if (sb->state == SANDBOX_RUNNING)
			log_warn("sandbox %s: identity token not renewed: %s", sb->id,
				 status ? uv_strerror(status) : j->err.message);
	}
	sandbox_unref(sb);
	free(j);
}

static void identity_tick(uv_timer_t *t)
{
	sandbox_mgr_t *m = t->data;
	int64_t now = now_ms();
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (sb->state != SANDBOX_RUNNING || sb->busy ||
		    !sb->identity_dir || !sb->identity_expires || sb->identity_renewing ||
		    now < sb->identity_renew_ms)
			continue;
		renew_job_t *j = xcalloc(1, sizeof *j);
		j->req.data = j;
		j->sb = sb;
		sandbox_ref(sb);
		sb->identity_renewing = true;
		m->jobs++;
		if (uv_queue_work(m->d.loop, &j->req, renew_work, renew_done) < 0) {
			m->jobs--;
			sb->identity_renewing = false;
			sandbox_unref(sb);
			free(j);
		}
	}
}

int sandbox_mgr_new(const sandbox_mgr_deps_t *deps, sandbox_mgr_t **out, hutch_err_t *err)
{
	sandbox_mgr_t *m = xcalloc(1, sizeof *m);
	m->d = *deps;
	m->run_root = xasprintf("%s/sandboxes", deps->cfg->daemon.run_dir);
	int r = mkdir_p(m->run_root, 0700, err);
	if (r < 0) {
		free(m->run_root);
		free(m);
		return r;
	}
	if (access(deps->agent_path, X_OK) < 0) {
		r = hutch_err_sys(err, errno, "sandbox agent %s", deps->agent_path);
		free(m->run_root);
		free(m);
		return r;
	}
	if (deps->plugins->identity) {
		uv_timer_init(deps->loop, &m->identity_timer);
		m->identity_timer.data = m;
		uv_timer_start(&m->identity_timer, identity_tick, 1000, 1000);
		m->identity_timer_on = true;
	}
	*out = m;
	return 0;
}

void sandbox_mgr_close(sandbox_mgr_t *m)
{
	m->closing = true;
	if (m->identity_timer_on) {
		uv_timer_stop(&m->identity_timer);
		uv_close((uv_handle_t *)&m->identity_timer, NULL);
		m->identity_timer_on = false;
	}
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (sb->agent)
			agent_conn_close(sb->agent, "hutchd is shutting down");
		ports_stop(sb);
		timers_close(sb);
	}
}

void sandbox_mgr_free(sandbox_mgr_t *m)
{
	if (!m)
		return;
	while (m->list) {
		sandbox_t *sb = m->list;
		m->list = sb->next;
		sandbox_unref(sb);
	}
	free(m->run_root);
	free(m);
}

/* ---- recovery ---- */

typedef struct found {
	char **ids;
	hutch_sandbox_phase_t *phases;
	size_t n;
} found_t;

static void on_found(void *data, const char *id, const hutch_sandbox_status_t *st)
{
	found_t *f = data;
	f->ids = xrealloc(f->ids, (f->n + 1) * sizeof *f->ids);
	f->phases = xrealloc(f->phases, (f->n + 1) * sizeof *f->phases);
	f->ids[f->n] = xstrdup(id);
	f->phases[f->n] = st ? st->phase : HUTCH_PHASE_UNKNOWN;
	f->n++;
}

static int load_record(void *ud, const store_obj_t *o)
{
	sandbox_mgr_t *m = ud;
	sandbox_record_t rec;
	hutch_err_t derr = {0};
	if (m->d.codec->decode((const uint8_t *)o->data, o->len, &rec, &derr) < 0) {
		log_error("sandbox record %s is unreadable (%s); ignoring it", o->id, derr.message);
		return 0;
	}
	sandbox_t *sb = xcalloc(1, sizeof *sb);
	sb->m = m;
	sb->refs = 1;
	snprintf(sb->id, sizeof sb->id, "%s", rec.id);
	sb->tenant = steal_ptr(&rec.tenant);
	sb->name = rec.name && *rec.name ? steal_ptr(&rec.name) : NULL;
	sb->state = rec.state;
	sb->reason = rec.reason && *rec.reason ? steal_ptr(&rec.reason) : NULL;
	sb->created_ms = rec.created_ms;
	sb->started_ms = rec.started_ms;
	sb->stopped_ms = rec.stopped_ms;
	sb->expires_ms = rec.expires_ms;
	sb->oom_killed = rec.oom_killed;
	snprintf(sb->image.digest, sizeof sb->image.digest, "%s",
		 rec.image_digest ? rec.image_digest : "");
	sb->spec = rec.spec ? steal_ptr(&rec.spec) : xcalloc(1, sizeof *sb->spec);
	sb->addresses = steal_ptr(&rec.addresses);
	sandbox_record_release(&rec);
	char **secret_env = NULL;
	hutch_err_t serr = {0};
	if (sandbox_state_live(sb->state) &&
	    m->d.secrets.load(m->d.secrets.data, sb->id, &secret_env, &serr) < 0)
		log_error("sandbox %s: its secrets cannot be restored: %s", sb->id, serr.message);
	sb->has_secrets = secret_env != NULL;
	sb->env = build_env(sb->spec, sb->id, secret_env, m->d.plugins->identity != NULL);
	if (m->d.plugins->identity && sandbox_state_live(sb->state)) {
		/* Its token file is renewed at once: hutchd may have been down
		 * past its renewal time. */
		sb->identity_dir = xasprintf("%s/%s/identity", m->run_root, sb->id);
		sb->identity_expires = 1;
		sb->identity_renew_ms = 0;
	}
	env_free(secret_env);
	sb->run_dir = xasprintf("%s/%s", m->run_root, sb->id);
	sb->next = m->list;
	m->list = sb;
	return 0;
}

/* Starts a new agent session in a running sandbox via the runtime's exec. */
static int reattach(sandbox_t *sb, hutch_err_t *err)
{
	plugin_t *rt = sb->m->d.plugins->runtime;
	const char *argv[] = {AGENT_IN_SANDBOX, "session", NULL};
	hutch_exec_spec_t es = {.size = sizeof es, .argv = argv};
	hutch_command_t cmd = {.size = sizeof cmd, .netns_fd = -1};
	int r = rt->ops.runtime.exec_command(rt->instance, sb->id, &es, &cmd, err);
	if (r < 0)
		return hutch_err_prefix(err, "%s", rt->name);
	int to[2] = {-1, -1}, from[2] = {-1, -1};
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		r = hutch_err_sys(err, errno, "pipe");
		goto out;
	}
	const hutch_host_t *h = host_ctx_table(sb->m->d.host);
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = (const char *const *)cmd.argv,
		.stdin_fd = to[0],
		.stdout_fd = from[1],
		.stderr_fd = -1,
		.netns_fd = cmd.netns_fd,
	};
	r = h->spawn(h, &o, NULL, NULL, NULL, err);
	close(to[0]);
	close(from[1]);
	to[0] = from[1] = -1;
	if (r < 0)
		goto out;
	r = agent_attach(sb, to[1], from[0], err);
	if (r == 0)
		to[1] = from[0] = -1;
out:
	for (int i = 0; i < 2; i++) {
		if (to[i] >= 0)
			close(to[i]);
		if (from[i] >= 0)
			close(from[i]);
	}
	if (cmd.netns_fd >= 0)
		close(cmd.netns_fd);
	strv_free(cmd.argv);
	return r;
}

static void cleanup_leftover(sandbox_mgr_t *m, const char *id)
{
	plugin_t *rt = m->d.plugins->runtime;
	hutch_err_t e = {0};
	rt->ops.runtime.sandbox_stop(rt->instance, id, 0, &e);
	if (rt->ops.runtime.sandbox_destroy(rt->instance, id, &e) < 0)
		log_error("leftover sandbox %s: destroy: %s", id, e.message);
	for (size_t i = m->d.plugins->n_network; i-- > 0;) {
		plugin_t *p = m->d.plugins->network[i];
		p->ops.network.detach(p->instance, id, &e);
	}
	_cleanup_free_ char *dir = xasprintf("%s/%s", m->run_root, id);
	rundir_remove(dir);
}

int sandbox_mgr_recover(sandbox_mgr_t *m, hutch_err_t *err)
{
	int r = store_list(m->d.store, KIND, NULL, load_record, m, err);
	if (r < 0)
		return r;
	plugin_t *rt = m->d.plugins->runtime;
	found_t f = {0};
	r = rt->ops.runtime.sandbox_list(rt->instance, on_found, &f, err);
	if (r < 0)
		return hutch_err_prefix(err, "recover: %s: list", rt->name);
	bool cleanup = strcmp(m->d.cfg->sandbox.on_restart, "cleanup") == 0;
	int recovered = 0, lost = 0, orphans = 0;

	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (!sandbox_state_live(sb->state))
			continue;
		hutch_sandbox_status_t st = {.size = sizeof st};
		hutch_err_t e = {0};
		bool running = rt->ops.runtime.sandbox_status(rt->instance, sb->id, &st, &e) == 0 &&
			       st.phase == HUTCH_PHASE_RUNNING;
		if (running && !cleanup && sb->state == SANDBOX_RUNNING &&
		    reattach(sb, &e) == 0) {
			snprintf(sb->netns_path, sizeof sb->netns_path, "%s", st.netns_path);
			if (ports_start(sb, &e) < 0)
				log_warn("sandbox %s: ports not restored: %s", sb->id, e.message);
			timers_start(sb);
			recovered++;
			continue;
		}
		if (running && !cleanup)
			log_warn("sandbox %s: cannot reconnect (%s); stopping it", sb->id, e.message);
		cleanup_leftover(m, sb->id);
		sb->state = cleanup ? SANDBOX_STOPPED
				    : SANDBOX_FAILED;
		sandbox_str_set(&sb->reason, cleanup ? "stopped at daemon restart (on_restart = cleanup)"
				     : running ? "could not be reconnected after a daemon restart"
					       : "lost while hutchd was down");
		sb->oom_killed = st.oom_killed;
		sb->stopped_ms = now_ms();
		persist(sb);
		lost++;
	}
	/* Runtime state nobody owns: a crash between create and record. */
	for (size_t i = 0; i < f.n; i++) {
		sandbox_t *sb = sandbox_find(m, NULL, f.ids[i]);
		if (!sb || !sandbox_state_live(sb->state)) {
			log_warn("removing leftover sandbox %s", f.ids[i]);
			cleanup_leftover(m, f.ids[i]);
			orphans++;
		}
		free(f.ids[i]);
	}
	free(f.ids);
	free(f.phases);
	/* Network leftovers of sandboxes that are gone. */
	char **live = NULL;
	for (sandbox_t *sb = m->list; sb; sb = sb->next)
		if (sandbox_state_live(sb->state))
			strv_push(&live, xstrdup(sb->id));
	for (size_t i = 0; i < m->d.plugins->n_network; i++) {
		plugin_t *p = m->d.plugins->network[i];
		hutch_err_t e = {0};
		if (p->ops.network.gc && p->ops.network.gc(p->instance, (const char *const *)live,
							  strv_len(live), &e) < 0)
			log_warn("%s: gc: %s", p->name, e.message);
	}
	strv_free(live);
	if (recovered || lost || orphans)
		log_info("recovery: %d sandboxes reconnected, %d lost or cleaned up, %d leftovers removed",
			 recovered, lost, orphans);
	return 0;
}
