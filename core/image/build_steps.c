/* The build steps that need a build sandbox: commands (run_commands,
 * apt_install, pip_install) and added files (add_local_file,
 * add_local_dir), each in a sandbox of its own on the image so far, whose
 * writable layer becomes the step's layer. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "builder_priv.h"
#include "cleanup.h"
#include "image_spec.h"
#include "layer_tar.h"
#include "log.h"

/* Where an add step's files appear inside its build sandbox. */
#define CTX_IN_SANDBOX "/.hutch/ctx"

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
	hutch_kv_t *env = builder_acc_env_kv(&c->acc, &ne, &scratch);
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
		.on_output = builder_on_output,
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
			builder_remove_tree(p);
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
		builder_remove_tree(dir);
		return r;
	}
	commit_tidy(dir);
	if (dir_empty(dir)) {
		builder_remove_tree(dir);
		e->n_layers = 0;
		return 0;
	}
	int64_t size;
	r = image_store_layer_from_dir(c->d->store, dir, e->layers[0], &size, err);
	if (r < 0) {
		builder_remove_tree(dir);
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

/* pip ignores a plain-HTTP index unless its host is "trusted": the spec
 * naming an http:// URL is the user trusting it (the build's network
 * policy still decides whether it can be reached). */
static void push_trusted_host(char ***argv, const char *url)
{
	if (strncmp(url, "http://", 7) != 0)
		return;
	const char *h = url + 7;
	const char *end = h + strcspn(h, "/?#");
	const char *at = memchr(h, '@', (size_t)(end - h));
	if (at)
		h = at + 1;
	if (end > h)
		strv_push(argv, xasprintf("--trusted-host=%.*s", (int)(end - h), h));
}

/* With a workdir the command runs there (made if missing, as a WORKDIR
 * would be). */
static void push_cwd_wrapper(char ***argv, const char *workdir)
{
	strv_push(argv, xstrdup("/bin/sh"));
	strv_push(argv, xstrdup("-c"));
	strv_push(argv, xstrdup("mkdir -p \"$0\" && cd \"$0\" && exec \"$@\""));
	strv_push(argv, xstrdup(workdir));
}

int build_step_run(bctx_t *c, const Hutch__V1__ImageStep *s, image_cache_entry_t *e, int *code,
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
		if (p->index_url && *p->index_url) {
			strv_push(&argv, xasprintf("--index-url=%s", p->index_url));
			push_trusted_host(&argv, p->index_url);
		}
		for (size_t i = 0; i < p->n_extra_index_urls; i++) {
			strv_push(&argv, xasprintf("--extra-index-url=%s", p->extra_index_urls[i]));
			push_trusted_host(&argv, p->extra_index_urls[i]);
		}
		for (size_t i = 0; i < p->n_find_links; i++) {
			strv_push(&argv, xasprintf("--find-links=%s", p->find_links[i]));
			push_trusted_host(&argv, p->find_links[i]);
		}
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

int build_step_add(bctx_t *c, const Hutch__V1__ImageStep *s, image_cache_entry_t *e, int *code,
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
	builder_remove_tree(ctx);
	return r;
}

