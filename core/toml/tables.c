/*
 * tables.c: TOML's rules for which tables a [header], a [[header]] or a
 * dotted key may define or extend.
 *
 * Every table remembers how it came to exist (enum table_origin):
 *
 *   - [a.b.c] defines a.b.c and creates a and a.b IMPLICITly. An implicit
 *     table may later be defined once, by its own header or by dotted keys.
 *   - A table is defined by one header only: a second [a.b.c] is an error,
 *     and so is a header for a table that dotted keys or an inline table
 *     already defined. Headers may still go through such tables to reach
 *     sub-tables ([fruit.apple.texture] after fruit.apple.color = "red").
 *   - Dotted keys define tables for the section they appear in (a header's
 *     body, or one inline table). Later sections cannot reach into them or
 *     into header-defined tables with dotted keys: `b.c.t = 1` under [a] is
 *     an error when [a.b.c] was a header of its own.
 *   - Inline tables and arrays written as values are immutable, and a
 *     [[header]] only appends to an array that [[header]]s created.
 *
 * These are the rules of the TOML 1.0 text, including its clarification in
 * toml-lang/toml#846 that dotted keys cannot add to tables defined earlier.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toml_internal.h"

static const char *with_article(const toml_value_t *v)
{
	switch (v->type) {
	case TOML_STRING: return "a string";
	case TOML_INTEGER: return "an integer";
	case TOML_FLOAT: return "a float";
	case TOML_BOOLEAN: return "a boolean";
	case TOML_DATETIME: return "an offset date-time";
	case TOML_DATETIME_LOCAL: return "a local date-time";
	case TOML_DATE_LOCAL: return "a local date";
	case TOML_TIME_LOCAL: return "a local time";
	case TOML_ARRAY:
		return ((const struct toml_node *)v)->origin == ARRAY_OF_TABLES
			       ? "an array of tables"
			       : "an array";
	case TOML_TABLE:
		return ((const struct toml_node *)v)->origin == TABLE_INLINE
			       ? "an inline table"
			       : "a table";
	}
	return "a value";
}

static char *dup_name(const struct key_part *part)
{
	char *s = malloc(part->len + 1);
	if (s)
		memcpy(s, part->name, part->len + 1);
	return s;
}

/* Adds a new empty table or array under part in parent. */
static int add_container(toml_parser_t *p, struct toml_node *parent,
			 const struct key_part *part, toml_type_t type,
			 uint8_t origin, int line, int col, struct toml_node **out)
{
	/* Too deep is reported at the part of the key that would be, not at
	 * the header's `[` where the table's value starts. */
	if (parent->depth + 1u > TOML_MAX_DEPTH)
		return parser_fail_at(p, part->line, part->col,
				      "nesting deeper than %d levels", TOML_MAX_DEPTH);
	struct toml_node *n;
	int r = node_new(p, type, line, col, parent->depth + 1u, &n);
	if (r < 0)
		return r;
	n->origin = origin;
	char *key = dup_name(part);
	if (!key) {
		toml_free(&n->value);
		return parser_oom(p);
	}
	r = table_append(p, parent, key, part->len, part->line, part->col, n);
	if (r < 0)
		return r;
	*out = n;
	return 0;
}

int tables_resolve_keyval(toml_parser_t *p, struct toml_node *base,
			  const struct key_path *path, uint32_t section,
			  struct toml_node **parent)
{
	struct toml_node *cur = base;
	char name[160];

	for (size_t i = 0; i + 1 < path->len; i++) {
		const struct key_part *part = &path->parts[i];
		toml_kv_t *kv = table_find(p, cur, part->name, part->len);
		if (!kv) {
			int r = add_container(p, cur, part, TOML_TABLE, TABLE_DOTTED,
					      part->line, part->col, &cur);
			if (r < 0)
				return r;
			cur->section = section;
			continue;
		}
		struct toml_node *n = node_of(kv->value);
		key_path_format(path, i + 1, name, sizeof name);
		if (n->value.type != TOML_TABLE)
			return parser_fail_at(p, part->line, part->col,
					      "key `%s` is already %s (at %d:%d), not a table",
					      name, with_article(&n->value), kv->line, kv->col);
		switch (n->origin) {
		case TABLE_IMPLICIT:
			/* Named by a header before, defined here. */
			n->origin = TABLE_DOTTED;
			n->section = section;
			break;
		case TABLE_DOTTED:
			if (n->section == section)
				break;
			return parser_fail_at(p, part->line, part->col,
					      "table `%s` was defined at %d:%d; dotted keys in another table cannot add to it",
					      name, kv->line, kv->col);
		case TABLE_INLINE:
			return parser_fail_at(p, part->line, part->col,
					      "inline table `%s` (at %d:%d) cannot be extended",
					      name, kv->line, kv->col);
		default:
			return parser_fail_at(p, part->line, part->col,
					      "table `%s` was defined by a header at %d:%d; dotted keys cannot add to it",
					      name, n->value.line, n->value.col);
		}
		cur = n;
	}

	const struct key_part *last = &path->parts[path->len - 1];
	if (table_find(p, cur, last->name, last->len))
		return parser_fail_at(p, last->line, last->col, "duplicate key `%s`",
				      key_path_format(path, path->len, name, sizeof name));
	*parent = cur;
	return 0;
}

