#include "layer_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <pthread.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"

#define WH_PREFIX ".wh."
#define WH_OPAQUE ".wh..wh..opq"
#define WH_META ".wh..wh."
#define OPAQUE_XATTR "trusted.overlay.opaque"


/* ---- names ----
 *
 * libarchive converts names between the tar's encoding (UTF-8 in pax
 * headers) and the current locale's; hutchd runs in the C locale, where
 * any non-ASCII name (Debian's ca-certificates has some) cannot be
 * converted. Every libarchive use here switches its own thread to
 * C.UTF-8 (uselocale is per thread) for the duration. */

static locale_t g_utf8;
static pthread_once_t g_utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
	g_utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

locale_t layer_locale_enter(void)
{
	pthread_once(&g_utf8_once, utf8_init);
	return g_utf8 ? uselocale(g_utf8) : (locale_t)0;
}

void layer_locale_leave(locale_t old)
{
	if (old)
		uselocale(old);
}

/* ---- writing ---- */

typedef struct hardlink {
	dev_t dev;
	ino_t ino;
	char *path;
} hardlink_t;

typedef struct writer {
	struct archive *a;
	int fd;
	digest_ctx_t *hash;
	int64_t bytes;
	int io_errno;
	hardlink_t *links;
	size_t n_links;
	hutch_err_t *err;
	unsigned char buf[1 << 16];
} writer_t;

static la_ssize_t w_write(struct archive *a, void *data, const void *buf, size_t n)
{
	writer_t *w = data;
	(void)a;
	const char *p = buf;
	size_t left = n;
	while (left) {
		ssize_t k = write(w->fd, p, left);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			w->io_errno = errno;
			return -1;
		}
		p += k;
		left -= (size_t)k;
	}
	digest_update(w->hash, buf, n);
	w->bytes += (int64_t)n;
	return (la_ssize_t)n;
}

static int ar_fail(writer_t *w, const char *what)
{
	if (w->io_errno)
		return hutch_err_sys(w->err, w->io_errno, "layer tar: %s", what);
	return hutch_err_set(w->err, EIO, "layer tar: %s: %s", what, archive_error_string(w->a));
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_opaque(const char *path)
{
	char v[8];
	ssize_t n = lgetxattr(path, OPAQUE_XATTR, v, sizeof v);
	return n == 1 && v[0] == 'y';
}

/* Only xattrs that belong to the content travel: file capabilities and
 * user.*; never the host's trusted.* or security labels. */
static bool xattr_kept(const char *name)
{
	return strncmp(name, "user.", 5) == 0 || strcmp(name, "security.capability") == 0;
}

static int add_xattrs(writer_t *w, const char *path, struct archive_entry *e)
{
	char names[4096];
	ssize_t n = llistxattr(path, names, sizeof names);
	if (n < 0)
		return (errno == ENOTSUP || errno == ERANGE) ? 0 : hutch_err_sys(w->err, errno, "listxattr %s", path);
	/* Sorted for determinism. */
	char *v[64];
	size_t nv = 0;
	for (char *p = names; p < names + n && nv < 64; p += strlen(p) + 1)
		if (xattr_kept(p))
			v[nv++] = p;
	qsort(v, nv, sizeof *v, cmp_names);
	for (size_t i = 0; i < nv; i++) {
		char val[4096];
		ssize_t vl = lgetxattr(path, v[i], val, sizeof val);
		if (vl >= 0)
			archive_entry_xattr_add_entry(e, v[i], val, (size_t)vl);
	}
	return 0;
}

static int write_file_data(writer_t *w, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return hutch_err_sys(w->err, errno, "open %s", path);
	for (;;) {
		ssize_t n = read(fd, w->buf, sizeof w->buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return hutch_err_sys(w->err, errno, "read %s", path);
		if (n == 0)
			return 0;
		if (archive_write_data(w->a, w->buf, (size_t)n) != n)
			return ar_fail(w, path);
	}
}

static int write_simple(writer_t *w, const char *name, mode_t type, mode_t perm)
{
	struct archive_entry *e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, type);
	archive_entry_set_perm(e, perm);
	archive_entry_set_size(e, 0);
	/* Whiteouts and opaque markers carry no time of their own: the one
	 * of the node that stands for them changes whenever a layer is
	 * unpacked, and the tar must not. */
	archive_entry_set_mtime(e, 0, 0);
	int wr = archive_write_header(w->a, e);
	int r = wr == ARCHIVE_OK || wr == ARCHIVE_WARN ? 0 : ar_fail(w, name);
	archive_entry_free(e);
	return r;
}

/* A directory's entries but . and .., sorted (layers and fingerprints
 * must not depend on readdir's order). The caller frees each and the array. */
static size_t sorted_names(DIR *d, char ***out)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			names = xrealloc(names, cap * sizeof *names);
		}
		names[n++] = xstrdup(de->d_name);
	}
	if (n)
		qsort(names, n, sizeof *names, cmp_names);
	*out = names;
	return n;
}

