/*
 * json_scan.c: reading one field out of the small JSON documents runsc
 * prints (`runsc state`, `runsc wait`). Not a JSON parser: it walks the
 * text string-aware (escapes skipped, so a key inside a value never
 * matches) and takes the first member named key at any depth.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gvisor.h"

/* Returns the end of the string starting at the quote s, or NULL. */
static const char *string_end(const char *s)
{
	for (const char *p = s + 1; *p; p++) {
		if (*p == '\\') {
			if (!p[1])
				return NULL;
			p++;
		} else if (*p == '"') {
			return p;
		}
	}
	return NULL;
}

/* Points at the value of the first member called key, or NULL. */
static const char *find_value(const char *json, const char *key)
{
	size_t klen = strlen(key);
	for (const char *p = json; *p; p++) {
		if (*p != '"')
			continue;
		const char *end = string_end(p);
		if (!end)
			return NULL;
		bool match = (size_t)(end - p - 1) == klen && memcmp(p + 1, key, klen) == 0;
		const char *q = end + 1;
		while (isspace((unsigned char)*q))
			q++;
		if (match && *q == ':') {
			q++;
			while (isspace((unsigned char)*q))
				q++;
			return q;
		}
		p = end;
	}
	return NULL;
}

int gv_json_int(const char *json, const char *key, int64_t *out)
{
	const char *v = find_value(json, key);
	if (!v || !(*v == '-' || isdigit((unsigned char)*v)))
		return -ENOENT;
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v)
		return -ENOENT;
	*out = x;
	return 0;
}

int gv_json_str(const char *json, const char *key, char *buf, size_t cap)
{
	const char *v = find_value(json, key);
	if (!v || *v != '"' || cap == 0)
		return -ENOENT;
	const char *end = string_end(v);
	if (!end)
		return -ENOENT;
	/* Values we read (status, ids) have no escapes worth decoding. */
	size_t n = (size_t)(end - v - 1);
	if (n >= cap)
		n = cap - 1;
	memcpy(buf, v + 1, n);
	buf[n] = '\0';
	return 0;
}
