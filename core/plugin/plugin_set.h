/*
 * plugin_set.h: the plugins hutchd runs with, by role.
 *
 * [plugins] in hutchd.toml names one runtime, an ordered network chain,
 * optionally a storage and an identity plugin, and any accelerators. Each
 * name resolves to a .so (plugin_dir/<name>.so or an absolute path) whose
 * kind must match its role. Loading and binding happen before the loop
 * starts; init happens right after (still before the loop runs).
 */
#ifndef HUTCH_PLUGIN_SET_H
#define HUTCH_PLUGIN_SET_H

#include "daemon_config.h"
#include "host_api.h"
#include "plugin_loader.h"

typedef struct plugin_set {
	plugin_t **all; /* load order; started in this order, stopped in reverse */
	size_t n;
	plugin_t *runtime;
	plugin_t **network;
	size_t n_network;
	plugin_t *storage;
	plugin_t *identity;
	plugin_t **accelerators;
	size_t n_accelerators;
} plugin_set_t;

/* Opens every configured plugin and binds its table. On failure nothing
 * stays loaded. */
int plugin_set_load(plugin_set_t *set, const daemon_config_t *cfg,
		    const char *plugin_dir, hutch_err_t *err);
/* init() each plugin with its own host table. */
int plugin_set_start(plugin_set_t *set, host_core_t *core, const char *state_dir,
		     const char *run_dir, hutch_err_t *err);
/* fini() in reverse order, unload, free. */
void plugin_set_close(plugin_set_t *set);

/* The directory plugins are found in when none is configured: beside the
 * executable (../lib/hutch/plugins), else the install dir. */
char *plugin_dir_default(void);

#endif
