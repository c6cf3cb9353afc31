/*
 * grpc_c_client: hutch's C client (sdk/c/grpc_client.h) against
 * grpc-echo-server: every call shape, status codes and messages, both kinds
 * of deadline, receive timeouts, TLS verification, the plaintext policy.
 *
 * usage: test_c_client SERVER_BIN
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "grpc_client.h"
#include "test_util.h"

#define SVC "/hutch.test.Echo/"
#define API_KEY "c-client-key"

static hc_channel_t *open_channel(const char *target, const hc_channel_opts_t *opts)
{
	hutch_err_t err = { 0 };
	hc_channel_t *ch = NULL;
	int r = hc_channel_open(target, opts, &ch, &err);
	CHECK(r == 0, "open %s: %s", target, err.message);
	return r == 0 ? ch : NULL;
}

static void test_unary(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	uint8_t bytes[] = { 0, 1, 2, 0xff };
	req.message = "hello from C";
	req.payload.data = bytes;
	req.payload.len = sizeof bytes;
	ProtobufCMessage *resp = NULL;
	int status = -1;
	int r = hc_unary(ch, SVC "Unary", &req.base, &hutch__test__echo_reply__descriptor, &resp,
			 5000, NULL, 0, &status, &err);
	CHECK(r == 0 && status == HC_STATUS_OK, "unary: %d %s", r, err.message);
	if (r == 0) {
		Hutch__Test__EchoReply *rep = (Hutch__Test__EchoReply *)resp;
		CHECK(strcmp(rep->message, "hello from C") == 0, "unary message %s", rep->message);
		CHECK(rep->payload.len == sizeof bytes &&
			      memcmp(rep->payload.data, bytes, sizeof bytes) == 0,
		      "unary payload");
		protobuf_c_message_free_unpacked(resp, NULL);
	}
}

static void test_big(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	size_t n = 10u << 20;
	uint8_t *big = malloc(n);
	for (size_t i = 0; i < n; i++)
		big[i] = (uint8_t)(i * 7 + (i >> 13));
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	req.payload.data = big;
	req.payload.len = n;
	ProtobufCMessage *resp = NULL;
	int r = hc_unary(ch, SVC "Unary", &req.base, &hutch__test__echo_reply__descriptor, &resp,
			 30000, NULL, 0, NULL, &err);
	CHECK(r == 0, "10 MiB unary: %s", err.message);
	if (r == 0) {
		Hutch__Test__EchoReply *rep = (Hutch__Test__EchoReply *)resp;
		CHECK(rep->payload.len == n && memcmp(rep->payload.data, big, n) == 0,
		      "10 MiB echo differs");
		protobuf_c_message_free_unpacked(resp, NULL);
	}
	free(big);
}

static void test_server_stream(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	hc_call_t *call;
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	req.message = "s";
	req.count = 100;
	req.size = 100;
	CHECK(hc_call_start(ch, SVC "ServerStream", 10000, NULL, 0, &call, &err) == 0, "%s",
	      err.message);
	CHECK(hc_call_send(call, &req.base, &err) == 0, "%s", err.message);
	CHECK(hc_call_close_send(call, &err) == 0, "%s", err.message);
	int i = 0, r;
	ProtobufCMessage *m;
	while ((r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, -1, &err)) == 1) {
		Hutch__Test__EchoReply *rep = (Hutch__Test__EchoReply *)m;
		CHECK(rep->index == i && rep->payload.len == 100, "reply %d: index %d len %zu", i,
		      rep->index, rep->payload.len);
		protobuf_c_message_free_unpacked(m, NULL);
		i++;
	}
	CHECK(r == 0 && i == 100, "server stream: r=%d after %d replies: %s", r, i, err.message);
	CHECK(hc_call_status(call) == HC_STATUS_OK, "status %d", hc_call_status(call));
	hc_call_free(call);
}

static void test_client_stream(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	hc_call_t *call;
	CHECK(hc_call_start(ch, SVC "ClientStream", 10000, NULL, 0, &call, &err) == 0, "%s",
	      err.message);
	for (int v = 1; v <= 1000; v++) {
		Hutch__Test__Num n = HUTCH__TEST__NUM__INIT;
		n.value = v;
		CHECK(hc_call_send(call, &n.base, &err) == 0, "send %d: %s", v, err.message);
	}
	CHECK(hc_call_close_send(call, &err) == 0, "%s", err.message);
	ProtobufCMessage *m;
	int r = hc_call_recv(call, &hutch__test__sum__descriptor, &m, -1, &err);
	CHECK(r == 1, "client stream: %d %s", r, err.message);
	if (r == 1) {
		Hutch__Test__Sum *s = (Hutch__Test__Sum *)m;
		CHECK(s->total == 500500 && s->count == 1000, "sum %ld count %d", (long)s->total,
		      s->count);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	CHECK(hc_call_recv(call, &hutch__test__sum__descriptor, &m, -1, &err) == 0, "end: %s",
	      err.message);
	hc_call_free(call);
}

static void test_bidi(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	hc_call_t *call;
	CHECK(hc_call_start(ch, SVC "Bidi", 10000, NULL, 0, &call, &err) == 0, "%s", err.message);
	for (int i = 0; i < 50; i++) {
		char text[32];
		snprintf(text, sizeof text, "ping %d", i);
		Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
		req.message = text;
		CHECK(hc_call_send(call, &req.base, &err) == 0, "%s", err.message);
		/* The reply must come before we half-close. */
		ProtobufCMessage *m;
		int r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 5000, &err);
		CHECK(r == 1, "bidi reply %d: %d %s", i, r, err.message);
		if (r == 1) {
			Hutch__Test__EchoReply *rep = (Hutch__Test__EchoReply *)m;
			CHECK(strcmp(rep->message, text) == 0 && rep->index == i, "bidi %d: %s/%d",
			      i, rep->message, rep->index);
			protobuf_c_message_free_unpacked(m, NULL);
		}
	}
	CHECK(hc_call_close_send(call, &err) == 0, "%s", err.message);
	ProtobufCMessage *m;
	CHECK(hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 5000, &err) == 0,
	      "bidi end: %s", err.message);
	hc_call_free(call);
}

