/*
 * test_toml.c: the TOML parser's API beyond what the toml-test conformance
 * suite can see through hutch-toml-decode: positions of keys, values and
 * errors (the config loader reports them to users), lookups, strings with
 * U+0000, the nesting limit, int64 edges, the wording of error messages, and
 * that big tables parse in linear time.
 *
 *   test_toml [NAME]     runs every test, or only NAME
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toml.h"

static int failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			failures++;                                            \
		}                                                              \
	} while (0)

#define CHECK_POS(obj, l, c)                                                   \
	do {                                                                   \
		if ((obj)->line != (l) || (obj)->col != (c)) {                 \
			fprintf(stderr, "%s:%d: %s is at %d:%d, expected %d:%d\n", \
				__FILE__, __LINE__, #obj, (obj)->line,         \
				(obj)->col, (l), (c));                         \
			failures++;                                            \
		}                                                              \
	} while (0)

/* Parses a NUL-terminated document that must be valid. */
static toml_value_t *parse_ok(const char *doc)
{
	toml_value_t *root = NULL;
	toml_error_t err;
	int r = toml_parse(doc, strlen(doc), &root, &err);
	if (r != 0) {
		fprintf(stderr, "unexpected parse failure %d at %d:%d: %s\n--- document:\n%s\n---\n",
			r, err.line, err.col, err.message, doc);
		failures++;
		return NULL;
	}
	return root;
}

/* Parses len bytes that must be rejected with -EINVAL at line:col; if
 * message is not NULL the error message must be exactly it. */
static void expect_error_n(const char *doc, size_t len, int line, int col,
			   const char *message, int src_line)
{
	toml_value_t *root = (toml_value_t *)&root; /* must stay untouched */
	toml_value_t *const sentinel = root;
	toml_error_t err;
	int r = toml_parse(doc, len, &root, &err);
	if (r != -EINVAL) {
		fprintf(stderr, "%s:%d: expected -EINVAL, got %d\n", __FILE__, src_line, r);
		failures++;
		if (r == 0)
			toml_free(root);
		return;
	}
	if (root != sentinel) {
		fprintf(stderr, "%s:%d: *out changed on failure\n", __FILE__, src_line);
		failures++;
	}
	if (err.line != line || err.col != col ||
	    (message && strcmp(err.message, message) != 0)) {
		fprintf(stderr, "%s:%d: got error %d:%d: %s\n    expected %d:%d: %s\n",
			__FILE__, src_line, err.line, err.col, err.message, line, col,
			message ? message : "(any message)");
		failures++;
	}
}

#define EXPECT_ERROR(doc, line, col, msg)                                      \
	expect_error_n(doc, strlen(doc), line, col, msg, __LINE__)
#define EXPECT_ERROR_N(doc, len, line, col, msg)                               \
	expect_error_n(doc, len, line, col, msg, __LINE__)

static const toml_kv_t *kv_of(const toml_value_t *table, const char *key)
{
	return toml_table_getn(table, key, strlen(key));
}

/* ------------------------------------------------------------------------ */

