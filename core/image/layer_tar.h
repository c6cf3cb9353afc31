/*
 * layer_tar.h: image layers between their two forms.
 *
 *   overlay form: a directory the runtime stacks as a read-only overlayfs
 *     layer. A deleted path is a whiteout, a 0:0 character device of that
 *     name; a directory whose lower contents are hidden carries the xattr
 *     trusted.overlay.opaque = "y". This is what a sandbox's writable layer
 *     looks like after a build step (runtime op sandbox_commit).
 *   OCI form: a tar (application/vnd.oci.image.layer.v1.tar). A deleted
 *     path X is an empty file `.wh.X`; an opaque directory D holds an empty
 *     `D/.wh..wh..opq`.
 *
 * Writing is deterministic: entries sorted by name, ownership and modes and
 * times from the directory, no user or group names, no access times; the
 * same directory gives the same bytes, so the same digest. Reading treats
 * the tar as hostile: no absolute paths, no `..`, nothing written through a
 * symlink, no trusted.* xattrs taken from it (only whiteouts and opaque
 * markers make overlay metadata).
 */
#ifndef HUTCH_LAYER_TAR_H
#define HUTCH_LAYER_TAR_H

#include <locale.h>
#include <stdbool.h>
#include <stdint.h>

#include <hutch/error.h>

#include "image_digest.h"

/* Writes the OCI tar of the overlay-form directory dir to out_fd, hashing
 * it on the way: digest and size are those of the bytes written. */
int layer_tar_from_dir(const char *dir, int out_fd, char digest[DIGEST_STR_MAX],
		       int64_t *size, hutch_err_t *err);

/* Extracts the layer tar at path (uncompressed, gzip, zstd, ...) into
 * dest_dir (existing, empty) in overlay form. */
int layer_tar_extract(const char *path, const char *dest_dir, hutch_err_t *err);

/* Copies the (possibly compressed) tar at src_path to out_fd uncompressed,
 * hashing it: digest is the layer's diff id. */
int layer_tar_decompress(const char *src_path, int out_fd, char digest[DIGEST_STR_MAX],
			 int64_t *size, hutch_err_t *err);

/* Opens the directory rel below root_fd (O_RDONLY|O_DIRECTORY, an fd the
 * caller closes) without following any symlink or leaving root_fd,
 * creating missing components (0755) when create. */
int layer_open_dir_beneath(int root_fd, const char *rel, bool create, hutch_err_t *err);

/* A fingerprint of the directory as it is now: every entry's name, type,
 * mode, owner, size, mtime, ctime, inode and link count, hashed. Any change
 * to the tree (even one that restores an mtime: the ctime moves) changes it,
 * and computing it reads no file content, so it is cheap enough to check a
 * layer each time it is used. disk_bytes (may be NULL): blocks in use. */
int layer_dir_fingerprint(const char *dir, char fp[DIGEST_STR_MAX], int64_t *disk_bytes,
			  hutch_err_t *err);

/* Switches the calling thread to the C.UTF-8 locale for libarchive's name
 * conversions (see layer_tar.c); leave restores what enter returned. */
locale_t layer_locale_enter(void);
void layer_locale_leave(locale_t old);

#endif
