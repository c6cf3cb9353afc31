#include "image_spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "strbuf.h"

typedef Hutch__V1__ImageStep step_t;

bool image_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 128 || strncmp(name, "sha256:", 7) == 0)
		return false;
	if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
	      (name[0] >= '0' && name[0] <= '9')))
		return false;
	for (const char *p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-' || *p == '/' || *p == ':'))
			return false;
	return true;
}

const char *image_step_op_name(const step_t *s)
{
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL: return "apt_install";
	case HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL: return "pip_install";
	case HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS: return "run_commands";
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE: return "add_local_file";
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR: return "add_local_dir";
	case HUTCH__V1__IMAGE_STEP__OP_ENV: return "env";
	case HUTCH__V1__IMAGE_STEP__OP_WORKDIR: return "workdir";
	case HUTCH__V1__IMAGE_STEP__OP_ENTRYPOINT: return "entrypoint";
	default: return "unknown";
	}
}

bool image_step_has_layer(const step_t *s)
{
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL:
	case HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL:
	case HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS:
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE:
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR: return true;
	default: return false;
	}
}

bool image_step_runs(const step_t *s)
{
	return s->op_case == HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL ||
	       s->op_case == HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL ||
	       s->op_case == HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS;
}

static bool is_url(const char *s)
{
	return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0 ||
	       strncmp(s, "ftp://", 6) == 0;
}

bool image_step_needs_network(const step_t *s)
{
	if (s->op_case == HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL)
		return true;
	if (s->op_case != HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL)
		return false;
	const Hutch__V1__PipInstall *p = s->pip_install;
	if ((p->index_url && *p->index_url) || p->n_extra_index_urls || !p->n_find_links)
		return true;
	for (size_t i = 0; i < p->n_find_links; i++)
		if (is_url(p->find_links[i]))
			return true;
	return false;
}

/* ---- validation ---- */

static bool has_ctl(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 && *p != '\t')
			return true;
	return false;
}

/* Absolute, no "." or ".." components, no empty ones, no control chars. */
static bool abs_path_ok(const char *p)
{
	if (!p || p[0] != '/' || strlen(p) > 4096 || has_ctl(p))
		return false;
	const char *c = p + 1;
	while (*c) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);
		if (n == 0 && end)
			return false; /* "//" */
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return false;
		if (!end)
			break;
		c = end + 1;
	}
	return true;
}

static bool rel_path_ok(const char *p)
{
	if (!p || !*p || p[0] == '/' || strlen(p) > 4096 || has_ctl(p))
		return false;
	_cleanup_free_ char *abs = xasprintf("/%s", p);
	size_t n = strlen(abs);
	return abs[n - 1] != '/' && abs_path_ok(abs);
}

static bool env_key_ok(const char *k)
{
	if (!k || !*k || (*k >= '0' && *k <= '9'))
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      *p == '_'))
			return false;
	return true;
}

/* Debian package names, optionally "=version" or "/release". */
static bool apt_pkg_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 256 || !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("+-.:=~/", *p)))
			return false;
	return true;
}

/* pip requirement specifiers are rich ("pkg[extra]>=1; python_version<'4'");
 * they travel as argv, so only options are refused. */
static bool pip_req_ok(const char *s)
{
	return s && *s && *s != '-' && strlen(s) <= 1024 && !has_ctl(s);
}

static int check_file(const Hutch__V1__LocalFile *f, bool in_dir, hutch_err_t *err)
{
	if (!f)
		return hutch_err_set(err, EINVAL, "a file is missing");
	const char *type = f->type && *f->type ? f->type : "file";
	if (in_dir && !rel_path_ok(f->path))
		return hutch_err_set(err, EINVAL, "entry `%s`: a relative path without `.` or `..` is needed",
				     f->path ? f->path : "");
	if (f->mode > 07777)
		return hutch_err_set(err, EINVAL, "`%s`: mode %o is not a permission mode",
				     f->path ? f->path : "", f->mode);
	if (strcmp(type, "file") == 0) {
		if (!digest_valid(f->digest))
			return hutch_err_set(err, EINVAL, "`%s`: digest `%s` is not sha256:<64 hex>",
					     f->path ? f->path : "", f->digest ? f->digest : "");
		if (f->size < 0)
			return hutch_err_set(err, EINVAL, "`%s`: negative size", f->path ? f->path : "");
	} else if (strcmp(type, "symlink") == 0) {
		if (!f->link_target || !*f->link_target || strlen(f->link_target) > 4096 ||
		    has_ctl(f->link_target))
			return hutch_err_set(err, EINVAL, "`%s`: a symlink needs a target",
					     f->path ? f->path : "");
	} else if (strcmp(type, "dir") == 0) {
		if (!in_dir)
			return hutch_err_set(err, EINVAL, "add_local_file takes a file, not a directory");
	} else {
		return hutch_err_set(err, EINVAL, "`%s`: type `%s`: use file, dir or symlink",
				     f->path ? f->path : "", type);
	}
	return 0;
}

