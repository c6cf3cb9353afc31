#include "hutch_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hutch_client {
	hc_channel_t *ch;
	char *address;
	int timeout_ms;
};

struct hutch_exec {
	hutch_client_t *c;
	hc_call_t *call;
	ProtobufCMessage *last; /* the message the last event points into */
	bool exited;
};

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v && *v ? v : fallback;
}

int hutch_client_open(const hutch_client_opts_t *opts, hutch_client_t **out, hutch_err_t *err)
{
	hutch_client_opts_t o = opts ? *opts : (hutch_client_opts_t){0};
	const char *addr = o.address;
	if (!addr)
		addr = getenv("HUTCH_ADDRESS") && *getenv("HUTCH_ADDRESS") ? getenv("HUTCH_ADDRESS")
									   : env_or("HUTCH_SOCKET", HUTCH_DEFAULT_SOCKET);
	char *target = NULL;
	if (addr[0] == '/' || addr[0] == '.') {
		if (asprintf(&target, "unix:%s", addr) < 0)
			target = NULL;
	} else {
		target = strdup(addr);
	}
	if (!target)
		return hutch_err_set(err, ENOMEM, "out of memory");
	bool unix_sock = strncmp(target, "unix:", 5) == 0;
	hc_channel_opts_t co = {
		.ca_file = o.ca_file ? o.ca_file : getenv("HUTCH_CA_FILE"),
		.tls = !unix_sock && !o.plaintext,
		.api_key = o.api_key ? o.api_key : getenv("HUTCH_API_KEY"),
	};
	hc_channel_t *ch;
	int r = hc_channel_open(target, &co, &ch, err);
	if (r < 0) {
		hutch_err_prefix(err, "connect to hutchd at %s", unix_sock ? target + 5 : target);
		free(target);
		return r;
	}
	hutch_client_t *c = calloc(1, sizeof *c);
	if (!c) {
		hc_channel_close(ch);
		free(target);
		return hutch_err_set(err, ENOMEM, "out of memory");
	}
	c->ch = ch;
	c->address = target;
	c->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : 60000;
	*out = c;
	return 0;
}

void hutch_client_close(hutch_client_t *c)
{
	if (!c)
		return;
	hc_channel_close(c->ch);
	free(c->address);
	free(c);
}

const char *hutch_client_address(const hutch_client_t *c)
{
	return c->address;
}

hc_channel_t *hutch_client_channel(hutch_client_t *c)
{
	return c->ch;
}

/* The server's message is what the user should read; the status name is
 * kept for the cases where it helps ("DEADLINE_EXCEEDED"). */
static int call_failed(int r, int status, hutch_err_t *err)
{
	if (!err)
		return r;
	if (status == HC_STATUS_UNAVAILABLE && !strstr(err->message, "hutchd")) {
		hutch_err_prefix(err, "hutchd unavailable");
		return r;
	}
	/* "/pkg.Svc/Method: STATUS: message": the server's message is what
	 * the user needs; keep the status name only where it says more. */
	const char *name = hc_status_name(status);
	char needle[64];
	snprintf(needle, sizeof needle, ": %s: ", name);
	const char *p = strstr(err->message, needle);
	bool keep = status == HC_STATUS_DEADLINE_EXCEEDED || status == HC_STATUS_UNKNOWN ||
		    status == HC_STATUS_INTERNAL;
	if (!keep && p && err->message[0] == '/') {
		p += strlen(needle);
		memmove(err->message, p, strlen(p) + 1);
	} else if (!keep && strncmp(err->message, needle + 2, strlen(needle) - 2) == 0) {
		/* "STATUS: message" */
		p = err->message + strlen(needle) - 2;
		memmove(err->message, p, strlen(p) + 1);
	}
	return r;
}

int hutch_call(hutch_client_t *c, const char *path, const ProtobufCMessage *req,
	       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
	       hutch_err_t *err)
{
	int status = 0;
	int r = hc_unary(c->ch, path, req, resp_desc, resp, c->timeout_ms, NULL, 0, &status, err);
	return r < 0 ? call_failed(r, status, err) : 0;
}

