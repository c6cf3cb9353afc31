#include "daemon_config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "config_bind.h"
#include "strbuf.h"

#ifndef HUTCH_DEFAULT_STATE_DIR
#define HUTCH_DEFAULT_STATE_DIR "/var/lib/hutch"
#endif
#ifndef HUTCH_DEFAULT_RUN_DIR
#define HUTCH_DEFAULT_RUN_DIR "/run/hutch"
#endif

#define Q(s) "\"" s "\""

static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const restart_modes[] = {"recover", "cleanup", NULL};

#define D(f) offsetof(daemon_section_t, f)
static const hutch_config_field_t daemon_fields[] = {
	{HUTCH_CONFIG_PATH, "state_dir", Q(HUTCH_DEFAULT_STATE_DIR), D(state_dir),
	 "Persistent state: metadata database, plugin state, images", 0, NULL},
	{HUTCH_CONFIG_PATH, "run_dir", Q(HUTCH_DEFAULT_RUN_DIR), D(run_dir),
	 "Runtime state cleared at boot (sockets, sandbox bundles)", 0, NULL},
	{HUTCH_CONFIG_PATH, "socket", NULL, D(socket),
	 "API unix socket (default: <run_dir>/hutchd.sock)", 0, NULL},
	{HUTCH_CONFIG_PATH, "plugin_dir", NULL, D(plugin_dir),
	 "Where plugins named without a path are found (default: beside hutchd)", 0, NULL},
	{HUTCH_CONFIG_ENUM, "log_level", Q("info"), D(log_level),
	 "Least severe level logged", HUTCH_CONFIG_RELOAD, log_levels},
	{HUTCH_CONFIG_ENUM, "log_format", Q("text"), D(log_format),
	 "Log lines as text or JSON", 0, log_formats},
	{HUTCH_CONFIG_PATH, "audit_log", NULL, D(audit_log),
	 "JSON-lines audit log (default: <state_dir>/audit.jsonl)", 0, NULL},
	{HUTCH_CONFIG_DURATION, "shutdown_grace", Q("10s"), D(shutdown_grace_ms),
	 "How long SIGTERM waits for calls in flight", 0, NULL},
	{HUTCH_CONFIG_INT, "socket_mode", "0o660", D(socket_mode),
	 "Permissions of the API socket", 0, NULL},
	{0},
};
#undef D

#define A(f) offsetof(api_section_t, f)
static const hutch_config_field_t api_fields[] = {
	{HUTCH_CONFIG_STRING, "tcp_listen", NULL, A(tcp_listen),
	 "Also serve the API on TCP, \"host:port\" (needs TLS unless plaintext is allowed)", 0, NULL},
	{HUTCH_CONFIG_PATH, "tls_cert", NULL, A(tls_cert), "PEM certificate chain for TCP", 0, NULL},
	{HUTCH_CONFIG_PATH, "tls_key", NULL, A(tls_key), "PEM private key for TCP", HUTCH_CONFIG_SECRET, NULL},
	{HUTCH_CONFIG_STRING, "unix_tenant", Q("default"), A(unix_tenant),
	 "Tenant of callers on the unix socket", 0, NULL},
	{HUTCH_CONFIG_SIZE, "max_message", Q("16Mi"), A(max_message_bytes),
	 "Largest API message accepted", 0, NULL},
	{HUTCH_CONFIG_BOOL, "allow_plaintext_tcp", "false", A(allow_plaintext_tcp),
	 "Serve TCP without TLS (only on a loopback address)", 0, NULL},
	{0},
};
#undef A

#define K(f) offsetof(api_key_t, f)
static const hutch_config_field_t key_fields[] = {
	{HUTCH_CONFIG_STRING, "tenant", NULL, K(tenant), "Tenant the key maps to", HUTCH_CONFIG_REQUIRED, NULL},
	{HUTCH_CONFIG_STRING, "sha256", NULL, K(sha256),
	 "Hex SHA-256 of the key (`hutchd --hash-key` prints it)", HUTCH_CONFIG_REQUIRED, NULL},
	{0},
};
#undef K

