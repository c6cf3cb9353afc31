/*
 * grpc_transport.c: listeners and accepted sockets, unix and TCP, plaintext
 * and TLS, on libuv.
 *
 * Reading: every byte read is fed to the socket's grpc_conn at once (through
 * TLS first if needed). Memory stays bounded because HTTP/2 flow control
 * bounds what a client may send.
 *
 * Writing: a socket is marked dirty whenever its connection has something
 * to say; a prepare handle, which runs once per loop iteration just before
 * the loop blocks, services dirty sockets. It pulls frames from the
 * connection only while less than SOCKET_WRITE_HIGH bytes are queued in
 * libuv, so a client that does not read leaves the data in the calls'
 * queues, where the methods see it (grpc_call_send returns 1) and stop.
 *
 * Closing: a socket is never closed from inside its connection's callbacks;
 * close requests are recorded and carried out by the prepare callback.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include "cleanup.h"
#include "grpc_internal.h"
#include "grpc_tls.h"
#include "grpc_transport.h"

/* Bytes handed to libuv and not yet written, above which no more frames are
 * pulled from the connection. */
#define SOCKET_WRITE_HIGH (256u << 10)
/* Frames are gathered into writes of about this size. */
#define SOCKET_WRITE_CHUNK (64u << 10)
#define LISTEN_BACKLOG 128

union grpc_stream_handle {
	uv_handle_t handle;
	uv_stream_t stream;
	uv_pipe_t pipe;
	uv_tcp_t tcp;
};

struct grpc_listener {
	union grpc_stream_handle h;
	grpc_server_t *server;
	struct grpc_link link; /* server->listeners */
	SSL_CTX *tls_ctx;      /* NULL: plaintext */
	bool is_unix;
	char *unix_path; /* the socket file, removed at close if still ours */
	dev_t dev;
	ino_t ino;
};

struct grpc_socket {
	union grpc_stream_handle h;
	grpc_server_t *server;
	struct grpc_link link;       /* server->sockets */
	struct grpc_link dirty_link; /* server->dirty */
	grpc_conn_t *conn;
	grpc_tls_t *tls; /* NULL: plaintext */
	uint64_t accepted_at;
	size_t inflight;
	bool close_requested;
	bool closing;
	uint32_t close_h2_error;
	grpc_status_t close_status;
};

struct grpc_write {
	uv_write_t req;
	struct grpc_socket *sock;
	size_t len, cap;
	uint8_t data[];
};

static void socket_service(struct grpc_socket *s);

/* ---- dirty list and the prepare callback ---- */

static void on_prepare(uv_prepare_t *p)
{
	grpc_server_t *server = p->data;
	struct grpc_link *l;
	/* Servicing may mark sockets dirty again (a method answering from
	 * on_writable); they are picked up in this same pass, before the loop
	 * blocks. Each round either moves bytes or finds nothing to do. */
	while ((l = grpc_list_pop(&server->dirty)))
		socket_service(grpc_container_of(l, struct grpc_socket, dirty_link));
	uv_prepare_stop(p);
}

static void socket_mark_dirty(struct grpc_socket *s)
{
	if (s->closing)
		return;
	if (!grpc_link_linked(&s->dirty_link))
		grpc_list_add_tail(&s->server->dirty, &s->dirty_link);
	uv_prepare_start(&s->server->prepare, on_prepare);
}

static void socket_wake(void *data)
{
	socket_mark_dirty(data);
}