int hutch_status(hutch_client_t *c, Hutch__V1__StatusResponse **out, hutch_err_t *err)
{
	Hutch__V1__StatusRequest req = HUTCH__V1__STATUS_REQUEST__INIT;
	return hutch_call(c, "/hutch.v1.Daemon/Status", &req.base,
			  &hutch__v1__status_response__descriptor, (ProtobufCMessage **)out, err);
}

int hutch_sandbox_create(hutch_client_t *c, const Hutch__V1__SandboxSpec *spec,
			 Hutch__V1__Sandbox **out, hutch_err_t *err)
{
	Hutch__V1__CreateSandboxRequest req = HUTCH__V1__CREATE_SANDBOX_REQUEST__INIT;
	req.spec = (Hutch__V1__SandboxSpec *)spec;
	return hutch_call(c, "/hutch.v1.Sandboxes/Create", &req.base,
			  &hutch__v1__sandbox__descriptor, (ProtobufCMessage **)out, err);
}

int hutch_sandbox_get(hutch_client_t *c, const char *id, Hutch__V1__Sandbox **out,
		      hutch_err_t *err)
{
	Hutch__V1__GetSandboxRequest req = HUTCH__V1__GET_SANDBOX_REQUEST__INIT;
	req.id = (char *)id;
	return hutch_call(c, "/hutch.v1.Sandboxes/Get", &req.base, &hutch__v1__sandbox__descriptor,
			  (ProtobufCMessage **)out, err);
}

int hutch_sandbox_list(hutch_client_t *c, bool all, Hutch__V1__ListSandboxesResponse **out,
		       hutch_err_t *err)
{
	Hutch__V1__ListSandboxesRequest req = HUTCH__V1__LIST_SANDBOXES_REQUEST__INIT;
	req.all = all;
	return hutch_call(c, "/hutch.v1.Sandboxes/List", &req.base,
			  &hutch__v1__list_sandboxes_response__descriptor, (ProtobufCMessage **)out,
			  err);
}

int hutch_sandbox_stop(hutch_client_t *c, const char *id, int64_t grace_ms,
		       Hutch__V1__Sandbox **out, hutch_err_t *err)
{
	Hutch__V1__StopSandboxRequest req = HUTCH__V1__STOP_SANDBOX_REQUEST__INIT;
	req.id = (char *)id;
	req.grace_ms = grace_ms;
	Hutch__V1__Sandbox *sb = NULL;
	int r = hutch_call(c, "/hutch.v1.Sandboxes/Stop", &req.base, &hutch__v1__sandbox__descriptor,
			   (ProtobufCMessage **)&sb, err);
	if (r == 0 && out)
		*out = sb;
	else if (sb)
		protobuf_c_message_free_unpacked(&sb->base, NULL);
	return r;
}

int hutch_sandbox_delete(hutch_client_t *c, const char *id, hutch_err_t *err)
{
	Hutch__V1__DeleteSandboxRequest req = HUTCH__V1__DELETE_SANDBOX_REQUEST__INIT;
	req.id = (char *)id;
	ProtobufCMessage *resp = NULL;
	int r = hutch_call(c, "/hutch.v1.Sandboxes/Delete", &req.base,
			   &hutch__v1__delete_sandbox_response__descriptor, &resp, err);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}

/* Appends piece to *acc, grown with realloc (protobuf-c's default allocator
 * is malloc, and free_unpacked frees the result). */
static int bytes_append(ProtobufCBinaryData *acc, const ProtobufCBinaryData *piece)
{
	if (piece->len == 0)
		return 0;
	uint8_t *p = realloc(acc->data, acc->len + piece->len);
	if (!p)
		return -ENOMEM;
	memcpy(p + acc->len, piece->data, piece->len);
	acc->data = p;
	acc->len += piece->len;
	return 0;
}

