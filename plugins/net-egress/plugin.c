/*
 * plugin.c: the net-egress descriptor, its configuration, the instance's
 * birth and death, and the network ops (most of them in lifecycle.c).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "egress.h"

static const char *const egress_choices[] = {"allow", "deny", NULL};
static const char *const disallowed_choices[] = {"forward", "nxdomain", "refused", NULL};

#define F(type, key, def, member, desc)                                         \
	{type, key, def, offsetof(eg_config_t, member), desc, 0, NULL}
#define E(key, def, member, choices, desc)                                      \
	{HUTCH_CONFIG_ENUM, key, def, offsetof(eg_config_t, member), desc, 0, choices}

static const hutch_config_field_t config_fields[] = {
	F(HUTCH_CONFIG_STRING, "pool", "\"10.200.0.0/16\"", pool,
	  "IPv4 prefix the sandboxes' addresses come from; its first address is every sandbox's gateway and resolver"),
	F(HUTCH_CONFIG_STRING, "pool6", NULL, pool6,
	  "IPv6 prefix (at most /112) for the sandboxes' IPv6 addresses; unset: IPv4 only"),
	F(HUTCH_CONFIG_STRING_LIST, "upstream_dns", "[]", upstream_dns,
	  "resolvers the sandboxes' queries are forwarded to (\"addr\", \"addr:port\", \"[v6]:port\"); empty: the nameservers of /etc/resolv.conf"),
	F(HUTCH_CONFIG_INT, "dns_port", "53", dns_port,
	  "port of the resolver on the gateway address"),
	F(HUTCH_CONFIG_BOOL, "nat", "true", nat,
	  "masquerade the sandboxes' traffic to the uplink"),
	F(HUTCH_CONFIG_STRING, "uplink", "\"auto\"", uplink,
	  "interface to masquerade on; auto: any interface that is not a sandbox's"),
	E("default_egress", "\"allow\"", default_egress, egress_choices,
	  "egress of a sandbox with no policy bound: allow (unrestricted, still no other sandboxes, host services or link-local/metadata) or deny"),
	E("disallowed_names", "\"forward\"", disallowed_names, disallowed_choices,
	  "a query for a name the sandbox may not reach: forward (resolve it; connections to it time out), nxdomain or refused (never forwarded: no DNS tunnel out)"),
	F(HUTCH_CONFIG_STRING_LIST, "blocked_cidrs",
	  "[\"169.254.0.0/16\", \"fe80::/10\", \"fd00:ec2::254/128\", \"100.100.100.200/32\"]",
	  blocked_cidrs,
	  "ranges no sandbox may reach whatever its policy (link-local and cloud metadata by default); the pools, loopback and multicast are always blocked"),
	F(HUTCH_CONFIG_STRING_LIST, "nat64_prefixes", "[\"64:ff9b::/96\"]", nat64_prefixes,
	  "NAT64 prefixes (/96) a sandbox could reach IPv4 hosts through: every IPv4 denial (blocked range, denied prefix, denied name's address) holds for the addresses they embed too"),
	F(HUTCH_CONFIG_STRING, "interface_prefix", "\"hx\"", interface_prefix,
	  "host-side veth names are <prefix><n>; 1-8 of [a-z0-9]"),
	F(HUTCH_CONFIG_STRING, "nft_table", "\"hutch_egress\"", nft_table,
	  "the nftables table (family inet) holding every sandbox's rules"),
	F(HUTCH_CONFIG_DURATION, "ttl_min", "\"30s\"", ttl_min_ms,
	  "an answered address stays allowed at least this long, whatever its TTL"),
	F(HUTCH_CONFIG_DURATION, "ttl_max", "\"1h\"", ttl_max_ms,
	  "TTLs in answers are capped to this, and so is how long an address stays allowed"),
	F(HUTCH_CONFIG_INT, "max_learned", "4096", max_learned,
	  "addresses learned from answers kept per sandbox; the ones closest to expiry go first"),
	F(HUTCH_CONFIG_DURATION, "upstream_timeout", "\"2s\"", upstream_timeout_ms,
	  "wait for an upstream's answer before asking the next one (up to 4 tries)"),
	F(HUTCH_CONFIG_DURATION, "counters_interval", "\"10s\"", counters_interval_ms,
	  "how often dropped-packet counters are read into the metrics (0: only at detach)"),
	F(HUTCH_CONFIG_BOOL, "manage_forwarding", "true", manage_forwarding,
	  "turn on net.ipv4.ip_forward (and IPv6 forwarding with pool6) at start"),
	F(HUTCH_CONFIG_BOOL, "audit", "true", audit,
	  "write an audit event for every resolver decision and sandbox attach/detach/policy change"),
	F(HUTCH_CONFIG_BOOL, "audit_drops", "true", audit_drops,
	  "also write an audit event for dropped packets (a connection attempt's first packet; needs audit)"),
	F(HUTCH_CONFIG_INT, "audit_drops_rate", "20", audit_drops_rate,
	  "at most this many dropped packets per second and sandbox reach the audit (all are counted)"),
	F(HUTCH_CONFIG_INT, "nflog_group", "6567", nflog_group,
	  "the NFLOG group dropped packets are sent to the audit on (unique per host network namespace)"),
	F(HUTCH_CONFIG_STRING, "local_names_dir", NULL, local_names_dir,
	  "names under local_names_suffix are answered from <dir>/<sandbox id> (\"name address\" lines, written by another plugin: net-wireguard's names_dir); unset: off"),
	F(HUTCH_CONFIG_STRING, "local_names_suffix", "\"tunnel\"", local_names_suffix,
	  "the suffix of the names local_names_dir answers (never forwarded upstream)"),
	F(HUTCH_CONFIG_STRING, "router_domain", "\"\"", router_domain,
	  "the resolver answers <name>.<router_domain> with the gateway address, and sandboxes may open TCP to the gateway on router_port: hutchd's router there ([router] sandbox_listen) serves each sandbox its own tenant's services; \"\": off"),
	F(HUTCH_CONFIG_INT, "router_port", "80", router_port,
	  "port of hutchd's router on the gateway address (with router_domain)"),
	{0},
};

/* ---- init helpers ---- */

