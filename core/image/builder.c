#include "builder.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "debian.h"
#include "image_builtin.h"
#include "image_spec.h"
#include "layer_tar.h"
#include "log.h"
#include "oci.h"
#include "proc.h"
#include "registry.h"
#include "strbuf.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Where an add step's files appear inside its build sandbox. */
#define CTX_IN_SANDBOX "/.hutch/ctx"
#define TAIL_MAX 4096

/* The image as it grows: layers and config. */
typedef struct image_acc {
	char **layers;       /* digests, lowest first */
	int64_t *sizes;
	char **created_by;
	char **cache_keys;
	size_t n;
	char **env;          /* "K=V" */
	char *workdir;
	char **entrypoint;
	char **cmd;
} image_acc_t;

typedef struct bctx {
	const builder_deps_t *d;
	const build_req_t *req;
	const build_io_t *io;
	image_acc_t acc;
	char **pinned;       /* every digest this build pinned */
	uint32_t total;
	uint32_t index;      /* the step being worked on, 1-based */
	bool built_any;
	strbuf_t tail;       /* the current step's last output */
	char chain[DIGEST_STR_MAX];
} bctx_t;

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool is_cancelled(const bctx_t *c)
{
	return c->io->cancel && atomic_load(c->io->cancel);
}

static void remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 300000, NULL, 0, &e) < 0)
		log_warn("images: remove %s: %s", path, e.message);
}

static void pin(bctx_t *c, const char *digest)
{
	image_store_pin(c->d->store, digest);
	strv_push(&c->pinned, xstrdup(digest));
}

/* ---- events ---- */

typedef struct step_info {
	Hutch__V1__BuildStepState state;
	const char *description;
	const char *key;
	const char *layer;
	int64_t size;
	int64_t duration_ms;
	int exit_code;
	const char *error;
	bool with_tail;
} step_info_t;

static void emit_step(bctx_t *c, const step_info_t *s)
{
	Hutch__V1__BuildStepEvent st = HUTCH__V1__BUILD_STEP_EVENT__INIT;
	st.index = c->index;
	st.total = c->total;
	st.description = (char *)(s->description ? s->description : "");
	st.state = s->state;
	st.cache_key = (char *)(s->key ? s->key : "");
	st.layer_digest = (char *)(s->layer ? s->layer : "");
	st.layer_size = s->size;
	st.duration_ms = s->duration_ms;
	st.exit_code = s->exit_code;
	_cleanup_free_ char *tail = xstrdup(s->with_tail && c->tail.buf ? c->tail.buf : "");
	utf8_scrub(tail);
	st.output_tail = tail;
	_cleanup_free_ char *error = xstrdup(s->error ? s->error : "");
	utf8_scrub(error);
	st.error = error;
	Hutch__V1__BuildImageEvent ev = HUTCH__V1__BUILD_IMAGE_EVENT__INIT;
	ev.event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_STEP;
	ev.step = &st;
	c->io->emit(c->io->data, &ev);
}

static void on_output(void *data, int stream, const char *buf, size_t n)
{
	bctx_t *c = data;
	(void)stream;
	Hutch__V1__BuildLog log = HUTCH__V1__BUILD_LOG__INIT;
	log.index = c->index;
	log.data.data = (uint8_t *)buf;
	log.data.len = n;
	Hutch__V1__BuildImageEvent ev = HUTCH__V1__BUILD_IMAGE_EVENT__INIT;
	ev.event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_LOG;
	ev.log = &log;
	c->io->emit(c->io->data, &ev);
	/* The last TAIL_MAX bytes, for a failure's report. */
	sb_append_n(&c->tail, buf, n);
	if (c->tail.len > TAIL_MAX) {
		size_t drop = c->tail.len - TAIL_MAX;
		memmove(c->tail.buf, c->tail.buf + drop, TAIL_MAX);
		c->tail.len = TAIL_MAX;
		c->tail.buf[TAIL_MAX] = '\0';
	}
}

/* ---- the image as it grows ---- */

static void env_set(image_acc_t *a, const char *key, const char *value)
{
	size_t kl = strlen(key);
	for (size_t i = 0; a->env && a->env[i]; i++)
		if (strncmp(a->env[i], key, kl) == 0 && a->env[i][kl] == '=') {
			free(a->env[i]);
			a->env[i] = xasprintf("%s=%s", key, value);
			return;
		}
	strv_push(&a->env, xasprintf("%s=%s", key, value));
}

static void acc_add_layer(bctx_t *c, const char *digest, int64_t size, const char *created_by,
			  const char *key)
{
	image_acc_t *a = &c->acc;
	a->sizes = xrealloc(a->sizes, (a->n + 1) * sizeof *a->sizes);
	a->sizes[a->n] = size;
	strv_push(&a->layers, xstrdup(digest));
	strv_push(&a->created_by, xstrdup(created_by));
	strv_push(&a->cache_keys, xstrdup(key));
	a->n++;
}

static void acc_free(image_acc_t *a)
{
	strv_free(a->layers);
	free(a->sizes);
	strv_free(a->created_by);
	strv_free(a->cache_keys);
	strv_free(a->env);
	free(a->workdir);
	strv_free(a->entrypoint);
	strv_free(a->cmd);
	memset(a, 0, sizeof *a);
}

static void acc_config_from(image_acc_t *a, const Hutch__V1__ImageConfig *cfg)
{
	for (size_t i = 0; i < cfg->n_env; i++)
		env_set(a, cfg->env[i]->key, cfg->env[i]->value ? cfg->env[i]->value : "");
	if (cfg->workdir && *cfg->workdir) {
		free(a->workdir);
		a->workdir = xstrdup(cfg->workdir);
	}
	strv_free(a->entrypoint);
	a->entrypoint = cfg->n_entrypoint ? strv_dup((const char *const *)cfg->entrypoint) : NULL;
	strv_free(a->cmd);
	a->cmd = cfg->n_cmd ? strv_dup((const char *const *)cfg->cmd) : NULL;
}

/* The image's environment as key/values (pointers into a->env, which must
 * stay unchanged meanwhile); n from *n. */
