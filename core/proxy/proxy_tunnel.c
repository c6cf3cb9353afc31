/*
 * proxy_tunnel.c: after a 101 (WebSocket and other upgrades), the client
 * and upstream sockets are joined and bytes flow both ways unparsed, with
 * the same backpressure as bodies: a side whose peer's queue is full stops
 * reading until it drains. Either side ending ends both (what was queued
 * is flushed first).
 */
#include <stdlib.h>

#include "proxy_priv.h"

struct tunnel;
struct tside {
	struct tunnel *t;
	proxy_sock_t *sock;
	struct tside *peer;
	bool paused;
};

struct tunnel {
	proxy_conn_base_t base;
	struct tside side[2];
};

static void tunnel_end(struct tunnel *t, bool graceful)
{
	plist_del(&t->base.link);
	for (int i = 0; i < 2; i++) {
		proxy_sock_t *s = t->side[i].sock;
		if (graceful)
			s->ops->close_graceful(s);
		else
			s->ops->close(s);
	}
	free(t);
}

static void ts_data(void *owner, const uint8_t *d, size_t n)
{
	struct tside *s = owner;
	sock_write(s->peer->sock, d, n);
	if (sock_blocked(s->peer->sock) && !s->paused) {
		s->paused = true;
		s->sock->ops->read_stop(s->sock);
	}
}

static void ts_eof(void *owner, int err)
{
	struct tside *s = owner;
	tunnel_end(s->t, err == 0);
}

static void ts_drain(void *owner)
{
	/* This side's queue drained: its peer may read again. */
	struct tside *s = owner;
	if (s->peer->paused) {
		s->peer->paused = false;
		s->peer->sock->ops->read_start(s->peer->sock);
	}
}

static const proxy_sock_cbs_t tunnel_cbs = {
	.data = ts_data,
	.eof = ts_eof,
	.drain = ts_drain,
};

static void tunnel_shut(proxy_conn_base_t *b)
{
	tunnel_end((struct tunnel *)b, false);
}

void proxy_tunnel_start(proxy_engine_t *eng, proxy_sock_t *down, proxy_sock_t *up,
			const uint8_t *down_rest, size_t down_n, const uint8_t *up_rest,
			size_t up_n)
{
	struct tunnel *t = xcalloc(1, sizeof *t);
	t->base.shut = tunnel_shut;
	plist_add_tail(&eng->conns, &t->base.link);
	t->side[0] = (struct tside){t, down, &t->side[1], false};
	t->side[1] = (struct tside){t, up, &t->side[0], false};
	sock_set_owner(down, &tunnel_cbs, &t->side[0]);
	sock_set_owner(up, &tunnel_cbs, &t->side[1]);
	sock_write(up, down_rest, down_n);
	sock_write(down, up_rest, up_n);
	down->ops->read_start(down);
	up->ops->read_start(up);
}
