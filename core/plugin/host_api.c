#include "host_api.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "strbuf.h"

#ifndef HUTCH_VERSION
#define HUTCH_VERSION "0.0.0"
#endif

typedef enum req_type {
	REQ_TIMER_START,
	REQ_TIMER_STOP,
	REQ_CHILD_WATCH,
	REQ_WORK,
} req_type_t;

typedef struct host_req {
	req_type_t type;
	void *obj;
	struct host_req *next;
} host_req_t;

struct host_core {
	uv_loop_t *loop;
	pthread_t loop_thread;
	uv_async_t async;
	pthread_mutex_t lock;
	host_req_t *head, *tail;
	bool closing;
	int audit_fd;
	pthread_mutex_t audit_lock;
	uv_signal_t sigchld;
	hutch_child_t *children; /* loop thread only */
};

struct host_ctx {
	hutch_host_t table; /* first: host_ctx_from_table casts */
	host_core_t *core;
	char *source;
	char *state_dir;
	char *run_dir;
};

struct hutch_timer {
	uv_timer_t handle;
	host_core_t *core;
	hutch_timer_cb cb;
	void *data;
	uint64_t timeout_ms, repeat_ms;
	atomic_bool stopped;
	bool initialized;   /* loop thread only */
	bool free_on_begin; /* stopped before its start request ran */
};

struct hutch_child {
	uv_timer_t timer;
	host_core_t *core;
	pid_t pid;
	int pidfd;          /* for signals, where available; else -1 */
	hutch_child_cb cb;
	void *data;
	int64_t timeout_ms;
	hutch_child_status_t status;
	bool reaped;
	bool timer_open;
	struct hutch_child *next;
};

typedef struct host_work {
	uv_work_t req;
	hutch_work_cb work;
	hutch_after_work_cb after;
	void *data;
} host_work_t;

int mkdir_p(const char *dir, mode_t mode, hutch_err_t *err)
{
	_cleanup_free_ char *p = xstrdup(dir);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return hutch_err_sys(err, errno, "mkdir %s", p);
		*s = '/';
	}
	if (mkdir(p, mode) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", p);
	return 0;
}

static void on_sigchld(uv_signal_t *h, int signum);

/* ---- the request queue ---- */

static void run_request(host_core_t *core, host_req_t *req);

static void enqueue(host_core_t *core, req_type_t type, void *obj)
{
	host_req_t *req = xcalloc(1, sizeof *req);
	req->type = type;
	req->obj = obj;
	pthread_mutex_lock(&core->lock);
	if (core->tail)
		core->tail->next = req;
	else
		core->head = req;
	core->tail = req;
	pthread_mutex_unlock(&core->lock);
	uv_async_send(&core->async);
}

static void on_async(uv_async_t *a)
{
	host_core_t *core = a->data;
	pthread_mutex_lock(&core->lock);
	host_req_t *req = core->head;
	core->head = core->tail = NULL;
	pthread_mutex_unlock(&core->lock);
	while (req) {
		host_req_t *next = req->next;
		run_request(core, req);
		free(req);
		req = next;
	}
}

bool host_core_on_loop_thread(const host_core_t *core)
{
	return pthread_equal(pthread_self(), core->loop_thread);
}

uv_loop_t *host_core_loop(const host_core_t *core)
{
	return core->loop;
}

