/*
 * grpc_tls.c: OpenSSL through memory BIOs (see grpc_tls.h).
 */
#include "grpc_tls.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"

struct grpc_tls {
	SSL *ssl;
	BIO *rbio; /* ciphertext from the peer, read by SSL */
	BIO *wbio; /* ciphertext SSL produced for the peer */
	bool handshake_done;
};

/* The newest OpenSSL error as text, and the queue cleared. */
static const char *ssl_error_text(char *buf, size_t cap)
{
	unsigned long e = ERR_get_error();
	if (!e) {
		snprintf(buf, cap, "unknown TLS error");
	} else {
		ERR_error_string_n(e, buf, cap);
	}
	ERR_clear_error();
	return buf;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	/* gRPC runs on HTTP/2 only; refuse anything else outright rather
	 * than let the client fall back to HTTP/1.1. */
	for (unsigned int i = 0; i < inlen;) {
		unsigned int n = in[i];
		if (i + 1 + n > inlen)
			break;
		if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
			*out = in + i + 1;
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
		i += 1 + n;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int grpc_tls_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out,
		     hutch_err_t *err)
{
	char buf[256];
	ERR_clear_error();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return hutch_err_set(err, ENOMEM, "TLS context: %s", ssl_error_text(buf, sizeof buf));
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
					 SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		SSL_CTX_free(ctx);
		return hutch_err_set(err, EINVAL, "load certificate %s: %s", cert_file,
				     ssl_error_text(buf, sizeof buf));
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		SSL_CTX_free(ctx);
		return hutch_err_set(err, EINVAL, "load private key %s: %s", key_file,
				     ssl_error_text(buf, sizeof buf));
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		SSL_CTX_free(ctx);
		return hutch_err_set(err, EINVAL, "private key %s does not match certificate %s",
				     key_file, cert_file);
	}
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	*out = ctx;
	return 0;
}

int grpc_tls_new(SSL_CTX *ctx, grpc_tls_t **out, hutch_err_t *err)
{
	_cleanup_free_ grpc_tls_t *t = calloc(1, sizeof *t);
	if (!t)
		return hutch_err_set(err, ENOMEM, "TLS: out of memory");
	t->ssl = SSL_new(ctx);
	t->rbio = BIO_new(BIO_s_mem());
	t->wbio = BIO_new(BIO_s_mem());
	if (!t->ssl || !t->rbio || !t->wbio) {
		SSL_free(t->ssl);
		BIO_free(t->rbio);
		BIO_free(t->wbio);
		return hutch_err_set(err, ENOMEM, "TLS: out of memory");
	}
	/* An empty BIO means "wait for more", not end of stream. */
	BIO_set_mem_eof_return(t->rbio, -1);
	BIO_set_mem_eof_return(t->wbio, -1);
	SSL_set_bio(t->ssl, t->rbio, t->wbio); /* SSL owns both now */
	SSL_set_accept_state(t->ssl);
	*out = steal_ptr(&t);
	return 0;
}

void grpc_tls_free(grpc_tls_t *tls)
{
	if (!tls)
		return;
	SSL_free(tls->ssl);
	free(tls);
}

int grpc_tls_read(grpc_tls_t *t, const uint8_t *data, size_t len,
		  void (*plain)(void *arg, const uint8_t *data, size_t len), void *arg,
		  hutch_err_t *err)
{
	char buf[256];
	ERR_clear_error();
	if (len > 0 && BIO_write(t->rbio, data, (int)len) != (int)len)
		return hutch_err_set(err, ENOMEM, "TLS: out of memory");
	if (!t->handshake_done) {
		int r = SSL_do_handshake(t->ssl);
		if (r != 1) {
			int e = SSL_get_error(t->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return 0;
			return hutch_err_set(err, EPROTO, "TLS handshake: %s",
					     ssl_error_text(buf, sizeof buf));
		}
		const unsigned char *proto = NULL;
		unsigned int plen = 0;
		SSL_get0_alpn_selected(t->ssl, &proto, &plen);
		if (plen != 2 || memcmp(proto, "h2", 2) != 0)
			return hutch_err_set(err, EPROTO, "TLS handshake: client did not offer ALPN h2");
		t->handshake_done = true;
	}
	for (;;) {
		uint8_t chunk[16384];
		int n = SSL_read(t->ssl, chunk, sizeof chunk);
		if (n > 0) {
			plain(arg, chunk, (size_t)n);
			continue;
		}
		int e = SSL_get_error(t->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return 0;
		if (e == SSL_ERROR_ZERO_RETURN)
			return hutch_err_set(err, ECONNRESET, "TLS: peer closed the session");
		return hutch_err_set(err, EPROTO, "TLS: %s", ssl_error_text(buf, sizeof buf));
	}
}

int grpc_tls_write(grpc_tls_t *t, const uint8_t *data, size_t len, hutch_err_t *err)
{
	char buf[256];
	ERR_clear_error();
	while (len > 0) {
		/* A memory BIO never fills up, so this never wants to wait. */
		int n = SSL_write(t->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
		if (n <= 0)
			return hutch_err_set(err, EPROTO, "TLS write: %s",
					     ssl_error_text(buf, sizeof buf));
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

bool grpc_tls_handshake_done(const grpc_tls_t *t)
{
	return t->handshake_done;
}

size_t grpc_tls_output_pending(const grpc_tls_t *t)
{
	return BIO_ctrl_pending(t->wbio);
}

size_t grpc_tls_take_output(grpc_tls_t *t, uint8_t *buf, size_t cap)
{
	int n = BIO_read(t->wbio, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
	return n > 0 ? (size_t)n : 0;
}
