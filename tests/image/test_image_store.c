/* Layers and the image store without a daemon: the overlay form and the
 * OCI tar form of a layer (whiteouts, opaque directories, links, modes,
 * determinism), hostile tars, the store's integrity checks (a changed
 * directory or blob is repaired or refused, never used), the build cache,
 * key locks and the garbage collection. Needs root (whiteouts are device
 * nodes, opaque markers trusted.* xattrs), as hutchd does. */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "cleanup.h"
#include "image_store.h"
#include "layer_tar.h"
#include "strbuf.h"

static char *g_dir;

static char *path_in(const char *fmt, const char *a)
{
	_cleanup_free_ char *rel = xasprintf(fmt, a);
	return xasprintf("%s/%s", g_dir, rel);
}

static void put(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	chmod(path, mode);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	strbuf_t sb = STRBUF_INIT;
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		sb_append_n(&sb, buf, n);
	fclose(f);
	return sb_steal(&sb);
}

static void run(const char *cmd)
{
	CHECK_EQ_INT(system(cmd), 0);
}

/* A directory in overlay form with one of everything a layer can hold. */
static char *make_tree(const char *name)
{
	char *root = path_in("%s", name);
	CHECK_EQ_INT(mkdir(root, 0755), 0);
	_cleanup_free_ char *p = NULL;
#define P(rel) (free(p), p = xasprintf("%s/%s", root, rel))
	put(P("file"), "content\n", 0640);
	put(P("exe"), "#!/bin/sh\n", 04755);
	CHECK_EQ_INT(symlink("file", P("link")), 0);
	_cleanup_free_ char *f = xasprintf("%s/file", root);
	CHECK_EQ_INT(link(f, P("hard")), 0);
	CHECK_EQ_INT(mkdir(P("dir"), 0700), 0);
	put(P("dir/inner"), "inner\n", 0644);
	CHECK_EQ_INT(mknod(P("gone"), S_IFCHR | 0, makedev(0, 0)), 0); /* whiteout */
	CHECK_EQ_INT(mkdir(P("opaque"), 0755), 0);
	CHECK_EQ_INT(setxattr(P("opaque"), "trusted.overlay.opaque", "y", 1, 0), 0);
	put(P("opaque/kept"), "kept\n", 0644);
	CHECK_EQ_INT(setxattr(P("file"), "user.origin", "test", 4, 0), 0);
	CHECK_EQ_INT(mkfifo(P("fifo"), 0600), 0);
	CHECK_EQ_INT(mknod(P("blockdev"), S_IFBLK | 0600, makedev(7, 0)), 0); /* not content */
	put(P("caf\xe9-latin1"), "not utf-8 name\n", 0644);
	put(P("Főtanúsítvány"), "utf-8 name\n", 0644);
#undef P
	return root;
}

static int64_t tar_of(const char *dir, const char *out, char digest[DIGEST_STR_MAX])
{
	int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int64_t size = -1;
	hutch_err_t err = {0};
	CHECK_EQ_INT(layer_tar_from_dir(dir, fd, digest, &size, &err), 0);
	if (err.message[0])
		fprintf(stderr, "%s\n", err.message);
	close(fd);
	return size;
}

