/*
 * gateway.c: a tunnel's gateway, what external peers talk to. It is one
 * more wireguard-go with host 1 of the subnet, its device in a namespace of
 * the plugin's own (so its routes and forwarding touch neither hutchd's
 * namespace nor any sandbox's), its UDP socket on a fixed port of the host
 * (gateway_port + the subnet's index), and a key that stays the same across
 * sessions and restarts (kept under the plugin's state dir, 0600), so a
 * peer configures it once. Members have the gateway as a peer for the
 * peers' addresses and networks; the gateway has every member and every
 * peer, and forwards between them. It runs while the tunnel has peers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "wg.h"

#define UAPI_TIMEOUT_MS 2000

static char *key_path(const wg_instance_t *in, const wg_tunnel_t *t)
{
	return xasprintf("%s/tunnels/%" PRIu32 ".key", in->persist_dir, t->index);
}

int wg_gateway_key(wg_instance_t *in, wg_tunnel_t *t, wg_key_t *priv, hutch_err_t *err)
{
	_cleanup_free_ char *path = key_path(in, t);
	char hex[2 * WG_KEY_LEN + 2] = "";
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, hex, sizeof hex - 1) : -1;
	int r;
	if (n >= 2 * WG_KEY_LEN) {
		hex[2 * WG_KEY_LEN] = '\0';
		r = wg_key_from_hex(hex, priv);
		wg_wipe(hex, sizeof hex);
		if (r < 0)
			return hutch_err_set(err, EINVAL, "gateway key %s is damaged", path);
	} else {
		if ((r = wg_keypair(priv, &t->gw.pub, err)) < 0)
			return r;
		wg_key_hex(priv, hex);
		_cleanup_close_ int w = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		bool ok = w >= 0 && write(w, hex, 2 * WG_KEY_LEN) == 2 * WG_KEY_LEN;
		wg_wipe(hex, sizeof hex);
		if (!ok) {
			wg_key_wipe(priv);
			return hutch_err_sys(err, errno, "write the gateway key %s", path);
		}
	}
	return wg_pubkey_of(priv, &t->gw.pub, err);
}

void wg_gateway_key_remove(wg_instance_t *in, const wg_tunnel_t *t)
{
	_cleanup_free_ char *path = key_path(in, t);
	unlink(path);
}

void wg_gateway_peer_lines(const wg_instance_t *in, const wg_tunnel_t *t, strbuf_t *b)
{
	char hex[2 * WG_KEY_LEN + 1], a[INET_ADDRSTRLEN];
	wg_key_hex(&t->gw.pub, hex);
	uint8_t gw[4];
	wg_tunnel_addr(t, 1, gw);
	inet_ntop(AF_INET, gw, a, sizeof a);
	bool v6 = strchr(in->cfg->endpoint_host, ':') != NULL;
	sb_printf(b, "public_key=%s\nendpoint=%s%s%s:%u\nreplace_allowed_ips=true\nallowed_ip=%s/32\n",
		  hex, v6 ? "[" : "", in->cfg->endpoint_host, v6 ? "]" : "", t->gw.port, a);
	for (size_t i = 0; i < t->n_peers; i++) {
		const wg_peer_t *p = &t->peers[i];
		inet_ntop(AF_INET, p->addr, a, sizeof a);
		sb_printf(b, "allowed_ip=%s/32\n", a);
		for (size_t k = 0; k < p->n_nets; k++) {
			inet_ntop(AF_INET, p->nets[k], a, sizeof a);
			sb_printf(b, "allowed_ip=%s/%u\n", a, p->nets[k][4]);
		}
	}
}

typedef struct routes_job {
	const char *ifname;
	const wg_tunnel_t *t;
	bool add;
	const wg_peer_t *only;
} routes_job_t;

static int routes_cb(void *arg, hutch_err_t *err)
{
	routes_job_t *j = arg;
	int idx = (int)if_nametoindex(j->ifname);
	if (idx <= 0)
		return j->add ? hutch_err_set(err, ENODEV, "no %s", j->ifname) : 0;
	for (size_t i = 0; i < j->t->n_peers; i++) {
		const wg_peer_t *p = &j->t->peers[i];
		if (j->only && p != j->only)
			continue;
		for (size_t k = 0; k < p->n_nets; k++) {
			int r = wg_route(idx, p->nets[k], p->nets[k][4], j->add);
			if (r < 0 && j->add)
				return hutch_err_sys(err, -r, "route via %s", j->ifname);
		}
	}
	return 0;
}

int wg_routes_set(const char *netns_path, const char *ifname, const wg_tunnel_t *t, bool add,
		  const wg_peer_t *only, hutch_err_t *err)
{
	routes_job_t j = {.ifname = ifname, .t = t, .add = add, .only = only};
	return wg_in_netns(netns_path, routes_cb, &j, err);
}

/* Every member learns (or forgets) the gateway, and the routes to the
 * peers' networks. */
