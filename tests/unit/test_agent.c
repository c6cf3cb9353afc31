/* hutchd's agent session against the real hutch-agent binary (run here as a
 * plain process in session mode): exec with streamed stdio, exit codes and
 * signals, stdin, terminals, credit-based flow control, files, and a
 * misbehaving agent. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "agent_conn.h"
#include "check.h"
#include "cleanup.h"
#include "strbuf.h"

typedef struct fix {
	uv_loop_t loop;
	agent_conn_t *conn;
	pid_t pid;
	bool closed;
	char reason[256];
} fix_t;

static void on_closed(void *data, const char *reason)
{
	fix_t *f = data;
	f->closed = true;
	snprintf(f->reason, sizeof f->reason, "%s", reason);
}

static void start(fix_t *f)
{
	memset(f, 0, sizeof *f);
	uv_loop_init(&f->loop);
	int to[2], from[2];
	CHECK_EQ_INT(pipe2(to, O_CLOEXEC), 0);
	CHECK_EQ_INT(pipe2(from, O_CLOEXEC), 0);
	f->pid = fork();
	if (f->pid == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		execl(HUTCH_AGENT_PATH, "hutch-agent", "session", (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	hutch_err_t err = {0};
	CHECK_EQ_INT(agent_conn_open(&f->loop, to[1], from[0], on_closed, f, &f->conn, &err), 0);
}

static void stop(fix_t *f)
{
	if (!f->closed)
		agent_conn_close(f->conn, "test done");
	uv_run(&f->loop, UV_RUN_DEFAULT);
	CHECK(f->closed);
	int st;
	waitpid(f->pid, &st, 0);
	CHECK(WIFEXITED(st));
	CHECK_EQ_INT(uv_loop_close(&f->loop), 0);
}

typedef struct run {
	fix_t *f;
	uint32_t id;
	strbuf_t out, err;
	int exit_code, sig;
	bool started, exited, failed;
	int error;
	char message[512];
	size_t credit_granted;
	bool manual_credit;
} run_t;

static void r_started(void *ud, uint32_t pid)
{
	run_t *r = ud;
	r->started = pid > 0;
}
static void r_stdout(void *ud, const uint8_t *d, size_t n)
{
	run_t *r = ud;
	sb_append_n(&r->out, d, n);
	if (!r->manual_credit)
		agent_send_credit(r->f->conn, r->id, (uint32_t)n);
}
static void r_stderr(void *ud, const uint8_t *d, size_t n)
{
	run_t *r = ud;
	sb_append_n(&r->err, d, n);
	if (!r->manual_credit)
		agent_send_credit(r->f->conn, r->id, (uint32_t)n);
}
static void r_exit(void *ud, int code, int sig)
{
	run_t *r = ud;
	r->exited = true;
	r->exit_code = code;
	r->sig = sig;
}
static void r_error(void *ud, int e, const char *msg)
{
	run_t *r = ud;
	r->failed = true;
	r->error = e;
	snprintf(r->message, sizeof r->message, "%s", msg);
}
static const agent_stream_ops_t run_ops = {
	.on_started = r_started,
	.on_stdout = r_stdout,
	.on_stderr = r_stderr,
	.on_exit = r_exit,
	.on_error = r_error,
};

static void exec_cmd(fix_t *f, run_t *r, const char *const *argv, bool tty, bool want_stdin)
{
	memset(r, 0, sizeof *r);
	r->f = f;
	r->id = agent_stream_open(f->conn, &run_ops, r);
	static const char *const env[] = {"PATH=/usr/bin:/bin", "GREETING=hello there", NULL};
	agent_exec_req_t req = {.argv = argv, .env = env, .cwd = "/tmp", .tty = tty,
				.want_stdin = want_stdin, .rows = 33, .cols = 101};
	CHECK_EQ_INT(agent_send_exec(f->conn, r->id, &req), 0);
}

static void run_until_done(fix_t *f, run_t *r)
{
	while (!r->exited && !r->failed && !f->closed)
		uv_run(&f->loop, UV_RUN_ONCE);
}

static void exec_output_env_cwd(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *argv[] = {"sh", "-c", "echo \"$GREETING\"; pwd; echo oops >&2; exit 3", NULL};
	exec_cmd(&f, &r, argv, false, false);
	run_until_done(&f, &r);
	CHECK(r.started);
	CHECK_EQ_INT(r.exit_code, 3);
	CHECK_STR(r.out.buf, "hello there\n/tmp\n");
	CHECK_STR(r.err.buf, "oops\n");
	CHECK(agent_conn_pid(f.conn) > 0);
	sb_free(&r.out);
	sb_free(&r.err);
	stop(&f);
}

static void exec_missing_command(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *argv[] = {"definitely-not-a-command", NULL};
	exec_cmd(&f, &r, argv, false, false);
	run_until_done(&f, &r);
	CHECK(r.failed);
	CHECK_EQ_INT(r.error, ENOENT);
	CHECK_STR(r.message, "exec `definitely-not-a-command`: No such file or directory");
	stop(&f);
}

static void exec_signal_and_stdin(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *cat[] = {"cat", NULL};
	exec_cmd(&f, &r, cat, false, true);
	agent_send_stdin(f.conn, r.id, "line one\n", 9);
	agent_send_stdin(f.conn, r.id, "line two\n", 9);
	agent_send_stdin_eof(f.conn, r.id);
	run_until_done(&f, &r);
	CHECK_EQ_INT(r.exit_code, 0);
	CHECK_STR(r.out.buf, "line one\nline two\n");
	sb_free(&r.out);

	const char *sleep_argv[] = {"sleep", "30", NULL};
	exec_cmd(&f, &r, sleep_argv, false, false);
	while (!r.started)
		uv_run(&f.loop, UV_RUN_ONCE);
	agent_send_signal(f.conn, r.id, SIGTERM);
	run_until_done(&f, &r);
	CHECK_EQ_INT(r.exit_code, -1);
	CHECK_EQ_INT(r.sig, SIGTERM);
	stop(&f);
}

static void exit_reported_while_background_child_holds_pipes(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *argv[] = {"sh", "-c", "sleep 20 & exit 4", NULL};
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	exec_cmd(&f, &r, argv, false, false);
	run_until_done(&f, &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	CHECK_EQ_INT(r.exit_code, 4);
	CHECK(s < 10); /* not when the background child exits, 20 s later */
	stop(&f);
}

