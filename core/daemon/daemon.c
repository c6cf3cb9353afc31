#include "daemon.h"

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "cleanup.h"
#include "config_bind.h"
#include "log.h"
#include "net_policy.h"
#include "sandbox_mgr.h"
#include "sandbox_pb.h"
#include "sandbox_secrets.h"
#include "image_config.h"
#include "image_service.h"
#include "group_pb.h"
#include "router.h"
#include "secret_store.h"
#include "strbuf.h"

#ifndef HUTCH_VERSION
#define HUTCH_VERSION "0.0.0"
#endif

/* ---- capabilities ---- */

static void caps_emit(void *data, const char *key, const char *value)
{
	plugin_caps_t *c = data;
	if (!key || !value)
		return;
	c->keys = xrealloc(c->keys, (c->n + 1) * sizeof *c->keys);
	c->values = xrealloc(c->values, (c->n + 1) * sizeof *c->values);
	c->keys[c->n] = xstrdup(key);
	c->values[c->n] = xstrdup(value);
	c->n++;
}

static void caps_collect(const plugin_t *p, plugin_caps_t *c)
{
	void (*fn)(void *, hutch_kv_cb, void *) = NULL;
	switch (p->desc.kind) {
	case HUTCH_PLUGIN_RUNTIME: fn = p->ops.runtime.capabilities; break;
	case HUTCH_PLUGIN_NETWORK: fn = p->ops.network.capabilities; break;
	case HUTCH_PLUGIN_STORAGE: fn = p->ops.storage.capabilities; break;
	case HUTCH_PLUGIN_IDENTITY: fn = p->ops.identity.capabilities; break;
	case HUTCH_PLUGIN_ACCELERATOR: fn = p->ops.accelerator.capabilities; break;
	}
	if (fn)
		fn(p->instance, caps_emit, c);
}

static void caps_free(plugin_caps_t *c, size_t n)
{
	for (size_t i = 0; c && i < n; i++) {
		for (size_t k = 0; k < c[i].n; k++) {
			free(c[i].keys[k]);
			free(c[i].values[k]);
		}
		free(c[i].keys);
		free(c[i].values);
	}
	free(c);
}

/* ---- the state and run dir locks ---- */

/* One hutchd per directory: a second one would take over the first's
 * sandboxes (state dir) or clear its sockets and sandbox run dirs at boot
 * (run dir). The lock is an flock on <dir>/hutchd.lock holding the owner's
 * pid, released by the kernel when the process dies. key names the setting
 * that gives a second daemon a directory of its own. */
static int dir_lock(const char *dir, const char *what, const char *key, int *out,
		    hutch_err_t *err)
{
	_cleanup_free_ char *path = xasprintf("%s/hutchd.lock", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "open %s", path);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		char pid[32] = "";
		ssize_t n = pread(fd, pid, sizeof pid - 1, 0);
		if (n > 0)
			pid[n] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		close(fd);
		if (e == EWOULDBLOCK)
			return hutch_err_set(err, EBUSY,
					     "another hutchd (pid %s) is using %s %s; give this one "
					     "its own with %s",
					     pid[0] ? pid : "?", what, dir, key);
		return hutch_err_sys(err, e, "lock %s", path);
	}
	char buf[32];
	int len = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)len, 0) < 0) {
		/* The pid is only informative. */
	}
	*out = fd;
	return 0;
}

static int dirs_lock(daemon_t *d, hutch_err_t *err)
{
	const daemon_section_t *ds = &d->cfg.daemon;
	int r = dir_lock(ds->state_dir, "state dir", "[daemon] state_dir (--state-dir)",
			 &d->lock_fd, err);
	if (r < 0)
		return r;
	return dir_lock(ds->run_dir, "run dir", "[daemon] run_dir (--run-dir)", &d->run_lock_fd,
			err);
}

/* ---- signals and shutdown ---- */

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void grpc_down(void *data)
{
	daemon_t *d = data;
	d->grpc = NULL;
	if (d->sandboxes)
		sandbox_mgr_close(d->sandboxes);
	/* The loop stops here; plugins are finalised after uv_run returns
	 * (they may still stop their timers and children then), and whatever
	 * remains open is closed last. */
	uv_stop(&d->loop);
}

static void router_closed(void *data)
{
	daemon_t *d = data;
	d->router = NULL;
}

/* Scaling groups (their stored specs, live replicas adopted) and the
 * router in front of them and of containers' ports. */
