/* The image service's jobs: build, import, export, verify and garbage
 * collection, each on a thread of its own (image_job.h), each recording
 * what it made back on the loop. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "image_job.h"
#include "image_service_priv.h"
#include "image_spec.h"
#include "log.h"
#include "net_policy.h"
#include "oci_layout.h"
#include "strbuf.h"

static void hold(void *data, int delta)
{
	sandbox_mgr_job_hold(data, delta);
}

static job_hooks_t hooks_for(image_service_t *svc, job_work_fn work, job_done_fn done,
			     void (*ctx_free)(void *))
{
	return (job_hooks_t){
		.work = work,
		.done = done,
		.ctx_free = ctx_free,
		.hold = hold,
		.hold_data = svc->d.sandboxes,
	};
}

/* ---- build ---- */

typedef struct build_job {
	image_service_t *svc;
	image_job_t *job;
	char *tenant;
	char *name;
	Hutch__V1__ImageSpec *spec;  /* owned copy */
	bool no_cache;
	char base_manifest[DIGEST_STR_MAX];
	net_policy_set_t policies;
	Hutch__V1__Image *img;       /* the result */
} build_job_t;

static void build_free(void *ctx)
{
	build_job_t *b = ctx;
	free(b->tenant);
	free(b->name);
	if (b->spec)
		protobuf_c_message_free_unpacked(&b->spec->base, NULL);
	net_policy_set_free(&b->policies);
	if (b->img)
		protobuf_c_message_free_unpacked(&b->img->base, NULL);
	free(b);
}

static void build_emit(void *data, const Hutch__V1__BuildImageEvent *ev)
{
	build_job_t *b = data;
	job_emit_event(b->job, &ev->base);
}

static int build_file_next(void *data, build_chunk_t *out)
{
	build_job_t *b = data;
	job_chunk_t c;
	int r = job_take(b->job, &c);
	if (r <= 0)
		return r;
	snprintf(out->digest, sizeof out->digest, "%s", c.digest);
	out->data = c.data;
	out->len = c.len;
	out->last = c.last;
	return 1;
}

static int build_work(image_job_t *job, void *ctx, hutch_err_t *err)
{
	build_job_t *b = ctx;
	b->job = job;
	build_req_t req = {
		.tenant = b->tenant,
		.spec = b->spec,
		.name = b->name,
		.no_cache = b->no_cache,
		.base_manifest = b->base_manifest[0] ? b->base_manifest : NULL,
		.policies = (const hutch_net_policy_t *const *)b->policies.items,
		.n_policies = b->policies.n,
		.policies_set = b->policies.n > 0,
	};
	build_io_t io = {
		.emit = build_emit,
		.file_next = build_file_next,
		.data = b,
		.cancel = job_cancel_flag(job),
	};
	return builder_run(&b->svc->bdeps, &req, &io, &b->img, err);
}

static const Hutch__V1__Image *build_done(image_job_t *job, void *ctx, int *result, hutch_err_t *err)
{
	build_job_t *b = ctx;
	(void)job;
	if (*result < 0 || !b->img) {
		log_info("images: build of %s/%s failed: %s", b->tenant, b->name, err->message);
		return NULL;
	}
	*result = image_record_put(b->svc, b->img, err);
	return *result == 0 ? b->img : NULL;
}

/* Any step that needs the network gets the build policies (the tenant's
 * policies named by [images] build_network_policies). */
static bool spec_needs_network(const Hutch__V1__ImageSpec *spec)
{
	for (size_t i = 0; i < spec->n_steps; i++)
		if (image_step_needs_network(spec->steps[i]))
			return true;
	return false;
}

