/*
 * exchange.c: token exchange (in the manner of RFC 8693): a sandbox trades
 * its identity token for a short-lived credential of a configured upstream,
 * if the exchange policy lets that workload have it.
 *
 * The policy is a TOML file (exchange_rules) of [[upstream]] tables:
 *
 *   [[upstream]]
 *   name = "github"                  # what the sandbox asks for (resource)
 *   type = "static"                  # the credential is read from a file
 *   credential_file = "/etc/hutch/credentials/github"
 *   ttl = "10m"                      # expires_in reported to the sandbox
 *   tenants = ["acme"]               # who may have it (empty: every tenant)
 *   sandbox_names = ["agent-*"]      # and which sandboxes (globs; empty: all)
 *
 *   [[upstream]]
 *   name = "billing-api"
 *   type = "jwt"                     # a JWT from this issuer for another audience
 *   audience = "https://billing.internal"
 *   ttl = "5m"
 *
 * Every exchange, allowed or not, is one audit line (sandbox, tenant,
 * resource, verdict, the subject token's jti); the credential never is.
 */
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "oidc.h"
#include "toml.h"

#define CREDENTIAL_MAX (16 * 1024)

struct exchange_rule {
	char *name;
	bool jwt;
	char *credential_file;
	char *audience;
	int64_t ttl_s;
	char **tenants;       /* NULL-terminated; NULL: any */
	char **sandbox_names; /* globs; NULL: any */
};

static void rule_free(exchange_rule_t *r)
{
	free(r->name);
	free(r->credential_file);
	free(r->audience);
	strv_free(r->tenants);
	strv_free(r->sandbox_names);
}

void oidc_rules_free(oidc_t *o)
{
	for (size_t i = 0; i < o->n_rules; i++)
		rule_free(&o->rules[i]);
	free(o->rules);
	o->rules = NULL;
	o->n_rules = 0;
}

/* "90s", "10m", "1h", or a bare number of seconds. */
static int64_t parse_ttl(const char *s)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	if (end == s || v <= 0)
		return -1;
	if (*end == 0 || strcmp(end, "s") == 0)
		return v;
	if (strcmp(end, "m") == 0)
		return v * 60;
	if (strcmp(end, "h") == 0)
		return v * 3600;
	return -1;
}

static int rule_err(hutch_err_t *err, const char *file, const toml_value_t *at, const char *fmt,
		    const char *what)
{
	return hutch_err_set(err, -EINVAL, "%s:%d:%d: %s%s", file, at ? at->line : 1,
			     at ? at->col : 1, fmt, what ? what : "");
}

static int string_list(const char *file, const toml_value_t *v, char ***out, hutch_err_t *err)
{
	if (v->type != TOML_ARRAY)
		return rule_err(err, file, v, "expected an array of strings", NULL);
	for (size_t i = 0; i < v->u.array.len; i++) {
		const toml_value_t *it = v->u.array.items[i];
		if (it->type != TOML_STRING || strlen(it->u.str.ptr) != it->u.str.len ||
		    !it->u.str.len)
			return rule_err(err, file, it, "expected a non-empty string", NULL);
		strv_push(out, xstrdup(it->u.str.ptr));
	}
	return 0;
}

static int parse_rule(oidc_t *o, const char *file, const toml_value_t *t, exchange_rule_t *r,
		      hutch_err_t *err)
{
	if (t->type != TOML_TABLE)
		return rule_err(err, file, t, "[[upstream]] must be a table", NULL);
	const char *type = NULL;
	const toml_value_t *type_at = t;
	r->ttl_s = o->cfg->token_ttl_ms / 1000;
	for (size_t i = 0; i < t->u.table.len; i++) {
		const toml_kv_t *kv = &t->u.table.items[i];
		const toml_value_t *v = kv->value;
		bool is_str = v->type == TOML_STRING && strlen(v->u.str.ptr) == v->u.str.len;
		if (strcmp(kv->key, "tenants") == 0) {
			if (string_list(file, v, &r->tenants, err) < 0)
				return -EINVAL;
			continue;
		}
		if (strcmp(kv->key, "sandbox_names") == 0) {
			if (string_list(file, v, &r->sandbox_names, err) < 0)
				return -EINVAL;
			continue;
		}
		if (!is_str)
			return rule_err(err, file, v, "expected a string for ", kv->key);
		const char *s = v->u.str.ptr;
		if (strcmp(kv->key, "name") == 0) {
			free(r->name);
			r->name = xstrdup(s);
		} else if (strcmp(kv->key, "type") == 0) {
			type = s;
			type_at = v;
		} else if (strcmp(kv->key, "credential_file") == 0) {
			if (s[0] != '/')
				return rule_err(err, file, v, "credential_file must be an absolute path",
						NULL);
			r->credential_file = xstrdup(s);
		} else if (strcmp(kv->key, "audience") == 0) {
			r->audience = xstrdup(s);
		} else if (strcmp(kv->key, "ttl") == 0) {
			r->ttl_s = parse_ttl(s);
			if (r->ttl_s <= 0 || r->ttl_s * 1000 > o->cfg->token_ttl_ms)
				return rule_err(err, file, v,
						"ttl must be a duration (\"5m\") no longer than token_ttl",
						NULL);
		} else {
			const toml_value_t *at = v;
			return hutch_err_set(err, -EINVAL, "%s:%d:%d: unknown key `%s` in [[upstream]]",
					     file, at->line, at->col, kv->key);
		}
	}
	if (!r->name || !*r->name)
		return rule_err(err, file, t, "[[upstream]] needs a name", NULL);
	if (!type || (strcmp(type, "static") != 0 && strcmp(type, "jwt") != 0))
		return rule_err(err, file, type_at, "type must be \"static\" or \"jwt\" in upstream ",
				r->name);
	r->jwt = strcmp(type, "jwt") == 0;
	if (r->jwt && (!r->audience || !*r->audience))
		return rule_err(err, file, t, "a jwt upstream needs an audience: ", r->name);
	if (!r->jwt && !r->credential_file)
		return rule_err(err, file, t, "a static upstream needs credential_file: ", r->name);
	struct stat st;
	if (r->credential_file && stat(r->credential_file, &st) == 0 && (st.st_mode & S_IRWXO))
		return rule_err(err, file, t, "credential_file is readable by others (chmod o-rwx): ",
				r->credential_file);
	return 0;
}

