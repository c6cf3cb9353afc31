/* hutch.v1.NetworkPolicies (create, get, list, delete) and
 * Sandboxes.UpdatePolicies. Policies are the tenant's store objects; the
 * network plugins check and enforce them. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "log.h"
#include "net_policy.h"
#include "sandbox_mgr.h"
#include "sandbox_pb.h"
#include "strbuf.h"

static void fill_users(daemon_t *d, Hutch__V1__NetworkPolicy *p, char ***keep)
{
	*keep = sandbox_mgr_policy_users(d->sandboxes, p->tenant, p->name);
	p->bound_sandboxes = *keep;
	p->n_bound_sandboxes = strv_len(*keep);
}

static void reply_policy(grpc_call_t *call, Hutch__V1__NetworkPolicy *p)
{
	daemon_t *d = grpc_call_service_data(call);
	char **users = NULL;
	char **saved = p->bound_sandboxes;
	size_t saved_n = p->n_bound_sandboxes;
	fill_users(d, p, &users);
	grpc_call_send(call, &p->base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	p->bound_sandboxes = saved;
	p->n_bound_sandboxes = saved_n;
	strv_free(users);
}

/* ---- Create ---- */

typedef struct create_policy {
	uv_work_t req;
	grpc_call_t *call;
	daemon_t *d;
	Hutch__V1__NetworkPolicy *p; /* owned */
	bool replace;
	hutch_err_t err;
	int result;
} create_policy_t;

static void validate_work(uv_work_t *req)
{
	create_policy_t *c = req->data;
	hutch_net_policy_t *view = net_policy_view(c->p);
	plugin_set_t *ps = &c->d->plugins;
	c->result = 0;
	for (size_t i = 0; i < ps->n_network && c->result == 0; i++) {
		plugin_t *pl = ps->network[i];
		if (!pl->ops.network.policy_validate)
			continue;
		c->result = pl->ops.network.policy_validate(pl->instance, view, &c->err);
		if (c->result < 0)
			hutch_err_prefix(&c->err, "policy `%s`: %s", c->p->name, pl->name);
	}
	free((void *)view->allowed_hostnames);
	free((void *)view->allowed_cidrs);
	free((void *)view->denied_hostnames);
	free((void *)view->denied_cidrs);
	free(view);
}

static void validate_done(uv_work_t *req, int status)
{
	create_policy_t *c = req->data;
	(void)status;
	if (c->result == 0) {
		/* Check again: a same-named policy may have appeared while the
		 * plugins looked at this one. */
		Hutch__V1__NetworkPolicy *old = NULL;
		hutch_err_t e = {0};
		if (net_policy_load(c->d->store, c->p->tenant, c->p->name, &old, &e) == 0) {
			if (!c->replace) {
				c->result = hutch_err_set(&c->err, EEXIST,
							  "network policy `%s` already exists (replace it with replace = true)",
							  c->p->name);
			} else {
				c->p->created_unix_ms = old->created_unix_ms;
			}
			protobuf_c_message_free_unpacked(&old->base, NULL);
		}
	}
	if (c->result == 0) {
		int64_t now = store_now_ms();
		if (!c->p->created_unix_ms)
			c->p->created_unix_ms = now;
		c->p->updated_unix_ms = now;
		c->result = net_policy_save(c->d->store, c->p, &c->err);
	}
	if (c->result < 0) {
		api_fail(c->call, &c->err);
	} else {
		log_info("network policy %s/%s %s", c->p->tenant, c->p->name,
			 c->replace ? "saved" : "created");
		if (c->replace)
			sandbox_mgr_policy_changed(c->d->sandboxes, c->p->tenant, c->p->name);
		reply_policy(c->call, c->p);
	}
	grpc_call_unref(c->call);
	protobuf_c_message_free_unpacked(&c->p->base, NULL);
	free(c);
}

static void create_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__CreateNetworkPolicyRequest *r = (const void *)msg;
	hutch_err_t err = {0};
	if (!r->policy) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "a policy is required");
		return;
	}
	/* A copy we own (the request is the layer's). */
	size_t n = protobuf_c_message_get_packed_size(&r->policy->base);
	_cleanup_free_ uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(&r->policy->base, buf);
	Hutch__V1__NetworkPolicy *p = hutch__v1__network_policy__unpack(NULL, n, buf);
	if (!p) {
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "out of memory");
		return;
	}
	if (net_policy_check(p, &err) < 0) {
		protobuf_c_message_free_unpacked(&p->base, NULL);
		api_fail(call, &err);
		return;
	}
	/* What the caller may not set. */
	if (p->tenant && p->tenant != protobuf_c_empty_string)
		free(p->tenant);
	p->tenant = xstrdup(daemon_call_tenant(call));
	for (size_t i = 0; i < p->n_bound_sandboxes; i++)
		free(p->bound_sandboxes[i]);
	free(p->bound_sandboxes);
	p->bound_sandboxes = NULL;
	p->n_bound_sandboxes = 0;
	p->created_unix_ms = p->updated_unix_ms = 0;
	Hutch__V1__NetworkPolicy *old = NULL;
	if (!r->replace && net_policy_load(d->store, p->tenant, p->name, &old, &err) == 0) {
		protobuf_c_message_free_unpacked(&old->base, NULL);
		hutch_err_set(&err, EEXIST, "network policy `%s` already exists (replace it with replace = true)",
			      p->name);
		protobuf_c_message_free_unpacked(&p->base, NULL);
		api_fail(call, &err);
		return;
	}
	create_policy_t *c = xcalloc(1, sizeof *c);
	c->req.data = c;
	c->call = call;
	c->d = d;
	c->p = p;
	c->replace = r->replace;
	grpc_call_ref(call);
	if (uv_queue_work(&d->loop, &c->req, validate_work, validate_done) < 0) {
		grpc_call_unref(call);
		protobuf_c_message_free_unpacked(&p->base, NULL);
		free(c);
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "cannot queue the check");
	}
}

