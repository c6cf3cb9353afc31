/*
 * strings.c: the four TOML string forms.
 *
 *   "basic"   with escapes          """multi-line basic"""
 *   'literal' taken as written      '''multi-line literal'''
 *
 * Raw control characters other than tab are refused in all four (newlines
 * only in the multi-line forms), so a string can only contain them, U+0000
 * included, through an escape. Multi-line strings store CRLF as LF, which the
 * spec allows and which keeps a value independent of how the file was saved.
 */
#include <stdlib.h>
#include <string.h>

#include "toml_internal.h"

struct strbuf {
	char *ptr;
	size_t len, cap;
};

static int strbuf_reserve(toml_parser_t *p, struct strbuf *b, size_t more)
{
	if (b->cap - b->len > more)
		return 0; /* room for `more` bytes and the NUL */
	size_t cap = b->cap ? b->cap : 32;
	while (cap - b->len <= more) {
		if (cap > SIZE_MAX / 2)
			return parser_oom(p);
		cap *= 2;
	}
	char *n = realloc(b->ptr, cap);
	if (!n)
		return parser_oom(p);
	b->ptr = n;
	b->cap = cap;
	return 0;
}

static int strbuf_append(toml_parser_t *p, struct strbuf *b, const char *s,
			 size_t n)
{
	int r = strbuf_reserve(p, b, n);
	if (r < 0)
		return r;
	memcpy(b->ptr + b->len, s, n);
	b->len += n;
	return 0;
}

static int strbuf_finish(toml_parser_t *p, struct strbuf *b, char **out,
			 size_t *out_len)
{
	int r = strbuf_reserve(p, b, 0);
	if (r < 0)
		return r;
	b->ptr[b->len] = '\0';
	*out = b->ptr;
	*out_len = b->len;
	b->ptr = NULL;
	return 0;
}

static void strbuf_freep(struct strbuf *b)
{
	free(b->ptr);
}

#define _cleanup_strbuf_ __attribute__((cleanup(strbuf_freep)))

/* Copies the run of ordinary characters at the cursor: everything up to the
 * next quote, backslash, line end or control character. */
static int copy_plain_run(toml_parser_t *p, struct strbuf *b, int quote,
			  bool escapes)
{
	size_t start = p->pos;
	for (;;) {
		int c = parser_peek(p);
		if (c < 0 || c == quote || (escapes && c == '\\') ||
		    toml_is_forbidden_control(c))
			break;
		parser_advance(p);
	}
	return strbuf_append(p, b, p->src + start, p->pos - start);
}

