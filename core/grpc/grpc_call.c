/*
 * grpc_call.c: the call object: creation, references, accessors, the
 * deadline, and the two ways a call ends for its method (finish by the
 * method, cancel by the layer). Request handling is in grpc_call_in.c,
 * replies in grpc_call_out.c.
 */
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "grpc_call_priv.h"
#include "grpc_internal.h"

grpc_call_t *grpc_call_create(grpc_conn_t *conn, int32_t stream_id)
{
	grpc_server_t *server = conn->server;
	grpc_call_t *call = calloc(1, sizeof *call);
	if (!call)
		return NULL;
	call->refs = 1; /* the stream's */
	call->conn = conn;
	call->stream_id = stream_id;
	call->peer = conn->peer;
	call->auth_release = server->opts.auth_release;
	call->auth_release_data = server->opts.authorize_data;
	grpc_list_init(&call->dispatch_link);
	grpc_list_init(&call->held);
	grpc_list_init(&call->out);
	grpc_list_add_tail(&conn->calls, &call->conn_link);
	return call;
}

static void free_list(struct grpc_link *head, size_t offset)
{
	struct grpc_link *l;
	while ((l = grpc_list_pop(head)))
		free((char *)l - offset);
}

void grpc_call_drop_output(grpc_call_t *call)
{
	free_list(&call->out, offsetof(struct grpc_out_chunk, link));
	call->pending = 0;
}

void grpc_call_drop_input(grpc_call_t *call)
{
	free_list(&call->held, offsetof(struct grpc_msg, link));
	grpc_deframer_reset(&call->deframer);
}

static void call_free(grpc_call_t *call)
{
	grpc_call_drop_output(call);
	grpc_call_drop_input(call);
	if (call->auth && call->auth_release)
		call->auth_release(call->auth_release_data, call->auth);
	for (size_t i = 0; i < call->n_headers; i++) {
		free(call->headers[i].name);
		free(call->headers[i].value);
	}
	free(call->headers);
	free(call->path);
	free(call->status_message);
	free(call);
}

void grpc_call_ref(grpc_call_t *call)
{
	call->refs++;
}

void grpc_call_unref(grpc_call_t *call)
{
	if (!call || --call->refs > 0)
		return;
	call_free(call);
}

void grpc_call_notify_cancel(grpc_call_t *call, grpc_status_t status)
{
	if (!call->started || call->app_done)
		return;
	call->app_done = true;
	call->cancel_status = status;
	const struct grpc_method_entry *m = call->method;
	if (m && m->method.on_cancel) {
		grpc_call_ref(call);
		m->method.on_cancel(call);
		grpc_call_unref(call);
	}
}

void grpc_call_fail(grpc_call_t *call, grpc_status_t status, const char *message)
{
	/* The layer ends the call: what was queued either way is moot. */
	call->ignore_input = true;
	grpc_call_drop_input(call);
	if (call->conn && call->unconsumed) {
		nghttp2_session_consume_stream(call->conn->session, call->stream_id, call->unconsumed);
		call->unconsumed = 0;
	}
	if (!call->finished) {
		grpc_call_drop_output(call);
		grpc_call_finish_internal(call, status, message);
	}
	grpc_call_notify_cancel(call, status);
}

static void deadline_closed(uv_handle_t *h)
{
	grpc_call_t *call = h->data;
	grpc_server_t *server = call->timer_server;
	call->timer_server = NULL;
	grpc_call_unref(call);
	grpc_server_handle_closed(server);
}

static void deadline_close(grpc_call_t *call)
{
	if (!call->deadline_open)
		return;
	call->deadline_open = false;
	uv_close((uv_handle_t *)&call->deadline, deadline_closed);
}

static void deadline_fired(uv_timer_t *t)
{
	grpc_call_t *call = t->data;
	grpc_conn_t *conn = call->conn;
	if (!conn)
		return;
	if (call->finished) {
		/* Trailers are queued but the client is not reading them:
		 * the deadline still bounds the stream's life. */
		nghttp2_submit_rst_stream(conn->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  NGHTTP2_CANCEL);
	} else {
		grpc_call_fail(call, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
	}
	grpc_conn_wake(conn);
}

void grpc_call_start_deadline(grpc_call_t *call, uint64_t ms)
{
	grpc_server_t *server = call->conn->server;
	uv_timer_init(server->loop, &call->deadline);
	call->deadline.data = call;
	call->deadline_open = true;
	call->timer_server = server;
	server->open_handles++;
	grpc_call_ref(call); /* the timer's, dropped in deadline_closed */
	uv_timer_start(&call->deadline, deadline_fired, ms, 0);
}

void grpc_call_detach(grpc_call_t *call, grpc_status_t status)
{
	grpc_conn_t *conn = call->conn;
	if (!conn)
		return;
	nghttp2_session_set_stream_user_data(conn->session, call->stream_id, NULL);
	grpc_list_del(&call->conn_link);
	if (grpc_link_linked(&call->dispatch_link))
		grpc_list_del(&call->dispatch_link);
	call->conn = NULL;
	call->finished = true;
	call->data_deferred = false;
	call->trailers_pending = false;
	grpc_call_drop_output(call);
	grpc_call_drop_input(call);
	deadline_close(call);
	grpc_call_notify_cancel(call, status);
	call->method = NULL; /* the server may go away before the call */
	grpc_call_unref(call);
}

void grpc_call_run_deferred(grpc_call_t *call)
{
	grpc_call_ref(call);
	if (call->writable_wanted && call->conn &&
	    call->pending <= call->conn->server->opts.send_high_watermark / 2) {
		call->writable_wanted = false;
		if (!call->app_done && call->method && call->method->method.on_writable)
			call->method->method.on_writable(call);
	}
	grpc_call_deliver(call);
	grpc_call_unref(call);
}

/* ---- accessors ---- */

const char *grpc_call_metadata(const grpc_call_t *call, const char *name)
{
	for (size_t i = 0; i < call->n_headers; i++)
		if (strcmp(call->headers[i].name, name) == 0)
			return call->headers[i].value;
	return NULL;
}

const char *grpc_call_path(const grpc_call_t *call)
{
	return call->path ? call->path : "";
}

const grpc_peer_t *grpc_call_peer(const grpc_call_t *call)
{
	return &call->peer;
}

void grpc_call_set_data(grpc_call_t *call, void *data)
{
	call->data = data;
}

void *grpc_call_get_data(const grpc_call_t *call)
{
	return call->data;
}

void grpc_call_set_auth(grpc_call_t *call, void *auth)
{
	if (call->auth && call->auth != auth && call->auth_release)
		call->auth_release(call->auth_release_data, call->auth);
	call->auth = auth;
}

void *grpc_call_auth(const grpc_call_t *call)
{
	return call->auth;
}

grpc_server_t *grpc_call_server(const grpc_call_t *call)
{
	return call->conn ? call->conn->server : NULL;
}

void *grpc_call_service_data(const grpc_call_t *call)
{
	return call->service_data;
}

grpc_status_t grpc_call_cancel_status(const grpc_call_t *call)
{
	return call->cancel_status;
}

bool grpc_call_alive(const grpc_call_t *call)
{
	return call->conn && !call->finished && !call->app_done;
}
