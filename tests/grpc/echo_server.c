/*
 * grpc-echo-server: the hutch.test.Echo service on hutch_grpc, for the tests
 * in this directory.
 *
 *   grpc-echo-server [--unix PATH] [--tcp PORT [--cert PEM --key PEM]]
 *                    [--api-key KEY] [--max-recv BYTES] [--handshake-ms MS]
 *                    [--verbose]
 *
 * Prints one line "grpc-echo-server: unix=PATH tcp=PORT" once listening
 * (tcp=-1 without --tcp) and runs until SIGTERM/SIGINT, then shuts down
 * cleanly and exits 0 (so a test can tell a clean exit from a crash).
 * With --api-key, every call needs "authorization: Bearer KEY".
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "grpc_server.h"

#define MAX_STREAM_PAYLOAD (4u << 20)

static struct {
	uint64_t max_pending;
	uint64_t flood_queued_bytes;
	uint64_t cancelled;
	uint64_t deadline_cancelled;
	uint64_t live_calls;
} stats;

static uv_loop_t *loop;
static uint8_t *filler; /* MAX_STREAM_PAYLOAD bytes of 'x' */
static const char *api_key;
static bool verbose;

enum kind { K_UNARY, K_SSTREAM, K_CSTREAM, K_BIDI, K_SLOW, K_FAIL, K_FLOOD, K_SINK, K_STATS };

/* Per-call state. Holds a call reference until the call has ended and the
 * timer (if any) has closed. */
struct ctx {
	grpc_call_t *call;
	enum kind kind;
	bool ended;
	uv_timer_t timer;
	bool timer_inited;
	/* streams */
	int32_t remaining, index, size, delay;
	char *message;
	/* sums */
	int64_t total;
	int32_t count;
	int32_t delivered_while_paused;
	uint64_t bytes;
	bool paused;
	/* Slow */
	Hutch__Test__EchoReply reply;
};

static void ctx_timer_closed(uv_handle_t *h)
{
	struct ctx *c = h->data;
	grpc_call_unref(c->call);
	free(c->message);
	free(c);
}

static void ctx_end(struct ctx *c)
{
	if (c->ended)
		return;
	c->ended = true;
	stats.live_calls--;
	if (c->timer_inited) {
		uv_close((uv_handle_t *)&c->timer, ctx_timer_closed);
		return;
	}
	grpc_call_unref(c->call);
	free(c->message);
	free(c);
}

static void ctx_finish(struct ctx *c, grpc_status_t status, const char *msg)
{
	grpc_call_finish(c->call, status, msg);
	ctx_end(c);
}

static void ctx_timer_start(struct ctx *c, uv_timer_cb cb, uint64_t first, uint64_t repeat)
{
	if (!c->timer_inited) {
		uv_timer_init(loop, &c->timer);
		c->timer.data = c;
		c->timer_inited = true;
	}
	uv_timer_start(&c->timer, cb, first, repeat);
}

static enum kind kind_of(grpc_call_t *call)
{
	return (enum kind)(intptr_t)grpc_call_service_data(call);
}

/* ---- generic callbacks ---- */

static void on_start(grpc_call_t *call)
{
	struct ctx *c = calloc(1, sizeof *c);
	if (!c) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	c->call = call;
	c->kind = kind_of(call);
	grpc_call_ref(call);
	grpc_call_set_data(call, c);
	stats.live_calls++;
}

static void on_cancel(grpc_call_t *call)
{
	struct ctx *c = grpc_call_get_data(call);
	stats.cancelled++;
	if (grpc_call_cancel_status(call) == GRPC_STATUS_DEADLINE_EXCEEDED)
		stats.deadline_cancelled++;
	if (verbose)
		fprintf(stderr, "echo: %s cancelled: %s\n", grpc_call_path(call),
			grpc_status_name(grpc_call_cancel_status(call)));
	if (c)
		ctx_end(c);
}

/* ---- streams: ServerStream, Flood ---- */

