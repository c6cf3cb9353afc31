#include "image_toml.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "image_spec.h"
#include "strbuf.h"
#include "toml.h"

/* The spec is built in memory the parser owns (an arena), then packed and
 * unpacked into one protobuf-c allocation the caller frees in one call. */
typedef struct arena {
	void **ptrs;
	size_t n, cap;
} arena_t;

static void *arena_keep(arena_t *a, void *p)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->ptrs = xrealloc(a->ptrs, a->cap * sizeof *a->ptrs);
	}
	a->ptrs[a->n++] = p;
	return p;
}

static void *arena_zalloc(arena_t *a, size_t n)
{
	return arena_keep(a, xcalloc(1, n ? n : 1));
}

static char *arena_strdup(arena_t *a, const char *s)
{
	return arena_keep(a, xstrdup(s));
}

static void arena_free(arena_t *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->ptrs[i]);
	free(a->ptrs);
	memset(a, 0, sizeof *a);
}

/* Grows a pointer array kept in the arena. */
static void arena_push(arena_t *a, void ***v, size_t *n, void *item)
{
	void **nv = arena_zalloc(a, (*n + 1) * sizeof *nv);
	if (*n)
		memcpy(nv, *v, *n * sizeof *nv);
	nv[(*n)++] = item;
	*v = nv;
}

typedef struct loader {
	arena_t arena;
	const char *file;
	const char *base_dir;
	image_toml_t *out;
	hutch_err_t *err;
} loader_t;

static int fail_at(loader_t *l, const toml_value_t *v, const char *fmt, ...) HUTCH_PRINTF(3, 4);

static int fail_at(loader_t *l, const toml_value_t *v, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (v)
		return hutch_err_set(l->err, EINVAL, "%s:%d:%d: %s", l->file, v->line, v->col, msg);
	return hutch_err_set(l->err, EINVAL, "%s: %s", l->file, msg);
}

static char *abs_local(loader_t *l, const char *p)
{
	if (p[0] == '/')
		return xstrdup(p);
	return xasprintf("%s/%s", l->base_dir, p);
}

/* ---- values ---- */

static int get_str(loader_t *l, const toml_value_t *v, const char *what, const char **out)
{
	if (!v || v->type != TOML_STRING)
		return fail_at(l, v, "%s must be a string", what);
	if (strlen(v->u.str.ptr) != v->u.str.len)
		return fail_at(l, v, "%s contains a NUL character", what);
	*out = v->u.str.ptr;
	return 0;
}

/* A string array (a single string is taken as one element). */
static int get_strv(loader_t *l, const toml_value_t *v, const char *what, char ***out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (v && v->type == TOML_STRING) {
		const char *s;
		int r = get_str(l, v, what, &s);
		if (r < 0)
			return r;
		arena_push(&l->arena, (void ***)out, n, arena_strdup(&l->arena, s));
		return 0;
	}
	if (!v || v->type != TOML_ARRAY)
		return fail_at(l, v, "%s must be an array of strings", what);
	for (size_t i = 0; i < v->u.array.len; i++) {
		const char *s;
		int r = get_str(l, v->u.array.items[i], what, &s);
		if (r < 0)
			return r;
		arena_push(&l->arena, (void ***)out, n, arena_strdup(&l->arena, s));
	}
	return 0;
}

/* Refuses keys of table that are not in allowed. */
static int only_keys(loader_t *l, const toml_value_t *t, const char *what,
		     const char *const *allowed)
{
	for (size_t i = 0; i < t->u.table.len; i++) {
		const toml_kv_t *kv = &t->u.table.items[i];
		bool ok = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(kv->key, *a) == 0)
				ok = true;
		if (!ok) {
			_cleanup_sb_ strbuf_t known = STRBUF_INIT;
			for (const char *const *a = allowed; *a; a++)
				sb_printf(&known, "%s%s", known.len ? ", " : "", *a);
			return hutch_err_set(l->err, EINVAL, "%s:%d:%d: %s: unknown key `%s` (known: %s)",
					     l->file, kv->line, kv->col, what, kv->key, known.buf);
		}
	}
	return 0;
}

