/*
 * toml.h: a TOML 1.0 document parsed into a tree of values.
 *
 * hutch reads its daemon and plugin configuration from TOML, and config files
 * are untrusted enough (hand-edited, sometimes generated) that the parser must
 * reject anything TOML 1.0 rejects and say exactly where: every value and
 * every key carries the 1-based line:column at which it starts, so a config
 * loader can report "hutchd.toml:12:3: unknown key `x`" long after parsing.
 *
 * toml_parse() turns a whole document into one tree that the caller owns and
 * releases with toml_free(). The tree is plain data: tables keep their keys in
 * document order, strings are NUL-terminated but also carry a length (a TOML
 * string may contain U+0000), and nothing in it points back into the source
 * buffer. The parser keeps no global state, so separate documents may be parsed
 * on separate threads.
 *
 * Columns count Unicode code points from the start of the line (a tab is one
 * column). Hostile input is bounded: containers nest at most TOML_MAX_DEPTH
 * levels (dotted keys and table headers count too), duplicate-key checks stay
 * linear on huge tables, and no input is read past `len`.
 */
#ifndef HUTCH_TOML_H
#define HUTCH_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The deepest a container may sit below the root table; one more level is an
 * error ("nesting deeper than 128 levels"). */
#define TOML_MAX_DEPTH 128

typedef enum toml_type {
	TOML_STRING = 1,
	TOML_INTEGER,
	TOML_FLOAT,
	TOML_BOOLEAN,
	TOML_DATETIME, /* offset date-time: 1979-05-27T07:32:00-08:00 */
	TOML_DATETIME_LOCAL, /* 1979-05-27T07:32:00 */
	TOML_DATE_LOCAL, /* 1979-05-27 */
	TOML_TIME_LOCAL, /* 07:32:00 */
	TOML_ARRAY,
	TOML_TABLE,
} toml_type_t;

/* The fields that the value's type does not have are 0. */
typedef struct toml_datetime {
	int year, month, day;
	int hour, minute, second;
	int nanosecond; /* fractional seconds, digits past the 9th truncated */
	int offset_minutes; /* TOML_DATETIME only: east of UTC */
	bool offset_z; /* TOML_DATETIME only: written as Z rather than +00:00 */
} toml_datetime_t;

typedef struct toml_value toml_value_t;

typedef struct toml_kv {
	char *key; /* NUL-terminated too; may contain U+0000 */
	size_t key_len;
	int line, col; /* where the key (or its part of a dotted key) starts */
	toml_value_t *value;
} toml_kv_t;

struct toml_value {
	toml_type_t type;
	/* Where the value starts. A table opened by a [header] or [[header]]
	 * (and the tables such a header creates implicitly) starts at the
	 * header's `[`; a table created by a dotted key starts at that part of
	 * the key. */
	int line, col;
	union {
		struct {
			char *ptr; /* NUL-terminated too; may contain U+0000 */
			size_t len;
		} str;
		int64_t integer;
		double fp;
		bool boolean;
		toml_datetime_t dt; /* the four date/time types */
		struct {
			toml_value_t **items;
			size_t len;
		} array;
		struct {
			toml_kv_t *items; /* in document order, keys unique */
			size_t len;
		} table;
	} u;
};

typedef struct toml_error {
	int line, col; /* 1-based, of the offending character */
	char message[256]; /* plain text, one line, no position prefix */
} toml_error_t;

/*
 * Parses the len bytes at src as one TOML 1.0 document (UTF-8, an optional
 * byte order mark, LF or CRLF line endings).
 *
 * On success returns 0 and sets *out to the root table, which the caller frees
 * with toml_free(). On failure returns -EINVAL for a document that is not
 * valid TOML, -ENOMEM when memory ran out, leaves *out untouched and fills
 * *err (which may be NULL) with the position of the offending character and a
 * message such as "duplicate key `a`" or "invalid escape `\q`".
 */
int toml_parse(const char *src, size_t len, toml_value_t **out,
	       toml_error_t *err);

/* Frees v and everything below it. NULL is allowed. */
void toml_free(toml_value_t *v);

/* The value stored under key in table, or NULL if table is not a table or
 * has no such key. A linear scan: iterate u.table.items to visit every key. */
const toml_value_t *toml_table_get(const toml_value_t *table, const char *key);

/* Like toml_table_get, for a key of key_len bytes (which may contain U+0000);
 * returns the whole entry so that the key's position is at hand. */
const toml_kv_t *toml_table_getn(const toml_value_t *table, const char *key,
				 size_t key_len);

/* A name for error messages: "string", "integer", "float", "boolean",
 * "offset date-time", "local date-time", "local date", "local time",
 * "array", "table"; "unknown" for anything else. */
const char *toml_type_name(toml_type_t t);

#ifdef __cplusplus
}
#endif
#endif /* HUTCH_TOML_H */
