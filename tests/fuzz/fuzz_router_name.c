/* The router's reading of which service a request names (core/router/
 * route_name.c), from a client's Host and path: input is
 * "domain\0authority\0path". Whatever it finds must be two valid labels
 * and a path inside the one given. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route_name.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 3);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	buf[size] = buf[size + 1] = buf[size + 2] = '\0';
	const char *domain = buf;
	const char *authority = domain + strlen(domain) + 1;
	if (authority > buf + size)
		authority = buf + size + 1;
	const char *path = authority + strlen(authority) + 1;
	if (path > buf + size + 1)
		path = buf + size + 2;
	route_name_t n;
	if (route_name_parse(domain, authority, path, &n) == 0) {
		if (!route_label_valid(n.tenant, strlen(n.tenant)) ||
		    !route_label_valid(n.name, strlen(n.name)))
			abort();
		if (n.path < path || n.path > path + strlen(path))
			abort();
	}
	free(buf);
	return 0;
}