static void test_errors(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	ProtobufCMessage *resp;
	int status;
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	req.status = HC_STATUS_NOT_FOUND;
	req.message = "sandbox \"sb-1\" nicht gefunden: 100% ✗\n";
	int r = hc_unary(ch, SVC "Fail", &req.base, &hutch__test__echo_reply__descriptor, &resp,
			 5000, NULL, 0, &status, &err);
	CHECK(r == -ENOENT && status == HC_STATUS_NOT_FOUND, "Fail: r=%d status=%d", r, status);
	CHECK(strstr(err.message, "NOT_FOUND: sandbox \"sb-1\" nicht gefunden: 100% ✗") != NULL,
	      "error message: %s", err.message);

	/* Same through the call API: status and message are kept. */
	hc_call_t *call;
	req.status = HC_STATUS_FAILED_PRECONDITION;
	req.message = "not yet";
	CHECK(hc_call_start(ch, SVC "Fail", 5000, NULL, 0, &call, &err) == 0, "%s", err.message);
	hc_call_send(call, &req.base, &err);
	hc_call_close_send(call, &err);
	r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &resp, -1, &err);
	CHECK(r == -EBUSY && hc_call_status(call) == HC_STATUS_FAILED_PRECONDITION &&
		      strcmp(hc_call_status_message(call), "not yet") == 0,
	      "call status %d %s", hc_call_status(call), hc_call_status_message(call));
	hc_call_free(call);

	Hutch__Test__EchoRequest empty = HUTCH__TEST__ECHO_REQUEST__INIT;
	r = hc_unary(ch, SVC "Nope", &empty.base, &hutch__test__echo_reply__descriptor, &resp,
		     5000, NULL, 0, &status, &err);
	CHECK(r == -ENOSYS && status == HC_STATUS_UNIMPLEMENTED, "unknown method: %d %d", r,
	      status);
}

