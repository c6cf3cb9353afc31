/*
 * dns_resolver.h: the insides of the sandboxes' resolver, shared by its
 * files.
 *
 * The resolver listens on the gateway address (UDP and TCP, port
 * dns_port), the only host address a sandbox may reach; the query's source
 * address names the sandbox (prerouting drops spoofed sources). A query is
 * forwarded to the upstream resolvers with a fresh random id from a fresh
 * socket; the answer is checked against the question, its CNAME chain and
 * addresses are read (dns_msg.c), and eg_sandbox_learn() puts the
 * addresses of an allowed name in the sandbox's nftables set, committed,
 * before the answer goes back: the first connection after the answer can
 * never beat the set update.
 *
 *   dns_resolver.c  the thread, its loop, the sockets, start and stop
 *   dns_clients.c   the sandboxes' side: UDP and TCP servers, replies
 *   dns_query.c     one query: forwarding, retries, the answer
 *   dns_watch.c     denied names kept resolved, so their addresses are
 *                   dropped even when a sandbox never asks for them
 *
 * Everything here runs on the resolver's own thread and libuv loop, but
 * eg_dns_kick(). Limits: 64 queries in flight per sandbox, 4096 in all,
 * 16 TCP connections per sandbox (idle ones closed after 10 s); the
 * resolver's own lookups of denied names have limits of their own.
 */
#ifndef EGRESS_DNS_RESOLVER_H
#define EGRESS_DNS_RESOLVER_H

#include <uv.h>

#include "egress.h"

#define DNS_MAX_PENDING_PER_SANDBOX 64
#define DNS_MAX_PENDING 4096
#define DNS_MAX_CONNS_PER_SANDBOX 16
#define DNS_MAX_QUERIES_PER_CONN 16
#define DNS_CONN_IDLE_MS 10000
#define DNS_MAX_ATTEMPTS 4
/* The resolver's own queries (dns_watch.c): in flight per sandbox, and in
 * all; they do not count against the sandboxes' limits above. */
#define WATCH_MAX_INFLIGHT 64
#define DNS_MAX_OWN_PENDING 1024

typedef struct tcp_conn tcp_conn_t;
typedef struct query query_t;

/* One try at an upstream: a UDP socket, or a TCP connection when a TCP
 * client got a truncated UDP answer. */
typedef struct attempt {
	struct attempt *next;
	query_t *q;
	size_t upstream;
	bool tcp;
	union {
		uv_udp_t udp;
		uv_tcp_t tcp;
	} h;
	uv_udp_send_t send;
	uv_connect_t connect;
	uv_write_t write;
	uint8_t len_prefix[2];
	strbuf_t in; /* TCP: what came back so far */
} attempt_t;

/* The end of a query the resolver asked on its own (dns_watch.c): ok with
 * the smallest TTL of its addresses (0 when none), or failed. */
typedef void (*dns_query_done_cb)(eg_dns_t *dns, eg_sandbox_t *sb, bool ok, uint32_t min_ttl,
				  void *data);

struct query {
	query_t *next, *prev;
	eg_dns_t *dns;
	eg_sandbox_t *sb;
	tcp_conn_t *conn;       /* TCP client, or NULL */
	int server;             /* UDP client: index of the socket it used;
				 * -1 for a TCP client or an own query */
	struct sockaddr_storage client;
	uint16_t client_id, up_id;
	dns_question_t q;
	uint8_t *msg;           /* the query as sent upstream */
	size_t len;
	unsigned tries;
	size_t upstream;
	attempt_t *attempts;
	uv_timer_t timer;
	int handles;            /* open handles (timer, attempts) */
	bool done;
	bool own;               /* the resolver's own: no client to answer */
	dns_query_done_cb own_done;
	void *own_data;
};

struct tcp_conn {
	tcp_conn_t *next, *prev;
	eg_dns_t *dns;
	eg_sandbox_t *sb;
	uv_tcp_t h;
	uv_timer_t idle;
	strbuf_t in;
	int handles;
	int refs;               /* itself while open + queries */
	unsigned queries;
	bool closing;
	bool eof;               /* the client shut down its sending side */
	bool shutting;          /* answered all it asked after that: closing */
	uv_shutdown_t shutdown;
};

struct eg_dns {
	eg_instance_t *in;
	pthread_t thread;
	bool running;
	uv_loop_t loop;
	uv_async_t stop;
	uv_async_t kick;        /* eg_dns_kick: look at the watches now */
	uv_udp_t udp[2];
	uv_tcp_t tcp[2];
	int n_servers;
	uv_timer_t counters;
	uv_timer_t watch;       /* dns_watch.c, every second */
	uv_poll_t nflog;        /* dropped packets, when audited */
	bool has_nflog;
	eg_nfnl_t nl;
	query_t *queries;
	unsigned n_queries;     /* all in flight */
	unsigned n_own;         /* of which the resolver's own */
	tcp_conn_t *conns;
	uint16_t ids[256];
	unsigned n_ids;
	uint8_t rbuf[DNS_MSG_MAX];
	dns_answer_t answer;    /* scratch */
};

/* dns_resolver.c */
uint16_t dns_random_id(eg_dns_t *dns);
void dns_log(eg_dns_t *dns, hutch_log_level_t level, const char *fmt, ...) HUTCH_PRINTF(3, 4);

/* dns_clients.c */
int dns_clients_start(eg_dns_t *dns, int *fds, hutch_err_t *err);
void dns_clients_stop(eg_dns_t *dns);
void dns_reply_send(query_t *q, const uint8_t *data, size_t len);
void dns_reply_error(query_t *q, unsigned rcode);
void dns_conn_unref(tcp_conn_t *c);
/* One of c's queries ended (its answer, if any, written or queued). */
void dns_conn_query_done(tcp_conn_t *c);

/* dns_query.c */
/* A query from a sandbox: conn is the TCP connection it came on, or NULL
 * for UDP (then server and from say where it came from). */
void dns_query_begin(eg_dns_t *dns, eg_sandbox_t *sb, tcp_conn_t *conn, int server,
		     const struct sockaddr *from, const uint8_t *data, size_t len);
/* A query of the resolver's own for sb: its answer is learned like a
 * sandbox's, and done() is called at the end instead of a reply. */
void dns_query_own(eg_dns_t *dns, eg_sandbox_t *sb, const char *name, uint16_t qtype,
		   dns_query_done_cb done, void *data);
/* Ends a query (answered or not) and closes what it holds. */
void dns_query_finish(query_t *q);
/* dns_local.c: answers q from the names published for its sandbox
 * (local_names_dir); false when q is not for one of those names. */
bool dns_local_answer(query_t *q);

/* dns_watch.c */
void dns_watch_start(eg_dns_t *dns);
void dns_watch_run(eg_dns_t *dns);

/* router_names.c: whether name is under router_domain (a name of
 * hutchd's router), and the answer to such a query: the gateway's IPv4
 * address for A, no data otherwise. Returns the length, 0 if cap is too
 * small. */
bool eg_router_name(const eg_config_t *c, const char *name);
size_t eg_router_answer(const uint8_t *query, size_t qlen, const dns_question_t *q,
			const uint8_t gw4[4], uint8_t *out, size_t cap);

#endif