static int services_start(daemon_t *d, hutch_err_t *err)
{
	group_mgr_deps_t deps = {
		.loop = &d->loop,
		.sandboxes = d->sandboxes,
		.store = d->store,
		.cfg = &d->cfg.router,
		.codec = &group_pb_codec,
		.max_lifetime_ms = d->cfg.sandbox.max_lifetime_ms,
	};
	int r = group_mgr_new(&deps, &d->groups, err);
	if (r < 0)
		return r;
	return router_new(&d->loop, &d->cfg.router, d->groups, d->sandboxes, &d->router, err);
}

/* The router stops taking requests and held ones are answered; the
 * groups' replicas keep running like every sandbox. */
static void services_stop(daemon_t *d)
{
	group_mgr_close(d->groups);
	if (d->router)
		router_close(d->router, router_closed, d);
}

static void daemon_stop(daemon_t *d, const char *why)
{
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("shutting down (%s)", why);
	http_api_stop(d);
	services_stop(d);
	if (d->grpc)
		grpc_server_shutdown(d->grpc, grpc_down, d);
	else
		grpc_down(d);
}

static void reload(daemon_t *d)
{
	if (!d->opts.config_file) {
		log_info("SIGHUP: no config file to reload");
		return;
	}
	daemon_config_t fresh;
	hutch_err_t err = {0};
	if (daemon_config_load(d->opts.config_file, &fresh, &err) < 0) {
		log_error("SIGHUP: config not reloaded: %s", err.message);
		return;
	}
	hutch_log_level_t lvl;
	if (!d->opts.log_level && log_parse_level(fresh.daemon.log_level, &lvl) == 0 &&
	    lvl != log_get_level()) {
		log_format_t fmt;
		log_parse_format(d->cfg.daemon.log_format, &fmt);
		log_setup(lvl, fmt, 2);
		log_info("SIGHUP: log level now %s", fresh.daemon.log_level);
	}
	for (size_t i = 0; i < d->plugins.n; i++) {
		plugin_t *p = d->plugins.all[i];
		if (!p->desc.config_size)
			continue;
		if (!p->desc.reload) {
			log_warn("SIGHUP: %s cannot reload its config: changes to [plugin.%s] "
				 "take effect when hutchd restarts", p->name, p->name);
			continue;
		}
		void *cfg = xcalloc(1, p->desc.config_size);
		_cleanup_free_ char *section = xasprintf("plugin.%s", p->name);
		if (config_bind(p->desc.config, daemon_config_plugin_table(&fresh, p->name),
				fresh.file, section, cfg, &err) < 0) {
			log_error("SIGHUP: %s not reloaded: %s", p->name, err.message);
			free(cfg);
			continue;
		}
		if (p->desc.reload(p->instance, cfg, &err) < 0) {
			log_error("SIGHUP: %s refused the new config: %s", p->name, err.message);
			config_release(p->desc.config, cfg);
			free(cfg);
			continue;
		}
		config_release(p->desc.config, p->config);
		free(p->config);
		p->config = cfg;
		log_info("SIGHUP: %s reloaded", p->name);
	}
	daemon_config_free(&fresh);
}

static void on_signal(uv_signal_t *h, int signum)
{
	daemon_t *d = h->data;
	if (signum == SIGHUP)
		reload(d);
	else
		daemon_stop(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void grpc_log(void *data, int level, const char *msg)
{
	(void)data;
	hutch_log_level_t l = level <= LOG_ERR ? HUTCH_LOG_ERROR
			      : level <= LOG_WARNING ? HUTCH_LOG_WARN
			      : level <= LOG_INFO ? HUTCH_LOG_INFO : HUTCH_LOG_DEBUG;
	log_write(l, "grpc", "%s", msg);
}

/* ---- listeners ---- */

int daemon_split_host_port(const char *s, char *host, size_t cap, int *port)
{
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s)
		return -EINVAL;
	const char *h = s;
	size_t hl = (size_t)(colon - s);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= cap)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (*end || p < 0 || p > 65535)
		return -EINVAL;
	*port = (int)p;
	return 0;
}

static bool is_loopback(const char *host)
{
	return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
	       strcmp(host, "::1") == 0;
}

