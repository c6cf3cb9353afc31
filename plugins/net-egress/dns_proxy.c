/*
 * dns_proxy.c: the sandboxes' resolver.
 *
 * It listens on the gateway address (UDP and TCP, port dns_port), the
 * only host address a sandbox may reach. The query's source address names
 * the sandbox (prerouting drops spoofed sources). A query is forwarded to
 * the upstream resolvers with a fresh random id from a fresh socket; the
 * answer is checked against the question, its CNAME chain and addresses
 * are read (dns_msg.c), and eg_sandbox_learn() adds the addresses of an
 * allowed name to the sandbox's nftables set, committed, before the
 * answer goes back to the sandbox: the first connection after the answer
 * can never beat the set update. Answers' TTLs are capped at ttl_max, so a
 * client does not keep an address longer than the set does.
 *
 * Names a sandbox may not reach are forwarded too (disallowed_names =
 * "forward": the connection then times out, as it would for any dropped
 * address) or answered NXDOMAIN/REFUSED without being forwarded (no DNS
 * tunnel out of a locked-down sandbox).
 *
 * Everything here runs on the resolver's own thread and libuv loop.
 * Limits: 64 queries in flight per sandbox, 4096 in all, 16 TCP
 * connections per sandbox (idle ones closed after 10 s).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>

#include "cleanup.h"
#include "egress.h"

#define MAX_PENDING_PER_SANDBOX 64
#define MAX_PENDING 4096
#define MAX_CONNS_PER_SANDBOX 16
#define MAX_QUERIES_PER_CONN 16
#define CONN_IDLE_MS 10000
#define MAX_ATTEMPTS 4

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

struct query {
	query_t *next, *prev;
	eg_dns_t *dns;
	eg_sandbox_t *sb;
	tcp_conn_t *conn;       /* TCP client, or NULL */
	int server;             /* UDP client: index of the socket it used */
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
};

struct eg_dns {
	eg_instance_t *in;
	pthread_t thread;
	bool running;
	uv_loop_t loop;
	uv_async_t stop;
	uv_udp_t udp[2];
	uv_tcp_t tcp[2];
	int n_servers;
	uv_timer_t counters;
	uv_poll_t nflog;     /* dropped packets, when audited */
	bool has_nflog;
	eg_nfnl_t nl;
	query_t *queries;
	unsigned n_queries;
	tcp_conn_t *conns;
	uint16_t ids[256];
	unsigned n_ids;
	uint8_t rbuf[DNS_MSG_MAX];
	dns_answer_t answer; /* scratch, loop thread only */
};

static uint16_t random_id(eg_dns_t *dns)
{
	if (dns->n_ids == 0) {
		if (getrandom(dns->ids, sizeof dns->ids, 0) != (ssize_t)sizeof dns->ids)
			for (size_t i = 0; i < ARRAY_SIZE(dns->ids); i++)
				dns->ids[i] = (uint16_t)rand();
		dns->n_ids = ARRAY_SIZE(dns->ids);
	}
	return dns->ids[--dns->n_ids];
}

static void log_msg(eg_dns_t *dns, hutch_log_level_t level, const char *fmt, ...)
	HUTCH_PRINTF(3, 4);
static void log_msg(eg_dns_t *dns, hutch_log_level_t level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	eg_log(dns->in, level, buf);
}

/* ---- replies ---- */

typedef struct udp_reply {
	uv_udp_send_t req;
	size_t len;
	uint8_t data[];
} udp_reply_t;

typedef struct tcp_reply {
	uv_write_t req;
	size_t len;
	uint8_t data[];
} tcp_reply_t;

static void udp_reply_done(uv_udp_send_t *req, int status)
{
	(void)status;
	free(req->data);
}

static void tcp_reply_done(uv_write_t *req, int status)
{
	(void)status;
	free(req->data);
}

static void conn_close(tcp_conn_t *c);

