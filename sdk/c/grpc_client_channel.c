/*
 * grpc_client_channel.c: the client connection: target parsing, connect,
 * TLS through memory BIOs, the nghttp2 client session, and the pump that
 * moves bytes between them without blocking longer than asked.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "grpc_client_internal.h"

uint64_t hc_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct hc_call *hc_channel_find_call(hc_channel_t *ch, int32_t stream_id)
{
	for (struct hc_call *c = ch->calls; c; c = c->next)
		if (c->stream_id == stream_id)
			return c;
	return NULL;
}

void hc_channel_fail(hc_channel_t *ch, int errnum, const char *fmt, ...)
{
	if (ch->dead)
		return;
	ch->dead = true;
	ch->dead_errno = errnum;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ch->dead_msg, sizeof ch->dead_msg, fmt, ap);
	va_end(ap);
	for (struct hc_call *c = ch->calls; c; c = c->next)
		hc_call_end(c, HC_STATUS_UNAVAILABLE, ch->dead_msg);
}

static const char *ssl_error_text(char *buf, size_t cap)
{
	unsigned long e = ERR_get_error();
	if (e)
		ERR_error_string_n(e, buf, cap);
	else
		snprintf(buf, cap, "unknown TLS error");
	ERR_clear_error();
	return buf;
}

/* ---- output ---- */

static int out_append(hc_channel_t *ch, const uint8_t *data, size_t len)
{
	if (ch->out_len + len > ch->out_cap) {
		size_t cap = ch->out_cap ? ch->out_cap : 65536;
		while (cap < ch->out_len + len)
			cap *= 2;
		uint8_t *n = realloc(ch->out, cap);
		if (!n)
			return -ENOMEM;
		ch->out = n;
		ch->out_cap = cap;
	}
	memcpy(ch->out + ch->out_len, data, len);
	ch->out_len += len;
	return 0;
}

static int out_take_tls(hc_channel_t *ch)
{
	size_t n = BIO_ctrl_pending(ch->wbio);
	while (n > 0) {
		uint8_t buf[16384];
		int r = BIO_read(ch->wbio, buf, n < sizeof buf ? (int)n : (int)sizeof buf);
		if (r <= 0)
			break;
		if (out_append(ch, buf, (size_t)r) < 0)
			return -ENOMEM;
		n = BIO_ctrl_pending(ch->wbio);
	}
	return 0;
}

/* Writes the output buffer; returns 0 when empty, 1 when the socket is full,
 * -errno on failure. */
static int out_write(hc_channel_t *ch)
{
	while (ch->out_off < ch->out_len) {
		ssize_t n = send(ch->fd, ch->out + ch->out_off, ch->out_len - ch->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			return -errno;
		}
		ch->out_off += (size_t)n;
	}
	ch->out_off = ch->out_len = 0;
	return 0;
}

int hc_channel_flush(hc_channel_t *ch)
{
	char buf[256];
	while (!ch->dead) {
		int r = out_write(ch);
		if (r < 0) {
			hc_channel_fail(ch, -r, "write to server: %s", strerror(-r));
			break;
		}
		if (r == 1)
			return 0; /* the socket is full: nghttp2 keeps the rest */
		if (!ch->session)
			return 0;
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(ch->session, &p);
		if (n < 0) {
			hc_channel_fail(ch, EPROTO, "http2: %s", nghttp2_strerror((int)n));
			break;
		}
		if (n == 0)
			return 0;
		if (ch->tls) {
			ERR_clear_error();
			if (SSL_write(ch->ssl, p, (int)n) != (int)n) {
				hc_channel_fail(ch, EPROTO, "TLS write: %s",
						ssl_error_text(buf, sizeof buf));
				break;
			}
			if (out_take_tls(ch) < 0) {
				hc_channel_fail(ch, ENOMEM, "out of memory");
				break;
			}
		} else if (out_append(ch, p, (size_t)n) < 0) {
			hc_channel_fail(ch, ENOMEM, "out of memory");
			break;
		}
	}
	return -ch->dead_errno;
}

/* ---- input ---- */

