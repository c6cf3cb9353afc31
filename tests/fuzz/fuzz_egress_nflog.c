/* Fuzzes net-egress's reader of NFLOG messages and of the packet headers
 * they carry (what a sandbox sent): no crash, no read past the copy. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nflog_msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	memcpy(copy, data, size);
	eg_nflog_pkt_t m;
	if (eg_nflog_parse(copy, size, &m) == 0 && m.has_pkt &&
	    m.pkt.family != AF_INET && m.pkt.family != AF_INET6)
		__builtin_trap();
	eg_pkt_t p;
	if (eg_pkt_parse(copy, size, &p) == 0) {
		if (p.family != AF_INET && p.family != AF_INET6)
			__builtin_trap();
		if ((p.has_ports || p.has_icmp) && p.fragment)
			__builtin_trap();
		char buf[16];
		if (!eg_proto_name(p.proto, buf, sizeof buf)[0])
			__builtin_trap();
	}
	free(copy);
	return 0;
}
