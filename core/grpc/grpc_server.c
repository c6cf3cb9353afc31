/*
 * grpc_server.c: the server object: options, the method table, and the
 * shutdown sequence. Sockets and listeners are in grpc_transport.c.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cleanup.h"
#include "grpc_internal.h"
#include "grpc_transport.h"


void grpc_server_log(const grpc_server_t *server, int level, const char *fmt, ...)
{
	if (!server->opts.log)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	server->opts.log(server->opts.log_data, level, line);
}

static void fill_defaults(grpc_server_opts_t *o)
{
	if (!o->max_recv_message)
		o->max_recv_message = GRPC_DEFAULT_MAX_RECV_MESSAGE;
	if (o->max_recv_message > UINT32_MAX)
		o->max_recv_message = UINT32_MAX;
	if (!o->max_metadata)
		o->max_metadata = GRPC_DEFAULT_MAX_METADATA;
	if (!o->max_concurrent_streams)
		o->max_concurrent_streams = GRPC_DEFAULT_MAX_STREAMS;
	if (!o->stream_window)
		o->stream_window = GRPC_DEFAULT_STREAM_WINDOW;
	if (o->stream_window > NGHTTP2_MAX_WINDOW_SIZE)
		o->stream_window = NGHTTP2_MAX_WINDOW_SIZE;
	if (!o->conn_window)
		o->conn_window = GRPC_DEFAULT_CONN_WINDOW;
	if (o->conn_window > NGHTTP2_MAX_WINDOW_SIZE)
		o->conn_window = NGHTTP2_MAX_WINDOW_SIZE;
	if (!o->send_high_watermark)
		o->send_high_watermark = GRPC_DEFAULT_SEND_HIGH;
	if (!o->max_connections)
		o->max_connections = GRPC_DEFAULT_MAX_CONNECTIONS;
	if (!o->handshake_timeout_ms)
		o->handshake_timeout_ms = GRPC_DEFAULT_HANDSHAKE_MS;
}

int grpc_server_new(uv_loop_t *loop, const grpc_server_opts_t *opts, grpc_server_t **out,
		    hutch_err_t *err)
{
	_cleanup_free_ grpc_server_t *s = calloc(1, sizeof *s);
	if (!s)
		return hutch_err_set(err, ENOMEM, "grpc server: out of memory");
	s->read_buf = malloc(GRPC_READ_BUF_SIZE);
	if (!s->read_buf)
		return hutch_err_set(err, ENOMEM, "grpc server: out of memory");
	s->loop = loop;
	if (opts)
		s->opts = *opts;
	fill_defaults(&s->opts);
	grpc_list_init(&s->listeners);
	grpc_list_init(&s->sockets);
	grpc_list_init(&s->dirty);
	s->bound_port = -1;

	uv_prepare_init(loop, &s->prepare);
	s->prepare.data = s;
	uv_timer_init(loop, &s->sweep);
	s->sweep.data = s;
	/* The sweep must not keep a loop alive on its own. */
	uv_unref((uv_handle_t *)&s->sweep);
	s->open_handles = 2;

	/* A client that disconnects while we write must cost an EPIPE, not the
	 * process. Leave a handler or SIG_IGN the embedder chose alone. */
	struct sigaction sa;
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		signal(SIGPIPE, SIG_IGN);
		grpc_server_log(s, LOG_DEBUG, "SIGPIPE was at SIG_DFL; now ignored");
	}
	*out = steal_ptr(&s);
	return 0;
}

static int method_cmp(const void *a, const void *b)
{
	return strcmp((*(struct grpc_method_entry *const *)a)->path,
		      (*(struct grpc_method_entry *const *)b)->path);
}

static void method_entry_free(struct grpc_method_entry *e)
{
	if (e) {
		free(e->path);
		free(e);
	}
}

void grpc_server_each_service(const grpc_server_t *server,
			      void (*fn)(void *data, const char *name, size_t len), void *data)
{
	/* Paths are sorted, so a service's methods are adjacent. */
	const char *prev = NULL;
	size_t prev_len = 0;
	for (size_t i = 0; i < server->n_methods; i++) {
		const char *name = server->methods[i]->path + 1;
		const char *slash = strchr(name, '/');
		size_t len = slash ? (size_t)(slash - name) : strlen(name);
		if (prev && len == prev_len && memcmp(prev, name, len) == 0)
			continue;
		fn(data, name, len);
		prev = name;
		prev_len = len;
	}
}

