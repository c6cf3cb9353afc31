/*
 * plugin.c: the net-wireguard descriptor, its configuration, the
 * instance's birth and death, and the network ops.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"
#include "wg.h"

static const char *const backend_choices[] = {"auto", "userspace", "kernel", NULL};

#define F(type, key, def, member, desc)                                         \
	{type, key, def, offsetof(wg_config_t, member), desc, 0, NULL}

static const hutch_config_field_t config_fields[] = {
	F(HUTCH_CONFIG_STRING, "pool", "\"10.250.0.0/16\"", pool,
	  "IPv4 prefix the tunnels' subnets come from (one subnet per tunnel; must not overlap net-egress's pool)"),
	F(HUTCH_CONFIG_INT, "subnet_prefix", "24", subnet_prefix,
	  "prefix length of each tunnel's subnet (24: 253 members; host 1 is the tunnel's gateway)"),
	F(HUTCH_CONFIG_STRING, "wireguard_go", "\"wireguard-go\"", wireguard_go,
	  "the wireguard-go binary (looked up in PATH when not absolute)"),
	{HUTCH_CONFIG_ENUM, "backend", "\"auto\"", offsetof(wg_config_t, backend),
	 "auto or userspace: wireguard-go on the host side of each member; kernel: not implemented yet (refused)",
	 0, backend_choices},
	F(HUTCH_CONFIG_SIZE, "memory_limit", "\"56Mi\"", memory_limit,
	  "GOMEMLIMIT of each member's wireguard-go (0: none; it then grows to hundreds of MiB under load)"),
	F(HUTCH_CONFIG_STRING, "host_prefix", "\"hw\"", host_prefix,
	  "host-side device and UAPI socket names are <prefix><8 hex>; 1-6 of [a-z0-9]"),
	F(HUTCH_CONFIG_STRING, "endpoint_host", "\"127.0.0.1\"", endpoint_host,
	  "the address members on this node reach each other's UDP sockets at (an IP address)"),
	F(HUTCH_CONFIG_DURATION, "start_timeout", "\"5s\"", start_timeout_ms,
	  "how long a member's wireguard-go may take to start"),
	F(HUTCH_CONFIG_INT, "gateway_port", "51820", gateway_port,
	  "a tunnel's gateway (for external peers) listens on UDP gateway_port + the index of its subnet in the pool"),
	F(HUTCH_CONFIG_STRING, "gateway_host", "\"\"", gateway_host,
	  "this node's address as external peers reach it, for `hutch tunnel peer config`; empty: left for the operator to fill in"),
	F(HUTCH_CONFIG_STRING, "names_dir", NULL, names_dir,
	  "publish members' names (<sandbox>.<tunnel>.tunnel) here, one file per sandbox, for net-egress's local_names_dir (the same directory); unset: no names"),
	{0},
};

#undef F

/* ---- init ---- */

static int cidr4_parse(const char *text, uint8_t net[4], unsigned *plen)
{
	char buf[32];
	const char *slash = text ? strchr(text, '/') : NULL;
	if (!slash || (size_t)(slash - text) >= sizeof buf)
		return -EINVAL;
	memcpy(buf, text, (size_t)(slash - text));
	buf[slash - text] = '\0';
	char *end;
	long p = strtol(slash + 1, &end, 10);
	if (*end || end == slash + 1 || p < 0 || p > 32 || inet_pton(AF_INET, buf, net) != 1)
		return -EINVAL;
	*plen = (unsigned)p;
	return 0;
}

static bool prefix_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 6)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

