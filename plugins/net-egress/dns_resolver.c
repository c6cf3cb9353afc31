/*
 * dns_resolver.c: the sandboxes' resolver as a whole: its thread and
 * libuv loop (so its sockets live as long as the plugin, and nf_tables
 * commits never stall hutchd's loop), the gateway sockets, start and stop,
 * and the periodic work that rides on the loop (drop counters, the audit
 * of dropped packets, denied names kept resolved). See dns_resolver.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cleanup.h"
#include "dns_resolver.h"

uint16_t dns_random_id(eg_dns_t *dns)
{
	if (dns->n_ids == 0) {
		/* 512 bytes from getrandom() do not fail once the pool is up,
		 * which it is long before hutchd runs. */
		if (getrandom(dns->ids, sizeof dns->ids, 0) != (ssize_t)sizeof dns->ids)
			abort();
		dns->n_ids = ARRAY_SIZE(dns->ids);
	}
	return dns->ids[--dns->n_ids];
}

void dns_log(eg_dns_t *dns, hutch_log_level_t level, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	eg_log(dns->in, level, buf);
}

/* ---- counters ---- */

static void on_counters(uv_timer_t *t)
{
	eg_dns_t *dns = t->data;
	hutch_err_t err = {0};
	if (eg_sets_collect_counters(dns->in, &dns->nl, &err) < 0)
		dns_log(dns, HUTCH_LOG_DEBUG, "drop counters: %s", err.message);
}

/* ---- dropped packets ---- */

static void on_nflog(uv_poll_t *p, int status, int events)
{
	eg_dns_t *dns = p->data;
	if (status == 0 && (events & UV_READABLE))
		eg_nflog_read(dns->in, dns->in->nflog_fd);
}

/* ---- requests from other threads ---- */

static void on_kick(uv_async_t *a)
{
	dns_watch_run(a->data);
}

void eg_dns_kick(eg_dns_t *dns)
{
	if (dns && dns->running)
		uv_async_send(&dns->kick);
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
		dns_query_finish(dns->queries);
	dns_clients_stop(dns);
	uv_close((uv_handle_t *)&dns->counters, NULL);
	uv_close((uv_handle_t *)&dns->watch, NULL);
	uv_close((uv_handle_t *)&dns->kick, NULL);
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
	if (type == SOCK_STREAM) /* a restarted hutchd binds past TIME_WAIT */
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
	if ((r = dns_clients_start(dns, fds, err)) < 0) {
		uv_walk(&dns->loop, close_walk, NULL);
		uv_run(&dns->loop, UV_RUN_DEFAULT);
		uv_loop_close(&dns->loop);
		goto fail;
	}
	uv_async_init(&dns->loop, &dns->stop, on_stop);
	dns->stop.data = dns;
	uv_async_init(&dns->loop, &dns->kick, on_kick);
	dns->kick.data = dns;
	dns_watch_start(dns);
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
