#include "secret_box.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"

static int make_key(const char *path, secret_box_t *box, hutch_err_t *err)
{
	_cleanup_free_ char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return hutch_err_sys(err, errno, "mkdir %s", dir);
	}
	if (RAND_bytes(box->key, sizeof box->key) != 1)
		return hutch_err_set(err, EIO, "secrets key: no randomness");
	_cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tmp);
	if (write(fd, box->key, sizeof box->key) != (ssize_t)sizeof box->key || fsync(fd) < 0) {
		int e = errno ? errno : EIO;
		unlink(tmp);
		return hutch_err_sys(err, e, "write %s", tmp);
	}
	/* link, not rename: two daemons racing cannot both win. */
	if (link(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return e == EEXIST ? 1 : hutch_err_sys(err, e, "create %s", path);
	}
	unlink(tmp);
	return 0;
}

int secret_box_open(const char *key_file, secret_box_t *box, hutch_err_t *err)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		_cleanup_close_ int fd = open(key_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0 && errno == ENOENT) {
			int r = make_key(key_file, box, err);
			if (r < 0)
				return r;
			if (r == 0)
				return 0;
			continue; /* someone else made it: read theirs */
		}
		if (fd < 0)
			return hutch_err_sys(err, errno, "secrets key %s", key_file);
		struct stat st;
		if (fstat(fd, &st) < 0)
			return hutch_err_sys(err, errno, "secrets key %s", key_file);
		if (!S_ISREG(st.st_mode) || (st.st_mode & 077))
			return hutch_err_set(err, EPERM,
					     "secrets key %s must be a regular file readable by its owner only (chmod 600)",
					     key_file);
		if (st.st_size != SECRET_KEY_BYTES)
			return hutch_err_set(err, EINVAL, "secrets key %s must hold exactly %d bytes",
					     key_file, SECRET_KEY_BYTES);
		if (read(fd, box->key, sizeof box->key) != (ssize_t)sizeof box->key)
			return hutch_err_sys(err, errno ? errno : EIO, "read %s", key_file);
		return 0;
	}
	return hutch_err_set(err, EIO, "secrets key %s: could not be read or made", key_file);
}

void secret_box_close(secret_box_t *box)
{
	OPENSSL_cleanse(box->key, sizeof box->key);
}

void secret_free(void *p, size_t n)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}

int secret_seal(const secret_box_t *box, const char *aad, const uint8_t *plain, size_t n,
		uint8_t nonce_out[SECRET_NONCE_BYTES], uint8_t **out, size_t *out_len,
		hutch_err_t *err)
{
	if (RAND_bytes(nonce_out, SECRET_NONCE_BYTES) != 1)
		return hutch_err_set(err, EIO, "seal: no randomness");
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	uint8_t *buf = xmalloc(n + SECRET_TAG_BYTES);
	int len = 0, fin = 0, ok = c &&
		EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_BYTES, NULL) == 1 &&
		EVP_EncryptInit_ex(c, NULL, NULL, box->key, nonce_out) == 1 &&
		EVP_EncryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
		EVP_EncryptUpdate(c, buf, &len, plain, (int)n) == 1 &&
		EVP_EncryptFinal_ex(c, buf + len, &fin) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SECRET_TAG_BYTES, buf + n) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		free(buf);
		return hutch_err_set(err, EIO, "seal: AES-256-GCM failed");
	}
	*out = buf;
	*out_len = n + SECRET_TAG_BYTES;
	return 0;
}

int secret_open(const secret_box_t *box, const char *aad, const uint8_t *nonce,
		const uint8_t *sealed, size_t n, uint8_t **out, size_t *out_len,
		hutch_err_t *err)
{
	if (n < SECRET_TAG_BYTES)
		return hutch_err_set(err, EBADMSG, "sealed value too short");
	size_t plain_len = n - SECRET_TAG_BYTES;
	uint8_t *buf = xmalloc(plain_len ? plain_len : 1);
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int len = 0, fin = 0, ok = c &&
		EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, SECRET_NONCE_BYTES, NULL) == 1 &&
		EVP_DecryptInit_ex(c, NULL, NULL, box->key, nonce) == 1 &&
		EVP_DecryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)strlen(aad)) == 1 &&
		EVP_DecryptUpdate(c, buf, &len, sealed, (int)plain_len) == 1 &&
		EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SECRET_TAG_BYTES,
				    (void *)(sealed + plain_len)) == 1 &&
		EVP_DecryptFinal_ex(c, buf + len, &fin) == 1;
	EVP_CIPHER_CTX_free(c);
	if (!ok) {
		secret_free(buf, plain_len);
		return hutch_err_set(err, EBADMSG,
				     "a sealed secret does not open (altered, moved, or sealed with another key)");
	}
	*out = buf;
	*out_len = plain_len;
	return 0;
}