static void feed_h2(hc_channel_t *ch, const uint8_t *data, size_t len)
{
	ssize_t r = nghttp2_session_mem_recv(ch->session, data, len);
	if (r < 0)
		hc_channel_fail(ch, EPROTO, "http2: %s", nghttp2_strerror((int)r));
}

static void feed(hc_channel_t *ch, const uint8_t *data, size_t len)
{
	char buf[256];
	if (!ch->tls) {
		feed_h2(ch, data, len);
		return;
	}
	ERR_clear_error();
	BIO_write(ch->rbio, data, (int)len);
	while (!ch->dead) {
		uint8_t plain[16384];
		int n = SSL_read(ch->ssl, plain, sizeof plain);
		if (n > 0) {
			feed_h2(ch, plain, (size_t)n);
			continue;
		}
		int e = SSL_get_error(ch->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			break;
		if (e == SSL_ERROR_ZERO_RETURN)
			hc_channel_fail(ch, ECONNRESET, "server closed the TLS session");
		else
			hc_channel_fail(ch, EPROTO, "TLS: %s", ssl_error_text(buf, sizeof buf));
	}
	out_take_tls(ch); /* TLS 1.3 may answer (key updates) */
}

/* Reads what the socket has (bounded, so one busy channel cannot starve
 * the caller). */
static void read_available(hc_channel_t *ch)
{
	uint8_t buf[65536];
	for (int i = 0; i < 16 && !ch->dead; i++) {
		ssize_t n = recv(ch->fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				hc_channel_fail(ch, errno, "read from server: %s", strerror(errno));
			return;
		}
		if (n == 0) {
			hc_channel_fail(ch, ECONNRESET, "server closed the connection");
			return;
		}
		feed(ch, buf, (size_t)n);
	}
}

static void check_deadlines(hc_channel_t *ch, uint64_t now)
{
	for (struct hc_call *c = ch->calls; c; c = c->next)
		hc_call_check_deadline(c, now);
}

static uint64_t next_deadline(hc_channel_t *ch)
{
	uint64_t d = 0;
	for (struct hc_call *c = ch->calls; c; c = c->next)
		if (!c->ended && c->deadline && (!d || c->deadline < d))
			d = c->deadline;
	return d;
}

int hc_channel_pump(hc_channel_t *ch, int timeout_ms, hutch_err_t *err)
{
	if (ch->dead)
		return hutch_err_set(err, ch->dead_errno, "%s", ch->dead_msg);
	hc_channel_flush(ch);
	uint64_t now = hc_now_ms();
	check_deadlines(ch, now);
	hc_channel_flush(ch);

	uint64_t dl = next_deadline(ch);
	int wait = timeout_ms;
	if (dl) {
		uint64_t left = dl > now ? dl - now : 0;
		if (wait < 0 || left < (uint64_t)wait)
			wait = (int)(left > 0x7fffffff ? 0x7fffffff : left);
	}
	struct pollfd p = { .fd = ch->fd, .events = hc_channel_events(ch) };
	int r = ch->dead ? 0 : poll(&p, 1, wait);
	if (r < 0 && errno != EINTR)
		hc_channel_fail(ch, errno, "poll: %s", strerror(errno));
	if (r > 0) {
		if (p.revents & (POLLIN | POLLHUP | POLLERR))
			read_available(ch);
		hc_channel_flush(ch);
	}
	check_deadlines(ch, hc_now_ms());
	hc_channel_flush(ch);
	if (ch->dead)
		return hutch_err_set(err, ch->dead_errno, "%s", ch->dead_msg);
	return 0;
}

int hc_channel_fd(const hc_channel_t *ch)
{
	return ch->fd;
}

short hc_channel_events(const hc_channel_t *ch)
{
	return POLLIN | (ch->out_off < ch->out_len ? POLLOUT : 0);
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	hc_call_t *call = hc_channel_find_call(user_data, frame->hd.stream_id);
	if (call)
		hc_call_on_header(call, name, namelen, value, valuelen);
	return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user_data)
{
	nghttp2_session_consume_connection(session, len);
	hc_call_t *call = hc_channel_find_call(user_data, stream_id);
	if (call)
		hc_call_on_data(call, data, len);
	else
		nghttp2_session_consume_stream(session, stream_id, len);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	hc_call_t *call = hc_channel_find_call(user_data, stream_id);
	if (call)
		hc_call_on_close(call, error_code);
	return 0;
}

static int on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame, int lib_error,
			     void *user_data)
{
	/* A request that could not go out (server sent GOAWAY, stream limit). */
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	hc_call_t *call = hc_channel_find_call(user_data, frame->hd.stream_id);
	if (call)
		hc_call_end(call, HC_STATUS_UNAVAILABLE, nghttp2_strerror(lib_error));
	return 0;
}