static void test_deadlines(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	ProtobufCMessage *resp;
	int status;
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	req.delay_ms = 3000;

	/* Client-side deadline. */
	uint64_t t0 = test_now_ms();
	int r = hc_unary(ch, SVC "Slow", &req.base, &hutch__test__echo_reply__descriptor, &resp,
			 200, NULL, 0, &status, &err);
	uint64_t took = test_now_ms() - t0;
	CHECK(r == -ETIMEDOUT && status == HC_STATUS_DEADLINE_EXCEEDED, "deadline: %d %d %s", r,
	      status, err.message);
	CHECK(took >= 190 && took < 1500, "deadline took %lu ms", (unsigned long)took);

	/* Server-side deadline: only the grpc-timeout header, no local one.
	 * The status must then come from the server. */
	hc_metadata_t md[] = { { "grpc-timeout", "300m" } };
	t0 = test_now_ms();
	r = hc_unary(ch, SVC "Slow", &req.base, &hutch__test__echo_reply__descriptor, &resp, 0, md,
		     1, &status, &err);
	took = test_now_ms() - t0;
	CHECK(r == -ETIMEDOUT && status == HC_STATUS_DEADLINE_EXCEEDED, "server deadline: %d %d %s",
	      r, status, err.message);
	CHECK(took >= 250 && took < 2000, "server deadline took %lu ms", (unsigned long)took);

	/* A receive timeout is not the end of the call. */
	hc_call_t *call;
	Hutch__Test__EchoRequest sreq = HUTCH__TEST__ECHO_REQUEST__INIT;
	sreq.count = -1;
	sreq.delay_ms = 400;
	CHECK(hc_call_start(ch, SVC "ServerStream", 0, NULL, 0, &call, &err) == 0, "%s",
	      err.message);
	hc_call_send(call, &sreq.base, &err);
	hc_call_close_send(call, &err);
	ProtobufCMessage *m;
	r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 50, &err);
	CHECK(r == -EAGAIN && hc_call_status(call) == -1, "recv timeout: %d", r);
	r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 0, &err);
	CHECK(r == -EAGAIN, "recv no-wait: %d", r);
	r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 2000, &err);
	CHECK(r == 1, "recv after timeout: %d %s", r, err.message);
	if (r == 1)
		protobuf_c_message_free_unpacked(m, NULL);
	hc_call_cancel(call);
	CHECK(hc_call_status(call) == HC_STATUS_CANCELLED, "cancel status %d", hc_call_status(call));
	r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 100, &err);
	CHECK(r == -ECANCELED, "recv after cancel: %d", r);
	hc_call_free(call);
}

static void test_concurrent(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	enum { N = 20 };
	hc_call_t *calls[N];
	uint64_t t0 = test_now_ms();
	for (int i = 0; i < N; i++) {
		char text[16];
		snprintf(text, sizeof text, "c%d", i);
		Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
		req.message = text;
		req.delay_ms = 300;
		CHECK(hc_call_start(ch, SVC "Slow", 5000, NULL, 0, &calls[i], &err) == 0, "%s",
		      err.message);
		hc_call_send(calls[i], &req.base, &err);
		hc_call_close_send(calls[i], &err);
	}
	for (int i = N - 1; i >= 0; i--) {
		ProtobufCMessage *m;
		int r = hc_call_recv(calls[i], &hutch__test__echo_reply__descriptor, &m, -1, &err);
		CHECK(r == 1, "concurrent %d: %s", i, err.message);
		if (r == 1) {
			char text[16];
			snprintf(text, sizeof text, "c%d", i);
			CHECK(strcmp(((Hutch__Test__EchoReply *)m)->message, text) == 0,
			      "concurrent reply %d", i);
			protobuf_c_message_free_unpacked(m, NULL);
		}
		hc_call_free(calls[i]);
	}
	uint64_t took = test_now_ms() - t0;
	CHECK(took < 2000, "%d concurrent 300 ms calls took %lu ms", N, (unsigned long)took);
}