/* "0755", "755" or an integer. */
static int get_mode(loader_t *l, const toml_value_t *v, uint32_t *mode)
{
	if (v->type == TOML_INTEGER) {
		if (v->u.integer < 0 || v->u.integer > 07777)
			return fail_at(l, v, "mode %lld is out of range (write it as a string, \"0755\")",
				       (long long)v->u.integer);
		*mode = (uint32_t)v->u.integer;
		return 0;
	}
	const char *s;
	int r = get_str(l, v, "mode", &s);
	if (r < 0)
		return r;
	char *end;
	long m = strtol(s, &end, 8);
	if (!*s || *end || m < 0 || m > 07777)
		return fail_at(l, v, "mode `%s`: an octal mode like \"0755\" is needed", s);
	*mode = (uint32_t)m;
	return 0;
}

/* ---- local files ---- */

static void remember_file(loader_t *l, const char *digest, const char *path, int64_t size)
{
	image_toml_t *t = l->out;
	for (size_t i = 0; i < t->n_files; i++)
		if (strcmp(t->files[i].digest, digest) == 0)
			return;
	t->files = xrealloc(t->files, (t->n_files + 1) * sizeof *t->files);
	image_local_file_t *f = &t->files[t->n_files++];
	snprintf(f->digest, sizeof f->digest, "%s", digest);
	f->path = xstrdup(path);
	f->size = size;
}

static Hutch__V1__LocalFile *local_regular(loader_t *l, const char *path, const struct stat *st,
					   const char *rel)
{
	Hutch__V1__LocalFile *f = arena_zalloc(&l->arena, sizeof *f);
	hutch__v1__local_file__init(f);
	char digest[DIGEST_STR_MAX];
	int64_t size;
	if (digest_file(path, digest, &size, l->err) < 0)
		return NULL;
	f->digest = arena_strdup(&l->arena, digest);
	f->size = size;
	f->mode = st->st_mode & 07777;
	f->type = arena_strdup(&l->arena, "file");
	if (rel)
		f->path = arena_strdup(&l->arena, rel);
	remember_file(l, digest, path, size);
	return f;
}

typedef struct walk {
	loader_t *l;
	Hutch__V1__AddLocalDir *d;
	char **ignore;   /* glob patterns of relative paths or names left out */
	size_t n_ignore;
} walk_t;

/* As the Python SDK's add_local_dir(ignore=...): a pattern matches the
 * path relative to src, or the entry's own name. */
static bool ignored(const walk_t *w, const char *rel, const char *name)
{
	for (size_t i = 0; i < w->n_ignore; i++)
		if (fnmatch(w->ignore[i], rel, 0) == 0 || fnmatch(w->ignore[i], name, 0) == 0)
			return true;
	return false;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int walk_dir(walk_t *w, const char *dir, const char *rel)
{
	loader_t *l = w->l;
	_cleanup_closedir_ DIR *dp = opendir(dir);
	if (!dp)
		return hutch_err_sys(l->err, errno, "%s: open %s", l->file, dir);
	/* Sorted, so that the spec (and the upload order) is stable. */
	char **names = NULL;
	struct dirent *de;
	while ((de = readdir(dp)))
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			strv_push(&names, xstrdup(de->d_name));
	size_t n = strv_len(names);
	if (n > 1)
		qsort(names, n, sizeof *names, cmp_names);
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		_cleanup_free_ char *path = xasprintf("%s/%s", dir, names[i]);
		_cleanup_free_ char *child = rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
		if (ignored(w, child, names[i]))
			continue;
		struct stat st;
		if (lstat(path, &st) < 0) {
			r = hutch_err_sys(l->err, errno, "%s: stat %s", l->file, path);
			break;
		}
		if (w->d->n_entries >= IMAGE_MAX_DIR_ENTRIES) {
			r = hutch_err_set(l->err, E2BIG, "%s: %s has more than %d entries", l->file, dir,
					  IMAGE_MAX_DIR_ENTRIES);
			break;
		}
		Hutch__V1__LocalFile *f;
		if (S_ISREG(st.st_mode)) {
			f = local_regular(l, path, &st, child);
			if (!f) {
				r = -l->err->code;
				break;
			}
		} else if (S_ISDIR(st.st_mode)) {
			f = arena_zalloc(&l->arena, sizeof *f);
			hutch__v1__local_file__init(f);
			f->path = arena_strdup(&l->arena, child);
			f->type = arena_strdup(&l->arena, "dir");
			f->mode = st.st_mode & 07777;
		} else if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t tl = readlink(path, target, sizeof target - 1);
			if (tl < 0) {
				r = hutch_err_sys(l->err, errno, "%s: readlink %s", l->file, path);
				break;
			}
			target[tl] = '\0';
			f = arena_zalloc(&l->arena, sizeof *f);
			hutch__v1__local_file__init(f);
			f->path = arena_strdup(&l->arena, child);
			f->type = arena_strdup(&l->arena, "symlink");
			f->link_target = arena_strdup(&l->arena, target);
			f->mode = 0777;
		} else {
			r = hutch_err_set(l->err, EINVAL, "%s: %s is not a file, directory or symlink",
					  l->file, path);
			break;
		}
		arena_push(&l->arena, (void ***)&w->d->entries, &w->d->n_entries, f);
		if (S_ISDIR(st.st_mode))
			r = walk_dir(w, path, child);
	}
	strv_free(names);
	return r;
}

