/*
 * image_toml.h: the image spec as a TOML file, for the CLI (and anything
 * else that builds from files on the client's side).
 *
 *   name = "app"                              # optional: the image's name
 *   [base]
 *   debian_slim = { python = "3.11" }         # or busybox = true,
 *                                             # registry = { ref = "...", username,
 *                                             #   password_env, insecure },
 *                                             # image = "name-or-digest",
 *                                             # oci_layout = "./dir",
 *                                             # docker_archive = "./img.tar"
 *   [[steps]]
 *   apt_install = ["curl"]
 *   [[steps]]
 *   add_local_dir = { src = "./wheels", dest = "/wheels" }
 *   [[steps]]
 *   pip_install = { packages = ["x"], find_links = ["/wheels"] }
 *
 * Every [[steps]] table holds exactly one operation. Local paths are
 * relative to the file's directory. Loading walks and hashes the local
 * files the steps add, so the spec that comes out is complete: its
 * LocalFile entries carry content digests, and `files` says where each
 * digest's content is on this machine (for the upload the daemon asks for).
 * See docs/images.md for every key.
 */
#ifndef HUTCH_IMAGE_TOML_H
#define HUTCH_IMAGE_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#include "hutch/v1/image.pb-c.h"
#include "image_digest.h"

typedef struct image_local_file {
	char digest[DIGEST_STR_MAX];
	char *path;   /* absolute local path */
	int64_t size;
} image_local_file_t;

typedef struct image_toml {
	Hutch__V1__ImageSpec *spec; /* owned (protobuf_c_message_free_unpacked) */
	char *name;                 /* the file's `name`, or NULL */
	/* base oci_layout / docker_archive: a local image the client imports
	 * first; spec->source then says `image = ""` until it is filled in
	 * with the imported digest. */
	char *import_path;
	image_local_file_t *files;  /* one per distinct digest */
	size_t n_files;
} image_toml_t;

/* Parses text (the contents of file_name, whose directory base_dir anchors
 * relative paths) and reads the local files it names. Errors say where:
 * "app.toml:7:1: steps[2]: ...". */
int image_toml_load_text(const char *text, size_t len, const char *file_name,
			 const char *base_dir, image_toml_t *out, hutch_err_t *err);
/* Reads and loads a file. */
int image_toml_load(const char *path, image_toml_t *out, hutch_err_t *err);
void image_toml_free(image_toml_t *t);

/* The local path of a digest's content, or NULL. */
const char *image_toml_file_path(const image_toml_t *t, const char *digest);

#endif
