/* Fuzzes the OCI / Docker JSON documents hutch reads from registries,
 * layouts and archives (oci.c): manifests, indexes, image configs and
 * docker-archive manifest.json. No crash, no leak; every digest that
 * comes out is a valid sha256 digest (they become paths in the store). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *json = (const char *)data;
	hutch_err_t err = {0};
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	if (oci_parse_manifest_or_index(json, size, &m, &idx, &is_index, &err) == 0) {
		if (is_index) {
			for (size_t i = 0; i < idx.n; i++)
				if (!digest_valid(idx.manifests[i].digest))
					__builtin_trap();
			oci_index_pick(&idx, NULL);
			oci_index_pick(&idx, "latest");
			oci_index_free(&idx);
		} else {
			if (!digest_valid(m.config.digest))
				__builtin_trap();
			for (size_t i = 0; i < m.n_layers; i++)
				if (!digest_valid(m.layers[i].digest) ||
				    (m.layers[i].cache_key && !digest_valid(m.layers[i].cache_key)))
					__builtin_trap();
			oci_manifest_free(&m);
		}
	}
	oci_config_t c;
	if (oci_config_parse(json, size, &c, &err) == 0) {
		for (size_t i = 0; i < c.n_diff_ids; i++)
			if (!digest_valid(c.diff_ids[i]))
				__builtin_trap();
		/* What was read writes back. */
		char *again = oci_config_write(c.config, c.diff_ids, c.n_diff_ids, NULL);
		free(again);
		oci_config_free(&c);
	}
	docker_archive_image_t *imgs;
	size_t n;
	if (oci_docker_manifest_parse(json, size, &imgs, &n, &err) == 0)
		oci_docker_manifest_free(imgs, n);
	return 0;
}
