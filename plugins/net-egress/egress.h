/*
 * egress.h: the net-egress plugin's insides, shared by its files.
 *
 * net-egress is the first plugin of the network chain. For each sandbox it
 * makes a network namespace with one veth pair: "eth0" inside, with one
 * address from the configured pool (and one from pool6, if set) and a
 * default route to the gateway; "<prefix><n>" on the host, holding the
 * gateway address (the same /32 on every sandbox's host end) and a /32
 * route back to the sandbox. Egress is filtered on the host side, in one
 * nftables table whose rules are fixed at init; everything per sandbox is
 * a set element keyed by the host interface's name (see nft.c and
 * sets.c), so attaching, detaching and changing a policy are nf_tables
 * element transactions. The resolver (dns_resolver.h) listens on the gateway
 * address, knows the sandbox by the query's source address, forwards to
 * the upstream resolvers, and adds the addresses answered for allowed
 * names to that sandbox's elements before it releases the answer.
 *
 * Files, one concept each:
 *   plugin.c     descriptor, config table, init/fini, the ops table
 *   lifecycle.c  attach, detach, policy changes, leftovers (gc)
 *   addr_pool.c  the address pools and slot allocation
 *   netns.c      making and removing a sandbox's network namespace
 *   link.c       the veth pair, addresses and routes (libnl)
 *   nft.c        the table's structure (libnftables)
 *   nfnl.c       set elements and counters over raw netlink
 *   sets.c       what a sandbox's elements are, and changing them
 *   sandbox.c    the sandbox registry, learned addresses, state files
 *   policy.c     hostname patterns, CIDRs, compiled rules
 *   learned.c    what the resolver's answers taught a sandbox
 *   conntrack.c  forgetting a sandbox's tracked connections
 *   dns_msg.c    DNS message parsing (untrusted input)
 *   dns_*.c      the resolver: its thread, sockets and queries, and the
 *                denied names it keeps resolved (see dns_resolver.h)
 *   nflog.c      dropped packets to the audit (nflog_msg.c parses them)
 *   audit.c      audit events and metrics
 *   router_names.c  <name>.<router_domain> answered with the gateway, for
 *                hutchd's router (one input rule in nft.c lets it in)
 *
 * Threads: the ops run on hutchd's pool threads, several at once for
 * different sandboxes; the resolver runs on a thread of its own with a
 * private libuv loop (so its sockets' lifetime is the plugin's, not the
 * daemon loop's, and nf_tables commits never stall hutchd's loop). The
 * registry has a lock; each sandbox has a lock over its rules and learned
 * addresses, held across the nf_tables commit that changes them, so a
 * policy change and an answer for the same sandbox never interleave.
 */
#ifndef EGRESS_H
#define EGRESS_H

#include <net/if.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <hutch/plugin.h>

#include "dns_msg.h"
#include "nfnl.h"
#include "policy.h"
#include "strbuf.h"

#define EG_PLUGIN_NAME "net-egress"
#define EG_PLUGIN_VERSION "0.1.0"

/* The bound [plugin.net-egress] table (see plugin.c for meanings). */
typedef struct eg_config {
	char *pool;
	char *pool6;
	char **upstream_dns;
	int64_t dns_port;
	bool nat;
	char *uplink;
	char *default_egress;   /* allow | deny */
	char *disallowed_names; /* forward | nxdomain | refused */
	char **blocked_cidrs;
	char **nat64_prefixes;
	char *interface_prefix;
	char *nft_table;
	int64_t ttl_min_ms;
	int64_t ttl_max_ms;
	int64_t max_learned;
	int64_t upstream_timeout_ms;
	int64_t counters_interval_ms;
	bool manage_forwarding;
	bool audit;
	bool audit_drops;
	int64_t audit_drops_rate;
	int64_t nflog_group;
	char *local_names_dir;
	char *local_names_suffix;
	char *router_domain;    /* "": off (router_names.c) */
	int64_t router_port;
} eg_config_t;

/* ---- addr_pool.c ---- */

