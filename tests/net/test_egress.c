/*
 * test_egress.c: net-egress against the real kernel, a real dnsmasq and
 * real servers, all in namespaces the test process makes (see
 * net_harness.h). `test_egress CASE` runs one case; CTest runs each as its
 * own test, in parallel.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "metrics.h"
#include "net_harness.h"

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static egress_t g_eg;

static void start(const char *extra_config)
{
	world_setup(60);
	egress_load(&g_eg, extra_config);
}

static void expect_error(int r, const hutch_err_t *e, int code, const char *needle)
{
	CHECK(r == -code, "expected -%d (%s), got %d: %s", code, strerror(code), r, e->message);
	CHECK(strstr(e->message, needle), "error `%s` should mention `%s`", e->message, needle);
}

/* ---- names ---- */

static void case_allowed_name(void)
{
	start(NULL);
	policy_spec_t p = {.name = "web", .allow_hosts = LIST("allowed.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	expect_dropped(&sb, IP_ALLOWED, "before any lookup");
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_connects(&sb, IP_ALLOWED, "after the lookup");
	expect_udp_echo(&sb, IP_ALLOWED, "UDP to an answered address");
	expect_ping(&sb, IP_ALLOWED, "ICMP to an answered address");
	/* The same over TCP DNS. */
	char out[4][64];
	int rcode;
	CHECK(sandbox_resolve(&sb, "allowed.test", 1, true, out, 4, &rcode) >= 1 &&
		      strcmp(out[0], IP_ALLOWED) == 0,
	      "TCP lookup of allowed.test");
	/* A name the sandbox may not reach is still answered (disallowed_names
	 * = forward) but its address stays closed. */
	expect_resolves(&sb, "other.test", IP_OTHER);
	expect_dropped(&sb, IP_OTHER, "an unlisted name");
	expect_udp_dropped(&sb, IP_OTHER, "UDP to an unlisted name");
	expect_ping_dropped(&sb, IP_OTHER, "ICMP to an unlisted name");
	sandbox_detach(&g_eg, &sb);
}

static void case_wildcard(void)
{
	start(NULL);
	/* Upper case and a trailing dot in the pattern do not matter. */
	policy_spec_t p = {.name = "wild", .allow_hosts = LIST("*.ALLOWED.test.")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	expect_resolves(&sb, "a.allowed.test", IP_A_ALLOWED);
	expect_connects(&sb, IP_A_ALLOWED, "a.allowed.test matches *.allowed.test");
	/* Nor in the question. */
	expect_resolves(&sb, "B.Allowed.TEST", IP_B_ALLOWED);
	expect_connects(&sb, IP_B_ALLOWED, "B.Allowed.TEST matches *.allowed.test");
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_dropped(&sb, IP_ALLOWED, "allowed.test is not a subdomain of itself");
	expect_resolves(&sb, "a.allowed.test.evil", IP_EVIL);
	expect_dropped(&sb, IP_EVIL, "a.allowed.test.evil is not under allowed.test");
	/* Every address of an answer is open, and only once it was answered. */
	char out[N_MANY][64];
	int rcode;
	int n = sandbox_resolve(&sb, "many.allowed.test", 1, false, out, N_MANY, &rcode);
	CHECK(n == N_MANY, "many.allowed.test: %d addresses (rcode %d)", n, rcode);
	for (int i = 0; i < n; i++)
		CHECK(sandbox_tcp(&sb, out[i], 1000) == 0, "connect to %s at once after its answer",
		      out[i]);
	sandbox_detach(&g_eg, &sb);
}

static void case_denied_silent(void)
{
	start(NULL);
	/* denied.test is both allowed (by name) and denied: the deny wins. */
	policy_spec_t p[2] = {
		{.name = "allow", .allow_hosts = LIST("*.allowed.test", "denied.test")},
		{.name = "deny", .deny_hosts = LIST("denied.test")},
	};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, p, 2, true);
	expect_resolves(&sb, "denied.test", IP_DENIED);
	probe_t pr = {.kind = PROBE_TCP, .addr = IP_DENIED, .port = 80, .timeout_ms = 3000,
		      .capture = true};
	sandbox_probe(&sb, &pr);
	CHECK(pr.error == ETIMEDOUT && pr.elapsed_ms >= 2900,
	      "a denied name's connection must time out (got %s after %lld ms)",
	      pr.error ? strerror(pr.error) : "a connection", (long long)pr.elapsed_ms);
	CHECK(pr.rst_seen == 0 && pr.icmp_seen == 0, "saw %d RST and %d ICMP", pr.rst_seen,
	      pr.icmp_seen);
	expect_udp_dropped(&sb, IP_DENIED, "UDP to a denied name");
	expect_ping_dropped(&sb, IP_DENIED, "ICMP to a denied name");
	/* Other ports and protocols of an allowed name are open. */
	expect_resolves(&sb, "a.allowed.test", IP_A_ALLOWED);
	expect_udp_echo(&sb, IP_A_ALLOWED, "UDP to an allowed name");
	sandbox_detach(&g_eg, &sb);
}

static void case_literal_ip(void)
{
	start("pool6 = \"fd00:6567::/112\"");
	/* Open, and a prefix holding the denied host allowed too, but the
	 * host is denied by name: the sandbox never asks for the name, and its
	 * address is dropped all the same, however it is written. */
	policy_spec_t p = {
		.name = "open-but",
		.allow_all = true,
		.allow_cidrs = LIST("198.18.1.0/24", "2001:db8:1::/64"),
		.deny_hosts = LIST("denied.test"),
	};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	expect_connects(&sb, IP_ALLOWED, "an address in no deny");
	static const char *const forms[] = {
		IP_DENIED,          "::ffff:198.18.1.20", "::ffff:c612:114", "3323068692",
		"0306.022.01.024",  "0xc6120114",         "0xc6.0x12.0x1.0x14", "198.18.276",
	};
	for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++)
		expect_dropped(&sb, forms[i], forms[i]);
	expect_connects(&sb, IP6_ALLOWED, "an IPv6 address in no deny");
	expect_dropped(&sb, IP6_DENIED, "the denied host's IPv6 address");
	expect_dropped(&sb, "64:ff9b::a9fe:a9fe", "the metadata address through NAT64");
	expect_dropped(&sb, "fd00:ec2::254", "the IPv6 metadata address");
	const char *needles[] = {"\"event\":\"egress.drop\"", "\"address\":\"" IP_DENIED "\"",
				 "\"reason\":\"denied\"", "\"name\":\"denied.test\"", NULL};
	char *line = audit_grep(2000, needles);
	CHECK(line, "the drop of the literal address names the denied host");
	free(line);
	/* A name denied later: its address closes within a lookup's time. */
	expect_connects(&sb, IP_OTHER, "before other.test is denied");
	policy_spec_t more[2] = {p, {.name = "no-other", .deny_hosts = LIST("other.test")}};
	sandbox_update(&g_eg, &sb, more, 2, true);
	int64_t t0 = now_us();
	while (sandbox_tcp(&sb, IP_OTHER, 200) == 0 && now_us() - t0 < 3000000)
		usleep(20000);
	expect_dropped(&sb, IP_OTHER, "other.test's address, once other.test is denied");
	/* Denied prefixes, in both families. */
	policy_spec_t cidr = {.name = "cidr", .allow_all = true,
			      .deny_cidrs = LIST("198.18.1.80/32", "2001:db8:1::10/128")};
	sandbox_update(&g_eg, &sb, &cidr, 1, true);
	expect_dropped(&sb, IP_OTHER, "a denied IPv4 prefix");
	expect_dropped(&sb, "::ffff:198.18.1.80", "a denied IPv4 prefix, v4-mapped");
	expect_dropped(&sb, IP6_ALLOWED, "a denied IPv6 prefix");
	expect_connects(&sb, IP_DENIED, "denied.test is not denied any more");
	sandbox_detach(&g_eg, &sb);

	/* A hostname policy: an address never answered is dropped, whatever
	 * the client thinks its name is. */
	policy_spec_t h = {.name = "names", .allow_hosts = LIST("allowed.test")};
	sandbox_attach(&g_eg, &sb, NULL, &h, 1, true);
	expect_dropped(&sb, IP_NEVER, "an address no answer gave");
	expect_dropped(&sb, IP6_NEVER, "an IPv6 address no answer gave");
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_dropped(&sb, IP_NEVER, "still, after another name's answer");
	expect_dropped(&sb, IP_A_ALLOWED, "a neighbour of an answered address");
	sandbox_detach(&g_eg, &sb);
}

static void case_cname(void)
{
	start(NULL);
	policy_spec_t p = {
		.name = "cn",
		.allow_hosts = LIST("*.allowed.test"),
		.deny_hosts = LIST("denied.test"),
		.deny_cidrs = LIST(IP_CIDR_TARGET "/32"),
	};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	/* cname.allowed.test -> denied.test (a denied name). */
	expect_resolves(&sb, "cname.allowed.test", IP_DENIED);
	expect_dropped(&sb, IP_DENIED, "a CNAME of an allowed name to a denied name");
	/* cname2.allowed.test -> cidr-target.test, in a denied prefix. */
	expect_resolves(&sb, "cname2.allowed.test", IP_CIDR_TARGET);
	expect_dropped(&sb, IP_CIDR_TARGET, "a CNAME of an allowed name to a denied address");
	/* cname3.allowed.test -> ok-target.test: the allowed name decides. */
	expect_resolves(&sb, "cname3.allowed.test", IP_OK_TARGET);
	expect_connects(&sb, IP_OK_TARGET, "a CNAME of an allowed name to an unlisted one");
	/* Asking the target's own name opens nothing. */
	expect_resolves(&sb, "cidr-target.test", IP_CIDR_TARGET);
	expect_dropped(&sb, IP_CIDR_TARGET, "the denied address by its own name");
	const char *needles[] = {"\"egress.dns\"", "cname.allowed.test", "\"denied_cname\":\"denied.test\"",
				 NULL};
	char *line = audit_grep(2000, needles);
	CHECK(line, "no audit line names the denied CNAME");
	free(line);
	sandbox_detach(&g_eg, &sb);
}

static void case_changing_answer(void)
{
	world_setup(1); /* dnsmasq's answers live 1 s */
	egress_load(&g_eg, "ttl_min = \"1s\"");
	policy_spec_t p = {.name = "ch", .allow_hosts = LIST("changing.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	expect_resolves(&sb, "changing.test", IP_CHANGING_1);
	expect_connects(&sb, IP_CHANGING_1, "the first answer");
	expect_dropped(&sb, IP_CHANGING_2, "the address of the next answer, not given yet");
	world_change_answer();
	expect_resolves(&sb, "changing.test", IP_CHANGING_2);
	expect_connects(&sb, IP_CHANGING_2, "the second answer");
	expect_dropped(&sb, IP_NEVER, "an address neither answer gave");
	/* The first answer's address expires with its TTL (ttl_min 1 s). */
	usleep(2500 * 1000);
	expect_dropped(&sb, IP_CHANGING_1, "the first answer, expired");
	sandbox_detach(&g_eg, &sb);
}

/* ---- NAT ---- */

/* The peer sees the host's uplink address with nat (the default), the
 * sandbox's own without (I routes the pool back through H). */
static void case_nat(void)
{
	start("uplink = \"up0\"");
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, NULL, 0, false);
	probe_t p = {.kind = PROBE_TCP, .addr = IP_OTHER, .port = 80, .timeout_ms = 2000};
	sandbox_probe(&sb, &p);
	CHECK(p.error == 0 && strstr(p.reply, "from " IP_HOST_UPLINK), "with nat: %s", p.reply);
	sandbox_detach(&g_eg, &sb);
	egress_unload(&g_eg);
	egress_load(&g_eg, "nat = false");
	sandbox_attach(&g_eg, &sb, NULL, NULL, 0, false);
	probe_t q = {.kind = PROBE_TCP, .addr = IP_OTHER, .port = 80, .timeout_ms = 2000};
	sandbox_probe(&sb, &q);
	char want[96];
	snprintf(want, sizeof want, "from %s\n", sb.addr);
	CHECK(q.error == 0 && strstr(q.reply, want), "without nat: %s", q.reply);
	sandbox_detach(&g_eg, &sb);
}

/* ---- isolation ---- */

static void case_isolation(void)
{
	start(NULL);
	/* Unrestricted egress (no policy, the default is allow), two
	 * sandboxes of the same tenant. */
	sandbox_t a, b;
	sandbox_attach(&g_eg, &a, "tenant-a", NULL, 0, false);
	sandbox_attach(&g_eg, &b, "tenant-a", NULL, 0, false);
	expect_connects(&a, IP_OTHER, "the default allows egress");
	/* b serves on its own address; a cannot reach it, b can. */
	tcp_server_t *in_b = tcp_server_start(b.nsfd, b.addr, 80);
	expect_connects(&b, b.addr, "b's own server, from b");
	expect_dropped(&a, b.addr, "sandbox to sandbox");
	expect_ping_dropped(&a, b.addr, "ICMP sandbox to sandbox");
	tcp_server_stop(in_b);
	/* The host's services: on the uplink address, on the gateway and on
	 * loopback (which is the sandbox's own loopback, not the host's). */
	tcp_server_t *host = tcp_server_start(-1, "0.0.0.0", 80);
	expect_dropped(&a, IP_HOST_UPLINK, "the host's address");
	expect_dropped(&a, a.dns, "the gateway (the host) on another port than DNS");
	expect_ping_dropped(&a, a.dns, "ICMP to the host");
	CHECK(sandbox_tcp(&a, "127.0.0.1", 1000) == ECONNREFUSED,
	      "127.0.0.1 in a sandbox is its own loopback");
	tcp_server_stop(host);
	/* Link-local and metadata, with or without a policy that names them. */
	expect_dropped(&a, IP_METADATA, "the metadata address");
	expect_dropped(&a, "169.254.1.1", "link-local");
	policy_spec_t p = {.name = "ll", .allow_all = true, .allow_cidrs = LIST("169.254.0.0/16")};
	sandbox_update(&g_eg, &a, &p, 1, true);
	expect_dropped(&a, IP_METADATA, "the metadata address, even when a policy allows it");
	/* A metadata endpoint local to the sandbox (what the runtime puts on
	 * its loopback) is reached, and never leaves the namespace. */
	netns_add_lo_addr(a.nsfd, IP_METADATA);
	tcp_server_t *meta = tcp_server_start(a.nsfd, IP_METADATA, 80);
	expect_connects(&a, IP_METADATA, "the sandbox's own metadata endpoint");
	tcp_server_stop(meta);
	/* DNS goes to hutchd's resolver only: not to another server, not over
	 * TLS, not even to the upstream itself. */
	probe_t dns = {.kind = PROBE_UDP, .addr = IP_DNS_UPSTREAM, .port = 53, .timeout_ms = 1000};
	sandbox_probe(&a, &dns);
	CHECK(dns.error == ETIMEDOUT, "UDP DNS to the upstream directly: %s",
	      dns.error ? strerror(dns.error) : "answered");
	probe_t dot = {.kind = PROBE_TCP, .addr = IP_OTHER, .port = 853, .timeout_ms = 1000};
	sandbox_probe(&a, &dot);
	CHECK(dot.error == ETIMEDOUT, "DNS over TLS: %s", dot.error ? strerror(dot.error) : "connected");
	sandbox_detach(&g_eg, &a);
	sandbox_detach(&g_eg, &b);
}

static void case_udp(void)
{
	start(NULL);
	policy_spec_t p = {.name = "u", .allow_hosts = LIST("a.allowed.test"),
			   .allow_cidrs = LIST("198.18.1.80/32"), .deny_hosts = LIST("denied.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	expect_udp_dropped(&sb, IP_A_ALLOWED, "UDP before the lookup");
	expect_resolves(&sb, "a.allowed.test", IP_A_ALLOWED);
	expect_udp_echo(&sb, IP_A_ALLOWED, "UDP to an allowed name");
	expect_udp_echo(&sb, IP_OTHER, "UDP to an allowed prefix");
	expect_resolves(&sb, "denied.test", IP_DENIED);
	expect_udp_dropped(&sb, IP_DENIED, "UDP to a denied name");
	expect_udp_dropped(&sb, IP_NEVER, "UDP to an address never answered");
	sandbox_detach(&g_eg, &sb);
}

/* ---- policy changes ---- */

static void case_policy_update(void)
{
	start(NULL);
	policy_spec_t names = {.name = "names", .allow_hosts = LIST("allowed.test")};
	policy_spec_t open = {.name = "open", .allow_all = true};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &names, 1, true);
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_connects(&sb, IP_ALLOWED, "allowed by name");
	expect_dropped(&sb, IP_OTHER, "not allowed yet");
	/* Open it (for setup)... */
	sandbox_update(&g_eg, &sb, &open, 1, true);
	expect_resolves(&sb, "other.test", IP_OTHER);
	expect_connects(&sb, IP_OTHER, "after opening");
	expect_connects(&sb, IP_NEVER, "after opening, any address");
	/* ... and lock it down to nothing. */
	sandbox_update(&g_eg, &sb, NULL, 0, true);
	expect_dropped(&sb, IP_OTHER, "bound to no policy");
	expect_dropped(&sb, IP_ALLOWED, "bound to no policy, an address learned before");
	/* A name allowed now gets what was answered for it before, while it
	 * was open, without a new lookup; nothing else opens. */
	policy_spec_t other = {.name = "other", .allow_hosts = LIST("other.test")};
	sandbox_update(&g_eg, &sb, &other, 1, true);
	expect_connects(&sb, IP_OTHER, "answered while open, allowed now");
	expect_dropped(&sb, IP_NEVER, "an address no answer gave, after the setup");
	expect_dropped(&sb, IP_ALLOWED, "answered for a name not allowed now");
	sandbox_update(&g_eg, &sb, &names, 1, true);
	expect_connects(&sb, IP_ALLOWED, "allowed by name again");
	expect_dropped(&sb, IP_OTHER, "its name is not allowed any more");
	/* A change that drops one name keeps what another still allows. */
	policy_spec_t two = {.name = "two", .allow_hosts = LIST("allowed.test", "a.allowed.test")};
	sandbox_update(&g_eg, &sb, &two, 1, true);
	expect_resolves(&sb, "a.allowed.test", IP_A_ALLOWED);
	expect_connects(&sb, IP_A_ALLOWED, "the second name");
	policy_spec_t one = {.name = "one", .allow_hosts = LIST("a.allowed.test")};
	sandbox_update(&g_eg, &sb, &one, 1, true);
	expect_connects(&sb, IP_A_ALLOWED, "the name still allowed keeps its address");
	expect_dropped(&sb, IP_ALLOWED, "the name no longer allowed loses its address");
	/* The default (no policy bound): unrestricted with the default config. */
	sandbox_update(&g_eg, &sb, NULL, 0, false);
	expect_connects(&sb, IP_OTHER, "back to the default");
	sandbox_detach(&g_eg, &sb);
	/* Unknown sandboxes and bad policies are refused, clearly. */
	hutch_err_t e = {0};
	int r = g_eg.ops->policy_update(g_eg.inst, "no-such-sandbox", NULL, 0, true, &e);
	expect_error(r, &e, ENOENT, "no-such-sandbox");
}

static void case_default_deny(void)
{
	start("default_egress = \"deny\"\ndisallowed_names = \"nxdomain\"");
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, NULL, 0, false);
	expect_dropped(&sb, IP_OTHER, "the configured default denies");
	char out[4][64];
	int rcode = -1;
	int n = sandbox_resolve(&sb, "other.test", 1, false, out, 4, &rcode);
	CHECK(n == 0 && rcode == 3, "a name it may not reach is NXDOMAIN (n %d, rcode %d)", n, rcode);
	policy_spec_t p = {.name = "p", .allow_hosts = LIST("other.test")};
	sandbox_update(&g_eg, &sb, &p, 1, true);
	expect_resolves(&sb, "other.test", IP_OTHER);
	expect_connects(&sb, IP_OTHER, "a policy bound over the default");
	sandbox_detach(&g_eg, &sb);
}

/* ---- lifecycle ---- */

static void case_cleanup(void)
{
	start(NULL);
	policy_spec_t p = {.name = "p", .allow_hosts = LIST("allowed.test"),
			   .allow_cidrs = LIST("198.18.2.0/24"), .deny_cidrs = LIST("198.18.2.7/32")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	char ifname[32];
	host_ifname_of(sb.id, ifname);
	CHECK(ifname[0], "no host interface carries the alias %s", sb.id);
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_dropped(&sb, IP_OTHER, "for a drop counter");
	char id[64];
	snprintf(id, sizeof id, "%s", sb.id);
	sandbox_detach(&g_eg, &sb);
	expect_no_trace(id, ifname);
	const char *needles[] = {"\"egress.sandbox\"", id, "\"action\":\"detach\"", NULL};
	char *line = audit_grep(1000, needles);
	CHECK(line && !strstr(line, "\"dropped_packets\":0,"), "detach audit with its drops: %s",
	      line ? line : "(none)");
	free(line);
	/* Detach is idempotent. */
	hutch_err_t e = {0};
	CHECK_OK(g_eg.ops->detach(g_eg.inst, id, &e), &e);
	/* With no sandbox left, fini removes the table. */
	egress_unload(&g_eg);
	char *json = nft_table_json();
	CHECK(json[0] == '\0', "the table outlived the plugin: %.300s", json);
	free(json);
}

static void case_failed_attach(void)
{
	start("pool = \"10.200.0.0/29\"");
	/* A /29 holds 5 sandboxes; the 6th is refused, and leaves nothing. */
	sandbox_t sb[6];
	for (int i = 0; i < 5; i++)
		sandbox_attach(&g_eg, &sb[i], NULL, NULL, 0, false);
	hutch_err_t e = {0};
	int r = sandbox_attach_try(&g_eg, &sb[5], NULL, NULL, 0, false, &e);
	expect_error(r, &e, ENOSPC, "pool is full");
	sandbox_detach(&g_eg, &sb[4]);
	/* A failure half-way (the table is gone, so the elements cannot be
	 * added) undoes the namespace and the veth. */
	host_sh("nft delete table inet hutch_egress");
	e = (hutch_err_t){0};
	r = sandbox_attach_try(&g_eg, &sb[5], NULL, NULL, 0, false, &e);
	CHECK(r < 0 && strstr(e.message, "nftables"), "attach without a table: %d %s", r, e.message);
	CHECK(host_links_named("hx6") == 0, "the failed attach left its veth");
	char dir[512];
	snprintf(dir, sizeof dir, "%s/run/plugins/net-egress/netns/%s", world_base(), sb[5].id);
	CHECK(access(dir, F_OK) != 0, "the failed attach left its namespace");
	/* The slot was given back: after a restart (which rebuilds the
	 * table) the pool has room again. */
	for (int i = 0; i < 4; i++)
		sandbox_detach(&g_eg, &sb[i]);
	egress_unload(&g_eg);
	egress_load(&g_eg, "pool = \"10.200.0.0/29\"");
	for (int i = 0; i < 5; i++)
		sandbox_attach(&g_eg, &sb[i], NULL, NULL, 0, false);
	for (int i = 0; i < 5; i++)
		sandbox_detach(&g_eg, &sb[i]);
	/* A second net-egress in the chain, or a netns from an earlier plugin. */
	hutch_net_attach_t req = {.size = sizeof req, .sandbox_id = "x-1", .netns_path = "/proc/1/ns/net"};
	hutch_net_attachment_t out = {.size = sizeof out};
	e = (hutch_err_t){0};
	r = g_eg.ops->attach(g_eg.inst, &req, &out, &e);
	expect_error(r, &e, EINVAL, "first network plugin");
	req.netns_path = NULL;
	req.sandbox_id = "../etc";
	e = (hutch_err_t){0};
	r = g_eg.ops->attach(g_eg.inst, &req, &out, &e);
	expect_error(r, &e, EINVAL, "cannot name a namespace");
}

static void case_restart(void)
{
	start(NULL);
	policy_spec_t p = {.name = "p", .allow_hosts = LIST("allowed.test")};
	sandbox_t kept, gone;
	sandbox_attach(&g_eg, &kept, NULL, &p, 1, true);
	sandbox_attach(&g_eg, &gone, NULL, &p, 1, true);
	char kept_if[32], gone_if[32];
	host_ifname_of(kept.id, kept_if);
	host_ifname_of(gone.id, gone_if);
	expect_resolves(&kept, "allowed.test", IP_ALLOWED);
	/* hutchd goes down (fini without detach): the sandboxes stay confined. */
	egress_unload(&g_eg);
	expect_connects(&kept, IP_ALLOWED, "a learned address while hutchd is down");
	expect_dropped(&kept, IP_OTHER, "the policy while hutchd is down");
	/* It comes back: both are found; the core's gc says only one is live. */
	egress_load(&g_eg, NULL);
	const char *live[] = {kept.id};
	hutch_err_t e = {0};
	CHECK_OK(g_eg.ops->gc(g_eg.inst, live, 1, &e), &e);
	expect_no_trace(gone.id, gone_if);
	close(gone.nsfd);
	expect_connects(&kept, IP_ALLOWED, "the learned address after the restart");
	expect_dropped(&kept, IP_OTHER, "the policy after the restart");
	expect_resolves(&kept, "allowed.test", IP_ALLOWED);
	/* Its policy can still be changed, and it still detaches cleanly. */
	sandbox_update(&g_eg, &kept, NULL, 0, true);
	expect_dropped(&kept, IP_ALLOWED, "locked down after the restart");
	/* Leftovers nobody knows (a crash before a state file): an interface
	 * and a pinned namespace of ours. */
	host_sh("ip link add hx200 type veth peer name hx200p");
	char stray[512];
	snprintf(stray, sizeof stray, "%s/run/plugins/net-egress/netns/stray", world_base());
	int fd = open(stray, O_CREAT | O_WRONLY, 0444);
	close(fd);
	e = (hutch_err_t){0};
	CHECK_OK(g_eg.ops->gc(g_eg.inst, live, 1, &e), &e);
	CHECK(host_links_named("hx200") == 0, "gc left a stray interface");
	CHECK(access(stray, F_OK) != 0, "gc left a stray namespace file");
	char id[64];
	snprintf(id, sizeof id, "%s", kept.id);
	sandbox_detach(&g_eg, &kept);
	expect_no_trace(id, kept_if);
}

/* A table an older net-egress left, with sets of another layout (here:
 * shunned4 keyed by ipv4_addr): hutchd still starts, makes the table anew
 * and puts the kept sandbox's elements back, its denies included. */
static void case_upgrade_table(void)
{
	start(NULL);
	policy_spec_t p = {.name = "open-but", .allow_all = true, .deny_hosts = LIST("*.bench.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	char ifname[32];
	host_ifname_of(sb.id, ifname);
	expect_resolves(&sb, "b1.bench.test", "198.18.16.1");
	egress_unload(&g_eg);
	_cleanup_free_ char *script = xasprintf(
		"nft flush chain inet hutch_egress sandbox_egress\n"
		"nft flush chain inet hutch_egress sandbox_nat64\n"
		"nft delete set inet hutch_egress shunned4\n"
		"nft add set inet hutch_egress shunned4 '{ type ifname . ipv4_addr; flags timeout; }'\n"
		"nft add element inet hutch_egress shunned4 '{ \"%s\" . 198.18.16.1 timeout 60s }'\n",
		ifname);
	host_sh(script);
	egress_load(&g_eg, NULL);
	expect_connects(&sb, IP_OTHER, "the open policy, after the table was made anew");
	expect_dropped(&sb, "198.18.16.1", "a wildcard-denied answer from before the restart");
	sandbox_detach(&g_eg, &sb);
}

/* A sandbox given the address of one that went must not inherit its
 * connections: the next UDP datagram of the same flow would otherwise
 * pass as "established", past the policy. */
static void case_stale_conntrack(void)
{
	start("pool = \"10.200.0.0/29\"");
	sandbox_t old, fill[4], heir;
	sandbox_attach(&g_eg, &old, NULL, NULL, 0, false); /* unrestricted */
	probe_t p = {.kind = PROBE_UDP, .addr = IP_OTHER, .port = 7, .timeout_ms = 2000,
		     .src_port = 5555};
	sandbox_probe(&old, &p);
	CHECK(p.error == 0, "the first sandbox's flow: %s", strerror(p.error));
	char addr[64];
	snprintf(addr, sizeof addr, "%s", old.addr);
	sandbox_detach(&g_eg, &old);
	/* Slots go round: the next four take the other addresses, the fifth
	 * gets the first one's again. */
	for (int i = 0; i < 4; i++)
		sandbox_attach(&g_eg, &fill[i], NULL, NULL, 0, false);
	policy_spec_t names = {.name = "names", .allow_hosts = LIST("allowed.test")};
	sandbox_attach(&g_eg, &heir, NULL, &names, 1, true);
	CHECK(strcmp(heir.addr, addr) == 0, "the heir got %s, not %s", heir.addr, addr);
	probe_t q = {.kind = PROBE_UDP, .addr = IP_OTHER, .port = 7, .timeout_ms = 1000,
		     .src_port = 5555};
	sandbox_probe(&heir, &q);
	CHECK(q.error == ETIMEDOUT, "the old flow passed for the new sandbox: %s",
	      q.error ? strerror(q.error) : "echoed");
	for (int i = 0; i < 4; i++)
		sandbox_detach(&g_eg, &fill[i]);
	sandbox_detach(&g_eg, &heir);
}

/* ---- audit ---- */

static char *audit_one(const char *const *needles, const char *what)
{
	char *line = audit_grep(3000, needles);
	CHECK(line, "no audit line for %s", what);
	return line;
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

static void case_audit(void)
{
	start(NULL);
	policy_spec_t p = {.name = "web", .allow_hosts = LIST("allowed.test"),
			   .deny_hosts = LIST("denied.test")};
	sandbox_t sb, other;
	sandbox_attach(&g_eg, &sb, "acme", &p, 1, true);
	sandbox_attach(&g_eg, &other, "acme", NULL, 0, false);
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_resolves(&sb, "denied.test", IP_DENIED);
	expect_connects(&sb, IP_ALLOWED, "allowed");
	expect_dropped(&sb, IP_DENIED, "denied");
	probe_t slow = {.kind = PROBE_TCP, .addr = IP_NEVER, .port = 80, .timeout_ms = 3500};
	sandbox_probe(&sb, &slow); /* SYN and its retransmissions */
	CHECK(slow.error == ETIMEDOUT, "never answered: %s", strerror(slow.error));
	expect_dropped(&sb, other.addr, "another sandbox");
	expect_udp_dropped(&sb, "198.18.0.1", "for the DNS probe below");
	probe_t dns = {.kind = PROBE_UDP, .addr = IP_DNS_UPSTREAM, .port = 53, .timeout_ms = 500};
	sandbox_probe(&sb, &dns);
	probe_t host = {.kind = PROBE_TCP, .addr = sb.dns, .port = 22, .timeout_ms = 500};
	sandbox_probe(&sb, &host);
	/* A source address not its own (it is root in its namespace). */
	sandbox_sh(&sb, "ip addr add 10.200.0.99/32 dev eth0 && "
			"busybox ping -c 1 -W 1 -I 10.200.0.99 " IP_OTHER);

	const char *q_allowed[] = {"\"event\":\"egress.dns\"", sb.id, "\"tenant\":\"acme\"",
				   "\"name\":\"allowed.test\"", "\"verdict\":\"allowed\"",
				   "\"pattern\":\"allowed.test\"", "\"policy\":\"web\"",
				   "{\"address\":\"" IP_ALLOWED "\",\"ttl\":60,\"verdict\":\"allowed\"}",
				   NULL};
	free(audit_one(q_allowed, "the allowed lookup"));
	const char *q_denied[] = {"\"event\":\"egress.dns\"", sb.id, "\"name\":\"denied.test\"",
				  "\"verdict\":\"denied\"",
				  "{\"address\":\"" IP_DENIED "\",\"ttl\":60,\"verdict\":\"dropped\"}",
				  NULL};
	free(audit_one(q_denied, "the denied lookup"));
	const char *d_denied[] = {"\"event\":\"egress.drop\"", sb.id, "\"tenant\":\"acme\"",
				  "\"verdict\":\"dropped\",\"reason\":\"denied\"",
				  "\"protocol\":\"tcp\",\"address\":\"" IP_DENIED "\",\"port\":80",
				  "\"name\":\"denied.test\"", "\"policies\":\"web\"", NULL};
	free(audit_one(d_denied, "the denied connection"));
	const char *d_never[] = {"\"event\":\"egress.drop\"", sb.id, "\"reason\":\"not_allowed\"",
				 "\"address\":\"" IP_NEVER "\",\"port\":80", NULL};
	char *never = audit_one(d_never, "the connection to an address never answered");
	CHECK(count_lines(never) == 1 && !strstr(never, "\"name\""),
	      "one line for an attempt and its retransmissions, with no name:\n%s", never);
	free(never);
	const char *d_other[] = {"\"event\":\"egress.drop\"", sb.id, "\"reason\":\"blocked\"",
				 other.addr, "\"range\":\"10.200.0.0/24\"", NULL};
	free(audit_one(d_other, "the other sandbox"));
	const char *d_dns[] = {"\"event\":\"egress.drop\"", sb.id,
			       "\"reason\":\"dns_not_via_resolver\"", "\"protocol\":\"udp\"",
			       "\"port\":53", NULL};
	free(audit_one(d_dns, "DNS to another server"));
	const char *d_host[] = {"\"event\":\"egress.drop\"", sb.id, "\"reason\":\"host\"",
				"\"port\":22", NULL};
	free(audit_one(d_host, "the host's own service"));
	const char *d_spoof[] = {"\"event\":\"egress.drop\"", sb.id, "\"reason\":\"spoofed_source\"",
				 "\"source_address\":\"10.200.0.99\"", "\"protocol\":\"icmp\"", NULL};
	free(audit_one(d_spoof, "a spoofed source"));
	/* Counters. */
	usleep(400 * 1000); /* counters_interval is 200 ms here */
	CHECK(metrics_get("egress_dropped_packets_total", NULL) >= 8, "dropped packets counted: %g",
	      metrics_get("egress_dropped_packets_total", NULL));
	CHECK(metrics_get("egress_dns_queries_total", "verdict=allowed") >= 1 &&
		      metrics_get("egress_dns_queries_total", "verdict=denied") >= 1,
	      "queries counted by verdict");
	CHECK(metrics_get("egress_audited_drops_total", "reason=denied") >= 1,
	      "audited drops counted by reason");
	CHECK(metrics_get("egress_sandboxes", NULL) == 2, "sandboxes gauge: %g",
	      metrics_get("egress_sandboxes", NULL));
	/* attach, policy change and detach are audited too. */
	sandbox_update(&g_eg, &sb, NULL, 0, true);
	char id[64];
	snprintf(id, sizeof id, "%s", sb.id);
	sandbox_detach(&g_eg, &sb);
	sandbox_detach(&g_eg, &other);
	const char *actions[] = {"attach", "policy_update", "detach"};
	for (size_t i = 0; i < 3; i++) {
		char action[64];
		snprintf(action, sizeof action, "\"action\":\"%s\"", actions[i]);
		const char *n[] = {"\"event\":\"egress.sandbox\"", id, action, NULL};
		free(audit_one(n, actions[i]));
	}
	/* Every line is one JSON object: no raw control characters. */
	FILE *f = fopen(audit_path(), "re");
	char line[8192];
	while (f && fgets(line, sizeof line, f)) {
		CHECK(line[0] == '{' && strstr(line, "}\n"), "not a JSON line: %s", line);
		for (const char *c = line; *c != '\n'; c++)
			CHECK((unsigned char)*c >= 0x20, "a control character in: %s", line);
	}
	if (f)
		fclose(f);
}

/* ---- bad packets ---- */

/* A query's header and question for name (type A), as bytes. */
static size_t query_bytes(uint8_t *q, uint16_t flags, uint16_t qdcount, const char *name)
{
	size_t n = 0;
	q[n++] = 0xab;
	q[n++] = 0xcd;
	q[n++] = (uint8_t)(flags >> 8);
	q[n++] = (uint8_t)flags;
	q[n++] = 0;
	q[n++] = (uint8_t)qdcount;
	memset(q + n, 0, 6);
	n += 6;
	for (const char *p = name; *p;) {
		size_t l = strcspn(p, ".");
		q[n++] = (uint8_t)l;
		memcpy(q + n, p, l);
		n += l;
		p += l;
		if (*p)
			p++;
	}
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = 1;
	q[n++] = 0;
	q[n++] = 1;
	return n;
}

static void case_bad_packets(void)
{
	start(NULL);
	policy_spec_t p = {.name = "p", .allow_hosts = LIST("allowed.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	uint8_t q[512], a[4096];
	/* A runt and a response get nothing; the rest a clear rcode. */
	CHECK(sandbox_dns_raw(&sb, false, (const uint8_t *)"\x12\x34\x01", 3, a, sizeof a, 500) == 0,
	      "a runt was answered");
	size_t n = query_bytes(q, 0x8100, 1, "allowed.test");
	CHECK(sandbox_dns_raw(&sb, false, q, n, a, sizeof a, 500) == 0, "a response was answered");
	static const struct {
		uint16_t flags, qdcount;
		int rcode;
		const char *what;
	} bad[] = {
		{0x0100, 2, 1, "two questions: FORMERR"},
		{0x0100, 0, 1, "no question: FORMERR"},
		{0x2900, 1, 4, "an UPDATE: NOTIMP"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		n = query_bytes(q, bad[i].flags, bad[i].qdcount, "allowed.test");
		int got = sandbox_dns_raw(&sb, false, q, n, a, sizeof a, 2000);
		CHECK(got >= 12 && (a[2] & 0x80) && (a[3] & 0xf) == bad[i].rcode && a[0] == 0xab &&
			      a[1] == 0xcd,
		      "%s: got %d bytes, rcode %d", bad[i].what, got, got >= 12 ? a[3] & 0xf : -1);
	}
	/* A name that points at itself. */
	n = query_bytes(q, 0x0100, 1, "");
	q[12] = 0xc0;
	q[13] = 0x0c;
	q[14] = 0;
	q[15] = 1;
	q[16] = 0;
	q[17] = 1;
	int got = sandbox_dns_raw(&sb, false, q, 18, a, sizeof a, 2000);
	CHECK(got >= 12 && (a[3] & 0xf) == 1, "a looping name: FORMERR, got %d", got);
	/* TCP: a zero length closes the connection. */
	uint8_t zero[2] = {0, 0};
	CHECK(sandbox_dns_raw(&sb, true, zero, 2, a, sizeof a, 2000) == -1,
	      "a zero-length TCP message must close the connection");
	CHECK(metrics_get("egress_dns_queries_total", "verdict=malformed") >= 4, "malformed counted");
	/* And the resolver still answers. */
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_connects(&sb, IP_ALLOWED, "after the bad packets");
	sandbox_detach(&g_eg, &sb);
	egress_unload(&g_eg);

	/* An upstream that answers garbage (the UDP echo server sends the
	 * query back): SERVFAIL once the tries run out, nothing learned. */
	egress_load(&g_eg, "upstream_dns = [\"" IP_DNS_UPSTREAM ":7\"]\nupstream_timeout = \"300ms\"");
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	char out[4][64];
	int rcode = -1;
	int64_t t0 = now_us();
	int k = sandbox_resolve(&sb, "allowed.test", 1, false, out, 4, &rcode);
	CHECK(k == 0 && rcode == 2, "a bad upstream: SERVFAIL (n %d, rcode %d)", k, rcode);
	CHECK(now_us() - t0 < 2000000, "SERVFAIL took %lld ms", (long long)(now_us() - t0) / 1000);
	CHECK(metrics_get("egress_dns_bad_answers_total", NULL) >= 1, "bad answers counted");
	expect_dropped(&sb, IP_ALLOWED, "nothing learned from a bad upstream");
	const char *needles[] = {"\"event\":\"egress.dns\"", sb.id, "\"outcome\":\"upstream timeout\"",
				 NULL};
	char *line = audit_grep(1000, needles);
	CHECK(line, "the failed lookup is audited");
	free(line);
	sandbox_detach(&g_eg, &sb);
}

/* ---- configuration ---- */

typedef struct bad_config {
	const char *text;
	const char *needle;
} bad_config_t;

static void case_bad_config(void)
{
	world_setup(60);
	static const bad_config_t bad[] = {
		{"pool = \"10.200.0.0\"", "too small"},
		{"pool = \"10.200.0.1/24\"", "host bits"},
		{"pool = \"fd00::/64\"", "must be an IPv4 prefix"},
		{"pool6 = \"fd00::/120\"", "at most /112"},
		{"upstream_dns = [\"resolver.example\"]", "is not an IP address"},
		{"upstream_dns = [\"10.200.0.9\"]", "inside the sandboxes' pool"},
		{"interface_prefix = \"Bad-Name\"", "1-8 of [a-z0-9]"},
		{"nft_table = \"no spaces\"", "1-32 of [a-z0-9_]"},
		{"dns_port = 70000", "is not a port"},
		{"ttl_min = \"2h\"", "ttl_min <= ttl_max"},
		{"blocked_cidrs = [\"169.254.0.0/33\"]", "blocked_cidrs"},
		{"nat64_prefixes = [\"64:ff9b:1::/48\"]", "only /96"},
		{"nat64_prefixes = [\"198.18.0.0/24\"]", "nat64_prefixes"},
	};
	/* Each is refused at init, with a message that says why. */
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		hutch_err_t e = {0};
		int r = egress_try_load(&g_eg, bad[i].text, &e);
		CHECK(r < 0 && strstr(e.message, bad[i].needle), "config `%s`: got %d `%s`, want `%s`",
		      bad[i].text, r, e.message, bad[i].needle);
	}
	/* Unknown keys and wrong types are the core's binding's to refuse. */
	hutch_err_t e = {0};
	CHECK(egress_try_load(&g_eg, "no_such_key = 1", &e) < 0 && strstr(e.message, "no_such_key"),
	      "unknown key: %s", e.message);
	/* Bad policies: refused by policy_validate with the field and value. */
	egress_load(&g_eg, NULL);
	const struct {
		hutch_net_policy_t p;
		const char *needle;
	} bad_p[] = {
		{{.size = sizeof(hutch_net_policy_t), .name = "a", .allowed_hostnames = LIST("*")},
		 "would match every name"},
		{{.size = sizeof(hutch_net_policy_t), .name = "b", .allowed_hostnames = LIST("a.*.com")},
		 "`*` may only stand as the whole first label"},
		{{.size = sizeof(hutch_net_policy_t), .name = "c", .denied_hostnames = LIST("10.0.0.1")},
		 "is an address, not a hostname"},
		{{.size = sizeof(hutch_net_policy_t), .name = "d", .allowed_cidrs = LIST("10.0.0.1/8")},
		 "did you mean 10.0.0.0/8"},
		{{.size = sizeof(hutch_net_policy_t), .name = "e", .denied_cidrs = LIST("2001:db8::/129")},
		 "prefix length 129"},
		{{.size = sizeof(hutch_net_policy_t), .name = "f", .allowed_hostnames = LIST("a..b")},
		 "empty label"},
	};
	for (size_t i = 0; i < sizeof bad_p / sizeof bad_p[0]; i++) {
		e = (hutch_err_t){0};
		int r = g_eg.ops->policy_validate(g_eg.inst, &bad_p[i].p, &e);
		CHECK(r == -EINVAL && strstr(e.message, bad_p[i].needle), "policy %s: `%s`, want `%s`",
		      bad_p[i].p.name, e.message, bad_p[i].needle);
		CHECK(strstr(e.message, bad_p[i].p.name), "the message names the policy: %s", e.message);
	}
}

/* ---- a deny always wins ---- */

/* Connects to addr until it is dropped, for up to ms (a policy change
 * resolves newly denied names without waiting). */
static void wait_dropped(const sandbox_t *sb, const char *addr, int ms, const char *why)
{
	int64_t t0 = now_us();
	while (sandbox_tcp(sb, addr, 200) == 0 && now_us() - t0 < (int64_t)ms * 1000)
		usleep(20000);
	expect_dropped(sb, addr, why);
}

/* A denied host through NAT64: I carries 64:ff9b::/96 (and an operator's
 * prefix) as a NAT64 gateway would, to the embedded IPv4 host. Every IPv4
 * denial holds there too: a denied name's addresses, denied prefixes,
 * under an open policy, an allowed NAT64 prefix, or an allowed name that
 * answers the NAT64 form. */
static void case_deny_nat64(void)
{
	start("pool6 = \"fd00:6567::/112\"");
	policy_spec_t open = {.name = "open-but", .allow_all = true, .deny_hosts = LIST("denied.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &open, 1, true);
	expect_connects(&sb, IP6_NAT64_ALLOWED, "an allowed host through NAT64 (the path works)");
	expect_dropped(&sb, IP_DENIED, "the denied host by IPv4");
	expect_dropped(&sb, IP6_NAT64_DENIED, "the denied host through NAT64, open policy");
	const char *needles[] = {"\"event\":\"egress.drop\"", "\"address\":\"" IP6_NAT64_DENIED "\"",
				 "\"reason\":\"denied\"", "\"name\":\"denied.test\"", NULL};
	char *line = audit_grep(2000, needles);
	CHECK(line, "the NAT64 drop is audited as denied, naming the host");
	free(line);

	policy_spec_t prefix = {.name = "nat64-prefix", .allow_cidrs = LIST("64:ff9b::/96"),
				.deny_hosts = LIST("denied.test")};
	sandbox_update(&g_eg, &sb, &prefix, 1, true);
	expect_connects(&sb, IP6_NAT64_ALLOWED, "an allowed NAT64 prefix");
	expect_dropped(&sb, IP6_NAT64_DENIED, "the denied host inside an allowed NAT64 prefix");

	policy_spec_t named = {.name = "n64", .allow_hosts = LIST("n64.allowed.test"),
			       .deny_hosts = LIST("denied.test")};
	sandbox_update(&g_eg, &sb, &named, 1, true);
	char out[4][64];
	int rcode;
	CHECK(sandbox_resolve(&sb, "n64.allowed.test", 28, false, out, 4, &rcode) == 1 &&
		      strcmp(out[0], IP6_NAT64_DENIED) == 0,
	      "AAAA of n64.allowed.test (rcode %d)", rcode);
	expect_dropped(&sb, IP6_NAT64_DENIED, "an allowed name answering the denied host's NAT64 form");

	policy_spec_t cidr = {.name = "cidr", .allow_all = true,
			      .deny_cidrs = LIST(IP_ALLOWED "/32")};
	sandbox_update(&g_eg, &sb, &cidr, 1, true);
	expect_dropped(&sb, IP6_NAT64_ALLOWED, "a denied IPv4 prefix through NAT64");
	expect_connects(&sb, IP6_NAT64_DENIED, "denied.test is not denied any more");

	/* A denied name answered only in NAT64 form: its IPv4 host too. */
	policy_spec_t v6only = {.name = "v6only", .allow_all = true,
				.deny_hosts = LIST("n64.denied.test")};
	sandbox_update(&g_eg, &sb, &v6only, 1, true);
	wait_dropped(&sb, IP6_NAT64_DENIED_AAAA, 3000, "a denied name's NAT64 answer");
	expect_dropped(&sb, IP_NAT64_DENIED_AAAA, "the IPv4 host a denied name's NAT64 answer names");
	sandbox_detach(&g_eg, &sb);
	egress_unload(&g_eg);

	/* An operator's own NAT64 prefix, named in the config. */
	egress_load(&g_eg, "pool6 = \"fd00:6567::/112\"\n"
			   "nat64_prefixes = [\"64:ff9b::/96\", \"" NAT64_OPERATOR_PREFIX "\"]");
	sandbox_attach(&g_eg, &sb, NULL, &open, 1, true);
	expect_connects(&sb, "2001:db8:64::c612:10a", "an allowed host through the operator's NAT64");
	expect_dropped(&sb, "2001:db8:64::c612:114", "the denied host through the operator's NAT64");
	expect_dropped(&sb, "2001:db8:64::a9fe:a9fe", "metadata through the operator's NAT64");
	expect_dropped(&sb, "2001:db8:64::ac8:3", "the pool through the operator's NAT64");
	expect_dropped(&sb, IP6_NAT64_DENIED, "the denied host through the well-known prefix");
	sandbox_detach(&g_eg, &sb);
}

/* A sandbox's own lookups never evict a deny: max_learned is for what
 * allowed (and remembered) names taught it. */
static void case_deny_evict(void)
{
	start("max_learned = 20");
	policy_spec_t p = {.name = "wide", .allow_cidrs = LIST("198.18.1.0/24"),
			   .allow_hosts = LIST("*.allowed.test"), .deny_hosts = LIST("denied.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	expect_dropped(&sb, IP_DENIED, "the denied host in an allowed prefix");
	char out[N_MANY][64];
	int rcode;
	for (int round = 0; round < 3; round++) {
		int n = sandbox_resolve(&sb, "many.allowed.test", 1, false, out, N_MANY, &rcode);
		CHECK(n == N_MANY, "many.allowed.test: %d addresses (rcode %d)", n, rcode);
		expect_resolves(&sb, "a.allowed.test", IP_A_ALLOWED);
		expect_resolves(&sb, "b.allowed.test", IP_B_ALLOWED);
	}
	expect_connects(&sb, IP_B_ALLOWED, "the latest answer, under max_learned pressure");
	expect_dropped(&sb, IP_DENIED, "the denied host by literal, after the lookups");
	expect_resolves(&sb, "shared.allowed.test", IP_SHARED);
	expect_dropped(&sb, IP_SHARED, "an allowed name sharing the denied host's address");
	CHECK(metrics_get("egress_learned_evicted_total", NULL) >= 20, "evictions counted: %g",
	      metrics_get("egress_learned_evicted_total", NULL));
	const char *needles[] = {"\"event\":\"egress.dns\"", "\"name\":\"many.allowed.test\"",
				 "\"evicted\":", NULL};
	char *line = audit_grep(2000, needles);
	CHECK(line, "the answers that evicted are audited with the count");
	free(line);

	/* Addresses of denied names the sandbox asks for are never evicted
	 * either; past max_learned of them, such an answer is refused. */
	policy_spec_t wild = {.name = "wild", .allow_all = true, .deny_hosts = LIST("*.bench.test")};
	sandbox_update(&g_eg, &sb, &wild, 1, true);
	for (int i = 1; i <= 20; i++) {
		char name[64], want[32];
		snprintf(name, sizeof name, "b%d.bench.test", i);
		snprintf(want, sizeof want, "198.18.16.%d", i);
		expect_resolves(&sb, name, want);
	}
	int n = sandbox_resolve(&sb, "b21.bench.test", 1, false, out, 4, &rcode);
	CHECK(n == 0 && rcode == 2, "past max_learned denied addresses: SERVFAIL (n %d, rcode %d)", n,
	      rcode);
	const char *full[] = {"\"event\":\"egress.dns\"", "\"name\":\"b21.bench.test\"",
			      "\"outcome\":\"servfail\"", "\"limit\":\"max_learned\"", NULL};
	line = audit_grep(2000, full);
	CHECK(line, "the refused answer is audited with the limit");
	free(line);
	for (int round = 0; round < 2; round++)
		CHECK(sandbox_resolve(&sb, "many.allowed.test", 1, false, out, N_MANY, &rcode) == N_MANY,
		      "many.allowed.test under the open policy");
	expect_dropped(&sb, "198.18.16.1", "the first wildcard-denied answer, after the lookups");
	expect_dropped(&sb, "198.18.16.20", "the last wildcard-denied answer, after the lookups");
	expect_connects(&sb, IP_A_ALLOWED, "an open address");
	sandbox_detach(&g_eg, &sb);
}

/* Every exact denied name is kept resolved, however many there are. */
static void case_deny_many_names(void)
{
	start(NULL);
	enum { N = 300 };
	char names[N][32];
	const char *list[N + 1];
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof names[i], "b%d.bench.test", i + 1);
		list[i] = names[i];
	}
	list[N] = NULL;
	policy_spec_t p = {.name = "many-denied", .allow_all = true, .deny_hosts = list};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	static const int sample[] = {1, 64, 65, 70, 150, 255, 257, 300};
	for (size_t i = 0; i < sizeof sample / sizeof sample[0]; i++) {
		char addr[32], why[64];
		snprintf(addr, sizeof addr, "198.18.%d.%d", 16 + sample[i] / 256, sample[i] % 256);
		snprintf(why, sizeof why, "denied name %d of %d", sample[i], N);
		expect_dropped(&sb, addr, why);
	}
	expect_connects(&sb, "198.18.17.45", "b301.bench.test, not denied");
	sandbox_detach(&g_eg, &sb);
}

/* A CNAME chain longer than the resolver follows: a denied name's
 * addresses past the cut are shunned all the same, and any other such
 * answer is refused (the names past the cut cannot be judged). */
static void case_deny_long_chain(void)
{
	start(NULL);
	policy_spec_t p = {.name = "open-but", .allow_all = true, .deny_hosts = LIST("chain.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	expect_dropped(&sb, IP_FAR, "the end of a denied name's long CNAME chain");
	expect_connects(&sb, IP_OTHER, "the open policy");
	policy_spec_t named = {.name = "named", .allow_hosts = LIST("chain.test", "c5.chain.test")};
	sandbox_update(&g_eg, &sb, &named, 1, true);
	char out[4][64];
	int rcode;
	int n = sandbox_resolve(&sb, "chain.test", 1, false, out, 4, &rcode);
	CHECK(n == 0 && rcode == 2, "an allowed name's chain too long to judge: SERVFAIL (n %d, rcode %d)",
	      n, rcode);
	const char *needles[] = {"\"event\":\"egress.dns\"", "\"name\":\"chain.test\"",
				 "\"limit\":\"cname_chain\"", NULL};
	char *line = audit_grep(2000, needles);
	CHECK(line, "the refused answer is audited with the limit");
	free(line);
	expect_resolves(&sb, "c5.chain.test", IP_FAR); /* 12 names: followed */
	expect_connects(&sb, IP_FAR, "a chain short enough to follow");
	sandbox_detach(&g_eg, &sb);
}

/* A TCP client may shut down its sending side once it asked: the answers
 * still come, then the resolver closes. */
static void case_dns_tcp_half_close(void)
{
	start(NULL);
	policy_spec_t p = {.name = "p", .allow_hosts = LIST("allowed.test", "a.allowed.test")};
	sandbox_t sb;
	sandbox_attach(&g_eg, &sb, NULL, &p, 1, true);
	uint8_t msg[1024], out[4096];
	size_t len = 0;
	static const char *const names[] = {"allowed.test", "a.allowed.test"};
	for (size_t i = 0; i < 2; i++) {
		size_t n = query_bytes(msg + len + 2, 0x0100, 1, names[i]);
		msg[len] = (uint8_t)(n >> 8);
		msg[len + 1] = (uint8_t)n;
		len += 2 + n;
	}
	int got = sandbox_dns_tcp_half_close(&sb, msg, len, out, sizeof out, 5000);
	CHECK(got > 0, "no answer after the client's half-close (got %d)", got);
	size_t off = 0, answers = 0;
	while (off + 2 <= (size_t)got) {
		size_t n = ((size_t)out[off] << 8) | out[off + 1];
		CHECK(off + 2 + n <= (size_t)got && n >= 12, "a cut answer at %zu", off);
		const uint8_t *a = out + off + 2;
		CHECK(a[0] == 0xab && a[1] == 0xcd && (a[2] & 0x80) && (a[3] & 0xf) == 0,
		      "answer %zu: id %02x%02x rcode %d", answers, a[0], a[1], a[3] & 0xf);
		answers++;
		off += 2 + n;
	}
	CHECK(answers == 2 && off == (size_t)got, "%zu answers in %d bytes", answers, got);
	expect_connects(&sb, IP_ALLOWED, "learned from an answer after the half-close");
	expect_connects(&sb, IP_A_ALLOWED, "learned from the second answer");
	sandbox_detach(&g_eg, &sb);
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{"allowed_name", case_allowed_name},
	{"wildcard", case_wildcard},
	{"denied_silent", case_denied_silent},
	{"literal_ip", case_literal_ip},
	{"cname", case_cname},
	{"changing_answer", case_changing_answer},
	{"isolation", case_isolation},
	{"nat", case_nat},
	{"udp", case_udp},
	{"policy_update", case_policy_update},
	{"default_deny", case_default_deny},
	{"cleanup", case_cleanup},
	{"failed_attach", case_failed_attach},
	{"restart", case_restart},
	{"upgrade_table", case_upgrade_table},
	{"stale_conntrack", case_stale_conntrack},
	{"audit", case_audit},
	{"bad_packets", case_bad_packets},
	{"bad_config", case_bad_config},
	{"deny_nat64", case_deny_nat64},
	{"deny_evict", case_deny_evict},
	{"deny_many_names", case_deny_many_names},
	{"deny_long_chain", case_deny_long_chain},
	{"dns_tcp_half_close", case_dns_tcp_half_close},
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(cases[i].name, argv[1]) == 0) {
			g_case = cases[i].name;
			cases[i].fn();
			if (g_eg.plugin)
				egress_unload(&g_eg);
			harness_cleanup();
			fprintf(stderr, "PASS %s\n", g_case);
			return 0;
		}
	}
	fprintf(stderr, "no case `%s`\n", argv[1]);
	return 2;
}
