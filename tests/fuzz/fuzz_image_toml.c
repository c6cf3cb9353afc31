/* Fuzzes the image file format (image_toml.c) and the spec checks behind
 * it: no crash, no leak, and whatever loads passes or fails the spec check
 * cleanly and has a canonical form and a key. Local paths point into an
 * empty directory, so the loader only ever meets missing files there. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image_spec.h"
#include "image_toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	image_toml_t t;
	hutch_err_t err = {0};
	if (image_toml_load_text((const char *)data, size, "fuzz.toml", "/nonexistent-hutch-fuzz", &t,
				 &err) < 0) {
		if (!err.message[0])
			__builtin_trap(); /* every error says what */
		return 0;
	}
	if (image_spec_check(t.spec, &err) == 0) {
		char key[DIGEST_STR_MAX];
		image_base_key("fuzz", key);
		for (size_t i = 0; i < t.spec->n_steps; i++) {
			image_step_key(key, t.spec->steps[i], key);
			char *d = image_step_describe(t.spec->steps[i]);
			if (strlen(d) > 200)
				__builtin_trap();
			free(d);
		}
		char *b = image_base_describe(t.spec->source);
		free(b);
	}
	image_toml_free(&t);
	return 0;
}