image_job_t *image_build_start(image_service_t *svc, const char *tenant,
			       const Hutch__V1__BuildStart *start, const image_job_cb_t *cb,
			       hutch_err_t *err)
{
	if (!start->name || !image_name_valid(start->name)) {
		hutch_err_set(err, EINVAL,
			      "image name `%s`: use 1-128 of letters, digits and . _ - / :, starting with a letter or digit",
			      start->name ? start->name : "");
		return NULL;
	}
	if (image_spec_check(start->spec, err) < 0)
		return NULL;
	build_job_t *b = xcalloc(1, sizeof *b);
	b->svc = svc;
	b->tenant = xstrdup(tenant);
	b->name = xstrdup(start->name);
	b->no_cache = start->no_cache;
	b->spec = image_pb_copy(&start->spec->base);
	if (!b->spec) {
		build_free(b);
		hutch_err_set(err, ENOMEM, "out of memory");
		return NULL;
	}
	const Hutch__V1__ImageBase *base = b->spec->source;
	if (base->kind_case == HUTCH__V1__IMAGE_BASE__KIND_IMAGE) {
		Hutch__V1__Image *img;
		if (image_lookup(svc, tenant, base->image, &img, err) < 0) {
			hutch_err_prefix(err, "base");
			build_free(b);
			return NULL;
		}
		snprintf(b->base_manifest, sizeof b->base_manifest, "%s", img->digest);
		protobuf_c_message_free_unpacked(&img->base, NULL);
	}
	char **names = svc->cfg.build_network_policies;
	if (names && spec_needs_network(b->spec) &&
	    net_policy_set_load(svc->d.store, tenant, names, strv_len(names), &b->policies, err) < 0) {
		hutch_err_prefix(err, "[images] build_network_policies");
		build_free(b);
		return NULL;
	}
	job_hooks_t h = hooks_for(svc, build_work, build_done, build_free);
	image_job_t *job;
	if (job_start(svc->d.loop, &h, b, cb, &job, err) < 0)
		return NULL;
	return job;
}

/* ---- import ---- */

typedef struct import_job {
	image_service_t *svc;
	char *tenant;
	char *name;
	char *ref;
	Hutch__V1__Image *img;
} import_job_t;

static void import_free(void *ctx)
{
	import_job_t *j = ctx;
	free(j->tenant);
	free(j->name);
	free(j->ref);
	if (j->img)
		protobuf_c_message_free_unpacked(&j->img->base, NULL);
	free(j);
}

/* The image record of an import (its pins: the import's). */
static Hutch__V1__Image *imported_image(const import_job_t *j, const oci_imported_t *imp)
{
	Hutch__V1__Image img = HUTCH__V1__IMAGE__INIT;
	img.name = j->name;
	img.tenant = j->tenant;
	img.digest = (char *)imp->manifest;
	img.config_digest = (char *)imp->config;
	img.config = imp->cfg;
	img.created_unix_ms = store_now_ms();
	Hutch__V1__ImageLayer *layers = xcalloc(imp->n + 1, sizeof *layers);
	Hutch__V1__ImageLayer **lp = xcalloc(imp->n + 1, sizeof *lp);
	for (size_t i = 0; i < imp->n; i++) {
		hutch__v1__image_layer__init(&layers[i]);
		layers[i].digest = imp->layers[i];
		layers[i].size = imp->sizes[i];
		layers[i].cache_key = imp->cache_keys[i];
		layers[i].created_by = (char *)"imported";
		lp[i] = &layers[i];
		img.size_bytes += imp->sizes[i];
	}
	img.layers = lp;
	img.n_layers = imp->n;
	Hutch__V1__Image *copy = image_pb_copy(&img.base);
	free(layers);
	free(lp);
	return copy;
}

