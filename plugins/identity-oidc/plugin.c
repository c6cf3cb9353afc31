/*
 * plugin.c: the identity-oidc descriptor, its configuration, and the ops
 * hutchd calls (see docs/identity-oidc.md).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "oidc.h"

#define OIDC_PLUGIN_NAME "identity-oidc"
#define OIDC_PLUGIN_VERSION "1.0.0"
#define MAX_TTL_MS (15 * 60 * 1000)

#define F(type, key, def, member, desc)                                         \
	{type, key, def, offsetof(oidc_config_t, member), desc, 0, NULL}

static const hutch_config_field_t config_fields[] = {
	F(HUTCH_CONFIG_STRING, "issuer", "\"http://127.0.0.1:7480\"", issuer,
	  "the issuer URL (iss of every token); hutchd's [http] listener must serve it, and verifiers fetch <issuer>/.well-known/openid-configuration"),
	F(HUTCH_CONFIG_STRING, "default_audience", NULL, default_audience,
	  "aud of a sandbox's token when its spec names none (default: \"hutch\")"),
	F(HUTCH_CONFIG_DURATION, "token_ttl", "\"10m\"", token_ttl_ms,
	  "lifetime of a token (at most 15m); hutchd renews a sandbox's token file at two thirds of it"),
	F(HUTCH_CONFIG_DURATION, "rotate_every", "\"24h\"", rotate_every_ms,
	  "a new signing key this often; the old one stays in the JWKS until its tokens expired"),
	F(HUTCH_CONFIG_DURATION, "clock_skew", "\"30s\"", clock_skew_ms,
	  "leeway for exp/nbf/iat when verifying"),
	F(HUTCH_CONFIG_PATH, "exchange_rules", NULL, exchange_rules,
	  "TOML file of [[upstream]] credentials that sandboxes may get by token exchange, and who may (none: no exchange)"),
	F(HUTCH_CONFIG_STRING, "exchange_audience", NULL, exchange_audience,
	  "aud a subject token must carry to be exchanged (default: default_audience)"),
	F(HUTCH_CONFIG_STRING, "jwks_path", "\"/.well-known/jwks.json\"", jwks_path,
	  "where the JWKS is served, below the issuer URL"),
	{0},
};

bool oidc_revoked(oidc_t *o, const char *sandbox_id)
{
	bool r = false;
	pthread_mutex_lock(&o->lock);
	for (char **p = o->revoked; p && *p; p++)
		if (strcmp(*p, sandbox_id) == 0)
			r = true;
	pthread_mutex_unlock(&o->lock);
	return r;
}

static void oidc_free(oidc_t *o)
{
	if (!o)
		return;
	if (o->timer)
		o->host->timer_stop(o->timer);
	oidc_keys_free(o);
	oidc_rules_free(o);
	strv_free(o->revoked);
	free(o->default_audience);
	pthread_mutex_destroy(&o->lock);
	free(o);
}

static void on_timer(void *data)
{
	oidc_t *o = data;
	hutch_err_t err = {0};
	if (oidc_keys_maintain(o, false, &err) < 0)
		o->host->log(o->host, HUTCH_LOG_ERROR, "key rotation: %s", err.message);
}

static bool url_ok(const char *u)
{
	if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0)
		return false;
	for (const char *p = u; *p; p++)
		if ((unsigned char)*p <= 0x20 || *p == '"' || *p == '\\' || *p == '?' || *p == '#')
			return false;
	return u[strlen(u) - 1] != '/';
}

static int oidc_init(const hutch_host_t *host, const void *config, void **instance,
		     hutch_err_t *err)
{
	const oidc_config_t *c = config;
	if (!c->issuer || !url_ok(c->issuer))
		return hutch_err_set(err, -EINVAL,
				     "issuer must be an http:// or https:// URL without a trailing "
				     "slash, query or fragment (got \"%s\")",
				     c->issuer ? c->issuer : "");
	if (c->token_ttl_ms < 60000 || c->token_ttl_ms > MAX_TTL_MS)
		return hutch_err_set(err, -EINVAL, "token_ttl must be between 1m and 15m");
	if (c->rotate_every_ms < 60000)
		return hutch_err_set(err, -EINVAL, "rotate_every must be at least 1m");
	if (c->clock_skew_ms < 0 || c->clock_skew_ms > 5 * 60000)
		return hutch_err_set(err, -EINVAL, "clock_skew must be between 0 and 5m");
	if (!c->jwks_path || c->jwks_path[0] != '/' || strpbrk(c->jwks_path, "?# "))
		return hutch_err_set(err, -EINVAL, "jwks_path must be a path starting with /");
	oidc_t *o = xcalloc(1, sizeof *o);
	o->host = host;
	pthread_mutex_init(&o->lock, NULL);
	o->default_audience =
		xstrdup(c->default_audience && *c->default_audience ? c->default_audience : "hutch");
	o->cfg_copy = *c;
	o->cfg_copy.default_audience = o->default_audience;
	o->cfg = &o->cfg_copy;
	int r;
	if ((r = oidc_keys_load(o, err)) < 0 || (r = oidc_keys_maintain(o, false, err)) < 0 ||
	    (r = oidc_rules_load(o, err)) < 0)
		goto fail;
	/* Check rotation and retirement a few times per key lifetime. */
	uint64_t every = (uint64_t)(c->token_ttl_ms / 4);
	if ((r = host->timer_start(host, every, every, on_timer, o, &o->timer, err)) < 0)
		goto fail;
	host->log(host, HUTCH_LOG_INFO, "issuer %s, %zu signing key(s), active %s, %zu upstream(s)",
		  c->issuer, o->n_keys, o->keys[o->n_keys - 1].kid, o->n_rules);
	*instance = o;
	return 0;