static void reply_send(query_t *q, const uint8_t *data, size_t len)
{
	eg_dns_t *dns = q->dns;
	if (q->conn) {
		if (q->conn->closing)
			return;
		tcp_reply_t *r = xmalloc(sizeof *r + len + 2);
		r->req.data = r;
		r->len = len + 2;
		r->data[0] = (uint8_t)(len >> 8);
		r->data[1] = (uint8_t)len;
		memcpy(r->data + 2, data, len);
		uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)r->len);
		if (uv_write(&r->req, (uv_stream_t *)&q->conn->h, &b, 1, tcp_reply_done) < 0) {
			free(r);
			conn_close(q->conn);
		}
		return;
	}
	udp_reply_t *r = xmalloc(sizeof *r + len);
	r->req.data = r;
	r->len = len;
	memcpy(r->data, data, len);
	uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
	if (uv_udp_send(&r->req, &dns->udp[q->server], &b, 1, (struct sockaddr *)&q->client,
			udp_reply_done) < 0)
		free(r);
}

static void reply_error(query_t *q, unsigned rcode)
{
	uint8_t out[DNS_HEADER_LEN + DNS_WIRE_NAME_MAX + 8];
	/* The question as the client sent it, with its own id. */
	dns_id_set(q->msg, q->client_id);
	size_t n = dns_error_reply(q->msg, q->len, &q->q, rcode, out, sizeof out);
	dns_id_set(q->msg, q->up_id);
	if (n)
		reply_send(q, out, n);
}

/* ---- queries ---- */

static void query_maybe_free(query_t *q);

static void attempt_closed(uv_handle_t *h)
{
	attempt_t *a = h->data;
	query_t *q = a->q;
	sb_free(&a->in);
	free(a);
	q->handles--;
	query_maybe_free(q);
}

static void timer_closed(uv_handle_t *h)
{
	query_t *q = h->data;
	q->handles--;
	query_maybe_free(q);
}

static void conn_unref(tcp_conn_t *c);

static void query_maybe_free(query_t *q)
{
	if (!q->done || q->handles > 0)
		return;
	if (q->conn)
		conn_unref(q->conn);
	eg_sandbox_unref(q->sb);
	free(q->msg);
	free(q);
}

/* Ends a query (answered or not) and closes what it holds. */
static void query_finish(query_t *q)
{
	if (q->done)
		return;
	q->done = true;
	eg_dns_t *dns = q->dns;
	if (q->prev)
		q->prev->next = q->next;
	else
		dns->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	dns->n_queries--;
	q->sb->dns_pending--;
	if (q->conn)
		q->conn->queries--;
	uv_close((uv_handle_t *)&q->timer, timer_closed);
	for (attempt_t *a = q->attempts; a; a = a->next)
		if (!uv_is_closing((uv_handle_t *)&a->h))
			uv_close((uv_handle_t *)&a->h, attempt_closed);
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
	if (a->sa_family != b->ss_family)
		return false;
	if (a->sa_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
	return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, 16) == 0;
}

static void attempt_start(query_t *q, bool tcp);

/* An upstream's answer to q: learn, then release it. */
static void answer_handle(query_t *q, attempt_t *at, uint8_t *data, size_t len)
{
	eg_dns_t *dns = q->dns;
	eg_instance_t *in = dns->in;
	if (len < DNS_HEADER_LEN || ((data[0] << 8) | data[1]) != q->up_id)
		return;
	dns_answer_t *a = &dns->answer;
	if (dns_response_parse(data, len, &q->q, a) < 0) {
		eg_metric(in, "egress_dns_bad_answers_total", 1);
		return; /* wait for a good one, or time out */
	}
	if ((a->h.flags & DNS_FLAG_TC) && q->conn && !at->tcp) {
		/* A TCP client gets the whole answer: ask again over TCP. */
		attempt_start(q, true);
		return;
	}
	eg_learn_result_t res;
	hutch_err_t err = {0};
	if (eg_sandbox_learn(in, &dns->nl, q->sb, &q->q, a, &res, &err) < 0) {
		log_msg(dns, HUTCH_LOG_WARN, "sandbox %s: %s: answering SERVFAIL", q->sb->id,
			err.message);
		reply_error(q, DNS_RCODE_SERVFAIL);
		eg_audit_dns(in, q->sb, &q->q, res.verdict, NULL, a, "servfail");
		eg_metric_query(in, "error");
		query_finish(q);
		return;
	}
	uint32_t ttl_max = in->cfg->ttl_max_ms > 0 ? (uint32_t)(in->cfg->ttl_max_ms / 1000) : 0;
	if (ttl_max)
		dns_ttl_cap(data, len, ttl_max);
	dns_id_set(data, q->client_id);
	reply_send(q, data, len);
	eg_audit_dns(in, q->sb, &q->q, res.verdict, &res, a, "answered");
	eg_metric_query(in, eg_verdict_name(res.verdict));
	query_finish(q);
}