/* The same for the _text fields, as C strings: a piece whose output holds a
 * NUL ends the text there (stdout has every byte), and later pieces are not
 * appended, so the text is the whole output's up to its first NUL. */
static int text_append(char **acc, bool *ended, const char *piece, const ProtobufCBinaryData *raw)
{
	if (*ended)
		return 0;
	if (raw->len && memchr(raw->data, '\0', raw->len))
		*ended = true;
	size_t have = strlen(*acc), add = strlen(piece);
	if (add == 0)
		return 0;
	bool owned = *acc != protobuf_c_empty_string;
	char *p = realloc(owned ? *acc : NULL, have + add + 1);
	if (!p)
		return -ENOMEM;
	if (!owned)
		p[0] = '\0';
	memcpy(p + have, piece, add + 1);
	*acc = p;
	return 0;
}

/* Folds one RunResponse piece into acc: output appended, status taken. */
static int run_merge(Hutch__V1__RunResponse *acc, const Hutch__V1__RunResponse *r, bool ended[2])
{
	if (bytes_append(&acc->stdout, &r->stdout) < 0 || bytes_append(&acc->stderr, &r->stderr) < 0 ||
	    text_append(&acc->stdout_text, &ended[0], r->stdout_text, &r->stdout) < 0 ||
	    text_append(&acc->stderr_text, &ended[1], r->stderr_text, &r->stderr) < 0)
		return -ENOMEM;
	acc->exit_code = r->exit_code;
	acc->signal = r->signal;
	acc->oom_killed = r->oom_killed;
	acc->timed_out = r->timed_out;
	acc->truncated = r->truncated;
	return 0;
}

int hutch_sandbox_run_argv(hutch_client_t *c, const char *sandbox, const char *const *argv,
			   Hutch__V1__RunResponse **out, hutch_err_t *err)
{
	Hutch__V1__ExecStart start = HUTCH__V1__EXEC_START__INIT;
	start.sandbox_id = (char *)sandbox;
	size_t n = 0;
	while (argv && argv[n])
		n++;
	start.argv = (char **)argv;
	start.n_argv = n;
	Hutch__V1__RunRequest req = HUTCH__V1__RUN_REQUEST__INIT;
	req.start = &start;
	*out = NULL;
	/* A command runs as long as it runs: no deadline beyond its own.
	 * Large output arrives in several messages (see RunResponse). */
	hc_call_t *call;
	int r = hc_call_start(c->ch, "/hutch.v1.Sandboxes/Run", -1, NULL, 0, &call, err);
	if (r < 0)
		return call_failed(r, HC_STATUS_UNAVAILABLE, err);
	r = hc_call_send(call, &req.base, err);
	if (r == 0)
		r = hc_call_close_send(call, err);
	Hutch__V1__RunResponse *acc = NULL;
	bool ended[2] = {false, false};
	while (r == 0) {
		Hutch__V1__RunResponse *piece = NULL;
		r = hc_call_recv(call, &hutch__v1__run_response__descriptor,
				 (ProtobufCMessage **)&piece, -1, err);
		if (r != 1)
			break;
		r = 0;
		if (!acc) {
			acc = piece; /* the first piece is the accumulator */
			ended[0] = acc->stdout.len && memchr(acc->stdout.data, '\0', acc->stdout.len);
			ended[1] = acc->stderr.len && memchr(acc->stderr.data, '\0', acc->stderr.len);
			continue;
		}
		if (run_merge(acc, piece, ended) < 0)
			r = hutch_err_set(err, ENOMEM, "out of memory");
		protobuf_c_message_free_unpacked(&piece->base, NULL);
	}
	if (r == 0 && !acc)
		r = hutch_err_set(err, EPROTO, "/hutch.v1.Sandboxes/Run: no response message");
	int status = r == 0 ? HC_STATUS_OK
			    : hc_call_status(call) >= 0 ? hc_call_status(call) : HC_STATUS_INTERNAL;
	if (r < 0 && hc_call_status(call) > 0)
		hutch_err_prefix(err, "/hutch.v1.Sandboxes/Run");
	hc_call_free(call);
	if (r < 0) {
		if (acc)
			protobuf_c_message_free_unpacked(&acc->base, NULL);
		return call_failed(r, status, err);
	}
	*out = acc;
	return 0;
}