static bool name_ok(const char *s, size_t max, bool underscore)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > max)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || (underscore && *p == '_')))
			return false;
	return true;
}

static int upstream_parse(const char *text, eg_upstream_t *u, hutch_err_t *err)
{
	memset(u, 0, sizeof *u);
	char host[INET6_ADDRSTRLEN + 1];
	unsigned port = 53;
	const char *p = text;
	size_t hl;
	if (*p == '[') {
		const char *end = strchr(p, ']');
		if (!end)
			return hutch_err_set(err, EINVAL, "upstream_dns `%s`: missing `]`", text);
		hl = (size_t)(end - p - 1);
		p++;
		const char *rest = end + 1;
		if (*rest == ':')
			port = (unsigned)strtoul(rest + 1, NULL, 10);
		else if (*rest)
			return hutch_err_set(err, EINVAL, "upstream_dns `%s`: junk after `]`", text);
	} else {
		const char *colon = strchr(p, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL; /* a bare IPv6 address */
		hl = colon ? (size_t)(colon - p) : strlen(p);
		if (colon)
			port = (unsigned)strtoul(colon + 1, NULL, 10);
	}
	if (hl == 0 || hl >= sizeof host || port == 0 || port > 65535)
		return hutch_err_set(err, EINVAL, "upstream_dns `%s`: not an address[:port]", text);
	memcpy(host, p, hl);
	host[hl] = '\0';
	struct sockaddr_in *s4 = (struct sockaddr_in *)&u->addr;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&u->addr;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		u->len = sizeof *s4;
		snprintf(u->text, sizeof u->text, "%s:%u", host, port);
	} else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		u->len = sizeof *s6;
		snprintf(u->text, sizeof u->text, "[%s]:%u", host, port);
	} else {
		return hutch_err_set(err, EINVAL, "upstream_dns `%s`: `%s` is not an IP address", text,
				     host);
	}
	return 0;
}

