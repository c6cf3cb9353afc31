/*
 * Readiness: a replica is ready once its port accepts connections inside
 * the sandbox, and, when the group has a readiness path, that path answers
 * 2xx/3xx.
 *
 * The first is pushed: hutchd asks the sandbox's agent once (PORT_WAIT,
 * agent_port.h) and the agent answers once, a few milliseconds after the
 * server listens. The readiness path is then asked over HTTP through the
 * replica's port forward, every PROBE_RETRY_MS until it answers well.
 * An agent older than PORT_WAIT (one adopted from an older hutchd) gets
 * the HTTP probe from the start: any status line on the port means ready
 * (a bare TCP connect would not tell, as the forward accepts before it
 * connects inside). A replica not ready after PROBE_DEADLINE_MS is
 * replaced.
 */
#include "group_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_conn.h"
#include "log.h"

#define PROBE_RETRY_MS 20
#define PROBE_ATTEMPT_MS 2000
#define PROBE_DEADLINE_MS 120000
/* An agent that gave no version yet may be an old one: looked at again. */
#define PROBE_VERSION_CHECK_MS 1000

struct group_probe {
	uv_tcp_t tcp;
	uv_connect_t conn;
	uv_write_t wr;
	uv_timer_t timer;
	replica_t *r; /* NULL once cancelled */
	int handles;  /* open libuv handles; freed at 0 */
	agent_conn_t *agent; /* the port wait's session while stream != 0 */
	uint32_t stream;
	bool port_failed;
	bool port_accepted; /* the agent said so; HTTP asks the readiness path */
	char why[160];
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

/* Done: the probe goes, the replica is ready. */
static void probe_succeeded(group_probe_t *p)
{
	replica_t *r = p->r;
	const char *path = r->g->spec->readiness_path;
	const char *how = !p->port_accepted ? "its port answers HTTP"
			  : path && path[0] ? "its agent saw the port accept, and the readiness path answers"
			  : "its agent saw the port accept";
	uv_timer_stop(&p->timer);
	r->probe = NULL;
	p->r = NULL;
	uv_close((uv_handle_t *)&p->timer, probe_handle_closed);
	replica_ready(r, how);
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
		probe_succeeded(p);
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

/* ---- the agent's answer (outside its callbacks: on the timer) ---- */

static void on_port_answered(uv_timer_t *t)
{
	group_probe_t *p = t->data;
	replica_t *r = p->r;
	if (!r)
		return;
	if (p->port_failed) {
		replica_failed(r, p->why);
		return;
	}
	p->port_accepted = true;
	const char *path = r->g->spec->readiness_path;
	if (path && path[0])
		attempt(p);
	else
		probe_succeeded(p);
}

static void port_done(void *ud)
{
	group_probe_t *p = ud;
	agent_stream_forget(p->agent, p->stream, false);
	p->stream = 0;
	uv_timer_start(&p->timer, on_port_answered, 0, 0);
}

static void port_error(void *ud, int err, const char *message)
{
	group_probe_t *p = ud;
	p->stream = 0; /* finished by the session */
	if (err == EPIPE) {
		/* The session ended (the sandbox is going, or its agent is
		 * restarting): HTTP tells, and a dead replica is reaped. */
		uv_timer_stop(&p->timer);
		uv_timer_start(&p->timer, on_retry, PROBE_RETRY_MS, 0);
		return;
	}
	p->port_failed = true;
	snprintf(p->why, sizeof p->why, "%s", message);
	uv_timer_start(&p->timer, on_port_answered, 0, 0);
}

static const agent_stream_ops_t port_ops = {
	.on_done = port_done,
	.on_error = port_error,
};

/* Falls back to HTTP for an agent that turned out to predate PORT_WAIT. */
static void on_version_check(uv_timer_t *t)
{
	group_probe_t *p = t->data;
	if (!p->r || !p->stream)
		return;
	uint32_t v = agent_conn_version(p->agent);
	if (v >= 2)
		return;
	if (v == 0) {
		uv_timer_start(&p->timer, on_version_check, PROBE_VERSION_CHECK_MS, 0);
		return;
	}
	agent_stream_forget(p->agent, p->stream, false);
	p->stream = 0;
	attempt(p);
}

static bool port_wait_start(group_probe_t *p)
{
	hutch_err_t err = {0};
	agent_conn_t *c = p->r->sb ? sandbox_agent(p->r->sb, &err) : NULL;
	if (!c || agent_conn_version(c) == 1)
		return false;
	p->agent = c;
	p->stream = agent_stream_open(c, &port_ops, p);
	if (agent_send_port_wait(c, p->stream, p->r->g->spec->port, PROBE_DEADLINE_MS) < 0) {
		agent_stream_forget(c, p->stream, false);
		p->stream = 0;
		return false;
	}
	if (agent_conn_version(c) < 2)
		uv_timer_start(&p->timer, on_version_check, PROBE_VERSION_CHECK_MS, 0);
	return true;
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
	if (!port_wait_start(p))
		attempt(p);
}

void group_probe_cancel(replica_t *r)
{
	group_probe_t *p = r->probe;
	if (!p)
		return;
	r->probe = NULL;
	p->r = NULL;
	if (p->stream) {
		agent_stream_forget(p->agent, p->stream, true);
		p->stream = 0;
	}
	uv_timer_stop(&p->timer);
	if (!uv_is_closing((uv_handle_t *)&p->timer))
		uv_close((uv_handle_t *)&p->timer, probe_handle_closed);
	if (p->tcp_open && !uv_is_closing((uv_handle_t *)&p->tcp))
		uv_close((uv_handle_t *)&p->tcp, probe_handle_closed);
}