/* ---- exec ---- */

static int exec_send(hutch_exec_t *x, Hutch__V1__ExecRequest *req, hutch_err_t *err)
{
	return hc_call_send(x->call, &req->base, err);
}

int hutch_exec_start(hutch_client_t *c, const Hutch__V1__ExecStart *start, hutch_exec_t **out,
		     hutch_err_t *err)
{
	hc_call_t *call;
	int r = hc_call_start(c->ch, "/hutch.v1.Sandboxes/Exec", -1, NULL, 0, &call, err);
	if (r < 0)
		return r;
	hutch_exec_t *x = calloc(1, sizeof *x);
	if (!x) {
		hc_call_free(call);
		return hutch_err_set(err, ENOMEM, "out of memory");
	}
	x->c = c;
	x->call = call;
	Hutch__V1__ExecRequest req = HUTCH__V1__EXEC_REQUEST__INIT;
	req.msg_case = HUTCH__V1__EXEC_REQUEST__MSG_START;
	req.start = (Hutch__V1__ExecStart *)start;
	r = exec_send(x, &req, err);
	if (r < 0) {
		hutch_exec_free(x);
		return r;
	}
	*out = x;
	return 0;
}

int hutch_exec_stdin(hutch_exec_t *x, const void *data, size_t n, hutch_err_t *err)
{
	Hutch__V1__ExecRequest req = HUTCH__V1__EXEC_REQUEST__INIT;
	req.msg_case = HUTCH__V1__EXEC_REQUEST__MSG_STDIN;
	req.stdin.data = (uint8_t *)data;
	req.stdin.len = n;
	return exec_send(x, &req, err);
}

int hutch_exec_close_stdin(hutch_exec_t *x, hutch_err_t *err)
{
	Hutch__V1__ExecRequest req = HUTCH__V1__EXEC_REQUEST__INIT;
	req.msg_case = HUTCH__V1__EXEC_REQUEST__MSG_CLOSE_STDIN;
	req.close_stdin = true;
	return exec_send(x, &req, err);
}

int hutch_exec_signal(hutch_exec_t *x, int signum, hutch_err_t *err)
{
	Hutch__V1__ExecRequest req = HUTCH__V1__EXEC_REQUEST__INIT;
	req.msg_case = HUTCH__V1__EXEC_REQUEST__MSG_SIGNAL;
	req.signal = signum;
	return exec_send(x, &req, err);
}

int hutch_exec_resize(hutch_exec_t *x, uint32_t rows, uint32_t cols, hutch_err_t *err)
{
	Hutch__V1__WindowSize ws = HUTCH__V1__WINDOW_SIZE__INIT;
	ws.rows = rows;
	ws.cols = cols;
	Hutch__V1__ExecRequest req = HUTCH__V1__EXEC_REQUEST__INIT;
	req.msg_case = HUTCH__V1__EXEC_REQUEST__MSG_RESIZE;
	req.resize = &ws;
	return exec_send(x, &req, err);
}