/* ---- connecting ---- */

static int set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ? -errno : 0;
}

static int wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = hc_now_ms();
		if (now >= deadline)
			return -ETIMEDOUT;
		struct pollfd p = { .fd = fd, .events = events };
		int r = poll(&p, 1, (int)(deadline - now));
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int connect_unix(const char *path, hutch_err_t *err)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof sun.sun_path)
		return hutch_err_set(err, ENAMETOOLONG, "connect unix:%s: path too long", path);
	strcpy(sun.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hutch_err_sys(err, errno, "socket");
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		int e = errno;
		close(fd);
		return hutch_err_sys(err, e, "connect unix:%s", path);
	}
	int r = set_nonblock(fd);
	if (r < 0) {
		close(fd);
		return hutch_err_sys(err, -r, "fcntl");
	}
	return fd;
}

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(a))
			return a->s6_addr[12] == 127;
	}
	return false;
}

static int connect_tcp(const char *host, const char *port, bool plaintext, uint64_t deadline,
		       hutch_err_t *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *res;
	int r = getaddrinfo(host, port, &hints, &res);
	if (r != 0)
		return hutch_err_set(err, r == EAI_SYSTEM ? errno : EHOSTUNREACH, "resolve %s: %s",
				     host, gai_strerror(r));
	int last = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (plaintext && !is_loopback(ai->ai_addr)) {
			last = hutch_err_set(err, EPERM,
					     "connect %s:%s: plaintext is only allowed to loopback "
					     "addresses (use TLS)",
					     host, port);
			continue;
		}
		int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0) {
			last = hutch_err_sys(err, errno, "socket");
			continue;
		}
		int e = 0;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			e = errno;
			if (e == EINPROGRESS) {
				e = -wait_fd(fd, POLLOUT, deadline);
				socklen_t len = sizeof e;
				if (e == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
					e = errno;
			}
		}
		if (e != 0) {
			close(fd);
			last = hutch_err_sys(err, e, "connect %s:%s", host, port);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		freeaddrinfo(res);
		return fd;
	}
	freeaddrinfo(res);
	return last ? last : hutch_err_set(err, EHOSTUNREACH, "connect %s:%s: no address", host, port);
}

static bool is_ip_literal(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;
	return inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
}

