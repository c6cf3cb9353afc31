#include "config_bind.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"

const char *config_type_name(hutch_config_type_t t)
{
	switch (t) {
	case HUTCH_CONFIG_STRING: return "string";
	case HUTCH_CONFIG_INT: return "integer";
	case HUTCH_CONFIG_BOOL: return "boolean";
	case HUTCH_CONFIG_DOUBLE: return "number";
	case HUTCH_CONFIG_DURATION: return "duration";
	case HUTCH_CONFIG_SIZE: return "size";
	case HUTCH_CONFIG_STRING_LIST: return "string list";
	case HUTCH_CONFIG_ENUM: return "enum";
	case HUTCH_CONFIG_PATH: return "path";
	}
	return "?";
}

static size_t field_width(hutch_config_type_t t)
{
	switch (t) {
	case HUTCH_CONFIG_STRING:
	case HUTCH_CONFIG_ENUM:
	case HUTCH_CONFIG_PATH: return sizeof(char *);
	case HUTCH_CONFIG_STRING_LIST: return sizeof(char **);
	case HUTCH_CONFIG_INT:
	case HUTCH_CONFIG_DURATION:
	case HUTCH_CONFIG_SIZE: return sizeof(int64_t);
	case HUTCH_CONFIG_BOOL: return sizeof(bool);
	case HUTCH_CONFIG_DOUBLE: return sizeof(double);
	}
	return 0;
}

int config_parse_duration(const char *s, int64_t *ms)
{
	static const struct { const char *unit; int64_t ms; } units[] = {
		{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
	};
	int64_t total = 0;
	const char *p = s;
	if (!*p)
		return -EINVAL;
	while (*p) {
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		char *end;
		errno = 0;
		long long v = strtoll(p, &end, 10);
		if (errno)
			return -ERANGE;
		p = end;
		size_t ul = 0;
		while (isalpha((unsigned char)p[ul]))
			ul++;
		int64_t mul = 0;
		for (size_t i = 0; i < ARRAY_SIZE(units); i++)
			if (ul == strlen(units[i].unit) && strncmp(p, units[i].unit, ul) == 0)
				mul = units[i].ms;
		if (!mul)
			return -EINVAL;
		if (v > INT64_MAX / mul || total > INT64_MAX - v * mul)
			return -ERANGE;
		total += v * mul;
		p += ul;
	}
	*ms = total;
	return 0;
}

int config_parse_size(const char *s, int64_t *bytes)
{
	static const struct { const char *suffix; double mul; } units[] = {
		{"", 1}, {"B", 1},
		{"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
		{"k", 1e3},
		{"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0},
		{"Ti", 1099511627776.0},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
		{"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
	};
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(end, units[i].suffix) == 0) {
			double b = v * units[i].mul;
			if (b >= 9.2e18)
				return -ERANGE;
			if (b != floor(b) && units[i].mul == 1)
				return -EINVAL; /* fractional bytes */
			*bytes = (int64_t)b;
			return 0;
		}
	}
	return -EINVAL;
}

int config_parse_cpu(const char *s, int64_t *millis)
{
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -EINVAL;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -EINVAL;
	if (strcmp(end, "m") == 0) {
		if (v != floor(v) || v > 1e9)
			return -EINVAL;
		*millis = (int64_t)v;
		return 0;
	}
	if (*end || v > 1e6)
		return -EINVAL;
	*millis = (int64_t)llround(v * 1000.0);
	return 0;
}

static void *field_ptr(void *obj, const hutch_config_field_t *f)
{
	return (char *)obj + f->offset;
}

static void release_field(const hutch_config_field_t *f, void *obj);

static char *resolve_path(const char *file, const char *value)
{
	if (value[0] == '/' || value[0] == '\0')
		return xstrdup(value);
	if (file && strchr(file, '/')) {
		const char *slash = strrchr(file, '/');
		return xasprintf("%.*s/%s", (int)(slash - file), file, value);
	}
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd))
		return xstrdup(value);
	return xasprintf("%s/%s", cwd, value);
}

