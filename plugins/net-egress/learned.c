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

/* The denied prefix covering addr, also through NAT64 (either way: an
 * IPv4 prefix covers the NAT64 forms of its addresses, and a denied NAT64
 * form covers the IPv4 address it embeds), or NULL. */
static const eg_cidr_t *denied_cidr(const eg_instance_t *in, const eg_rules_t *r, int family,
				    const uint8_t *addr)
{
	const eg_cidr_t *c = eg_rules_denied_cidr(r, family, addr);
	uint8_t v4[4];
	if (!c && family == AF_INET6 && eg_nat64_embedded(in, addr, v4))
		c = eg_rules_denied_cidr(r, AF_INET, v4);
	for (size_t i = 0; !c && family == AF_INET && i < in->n_nat64; i++) {
		uint8_t v6[16];
		memcpy(v6, in->nat64[i].addr, 12);
		memcpy(v6 + 12, addr, 4);
		c = eg_rules_denied_cidr(r, AF_INET6, v6);
	}
	return c;
}

/* Is addr closed to sb whatever name it was answered for? */
static bool addr_closed(const eg_instance_t *in, const eg_rules_t *r, int family,
			const uint8_t *addr)
{
	return eg_blocked(in, family, addr) || denied_cidr(in, r, family, addr);
}

/* One address of an answer, and what it changes. */
typedef struct planned {
	size_t src;        /* index in the answer */
	uint8_t family;
	uint8_t addr[16];  /* as kept: a denied name's NAT64 answer as the IPv4
			    * address it embeds, which the NAT64 rule drops in
			    * both forms */
	uint64_t timeout_ms;
	ptrdiff_t entry;   /* the entry to update, or -1 for a new one */
	ptrdiff_t demote;  /* the SHUNNED holder it takes the element from, or -1 */
	char where;        /* where the entry is after */
	bool denied;       /* answered for a denied name */
	int op;            /* eg_elem_op_t for its element, or -1: none */
} planned_t;

static ptrdiff_t entry_index(eg_sandbox_t *sb, const eg_learned_t *e)
{
	return e ? e - sb->learned : -1;
}

static int addr_cmp(int fa, const uint8_t *a, int fb, const uint8_t *b)
{
	if (fa != fb)
		return fa < fb ? -1 : 1;
	return memcmp(a, b, addr_len(fa));
}

/* The table's entries by address (indices), so that an answer of
 * thousands of addresses is planned in O(n log n), not O(n * m). */
typedef struct addr_index {
	size_t *v;
	size_t n;
} addr_index_t;

static int index_cmp(const void *pa, const void *pb, void *arg)
{
	const eg_learned_t *t = arg;
	const eg_learned_t *a = &t[*(const size_t *)pa], *b = &t[*(const size_t *)pb];
	return addr_cmp(a->family, a->addr, b->family, b->addr);
}

static void index_build(const eg_sandbox_t *sb, addr_index_t *ix)
{
	ix->n = sb->n_learned;
	ix->v = xcalloc(ix->n + 1, sizeof *ix->v);
	for (size_t i = 0; i < ix->n; i++)
		ix->v[i] = i;
	if (ix->n > 1)
		qsort_r(ix->v, ix->n, sizeof *ix->v, index_cmp, sb->learned);
}

/* The entries holding family/addr: ix->v[*lo .. *hi). */
static void index_range(const eg_sandbox_t *sb, const addr_index_t *ix, int family,
			const uint8_t *addr, size_t *lo, size_t *hi)
{
	size_t a = 0, b = ix->n;
	while (a < b) {
		size_t m = a + (b - a) / 2;
		const eg_learned_t *e = &sb->learned[ix->v[m]];
		if (addr_cmp(e->family, e->addr, family, addr) < 0)
			a = m + 1;
		else
			b = m;
	}
	*lo = *hi = a;
	while (*hi < ix->n) {
		const eg_learned_t *e = &sb->learned[ix->v[*hi]];
		if (addr_cmp(e->family, e->addr, family, addr) != 0)
			break;
		(*hi)++;
	}
}

