/*
 * proxy_route.c: what a policy fills in for one request (proxy.h's
 * proxy_route_* functions) and how upstreams are named.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/un.h>

#include "proxy_priv.h"

void proxy_route_forward(proxy_route_t *r, const proxy_upstream_t *up)
{
	r->kind = ROUTE_FORWARD;
	r->up = *up;
	r->up.unix_path[sizeof r->up.unix_path - 1] = '\0';
	r->up.sni[sizeof r->up.sni - 1] = '\0';
}

void proxy_route_local(proxy_route_t *r, int status, const char *content_type,
		       const void *body, size_t len)
{
	r->kind = ROUTE_LOCAL;
	r->status = status >= 100 && status <= 999 ? status : 500;
	free(r->content_type);
	r->content_type = content_type ? xstrdup(content_type) : NULL;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
	if (body && len) {
		r->body = xmalloc(len);
		memcpy(r->body, body, len);
		r->body_len = len;
	}
}

/* A header value may not carry CR, LF or NUL (response splitting); a name
 * must be a token. */
static bool header_ok(const char *name, const char *value)
{
	if (!name || !*name)
		return false;
	for (const char *p = name; *p; p++)
		if (*p <= ' ' || *p == ':' || *p >= 127)
			return false;
	for (const char *p = value; p && *p; p++)
		if (*p == '\r' || *p == '\n')
			return false;
	return !proxy_hop_by_hop(name, NULL);
}

static bool in_arena(const struct proxy_route *r, const char *p)
{
	return p >= r->arena && p < r->arena + sizeof r->arena;
}

/* A copy of s (len bytes) in the route's arena, or on the heap once the
 * arena is full. */
static char *route_strdup(struct proxy_route *r, const char *s, size_t len)
{
	if (len + 1 > sizeof r->arena - r->arena_used)
		return xstrndup(s, len);
	char *p = r->arena + r->arena_used;
	memcpy(p, s, len);
	p[len] = '\0';
	r->arena_used += len + 1;
	return p;
}

static void route_strfree(struct proxy_route *r, char *p)
{
	if (p && !in_arena(r, p))
		free(p);
}

static void set_value(struct proxy_route *r, struct proxy_edit *e, const char *value)
{
	route_strfree(r, e->value);
	e->value_len = value ? (uint32_t)strlen(value) : 0;
	e->value = value ? route_strdup(r, value, e->value_len) : NULL;
}

static void add_edit(struct proxy_route *r, struct proxy_edit *e, size_t *n, const char *name,
		     const char *value)
{
	if (!header_ok(name, value))
		return;
	size_t len = strlen(name);
	for (size_t i = 0; i < *n; i++) {
		if (e[i].name_len == len && strcasecmp(e[i].name, name) == 0) {
			set_value(r, &e[i], value);
			return;
		}
	}
	if (*n >= PROXY_MAX_EDITS)
		return;
	e[*n].name_len = (uint32_t)len;
	e[*n].name = route_strdup(r, name, e[*n].name_len);
	e[*n].value = NULL;
	set_value(r, &e[*n], value);
	(*n)++;
}

void proxy_route_request_header(proxy_route_t *r, const char *name, const char *value)
{
	add_edit(r, r->req_edits, &r->n_req_edits, name, value);
}

void proxy_route_response_header(proxy_route_t *r, const char *name, const char *value)
{
	add_edit(r, r->resp_edits, &r->n_resp_edits, name, value);
}

void proxy_route_set_path(proxy_route_t *r, const char *path)
{
	if (!path || path[0] != '/' || strpbrk(path, " \r\n"))
		return;
	free(r->path);
	r->path = xstrdup(path);
}

void proxy_route_clear(struct proxy_route *r)
{
	free(r->content_type);
	free(r->body);
	free(r->path);
	for (size_t i = 0; i < r->n_req_edits; i++) {
		route_strfree(r, r->req_edits[i].name);
		route_strfree(r, r->req_edits[i].value);
	}
	for (size_t i = 0; i < r->n_resp_edits; i++) {
		route_strfree(r, r->resp_edits[i].name);
		route_strfree(r, r->resp_edits[i].value);
	}
	r->content_type = r->body = r->path = NULL;
	r->n_req_edits = r->n_resp_edits = 0;
	r->arena_used = 0;
	r->kind = ROUTE_NONE;
	r->deferred = false;
}

bool proxy_upstream_same(const proxy_upstream_t *a, const proxy_upstream_t *b)
{
	if (a->tls != b->tls || (a->unix_path[0] != '\0') != (b->unix_path[0] != '\0'))
		return false;
	if (a->tls && (a->tls_ctx != b->tls_ctx || strcmp(a->sni, b->sni) != 0))
		return false;
	if (a->unix_path[0])
		return strcmp(a->unix_path, b->unix_path) == 0;
	if (a->addr.ss_family != b->addr.ss_family)
		return false;
	if (a->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)&a->addr, *y = (const void *)&b->addr;
		return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
	}
	const struct sockaddr_in *x = (const void *)&a->addr, *y = (const void *)&b->addr;
	return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

int proxy_upstream_parse(const char *s, proxy_upstream_t *up, hutch_err_t *err)
{
	memset(up, 0, sizeof *up);
	if (strncmp(s, "unix:", 5) == 0) {
		if (strlen(s + 5) == 0 || strlen(s + 5) >= sizeof up->unix_path)
			return hutch_err_set(err, EINVAL, "bad unix socket path in `%s`", s);
		strcpy(up->unix_path, s + 5);
		return 0;
	}
	char host[64];
	const char *colon = strrchr(s, ':');
	if (!colon || colon == s || (size_t)(colon - s) >= sizeof host)
		return hutch_err_set(err, EINVAL, "`%s` is not host:port", s);
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || end == colon + 1)
		return hutch_err_set(err, EINVAL, "bad port in `%s`", s);
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	if (host[0] == '[') {
		size_t hl = strlen(host);
		if (hl < 3 || host[hl - 1] != ']')
			return hutch_err_set(err, EINVAL, "bad IPv6 address in `%s`", s);
		host[hl - 1] = '\0';
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&up->addr;
		if (inet_pton(AF_INET6, host + 1, &a6->sin6_addr) != 1)
			return hutch_err_set(err, EINVAL, "bad IPv6 address in `%s`", s);
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		up->addr_len = sizeof *a6;
		return 0;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)&up->addr;
	if (inet_pton(AF_INET, host, &a4->sin_addr) != 1)
		return hutch_err_set(err, EINVAL, "`%s` is not a numeric IPv4 address", host);
	a4->sin_family = AF_INET;
	a4->sin_port = htons((uint16_t)port);
	up->addr_len = sizeof *a4;
	return 0;
}

void proxy_upstream_name(const proxy_upstream_t *up, char *buf, size_t cap, bool as_key)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	const char *tls = up->tls ? "+tls" : "";
	if (up->unix_path[0]) {
		snprintf(buf, cap, "unix:%s%s", up->unix_path, tls);
	} else if (up->addr.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&up->addr;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		snprintf(buf, cap, "[%s]:%u%s", ip, ntohs(a->sin6_port), tls);
	} else {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&up->addr;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		snprintf(buf, cap, "%s:%u%s", ip, ntohs(a->sin_port), tls);
	}
	/* Connections with other TLS names or contexts are not the same. */
	if (as_key && up->tls && cap > strlen(buf) + 1) {
		size_t l = strlen(buf);
		snprintf(buf + l, cap - l, "/%s/%p", up->sni, (void *)up->tls_ctx);
	}
}
