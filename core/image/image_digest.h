/*
 * image_digest.h: sha256 digests as images use them, "sha256:<64 hex>".
 *
 * Everything in the image store is named by a digest: layer tars, configs,
 * manifests, files a client uploads, and the cache keys of build steps. A
 * digest string is always the full "sha256:" form, lower-case hex; anything
 * else coming from outside (a client, a registry, a tar) is refused by
 * digest_valid before it is used in a path.
 */
#ifndef HUTCH_IMAGE_DIGEST_H
#define HUTCH_IMAGE_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#define DIGEST_PREFIX "sha256:"
#define DIGEST_HEX_LEN 64
/* "sha256:" + 64 hex + NUL */
#define DIGEST_STR_MAX 72

typedef struct digest_ctx digest_ctx_t;

/* A running sha256. new never fails (aborts on OOM, like xmalloc). */
digest_ctx_t *digest_new(void);
void digest_update(digest_ctx_t *c, const void *data, size_t n);
/* Writes "sha256:<hex>" into out (DIGEST_STR_MAX bytes) and frees c. */
void digest_final(digest_ctx_t *c, char out[DIGEST_STR_MAX]);
void digest_free(digest_ctx_t *c);

/* One-shot over a buffer. */
void digest_buf(const void *data, size_t n, char out[DIGEST_STR_MAX]);
/* Over a file's whole content; *size_out (may be NULL) gets its length. */
int digest_file(const char *path, char out[DIGEST_STR_MAX], int64_t *size_out,
		hutch_err_t *err);

/* "sha256:" followed by exactly 64 lower-case hex digits. */
bool digest_valid(const char *s);
/* The 64 hex digits of a valid digest (a pointer into s). */
const char *digest_hex(const char *s);

#endif
