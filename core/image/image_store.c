#include "image_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "layer_tar.h"
#include "log.h"
#include "proc.h"
#include "strbuf.h"

typedef struct pin {
	char digest[DIGEST_STR_MAX];
	int count;
} pin_t;

typedef struct key_lock {
	char key[DIGEST_STR_MAX];
	struct key_lock *next;
} key_lock_t;

struct image_store {
	char *dir;
	pthread_mutex_t lock;    /* pins, key locks, publishing and unpublishing */
	pthread_cond_t key_cond;
	pthread_mutex_t repair;  /* one layer repair at a time */
	pin_t *pins;
	size_t n_pins, cap_pins;
	key_lock_t *keys;
	unsigned tmp_seq;
};

/* ---- small helpers ---- */

static void remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 300000, NULL, 0, &e) < 0)
		log_warn("images: remove %s: %s", path, e.message);
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_small(const char *path, size_t max, char **out, size_t *len)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	strbuf_t sb = STRBUF_INIT;
	char buf[8192];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sb_free(&sb);
			return -errno;
		}
		if (n == 0)
			break;
		if (sb.len + (size_t)n > max) {
			sb_free(&sb);
			return -EFBIG;
		}
		sb_append_n(&sb, buf, (size_t)n);
	}
	*len = sb.len;
	*out = sb_steal(&sb);
	return 0;
}

/* Writes data to path atomically (tmp file + rename). */
static int write_atomic(image_store_t *s, const char *path, const char *data, size_t len,
			hutch_err_t *err)
{
	_cleanup_free_ char *tmp = image_store_tmp_path(s, "w");
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tmp);
	int r = write_all(fd, data, len);
	if (r < 0) {
		unlink(tmp);
		return hutch_err_sys(err, -r, "write %s", tmp);
	}
	if (rename(tmp, path) < 0) {
		r = hutch_err_sys(err, errno, "rename to %s", path);
		unlink(tmp);
		return r;
	}
	return 0;
}

/* Unmounts whatever a crashed daemon left mounted under dir. */
static void unmount_below(const char *dir)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return;
	char line[8192];
	size_t dl = strlen(dir);
	while (fgets(line, sizeof line, f)) {
		char mp[4096];
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) == 1 && strncmp(mp, dir, dl) == 0 &&
		    mp[dl] == '/')
			umount2(mp, MNT_DETACH);
	}
}

/* ---- open ---- */

int image_store_open(const char *state_dir, image_store_t **out, hutch_err_t *err)
{
	image_store_t *s = xcalloc(1, sizeof *s);
	s->dir = xasprintf("%s/images", state_dir);
	static const char *const subdirs[] = {"", "/blobs", "/blobs/sha256", "/layers", "/cache",
					      "/cache/global", "/files", "/files/sha256", "/tmp", NULL};
	for (const char *const *d = subdirs; *d; d++) {
		_cleanup_free_ char *p = xasprintf("%s%s", s->dir, *d);
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			int r = hutch_err_sys(err, errno, "mkdir %s", p);
			free(s->dir);
			free(s);
			return r;
		}
	}
	/* Scratch of a daemon that ended mid-build. */
	_cleanup_free_ char *tmp = xasprintf("%s/tmp", s->dir);
	unmount_below(tmp);
	_cleanup_closedir_ DIR *d = opendir(tmp);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *p = xasprintf("%s/%s", tmp, de->d_name);
		remove_tree(p);
	}
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->repair, NULL);
	pthread_cond_init(&s->key_cond, NULL);
	*out = s;
	return 0;
}

void image_store_free(image_store_t *s)
{
	if (!s)
		return;
	while (s->keys) {
		key_lock_t *k = s->keys;
		s->keys = k->next;
		free(k);
	}
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->repair);
	pthread_cond_destroy(&s->key_cond);
	free(s->pins);
	free(s->dir);
	free(s);
}

