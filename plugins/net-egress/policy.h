/*
 * policy.h: egress policies as net-egress enforces them.
 *
 * A sandbox's bound policies (hutch_net_policy_t, several at once) are
 * compiled into one eg_rules_t: the union of their allowed hostnames and
 * CIDRs, the union of their denies, and whether any of them allows all.
 * Denies always win over allows. Hostname patterns are exact names or a
 * leading wildcard, "*.example.com", which matches names below
 * example.com but not example.com itself; both are compared in lower case
 * with the trailing dot dropped. A catch-all "*" is refused: that is what
 * allow_all is for.
 *
 * Compiled rules are immutable once made, so a reader (the DNS resolver's
 * thread) may use them while holding the sandbox's lock only.
 */
#ifndef EGRESS_POLICY_H
#define EGRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/plugin.h>

#include "strbuf.h"

/* An address prefix; addr holds the network address (host bits zero). */
typedef struct eg_cidr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t plen;
	uint8_t addr[16];
} eg_cidr_t;

/* "10.0.0.0/8", "2001:db8::/32", or a bare address (a /32 or /128).
 * Host bits must be zero. */
int eg_cidr_parse(const char *text, eg_cidr_t *out, hutch_err_t *err);
bool eg_cidr_contains(const eg_cidr_t *c, int family, const uint8_t *addr);
/* The last address of the prefix (4 or 16 bytes). */
void eg_cidr_last(const eg_cidr_t *c, uint8_t out[16]);
void eg_cidr_format(const eg_cidr_t *c, char *buf, size_t cap);
/* Sorts v and drops every prefix that another one covers, so that no two
 * overlap (nftables interval sets refuse overlaps). Returns the new count. */
size_t eg_cidrs_normalize(eg_cidr_t *v, size_t n);

/* Checks and canonicalizes a hostname pattern into out (cap >= 256). */
int eg_pattern_normalize(const char *in, char *out, size_t cap, hutch_err_t *err);
/* name: canonical and plain (see dns_msg.h). */
bool eg_pattern_match(const char *pattern, const char *name);

typedef struct eg_named {
	char *pattern; /* canonical */
	char *policy;  /* the policy it came from */
} eg_named_t;

typedef struct eg_rules {
	bool is_default;  /* no policy was bound: the configured default */
	bool allow_all;   /* anything not denied may be reached */
	eg_named_t *allow_hosts;
	size_t n_allow_hosts;
	eg_named_t *deny_hosts;
	size_t n_deny_hosts;
	eg_cidr_t *allow_cidrs; /* normalized */
	size_t n_allow_cidrs;
	eg_cidr_t *deny_cidrs;  /* normalized */
	size_t n_deny_cidrs;
	char *policies;   /* "a,b": names of the bound policies, for audit */
} eg_rules_t;

typedef enum eg_verdict {
	EG_VERDICT_OPEN = 0,     /* allow_all and not denied */
	EG_VERDICT_ALLOWED = 1,  /* matches an allowed hostname, no deny */
	EG_VERDICT_DENIED = 2,   /* matches a denied hostname */
	EG_VERDICT_UNLISTED = 3, /* matches nothing: not allowed */
} eg_verdict_t;

const char *eg_verdict_name(eg_verdict_t v);
/* The bound policies' names for the audit: "a,b", "(default)" when none
 * was bound, "(none)" when bound to none. */
const char *eg_rules_label(const eg_rules_t *r);

/* The verdict for one name; *match (if non-NULL) gets the pattern that
 * decided, or NULL. */
eg_verdict_t eg_rules_name_verdict(const eg_rules_t *r, const char *name, bool plain,
				   const eg_named_t **match);
/* The denied prefix covering addr, or NULL. */
const eg_cidr_t *eg_rules_denied_cidr(const eg_rules_t *r, int family, const uint8_t *addr);

/* Checks one policy: patterns and CIDRs, with a message naming the field
 * and the value at fault. */
int eg_policy_validate(const hutch_net_policy_t *p, hutch_err_t *err);

/* Compiles the bound policies. set = false: none bound, the default
 * applies (default_allow: unrestricted, else nothing). set with n = 0:
 * bound to nothing, so nothing is allowed. */
int eg_rules_compile(const hutch_net_policy_t *const *ps, size_t n, bool set,
		     bool default_allow, eg_rules_t **out, hutch_err_t *err);
void eg_rules_free(eg_rules_t *r);

/* The rules as "key value" lines (for the sandbox's state file), and back
 * one line at a time into rules made by eg_rules_new(). */
void eg_rules_write(const eg_rules_t *r, strbuf_t *out);
eg_rules_t *eg_rules_new(void);
int eg_rules_read_line(eg_rules_t *r, const char *key, const char *value, hutch_err_t *err);

#endif
