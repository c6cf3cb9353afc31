/* Fuzzes net-egress's DNS message reader with what a sandbox (queries) or
 * an upstream (answers) may send: no crash, no read past the message,
 * names in canonical form, limits kept, and TTLs capped when asked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns_msg.h"

/* Canonical text: lower case letters, digits, '-', '_', '.' between
 * labels, and \DDD escapes, which make a name not plain. */
static void check_name(const char *s, bool plain)
{
	size_t n = strlen(s);
	if (n >= DNS_NAME_TEXT_MAX)
		__builtin_trap();
	bool escaped = false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '\\') {
			if (i + 3 >= n)
				__builtin_trap();
			for (int k = 1; k <= 3; k++)
				if (s[i + k] < '0' || s[i + k] > '9')
					__builtin_trap();
			escaped = true;
			i += 3;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			__builtin_trap();
	}
	if (plain == escaped)
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > DNS_MSG_MAX)
		return 0;
	/* A copy of exactly size bytes: ASan sees any read past the end. */
	uint8_t *msg = malloc(size ? size : 1);
	memcpy(msg, data, size);

	dns_header_t h;
	dns_question_t q;
	int r = dns_query_parse(msg, size, &h, &q);
	if (r == 0) {
		check_name(q.name, q.plain);
		if (q.end > size)
			__builtin_trap();
		uint8_t out[DNS_HEADER_LEN + DNS_WIRE_NAME_MAX + 8];
		size_t n = dns_error_reply(msg, size, &q, DNS_RCODE_REFUSED, out, sizeof out);
		if (n > sizeof out)
			__builtin_trap();
		uint8_t again[DNS_HEADER_LEN + DNS_WIRE_NAME_MAX + 8];
		size_t m = dns_query_build(q.plain ? q.name : "x.test", q.qtype, h.id, again, sizeof again);
		if (q.plain && *q.name && m == 0 && strlen(q.name) < 250)
			__builtin_trap();
	}

	/* As an answer: to the question it carries itself. */
	if (size >= DNS_HEADER_LEN) {
		uint8_t *copy = malloc(size);
		memcpy(copy, msg, size);
		copy[2] &= 0x7f; /* QR off, to read its question as a query */
		copy[2] &= 0x87; /* opcode QUERY */
		dns_header_t qh;
		dns_question_t aq;
		if (dns_query_parse(copy, size, &qh, &aq) == 0) {
			dns_answer_t *a = malloc(sizeof *a);
			if (dns_response_parse(msg, size, &aq, a) == 0) {
				/* Every address is read: none is ever left out
				 * (a denied name's would not be shunned). */
				if (a->n_chain < 1 || a->n_chain > DNS_MAX_CHAIN ||
				    a->n_addrs > DNS_MAX_ADDRS || a->addrs_cut)
					__builtin_trap();
				for (size_t i = 0; i < a->n_chain; i++)
					check_name(a->chain[i], a->chain_plain[i]);
				for (size_t i = 0; i < a->n_addrs; i++)
					if ((a->addrs[i].owner >= a->n_chain &&
					     !(a->chain_cut &&
					       a->addrs[i].owner == DNS_OWNER_OFF_CHAIN)) ||
					    a->addrs[i].ttl > 0x7fffffffu)
						__builtin_trap();
				/* Capped TTLs read back capped. */
				memcpy(copy, msg, size);
				if (dns_ttl_cap(copy, size, 300) == 0 &&
				    dns_response_parse(copy, size, &aq, a) == 0)
					for (size_t i = 0; i < a->n_addrs; i++)
						if (a->addrs[i].ttl > 300)
							__builtin_trap();
			}
			free(a);
		}
		free(copy);
	}

	/* Every offset as the start of a name. */
	for (size_t off = 0; off < size && off < 64; off++) {
		char name[DNS_NAME_TEXT_MAX];
		bool plain;
		size_t o = off;
		if (dns_name_read(msg, size, &o, name, sizeof name, &plain) == 0) {
			check_name(name, plain);
			if (o > size || o <= off)
				__builtin_trap();
		}
	}
	free(msg);
	return 0;
}