/* ---- steps ---- */

static int step_add_file(loader_t *l, const toml_value_t *v, Hutch__V1__ImageStep *s)
{
	static const char *const keys[] = {"src", "dest", "mode", NULL};
	if (v->type != TOML_TABLE)
		return fail_at(l, v, "add_local_file = { src = \"./file\", dest = \"/path\" }");
	int r = only_keys(l, v, "add_local_file", keys);
	if (r < 0)
		return r;
	if (!toml_table_get(v, "src") || !toml_table_get(v, "dest"))
		return fail_at(l, v, "add_local_file needs src and dest");
	const char *src, *dest;
	if ((r = get_str(l, toml_table_get(v, "src"), "add_local_file.src", &src)) < 0 ||
	    (r = get_str(l, toml_table_get(v, "dest"), "add_local_file.dest", &dest)) < 0)
		return r;
	_cleanup_free_ char *path = abs_local(l, src);
	struct stat st;
	if (stat(path, &st) < 0)
		return fail_at(l, toml_table_get(v, "src"), "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail_at(l, toml_table_get(v, "src"), "%s is not a regular file (add_local_dir adds trees)",
			       path);
	Hutch__V1__AddLocalFile *a = arena_zalloc(&l->arena, sizeof *a);
	hutch__v1__add_local_file__init(a);
	a->dest = arena_strdup(&l->arena, dest);
	a->file = local_regular(l, path, &st, NULL);
	if (!a->file)
		return -l->err->code;
	const toml_value_t *m = toml_table_get(v, "mode");
	if (m && (r = get_mode(l, m, &a->file->mode)) < 0)
		return r;
	s->op_case = HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE;
	s->add_local_file = a;
	return 0;
}