static int import_work(image_job_t *job, void *ctx, hutch_err_t *err)
{
	import_job_t *j = ctx;
	image_store_t *store = j->svc->store;
	_cleanup_free_ char *tar = image_store_tmp_path(store, "import.tar");
	int fd = open(tar, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tar);
	int r = 0;
	for (;;) {
		job_chunk_t c;
		int k = job_take(job, &c);
		if (k < 0) {
			r = hutch_err_set(err, ECANCELED, "cancelled");
			break;
		}
		if (k == 0)
			break;
		for (size_t off = 0; off < c.len && r == 0;) {
			ssize_t w = write(fd, (char *)c.data + off, c.len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0)
				r = hutch_err_sys(err, errno, "write %s", tar);
			else
				off += (size_t)w;
		}
		free(c.data);
		if (r < 0)
			break;
	}
	close(fd);
	if (r == 0) {
		oci_imported_t imp;
		char **pinned = NULL;
		r = oci_archive_import(store, j->tenant, tar, j->ref, &imp, &pinned, err);
		if (r == 0) {
			j->img = imported_image(j, &imp);
			char **keep = image_pins(j->img, j->img->config_digest);
			image_pins_keep_only(store, pinned, keep);
			strv_free(keep);
			strv_free(pinned);
			oci_imported_free(&imp);
		} else {
			hutch_err_prefix(err, "import");
		}
	}
	unlink(tar);
	return r;
}

static const Hutch__V1__Image *import_done(image_job_t *job, void *ctx, int *result, hutch_err_t *err)
{
	import_job_t *j = ctx;
	(void)job;
	if (*result < 0 || !j->img)
		return NULL;
	*result = image_record_put(j->svc, j->img, err);
	return *result == 0 ? j->img : NULL;
}

image_job_t *image_import_start(image_service_t *svc, const char *tenant,
				const Hutch__V1__ImportImageStart *start, const image_job_cb_t *cb,
				hutch_err_t *err)
{
	if (!start->name || !image_name_valid(start->name)) {
		hutch_err_set(err, EINVAL,
			      "image name `%s`: use 1-128 of letters, digits and . _ - / :, starting with a letter or digit",
			      start->name ? start->name : "");
		return NULL;
	}
	if (start->ref && strlen(start->ref) > 512) {
		hutch_err_set(err, EINVAL, "ref: too long");
		return NULL;
	}
	import_job_t *j = xcalloc(1, sizeof *j);
	j->svc = svc;
	j->tenant = xstrdup(tenant);
	j->name = xstrdup(start->name);
	j->ref = start->ref && *start->ref ? xstrdup(start->ref) : NULL;
	job_hooks_t h = hooks_for(svc, import_work, import_done, import_free);
	image_job_t *job;
	if (job_start(svc->d.loop, &h, j, cb, &job, err) < 0)
		return NULL;
	return job;
}

/* ---- export and verify: jobs on a recorded image ---- */

typedef struct image_hold_job {
	image_service_t *svc;
	Hutch__V1__Image *img;  /* its digests pinned while the job runs */
} image_hold_job_t;

static void hold_job_free(void *ctx)
{
	image_hold_job_t *j = ctx;
	image_unpin_all(j->svc->store, j->img);
	protobuf_c_message_free_unpacked(&j->img->base, NULL);
	free(j);
}

typedef struct export_sink {
	image_job_t *job;
} export_sink_t;

static bool export_write(void *data, const void *buf, size_t len)
{
	export_sink_t *s = data;
	return job_emit_data(s->job, buf, len);
}

static int export_work(image_job_t *job, void *ctx, hutch_err_t *err)
{
	image_hold_job_t *j = ctx;
	export_sink_t s = {job};
	return oci_layout_export(j->svc->store, j->img, export_write, &s, err);
}

static int verify_work(image_job_t *job, void *ctx, hutch_err_t *err)
{
	image_hold_job_t *j = ctx;
	const Hutch__V1__Image *img = j->img;
	for (size_t i = 0; i < img->n_layers; i++) {
		if (atomic_load(job_cancel_flag(job)))
			return hutch_err_set(err, ECANCELED, "cancelled");
		int r = image_store_layer_check(j->svc->store, img->layers[i]->digest, true, err);
		if (r < 0)
			return hutch_err_prefix(err, "image %s", img->name);
	}
	const char *blobs[] = {img->config_digest, img->digest};
	for (size_t i = 0; i < 2; i++) {
		if (!blobs[i] || !*blobs[i])
			continue;
		char *data;
		size_t len;
		int r = image_store_blob_read(j->svc->store, blobs[i], 64 << 20, &data, &len, err);
		if (r < 0)
			return hutch_err_prefix(err, "image %s", img->name);
		free(data);
	}
	return 0;
}

