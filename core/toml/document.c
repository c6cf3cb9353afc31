/*
 * document.c: a whole TOML document, line by line: key/value pairs, [table]
 * and [[array of tables]] headers, comments and blank lines; and
 * toml_parse(), the one entry point.
 */
#include <string.h>

#include "toml_internal.h"

/* The cursor is on the `[` of [a.b] or [[a.b]]; *table becomes the table
 * that the following key/value pairs go into. */
static int parse_header(toml_parser_t *p, struct toml_node *root,
			struct key_path *path, struct toml_node **table)
{
	int line = p->line, col = p->col;
	parser_advance(p);
	bool array = parser_peek(p) == '[';
	if (array)
		parser_advance(p);

	parser_skip_ws(p);
	int r = toml_parse_key(p, path);
	if (r < 0)
		return r;
	parser_skip_ws(p);
	if (array) {
		if (!parser_looking_at(p, "]]", 2))
			return parser_unexpected(p, "`]]` to close the header");
		parser_advance(p);
		parser_advance(p);
		return tables_open_array_header(p, root, path, line, col, table);
	}
	if (parser_peek(p) != ']')
		return parser_unexpected(p, "`]` to close the header");
	parser_advance(p);
	return tables_open_header(p, root, path, line, col, table);
}

static int parse_document(toml_parser_t *p, struct toml_node *root)
{
	_cleanup_key_path_ struct key_path path = { 0 };
	struct toml_node *table = root;
	uint32_t section = p->sections; /* the root's own section */

	for (;;) {
		parser_skip_ws(p);
		int c = parser_peek(p);
		if (c < 0)
			return 0;
		int r = 0;
		if (c == '[') {
			r = parse_header(p, root, &path, &table);
			section = ++p->sections;
		} else if (c != '#' && !parser_at_newline(p)) {
			r = toml_parse_keyval(p, table, section, &path);
		}
		if (r < 0)
			return r;
		r = parser_expect_line_end(p);
		if (r < 0)
			return r;
	}
}

int toml_parse(const char *src, size_t len, toml_value_t **out,
	       toml_error_t *err)
{
	if (err)
		memset(err, 0, sizeof *err);
	toml_parser_t p = {
		.src = src ? src : "",
		.len = src ? len : 0,
		.line = 1,
		.col = 1,
		.err = err,
	};
	if (!out || (!src && len))
		return parser_fail(&p, "invalid arguments to toml_parse");

	int r = toml_utf8_validate(&p);
	if (r < 0)
		return r;
	/* A byte order mark is allowed at the very start, and takes no
	 * column. */
	if (parser_looking_at(&p, "\xEF\xBB\xBF", 3))
		p.pos = 3;

	_cleanup_node_ struct toml_node *root = NULL;
	r = node_new(&p, TOML_TABLE, 1, 1, 0, &root);
	if (r < 0)
		return r;
	root->origin = TABLE_ROOT;
	r = parse_document(&p, root);
	key_index_free(&p.index);
	if (r < 0)
		return r;
	*out = &root->value;
	root = NULL;
	return 0;
}