#define P(f) offsetof(plugins_section_t, f)
static const hutch_config_field_t plugins_fields[] = {
	{HUTCH_CONFIG_STRING, "runtime", Q("runtime-gvisor"), P(runtime),
	 "The sandbox runtime: a plugin name or an absolute .so path", 0, NULL},
	/* The defaults keep the platform's promises: every sandbox has a
	 * network with unrestricted egress (net-egress's default_egress =
	 * "allow"; the host, other sandboxes and metadata stay blocked) and an
	 * identity token. An operator opts out explicitly, never silently. */
	{HUTCH_CONFIG_STRING_LIST, "network", "[" Q("net-egress") "]", P(network),
	 "Network plugins in chain order (the first owns the namespace); [] for sandboxes without a network", 0, NULL},
	{HUTCH_CONFIG_STRING, "storage", NULL, P(storage), "Volume storage plugin", 0, NULL},
	{HUTCH_CONFIG_STRING, "identity", Q("identity-oidc"), P(identity),
	 "Workload identity plugin; \"\" for sandboxes without an identity", 0, NULL},
	{HUTCH_CONFIG_STRING_LIST, "accelerators", "[]", P(accelerators),
	 "Accelerator plugins", 0, NULL},
	{0},
};
#undef P

#define S(f) offsetof(sandbox_section_t, f)
static const hutch_config_field_t sandbox_fields[] = {
	{HUTCH_CONFIG_STRING, "default_image", Q("busybox"), S(default_image),
	 "Image of sandboxes created without one", 0, NULL},
	{HUTCH_CONFIG_DOUBLE, "cpu", "1.0", S(cpu), "Default guaranteed cpus", 0, NULL},
	{HUTCH_CONFIG_SIZE, "memory", Q("512Mi"), S(memory), "Default memory (limit = guarantee)", 0, NULL},
	{HUTCH_CONFIG_DURATION, "lifetime", Q("1h"), S(lifetime_ms), "Default lifetime", 0, NULL},
	{HUTCH_CONFIG_DURATION, "max_lifetime", Q("24h"), S(max_lifetime_ms), "Longest lifetime allowed", 0, NULL},
	{HUTCH_CONFIG_DURATION, "idle_timeout", "0", S(idle_timeout_ms),
	 "Default idle timeout (0: none)", 0, NULL},
	{HUTCH_CONFIG_INT, "pids_max", "1024", S(pids_max), "Default process limit", 0, NULL},
	{HUTCH_CONFIG_SIZE, "disk", Q("1Gi"), S(disk), "Default size limit of the writable layer", 0, NULL},
	{HUTCH_CONFIG_DURATION, "stop_grace", Q("5s"), S(stop_grace_ms),
	 "SIGTERM-to-SIGKILL grace at stop", 0, NULL},
	{HUTCH_CONFIG_ENUM, "on_restart", Q("recover"), S(on_restart),
	 "After a daemon restart: find running sandboxes again, or clean them up", 0, restart_modes},
	{HUTCH_CONFIG_INT, "max_sandboxes", "256", S(max_sandboxes), "Most sandboxes running at once", 0, NULL},
	{HUTCH_CONFIG_DOUBLE, "max_cpu", "16.0", S(max_cpu), "Most cpus one sandbox may ask for", 0, NULL},
	{HUTCH_CONFIG_SIZE, "max_memory", Q("64Gi"), S(max_memory), "Most memory one sandbox may ask for", 0, NULL},
	{0},
};
#undef S

#define SE(f) offsetof(secrets_section_t, f)
static const hutch_config_field_t secrets_fields[] = {
	{HUTCH_CONFIG_PATH, "key_file", NULL, SE(key_file),
	 "AES-256 key that seals secrets at rest, kept apart from the store (default: <state_dir>/keys/secrets.key; made if missing)", 0, NULL},
	{0},
};
#undef SE

#define H(f) offsetof(http_section_t, f)
static const hutch_config_field_t http_fields[] = {
	{HUTCH_CONFIG_STRING, "listen", NULL, H(listen),
	 "HTTP listener, \"host:port\" (default 127.0.0.1:7480 when an identity plugin is loaded; none otherwise)", 0, NULL},
	{HUTCH_CONFIG_PATH, "tls_cert", NULL, H(tls_cert), "PEM certificate chain: serve HTTPS", 0, NULL},
	{HUTCH_CONFIG_PATH, "tls_key", NULL, H(tls_key), "PEM private key for HTTPS", HUTCH_CONFIG_SECRET, NULL},
	{HUTCH_CONFIG_BOOL, "metrics", "true", H(metrics), "Serve Prometheus metrics at /metrics", 0, NULL},
	{0},
};
#undef H

