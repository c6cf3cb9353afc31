/*
 * dns_query.c: one query, from a sandbox or the resolver's own: forwarded
 * upstream with a fresh random id from a fresh socket (or over TCP when a
 * TCP client got a truncated answer), retried on the next upstream after
 * upstream_timeout, and its answer learned (eg_sandbox_learn commits the
 * sandbox's nftables elements) before it is released to the client.
 *
 * Names a sandbox may not reach are forwarded too (disallowed_names =
 * "forward": the connection then times out, as it would for any dropped
 * address) or answered NXDOMAIN/REFUSED without being forwarded (no DNS
 * tunnel out of a locked-down sandbox). Answers' TTLs are capped at
 * ttl_max, so a client does not keep an address longer than the set does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "dns_resolver.h"

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

static void query_maybe_free(query_t *q)
{
	if (!q->done || q->handles > 0)
		return;
	if (q->conn)
		dns_conn_unref(q->conn);
	eg_sandbox_unref(q->sb);
	free(q->msg);
	free(q);
}

void dns_query_finish(query_t *q)
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
	if (q->own)
		dns->n_own--;
	else
		q->sb->dns_pending--;
	if (q->conn) {
		q->conn->queries--;
		dns_conn_query_done(q->conn);
	}
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

/* Does q need the whole answer, asked again over TCP when UDP's was
 * truncated? A UDP client does not: it asks again itself. */
static bool wants_whole(const query_t *q)
{
	return q->conn != NULL || q->own;
}
static void own_end(query_t *q, bool ok, uint32_t min_ttl);

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
	if ((a->h.flags & DNS_FLAG_TC) && wants_whole(q) && !at->tcp) {
		/* A TCP client gets the whole answer, and so does the resolver's
		 * own lookup of a denied name (every address of it is shunned):
		 * ask again over TCP. */
		attempt_start(q, true);
		return;
	}
	eg_learn_result_t res;
	hutch_err_t err = {0};
	if (q->own_done) {
		/* The resolver's own question: learn, tell, no reply. */
		int r = DNS_RCODE(a->h.flags) == DNS_RCODE_NOERROR || DNS_RCODE(a->h.flags) == DNS_RCODE_NXDOMAIN
				? eg_sandbox_learn(in, &dns->nl, q->sb, &q->q, a, true, &res, &err)
				: -EAGAIN;
		if (r < 0 && r != -EAGAIN && r != -ENOENT)
			dns_log(dns, HUTCH_LOG_WARN, "sandbox %s: %s", q->sb->id, err.message);
		uint32_t min_ttl = 0;
		for (size_t i = 0; i < a->n_addrs; i++)
			if (i == 0 || a->addrs[i].ttl < min_ttl)
				min_ttl = a->addrs[i].ttl;
		own_end(q, r == 0, min_ttl);
		return;
	}
	if (eg_sandbox_learn(in, &dns->nl, q->sb, &q->q, a, false, &res, &err) < 0) {
		dns_log(dns, HUTCH_LOG_WARN, "sandbox %s: %s: answering SERVFAIL", q->sb->id,
			err.message);
		dns_reply_error(q, DNS_RCODE_SERVFAIL);
		eg_audit_dns(in, q->sb, &q->q, res.verdict, res.limit ? &res : NULL, a, "servfail");
		eg_metric_query(in, "error");
		dns_query_finish(q);
		return;
	}
	uint32_t ttl_max = in->cfg->ttl_max_ms > 0 ? (uint32_t)(in->cfg->ttl_max_ms / 1000) : 0;
	if (ttl_max)
		dns_ttl_cap(data, len, ttl_max);
	dns_id_set(data, q->client_id);
	dns_reply_send(q, data, len);
	eg_audit_dns(in, q->sb, &q->q, res.verdict, &res, a, "answered");
	eg_metric_query(in, eg_verdict_name(res.verdict));
	dns_query_finish(q);
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
	size_t max = in->n_upstreams * 2 < DNS_MAX_ATTEMPTS ? in->n_upstreams * 2 : DNS_MAX_ATTEMPTS;
	if (q->tries >= max && q->own_done) {
		eg_metric(in, "egress_dns_upstream_timeouts_total", 1);
		own_end(q, false, 0);
		return;
	}
	if (q->tries >= max) {
		dns_reply_error(q, DNS_RCODE_SERVFAIL);
		eg_audit_dns(in, q->sb, &q->q, eg_sandbox_verdict(q->sb, q->q.name, q->q.plain), NULL,
			     NULL, "upstream timeout");
		eg_metric(in, "egress_dns_upstream_timeouts_total", 1);
		eg_metric_query(in, "error");
		dns_query_finish(q);
		return;
	}
	q->upstream = (q->upstream + 1) % in->n_upstreams;
	attempt_start(q, wants_whole(q) && q->attempts && q->attempts->tcp);
	uv_timer_start(&q->timer, on_query_timer, (uint64_t)in->cfg->upstream_timeout_ms, 0);
}

