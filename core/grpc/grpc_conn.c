/*
 * grpc_conn.c: an HTTP/2 server session (nghttp2) whose streams are gRPC
 * calls. Bytes in, callbacks out, bytes out; no sockets (see grpc_conn.h).
 *
 * nghttp2 does the HTTP/2 work, including the checks RFC 9113 8 asks for
 * (pseudo-header rules, forbidden connection headers, content-length),
 * answering violations with RST_STREAM or GOAWAY itself. This file maps
 * stream events onto calls. Automatic WINDOW_UPDATE is off, so a call that is
 * paused really stops its client (see grpc_call_in.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cleanup.h"
#include "grpc_internal.h"

static grpc_call_t *stream_call(nghttp2_session *session, int32_t stream_id)
{
	return nghttp2_session_get_stream_user_data(session, stream_id);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	grpc_conn_t *conn = user_data;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (conn->terminated)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	grpc_call_t *call = grpc_call_create(conn, frame->hd.stream_id);
	if (!call)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM, not fatal */
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	/* Request trailers (HCAT_HEADERS) carry nothing gRPC uses. */
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	grpc_call_t *call = stream_call(session, frame->hd.stream_id);
	if (call)
		grpc_call_on_header(call, name, namelen, value, valuelen);
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	grpc_conn_t *conn = user_data;
	bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
	grpc_call_t *call;

	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
			conn->established = true;
		break;
	case NGHTTP2_HEADERS:
		call = stream_call(session, frame->hd.stream_id);
		if (!call)
			break;
		if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			grpc_call_on_headers_done(call, end_stream);
		else if (end_stream)
			grpc_call_on_end_stream(call);
		break;
	case NGHTTP2_DATA:
		call = stream_call(session, frame->hd.stream_id);
		if (call && end_stream)
			grpc_call_on_end_stream(call);
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *user_data)
{
	nghttp2_session_consume_connection(session, len);
	grpc_call_t *call = stream_call(session, stream_id);
	if (!call) {
		nghttp2_session_consume_stream(session, stream_id, len);
		return 0;
	}
	return grpc_call_on_data(call, data, len);
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		grpc_call_t *call = stream_call(session, frame->hd.stream_id);
		if (call)
			grpc_call_on_trailers_sent(call);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	grpc_call_t *call = stream_call(session, stream_id);
	if (call)
		grpc_call_detach(call, GRPC_STATUS_CANCELLED);
	return 0;
}

static int on_error(nghttp2_session *session, int lib_error_code, const char *msg, size_t len,
		    void *user_data)
{
	grpc_conn_t *conn = user_data;
	grpc_server_log(conn->server, LOG_DEBUG, "http2 %s: %.*s", conn->peer.address, (int)len,
			msg);
	return 0;
}

int grpc_conn_new(grpc_server_t *server, const grpc_peer_t *peer, const grpc_conn_io_t *io,
		  grpc_conn_t **out, hutch_err_t *err)
{
	_cleanup_free_ grpc_conn_t *conn = calloc(1, sizeof *conn);
	if (!conn)
		return hutch_err_set(err, ENOMEM, "new connection: out of memory");
	conn->server = server;
	conn->peer = *peer;
	conn->io = *io;
	grpc_list_init(&conn->calls);
	grpc_list_init(&conn->dispatch);

	nghttp2_session_callbacks *cbs;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return hutch_err_set(err, ENOMEM, "new connection: out of memory");
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(cbs, on_error);

	nghttp2_option *opt;
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cbs);
		return hutch_err_set(err, ENOMEM, "new connection: out of memory");
	}
	nghttp2_option_set_no_auto_window_update(opt, 1);
	/* Closed streams are only kept for priority bookkeeping, which gRPC
	 * does not use; don't let a client pile them up. */
	nghttp2_option_set_no_closed_streams(opt, 1);
	int rv = nghttp2_session_server_new2(&conn->session, cbs, conn, opt);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	if (rv != 0)
		return hutch_err_set(err, ENOMEM, "new connection: %s", nghttp2_strerror(rv));

	const grpc_server_opts_t *o = &server->opts;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o->max_concurrent_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o->stream_window },
		/* Advisory; on_header enforces max_metadata itself. */
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)o->max_metadata },
	};
	rv = nghttp2_submit_settings(conn->session, NGHTTP2_FLAG_NONE, iv, ARRAY_SIZE(iv));
	if (rv == 0 && o->conn_window > NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
		rv = nghttp2_session_set_local_window_size(conn->session, NGHTTP2_FLAG_NONE, 0,
							   (int32_t)o->conn_window);
	if (rv != 0) {
		nghttp2_session_del(conn->session);
		return hutch_err_set(err, ENOMEM, "new connection: %s", nghttp2_strerror(rv));
	}
	*out = steal_ptr(&conn);
	return 0;
}

