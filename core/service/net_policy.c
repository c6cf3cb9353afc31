#include "net_policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "names.h"
#include "strbuf.h"

#define MAX_ENTRIES 1024

/* "example.com", "*.example.com": labels of [a-z0-9-_], 1-63 each, 253
 * total; a wildcard only as the whole first label. Lower-cases in place
 * and drops one trailing dot. */
static int check_hostname(char *h, hutch_err_t *err)
{
	size_t n = strlen(h);
	if (n > 0 && h[n - 1] == '.')
		h[--n] = '\0';
	for (char *p = h; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (n == 0)
		return hutch_err_set(err, EINVAL, "an empty hostname is not a pattern");
	if (strcmp(h, "*") == 0)
		return hutch_err_set(err, EINVAL,
				     "hostname pattern `*` would match everything: use allow_all instead");
	if (n > 253)
		return hutch_err_set(err, EINVAL, "hostname `%.40s...` is longer than 253 characters", h);
	const char *p = h;
	if (p[0] == '*') {
		if (p[1] != '.')
			return hutch_err_set(err, EINVAL,
					     "hostname pattern `%s`: a wildcard must be a whole leading label (`*.example.com`)",
					     h);
		p += 2;
		if (!strchr(p, '.'))
			return hutch_err_set(err, EINVAL,
					     "hostname pattern `%s` is too broad: name at least two labels after `*.`",
					     h);
	}
	size_t label = 0;
	for (; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return hutch_err_set(err, EINVAL, "hostname `%s` has an empty label", h);
			label = 0;
			continue;
		}
		if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_'))
			return hutch_err_set(err, EINVAL, "hostname `%s`: `%c` is not allowed (wildcards only as `*.` at the start)",
					     h, *p);
		if (++label > 63)
			return hutch_err_set(err, EINVAL, "hostname `%s` has a label over 63 characters", h);
	}
	if (label == 0)
		return hutch_err_set(err, EINVAL, "hostname `%s` has an empty label", h);
	return 0;
}

/* "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128). */
static int check_cidr(char *c, hutch_err_t *err)
{
	char addr[64];
	const char *slash = strchr(c, '/');
	size_t al = slash ? (size_t)(slash - c) : strlen(c);
	if (al == 0 || al >= sizeof addr)
		return hutch_err_set(err, EINVAL, "`%s` is not a CIDR", c);
	memcpy(addr, c, al);
	addr[al] = '\0';
	unsigned char buf[16];
	int family = inet_pton(AF_INET, addr, buf) == 1 ? AF_INET
		   : inet_pton(AF_INET6, addr, buf) == 1 ? AF_INET6 : 0;
	if (!family)
		return hutch_err_set(err, EINVAL, "`%s` is not a CIDR (an IPv4 or IPv6 address with an optional /prefix)",
				     c);
	int max = family == AF_INET ? 32 : 128;
	if (slash) {
		char *end;
		long len = strtol(slash + 1, &end, 10);
		if (!slash[1] || *end || len < 0 || len > max)
			return hutch_err_set(err, EINVAL, "`%s`: the prefix length must be 0-%d", c, max);
	}
	return 0;
}

static int check_list(char **items, size_t n, const char *what, bool hosts, hutch_err_t *err)
{
	if (n > MAX_ENTRIES)
		return hutch_err_set(err, EINVAL, "%s: at most %d entries", what, MAX_ENTRIES);
	for (size_t i = 0; i < n; i++) {
		if (!items[i] || strlen(items[i]) > 300)
			return hutch_err_set(err, EINVAL, "%s: entry %zu is too long", what, i + 1);
		int r = hosts ? check_hostname(items[i], err) : check_cidr(items[i], err);
		if (r < 0)
			return hutch_err_prefix(err, "%s", what);
	}
	return 0;
}

