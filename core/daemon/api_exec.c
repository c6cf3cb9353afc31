/* hutch.v1.Sandboxes Exec (a bidirectional stream) and Run (the same, run
 * to completion and collected): a gRPC call relayed to a stream of the
 * sandbox's agent session, with flow control end to end.
 *
 * Run answers with one RunResponse when the output is small, so that a
 * client that calls it as a unary method still works; larger output goes
 * out in pieces of RUN_PIECE bytes as it is produced (each with its _text
 * copy, at most 4 * RUN_PIECE), the last message carrying the rest and the
 * exit status. So no message reaches the 4 MiB that stock gRPC clients
 * accept by default, and hutchd holds at most about one piece per Run. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "log.h"
#include "metrics.h"
#include "sandbox_pb.h"
#include "strbuf.h"
#include "utf8_lossy.h"

#define RUN_DEFAULT_MAX (16 * 1024 * 1024)
/* Output bytes per RunResponse before the last: the message is at most four
 * times this (text can be three bytes per byte of output), under the 4 MiB
 * default receive limit of grpcio, grpc-js and grpc-go. */
#define RUN_PIECE (512 * 1024)

typedef struct exec_call {
	int refs; /* the call's, and a pending sandbox_stop's */
	grpc_call_t *call;
	daemon_t *d;
	sandbox_t *sb;
	agent_conn_t *conn;
	uint32_t sid;
	bool run_mode;
	bool started, ended, client_gone;
	bool stdin_closed;
	int64_t stdin_credit;
	bool recv_paused;
	uint32_t owed_credit; /* output forwarded while the client was slow */
	bool blocked;
	uv_timer_t timer;
	bool timer_init;
	bool timed_out;
	char exec_id[48];
	/* Run: output not yet sent, and how much was kept in all */
	strbuf_t out, err;
	size_t kept, max;
	bool truncated;
} exec_call_t;

static void exec_free(exec_call_t *x)
{
	sb_free(&x->out);
	sb_free(&x->err);
	free(x);
}

static void exec_timer_closed(uv_handle_t *h)
{
	exec_free(h->data);
}

static void exec_unref(exec_call_t *x)
{
	if (--x->refs > 0)
		return;
	if (x->timer_init) {
		uv_timer_stop(&x->timer);
		uv_close((uv_handle_t *)&x->timer, exec_timer_closed);
	} else {
		exec_free(x);
	}
}

/* The end of an exec, whichever way it ends: drop every hold. */
static void exec_release(exec_call_t *x)
{
	if (x->ended)
		return;
	x->ended = true;
	if (x->sid && x->conn)
		agent_stream_forget(x->conn, x->sid, x->client_gone);
	x->sid = 0;
	if (x->sb) {
		sandbox_activity(x->sb, -1);
		sandbox_unref(x->sb);
		x->sb = NULL;
		metrics_set("execs_running", NULL, metrics_get("execs_running", NULL) - 1);
	}
	if (x->timer_init)
		uv_timer_stop(&x->timer);
	grpc_call_set_data(x->call, NULL);
	grpc_call_unref(x->call);
	exec_unref(x);
}

/* The *_text fields go into the message as unknown fields of the same
 * numbers: protobuf-c packs a string with strlen(), which would end the text
 * at the output's first NUL, while an unknown field's bytes (the length
 * prefix, then the value) are packed as they are. */
static void run_text_field(ProtobufCMessageUnknownField *f, uint32_t tag, strbuf_t *field,
			   const char *data, size_t n)
{
	_cleanup_sb_ strbuf_t text = STRBUF_INIT;
	utf8_lossy_append(&text, (const uint8_t *)data, n);
	uint8_t prefix[10];
	size_t np = 0;
	for (uint64_t v = text.len; np == 0 || v; v >>= 7)
		prefix[np++] = (uint8_t)((v & 0x7f) | (v >> 7 ? 0x80 : 0));
	sb_append_n(field, prefix, np);
	sb_append_n(field, text.buf ? text.buf : "", text.len);
	f->tag = tag;
	f->wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
	f->len = field->len;
	f->data = (uint8_t *)field->buf;
}

