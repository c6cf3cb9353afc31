/*
 * learned.c: what the resolver's answers taught a sandbox.
 *
 * Every address answered to a sandbox is kept with the name it was
 * answered for (and the CNAME chain that led to it) until its TTL runs
 * out: in the learned set when the name is allowed, in the shunned set
 * when it (or a name on its chain) is denied, and nowhere in the kernel
 * when the name was merely open or unlisted. So a policy change can
 * recompute where each address belongs, in the same transaction that
 * changes the rules: a name the new policy allows gets the addresses
 * already answered for it (a sandbox opened for setup and then locked
 * down keeps what it resolved for the names it is still allowed), and a
 * name it no longer allows loses them. The table also names the
 * destination of a dropped packet in the audit.
 *
 * The table is the sandbox's, under its lock, held across the nf_tables
 * commit that mirrors a change, so an answer and a policy change never
 * interleave. Each (address, set) is one kernel element, so at most one
 * entry holds it; a second name answering the same address either
 * refreshes that entry or, after a policy change, stays remembered.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "egress.h"

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

static void entry_clear(eg_learned_t *e)
{
	free(e->name);
	free(e->via);
	e->name = e->via = NULL;
}

void eg_learned_free(eg_sandbox_t *sb)
{
	for (size_t i = 0; i < sb->n_learned; i++)
		entry_clear(&sb->learned[i]);
	free(sb->learned);
	sb->learned = NULL;
	sb->n_learned = sb->cap_learned = 0;
}

static eg_learned_t *entry_find(eg_sandbox_t *sb, int family, const uint8_t *addr, char where)
{
	for (size_t i = 0; i < sb->n_learned; i++) {
		eg_learned_t *e = &sb->learned[i];
		if (e->family == family && e->where == where &&
		    memcmp(e->addr, addr, addr_len(family)) == 0)
			return e;
	}
	return NULL;
}

/* Drops expired entries; the kernel expired their elements too. */
static void entries_prune(eg_sandbox_t *sb, int64_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < sb->n_learned; i++) {
		if (sb->learned[i].expires_ms <= now) {
			entry_clear(&sb->learned[i]);
			continue;
		}
		sb->learned[k++] = sb->learned[i];
	}
	sb->n_learned = k;
}

eg_learned_t *eg_learned_append(eg_sandbox_t *sb)
{
	if (sb->n_learned == sb->cap_learned) {
		sb->cap_learned = sb->cap_learned ? sb->cap_learned * 2 : 16;
		sb->learned = xrealloc(sb->learned, sb->cap_learned * sizeof *sb->learned);
	}
	eg_learned_t *e = &sb->learned[sb->n_learned++];
	memset(e, 0, sizeof *e);
	return e;
}

static uint64_t timeout_for(const eg_instance_t *in, uint32_t ttl)
{
	uint64_t ms = (uint64_t)ttl * 1000;
	uint64_t lo = (uint64_t)in->cfg->ttl_min_ms, hi = (uint64_t)in->cfg->ttl_max_ms;
	if (ms < lo)
		ms = lo;
	if (hi && ms > hi)
		ms = hi;
	return ms ? ms : 1000;
}

/* The verdict of a name and its CNAME chain: a denied name anywhere on
 * the chain denies it all. */
static eg_verdict_t chain_verdict(const eg_rules_t *r, const char *name, bool plain,
				  const char *const *via, size_t n_via, const bool *via_plain,
				  const eg_named_t **match, const char **denied_via)
{
	eg_verdict_t v = eg_rules_name_verdict(r, name, plain, match);
	for (size_t i = 0; i < n_via && v != EG_VERDICT_DENIED; i++) {
		const eg_named_t *m;
		if (eg_rules_name_verdict(r, via[i], via_plain[i], &m) == EG_VERDICT_DENIED) {
			v = EG_VERDICT_DENIED;
			if (match)
				*match = m;
			if (denied_via)
				*denied_via = via[i];
		}
	}
	return v;
}

eg_verdict_t eg_sandbox_verdict(eg_sandbox_t *sb, const char *name, bool plain)
{
	pthread_mutex_lock(&sb->lock);
	eg_verdict_t v = eg_rules_name_verdict(sb->rules, name, plain, NULL);
	pthread_mutex_unlock(&sb->lock);
	return v;
}