static int listen_all(daemon_t *d, hutch_err_t *err)
{
	const daemon_config_t *c = &d->cfg;
	grpc_server_opts_t o = {
		.max_recv_message = (size_t)c->api.max_message_bytes,
		.authorize = api_authorize,
		.authorize_data = d,
		.auth_release = api_auth_release,
		.log = grpc_log,
	};
	int r = grpc_server_new(&d->loop, &o, &d->grpc, err);
	if (r < 0)
		return r;
	if ((r = api_services_register(d, err)) < 0)
		return r;
	if (c->api.tcp_listen) {
		char host[256];
		int port;
		if (daemon_split_host_port(c->api.tcp_listen, host, sizeof host, &port) < 0)
			return hutch_err_set(err, EINVAL, "[api] tcp_listen `%s`: expected host:port",
					     c->api.tcp_listen);
		if (!c->api.tls_cert && !(c->api.allow_plaintext_tcp && is_loopback(host)))
			return hutch_err_set(err, EINVAL,
					     "[api] tcp_listen %s needs tls_cert and tls_key (plaintext is only allowed on loopback with allow_plaintext_tcp = true)",
					     c->api.tcp_listen);
		if (c->n_keys == 0)
			log_warn("[api] tcp_listen is set but no [[api.key]] is configured: every TCP call will be refused");
		r = grpc_server_listen_tcp(d->grpc, host, port, c->api.tls_cert, c->api.tls_key, err);
		if (r < 0)
			return hutch_err_prefix(err, "listen on %s", c->api.tcp_listen);
		log_info("API on tcp:%s:%d (%s)", host, grpc_server_bound_port(d->grpc),
			 c->api.tls_cert ? "TLS" : "plaintext h2c");
	}
	/* The unix socket last: once it accepts, every listener does (clients
	 * and tests take it as the sign that hutchd is ready). */
	if ((r = http_api_start(d, err)) < 0)
		return r;
	_cleanup_free_ char *sock_dir = xstrdup(c->daemon.socket);
	char *slash = strrchr(sock_dir, '/');
	if (slash && slash != sock_dir) {
		*slash = '\0';
		if ((r = mkdir_p(sock_dir, 0755, err)) < 0)
			return r;
	}
	r = grpc_server_listen_unix(d->grpc, c->daemon.socket, (mode_t)c->daemon.socket_mode, err);
	if (r < 0)
		return hutch_err_prefix(err, "listen on %s", c->daemon.socket);
	log_info("API on unix:%s", c->daemon.socket);
	return 0;
}

/* hutch-agent sits beside hutchd in a build tree, or in libexec when
 * installed. */
static char *agent_path_default(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			char *p = xasprintf("%s/hutch-agent", exe);
			if (access(p, X_OK) == 0)
				return p;
			free(p);
			p = xasprintf("%s/../libexec/hutch/hutch-agent", exe);
			char real[PATH_MAX];
			if (realpath(p, real) && access(real, X_OK) == 0) {
				free(p);
				return xstrdup(real);
			}
			free(p);
		}
	}
	return xstrdup(HUTCH_AGENT_INSTALL_PATH);
}

/* ---- setup shared by run / check ---- */

static int config_with_overrides(daemon_t *d, const daemon_opts_t *opts, hutch_err_t *err)
{
	int r = daemon_config_load(opts->config_file, &d->cfg, err);
	if (r < 0)
		return r;
	daemon_section_t *ds = &d->cfg.daemon;
	if (opts->state_dir) {
		free(ds->state_dir);
		ds->state_dir = xstrdup(opts->state_dir);
		if (!d->cfg.audit_log_set) {
			free(ds->audit_log);
			ds->audit_log = xasprintf("%s/audit.jsonl", ds->state_dir);
		}
	}
	if (opts->run_dir) {
		free(ds->run_dir);
		ds->run_dir = xstrdup(opts->run_dir);
		if (!d->cfg.socket_set) {
			free(ds->socket);
			ds->socket = xasprintf("%s/hutchd.sock", ds->run_dir);
		}
	}
	if (opts->socket) {
		free(ds->socket);
		ds->socket = xstrdup(opts->socket);
	}
	if (opts->log_format) {
		free(ds->log_format);
		ds->log_format = xstrdup(opts->log_format);
	}
	if (opts->log_level) {
		free(ds->log_level);
		ds->log_level = xstrdup(opts->log_level);
	}
	hutch_log_level_t lvl;
	log_format_t fmt;
	if (log_parse_level(ds->log_level, &lvl) < 0)
		return hutch_err_set(err, EINVAL, "log level `%s`: use error, warn, info or debug",
				     ds->log_level);
	if (log_parse_format(ds->log_format, &fmt) < 0)
		return hutch_err_set(err, EINVAL, "log format `%s`: use text or json", ds->log_format);
	log_setup(lvl, fmt, 2);
	d->plugin_dir = opts->plugin_dir ? xstrdup(opts->plugin_dir)
		      : d->cfg.daemon.plugin_dir ? xstrdup(d->cfg.daemon.plugin_dir)
		      : plugin_dir_default();
	return 0;
}

