#include "oci_layout.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "layer_tar.h"
#include "log.h"
#include "oci.h"
#include "proc.h"
#include "strbuf.h"

/* Most entries an imported archive may hold. */
#define IMPORT_MAX_ENTRIES 100000

static void remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 300000, NULL, 0, &e) < 0)
		log_warn("images: remove %s: %s", path, e.message);
}

/* ---- export ---- */

typedef struct exporter {
	struct archive *a;
	oci_write_cb write;
	void *data;
	bool stopped;
	hutch_err_t *err;
	unsigned char buf[1 << 16];
} exporter_t;

static la_ssize_t ex_write(struct archive *a, void *data, const void *buf, size_t n)
{
	exporter_t *x = data;
	(void)a;
	if (!x->write(x->data, buf, n)) {
		x->stopped = true;
		return -1;
	}
	return (la_ssize_t)n;
}

static int ex_fail(exporter_t *x, const char *what)
{
	if (x->stopped)
		return hutch_err_set(x->err, ECANCELED, "export stopped by the client");
	return hutch_err_set(x->err, EIO, "export: %s: %s", what, archive_error_string(x->a));
}

/* A header with fixed owner and time: the same image exports to the same
 * bytes. */
static int ex_header(exporter_t *x, const char *name, mode_t type, int64_t size)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, type == AE_IFDIR ? 0755 : 0644);
	archive_entry_set_size(e, type == AE_IFDIR ? 0 : size);
	archive_entry_set_mtime(e, 0, 0);
	int r = archive_write_header(x->a, e) == ARCHIVE_OK ? 0 : ex_fail(x, name);
	archive_entry_free(e);
	return r;
}

static int ex_bytes(exporter_t *x, const char *name, const char *data, size_t len)
{
	int r = ex_header(x, name, AE_IFREG, (int64_t)len);
	if (r == 0 && len && archive_write_data(x->a, data, len) != (la_ssize_t)len)
		r = ex_fail(x, name);
	return r;
}

/* Streams the blob digest from the store, hashing it on the way: a blob
 * that changed since it was checked fails the export rather than sending
 * content that does not match its name. */
static int ex_blob(exporter_t *x, image_store_t *store, const char *digest)
{
	_cleanup_free_ char *path = image_store_blob_path(store, digest);
	_cleanup_free_ char *name = xasprintf("blobs/sha256/%s", digest_hex(digest));
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0)
		return hutch_err_sys(x->err, errno, "export: blob %s", digest);
	int r = ex_header(x, name, AE_IFREG, st.st_size);
	if (r < 0)
		return r;
	digest_ctx_t *h = digest_new();
	int64_t left = st.st_size;
	while (left > 0 && r == 0) {
		ssize_t n = read(fd, x->buf, sizeof x->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = hutch_err_sys(x->err, n < 0 ? errno : EIO, "export: read blob %s", digest);
			break;
		}
		if (n > left)
			n = (ssize_t)left;
		digest_update(h, x->buf, (size_t)n);
		if (archive_write_data(x->a, x->buf, (size_t)n) != n)
			r = ex_fail(x, name);
		left -= n;
	}
	if (r < 0) {
		digest_free(h);
		return r;
	}
	char got[DIGEST_STR_MAX];
	digest_final(h, got);
	if (strcmp(got, digest) != 0)
		return hutch_err_set(x->err, EIO, "export: blob %s is corrupted (it hashes to %s)", digest, got);
	return 0;
}