static void stream_pump(struct ctx *c)
{
	while (c->remaining != 0) {
		Hutch__Test__EchoReply r = HUTCH__TEST__ECHO_REPLY__INIT;
		r.message = c->message;
		r.index = c->index;
		r.payload.data = filler;
		r.payload.len = (size_t)c->size;
		r.pending = grpc_call_pending(c->call);
		int rc = grpc_call_send(c->call, &r.base);
		if (rc < 0)
			return; /* dead: on_cancel follows or came */
		if (c->kind == K_FLOOD) {
			uint64_t p = grpc_call_pending(c->call);
			if (p > stats.max_pending)
				stats.max_pending = p;
			stats.flood_queued_bytes += (uint64_t)c->size;
		}
		c->index++;
		if (c->remaining > 0)
			c->remaining--;
		if (c->delay > 0 || rc == 1)
			return; /* the timer or on_writable continues */
	}
	ctx_finish(c, GRPC_STATUS_OK, NULL);
}

static void stream_tick(uv_timer_t *t)
{
	struct ctx *c = t->data;
	if (!c->ended)
		stream_pump(c);
}

static void stream_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	struct ctx *c = grpc_call_get_data(call);
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	if (req->size < 0 || (uint32_t)req->size > MAX_STREAM_PAYLOAD) {
		ctx_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "size out of range");
		return;
	}
	c->remaining = req->count;
	c->size = req->size;
	c->delay = req->delay_ms;
	c->message = strdup(req->message ? req->message : "");
	if (c->delay > 0)
		ctx_timer_start(c, stream_tick, (uint64_t)c->delay, (uint64_t)c->delay);
	else
		stream_pump(c);
}

static void stream_on_writable(grpc_call_t *call)
{
	struct ctx *c = grpc_call_get_data(call);
	if (!c->ended && c->delay == 0)
		stream_pump(c);
}

/* ---- Unary, Fail, Slow, GetStats ---- */

static void unary_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	struct ctx *c = grpc_call_get_data(call);
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	Hutch__Test__EchoReply r = HUTCH__TEST__ECHO_REPLY__INIT;
	r.message = req->message;
	r.payload = req->payload;
	if (grpc_call_send(call, &r.base) < 0)
		return;
	ctx_finish(c, GRPC_STATUS_OK, NULL);
}

static void fail_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	ctx_finish(grpc_call_get_data(call), (grpc_status_t)req->status, req->message);
}

static void slow_fire(uv_timer_t *t)
{
	struct ctx *c = t->data;
	if (c->ended)
		return;
	Hutch__Test__EchoReply r = HUTCH__TEST__ECHO_REPLY__INIT;
	r.message = c->message;
	grpc_call_send(c->call, &r.base);
	ctx_finish(c, GRPC_STATUS_OK, NULL);
}

static void slow_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	struct ctx *c = grpc_call_get_data(call);
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	c->message = strdup(req->message ? req->message : "");
	ctx_timer_start(c, slow_fire, req->delay_ms > 0 ? (uint64_t)req->delay_ms : 0, 0);
}

static uint64_t rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%lu %lu", &size, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void stats_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	Hutch__Test__Stats s = HUTCH__TEST__STATS__INIT;
	s.max_pending = stats.max_pending;
	s.flood_queued_bytes = stats.flood_queued_bytes;
	s.cancelled = stats.cancelled;
	s.deadline_cancelled = stats.deadline_cancelled;
	s.live_calls = stats.live_calls - 1; /* not this one */
	s.rss_bytes = rss_bytes();
	grpc_call_send(call, &s.base);
	ctx_finish(grpc_call_get_data(call), GRPC_STATUS_OK, NULL);
}

/* ---- ClientStream, PausedSink ---- */

static void sum_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	struct ctx *c = grpc_call_get_data(call);
	const Hutch__Test__Num *n = (const Hutch__Test__Num *)m;
	if (c->paused)
		c->delivered_while_paused++;
	c->total += n->value;
	c->count++;
	c->bytes += n->pad.len;
}

