/* The host table plugins get: timers and children from pool threads, work
 * on the pool, metrics and audit lines. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "cleanup.h"
#include "host_api.h"
#include "metrics.h"
#include "strbuf.h"

typedef struct fixture {
	uv_loop_t loop;
	host_core_t *core;
	host_ctx_t *ctx;
	const hutch_host_t *h;
	char dir[64];
} fixture_t;

static void setup(fixture_t *f)
{
	hutch_err_t err = {0};
	snprintf(f->dir, sizeof f->dir, "/tmp/hutch-test-host-XXXXXX");
	CHECK(mkdtemp(f->dir) != NULL);
	uv_loop_init(&f->loop);
	_cleanup_free_ char *audit = xasprintf("%s/audit.jsonl", f->dir);
	CHECK_EQ_INT(host_core_new(&f->loop, audit, &f->core, &err), 0);
	CHECK_EQ_INT(host_ctx_new(f->core, "network", "demo", f->dir, f->dir, &f->ctx, &err), 0);
	f->h = host_ctx_table(f->ctx);
}

static void teardown(fixture_t *f)
{
	host_ctx_free(f->ctx);
	host_core_close(f->core);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	host_core_free(f->core);
	CHECK_EQ_INT(uv_loop_close(&f->loop), 0);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", f->dir);
	CHECK_EQ_INT(system(cmd), 0);
}

/* Runs the loop until cond holds: requests queued from other threads do not
 * by themselves keep a loop alive, so a ticking check handle does. */
typedef struct until {
	uv_timer_t t;
	bool (*cond)(void *);
	void *arg;
} until_t;

static void until_tick(uv_timer_t *t)
{
	until_t *u = t->data;
	if (u->cond(u->arg))
		uv_close((uv_handle_t *)t, NULL);
}

static void run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg)
{
	until_t u = {.cond = cond, .arg = arg};
	uv_timer_init(loop, &u.t);
	u.t.data = &u;
	uv_timer_start(&u.t, until_tick, 5, 5);
	uv_run(loop, UV_RUN_DEFAULT);
}

typedef struct timer_state {
	fixture_t *f;
	atomic_int fired;
	hutch_timer_t *t;
} timer_state_t;

static void on_tick(void *data)
{
	timer_state_t *s = data;
	if (atomic_fetch_add(&s->fired, 1) + 1 == 3)
		s->f->h->timer_stop(s->t);
}

static bool timer_done(void *arg)
{
	timer_state_t *s = arg;
	return atomic_load(&s->fired) >= 3;
}

static void *start_timer_thread(void *arg)
{
	timer_state_t *s = arg;
	hutch_err_t err = {0};
	CHECK_EQ_INT(s->f->h->timer_start(s->f->h, 10, 10, on_tick, s, &s->t, &err), 0);
	return NULL;
}

static void timer_from_other_thread(void)
{
	fixture_t f;
	setup(&f);
	timer_state_t s = {.f = &f};
	pthread_t th;
	pthread_create(&th, NULL, start_timer_thread, &s);
	pthread_join(th, NULL);
	run_until(&f.loop, timer_done, &s);
	uv_run(&f.loop, UV_RUN_NOWAIT);
	CHECK_EQ_INT(atomic_load(&s.fired), 3);
	teardown(&f);
}

typedef struct child_state {
	fixture_t *f;
	int exit_code, sig;
	bool done, timed_out;
} child_state_t;

static void on_child(void *data, const hutch_child_status_t *st)
{
	child_state_t *c = data;
	c->exit_code = st->exit_code;
	c->sig = st->term_signal;
	c->timed_out = st->timed_out;
	c->done = true;
}

static bool child_done(void *arg)
{
	return ((child_state_t *)arg)->done;
}

static void *spawn_thread(void *arg)
{
	child_state_t *c = arg;
	const char *argv[] = {"sh", "-c", "exit 5", NULL};
	hutch_spawn_opts_t o = {.size = sizeof o, .argv = argv, .stdin_fd = -1,
				.stdout_fd = -1, .stderr_fd = -1, .netns_fd = -1};
	hutch_err_t err = {0};
	hutch_child_t *child;
	CHECK_EQ_INT(c->f->h->spawn(c->f->h, &o, on_child, c, &child, &err), 0);
	return NULL;
}