static int upstreams_load(eg_instance_t *in, hutch_err_t *err)
{
	char **list = in->cfg->upstream_dns;
	char **from_resolv = NULL;
	if (!list || !*list) {
		_cleanup_fclose_ FILE *f = fopen("/etc/resolv.conf", "re");
		char line[512];
		while (f && fgets(line, sizeof line, f)) {
			char addr[256];
			if (sscanf(line, " nameserver %255s", addr) == 1)
				strv_push(&from_resolv, xstrdup(addr));
		}
		list = from_resolv;
		if (!list)
			return hutch_err_set(err, EINVAL,
					     "no upstream_dns configured and no nameserver in /etc/resolv.conf");
	}
	int r = 0;
	for (size_t i = 0; list[i]; i++) {
		eg_upstream_t u;
		if ((r = upstream_parse(list[i], &u, err)) < 0)
			break;
		const uint8_t *ip = u.addr.ss_family == AF_INET
					    ? (const uint8_t *)&((struct sockaddr_in *)&u.addr)->sin_addr
					    : (const uint8_t *)&((struct sockaddr_in6 *)&u.addr)->sin6_addr;
		if (eg_pool_slot_of(&in->pool, u.addr.ss_family, ip) >= 0 ||
		    (u.addr.ss_family == AF_INET && memcmp(ip, in->gw4, 4) == 0)) {
			r = hutch_err_set(err, EINVAL, "upstream_dns %s is inside the sandboxes' pool",
					  u.text);
			break;
		}
		in->upstreams = xrealloc(in->upstreams, (in->n_upstreams + 1) * sizeof u);
		in->upstreams[in->n_upstreams++] = u;
	}
	strv_free(from_resolv);
	return r;
}

static int blocked_build(eg_instance_t *in, hutch_err_t *err)
{
	/* ::/96 holds :: and ::1, and the deprecated IPv4-compatible
	 * addresses (::a.b.c.d); ::ffff:0:0/96 the IPv4-mapped ones: neither
	 * is a way to an IPv4 host past its IPv4 denials. */
	static const char *const always[] = {
		"0.0.0.0/8",   "127.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::/96",
		"::ffff:0:0/96", "ff00::/8",  "fe80::/10",
	};
	size_t n = 0, cap = ARRAY_SIZE(always) + strv_len(in->cfg->blocked_cidrs) + 2;
	in->blocked = xcalloc(cap, sizeof *in->blocked);
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		if (eg_cidr_parse(always[i], &in->blocked[n++], err) < 0)
			return -EINVAL;
	for (char **c = in->cfg->blocked_cidrs; c && *c; c++)
		if (eg_cidr_parse(*c, &in->blocked[n++], err) < 0)
			return hutch_err_prefix(err, "blocked_cidrs");
	eg_pool_cidr4(&in->pool, &in->blocked[n++]);
	if (in->pool.has6)
		eg_pool_cidr6(&in->pool, &in->blocked[n++]);
	/* The IPv4 ones hold through NAT64 too: one rule looks the address a
	 * NAT64 prefix embeds up in the IPv4 sets (nft.c). */
	in->n_blocked = eg_cidrs_normalize(in->blocked, n);
	return 0;
}

/* NAT64 prefixes: /96 only, where the IPv4 address is the last 32 bits
 * (RFC 6052's shorter prefixes split it around a reserved octet, which
 * one lookup cannot read); refused rather than left unenforced. */
static int nat64_build(eg_instance_t *in, hutch_err_t *err)
{
	size_t n = strv_len(in->cfg->nat64_prefixes);
	in->nat64 = xcalloc(n + 1, sizeof *in->nat64);
	for (size_t i = 0; i < n; i++) {
		const char *text = in->cfg->nat64_prefixes[i];
		eg_cidr_t *c = &in->nat64[i];
		if (eg_cidr_parse(text, c, err) < 0)
			return hutch_err_prefix(err, "nat64_prefixes");
		if (c->family != AF_INET6 || c->plen != 96)
			return hutch_err_set(err, EINVAL,
					     "nat64_prefixes `%s`: only /96 IPv6 prefixes are supported (list a shorter NAT64 prefix in blocked_cidrs instead)",
					     text);
	}
	in->n_nat64 = eg_cidrs_normalize(in->nat64, n);
	return 0;
}

