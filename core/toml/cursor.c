/*
 * cursor.c: moving the parser's cursor over whitespace, comments and line
 * ends, and turning a failure at the cursor into a positioned error.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "toml_internal.h"

bool parser_looking_at(const toml_parser_t *p, const char *s, size_t len)
{
	return p->len - p->pos >= len && memcmp(p->src + p->pos, s, len) == 0;
}

static int fail_va(toml_parser_t *p, int code, int line, int col,
		   const char *fmt, va_list ap)
{
	if (p->err) {
		char *m = p->err->message;
		p->err->line = line;
		p->err->col = col;
		int n = vsnprintf(m, sizeof p->err->message, fmt, ap);
		if (n >= (int)sizeof p->err->message) {
			/* Truncated: never end in half a UTF-8 character. */
			size_t end = sizeof p->err->message - 1, lead = end - 1;
			while (lead > 0 && ((unsigned char)m[lead] & 0xC0) == 0x80)
				lead--;
			unsigned char c = (unsigned char)m[lead];
			size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
			if (lead + need > end)
				m[lead] = '\0';
		}
	}
	return -code;
}

int parser_fail_at(toml_parser_t *p, int line, int col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = fail_va(p, EINVAL, line, col, fmt, ap);
	va_end(ap);
	return r;
}

int parser_fail(toml_parser_t *p, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int r = fail_va(p, EINVAL, p->line, p->col, fmt, ap);
	va_end(ap);
	return r;
}

int parser_oom(toml_parser_t *p)
{
	if (p->err) {
		p->err->line = p->line;
		p->err->col = p->col;
		snprintf(p->err->message, sizeof p->err->message,
			 "out of memory");
	}
	return -ENOMEM;
}

const char *parser_describe(const toml_parser_t *p, char *buf, size_t size)
{
	int c = parser_peek(p);
	if (c < 0)
		return "end of input";
	if (c == '\n' || (c == '\r' && parser_peek_at(p, 1) == '\n'))
		return "end of line";
	if (c < 0x80) {
		if (toml_is_forbidden_control(c) || c == '\t')
			snprintf(buf, size, "U+%04X", (unsigned)c);
		else if (c == '`')
			snprintf(buf, size, "backquote");
		else
			snprintf(buf, size, "`%c`", c);
		return buf;
	}
	/* The source is valid UTF-8 by now, so a whole character can be
	 * quoted as it is. */
	size_t n;
	uint32_t cp = toml_utf8_decode(p->src + p->pos, p->len - p->pos, &n);
	/* The code point too, as many such characters are invisible (a
	 * misplaced byte order mark, U+3000 ideographic space). */
	snprintf(buf, size, "`%.*s` (U+%04X)", (int)n, p->src + p->pos, (unsigned)cp);
	return buf;
}

int parser_unexpected(toml_parser_t *p, const char *expected)
{
	char what[32];
	const char *d = parser_describe(p, what, sizeof what);
	if (expected)
		return parser_fail(p, "expected %s, found %s", expected, d);
	return parser_fail(p, "unexpected %s", d);
}

void parser_skip_ws(toml_parser_t *p)
{
	for (;;) {
		int c = parser_peek(p);
		if (c != ' ' && c != '\t')
			return;
		parser_advance(p);
	}
}

int parser_skip_comment(toml_parser_t *p)
{
	if (parser_peek(p) != '#')
		return 0;
	parser_advance(p);
	for (;;) {
		int c = parser_peek(p);
		if (c < 0 || c == '\n')
			return 0;
		if (c == '\r' && parser_peek_at(p, 1) == '\n')
			return 0;
		if (toml_is_forbidden_control(c))
			return parser_fail(
				p, "control character U+%04X is not allowed in a comment",
				(unsigned)c);
		parser_advance(p);
	}
}

bool parser_at_newline(const toml_parser_t *p)
{
	int c = parser_peek(p);
	return c == '\n' || (c == '\r' && parser_peek_at(p, 1) == '\n');
}

int parser_take_newline(toml_parser_t *p)
{
	int c = parser_peek(p);
	if (c == '\n') {
		parser_advance(p);
		return 1;
	}
	if (c == '\r') {
		if (parser_peek_at(p, 1) != '\n')
			return parser_fail(p, "carriage return (U+000D) not followed by a line feed");
		parser_advance(p);
		parser_advance(p);
		return 1;
	}
	return 0;
}

int parser_skip_ws_comments_newlines(toml_parser_t *p)
{
	for (;;) {
		parser_skip_ws(p);
		int r = parser_skip_comment(p);
		if (r < 0)
			return r;
		r = parser_take_newline(p);
		if (r <= 0)
			return r;
	}
}

int parser_expect_line_end(toml_parser_t *p)
{
	parser_skip_ws(p);
	int r = parser_skip_comment(p);
	if (r < 0)
		return r;
	if (parser_peek(p) < 0)
		return 0;
	r = parser_take_newline(p);
	if (r < 0)
		return r;
	if (r == 0)
		return parser_unexpected(p, "end of line");
	return 0;
}
