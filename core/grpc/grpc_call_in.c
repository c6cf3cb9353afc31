/*
 * grpc_call_in.c: the request side of a call: header checks and routing,
 * reassembly and decoding of request messages, delivery to the method, and
 * inbound flow control (grpc_call_pause_recv).
 *
 * Flow control: the connection window is returned as soon as DATA arrives
 * (each stream is bounded by its own window, so the connection never holds
 * more than the sum of those). The stream window is returned right away
 * too, unless the method paused the call; then it is withheld, and the
 * client can send at most one stream window more before it blocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cleanup.h"
#include "grpc_call_priv.h"
#include "grpc_internal.h"

void grpc_call_on_header(grpc_call_t *call, const uint8_t *name, size_t namelen,
			 const uint8_t *value, size_t valuelen)
{
	if (call->headers_too_large)
		return;
	/* RFC 9113 6.5.2: a field costs its name, value and 32 bytes. */
	call->header_bytes += namelen + valuelen + 32;
	if (call->header_bytes > call->conn->server->opts.max_metadata) {
		call->headers_too_large = true;
		return;
	}
	if (call->n_headers == call->cap_headers) {
		size_t cap = call->cap_headers ? call->cap_headers * 2 : 16;
		struct grpc_header *h = realloc(call->headers, cap * sizeof *h);
		if (!h) {
			call->headers_too_large = true;
			return;
		}
		call->headers = h;
		call->cap_headers = cap;
	}
	char *n = strndup((const char *)name, namelen);
	char *v = strndup((const char *)value, valuelen);
	if (!n || !v) {
		free(n);
		free(v);
		call->headers_too_large = true;
		return;
	}
	call->headers[call->n_headers++] = (struct grpc_header){ n, v };
}

/* application/grpc, optionally followed by "+proto" or ";params" (gRPC
 * PROTOCOL-HTTP2: Content-Type). Other subtypes (+json) we cannot decode. */
static bool content_type_ok(const char *ct)
{
	static const char base[] = "application/grpc";
	if (!ct || strncmp(ct, base, sizeof base - 1) != 0)
		return false;
	ct += sizeof base - 1;
	if (strncmp(ct, "+proto", 6) == 0)
		ct += 6;
	return *ct == '\0' || *ct == ';';
}

/* Answers a request that is not gRPC at all with a bare HTTP status, as the
 * spec asks (so that a plain HTTP client does not mistake it for success). */
static void reject_http(grpc_call_t *call, const char *status)
{
	nghttp2_nv nv[] = {
		{ (uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE },
	};
	call->ignore_input = true;
	call->finished = true;
	call->headers_sent = true;
	if (nghttp2_submit_response(call->conn->session, call->stream_id, nv, 1, NULL) != 0)
		nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_INTERNAL_ERROR);
	grpc_conn_wake(call->conn);
}

void grpc_call_on_headers_done(grpc_call_t *call, bool end_stream)
{
	grpc_server_t *server = call->conn->server;
	char msg[512];

	if (end_stream)
		call->remote_closed = true;
	if (call->headers_too_large) {
		grpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "request metadata too large");
		return;
	}
	const char *method = grpc_call_metadata(call, ":method");
	if (!method || strcmp(method, "POST") != 0) {
		reject_http(call, "405");
		return;
	}
	if (!content_type_ok(grpc_call_metadata(call, "content-type"))) {
		reject_http(call, "415");
		return;
	}
	const char *path = grpc_call_metadata(call, ":path");
	call->path = strdup(path ? path : "");
	if (!call->path) {
		grpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	const struct grpc_method_entry *m = grpc_server_find_method(server, call->path);
	if (!m) {
		snprintf(msg, sizeof msg, "unknown method %.400s", call->path);
		grpc_call_fail(call, GRPC_STATUS_UNIMPLEMENTED, msg);
		return;
	}
	call->method = m;
	call->service_data = m->service_data;

	const char *timeout = grpc_call_metadata(call, "grpc-timeout");
	if (timeout) {
		uint64_t ms;
		if (grpc_timeout_parse(timeout, strlen(timeout), &ms) < 0) {
			grpc_call_fail(call, GRPC_STATUS_INTERNAL, "malformed grpc-timeout");
			return;
		}
		grpc_call_start_deadline(call, ms);
	}

	if (server->opts.authorize) {
		msg[0] = '\0';
		grpc_status_t st = server->opts.authorize(server->opts.authorize_data, call, msg,
							 sizeof msg);
		if (st != GRPC_STATUS_OK) {
			msg[sizeof msg - 1] = '\0';
			grpc_call_fail(call, st, msg[0] ? msg : grpc_status_name(st));
			return;
		}
	}

	call->started = true;
	grpc_call_ref(call);
	if (m->method.on_start)
		m->method.on_start(call);
	if (end_stream)
		grpc_call_on_end_stream(call);
	grpc_call_unref(call);
}