static void sysctl_on(eg_instance_t *in, const char *path)
{
	char cur[8] = "";
	_cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0 || read(fd, cur, sizeof cur - 1) < 0) {
		in->host->log(in->host, HUTCH_LOG_WARN, "cannot read %s: sandboxes may not reach out",
			      path);
		return;
	}
	if (cur[0] == '1')
		return;
	if (pwrite(fd, "1\n", 2, 0) != 2)
		in->host->log(in->host, HUTCH_LOG_WARN, "cannot turn on %s: %s", path, strerror(errno));
	else
		in->host->log(in->host, HUTCH_LOG_INFO, "turned on %s", path);
}

static int mkdir_one(const char *dir, hutch_err_t *err)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", dir);
	return 0;
}

/* The table from before could not be kept (its sets are of another
 * layout: an older net-egress left it): it is made anew, and the elements
 * of the sandboxes from before put back from their state and what was read
 * of their learned and shunned sets, so they stay confined as before
 * (their traffic is dropped meanwhile, never let through). */
static int table_rebuild(eg_instance_t *in, hutch_err_t *err)
{
	in->host->log(in->host, HUTCH_LOG_WARN,
		      "%s; making the table anew, with the elements of the %zu sandboxes from before",
		      err->message, in->n_sandboxes);
	memset(err, 0, sizeof *err);
	int r = eg_nft_install(in, true, err);
	eg_nfnl_t *nl;
	if (r < 0 || (r = eg_nfnl_get(&in->nl_cache, &nl, err)) < 0)
		return r;
	size_t n;
	eg_sandbox_t **v = eg_registry_list(in, &n);
	for (size_t i = 0; i < n && r == 0; i++)
		r = eg_sets_restore(in, nl, v[i], err);
	eg_registry_list_free(v, n);
	eg_nfnl_put(&in->nl_cache, nl);
	return r;
}

static void instance_free(eg_instance_t *in)
{
	if (!in)
		return;
	eg_dns_stop(in->dns);
	size_t n;
	eg_sandbox_t **v = in->by_slot ? eg_registry_list(in, &n) : NULL;
	if (v) {
		for (size_t i = 0; i < n; i++)
			eg_registry_remove(in, v[i]);
		eg_registry_list_free(v, n);
	}
	free(in->by_slot);
	if (in->host_netns_fd >= 0)
		close(in->host_netns_fd);
	if (in->nflog_fd >= 0)
		close(in->nflog_fd);
	eg_pool_fini(&in->pool);
	free(in->blocked);
	free(in->nat64);
	free(in->upstreams);
	free(in->netns_dir);
	free(in->state_dir);
	eg_nfnl_cache_fini(&in->nl_cache);
	pthread_mutex_destroy(&in->lock);
	free(in);
}