/* Names the key to change when a plugin hutchd loads by default could not
 * start. Plugins start in order: the first one not started failed. */
static int plugin_start_hint(const daemon_t *d, hutch_err_t *err)
{
	for (size_t i = 0; i < d->plugins.n; i++) {
		const plugin_t *p = d->plugins.all[i];
		if (!p->started)
			return daemon_config_hint(&d->cfg, plugin_kind_name(p->desc.kind), p->name, err);
	}
	return -err->code;
}

static void daemon_free(daemon_t *d)
{
	group_mgr_free(d->groups);
	d->groups = NULL;
	sandbox_mgr_free(d->sandboxes);
	d->sandboxes = NULL;
	/* After the sandboxes: they let go of their images' pins. */
	image_service_free(d->images);
	d->images = NULL;
	secrets_free(d->secrets);
	d->secrets = NULL;
	caps_free(d->caps, d->plugins.n);
	d->caps = NULL;
	plugin_set_close(&d->plugins);
	host_ctx_free(d->core_host);
	if (d->host_core)
		host_core_free(d->host_core);
	store_close(d->store);
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	if (d->run_lock_fd >= 0)
		close(d->run_lock_fd);
	daemon_config_free(&d->cfg);
	free(d->plugin_dir);
}

int daemon_run(const daemon_opts_t *opts, hutch_err_t *err)
{
	daemon_t d = {.opts = *opts, .lock_fd = -1, .run_lock_fd = -1};
	bool loop_ready = false;
	/* Declared before any goto: their cleanup runs at out. */
	_cleanup_free_ char *db = NULL;
	_cleanup_free_ char *agent = NULL;
	_cleanup_free_ char *key_file = NULL;
	int r = config_with_overrides(&d, opts, err);
	if (r < 0)
		goto out;
	const daemon_section_t *ds = &d.cfg.daemon;
	if ((r = mkdir_p(ds->state_dir, 0700, err)) < 0 ||
	    (r = mkdir_p(ds->run_dir, 0755, err)) < 0)
		goto out;
	if ((r = dirs_lock(&d, err)) < 0)
		goto out;
	db = xasprintf("%s/hutch.db", ds->state_dir);
	if ((r = store_open(db, &d.store, err)) < 0)
		goto out;

	/* Plugins are opened and bound before the loop exists, on this
	 * (the main) thread, as libltdl wants. */
	if ((r = plugin_set_load(&d.plugins, &d.cfg, d.plugin_dir, err)) < 0)
		goto out;

	if ((r = uv_loop_init(&d.loop)) < 0) {
		r = hutch_err_set(err, -r, "uv_loop_init: %s", uv_strerror(r));
		goto out;
	}
	loop_ready = true;
	signal(SIGPIPE, SIG_IGN);
	if ((r = host_core_new(&d.loop, ds->audit_log, &d.host_core, err)) < 0 ||
	    (r = host_ctx_new(d.host_core, "core", "core", NULL, NULL, &d.core_host, err)) < 0)
		goto out;
	if ((r = plugin_set_start(&d.plugins, d.host_core, ds->state_dir, ds->run_dir, err)) < 0) {
		r = plugin_start_hint(&d, err);
		goto out;
	}
	d.caps = xcalloc(d.plugins.n ? d.plugins.n : 1, sizeof *d.caps);
	for (size_t i = 0; i < d.plugins.n; i++)
		caps_collect(d.plugins.all[i], &d.caps[i]);

	agent = agent_path_default();
	key_file = d.cfg.secrets.key_file ? xstrdup(d.cfg.secrets.key_file)
					  : xasprintf("%s/keys/secrets.key", ds->state_dir);
	if ((r = secrets_new(d.store, key_file, &d.cfg, &d.secrets, err)) < 0)
		goto out;
	sandbox_mgr_deps_t deps = {
		.loop = &d.loop,
		.store = d.store,
		.plugins = &d.plugins,
		.cfg = &d.cfg,
		.host = d.core_host,
		.agent_path = agent,
		.codec = &sandbox_pb_codec,
		.secrets = sandbox_secret_source(d.secrets),
		.policies_load = net_policy_set_load,
		.policies_data = d.store,
		.metadata = d.plugins.identity ? http_api_metadata : NULL,
		.metadata_data = &d,
	};
	if ((r = sandbox_mgr_new(&deps, &d.sandboxes, err)) < 0 ||
	    (r = sandbox_mgr_recover(d.sandboxes, err)) < 0)
		goto out;
	image_service_deps_t ideps = {
		.loop = &d.loop,
		.store = d.store,
		.plugins = &d.plugins,
		.cfg = &d.cfg,
		.sandboxes = d.sandboxes,
	};
	if ((r = image_service_new(&ideps, &d.images, err)) < 0 || (r = services_start(&d, err)) < 0)
		goto out;
	if ((r = listen_all(&d, err)) < 0)
		goto out;

	uv_signal_init(&d.loop, &d.sig_term);
	uv_signal_init(&d.loop, &d.sig_int);
	uv_signal_init(&d.loop, &d.sig_hup);
	d.sig_term.data = d.sig_int.data = d.sig_hup.data = &d;
	uv_signal_start(&d.sig_term, on_signal, SIGTERM);
	uv_signal_start(&d.sig_int, on_signal, SIGINT);
	uv_signal_start(&d.sig_hup, on_signal, SIGHUP);

	d.started_unix = (int64_t)time(NULL);
	log_info("hutchd %s ready (pid %d, state %s, %zu plugins)", HUTCH_VERSION,
		 (int)getpid(), ds->state_dir, d.plugins.n);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	log_info("stopped");
	r = 0;
out:
	if (r < 0 && d.grpc) {
		/* Started listening, then failed: let the server close. */
		daemon_stop(&d, "startup failed");
		uv_run(&d.loop, UV_RUN_DEFAULT);
	}
	if (loop_ready) {
		/* Plugin ops still running on the pool finish first. */
		http_api_stop(&d);
		while ((d.sandboxes && sandbox_mgr_jobs(d.sandboxes) > 0) || d.http_jobs > 0)
			uv_run(&d.loop, UV_RUN_ONCE);
		if (!d.stopping) {
			services_stop(&d);
			if (d.sandboxes)
				sandbox_mgr_close(d.sandboxes);
		}
		/* Plugins are finalised with the loop stopped but still open, so
		 * fini() can stop its timers; then everything left is closed. */
		caps_free(d.caps, d.plugins.n);
		d.caps = NULL;
		if (d.host_core) /* children left running: their owners hear it first */
			host_core_detach_children(d.host_core);
		plugin_set_close(&d.plugins);
		if (d.host_core)
			host_core_close(d.host_core);
		uv_walk(&d.loop, close_walk_cb, NULL);
		uv_run(&d.loop, UV_RUN_DEFAULT);
		uv_loop_close(&d.loop);
	}
	daemon_free(&d);
	return r;
}

