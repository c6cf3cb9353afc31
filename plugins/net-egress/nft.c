/*
 * nft.c: the structure of net-egress's nftables table, written through
 * libnftables at init. One table (inet <nft_table>) serves every sandbox;
 * its chains and rules never change after init, and a sandbox is only set
 * elements keyed by its host interface's name (sets.c). The packet path:
 *
 *   prerouting  (priority raw) from a sandbox interface: a source address
 *               that is not the sandbox's own (src4/src6) is dropped; from
 *               any other interface, a source in the pools is dropped; so
 *               the resolver can trust a query's source address.
 *   input       from a sandbox interface: only DNS to the gateway
 *               address (and IPv6 neighbour discovery); the host's other
 *               services are out of reach.
 *   forward     from a sandbox interface, sandbox_egress decides, in this
 *               order: replies of allowed connections pass; DNS/DoT to
 *               anyone but the resolver, the blocked ranges (the pools,
 *               i.e. other sandboxes; link-local and metadata; multicast;
 *               blocked_cidrs), the sandbox's denied prefixes and the
 *               addresses answered for its denied names are dropped, and
 *               each IPv4 one also through NAT64 (sandbox_nat64); then
 *               allow-all sandboxes (open), allowed prefixes and the
 *               addresses answered for allowed names pass; everything
 *               else is dropped. Toward a sandbox interface only replies
 *               pass: nothing opens a connection into a sandbox.
 *   postrouting masquerade of the pools toward the uplink, if nat is on.
 *
 * Every drop of a sandbox's packet goes through sandbox_drop, which counts
 * it in the sandbox's counter (drop_counters maps interface to counter),
 * hands the first few per second and sandbox to the audit through NFLOG
 * (the reason in the packet's mark, see nflog.c), and drops silently: no
 * RST, no ICMP, so a sandbox sees a timeout and learns nothing of the
 * policy.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <nftables/libnftables.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "egress.h"

/* An IPv4 packet's destination, and the IPv4 address in the last 32 bits
 * of an IPv6 destination, as raw payloads (bits of the network header). */
#define V4_DST "@nh,128,32"
#define NAT64_V4 "@nh,288,32"

/* "add element inet T set { a, b }" for the prefixes of family, if any.
 * IPv4 ones are written as ranges of integers: the IPv4 sets hold the
 * 32 bits of a raw payload (see ruleset()). */
static void element_cmd(strbuf_t *b, const char *table, const char *set, const eg_cidr_t *v,
			size_t n, int family)
{
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		if (v[i].family != family)
			continue;
		char c[64];
		if (family == AF_INET) {
			uint8_t last[16];
			eg_cidr_last(&v[i], last);
			snprintf(c, sizeof c, "0x%02x%02x%02x%02x-0x%02x%02x%02x%02x", v[i].addr[0],
				 v[i].addr[1], v[i].addr[2], v[i].addr[3], last[0], last[1], last[2],
				 last[3]);
		} else {
			eg_cidr_format(&v[i], c, sizeof c);
		}
		if (!any)
			sb_printf(b, "add element inet %s %s { ", table, set);
		sb_printf(b, "%s%s", any ? ", " : "", c);
		any = true;
	}
	if (any)
		sb_append(b, " }\n");
}