static void test_positions(void)
{
	toml_value_t *root = parse_ok("# comment\n"
				      "name = \"x\"\n"
				      "[server]\n"
				      "  port = 8080\n"
				      "  tags = [ \"a\",\n"
				      "           \"b\" ]\n"
				      "[a.b.c]\n"
				      "d.e = 1\n"
				      "point = { x = 1, y = 2 }\n"
				      "[[arr]]\n"
				      "[[arr]]\n"
				      "\tq\t=\t'tab'\n");
	if (!root)
		return;
	CHECK_POS(root, 1, 1);

	const toml_kv_t *name = kv_of(root, "name");
	CHECK(name && name->value->type == TOML_STRING);
	if (name) {
		CHECK_POS(name, 2, 1);
		CHECK_POS(name->value, 2, 8);
	}

	const toml_kv_t *server = kv_of(root, "server");
	CHECK(server && server->value->type == TOML_TABLE);
	if (server) {
		CHECK_POS(server, 3, 2); /* the key inside the header */
		CHECK_POS(server->value, 3, 1); /* the header's `[` */
		const toml_kv_t *port = kv_of(server->value, "port");
		CHECK(port && port->value->type == TOML_INTEGER);
		if (port) {
			CHECK_POS(port, 4, 3);
			CHECK_POS(port->value, 4, 10);
		}
		const toml_kv_t *tags = kv_of(server->value, "tags");
		CHECK(tags && tags->value->type == TOML_ARRAY &&
		      tags->value->u.array.len == 2);
		if (tags && tags->value->u.array.len == 2) {
			CHECK_POS(tags->value, 5, 10);
			CHECK_POS(tags->value->u.array.items[0], 5, 12);
			CHECK_POS(tags->value->u.array.items[1], 6, 12);
		}
	}

	/* `a` and `a.b` are created implicitly by [a.b.c]: the key where it
	 * is written, the table at the header. */
	const toml_kv_t *a = kv_of(root, "a");
	CHECK(a && a->value->type == TOML_TABLE);
	if (a) {
		CHECK_POS(a, 7, 2);
		CHECK_POS(a->value, 7, 1);
		const toml_kv_t *b = kv_of(a->value, "b");
		CHECK(b != NULL);
		if (b) {
			CHECK_POS(b, 7, 4);
			CHECK_POS(b->value, 7, 1);
			const toml_kv_t *c = kv_of(b->value, "c");
			CHECK(c != NULL);
			if (c) {
				CHECK_POS(c, 7, 6);
				CHECK_POS(c->value, 7, 1);
				/* d is created by the dotted key d.e. */
				const toml_kv_t *d = kv_of(c->value, "d");
				CHECK(d && d->value->type == TOML_TABLE);
				if (d) {
					CHECK_POS(d, 8, 1);
					CHECK_POS(d->value, 8, 1);
					const toml_kv_t *e = kv_of(d->value, "e");
					CHECK(e != NULL);
					if (e) {
						CHECK_POS(e, 8, 3);
						CHECK_POS(e->value, 8, 7);
					}
				}
				const toml_kv_t *point = kv_of(c->value, "point");
				CHECK(point && point->value->type == TOML_TABLE);
				if (point) {
					CHECK_POS(point->value, 9, 9);
					const toml_kv_t *y = kv_of(point->value, "y");
					CHECK(y != NULL);
					if (y) {
						CHECK_POS(y, 9, 18);
						CHECK_POS(y->value, 9, 22);
					}
				}
			}
		}
	}

	const toml_kv_t *arr = kv_of(root, "arr");
	CHECK(arr && arr->value->type == TOML_ARRAY && arr->value->u.array.len == 2);
	if (arr && arr->value->u.array.len == 2) {
		CHECK_POS(arr, 10, 3);
		CHECK_POS(arr->value, 10, 1);
		CHECK_POS(arr->value->u.array.items[0], 10, 1);
		CHECK_POS(arr->value->u.array.items[1], 11, 1);
		/* A tab is one column. */
		const toml_kv_t *q = kv_of(arr->value->u.array.items[1], "q");
		CHECK(q != NULL);
		if (q) {
			CHECK_POS(q, 12, 2);
			CHECK_POS(q->value, 12, 6);
		}
	}
	toml_free(root);
}

static void test_positions_unicode_crlf_bom(void)
{
	/* Columns count code points, not bytes; a BOM takes no column; CRLF
	 * ends a line like LF. */
	toml_value_t *root = parse_ok("\xEF\xBB\xBF" "\"\xC3\xA9t\xC3\xA9\" = \"\xE2\x82\xAC\" # \xF0\x9F\x98\x80\r\n"
				      "x = 1\r\n");
	if (!root)
		return;
	const toml_kv_t *ete = kv_of(root, "\xC3\xA9t\xC3\xA9");
	CHECK(ete != NULL);
	if (ete) {
		CHECK_POS(ete, 1, 1);
		CHECK_POS(ete->value, 1, 9);
		CHECK(ete->value->u.str.len == 3);
	}
	const toml_kv_t *x = kv_of(root, "x");
	CHECK(x != NULL);
	if (x) {
		CHECK_POS(x, 2, 1);
		CHECK_POS(x->value, 2, 5);
	}
	toml_free(root);

	/* A table named by a header first and defined later is reported at
	 * its definition. */
	root = parse_ok("[x.y]\n[x]\n");
	if (!root)
		return;
	x = kv_of(root, "x");
	CHECK(x != NULL);
	if (x) {
		CHECK_POS(x, 2, 2);
		CHECK_POS(x->value, 2, 1);
	}
	toml_free(root);
}