int oidc_rules_load(oidc_t *o, hutch_err_t *err)
{
	const char *file = o->cfg->exchange_rules;
	if (!file || !*file)
		return 0;
	_cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hutch_err_sys(err, errno, "exchange rules %s", file);
	struct stat st;
	if (fstat(fd, &st) < 0 || st.st_size > 1024 * 1024)
		return hutch_err_set(err, -EFBIG, "exchange rules %s: too large", file);
	_cleanup_free_ char *src = xmalloc((size_t)st.st_size + 1);
	ssize_t n = read(fd, src, (size_t)st.st_size);
	if (n < 0)
		return hutch_err_sys(err, errno, "read %s", file);
	toml_value_t *doc = NULL;
	toml_error_t terr;
	if (toml_parse(src, (size_t)n, &doc, &terr) < 0)
		return hutch_err_set(err, -EINVAL, "%s:%d:%d: %s", file, terr.line, terr.col,
				     terr.message);
	int r = 0;
	for (size_t i = 0; i < doc->u.table.len && r == 0; i++) {
		const toml_kv_t *kv = &doc->u.table.items[i];
		if (strcmp(kv->key, "upstream") != 0) {
			r = hutch_err_set(err, -EINVAL, "%s:%d:%d: unknown key `%s` (only [[upstream]])",
					  file, kv->line, kv->col, kv->key);
			break;
		}
		if (kv->value->type != TOML_ARRAY) {
			r = rule_err(err, file, kv->value, "upstream must be an array of tables", NULL);
			break;
		}
		for (size_t j = 0; j < kv->value->u.array.len; j++) {
			exchange_rule_t rule = {0};
			r = parse_rule(o, file, kv->value->u.array.items[j], &rule, err);
			if (r == 0) {
				for (size_t k = 0; k < o->n_rules; k++)
					if (strcmp(o->rules[k].name, rule.name) == 0)
						r = rule_err(err, file, kv->value->u.array.items[j],
							     "two upstreams named ", rule.name);
			}
			if (r < 0) {
				rule_free(&rule);
				break;
			}
			o->rules = xrealloc(o->rules, (o->n_rules + 1) * sizeof *o->rules);
			o->rules[o->n_rules++] = rule;
		}
	}
	toml_free(doc);
	if (r < 0)
		oidc_rules_free(o);
	return r;
}

static bool rule_allows(const exchange_rule_t *r, const hutch_identity_claims_t *c)
{
	if (r->tenants) {
		bool ok = false;
		for (char **t = r->tenants; *t; t++)
			if (strcmp(*t, c->tenant) == 0)
				ok = true;
		if (!ok)
			return false;
	}
	if (r->sandbox_names) {
		bool ok = false;
		for (char **g = r->sandbox_names; *g; g++)
			if (c->sandbox_name[0] && fnmatch(*g, c->sandbox_name, 0) == 0)
				ok = true;
		if (!ok)
			return false;
	}
	return true;
}

static int read_credential(const char *path, strbuf_t *out, hutch_err_t *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hutch_err_set(err, -EIO, "the upstream's credential is not available");
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (st.st_mode & S_IRWXO))
		return hutch_err_set(err, -EIO, "the upstream's credential file is not a "
						"regular file kept from other users");
	char buf[CREDENTIAL_MAX + 1];
	ssize_t n = read(fd, buf, sizeof buf);
	if (n <= 0 || n > CREDENTIAL_MAX)
		return hutch_err_set(err, -EIO, "the upstream's credential is not available");
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		n--;
	if (n == 0 || memchr(buf, 0, (size_t)n))
		return hutch_err_set(err, -EIO, "the upstream's credential is not available");
	sb_append_n(out, buf, (size_t)n);
	explicit_bzero(buf, sizeof buf);
	return 0;
}