static int write_tree(writer_t *w, const char *dir, const char *rel);

static int write_entry(writer_t *w, const char *path, const char *rel, const char *name)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return hutch_err_sys(w->err, errno, "stat %s", path);
	/* A whiteout. */
	if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0)) {
		const char *slash = strrchr(rel, '/');
		_cleanup_free_ char *wh = slash ? xasprintf("%.*s/" WH_PREFIX "%s", (int)(slash - rel), rel, name)
						: xasprintf(WH_PREFIX "%s", name);
		return write_simple(w, wh, AE_IFREG, 0644);
	}
	struct archive_entry *e = archive_entry_new();
	int r = 0;
	_cleanup_free_ char *entry_name = S_ISDIR(st.st_mode) ? xasprintf("%s/", rel) : xstrdup(rel);
	archive_entry_set_pathname(e, entry_name);
	archive_entry_set_perm(e, st.st_mode & 07777);
	archive_entry_set_uid(e, st.st_uid);
	archive_entry_set_gid(e, st.st_gid);
	archive_entry_set_mtime(e, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	bool data = false;
	if (S_ISREG(st.st_mode)) {
		archive_entry_set_filetype(e, AE_IFREG);
		const char *first = NULL;
		if (st.st_nlink > 1) {
			for (size_t i = 0; i < w->n_links; i++)
				if (w->links[i].dev == st.st_dev && w->links[i].ino == st.st_ino)
					first = w->links[i].path;
			if (!first) {
				w->links = xrealloc(w->links, (w->n_links + 1) * sizeof *w->links);
				w->links[w->n_links++] = (hardlink_t){st.st_dev, st.st_ino, xstrdup(rel)};
			}
		}
		if (first) {
			archive_entry_set_hardlink(e, first);
			archive_entry_set_size(e, 0);
		} else {
			archive_entry_set_size(e, st.st_size);
			data = st.st_size > 0;
		}
	} else if (S_ISDIR(st.st_mode)) {
		archive_entry_set_filetype(e, AE_IFDIR);
	} else if (S_ISLNK(st.st_mode)) {
		char target[PATH_MAX];
		ssize_t n = readlink(path, target, sizeof target - 1);
		if (n < 0) {
			archive_entry_free(e);
			return hutch_err_sys(w->err, errno, "readlink %s", path);
		}
		target[n] = '\0';
		archive_entry_set_filetype(e, AE_IFLNK);
		archive_entry_set_symlink(e, target);
	} else if (S_ISFIFO(st.st_mode)) {
		archive_entry_set_filetype(e, AE_IFIFO);
	} else {
		archive_entry_free(e);
		return 0; /* device nodes and sockets: not content (a sandbox has its own /dev) */
	}
	if (!S_ISLNK(st.st_mode))
		r = add_xattrs(w, path, e);
	if (r == 0) {
		/* WARN: a name that is not UTF-8, kept as bytes (hdrcharset=BINARY). */
		int wr = archive_write_header(w->a, e);
		if (wr != ARCHIVE_OK && wr != ARCHIVE_WARN)
			r = ar_fail(w, rel);
	}
	archive_entry_free(e);
	if (r == 0 && data)
		r = write_file_data(w, path);
	if (r == 0 && S_ISDIR(st.st_mode)) {
		if (is_opaque(path)) {
			_cleanup_free_ char *opq = xasprintf("%s/" WH_OPAQUE, rel);
			r = write_simple(w, opq, AE_IFREG, 0644);
		}
		if (r == 0)
			r = write_tree(w, path, rel);
	}
	return r;
}

