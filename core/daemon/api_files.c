/* hutch.v1.Sandboxes files: PutFiles (client stream: one file, or a tar
 * stream unpacked as it arrives), GetFiles (server stream: one file, or a
 * tar stream of a tree), ListFiles, StatFile, RemoveFile. All of it goes
 * through the sandbox's agent, so it sees exactly the sandbox's filesystem. */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "sandbox_pb.h"
#include "strbuf.h"
#include "tar_stream.h"

/* Above this much queued towards the agent, a client's upload waits. */
#define PUT_HIGH_WATER (4 * 1024 * 1024)

static const char *type_name(uint32_t t)
{
	switch (t) {
	case AGENT_FT_FILE: return "file";
	case AGENT_FT_DIR: return "dir";
	case AGENT_FT_SYMLINK: return "symlink";
	default: return "other";
	}
}

static void entry_to_info(const agent_entry_t *e, Hutch__V1__FileInfo *fi)
{
	hutch__v1__file_info__init(fi);
	fi->path = (char *)e->path;
	fi->type = (char *)type_name(e->type);
	fi->size = e->size;
	fi->mode = e->mode;
	fi->mtime_unix = e->mtime;
	fi->link_target = (char *)(e->link ? e->link : "");
}

static bool valid_path(const char *p)
{
	return p && p[0] == '/' && strlen(p) < 4000;
}

/* Finds the sandbox and its live agent, or ends the call saying why. */
static agent_conn_t *files_target(grpc_call_t *call, const char *id, const char *path,
				  sandbox_t **sb_out)
{
	daemon_t *d = grpc_call_service_data(call);
	hutch_err_t err = {0};
	if (!valid_path(path)) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "path must be absolute");
		return NULL;
	}
	sandbox_t *sb = sandbox_find(d->sandboxes, daemon_call_tenant(call), id);
	if (!sb) {
		hutch_err_set(&err, ENOENT, "sandbox `%.200s` not found", id ? id : "");
		api_fail(call, &err);
		return NULL;
	}
	agent_conn_t *c = sandbox_agent(sb, &err);
	if (!c) {
		api_fail(call, &err);
		return NULL;
	}
	sandbox_activity(sb, 0);
	*sb_out = sb;
	return c;
}

/* ---- small unary operations: list, stat, remove ---- */

typedef struct small_op {
	grpc_call_t *call;
	agent_conn_t *conn;
	uint32_t sid;
	int kind; /* AGENT_FILE_LIST / STAT / REMOVE */
	Hutch__V1__FileInfo **infos;
	size_t n;
	strbuf_t names; /* storage for the infos' strings */
	char **keep;
} small_op_t;

static void small_free(small_op_t *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->infos[i]);
	free(o->infos);
	strv_free(o->keep);
	grpc_call_set_data(o->call, NULL);
	grpc_call_unref(o->call);
	free(o);
}

static void small_entry(void *ud, const agent_entry_t *e)
{
	small_op_t *o = ud;
	Hutch__V1__FileInfo *fi = xmalloc(sizeof *fi);
	agent_entry_t copy = *e;
	strv_push(&o->keep, xstrdup(e->path));
	copy.path = o->keep[strv_len(o->keep) - 1];
	strv_push(&o->keep, xstrdup(e->link ? e->link : ""));
	copy.link = o->keep[strv_len(o->keep) - 1];
	entry_to_info(&copy, fi);
	o->infos = xrealloc(o->infos, (o->n + 1) * sizeof *o->infos);
	o->infos[o->n++] = fi;
}

static void small_done(void *ud)
{
	small_op_t *o = ud;
	agent_stream_forget(o->conn, o->sid, false);
	if (o->kind == AGENT_FILE_LIST) {
		Hutch__V1__ListFilesResponse r = HUTCH__V1__LIST_FILES_RESPONSE__INIT;
		r.files = o->infos;
		r.n_files = o->n;
		grpc_call_send(o->call, &r.base);
	} else if (o->kind == AGENT_FILE_STAT) {
		if (o->n != 1) {
			grpc_call_finish(o->call, GRPC_STATUS_INTERNAL, "stat: no answer from the sandbox");
			small_free(o);
			return;
		}
		grpc_call_send(o->call, &o->infos[0]->base);
	} else {
		Hutch__V1__RemoveFileResponse r = HUTCH__V1__REMOVE_FILE_RESPONSE__INIT;
		grpc_call_send(o->call, &r.base);
	}
	grpc_call_finish(o->call, GRPC_STATUS_OK, NULL);
	small_free(o);
}

