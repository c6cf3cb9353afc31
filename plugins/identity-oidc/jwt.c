/*
 * jwt.c: issuing and verifying the workload tokens (JWS compact, ES256).
 *
 * Verification is strict and ordered so that nothing from the token is
 * trusted before its signature is: the header must name alg ES256 (never
 * "none", never an HMAC that would take the public key as a secret), a kid
 * of a key this issuer holds, and no "crit"; the signature must be exactly
 * 64 bytes with 0 < r, s < n; only then are the claims read (iss, aud,
 * exp, nbf, iat with the configured clock skew).
 */
#include <errno.h>
#include <math.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "oidc.h"

#define JWT_MAX_LEN 8192

/* The order n of P-256, big-endian. */
static const uint8_t p256_n[32] = {
	0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
	0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
};

static bool scalar_ok(const uint8_t v[32])
{
	static const uint8_t zero[32];
	return memcmp(v, zero, 32) != 0 && memcmp(v, p256_n, 32) < 0;
}

/* header.payload -> raw r||s (64 bytes) with the active key. Caller holds
 * the lock. */
static int sign_es256(EVP_PKEY *pkey, const char *data, size_t n, uint8_t rs[64])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t der[128];
	size_t derlen = sizeof der;
	int r = -1;
	ECDSA_SIG *sig = NULL;
	if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1 ||
	    EVP_DigestSign(ctx, der, &derlen, (const uint8_t *)data, n) != 1)
		goto out;
	const uint8_t *p = der;
	sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (!sig)
		goto out;
	const BIGNUM *br, *bs;
	ECDSA_SIG_get0(sig, &br, &bs);
	if (BN_bn2binpad(br, rs, 32) != 32 || BN_bn2binpad(bs, rs + 32, 32) != 32)
		goto out;
	r = 0;
out:
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(ctx);
	if (r < 0)
		ERR_clear_error();
	return r;
}

static bool verify_es256(EVP_PKEY *pkey, const char *data, size_t n, const uint8_t rs[64])
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *br = BN_bin2bn(rs, 32, NULL), *bs = BN_bin2bn(rs + 32, 32, NULL);
	uint8_t *der = NULL;
	bool ok = false;
	EVP_MD_CTX *ctx = NULL;
	if (!sig || !br || !bs || !ECDSA_SIG_set0(sig, br, bs)) {
		BN_free(br);
		BN_free(bs);
		goto out;
	}
	int derlen = i2d_ECDSA_SIG(sig, &der);
	if (derlen <= 0)
		goto out;
	ctx = EVP_MD_CTX_new();
	ok = ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	     EVP_DigestVerify(ctx, der, (size_t)derlen, (const uint8_t *)data, n) == 1;
out:
	OPENSSL_free(der);
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

static void put_str(strbuf_t *sb, const char *key, const char *val)
{
	if (!val || !*val)
		return;
	sb_printf(sb, ",\"%s\":", key);
	sb_json_str(sb, val);
}

/* Text from a sandbox or an operator that goes into a claim: printable, not
 * empty, bounded. */
static bool claim_text_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (!n || n > max)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

int oidc_sign_claims(oidc_t *o, const char *claims_json, strbuf_t *out, hutch_err_t *err)
{
	_cleanup_sb_ strbuf_t hdr = STRBUF_INIT, input = STRBUF_INIT;
	uint8_t rs[64];
	pthread_mutex_lock(&o->lock);
	if (!o->n_keys) {
		pthread_mutex_unlock(&o->lock);
		return hutch_err_set(err, -EIO, "no signing key");
	}
	const oidc_key_t *k = &o->keys[o->n_keys - 1];
	sb_printf(&hdr, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"%s\"}", k->kid);
	b64url_encode(&input, (const uint8_t *)hdr.buf, hdr.len);
	sb_putc(&input, '.');
	b64url_encode(&input, (const uint8_t *)claims_json, strlen(claims_json));
	int r = sign_es256(k->pkey, input.buf, input.len, rs);
	pthread_mutex_unlock(&o->lock);
	if (r < 0)
		return hutch_err_set(err, -EIO, "signing failed");
	sb_append_n(out, input.buf, input.len);
	sb_putc(out, '.');
	b64url_encode(out, rs, sizeof rs);
	return 0;
}

