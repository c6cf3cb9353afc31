/*
 * plugin_loader.h: opening a plugin .so and checking it can be trusted to
 * speak our ABI.
 *
 * A plugin is opened with libltdl from an absolute path, on the main thread,
 * before the event loop starts. Its one exported symbol, hutch_plugin_v1,
 * returns a descriptor that is checked (size, ABI major, kind, name, config
 * schema, ops size and every required op) and copied, zero-extended, into
 * structs of our own size; the core never reads past what the plugin says it
 * filled. Any failure names the file and the reason.
 */
#ifndef HUTCH_PLUGIN_LOADER_H
#define HUTCH_PLUGIN_LOADER_H

#include <hutch/plugin.h>

#include "toml.h"

typedef struct host_ctx host_ctx_t;

typedef struct plugin {
	char *path;
	char *name;
	void *handle; /* lt_dlhandle */
	hutch_plugin_t desc; /* zero-extended copy */
	union {
		hutch_runtime_ops_t runtime;
		hutch_network_ops_t network;
		hutch_storage_ops_t storage;
		hutch_identity_ops_t identity;
		hutch_accelerator_ops_t accelerator;
	} ops; /* zero-extended copy of the kind's ops */
	uint32_t ops_size; /* what the plugin declared */
	void *config;      /* bound config struct, desc.config_size bytes */
	void *instance;    /* from init(); NULL until started */
	host_ctx_t *host;
	bool started;
} plugin_t;

const char *plugin_kind_name(hutch_plugin_kind_t kind);

/* name_or_path: "runtime-gvisor" (looked up as <plugin_dir>/runtime-gvisor.so)
 * or an absolute path to a .so. */
int plugin_resolve(const char *name_or_path, const char *plugin_dir,
		   char **path_out, hutch_err_t *err);

/* Opens and validates. On failure nothing stays loaded. */
int plugin_open(const char *path, plugin_t **out, hutch_err_t *err);

/* Binds the plugin's [plugin.NAME] table (NULL: defaults). */
int plugin_configure(plugin_t *p, const toml_value_t *table, const char *file,
		     hutch_err_t *err);

/* Calls init() with the host table. */
int plugin_start(plugin_t *p, host_ctx_t *host, hutch_err_t *err);

/* fini() (if started), then unloads and frees. NULL is fine. */
void plugin_close(plugin_t *p);

#endif
