/*
 * grpc_malformed: hostile and broken input must get an error (a gRPC status,
 * an HTTP status, RST_STREAM or GOAWAY), never a crash, and the server must
 * keep serving everyone else.
 *
 * Frames are written by hand (HPACK literals without indexing); responses
 * are parsed by hand with nghttp2's HPACK inflater, so nothing here relies
 * on a well-behaved client library.
 *
 * usage: test_malformed SERVER_BIN
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "echo.pb-c.h"
#include "grpc_client.h"
#include "test_util.h"

#define PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

enum { F_DATA = 0, F_HEADERS = 1, F_RST = 3, F_SETTINGS = 4, F_PING = 6, F_GOAWAY = 7,
       F_WINDOW_UPDATE = 8, F_CONTINUATION = 9 };
enum { FL_END_STREAM = 1, FL_ACK = 1, FL_END_HEADERS = 4, FL_PADDED = 8, FL_PRIORITY = 0x20 };

struct hdr {
	const char *n, *v;
};

struct h2 {
	int fd;
	nghttp2_hd_inflater *inf;
	uint8_t buf[1 << 17];
	size_t len;
	bool eof;
	/* header block being collected across CONTINUATION frames */
	uint8_t block[1 << 16];
	size_t block_len;
	uint32_t block_sid;
	uint8_t block_flags;
	bool silent; /* do not even ACK the server's SETTINGS */
};

struct outcome {
	bool goaway, rst, ended, eof, headers;
	uint32_t goaway_code, rst_code;
	int http_status, grpc_status;
	char grpc_message[512];
	char accept_encoding[512];
};

static const char *sock_path;

static int h2_open(struct h2 *c, bool preface)
{
	memset(c, 0, sizeof *c);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", sock_path);
	if (connect(c->fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
		CHECK(0, "connect %s: %s", sock_path, strerror(errno));
		close(c->fd);
		return -1;
	}
	nghttp2_hd_inflate_new(&c->inf);
	if (preface) {
		send(c->fd, PREFACE, 24, MSG_NOSIGNAL);
		uint8_t settings[9] = { 0, 0, 0, F_SETTINGS, 0, 0, 0, 0, 0 };
		send(c->fd, settings, sizeof settings, MSG_NOSIGNAL);
	}
	return 0;
}

static void h2_close(struct h2 *c)
{
	close(c->fd);
	nghttp2_hd_inflate_del(c->inf);
}

static void h2_raw(struct h2 *c, const void *p, size_t n)
{
	/* The server may already have closed: that is a legitimate answer. */
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		p = (const uint8_t *)p + w;
		n -= (size_t)w;
	}
}

static void h2_frame(struct h2 *c, uint8_t type, uint8_t flags, uint32_t sid, const void *p,
		     size_t len)
{
	uint8_t h[9] = { (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
			 (uint8_t)(sid >> 24) & 0x7f, (uint8_t)(sid >> 16), (uint8_t)(sid >> 8),
			 (uint8_t)sid };
	h2_raw(c, h, 9);
	if (len)
		h2_raw(c, p, len);
}

static size_t hpack_int(uint8_t *out, size_t v)
{
	/* 7-bit prefix integer, H bit 0. */
	size_t n = 0;
	if (v < 127) {
		out[n++] = (uint8_t)v;
		return n;
	}
	out[n++] = 127;
	v -= 127;
	while (v >= 128) {
		out[n++] = (uint8_t)(v % 128 + 128);
		v /= 128;
	}
	out[n++] = (uint8_t)v;
	return n;
}

/* HEADERS (+ CONTINUATION beyond 16 KiB) with literal fields. */
static void h2_headers(struct h2 *c, uint32_t sid, const struct hdr *h, size_t n, bool end)
{
	static uint8_t block[1 << 16];
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(h[i].n), vl = strlen(h[i].v);
		block[len++] = 0x00; /* literal without indexing, new name */
		len += hpack_int(block + len, nl);
		memcpy(block + len, h[i].n, nl);
		len += nl;
		len += hpack_int(block + len, vl);
		memcpy(block + len, h[i].v, vl);
		len += vl;
	}
	size_t first = len > 16384 ? 16384 : len;
	h2_frame(c, F_HEADERS, (uint8_t)((end ? FL_END_STREAM : 0) | (first == len ? FL_END_HEADERS : 0)),
		 sid, block, first);
	for (size_t off = first; off < len;) {
		size_t k = len - off > 16384 ? 16384 : len - off;
		h2_frame(c, F_CONTINUATION, off + k == len ? FL_END_HEADERS : 0, sid, block + off, k);
		off += k;
	}
}