static void ruleset(const eg_instance_t *in, bool fresh, strbuf_t *b)
{
	const eg_config_t *c = in->cfg;
	const char *t = in->table;
	char ifs[32], gw4[INET_ADDRSTRLEN], gw6[INET6_ADDRSTRLEN], pool4[64], pool6[64];
	snprintf(ifs, sizeof ifs, "\"%s*\"", in->prefix);
	inet_ntop(AF_INET, in->gw4, gw4, sizeof gw4);
	inet_ntop(AF_INET6, in->gw6, gw6, sizeof gw6);
	eg_cidr_t pc;
	eg_pool_cidr4(&in->pool, &pc);
	eg_cidr_format(&pc, pool4, sizeof pool4);
	if (in->pool.has6) {
		eg_pool_cidr6(&in->pool, &pc);
		eg_cidr_format(&pc, pool6, sizeof pool6);
	}

	sb_printf(b, "add table inet %s\n", t);
	if (fresh)
		sb_printf(b, "delete table inet %s\nadd table inet %s\n", t, t);
	static const char *const chains[] = {"prerouting",     "input",         "forward",
					     "postrouting",    "sandbox_input", "sandbox_egress",
					     "sandbox_nat64", "sandbox_drop"};
	/* The sets of IPv4 denials (blocked4, deny4, shunned4) hold the 32
	 * bits of a raw payload rather than an ipv4_addr: the same sets are
	 * then looked up with an IPv4 packet's destination (@nh,128,32) and
	 * with the last 32 bits of an IPv6 destination inside a NAT64 prefix
	 * (@nh,288,32), so every IPv4 denial holds through NAT64 by one rule
	 * each, with no copy of any element. */
	sb_printf(b,
		  "add set inet %s blocked4 { typeof %s; flags interval; auto-merge; }\n"
		  "add set inet %s blocked6 { type ipv6_addr; flags interval; auto-merge; }\n"
		  "add set inet %s %s { type ipv6_addr; flags interval; }\n",
		  t, V4_DST, t, t, EG_SET_NAT64);
	static const struct {
		const char *name, *key, *flags;
	} sets[] = {
		{EG_SET_SRC4, "type ifname . ipv4_addr", NULL},
		{EG_SET_SRC6, "type ifname . ipv6_addr", NULL},
		{EG_SET_OPEN, "type ifname", NULL},
		{EG_SET_ALLOW4, "type ifname . ipv4_addr", "interval"},
		{EG_SET_ALLOW6, "type ifname . ipv6_addr", "interval"},
		{EG_SET_DENY4, "typeof iifname . " V4_DST, "interval"},
		{EG_SET_DENY6, "type ifname . ipv6_addr", "interval"},
		{EG_SET_LEARNED4, "type ifname . ipv4_addr", "timeout"},
		{EG_SET_LEARNED6, "type ifname . ipv6_addr", "timeout"},
		{EG_SET_SHUNNED4, "typeof iifname . " V4_DST, "timeout"},
		{EG_SET_SHUNNED6, "type ifname . ipv6_addr", "timeout"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(sets); i++)
		sb_printf(b, "add set inet %s %s { %s;%s%s%s }\n", t, sets[i].name, sets[i].key,
			  sets[i].flags ? " flags " : "", sets[i].flags ? sets[i].flags : "",
			  sets[i].flags ? ";" : "");
	sb_printf(b, "add map inet %s %s { type ifname : counter; }\n", t, EG_MAP_COUNTERS);
	sb_printf(b,
		  "add set inet %s %s { type ifname; flags dynamic,timeout; timeout 1m; size 65536; }\n",
		  t, EG_SET_AUDIT_RATE);
	sb_printf(b,
		  "add chain inet %s prerouting { type filter hook prerouting priority raw; policy accept; }\n"
		  "add chain inet %s input { type filter hook input priority filter; policy accept; }\n"
		  "add chain inet %s forward { type filter hook forward priority filter; policy accept; }\n"
		  "add chain inet %s postrouting { type nat hook postrouting priority srcnat; policy accept; }\n"
		  "add chain inet %s sandbox_input\n"
		  "add chain inet %s sandbox_egress\n"
		  "add chain inet %s sandbox_nat64\n"
		  "add chain inet %s sandbox_drop\n",
		  t, t, t, t, t, t, t, t);
	for (size_t i = 0; i < ARRAY_SIZE(chains); i++)
		sb_printf(b, "flush chain inet %s %s\n", t, chains[i]);
	sb_printf(b, "flush set inet %s blocked4\nflush set inet %s blocked6\nflush set inet %s %s\n",
		  t, t, t, EG_SET_NAT64);
	element_cmd(b, t, "blocked4", in->blocked, in->n_blocked, AF_INET);
	element_cmd(b, t, "blocked6", in->blocked, in->n_blocked, AF_INET6);
	element_cmd(b, t, EG_SET_NAT64, in->nat64, in->n_nat64, AF_INET6);

	/* Each drop says why in the packet's mark, for the audit (nflog.c);
	 * the packet is dropped right after, so the mark goes nowhere else. */
	char why[EG_DROP_REASONS][40];
	for (int r = 0; r < EG_DROP_REASONS; r++) {
		if (in->audit_drops && r)
			snprintf(why[r], sizeof why[r], "meta mark set 0x%08x ", EG_DROP_MARK(r));
		else
			why[r][0] = '\0';
	}
	/* prerouting: a sandbox speaks only from its own addresses, and only a
	 * sandbox speaks from a sandbox's address (the resolver trusts a
	 * query's source). */
	sb_printf(b,
		  "add rule inet %s prerouting iifname %s meta nfproto ipv4 iifname . ip saddr != @%s %sgoto sandbox_drop\n"
		  "add rule inet %s prerouting iifname %s meta nfproto ipv6 ip6 saddr != { ::, fe80::/10 } iifname . ip6 saddr != @%s %sgoto sandbox_drop\n"
		  "add rule inet %s prerouting iifname != %s ip saddr %s ip saddr != %s drop\n",
		  t, ifs, EG_SET_SRC4, why[EG_DROP_SPOOFED], t, ifs, EG_SET_SRC6,
		  why[EG_DROP_SPOOFED], t, ifs, pool4, gw4);
	if (in->pool.has6)
		sb_printf(b, "add rule inet %s prerouting iifname != %s ip6 saddr %s ip6 saddr != %s drop\n",
			  t, ifs, pool6, gw6);
	/* input: the resolver on the gateway, nothing else of the host. */
	sb_printf(b, "add rule inet %s input iifname %s goto sandbox_input\n", t, ifs);
	sb_printf(b, "add rule inet %s sandbox_input ct state established,related accept\n", t);
	sb_printf(b,
		  "add rule inet %s sandbox_input ip daddr %s meta l4proto { tcp, udp } th dport %d accept\n",
		  t, gw4, (int)c->dns_port);
	if (in->pool.has6)
		sb_printf(b,
			  "add rule inet %s sandbox_input ip6 daddr %s meta l4proto { tcp, udp } th dport %d accept\n",
			  t, gw6, (int)c->dns_port);
	/* hutchd's router, when its names are served (router_names.c). */
	if (c->router_domain && c->router_domain[0])
		sb_printf(b, "add rule inet %s sandbox_input ip daddr %s tcp dport %d accept\n", t,
			  gw4, (int)c->router_port);
	/* IPv6 needs neighbour discovery with the gateway; its multicast
	 * listener reports and router solicitations go nowhere, unaudited. */
	sb_printf(b,
		  "add rule inet %s sandbox_input icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n"
		  "add rule inet %s sandbox_input icmpv6 type { mld-listener-report, mld2-listener-report, mld-listener-done, nd-router-solicit } drop\n"
		  "add rule inet %s sandbox_input %sgoto sandbox_drop\n",
		  t, t, t, why[EG_DROP_HOST]);
	/* forward; nothing opens a connection into a sandbox. */
	sb_printf(b,
		  "add rule inet %s forward iifname %s goto sandbox_egress\n"
		  "add rule inet %s forward oifname %s ct state established,related accept\n"
		  "add rule inet %s forward oifname %s drop\n",
		  t, ifs, t, ifs, t, ifs);
	sb_printf(b,
		  "add rule inet %s sandbox_egress ct state established,related accept\n"
		  "add rule inet %s sandbox_egress ct state invalid %sgoto sandbox_drop\n"
		  "add rule inet %s sandbox_egress meta l4proto { tcp, udp } th dport { 53, 853 } %sgoto sandbox_drop\n"
		  "add rule inet %s sandbox_egress meta nfproto ipv4 %s @blocked4 %sgoto sandbox_drop\n"
		  "add rule inet %s sandbox_egress ip6 daddr @blocked6 %sgoto sandbox_drop\n"
		  "add rule inet %s sandbox_egress ip6 daddr @%s jump sandbox_nat64\n",
		  t, t, why[EG_DROP_INVALID], t, why[EG_DROP_DNS], t, V4_DST, why[EG_DROP_BLOCKED], t,
		  why[EG_DROP_BLOCKED], t, EG_SET_NAT64);
	static const char *const deny_sets[] = {EG_SET_DENY4, EG_SET_DENY6, EG_SET_SHUNNED4,
						EG_SET_SHUNNED6};
	for (size_t i = 0; i < ARRAY_SIZE(deny_sets); i++)
		sb_printf(b, "add rule inet %s sandbox_egress %s @%s %sgoto sandbox_drop\n", t,
			  i % 2 ? "iifname . ip6 daddr" : "meta nfproto ipv4 iifname . " V4_DST,
			  deny_sets[i], why[EG_DROP_DENIED]);
	/* Through NAT64: the IPv4 address the destination embeds meets every
	 * IPv4 denial. Only jumped to for an IPv6 destination in a NAT64
	 * prefix, so the last 32 bits of the destination are that address. */
	sb_printf(b,
		  "add rule inet %s sandbox_nat64 " NAT64_V4 " @blocked4 %sgoto sandbox_drop\n"
		  "add rule inet %s sandbox_nat64 iifname . " NAT64_V4 " @%s %sgoto sandbox_drop\n"
		  "add rule inet %s sandbox_nat64 iifname . " NAT64_V4 " @%s %sgoto sandbox_drop\n",
		  t, why[EG_DROP_BLOCKED], t, EG_SET_DENY4, why[EG_DROP_DENIED], t, EG_SET_SHUNNED4,
		  why[EG_DROP_DENIED]);
	sb_printf(b, "add rule inet %s sandbox_egress iifname @%s accept\n", t, EG_SET_OPEN);
	static const char *const allow_sets[] = {EG_SET_ALLOW4, EG_SET_ALLOW6, EG_SET_LEARNED4,
						 EG_SET_LEARNED6};
	for (size_t i = 0; i < ARRAY_SIZE(allow_sets); i++)
		sb_printf(b, "add rule inet %s sandbox_egress iifname . %s daddr @%s accept\n", t,
			  i % 2 ? "ip6" : "ip", allow_sets[i]);
	sb_printf(b, "add rule inet %s sandbox_egress %sgoto sandbox_drop\n", t,
		  why[EG_DROP_NOT_ALLOWED]);
	/* Every packet a sandbox sent that is dropped is counted in its
	 * counter; the first few per second of each sandbox are also sent to
	 * the audit (nflog.c), which names them. */
	sb_printf(b, "add rule inet %s sandbox_drop counter name iifname map @%s\n", t,
		  EG_MAP_COUNTERS);
	if (in->audit_drops)
		sb_printf(b,
			  "add rule inet %s sandbox_drop update @%s { iifname limit rate %lld/second burst %lld packets } log group %d\n",
			  t, EG_SET_AUDIT_RATE, (long long)c->audit_drops_rate,
			  (long long)c->audit_drops_rate * 2, (int)c->nflog_group);
	sb_printf(b, "add rule inet %s sandbox_drop drop\n", t);
	if (c->nat) {
		bool autolink = !c->uplink || !*c->uplink || strcmp(c->uplink, "auto") == 0;
		_cleanup_free_ char *out = autolink ? xasprintf("oifname != %s", ifs)
						    : xasprintf("oifname \"%s\"", c->uplink);
		sb_printf(b, "add rule inet %s postrouting ip saddr %s %s masquerade\n", t, pool4, out);
		if (in->pool.has6)
			sb_printf(b, "add rule inet %s postrouting ip6 saddr %s %s masquerade\n", t, pool6,
				  out);
	}
}

static int nft_run(const char *cmds, hutch_err_t *err)
{
	struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
	if (!ctx)
		return hutch_err_set(err, ENOMEM, "libnftables: no context");
	nft_ctx_buffer_output(ctx);
	nft_ctx_buffer_error(ctx);
	int r = nft_run_cmd_from_buffer(ctx, cmds);
	int ret = 0;
	if (r != 0) {
		const char *e = nft_ctx_get_error_buffer(ctx);
		/* The first line says what; the rest quotes the command. */
		size_t n = e ? strcspn(e, "\n") : 0;
		ret = hutch_err_set(err, EINVAL, "nftables: %.*s", (int)(n > 600 ? 600 : n),
				    e && n ? e : "command failed");
	}
	nft_ctx_free(ctx);
	return ret;
}

int eg_nft_install(eg_instance_t *in, bool fresh, hutch_err_t *err)
{
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	ruleset(in, fresh, &b);
	int r = nft_run(b.buf, err);
	if (r < 0)
		return hutch_err_prefix(err, "table inet %s", in->table);
	return 0;
}

int eg_nft_remove(eg_instance_t *in, hutch_err_t *err)
{
	_cleanup_free_ char *cmd = xasprintf("add table inet %s\ndelete table inet %s\n", in->table,
					      in->table);
	int r = nft_run(cmd, err);
	if (r < 0)
		return hutch_err_prefix(err, "remove table inet %s", in->table);
	return 0;
}