/* A new query in the list, holding sb (and conn), with its timer. */
static query_t *query_new(eg_dns_t *dns, eg_sandbox_t *sb, tcp_conn_t *conn, int server,
			  const struct sockaddr *from, const uint8_t *data, size_t len)
{
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
	q->client_id = len >= 2 ? (uint16_t)((data[0] << 8) | data[1]) : 0;
	q->up_id = q->client_id;
	return q;
}

void dns_query_begin(eg_dns_t *dns, eg_sandbox_t *sb, tcp_conn_t *conn, int server,
		     const struct sockaddr *from, const uint8_t *data, size_t len)
{
	eg_instance_t *in = dns->in;
	query_t *q = query_new(dns, sb, conn, server, from, data, len);
	dns_header_t h;
	int r = dns_query_parse(data, len, &h, &q->q);
	if (r < 0) {
		/* Answer what can be answered; a response or a runt gets nothing. */
		if (len >= DNS_HEADER_LEN && !(h.flags & DNS_FLAG_QR)) {
			uint8_t out[DNS_HEADER_LEN];
			size_t n = dns_error_reply(data, len, NULL,
						   r == -ENOTSUP ? DNS_RCODE_NOTIMP : DNS_RCODE_FORMERR,
						   out, sizeof out);
			if (n)
				dns_reply_send(q, out, n);
		}
		eg_metric_query(in, "malformed");
		dns_query_finish(q);
		return;
	}
	if (sb->dns_pending > DNS_MAX_PENDING_PER_SANDBOX ||
	    dns->n_queries - dns->n_own > DNS_MAX_PENDING ||
	    (conn && conn->queries > DNS_MAX_QUERIES_PER_CONN)) {
		dns_reply_error(q, DNS_RCODE_REFUSED);
		eg_metric_query(in, "over_limit");
		dns_query_finish(q);
		return;
	}
	if (dns_local_answer(q)) {
		eg_metric_query(in, "local");
		dns_query_finish(q);
		return;
	}
	if (eg_router_name(in->cfg, q->q.name)) {
		uint8_t out[DNS_HEADER_LEN + 300];
		size_t n = eg_router_answer(data, len, &q->q, in->gw4, out, sizeof out);
		if (n)
			dns_reply_send(q, out, n);
		else
			dns_reply_error(q, DNS_RCODE_SERVFAIL);
		eg_metric_query(in, "router");
		dns_query_finish(q);
		return;
	}
	eg_verdict_t v = eg_sandbox_verdict(sb, q->q.name, q->q.plain);
	const char *mode = in->cfg->disallowed_names;
	if ((v == EG_VERDICT_DENIED || v == EG_VERDICT_UNLISTED) && strcmp(mode, "forward") != 0) {
		bool nx = strcmp(mode, "nxdomain") == 0;
		dns_reply_error(q, nx ? DNS_RCODE_NXDOMAIN : DNS_RCODE_REFUSED);
		eg_audit_dns(in, sb, &q->q, v, NULL, NULL, nx ? "nxdomain" : "refused");
		eg_metric_query(in, eg_verdict_name(v));
		dns_query_finish(q);
		return;
	}
	q->up_id = dns_random_id(dns);
	dns_id_set(q->msg, q->up_id);
	q->upstream = 0;
	attempt_start(q, false);
	uv_timer_start(&q->timer, on_query_timer, (uint64_t)in->cfg->upstream_timeout_ms, 0);
}

/* ---- the resolver's own queries ---- */

static void own_end(query_t *q, bool ok, uint32_t min_ttl)
{
	dns_query_done_cb done = q->own_done;
	q->own_done = NULL;
	dns_query_finish(q);
	done(q->dns, q->sb, ok, min_ttl, q->own_data);
}

void dns_query_own(eg_dns_t *dns, eg_sandbox_t *sb, const char *name, uint16_t qtype,
		   dns_query_done_cb done, void *data)
{
	uint8_t msg[DNS_HEADER_LEN + DNS_WIRE_NAME_MAX + 4];
	size_t len = dns_query_build(name, qtype, dns_random_id(dns), msg, sizeof msg);
	query_t *q = len ? query_new(dns, sb, NULL, -1, NULL, msg, len) : NULL;
	if (q) {
		q->own = true;
		dns->n_own++;
		sb->dns_pending--; /* not the sandbox's own asking: not its quota */
	}
	dns_header_t h;
	if (!q || dns_query_parse(msg, len, &h, &q->q) < 0) {
		if (q)
			dns_query_finish(q);
		done(dns, sb, false, 0, data);
		return;
	}
	q->own_done = done;
	q->own_data = data;
	q->up_id = q->client_id;
	q->upstream = 0;
	attempt_start(q, false);
	uv_timer_start(&q->timer, on_query_timer, (uint64_t)dns->in->cfg->upstream_timeout_ms, 0);
}
