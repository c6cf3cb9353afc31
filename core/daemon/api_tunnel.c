/* hutch.v1.Tunnels (create, get, list, delete, and external peers): the
 * tenant's tunnels, as the
 * network plugin that makes them (one with the 1.2 tunnel ops, e.g.
 * net-wireguard) knows them. Plugin ops may block, so each call runs on the
 * pool and answers on the loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "hutch/v1/tunnel.pb-c.h"
#include "log.h"
#include "strbuf.h"

typedef enum tunnel_op {
	OP_CREATE, OP_GET, OP_LIST, OP_DELETE, OP_PEER_ADD, OP_PEER_REMOVE, OP_PEER_CONFIG
} tunnel_op_t;

#define PEER_CONFIG_MAX 4096

typedef struct tunnel_job {
	uv_work_t req;
	daemon_t *d;
	grpc_call_t *call;
	plugin_t *plugin;
	tunnel_op_t op;
	char *tenant, *name, *subnet;
	char *peer_name, *peer_key, *peer_endpoint;
	char **peer_nets;            /* NULL-terminated */
	char *config_text;           /* PeerConfig's answer */
	Hutch__V1__Tunnel **tunnels; /* what list/get found */
	size_t n_tunnels;
	int result;
	hutch_err_t err;
} tunnel_job_t;

/* The network plugin that makes tunnels, or NULL. */
static plugin_t *tunnel_plugin(daemon_t *d)
{
	for (size_t i = 0; i < d->plugins.n_network; i++)
		if (d->plugins.network[i]->ops.network.tunnel_list)
			return d->plugins.network[i];
	return NULL;
}

static Hutch__V1__Tunnel *tunnel_pb(const hutch_net_tunnel_info_t *in)
{
	Hutch__V1__Tunnel *t = xmalloc(sizeof *t);
	hutch__v1__tunnel__init(t);
	t->name = xstrdup(in->name ? in->name : "");
	t->subnet = xstrdup(in->subnet ? in->subnet : "");
	t->persistent = in->persistent;
	t->gateway_public_key = xstrdup(in->gateway_public_key ? in->gateway_public_key : "");
	t->gateway_endpoint = xstrdup(in->gateway_endpoint ? in->gateway_endpoint : "");
	t->peers = xcalloc(in->n_peers + 1, sizeof *t->peers);
	for (size_t i = 0; i < in->n_peers; i++) {
		hutch_net_tunnel_peer_t p = {0};
		memcpy(&p, in->peers[i], in->peers[i]->size < sizeof p ? in->peers[i]->size : sizeof p);
		Hutch__V1__TunnelPeer *pp = xmalloc(sizeof *pp);
		hutch__v1__tunnel_peer__init(pp);
		pp->name = xstrdup(p.name ? p.name : "");
		pp->public_key = xstrdup(p.public_key ? p.public_key : "");
		pp->endpoint = xstrdup(p.endpoint ? p.endpoint : "");
		pp->address = xstrdup(p.address ? p.address : "");
		pp->last_handshake_unix = p.last_handshake_unix;
		pp->allowed_ips = strv_dup(p.allowed_ips);
		pp->n_allowed_ips = strv_len(pp->allowed_ips);
		t->peers[t->n_peers++] = pp;
	}
	t->members = xcalloc(in->n_members + 1, sizeof *t->members);
	for (size_t i = 0; i < in->n_members; i++) {
		hutch_net_tunnel_member_t m = {0};
		memcpy(&m, in->members[i],
		       in->members[i]->size < sizeof m ? in->members[i]->size : sizeof m);
		Hutch__V1__TunnelMember *pm = xmalloc(sizeof *pm);
		hutch__v1__tunnel_member__init(pm);
		pm->sandbox_id = xstrdup(m.sandbox_id ? m.sandbox_id : "");
		pm->address = xstrdup(m.address ? m.address : "");
		pm->interface = xstrdup(m.interface ? m.interface : "");
		pm->public_key = xstrdup(m.public_key ? m.public_key : "");
		pm->joined_unix = m.joined_unix;
		pm->last_handshake_unix = m.last_handshake_unix;
		t->members[t->n_members++] = pm;
	}
	return t;
}

static void tunnel_pb_free(Hutch__V1__Tunnel *t)
{
	for (size_t i = 0; i < t->n_members; i++) {
		Hutch__V1__TunnelMember *m = t->members[i];
		free(m->sandbox_id);
		free(m->address);
		free(m->interface);
		free(m->public_key);
		free(m);
	}
	free(t->members);
	for (size_t i = 0; i < t->n_peers; i++) {
		Hutch__V1__TunnelPeer *p = t->peers[i];
		free(p->name);
		free(p->public_key);
		free(p->endpoint);
		free(p->address);
		strv_free(p->allowed_ips);
		free(p);
	}
	free(t->peers);
	free(t->gateway_public_key);
	free(t->gateway_endpoint);
	free(t->name);
	free(t->subnet);
	free(t);
}

