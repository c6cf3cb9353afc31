/*
 * proxy_listener.c: the listening socket (TCP or unix), TLS with ALPN
 * (h2, http/1.1), and an orderly close: stop accepting, close every
 * connection, and report once the last libuv handle is gone.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy_priv.h"

#define LISTEN_BACKLOG 1024

struct proxy_listener {
	proxy_engine_t eng;
	union {
		uv_handle_t h;
		uv_stream_t s;
		uv_tcp_t tcp;
		uv_pipe_t pipe;
	} u;
	SSL_CTX *tls;
	bool is_unix;
	char unix_path[108];
	int port;
	void (*done)(void *arg);
	void *done_arg;
};

uv_stream_t *proxy_sock_prepare_accept(proxy_engine_t *eng, bool is_unix);
void proxy_sock_accept_failed(uv_stream_t *stream);
void proxy_sock_nodelay(uv_stream_t *stream);

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	/* h2 when offered, else http/1.1; a client offering neither gets
	 * HTTP/1.1 without ALPN, as before ALPN existed. */
	static const char *const prefs[] = {"h2", "http/1.1"};
	for (size_t p = 0; p < 2; p++) {
		size_t pl = strlen(prefs[p]);
		for (unsigned int i = 0; i < inlen;) {
			unsigned int n = in[i];
			if (i + 1 + n > inlen)
				break;
			if (n == pl && memcmp(in + i + 1, prefs[p], pl) == 0) {
				*out = in + i + 1;
				*outlen = (unsigned char)n;
				return SSL_TLSEXT_ERR_OK;
			}
			i += 1 + n;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static void peer_name(uv_stream_t *s, char *buf, size_t cap)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	snprintf(buf, cap, "unix");
	if (s->type != UV_TCP || uv_tcp_getpeername((uv_tcp_t *)s, (struct sockaddr *)&ss, &len))
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)cap);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)cap);
}

static void on_connection(uv_stream_t *server, int status)
{
	proxy_listener_t *l = server->data;
	if (status < 0 || l->eng.closing)
		return;
	uv_stream_t *client = proxy_sock_prepare_accept(&l->eng, l->is_unix);
	if (uv_accept(server, client) < 0) {
		proxy_sock_accept_failed(client);
		return;
	}
	proxy_sock_nodelay(client);
	char peer[64];
	peer_name(client, peer, sizeof peer);
	proxy_sock_t *sock;
	hutch_err_t err;
	if (proxy_sock_accepted(&l->eng, client, l->tls, &sock, &err) < 0) {
		proxy_sock_accept_failed(client);
		return;
	}
	proxy_conn_start(&l->eng, sock, peer);
}

static int listen_unix(proxy_listener_t *l, uv_loop_t *loop, const char *path, hutch_err_t *err)
{
	if (strlen(path) >= sizeof l->unix_path)
		return hutch_err_set(err, ENAMETOOLONG, "listen: path too long: %s", path);
	strcpy(l->unix_path, path);
	l->is_unix = true;
	uv_pipe_init(loop, &l->u.pipe, 0);
	l->eng.handles++;
	unlink(path);
	int r = uv_pipe_bind(&l->u.pipe, path);
	if (r < 0)
		return hutch_err_set(err, -r, "listen on %s: %s", path, uv_strerror(r));
	return 0;
}

static int listen_tcp(proxy_listener_t *l, uv_loop_t *loop, const char *addr, bool freebind,
		      hutch_err_t *err)
{
	proxy_upstream_t a;
	int r = proxy_upstream_parse(addr, &a, err);
	if (r < 0)
		return hutch_err_prefix(err, "listen");
	uv_tcp_init_ex(loop, &l->u.tcp, a.addr.ss_family);
	l->eng.handles++;
	uv_os_fd_t fd;
	if (freebind && uv_fileno((uv_handle_t *)&l->u.tcp, &fd) == 0) {
		int one = 1;
		if (a.addr.ss_family == AF_INET6)
			setsockopt(fd, SOL_IPV6, IPV6_FREEBIND, &one, sizeof one);
		else
			setsockopt(fd, SOL_IP, IP_FREEBIND, &one, sizeof one);
	}
	r = uv_tcp_bind(&l->u.tcp, (const struct sockaddr *)&a.addr, 0);
	if (r < 0)
		return hutch_err_set(err, -r, "listen on %s: %s", addr, uv_strerror(r));
	return 0;
}

static void listener_final(void *arg)
{
	proxy_listener_t *l = arg;
	if (l->is_unix && l->unix_path[0])
		unlink(l->unix_path);
	proxy_engine_final(&l->eng);
	if (l->tls)
		SSL_CTX_free(l->tls);
	void (*done)(void *) = l->done;
	void *arg2 = l->done_arg;
	free(l);
	if (done)
		done(arg2);
}

static void listener_handle_closed(uv_handle_t *h)
{
	proxy_listener_t *l = h->data;
	proxy_engine_handle_closed(&l->eng);
}

int proxy_listener_new(uv_loop_t *loop, const proxy_config_t *cfg, proxy_listener_t **out,
		       hutch_err_t *err)
{
	if (!cfg->listen || !cfg->policy || cfg->policy->size < offsetof(proxy_policy_t, cancel) ||
	    !cfg->policy->route)
		return hutch_err_set(err, EINVAL, "proxy: a listen address and a policy with route() are required");
	proxy_listener_t *l = xcalloc(1, sizeof *l);
	proxy_engine_init(&l->eng, loop, cfg);
	l->u.h.data = l;
	int r = strncmp(cfg->listen, "unix:", 5) == 0 ? listen_unix(l, loop, cfg->listen + 5, err)
						       : listen_tcp(l, loop, cfg->listen, cfg->freebind, err);
	if (r == 0) {
		r = uv_listen(&l->u.s, LISTEN_BACKLOG, on_connection);
		if (r < 0)
			r = hutch_err_set(err, -r, "listen on %s: %s", cfg->listen, uv_strerror(r));
	}
	if (r < 0) {
		/* Undo: the handle (if made) closes, then everything is freed. */
		l->unix_path[0] = '\0';
		proxy_listener_close(l, NULL, NULL);
		return r;
	}
	if (!l->is_unix) {
		struct sockaddr_storage ss;
		int len = sizeof ss;
		uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len);
		l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
	}
	if (cfg->tls) {
		SSL_CTX_up_ref(cfg->tls);
		l->tls = cfg->tls;
		SSL_CTX_set_alpn_select_cb(l->tls, alpn_select, NULL);
	}
	*out = l;
	return 0;
}

int proxy_listener_port(const proxy_listener_t *l)
{
	return l->port;
}

void proxy_listener_close(proxy_listener_t *l, void (*done)(void *arg), void *arg)
{
	l->done = done;
	l->done_arg = arg;
	l->eng.closed_cb = listener_final;
	l->eng.closed_arg = l;
	if (l->eng.handles && !uv_is_closing(&l->u.h) && l->u.h.loop)
		uv_close(&l->u.h, listener_handle_closed);
	proxy_engine_close(&l->eng);
}
