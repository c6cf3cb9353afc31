/*
 * dns_msg.h: reading and writing DNS messages (RFC 1035) for net-egress's
 * resolver.
 *
 * Both sides of the resolver are untrusted input: the sandbox writes the
 * queries, and the upstream's answers decide which addresses a sandbox may
 * reach. Every read here is bounds-checked against the message length,
 * compression pointers may only point backwards (so they cannot loop), and
 * names are turned into text in one canonical form: lower case, labels
 * joined by '.', no trailing dot, and every byte outside [a-z0-9_-] written
 * as \DDD. A name with such an escape is not "plain" and can never match a
 * policy pattern, so a label holding a '.' byte cannot pass for two labels.
 *
 * Nothing here allocates; the parse results live in caller-owned structs.
 */
#ifndef EGRESS_DNS_MSG_H
#define EGRESS_DNS_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_HEADER_LEN 12
#define DNS_WIRE_NAME_MAX 255
/* Worst case text: 255 wire bytes, each escaped as \DDD, plus NUL. */
#define DNS_NAME_TEXT_MAX 1024
/* CNAME hops followed from the question before giving up. */
#define DNS_MAX_CHAIN 12
/* Largest message over UDP or TCP. */
#define DNS_MSG_MAX 65535
/* Addresses one answer can hold: as many A records as the largest
 * message has room for (15 bytes each at the least: a one-byte owner, the
 * root, after a header and the shortest question), so every address of an
 * answer is read: a denied name's are all shunned, none slips past. */
#define DNS_MAX_ADDRS ((DNS_MSG_MAX - DNS_HEADER_LEN - 5) / 15)

enum {
	DNS_TYPE_A = 1,
	DNS_TYPE_CNAME = 5,
	DNS_TYPE_AAAA = 28,
	DNS_TYPE_OPT = 41,
};
enum { DNS_CLASS_IN = 1 };
enum {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
};

#define DNS_FLAG_QR 0x8000u
#define DNS_FLAG_TC 0x0200u
#define DNS_FLAG_RD 0x0100u
#define DNS_FLAG_RA 0x0080u
#define DNS_OPCODE(flags) (((flags) >> 11) & 0xfu)
#define DNS_RCODE(flags) ((flags)&0xfu)

typedef struct dns_header {
	uint16_t id, flags, qdcount, ancount, nscount, arcount;
} dns_header_t;

typedef struct dns_question {
	char name[DNS_NAME_TEXT_MAX]; /* canonical text; "" is the root */
	bool plain;                   /* no escapes: may match a policy */
	uint16_t qtype, qclass;
	size_t end;                   /* offset just past the question */
} dns_question_t;

typedef struct dns_addr {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* 4 or 16 bytes used */
	uint32_t ttl;
	unsigned owner;    /* index into dns_answer_t.chain, or DNS_OWNER_OFF_CHAIN */
} dns_addr_t;

/* The owner of an address record past a cut chain. */
#define DNS_OWNER_OFF_CHAIN 0xffffffffu

/* What an answer says about the question's name: the CNAME chain from it
 * (chain[0] is the question's name) and the A/AAAA records owned by a name
 * on that chain. Records for any other owner are ignored, but when the
 * chain is cut: then the chain's end is unknown, and every address record
 * is read, those of owners off the chain marked DNS_OWNER_OFF_CHAIN (a
 * denied name's answer shuns them all; any other such answer is refused,
 * as the names past the cut cannot be judged). */
typedef struct dns_answer {
	dns_header_t h;
	char chain[DNS_MAX_CHAIN][DNS_NAME_TEXT_MAX];
	bool chain_plain[DNS_MAX_CHAIN];
	size_t n_chain;
	bool chain_cut;     /* a longer chain or a loop: the rest is unknown */
	dns_addr_t addrs[DNS_MAX_ADDRS];
	size_t n_addrs;
	bool addrs_cut;     /* more than DNS_MAX_ADDRS (cannot happen, see
			     * there): the answer is refused */
} dns_answer_t;

/* 0, or -EBADMSG when len < DNS_HEADER_LEN. */
int dns_header_read(const uint8_t *msg, size_t len, dns_header_t *h);

/* Reads the (possibly compressed) name at *off into out (canonical text)
 * and moves *off past it. -EBADMSG on anything malformed: out of bounds,
 * a forward or self pointer, a label type other than 0 or a pointer, more
 * than 255 wire bytes. cap must be >= DNS_NAME_TEXT_MAX. */
int dns_name_read(const uint8_t *msg, size_t len, size_t *off, char *out, size_t cap,
		  bool *plain);

/* Parses a query: a header with QR clear and exactly one question.
 * -EBADMSG when malformed, -ENOTSUP for an opcode other than QUERY or a
 * question count other than 1 (the header is then still filled). */
int dns_query_parse(const uint8_t *msg, size_t len, dns_header_t *h, dns_question_t *q);

/* Parses an upstream response to q: QR set, one question equal to q, and
 * the answer section walked for q's CNAME chain and addresses.
 * -EBADMSG when malformed or not an answer to q. */
int dns_response_parse(const uint8_t *msg, size_t len, const dns_question_t *q,
		       dns_answer_t *a);

/* Lowers every answer-section TTL above max_ttl to max_ttl, in place, so
 * that clients do not keep an address longer than the resolver allows it.
 * -EBADMSG when malformed (the message is then unchanged or partly
 * rewritten; the caller drops it). */
int dns_ttl_cap(uint8_t *msg, size_t len, uint32_t max_ttl);

/* Writes a reply with rcode to query (its header and, when q is non-NULL,
 * its question) into out. Returns the length, or 0 if cap is too small. */
size_t dns_error_reply(const uint8_t *query, size_t qlen, const dns_question_t *q,
		       unsigned rcode, uint8_t *out, size_t cap);

/* Writes a recursive query for name (text, labels joined by '.', no
 * escapes) into out. Returns the length, or 0 if name is not a valid name
 * or cap is too small. */
size_t dns_query_build(const char *name, uint16_t qtype, uint16_t id, uint8_t *out, size_t cap);

/* Sets the message id (the first two bytes); len must be >= 2. */
void dns_id_set(uint8_t *msg, uint16_t id);

/* "A", "AAAA", "CNAME", ... or "TYPE<n>" into buf. */
const char *dns_type_name(uint16_t type, char *buf, size_t cap);

#endif