int grpc_server_add_methods(grpc_server_t *server, const grpc_method_t *methods, size_t n,
			    void *service_data, hutch_err_t *err)
{
	for (size_t i = 0; i < n; i++) {
		const grpc_method_t *m = &methods[i];
		if (!m->path || m->path[0] != '/' || !m->request || !m->on_message)
			return hutch_err_set(err, EINVAL,
					     "grpc method %s: needs a /path, a request descriptor "
					     "and on_message",
					     m->path ? m->path : "(null)");
		if (grpc_server_find_method(server, m->path))
			return hutch_err_set(err, EEXIST, "grpc method %s: already registered",
					     m->path);
		for (size_t j = 0; j < i; j++)
			if (strcmp(methods[j].path, m->path) == 0)
				return hutch_err_set(err, EEXIST, "grpc method %s: listed twice",
						     m->path);
	}
	if (server->n_methods + n > server->cap_methods) {
		size_t cap = server->cap_methods ? server->cap_methods : 16;
		while (cap < server->n_methods + n)
			cap *= 2;
		struct grpc_method_entry **t = realloc(server->methods, cap * sizeof *t);
		if (!t)
			return hutch_err_set(err, ENOMEM, "grpc methods: out of memory");
		server->methods = t;
		server->cap_methods = cap;
	}
	/* Build every entry first so that failure leaves the table untouched. */
	_cleanup_free_ struct grpc_method_entry **fresh = calloc(n ? n : 1, sizeof *fresh);
	if (!fresh)
		return hutch_err_set(err, ENOMEM, "grpc methods: out of memory");
	for (size_t i = 0; i < n; i++) {
		struct grpc_method_entry *e = calloc(1, sizeof *e);
		if (e)
			e->path = strdup(methods[i].path);
		if (!e || !e->path) {
			method_entry_free(e);
			for (size_t j = 0; j < i; j++)
				method_entry_free(fresh[j]);
			return hutch_err_set(err, ENOMEM, "grpc methods: out of memory");
		}
		e->method = methods[i];
		e->method.path = e->path;
		e->service_data = service_data;
		fresh[i] = e;
	}
	for (size_t i = 0; i < n; i++)
		server->methods[server->n_methods++] = fresh[i];
	qsort(server->methods, server->n_methods, sizeof *server->methods, method_cmp);
	return 0;
}

const struct grpc_method_entry *grpc_server_find_method(const grpc_server_t *server,
							const char *path)
{
	if (!server->n_methods)
		return NULL;
	struct grpc_method_entry key = { .path = (char *)path };
	const struct grpc_method_entry *k = &key;
	struct grpc_method_entry **e = bsearch(&k, server->methods, server->n_methods,
					       sizeof *server->methods, method_cmp);
	return e ? *e : NULL;
}

int grpc_server_bound_port(const grpc_server_t *server)
{
	return server->bound_port;
}

static void server_free(grpc_server_t *server)
{
	for (size_t i = 0; i < server->n_methods; i++)
		method_entry_free(server->methods[i]);
	free(server->methods);
	free(server->read_buf);
	free(server);
}

static void internal_closed(uv_handle_t *h)
{
	grpc_server_handle_closed(h->data);
}

/* Closes the prepare and sweep handles once no listener or socket needs
 * them any more. */
static void maybe_close_internal(grpc_server_t *server)
{
	if (!server->shutting_down || server->internal_closing)
		return;
	if (!grpc_list_empty(&server->listeners) || !grpc_list_empty(&server->sockets))
		return;
	server->internal_closing = true;
	uv_close((uv_handle_t *)&server->prepare, internal_closed);
	uv_close((uv_handle_t *)&server->sweep, internal_closed);
}

void grpc_server_handle_closed(grpc_server_t *server)
{
	server->open_handles--;
	if (!server->shutting_down)
		return;
	maybe_close_internal(server);
	if (server->open_handles == 0) {
		void (*done)(void *) = server->done;
		void *data = server->done_data;
		server_free(server);
		if (done)
			done(data);
	}
}

void grpc_server_shutdown(grpc_server_t *server, void (*done)(void *data), void *data)
{
	server->shutting_down = true;
	server->done = done;
	server->done_data = data;
	grpc_transport_shutdown(server);
	maybe_close_internal(server);
}