static int tls_start(hc_channel_t *ch, const hc_channel_opts_t *o, const char *host,
		     uint64_t deadline, hutch_err_t *err)
{
	char buf[256];
	ERR_clear_error();
	ch->ssl_ctx = SSL_CTX_new(TLS_client_method());
	if (!ch->ssl_ctx)
		return hutch_err_set(err, ENOMEM, "TLS: %s", ssl_error_text(buf, sizeof buf));
	SSL_CTX_set_min_proto_version(ch->ssl_ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ch->ssl_ctx, SSL_VERIFY_PEER, NULL);
	int ok = o->ca_file ? SSL_CTX_load_verify_locations(ch->ssl_ctx, o->ca_file, NULL)
			    : SSL_CTX_set_default_verify_paths(ch->ssl_ctx);
	if (ok != 1)
		return hutch_err_set(err, EINVAL, "TLS: load CA %s: %s",
				     o->ca_file ? o->ca_file : "(system)",
				     ssl_error_text(buf, sizeof buf));
	ch->ssl = SSL_new(ch->ssl_ctx);
	ch->rbio = BIO_new(BIO_s_mem());
	ch->wbio = BIO_new(BIO_s_mem());
	if (!ch->ssl || !ch->rbio || !ch->wbio) {
		BIO_free(ch->rbio);
		BIO_free(ch->wbio);
		ch->rbio = ch->wbio = NULL;
		return hutch_err_set(err, ENOMEM, "TLS: out of memory");
	}
	BIO_set_mem_eof_return(ch->rbio, -1);
	BIO_set_mem_eof_return(ch->wbio, -1);
	SSL_set_bio(ch->ssl, ch->rbio, ch->wbio);
	SSL_set_connect_state(ch->ssl);
	const char *name = o->server_name ? o->server_name : host;
	if (is_ip_literal(name)) {
		X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ch->ssl), name);
	} else {
		SSL_set_tlsext_host_name(ch->ssl, name);
		SSL_set1_host(ch->ssl, name);
	}
	static const unsigned char alpn[] = { 2, 'h', '2' };
	SSL_set_alpn_protos(ch->ssl, alpn, sizeof alpn);

	for (;;) {
		int r = SSL_do_handshake(ch->ssl);
		int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ch->ssl, r);
		/* Whatever the handshake produced goes out first (also the
		 * final flight, and an alert on failure). */
		if (out_take_tls(ch) < 0)
			return hutch_err_set(err, ENOMEM, "TLS: out of memory");
		int w;
		while ((w = out_write(ch)) == 1) {
			w = wait_fd(ch->fd, POLLOUT, deadline);
			if (w < 0)
				return hutch_err_sys(err, -w, "TLS handshake");
		}
		if (w < 0)
			return hutch_err_sys(err, -w, "TLS handshake");
		if (r == 1)
			break;
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			long v = SSL_get_verify_result(ch->ssl);
			if (v != X509_V_OK)
				return hutch_err_set(err, EPROTO, "TLS handshake: certificate: %s",
						     X509_verify_cert_error_string(v));
			return hutch_err_set(err, EPROTO, "TLS handshake: %s",
					     ssl_error_text(buf, sizeof buf));
		}
		if (e == SSL_ERROR_WANT_READ) {
			w = wait_fd(ch->fd, POLLIN, deadline);
			if (w < 0)
				return hutch_err_sys(err, -w, "TLS handshake");
			uint8_t in[16384];
			ssize_t n = recv(ch->fd, in, sizeof in, MSG_DONTWAIT);
			if (n == 0)
				return hutch_err_set(err, ECONNRESET,
						     "TLS handshake: server closed the connection");
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				return hutch_err_sys(err, errno, "TLS handshake");
			if (n > 0)
				BIO_write(ch->rbio, in, (int)n);
		}
	}
	const unsigned char *proto = NULL;
	unsigned int plen = 0;
	SSL_get0_alpn_selected(ch->ssl, &proto, &plen);
	if (plen != 2 || memcmp(proto, "h2", 2) != 0)
		return hutch_err_set(err, EPROTO, "TLS handshake: server did not select ALPN h2");
	ch->tls = true;
	return 0;
}

static int session_start(hc_channel_t *ch, hutch_err_t *err)
{
	nghttp2_session_callbacks *cbs;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return hutch_err_set(err, ENOMEM, "http2: out of memory");
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
	nghttp2_option *opt;
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cbs);
		return hutch_err_set(err, ENOMEM, "http2: out of memory");
	}
	/* Response data is only acknowledged once the caller takes it (see
	 * hc_call_on_data), so a caller that stops reading stops the server. */
	nghttp2_option_set_no_auto_window_update(opt, 1);
	int rv = nghttp2_session_client_new2(&ch->session, cbs, ch, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	if (rv != 0)
		return hutch_err_set(err, ENOMEM, "http2: %s", nghttp2_strerror(rv));
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, ch->stream_window },
	};
	rv = nghttp2_submit_settings(ch->session, NGHTTP2_FLAG_NONE, iv, 2);
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(
			ch->session, NGHTTP2_FLAG_NONE, 0,
			(int32_t)(ch->stream_window > HC_CONN_WINDOW ? ch->stream_window
								     : HC_CONN_WINDOW));
	if (rv != 0)
		return hutch_err_set(err, ENOMEM, "http2: %s", nghttp2_strerror(rv));
	if (hc_channel_flush(ch) < 0)
		return hutch_err_set(err, ch->dead_errno, "%s", ch->dead_msg);
	return 0;
}