static void alloc_rbuf(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	attempt_t *a = h->data;
	eg_dns_t *dns = a->q->dns;
	*buf = uv_buf_init((char *)dns->rbuf, sizeof dns->rbuf);
}

static void on_upstream_udp(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			    const struct sockaddr *from, unsigned flags)
{
	attempt_t *a = h->data;
	query_t *q = a->q;
	if (q->done || nread <= 0 || !from || (flags & UV_UDP_PARTIAL))
		return;
	if (!same_addr(from, &q->dns->in->upstreams[a->upstream].addr))
		return; /* not from the server we asked */
	answer_handle(q, a, (uint8_t *)buf->base, (size_t)nread);
}

static void upstream_sent(uv_udp_send_t *req, int status)
{
	(void)req;
	(void)status; /* a lost send is a timeout */
}

static void tcp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	attempt_t *a = h->data;
	sb_reserve(&a->in, 4096);
	*buf = uv_buf_init(a->in.buf + a->in.len, (unsigned)(a->in.cap - a->in.len - 1));
}

static void on_upstream_tcp_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	attempt_t *a = s->data;
	query_t *q = a->q;
	if (q->done)
		return;
	if (nread < 0) {
		uv_close((uv_handle_t *)&a->h, attempt_closed);
		return;
	}
	a->in.len += (size_t)nread;
	a->in.buf[a->in.len] = '\0';
	if (a->in.len < 2)
		return;
	size_t want = ((size_t)(uint8_t)a->in.buf[0] << 8) | (uint8_t)a->in.buf[1];
	if (a->in.len < 2 + want)
		return;
	answer_handle(q, a, (uint8_t *)a->in.buf + 2, want);
	if (!q->done && !uv_is_closing((uv_handle_t *)&a->h))
		uv_close((uv_handle_t *)&a->h, attempt_closed);
}

static void upstream_tcp_written(uv_write_t *req, int status)
{
	attempt_t *a = req->data;
	if (status < 0 && !uv_is_closing((uv_handle_t *)&a->h))
		uv_close((uv_handle_t *)&a->h, attempt_closed);
}

static void on_upstream_connect(uv_connect_t *req, int status)
{
	attempt_t *a = req->data;
	query_t *q = a->q;
	if (status < 0 || q->done) {
		if (!uv_is_closing((uv_handle_t *)&a->h))
			uv_close((uv_handle_t *)&a->h, attempt_closed);
		return;
	}
	a->len_prefix[0] = (uint8_t)(q->len >> 8);
	a->len_prefix[1] = (uint8_t)q->len;
	uv_buf_t bufs[2] = {uv_buf_init((char *)a->len_prefix, 2),
			    uv_buf_init((char *)q->msg, (unsigned)q->len)};
	a->write.data = a;
	if (uv_write(&a->write, (uv_stream_t *)&a->h, bufs, 2, upstream_tcp_written) < 0 ||
	    uv_read_start((uv_stream_t *)&a->h, tcp_alloc, on_upstream_tcp_read) < 0)
		uv_close((uv_handle_t *)&a->h, attempt_closed);
}

/* Asks q's current upstream, over UDP or TCP. A failure to even send is
 * left to the timer, which moves on to the next upstream. */
