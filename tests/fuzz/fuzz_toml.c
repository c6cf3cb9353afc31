/*
 * fuzz_toml.c: libFuzzer harness for the TOML parser (core/toml).
 *
 * Config files reach toml_parse() from users and generators, so any input
 * must end in a tree or a positioned error: never a crash, a read past the
 * buffer (libFuzzer hands over exactly `size` bytes, so ASan sees one), a
 * leak, or a tree that breaks the promises of toml.h. Beyond what the
 * sanitizers catch, this checks those promises: NUL-terminated valid UTF-8
 * strings and keys, unique keys, positions from 1:1, bounded depth, and date
 * fields in range.
 *
 *   build-fuzz/bin/fuzz_toml tests/fuzz/corpus/toml
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                          \
	do {                                                                   \
		if (!(cond))                                                   \
			__builtin_trap();                                      \
	} while (0)

/* An independent UTF-8 check, so a bug in the parser's own cannot hide
 * itself. */
static void require_utf8(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t n;
		if (u[i] < 0x80) {
			i++;
			continue;
		} else if ((u[i] & 0xE0) == 0xC0) {
			n = 2;
			cp = u[i] & 0x1F;
		} else if ((u[i] & 0xF0) == 0xE0) {
			n = 3;
			cp = u[i] & 0x0F;
		} else {
			REQUIRE((u[i] & 0xF8) == 0xF0);
			n = 4;
			cp = u[i] & 0x07;
		}
		REQUIRE(len - i >= n);
		for (size_t k = 1; k < n; k++) {
			REQUIRE((u[i + k] & 0xC0) == 0x80);
			cp = cp << 6 | (u[i + k] & 0x3F);
		}
		static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
		REQUIRE(cp >= min[n] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF));
		i += n;
	}
	REQUIRE(s[len] == '\0');
}

static void check_value(const toml_value_t *v, int depth)
{
	REQUIRE(v && v->line >= 1 && v->col >= 1);
	switch (v->type) {
	case TOML_STRING:
		require_utf8(v->u.str.ptr, v->u.str.len);
		break;
	case TOML_INTEGER:
	case TOML_FLOAT:
	case TOML_BOOLEAN:
		break;
	case TOML_DATETIME:
	case TOML_DATETIME_LOCAL:
	case TOML_DATE_LOCAL:
	case TOML_TIME_LOCAL: {
		const toml_datetime_t *dt = &v->u.dt;
		if (v->type != TOML_TIME_LOCAL)
			REQUIRE(dt->year >= 0 && dt->year <= 9999 && dt->month >= 1 &&
				dt->month <= 12 && dt->day >= 1 && dt->day <= 31);
		REQUIRE(dt->hour >= 0 && dt->hour <= 23 && dt->minute >= 0 &&
			dt->minute <= 59 && dt->second >= 0 && dt->second <= 59);
		REQUIRE(dt->nanosecond >= 0 && dt->nanosecond < 1000000000);
		REQUIRE(dt->offset_minutes > -24 * 60 && dt->offset_minutes < 24 * 60);
		break;
	}
	case TOML_ARRAY:
		REQUIRE(depth <= TOML_MAX_DEPTH);
		for (size_t i = 0; i < v->u.array.len; i++)
			check_value(v->u.array.items[i], depth + 1);
		break;
	case TOML_TABLE:
		REQUIRE(depth <= TOML_MAX_DEPTH);
		for (size_t i = 0; i < v->u.table.len; i++) {
			const toml_kv_t *kv = &v->u.table.items[i];
			REQUIRE(kv->line >= 1 && kv->col >= 1);
			require_utf8(kv->key, kv->key_len);
			/* Keys are unique; the lookup finds this very entry. */
			REQUIRE(toml_table_getn(v, kv->key, kv->key_len) == kv);
			check_value(kv->value, depth + 1);
		}
		break;
	default:
		REQUIRE(0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	toml_value_t *root = NULL;
	toml_error_t err;
	int r = toml_parse((const char *)data, size, &root, &err);
	if (r == 0) {
		REQUIRE(root && root->type == TOML_TABLE);
		check_value(root, 0);
		toml_free(root);
		return 0;
	}
	REQUIRE(r == -EINVAL || r == -ENOMEM);
	REQUIRE(root == NULL);
	REQUIRE(err.line >= 1 && err.col >= 1);
	size_t len = strnlen(err.message, sizeof err.message);
	REQUIRE(len > 0 && len < sizeof err.message);
	require_utf8(err.message, len); /* even when cut to fit */
	return 0;
}
