/*
 * value.c: one value on the right of `=`: scalars, arrays and inline tables,
 * and `key = value` itself, which inline tables contain.
 *
 * Arrays and inline tables recurse into toml_parse_value(); the depth each
 * new container would have is checked against TOML_MAX_DEPTH before it is
 * allocated, so the recursion (and the C stack) stays bounded whatever the
 * input.
 */
#include <stdlib.h>
#include <string.h>

#include "toml_internal.h"

/* What may follow a value: whitespace, a line end, a comment, or the
 * punctuation that closes or continues an array or inline table. */
static bool at_value_end(const toml_parser_t *p)
{
	int c = parser_peek(p);
	return c < 0 || c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
	       c == '#' || c == ',' || c == ']' || c == '}';
}

static bool is_word_char(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

static int parse_array(toml_parser_t *p, unsigned depth, struct toml_node **out)
{
	_cleanup_node_ struct toml_node *array = NULL;
	int r = node_new(p, TOML_ARRAY, p->line, p->col, depth, &array);
	if (r < 0)
		return r;
	array->origin = ARRAY_VALUE;
	parser_advance(p); /* [ */

	for (;;) {
		r = parser_skip_ws_comments_newlines(p);
		if (r < 0)
			return r;
		if (parser_peek(p) == ']')
			break;
		struct toml_node *item;
		r = toml_parse_value(p, depth + 1, &item);
		if (r < 0)
			return r;
		r = array_append(p, array, item);
		if (r < 0)
			return r;
		r = parser_skip_ws_comments_newlines(p);
		if (r < 0)
			return r;
		if (parser_peek(p) == ',') {
			parser_advance(p);
			continue;
		}
		if (parser_peek(p) == ']')
			break;
		return parser_unexpected(p, "`,` or `]` in the array");
	}
	parser_advance(p); /* ] */
	*out = array;
	array = NULL;
	return 0;
}

static int parse_inline_table(toml_parser_t *p, unsigned depth,
			      struct toml_node **out)
{
	_cleanup_node_ struct toml_node *table = NULL;
	_cleanup_key_path_ struct key_path path = { 0 };
	int r = node_new(p, TOML_TABLE, p->line, p->col, depth, &table);
	if (r < 0)
		return r;
	table->origin = TABLE_INLINE;
	parser_advance(p); /* { */

	/* Dotted keys inside may build sub-tables, but only within this
	 * inline table: it is a section of its own. */
	uint32_t section = ++p->sections;
	parser_skip_ws(p);
	if (parser_peek(p) != '}') {
		for (;;) {
			r = toml_parse_keyval(p, table, section, &path);
			if (r < 0)
				return r;
			parser_skip_ws(p);
			int c = parser_peek(p);
			if (c == '}')
				break;
			if (c == ',') {
				parser_advance(p);
				parser_skip_ws(p);
				if (parser_peek(p) == '}')
					return parser_fail(p, "trailing comma in an inline table");
				if (parser_at_newline(p))
					return parser_fail(p, "an inline table must be on a single line");
				continue;
			}
			if (parser_at_newline(p) || c == '\r')
				return parser_fail(p, "an inline table must be on a single line");
			return parser_unexpected(p, "`,` or `}` in the inline table");
		}
	}
	parser_advance(p); /* } */
	*out = table;
	table = NULL;
	return 0;
}

static int parse_scalar(toml_parser_t *p, struct toml_node *n)
{
	toml_value_t *v = &n->value;
	int c = parser_peek(p);
	const char *what;

	if (c == '"' || c == '\'') {
		v->type = TOML_STRING;
		what = "the string";
		int r = toml_parse_string(p, true, &v->u.str.ptr, &v->u.str.len);
		if (r < 0)
			return r;
	} else if (parser_looking_at(p, "true", 4) || parser_looking_at(p, "false", 5)) {
		v->type = TOML_BOOLEAN;
		v->u.boolean = c == 't';
		what = "the boolean";
		for (int i = v->u.boolean ? 4 : 5; i > 0; i--)
			parser_advance(p);
	} else if (toml_looks_like_datetime(p)) {
		what = "the date/time";
		int r = toml_parse_datetime(p, v);
		if (r < 0)
			return r;
	} else if ((c >= '0' && c <= '9') || c == '+' || c == '-' ||
		   parser_looking_at(p, "inf", 3) || parser_looking_at(p, "nan", 3)) {
		what = "the number";
		int r = toml_parse_number(p, v);
		if (r < 0)
			return r;
	} else if (c >= 0 && is_word_char(c) && c != '.') {
		/* Most likely an unquoted string: name the whole word. */
		size_t word = 0;
		while (word < 40 && is_word_char(parser_peek_at(p, word)))
			word++;
		return parser_fail(p, "invalid value `%.*s` (strings must be quoted)",
				   (int)word, p->src + p->pos);
	} else {
		return parser_unexpected(p, "a value");
	}

	if (!at_value_end(p)) {
		char buf[32];
		return parser_fail(p, "unexpected %s after %s",
				   parser_describe(p, buf, sizeof buf), what);
	}
	return 0;
}

int toml_parse_value(toml_parser_t *p, unsigned depth, struct toml_node **out)
{
	int c = parser_peek(p);
	if (c == '[')
		return parse_array(p, depth, out);
	if (c == '{')
		return parse_inline_table(p, depth, out);

	_cleanup_node_ struct toml_node *n = NULL;
	/* The type is provisional; parse_scalar sets the real one. */
	int r = node_new(p, TOML_BOOLEAN, p->line, p->col, depth, &n);
	if (r < 0)
		return r;
	r = parse_scalar(p, n);
	if (r < 0)
		return r;
	*out = n;
	n = NULL;
	return 0;
}

int toml_parse_keyval(toml_parser_t *p, struct toml_node *table,
		      uint32_t section, struct key_path *path)
{
	int r = toml_parse_key(p, path);
	if (r < 0)
		return r;
	parser_skip_ws(p);
	if (parser_peek(p) != '=')
		return parser_unexpected(p, "`=` after the key");
	parser_advance(p);
	parser_skip_ws(p);

	struct toml_node *parent, *value;
	r = tables_resolve_keyval(p, table, path, section, &parent);
	if (r < 0)
		return r;
	r = toml_parse_value(p, parent->depth + 1u, &value);
	if (r < 0)
		return r;

	struct key_part *last = &path->parts[path->len - 1];
	char *key = last->name;
	last->name = NULL; /* the table owns it now */
	return table_append(p, parent, key, last->len, last->line, last->col, value);
}
