/*
 * builder.h: one image build, run to completion on a thread of its own.
 *
 * The build walks the spec: the base (busybox, debian_slim, a registry
 * pull, or an image in the store), then every step. Each step's key is
 * computed from its parent's key (image_spec.h); a key found in the build
 * cache is a hit and nothing runs; a miss runs the step in a build sandbox
 * (build_sandbox.h) stacked on the layers so far, commits what it wrote as
 * a layer and records the key. Only one build at a time works on a given
 * key: a second build of the same spec waits, then finds the first one's
 * results in the cache. A failed step caches nothing.
 *
 * Everything here blocks; the loop side (image_service.c) talks to a build
 * only through build_io_t: events out (emit, which may block while the
 * client is slow: backpressure all the way to the step's process), the
 * uploaded files in (file_next), and a cancel flag.
 */
#ifndef HUTCH_IMAGE_BUILDER_H
#define HUTCH_IMAGE_BUILDER_H

#include <stdatomic.h>
#include <stdbool.h>

#include <hutch/error.h>

#include "build_sandbox.h"
#include "hutch/v1/image.pb-c.h"
#include "image_config.h"
#include "image_store.h"

typedef struct builder_deps {
	image_store_t *store;
	build_sandbox_deps_t sandbox;
	const image_config_t *cfg;
	const char *state_dir;       /* for the built-in busybox root */
} builder_deps_t;

/* What the loop resolved before the build started. */
typedef struct build_req {
	const char *tenant;
	const Hutch__V1__ImageSpec *spec;
	const char *name;
	bool no_cache;
	const char *base_manifest;   /* base `image`: its manifest digest */
	const hutch_net_policy_t *const *policies; /* for steps that need the network */
	size_t n_policies;
	bool policies_set;
} build_req_t;

/* One chunk of an uploaded file (see BuildImageRequest.file). */
typedef struct build_chunk {
	char digest[DIGEST_STR_MAX];
	void *data;
	size_t len;
	bool last;
} build_chunk_t;

typedef struct build_io {
	/* Sends an event to the client; may block (backpressure). */
	void (*emit)(void *data, const Hutch__V1__BuildImageEvent *ev);
	/* The next uploaded chunk: 1 with *out filled (free out->data), 0 when
	 * the client said files_done, <0 when cancelled. Blocks. */
	int (*file_next)(void *data, build_chunk_t *out);
	void *data;
	const atomic_bool *cancel;
} build_io_t;

/* Runs the build. On success *out is the image (name, digest, layers,
 * config, spec without credentials), and the digests it holds (layers,
 * config, manifest) are pinned in the store: the caller records the image
 * and then unpins them (image_pins). On failure an event in state FAILED
 * was emitted for a failed step, and err says why. */
int builder_run(const builder_deps_t *deps, const build_req_t *req, const build_io_t *io,
		Hutch__V1__Image **out, hutch_err_t *err);

/* The digests builder_run pinned for img (layers, config, manifest);
 * NULL-terminated, free with strv_free. */
char **image_pins(const Hutch__V1__Image *img, const char *config_digest);

/* The built-in image `busybox` as a store image (its layer made on first
 * use), for sandboxes of the default image: a build of the spec with only
 * that base, no client. Pinned as builder_run's result is. */
int builder_builtin(const builder_deps_t *deps, Hutch__V1__Image **out, hutch_err_t *err);

#endif