static void attempt_start(query_t *q, bool tcp)
{
	eg_dns_t *dns = q->dns;
	const eg_upstream_t *up = &dns->in->upstreams[q->upstream];
	attempt_t *a = xcalloc(1, sizeof *a);
	a->q = q;
	a->upstream = q->upstream;
	a->tcp = tcp;
	int r = tcp ? uv_tcp_init(&dns->loop, &a->h.tcp) : uv_udp_init(&dns->loop, &a->h.udp);
	if (r < 0) {
		free(a);
		return;
	}
	a->h.udp.data = a; /* same offset for both handle types */
	a->h.tcp.data = a;
	a->next = q->attempts;
	q->attempts = a;
	q->handles++;
	if (tcp) {
		a->connect.data = a;
		if (uv_tcp_connect(&a->connect, &a->h.tcp, (const struct sockaddr *)&up->addr,
				   on_upstream_connect) < 0)
			uv_close((uv_handle_t *)&a->h, attempt_closed);
		return;
	}
	struct sockaddr_storage any = {0};
	any.ss_family = up->addr.ss_family;
	uv_buf_t b = uv_buf_init((char *)q->msg, (unsigned)q->len);
	if (uv_udp_bind(&a->h.udp, (const struct sockaddr *)&any, 0) < 0 ||
	    uv_udp_recv_start(&a->h.udp, alloc_rbuf, on_upstream_udp) < 0 ||
	    uv_udp_send(&a->send, &a->h.udp, &b, 1, (const struct sockaddr *)&up->addr,
			upstream_sent) < 0)
		uv_close((uv_handle_t *)&a->h, attempt_closed);
}

static void on_query_timer(uv_timer_t *t)
{
	query_t *q = t->data;
	eg_dns_t *dns = q->dns;
	eg_instance_t *in = dns->in;
	if (q->done)
		return;
	q->tries++;
	size_t max = in->n_upstreams * 2 < MAX_ATTEMPTS ? in->n_upstreams * 2 : MAX_ATTEMPTS;
	if (q->tries >= max) {
		reply_error(q, DNS_RCODE_SERVFAIL);
		eg_audit_dns(in, q->sb, &q->q, eg_sandbox_verdict(q->sb, q->q.name, q->q.plain), NULL,
			     NULL, "upstream timeout");
		eg_metric(in, "egress_dns_upstream_timeouts_total", 1);
		eg_metric_query(in, "error");
		query_finish(q);
		return;
	}
	q->upstream = (q->upstream + 1) % in->n_upstreams;
	attempt_start(q, q->conn != NULL && q->attempts && q->attempts->tcp);
	uv_timer_start(&q->timer, on_query_timer, (uint64_t)in->cfg->upstream_timeout_ms, 0);
}

/* Handles one query from a sandbox. conn: the TCP connection it came on,
 * or NULL for UDP (then server and from say where it came from). */
static void query_begin(eg_dns_t *dns, eg_sandbox_t *sb, tcp_conn_t *conn, int server,
			const struct sockaddr *from, const uint8_t *data, size_t len)
{
	eg_instance_t *in = dns->in;
	query_t *q = xcalloc(1, sizeof *q);
	q->dns = dns;
	q->sb = sb;
	eg_sandbox_ref(sb);
	q->server = server;
	if (from)
		memcpy(&q->client, from,
		       from->sa_family == AF_INET ? sizeof(struct sockaddr_in)
						  : sizeof(struct sockaddr_in6));
	q->msg = xmalloc(len);
	memcpy(q->msg, data, len);
	q->len = len;
	if (conn) {
		q->conn = conn;
		conn->refs++;
		conn->queries++;
	}
	q->handles = 1;
	uv_timer_init(&dns->loop, &q->timer);
	q->timer.data = q;
	q->next = dns->queries;
	if (dns->queries)
		dns->queries->prev = q;
	dns->queries = q;
	dns->n_queries++;
	sb->dns_pending++;

	dns_header_t h;
	int r = dns_query_parse(data, len, &h, &q->q);
	q->client_id = len >= 2 ? (uint16_t)((data[0] << 8) | data[1]) : 0;
	q->up_id = q->client_id;
	if (r < 0) {
		/* Answer what can be answered; a response or a runt gets nothing. */
		if (len >= DNS_HEADER_LEN && !(h.flags & DNS_FLAG_QR)) {
			uint8_t out[DNS_HEADER_LEN];
			size_t n = dns_error_reply(data, len, NULL,
						   r == -ENOTSUP ? DNS_RCODE_NOTIMP : DNS_RCODE_FORMERR,
						   out, sizeof out);
			if (n)
				reply_send(q, out, n);
		}
		eg_metric_query(in, "malformed");
		query_finish(q);
		return;
	}
	if (sb->dns_pending > MAX_PENDING_PER_SANDBOX || dns->n_queries > MAX_PENDING ||
	    (conn && conn->queries > MAX_QUERIES_PER_CONN)) {
		reply_error(q, DNS_RCODE_REFUSED);
		eg_metric_query(in, "over_limit");
		query_finish(q);
		return;
	}
	eg_verdict_t v = eg_sandbox_verdict(sb, q->q.name, q->q.plain);
	const char *mode = in->cfg->disallowed_names;
	if ((v == EG_VERDICT_DENIED || v == EG_VERDICT_UNLISTED) && strcmp(mode, "forward") != 0) {
		bool nx = strcmp(mode, "nxdomain") == 0;
		reply_error(q, nx ? DNS_RCODE_NXDOMAIN : DNS_RCODE_REFUSED);
		eg_audit_dns(in, sb, &q->q, v, NULL, NULL, nx ? "nxdomain" : "refused");
		eg_metric_query(in, eg_verdict_name(v));
		query_finish(q);
		return;
	}
	q->up_id = random_id(dns);
	dns_id_set(q->msg, q->up_id);
	q->upstream = 0;
	attempt_start(q, false);
	uv_timer_start(&q->timer, on_query_timer, (uint64_t)in->cfg->upstream_timeout_ms, 0);
}