static int config_check(wg_instance_t *in, hutch_err_t *err)
{
	const wg_config_t *c = in->cfg;
	if (cidr4_parse(c->pool, in->pool_net, &in->pool_plen) < 0)
		return hutch_err_set(err, EINVAL, "pool `%s` is not an IPv4 prefix (a.b.c.d/n)",
				     c->pool ? c->pool : "");
	uint32_t v = (uint32_t)in->pool_net[0] << 24 | (uint32_t)in->pool_net[1] << 16 |
		     (uint32_t)in->pool_net[2] << 8 | in->pool_net[3];
	if (in->pool_plen < 32 && (v & (0xffffffffu >> in->pool_plen)) != 0)
		return hutch_err_set(err, EINVAL, "pool `%s` has host bits set", c->pool);
	if (c->subnet_prefix < in->pool_plen || c->subnet_prefix > 29 ||
	    c->subnet_prefix - in->pool_plen > 16)
		return hutch_err_set(err, EINVAL,
				     "subnet_prefix %" PRId64 ": must be between the pool's length (%u) and 29, at most 16 more",
				     c->subnet_prefix, in->pool_plen);
	if (!prefix_ok(c->host_prefix))
		return hutch_err_set(err, EINVAL, "host_prefix `%s`: 1-6 of [a-z0-9]",
				     c->host_prefix ? c->host_prefix : "");
	uint8_t any[16];
	if (!c->endpoint_host || (inet_pton(AF_INET, c->endpoint_host, any) != 1 &&
				  inet_pton(AF_INET6, c->endpoint_host, any) != 1))
		return hutch_err_set(err, EINVAL, "endpoint_host `%s` is not an IP address",
				     c->endpoint_host ? c->endpoint_host : "");
	if (c->start_timeout_ms <= 0 || c->memory_limit < 0)
		return hutch_err_set(err, EINVAL, "start_timeout must be positive, memory_limit >= 0");
	if (strcmp(c->backend, "kernel") == 0)
		return hutch_err_set(err, ENOTSUP,
				     "backend = \"kernel\" is not implemented yet; use \"auto\" (wireguard-go)");
	in->n_subnets = 1u << (c->subnet_prefix - in->pool_plen);
	if (c->gateway_port <= 0 || c->gateway_port + (int64_t)in->n_subnets - 1 > 65535)
		return hutch_err_set(err, EINVAL,
				     "gateway_port %" PRId64 ": the pool's %u subnets need ports %" PRId64 " to %" PRId64 ", past 65535",
				     c->gateway_port, in->n_subnets, c->gateway_port,
				     c->gateway_port + (int64_t)in->n_subnets - 1);
	in->subnet_used = xcalloc((in->n_subnets + 7) / 8, 1);
	return 0;
}

static int mkdir_one(const char *dir, hutch_err_t *err)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", dir);
	return 0;
}

static void instance_free(wg_instance_t *in)
{
	if (!in)
		return;
	/* The members' processes stay (a restart adopts them); only what
	 * this process holds goes. */
	for (size_t i = 0; i < in->n_sandboxes; i++) {
		wg_sandbox_t *sb = in->sandboxes[i];
		for (size_t j = 0; j < sb->n_members; j++) {
			if (sb->members[j]->proc.pidfd >= 0)
				close(sb->members[j]->proc.pidfd);
			free(sb->members[j]);
		}
		free(sb);
	}
	free(in->sandboxes);
	wg_tunnels_free(in);
	free(in->subnet_used);
	free(in->state_dir);
	free(in->persist_dir);
	pthread_mutex_destroy(&in->lock);
	pthread_mutex_destroy(&in->names_lock);
	free(in);
}

static int wireguard_init(const hutch_host_t *host, const void *config, void **instance,
			  hutch_err_t *err)
{
	if (!host->run_dir)
		return hutch_err_set(err, EINVAL, "the host gave no run_dir");
	wg_instance_t *in = xcalloc(1, sizeof *in);
	in->host = host;
	in->cfg = config;
	pthread_mutex_init(&in->lock, NULL);
	pthread_mutex_init(&in->names_lock, NULL);
	in->state_dir = xstrdup(host->run_dir);
	in->persist_dir = xstrdup(host->state_dir ? host->state_dir : host->run_dir);
	_cleanup_free_ char *d1 = xasprintf("%s/members", in->state_dir);
	_cleanup_free_ char *d2 = xasprintf("%s/sandboxes", in->state_dir);
	_cleanup_free_ char *d3 = xasprintf("%s/tunnels", in->persist_dir);
	int r;
	if (in->cfg->names_dir && *in->cfg->names_dir && in->cfg->names_dir[0] != '/') {
		instance_free(in);
		return hutch_err_set(err, EINVAL, "names_dir `%s` must be an absolute path",
				     config ? ((const wg_config_t *)config)->names_dir : "");
	}
	if ((r = config_check(in, err)) < 0 || (r = mkdir_one(d1, err)) < 0 ||
	    (in->cfg->names_dir && *in->cfg->names_dir &&
	     (r = mkdir_one(in->cfg->names_dir, err)) < 0) ||
	    (r = mkdir_one(d2, err)) < 0 || (r = mkdir_one(d3, err)) < 0 ||
	    (r = wg_go_probe(in, err)) < 0) {
		instance_free(in);
		return r;
	}
	in->kernel_wireguard = wg_kernel_probe();
	wg_state_load_all(in);
	host->log(host, HUTCH_LOG_INFO,
		  "wireguard-go %s (%s), pool %s in /%d subnets, kernel WireGuard %s, %zu tunnels from before",
		  in->go_version, (in->tun_flags & WG_IFF_VNET_HDR) ? "offloads" : "no offloads",
		  in->cfg->pool, (int)in->cfg->subnet_prefix,
		  in->kernel_wireguard ? "present (not used yet)" : "absent", in->n_tunnels);
	*instance = in;
	return 0;
}

