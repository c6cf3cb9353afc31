/*
 * toml_internal.h: what the parts of the TOML parser share, not for users.
 *
 * The parser is a hand-written recursive descent over the raw bytes with no
 * separate tokenizer, because TOML's tokens depend on context (`1979-05-27`
 * is a bare key on the left of `=` and a date on the right). One cursor
 * (toml_parser_t) moves through the source; every move goes through
 * parser_advance() so that the line and column of the cursor are always
 * current and error positions cost nothing to compute.
 *
 * Every value is allocated as a struct toml_node whose first member is the
 * public toml_value_t, so the user frees plain toml_value_t pointers while
 * the parser keeps, next to each container, what TOML's redefinition rules
 * need to know: how the table came to exist and, for tables created by dotted
 * keys, in which section.
 */
#ifndef HUTCH_TOML_INTERNAL_H
#define HUTCH_TOML_INTERNAL_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "toml.h"

#define TOML_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* How a table came to exist; decides whether a later [header] or dotted key
 * may define or extend it (see tables.c). */
enum table_origin {
	TABLE_ROOT = 0,
	TABLE_IMPLICIT, /* a parent named by a [header] or [[header]], not yet defined */
	TABLE_HEADER, /* defined by [header], or an element of [[header]] */
	TABLE_DOTTED, /* defined by dotted keys, in node.section */
	TABLE_INLINE, /* an inline table: immutable once written */
};

enum array_origin {
	ARRAY_VALUE = 0, /* written as [ ... ]: immutable */
	ARRAY_OF_TABLES, /* grown by [[header]] */
};

struct toml_node {
	toml_value_t value; /* first, so that a toml_value_t * is a node */
	size_t cap; /* slots allocated for array or table items */
	uint32_t section; /* TABLE_DOTTED: the section that created it */
	uint16_t depth; /* containers between the root and this value */
	uint8_t origin; /* enum table_origin or enum array_origin */
	bool indexed; /* table: its keys are in the parser's key index */
};

static inline struct toml_node *node_of(toml_value_t *v)
{
	return (struct toml_node *)v;
}

static inline void node_freep(struct toml_node **n)
{
	if (*n)
		toml_free(&(*n)->value);
}
#define _cleanup_node_ __attribute__((cleanup(node_freep)))

/* An open-addressing hash from (table, key) to the key's slot in the table,
 * so that duplicate-key checks stay O(1) on tables with many keys. Lives only
 * while parsing (key_index.c). */
struct key_index_slot {
	uint64_t hash; /* 0: empty */
	const struct toml_node *table;
	size_t item;
};

struct key_index {
	struct key_index_slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t used;
};

typedef struct toml_parser {
	const char *src;
	size_t len;
	size_t pos; /* the cursor: next byte to read */
	int line, col; /* of the cursor */
	toml_error_t *err;
	struct key_index index;
	uint32_t sections; /* sections and inline tables started so far */
} toml_parser_t;

/* One part of a (possibly dotted) key, decoded. */
struct key_part {
	char *name; /* owned, NUL-terminated */
	size_t len;
	int line, col;
};

struct key_path {
	struct key_part *parts;
	size_t len, cap;
};

/* ---- cursor.c: moving through the source, whitespace, comments, errors ---- */

/* The byte at the cursor, or -1 at the end of input. */
static inline int parser_peek(const toml_parser_t *p)
{
	return p->pos < p->len ? (unsigned char)p->src[p->pos] : -1;
}

/* The byte off bytes past the cursor, or -1 past the end of input. */
static inline int parser_peek_at(const toml_parser_t *p, size_t off)
{
	return off < p->len - p->pos ? (unsigned char)p->src[p->pos + off] : -1;
}

/* Moves past one byte (never past the end). Columns count code points, so
 * UTF-8 continuation bytes do not move the column. */
static inline void parser_advance(toml_parser_t *p)
{
	if (p->pos >= p->len)
		return;
	unsigned char c = (unsigned char)p->src[p->pos++];
	if (c == '\n') {
		p->line++;
		p->col = 1;
	} else if ((c & 0xC0) != 0x80) {
		p->col++;
	}
}

/* True when the next len bytes are exactly s. */
bool parser_looking_at(const toml_parser_t *p, const char *s, size_t len);

/* Fills p->err with line:col and the message; returns -EINVAL. */
int parser_fail_at(toml_parser_t *p, int line, int col, const char *fmt, ...)
	TOML_PRINTF(4, 5);
/* parser_fail_at() at the cursor. */
int parser_fail(toml_parser_t *p, const char *fmt, ...) TOML_PRINTF(2, 3);
/* "out of memory" at the cursor; returns -ENOMEM. */
int parser_oom(toml_parser_t *p);
/* Names the character at the cursor for a message: "`x`", "U+0007",
 * "end of line", "end of input". */
const char *parser_describe(const toml_parser_t *p, char *buf, size_t size);
/* "unexpected X" for the character at the cursor, with an optional hint. */
int parser_unexpected(toml_parser_t *p, const char *expected);

/* Skips spaces and tabs. */
void parser_skip_ws(toml_parser_t *p);
/* Skips a comment if the cursor is on `#`, up to (not including) the end of
 * the line; rejects control characters in it. */
int parser_skip_comment(toml_parser_t *p);
/* True if the cursor is on LF or CRLF. */
bool parser_at_newline(const toml_parser_t *p);
/* Moves past LF or CRLF; a CR not followed by LF is an error. Returns 1 if a
 * newline was consumed, 0 if the cursor is not on one. */