static int egress_init(const hutch_host_t *host, const void *config, void **instance,
		       hutch_err_t *err)
{
	const eg_config_t *c = config;
	if (!host->run_dir)
		return hutch_err_set(err, EINVAL, "the host gave no run_dir");
	eg_instance_t *in = xcalloc(1, sizeof *in);
	in->host = host;
	in->cfg = c;
	in->host_netns_fd = -1;
	in->nflog_fd = -1;
	pthread_mutex_init(&in->lock, NULL);
	eg_nfnl_cache_init(&in->nl_cache);
	int r;
	bool installed = false;
	if (!name_ok(c->interface_prefix, 8, false)) {
		r = hutch_err_set(err, EINVAL, "interface_prefix `%s`: 1-8 of [a-z0-9]",
				  c->interface_prefix ? c->interface_prefix : "");
		goto fail;
	}
	if (!name_ok(c->nft_table, 32, true)) {
		r = hutch_err_set(err, EINVAL, "nft_table `%s`: 1-32 of [a-z0-9_]",
				  c->nft_table ? c->nft_table : "");
		goto fail;
	}
	if (c->router_port <= 0 || c->router_port > 65535 || c->router_port == c->dns_port) {
		r = hutch_err_set(err, EINVAL, "router_port %lld is not a free port",
				  (long long)c->router_port);
		goto fail;
	}
	if (c->dns_port <= 0 || c->dns_port > 65535) {
		r = hutch_err_set(err, EINVAL, "dns_port %lld is not a port", (long long)c->dns_port);
		goto fail;
	}
	if (c->audit_drops && (c->nflog_group < 0 || c->nflog_group > 65535 ||
			       c->audit_drops_rate < 1 || c->audit_drops_rate > 100000)) {
		r = hutch_err_set(err, EINVAL,
				  "nflog_group must be 0-65535 and audit_drops_rate 1-100000");
		goto fail;
	}
	if (c->upstream_timeout_ms <= 0 || c->ttl_min_ms < 0 || c->ttl_max_ms < c->ttl_min_ms) {
		r = hutch_err_set(err, EINVAL,
				  "upstream_timeout must be positive and ttl_min <= ttl_max");
		goto fail;
	}
	snprintf(in->prefix, sizeof in->prefix, "%s", c->interface_prefix);
	snprintf(in->table, sizeof in->table, "%s", c->nft_table);
	in->default_allow = strcmp(c->default_egress, "allow") == 0;
	in->audit_drops = c->audit && c->audit_drops;
	if ((r = eg_pool_init(&in->pool, c->pool, c->pool6, err)) < 0)
		goto fail;
	eg_pool_addr4(&in->pool, 1, in->gw4);
	if (in->pool.has6)
		eg_pool_addr6(&in->pool, 1, in->gw6);
	in->by_slot = xcalloc(in->pool.n_slots, sizeof *in->by_slot);
	if ((r = blocked_build(in, err)) < 0 || (r = nat64_build(in, err)) < 0 ||
	    (r = upstreams_load(in, err)) < 0)
		goto fail;
	in->netns_dir = xasprintf("%s/netns", host->run_dir);
	in->state_dir = xasprintf("%s/sandboxes", host->run_dir);
	if ((r = mkdir_one(in->netns_dir, err)) < 0 || (r = mkdir_one(in->state_dir, err)) < 0)
		goto fail;
	in->host_netns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (in->host_netns_fd < 0) {
		r = hutch_err_sys(err, errno, "open /proc/thread-self/ns/net");
		goto fail;
	}
	if (c->manage_forwarding) {
		sysctl_on(in, "/proc/sys/net/ipv4/ip_forward");
		if (in->pool.has6)
			sysctl_on(in, "/proc/sys/net/ipv6/conf/all/forwarding");
	}
	/* Sandboxes that kept running while hutchd restarted keep their
	 * elements: the table is rebuilt from scratch only without them. */
	eg_state_load_all(in);
	if (in->audit_drops &&
	    (r = eg_nflog_open((uint16_t)c->nflog_group, &in->nflog_fd, err)) < 0) {
		hutch_err_prefix(err, "audit of dropped packets (audit_drops)");
		goto fail;
	}
	if ((r = eg_nft_install(in, in->n_sandboxes == 0, err)) < 0 &&
	    (in->n_sandboxes == 0 || (r = table_rebuild(in, err)) < 0))
		goto fail;
	installed = true;
	hutch_err_t e = {0};
	if (eg_gc_orphans(in, &e) < 0)
		host->log(host, HUTCH_LOG_WARN, "leftovers: %s", e.message);
	if ((r = eg_dns_start(in, &in->dns, err)) < 0)
		goto fail;
	char gw[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, in->gw4, gw, sizeof gw);
	host->log(host, HUTCH_LOG_INFO,
		  "pool %s, resolver %s:%d -> %s%s, table inet %s, default egress %s, %zu sandboxes from before",
		  c->pool, gw, (int)c->dns_port, in->upstreams[0].text, in->n_upstreams > 1 ? ", ..." : "",
		  in->table, c->default_egress, in->n_sandboxes);
	*instance = in;
	return 0;
fail:
	if (installed && in->n_sandboxes == 0) {
		hutch_err_t e2 = {0};
		eg_nft_remove(in, &e2);
	}
	instance_free(in);
	return r;
}