void oidc_new_jti(char out[33])
{
	uint8_t b[16];
	if (RAND_bytes(b, sizeof b) != 1)
		abort(); /* no randomness: nothing safe to do */
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

void oidc_subject(const char *tenant, const char *sandbox_id, char *out, size_t cap)
{
	snprintf(out, cap, "sandbox:%s/%s", tenant, sandbox_id);
}

int oidc_issue(oidc_t *o, const hutch_identity_subject_t *subj, const char *audience,
	       int64_t ttl_ms, hutch_identity_token_t *out, hutch_err_t *err)
{
	if (!subj || !subj->tenant || !subj->sandbox_id || !*subj->tenant || !*subj->sandbox_id)
		return hutch_err_set(err, -EINVAL, "a token needs a tenant and a sandbox id");
	if (!audience || !*audience)
		audience = o->cfg->default_audience;
	if (!claim_text_ok(audience, 200))
		return hutch_err_set(err, -EINVAL,
				     "audience must be 1 to 200 printable characters");
	if (oidc_revoked(o, subj->sandbox_id))
		return hutch_err_set(err, -EACCES, "sandbox %s has stopped: no more tokens",
				     subj->sandbox_id);
	if (ttl_ms <= 0 || ttl_ms > o->cfg->token_ttl_ms)
		ttl_ms = o->cfg->token_ttl_ms;
	int64_t now = oidc_now(), exp = now + ttl_ms / 1000;
	char jti[33], sub[512];
	oidc_new_jti(jti);
	oidc_subject(subj->tenant, subj->sandbox_id, sub, sizeof sub);
	_cleanup_sb_ strbuf_t claims = STRBUF_INIT, jwt = STRBUF_INIT;
	sb_append(&claims, "{\"iss\":");
	sb_json_str(&claims, o->cfg->issuer);
	put_str(&claims, "sub", sub);
	put_str(&claims, "aud", audience);
	sb_printf(&claims, ",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld", (long long)now,
		  (long long)now, (long long)exp);
	put_str(&claims, "jti", jti);
	put_str(&claims, "tenant", subj->tenant);
	put_str(&claims, "sandbox_id", subj->sandbox_id);
	put_str(&claims, "sandbox_name", subj->sandbox_name);
	put_str(&claims, "image_digest", subj->image_digest);
	sb_putc(&claims, '}');
	int r = oidc_sign_claims(o, claims.buf, &jwt, err);
	if (r < 0)
		return r;
	if (jwt.len + 1 > out->token_cap)
		return hutch_err_set(err, -ERANGE, "token of %zu bytes does not fit", jwt.len);
	memcpy(out->token, jwt.buf, jwt.len + 1);
	out->expires_unix = exp;
	o->host->metric_add(o->host, "identity_tokens_issued_total", NULL, 1);
	return 0;
}

static int deny(hutch_err_t *err, const char *why)
{
	return hutch_err_set(err, -EACCES, "token rejected: %s", why);
}

static bool copy_claim(const jv_t *payload, const char *key, char *dst, size_t cap)
{
	const jv_t *v = jv_get(payload, key);
	if (!v) {
		dst[0] = 0;
		return true;
	}
	if (v->type != JV_STRING || strlen(v->str) >= cap)
		return false;
	memcpy(dst, v->str, strlen(v->str) + 1);
	return true;
}

/* A NumericDate claim: absent (if allowed) or a finite number. */
static bool time_claim(const jv_t *payload, const char *key, bool required, int64_t *out)
{
	const jv_t *v = jv_get(payload, key);
	*out = 0;
	if (!v)
		return !required;
	if (v->type != JV_NUMBER || v->num < 0 || v->num > 1e11)
		return false;
	*out = (int64_t)floor(v->num);
	return true;
}

int oidc_verify(oidc_t *o, const char *token, const char *audience,
		hutch_identity_claims_t *claims, hutch_err_t *err)
{
	if (!token)
		return deny(err, "empty");
	size_t len = strlen(token);
	if (len == 0 || len > JWT_MAX_LEN)
		return deny(err, "empty or too long");
	const char *d1 = memchr(token, '.', len);
	const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token)) : NULL;
	if (!d1 || !d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return deny(err, "not a compact JWS (three parts)");
	size_t hlen = (size_t)(d1 - token), plen = (size_t)(d2 - d1 - 1);
	size_t slen = len - (size_t)(d2 + 1 - token);
	_cleanup_free_ uint8_t *hbuf = xmalloc(hlen + 4), *pbuf = xmalloc(plen + 4);
	uint8_t sig[80];
	long hn = b64url_decode(token, hlen, hbuf);
	long pn = b64url_decode(d1 + 1, plen, pbuf);
	if (hn <= 0 || pn <= 0)
		return deny(err, "bad base64url");
	if (slen > 100)
		return deny(err, "signature is not 64 bytes");
	long sn = b64url_decode(d2 + 1, slen, sig);
	if (sn != 64)
		return deny(err, "signature is not 64 bytes");
	if (!scalar_ok(sig) || !scalar_ok(sig + 32))
		return deny(err, "signature r or s out of range");

	jv_t header, payload;
	if (jv_parse((const char *)hbuf, (size_t)hn, &header) < 0 || header.type != JV_OBJECT) {
		if (header.type != JV_NONE)
			jv_free(&header);
		return deny(err, "header is not a JSON object");
	}
	const jv_t *alg = jv_get(&header, "alg"), *kid = jv_get(&header, "kid");
	const jv_t *typ = jv_get(&header, "typ");
	int r = 0;
	if (!alg || alg->type != JV_STRING || strcmp(alg->str, "ES256") != 0)
		r = deny(err, "alg must be ES256");
	else if (jv_get(&header, "crit"))
		r = deny(err, "unsupported crit header");
	else if (typ && (typ->type != JV_STRING || strcasecmp(typ->str, "JWT") != 0))
		r = deny(err, "typ must be JWT");
	else if (!kid || kid->type != JV_STRING)
		r = deny(err, "no kid");
	if (r < 0) {
		jv_free(&header);
		return r;
	}
	char key_id[64];
	snprintf(key_id, sizeof key_id, "%s", kid->str);
	bool kid_fits = strlen(kid->str) < sizeof key_id;
	jv_free(&header);
	if (!kid_fits)
		return deny(err, "unknown kid");

	/* The signature, by the named key. */
	bool found = false, good = false;
	pthread_mutex_lock(&o->lock);
	for (size_t i = 0; i < o->n_keys; i++) {
		if (strcmp(o->keys[i].kid, key_id) == 0) {
			found = true;
			good = verify_es256(o->keys[i].pkey, token, (size_t)(d2 - token), sig);
			break;
		}
	}
	pthread_mutex_unlock(&o->lock);
	if (!found)
		return deny(err, "unknown kid");
	if (!good)
		return deny(err, "bad signature");

	/* Only now the claims. */
	if (jv_parse((const char *)pbuf, (size_t)pn, &payload) < 0 || payload.type != JV_OBJECT) {
		if (payload.type != JV_NONE)
			jv_free(&payload);
		return deny(err, "payload is not a JSON object");
	}
	hutch_identity_claims_t c = {.size = sizeof c};
	const char *want_aud = audience && *audience ? audience : o->cfg->default_audience;
	const jv_t *iss = jv_get(&payload, "iss"), *aud = jv_get(&payload, "aud");
	int64_t now = oidc_now(), skew = o->cfg->clock_skew_ms / 1000;
	bool aud_ok = false;
	if (aud && aud->type == JV_STRING) {
		aud_ok = strcmp(aud->str, want_aud) == 0;
	} else if (aud && aud->type == JV_ARRAY) {
		for (size_t i = 0; i < aud->n; i++)
			if (aud->items[i].type == JV_STRING && strcmp(aud->items[i].str, want_aud) == 0)
				aud_ok = true;
	}
	if (!iss || iss->type != JV_STRING || strcmp(iss->str, o->cfg->issuer) != 0)
		r = deny(err, "wrong issuer");
	else if (!aud_ok)
		r = deny(err, "wrong audience");
	else if (!time_claim(&payload, "exp", true, &c.expires_unix) ||
		 !time_claim(&payload, "nbf", false, &c.not_before_unix) ||
		 !time_claim(&payload, "iat", false, &c.issued_unix))
		r = deny(err, "exp, nbf or iat is not a time");
	else if (now >= c.expires_unix + skew)
		r = deny(err, "expired");
	else if (c.not_before_unix && now + skew < c.not_before_unix)
		r = deny(err, "not yet valid");
	else if (c.issued_unix && now + skew < c.issued_unix)
		r = deny(err, "issued in the future");
	else if (!copy_claim(&payload, "iss", c.issuer, sizeof c.issuer) ||
		 !copy_claim(&payload, "sub", c.subject, sizeof c.subject) ||
		 !copy_claim(&payload, "tenant", c.tenant, sizeof c.tenant) ||
		 !copy_claim(&payload, "sandbox_id", c.sandbox_id, sizeof c.sandbox_id) ||
		 !copy_claim(&payload, "sandbox_name", c.sandbox_name, sizeof c.sandbox_name) ||
		 !copy_claim(&payload, "image_digest", c.image_digest, sizeof c.image_digest) ||
		 !copy_claim(&payload, "jti", c.token_id, sizeof c.token_id))
		r = deny(err, "a claim has the wrong type or length");
	jv_free(&payload);
	if (r < 0)
		return r;
	snprintf(c.audience, sizeof c.audience, "%s", want_aud);
	snprintf(c.key_id, sizeof c.key_id, "%s", key_id);
	if (claims) {
		uint32_t size = claims->size && claims->size < sizeof c ? claims->size : sizeof c;
		memcpy(claims, &c, size);
		claims->size = size;
	}
	return 0;
}
