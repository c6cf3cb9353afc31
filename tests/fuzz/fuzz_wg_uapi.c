/* Fuzzes net-wireguard's readers of what comes from outside the plugin:
 * wireguard-go's answers to get=1 (another process) and a peer's base64
 * public key (the API's caller): no crash, no read past the input, and
 * what they accept is well-formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1);
	memcpy(copy, data, size);
	copy[size] = '\0';
	wg_uapi_state_t st;
	hutch_err_t err = {0};
	if (wg_uapi_parse(copy, size, &st, &err) == 0) {
		for (size_t i = 0; i < st.n_peers; i++)
			if (st.peers[i].last_handshake_sec < 0 || st.peers[i].endpoint[63] != '\0')
				__builtin_trap();
		wg_uapi_state_free(&st);
	} else if (!err.message[0]) {
		__builtin_trap(); /* a refusal says why */
	}
	/* A key that parses prints back the same. */
	wg_key_t k;
	if (wg_key_from_b64(copy, &k) == 0) {
		char b64[WG_KEY_B64_LEN];
		wg_key_b64(&k, b64);
		if (strcmp(b64, copy) != 0)
			__builtin_trap();
	}
	free(copy);
	return 0;
}
