/*
 * storage-localdir: volumes as plain directories on the host.
 *
 * The smallest useful storage plugin, written as a guide for plugin authors
 * (see docs/plugin-guide.md). A volume is <root>/<tenant>/<name>; mounting
 * it hands that directory to the core, which bind-mounts it into the
 * sandbox. It has no versions and no forks, so those optional ops are NULL
 * and hutchd answers "unimplemented" for them.
 *
 * It uses nothing of hutchd but the host table it is given at init: the
 * plugin is built against <hutch/plugin.h> alone.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hutch/plugin.h>

/* The plugin's options, filled by the core from [plugin.storage-localdir]. */
typedef struct localdir_config {
	char *root;       /* NULL: <state_dir>/volumes */
	int64_t max_volumes;
} localdir_config_t;

static const hutch_config_field_t localdir_options[] = {
	{HUTCH_CONFIG_PATH, "root", NULL, offsetof(localdir_config_t, root),
	 "Directory holding the volumes (default: the plugin's state dir)", 0, NULL},
	{HUTCH_CONFIG_INT, "max_volumes", "1000", offsetof(localdir_config_t, max_volumes),
	 "Most volumes per tenant", 0, NULL},
	{0},
};

/* One instance per daemon. */
typedef struct localdir {
	const hutch_host_t *host;
	char root[PATH_MAX];
	int64_t max_volumes;
} localdir_t;

/* Tenant and volume names become path components: keep them tame. */
static int check_name(const char *what, const char *s, hutch_err_t *err)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63)
		return hutch_err_set(err, EINVAL, "%s name must be 1-63 characters", what);
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return hutch_err_set(err, EINVAL, "%s name `%s`: use [a-z0-9._-]", what, s);
	if (s[0] == '.')
		return hutch_err_set(err, EINVAL, "%s name must not start with a dot", what);
	return 0;
}

static int volume_path(localdir_t *ld, const char *tenant, const char *name,
		       char *out, size_t cap, hutch_err_t *err)
{
	int r;
	if ((r = check_name("tenant", tenant, err)) < 0 ||
	    (r = check_name("volume", name, err)) < 0)
		return r;
	if (snprintf(out, cap, "%s/%s/%s", ld->root, tenant, name) >= (int)cap)
		return hutch_err_set(err, ENAMETOOLONG, "volume path too long");
	return 0;
}

static int ld_init(const hutch_host_t *host, const void *config, void **instance,
		   hutch_err_t *err)
{
	const localdir_config_t *cfg = config;
	localdir_t *ld = calloc(1, sizeof *ld);
	if (!ld)
		return hutch_err_set(err, ENOMEM, "out of memory");
	ld->host = host;
	ld->max_volumes = cfg->max_volumes;
	if (cfg->root)
		snprintf(ld->root, sizeof ld->root, "%s", cfg->root);
	else
		snprintf(ld->root, sizeof ld->root, "%s/volumes", host->state_dir);
	if (mkdir(ld->root, 0700) < 0 && errno != EEXIST) {
		int r = hutch_err_sys(err, errno, "mkdir %s", ld->root);
		free(ld);
		return r;
	}
	host->log(host, HUTCH_LOG_INFO, "volumes under %s", ld->root);
	*instance = ld;
	return 0;
}

static void ld_fini(void *instance)
{
	free(instance);
}

static int ld_create(void *instance, const hutch_volume_ref_t *ref,
		     int64_t quota_bytes, hutch_err_t *err)
{
	localdir_t *ld = instance;
	char path[PATH_MAX], tdir[PATH_MAX];
	int r = volume_path(ld, ref->tenant, ref->name, path, sizeof path, err);
	if (r < 0)
		return r;
	(void)quota_bytes; /* plain directories cannot enforce one */
	if (snprintf(tdir, sizeof tdir, "%s/%s", ld->root, ref->tenant) >= (int)sizeof tdir)
		return hutch_err_set(err, ENAMETOOLONG, "volume path too long");
	if (mkdir(tdir, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", tdir);
	if (mkdir(path, 0755) < 0) {
		if (errno == EEXIST)
			return hutch_err_set(err, EEXIST, "volume `%s` already exists", ref->name);
		return hutch_err_sys(err, errno, "mkdir %s", path);
	}
	ld->host->metric_add(ld->host, "localdir_volumes_created_total", NULL, 1);
	return 0;
}

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p) < 0 && errno != ENOENT ? -1 : 0;
}

