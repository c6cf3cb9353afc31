/*
 * grpc_client_call.c: client calls: request headers, the outbound message
 * queue nghttp2 pulls from, response reassembly, the final status, and the
 * blocking send/recv that pump the channel while they wait.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "grpc_client_internal.h"

static const char *const status_names[] = {
	"OK",
	"CANCELLED",
	"UNKNOWN",
	"INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED",
	"NOT_FOUND",
	"ALREADY_EXISTS",
	"PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED",
	"FAILED_PRECONDITION",
	"ABORTED",
	"OUT_OF_RANGE",
	"UNIMPLEMENTED",
	"INTERNAL",
	"UNAVAILABLE",
	"DATA_LOSS",
	"UNAUTHENTICATED",
};

const char *hc_status_name(int status)
{
	if (status < 0 || (size_t)status >= ARRAY_SIZE(status_names))
		return "UNKNOWN";
	return status_names[status];
}

int hc_status_errno(int status)
{
	static const int map[] = {
		0,           ECANCELED,    EIO,      EINVAL, ETIMEDOUT, ENOENT,
		EEXIST,      EACCES,       ENOSPC,   EBUSY,  ECONNABORTED, ERANGE,
		ENOSYS,      EPROTO,       ECONNREFUSED, EBADMSG, EKEYREJECTED,
	};
	if (status < 0 || (size_t)status >= ARRAY_SIZE(map))
		return EIO;
	return map[status];
}

/* ---- queues ---- */

static void queue_push(struct hc_queue *q, struct hc_chunk *c)
{
	c->next = NULL;
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->bytes += c->len - c->off;
}

static struct hc_chunk *queue_pop(struct hc_queue *q)
{
	struct hc_chunk *c = q->head;
	if (!c)
		return NULL;
	q->head = c->next;
	if (!q->head)
		q->tail = NULL;
	q->bytes -= c->len - c->off;
	return c;
}

static void queue_clear(struct hc_queue *q)
{
	struct hc_chunk *c;
	while ((c = queue_pop(q)))
		free(c);
}

/* ---- ending ---- */

static char *percent_decode(const uint8_t *s, size_t len)
{
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%' && i + 2 < len && isxdigit(s[i + 1]) && isxdigit(s[i + 2])) {
			char hex[3] = { (char)s[i + 1], (char)s[i + 2], 0 };
			out[n++] = (char)strtol(hex, NULL, 16);
			i += 2;
		} else {
			out[n++] = (char)s[i];
		}
	}
	out[n] = '\0';
	return out;
}

void hc_call_end(hc_call_t *call, int status, const char *message)
{
	if (call->ended)
		return;
	call->ended = true;
	call->status = status;
	call->status_message = strdup(message ? message : "");
	queue_clear(&call->out);
}

static bool stream_open(const hc_call_t *call)
{
	return call->ch && !call->ch->dead && !call->closed;
}

/* Ends the call locally and tells the server. */
static void call_abort(hc_call_t *call, uint32_t h2_error, int status, const char *message)
{
	if (call->ended)
		return;
	if (stream_open(call))
		nghttp2_submit_rst_stream(call->ch->session, NGHTTP2_FLAG_NONE, call->stream_id,
					  h2_error);
	hc_call_end(call, status, message);
}

static int call_error(const hc_call_t *call, hutch_err_t *err)
{
	if (call->status == HC_STATUS_OK)
		return hutch_err_set(err, EPIPE, "call already ended (OK)");
	return hutch_err_set(err, hc_status_errno(call->status), "%s: %s",
			     hc_status_name(call->status), call->status_message);
}

void hc_call_check_deadline(hc_call_t *call, uint64_t now)
{
	if (!call->ended && call->deadline && now >= call->deadline)
		call_abort(call, NGHTTP2_CANCEL, HC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* ---- nghttp2 callbacks ---- */

void hc_call_on_header(hc_call_t *call, const uint8_t *name, size_t namelen,
		       const uint8_t *value, size_t valuelen)
{
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		call->http_status = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			call->http_status = call->http_status * 10 + (value[i] - '0');
	} else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		int st = 0;
		for (size_t i = 0; i < valuelen && i < 4; i++) {
			if (value[i] < '0' || value[i] > '9') {
				st = HC_STATUS_UNKNOWN;
				break;
			}
			st = st * 10 + (value[i] - '0');
		}
		call->grpc_status = st;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		free(call->grpc_message);
		call->grpc_message = percent_decode(value, valuelen);
	}
}

