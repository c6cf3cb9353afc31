/*
 * peers.c: a tunnel's external peers: WireGuard devices elsewhere (an
 * on-premise network) that configure the tunnel's gateway once and then
 * reach its members, and that members reach, with the networks behind
 * them. Each peer gets an address of the subnet; its other allowed IPs
 * become routes in every member (via its tunnel interface) and in the
 * gateway. Input is the API's: every field is checked here.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "wg.h"

#define UAPI_TIMEOUT_MS 2000

void wg_peer_lines(const wg_peer_t *p, strbuf_t *b)
{
	char hex[2 * WG_KEY_LEN + 1], a[INET_ADDRSTRLEN];
	wg_key_hex(&p->pub, hex);
	inet_ntop(AF_INET, p->addr, a, sizeof a);
	sb_printf(b, "public_key=%s\n", hex);
	if (p->endpoint[0])
		sb_printf(b, "endpoint=%s\npersistent_keepalive_interval=25\n", p->endpoint);
	sb_printf(b, "replace_allowed_ips=true\nallowed_ip=%s/32\n", a);
	for (size_t k = 0; k < p->n_nets; k++) {
		inet_ntop(AF_INET, p->nets[k], a, sizeof a);
		sb_printf(b, "allowed_ip=%s/%u\n", a, p->nets[k][4]);
	}
}

static uint32_t be32(const uint8_t a[4])
{
	return (uint32_t)a[0] << 24 | (uint32_t)a[1] << 16 | (uint32_t)a[2] << 8 | a[3];
}

static bool overlaps(const uint8_t a[4], unsigned al, const uint8_t b[4], unsigned bl)
{
	unsigned l = al < bl ? al : bl;
	uint32_t mask = l ? 0xffffffffu << (32 - l) : 0;
	return (be32(a) & mask) == (be32(b) & mask);
}

/* One network behind a peer: canonical IPv4 CIDR, /8 to /32, nothing the
 * tunnel or the sandboxes depend on. */
static int net_parse(const wg_tunnel_t *t, const char *text, uint8_t out[5], hutch_err_t *err)
{
	char a[32];
	unsigned plen;
	char tail;
	if (!text || sscanf(text, "%31[0-9.]/%u%c", a, &plen, &tail) != 2 ||
	    inet_pton(AF_INET, a, out) != 1 || plen > 32)
		return hutch_err_set(err, EINVAL, "allowed IPs `%s`: not an IPv4 CIDR (a.b.c.d/n)",
				     text ? text : "");
	if (plen < 8)
		return hutch_err_set(err, EINVAL,
				     "allowed IPs `%s`: wider than /8 (the members' other traffic must stay on their own network)",
				     text);
	if (plen < 32 && (be32(out) & (0xffffffffu >> plen)))
		return hutch_err_set(err, EINVAL, "allowed IPs `%s`: host bits set", text);
	static const struct {
		uint8_t net[4];
		unsigned plen;
	} reserved[] = {{{0, 0, 0, 0}, 8}, {{127, 0, 0, 0}, 8}, {{169, 254, 0, 0}, 16},
			{{224, 0, 0, 0}, 4}, {{240, 0, 0, 0}, 4}};
	for (size_t i = 0; i < ARRAY_SIZE(reserved); i++)
		if (overlaps(out, plen, reserved[i].net, reserved[i].plen))
			return hutch_err_set(err, EINVAL,
					     "allowed IPs `%s`: overlaps a reserved range (loopback, link-local, multicast)",
					     text);
	if (overlaps(out, plen, t->net, t->plen))
		return hutch_err_set(err, EINVAL,
				     "allowed IPs `%s`: overlaps the tunnel's own subnet (the peer gets an address there by itself)",
				     text);
	out[4] = (uint8_t)plen;
	return 0;
}

static int endpoint_parse(const char *text, char out[80], hutch_err_t *err)
{
	out[0] = '\0';
	if (!text || !*text)
		return 0;
	char host[64];
	unsigned port = 0;
	char tail;
	uint8_t any[16];
	bool ok;
	if (text[0] == '[')
		ok = sscanf(text, "[%63[0-9a-fA-F:]]:%u%c", host, &port, &tail) == 2 &&
		     inet_pton(AF_INET6, host, any) == 1;
	else
		ok = sscanf(text, "%63[0-9.]:%u%c", host, &port, &tail) == 2 &&
		     inet_pton(AF_INET, host, any) == 1;
	if (!ok || port == 0 || port > 65535)
		return hutch_err_set(err, EINVAL,
				     "endpoint `%s`: give an IP address and a port (a.b.c.d:port or [v6]:port)",
				     text);
	snprintf(out, 80, "%s", text);
	return 0;
}