static void layer_roundtrip(void)
{
	_cleanup_free_ char *root = make_tree("tree");
	_cleanup_free_ char *t1 = path_in("%s", "t1.tar"), *t2 = path_in("%s", "t2.tar");
	char d1[DIGEST_STR_MAX], d2[DIGEST_STR_MAX];
	int64_t size = tar_of(root, t1, d1);
	CHECK(size > 0);
	tar_of(root, t2, d2);
	CHECK_STR(d1, d2); /* the same directory, the same bytes */
	char want[DIGEST_STR_MAX];
	hutch_err_t err = {0};
	int64_t fsize;
	CHECK_EQ_INT(digest_file(t1, want, &fsize, &err), 0);
	CHECK_STR(d1, want);
	CHECK_EQ_INT(fsize, size);
	/* In OCI form: whiteout and opaque marker as files, no device. */
	_cleanup_free_ char *list = path_in("%s", "list.txt");
	_cleanup_free_ char *cmd = xasprintf("tar -tf %s > %s", t1, list);
	run(cmd);
	_cleanup_free_ char *names = slurp(list);
	CHECK_CONTAINS(names, ".wh.gone\n");
	CHECK_CONTAINS(names, "opaque/.wh..wh..opq\n");
	CHECK(!strstr(names, "blockdev"));
	/* Back to overlay form. */
	_cleanup_free_ char *out = path_in("%s", "out");
	CHECK_EQ_INT(mkdir(out, 0755), 0);
	CHECK_EQ_INT(layer_tar_extract(t1, out, &err), 0);
	if (err.message[0])
		fprintf(stderr, "%s\n", err.message);
	struct stat st, st2;
	_cleanup_free_ char *p = NULL;
#define P(rel) (free(p), p = xasprintf("%s/%s", out, rel))
	CHECK(lstat(P("gone"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0));
	char v[8] = "";
	CHECK_EQ_INT(getxattr(P("opaque"), "trusted.overlay.opaque", v, sizeof v), 1);
	CHECK(v[0] == 'y');
	CHECK(access(P("opaque/.wh..wh..opq"), F_OK) < 0);
	CHECK(lstat(P("file"), &st) == 0 && (st.st_mode & 07777) == 0640);
	CHECK(lstat(P("hard"), &st2) == 0 && st.st_ino == st2.st_ino);
	CHECK(lstat(P("exe"), &st) == 0 && (st.st_mode & 07777) == 04755);
	CHECK(lstat(P("dir"), &st) == 0 && (st.st_mode & 07777) == 0700);
	char target[64] = "";
	CHECK(readlink(P("link"), target, sizeof target - 1) == 4 && strcmp(target, "file") == 0);
	CHECK_EQ_INT(getxattr(P("file"), "user.origin", v, sizeof v), 4);
	CHECK(lstat(P("fifo"), &st) == 0 && S_ISFIFO(st.st_mode));
	CHECK(lstat(P("blockdev"), &st) < 0);
	CHECK(access(P("caf\xe9-latin1"), F_OK) == 0);
	CHECK(access(P("Főtanúsítvány"), F_OK) == 0);
	_cleanup_free_ char *inner = slurp(P("dir/inner"));
	CHECK_STR(inner, "inner\n");
#undef P
	/* Written again from what was extracted: the same digest. */
	_cleanup_free_ char *t3 = path_in("%s", "t3.tar");
	char d3[DIGEST_STR_MAX];
	tar_of(out, t3, d3);
	CHECK_STR(d3, d1);
	if (getenv("HUTCH_TEST_KEEP")) {
		_cleanup_free_ char *cp = xasprintf("cp %s %s /tmp/vg/", t1, t3);
		CHECK_EQ_INT(system(cp), 0);
	}
}

/* A tar written entry by entry, as a hostile registry might. */
typedef struct tentry {
	const char *name;
	mode_t type;
	const char *data;     /* regular files */
	const char *link;     /* symlink target or hard link name */
	const char *xattr;    /* "name=value" */
} tentry_t;

static void write_tar(const char *path, const tentry_t *entries, size_t n)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	CHECK(archive_write_open_filename(a, path) == ARCHIVE_OK);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, entries[i].name);
		archive_entry_set_filetype(e, entries[i].type);
		archive_entry_set_perm(e, 0644);
		if (entries[i].type == AE_IFLNK)
			archive_entry_set_symlink(e, entries[i].link);
		else if (entries[i].link)
			archive_entry_set_hardlink(e, entries[i].link);
		if (entries[i].type == AE_IFCHR)
			archive_entry_set_rdev(e, makedev(1, 3));
		if (entries[i].xattr) {
			const char *eq = strchr(entries[i].xattr, '=');
			_cleanup_free_ char *name = xstrndup(entries[i].xattr, (size_t)(eq - entries[i].xattr));
			archive_entry_xattr_add_entry(e, name, eq + 1, strlen(eq + 1));
		}
		size_t len = entries[i].data ? strlen(entries[i].data) : 0;
		archive_entry_set_size(e, entries[i].type == AE_IFREG && !entries[i].link ? (la_int64_t)len : 0);
		CHECK(archive_write_header(a, e) == ARCHIVE_OK);
		if (len && !entries[i].link)
			archive_write_data(a, entries[i].data, len);
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
}

