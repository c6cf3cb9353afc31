/* hutch.v1.Secrets: set, describe, list, delete; integrations. Values go
 * in and are never sent back. */
#include <stdlib.h>

#include "api.h"
#include "secret_store.h"
#include "strbuf.h"

static void reply(grpc_call_t *call, int r, const hutch_err_t *err, ProtobufCMessage *m)
{
	if (r < 0) {
		api_fail(call, err);
		return;
	}
	grpc_call_send(call, m);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	protobuf_c_message_free_unpacked(m, NULL);
}

static void set_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__SetSecretRequest *r = (const void *)msg;
	Hutch__V1__SecretInfo *info = NULL;
	hutch_err_t err = {0};
	int rc = secrets_set(d->secrets, daemon_call_tenant(call), r->name, r->values, r->n_values,
			     r->replace, &info, &err);
	reply(call, rc, &err, info ? &info->base : NULL);
}

static void get_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__GetSecretRequest *r = (const void *)msg;
	Hutch__V1__SecretInfo *info = NULL;
	hutch_err_t err = {0};
	int rc = secrets_info(d->secrets, daemon_call_tenant(call), r->name, &info, &err);
	reply(call, rc, &err, info ? &info->base : NULL);
}

static void list_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	(void)msg;
	Hutch__V1__ListSecretsResponse *out = NULL;
	hutch_err_t err = {0};
	int rc = secrets_list(d->secrets, daemon_call_tenant(call), &out, &err);
	reply(call, rc, &err, out ? &out->base : NULL);
}

static void delete_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__DeleteSecretRequest *r = (const void *)msg;
	hutch_err_t err = {0};
	int rc = secrets_delete(d->secrets, daemon_call_tenant(call), r->name, &err);
	Hutch__V1__DeleteSecretResponse *resp = xmalloc(sizeof *resp);
	hutch__v1__delete_secret_response__init(resp);
	if (rc < 0)
		free(resp);
	reply(call, rc, &err, rc < 0 ? NULL : &resp->base);
}

static void integrations_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	(void)msg;
	Hutch__V1__ListIntegrationsResponse *out = NULL;
	hutch_err_t err = {0};
	int rc = secrets_integrations(d->secrets, daemon_call_tenant(call), &out, &err);
	reply(call, rc, &err, out ? &out->base : NULL);
}

static const grpc_method_t secret_methods[] = {
	{.path = "/hutch.v1.Secrets/Set", .request = &hutch__v1__set_secret_request__descriptor,
	 .on_message = set_on_message},
	{.path = "/hutch.v1.Secrets/Get", .request = &hutch__v1__get_secret_request__descriptor,
	 .on_message = get_on_message},
	{.path = "/hutch.v1.Secrets/List", .request = &hutch__v1__list_secrets_request__descriptor,
	 .on_message = list_on_message},
	{.path = "/hutch.v1.Secrets/Delete", .request = &hutch__v1__delete_secret_request__descriptor,
	 .on_message = delete_on_message},
	{.path = "/hutch.v1.Secrets/ListIntegrations",
	 .request = &hutch__v1__list_integrations_request__descriptor,
	 .on_message = integrations_on_message},
};

int api_secret_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, secret_methods,
				       sizeof secret_methods / sizeof secret_methods[0], d, err);
}
