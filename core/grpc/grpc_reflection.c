/* gRPC server reflection: see grpc_reflection.h. v1 and v1alpha have the
 * same messages under two package names, so the v1alpha types serve both. */
#include "grpc_reflection.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "descriptor_index.pb-c.h"
#include "grpc/reflection/v1alpha/reflection.pb-c.h"
#include "strbuf.h"

typedef Grpc__Reflection__V1alpha__ServerReflectionRequest refl_request_t;
typedef Grpc__Reflection__V1alpha__ServerReflectionResponse refl_response_t;
typedef Hutch__Grpc__Descriptor__File fd_file_t;
typedef Hutch__Grpc__Descriptor__Message fd_message_t;

/* The descriptor set, parsed for one request. */
typedef struct fd_index {
	Hutch__Grpc__Descriptor__FileSet *set;
	fd_file_t **files; /* set->n_file of them; NULL where a file did not parse */
} fd_index_t;

static void index_close(fd_index_t *ix)
{
	if (ix->files)
		for (size_t i = 0; i < ix->set->n_file; i++)
			if (ix->files[i])
				protobuf_c_message_free_unpacked(&ix->files[i]->base, NULL);
	free(ix->files);
	if (ix->set)
		protobuf_c_message_free_unpacked(&ix->set->base, NULL);
	ix->files = NULL;
	ix->set = NULL;
}

static int index_open(const grpc_descriptor_set_t *s, fd_index_t *ix)
{
	*ix = (fd_index_t){0};
	ix->set = hutch__grpc__descriptor__file_set__unpack(NULL, s->len, s->data);
	if (!ix->set)
		return -EINVAL;
	ix->files = calloc(ix->set->n_file ? ix->set->n_file : 1, sizeof *ix->files);
	if (!ix->files) {
		index_close(ix);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ix->set->n_file; i++) {
		ix->files[i] = hutch__grpc__descriptor__file__unpack(NULL, ix->set->file[i].len,
								      ix->set->file[i].data);
		if (!ix->files[i]) {
			index_close(ix);
			return -EINVAL;
		}
	}
	return 0;
}

static ssize_t index_file_named(const fd_index_t *ix, const char *name)
{
	for (size_t i = 0; i < ix->set->n_file; i++)
		if (strcmp(ix->files[i]->name, name) == 0)
			return (ssize_t)i;
	return -1;
}

/* sym == scope + name, scope being "" or "a.b." */
static bool is_named(const char *sym, const char *scope, const char *name)
{
	size_t n = strlen(scope);
	return strncmp(sym, scope, n) == 0 && strcmp(sym + n, name) == 0;
}

static bool message_defines(const fd_message_t *m, const char *sym, strbuf_t *scope)
{
	if (is_named(sym, scope->buf, m->name))
		return true;
	size_t len = scope->len;
	sb_append(scope, m->name);
	sb_putc(scope, '.');
	bool found = false;
	for (size_t i = 0; !found && i < m->n_enum_type; i++)
		found = is_named(sym, scope->buf, m->enum_type[i]->name);
	for (size_t i = 0; !found && i < m->n_nested_type; i++)
		found = message_defines(m->nested_type[i], sym, scope);
	scope->len = len;
	scope->buf[len] = '\0';
	return found;
}

/* Whether f defines sym: a message (nested too), an enum, a service or one
 * of its methods. */
static bool file_defines(const fd_file_t *f, const char *sym)
{
	_cleanup_sb_ strbuf_t scope = STRBUF_INIT;
	sb_append(&scope, "");
	if (f->package && *f->package) {
		sb_append(&scope, f->package);
		sb_putc(&scope, '.');
	}
	for (size_t i = 0; i < f->n_service; i++) {
		const Hutch__Grpc__Descriptor__Service *s = f->service[i];
		if (is_named(sym, scope.buf, s->name))
			return true;
		size_t len = scope.len;
		sb_append(&scope, s->name);
		sb_putc(&scope, '.');
		for (size_t k = 0; k < s->n_method; k++)
			if (is_named(sym, scope.buf, s->method[k]->name))
				return true;
		scope.len = len;
		scope.buf[len] = '\0';
	}
	for (size_t i = 0; i < f->n_enum_type; i++)
		if (is_named(sym, scope.buf, f->enum_type[i]->name))
			return true;
	for (size_t i = 0; i < f->n_message_type; i++)
		if (message_defines(f->message_type[i], sym, &scope))
			return true;
	return false;
}

