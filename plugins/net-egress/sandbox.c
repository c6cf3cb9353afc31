/*
 * sandbox.c: the sandboxes net-egress knows, what their resolver answers
 * taught them, and their state files.
 *
 * The registry maps slots (and so source addresses) and ids to sandboxes;
 * the resolver finds a query's sandbox by its source address. A sandbox's
 * learned table mirrors its learned/shunned set elements with the name
 * each address was answered for, so that a policy change can keep the
 * addresses of names still allowed and drop the others, in the same
 * transaction that changes the rules.
 */
#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "egress.h"

int64_t eg_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool eg_blocked(const eg_instance_t *in, int family, const uint8_t *addr)
{
	for (size_t i = 0; i < in->n_blocked; i++)
		if (eg_cidr_contains(&in->blocked[i], family, addr))
			return true;
	return false;
}

/* ---- sandboxes ---- */

eg_sandbox_t *eg_sandbox_new(const eg_instance_t *in, const char *id, const char *tenant,
			     uint32_t slot)
{
	eg_sandbox_t *sb = xcalloc(1, sizeof *sb);
	sb->id = xstrdup(id);
	sb->tenant = xstrdup(tenant ? tenant : "");
	sb->slot = slot;
	/* prefix <= 8 characters and host numbers <= 65001: fits IFNAMSIZ. */
	char name[32];
	snprintf(name, sizeof name, "%s%u", in->prefix, slot + 2);
	memcpy(sb->ifname, name, strnlen(name, IFNAMSIZ - 1));
	snprintf(sb->counter, sizeof sb->counter, "c_%s", sb->ifname);
	eg_pool_addr4(&in->pool, slot + 2, sb->addr4);
	sb->has6 = in->pool.has6;
	if (sb->has6)
		eg_pool_addr6(&in->pool, slot + 2, sb->addr6);
	sb->netns_path = xasprintf("%s/%s", in->netns_dir, id);
	atomic_init(&sb->refs, 1);
	pthread_mutex_init(&sb->lock, NULL);
	return sb;
}

void eg_sandbox_ref(eg_sandbox_t *sb)
{
	atomic_fetch_add(&sb->refs, 1);
}

static void learned_clear(eg_learned_t *e)
{
	free(e->name);
	free(e->via);
	e->name = e->via = NULL;
}

void eg_sandbox_unref(eg_sandbox_t *sb)
{
	if (!sb || atomic_fetch_sub(&sb->refs, 1) != 1)
		return;
	for (size_t i = 0; i < sb->n_learned; i++)
		learned_clear(&sb->learned[i]);
	free(sb->learned);
	eg_rules_free(sb->rules);
	pthread_mutex_destroy(&sb->lock);
	free(sb->id);
	free(sb->tenant);
	free(sb->netns_path);
	free(sb);
}

/* ---- registry ---- */

int eg_registry_add(eg_instance_t *in, eg_sandbox_t *sb, hutch_err_t *err)
{
	pthread_mutex_lock(&in->lock);
	if (sb->slot >= in->pool.n_slots || in->by_slot[sb->slot]) {
		pthread_mutex_unlock(&in->lock);
		return hutch_err_set(err, EEXIST, "slot %u is taken", sb->slot);
	}
	for (uint32_t i = 0; i < in->pool.n_slots; i++) {
		if (in->by_slot[i] && strcmp(in->by_slot[i]->id, sb->id) == 0) {
			pthread_mutex_unlock(&in->lock);
			return hutch_err_set(err, EEXIST, "sandbox %s is already attached", sb->id);
		}
	}
	eg_sandbox_ref(sb);
	in->by_slot[sb->slot] = sb;
	in->n_sandboxes++;
	size_t n = in->n_sandboxes;
	pthread_mutex_unlock(&in->lock);
	in->host->metric_set(in->host, "egress_sandboxes", NULL, (double)n);
	return 0;
}

void eg_registry_remove(eg_instance_t *in, eg_sandbox_t *sb)
{
	pthread_mutex_lock(&in->lock);
	bool was = sb->slot < in->pool.n_slots && in->by_slot[sb->slot] == sb;
	if (was) {
		in->by_slot[sb->slot] = NULL;
		in->n_sandboxes--;
	}
	size_t n = in->n_sandboxes;
	pthread_mutex_unlock(&in->lock);
	if (was) {
		in->host->metric_set(in->host, "egress_sandboxes", NULL, (double)n);
		eg_sandbox_unref(sb);
	}
}

eg_sandbox_t *eg_registry_find_id(eg_instance_t *in, const char *id)
{
	eg_sandbox_t *found = NULL;
	pthread_mutex_lock(&in->lock);
	for (uint32_t i = 0; i < in->pool.n_slots && in->n_sandboxes; i++) {
		eg_sandbox_t *sb = in->by_slot[i];
		if (sb && strcmp(sb->id, id) == 0) {
			eg_sandbox_ref(sb);
			found = sb;
			break;
		}
	}
	pthread_mutex_unlock(&in->lock);
	return found;
}

