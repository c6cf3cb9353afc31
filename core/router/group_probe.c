/*
 * Readiness: a replica is ready once its port answers HTTP: any status
 * line, or 2xx/3xx for the group's readiness path. Asked through the
 * replica's port forward, which connects into the sandbox's namespace for
 * each connection and closes ours when nothing listens there, so a bare
 * TCP connect would not tell. Polled every PROBE_RETRY_MS until
 * PROBE_DEADLINE_MS (then the replica is replaced).
 */
#include "group_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define PROBE_RETRY_MS 20
#define PROBE_ATTEMPT_MS 2000
#define PROBE_DEADLINE_MS 120000

struct group_probe {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	uv_timer_t timer;
	replica_t *r; /* NULL once cancelled */
	int handles;  /* open libuv handles; freed at 0 */
	bool tcp_open, ok;
	char req[512];
	char head[16];
	size_t got;
};

static void attempt(group_probe_t *p);

static void on_retry(uv_timer_t *t)
{
	attempt(t->data);
}

static void probe_handle_closed(uv_handle_t *h)
{
	group_probe_t *p = h->data;
	if (--p->handles == 0 && !p->r)
		free(p);
}

static void tcp_closed(uv_handle_t *h)
{
	group_probe_t *p = h->data;
	p->tcp_open = false;
	replica_t *r = p->r;
	probe_handle_closed(h);
	if (!r)
		return;
	if (p->ok) {
		uv_timer_stop(&p->timer);
		/* Done: the probe goes, the replica is ready. */
		r->probe = NULL;
		p->r = NULL;
		uv_close((uv_handle_t *)&p->timer, probe_handle_closed);
		replica_ready(r);
		return;
	}
	if (group_now_ms() - r->started_ms > PROBE_DEADLINE_MS) {
		replica_failed(r, "its port did not answer HTTP in time");
		return;
	}
	uv_timer_start(&p->timer, on_retry, PROBE_RETRY_MS, 0);
}

static void finish(group_probe_t *p, bool ok)
{
	p->ok = ok;
	uv_timer_stop(&p->timer);
	if (p->tcp_open && !uv_is_closing((uv_handle_t *)&p->tcp))
		uv_close((uv_handle_t *)&p->tcp, tcp_closed);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
	group_probe_t *p = h->data;
	(void)size;
	*buf = uv_buf_init(p->head + p->got, (unsigned)(sizeof p->head - 1 - p->got));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	group_probe_t *p = s->data;
	(void)buf;
	if (n < 0) {
		finish(p, false);
		return;
	}
	p->got += (size_t)n;
	if (p->got < 12)
		return;
	p->head[p->got] = '\0';
	bool http = strncmp(p->head, "HTTP/1.", 7) == 0;
	const char *path = p->r ? p->r->g->spec->readiness_path : NULL;
	bool ok = http && (!path || !path[0] || p->head[9] == '2' || p->head[9] == '3');
	finish(p, ok);
}

static void on_write(uv_write_t *w, int status)
{
	group_probe_t *p = w->data;
	if (status < 0)
		finish(p, false);
}

static void on_connect(uv_connect_t *c, int status)
{
	group_probe_t *p = c->data;
	if (status < 0 || !p->r) {
		finish(p, false);
		return;
	}
	const char *path = p->r->g->spec->readiness_path;
	int n = snprintf(p->req, sizeof p->req,
			 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hutch-readiness\r\n"
			 "Connection: close\r\n\r\n",
			 path && path[0] ? path : "/", p->r->g->spec->name);
	uv_buf_t b = uv_buf_init(p->req, (unsigned)n);
	p->wr.data = p;
	if (uv_write(&p->wr, (uv_stream_t *)&p->tcp, &b, 1, on_write) < 0 ||
	    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read) < 0)
		finish(p, false);
}

static void on_attempt_timeout(uv_timer_t *t)
{
	finish(t->data, false);
}

static void attempt(group_probe_t *p)
{
	if (!p->r)
		return;
	p->got = 0;
	p->ok = false;
	uv_tcp_init(p->timer.loop, &p->tcp);
	p->tcp.data = p;
	p->tcp_open = true;
	p->handles++;
	p->conn.data = p;
	if (uv_tcp_connect(&p->conn, &p->tcp, (const struct sockaddr *)&p->r->up.addr,
			   on_connect) < 0) {
		finish(p, false);
		return;
	}
	uv_timer_start(&p->timer, on_attempt_timeout, PROBE_ATTEMPT_MS, 0);
}

void group_probe_start(replica_t *r)
{
	if (r->probe)
		return;
	group_probe_t *p = calloc(1, sizeof *p);
	if (!p)
		abort();
	p->r = r;
	r->probe = p;
	uv_timer_init(r->g->m->d.loop, &p->timer);
	p->timer.data = p;
	p->handles = 1;
	attempt(p);
}

void group_probe_cancel(replica_t *r)
{
	group_probe_t *p = r->probe;
	if (!p)
		return;
	r->probe = NULL;
	p->r = NULL;
	uv_timer_stop(&p->timer);
	if (!uv_is_closing((uv_handle_t *)&p->timer))
		uv_close((uv_handle_t *)&p->timer, probe_handle_closed);
	if (p->tcp_open && !uv_is_closing((uv_handle_t *)&p->tcp))
		uv_close((uv_handle_t *)&p->tcp, probe_handle_closed);
}
