/*
 * image_builtin.h: the images hutchd can make without a registry or a build:
 * `busybox`, a root filesystem holding the host's static busybox and its
 * applets. It is made once under <state_dir>/images/builtin/ and used as a
 * read-only layer.
 */
#ifndef HUTCH_IMAGE_BUILTIN_H
#define HUTCH_IMAGE_BUILTIN_H

#include <hutch/error.h>

/* true if name is a built-in image. */
int image_builtin_known(const char *name);

/* Makes sure the image exists and returns its layer directory (malloc'ed).
 * Blocks (copies files): call it from a worker thread or at startup. */
int image_builtin_layer(const char *state_dir, const char *name, char **layer_dir,
			hutch_err_t *err);

#endif