static void grpc_request(struct h2 *c, uint32_t sid, const char *path, const struct hdr *extra,
			 size_t n_extra, bool end)
{
	struct hdr h[16] = {
		{ ":method", "POST" },   { ":scheme", "http" },
		{ ":path", path },       { ":authority", "localhost" },
		{ "content-type", "application/grpc" }, { "te", "trailers" },
	};
	size_t n = 6;
	for (size_t i = 0; i < n_extra && n < 16; i++)
		h[n++] = extra[i];
	h2_headers(c, sid, h, n, end);
}

/* One gRPC message (prefix + bytes) as a DATA frame. */
static void grpc_data(struct h2 *c, uint32_t sid, uint8_t flag, uint32_t announced,
		      const void *p, size_t len, bool end)
{
	uint8_t *buf = malloc(5 + len);
	buf[0] = flag;
	buf[1] = (uint8_t)(announced >> 24);
	buf[2] = (uint8_t)(announced >> 16);
	buf[3] = (uint8_t)(announced >> 8);
	buf[4] = (uint8_t)announced;
	if (len)
		memcpy(buf + 5, p, len);
	h2_frame(c, F_DATA, end ? FL_END_STREAM : 0, sid, buf, 5 + len);
	free(buf);
}

static size_t echo_request(uint8_t *out, const char *message)
{
	Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
	req.message = (char *)message;
	return protobuf_c_message_pack(&req.base, out);
}

/* Reads one frame; 0, or -1 on timeout, -2 at EOF. */
static int h2_read_frame(struct h2 *c, int timeout_ms, uint8_t *type, uint8_t *flags,
			 uint32_t *sid, uint8_t **payload, size_t *plen)
{
	uint64_t until = test_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (c->len >= 9) {
			size_t l = (size_t)c->buf[0] << 16 | (size_t)c->buf[1] << 8 | c->buf[2];
			if (l + 9 > sizeof c->buf)
				return -2; /* never from a sane server */
			if (c->len >= 9 + l) {
				*type = c->buf[3];
				*flags = c->buf[4];
				*sid = ((uint32_t)c->buf[5] << 24 | (uint32_t)c->buf[6] << 16 |
					(uint32_t)c->buf[7] << 8 | c->buf[8]) & 0x7fffffff;
				*payload = c->buf + 9;
				*plen = l;
				return 0;
			}
		}
		if (c->eof)
			return -2;
		uint64_t now = test_now_ms();
		if (now >= until)
			return -1;
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (poll(&p, 1, (int)(until - now)) <= 0)
			continue;
		ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
		if (n <= 0)
			c->eof = true;
		else
			c->len += (size_t)n;
	}
}

static void h2_consume_frame(struct h2 *c, size_t plen)
{
	memmove(c->buf, c->buf + 9 + plen, c->len - 9 - plen);
	c->len -= 9 + plen;
}

