/*
 * sandbox.c: the sandboxes net-egress knows, and their state files.
 *
 * The registry maps slots (and so source addresses) and ids to sandboxes;
 * the resolver finds a query's sandbox by its source address. What the
 * resolver's answers taught a sandbox is in learned.c.
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

bool eg_nat64_embedded(const eg_instance_t *in, const uint8_t addr[16], uint8_t out[4])
{
	for (size_t i = 0; i < in->n_nat64; i++) {
		if (eg_cidr_contains(&in->nat64[i], AF_INET6, addr)) {
			memcpy(out, addr + 12, 4); /* a /96: the last 32 bits */
			return true;
		}
	}
	return false;
}

const eg_cidr_t *eg_blocked_range(const eg_instance_t *in, int family, const uint8_t *addr)
{
	uint8_t v4[4];
	bool nat64 = family == AF_INET6 && eg_nat64_embedded(in, addr, v4);
	for (size_t i = 0; i < in->n_blocked; i++)
		if (eg_cidr_contains(&in->blocked[i], family, addr) ||
		    (nat64 && eg_cidr_contains(&in->blocked[i], AF_INET, v4)))
			return &in->blocked[i];
	return NULL;
}

bool eg_blocked(const eg_instance_t *in, int family, const uint8_t *addr)
{
	return eg_blocked_range(in, family, addr) != NULL;
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
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&sb->watch_cond, &ca);
	pthread_condattr_destroy(&ca);
	sb->rules_gen = 1;
	return sb;
}

void eg_sandbox_ref(eg_sandbox_t *sb)
{
	atomic_fetch_add(&sb->refs, 1);
}

void eg_sandbox_unref(eg_sandbox_t *sb)
{
	if (!sb || atomic_fetch_sub(&sb->refs, 1) != 1)
		return;
	eg_learned_free(sb);
	strv_free(sb->watch_names); /* a round cut short by a stop */
	eg_rules_free(sb->rules);
	pthread_mutex_destroy(&sb->lock);
	pthread_cond_destroy(&sb->watch_cond);
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
	eg_nfnl_t *nl = NULL;
	hutch_err_t e = {0};
	bool have_nl = eg_nfnl_get(&in->nl_cache, &nl, &e) == 0;
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
		if (have_nl && eg_sets_recover_learned(in, nl, sb, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: learned addresses: %s",
				      sb->id, e.message);
		in->host->log(in->host, HUTCH_LOG_INFO, "sandbox %s (%s) found from before a restart",
			      sb->id, sb->ifname);
		eg_sandbox_unref(sb);
	}
	eg_nfnl_put(&in->nl_cache, nl);
}
