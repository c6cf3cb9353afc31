/*
 * json_lite.c: a strict JSON reader for the parts of a JWT (header and
 * claims), which arrive from sandboxes and so are untrusted.
 *
 * Strict on purpose: duplicate object keys are refused (two "aud" members
 * would let one verifier read one and another the other), strings must be
 * valid UTF-8 without NUL (escaped or not), nesting stops at 16 levels, and
 * nothing may follow the value but whitespace. Fuzzed by
 * tests/fuzz/fuzz_jwt.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "oidc.h"

#define JV_MAX_DEPTH 16

typedef struct {
	const char *s;
	size_t n, i;
} rd_t;

static void skip_ws(rd_t *r)
{
	while (r->i < r->n && (r->s[r->i] == ' ' || r->s[r->i] == '\t' || r->s[r->i] == '\n' ||
			       r->s[r->i] == '\r'))
		r->i++;
}

static int hex4(rd_t *r, uint32_t *out)
{
	if (r->n - r->i < 4)
		return -1;
	uint32_t v = 0;
	for (int k = 0; k < 4; k++) {
		char c = r->s[r->i++];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static void put_utf8(strbuf_t *sb, uint32_t cp)
{
	if (cp < 0x80) {
		sb_putc(sb, (char)cp);
	} else if (cp < 0x800) {
		sb_putc(sb, (char)(0xC0 | cp >> 6));
		sb_putc(sb, (char)(0x80 | (cp & 0x3F)));
	} else if (cp < 0x10000) {
		sb_putc(sb, (char)(0xE0 | cp >> 12));
		sb_putc(sb, (char)(0x80 | (cp >> 6 & 0x3F)));
		sb_putc(sb, (char)(0x80 | (cp & 0x3F)));
	} else {
		sb_putc(sb, (char)(0xF0 | cp >> 18));
		sb_putc(sb, (char)(0x80 | (cp >> 12 & 0x3F)));
		sb_putc(sb, (char)(0x80 | (cp >> 6 & 0x3F)));
		sb_putc(sb, (char)(0x80 | (cp & 0x3F)));
	}
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cp, min;
	if (c < 0x80)
		return 1;
	if ((c & 0xE0) == 0xC0)
		len = 2, cp = c & 0x1F, min = 0x80;
	else if ((c & 0xF0) == 0xE0)
		len = 3, cp = c & 0x0F, min = 0x800;
	else if ((c & 0xF8) == 0xF0)
		len = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (avail < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xC0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3F);
	}
	if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return len;
}

static int parse_string(rd_t *r, char **out)
{
	strbuf_t sb = STRBUF_INIT;
	r->i++; /* opening quote */
	for (;;) {
		if (r->i >= r->n)
			goto bad;
		unsigned char c = (unsigned char)r->s[r->i];
		if (c == '"') {
			r->i++;
			break;
		}
		if (c < 0x20)
			goto bad;
		if (c == '\\') {
			if (++r->i >= r->n)
				goto bad;
			char e = r->s[r->i++];
			uint32_t cp;
			switch (e) {
			case '"': sb_putc(&sb, '"'); break;
			case '\\': sb_putc(&sb, '\\'); break;
			case '/': sb_putc(&sb, '/'); break;
			case 'b': sb_putc(&sb, '\b'); break;
			case 'f': sb_putc(&sb, '\f'); break;
			case 'n': sb_putc(&sb, '\n'); break;
			case 'r': sb_putc(&sb, '\r'); break;
			case 't': sb_putc(&sb, '\t'); break;
			case 'u':
				if (hex4(r, &cp) < 0 || cp == 0)
					goto bad;
				if (cp >= 0xDC00 && cp <= 0xDFFF)
					goto bad;
				if (cp >= 0xD800 && cp <= 0xDBFF) {
					uint32_t lo;
					if (r->n - r->i < 2 || r->s[r->i] != '\\' || r->s[r->i + 1] != 'u')
						goto bad;
					r->i += 2;
					if (hex4(r, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
						goto bad;
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				}
				put_utf8(&sb, cp);
				break;
			default:
				goto bad;
			}
			continue;
		}
		size_t len = utf8_seq((const unsigned char *)r->s + r->i, r->n - r->i);
		if (!len)
			goto bad;
		sb_append_n(&sb, r->s + r->i, len);
		r->i += len;
	}
	*out = sb_steal(&sb);
	return 0;
bad:
	sb_free(&sb);
	return -1;
}

static int parse_number(rd_t *r, double *out)
{
	size_t start = r->i;
	if (r->i < r->n && r->s[r->i] == '-')
		r->i++;
	if (r->i >= r->n)
		return -1;
	if (r->s[r->i] == '0') {
		r->i++;
	} else if (r->s[r->i] >= '1' && r->s[r->i] <= '9') {
		while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9')
			r->i++;
	} else {
		return -1;
	}
	if (r->i < r->n && r->s[r->i] == '.') {
		r->i++;
		size_t d = r->i;
		while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9')
			r->i++;
		if (r->i == d)
			return -1;
	}
	if (r->i < r->n && (r->s[r->i] == 'e' || r->s[r->i] == 'E')) {
		r->i++;
		if (r->i < r->n && (r->s[r->i] == '+' || r->s[r->i] == '-'))
			r->i++;
		size_t d = r->i;
		while (r->i < r->n && r->s[r->i] >= '0' && r->s[r->i] <= '9')
			r->i++;
		if (r->i == d)
			return -1;
	}
	size_t len = r->i - start;
	if (len > 64)
		return -1;
	char buf[65];
	memcpy(buf, r->s + start, len);
	buf[len] = 0;
	*out = strtod(buf, NULL);
	if (!isfinite(*out))
		return -1;
	return 0;
}

static int parse_value(rd_t *r, jv_t *v, int depth);

static int parse_container(rd_t *r, jv_t *v, int depth, bool object)
{
	char close = object ? '}' : ']';
	size_t cap = 0;
	v->type = object ? JV_OBJECT : JV_ARRAY;
	r->i++;
	skip_ws(r);
	if (r->i < r->n && r->s[r->i] == close) {
		r->i++;
		return 0;
	}
	for (;;) {
		char *key = NULL;
		if (object) {
			skip_ws(r);
			if (r->i >= r->n || r->s[r->i] != '"' || parse_string(r, &key) < 0)
				return -1;
			for (size_t k = 0; k < v->n; k++) {
				if (strcmp(v->keys[k], key) == 0) {
					free(key);
					return -1;
				}
			}
			skip_ws(r);
			if (r->i >= r->n || r->s[r->i] != ':') {
				free(key);
				return -1;
			}
			r->i++;
		}
		if (v->n == cap) {
			cap = cap ? cap * 2 : 4;
			v->items = xrealloc(v->items, cap * sizeof *v->items);
			if (object)
				v->keys = xrealloc(v->keys, cap * sizeof *v->keys);
		}
		memset(&v->items[v->n], 0, sizeof v->items[v->n]);
		if (object)
			v->keys[v->n] = key;
		v->n++;
		if (parse_value(r, &v->items[v->n - 1], depth + 1) < 0)
			return -1;
		skip_ws(r);
		if (r->i >= r->n)
			return -1;
		if (r->s[r->i] == ',') {
			r->i++;
			continue;
		}
		if (r->s[r->i] == close) {
			r->i++;
			return 0;
		}
		return -1;
	}
}

static bool literal(rd_t *r, const char *word)
{
	size_t len = strlen(word);
	if (r->n - r->i < len || memcmp(r->s + r->i, word, len) != 0)
		return false;
	r->i += len;
	return true;
}

static int parse_value(rd_t *r, jv_t *v, int depth)
{
	if (depth > JV_MAX_DEPTH)
		return -1;
	skip_ws(r);
	if (r->i >= r->n)
		return -1;
	char c = r->s[r->i];
	switch (c) {
	case '{':
		return parse_container(r, v, depth, true);
	case '[':
		return parse_container(r, v, depth, false);
	case '"':
		v->type = JV_STRING;
		return parse_string(r, &v->str);
	case 't':
		v->type = JV_BOOL;
		v->b = true;
		return literal(r, "true") ? 0 : -1;
	case 'f':
		v->type = JV_BOOL;
		return literal(r, "false") ? 0 : -1;
	case 'n':
		v->type = JV_NULL;
		return literal(r, "null") ? 0 : -1;
	default:
		v->type = JV_NUMBER;
		return parse_number(r, &v->num);
	}
}

void jv_free(jv_t *v)
{
	if (!v)
		return;
	free(v->str);
	for (size_t i = 0; i < v->n; i++) {
		jv_free(&v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	memset(v, 0, sizeof *v);
}

int jv_parse(const char *s, size_t n, jv_t *out)
{
	rd_t r = {s, n, 0};
	memset(out, 0, sizeof *out);
	if (parse_value(&r, out, 0) < 0)
		goto bad;
	skip_ws(&r);
	if (r.i != r.n)
		goto bad;
	return 0;
bad:
	jv_free(out);
	return -1;
}

const jv_t *jv_get(const jv_t *obj, const char *key)
{
	if (!obj || obj->type != JV_OBJECT)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return &obj->items[i];
	return NULL;
}
