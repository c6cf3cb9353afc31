#include "agent_conn.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strbuf.h"

typedef struct stream_slot {
	uint32_t id;
	const agent_stream_ops_t *ops;
	void *ud;
	bool live;
} stream_slot_t;

struct agent_conn {
	uv_loop_t *loop;
	uv_pipe_t wr, rd;
	int open_handles;
	bool closing;
	bool dispatching;
	agent_buf_t in;
	size_t write_pending;
	stream_slot_t *slots;
	size_t n_slots, cap_slots;
	uint32_t next_id;
	uint32_t agent_pid;
	uint32_t agent_version;
	agent_closed_cb on_closed;
	void *data;
	char reason[256];
	const agent_meta_ops_t *meta_ops;
	void *meta_ud;
};

typedef struct write_req {
	uv_write_t req;
	agent_conn_t *c;
	size_t len;
	uint8_t *data;
} write_req_t;

static stream_slot_t *slot_find(agent_conn_t *c, uint32_t id)
{
	for (size_t i = 0; i < c->n_slots; i++)
		if (c->slots[i].live && c->slots[i].id == id)
			return &c->slots[i];
	return NULL;
}

static void slots_compact(agent_conn_t *c)
{
	if (c->dispatching)
		return;
	size_t j = 0;
	for (size_t i = 0; i < c->n_slots; i++)
		if (c->slots[i].live)
			c->slots[j++] = c->slots[i];
	c->n_slots = j;
}

static void handle_closed(uv_handle_t *h)
{
	agent_conn_t *c = h->data;
	if (--c->open_handles > 0)
		return;
	if (c->on_closed)
		c->on_closed(c->data, c->reason);
	agent_buf_free(&c->in);
	free(c->slots);
	free(c);
}

void agent_conn_close(agent_conn_t *c, const char *reason)
{
	if (c->closing)
		return;
	c->closing = true;
	snprintf(c->reason, sizeof c->reason, "%s", reason ? reason : "closed");
	/* Every open stream learns the session is gone, once. */
	bool was = c->dispatching;
	c->dispatching = true;
	for (size_t i = 0; i < c->n_slots; i++) {
		stream_slot_t *s = &c->slots[i];
		if (!s->live)
			continue;
		s->live = false;
		if (s->ops->on_error)
			s->ops->on_error(s->ud, EPIPE, c->reason);
	}
	c->dispatching = was;
	slots_compact(c);
	uv_read_stop((uv_stream_t *)&c->rd);
	uv_close((uv_handle_t *)&c->rd, handle_closed);
	uv_close((uv_handle_t *)&c->wr, handle_closed);
}

bool agent_conn_alive(const agent_conn_t *c)
{
	return !c->closing;
}

uint32_t agent_conn_version(const agent_conn_t *c)
{
	return c->agent_version;
}

uint32_t agent_conn_pid(const agent_conn_t *c)
{
	return c->agent_pid;
}

size_t agent_conn_write_pending(const agent_conn_t *c)
{
	return c->write_pending;
}

/* ---- writing ---- */

static void on_written(uv_write_t *req, int status)
{
	write_req_t *w = (write_req_t *)req;
	agent_conn_t *c = w->c;
	c->write_pending -= w->len;
	free(w->data);
	free(w);
	if (status < 0 && status != UV_ECANCELED)
		agent_conn_close(c, "sandbox agent stopped reading");
}

/* Queues a finished frame buffer (takes b's memory). */
static int queue(agent_conn_t *c, agent_buf_t *b)
{
	if (c->closing) {
		agent_buf_free(b);
		return -EPIPE;
	}
	write_req_t *w = xcalloc(1, sizeof *w);
	w->c = c;
	w->len = agent_buf_pending(b);
	w->data = b->data; /* off is 0: the buffer was only appended to */
	b->data = NULL;
	uv_buf_t ub = uv_buf_init((char *)w->data, (unsigned)w->len);
	int r = uv_write(&w->req, (uv_stream_t *)&c->wr, &ub, 1, on_written);
	if (r < 0) {
		free(w->data);
		free(w);
		agent_conn_close(c, "cannot write to sandbox agent");
		return -EPIPE;
	}
	c->write_pending += w->len;
	return 0;
}

static int finish(agent_conn_t *c, agent_fb_t *fb, agent_buf_t *b)
{
	if (agent_frame_end(fb) < 0) {
		agent_buf_free(b);
		return -E2BIG;
	}
	return queue(c, b);
}

