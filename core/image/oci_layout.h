/*
 * oci_layout.h: images in and out of the store as tar streams.
 *
 * Export writes an OCI image layout (oci-layout, index.json naming the image
 * with org.opencontainers.image.ref.name, blobs/sha256/...) as one tar: the
 * manifest, the config and the layers (uncompressed tars) as they are in
 * the store. The layer descriptors keep the build cache keys
 * (dev.hutch.cache-key), so an image exported from one hutchd and imported
 * into another keeps its builds cached there, for the importing tenant.
 *
 * Import reads such a tar, or a docker-archive (docker save, skopeo
 * docker-archive:): every blob is checked against its digest, every layer
 * against the config's diff ids; layers are stored uncompressed, and the
 * image gets a manifest of its own over them (the config is kept as is).
 * The tar is hostile input: it is unpacked into scratch with no absolute
 * paths, no `..`, no links, regular files and directories only.
 * Blocking: job threads only.
 */
#ifndef HUTCH_OCI_LAYOUT_H
#define HUTCH_OCI_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>

#include <hutch/error.h>

#include "hutch/v1/image.pb-c.h"
#include "image_store.h"

/* Called with each piece of the tar; false stops the export (-ECANCELED). */
typedef bool (*oci_write_cb)(void *data, const void *buf, size_t len);

int oci_layout_export(image_store_t *store, const Hutch__V1__Image *img, oci_write_cb write,
		      void *data, hutch_err_t *err);

/* The imported image: manifest and config digests, layers (pinned, also on
 * *pinned), config. tenant: whose build cache gets the layers' keys. */
typedef struct oci_imported {
	char manifest[DIGEST_STR_MAX];
	char config[DIGEST_STR_MAX];
	int64_t config_size;
	char **layers;
	int64_t *sizes;
	char **cache_keys;  /* per layer, "" if none */
	size_t n;
	Hutch__V1__ImageConfig *cfg; /* owned */
} oci_imported_t;

/* On failure nothing of it stays pinned and *pinned is NULL. */
int oci_archive_import(image_store_t *store, const char *tenant, const char *tar_path,
		       const char *ref, oci_imported_t *out, char ***pinned, hutch_err_t *err);
void oci_imported_free(oci_imported_t *imp);

#endif