int parser_take_newline(toml_parser_t *p);
/* Skips whitespace, comments and newlines (as allowed inside arrays). */
int parser_skip_ws_comments_newlines(toml_parser_t *p);
/* After a value on a line: optional whitespace and comment, then a newline or
 * the end of input. */
int parser_expect_line_end(toml_parser_t *p);
/* True for a control character that TOML forbids in strings and comments
 * (everything below U+0020 except tab, and U+007F). */
static inline bool toml_is_forbidden_control(int c)
{
	return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7F;
}

/* ---- utf8.c ---- */

/* Checks that the whole source is well-formed UTF-8 (no overlong forms,
 * surrogates or code points past U+10FFFF) before anything else reads it. */
int toml_utf8_validate(toml_parser_t *p);
/* Encodes a Unicode scalar value; returns the number of bytes (1-4). */
size_t toml_utf8_encode(uint32_t cp, char out[4]);
/* Decodes the (already validated) code point at s; sets *len to its size. */
uint32_t toml_utf8_decode(const char *s, size_t avail, size_t *len);

/* ---- strings.c ---- */

/* Parses any of the four string forms at the cursor (on `"` or `'`). Keys pass
 * allow_multiline = false. *out is malloc'd and NUL-terminated. */
int toml_parse_string(toml_parser_t *p, bool allow_multiline, char **out,
		      size_t *out_len);

/* ---- numbers.c ---- */

/* Parses an integer or float at the cursor into v (type and value). */
int toml_parse_number(toml_parser_t *p, toml_value_t *v);

/* ---- datetime.c ---- */

/* True if the cursor is at something shaped like a date or a time (four
 * digits and `-`, or two digits and `:`), as opposed to a number. */
bool toml_looks_like_datetime(const toml_parser_t *p);
/* Parses an offset/local date-time, local date or local time into v. */
int toml_parse_datetime(toml_parser_t *p, toml_value_t *v);

/* ---- keys.c ---- */

/* Parses a simple or dotted key at the cursor into path (cleared first),
 * stopping before the whitespace that precedes `=` or `]`. */
int toml_parse_key(toml_parser_t *p, struct key_path *path);
void key_path_clear(struct key_path *path);
void key_path_free(struct key_path *path);
#define _cleanup_key_path_ __attribute__((cleanup(key_path_free)))
/* Writes parts [0, n) as a dotted key for messages, quoting where needed,
 * truncated to fit. Returns buf. */
const char *key_path_format(const struct key_path *path, size_t n, char *buf,
			    size_t size);
/* Same for one key. */
const char *key_format(const char *key, size_t len, char *buf, size_t size);

/* ---- tree.c: nodes, tables, arrays ---- */

/* A new value of the given type at line:col, depth levels below the root.
 * Containers deeper than TOML_MAX_DEPTH are refused with an error. */
int node_new(toml_parser_t *p, toml_type_t type, int line, int col,
	     unsigned depth, struct toml_node **out);
/* Appends key → value to table; takes ownership of key (malloc'd) and value,
 * freeing both on failure. The caller has checked the key is new. */
int table_append(toml_parser_t *p, struct toml_node *table, char *key,
		 size_t key_len, int line, int col, struct toml_node *value);
/* The entry for key in table, or NULL. */
toml_kv_t *table_find(toml_parser_t *p, struct toml_node *table,
		      const char *key, size_t key_len);
/* Appends value to array, taking ownership (freed on failure). */
int array_append(toml_parser_t *p, struct toml_node *array,
		 struct toml_node *value);

/* ---- key_index.c ---- */

uint64_t key_index_hash(const struct toml_node *table, const char *key,
			size_t len);
/* The slot of key in table, or (size_t)-1. */
size_t key_index_find(const struct key_index *ix, const struct toml_node *table,
		      const char *key, size_t len);
int key_index_add(struct key_index *ix, const struct toml_node *table,
		  const char *key, size_t len, size_t item);
void key_index_free(struct key_index *ix);

/* ---- tables.c: which tables a header or dotted key may define or extend ---- */

/* For `a.b.c = v` in base (the current section's table or an inline table
 * being written): walks or creates a and a.b, checks that c is new, and
 * returns the table c belongs in. */
int tables_resolve_keyval(toml_parser_t *p, struct toml_node *base,
			  const struct key_path *path, uint32_t section,
			  struct toml_node **parent);
/* For [a.b.c] (line:col of the `[`): returns table a.b.c, defining it. */
int tables_open_header(toml_parser_t *p, struct toml_node *root,
		       const struct key_path *path, int line, int col,
		       struct toml_node **out);
/* For [[a.b.c]]: appends a new table to array a.b.c and returns it. */
int tables_open_array_header(toml_parser_t *p, struct toml_node *root,
			     const struct key_path *path, int line, int col,
			     struct toml_node **out);

/* ---- value.c ---- */

/* Parses one value at the cursor; depth is the depth it will have. */
int toml_parse_value(toml_parser_t *p, unsigned depth, struct toml_node **out);
/* Parses `key = value` at the cursor into table (dotted keys create
 * sub-tables within section). */
int toml_parse_keyval(toml_parser_t *p, struct toml_node *table,
		      uint32_t section, struct key_path *path);

#endif /* HUTCH_TOML_INTERNAL_H */