const char *image_store_dir(const image_store_t *s)
{
	return s->dir;
}

char *image_store_tmp_path(image_store_t *s, const char *what)
{
	uint32_t rnd = 0;
	if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
		rnd = (uint32_t)rand();
	pthread_mutex_lock(&s->lock);
	unsigned seq = ++s->tmp_seq;
	pthread_mutex_unlock(&s->lock);
	return xasprintf("%s/tmp/%s-%08x-%u", s->dir, what, rnd, seq);
}

char *image_store_tmp_dir(image_store_t *s, const char *what, hutch_err_t *err)
{
	char *p = image_store_tmp_path(s, what);
	if (mkdir(p, 0755) < 0) {
		hutch_err_sys(err, errno, "mkdir %s", p);
		free(p);
		return NULL;
	}
	return p;
}

/* ---- blobs ---- */

char *image_store_blob_path(const image_store_t *s, const char *digest)
{
	return xasprintf("%s/blobs/sha256/%s", s->dir, digest_hex(digest));
}

bool image_store_blob_exists(const image_store_t *s, const char *digest)
{
	if (!digest_valid(digest))
		return false;
	_cleanup_free_ char *p = image_store_blob_path(s, digest);
	return access(p, F_OK) == 0;
}

int image_store_blob_put(image_store_t *s, const void *data, size_t len,
			 char digest_out[DIGEST_STR_MAX], hutch_err_t *err)
{
	digest_buf(data, len, digest_out);
	_cleanup_free_ char *path = image_store_blob_path(s, digest_out);
	if (access(path, F_OK) == 0)
		return 0;
	return write_atomic(s, path, data, len, err);
}

int image_store_blob_adopt(image_store_t *s, const char *path, const char *digest,
			   hutch_err_t *err)
{
	if (!digest_valid(digest))
		return hutch_err_set(err, EINVAL, "`%s` is not a digest", digest);
	char got[DIGEST_STR_MAX];
	int r = digest_file(path, got, NULL, err);
	if (r < 0)
		return r;
	if (strcmp(got, digest) != 0)
		return hutch_err_set(err, EBADMSG, "content is %s, not %s", got, digest);
	_cleanup_free_ char *dst = image_store_blob_path(s, digest);
	if (rename(path, dst) < 0)
		return hutch_err_sys(err, errno, "rename %s", dst);
	return 0;
}

int image_store_blob_read(image_store_t *s, const char *digest, size_t max, char **data,
			  size_t *len, hutch_err_t *err)
{
	if (!digest_valid(digest))
		return hutch_err_set(err, EINVAL, "`%s` is not a digest", digest);
	_cleanup_free_ char *path = image_store_blob_path(s, digest);
	char *buf;
	size_t n;
	int r = read_small(path, max, &buf, &n);
	if (r == -ENOENT)
		return hutch_err_set(err, ENOENT, "blob %s is not in the store", digest);
	if (r < 0)
		return hutch_err_sys(err, -r, "read blob %s", digest);
	char got[DIGEST_STR_MAX];
	digest_buf(buf, n, got);
	if (strcmp(got, digest) != 0) {
		free(buf);
		unlink(path);
		return hutch_err_set(err, EIO, "blob %s is corrupted (its content hashes to %s); removed",
				     digest, got);
	}
	*data = buf;
	*len = n;
	return 0;
}

/* ---- pins ---- */

static pin_t *pin_find(image_store_t *s, const char *digest)
{
	for (size_t i = 0; i < s->n_pins; i++)
		if (strcmp(s->pins[i].digest, digest) == 0)
			return &s->pins[i];
	return NULL;
}

static void pin_locked(image_store_t *s, const char *digest)
{
	pin_t *p = pin_find(s, digest);
	if (p) {
		p->count++;
		return;
	}
	if (s->n_pins == s->cap_pins) {
		s->cap_pins = s->cap_pins ? s->cap_pins * 2 : 32;
		s->pins = xrealloc(s->pins, s->cap_pins * sizeof *s->pins);
	}
	p = &s->pins[s->n_pins++];
	snprintf(p->digest, sizeof p->digest, "%s", digest);
	p->count = 1;
}

