/*
 * policy.c: hostname patterns, CIDRs, and the compiled rules of a sandbox
 * (see policy.h).
 */
#include "policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cleanup.h"

/* ---- CIDRs ---- */

static size_t family_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

int eg_cidr_parse(const char *text, eg_cidr_t *out, hutch_err_t *err)
{
	if (!text || !*text)
		return hutch_err_set(err, EINVAL, "empty CIDR");
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	if (alen == 0 || alen >= sizeof addr)
		return hutch_err_set(err, EINVAL, "`%s` is not a CIDR (like 10.0.0.0/8 or 2001:db8::/32)",
				     text);
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	memset(out, 0, sizeof *out);
	if (inet_pton(AF_INET, addr, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, out->addr) == 1)
		out->family = AF_INET6;
	else
		return hutch_err_set(err, EINVAL,
				     "`%s` is not a CIDR: `%s` is not an IPv4 or IPv6 address", text,
				     addr);
	unsigned max = out->family == AF_INET ? 32 : 128;
	unsigned plen = max;
	if (slash) {
		const char *p = slash + 1;
		if (!*p || strlen(p) > 3)
			return hutch_err_set(err, EINVAL, "`%s`: bad prefix length", text);
		plen = 0;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return hutch_err_set(err, EINVAL, "`%s`: bad prefix length", text);
			plen = plen * 10 + (unsigned)(*p - '0');
		}
		if (plen > max)
			return hutch_err_set(err, EINVAL, "`%s`: prefix length %u is over %u", text,
					     plen, max);
	}
	out->plen = (uint8_t)plen;
	size_t n = family_len(out->family);
	for (size_t i = 0; i < n; i++) {
		unsigned bits = i * 8 >= plen ? 0 : plen - i * 8 >= 8 ? 8 : plen - i * 8;
		uint8_t mask = (uint8_t)(bits ? 0xffu << (8 - bits) : 0);
		if (out->addr[i] & ~mask) {
			eg_cidr_t net = *out;
			for (size_t j = i; j < n; j++) {
				unsigned b = j * 8 >= plen ? 0 : plen - j * 8 >= 8 ? 8 : plen - j * 8;
				net.addr[j] &= (uint8_t)(b ? 0xffu << (8 - b) : 0);
			}
			char fixed[64];
			eg_cidr_format(&net, fixed, sizeof fixed);
			return hutch_err_set(err, EINVAL,
					     "`%s` has host bits set (did you mean %s?)", text, fixed);
		}
	}
	return 0;
}

bool eg_cidr_contains(const eg_cidr_t *c, int family, const uint8_t *addr)
{
	if (c->family != family)
		return false;
	unsigned plen = c->plen;
	size_t full = plen / 8;
	if (memcmp(c->addr, addr, full) != 0)
		return false;
	unsigned rest = plen % 8;
	if (rest) {
		uint8_t mask = (uint8_t)(0xffu << (8 - rest));
		if ((addr[full] & mask) != c->addr[full])
			return false;
	}
	return true;
}

void eg_cidr_last(const eg_cidr_t *c, uint8_t out[16])
{
	size_t n = family_len(c->family);
	memset(out, 0, 16);
	for (size_t i = 0; i < n; i++) {
		unsigned bits = i * 8 >= c->plen ? 0 : c->plen - i * 8 >= 8 ? 8 : c->plen - i * 8;
		uint8_t host = (uint8_t)(bits ? 0xffu >> bits : 0xffu);
		out[i] = (uint8_t)(c->addr[i] | host);
	}
}

void eg_cidr_format(const eg_cidr_t *c, char *buf, size_t cap)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(c->family, c->addr, a, sizeof a);
	snprintf(buf, cap, "%s/%u", a, c->plen);
}

static int cidr_cmp(const void *pa, const void *pb)
{
	const eg_cidr_t *a = pa, *b = pb;
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	int c = memcmp(a->addr, b->addr, family_len(a->family));
	if (c)
		return c;
	return a->plen < b->plen ? -1 : a->plen > b->plen ? 1 : 0;
}

size_t eg_cidrs_normalize(eg_cidr_t *v, size_t n)
{
	if (n < 2)
		return n;
	qsort(v, n, sizeof *v, cidr_cmp);
	/* Prefixes nest or are disjoint; sorted, a covered one follows the
	 * last kept prefix that covers it. */
	size_t kept = 1;
	for (size_t i = 1; i < n; i++) {
		const eg_cidr_t *last = &v[kept - 1];
		if (eg_cidr_contains(last, v[i].family, v[i].addr) && last->plen <= v[i].plen)
			continue;
		v[kept++] = v[i];
	}
	return kept;
}