static ssize_t index_file_defining(const fd_index_t *ix, const char *sym)
{
	if (sym[0] == '.')
		sym++; /* ".hutch.v1.Sandbox", as descriptors write type names */
	for (size_t i = 0; i < ix->set->n_file; i++)
		if (file_defines(ix->files[i], sym))
			return (ssize_t)i;
	return -1;
}

/* Appends file i and, depth first, every file it imports, each once. */
static void add_with_deps(const fd_index_t *ix, size_t i, bool *added, ProtobufCBinaryData *out,
			  size_t *n)
{
	if (added[i])
		return;
	added[i] = true;
	out[(*n)++] = ix->set->file[i];
	const fd_file_t *f = ix->files[i];
	for (size_t d = 0; d < f->n_dependency; d++) {
		ssize_t k = index_file_named(ix, f->dependency[d]);
		if (k >= 0)
			add_with_deps(ix, (size_t)k, added, out, n);
	}
}

static void collect_service(void *data, const char *name, size_t len)
{
	strv_push(data, strndup(name, len));
}

/* ---- answering one request ---- */

typedef struct refl_answer {
	refl_response_t resp;
	Grpc__Reflection__V1alpha__FileDescriptorResponse files;
	Grpc__Reflection__V1alpha__ListServiceResponse list;
	Grpc__Reflection__V1alpha__ExtensionNumberResponse ext;
	Grpc__Reflection__V1alpha__ErrorResponse error;
	char message[256];
	/* owned */
	ProtobufCBinaryData *file_data; /* point into the index's set */
	bool *added;
	char **services;
	Grpc__Reflection__V1alpha__ServiceResponse *service_msgs;
	Grpc__Reflection__V1alpha__ServiceResponse **service_ptrs;
} refl_answer_t;

static void answer_error(refl_answer_t *a, grpc_status_t code, const char *what,
			 const char *name)
{
	if (name)
		snprintf(a->message, sizeof a->message, "%s `%s` not found", what, name);
	else
		snprintf(a->message, sizeof a->message, "%s", what);
	a->error.error_code = (int32_t)code;
	a->error.error_message = a->message;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
	a->resp.error_response = &a->error;
}