void image_store_pin(image_store_t *s, const char *digest)
{
	pthread_mutex_lock(&s->lock);
	pin_locked(s, digest);
	pthread_mutex_unlock(&s->lock);
}

void image_store_unpin(image_store_t *s, const char *digest)
{
	pthread_mutex_lock(&s->lock);
	pin_t *p = pin_find(s, digest);
	if (p && --p->count == 0)
		*p = s->pins[--s->n_pins];
	pthread_mutex_unlock(&s->lock);
}

/* ---- layers ---- */

typedef struct layer_meta {
	int64_t size;
	char fp[DIGEST_STR_MAX];
	char blob_stat[128];
} layer_meta_t;

static char *layer_dir(const image_store_t *s, const char *digest)
{
	return xasprintf("%s/layers/%s", s->dir, digest_hex(digest));
}

char *image_store_layer_root(const image_store_t *s, const char *digest)
{
	return xasprintf("%s/layers/%s/root", s->dir, digest_hex(digest));
}

bool image_store_layer_exists(const image_store_t *s, const char *digest)
{
	if (!digest_valid(digest))
		return false;
	_cleanup_free_ char *p = image_store_layer_root(s, digest);
	return access(p, F_OK) == 0;
}

static void blob_stat_key(const char *path, char out[128])
{
	struct stat st;
	if (stat(path, &st) < 0) {
		snprintf(out, 128, "missing");
		return;
	}
	snprintf(out, 128, "%llu:%lld:%lld.%09ld:%lld.%09ld", (unsigned long long)st.st_ino,
		 (long long)st.st_size, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec,
		 (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

static int meta_read(const image_store_t *s, const char *digest, layer_meta_t *m)
{
	memset(m, 0, sizeof *m);
	m->size = -1;
	_cleanup_free_ char *path = xasprintf("%s/layers/%s/meta", s->dir, digest_hex(digest));
	char *text;
	size_t len;
	int r = read_small(path, 4096, &text, &len);
	if (r < 0)
		return r;
	bool head = false;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (strcmp(l, "hutch-layer-v1") == 0)
			head = true;
		else if (strncmp(l, "size ", 5) == 0)
			m->size = strtoll(l + 5, NULL, 10);
		else if (strncmp(l, "fp ", 3) == 0)
			snprintf(m->fp, sizeof m->fp, "%s", l + 3);
		else if (strncmp(l, "blob ", 5) == 0)
			snprintf(m->blob_stat, sizeof m->blob_stat, "%s", l + 5);
	}
	free(text);
	return head && digest_valid(m->fp) ? 0 : -EINVAL;
}

static int meta_write(image_store_t *s, const char *dir, const layer_meta_t *m, hutch_err_t *err)
{
	_cleanup_free_ char *path = xasprintf("%s/meta", dir);
	_cleanup_free_ char *text = xasprintf("hutch-layer-v1\nsize %lld\nfp %s\nblob %s\n",
					      (long long)m->size, m->fp, m->blob_stat);
	return write_atomic(s, path, text, strlen(text), err);
}

int64_t image_store_layer_size(image_store_t *s, const char *digest)
{
	layer_meta_t m;
	return digest_valid(digest) && meta_read(s, digest, &m) == 0 ? m.size : -1;
}

/* Puts a prepared layer dir (holding root/, meta) in place as the layer
 * digest. Returns 1 if one was there already (prepared is then removed). */
static int layer_publish(image_store_t *s, const char *prepared, const char *digest,
			 hutch_err_t *err)
{
	_cleanup_free_ char *final = layer_dir(s, digest);
	pthread_mutex_lock(&s->lock);
	int r = rename(prepared, final);
	int e = errno;
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		return 0;
	if (e == EEXIST || e == ENOTEMPTY) {
		remove_tree(prepared);
		return 1;
	}
	return hutch_err_sys(err, e, "rename %s", final);
}

/* Fingerprints root/ of the prepared dir and writes its meta. */
static int layer_seal(image_store_t *s, const char *prepared, const char *digest, int64_t size,
		      hutch_err_t *err)
{
	layer_meta_t m = {.size = size};
	_cleanup_free_ char *root = xasprintf("%s/root", prepared);
	int r = layer_dir_fingerprint(root, m.fp, NULL, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *blob = image_store_blob_path(s, digest);
	blob_stat_key(blob, m.blob_stat);
	return meta_write(s, prepared, &m, err);
}

int image_store_layer_from_dir(image_store_t *s, const char *dir, char digest[DIGEST_STR_MAX],
			       int64_t *size, hutch_err_t *err)
{
	_cleanup_free_ char *tar = image_store_tmp_path(s, "tar");
	int fd = open(tar, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tar);
	int r = layer_tar_from_dir(dir, fd, digest, size, err);
	close(fd);
	if (r < 0) {
		unlink(tar);
		return r;
	}
	/* Pinned before it is visible, so a collection that runs meanwhile
	 * cannot take it (nor an equal layer found already in place). */
	image_store_pin(s, digest);
	_cleanup_free_ char *blob = image_store_blob_path(s, digest);
	_cleanup_free_ char *prepared = image_store_tmp_path(s, "layer");
	_cleanup_free_ char *root = xasprintf("%s/root", prepared);
	if (image_store_layer_exists(s, digest) && image_store_layer_check(s, digest, false, err) == 0) {
		unlink(tar);
		remove_tree(dir);
		return 0;
	}
	if (rename(tar, blob) < 0) {
		r = hutch_err_sys(err, errno, "rename %s", blob);
		unlink(tar);
		goto fail;
	}
	if (mkdir(prepared, 0700) < 0 || rename(dir, root) < 0) {
		r = hutch_err_sys(err, errno, "layer: move %s", dir);
		remove_tree(prepared);
		goto fail;
	}
	if ((r = layer_seal(s, prepared, digest, *size, err)) < 0 ||
	    (r = layer_publish(s, prepared, digest, err)) < 0) {
		remove_tree(prepared);
		goto fail;
	}
	return 0;
fail:
	image_store_unpin(s, digest);
	return r;
}

int image_store_layer_from_tar(image_store_t *s, const char *path, char digest[DIGEST_STR_MAX],
			       int64_t *size, hutch_err_t *err)
{
	_cleanup_free_ char *tar = image_store_tmp_path(s, "tar");
	int fd = open(tar, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tar);
	int r = layer_tar_decompress(path, fd, digest, size, err);
	close(fd);
	if (r < 0) {
		unlink(tar);
		return r;
	}
	image_store_pin(s, digest);
	if (image_store_layer_exists(s, digest) && image_store_layer_check(s, digest, false, err) == 0) {
		unlink(tar);
		return 0;
	}
	_cleanup_free_ char *prepared = image_store_tmp_path(s, "layer");
	_cleanup_free_ char *root = xasprintf("%s/root", prepared);
	_cleanup_free_ char *blob = image_store_blob_path(s, digest);
	if (mkdir(prepared, 0700) < 0 || mkdir(root, 0755) < 0) {
		r = hutch_err_sys(err, errno, "mkdir %s", root);
		goto fail;
	}
	if ((r = layer_tar_extract(tar, root, err)) < 0)
		goto fail;
	if (rename(tar, blob) < 0) {
		r = hutch_err_sys(err, errno, "rename %s", blob);
		goto fail;
	}
	if ((r = layer_seal(s, prepared, digest, *size, err)) < 0 ||
	    (r = layer_publish(s, prepared, digest, err)) < 0)
		goto fail;
	return 0;
fail:
	unlink(tar);
	remove_tree(prepared);
	image_store_unpin(s, digest);
	return r;
}

/* Removes a layer that failed its check, and its blob. */
static void layer_discard(image_store_t *s, const char *digest)
{
	_cleanup_free_ char *dir = layer_dir(s, digest);
	_cleanup_free_ char *trash = image_store_tmp_path(s, "corrupt");
	pthread_mutex_lock(&s->lock);
	int r = rename(dir, trash);
	pthread_mutex_unlock(&s->lock);
	if (r == 0)
		remove_tree(trash);
	_cleanup_free_ char *blob = image_store_blob_path(s, digest);
	unlink(blob);
}

static bool blob_matches(const char *blob, const char *digest)
{
	char got[DIGEST_STR_MAX];
	hutch_err_t e = {0};
	return digest_file(blob, got, NULL, &e) == 0 && strcmp(got, digest) == 0;
}

int image_store_layer_check(image_store_t *s, const char *digest, bool full, hutch_err_t *err)
{
	if (!digest_valid(digest))
		return hutch_err_set(err, EINVAL, "`%s` is not a layer digest", digest);
	_cleanup_free_ char *dir = layer_dir(s, digest);
	_cleanup_free_ char *root = image_store_layer_root(s, digest);
	_cleanup_free_ char *blob = image_store_blob_path(s, digest);
	if (access(root, F_OK) < 0)
		return hutch_err_set(err, ENOENT, "layer %s is not in the store", digest);
	layer_meta_t m;
	bool meta_ok = meta_read(s, digest, &m) == 0;
	char fp[DIGEST_STR_MAX] = "";
	hutch_err_t e = {0};
	bool dir_ok = meta_ok && layer_dir_fingerprint(root, fp, NULL, &e) == 0 && strcmp(fp, m.fp) == 0;
	char st_key[128];
	blob_stat_key(blob, st_key);
	bool blob_ok = meta_ok && !full && strcmp(st_key, m.blob_stat) == 0 && strcmp(st_key, "missing") != 0;
	if (dir_ok && blob_ok)
		return 0;

	/* The slow path, one repair at a time. */
	pthread_mutex_lock(&s->repair);
	int r = 0;
	if (!blob_ok)
		blob_ok = blob_matches(blob, digest);
	if (dir_ok && blob_ok) {
		blob_stat_key(blob, m.blob_stat);
		r = meta_write(s, dir, &m, err);
		goto out;
	}
	if (!dir_ok && blob_ok) {
		log_warn("images: layer %s: its directory changed since it was made; unpacking it again from its blob",
			 digest);
		_cleanup_free_ char *prepared = image_store_tmp_path(s, "repair");
		_cleanup_free_ char *new_root = xasprintf("%s/root", prepared);
		_cleanup_free_ char *trash = image_store_tmp_path(s, "corrupt");
		int64_t size = 0;
		struct stat bst;
		if (stat(blob, &bst) == 0)
			size = bst.st_size;
		if (mkdir(prepared, 0700) < 0 || mkdir(new_root, 0755) < 0 ||
		    layer_tar_extract(blob, new_root, &e) < 0 ||
		    layer_seal(s, prepared, digest, size, &e) < 0) {
			remove_tree(prepared);
			goto corrupt;
		}
		/* The old tree is moved out of the way (a sandbox that
		 * stacked it keeps its mount) and the new one put in. */
		_cleanup_free_ char *old_meta = xasprintf("%s/meta", dir);
		_cleanup_free_ char *new_meta = xasprintf("%s/meta", prepared);
		if (rename(root, trash) < 0 || rename(new_root, root) < 0 || rename(new_meta, old_meta) < 0) {
			r = hutch_err_sys(err, errno, "layer %s: replace its directory", digest);
			remove_tree(prepared);
			goto out;
		}
		remove_tree(prepared);
		remove_tree(trash);
		goto out;
	}
	if (dir_ok && !blob_ok) {
		/* Layers hutchd built are deterministic tars of their
		 * directory: write it again and see if it is the same. */
		_cleanup_free_ char *tar = image_store_tmp_path(s, "retar");
		int fd = open(tar, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		char got[DIGEST_STR_MAX] = "";
		int64_t size;
		if (fd >= 0) {
			layer_tar_from_dir(root, fd, got, &size, &e);
			close(fd);
		}
		if (strcmp(got, digest) == 0 && rename(tar, blob) == 0) {
			log_warn("images: layer %s: its blob was damaged; written again from its directory",
				 digest);
			blob_stat_key(blob, m.blob_stat);
			r = meta_write(s, dir, &m, err);
			goto out;
		}
		unlink(tar);
	}
corrupt:
	layer_discard(s, digest);
	r = hutch_err_set(err, EIO,
			  "layer %s is corrupted: its content no longer matches its digest (removed; rebuild the image)",
			  digest);
	log_warn("images: %s", err->message);
out:
	pthread_mutex_unlock(&s->repair);
	return r;
}

/* ---- build cache ---- */

static char *scope_dir(const image_store_t *s, const char *tenant)
{
	if (!tenant)
		return xasprintf("%s/cache/global", s->dir);
	char d[DIGEST_STR_MAX];
	digest_buf(tenant, strlen(tenant), d);
	return xasprintf("%s/cache/t-%.16s", s->dir, digest_hex(d));
}

int image_store_cache_get(image_store_t *s, const char *tenant, const char *key,
			  image_cache_entry_t *out)
{
	memset(out, 0, sizeof *out);
	if (!digest_valid(key))
		return -EINVAL;
	_cleanup_free_ char *dir = scope_dir(s, tenant);
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, digest_hex(key));
	char *text;
	size_t len;
	int r = read_small(path, 64 * 1024, &text, &len);
	if (r < 0)
		return r == -ENOENT ? -ENOENT : -EIO;
	bool head = false;
	r = 0;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		if (strcmp(l, "hutch-cache-v1") == 0) {
			head = true;
		} else if (strncmp(l, "layer ", 6) == 0 && digest_valid(l + 6) &&
			   out->n_layers < IMAGE_CACHE_MAX_LAYERS) {
			snprintf(out->layers[out->n_layers++], DIGEST_STR_MAX, "%s", l + 6);
		} else if (strncmp(l, "config ", 7) == 0 && digest_valid(l + 7)) {
			snprintf(out->config, sizeof out->config, "%s", l + 7);
		} else {
			r = -EINVAL;
		}
	}
	free(text);
	return head && r == 0 ? 0 : -EINVAL;
}

int image_store_cache_put(image_store_t *s, const char *tenant, const char *key,
			  const image_cache_entry_t *e, hutch_err_t *err)
{
	if (!digest_valid(key))
		return hutch_err_set(err, EINVAL, "bad cache key");
	_cleanup_free_ char *dir = scope_dir(s, tenant);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", dir);
	_cleanup_sb_ strbuf_t sb = STRBUF_INIT;
	sb_append(&sb, "hutch-cache-v1\n");
	for (size_t i = 0; i < e->n_layers; i++)
		sb_printf(&sb, "layer %s\n", e->layers[i]);
	if (e->config[0])
		sb_printf(&sb, "config %s\n", e->config);
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, digest_hex(key));
	return write_atomic(s, path, sb.buf, sb.len, err);
}

void image_store_cache_drop(image_store_t *s, const char *tenant, const char *key)
{
	if (!digest_valid(key))
		return;
	_cleanup_free_ char *dir = scope_dir(s, tenant);
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, digest_hex(key));
	unlink(path);
}

