/*
 * image_service_priv.h: what image_service.c (records, the sandboxes'
 * image source) and image_jobs.c (builds, imports, exports, verification,
 * collection) share. Not for other parts of hutchd.
 *
 * Pins. Everything an image record references (layers, config, manifest)
 * is pinned in the image store for as long as the record exists: pinned
 * when the record is written (a job's result comes pinned already) or
 * read at startup, unpinned when it is replaced or removed. Sandboxes pin
 * their image's digests while they live. The garbage collection then needs
 * no list of what to keep: it removes whatever is not pinned.
 */
#ifndef HUTCH_IMAGE_SERVICE_PRIV_H
#define HUTCH_IMAGE_SERVICE_PRIV_H

#include "builder.h"
#include "image_config.h"
#include "image_service.h"
#include "image_store.h"

struct image_service {
	image_service_deps_t d;
	image_config_t cfg;
	image_store_t *store;
	builder_deps_t bdeps;
	char *run_root;              /* <run_dir>/builds */
	char *state_dir;
	Hutch__V1__Image *builtin;   /* busybox; its digests pinned for good */
};

/* The store id of (tenant, name): "img-" and 24 hex digits. */
void image_record_id(const char *tenant, const char *name, char id[32]);

/* Loop: writes img (tenant, name set) as the tenant's image of that name,
 * replacing the one there; img's digests are pinned already (a job's
 * result) and now belong to the record; the replaced record's are let go.
 * Fills img->id. On failure img's pins are let go too. */
int image_record_put(image_service_t *svc, Hutch__V1__Image *img, hutch_err_t *err);

/* The image a spec's base or a sandbox names: the tenant's record, else
 * the built-in of that name. Owned copy. */
int image_lookup(image_service_t *svc, const char *tenant, const char *name_or_digest,
		 Hutch__V1__Image **out, hutch_err_t *err);

/* Pins / unpins every digest of img (layers, config, manifest). */
void image_pin_all(image_store_t *store, const Hutch__V1__Image *img);
void image_unpin_all(image_store_t *store, const Hutch__V1__Image *img);

/* Lets go of every pin on `pinned` but one per digest in keep (a job's
 * result keeps exactly the pins its record will own). */
void image_pins_keep_only(image_store_t *store, char *const *pinned, char *const *keep);

/* A deep copy of any message (pack + unpack), NULL on OOM. */
void *image_pb_copy(const ProtobufCMessage *m);

#endif