static uint64_t live_calls(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	Hutch__Test__StatsRequest req = HUTCH__TEST__STATS_REQUEST__INIT;
	ProtobufCMessage *m;
	if (hc_unary(ch, SVC "GetStats", &req.base, &hutch__test__stats__descriptor, &m, 5000, NULL,
		     0, NULL, &err) < 0) {
		CHECK(0, "stats: %s", err.message);
		return 999;
	}
	uint64_t n = ((Hutch__Test__Stats *)m)->live_calls;
	protobuf_c_message_free_unpacked(m, NULL);
	return n;
}

static void test_auth(const char *target)
{
	hutch_err_t err = { 0 };
	hc_channel_t *ch = open_channel(target, NULL);
	if (!ch)
		return;
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	ProtobufCMessage *resp;
	int status;
	int r = hc_unary(ch, SVC "Unary", &req.base, &hutch__test__echo_reply__descriptor, &resp,
			 5000, NULL, 0, &status, &err);
	CHECK(r == -EKEYREJECTED && status == HC_STATUS_UNAUTHENTICATED, "no key: %d %d", r,
	      status);
	hc_channel_close(ch);
}

static void test_tls(struct test_server *s)
{
	hutch_err_t err = { 0 };
	char target[64];
	snprintf(target, sizeof target, "127.0.0.1:%d", s->port);
	hc_channel_opts_t opts = { .ca_file = s->cert, .api_key = API_KEY };
	hc_channel_t *ch = open_channel(target, &opts);
	if (ch) {
		test_unary(ch);
		test_bidi(ch);
		hc_channel_close(ch);
	}
	snprintf(target, sizeof target, "localhost:%d", s->port);
	ch = open_channel(target, &opts);
	if (ch) {
		test_server_stream(ch);
		hc_channel_close(ch);
	}

	/* Not trusted: the system store does not know the self-signed cert. */
	hc_channel_opts_t untrusted = { .tls = true, .api_key = API_KEY };
	ch = NULL;
	int r = hc_channel_open(target, &untrusted, &ch, &err);
	CHECK(r == -EPROTO && strstr(err.message, "certificate"), "untrusted cert: %d %s", r,
	      err.message);
	hc_channel_close(ch);

	/* Right CA, wrong name. */
	hc_channel_opts_t wrong_name = { .ca_file = s->cert, .server_name = "hutch.example" };
	ch = NULL;
	r = hc_channel_open(target, &wrong_name, &ch, &err);
	CHECK(r == -EPROTO, "wrong server name accepted: %d %s", r, err.message);
	hc_channel_close(ch);
}

static void test_plaintext_policy(void)
{
	hutch_err_t err = { 0 };
	hc_channel_t *ch = NULL;
	/* Refused before any packet is sent (192.0.2.0/24 is TEST-NET-1). */
	int r = hc_channel_open("192.0.2.1:443", NULL, &ch, &err);
	CHECK(r == -EPERM, "plaintext to non-loopback: %d %s", r, err.message);
	r = hc_channel_open("no-port", NULL, &ch, &err);
	CHECK(r == -EINVAL, "bad target: %d", r);
	r = hc_channel_open("unix:/nonexistent/hutch.sock", NULL, &ch, &err);
	CHECK(r == -ENOENT, "missing socket: %d %s", r, err.message);
}

static void test_many_connections(const char *target)
{
	enum { N = 100 };
	hc_channel_t *chs[N] = { 0 };
	hutch_err_t err = { 0 };
	hc_channel_opts_t opts = { .api_key = API_KEY };
	int ok = 0;
	for (int i = 0; i < N; i++)
		if (hc_channel_open(target, &opts, &chs[i], &err) < 0)
			CHECK(0, "connection %d: %s", i, err.message);
	/* All open at once; each is served. */
	for (int i = 0; i < N; i++) {
		if (!chs[i])
			continue;
		Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
		req.message = "many";
		ProtobufCMessage *m;
		if (hc_unary(chs[i], SVC "Unary", &req.base, &hutch__test__echo_reply__descriptor, &m,
			     5000, NULL, 0, NULL, &err) == 0) {
			protobuf_c_message_free_unpacked(m, NULL);
			ok++;
		}
	}
	CHECK(ok == N, "%d of %d connections served", ok, N);
	for (int i = 0; i < N; i++)
		hc_channel_close(chs[i]);
}

