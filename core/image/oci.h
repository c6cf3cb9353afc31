/*
 * oci.h: the OCI image JSON documents hutch reads and writes: image
 * configs, manifests, indexes (OCI and Docker v2 schema 2 alike).
 *
 * Written documents are deterministic (fixed member order, no timestamps),
 * so the same layers and config give the same manifest digest. Parsed
 * documents come from registries, layouts and archives: untrusted, so
 * every digest is checked with digest_valid and every size bounded.
 */
#ifndef HUTCH_OCI_H
#define HUTCH_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#include "hutch/v1/image.pb-c.h"
#include "image_digest.h"

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define OCI_MT_LAYER "application/vnd.oci.image.layer.v1.tar"
#define DOCKER_MT_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_MT_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
/* The annotation on a layer descriptor naming the build step key that
 * made it (export and import carry the build cache with it). */
#define HUTCH_ANNOT_CACHE_KEY "dev.hutch.cache-key"
#define OCI_ANNOT_REF_NAME "org.opencontainers.image.ref.name"

/* Largest JSON document accepted. */
#define OCI_JSON_MAX (4 << 20)

typedef struct oci_desc {
	char digest[DIGEST_STR_MAX];
	char *media_type;
	int64_t size;
	char *cache_key;  /* HUTCH_ANNOT_CACHE_KEY, or NULL */
	char *ref_name;   /* OCI_ANNOT_REF_NAME (indexes), or NULL */
	char *os, *arch;  /* platform (indexes), or NULL */
} oci_desc_t;

typedef struct oci_manifest {
	char *media_type;
	oci_desc_t config;
	oci_desc_t *layers;
	size_t n_layers;
} oci_manifest_t;

typedef struct oci_index {
	oci_desc_t *manifests;
	size_t n;
} oci_index_t;

/* What an image config says that matters here. */
typedef struct oci_config {
	Hutch__V1__ImageConfig *config; /* owned (free_unpacked) */
	char **diff_ids;                /* NULL-terminated */
	size_t n_diff_ids;
} oci_config_t;

/* ---- writing (malloc'ed JSON text) ---- */

/* layers: created_by per layer (history), may be NULL. */
char *oci_config_write(const Hutch__V1__ImageConfig *cfg, char *const *diff_ids, size_t n,
		       char *const *created_by);
/* cache_keys: per layer, may be NULL (or hold NULLs). */
char *oci_manifest_write(const char *config_digest, int64_t config_size, char *const *layer_digests,
			 const int64_t *layer_sizes, char *const *cache_keys, size_t n);
/* One manifest named ref_name (may be NULL). */
char *oci_index_write(const char *manifest_digest, int64_t manifest_size, const char *ref_name);

/* ---- reading ---- */

/* Either kind of document: *is_index tells which was found. */
int oci_parse_manifest_or_index(const char *json, size_t len, oci_manifest_t *m, oci_index_t *idx,
				bool *is_index, hutch_err_t *err);
int oci_config_parse(const char *json, size_t len, oci_config_t *out, hutch_err_t *err);
void oci_manifest_free(oci_manifest_t *m);
void oci_index_free(oci_index_t *idx);
void oci_config_free(oci_config_t *c);

/* One image of a docker-archive (docker save, skopeo docker-archive:):
 * its manifest.json names the config and layer files by path inside the
 * archive. Paths are as the archive says: the caller checks them. */
typedef struct docker_archive_image {
	char *config;
	char **layers;      /* NULL-terminated */
	size_t n_layers;
	char **repo_tags;   /* NULL-terminated, may be NULL */
} docker_archive_image_t;

/* manifest.json of a docker-archive: an array of images. */
int oci_docker_manifest_parse(const char *json, size_t len, docker_archive_image_t **out,
			      size_t *n, hutch_err_t *err);
void oci_docker_manifest_free(docker_archive_image_t *v, size_t n);

/* The content of an OCI layout's oci-layout file. */
#define OCI_LAYOUT_FILE "{\"imageLayoutVersion\":\"1.0.0\"}"

/* The entry of an index for this host (linux/amd64 on x86-64): by ref
 * when given, else by platform, else the only one. NULL if none. */
const oci_desc_t *oci_index_pick(const oci_index_t *idx, const char *ref);

/* GOARCH of this machine ("amd64", "arm64"). */
const char *oci_host_arch(void);

#endif