fail:
	oidc_free(o);
	return r;
}

static void oidc_fini(void *instance)
{
	oidc_free(instance);
}

static int op_token_issue(void *instance, const hutch_identity_subject_t *subj,
			  const char *audience, hutch_identity_token_t *out, hutch_err_t *err)
{
	oidc_t *o = instance;
	return oidc_issue(o, subj, audience, o->cfg->token_ttl_ms, out, err);
}

static int op_token_verify(void *instance, const char *token, const char *audience,
			   hutch_identity_claims_t *claims, hutch_err_t *err)
{
	oidc_t *o = instance;
	int r = oidc_verify(o, token, audience, claims, err);
	o->host->metric_add(o->host, "identity_verifications_total",
			    r == 0 ? "result=ok" : "result=rejected", 1);
	return r;
}

static int put_doc(hutch_http_doc_t *doc, const strbuf_t *body, hutch_err_t *err)
{
	if (body->len + 1 > doc->body_cap)
		return hutch_err_set(err, -ERANGE, "document of %zu bytes does not fit", body->len);
	memcpy(doc->body, body->buf, body->len + 1);
	doc->body_len = body->len;
	snprintf(doc->content_type, sizeof doc->content_type, "application/json");
	return 0;
}

static int op_http_get(void *instance, const char *path, hutch_http_doc_t *doc, hutch_err_t *err)
{
	oidc_t *o = instance;
	const oidc_config_t *c = o->cfg;
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	if (strcmp(path, "/.well-known/openid-configuration") == 0) {
		sb_append(&b, "{\"issuer\":");
		sb_json_str(&b, c->issuer);
		sb_printf(&b, ",\"jwks_uri\":\"%s%s\"", c->issuer, c->jwks_path);
		if (o->n_rules)
			sb_printf(&b, ",\"token_endpoint\":\"%s/v1/token\"", c->issuer);
		sb_append(&b, ",\"response_types_supported\":[\"id_token\"]"
			      ",\"subject_types_supported\":[\"public\"]"
			      ",\"id_token_signing_alg_values_supported\":[\"ES256\"]"
			      ",\"claims_supported\":[\"iss\",\"sub\",\"aud\",\"iat\",\"nbf\",\"exp\","
			      "\"jti\",\"tenant\",\"sandbox_id\",\"sandbox_name\",\"image_digest\"]");
		if (o->n_rules)
			sb_append(&b, ",\"grant_types_supported\":"
				      "[\"urn:ietf:params:oauth:grant-type:token-exchange\"]");
		sb_putc(&b, '}');
		return put_doc(doc, &b, err);
	}
	if (strcmp(path, c->jwks_path) == 0) {
		pthread_mutex_lock(&o->lock);
		oidc_jwks(o, &b);
		pthread_mutex_unlock(&o->lock);
		return put_doc(doc, &b, err);
	}
	return hutch_err_set(err, -ENOENT, "not found");
}