/* A denied name's address: its own entry (one per name), the element
 * held by whichever of the address's denied entries lives longest. */
static void plan_denied(eg_sandbox_t *sb, const addr_index_t *ix, planned_t *p, const char *name,
			int64_t now)
{
	eg_learned_t *same = NULL, *holder = NULL;
	size_t lo, hi;
	index_range(sb, ix, p->family, p->addr, &lo, &hi);
	for (size_t k = lo; k < hi; k++) {
		eg_learned_t *e = &sb->learned[ix->v[k]];
		if (e->where == EG_WHERE_SHUNNED)
			holder = e;
		if (e->denied && e->name && strcmp(e->name, name) == 0)
			same = e;
	}
	int64_t expires = now + (int64_t)p->timeout_ms;
	p->entry = entry_index(sb, same);
	p->where = EG_WHERE_NONE;
	if (!holder) {
		p->where = EG_WHERE_SHUNNED;
		p->op = EG_ELEM_ADD;
	} else if (expires > holder->expires_ms) {
		p->where = EG_WHERE_SHUNNED;
		p->op = EG_ELEM_REFRESH;
		if (holder != same)
			p->demote = entry_index(sb, holder);
	} else if (holder == same) {
		p->where = EG_WHERE_SHUNNED; /* holds it on, for longer already */
	}
}

/* Any other address: the entry that holds its element (or, remembered
 * only, any one of it that is not a deny's). false: nothing changes. */
static bool plan_other(eg_sandbox_t *sb, const addr_index_t *ix, planned_t *p, char target,
		       const char *name, int64_t now)
{
	eg_learned_t *e = NULL;
	size_t lo, hi;
	index_range(sb, ix, p->family, p->addr, &lo, &hi);
	for (size_t k = lo; k < hi && !e; k++) {
		eg_learned_t *c = &sb->learned[ix->v[k]];
		if (!c->denied && c->where == target)
			e = c;
	}
	/* Already there for long enough and for this name: nothing to change
	 * in the kernel. */
	if (e && e->expires_ms >= now + (int64_t)p->timeout_ms - 1000 && e->name &&
	    strcmp(e->name, name) == 0)
		return false;
	p->entry = entry_index(sb, e);
	p->where = target;
	if (target != EG_WHERE_NONE)
		p->op = e ? EG_ELEM_REFRESH : EG_ELEM_ADD;
	return true;
}

/* Marks in dup[] every address of plan[0..n) that an earlier one repeats. */
static int plan_cmp(const void *pa, const void *pb, void *arg)
{
	const planned_t *v = arg;
	const planned_t *a = &v[*(const size_t *)pa], *b = &v[*(const size_t *)pb];
	int c = addr_cmp(a->family, a->addr, b->family, b->addr);
	return c ? c : a->src < b->src ? -1 : a->src > b->src ? 1 : 0;
}

static void plan_dups(const planned_t *v, size_t n, bool *dup)
{
	_cleanup_free_ size_t *o = xcalloc(n + 1, sizeof *o);
	for (size_t i = 0; i < n; i++)
		o[i] = i;
	if (n > 1)
		qsort_r(o, n, sizeof *o, plan_cmp, (void *)v);
	for (size_t i = 1; i < n; i++)
		dup[o[i]] = addr_cmp(v[o[i]].family, v[o[i]].addr, v[o[i - 1]].family,
				     v[o[i - 1]].addr) == 0;
}

/* The answer's addresses, planned: plan[] (n_addrs of them at most),
 * with how many new entries each kind needs. */
