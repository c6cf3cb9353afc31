/*
 * tree.c: the values the parser builds and the user walks: allocation,
 * growing tables and arrays, lookup, and freeing.
 */
#include <stdlib.h>
#include <string.h>

#include "toml_internal.h"

/* Tables with more keys than this are looked up through the parser's key
 * index instead of a linear scan. */
#define TABLE_INDEX_THRESHOLD 8

int node_new(toml_parser_t *p, toml_type_t type, int line, int col,
	     unsigned depth, struct toml_node **out)
{
	if ((type == TOML_ARRAY || type == TOML_TABLE) && depth > TOML_MAX_DEPTH)
		return parser_fail_at(p, line, col, "nesting deeper than %d levels",
				      TOML_MAX_DEPTH);
	struct toml_node *n = calloc(1, sizeof *n);
	if (!n)
		return parser_oom(p);
	n->value.type = type;
	n->value.line = line;
	n->value.col = col;
	n->depth = (uint16_t)(depth > UINT16_MAX ? UINT16_MAX : depth);
	*out = n;
	return 0;
}

/* Doubles *cap until it exceeds len; 0 on success. */
static int grow_items(void **items, size_t *cap, size_t len, size_t item_size)
{
	if (len < *cap)
		return 0;
	size_t n = *cap ? *cap * 2 : 4;
	if (n > SIZE_MAX / item_size)
		return -ENOMEM;
	void *grown = realloc(*items, n * item_size);
	if (!grown)
		return -ENOMEM;
	*items = grown;
	*cap = n;
	return 0;
}

static int index_table(toml_parser_t *p, struct toml_node *table)
{
	const toml_kv_t *kv = table->value.u.table.items;
	for (size_t i = 0; i < table->value.u.table.len; i++) {
		int r = key_index_add(&p->index, table, kv[i].key, kv[i].key_len, i);
		if (r < 0)
			return r;
	}
	table->indexed = true;
	return 0;
}

int table_append(toml_parser_t *p, struct toml_node *table, char *key,
		 size_t key_len, int line, int col, struct toml_node *value)
{
	toml_value_t *t = &table->value;
	void *items = t->u.table.items;
	int r = grow_items(&items, &table->cap, t->u.table.len, sizeof(toml_kv_t));
	t->u.table.items = items;
	if (r < 0)
		goto fail;

	size_t i = t->u.table.len++;
	t->u.table.items[i] = (toml_kv_t){
		.key = key,
		.key_len = key_len,
		.line = line,
		.col = col,
		.value = &value->value,
	};
	if (table->indexed)
		r = key_index_add(&p->index, table, key, key_len, i);
	else if (t->u.table.len > TABLE_INDEX_THRESHOLD)
		r = index_table(p, table);
	if (r < 0)
		return parser_oom(p); /* the table owns key and value now */
	return 0;

fail:
	free(key);
	toml_free(&value->value);
	return parser_oom(p);
}

toml_kv_t *table_find(toml_parser_t *p, struct toml_node *table,
		      const char *key, size_t key_len)
{
	toml_value_t *t = &table->value;
	if (table->indexed) {
		size_t i = key_index_find(&p->index, table, key, key_len);
		return i == (size_t)-1 ? NULL : &t->u.table.items[i];
	}
	for (size_t i = 0; i < t->u.table.len; i++) {
		toml_kv_t *kv = &t->u.table.items[i];
		if (kv->key_len == key_len && memcmp(kv->key, key, key_len) == 0)
			return kv;
	}
	return NULL;
}

int array_append(toml_parser_t *p, struct toml_node *array,
		 struct toml_node *value)
{
	toml_value_t *a = &array->value;
	void *items = a->u.array.items;
	int r = grow_items(&items, &array->cap, a->u.array.len, sizeof(toml_value_t *));
	a->u.array.items = items;
	if (r < 0) {
		toml_free(&value->value);
		return parser_oom(p);
	}
	a->u.array.items[a->u.array.len++] = &value->value;
	return 0;
}

void toml_free(toml_value_t *v)
{
	if (!v)
		return;
	/* Recursion is bounded: the parser never builds a tree deeper than
	 * TOML_MAX_DEPTH. */
	switch (v->type) {
	case TOML_STRING:
		free(v->u.str.ptr);
		break;
	case TOML_ARRAY:
		for (size_t i = 0; i < v->u.array.len; i++)
			toml_free(v->u.array.items[i]);
		free(v->u.array.items);
		break;
	case TOML_TABLE:
		for (size_t i = 0; i < v->u.table.len; i++) {
			free(v->u.table.items[i].key);
			toml_free(v->u.table.items[i].value);
		}
		free(v->u.table.items);
		break;
	default:
		break;
	}
	free(node_of(v));
}

const toml_kv_t *toml_table_getn(const toml_value_t *table, const char *key,
				 size_t key_len)
{
	if (!table || table->type != TOML_TABLE || !key)
		return NULL;
	for (size_t i = 0; i < table->u.table.len; i++) {
		const toml_kv_t *kv = &table->u.table.items[i];
		if (kv->key_len == key_len && memcmp(kv->key, key, key_len) == 0)
			return kv;
	}
	return NULL;
}

const toml_value_t *toml_table_get(const toml_value_t *table, const char *key)
{
	if (!key)
		return NULL;
	const toml_kv_t *kv = toml_table_getn(table, key, strlen(key));
	return kv ? kv->value : NULL;
}

const char *toml_type_name(toml_type_t t)
{
	switch (t) {
	case TOML_STRING: return "string";
	case TOML_INTEGER: return "integer";
	case TOML_FLOAT: return "float";
	case TOML_BOOLEAN: return "boolean";
	case TOML_DATETIME: return "offset date-time";
	case TOML_DATETIME_LOCAL: return "local date-time";
	case TOML_DATE_LOCAL: return "local date";
	case TOML_TIME_LOCAL: return "local time";
	case TOML_ARRAY: return "array";
	case TOML_TABLE: return "table";
	}
	return "unknown";
}
