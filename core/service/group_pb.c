/* Scaling groups: protobuf <-> the core's types, and the stored codec. */
#include "group_pb.h"

#include <stdlib.h>
#include <string.h>

#include "sandbox_pb.h"
#include "strbuf.h"

static char *dup_or_null(const char *s)
{
	return s && *s ? xstrdup(s) : NULL;
}

group_spec_t *group_spec_from_pb(const Hutch__V1__ScalingGroupSpec *pb)
{
	group_spec_t *s = xcalloc(1, sizeof *s);
	if (!pb)
		return s;
	s->name = dup_or_null(pb->name);
	s->tmpl = sandbox_spec_from_pb(pb->template_);
	s->port = pb->port;
	s->min_replicas = pb->min_replicas;
	s->max_replicas = pb->max_replicas;
	s->target_concurrency = pb->target_concurrency;
	s->max_concurrency = pb->max_concurrency;
	s->scaledown_window_ms = pb->scaledown_window_ms;
	s->readiness_path = dup_or_null(pb->readiness_path);
	return s;
}

static Hutch__V1__ScalingGroupSpec *spec_to_pb(const group_spec_t *s)
{
	Hutch__V1__ScalingGroupSpec *pb = xcalloc(1, sizeof *pb);
	hutch__v1__scaling_group_spec__init(pb);
	pb->name = xstrdup(s->name ? s->name : "");
	pb->template_ = sandbox_spec_to_pb(s->tmpl);
	pb->port = s->port;
	pb->min_replicas = s->min_replicas;
	pb->max_replicas = s->max_replicas;
	pb->target_concurrency = s->target_concurrency;
	pb->max_concurrency = s->max_concurrency;
	pb->scaledown_window_ms = s->scaledown_window_ms;
	pb->readiness_path = xstrdup(s->readiness_path ? s->readiness_path : "");
	return pb;
}

static Hutch__V1__ReplicaState state_pb(replica_state_t s)
{
	switch (s) {
	case REPLICA_STARTING: return HUTCH__V1__REPLICA_STATE__REPLICA_STATE_STARTING;
	case REPLICA_READY: return HUTCH__V1__REPLICA_STATE__REPLICA_STATE_READY;
	case REPLICA_DRAINING: return HUTCH__V1__REPLICA_STATE__REPLICA_STATE_DRAINING;
	}
	return HUTCH__V1__REPLICA_STATE__REPLICA_STATE_UNSPECIFIED;
}

Hutch__V1__ScalingGroup *group_pb_new(const group_t *g, const char *base_url, const char *domain)
{
	group_view_t v;
	group_view(g, &v);
	Hutch__V1__ScalingGroup *pb = xcalloc(1, sizeof *pb);
	hutch__v1__scaling_group__init(pb);
	pb->spec = spec_to_pb(v.spec);
	pb->tenant = xstrdup(v.tenant);
	pb->revision = v.revision;
	pb->desired_replicas = v.desired;
	pb->ready_replicas = v.ready;
	pb->queued = v.queued;
	pb->requests = v.requests;
	pb->errors = v.errors;
	pb->created_unix_ms = v.created_ms;
	pb->url = xasprintf("%s/%s/%s", base_url, v.tenant, v.spec->name);
	const char *port = strrchr(base_url, ':');
	const char *scheme_end = strstr(base_url, "://");
	pb->host_url = xasprintf("%.*s://%s.%s.%s%s", scheme_end ? (int)(scheme_end - base_url) : 4,
				 base_url, v.spec->name, v.tenant, domain,
				 port && port > scheme_end + 2 ? port : "");
	pb->n_replicas = v.n_replicas;
	pb->replicas = xcalloc(v.n_replicas ? v.n_replicas : 1, sizeof *pb->replicas);
	for (size_t i = 0; i < v.n_replicas; i++) {
		Hutch__V1__Replica *r = xcalloc(1, sizeof *r);
		hutch__v1__replica__init(r);
		r->sandbox_id = xstrdup(v.replicas[i].sandbox_id);
		r->state = state_pb(v.replicas[i].state);
		r->revision = v.replicas[i].revision;
		r->in_flight = v.replicas[i].in_flight;
		r->upstream = xstrdup(v.replicas[i].upstream);
		pb->replicas[i] = r;
	}
	free(v.replicas);
	return pb;
}

static int encode(const group_spec_t *s, int64_t revision, uint8_t **buf, size_t *len,
		  hutch_err_t *err)
{
	(void)err;
	Hutch__V1__ScalingGroup m = HUTCH__V1__SCALING_GROUP__INIT;
	m.spec = spec_to_pb(s);
	m.revision = revision;
	*len = protobuf_c_message_get_packed_size(&m.base);
	*buf = xmalloc(*len ? *len : 1);
	protobuf_c_message_pack(&m.base, *buf);
	protobuf_c_message_free_unpacked(&m.spec->base, NULL);
	return 0;
}

static int decode(const uint8_t *buf, size_t len, group_spec_t **s, int64_t *revision,
		  hutch_err_t *err)
{
	Hutch__V1__ScalingGroup *m = hutch__v1__scaling_group__unpack(NULL, len, buf);
	if (!m)
		return hutch_err_set(err, EINVAL, "not a hutch.v1.ScalingGroup");
	*s = group_spec_from_pb(m->spec);
	*revision = m->revision;
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return 0;
}

static sandbox_spec_t *spec_dup(const sandbox_spec_t *s)
{
	Hutch__V1__SandboxSpec *pb = sandbox_spec_to_pb(s);
	sandbox_spec_t *copy = sandbox_spec_from_pb(pb);
	protobuf_c_message_free_unpacked(&pb->base, NULL);
	return copy;
}

const group_codec_t group_pb_codec = {.encode = encode, .decode = decode, .spec_dup = spec_dup};