static wg_peer_t *peer_find(wg_tunnel_t *t, const char *name)
{
	for (size_t i = 0; i < t->n_peers; i++)
		if (strcmp(t->peers[i].name, name) == 0)
			return &t->peers[i];
	return NULL;
}

/* Fills p from the API's peer; t's lock held. */
static int peer_build(const wg_tunnel_t *t, const hutch_net_tunnel_peer_t *in, wg_peer_t *p,
		      hutch_err_t *err)
{
	memset(p, 0, sizeof *p);
	if (!wg_name_ok(in->name))
		return hutch_err_set(err, EINVAL,
				     "peer name `%s`: 1-63 of [a-z0-9-], not starting or ending with `-`",
				     in->name ? in->name : "");
	snprintf(p->name, sizeof p->name, "%s", in->name);
	if (wg_key_from_b64(in->public_key, &p->pub) < 0)
		return hutch_err_set(err, EINVAL,
				     "public key `%s`: not a WireGuard key (44 characters of base64, as `wg pubkey` prints)",
				     in->public_key ? in->public_key : "");
	int r = endpoint_parse(in->endpoint, p->endpoint, err);
	if (r < 0)
		return r;
	for (const char *const *c = in->allowed_ips; c && *c; c++) {
		if (p->n_nets == WG_MAX_PEER_NETS)
			return hutch_err_set(err, EINVAL, "at most %d allowed IPs per peer",
					     WG_MAX_PEER_NETS);
		if ((r = net_parse(t, *c, p->nets[p->n_nets], err)) < 0)
			return r;
		p->n_nets++;
	}
	for (size_t i = 0; i < t->n_peers; i++) {
		const wg_peer_t *o = &t->peers[i];
		if (strcmp(o->name, p->name) == 0)
			return hutch_err_set(err, EEXIST, "tunnel %s has a peer `%s`", t->name, p->name);
		if (memcmp(o->pub.b, p->pub.b, WG_KEY_LEN) == 0)
			return hutch_err_set(err, EEXIST, "peer `%s` has that key already", o->name);
		for (size_t k = 0; k < p->n_nets; k++)
			for (size_t l = 0; l < o->n_nets; l++)
				if (overlaps(p->nets[k], p->nets[k][4], o->nets[l], o->nets[l][4]))
					return hutch_err_set(err, EINVAL,
							     "allowed IPs overlap peer `%s`'s", o->name);
	}
	if (t->n_peers == WG_MAX_PEERS)
		return hutch_err_set(err, ENOSPC, "tunnel %s has %d peers (the most)", t->name,
				     WG_MAX_PEERS);
	return 0;
}

/* The tunnel (tenant, name), pinned (pending) and locked; NULL on error. */
static wg_tunnel_t *tunnel_hold(wg_instance_t *in, const char *tenant, const char *name,
				bool create, hutch_err_t *err)
{
	pthread_mutex_lock(&in->lock);
	wg_tunnel_t *t = NULL;
	if (wg_tunnel_get(in, tenant, name, create, &t, err) == 0)
		t->pending++;
	pthread_mutex_unlock(&in->lock);
	if (t)
		pthread_mutex_lock(&t->lock);
	return t;
}

static void tunnel_let_go(wg_instance_t *in, wg_tunnel_t *t)
{
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_lock(&in->lock);
	t->pending--;
	wg_tunnel_maybe_free(in, t);
	pthread_mutex_unlock(&in->lock);
}

