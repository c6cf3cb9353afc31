#include "image_job.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

/* Bytes queued for the client before the job's thread waits. */
#define OUT_MAX (1u << 20)
/* Bytes queued for the thread before the client is paused, and the level
 * at which it may send again. */
#define IN_MAX (4u << 20)
#define IN_LOW (1u << 20)

typedef struct out_item {
	struct out_item *next;
	bool is_event;
	size_t len;
	uint8_t data[];
} out_item_t;

typedef struct in_item {
	struct in_item *next;
	job_chunk_t c;
} in_item_t;

struct image_job {
	uv_loop_t *loop;
	job_hooks_t hooks;
	void *ctx;
	image_job_cb_t cb;
	pthread_t thread;
	uv_async_t async;
	atomic_bool cancel;

	pthread_mutex_t mu;   /* everything down to `result` */
	pthread_cond_t cond;
	out_item_t *out_head, *out_tail;
	size_t out_bytes;
	in_item_t *in_head, *in_tail;
	size_t in_bytes;
	bool in_done;
	bool in_stalled;      /* put said false: on_recv_ready is owed */
	bool work_done;
	int result;
	hutch_err_t err;

	/* loop only */
	bool client_blocked;  /* on_event/on_data said false */
	bool client_gone;     /* image_job_cancel */
	bool finished;
	bool pumping;
};

static void job_pump(image_job_t *job);

static void *job_thread(void *arg)
{
	image_job_t *job = arg;
	hutch_err_t err = {0};
	int r = job->hooks.work(job, job->ctx, &err);
	pthread_mutex_lock(&job->mu);
	job->result = r;
	job->err = err;
	job->work_done = true;
	pthread_mutex_unlock(&job->mu);
	uv_async_send(&job->async);
	return NULL;
}

static void on_async(uv_async_t *h)
{
	job_pump(h->data);
}

static void free_queues(image_job_t *job)
{
	while (job->out_head) {
		out_item_t *o = job->out_head;
		job->out_head = o->next;
		free(o);
	}
	while (job->in_head) {
		in_item_t *i = job->in_head;
		job->in_head = i->next;
		free(i->c.data);
		free(i);
	}
}

static void on_closed(uv_handle_t *h)
{
	image_job_t *job = h->data;
	free_queues(job);
	if (job->hooks.ctx_free)
		job->hooks.ctx_free(job->ctx);
	pthread_mutex_destroy(&job->mu);
	pthread_cond_destroy(&job->cond);
	if (job->hooks.hold)
		job->hooks.hold(job->hooks.hold_data, -1);
	free(job);
}

int job_start(uv_loop_t *loop, const job_hooks_t *hooks, void *ctx, const image_job_cb_t *cb,
	      image_job_t **out, hutch_err_t *err)
{
	image_job_t *job = xcalloc(1, sizeof *job);
	job->loop = loop;
	job->hooks = *hooks;
	job->ctx = ctx;
	job->cb = *cb;
	pthread_mutex_init(&job->mu, NULL);
	pthread_cond_init(&job->cond, NULL);
	int r = uv_async_init(loop, &job->async, on_async);
	if (r < 0) {
		if (hooks->ctx_free)
			hooks->ctx_free(ctx);
		pthread_mutex_destroy(&job->mu);
		pthread_cond_destroy(&job->cond);
		free(job);
		return hutch_err_set(err, -r, "uv_async_init: %s", uv_strerror(r));
	}
	job->async.data = job;
	if (hooks->hold)
		hooks->hold(hooks->hold_data, +1);
	/* Signals stay with the loop thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = pthread_create(&job->thread, NULL, job_thread, job);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		/* No thread: the close callback frees ctx and the job. */
		job->finished = true;
		uv_close((uv_handle_t *)&job->async, on_closed);
		return hutch_err_sys(err, r, "start a job thread");
	}
	*out = job;
	return 0;
}

/* Loop: the thread's result is in; hand it to done and on_done. */
static void job_finish(image_job_t *job)
{
	job->finished = true;
	pthread_join(job->thread, NULL);
	int result = job->result;
	hutch_err_t err = job->err;
	const Hutch__V1__Image *img = job->hooks.done ? job->hooks.done(job, job->ctx, &result, &err) : NULL;
	if (!job->client_gone && job->cb.on_done)
		job->cb.on_done(job->cb.data, result == 0 ? img : NULL, result < 0 ? &err : NULL);
	uv_close((uv_handle_t *)&job->async, on_closed);
}

static bool deliver(image_job_t *job, out_item_t *o)
{
	if (!o->is_event)
		return job->cb.on_data ? job->cb.on_data(job->cb.data, o->data, o->len) : true;
	Hutch__V1__BuildImageEvent *ev = hutch__v1__build_image_event__unpack(NULL, o->len, o->data);
	if (!ev) {
		log_error("images: an event of a job could not be decoded");
		return true;
	}
	bool ok = job->cb.on_event ? job->cb.on_event(job->cb.data, ev) : true;
	protobuf_c_message_free_unpacked(&ev->base, NULL);
	return ok;
}

