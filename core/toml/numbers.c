/*
 * numbers.c: integers and floats.
 *
 * The grammar is checked character by character rather than by handing a
 * token to strtoll/strtod, because TOML is stricter than C: underscores only
 * between digits, no leading zeros, no sign on 0x/0o/0b, digits on both sides
 * of a decimal point, lowercase inf/nan. Integers must fit in int64_t.
 * Decimal floats are converted by strtod_l() in the C locale, so a process
 * that called setlocale() still reads "1.5" as one and a half.
 */
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "toml_internal.h"

/* Digits (without underscores) of the number being read, plus sign, point
 * and exponent for strtod. Far more than any real number needs (an int64 has
 * 19 digits); only padding with leading zeros can reach it. */
#define NUMBER_MAX 4096

struct number_text {
	char buf[NUMBER_MAX + 1];
	size_t len;
};

static int digit_value(int c, int base)
{
	int v;
	if (c >= '0' && c <= '9')
		v = c - '0';
	else if (c >= 'a' && c <= 'f')
		v = c - 'a' + 10;
	else if (c >= 'A' && c <= 'F')
		v = c - 'A' + 10;
	else
		return -1;
	return v < base ? v : -1;
}

static int text_push(toml_parser_t *p, struct number_text *t, char c)
{
	if (t->len >= NUMBER_MAX)
		return parser_fail(p, "number is too long (more than %d characters)",
				   NUMBER_MAX);
	t->buf[t->len++] = c;
	t->buf[t->len] = '\0';
	return 0;
}

/* Reads digits of base with single underscores between them; at least one
 * digit. `what` names the digits for messages ("hexadecimal digit"). */
static int scan_digits(toml_parser_t *p, int base, const char *what,
		       struct number_text *t)
{
	if (digit_value(parser_peek(p), base) < 0) {
		if (parser_peek(p) == '_')
			return parser_fail(p, "an underscore must sit between two digits");
		return parser_unexpected(p, what);
	}
	for (;;) {
		int c = parser_peek(p);
		if (digit_value(c, base) >= 0) {
			int r = text_push(p, t, (char)c);
			if (r < 0)
				return r;
			parser_advance(p);
			continue;
		}
		if (c == '_') {
			if (digit_value(parser_peek_at(p, 1), base) < 0)
				return parser_fail(p, "an underscore must sit between two digits");
			parser_advance(p);
			continue;
		}
		return 0;
	}
}

static int parse_prefixed_integer(toml_parser_t *p, toml_value_t *v, int line,
				  int col)
{
	int base, kind = parser_peek_at(p, 1);
	const char *what;
	switch (kind) {
	case 'x': base = 16; what = "a hexadecimal digit"; break;
	case 'o': base = 8; what = "an octal digit"; break;
	default: base = 2; what = "a binary digit"; break;
	}
	parser_advance(p);
	parser_advance(p);

	struct number_text t = { .len = 0 };
	int r = scan_digits(p, base, what, &t);
	if (r < 0)
		return r;
	uint64_t n = 0;
	for (size_t i = 0; i < t.len; i++) {
		uint64_t d = (uint64_t)digit_value(t.buf[i], base);
		if (n > ((uint64_t)INT64_MAX - d) / (uint64_t)base)
			return parser_fail_at(p, line, col,
					      "integer is too large (the largest is 9223372036854775807)");
		n = n * (uint64_t)base + d;
	}
	v->type = TOML_INTEGER;
	v->u.integer = (int64_t)n;
	return 0;
}

static int parse_special_float(toml_parser_t *p, toml_value_t *v, bool negative)
{
	if (parser_looking_at(p, "inf", 3)) {
		v->u.fp = negative ? -INFINITY : INFINITY;
	} else if (parser_looking_at(p, "nan", 3)) {
		v->u.fp = negative ? -NAN : NAN;
	} else {
		return parser_unexpected(p, "digits, `inf` or `nan` after the sign");
	}
	for (int i = 0; i < 3; i++)
		parser_advance(p);
	v->type = TOML_FLOAT;
	return 0;
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
	c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

static double text_to_double(const char *s)
{
	pthread_once(&c_locale_once, c_locale_init);
	if (c_locale)
		return strtod_l(s, NULL, c_locale);
	return strtod(s, NULL); /* newlocale failed: best effort */
}

int toml_parse_number(toml_parser_t *p, toml_value_t *v)
{
	int line = p->line, col = p->col;
	struct number_text t = { .len = 0 };
	bool negative = false, is_float = false;
	int r;

	int c = parser_peek(p);
	if (c == '+' || c == '-') {
		negative = c == '-';
		r = text_push(p, &t, (char)c);
		if (r < 0)
			return r;
		parser_advance(p);
		c = parser_peek(p);
	}
	if (c == 'i' || c == 'n')
		return parse_special_float(p, v, negative);

	if (c == '0') {
		int k = parser_peek_at(p, 1);
		if (k == 'x' || k == 'o' || k == 'b') {
			if (t.len > 0)
				return parser_fail_at(p, line, col,
						      "hexadecimal, octal and binary integers cannot have a sign");
			return parse_prefixed_integer(p, v, line, col);
		}
		if ((k >= '0' && k <= '9') || k == '_') {
			parser_advance(p);
			return parser_fail(p, "leading zeros are not allowed in a decimal number");
		}
	}

	r = scan_digits(p, 10, "a digit", &t);
	if (r < 0)
		return r;
	if (parser_peek(p) == '.') {
		is_float = true;
		parser_advance(p);
		r = text_push(p, &t, '.');
		if (r < 0)
			return r;
		r = scan_digits(p, 10, "a digit after the decimal point", &t);
		if (r < 0)
			return r;
	}
	if (parser_peek(p) == 'e' || parser_peek(p) == 'E') {
		is_float = true;
		parser_advance(p);
		r = text_push(p, &t, 'e');
		if (r < 0)
			return r;
		c = parser_peek(p);
		if (c == '+' || c == '-') {
			r = text_push(p, &t, (char)c);
			if (r < 0)
				return r;
			parser_advance(p);
		}
		r = scan_digits(p, 10, "a digit in the exponent", &t);
		if (r < 0)
			return r;
	}

	if (is_float) {
		double d = text_to_double(t.buf);
		if (isinf(d))
			return parser_fail_at(p, line, col,
					      "float is too large for a 64-bit float");
		v->type = TOML_FLOAT;
		v->u.fp = d;
		return 0;
	}

	/* Accumulate the magnitude in uint64_t: -9223372036854775808 fits in
	 * int64_t although its magnitude does not. */
	uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	uint64_t n = 0;
	for (size_t i = (t.buf[0] == '+' || t.buf[0] == '-'); i < t.len; i++) {
		uint64_t d = (uint64_t)(t.buf[i] - '0');
		if (n > (limit - d) / 10)
			return parser_fail_at(p, line, col,
					      negative ? "integer is too small (the smallest is -9223372036854775808)"
						       : "integer is too large (the largest is 9223372036854775807)");
		n = n * 10 + d;
	}
	v->type = TOML_INTEGER;
	v->u.integer = negative ? (int64_t)(0 - n) : (int64_t)n;
	return 0;
}