int hutch_exec_next(hutch_exec_t *x, int timeout_ms, hutch_exec_event_t *ev, hutch_err_t *err)
{
	if (x->last) {
		protobuf_c_message_free_unpacked(x->last, NULL);
		x->last = NULL;
	}
	ProtobufCMessage *m = NULL;
	int r = hc_call_recv(x->call, &hutch__v1__exec_response__descriptor, &m, timeout_ms, err);
	if (r == -EAGAIN)
		return r;
	if (r < 0)
		return call_failed(r, hc_call_status(x->call), err);
	if (r == 0)
		return x->exited ? 0 : hutch_err_set(err, EPROTO, "exec stream ended without an exit status");
	x->last = m;
	Hutch__V1__ExecResponse *resp = (Hutch__V1__ExecResponse *)m;
	memset(ev, 0, sizeof *ev);
	switch (resp->msg_case) {
	case HUTCH__V1__EXEC_RESPONSE__MSG_STARTED:
		ev->kind = HUTCH_EXEC_STARTED;
		break;
	case HUTCH__V1__EXEC_RESPONSE__MSG_STDOUT:
		ev->kind = HUTCH_EXEC_STDOUT;
		ev->data = resp->stdout.data;
		ev->len = resp->stdout.len;
		break;
	case HUTCH__V1__EXEC_RESPONSE__MSG_STDERR:
		ev->kind = HUTCH_EXEC_STDERR;
		ev->data = resp->stderr.data;
		ev->len = resp->stderr.len;
		break;
	case HUTCH__V1__EXEC_RESPONSE__MSG_EXIT:
		ev->kind = HUTCH_EXEC_EXIT;
		ev->exit_code = resp->exit ? resp->exit->exit_code : -1;
		ev->signal = resp->exit ? resp->exit->signal : 0;
		ev->oom_killed = resp->exit && resp->exit->oom_killed;
		ev->timed_out = resp->exit && resp->exit->timed_out;
		x->exited = true;
		break;
	default:
		return hutch_err_set(err, EPROTO, "unexpected exec message");
	}
	return 1;
}

int hutch_exec_fd(const hutch_exec_t *x)
{
	return hc_channel_fd(x->c->ch);
}

short hutch_exec_events(const hutch_exec_t *x)
{
	return hc_channel_events(x->c->ch);
}

bool hutch_exec_writable(const hutch_exec_t *x)
{
	return hc_call_writable(x->call);
}

void hutch_exec_free(hutch_exec_t *x)
{
	if (!x)
		return;
	if (x->last)
		protobuf_c_message_free_unpacked(x->last, NULL);
	hc_call_free(x->call);
	free(x);
}

/* ---- files ---- */

int hutch_files_put(hutch_client_t *c, const char *sandbox, const char *path, int fd,
		    bool tar, uint32_t mode, int64_t *bytes_out, hutch_err_t *err)
{
	hc_call_t *call;
	int r = hc_call_start(c->ch, "/hutch.v1.Sandboxes/PutFiles", -1, NULL, 0, &call, err);
	if (r < 0)
		return r;
	Hutch__V1__PutFilesHeader h = HUTCH__V1__PUT_FILES_HEADER__INIT;
	h.sandbox_id = (char *)sandbox;
	h.path = (char *)path;
	h.tar = tar;
	h.mode = mode;
	Hutch__V1__PutFilesRequest req = HUTCH__V1__PUT_FILES_REQUEST__INIT;
	req.msg_case = HUTCH__V1__PUT_FILES_REQUEST__MSG_HEADER;
	req.header = &h;
	r = hc_call_send(call, &req.base, err);
	static uint8_t buf[256 * 1024];
	while (r == 0) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = hutch_err_sys(err, errno, "read upload");
			hc_call_cancel(call);
			break;
		}
		if (n == 0)
			break;
		Hutch__V1__PutFilesRequest d = HUTCH__V1__PUT_FILES_REQUEST__INIT;
		d.msg_case = HUTCH__V1__PUT_FILES_REQUEST__MSG_DATA;
		d.data.data = buf;
		d.data.len = (size_t)n;
		r = hc_call_send(call, &d.base, err);
	}
	if (r == 0)
		r = hc_call_close_send(call, err);
	ProtobufCMessage *m = NULL;
	int rr = hc_call_recv(call, &hutch__v1__put_files_response__descriptor, &m, -1, err);
	/* The server's status explains a failed send better than the send. */
	if (rr < 0)
		r = rr;
	else if (r == 0 && rr == 0)
		r = hutch_err_set(err, EPROTO, "upload ended without a reply");
	if (m) {
		if (bytes_out)
			*bytes_out = ((Hutch__V1__PutFilesResponse *)m)->bytes;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	hc_call_free(call);
	return r;
}