static bool serves(const char *target)
{
	hutch_err_t err = { 0 };
	hc_channel_opts_t opts = { .api_key = API_KEY };
	hc_channel_t *ch = NULL;
	if (hc_channel_open(target, &opts, &ch, &err) < 0)
		return false;
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	ProtobufCMessage *m;
	int r = hc_unary(ch, SVC "Unary", &req.base, &hutch__test__echo_reply__descriptor, &m, 5000,
			 NULL, 0, NULL, &err);
	if (r == 0)
		protobuf_c_message_free_unpacked(m, NULL);
	hc_channel_close(ch);
	return r == 0;
}

/* A second server must not steal a live socket; a crashed server's stale
 * socket must not keep a new one from starting. */
static void test_socket_path(struct test_server *live, const char *bin)
{
	const char *args[] = { "--unix", live->sock, NULL };
	int rc = test_run_expect_exit(bin, args, 5000);
	CHECK(rc == 1, "second server on a live socket: exit %d", rc);
	CHECK(serves(live->target), "first server lost its socket");

	struct test_server t;
	if (test_server_start(&t, bin, NULL) < 0) {
		CHECK(0, "start");
		return;
	}
	test_server_kill(&t);
	CHECK(access(t.sock, F_OK) == 0, "killed server removed its socket?");
	CHECK(test_server_restart(&t, bin, NULL) == 0, "restart over a stale socket");
	CHECK(serves(t.target), "restarted server does not serve");
	CHECK(test_server_stop(&t) == 0, "restarted server exit");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SERVER_BIN\n", argv[0]);
		return 2;
	}
	struct test_server s;
	const char *args[] = { "--tcp", "0", "--cert", "@CERT@", "--key", "@KEY@", "--api-key",
			       API_KEY, NULL };
	if (test_server_start(&s, argv[1], args) < 0)
		return 1;

	hc_channel_opts_t opts = { .api_key = API_KEY };
	hc_channel_t *ch = open_channel(s.target, &opts);
	if (ch) {
		test_unary(ch);
		test_server_stream(ch);
		test_client_stream(ch);
		test_bidi(ch);
		test_errors(ch);
		test_deadlines(ch);
		test_concurrent(ch);
		test_big(ch);
		/* Everything above ended on the server too. */
		uint64_t until = test_now_ms() + 3000, live;
		while ((live = live_calls(ch)) != 0 && test_now_ms() < until)
			test_sleep_ms(50);
		CHECK(live == 0, "%lu calls still live on the server", (unsigned long)live);
		hc_channel_close(ch);
	}
	test_auth(s.target);
	test_tls(&s);
	test_plaintext_policy();
	test_many_connections(s.target);
	test_socket_path(&s, argv[1]);

	/* Shut the server down under a live stream: it must exit cleanly and
	 * the client must see UNAVAILABLE, not hang. */
	hutch_err_t err = { 0 };
	hc_call_t *call = NULL;
	ch = open_channel(s.target, &opts);
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	req.count = -1;
	req.delay_ms = 20;
	ProtobufCMessage *m;
	if (ch && hc_call_start(ch, SVC "ServerStream", 0, NULL, 0, &call, &err) == 0) {
		hc_call_send(call, &req.base, &err);
		hc_call_close_send(call, &err);
		int r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 5000, &err);
		CHECK(r == 1, "stream before shutdown: %d %s", r, err.message);
		if (r == 1)
			protobuf_c_message_free_unpacked(m, NULL);
	}
	int rc = test_server_stop(&s);
	CHECK(rc == 0, "server exit status %d", rc);
	if (call) {
		int r;
		while ((r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 5000, &err)) == 1)
			protobuf_c_message_free_unpacked(m, NULL);
		CHECK(r < 0 && hc_call_status(call) == HC_STATUS_UNAVAILABLE,
		      "live call at shutdown: %d status %d (%s)", r, hc_call_status(call), err.message);
		hc_call_free(call);
	}
	hc_channel_close(ch);
	if (test_failures) {
		fprintf(stderr, "%d checks failed\n", test_failures);
		return 1;
	}
	printf("grpc_c_client: all passed\n");
	return 0;
}