static int extract_entries(const char *what, const tentry_t *entries, size_t n, char **out_dir,
			   hutch_err_t *err)
{
	_cleanup_free_ char *tar = path_in("%s.tar", what);
	write_tar(tar, entries, n);
	char *dir = path_in("%s.out", what);
	CHECK_EQ_INT(mkdir(dir, 0755), 0);
	*out_dir = dir;
	return layer_tar_extract(tar, dir, err);
}

static void hostile_tars(void)
{
	hutch_err_t err = {0};
	char *dir;
	/* Outside the layer in every way a tar can say it. */
	tentry_t dotdot[] = {{"../escape", AE_IFREG, "x", NULL, NULL}};
	CHECK(extract_entries("dotdot", dotdot, 1, &dir, &err) < 0);
	CHECK_CONTAINS(err.message, "leaves the layer");
	free(dir);
	/* The link points at a directory of the test's own, so that only the
	 * extraction could have put a file there. */
	_cleanup_free_ char *outside = path_in("%s", "outside");
	CHECK_EQ_INT(mkdir(outside, 0700), 0);
	tentry_t via_link[] = {{"l", AE_IFLNK, NULL, outside, NULL}, {"l/owned", AE_IFREG, "x", NULL, NULL}};
	CHECK(extract_entries("via_link", via_link, 2, &dir, &err) < 0);
	CHECK_CONTAINS(err.message, "symlink");
	_cleanup_free_ char *owned = path_in("%s", "outside/owned");
	CHECK(access(owned, F_OK) < 0);
	free(dir);
	tentry_t rel_link[] = {{"up", AE_IFLNK, NULL, "../../..", NULL}, {"up/etc/owned", AE_IFREG, "x", NULL, NULL}};
	CHECK(extract_entries("rel_link", rel_link, 2, &dir, &err) < 0);
	free(dir);
	tentry_t hard_out[] = {{"h", AE_IFREG, NULL, "../../../etc/passwd", NULL}};
	CHECK(extract_entries("hard_out", hard_out, 1, &dir, &err) < 0);
	CHECK_CONTAINS(err.message, "leaves the layer");
	free(dir);
	/* An absolute name is taken as relative to the layer. */
	tentry_t abs[] = {{"/etc/abs", AE_IFREG, "x", NULL, NULL}};
	CHECK_EQ_INT(extract_entries("abs", abs, 1, &dir, &err), 0);
	_cleanup_free_ char *in = xasprintf("%s/etc/abs", dir);
	CHECK(access(in, F_OK) == 0);
	free(dir);
	/* Devices are not content; trusted.* xattrs never come from a tar;
	 * whiteouts and opaque markers do become overlay metadata. */
	tentry_t meta[] = {
		{"null", AE_IFCHR, NULL, NULL, NULL},
		{"d/", AE_IFDIR, NULL, NULL, "trusted.overlay.opaque=y"},
		{"d/f", AE_IFREG, "f", NULL, "trusted.evil=1"},
		{"e/", AE_IFDIR, NULL, NULL, NULL},
		{"e/.wh..wh..opq", AE_IFREG, "", NULL, NULL},
		{".wh.removed", AE_IFREG, "", NULL, NULL},
		{".wh..wh.plnk", AE_IFREG, "", NULL, NULL},
	};
	CHECK_EQ_INT(extract_entries("meta", meta, ARRAY_SIZE(meta), &dir, &err), 0);
	_cleanup_free_ char *p = NULL;
#define P(rel) (free(p), p = xasprintf("%s/%s", dir, rel))
	struct stat st;
	char v[8];
	CHECK(lstat(P("null"), &st) < 0);
	CHECK(getxattr(P("d"), "trusted.overlay.opaque", v, sizeof v) < 0);
	CHECK(getxattr(P("d/f"), "trusted.evil", v, sizeof v) < 0);
	CHECK_EQ_INT(getxattr(P("e"), "trusted.overlay.opaque", v, sizeof v), 1);
	CHECK(lstat(P("removed"), &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == 0);
	CHECK(lstat(P(".wh..wh.plnk"), &st) < 0 && lstat(P(".wh.plnk"), &st) < 0);
#undef P
	free(dir);
	/* Not a tar at all. */
	_cleanup_free_ char *junk = path_in("%s", "junk.tar");
	put(junk, "this is not a tar archive, not even close to one............", 0644);
	_cleanup_free_ char *jd = path_in("%s", "junk.out");
	mkdir(jd, 0755);
	CHECK(layer_tar_extract(junk, jd, &err) < 0);
}

static image_store_t *open_store(const char *name)
{
	_cleanup_free_ char *state = path_in("%s", name);
	mkdir(state, 0700);
	image_store_t *s = NULL;
	hutch_err_t err = {0};
	CHECK_EQ_INT(image_store_open(state, &s, &err), 0);
	return s;
}

/* A layer made from a fresh copy of make_tree's tree. */
static void store_layer(image_store_t *s, const char *name, char digest[DIGEST_STR_MAX])
{
	_cleanup_free_ char *root = make_tree(name);
	int64_t size;
	hutch_err_t err = {0};
	CHECK_EQ_INT(image_store_layer_from_dir(s, root, digest, &size, &err), 0);
	CHECK(access(root, F_OK) < 0); /* moved into the store */
}

static void integrity_repair_and_refuse(void)
{
	image_store_t *s = open_store("state1");
	char d[DIGEST_STR_MAX];
	store_layer(s, "l1", d);
	hutch_err_t err = {0};
	CHECK(image_store_layer_exists(s, d));
	CHECK_EQ_INT(image_store_layer_check(s, d, false, &err), 0);
	CHECK_EQ_INT(image_store_layer_check(s, d, true, &err), 0);
	_cleanup_free_ char *root = image_store_layer_root(s, d);
	_cleanup_free_ char *file = xasprintf("%s/file", root);
	/* A file in the directory changed (same size, mtime put back): the
	 * ctime tells, and the directory is made again from the blob. */
	struct stat st;
	stat(file, &st);
	put(file, "CONTENT\n", 0640);
	struct timespec times[2] = {st.st_atim, st.st_mtim};
	utimensat(AT_FDCWD, file, times, 0);
	CHECK_EQ_INT(image_store_layer_check(s, d, false, &err), 0);
	_cleanup_free_ char *back = slurp(file);
	CHECK_STR(back, "content\n");
	/* The blob changed: the directory is intact and our tars are
	 * deterministic, so the blob is written again. */
	_cleanup_free_ char *blob = image_store_blob_path(s, d);
	int fd = open(blob, O_WRONLY);
	CHECK(pwrite(fd, "X", 1, 700) == 1);
	close(fd);
	CHECK_EQ_INT(image_store_layer_check(s, d, false, &err), 0);
	char now[DIGEST_STR_MAX];
	CHECK_EQ_INT(digest_file(blob, now, NULL, &err), 0);
	CHECK_STR(now, d);
	/* Both changed: nothing to trust. The layer is refused and removed. */
	fd = open(blob, O_WRONLY);
	CHECK(pwrite(fd, "X", 1, 700) == 1);
	close(fd);
	put(file, "CHANGED\n", 0640);
	CHECK(image_store_layer_check(s, d, false, &err) < 0);
	CHECK_CONTAINS(err.message, "is corrupted");
	CHECK_EQ_INT(err.code, EIO);
	CHECK(!image_store_layer_exists(s, d));
	CHECK(!image_store_blob_exists(s, d));
	CHECK_EQ_INT(image_store_layer_check(s, d, false, &err), -ENOENT);
	image_store_unpin(s, d);
	image_store_free(s);
}

static void foreign_layer_refused(void)
{
	/* A layer from a registry (a tar hutch did not write): a damaged blob
	 * cannot be written again, so the layer is refused. */
	image_store_t *s = open_store("state2");
	tentry_t entries[] = {{"z", AE_IFREG, "last\n", NULL, NULL}, {"a", AE_IFREG, "first\n", NULL, NULL}};
	_cleanup_free_ char *tar = path_in("%s", "foreign.tar");
	write_tar(tar, entries, 2);
	char d[DIGEST_STR_MAX];
	int64_t size;
	hutch_err_t err = {0};
	CHECK_EQ_INT(image_store_layer_from_tar(s, tar, d, &size, &err), 0);
	char want[DIGEST_STR_MAX];
	CHECK_EQ_INT(digest_file(tar, want, NULL, &err), 0);
	CHECK_STR(d, want); /* uncompressed: its digest is its diff id */
	_cleanup_free_ char *blob = image_store_blob_path(s, d);
	int fd = open(blob, O_WRONLY);
	CHECK(pwrite(fd, "Y", 1, 600) == 1);
	close(fd);
	CHECK(image_store_layer_check(s, d, false, &err) < 0);
	CHECK_CONTAINS(err.message, "is corrupted");
	image_store_unpin(s, d);
	/* A gzip'ed layer is stored uncompressed, under its diff id. */
	_cleanup_free_ char *cmd = xasprintf("gzip -c %s > %s.gz", tar, tar);
	run(cmd);
	_cleanup_free_ char *gz = xasprintf("%s.gz", tar);
	char d2[DIGEST_STR_MAX];
	CHECK_EQ_INT(image_store_layer_from_tar(s, gz, d2, &size, &err), 0);
	CHECK_STR(d2, want);
	image_store_unpin(s, d2);
	image_store_free(s);
}

static void blobs_and_cache(void)
{
	image_store_t *s = open_store("state3");
	hutch_err_t err = {0};
	char d[DIGEST_STR_MAX];
	CHECK_EQ_INT(image_store_blob_put(s, "{\"a\":1}", 7, d, &err), 0);
	char *data;
	size_t len;
	CHECK_EQ_INT(image_store_blob_read(s, d, 1024, &data, &len, &err), 0);
	CHECK(len == 7 && memcmp(data, "{\"a\":1}", 7) == 0);
	free(data);
	_cleanup_free_ char *blob = image_store_blob_path(s, d);
	put(blob, "{\"a\":2}", 0644);
	CHECK(image_store_blob_read(s, d, 1024, &data, &len, &err) < 0);
	CHECK_CONTAINS(err.message, "corrupted");
	CHECK(!image_store_blob_exists(s, d));
	CHECK(image_store_blob_read(s, "sha256:../../etc", 1024, &data, &len, &err) < 0);

	image_cache_entry_t e = {0}, got;
	char key[DIGEST_STR_MAX];
	digest_buf("key", 3, key);
	snprintf(e.layers[0], DIGEST_STR_MAX, "%s", d);
	e.n_layers = 1;
	CHECK_EQ_INT(image_store_cache_get(s, "acme", key, &got), -ENOENT);
	CHECK_EQ_INT(image_store_cache_put(s, "acme", key, &e, &err), 0);
	CHECK_EQ_INT(image_store_cache_get(s, "acme", key, &got), 0);
	CHECK_EQ_INT(got.n_layers, 1);
	CHECK_STR(got.layers[0], d);
	/* Scopes: another tenant, and the global scope, see nothing. */
	CHECK_EQ_INT(image_store_cache_get(s, "other", key, &got), -ENOENT);
	CHECK_EQ_INT(image_store_cache_get(s, NULL, key, &got), -ENOENT);
	image_store_cache_drop(s, "acme", key);
	CHECK_EQ_INT(image_store_cache_get(s, "acme", key, &got), -ENOENT);
	image_store_free(s);
}

typedef struct locker {
	image_store_t *s;
	char key[DIGEST_STR_MAX];
	bool waited;
	int64_t got_at;
} locker_t;

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *lock_thread(void *arg)
{
	locker_t *l = arg;
	image_store_key_lock(l->s, l->key, NULL, &l->waited);
	l->got_at = mono_ms();
	image_store_key_unlock(l->s, l->key);
	return NULL;
}

static void key_locks(void)
{
	image_store_t *s = open_store("state4");
	locker_t l = {.s = s};
	digest_buf("k", 1, l.key);
	bool waited;
	CHECK_EQ_INT(image_store_key_lock(s, l.key, NULL, &waited), 0);
	CHECK(!waited);
	pthread_t t;
	pthread_create(&t, NULL, lock_thread, &l);
	usleep(300 * 1000);
	int64_t released = mono_ms();
	image_store_key_unlock(s, l.key);
	pthread_join(t, NULL);
	CHECK(l.waited);
	CHECK(l.got_at >= released);
	/* A cancelled wait gives up. */
	atomic_bool cancel = true;
	CHECK_EQ_INT(image_store_key_lock(s, l.key, NULL, &waited), 0);
	CHECK_EQ_INT(image_store_key_lock(s, l.key, &cancel, &waited), -ECANCELED);
	image_store_key_unlock(s, l.key);
	image_store_free(s);
}

static void garbage_collection(void)
{
	image_store_t *s = open_store("state5");
	char keep[DIGEST_STR_MAX], drop[DIGEST_STR_MAX], blob[DIGEST_STR_MAX];
	store_layer(s, "g1", keep);
	_cleanup_free_ char *root = make_tree("g2");
	_cleanup_free_ char *extra = xasprintf("%s/extra", root);
	put(extra, "makes it a different layer\n", 0644);
	int64_t size;
	hutch_err_t err = {0};
	CHECK_EQ_INT(image_store_layer_from_dir(s, root, drop, &size, &err), 0);
	CHECK(strcmp(keep, drop) != 0);
	CHECK_EQ_INT(image_store_blob_put(s, "config", 6, blob, &err), 0);
	/* keep stays pinned (an image holds it); drop and the blob do not. */
	image_store_unpin(s, drop);
	image_cache_entry_t e = {0};
	snprintf(e.layers[0], DIGEST_STR_MAX, "%s", drop);
	e.n_layers = 1;
	char key[DIGEST_STR_MAX];
	digest_buf("step", 4, key);
	CHECK_EQ_INT(image_store_cache_put(s, "acme", key, &e, &err), 0);
	image_gc_result_t res;
	CHECK_EQ_INT(image_store_gc(s, NULL, 0, &res, &err), 0);
	CHECK_EQ_INT(res.layers_removed, 1);
	CHECK_EQ_INT(res.blobs_removed, 1); /* the config; a layer's blob goes with it */
	CHECK(res.freed_bytes > 0);
	CHECK(image_store_layer_exists(s, keep));
	CHECK(image_store_blob_exists(s, keep));
	CHECK(!image_store_layer_exists(s, drop));
	CHECK(!image_store_blob_exists(s, drop));
	CHECK(!image_store_blob_exists(s, blob));
	image_cache_entry_t got;
	CHECK_EQ_INT(image_store_cache_get(s, "acme", key, &got), -ENOENT); /* its layer is gone */
	/* Unpinned, keep goes too. */
	image_store_unpin(s, keep);
	CHECK_EQ_INT(image_store_gc(s, NULL, 0, &res, &err), 0);
	CHECK_EQ_INT(res.layers_removed, 1);
	CHECK(!image_store_layer_exists(s, keep));
	image_store_free(s);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/hutch-test-image-store-XXXXXX";
	if (!mkdtemp(dir))
		return 2;
	g_dir = dir;
	static const test_case_t cases[] = {
		{"layer_roundtrip", layer_roundtrip},
		{"hostile_tars", hostile_tars},
		{"integrity_repair_and_refuse", integrity_repair_and_refuse},
		{"foreign_layer_refused", foreign_layer_refused},
		{"blobs_and_cache", blobs_and_cache},
		{"key_locks", key_locks},
		{"garbage_collection", garbage_collection},
		{NULL, NULL},
	};
	int r = run_cases(cases, argc, argv);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", dir);
	if (system(cmd) != 0)
		r = 1;
	return r;
}
