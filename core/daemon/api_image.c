/* hutch.v1.Images: Build (bidi stream), List, Inspect, Remove,
 * GarbageCollect, Export (server stream), Import (client stream). The
 * work runs as image service jobs; this file moves messages between a
 * call and its job, with flow control both ways. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "image_service.h"
#include "strbuf.h"

/* One call and the job behind it. */
typedef struct image_call {
	grpc_call_t *call;    /* a reference is held while this lives */
	daemon_t *d;
	image_job_t *job;     /* NULL before the start message and after on_done */
	bool step_failed;     /* builds: a step event said FAILED */
	bool paused;
} image_call_t;

static image_call_t *image_call_new(grpc_call_t *call)
{
	image_call_t *c = xcalloc(1, sizeof *c);
	c->call = call;
	c->d = grpc_call_service_data(call);
	grpc_call_ref(call);
	grpc_call_set_data(call, c);
	return c;
}

static void image_call_free(image_call_t *c)
{
	grpc_call_set_data(c->call, NULL);
	grpc_call_unref(c->call);
	free(c);
}

/* ---- job callbacks ---- */

static bool on_event(void *data, const Hutch__V1__BuildImageEvent *ev)
{
	image_call_t *c = data;
	if (ev->event_case == HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_STEP &&
	    ev->step->state == HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_FAILED)
		c->step_failed = true;
	return grpc_call_send(c->call, &ev->base) != 1;
}

static bool on_data(void *data, const void *buf, size_t len)
{
	image_call_t *c = data;
	Hutch__V1__DataChunk m = HUTCH__V1__DATA_CHUNK__INIT;
	m.data.data = (uint8_t *)buf;
	m.data.len = len;
	return grpc_call_send(c->call, &m.base) != 1;
}

static void on_recv_ready(void *data)
{
	image_call_t *c = data;
	if (c->paused) {
		c->paused = false;
		grpc_call_pause_recv(c->call, false);
	}
}

static void fail_call(image_call_t *c, const hutch_err_t *err)
{
	/* A failed build step: the event said what; the status says ABORTED. */
	if (c->step_failed)
		grpc_call_finish(c->call, GRPC_STATUS_ABORTED, err->message);
	else
		api_fail(c->call, err);
}

static void build_done(void *data, const Hutch__V1__Image *img, const hutch_err_t *err)
{
	image_call_t *c = data;
	c->job = NULL;
	if (img) {
		Hutch__V1__BuildImageEvent ev = HUTCH__V1__BUILD_IMAGE_EVENT__INIT;
		ev.event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_DONE;
		ev.done = (Hutch__V1__Image *)img;
		grpc_call_send(c->call, &ev.base);
		grpc_call_finish(c->call, GRPC_STATUS_OK, NULL);
	} else {
		fail_call(c, err);
	}
	image_call_free(c);
}

/* Import, Inspect with verify: the image is the reply. */
static void image_done(void *data, const Hutch__V1__Image *img, const hutch_err_t *err)
{
	image_call_t *c = data;
	c->job = NULL;
	if (img) {
		grpc_call_send(c->call, &img->base);
		grpc_call_finish(c->call, GRPC_STATUS_OK, NULL);
	} else {
		fail_call(c, err);
	}
	image_call_free(c);
}

static void export_done(void *data, const Hutch__V1__Image *img, const hutch_err_t *err)
{
	image_call_t *c = data;
	c->job = NULL;
	if (img)
		grpc_call_finish(c->call, GRPC_STATUS_OK, NULL);
	else
		fail_call(c, err);
	image_call_free(c);
}

static image_job_cb_t job_cb(image_call_t *c,
			     void (*done)(void *, const Hutch__V1__Image *, const hutch_err_t *))
{
	return (image_job_cb_t){
		.on_event = on_event,
		.on_data = on_data,
		.on_recv_ready = on_recv_ready,
		.on_done = done,
		.data = c,
	};
}

/* ---- what every streamed call shares ---- */

static void put_chunk(image_call_t *c, const char *digest, const ProtobufCBinaryData *data, bool last)
{
	if (!image_job_put(c->job, digest, data->data, data->len, last) && !c->paused) {
		c->paused = true;
		grpc_call_pause_recv(c->call, true);
	}
}