/* ---- hostname patterns ---- */

static bool label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int eg_pattern_normalize(const char *in, char *out, size_t cap, hutch_err_t *err)
{
	if (!in || !*in)
		return hutch_err_set(err, EINVAL, "empty hostname pattern");
	size_t n = strlen(in);
	if (n > 1 && in[n - 1] == '.')
		n--; /* "example.com." is example.com */
	if (n > 253 + 2 || n + 1 > cap)
		return hutch_err_set(err, EINVAL, "hostname pattern `%s` is too long", in);
	for (size_t i = 0; i < n; i++) {
		char c = in[i];
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	if (strcmp(out, "*") == 0 || strcmp(out, "*.") == 0 || strcmp(out, ".") == 0)
		return hutch_err_set(err, EINVAL,
				     "hostname pattern `%s` would match every name: use allow_all instead",
				     in);
	const char *name = out;
	if (out[0] == '*') {
		if (out[1] != '.')
			return hutch_err_set(err, EINVAL,
					     "hostname pattern `%s`: `*` may only stand as the whole first label, as in `*.example.com`",
					     in);
		name = out + 2;
	}
	if (strchr(name, '*'))
		return hutch_err_set(err, EINVAL,
				     "hostname pattern `%s`: `*` may only stand as the whole first label, as in `*.example.com`",
				     in);
	if (!*name)
		return hutch_err_set(err, EINVAL, "hostname pattern `%s` names no domain", in);
	if (strlen(name) > 253)
		return hutch_err_set(err, EINVAL, "hostname pattern `%s` is too long", in);
	unsigned char probe[16];
	if (inet_pton(AF_INET, name, probe) == 1 || strchr(name, ':'))
		return hutch_err_set(err, EINVAL,
				     "`%s` is an address, not a hostname: put it in the CIDR list",
				     in);
	size_t label = 0;
	for (const char *p = name;; p++) {
		if (*p == '.' || *p == '\0') {
			if (label == 0)
				return hutch_err_set(err, EINVAL, "hostname pattern `%s` has an empty label",
						     in);
			if (label > 63)
				return hutch_err_set(err, EINVAL,
						     "hostname pattern `%s` has a label over 63 characters",
						     in);
			if (*p == '\0')
				break;
			label = 0;
			continue;
		}
		if (!label_char(*p))
			return hutch_err_set(err, EINVAL,
					     "hostname pattern `%s`: character `%c` is not allowed (letters, digits, `-`, `_`)",
					     in, *p);
		label++;
	}
	return 0;
}

bool eg_pattern_match(const char *pattern, const char *name)
{
	if (pattern[0] != '*')
		return strcmp(pattern, name) == 0;
	const char *suffix = pattern + 1; /* ".example.com" */
	size_t sl = strlen(suffix), nl = strlen(name);
	/* At least one label before the suffix: "x.example.com" matches,
	 * "example.com" does not. Canonical names have no empty labels. */
	return nl > sl && memcmp(name + nl - sl, suffix, sl) == 0;
}

/* ---- rules ---- */

const char *eg_verdict_name(eg_verdict_t v)
{
	switch (v) {
	case EG_VERDICT_OPEN: return "open";
	case EG_VERDICT_ALLOWED: return "allowed";
	case EG_VERDICT_DENIED: return "denied";
	case EG_VERDICT_UNLISTED: return "unlisted";
	}
	return "?";
}

eg_verdict_t eg_rules_name_verdict(const eg_rules_t *r, const char *name, bool plain,
				   const eg_named_t **match)
{
	if (match)
		*match = NULL;
	if (plain && *name) {
		for (size_t i = 0; i < r->n_deny_hosts; i++)
			if (eg_pattern_match(r->deny_hosts[i].pattern, name)) {
				if (match)
					*match = &r->deny_hosts[i];
				return EG_VERDICT_DENIED;
			}
	}
	if (r->allow_all)
		return EG_VERDICT_OPEN;
	if (plain && *name) {
		for (size_t i = 0; i < r->n_allow_hosts; i++)
			if (eg_pattern_match(r->allow_hosts[i].pattern, name)) {
				if (match)
					*match = &r->allow_hosts[i];
				return EG_VERDICT_ALLOWED;
			}
	}
	return EG_VERDICT_UNLISTED;
}

const eg_cidr_t *eg_rules_denied_cidr(const eg_rules_t *r, int family, const uint8_t *addr)
{
	for (size_t i = 0; i < r->n_deny_cidrs; i++)
		if (eg_cidr_contains(&r->deny_cidrs[i], family, addr))
			return &r->deny_cidrs[i];
	return NULL;
}

static int check_patterns(const char *policy, const char *field, const char *const *v,
			  hutch_err_t *err)
{
	char buf[300];
	for (size_t i = 0; v && v[i]; i++) {
		int r = eg_pattern_normalize(v[i], buf, sizeof buf, err);
		if (r < 0)
			return hutch_err_prefix(err, "policy %s: %s[%zu]", policy, field, i);
	}
	return 0;
}

static int check_cidrs(const char *policy, const char *field, const char *const *v,
		       hutch_err_t *err)
{
	eg_cidr_t c;
	for (size_t i = 0; v && v[i]; i++) {
		int r = eg_cidr_parse(v[i], &c, err);
		if (r < 0)
			return hutch_err_prefix(err, "policy %s: %s[%zu]", policy, field, i);
	}
	return 0;
}

int eg_policy_validate(const hutch_net_policy_t *p, hutch_err_t *err)
{
	const char *name = p->name && *p->name ? p->name : "(unnamed)";
	int r;
	if ((r = check_patterns(name, "allowed_hostnames", p->allowed_hostnames, err)) < 0 ||
	    (r = check_patterns(name, "denied_hostnames", p->denied_hostnames, err)) < 0 ||
	    (r = check_cidrs(name, "allowed_cidrs", p->allowed_cidrs, err)) < 0 ||
	    (r = check_cidrs(name, "denied_cidrs", p->denied_cidrs, err)) < 0)
		return r;
	return 0;
}

eg_rules_t *eg_rules_new(void)
{
	eg_rules_t *r = xcalloc(1, sizeof *r);
	r->policies = xstrdup("");
	return r;
}

void eg_rules_free(eg_rules_t *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n_allow_hosts; i++) {
		free(r->allow_hosts[i].pattern);
		free(r->allow_hosts[i].policy);
	}
	for (size_t i = 0; i < r->n_deny_hosts; i++) {
		free(r->deny_hosts[i].pattern);
		free(r->deny_hosts[i].policy);
	}
	free(r->allow_hosts);
	free(r->deny_hosts);
	free(r->allow_cidrs);
	free(r->deny_cidrs);
	free(r->policies);
	free(r);
}