static void test_error_positions(void)
{
	EXPECT_ERROR("a = 1\na = 2\n", 2, 1, "duplicate key `a`");
	EXPECT_ERROR("s = \"ab\\qc\"\n", 1, 8, "invalid escape `\\q`");
	/* The column of the backslash counts the two-byte é as one. */
	EXPECT_ERROR("s = \"\xC3\xA9\\q\"", 1, 7, "invalid escape `\\q`");
	EXPECT_ERROR("[t]\nx = 1\n[t]\n", 3, 2, "table `t` is already defined (at 1:2)");
	EXPECT_ERROR("[a]\nb.c = 1\n[a.b]\n", 3, 2,
		     "table `a.b` is already defined by dotted keys (at 2:1)");
	EXPECT_ERROR("x = 1\n[x.y]\n", 2, 2,
		     "key `x` is already an integer (at 1:1), not a table");
	EXPECT_ERROR("a.b = 1\na.b.c = 2\n", 2, 3,
		     "key `a.b` is already an integer (at 1:3), not a table");
	EXPECT_ERROR("t = {a = 1}\nt.b = 2\n", 2, 1,
		     "inline table `t` (at 1:1) cannot be extended");
	EXPECT_ERROR("t = {a = 1,}\n", 1, 12, "trailing comma in an inline table");
	EXPECT_ERROR("t = {a = 1,\nb = 2}\n", 1, 12,
		     "an inline table must be on a single line");
	EXPECT_ERROR("a = [1, 2\n", 2, 1,
		     "expected `,` or `]` in the array, found end of input");
	EXPECT_ERROR("x = 99999999999999999999\n", 1, 5,
		     "integer is too large (the largest is 9223372036854775807)");
	EXPECT_ERROR("d = 2023-02-29\n", 1, 13, "day 29 is out of range: 2023-02 has 28 days");
	EXPECT_ERROR("t = 24:00:00\n", 1, 5, "hour 24 is out of range (00 to 23)");
	EXPECT_ERROR("v = tru\n", 1, 5, "invalid value `tru` (strings must be quoted)");
	EXPECT_ERROR("v = 1__0\n", 1, 6, "an underscore must sit between two digits");
	EXPECT_ERROR("v = 007\n", 1, 6, "leading zeros are not allowed in a decimal number");
	EXPECT_ERROR("v = 0x_1\n", 1, 7, "an underscore must sit between two digits");
	EXPECT_ERROR("s = \"abc\n", 1, 9, "unterminated string: missing closing `\"`");
	EXPECT_ERROR("s = \"abc", 1, 9, "unterminated string: missing closing `\"`");
	EXPECT_ERROR("s = \"\"\"abc\n\n", 3, 1, "unterminated multi-line string (opened at 1:5)");
	EXPECT_ERROR("s = \"\\uD800\"", 1, 6, "escape `\\uD800` is not a Unicode scalar value");
	EXPECT_ERROR("a = 1\r\nb = @\r\n", 2, 5, "expected a value, found `@`");
	EXPECT_ERROR("a = 1\rb = 2\n", 1, 6,
		     "carriage return (U+000D) not followed by a line feed");
	EXPECT_ERROR("a = 1 # bell \x07\n", 1, 14,
		     "control character U+0007 is not allowed in a comment");
	EXPECT_ERROR("s = 'a\tb\x7F'\n", 1, 9,
		     "control character U+007F is not allowed in a string; write it as an escape");
	EXPECT_ERROR("a = 1 b = 2\n", 1, 7, "expected end of line, found `b`");
	EXPECT_ERROR("\xE3\x80\x80" "a = 1\n", 1, 1, "expected a key, found `\xE3\x80\x80` (U+3000)");
	EXPECT_ERROR("[[a]]\n[a]\n", 2, 2, "`a` is an array of tables (at 1:3); use [[a]] to add to it");
	EXPECT_ERROR("a = []\n[[a]]\n", 2, 3,
		     "key `a` is already an array (at 1:1), not an array of tables");
	EXPECT_ERROR("\"\"\"k\"\"\" = 1\n", 1, 1, "a key cannot be a multi-line string");
	EXPECT_ERROR("f = 1e400\n", 1, 5, "float is too large for a 64-bit float");
}

static void test_invalid_utf8(void)
{
	/* Every byte sequence UTF-8 forbids, anywhere, comments included. */
	EXPECT_ERROR("a = 1\nb = \"\xFF\"\n", 2, 6, "invalid UTF-8: byte 0xFF never appears in UTF-8");
	EXPECT_ERROR("# \x80\n", 1, 3, "invalid UTF-8: unexpected continuation byte 0x80");
	EXPECT_ERROR("# \xC0\xAF\n", 1, 3, "invalid UTF-8: overlong encoding (byte 0xC0)");
	EXPECT_ERROR("# \xE0\x80\xAF\n", 1, 3, "invalid UTF-8: overlong encoding of U+002F");
	EXPECT_ERROR("# \xF0\x80\x80\xAF\n", 1, 3, "invalid UTF-8: overlong encoding of U+002F");
	EXPECT_ERROR("# \xED\xA0\x80\n", 1, 3, "invalid UTF-8: surrogate U+D800 is not a character");
	EXPECT_ERROR("# \xF4\x90\x80\x80\n", 1, 3, "invalid UTF-8: U+110000 is past U+10FFFF");
	EXPECT_ERROR("# \xE2\x82", 1, 3, "invalid UTF-8: sequence cut short by the end of input");
	EXPECT_ERROR("# \xE2\x82x\n", 1, 3,
		     "invalid UTF-8: byte 0xE2 starts a sequence that is cut short");
	/* A NUL byte in the source is a control character, not an end. */
	EXPECT_ERROR_N("a = 1\0", 6, 1, 6, "unexpected U+0000 after the number");
	EXPECT_ERROR_N("a = 1 \0", 7, 1, 7, "expected end of line, found U+0000");

	/* The largest code point and a 4-byte character are fine. */
	toml_value_t *root = parse_ok("s = \"\xF4\x8F\xBF\xBF\xF0\x9F\x98\x80\"\n");
	if (root) {
		const toml_value_t *s = toml_table_get(root, "s");
		CHECK(s && s->u.str.len == 8);
		toml_free(root);
	}
}