static void inflate_block(struct h2 *c, struct outcome *o, bool ours)
{
	uint8_t *in = c->block;
	size_t inlen = c->block_len;
	for (;;) {
		nghttp2_nv nv;
		int fl = 0;
		ssize_t r = nghttp2_hd_inflate_hd2(c->inf, &nv, &fl, in, inlen, 1);
		if (r < 0) {
			CHECK(0, "server sent an undecodable header block");
			return;
		}
		in += r;
		inlen -= (size_t)r;
		if ((fl & NGHTTP2_HD_INFLATE_EMIT) && ours) {
			o->headers = true;
			char v[512];
			snprintf(v, sizeof v, "%.*s", (int)nv.valuelen, nv.value);
			if (nv.namelen == 7 && memcmp(nv.name, ":status", 7) == 0)
				o->http_status = atoi(v);
			else if (nv.namelen == 11 && memcmp(nv.name, "grpc-status", 11) == 0)
				o->grpc_status = atoi(v);
			else if (nv.namelen == 12 && memcmp(nv.name, "grpc-message", 12) == 0)
				snprintf(o->grpc_message, sizeof o->grpc_message, "%s", v);
			else if (nv.namelen == 20 && memcmp(nv.name, "grpc-accept-encoding", 20) == 0)
				snprintf(o->accept_encoding, sizeof o->accept_encoding, "%s", v);
		}
		if (fl & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(c->inf);
			break;
		}
		if (!(fl & NGHTTP2_HD_INFLATE_EMIT) && inlen == 0)
			break;
	}
}

/* Reads until stream sid ends (END_STREAM or RST_STREAM), or a GOAWAY
 * followed by the connection closing, or timeout. sid 0: connection-level
 * outcome only. */
static void h2_wait(struct h2 *c, uint32_t sid, struct outcome *o, int timeout_ms)
{
	memset(o, 0, sizeof *o);
	o->grpc_status = -1;
	uint64_t until = test_now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		uint64_t now = test_now_ms();
		if (now >= until)
			return;
		uint8_t type, flags, *p;
		uint32_t fsid;
		size_t len;
		int r = h2_read_frame(c, (int)(until - now), &type, &flags, &fsid, &p, &len);
		if (r == -2) {
			o->eof = true;
			return;
		}
		if (r == -1)
			return;
		switch (type) {
		case F_SETTINGS:
			if (!(flags & FL_ACK) && !c->silent)
				h2_frame(c, F_SETTINGS, FL_ACK, 0, NULL, 0);
			break;
		case F_HEADERS:
		case F_CONTINUATION: {
			size_t off = 0, pad = 0;
			if (type == F_HEADERS) {
				if (flags & FL_PADDED)
					pad = p[off++];
				if (flags & FL_PRIORITY)
					off += 5;
				c->block_len = 0;
				c->block_sid = fsid;
				c->block_flags = flags;
			}
			if (off + pad <= len && c->block_len + len - off - pad <= sizeof c->block) {
				memcpy(c->block + c->block_len, p + off, len - off - pad);
				c->block_len += len - off - pad;
			}
			if (flags & FL_END_HEADERS) {
				inflate_block(c, o, c->block_sid == sid);
				if (c->block_sid == sid && (c->block_flags & FL_END_STREAM))
					o->ended = true;
			}
			break;
		}
		case F_DATA:
			if (fsid == sid && (flags & FL_END_STREAM))
				o->ended = true;
			break;
		case F_RST:
			if (fsid == sid && len == 4) {
				o->rst = true;
				o->rst_code = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
					      (uint32_t)p[2] << 8 | p[3];
			}
			break;
		case F_GOAWAY:
			o->goaway = true;
			if (len >= 8)
				o->goaway_code = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 |
						 (uint32_t)p[6] << 8 | p[7];
			/* Keep reading: the server must also close. */
			until = test_now_ms() + 3000 < until ? test_now_ms() + 3000 : until;
			break;
		default:
			break;
		}
		h2_consume_frame(c, len);
		if (sid && (o->ended || o->rst))
			return;
	}
}

/* ---- the cases ---- */

/* A connection-level failure: GOAWAY (with the expected code, if given) and
 * the server closing the socket. */
static void expect_goaway(const char *what, struct h2 *c, int code)
{
	struct outcome o;
	h2_wait(c, 0, &o, 5000);
	CHECK(o.goaway || o.eof, "%s: neither GOAWAY nor close", what);
	if (code >= 0)
		CHECK(o.goaway && o.goaway_code == (uint32_t)code, "%s: GOAWAY %d code %u, want %d",
		      what, o.goaway, o.goaway_code, code);
	CHECK(o.eof, "%s: server kept the connection open", what);
}

