/* Lossy UTF-8 text of output bytes; see utf8_lossy.h. */
#include "utf8_lossy.h"

#include <stdbool.h>

/* How many bytes at p (n > 0 available) are a well-formed character or the
 * start of one (Unicode Table 3-7); *whole says which. An invalid first byte
 * counts 1, not whole. */
static size_t utf8_scan(const uint8_t *p, size_t n, bool *whole)
{
	uint8_t c = p[0], lo = 0x80, hi = 0xbf;
	size_t need;
	*whole = false;
	if (c < 0x80) {
		*whole = true;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
		hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing above U+10FFFF */
	} else {
		return 1;
	}
	size_t i = 1;
	for (; i < need && i < n; i++) {
		uint8_t l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xbf;
		if (p[i] < l || p[i] > h)
			break;
	}
	*whole = i == need;
	return i;
}

void utf8_lossy_append(strbuf_t *sb, const uint8_t *p, size_t n)
{
	size_t i = 0, run = 0; /* run: valid bytes not yet appended */
	if (n == 0)
		return;
	while (i < n) {
		bool whole;
		size_t len = utf8_scan(p + i, n - i, &whole);
		if (whole) {
			i += len;
			continue;
		}
		sb_append_n(sb, (const char *)p + run, i - run);
		sb_append_n(sb, "\xef\xbf\xbd", 3);
		i += len;
		run = i;
	}
	sb_append_n(sb, (const char *)p + run, n - run);
}

size_t utf8_cut(const uint8_t *p, size_t n)
{
	/* Only the last three bytes can be an unfinished character. */
	for (size_t k = 1; k <= 3 && k <= n; k++) {
		uint8_t c = p[n - k];
		if (c >= 0x80 && c <= 0xbf)
			continue; /* a continuation byte: look further back */
		if (c < 0xc2 || c > 0xf4)
			return n;
		bool whole;
		size_t len = utf8_scan(p + n - k, k, &whole);
		return !whole && len == k ? n - k : n;
	}
	return n;
}
