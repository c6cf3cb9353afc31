/*
 * dns_msg.c: DNS message reading and writing (see dns_msg.h). Every index
 * into a message is checked against its length before it is read.
 */
#include "dns_msg.h"

#include <errno.h>
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

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

int dns_header_read(const uint8_t *msg, size_t len, dns_header_t *h)
{
	if (len < DNS_HEADER_LEN)
		return -EBADMSG;
	h->id = get16(msg);
	h->flags = get16(msg + 2);
	h->qdcount = get16(msg + 4);
	h->ancount = get16(msg + 6);
	h->nscount = get16(msg + 8);
	h->arcount = get16(msg + 10);
	return 0;
}

static bool byte_is_plain(uint8_t b)
{
	return (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '-' || b == '_';
}

int dns_name_read(const uint8_t *msg, size_t len, size_t *off, char *out, size_t cap,
		  bool *plain)
{
	if (cap < DNS_NAME_TEXT_MAX)
		return -EINVAL;
	size_t pos = *off;
	/* A pointer must point before the start of the labels it follows, so
	 * every jump goes strictly backwards and a name cannot loop. */
	size_t limit = pos;
	size_t resume = 0;
	bool jumped = false;
	size_t wire = 0, o = 0;
	bool pl = true;
	for (;;) {
		if (pos >= len)
			return -EBADMSG;
		uint8_t c = msg[pos];
		if ((c & 0xc0) == 0xc0) {
			if (pos + 1 >= len)
				return -EBADMSG;
			size_t target = ((size_t)(c & 0x3f) << 8) | msg[pos + 1];
			if (target >= limit)
				return -EBADMSG;
			if (!jumped) {
				resume = pos + 2;
				jumped = true;
			}
			limit = target;
			pos = target;
			continue;
		}
		if (c & 0xc0)
			return -EBADMSG; /* extended label types (RFC 6891 obsoleted them) */
		pos++;
		if (c == 0)
			break;
		wire += 1u + c;
		if (wire + 1 > DNS_WIRE_NAME_MAX)
			return -EBADMSG;
		if (c > len - pos)
			return -EBADMSG;
		if (o > 0)
			out[o++] = '.';
		for (size_t i = 0; i < c; i++) {
			uint8_t b = msg[pos + i];
			if (b >= 'A' && b <= 'Z')
				b = (uint8_t)(b - 'A' + 'a');
			if (byte_is_plain(b)) {
				out[o++] = (char)b;
			} else {
				/* 4 chars per byte at most: 255 wire bytes fit in 1024. */
				out[o++] = '\\';
				out[o++] = (char)('0' + b / 100);
				out[o++] = (char)('0' + (b / 10) % 10);
				out[o++] = (char)('0' + b % 10);
				pl = false;
			}
		}
		pos += c;
	}
	out[o] = '\0';
	*off = jumped ? resume : pos;
	if (plain)
		*plain = pl;
	return 0;
}

static int question_read(const uint8_t *msg, size_t len, size_t off, dns_question_t *q)
{
	int r = dns_name_read(msg, len, &off, q->name, sizeof q->name, &q->plain);
	if (r < 0)
		return r;
	if (off > len || len - off < 4)
		return -EBADMSG;
	q->qtype = get16(msg + off);
	q->qclass = get16(msg + off + 2);
	q->end = off + 4;
	return 0;
}

int dns_query_parse(const uint8_t *msg, size_t len, dns_header_t *h, dns_question_t *q)
{
	int r = dns_header_read(msg, len, h);
	if (r < 0)
		return r;
	if (h->flags & DNS_FLAG_QR)
		return -EBADMSG;
	if (DNS_OPCODE(h->flags) != 0)
		return -ENOTSUP;
	if (h->qdcount != 1)
		return -EBADMSG;
	return question_read(msg, len, DNS_HEADER_LEN, q);
}

/* One resource record as read from a message. */
typedef struct rr {
	char owner[DNS_NAME_TEXT_MAX];
	bool plain;
	uint16_t type, klass;
	uint32_t ttl;
	size_t ttl_off;
	uint16_t rdlen;
	size_t rdata;
} rr_t;

static int rr_read(const uint8_t *msg, size_t len, size_t *off, rr_t *rr)
{
	size_t o = *off;
	int r = dns_name_read(msg, len, &o, rr->owner, sizeof rr->owner, &rr->plain);
	if (r < 0)
		return r;
	if (o > len || len - o < 10)
		return -EBADMSG;
	rr->type = get16(msg + o);
	rr->klass = get16(msg + o + 2);
	rr->ttl_off = o + 4;
	rr->ttl = get32(msg + o + 4);
	/* RFC 2181 8: a TTL with the top bit set counts as zero. */
	if (rr->ttl & 0x80000000u)
		rr->ttl = 0;
	rr->rdlen = get16(msg + o + 8);
	rr->rdata = o + 10;
	if (rr->rdlen > len - rr->rdata)
		return -EBADMSG;
	*off = rr->rdata + rr->rdlen;
	return 0;
}

/* Skips qdcount questions from the header's end; *off gets the answer
 * section's start. */
static int questions_skip(const uint8_t *msg, size_t len, const dns_header_t *h, size_t *off)
{
	size_t o = DNS_HEADER_LEN;
	char name[DNS_NAME_TEXT_MAX];
	for (unsigned i = 0; i < h->qdcount; i++) {
		int r = dns_name_read(msg, len, &o, name, sizeof name, NULL);
		if (r < 0)
			return r;
		if (o > len || len - o < 4)
			return -EBADMSG;
		o += 4;
	}
	*off = o;
	return 0;
}

static int chain_index(const dns_answer_t *a, const char *name)
{
	for (size_t i = 0; i < a->n_chain; i++)
		if (strcmp(a->chain[i], name) == 0)
			return (int)i;
	return -1;
}

int dns_response_parse(const uint8_t *msg, size_t len, const dns_question_t *q,
		       dns_answer_t *a)
{
	a->n_chain = 0;
	a->n_addrs = 0;
	a->chain_cut = false;
	a->addrs_cut = false;
	int r = dns_header_read(msg, len, &a->h);
	if (r < 0)
		return r;
	if (!(a->h.flags & DNS_FLAG_QR) || a->h.qdcount != 1)
		return -EBADMSG;
	dns_question_t rq;
	if ((r = question_read(msg, len, DNS_HEADER_LEN, &rq)) < 0)
		return r;
	if (strcmp(rq.name, q->name) != 0 || rq.qtype != q->qtype || rq.qclass != q->qclass)
		return -EBADMSG;
	size_t start = rq.end;

	/* The whole answer section must parse, whatever it holds. */
	rr_t rr;
	size_t off = start;
	for (unsigned i = 0; i < a->h.ancount; i++)
		if ((r = rr_read(msg, len, &off, &rr)) < 0)
			return r;

	memcpy(a->chain[0], q->name, strlen(q->name) + 1);
	a->chain_plain[0] = q->plain;
	a->n_chain = 1;
	if (DNS_RCODE(a->h.flags) != DNS_RCODE_NOERROR)
		return 0;

	/* Follow CNAMEs from the question's name, in whatever order the
	 * records come. */
	bool grew = true;
	while (grew && !a->chain_cut) {
		grew = false;
		const char *tail = a->chain[a->n_chain - 1];
		off = start;
		for (unsigned i = 0; i < a->h.ancount; i++) {
			if ((r = rr_read(msg, len, &off, &rr)) < 0)
				return r;
			if (rr.type != DNS_TYPE_CNAME || rr.klass != DNS_CLASS_IN ||
			    strcmp(rr.owner, tail) != 0)
				continue;
			char target[DNS_NAME_TEXT_MAX];
			bool plain;
			size_t t = rr.rdata;
			if ((r = dns_name_read(msg, len, &t, target, sizeof target, &plain)) < 0)
				return r;
			if (t != rr.rdata + rr.rdlen)
				return -EBADMSG;
			if (chain_index(a, target) >= 0 || a->n_chain == DNS_MAX_CHAIN) {
				a->chain_cut = true;
				break;
			}
			memcpy(a->chain[a->n_chain], target, strlen(target) + 1);
			a->chain_plain[a->n_chain] = plain;
			a->n_chain++;
			grew = true;
			break;
		}
	}

	off = start;
	for (unsigned i = 0; i < a->h.ancount; i++) {
		if ((r = rr_read(msg, len, &off, &rr)) < 0)
			return r;
		if (rr.klass != DNS_CLASS_IN)
			continue;
		int family;
		if (rr.type == DNS_TYPE_A && rr.rdlen == 4)
			family = AF_INET;
		else if (rr.type == DNS_TYPE_AAAA && rr.rdlen == 16)
			family = AF_INET6;
		else
			continue;
		int owner = chain_index(a, rr.owner);
		if (owner < 0 && !a->chain_cut)
			continue;
		if (a->n_addrs == DNS_MAX_ADDRS) {
			a->addrs_cut = true;
			break;
		}
		dns_addr_t *d = &a->addrs[a->n_addrs++];
		memset(d, 0, sizeof *d);
		d->family = family;
		memcpy(d->addr, msg + rr.rdata, rr.rdlen);
		d->ttl = rr.ttl;
		d->owner = owner < 0 ? DNS_OWNER_OFF_CHAIN : (unsigned)owner;
	}
	return 0;
}

int dns_ttl_cap(uint8_t *msg, size_t len, uint32_t max_ttl)
{
	dns_header_t h;
	int r = dns_header_read(msg, len, &h);
	if (r < 0)
		return r;
	size_t off;
	if ((r = questions_skip(msg, len, &h, &off)) < 0)
		return r;
	rr_t rr;
	for (unsigned i = 0; i < h.ancount; i++) {
		if ((r = rr_read(msg, len, &off, &rr)) < 0)
			return r;
		if (rr.type == DNS_TYPE_OPT)
			continue;
		if (get32(msg + rr.ttl_off) > max_ttl)
			put32(msg + rr.ttl_off, max_ttl);
	}
	return 0;
}

size_t dns_error_reply(const uint8_t *query, size_t qlen, const dns_question_t *q,
		       unsigned rcode, uint8_t *out, size_t cap)
{
	if (qlen < DNS_HEADER_LEN || cap < DNS_HEADER_LEN)
		return 0;
	size_t qbytes = 0;
	if (q) {
		if (q->end > qlen || q->end < DNS_HEADER_LEN)
			return 0;
		qbytes = q->end - DNS_HEADER_LEN;
		if (qbytes > cap - DNS_HEADER_LEN)
			return 0;
	}
	uint16_t qflags = get16(query + 2);
	uint16_t flags = (uint16_t)(DNS_FLAG_QR | (qflags & (0xfu << 11)) | (qflags & DNS_FLAG_RD) |
				    DNS_FLAG_RA | (rcode & 0xfu));
	memcpy(out, query, 2);
	put16(out + 2, flags);
	put16(out + 4, q ? 1 : 0);
	put16(out + 6, 0);
	put16(out + 8, 0);
	put16(out + 10, 0);
	if (qbytes)
		memcpy(out + DNS_HEADER_LEN, query + DNS_HEADER_LEN, qbytes);
	return DNS_HEADER_LEN + qbytes;
}

void dns_id_set(uint8_t *msg, uint16_t id)
{
	put16(msg, id);
}

const char *dns_type_name(uint16_t type, char *buf, size_t cap)
{
	static const struct {
		uint16_t type;
		const char *name;
	} names[] = {
		{1, "A"},      {2, "NS"},   {5, "CNAME"}, {6, "SOA"},    {12, "PTR"},
		{15, "MX"},    {16, "TXT"}, {28, "AAAA"}, {33, "SRV"},   {64, "SVCB"},
		{65, "HTTPS"}, {255, "ANY"},
	};
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].type == type) {
			snprintf(buf, cap, "%s", names[i].name);
			return buf;
		}
	snprintf(buf, cap, "TYPE%u", type);
	return buf;
}

size_t dns_query_build(const char *name, uint16_t qtype, uint16_t id, uint8_t *out, size_t cap)
{
	size_t n = strlen(name);
	/* header, labels (one length byte per label plus its bytes), root,
	 * type and class */
	if (n == 0 || n > DNS_WIRE_NAME_MAX - 2 || cap < DNS_HEADER_LEN + n + 2 + 4)
		return 0;
	memset(out, 0, DNS_HEADER_LEN);
	put16(out, id);
	put16(out + 2, DNS_FLAG_RD);
	put16(out + 4, 1);
	size_t o = DNS_HEADER_LEN;
	const char *p = name;
	while (*p) {
		const char *dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);
		if (l == 0 || l > 63)
			return 0;
		out[o++] = (uint8_t)l;
		memcpy(out + o, p, l);
		o += l;
		p += l;
		if (*p == '.')
			p++;
	}
	out[o++] = 0;
	put16(out + o, qtype);
	put16(out + o + 2, DNS_CLASS_IN);
	return o + 4;
}