/* Host numbers inside the pools: 1 is the gateway, 2.. are sandboxes
 * (slot s has host number s + 2, in both pools). */
typedef struct eg_pool {
	uint8_t net4[4];
	unsigned plen4;
	bool has6;
	uint8_t net6[16];
	unsigned plen6;
	uint32_t n_slots;
	uint8_t *used; /* bitmap of n_slots */
	uint32_t cursor;
	pthread_mutex_t lock;
} eg_pool_t;

int eg_pool_init(eg_pool_t *p, const char *pool4, const char *pool6, hutch_err_t *err);
void eg_pool_fini(eg_pool_t *p);
/* Next free slot after the last one given (so addresses are not reused
 * at once). -ENOSPC when full. */
int eg_pool_alloc(eg_pool_t *p, uint32_t *slot, hutch_err_t *err);
/* Marks slot used (recovery); false if it already was or is out of range. */
bool eg_pool_reserve(eg_pool_t *p, uint32_t slot);
void eg_pool_release(eg_pool_t *p, uint32_t slot);
/* host = 1 for the gateway, slot + 2 for a sandbox. */
void eg_pool_addr4(const eg_pool_t *p, uint32_t host, uint8_t out[4]);
void eg_pool_addr6(const eg_pool_t *p, uint32_t host, uint8_t out[16]);
/* The slot an address belongs to, or -1. */
int64_t eg_pool_slot_of(const eg_pool_t *p, int family, const uint8_t *addr);
void eg_pool_cidr4(const eg_pool_t *p, eg_cidr_t *out);
void eg_pool_cidr6(const eg_pool_t *p, eg_cidr_t *out);

/* ---- the instance and its sandboxes ---- */

typedef struct eg_dns eg_dns_t;

typedef struct eg_upstream {
	struct sockaddr_storage addr;
	socklen_t len;
	char text[80];
} eg_upstream_t;

/* Where a learned address sits in the kernel. */
#define EG_WHERE_NONE 0       /* nowhere: answered for a name that was open or
			       * unlisted; remembered for a later policy and
			       * for naming drops in the audit */
#define EG_WHERE_LEARNED 'l'  /* in learned4/6: answered for an allowed name */
#define EG_WHERE_SHUNNED 's'  /* in shunned4/6: answered for a denied name */

/* An address the resolver answered to a sandbox. At most one entry per
 * (address, where) for LEARNED and SHUNNED, as each is one element.
 *
 * Entries of denied names (denied: the name, or a name on its chain, is
 * denied by the current rules) are kept apart from the rest: max_learned
 * bounds the others, whose oldest go when it is reached, and never evicts
 * one of these. An address may have several (one per denied name that
 * answered it); the one in SHUNNED holds the element, with the latest
 * expiry of them all, and a denied name's answer never shortens it. */
typedef struct eg_learned {
	uint8_t family;
	uint8_t addr[16];
	char where;         /* EG_WHERE_* */
	bool denied;        /* answered for a denied name: never evicted */
	bool watched;       /* the resolver's own lookup of a denied name (or
			     * found in the kernel after a restart): not
			     * counted against the sandbox's max_learned */
	int64_t expires_ms; /* CLOCK_MONOTONIC */
	char *name;         /* the name asked; NULL: found in the kernel after
			     * a restart, origin unknown */
	char *via;          /* the CNAME chain after name, space-separated, or NULL */
} eg_learned_t;

