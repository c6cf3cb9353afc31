/* hutch.v1.ScalingGroups: deploy, get, list, scale, delete, watch, and
 * where the router is. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "group_pb.h"
#include "router.h"
#include "strbuf.h"

static void reply_group(grpc_call_t *call, const group_t *g)
{
	daemon_t *d = grpc_call_service_data(call);
	Hutch__V1__ScalingGroup *pb = group_pb_new(g, router_base_url(d->router),
						   router_domain(d->router));
	grpc_call_send(call, &pb->base);
	protobuf_c_message_free_unpacked(&pb->base, NULL);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static group_t *find_or_fail(grpc_call_t *call, const char *name)
{
	daemon_t *d = grpc_call_service_data(call);
	if (!name || !*name) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "scaling group name is required");
		return NULL;
	}
	group_t *g = group_find(d->groups, daemon_call_tenant(call), name);
	if (!g) {
		char msg[256];
		snprintf(msg, sizeof msg, "scaling group `%.200s` not found", name);
		grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, msg);
	}
	return g;
}

static void deploy_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__DeployScalingGroupRequest *req =
		(const Hutch__V1__DeployScalingGroupRequest *)msg;
	hutch_err_t err = {0};
	group_t *g;
	if (group_deploy(d->groups, daemon_call_tenant(call), group_spec_from_pb(req->spec), &g,
			 &err) < 0) {
		api_fail(call, &err);
		return;
	}
	reply_group(call, g);
}

static void get_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__GetScalingGroupRequest *req = (const Hutch__V1__GetScalingGroupRequest *)msg;
	group_t *g = find_or_fail(call, req->name);
	if (g)
		reply_group(call, g);
}

typedef struct list_ctx {
	daemon_t *d;
	Hutch__V1__ScalingGroup **items;
	size_t n;
} list_ctx_t;

static void list_one(void *data, group_t *g)
{
	list_ctx_t *l = data;
	l->items = xrealloc(l->items, (l->n + 1) * sizeof *l->items);
	l->items[l->n++] = group_pb_new(g, router_base_url(l->d->router), router_domain(l->d->router));
}

static void list_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	(void)msg;
	daemon_t *d = grpc_call_service_data(call);
	list_ctx_t l = {.d = d};
	group_each(d->groups, daemon_call_tenant(call), list_one, &l);
	Hutch__V1__ListScalingGroupsResponse resp = HUTCH__V1__LIST_SCALING_GROUPS_RESPONSE__INIT;
	resp.groups = l.items;
	resp.n_groups = l.n;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	for (size_t i = 0; i < l.n; i++)
		protobuf_c_message_free_unpacked(&l.items[i]->base, NULL);
	free(l.items);
}

static void scale_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__ScaleScalingGroupRequest *req =
		(const Hutch__V1__ScaleScalingGroupRequest *)msg;
	group_t *g = find_or_fail(call, req->name);
	if (!g)
		return;
	hutch_err_t err = {0};
	if (group_scale(g, req->min_replicas, req->max_replicas, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	reply_group(call, g);
}

static void delete_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__DeleteScalingGroupRequest *req =
		(const Hutch__V1__DeleteScalingGroupRequest *)msg;
	group_t *g = find_or_fail(call, req->name);
	if (!g)
		return;
	group_delete(g);
	Hutch__V1__DeleteScalingGroupResponse resp = HUTCH__V1__DELETE_SCALING_GROUP_RESPONSE__INIT;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

/* Watch: every event of the group until it goes or the client leaves. */
static void watch_event(void *data, int64_t unix_ms, const char *msg)
{
	grpc_call_t *call = data;
	if (!msg) { /* the group is gone (its watchers are forgotten) */
		grpc_call_set_data(call, NULL);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
		grpc_call_unref(call);
		return;
	}
	Hutch__V1__ScalingGroupEvent ev = HUTCH__V1__SCALING_GROUP_EVENT__INIT;
	ev.unix_ms = unix_ms;
	ev.message = (char *)msg;
	grpc_call_send(call, &ev.base);
}

static void watch_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__WatchScalingGroupRequest *req =
		(const Hutch__V1__WatchScalingGroupRequest *)msg;
	group_t *g = find_or_fail(call, req->name);
	if (!g)
		return;
	grpc_call_ref(call);
	grpc_call_set_data(call, group_watch(g, watch_event, call));
}

static void watch_on_cancel(grpc_call_t *call)
{
	group_watch_t *w = grpc_call_get_data(call);
	if (!w)
		return;
	grpc_call_set_data(call, NULL);
	group_unwatch(w);
	grpc_call_unref(call);
}

static void router_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	(void)msg;
	daemon_t *d = grpc_call_service_data(call);
	Hutch__V1__RouterInfo info = HUTCH__V1__ROUTER_INFO__INIT;
	info.address = (char *)router_address(d->router);
	info.domain = (char *)router_domain(d->router);
	info.tenant = (char *)daemon_call_tenant(call);
	info.base_url = (char *)router_base_url(d->router);
	grpc_call_send(call, &info.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const grpc_method_t group_methods[] = {
	{.path = "/hutch.v1.ScalingGroups/Deploy",
	 .request = &hutch__v1__deploy_scaling_group_request__descriptor,
	 .on_message = deploy_on_message},
	{.path = "/hutch.v1.ScalingGroups/Get",
	 .request = &hutch__v1__get_scaling_group_request__descriptor, .on_message = get_on_message},
	{.path = "/hutch.v1.ScalingGroups/List",
	 .request = &hutch__v1__list_scaling_groups_request__descriptor,
	 .on_message = list_on_message},
	{.path = "/hutch.v1.ScalingGroups/Scale",
	 .request = &hutch__v1__scale_scaling_group_request__descriptor,
	 .on_message = scale_on_message},
	{.path = "/hutch.v1.ScalingGroups/Delete",
	 .request = &hutch__v1__delete_scaling_group_request__descriptor,
	 .on_message = delete_on_message},
	{.path = "/hutch.v1.ScalingGroups/Watch",
	 .request = &hutch__v1__watch_scaling_group_request__descriptor, .server_streaming = true,
	 .on_message = watch_on_message, .on_cancel = watch_on_cancel},
	{.path = "/hutch.v1.ScalingGroups/Router",
	 .request = &hutch__v1__router_info_request__descriptor, .on_message = router_on_message},
};

int api_scaling_group_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, group_methods,
				       sizeof group_methods / sizeof group_methods[0], d, err);
}
