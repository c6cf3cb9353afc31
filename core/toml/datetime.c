/*
 * datetime.c: the four RFC 3339 shapes TOML allows.
 *
 *   1979-05-27T07:32:00.999-07:00   offset date-time (Z or ±HH:MM)
 *   1979-05-27T07:32:00             local date-time
 *   1979-05-27                      local date
 *   07:32:00.999                    local time
 *
 * The separator may be T, t or one space; Z may be z. Seconds are required
 * (TOML 1.0). Ranges are checked, days against the month and leap years. A
 * leap second (:60) is refused, as most date libraries cannot represent it.
 * Fractions keep nanoseconds and truncate further digits, as the spec asks.
 */
#include <stdio.h>

#include "toml_internal.h"

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

bool toml_looks_like_datetime(const toml_parser_t *p)
{
	if (is_digit(parser_peek(p)) && is_digit(parser_peek_at(p, 1))) {
		if (parser_peek_at(p, 2) == ':')
			return true;
		return is_digit(parser_peek_at(p, 2)) &&
		       is_digit(parser_peek_at(p, 3)) &&
		       parser_peek_at(p, 4) == '-';
	}
	return false;
}

/* Reads exactly n digits into *out. */
static int fixed_digits(toml_parser_t *p, int n, const char *what, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!is_digit(parser_peek(p))) {
			char expected[64];
			snprintf(expected, sizeof expected, "%d digits for the %s", n, what);
			return parser_unexpected(p, expected);
		}
		v = v * 10 + (parser_peek(p) - '0');
		parser_advance(p);
	}
	*out = v;
	return 0;
}

static int expect_char(toml_parser_t *p, int c, const char *expected)
{
	if (parser_peek(p) != c)
		return parser_unexpected(p, expected);
	parser_advance(p);
	return 0;
}

/* Reads n digits for a field and checks lo <= value <= hi. */
static int field(toml_parser_t *p, int n, const char *what, int lo, int hi,
		 int *out)
{
	int line = p->line, col = p->col;
	int r = fixed_digits(p, n, what, out);
	if (r < 0)
		return r;
	if (*out < lo || *out > hi)
		return parser_fail_at(p, line, col, "%s %0*d is out of range (%0*d to %0*d)",
				      what, n, *out, n, lo, n, hi);
	return 0;
}

static int days_in_month(int year, int month)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (month == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
		return 29;
	return days[month - 1];
}

static int parse_date(toml_parser_t *p, toml_datetime_t *dt)
{
	int r = fixed_digits(p, 4, "year", &dt->year);
	if (r < 0)
		return r;
	r = expect_char(p, '-', "`-` after the year");
	if (r < 0)
		return r;
	r = field(p, 2, "month", 1, 12, &dt->month);
	if (r < 0)
		return r;
	r = expect_char(p, '-', "`-` after the month");
	if (r < 0)
		return r;
	int line = p->line, col = p->col;
	r = fixed_digits(p, 2, "day", &dt->day);
	if (r < 0)
		return r;
	int last = days_in_month(dt->year, dt->month);
	if (dt->day < 1 || dt->day > last)
		return parser_fail_at(p, line, col,
				      "day %02d is out of range: %04d-%02d has %d days",
				      dt->day, dt->year, dt->month, last);
	return 0;
}

static int parse_time(toml_parser_t *p, toml_datetime_t *dt)
{
	int r = field(p, 2, "hour", 0, 23, &dt->hour);
	if (r < 0)
		return r;
	r = expect_char(p, ':', "`:` after the hour");
	if (r < 0)
		return r;
	r = field(p, 2, "minute", 0, 59, &dt->minute);
	if (r < 0)
		return r;
	r = expect_char(p, ':', "`:` and seconds after the minute");
	if (r < 0)
		return r;
	r = field(p, 2, "second", 0, 59, &dt->second);
	if (r < 0)
		return r;
	if (parser_peek(p) != '.')
		return 0;
	parser_advance(p);
	if (!is_digit(parser_peek(p)))
		return parser_unexpected(p, "a digit after the decimal point");
	int ns = 0, digits = 0;
	while (is_digit(parser_peek(p))) {
		if (digits < 9) {
			ns = ns * 10 + (parser_peek(p) - '0');
			digits++;
		}
		parser_advance(p);
	}
	for (; digits < 9; digits++)
		ns *= 10;
	dt->nanosecond = ns;
	return 0;
}

static int parse_offset(toml_parser_t *p, toml_datetime_t *dt)
{
	int c = parser_peek(p);
	if (c == 'Z' || c == 'z') {
		parser_advance(p);
		dt->offset_z = true;
		return 0;
	}
	parser_advance(p); /* + or - */
	int hours, minutes;
	int r = field(p, 2, "offset hour", 0, 23, &hours);
	if (r < 0)
		return r;
	r = expect_char(p, ':', "`:` in the offset");
	if (r < 0)
		return r;
	r = field(p, 2, "offset minute", 0, 59, &minutes);
	if (r < 0)
		return r;
	dt->offset_minutes = (c == '-' ? -1 : 1) * (hours * 60 + minutes);
	return 0;
}

int toml_parse_datetime(toml_parser_t *p, toml_value_t *v)
{
	toml_datetime_t dt = { 0 };
	int r;

	if (parser_peek_at(p, 2) == ':') {
		r = parse_time(p, &dt);
		if (r < 0)
			return r;
		v->type = TOML_TIME_LOCAL;
		v->u.dt = dt;
		return 0;
	}

	r = parse_date(p, &dt);
	if (r < 0)
		return r;
	int c = parser_peek(p);
	bool has_time = c == 'T' || c == 't';
	/* A space separates date and time only when a time follows; otherwise
	 * it is just whitespace after a local date. */
	if (c == ' ' && is_digit(parser_peek_at(p, 1)) &&
	    is_digit(parser_peek_at(p, 2)) && parser_peek_at(p, 3) == ':')
		has_time = true;
	if (!has_time) {
		v->type = TOML_DATE_LOCAL;
		v->u.dt = dt;
		return 0;
	}
	parser_advance(p);
	r = parse_time(p, &dt);
	if (r < 0)
		return r;
	c = parser_peek(p);
	if (c == 'Z' || c == 'z' || c == '+' || c == '-') {
		r = parse_offset(p, &dt);
		if (r < 0)
			return r;
		v->type = TOML_DATETIME;
	} else {
		v->type = TOML_DATETIME_LOCAL;
	}
	v->u.dt = dt;
	return 0;
}