static void on_info(void *data, const hutch_net_tunnel_info_t *info)
{
	tunnel_job_t *j = data;
	hutch_net_tunnel_info_t in = {0};
	memcpy(&in, info, info->size < sizeof in ? info->size : sizeof in);
	j->tunnels = xrealloc(j->tunnels, (j->n_tunnels + 1) * sizeof *j->tunnels);
	j->tunnels[j->n_tunnels++] = tunnel_pb(&in);
}

static void tunnel_work(uv_work_t *req)
{
	tunnel_job_t *j = req->data;
	const hutch_network_ops_t *ops = &j->plugin->ops.network;
	void *inst = j->plugin->instance;
	hutch_net_tunnel_t t = {.size = sizeof t, .name = j->name,
				.config = j->subnet ? j->subnet : NULL};
	switch (j->op) {
	case OP_CREATE:
		j->result = ops->tunnel_create(inst, j->tenant, &t, &j->err);
		if (j->result == 0)
			j->result = ops->tunnel_list(inst, j->tenant, j->name, on_info, j, &j->err);
		break;
	case OP_GET:
		j->result = ops->tunnel_list(inst, j->tenant, j->name, on_info, j, &j->err);
		break;
	case OP_LIST:
		j->result = ops->tunnel_list(inst, j->tenant, NULL, on_info, j, &j->err);
		break;
	case OP_DELETE:
		j->result = ops->tunnel_delete(inst, j->tenant, j->name, &j->err);
		break;
	case OP_PEER_ADD: {
		hutch_net_tunnel_peer_t p = {.size = sizeof p, .name = j->peer_name,
					     .public_key = j->peer_key,
					     .endpoint = j->peer_endpoint,
					     .allowed_ips = (const char *const *)j->peer_nets};
		j->result = ops->tunnel_peer_add(inst, j->tenant, j->name, &p, &j->err);
		if (j->result == 0)
			j->result = ops->tunnel_list(inst, j->tenant, j->name, on_info, j, &j->err);
		break;
	}
	case OP_PEER_REMOVE:
		j->result = ops->tunnel_peer_remove(inst, j->tenant, j->name, j->peer_name, &j->err);
		if (j->result == 0)
			j->result = ops->tunnel_list(inst, j->tenant, j->name, on_info, j, &j->err);
		break;
	case OP_PEER_CONFIG:
		j->config_text = xcalloc(1, PEER_CONFIG_MAX);
		j->result = ops->tunnel_peer_config(inst, j->tenant, j->name, j->peer_name,
						    j->config_text, PEER_CONFIG_MAX, &j->err);
		break;
	}
}

static void job_free(tunnel_job_t *j)
{
	for (size_t i = 0; i < j->n_tunnels; i++)
		tunnel_pb_free(j->tunnels[i]);
	free(j->tunnels);
	free(j->tenant);
	free(j->name);
	free(j->subnet);
	free(j->peer_name);
	free(j->peer_key);
	free(j->peer_endpoint);
	strv_free(j->peer_nets);
	free(j->config_text);
	free(j);
}

static void tunnel_done(uv_work_t *req, int status)
{
	tunnel_job_t *j = req->data;
	j->d->http_jobs--;
	if (status < 0 && j->result == 0)
		j->result = hutch_err_set(&j->err, ECANCELED, "hutchd is shutting down");
	if (j->result < 0) {
		hutch_err_prefix(&j->err, "%s", j->plugin->name);
		api_fail(j->call, &j->err);
	} else if (j->op == OP_LIST) {
		Hutch__V1__ListTunnelsResponse resp = HUTCH__V1__LIST_TUNNELS_RESPONSE__INIT;
		resp.tunnels = j->tunnels;
		resp.n_tunnels = j->n_tunnels;
		grpc_call_send(j->call, &resp.base);
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
	} else if (j->op == OP_PEER_CONFIG) {
		Hutch__V1__TunnelPeerConfig resp = HUTCH__V1__TUNNEL_PEER_CONFIG__INIT;
		resp.text = j->config_text;
		grpc_call_send(j->call, &resp.base);
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
	} else if (j->op == OP_DELETE) {
		Hutch__V1__DeleteTunnelResponse resp = HUTCH__V1__DELETE_TUNNEL_RESPONSE__INIT;
		log_info("tunnel %s/%s deleted", j->tenant, j->name);
		grpc_call_send(j->call, &resp.base);
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
	} else if (j->n_tunnels == 1) {
		if (j->op == OP_CREATE)
			log_info("tunnel %s/%s created (%s)", j->tenant, j->name, j->tunnels[0]->subnet);
		grpc_call_send(j->call, &j->tunnels[0]->base);
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
	} else {
		grpc_call_finish(j->call, GRPC_STATUS_INTERNAL, "the plugin reported no such tunnel");
	}
	grpc_call_unref(j->call);
	job_free(j);
}