static hutch_kv_t *acc_env_kv(const image_acc_t *a, size_t *n, char ***scratch)
{
	size_t ne = strv_len(a->env);
	hutch_kv_t *kv = xcalloc(ne + 1, sizeof *kv);
	char **copy = strv_dup((const char *const *)a->env);
	for (size_t i = 0; i < ne; i++) {
		char *eq = strchr(copy[i], '=');
		*eq = '\0';
		kv[i] = (hutch_kv_t){copy[i], eq + 1};
	}
	*n = ne;
	*scratch = copy;
	return kv;
}

/* ---- the cache ---- */

/* A cache hit whose layers are all present and sound: they are pinned and
 * added to the image. false: a miss (entries with missing or corrupted
 * layers are dropped). */
static bool cache_take(bctx_t *c, const char *scope, const char *key, const char *created_by,
		       bool need_config, image_cache_entry_t *e)
{
	if (image_store_cache_get(c->d->store, scope, key, e) < 0)
		return false;
	/* A registry base is its layers and its config (an entry without one
	 * came with an import and cannot stand for the pull). */
	if (need_config && !e->config[0])
		return false;
	for (size_t i = 0; i < e->n_layers; i++) {
		pin(c, e->layers[i]);
		hutch_err_t err = {0};
		if (image_store_layer_check(c->d->store, e->layers[i], false, &err) < 0) {
			log_warn("images: cache entry %s: %s", key, err.message);
			image_store_cache_drop(c->d->store, scope, key);
			return false;
		}
	}
	if (e->config[0]) {
		pin(c, e->config);
		if (!image_store_blob_exists(c->d->store, e->config)) {
			image_store_cache_drop(c->d->store, scope, key);
			return false;
		}
	}
	for (size_t i = 0; i < e->n_layers; i++)
		acc_add_layer(c, e->layers[i], image_store_layer_size(c->d->store, e->layers[i]),
			      created_by, key);
	return true;
}

static void chain_after(bctx_t *c, const char *key, const image_cache_entry_t *e)
{
	char *layers[IMAGE_CACHE_MAX_LAYERS];
	for (size_t i = 0; i < e->n_layers; i++)
		layers[i] = (char *)e->layers[i];
	image_chain(key, layers, e->n_layers, c->chain);
}

/* ---- build sandboxes ---- */

static int sandbox_open(bctx_t *c, bool network, const hutch_mount_t *mounts, size_t n_mounts,
			build_sandbox_t **out, hutch_err_t *err)
{
	const char **layers = xcalloc(c->acc.n + 1, sizeof *layers);
	char **roots = NULL;
	for (size_t i = 0; i < c->acc.n; i++) {
		strv_push(&roots, image_store_layer_root(c->d->store, c->acc.layers[i]));
		layers[i] = roots[i];
	}
	size_t ne;
	char **scratch;
	hutch_kv_t *env = acc_env_kv(&c->acc, &ne, &scratch);
	build_sandbox_opts_t o = {
		.tenant = c->req->tenant,
		.layers = layers,
		.n_layers = c->acc.n,
		.env = env,
		.n_env = ne,
		.network = network,
		.policies = c->req->policies,
		.n_policies = c->req->n_policies,
		.policies_set = c->req->policies_set,
		.cpu_millis = (int64_t)(c->d->cfg->build_cpu * 1000),
		.memory_bytes = c->d->cfg->build_memory,
		.pids_max = c->d->cfg->build_pids,
		.disk_bytes = c->d->cfg->build_disk,
		.mounts = mounts,
		.n_mounts = n_mounts,
	};
	int r = build_sandbox_create(&c->d->sandbox, &o, out, err);
	free(layers);
	strv_free(roots);
	free(env);
	strv_free(scratch);
	return r;
}

/* Runs argv in b; a non-zero exit is an error saying so. */
static int sandbox_cmd(bctx_t *c, build_sandbox_t *b, const char *const *argv, const char *what,
		       const hutch_kv_t *env, size_t n_env, int *code, hutch_err_t *err)
{
	build_exec_t x = {
		.argv = argv,
		.env = env,
		.n_env = n_env,
		.cwd = "/",
		.timeout_ms = c->d->cfg->step_timeout_ms,
		.cancel = c->io->cancel,
		.on_output = on_output,
		.data = c,
	};
	*code = -1;
	int r = build_sandbox_exec(b, &x, code, err);
	if (r < 0)
		return hutch_err_prefix(err, "%s", what);
	if (*code != 0) {
		if (*code > 128 && *code < 128 + 65)
			return hutch_err_set(err, EIO, "%s was killed by signal %d", what, *code - 128);
		return hutch_err_set(err, EIO, "%s exited with code %d", what, *code);
	}
	return 0;
}

/* What the runtime made as mount points while the step ran is not the
 * step's: the /etc files and the context dir are bound read-only, so any
 * entry of theirs in the writable layer came from mounting. */
static void commit_tidy(const char *dir)
{
	static const char *const drop[] = {"etc/hosts", "etc/hostname", "etc/resolv.conf", ".hutch", NULL};
	for (const char *const *d = drop; *d; d++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, *d);
		struct stat st;
		if (lstat(p, &st) == 0)
			remove_tree(p);
	}
}

static bool dir_empty(const char *dir)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			return false;
	return true;
}

/* Stops b, commits its writable layer and makes a layer of it (none if the
 * step wrote nothing). */
static int sandbox_finish(bctx_t *c, build_sandbox_t *b, image_cache_entry_t *e, hutch_err_t *err)
{
	_cleanup_free_ char *dir = image_store_tmp_dir(c->d->store, "commit", err);
	if (!dir)
		return -err->code;
	int r = build_sandbox_commit(b, dir, err);
	if (r < 0) {
		remove_tree(dir);
		return r;
	}
	commit_tidy(dir);
	if (dir_empty(dir)) {
		remove_tree(dir);
		e->n_layers = 0;
		return 0;
	}
	int64_t size;
	r = image_store_layer_from_dir(c->d->store, dir, e->layers[0], &size, err);
	if (r < 0) {
		remove_tree(dir);
		return hutch_err_prefix(err, "make a layer");
	}
	strv_push(&c->pinned, xstrdup(e->layers[0])); /* from_dir pinned it */
	e->n_layers = 1;
	return 0;
}