static int cmp_entries(const void *a, const void *b)
{
	const Hutch__V1__LocalFile *x = *(Hutch__V1__LocalFile *const *)a;
	const Hutch__V1__LocalFile *y = *(Hutch__V1__LocalFile *const *)b;
	return strcmp(x->path, y->path);
}

static int check_step(const step_t *s, hutch_err_t *err)
{
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL:
		if (!s->apt_install->n_packages)
			return hutch_err_set(err, EINVAL, "no packages");
		for (size_t i = 0; i < s->apt_install->n_packages; i++)
			if (!apt_pkg_ok(s->apt_install->packages[i]))
				return hutch_err_set(err, EINVAL, "`%s` is not a Debian package name",
						     s->apt_install->packages[i]);
		return 0;
	case HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL: {
		const Hutch__V1__PipInstall *p = s->pip_install;
		if (!p->n_packages)
			return hutch_err_set(err, EINVAL, "no packages");
		for (size_t i = 0; i < p->n_packages; i++)
			if (!pip_req_ok(p->packages[i]))
				return hutch_err_set(err, EINVAL,
						     "`%s` is not a requirement (options go in index_url / find_links)",
						     p->packages[i]);
		if (p->index_url && *p->index_url && !is_url(p->index_url))
			return hutch_err_set(err, EINVAL, "index_url `%s` is not a URL", p->index_url);
		for (size_t i = 0; i < p->n_extra_index_urls; i++)
			if (!is_url(p->extra_index_urls[i]))
				return hutch_err_set(err, EINVAL, "extra index `%s` is not a URL",
						     p->extra_index_urls[i]);
		for (size_t i = 0; i < p->n_find_links; i++)
			if (!is_url(p->find_links[i]) && !abs_path_ok(p->find_links[i]))
				return hutch_err_set(err, EINVAL,
						     "find_links `%s`: a URL or an absolute path in the image",
						     p->find_links[i]);
		return 0;
	}
	case HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS:
		if (!s->run_commands->n_commands)
			return hutch_err_set(err, EINVAL, "no commands");
		for (size_t i = 0; i < s->run_commands->n_commands; i++)
			if (!s->run_commands->commands[i] || !*s->run_commands->commands[i])
				return hutch_err_set(err, EINVAL, "command %zu is empty", i + 1);
		return 0;
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE:
		if (!abs_path_ok(s->add_local_file->dest) || strcmp(s->add_local_file->dest, "/") == 0)
			return hutch_err_set(err, EINVAL, "dest `%s`: an absolute file path is needed",
					     s->add_local_file->dest ? s->add_local_file->dest : "");
		return check_file(s->add_local_file->file, false, err);
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR: {
		const Hutch__V1__AddLocalDir *d = s->add_local_dir;
		if (!abs_path_ok(d->dest))
			return hutch_err_set(err, EINVAL, "dest `%s`: an absolute path is needed",
					     d->dest ? d->dest : "");
		if (d->n_entries > IMAGE_MAX_DIR_ENTRIES)
			return hutch_err_set(err, E2BIG, "%zu entries: at most %d", d->n_entries,
					     IMAGE_MAX_DIR_ENTRIES);
		for (size_t i = 0; i < d->n_entries; i++) {
			int r = check_file(d->entries[i], true, err);
			if (r < 0)
				return r;
		}
		/* Paths are unique (checked on a sorted copy). */
		if (d->n_entries > 1) {
			Hutch__V1__LocalFile **v = xmalloc(d->n_entries * sizeof *v);
			memcpy(v, d->entries, d->n_entries * sizeof *v);
			qsort(v, d->n_entries, sizeof *v, cmp_entries);
			int r = 0;
			for (size_t i = 1; i < d->n_entries && r == 0; i++)
				if (strcmp(v[i]->path, v[i - 1]->path) == 0)
					r = hutch_err_set(err, EINVAL, "entry `%s` is listed twice", v[i]->path);
			free(v);
			return r;
		}
		return 0;
	}
	case HUTCH__V1__IMAGE_STEP__OP_ENV:
		if (!s->env->n_vars)
			return hutch_err_set(err, EINVAL, "no variables");
		for (size_t i = 0; i < s->env->n_vars; i++)
			if (!env_key_ok(s->env->vars[i]->key) || has_ctl(s->env->vars[i]->value ? s->env->vars[i]->value : ""))
				return hutch_err_set(err, EINVAL, "`%s`: use letters, digits and _ for names",
						     s->env->vars[i]->key ? s->env->vars[i]->key : "");
		return 0;
	case HUTCH__V1__IMAGE_STEP__OP_WORKDIR:
		if (!abs_path_ok(s->workdir))
			return hutch_err_set(err, EINVAL, "`%s` is not an absolute path", s->workdir ? s->workdir : "");
		return 0;
	case HUTCH__V1__IMAGE_STEP__OP_ENTRYPOINT:
		if (!s->entrypoint->n_argv || !s->entrypoint->argv[0] || !*s->entrypoint->argv[0])
			return hutch_err_set(err, EINVAL, "an entrypoint needs a program");
		return 0;
	default:
		return hutch_err_set(err, EINVAL, "the step has no operation");
	}
}