int host_core_new(uv_loop_t *loop, const char *audit_path, host_core_t **out,
		  hutch_err_t *err)
{
	host_core_t *core = xcalloc(1, sizeof *core);
	core->loop = loop;
	core->loop_thread = pthread_self();
	core->audit_fd = -1;
	pthread_mutex_init(&core->lock, NULL);
	pthread_mutex_init(&core->audit_lock, NULL);
	if (audit_path) {
		core->audit_fd = open(audit_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
		if (core->audit_fd < 0) {
			int r = hutch_err_sys(err, errno, "open audit log %s", audit_path);
			free(core);
			return r;
		}
	}
	int r = uv_async_init(loop, &core->async, on_async);
	if (r == 0) {
		r = uv_signal_init(loop, &core->sigchld);
		if (r == 0) {
			core->sigchld.data = core;
			uv_signal_start(&core->sigchld, on_sigchld, SIGCHLD);
			uv_unref((uv_handle_t *)&core->sigchld);
		}
	}
	if (r < 0) {
		if (core->audit_fd >= 0)
			close(core->audit_fd);
		free(core);
		return hutch_err_set(err, -r, "uv_async_init: %s", uv_strerror(r));
	}
	core->async.data = core;
	/* The queue alone must not keep the loop alive: what a request starts
	 * (a timer, a child watch) does. */
	uv_unref((uv_handle_t *)&core->async);
	*out = core;
	return 0;
}

static void children_drop(host_core_t *core);

void host_core_close(host_core_t *core)
{
	core->closing = true;
	on_async(&core->async); /* run what is queued */
	children_drop(core);
	uv_close((uv_handle_t *)&core->async, NULL);
	uv_close((uv_handle_t *)&core->sigchld, NULL);
}

void host_core_free(host_core_t *core)
{
	if (!core)
		return;
	if (core->audit_fd >= 0)
		close(core->audit_fd);
	pthread_mutex_destroy(&core->lock);
	pthread_mutex_destroy(&core->audit_lock);
	free(core);
}

/* ---- log ---- */

static void host_log(const hutch_host_t *host, hutch_log_level_t level,
		     const char *fmt, ...)
{
	host_ctx_t *ctx = host_ctx_from_table(host);
	va_list ap;
	va_start(ap, fmt);
	log_vwrite(level, ctx->source, fmt, ap);
	va_end(ap);
}

/* ---- processes ---- */

static int host_run(const hutch_host_t *host, const hutch_spawn_opts_t *opts,
		    hutch_run_result_t *result, hutch_err_t *err)
{
	(void)host;
	hutch_spawn_opts_t o = {0};
	memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
	if (opts->size < offsetof(hutch_spawn_opts_t, netns_fd) + sizeof(int))
		o.netns_fd = -1;
	hutch_run_result_t res = {0};
	memcpy(&res, result, result->size < sizeof res ? result->size : sizeof res);
	int r = proc_run(&o, &res, err);
	memcpy(result, &res, result->size < sizeof res ? result->size : sizeof res);
	return r;
}

/* Children are reaped when SIGCHLD says one ended: each is asked with
 * waitpid(pid, WNOHANG), so only our own are reaped (libuv reaps the ones it
 * spawned the same way). Until reaped, a pid cannot be reused, so signals
 * by pid are safe. */
static void child_free(hutch_child_t *c)
{
	if (c->pidfd >= 0)
		close(c->pidfd);
	free(c);
}

static void child_timer_closed(uv_handle_t *h)
{
	child_free(h->data);
}

static void child_finish(hutch_child_t *c)
{
	if (c->cb)
		c->cb(c->data, &c->status);
	if (c->timer_open) {
		uv_timer_stop(&c->timer);
		uv_close((uv_handle_t *)&c->timer, child_timer_closed);
	} else {
		child_free(c);
	}
}

static void children_reap(host_core_t *core)
{
	hutch_child_t **pp = &core->children;
	while (*pp) {
		hutch_child_t *c = *pp;
		int st;
		pid_t r;
		do
			r = waitpid(c->pid, &st, WNOHANG);
		while (r < 0 && errno == EINTR);
		if (r == 0) {
			pp = &c->next;
			continue;
		}
		if (r < 0)
			c->status.exit_code = -1;
		else
			proc_status_decode(st, &c->status.exit_code, &c->status.term_signal);
		c->reaped = true;
		*pp = c->next;
		child_finish(c);
	}
	/* A child being waited for keeps the loop alive, as a timer would. */
	if (!uv_is_closing((uv_handle_t *)&core->sigchld)) {
		if (core->children)
			uv_ref((uv_handle_t *)&core->sigchld);
		else
			uv_unref((uv_handle_t *)&core->sigchld);
	}
}

/* Shutdown: children still running (a sandbox's supervisor, kept for
 * recovery by the next hutchd) are no longer watched. With callbacks
 * (before the plugins' fini), each owner hears `detached` once; without
 * (at close, after fini), only the records go. */
static void children_let_go(host_core_t *core, bool tell)
{
	children_reap(core);
	while (core->children) {
		hutch_child_t *c = core->children;
		core->children = c->next;
		c->status.exit_code = -1;
		c->status.detached = true;
		if (!tell)
			c->cb = NULL;
		child_finish(c);
	}
}

void host_core_detach_children(host_core_t *core)
{
	children_let_go(core, true);
}

static void children_drop(host_core_t *core)
{
	children_let_go(core, false);
}

static void on_sigchld(uv_signal_t *h, int signum)
{
	(void)signum;
	children_reap(h->data);
}

static void on_child_timeout(uv_timer_t *t)
{
	hutch_child_t *c = t->data;
	if (c->reaped)
		return;
	c->status.timed_out = true;
	kill(c->pid, SIGKILL);
}

static void child_watch(host_core_t *core, hutch_child_t *c)
{
	c->next = core->children;
	core->children = c;
	uv_ref((uv_handle_t *)&core->sigchld);
	if (c->timeout_ms > 0) {
		uv_timer_init(core->loop, &c->timer);
		c->timer.data = c;
		c->timer_open = true;
		uv_timer_start(&c->timer, on_child_timeout, (uint64_t)c->timeout_ms, 0);
	}
	/* It may have ended before it was on the list. */
	children_reap(core);
}

static int host_spawn(const hutch_host_t *host, const hutch_spawn_opts_t *opts,
		      hutch_child_cb on_exit, void *data, hutch_child_t **out,
		      hutch_err_t *err)
{
	host_ctx_t *ctx = host_ctx_from_table(host);
	hutch_spawn_opts_t o = {0};
	memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
	if (opts->size < offsetof(hutch_spawn_opts_t, netns_fd) + sizeof(int))
		o.netns_fd = -1;
	pid_t pid;
	int pidfd;
	int r = proc_spawn(&o, &pid, &pidfd, err);
	if (r < 0)
		return r;
	hutch_child_t *c = xcalloc(1, sizeof *c);
	c->core = ctx->core;
	c->pid = pid;
	c->pidfd = pidfd;
	c->cb = on_exit;
	c->data = data;
	c->timeout_ms = o.timeout_ms;
	if (out)
		*out = c;
	if (host_core_on_loop_thread(ctx->core))
		child_watch(ctx->core, c);
	else
		enqueue(ctx->core, REQ_CHILD_WATCH, c);
	return 0;
}

static int host_child_kill(hutch_child_t *c, int signum)
{
	if (c->reaped)
		return -ESRCH;
	int r = c->pidfd >= 0 ? pidfd_send_signal(c->pidfd, signum, NULL, 0) : kill(c->pid, signum);
	return r < 0 ? -errno : 0;
}

static pid_t host_child_pid(const hutch_child_t *c)
{
	return c->pid;
}

/* ---- timers ---- */

static void on_timer(uv_timer_t *t)
{
	hutch_timer_t *tm = t->data;
	if (!atomic_load(&tm->stopped))
		tm->cb(tm->data);
}

static void timer_closed(uv_handle_t *h)
{
	free(h->data);
}

static void timer_begin(host_core_t *core, hutch_timer_t *tm)
{
	if (tm->free_on_begin) {
		free(tm);
		return;
	}
	uv_timer_init(core->loop, &tm->handle);
	tm->handle.data = tm;
	tm->initialized = true;
	if (!atomic_load(&tm->stopped))
		uv_timer_start(&tm->handle, on_timer, tm->timeout_ms, tm->repeat_ms);
}

/* Loop thread: stop and free, or have a pending start free it. */
static void timer_end(hutch_timer_t *tm)
{
	if (!tm->initialized) {
		tm->free_on_begin = true;
		return;
	}
	uv_timer_stop(&tm->handle);
	uv_close((uv_handle_t *)&tm->handle, timer_closed);
}

static int host_timer_start(const hutch_host_t *host, uint64_t timeout_ms,
			    uint64_t repeat_ms, hutch_timer_cb cb, void *data,
			    hutch_timer_t **out, hutch_err_t *err)
{
	host_ctx_t *ctx = host_ctx_from_table(host);
	if (!cb)
		return hutch_err_set(err, EINVAL, "timer without callback");
	hutch_timer_t *tm = xcalloc(1, sizeof *tm);
	tm->core = ctx->core;
	tm->cb = cb;
	tm->data = data;
	tm->timeout_ms = timeout_ms;
	tm->repeat_ms = repeat_ms;
	atomic_init(&tm->stopped, false);
	*out = tm;
	if (host_core_on_loop_thread(ctx->core))
		timer_begin(ctx->core, tm);
	else
		enqueue(ctx->core, REQ_TIMER_START, tm);
	return 0;
}

static void host_timer_stop(hutch_timer_t *tm)
{
	if (!tm)
		return;
	atomic_store(&tm->stopped, true);
	if (host_core_on_loop_thread(tm->core))
		timer_end(tm);
	else
		enqueue(tm->core, REQ_TIMER_STOP, tm);
}

/* ---- pool work ---- */

static void work_run(uv_work_t *req)
{
	host_work_t *w = req->data;
	w->work(w->data);
}

static void work_done(uv_work_t *req, int status)
{
	host_work_t *w = req->data;
	if (w->after)
		w->after(w->data, status == UV_ECANCELED ? -ECANCELED : status);
	free(w);
}

static void work_begin(host_core_t *core, host_work_t *w)
{
	if (core->closing) {
		if (w->after)
			w->after(w->data, -ECANCELED);
		free(w);
		return;
	}
	int r = uv_queue_work(core->loop, &w->req, work_run, work_done);
	if (r < 0) {
		if (w->after)
			w->after(w->data, r);
		free(w);
	}
}

static int host_queue_work(const hutch_host_t *host, hutch_work_cb work,
			   hutch_after_work_cb after, void *data)
{
	host_ctx_t *ctx = host_ctx_from_table(host);
	if (!work)
		return -EINVAL;
	host_work_t *w = xcalloc(1, sizeof *w);
	w->req.data = w;
	w->work = work;
	w->after = after;
	w->data = data;
	if (host_core_on_loop_thread(ctx->core))
		work_begin(ctx->core, w);
	else
		enqueue(ctx->core, REQ_WORK, w);
	return 0;
}

static void run_request(host_core_t *core, host_req_t *req)
{
	switch (req->type) {
	case REQ_TIMER_START:
		timer_begin(core, req->obj);
		break;
	case REQ_TIMER_STOP:
		timer_end(req->obj);
		break;
	case REQ_CHILD_WATCH:
		child_watch(core, req->obj);
		break;
	case REQ_WORK:
		work_begin(core, req->obj);
		break;
	}
}

/* ---- metrics and audit ---- */

static void host_metric_add(const hutch_host_t *host, const char *name,
			    const char *labels, double delta)
{
	(void)host;
	metrics_add(name, labels, delta);
}

static void host_metric_set(const hutch_host_t *host, const char *name,
			    const char *labels, double value)
{
	(void)host;
	metrics_set(name, labels, value);
}

static void host_audit(const hutch_host_t *host, const char *event,
		       const char *fields_json)
{
	host_ctx_t *ctx = host_ctx_from_table(host);
	host_core_t *core = ctx->core;
	if (core->audit_fd < 0)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	_cleanup_sb_ strbuf_t line = STRBUF_INIT;
	sb_printf(&line, "{\"ts_ms\":%lld,\"event\":",
		  (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
	sb_json_str(&line, event);
	sb_append(&line, ",\"source\":");
	sb_json_str(&line, ctx->source);
	if (fields_json && *fields_json) {
		sb_putc(&line, ',');
		sb_append(&line, fields_json);
	}
	sb_append(&line, "}\n");
	pthread_mutex_lock(&core->audit_lock);
	ssize_t w = write(core->audit_fd, line.buf, line.len);
	(void)w;
	pthread_mutex_unlock(&core->audit_lock);
}

/* ---- per-plugin tables ---- */

int host_ctx_new(host_core_t *core, const char *kind_name, const char *name,
		 const char *state_root, const char *run_root, host_ctx_t **out,
		 hutch_err_t *err)
{
	host_ctx_t *ctx = xcalloc(1, sizeof *ctx);
	ctx->core = core;
	ctx->source = strcmp(kind_name, name) == 0 ? xstrdup(name)
						   : xasprintf("%s:%s", kind_name, name);
	int r = 0;
	if (state_root) {
		ctx->state_dir = xasprintf("%s/plugins/%s", state_root, name);
		r = mkdir_p(ctx->state_dir, 0700, err);
	}
	if (r == 0 && run_root) {
		ctx->run_dir = xasprintf("%s/plugins/%s", run_root, name);
		r = mkdir_p(ctx->run_dir, 0700, err);
	}
	if (r < 0) {
		host_ctx_free(ctx);
		return r;
	}
	ctx->table = (hutch_host_t){
		.size = sizeof(hutch_host_t),
		.abi_major = HUTCH_PLUGIN_ABI_MAJOR,
		.abi_minor = HUTCH_PLUGIN_ABI_MINOR,
		.state_dir = ctx->state_dir,
		.run_dir = ctx->run_dir,
		.hutch_version = HUTCH_VERSION,
		.loop = core->loop,
		.log = host_log,
		.run = host_run,
		.spawn = host_spawn,
		.child_kill = host_child_kill,
		.child_pid = host_child_pid,
		.timer_start = host_timer_start,
		.timer_stop = host_timer_stop,
		.queue_work = host_queue_work,
		.metric_add = host_metric_add,
		.metric_set = host_metric_set,
		.audit = host_audit,
	};
	*out = ctx;
	return 0;
}

const hutch_host_t *host_ctx_table(host_ctx_t *ctx)
{
	return &ctx->table;
}

host_ctx_t *host_ctx_from_table(const hutch_host_t *host)
{
	return (host_ctx_t *)host;
}

void host_ctx_free(host_ctx_t *ctx)
{
	if (!ctx)
		return;
	free(ctx->source);
	free(ctx->state_dir);
	free(ctx->run_dir);
	free(ctx);
}
