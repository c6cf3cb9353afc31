/*
 * grpc_backpressure: flow control as a user notices it.
 *
 *  1. A client that stops reading a server stream (does not even pump the
 *     socket) must not make the server buffer without bound: the Flood
 *     method, which would produce 1.6 GB, must stall with its queue at the
 *     watermark and the server's memory flat, and continue when the client
 *     reads again.
 *  2. The same with a client that keeps the connection busy (other calls
 *     on it succeed meanwhile) but does not take this call's messages:
 *     HTTP/2 flow control alone must stop the server.
 *  3. A method that pauses receiving (grpc_call_pause_recv) must stall a
 *     client streaming into it, deliver nothing while paused, and lose
 *     nothing when it resumes.
 *
 * usage: test_backpressure SERVER_BIN
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "echo.pb-c.h"
#include "grpc_client.h"
#include "test_util.h"

#define SVC "/hutch.test.Echo/"
#define FLOOD_COUNT 100000
#define FLOOD_SIZE 16384
/* The server's default send watermark; Flood stops queueing at it. */
#define SERVER_HIGH_WATERMARK (256u << 10)

static Hutch__Test__Stats *get_stats(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	Hutch__Test__StatsRequest req = HUTCH__TEST__STATS_REQUEST__INIT;
	ProtobufCMessage *m = NULL;
	int r = hc_unary(ch, SVC "GetStats", &req.base, &hutch__test__stats__descriptor, &m, 5000,
			 NULL, 0, NULL, &err);
	CHECK(r == 0, "GetStats: %s", err.message);
	return (Hutch__Test__Stats *)m;
}

static hc_call_t *start_flood(hc_channel_t *ch)
{
	hutch_err_t err = { 0 };
	hc_call_t *call = NULL;
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	req.count = FLOOD_COUNT;
	req.size = FLOOD_SIZE;
	if (hc_call_start(ch, SVC "Flood", 0, NULL, 0, &call, &err) < 0 ||
	    hc_call_send(call, &req.base, &err) < 0 || hc_call_close_send(call, &err) < 0) {
		CHECK(0, "start Flood: %s", err.message);
		hc_call_free(call);
		return NULL;
	}
	return call;
}

/* Receives n messages and checks they continue at *next. */
static void recv_flood(hc_call_t *call, int n, int *next)
{
	hutch_err_t err = { 0 };
	for (int i = 0; i < n; i++) {
		ProtobufCMessage *m;
		int r = hc_call_recv(call, &hutch__test__echo_reply__descriptor, &m, 10000, &err);
		if (r != 1) {
			CHECK(0, "flood message %d: %d %s", *next, r, err.message);
			return;
		}
		Hutch__Test__EchoReply *rep = (Hutch__Test__EchoReply *)m;
		CHECK(rep->index == *next && rep->payload.len == FLOOD_SIZE,
		      "flood: got index %d (%zu bytes), want %d", rep->index, rep->payload.len,
		      *next);
		/* The server records its queue size in every reply. */
		CHECK(rep->pending <= SERVER_HIGH_WATERMARK + FLOOD_SIZE,
		      "server queue was %lu bytes", (unsigned long)rep->pending);
		protobuf_c_message_free_unpacked(m, NULL);
		(*next)++;
	}
}

static void wait_live_zero(hc_channel_t *ch)
{
	uint64_t until = test_now_ms() + 5000;
	uint64_t live = 1;
	while (test_now_ms() < until) {
		Hutch__Test__Stats *s = get_stats(ch);
		live = s ? s->live_calls : 1;
		if (s)
			protobuf_c_message_free_unpacked(&s->base, NULL);
		if (live == 0)
			break;
		test_sleep_ms(50);
	}
	CHECK(live == 0, "cancelled flood still live on the server");
}

/* 1: the client does not touch its socket at all. Its HTTP/2 window is
 * made huge (256 MiB), so only the server's own socket backpressure can keep
 * it from queueing everything. */