static void small_error(void *ud, int e, const char *msg)
{
	small_op_t *o = ud;
	hutch_err_t err = {0};
	hutch_err_set(&err, e, "%s", msg);
	api_fail(o->call, &err);
	small_free(o);
}

static const agent_stream_ops_t small_ops = {
	.on_entry = small_entry,
	.on_done = small_done,
	.on_error = small_error,
};

static void small_cancel(grpc_call_t *call)
{
	small_op_t *o = grpc_call_get_data(call);
	if (!o)
		return;
	agent_stream_forget(o->conn, o->sid, true);
	small_free(o);
}

static void small_start(grpc_call_t *call, int kind, const char *id, const char *path,
			bool recursive)
{
	sandbox_t *sb;
	agent_conn_t *c = files_target(call, id, path, &sb);
	if (!c)
		return;
	small_op_t *o = xcalloc(1, sizeof *o);
	o->call = call;
	o->conn = c;
	o->kind = kind;
	grpc_call_ref(call);
	grpc_call_set_data(call, o);
	o->sid = agent_stream_open(c, &small_ops, o);
	if (agent_send_file_op(c, o->sid, (uint8_t)kind, path, recursive) < 0)
		small_error(o, EAGAIN, "sandbox agent unreachable");
}

static void list_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__ListFilesRequest *r = (const void *)msg;
	small_start(call, AGENT_FILE_LIST, r->sandbox_id, r->path, false);
}

static void stat_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__StatFileRequest *r = (const void *)msg;
	small_start(call, AGENT_FILE_STAT, r->sandbox_id, r->path, false);
}

static void remove_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__RemoveFileRequest *r = (const void *)msg;
	small_start(call, AGENT_FILE_REMOVE, r->sandbox_id, r->path, r->recursive);
}

/* ---- GetFiles ---- */

typedef struct get_op {
	grpc_call_t *call;
	agent_conn_t *conn;
	uint32_t sid;
	bool tar;
	bool info_sent;
	bool blocked;
	uint32_t owed;
	int64_t cur_size;
	int entries;
} get_op_t;

static void get_free(get_op_t *g)
{
	grpc_call_set_data(g->call, NULL);
	grpc_call_unref(g->call);
	free(g);
}

static int get_send_data(get_op_t *g, const uint8_t *data, size_t n)
{
	Hutch__V1__GetFilesResponse r = HUTCH__V1__GET_FILES_RESPONSE__INIT;
	r.msg_case = HUTCH__V1__GET_FILES_RESPONSE__MSG_DATA;
	r.data.data = (uint8_t *)data;
	r.data.len = n;
	return grpc_call_send(g->call, &r.base);
}

static void get_entry(void *ud, const agent_entry_t *e)
{
	get_op_t *g = ud;
	g->entries++;
	if (!g->info_sent) {
		Hutch__V1__FileInfo fi;
		entry_to_info(e, &fi);
		Hutch__V1__GetFilesResponse r = HUTCH__V1__GET_FILES_RESPONSE__INIT;
		r.msg_case = HUTCH__V1__GET_FILES_RESPONSE__MSG_INFO;
		r.info = &fi;
		grpc_call_send(g->call, &r.base);
		g->info_sent = true;
	}
	if (!g->tar)
		return;
	tar_entry_t *te = xcalloc(1, sizeof *te);
	snprintf(te->path, sizeof te->path, "%s", e->path);
	te->type = e->type == AGENT_FT_DIR ? TAR_DIR : e->type == AGENT_FT_SYMLINK ? TAR_SYMLINK : TAR_FILE;
	if (e->type == AGENT_FT_OTHER) {
		free(te);
		return; /* sockets, devices: not archived */
	}
	if (e->link)
		snprintf(te->link, sizeof te->link, "%s", e->link);
	te->mode = e->mode;
	te->size = e->type == AGENT_FT_FILE ? e->size : 0;
	te->mtime = e->mtime;
	g->cur_size = 0;
	uint8_t hdr[3 * TAR_BLOCK + 3 * TAR_PATH_MAX];
	size_t n = tar_header_encode(te, hdr, sizeof hdr);
	free(te);
	if (n)
		get_send_data(g, hdr, n);
}

