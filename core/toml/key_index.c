/*
 * key_index.c: the parser's hash index of keys in large tables.
 *
 * TOML forbids duplicate keys, so every new key must be looked up in its
 * table. A linear scan makes a table of n keys cost O(n^2) to parse, which a
 * hostile document could exploit with a few megabytes of `kN = 1` lines. Small
 * tables (the usual case) are still scanned; once a table grows past a few
 * keys, tree.c moves its keys into this one index, shared by all tables and
 * keyed by (table, key). The index lives only while parsing, so the tree the
 * user gets stays plain data.
 *
 * The hash is not keyed with a secret; it only has to keep ordinary configs
 * and fuzzed input fast, not withstand a precomputed collision attack.
 */
#include <stdlib.h>
#include <string.h>

#include "toml_internal.h"

uint64_t key_index_hash(const struct toml_node *table, const char *key,
			size_t len)
{
	/* FNV-1a over the key, started from the table's address, then a
	 * splitmix64 finalizer so the low bits used for the slot depend on
	 * every input byte. */
	uint64_t h = 0xcbf29ce484222325ULL ^ (uint64_t)(uintptr_t)table;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebULL;
	h ^= h >> 31;
	return h ? h : 1; /* 0 marks an empty slot */
}

static const char *slot_key(const struct key_index_slot *s, size_t *len)
{
	const toml_kv_t *kv = &s->table->value.u.table.items[s->item];
	*len = kv->key_len;
	return kv->key;
}

size_t key_index_find(const struct key_index *ix, const struct toml_node *table,
		      const char *key, size_t len)
{
	if (ix->cap == 0)
		return (size_t)-1;
	uint64_t h = key_index_hash(table, key, len);
	for (size_t i = h & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
		const struct key_index_slot *s = &ix->slots[i];
		if (s->hash == 0)
			return (size_t)-1;
		size_t slen;
		const char *skey;
		if (s->hash == h && s->table == table &&
		    (skey = slot_key(s, &slen), slen == len) &&
		    memcmp(skey, key, len) == 0)
			return s->item;
	}
}

static void insert_slot(struct key_index *ix, const struct key_index_slot *in)
{
	size_t i = in->hash & (ix->cap - 1);
	while (ix->slots[i].hash != 0)
		i = (i + 1) & (ix->cap - 1);
	ix->slots[i] = *in;
}

static int grow(struct key_index *ix)
{
	size_t cap = ix->cap ? ix->cap * 2 : 64;
	if (cap > SIZE_MAX / sizeof(struct key_index_slot))
		return -ENOMEM;
	struct key_index old = *ix;
	ix->slots = calloc(cap, sizeof *ix->slots);
	if (!ix->slots) {
		*ix = old;
		return -ENOMEM;
	}
	ix->cap = cap;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].hash != 0)
			insert_slot(ix, &old.slots[i]);
	free(old.slots);
	return 0;
}

int key_index_add(struct key_index *ix, const struct toml_node *table,
		  const char *key, size_t len, size_t item)
{
	/* Keep the load at or below one half so probe runs stay short. */
	if ((ix->used + 1) * 2 > ix->cap) {
		int r = grow(ix);
		if (r < 0)
			return r;
	}
	struct key_index_slot s = {
		.hash = key_index_hash(table, key, len),
		.table = table,
		.item = item,
	};
	insert_slot(ix, &s);
	ix->used++;
	return 0;
}

void key_index_free(struct key_index *ix)
{
	free(ix->slots);
	ix->slots = NULL;
	ix->cap = ix->used = 0;
}