int agent_send_exec(agent_conn_t *c, uint32_t id, const agent_exec_req_t *req)
{
	agent_buf_t b = {0};
	agent_fb_t fb;
	agent_frame_begin(&fb, &b, AGENT_EXEC, id);
	for (const char *const *a = req->argv; a && *a; a++)
		agent_frame_str(&fb, AGENT_F_ARG, *a);
	for (const char *const *e = req->env; e && *e; e++)
		agent_frame_str(&fb, AGENT_F_ENV, *e);
	if (req->cwd)
		agent_frame_str(&fb, AGENT_F_CWD, req->cwd);
	if (req->user)
		agent_frame_str(&fb, AGENT_F_USER, req->user);
	agent_frame_u32(&fb, AGENT_F_TTY, req->tty);
	agent_frame_u32(&fb, AGENT_F_STDIN, req->want_stdin);
	agent_frame_u32(&fb, AGENT_F_ROWS, req->rows);
	agent_frame_u32(&fb, AGENT_F_COLS, req->cols);
	return finish(c, &fb, &b);
}

static int send_raw(agent_conn_t *c, uint8_t type, uint32_t id, const void *data, size_t n)
{
	agent_buf_t b = {0};
	agent_fb_t fb;
	agent_frame_begin(&fb, &b, type, id);
	agent_frame_raw(&fb, data, n);
	return finish(c, &fb, &b);
}

static int send_u32s(agent_conn_t *c, uint8_t type, uint32_t id, uint8_t t1, uint32_t v1,
		     uint8_t t2, uint32_t v2)
{
	agent_buf_t b = {0};
	agent_fb_t fb;
	agent_frame_begin(&fb, &b, type, id);
	if (t1)
		agent_frame_u32(&fb, t1, v1);
	if (t2)
		agent_frame_u32(&fb, t2, v2);
	return finish(c, &fb, &b);
}

/* Large writes go as several frames of at most AGENT_CHUNK bytes. */
static int send_chunked(agent_conn_t *c, uint8_t type, uint32_t id, const void *data, size_t n)
{
	const uint8_t *p = data;
	while (n > 0) {
		size_t k = n < AGENT_CHUNK ? n : AGENT_CHUNK;
		int r = send_raw(c, type, id, p, k);
		if (r < 0)
			return r;
		p += k;
		n -= k;
	}
	return 0;
}

int agent_send_stdin(agent_conn_t *c, uint32_t id, const void *data, size_t n)
{
	return send_chunked(c, AGENT_STDIN, id, data, n);
}

int agent_send_stdin_eof(agent_conn_t *c, uint32_t id)
{
	return send_raw(c, AGENT_STDIN_EOF, id, NULL, 0);
}

int agent_send_signal(agent_conn_t *c, uint32_t id, int signum)
{
	return send_u32s(c, AGENT_SIGNAL, id, AGENT_F_SIGNUM, (uint32_t)signum, 0, 0);
}

int agent_send_resize(agent_conn_t *c, uint32_t id, uint32_t rows, uint32_t cols)
{
	return send_u32s(c, AGENT_RESIZE, id, AGENT_F_ROWS, rows, AGENT_F_COLS, cols);
}

int agent_send_credit(agent_conn_t *c, uint32_t id, uint32_t bytes)
{
	return send_u32s(c, AGENT_CREDIT, id, AGENT_F_BYTES, bytes, 0, 0);
}

int agent_send_port_wait(agent_conn_t *c, uint32_t id, uint32_t port, uint32_t timeout_ms)
{
	return send_u32s(c, AGENT_PORT_WAIT, id, AGENT_F_PORT, port, AGENT_F_TIMEOUT_MS,
			 timeout_ms);
}

int agent_send_file_op(agent_conn_t *c, uint32_t id, uint8_t op, const char *path,
		       bool recursive)
{
	agent_buf_t b = {0};
	agent_fb_t fb;
	agent_frame_begin(&fb, &b, op, id);
	agent_frame_str(&fb, AGENT_F_PATH, path);
	agent_frame_u32(&fb, AGENT_F_RECURSIVE, recursive);
	return finish(c, &fb, &b);
}