static void named_push(eg_named_t **v, size_t *n, const char *pattern, const char *policy)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*v)[i].pattern, pattern) == 0)
			return; /* the first policy naming it is reported */
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[*n].pattern = xstrdup(pattern);
	(*v)[*n].policy = xstrdup(policy);
	(*n)++;
}

static void cidr_push(eg_cidr_t **v, size_t *n, const eg_cidr_t *c)
{
	*v = xrealloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = *c;
}

static int add_patterns(eg_named_t **v, size_t *n, const char *policy, const char *field,
			const char *const *list, hutch_err_t *err)
{
	char buf[300];
	for (size_t i = 0; list && list[i]; i++) {
		if (eg_pattern_normalize(list[i], buf, sizeof buf, err) < 0)
			return hutch_err_prefix(err, "policy %s: %s[%zu]", policy, field, i);
		named_push(v, n, buf, policy);
	}
	return 0;
}

static int add_cidrs(eg_cidr_t **v, size_t *n, const char *policy, const char *field,
		     const char *const *list, hutch_err_t *err)
{
	eg_cidr_t c;
	for (size_t i = 0; list && list[i]; i++) {
		if (eg_cidr_parse(list[i], &c, err) < 0)
			return hutch_err_prefix(err, "policy %s: %s[%zu]", policy, field, i);
		cidr_push(v, n, &c);
	}
	return 0;
}

/* Policy names end up in state files and audit lines: one line each. */
static char *clean_name(const char *s)
{
	char *c = xstrdup(s && *s ? s : "(unnamed)");
	for (char *p = c; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == ',')
			*p = '?';
	return c;
}