/* ---- the steps that run commands ---- */

static const char *APT_SCRIPT =
	"set -e\n"
	"export DEBIAN_FRONTEND=noninteractive\n"
	"if ! command -v apt-get >/dev/null; then echo 'apt_install: this image has no apt-get' >&2; exit 127; fi\n"
	"apt-get update\n"
	"apt-get install -y --no-install-recommends \"$@\"\n"
	"apt-get clean\n"
	"rm -rf /var/lib/apt/lists/*\n";

/* With a workdir the command runs there (made if missing, as a WORKDIR
 * would be). */
static void push_cwd_wrapper(char ***argv, const char *workdir)
{
	strv_push(argv, xstrdup("/bin/sh"));
	strv_push(argv, xstrdup("-c"));
	strv_push(argv, xstrdup("mkdir -p \"$0\" && cd \"$0\" && exec \"$@\""));
	strv_push(argv, xstrdup(workdir));
}

static int run_step(bctx_t *c, const Hutch__V1__ImageStep *s, image_cache_entry_t *e, int *code,
		    hutch_err_t *err)
{
	build_sandbox_t *b;
	bool net = image_step_needs_network(s);
	int r = sandbox_open(c, net, NULL, 0, &b, err);
	if (r < 0)
		return r;
	const char *wd = c->acc.workdir && *c->acc.workdir ? c->acc.workdir : NULL;
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS:
		for (size_t i = 0; i < s->run_commands->n_commands && r == 0; i++) {
			const char *cmd = s->run_commands->commands[i];
			char **argv = NULL;
			if (wd) {
				strv_push(&argv, xstrdup("/bin/sh"));
				strv_push(&argv, xstrdup("-c"));
				strv_push(&argv, xstrdup("mkdir -p \"$0\" && cd \"$0\" && eval \"$1\""));
				strv_push(&argv, xstrdup(wd));
				strv_push(&argv, xstrdup(cmd));
			} else {
				strv_push(&argv, xstrdup("/bin/sh"));
				strv_push(&argv, xstrdup("-c"));
				strv_push(&argv, xstrdup(cmd));
			}
			char what[160];
			snprintf(what, sizeof what, "command `%.120s`", cmd);
			r = sandbox_cmd(c, b, (const char *const *)argv, what, NULL, 0, code, err);
			strv_free(argv);
		}
		break;
	case HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL: {
		char **argv = NULL;
		strv_push(&argv, xstrdup("/bin/sh"));
		strv_push(&argv, xstrdup("-c"));
		strv_push(&argv, xstrdup(APT_SCRIPT));
		strv_push(&argv, xstrdup("apt_install"));
		for (size_t i = 0; i < s->apt_install->n_packages; i++)
			strv_push(&argv, xstrdup(s->apt_install->packages[i]));
		r = sandbox_cmd(c, b, (const char *const *)argv, "apt-get install", NULL, 0, code, err);
		strv_free(argv);
		break;
	}
	case HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL: {
		const Hutch__V1__PipInstall *p = s->pip_install;
		char **argv = NULL;
		if (wd)
			push_cwd_wrapper(&argv, wd);
		strv_push(&argv, xstrdup("python3"));
		strv_push(&argv, xstrdup("-m"));
		strv_push(&argv, xstrdup("pip"));
		strv_push(&argv, xstrdup("install"));
		strv_push(&argv, xstrdup("--no-cache-dir"));
		if (!image_step_needs_network(s))
			strv_push(&argv, xstrdup("--no-index"));
		if (p->index_url && *p->index_url)
			strv_push(&argv, xasprintf("--index-url=%s", p->index_url));
		for (size_t i = 0; i < p->n_extra_index_urls; i++)
			strv_push(&argv, xasprintf("--extra-index-url=%s", p->extra_index_urls[i]));
		for (size_t i = 0; i < p->n_find_links; i++)
			strv_push(&argv, xasprintf("--find-links=%s", p->find_links[i]));
		for (size_t i = 0; i < p->n_packages; i++)
			strv_push(&argv, xstrdup(p->packages[i]));
		/* Debian marks its Python externally managed; an image is
		 * exactly where pip should install system-wide. */
		hutch_kv_t env[] = {{"PIP_BREAK_SYSTEM_PACKAGES", "1"},
				    {"PIP_ROOT_USER_ACTION", "ignore"},
				    {"PIP_DISABLE_PIP_VERSION_CHECK", "1"}};
		r = sandbox_cmd(c, b, (const char *const *)argv, "pip install", env, ARRAY_SIZE(env), code,
				err);
		strv_free(argv);
		break;
	}
	default:
		r = hutch_err_set(err, EINVAL, "not a command step");
		break;
	}
	if (r == 0)
		r = sandbox_finish(c, b, e, err);
	build_sandbox_destroy(b);
	return r;
}

/* ---- the steps that add files ---- */

/* Copies an uploaded file (checking its digest on the way) to name in
 * dir_fd. */
static int stage_file(bctx_t *c, int dir_fd, const char *name, const Hutch__V1__LocalFile *f,
		      hutch_err_t *err)
{
	_cleanup_free_ char *src = image_store_file_path(c->d->store, f->digest);
	_cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return hutch_err_sys(err, errno, "file %s was not uploaded", f->digest);
	mode_t mode = f->mode ? f->mode : 0644;
	_cleanup_close_ int out = openat(dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
					 0600);
	if (out < 0)
		return hutch_err_sys(err, errno, "stage %s", name);
	digest_ctx_t *h = digest_new();
	char buf[65536];
	for (;;) {
		ssize_t n = read(in, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n < 0) {
				digest_free(h);
				return hutch_err_sys(err, errno, "read %s", src);
			}
			break;
		}
		digest_update(h, buf, (size_t)n);
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(out, buf + off, (size_t)(n - off));
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				digest_free(h);
				return hutch_err_sys(err, errno, "stage %s", name);
			}
			off += w;
		}
	}
	char got[DIGEST_STR_MAX];
	digest_final(h, got);
	if (strcmp(got, f->digest) != 0) {
		unlink(src);
		return hutch_err_set(err, EIO, "uploaded file %s is corrupted (removed; build again to upload it again)",
				     f->digest);
	}
	if (fchown(out, 0, 0) < 0 || fchmod(out, mode) < 0)
		return hutch_err_sys(err, errno, "stage %s", name);
	return 0;
}