int agent_send_put(agent_conn_t *c, uint32_t id, const char *path, uint32_t type,
		   uint32_t mode, const char *link, bool mkdirs)
{
	agent_buf_t b = {0};
	agent_fb_t fb;
	agent_frame_begin(&fb, &b, AGENT_FILE_PUT, id);
	agent_frame_str(&fb, AGENT_F_PATH, path);
	agent_frame_u32(&fb, AGENT_F_TYPE, type);
	agent_frame_u32(&fb, AGENT_F_MODE, mode);
	if (link)
		agent_frame_str(&fb, AGENT_F_LINK, link);
	agent_frame_u32(&fb, AGENT_F_MKDIRS, mkdirs);
	return finish(c, &fb, &b);
}

int agent_send_data(agent_conn_t *c, uint32_t id, const void *data, size_t n)
{
	return send_chunked(c, AGENT_DATA, id, data, n);
}

void agent_conn_set_meta(agent_conn_t *c, const agent_meta_ops_t *ops, void *ud)
{
	c->meta_ops = ops;
	c->meta_ud = ud;
}

int agent_send_meta_listen(agent_conn_t *c)
{
	return send_raw(c, AGENT_META_LISTEN, 0, NULL, 0);
}

int agent_send_meta_reply(agent_conn_t *c, uint32_t conn, const void *data, size_t n)
{
	if (!(conn & AGENT_META_STREAM_BIT) || n > AGENT_MAX_PAYLOAD)
		return -EINVAL;
	return send_raw(c, AGENT_META_REPLY, conn, data, n);
}

int agent_send_data_end(agent_conn_t *c, uint32_t id)
{
	return send_raw(c, AGENT_DATA_END, id, NULL, 0);
}

/* ---- streams ---- */

uint32_t agent_stream_open(agent_conn_t *c, const agent_stream_ops_t *ops, void *ud)
{
	if (c->n_slots == c->cap_slots) {
		c->cap_slots = c->cap_slots ? c->cap_slots * 2 : 16;
		c->slots = xrealloc(c->slots, c->cap_slots * sizeof *c->slots);
	}
	uint32_t id;
	do
		id = ++c->next_id;
	while (id == 0 || slot_find(c, id));
	c->slots[c->n_slots++] = (stream_slot_t){id, ops, ud, true};
	return id;
}

void agent_stream_forget(agent_conn_t *c, uint32_t id, bool cancel)
{
	stream_slot_t *s = slot_find(c, id);
	if (!s)
		return;
	s->live = false;
	slots_compact(c);
	if (cancel && !c->closing)
		send_raw(c, AGENT_CANCEL, id, NULL, 0);
}

/* ---- reading ---- */

/* Messages from the agent end up in logs and API errors: keep them
 * printable and bounded. */
static void clean_text(char *s)
{
	for (unsigned char *p = (unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
}

static void protocol_error(agent_conn_t *c, const char *what)
{
	char msg[200];
	snprintf(msg, sizeof msg, "sandbox agent broke protocol (%s)", what);
	agent_conn_close(c, msg);
}

static void finish_stream(agent_conn_t *c, stream_slot_t *s)
{
	s->live = false;
	(void)c;
}

/* Frames of the connection itself: hello, pong, the metadata relay.
 * Returns true if f was one. */
static bool dispatch_conn(agent_conn_t *c, const agent_frame_t *f)
{
	agent_field_iter_t it;
	agent_field_t fld;
	uint32_t v;

	if (f->type == AGENT_HELLO_ACK) {
		agent_fields_begin(&it, f);
		while (agent_fields_next(&it, &fld))
			if (fld.tag == AGENT_F_PID && agent_field_u32(&fld, &v))
				c->agent_pid = v;
			else if (fld.tag == AGENT_F_VERSION && agent_field_u32(&fld, &v))
				c->agent_version = v;
		if (it.malformed)
			protocol_error(c, "hello");
		return true;
	}
	if (f->type == AGENT_PONG)
		return true;
	if (f->type == AGENT_META_LISTENING) {
		uint32_t e = 0;
		char msg[200] = "";
		agent_fields_begin(&it, f);
		while (agent_fields_next(&it, &fld)) {
			if (fld.tag == AGENT_F_ERRNO)
				agent_field_u32(&fld, &e);
			else if (fld.tag == AGENT_F_MESSAGE && !agent_field_str(&fld, msg, sizeof msg))
				snprintf(msg, sizeof msg, "(unreadable message)");
		}
		clean_text(msg);
		if (c->meta_ops && c->meta_ops->on_listening)
			c->meta_ops->on_listening(c->meta_ud, (int)(e > 4095 ? EIO : e), msg);
		return true;
	}
	if (f->type == AGENT_META_DATA || f->type == AGENT_META_EOF) {
		/* Connection ids the agent picked: only ever with the bit set. */
		if (!(f->stream & AGENT_META_STREAM_BIT))
			protocol_error(c, "metadata stream id");
		else if (c->meta_ops && f->type == AGENT_META_DATA)
			c->meta_ops->on_data(c->meta_ud, f->stream, f->payload, f->len);
		else if (c->meta_ops)
			c->meta_ops->on_eof(c->meta_ud, f->stream);
		return true;
	}
	return false;
}

static void on_started_frame(agent_conn_t *c, stream_slot_t *s, const agent_frame_t *f)
{
	agent_field_iter_t it;
	agent_field_t fld;
	uint32_t pid = 0;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld))
		if (fld.tag == AGENT_F_PID && !agent_field_u32(&fld, &pid))
			it.malformed = true;
	if (it.malformed)
		return protocol_error(c, "started");
	if (s->ops->on_started)
		s->ops->on_started(s->ud, pid);
}

