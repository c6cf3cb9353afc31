/*
 * inspect.c: the tunnel ops of the API: create (a tunnel that stays
 * without members, on a subnet of the caller's choosing), delete, and list
 * with each member's address, interface, key and latest handshake (asked
 * of its wireguard-go).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "strbuf.h"
#include "wg.h"

/* "subnet=a.b.c.d/n": which of the pool's subnets it is. */
static int subnet_parse(wg_instance_t *in, const char *config, uint32_t *index, hutch_err_t *err)
{
	if (strncmp(config, "subnet=", 7) != 0)
		return hutch_err_set(err, EINVAL, "tunnel config `%s`: only subnet=a.b.c.d/n is known",
				     config);
	const char *text = config + 7;
	char a[32];
	unsigned plen;
	uint8_t net[4];
	if (sscanf(text, "%31[0-9.]/%u", a, &plen) != 2 || inet_pton(AF_INET, a, net) != 1)
		return hutch_err_set(err, EINVAL, "subnet `%s` is not an IPv4 prefix", text);
	if (plen != (unsigned)in->cfg->subnet_prefix)
		return hutch_err_set(err, EINVAL, "subnet `%s`: tunnels here are /%d", text,
				     (int)in->cfg->subnet_prefix);
	for (uint32_t i = 0; i < in->n_subnets; i++) {
		uint8_t s[4];
		wg_subnet_addr(in, i, s);
		if (memcmp(s, net, 4) == 0) {
			*index = i;
			return 0;
		}
	}
	return hutch_err_set(err, EINVAL, "subnet `%s` is not a /%d of the pool %s", text,
			     (int)in->cfg->subnet_prefix, in->cfg->pool);
}

int wg_tunnel_create(wg_instance_t *in, const char *tenant, const hutch_net_tunnel_t *tunnel,
		     hutch_err_t *err)
{
	if (!wg_name_ok(tunnel->name))
		return hutch_err_set(err, EINVAL,
				     "tunnel name `%s`: 1-63 of [a-z0-9-], not starting or ending with `-`",
				     tunnel->name ? tunnel->name : "");
	uint32_t index = 0;
	bool chosen = tunnel->config && *tunnel->config;
	if (chosen && subnet_parse(in, tunnel->config, &index, err) < 0)
		return -EINVAL;
	pthread_mutex_lock(&in->lock);
	wg_tunnel_t *t = NULL;
	int r = 0;
	hutch_err_t e = {0};
	if (wg_tunnel_get(in, tenant, tunnel->name, false, &t, &e) == 0) {
		r = hutch_err_set(err, EEXIST, "tunnel `%s` exists", tunnel->name);
	} else if (chosen) {
		t = wg_tunnel_restore(in, tenant, tunnel->name, index);
		if (!t)
			r = hutch_err_set(err, EEXIST, "subnet %s is another tunnel's",
					  tunnel->config + 7);
	} else {
		r = wg_tunnel_get(in, tenant, tunnel->name, true, &t, err);
	}
	if (r == 0) {
		t->explicit_ = true;
		r = wg_state_tunnel_save(in, t, err);
		if (r < 0) {
			t->explicit_ = false;
			wg_tunnel_maybe_free(in, t);
		}
	}
	pthread_mutex_unlock(&in->lock);
	return r;
}

int wg_tunnel_delete(wg_instance_t *in, const char *tenant, const char *name, hutch_err_t *err)
{
	pthread_mutex_lock(&in->lock);
	wg_tunnel_t *t = NULL;
	int r = wg_tunnel_get(in, tenant, name, false, &t, err);
	if (r == 0 && (t->n_members > 0 || t->pending > 0))
		r = hutch_err_set(err, EBUSY, "tunnel `%s` has %zu members", name, t->n_members);
	if (r == 0 && t->n_peers > 0)
		r = hutch_err_set(err, EBUSY, "tunnel `%s` has %zu external peers: remove them first",
				  name, t->n_peers);
	if (r == 0) {
		wg_state_tunnel_remove(in, t);
		wg_gateway_key_remove(in, t);
		t->explicit_ = false;
		wg_tunnel_maybe_free(in, t);
	}
	pthread_mutex_unlock(&in->lock);
	return r;
}

/* The external peers, as tunnel_list reports them. */
typedef struct peers_report {
	hutch_net_tunnel_peer_t p[WG_MAX_PEERS];
	const hutch_net_tunnel_peer_t *ptrs[WG_MAX_PEERS + 1];
	char key[WG_MAX_PEERS][WG_KEY_B64_LEN];
	char addr[WG_MAX_PEERS][32];
	char nets[WG_MAX_PEERS][WG_MAX_PEER_NETS][32];
	const char *net_ptrs[WG_MAX_PEERS][WG_MAX_PEER_NETS + 1];
} peers_report_t;