int eg_rules_compile(const hutch_net_policy_t *const *ps, size_t n, bool set,
		     bool default_allow, eg_rules_t **out, hutch_err_t *err)
{
	eg_rules_t *r = eg_rules_new();
	if (!set) {
		r->is_default = true;
		r->allow_all = default_allow;
		*out = r;
		return 0;
	}
	strbuf_t names = STRBUF_INIT;
	for (size_t i = 0; i < n; i++) {
		hutch_net_policy_t p = {0};
		memcpy(&p, ps[i], ps[i]->size < sizeof p ? ps[i]->size : sizeof p);
		_cleanup_free_ char *pname = clean_name(p.name);
		int rc;
		if ((rc = add_patterns(&r->allow_hosts, &r->n_allow_hosts, pname, "allowed_hostnames",
				       p.allowed_hostnames, err)) < 0 ||
		    (rc = add_patterns(&r->deny_hosts, &r->n_deny_hosts, pname, "denied_hostnames",
				       p.denied_hostnames, err)) < 0 ||
		    (rc = add_cidrs(&r->allow_cidrs, &r->n_allow_cidrs, pname, "allowed_cidrs",
				    p.allowed_cidrs, err)) < 0 ||
		    (rc = add_cidrs(&r->deny_cidrs, &r->n_deny_cidrs, pname, "denied_cidrs",
				    p.denied_cidrs, err)) < 0) {
			sb_free(&names);
			eg_rules_free(r);
			return rc;
		}
		if (p.allow_all)
			r->allow_all = true;
		if (names.len)
			sb_putc(&names, ',');
		sb_append(&names, pname);
	}
	r->n_allow_cidrs = eg_cidrs_normalize(r->allow_cidrs, r->n_allow_cidrs);
	r->n_deny_cidrs = eg_cidrs_normalize(r->deny_cidrs, r->n_deny_cidrs);
	free(r->policies);
	r->policies = sb_steal(&names);
	*out = r;
	return 0;
}

const char *eg_rules_label(const eg_rules_t *r)
{
	if (r->is_default)
		return "(default)";
	return *r->policies ? r->policies : "(none)";
}

void eg_rules_write(const eg_rules_t *r, strbuf_t *out)
{
	char buf[80];
	sb_printf(out, "rules %s\n", r->is_default ? "default" : "set");
	sb_printf(out, "allow_all %d\n", r->allow_all ? 1 : 0);
	sb_printf(out, "policies %s\n", r->policies);
	for (size_t i = 0; i < r->n_allow_hosts; i++)
		sb_printf(out, "allow_host %s %s\n", r->allow_hosts[i].pattern,
			  r->allow_hosts[i].policy);
	for (size_t i = 0; i < r->n_deny_hosts; i++)
		sb_printf(out, "deny_host %s %s\n", r->deny_hosts[i].pattern,
			  r->deny_hosts[i].policy);
	for (size_t i = 0; i < r->n_allow_cidrs; i++) {
		eg_cidr_format(&r->allow_cidrs[i], buf, sizeof buf);
		sb_printf(out, "allow_cidr %s\n", buf);
	}
	for (size_t i = 0; i < r->n_deny_cidrs; i++) {
		eg_cidr_format(&r->deny_cidrs[i], buf, sizeof buf);
		sb_printf(out, "deny_cidr %s\n", buf);
	}
}

int eg_rules_read_line(eg_rules_t *r, const char *key, const char *value, hutch_err_t *err)
{
	if (strcmp(key, "rules") == 0) {
		r->is_default = strcmp(value, "default") == 0;
	} else if (strcmp(key, "allow_all") == 0) {
		r->allow_all = strcmp(value, "1") == 0;
	} else if (strcmp(key, "policies") == 0) {
		free(r->policies);
		r->policies = xstrdup(value);
	} else if (strcmp(key, "allow_host") == 0 || strcmp(key, "deny_host") == 0) {
		const char *sp = strchr(value, ' ');
		_cleanup_free_ char *pat = sp ? xstrndup(value, (size_t)(sp - value)) : xstrdup(value);
		char buf[300];
		if (eg_pattern_normalize(pat, buf, sizeof buf, err) < 0)
			return -EINVAL;
		if (key[0] == 'a')
			named_push(&r->allow_hosts, &r->n_allow_hosts, buf, sp ? sp + 1 : "");
		else
			named_push(&r->deny_hosts, &r->n_deny_hosts, buf, sp ? sp + 1 : "");
	} else if (strcmp(key, "allow_cidr") == 0 || strcmp(key, "deny_cidr") == 0) {
		eg_cidr_t c;
		if (eg_cidr_parse(value, &c, err) < 0)
			return -EINVAL;
		if (key[0] == 'a')
			cidr_push(&r->allow_cidrs, &r->n_allow_cidrs, &c);
		else
			cidr_push(&r->deny_cidrs, &r->n_deny_cidrs, &c);
	} else {
		return hutch_err_set(err, EINVAL, "unknown rules key `%s`", key);
	}
	return 0;
}