static void test_table_get(void)
{
	toml_value_t *root = parse_ok("a = 1\n\"b.c\" = 2\n[t]\nx = 'y'\n");
	if (!root)
		return;
	const toml_value_t *a = toml_table_get(root, "a");
	CHECK(a && a->type == TOML_INTEGER && a->u.integer == 1);
	/* A quoted key with a dot is one key, not a path. */
	const toml_value_t *bc = toml_table_get(root, "b.c");
	CHECK(bc && bc->u.integer == 2);
	CHECK(toml_table_get(root, "b") == NULL);
	CHECK(toml_table_get(root, "x") == NULL);
	CHECK(toml_table_get(root, "A") == NULL); /* keys are case-sensitive */
	const toml_value_t *t = toml_table_get(root, "t");
	CHECK(t && t->type == TOML_TABLE);
	const toml_value_t *x = toml_table_get(t, "x");
	CHECK(x && x->type == TOML_STRING && strcmp(x->u.str.ptr, "y") == 0);
	/* Not a table, NULL table, NULL key. */
	CHECK(toml_table_get(a, "a") == NULL);
	CHECK(toml_table_get(NULL, "a") == NULL);
	CHECK(toml_table_get(root, NULL) == NULL);
	/* Document order is kept. */
	CHECK(root->u.table.len == 3);
	if (root->u.table.len == 3) {
		CHECK(strcmp(root->u.table.items[0].key, "a") == 0);
		CHECK(strcmp(root->u.table.items[1].key, "b.c") == 0);
		CHECK(strcmp(root->u.table.items[2].key, "t") == 0);
	}
	toml_free(root);

	CHECK(strcmp(toml_type_name(TOML_INTEGER), "integer") == 0);
	CHECK(strcmp(toml_type_name(TOML_STRING), "string") == 0);
	CHECK(strcmp(toml_type_name(TOML_TABLE), "table") == 0);
	CHECK(strcmp(toml_type_name(TOML_DATETIME), "offset date-time") == 0);
	CHECK(strcmp(toml_type_name((toml_type_t)99), "unknown") == 0);
}

static void test_nul_in_strings(void)
{
	toml_value_t *root = parse_ok("s = \"a\\u0000b\"\n"
				      "\"k\\u0000z\" = 1\n"
				      "m = \"\"\"\\U00000000\"\"\"\n");
	if (!root)
		return;
	const toml_value_t *s = toml_table_get(root, "s");
	CHECK(s && s->type == TOML_STRING && s->u.str.len == 3);
	if (s && s->u.str.len == 3) {
		CHECK(memcmp(s->u.str.ptr, "a\0b", 3) == 0);
		CHECK(s->u.str.ptr[3] == '\0'); /* NUL-terminated as well */
	}
	/* A key with U+0000 is found by length, not by C string. */
	const toml_kv_t *k = toml_table_getn(root, "k\0z", 3);
	CHECK(k && k->key_len == 3 && k->value->u.integer == 1);
	CHECK(toml_table_get(root, "k") == NULL);
	const toml_value_t *m = toml_table_get(root, "m");
	CHECK(m && m->u.str.len == 1 && m->u.str.ptr[0] == '\0');
	toml_free(root);
}

static void test_strings(void)
{
	toml_value_t *root = parse_ok(
		"esc = \"\\b\\t\\n\\f\\r\\\"\\\\\\u00e9\\U0001F600\"\n"
		"lit = 'C:\\path\\'\n"
		"ml = \"\"\"\r\nline1\r\nline2 \\\r\n   \t  joined\"\"\"\n"
		"mll = '''\n'one' ''two'' '''''\n"
		"q = \"\"\"\"\"quoted\"\"\"\"\"\n");
	if (!root)
		return;
	const toml_value_t *v = toml_table_get(root, "esc");
	CHECK(v && v->u.str.len == 7 + 2 + 4);
	if (v)
		CHECK(memcmp(v->u.str.ptr, "\b\t\n\f\r\"\\\xC3\xA9\xF0\x9F\x98\x80", 13) == 0);
	v = toml_table_get(root, "lit");
	CHECK(v && strcmp(v->u.str.ptr, "C:\\path\\") == 0);
	/* First newline dropped, CRLF stored as LF, line-ending backslash
	 * swallows the newline and the indentation. */
	v = toml_table_get(root, "ml");
	CHECK(v && strcmp(v->u.str.ptr, "line1\nline2 joined") == 0);
	v = toml_table_get(root, "mll");
	CHECK(v && strcmp(v->u.str.ptr, "'one' ''two'' ''") == 0);
	v = toml_table_get(root, "q");
	CHECK(v && strcmp(v->u.str.ptr, "\"\"quoted\"\"") == 0);
	toml_free(root);
}