static void on_credit_frame(agent_conn_t *c, stream_slot_t *s, const agent_frame_t *f)
{
	agent_field_iter_t it;
	agent_field_t fld;
	uint32_t v;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld))
		if (fld.tag == AGENT_F_BYTES && agent_field_u32(&fld, &v) && s->ops->on_stdin_credit)
			s->ops->on_stdin_credit(s->ud, v);
	if (it.malformed)
		protocol_error(c, "credit");
}

static void on_exit_frame(agent_conn_t *c, stream_slot_t *s, const agent_frame_t *f)
{
	agent_field_iter_t it;
	agent_field_t fld;
	uint32_t code = 0, sig = 0;
	const agent_stream_ops_t *ops = s->ops;
	void *ud = s->ud;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld)) {
		if (fld.tag == AGENT_F_CODE && !agent_field_u32(&fld, &code))
			it.malformed = true;
		if (fld.tag == AGENT_F_SIGNUM && !agent_field_u32(&fld, &sig))
			it.malformed = true;
	}
	if (it.malformed || sig > 64)
		return protocol_error(c, "exit");
	finish_stream(c, s);
	if (ops->on_exit)
		ops->on_exit(ud, sig ? -1 : (int)(code & 0xff), (int)sig);
}

static void on_error_frame(agent_conn_t *c, stream_slot_t *s, const agent_frame_t *f)
{
	agent_field_iter_t it;
	agent_field_t fld;
	uint32_t e = EIO;
	char msg[1024] = "sandbox agent error";
	const agent_stream_ops_t *ops = s->ops;
	void *ud = s->ud;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld)) {
		if (fld.tag == AGENT_F_ERRNO && !agent_field_u32(&fld, &e))
			it.malformed = true;
		if (fld.tag == AGENT_F_MESSAGE && !agent_field_str(&fld, msg, sizeof msg))
			snprintf(msg, sizeof msg, "sandbox agent error (unreadable message)");
	}
	if (it.malformed)
		return protocol_error(c, "error");
	if (e == 0 || e > 4095)
		e = EIO;
	clean_text(msg);
	finish_stream(c, s);
	if (ops->on_error)
		ops->on_error(ud, (int)e, msg);
}

static void on_entry_frame(agent_conn_t *c, stream_slot_t *s, const agent_frame_t *f)
{
	agent_field_iter_t it;
	agent_field_t fld;
	char path[4096] = "", link[4096] = "";
	agent_entry_t e = {.path = path, .type = AGENT_FT_OTHER};
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld)) {
		bool ok = true;
		switch (fld.tag) {
		case AGENT_F_PATH: ok = agent_field_str(&fld, path, sizeof path); break;
		case AGENT_F_LINK:
			ok = agent_field_str(&fld, link, sizeof link);
			e.link = link;
			break;
		case AGENT_F_TYPE: ok = agent_field_u32(&fld, &e.type); break;
		case AGENT_F_MODE: ok = agent_field_u32(&fld, &e.mode); break;
		case AGENT_F_SIZE: ok = agent_field_i64(&fld, &e.size); break;
		case AGENT_F_MTIME: ok = agent_field_i64(&fld, &e.mtime); break;
		default: break;
		}
		if (!ok)
			it.malformed = true;
	}
	if (it.malformed || !path[0] || e.type < AGENT_FT_FILE || e.type > AGENT_FT_OTHER ||
	    e.size < 0)
		return protocol_error(c, "entry");
	e.mode &= 07777;
	if (s->ops->on_entry)
		s->ops->on_entry(s->ud, &e);
}

