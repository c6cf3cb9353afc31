/*
 * proxy_conn.c: a freshly accepted connection, until it is known to speak
 * HTTP/2 (ALPN "h2", or the h2c client preface with prior knowledge) or
 * HTTP/1.x; then it becomes a proxy_h2 or a proxy_h1, with the bytes read
 * so far.
 */
#include <stdlib.h>

#include "proxy_priv.h"

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof h2_preface - 1)

struct sniff {
	proxy_conn_base_t base;
	proxy_engine_t *eng;
	proxy_sock_t *sock;
	proxy_timer_t *timer;
	uint8_t buf[H2_PREFACE_LEN];
	size_t n;
	char peer[64];
};

static void sniff_free(struct sniff *s, bool close_sock)
{
	plist_del(&s->base.link);
	if (close_sock && s->sock)
		s->sock->ops->close(s->sock);
	proxy_timer_free(s->timer);
	free(s);
}

static void sniff_timeout(void *arg)
{
	sniff_free(arg, true);
}

static void sniff_hand_over(struct sniff *s, bool h2, const uint8_t *d, size_t n)
{
	proxy_engine_t *eng = s->eng;
	proxy_sock_t *sock = s->sock;
	char peer[64];
	uint8_t first[H2_PREFACE_LEN];
	size_t k = s->n;
	memcpy(first, s->buf, k);
	memcpy(peer, s->peer, sizeof peer);
	s->sock = NULL;
	sniff_free(s, false);
	/* What was buffered goes first, then the rest of this read. */
	strbuf_t all = STRBUF_INIT;
	sb_append_n(&all, first, k);
	sb_append_n(&all, d, n);
	if (h2)
		proxy_h2_start(eng, sock, peer, (const uint8_t *)all.buf, all.len);
	else
		proxy_h1_start(eng, sock, peer, (const uint8_t *)all.buf, all.len);
	sb_free(&all);
}

static void sniff_data(void *owner, const uint8_t *d, size_t n)
{
	struct sniff *s = owner;
	const char *alpn = s->sock->ops->alpn(s->sock);
	if (strcmp(alpn, "h2") == 0) {
		sniff_hand_over(s, true, d, n);
		return;
	}
	if (alpn[0]) {
		sniff_hand_over(s, false, d, n);
		return;
	}
	/* Plaintext: prior-knowledge h2c starts with the preface. */
	size_t take = n < H2_PREFACE_LEN - s->n ? n : H2_PREFACE_LEN - s->n;
	if (memcmp(h2_preface + s->n, d, take) != 0) {
		sniff_hand_over(s, false, d, n);
		return;
	}
	memcpy(s->buf + s->n, d, take);
	s->n += take;
	if (s->n == H2_PREFACE_LEN) {
		/* h2 gets the whole preface back from buf. */
		sniff_hand_over(s, true, d + take, n - take);
	}
}

static void sniff_eof(void *owner, int err)
{
	sniff_free(owner, true);
}

static const proxy_sock_cbs_t sniff_cbs = {
	.data = sniff_data,
	.eof = sniff_eof,
};

static void sniff_shut(proxy_conn_base_t *b)
{
	struct sniff *s = (struct sniff *)b;
	/* engine close unlinked us already; plist_del is a no-op then. */
	sniff_free(s, true);
}

void proxy_conn_start(proxy_engine_t *eng, proxy_sock_t *sock, const char *peer)
{
	struct sniff *s = xcalloc(1, sizeof *s);
	s->base.shut = sniff_shut;
	plist_add_tail(&eng->conns, &s->base.link);
	s->eng = eng;
	s->sock = sock;
	snprintf(s->peer, sizeof s->peer, "%s", peer);
	s->timer = proxy_timer_new(eng, sniff_timeout, s);
	proxy_timer_arm(s->timer, eng->limits.header_timeout_ms);
	sock_set_owner(sock, &sniff_cbs, s);
	sock->ops->read_start(sock);
}