typedef struct eg_sandbox {
	char *id;
	char *tenant;
	uint32_t slot;
	char ifname[IFNAMSIZ];
	char counter[IFNAMSIZ + 16]; /* its drop counter object */
	uint8_t addr4[4];
	bool has6;
	uint8_t addr6[16];
	char *netns_path;
	atomic_int refs;
	pthread_mutex_t lock;     /* everything below */
	bool dead;                /* detached: change nothing more */
	eg_rules_t *rules;
	eg_learned_t *learned;
	size_t n_learned, cap_learned;
	uint64_t dropped_packets; /* from its nft counter, so far */
	/* Denied names kept resolved (dns_watch.c): rules_gen counts rule
	 * changes, watch_gen is the one whose names were last looked up;
	 * watch_cond is signalled when it moves. */
	uint64_t rules_gen, watch_gen;
	pthread_cond_t watch_cond;
	/* resolver thread only */
	unsigned dns_pending;     /* queries in flight */
	unsigned dns_conns;       /* TCP connections */
	uint64_t watch_round;     /* rules_gen of the round in flight or done */
	bool watch_active;        /* a round is in flight */
	bool watch_pumping;
	char **watch_names;       /* the round's names (NULL-terminated) */
	size_t watch_n, watch_next; /* how many, and the next to ask */
	unsigned watch_inflight;  /* its queries in flight */
	bool watch_failed;
	uint32_t watch_min_ttl;
	int64_t watch_next_ms;    /* next refresh */
	struct eg_recent_drop {
		uint8_t family, proto;
		uint8_t addr[16];
		uint16_t port;
		int64_t at_ms;
	} recent[16];             /* drops audited lately (no repeats) */
	unsigned recent_next;
} eg_sandbox_t;

typedef struct eg_instance {
	const hutch_host_t *host;
	const eg_config_t *cfg;
	eg_pool_t pool;
	char table[64];
	char prefix[16];
	uint8_t gw4[4];
	uint8_t gw6[16];
	bool default_allow;
	bool audit_drops;    /* audit and audit_drops */
	eg_cidr_t *blocked;  /* normalized: config + always-blocked ranges */
	size_t n_blocked;
	eg_cidr_t *nat64;    /* NAT64 prefixes (/96 each): an IPv4 denial holds
			      * for the IPv4 address they embed too */
	size_t n_nat64;
	eg_upstream_t *upstreams;
	size_t n_upstreams;
	int host_netns_fd;
	int nflog_fd;        /* -1 without drop audit */
	char *netns_dir;     /* <run_dir>/netns */
	char *state_dir;     /* <run_dir>/sandboxes */
	eg_nfnl_cache_t nl_cache;
	pthread_mutex_t lock; /* the registry */
	eg_sandbox_t **by_slot;
	size_t n_sandboxes;
	eg_dns_t *dns;
	atomic_uint_fast64_t dropped_total;
} eg_instance_t;

static inline void eg_log(const eg_instance_t *in, hutch_log_level_t level, const char *msg)
{
	in->host->log(in->host, level, "%s", msg);
}

int64_t eg_now_ms(void);

/* ---- lifecycle.c ---- */

/* The network ops (see hutch_network_ops_t). */
int eg_attach(eg_instance_t *in, const hutch_net_attach_t *req, hutch_net_attachment_t *out,
	      hutch_err_t *err);
int eg_detach(eg_instance_t *in, const char *sandbox_id, hutch_err_t *err);
int eg_policy_update(eg_instance_t *in, const char *sandbox_id,
		     const hutch_net_policy_t *const *policies, size_t n, bool set, hutch_err_t *err);
int eg_gc(eg_instance_t *in, const char *const *live_ids, size_t n, hutch_err_t *err);
/* Removes what no registered sandbox owns: interfaces, set elements and
 * pinned namespaces of ours (init, gc). */
int eg_gc_orphans(eg_instance_t *in, hutch_err_t *err);

/* ---- sandbox.c ---- */

eg_sandbox_t *eg_sandbox_new(const eg_instance_t *in, const char *id, const char *tenant,
			     uint32_t slot);
void eg_sandbox_ref(eg_sandbox_t *sb);
void eg_sandbox_unref(eg_sandbox_t *sb);
/* The registry. add fails with -EEXIST for a taken id or slot. */
int eg_registry_add(eg_instance_t *in, eg_sandbox_t *sb, hutch_err_t *err);
void eg_registry_remove(eg_instance_t *in, eg_sandbox_t *sb);
/* Referenced (unref when done), or NULL. */
eg_sandbox_t *eg_registry_find_id(eg_instance_t *in, const char *id);
eg_sandbox_t *eg_registry_find_addr(eg_instance_t *in, int family, const uint8_t *addr);
/* Every registered sandbox, referenced; free with eg_registry_list_free. */
eg_sandbox_t **eg_registry_list(eg_instance_t *in, size_t *n);
void eg_registry_list_free(eg_sandbox_t **v, size_t n);