static size_t plan_answer(eg_instance_t *in, eg_sandbox_t *sb, const dns_question_t *q,
			  const dns_answer_t *a, char where, int64_t now, eg_learn_result_t *res,
			  planned_t *plan, size_t *n_new, size_t *n_new_denied)
{
	const eg_rules_t *r = sb->rules;
	*n_new = *n_new_denied = 0;
	for (size_t i = 0; i < a->n_addrs; i++) {
		const dns_addr_t *d = &a->addrs[i];
		bool closed = addr_closed(in, r, d->family, d->addr);
		if (where == EG_WHERE_SHUNNED)
			res->addr_verdict[i] = 's';
		else if (closed || (where == EG_WHERE_NONE && res->verdict != EG_VERDICT_OPEN))
			res->addr_verdict[i] = 'd';
		else
			res->addr_verdict[i] = 'a';
		char target = where;
		if (where == EG_WHERE_LEARNED && closed)
			target = EG_WHERE_NONE; /* nft drops it anyway; remember only */
		planned_t *p = &plan[i];
		*p = (planned_t){.src = i, .family = (uint8_t)d->family, .entry = -1, .demote = -1,
				 .op = -1, .timeout_ms = timeout_for(in, d->ttl), .where = target,
				 .denied = target == EG_WHERE_SHUNNED};
		memcpy(p->addr, d->addr, addr_len(d->family));
		uint8_t v4[4];
		if (p->denied && d->family == AF_INET6 && eg_nat64_embedded(in, d->addr, v4)) {
			memset(p->addr, 0, sizeof p->addr);
			memcpy(p->addr, v4, 4);
			p->family = AF_INET;
		}
	}
	_cleanup_free_ bool *dup = xcalloc(a->n_addrs + 1, sizeof *dup);
	plan_dups(plan, a->n_addrs, dup);
	addr_index_t ix;
	index_build(sb, &ix);
	size_t n_plan = 0;
	for (size_t i = 0; i < a->n_addrs; i++) {
		planned_t p = plan[i];
		if (dup[i])
			continue;
		if (p.denied)
			plan_denied(sb, &ix, &p, q->name, now);
		else if (!plan_other(sb, &ix, &p, p.where, q->name, now))
			continue;
		if (p.entry < 0) {
			if (p.denied)
				(*n_new_denied)++;
			else
				(*n_new)++;
		}
		plan[n_plan++] = p;
	}
	free(ix.v);
	return n_plan;
}

/* Entries the plan touches (to update, or to take an element from). */
static bool *plan_marks(const eg_sandbox_t *sb, const planned_t *plan, size_t n_plan)
{
	bool *m = xcalloc(sb->n_learned + 1, sizeof *m);
	for (size_t j = 0; j < n_plan; j++) {
		if (plan[j].entry >= 0)
			m[plan[j].entry] = true;
		if (plan[j].demote >= 0)
			m[plan[j].demote] = true;
	}
	return m;
}

typedef struct victim {
	size_t i;
	bool held;       /* holds an element (else remembered only) */
	int64_t expires;
} victim_t;

static int victim_cmp(const void *pa, const void *pb)
{
	const victim_t *a = pa, *b = pb;
	if (a->held != b->held)
		return a->held ? 1 : -1;
	return a->expires < b->expires ? -1 : a->expires > b->expires ? 1 : 0;
}

/* Over max_learned: marks in gone[] the entries to forget, in the open
 * batch: remembered-only ones first, then those closest to expiry. Never
 * an entry of a denied name. Returns how many. */
static size_t evict_learned(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb,
			    const planned_t *plan, size_t n_plan, size_t n_new, bool *gone)
{
	size_t max = in->cfg->max_learned > 0 ? (size_t)in->cfg->max_learned : 1, have = 0;
	for (size_t i = 0; i < sb->n_learned; i++)
		have += !sb->learned[i].denied;
	size_t evict = have + n_new > max ? have + n_new - max : 0;
	if (!evict)
		return 0;
	_cleanup_free_ bool *marks = plan_marks(sb, plan, n_plan);
	_cleanup_free_ victim_t *v = xcalloc(sb->n_learned + 1, sizeof *v);
	size_t n = 0;
	for (size_t i = 0; i < sb->n_learned; i++) {
		const eg_learned_t *e = &sb->learned[i];
		if (!e->denied && !marks[i])
			v[n++] = (victim_t){i, e->where != EG_WHERE_NONE, e->expires_ms};
	}
	qsort(v, n, sizeof *v, victim_cmp);
	size_t done = 0;
	for (; done < evict && done < n; done++) {
		eg_learned_t *e = &sb->learned[v[done].i];
		gone[v[done].i] = true;
		if (e->where != EG_WHERE_NONE)
			eg_sets_learned(in, nl, sb, e->family, e->addr, e->where == EG_WHERE_SHUNNED,
					EG_ELEM_REMOVE, 0);
	}
	return done;
}

