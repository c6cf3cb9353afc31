/*
 * sets.c: a sandbox as nftables set elements.
 *
 * Every per-sandbox set is keyed by the host interface's name (ifname,
 * 16 bytes, zero-padded), alone or concatenated with an address:
 *
 *   src4, src6          ifname . its own address (anti-spoofing)
 *   open                ifname, when its rules allow all
 *   allow4/6, deny4/6   ifname . prefix (interval sets), from its rules
 *                       (deny4 also holds the IPv4 prefixes of denied
 *                       IPv6 prefixes inside a NAT64 prefix)
 *   learned4/6          ifname . address answered for an allowed name,
 *                       with a timeout from the answer's TTL
 *   shunned4/6          ifname . address answered for a denied name
 *   drop_counters       ifname : its counter object "c_<ifname>"
 *   audit_rate          ifname, with the rate limit of its audited drops
 *                       (made by the packet path; removed by purge)
 *
 * So a sandbox's whole state in the table is "every element whose key
 * starts with its ifname", which is what purge removes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "egress.h"

#define KEY_MAX (IFNAMSIZ + 16)

static const char *const per_sandbox_sets[] = {
	EG_SET_SRC4,     EG_SET_SRC6,     EG_SET_OPEN,     EG_SET_ALLOW4,
	EG_SET_ALLOW6,   EG_SET_DENY4,    EG_SET_DENY6,    EG_SET_LEARNED4,
	EG_SET_LEARNED6, EG_SET_SHUNNED4, EG_SET_SHUNNED6, EG_MAP_COUNTERS,
	EG_SET_AUDIT_RATE,
};

static size_t key_make(uint8_t *out, const char *ifname, int family, const uint8_t *addr)
{
	memset(out, 0, IFNAMSIZ);
	memcpy(out, ifname, strnlen(ifname, IFNAMSIZ - 1));
	if (!addr)
		return IFNAMSIZ;
	size_t alen = family == AF_INET ? 4 : 16;
	memcpy(out + IFNAMSIZ, addr, alen);
	return IFNAMSIZ + alen;
}

static void counter_name(const char *ifname, char *out, size_t cap)
{
	snprintf(out, cap, "c_%s", ifname);
}

void eg_sets_sandbox(eg_instance_t *in, eg_nfnl_t *nl, const eg_sandbox_t *sb, bool add)
{
	uint8_t k[KEY_MAX];
	eg_elem_op_t op = add ? EG_ELEM_ADD : EG_ELEM_REMOVE;
	/* The map element refers to the counter, so the counter exists first
	 * (also for a removal, whose first step is an add). */
	eg_nfnl_counter(nl, true, in->table, sb->counter);
	eg_elem_t e = {.key = k, .key_len = key_make(k, sb->ifname, 0, NULL), .objref = sb->counter};
	eg_nfnl_elem(nl, op, in->table, EG_MAP_COUNTERS, &e);
	if (!add) {
		eg_nfnl_counter_remove(nl, in->table, sb->counter);
		/* The packet path made it, if the sandbox had drops audited. */
		e = (eg_elem_t){.key = k, .key_len = key_make(k, sb->ifname, 0, NULL),
				.timeout_ms = 1000};
		eg_nfnl_elem(nl, EG_ELEM_REMOVE, in->table, EG_SET_AUDIT_RATE, &e);
	}
	e = (eg_elem_t){.key = k, .key_len = key_make(k, sb->ifname, AF_INET, sb->addr4)};
	eg_nfnl_elem(nl, op, in->table, EG_SET_SRC4, &e);
	if (sb->has6) {
		e.key_len = key_make(k, sb->ifname, AF_INET6, sb->addr6);
		eg_nfnl_elem(nl, op, in->table, EG_SET_SRC6, &e);
	}
}

static void prefix_elem(eg_instance_t *in, eg_nfnl_t *nl, eg_elem_op_t op, const char *set,
			const char *ifname, const eg_cidr_t *c)
{
	uint8_t k[KEY_MAX], kend[KEY_MAX], last[16];
	eg_cidr_last(c, last);
	eg_elem_t e = {
		.key = k,
		.key_len = key_make(k, ifname, c->family, c->addr),
		.key_end = kend,
		.key_end_len = key_make(kend, ifname, c->family, last),
	};
	eg_nfnl_elem(nl, op, in->table, set, &e);
}

