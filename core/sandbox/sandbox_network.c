/* A user sandbox's network: the chain attached with its policies and
 * ports, detached at the end, and the /etc files naming its address. */
#include "sandbox_priv.h"

#include <stdlib.h>

#include "cleanup.h"
#include "net_chain.h"
#include "rundir.h"
#include "strbuf.h"

int sandbox_network_attach(sandbox_t *sb, const net_policy_set_t *policies,
			      hutch_net_attachment_t *att, hutch_err_t *err)
{
	_cleanup_free_ uint16_t *ports = xcalloc(sb->spec->n_ports + 1, sizeof *ports);
	for (size_t i = 0; i < sb->spec->n_ports; i++)
		ports[i] = (uint16_t)sb->spec->ports[i];
	/* The tunnels to join, by name (validation made sure a plugin of the
	 * chain makes them; the others ignore them). */
	size_t nt = sb->spec->n_tunnels;
	_cleanup_free_ hutch_net_tunnel_t *tunnels = xcalloc(nt + 1, sizeof *tunnels);
	_cleanup_free_ const hutch_net_tunnel_t **tunnel_ptrs = xcalloc(nt + 1, sizeof *tunnel_ptrs);
	for (size_t i = 0; i < nt; i++) {
		tunnels[i] = (hutch_net_tunnel_t){.size = sizeof tunnels[i],
						  .name = sb->spec->tunnels[i]};
		tunnel_ptrs[i] = &tunnels[i];
	}
	hutch_net_attach_t req = {
		.sandbox_id = sb->id,
		.tenant = sb->tenant,
		.policies = (const hutch_net_policy_t *const *)policies->items,
		.n_policies = policies->n,
		.policies_set = sb->spec->n_network_policies > 0,
		.ports = ports,
		.n_ports = sb->spec->n_ports,
		.tunnels = nt ? tunnel_ptrs : NULL,
		.n_tunnels = nt,
		.sandbox_name = sb->spec->name && *sb->spec->name ? sb->spec->name : NULL,
	};
	return net_chain_attach(sb->m->d.plugins, req, att, &sb->n_network_attached, err);
}

/* All of the chain when nothing is counted (a recovered sandbox). */
void sandbox_network_detach(sandbox_t *sb)
{
	plugin_set_t *ps = sb->m->d.plugins;
	net_chain_detach(ps, sb->id, sb->n_network_attached ? sb->n_network_attached : ps->n_network,
			 "sandbox");
	sb->n_network_attached = 0;
}

/* The sandbox's /etc/hosts, /etc/hostname and /etc/resolv.conf (see
 * rundir_write_etc). */
int sandbox_write_etc(sandbox_t *sb, const hutch_net_attachment_t *att, hutch_err_t *err)
{
	_cleanup_free_ char *dir = xasprintf("%s/etc", sb->run_dir);
	return rundir_write_etc(dir, sb->id, att, err);
}
