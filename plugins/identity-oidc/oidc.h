/*
 * oidc.h: identity-oidc's parts, shared between its files.
 *
 * Workload identity as OpenID Connect: every sandbox gets JWTs signed with
 * ES256 by a key hutchd keeps (rotated on a schedule; retired keys stay in
 * the JWKS until every token they signed has expired), verifiable by anyone
 * through the issuer's discovery document and JWKS.
 */
#ifndef HUTCH_OIDC_H
#define HUTCH_OIDC_H

#include <openssl/evp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <hutch/plugin.h>

#include "strbuf.h"

typedef struct oidc_config {
	char *issuer;
	char *default_audience;
	int64_t token_ttl_ms;
	int64_t rotate_every_ms;
	int64_t clock_skew_ms;
	char *exchange_rules;
	char *exchange_audience;
	char *jwks_path;
} oidc_config_t;

typedef struct oidc_key {
	char kid[64];
	EVP_PKEY *pkey;
	int64_t created_unix;
	int64_t retired_unix; /* 0 while active */
	char path[1024];
} oidc_key_t;

typedef struct exchange_rule exchange_rule_t;

typedef struct oidc {
	const hutch_host_t *host;
	const oidc_config_t *cfg; /* &cfg_copy */
	oidc_config_t cfg_copy;   /* the bound config, defaults resolved */
	char *default_audience;
	pthread_mutex_t lock; /* keys, revoked */
	oidc_key_t *keys;
	size_t n_keys;
	char keydir[512];
	char **revoked; /* sandbox ids */
	exchange_rule_t *rules;
	size_t n_rules;
	hutch_timer_t *timer;
} oidc_t;

/* ---- base64url (b64url.c) ---- */
void b64url_encode(strbuf_t *out, const uint8_t *data, size_t n);
/* Returns the decoded length, or -1 for invalid input; out holds n*3/4+3. */
long b64url_decode(const char *in, size_t n, uint8_t *out);

/* ---- keys (keys.c) ---- */
int oidc_keys_load(oidc_t *o, hutch_err_t *err);
/* Makes a new active key when there is none or it is due; drops retired
 * keys whose tokens have all expired. Called at init and on a timer. */
int oidc_keys_maintain(oidc_t *o, bool force, hutch_err_t *err);
void oidc_keys_free(oidc_t *o);
/* The JWKS document. Caller holds o->lock. */
void oidc_jwks(oidc_t *o, strbuf_t *out);

/* ---- JSON, just enough for JWTs (json_lite.c) ---- */
typedef enum { JV_NONE, JV_STRING, JV_NUMBER, JV_BOOL, JV_ARRAY, JV_OBJECT, JV_NULL } jv_type_t;
typedef struct jv {
	jv_type_t type;
	char *str;        /* JV_STRING: decoded, NUL-free */
	double num;
	bool b;
	struct jv *items; /* array items / object values */
	char **keys;      /* object keys */
	size_t n;
} jv_t;
/* Parses a JSON value (depth-limited, strings must be valid UTF-8 without
 * NUL). Returns 0, or -1 if malformed. */
int jv_parse(const char *s, size_t n, jv_t *out);
void jv_free(jv_t *v);
const jv_t *jv_get(const jv_t *obj, const char *key);

/* ---- tokens (jwt.c) ---- */
int oidc_issue(oidc_t *o, const hutch_identity_subject_t *subj, const char *audience,
	       int64_t ttl_ms, hutch_identity_token_t *out, hutch_err_t *err);
int oidc_verify(oidc_t *o, const char *token, const char *audience,
		hutch_identity_claims_t *claims, hutch_err_t *err);
/* A JWT for another audience, with extra claims, signed by the active key
 * (used by exchange). */
int oidc_sign_claims(oidc_t *o, const char *claims_json, strbuf_t *out, hutch_err_t *err);

/* ---- exchange (exchange.c) ---- */
int oidc_rules_load(oidc_t *o, hutch_err_t *err);
void oidc_rules_free(oidc_t *o);
int oidc_exchange(oidc_t *o, const char *subject_token, const char *resource,
		  hutch_identity_token_t *out, hutch_err_t *err);

int64_t oidc_now(void);
/* 32 random hex digits. */
void oidc_new_jti(char out[33]);
/* The sub claim: "sandbox:<tenant>/<sandbox id>". */
void oidc_subject(const char *tenant, const char *sandbox_id, char *out, size_t cap);
bool oidc_revoked(oidc_t *o, const char *sandbox_id);

#endif