static void expect_status(const char *what, struct h2 *c, uint32_t sid, int grpc_status)
{
	struct outcome o;
	h2_wait(c, sid, &o, 5000);
	CHECK(o.ended && o.http_status == 200 && o.grpc_status == grpc_status,
	      "%s: ended %d rst %d http %d grpc-status %d (%s), want %d", what, o.ended, o.rst,
	      o.http_status, o.grpc_status, o.grpc_message, grpc_status);
}

static void expect_http(const char *what, struct h2 *c, uint32_t sid, int http_status)
{
	struct outcome o;
	h2_wait(c, sid, &o, 5000);
	CHECK(o.ended && o.http_status == http_status, "%s: HTTP %d, want %d", what, o.http_status,
	      http_status);
}

static void expect_rst(const char *what, struct h2 *c, uint32_t sid, uint32_t code)
{
	struct outcome o;
	h2_wait(c, sid, &o, 5000);
	CHECK((o.rst && o.rst_code == code) || (o.goaway && o.goaway_code == code),
	      "%s: rst %d code %u goaway %d code %u, want %u", what, o.rst, o.rst_code, o.goaway,
	      o.goaway_code, code);
}

/* A well-formed call on the same connection, to prove it survived. */
static void expect_alive(const char *what, struct h2 *c, uint32_t sid)
{
	uint8_t pb[64];
	size_t n = echo_request(pb, "still here");
	grpc_request(c, sid, "/hutch.test.Echo/Unary", NULL, 0, false);
	grpc_data(c, sid, 0, (uint32_t)n, pb, n, true);
	char label[128];
	snprintf(label, sizeof label, "%s, then a valid call", what);
	expect_status(label, c, sid, 0);
}