static void exec_tty(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *argv[] = {"sh", "-c", "test -t 0 && test -t 1 && stty size", NULL};
	exec_cmd(&f, &r, argv, true, true);
	run_until_done(&f, &r);
	CHECK_EQ_INT(r.exit_code, 0);
	CHECK_CONTAINS(r.out.buf, "33 101");
	sb_free(&r.out);
	stop(&f);
}

static void output_waits_for_credit(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *argv[] = {"head", "-c", "3000000", "/dev/zero", NULL};
	exec_cmd(&f, &r, argv, false, false);
	r.manual_credit = true;
	/* Without more credit the agent stops at its initial window: wait
	 * (up to 10 s, the machine may be loaded) until the window is used,
	 * then a while longer to see that nothing more comes. */
	for (int i = 0; i < 10000 && r.out.len < AGENT_INITIAL_OUTPUT_CREDIT; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(1000);
	for (int i = 0; i < 200; i++)
		uv_run(&f.loop, UV_RUN_NOWAIT), usleep(1000);
	CHECK_EQ_INT(r.out.len, AGENT_INITIAL_OUTPUT_CREDIT);
	CHECK(!r.exited);
	r.manual_credit = false;
	agent_send_credit(f.conn, r.id, (uint32_t)r.out.len);
	run_until_done(&f, &r);
	CHECK_EQ_INT(r.out.len, 3000000);
	CHECK_EQ_INT(r.exit_code, 0);
	sb_free(&r.out);
	stop(&f);
}

typedef struct fileop {
	int done, entries;
	bool failed;
	int error;
	char message[512];
	strbuf_t data;
	strbuf_t names;
} fileop_t;

static void fo_entry(void *ud, const agent_entry_t *e)
{
	fileop_t *o = ud;
	o->entries++;
	sb_printf(&o->names, "%s:%u:%o;", e->path, e->type, e->mode);
}
static void fo_data(void *ud, const uint8_t *d, size_t n)
{
	sb_append_n(&((fileop_t *)ud)->data, d, n);
}
static void fo_done(void *ud)
{
	((fileop_t *)ud)->done++;
}
static void fo_error(void *ud, int e, const char *m)
{
	fileop_t *o = ud;
	o->failed = true;
	o->error = e;
	snprintf(o->message, sizeof o->message, "%s", m);
}
static const agent_stream_ops_t file_ops = {
	.on_entry = fo_entry, .on_data = fo_data, .on_done = fo_done, .on_error = fo_error,
};

static void files_roundtrip(void)
{
	fix_t f;
	start(&f);
	char dir[] = "/tmp/hutch-test-agent-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	_cleanup_free_ char *file = xasprintf("%s/sub/hello.sh", dir);
	_cleanup_free_ char *sub = xasprintf("%s/sub", dir);

	fileop_t put = {0};
	uint32_t id = agent_stream_open(f.conn, &file_ops, &put);
	agent_send_put(f.conn, id, file, AGENT_FT_FILE, 0750, NULL, true);
	agent_send_data(f.conn, id, "#!/bin/sh\necho hi\n", 18);
	agent_send_data_end(f.conn, id);
	while (put.done < 1 && !put.failed)
		uv_run(&f.loop, UV_RUN_ONCE);
	agent_stream_forget(f.conn, id, false);
	CHECK(!put.failed);
	struct stat st;
	CHECK(stat(file, &st) == 0 && (st.st_mode & 07777) == 0750 && st.st_size == 18);

	fileop_t get = {0};
	id = agent_stream_open(f.conn, &file_ops, &get);
	agent_send_file_op(f.conn, id, AGENT_FILE_GET, sub, true);
	while (!get.done && !get.failed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK_EQ_INT(get.entries, 2);
	CHECK_STR(get.names.buf, "sub:2:755;sub/hello.sh:1:750;");
	CHECK_STR(get.data.buf, "#!/bin/sh\necho hi\n");

	fileop_t list = {0};
	id = agent_stream_open(f.conn, &file_ops, &list);
	agent_send_file_op(f.conn, id, AGENT_FILE_LIST, sub, false);
	while (!list.done && !list.failed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK_STR(list.names.buf, "hello.sh:1:750;");

	fileop_t rm = {0};
	id = agent_stream_open(f.conn, &file_ops, &rm);
	agent_send_file_op(f.conn, id, AGENT_FILE_REMOVE, sub, false);
	while (!rm.done && !rm.failed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK(rm.failed);
	CHECK_EQ_INT(rm.error, ENOTEMPTY);
	fileop_t rm2 = {0};
	id = agent_stream_open(f.conn, &file_ops, &rm2);
	agent_send_file_op(f.conn, id, AGENT_FILE_REMOVE, sub, true);
	while (!rm2.done && !rm2.failed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK(!rm2.failed && stat(sub, &st) < 0);

	fileop_t missing = {0};
	id = agent_stream_open(f.conn, &file_ops, &missing);
	agent_send_file_op(f.conn, id, AGENT_FILE_STAT, file, false);
	while (!missing.done && !missing.failed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK(missing.failed && missing.error == ENOENT);
	CHECK_CONTAINS(missing.message, "No such file or directory");
	sb_free(&get.data);
	sb_free(&get.names);
	sb_free(&list.names);
	rmdir(dir);
	stop(&f);
}

/* ---- PORT_WAIT: the agent says once when a port accepts ---- */

typedef struct portw {
	bool done, failed;
	int error;
	char message[256];
	struct timespec at;
} portw_t;

static void pw_done(void *ud)
{
	portw_t *p = ud;
	p->done = true;
	clock_gettime(CLOCK_MONOTONIC, &p->at);
}
static void pw_error(void *ud, int e, const char *msg)
{
	portw_t *p = ud;
	p->failed = true;
	p->error = e;
	snprintf(p->message, sizeof p->message, "%s", msg);
}
static const agent_stream_ops_t pw_ops = {.on_done = pw_done, .on_error = pw_error};

/* A loopback port nothing listens on (bound, then let go). */
static int free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	socklen_t len = sizeof sa;
	getsockname(fd, (struct sockaddr *)&sa, &len);
	close(fd);
	return ntohs(sa.sin_port);
}

static int listen_on(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	CHECK_EQ_INT(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	CHECK_EQ_INT(listen(fd, 8), 0);
	return fd;
}

static void timer_fired(uv_timer_t *t)
{
	*(bool *)t->data = true;
}

static void run_for_ms(fix_t *f, int ms)
{
	uv_timer_t t;
	bool fired = false;
	uv_timer_init(&f->loop, &t);
	t.data = &fired;
	uv_timer_start(&t, timer_fired, (uint64_t)ms, 0);
	while (!fired)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void port_wait_reports_when_port_accepts(void)
{
	fix_t f;
	start(&f);
	while (agent_conn_version(f.conn) == 0 && !f.closed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK_EQ_INT((int)agent_conn_version(f.conn), AGENT_PROTO_VERSION);

	/* Nothing listens yet: no answer. Then a server listens: the answer
	 * comes within milliseconds, once. */
	int port = free_port();
	portw_t w = {0};
	uint32_t id = agent_stream_open(f.conn, &pw_ops, &w);
	CHECK_EQ_INT(agent_send_port_wait(f.conn, id, (uint32_t)port, 10000), 0);
	run_for_ms(&f, 150);
	CHECK(!w.done && !w.failed);
	struct timespec listened;
	int lfd = listen_on(port);
	clock_gettime(CLOCK_MONOTONIC, &listened);
	while (!w.done && !w.failed && !f.closed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK(w.done && !w.failed);
	double ms = (double)(w.at.tv_sec - listened.tv_sec) * 1e3 +
		    (double)(w.at.tv_nsec - listened.tv_nsec) / 1e6;
	fprintf(stderr, "port accepted -> agent's answer: %.1f ms\n", ms);
	CHECK(ms < 100); /* attempts every 2 ms in the first second */
	agent_stream_forget(f.conn, id, false);
	close(lfd);

	/* Nothing ever listens: ETIMEDOUT after the timeout. */
	portw_t t = {0};
	id = agent_stream_open(f.conn, &pw_ops, &t);
	agent_send_port_wait(f.conn, id, (uint32_t)free_port(), 200);
	while (!t.done && !t.failed && !f.closed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK(t.failed && t.error == ETIMEDOUT);
	CHECK_CONTAINS(t.message, "did not accept connections in time");

	/* Cancelled: no answer, and the session goes on. */
	portw_t c = {0};
	port = free_port();
	id = agent_stream_open(f.conn, &pw_ops, &c);
	agent_send_port_wait(f.conn, id, (uint32_t)port, 10000);
	agent_stream_forget(f.conn, id, true);
	lfd = listen_on(port);
	portw_t again = {0};
	uint32_t id2 = agent_stream_open(f.conn, &pw_ops, &again);
	agent_send_port_wait(f.conn, id2, (uint32_t)port, 10000);
	while (!again.done && !again.failed && !f.closed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK(again.done && !c.done && !c.failed);
	agent_stream_forget(f.conn, id2, false);
	close(lfd);

	/* A bad port is refused. */
	portw_t bad = {0};
	id = agent_stream_open(f.conn, &pw_ops, &bad);
	agent_send_port_wait(f.conn, id, 70000, 1000);
	while (!bad.done && !bad.failed && !f.closed)
		uv_run(&f.loop, UV_RUN_ONCE);
	CHECK(bad.failed && bad.error == EINVAL);
	stop(&f);
}

static void garbage_from_agent_closes_session(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *argv[] = {"sleep", "30", NULL};
	exec_cmd(&f, &r, argv, false, false);
	while (!r.started)
		uv_run(&f.loop, UV_RUN_ONCE);
	/* A frame claiming 2 GiB: the session ends, the open exec hears so. */
	static const uint8_t junk[] = {0x7f, 0xff, 0xff, 0xff, 66, 0, 0, 0, 1};
	agent_conn_feed(f.conn, junk, sizeof junk);
	CHECK(r.failed);
	CHECK_EQ_INT(r.error, EPIPE);
	CHECK_CONTAINS(r.message, "sandbox agent broke protocol");
	uv_run(&f.loop, UV_RUN_DEFAULT);
	CHECK(f.closed);
	int st;
	kill(f.pid, SIGKILL);
	waitpid(f.pid, &st, 0);
	CHECK_EQ_INT(uv_loop_close(&f.loop), 0);
}

static void agent_death_ends_streams(void)
{
	fix_t f;
	start(&f);
	run_t r;
	const char *argv[] = {"sleep", "30", NULL};
	exec_cmd(&f, &r, argv, false, false);
	while (!r.started)
		uv_run(&f.loop, UV_RUN_ONCE);
	kill(f.pid, SIGKILL);
	run_until_done(&f, &r);
	CHECK(r.failed);
	CHECK_EQ_INT(r.error, EPIPE);
	CHECK_STR(r.message, "sandbox agent exited");
	uv_run(&f.loop, UV_RUN_DEFAULT);
	int st;
	waitpid(f.pid, &st, 0);
	CHECK_EQ_INT(uv_loop_close(&f.loop), 0);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	static const test_case_t cases[] = {
		{"exec_output_env_cwd", exec_output_env_cwd},
		{"exec_missing_command", exec_missing_command},
		{"exec_signal_and_stdin", exec_signal_and_stdin},
		{"exec_tty", exec_tty},
		{"exit_reported_while_background_child_holds_pipes",
		 exit_reported_while_background_child_holds_pipes},
		{"output_waits_for_credit", output_waits_for_credit},
		{"files_roundtrip", files_roundtrip},
		{"port_wait_reports_when_port_accepts", port_wait_reports_when_port_accepts},
		{"garbage_from_agent_closes_session", garbage_from_agent_closes_session},
		{"agent_death_ends_streams", agent_death_ends_streams},
		{NULL, NULL},
	};
	return run_cases(cases, argc, argv);
}