static void socket_request_close(struct grpc_socket *s, uint32_t h2_error, grpc_status_t status)
{
	if (s->closing || s->close_requested)
		return;
	s->close_requested = true;
	s->close_h2_error = h2_error;
	s->close_status = status;
	uv_read_stop(&s->h.stream);
	socket_mark_dirty(s);
}

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status)
{
	struct grpc_write *w = grpc_container_of(req, struct grpc_write, req);
	struct grpc_socket *s = w->sock;
	s->inflight -= w->len;
	free(w);
	if (status < 0) {
		if (status != UV_ECANCELED)
			socket_request_close(s, NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
		return;
	}
	socket_mark_dirty(s);
}

static void socket_write(struct grpc_socket *s, struct grpc_write *w)
{
	uv_buf_t b = uv_buf_init((char *)w->data, (unsigned int)w->len);
	w->sock = s;
	if (uv_write(&w->req, &s->h.stream, &b, 1, on_write) < 0) {
		free(w);
		socket_request_close(s, NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
		return;
	}
	s->inflight += w->len;
}

static int write_append(struct grpc_write **wp, const uint8_t *data, size_t len)
{
	struct grpc_write *w = *wp;
	size_t need = (w ? w->len : 0) + len;
	if (!w || need > w->cap) {
		size_t cap = need < SOCKET_WRITE_CHUNK + 16384 ? SOCKET_WRITE_CHUNK + 16384 : need;
		struct grpc_write *n = realloc(w, sizeof *n + cap);
		if (!n)
			return -ENOMEM;
		if (!w)
			n->len = 0;
		n->cap = cap;
		w = *wp = n;
	}
	memcpy(w->data + w->len, data, len);
	w->len += len;
	return 0;
}

static void socket_write_tls_output(struct grpc_socket *s)
{
	size_t n;
	while ((n = grpc_tls_output_pending(s->tls)) > 0) {
		struct grpc_write *w = malloc(sizeof *w + n);
		if (!w) {
			socket_request_close(s, NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
			return;
		}
		w->cap = n;
		w->len = grpc_tls_take_output(s->tls, w->data, n);
		if (w->len == 0) {
			free(w);
			return;
		}
		socket_write(s, w);
	}
}

/* Moves frames from the connection to libuv while libuv's queue is short
 * (or unconditionally when final: the socket is about to close and only
 * control frames are left). */
static void socket_flush(struct grpc_socket *s, bool final)
{
	if (s->tls && !grpc_tls_handshake_done(s->tls)) {
		socket_write_tls_output(s);
		return;
	}
	while (final || s->inflight < SOCKET_WRITE_HIGH) {
		struct grpc_write *w = NULL;
		const uint8_t *p;
		ssize_t n;
		while ((!w || w->len < SOCKET_WRITE_CHUNK) && (n = grpc_conn_pull(s->conn, &p)) > 0) {
			if (write_append(&w, p, (size_t)n) < 0) {
				free(w);
				socket_request_close(s, NGHTTP2_INTERNAL_ERROR,
						     GRPC_STATUS_UNAVAILABLE);
				return;
			}
		}
		if (!w)
			break;
		if (s->tls) {
			hutch_err_t err = { 0 };
			int r = grpc_tls_write(s->tls, w->data, w->len, &err);
			free(w);
			if (r < 0) {
				grpc_server_log(s->server, LOG_INFO, "%s", err.message);
				socket_request_close(s, NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
				return;
			}
			socket_write_tls_output(s);
		} else {
			socket_write(s, w);
		}
	}
	if (s->tls)
		socket_write_tls_output(s);
}

/* ---- closing ---- */

static void socket_closed(uv_handle_t *h)
{
	struct grpc_socket *s = h->data;
	grpc_server_t *server = s->server;
	grpc_conn_free(s->conn);
	grpc_tls_free(s->tls);
	grpc_list_del(&s->link);
	if (grpc_link_linked(&s->dirty_link))
		grpc_list_del(&s->dirty_link);
	server->n_sockets--;
	free(s);
	grpc_server_handle_closed(server);
}

static void socket_close_now(struct grpc_socket *s)
{
	s->closing = true;
	if (grpc_link_linked(&s->dirty_link))
		grpc_list_del(&s->dirty_link);
	if (s->conn) {
		/* GOAWAY and end the calls, then try to get the GOAWAY out:
		 * libuv attempts the write at once, and whatever does not fit
		 * is dropped by uv_close. */
		grpc_conn_terminate(s->conn, s->close_h2_error, s->close_status);
		socket_flush(s, true);
	}
	uv_read_stop(&s->h.stream);
	uv_close(&s->h.handle, socket_closed);
}

static void socket_service(struct grpc_socket *s)
{
	if (s->closing)
		return;
	if (!s->close_requested) {
		grpc_conn_process(s->conn);
		socket_flush(s, false);
		if (grpc_conn_finished(s->conn) && (s->inflight == 0 || s->conn->flooded))
			s->close_requested = true;
	}
	if (s->close_requested)
		socket_close_now(s);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct grpc_socket *s = h->data;
	/* One buffer per server: libuv reads one socket at a time and the read
	 * callback consumes everything before returning. */
	*buf = uv_buf_init((char *)s->server->read_buf, GRPC_READ_BUF_SIZE);
}

static void tls_plain(void *arg, const uint8_t *data, size_t len)
{
	struct grpc_socket *s = arg;
	grpc_conn_feed(s->conn, data, len);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	struct grpc_socket *s = stream->data;
	if (s->closing || s->close_requested)
		return;
	if (nread < 0) {
		if (nread != UV_EOF)
			grpc_server_log(s->server, LOG_DEBUG, "read from %s: %s",
					s->conn->peer.address, uv_strerror((int)nread));
		socket_request_close(s, NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
		return;
	}
	if (nread == 0)
		return;
	if (s->tls) {
		hutch_err_t err = { 0 };
		if (grpc_tls_read(s->tls, (const uint8_t *)buf->base, (size_t)nread, tls_plain, s,
				  &err) < 0) {
			grpc_server_log(s->server, LOG_INFO, "connection from %s: %s",
					s->conn->peer.address, err.message);
			socket_write_tls_output(s); /* the alert, if any */
			socket_request_close(s, NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
			return;
		}
	} else {
		grpc_conn_feed(s->conn, (const uint8_t *)buf->base, (size_t)nread);
	}
	socket_mark_dirty(s);
}

/* ---- accepting ---- */

static void on_sweep(uv_timer_t *t)
{
	grpc_server_t *server = t->data;
	uint64_t now = uv_now(server->loop);
	for (struct grpc_link *l = server->sockets.next; l != &server->sockets; l = l->next) {
		struct grpc_socket *s = grpc_container_of(l, struct grpc_socket, link);
		bool up = s->conn && grpc_conn_established(s->conn) &&
			  (!s->tls || grpc_tls_handshake_done(s->tls));
		if (!up && now - s->accepted_at >= server->opts.handshake_timeout_ms) {
			grpc_server_log(server, LOG_INFO, "connection from %s: handshake timeout",
					s->conn ? s->conn->peer.address : "?");
			socket_request_close(s, NGHTTP2_SETTINGS_TIMEOUT, GRPC_STATUS_UNAVAILABLE);
		}
	}
	if (grpc_list_empty(&server->sockets)) {
		uv_timer_stop(t);
		server->sweep_running = false;
	}
}

static void peer_fill(struct grpc_listener *l, struct grpc_socket *s, grpc_peer_t *peer)
{
	memset(peer, 0, sizeof *peer);
	peer->uid = (uid_t)-1;
	peer->gid = (gid_t)-1;
	peer->pid = -1;
	if (l->is_unix) {
		peer->kind = GRPC_PEER_UNIX;
		snprintf(peer->address, sizeof peer->address, "%s", l->unix_path);
		uv_os_fd_t fd;
		struct ucred cred;
		socklen_t len = sizeof cred;
		if (uv_fileno(&s->h.handle, &fd) == 0 &&
		    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
			peer->has_cred = true;
			peer->uid = cred.uid;
			peer->gid = cred.gid;
			peer->pid = cred.pid;
		}
		return;
	}
	peer->kind = GRPC_PEER_TCP;
	peer->tls = l->tls_ctx != NULL;
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	if (uv_tcp_getpeername(&s->h.tcp, (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
			uv_ip6_name(a, ip, sizeof ip);
			snprintf(peer->address, sizeof peer->address, "[%s]:%u", ip,
				 ntohs(a->sin6_port));
		} else {
			struct sockaddr_in *a = (struct sockaddr_in *)&ss;
			uv_ip4_name(a, ip, sizeof ip);
			snprintf(peer->address, sizeof peer->address, "%s:%u", ip,
				 ntohs(a->sin_port));
		}
	}
}

static void on_connection(uv_stream_t *ls, int status)
{
	struct grpc_listener *l = ls->data;
	grpc_server_t *server = l->server;
	if (status < 0) {
		grpc_server_log(server, LOG_WARNING, "accept: %s", uv_strerror(status));
		return;
	}
	struct grpc_socket *s = calloc(1, sizeof *s);
	if (!s) {
		grpc_server_log(server, LOG_ERR, "accept: out of memory");
		return;
	}
	s->server = server;
	grpc_list_init(&s->dirty_link);
	if (l->is_unix)
		uv_pipe_init(server->loop, &s->h.pipe, 0);
	else
		uv_tcp_init(server->loop, &s->h.tcp);
	s->h.handle.data = s;
	server->open_handles++;
	server->n_sockets++;
	grpc_list_add_tail(&server->sockets, &s->link);
	s->accepted_at = uv_now(server->loop);

	int r = uv_accept(ls, &s->h.stream);
	if (r < 0) {
		grpc_server_log(server, LOG_WARNING, "accept: %s", uv_strerror(r));
		socket_close_now(s);
		return;
	}
	if (server->shutting_down || server->n_sockets > server->opts.max_connections) {
		grpc_server_log(server, LOG_WARNING, "refusing connection: %u open (max %u)",
				server->n_sockets - 1, server->opts.max_connections);
		socket_close_now(s);
		return;
	}
	if (!l->is_unix)
		uv_tcp_nodelay(&s->h.tcp, 1);

	grpc_peer_t peer;
	peer_fill(l, s, &peer);
	hutch_err_t err = { 0 };
	grpc_conn_io_t io = { .wake = socket_wake, .data = s };
	if ((l->tls_ctx && grpc_tls_new(l->tls_ctx, &s->tls, &err) < 0) ||
	    grpc_conn_new(server, &peer, &io, &s->conn, &err) < 0) {
		grpc_server_log(server, LOG_ERR, "connection from %s: %s", peer.address,
				err.message);
		socket_close_now(s);
		return;
	}
	r = uv_read_start(&s->h.stream, on_alloc, on_read);
	if (r < 0) {
		grpc_server_log(server, LOG_WARNING, "read from %s: %s", peer.address,
				uv_strerror(r));
		socket_request_close(s, NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
		return;
	}
	if (!server->sweep_running) {
		uv_timer_start(&server->sweep, on_sweep, 1000, 1000);
		server->sweep_running = true;
	}
	/* The server preface (SETTINGS) goes out now, or after TLS. */
	socket_mark_dirty(s);
}

/* ---- listeners ---- */

static void listener_closed(uv_handle_t *h)
{
	struct grpc_listener *l = h->data;
	grpc_server_t *server = l->server;
	if (grpc_link_linked(&l->link))
		grpc_list_del(&l->link);
	if (l->tls_ctx)
		SSL_CTX_free(l->tls_ctx);
	free(l->unix_path);
	free(l);
	grpc_server_handle_closed(server);
}

static void listener_close(struct grpc_listener *l)
{
	struct stat st;
	/* Remove the socket file only if it is still the one we created; a
	 * newer server may have replaced it. */
	if (l->is_unix && l->unix_path && lstat(l->unix_path, &st) == 0 && st.st_dev == l->dev &&
	    st.st_ino == l->ino)
		unlink(l->unix_path);
	uv_close(&l->h.handle, listener_closed);
}

static struct grpc_listener *listener_new(grpc_server_t *server, bool is_unix)
{
	struct grpc_listener *l = calloc(1, sizeof *l);
	if (!l)
		return NULL;
	l->server = server;
	l->is_unix = is_unix;
	grpc_list_init(&l->link);
	if (is_unix)
		uv_pipe_init(server->loop, &l->h.pipe, 0);
	else
		uv_tcp_init(server->loop, &l->h.tcp);
	l->h.handle.data = l;
	server->open_handles++;
	return l;
}

/* Fails if path is a live socket or not a socket at all; a socket nobody
 * accepts on is stale and may be replaced. */
static int unix_path_check(const char *path, hutch_err_t *err)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		return hutch_err_sys(err, errno, "stat %s", path);
	}
	if (!S_ISSOCK(st.st_mode))
		return hutch_err_set(err, EEXIST, "%s exists and is not a socket", path);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hutch_err_sys(err, errno, "socket");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
		return hutch_err_set(err, EADDRINUSE, "%s: another server is listening", path);
	if (errno != ECONNREFUSED)
		return hutch_err_sys(err, errno, "probe %s", path);
	return 0;
}

int grpc_server_listen_unix(grpc_server_t *server, const char *path, mode_t mode,
			    hutch_err_t *err)
{
	struct sockaddr_un sun;
	char tmp[sizeof sun.sun_path];
	if (server->shutting_down)
		return hutch_err_set(err, EINVAL, "listen %s: server is shutting down", path);
	if ((size_t)snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid()) >= sizeof tmp)
		return hutch_err_set(err, ENAMETOOLONG, "listen %s: path too long for a socket",
				     path);
	int r = unix_path_check(path, err);
	if (r < 0)
		return hutch_err_prefix(err, "listen %s", path);
	unlink(tmp);

	struct grpc_listener *l = listener_new(server, true);
	if (!l)
		return hutch_err_set(err, ENOMEM, "listen %s: out of memory", path);
	l->unix_path = strdup(path);
	if (!l->unix_path) {
		r = hutch_err_set(err, ENOMEM, "listen %s: out of memory", path);
		goto fail;
	}
	/* Bind under a temporary name, set the mode, then rename into place:
	 * the socket is never reachable with the umask's permissions, and a
	 * stale socket is replaced atomically. */
	r = uv_pipe_bind(&l->h.pipe, tmp);
	if (r < 0) {
		r = hutch_err_sys(err, -r, "bind %s", tmp);
		goto fail;
	}
	if (chmod(tmp, mode) < 0) {
		r = hutch_err_sys(err, errno, "chmod %s", tmp);
		unlink(tmp);
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		r = hutch_err_sys(err, errno, "rename %s to %s", tmp, path);
		unlink(tmp);
		goto fail;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	r = uv_listen(&l->h.stream, LISTEN_BACKLOG, on_connection);
	if (r < 0) {
		r = hutch_err_sys(err, -r, "listen %s", path);
		unlink(path);
		goto fail;
	}
	grpc_list_add_tail(&server->listeners, &l->link);
	return 0;
fail:
	free(l->unix_path);
	l->unix_path = NULL;
	uv_close(&l->h.handle, listener_closed);
	return r;
}

int grpc_server_listen_tcp(grpc_server_t *server, const char *host, int port,
			   const char *cert_file, const char *key_file, hutch_err_t *err)
{
	struct sockaddr_storage ss;
	if (server->shutting_down)
		return hutch_err_set(err, EINVAL, "listen: server is shutting down");
	if (!cert_file != !key_file)
		return hutch_err_set(err, EINVAL, "listen: TLS needs both a certificate and a key");
	if (port < 0 || port > 65535)
		return hutch_err_set(err, EINVAL, "listen: bad port %d", port);
	if (!host || strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
	    uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)
		return hutch_err_set(err, EINVAL, "listen: %s is not a numeric IP address", host);

	SSL_CTX *ctx = NULL;
	if (cert_file) {
		int r = grpc_tls_ctx_new(cert_file, key_file, &ctx, err);
		if (r < 0)
			return r;
	}
	struct grpc_listener *l = listener_new(server, false);
	if (!l) {
		SSL_CTX_free(ctx);
		return hutch_err_set(err, ENOMEM, "listen: out of memory");
	}
	l->tls_ctx = ctx;
	int r = uv_tcp_bind(&l->h.tcp, (struct sockaddr *)&ss, 0);
	if (r == 0)
		r = uv_listen(&l->h.stream, LISTEN_BACKLOG, on_connection);
	if (r < 0) {
		uv_close(&l->h.handle, listener_closed);
		return hutch_err_sys(err, -r, "listen on %s port %d", host, port);
	}
	int len = sizeof ss;
	if (uv_tcp_getsockname(&l->h.tcp, (struct sockaddr *)&ss, &len) == 0)
		server->bound_port = ntohs(ss.ss_family == AF_INET6
						   ? ((struct sockaddr_in6 *)&ss)->sin6_port
						   : ((struct sockaddr_in *)&ss)->sin_port);
	grpc_list_add_tail(&server->listeners, &l->link);
	return 0;
}

void grpc_transport_shutdown(grpc_server_t *server)
{
	for (struct grpc_link *n, *l = server->listeners.next; l != &server->listeners; l = n) {
		n = l->next;
		listener_close(grpc_container_of(l, struct grpc_listener, link));
	}
	for (struct grpc_link *l = server->sockets.next; l != &server->sockets; l = l->next)
		socket_request_close(grpc_container_of(l, struct grpc_socket, link),
				     NGHTTP2_NO_ERROR, GRPC_STATUS_UNAVAILABLE);
}