/* Lays out an add_local_dir tree under root_fd; every path is created
 * below it without following symlinks (entries are the client's). */
static int stage_tree(bctx_t *c, int root_fd, const Hutch__V1__AddLocalDir *d, hutch_err_t *err)
{
	/* Parents before children: sorted by path. */
	Hutch__V1__LocalFile **v = xcalloc(d->n_entries + 1, sizeof *v);
	memcpy(v, d->entries, d->n_entries * sizeof *v);
	for (size_t i = 1; i < d->n_entries; i++)
		for (size_t k = i; k > 0 && strcmp(v[k]->path, v[k - 1]->path) < 0; k--) {
			Hutch__V1__LocalFile *t = v[k];
			v[k] = v[k - 1];
			v[k - 1] = t;
		}
	int r = 0;
	for (size_t i = 0; i < d->n_entries && r == 0; i++) {
		const Hutch__V1__LocalFile *f = v[i];
		const char *slash = strrchr(f->path, '/');
		_cleanup_free_ char *parent = slash ? xstrndup(f->path, (size_t)(slash - f->path)) : xstrdup(".");
		const char *name = slash ? slash + 1 : f->path;
		int pfd = layer_open_dir_beneath(root_fd, parent, false, err);
		if (pfd < 0) {
			r = hutch_err_prefix(err, "add_local_dir: entry %s (is its directory listed?)", f->path);
			break;
		}
		const char *type = f->type && *f->type ? f->type : "file";
		if (strcmp(type, "dir") == 0) {
			if (mkdirat(pfd, name, 0755) < 0 && errno != EEXIST) {
				r = hutch_err_sys(err, errno, "stage %s", f->path);
			} else {
				int dfd = openat(pfd, name, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
				if (dfd < 0 || fchown(dfd, 0, 0) < 0 || fchmod(dfd, f->mode ? f->mode : 0755) < 0)
					r = hutch_err_sys(err, errno, "stage %s", f->path);
				if (dfd >= 0)
					close(dfd);
			}
		} else if (strcmp(type, "symlink") == 0) {
			if (symlinkat(f->link_target, pfd, name) < 0 || fchownat(pfd, name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
				r = hutch_err_sys(err, errno, "stage %s", f->path);
		} else {
			r = stage_file(c, pfd, name, f, err);
		}
		close(pfd);
	}
	free(v);
	return r;
}

static int add_step(bctx_t *c, const Hutch__V1__ImageStep *s, image_cache_entry_t *e, int *code,
		    hutch_err_t *err)
{
	_cleanup_free_ char *ctx = image_store_tmp_dir(c->d->store, "ctx", err);
	if (!ctx)
		return -err->code;
	int r;
	char **argv = NULL;
	{
		_cleanup_close_ int ctx_fd = open(ctx, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		if (ctx_fd < 0) {
			r = hutch_err_sys(err, errno, "open %s", ctx);
			goto out;
		}
		if (s->op_case == HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE) {
			r = stage_file(c, ctx_fd, "file", s->add_local_file->file, err);
			strv_push(&argv, xstrdup("/bin/sh"));
			strv_push(&argv, xstrdup("-c"));
			strv_push(&argv, xstrdup("mkdir -p \"$(dirname \"$0\")\" && cp -a " CTX_IN_SANDBOX
						 "/file \"$0\""));
			strv_push(&argv, xstrdup(s->add_local_file->dest));
		} else {
			if (mkdirat(ctx_fd, "tree", 0755) < 0) {
				r = hutch_err_sys(err, errno, "mkdir %s/tree", ctx);
				goto out;
			}
			_cleanup_close_ int tree_fd = openat(ctx_fd, "tree", O_DIRECTORY | O_RDONLY | O_CLOEXEC);
			r = tree_fd < 0 ? hutch_err_sys(err, errno, "open tree") : stage_tree(c, tree_fd, s->add_local_dir, err);
			strv_push(&argv, xstrdup("/bin/sh"));
			strv_push(&argv, xstrdup("-c"));
			strv_push(&argv, xstrdup("mkdir -p \"$0\" && cp -a " CTX_IN_SANDBOX "/tree/. \"$0/\""));
			strv_push(&argv, xstrdup(s->add_local_dir->dest));
		}
	}
	if (r < 0)
		goto out;
	hutch_mount_t m = {ctx, CTX_IN_SANDBOX, HUTCH_MOUNT_READONLY};
	build_sandbox_t *b;
	if ((r = sandbox_open(c, false, &m, 1, &b, err)) < 0)
		goto out;
	r = sandbox_cmd(c, b, (const char *const *)argv, "copying the files in", NULL, 0, code, err);
	if (r == 0)
		r = sandbox_finish(c, b, e, err);
	build_sandbox_destroy(b);
out:
	strv_free(argv);
	remove_tree(ctx);
	return r;
}

/* ---- steps ---- */

static void apply_config_step(bctx_t *c, const Hutch__V1__ImageStep *s)
{
	image_acc_t *a = &c->acc;
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_ENV:
		for (size_t i = 0; i < s->env->n_vars; i++)
			env_set(a, s->env->vars[i]->key, s->env->vars[i]->value ? s->env->vars[i]->value : "");
		break;
	case HUTCH__V1__IMAGE_STEP__OP_WORKDIR:
		free(a->workdir);
		a->workdir = xstrdup(s->workdir);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ENTRYPOINT:
		strv_free(a->entrypoint);
		a->entrypoint = strv_dup((const char *const *)s->entrypoint->argv);
		strv_free(a->cmd); /* as a Dockerfile ENTRYPOINT resets CMD */
		a->cmd = NULL;
		break;
	default:
		break;
	}
}

static int do_step(bctx_t *c, const Hutch__V1__ImageStep *s, hutch_err_t *err)
{
	char key[DIGEST_STR_MAX];
	image_step_key(c->chain, s, key);
	_cleanup_free_ char *desc = image_step_describe(s);
	int64_t t0 = now_ms();
	if (!image_step_has_layer(s)) {
		apply_config_step(c, s);
		image_chain(key, NULL, 0, c->chain);
		emit_step(c, &(step_info_t){.state = c->built_any ? HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT
								: HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED,
					   .description = desc, .key = key});
		return 0;
	}
	const char *scope = c->req->tenant;
	bool waited;
	/* An identical step being built by another build: wait for it, then
	 * take its result from the cache. */
	if (image_store_key_busy(c->d->store, key))
		emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_WAITING,
					   .description = desc, .key = key});
	if (image_store_key_lock(c->d->store, key, c->io->cancel, &waited) < 0)
		return hutch_err_set(err, ECANCELED, "cancelled");
	image_cache_entry_t e;
	int r = 0;
	if (!c->req->no_cache && cache_take(c, scope, key, desc, false, &e)) {
		image_store_key_unlock(c->d->store, key);
		chain_after(c, key, &e);
		emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED,
					   .description = desc, .key = key,
					   .layer = e.n_layers ? e.layers[0] : NULL,
					   .size = e.n_layers ? image_store_layer_size(c->d->store, e.layers[0]) : 0,
					   .duration_ms = now_ms() - t0});
		return 0;
	}
	emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_RUNNING,
				   .description = desc, .key = key});
	sb_reset(&c->tail);
	memset(&e, 0, sizeof e);
	int code = 0;
	if (image_step_runs(s))
		r = run_step(c, s, &e, &code, err);
	else
		r = add_step(c, s, &e, &code, err);
	if (r == 0 && is_cancelled(c))
		r = hutch_err_set(err, ECANCELED, "cancelled");
	if (r == 0)
		r = image_store_cache_put(c->d->store, scope, key, &e, err);
	image_store_key_unlock(c->d->store, key);
	if (r < 0) {
		emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_FAILED,
					   .description = desc, .key = key, .duration_ms = now_ms() - t0,
					   .exit_code = code, .error = err->message, .with_tail = true});
		return r;
	}
	c->built_any = true;
	int64_t size = e.n_layers ? image_store_layer_size(c->d->store, e.layers[0]) : 0;
	if (e.n_layers)
		acc_add_layer(c, e.layers[0], size, desc, key);
	chain_after(c, key, &e);
	emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT,
				   .description = desc, .key = key, .layer = e.n_layers ? e.layers[0] : NULL,
				   .size = size, .duration_ms = now_ms() - t0});
	return 0;
}