/* Is addr closed to sb whatever name it was answered for? */
static bool addr_closed(const eg_instance_t *in, const eg_rules_t *r, int family,
			const uint8_t *addr)
{
	return eg_blocked(in, family, addr) || eg_rules_denied_cidr(r, family, addr);
}

typedef struct planned {
	size_t addr;     /* index in the answer */
	ptrdiff_t entry; /* the entry to update, or -1 for a new one */
	char where;
	uint64_t timeout_ms;
} planned_t;

int eg_sandbox_learn(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb,
		     const dns_question_t *q, const dns_answer_t *a, eg_learn_result_t *res,
		     hutch_err_t *err)
{
	memset(res, 0, sizeof *res);
	memset(res->addr_verdict, '-', sizeof res->addr_verdict);
	pthread_mutex_lock(&sb->lock);
	if (sb->dead) {
		pthread_mutex_unlock(&sb->lock);
		return hutch_err_set(err, ENOENT, "sandbox %s was detached", sb->id);
	}
	const eg_rules_t *r = sb->rules;
	snprintf(res->policies, sizeof res->policies, "%s", eg_rules_label(r));
	const char *via[DNS_MAX_CHAIN];
	size_t n_via = 0;
	for (size_t i = 1; i < a->n_chain; i++)
		via[n_via++] = a->chain[i];
	res->verdict = chain_verdict(r, q->name, q->plain, via, n_via, a->chain_plain + 1,
				     &res->match, &res->denied_via);
	char where = res->verdict == EG_VERDICT_ALLOWED  ? EG_WHERE_LEARNED
		     : res->verdict == EG_VERDICT_DENIED ? EG_WHERE_SHUNNED
							 : EG_WHERE_NONE;
	int64_t now = eg_now_ms();
	entries_prune(sb, now);

	planned_t plan[DNS_MAX_ADDRS];
	size_t n_plan = 0, n_new = 0;
	eg_nfnl_begin(nl);
	for (size_t i = 0; i < a->n_addrs; i++) {
		const dns_addr_t *d = &a->addrs[i];
		char target = where;
		bool closed = addr_closed(in, r, d->family, d->addr);
		if (where == EG_WHERE_SHUNNED)
			res->addr_verdict[i] = 's';
		else if (closed || (where == EG_WHERE_NONE && res->verdict != EG_VERDICT_OPEN))
			res->addr_verdict[i] = 'd';
		else
			res->addr_verdict[i] = 'a';
		if (where == EG_WHERE_LEARNED && closed)
			target = EG_WHERE_NONE; /* nft drops it anyway; remember only */
		uint64_t t = timeout_for(in, d->ttl);
		bool dup = false;
		for (size_t j = 0; j < n_plan && !dup; j++)
			dup = a->addrs[plan[j].addr].family == d->family &&
			      memcmp(a->addrs[plan[j].addr].addr, d->addr, 16) == 0;
		if (dup)
			continue;
		eg_learned_t *e = entry_find(sb, d->family, d->addr, target);
		/* Already there for long enough and for this name: nothing to
		 * change in the kernel. */
		if (e && e->expires_ms >= now + (int64_t)t - 1000 && e->name &&
		    strcmp(e->name, q->name) == 0)
			continue;
		plan[n_plan++] = (planned_t){i, e ? e - sb->learned : -1, target, t};
		if (!e)
			n_new++;
		/* A new element is added; one that exists gets its new timeout. */
		if (target != EG_WHERE_NONE)
			eg_sets_learned(in, nl, sb, d->family, d->addr, target == EG_WHERE_SHUNNED,
					e ? EG_ELEM_REFRESH : EG_ELEM_ADD, t);
	}
	/* Over the limit: forget remembered-only entries first, then those
	 * closest to expiry, in the same transaction. */
	size_t max = in->cfg->max_learned > 0 ? (size_t)in->cfg->max_learned : 1;
	size_t evict = sb->n_learned + n_new > max ? sb->n_learned + n_new - max : 0;
	bool *gone = evict ? xcalloc(sb->n_learned, sizeof *gone) : NULL;
	for (size_t k = 0; k < evict; k++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < sb->n_learned; i++) {
			bool planned = false;
			for (size_t j = 0; j < n_plan && !planned; j++)
				planned = plan[j].entry == (ptrdiff_t)i;
			if (gone[i] || planned)
				continue;
			const eg_learned_t *c = &sb->learned[i];
			if (best == SIZE_MAX) {
				best = i;
				continue;
			}
			const eg_learned_t *b = &sb->learned[best];
			bool c_none = c->where == EG_WHERE_NONE, b_none = b->where == EG_WHERE_NONE;
			if ((c_none && !b_none) || (c_none == b_none && c->expires_ms < b->expires_ms))
				best = i;
		}
		if (best == SIZE_MAX)
			break;
		gone[best] = true;
		eg_learned_t *e = &sb->learned[best];
		if (e->where != EG_WHERE_NONE)
			eg_sets_learned(in, nl, sb, e->family, e->addr, e->where == EG_WHERE_SHUNNED,
					EG_ELEM_REMOVE, 0);
	}
	int rc = eg_nfnl_commit(nl, err);
	if (rc < 0) {
		free(gone);
		pthread_mutex_unlock(&sb->lock);
		return hutch_err_prefix(err, "learn addresses of %s", q->name);
	}
	/* The kernel has them: now the table. Existing entries first, by
	 * index; new ones go at the end (which may move the table). */
	_cleanup_free_ char *via_text = NULL;
	if (n_via) {
		strbuf_t vb = STRBUF_INIT;
		for (size_t i = 0; i < n_via; i++)
			sb_printf(&vb, "%s%s", i ? " " : "", via[i]);
		via_text = sb_steal(&vb);
	}
	size_t old_n = sb->n_learned;
	for (size_t j = 0; j < n_plan; j++) {
		eg_learned_t *e;
		if (plan[j].entry >= 0) {
			e = &sb->learned[plan[j].entry];
			entry_clear(e);
		} else {
			e = eg_learned_append(sb);
			const dns_addr_t *d = &a->addrs[plan[j].addr];
			e->family = (uint8_t)d->family;
			memcpy(e->addr, d->addr, 16);
			e->where = plan[j].where;
		}
		e->expires_ms = now + (int64_t)plan[j].timeout_ms;
		e->name = xstrdup(q->name);
		e->via = via_text ? xstrdup(via_text) : NULL;
	}
	if (gone) {
		size_t k = 0;
		for (size_t i = 0; i < sb->n_learned; i++) {
			if (i < old_n && gone[i]) {
				entry_clear(&sb->learned[i]);
				continue;
			}
			sb->learned[k++] = sb->learned[i];
		}
		sb->n_learned = k;
		free(gone);
	}
	pthread_mutex_unlock(&sb->lock);
	return 0;
}