void hc_call_on_data(hc_call_t *call, const uint8_t *data, size_t len)
{
	hc_channel_t *ch = call->ch;
	if (call->ended) {
		nghttp2_session_consume_stream(ch->session, call->stream_id, len);
		return;
	}
	/* Acknowledge at once while the caller keeps up; once a window's worth
	 * waits in call->in, hold the acknowledgement until hc_call_recv. */
	if (call->in.bytes <= ch->stream_window)
		nghttp2_session_consume_stream(ch->session, call->stream_id, len);
	else
		call->unconsumed += len;

	while (len > 0) {
		if (!call->partial) {
			size_t n = HC_PREFIX_LEN - call->hdr_len;
			if (n > len)
				n = len;
			memcpy(call->hdr + call->hdr_len, data, n);
			call->hdr_len += n;
			data += n;
			len -= n;
			if (call->hdr_len < HC_PREFIX_LEN)
				return;
			size_t want = (size_t)call->hdr[1] << 24 | (size_t)call->hdr[2] << 16 |
				      (size_t)call->hdr[3] << 8 | call->hdr[4];
			if (call->hdr[0] != 0) {
				call_abort(call, NGHTTP2_CANCEL, HC_STATUS_INTERNAL,
					   call->hdr[0] == 1 ? "compressed response not supported"
							     : "invalid message flag");
				return;
			}
			if (want > ch->max_recv) {
				char msg[128];
				snprintf(msg, sizeof msg,
					 "received message larger than max (%zu vs. %zu bytes)", want,
					 ch->max_recv);
				call_abort(call, NGHTTP2_CANCEL, HC_STATUS_RESOURCE_EXHAUSTED, msg);
				return;
			}
			call->partial = malloc(sizeof *call->partial + want);
			if (!call->partial) {
				call_abort(call, NGHTTP2_CANCEL, HC_STATUS_RESOURCE_EXHAUSTED,
					   "out of memory");
				return;
			}
			call->partial->len = 0;
			call->partial->off = want; /* the announced length, while filling */
		}
		struct hc_chunk *p = call->partial;
		size_t n = p->off - p->len;
		if (n > len)
			n = len;
		memcpy(p->data + p->len, data, n);
		p->len += n;
		data += n;
		len -= n;
		if (p->len == p->off) {
			p->off = 0;
			queue_push(&call->in, p);
			call->partial = NULL;
			call->hdr_len = 0;
		}
	}
}

void hc_call_on_close(hc_call_t *call, uint32_t error_code)
{
	char msg[160];
	int st;
	const char *text = msg;
	if (call->grpc_status >= 0) {
		st = call->grpc_status;
		text = call->grpc_message ? call->grpc_message : "";
	} else if (error_code != NGHTTP2_NO_ERROR) {
		st = error_code == NGHTTP2_REFUSED_STREAM ? HC_STATUS_UNAVAILABLE
		     : error_code == NGHTTP2_CANCEL       ? HC_STATUS_CANCELLED
							  : HC_STATUS_INTERNAL;
		snprintf(msg, sizeof msg, "stream reset by server: %s",
			 nghttp2_http2_strerror(error_code));
	} else if (call->http_status && call->http_status != 200) {
		/* gRPC's HTTP-to-status mapping (doc/http-grpc-status-mapping.md). */
		switch (call->http_status) {
		case 400:
			st = HC_STATUS_INTERNAL;
			break;
		case 401:
			st = HC_STATUS_UNAUTHENTICATED;
			break;
		case 403:
			st = HC_STATUS_PERMISSION_DENIED;
			break;
		case 404:
			st = HC_STATUS_UNIMPLEMENTED;
			break;
		case 429:
		case 502:
		case 503:
		case 504:
			st = HC_STATUS_UNAVAILABLE;
			break;
		default:
			st = HC_STATUS_UNKNOWN;
		}
		snprintf(msg, sizeof msg, "HTTP status %d", call->http_status);
	} else {
		st = HC_STATUS_INTERNAL;
		snprintf(msg, sizeof msg, "stream closed without a grpc-status");
	}
	if (!call->ended && st == HC_STATUS_OK && call->partial)
		st = HC_STATUS_INTERNAL, text = "stream ended inside a message";
	hc_call_end(call, st, text);
	call->closed = true; /* no more RST or WINDOW_UPDATE for it */
}

