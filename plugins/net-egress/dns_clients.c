/*
 * dns_clients.c: the resolver's side facing the sandboxes: a UDP and a
 * TCP server on each gateway address, the TCP connections (queries with
 * a two-byte length prefix, several per connection; a client that shuts
 * down its sending side still gets the answers, then the connection
 * closes), and the replies. A
 * client is a sandbox only if its source address is one of a registered
 * sandbox's; anything else is not answered.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "dns_resolver.h"

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

void dns_reply_send(query_t *q, const uint8_t *data, size_t len)
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

void dns_reply_error(query_t *q, unsigned rcode)
{
	uint8_t out[DNS_HEADER_LEN + DNS_WIRE_NAME_MAX + 8];
	/* The question as the client sent it, with its own id. */
	dns_id_set(q->msg, q->client_id);
	size_t n = dns_error_reply(q->msg, q->len, &q->q, rcode, out, sizeof out);
	dns_id_set(q->msg, q->up_id);
	if (n)
		dns_reply_send(q, out, n);
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
	dns_query_begin(dns, sb, NULL, server, from, (const uint8_t *)buf->base, (size_t)nread);
	eg_sandbox_unref(sb);
}

/* ---- the TCP server ---- */

void dns_conn_unref(tcp_conn_t *c)
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
		dns_conn_unref(c);
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

static void on_conn_shutdown(uv_shutdown_t *req, int status)
{
	(void)status;
	conn_close(req->data);
}

/* A client that shut down its sending side has asked all it will: once
 * the last of its queries is answered, the answers are flushed (a
 * shutdown waits for the writes queued before it) and the connection
 * closes. */
void dns_conn_query_done(tcp_conn_t *c)
{
	if (!c->eof || c->queries > 0 || c->closing || c->shutting)
		return;
	c->shutting = true;
	c->shutdown.data = c;
	if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->h, on_conn_shutdown) < 0)
		conn_close(c);
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
	if (nread == UV_EOF) {
		/* A half-close (valid DNS over TCP): the queries it sent are
		 * still answered. */
		c->eof = true;
		uv_read_stop(s);
		dns_conn_query_done(c);
		return;
	}
	if (nread < 0) {
		conn_close(c);
		return;
	}
	c->in.len += (size_t)nread;
	uv_timer_start(&c->idle, on_conn_idle, DNS_CONN_IDLE_MS, 0);
	size_t off = 0;
	while (c->in.len - off >= 2 && !c->closing) {
		size_t n = ((size_t)(uint8_t)c->in.buf[off] << 8) | (uint8_t)c->in.buf[off + 1];
		if (n == 0) {
			conn_close(c);
			return;
		}
		if (c->in.len - off - 2 < n)
			break;
		dns_query_begin(c->dns, c->sb, c, -1, NULL, (const uint8_t *)c->in.buf + off + 2, n);
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
	if (c->sb->dns_conns > DNS_MAX_CONNS_PER_SANDBOX) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->idle, on_conn_idle, DNS_CONN_IDLE_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->h, conn_alloc, on_conn_read) < 0)
		conn_close(c);
}

/* ---- start and stop ---- */

int dns_clients_start(eg_dns_t *dns, int *fds, hutch_err_t *err)
{
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
		if (ru < 0 || rt < 0)
			return hutch_err_set(err, -(ru < 0 ? ru : rt), "resolver: %s",
					     uv_strerror(ru < 0 ? ru : rt));
	}
	return 0;
}

void dns_clients_stop(eg_dns_t *dns)
{
	while (dns->conns)
		conn_close(dns->conns);
	for (int i = 0; i < dns->n_servers; i++) {
		uv_close((uv_handle_t *)&dns->udp[i], NULL);
		uv_close((uv_handle_t *)&dns->tcp[i], NULL);
	}
}
