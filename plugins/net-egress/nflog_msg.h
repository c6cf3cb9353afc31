/*
 * nflog_msg.h: reading NFLOG packet messages and the headers of the
 * packets they carry.
 *
 * A dropped packet reaches the audit as an NFLOG message from the kernel:
 * its mark (why it was dropped), its input interface, and its first bytes.
 * Those bytes are what a sandbox sent, so they are untrusted input: every
 * header is bounds-checked against what was copied, and a packet cut
 * short still yields what could be read (addresses without ports).
 * Nothing here allocates.
 */
#ifndef EGRESS_NFLOG_MSG_H
#define EGRESS_NFLOG_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct eg_pkt {
	int family;            /* AF_INET or AF_INET6 */
	uint8_t src[16], dst[16];
	uint8_t proto;         /* the transport protocol (after IPv6 extension headers) */
	bool has_ports;        /* TCP, UDP, SCTP, UDP-Lite with their ports read */
	uint16_t sport, dport;
	bool has_icmp;         /* ICMP or ICMPv6 with its type read */
	uint8_t icmp_type;
	bool fragment;         /* a non-first fragment: no transport header */
} eg_pkt_t;

/* Parses the IP header at p (an IPv4 or IPv6 packet, possibly cut short
 * after the headers). -EBADMSG when not even the IP header is there. */
int eg_pkt_parse(const uint8_t *p, size_t len, eg_pkt_t *out);

typedef struct eg_nflog_pkt {
	bool has_mark;
	uint32_t mark;
	uint32_t indev;        /* input interface index, 0 when not given */
	bool has_pkt;          /* the payload parsed */
	eg_pkt_t pkt;
} eg_nflog_pkt_t;

/* Parses one NFULNL_MSG_PACKET message's attributes (what follows its
 * nlmsghdr and nfgenmsg). -EBADMSG when an attribute runs past len. */
int eg_nflog_parse(const void *attrs, size_t len, eg_nflog_pkt_t *out);

/* "tcp", "udp", "icmp", "icmpv6", ... or "ip-<n>" into buf. */
const char *eg_proto_name(uint8_t proto, char *buf, size_t cap);

#endif