static int write_tree(writer_t *w, const char *dir, const char *rel)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return hutch_err_sys(w->err, errno, "open %s", dir);
	char **names;
	size_t n = sorted_names(d, &names);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (r == 0) {
			_cleanup_free_ char *path = xasprintf("%s/%s", dir, names[i]);
			_cleanup_free_ char *child = rel ? xasprintf("%s/%s", rel, names[i]) : xstrdup(names[i]);
			r = write_entry(w, path, child, names[i]);
		}
		free(names[i]);
	}
	free(names);
	return r;
}

static int layer_tar_from_dir_utf8(const char *dir, int out_fd, char digest[DIGEST_STR_MAX],
		       int64_t *size, hutch_err_t *err)
{
	writer_t *w = xcalloc(1, sizeof *w);
	w->fd = out_fd;
	w->err = err;
	w->hash = digest_new();
	w->a = archive_write_new();
	archive_write_set_format_pax_restricted(w->a);
	archive_write_add_filter_none(w->a);
	archive_write_set_bytes_in_last_block(w->a, 1);
	int r = 0;
	if (archive_write_open2(w->a, w, NULL, w_write, NULL, NULL) != ARCHIVE_OK)
		r = ar_fail(w, "open");
	if (r == 0)
		r = write_tree(w, dir, NULL);
	if (archive_write_close(w->a) != ARCHIVE_OK && r == 0)
		r = ar_fail(w, "close");
	archive_write_free(w->a);
	if (r == 0) {
		digest_final(w->hash, digest);
		*size = w->bytes;
	} else {
		digest_free(w->hash);
	}
	for (size_t i = 0; i < w->n_links; i++)
		free(w->links[i].path);
	free(w->links);
	free(w);
	return r;
}

/* ---- reading ---- */

/* Opens the directory rel (relative to root_fd) without following any
 * symlink or leaving root, creating missing components when create. */
int layer_open_dir_beneath(int root_fd, const char *rel, bool create, hutch_err_t *err)
{
	int fd = dup(root_fd);
	if (fd < 0)
		return hutch_err_sys(err, errno, "dup");
	_cleanup_free_ char *copy = xstrdup(rel);
	char *save = NULL;
	for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0) {
			close(fd);
			return hutch_err_set(err, EINVAL, "layer: path `%s` leaves the layer", rel);
		}
		int next = openat(fd, c, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST) {
				int e = errno;
				close(fd);
				return hutch_err_sys(err, e, "layer: mkdir %s", rel);
			}
			next = openat(fd, c, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
		}
		if (next < 0) {
			int e = errno;
			close(fd);
			if (e == ELOOP || e == ENOTDIR)
				return hutch_err_set(err, EINVAL, "layer: `%s` goes through a symlink or file", rel);
			return hutch_err_sys(err, e, "layer: open %s", rel);
		}
		close(fd);
		fd = next;
	}
	return fd;
}

/* Removes name in dir_fd, recursively, never following symlinks. */
static int remove_at(int dir_fd, const char *name)
{
	struct stat st;
	if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dir_fd, name, 0) < 0 ? -errno : 0;
	int fd = openat(dir_fd, name, O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d)) && r == 0)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			r = remove_at(dirfd(d), de->d_name);
	closedir(d);
	if (r == 0 && unlinkat(dir_fd, name, AT_REMOVEDIR) < 0)
		r = -errno;
	return r;
}

/* "./a/b/" -> "a/b"; NULL for the root itself. */
static char *clean_rel(const char *p)
{
	while (*p == '/' || (p[0] == '.' && p[1] == '/'))
		p += *p == '/' ? 1 : 2;
	size_t n = strlen(p);
	while (n && p[n - 1] == '/')
		n--;
	if (n == 0 || (n == 1 && p[0] == '.'))
		return NULL;
	return xstrndup(p, n);
}

static bool has_dotdot(const char *rel)
{
	for (const char *c = rel; c && *c;) {
		const char *end = strchr(c, '/');
		size_t n = end ? (size_t)(end - c) : strlen(c);
		if (n == 2 && c[0] == '.' && c[1] == '.')
			return true;
		c = end ? end + 1 : NULL;
	}
	return false;
}