static void get_data(void *ud, const uint8_t *data, size_t n)
{
	get_op_t *g = ud;
	g->cur_size += (int64_t)n;
	int s = get_send_data(g, data, n);
	if (s == 1 || g->blocked) {
		g->blocked = true;
		g->owed += (uint32_t)n;
	} else if (s == 0) {
		agent_send_credit(g->conn, g->sid, (uint32_t)n);
	}
}

static void get_data_end(void *ud)
{
	get_op_t *g = ud;
	if (!g->tar)
		return;
	static const uint8_t zeros[TAR_BLOCK];
	size_t pad = tar_padding(g->cur_size);
	if (pad)
		get_send_data(g, zeros, pad);
}

static void get_done(void *ud)
{
	get_op_t *g = ud;
	if (g->tar) {
		static const uint8_t end[2 * TAR_BLOCK];
		get_send_data(g, end, sizeof end);
	}
	agent_stream_forget(g->conn, g->sid, false);
	grpc_call_finish(g->call, GRPC_STATUS_OK, NULL);
	get_free(g);
}

static void get_error(void *ud, int e, const char *msg)
{
	get_op_t *g = ud;
	hutch_err_t err = {0};
	if (e == EISDIR)
		hutch_err_set(&err, e, "%s (ask for a tar stream to copy a directory)", msg);
	else
		hutch_err_set(&err, e, "%s", msg);
	api_fail(g->call, &err);
	get_free(g);
}

static const agent_stream_ops_t get_ops = {
	.on_entry = get_entry,
	.on_data = get_data,
	.on_data_end = get_data_end,
	.on_done = get_done,
	.on_error = get_error,
};

static void get_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__GetFilesRequest *r = (const void *)msg;
	sandbox_t *sb;
	agent_conn_t *c = files_target(call, r->sandbox_id, r->path, &sb);
	if (!c)
		return;
	get_op_t *g = xcalloc(1, sizeof *g);
	g->call = call;
	g->conn = c;
	g->tar = r->tar;
	grpc_call_ref(call);
	grpc_call_set_data(call, g);
	g->sid = agent_stream_open(c, &get_ops, g);
	if (agent_send_file_op(c, g->sid, AGENT_FILE_GET, r->path, r->tar) < 0)
		get_error(g, EAGAIN, "sandbox agent unreachable");
}

static void get_on_writable(grpc_call_t *call)
{
	get_op_t *g = grpc_call_get_data(call);
	if (!g || !g->blocked)
		return;
	g->blocked = false;
	if (g->owed)
		agent_send_credit(g->conn, g->sid, g->owed);
	g->owed = 0;
}

static void get_on_cancel(grpc_call_t *call)
{
	get_op_t *g = grpc_call_get_data(call);
	if (!g)
		return;
	agent_stream_forget(g->conn, g->sid, true);
	get_free(g);
}

/* ---- PutFiles ---- */

typedef struct put_op {
	grpc_call_t *call;
	daemon_t *d;
	agent_conn_t *conn;
	uint32_t sid;
	bool tar;
	char *dest;
	tar_reader_t *tr;
	int pending;     /* entries the agent has not confirmed */
	bool half_closed;
	bool done;
	int64_t bytes;
	bool paused;
	uv_timer_t drain;
	bool drain_init;
	bool in_file;    /* tar: a file entry is open on the agent */
} put_op_t;

static void put_drain_closed(uv_handle_t *h)
{
	free(h->data);
}

static void put_free(put_op_t *p)
{
	tar_reader_free(p->tr);
	free(p->dest);
	grpc_call_set_data(p->call, NULL);
	grpc_call_unref(p->call);
	if (p->drain_init) {
		uv_timer_stop(&p->drain);
		uv_close((uv_handle_t *)&p->drain, put_drain_closed);
	} else {
		free(p);
	}
}

static void put_fail(put_op_t *p, const hutch_err_t *err)
{
	if (p->done)
		return;
	p->done = true;
	if (p->sid)
		agent_stream_forget(p->conn, p->sid, true);
	api_fail(p->call, err);
	put_free(p);
}

