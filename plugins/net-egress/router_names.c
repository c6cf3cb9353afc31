/*
 * Names of hutchd's router, answered by the resolver itself: with
 * router_domain set, a sandbox's query for <anything>.<router_domain> gets
 * the gateway address (A; no AAAA, so clients do not wait on one), never
 * forwarded upstream and never checked against the sandbox's policies: it
 * names a host service, not the Internet. Together with one input rule
 * (nft.c: TCP to the gateway on router_port) that is how a sandbox reaches
 * the services of its tenant: hutchd's router listens on the gateway
 * address too ([router] sandbox_listen) and serves a sandbox only its own
 * tenant's services (it knows the tenant from the source address, which
 * prerouting keeps honest).
 */
#include <ctype.h>
#include <string.h>

#include "dns_resolver.h"

bool eg_router_name(const eg_config_t *c, const char *name)
{
	const char *d = c->router_domain;
	if (!d || !d[0])
		return false;
	size_t nl = strlen(name), dl = strlen(d);
	if (nl >= 1 && name[nl - 1] == '.')
		nl--; /* a trailing dot: the root */
	if (nl < dl + 2 || name[nl - dl - 1] != '.')
		return false;
	for (size_t i = 0; i < dl; i++)
		if (tolower((unsigned char)name[nl - dl + i]) != tolower((unsigned char)d[i]))
			return false;
	return true;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

size_t eg_router_answer(const uint8_t *query, size_t qlen, const dns_question_t *q,
			const uint8_t gw4[4], uint8_t *out, size_t cap)
{
	size_t n = dns_error_reply(query, qlen, q, DNS_RCODE_NOERROR, out, cap);
	if (!n)
		return 0;
	/* Authoritative: the resolver is the source of these names. */
	out[2] |= 0x04;
	if (q->qtype != 1 /* A */ || q->qclass != 1 /* IN */)
		return n; /* NODATA */
	static const size_t rr = 2 + 2 + 2 + 4 + 2 + 4;
	if (cap - n < rr)
		return 0;
	uint8_t *p = out + n;
	put16(p, 0xc000 | DNS_HEADER_LEN); /* the question's name */
	put16(p + 2, 1);                   /* A */
	put16(p + 4, 1);                   /* IN */
	p[6] = 0, p[7] = 0, p[8] = 0, p[9] = 60; /* TTL 60 s */
	put16(p + 10, 4);
	memcpy(p + 12, gw4, 4);
	put16(out + 6, 1); /* ANCOUNT */
	return n + rr;
}