/* Where a value came from, for messages. */
typedef struct origin {
	const char *file;
	const char *section;
	int line, col;
	bool is_default;
} origin_t;

static int bind_err(hutch_err_t *err, const origin_t *o,
		    const hutch_config_field_t *f, const char *fmt, ...)
	HUTCH_PRINTF(4, 5);

static int bind_err(hutch_err_t *err, const origin_t *o,
		    const hutch_config_field_t *f, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (o->is_default)
		return hutch_err_set(err, EINVAL,
				     "[%s] `%s`: invalid default: %s",
				     o->section, f->key, what);
	return hutch_err_set(err, EINVAL, "%s:%d:%d: [%s] `%s`: %s",
			     o->file ? o->file : "<config>", o->line, o->col,
			     o->section, f->key, what);
}

static int bind_value(const hutch_config_field_t *f, const toml_value_t *v,
		      const origin_t *o, void *obj, hutch_err_t *err)
{
	void *dst = field_ptr(obj, f);
	const char *got = toml_type_name(v->type);

	switch (f->type) {
	case HUTCH_CONFIG_STRING:
	case HUTCH_CONFIG_PATH:
	case HUTCH_CONFIG_ENUM: {
		if (v->type != TOML_STRING)
			return bind_err(err, o, f, "expected a string, got %s", got);
		if (strlen(v->u.str.ptr) != v->u.str.len)
			return bind_err(err, o, f, "string contains a NUL character");
		if (f->type == HUTCH_CONFIG_ENUM) {
			bool ok = false;
			for (const char *const *c = f->choices; c && *c; c++)
				if (strcmp(*c, v->u.str.ptr) == 0)
					ok = true;
			if (!ok) {
				strbuf_t sb = STRBUF_INIT;
				for (const char *const *c = f->choices; c && *c; c++)
					sb_printf(&sb, "%s\"%s\"", c == f->choices ? "" : ", ", *c);
				int r = bind_err(err, o, f, "\"%s\" is not one of %s",
						 v->u.str.ptr, sb.buf ? sb.buf : "");
				sb_free(&sb);
				return r;
			}
		}
		char **sp = dst;
		free(*sp);
		*sp = f->type == HUTCH_CONFIG_PATH ? resolve_path(o->file, v->u.str.ptr)
						   : xstrdup(v->u.str.ptr);
		return 0;
	}
	case HUTCH_CONFIG_INT:
		if (v->type != TOML_INTEGER)
			return bind_err(err, o, f, "expected an integer, got %s", got);
		*(int64_t *)dst = v->u.integer;
		return 0;
	case HUTCH_CONFIG_BOOL:
		if (v->type != TOML_BOOLEAN)
			return bind_err(err, o, f, "expected a boolean, got %s", got);
		*(bool *)dst = v->u.boolean;
		return 0;
	case HUTCH_CONFIG_DOUBLE:
		if (v->type == TOML_INTEGER)
			*(double *)dst = (double)v->u.integer;
		else if (v->type == TOML_FLOAT)
			*(double *)dst = v->u.fp;
		else
			return bind_err(err, o, f, "expected a number, got %s", got);
		return 0;
	case HUTCH_CONFIG_DURATION:
		if (v->type == TOML_INTEGER) {
			if (v->u.integer < 0 || v->u.integer > INT64_MAX / 1000)
				return bind_err(err, o, f, "duration out of range");
			*(int64_t *)dst = v->u.integer * 1000;
			return 0;
		}
		if (v->type != TOML_STRING)
			return bind_err(err, o, f,
					"expected a duration like \"30s\" or \"1h30m\", got %s", got);
		if (config_parse_duration(v->u.str.ptr, dst) < 0)
			return bind_err(err, o, f,
					"\"%s\" is not a duration (use units ms, s, m, h, d: \"1h30m\")",
					v->u.str.ptr);
		return 0;
	case HUTCH_CONFIG_SIZE:
		if (v->type == TOML_INTEGER) {
			if (v->u.integer < 0)
				return bind_err(err, o, f, "size must not be negative");
			*(int64_t *)dst = v->u.integer;
			return 0;
		}
		if (v->type != TOML_STRING)
			return bind_err(err, o, f,
					"expected a size like \"512Mi\", got %s", got);
		if (config_parse_size(v->u.str.ptr, dst) < 0)
			return bind_err(err, o, f,
					"\"%s\" is not a size (like \"512Mi\", \"2G\", \"4096\")",
					v->u.str.ptr);
		return 0;
	case HUTCH_CONFIG_STRING_LIST: {
		if (v->type != TOML_ARRAY)
			return bind_err(err, o, f, "expected an array of strings, got %s", got);
		char **list = NULL;
		for (size_t i = 0; i < v->u.array.len; i++) {
			const toml_value_t *it = v->u.array.items[i];
			if (it->type != TOML_STRING ||
			    strlen(it->u.str.ptr) != it->u.str.len) {
				strv_free(list);
				origin_t io = *o;
				io.line = it->line;
				io.col = it->col;
				return bind_err(err, &io, f,
						"item %zu: expected a string, got %s",
						i + 1, toml_type_name(it->type));
			}
			strv_push(&list, xstrdup(it->u.str.ptr));
		}
		char ***lp = dst;
		strv_free(*lp);
		*lp = list;
		return 0;
	}
	}
	return bind_err(err, o, f, "unknown field type %d", (int)f->type);
}

