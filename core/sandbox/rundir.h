/*
 * rundir.h: what hutchd writes into a sandbox's run directory, for user
 * sandboxes (sandbox_mgr.c) and image build sandboxes (build_sandbox.c)
 * alike: small text files, the /etc files every sandbox gets, and the
 * directory's removal.
 */
#ifndef HUTCH_RUNDIR_H
#define HUTCH_RUNDIR_H

#include <hutch/error.h>
#include <hutch/plugin.h>

/* Creates or truncates path (mode 0644) with text. */
int rundir_write_text(const char *path, const char *text, hutch_err_t *err);

/* etc_dir/{hosts,hostname,resolv.conf} for a sandbox called name: its own
 * name on its addresses (127.0.1.1 without one), and the resolver the
 * network chain gave it. att NULL or without a resolver: no network, so
 * name lookups fail at once instead of reaching anywhere. */
int rundir_write_etc(const char *etc_dir, const char *name, const hutch_net_attachment_t *att,
		     hutch_err_t *err);

/* rm -rf on one file system; failures are logged. */
void rundir_remove(const char *dir);

#endif
