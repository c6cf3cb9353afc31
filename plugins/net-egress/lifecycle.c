/*
 * lifecycle.c: a sandbox's network from attach to detach: the namespace,
 * veth and elements made (and undone in reverse when a step fails),
 * policy changes, and what is left of sandboxes that are gone (gc).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "egress.h"

/* ---- attach / detach ---- */

static bool id_ok(const char *id)
{
	if (!id || !*id || strlen(id) > 128 || id[0] == '.')
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

static int link_inside_cb(void *arg, hutch_err_t *err)
{
	return eg_link_inside(arg, err);
}

static void plan_for(const eg_instance_t *in, const eg_sandbox_t *sb, eg_link_plan_t *p)
{
	memset(p, 0, sizeof *p);
	p->host_ifname = sb->ifname;
	p->alias = sb->id;
	p->host_netns_fd = in->host_netns_fd;
	memcpy(p->addr4, sb->addr4, 4);
	memcpy(p->gw4, in->gw4, 4);
	p->has6 = sb->has6;
	memcpy(p->addr6, sb->addr6, 16);
	memcpy(p->gw6, in->gw6, 16);
}

/* Forgets the connections tracked for addresses of slot (see
 * conntrack.c). */
static int addrs_forget(eg_instance_t *in, uint32_t slot, hutch_err_t *err)
{
	uint8_t a4[4], a6[16];
	eg_pool_addr4(&in->pool, slot + 2, a4);
	eg_nfnl_t *nl;
	int r = eg_nfnl_get(&in->nl_cache, &nl, err);
	if (r < 0)
		return r;
	r = eg_ct_forget(nl, AF_INET, a4, NULL, err);
	if (r == 0 && in->pool.has6) {
		eg_pool_addr6(&in->pool, slot + 2, a6);
		r = eg_ct_forget(nl, AF_INET6, a6, NULL, err);
	}
	eg_nfnl_put(&in->nl_cache, nl);
	return r;
}

/* Has the resolver look up sb's denied names (dns_watch.c); wait: until
 * their addresses are shunned, or about as long as a lookup may take. */
static void watch_denied_names(eg_instance_t *in, eg_sandbox_t *sb, bool wait)
{
	eg_dns_kick(in->dns);
	pthread_mutex_lock(&sb->lock);
	bool any = false;
	for (size_t i = 0; i < sb->rules->n_deny_hosts && !any; i++)
		any = sb->rules->deny_hosts[i].pattern[0] != '*';
	pthread_mutex_unlock(&sb->lock);
	if (!wait || !any)
		return;
	int64_t tries = (int64_t)in->n_upstreams * 2 < 4 ? (int64_t)in->n_upstreams * 2 : 4;
	if (eg_dns_watch_wait(in->dns, sb, in->cfg->upstream_timeout_ms * tries + 500) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN,
			      "sandbox %s: its denied names are not resolved yet; their addresses are dropped once they are",
			      sb->id);
}

/* Takes everything of sb out of the kernel and off disk. */
static void sandbox_teardown(eg_instance_t *in, eg_sandbox_t *sb, bool exact)
{
	hutch_err_t e = {0};
	eg_nfnl_t *nl;
	if (eg_nfnl_get(&in->nl_cache, &nl, &e) == 0) {
		eg_sets_collect_counters(in, nl, &e);
		int r = -1;
		if (exact) {
			/* What we put there, known exactly: one batch, no reads. */
			pthread_mutex_lock(&sb->lock);
			eg_nfnl_begin(nl);
			if (sb->rules)
				eg_sets_rules(in, nl, sb, sb->rules, false);
			for (size_t i = 0; i < sb->n_learned; i++)
				if (sb->learned[i].where != EG_WHERE_NONE)
					eg_sets_learned(in, nl, sb, sb->learned[i].family,
							sb->learned[i].addr,
							sb->learned[i].where == EG_WHERE_SHUNNED,
							EG_ELEM_REMOVE, 0);
			eg_sets_sandbox(in, nl, sb, false);
			r = eg_nfnl_commit(nl, &e);
			pthread_mutex_unlock(&sb->lock);
		}
		/* And whatever else carries its name (or all of it, after a crash). */
		if (r < 0 && eg_sets_purge(in, nl, sb->ifname, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: %s", sb->id, e.message);
		eg_nfnl_put(&in->nl_cache, nl);
	} else {
		in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: %s", sb->id, e.message);
	}
	if (eg_link_delete(sb->ifname, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: %s", sb->id, e.message);
	/* No packet of it is on its way any more: its connections can go. */
	if (addrs_forget(in, sb->slot, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: %s", sb->id, e.message);
	if (eg_netns_remove(sb->netns_path, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: %s", sb->id, e.message);
	eg_state_remove(in, sb->id);
	eg_pool_release(&in->pool, sb->slot);
}

static void format_addr(char *out, size_t cap, int family, const uint8_t *addr, unsigned plen)
{
	char a[INET6_ADDRSTRLEN];
	inet_ntop(family, addr, a, sizeof a);
	snprintf(out, cap, "%s/%u", a, plen);
}

int eg_attach(eg_instance_t *in, const hutch_net_attach_t *req_in, hutch_net_attachment_t *out,
	      hutch_err_t *err)
{
	hutch_net_attach_t req = {0};
	memcpy(&req, req_in, req_in->size < sizeof req ? req_in->size : sizeof req);
	if (req.netns_path)
		return hutch_err_set(err, EINVAL,
				     "net-egress makes the sandbox's network namespace: it must be the first network plugin");
	if (!id_ok(req.sandbox_id))
		return hutch_err_set(err, EINVAL, "sandbox id `%s` cannot name a namespace",
				     req.sandbox_id ? req.sandbox_id : "");
	eg_sandbox_t *existing = eg_registry_find_id(in, req.sandbox_id);
	if (existing) {
		eg_sandbox_unref(existing);
		return hutch_err_set(err, EEXIST, "sandbox %s is already attached", req.sandbox_id);
	}
	eg_rules_t *rules;
	int r = eg_rules_compile(req.policies, req.policies ? req.n_policies : 0, req.policies_set,
				 in->default_allow, &rules, err);
	if (r < 0)
		return r;
	uint32_t slot;
	if ((r = eg_pool_alloc(&in->pool, &slot, err)) < 0) {
		eg_rules_free(rules);
		return r;
	}
	eg_sandbox_t *sb = eg_sandbox_new(in, req.sandbox_id, req.tenant, slot);
	sb->rules = rules;
	eg_link_plan_t plan;
	plan_for(in, sb, &plan);
	eg_nfnl_t *nl = NULL;
	/* The state file first: if hutchd dies half-way, gc finds it. */
	if ((r = eg_state_write(in, sb, err)) < 0)
		goto undo;
	r = eg_netns_create(sb->netns_path, link_inside_cb, &plan, NULL, err);
	if (r == -EEXIST) {
		/* A leftover interface of the same name (a crash before gc). */
		hutch_err_t e = {0};
		eg_link_delete(sb->ifname, &e);
		eg_netns_remove(sb->netns_path, &e);
		r = eg_netns_create(sb->netns_path, link_inside_cb, &plan, NULL, err);
	}
	if (r < 0)
		goto undo;
	if ((r = eg_link_host(&plan, err)) < 0)
		goto undo;
	if ((r = eg_nfnl_get(&in->nl_cache, &nl, err)) < 0)
		goto undo;
	eg_nfnl_begin(nl);
	eg_sets_sandbox(in, nl, sb, true);
	eg_sets_rules(in, nl, sb, sb->rules, true);
	if ((r = eg_nfnl_commit(nl, err)) < 0) {
		hutch_err_prefix(err, "nftables elements");
		goto undo;
	}
	eg_nfnl_put(&in->nl_cache, nl);
	nl = NULL;
	/* Whatever an earlier holder of the address left in the connection
	 * table must not pass for this sandbox's: refuse rather than risk it. */
	if ((r = addrs_forget(in, sb->slot, err)) < 0)
		goto undo;
	if ((r = eg_registry_add(in, sb, err)) < 0)
		goto undo;
	watch_denied_names(in, sb, true);

	snprintf(out->netns_path, sizeof out->netns_path, "%s", sb->netns_path);
	int k = 0;
	while (k < HUTCH_NET_MAX_ADDRS && out->addresses[k][0])
		k++;
	if (k < HUTCH_NET_MAX_ADDRS)
		format_addr(out->addresses[k++], sizeof out->addresses[0], AF_INET, sb->addr4, 32);
	if (sb->has6 && k < HUTCH_NET_MAX_ADDRS)
		format_addr(out->addresses[k++], sizeof out->addresses[0], AF_INET6, sb->addr6, 128);
	inet_ntop(AF_INET, in->gw4, out->dns_server, sizeof out->dns_server);
	eg_audit_sandbox(in, sb, "attach");
	eg_sandbox_unref(sb);
	return 0;
undo:
	eg_nfnl_put(&in->nl_cache, nl);
	hutch_err_prefix(err, "sandbox %s", sb->id);
	sandbox_teardown(in, sb, false);
	eg_sandbox_unref(sb);
	return -err->code;
}

int eg_detach(eg_instance_t *in, const char *sandbox_id, hutch_err_t *err)
{
	if (!id_ok(sandbox_id))
		return 0; /* never attached */
	eg_sandbox_t *sb = eg_registry_find_id(in, sandbox_id);
	if (!sb) {
		/* Not ours (or gone already): at most a pinned namespace. */
		_cleanup_free_ char *path = xasprintf("%s/%s", in->netns_dir, sandbox_id);
		eg_state_remove(in, sandbox_id);
		return eg_netns_remove(path, err);
	}
	eg_registry_remove(in, sb); /* the resolver stops answering it */
	pthread_mutex_lock(&sb->lock);
	sb->dead = true;
	pthread_mutex_unlock(&sb->lock);
	sandbox_teardown(in, sb, true);
	eg_audit_sandbox(in, sb, "detach");
	eg_sandbox_unref(sb);
	return 0;
}

/* ---- policies ---- */

int eg_policy_update(eg_instance_t *in, const char *sandbox_id,
		     const hutch_net_policy_t *const *policies, size_t n, bool set, hutch_err_t *err)
{
	eg_rules_t *rules;
	int r = eg_rules_compile(policies, policies ? n : 0, set, in->default_allow, &rules, err);
	if (r < 0)
		return r;
	eg_sandbox_t *sb = eg_registry_find_id(in, sandbox_id);
	if (!sb) {
		eg_rules_free(rules);
		return hutch_err_set(err, ENOENT, "sandbox %s is not attached to net-egress",
				     sandbox_id);
	}
	eg_nfnl_t *nl;
	if ((r = eg_nfnl_get(&in->nl_cache, &nl, err)) == 0) {
		r = eg_sandbox_set_rules(in, nl, sb, rules, err);
		eg_nfnl_put(&in->nl_cache, nl);
	} else {
		eg_rules_free(rules);
	}
	if (r == 0) {
		watch_denied_names(in, sb, false);
		hutch_err_t e = {0};
		if (eg_state_write(in, sb, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN, "sandbox %s: %s", sb->id, e.message);
		pthread_mutex_lock(&sb->lock);
		eg_audit_sandbox(in, sb, "policy_update");
		pthread_mutex_unlock(&sb->lock);
	}
	eg_sandbox_unref(sb);
	return r < 0 ? hutch_err_prefix(err, "sandbox %s", sandbox_id) : 0;
}

/* ---- gc ---- */

typedef struct orphan_walk {
	eg_instance_t *in;
	char **names;
} orphan_walk_t;

/* An interface name of ours whose slot has no sandbox. */
static bool ifname_orphan(eg_instance_t *in, const char *name)
{
	size_t pl = strlen(in->prefix);
	if (strncmp(name, in->prefix, pl) != 0 || !name[pl])
		return false;
	char *end;
	unsigned long host = strtoul(name + pl, &end, 10);
	if (*end || host < 2 || host - 2 >= in->pool.n_slots)
		return false;
	pthread_mutex_lock(&in->lock);
	bool orphan = in->by_slot[host - 2] == NULL;
	pthread_mutex_unlock(&in->lock);
	return orphan;
}

static void link_seen(void *data, const char *name, const char *alias)
{
	(void)alias;
	orphan_walk_t *w = data;
	if (ifname_orphan(w->in, name))
		strv_push(&w->names, xstrdup(name));
}

static void elem_ifname_seen(void *data, const char *ifname)
{
	orphan_walk_t *w = data;
	if (ifname_orphan(w->in, ifname))
		strv_push(&w->names, xstrdup(ifname));
}

/* Removes what no registered sandbox owns: interfaces, set elements and
 * pinned namespaces of ours. */
int eg_gc_orphans(eg_instance_t *in, hutch_err_t *err)
{
	int r = 0;
	orphan_walk_t w = {in, NULL};
	hutch_err_t e = {0};
	if (eg_link_list(in->prefix, link_seen, &w, &e) < 0)
		r = hutch_err_set(err, e.code, "%s", e.message);
	for (size_t i = 0; w.names && w.names[i]; i++) {
		in->host->log(in->host, HUTCH_LOG_INFO, "removing leftover interface %s", w.names[i]);
		if (eg_link_delete(w.names[i], &e) < 0)
			r = hutch_err_set(err, e.code, "%s", e.message);
		unsigned long host = strtoul(w.names[i] + strlen(in->prefix), NULL, 10);
		if (addrs_forget(in, (uint32_t)(host - 2), &e) < 0)
			r = hutch_err_set(err, e.code, "%s", e.message);
	}
	strv_free(w.names);
	w.names = NULL;
	eg_nfnl_t *nl;
	if (eg_nfnl_get(&in->nl_cache, &nl, &e) == 0) {
		if (eg_sets_ifnames(in, nl, elem_ifname_seen, &w, &e) < 0)
			r = hutch_err_set(err, e.code, "%s", e.message);
		for (size_t i = 0; w.names && w.names[i]; i++) {
			in->host->log(in->host, HUTCH_LOG_INFO, "removing leftover nftables elements of %s",
				      w.names[i]);
			if (eg_sets_purge(in, nl, w.names[i], &e) < 0)
				r = hutch_err_set(err, e.code, "%s", e.message);
		}
		eg_nfnl_put(&in->nl_cache, nl);
	}
	strv_free(w.names);
	_cleanup_closedir_ DIR *d = opendir(in->netns_dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		eg_sandbox_t *sb = eg_registry_find_id(in, de->d_name);
		if (sb) {
			eg_sandbox_unref(sb);
			continue;
		}
		_cleanup_free_ char *path = xasprintf("%s/%s", in->netns_dir, de->d_name);
		in->host->log(in->host, HUTCH_LOG_INFO, "removing leftover namespace %s", path);
		if (eg_netns_remove(path, &e) < 0)
			r = hutch_err_set(err, e.code, "%s", e.message);
	}
	return r;
}

int eg_gc(eg_instance_t *in, const char *const *live_ids, size_t n, hutch_err_t *err)
{
	size_t count;
	eg_sandbox_t **v = eg_registry_list(in, &count);
	for (size_t i = 0; i < count; i++) {
		bool live = false;
		for (size_t j = 0; j < n && !live; j++)
			live = live_ids[j] && strcmp(live_ids[j], v[i]->id) == 0;
		if (live)
			continue;
		in->host->log(in->host, HUTCH_LOG_INFO, "removing sandbox %s: not live", v[i]->id);
		hutch_err_t e = {0};
		eg_detach(in, v[i]->id, &e);
	}
	eg_registry_list_free(v, count);
	return eg_gc_orphans(in, err);
}
