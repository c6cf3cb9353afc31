/* Which service a request names: the Host form and the path form. */
#include "route_name.h"

#include <errno.h>
#include <string.h>

bool route_label_valid(const char *s, size_t n)
{
	if (n == 0 || n > ROUTE_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* The host without its port, lower-cased into buf; false if too long or
 * bracketed (an IPv6 literal names the router itself). */
static size_t host_part(const char *authority, char *buf, size_t cap)
{
	size_t n = strcspn(authority, ":");
	if (authority[0] == '[' || n >= cap)
		return 0;
	for (size_t i = 0; i < n; i++)
		buf[i] = lower(authority[i]);
	buf[n] = '\0';
	/* One trailing dot is the same name, fully qualified. */
	if (n && buf[n - 1] == '.')
		buf[--n] = '\0';
	return n;
}

static int by_host(const char *host, size_t hn, size_t dn, const char *path, route_name_t *out)
{
	/* host = name "." tenant "." domain */
	size_t rest = hn - dn - 1;
	const char *dot = memchr(host, '.', rest);
	if (!dot)
		return -EINVAL;
	size_t nl = (size_t)(dot - host), tl = rest - nl - 1;
	if (!route_label_valid(host, nl) || !route_label_valid(dot + 1, tl))
		return -EINVAL;
	memcpy(out->name, host, nl);
	out->name[nl] = '\0';
	memcpy(out->tenant, dot + 1, tl);
	out->tenant[tl] = '\0';
	out->path = path;
	out->by_host = true;
	return 0;
}

static int by_path(const char *path, route_name_t *out)
{
	if (path[0] != '/')
		return -ENOENT;
	const char *t = path + 1;
	size_t tl = strcspn(t, "/?#");
	if (t[tl] != '/')
		return -ENOENT;
	const char *n = t + tl + 1;
	size_t nl = strcspn(n, "/?#");
	if (!route_label_valid(t, tl) || !route_label_valid(n, nl))
		return -ENOENT;
	memcpy(out->tenant, t, tl);
	out->tenant[tl] = '\0';
	memcpy(out->name, n, nl);
	out->name[nl] = '\0';
	/* "/t/n" and "/t/n?q" go upstream as "/" and "/?q"; "/t/n/x" as "/x".
	 * The caller builds those; path points at what follows the name. */
	out->path = n + nl;
	out->by_host = false;
	return 0;
}

int route_name_parse(const char *domain, const char *authority, const char *path,
		     route_name_t *out)
{
	char host[256];
	size_t hn = host_part(authority ? authority : "", host, sizeof host);
	size_t dn = strlen(domain);
	if (dn && hn > dn + 1 && host[hn - dn - 1] == '.' &&
	    strcmp(host + hn - dn, domain) == 0)
		return by_host(host, hn, dn, path, out);
	return by_path(path ? path : "", out);
}