static void job_pump(image_job_t *job)
{
	if (job->finished || job->pumping)
		return;
	job->pumping = true;
	pthread_mutex_lock(&job->mu);
	bool ready = job->in_stalled && job->in_bytes < IN_LOW;
	if (ready)
		job->in_stalled = false;
	pthread_mutex_unlock(&job->mu);
	if (ready && !job->client_gone && job->cb.on_recv_ready)
		job->cb.on_recv_ready(job->cb.data);
	while (!job->client_blocked || job->client_gone) {
		pthread_mutex_lock(&job->mu);
		out_item_t *o = job->out_head;
		if (o) {
			job->out_head = o->next;
			if (!job->out_head)
				job->out_tail = NULL;
			job->out_bytes -= o->len;
			pthread_cond_broadcast(&job->cond);
		}
		pthread_mutex_unlock(&job->mu);
		if (!o)
			break;
		if (!job->client_gone && !deliver(job, o))
			job->client_blocked = true;
		free(o);
	}
	pthread_mutex_lock(&job->mu);
	bool done = job->work_done && !job->out_head;
	pthread_mutex_unlock(&job->mu);
	job->pumping = false;
	if (done)
		job_finish(job);
}

/* ---- loop side (image_service.h) ---- */

bool image_job_put(image_job_t *job, const char *digest, const void *data, size_t len, bool last)
{
	in_item_t *i = xcalloc(1, sizeof *i);
	snprintf(i->c.digest, sizeof i->c.digest, "%s", digest ? digest : "");
	i->c.data = xmalloc(len ? len : 1);
	if (len)
		memcpy(i->c.data, data, len);
	i->c.len = len;
	i->c.last = last;
	pthread_mutex_lock(&job->mu);
	if (job->in_tail)
		job->in_tail->next = i;
	else
		job->in_head = i;
	job->in_tail = i;
	job->in_bytes += len;
	bool ok = job->in_bytes < IN_MAX;
	if (!ok)
		job->in_stalled = true;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->mu);
	return ok;
}

void image_job_put_done(image_job_t *job)
{
	pthread_mutex_lock(&job->mu);
	job->in_done = true;
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->mu);
}

void image_job_writable(image_job_t *job)
{
	job->client_blocked = false;
	job_pump(job);
}

void image_job_cancel(image_job_t *job)
{
	if (job->finished)
		return;
	job->client_gone = true;
	atomic_store(&job->cancel, true);
	pthread_mutex_lock(&job->mu);
	pthread_cond_broadcast(&job->cond);
	pthread_mutex_unlock(&job->mu);
	job_pump(job);
}

/* ---- thread side ---- */

static bool emit(image_job_t *job, bool is_event, const void *data, size_t len)
{
	out_item_t *o = xmalloc(sizeof *o + (len ? len : 1));
	o->next = NULL;
	o->is_event = is_event;
	o->len = len;
	if (len)
		memcpy(o->data, data, len);
	pthread_mutex_lock(&job->mu);
	while (job->out_bytes >= OUT_MAX && !atomic_load(&job->cancel))
		pthread_cond_wait(&job->cond, &job->mu);
	if (atomic_load(&job->cancel)) {
		pthread_mutex_unlock(&job->mu);
		free(o);
		return false;
	}
	if (job->out_tail)
		job->out_tail->next = o;
	else
		job->out_head = o;
	job->out_tail = o;
	job->out_bytes += len;
	pthread_mutex_unlock(&job->mu);
	uv_async_send(&job->async);
	return true;
}

bool job_emit_event(image_job_t *job, const ProtobufCMessage *ev)
{
	size_t n = protobuf_c_message_get_packed_size(ev);
	uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(ev, buf);
	bool ok = emit(job, true, buf, n);
	free(buf);
	return ok;
}

bool job_emit_data(image_job_t *job, const void *buf, size_t len)
{
	return emit(job, false, buf, len);
}

int job_take(image_job_t *job, job_chunk_t *out)
{
	pthread_mutex_lock(&job->mu);
	while (!job->in_head && !job->in_done && !atomic_load(&job->cancel))
		pthread_cond_wait(&job->cond, &job->mu);
	if (atomic_load(&job->cancel)) {
		pthread_mutex_unlock(&job->mu);
		return -ECANCELED;
	}
	in_item_t *i = job->in_head;
	if (!i) {
		pthread_mutex_unlock(&job->mu);
		return 0;
	}
	job->in_head = i->next;
	if (!job->in_head)
		job->in_tail = NULL;
	job->in_bytes -= i->c.len;
	bool wake = job->in_stalled && job->in_bytes < IN_LOW;
	pthread_mutex_unlock(&job->mu);
	if (wake)
		uv_async_send(&job->async);
	*out = i->c;
	free(i);
	return 1;
}

const atomic_bool *job_cancel_flag(image_job_t *job)
{
	return &job->cancel;
}
