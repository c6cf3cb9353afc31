/*
 * nl_addr.h: adding an IPv4 address to an interface with one rtnetlink
 * request, in whatever network namespace the calling thread is in.
 *
 * Plain libc, no other hutch code: hutch-agent (a static binary inside the
 * sandbox) and the runtime plugin (on the host, in a thread that entered
 * the sandbox's namespace) both use it, for the loopback addresses a
 * sandbox must have locally (the metadata endpoint, 169.254.169.254).
 */
#ifndef HUTCH_NL_ADDR_H
#define HUTCH_NL_ADDR_H

/* Adds addr/prefix (dotted quad) to the interface with ifindex (1 is the
 * loopback). Returns 0 (also when the address is already there) or -errno. */
int nl_addr_add4(int ifindex, const char *addr, int prefix);

#endif
