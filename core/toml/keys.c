/*
 * keys.c: simple and dotted keys (`name`, `"quoted key"`, `a."b.c".d`), and
 * writing them back out for error messages.
 *
 * Each part of a dotted key keeps its own position: when `a.b.c = 1`
 * collides with an earlier `a.b = 2`, the error points at the `b`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml_internal.h"

static bool is_bare_key_char(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

void key_path_clear(struct key_path *path)
{
	for (size_t i = 0; i < path->len; i++)
		free(path->parts[i].name);
	path->len = 0;
}

void key_path_free(struct key_path *path)
{
	key_path_clear(path);
	free(path->parts);
	path->parts = NULL;
	path->cap = 0;
}

static int parse_part(toml_parser_t *p, struct key_part *part)
{
	int c = parser_peek(p);
	part->line = p->line;
	part->col = p->col;
	if (c == '"' || c == '\'')
		return toml_parse_string(p, false, &part->name, &part->len);
	if (!is_bare_key_char(c))
		return parser_unexpected(p, "a key");
	size_t start = p->pos;
	while (is_bare_key_char(parser_peek(p)))
		parser_advance(p);
	part->len = p->pos - start;
	part->name = malloc(part->len + 1);
	if (!part->name)
		return parser_oom(p);
	memcpy(part->name, p->src + start, part->len);
	part->name[part->len] = '\0';
	return 0;
}

int toml_parse_key(toml_parser_t *p, struct key_path *path)
{
	key_path_clear(path);
	for (;;) {
		if (path->len == path->cap) {
			size_t cap = path->cap ? path->cap * 2 : 4;
			struct key_part *n = realloc(path->parts, cap * sizeof *n);
			if (!n)
				return parser_oom(p);
			path->parts = n;
			path->cap = cap;
		}
		struct key_part *part = &path->parts[path->len];
		part->name = NULL;
		int r = parse_part(p, part);
		if (r < 0) {
			free(part->name);
			return r;
		}
		path->len++;

		/* Whitespace is allowed around the dots of a dotted key. */
		size_t pos = p->pos;
		int line = p->line, col = p->col;
		parser_skip_ws(p);
		if (parser_peek(p) != '.') {
			p->pos = pos;
			p->line = line;
			p->col = col;
			return 0;
		}
		/* A part followed by a dot names a table, and the 129th such
		 * table sits deeper than the limit wherever the key is used:
		 * stop here rather than store an unbounded number of parts. */
		if (path->len > TOML_MAX_DEPTH)
			return parser_fail_at(p, part->line, part->col,
					      "nesting deeper than %d levels", TOML_MAX_DEPTH);
		parser_advance(p);
		parser_skip_ws(p);
	}
}

/* Appends n bytes if they fit, keeping room for "..." and the NUL. */
static bool put(char *buf, size_t size, size_t *at, const char *s, size_t n)
{
	if (*at + n + 4 > size)
		return false;
	memcpy(buf + *at, s, n);
	*at += n;
	buf[*at] = '\0';
	return true;
}

static bool put_key(char *buf, size_t size, size_t *at, const char *key,
		    size_t len)
{
	bool bare = len > 0;
	for (size_t i = 0; i < len && bare; i++)
		bare = is_bare_key_char((unsigned char)key[i]);
	if (bare)
		return put(buf, size, at, key, len);

	if (!put(buf, size, at, "\"", 1))
		return false;
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)key[i];
		char esc[8];
		const char *s = key + i;
		size_t consumed = 1, n = 1;
		if (c == '"' || c == '\\') {
			n = (size_t)snprintf(esc, sizeof esc, "\\%c", c);
			s = esc;
		} else if (c < 0x20 || c == 0x7F) {
			n = (size_t)snprintf(esc, sizeof esc, "\\u%04X", c);
			s = esc;
		} else if (c >= 0x80) {
			/* Copy whole characters so truncation never splits one. */
			(void)toml_utf8_decode(key + i, len - i, &consumed);
			n = consumed;
		}
		if (!put(buf, size, at, s, n))
			return false;
		i += consumed;
	}
	return put(buf, size, at, "\"", 1);
}

const char *key_path_format(const struct key_path *path, size_t n, char *buf,
			    size_t size)
{
	size_t at = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if ((i > 0 && !put(buf, size, &at, ".", 1)) ||
		    !put_key(buf, size, &at, path->parts[i].name, path->parts[i].len)) {
			memcpy(buf + at, "...", 4);
			break;
		}
	}
	return buf;
}

const char *key_format(const char *key, size_t len, char *buf, size_t size)
{
	size_t at = 0;
	buf[0] = '\0';
	if (!put_key(buf, size, &at, key, len))
		memcpy(buf + at, "...", 4);
	return buf;
}
