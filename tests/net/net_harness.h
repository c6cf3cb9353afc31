/*
 * net_harness.h: the world the net-egress tests run in.
 *
 * Each test process first moves into a network namespace of its own (the
 * "host" H), so its nftables table, interfaces, forwarding sysctl and
 * routes are private: tests run in parallel, and no packet of theirs can
 * leave the namespaces they made, even when the plugin under test fails.
 * H is linked by a veth (up0 / wan0) to a second namespace, the
 * "internet" I, which holds the peers:
 *
 *   I  wan0 198.18.0.1/24, 2001:db8::1/64
 *      every address in 198.18.1.0/24, 198.18.2.0/24, 198.18.16.0/20,
 *      169.254.169.254/32
 *      and 2001:db8:1::/64 is local (AnyIP), served by
 *      - a TCP server on port 80 (and 853) that greets with
 *        "hello <local address> from <peer address>",
 *      - a UDP echo server on port 7,
 *      - dnsmasq on 198.18.0.1:53 serving the test zone (hosts file and
 *        CNAMEs below).
 *   H  up0 198.18.0.2/24, 2001:db8::2/64, default routes to I.
 *
 * The plugin is loaded through the core's own loader and host table, with
 * a libuv loop on a thread of its own (as hutchd's), and driven from the
 * main thread (as from hutchd's pool). Sandbox-side actions run on threads
 * that enter the sandbox's namespace with setns().
 */
#ifndef NET_HARNESS_H
#define NET_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <hutch/plugin.h>

extern const char *g_case;
void harness_cleanup(void);

#define CHECK(cond, ...)                                                        \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "FAIL %s:%d [%s] %s: ", __FILE__, __LINE__, \
				g_case, #cond);                                \
			fprintf(stderr, __VA_ARGS__);                          \
			fprintf(stderr, "\n");                                 \
			harness_cleanup();                                     \
			exit(1);                                               \
		}                                                              \
	} while (0)

#define CHECK_OK(expr, e)                                                       \
	do {                                                                   \
		int _r = (expr);                                               \
		CHECK(_r == 0, "returned %d: %s", _r, (e)->message);           \
	} while (0)

#define SKIP(...)                                                               \
	do {                                                                   \
		fprintf(stderr, "SKIP [%s]: ", g_case);                        \
		fprintf(stderr, __VA_ARGS__);                                  \
		fprintf(stderr, "\n");                                         \
		harness_cleanup();                                             \
		exit(77);                                                      \
	} while (0)

/* Addresses of the test zone (in I). */
#define IP_ALLOWED "198.18.1.10"     /* allowed.test */
#define IP_A_ALLOWED "198.18.1.11"   /* a.allowed.test */
#define IP_B_ALLOWED "198.18.1.12"   /* b.allowed.test */
#define IP_DENIED "198.18.1.20"      /* denied.test */
#define IP_EVIL "198.18.1.30"        /* a.allowed.test.evil */
#define IP_CIDR_TARGET "198.18.1.40" /* cidr-target.test (CNAME of cname2.allowed.test) */
#define IP_OK_TARGET "198.18.1.50"   /* ok-target.test (CNAME of cname3.allowed.test) */
#define IP_CHANGING_1 "198.18.1.60"  /* changing.test, first answer */
#define IP_CHANGING_2 "198.18.1.61"  /* changing.test, after the change */
#define IP_NEVER "198.18.1.70"       /* in no answer */
#define IP_OTHER "198.18.1.80"       /* other.test */
#define IP_SHARED IP_DENIED          /* shared.allowed.test: denied.test's address */
#define IP_FAR "198.18.1.90"         /* far.test, the end of chain.test's 16 CNAMEs */
#define IP_METADATA "169.254.169.254"
#define IP_DNS_UPSTREAM "198.18.0.1" /* dnsmasq, and I's end of the link */
#define IP_HOST_UPLINK "198.18.0.2"  /* H's end of the link */
#define IP6_ALLOWED "2001:db8:1::10"
#define IP6_DENIED "2001:db8:1::20"
#define IP6_NEVER "2001:db8:1::70"
/* NAT64 (64:ff9b::/96 and the operator's prefix below are local in I, as
 * if a NAT64 gateway carried them to the embedded IPv4 address). */