/* The IPv4 prefixes a sandbox is denied: its own, plus each IPv6 one that
 * lies inside a NAT64 prefix, as the IPv4 prefix it embeds (denying the
 * NAT64 form of a host denies the host). The IPv4 ones hold through NAT64
 * by the rule that looks embedded addresses up in deny4 (nft.c). */
static eg_cidr_t *deny4_list(const eg_instance_t *in, const eg_rules_t *r, size_t *n_out)
{
	eg_cidr_t *v = xcalloc(r->n_deny_cidrs + 1, sizeof *v);
	size_t n = 0;
	for (size_t i = 0; i < r->n_deny_cidrs; i++) {
		const eg_cidr_t *c = &r->deny_cidrs[i];
		uint8_t v4[4];
		if (c->family == AF_INET) {
			v[n++] = *c;
		} else if (c->plen >= 96 && eg_nat64_embedded(in, c->addr, v4)) {
			eg_cidr_t m = {.family = AF_INET, .plen = (uint8_t)(c->plen - 96)};
			memcpy(m.addr, v4, 4);
			v[n++] = m;
		}
	}
	*n_out = eg_cidrs_normalize(v, n);
	return v;
}

void eg_sets_rules(eg_instance_t *in, eg_nfnl_t *nl, const eg_sandbox_t *sb,
		   const eg_rules_t *rules, bool add)
{
	eg_elem_op_t op = add ? EG_ELEM_ADD : EG_ELEM_REMOVE;
	if (rules->allow_all) {
		uint8_t k[KEY_MAX];
		eg_elem_t e = {.key = k, .key_len = key_make(k, sb->ifname, 0, NULL)};
		eg_nfnl_elem(nl, op, in->table, EG_SET_OPEN, &e);
	}
	for (size_t i = 0; i < rules->n_allow_cidrs; i++) {
		const eg_cidr_t *c = &rules->allow_cidrs[i];
		prefix_elem(in, nl, op, c->family == AF_INET ? EG_SET_ALLOW4 : EG_SET_ALLOW6,
			    sb->ifname, c);
	}
	for (size_t i = 0; i < rules->n_deny_cidrs; i++) {
		const eg_cidr_t *c = &rules->deny_cidrs[i];
		if (c->family == AF_INET6)
			prefix_elem(in, nl, op, EG_SET_DENY6, sb->ifname, c);
	}
	size_t n4;
	_cleanup_free_ eg_cidr_t *d4 = deny4_list(in, rules, &n4);
	for (size_t i = 0; i < n4; i++)
		prefix_elem(in, nl, op, EG_SET_DENY4, sb->ifname, &d4[i]);
}

void eg_sets_learned(eg_instance_t *in, eg_nfnl_t *nl, const eg_sandbox_t *sb, int family,
		     const uint8_t *addr, bool denied, eg_elem_op_t op, uint64_t timeout_ms)
{
	const char *set = denied ? (family == AF_INET ? EG_SET_SHUNNED4 : EG_SET_SHUNNED6)
				 : (family == AF_INET ? EG_SET_LEARNED4 : EG_SET_LEARNED6);
	uint8_t k[KEY_MAX];
	eg_elem_t e = {
		.key = k,
		.key_len = key_make(k, sb->ifname, family, addr),
		/* A removal's add needs a timeout too: the set has one. */
		.timeout_ms = timeout_ms ? timeout_ms : 1000,
	};
	eg_nfnl_elem(nl, op, in->table, set, &e);
}

/* ---- reading the sets back ---- */

typedef struct found_elem {
	uint8_t key[KEY_MAX], key_end[KEY_MAX];
	size_t key_len, key_end_len;
	uint64_t expires_ms;
} found_elem_t;

typedef struct elem_list {
	const char *ifname; /* NULL: all */
	found_elem_t *v;
	size_t n;
} elem_list_t;

