#include "sandbox_pb.h"

#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* ---- wire -> domain ---- */

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

static sandbox_kv_t *kv_from_pb(Hutch__V1__KeyValue *const *v, size_t n)
{
	sandbox_kv_t *out = xcalloc(n + 1, sizeof *out);
	for (size_t i = 0; i < n; i++)
		out[i] = (sandbox_kv_t){xstrdup(v[i]->key ? v[i]->key : ""),
					xstrdup(v[i]->value ? v[i]->value : "")};
	return out;
}

/* Counted protobuf-c string arrays stay counted (and NULL-terminated). */
static char **strs_from_pb(char *const *v, size_t n)
{
	char **out = xcalloc(n + 1, sizeof *out);
	for (size_t i = 0; i < n; i++)
		out[i] = xstrdup(v[i] ? v[i] : "");
	return out;
}

static void secrets_from_pb(sandbox_spec_t *s, const Hutch__V1__SandboxSpec *pb)
{
	s->secrets = xcalloc(pb->n_secrets + 1, sizeof *s->secrets);
	s->n_secrets = pb->n_secrets;
	for (size_t i = 0; i < pb->n_secrets; i++) {
		const Hutch__V1__SecretRef *r = pb->secrets[i];
		s->secrets[i] = (sandbox_secret_ref_t){
			.name = xstrdup(r->name ? r->name : ""),
			.source = xstrdup(r->source ? r->source : ""),
			.values = kv_from_pb(r->values, r->n_values),
			.n_values = r->n_values,
		};
	}
}

static void volumes_from_pb(sandbox_spec_t *s, const Hutch__V1__SandboxSpec *pb)
{
	s->volumes = xcalloc(pb->n_volumes + 1, sizeof *s->volumes);
	s->n_volumes = pb->n_volumes;
	for (size_t i = 0; i < pb->n_volumes; i++) {
		const Hutch__V1__VolumeMount *v = pb->volumes[i];
		s->volumes[i] = (sandbox_volume_t){
			.name = xstrdup(v->name ? v->name : ""),
			.path = xstrdup(v->path ? v->path : ""),
			.read_only = v->read_only,
			.version = xstrdup(v->version ? v->version : ""),
		};
	}
}

sandbox_spec_t *sandbox_spec_from_pb(const Hutch__V1__SandboxSpec *pb)
{
	sandbox_spec_t *s = xcalloc(1, sizeof *s);
	if (!pb)
		return s;
	s->image = dup_or_null(pb->image);
	s->name = dup_or_null(pb->name);
	s->cpu_millis = pb->cpu_millis;
	s->memory_bytes = pb->memory_bytes;
	s->lifetime_seconds = pb->lifetime_seconds;
	s->idle_timeout_seconds = pb->idle_timeout_seconds;
	s->pids_max = pb->pids_max;
	s->disk_bytes = pb->disk_bytes;
	s->env = kv_from_pb(pb->env, pb->n_env);
	s->n_env = pb->n_env;
	s->workdir = dup_or_null(pb->workdir);
	s->labels = kv_from_pb(pb->labels, pb->n_labels);
	s->n_labels = pb->n_labels;
	s->ports = xcalloc(pb->n_ports + 1, sizeof *s->ports);
	if (pb->n_ports)
		memcpy(s->ports, pb->ports, pb->n_ports * sizeof *s->ports);
	s->n_ports = pb->n_ports;
	s->network_policies = strs_from_pb(pb->network_policies, pb->n_network_policies);
	s->n_network_policies = pb->n_network_policies;
	secrets_from_pb(s, pb);
	volumes_from_pb(s, pb);
	s->gpu = dup_or_null(pb->gpu);
	s->identity_audience = dup_or_null(pb->identity_audience);
	s->tunnels = strs_from_pb(pb->tunnels, pb->n_tunnels);
	s->n_tunnels = pb->n_tunnels;
	s->command = strs_from_pb(pb->command, pb->n_command);
	s->n_command = pb->n_command;
	return s;
}

/* ---- domain -> wire ---- */

/* Every string malloc'ed, so protobuf_c_message_free_unpacked frees the
 * whole tree. */
static char *str_or_empty(const char *s)
{
	return xstrdup(s ? s : "");
}

static Hutch__V1__KeyValue **kv_to_pb(const sandbox_kv_t *v, size_t n)
{
	if (!n)
		return NULL;
	Hutch__V1__KeyValue **out = xcalloc(n, sizeof *out);
	for (size_t i = 0; i < n; i++) {
		out[i] = xmalloc(sizeof *out[i]);
		hutch__v1__key_value__init(out[i]);
		out[i]->key = str_or_empty(v[i].key);
		out[i]->value = str_or_empty(v[i].value);
	}
	return out;
}