/* Builds prefix + open*n + middle + close*n + suffix. */
static char *nested(const char *prefix, const char *open, const char *middle,
		    const char *close, int n, const char *suffix)
{
	size_t len = strlen(prefix) + (strlen(open) + strlen(close)) * (size_t)n +
		     strlen(middle) + strlen(suffix) + 1;
	char *s = malloc(len), *at = s;
	if (!s)
		abort();
	at = stpcpy(at, prefix);
	for (int i = 0; i < n; i++)
		at = stpcpy(at, open);
	at = stpcpy(at, middle);
	for (int i = 0; i < n; i++)
		at = stpcpy(at, close);
	stpcpy(at, suffix);
	return s;
}

static void test_nesting_limit(void)
{
	const char *msg = "nesting deeper than 128 levels";

	/* 128 nested arrays below the root are fine, 129 are not; the error
	 * points at the `[` that would be 129th. */
	char *doc = nested("a = ", "[", "", "]", TOML_MAX_DEPTH, "\n");
	toml_value_t *root = parse_ok(doc);
	toml_free(root);
	free(doc);
	doc = nested("a = ", "[", "", "]", TOML_MAX_DEPTH + 1, "\n");
	EXPECT_ERROR(doc, 1, 4 + TOML_MAX_DEPTH + 1, msg);
	free(doc);

	/* Inline tables: `a = {b = {b = ... 1}}`, each level is 5 columns. */
	doc = nested("a = ", "{b = ", "1", "}", TOML_MAX_DEPTH, "\n");
	root = parse_ok(doc);
	toml_free(root);
	free(doc);
	doc = nested("a = ", "{b = ", "1", "}", TOML_MAX_DEPTH + 1, "\n");
	EXPECT_ERROR(doc, 1, 5 + 5 * TOML_MAX_DEPTH, msg);
	free(doc);

	/* Far past the limit: an error, not a stack overflow. */
	doc = nested("a = ", "[", "", "", 1000000, "\n");
	EXPECT_ERROR(doc, 1, 4 + TOML_MAX_DEPTH + 1, msg);
	free(doc);
	doc = nested("a = ", "{b = ", "", "", 1000000, "\n");
	EXPECT_ERROR(doc, 1, 5 + 5 * TOML_MAX_DEPTH, msg);
	free(doc);

	/* Dotted keys and headers nest too; the error points at the part of
	 * the key that would sit too deep. */
	doc = nested("", "a.", "b = 1\n", "", TOML_MAX_DEPTH, "");
	root = parse_ok(doc);
	toml_free(root);
	free(doc);
	doc = nested("", "a.", "b = 1\n", "", TOML_MAX_DEPTH + 1, "");
	EXPECT_ERROR(doc, 1, 1 + 2 * TOML_MAX_DEPTH, msg);
	free(doc);
	doc = nested("", "a.", "b = 1\n", "", 1000000, "");
	EXPECT_ERROR(doc, 1, 1 + 2 * TOML_MAX_DEPTH, msg);
	free(doc);
	doc = nested("[", "a.", "b]\n", "", TOML_MAX_DEPTH - 1, "");
	root = parse_ok(doc);
	toml_free(root);
	free(doc);
	doc = nested("[", "a.", "b]\n", "", TOML_MAX_DEPTH, "");
	EXPECT_ERROR(doc, 1, 2 + 2 * TOML_MAX_DEPTH, msg);
	free(doc);
	/* ... and add up with the nesting of values. */
	doc = nested("[", "a.", "b]\nc = [[1]]\n", "", TOML_MAX_DEPTH - 1, "");
	EXPECT_ERROR(doc, 2, 5, msg);
	free(doc);
	/* Arrays of tables count twice: the array and its element. */
	doc = nested("[[", "a.", "b]]\n", "", TOML_MAX_DEPTH - 2, "");
	root = parse_ok(doc);
	toml_free(root);
	free(doc);
	doc = nested("[[", "a.", "b]]\n", "", TOML_MAX_DEPTH - 1, "");
	EXPECT_ERROR(doc, 1, 3 + 2 * (TOML_MAX_DEPTH - 1), msg);
	free(doc);
}

