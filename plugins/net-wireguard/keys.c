/*
 * keys.c: WireGuard's X25519 key pairs, and the hex (UAPI) and base64
 * (wg, wg-quick) spellings of a key.
 *
 * A member's private key exists in this process only between its
 * generation and the UAPI request that hands it to wireguard-go; every
 * buffer that held it is wiped (OPENSSL_cleanse, which the compiler may
 * not elide).
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "wg.h"

int wg_keypair(wg_key_t *priv, wg_key_t *pub, hutch_err_t *err)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	EVP_PKEY *pk = NULL;
	int r = 0;
	size_t n = WG_KEY_LEN, m = WG_KEY_LEN;
	if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_keygen(ctx, &pk) <= 0 ||
	    EVP_PKEY_get_raw_private_key(pk, priv->b, &n) <= 0 ||
	    EVP_PKEY_get_raw_public_key(pk, pub->b, &m) <= 0 || n != WG_KEY_LEN ||
	    m != WG_KEY_LEN) {
		wg_key_wipe(priv);
		r = hutch_err_set(err, EIO, "X25519 key generation failed (OpenSSL)");
	}
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(ctx);
	return r;
}

int wg_pubkey_of(const wg_key_t *priv, wg_key_t *pub, hutch_err_t *err)
{
	EVP_PKEY *pk = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, priv->b, WG_KEY_LEN);
	size_t m = WG_KEY_LEN;
	int r = 0;
	if (!pk || EVP_PKEY_get_raw_public_key(pk, pub->b, &m) <= 0 || m != WG_KEY_LEN)
		r = hutch_err_set(err, EIO, "X25519 public key derivation failed (OpenSSL)");
	EVP_PKEY_free(pk);
	return r;
}

void wg_key_wipe(wg_key_t *k)
{
	OPENSSL_cleanse(k->b, sizeof k->b);
}

void wg_key_hex(const wg_key_t *k, char out[2 * WG_KEY_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < WG_KEY_LEN; i++) {
		out[2 * i] = digits[k->b[i] >> 4];
		out[2 * i + 1] = digits[k->b[i] & 15];
	}
	out[2 * WG_KEY_LEN] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1; /* UAPI spells keys in lower case only */
}

int wg_key_from_hex(const char *hex, wg_key_t *k)
{
	if (strlen(hex) != 2 * WG_KEY_LEN)
		return -EINVAL;
	for (size_t i = 0; i < WG_KEY_LEN; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		k->b[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void wg_key_b64(const wg_key_t *k, char out[WG_KEY_B64_LEN])
{
	size_t o = 0;
	for (size_t i = 0; i < WG_KEY_LEN; i += 3) {
		uint32_t v = (uint32_t)k->b[i] << 16;
		size_t have = WG_KEY_LEN - i < 3 ? WG_KEY_LEN - i : 3;
		if (have > 1)
			v |= (uint32_t)k->b[i + 1] << 8;
		if (have > 2)
			v |= k->b[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = have > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = have > 2 ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
}

int wg_key_from_b64(const char *b64, wg_key_t *k)
{
	/* 32 bytes: 10 full groups and one of 2 bytes ("xyz="). */
	if (!b64 || strlen(b64) != 44 || b64[43] != '=')
		return -EINVAL;
	uint8_t out[33];
	size_t o = 0;
	for (size_t i = 0; i < 44; i += 4) {
		uint32_t v = 0;
		for (size_t j = 0; j < 4; j++) {
			char c = b64[i + j];
			const char *p = c == '=' ? NULL : strchr(b64_alphabet, c);
			if (c == '=' && i + j == 43) {
				v <<= 6;
				continue;
			}
			if (!p || !c)
				return -EINVAL;
			v = v << 6 | (uint32_t)(p - b64_alphabet);
		}
		out[o++] = (uint8_t)(v >> 16);
		out[o++] = (uint8_t)(v >> 8);
		out[o++] = (uint8_t)v;
	}
	/* The last character's low two bits must be zero (canonical form). */
	if (out[32] != 0)
		return -EINVAL;
	memcpy(k->b, out, WG_KEY_LEN);
	return 0;
}

void wg_wipe(void *p, size_t n)
{
	if (p)
		OPENSSL_cleanse(p, n);
}
