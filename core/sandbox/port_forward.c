#include "port_forward.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "strbuf.h"

/* Above this much queued on one side, reading the other side pauses. */
#define RELAY_HIGH_WATER (1024 * 1024)

typedef struct relay relay_t;

typedef struct relay_side {
	uv_tcp_t tcp;
	relay_t *r;
	struct relay_side *peer;
	bool eof;          /* read side ended */
	bool shut;         /* our write side was shut down */
	bool paused;       /* reading stopped for the peer's sake */
} relay_side_t;

struct relay {
	port_fwd_t *f;
	relay_side_t client, sandbox;
	int open_handles;
	bool closing;
	relay_t *next;
	uv_work_t work;
	int connect_fd;
	hutch_err_t err;
};

struct port_fwd {
	uv_loop_t *loop;
	uv_tcp_t listener;
	char *netns_path;
	uint16_t port;
	relay_t *relays;
	int refs; /* listener + relays + pending connects */
	bool stopping;
};

static void fwd_unref(port_fwd_t *f)
{
	if (--f->refs == 0) {
		free(f->netns_path);
		free(f);
	}
}

int netns_tcp_connect(const char *netns_path, uint16_t port, int timeout_ms, hutch_err_t *err)
{
	_cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0)
		return hutch_err_sys(err, errno, "open own network namespace");
	_cleanup_close_ int target = open(netns_path, O_RDONLY | O_CLOEXEC);
	if (target < 0)
		return hutch_err_sys(err, errno, "open sandbox network namespace");
	if (setns(target, CLONE_NEWNET) < 0)
		return hutch_err_sys(err, errno, "enter sandbox network namespace");
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int e = fd < 0 ? errno : 0;
	/* Back to our own namespace before anything else can go wrong: this
	 * thread goes back to the pool. */
	if (setns(self, CLONE_NEWNET) < 0) {
		/* A pool thread stuck in a sandbox's namespace would be a
		 * boundary problem: better to stop. */
		log_error("cannot return to hutchd's network namespace: %s", strerror(errno));
		abort();
	}
	if (fd < 0)
		return hutch_err_sys(err, e, "socket");
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
		e = errno;
		close(fd);
		return hutch_err_sys(err, e, "connect to port %u in the sandbox", port);
	}
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	int pr = poll(&p, 1, timeout_ms);
	int soerr = 0;
	socklen_t sl = sizeof soerr;
	if (pr <= 0) {
		close(fd);
		return hutch_err_set(err, ETIMEDOUT, "connect to port %u in the sandbox: timed out", port);
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
	if (soerr) {
		close(fd);
		return hutch_err_sys(err, soerr, "connect to port %u in the sandbox", port);
	}
	return fd;
}

/* ---- relaying ---- */