static void child_exit_reported_on_loop(void)
{
	fixture_t f;
	setup(&f);
	child_state_t c = {.f = &f};
	pthread_t th;
	pthread_create(&th, NULL, spawn_thread, &c);
	pthread_join(th, NULL);
	run_until(&f.loop, child_done, &c);
	CHECK(c.done);
	CHECK_EQ_INT(c.exit_code, 5);

	/* A timeout kills; kill() reaches a running child. */
	const char *argv[] = {"sleep", "30", NULL};
	hutch_spawn_opts_t o = {.size = sizeof o, .argv = argv, .stdin_fd = -1,
				.stdout_fd = -1, .stderr_fd = -1, .netns_fd = -1,
				.timeout_ms = 100};
	hutch_err_t err = {0};
	child_state_t t = {.f = &f};
	hutch_child_t *child;
	CHECK_EQ_INT(f.h->spawn(f.h, &o, on_child, &t, &child, &err), 0);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	CHECK(t.done && t.timed_out && t.sig == SIGKILL);

	o.timeout_ms = 0;
	child_state_t k = {.f = &f};
	CHECK_EQ_INT(f.h->spawn(f.h, &o, on_child, &k, &child, &err), 0);
	CHECK(f.h->child_pid(child) > 0);
	CHECK_EQ_INT(f.h->child_kill(child, SIGTERM), 0);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	CHECK(k.done && k.sig == SIGTERM && !k.timed_out);
	teardown(&f);
}

typedef struct work_state {
	atomic_int worked;
	int after_status;
	pthread_t loop_thread, work_thread;
	bool after_on_loop;
} work_state_t;

static void do_work(void *data)
{
	work_state_t *w = data;
	w->work_thread = pthread_self();
	atomic_fetch_add(&w->worked, 1);
}

static void after_work(void *data, int status)
{
	work_state_t *w = data;
	w->after_status = status;
	w->after_on_loop = pthread_equal(pthread_self(), w->loop_thread);
}

static void work_runs_on_pool(void)
{
	fixture_t f;
	setup(&f);
	work_state_t w = {.after_status = 99, .loop_thread = pthread_self()};
	CHECK_EQ_INT(f.h->queue_work(f.h, do_work, after_work, &w), 0);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	CHECK_EQ_INT(atomic_load(&w.worked), 1);
	CHECK_EQ_INT(w.after_status, 0);
	CHECK(w.after_on_loop);
	CHECK(!pthread_equal(w.work_thread, w.loop_thread));
	teardown(&f);
}

static void metrics_and_audit(void)
{
	fixture_t f;
	setup(&f);
	metrics_reset();
	f.h->metric_add(f.h, "egress_drops_total", "sandbox=sb-1", 2);
	f.h->metric_add(f.h, "egress_drops_total", "sandbox=sb-1", 1);
	f.h->metric_add(f.h, "Bad-Name", NULL, 1); /* ignored */
	f.h->metric_set(f.h, "sandboxes_running", NULL, 4);
	CHECK(metrics_get("egress_drops_total", "sandbox=sb-1") == 3);
	_cleanup_sb_ strbuf_t out = STRBUF_INIT;
	metrics_render(&out);
	CHECK_CONTAINS(out.buf, "hutch_egress_drops_total{sandbox=\"sb-1\"} 3\n");
	CHECK_CONTAINS(out.buf, "hutch_sandboxes_running 4\n");
	CHECK(strstr(out.buf, "Bad-Name") == NULL);

	f.h->audit(f.h, "egress.decision", "\"sandbox\":\"sb-1\",\"verdict\":\"drop\"");
	_cleanup_free_ char *path = xasprintf("%s/audit.jsonl", f.dir);
	FILE *fp = fopen(path, "r");
	char line[512] = "";
	CHECK(fp && fgets(line, sizeof line, fp));
	if (fp)
		fclose(fp);
	CHECK_CONTAINS(line, "\"event\":\"egress.decision\",\"source\":\"network:demo\","
			     "\"sandbox\":\"sb-1\",\"verdict\":\"drop\"}");
	teardown(&f);
}

int main(int argc, char **argv)
{
	static const test_case_t cases[] = {
		{"timer_from_other_thread", timer_from_other_thread},
		{"child_exit_reported_on_loop", child_exit_reported_on_loop},
		{"work_runs_on_pool", work_runs_on_pool},
		{"metrics_and_audit", metrics_and_audit},
		{NULL, NULL},
	};
	return run_cases(cases, argc, argv);
}