#define NAT64_OPERATOR_PREFIX "2001:db8:64::/96"
#define IP6_NAT64_DENIED "64:ff9b::c612:114"     /* denied.test via NAT64; n64.allowed.test */
#define IP6_NAT64_ALLOWED "64:ff9b::c612:10a"    /* allowed.test via NAT64 */
#define IP6_NAT64_DENIED_AAAA "64:ff9b::c612:150" /* n64.denied.test: only this AAAA */
#define IP_NAT64_DENIED_AAAA "198.18.1.80"       /* the same host (other.test) by IPv4 */
#define N_MANY 40                    /* many.allowed.test: 198.18.2.1..40 */
#define N_BENCH 1000                 /* b<i>.bench.test, i = 1..N_BENCH: 198.18.16.0 + i */

/* ---- the world ---- */

/* Makes H (moving this process into it), I, the servers and dnsmasq.
 * dnsmasq_ttl: the TTL of its answers. Call before anything else. */
void world_setup(int dnsmasq_ttl);
/* Points changing.test at IP_CHANGING_2 and reloads dnsmasq. */
void world_change_answer(void);
const char *world_base(void);
/* I's namespace, for servers a test or benchmark starts there itself. */
int world_inet_fd(void);

/* ---- the plugin ---- */

typedef struct egress {
	void *plugin;       /* plugin_t */
	void *ctx;          /* host_ctx_t */
	const hutch_network_ops_t *ops;
	void *inst;
} egress_t;

/* Loads net-egress with the harness's base config plus extra TOML lines. */
void egress_load(egress_t *eg, const char *extra_config);
/* The same, returning the loader's or init's error instead of failing. */
int egress_try_load(egress_t *eg, const char *extra_config, hutch_err_t *err);
/* fini() and unload, with nothing detached: what a daemon restart does. */
void egress_unload(egress_t *eg);
/* Loads another network plugin of the chain (one that attaches inside the
 * namespace net-egress made) from path, as name, with config (TOML) and
 * the harness's host; unload it with egress_unload. */
int chain_plugin_try_load(const char *path, const char *name, const char *config, egress_t *pl,
			  hutch_err_t *err);
/* The audit log's path. */
const char *audit_path(void);

/* A policy built from NULL-terminated lists (any may be NULL). */
typedef struct policy_spec {
	const char *name;
	bool allow_all;
	const char *const *allow_hosts;
	const char *const *allow_cidrs;
	const char *const *deny_hosts;
	const char *const *deny_cidrs;
} policy_spec_t;

typedef struct sandbox {
	char id[64];
	char netns[256];
	char addr[64];      /* IPv4, no prefix */
	char addr6[64];     /* "" without pool6 */
	char dns[64];
	int nsfd;
} sandbox_t;

/* Attaches a sandbox with the given policies (n = 0 and set = false: the
 * default). Fails the test on error. */
void sandbox_attach(egress_t *eg, sandbox_t *sb, const char *tenant,
		    const policy_spec_t *policies, size_t n, bool set);
int sandbox_attach_try(egress_t *eg, sandbox_t *sb, const char *tenant,
		       const policy_spec_t *policies, size_t n, bool set, hutch_err_t *err);
void sandbox_detach(egress_t *eg, sandbox_t *sb);
/* Replaces the policies; returns the call's duration in microseconds. */
int64_t sandbox_update(egress_t *eg, sandbox_t *sb, const policy_spec_t *policies, size_t n,
		       bool set);

/* ---- what a sandbox can do ---- */

typedef enum probe_kind { PROBE_TCP, PROBE_UDP, PROBE_ICMP } probe_kind_t;

typedef struct probe {
	/* in */
	probe_kind_t kind;
	const char *addr;  /* any notation inet_aton/inet_pton take */
	uint16_t port;
	int timeout_ms;
	bool capture;      /* watch eth0 for RSTs and ICMP errors meanwhile */
	uint16_t src_port; /* 0: any */
	/* out */
	int error;         /* 0: connected (TCP) / echoed (UDP); else an errno */
	char reply[256];
	int rst_seen, icmp_seen;
	int64_t elapsed_ms;
} probe_t;

