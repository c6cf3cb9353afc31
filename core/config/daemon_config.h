/*
 * daemon_config.h: hutchd.toml, the operator's file.
 *
 *   [daemon]      state and socket paths, logging
 *   [api]         TCP listener, TLS, tenants of unix-socket callers
 *   [[api.key]]   API keys (sha256 of the key) and the tenant each maps to
 *   [plugins]     which plugin fills each role
 *   [plugin.NAME] that plugin's options, checked against its own schema
 *   [sandbox]     defaults and limits for sandboxes
 *   [secrets]     the key that seals secrets at rest
 *   [http]        the HTTP listener: OIDC issuer, token exchange, metrics
 *   [[integration]] credentials of services sandboxes may be given
 *
 * Every section is bound through a declarative table (config_bind), so
 * unknown keys and wrong types are refused with file:line:col. With no file
 * at all, every default applies: one local machine, API on a unix socket.
 */
#ifndef HUTCH_DAEMON_CONFIG_H
#define HUTCH_DAEMON_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include <hutch/plugin.h>

#include "toml.h"

typedef struct daemon_section {
	char *state_dir;
	char *run_dir;
	char *socket;
	char *plugin_dir;
	char *log_level;
	char *log_format;
	char *audit_log;
	int64_t shutdown_grace_ms;
	int64_t socket_mode;
} daemon_section_t;

typedef struct api_section {
	char *tcp_listen; /* "host:port" or NULL */
	char *tls_cert;
	char *tls_key;
	char *unix_tenant;
	int64_t max_message_bytes;
	bool allow_plaintext_tcp; /* h2c on loopback only */
} api_section_t;

typedef struct plugins_section {
	char *runtime;
	char **network;
	char *storage;
	char *identity;
	char **accelerators;
} plugins_section_t;

typedef struct sandbox_section {
	char *default_image;
	double cpu;
	int64_t memory;
	int64_t lifetime_ms;
	int64_t max_lifetime_ms;
	int64_t idle_timeout_ms;
	int64_t pids_max;
	int64_t disk;
	int64_t stop_grace_ms;
	char *on_restart;  /* "recover" | "cleanup" */
	int64_t max_sandboxes;
	double max_cpu;
	int64_t max_memory;
} sandbox_section_t;

/* [http]: the plain-HTTP listener (OIDC issuer documents, token
 * exchange, metrics). */
typedef struct http_section {
	char *listen;   /* "host:port"; NULL: 127.0.0.1:7480 when an identity
			 * plugin is loaded, else no listener */
	char *tls_cert;
	char *tls_key;
	bool metrics;   /* serve /metrics */
} http_section_t;

/* [router]: the HTTP(S) entry to scaling groups and containers' ports
 * (docs/services.md). */
typedef struct router_section {
	char *listen;          /* "host:port"; port 0: ephemeral (RouterInfo says) */
	char *domain;          /* groups answer at <name>.<tenant>.<domain> */
	char *tls_cert;
	char *tls_key;
	int64_t hold_timeout_ms; /* a request held for a replica, at most */
	int64_t hold_queue;      /* requests held per group, at most */
	int64_t stable_window_ms; /* autoscaler windows (Knative's 60 s / 6 s) */
	int64_t panic_window_ms;
	int64_t tick_ms;         /* how often the autoscaler and reconciler look */
	bool access_log;         /* a line per request, at info level */
	char *sandbox_listen;    /* "gateway:port" sandboxes reach it on; NULL: none */
} router_section_t;

/* [secrets] */
typedef struct secrets_section {
	char *key_file; /* default: <state_dir>/keys/secrets.key */
} secrets_section_t;

/* [[integration]]: credentials of a service the operator runs, given to
 * sandboxes that name it (Secret.from_integration). */
typedef struct integration_cfg {
	char *name;
	char *type;     /* "postgres" | "env" */
	char **tenants; /* NULL: every tenant */
	char *host;
	int64_t port;
	char *user;
	char *password;
	char *database;
	char *sslmode;
	char **env;     /* "K=V", type env */
} integration_cfg_t;

typedef struct api_key {
	char *tenant;
	char *sha256; /* hex */
} api_key_t;

typedef struct daemon_config {
	char *file;        /* NULL: built-in defaults */
	toml_value_t *doc; /* the parsed file, for [plugin.*] tables */
	daemon_section_t daemon;
	api_section_t api;
	plugins_section_t plugins;
	sandbox_section_t sandbox;
	api_key_t *keys;
	size_t n_keys;
	secrets_section_t secrets;
	http_section_t http;
	router_section_t router;
	integration_cfg_t *integrations;
	size_t n_integrations;
	/* Whether the file set these, or they were derived from the dirs (and
	 * follow a --state-dir / --run-dir override). */
	bool socket_set;
	bool audit_log_set;
	/* Whether [plugins] network / identity came from the built-in
	 * defaults rather than the file (for daemon_config_hint). */
	bool network_defaulted;
	bool identity_defaulted;
} daemon_config_t;

int daemon_config_load(const char *file, daemon_config_t *cfg, hutch_err_t *err);
/* [plugin.NAME], or NULL when the file has none. */
const toml_value_t *daemon_config_plugin_table(const daemon_config_t *cfg,
					       const char *name);
/* Refuses [plugin.X] tables for plugins that are not loaded. */
int daemon_config_check_plugin_tables(const daemon_config_t *cfg,
				      char *const *loaded, hutch_err_t *err);
void daemon_config_free(daemon_config_t *cfg);
/* When a network or identity plugin (role "network", "identity", with its
 * name) or the HTTP listener (role "http") could not start, adds to err the
 * key an operator changes: hutchd loads these by default and refuses to
 * start without them rather than run sandboxes that lack what the platform
 * promises. Returns -err->code. */
int daemon_config_hint(const daemon_config_t *cfg, const char *role, const char *name,
		       hutch_err_t *err);
/* Prints the daemon's own sections (for --describe daemon). */
void daemon_config_describe(FILE *out);

#endif
