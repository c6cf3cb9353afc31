/*
 * proxy_tls.c: TLS through memory BIOs, server side (ALPN h2 or http/1.1)
 * and client side (SNI, certificate checked against it), so that libuv does
 * all socket I/O. core/grpc's grpc_tls.c does the same for gRPC but is
 * server-only and insists on h2; this one serves both and the upstream side.
 */
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "proxy_priv.h"

struct proxy_tls {
	SSL *ssl;
	BIO *rbio, *wbio;
	bool done;
	char alpn[16];
};

static const char *tls_error_text(char *buf, size_t cap)
{
	unsigned long e = ERR_get_error();
	if (!e)
		snprintf(buf, cap, "unknown TLS error");
	else
		ERR_error_string_n(e, buf, cap);
	ERR_clear_error();
	return buf;
}

int proxy_tls_new(SSL_CTX *ctx, bool server, const char *sni, proxy_tls_t **out,
		  hutch_err_t *err)
{
	_cleanup_free_ proxy_tls_t *t = calloc(1, sizeof *t);
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
	SSL_set_bio(t->ssl, t->rbio, t->wbio);
	if (server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (sni && *sni) {
			SSL_set_tlsext_host_name(t->ssl, sni);
			/* The name is checked against the certificate, not
			 * only sent. */
			SSL_set1_host(t->ssl, sni);
		}
		SSL_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
		static const unsigned char alpn[] = "\x08http/1.1";
		SSL_set_alpn_protos(t->ssl, alpn, sizeof alpn - 1);
	}
	*out = steal_ptr(&t);
	return 0;
}

void proxy_tls_free(proxy_tls_t *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	free(t);
}

static int tls_handshake(proxy_tls_t *t, hutch_err_t *err)
{
	char buf[256];
	int r = SSL_do_handshake(t->ssl);
	if (r != 1) {
		int e = SSL_get_error(t->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return 0;
		long v = SSL_get_verify_result(t->ssl);
		if (v != X509_V_OK)
			return hutch_err_set(err, EPROTO, "TLS handshake: certificate not trusted: %s",
					     X509_verify_cert_error_string(v));
		return hutch_err_set(err, EPROTO, "TLS handshake: %s",
				     tls_error_text(buf, sizeof buf));
	}
	const unsigned char *p = NULL;
	unsigned int plen = 0;
	SSL_get0_alpn_selected(t->ssl, &p, &plen);
	if (p && plen < sizeof t->alpn) {
		memcpy(t->alpn, p, plen);
		t->alpn[plen] = '\0';
	}
	t->done = true;
	return 1;
}

int proxy_tls_start(proxy_tls_t *t, hutch_err_t *err)
{
	ERR_clear_error();
	int r = tls_handshake(t, err);
	return r < 0 ? r : 0;
}

int proxy_tls_read(proxy_tls_t *t, const uint8_t *d, size_t n,
		   void (*plain)(void *arg, const uint8_t *d, size_t n), void *arg,
		   hutch_err_t *err)
{
	char buf[256];
	int ret = 0;
	ERR_clear_error();
	if (n > 0 && BIO_write(t->rbio, d, (int)n) != (int)n)
		return hutch_err_set(err, ENOMEM, "TLS: out of memory");
	if (!t->done) {
		int r = tls_handshake(t, err);
		if (r <= 0)
			return r;
		ret = 1;
	}
	for (;;) {
		uint8_t chunk[16384];
		int k = SSL_read(t->ssl, chunk, sizeof chunk);
		if (k > 0) {
			plain(arg, chunk, (size_t)k);
			continue;
		}
		int e = SSL_get_error(t->ssl, k);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return ret;
		if (e == SSL_ERROR_ZERO_RETURN)
			return hutch_err_set(err, ECONNRESET, "TLS: peer closed the session");
		return hutch_err_set(err, EPROTO, "TLS: %s", tls_error_text(buf, sizeof buf));
	}
}

int proxy_tls_write(proxy_tls_t *t, const uint8_t *d, size_t n, hutch_err_t *err)
{
	char buf[256];
	ERR_clear_error();
	while (n > 0) {
		/* A memory BIO never fills up, so this never waits. */
		int k = SSL_write(t->ssl, d, n > INT32_MAX ? INT32_MAX : (int)n);
		if (k <= 0)
			return hutch_err_set(err, EPROTO, "TLS write: %s",
					     tls_error_text(buf, sizeof buf));
		d += k;
		n -= (size_t)k;
	}
	return 0;
}

void proxy_tls_shutdown(proxy_tls_t *t)
{
	if (t->done)
		SSL_shutdown(t->ssl);
	ERR_clear_error();
}

bool proxy_tls_done(const proxy_tls_t *t)
{
	return t->done;
}

const char *proxy_tls_alpn(const proxy_tls_t *t)
{
	return t->alpn;
}

size_t proxy_tls_pending(const proxy_tls_t *t)
{
	return BIO_ctrl_pending(t->wbio);
}

size_t proxy_tls_take(proxy_tls_t *t, uint8_t *buf, size_t cap)
{
	int k = BIO_read(t->wbio, buf, cap > INT32_MAX ? INT32_MAX : (int)cap);
	return k > 0 ? (size_t)k : 0;
}

int proxy_tls_client_ctx(const char *ca_file, SSL_CTX **out, hutch_err_t *err)
{
	char buf[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return hutch_err_set(err, ENOMEM, "TLS client context: %s",
				     tls_error_text(buf, sizeof buf));
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
			 : SSL_CTX_set_default_verify_paths(ctx);
	if (ok != 1) {
		SSL_CTX_free(ctx);
		if (ca_file)
			return hutch_err_set(err, EINVAL, "TLS client context: CA file `%s`: %s",
					     ca_file, tls_error_text(buf, sizeof buf));
		return hutch_err_set(err, EIO, "TLS client context: no CA store: %s",
				     tls_error_text(buf, sizeof buf));
	}
	*out = ctx;
	return 0;
}

int proxy_upstream_tls_ctx(const char *ca_file, SSL_CTX **out, hutch_err_t *err)
{
	return proxy_tls_client_ctx(ca_file, out, err);
}