static void drop_front(strbuf_t *sb, size_t n)
{
	if (n == 0)
		return;
	memmove(sb->buf, sb->buf + n, sb->len - n);
	sb->len -= n;
	sb->buf[sb->len] = '\0';
}

/* Sends out[0..n_out) and err[0..n_err) in one RunResponse (status fields
 * set by the caller in r) and drops them from the buffers. */
static int run_send(exec_call_t *x, Hutch__V1__RunResponse *r, size_t n_out, size_t n_err)
{
	_cleanup_sb_ strbuf_t ot = STRBUF_INIT;
	_cleanup_sb_ strbuf_t et = STRBUF_INIT;
	ProtobufCMessageUnknownField texts[2];
	unsigned n_texts = 0;
	if (n_out)
		run_text_field(&texts[n_texts++], 1, &ot, x->out.buf, n_out); /* stdout_text */
	if (n_err)
		run_text_field(&texts[n_texts++], 2, &et, x->err.buf, n_err); /* stderr_text */
	r->base.n_unknown_fields = n_texts;
	r->base.unknown_fields = n_texts ? texts : NULL;
	r->stdout.data = (uint8_t *)x->out.buf;
	r->stdout.len = n_out;
	r->stderr.data = (uint8_t *)x->err.buf;
	r->stderr.len = n_err;
	int s = grpc_call_send(x->call, &r->base);
	r->base.n_unknown_fields = 0;
	r->base.unknown_fields = NULL;
	drop_front(&x->out, n_out);
	drop_front(&x->err, n_err);
	return s;
}

/* Sends whole pieces while at least one is buffered; the rest waits for more
 * output or the exit. */
static void run_flush(exec_call_t *x)
{
	while (x->out.len + x->err.len >= RUN_PIECE) {
		size_t n_out = x->out.len < RUN_PIECE ? x->out.len : RUN_PIECE;
		size_t n_err = x->err.len < RUN_PIECE - n_out ? x->err.len : RUN_PIECE - n_out;
		/* Cut between characters: what follows may complete one. */
		n_out = utf8_cut((const uint8_t *)x->out.buf, n_out);
		n_err = utf8_cut((const uint8_t *)x->err.buf, n_err);
		Hutch__V1__RunResponse r = HUTCH__V1__RUN_RESPONSE__INIT;
		if (run_send(x, &r, n_out, n_err) == 1)
			x->blocked = true; /* the client is slow: credit waits (x_output) */
	}
}

static void send_exit(exec_call_t *x, int code, int sig, bool oom)
{
	if (x->run_mode) {
		Hutch__V1__RunResponse r = HUTCH__V1__RUN_RESPONSE__INIT;
		r.exit_code = code;
		r.signal = sig;
		r.oom_killed = oom;
		r.timed_out = x->timed_out;
		r.truncated = x->truncated;
		run_send(x, &r, x->out.len, x->err.len);
	} else {
		Hutch__V1__ExecExit e = HUTCH__V1__EXEC_EXIT__INIT;
		e.exit_code = code;
		e.signal = sig;
		e.oom_killed = oom;
		e.timed_out = x->timed_out;
		Hutch__V1__ExecResponse r = HUTCH__V1__EXEC_RESPONSE__INIT;
		r.msg_case = HUTCH__V1__EXEC_RESPONSE__MSG_EXIT;
		r.exit = &e;
		grpc_call_send(x->call, &r.base);
	}
	grpc_call_finish(x->call, GRPC_STATUS_OK, NULL);
}

/* ---- agent -> client ---- */

static void x_started(void *ud, uint32_t pid)
{
	exec_call_t *x = ud;
	x->started = true;
	snprintf(x->exec_id, sizeof x->exec_id, "%s/%u", sandbox_id(x->sb), pid);
	if (x->run_mode)
		return;
	Hutch__V1__ExecResponse r = HUTCH__V1__EXEC_RESPONSE__INIT;
	r.msg_case = HUTCH__V1__EXEC_RESPONSE__MSG_STARTED;
	r.started = x->exec_id;
	grpc_call_send(x->call, &r.base);
}