static int export_utf8(image_store_t *store, const Hutch__V1__Image *img, oci_write_cb write,
		       void *data, hutch_err_t *err)
{
	char *manifest;
	size_t mlen;
	int r = image_store_blob_read(store, img->digest, OCI_JSON_MAX, &manifest, &mlen, err);
	if (r < 0)
		return hutch_err_prefix(err, "export %s: manifest", img->name);
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	r = oci_parse_manifest_or_index(manifest, mlen, &m, &idx, &is_index, err);
	free(manifest);
	if (r < 0)
		return hutch_err_prefix(err, "export %s: manifest", img->name);
	if (is_index) {
		oci_index_free(&idx);
		return hutch_err_set(err, EINVAL, "export %s: its manifest is an index", img->name);
	}
	/* Every layer is checked before the first byte goes out. */
	for (size_t i = 0; i < m.n_layers && r == 0; i++)
		r = image_store_layer_check(store, m.layers[i].digest, false, err);
	if (r < 0) {
		oci_manifest_free(&m);
		return hutch_err_prefix(err, "export %s", img->name);
	}
	_cleanup_free_ char *index = oci_index_write(img->digest, (int64_t)mlen, img->name);
	exporter_t *x = xcalloc(1, sizeof *x);
	x->write = write;
	x->data = data;
	x->err = err;
	x->a = archive_write_new();
	archive_write_set_format_pax_restricted(x->a);
	archive_write_add_filter_none(x->a);
	archive_write_set_bytes_in_last_block(x->a, 1);
	if (archive_write_open2(x->a, x, NULL, ex_write, NULL, NULL) != ARCHIVE_OK)
		r = ex_fail(x, "open");
	if (r == 0)
		r = ex_bytes(x, "oci-layout", OCI_LAYOUT_FILE, strlen(OCI_LAYOUT_FILE));
	if (r == 0)
		r = ex_bytes(x, "index.json", index, strlen(index));
	if (r == 0)
		r = ex_header(x, "blobs/", AE_IFDIR, 0);
	if (r == 0)
		r = ex_header(x, "blobs/sha256/", AE_IFDIR, 0);
	if (r == 0)
		r = ex_blob(x, store, img->digest);
	if (r == 0)
		r = ex_blob(x, store, m.config.digest);
	for (size_t i = 0; i < m.n_layers && r == 0; i++) {
		bool dup = false;
		for (size_t k = 0; k < i; k++)
			dup |= strcmp(m.layers[k].digest, m.layers[i].digest) == 0;
		if (!dup)
			r = ex_blob(x, store, m.layers[i].digest);
	}
	if (archive_write_close(x->a) != ARCHIVE_OK && r == 0)
		r = ex_fail(x, "close");
	archive_write_free(x->a);
	free(x);
	oci_manifest_free(&m);
	return r;
}

int oci_layout_export(image_store_t *store, const Hutch__V1__Image *img, oci_write_cb write,
		      void *data, hutch_err_t *err)
{
	locale_t old = layer_locale_enter();
	int r = export_utf8(store, img, write, data, err);
	layer_locale_leave(old);
	return r;
}

/* ---- import ---- */

/* A path inside the archive as a clean relative path, or NULL if it is
 * absolute, empty or climbs out. */
static char *archive_rel(const char *p)
{
	while (p[0] == '.' && p[1] == '/')
		p += 2;
	if (!*p || p[0] == '/')
		return NULL;
	_cleanup_free_ char *copy = xstrdup(p);
	size_t n = strlen(copy);
	while (n && copy[n - 1] == '/')
		copy[--n] = '\0';
	if (!n)
		return NULL;
	for (char *c = copy; c;) {
		char *end = strchr(c, '/');
		size_t len = end ? (size_t)(end - c) : strlen(c);
		if (len == 0 || (len == 2 && c[0] == '.' && c[1] == '.'))
			return NULL;
		c = end ? end + 1 : NULL;
	}
	return steal_ptr(&copy);
}

/* Links in an archive (docker-archives made by skopeo point
 * <id>/layer.tar at ../<digest>.tar). They are never made on disk: each
 * becomes an alias, checked to stay inside the archive, that paths are
 * resolved through before a file is opened. */
typedef struct archive_links {
	char **from;   /* clean relative paths */
	char **to;
	size_t n;
} archive_links_t;

static void links_free(archive_links_t *l)
{
	strv_free(l->from);
	strv_free(l->to);
	memset(l, 0, sizeof *l);
}

/* dir + "/" + target, with "." and ".." applied; NULL if it leaves the
 * archive or target is absolute. */
