/*
 * route_name.h: which service a request to the router names.
 *
 * Two forms, so that setups without wildcard DNS work too:
 *   Host  <name>.<tenant>.<domain>[:port]   the path goes upstream as is
 *   path  /<tenant>/<name>/rest              (any other Host) "/rest" goes
 * Only the Host (or the absolute-form target's authority, which the engine
 * hands over as the authority) decides; no other header is looked at, so
 * X-Forwarded-Host and the like cannot move a request to another tenant.
 * Labels are DNS labels ([a-z0-9-], 1..63, lower-cased from the Host); a
 * path segment that is not one (percent-encoding, "..", empty) does not
 * name anything. The input is the client's and untrusted: fuzzed in
 * tests/fuzz/fuzz_router_name.c.
 */
#ifndef HUTCH_ROUTE_NAME_H
#define HUTCH_ROUTE_NAME_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTE_LABEL_MAX 63

typedef struct route_name {
	char tenant[ROUTE_LABEL_MAX + 1];
	char name[ROUTE_LABEL_MAX + 1];
	const char *path; /* what goes upstream: points into the path given */
	bool by_host;
} route_name_t;

/* Fills out and returns 0, or -ENOENT when the request names no service
 * (a bare router address with a path that is not /<tenant>/<name>), or
 * -EINVAL for a Host that is under domain but malformed. */
int route_name_parse(const char *domain, const char *authority, const char *path,
		     route_name_t *out);

/* Whether s is a DNS label as the router accepts one (lower case). */
bool route_label_valid(const char *s, size_t n);

#endif