static void test_int64_bounds(void)
{
	toml_value_t *root = parse_ok("max = 9223372036854775807\n"
				      "min = -9223372036854775808\n"
				      "hex = 0x7FFF_FFFF_FFFF_FFFF\n"
				      "oct = 0o777777777777777777777\n"
				      "bin = 0b0111111111111111111111111111111111111111111111111111111111111111\n"
				      "zeros = 0x0000000000000000000000000000001\n"
				      "neg0 = -0\n"
				      "under = 1_000_000\n");
	if (root) {
		CHECK(toml_table_get(root, "max")->u.integer == INT64_MAX);
		CHECK(toml_table_get(root, "min")->u.integer == INT64_MIN);
		CHECK(toml_table_get(root, "hex")->u.integer == INT64_MAX);
		CHECK(toml_table_get(root, "oct")->u.integer == INT64_MAX);
		CHECK(toml_table_get(root, "bin")->u.integer == INT64_MAX);
		CHECK(toml_table_get(root, "zeros")->u.integer == 1);
		CHECK(toml_table_get(root, "neg0")->u.integer == 0);
		CHECK(toml_table_get(root, "under")->u.integer == 1000000);
		toml_free(root);
	}
	const char *big = "integer is too large (the largest is 9223372036854775807)";
	EXPECT_ERROR("v = 9223372036854775808\n", 1, 5, big);
	EXPECT_ERROR("v = -9223372036854775809\n", 1, 5,
		     "integer is too small (the smallest is -9223372036854775808)");
	EXPECT_ERROR("v = 0x8000000000000000\n", 1, 5, big);
	EXPECT_ERROR("v = 0o1000000000000000000000\n", 1, 5, big);
	EXPECT_ERROR("v = 0b1000000000000000000000000000000000000000000000000000000000000000\n",
		     1, 5, big);
	EXPECT_ERROR("v = 18446744073709551616\n", 1, 5, big);
	EXPECT_ERROR("v = -0x1\n", 1, 5, "hexadecimal, octal and binary integers cannot have a sign");
}

static void test_floats(void)
{
	toml_value_t *root = parse_ok("a = 0.1\nb = -1_000.5e-3\nc = inf\nd = -inf\n"
				      "e = nan\nf = -0.0\ng = 1e-400\nh = 5E+22\n");
	if (!root)
		return;
	CHECK(toml_table_get(root, "a")->u.fp == 0.1);
	CHECK(toml_table_get(root, "b")->u.fp == -1.0005);
	CHECK(isinf(toml_table_get(root, "c")->u.fp) && toml_table_get(root, "c")->u.fp > 0);
	CHECK(isinf(toml_table_get(root, "d")->u.fp) && toml_table_get(root, "d")->u.fp < 0);
	CHECK(isnan(toml_table_get(root, "e")->u.fp));
	CHECK(toml_table_get(root, "f")->u.fp == 0 && signbit(toml_table_get(root, "f")->u.fp));
	CHECK(toml_table_get(root, "g")->u.fp == 0); /* underflow is not an error */
	CHECK(toml_table_get(root, "h")->u.fp == 5e22);
	CHECK(toml_table_get(root, "h")->type == TOML_FLOAT);
	toml_free(root);
}

static void test_datetimes(void)
{
	toml_value_t *root = parse_ok("odt = 1979-05-27T07:32:00.1234567891-07:30\n"
				      "z = 1979-05-27 07:32:00z\n"
				      "ldt = 2000-02-29t23:59:59.5\n"
				      "ld = 2024-02-29\n"
				      "lt = 00:00:00.000001\n");
	if (!root)
		return;
	const toml_value_t *v = toml_table_get(root, "odt");
	CHECK(v && v->type == TOML_DATETIME);
	if (v) {
		const toml_datetime_t *dt = &v->u.dt;
		CHECK(dt->year == 1979 && dt->month == 5 && dt->day == 27);
		CHECK(dt->hour == 7 && dt->minute == 32 && dt->second == 0);
		CHECK(dt->nanosecond == 123456789); /* truncated, not rounded */
		CHECK(dt->offset_minutes == -450 && !dt->offset_z);
	}
	v = toml_table_get(root, "z");
	CHECK(v && v->type == TOML_DATETIME && v->u.dt.offset_z && v->u.dt.offset_minutes == 0);
	v = toml_table_get(root, "ldt");
	CHECK(v && v->type == TOML_DATETIME_LOCAL && v->u.dt.nanosecond == 500000000 &&
	      v->u.dt.day == 29);
	v = toml_table_get(root, "ld");
	CHECK(v && v->type == TOML_DATE_LOCAL && v->u.dt.year == 2024 && v->u.dt.hour == 0);
	v = toml_table_get(root, "lt");
	CHECK(v && v->type == TOML_TIME_LOCAL && v->u.dt.nanosecond == 1000 && v->u.dt.year == 0);
	toml_free(root);

	EXPECT_ERROR("d = 1900-02-29\n", 1, 13, "day 29 is out of range: 1900-02 has 28 days");
	EXPECT_ERROR("d = 2023-04-31\n", 1, 13, "day 31 is out of range: 2023-04 has 30 days");
	EXPECT_ERROR("d = 2023-04-30T12:00\n", 1, 21,
		     "expected `:` and seconds after the minute, found end of line");
	EXPECT_ERROR("d = 2023-04-30T12:00:60\n", 1, 22, "second 60 is out of range (00 to 59)");
	EXPECT_ERROR("d = 2023-04-30T12:00:00+24:00\n", 1, 25,
		     "offset hour 24 is out of range (00 to 23)");
	EXPECT_ERROR("t = 12:00:00Z\n", 1, 13, "unexpected `Z` after the date/time");
}