/* ---- bases ---- */

static int busybox_layer(bctx_t *c, const char *key, const char *desc, image_cache_entry_t *e,
			 hutch_err_t *err)
{
	(void)desc;
	_cleanup_free_ char *root = NULL;
	int r = image_builtin_layer(c->d->state_dir, "busybox", &root, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *copy = image_store_tmp_dir(c->d->store, "busybox", err);
	if (!copy)
		return -err->code;
	_cleanup_free_ char *src = xasprintf("%s/.", root);
	const char *argv[] = {"cp", "-a", "--", src, copy, NULL};
	if ((r = proc_run_argv(argv, 120000, NULL, 0, err)) < 0) {
		remove_tree(copy);
		return r;
	}
	int64_t size;
	if ((r = image_store_layer_from_dir(c->d->store, copy, e->layers[0], &size, err)) < 0) {
		remove_tree(copy);
		return r;
	}
	strv_push(&c->pinned, xstrdup(e->layers[0]));
	e->n_layers = 1;
	(void)key;
	return 0;
}

static int debian_layer(bctx_t *c, const char *suite, image_cache_entry_t *e, hutch_err_t *err)
{
	debian_ctx_t dc = {
		.store = c->d->store,
		.sandbox = &c->d->sandbox,
		.cfg = c->d->cfg,
		.tenant = c->req->tenant,
		.on_output = on_output,
		.data = c,
		.cancel = c->io->cancel,
	};
	_cleanup_free_ char *root = NULL;
	int r = debian_make_root(&dc, suite, &root, err);
	if (r < 0)
		return r;
	int64_t size, t0 = now_ms();
	if ((r = image_store_layer_from_dir(c->d->store, root, e->layers[0], &size, err)) < 0) {
		remove_tree(root);
		return r;
	}
	char line[160];
	int n = snprintf(line, sizeof line, "layer %.19s (%lld bytes) made in %.1fs\n", e->layers[0],
			 (long long)size, (double)(now_ms() - t0) / 1000);
	on_output(c, 1, line, (size_t)n);
	strv_push(&c->pinned, xstrdup(e->layers[0]));
	e->n_layers = 1;
	return 0;
}

/* The base from an image in the store (by manifest digest). */
static int image_base(bctx_t *c, const char *manifest, const char *desc, hutch_err_t *err)
{
	char *json;
	size_t len;
	int r = image_store_blob_read(c->d->store, manifest, OCI_JSON_MAX, &json, &len, err);
	if (r < 0)
		return r;
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	r = oci_parse_manifest_or_index(json, len, &m, &idx, &is_index, err);
	free(json);
	if (r < 0)
		return hutch_err_prefix(err, "image %s", manifest);
	if (is_index) {
		oci_index_free(&idx);
		return hutch_err_set(err, EINVAL, "image %s is an index, not a manifest", manifest);
	}
	oci_config_t cfg = {0};
	if ((r = image_store_blob_read(c->d->store, m.config.digest, OCI_JSON_MAX, &json, &len, err)) == 0) {
		r = oci_config_parse(json, len, &cfg, err);
		free(json);
	}
	for (size_t i = 0; i < m.n_layers && r == 0; i++) {
		pin(c, m.layers[i].digest);
		if ((r = image_store_layer_check(c->d->store, m.layers[i].digest, false, err)) < 0)
			break;
		acc_add_layer(c, m.layers[i].digest, image_store_layer_size(c->d->store, m.layers[i].digest),
			      desc, m.layers[i].cache_key ? m.layers[i].cache_key : "");
	}
	if (r == 0)
		acc_config_from(&c->acc, cfg.config);
	oci_config_free(&cfg);
	oci_manifest_free(&m);
	return r;
}

static int do_base(bctx_t *c, hutch_err_t *err)
{
	const Hutch__V1__ImageBase *b = c->req->spec->source;
	_cleanup_free_ char *desc = image_base_describe(b);
	_cleanup_free_ char *resolved = NULL;
	const char *suite = NULL, *python = NULL;
	registry_ref_t ref = {0};
	int r = 0;
	int64_t t0 = now_ms();
	env_set(&c->acc, "PATH", DEFAULT_PATH);
	switch (b->kind_case) {
	case HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX:
		resolved = xstrdup("{\"base\":\"busybox\",\"v\":1}");
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_DEBIAN_SLIM:
		if ((r = debian_pick(c->d->cfg, b->debian_slim->python_version, &suite, &python, err)) < 0)
			goto fail;
		resolved = debian_resolved(c->d->cfg, suite, python);
		env_set(&c->acc, "LANG", "C.UTF-8");
		free(desc);
		desc = xasprintf("base: debian_slim (Debian %s, Python %s)", suite, python);
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_REGISTRY:
		if ((r = registry_resolve(c->d->cfg, b->registry, &ref, err)) < 0)
			goto fail;
		resolved = xasprintf("{\"base\":\"registry\",\"ref\":\"%s\",\"manifest\":\"%s\"}", ref.canonical,
				     ref.manifest_digest);
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_IMAGE: {
		char key[DIGEST_STR_MAX];
		resolved = xasprintf("{\"base\":\"image\",\"manifest\":\"%s\"}", c->req->base_manifest);
		image_base_key(resolved, key);
		if ((r = image_base(c, c->req->base_manifest, desc, err)) < 0)
			goto fail;
		image_chain(key, c->acc.layers, c->acc.n, c->chain);
		emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED,
					   .description = desc, .key = key, .duration_ms = now_ms() - t0});
		return 0;
	}
	default:
		r = hutch_err_set(err, EINVAL, "no base");
		goto fail;
	}

	char key[DIGEST_STR_MAX];
	image_base_key(resolved, key);
	/* Bases hutchd builds from public sources are shared by every tenant;
	 * registry pulls (maybe private, maybe with credentials) are not. A
	 * tenant's own scope is asked first (an imported base lands there). */
	const char *scope = b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_REGISTRY ? c->req->tenant : NULL;
	image_cache_entry_t e;
	bool waited;
	if (image_store_key_busy(c->d->store, key))
		emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_WAITING,
					   .description = desc, .key = key});
	if (image_store_key_lock(c->d->store, key, c->io->cancel, &waited) < 0) {
		r = hutch_err_set(err, ECANCELED, "cancelled");
		goto fail;
	}
	bool need_config = b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_REGISTRY;
	bool hit = cache_take(c, c->req->tenant, key, desc, need_config, &e) ||
		   (scope == NULL && cache_take(c, NULL, key, desc, need_config, &e));
	if (!hit) {
		emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_RUNNING,
					   .description = desc, .key = key});
		memset(&e, 0, sizeof e);
		if (b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX)
			r = busybox_layer(c, key, desc, &e, err);
		else if (b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_DEBIAN_SLIM)
			r = debian_layer(c, suite, &e, err);
		else
			r = registry_pull(c->d->cfg, c->d->store, b->registry, &ref, &e, &c->pinned, on_output, c,
					  c->io->cancel, err);
		if (r == 0 && is_cancelled(c))
			r = hutch_err_set(err, ECANCELED, "cancelled");
		if (r == 0)
			r = image_store_cache_put(c->d->store, scope, key, &e, err);
		image_store_key_unlock(c->d->store, key);
		if (r < 0)
			goto fail;
		c->built_any = true;
		for (size_t i = 0; i < e.n_layers; i++)
			acc_add_layer(c, e.layers[i], image_store_layer_size(c->d->store, e.layers[i]), desc, key);
	} else {
		image_store_key_unlock(c->d->store, key);
	}
	if (e.config[0]) {
		char *json;
		size_t len;
		oci_config_t cfg;
		if ((r = image_store_blob_read(c->d->store, e.config, OCI_JSON_MAX, &json, &len, err)) < 0)
			goto fail;
		r = oci_config_parse(json, len, &cfg, err);
		free(json);
		if (r < 0)
			goto fail;
		acc_config_from(&c->acc, cfg.config);
		oci_config_free(&cfg);
	}
	chain_after(c, key, &e);
	registry_ref_free(&ref);
	int64_t size = 0;
	for (size_t i = 0; i < e.n_layers; i++)
		size += image_store_layer_size(c->d->store, e.layers[i]);
	emit_step(c, &(step_info_t){.state = hit ? HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED
						: HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT,
				   .description = desc, .key = key, .layer = e.n_layers ? e.layers[e.n_layers - 1] : NULL,
				   .size = size, .duration_ms = now_ms() - t0});
	return 0;