/* Where an entry belongs under rules: LEARNED, SHUNNED, NONE, or 'x' to
 * forget it (its origin is unknown: found in the kernel after a restart,
 * so nothing shows it is still allowed). */
#define WHERE_FORGET 'x'

static char entry_home(const eg_instance_t *in, const eg_rules_t *r, const eg_learned_t *e)
{
	if (!e->name)
		return WHERE_FORGET;
	const char *via[DNS_MAX_CHAIN];
	bool via_plain[DNS_MAX_CHAIN];
	size_t n_via = 0;
	_cleanup_free_ char *copy = e->via ? xstrdup(e->via) : NULL;
	for (char *save = NULL, *t = copy ? strtok_r(copy, " ", &save) : NULL;
	     t && n_via < DNS_MAX_CHAIN; t = strtok_r(NULL, " ", &save)) {
		via[n_via] = t;
		via_plain[n_via] = strchr(t, '\\') == NULL;
		n_via++;
	}
	bool plain = strchr(e->name, '\\') == NULL;
	eg_verdict_t v = chain_verdict(r, e->name, plain, via, n_via, via_plain, NULL, NULL);
	if (v == EG_VERDICT_DENIED)
		return EG_WHERE_SHUNNED;
	if (v == EG_VERDICT_ALLOWED && !addr_closed(in, r, e->family, e->addr))
		return EG_WHERE_LEARNED;
	return EG_WHERE_NONE;
}

/* Same address together, the latest expiry first. */
static int entry_cmp(const void *pa, const void *pb)
{
	const eg_learned_t *a = pa, *b = pb;
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	int c = memcmp(a->addr, b->addr, addr_len(a->family));
	if (c)
		return c;
	return a->expires_ms > b->expires_ms ? -1 : a->expires_ms < b->expires_ms ? 1 : 0;
}

