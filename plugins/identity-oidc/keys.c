/*
 * keys.c: the issuer's signing keys (ECDSA P-256), their files, rotation
 * and the JWKS.
 *
 * Each key is one PEM file "<created-unix>-<kid>.pem", mode 0600, in
 * <state_dir>/keys (0700); a file readable by anyone else is refused at
 * load. The newest key signs; an older one is retired from the moment its
 * successor was made and stays in the JWKS until every token it could have
 * signed has expired (token_ttl + clock_skew later), then its file is
 * deleted. The key id is the RFC 7638 thumbprint of the public key.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "oidc.h"

int64_t oidc_now(void)
{
	return (int64_t)time(NULL);
}

/* The public point as base64url x and y (32 bytes each). */
static int key_xy(EVP_PKEY *pkey, strbuf_t *x, strbuf_t *y)
{
	BIGNUM *bx = NULL, *by = NULL;
	uint8_t bufx[32], bufy[32];
	int r = -1;
	if (!EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) ||
	    !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by))
		goto out;
	if (BN_bn2binpad(bx, bufx, 32) != 32 || BN_bn2binpad(by, bufy, 32) != 32)
		goto out;
	b64url_encode(x, bufx, 32);
	b64url_encode(y, bufy, 32);
	r = 0;
out:
	BN_free(bx);
	BN_free(by);
	return r;
}

static bool is_p256(EVP_PKEY *pkey)
{
	char group[32];
	size_t len = 0;
	if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC)
		return false;
	if (!EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
					    &len))
		return false;
	return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

/* RFC 7638: SHA-256 over the required members in lexical order. */
static int key_thumbprint(EVP_PKEY *pkey, char *kid, size_t cap)
{
	_cleanup_sb_ strbuf_t x = STRBUF_INIT, y = STRBUF_INIT, doc = STRBUF_INIT, out = STRBUF_INIT;
	if (key_xy(pkey, &x, &y) < 0)
		return -1;
	sb_printf(&doc, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", x.buf, y.buf);
	uint8_t md[32];
	unsigned int mdlen = 0;
	if (!EVP_Digest(doc.buf, doc.len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
		return -1;
	b64url_encode(&out, md, 32);
	if (out.len >= cap)
		return -1;
	memcpy(kid, out.buf, out.len + 1);
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	const oidc_key_t *ka = a, *kb = b;
	if (ka->created_unix != kb->created_unix)
		return ka->created_unix < kb->created_unix ? -1 : 1;
	return strcmp(ka->kid, kb->kid);
}

/* Sorted oldest first; each key but the newest retired when the next came. */
static void keys_order(oidc_t *o)
{
	if (o->n_keys > 1)
		qsort(o->keys, o->n_keys, sizeof *o->keys, key_cmp);
	for (size_t i = 0; i < o->n_keys; i++)
		o->keys[i].retired_unix = i + 1 < o->n_keys ? o->keys[i + 1].created_unix : 0;
}

static int load_one(oidc_t *o, const char *name, hutch_err_t *err)
{
	long long created = 0;
	char kid_in_name[64];
	int used = 0;
	if (sscanf(name, "%lld-%63[A-Za-z0-9_-]%n", &created, kid_in_name, &used) != 2 ||
	    strcmp(name + used, ".pem") != 0)
		return 0; /* not ours (a temp file from a crash: ignored) */
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", o->keydir, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return hutch_err_sys(err, errno, "identity key %s", path);
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return hutch_err_set(err, -EINVAL, "identity key %s is not a regular file", path);
	}
	if (st.st_mode & 077 || st.st_uid != geteuid()) {
		close(fd);
		return hutch_err_set(err, -EPERM,
				     "identity key %s is readable by others (mode %03o, owner %u): "
				     "it must be 0600 and owned by hutchd's user",
				     path, (unsigned)(st.st_mode & 0777), (unsigned)st.st_uid);
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return hutch_err_sys(err, errno, "identity key %s", path);
	}
	EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (!pkey || !is_p256(pkey)) {
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		return hutch_err_set(err, -EINVAL, "identity key %s is not a P-256 private key", path);
	}
	oidc_key_t k = {.pkey = pkey, .created_unix = created};
	if (key_thumbprint(pkey, k.kid, sizeof k.kid) < 0 || strcmp(k.kid, kid_in_name) != 0) {
		EVP_PKEY_free(pkey);
		return hutch_err_set(err, -EINVAL,
				     "identity key %s: its name does not match its key id", path);
	}
	snprintf(k.path, sizeof k.path, "%s", path);
	o->keys = xrealloc(o->keys, (o->n_keys + 1) * sizeof *o->keys);
	o->keys[o->n_keys++] = k;
	return 0;
}

int oidc_keys_load(oidc_t *o, hutch_err_t *err)
{
	snprintf(o->keydir, sizeof o->keydir, "%s/keys", o->host->state_dir);
	if (mkdir(o->keydir, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", o->keydir);
	struct stat st;
	if (lstat(o->keydir, &st) < 0)
		return hutch_err_sys(err, errno, "%s", o->keydir);
	if (!S_ISDIR(st.st_mode))
		return hutch_err_set(err, -ENOTDIR, "%s is not a directory", o->keydir);
	if (st.st_mode & 077 && chmod(o->keydir, 0700) < 0)
		return hutch_err_sys(err, errno, "chmod %s", o->keydir);
	DIR *d = opendir(o->keydir);
	if (!d)
		return hutch_err_sys(err, errno, "opendir %s", o->keydir);
	struct dirent *de;
	int r = 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if ((r = load_one(o, de->d_name, err)) < 0)
			break;
	}
	closedir(d);
	if (r < 0)
		return r;
	keys_order(o);
	return 0;
}

static int write_key(oidc_t *o, EVP_PKEY *pkey, oidc_key_t *k, hutch_err_t *err)
{
	char tmp[1024];
	snprintf(tmp, sizeof tmp, "%s/.new-%s.tmp", o->keydir, k->kid);
	snprintf(k->path, sizeof k->path, "%s/%lld-%s.pem", o->keydir, (long long)k->created_unix,
		 k->kid);
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tmp);
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		unlink(tmp);
		return hutch_err_sys(err, errno, "%s", tmp);
	}
	bool ok = PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1;
	ok = fflush(f) == 0 && ok;
	ok = fsync(fileno(f)) == 0 && ok;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, k->path) < 0) {
		int e = errno ? errno : EIO;
		unlink(tmp);
		ERR_clear_error();
		return hutch_err_sys(err, e, "write identity key %s", k->path);
	}
	int dfd = open(o->keydir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
	return 0;
}