static void dispatch(agent_conn_t *c, const agent_frame_t *f)
{
	if (dispatch_conn(c, f))
		return;
	stream_slot_t *s = slot_find(c, f->stream);
	if (!s)
		return; /* a stream the requester abandoned */
	const agent_stream_ops_t *ops = s->ops;
	void *ud = s->ud;

	switch (f->type) {
	case AGENT_STARTED: on_started_frame(c, s, f); break;
	case AGENT_STDIN_CREDIT: on_credit_frame(c, s, f); break;
	case AGENT_EXIT: on_exit_frame(c, s, f); break;
	case AGENT_ERROR: on_error_frame(c, s, f); break;
	case AGENT_ENTRY: on_entry_frame(c, s, f); break;
	case AGENT_STDOUT:
		if (ops->on_stdout)
			ops->on_stdout(ud, f->payload, f->len);
		break;
	case AGENT_STDERR:
		if (ops->on_stderr)
			ops->on_stderr(ud, f->payload, f->len);
		break;
	case AGENT_DATA:
		if (ops->on_data)
			ops->on_data(ud, f->payload, f->len);
		break;
	case AGENT_DATA_END:
		if (ops->on_data_end)
			ops->on_data_end(ud);
		break;
	case AGENT_DONE:
		/* A put stream stays open across entries; the owner forgets it. */
		if (ops->on_done)
			ops->on_done(ud);
		break;
	default:
		break; /* newer agent: ignore */
	}
}

void agent_conn_feed(agent_conn_t *c, const uint8_t *data, size_t n)
{
	if (c->closing)
		return;
	if (agent_buf_append(&c->in, data, n) < 0)
		return protocol_error(c, "out of memory");
	c->dispatching = true;
	agent_frame_t f;
	long used;
	while (!c->closing &&
	       (used = agent_frame_parse(c->in.data + c->in.off, agent_buf_pending(&c->in), &f)) > 0) {
		dispatch(c, &f);
		agent_buf_consume(&c->in, (size_t)used);
	}
	c->dispatching = false;
	if (!c->closing && used < 0)
		protocol_error(c, "bad frame length");
	slots_compact(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	(void)suggested;
	static char slab[65536];
	*buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	agent_conn_t *c = st->data;
	if (n > 0) {
		agent_conn_feed(c, (const uint8_t *)buf->base, (size_t)n);
	} else if (n < 0) {
		agent_conn_close(c, n == UV_EOF ? "sandbox agent exited" : "sandbox agent pipe failed");
	}
}

int agent_conn_open(uv_loop_t *loop, int to_agent, int from_agent,
		    agent_closed_cb on_closed, void *data, agent_conn_t **out,
		    hutch_err_t *err)
{
	agent_conn_t *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->on_closed = on_closed;
	c->data = data;
	uv_pipe_init(loop, &c->wr, 0);
	uv_pipe_init(loop, &c->rd, 0);
	c->wr.data = c->rd.data = c;
	c->open_handles = 2;
	int r = uv_pipe_open(&c->wr, to_agent);
	if (r == 0)
		r = uv_pipe_open(&c->rd, from_agent);
	if (r == 0)
		r = uv_read_start((uv_stream_t *)&c->rd, on_alloc, on_read);
	if (r < 0) {
		c->closing = true;
		c->on_closed = NULL;
		uv_close((uv_handle_t *)&c->rd, handle_closed);
		uv_close((uv_handle_t *)&c->wr, handle_closed);
		return hutch_err_set(err, -r, "agent pipes: %s", uv_strerror(r));
	}
	agent_buf_t b = {0};
	agent_fb_t fb;
	agent_frame_begin(&fb, &b, AGENT_HELLO, 0);
	agent_frame_u32(&fb, AGENT_F_VERSION, AGENT_PROTO_VERSION);
	finish(c, &fb, &b);
	*out = c;
	return 0;
}