static void test_connection_errors(void)
{
	struct h2 c;
	if (h2_open(&c, false) == 0) {
		const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
		h2_raw(&c, req, sizeof req - 1);
		expect_goaway("HTTP/1.1 request", &c, NGHTTP2_PROTOCOL_ERROR);
		h2_close(&c);
	}
	if (h2_open(&c, false) == 0) {
		h2_raw(&c, "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 24);
		expect_goaway("bad connection preface", &c, NGHTTP2_PROTOCOL_ERROR);
		h2_close(&c);
	}
	if (h2_open(&c, true) == 0) {
		/* Deterministic garbage after a valid preface. */
		uint8_t junk[4096];
		uint32_t x = 12345;
		for (size_t i = 0; i < sizeof junk; i++) {
			x = x * 1103515245 + 12345;
			junk[i] = (uint8_t)(x >> 16);
		}
		h2_raw(&c, junk, sizeof junk);
		expect_goaway("garbage frames", &c, -1);
		h2_close(&c);
	}
	if (h2_open(&c, true) == 0) {
		/* A DATA frame header announcing 1 MiB (max frame size is 16 KiB). */
		uint8_t h[9] = { 0x10, 0, 0, F_DATA, 0, 0, 0, 0, 1 };
		h2_raw(&c, h, 9);
		expect_goaway("oversized frame", &c, NGHTTP2_FRAME_SIZE_ERROR);
		h2_close(&c);
	}
	if (h2_open(&c, true) == 0) {
		uint8_t inc[4] = { 0x7f, 0xff, 0xff, 0xff };
		h2_frame(&c, F_WINDOW_UPDATE, 0, 0, inc, 4);
		expect_goaway("window overflow", &c, NGHTTP2_FLOW_CONTROL_ERROR);
		h2_close(&c);
	}
	if (h2_open(&c, true) == 0) {
		h2_frame(&c, F_DATA, 0, 0, "x", 1);
		expect_goaway("DATA on stream 0", &c, NGHTTP2_PROTOCOL_ERROR);
		h2_close(&c);
	}
}

static void test_bad_headers(void)
{
	static const struct {
		const char *what;
		struct hdr h[8];
		size_t n;
	} cases[] = {
		/* Each has :authority (nghttp2 requires it or host) and exactly
		 * one defect. */
		{ "missing :path",
		  { { ":method", "POST" }, { ":scheme", "http" }, { ":authority", "x" },
		    { "content-type", "application/grpc" } },
		  4 },
		{ "upper-case header name",
		  { { ":method", "POST" }, { ":scheme", "http" }, { ":path", "/hutch.test.Echo/Unary" },
		    { ":authority", "x" }, { "Content-Type", "application/grpc" } },
		  5 },
		{ "duplicate :method",
		  { { ":method", "POST" }, { ":method", "POST" }, { ":scheme", "http" },
		    { ":path", "/hutch.test.Echo/Unary" }, { ":authority", "x" } },
		  5 },
		{ "pseudo-header after a regular one",
		  { { ":method", "POST" }, { "content-type", "application/grpc" }, { ":scheme", "http" },
		    { ":path", "/hutch.test.Echo/Unary" }, { ":authority", "x" } },
		  5 },
		{ "connection-specific header",
		  { { ":method", "POST" }, { ":scheme", "http" }, { ":path", "/hutch.test.Echo/Unary" },
		    { ":authority", "x" }, { "connection", "close" } },
		  5 },
		{ "unknown pseudo-header",
		  { { ":method", "POST" }, { ":scheme", "http" }, { ":path", "/hutch.test.Echo/Unary" },
		    { ":authority", "x" }, { ":bogus", "1" } },
		  5 },
		{ "missing :authority",
		  { { ":method", "POST" }, { ":scheme", "http" }, { ":path", "/hutch.test.Echo/Unary" },
		    { "content-type", "application/grpc" } },
		  4 },
	};
	struct h2 c;
	if (h2_open(&c, true) < 0)
		return;
	uint32_t sid = 1;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		h2_headers(&c, sid, cases[i].h, cases[i].n, true);
		expect_rst(cases[i].what, &c, sid, NGHTTP2_PROTOCOL_ERROR);
		sid += 2;
		expect_alive(cases[i].what, &c, sid);
		sid += 2;
	}
	h2_close(&c);
}