static void members_tell(wg_instance_t *in, wg_tunnel_t *t, bool add)
{
	strbuf_t b = STRBUF_INIT;
	if (add) {
		wg_gateway_peer_lines(in, t, &b);
	} else {
		char hex[2 * WG_KEY_LEN + 1];
		wg_key_hex(&t->gw.pub, hex);
		sb_printf(&b, "public_key=%s\nremove=true\n", hex);
	}
	for (size_t i = 0; i < t->n_members; i++) {
		wg_member_t *m = t->members[i];
		hutch_err_t e = {0};
		if (wg_uapi_set(m->proc.sock_path, b.buf, UAPI_TIMEOUT_MS, &e) < 0 ||
		    wg_routes_set(m->sandbox->netns_path, m->ifname, t, add, NULL, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN, "tunnel %s: member %s: gateway: %s",
				      t->name, m->sandbox->id, e.message);
	}
	sb_free(&b);
}

void wg_gateway_members_update(wg_instance_t *in, wg_tunnel_t *t)
{
	if (t->gw.running)
		members_tell(in, t, true);
}

static int gateway_configure_cb(void *arg, hutch_err_t *err)
{
	return wg_link_configure(arg, err);
}

int wg_gateway_start(wg_instance_t *in, wg_tunnel_t *t, hutch_err_t *err)
{
	if (t->gw.running)
		return 0;
	snprintf(t->gw.netns_path, sizeof t->gw.netns_path, "%s/gw-%" PRIu32, in->state_dir,
		 t->index);
	t->gw.port = (uint16_t)(in->cfg->gateway_port + t->index);
	wg_netns_remove(t->gw.netns_path); /* a leftover of a crash */
	int r = wg_netns_create(t->gw.netns_path, err);
	if (r < 0)
		return hutch_err_prefix(err, "gateway of tunnel %s", t->name);
	wg_key_t priv;
	if ((r = wg_gateway_key(in, t, &priv, err)) < 0) {
		wg_netns_remove(t->gw.netns_path);
		return r;
	}
	strbuf_t body = STRBUF_INIT;
	for (size_t i = 0; i < t->n_members; i++) {
		char lines[256];
		wg_member_peer_lines(in, t->members[i], lines, sizeof lines);
		sb_append(&body, lines);
	}
	for (size_t i = 0; i < t->n_peers; i++)
		wg_peer_lines(&t->peers[i], &body);
	int ifindex = 0;
	r = wg_go_start(in, &priv, body.buf ? body.buf : "", t->gw.port, &t->gw.proc, &ifindex, err);
	wg_key_wipe(&priv);
	sb_free(&body);
	if (r == 0) {
		_cleanup_close_ int nsfd = open(t->gw.netns_path, O_RDONLY | O_CLOEXEC);
		r = nsfd < 0 ? hutch_err_sys(err, errno, "open %s", t->gw.netns_path)
			     : wg_link_move(ifindex, nsfd, "wg0", err);
		wg_link_plan_t plan = {.ifname = "wg0", .alias = t->name, .plen = t->plen};
		wg_tunnel_addr(t, 1, plan.addr);
		if (r == 0)
			r = wg_in_netns(t->gw.netns_path, gateway_configure_cb, &plan, err);
		if (r == 0)
			r = wg_routes_set(t->gw.netns_path, "wg0", t, true, NULL, err);
		if (r < 0)
			wg_go_stop(in, &t->gw.proc);
	}
	if (r < 0) {
		wg_netns_remove(t->gw.netns_path);
		return hutch_err_prefix(err, "gateway of tunnel %s", t->name);
	}
	t->gw.running = true;
	hutch_err_t e = {0};
	if (wg_state_gateway_save(in, t, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "%s", e.message);
	members_tell(in, t, true);
	in->host->log(in->host, HUTCH_LOG_INFO, "tunnel %s/%s: gateway on UDP port %u", t->tenant,
		      t->name, t->gw.port);
	return 0;
}

void wg_gateway_stop(wg_instance_t *in, wg_tunnel_t *t)
{
	if (!t->gw.running)
		return;
	members_tell(in, t, false);
	wg_go_stop(in, &t->gw.proc);
	wg_netns_remove(t->gw.netns_path);
	t->gw.running = false;
	hutch_err_t e = {0};
	wg_state_gateway_save(in, t, &e);
}

void wg_gateway_member(wg_instance_t *in, wg_tunnel_t *t, const wg_member_t *m, bool add)
{
	if (!t->gw.running)
		return;
	char lines[256];
	if (add) {
		wg_member_peer_lines(in, m, lines, sizeof lines);
	} else {
		char hex[2 * WG_KEY_LEN + 1];
		wg_key_hex(&m->pub, hex);
		snprintf(lines, sizeof lines, "public_key=%s\nremove=true\n", hex);
	}
	hutch_err_t e = {0};
	if (wg_uapi_set(t->gw.proc.sock_path, lines, UAPI_TIMEOUT_MS, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "tunnel %s: gateway: %s", t->name, e.message);
}