static int step_add_dir(loader_t *l, const toml_value_t *v, Hutch__V1__ImageStep *s)
{
	static const char *const keys[] = {"src", "dest", "ignore", NULL};
	if (v->type != TOML_TABLE)
		return fail_at(l, v, "add_local_dir = { src = \"./dir\", dest = \"/path\" }");
	int r = only_keys(l, v, "add_local_dir", keys);
	if (r < 0)
		return r;
	if (!toml_table_get(v, "src") || !toml_table_get(v, "dest"))
		return fail_at(l, v, "add_local_dir needs src and dest");
	const char *src, *dest;
	if ((r = get_str(l, toml_table_get(v, "src"), "add_local_dir.src", &src)) < 0 ||
	    (r = get_str(l, toml_table_get(v, "dest"), "add_local_dir.dest", &dest)) < 0)
		return r;
	_cleanup_free_ char *path = abs_local(l, src);
	struct stat st;
	if (stat(path, &st) < 0)
		return fail_at(l, toml_table_get(v, "src"), "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return fail_at(l, toml_table_get(v, "src"), "%s is not a directory", path);
	Hutch__V1__AddLocalDir *d = arena_zalloc(&l->arena, sizeof *d);
	hutch__v1__add_local_dir__init(d);
	d->dest = arena_strdup(&l->arena, dest);
	walk_t w = {.l = l, .d = d};
	const toml_value_t *ig = toml_table_get(v, "ignore");
	if (ig && (r = get_strv(l, ig, "add_local_dir.ignore", &w.ignore, &w.n_ignore)) < 0)
		return r;
	if ((r = walk_dir(&w, path, NULL)) < 0)
		return r;
	s->op_case = HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR;
	s->add_local_dir = d;
	return 0;
}

static int step_pip(loader_t *l, const toml_value_t *v, Hutch__V1__ImageStep *s)
{
	Hutch__V1__PipInstall *p = arena_zalloc(&l->arena, sizeof *p);
	hutch__v1__pip_install__init(p);
	int r;
	if (v->type == TOML_TABLE) {
		static const char *const keys[] = {"packages", "index_url", "extra_index_urls",
						   "extra_index_url", "find_links", NULL};
		if ((r = only_keys(l, v, "pip_install", keys)) < 0 ||
		    (r = get_strv(l, toml_table_get(v, "packages"), "pip_install.packages", &p->packages,
				  &p->n_packages)) < 0)
			return r;
		const toml_value_t *x;
		const char *s1;
		if ((x = toml_table_get(v, "index_url"))) {
			if ((r = get_str(l, x, "index_url", &s1)) < 0)
				return r;
			p->index_url = arena_strdup(&l->arena, s1);
		}
		if (((x = toml_table_get(v, "extra_index_urls")) || (x = toml_table_get(v, "extra_index_url"))) &&
		    (r = get_strv(l, x, "extra_index_urls", &p->extra_index_urls, &p->n_extra_index_urls)) < 0)
			return r;
		if ((x = toml_table_get(v, "find_links")) &&
		    (r = get_strv(l, x, "find_links", &p->find_links, &p->n_find_links)) < 0)
			return r;
	} else if ((r = get_strv(l, v, "pip_install", &p->packages, &p->n_packages)) < 0) {
		return r;
	}
	s->op_case = HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL;
	s->pip_install = p;
	return 0;
}

static int parse_step(loader_t *l, const toml_value_t *t, Hutch__V1__ImageStep *s)
{
	if (t->type != TOML_TABLE)
		return fail_at(l, t, "each step must be a table ([[steps]])");
	if (t->u.table.len != 1)
		return fail_at(l, t, "a step holds exactly one operation (apt_install, pip_install, run_commands, add_local_file, add_local_dir, env, workdir, entrypoint); this one has %zu keys",
			       t->u.table.len);
	const toml_kv_t *kv = &t->u.table.items[0];
	const char *op = kv->key;
	const toml_value_t *v = kv->value;
	int r;
	if (strcmp(op, "apt_install") == 0) {
		Hutch__V1__AptInstall *a = arena_zalloc(&l->arena, sizeof *a);
		hutch__v1__apt_install__init(a);
		if ((r = get_strv(l, v, "apt_install", &a->packages, &a->n_packages)) < 0)
			return r;
		s->op_case = HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL;
		s->apt_install = a;
	} else if (strcmp(op, "pip_install") == 0) {
		return step_pip(l, v, s);
	} else if (strcmp(op, "run_commands") == 0 || strcmp(op, "run") == 0) {
		Hutch__V1__RunCommands *c = arena_zalloc(&l->arena, sizeof *c);
		hutch__v1__run_commands__init(c);
		if ((r = get_strv(l, v, "run_commands", &c->commands, &c->n_commands)) < 0)
			return r;
		s->op_case = HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS;
		s->run_commands = c;
	} else if (strcmp(op, "add_local_file") == 0) {
		return step_add_file(l, v, s);
	} else if (strcmp(op, "add_local_dir") == 0) {
		return step_add_dir(l, v, s);
	} else if (strcmp(op, "env") == 0) {
		if (v->type != TOML_TABLE)
			return fail_at(l, v, "env = { NAME = \"value\" }");
		Hutch__V1__EnvStep *e = arena_zalloc(&l->arena, sizeof *e);
		hutch__v1__env_step__init(e);
		for (size_t i = 0; i < v->u.table.len; i++) {
			const char *val;
			if ((r = get_str(l, v->u.table.items[i].value, "an env value", &val)) < 0)
				return r;
			Hutch__V1__KeyValue *k = arena_zalloc(&l->arena, sizeof *k);
			hutch__v1__key_value__init(k);
			k->key = arena_strdup(&l->arena, v->u.table.items[i].key);
			k->value = arena_strdup(&l->arena, val);
			arena_push(&l->arena, (void ***)&e->vars, &e->n_vars, k);
		}
		s->op_case = HUTCH__V1__IMAGE_STEP__OP_ENV;
		s->env = e;
	} else if (strcmp(op, "workdir") == 0) {
		const char *w;
		if ((r = get_str(l, v, "workdir", &w)) < 0)
			return r;
		s->op_case = HUTCH__V1__IMAGE_STEP__OP_WORKDIR;
		s->workdir = arena_strdup(&l->arena, w);
	} else if (strcmp(op, "entrypoint") == 0) {
		Hutch__V1__Entrypoint *e = arena_zalloc(&l->arena, sizeof *e);
		hutch__v1__entrypoint__init(e);
		if ((r = get_strv(l, v, "entrypoint", &e->argv, &e->n_argv)) < 0)
			return r;
		s->op_case = HUTCH__V1__IMAGE_STEP__OP_ENTRYPOINT;
		s->entrypoint = e;
	} else {
		return hutch_err_set(l->err, EINVAL,
				     "%s:%d:%d: unknown step `%s` (apt_install, pip_install, run_commands, add_local_file, add_local_dir, env, workdir, entrypoint)",
				     l->file, kv->line, kv->col, op);
	}
	return 0;
}

/* ---- the base ---- */

static int parse_base(loader_t *l, const toml_value_t *t, Hutch__V1__ImageBase *b)
{
	if (t->type != TOML_TABLE)
		return fail_at(l, t, "[base] must be a table");
	if (t->u.table.len != 1)
		return fail_at(l, t, "[base] names exactly one of busybox, debian_slim, registry, image, oci_layout, docker_archive");
	const toml_kv_t *kv = &t->u.table.items[0];
	const toml_value_t *v = kv->value;
	int r;
	if (strcmp(kv->key, "busybox") == 0) {
		if (!((v->type == TOML_BOOLEAN && v->u.boolean) || (v->type == TOML_TABLE && !v->u.table.len)))
			return fail_at(l, v, "busybox = true");
		Hutch__V1__BusyboxBase *bb = arena_zalloc(&l->arena, sizeof *bb);
		hutch__v1__busybox_base__init(bb);
		b->kind_case = HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX;
		b->busybox = bb;
	} else if (strcmp(kv->key, "debian_slim") == 0) {
		Hutch__V1__DebianSlimBase *d = arena_zalloc(&l->arena, sizeof *d);
		hutch__v1__debian_slim_base__init(d);
		const char *py = NULL;
		if (v->type == TOML_STRING) {
			py = v->u.str.ptr;
		} else if (v->type == TOML_TABLE) {
			static const char *const keys[] = {"python", NULL};
			if ((r = only_keys(l, v, "debian_slim", keys)) < 0)
				return r;
			const toml_value_t *p = toml_table_get(v, "python");
			if (p && (r = get_str(l, p, "debian_slim.python", &py)) < 0)
				return r;
		} else if (!(v->type == TOML_BOOLEAN && v->u.boolean)) {
			return fail_at(l, v, "debian_slim = { python = \"3.11\" }");
		}
		if (py)
			d->python_version = arena_strdup(&l->arena, py);
		b->kind_case = HUTCH__V1__IMAGE_BASE__KIND_DEBIAN_SLIM;
		b->debian_slim = d;
	} else if (strcmp(kv->key, "registry") == 0) {
		Hutch__V1__RegistryBase *rb = arena_zalloc(&l->arena, sizeof *rb);
		hutch__v1__registry_base__init(rb);
		const char *s;
		if (v->type == TOML_STRING) {
			rb->ref = arena_strdup(&l->arena, v->u.str.ptr);
		} else if (v->type == TOML_TABLE) {
			static const char *const keys[] = {"ref", "username", "password", "password_env",
							   "insecure", NULL};
			if ((r = only_keys(l, v, "registry", keys)) < 0 ||
			    (r = get_str(l, toml_table_get(v, "ref"), "registry.ref", &s)) < 0)
				return r;
			rb->ref = arena_strdup(&l->arena, s);
			const toml_value_t *x;
			if ((x = toml_table_get(v, "username"))) {
				if ((r = get_str(l, x, "registry.username", &s)) < 0)
					return r;
				rb->username = arena_strdup(&l->arena, s);
			}
			if ((x = toml_table_get(v, "password"))) {
				if ((r = get_str(l, x, "registry.password", &s)) < 0)
					return r;
				rb->password = arena_strdup(&l->arena, s);
			}
			if ((x = toml_table_get(v, "password_env"))) {
				if ((r = get_str(l, x, "registry.password_env", &s)) < 0)
					return r;
				const char *pw = getenv(s);
				if (!pw)
					return fail_at(l, x, "environment variable %s (the registry password) is not set", s);
				rb->password = arena_strdup(&l->arena, pw);
			}
			if ((x = toml_table_get(v, "insecure"))) {
				if (x->type != TOML_BOOLEAN)
					return fail_at(l, x, "registry.insecure must be true or false");
				rb->insecure = x->u.boolean;
			}
		} else {
			return fail_at(l, v, "registry = \"host/repo:tag\" or { ref = ..., username = ..., password_env = ... }");
		}
		b->kind_case = HUTCH__V1__IMAGE_BASE__KIND_REGISTRY;
		b->registry = rb;
	} else if (strcmp(kv->key, "image") == 0) {
		const char *s;
		if ((r = get_str(l, v, "image", &s)) < 0)
			return r;
		b->kind_case = HUTCH__V1__IMAGE_BASE__KIND_IMAGE;
		b->image = arena_strdup(&l->arena, s);
	} else if (strcmp(kv->key, "oci_layout") == 0 || strcmp(kv->key, "docker_archive") == 0) {
		const char *s;
		if ((r = get_str(l, v, kv->key, &s)) < 0)
			return r;
		_cleanup_free_ char *path = abs_local(l, s);
		struct stat st;
		if (stat(path, &st) < 0)
			return fail_at(l, v, "%s: %s", path, strerror(errno));
		bool layout = strcmp(kv->key, "oci_layout") == 0;
		if (layout && !S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
			return fail_at(l, v, "%s: an OCI layout directory (or a tar of one) is needed", path);
		if (!layout && !S_ISREG(st.st_mode))
			return fail_at(l, v, "%s: a docker-archive tar file is needed", path);
		l->out->import_path = xstrdup(path);
		b->kind_case = HUTCH__V1__IMAGE_BASE__KIND_IMAGE;
		b->image = arena_strdup(&l->arena, "");
	} else {
		return hutch_err_set(l->err, EINVAL,
				     "%s:%d:%d: unknown base `%s` (busybox, debian_slim, registry, image, oci_layout, docker_archive)",
				     l->file, kv->line, kv->col, kv->key);
	}
	return 0;
}

/* ---- the document ---- */

static int parse_doc(loader_t *l, const toml_value_t *root, Hutch__V1__ImageSpec *spec)
{
	static const char *const keys[] = {"name", "base", "steps", NULL};
	int r = only_keys(l, root, "the image file", keys);
	if (r < 0)
		return r;
	const toml_value_t *name = toml_table_get(root, "name");
	if (name) {
		const char *s;
		if ((r = get_str(l, name, "name", &s)) < 0)
			return r;
		l->out->name = xstrdup(s);
	}
	const toml_value_t *base = toml_table_get(root, "base");
	if (!base)
		return fail_at(l, NULL, "no [base] (busybox, debian_slim, registry, image, oci_layout, docker_archive)");
	spec->source = arena_zalloc(&l->arena, sizeof *spec->source);
	hutch__v1__image_base__init(spec->source);
	if ((r = parse_base(l, base, spec->source)) < 0)
		return r;
	const toml_value_t *steps = toml_table_get(root, "steps");
	if (!steps)
		return 0;
	if (steps->type != TOML_ARRAY)
		return fail_at(l, steps, "steps must be an array of tables ([[steps]])");
	for (size_t i = 0; i < steps->u.array.len; i++) {
		Hutch__V1__ImageStep *s = arena_zalloc(&l->arena, sizeof *s);
		hutch__v1__image_step__init(s);
		if ((r = parse_step(l, steps->u.array.items[i], s)) < 0)
			return r;
		arena_push(&l->arena, (void ***)&spec->steps, &spec->n_steps, s);
	}
	return 0;
}

int image_toml_load_text(const char *text, size_t len, const char *file_name,
			 const char *base_dir, image_toml_t *out, hutch_err_t *err)
{
	memset(out, 0, sizeof *out);
	toml_value_t *root = NULL;
	toml_error_t te;
	if (toml_parse(text, len, &root, &te) < 0)
		return hutch_err_set(err, EINVAL, "%s:%d:%d: %s", file_name, te.line, te.col, te.message);
	loader_t l = {.file = file_name, .base_dir = base_dir, .out = out, .err = err};
	Hutch__V1__ImageSpec spec = HUTCH__V1__IMAGE_SPEC__INIT;
	int r = parse_doc(&l, root, &spec);
	toml_free(root);
	if (r == 0) {
		size_t n = protobuf_c_message_get_packed_size(&spec.base);
		uint8_t *buf = xmalloc(n ? n : 1);
		protobuf_c_message_pack(&spec.base, buf);
		out->spec = hutch__v1__image_spec__unpack(NULL, n, buf);
		free(buf);
		if (!out->spec)
			r = hutch_err_set(err, ENOMEM, "out of memory");
	}
	arena_free(&l.arena);
	if (r < 0)
		image_toml_free(out);
	return r;
}

int image_toml_load(const char *path, image_toml_t *out, hutch_err_t *err)
{
	memset(out, 0, sizeof *out);
	_cleanup_fclose_ FILE *f = fopen(path, "rb");
	if (!f)
		return hutch_err_sys(err, errno, "open %s", path);
	strbuf_t sb = STRBUF_INIT;
	char buf[8192];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
		sb_append_n(&sb, buf, n);
		if (sb.len > (1 << 20)) {
			sb_free(&sb);
			return hutch_err_set(err, EFBIG, "%s: larger than 1 MiB", path);
		}
	}
	size_t len = sb.len;
	_cleanup_free_ char *text = sb_steal(&sb);
	char real[PATH_MAX];
	if (!realpath(path, real))
		return hutch_err_sys(err, errno, "%s", path);
	char *slash = strrchr(real, '/');
	_cleanup_free_ char *dir = slash == real ? xstrdup("/") : xstrndup(real, (size_t)(slash - real));
	return image_toml_load_text(text, len, path, dir, out, err);
}

void image_toml_free(image_toml_t *t)
{
	if (t->spec)
		protobuf_c_message_free_unpacked(&t->spec->base, NULL);
	for (size_t i = 0; i < t->n_files; i++)
		free(t->files[i].path);
	free(t->files);
	free(t->name);
	free(t->import_path);
	memset(t, 0, sizeof *t);
}

const char *image_toml_file_path(const image_toml_t *t, const char *digest)
{
	for (size_t i = 0; i < t->n_files; i++)
		if (strcmp(t->files[i].digest, digest) == 0)
			return t->files[i].path;
	return NULL;
}
