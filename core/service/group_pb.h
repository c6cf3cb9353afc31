/*
 * group_pb.h: scaling groups between the wire and the core: the spec
 * (hutch.v1.ScalingGroupSpec <-> group_spec_t), a group as the API shows it,
 * and the stored records' codec (a packed ScalingGroup: spec + revision).
 */
#ifndef HUTCH_GROUP_PB_H
#define HUTCH_GROUP_PB_H

#include "group.h"
#include "hutch/v1/scaling_group.pb-c.h"

/* NULL pb: an empty spec. Free with group_spec_free. */
group_spec_t *group_spec_from_pb(const Hutch__V1__ScalingGroupSpec *pb);
/* urls: the router's base URL and domain. Free with
 * protobuf_c_message_free_unpacked. */
Hutch__V1__ScalingGroup *group_pb_new(const group_t *g, const char *base_url,
				      const char *domain);

extern const group_codec_t group_pb_codec;

#endif