ssize_t hc_call_read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			  size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			  void *user_data)
{
	hc_call_t *call = hc_channel_find_call(user_data, stream_id);
	if (!call || call->ended)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	size_t n = 0;
	while (n < length && call->out.head) {
		struct hc_chunk *c = call->out.head;
		size_t k = c->len - c->off;
		if (k > length - n)
			k = length - n;
		memcpy(buf + n, c->data + c->off, k);
		c->off += k;
		call->out.bytes -= k;
		n += k;
		if (c->off == c->len)
			free(queue_pop(&call->out));
	}
	if (!call->out.head && call->send_closed) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	} else if (n == 0) {
		call->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

/* ---- the API ---- */

#define NV(n, v)                                                                            \
	(nghttp2_nv)                                                                        \
	{                                                                                   \
		(uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE \
	}

int hc_call_start(hc_channel_t *ch, const char *path, int timeout_ms, const hc_metadata_t *md,
		  size_t n_md, hc_call_t **out, hutch_err_t *err)
{
	if (ch->dead)
		return hutch_err_set(err, ch->dead_errno, "%s", ch->dead_msg);
	_cleanup_free_ nghttp2_nv *nv = calloc(9 + n_md, sizeof *nv);
	hc_call_t *call = calloc(1, sizeof *call);
	if (!nv || !call) {
		free(call);
		return hutch_err_set(err, ENOMEM, "out of memory");
	}
	call->grpc_status = -1;
	char timeout[24];
	size_t n = 0;
	nv[n++] = NV(":method", "POST");
	nv[n++] = NV(":scheme", ch->tls ? "https" : "http");
	nv[n++] = NV(":path", path);
	nv[n++] = NV(":authority", ch->authority);
	nv[n++] = NV("content-type", "application/grpc");
	nv[n++] = NV("te", "trailers");
	nv[n++] = NV("user-agent", "hutch-c/0.1");
	if (timeout_ms > 0) {
		/* grpc-timeout allows at most 8 digits. */
		if (timeout_ms <= 99999999)
			snprintf(timeout, sizeof timeout, "%dm", timeout_ms);
		else
			snprintf(timeout, sizeof timeout, "%dS", (timeout_ms + 999) / 1000);
		nv[n++] = NV("grpc-timeout", timeout);
		call->deadline = hc_now_ms() + (uint64_t)timeout_ms;
	}
	if (ch->authorization)
		nv[n++] = NV("authorization", ch->authorization);
	for (size_t i = 0; i < n_md; i++)
		nv[n++] = NV(md[i].name, md[i].value);

	nghttp2_data_provider prd = { .read_callback = hc_call_read_data };
	int32_t id = nghttp2_submit_request(ch->session, NULL, nv, n, &prd, NULL);
	if (id < 0) {
		free(call);
		return hutch_err_set(err, id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? EAGAIN : ENOMEM,
				     "start %s: %s", path, nghttp2_strerror(id));
	}
	call->stream_id = id;
	call->ch = ch;
	call->next = ch->calls;
	if (ch->calls)
		ch->calls->prev = call;
	ch->calls = call;
	hc_channel_flush(ch);
	*out = call;
	return 0;
}

static void resume(hc_call_t *call)
{
	if (call->deferred && stream_open(call)) {
		call->deferred = false;
		nghttp2_session_resume_data(call->ch->session, call->stream_id);
	}
}

int hc_call_send(hc_call_t *call, const ProtobufCMessage *msg, hutch_err_t *err)
{
	if (call->ended)
		return call_error(call, err);
	if (call->send_closed)
		return hutch_err_set(err, EINVAL, "send after close_send");
	size_t size = protobuf_c_message_get_packed_size(msg);
	if (size > UINT32_MAX)
		return hutch_err_set(err, EMSGSIZE, "message too large (%zu bytes)", size);
	struct hc_chunk *c = malloc(sizeof *c + HC_PREFIX_LEN + size);
	if (!c)
		return hutch_err_set(err, ENOMEM, "out of memory");
	c->len = HC_PREFIX_LEN + size;
	c->off = 0;
	c->data[0] = 0;
	c->data[1] = (uint8_t)(size >> 24);
	c->data[2] = (uint8_t)(size >> 16);
	c->data[3] = (uint8_t)(size >> 8);
	c->data[4] = (uint8_t)size;
	protobuf_c_message_pack(msg, c->data + HC_PREFIX_LEN);
	queue_push(&call->out, c);
	resume(call);
	hc_channel_flush(call->ch);
	/* Block while the server's window holds back more than HC_SEND_BUFFER:
	 * this is what makes a paused server stall its client. */
	while (!call->ended && call->out.bytes > HC_SEND_BUFFER)
		hc_channel_pump(call->ch, -1, NULL);
	if (call->ended)
		return call_error(call, err);
	return 0;
}

bool hc_call_writable(const hc_call_t *call)
{
	return !call->ended && !call->send_closed && call->out.bytes <= HC_SEND_BUFFER;
}

int hc_call_close_send(hc_call_t *call, hutch_err_t *err)
{
	if (call->ended)
		return call->status == HC_STATUS_OK ? 0 : call_error(call, err);
	if (call->send_closed)
		return 0;
	call->send_closed = true;
	resume(call);
	hc_channel_flush(call->ch);
	return 0;
}

int hc_call_recv(hc_call_t *call, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **msg,
		 int timeout_ms, hutch_err_t *err)
{
	*msg = NULL;
	uint64_t until = timeout_ms >= 0 ? hc_now_ms() + (uint64_t)timeout_ms : 0;
	for (;;) {
		struct hc_chunk *c = queue_pop(&call->in);
		if (c) {
			hc_channel_t *ch = call->ch;
			if (ch && call->unconsumed && call->in.bytes <= ch->stream_window &&
			    stream_open(call)) {
				nghttp2_session_consume_stream(ch->session, call->stream_id,
							       call->unconsumed);
				call->unconsumed = 0;
				hc_channel_flush(ch);
			}
			*msg = protobuf_c_message_unpack(desc, NULL, c->len, c->data);
			free(c);
			if (!*msg) {
				call_abort(call, NGHTTP2_CANCEL, HC_STATUS_INTERNAL,
					   "cannot decode response");
				if (ch)
					hc_channel_flush(ch);
				return hutch_err_set(err, EBADMSG, "cannot decode response as %s",
						     desc->name);
			}
			return 1;
		}
		if (call->ended)
			return call->status == HC_STATUS_OK ? 0 : call_error(call, err);
		if (!call->ch) {
			hc_call_end(call, HC_STATUS_UNAVAILABLE, "channel closed");
			continue;
		}
		int wait = -1;
		if (timeout_ms >= 0) {
			uint64_t now = hc_now_ms();
			if (now >= until && timeout_ms > 0)
				return hutch_err_set(err, EAGAIN, "no message within %d ms",
						     timeout_ms);
			wait = now >= until ? 0 : (int)(until - now);
		}
		hc_channel_pump(call->ch, wait, NULL);
		if (timeout_ms == 0 && !call->in.head && !call->ended)
			return hutch_err_set(err, EAGAIN, "no message yet");
	}
}

int hc_call_status(const hc_call_t *call)
{
	return call->ended ? call->status : -1;
}

const char *hc_call_status_message(const hc_call_t *call)
{
	return call->ended && call->status_message ? call->status_message : "";
}

void hc_call_cancel(hc_call_t *call)
{
	if (call->ended)
		return;
	call_abort(call, NGHTTP2_CANCEL, HC_STATUS_CANCELLED, "cancelled by client");
	if (call->ch)
		hc_channel_flush(call->ch);
}

void hc_call_free(hc_call_t *call)
{
	if (!call)
		return;
	hc_call_cancel(call);
	hc_channel_t *ch = call->ch;
	if (ch) {
		if (call->prev)
			call->prev->next = call->next;
		else
			ch->calls = call->next;
		if (call->next)
			call->next->prev = call->prev;
		/* Window held back for this call is of no use to anyone now. */
		if (call->unconsumed && stream_open(call))
			nghttp2_session_consume_stream(ch->session, call->stream_id,
						       call->unconsumed);
	}
	queue_clear(&call->out);
	queue_clear(&call->in);
	free(call->partial);
	free(call->grpc_message);
	free(call->status_message);
	free(call);
}

int hc_unary(hc_channel_t *ch, const char *path, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp, int timeout_ms,
	     const hc_metadata_t *md, size_t n_md, int *status_out, hutch_err_t *err)
{
	hc_call_t *call;
	*resp = NULL;
	if (status_out)
		*status_out = HC_STATUS_UNAVAILABLE;
	int r = hc_call_start(ch, path, timeout_ms, md, n_md, &call, err);
	if (r < 0)
		return r;
	r = hc_call_send(call, req, err);
	if (r == 0)
		r = hc_call_close_send(call, err);
	if (r == 0)
		r = hc_call_recv(call, resp_desc, resp, -1, err);
	if (r == 1) {
		ProtobufCMessage *extra = NULL;
		r = hc_call_recv(call, resp_desc, &extra, -1, err);
		if (r == 1) {
			protobuf_c_message_free_unpacked(extra, NULL);
			hc_call_cancel(call);
			r = hutch_err_set(err, EPROTO, "%s: more than one response to a unary call",
					  path);
		}
	} else if (r == 0) {
		r = hutch_err_set(err, EPROTO, "%s: no response message", path);
	}
	if (r < 0 && *resp) {
		protobuf_c_message_free_unpacked(*resp, NULL);
		*resp = NULL;
	}
	if (status_out)
		*status_out = r == 0 ? HC_STATUS_OK
				     : (hc_call_status(call) >= 0 ? hc_call_status(call)
								  : HC_STATUS_INTERNAL);
	if (r < 0 && hc_call_status(call) > 0)
		hutch_err_prefix(err, "%s", path);
	hc_call_free(call);
	return r;
}