static void put_maybe_finish(put_op_t *p)
{
	if (p->done || !p->half_closed || p->pending > 0)
		return;
	p->done = true;
	agent_stream_forget(p->conn, p->sid, false);
	Hutch__V1__PutFilesResponse r = HUTCH__V1__PUT_FILES_RESPONSE__INIT;
	r.bytes = p->bytes;
	grpc_call_send(p->call, &r.base);
	grpc_call_finish(p->call, GRPC_STATUS_OK, NULL);
	put_free(p);
}

static void put_done(void *ud)
{
	put_op_t *p = ud;
	p->pending--;
	put_maybe_finish(p);
}

static void put_error(void *ud, int e, const char *msg)
{
	put_op_t *p = ud;
	hutch_err_t err = {0};
	hutch_err_set(&err, e, "%s", msg);
	p->sid = 0;
	put_fail(p, &err);
}

static const agent_stream_ops_t put_ops = {
	.on_done = put_done,
	.on_error = put_error,
};

static void on_drain_check(uv_timer_t *t)
{
	put_op_t *p = t->data;
	if (p->paused && agent_conn_write_pending(p->conn) < PUT_HIGH_WATER / 2) {
		p->paused = false;
		uv_timer_stop(t);
		grpc_call_pause_recv(p->call, false);
	}
}

/* The agent reads as fast as it writes files; if it falls behind, the
 * client waits (no unbounded queue in hutchd). */
static void put_backpressure(put_op_t *p)
{
	if (p->paused || agent_conn_write_pending(p->conn) < PUT_HIGH_WATER)
		return;
	p->paused = true;
	grpc_call_pause_recv(p->call, true);
	if (!p->drain_init) {
		uv_timer_init(&p->d->loop, &p->drain);
		p->drain.data = p;
		p->drain_init = true;
	}
	uv_timer_start(&p->drain, on_drain_check, 2, 2);
}

static int tar_on_entry(void *ud, const tar_entry_t *e, hutch_err_t *err)
{
	put_op_t *p = ud;
	_cleanup_free_ char *path = xasprintf("%s/%s", strcmp(p->dest, "/") ? p->dest : "", e->path);
	uint32_t type = e->type == TAR_DIR ? AGENT_FT_DIR : e->type == TAR_SYMLINK ? AGENT_FT_SYMLINK
										  : AGENT_FT_FILE;
	uint32_t mode = e->mode ? e->mode : (e->type == TAR_DIR ? 0755 : 0644);
	if (agent_send_put(p->conn, p->sid, path, type, mode, e->type == TAR_SYMLINK ? e->link : NULL,
			   true) < 0)
		return hutch_err_set(err, EAGAIN, "sandbox agent unreachable");
	p->pending++;
	p->in_file = e->type == TAR_FILE;
	return 0;
}

static int tar_on_data(void *ud, const uint8_t *data, size_t n, hutch_err_t *err)
{
	put_op_t *p = ud;
	p->bytes += (int64_t)n;
	if (agent_send_data(p->conn, p->sid, data, n) < 0)
		return hutch_err_set(err, EAGAIN, "sandbox agent unreachable");
	return 0;
}

static int tar_on_entry_end(void *ud, hutch_err_t *err)
{
	put_op_t *p = ud;
	if (p->in_file && agent_send_data_end(p->conn, p->sid) < 0)
		return hutch_err_set(err, EAGAIN, "sandbox agent unreachable");
	p->in_file = false;
	return 0;
}

static const tar_reader_ops_t put_tar_ops = {
	.on_entry = tar_on_entry,
	.on_data = tar_on_data,
	.on_entry_end = tar_on_entry_end,
};

