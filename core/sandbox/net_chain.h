/*
 * net_chain.h: a sandbox's network chain, as user sandboxes (sandbox_mgr.c)
 * and image build sandboxes (build_sandbox.c) both attach and detach it.
 */
#ifndef HUTCH_NET_CHAIN_H
#define HUTCH_NET_CHAIN_H

#include <stddef.h>

#include <hutch/error.h>
#include <hutch/plugin.h>

#include "plugin_set.h"

/* Attaches every network plugin in order, each with req (netns_path filled
 * from what the first one made); *n_attached counts those that attached,
 * so a failure can be undone with net_chain_detach. */
int net_chain_attach(plugin_set_t *ps, hutch_net_attach_t req, hutch_net_attachment_t *att,
		     size_t *n_attached, hutch_err_t *err);

/* Detaches the first n plugins, last first; failures are logged with what
 * ("sandbox", "build sandbox"). */
void net_chain_detach(plugin_set_t *ps, const char *sandbox_id, size_t n, const char *what);

#endif