static void test_grpc_errors(void)
{
	struct h2 c;
	if (h2_open(&c, true) < 0)
		return;
	uint8_t pb[64];
	size_t n = echo_request(pb, "x");
	uint32_t sid = 1;
	const char *unary = "/hutch.test.Echo/Unary";

	grpc_request(&c, sid, unary, NULL, 0, false);
	h2_frame(&c, F_DATA, FL_END_STREAM, sid, "\0\0\0", 3);
	expect_status("truncated length prefix", &c, sid, HC_STATUS_INTERNAL);
	sid += 2;

	grpc_request(&c, sid, unary, NULL, 0, false);
	grpc_data(&c, sid, 0, 10, pb, n, true); /* announces 10, sends fewer */
	expect_status("truncated message", &c, sid, HC_STATUS_INTERNAL);
	sid += 2;

	static const uint8_t bad_pb[] = { 0xff, 0xff, 0xff, 0xff };
	grpc_request(&c, sid, unary, NULL, 0, false);
	grpc_data(&c, sid, 0, sizeof bad_pb, bad_pb, sizeof bad_pb, true);
	expect_status("invalid protobuf", &c, sid, HC_STATUS_INVALID_ARGUMENT);
	sid += 2;

	/* 64 MiB announced: refused as soon as the prefix arrives, without
	 * the stream ever ending. */
	grpc_request(&c, sid, unary, NULL, 0, false);
	grpc_data(&c, sid, 0, 64u << 20, pb, n, false);
	expect_status("message over the limit", &c, sid, HC_STATUS_RESOURCE_EXHAUSTED);
	sid += 2;

	grpc_request(&c, sid, unary, NULL, 0, false);
	grpc_data(&c, sid, 7, (uint32_t)n, pb, n, true);
	expect_status("bad compressed flag", &c, sid, HC_STATUS_INTERNAL);
	sid += 2;

	grpc_request(&c, sid, unary, NULL, 0, false);
	grpc_data(&c, sid, 1, (uint32_t)n, pb, n, true);
	expect_status("compressed without grpc-encoding", &c, sid, HC_STATUS_INTERNAL);
	sid += 2;

	{
		struct hdr gz[] = { { "grpc-encoding", "gzip" } };
		struct outcome o;
		grpc_request(&c, sid, unary, gz, 1, false);
		grpc_data(&c, sid, 1, (uint32_t)n, pb, n, true);
		h2_wait(&c, sid, &o, 5000);
		CHECK(o.grpc_status == HC_STATUS_UNIMPLEMENTED && strcmp(o.accept_encoding, "identity") == 0,
		      "gzip message: status %d accept-encoding '%s'", o.grpc_status,
		      o.accept_encoding);
		sid += 2;
	}

	grpc_request(&c, sid, unary, NULL, 0, false);
	grpc_data(&c, sid, 0, (uint32_t)n, pb, n, false);
	grpc_data(&c, sid, 0, (uint32_t)n, pb, n, true);
	expect_status("two messages on a unary call", &c, sid, HC_STATUS_INTERNAL);
	sid += 2;

	grpc_request(&c, sid, unary, NULL, 0, true);
	expect_status("no message on a unary call", &c, sid, HC_STATUS_INTERNAL);
	sid += 2;

	{
		struct hdr t[] = { { "grpc-timeout", "soon" } };
		grpc_request(&c, sid, unary, t, 1, false);
		grpc_data(&c, sid, 0, (uint32_t)n, pb, n, true);
		expect_status("malformed grpc-timeout", &c, sid, HC_STATUS_INTERNAL);
		sid += 2;
	}

	grpc_request(&c, sid, "/hutch.test.Echo/Nope", NULL, 0, false);
	grpc_data(&c, sid, 0, (uint32_t)n, pb, n, true);
	expect_status("unknown method", &c, sid, HC_STATUS_UNIMPLEMENTED);
	sid += 2;

	{
		struct hdr get[] = { { ":method", "GET" }, { ":scheme", "http" },
				     { ":path", unary }, { ":authority", "x" } };
		h2_headers(&c, sid, get, 4, true);
		expect_http("GET", &c, sid, 405);
		sid += 2;
		struct hdr text[] = { { ":method", "POST" }, { ":scheme", "http" },
				      { ":path", unary }, { ":authority", "x" },
				      { "content-type", "text/plain" } };
		h2_headers(&c, sid, text, 5, true);
		expect_http("content-type text/plain", &c, sid, 415);
		sid += 2;
	}

	{
		/* 20 KiB of metadata (HEADERS + CONTINUATION) over the 16 KiB limit. */
		char *big = malloc(20001);
		memset(big, 'm', 20000);
		big[20000] = '\0';
		struct hdr md[] = { { "x-big", big } };
		grpc_request(&c, sid, unary, md, 1, false);
		grpc_data(&c, sid, 0, (uint32_t)n, pb, n, true);
		expect_status("oversized metadata", &c, sid, HC_STATUS_RESOURCE_EXHAUSTED);
		free(big);
		sid += 2;
	}

	{
		/* 80 KiB of DATA into the 64 KiB window of a call that is not
		 * reading (a running call returns window as it consumes). */
		uint8_t *chunk = calloc(1, 16384);
		struct hdr pause[] = { { "x-pause-ms", "10000" } };
		grpc_request(&c, sid, "/hutch.test.Echo/PausedSink", pause, 1, false);
		for (int i = 0; i < 5; i++)
			h2_frame(&c, F_DATA, 0, sid, chunk, 16384);
		expect_rst("flow-control violation", &c, sid, NGHTTP2_FLOW_CONTROL_ERROR);
		free(chunk);
		sid += 2;
	}

	expect_alive("after all gRPC errors", &c, sid);
	h2_close(&c);
}