static void run_output(exec_call_t *x, bool is_err, const uint8_t *data, size_t n)
{
	size_t room = x->kept < x->max ? x->max - x->kept : 0;
	size_t keep = n < room ? n : room;
	if (keep < n)
		x->truncated = true; /* the rest is read and dropped */
	sb_append_n(is_err ? &x->err : &x->out, data, keep);
	x->kept += keep;
	run_flush(x);
}

static void x_output(exec_call_t *x, bool is_err, const uint8_t *data, size_t n)
{
	int s = 0;
	if (x->run_mode) {
		run_output(x, is_err, data, n);
	} else {
		Hutch__V1__ExecResponse r = HUTCH__V1__EXEC_RESPONSE__INIT;
		if (is_err) {
			r.msg_case = HUTCH__V1__EXEC_RESPONSE__MSG_STDERR;
			r.stderr.data = (uint8_t *)data;
			r.stderr.len = n;
		} else {
			r.msg_case = HUTCH__V1__EXEC_RESPONSE__MSG_STDOUT;
			r.stdout.data = (uint8_t *)data;
			r.stdout.len = n;
		}
		s = grpc_call_send(x->call, &r.base);
	}
	if (s == 1 || x->blocked) {
		/* The client reads slower than the process writes: stop
		 * granting the agent credit until it catches up. */
		x->blocked = true;
		x->owed_credit += (uint32_t)n;
	} else if (s == 0) {
		agent_send_credit(x->conn, x->sid, (uint32_t)n);
	}
}

static void x_stdout(void *ud, const uint8_t *d, size_t n)
{
	x_output(ud, false, d, n);
}

static void x_stderr(void *ud, const uint8_t *d, size_t n)
{
	x_output(ud, true, d, n);
}

static void x_stdin_credit(void *ud, uint32_t n)
{
	exec_call_t *x = ud;
	x->stdin_credit += n;
	if (x->recv_paused && x->stdin_credit > 0) {
		x->recv_paused = false;
		grpc_call_pause_recv(x->call, false);
	}
}

typedef struct exit_wait {
	exec_call_t *x;
	int code, sig;
} exit_wait_t;

static void exit_after_oom_check(void *data, bool oom)
{
	exit_wait_t *w = data;
	exec_call_t *x = w->x;
	if (!x->ended) {
		send_exit(x, w->code, w->sig, oom);
		exec_release(x);
	}
	exec_unref(x);
	free(w);
}

static void x_exit(void *ud, int code, int sig)
{
	exec_call_t *x = ud;
	x->sid = 0; /* finished on the agent's side */
	if ((code != 0 || sig) && x->sb) {
		/* A process that died may have been killed at the memory limit
		 * (gVisor reports that only through the host cgroup): ask,
		 * so the exit can say so. */
		exit_wait_t *w = xcalloc(1, sizeof *w);
		w->x = x;
		w->code = code;
		w->sig = sig;
		x->refs++;
		sandbox_check_oom(x->sb, exit_after_oom_check, w);
		return;
	}
	send_exit(x, code, sig, false);
	exec_release(x);
}

/* The sandbox stopped or died under the exec: say which, once known. */
static void sandbox_gone(void *data, sandbox_t *sb, const hutch_err_t *err)
{
	exec_call_t *x = data;
	(void)err;
	if (!x->ended && sandbox_oom_killed(sb)) {
		/* Its memory limit killed the sandbox, the process with it:
		 * that is the process's end, as a kill at the limit inside
		 * would be, not an unreachable hutchd. */
		send_exit(x, -1, SIGKILL, true);
		exec_release(x);
	} else if (!x->ended) {
		char msg[512];
		const char *what = sandbox_state(sb) == SANDBOX_EXPIRED ? "expired"
				   : sandbox_state(sb) == SANDBOX_FAILED ? "died"
				   : "was stopped";
		const char *why = sandbox_reason(sb);
		snprintf(msg, sizeof msg, "sandbox %s %s while the process ran (%s)", sandbox_id(sb),
			 what, why && *why ? why : "no reason given");
		grpc_call_finish(x->call, GRPC_STATUS_UNAVAILABLE, msg);
		exec_release(x);
	}
	sandbox_unref(sb);
	exec_unref(x);
}