eg_sandbox_t *eg_registry_find_addr(eg_instance_t *in, int family, const uint8_t *addr)
{
	int64_t slot = eg_pool_slot_of(&in->pool, family, addr);
	if (slot < 0)
		return NULL;
	pthread_mutex_lock(&in->lock);
	eg_sandbox_t *sb = in->by_slot[slot];
	if (sb)
		eg_sandbox_ref(sb);
	pthread_mutex_unlock(&in->lock);
	return sb;
}

eg_sandbox_t **eg_registry_list(eg_instance_t *in, size_t *n)
{
	pthread_mutex_lock(&in->lock);
	eg_sandbox_t **v = xcalloc(in->n_sandboxes + 1, sizeof *v);
	size_t k = 0;
	for (uint32_t i = 0; i < in->pool.n_slots && k < in->n_sandboxes; i++) {
		if (in->by_slot[i]) {
			eg_sandbox_ref(in->by_slot[i]);
			v[k++] = in->by_slot[i];
		}
	}
	pthread_mutex_unlock(&in->lock);
	*n = k;
	return v;
}

void eg_registry_list_free(eg_sandbox_t **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		eg_sandbox_unref(v[i]);
	free(v);
}

/* ---- learned addresses ---- */

static eg_learned_t *learned_find(eg_sandbox_t *sb, int family, const uint8_t *addr,
				  bool denied)
{
	size_t alen = family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < sb->n_learned; i++) {
		eg_learned_t *e = &sb->learned[i];
		if (e->family == family && e->denied == denied && memcmp(e->addr, addr, alen) == 0)
			return e;
	}
	return NULL;
}

/* Drops expired entries (the kernel expired their elements too). */
static void learned_prune(eg_sandbox_t *sb, int64_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < sb->n_learned; i++) {
		if (sb->learned[i].expires_ms <= now) {
			learned_clear(&sb->learned[i]);
			continue;
		}
		sb->learned[k++] = sb->learned[i];
	}
	sb->n_learned = k;
}

static eg_learned_t *learned_append(eg_sandbox_t *sb)
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