static void audit(oidc_t *o, const hutch_identity_claims_t *c, const char *resource,
		  const char *verdict, const char *reason)
{
	_cleanup_sb_ strbuf_t f = STRBUF_INIT;
	sb_append(&f, "\"sandbox\":");
	sb_json_str(&f, c ? c->sandbox_id : "");
	sb_append(&f, ",\"tenant\":");
	sb_json_str(&f, c ? c->tenant : "");
	sb_append(&f, ",\"resource\":");
	sb_json_str(&f, resource);
	sb_append(&f, ",\"verdict\":");
	sb_json_str(&f, verdict);
	sb_append(&f, ",\"subject_jti\":");
	sb_json_str(&f, c ? c->token_id : "");
	if (reason) {
		sb_append(&f, ",\"reason\":");
		sb_json_str(&f, reason);
	}
	o->host->audit(o->host, "identity.exchange", f.buf);
	char labels[64];
	snprintf(labels, sizeof labels, "verdict=%s", verdict);
	o->host->metric_add(o->host, "identity_exchanges_total", labels, 1);
}

int oidc_exchange(oidc_t *o, const char *subject_token, const char *resource,
		  hutch_identity_token_t *out, hutch_err_t *err)
{
	hutch_identity_claims_t c = {.size = sizeof c};
	char safe_resource[128];
	snprintf(safe_resource, sizeof safe_resource, "%s", resource ? resource : "");
	for (char *p = safe_resource; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	const char *aud = o->cfg->exchange_audience && *o->cfg->exchange_audience
				  ? o->cfg->exchange_audience
				  : o->cfg->default_audience;
	int r = oidc_verify(o, subject_token, aud, &c, err);
	if (r < 0) {
		audit(o, NULL, safe_resource, "deny", err ? err->message : "invalid subject token");
		return r;
	}
	if (oidc_revoked(o, c.sandbox_id)) {
		audit(o, &c, safe_resource, "deny", "sandbox stopped");
		return hutch_err_set(err, -EACCES, "sandbox %s has stopped", c.sandbox_id);
	}
	const exchange_rule_t *rule = NULL;
	for (size_t i = 0; i < o->n_rules; i++)
		if (resource && strcmp(o->rules[i].name, resource) == 0)
			rule = &o->rules[i];
	/* Unknown and forbidden look the same to the sandbox. */
	if (!rule || !rule_allows(rule, &c)) {
		audit(o, &c, safe_resource, "deny", rule ? "policy" : "no such upstream");
		return hutch_err_set(err, -EACCES, "no credential for `%s` for this sandbox",
				     safe_resource);
	}
	_cleanup_sb_ strbuf_t cred = STRBUF_INIT;
	int64_t now = oidc_now();
	if (rule->jwt) {
		_cleanup_sb_ strbuf_t claims = STRBUF_INIT;
		char jti[33];
		oidc_new_jti(jti);
		sb_append(&claims, "{\"iss\":");
		sb_json_str(&claims, o->cfg->issuer);
		sb_append(&claims, ",\"sub\":");
		sb_json_str(&claims, c.subject);
		sb_append(&claims, ",\"aud\":");
		sb_json_str(&claims, rule->audience);
		sb_printf(&claims, ",\"iat\":%lld,\"nbf\":%lld,\"exp\":%lld,\"jti\":\"%s\"",
			  (long long)now, (long long)now, (long long)(now + rule->ttl_s), jti);
		sb_append(&claims, ",\"tenant\":");
		sb_json_str(&claims, c.tenant);
		sb_append(&claims, ",\"sandbox_id\":");
		sb_json_str(&claims, c.sandbox_id);
		if (c.sandbox_name[0]) {
			sb_append(&claims, ",\"sandbox_name\":");
			sb_json_str(&claims, c.sandbox_name);
		}
		sb_append(&claims, ",\"act\":{\"sub\":");
		sb_json_str(&claims, c.subject);
		sb_append(&claims, "}}");
		if ((r = oidc_sign_claims(o, claims.buf, &cred, err)) < 0) {
			audit(o, &c, safe_resource, "error", "signing failed");
			return r;
		}
	} else if ((r = read_credential(rule->credential_file, &cred, err)) < 0) {
		o->host->log(o->host, HUTCH_LOG_WARN, "upstream %s: cannot read %s", rule->name,
			     rule->credential_file);
		audit(o, &c, safe_resource, "error", "credential unavailable");
		return r;
	}
	if (cred.len + 1 > out->token_cap) {
		explicit_bzero(cred.buf, cred.len);
		audit(o, &c, safe_resource, "error", "credential too large");
		return hutch_err_set(err, -ERANGE, "credential does not fit");
	}
	memcpy(out->token, cred.buf, cred.len + 1);
	explicit_bzero(cred.buf, cred.len);
	out->expires_unix = now + rule->ttl_s;
	audit(o, &c, safe_resource, "allow", NULL);
	return 0;
}