/* The kernel has the plan: now the table. Existing entries first, by
 * index; new ones go at the end (which may move the table); then the
 * evicted ones go. */
static void plan_apply(eg_sandbox_t *sb, const planned_t *plan, size_t n_plan,
		       const char *name, const char *via_text, bool watched, int64_t now,
		       bool *gone)
{
	size_t old_n = sb->n_learned;
	for (size_t j = 0; j < n_plan; j++) {
		const planned_t *p = &plan[j];
		eg_learned_t *e;
		int64_t expires = now + (int64_t)p->timeout_ms;
		if (p->demote >= 0)
			sb->learned[p->demote].where = EG_WHERE_NONE;
		if (p->entry >= 0) {
			e = &sb->learned[p->entry];
			if (e->denied && e->expires_ms > expires)
				expires = e->expires_ms; /* a deny is never shortened */
			entry_clear(e);
		} else {
			e = eg_learned_append(sb);
			e->family = p->family;
			memcpy(e->addr, p->addr, 16);
		}
		bool was_watched = p->entry >= 0 && e->watched;
		e->where = p->where;
		e->denied = p->denied;
		e->watched = p->denied && (watched || was_watched);
		e->expires_ms = expires;
		e->name = xstrdup(name);
		e->via = via_text ? xstrdup(via_text) : NULL;
	}
	size_t k = 0;
	for (size_t i = 0; i < sb->n_learned; i++) {
		if (i < old_n && gone[i]) {
			entry_clear(&sb->learned[i]);
			continue;
		}
		sb->learned[k++] = sb->learned[i];
	}
	sb->n_learned = k;
}

static size_t denied_asked(const eg_sandbox_t *sb)
{
	size_t n = 0;
	for (size_t i = 0; i < sb->n_learned; i++)
		n += sb->learned[i].denied && !sb->learned[i].watched;
	return n;
}