static void collect_elem(void *data, const uint8_t *key, size_t key_len, const uint8_t *key_end,
			 size_t key_end_len, uint64_t expires_ms)
{
	elem_list_t *l = data;
	if (key_len < IFNAMSIZ || key_len > KEY_MAX || key_end_len > KEY_MAX)
		return;
	if (l->ifname) {
		uint8_t want[IFNAMSIZ];
		key_make(want, l->ifname, 0, NULL);
		if (memcmp(key, want, IFNAMSIZ) != 0)
			return;
	}
	l->v = xrealloc(l->v, (l->n + 1) * sizeof *l->v);
	found_elem_t *f = &l->v[l->n++];
	memset(f, 0, sizeof *f);
	memcpy(f->key, key, key_len);
	f->key_len = key_len;
	if (key_end) {
		memcpy(f->key_end, key_end, key_end_len);
		f->key_end_len = key_end_len;
	}
	f->expires_ms = expires_ms;
}

static int set_elems(eg_instance_t *in, eg_nfnl_t *nl, const char *set, const char *ifname,
		     elem_list_t *out, hutch_err_t *err)
{
	memset(out, 0, sizeof *out);
	out->ifname = ifname;
	int r = eg_nfnl_set_dump(nl, in->table, set, collect_elem, out, err);
	if (r < 0) {
		free(out->v);
		out->v = NULL;
		out->n = 0;
		if (r == -ENOENT)
			return 0; /* no such set (an older table): nothing in it */
		return hutch_err_prefix(err, "read set %s", set);
	}
	return 0;
}

int eg_sets_purge(eg_instance_t *in, eg_nfnl_t *nl, const char *ifname, hutch_err_t *err)
{
	char counter[IFNAMSIZ + 16];
	counter_name(ifname, counter, sizeof counter);
	eg_nfnl_begin(nl);
	eg_nfnl_counter(nl, true, in->table, counter); /* see eg_sets_sandbox */
	for (size_t s = 0; s < ARRAY_SIZE(per_sandbox_sets); s++) {
		elem_list_t l;
		int r = set_elems(in, nl, per_sandbox_sets[s], ifname, &l, err);
		if (r < 0)
			return r;
		bool is_map = strcmp(per_sandbox_sets[s], EG_MAP_COUNTERS) == 0;
		bool timed = strncmp(per_sandbox_sets[s], "learned", 7) == 0 ||
			     strncmp(per_sandbox_sets[s], "shunned", 7) == 0 ||
			     strcmp(per_sandbox_sets[s], EG_SET_AUDIT_RATE) == 0;
		for (size_t i = 0; i < l.n; i++) {
			eg_elem_t e = {
				.key = l.v[i].key,
				.key_len = l.v[i].key_len,
				.key_end = l.v[i].key_end_len ? l.v[i].key_end : NULL,
				.key_end_len = l.v[i].key_end_len,
				.timeout_ms = timed ? 1000 : 0,
				.objref = is_map ? counter : NULL,
			};
			eg_nfnl_elem(nl, EG_ELEM_REMOVE, in->table, per_sandbox_sets[s], &e);
		}
		free(l.v);
	}
	/* After the map element that uses it. */
	eg_nfnl_counter_remove(nl, in->table, counter);
	int r = eg_nfnl_commit(nl, err);
	if (r < 0)
		return hutch_err_prefix(err, "remove the elements of %s", ifname);
	return 0;
}

int eg_sets_ifnames(eg_instance_t *in, eg_nfnl_t *nl, eg_ifname_cb cb, void *data,
		    hutch_err_t *err)
{
	char **seen = NULL;
	int r = 0;
	for (size_t s = 0; s < ARRAY_SIZE(per_sandbox_sets) && r == 0; s++) {
		elem_list_t l;
		if ((r = set_elems(in, nl, per_sandbox_sets[s], NULL, &l, err)) < 0)
			break;
		for (size_t i = 0; i < l.n; i++) {
			char name[IFNAMSIZ];
			memcpy(name, l.v[i].key, IFNAMSIZ - 1);
			name[IFNAMSIZ - 1] = '\0';
			bool dup = false;
			for (size_t j = 0; seen && seen[j]; j++)
				if (strcmp(seen[j], name) == 0)
					dup = true;
			if (!dup)
				strv_push(&seen, xstrdup(name));
		}
		free(l.v);
	}
	if (r == 0)
		for (size_t j = 0; seen && seen[j]; j++)
			cb(data, seen[j]);
	strv_free(seen);
	return r;
}