static void test_table_rules(void)
{
	/* Valid: sub-tables under dotted-key tables, implicit tables defined
	 * later, [a.b] inside the last [[a]] element. */
	toml_value_t *root = parse_ok("[fruit]\napple.color = 'red'\n[fruit.apple.texture]\nsmooth = true\n"
				      "[x.y.z]\n[x]\n"
				      "[[arr]]\nn = 1\n[arr.sub]\nk = 1\n[[arr]]\nn = 2\n");
	if (root) {
		const toml_value_t *arr = toml_table_get(root, "arr");
		CHECK(arr && arr->type == TOML_ARRAY && arr->u.array.len == 2);
		if (arr && arr->u.array.len == 2) {
			CHECK(toml_table_get(arr->u.array.items[0], "sub") != NULL);
			CHECK(toml_table_get(arr->u.array.items[1], "sub") == NULL);
		}
		toml_free(root);
	}
	/* Dotted keys may not add to a table defined by a header elsewhere
	 * (toml-lang/toml#846). */
	EXPECT_ERROR("[a.b.c]\nz = 9\n[a]\nb.c.t = 1\n", 4, 3,
		     "table `b.c` was defined by a header at 1:1; dotted keys cannot add to it");
	EXPECT_ERROR("a.b = 1\n[c]\n[a]\n", 3, 2,
		     "table `a` is already defined by dotted keys (at 1:1)");
	EXPECT_ERROR("[t]\na.x = 1\n[u]\n[t.a]\n", 4, 2,
		     "table `t.a` is already defined by dotted keys (at 2:1)");
	EXPECT_ERROR("a = {b = {}}\n[a.b.c]\n", 2, 2, "inline table `a` (at 1:1) cannot be extended");
	EXPECT_ERROR("a = {x.y = 1, x = 2}\n", 1, 15, "duplicate key `x`");
}

static void test_big_table_duplicates(void)
{
	/* Past the index threshold the lookup goes through the hash index;
	 * duplicates must still be caught, at the right place. */
	size_t n = 2000, cap = n * 24 + 64, len = 0;
	char *doc = malloc(cap);
	if (!doc)
		abort();
	for (size_t i = 0; i < n; i++)
		len += (size_t)snprintf(doc + len, cap - len, "key%zu = %zu\n", i, i);
	len += (size_t)snprintf(doc + len, cap - len, "key1234 = 0\n");
	EXPECT_ERROR_N(doc, len, (int)n + 1, 1, "duplicate key `key1234`");
	toml_value_t *root = NULL;
	CHECK(toml_parse(doc, len - 12, &root, NULL) == 0);
	if (root) {
		CHECK(root->u.table.len == n);
		const toml_value_t *v = toml_table_get(root, "key1999");
		CHECK(v && v->u.integer == 1999);
		toml_free(root);
	}
	free(doc);
}

static double parse_seconds(size_t keys)
{
	size_t cap = keys * 32 + 64, len = 0;
	char *doc = malloc(cap);
	if (!doc)
		abort();
	len += (size_t)snprintf(doc, cap, "[t]\n");
	for (size_t i = 0; i < keys; i++)
		len += (size_t)snprintf(doc + len, cap - len, "k%zu = %zu\n", i * 7919, i);
	struct timespec a, b;
	/* CPU time of this thread, not wall time: on a loaded machine the
	 * scheduler's pauses would otherwise count as parsing. */
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	toml_value_t *root = NULL;
	int r = toml_parse(doc, len, &root, NULL);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	CHECK(r == 0);
	toml_free(root);
	free(doc);
	return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
}