static void test_stalled_reader(const char *target)
{
	hc_channel_t *reader = NULL, *admin = NULL;
	hutch_err_t err = { 0 };
	hc_channel_opts_t huge_window = { .stream_window = 256u << 20 };
	if (hc_channel_open(target, &huge_window, &reader, &err) < 0 ||
	    hc_channel_open(target, NULL, &admin, &err) < 0) {
		CHECK(0, "open: %s", err.message);
		goto out;
	}
	Hutch__Test__Stats *before = get_stats(admin);
	if (!before)
		goto out;
	hc_call_t *call = start_flood(reader);
	if (!call)
		goto out;
	int next = 0;
	recv_flood(call, 1, &next);

	/* Stop reading. Whatever the server produces now has to wait in its
	 * own queues. */
	test_sleep_ms(1500);
	Hutch__Test__Stats *s1 = get_stats(admin);
	test_sleep_ms(500);
	Hutch__Test__Stats *s2 = get_stats(admin);
	if (s1 && s2) {
		fprintf(stderr,
			"stalled reader: flood queued %lu bytes (of %lu), max pending %lu, "
			"rss %lu -> %lu\n",
			(unsigned long)s2->flood_queued_bytes,
			(unsigned long)FLOOD_COUNT * FLOOD_SIZE, (unsigned long)s2->max_pending,
			(unsigned long)before->rss_bytes, (unsigned long)s2->rss_bytes);
		/* Kernel socket buffers + libuv's write queue (256 KiB) + the
		 * call's queue (256 KiB): about a MiB, not 1.6 GB and not the
		 * 256 MiB the client's window would allow. */
		CHECK(s2->flood_queued_bytes < (4u << 20), "server produced %lu bytes",
		      (unsigned long)s2->flood_queued_bytes);
		CHECK(s2->flood_queued_bytes == s1->flood_queued_bytes,
		      "server kept producing while the client was stalled (%lu -> %lu)",
		      (unsigned long)s1->flood_queued_bytes, (unsigned long)s2->flood_queued_bytes);
		CHECK(s2->max_pending <= SERVER_HIGH_WATERMARK + FLOOD_SIZE + 64,
		      "call queue reached %lu bytes", (unsigned long)s2->max_pending);
		CHECK(s2->rss_bytes < before->rss_bytes + (64u << 20), "server RSS grew %lu -> %lu",
		      (unsigned long)before->rss_bytes, (unsigned long)s2->rss_bytes);
	}
	/* Reading again resumes the stream where it stopped. */
	recv_flood(call, 600, &next);
	Hutch__Test__Stats *s3 = get_stats(admin);
	if (s2 && s3)
		CHECK(s3->flood_queued_bytes > s2->flood_queued_bytes, "flood did not resume");
	hc_call_free(call); /* cancels */
	wait_live_zero(admin);
	if (s1)
		protobuf_c_message_free_unpacked(&s1->base, NULL);
	if (s2)
		protobuf_c_message_free_unpacked(&s2->base, NULL);
	if (s3)
		protobuf_c_message_free_unpacked(&s3->base, NULL);
	protobuf_c_message_free_unpacked(&before->base, NULL);
out:
	hc_channel_close(reader);
	hc_channel_close(admin);
}

/* 2: the connection stays busy, only this call's messages are not taken. */
static void test_unread_call(const char *target)
{
	hutch_err_t err = { 0 };
	hc_channel_t *ch = NULL;
	if (hc_channel_open(target, NULL, &ch, &err) < 0) {
		CHECK(0, "open: %s", err.message);
		return;
	}
	Hutch__Test__Stats *before = get_stats(ch);
	hc_call_t *call = start_flood(ch);
	if (!before || !call)
		goto out;
	/* Other calls on the same connection keep working (and keep pumping
	 * the socket) while the flood sits unread. */
	uint64_t until = test_now_ms() + 1500;
	int unary = 0;
	while (test_now_ms() < until) {
		Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
		req.message = "side";
		ProtobufCMessage *m;
		if (hc_unary(ch, SVC "Unary", &req.base, &hutch__test__echo_reply__descriptor, &m,
			     5000, NULL, 0, NULL, &err) == 0) {
			protobuf_c_message_free_unpacked(m, NULL);
			unary++;
		} else {
			CHECK(0, "unary beside the flood: %s", err.message);
			break;
		}
	}
	CHECK(unary > 10, "only %d unary calls beside the flood", unary);
	Hutch__Test__Stats *s = get_stats(ch);
	if (s) {
		uint64_t produced = s->flood_queued_bytes - before->flood_queued_bytes;
		fprintf(stderr, "unread call: %d side calls, flood queued %lu bytes\n", unary,
			(unsigned long)produced);
		/* 1 MiB stream window + the server's watermark, with slack. */
		CHECK(produced < (4u << 20), "server produced %lu bytes for an unread call",
		      (unsigned long)produced);
		protobuf_c_message_free_unpacked(&s->base, NULL);
	}
	int next = 0;
	recv_flood(call, 300, &next);
	hc_call_free(call);
	wait_live_zero(ch);
out:
	if (before)
		protobuf_c_message_free_unpacked(&before->base, NULL);
	hc_channel_close(ch);
}