/* ---- key locks ---- */

static key_lock_t **key_find(image_store_t *s, const char *key)
{
	for (key_lock_t **pp = &s->keys; *pp; pp = &(*pp)->next)
		if (strcmp((*pp)->key, key) == 0)
			return pp;
	return NULL;
}

int image_store_key_lock(image_store_t *s, const char *key, const atomic_bool *cancel,
			 bool *waited)
{
	*waited = false;
	pthread_mutex_lock(&s->lock);
	while (key_find(s, key)) {
		*waited = true;
		if (cancel && atomic_load(cancel)) {
			pthread_mutex_unlock(&s->lock);
			return -ECANCELED;
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->key_cond, &s->lock, &ts);
	}
	key_lock_t *k = xcalloc(1, sizeof *k);
	snprintf(k->key, sizeof k->key, "%s", key);
	k->next = s->keys;
	s->keys = k;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

bool image_store_key_busy(image_store_t *s, const char *key)
{
	pthread_mutex_lock(&s->lock);
	bool busy = key_find(s, key) != NULL;
	pthread_mutex_unlock(&s->lock);
	return busy;
}

void image_store_key_unlock(image_store_t *s, const char *key)
{
	pthread_mutex_lock(&s->lock);
	key_lock_t **pp = key_find(s, key);
	if (pp) {
		key_lock_t *k = *pp;
		*pp = k->next;
		free(k);
	}
	pthread_cond_broadcast(&s->key_cond);
	pthread_mutex_unlock(&s->lock);
}

/* ---- uploaded files ---- */

char *image_store_file_path(const image_store_t *s, const char *digest)
{
	return xasprintf("%s/files/sha256/%s", s->dir, digest_hex(digest));
}

bool image_store_file_exists(const image_store_t *s, const char *digest)
{
	if (!digest_valid(digest))
		return false;
	_cleanup_free_ char *p = image_store_file_path(s, digest);
	return access(p, F_OK) == 0;
}

/* ---- garbage collection ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool kept(char **sorted, size_t n, const char *digest)
{
	const char *key = digest;
	return n && bsearch(&key, sorted, n, sizeof *sorted, cmp_str) != NULL;
}

static int64_t tree_bytes(const char *dir)
{
	char fp[DIGEST_STR_MAX];
	int64_t bytes = 0;
	hutch_err_t e = {0};
	layer_dir_fingerprint(dir, fp, &bytes, &e);
	return bytes;
}

/* What a sweep needs: the digests to keep (sorted) and the tally. */
typedef struct gc_sweep {
	image_store_t *s;
	char **keep;
	size_t n_keep;
	image_gc_result_t *res;
} gc_sweep_t;

/* Layers: unpublished under the lock (a pin taken before a lookup then
 * either sees the layer stay or sees it gone), removed after; a layer's
 * blob goes with it. */
static void gc_layers(gc_sweep_t *g)
{
	image_store_t *s = g->s;
	_cleanup_free_ char *layers = xasprintf("%s/layers", s->dir);
	DIR *d = opendir(layers);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *digest = xasprintf(DIGEST_PREFIX "%s", de->d_name);
		_cleanup_free_ char *path = xasprintf("%s/%s", layers, de->d_name);
		if (digest_valid(digest) && kept(g->keep, g->n_keep, digest))
			continue;
		_cleanup_free_ char *trash = image_store_tmp_path(s, "gc");
		pthread_mutex_lock(&s->lock);
		bool pinned = digest_valid(digest) && pin_find(s, digest);
		int r = pinned ? -1 : rename(path, trash);
		pthread_mutex_unlock(&s->lock);
		if (r != 0)
			continue;
		g->res->freed_bytes += tree_bytes(trash);
		remove_tree(trash);
		g->res->layers_removed++;
		_cleanup_free_ char *blob = image_store_blob_path(s, digest);
		struct stat st;
		pthread_mutex_lock(&s->lock);
		if (!pin_find(s, digest) && stat(blob, &st) == 0 && unlink(blob) == 0)
			g->res->freed_bytes += st.st_size;
		pthread_mutex_unlock(&s->lock);
	}
	if (d)
		closedir(d);
}