static char *join_inside(const char *dir, const char *target)
{
	if (!target || !*target || target[0] == '/')
		return NULL;
	char **parts = NULL;
	_cleanup_free_ char *all = dir ? xasprintf("%s/%s", dir, target) : xstrdup(target);
	char *save = NULL;
	for (char *c = strtok_r(all, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			size_t n = strv_len(parts);
			if (n == 0) {
				strv_free(parts);
				return NULL;
			}
			free(parts[n - 1]);
			parts[n - 1] = NULL;
			continue;
		}
		strv_push(&parts, xstrdup(c));
	}
	strbuf_t sb = STRBUF_INIT;
	for (char **p = parts; p && *p; p++)
		sb_printf(&sb, "%s%s", sb.len ? "/" : "", *p);
	strv_free(parts);
	if (!sb.len) {
		sb_free(&sb);
		return NULL;
	}
	return sb_steal(&sb);
}

/* rel with every alias on its way applied (at most 16 of them). */
static char *links_resolve(const archive_links_t *l, const char *rel)
{
	char *cur = xstrdup(rel);
	for (int hops = 0; hops < 16; hops++) {
		bool changed = false;
		/* The longest prefix (component-wise) that is an alias. */
		for (size_t i = 0; i < l->n && !changed; i++) {
			size_t fl = strlen(l->from[i]);
			if (strncmp(cur, l->from[i], fl) != 0 || (cur[fl] != '\0' && cur[fl] != '/'))
				continue;
			char *next = cur[fl] ? xasprintf("%s%s", l->to[i], cur + fl) : xstrdup(l->to[i]);
			free(cur);
			cur = next;
			changed = true;
		}
		if (!changed)
			return cur;
	}
	free(cur);
	return NULL;
}

/* Unpacks the archive into dir: directories and regular files; links
 * become aliases (archive_links_t); devices, absolute paths and paths out
 * of the archive are refused. Every file is created below dir without
 * following symlinks. */