/* ---- Get, List, Delete ---- */

static void get_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__GetNetworkPolicyRequest *r = (const void *)msg;
	Hutch__V1__NetworkPolicy *p;
	hutch_err_t err = {0};
	if (net_policy_load(d->store, daemon_call_tenant(call), r->name ? r->name : "", &p, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	reply_policy(call, p);
	protobuf_c_message_free_unpacked(&p->base, NULL);
}

typedef struct list_ctx {
	daemon_t *d;
	Hutch__V1__NetworkPolicy **items;
	size_t n;
} list_ctx_t;

static int list_one(void *ud, const store_obj_t *o)
{
	list_ctx_t *l = ud;
	Hutch__V1__NetworkPolicy *p = hutch__v1__network_policy__unpack(NULL, o->len, o->data);
	if (!p)
		return 0;
	l->items = xrealloc(l->items, (l->n + 1) * sizeof *l->items);
	l->items[l->n++] = p;
	return 0;
}

static void list_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	(void)msg;
	list_ctx_t l = {.d = d};
	hutch_err_t err = {0};
	if (store_list(d->store, NET_POLICY_KIND, daemon_call_tenant(call), list_one, &l, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	char ***users = xcalloc(l.n + 1, sizeof *users);
	for (size_t i = 0; i < l.n; i++)
		fill_users(d, l.items[i], &users[i]);
	Hutch__V1__ListNetworkPoliciesResponse resp = HUTCH__V1__LIST_NETWORK_POLICIES_RESPONSE__INIT;
	resp.policies = l.items;
	resp.n_policies = l.n;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	for (size_t i = 0; i < l.n; i++) {
		l.items[i]->bound_sandboxes = NULL;
		l.items[i]->n_bound_sandboxes = 0;
		strv_free(users[i]);
		protobuf_c_message_free_unpacked(&l.items[i]->base, NULL);
	}
	free(users);
	free(l.items);
}

static void delete_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__DeleteNetworkPolicyRequest *r = (const void *)msg;
	const char *tenant = daemon_call_tenant(call);
	Hutch__V1__NetworkPolicy *p;
	hutch_err_t err = {0};
	if (net_policy_load(d->store, tenant, r->name ? r->name : "", &p, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	char **users = sandbox_mgr_policy_users(d->sandboxes, tenant, p->name);
	if (users) {
		_cleanup_sb_ strbuf_t sb = STRBUF_INIT;
		for (char **u = users; *u; u++)
			sb_printf(&sb, "%s%s", u == users ? "" : ", ", *u);
		hutch_err_set(&err, EBUSY, "network policy `%s` is bound to running sandboxes: %s",
			      p->name, sb.buf);
		strv_free(users);
		protobuf_c_message_free_unpacked(&p->base, NULL);
		api_fail(call, &err);
		return;
	}
	_cleanup_free_ char *id = xasprintf("%s/%s", tenant, p->name);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	if (store_delete(d->store, NET_POLICY_KIND, id, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	Hutch__V1__DeleteNetworkPolicyResponse resp = HUTCH__V1__DELETE_NETWORK_POLICY_RESPONSE__INIT;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* ---- Sandboxes.UpdatePolicies ---- */

static void updated(void *data, sandbox_t *sb, const hutch_err_t *err)
{
	grpc_call_t *call = data;
	if (err) {
		api_fail(call, err);
	} else {
		Hutch__V1__Sandbox *pb = sandbox_pb_new(sb);
		grpc_call_send(call, &pb->base);
		protobuf_c_message_free_unpacked(&pb->base, NULL);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	}
	grpc_call_unref(call);
}

static void update_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__UpdateSandboxPoliciesRequest *r = (const void *)msg;
	hutch_err_t err = {0};
	sandbox_t *sb = sandbox_find(d->sandboxes, daemon_call_tenant(call), r->id);
	if (!sb) {
		hutch_err_set(&err, ENOENT, "sandbox `%s` not found", r->id ? r->id : "");
		api_fail(call, &err);
		return;
	}
	grpc_call_ref(call);
	if (sandbox_update_policies(sb, r->network_policies, r->n_network_policies, r->default_policy,
				    updated, call, &err) < 0) {
		grpc_call_unref(call);
		api_fail(call, &err);
	}
}

static const grpc_method_t policy_methods[] = {
	{.path = "/hutch.v1.NetworkPolicies/Create",
	 .request = &hutch__v1__create_network_policy_request__descriptor,
	 .on_message = create_on_message},
	{.path = "/hutch.v1.NetworkPolicies/Get",
	 .request = &hutch__v1__get_network_policy_request__descriptor,
	 .on_message = get_on_message},
	{.path = "/hutch.v1.NetworkPolicies/List",
	 .request = &hutch__v1__list_network_policies_request__descriptor,
	 .on_message = list_on_message},
	{.path = "/hutch.v1.NetworkPolicies/Delete",
	 .request = &hutch__v1__delete_network_policy_request__descriptor,
	 .on_message = delete_on_message},
	{.path = "/hutch.v1.Sandboxes/UpdatePolicies",
	 .request = &hutch__v1__update_sandbox_policies_request__descriptor,
	 .on_message = update_on_message},
};

int api_policy_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, policy_methods,
				       sizeof policy_methods / sizeof policy_methods[0], d, err);
}