/* ---- the UDP server ---- */

static void server_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	eg_dns_t *dns = h->data;
	*buf = uv_buf_init((char *)dns->rbuf, sizeof dns->rbuf);
}

static bool sockaddr_ip(const struct sockaddr *sa, int *family, const uint8_t **addr)
{
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		*addr = (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		*family = AF_INET6;
		*addr = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		return true;
	}
	return false;
}

static void on_server_udp(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
			  const struct sockaddr *from, unsigned flags)
{
	eg_dns_t *dns = h->data;
	if (nread <= 0 || !from || (flags & UV_UDP_PARTIAL))
		return;
	int family;
	const uint8_t *addr;
	if (!sockaddr_ip(from, &family, &addr))
		return;
	eg_sandbox_t *sb = eg_registry_find_addr(dns->in, family, addr);
	if (!sb) {
		eg_metric_query(dns->in, "unknown_source");
		return;
	}
	int server = h == &dns->udp[0] ? 0 : 1;
	query_begin(dns, sb, NULL, server, from, (const uint8_t *)buf->base, (size_t)nread);
	eg_sandbox_unref(sb);
}

/* ---- the TCP server ---- */

static void conn_unref(tcp_conn_t *c)
{
	if (--c->refs > 0 || c->handles > 0)
		return;
	sb_free(&c->in);
	if (c->sb) {
		c->sb->dns_conns--;
		eg_sandbox_unref(c->sb);
	}
	free(c);
}

static void conn_handle_closed(uv_handle_t *h)
{
	tcp_conn_t *c = h->data;
	c->handles--;
	if (c->handles == 0) {
		c->refs++; /* conn_unref frees only at zero handles and refs */
		conn_unref(c);
	}
}

static void conn_close(tcp_conn_t *c)
{
	if (c->closing)
		return;
	c->closing = true;
	eg_dns_t *dns = c->dns;
	if (c->prev)
		c->prev->next = c->next;
	else
		dns->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	uv_close((uv_handle_t *)&c->h, conn_handle_closed);
	uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
	c->refs--; /* the connection's own reference */
}

static void on_conn_idle(uv_timer_t *t)
{
	conn_close(t->data);
}

static void conn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	tcp_conn_t *c = h->data;
	sb_reserve(&c->in, 4096);
	*buf = uv_buf_init(c->in.buf + c->in.len, (unsigned)(c->in.cap - c->in.len - 1));
}

static void on_conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	tcp_conn_t *c = s->data;
	if (c->closing)
		return;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	c->in.len += (size_t)nread;
	uv_timer_start(&c->idle, on_conn_idle, CONN_IDLE_MS, 0);
	size_t off = 0;
	while (c->in.len - off >= 2 && !c->closing) {
		size_t n = ((size_t)(uint8_t)c->in.buf[off] << 8) | (uint8_t)c->in.buf[off + 1];
		if (n == 0) {
			conn_close(c);
			return;
		}
		if (c->in.len - off - 2 < n)
			break;
		query_begin(c->dns, c->sb, c, -1, NULL, (const uint8_t *)c->in.buf + off + 2, n);
		off += 2 + n;
	}
	if (off) {
		memmove(c->in.buf, c->in.buf + off, c->in.len - off);
		c->in.len -= off;
	}
}