static int unpack(const char *tar_path, const char *dir, archive_links_t *links, hutch_err_t *err)
{
	_cleanup_close_ int root = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (root < 0)
		return hutch_err_sys(err, errno, "open %s", dir);
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	archive_read_support_filter_all(a);
	int r = 0;
	if (archive_read_open_filename(a, tar_path, 1 << 16) != ARCHIVE_OK) {
		r = hutch_err_set(err, EINVAL, "not a tar archive: %s", archive_error_string(a));
		archive_read_free(a);
		return r;
	}
	struct archive_entry *e;
	int ar;
	size_t entries = 0;
	static __thread char buf[1 << 16];
	while (r == 0 && ((ar = archive_read_next_header(a, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN)) {
		const char *name = archive_entry_pathname(e);
		if (++entries > IMPORT_MAX_ENTRIES) {
			r = hutch_err_set(err, E2BIG, "the archive has more than %d entries", IMPORT_MAX_ENTRIES);
			break;
		}
		if (name && (strcmp(name, ".") == 0 || strcmp(name, "./") == 0))
			continue;
		_cleanup_free_ char *rel = name ? archive_rel(name) : NULL;
		if (!rel) {
			r = hutch_err_set(err, EINVAL, "archive entry `%.200s`: not a relative path inside the archive",
					  name ? name : "");
			break;
		}
		mode_t type = archive_entry_filetype(e);
		const char *hard = archive_entry_hardlink(e);
		if (type == AE_IFLNK || hard) {
			const char *slash = strrchr(rel, '/');
			_cleanup_free_ char *link_dir = slash ? xstrndup(rel, (size_t)(slash - rel)) : NULL;
			/* A symlink's target is relative to its directory, a hard
			 * link's to the archive's root. */
			char *to = type == AE_IFLNK ? join_inside(link_dir, archive_entry_symlink(e)) : join_inside(NULL, hard);
			if (!to) {
				r = hutch_err_set(err, EINVAL, "archive entry `%.200s`: a link out of the archive", rel);
				break;
			}
			if (links->n >= 10000) {
				free(to);
				r = hutch_err_set(err, E2BIG, "the archive has too many links");
				break;
			}
			strv_push(&links->from, xstrdup(rel));
			strv_push(&links->to, to);
			links->n++;
			continue;
		}
		if (type != AE_IFDIR && type != AE_IFREG) {
			r = hutch_err_set(err, EINVAL,
					  "archive entry `%.200s`: only files, directories and links belong in an image archive",
					  rel);
			break;
		}
		const char *slash = strrchr(rel, '/');
		_cleanup_free_ char *parent = slash ? xstrndup(rel, (size_t)(slash - rel)) : xstrdup(".");
		const char *base = slash ? slash + 1 : rel;
		_cleanup_close_ int pfd = layer_open_dir_beneath(root, parent, true, err);
		if (pfd < 0) {
			r = pfd;
			break;
		}
		if (type == AE_IFDIR) {
			if (mkdirat(pfd, base, 0755) < 0 && errno != EEXIST)
				r = hutch_err_sys(err, errno, "unpack %s", rel);
			continue;
		}
		_cleanup_close_ int fd = openat(pfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			r = errno == EEXIST ? hutch_err_set(err, EINVAL, "archive entry `%.200s` appears twice", rel)
					    : hutch_err_sys(err, errno, "unpack %s", rel);
			break;
		}
		for (;;) {
			la_ssize_t n = archive_read_data(a, buf, sizeof buf);
			if (n < 0) {
				r = hutch_err_set(err, EINVAL, "archive entry `%.200s`: %s", rel, archive_error_string(a));
				break;
			}
			if (n == 0)
				break;
			for (la_ssize_t off = 0; off < n && r == 0;) {
				ssize_t w = write(fd, buf + off, (size_t)(n - off));
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					r = hutch_err_sys(err, errno, "unpack %s", rel);
				else
					off += w;
			}
			if (r < 0)
				break;
		}
	}
	if (r == 0 && ar != ARCHIVE_EOF)
		r = hutch_err_set(err, EINVAL, "the archive is damaged: %s", archive_error_string(a));
	archive_read_free(a);
	return r;
}

/* Opens rel (a relative path from the archive, links resolved) below
 * root, read-only. */
static int open_rel(int root, const archive_links_t *links, const char *rel_in, hutch_err_t *err)
{
	_cleanup_free_ char *clean = archive_rel(rel_in);
	if (!clean)
		return hutch_err_set(err, EINVAL, "`%.200s` is not a path inside the archive", rel_in);
	_cleanup_free_ char *rel = links_resolve(links, clean);
	if (!rel)
		return hutch_err_set(err, EINVAL, "`%.200s`: too many links", rel_in);
	const char *slash = strrchr(rel, '/');
	_cleanup_free_ char *parent = slash ? xstrndup(rel, (size_t)(slash - rel)) : xstrdup(".");
	_cleanup_close_ int pfd = layer_open_dir_beneath(root, parent, false, err);
	if (pfd < 0)
		return pfd == -ENOENT ? hutch_err_set(err, ENOENT, "the archive has no %.200s", rel) : pfd;
	int fd = openat(pfd, slash ? slash + 1 : rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? hutch_err_set(err, ENOENT, "the archive has no %.200s", rel)
				       : hutch_err_sys(err, errno, "open %s", rel);
	return fd;
}

static int read_rel(int root, const archive_links_t *links, const char *rel, char **out, size_t *len,
		    hutch_err_t *err)
{
	_cleanup_close_ int fd = open_rel(root, links, rel, err);
	if (fd < 0)
		return fd;
	strbuf_t sb = STRBUF_INIT;
	char buf[8192];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sb_free(&sb);
			return hutch_err_sys(err, errno, "read %s", rel);
		}
		if (n == 0)
			break;
		if (sb.len + (size_t)n > OCI_JSON_MAX) {
			sb_free(&sb);
			return hutch_err_set(err, EFBIG, "%s is larger than %d bytes", rel, OCI_JSON_MAX);
		}
		sb_append_n(&sb, buf, (size_t)n);
	}
	*len = sb.len;
	*out = sb_steal(&sb);
	return 0;
}

/* A blob of an OCI layout, checked against its digest. */
static int read_blob(int root, const archive_links_t *links, const char *digest, char **out, size_t *len,
		     hutch_err_t *err)
{
	_cleanup_free_ char *rel = xasprintf("blobs/sha256/%s", digest_hex(digest));
	int r = read_rel(root, links, rel, out, len, err);
	if (r < 0)
		return r;
	char got[DIGEST_STR_MAX];
	digest_buf(*out, *len, got);
	if (strcmp(got, digest) != 0) {
		free(*out);
		*out = NULL;
		return hutch_err_set(err, EINVAL, "blob %s of the archive hashes to %s", digest, got);
	}
	return 0;
}

typedef struct import_ctx {
	image_store_t *store;
	const char *dir;        /* the unpacked archive */
	int root;
	archive_links_t links;
	oci_imported_t *out;
	char ***pinned;
	hutch_err_t *err;
} import_ctx_t;

static void pin_push(import_ctx_t *c, const char *digest)
{
	image_store_pin(c->store, digest);
	strv_push(c->pinned, xstrdup(digest));
}

/* The layer at rel (any compression) into the store; checks its diff id
 * when the config names one. */
static int import_layer(import_ctx_t *c, const char *rel, const char *want_diff_id,
			const char *cache_key, hutch_err_t *err)
{
	_cleanup_free_ char *given = archive_rel(rel);
	_cleanup_free_ char *clean = given ? links_resolve(&c->links, given) : NULL;
	if (!clean)
		return hutch_err_set(err, EINVAL, "layer `%.200s` is not a path inside the archive", rel);
	/* It was unpacked as a regular file below dir with no symlink on the
	 * way (unpack made every component), so the joined path is it. */
	_cleanup_free_ char *path = xasprintf("%s/%s", c->dir, clean);
	struct stat st;
	if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode))
		return hutch_err_set(err, ENOENT, "the archive has no layer %.200s", clean);
	oci_imported_t *o = c->out;
	size_t i = o->n;
	o->layers = xrealloc(o->layers, (i + 2) * sizeof *o->layers);
	o->sizes = xrealloc(o->sizes, (i + 1) * sizeof *o->sizes);
	o->cache_keys = xrealloc(o->cache_keys, (i + 2) * sizeof *o->cache_keys);
	o->layers[i] = o->cache_keys[i] = NULL;
	char digest[DIGEST_STR_MAX];
	int r = image_store_layer_from_tar(c->store, path, digest, &o->sizes[i], err);
	if (r < 0)
		return hutch_err_prefix(err, "layer %zu", i + 1);
	strv_push(c->pinned, xstrdup(digest)); /* from_tar pinned it */
	o->layers[i] = xstrdup(digest);
	o->layers[i + 1] = NULL;
	o->cache_keys[i] = xstrdup(cache_key ? cache_key : "");
	o->cache_keys[i + 1] = NULL;
	o->n = i + 1;
	if (want_diff_id && strcmp(want_diff_id, digest) != 0)
		return hutch_err_set(err, EINVAL, "layer %zu unpacks to %s, the image config says %s", i + 1,
				     digest, want_diff_id);
	return 0;
}