/* Parses a default written as TOML ("\"systrap\"", "30", "[\"a\"]"). */
static int parse_default(const hutch_config_field_t *f, toml_value_t **root,
			 const toml_value_t **val, hutch_err_t *err)
{
	_cleanup_free_ char *doc = xasprintf("v = %s\n", f->default_value);
	toml_error_t te;
	if (toml_parse(doc, strlen(doc), root, &te) < 0)
		return hutch_err_set(err, EINVAL, "`%s`: default %s is not TOML: %s",
				     f->key, f->default_value, te.message);
	*val = toml_table_get(*root, "v");
	return 0;
}

int config_schema_check(const hutch_config_field_t *fields, size_t config_size,
			hutch_err_t *err)
{
	if (!fields)
		return 0;
	for (const hutch_config_field_t *f = fields; f->key; f++) {
		size_t w = field_width(f->type);
		if (w == 0)
			return hutch_err_set(err, EINVAL, "`%s`: unknown type %d",
					     f->key, (int)f->type);
		if (f->offset + w > config_size || f->offset % w != 0)
			return hutch_err_set(err, EINVAL,
					     "`%s`: offset %zu outside the %zu-byte config struct",
					     f->key, f->offset, config_size);
		if (f->type == HUTCH_CONFIG_ENUM && (!f->choices || !f->choices[0]))
			return hutch_err_set(err, EINVAL, "`%s`: enum without choices", f->key);
		for (const hutch_config_field_t *g = fields; g < f; g++)
			if (strcmp(g->key, f->key) == 0)
				return hutch_err_set(err, EINVAL, "`%s` declared twice", f->key);
		if (f->default_value) {
			toml_value_t *root = NULL;
			const toml_value_t *v;
			int r = parse_default(f, &root, &v, err);
			if (r < 0)
				return r;
			_cleanup_free_ void *scratch = xcalloc(1, config_size);
			origin_t o = {.section = "schema", .is_default = true};
			r = bind_value(f, v, &o, scratch, err);
			/* Only this field: later ones are not checked yet. */
			release_field(f, scratch);
			toml_free(root);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int config_bind(const hutch_config_field_t *fields, const toml_value_t *table,
		const char *file, const char *section, void *out,
		hutch_err_t *err)
{
	int r;
	if (table && table->type != TOML_TABLE)
		return hutch_err_set(err, EINVAL, "%s:%d:%d: [%s] must be a table, not %s",
				     file ? file : "<config>", table->line, table->col,
				     section, toml_type_name(table->type));

	/* Unknown keys first: a typo should be reported as a typo. */
	if (table) {
		for (size_t i = 0; i < table->u.table.len; i++) {
			const toml_kv_t *kv = &table->u.table.items[i];
			bool known = false;
			for (const hutch_config_field_t *f = fields; f && f->key; f++)
				if (strlen(f->key) == kv->key_len &&
				    memcmp(f->key, kv->key, kv->key_len) == 0)
					known = true;
			if (!known) {
				strbuf_t sb = STRBUF_INIT;
				for (const hutch_config_field_t *f = fields; f && f->key; f++)
					sb_printf(&sb, "%s%s", f == fields ? "" : ", ", f->key);
				r = hutch_err_set(err, EINVAL,
						  "%s:%d:%d: [%s] unknown key `%.*s` (known keys: %s)",
						  file ? file : "<config>", kv->line, kv->col,
						  section, (int)kv->key_len, kv->key,
						  sb.buf ? sb.buf : "none");
				sb_free(&sb);
				return r;
			}
		}
	}

	for (const hutch_config_field_t *f = fields; f && f->key; f++) {
		const toml_value_t *v = table ? toml_table_get(table, f->key) : NULL;
		if (v) {
			origin_t o = {file, section, v->line, v->col, false};
			r = bind_value(f, v, &o, out, err);
		} else if (f->default_value) {
			toml_value_t *root = NULL;
			const toml_value_t *dv;
			r = parse_default(f, &root, &dv, err);
			if (r == 0) {
				origin_t o = {file, section, 0, 0, true};
				r = bind_value(f, dv, &o, out, err);
			}
			toml_free(root);
		} else if (f->flags & HUTCH_CONFIG_REQUIRED) {
			int line = table ? table->line : 1, col = table ? table->col : 1;
			r = hutch_err_set(err, EINVAL, "%s:%d:%d: [%s] missing required key `%s` (%s)",
					  file ? file : "<config>", line, col, section,
					  f->key, f->description ? f->description : "");
		} else {
			r = 0;
		}
		if (r < 0) {
			config_release(fields, out);
			return r;
		}
	}
	return 0;
}

static void release_field(const hutch_config_field_t *f, void *obj)
{
	void *dst = field_ptr(obj, f);
	switch (f->type) {
	case HUTCH_CONFIG_STRING:
	case HUTCH_CONFIG_ENUM:
	case HUTCH_CONFIG_PATH:
		free(*(char **)dst);
		*(char **)dst = NULL;
		break;
	case HUTCH_CONFIG_STRING_LIST:
		strv_free(*(char ***)dst);
		*(char ***)dst = NULL;
		break;
	default:
		break;
	}
}

void config_release(const hutch_config_field_t *fields, void *obj)
{
	for (const hutch_config_field_t *f = fields; f && f->key; f++)
		release_field(f, obj);
}

void config_describe(const hutch_config_field_t *fields, FILE *out)
{
	if (!fields || !fields->key) {
		fprintf(out, "  (no options)\n");
		return;
	}
	for (const hutch_config_field_t *f = fields; f->key; f++) {
		fprintf(out, "  %-22s %-12s", f->key, config_type_name(f->type));
		if (f->flags & HUTCH_CONFIG_REQUIRED)
			fprintf(out, " required");
		else if (f->default_value && !(f->flags & HUTCH_CONFIG_SECRET))
			fprintf(out, " default %s", f->default_value);
		else
			fprintf(out, " (unset)");
		if (f->flags & HUTCH_CONFIG_RELOAD)
			fprintf(out, " [reloadable]");
		fprintf(out, "\n      %s\n", f->description ? f->description : "");
		if (f->type == HUTCH_CONFIG_ENUM) {
			fprintf(out, "      one of:");
			for (const char *const *c = f->choices; *c; c++)
				fprintf(out, " %s", *c);
			fprintf(out, "\n");
		}
	}
}
