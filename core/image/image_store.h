/*
 * image_store.h: images on disk, under <state_dir>/images/.
 *
 *   blobs/sha256/<hex>       OCI blobs by digest: layer tars (uncompressed),
 *                            image configs, manifests
 *   layers/<hex>/root/       each layer unpacked in overlay form (see
 *                            layer_tar.h), stacked read-only by the runtime;
 *                            <hex> is the digest of the layer's tar
 *   layers/<hex>/meta        its size, the fingerprint of root/ and the stat
 *                            of the blob when it was last hashed
 *   cache/<scope>/<key-hex>  build cache: a step's key -> its layers (and,
 *                            for a base, its config). scope "global" for
 *                            bases hutchd built itself, "t-<hash of tenant>"
 *                            for everything a tenant built or imported
 *   files/sha256/<hex>       files clients uploaded for add_local_* steps
 *   tmp/                     scratch, on the same file system (renames)
 *   builtin/                 image_builtin.c's busybox root
 *
 * Integrity. A layer is used only after a check: the fingerprint of its
 * directory (names, modes, sizes, times, inodes: no file is read) must be
 * the one recorded when it was made, and its blob must hash to its name
 * (re-hashed whenever the blob's stat changed since it was last hashed). A
 * directory that changed is made again from the blob; a blob that changed is
 * made again from the directory when that gives the same digest (layers
 * hutchd built are deterministic tars); anything else is corrupted: the
 * layer is removed and the check fails, so a build makes it again and a
 * sandbox refuses it. Nothing corrupted is ever stacked.
 *
 * Thread safety: every function may be called from any thread; they block
 * (disk I/O), so the loop only calls the cheap ones (paths, pins).
 */
#ifndef HUTCH_IMAGE_STORE_H
#define HUTCH_IMAGE_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#include "image_digest.h"

typedef struct image_store image_store_t;

int image_store_open(const char *state_dir, image_store_t **out, hutch_err_t *err);
void image_store_free(image_store_t *s);
const char *image_store_dir(const image_store_t *s);

/* A fresh scratch directory (or file path, not created) under tmp/,
 * malloc'ed. Scratch left by a crash is removed at open. */
char *image_store_tmp_dir(image_store_t *s, const char *what, hutch_err_t *err);
char *image_store_tmp_path(image_store_t *s, const char *what);

/* ---- blobs ---- */

char *image_store_blob_path(const image_store_t *s, const char *digest);
bool image_store_blob_exists(const image_store_t *s, const char *digest);
/* Stores data; digest_out gets its digest. */
int image_store_blob_put(image_store_t *s, const void *data, size_t len,
			 char digest_out[DIGEST_STR_MAX], hutch_err_t *err);
/* Moves the file at path into the store as the blob digest, after checking
 * that its content has that digest. */
int image_store_blob_adopt(image_store_t *s, const char *path, const char *digest,
			   hutch_err_t *err);
/* Reads a small blob (at most max bytes) and checks its digest. */
int image_store_blob_read(image_store_t *s, const char *digest, size_t max, char **data,
			  size_t *len, hutch_err_t *err);

/* ---- layers ---- */

/* The directory the runtime stacks, malloc'ed (whether it exists or not). */
char *image_store_layer_root(const image_store_t *s, const char *digest);
bool image_store_layer_exists(const image_store_t *s, const char *digest);
/* Makes a layer of an overlay-form directory (a build step's commit):
 * writes its tar, then moves dir into the store (dir is gone on success).
 * An existing layer of the same digest is kept and dir removed. The layer
 * comes back pinned (see below): the caller unpins it once an image
 * references it. */
int image_store_layer_from_dir(image_store_t *s, const char *dir, char digest[DIGEST_STR_MAX],
			       int64_t *size, hutch_err_t *err);
/* Makes a layer of a layer tar (any compression) at path: stores it
 * uncompressed and unpacks it. digest: its diff id. Pinned, as above. */
int image_store_layer_from_tar(image_store_t *s, const char *path, char digest[DIGEST_STR_MAX],
			       int64_t *size, hutch_err_t *err);
/* The integrity check above (repairing what can be repaired). full: also
 * re-hash the blob even if its stat did not change. -EIO with a message
 * naming the layer when it is corrupted (it is then removed), -ENOENT when
 * it is not in the store. */
int image_store_layer_check(image_store_t *s, const char *digest, bool full, hutch_err_t *err);
/* Size of the layer's tar, -1 if unknown. */
int64_t image_store_layer_size(image_store_t *s, const char *digest);

/* ---- build cache ---- */

#define IMAGE_CACHE_MAX_LAYERS 128

typedef struct image_cache_entry {
	char layers[IMAGE_CACHE_MAX_LAYERS][DIGEST_STR_MAX];
	size_t n_layers;
	char config[DIGEST_STR_MAX]; /* a base's config blob, or "" */
} image_cache_entry_t;

/* scope: NULL for "global", else a tenant. -ENOENT when absent. The
 * entry's layers are not checked here. */
int image_store_cache_get(image_store_t *s, const char *tenant, const char *key,
			  image_cache_entry_t *out);
int image_store_cache_put(image_store_t *s, const char *tenant, const char *key,
			  const image_cache_entry_t *e, hutch_err_t *err);
void image_store_cache_drop(image_store_t *s, const char *tenant, const char *key);

/* One build at a time per key: lock waits while another thread holds key
 * (*waited tells whether it did). cancel: polled while waiting; lock
 * returns -ECANCELED when it turns true. */
int image_store_key_lock(image_store_t *s, const char *key, const atomic_bool *cancel,
			 bool *waited);
void image_store_key_unlock(image_store_t *s, const char *key);
/* Whether another thread holds key now (to say so before waiting). */
bool image_store_key_busy(image_store_t *s, const char *key);

/* ---- uploaded files ---- */

char *image_store_file_path(const image_store_t *s, const char *digest);
bool image_store_file_exists(const image_store_t *s, const char *digest);

/* ---- pins and garbage collection ---- */

/* A pinned digest (layer or blob) is never collected. Counted. */
void image_store_pin(image_store_t *s, const char *digest);
void image_store_unpin(image_store_t *s, const char *digest);

typedef struct image_gc_result {
	int layers_removed;
	int blobs_removed;
	int64_t freed_bytes;
} image_gc_result_t;

/* Removes every layer and blob neither in keep nor pinned, cache entries
 * whose layers are gone, uploaded files older than an hour, and scratch
 * not in use. keep: digests of layers, configs and manifests in use. */
int image_store_gc(image_store_t *s, char *const *keep, size_t n_keep,
		   image_gc_result_t *res, hutch_err_t *err);

#endif