static int config_take(import_ctx_t *c, const char *json, size_t len, oci_config_t *conf,
		       hutch_err_t *err)
{
	int r = oci_config_parse(json, len, conf, err);
	if (r < 0)
		return hutch_err_prefix(err, "image config");
	char digest[DIGEST_STR_MAX];
	digest_buf(json, len, digest);
	pin_push(c, digest); /* before it exists: no collection takes it meanwhile */
	if ((r = image_store_blob_put(c->store, json, len, digest, err)) < 0)
		return r;
	snprintf(c->out->config, sizeof c->out->config, "%s", digest);
	c->out->config_size = (int64_t)len;
	return 0;
}

static int import_oci(import_ctx_t *c, const char *ref, oci_config_t *conf, hutch_err_t *err)
{
	char *json;
	size_t len;
	int r = read_rel(c->root, &c->links, "index.json", &json, &len, err);
	if (r < 0)
		return r;
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	r = oci_parse_manifest_or_index(json, len, &m, &idx, &is_index, err);
	free(json);
	if (r < 0)
		return hutch_err_prefix(err, "index.json");
	if (!is_index) {
		oci_manifest_free(&m);
		return hutch_err_set(err, EINVAL, "index.json is not an image index");
	}
	char want[DIGEST_STR_MAX] = "";
	for (int depth = 0;; depth++) {
		const oci_desc_t *pick = oci_index_pick(&idx, depth == 0 ? ref : NULL);
		if (!pick) {
			_cleanup_sb_ strbuf_t refs = STRBUF_INIT;
			for (size_t i = 0; i < idx.n; i++)
				if (idx.manifests[i].ref_name)
					sb_printf(&refs, "%s%s", refs.len ? ", " : "", idx.manifests[i].ref_name);
			if (ref && *ref && depth == 0)
				r = hutch_err_set(err, ENOENT, "no image named %s in the layout (it holds: %s)", ref,
						  refs.len ? refs.buf : "images without names");
			else
				r = hutch_err_set(err, EINVAL,
						  "the layout holds %zu images and none alone for linux/%s: say which (ref; it holds: %s)",
						  idx.n, oci_host_arch(), refs.len ? refs.buf : "images without names");
			oci_index_free(&idx);
			return r;
		}
		snprintf(want, sizeof want, "%s", pick->digest);
		oci_index_free(&idx);
		if ((r = read_blob(c->root, &c->links, want, &json, &len, err)) < 0)
			return hutch_err_prefix(err, "manifest");
		r = oci_parse_manifest_or_index(json, len, &m, &idx, &is_index, err);
		free(json);
		if (r < 0)
			return hutch_err_prefix(err, "manifest %s", want);
		if (!is_index)
			break;
		if (depth >= 1) {
			oci_index_free(&idx);
			return hutch_err_set(err, EINVAL, "manifest %s: indexes nested too deep", want);
		}
	}
	if ((r = read_blob(c->root, &c->links, m.config.digest, &json, &len, err)) < 0) {
		oci_manifest_free(&m);
		return hutch_err_prefix(err, "config");
	}
	r = config_take(c, json, len, conf, err);
	free(json);
	if (r == 0 && conf->n_diff_ids != m.n_layers)
		r = hutch_err_set(err, EINVAL, "the config lists %zu layers, the manifest %zu", conf->n_diff_ids,
				  m.n_layers);
	if (r == 0 && m.n_layers > IMAGE_CACHE_MAX_LAYERS)
		r = hutch_err_set(err, E2BIG, "%zu layers: at most %d", m.n_layers, IMAGE_CACHE_MAX_LAYERS);
	for (size_t i = 0; i < m.n_layers && r == 0; i++) {
		_cleanup_free_ char *rel = xasprintf("blobs/sha256/%s", digest_hex(m.layers[i].digest));
		_cleanup_free_ char *real = links_resolve(&c->links, rel);
		_cleanup_free_ char *path = xasprintf("%s/%s", c->dir, real ? real : rel);
		char got[DIGEST_STR_MAX];
		if ((r = digest_file(path, got, NULL, err)) < 0) {
			r = hutch_err_set(err, ENOENT, "the archive has no blob %s (layer %zu)", m.layers[i].digest,
					  i + 1);
			break;
		}
		if (strcmp(got, m.layers[i].digest) != 0) {
			r = hutch_err_set(err, EINVAL, "layer %zu: blob %s hashes to %s", i + 1, m.layers[i].digest, got);
			break;
		}
		r = import_layer(c, rel, conf->diff_ids[i], m.layers[i].cache_key, err);
	}
	oci_manifest_free(&m);
	return r;
}