/* Blobs that are neither kept, pinned nor a present layer's. */
static void gc_blobs(gc_sweep_t *g)
{
	image_store_t *s = g->s;
	_cleanup_free_ char *blobs = xasprintf("%s/blobs/sha256", s->dir);
	DIR *d = opendir(blobs);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *digest = xasprintf(DIGEST_PREFIX "%s", de->d_name);
		if (digest_valid(digest) && kept(g->keep, g->n_keep, digest))
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", blobs, de->d_name);
		pthread_mutex_lock(&s->lock);
		bool pinned = digest_valid(digest) && pin_find(s, digest);
		bool in_use = digest_valid(digest) && image_store_layer_exists(s, digest);
		struct stat st;
		bool removed = !pinned && !in_use && stat(path, &st) == 0 && unlink(path) == 0;
		if (removed)
			g->res->freed_bytes += st.st_size;
		pthread_mutex_unlock(&s->lock);
		if (removed)
			g->res->blobs_removed++;
	}
	if (d)
		closedir(d);
}

/* Whether a cache entry names a layer or config that is gone. */
static bool cache_entry_stale(image_store_t *s, const char *path)
{
	char *text;
	size_t len;
	if (read_small(path, 64 * 1024, &text, &len) < 0)
		return false;
	bool stale = false;
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && !stale;
	     l = strtok_r(NULL, "\n", &save)) {
		if (strncmp(l, "layer ", 6) == 0)
			stale = !image_store_layer_exists(s, l + 6);
		else if (strncmp(l, "config ", 7) == 0)
			stale = !image_store_blob_exists(s, l + 7);
	}
	free(text);
	return stale;
}

