/*
 * net_policy.h: NetworkPolicy objects (hutch.v1.NetworkPolicy) as hutchd
 * stores them, and as network plugins receive them (hutch_net_policy_t).
 *
 * A policy is a store object of kind "policy", named, owned by a tenant.
 * Sandboxes name the policies bound to them; the policies are looked up
 * (in the sandbox's tenant) and converted each time they are handed to the
 * network chain, so a replaced policy reaches every sandbox that uses it.
 */
#ifndef HUTCH_NET_POLICY_H
#define HUTCH_NET_POLICY_H

#include <hutch/plugin.h>

#include "hutch/v1/policy.pb-c.h"
#include "policy_set.h"
#include "store.h"

#define NET_POLICY_KIND "policy"

/* Checks what hutchd itself can check (names, patterns, CIDRs, sizes);
 * network plugins check what they enforce with policy_validate. Also
 * normalises: hostnames lower-cased, a trailing dot dropped. */
int net_policy_check(Hutch__V1__NetworkPolicy *p, hutch_err_t *err);

/* Loads the tenant's policy `name`; -ENOENT with a message if absent.
 * Free with protobuf_c_message_free_unpacked. */
int net_policy_load(store_t *st, const char *tenant, const char *name,
		    Hutch__V1__NetworkPolicy **out, hutch_err_t *err);
int net_policy_save(store_t *st, const Hutch__V1__NetworkPolicy *p, hutch_err_t *err);

/* Loads names[0..n) of the tenant into set (free with
 * net_policy_set_free). On failure set is empty. A net_policy_load_fn with
 * the store as its data. */
int net_policy_set_load(void *store, const char *tenant, char *const *names, size_t n,
			net_policy_set_t *set, hutch_err_t *err);
/* One policy in the plugin's form (pointers into p; free with free()). */
hutch_net_policy_t *net_policy_view(const Hutch__V1__NetworkPolicy *p);

#endif