typedef struct planned {
	size_t addr;        /* index in the answer */
	ptrdiff_t entry;    /* index of the entry to update, or -1 for a new one */
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
	snprintf(res->policies, sizeof res->policies, "%s", r->policies);
	const char *via[DNS_MAX_CHAIN];
	size_t n_via = 0;
	for (size_t i = 1; i < a->n_chain; i++)
		via[n_via++] = a->chain[i];
	res->verdict = chain_verdict(r, q->name, q->plain, via, n_via, a->chain_plain + 1,
				     &res->match, &res->denied_via);
	bool denied = res->verdict == EG_VERDICT_DENIED;
	if (res->verdict != EG_VERDICT_ALLOWED && !denied) {
		pthread_mutex_unlock(&sb->lock);
		return 0;
	}
	int64_t now = eg_now_ms();
	learned_prune(sb, now);

	planned_t plan[DNS_MAX_ADDRS];
	size_t n_plan = 0, n_new = 0;
	eg_nfnl_begin(nl);
	for (size_t i = 0; i < a->n_addrs; i++) {
		const dns_addr_t *d = &a->addrs[i];
		if (!denied && (eg_blocked(in, d->family, d->addr) ||
				eg_rules_denied_cidr(r, d->family, d->addr))) {
			res->addr_verdict[i] = 'd'; /* nft drops it anyway; do not add */
			continue;
		}
		res->addr_verdict[i] = denied ? 's' : 'a';
		uint64_t t = timeout_for(in, d->ttl);
		eg_learned_t *e = learned_find(sb, d->family, d->addr, denied);
		/* Already there for long enough: nothing to change in the kernel. */
		if (e && e->expires_ms >= now + (int64_t)t - 1000 && e->name &&
		    strcmp(e->name, q->name) == 0)
			continue;
		bool dup = false;
		for (size_t j = 0; j < n_plan; j++)
			if (a->addrs[plan[j].addr].family == d->family &&
			    memcmp(a->addrs[plan[j].addr].addr, d->addr, 16) == 0)
				dup = true;
		if (dup)
			continue;
		plan[n_plan++] = (planned_t){i, e ? e - sb->learned : -1, t};
		if (!e)
			n_new++;
		eg_sets_learned(in, nl, sb, d->family, d->addr, denied, EG_ELEM_REFRESH, t);
	}
	/* Over the limit: forget the entries closest to expiry, in the same
	 * transaction. */
	size_t max = in->cfg->max_learned > 0 ? (size_t)in->cfg->max_learned : 1;
	size_t evict = sb->n_learned + n_new > max ? sb->n_learned + n_new - max : 0;
	bool *gone = evict ? xcalloc(sb->n_learned, sizeof *gone) : NULL;
	for (size_t k = 0; k < evict; k++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < sb->n_learned; i++) {
			bool planned = false;
			for (size_t j = 0; j < n_plan; j++)
				if (plan[j].entry == (ptrdiff_t)i)
					planned = true;
			if (gone[i] || planned)
				continue;
			if (best == SIZE_MAX || sb->learned[i].expires_ms < sb->learned[best].expires_ms)
				best = i;
		}
		if (best == SIZE_MAX)
			break;
		gone[best] = true;
		eg_learned_t *e = &sb->learned[best];
		eg_sets_learned(in, nl, sb, e->family, e->addr, e->denied, EG_ELEM_REMOVE, 0);
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
		if (plan[j].entry < 0)
			continue;
		eg_learned_t *e = &sb->learned[plan[j].entry];
		e->expires_ms = now + (int64_t)plan[j].timeout_ms;
		learned_clear(e);
		e->name = xstrdup(q->name);
		e->via = via_text ? xstrdup(via_text) : NULL;
	}
	for (size_t j = 0; j < n_plan; j++) {
		if (plan[j].entry >= 0)
			continue;
		eg_learned_t *e = learned_append(sb);
		const dns_addr_t *d = &a->addrs[plan[j].addr];
		e->family = (uint8_t)d->family;
		memcpy(e->addr, d->addr, 16);
		e->denied = denied;
		e->expires_ms = now + (int64_t)plan[j].timeout_ms;
		e->name = xstrdup(q->name);
		e->via = via_text ? xstrdup(via_text) : NULL;
	}
	if (gone) {
		size_t k = 0;
		for (size_t i = 0; i < sb->n_learned; i++) {
			if (i < old_n && gone[i]) {
				learned_clear(&sb->learned[i]);
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

/* Where a learned entry belongs under rules: 'l' learned, 's' shunned,
 * 0 nowhere. */
static char learned_home(const eg_instance_t *in, const eg_rules_t *r, const eg_learned_t *e)
{
	if (!e->name)
		return 0; /* origin unknown: cannot show it is still allowed */
	const char *via[DNS_MAX_CHAIN];
	bool via_plain[DNS_MAX_CHAIN];
	size_t n_via = 0;
	_cleanup_free_ char *copy = e->via ? xstrdup(e->via) : NULL;
	for (char *save = NULL, *t = copy ? strtok_r(copy, " ", &save) : NULL; t && n_via < DNS_MAX_CHAIN;
	     t = strtok_r(NULL, " ", &save)) {
		via[n_via] = t;
		via_plain[n_via] = strchr(t, '\\') == NULL;
		n_via++;
	}
	bool plain = strchr(e->name, '\\') == NULL;
	eg_verdict_t v = chain_verdict(r, e->name, plain, via, n_via, via_plain, NULL, NULL);
	if (v == EG_VERDICT_DENIED)
		return 's';
	if (v == EG_VERDICT_ALLOWED && !eg_blocked(in, e->family, e->addr) &&
	    !eg_rules_denied_cidr(r, e->family, e->addr))
		return 'l';
	return 0;
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
	learned_prune(sb, now);
	eg_nfnl_begin(nl);
	if (sb->rules)
		eg_sets_rules(in, nl, sb, sb->rules, false);
	eg_sets_rules(in, nl, sb, rules, true);
	char *home = xcalloc(sb->n_learned + 1, 1);
	for (size_t i = 0; i < sb->n_learned; i++) {
		eg_learned_t *e = &sb->learned[i];
		char want = learned_home(in, rules, e);
		char have = e->denied ? 's' : 'l';
		home[i] = want;
		if (want == have)
			continue;
		eg_sets_learned(in, nl, sb, e->family, e->addr, e->denied, EG_ELEM_REMOVE, 0);
		if (want) {
			int64_t left = e->expires_ms - now;
			eg_sets_learned(in, nl, sb, e->family, e->addr, want == 's', EG_ELEM_REFRESH,
					left > 1000 ? (uint64_t)left : 1000);
		}
	}
	int r = eg_nfnl_commit(nl, err);
	if (r < 0) {
		free(home);
		pthread_mutex_unlock(&sb->lock);
		eg_rules_free(rules);
		return hutch_err_prefix(err, "apply policies");
	}
	size_t k = 0;
	for (size_t i = 0; i < sb->n_learned; i++) {
		if (!home[i]) {
			learned_clear(&sb->learned[i]);
			continue;
		}
		sb->learned[i].denied = home[i] == 's';
		sb->learned[k++] = sb->learned[i];
	}
	sb->n_learned = k;
	free(home);
	eg_rules_free(sb->rules);
	sb->rules = rules;
	pthread_mutex_unlock(&sb->lock);
	return 0;
}

/* ---- state files ---- */

static char *state_path(const eg_instance_t *in, const char *id)
{
	return xasprintf("%s/%s", in->state_dir, id);
}

static void one_line(strbuf_t *b, const char *key, const char *value)
{
	sb_printf(b, "%s ", key);
	for (const char *p = value; *p; p++)
		sb_putc(b, (unsigned char)*p < 0x20 ? '?' : *p);
	sb_putc(b, '\n');
}

int eg_state_write(const eg_instance_t *in, eg_sandbox_t *sb, hutch_err_t *err)
{
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	one_line(&b, "id", sb->id);
	one_line(&b, "tenant", sb->tenant);
	sb_printf(&b, "slot %u\n", sb->slot);
	pthread_mutex_lock(&sb->lock);
	if (sb->rules)
		eg_rules_write(sb->rules, &b);
	pthread_mutex_unlock(&sb->lock);
	_cleanup_free_ char *path = state_path(in, sb->id);
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tmp);
	if (write(fd, b.buf, b.len) != (ssize_t)b.len) {
		int e = errno ? errno : EIO;
		unlink(tmp);
		return hutch_err_sys(err, e, "write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return hutch_err_sys(err, e, "rename %s", tmp);
	}
	return 0;
}

void eg_state_remove(const eg_instance_t *in, const char *id)
{
	_cleanup_free_ char *path = state_path(in, id);
	unlink(path);
}

static eg_sandbox_t *state_read(eg_instance_t *in, const char *file, hutch_err_t *err)
{
	_cleanup_fclose_ FILE *f = fopen(file, "re");
	if (!f) {
		hutch_err_sys(err, errno, "open %s", file);
		return NULL;
	}
	_cleanup_free_ char *id = NULL, *tenant = NULL;
	long slot = -1;
	eg_rules_t *rules = eg_rules_new();
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int bad = 0;
	while ((n = getline(&line, &cap, f)) > 0 && !bad) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		char *sp = strchr(line, ' ');
		const char *value = sp ? sp + 1 : "";
		if (sp)
			*sp = '\0';
		if (strcmp(line, "id") == 0) {
			free(id);
			id = xstrdup(value);
		} else if (strcmp(line, "tenant") == 0) {
			free(tenant);
			tenant = xstrdup(value);
		} else if (strcmp(line, "slot") == 0) {
			slot = strtol(value, NULL, 10);
		} else if (eg_rules_read_line(rules, line, value, err) < 0) {
			bad = 1;
		}
	}
	free(line);
	if (bad || !id || slot < 0 || (uint64_t)slot >= in->pool.n_slots) {
		if (!bad)
			hutch_err_set(err, EINVAL, "%s: incomplete", file);
		eg_rules_free(rules);
		return NULL;
	}
	rules->n_allow_cidrs = eg_cidrs_normalize(rules->allow_cidrs, rules->n_allow_cidrs);
	rules->n_deny_cidrs = eg_cidrs_normalize(rules->deny_cidrs, rules->n_deny_cidrs);
	eg_sandbox_t *sb = eg_sandbox_new(in, id, tenant, (uint32_t)slot);
	sb->rules = rules;
	return sb;
}

void eg_state_load_all(eg_instance_t *in)
{
	_cleanup_closedir_ DIR *d = opendir(in->state_dir);
	if (!d)
		return;
	eg_nfnl_t nl;
	hutch_err_t e = {0};
	bool have_nl = eg_nfnl_open(&nl, &e) == 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
			continue;
		_cleanup_free_ char *file = state_path(in, de->d_name);
		eg_sandbox_t *sb = state_read(in, file, &e);
		if (!sb) {
			in->host->log(in->host, HUTCH_LOG_WARN, "ignoring state file: %s", e.message);
			continue;
		}
		if (!eg_pool_reserve(&in->pool, sb->slot) || eg_registry_add(in, sb, &e) < 0) {
			in->host->log(in->host, HUTCH_LOG_WARN,
				      "state of sandbox %s: slot %u is taken twice; ignoring it", sb->id,
				      sb->slot);
			eg_sandbox_unref(sb);
			continue;
		}
		if (have_nl && eg_sets_recover_learned(in, &nl, sb, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: learned addresses: %s",
				      sb->id, e.message);
		in->host->log(in->host, HUTCH_LOG_INFO, "sandbox %s (%s) found from before a restart",
			      sb->id, sb->ifname);
		eg_sandbox_unref(sb);
	}
	if (have_nl)
		eg_nfnl_close(&nl);
}