/* Walks the parts of a header but the last, creating implicit tables. */
static int walk_header(toml_parser_t *p, struct toml_node *root,
		       const struct key_path *path, int line, int col,
		       struct toml_node **out)
{
	struct toml_node *cur = root;
	char name[160];

	for (size_t i = 0; i + 1 < path->len; i++) {
		const struct key_part *part = &path->parts[i];
		toml_kv_t *kv = table_find(p, cur, part->name, part->len);
		if (!kv) {
			int r = add_container(p, cur, part, TOML_TABLE, TABLE_IMPLICIT,
					      line, col, &cur);
			if (r < 0)
				return r;
			continue;
		}
		struct toml_node *n = node_of(kv->value);
		key_path_format(path, i + 1, name, sizeof name);
		if (n->value.type == TOML_ARRAY && n->origin == ARRAY_OF_TABLES) {
			/* [a.b] after [[a]] continues a's last element. */
			toml_value_t *last =
				n->value.u.array.items[n->value.u.array.len - 1];
			cur = node_of(last);
			continue;
		}
		if (n->value.type != TOML_TABLE)
			return parser_fail_at(p, part->line, part->col,
					      "key `%s` is already %s (at %d:%d), not a table",
					      name, with_article(&n->value), kv->line, kv->col);
		if (n->origin == TABLE_INLINE)
			return parser_fail_at(p, part->line, part->col,
					      "inline table `%s` (at %d:%d) cannot be extended",
					      name, kv->line, kv->col);
		cur = n;
	}
	*out = cur;
	return 0;
}

int tables_open_header(toml_parser_t *p, struct toml_node *root,
		       const struct key_path *path, int line, int col,
		       struct toml_node **out)
{
	struct toml_node *parent;
	int r = walk_header(p, root, path, line, col, &parent);
	if (r < 0)
		return r;

	const struct key_part *last = &path->parts[path->len - 1];
	const struct key_part *first = &path->parts[0];
	toml_kv_t *kv = table_find(p, parent, last->name, last->len);
	if (!kv) {
		r = add_container(p, parent, last, TOML_TABLE, TABLE_HEADER, line,
				  col, out);
		return r;
	}

	struct toml_node *n = node_of(kv->value);
	char name[160];
	key_path_format(path, path->len, name, sizeof name);
	if (n->value.type == TOML_TABLE && n->origin == TABLE_IMPLICIT) {
		/* Defined now: report it from here on, not from the header
		 * that first named it. */
		n->origin = TABLE_HEADER;
		n->value.line = line;
		n->value.col = col;
		kv->line = last->line;
		kv->col = last->col;
		*out = n;
		return 0;
	}
	if (n->value.type == TOML_TABLE) {
		const char *how = n->origin == TABLE_HEADER ? "" :
				  n->origin == TABLE_DOTTED ? " by dotted keys" :
							      " as an inline table";
		return parser_fail_at(p, first->line, first->col,
				      "table `%s` is already defined%s (at %d:%d)", name,
				      how, kv->line, kv->col);
	}
	if (n->value.type == TOML_ARRAY && n->origin == ARRAY_OF_TABLES)
		return parser_fail_at(p, first->line, first->col,
				      "`%s` is an array of tables (at %d:%d); use [[%s]] to add to it",
				      name, kv->line, kv->col, name);
	return parser_fail_at(p, first->line, first->col,
			      "key `%s` is already %s (at %d:%d), not a table", name,
			      with_article(&n->value), kv->line, kv->col);
}

int tables_open_array_header(toml_parser_t *p, struct toml_node *root,
			     const struct key_path *path, int line, int col,
			     struct toml_node **out)
{
	struct toml_node *parent, *array;
	int r = walk_header(p, root, path, line, col, &parent);
	if (r < 0)
		return r;

	const struct key_part *last = &path->parts[path->len - 1];
	toml_kv_t *kv = table_find(p, parent, last->name, last->len);
	if (!kv) {
		r = add_container(p, parent, last, TOML_ARRAY, ARRAY_OF_TABLES,
				  line, col, &array);
		if (r < 0)
			return r;
	} else {
		array = node_of(kv->value);
		if (array->value.type != TOML_ARRAY || array->origin != ARRAY_OF_TABLES) {
			const struct key_part *first = &path->parts[0];
			char name[160];
			key_path_format(path, path->len, name, sizeof name);
			return parser_fail_at(p, first->line, first->col,
					      "key `%s` is already %s (at %d:%d), not an array of tables",
					      name, with_article(&array->value), kv->line, kv->col);
		}
	}

	if (array->depth + 1u > TOML_MAX_DEPTH)
		return parser_fail_at(p, last->line, last->col,
				      "nesting deeper than %d levels", TOML_MAX_DEPTH);
	struct toml_node *table;
	r = node_new(p, TOML_TABLE, line, col, array->depth + 1u, &table);
	if (r < 0)
		return r;
	table->origin = TABLE_HEADER;
	r = array_append(p, array, table);
	if (r < 0)
		return r;
	*out = table;
	return 0;
}