fail:
	registry_ref_free(&ref);
	emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_FAILED,
				   .description = desc, .duration_ms = now_ms() - t0, .error = err->message,
				   .with_tail = true});
	return r;
}

/* ---- files from the client ---- */

/* The files the steps from `from` on add and the store lacks. */
static char **missing_files(bctx_t *c, size_t from)
{
	char **need = NULL;
	const Hutch__V1__ImageSpec *spec = c->req->spec;
	for (size_t i = from; i < spec->n_steps; i++) {
		const Hutch__V1__ImageStep *s = spec->steps[i];
		const Hutch__V1__LocalFile *const *files = NULL;
		size_t n = 0;
		const Hutch__V1__LocalFile *one;
		if (s->op_case == HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE) {
			one = s->add_local_file->file;
			files = &one;
			n = 1;
		} else if (s->op_case == HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR) {
			files = (const Hutch__V1__LocalFile *const *)s->add_local_dir->entries;
			n = s->add_local_dir->n_entries;
		}
		for (size_t k = 0; k < n; k++) {
			const char *type = files[k]->type && *files[k]->type ? files[k]->type : "file";
			if (strcmp(type, "file") != 0)
				continue;
			if (image_store_file_exists(c->d->store, files[k]->digest)) {
				/* Kept from collection while this build may use it. */
				_cleanup_free_ char *p = image_store_file_path(c->d->store, files[k]->digest);
				utimensat(AT_FDCWD, p, NULL, 0);
				continue;
			}
			bool dup = false;
			for (char **d = need; d && *d && !dup; d++)
				dup = strcmp(*d, files[k]->digest) == 0;
			if (!dup)
				strv_push(&need, xstrdup(files[k]->digest));
		}
	}
	return need;
}