static int ld_delete(void *instance, const hutch_volume_ref_t *ref, hutch_err_t *err)
{
	localdir_t *ld = instance;
	char path[PATH_MAX];
	int r = volume_path(ld, ref->tenant, ref->name, path, sizeof path, err);
	if (r < 0)
		return r;
	if (access(path, F_OK) < 0)
		return hutch_err_set(err, ENOENT, "volume `%s` not found", ref->name);
	if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) < 0)
		return hutch_err_sys(err, errno, "remove %s", path);
	return 0;
}

/* out carries the size its allocator was built with: a core built against
 * an older header has a smaller struct, so only that much is written (and
 * members a newer core has beyond ours keep what it preset). */
static void fill_info(const char *name, const struct stat *st, hutch_volume_info_t *out)
{
	uint32_t size = out->size ? out->size : sizeof *out;
	hutch_volume_info_t info = {.size = size};
	/* Volume names are at most 63 characters (check_name). */
	snprintf(info.name, sizeof info.name, "%.*s", (int)sizeof info.name - 1, name);
	info.size_bytes = -1;
	info.created_unix = (int64_t)st->st_mtime;
	memcpy(out, &info, size < sizeof info ? size : sizeof info);
}

static int ld_info(void *instance, const hutch_volume_ref_t *ref,
		   hutch_volume_info_t *out, hutch_err_t *err)
{
	localdir_t *ld = instance;
	char path[PATH_MAX];
	int r = volume_path(ld, ref->tenant, ref->name, path, sizeof path, err);
	if (r < 0)
		return r;
	struct stat st;
	if (stat(path, &st) < 0)
		return hutch_err_set(err, ENOENT, "volume `%s` not found", ref->name);
	fill_info(ref->name, &st, out);
	return 0;
}

static int ld_list(void *instance, const char *tenant, hutch_volume_info_cb cb,
		   void *data, hutch_err_t *err)
{
	localdir_t *ld = instance;
	char dir[PATH_MAX];
	int r = check_name("tenant", tenant, err);
	if (r < 0)
		return r;
	if (snprintf(dir, sizeof dir, "%s/%s", ld->root, tenant) >= (int)sizeof dir)
		return hutch_err_set(err, ENAMETOOLONG, "volume path too long");
	DIR *d = opendir(dir);
	if (!d)
		return errno == ENOENT ? 0 : hutch_err_sys(err, errno, "open %s", dir);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		struct stat st;
		if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 && S_ISDIR(st.st_mode)) {
			hutch_volume_info_t info = {.size = sizeof info};
			fill_info(e->d_name, &st, &info);
			cb(data, &info);
		}
	}
	closedir(d);
	return 0;
}

static int ld_mount(void *instance, const hutch_volume_ref_t *ref,
		    const char *sandbox_id, bool read_only, char *host_path,
		    size_t cap, hutch_err_t *err)
{
	localdir_t *ld = instance;
	(void)sandbox_id;
	(void)read_only; /* the core makes the bind mount read-only */
	if (ref->version)
		return hutch_err_set(err, ENOTSUP, "storage-localdir keeps no versions");
	int r = volume_path(ld, ref->tenant, ref->name, host_path, cap, err);
	if (r < 0)
		return r;
	if (access(host_path, F_OK) < 0)
		return hutch_err_set(err, ENOENT, "volume `%s` not found", ref->name);
	return 0;
}

static int ld_unmount(void *instance, const char *sandbox_id, const char *name,
		      hutch_err_t *err)
{
	(void)instance;
	(void)sandbox_id;
	(void)name;
	(void)err;
	return 0; /* nothing was mounted on our side */
}

static void ld_capabilities(void *instance, hutch_kv_cb emit, void *data)
{
	localdir_t *ld = instance;
	emit(data, "root", ld->root);
	emit(data, "versions", "no");
	emit(data, "forks", "no");
}

static const hutch_storage_ops_t localdir_ops = {
	.size = sizeof(hutch_storage_ops_t),
	.volume_create = ld_create,
	.volume_delete = ld_delete,
	.volume_info = ld_info,
	.volume_list = ld_list,
	.volume_mount = ld_mount,
	.volume_unmount = ld_unmount,
	.capabilities = ld_capabilities,
};

static const hutch_plugin_t localdir_plugin = {
	.size = sizeof(hutch_plugin_t),
	.abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR,
	.kind = HUTCH_PLUGIN_STORAGE,
	.name = "storage-localdir",
	.version = "1.0.0",
	.description = "Volumes as plain host directories (example plugin)",
	.config = localdir_options,
	.config_size = sizeof(localdir_config_t),
	.init = ld_init,
	.fini = ld_fini,
	.ops = &localdir_ops,
};

HUTCH_PLUGIN_DEFINE(localdir_plugin)