static void relay_handle_closed(uv_handle_t *h)
{
	relay_side_t *s = h->data;
	relay_t *r = s->r;
	if (--r->open_handles > 0)
		return;
	port_fwd_t *f = r->f;
	for (relay_t **pp = &f->relays; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	free(r);
	fwd_unref(f);
}

static void relay_close(relay_t *r)
{
	if (r->closing)
		return;
	r->closing = true;
	uv_close((uv_handle_t *)&r->client.tcp, relay_handle_closed);
	if (r->open_handles > 1)
		uv_close((uv_handle_t *)&r->sandbox.tcp, relay_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	size_t n = suggested < 65536 ? suggested : 65536;
	*buf = uv_buf_init(xmalloc(n), (unsigned)n);
}

typedef struct relay_write {
	uv_write_t req;
	relay_side_t *from; /* whose reads pause while this is queued */
	char *base;
} relay_write_t;

static void on_shutdown(uv_shutdown_t *req, int status)
{
	relay_side_t *s = req->data;
	(void)status;
	free(req);
	if (s->eof && s->peer->eof)
		relay_close(s->r);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
	relay_write_t *w = (relay_write_t *)req;
	relay_side_t *from = w->from;
	free(w->base);
	free(w);
	if (from->r->closing)
		return;
	if (status < 0) {
		relay_close(from->r);
		return;
	}
	relay_side_t *to = from->peer;
	if (from->paused && to->tcp.write_queue_size < RELAY_HIGH_WATER / 2) {
		from->paused = false;
		uv_read_start((uv_stream_t *)&from->tcp, on_alloc, on_read);
	}
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	relay_side_t *from = st->data;
	relay_side_t *to = from->peer;
	relay_t *r = from->r;
	if (n > 0 && !r->closing) {
		relay_write_t *w = xcalloc(1, sizeof *w);
		w->from = from;
		w->base = buf->base;
		uv_buf_t out = uv_buf_init(buf->base, (unsigned)n);
		if (uv_write(&w->req, (uv_stream_t *)&to->tcp, &out, 1, on_written) < 0) {
			free(w->base);
			free(w);
			relay_close(r);
			return;
		}
		if (to->tcp.write_queue_size >= RELAY_HIGH_WATER) {
			from->paused = true;
			uv_read_stop(st);
		}
		return;
	}
	free(buf->base);
	if (n == 0)
		return;
	if (n == UV_EOF && !r->closing) {
		/* Half-close: pass the EOF on, keep the other direction. */
		from->eof = true;
		uv_read_stop(st);
		uv_shutdown_t *sh = xcalloc(1, sizeof *sh);
		sh->data = to;
		to->shut = true;
		if (uv_shutdown(sh, (uv_stream_t *)&to->tcp, on_shutdown) < 0) {
			free(sh);
			relay_close(r);
		}
		return;
	}
	relay_close(r);
}

static void connect_work(uv_work_t *req)
{
	relay_t *r = req->data;
	r->connect_fd = netns_tcp_connect(r->f->netns_path, r->f->port, 5000, &r->err);
}

static void connect_done(uv_work_t *req, int status)
{
	relay_t *r = req->data;
	port_fwd_t *f = r->f;
	if (status < 0 || r->connect_fd < 0 || f->stopping) {
		if (r->connect_fd >= 0)
			close(r->connect_fd);
		if (!f->stopping && r->connect_fd < 0)
			log_debug("port %u: %s", f->port, r->err.message);
		relay_close(r);
		return;
	}
	uv_tcp_init(f->loop, &r->sandbox.tcp);
	r->sandbox.tcp.data = &r->sandbox;
	r->open_handles++;
	if (uv_tcp_open(&r->sandbox.tcp, r->connect_fd) < 0) {
		close(r->connect_fd);
		relay_close(r);
		return;
	}
	uv_tcp_nodelay(&r->sandbox.tcp, 1);
	uv_tcp_nodelay(&r->client.tcp, 1);
	uv_read_start((uv_stream_t *)&r->client.tcp, on_alloc, on_read);
	uv_read_start((uv_stream_t *)&r->sandbox.tcp, on_alloc, on_read);
}

static void on_connection(uv_stream_t *server, int status)
{
	port_fwd_t *f = server->data;
	if (status < 0 || f->stopping)
		return;
	relay_t *r = xcalloc(1, sizeof *r);
	r->f = f;
	r->client.r = r->sandbox.r = r;
	r->client.peer = &r->sandbox;
	r->sandbox.peer = &r->client;
	uv_tcp_init(f->loop, &r->client.tcp);
	r->client.tcp.data = &r->client;
	r->open_handles = 1;
	f->refs++;
	r->next = f->relays;
	f->relays = r;
	if (uv_accept(server, (uv_stream_t *)&r->client.tcp) < 0) {
		relay_close(r);
		return;
	}
	r->work.data = r;
	r->connect_fd = -1;
	if (uv_queue_work(f->loop, &r->work, connect_work, connect_done) < 0)
		relay_close(r);
}

static void listener_closed(uv_handle_t *h)
{
	fwd_unref(h->data);
}

int port_fwd_start(uv_loop_t *loop, const char *netns_path, uint16_t sandbox_port,
		   const char *listen_host, port_fwd_t **out, char *bound, size_t cap,
		   hutch_err_t *err)
{
	if (!netns_path || !*netns_path)
		return hutch_err_set(err, ENOTSUP, "the runtime did not say which network namespace the sandbox uses");
	port_fwd_t *f = xcalloc(1, sizeof *f);
	f->loop = loop;
	f->netns_path = xstrdup(netns_path);
	f->port = sandbox_port;
	f->refs = 1;
	uv_tcp_init(loop, &f->listener);
	f->listener.data = f;
	struct sockaddr_storage ss;
	int r = uv_ip4_addr(listen_host, 0, (struct sockaddr_in *)&ss);
	if (r < 0)
		r = uv_ip6_addr(listen_host, 0, (struct sockaddr_in6 *)&ss);
	if (r == 0)
		r = uv_tcp_bind(&f->listener, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&f->listener, 128, on_connection);
	if (r < 0) {
		uv_close((uv_handle_t *)&f->listener, listener_closed);
		return hutch_err_set(err, -r, "listen for sandbox port %u: %s", sandbox_port, uv_strerror(r));
	}
	struct sockaddr_storage name;
	int len = sizeof name;
	uv_tcp_getsockname(&f->listener, (struct sockaddr *)&name, &len);
	char host[64] = "";
	int port = 0;
	if (name.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&name;
		uv_ip4_name(in, host, sizeof host);
		port = ntohs(in->sin_port);
		snprintf(bound, cap, "%s:%d", host, port);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&name;
		uv_ip6_name(in6, host, sizeof host);
		port = ntohs(in6->sin6_port);
		snprintf(bound, cap, "[%s]:%d", host, port);
	}
	*out = f;
	return 0;
}

void port_fwd_stop(port_fwd_t *f)
{
	if (!f || f->stopping)
		return;
	f->stopping = true;
	uv_close((uv_handle_t *)&f->listener, listener_closed);
	for (relay_t *r = f->relays; r; r = r->next)
		if (r->open_handles == 2 || !r->work.loop || r->connect_fd >= 0)
			relay_close(r);
}