static int new_key(oidc_t *o, hutch_err_t *err)
{
	EVP_PKEY *pkey = EVP_EC_gen("P-256");
	if (!pkey) {
		ERR_clear_error();
		return hutch_err_set(err, -EIO, "cannot generate a P-256 key");
	}
	oidc_key_t k = {.pkey = pkey, .created_unix = oidc_now()};
	/* Keep creation times strictly increasing, so the order is the order
	 * they were made even when two come within a second. */
	if (o->n_keys && k.created_unix <= o->keys[o->n_keys - 1].created_unix)
		k.created_unix = o->keys[o->n_keys - 1].created_unix + 1;
	int r;
	if (key_thumbprint(pkey, k.kid, sizeof k.kid) < 0) {
		r = hutch_err_set(err, -EIO, "cannot compute the key id");
		goto fail;
	}
	if ((r = write_key(o, pkey, &k, err)) < 0)
		goto fail;
	o->keys = xrealloc(o->keys, (o->n_keys + 1) * sizeof *o->keys);
	o->keys[o->n_keys++] = k;
	keys_order(o);
	o->host->log(o->host, HUTCH_LOG_INFO, "new signing key %s", k.kid);
	o->host->metric_add(o->host, "identity_key_rotations_total", NULL, 1);
	return 0;
fail:
	EVP_PKEY_free(pkey);
	return r;
}

int oidc_keys_maintain(oidc_t *o, bool force, hutch_err_t *err)
{
	int64_t now = oidc_now();
	pthread_mutex_lock(&o->lock);
	int r = 0;
	const oidc_key_t *active = o->n_keys ? &o->keys[o->n_keys - 1] : NULL;
	if (force || !active || (now - active->created_unix) * 1000 >= o->cfg->rotate_every_ms)
		r = new_key(o, err);
	/* Drop retired keys whose every token has expired. */
	int64_t keep_ms = o->cfg->token_ttl_ms + o->cfg->clock_skew_ms;
	size_t w = 0;
	for (size_t i = 0; i < o->n_keys; i++) {
		oidc_key_t *k = &o->keys[i];
		if (k->retired_unix && (now - k->retired_unix) * 1000 > keep_ms) {
			unlink(k->path);
			o->host->log(o->host, HUTCH_LOG_INFO, "signing key %s removed (retired)", k->kid);
			EVP_PKEY_free(k->pkey);
			continue;
		}
		o->keys[w++] = *k;
	}
	o->n_keys = w;
	o->host->metric_set(o->host, "identity_keys", NULL, (double)o->n_keys);
	pthread_mutex_unlock(&o->lock);
	return r;
}

void oidc_keys_free(oidc_t *o)
{
	for (size_t i = 0; i < o->n_keys; i++)
		EVP_PKEY_free(o->keys[i].pkey);
	free(o->keys);
	o->keys = NULL;
	o->n_keys = 0;
}

void oidc_jwks(oidc_t *o, strbuf_t *out)
{
	sb_append(out, "{\"keys\":[");
	for (size_t i = 0; i < o->n_keys; i++) {
		_cleanup_sb_ strbuf_t x = STRBUF_INIT, y = STRBUF_INIT;
		if (key_xy(o->keys[i].pkey, &x, &y) < 0)
			continue;
		if (out->buf[out->len - 1] != '[')
			sb_putc(out, ',');
		sb_printf(out,
			  "{\"kty\":\"EC\",\"crv\":\"P-256\",\"use\":\"sig\",\"alg\":\"ES256\","
			  "\"kid\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
			  o->keys[i].kid, x.buf, y.buf);
	}
	sb_append(out, "]}");
}