static void put_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__PutFilesRequest *r = (const void *)msg;
	put_op_t *p = grpc_call_get_data(call);
	hutch_err_t err = {0};
	if (!p) {
		if (r->msg_case != HUTCH__V1__PUT_FILES_REQUEST__MSG_HEADER || !r->header) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
					 "the first message must be the header");
			return;
		}
		const Hutch__V1__PutFilesHeader *h = r->header;
		if (h->mode > 07777) {
			grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "mode must be at most 07777");
			return;
		}
		sandbox_t *sb;
		agent_conn_t *c = files_target(call, h->sandbox_id, h->path, &sb);
		if (!c)
			return;
		p = xcalloc(1, sizeof *p);
		p->call = call;
		p->d = grpc_call_service_data(call);
		p->conn = c;
		p->tar = h->tar;
		p->dest = xstrdup(h->path);
		grpc_call_ref(call);
		grpc_call_set_data(call, p);
		p->sid = agent_stream_open(c, &put_ops, p);
		if (p->tar) {
			/* The destination directory itself, then the entries. */
			p->tr = tar_reader_new(&put_tar_ops, p);
			if (agent_send_put(c, p->sid, p->dest, AGENT_FT_DIR, 0755, NULL, true) < 0) {
				hutch_err_set(&err, EAGAIN, "sandbox agent unreachable");
				put_fail(p, &err);
				return;
			}
			p->pending = 1;
		} else {
			if (agent_send_put(c, p->sid, p->dest, AGENT_FT_FILE, h->mode ? h->mode : 0644, NULL,
					   true) < 0) {
				hutch_err_set(&err, EAGAIN, "sandbox agent unreachable");
				put_fail(p, &err);
				return;
			}
			p->pending = 1;
		}
		return;
	}
	if (p->done)
		return;
	if (r->msg_case != HUTCH__V1__PUT_FILES_REQUEST__MSG_DATA) {
		hutch_err_set(&err, EINVAL, "only data may follow the header");
		put_fail(p, &err);
		return;
	}
	if (p->tar) {
		if (tar_reader_feed(p->tr, r->data.data, r->data.len, &err) < 0) {
			put_fail(p, &err);
			return;
		}
	} else {
		p->bytes += (int64_t)r->data.len;
		if (agent_send_data(p->conn, p->sid, r->data.data, r->data.len) < 0) {
			hutch_err_set(&err, EAGAIN, "sandbox agent unreachable");
			put_fail(p, &err);
			return;
		}
	}
	put_backpressure(p);
}

static void put_on_half_close(grpc_call_t *call)
{
	put_op_t *p = grpc_call_get_data(call);
	hutch_err_t err = {0};
	if (!p) {
		/* No header at all. */
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "no header was sent");
		return;
	}
	if (p->done)
		return;
	if (p->tar) {
		if (tar_reader_finish(p->tr, &err) < 0) {
			put_fail(p, &err);
			return;
		}
	} else if (agent_send_data_end(p->conn, p->sid) < 0) {
		hutch_err_set(&err, EAGAIN, "sandbox agent unreachable");
		put_fail(p, &err);
		return;
	}
	p->half_closed = true;
	put_maybe_finish(p);
}

static void put_on_cancel(grpc_call_t *call)
{
	put_op_t *p = grpc_call_get_data(call);
	if (!p || p->done)
		return;
	p->done = true;
	agent_stream_forget(p->conn, p->sid, true);
	put_free(p);
}

static const grpc_method_t files_methods[] = {
	{.path = "/hutch.v1.Sandboxes/PutFiles", .request = &hutch__v1__put_files_request__descriptor,
	 .client_streaming = true, .on_message = put_on_message, .on_half_close = put_on_half_close,
	 .on_cancel = put_on_cancel},
	{.path = "/hutch.v1.Sandboxes/GetFiles", .request = &hutch__v1__get_files_request__descriptor,
	 .server_streaming = true, .on_message = get_on_message, .on_writable = get_on_writable,
	 .on_cancel = get_on_cancel},
	{.path = "/hutch.v1.Sandboxes/ListFiles", .request = &hutch__v1__list_files_request__descriptor,
	 .on_message = list_on_message, .on_cancel = small_cancel},
	{.path = "/hutch.v1.Sandboxes/StatFile", .request = &hutch__v1__stat_file_request__descriptor,
	 .on_message = stat_on_message, .on_cancel = small_cancel},
	{.path = "/hutch.v1.Sandboxes/RemoveFile", .request = &hutch__v1__remove_file_request__descriptor,
	 .on_message = remove_on_message, .on_cancel = small_cancel},
};

int api_files_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, files_methods,
				       sizeof files_methods / sizeof files_methods[0], d, err);
}