static int whiteout(int root_fd, const char *rel, hutch_err_t *err)
{
	const char *slash = strrchr(rel, '/');
	_cleanup_free_ char *parent = slash ? xstrndup(rel, (size_t)(slash - rel)) : xstrdup(".");
	const char *base = slash ? slash + 1 : rel;
	_cleanup_close_ int dfd = layer_open_dir_beneath(root_fd, parent, true, err);
	if (dfd < 0)
		return dfd;
	if (strcmp(base, WH_OPAQUE) == 0) {
		if (fsetxattr(dfd, OPAQUE_XATTR, "y", 1, 0) < 0)
			return hutch_err_sys(err, errno, "layer: mark %s opaque", parent);
		return 0;
	}
	const char *victim = base + strlen(WH_PREFIX);
	if (!*victim || strcmp(victim, ".") == 0 || strcmp(victim, "..") == 0)
		return hutch_err_set(err, EINVAL, "layer: bad whiteout `%s`", rel);
	int r = remove_at(dfd, victim);
	if (r < 0)
		return hutch_err_sys(err, -r, "layer: whiteout %s", rel);
	if (mknodat(dfd, victim, S_IFCHR | 0, makedev(0, 0)) < 0)
		return hutch_err_sys(err, errno, "layer: whiteout %s", rel);
	return 0;
}

static void strip_host_xattrs(struct archive_entry *e)
{
	if (archive_entry_xattr_reset(e) == 0)
		return;
	typedef struct kv {
		char *name;
		void *val;
		size_t len;
	} kv_t;
	kv_t keep[64];
	size_t n = 0;
	const char *name;
	const void *val;
	size_t len;
	while (archive_entry_xattr_next(e, &name, &val, &len) == ARCHIVE_OK && n < 64)
		if (xattr_kept(name)) {
			keep[n].name = xstrdup(name);
			keep[n].val = xmalloc(len ? len : 1);
			memcpy(keep[n].val, val, len);
			keep[n].len = len;
			n++;
		}
	archive_entry_xattr_clear(e);
	for (size_t i = 0; i < n; i++) {
		archive_entry_xattr_add_entry(e, keep[i].name, keep[i].val, keep[i].len);
		free(keep[i].name);
		free(keep[i].val);
	}
}

