/* hutch.v1.Sandboxes: create, get, list, stop, delete. Exec and files are
 * in api_exec.c and api_files.c. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "sandbox_pb.h"
#include "strbuf.h"

/* The longest a stop may wait for a sandbox's processes to end. */
#define STOP_GRACE_MAX_MS (3600LL * 1000)

/* Replies with one sandbox and finishes the call. */
static void reply_sandbox(grpc_call_t *call, const sandbox_t *sb)
{
	Hutch__V1__Sandbox *pb = sandbox_pb_new(sb);
	grpc_call_send(call, &pb->base);
	protobuf_c_message_free_unpacked(&pb->base, NULL);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static sandbox_t *find_or_fail(grpc_call_t *call, const char *id)
{
	daemon_t *d = grpc_call_service_data(call);
	if (!id || !*id) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "sandbox id or name is required");
		return NULL;
	}
	sandbox_t *sb = sandbox_find(d->sandboxes, daemon_call_tenant(call), id);
	if (!sb) {
		char msg[256];
		snprintf(msg, sizeof msg, "sandbox `%.200s` not found", id);
		grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, msg);
	}
	return sb;
}

static void created(void *data, sandbox_t *sb, const hutch_err_t *err)
{
	grpc_call_t *call = data;
	if (err)
		api_fail(call, err);
	else
		reply_sandbox(call, sb);
	grpc_call_unref(call);
}

static void create_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__CreateSandboxRequest *req = (const Hutch__V1__CreateSandboxRequest *)msg;
	hutch_err_t err = {0};
	grpc_call_ref(call);
	sandbox_spec_t *spec = sandbox_spec_from_pb(req->spec);
	if (sandbox_create(d->sandboxes, daemon_call_tenant(call), spec, created, call, &err) < 0) {
		grpc_call_unref(call);
		api_fail(call, &err);
	}
}

static void get_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__GetSandboxRequest *req = (const Hutch__V1__GetSandboxRequest *)msg;
	sandbox_t *sb = find_or_fail(call, req->id);
	if (sb)
		reply_sandbox(call, sb);
}

typedef struct list_ctx {
	Hutch__V1__Sandbox **items;
	size_t n;
	bool all;
	const Hutch__V1__ListSandboxesRequest *req;
} list_ctx_t;

static bool labels_match(const sandbox_t *sb, const Hutch__V1__ListSandboxesRequest *req)
{
	const sandbox_spec_t *spec = sandbox_spec(sb);
	for (size_t i = 0; i < req->n_label_selector; i++) {
		bool found = false;
		for (size_t k = 0; spec && k < spec->n_labels && !found; k++)
			found = strcmp(spec->labels[k].key, req->label_selector[i]->key) == 0 &&
				strcmp(spec->labels[k].value, req->label_selector[i]->value) == 0;
		if (!found)
			return false;
	}
	return true;
}

static void list_one(void *data, sandbox_t *sb)
{
	list_ctx_t *l = data;
	if (!l->all && !sandbox_state_live(sandbox_state(sb)))
		return;
	if (!labels_match(sb, l->req))
		return;
	l->items = xrealloc(l->items, (l->n + 1) * sizeof *l->items);
	l->items[l->n++] = sandbox_pb_new(sb);
}

static void list_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__ListSandboxesRequest *req = (const Hutch__V1__ListSandboxesRequest *)msg;
	list_ctx_t l = {.all = req->all, .req = req};
	sandbox_each(d->sandboxes, daemon_call_tenant(call), list_one, &l);
	/* Oldest first reads naturally in a table. */
	for (size_t i = 0; i + 1 < l.n; i++)
		for (size_t k = i + 1; k < l.n; k++)
			if (l.items[k]->created_unix_ms < l.items[i]->created_unix_ms) {
				Hutch__V1__Sandbox *t = l.items[i];
				l.items[i] = l.items[k];
				l.items[k] = t;
			}
	Hutch__V1__ListSandboxesResponse resp = HUTCH__V1__LIST_SANDBOXES_RESPONSE__INIT;
	resp.sandboxes = l.items;
	resp.n_sandboxes = l.n;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	for (size_t i = 0; i < l.n; i++)
		protobuf_c_message_free_unpacked(&l.items[i]->base, NULL);
	free(l.items);
}

static void stopped(void *data, sandbox_t *sb, const hutch_err_t *err)
{
	created(data, sb, err); /* the same reply */
	sandbox_unref(sb);
}

static void stop_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__StopSandboxRequest *req = (const Hutch__V1__StopSandboxRequest *)msg;
	sandbox_t *sb = find_or_fail(call, req->id);
	if (!sb)
		return;
	if (req->grace_ms < 0 || req->grace_ms > STOP_GRACE_MAX_MS) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
				 "grace_ms must be between 0 and 3600000 (an hour)");
		return;
	}
	grpc_call_ref(call);
	sandbox_ref(sb);
	sandbox_stop(sb, req->grace_ms, stopped, call);
}

static void delete_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__DeleteSandboxRequest *req = (const Hutch__V1__DeleteSandboxRequest *)msg;
	sandbox_t *sb = find_or_fail(call, req->id);
	if (!sb)
		return;
	hutch_err_t err = {0};
	if (sandbox_delete(sb, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	Hutch__V1__DeleteSandboxResponse resp = HUTCH__V1__DELETE_SANDBOX_RESPONSE__INIT;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const grpc_method_t sandbox_methods[] = {
	{.path = "/hutch.v1.Sandboxes/Create", .request = &hutch__v1__create_sandbox_request__descriptor,
	 .on_message = create_on_message},
	{.path = "/hutch.v1.Sandboxes/Get", .request = &hutch__v1__get_sandbox_request__descriptor,
	 .on_message = get_on_message},
	{.path = "/hutch.v1.Sandboxes/List", .request = &hutch__v1__list_sandboxes_request__descriptor,
	 .on_message = list_on_message},
	{.path = "/hutch.v1.Sandboxes/Stop", .request = &hutch__v1__stop_sandbox_request__descriptor,
	 .on_message = stop_on_message},
	{.path = "/hutch.v1.Sandboxes/Delete", .request = &hutch__v1__delete_sandbox_request__descriptor,
	 .on_message = delete_on_message},
};

int api_sandbox_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, sandbox_methods,
				       sizeof sandbox_methods / sizeof sandbox_methods[0], d, err);
}