static void on_connection(uv_stream_t *server, int status)
{
	eg_dns_t *dns = server->data;
	if (status < 0)
		return;
	tcp_conn_t *c = xcalloc(1, sizeof *c);
	c->dns = dns;
	uv_tcp_init(&dns->loop, &c->h);
	uv_timer_init(&dns->loop, &c->idle);
	c->h.data = c->idle.data = c;
	c->handles = 2;
	c->refs = 1;
	c->next = dns->conns;
	if (dns->conns)
		dns->conns->prev = c;
	dns->conns = c;
	if (uv_accept(server, (uv_stream_t *)&c->h) < 0) {
		conn_close(c);
		return;
	}
	struct sockaddr_storage peer;
	int plen = sizeof peer;
	int family;
	const uint8_t *addr;
	if (uv_tcp_getpeername(&c->h, (struct sockaddr *)&peer, &plen) < 0 ||
	    !sockaddr_ip((struct sockaddr *)&peer, &family, &addr) ||
	    !(c->sb = eg_registry_find_addr(dns->in, family, addr))) {
		conn_close(c);
		return;
	}
	c->sb->dns_conns++;
	if (c->sb->dns_conns > MAX_CONNS_PER_SANDBOX) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->idle, on_conn_idle, CONN_IDLE_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->h, conn_alloc, on_conn_read) < 0)
		conn_close(c);
}

/* ---- counters ---- */

static void on_counters(uv_timer_t *t)
{
	eg_dns_t *dns = t->data;
	hutch_err_t err = {0};
	if (eg_sets_collect_counters(dns->in, &dns->nl, &err) < 0)
		log_msg(dns, HUTCH_LOG_DEBUG, "drop counters: %s", err.message);
}

/* ---- dropped packets ---- */

static void on_nflog(uv_poll_t *p, int status, int events)
{
	eg_dns_t *dns = p->data;
	if (status == 0 && (events & UV_READABLE))
		eg_nflog_read(dns->in, dns->in->nflog_fd);
}

/* ---- the thread ---- */

static void close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_stop(uv_async_t *a)
{
	eg_dns_t *dns = a->data;
	while (dns->queries)
		query_finish(dns->queries);
	while (dns->conns)
		conn_close(dns->conns);
	for (int i = 0; i < dns->n_servers; i++) {
		uv_close((uv_handle_t *)&dns->udp[i], NULL);
		uv_close((uv_handle_t *)&dns->tcp[i], NULL);
	}
	uv_close((uv_handle_t *)&dns->counters, NULL);
	if (dns->has_nflog)
		uv_close((uv_handle_t *)&dns->nflog, NULL);
	uv_close((uv_handle_t *)&dns->stop, NULL);
}

static void *dns_thread(void *arg)
{
	eg_dns_t *dns = arg;
	uv_run(&dns->loop, UV_RUN_DEFAULT);
	/* Anything left (should be nothing) is closed before the loop goes. */
	uv_walk(&dns->loop, close_walk, NULL);
	uv_run(&dns->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* A socket bound to the gateway address even before any sandbox's veth
 * holds it (IP_FREEBIND): the address comes and goes with the sandboxes,
 * the socket stays. */
static int gateway_socket(int family, int type, const uint8_t *addr, uint16_t port,
			  const char *what, hutch_err_t *err)
{
	int fd = socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return hutch_err_sys(err, errno, "%s socket", what);
	int one = 1;
	setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_storage ss = {0};
	socklen_t len;
	char text[INET6_ADDRSTRLEN];
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)&ss;
		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		memcpy(&s->sin_addr, addr, 4);
		len = sizeof *s;
	} else {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
		setsockopt(fd, SOL_IPV6, IPV6_FREEBIND, &one, sizeof one);
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = htons(port);
		memcpy(&s->sin6_addr, addr, 16);
		len = sizeof *s;
	}
	inet_ntop(family, addr, text, sizeof text);
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		int e = errno;
		close(fd);
		return hutch_err_sys(err, e, "%s: bind %s%s%s:%u", what, family == AF_INET6 ? "[" : "",
				     text, family == AF_INET6 ? "]" : "", port);
	}
	return fd;
}

static void dns_free(eg_dns_t *dns)
{
	eg_nfnl_close(&dns->nl);
	free(dns);
}

