/*
 * dns_local.c: names another plugin of the chain publishes for a sandbox
 * (net-wireguard's "<member>.<tunnel>.tunnel"). With local_names_dir set,
 * a query for a name under local_names_suffix is answered from the asking
 * sandbox's own file, <local_names_dir>/<sandbox id> ("name address" lines,
 * IPv4), and never forwarded: a sandbox sees only the names published for
 * it. A name that is not there is NXDOMAIN; another type of a name that is,
 * an empty answer.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "cleanup.h"
#include "dns_resolver.h"

#define LOCAL_TTL 5

static bool under_suffix(const char *name, const char *suffix)
{
	size_t n = strlen(name), s = strlen(suffix);
	return s && n > s && name[n - s - 1] == '.' && strcasecmp(name + n - s, suffix) == 0;
}

/* The address published for name in the sandbox's file; false if none. */
static bool local_lookup(const char *dir, const char *id, const char *name, uint8_t addr[4])
{
	char path[512];
	if (strchr(id, '/') || snprintf(path, sizeof path, "%s/%s", dir, id) >= (int)sizeof path)
		return false;
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	char line[512], n[300], a[64];
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "%299s %63s", n, a) == 2 && strcasecmp(n, name) == 0 &&
		    inet_pton(AF_INET, a, addr) == 1)
			return true;
	return false;
}

bool dns_local_answer(query_t *q)
{
	const eg_config_t *c = q->dns->in->cfg;
	if (!c->local_names_dir || !*c->local_names_dir ||
	    !under_suffix(q->q.name, c->local_names_suffix ? c->local_names_suffix : ""))
		return false;
	uint8_t addr[4];
	bool found = local_lookup(c->local_names_dir, q->sb->id, q->q.name, addr);
	if (!found) {
		dns_reply_error(q, DNS_RCODE_NXDOMAIN);
		return true;
	}
	uint8_t out[DNS_HEADER_LEN + DNS_WIRE_NAME_MAX + 8 + 16];
	dns_id_set(q->msg, q->client_id);
	size_t n = dns_error_reply(q->msg, q->len, &q->q, DNS_RCODE_NOERROR, out, sizeof out - 16);
	dns_id_set(q->msg, q->up_id);
	if (!n)
		return true;
	out[2] |= 0x04; /* AA: these names are ours */
	if (q->q.qtype == DNS_TYPE_A) {
		/* The question's name by pointer (offset 12), A, IN, TTL, 4 bytes. */
		static const uint8_t rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, LOCAL_TTL, 0, 4};
		memcpy(out + n, rr, sizeof rr);
		memcpy(out + n + sizeof rr, addr, 4);
		n += sizeof rr + 4;
		out[7] = 1; /* ancount */
	}
	dns_reply_send(q, out, n);
	return true;
}