static int hex_value(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The cursor is on the backslash of \uXXXX or \UXXXXXXXX. */
static int parse_unicode_escape(toml_parser_t *p, struct strbuf *b, int digits)
{
	int line = p->line, col = p->col;
	parser_advance(p);
	parser_advance(p);
	uint32_t cp = 0;
	for (int i = 0; i < digits; i++) {
		int h = hex_value(parser_peek(p));
		if (h < 0) {
			char what[32];
			return parser_fail(p, "\\%c escape needs %d hex digits, found %s",
					   digits == 4 ? 'u' : 'U', digits,
					   parser_describe(p, what, sizeof what));
		}
		cp = cp << 4 | (uint32_t)h;
		parser_advance(p);
	}
	if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
		return parser_fail_at(p, line, col,
				      "escape `\\%c%0*X` is not a Unicode scalar value",
				      digits == 4 ? 'u' : 'U', digits, (unsigned)cp);
	char enc[4];
	return strbuf_append(p, b, enc, toml_utf8_encode(cp, enc));
}

/* The cursor is on a backslash inside a basic string. */
static int parse_escape(toml_parser_t *p, struct strbuf *b, bool multiline)
{
	int line = p->line, col = p->col;
	int c = parser_peek_at(p, 1);
	char out;
	switch (c) {
	case 'b': out = '\b'; break;
	case 't': out = '\t'; break;
	case 'n': out = '\n'; break;
	case 'f': out = '\f'; break;
	case 'r': out = '\r'; break;
	case '"': out = '"'; break;
	case '\\': out = '\\'; break;
	case 'u':
		return parse_unicode_escape(p, b, 4);
	case 'U':
		return parse_unicode_escape(p, b, 8);
	default:
		if (multiline && (c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
			/* A backslash ending a line (trailing whitespace
			 * allowed) swallows the line end and all whitespace
			 * and line ends after it. */
			parser_advance(p);
			parser_skip_ws(p);
			int r = parser_take_newline(p);
			if (r < 0)
				return r;
			if (r == 0)
				return parser_fail_at(p, line, col,
						      "a backslash followed by whitespace must end the line");
			for (;;) {
				parser_skip_ws(p);
				r = parser_take_newline(p);
				if (r <= 0)
					return r;
			}
		}
		if (c < 0)
			return parser_fail_at(p, line, col, "unterminated string");
		parser_advance(p);
		char what[32];
		const char *d = parser_describe(p, what, sizeof what);
		if (d[0] == '`')
			return parser_fail_at(p, line, col, "invalid escape `\\%s", d + 1);
		return parser_fail_at(p, line, col, "invalid escape: backslash followed by %s", d);
	}
	parser_advance(p);
	parser_advance(p);
	return strbuf_append(p, b, &out, 1);
}

/* The cursor is just past the opening delimiter of a single-line string. */
static int parse_single_line(toml_parser_t *p, int quote, struct strbuf *b)
{
	bool escapes = quote == '"';
	for (;;) {
		int r = copy_plain_run(p, b, quote, escapes);
		if (r < 0)
			return r;
		int c = parser_peek(p);
		if (c == quote) {
			parser_advance(p);
			return 0;
		}
		if (c == '\\') {
			r = parse_escape(p, b, false);
			if (r < 0)
				return r;
			continue;
		}
		if (c < 0 || parser_at_newline(p) || c == '\r')
			return parser_fail(p, "unterminated string: missing closing %s",
					   quote == '"' ? "`\"`" : "`'`");
		return parser_fail(p, "control character U+%04X is not allowed in a string; write it as an escape",
				   (unsigned)c);
	}
}

/* The cursor is just past the opening delimiter of a multi-line string. */
static int parse_multi_line(toml_parser_t *p, int quote, struct strbuf *b)
{
	bool escapes = quote == '"';
	int open_line = p->line, open_col = p->col - 3;

	/* A line end right after the opening delimiter is not content. */
	int r = parser_take_newline(p);
	if (r < 0)
		return r;
	for (;;) {
		r = copy_plain_run(p, b, quote, escapes);
		if (r < 0)
			return r;
		int c = parser_peek(p);
		if (c == quote) {
			size_t run = 0;
			while (parser_peek_at(p, run) == quote)
				run++;
			if (run < 3) {
				/* One or two quotes are content. */
				for (size_t i = 0; i < run; i++)
					parser_advance(p);
				r = strbuf_append(p, b, p->src + p->pos - run, run);
				if (r < 0)
					return r;
				continue;
			}
			/* Up to two quotes may sit right before the closing
			 * delimiter; more would contain a delimiter. */
			if (run > 5) {
				for (size_t i = 0; i < 5; i++)
					parser_advance(p);
				return parser_fail(p, "too many quotes at the end of a multi-line string; escape them or use a different string form");
			}
			r = strbuf_append(p, b, p->src + p->pos, run - 3);
			if (r < 0)
				return r;
			for (size_t i = 0; i < run; i++)
				parser_advance(p);
			return 0;
		}
		if (c == '\\') {
			r = parse_escape(p, b, true);
			if (r < 0)
				return r;
			continue;
		}
		if (c < 0)
			return parser_fail(p, "unterminated multi-line string (opened at %d:%d)",
					   open_line, open_col);
		r = parser_take_newline(p);
		if (r < 0)
			return r;
		if (r > 0) {
			r = strbuf_append(p, b, "\n", 1);
			if (r < 0)
				return r;
			continue;
		}
		return parser_fail(p, "control character U+%04X is not allowed in a string; write it as an escape",
				   (unsigned)c);
	}
}

int toml_parse_string(toml_parser_t *p, bool allow_multiline, char **out,
		      size_t *out_len)
{
	_cleanup_strbuf_ struct strbuf b = { 0 };
	int quote = parser_peek(p);
	int r;

	if (parser_peek_at(p, 1) == quote && parser_peek_at(p, 2) == quote) {
		if (!allow_multiline)
			return parser_fail(p, "a key cannot be a multi-line string");
		parser_advance(p);
		parser_advance(p);
		parser_advance(p);
		r = parse_multi_line(p, quote, &b);
	} else {
		parser_advance(p);
		r = parse_single_line(p, quote, &b);
	}
	if (r < 0)
		return r;
	return strbuf_finish(p, &b, out, out_len);
}