static uint64_t time_left(const eg_learned_t *e, int64_t now)
{
	int64_t left = e->expires_ms - now;
	return left > 1000 ? (uint64_t)left : 1000;
}

int eg_sandbox_set_rules(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb, eg_rules_t *rules,
			 hutch_err_t *err)
{
	pthread_mutex_lock(&sb->lock);
	if (sb->dead) {
		pthread_mutex_unlock(&sb->lock);
		eg_rules_free(rules);
		return hutch_err_set(err, ENOENT, "sandbox %s was detached", sb->id);
	}
	int64_t now = eg_now_ms();
	entries_prune(sb, now);
	if (sb->n_learned > 1) /* qsort takes no NULL table, even empty */
		qsort(sb->learned, sb->n_learned, sizeof *sb->learned, entry_cmp);
	eg_nfnl_begin(nl);
	if (sb->rules)
		eg_sets_rules(in, nl, sb, sb->rules, false);
	eg_sets_rules(in, nl, sb, rules, true);
	/* Per address: which entries hold an element now, which should after,
	 * and the kernel operations between the two. */
	char *want = xcalloc(sb->n_learned + 1, 1);
	for (size_t g = 0; g < sb->n_learned;) {
		size_t end = g + 1;
		while (end < sb->n_learned && sb->learned[end].family == sb->learned[g].family &&
		       memcmp(sb->learned[end].addr, sb->learned[g].addr,
			      addr_len(sb->learned[g].family)) == 0)
			end++;
		static const char sets[2] = {EG_WHERE_LEARNED, EG_WHERE_SHUNNED};
		for (size_t i = g; i < end; i++)
			want[i] = entry_home(in, rules, &sb->learned[i]);
		for (size_t s = 0; s < 2; s++) {
			ptrdiff_t had = -1, holder = -1;
			for (size_t i = g; i < end; i++) {
				if (sb->learned[i].where == sets[s])
					had = (ptrdiff_t)i;
				if (want[i] == sets[s]) {
					if (holder < 0)
						holder = (ptrdiff_t)i; /* the latest expiry */
					else
						want[i] = EG_WHERE_NONE; /* one element, one holder */
				}
			}
			const eg_learned_t *e = &sb->learned[g];
			bool shun = sets[s] == EG_WHERE_SHUNNED;
			if (had >= 0 && holder < 0)
				eg_sets_learned(in, nl, sb, e->family, e->addr, shun, EG_ELEM_REMOVE, 0);
			else if (holder >= 0 && holder != had)
				eg_sets_learned(in, nl, sb, e->family, e->addr, shun,
						had >= 0 ? EG_ELEM_REFRESH : EG_ELEM_ADD,
						time_left(&sb->learned[holder], now));
		}
		g = end;
	}
	int r = eg_nfnl_commit(nl, err);
	if (r < 0) {
		free(want);
		pthread_mutex_unlock(&sb->lock);
		eg_rules_free(rules);
		return hutch_err_prefix(err, "apply policies");
	}
	size_t k = 0;
	for (size_t i = 0; i < sb->n_learned; i++) {
		if (want[i] == WHERE_FORGET) {
			entry_clear(&sb->learned[i]);
			continue;
		}
		sb->learned[i].where = want[i];
		sb->learned[k++] = sb->learned[i];
	}
	sb->n_learned = k;
	free(want);
	eg_rules_free(sb->rules);
	sb->rules = rules;
	sb->rules_gen++;
	pthread_mutex_unlock(&sb->lock);
	return 0;
}

char *eg_learned_name(eg_sandbox_t *sb, int family, const uint8_t *addr)
{
	char *name = NULL;
	int64_t best = 0;
	pthread_mutex_lock(&sb->lock);
	for (size_t i = 0; i < sb->n_learned; i++) {
		const eg_learned_t *e = &sb->learned[i];
		if (e->family != family || !e->name || memcmp(e->addr, addr, addr_len(family)) != 0)
			continue;
		if (!name || e->expires_ms > best) {
			free(name);
			name = xstrdup(e->name);
			best = e->expires_ms;
		}
	}
	pthread_mutex_unlock(&sb->lock);
	return name;
}