static void sum_on_half_close(grpc_call_t *call)
{
	struct ctx *c = grpc_call_get_data(call);
	Hutch__Test__Sum s = HUTCH__TEST__SUM__INIT;
	s.total = c->total;
	s.count = c->count;
	s.delivered_while_paused = c->delivered_while_paused;
	s.bytes = c->bytes;
	if (grpc_call_send(call, &s.base) < 0)
		return;
	ctx_finish(c, GRPC_STATUS_OK, NULL);
}

static void sink_resume(uv_timer_t *t)
{
	struct ctx *c = t->data;
	c->paused = false;
	grpc_call_pause_recv(c->call, false);
}

static void sink_on_start(grpc_call_t *call)
{
	on_start(call);
	struct ctx *c = grpc_call_get_data(call);
	const char *v = grpc_call_metadata(call, "x-pause-ms");
	long ms = v ? strtol(v, NULL, 10) : 0;
	if (!c || ms <= 0)
		return;
	c->paused = true;
	grpc_call_pause_recv(call, true);
	ctx_timer_start(c, sink_resume, (uint64_t)ms, 0);
}

/* ---- Bidi ---- */

static void bidi_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	struct ctx *c = grpc_call_get_data(call);
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	Hutch__Test__EchoReply r = HUTCH__TEST__ECHO_REPLY__INIT;
	r.message = req->message;
	r.payload = req->payload;
	r.index = c->index++;
	/* An echo must not outrun its reader: stop taking input while the
	 * replies are backed up. */
	if (grpc_call_send(call, &r.base) == 1)
		grpc_call_pause_recv(call, true);
}

static void bidi_on_writable(grpc_call_t *call)
{
	grpc_call_pause_recv(call, false);
}

static void bidi_on_half_close(grpc_call_t *call)
{
	ctx_finish(grpc_call_get_data(call), GRPC_STATUS_OK, NULL);
}

/* ---- setup ---- */

#define REQ(T) (&hutch__test__##T##__descriptor)
#define SVC "/hutch.test.Echo/"

static const struct {
	grpc_method_t m;
	enum kind kind;
} methods[] = {
	{ { SVC "Unary", REQ(echo_request), false, false, on_start, unary_on_message, NULL, NULL,
	    on_cancel },
	  K_UNARY },
	{ { SVC "ServerStream", REQ(echo_request), false, true, on_start, stream_on_message, NULL,
	    stream_on_writable, on_cancel },
	  K_SSTREAM },
	{ { SVC "ClientStream", REQ(num), true, false, on_start, sum_on_message, sum_on_half_close,
	    NULL, on_cancel },
	  K_CSTREAM },
	{ { SVC "Bidi", REQ(echo_request), true, true, on_start, bidi_on_message, bidi_on_half_close,
	    bidi_on_writable, on_cancel },
	  K_BIDI },
	{ { SVC "Slow", REQ(echo_request), false, false, on_start, slow_on_message, NULL, NULL,
	    on_cancel },
	  K_SLOW },
	{ { SVC "Fail", REQ(echo_request), false, false, on_start, fail_on_message, NULL, NULL,
	    on_cancel },
	  K_FAIL },
	{ { SVC "Flood", REQ(echo_request), false, true, on_start, stream_on_message, NULL,
	    stream_on_writable, on_cancel },
	  K_FLOOD },
	{ { SVC "PausedSink", REQ(num), true, false, sink_on_start, sum_on_message,
	    sum_on_half_close, NULL, on_cancel },
	  K_SINK },
	{ { SVC "GetStats", REQ(stats_request), false, false, on_start, stats_on_message, NULL, NULL,
	    on_cancel },
	  K_STATS },
};

static grpc_status_t authorize(void *data, grpc_call_t *call, char *msg, size_t cap)
{
	if (!api_key)
		return GRPC_STATUS_OK;
	const char *auth = grpc_call_metadata(call, "authorization");
	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || strcmp(auth + 7, api_key) != 0) {
		snprintf(msg, cap, "missing or wrong API key");
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	return GRPC_STATUS_OK;
}