/* Runs p from inside the sandbox's namespace. */
void sandbox_probe(const sandbox_t *sb, probe_t *p);
/* Shorthands: 0 when a TCP connection to addr:80 opens within timeout_ms. */
int sandbox_tcp(const sandbox_t *sb, const char *addr, int timeout_ms);
/* Asserts that a TCP connection succeeds / times out silently. */
void expect_connects(const sandbox_t *sb, const char *addr, const char *why);
void expect_dropped(const sandbox_t *sb, const char *addr, const char *why);

/* The same for UDP (an echo on port 7) and ICMP (an echo request). */
void expect_udp_echo(const sandbox_t *sb, const char *addr, const char *why);
void expect_udp_dropped(const sandbox_t *sb, const char *addr, const char *why);
void expect_ping(const sandbox_t *sb, const char *addr, const char *why);
void expect_ping_dropped(const sandbox_t *sb, const char *addr, const char *why);

/* A TCP server greeting like the ones in I, on addr:port inside the
 * namespace nsfd (-1: H, this process's own). */
typedef struct tcp_server tcp_server_t;
tcp_server_t *tcp_server_start(int nsfd, const char *addr, uint16_t port);
void tcp_server_stop(tcp_server_t *s);

/* Adds addr (a /32) to lo inside the namespace nsfd. */
void netns_add_lo_addr(int nsfd, const char *addr);

/* Resolves name through the sandbox's resolver (UDP, then TCP on a
 * truncated answer, as glibc does; tcp: TCP only). Returns the number of
 * addresses (text into out), or -1 on a timeout; *rcode gets the rcode. */
int sandbox_resolve(const sandbox_t *sb, const char *name, uint16_t qtype, bool tcp,
		    char out[][64], int max, int *rcode);
/* Sends raw bytes to the sandbox's resolver over UDP (tcp: over TCP, with
 * the length prefix given in the bytes) and returns the first reply's
 * length (into out), 0 on none within wait_ms, -1 when a TCP peer closed. */
int sandbox_dns_raw(const sandbox_t *sb, bool tcp, const uint8_t *msg, size_t len, uint8_t *out,
		    size_t cap, int wait_ms);

/* Sends msg (queries with their length prefixes) over TCP, then shuts
 * down the sending side, as a client may once it asked everything; reads
 * until the resolver closes. Returns the bytes read, or -1 when it did
 * not close within wait_ms. */
int sandbox_dns_tcp_half_close(const sandbox_t *sb, const uint8_t *msg, size_t len, uint8_t *out,
			       size_t cap, int wait_ms);

/* Resolves and asserts the first address is want. */
void expect_resolves(const sandbox_t *sb, const char *name, const char *want);

/* Runs fn(arg) on a thread inside the namespace nsfd and returns its result. */
void *in_netns(int nsfd, void *(*fn)(void *), void *arg);

/* nft's view of the table (nft -j list table inet <table>), or "". */
char *nft_table_json(void);
/* Counts lines of `ip -o link` (in H) that mention name. */
int host_links_named(const char *name);
/* The host end of sb's veth (found by its alias, the sandbox id), or "". */
void host_ifname_of(const char *sandbox_id, char out[32]);
/* Asserts that nothing of a sandbox is left: no interface, no element or
 * counter naming ifname in the table, no pinned namespace, no state file. */
void expect_no_trace(const char *sandbox_id, const char *ifname);
/* The audit log's lines that contain every one of the NULL-terminated
 * needles, joined by '\n' (free it), or NULL when there is none. Waits
 * up to wait_ms for one to appear. */
char *audit_grep(int wait_ms, const char *const *needles);
/* Runs a shell script in H; fails the test if it fails. */
void host_sh(const char *script);
/* Runs a shell script inside the sandbox's namespace; returns its exit
 * code (output discarded). */
int sandbox_sh(const sandbox_t *sb, const char *script);

int64_t now_us(void);

#endif