static int op_key_rotate(void *instance, hutch_err_t *err)
{
	return oidc_keys_maintain(instance, true, err);
}

static int op_token_exchange(void *instance, const char *subject_token, const char *resource,
			     hutch_identity_token_t *out, hutch_err_t *err)
{
	return oidc_exchange(instance, subject_token, resource, out, err);
}

static void op_subject_revoke(void *instance, const char *sandbox_id)
{
	oidc_t *o = instance;
	pthread_mutex_lock(&o->lock);
	bool have = false;
	for (char **p = o->revoked; p && *p; p++)
		if (strcmp(*p, sandbox_id) == 0)
			have = true;
	/* Bounded: ids are unique, and a token outlives its sandbox by at most
	 * token_ttl, so only the recent stops matter; keep the last 4096. */
	if (!have) {
		size_t n = strv_len(o->revoked);
		if (n >= 4096) {
			free(o->revoked[0]);
			memmove(o->revoked, o->revoked + 1, n * sizeof *o->revoked);
		}
		strv_push(&o->revoked, xstrdup(sandbox_id));
	}
	pthread_mutex_unlock(&o->lock);
}

static void op_capabilities(void *instance, hutch_kv_cb emit, void *data)
{
	oidc_t *o = instance;
	char buf[64];
	emit(data, "issuer", o->cfg->issuer);
	emit(data, "algorithm", "ES256");
	emit(data, "default_audience", o->cfg->default_audience);
	snprintf(buf, sizeof buf, "%llds", (long long)(o->cfg->token_ttl_ms / 1000));
	emit(data, "token_ttl", buf);
	pthread_mutex_lock(&o->lock);
	snprintf(buf, sizeof buf, "%zu", o->n_keys);
	emit(data, "keys", buf);
	if (o->n_keys)
		emit(data, "active_kid", o->keys[o->n_keys - 1].kid);
	pthread_mutex_unlock(&o->lock);
	snprintf(buf, sizeof buf, "%zu", o->n_rules);
	emit(data, "exchange.upstreams", buf);
}

static const hutch_identity_ops_t identity_ops = {
	.size = sizeof(hutch_identity_ops_t),
	.token_issue = op_token_issue,
	.token_verify = op_token_verify,
	.http_get = op_http_get,
	.key_rotate = op_key_rotate,
	.token_exchange = op_token_exchange,
	.subject_revoke = op_subject_revoke,
	.capabilities = op_capabilities,
};

static const hutch_plugin_t descriptor = {
	.size = sizeof(hutch_plugin_t),
	.abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR,
	.kind = HUTCH_PLUGIN_IDENTITY,
	.name = OIDC_PLUGIN_NAME,
	.version = OIDC_PLUGIN_VERSION,
	.description = "workload identity as OpenID Connect: ES256 JWTs per sandbox, discovery and JWKS, key rotation, token exchange",
	.config = config_fields,
	.config_size = sizeof(oidc_config_t),
	.init = oidc_init,
	.fini = oidc_fini,
	.ops = &identity_ops,
};

HUTCH_PLUGIN_DEFINE(descriptor)