static void wireguard_fini(void *instance)
{
	instance_free(instance);
}

/* ---- the network ops ---- */

static void tunnel_copy(const hutch_net_tunnel_t *src, hutch_net_tunnel_t *dst)
{
	memset(dst, 0, sizeof *dst);
	memcpy(dst, src, src->size < sizeof *dst ? src->size : sizeof *dst);
}

static void address_put(hutch_net_attachment_t *out, const char *addr)
{
	if (out->size < offsetof(hutch_net_attachment_t, addresses) + sizeof out->addresses)
		return;
	for (size_t i = 0; i < HUTCH_NET_MAX_ADDRS; i++) {
		if (!out->addresses[i][0]) {
			snprintf(out->addresses[i], sizeof out->addresses[i], "%s", addr);
			return;
		}
	}
}

static int wireguard_detach(void *instance, const char *sandbox_id, hutch_err_t *err);

static int wireguard_attach(void *instance, const hutch_net_attach_t *req_in,
			    hutch_net_attachment_t *out, hutch_err_t *err)
{
	wg_instance_t *in = instance;
	hutch_net_attach_t req = {0};
	memcpy(&req, req_in, req_in->size < sizeof req ? req_in->size : sizeof req);
	if (!req.netns_path || !*req.netns_path)
		return hutch_err_set(err, EINVAL,
				     "net-wireguard needs a network namespace: list it after net-egress in [plugins] network");
	pthread_mutex_lock(&in->lock);
	wg_sandbox_t *sb = wg_sandbox_find(in, req.sandbox_id);
	int r = 0;
	if (sb)
		r = hutch_err_set(err, EEXIST, "sandbox %s is attached already", req.sandbox_id);
	else
		sb = wg_sandbox_add(in, req.sandbox_id, req.tenant, req.netns_path);
	/* A 1.1 core's request ends before sandbox_name (the copy reads NULL). */
	if (r == 0 && req.sandbox_name)
		snprintf(sb->name, sizeof sb->name, "%s", req.sandbox_name);
	pthread_mutex_unlock(&in->lock);
	if (r == 0)
		r = wg_state_sandbox_save(in, sb, err);
	for (size_t i = 0; r == 0 && i < req.n_tunnels; i++) {
		hutch_net_tunnel_t t;
		tunnel_copy(req.tunnels[i], &t);
		char addr[64];
		r = wg_member_join(in, req.sandbox_id, t.name, addr, err);
		if (r == 0)
			address_put(out, addr);
	}
	if (r < 0 && r != -EEXIST) {
		hutch_err_t e = {0};
		wireguard_detach(in, req.sandbox_id, &e);
	}
	return r;
}

static int wireguard_detach(void *instance, const char *sandbox_id, hutch_err_t *err)
{
	(void)err;
	wg_instance_t *in = instance;
	pthread_mutex_lock(&in->lock);
	wg_sandbox_t *sb = wg_sandbox_find(in, sandbox_id);
	pthread_mutex_unlock(&in->lock);
	if (!sb) {
		wg_state_sandbox_remove(in, sandbox_id);
		return 0;
	}
	wg_member_leave_all(in, sb);
	pthread_mutex_lock(&in->lock);
	wg_sandbox_remove(in, sb);
	pthread_mutex_unlock(&in->lock);
	wg_state_sandbox_remove(in, sandbox_id);
	wg_names_forget(in, sandbox_id);
	return 0;
}

static int wireguard_gc(void *instance, const char *const *live_ids, size_t n, hutch_err_t *err)
{
	wg_instance_t *in = instance;
	for (;;) {
		char id[128] = "";
		pthread_mutex_lock(&in->lock);
		for (size_t i = 0; i < in->n_sandboxes && !id[0]; i++) {
			bool live = false;
			for (size_t j = 0; j < n && !live; j++)
				live = strcmp(live_ids[j], in->sandboxes[i]->id) == 0;
			if (!live)
				snprintf(id, sizeof id, "%s", in->sandboxes[i]->id);
		}
		pthread_mutex_unlock(&in->lock);
		if (!id[0])
			return 0;
		int r = wireguard_detach(in, id, err);
		if (r < 0)
			return r;
	}
}

