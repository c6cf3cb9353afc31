/*
 * image_service.h: images as hutchd serves them: named images per tenant,
 * builds, imports, exports and garbage collection as jobs on threads of
 * their own, and the image source sandboxes are made from.
 *
 * An image record is a store object of kind "image" (the Image message),
 * owned by a tenant and named; its id is derived from (tenant, name), so a
 * rebuild under the same name replaces it. The content lives in the image
 * store (image_store.h), shared by all tenants and addressed by digest;
 * records and live sandboxes hold it, and the garbage collection removes
 * what nothing holds.
 *
 * Loop thread only (the image source's prepare runs on the sandbox
 * manager's pool). A job's callbacks run on the loop; after image_job_cancel none
 * runs again. A job's thread blocks while its client is slow (its event
 * queue is full), so a build's output never piles up in memory.
 */
#ifndef HUTCH_IMAGE_SERVICE_H
#define HUTCH_IMAGE_SERVICE_H

#include <stdbool.h>
#include <uv.h>

#include <hutch/error.h>

#include "daemon_config.h"
#include "hutch/v1/image.pb-c.h"
#include "plugin_set.h"
#include "sandbox_mgr.h"
#include "store.h"

#define IMAGE_KIND "image"

typedef struct image_service image_service_t;
typedef struct image_job image_job_t;

typedef struct image_service_deps {
	uv_loop_t *loop;
	store_t *store;
	plugin_set_t *plugins;
	const daemon_config_t *cfg;
	sandbox_mgr_t *sandboxes;
} image_service_deps_t;

/* Reads [images], opens the store, makes the built-in busybox image, pins
 * what every record references, and becomes sandboxes' image source
 * (adopting the images of sandboxes found running). Main thread, before
 * the loop runs. */
int image_service_new(const image_service_deps_t *deps, image_service_t **out, hutch_err_t *err);
/* After the loop ended and the sandbox manager was freed. */
void image_service_free(image_service_t *svc);
/* The [images] options in force. */
const struct image_config *image_service_config(const image_service_t *svc);

/* ---- records (loop) ---- */

/* By name, or by "sha256:..." digest among the tenant's images. Owned
 * copy (free_unpacked). */
int image_service_get(image_service_t *svc, const char *tenant, const char *name_or_digest,
		      Hutch__V1__Image **out, hutch_err_t *err);
/* For inspection: as image_service_get, and the built-in images too. */
int image_service_inspect(image_service_t *svc, const char *tenant, const char *name_or_digest,
			  Hutch__V1__Image **out, hutch_err_t *err);
/* The tenant's images, oldest first; free each and the array. */
int image_service_list(image_service_t *svc, const char *tenant, Hutch__V1__Image ***out,
		       size_t *n, hutch_err_t *err);
/* Forgets the name; a garbage collection follows (done: its result). */
typedef void (*image_gc_done_cb)(void *data, int64_t freed_bytes, int layers, int blobs,
				 const hutch_err_t *err);
int image_service_remove(image_service_t *svc, const char *tenant, const char *name,
			 image_gc_done_cb done, void *data, hutch_err_t *err);
int image_service_gc(image_service_t *svc, image_gc_done_cb done, void *data, hutch_err_t *err);

/* ---- jobs ---- */

typedef struct image_job_cb {
	/* An event for the client; false: it cannot take more now (call
	 * image_job_writable when it can). Build jobs. */
	bool (*on_event)(void *data, const Hutch__V1__BuildImageEvent *ev);
	/* Bytes for the client; false as above. Export jobs. */
	bool (*on_data)(void *data, const void *buf, size_t len);
	/* The job read what it was sent: image_job_put may be called again
	 * (after it returned false). */
	void (*on_recv_ready)(void *data);
	/* The end: img (builds, imports, verifies) or err. Last callback. */
	void (*on_done)(void *data, const Hutch__V1__Image *img, const hutch_err_t *err);
	void *data;
} image_job_cb_t;

/* A build; validates start and the tenant's right to its base first (an
 * error returns <0 and no job). */
image_job_t *image_build_start(image_service_t *svc, const char *tenant,
			       const Hutch__V1__BuildStart *start, const image_job_cb_t *cb,
			       hutch_err_t *err);
/* An import of a tar (OCI layout or docker-archive) sent with image_job_put. */
image_job_t *image_import_start(image_service_t *svc, const char *tenant,
				const Hutch__V1__ImportImageStart *start, const image_job_cb_t *cb,
				hutch_err_t *err);
/* An export of the image as an OCI layout tar (on_data). */
image_job_t *image_export_start(image_service_t *svc, const char *tenant, const char *name,
				const image_job_cb_t *cb, hutch_err_t *err);
/* Inspect with verify: every layer re-hashed; on_done(img) if all sound. */
image_job_t *image_verify_start(image_service_t *svc, const char *tenant, const char *name,
				const image_job_cb_t *cb, hutch_err_t *err);

/* Data from the client: a build's file chunk (digest set) or an import's
 * bytes. false: stop receiving until on_recv_ready. */
bool image_job_put(image_job_t *job, const char *digest, const void *data, size_t len, bool last);
/* The client sent everything (files_done, half-close). */
void image_job_put_done(image_job_t *job);
/* The client can take events again. */
void image_job_writable(image_job_t *job);
/* The client is gone: the job stops, no callback follows. */
void image_job_cancel(image_job_t *job);

#endif
