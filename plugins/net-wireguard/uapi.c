/*
 * uapi.c: the cross-platform WireGuard configuration protocol
 * (https://www.wireguard.com/xplatform/), as wireguard-go serves it on a
 * unix socket: "set=1\n" or "get=1\n", key=value lines, an empty line; the
 * answer ends with "errno=N\n\n".
 *
 * Requests carry a private key at most once (a member's first set); the
 * buffers that held one are wiped. Answers to get=1 hold the private key
 * too: the parser notes that one is there and never copies it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cleanup.h"
#include "strbuf.h"
#include "wg.h"
#include "clock_ms.h"

#define UAPI_MAX_ANSWER (4u << 20)

static int uapi_connect(const char *path, hutch_err_t *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path)
		return hutch_err_set(err, ENAMETOOLONG, "UAPI socket path too long");
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return hutch_err_sys(err, errno, "UAPI socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(fd);
		return hutch_err_sys(err, e, "connect to %s", path);
	}
	return fd;
}

/* Writes req and reads until the empty line that ends an answer. */
static int uapi_exchange(const char *path, const char *req, size_t len, int timeout_ms,
			 strbuf_t *ans, hutch_err_t *err)
{
	_cleanup_close_ int fd = uapi_connect(path, err);
	if (fd < 0)
		return fd;
	int64_t deadline = mono_ms() + timeout_ms;
	size_t off = 0;
	while (off < len) {
		ssize_t n = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hutch_err_sys(err, errno, "UAPI write to %s", path);
		off += (size_t)n;
	}
	char buf[4096];
	for (;;) {
		if (ans->len >= 2 && memcmp(ans->buf + ans->len - 2, "\n\n", 2) == 0 &&
		    (ans->len == 2 || strstr(ans->buf, "errno=")))
			return 0;
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			return hutch_err_set(err, ETIMEDOUT, "UAPI %s: no answer within %d ms", path,
					     timeout_ms);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, (int)left);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hutch_err_sys(err, errno, "UAPI read from %s", path);
		if (n == 0)
			return hutch_err_set(err, EPROTO, "UAPI %s: closed before the answer ended",
					     path);
		if (ans->len + (size_t)n > UAPI_MAX_ANSWER)
			return hutch_err_set(err, EPROTO, "UAPI %s: answer over %u bytes", path,
					     UAPI_MAX_ANSWER);
		sb_append_n(ans, buf, (size_t)n);
	}
}

static int errno_line(const char *text, const char *path, hutch_err_t *err)
{
	const char *e = strstr(text, "errno=");
	if (!e || (e != text && e[-1] != '\n'))
		return hutch_err_set(err, EPROTO, "UAPI %s: answer without errno", path);
	long v = strtol(e + 6, NULL, 10);
	if (v != 0)
		return hutch_err_set(err, EIO, "UAPI %s: wireguard-go refused the request (errno=%ld)",
				     path, v);
	return 0;
}

int wg_uapi_set(const char *path, const char *body, int timeout_ms, hutch_err_t *err)
{
	strbuf_t req = STRBUF_INIT, ans = STRBUF_INIT;
	/* Room for all of it first: a buffer that grew would leave a copy of
	 * the key behind in the memory it left. */
	sb_reserve(&req, strlen(body) + 16);
	sb_printf(&req, "set=1\n%s\n", body);
	int r = uapi_exchange(path, req.buf, req.len, timeout_ms, &ans, err);
	if (r == 0)
		r = errno_line(ans.buf ? ans.buf : "", path, err);
	OPENSSL_cleanse(req.buf, req.cap);
	sb_free(&req);
	sb_free(&ans);
	return r;
}

static bool parse_i64(const char *s, int64_t *out)
{
	if (!*s || *s == '-' || *s == '+')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > INT64_MAX)
		return false;
	*out = (int64_t)v;
	return true;
}

