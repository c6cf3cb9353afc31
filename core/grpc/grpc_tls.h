/*
 * grpc_tls.h: server-side TLS for the gRPC transport, with OpenSSL driven
 * through memory BIOs so that libuv keeps doing all socket I/O.
 *
 * Ciphertext read from the socket goes in with grpc_tls_read, which hands
 * out the plaintext; plaintext to send goes in with grpc_tls_write, and the
 * ciphertext to write to the socket comes out of grpc_tls_take_output. ALPN
 * must select "h2": a client offering something else (or nothing) fails the
 * handshake. Internal to hutch_grpc.
 */
#ifndef HUTCH_GRPC_TLS_H
#define HUTCH_GRPC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>
#include <openssl/ssl.h>

typedef struct grpc_tls grpc_tls_t;

/* A server context from a PEM certificate (chain) and key. TLS >= 1.2, ALPN
 * "h2" only. The caller frees it with SSL_CTX_free. */
int grpc_tls_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out,
		     hutch_err_t *err);

int grpc_tls_new(SSL_CTX *ctx, grpc_tls_t **out, hutch_err_t *err);
void grpc_tls_free(grpc_tls_t *tls);

/* Feeds ciphertext; advances the handshake; passes every decrypted chunk to
 * plain(arg, data, len). Returns 0, or -EPROTO (handshake failed, no "h2",
 * bad record) / -ECONNRESET (close_notify) with err filled: close the socket
 * after sending grpc_tls_take_output (an alert, maybe). */
int grpc_tls_read(grpc_tls_t *tls, const uint8_t *data, size_t len,
		  void (*plain)(void *arg, const uint8_t *data, size_t len), void *arg,
		  hutch_err_t *err);

/* Encrypts len bytes (only after the handshake). Returns 0 or -EPROTO. */
int grpc_tls_write(grpc_tls_t *tls, const uint8_t *data, size_t len, hutch_err_t *err);

bool grpc_tls_handshake_done(const grpc_tls_t *tls);

/* Ciphertext waiting to be written to the socket. */
size_t grpc_tls_output_pending(const grpc_tls_t *tls);
/* Moves up to cap bytes of it into buf; returns how many. */
size_t grpc_tls_take_output(grpc_tls_t *tls, uint8_t *buf, size_t cap);

#endif