void grpc_conn_wake(grpc_conn_t *conn)
{
	conn->io.wake(conn->io.data);
}

void grpc_conn_schedule(grpc_conn_t *conn, grpc_call_t *call)
{
	if (!grpc_link_linked(&call->dispatch_link))
		grpc_list_add_tail(&conn->dispatch, &call->dispatch_link);
	grpc_conn_wake(conn);
}

static void conn_broken(grpc_conn_t *conn, int rv)
{
	conn->broken = true;
	grpc_server_log(conn->server, LOG_INFO, "connection from %s: %s", conn->peer.address,
			nghttp2_strerror(rv));
	if (rv == NGHTTP2_ERR_FLOODED) {
		/* The peer does not read what we send: writing more is pointless. */
		conn->flooded = true;
		return;
	}
	uint32_t code = rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC ? NGHTTP2_PROTOCOL_ERROR
							   : NGHTTP2_INTERNAL_ERROR;
	if (nghttp2_session_terminate_session(conn->session, code) != 0)
		conn->flooded = true; /* nothing sensible left to send */
}

int grpc_conn_feed(grpc_conn_t *conn, const uint8_t *data, size_t len)
{
	if (conn->broken)
		return -EPROTO;
	if (conn->terminated)
		return 0;
	conn->busy++;
	ssize_t rv = nghttp2_session_mem_recv(conn->session, data, len);
	if (rv < 0)
		conn_broken(conn, (int)rv);
	conn->busy--;
	grpc_conn_wake(conn);
	return conn->broken ? -EPROTO : 0;
}

ssize_t grpc_conn_pull(grpc_conn_t *conn, const uint8_t **data)
{
	if (conn->flooded)
		return 0;
	conn->busy++;
	ssize_t n = nghttp2_session_mem_send(conn->session, data);
	conn->busy--;
	if (n < 0) {
		/* Only NOMEM or a failed callback: the session is unusable. */
		grpc_server_log(conn->server, LOG_ERR, "connection from %s: %s",
				conn->peer.address, nghttp2_strerror((int)n));
		conn->broken = true;
		conn->flooded = true;
		return 0;
	}
	return n;
}

void grpc_conn_process(grpc_conn_t *conn)
{
	struct grpc_link *l;
	conn->busy++;
	while ((l = grpc_list_pop(&conn->dispatch)))
		grpc_call_run_deferred(grpc_container_of(l, grpc_call_t, dispatch_link));
	conn->busy--;
}

static void detach_all(grpc_conn_t *conn, grpc_status_t status)
{
	/* grpc_call_detach unlinks the call. */
	while (!grpc_list_empty(&conn->calls))
		grpc_call_detach(grpc_container_of(conn->calls.next, grpc_call_t, conn_link),
				 status);
}

void grpc_conn_terminate(grpc_conn_t *conn, uint32_t h2_error, grpc_status_t status)
{
	if (conn->terminated)
		return;
	conn->terminated = true;
	conn->busy++;
	if (!conn->broken)
		nghttp2_session_terminate_session(conn->session, h2_error);
	detach_all(conn, status);
	conn->busy--;
}

bool grpc_conn_busy(const grpc_conn_t *conn)
{
	return conn->busy > 0;
}

bool grpc_conn_established(const grpc_conn_t *conn)
{
	return conn->established;
}

bool grpc_conn_finished(const grpc_conn_t *conn)
{
	if (conn->flooded)
		return true;
	if (conn->broken)
		return !nghttp2_session_want_write(conn->session);
	return !nghttp2_session_want_read(conn->session) &&
	       !nghttp2_session_want_write(conn->session);
}

void grpc_conn_free(grpc_conn_t *conn)
{
	if (!conn)
		return;
	conn->busy++;
	detach_all(conn, GRPC_STATUS_UNAVAILABLE);
	conn->busy--;
	nghttp2_session_del(conn->session);
	free(conn);
}
