/* Forwarded ports: one host listener per spec port while running. */
#include "sandbox_priv.h"

#include <stdlib.h>

#include "port_forward.h"
#include "strbuf.h"

void sandbox_ports_stop(sandbox_t *sb)
{
	size_t n = strv_len(sb->port_addrs);
	for (size_t i = 0; i < n; i++)
		port_fwd_stop(sb->fwds[i]);
	free(sb->fwds);
	sb->fwds = NULL;
	strv_free(sb->port_addrs);
	sb->port_addrs = NULL;
}

int sandbox_ports_start(sandbox_t *sb, hutch_err_t *err)
{
	if (!sb->spec->n_ports)
		return 0;
	sb->fwds = xcalloc(sb->spec->n_ports, sizeof *sb->fwds);
	for (size_t i = 0; i < sb->spec->n_ports; i++) {
		char bound[80];
		port_fwd_t *f;
		int r = port_fwd_start(sb->m->d.loop, sb->netns_path, (uint16_t)sb->spec->ports[i],
				       "127.0.0.1", &f, bound, sizeof bound, err);
		if (r < 0) {
			sandbox_ports_stop(sb);
			return r;
		}
		sb->fwds[i] = f;
		strv_push(&sb->port_addrs, xstrdup(bound));
	}
	return 0;
}