int image_spec_check(const Hutch__V1__ImageSpec *spec, hutch_err_t *err)
{
	if (!spec)
		return hutch_err_set(err, EINVAL, "no image spec");
	const Hutch__V1__ImageBase *b = spec->source;
	if (!b || b->kind_case == HUTCH__V1__IMAGE_BASE__KIND__NOT_SET)
		return hutch_err_set(err, EINVAL, "the spec has no base (busybox, debian_slim, registry or image)");
	switch (b->kind_case) {
	case HUTCH__V1__IMAGE_BASE__KIND_DEBIAN_SLIM: {
		const char *v = b->debian_slim->python_version;
		if (v && *v) {
			bool ok = strlen(v) <= 16;
			for (const char *p = v; ok && *p; p++)
				ok = (*p >= '0' && *p <= '9') || *p == '.';
			if (!ok)
				return hutch_err_set(err, EINVAL, "base debian_slim: python version `%s`: give it as 3.11",
						     v);
		}
		break;
	}
	case HUTCH__V1__IMAGE_BASE__KIND_REGISTRY:
		if (!b->registry->ref || !*b->registry->ref || strlen(b->registry->ref) > 512 ||
		    has_ctl(b->registry->ref) || strchr(b->registry->ref, ' '))
			return hutch_err_set(err, EINVAL, "base registry: a reference (host/repo:tag) is needed");
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_IMAGE:
		if (!image_name_valid(b->image) && !digest_valid(b->image))
			return hutch_err_set(err, EINVAL, "base image `%s`: an image name or sha256: digest is needed",
					     b->image ? b->image : "");
		break;
	default:
		break;
	}
	if (spec->n_steps > IMAGE_MAX_STEPS)
		return hutch_err_set(err, E2BIG, "%zu steps: at most %d", spec->n_steps, IMAGE_MAX_STEPS);
	for (size_t i = 0; i < spec->n_steps; i++) {
		int r = check_step(spec->steps[i], err);
		if (r < 0)
			return hutch_err_prefix(err, "step %zu (%s)", i + 2,
						image_step_op_name(spec->steps[i]));
	}
	return 0;
}

/* ---- canonical form ---- */

static void json_strv(strbuf_t *sb, char *const *v, size_t n)
{
	sb_putc(sb, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			sb_putc(sb, ',');
		sb_json_str(sb, v[i] ? v[i] : "");
	}
	sb_putc(sb, ']');
}