int wg_peer_add(wg_instance_t *in, const char *tenant, const char *tunnel,
		const hutch_net_tunnel_peer_t *peer, hutch_err_t *err)
{
	wg_tunnel_t *t = tunnel_hold(in, tenant, tunnel, true, err);
	if (!t)
		return hutch_err_prefix(err, "peer");
	wg_peer_t p;
	int r = peer_build(t, peer, &p, err);
	if (r == 0 && (r = wg_tunnel_host_alloc(t, &p.host, err)) == 0)
		wg_tunnel_addr(t, p.host, p.addr);
	bool was_explicit = t->explicit_;
	if (r == 0) {
		t->peers[t->n_peers++] = p;
		t->explicit_ = true; /* a tunnel with peers stays */
		if (t->gw.running) {
			strbuf_t b = STRBUF_INIT;
			wg_peer_lines(&p, &b);
			r = wg_uapi_set(t->gw.proc.sock_path, b.buf, UAPI_TIMEOUT_MS, err);
			sb_free(&b);
			if (r == 0)
				r = wg_routes_set(t->gw.netns_path, "wg0", t, true,
						  &t->peers[t->n_peers - 1], err);
			if (r == 0)
				wg_gateway_members_update(in, t);
		} else {
			r = wg_gateway_start(in, t, err);
		}
		if (r == 0)
			r = wg_state_tunnel_save(in, t, err);
		if (r < 0) {
			t->n_peers--;
			wg_tunnel_host_release(t, p.host);
			t->explicit_ = was_explicit;
			if (t->n_peers == 0)
				wg_gateway_stop(in, t);
		}
	}
	tunnel_let_go(in, t);
	return r < 0 ? hutch_err_prefix(err, "peer `%s`", peer->name ? peer->name : "") : 0;
}

int wg_peer_remove(wg_instance_t *in, const char *tenant, const char *tunnel, const char *name,
		   hutch_err_t *err)
{
	wg_tunnel_t *t = tunnel_hold(in, tenant, tunnel, false, err);
	if (!t)
		return -ENOENT;
	wg_peer_t *p = peer_find(t, name ? name : "");
	int r = 0;
	if (!p) {
		r = hutch_err_set(err, ENOENT, "tunnel %s has no peer `%s`", tunnel, name ? name : "");
	} else if (t->n_peers == 1) {
		wg_gateway_stop(in, t);
		wg_tunnel_host_release(t, p->host);
		t->n_peers = 0;
	} else {
		char hex[2 * WG_KEY_LEN + 1], lines[128];
		wg_key_hex(&p->pub, hex);
		snprintf(lines, sizeof lines, "public_key=%s\nremove=true\n", hex);
		hutch_err_t e = {0};
		if (wg_uapi_set(t->gw.proc.sock_path, lines, UAPI_TIMEOUT_MS, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN, "tunnel %s: gateway: %s", t->name,
				      e.message);
		wg_routes_set(t->gw.netns_path, "wg0", t, false, p, &e);
		for (size_t i = 0; i < t->n_members; i++)
			wg_routes_set(t->members[i]->sandbox->netns_path, t->members[i]->ifname, t,
				      false, p, &e);
		wg_tunnel_host_release(t, p->host);
		*p = t->peers[--t->n_peers];
		wg_gateway_members_update(in, t);
	}
	if (r == 0)
		r = wg_state_tunnel_save(in, t, err);
	tunnel_let_go(in, t);
	return r;
}

int wg_peer_config(wg_instance_t *in, const char *tenant, const char *tunnel, const char *name,
		   char *buf, size_t cap, hutch_err_t *err)
{
	wg_tunnel_t *t = tunnel_hold(in, tenant, tunnel, false, err);
	if (!t)
		return -ENOENT;
	wg_peer_t *p = peer_find(t, name ? name : "");
	int r = 0;
	if (!p) {
		r = hutch_err_set(err, ENOENT, "tunnel %s has no peer `%s`", tunnel, name ? name : "");
	} else {
		char gw[WG_KEY_B64_LEN], pub[WG_KEY_B64_LEN], a[INET_ADDRSTRLEN], net[INET_ADDRSTRLEN];
		wg_key_b64(&t->gw.pub, gw);
		wg_key_b64(&p->pub, pub);
		inet_ntop(AF_INET, p->addr, a, sizeof a);
		inet_ntop(AF_INET, t->net, net, sizeof net);
		const char *host = in->cfg->gateway_host;
		int n = snprintf(
			buf, cap,
			"# wg-quick configuration for peer `%s` of hutch tunnel `%s`.\n"
			"# Put the private key whose public key is %s below.\n"
			"[Interface]\n"
			"PrivateKey = <the peer's private key>\n"
			"Address = %s/32\n"
			"\n"
			"[Peer]\n"
			"# the tunnel's gateway on this hutch node\n"
			"PublicKey = %s\n"
			"%sEndpoint = %s:%u\n"
			"AllowedIPs = %s/%u\n"
			"PersistentKeepalive = 25\n",
			p->name, t->name, pub, a, gw, host && *host ? "" : "# ",
			host && *host ? host : "<this node's address>", t->gw.port, net, t->plen);
		if (n < 0 || (size_t)n >= cap)
			r = hutch_err_set(err, ERANGE, "peer configuration: buffer too small");
	}
	tunnel_let_go(in, t);
	return r;
}