static void job_on_half_close(grpc_call_t *call)
{
	image_call_t *c = grpc_call_get_data(call);
	if (c && c->job) {
		image_job_put_done(c->job);
		return;
	}
	if (!c)
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "the first message must be `start`");
}

static void job_on_writable(grpc_call_t *call)
{
	image_call_t *c = grpc_call_get_data(call);
	if (c && c->job)
		image_job_writable(c->job);
}

static void job_on_cancel(grpc_call_t *call)
{
	image_call_t *c = grpc_call_get_data(call);
	if (!c)
		return;
	if (c->job)
		image_job_cancel(c->job);
	image_call_free(c);
}

/* ---- Build ---- */

static void build_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__BuildImageRequest *req = (const void *)msg;
	image_call_t *c = grpc_call_get_data(call);
	if (!c) {
		if (req->msg_case != HUTCH__V1__BUILD_IMAGE_REQUEST__MSG_START || !req->start->spec) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
					 "the first message must be `start` with a spec");
			return;
		}
		c = image_call_new(call);
		hutch_err_t err = {0};
		image_job_cb_t cb = job_cb(c, build_done);
		c->job = image_build_start(d->images, daemon_call_tenant(call), req->start, &cb, &err);
		if (!c->job) {
			api_fail(call, &err);
			image_call_free(c);
		}
		return;
	}
	if (!c->job)
		return; /* finished: the rest is ignored */
	switch (req->msg_case) {
	case HUTCH__V1__BUILD_IMAGE_REQUEST__MSG_FILE:
		put_chunk(c, req->file->digest, &req->file->data, req->file->last);
		break;
	case HUTCH__V1__BUILD_IMAGE_REQUEST__MSG_FILES_DONE:
		image_job_put_done(c->job);
		break;
	default:
		image_job_cancel(c->job);
		c->job = NULL;
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "`start` may only come first");
		image_call_free(c);
		break;
	}
}

/* ---- Import ---- */

static void import_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__ImportImageRequest *req = (const void *)msg;
	image_call_t *c = grpc_call_get_data(call);
	if (!c) {
		if (req->msg_case != HUTCH__V1__IMPORT_IMAGE_REQUEST__MSG_START) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "the first message must be `start`");
			return;
		}
		c = image_call_new(call);
		hutch_err_t err = {0};
		image_job_cb_t cb = job_cb(c, image_done);
		c->job = image_import_start(d->images, daemon_call_tenant(call), req->start, &cb, &err);
		if (!c->job) {
			api_fail(call, &err);
			image_call_free(c);
		}
		return;
	}
	if (!c->job)
		return;
	if (req->msg_case != HUTCH__V1__IMPORT_IMAGE_REQUEST__MSG_DATA) {
		image_job_cancel(c->job);
		c->job = NULL;
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "`start` may only come first");
		image_call_free(c);
		return;
	}
	put_chunk(c, NULL, &req->data, false);
}

/* ---- Export ---- */

static void export_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__ExportImageRequest *req = (const void *)msg;
	image_call_t *c = image_call_new(call);
	hutch_err_t err = {0};
	image_job_cb_t cb = job_cb(c, export_done);
	c->job = image_export_start(d->images, daemon_call_tenant(call), req->name, &cb, &err);
	if (!c->job) {
		api_fail(call, &err);
		image_call_free(c);
	}
}

/* ---- List, Inspect ---- */