static void answer_file(refl_answer_t *a, const fd_index_t *ix, ssize_t i, const char *what,
			const char *name)
{
	if (i < 0)
		return answer_error(a, GRPC_STATUS_NOT_FOUND, what, name);
	/* The file first, then what it imports: clients build their pool from
	 * these without asking again. */
	size_t n = ix->set->n_file, count = 0;
	a->file_data = calloc(n, sizeof *a->file_data);
	a->added = calloc(n, sizeof *a->added);
	if (!a->file_data || !a->added)
		return answer_error(a, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
	add_with_deps(ix, (size_t)i, a->added, a->file_data, &count);
	a->files.n_file_descriptor_proto = count;
	a->files.file_descriptor_proto = a->file_data;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
	a->resp.file_descriptor_response = &a->files;
}

static void answer_services(refl_answer_t *a, grpc_call_t *call)
{
	grpc_server_t *server = grpc_call_server(call);
	if (server)
		grpc_server_each_service(server, collect_service, &a->services);
	size_t n = strv_len(a->services);
	a->service_msgs = calloc(n ? n : 1, sizeof *a->service_msgs);
	a->service_ptrs = calloc(n ? n : 1, sizeof *a->service_ptrs);
	if (!a->service_msgs || !a->service_ptrs)
		return answer_error(a, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
	for (size_t i = 0; i < n; i++) {
		grpc__reflection__v1alpha__service_response__init(&a->service_msgs[i]);
		a->service_msgs[i].name = a->services[i];
		a->service_ptrs[i] = &a->service_msgs[i];
	}
	a->list.n_service = n;
	a->list.service = a->service_ptrs;
	a->resp.message_response_case =
		GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
	a->resp.list_services_response = &a->list;
}

static void answer_extensions(refl_answer_t *a, const fd_index_t *ix, const char *type)
{
	if (index_file_defining(ix, type) < 0)
		return answer_error(a, GRPC_STATUS_NOT_FOUND, "type", type);
	a->ext.base_type_name = (char *)(type[0] == '.' ? type + 1 : type);
	a->resp.message_response_case =
		GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
	a->resp.all_extension_numbers_response = &a->ext;
}

static void answer_free(refl_answer_t *a)
{
	free(a->file_data);
	free(a->added);
	strv_free(a->services);
	free(a->service_msgs);
	free(a->service_ptrs);
}

static void reflection_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const refl_request_t *req = (const refl_request_t *)msg;
	const grpc_descriptor_set_t *set = grpc_call_service_data(call);
	refl_answer_t a = {0};
	grpc__reflection__v1alpha__server_reflection_response__init(&a.resp);
	grpc__reflection__v1alpha__file_descriptor_response__init(&a.files);
	grpc__reflection__v1alpha__list_service_response__init(&a.list);
	grpc__reflection__v1alpha__extension_number_response__init(&a.ext);
	grpc__reflection__v1alpha__error_response__init(&a.error);
	a.resp.valid_host = req->host;
	a.resp.original_request = (refl_request_t *)req;
	fd_index_t ix;
	if (index_open(set, &ix) < 0) {
		grpc_call_finish(call, GRPC_STATUS_INTERNAL, "descriptor set does not parse");
		return;
	}
	switch (req->message_request_case) {
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		answer_file(&a, &ix, index_file_named(&ix, req->file_by_filename),
			    "file", req->file_by_filename);
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		answer_file(&a, &ix, index_file_defining(&ix, req->file_containing_symbol),
			    "symbol", req->file_containing_symbol);
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		answer_services(&a, call);
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		answer_extensions(&a, &ix, req->all_extension_numbers_of_type);
		break;
	case GRPC__REFLECTION__V1ALPHA__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		answer_error(&a, GRPC_STATUS_NOT_FOUND, "no extensions are defined here", NULL);
		break;
	default:
		answer_error(&a, GRPC_STATUS_INVALID_ARGUMENT, "no request in the message", NULL);
		break;
	}
	grpc_call_send(call, &a.resp.base);
	answer_free(&a);
	index_close(&ix);
}

/* The client's end of the stream: nothing more to answer. */
static void reflection_on_half_close(grpc_call_t *call)
{
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void reflection_on_cancel(grpc_call_t *call)
{
	(void)call;
}

#define REFLECTION_METHOD(p)                                                              \
	{                                                                                  \
		.path = p,                                                                 \
		.request = &grpc__reflection__v1alpha__server_reflection_request__descriptor, \
		.client_streaming = true,                                                  \
		.server_streaming = true,                                                  \
		.on_message = reflection_on_message,                                       \
		.on_half_close = reflection_on_half_close,                                 \
		.on_cancel = reflection_on_cancel,                                         \
	}

static const grpc_method_t reflection_methods[] = {
	REFLECTION_METHOD("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"),
	REFLECTION_METHOD("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
};

int grpc_reflection_register(grpc_server_t *server, const grpc_descriptor_set_t *set,
			     hutch_err_t *err)
{
	fd_index_t ix;
	int r = index_open(set, &ix);
	if (r < 0)
		return hutch_err_set(err, -r, "grpc reflection: the descriptor set does not parse");
	index_close(&ix);
	return grpc_server_add_methods(server, reflection_methods,
				       sizeof reflection_methods / sizeof reflection_methods[0],
				       (void *)set, err);
}