int eg_dns_start(eg_instance_t *in, eg_dns_t **out, hutch_err_t *err)
{
	eg_dns_t *dns = xcalloc(1, sizeof *dns);
	dns->in = in;
	dns->nl.fd = -1;
	int fds[4] = {-1, -1, -1, -1};
	int r;
	uint16_t port = (uint16_t)in->cfg->dns_port;
	if ((fds[0] = r = gateway_socket(AF_INET, SOCK_DGRAM, in->gw4, port, "resolver (UDP)",
					 err)) < 0 ||
	    (fds[1] = r = gateway_socket(AF_INET, SOCK_STREAM, in->gw4, port, "resolver (TCP)",
					 err)) < 0)
		goto fail;
	if (in->pool.has6 &&
	    ((fds[2] = r = gateway_socket(AF_INET6, SOCK_DGRAM, in->gw6, port, "resolver (UDP)",
					  err)) < 0 ||
	     (fds[3] = r = gateway_socket(AF_INET6, SOCK_STREAM, in->gw6, port, "resolver (TCP)",
					  err)) < 0))
		goto fail;
	if ((r = eg_nfnl_open(&dns->nl, err)) < 0)
		goto fail;
	if ((r = uv_loop_init(&dns->loop)) < 0) {
		r = hutch_err_set(err, -r, "resolver loop: %s", uv_strerror(r));
		goto fail;
	}
	dns->n_servers = in->pool.has6 ? 2 : 1;
	for (int i = 0; i < dns->n_servers; i++) {
		uv_udp_init(&dns->loop, &dns->udp[i]);
		uv_tcp_init(&dns->loop, &dns->tcp[i]);
		dns->udp[i].data = dns->tcp[i].data = dns;
		int ru = uv_udp_open(&dns->udp[i], fds[2 * i]);
		if (ru == 0)
			fds[2 * i] = -1;
		int rt = uv_tcp_open(&dns->tcp[i], fds[2 * i + 1]);
		if (rt == 0)
			fds[2 * i + 1] = -1;
		if (ru == 0)
			ru = uv_udp_recv_start(&dns->udp[i], server_alloc, on_server_udp);
		if (rt == 0)
			rt = uv_listen((uv_stream_t *)&dns->tcp[i], 128, on_connection);
		if (ru < 0 || rt < 0) {
			r = hutch_err_set(err, -(ru < 0 ? ru : rt), "resolver: %s",
					  uv_strerror(ru < 0 ? ru : rt));
			uv_walk(&dns->loop, close_walk, NULL);
			uv_run(&dns->loop, UV_RUN_DEFAULT);
			uv_loop_close(&dns->loop);
			goto fail;
		}
	}
	uv_async_init(&dns->loop, &dns->stop, on_stop);
	dns->stop.data = dns;
	uv_timer_init(&dns->loop, &dns->counters);
	dns->counters.data = dns;
	if (in->cfg->counters_interval_ms > 0)
		uv_timer_start(&dns->counters, on_counters, (uint64_t)in->cfg->counters_interval_ms,
			       (uint64_t)in->cfg->counters_interval_ms);
	uv_unref((uv_handle_t *)&dns->counters);
	if (in->nflog_fd >= 0) {
		uv_poll_init(&dns->loop, &dns->nflog, in->nflog_fd);
		dns->nflog.data = dns;
		uv_poll_start(&dns->nflog, UV_READABLE, on_nflog);
		dns->has_nflog = true;
	}
	if ((r = pthread_create(&dns->thread, NULL, dns_thread, dns)) != 0) {
		r = hutch_err_sys(err, r, "resolver thread");
		uv_walk(&dns->loop, close_walk, NULL);
		uv_run(&dns->loop, UV_RUN_DEFAULT);
		uv_loop_close(&dns->loop);
		goto fail;
	}
	dns->running = true;
	*out = dns;
	return 0;
fail:
	for (size_t i = 0; i < ARRAY_SIZE(fds); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	dns_free(dns);
	return r;
}

void eg_dns_stop(eg_dns_t *dns)
{
	if (!dns)
		return;
	if (dns->running) {
		uv_async_send(&dns->stop);
		pthread_join(dns->thread, NULL);
		uv_loop_close(&dns->loop);
	}
	dns_free(dns);
}
