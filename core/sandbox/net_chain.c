#include "net_chain.h"

#include <string.h>

#include "log.h"

int net_chain_attach(plugin_set_t *ps, hutch_net_attach_t req, hutch_net_attachment_t *att,
		     size_t *n_attached, hutch_err_t *err)
{
	memset(att, 0, sizeof *att);
	att->size = sizeof *att;
	req.size = sizeof req;
	for (size_t i = 0; i < ps->n_network; i++) {
		plugin_t *p = ps->network[i];
		req.netns_path = att->netns_path[0] ? att->netns_path : NULL;
		int r = p->ops.network.attach(p->instance, &req, att, err);
		if (r < 0)
			return hutch_err_prefix(err, "%s", p->name);
		*n_attached = i + 1;
	}
	return 0;
}

void net_chain_detach(plugin_set_t *ps, const char *sandbox_id, size_t n, const char *what)
{
	for (size_t i = n; i-- > 0;) {
		plugin_t *p = ps->network[i];
		hutch_err_t e = {0};
		if (p->ops.network.detach(p->instance, sandbox_id, &e) < 0)
			log_error("%s %s: %s: detach: %s", what, sandbox_id, p->name, e.message);
	}
}