static void peers_report(wg_instance_t *in, wg_tunnel_t *t, peers_report_t *r)
{
	(void)in;
	memset(r, 0, sizeof *r);
	wg_uapi_state_t st = {0};
	hutch_err_t e = {0};
	bool have = t->gw.running && wg_uapi_get(t->gw.proc.sock_path, 1000, &st, &e) == 0;
	for (size_t i = 0; i < t->n_peers; i++) {
		const wg_peer_t *p = &t->peers[i];
		char a[INET_ADDRSTRLEN];
		wg_key_b64(&p->pub, r->key[i]);
		inet_ntop(AF_INET, p->addr, a, sizeof a);
		snprintf(r->addr[i], sizeof r->addr[i], "%s/32", a);
		for (size_t k = 0; k < p->n_nets; k++) {
			inet_ntop(AF_INET, p->nets[k], a, sizeof a);
			snprintf(r->nets[i][k], sizeof r->nets[i][k], "%s/%u", a, p->nets[k][4]);
			r->net_ptrs[i][k] = r->nets[i][k];
		}
		int64_t hs = 0;
		for (size_t k = 0; have && k < st.n_peers; k++)
			if (memcmp(st.peers[k].pub.b, p->pub.b, WG_KEY_LEN) == 0)
				hs = st.peers[k].last_handshake_sec;
		r->p[i] = (hutch_net_tunnel_peer_t){
			.size = sizeof r->p[i],
			.name = p->name,
			.public_key = r->key[i],
			.endpoint = p->endpoint[0] ? p->endpoint : NULL,
			.allowed_ips = r->net_ptrs[i],
			.address = r->addr[i],
			.last_handshake_unix = hs,
		};
		r->ptrs[i] = &r->p[i];
	}
	if (have)
		wg_uapi_state_free(&st);
}

/* One tunnel's report, made under its lock. */
static void tunnel_report(wg_instance_t *in, wg_tunnel_t *t, hutch_net_tunnel_info_cb cb,
			  void *data)
{
	pthread_mutex_lock(&t->lock);
	size_t n = t->n_members;
	hutch_net_tunnel_member_t *mem = xcalloc(n + 1, sizeof *mem);
	const hutch_net_tunnel_member_t **ptrs = xcalloc(n + 1, sizeof *ptrs);
	char (*addr)[32] = xcalloc(n + 1, sizeof *addr);
	char (*key)[WG_KEY_B64_LEN] = xcalloc(n + 1, sizeof *key);
	for (size_t i = 0; i < n; i++) {
		wg_member_t *m = t->members[i];
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, m->addr, a, sizeof a);
		snprintf(addr[i], sizeof addr[i], "%s/%u", a, t->plen);
		wg_key_b64(&m->pub, key[i]);
		int64_t latest = 0;
		wg_uapi_state_t st;
		hutch_err_t e = {0};
		if (wg_uapi_get(m->proc.sock_path, 1000, &st, &e) == 0) {
			for (size_t p = 0; p < st.n_peers; p++)
				if (st.peers[p].last_handshake_sec > latest)
					latest = st.peers[p].last_handshake_sec;
			wg_uapi_state_free(&st);
		}
		mem[i] = (hutch_net_tunnel_member_t){
			.size = sizeof mem[i],
			.sandbox_id = m->sandbox->id,
			.address = addr[i],
			.interface = m->ifname,
			.public_key = key[i],
			.joined_unix = m->joined_unix,
			.last_handshake_unix = latest,
		};
		ptrs[i] = &mem[i];
	}
	char a[INET_ADDRSTRLEN], subnet[32];
	inet_ntop(AF_INET, t->net, a, sizeof a);
	snprintf(subnet, sizeof subnet, "%s/%u", a, t->plen);
	peers_report_t pr;
	peers_report(in, t, &pr);
	char gw_key[WG_KEY_B64_LEN] = "", gw_end[96] = "";
	if (t->gw.running) {
		wg_key_b64(&t->gw.pub, gw_key);
		snprintf(gw_end, sizeof gw_end, "%s:%u",
			 in->cfg->gateway_host && *in->cfg->gateway_host ? in->cfg->gateway_host : "",
			 t->gw.port);
	}
	hutch_net_tunnel_info_t info = {
		.size = sizeof info,
		.name = t->name,
		.subnet = subnet,
		.persistent = t->explicit_,
		.members = ptrs,
		.n_members = n,
		.peers = pr.ptrs,
		.n_peers = t->n_peers,
		.gateway_public_key = gw_key,
		.gateway_endpoint = gw_end,
	};
	cb(data, &info);
	pthread_mutex_unlock(&t->lock);
	free(mem);
	free(ptrs);
	free(addr);
	free(key);
}

int wg_tunnel_list(wg_instance_t *in, const char *tenant, const char *name,
		   hutch_net_tunnel_info_cb cb, void *data, hutch_err_t *err)
{
	/* The tunnels are pinned (pending) while reported unlocked. */
	pthread_mutex_lock(&in->lock);
	size_t n = 0;
	wg_tunnel_t **v = xcalloc(in->n_tunnels + 1, sizeof *v);
	for (size_t i = 0; i < in->n_tunnels; i++) {
		wg_tunnel_t *t = in->tunnels[i];
		if (strcmp(t->tenant, tenant) == 0 && (!name || strcmp(t->name, name) == 0)) {
			t->pending++;
			v[n++] = t;
		}
	}
	pthread_mutex_unlock(&in->lock);
	int r = 0;
	if (name && n == 0)
		r = hutch_err_set(err, ENOENT, "no tunnel `%s`", name);
	for (size_t i = 0; i < n; i++)
		tunnel_report(in, v[i], cb, data);
	pthread_mutex_lock(&in->lock);
	for (size_t i = 0; i < n; i++) {
		v[i]->pending--;
		wg_tunnel_maybe_free(in, v[i]);
	}
	pthread_mutex_unlock(&in->lock);
	free(v);
	return r;
}