static int layer_tar_extract_utf8(const char *path, const char *dest, hutch_err_t *err)
{
	/* libarchive's symlink checks look at every component of the paths
	 * it is given: give it one without symlinks above the layer. */
	char dest_dir[PATH_MAX];
	if (!realpath(dest, dest_dir))
		return hutch_err_sys(err, errno, "layer: %s", dest);
	_cleanup_close_ int root_fd = open(dest_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (root_fd < 0)
		return hutch_err_sys(err, errno, "open %s", dest_dir);
	struct archive *in = archive_read_new();
	archive_read_support_format_tar(in);
	archive_read_support_filter_all(in);
	struct archive *out = archive_write_disk_new();
	archive_write_disk_set_options(out, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
						    ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_XATTR |
						    ARCHIVE_EXTRACT_UNLINK | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
						    ARCHIVE_EXTRACT_SECURE_NODOTDOT);
	/* Not ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS: every path handed to
	 * libarchive is dest_dir + a cleaned relative path checked here, so
	 * absolute on purpose. */
	int r = 0;
	if (archive_read_open_filename(in, path, 1 << 16) != ARCHIVE_OK) {
		r = hutch_err_set(err, EIO, "layer %s: %s", path, archive_error_string(in));
		goto out;
	}
	struct archive_entry *e;
	int ar;
	while (r == 0 && ((ar = archive_read_next_header(in, &e)) == ARCHIVE_OK || ar == ARCHIVE_WARN)) {
		_cleanup_free_ char *rel = clean_rel(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
		if (!rel)
			continue; /* the root itself */
		if (has_dotdot(rel)) {
			r = hutch_err_set(err, EINVAL, "layer: entry `%s` leaves the layer", rel);
			break;
		}
		const char *base = strrchr(rel, '/') ? strrchr(rel, '/') + 1 : rel;
		if (strcmp(base, WH_OPAQUE) != 0 && strncmp(base, WH_META, strlen(WH_META)) == 0)
			continue; /* aufs bookkeeping (.wh..wh.plnk, ...): not content */
		if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
			r = whiteout(root_fd, rel, err);
			continue;
		}
		mode_t type = archive_entry_filetype(e);
		if (type == AE_IFCHR || type == AE_IFBLK)
			continue; /* device nodes: a sandbox has its own /dev */
		_cleanup_free_ char *full = xasprintf("%s/%s", dest_dir, rel);
		archive_entry_set_pathname(e, full);
		const char *hl = archive_entry_hardlink(e);
		_cleanup_free_ char *hl_full = NULL;
		if (hl) {
			_cleanup_free_ char *hl_rel = clean_rel(hl);
			if (!hl_rel || has_dotdot(hl_rel)) {
				r = hutch_err_set(err, EINVAL, "layer: hard link `%s` leaves the layer", hl);
				break;
			}
			hl_full = xasprintf("%s/%s", dest_dir, hl_rel);
			archive_entry_set_hardlink(e, hl_full);
		}
		strip_host_xattrs(e);
		/* The parent must be a real directory inside the layer. */
		const char *slash = strrchr(rel, '/');
		if (slash) {
			_cleanup_free_ char *parent = xstrndup(rel, (size_t)(slash - rel));
			int pfd = layer_open_dir_beneath(root_fd, parent, true, err);
			if (pfd < 0) {
				r = pfd;
				break;
			}
			close(pfd);
		}
		int wr = archive_write_header(out, e);
		if (wr != ARCHIVE_OK && wr != ARCHIVE_WARN) {
			r = hutch_err_set(err, EIO, "layer: %s: %s", rel, archive_error_string(out));
			break;
		}
		const void *buf;
		size_t len;
		la_int64_t off;
		int dr;
		while ((dr = archive_read_data_block(in, &buf, &len, &off)) == ARCHIVE_OK)
			if (archive_write_data_block(out, buf, len, off) != ARCHIVE_OK) {
				dr = ARCHIVE_FATAL;
				break;
			}
		if (dr != ARCHIVE_EOF) {
			r = hutch_err_set(err, EIO, "layer: %s: %s", rel,
					  archive_error_string(dr == ARCHIVE_FATAL ? out : in)
						  ? archive_error_string(dr == ARCHIVE_FATAL ? out : in) : "read failed");
			break;
		}
		wr = archive_write_finish_entry(out);
		if (wr != ARCHIVE_OK && wr != ARCHIVE_WARN) {
			r = hutch_err_set(err, EIO, "layer: %s: %s", rel, archive_error_string(out));
			break;
		}
	}
	if (r == 0 && ar != ARCHIVE_EOF)
		r = hutch_err_set(err, EIO, "layer %s: %s", path, archive_error_string(in));
out:
	if (archive_write_close(out) != ARCHIVE_OK && r == 0)
		r = hutch_err_set(err, EIO, "layer: %s", archive_error_string(out));
	archive_write_free(out);
	archive_read_free(in);
	return r;
}

static int layer_tar_decompress_utf8(const char *src_path, int out_fd, char digest[DIGEST_STR_MAX],
			 int64_t *size, hutch_err_t *err)
{
	struct archive *in = archive_read_new();
	archive_read_support_format_raw(in);
	archive_read_support_filter_all(in);
	int r = 0;
	digest_ctx_t *h = digest_new();
	int64_t total = 0;
	struct archive_entry *e;
	if (archive_read_open_filename(in, src_path, 1 << 16) != ARCHIVE_OK ||
	    archive_read_next_header(in, &e) != ARCHIVE_OK) {
		r = hutch_err_set(err, EIO, "layer %s: %s", src_path, archive_error_string(in));
		goto out;
	}
	static __thread char buf[1 << 16];
	for (;;) {
		la_ssize_t n = archive_read_data(in, buf, sizeof buf);
		if (n < 0) {
			r = hutch_err_set(err, EIO, "layer %s: %s", src_path, archive_error_string(in));
			break;
		}
		if (n == 0)
			break;
		const char *p = buf;
		size_t left = (size_t)n;
		while (left) {
			ssize_t k = write(out_fd, p, left);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				r = hutch_err_sys(err, errno, "layer: write");
				goto out;
			}
			p += k;
			left -= (size_t)k;
		}
		digest_update(h, buf, (size_t)n);
		total += n;
	}
out:
	archive_read_free(in);
	if (r == 0) {
		digest_final(h, digest);
		*size = total;
	} else {
		digest_free(h);
	}
	return r;
}

