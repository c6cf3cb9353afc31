#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_parse_size(const char *s, int64_t *out)
{
	static const struct { const char *suffix; double mul; } units[] = {
		{"", 1}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"Ki", 1024.0},
		{"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0},
	};
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!isdigit((unsigned char)*s) || errno || !isfinite(v) || v < 0)
		return -EINVAL;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcmp(end, units[i].suffix) == 0 && v * units[i].mul < 9e18) {
			*out = (int64_t)(v * units[i].mul);
			return 0;
		}
	return -EINVAL;
}

int cli_parse_duration_s(const char *s, int64_t *seconds)
{
	int64_t total = 0;
	const char *p = s;
	if (!*p)
		return -EINVAL;
	while (*p) {
		char *end;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		long long v = strtoll(p, &end, 10);
		p = end;
		int64_t mul;
		switch (*p) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		case '\0': mul = 1; p--; break;
		default: return -EINVAL;
		}
		p++;
		if (v > INT64_MAX / mul / 2)
			return -ERANGE;
		total += v * mul;
	}
	*seconds = total;
	return 0;
}

int cli_parse_cpu(const char *s, int64_t *millis)
{
	char *end;
	double v = strtod(s, &end);
	if (end == s || v < 0 || !isfinite(v))
		return -EINVAL;
	if (strcmp(end, "m") == 0)
		*millis = (int64_t)v;
	else if (*end == '\0')
		*millis = (int64_t)llround(v * 1000);
	else
		return -EINVAL;
	return 0;
}

int cli_add_kv(Hutch__V1__KeyValue ***v, size_t *n, const char *s)
{
	const char *eq = strchr(s, '=');
	if (!eq || eq == s)
		return -EINVAL;
	Hutch__V1__KeyValue *kv = malloc(sizeof *kv);
	Hutch__V1__KeyValue **nv = realloc(*v, (*n + 1) * sizeof **v);
	if (!kv || !nv) {
		free(kv);
		return -ENOMEM;
	}
	hutch__v1__key_value__init(kv);
	kv->key = strndup(s, (size_t)(eq - s));
	kv->value = strdup(eq + 1);
	nv[*n] = kv;
	*v = nv;
	(*n)++;
	return 0;
}