#define R(f) offsetof(router_section_t, f)
static const hutch_config_field_t router_fields[] = {
	{HUTCH_CONFIG_STRING, "listen", Q("127.0.0.1:0"), R(listen),
	 "Router listener, \"host:port\" (port 0: a free one, see `hutch group router`)", 0, NULL},
	{HUTCH_CONFIG_STRING, "domain", Q("hutch.localhost"), R(domain),
	 "Groups answer at <name>.<tenant>.<domain>", 0, NULL},
	{HUTCH_CONFIG_PATH, "tls_cert", NULL, R(tls_cert), "PEM certificate chain: serve HTTPS", 0, NULL},
	{HUTCH_CONFIG_PATH, "tls_key", NULL, R(tls_key), "PEM private key for HTTPS", HUTCH_CONFIG_SECRET, NULL},
	{HUTCH_CONFIG_DURATION, "hold_timeout", Q("30s"), R(hold_timeout_ms),
	 "Longest a request waits for a replica (then 503 with Retry-After)", 0, NULL},
	{HUTCH_CONFIG_INT, "hold_queue", "1000", R(hold_queue), "Requests held per group while it scales up", 0, NULL},
	{HUTCH_CONFIG_DURATION, "stable_window", Q("60s"), R(stable_window_ms), "Autoscaler's stable window", 0, NULL},
	{HUTCH_CONFIG_DURATION, "panic_window", Q("6s"), R(panic_window_ms), "Autoscaler's panic window", 0, NULL},
	{HUTCH_CONFIG_DURATION, "tick", Q("1s"), R(tick_ms), "How often the autoscaler and the reconciler look", 0, NULL},
	{HUTCH_CONFIG_STRING, "sandbox_listen", NULL, R(sandbox_listen),
	 "Also listen here for sandboxes (net-egress's gateway and router_port, e.g. \"10.200.0.1:80\"): each reaches only its own tenant's services", 0, NULL},
	{HUTCH_CONFIG_BOOL, "access_log", "true", R(access_log), "A log line per request (info level; JSON fields with --log-format json)", 0, NULL},
	{0},
};
#undef R

static const char *const integration_types[] = {"postgres", "env", NULL};
#define I(f) offsetof(integration_cfg_t, f)
static const hutch_config_field_t integration_fields[] = {
	{HUTCH_CONFIG_STRING, "name", NULL, I(name), "Name sandboxes use (Secret.from_integration)", HUTCH_CONFIG_REQUIRED, NULL},
	{HUTCH_CONFIG_ENUM, "type", NULL, I(type), "What it provides", HUTCH_CONFIG_REQUIRED, integration_types},
	{HUTCH_CONFIG_STRING_LIST, "tenants", NULL, I(tenants), "Tenants that may use it (default: all)", 0, NULL},
	{HUTCH_CONFIG_STRING, "host", NULL, I(host), "postgres: host", 0, NULL},
	{HUTCH_CONFIG_INT, "port", "5432", I(port), "postgres: port", 0, NULL},
	{HUTCH_CONFIG_STRING, "user", NULL, I(user), "postgres: user", 0, NULL},
	{HUTCH_CONFIG_STRING, "password", NULL, I(password), "postgres: password", HUTCH_CONFIG_SECRET, NULL},
	{HUTCH_CONFIG_STRING, "database", NULL, I(database), "postgres: database", 0, NULL},
	{HUTCH_CONFIG_STRING, "sslmode", NULL, I(sslmode), "postgres: sslmode", 0, NULL},
	{HUTCH_CONFIG_STRING_LIST, "env", NULL, I(env), "env: variables as \"KEY=VALUE\"", HUTCH_CONFIG_SECRET, NULL},
	{0},
};
#undef I

static const char *const top_keys[] = {"daemon", "api", "plugins", "plugin", "sandbox",
				       "secrets", "http", "router", "integration", "images", NULL};

static char *read_file(const char *path, size_t *len, hutch_err_t *err)
{
	_cleanup_fclose_ FILE *f = fopen(path, "rb");
	if (!f) {
		hutch_err_sys(err, errno, "open %s", path);
		return NULL;
	}
	strbuf_t sb = STRBUF_INIT;
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		sb_append_n(&sb, buf, n);
		if (sb.len > 4 * 1024 * 1024) {
			sb_free(&sb);
			hutch_err_set(err, EFBIG, "%s: larger than 4 MiB", path);
			return NULL;
		}
	}
	if (ferror(f)) {
		sb_free(&sb);
		hutch_err_sys(err, EIO, "read %s", path);
		return NULL;
	}
	*len = sb.len;
	return sb_steal(&sb);
}