int daemon_check_config(const char *file, const char *plugin_dir, FILE *out,
			hutch_err_t *err)
{
	daemon_t d = {.lock_fd = -1, .run_lock_fd = -1};
	daemon_opts_t o = {.config_file = file, .plugin_dir = plugin_dir};
	int r = config_with_overrides(&d, &o, err);
	if (r == 0)
		r = plugin_set_load(&d.plugins, &d.cfg, d.plugin_dir, err);
	if (r == 0) {
		image_config_t ic;
		if ((r = image_config_load(&d.cfg, &ic, err)) == 0)
			image_config_free(&ic);
	}
	if (r == 0) {
		fprintf(out, "%s: ok\n", file ? file : "(built-in defaults)");
		for (size_t i = 0; i < d.plugins.n; i++) {
			const plugin_t *p = d.plugins.all[i];
			fprintf(out, "  %-12s %-20s %s\n", plugin_kind_name(p->desc.kind), p->name,
				p->path);
		}
	}
	daemon_free(&d);
	return r;
}

int daemon_describe(const char *name, const char *plugin_dir, FILE *out,
		    hutch_err_t *err)
{
	if (strcmp(name, "daemon") == 0 || strcmp(name, "hutchd") == 0) {
		fprintf(out, "hutchd %s: options of hutchd.toml\n\n", HUTCH_VERSION);
		daemon_config_describe(out);
		image_config_describe(out);
		return 0;
	}
	_cleanup_free_ char *dir = plugin_dir ? xstrdup(plugin_dir) : plugin_dir_default();
	_cleanup_free_ char *path = NULL;
	int r = plugin_resolve(name, dir, &path, err);
	if (r < 0)
		return r;
	plugin_t *p;
	if ((r = plugin_open(path, &p, err)) < 0)
		return r;
	fprintf(out, "%s %s (%s plugin, ABI %u.%u)\n  %s\n  file: %s\n\n[plugin.%s]\n",
		p->name, p->desc.version ? p->desc.version : "?", plugin_kind_name(p->desc.kind),
		p->desc.abi_major, p->desc.abi_minor,
		p->desc.description ? p->desc.description : "", p->path, p->name);
	config_describe(p->desc.config, out);
	plugin_close(p);
	return 0;
}