/* State files: <run_dir>/sandboxes/<id>, so a restarted daemon's plugin
 * knows the sandboxes that kept running. */
int eg_state_write(const eg_instance_t *in, eg_sandbox_t *sb, hutch_err_t *err);
void eg_state_remove(const eg_instance_t *in, const char *id);
/* Loads every state file into the registry (init). */
void eg_state_load_all(eg_instance_t *in);

/* ---- learned.c ---- */

/* Installs new rules on a running sandbox: the rules' elements and the
 * learned addresses moved to where the new rules put them, in one
 * transaction. Takes ownership of rules. */
int eg_sandbox_set_rules(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb, eg_rules_t *rules,
			 hutch_err_t *err);

/* What an answer did, for the audit line. */
typedef struct eg_learn_result {
	eg_verdict_t verdict;
	/* The pattern that decided and its policy ("" when none), copied:
	 * the rules may change once the sandbox's lock is let go. */
	char pattern[300];
	char policy[256];
	const char *denied_via;    /* a CNAME target that is denied, or NULL */
	char addr_verdict[DNS_MAX_ADDRS]; /* 'a' allowed, 'd' dropped (a deny, a
					   * blocked range, or a name not allowed),
					   * 's' shunned (a denied name) */
	char policies[256];
	size_t evicted;            /* entries evicted for max_learned */
	const char *limit;         /* the limit that refused the answer, or NULL */
} eg_learn_result_t;

/* Applies a resolver answer to sb: adds the answered addresses of an
 * allowed name to its learned set (timeout from the TTL), those of a
 * denied name to its shunned set, before the caller releases the answer.
 * watched: the answer to the resolver's own lookup of a denied name.
 * Fails (and the caller answers SERVFAIL) when the sandbox is gone, the
 * sets could not be changed, or (-ENOSPC, res->limit set) the sandbox
 * asked for more denied names' addresses than max_learned: those are
 * never evicted, so past that such an answer is not given. */
int eg_sandbox_learn(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb,
		     const dns_question_t *q, const dns_answer_t *a, bool watched,
		     eg_learn_result_t *res, hutch_err_t *err);
/* The verdict for a question before it is forwarded. */
eg_verdict_t eg_sandbox_verdict(eg_sandbox_t *sb, const char *name, bool plain);
/* The name addr was last answered for to sb (free it), or NULL. */
char *eg_learned_name(eg_sandbox_t *sb, int family, const uint8_t *addr);
/* A new zeroed entry at the end of sb's table (sb locked). */
eg_learned_t *eg_learned_append(eg_sandbox_t *sb);
void eg_learned_free(eg_sandbox_t *sb);

/* The always-blocked range (pools, link-local, metadata, configured
 * blocked_cidrs) holding addr, directly or as the IPv4 address a NAT64
 * form embeds, or NULL. */
const eg_cidr_t *eg_blocked_range(const eg_instance_t *in, int family, const uint8_t *addr);
bool eg_blocked(const eg_instance_t *in, int family, const uint8_t *addr);
/* When addr (IPv6) lies in one of the NAT64 prefixes: true, and the IPv4
 * address it embeds in out. */
bool eg_nat64_embedded(const eg_instance_t *in, const uint8_t addr[16], uint8_t out[4]);

/* ---- sets.c ---- */