static void json_file(strbuf_t *sb, const Hutch__V1__LocalFile *f, bool with_path)
{
	const char *type = f->type && *f->type ? f->type : "file";
	bool dir = strcmp(type, "dir") == 0;
	unsigned mode = f->mode ? f->mode : dir ? 0755 : 0644;
	sb_putc(sb, '[');
	if (with_path) {
		sb_json_str(sb, f->path);
		sb_putc(sb, ',');
	}
	sb_json_str(sb, type);
	sb_printf(sb, ",%u,", strcmp(type, "symlink") == 0 ? 0777 : mode);
	if (strcmp(type, "file") == 0)
		sb_json_str(sb, f->digest);
	else if (strcmp(type, "symlink") == 0)
		sb_json_str(sb, f->link_target);
	else
		sb_append(sb, "\"\"");
	sb_putc(sb, ']');
}

char *image_step_canonical(const step_t *s)
{
	strbuf_t sb = STRBUF_INIT;
	sb_append(&sb, "{\"op\":");
	sb_json_str(&sb, image_step_op_name(s));
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL:
		sb_append(&sb, ",\"packages\":");
		json_strv(&sb, s->apt_install->packages, s->apt_install->n_packages);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL: {
		const Hutch__V1__PipInstall *p = s->pip_install;
		sb_append(&sb, ",\"packages\":");
		json_strv(&sb, p->packages, p->n_packages);
		sb_append(&sb, ",\"index_url\":");
		sb_json_str(&sb, p->index_url ? p->index_url : "");
		sb_append(&sb, ",\"extra_index_urls\":");
		json_strv(&sb, p->extra_index_urls, p->n_extra_index_urls);
		sb_append(&sb, ",\"find_links\":");
		json_strv(&sb, p->find_links, p->n_find_links);
		break;
	}
	case HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS:
		sb_append(&sb, ",\"commands\":");
		json_strv(&sb, s->run_commands->commands, s->run_commands->n_commands);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE:
		sb_append(&sb, ",\"dest\":");
		sb_json_str(&sb, s->add_local_file->dest);
		sb_append(&sb, ",\"file\":");
		json_file(&sb, s->add_local_file->file, false);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR: {
		const Hutch__V1__AddLocalDir *d = s->add_local_dir;
		sb_append(&sb, ",\"dest\":");
		sb_json_str(&sb, d->dest);
		sb_append(&sb, ",\"entries\":[");
		/* Sorted by path: the order a client lists a tree in does not
		 * change what is added. */
		Hutch__V1__LocalFile **v = xmalloc((d->n_entries + 1) * sizeof *v);
		if (d->n_entries)
			memcpy(v, d->entries, d->n_entries * sizeof *v);
		qsort(v, d->n_entries, sizeof *v, cmp_entries);
		for (size_t i = 0; i < d->n_entries; i++) {
			if (i)
				sb_putc(&sb, ',');
			json_file(&sb, v[i], true);
		}
		free(v);
		sb_putc(&sb, ']');
		break;
	}
	case HUTCH__V1__IMAGE_STEP__OP_ENV:
		sb_append(&sb, ",\"vars\":[");
		for (size_t i = 0; i < s->env->n_vars; i++) {
			if (i)
				sb_putc(&sb, ',');
			sb_putc(&sb, '[');
			sb_json_str(&sb, s->env->vars[i]->key);
			sb_putc(&sb, ',');
			sb_json_str(&sb, s->env->vars[i]->value ? s->env->vars[i]->value : "");
			sb_putc(&sb, ']');
		}
		sb_putc(&sb, ']');
		break;
	case HUTCH__V1__IMAGE_STEP__OP_WORKDIR:
		sb_append(&sb, ",\"path\":");
		sb_json_str(&sb, s->workdir);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ENTRYPOINT:
		sb_append(&sb, ",\"argv\":");
		json_strv(&sb, s->entrypoint->argv, s->entrypoint->n_argv);
		break;
	default:
		break;
	}
	sb_putc(&sb, '}');
	return sb_steal(&sb);
}