/* The first step (index into spec->steps) the cache cannot answer, found
 * by walking the keys without building anything. Base misses: 0. */
static size_t first_miss(bctx_t *c)
{
	const Hutch__V1__ImageSpec *spec = c->req->spec;
	if (c->req->no_cache)
		return 0;
	char chain[DIGEST_STR_MAX];
	snprintf(chain, sizeof chain, "%s", c->chain);
	for (size_t i = 0; i < spec->n_steps; i++) {
		char key[DIGEST_STR_MAX];
		image_step_key(chain, spec->steps[i], key);
		image_cache_entry_t e = {0};
		if (image_step_has_layer(spec->steps[i]) &&
		    image_store_cache_get(c->d->store, c->req->tenant, key, &e) < 0)
			return i;
		char *layers[IMAGE_CACHE_MAX_LAYERS];
		for (size_t k = 0; k < e.n_layers; k++)
			layers[k] = e.layers[k];
		image_chain(key, layers, e.n_layers, chain);
	}
	return spec->n_steps;
}

/* Takes the client's uploads into files/, checking each digest. */
static int receive_files(bctx_t *c, char **need, hutch_err_t *err)
{
	Hutch__V1__NeedFiles nf = HUTCH__V1__NEED_FILES__INIT;
	nf.digests = need;
	nf.n_digests = strv_len(need);
	Hutch__V1__BuildImageEvent ev = HUTCH__V1__BUILD_IMAGE_EVENT__INIT;
	ev.event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_NEED_FILES;
	ev.need_files = &nf;
	c->io->emit(c->io->data, &ev);

	int r = 0;
	int fd = -1;
	char cur[DIGEST_STR_MAX] = "";
	_cleanup_free_ char *tmp = NULL;
	digest_ctx_t *h = NULL;
	for (;;) {
		build_chunk_t ch;
		int k = c->io->file_next(c->io->data, &ch);
		if (k < 0) {
			r = hutch_err_set(err, ECANCELED, "cancelled while receiving files");
			break;
		}
		if (k == 0)
			break;
		if (r < 0) {
			free(ch.data); /* draining after an error */
			continue;
		}
		bool wanted = false;
		for (char **d = need; d && *d; d++)
			wanted |= strcmp(*d, ch.digest) == 0;
		if (!wanted) {
			r = hutch_err_set(err, EINVAL, "file %.80s was not asked for", ch.digest);
		} else if (fd < 0) {
			snprintf(cur, sizeof cur, "%s", ch.digest);
			free(tmp);
			tmp = image_store_tmp_path(c->d->store, "upload");
			fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0)
				r = hutch_err_sys(err, errno, "create %s", tmp);
			h = digest_new();
		} else if (strcmp(cur, ch.digest) != 0) {
			r = hutch_err_set(err, EINVAL, "chunks of %s came before %s was complete", ch.digest, cur);
		}
		if (r == 0) {
			digest_update(h, ch.data, ch.len);
			for (size_t off = 0; off < ch.len && r == 0;) {
				ssize_t w = write(fd, (char *)ch.data + off, ch.len - off);
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					r = hutch_err_sys(err, errno, "write %s", tmp);
				else
					off += (size_t)w;
			}
		}
		if (r == 0 && ch.last) {
			close(fd);
			fd = -1;
			char got[DIGEST_STR_MAX];
			digest_final(h, got);
			h = NULL;
			_cleanup_free_ char *dst = image_store_file_path(c->d->store, cur);
			if (strcmp(got, cur) != 0)
				r = hutch_err_set(err, EINVAL, "the content sent for %s hashes to %s", cur, got);
			else if (rename(tmp, dst) < 0)
				r = hutch_err_sys(err, errno, "rename %s", dst);
		}
		free(ch.data);
	}
	if (fd >= 0)
		close(fd);
	if (h)
		digest_free(h);
	if (tmp)
		unlink(tmp);
	for (char **d = need; r == 0 && d && *d; d++)
		if (!image_store_file_exists(c->d->store, *d))
			r = hutch_err_set(err, EINVAL, "file %s was asked for and not sent", *d);
	return r;
}

/* ---- assembling the image ---- */

static Hutch__V1__ImageSpec *spec_for_record(const Hutch__V1__ImageSpec *spec)
{
	size_t n = protobuf_c_message_get_packed_size(&spec->base);
	uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(&spec->base, buf);
	Hutch__V1__ImageSpec *copy = hutch__v1__image_spec__unpack(NULL, n, buf);
	free(buf);
	Hutch__V1__ImageBase *b = copy ? copy->source : NULL;
	if (b && b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_REGISTRY) {
		/* Credentials are used, never kept. */
		if (b->registry->password && b->registry->password != protobuf_c_empty_string) {
			memset(b->registry->password, 0, strlen(b->registry->password));
			free(b->registry->password);
		}
		b->registry->password = (char *)protobuf_c_empty_string;
	}
	return copy;
}