#define EG_SET_SRC4 "src4"
#define EG_SET_SRC6 "src6"
#define EG_SET_OPEN "open"
#define EG_SET_ALLOW4 "allow4"
#define EG_SET_ALLOW6 "allow6"
#define EG_SET_DENY4 "deny4"
#define EG_SET_DENY6 "deny6"
#define EG_SET_LEARNED4 "learned4"
#define EG_SET_LEARNED6 "learned6"
#define EG_SET_SHUNNED4 "shunned4"
#define EG_SET_SHUNNED6 "shunned6"
#define EG_SET_NAT64 "nat64"         /* the NAT64 prefixes (not per sandbox) */
#define EG_MAP_COUNTERS "drop_counters"
#define EG_SET_AUDIT_RATE "audit_rate"

/* Queues the elements that tie sb's interface to it (its source
 * addresses, its drop counter) in nl's open batch. */
void eg_sets_sandbox(eg_instance_t *in, eg_nfnl_t *nl, const eg_sandbox_t *sb, bool add);
/* Queues the elements of rules for sb (add or remove). */
void eg_sets_rules(eg_instance_t *in, eg_nfnl_t *nl, const eg_sandbox_t *sb,
		   const eg_rules_t *rules, bool add);
/* Queues one learned (or shunned) address. op: ADD, REFRESH or REMOVE. */
void eg_sets_learned(eg_instance_t *in, eg_nfnl_t *nl, const eg_sandbox_t *sb, int family,
		     const uint8_t *addr, bool denied, eg_elem_op_t op, uint64_t timeout_ms);
/* Removes every element keyed by ifname, in every per-sandbox set, and
 * its counter: for detach and for leftovers after a crash. Commits. */
int eg_sets_purge(eg_instance_t *in, eg_nfnl_t *nl, const char *ifname, hutch_err_t *err);
/* Lists the interface names that have elements in the table (gc). */
typedef void (*eg_ifname_cb)(void *data, const char *ifname);
int eg_sets_ifnames(eg_instance_t *in, eg_nfnl_t *nl, eg_ifname_cb cb, void *data,
		    hutch_err_t *err);
/* Reads the learned and shunned sets' elements of sb back into its table
 * (recovery after a restart). */
int eg_sets_recover_learned(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb,
			    hutch_err_t *err);
/* Puts all of sb's elements (its own, its rules', its learned and
 * shunned addresses) in a table made anew. Commits. */
int eg_sets_restore(eg_instance_t *in, eg_nfnl_t *nl, eg_sandbox_t *sb, hutch_err_t *err);
/* Reads and zeroes the drop counters; adds them up per sandbox and in the
 * metrics. */
int eg_sets_collect_counters(eg_instance_t *in, eg_nfnl_t *nl, hutch_err_t *err);

/* ---- nft.c ---- */

/* Why a sandbox's packet was dropped: the rule that dropped it marks it
 * EG_DROP_MARK(reason) for the audit. */
typedef enum eg_drop_reason {
	EG_DROP_UNKNOWN = 0,
	EG_DROP_SPOOFED = 1,     /* a source address not the sandbox's */
	EG_DROP_HOST = 2,        /* the host itself, but for the resolver */
	EG_DROP_DNS = 3,         /* DNS or DNS over TLS to another server */
	EG_DROP_BLOCKED = 4,     /* always blocked: other sandboxes, link-local,
				  * metadata, blocked_cidrs */
	EG_DROP_DENIED = 5,      /* a denied prefix, or answered for a denied name */
	EG_DROP_NOT_ALLOWED = 6, /* allowed by nothing */
	EG_DROP_INVALID = 7,     /* not part of any connection */
	EG_DROP_REASONS
} eg_drop_reason_t;
#define EG_DROP_MARK_TAG 0x68650000u /* "he" */
#define EG_DROP_MARK(r) (EG_DROP_MARK_TAG | (unsigned)(r))
const char *eg_drop_reason_name(eg_drop_reason_t r);


/* Writes the table's structure. fresh: delete and recreate it (no
 * sandbox survives from before); else keep the sets' elements and replace
 * only chains and the blocked ranges, in one transaction. */
int eg_nft_install(eg_instance_t *in, bool fresh, hutch_err_t *err);
int eg_nft_remove(eg_instance_t *in, hutch_err_t *err);