static void log_line(void *data, int level, const char *msg)
{
	if (verbose || level <= LOG_WARNING)
		fprintf(stderr, "grpc[%d]: %s\n", level, msg);
}

static grpc_server_t *server;
static uv_signal_t sigterm, sigint;

static void shutdown_done(void *data)
{
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_close((uv_handle_t *)&sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	if (!server)
		return;
	uv_signal_stop(&sigterm);
	uv_signal_stop(&sigint);
	grpc_server_shutdown(server, shutdown_done, NULL);
	server = NULL;
}

int main(int argc, char **argv)
{
	const char *unix_path = NULL, *cert = NULL, *key = NULL;
	int tcp_port = -1;
	size_t max_recv = 0;
	unsigned handshake_ms = 0;
	static const struct option longopts[] = {
		{ "unix", required_argument, NULL, 'u' },
		{ "tcp", required_argument, NULL, 't' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "api-key", required_argument, NULL, 'a' },
		{ "max-recv", required_argument, NULL, 'm' },
		{ "handshake-ms", required_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ 0 },
	};
	int opt;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'u':
			unix_path = optarg;
			break;
		case 't':
			tcp_port = atoi(optarg);
			break;
		case 'c':
			cert = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'a':
			api_key = optarg;
			break;
		case 'm':
			max_recv = strtoul(optarg, NULL, 10);
			break;
		case 'h':
			handshake_ms = (unsigned)strtoul(optarg, NULL, 10);
			break;
		case 'v':
			verbose = true;
			break;
		default:
			fprintf(stderr, "usage: %s [--unix PATH] [--tcp PORT [--cert PEM --key PEM]] "
					"[--api-key KEY] [--max-recv BYTES] [--handshake-ms MS] "
					"[--verbose]\n",
				argv[0]);
			return 2;
		}
	}
	if (!unix_path && tcp_port < 0) {
		fprintf(stderr, "%s: need --unix and/or --tcp\n", argv[0]);
		return 2;
	}
	filler = malloc(MAX_STREAM_PAYLOAD);
	if (!filler)
		return 1;
	memset(filler, 'x', MAX_STREAM_PAYLOAD);

	loop = uv_default_loop();
	hutch_err_t err = { 0 };
	grpc_server_opts_t opts = {
		.max_recv_message = max_recv,
		.handshake_timeout_ms = handshake_ms,
		.authorize = authorize,
		.log = log_line,
	};
	if (grpc_server_new(loop, &opts, &server, &err) < 0)
		goto fail;
	grpc_method_t table[sizeof methods / sizeof methods[0]];
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
		table[i] = methods[i].m;
		if (grpc_server_add_methods(server, &table[i], 1, (void *)(intptr_t)methods[i].kind,
					    &err) < 0)
			goto fail;
	}
	if (unix_path && grpc_server_listen_unix(server, unix_path, 0600, &err) < 0)
		goto fail;
	if (tcp_port >= 0 && grpc_server_listen_tcp(server, "127.0.0.1", tcp_port, cert, key, &err) < 0)
		goto fail;

	uv_signal_init(loop, &sigterm);
	uv_signal_init(loop, &sigint);
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);

	printf("grpc-echo-server: unix=%s tcp=%d\n", unix_path ? unix_path : "",
	       tcp_port >= 0 ? grpc_server_bound_port(server) : -1);
	fflush(stdout);

	uv_run(loop, UV_RUN_DEFAULT);
	free(filler);
	/* Every handle must be closed by now: a leak here is a bug. */
	if (uv_loop_close(loop) != 0) {
		fprintf(stderr, "grpc-echo-server: handles left open at exit\n");
		return 1;
	}
	return 0;
fail:
	fprintf(stderr, "grpc-echo-server: %s\n", err.message);
	return 1;
}
