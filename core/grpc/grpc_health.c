/* grpc.health.v1.Health: see grpc_health.h. */
#include "grpc_health.h"

#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

typedef struct service_search {
	const char *name;
	bool found;
} service_search_t;

static void match_service(void *data, const char *name, size_t len)
{
	service_search_t *s = data;
	if (strlen(s->name) == len && memcmp(s->name, name, len) == 0)
		s->found = true;
}

/* Whether this server knows the service a request names ("" = itself). */
static bool service_known(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Grpc__Health__V1__HealthCheckRequest *req =
		(const Grpc__Health__V1__HealthCheckRequest *)msg;
	const char *name = req->service ? req->service : "";
	if (!*name)
		return true;
	grpc_server_t *server = grpc_call_server(call);
	service_search_t s = {.name = name};
	if (server)
		grpc_server_each_service(server, match_service, &s);
	return s.found;
}

static void check_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	if (!service_known(call, msg)) {
		grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "unknown service");
		return;
	}
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	r.status = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	grpc_call_send(call, &r.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void watch_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	r.status = service_known(call, msg)
			   ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
			   : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	grpc_call_send(call, &r.base);
	/* The status does not change while the server runs: the stream stays
	 * open, held by the layer, until the client cancels or the server
	 * shuts down (on_cancel, UNAVAILABLE). Nothing is kept per call. */
}

static void watch_on_cancel(grpc_call_t *call)
{
	(void)call;
}

static const grpc_method_t health_methods[] = {
	{
		.path = "/grpc.health.v1.Health/Check",
		.request = &grpc__health__v1__health_check_request__descriptor,
		.on_message = check_on_message,
	},
	{
		.path = "/grpc.health.v1.Health/Watch",
		.request = &grpc__health__v1__health_check_request__descriptor,
		.server_streaming = true,
		.on_message = watch_on_message,
		.on_cancel = watch_on_cancel,
	},
};

int grpc_health_register(grpc_server_t *server, hutch_err_t *err)
{
	return grpc_server_add_methods(server, health_methods,
				       sizeof health_methods / sizeof health_methods[0], NULL, err);
}