static int bind_integrations(daemon_config_t *cfg, const toml_value_t *root, hutch_err_t *err)
{
	const toml_value_t *v = root ? toml_table_get(root, "integration") : NULL;
	if (!v)
		return 0;
	if (v->type != TOML_ARRAY)
		return hutch_err_set(err, EINVAL, "%s:%d:%d: integration must be an array of tables ([[integration]])",
				     cfg->file, v->line, v->col);
	cfg->integrations = xcalloc(v->u.array.len + 1, sizeof *cfg->integrations);
	for (size_t i = 0; i < v->u.array.len; i++) {
		const toml_value_t *t = v->u.array.items[i];
		int r = config_bind(integration_fields, t, cfg->file, "integration",
				    &cfg->integrations[i], err);
		if (r < 0)
			return r;
		cfg->n_integrations = i + 1;
		integration_cfg_t *in = &cfg->integrations[i];
		for (size_t k = 0; k < i; k++)
			if (strcmp(cfg->integrations[k].name, in->name) == 0)
				return hutch_err_set(err, EINVAL, "%s:%d:%d: integration `%s` is defined twice",
						     cfg->file, t->line, t->col, in->name);
		if (strcmp(in->type, "postgres") == 0 && (!in->host || !in->user || !in->database))
			return hutch_err_set(err, EINVAL,
					     "%s:%d:%d: postgres integration `%s` needs host, user and database",
					     cfg->file, t->line, t->col, in->name);
		for (char **e = in->env; e && *e; e++)
			if (!strchr(*e, '=') || **e == '=')
				return hutch_err_set(err, EINVAL,
						     "%s:%d:%d: integration `%s`: env entries are \"KEY=VALUE\"",
						     cfg->file, t->line, t->col, in->name);
	}
	return 0;
}

