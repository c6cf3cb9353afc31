/*
 * sandbox_pb.h: sandboxes between the wire and the core.
 *
 * The only place where hutch.v1.SandboxSpec / hutch.v1.Sandbox meet the
 * sandbox manager's own types (sandbox_spec.h, sandbox_record.h): the gRPC
 * handlers convert requests and replies here, and the manager stores its
 * records through sandbox_pb_codec, in the format records have always had
 * (a packed hutch.v1.Sandbox), so a daemon of an earlier version's records
 * recover unchanged.
 *
 * Every conversion is a deep copy: what *_to_pb returns is freed with
 * protobuf_c_message_free_unpacked(&m->base, NULL), what *_from_pb returns
 * with sandbox_spec_free.
 */
#ifndef HUTCH_SANDBOX_PB_H
#define HUTCH_SANDBOX_PB_H

#include "hutch/v1/sandbox.pb-c.h"
#include "sandbox_mgr.h"

/* NULL: an empty spec (every field its default). */
sandbox_spec_t *sandbox_spec_from_pb(const Hutch__V1__SandboxSpec *pb);
Hutch__V1__SandboxSpec *sandbox_spec_to_pb(const sandbox_spec_t *s);

Hutch__V1__SandboxState sandbox_state_to_pb(sandbox_state_t s);
Hutch__V1__Sandbox *sandbox_record_to_pb(const sandbox_record_t *r);
/* The sandbox as API replies show it. */
Hutch__V1__Sandbox *sandbox_pb_new(const sandbox_t *sb);

/* The stored records' encoding, for sandbox_mgr_deps_t.codec. */
extern const sandbox_codec_t sandbox_pb_codec;

#endif
