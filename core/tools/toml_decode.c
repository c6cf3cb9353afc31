/*
 * hutch-toml-decode: reads a TOML document and prints it as "tagged JSON",
 * the format of the toml-test conformance suite: tables become objects,
 * arrays become arrays, and every scalar becomes {"type": T, "value": "text"}
 * with T one of string, integer, float, bool, datetime, datetime-local,
 * date-local, time-local.
 *
 * It exists so that hutch's TOML parser can be checked against that suite
 * (and poked at by hand) through the same path hutchd uses: toml_parse().
 *
 *   hutch-toml-decode [FILE]     (standard input without FILE)
 *
 * Exit status 0 with the JSON on stdout; 1 with `line:col: message` (or
 * `FILE:line:col: message`) on stderr when the document is invalid or cannot
 * be read.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "toml.h"

/* Reads all of fd into a malloc'd buffer. */
static int read_all(int fd, char **out, size_t *out_len)
{
	_cleanup_free_ char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (cap - len < 4096) {
			size_t ncap = cap ? cap * 2 : 65536;
			char *n = realloc(buf, ncap);
			if (!n)
				return -ENOMEM;
			buf = n;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	*out = steal_ptr(&buf);
	*out_len = len;
	return 0;
}

static void print_json_string(FILE *f, const char *s, size_t len)
{
	fputc('"', f);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20 || c == 0x7F)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f); /* toml_parse guarantees valid UTF-8 */
	}
	fputc('"', f);
}

/* The shortest %g form that reads back as the same double. */
static void format_float(double d, char *buf, size_t size)
{
	if (isnan(d)) {
		snprintf(buf, size, "nan");
		return;
	}
	if (isinf(d)) {
		snprintf(buf, size, d < 0 ? "-inf" : "inf");
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, size, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

static void format_fraction(int ns, char *buf, size_t size)
{
	buf[0] = '\0';
	if (ns == 0)
		return;
	snprintf(buf, size, ".%09d", ns);
	size_t n = strlen(buf);
	while (buf[n - 1] == '0')
		buf[--n] = '\0';
}

static void print_datetime(FILE *f, const toml_value_t *v)
{
	const toml_datetime_t *dt = &v->u.dt;
	char frac[16];
	format_fraction(dt->nanosecond, frac, sizeof frac);
	if (v->type == TOML_DATE_LOCAL || v->type == TOML_DATETIME_LOCAL ||
	    v->type == TOML_DATETIME)
		fprintf(f, "%04d-%02d-%02d", dt->year, dt->month, dt->day);
	if (v->type == TOML_DATETIME_LOCAL || v->type == TOML_DATETIME)
		fputc('T', f);
	if (v->type != TOML_DATE_LOCAL)
		fprintf(f, "%02d:%02d:%02d%s", dt->hour, dt->minute, dt->second, frac);
	if (v->type == TOML_DATETIME) {
		if (dt->offset_z) {
			fputc('Z', f);
		} else {
			int m = dt->offset_minutes;
			fprintf(f, "%c%02d:%02d", m < 0 ? '-' : '+', abs(m) / 60, abs(m) % 60);
		}
	}
}

static const char *tag_of(toml_type_t t)
{
	switch (t) {
	case TOML_STRING: return "string";
	case TOML_INTEGER: return "integer";
	case TOML_FLOAT: return "float";
	case TOML_BOOLEAN: return "bool";
	case TOML_DATETIME: return "datetime";
	case TOML_DATETIME_LOCAL: return "datetime-local";
	case TOML_DATE_LOCAL: return "date-local";
	case TOML_TIME_LOCAL: return "time-local";
	default: return "?";
	}
}

/* Recursion is bounded by the parser's TOML_MAX_DEPTH. */
static void print_value(FILE *f, const toml_value_t *v)
{
	switch (v->type) {
	case TOML_TABLE:
		fputc('{', f);
		for (size_t i = 0; i < v->u.table.len; i++) {
			const toml_kv_t *kv = &v->u.table.items[i];
			if (i)
				fputc(',', f);
			print_json_string(f, kv->key, kv->key_len);
			fputc(':', f);
			print_value(f, kv->value);
		}
		fputc('}', f);
		return;
	case TOML_ARRAY:
		fputc('[', f);
		for (size_t i = 0; i < v->u.array.len; i++) {
			if (i)
				fputc(',', f);
			print_value(f, v->u.array.items[i]);
		}
		fputc(']', f);
		return;
	default:
		break;
	}

	fprintf(f, "{\"type\":\"%s\",\"value\":", tag_of(v->type));
	char buf[64];
	switch (v->type) {
	case TOML_STRING:
		print_json_string(f, v->u.str.ptr, v->u.str.len);
		break;
	case TOML_INTEGER:
		fprintf(f, "\"%" PRId64 "\"", v->u.integer);
		break;
	case TOML_FLOAT:
		format_float(v->u.fp, buf, sizeof buf);
		fprintf(f, "\"%s\"", buf);
		break;
	case TOML_BOOLEAN:
		fprintf(f, "\"%s\"", v->u.boolean ? "true" : "false");
		break;
	default:
		fputc('"', f);
		print_datetime(f, v);
		fputc('"', f);
		break;
	}
	fputc('}', f);
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 ||
				       strcmp(argv[1], "--help") == 0))) {
		fprintf(stderr, "usage: hutch-toml-decode [FILE]\n"
				"Reads TOML (standard input without FILE) and prints it as tagged JSON.\n");
		return argc > 2 ? 2 : 0;
	}
	if (argc == 2)
		path = argv[1];

	_cleanup_close_ int fd = path ? open(path, O_RDONLY | O_CLOEXEC) : 0;
	if (fd < 0) {
		fprintf(stderr, "hutch-toml-decode: open %s: %s\n", path, strerror(errno));
		return 1;
	}
	_cleanup_free_ char *src = NULL;
	size_t len = 0;
	int r = read_all(fd, &src, &len);
	if (!path)
		fd = -1; /* leave standard input to the process */
	if (r < 0) {
		fprintf(stderr, "hutch-toml-decode: read %s: %s\n",
			path ? path : "standard input", strerror(-r));
		return 1;
	}

	toml_value_t *root = NULL;
	toml_error_t err;
	r = toml_parse(src, len, &root, &err);
	if (r < 0) {
		fprintf(stderr, "%s%s%d:%d: %s\n", path ? path : "", path ? ":" : "",
			err.line, err.col, err.message);
		return 1;
	}
	print_value(stdout, root);
	fputc('\n', stdout);
	toml_free(root);
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "hutch-toml-decode: write: %s\n", strerror(errno));
		return 1;
	}
	return 0;
}
