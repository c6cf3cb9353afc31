/* Fuzzes identity-oidc's token verification, which reads tokens that come
 * from sandboxes and from anyone who calls VerifyToken or the token
 * exchange: the strict JSON reader, the compact-JWS split and base64url,
 * and, for inputs signed here with the fuzzer's key, every claim check.
 * No crash, and nothing unsigned or altered is ever accepted.
 *
 * The first byte picks the mode: 0 raw JSON, 1 a token as given, 2 claims
 * signed with the key and then verified, 3 like 2 but with one byte of
 * the token changed afterwards (must be refused). */
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oidc.h"

static void h_log(const hutch_host_t *h, hutch_log_level_t l, const char *fmt, ...)
{
	(void)h;
	(void)l;
	(void)fmt;
}

static void h_metric_add(const hutch_host_t *h, const char *name, const char *labels, double v)
{
	(void)h;
	(void)name;
	(void)labels;
	(void)v;
}

static oidc_t *fixture(void)
{
	static oidc_t o;
	static oidc_key_t key;
	static hutch_host_t host;
	static int ready;
	if (ready)
		return &o;
	host.log = h_log;
	host.metric_add = h_metric_add;
	o.host = &host;
	o.cfg_copy.issuer = "http://127.0.0.1:7480";
	o.cfg_copy.default_audience = "hutch";
	o.cfg_copy.token_ttl_ms = 600000;
	o.cfg_copy.clock_skew_ms = 30000;
	o.cfg = &o.cfg_copy;
	pthread_mutex_init(&o.lock, NULL);
	key.pkey = EVP_EC_gen("P-256");
	if (!key.pkey)
		abort();
	strcpy(key.kid, "fuzzkey");
	o.keys = &key;
	o.n_keys = 1;
	ready = 1;
	return &o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	oidc_t *o = fixture();
	int mode = data[0] & 3;
	char *s = strndup((const char *)data + 1, size - 1); /* stops at a NUL */
	hutch_err_t err = {0};
	hutch_identity_claims_t claims;
	memset(&claims, 0, sizeof claims);
	claims.size = sizeof claims;
	if (mode == 0) {
		jv_t v;
		if (jv_parse((const char *)data + 1, size - 1, &v) == 0) {
			(void)jv_get(&v, "aud");
			jv_free(&v);
		}
	} else if (mode == 1) {
		if (oidc_verify(o, s, NULL, &claims, &err) == 0)
			__builtin_trap(); /* the fuzzer cannot forge our signature */
	} else {
		strbuf_t tok = STRBUF_INIT;
		if (oidc_sign_claims(o, s, &tok, &err) == 0) {
			if (mode == 3 && tok.len) {
				size_t at = (size_t)data[size - 1] * 7919u % tok.len;
				char c = tok.buf[at];
				tok.buf[at] = c == 'A' ? 'B' : 'A';
				/* base64url is decoded canonically, so any changed
				 * character changes what is verified: refused. */
				if (c != tok.buf[at] && oidc_verify(o, tok.buf, NULL, &claims, &err) == 0)
					__builtin_trap();
			} else {
				(void)oidc_verify(o, tok.buf, "hutch", &claims, &err);
			}
		}
		sb_free(&tok);
	}
	hutch_err_clear(&err);
	free(s);
	return 0;
}