/* 3: the server pauses receiving for 1.5 s. */
static void test_paused_server(const char *target)
{
	enum { N = 512, PAD = 4096, PAUSE_MS = 1500 };
	hutch_err_t err = { 0 };
	hc_channel_t *ch = NULL;
	if (hc_channel_open(target, NULL, &ch, &err) < 0) {
		CHECK(0, "open: %s", err.message);
		return;
	}
	hc_call_t *call;
	hc_metadata_t md[] = { { "x-pause-ms", "1500" } };
	if (hc_call_start(ch, SVC "PausedSink", 20000, md, 1, &call, &err) < 0) {
		CHECK(0, "start: %s", err.message);
		hc_channel_close(ch);
		return;
	}
	uint8_t *pad = calloc(1, PAD);
	uint64_t t0 = test_now_ms();
	size_t sent_early = 0; /* bytes whose send returned in the first second */
	int64_t total = 0;
	for (int i = 0; i < N; i++) {
		Hutch__Test__Num n = HUTCH__TEST__NUM__INIT;
		n.value = i;
		n.pad.data = pad;
		n.pad.len = PAD;
		total += i;
		if (hc_call_send(call, &n.base, &err) < 0) {
			CHECK(0, "send %d: %s", i, err.message);
			break;
		}
		if (test_now_ms() - t0 < 1000)
			sent_early += PAD;
	}
	uint64_t took = test_now_ms() - t0;
	fprintf(stderr, "paused server: %zu bytes accepted in the first second, all in %lu ms\n",
		sent_early, (unsigned long)took);
	/* The server's 64 KiB stream window + the client's 64 KiB send buffer
	 * + a frame or two; nowhere near the 2 MiB being sent. */
	CHECK(sent_early <= (256u << 10), "client sent %zu bytes into a paused call", sent_early);
	CHECK(took >= PAUSE_MS - 200, "sending 2 MiB into a paused call took only %lu ms",
	      (unsigned long)took);
	hc_call_close_send(call, &err);
	ProtobufCMessage *m;
	int r = hc_call_recv(call, &hutch__test__sum__descriptor, &m, -1, &err);
	CHECK(r == 1, "PausedSink result: %d %s", r, err.message);
	if (r == 1) {
		Hutch__Test__Sum *s = (Hutch__Test__Sum *)m;
		CHECK(s->count == N && s->total == total && s->bytes == (uint64_t)N * PAD,
		      "after resume: count %d total %ld bytes %lu", s->count, (long)s->total,
		      (unsigned long)s->bytes);
		CHECK(s->delivered_while_paused == 0, "%d messages delivered while paused",
		      s->delivered_while_paused);
		protobuf_c_message_free_unpacked(m, NULL);
	}
	free(pad);
	hc_call_free(call);
	hc_channel_close(ch);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SERVER_BIN\n", argv[0]);
		return 2;
	}
	struct test_server s;
	if (test_server_start(&s, argv[1], NULL) < 0)
		return 1;
	test_stalled_reader(s.target);
	test_unread_call(s.target);
	test_paused_server(s.target);
	int rc = test_server_stop(&s);
	CHECK(rc == 0, "server exit status %d", rc);
	if (test_failures) {
		fprintf(stderr, "%d checks failed\n", test_failures);
		return 1;
	}
	printf("grpc_backpressure: all passed\n");
	return 0;
}
