/*
 * debian.h: the debian_slim base: a minimal Debian root file system with a
 * given Python, and `python` and `pip` on PATH.
 *
 * Made in two stages, as debootstrap makes foreign roots:
 *   1. on the host, `debootstrap --foreign --variant=minbase` downloads the
 *      suite's signed packages from the configured mirror, checks them
 *      against Debian's keyring and unpacks them into a directory. Nothing
 *      from the packages runs here.
 *   2. in a build sandbox whose only layer is that directory,
 *      `/debootstrap/debootstrap --second-stage` installs and configures
 *      them (maintainer scripts run inside gVisor). The sandbox's writable
 *      layer is then merged with the first stage into one directory: the
 *      base layer.
 *
 * Which Python: each Debian suite has one (bookworm 3.11, trixie 3.13,
 * bullseye 3.9). The suites allowed are [images] debian_suites, and of those
 * the ones the mirror serves (checked once per daemon) are offered.
 */
#ifndef HUTCH_DEBIAN_H
#define HUTCH_DEBIAN_H

#include <stdatomic.h>

#include <hutch/error.h>

#include "build_sandbox.h"
#include "image_config.h"
#include "image_store.h"

typedef struct debian_ctx {
	image_store_t *store;
	const build_sandbox_deps_t *sandbox;
	const image_config_t *cfg;
	const char *tenant;
	build_output_cb on_output; /* debootstrap's output, as it comes */
	void *data;
	const atomic_bool *cancel;
} debian_ctx_t;

/* The suite that provides python_version ("" or NULL: the newest on
 * offer). -ENOENT with the versions that can be provided when none. */
int debian_pick(const image_config_t *cfg, const char *python_version, const char **suite,
		const char **python, hutch_err_t *err);

/* The base as it is built, for its cache key, malloc'ed. */
char *debian_resolved(const image_config_t *cfg, const char *suite, const char *python);

/* Makes the root file system; *root_out is a scratch dir of the store
 * holding it (malloc'ed path; the caller makes a layer of it). */
int debian_make_root(const debian_ctx_t *c, const char *suite, char **root_out, hutch_err_t *err);

#endif