static const Hutch__V1__Image *hold_job_done(image_job_t *job, void *ctx, int *result,
					     hutch_err_t *err)
{
	image_hold_job_t *j = ctx;
	(void)job;
	(void)err;
	return *result == 0 ? j->img : NULL;
}

static image_job_t *hold_job_start(image_service_t *svc, const char *tenant, const char *name,
				   job_work_fn work, const image_job_cb_t *cb, hutch_err_t *err)
{
	Hutch__V1__Image *img;
	if (image_lookup(svc, tenant, name, &img, err) < 0)
		return NULL;
	image_hold_job_t *j = xcalloc(1, sizeof *j);
	j->svc = svc;
	j->img = img;
	image_pin_all(svc->store, img);
	job_hooks_t h = hooks_for(svc, work, hold_job_done, hold_job_free);
	image_job_t *job;
	if (job_start(svc->d.loop, &h, j, cb, &job, err) < 0)
		return NULL;
	return job;
}

image_job_t *image_export_start(image_service_t *svc, const char *tenant, const char *name,
				const image_job_cb_t *cb, hutch_err_t *err)
{
	return hold_job_start(svc, tenant, name, export_work, cb, err);
}

image_job_t *image_verify_start(image_service_t *svc, const char *tenant, const char *name,
				const image_job_cb_t *cb, hutch_err_t *err)
{
	return hold_job_start(svc, tenant, name, verify_work, cb, err);
}

/* ---- garbage collection ---- */

typedef struct gc_job {
	image_service_t *svc;
	image_gc_done_cb done;
	void *data;
	image_gc_result_t res;
} gc_job_t;

static int gc_work(image_job_t *job, void *ctx, hutch_err_t *err)
{
	gc_job_t *g = ctx;
	(void)job;
	/* Everything referenced is pinned (records, sandboxes, jobs). */
	int r = image_store_gc(g->svc->store, NULL, 0, &g->res, err);
	if (r == 0 && (g->res.layers_removed || g->res.blobs_removed))
		log_info("images: garbage collection removed %d layers and %d blobs (%lld bytes)",
			 g->res.layers_removed, g->res.blobs_removed, (long long)g->res.freed_bytes);
	return r;
}

static const Hutch__V1__Image *gc_done(image_job_t *job, void *ctx, int *result, hutch_err_t *err)
{
	gc_job_t *g = ctx;
	(void)job;
	g->done(g->data, g->res.freed_bytes, g->res.layers_removed, g->res.blobs_removed,
		*result < 0 ? err : NULL);
	return NULL;
}

int image_service_gc(image_service_t *svc, image_gc_done_cb done, void *data, hutch_err_t *err)
{
	gc_job_t *g = xcalloc(1, sizeof *g);
	g->svc = svc;
	g->done = done;
	g->data = data;
	job_hooks_t h = hooks_for(svc, gc_work, gc_done, free);
	image_job_cb_t cb = {0};
	image_job_t *job;
	return job_start(svc->d.loop, &h, g, &cb, &job, err);
}

int image_service_remove(image_service_t *svc, const char *tenant, const char *name,
			 image_gc_done_cb done, void *data, hutch_err_t *err)
{
	Hutch__V1__Image *img;
	int r = image_service_get(svc, tenant, name, &img, err);
	if (r < 0)
		return r;
	r = store_delete(svc->d.store, IMAGE_KIND, img->id, err);
	if (r == 0) {
		image_unpin_all(svc->store, img);
		log_info("images: %s/%s removed", img->tenant, img->name);
	}
	protobuf_c_message_free_unpacked(&img->base, NULL);
	if (r < 0)
		return r;
	return image_service_gc(svc, done, data, err);
}