static void test_big_table_linear(void)
{
	/* Eight times the keys must cost well under 64 times (quadratic) the
	 * time; take the best of five to ride out a noisy machine. */
	double small = 1e9, large = 1e9;
	for (int i = 0; i < 5; i++) {
		double s = parse_seconds(10000), l = parse_seconds(80000);
		small = s < small ? s : small;
		large = l < large ? l : large;
	}
	if (large > small * 24 + 0.02) {
		fprintf(stderr, "parse time not linear: 10000 keys %.4fs, 80000 keys %.4fs\n",
			small, large);
		failures++;
	}
}

static void test_plain_messages(void)
{
	/* Messages are one line of plain words for a human: no position
	 * prefix (the caller adds file:line:col), no parser jargon, no
	 * control characters even when the input has them. */
	static const char *bad[] = {
		"a =", "= 1", "[a", "[[a]", "a = [1,,2]", "a = {b = 1", "a = \"\\x41\"",
		"a = 1979-13-01", "a = 1.", "a = +0x10", "a = \"\x01\"", "[a]\n[a]",
		"a.b = 1\na.b.c = 2", "a = 'x' 'y'", "\"\x7F\" = 1", "a = nan1",
		"a = {b=1}\n[a]", "\xEF\xBB\xBF\xEF\xBB\xBF", "x = 1\r", "a = 0o8",
	};
	static const char *jargon[] = { "token", "EOF", "lexer", "syntax error", "NULL", "TOK_" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		toml_value_t *root = NULL;
		toml_error_t err;
		int r = toml_parse(bad[i], strlen(bad[i]), &root, &err);
		CHECK(r == -EINVAL);
		if (r == 0) {
			toml_free(root);
			continue;
		}
		size_t len = strlen(err.message);
		bool ok = len > 10 && len < sizeof err.message - 1 && err.line >= 1 &&
			  err.col >= 1 && !(err.message[0] >= '0' && err.message[0] <= '9');
		for (size_t k = 0; k < len; k++)
			if ((unsigned char)err.message[k] < 0x20 || err.message[k] == 0x7F)
				ok = false;
		for (size_t k = 0; k < sizeof jargon / sizeof jargon[0]; k++)
			if (strstr(err.message, jargon[k]))
				ok = false;
		if (!ok) {
			fprintf(stderr, "%s:%d: message for case %zu is not plain: %d:%d: %s\n",
				__FILE__, __LINE__, i, err.line, err.col, err.message);
			failures++;
		}
	}

	/* Keys in messages are quoted the way TOML would write them. */
	EXPECT_ERROR("\"a b\" = 1\n\"a b\" = 2\n", 2, 1, "duplicate key `\"a b\"`");
	EXPECT_ERROR("\"\\n\" = 1\n\"\\n\" = 2\n", 2, 1, "duplicate key `\"\\u000A\"`");
}

static void test_api_edges(void)
{
	toml_value_t *root = NULL;
	/* Empty input is an empty table; a NULL err is allowed. */
	CHECK(toml_parse(NULL, 0, &root, NULL) == 0);
	CHECK(root && root->type == TOML_TABLE && root->u.table.len == 0);
	toml_free(root);
	toml_free(NULL);

	toml_error_t err;
	CHECK(toml_parse("a = 1", 5, NULL, &err) == -EINVAL);
	CHECK(toml_parse(NULL, 3, &root, &err) == -EINVAL);

	/* Only len bytes are read: what follows is not part of the document. */
	root = NULL;
	CHECK(toml_parse("a = 1\nb = @@@", 6, &root, &err) == 0);
	CHECK(root && root->u.table.len == 1);
	toml_free(root);
	root = NULL;
	CHECK(toml_parse("a = 12345", 6, &root, &err) == 0);
	CHECK(root && toml_table_get(root, "a")->u.integer == 12);
	toml_free(root);
}

static const struct {
	const char *name;
	void (*fn)(void);
} tests[] = {
	{ "positions", test_positions },
	{ "positions_unicode_crlf_bom", test_positions_unicode_crlf_bom },
	{ "error_positions", test_error_positions },
	{ "invalid_utf8", test_invalid_utf8 },
	{ "table_get", test_table_get },
	{ "nul_in_strings", test_nul_in_strings },
	{ "strings", test_strings },
	{ "nesting_limit", test_nesting_limit },
	{ "int64_bounds", test_int64_bounds },
	{ "floats", test_floats },
	{ "datetimes", test_datetimes },
	{ "table_rules", test_table_rules },
	{ "big_table_duplicates", test_big_table_duplicates },
	{ "big_table_linear", test_big_table_linear },
	{ "plain_messages", test_plain_messages },
	{ "api_edges", test_api_edges },
};

int main(int argc, char **argv)
{
	int ran = 0;
	for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
			continue;
		int before = failures;
		tests[i].fn();
		printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
		ran++;
	}
	if (ran == 0) {
		fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "");
		return 2;
	}
	return failures ? 1 : 0;
}