int eg_sandbox_learn(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb,
		     const dns_question_t *q, const dns_answer_t *a, bool watched,
		     eg_learn_result_t *res, hutch_err_t *err)
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
	const eg_named_t *match;
	res->verdict = chain_verdict(r, q->name, q->plain, via, n_via, a->chain_plain + 1, &match,
				     &res->denied_via);
	if (match) {
		snprintf(res->pattern, sizeof res->pattern, "%s", match->pattern);
		snprintf(res->policy, sizeof res->policy, "%s", match->policy);
	}
	if (a->addrs_cut) { /* cannot happen (DNS_MAX_ADDRS); never half-learned */
		pthread_mutex_unlock(&sb->lock);
		return hutch_err_set(err, E2BIG, "answer for %s: too many addresses", q->name);
	}
	/* A chain too long to follow (or a loop) may pass through a denied
	 * name past the cut: unless a name before it is denied (then every
	 * address of the answer is shunned), the answer is not given. */
	if (a->chain_cut && res->verdict != EG_VERDICT_DENIED) {
		res->limit = "cname_chain";
		pthread_mutex_unlock(&sb->lock);
		return hutch_err_set(err, ELOOP,
				     "answer for %s: a CNAME chain of more than %d names, or a loop",
				     q->name, DNS_MAX_CHAIN);
	}
	char where = res->verdict == EG_VERDICT_ALLOWED  ? EG_WHERE_LEARNED
		     : res->verdict == EG_VERDICT_DENIED ? EG_WHERE_SHUNNED
							 : EG_WHERE_NONE;
	int64_t now = eg_now_ms();
	entries_prune(sb, now);

	_cleanup_free_ planned_t *plan = xcalloc(a->n_addrs + 1, sizeof *plan);
	size_t n_new, n_new_denied;
	size_t n_plan = plan_answer(in, sb, q, a, where, now, res, plan, &n_new, &n_new_denied);
	/* Denied names' addresses are never evicted: past max_learned of
	 * those the sandbox asked for, the answer is refused instead. */
	size_t max = in->cfg->max_learned > 0 ? (size_t)in->cfg->max_learned : 1;
	if (!watched && n_new_denied && denied_asked(sb) + n_new_denied > max) {
		res->limit = "max_learned";
		pthread_mutex_unlock(&sb->lock);
		return hutch_err_set(err, ENOSPC,
				     "answer for %s: the sandbox holds max_learned (%zu) addresses of denied names",
				     q->name, max);
	}
	eg_nfnl_begin(nl);
	for (size_t j = 0; j < n_plan; j++)
		if (plan[j].op >= 0)
			eg_sets_learned(in, nl, sb, plan[j].family, plan[j].addr,
					plan[j].where == EG_WHERE_SHUNNED, (eg_elem_op_t)plan[j].op,
					plan[j].timeout_ms);
	_cleanup_free_ bool *gone = xcalloc(sb->n_learned + 1, sizeof *gone);
	res->evicted = evict_learned(in, nl, sb, plan, n_plan, n_new, gone);
	int rc = eg_nfnl_commit(nl, err);
	if (rc < 0) {
		pthread_mutex_unlock(&sb->lock);
		return hutch_err_prefix(err, "learn addresses of %s", q->name);
	}
	_cleanup_free_ char *via_text = NULL;
	if (n_via) {
		strbuf_t vb = STRBUF_INIT;
		for (size_t i = 0; i < n_via; i++)
			sb_printf(&vb, "%s%s", i ? " " : "", via[i]);
		via_text = sb_steal(&vb);
	}
	plan_apply(sb, plan, n_plan, q->name, via_text, watched, now, gone);
	pthread_mutex_unlock(&sb->lock);
	if (res->evicted)
		eg_metric(in, "egress_learned_evicted_total", (double)res->evicted);
	return 0;
}

/* Where an entry belongs under rules: LEARNED, SHUNNED, NONE, or 'x' to
 * forget it. An entry of unknown origin (found in the kernel after a
 * restart) is forgotten when it allowed (nothing shows it still may) and
 * kept until it expires when it shunned (a deny wins). */
#define WHERE_FORGET 'x'

static char entry_home(const eg_instance_t *in, const eg_rules_t *r, const eg_learned_t *e)
{
	if (!e->name)
		return e->denied ? EG_WHERE_SHUNNED : WHERE_FORGET;
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
	bool *denied = xcalloc(sb->n_learned + 1, sizeof *denied);
	for (size_t g = 0; g < sb->n_learned;) {
		size_t end = g + 1;
		while (end < sb->n_learned && sb->learned[end].family == sb->learned[g].family &&
		       memcmp(sb->learned[end].addr, sb->learned[g].addr,
			      addr_len(sb->learned[g].family)) == 0)
			end++;
		static const char sets[2] = {EG_WHERE_LEARNED, EG_WHERE_SHUNNED};
		for (size_t i = g; i < end; i++) {
			want[i] = entry_home(in, rules, &sb->learned[i]);
			denied[i] = want[i] == EG_WHERE_SHUNNED;
		}
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
		free(denied);
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
		/* Denied now (never evicted), or not any more. */
		sb->learned[i].denied = denied[i];
		sb->learned[i].watched = denied[i] && sb->learned[i].watched;
		sb->learned[k++] = sb->learned[i];
	}
	sb->n_learned = k;
	free(want);
	free(denied);
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
