/*
 * member.c: a sandbox joining and leaving a tunnel.
 *
 * Joining: a key pair is generated, wireguard-go started on a new device
 * with the private key and every current member as a peer, the device
 * moved into the sandbox's namespace and addressed there, and then every
 * other member is told the new peer. Leaving: every other member forgets
 * the peer, then the process ends, and the device with it. The tunnel's
 * lock is held throughout, so the members' peer lists never disagree for
 * longer than one of these steps.
 *
 * Each member is a peer of the others with endpoint_host and the port of
 * its wireguard-go (on this node: the loopback), and as allowed IPs its
 * address only: cryptokey routing then drops anything a member sends from
 * an address that is not its own.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"
#include "wg.h"

#define UAPI_TIMEOUT_MS 2000

void wg_member_peer_lines(const wg_instance_t *in, const wg_member_t *m, char *buf, size_t cap)
{
	char hex[2 * WG_KEY_LEN + 1], a[INET_ADDRSTRLEN];
	wg_key_hex(&m->pub, hex);
	inet_ntop(AF_INET, m->addr, a, sizeof a);
	bool v6 = strchr(in->cfg->endpoint_host, ':') != NULL;
	snprintf(buf, cap,
		 "public_key=%s\nendpoint=%s%s%s:%u\nreplace_allowed_ips=true\nallowed_ip=%s/32\n",
		 hex, v6 ? "[" : "", in->cfg->endpoint_host, v6 ? "]" : "", m->proc.port, a);
}

static int configure_cb(void *arg, hutch_err_t *err)
{
	return wg_link_configure(arg, err);
}

/* The lowest "wgN" the sandbox does not use yet. */
static void ifname_pick(const wg_sandbox_t *sb, char out[16])
{
	for (unsigned n = 0;; n++) {
		snprintf(out, 16, "wg%u", n);
		bool taken = false;
		for (size_t i = 0; i < sb->n_members; i++)
			taken = taken || strcmp(sb->members[i]->ifname, out) == 0;
		if (!taken)
			return;
	}
}

/* Starts m's wireguard-go with every current member of t as a peer, and
 * puts its device into the sandbox. Tunnel lock held. */
static int member_start(wg_instance_t *in, wg_tunnel_t *t, wg_member_t *m, hutch_err_t *err)
{
	wg_key_t priv;
	int r = wg_keypair(&priv, &m->pub, err);
	if (r < 0)
		return r;
	strbuf_t body = STRBUF_INIT;
	for (size_t i = 0; i < t->n_members; i++) {
		char lines[256];
		wg_member_peer_lines(in, t->members[i], lines, sizeof lines);
		sb_append(&body, lines);
	}
	if (t->gw.running)
		wg_gateway_peer_lines(in, t, &body);
	int ifindex = 0;
	r = wg_go_start(in, &priv, body.buf ? body.buf : "", 0, &m->proc, &ifindex, err);
	wg_key_wipe(&priv);
	sb_free(&body);
	if (r < 0)
		return r;
	_cleanup_close_ int nsfd = open(m->sandbox->netns_path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0)
		r = hutch_err_sys(err, errno, "open %s", m->sandbox->netns_path);
	if (r == 0)
		r = wg_link_move(ifindex, nsfd, m->ifname, err);
	wg_link_plan_t plan = {
		.ifname = m->ifname,
		.alias = t->name,
		.plen = t->plen,
	};
	memcpy(plan.addr, m->addr, 4);
	if (r == 0)
		r = wg_in_netns(m->sandbox->netns_path, configure_cb, &plan, err);
	/* The external peers' networks, through the gateway. */
	if (r == 0 && t->gw.running)
		r = wg_routes_set(m->sandbox->netns_path, m->ifname, t, true, NULL, err);
	if (r < 0)
		wg_go_stop(in, &m->proc);
	return r;
}

/* Tells every member of t but m about m (add) or to forget it. Tunnel lock
 * held. A member that cannot be told is logged: its process is gone, and
 * its own leave follows. */
static void peers_tell(wg_instance_t *in, wg_tunnel_t *t, const wg_member_t *m, bool add)
{
	char lines[256];
	if (add) {
		wg_member_peer_lines(in, m, lines, sizeof lines);
	} else {
		char hex[2 * WG_KEY_LEN + 1];
		wg_key_hex(&m->pub, hex);
		snprintf(lines, sizeof lines, "public_key=%s\nremove=true\n", hex);
	}
	for (size_t i = 0; i < t->n_members; i++) {
		wg_member_t *o = t->members[i];
		if (o == m)
			continue;
		hutch_err_t e = {0};
		if (wg_uapi_set(o->proc.sock_path, lines, UAPI_TIMEOUT_MS, &e) < 0)
			in->host->log(in->host, HUTCH_LOG_WARN,
				      "tunnel %s: member %s: %s the peer %s: %s", t->name,
				      o->sandbox->id, add ? "cannot add" : "cannot remove",
				      m->sandbox->id, e.message);
	}
}

static void tunnel_release(wg_instance_t *in, wg_tunnel_t *t)
{
	pthread_mutex_lock(&in->lock);
	t->pending--;
	wg_tunnel_maybe_free(in, t);
	pthread_mutex_unlock(&in->lock);
}

