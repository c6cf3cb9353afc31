/*
 * hutch_client.h: the C client library for hutchd (API hutch.v1).
 *
 * A thin, blocking layer over the gRPC transport (grpc_client.h): connect to
 * a daemon, then call it with the generated protobuf-c messages of
 * core/api/hutch/v1/ (.proto files). Every call returns 0 or a negative errno and
 * fills err with the server's message ("NOT_FOUND: sandbox `x` not found").
 * Messages returned through `out` pointers belong to the caller: free them
 * with protobuf_c_message_free_unpacked(&(*out)->base, NULL).
 *
 *   hutch_client_t *c;
 *   hutch_client_open(NULL, &c, &err);            // $HUTCH_SOCKET or default
 *   Hutch__V1__RunResponse *res;
 *   hutch_sandbox_run_argv(c, id, argv, &res, &err);
 *   printf("%s", res->stdout_text);
 *
 * Not thread-safe: one client per thread.
 */
#ifndef HUTCH_CLIENT_H
#define HUTCH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#include "grpc_client.h"
#include "hutch/v1/daemon.pb-c.h"
#include "hutch/v1/sandbox.pb-c.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HUTCH_DEFAULT_SOCKET "/run/hutch/hutchd.sock"

typedef struct hutch_client hutch_client_t;

typedef struct hutch_client_opts {
	/* "unix:/path", "/path" (a unix socket), or "host:port" (TLS unless
	 * loopback h2c is wanted: see plaintext). NULL: $HUTCH_ADDRESS, then
	 * $HUTCH_SOCKET, then HUTCH_DEFAULT_SOCKET. */
	const char *address;
	/* For TCP: sent as a bearer token. NULL: $HUTCH_API_KEY. */
	const char *api_key;
	/* PEM CA bundle to verify a TLS daemon; NULL: $HUTCH_CA_FILE, else the
	 * system store. */
	const char *ca_file;
	/* TCP without TLS (loopback only). */
	bool plaintext;
	/* Per-call deadline for unary calls; 0 = 60 s. */
	int timeout_ms;
} hutch_client_opts_t;

int hutch_client_open(const hutch_client_opts_t *opts, hutch_client_t **out, hutch_err_t *err);
void hutch_client_close(hutch_client_t *c);
/* The address actually used, for messages. */
const char *hutch_client_address(const hutch_client_t *c);
hc_channel_t *hutch_client_channel(hutch_client_t *c);

/* Any unary method, e.g. hutch_call(c, "/hutch.v1.Daemon/Status", &req.base,
 * &hutch__v1__status_response__descriptor, (ProtobufCMessage **)&out, &err). */
int hutch_call(hutch_client_t *c, const char *path, const ProtobufCMessage *req,
	       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
	       hutch_err_t *err);

int hutch_status(hutch_client_t *c, Hutch__V1__StatusResponse **out, hutch_err_t *err);

int hutch_sandbox_create(hutch_client_t *c, const Hutch__V1__SandboxSpec *spec,
			 Hutch__V1__Sandbox **out, hutch_err_t *err);
int hutch_sandbox_get(hutch_client_t *c, const char *id_or_name, Hutch__V1__Sandbox **out,
		      hutch_err_t *err);
int hutch_sandbox_list(hutch_client_t *c, bool all, Hutch__V1__ListSandboxesResponse **out,
		       hutch_err_t *err);
int hutch_sandbox_stop(hutch_client_t *c, const char *id_or_name, int64_t grace_ms,
		       Hutch__V1__Sandbox **out, hutch_err_t *err);
int hutch_sandbox_delete(hutch_client_t *c, const char *id_or_name, hutch_err_t *err);

/* Runs argv to completion and collects its output (the Run call): *out holds
 * the whole output (hutchd sends large output in several messages; they are
 * joined here) and the exit status. stdout/stderr have every byte;
 * stdout_text/stderr_text are C strings, so they end at the output's first
 * NUL. */
int hutch_sandbox_run_argv(hutch_client_t *c, const char *sandbox, const char *const *argv,
			   Hutch__V1__RunResponse **out, hutch_err_t *err);

/* ---- streamed exec ---- */

typedef struct hutch_exec hutch_exec_t;

typedef enum hutch_exec_event_kind {
	HUTCH_EXEC_STARTED = 1,
	HUTCH_EXEC_STDOUT,
	HUTCH_EXEC_STDERR,
	HUTCH_EXEC_EXIT,
} hutch_exec_event_kind_t;

typedef struct hutch_exec_event {
	hutch_exec_event_kind_t kind;
	const uint8_t *data; /* STDOUT/STDERR; valid until the next call */
	size_t len;
	int exit_code;       /* EXIT: -1 when killed by a signal */
	int signal;
	bool oom_killed;
	bool timed_out;
} hutch_exec_event_t;

/* Starts an exec (start->sandbox_id, argv, ...). */
int hutch_exec_start(hutch_client_t *c, const Hutch__V1__ExecStart *start,
		     hutch_exec_t **out, hutch_err_t *err);
int hutch_exec_stdin(hutch_exec_t *x, const void *data, size_t n, hutch_err_t *err);
int hutch_exec_close_stdin(hutch_exec_t *x, hutch_err_t *err);
int hutch_exec_signal(hutch_exec_t *x, int signum, hutch_err_t *err);
int hutch_exec_resize(hutch_exec_t *x, uint32_t rows, uint32_t cols, hutch_err_t *err);
/* Waits up to timeout_ms (-1: forever, 0: poll) for the next event.
 * Returns 1 with *ev filled, 0 when the stream ended after EXIT, -EAGAIN on
 * timeout, or -errno if the exec failed (sandbox stopped, ...). */
int hutch_exec_next(hutch_exec_t *x, int timeout_ms, hutch_exec_event_t *ev, hutch_err_t *err);
/* fd + events to poll() beside stdin (see grpc_client.h). */
int hutch_exec_fd(const hutch_exec_t *x);
short hutch_exec_events(const hutch_exec_t *x);
bool hutch_exec_writable(const hutch_exec_t *x);
void hutch_exec_free(hutch_exec_t *x);

/* ---- files ---- */

/* Uploads len bytes read from fd as a file (mode) at path in the sandbox,
 * or, with tar = true, extracts the tar stream read from fd under path. */
int hutch_files_put(hutch_client_t *c, const char *sandbox, const char *path, int fd,
		    bool tar, uint32_t mode, int64_t *bytes_out, hutch_err_t *err);
/* Downloads path into fd: the file's bytes, or with tar = true a tar stream
 * of the file or tree. info_out (may be NULL) receives the FileInfo. */
int hutch_files_get(hutch_client_t *c, const char *sandbox, const char *path, int fd,
		    bool tar, Hutch__V1__FileInfo **info_out, hutch_err_t *err);
int hutch_files_list(hutch_client_t *c, const char *sandbox, const char *path,
		     Hutch__V1__ListFilesResponse **out, hutch_err_t *err);
int hutch_files_stat(hutch_client_t *c, const char *sandbox, const char *path,
		     Hutch__V1__FileInfo **out, hutch_err_t *err);
int hutch_files_remove(hutch_client_t *c, const char *sandbox, const char *path,
		       bool recursive, hutch_err_t *err);

#ifdef __cplusplus
}
#endif
#endif