/* Splits "host:port" / "[v6]:port" into its parts (in place). */
static int split_host_port(char *s, char **host, char **port)
{
	char *colon;
	if (s[0] == '[') {
		char *end = strchr(s, ']');
		if (!end || end[1] != ':')
			return -EINVAL;
		*end = '\0';
		*host = s + 1;
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || strchr(s, ':') != colon)
			return -EINVAL;
		*colon = '\0';
		*host = s;
	}
	*port = colon + 1;
	if (!**host || !**port)
		return -EINVAL;
	return 0;
}

int hc_channel_open(const char *target, const hc_channel_opts_t *opts, hc_channel_t **out,
		    hutch_err_t *err)
{
	static const hc_channel_opts_t none = { 0 };
	const hc_channel_opts_t *o = opts ? opts : &none;
	int timeout = o->connect_timeout_ms > 0 ? o->connect_timeout_ms
						: HC_DEFAULT_CONNECT_TIMEOUT_MS;
	uint64_t deadline = hc_now_ms() + (uint64_t)timeout;

	hc_channel_t *ch = calloc(1, sizeof *ch);
	if (!ch)
		return hutch_err_set(err, ENOMEM, "out of memory");
	ch->fd = -1;
	ch->max_recv = o->max_recv_message ? o->max_recv_message : HC_DEFAULT_MAX_RECV;
	ch->stream_window = o->stream_window ? o->stream_window : HC_DEFAULT_STREAM_WINDOW;
	if (ch->stream_window > NGHTTP2_MAX_WINDOW_SIZE)
		ch->stream_window = NGHTTP2_MAX_WINDOW_SIZE;
	int r;
	if (o->api_key) {
		if (asprintf(&ch->authorization, "Bearer %s", o->api_key) < 0) {
			ch->authorization = NULL;
			r = hutch_err_set(err, ENOMEM, "out of memory");
			goto fail;
		}
	}

	if (strncmp(target, "unix:", 5) == 0) {
		const char *path = target + 5;
		if (strncmp(path, "//", 2) == 0)
			path += 2; /* unix:///abs/path */
		if (!*path) {
			r = hutch_err_set(err, EINVAL, "bad target %s", target);
			goto fail;
		}
		r = connect_unix(path, err);
		if (r < 0)
			goto fail;
		ch->fd = r;
		ch->authority = strdup("localhost");
	} else {
		_cleanup_free_ char *copy = strdup(target);
		char *host, *port;
		if (!copy) {
			r = hutch_err_set(err, ENOMEM, "out of memory");
			goto fail;
		}
		if (split_host_port(copy, &host, &port) < 0) {
			r = hutch_err_set(err, EINVAL,
					  "bad target %s (want unix:PATH, HOST:PORT or [V6]:PORT)",
					  target);
			goto fail;
		}
		bool tls = o->tls || o->ca_file;
		r = connect_tcp(host, port, !tls, deadline, err);
		if (r < 0)
			goto fail;
		ch->fd = r;
		ch->authority = strdup(target);
		if (tls && (r = tls_start(ch, o, host, deadline, err)) < 0)
			goto fail;
	}
	if (!ch->authority) {
		r = hutch_err_set(err, ENOMEM, "out of memory");
		goto fail;
	}
	r = session_start(ch, err);
	if (r < 0)
		goto fail;
	*out = ch;
	return 0;
fail:
	hc_channel_close(ch);
	return r;
}

void hc_channel_close(hc_channel_t *ch)
{
	if (!ch)
		return;
	if (ch->session && !ch->dead) {
		nghttp2_session_terminate_session(ch->session, NGHTTP2_NO_ERROR);
		hc_channel_flush(ch); /* best effort: the GOAWAY */
	}
	hc_channel_fail(ch, ECONNRESET, "channel closed");
	while (ch->calls) {
		hc_call_t *c = ch->calls;
		ch->calls = c->next;
		c->prev = c->next = NULL;
		c->ch = NULL;
	}
	nghttp2_session_del(ch->session);
	SSL_free(ch->ssl); /* frees the BIOs */
	SSL_CTX_free(ch->ssl_ctx);
	if (ch->fd >= 0)
		close(ch->fd);
	free(ch->out);
	free(ch->authority);
	free(ch->authorization);
	free(ch);
}