static int wireguard_tunnel_add(void *instance, const char *sandbox_id,
				const hutch_net_tunnel_t *tunnel, hutch_err_t *err)
{
	hutch_net_tunnel_t t;
	tunnel_copy(tunnel, &t);
	return wg_member_join(instance, sandbox_id, t.name, NULL, err);
}

static int wireguard_tunnel_remove(void *instance, const char *sandbox_id, const char *name,
				   hutch_err_t *err)
{
	return wg_member_leave(instance, sandbox_id, name, err);
}

static int wireguard_tunnel_create(void *instance, const char *tenant,
				   const hutch_net_tunnel_t *tunnel, hutch_err_t *err)
{
	hutch_net_tunnel_t t;
	tunnel_copy(tunnel, &t);
	return wg_tunnel_create(instance, tenant, &t, err);
}

static int wireguard_tunnel_delete(void *instance, const char *tenant, const char *name,
				   hutch_err_t *err)
{
	return wg_tunnel_delete(instance, tenant, name, err);
}

static int wireguard_tunnel_list(void *instance, const char *tenant, const char *name,
				 hutch_net_tunnel_info_cb cb, void *data, hutch_err_t *err)
{
	return wg_tunnel_list(instance, tenant, name, cb, data, err);
}

static int wireguard_tunnel_peer_add(void *instance, const char *tenant, const char *tunnel,
				     const hutch_net_tunnel_peer_t *peer, hutch_err_t *err)
{
	hutch_net_tunnel_peer_t p = {0};
	memcpy(&p, peer, peer->size < sizeof p ? peer->size : sizeof p);
	return wg_peer_add(instance, tenant, tunnel, &p, err);
}

static int wireguard_tunnel_peer_remove(void *instance, const char *tenant, const char *tunnel,
					const char *name, hutch_err_t *err)
{
	return wg_peer_remove(instance, tenant, tunnel, name, err);
}

static int wireguard_tunnel_peer_config(void *instance, const char *tenant, const char *tunnel,
					const char *name, char *buf, size_t cap, hutch_err_t *err)
{
	return wg_peer_config(instance, tenant, tunnel, name, buf, cap, err);
}

static void wireguard_capabilities(void *instance, hutch_kv_cb emit, void *data)
{
	wg_instance_t *in = instance;
	char buf[128];
	emit(data, "tunnels", "wireguard mesh per tenant and name");
	snprintf(buf, sizeof buf, "userspace (wireguard-go %s)", in->go_version);
	emit(data, "backend", buf);
	emit(data, "offloads", (in->tun_flags & WG_IFF_VNET_HDR) ? "yes" : "no");
	emit(data, "kernel_module", in->kernel_wireguard ? "present (not used yet)" : "absent");
	snprintf(buf, sizeof buf, "%s, /%d per tunnel", in->cfg->pool, (int)in->cfg->subnet_prefix);
	emit(data, "pool", buf);
	snprintf(buf, sizeof buf, "%" PRId64, in->cfg->memory_limit);
	emit(data, "memory_limit_bytes", buf);
}

static const hutch_network_ops_t wireguard_ops = {
	.size = sizeof(hutch_network_ops_t),
	.attach = wireguard_attach,
	.detach = wireguard_detach,
	.gc = wireguard_gc,
	.tunnel_add = wireguard_tunnel_add,
	.tunnel_remove = wireguard_tunnel_remove,
	.capabilities = wireguard_capabilities,
	.tunnel_create = wireguard_tunnel_create,
	.tunnel_delete = wireguard_tunnel_delete,
	.tunnel_list = wireguard_tunnel_list,
	.tunnel_peer_add = wireguard_tunnel_peer_add,
	.tunnel_peer_remove = wireguard_tunnel_peer_remove,
	.tunnel_peer_config = wireguard_tunnel_peer_config,
};

static const hutch_plugin_t wireguard_plugin = {
	.size = sizeof(hutch_plugin_t),
	.abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR,
	.kind = HUTCH_PLUGIN_NETWORK,
	.name = WG_PLUGIN_NAME,
	.version = WG_PLUGIN_VERSION,
	.description = "WireGuard meshes between a tenant's sandboxes (wireguard-go on the host "
		       "side, the interface inside the sandbox, keys generated per session)",
	.config = config_fields,
	.config_size = sizeof(wg_config_t),
	.init = wireguard_init,
	.fini = wireguard_fini,
	.ops = &wireguard_ops,
};

HUTCH_PLUGIN_DEFINE(wireguard_plugin)