int hutch_files_get(hutch_client_t *c, const char *sandbox, const char *path, int fd,
		    bool tar, Hutch__V1__FileInfo **info_out, hutch_err_t *err)
{
	hc_call_t *call;
	int r = hc_call_start(c->ch, "/hutch.v1.Sandboxes/GetFiles", -1, NULL, 0, &call, err);
	if (r < 0)
		return r;
	Hutch__V1__GetFilesRequest req = HUTCH__V1__GET_FILES_REQUEST__INIT;
	req.sandbox_id = (char *)sandbox;
	req.path = (char *)path;
	req.tar = tar;
	r = hc_call_send(call, &req.base, err);
	if (r == 0)
		r = hc_call_close_send(call, err);
	while (r == 0) {
		ProtobufCMessage *m = NULL;
		int rr = hc_call_recv(call, &hutch__v1__get_files_response__descriptor, &m, -1, err);
		if (rr <= 0) {
			r = rr;
			break;
		}
		Hutch__V1__GetFilesResponse *g = (Hutch__V1__GetFilesResponse *)m;
		if (g->msg_case == HUTCH__V1__GET_FILES_RESPONSE__MSG_INFO && info_out && !*info_out) {
			*info_out = g->info;
			g->info = NULL;
			g->msg_case = HUTCH__V1__GET_FILES_RESPONSE__MSG__NOT_SET;
		} else if (g->msg_case == HUTCH__V1__GET_FILES_RESPONSE__MSG_DATA) {
			const uint8_t *p = g->data.data;
			size_t left = g->data.len;
			while (left > 0 && r == 0) {
				ssize_t w = write(fd, p, left);
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					r = hutch_err_sys(err, errno, "write download");
				else
					p += w, left -= (size_t)w;
			}
		}
		protobuf_c_message_free_unpacked(m, NULL);
	}
	hc_call_free(call);
	return r;
}

int hutch_files_list(hutch_client_t *c, const char *sandbox, const char *path,
		     Hutch__V1__ListFilesResponse **out, hutch_err_t *err)
{
	Hutch__V1__ListFilesRequest req = HUTCH__V1__LIST_FILES_REQUEST__INIT;
	req.sandbox_id = (char *)sandbox;
	req.path = (char *)path;
	return hutch_call(c, "/hutch.v1.Sandboxes/ListFiles", &req.base,
			  &hutch__v1__list_files_response__descriptor, (ProtobufCMessage **)out, err);
}

int hutch_files_stat(hutch_client_t *c, const char *sandbox, const char *path,
		     Hutch__V1__FileInfo **out, hutch_err_t *err)
{
	Hutch__V1__StatFileRequest req = HUTCH__V1__STAT_FILE_REQUEST__INIT;
	req.sandbox_id = (char *)sandbox;
	req.path = (char *)path;
	return hutch_call(c, "/hutch.v1.Sandboxes/StatFile", &req.base,
			  &hutch__v1__file_info__descriptor, (ProtobufCMessage **)out, err);
}

int hutch_files_remove(hutch_client_t *c, const char *sandbox, const char *path,
		       bool recursive, hutch_err_t *err)
{
	Hutch__V1__RemoveFileRequest req = HUTCH__V1__REMOVE_FILE_REQUEST__INIT;
	req.sandbox_id = (char *)sandbox;
	req.path = (char *)path;
	req.recursive = recursive;
	ProtobufCMessage *resp = NULL;
	int r = hutch_call(c, "/hutch.v1.Sandboxes/RemoveFile", &req.base,
			   &hutch__v1__remove_file_response__descriptor, &resp, err);
	if (resp)
		protobuf_c_message_free_unpacked(resp, NULL);
	return r;
}
