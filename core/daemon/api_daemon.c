/* hutch.v1.Daemon: version, plugins, health. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "hutch/v1/daemon.pb-c.h"
#include "sandbox_pb.h"
#include "strbuf.h"

#ifndef HUTCH_VERSION
#define HUTCH_VERSION "0.0.0"
#endif

static void status_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	(void)msg;
	Hutch__V1__StatusResponse resp = HUTCH__V1__STATUS_RESPONSE__INIT;
	resp.version = (char *)HUTCH_VERSION;
	resp.state_dir = d->cfg.daemon.state_dir;
	resp.started_unix = d->started_unix;
	resp.tenant = (char *)daemon_call_tenant(call);
	resp.abi_major = HUTCH_PLUGIN_ABI_MAJOR;
	resp.abi_minor = HUTCH_PLUGIN_ABI_MINOR;
	resp.sandboxes_running = d->sandboxes
		? sandbox_mgr_running_count(d->sandboxes, resp.tenant) : 0;

	size_t n = d->plugins.n;
	Hutch__V1__PluginStatus *ps = xcalloc(n ? n : 1, sizeof *ps);
	Hutch__V1__PluginStatus **pps = xcalloc(n ? n : 1, sizeof *pps);
	size_t ncap = 0;
	for (size_t i = 0; i < n; i++)
		ncap += d->caps[i].n;
	Hutch__V1__Capability *caps = xcalloc(ncap ? ncap : 1, sizeof *caps);
	Hutch__V1__Capability **pcaps = xcalloc(ncap ? ncap : 1, sizeof *pcaps);
	size_t ci = 0;
	for (size_t i = 0; i < n; i++) {
		const plugin_t *p = d->plugins.all[i];
		hutch__v1__plugin_status__init(&ps[i]);
		ps[i].name = p->name;
		ps[i].kind = (char *)plugin_kind_name(p->desc.kind);
		ps[i].version = (char *)(p->desc.version ? p->desc.version : "");
		ps[i].path = p->path;
		ps[i].abi_major = p->desc.abi_major;
		ps[i].abi_minor = p->desc.abi_minor;
		ps[i].description = (char *)(p->desc.description ? p->desc.description : "");
		ps[i].capabilities = &pcaps[ci];
		for (size_t k = 0; k < d->caps[i].n; k++, ci++) {
			hutch__v1__capability__init(&caps[ci]);
			caps[ci].key = d->caps[i].keys[k];
			caps[ci].value = d->caps[i].values[k];
			pcaps[ci] = &caps[ci];
		}
		ps[i].n_capabilities = d->caps[i].n;
		pps[i] = &ps[i];
	}
	resp.plugins = pps;
	resp.n_plugins = n;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	free(caps);
	free(pcaps);
	free(ps);
	free(pps);
}

static const grpc_method_t daemon_methods[] = {
	{
		.path = "/hutch.v1.Daemon/Status",
		.request = &hutch__v1__status_request__descriptor,
		.on_message = status_on_message,
	},
};

int api_daemon_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, daemon_methods,
				       sizeof daemon_methods / sizeof daemon_methods[0], d, err);
}