/* Connections that never complete the handshake are closed after
 * --handshake-ms (1 s here), so idle sockets cannot pile up. */
static void test_handshake_timeout(void)
{
	for (int variant = 0; variant < 2; variant++) {
		struct h2 c;
		if (h2_open(&c, false) < 0)
			return;
		c.silent = true;
		if (variant == 1)
			h2_raw(&c, PREFACE, 24); /* the magic, but never SETTINGS */
		uint64_t t0 = test_now_ms();
		struct outcome o;
		h2_wait(&c, 0, &o, 5000);
		uint64_t took = test_now_ms() - t0;
		CHECK(o.eof && took >= 900 && took < 4000, "%s: closed %d after %lu ms",
		      variant ? "preface without SETTINGS" : "silent client", o.eof,
		      (unsigned long)took);
		h2_close(&c);
	}
}

static void test_tls_alpn(int port)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	for (int variant = 0; variant < 2; variant++) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
		struct timeval tv = { 3, 0 };
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
			CHECK(0, "connect TLS port: %s", strerror(errno));
			close(fd);
			continue;
		}
		SSL *ssl = SSL_new(ctx);
		SSL_set_fd(ssl, fd);
		if (variant == 0) {
			static const unsigned char h1[] = { 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
			SSL_set_alpn_protos(ssl, h1, sizeof h1);
		}
		/* Either the handshake fails (ALPN alert) or the server closes
		 * right after it; it must never speak HTTP/2. */
		bool refused = SSL_connect(ssl) != 1;
		if (!refused) {
			char buf[64];
			refused = SSL_read(ssl, buf, sizeof buf) <= 0;
		}
		CHECK(refused, "TLS client %s was served", variant == 0 ? "offering http/1.1" :
									   "without ALPN");
		SSL_free(ssl);
		close(fd);
	}
	SSL_CTX_free(ctx);
}

/* Someone else, with a real client, over TLS and the unix socket. */
static void test_others_still_served(struct test_server *s)
{
	char tls_target[64];
	snprintf(tls_target, sizeof tls_target, "127.0.0.1:%d", s->port);
	const char *targets[] = { s->target, tls_target };
	for (int i = 0; i < 2; i++) {
		hutch_err_t err = { 0 };
		hc_channel_opts_t opts = { .ca_file = i ? s->cert : NULL };
		hc_channel_t *ch = NULL;
		if (hc_channel_open(targets[i], &opts, &ch, &err) < 0) {
			CHECK(0, "open %s: %s", targets[i], err.message);
			continue;
		}
		Hutch__Test__EchoRequest req = HUTCH__TEST__ECHO_REQUEST__INIT;
		req.message = "fine";
		ProtobufCMessage *m;
		int r = hc_unary(ch, "/hutch.test.Echo/Unary", &req.base,
				 &hutch__test__echo_reply__descriptor, &m, 5000, NULL, 0, NULL, &err);
		CHECK(r == 0, "call after the abuse on %s: %s", targets[i], err.message);
		if (r == 0)
			protobuf_c_message_free_unpacked(m, NULL);
		hc_channel_close(ch);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s SERVER_BIN\n", argv[0]);
		return 2;
	}
	struct test_server s;
	const char *args[] = { "--tcp",	 "0", "--cert", "@CERT@", "--key", "@KEY@", "--handshake-ms",
			       "1000",	 NULL };
	if (test_server_start(&s, argv[1], args) < 0)
		return 1;
	sock_path = s.sock;

	test_connection_errors();
	test_bad_headers();
	test_grpc_errors();
	test_tls_alpn(s.port);
	test_handshake_timeout();
	CHECK(test_server_alive(&s), "server died");
	test_others_still_served(&s);

	int rc = test_server_stop(&s);
	CHECK(rc == 0, "server exit status %d", rc);
	if (test_failures) {
		fprintf(stderr, "%d checks failed\n", test_failures);
		return 1;
	}
	printf("grpc_malformed: all passed\n");
	return 0;
}
