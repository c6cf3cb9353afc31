/*
 * image_spec.h: the image spec (hutch.v1.ImageSpec) as the builder sees it:
 * validation, the canonical form of each step, cache keys and one-line
 * descriptions.
 *
 * Content addressing. Every step of a build has a key, and after every step
 * the build has a chain digest that stands for everything so far:
 *
 *     key(base)    = sha256("hutch-base-v1\n" + resolved base)
 *     chain(step)  = sha256("hutch-chain-v1\n" + key(step) + "\n" + digests of
 *                           the layers the step made, one a line)
 *     key(step i)  = sha256("hutch-step-v1\n" + chain(step i-1) + "\n" +
 *                           canonical(step i))
 *
 * The canonical form is a compact JSON text with a fixed member order that
 * names everything the step's result depends on: its packages, commands,
 * paths, modes, environment, and for added files their content digests
 * (never their local paths or timestamps). The resolved base names what the
 * base is (a registry manifest's digest, the Debian suite and mirror). As a
 * step's key covers its parent's layers by digest, a changed base or a
 * rebuilt step gives every later step a new key. Equal keys mean equal
 * inputs: the build cache maps a key to the layers its step made.
 * Credentials never enter a key.
 *
 * Pure functions, no I/O: shared by hutchd, the CLI and the unit tests.
 */
#ifndef HUTCH_IMAGE_SPEC_H
#define HUTCH_IMAGE_SPEC_H

#include <stdbool.h>
#include <stddef.h>

#include <hutch/error.h>

#include "hutch/v1/image.pb-c.h"
#include "image_digest.h"

/* Most steps in one spec (each may add a layer; overlayfs stacks at most
 * 500 lower layers, and every layer costs at sandbox start). */
#define IMAGE_MAX_STEPS 120
/* Most entries of one add_local_dir. */
#define IMAGE_MAX_DIR_ENTRIES 100000

/* Image names: 1-128 of [A-Za-z0-9._/:-], starting with a letter or digit,
 * and not a digest. */
bool image_name_valid(const char *name);

/* Checks the whole spec; errors name the step ("step 3 (run_commands):
 * ..."). Steps are numbered from 2: step 1 is the base. */
int image_spec_check(const Hutch__V1__ImageSpec *spec, hutch_err_t *err);

/* The canonical form of a step, malloc'ed. */
char *image_step_canonical(const Hutch__V1__ImageStep *step);

/* key = sha256("hutch-step-v1\n" + parent + "\n" + canonical). */
void image_step_key(const char *parent_key, const Hutch__V1__ImageStep *step,
		    char key[DIGEST_STR_MAX]);
/* key = sha256("hutch-base-v1\n" + resolved), resolved being the builder's
 * canonical description of the base as it will be built. */
void image_base_key(const char *resolved, char key[DIGEST_STR_MAX]);
/* chain = sha256("hutch-chain-v1\n" + key + "\n" + one layer digest a line). */
void image_chain(const char *key, char *const *layers, size_t n, char chain[DIGEST_STR_MAX]);

/* "run_commands: make install" (at most about 100 characters), malloc'ed. */
char *image_step_describe(const Hutch__V1__ImageStep *step);
char *image_base_describe(const Hutch__V1__ImageBase *base);

/* Whether the step makes a layer (false: env, workdir, entrypoint, which
 * only change the image's config). */
bool image_step_has_layer(const Hutch__V1__ImageStep *step);
/* Whether it runs in a build sandbox (apt, pip, run). */
bool image_step_runs(const Hutch__V1__ImageStep *step);
/* Whether it needs the network from inside its sandbox (apt_install; a
 * pip_install with an index or URL find-links). */
bool image_step_needs_network(const Hutch__V1__ImageStep *step);

/* The op's name ("apt_install"). */
const char *image_step_op_name(const Hutch__V1__ImageStep *step);

#endif