static char **strs_to_pb(char *const *v, size_t n)
{
	if (!n)
		return NULL;
	char **out = xcalloc(n, sizeof *out);
	for (size_t i = 0; i < n; i++)
		out[i] = str_or_empty(v[i]);
	return out;
}

static void secrets_to_pb(Hutch__V1__SandboxSpec *pb, const sandbox_spec_t *s)
{
	if (!s->n_secrets)
		return;
	pb->secrets = xcalloc(s->n_secrets, sizeof *pb->secrets);
	pb->n_secrets = s->n_secrets;
	for (size_t i = 0; i < s->n_secrets; i++) {
		Hutch__V1__SecretRef *r = xmalloc(sizeof *r);
		hutch__v1__secret_ref__init(r);
		r->name = str_or_empty(s->secrets[i].name);
		r->source = str_or_empty(s->secrets[i].source);
		r->values = kv_to_pb(s->secrets[i].values, s->secrets[i].n_values);
		r->n_values = s->secrets[i].n_values;
		pb->secrets[i] = r;
	}
}

static void volumes_to_pb(Hutch__V1__SandboxSpec *pb, const sandbox_spec_t *s)
{
	if (!s->n_volumes)
		return;
	pb->volumes = xcalloc(s->n_volumes, sizeof *pb->volumes);
	pb->n_volumes = s->n_volumes;
	for (size_t i = 0; i < s->n_volumes; i++) {
		Hutch__V1__VolumeMount *v = xmalloc(sizeof *v);
		hutch__v1__volume_mount__init(v);
		v->name = str_or_empty(s->volumes[i].name);
		v->path = str_or_empty(s->volumes[i].path);
		v->read_only = s->volumes[i].read_only;
		v->version = str_or_empty(s->volumes[i].version);
		pb->volumes[i] = v;
	}
}

Hutch__V1__SandboxSpec *sandbox_spec_to_pb(const sandbox_spec_t *s)
{
	Hutch__V1__SandboxSpec *pb = xmalloc(sizeof *pb);
	hutch__v1__sandbox_spec__init(pb);
	pb->image = str_or_empty(s->image);
	pb->name = str_or_empty(s->name);
	pb->cpu_millis = s->cpu_millis;
	pb->memory_bytes = s->memory_bytes;
	pb->lifetime_seconds = s->lifetime_seconds;
	pb->idle_timeout_seconds = s->idle_timeout_seconds;
	pb->pids_max = s->pids_max;
	pb->disk_bytes = s->disk_bytes;
	pb->env = kv_to_pb(s->env, s->n_env);
	pb->n_env = s->n_env;
	pb->workdir = str_or_empty(s->workdir);
	pb->labels = kv_to_pb(s->labels, s->n_labels);
	pb->n_labels = s->n_labels;
	if (s->n_ports) {
		pb->ports = xcalloc(s->n_ports, sizeof *pb->ports);
		memcpy(pb->ports, s->ports, s->n_ports * sizeof *pb->ports);
		pb->n_ports = s->n_ports;
	}
	pb->network_policies = strs_to_pb(s->network_policies, s->n_network_policies);
	pb->n_network_policies = s->n_network_policies;
	secrets_to_pb(pb, s);
	volumes_to_pb(pb, s);
	pb->gpu = str_or_empty(s->gpu);
	pb->identity_audience = str_or_empty(s->identity_audience);
	pb->tunnels = strs_to_pb(s->tunnels, s->n_tunnels);
	pb->n_tunnels = s->n_tunnels;
	pb->command = strs_to_pb(s->command, s->n_command);
	pb->n_command = s->n_command;
	return pb;
}

/* ---- records ---- */

Hutch__V1__SandboxState sandbox_state_to_pb(sandbox_state_t s)
{
	switch (s) {
	case SANDBOX_CREATING: return HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_CREATING;
	case SANDBOX_RUNNING: return HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING;
	case SANDBOX_STOPPING: return HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPING;
	case SANDBOX_STOPPED: return HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED;
	case SANDBOX_EXPIRED: return HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_EXPIRED;
	case SANDBOX_FAILED: return HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED;
	default: return HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_UNSPECIFIED;
	}
}