static int import_docker(import_ctx_t *c, const char *ref, oci_config_t *conf, hutch_err_t *err)
{
	char *json;
	size_t len;
	int r = read_rel(c->root, &c->links, "manifest.json", &json, &len, err);
	if (r < 0)
		return r;
	docker_archive_image_t *imgs;
	size_t n;
	r = oci_docker_manifest_parse(json, len, &imgs, &n, err);
	free(json);
	if (r < 0)
		return r;
	const docker_archive_image_t *pick = NULL;
	for (size_t i = 0; i < n && ref && *ref; i++)
		for (char **t = imgs[i].repo_tags; t && *t; t++)
			if (strcmp(*t, ref) == 0)
				pick = &imgs[i];
	if (!(ref && *ref) && n == 1)
		pick = &imgs[0];
	if (!pick) {
		r = ref && *ref ? hutch_err_set(err, ENOENT, "no image tagged %s in the archive", ref)
				: hutch_err_set(err, EINVAL, "the archive holds %zu images: say which (ref)", n);
		oci_docker_manifest_free(imgs, n);
		return r;
	}
	if ((r = read_rel(c->root, &c->links, pick->config, &json, &len, err)) == 0) {
		r = config_take(c, json, len, conf, err);
		free(json);
	}
	if (r == 0 && conf->n_diff_ids != pick->n_layers)
		r = hutch_err_set(err, EINVAL, "the config lists %zu layers, manifest.json %zu", conf->n_diff_ids,
				  pick->n_layers);
	if (r == 0 && pick->n_layers > IMAGE_CACHE_MAX_LAYERS)
		r = hutch_err_set(err, E2BIG, "%zu layers: at most %d", pick->n_layers, IMAGE_CACHE_MAX_LAYERS);
	for (size_t i = 0; i < pick->n_layers && r == 0; i++)
		r = import_layer(c, pick->layers[i], conf->diff_ids[i], NULL, err);
	oci_docker_manifest_free(imgs, n);
	return r;
}

