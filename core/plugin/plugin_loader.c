#include "plugin_loader.h"

#include <limits.h>
#include <ltdl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "config_bind.h"
#include "host_api.h"
#include "strbuf.h"

/* The 1.0 descriptor ends with `ops`; anything smaller is not 1.x. */
#define DESC_V1_0_SIZE (offsetof(hutch_plugin_t, ops) + sizeof(void *))

typedef struct required_op {
	size_t offset;
	const char *name;
} required_op_t;

#define REQ(type, member) {offsetof(type, member), #member}
static const required_op_t runtime_required[] = {
	REQ(hutch_runtime_ops_t, sandbox_create),
	REQ(hutch_runtime_ops_t, sandbox_stop),
	REQ(hutch_runtime_ops_t, sandbox_destroy),
	REQ(hutch_runtime_ops_t, sandbox_status),
	REQ(hutch_runtime_ops_t, exec_command),
	REQ(hutch_runtime_ops_t, sandbox_list),
	{0, NULL},
};
static const required_op_t network_required[] = {
	REQ(hutch_network_ops_t, attach),
	REQ(hutch_network_ops_t, detach),
	{0, NULL},
};
static const required_op_t storage_required[] = {
	REQ(hutch_storage_ops_t, volume_create),
	REQ(hutch_storage_ops_t, volume_delete),
	REQ(hutch_storage_ops_t, volume_info),
	REQ(hutch_storage_ops_t, volume_list),
	REQ(hutch_storage_ops_t, volume_mount),
	REQ(hutch_storage_ops_t, volume_unmount),
	{0, NULL},
};
static const required_op_t identity_required[] = {
	REQ(hutch_identity_ops_t, token_issue),
	REQ(hutch_identity_ops_t, token_verify),
	{0, NULL},
};
static const required_op_t accelerator_required[] = {
	REQ(hutch_accelerator_ops_t, inventory),
	REQ(hutch_accelerator_ops_t, allocate),
	REQ(hutch_accelerator_ops_t, release),
	{0, NULL},
};
#undef REQ

static const struct kind_info {
	hutch_plugin_kind_t kind;
	const char *name;
	size_t ops_size;
	const required_op_t *required;
} kinds[] = {
	{HUTCH_PLUGIN_RUNTIME, "runtime", sizeof(hutch_runtime_ops_t), runtime_required},
	{HUTCH_PLUGIN_ACCELERATOR, "accelerator", sizeof(hutch_accelerator_ops_t), accelerator_required},
	{HUTCH_PLUGIN_NETWORK, "network", sizeof(hutch_network_ops_t), network_required},
	{HUTCH_PLUGIN_STORAGE, "storage", sizeof(hutch_storage_ops_t), storage_required},
	{HUTCH_PLUGIN_IDENTITY, "identity", sizeof(hutch_identity_ops_t), identity_required},
};

static const struct kind_info *kind_info(hutch_plugin_kind_t kind)
{
	for (size_t i = 0; i < ARRAY_SIZE(kinds); i++)
		if (kinds[i].kind == kind)
			return &kinds[i];
	return NULL;
}

const char *plugin_kind_name(hutch_plugin_kind_t kind)
{
	const struct kind_info *k = kind_info(kind);
	return k ? k->name : "unknown";
}

