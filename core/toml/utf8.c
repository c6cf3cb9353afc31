/*
 * utf8.c: UTF-8 validation of the whole document, and encoding of the code
 * points that \u and \U escapes produce.
 *
 * TOML documents must be valid UTF-8 everywhere, comments included. Checking
 * the whole buffer once, up front, lets the rest of the parser copy non-ASCII
 * bytes into strings without decoding them, and guarantees that every string
 * in the tree is valid UTF-8.
 */
#include "toml_internal.h"

int toml_utf8_validate(toml_parser_t *p)
{
	const unsigned char *s = (const unsigned char *)p->src;
	size_t n = p->len;
	int line = 1, col = 1;

	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		if (c < 0x80) {
			i++;
			if (c == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
			continue;
		}

		size_t need;
		uint32_t min, cp;
		if (c >= 0xC2 && c <= 0xDF) {
			need = 1;
			cp = c & 0x1F;
			min = 0x80;
		} else if (c >= 0xE0 && c <= 0xEF) {
			need = 2;
			cp = c & 0x0F;
			min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			need = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else if (c == 0xC0 || c == 0xC1) {
			return parser_fail_at(p, line, col,
					      "invalid UTF-8: overlong encoding (byte 0x%02X)", c);
		} else if (c < 0xC0) {
			return parser_fail_at(p, line, col,
					      "invalid UTF-8: unexpected continuation byte 0x%02X", c);
		} else {
			return parser_fail_at(p, line, col,
					      "invalid UTF-8: byte 0x%02X never appears in UTF-8", c);
		}

		if (n - i <= need) {
			/* Not enough bytes left; find which one is missing. */
			for (size_t k = 1; i + k < n; k++)
				if ((s[i + k] & 0xC0) != 0x80)
					goto bad_continuation;
			return parser_fail_at(p, line, col,
					      "invalid UTF-8: sequence cut short by the end of input");
		}
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				goto bad_continuation;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min)
			return parser_fail_at(p, line, col, "invalid UTF-8: overlong encoding of U+%04X",
					      (unsigned)cp);
		if (cp >= 0xD800 && cp <= 0xDFFF)
			return parser_fail_at(p, line, col,
					      "invalid UTF-8: surrogate U+%04X is not a character",
					      (unsigned)cp);
		if (cp > 0x10FFFF)
			return parser_fail_at(p, line, col,
					      "invalid UTF-8: U+%X is past U+10FFFF", (unsigned)cp);
		i += need + 1;
		col++;
		continue;

	bad_continuation:
		return parser_fail_at(p, line, col,
				      "invalid UTF-8: byte 0x%02X starts a sequence that is cut short",
				      c);
	}
	return 0;
}

size_t toml_utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

uint32_t toml_utf8_decode(const char *s, size_t avail, size_t *len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = 1;
	uint32_t cp = u[0];
	if (cp >= 0xF0) {
		n = 4;
		cp &= 0x07;
	} else if (cp >= 0xE0) {
		n = 3;
		cp &= 0x0F;
	} else if (cp >= 0xC0) {
		n = 2;
		cp &= 0x1F;
	}
	if (n > avail)
		n = avail; /* cannot happen on validated input; stay in bounds */
	for (size_t k = 1; k < n; k++)
		cp = (cp << 6) | (u[k] & 0x3F);
	*len = n;
	return cp;
}