/* The layers' build cache keys become the tenant's cache entries: a run of
 * layers with one key is that step's result. */
static void import_cache(import_ctx_t *c, const char *tenant)
{
	oci_imported_t *o = c->out;
	for (size_t i = 0; i < o->n;) {
		size_t k = i;
		while (k < o->n && strcmp(o->cache_keys[k], o->cache_keys[i]) == 0)
			k++;
		if (o->cache_keys[i][0] && digest_valid(o->cache_keys[i]) && k - i <= IMAGE_CACHE_MAX_LAYERS) {
			image_cache_entry_t e = {0};
			for (size_t j = i; j < k; j++)
				snprintf(e.layers[e.n_layers++], DIGEST_STR_MAX, "%s", o->layers[j]);
			hutch_err_t ce = {0};
			if (image_store_cache_put(c->store, tenant, o->cache_keys[i], &e, &ce) < 0)
				log_warn("images: import: cache entry %s: %s", o->cache_keys[i], ce.message);
		}
		i = k;
	}
}

int oci_archive_import(image_store_t *store, const char *tenant, const char *tar_path,
		       const char *ref, oci_imported_t *out, char ***pinned, hutch_err_t *err)
{
	memset(out, 0, sizeof *out);
	_cleanup_free_ char *dir = image_store_tmp_dir(store, "import", err);
	if (!dir)
		return -err->code;
	import_ctx_t c = {.store = store, .dir = dir, .root = -1, .out = out, .pinned = pinned, .err = err};
	oci_config_t conf = {0};
	locale_t old = layer_locale_enter();
	int r = unpack(tar_path, dir, &c.links, err);
	layer_locale_leave(old);
	if (r == 0) {
		c.root = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		if (c.root < 0)
			r = hutch_err_sys(err, errno, "open %s", dir);
	}
	if (r == 0) {
		struct stat st;
		bool layout = fstatat(c.root, "index.json", &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			      fstatat(c.root, "oci-layout", &st, AT_SYMLINK_NOFOLLOW) == 0;
		bool docker = !layout && fstatat(c.root, "manifest.json", &st, AT_SYMLINK_NOFOLLOW) == 0;
		if (layout)
			r = import_oci(&c, ref, &conf, err);
		else if (docker)
			r = import_docker(&c, ref, &conf, err);
		else
			r = hutch_err_set(err, EINVAL,
					  "neither an OCI image layout (oci-layout, index.json) nor a docker-archive (manifest.json)");
	}
	if (r == 0) {
		_cleanup_free_ char *manifest = oci_manifest_write(out->config, out->config_size, out->layers,
								   out->sizes, out->cache_keys, out->n);
		char digest[DIGEST_STR_MAX];
		digest_buf(manifest, strlen(manifest), digest);
		pin_push(&c, digest);
		r = image_store_blob_put(store, manifest, strlen(manifest), out->manifest, err);
	}
	if (r == 0) {
		import_cache(&c, tenant);
		out->cfg = steal_ptr(&conf.config);
	}
	oci_config_free(&conf);
	if (c.root >= 0)
		close(c.root);
	links_free(&c.links);
	remove_tree(dir);
	if (r < 0) {
		for (char **p = *pinned; p && *p; p++)
			image_store_unpin(store, *p);
		strv_free(*pinned);
		*pinned = NULL;
		oci_imported_free(out);
	}
	return r;
}

void oci_imported_free(oci_imported_t *imp)
{
	strv_free(imp->layers);
	free(imp->sizes);
	strv_free(imp->cache_keys);
	if (imp->cfg)
		protobuf_c_message_free_unpacked(&imp->cfg->base, NULL);
	memset(imp, 0, sizeof *imp);
}
