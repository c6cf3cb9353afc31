/*
 * registry.h: pulling images from OCI / Docker v2 registries.
 *
 * A reference is "host[:port]/repo[:tag][@sha256:...]" (a name without a
 * host is Docker Hub's, "library/" added for one-part names). Plain HTTP is
 * used for loopback registries, for hosts listed in [images]
 * insecure_registries, and when the base says insecure; HTTPS otherwise,
 * verified against the system's CAs. Credentials, when given, answer the
 * registry's Basic or Bearer token challenge; they are never stored.
 *
 * Everything fetched is checked: the manifest against the digest the
 * reference pins (if any), each blob against the digest the manifest
 * names, each layer's uncompressed content against the config's diff ids.
 * Layers are stored uncompressed (their digest is then their diff id).
 * Blocking (libcurl): build threads only.
 */
#ifndef HUTCH_REGISTRY_H
#define HUTCH_REGISTRY_H

#include <stdatomic.h>

#include <hutch/error.h>

#include "build_sandbox.h"
#include "hutch/v1/image.pb-c.h"
#include "image_config.h"
#include "image_store.h"

typedef struct registry_ref {
	char *host;        /* "127.0.0.1:5000", "registry-1.docker.io" */
	char *repo;        /* "team/app" */
	char *tag;         /* or NULL */
	char *digest;      /* pinned by the reference, or NULL */
	char *canonical;   /* "host/repo:tag" or "host/repo@sha256:..." */
	bool plain_http;
	/* Filled by registry_resolve: */
	char manifest_digest[DIGEST_STR_MAX];
	char *manifest;    /* the image manifest (not an index) */
	size_t manifest_len;
	char *token;       /* a bearer token the registry gave */
} registry_ref_t;

/* Parses ref; -EINVAL with a message when it is not a reference. */
int registry_ref_parse(const char *ref, registry_ref_t *out, hutch_err_t *err);

/* Parses the base's reference and asks the registry what it names now:
 * fills manifest_digest (an index is resolved to this host's platform). */
int registry_resolve(const image_config_t *cfg, const Hutch__V1__RegistryBase *base,
		     registry_ref_t *ref, hutch_err_t *err);

/* Downloads the config and layers of a resolved reference into the store.
 * e: the layers (pinned, each pushed on *pinned too) and the config blob. */
int registry_pull(const image_config_t *cfg, image_store_t *store,
		  const Hutch__V1__RegistryBase *base, registry_ref_t *ref, image_cache_entry_t *e,
		  char ***pinned, build_output_cb progress, void *data, const atomic_bool *cancel,
		  hutch_err_t *err);

void registry_ref_free(registry_ref_t *ref);

#endif