void image_step_key(const char *parent_key, const step_t *step, char key[DIGEST_STR_MAX])
{
	_cleanup_free_ char *canon = image_step_canonical(step);
	digest_ctx_t *c = digest_new();
	static const char tag[] = "hutch-step-v1\n";
	digest_update(c, tag, sizeof tag - 1);
	digest_update(c, parent_key, strlen(parent_key));
	digest_update(c, "\n", 1);
	digest_update(c, canon, strlen(canon));
	digest_final(c, key);
}

void image_base_key(const char *resolved, char key[DIGEST_STR_MAX])
{
	digest_ctx_t *c = digest_new();
	static const char tag[] = "hutch-base-v1\n";
	digest_update(c, tag, sizeof tag - 1);
	digest_update(c, resolved, strlen(resolved));
	digest_final(c, key);
}

void image_chain(const char *key, char *const *layers, size_t n, char chain[DIGEST_STR_MAX])
{
	digest_ctx_t *c = digest_new();
	static const char tag[] = "hutch-chain-v1\n";
	digest_update(c, tag, sizeof tag - 1);
	digest_update(c, key, strlen(key));
	digest_update(c, "\n", 1);
	for (size_t i = 0; i < n; i++) {
		digest_update(c, layers[i], strlen(layers[i]));
		digest_update(c, "\n", 1);
	}
	digest_final(c, chain);
}

/* ---- descriptions ---- */

#define DESC_MAX 100

static void join(strbuf_t *sb, char *const *v, size_t n, const char *sep)
{
	for (size_t i = 0; i < n && sb->len < DESC_MAX; i++) {
		if (i)
			sb_append(sb, sep);
		sb_append(sb, v[i]);
	}
}

static char *finish(strbuf_t *sb)
{
	if (sb->len > DESC_MAX) {
		sb->len = DESC_MAX - 3;
		/* Not in the middle of a UTF-8 sequence. */
		while (sb->len > 0 && ((unsigned char)sb->buf[sb->len] & 0xc0) == 0x80)
			sb->len--;
		sb->buf[sb->len] = '\0';
		sb_append(sb, "...");
	}
	for (char *p = sb->buf; p && *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
	return sb_steal(sb);
}

char *image_step_describe(const step_t *s)
{
	strbuf_t sb = STRBUF_INIT;
	sb_printf(&sb, "%s: ", image_step_op_name(s));
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_APT_INSTALL:
		join(&sb, s->apt_install->packages, s->apt_install->n_packages, " ");
		break;
	case HUTCH__V1__IMAGE_STEP__OP_PIP_INSTALL:
		join(&sb, s->pip_install->packages, s->pip_install->n_packages, " ");
		break;
	case HUTCH__V1__IMAGE_STEP__OP_RUN_COMMANDS:
		join(&sb, s->run_commands->commands, s->run_commands->n_commands, "; ");
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE:
		sb_append(&sb, s->add_local_file->dest);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR:
		sb_printf(&sb, "%s (%zu entries)", s->add_local_dir->dest, s->add_local_dir->n_entries);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ENV:
		for (size_t i = 0; i < s->env->n_vars && sb.len < DESC_MAX; i++)
			sb_printf(&sb, "%s%s=%s", i ? " " : "", s->env->vars[i]->key,
				  s->env->vars[i]->value ? s->env->vars[i]->value : "");
		break;
	case HUTCH__V1__IMAGE_STEP__OP_WORKDIR:
		sb_append(&sb, s->workdir);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ENTRYPOINT:
		join(&sb, s->entrypoint->argv, s->entrypoint->n_argv, " ");
		break;
	default:
		break;
	}
	return finish(&sb);
}

char *image_base_describe(const Hutch__V1__ImageBase *b)
{
	strbuf_t sb = STRBUF_INIT;
	switch (b ? b->kind_case : HUTCH__V1__IMAGE_BASE__KIND__NOT_SET) {
	case HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX:
		sb_append(&sb, "base: busybox");
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_DEBIAN_SLIM:
		sb_printf(&sb, "base: debian_slim(python %s)",
			  b->debian_slim->python_version && *b->debian_slim->python_version
				  ? b->debian_slim->python_version : "newest");
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_REGISTRY:
		sb_printf(&sb, "base: registry %s", b->registry->ref);
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_IMAGE:
		sb_printf(&sb, "base: image %s", b->image);
		break;
	default:
		sb_append(&sb, "base: none");
		break;
	}
	return finish(&sb);
}
