/*
 * nflog_msg.c: NFLOG messages and packet headers (see nflog_msg.h).
 */
#include "nflog_msg.h"

#include <errno.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The transport header at p: ports or the ICMP type, when they were
 * copied. */
static void transport_read(const uint8_t *p, size_t len, eg_pkt_t *out)
{
	switch (out->proto) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
		if (len >= 4) {
			out->sport = get16(p);
			out->dport = get16(p + 2);
			out->has_ports = true;
		}
		break;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if (len >= 1) {
			out->icmp_type = p[0];
			out->has_icmp = true;
		}
		break;
	default:
		break;
	}
}

static int ipv4_parse(const uint8_t *p, size_t len, eg_pkt_t *out)
{
	if (len < 20)
		return -EBADMSG;
	size_t ihl = (size_t)(p[0] & 0xf) * 4;
	if (ihl < 20)
		return -EBADMSG;
	out->family = AF_INET;
	memcpy(out->src, p + 12, 4);
	memcpy(out->dst, p + 16, 4);
	out->proto = p[9];
	uint16_t frag = get16(p + 6);
	if (frag & 0x1fff) {
		out->fragment = true; /* the offset is not 0: no transport header */
		return 0;
	}
	if (ihl < len)
		transport_read(p + ihl, len - ihl, out);
	return 0;
}

static bool ipv6_ext_header(uint8_t nh)
{
	return nh == 0 /* hop-by-hop */ || nh == 43 /* routing */ || nh == 60 /* destination */ ||
	       nh == 51 /* AH */;
}

static int ipv6_parse(const uint8_t *p, size_t len, eg_pkt_t *out)
{
	if (len < 40)
		return -EBADMSG;
	out->family = AF_INET6;
	memcpy(out->src, p + 8, 16);
	memcpy(out->dst, p + 24, 16);
	uint8_t nh = p[6];
	size_t off = 40;
	/* At most a few extension headers; each is bounds-checked. */
	for (int hops = 0; hops < 8; hops++) {
		if (nh == 44) { /* fragment: 8 bytes */
			if (len - off < 8) {
				out->proto = nh;
				return 0;
			}
			uint16_t frag_off = get16(p + off + 2) >> 3;
			nh = p[off];
			off += 8;
			if (frag_off) {
				out->proto = nh;
				out->fragment = true;
				return 0;
			}
			continue;
		}
		if (!ipv6_ext_header(nh))
			break;
		if (len - off < 8) {
			out->proto = nh; /* cut short inside the extension headers */
			return 0;
		}
		size_t ext = nh == 51 ? ((size_t)p[off + 1] + 2) * 4 : ((size_t)p[off + 1] + 1) * 8;
		nh = p[off];
		if (ext > len - off) {
			out->proto = nh;
			return 0;
		}
		off += ext;
	}
	out->proto = nh;
	if (!ipv6_ext_header(nh) && nh != 44 && off < len)
		transport_read(p + off, len - off, out);
	return 0;
}

int eg_pkt_parse(const uint8_t *p, size_t len, eg_pkt_t *out)
{
	memset(out, 0, sizeof *out);
	if (len < 1)
		return -EBADMSG;
	switch (p[0] >> 4) {
	case 4:
		return ipv4_parse(p, len, out);
	case 6:
		return ipv6_parse(p, len, out);
	default:
		return -EBADMSG;
	}
}

int eg_nflog_parse(const void *attrs, size_t len, eg_nflog_pkt_t *out)
{
	memset(out, 0, sizeof *out);
	const uint8_t *base = attrs;
	size_t off = 0;
	while (off + NLA_HDRLEN <= len) {
		const struct nlattr *a = (const struct nlattr *)(const void *)(base + off);
		if (a->nla_len < NLA_HDRLEN || a->nla_len > len - off)
			return -EBADMSG;
		const uint8_t *data = base + off + NLA_HDRLEN;
		size_t dlen = a->nla_len - NLA_HDRLEN;
		switch (a->nla_type & NLA_TYPE_MASK) {
		case NFULA_MARK:
			if (dlen == 4) {
				out->mark = get32(data);
				out->has_mark = true;
			}
			break;
		case NFULA_IFINDEX_INDEV:
			if (dlen == 4)
				out->indev = get32(data);
			break;
		case NFULA_PAYLOAD:
			out->has_pkt = eg_pkt_parse(data, dlen, &out->pkt) == 0;
			break;
		default:
			break;
		}
		off += NLA_ALIGN(a->nla_len);
	}
	return 0;
}

const char *eg_proto_name(uint8_t proto, char *buf, size_t cap)
{
	switch (proto) {
	case IPPROTO_TCP: return "tcp";
	case IPPROTO_UDP: return "udp";
	case IPPROTO_ICMP: return "icmp";
	case IPPROTO_ICMPV6: return "icmpv6";
	case IPPROTO_SCTP: return "sctp";
	case IPPROTO_UDPLITE: return "udplite";
	default:
		snprintf(buf, cap, "ip-%u", proto);
		return buf;
	}
}
