#include "plugin_set.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "strbuf.h"

#ifndef HUTCH_PLUGIN_INSTALL_DIR
#define HUTCH_PLUGIN_INSTALL_DIR "/usr/local/lib/hutch/plugins"
#endif

char *plugin_dir_default(void)
{
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = '\0';
			char *dir = xasprintf("%s/../lib/hutch/plugins", exe);
			char real[PATH_MAX];
			struct stat st;
			if (realpath(dir, real) && stat(real, &st) == 0 && S_ISDIR(st.st_mode)) {
				free(dir);
				return xstrdup(real);
			}
			free(dir);
		}
	}
	return xstrdup(HUTCH_PLUGIN_INSTALL_DIR);
}

static int load_one(plugin_set_t *set, const daemon_config_t *cfg,
		    const char *plugin_dir, const char *role, const char *name,
		    hutch_plugin_kind_t want, plugin_t **out, hutch_err_t *err)
{
	_cleanup_free_ char *path = NULL;
	int r = plugin_resolve(name, plugin_dir, &path, err);
	if (r < 0)
		return r;
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->all[i]->path, path) == 0)
			return hutch_err_set(err, EINVAL, "plugin %s is named twice in [plugins]", path);
	plugin_t *p;
	r = plugin_open(path, &p, err);
	if (r < 0)
		return r;
	if (p->desc.kind != want) {
		r = hutch_err_set(err, EINVAL,
				  "plugin %s is a %s plugin, but [plugins] %s names it (needs a %s plugin)",
				  path, plugin_kind_name(p->desc.kind), role, plugin_kind_name(want));
		plugin_close(p);
		return r;
	}
	for (size_t i = 0; i < set->n; i++) {
		if (strcmp(set->all[i]->name, p->name) == 0) {
			r = hutch_err_set(err, EINVAL, "two plugins are called `%s`", p->name);
			plugin_close(p);
			return r;
		}
	}
	r = plugin_configure(p, daemon_config_plugin_table(cfg, p->name), cfg->file, err);
	if (r < 0) {
		plugin_close(p);
		return r;
	}
	set->all = xrealloc(set->all, (set->n + 1) * sizeof *set->all);
	set->all[set->n++] = p;
	*out = p;
	return 0;
}

int plugin_set_load(plugin_set_t *set, const daemon_config_t *cfg,
		    const char *plugin_dir, hutch_err_t *err)
{
	memset(set, 0, sizeof *set);
	const plugins_section_t *ps = &cfg->plugins;
	int r;
	if (!ps->runtime || !*ps->runtime) {
		r = hutch_err_set(err, EINVAL, "[plugins] runtime must name a runtime plugin");
		goto fail;
	}
	r = load_one(set, cfg, plugin_dir, "runtime", ps->runtime, HUTCH_PLUGIN_RUNTIME,
		     &set->runtime, err);
	if (r < 0)
		goto fail;
	size_t nn = strv_len(ps->network);
	set->network = xcalloc(nn + 1, sizeof *set->network);
	for (size_t i = 0; i < nn; i++) {
		r = load_one(set, cfg, plugin_dir, "network", ps->network[i],
			     HUTCH_PLUGIN_NETWORK, &set->network[i], err);
		if (r < 0)
			goto fail;
		set->n_network = i + 1;
	}
	if (ps->storage && *ps->storage) {
		r = load_one(set, cfg, plugin_dir, "storage", ps->storage, HUTCH_PLUGIN_STORAGE,
			     &set->storage, err);
		if (r < 0)
			goto fail;
	}
	if (ps->identity && *ps->identity) {
		r = load_one(set, cfg, plugin_dir, "identity", ps->identity,
			     HUTCH_PLUGIN_IDENTITY, &set->identity, err);
		if (r < 0)
			goto fail;
	}
	size_t na = strv_len(ps->accelerators);
	set->accelerators = xcalloc(na + 1, sizeof *set->accelerators);
	for (size_t i = 0; i < na; i++) {
		r = load_one(set, cfg, plugin_dir, "accelerators", ps->accelerators[i],
			     HUTCH_PLUGIN_ACCELERATOR, &set->accelerators[i], err);
		if (r < 0)
			goto fail;
		set->n_accelerators = i + 1;
	}
	/* [plugin.X] for a plugin that is not loaded is a mistake worth
	 * reporting: the operator thinks it configured something. */
	char **names = xcalloc(set->n + 1, sizeof *names);
	for (size_t i = 0; i < set->n; i++)
		names[i] = set->all[i]->name;
	r = daemon_config_check_plugin_tables(cfg, names, err);
	free(names);
	if (r < 0)
		goto fail;
	return 0;
fail:
	plugin_set_close(set);
	return r;
}

/* Says at start what a loaded plugin will not be asked to do, so that an
 * operator who configured it does not take it for working. */
static void warn_undriven(const plugin_set_t *set)
{
	if (set->storage)
		log_warn("plugin %s: this hutchd does not drive storage plugins yet (no volume "
			 "API); sandboxes that ask for volumes are refused", set->storage->name);
	for (size_t i = 0; i < set->n_accelerators; i++)
		log_warn("plugin %s: this hutchd does not drive accelerator plugins yet; "
			 "sandboxes that ask for a gpu are refused", set->accelerators[i]->name);
	/* loopback_addrs came with minor 1 (the minor says it exactly). */
	if (set->identity && set->runtime->desc.abi_minor < 1)
		log_warn("plugin %s: built for plugin ABI 1.0, it does not put the identity "
			 "metadata address on its sandboxes' loopback; they read their identity "
			 "token from its file only", set->runtime->name);
}

int plugin_set_start(plugin_set_t *set, host_core_t *core, const char *state_dir,
		     const char *run_dir, hutch_err_t *err)
{
	for (size_t i = 0; i < set->n; i++) {
		plugin_t *p = set->all[i];
		host_ctx_t *ctx;
		int r = host_ctx_new(core, plugin_kind_name(p->desc.kind), p->name, state_dir,
				     run_dir, &ctx, err);
		if (r < 0)
			return r;
		r = plugin_start(p, ctx, err);
		if (r < 0) {
			host_ctx_free(ctx);
			p->host = NULL;
			return r;
		}
		log_info("plugin %s %s (%s, ABI %u.%u) started from %s", p->name,
			 p->desc.version ? p->desc.version : "?",
			 plugin_kind_name(p->desc.kind), p->desc.abi_major, p->desc.abi_minor,
			 p->path);
	}
	warn_undriven(set);
	return 0;
}

void plugin_set_close(plugin_set_t *set)
{
	for (size_t i = set->n; i-- > 0;) {
		host_ctx_t *ctx = set->all[i]->host;
		plugin_close(set->all[i]);
		host_ctx_free(ctx);
	}
	free(set->all);
	free(set->network);
	free(set->accelerators);
	memset(set, 0, sizeof *set);
}