static int assemble(bctx_t *c, Hutch__V1__Image **out, hutch_err_t *err)
{
	image_acc_t *a = &c->acc;
	Hutch__V1__ImageConfig cfg = HUTCH__V1__IMAGE_CONFIG__INIT;
	size_t ne;
	char **scratch;
	hutch_kv_t *kv = acc_env_kv(a, &ne, &scratch);
	Hutch__V1__KeyValue *kvs = xcalloc(ne + 1, sizeof *kvs);
	Hutch__V1__KeyValue **kvp = xcalloc(ne + 1, sizeof *kvp);
	for (size_t i = 0; i < ne; i++) {
		hutch__v1__key_value__init(&kvs[i]);
		kvs[i].key = (char *)kv[i].key;
		kvs[i].value = (char *)kv[i].value;
		kvp[i] = &kvs[i];
	}
	cfg.env = kvp;
	cfg.n_env = ne;
	cfg.workdir = a->workdir ? a->workdir : (char *)"";
	cfg.entrypoint = a->entrypoint;
	cfg.n_entrypoint = strv_len(a->entrypoint);
	cfg.cmd = a->cmd;
	cfg.n_cmd = strv_len(a->cmd);
	_cleanup_free_ char *config_json = oci_config_write(&cfg, a->layers, a->n, a->created_by);
	char config_digest[DIGEST_STR_MAX], manifest_digest[DIGEST_STR_MAX];
	/* Pinned before they exist, so a collection running meanwhile never
	 * takes them. */
	digest_buf(config_json, strlen(config_json), config_digest);
	pin(c, config_digest);
	int r = image_store_blob_put(c->d->store, config_json, strlen(config_json), config_digest, err);
	_cleanup_free_ char *manifest = NULL;
	if (r == 0) {
		manifest = oci_manifest_write(config_digest, (int64_t)strlen(config_json), a->layers, a->sizes,
					      a->cache_keys, a->n);
		digest_buf(manifest, strlen(manifest), manifest_digest);
		pin(c, manifest_digest);
		r = image_store_blob_put(c->d->store, manifest, strlen(manifest), manifest_digest, err);
	}
	if (r == 0) {
		Hutch__V1__Image img = HUTCH__V1__IMAGE__INIT;
		img.name = (char *)c->req->name;
		img.tenant = (char *)c->req->tenant;
		img.digest = manifest_digest;
		img.config_digest = config_digest;
		img.config = &cfg;
		img.spec = spec_for_record(c->req->spec);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		img.created_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		Hutch__V1__ImageLayer *layers = xcalloc(a->n + 1, sizeof *layers);
		Hutch__V1__ImageLayer **lp = xcalloc(a->n + 1, sizeof *lp);
		for (size_t i = 0; i < a->n; i++) {
			hutch__v1__image_layer__init(&layers[i]);
			layers[i].digest = a->layers[i];
			layers[i].size = a->sizes[i];
			layers[i].created_by = a->created_by[i];
			layers[i].cache_key = a->cache_keys[i];
			lp[i] = &layers[i];
			img.size_bytes += a->sizes[i] > 0 ? a->sizes[i] : 0;
		}
		img.layers = lp;
		img.n_layers = a->n;
		size_t n = protobuf_c_message_get_packed_size(&img.base);
		uint8_t *buf = xmalloc(n ? n : 1);
		protobuf_c_message_pack(&img.base, buf);
		*out = hutch__v1__image__unpack(NULL, n, buf);
		free(buf);
		if (img.spec)
			protobuf_c_message_free_unpacked(&img.spec->base, NULL);
		free(layers);
		free(lp);
		if (!*out)
			r = hutch_err_set(err, ENOMEM, "out of memory");
	}
	free(kvs);
	free(kvp);
	free(kv);
	strv_free(scratch);
	return r;
}

char **image_pins(const Hutch__V1__Image *img, const char *config_digest)
{
	char **v = NULL;
	for (size_t i = 0; i < img->n_layers; i++) {
		bool dup = false;
		for (size_t k = 0; k < i && !dup; k++)
			dup = strcmp(img->layers[k]->digest, img->layers[i]->digest) == 0;
		if (!dup)
			strv_push(&v, xstrdup(img->layers[i]->digest));
	}
	if (config_digest && *config_digest)
		strv_push(&v, xstrdup(config_digest));
	strv_push(&v, xstrdup(img->digest));
	return v;
}

/* ---- the build ---- */

int builder_run(const builder_deps_t *deps, const build_req_t *req, const build_io_t *io,
		Hutch__V1__Image **out, hutch_err_t *err)
{
	bctx_t c = {.d = deps, .req = req, .io = io};
	c.total = (uint32_t)req->spec->n_steps + 1;
	int r;
	/* Step 1, the base; then what the client must upload (only files
	 * of steps the cache cannot answer, and only those not already
	 * here); then the steps. */
	c.index = 1;
	r = do_base(&c, err);
	if (r == 0) {
		char **need = missing_files(&c, first_miss(&c));
		r = receive_files(&c, need, err);
		strv_free(need);
	}
	for (size_t i = 0; r == 0 && i < req->spec->n_steps; i++) {
		c.index = (uint32_t)i + 2;
		if (is_cancelled(&c)) {
			r = hutch_err_set(err, ECANCELED, "cancelled");
			break;
		}
		r = do_step(&c, req->spec->steps[i], err);
		if (r < 0)
			hutch_err_prefix(err, "step %u/%u (%s)", c.index, c.total,
					 image_step_op_name(req->spec->steps[i]));
	}
	if (r == 0)
		r = assemble(&c, out, err);
	/* What stays pinned is what the image holds; the caller unpins it
	 * once the image is recorded. Everything else is let go now. */
	if (r == 0) {
		char **keep = image_pins(*out, (*out)->config_digest);
		for (char **p = c.pinned; p && *p; p++) {
			bool k = false;
			for (char **q = keep; q && *q && !k; q++)
				if (strcmp(*p, *q) == 0) {
					k = true;
					**q = '\0'; /* one pin per digest stays */
				}
			if (!k)
				image_store_unpin(deps->store, *p);
		}
		strv_free(keep);
	} else {
		for (char **p = c.pinned; p && *p; p++)
			image_store_unpin(deps->store, *p);
	}
	strv_free(c.pinned);
	sb_free(&c.tail);
	acc_free(&c.acc);
	return r;
}

static void null_emit(void *data, const Hutch__V1__BuildImageEvent *ev)
{
	(void)data;
	(void)ev;
}

static int null_files(void *data, build_chunk_t *out)
{
	(void)data;
	(void)out;
	return 0;
}

int builder_builtin(const builder_deps_t *deps, Hutch__V1__Image **out, hutch_err_t *err)
{
	Hutch__V1__BusyboxBase bb = HUTCH__V1__BUSYBOX_BASE__INIT;
	Hutch__V1__ImageBase base = HUTCH__V1__IMAGE_BASE__INIT;
	base.kind_case = HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX;
	base.busybox = &bb;
	Hutch__V1__ImageSpec spec = HUTCH__V1__IMAGE_SPEC__INIT;
	spec.source = &base;
	build_req_t req = {.tenant = NULL, .spec = &spec, .name = "busybox"};
	build_io_t io = {.emit = null_emit, .file_next = null_files};
	return builder_run(deps, &req, &io, out, err);
}