/* A job for op on the tunnel name, or NULL (the call is answered). */
static tunnel_job_t *job_new(grpc_call_t *call, tunnel_op_t op, const char *name)
{
	daemon_t *d = grpc_call_service_data(call);
	plugin_t *p = tunnel_plugin(d);
	if (!p) {
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
				 "no network plugin makes tunnels (add net-wireguard to [plugins] network)");
		return NULL;
	}
	const hutch_network_ops_t *ops = &p->ops.network;
	if ((op == OP_PEER_ADD || op == OP_PEER_REMOVE || op == OP_PEER_CONFIG) &&
	    (!ops->tunnel_peer_add || !ops->tunnel_peer_remove || !ops->tunnel_peer_config)) {
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
				 "the tunnel plugin has no external peers");
		return NULL;
	}
	if (op != OP_LIST && (!name || !*name)) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "a tunnel name is required");
		return NULL;
	}
	tunnel_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->d = d;
	j->call = call;
	j->plugin = p;
	j->op = op;
	j->tenant = xstrdup(daemon_call_tenant(call));
	j->name = name ? xstrdup(name) : NULL;
	return j;
}

static void job_queue(tunnel_job_t *j)
{
	daemon_t *d = j->d;
	grpc_call_ref(j->call);
	d->http_jobs++;
	int r = uv_queue_work(&d->loop, &j->req, tunnel_work, tunnel_done);
	if (r < 0) {
		d->http_jobs--;
		grpc_call_finish(j->call, GRPC_STATUS_UNAVAILABLE, uv_strerror(r));
		grpc_call_unref(j->call);
		job_free(j);
	}
}

static void start(grpc_call_t *call, tunnel_op_t op, const char *name, const char *subnet)
{
	tunnel_job_t *j = job_new(call, op, name);
	if (!j)
		return;
	j->subnet = subnet && *subnet ? xasprintf("subnet=%s", subnet) : NULL;
	job_queue(j);
}

static void create_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__CreateTunnelRequest *r = (const void *)msg;
	start(call, OP_CREATE, r->name, r->subnet);
}

static void get_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__GetTunnelRequest *r = (const void *)msg;
	start(call, OP_GET, r->name, NULL);
}

static void list_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	(void)msg;
	start(call, OP_LIST, NULL, NULL);
}

static void delete_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__DeleteTunnelRequest *r = (const void *)msg;
	start(call, OP_DELETE, r->name, NULL);
}

static void peer_add_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__AddTunnelPeerRequest *r = (const void *)msg;
	if (!r->peer) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "a peer is required");
		return;
	}
	tunnel_job_t *j = job_new(call, OP_PEER_ADD, r->tunnel);
	if (!j)
		return;
	j->peer_name = xstrdup(r->peer->name ? r->peer->name : "");
	j->peer_key = xstrdup(r->peer->public_key ? r->peer->public_key : "");
	j->peer_endpoint = r->peer->endpoint && *r->peer->endpoint ? xstrdup(r->peer->endpoint) : NULL;
	/* protobuf-c's repeated strings are counted, not NULL-terminated. */
	j->peer_nets = xcalloc(r->peer->n_allowed_ips + 1, sizeof *j->peer_nets);
	for (size_t i = 0; i < r->peer->n_allowed_ips; i++)
		j->peer_nets[i] = xstrdup(r->peer->allowed_ips[i]);
	job_queue(j);
}

static void peer_remove_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__RemoveTunnelPeerRequest *r = (const void *)msg;
	tunnel_job_t *j = job_new(call, OP_PEER_REMOVE, r->tunnel);
	if (!j)
		return;
	j->peer_name = xstrdup(r->name ? r->name : "");
	job_queue(j);
}

static void peer_config_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__TunnelPeerConfigRequest *r = (const void *)msg;
	tunnel_job_t *j = job_new(call, OP_PEER_CONFIG, r->tunnel);
	if (!j)
		return;
	j->peer_name = xstrdup(r->name ? r->name : "");
	job_queue(j);
}

static const grpc_method_t tunnel_methods[] = {
	{.path = "/hutch.v1.Tunnels/Create",
	 .request = &hutch__v1__create_tunnel_request__descriptor,
	 .on_message = create_on_message},
	{.path = "/hutch.v1.Tunnels/Get",
	 .request = &hutch__v1__get_tunnel_request__descriptor,
	 .on_message = get_on_message},
	{.path = "/hutch.v1.Tunnels/List",
	 .request = &hutch__v1__list_tunnels_request__descriptor,
	 .on_message = list_on_message},
	{.path = "/hutch.v1.Tunnels/Delete",
	 .request = &hutch__v1__delete_tunnel_request__descriptor,
	 .on_message = delete_on_message},
	{.path = "/hutch.v1.Tunnels/AddPeer",
	 .request = &hutch__v1__add_tunnel_peer_request__descriptor,
	 .on_message = peer_add_on_message},
	{.path = "/hutch.v1.Tunnels/RemovePeer",
	 .request = &hutch__v1__remove_tunnel_peer_request__descriptor,
	 .on_message = peer_remove_on_message},
	{.path = "/hutch.v1.Tunnels/PeerConfig",
	 .request = &hutch__v1__tunnel_peer_config_request__descriptor,
	 .on_message = peer_config_on_message},
};

int api_tunnel_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, tunnel_methods,
				       sizeof tunnel_methods / sizeof tunnel_methods[0], d, err);
}
