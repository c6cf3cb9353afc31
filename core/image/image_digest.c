#include "image_digest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"

struct digest_ctx {
	EVP_MD_CTX *md;
};

digest_ctx_t *digest_new(void)
{
	digest_ctx_t *c = malloc(sizeof *c);
	if (!c)
		abort();
	c->md = EVP_MD_CTX_new();
	if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1)
		abort();
	return c;
}

void digest_update(digest_ctx_t *c, const void *data, size_t n)
{
	if (n)
		EVP_DigestUpdate(c->md, data, n);
}

void digest_free(digest_ctx_t *c)
{
	if (!c)
		return;
	EVP_MD_CTX_free(c->md);
	free(c);
}

void digest_final(digest_ctx_t *c, char out[DIGEST_STR_MAX])
{
	unsigned char md[32];
	unsigned int len = 0;
	EVP_DigestFinal_ex(c->md, md, &len);
	static const char hex[] = "0123456789abcdef";
	memcpy(out, DIGEST_PREFIX, strlen(DIGEST_PREFIX));
	char *p = out + strlen(DIGEST_PREFIX);
	for (unsigned i = 0; i < 32; i++) {
		*p++ = hex[md[i] >> 4];
		*p++ = hex[md[i] & 15];
	}
	*p = '\0';
	digest_free(c);
}

void digest_buf(const void *data, size_t n, char out[DIGEST_STR_MAX])
{
	digest_ctx_t *c = digest_new();
	digest_update(c, data, n);
	digest_final(c, out);
}

int digest_file(const char *path, char out[DIGEST_STR_MAX], int64_t *size_out,
		hutch_err_t *err)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return hutch_err_sys(err, errno, "open %s", path);
	digest_ctx_t *c = digest_new();
	static __thread unsigned char buf[1 << 16];
	int64_t total = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			digest_free(c);
			return hutch_err_sys(err, e, "read %s", path);
		}
		if (n == 0)
			break;
		digest_update(c, buf, (size_t)n);
		total += n;
	}
	digest_final(c, out);
	if (size_out)
		*size_out = total;
	return 0;
}

bool digest_valid(const char *s)
{
	size_t pl = strlen(DIGEST_PREFIX);
	if (!s || strncmp(s, DIGEST_PREFIX, pl) != 0 || strlen(s) != pl + DIGEST_HEX_LEN)
		return false;
	for (const char *p = s + pl; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

const char *digest_hex(const char *s)
{
	return s + strlen(DIGEST_PREFIX);
}