static void egress_fini(void *instance)
{
	eg_instance_t *in = instance;
	eg_dns_stop(in->dns);
	in->dns = NULL;
	/* With sandboxes still attached (a daemon restart), the table stays:
	 * they remain confined meanwhile. */
	if (in->n_sandboxes == 0) {
		hutch_err_t e = {0};
		if (eg_nft_remove(in, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN, "%s", e.message);
	}
	instance_free(in);
}

/* ---- the network ops (lifecycle.c) ---- */

static int egress_attach(void *instance, const hutch_net_attach_t *req,
			 hutch_net_attachment_t *out, hutch_err_t *err)
{
	return eg_attach(instance, req, out, err);
}

static int egress_detach(void *instance, const char *sandbox_id, hutch_err_t *err)
{
	return eg_detach(instance, sandbox_id, err);
}

static int egress_policy_update(void *instance, const char *sandbox_id,
				const hutch_net_policy_t *const *policies, size_t n, bool set,
				hutch_err_t *err)
{
	return eg_policy_update(instance, sandbox_id, policies, n, set, err);
}

static int egress_gc(void *instance, const char *const *live_ids, size_t n, hutch_err_t *err)
{
	return eg_gc(instance, live_ids, n, err);
}

static int egress_policy_validate(void *instance, const hutch_net_policy_t *policy,
				  hutch_err_t *err)
{
	(void)instance;
	hutch_net_policy_t p = {0};
	memcpy(&p, policy, policy->size < sizeof p ? policy->size : sizeof p);
	return eg_policy_validate(&p, err);
}

/* ---- capabilities ---- */

static void egress_capabilities(void *instance, hutch_kv_cb emit, void *data)
{
	eg_instance_t *in = instance;
	char buf[256];
	emit(data, "pool", in->cfg->pool);
	if (in->pool.has6)
		emit(data, "pool6", in->cfg->pool6);
	inet_ntop(AF_INET, in->gw4, buf, sizeof buf);
	size_t n = strlen(buf);
	snprintf(buf + n, sizeof buf - n, ":%d", (int)in->cfg->dns_port);
	emit(data, "resolver", buf);
	strbuf_t up = STRBUF_INIT;
	for (size_t i = 0; i < in->n_upstreams; i++)
		sb_printf(&up, "%s%s", i ? "," : "", in->upstreams[i].text);
	emit(data, "upstream_dns", up.buf ? up.buf : "");
	sb_free(&up);
	snprintf(buf, sizeof buf, "inet %s", in->table);
	emit(data, "nft_table", buf);
	emit(data, "enforcement", "host nftables, drop (no reject)");
	emit(data, "default_egress", in->cfg->default_egress);
	emit(data, "disallowed_names", in->cfg->disallowed_names);
	if (in->cfg->router_domain && in->cfg->router_domain[0]) {
		inet_ntop(AF_INET, in->gw4, buf, sizeof buf);
		n = strlen(buf);
		snprintf(buf + n, sizeof buf - n, ":%d (*.%s)", (int)in->cfg->router_port,
			 in->cfg->router_domain);
		emit(data, "router", buf);
	}
	emit(data, "nat", in->cfg->nat ? in->cfg->uplink : "off");
	emit(data, "audit", !in->cfg->audit ? "off"
			    : in->audit_drops ? "resolver decisions and dropped packets"
					      : "resolver decisions");
}

static const hutch_network_ops_t egress_ops = {
	.size = sizeof(hutch_network_ops_t),
	.attach = egress_attach,
	.detach = egress_detach,
	.policy_update = egress_policy_update,
	.policy_validate = egress_policy_validate,
	.gc = egress_gc,
	.capabilities = egress_capabilities,
};

static const hutch_plugin_t egress_plugin = {
	.size = sizeof(hutch_plugin_t),
	.abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR,
	.kind = HUTCH_PLUGIN_NETWORK,
	.name = EG_PLUGIN_NAME,
	.version = EG_PLUGIN_VERSION,
	.description = "per-sandbox network namespace and veth, egress policy by hostname and CIDR "
		       "enforced in host nftables, with its own resolver",
	.config = config_fields,
	.config_size = sizeof(eg_config_t),
	.init = egress_init,
	.fini = egress_fini,
	.ops = &egress_ops,
};

HUTCH_PLUGIN_DEFINE(egress_plugin)