/* Cache entries whose layers are gone. */
static void gc_cache(gc_sweep_t *g)
{
	_cleanup_free_ char *cache = xasprintf("%s/cache", g->s->dir);
	DIR *d = opendir(cache);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *scope = xasprintf("%s/%s", cache, de->d_name);
		DIR *sd = opendir(scope);
		struct dirent *ce;
		while (sd && (ce = readdir(sd))) {
			if (ce->d_name[0] == '.')
				continue;
			_cleanup_free_ char *path = xasprintf("%s/%s", scope, ce->d_name);
			if (cache_entry_stale(g->s, path))
				unlink(path);
		}
		if (sd)
			closedir(sd);
	}
	if (d)
		closedir(d);
}

/* Uploaded files nobody used for an hour. */
static void gc_uploads(gc_sweep_t *g)
{
	image_store_t *s = g->s;
	_cleanup_free_ char *files = xasprintf("%s/files/sha256", s->dir);
	DIR *d = opendir(files);
	struct dirent *de;
	time_t now = time(NULL);
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", files, de->d_name);
		_cleanup_free_ char *digest = xasprintf(DIGEST_PREFIX "%s", de->d_name);
		struct stat st;
		pthread_mutex_lock(&s->lock);
		bool pinned = digest_valid(digest) && pin_find(s, digest);
		if (!pinned && stat(path, &st) == 0 && now - st.st_mtime > 3600 && unlink(path) == 0)
			g->res->freed_bytes += st.st_size;
		pthread_mutex_unlock(&s->lock);
	}
	if (d)
		closedir(d);
}

int image_store_gc(image_store_t *s, char *const *keep, size_t n_keep, image_gc_result_t *res,
		   hutch_err_t *err)
{
	(void)err;
	memset(res, 0, sizeof *res);
	gc_sweep_t g = {.s = s, .keep = xcalloc(n_keep + 1, sizeof(char *)), .n_keep = n_keep, .res = res};
	for (size_t i = 0; i < n_keep; i++)
		g.keep[i] = keep[i];
	qsort(g.keep, n_keep, sizeof *g.keep, cmp_str);
	gc_layers(&g);
	gc_blobs(&g);
	gc_cache(&g);
	gc_uploads(&g);
	free(g.keep);
	return 0;
}