int wg_uapi_parse(const char *text, size_t len, wg_uapi_state_t *st, hutch_err_t *err)
{
	memset(st, 0, sizeof *st);
	wg_uapi_peer_t *peer = NULL;
	size_t pos = 0;
	int r = 0;
	while (pos < len && r == 0) {
		const char *line = text + pos;
		const char *nl = memchr(line, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - line) : len - pos;
		pos += ll + 1;
		if (ll == 0)
			break;
		char key[32], val[128];
		const char *eq = memchr(line, '=', ll);
		size_t kl = eq ? (size_t)(eq - line) : 0;
		size_t vl = eq ? ll - kl - 1 : 0;
		if (!eq || kl == 0 || kl >= sizeof key || vl >= sizeof val) {
			r = hutch_err_set(err, EPROTO, "UAPI: malformed line");
			break;
		}
		memcpy(key, line, kl);
		key[kl] = '\0';
		memcpy(val, eq + 1, vl);
		val[vl] = '\0';
		int64_t n;
		if (strcmp(key, "private_key") == 0) {
			st->has_private_key = true; /* never copied */
		} else if (strcmp(key, "listen_port") == 0) {
			if (!parse_i64(val, &n) || n > 65535)
				r = hutch_err_set(err, EPROTO, "UAPI: bad listen_port");
			else
				st->listen_port = (uint16_t)n;
		} else if (strcmp(key, "public_key") == 0) {
			if (st->n_peers >= 65536) {
				r = hutch_err_set(err, EPROTO, "UAPI: too many peers");
				break;
			}
			st->peers = xrealloc(st->peers, (st->n_peers + 1) * sizeof *st->peers);
			peer = &st->peers[st->n_peers++];
			memset(peer, 0, sizeof *peer);
			if (wg_key_from_hex(val, &peer->pub) < 0)
				r = hutch_err_set(err, EPROTO, "UAPI: bad public_key");
		} else if (strcmp(key, "errno") == 0) {
			if (!parse_i64(val, &n))
				r = hutch_err_set(err, EPROTO, "UAPI: bad errno");
			else if (n != 0)
				r = hutch_err_set(err, EIO, "UAPI: get failed (errno=%" PRId64 ")", n);
		} else if (peer && strcmp(key, "last_handshake_time_sec") == 0) {
			if (!parse_i64(val, &peer->last_handshake_sec))
				r = hutch_err_set(err, EPROTO, "UAPI: bad last_handshake_time_sec");
		} else if (peer && strcmp(key, "rx_bytes") == 0) {
			if (!parse_i64(val, &peer->rx_bytes))
				r = hutch_err_set(err, EPROTO, "UAPI: bad rx_bytes");
		} else if (peer && strcmp(key, "tx_bytes") == 0) {
			if (!parse_i64(val, &peer->tx_bytes))
				r = hutch_err_set(err, EPROTO, "UAPI: bad tx_bytes");
		} else if (peer && strcmp(key, "endpoint") == 0) {
			snprintf(peer->endpoint, sizeof peer->endpoint, "%.63s", val);
		}
		/* Other keys (fwmark, allowed_ip, preshared_key, ...) are not
		 * needed here. */
	}
	if (r < 0)
		wg_uapi_state_free(st);
	return r;
}

int wg_uapi_get(const char *path, int timeout_ms, wg_uapi_state_t *st, hutch_err_t *err)
{
	static const char req[] = "get=1\n\n";
	strbuf_t ans = STRBUF_INIT;
	int r = uapi_exchange(path, req, sizeof req - 1, timeout_ms, &ans, err);
	if (r == 0)
		r = wg_uapi_parse(ans.buf ? ans.buf : "", ans.len, st, err);
	if (r < 0)
		hutch_err_prefix(err, "UAPI %s", path);
	/* The answer held the device's private key. */
	if (ans.buf)
		OPENSSL_cleanse(ans.buf, ans.cap);
	sb_free(&ans);
	return r;
}

void wg_uapi_state_free(wg_uapi_state_t *st)
{
	free(st->peers);
	memset(st, 0, sizeof *st);
}
