/*
 * grpc_call_out.c: the reply side of a call: response headers, the queue of
 * encoded messages that nghttp2 pulls from as flow control allows, and the
 * trailers that end the call.
 *
 * grpc_call_send never blocks and never drops: it appends to the call's
 * queue and reports when the queue has grown past the high watermark, so the
 * method can wait for on_writable. nghttp2 pulls from the queue only when
 * the client's window is open and the transport asks for more bytes, which
 * happens only while the socket keeps up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "grpc_call_priv.h"
#include "grpc_internal.h"

#define NV(n, v)                                                                            \
	{                                                                                   \
		(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE \
	}

static int submit_headers(grpc_call_t *call)
{
	if (call->headers_sent)
		return 0;
	nghttp2_nv nv[] = { NV(":status", "200"), NV("content-type", "application/grpc") };
	nghttp2_data_provider prd = { .source.ptr = call, .read_callback = grpc_call_read_data };
	if (nghttp2_submit_response(call->conn->session, call->stream_id, nv, ARRAY_SIZE(nv),
				    &prd) != 0)
		return -ENOMEM;
	call->headers_sent = true;
	return 0;
}

/* Fills nv with the status fields; returns how many. */
static size_t status_fields(const grpc_call_t *call, char code[4], nghttp2_nv *nv)
{
	size_t n = 0;
	snprintf(code, 4, "%d", (int)call->status);
	nv[n++] = (nghttp2_nv)NV("grpc-status", code);
	if (call->status_message && call->status_message[0])
		nv[n++] = (nghttp2_nv)NV("grpc-message", call->status_message);
	if (call->accept_encoding_hint)
		nv[n++] = (nghttp2_nv)NV("grpc-accept-encoding", "identity");
	return n;
}

static void resume(grpc_call_t *call)
{
	if (call->data_deferred) {
		call->data_deferred = false;
		nghttp2_session_resume_data(call->conn->session, call->stream_id);
	}
}

void grpc_call_finish_internal(grpc_call_t *call, grpc_status_t status, const char *message)
{
	if (call->finished)
		return;
	call->finished = true;
	call->status = status;
	if (message && message[0])
		call->status_message = grpc_message_encode(message, GRPC_MAX_STATUS_MESSAGE);
	grpc_conn_t *conn = call->conn;
	if (!conn)
		return;
	if (!call->headers_sent) {
		/* Trailers-Only: one HEADERS frame with END_STREAM. */
		char code[4];
		nghttp2_nv nv[5] = { NV(":status", "200"), NV("content-type", "application/grpc") };
		size_t n = 2 + status_fields(call, code, nv + 2);
		call->headers_sent = true;
		if (nghttp2_submit_response(conn->session, call->stream_id, nv, n, NULL) != 0)
			nghttp2_submit_rst_stream(conn->session, NGHTTP2_FLAG_NONE,
						  call->stream_id, NGHTTP2_INTERNAL_ERROR);
	} else {
		call->trailers_pending = true;
		resume(call);
	}
	grpc_conn_wake(conn);
}

void grpc_call_finish(grpc_call_t *call, grpc_status_t status, const char *message)
{
	if (call->app_done || !call->started)
		return;
	call->app_done = true;
	grpc_call_finish_internal(call, status, message);
}

int grpc_call_send(grpc_call_t *call, const ProtobufCMessage *msg)
{
	if (!call->conn || call->finished || call->app_done || !call->started)
		return -ECANCELED;
	if (!call->method->method.server_streaming && call->messages_out > 0)
		return -EINVAL;
	size_t size = protobuf_c_message_get_packed_size(msg);
	if (size > UINT32_MAX)
		return -EMSGSIZE;
	struct grpc_out_chunk *c = malloc(sizeof *c + GRPC_PREFIX_LEN + size);
	if (!c)
		return -ENOMEM;
	c->len = GRPC_PREFIX_LEN + size;
	c->off = 0;
	grpc_prefix_write(c->data, (uint32_t)size);
	protobuf_c_message_pack(msg, c->data + GRPC_PREFIX_LEN);
	if (submit_headers(call) < 0) {
		free(c);
		return -ENOMEM;
	}
	grpc_list_add_tail(&call->out, &c->link);
	call->pending += c->len;
	call->messages_out++;
	resume(call);
	grpc_conn_wake(call->conn);
	if (call->pending >= call->conn->server->opts.send_high_watermark) {
		call->writable_wanted = true;
		return 1;
	}
	return 0;
}

size_t grpc_call_pending(const grpc_call_t *call)
{
	return call->pending;
}

ssize_t grpc_call_read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			    size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			    void *user_data)
{
	/* Look the call up rather than trusting source->ptr: a detached call
	 * may already be gone while nghttp2 still has the stream queued. */
	grpc_call_t *call = nghttp2_session_get_stream_user_data(session, stream_id);
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	size_t n = 0;
	while (n < length && !grpc_list_empty(&call->out)) {
		struct grpc_out_chunk *c = grpc_container_of(call->out.next, struct grpc_out_chunk, link);
		size_t k = c->len - c->off;
		if (k > length - n)
			k = length - n;
		memcpy(buf + n, c->data + c->off, k);
		c->off += k;
		n += k;
		if (c->off == c->len) {
			grpc_list_del(&c->link);
			free(c);
		}
	}
	call->pending -= n;
	if (call->pending == 0 && call->trailers_pending) {
		char code[4];
		nghttp2_nv nv[3];
		size_t nn = status_fields(call, code, nv);
		call->trailers_pending = false;
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(session, stream_id, nv, nn) != 0)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	} else if (n == 0) {
		call->data_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	if (call->writable_wanted &&
	    call->pending <= call->conn->server->opts.send_high_watermark / 2)
		grpc_conn_schedule(call->conn, call);
	return (ssize_t)n;
}

void grpc_call_on_trailers_sent(grpc_call_t *call)
{
	/* RFC 9113 8.1: a server that has answered completely may ask the
	 * client to stop sending with RST_STREAM(NO_ERROR). */
	if (!call->remote_closed)
		nghttp2_submit_rst_stream(call->conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_NO_ERROR);
}