static void x_error(void *ud, int e, const char *message)
{
	exec_call_t *x = ud;
	x->sid = 0;
	if (!x->started && (e == ENOENT || e == EACCES || e == ENOEXEC)) {
		/* The command could not be started: answer as a shell would,
		 * with its message on stderr and 127/126. */
		char line[1200];
		int n = snprintf(line, sizeof line, "hutch: %s\n", message);
		x_output(x, true, (const uint8_t *)line, (size_t)n);
		send_exit(x, e == ENOENT ? 127 : 126, 0, false);
		exec_release(x);
		return;
	}
	if (e == EPIPE && x->sb) {
		/* The session ended: the sandbox is stopping or died. Wait for
		 * its end so the reason (e.g. out of memory) is known; this is
		 * no stop on request, which would hide that reason. */
		sandbox_t *sb = x->sb;
		sandbox_ref(sb);
		x->refs++;
		sandbox_await_end(sb, sandbox_gone, x);
		return;
	}
	hutch_err_t err = {0};
	hutch_err_set(&err, e, "exec: %s", message);
	api_fail(x->call, &err);
	exec_release(x);
}

static const agent_stream_ops_t exec_stream_ops = {
	.on_started = x_started,
	.on_stdout = x_stdout,
	.on_stderr = x_stderr,
	.on_stdin_credit = x_stdin_credit,
	.on_exit = x_exit,
	.on_error = x_error,
};

static void on_exec_timeout(uv_timer_t *t)
{
	exec_call_t *x = t->data;
	if (x->ended || !x->sid)
		return;
	x->timed_out = true;
	agent_send_signal(x->conn, x->sid, SIGKILL);
}

/* ---- client -> agent ---- */

static bool has_key(char **env, const char *key)
{
	size_t kl = strlen(key);
	for (char **e = env; e && *e; e++)
		if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=')
			return true;
	return false;
}