static sandbox_state_t state_from_pb(Hutch__V1__SandboxState s)
{
	switch (s) {
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_CREATING: return SANDBOX_CREATING;
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING: return SANDBOX_RUNNING;
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPING: return SANDBOX_STOPPING;
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED: return SANDBOX_STOPPED;
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_EXPIRED: return SANDBOX_EXPIRED;
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED: return SANDBOX_FAILED;
	default: return SANDBOX_UNKNOWN;
	}
}

static void ports_to_pb(Hutch__V1__Sandbox *pb, const sandbox_record_t *r)
{
	size_t np = strv_len(r->port_addrs);
	if (!np || !r->spec)
		return;
	pb->ports = xcalloc(np, sizeof *pb->ports);
	for (size_t i = 0; i < np && i < r->spec->n_ports; i++) {
		Hutch__V1__PortBinding *b = xmalloc(sizeof *b);
		hutch__v1__port_binding__init(b);
		b->sandbox_port = r->spec->ports[i];
		b->host_address = str_or_empty(r->port_addrs[i]);
		pb->ports[pb->n_ports++] = b;
	}
}

Hutch__V1__Sandbox *sandbox_record_to_pb(const sandbox_record_t *r)
{
	Hutch__V1__Sandbox *pb = xmalloc(sizeof *pb);
	hutch__v1__sandbox__init(pb);
	pb->id = str_or_empty(r->id);
	pb->name = str_or_empty(r->name);
	pb->tenant = str_or_empty(r->tenant);
	pb->state = sandbox_state_to_pb(r->state);
	pb->reason = str_or_empty(r->reason);
	pb->spec = r->spec ? sandbox_spec_to_pb(r->spec) : NULL;
	pb->created_unix_ms = r->created_ms;
	pb->started_unix_ms = r->started_ms;
	pb->stopped_unix_ms = r->stopped_ms;
	pb->expires_unix_ms = r->expires_ms;
	pb->runtime = str_or_empty(r->runtime);
	pb->image_digest = str_or_empty(r->image_digest);
	pb->oom_killed = r->oom_killed;
	pb->n_addresses = strv_len(r->addresses);
	pb->addresses = strs_to_pb(r->addresses, pb->n_addresses);
	ports_to_pb(pb, r);
	return pb;
}

Hutch__V1__Sandbox *sandbox_pb_new(const sandbox_t *sb)
{
	sandbox_record_t r;
	sandbox_view(sb, &r);
	return sandbox_record_to_pb(&r);
}

/* ---- the store's codec ---- */

static int record_encode(const sandbox_record_t *r, uint8_t **buf, size_t *len, hutch_err_t *err)
{
	(void)err;
	Hutch__V1__Sandbox *pb = sandbox_record_to_pb(r);
	size_t n = protobuf_c_message_get_packed_size(&pb->base);
	*buf = xmalloc(n ? n : 1);
	*len = protobuf_c_message_pack(&pb->base, *buf);
	protobuf_c_message_free_unpacked(&pb->base, NULL);
	return 0;
}

static int record_decode(const uint8_t *buf, size_t len, sandbox_record_t *r, hutch_err_t *err)
{
	Hutch__V1__Sandbox *pb = hutch__v1__sandbox__unpack(NULL, len, buf);
	if (!pb)
		return hutch_err_set(err, EINVAL, "not a hutch.v1.Sandbox");
	*r = (sandbox_record_t){
		.id = xstrdup(pb->id ? pb->id : ""),
		.name = dup_or_null(pb->name),
		.tenant = xstrdup(pb->tenant ? pb->tenant : ""),
		.state = state_from_pb(pb->state),
		.reason = dup_or_null(pb->reason),
		.spec = pb->spec ? sandbox_spec_from_pb(pb->spec) : NULL,
		.created_ms = pb->created_unix_ms,
		.started_ms = pb->started_unix_ms,
		.stopped_ms = pb->stopped_unix_ms,
		.expires_ms = pb->expires_unix_ms,
		.runtime = dup_or_null(pb->runtime),
		.image_digest = xstrdup(pb->image_digest ? pb->image_digest : ""),
		.oom_killed = pb->oom_killed,
	};
	for (size_t i = 0; i < pb->n_addresses; i++)
		strv_push(&r->addresses, xstrdup(pb->addresses[i]));
	/* Forwarded ports are the running daemon's: not restored. */
	protobuf_c_message_free_unpacked(&pb->base, NULL);
	return 0;
}

const sandbox_codec_t sandbox_pb_codec = {
	.encode = record_encode,
	.decode = record_decode,
};