static void reject_compressed(grpc_call_t *call)
{
	const char *enc = grpc_call_metadata(call, "grpc-encoding");
	if (!enc || strcmp(enc, "identity") == 0) {
		/* The flag says compressed but nothing says how. */
		grpc_call_fail(call, GRPC_STATUS_INTERNAL,
			       "compressed message without grpc-encoding");
		return;
	}
	/* compression.md: unsupported algorithm -> UNIMPLEMENTED, and tell the
	 * client what we do accept. */
	char msg[160];
	snprintf(msg, sizeof msg, "message compression \"%.64s\" is not supported", enc);
	call->accept_encoding_hint = true;
	grpc_call_fail(call, GRPC_STATUS_UNIMPLEMENTED, msg);
}

int grpc_call_on_data(grpc_call_t *call, const uint8_t *data, size_t len)
{
	nghttp2_session *session = call->conn->session;
	grpc_server_t *server = call->conn->server;

	if (call->ignore_input || !call->started || call->app_done) {
		nghttp2_session_consume_stream(session, call->stream_id, len);
		return 0;
	}
	if (call->paused)
		call->unconsumed += len;
	else
		nghttp2_session_consume_stream(session, call->stream_id, len);

	while (len > 0) {
		struct grpc_msg *m = NULL;
		int r = grpc_deframer_push(&call->deframer, server->opts.max_recv_message, &data,
					   &len, &m);
		if (r == -EMSGSIZE) {
			char msg[160];
			snprintf(msg, sizeof msg,
				 "received message larger than max (%zu vs. %zu bytes)",
				 call->deframer.want, server->opts.max_recv_message);
			grpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, msg);
			return 0;
		}
		if (r == -EPROTO) {
			grpc_call_fail(call, GRPC_STATUS_INTERNAL, "invalid message compression flag");
			return 0;
		}
		if (r < 0) {
			grpc_call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			return 0;
		}
		if (r == 0)
			break;
		if (m->compressed) {
			free(m);
			reject_compressed(call);
			return 0;
		}
		if (!call->method->method.client_streaming && call->messages_in >= 1) {
			free(m);
			grpc_call_fail(call, GRPC_STATUS_INTERNAL,
				       "more than one request message for a unary request");
			return 0;
		}
		call->messages_in++;
		grpc_list_add_tail(&call->held, &m->link);
	}
	grpc_call_deliver(call);
	return 0;
}

void grpc_call_on_end_stream(grpc_call_t *call)
{
	call->remote_closed = true;
	if (call->ignore_input || !call->started || call->app_done)
		return;
	if (!grpc_deframer_idle(&call->deframer)) {
		grpc_call_fail(call, GRPC_STATUS_INTERNAL, "stream ended inside a message");
		return;
	}
	if (!call->method->method.client_streaming && call->messages_in == 0) {
		grpc_call_fail(call, GRPC_STATUS_INTERNAL, "missing request message");
		return;
	}
	grpc_call_deliver(call);
}

void grpc_call_deliver(grpc_call_t *call)
{
	if (call->delivering || !call->started || !call->conn)
		return;
	/* A unary request is handed over only once it is complete, so that
	 * "exactly one message" is settled before the method runs. */
	if (!call->method->method.client_streaming && !call->remote_closed)
		return;
	call->delivering = true;
	grpc_call_ref(call);
	while (!call->paused && !call->app_done && call->conn) {
		struct grpc_link *l = grpc_list_pop(&call->held);
		if (!l)
			break;
		struct grpc_msg *m = grpc_container_of(l, struct grpc_msg, link);
		const grpc_method_t *method = &call->method->method;
		ProtobufCMessage *msg =
			protobuf_c_message_unpack(method->request, NULL, m->len, m->data);
		free(m);
		if (!msg) {
			char text[200];
			snprintf(text, sizeof text, "cannot decode request as %s",
				 method->request->name);
			grpc_call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, text);
			break;
		}
		method->on_message(call, msg);
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	if (!call->paused && !call->app_done && call->conn && call->remote_closed &&
	    grpc_list_empty(&call->held) && !call->half_close_delivered) {
		call->half_close_delivered = true;
		if (call->method->method.on_half_close)
			call->method->method.on_half_close(call);
	}
	call->delivering = false;
	grpc_call_unref(call);
}

void grpc_call_pause_recv(grpc_call_t *call, bool paused)
{
	if (call->paused == paused)
		return;
	call->paused = paused;
	grpc_conn_t *conn = call->conn;
	if (paused || !conn)
		return;
	if (call->unconsumed) {
		nghttp2_session_consume_stream(conn->session, call->stream_id, call->unconsumed);
		call->unconsumed = 0;
	}
	/* Deliver from the loop: the caller may be in the middle of its own
	 * bookkeeping and not expect on_message re-entrantly. */
	grpc_conn_schedule(conn, call);
}
