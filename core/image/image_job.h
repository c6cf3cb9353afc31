/*
 * image_job.h: a long job (build, import, export, verify, collection) on a
 * thread of its own, talking to the loop through two bounded queues.
 *
 * Builds take minutes and block (runsc, debootstrap, curl), so they do not
 * run on libuv's small pool, where they would hold up sandbox creates. A job
 * thread sends events or bytes to the loop (job_emit_*), which hands them to
 * the job's client callbacks in order; when the client cannot take more
 * (a slow gRPC reader), the loop stops and the thread blocks in its next
 * emit once about a megabyte is queued. The other way, data from the
 * client (uploaded files, an import's archive) is queued to the thread
 * (image_job_put); past a few megabytes the loop is told to stop receiving
 * until the thread caught up (on_recv_ready). So memory stays bounded in
 * both directions however slow either side is.
 *
 * Ending: when the work function returns, the loop drains what is queued,
 * calls the job's done hook (which records the result, on the loop) and
 * then on_done, the last callback. A cancelled job (client gone) stops at
 * its next cancel check and calls nothing of its client's; done still runs
 * so that what the work made is recorded or let go.
 *
 * Service-internal: image_service.c creates jobs; image_service.h declares
 * what the API layer calls on them.
 */
#ifndef HUTCH_IMAGE_JOB_H
#define HUTCH_IMAGE_JOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <hutch/error.h>
#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "image_digest.h"
#include "image_service.h"

/* Thread: does the job; 0 or -errno with err. */
typedef int (*job_work_fn)(image_job_t *job, void *ctx, hutch_err_t *err);
/* Loop: the work returned; records what it made and returns the image
 * for on_done (owned by ctx), or NULL. May turn success into an error by
 * filling err and returning a negative value through *result. */
typedef const Hutch__V1__Image *(*job_done_fn)(image_job_t *job, void *ctx, int *result,
					       hutch_err_t *err);

typedef struct job_hooks {
	job_work_fn work;
	job_done_fn done;
	void (*ctx_free)(void *ctx);     /* loop, after on_done */
	void (*hold)(void *data, int delta); /* +1 at start, -1 when gone (shutdown waits) */
	void *hold_data;
} job_hooks_t;

/* Starts the job's thread; on failure ctx is freed and nothing runs. */
int job_start(uv_loop_t *loop, const job_hooks_t *hooks, void *ctx, const image_job_cb_t *cb,
	      image_job_t **out, hutch_err_t *err);

/* ---- the thread's side ---- */

/* An event for the client (a BuildImageEvent); blocks while the queue is
 * full. false: cancelled. */
bool job_emit_event(image_job_t *job, const ProtobufCMessage *ev);
/* Bytes for the client (export); as above. */
bool job_emit_data(image_job_t *job, const void *buf, size_t len);

/* The next piece the client sent: 1 with *out filled (the caller frees
 * out->data), 0 when the client said it is done, -ECANCELED. Blocks. */
typedef struct job_chunk {
	char digest[DIGEST_STR_MAX]; /* builds: whose file; "" otherwise */
	void *data;
	size_t len;
	bool last;
} job_chunk_t;
int job_take(image_job_t *job, job_chunk_t *out);

const atomic_bool *job_cancel_flag(image_job_t *job);

#endif