/* ---- fingerprints ---- */

static int fp_tree(digest_ctx_t *h, const char *dir, const char *rel, int64_t *bytes,
		   int64_t *entries, hutch_err_t *err)
{
	_cleanup_closedir_ DIR *d = opendir(dir);
	if (!d)
		return hutch_err_sys(err, errno, "open %s", dir);
	char **names;
	size_t n = sorted_names(d, &names);
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (r == 0) {
			struct stat st;
			if (fstatat(dirfd(d), names[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
				r = hutch_err_sys(err, errno, "stat %s/%s", dir, names[i]);
			} else {
				char line[512];
				int len = snprintf(line, sizeof line,
						   "%s/%s\t%o\t%u\t%u\t%lld\t%lld.%09ld\t%lld.%09ld\t%llu\t%llu\t%llu\n",
						   rel ? rel : "", names[i], (unsigned)st.st_mode,
						   (unsigned)st.st_uid, (unsigned)st.st_gid,
						   (long long)st.st_size, (long long)st.st_mtim.tv_sec,
						   st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec,
						   st.st_ctim.tv_nsec, (unsigned long long)st.st_ino,
						   (unsigned long long)st.st_nlink,
						   (unsigned long long)st.st_rdev);
				digest_update(h, line, (size_t)(len < (int)sizeof line ? len : (int)sizeof line - 1));
				*bytes += (int64_t)st.st_blocks * 512;
				(*entries)++;
				if (S_ISDIR(st.st_mode)) {
					_cleanup_free_ char *sub = xasprintf("%s/%s", dir, names[i]);
					_cleanup_free_ char *subrel = rel ? xasprintf("%s/%s", rel, names[i])
									  : xstrdup(names[i]);
					r = fp_tree(h, sub, subrel, bytes, entries, err);
				}
			}
		}
		free(names[i]);
	}
	free(names);
	return r;
}

int layer_dir_fingerprint(const char *dir, char fp[DIGEST_STR_MAX], int64_t *disk_bytes,
			  hutch_err_t *err)
{
	digest_ctx_t *h = digest_new();
	int64_t bytes = 0, entries = 0;
	struct stat st;
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
		digest_free(h);
		return hutch_err_sys(err, errno ? errno : ENOTDIR, "layer dir %s", dir);
	}
	char top[128];
	int len = snprintf(top, sizeof top, "/\t%o\t%u\t%u\n", (unsigned)st.st_mode,
			   (unsigned)st.st_uid, (unsigned)st.st_gid);
	digest_update(h, top, (size_t)len);
	int r = fp_tree(h, dir, NULL, &bytes, &entries, err);
	if (r < 0) {
		digest_free(h);
		return r;
	}
	digest_final(h, fp);
	if (disk_bytes)
		*disk_bytes = bytes;
	return 0;
}

int layer_tar_from_dir(const char *dir, int out_fd, char digest[DIGEST_STR_MAX],
		       int64_t *size, hutch_err_t *err)
{
	locale_t old = layer_locale_enter();
	int r = layer_tar_from_dir_utf8(dir, out_fd, digest, size, err);
	layer_locale_leave(old);
	return r;
}

int layer_tar_extract(const char *path, const char *dest, hutch_err_t *err)
{
	locale_t old = layer_locale_enter();
	int r = layer_tar_extract_utf8(path, dest, err);
	layer_locale_leave(old);
	return r;
}

int layer_tar_decompress(const char *src_path, int out_fd, char digest[DIGEST_STR_MAX],
			 int64_t *size, hutch_err_t *err)
{
	locale_t old = layer_locale_enter();
	int r = layer_tar_decompress_utf8(src_path, out_fd, digest, size, err);
	layer_locale_leave(old);
	return r;
}
