/*
 * policy_set.h: network policies as the network chain receives them.
 *
 * Who loads them (from the store, in their stored form) is the service
 * layer's business (core/service/net_policy.c); the sandbox manager and
 * the image builder only hand the plugin form to the chain and free the
 * set. The loader keeps what the items point into in owner.
 */
#ifndef HUTCH_POLICY_SET_H
#define HUTCH_POLICY_SET_H

#include <stddef.h>

#include <hutch/plugin.h>

typedef struct net_policy_set net_policy_set_t;
struct net_policy_set {
	hutch_net_policy_t **items; /* n pointers */
	size_t n;
	void *owner;                /* the loader's: what the items point into */
	void (*release)(net_policy_set_t *set); /* the loader's: frees items and owner */
};

/* Loads names[0..n) of tenant into set (loop thread: the store is the
 * loop's). On failure set is empty. */
typedef int (*net_policy_load_fn)(void *data, const char *tenant, char *const *names, size_t n,
				  net_policy_set_t *set, hutch_err_t *err);

static inline void net_policy_set_free(net_policy_set_t *set)
{
	if (set->release)
		set->release(set);
	*set = (net_policy_set_t){0};
}

#endif