int wg_member_join(wg_instance_t *in, const char *sandbox_id, const char *tunnel,
		   char addr_out[64], hutch_err_t *err)
{
	pthread_mutex_lock(&in->lock);
	wg_sandbox_t *sb = wg_sandbox_find(in, sandbox_id);
	wg_tunnel_t *t = NULL;
	int r = 0;
	if (!sb)
		r = hutch_err_set(err, ENOENT, "sandbox %s is not attached", sandbox_id);
	for (size_t i = 0; r == 0 && i < sb->n_members; i++)
		if (strcmp(sb->members[i]->tunnel->name, tunnel) == 0)
			r = hutch_err_set(err, EEXIST, "sandbox %s is already in tunnel %s",
					  sandbox_id, tunnel);
	if (r == 0 && sb->n_members >= WG_MAX_TUNNELS_PER_SANDBOX)
		r = hutch_err_set(err, ENOSPC, "sandbox %s is in %d tunnels already (the most)",
				  sandbox_id, WG_MAX_TUNNELS_PER_SANDBOX);
	if (r == 0)
		r = wg_tunnel_get(in, sb->tenant, tunnel, true, &t, err);
	wg_member_t *m = NULL;
	if (r == 0) {
		t->pending++;
		m = xcalloc(1, sizeof *m);
		m->tunnel = t;
		m->sandbox = sb;
		m->proc.pidfd = -1;
		m->proc.pid = -1;
		ifname_pick(sb, m->ifname);
		/* Holds the name while the join runs unlocked; ops for one
		 * sandbox never overlap, so nothing else looks meanwhile. */
		pthread_mutex_lock(&in->names_lock);
		sb->members[sb->n_members++] = m;
		pthread_mutex_unlock(&in->names_lock);
	}
	pthread_mutex_unlock(&in->lock);
	if (r < 0)
		return hutch_err_prefix(err, "join tunnel %s", tunnel);

	pthread_mutex_lock(&t->lock);
	r = wg_tunnel_host_alloc(t, &m->host, err);
	if (r == 0) {
		wg_tunnel_addr(t, m->host, m->addr);
		r = member_start(in, t, m, err);
		if (r < 0)
			wg_tunnel_host_release(t, m->host);
	}
	if (r == 0) {
		m->joined_unix = (int64_t)time(NULL);
		peers_tell(in, t, m, true);
		wg_gateway_member(in, t, m, true);
		pthread_mutex_lock(&in->names_lock);
		t->members = xrealloc(t->members, (t->n_members + 1) * sizeof *t->members);
		t->members[t->n_members++] = m;
		pthread_mutex_unlock(&in->names_lock);
		wg_names_tunnel_changed(in, t, NULL);
	}
	pthread_mutex_unlock(&t->lock);

	if (r < 0) {
		pthread_mutex_lock(&in->lock);
		pthread_mutex_lock(&in->names_lock);
		sb->n_members--;
		pthread_mutex_unlock(&in->names_lock);
		pthread_mutex_unlock(&in->lock);
		free(m);
		tunnel_release(in, t);
		return hutch_err_prefix(err, "join tunnel %s", tunnel);
	}
	hutch_err_t e = {0};
	if (wg_state_save(in, m, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "%s", e.message);
	if (addr_out) {
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, m->addr, a, sizeof a);
		snprintf(addr_out, 64, "%s/%u", a, t->plen);
	}
	in->host->metric_add(in->host, "wireguard_joins_total", NULL, 1);
	tunnel_release(in, t);
	return 0;
}

/* Takes m out of its tunnel and frees it. m is no longer in its sandbox's
 * list. */
static void member_drop(wg_instance_t *in, wg_member_t *m)
{
	wg_tunnel_t *t = m->tunnel;
	pthread_mutex_lock(&t->lock);
	pthread_mutex_lock(&in->names_lock);
	for (size_t i = 0; i < t->n_members; i++) {
		if (t->members[i] == m) {
			memmove(&t->members[i], &t->members[i + 1],
				(t->n_members - i - 1) * sizeof *t->members);
			t->n_members--;
			break;
		}
	}
	pthread_mutex_unlock(&in->names_lock);
	wg_names_tunnel_changed(in, t, m->sandbox);
	peers_tell(in, t, m, false);
	wg_gateway_member(in, t, m, false);
	wg_go_stop(in, &m->proc);
	wg_tunnel_host_release(t, m->host);
	pthread_mutex_unlock(&t->lock);
	wg_state_remove(in, m);
	in->host->metric_add(in->host, "wireguard_leaves_total", NULL, 1);
	free(m);
	tunnel_release(in, t);
}

int wg_member_leave(wg_instance_t *in, const char *sandbox_id, const char *tunnel,
		    hutch_err_t *err)
{
	pthread_mutex_lock(&in->lock);
	wg_sandbox_t *sb = wg_sandbox_find(in, sandbox_id);
	wg_member_t *m = NULL;
	for (size_t i = 0; sb && i < sb->n_members; i++) {
		if (strcmp(sb->members[i]->tunnel->name, tunnel) == 0) {
			m = sb->members[i];
			pthread_mutex_lock(&in->names_lock);
			sb->members[i] = sb->members[--sb->n_members];
			pthread_mutex_unlock(&in->names_lock);
			break;
		}
	}
	if (m)
		m->tunnel->pending++;
	pthread_mutex_unlock(&in->lock);
	if (!m)
		return hutch_err_set(err, ENOENT, "sandbox %s is not in tunnel %s", sandbox_id,
				     tunnel);
	member_drop(in, m);
	return 0;
}

void wg_member_leave_all(wg_instance_t *in, wg_sandbox_t *sb)
{
	for (;;) {
		pthread_mutex_lock(&in->lock);
		pthread_mutex_lock(&in->names_lock);
		wg_member_t *m = sb->n_members ? sb->members[--sb->n_members] : NULL;
		pthread_mutex_unlock(&in->names_lock);
		if (m)
			m->tunnel->pending++;
		pthread_mutex_unlock(&in->lock);
		if (!m)
			return;
		member_drop(in, m);
	}
}