static bool valid_plugin_name(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

int plugin_resolve(const char *name_or_path, const char *plugin_dir,
		   char **path_out, hutch_err_t *err)
{
	if (name_or_path[0] == '/') {
		*path_out = xstrdup(name_or_path);
		return 0;
	}
	if (strchr(name_or_path, '/')) {
		/* A relative path (from the command line): make it absolute. */
		char real[PATH_MAX];
		if (!realpath(name_or_path, real))
			return hutch_err_sys(err, errno, "plugin %s", name_or_path);
		*path_out = xstrdup(real);
		return 0;
	}
	if (!valid_plugin_name(name_or_path))
		return hutch_err_set(err, EINVAL,
				     "plugin `%s`: give a plugin name ([a-z0-9-]) or an absolute path to a .so",
				     name_or_path);
	if (!plugin_dir)
		return hutch_err_set(err, EINVAL, "plugin `%s`: no plugin_dir set", name_or_path);
	*path_out = xasprintf("%s/%s.so", plugin_dir, name_or_path);
	return 0;
}

static int ltdl_ready(hutch_err_t *err)
{
	static bool done;
	if (!done) {
		if (lt_dlinit() != 0)
			return hutch_err_set(err, EIO, "libltdl init: %s", lt_dlerror());
		done = true;
	}
	return 0;
}

static int refuse(hutch_err_t *err, const char *path, const char *fmt, ...)
	HUTCH_PRINTF(3, 4);
static int refuse(hutch_err_t *err, const char *path, const char *fmt, ...)
{
	char why[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	return hutch_err_set(err, EINVAL, "plugin %s refused: %s", path, why);
}

int plugin_open(const char *path, plugin_t **out, hutch_err_t *err)
{
	int r = ltdl_ready(err);
	if (r < 0)
		return r;
	if (path[0] != '/')
		return hutch_err_set(err, EINVAL, "plugin %s: path must be absolute", path);
	struct stat st;
	if (stat(path, &st) < 0)
		return hutch_err_sys(err, errno, "plugin %s", path);
	if (!S_ISREG(st.st_mode))
		return hutch_err_set(err, EINVAL, "plugin %s: not a regular file", path);

	lt_dlhandle h = lt_dlopen(path);
	if (!h)
		return hutch_err_set(err, ENOEXEC, "plugin %s: cannot load: %s", path,
				     lt_dlerror());

	plugin_t *p = xcalloc(1, sizeof *p);
	p->path = xstrdup(path);
	p->handle = h;

	hutch_plugin_entry_fn entry = (hutch_plugin_entry_fn)lt_dlsym(h, HUTCH_PLUGIN_SYMBOL);
	if (!entry) {
		r = refuse(err, path,
			   "no symbol `%s` (not a hutch plugin, or one built for another plugin ABI major)",
			   HUTCH_PLUGIN_SYMBOL);
		goto fail;
	}
	const hutch_plugin_t *d = entry();
	if (!d) {
		r = refuse(err, path, "`%s` returned no descriptor", HUTCH_PLUGIN_SYMBOL);
		goto fail;
	}
	/* abi_major sits at the same offset in every 1.x descriptor. */
	if (d->abi_major != HUTCH_PLUGIN_ABI_MAJOR) {
		r = refuse(err, path,
			   "built for plugin ABI %u.%u, this hutchd speaks ABI %d.x (major must match)",
			   d->abi_major, d->abi_minor, HUTCH_PLUGIN_ABI_MAJOR);
		goto fail;
	}
	if (d->size < DESC_V1_0_SIZE) {
		r = refuse(err, path, "descriptor is %u bytes, smaller than the ABI 1.0 descriptor (%zu)",
			   d->size, (size_t)DESC_V1_0_SIZE);
		goto fail;
	}
	memcpy(&p->desc, d, d->size < sizeof p->desc ? d->size : sizeof p->desc);

	const struct kind_info *k = kind_info(p->desc.kind);
	if (!k) {
		r = refuse(err, path, "unknown plugin kind %d", (int)p->desc.kind);
		goto fail;
	}
	if (!valid_plugin_name(p->desc.name)) {
		r = refuse(err, path, "plugin name must be 1-64 characters of [a-z0-9-]");
		goto fail;
	}
	{
		const char *base = strrchr(path, '/') + 1;
		size_t nl = strlen(p->desc.name);
		if (strncmp(base, p->desc.name, nl) != 0 || strcmp(base + nl, ".so") != 0) {
			r = refuse(err, path, "plugin calls itself `%s`, so its file must be %s.so",
				   p->desc.name, p->desc.name);
			goto fail;
		}
	}
	p->name = xstrdup(p->desc.name);
	if (!p->desc.init) {
		r = refuse(err, path, "descriptor has no init()");
		goto fail;
	}
	if (!p->desc.ops) {
		r = refuse(err, path, "descriptor has no %s ops", k->name);
		goto fail;
	}
	p->ops_size = *(const uint32_t *)p->desc.ops;
	if (p->ops_size < sizeof(uint32_t) + sizeof(void *)) {
		r = refuse(err, path, "%s ops struct size %u is too small", k->name, p->ops_size);
		goto fail;
	}
	memcpy(&p->ops, p->desc.ops, p->ops_size < k->ops_size ? p->ops_size : k->ops_size);
	for (const required_op_t *req = k->required; req->name; req++) {
		void *fn = NULL;
		if (req->offset + sizeof fn <= p->ops_size)
			memcpy(&fn, (const char *)&p->ops + req->offset, sizeof fn);
		if (!fn) {
			r = refuse(err, path, "required %s op `%s` is missing", k->name, req->name);
			goto fail;
		}
	}
	if (p->desc.config && p->desc.config_size == 0) {
		r = refuse(err, path, "config table given but config_size is 0");
		goto fail;
	}
	r = config_schema_check(p->desc.config, p->desc.config_size, err);
	if (r < 0) {
		hutch_err_prefix(err, "plugin %s refused: config schema", path);
		goto fail;
	}
	*out = p;
	return 0;
fail:
	/* d (and p->desc's strings) belonged to the library being closed. */
	free(p->name);
	free(p->path);
	lt_dlclose(h);
	free(p);
	return r;
}

int plugin_configure(plugin_t *p, const toml_value_t *table, const char *file,
		     hutch_err_t *err)
{
	if (!p->desc.config || p->desc.config_size == 0) {
		if (table && table->type == TOML_TABLE && table->u.table.len > 0) {
			const toml_kv_t *kv = &table->u.table.items[0];
			return hutch_err_set(err, EINVAL,
					     "%s:%d:%d: [plugin.%s] unknown key `%.*s` (this plugin has no options)",
					     file ? file : "<config>", kv->line, kv->col,
					     p->name, (int)kv->key_len, kv->key);
		}
		return 0;
	}
	_cleanup_free_ char *section = xasprintf("plugin.%s", p->name);
	void *cfg = xcalloc(1, p->desc.config_size);
	int r = config_bind(p->desc.config, table, file, section, cfg, err);
	if (r < 0) {
		free(cfg);
		return r;
	}
	if (p->config) {
		config_release(p->desc.config, p->config);
		free(p->config);
	}
	p->config = cfg;
	return 0;
}

int plugin_start(plugin_t *p, host_ctx_t *host, hutch_err_t *err)
{
	if (!p->config && p->desc.config_size) {
		int r = plugin_configure(p, NULL, NULL, err);
		if (r < 0)
			return r;
	}
	p->host = host;
	void *inst = NULL;
	hutch_err_t e = {0};
	int r = p->desc.init(host_ctx_table(host), p->config, &inst, &e);
	if (r < 0) {
		if (!e.message[0])
			hutch_err_set(&e, -r, "init failed");
		hutch_err_set(err, e.code ? e.code : -r, "plugin %s: %s", p->name, e.message);
		return -err->code;
	}
	p->instance = inst;
	p->started = true;
	return 0;
}

void plugin_close(plugin_t *p)
{
	if (!p)
		return;
	if (p->started && p->desc.fini)
		p->desc.fini(p->instance);
	if (p->config) {
		config_release(p->desc.config, p->config);
		free(p->config);
	}
	if (p->handle)
		lt_dlclose(p->handle);
	free(p->name);
	free(p->path);
	free(p);
}
