/*
 * secret_box.h: sealing secret values at rest with AES-256-GCM.
 *
 * The 32-byte key lives in its own file (0600), apart from the metadata
 * store, so a copy of the store alone reveals nothing. Every sealed value
 * gets a fresh 12-byte nonce and is bound, as additional authenticated
 * data, to what it belongs to ("secret:tenant/name", "sandbox:sb-..."), so
 * a sealed record cannot be moved to another name and still open.
 */
#ifndef HUTCH_SECRET_BOX_H
#define HUTCH_SECRET_BOX_H

#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#define SECRET_KEY_BYTES 32
#define SECRET_NONCE_BYTES 12
#define SECRET_TAG_BYTES 16

typedef struct secret_box {
	uint8_t key[SECRET_KEY_BYTES];
} secret_box_t;

/* Reads the key file, or makes one (0600, in a 0700 dir) if it does not
 * exist. Refuses a key file others can read. */
int secret_box_open(const char *key_file, secret_box_t *box, hutch_err_t *err);
void secret_box_close(secret_box_t *box);

/* Seals n bytes: nonce_out gets SECRET_NONCE_BYTES, *out a malloc'ed
 * ciphertext || tag of n + SECRET_TAG_BYTES bytes. */
int secret_seal(const secret_box_t *box, const char *aad, const uint8_t *plain, size_t n,
		uint8_t nonce_out[SECRET_NONCE_BYTES], uint8_t **out, size_t *out_len,
		hutch_err_t *err);
/* Opens what secret_seal made; -EBADMSG if it was altered, moved or the
 * key is another. *out is malloc'ed (and wiped by secret_free). */
int secret_open(const secret_box_t *box, const char *aad, const uint8_t *nonce,
		const uint8_t *sealed, size_t n, uint8_t **out, size_t *out_len,
		hutch_err_t *err);
/* Wipes and frees. */
void secret_free(void *p, size_t n);

#endif