static int bind_keys(daemon_config_t *cfg, const toml_value_t *api,
		     hutch_err_t *err)
{
	const toml_value_t *keys = api ? toml_table_get(api, "key") : NULL;
	if (!keys)
		return 0;
	if (keys->type != TOML_ARRAY)
		return hutch_err_set(err, EINVAL, "%s:%d:%d: api.key must be an array of tables ([[api.key]])",
				     cfg->file, keys->line, keys->col);
	cfg->keys = xcalloc(keys->u.array.len, sizeof *cfg->keys);
	for (size_t i = 0; i < keys->u.array.len; i++) {
		const toml_value_t *k = keys->u.array.items[i];
		int r = config_bind(key_fields, k, cfg->file, "api.key", &cfg->keys[i], err);
		if (r < 0)
			return r;
		cfg->n_keys = i + 1;
		const char *h = cfg->keys[i].sha256;
		bool hex = strlen(h) == 64;
		for (const char *p = h; hex && *p; p++)
			hex = (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f');
		if (!hex)
			return hutch_err_set(err, EINVAL,
					     "%s:%d:%d: [api.key] `sha256` must be 64 lower-case hex digits",
					     cfg->file, k->line, k->col);
	}
	return 0;
}

int daemon_config_load(const char *file, daemon_config_t *cfg, hutch_err_t *err)
{
	int r;
	memset(cfg, 0, sizeof *cfg);
	const toml_value_t *root = NULL;
	if (file) {
		cfg->file = xstrdup(file);
		size_t len;
		_cleanup_free_ char *text = read_file(file, &len, err);
		if (!text)
			return -err->code;
		toml_error_t te;
		if (toml_parse(text, len, &cfg->doc, &te) < 0) {
			r = hutch_err_set(err, EINVAL, "%s:%d:%d: %s", file, te.line, te.col,
					  te.message);
			daemon_config_free(cfg);
			return r;
		}
		root = cfg->doc;
		for (size_t i = 0; i < root->u.table.len; i++) {
			const toml_kv_t *kv = &root->u.table.items[i];
			bool known = false;
			for (const char *const *k = top_keys; *k; k++)
				if (strlen(*k) == kv->key_len && memcmp(*k, kv->key, kv->key_len) == 0)
					known = true;
			if (!known) {
				r = hutch_err_set(err, EINVAL,
						  "%s:%d:%d: unknown section `%.*s` (known: daemon, api, plugins, plugin.NAME, sandbox, secrets, http, router, integration)",
						  file, kv->line, kv->col, (int)kv->key_len, kv->key);
				daemon_config_free(cfg);
				return r;
			}
		}
	}
	const toml_value_t *api = root ? toml_table_get(root, "api") : NULL;
	/* [[api.key]] is bound separately; hide it from the [api] binding. */
	toml_value_t api_view;
	if (api && api->type == TOML_TABLE && toml_table_get(api, "key")) {
		api_view = *api;
		api_view.u.table.items = xcalloc(api->u.table.len, sizeof(toml_kv_t));
		api_view.u.table.len = 0;
		for (size_t i = 0; i < api->u.table.len; i++) {
			const toml_kv_t *kv = &api->u.table.items[i];
			if (!(kv->key_len == 3 && memcmp(kv->key, "key", 3) == 0))
				api_view.u.table.items[api_view.u.table.len++] = *kv;
		}
	}
	const toml_value_t *api_bound = (api && api->type == TOML_TABLE &&
					 toml_table_get(api, "key")) ? &api_view : api;

	struct {
		const hutch_config_field_t *fields;
		const char *name;
		void *out;
		const toml_value_t *table;
	} sections[] = {
		{daemon_fields, "daemon", &cfg->daemon, root ? toml_table_get(root, "daemon") : NULL},
		{api_fields, "api", &cfg->api, api_bound},
		{plugins_fields, "plugins", &cfg->plugins, root ? toml_table_get(root, "plugins") : NULL},
		{sandbox_fields, "sandbox", &cfg->sandbox, root ? toml_table_get(root, "sandbox") : NULL},
		{secrets_fields, "secrets", &cfg->secrets, root ? toml_table_get(root, "secrets") : NULL},
		{http_fields, "http", &cfg->http, root ? toml_table_get(root, "http") : NULL},
		{router_fields, "router", &cfg->router, root ? toml_table_get(root, "router") : NULL},
	};
	r = 0;
	for (size_t i = 0; i < ARRAY_SIZE(sections) && r == 0; i++)
		r = config_bind(sections[i].fields, sections[i].table, file,
				sections[i].name, sections[i].out, err);
	if (api_bound == &api_view)
		free(api_view.u.table.items);
	if (r == 0)
		r = bind_keys(cfg, api, err);
	if (r == 0)
		r = bind_integrations(cfg, root, err);
	if (r == 0 && root) {
		const toml_value_t *pl = toml_table_get(root, "plugin");
		if (pl && pl->type != TOML_TABLE)
			r = hutch_err_set(err, EINVAL, "%s:%d:%d: `plugin` must hold tables ([plugin.NAME])",
					  file, pl->line, pl->col);
	}
	if (r < 0) {
		daemon_config_free(cfg);
		return r;
	}

	/* Derived defaults. */
	const toml_value_t *pl = root ? toml_table_get(root, "plugins") : NULL;
	cfg->network_defaulted = !(pl && toml_table_get(pl, "network"));
	cfg->identity_defaulted = !(pl && toml_table_get(pl, "identity"));
	cfg->socket_set = cfg->daemon.socket != NULL;
	cfg->audit_log_set = cfg->daemon.audit_log != NULL;
	if (!cfg->daemon.socket)
		cfg->daemon.socket = xasprintf("%s/hutchd.sock", cfg->daemon.run_dir);
	if (!cfg->daemon.audit_log)
		cfg->daemon.audit_log = xasprintf("%s/audit.jsonl", cfg->daemon.state_dir);
	if (cfg->sandbox.cpu <= 0 || cfg->sandbox.max_cpu < cfg->sandbox.cpu) {
		r = hutch_err_set(err, EINVAL, "%s: [sandbox] cpu must be > 0 and <= max_cpu",
				  file ? file : "<defaults>");
		daemon_config_free(cfg);
		return r;
	}
	if ((cfg->http.tls_cert == NULL) != (cfg->http.tls_key == NULL)) {
		r = hutch_err_set(err, EINVAL, "%s: [http] tls_cert and tls_key go together",
				  file ? file : "<defaults>");
		daemon_config_free(cfg);
		return r;
	}
	if ((cfg->api.tls_cert == NULL) != (cfg->api.tls_key == NULL)) {
		r = hutch_err_set(err, EINVAL, "%s: [api] tls_cert and tls_key go together",
				  file ? file : "<defaults>");
		daemon_config_free(cfg);
		return r;
	}
	return 0;
}

const toml_value_t *daemon_config_plugin_table(const daemon_config_t *cfg,
					       const char *name)
{
	if (!cfg->doc)
		return NULL;
	const toml_value_t *pl = toml_table_get(cfg->doc, "plugin");
	return pl ? toml_table_get(pl, name) : NULL;
}

int daemon_config_check_plugin_tables(const daemon_config_t *cfg,
				      char *const *loaded, hutch_err_t *err)
{
	if (!cfg->doc)
		return 0;
	const toml_value_t *pl = toml_table_get(cfg->doc, "plugin");
	if (!pl)
		return 0;
	for (size_t i = 0; i < pl->u.table.len; i++) {
		const toml_kv_t *kv = &pl->u.table.items[i];
		bool found = false;
		for (char *const *n = loaded; n && *n; n++)
			if (strlen(*n) == kv->key_len && memcmp(*n, kv->key, kv->key_len) == 0)
				found = true;
		if (!found)
			return hutch_err_set(err, EINVAL,
					     "%s:%d:%d: [plugin.%.*s] configures a plugin that is not loaded (see [plugins])",
					     cfg->file, kv->line, kv->col, (int)kv->key_len, kv->key);
	}
	return 0;
}

void daemon_config_free(daemon_config_t *cfg)
{
	config_release(daemon_fields, &cfg->daemon);
	config_release(api_fields, &cfg->api);
	config_release(plugins_fields, &cfg->plugins);
	config_release(sandbox_fields, &cfg->sandbox);
	for (size_t i = 0; i < cfg->n_keys; i++)
		config_release(key_fields, &cfg->keys[i]);
	free(cfg->keys);
	config_release(secrets_fields, &cfg->secrets);
	config_release(http_fields, &cfg->http);
	config_release(router_fields, &cfg->router);
	for (size_t i = 0; i < cfg->n_integrations; i++)
		config_release(integration_fields, &cfg->integrations[i]);
	free(cfg->integrations);
	toml_free(cfg->doc);
	free(cfg->file);
	memset(cfg, 0, sizeof *cfg);
}

int daemon_config_hint(const daemon_config_t *cfg, const char *role, const char *name,
		       hutch_err_t *err)
{
	char hint[512] = "";
	if (strcmp(role, "network") == 0)
		snprintf(hint, sizeof hint,
			 "%s %s: fix the host or its [plugin.%s] options (see docs/net-egress.md), or set [plugins] network = [] to run sandboxes without a network",
			 name, cfg->network_defaulted ? "is hutchd's default network plugin"
						      : "is named in [plugins] network", name);
	else if (strcmp(role, "identity") == 0)
		snprintf(hint, sizeof hint,
			 "%s %s: fix its [plugin.%s] options, or set [plugins] identity = \"\" to run sandboxes without an identity",
			 name, cfg->identity_defaulted ? "is hutchd's default identity plugin"
						       : "is named in [plugins] identity", name);
	else if (strcmp(role, "http") == 0 && !cfg->http.listen)
		snprintf(hint, sizeof hint,
			 "the identity plugin needs this listener: set [http] listen to a free \"host:port\" (and [plugin.%s] issuer to match), or [plugins] identity = \"\" to run sandboxes without an identity",
			 name ? name : "identity-oidc");
	if (!hint[0])
		return -err->code;
	char old[HUTCH_ERR_MESSAGE_MAX];
	memcpy(old, err->message, sizeof old);
	old[sizeof old - 1] = '\0';
	return hutch_err_set(err, err->code ? err->code : EINVAL, "%s (%s)", old, hint);
}

void daemon_config_describe(FILE *out)
{
	fprintf(out, "[daemon]\n");
	config_describe(daemon_fields, out);
	fprintf(out, "\n[api]\n");
	config_describe(api_fields, out);
	fprintf(out, "\n[[api.key]]\n");
	config_describe(key_fields, out);
	fprintf(out, "\n[plugins]\n");
	config_describe(plugins_fields, out);
	fprintf(out, "\n[sandbox]\n");
	config_describe(sandbox_fields, out);
	fprintf(out, "\n[secrets]\n");
	config_describe(secrets_fields, out);
	fprintf(out, "\n[http]\n");
	config_describe(http_fields, out);
	fprintf(out, "\n[router]\n");
	config_describe(router_fields, out);
	fprintf(out, "\n[[integration]]\n");
	config_describe(integration_fields, out);
}