int eg_sets_recover_learned(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb,
			    hutch_err_t *err)
{
	static const struct {
		const char *set;
		int family;
		bool denied;
	} sets[] = {
		{EG_SET_LEARNED4, AF_INET, false},
		{EG_SET_LEARNED6, AF_INET6, false},
		{EG_SET_SHUNNED4, AF_INET, true},
		{EG_SET_SHUNNED6, AF_INET6, true},
	};
	int64_t now = eg_now_ms();
	for (size_t s = 0; s < ARRAY_SIZE(sets); s++) {
		elem_list_t l;
		int r = set_elems(in, nl, sets[s].set, sb->ifname, &l, err);
		if (r < 0)
			return r;
		size_t alen = sets[s].family == AF_INET ? 4 : 16;
		pthread_mutex_lock(&sb->lock);
		for (size_t i = 0; i < l.n; i++) {
			if (l.v[i].key_len != IFNAMSIZ + alen)
				continue;
			eg_learned_t *e = eg_learned_append(sb);
			e->family = (uint8_t)sets[s].family;
			memcpy(e->addr, l.v[i].key + IFNAMSIZ, alen);
			e->where = sets[s].denied ? EG_WHERE_SHUNNED : EG_WHERE_LEARNED;
			/* A deny of unknown origin is kept until it expires. */
			e->denied = e->watched = sets[s].denied;
			e->expires_ms = now + (int64_t)l.v[i].expires_ms;
		}
		pthread_mutex_unlock(&sb->lock);
		free(l.v);
	}
	return 0;
}

int eg_sets_restore(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb, hutch_err_t *err)
{
	pthread_mutex_lock(&sb->lock);
	int64_t now = eg_now_ms();
	eg_nfnl_begin(nl);
	eg_sets_sandbox(in, nl, sb, true);
	if (sb->rules)
		eg_sets_rules(in, nl, sb, sb->rules, true);
	for (size_t i = 0; i < sb->n_learned; i++) {
		const eg_learned_t *e = &sb->learned[i];
		if (e->where != EG_WHERE_NONE && e->expires_ms > now)
			eg_sets_learned(in, nl, sb, e->family, e->addr, e->where == EG_WHERE_SHUNNED,
					EG_ELEM_ADD, (uint64_t)(e->expires_ms - now));
	}
	int r = eg_nfnl_commit(nl, err);
	pthread_mutex_unlock(&sb->lock);
	return r < 0 ? hutch_err_prefix(err, "sandbox %s: put its elements back", sb->id) : 0;
}

typedef struct counter_walk {
	eg_instance_t *in;
	uint64_t total;
} counter_walk_t;

static void counter_seen(void *data, const char *name, uint64_t packets, uint64_t bytes)
{
	(void)bytes;
	counter_walk_t *w = data;
	if (!packets || strncmp(name, "c_", 2) != 0)
		return;
	const char *ifname = name + 2;
	size_t pl = strlen(w->in->prefix);
	if (strncmp(ifname, w->in->prefix, pl) != 0)
		return;
	char *end;
	unsigned long host = strtoul(ifname + pl, &end, 10);
	w->total += packets;
	if (*end || host < 2)
		return;
	eg_instance_t *in = w->in;
	pthread_mutex_lock(&in->lock);
	eg_sandbox_t *sb = host - 2 < in->pool.n_slots ? in->by_slot[host - 2] : NULL;
	if (sb)
		eg_sandbox_ref(sb);
	pthread_mutex_unlock(&in->lock);
	if (sb) {
		pthread_mutex_lock(&sb->lock);
		sb->dropped_packets += packets;
		pthread_mutex_unlock(&sb->lock);
		eg_sandbox_unref(sb);
	}
}

int eg_sets_collect_counters(eg_instance_t *in, eg_nfnl_t *nl, hutch_err_t *err)
{
	counter_walk_t w = {.in = in};
	int r = eg_nfnl_counters_reset(nl, in->table, counter_seen, &w, err);
	if (r < 0)
		return r;
	if (w.total) {
		atomic_fetch_add(&in->dropped_total, w.total);
		eg_metric(in, "egress_dropped_packets_total", (double)w.total);
	}
	return 0;
}
