/*
 * secret_store.h: the tenant's secrets (sealed in the metadata store),
 * the operator's integrations (from hutchd.toml), and their resolution into
 * a sandbox's environment.
 *
 * Values only ever travel inwards: into the store sealed, into a sandbox's
 * processes as environment variables. Nothing here returns a value to an
 * API caller, logs one, or puts one in an error message; every resolved
 * value is registered with the log's redaction as a second line of defence.
 * A running sandbox's resolved secrets are kept sealed too (kind
 * "sandbox-secrets"), so a restarted hutchd can give its processes the same
 * environment, and are forgotten when it stops.
 */
#ifndef HUTCH_SECRET_STORE_H
#define HUTCH_SECRET_STORE_H

#include <stdbool.h>

#include "daemon_config.h"
#include "hutch/v1/sandbox.pb-c.h"
#include "hutch/v1/secret.pb-c.h"
#include "secret_box.h"
#include "store.h"

typedef struct secrets secrets_t;

int secrets_new(store_t *st, const char *key_file, const daemon_config_t *cfg, secrets_t **out,
		hutch_err_t *err);
void secrets_free(secrets_t *s);

/* Set / describe / list / delete. Infos never hold values; free them with
 * protobuf_c_message_free_unpacked. */
int secrets_set(secrets_t *s, const char *tenant, const char *name,
		Hutch__V1__KeyValue *const *values, size_t n, bool replace,
		Hutch__V1__SecretInfo **info, hutch_err_t *err);
int secrets_info(secrets_t *s, const char *tenant, const char *name,
		 Hutch__V1__SecretInfo **info, hutch_err_t *err);
int secrets_list(secrets_t *s, const char *tenant, Hutch__V1__ListSecretsResponse **out,
		 hutch_err_t *err);
int secrets_delete(secrets_t *s, const char *tenant, const char *name, hutch_err_t *err);
int secrets_integrations(secrets_t *s, const char *tenant,
			 Hutch__V1__ListIntegrationsResponse **out, hutch_err_t *err);

/* Resolves a sandbox's secret references into "K=V" strings (NULL-
 * terminated; free with secrets_env_free, which wipes them). Errors name
 * the secret, never a value. */
int secrets_resolve(secrets_t *s, const char *tenant, Hutch__V1__SecretRef *const *refs,
		    size_t n, char ***env, hutch_err_t *err);
void secrets_env_free(char **env);

/* A running sandbox's resolved environment, sealed, for recovery. */
int secrets_keep_for_sandbox(secrets_t *s, const char *tenant, const char *sandbox_id,
			     char *const *env, hutch_err_t *err);
int secrets_load_for_sandbox(secrets_t *s, const char *sandbox_id, char ***env,
			     hutch_err_t *err);
void secrets_forget_sandbox(secrets_t *s, const char *sandbox_id);

/* Removes the values of inline secret references from a spec (before it is
 * stored or shown). */
void secrets_strip_spec(Hutch__V1__SandboxSpec *spec);

#endif