int net_policy_check(Hutch__V1__NetworkPolicy *p, hutch_err_t *err)
{
	if (!p->name || !object_name_valid(p->name))
		return hutch_err_set(err, EINVAL,
				     "policy name `%s`: use 1-63 characters of letters, digits, - _ .",
				     p->name ? p->name : "");
	if (p->description && strlen(p->description) > 1024)
		return hutch_err_set(err, EINVAL, "description: at most 1024 characters");
	int r;
	if ((r = check_list(p->allowed_hostnames, p->n_allowed_hostnames, "allowed_hostnames", true, err)) < 0 ||
	    (r = check_list(p->denied_hostnames, p->n_denied_hostnames, "denied_hostnames", true, err)) < 0 ||
	    (r = check_list(p->allowed_cidrs, p->n_allowed_cidrs, "allowed_cidrs", false, err)) < 0 ||
	    (r = check_list(p->denied_cidrs, p->n_denied_cidrs, "denied_cidrs", false, err)) < 0)
		return hutch_err_prefix(err, "policy `%s`", p->name);
	return 0;
}

typedef struct load_ctx {
	Hutch__V1__NetworkPolicy *p;
} load_ctx_t;

static int on_obj(void *ud, const store_obj_t *o)
{
	load_ctx_t *c = ud;
	c->p = hutch__v1__network_policy__unpack(NULL, o->len, o->data);
	return 0;
}

int net_policy_load(store_t *st, const char *tenant, const char *name,
		    Hutch__V1__NetworkPolicy **out, hutch_err_t *err)
{
	load_ctx_t c = {0};
	_cleanup_free_ char *id = xasprintf("%s/%s", tenant, name);
	int r = store_get(st, NET_POLICY_KIND, tenant, id, on_obj, &c, err);
	if (r == -ENOENT)
		return hutch_err_set(err, ENOENT, "network policy `%s` not found", name);
	if (r < 0)
		return r;
	if (!c.p)
		return hutch_err_set(err, EIO, "network policy `%s`: stored record is unreadable", name);
	*out = c.p;
	return 0;
}

int net_policy_save(store_t *st, const Hutch__V1__NetworkPolicy *p, hutch_err_t *err)
{
	size_t n = protobuf_c_message_get_packed_size(&p->base);
	_cleanup_free_ uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(&p->base, buf);
	_cleanup_free_ char *id = xasprintf("%s/%s", p->tenant, p->name);
	return store_put(st, NET_POLICY_KIND, p->tenant, id, p->name, buf, n, err);
}

/* protobuf-c's counted arrays -> NULL-terminated ones. */
static const char *const *terminated(char **items, size_t n)
{
	const char **v = xcalloc(n + 1, sizeof *v);
	for (size_t i = 0; i < n; i++)
		v[i] = items[i];
	return v;
}

hutch_net_policy_t *net_policy_view(const Hutch__V1__NetworkPolicy *p)
{
	hutch_net_policy_t *v = xcalloc(1, sizeof *v);
	v->size = sizeof *v;
	v->name = p->name;
	v->allow_all = p->allow_all;
	v->allowed_hostnames = terminated(p->allowed_hostnames, p->n_allowed_hostnames);
	v->allowed_cidrs = terminated(p->allowed_cidrs, p->n_allowed_cidrs);
	v->denied_hostnames = terminated(p->denied_hostnames, p->n_denied_hostnames);
	v->denied_cidrs = terminated(p->denied_cidrs, p->n_denied_cidrs);
	return v;
}

static void view_free(hutch_net_policy_t *v)
{
	if (!v)
		return;
	free((void *)v->allowed_hostnames);
	free((void *)v->allowed_cidrs);
	free((void *)v->denied_hostnames);
	free((void *)v->denied_cidrs);
	free(v);
}

static void set_release(net_policy_set_t *set)
{
	Hutch__V1__NetworkPolicy **src = set->owner;
	for (size_t i = 0; i < set->n; i++) {
		view_free(set->items[i]);
		protobuf_c_message_free_unpacked(&src[i]->base, NULL);
	}
	free(set->items);
	free(src);
}

int net_policy_set_load(void *store, const char *tenant, char *const *names, size_t n,
			net_policy_set_t *set, hutch_err_t *err)
{
	Hutch__V1__NetworkPolicy **src = xcalloc(n + 1, sizeof *src);
	*set = (net_policy_set_t){
		.items = xcalloc(n + 1, sizeof *set->items),
		.owner = src,
		.release = set_release,
	};
	for (size_t i = 0; i < n; i++) {
		int r = net_policy_load(store, tenant, names[i], &src[i], err);
		if (r < 0) {
			net_policy_set_free(set);
			return r;
		}
		set->items[i] = net_policy_view(src[i]);
		set->n = i + 1;
	}
	return 0;
}