static int exec_begin(exec_call_t *x, const Hutch__V1__ExecStart *st, hutch_err_t *err)
{
	if (!st)
		return hutch_err_set(err, EINVAL, "the first message must be `start`");
	if (st->n_argv == 0 || !st->argv[0] || !*st->argv[0])
		return hutch_err_set(err, EINVAL, "argv must name a command");
	if (st->timeout_ms < 0)
		return hutch_err_set(err, EINVAL, "timeout_ms must not be negative");
	/* No process outlives the longest a sandbox may live. */
	if (st->timeout_ms > x->d->cfg.sandbox.max_lifetime_ms)
		return hutch_err_set(err, EINVAL, "timeout_ms %lld is longer than the %lld a sandbox may live",
				     (long long)st->timeout_ms, (long long)x->d->cfg.sandbox.max_lifetime_ms);
	if (st->cwd && *st->cwd && st->cwd[0] != '/')
		return hutch_err_set(err, EINVAL, "cwd `%s` must be an absolute path", st->cwd);
	sandbox_t *sb = sandbox_find(x->d->sandboxes, daemon_call_tenant(x->call), st->sandbox_id);
	if (!sb)
		return hutch_err_set(err, ENOENT, "sandbox `%s` not found",
				     st->sandbox_id ? st->sandbox_id : "");
	agent_conn_t *conn = sandbox_agent(sb, err);
	if (!conn)
		return -err->code;

	/* The process's environment: the sandbox's, then the exec's. */
	char **env = strv_dup((const char *const *)sandbox_env(sb));
	for (size_t i = 0; i < st->n_env; i++) {
		const char *k = st->env[i]->key;
		if (!k || !*k || strchr(k, '=')) {
			strv_free(env);
			return hutch_err_set(err, EINVAL, "env key `%s` is not valid", k ? k : "");
		}
		size_t kl = strlen(k);
		for (size_t j = 0; env[j]; j++)
			if (strncmp(env[j], k, kl) == 0 && env[j][kl] == '=') {
				free(env[j]);
				memmove(&env[j], &env[j + 1], (strv_len(env) - j) * sizeof *env);
				break;
			}
		strv_push(&env, xasprintf("%s=%s", k, st->env[i]->value ? st->env[i]->value : ""));
	}
	if (st->tty && !has_key(env, "TERM"))
		strv_push(&env, xstrdup("TERM=xterm"));

	x->sb = sb;
	sandbox_ref(sb);
	sandbox_activity(sb, +1);
	x->conn = conn;
	x->sid = agent_stream_open(conn, &exec_stream_ops, x);
	x->stdin_credit = AGENT_INITIAL_STDIN_CREDIT;
	/* protobuf-c arrays are counted, not NULL-terminated. */
	const char **argv = xcalloc(st->n_argv + 1, sizeof *argv);
	for (size_t i = 0; i < st->n_argv; i++)
		argv[i] = st->argv[i];
	agent_exec_req_t req = {
		.argv = argv,
		.env = (const char *const *)env,
		.cwd = st->cwd && *st->cwd ? st->cwd : sandbox_workdir(sb),
		.user = st->user && *st->user ? st->user : NULL,
		.tty = st->tty,
		.rows = st->rows,
		.cols = st->cols,
		.want_stdin = st->stdin || x->run_mode,
	};
	int r = agent_send_exec(conn, x->sid, &req);
	strv_free(env);
	free(argv);
	if (r < 0)
		return hutch_err_set(err, EAGAIN, "sandbox %s: agent unreachable", sandbox_id(sb));
	if (st->timeout_ms > 0) {
		uv_timer_init(&x->d->loop, &x->timer);
		x->timer.data = x;
		x->timer_init = true;
		uv_timer_start(&x->timer, on_exec_timeout, (uint64_t)st->timeout_ms, 0);
	}
	metrics_add("execs_total", NULL, 1);
	metrics_set("execs_running", NULL, metrics_get("execs_running", NULL) + 1);
	return 0;
}

static exec_call_t *exec_new(grpc_call_t *call, bool run_mode)
{
	exec_call_t *x = xcalloc(1, sizeof *x);
	x->refs = 1;
	x->call = call;
	x->d = grpc_call_service_data(call);
	x->run_mode = run_mode;
	grpc_call_ref(call);
	grpc_call_set_data(call, x);
	return x;
}

/* Without a started stream the call just ends: nothing else to release. */
static void exec_abort(exec_call_t *x, const hutch_err_t *err)
{
	api_fail(x->call, err);
	if (x->sb) {
		exec_release(x);
		return;
	}
	grpc_call_set_data(x->call, NULL);
	grpc_call_unref(x->call);
	exec_unref(x);
}