static void list_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	(void)msg;
	Hutch__V1__Image **items = NULL;
	size_t n = 0;
	hutch_err_t err = {0};
	if (image_service_list(d->images, daemon_call_tenant(call), &items, &n, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	Hutch__V1__ListImagesResponse resp = HUTCH__V1__LIST_IMAGES_RESPONSE__INIT;
	resp.images = items;
	resp.n_images = n;
	grpc_call_send(call, &resp.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	for (size_t i = 0; i < n; i++)
		protobuf_c_message_free_unpacked(&items[i]->base, NULL);
	free(items);
}

static void inspect_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__InspectImageRequest *req = (const void *)msg;
	hutch_err_t err = {0};
	if (req->verify) {
		image_call_t *c = image_call_new(call);
		image_job_cb_t cb = job_cb(c, image_done);
		c->job = image_verify_start(d->images, daemon_call_tenant(call), req->name, &cb, &err);
		if (!c->job) {
			api_fail(call, &err);
			image_call_free(c);
		}
		return;
	}
	Hutch__V1__Image *img;
	if (image_service_inspect(d->images, daemon_call_tenant(call), req->name, &img, &err) < 0) {
		api_fail(call, &err);
		return;
	}
	grpc_call_send(call, &img->base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	protobuf_c_message_free_unpacked(&img->base, NULL);
}

/* ---- Remove, GarbageCollect ---- */

static void removed(void *data, int64_t freed, int layers, int blobs, const hutch_err_t *err)
{
	grpc_call_t *call = data;
	(void)layers;
	(void)blobs;
	if (err) {
		api_fail(call, err);
	} else {
		Hutch__V1__RemoveImageResponse resp = HUTCH__V1__REMOVE_IMAGE_RESPONSE__INIT;
		resp.freed_bytes = freed;
		grpc_call_send(call, &resp.base);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	}
	grpc_call_unref(call);
}

static void remove_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	const Hutch__V1__RemoveImageRequest *req = (const void *)msg;
	hutch_err_t err = {0};
	grpc_call_ref(call);
	if (image_service_remove(d->images, daemon_call_tenant(call), req->name, removed, call, &err) < 0) {
		grpc_call_unref(call);
		api_fail(call, &err);
	}
}

static void collected(void *data, int64_t freed, int layers, int blobs, const hutch_err_t *err)
{
	grpc_call_t *call = data;
	if (err) {
		api_fail(call, err);
	} else {
		Hutch__V1__GarbageCollectResponse resp = HUTCH__V1__GARBAGE_COLLECT_RESPONSE__INIT;
		resp.layers_removed = layers;
		resp.blobs_removed = blobs;
		resp.freed_bytes = freed;
		grpc_call_send(call, &resp.base);
		grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	}
	grpc_call_unref(call);
}

static void gc_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	daemon_t *d = grpc_call_service_data(call);
	(void)msg;
	hutch_err_t err = {0};
	grpc_call_ref(call);
	if (image_service_gc(d->images, collected, call, &err) < 0) {
		grpc_call_unref(call);
		api_fail(call, &err);
	}
}

static const grpc_method_t image_methods[] = {
	{.path = "/hutch.v1.Images/Build", .request = &hutch__v1__build_image_request__descriptor,
	 .client_streaming = true, .server_streaming = true, .on_message = build_on_message,
	 .on_half_close = job_on_half_close, .on_writable = job_on_writable, .on_cancel = job_on_cancel},
	{.path = "/hutch.v1.Images/List", .request = &hutch__v1__list_images_request__descriptor,
	 .on_message = list_on_message},
	{.path = "/hutch.v1.Images/Inspect", .request = &hutch__v1__inspect_image_request__descriptor,
	 .on_message = inspect_on_message, .on_cancel = job_on_cancel},
	{.path = "/hutch.v1.Images/Remove", .request = &hutch__v1__remove_image_request__descriptor,
	 .on_message = remove_on_message},
	{.path = "/hutch.v1.Images/GarbageCollect",
	 .request = &hutch__v1__garbage_collect_request__descriptor, .on_message = gc_on_message},
	{.path = "/hutch.v1.Images/Export", .request = &hutch__v1__export_image_request__descriptor,
	 .server_streaming = true, .on_message = export_on_message, .on_writable = job_on_writable,
	 .on_cancel = job_on_cancel},
	{.path = "/hutch.v1.Images/Import", .request = &hutch__v1__import_image_request__descriptor,
	 .client_streaming = true, .on_message = import_on_message, .on_half_close = job_on_half_close,
	 .on_cancel = job_on_cancel},
};

int api_image_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, image_methods, ARRAY_SIZE(image_methods), d, err);
}
