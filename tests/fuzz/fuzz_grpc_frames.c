/*
 * fuzz_grpc_frames: arbitrary bytes into a server-side gRPC connection
 * (grpc_conn_t), with no socket: HTTP/2 framing, HPACK, header checks,
 * gRPC message reassembly, protobuf decoding, deadlines, flow control and
 * the call lifecycle all see hostile input.
 *
 * Input: byte 0 selects the mode, the rest is what the "client" sends.
 *   bit 0     prepend the client connection preface (so most inputs get
 *             past the magic check and reach the frame parser)
 *   bit 1     end with grpc_conn_terminate (what server shutdown does)
 *             before freeing the connection
 *   bits 2-7  0: feed everything at once; n: feed n-byte chunks, pulling
 *             output and running deferred work between chunks (a slow
 *             reader: output is only pulled every other chunk)
 * The methods answer from their callbacks, use a tiny send watermark so
 * that grpc_call_send reports backpressure, and pause/resume receiving.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "echo.pb-c.h"
#include "grpc_conn.h"
#include "grpc_server.h"

static uv_loop_t loop;
static grpc_server_t *server;

static void reply(grpc_call_t *call, const char *text, int index)
{
	Hutch__Test__EchoReply r = HUTCH__TEST__ECHO_REPLY__INIT;
	r.message = (char *)text;
	r.index = index;
	grpc_call_send(call, &r.base);
}

static void unary_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	if (req->status > 0 && req->status <= GRPC_STATUS_MAX) {
		grpc_call_finish(call, (grpc_status_t)req->status, req->message);
		return;
	}
	reply(call, req->message, 0);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void sstream_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	int n = req->count < 0 ? 0 : req->count > 8 ? 8 : req->count;
	for (int i = 0; i < n; i++)
		reply(call, req->message, i);
	grpc_call_finish(call, GRPC_STATUS_OK, "done ✓ 100%");
}

static void sum_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	/* Pause after every message; on_half_close never comes while paused,
	 * and the connection teardown must clean up what is held. */
	if (((const Hutch__Test__Num *)m)->value == 7)
		grpc_call_pause_recv(call, true);
}

static void sum_on_half_close(grpc_call_t *call)
{
	Hutch__Test__Sum s = HUTCH__TEST__SUM__INIT;
	grpc_call_send(call, &s.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void bidi_on_message(grpc_call_t *call, const ProtobufCMessage *m)
{
	const Hutch__Test__EchoRequest *req = (const Hutch__Test__EchoRequest *)m;
	Hutch__Test__EchoReply r = HUTCH__TEST__ECHO_REPLY__INIT;
	r.message = req->message;
	r.payload = req->payload;
	if (grpc_call_send(call, &r.base) == 1)
		grpc_call_pause_recv(call, true);
	if (req->status == 99)
		grpc_call_finish(call, GRPC_STATUS_ABORTED, "bidi abort");
}

static void bidi_on_writable(grpc_call_t *call)
{
	grpc_call_pause_recv(call, false);
}

static void bidi_on_half_close(grpc_call_t *call)
{
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void on_cancel(grpc_call_t *call)
{
	/* Everything must stay readable, and be safe to call, on a dead call. */
	if (grpc_call_alive(call) || grpc_call_cancel_status(call) == GRPC_STATUS_OK ||
	    !grpc_call_path(call)[0] || !grpc_call_peer(call) || grpc_call_pending(call) != 0)
		__builtin_trap();
	grpc_call_pause_recv(call, false);
	reply(call, "late", 0);
	grpc_call_finish(call, GRPC_STATUS_INTERNAL, "late");
}

static grpc_status_t authorize(void *data, grpc_call_t *call, char *msg, size_t cap)
{
	grpc_call_set_auth(call, (void *)grpc_call_path(call));
	const char *auth = grpc_call_metadata(call, "authorization");
	if (auth && strcmp(auth, "deny") == 0) {
		snprintf(msg, cap, "denied");
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	return GRPC_STATUS_OK;
}

#define REQ(T) (&hutch__test__##T##__descriptor)
static const grpc_method_t methods[] = {
	{ "/hutch.test.Echo/Unary", REQ(echo_request), false, false, NULL, unary_on_message, NULL,
	  NULL, on_cancel },
	{ "/hutch.test.Echo/ServerStream", REQ(echo_request), false, true, NULL, sstream_on_message,
	  NULL, NULL, on_cancel },
	{ "/hutch.test.Echo/ClientStream", REQ(num), true, false, NULL, sum_on_message,
	  sum_on_half_close, NULL, on_cancel },
	{ "/hutch.test.Echo/Bidi", REQ(echo_request), true, true, NULL, bidi_on_message,
	  bidi_on_half_close, bidi_on_writable, on_cancel },
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	hutch_err_t err = { 0 };
	uv_loop_init(&loop);
	grpc_server_opts_t opts = {
		/* Small limits, so that inputs can reach them. */
		.max_recv_message = 1024,
		.max_metadata = 1024,
		.max_concurrent_streams = 16,
		.stream_window = 4096,
		.send_high_watermark = 64,
		.authorize = authorize,
	};
	if (grpc_server_new(&loop, &opts, &server, &err) < 0 ||
	    grpc_server_add_methods(server, methods, sizeof methods / sizeof methods[0], NULL,
				    &err) < 0) {
		fprintf(stderr, "fuzz_grpc_frames: %s\n", err.message);
		return 1;
	}
	return 0;
}

static void wake(void *data)
{
}

static size_t drain(grpc_conn_t *conn)
{
	const uint8_t *p;
	ssize_t n;
	size_t total = 0;
	while ((n = grpc_conn_pull(conn, &p)) > 0)
		total += (size_t)n;
	return total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;

	grpc_peer_t peer = { .kind = GRPC_PEER_MEMORY, .address = "fuzz" };
	grpc_conn_io_t io = { .wake = wake };
	grpc_conn_t *conn;
	if (grpc_conn_new(server, &peer, &io, &conn, NULL) < 0)
		return 0;
	drain(conn);
	if (mode & 1)
		grpc_conn_feed(conn, magic, sizeof magic - 1);

	size_t chunk = mode >> 2 ? mode >> 2 : size;
	unsigned round = 0;
	while (size > 0) {
		size_t n = size < chunk ? size : chunk;
		if (grpc_conn_feed(conn, data, n) < 0)
			break;
		data += n;
		size -= n;
		if (round++ % 2 == 0)
			drain(conn);
		grpc_conn_process(conn);
		/* Deadlines of 0 ms fire here. */
		uv_run(&loop, UV_RUN_NOWAIT);
	}
	drain(conn);
	grpc_conn_process(conn);
	drain(conn);
	grpc_conn_finished(conn);
	if (mode & 2) {
		grpc_conn_terminate(conn, 0, GRPC_STATUS_UNAVAILABLE);
		drain(conn);
	}
	grpc_conn_free(conn);
	/* Close callbacks of deadline timers free the last calls. */
	uv_run(&loop, UV_RUN_NOWAIT);
	return 0;
}