/* ---- conntrack.c ---- */

/* Deletes every connection tracking entry whose original source is addr;
 * *n_out (may be NULL) gets how many there were. */
int eg_ct_forget(eg_nfnl_t *nl, int family, const uint8_t *addr, unsigned *n_out,
		 hutch_err_t *err);

/* ---- netns.c ---- */

/* Makes a network namespace pinned at path (a bind mount, like `ip netns
 * add`), runs inside(arg) on a thread in it, and hands the namespace's fd
 * back in *fd_out (or closes it when fd_out is NULL). On failure nothing
 * is left. */
int eg_netns_create(const char *path, int (*inside)(void *arg, hutch_err_t *err), void *arg,
		    int *fd_out, hutch_err_t *err);
/* Unpins it; the kernel frees it when nothing else holds it. Idempotent. */
int eg_netns_remove(const char *path, hutch_err_t *err);

/* ---- link.c ---- */

typedef struct eg_link_plan {
	const char *host_ifname;
	const char *alias;   /* the sandbox id, on the host end (for gc) */
	int host_netns_fd;
	uint8_t addr4[4], gw4[4];
	bool has6;
	uint8_t addr6[16], gw6[16];
} eg_link_plan_t;

/* Inside the new namespace: loopback up, the veth pair (eth0 here, the
 * host end moved to the host's namespace), eth0's addresses and default
 * routes via the gateway. */
int eg_link_inside(const eg_link_plan_t *p, hutch_err_t *err);
/* In the host's namespace: the host end's alias, the gateway address, up,
 * and the route to the sandbox. */
int eg_link_host(const eg_link_plan_t *p, hutch_err_t *err);
/* Deletes a link (both ends of a veth); a missing one is fine. */
int eg_link_delete(const char *ifname, hutch_err_t *err);
/* Calls cb for each link whose name starts with prefix. */
typedef void (*eg_link_cb)(void *data, const char *name, const char *alias);
int eg_link_list(const char *prefix, eg_link_cb cb, void *data, hutch_err_t *err);

/* ---- dns_resolver.c (and dns_clients.c, dns_query.c, dns_watch.c) ---- */

/* Binds the resolver's sockets (UDP and TCP on the gateway addresses) and
 * starts its thread. */
int eg_dns_start(eg_instance_t *in, eg_dns_t **out, hutch_err_t *err);
/* Stops the thread and closes everything (fini). NULL is fine. */
void eg_dns_stop(eg_dns_t *dns);
/* Has the resolver look at the sandboxes' denied names now (their rules
 * changed). Any thread. */
void eg_dns_kick(eg_dns_t *dns);
/* Waits until the denied names of sb's current rules were looked up (or
 * timeout_ms passed): -ETIMEDOUT then. Any thread but the resolver's. */
int eg_dns_watch_wait(eg_dns_t *dns, eg_sandbox_t *sb, int64_t timeout_ms);

/* ---- audit.c ---- */

void eg_audit_dns(eg_instance_t *in, const eg_sandbox_t *sb, const dns_question_t *q,
		  eg_verdict_t verdict, const eg_learn_result_t *res, const dns_answer_t *a,
		  const char *outcome);
void eg_audit_sandbox(eg_instance_t *in, const eg_sandbox_t *sb, const char *event);
struct eg_pkt;
void eg_audit_drop(eg_instance_t *in, eg_sandbox_t *sb, eg_drop_reason_t reason,
		   const struct eg_pkt *p);

/* ---- nflog.c ---- */

/* Binds NFLOG group for dropped packets; a non-blocking socket. */
int eg_nflog_open(uint16_t group, int *fd_out, hutch_err_t *err);
/* Reads what is there and audits it (resolver thread). */
void eg_nflog_read(eg_instance_t *in, int fd);
void eg_metric_query(eg_instance_t *in, const char *verdict);
void eg_metric(eg_instance_t *in, const char *name, double delta);

#endif