static void exec_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__ExecRequest *req = (const Hutch__V1__ExecRequest *)msg;
	exec_call_t *x = grpc_call_get_data(call);
	hutch_err_t err = {0};
	if (!x) {
		x = exec_new(call, false);
		if (req->msg_case != HUTCH__V1__EXEC_REQUEST__MSG_START) {
			hutch_err_set(&err, EINVAL, "the first message must be `start`");
			exec_abort(x, &err);
			return;
		}
		if (exec_begin(x, req->start, &err) < 0)
			exec_abort(x, &err);
		return;
	}
	if (x->ended || !x->sid)
		return;
	switch (req->msg_case) {
	case HUTCH__V1__EXEC_REQUEST__MSG_START:
		hutch_err_set(&err, EINVAL, "exec already started");
		x->client_gone = true;
		api_fail(call, &err);
		exec_release(x);
		break;
	case HUTCH__V1__EXEC_REQUEST__MSG_STDIN:
		if (x->stdin_closed || req->stdin.len == 0)
			break;
		agent_send_stdin(x->conn, x->sid, req->stdin.data, req->stdin.len);
		x->stdin_credit -= (int64_t)req->stdin.len;
		if (x->stdin_credit <= 0 && !x->recv_paused) {
			/* The process is not reading: let the client wait. */
			x->recv_paused = true;
			grpc_call_pause_recv(call, true);
		}
		break;
	case HUTCH__V1__EXEC_REQUEST__MSG_CLOSE_STDIN:
		if (!x->stdin_closed) {
			x->stdin_closed = true;
			agent_send_stdin_eof(x->conn, x->sid);
		}
		break;
	case HUTCH__V1__EXEC_REQUEST__MSG_SIGNAL:
		if (req->signal <= 0 || req->signal >= 65) {
			hutch_err_set(&err, EINVAL, "signal %d is not valid", req->signal);
			x->client_gone = true;
			api_fail(call, &err);
			exec_release(x);
			break;
		}
		agent_send_signal(x->conn, x->sid, req->signal);
		break;
	case HUTCH__V1__EXEC_REQUEST__MSG_RESIZE:
		if (req->resize)
			agent_send_resize(x->conn, x->sid, req->resize->rows, req->resize->cols);
		break;
	default:
		break;
	}
}

static void exec_on_half_close(grpc_call_t *call)
{
	exec_call_t *x = grpc_call_get_data(call);
	/* A client that stops sending has no more stdin either. */
	if (x && !x->ended && x->sid && !x->stdin_closed) {
		x->stdin_closed = true;
		agent_send_stdin_eof(x->conn, x->sid);
	}
}

static void exec_on_writable(grpc_call_t *call)
{
	exec_call_t *x = grpc_call_get_data(call);
	if (!x || x->ended || !x->blocked)
		return;
	x->blocked = false;
	if (x->owed_credit && x->sid)
		agent_send_credit(x->conn, x->sid, x->owed_credit);
	x->owed_credit = 0;
}

static void exec_on_cancel(grpc_call_t *call)
{
	exec_call_t *x = grpc_call_get_data(call);
	if (!x)
		return;
	/* The client went away: the process is killed, not left orphaned. */
	x->client_gone = true;
	exec_release(x);
}

/* ---- Run ---- */

static void run_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__RunRequest *req = (const Hutch__V1__RunRequest *)msg;
	exec_call_t *x = exec_new(call, true);
	hutch_err_t err = {0};
	if (req->max_output_bytes < 0) {
		hutch_err_set(&err, EINVAL, "max_output_bytes must not be negative");
		exec_abort(x, &err);
		return;
	}
	x->max = req->max_output_bytes > 0 ? (size_t)req->max_output_bytes : RUN_DEFAULT_MAX;
	if (exec_begin(x, req->start, &err) < 0) {
		exec_abort(x, &err);
		return;
	}
	if (req->stdin.len)
		agent_send_stdin(x->conn, x->sid, req->stdin.data, req->stdin.len);
	x->stdin_closed = true;
	agent_send_stdin_eof(x->conn, x->sid);
}

static const grpc_method_t exec_methods[] = {
	{
		.path = "/hutch.v1.Sandboxes/Exec",
		.request = &hutch__v1__exec_request__descriptor,
		.client_streaming = true,
		.server_streaming = true,
		.on_message = exec_on_message,
		.on_half_close = exec_on_half_close,
		.on_writable = exec_on_writable,
		.on_cancel = exec_on_cancel,
	},
	{
		.path = "/hutch.v1.Sandboxes/Run",
		.request = &hutch__v1__run_request__descriptor,
		.server_streaming = true, /* one message unless the output is large */
		.on_message = run_on_message,
		.on_writable = exec_on_writable,
		.on_cancel = exec_on_cancel,
	},
};

int api_exec_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, exec_methods,
				       sizeof exec_methods / sizeof exec_methods[0], d, err);
}
