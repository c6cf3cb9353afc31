/*
 * agent_conn.h: hutchd's side of a session with a sandbox's hutch-agent.
 *
 * One connection per sandbox, over two pipes, on the loop. Many streams run
 * on it at once (execs, file transfers), each with its own callbacks and its
 * own flow-control credit, so a slow consumer of one never stalls another.
 * Everything the agent sends is treated as hostile input: a malformed frame
 * ends the connection (the agent is restarted by the owner), it never
 * crashes hutchd.
 *
 * Loop thread only. When the connection ends (agent exited, pipe broke,
 * protocol violation), every open stream gets on_error(EPIPE, ...) exactly
 * once, then on_closed runs.
 */
#ifndef HUTCH_AGENT_CONN_H
#define HUTCH_AGENT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include <hutch/error.h>

#include "agent_proto.h"

typedef struct agent_conn agent_conn_t;

typedef struct agent_entry {
	const char *path;
	uint32_t type; /* AGENT_FT_* */
	uint32_t mode;
	int64_t size;
	int64_t mtime;
	const char *link;
} agent_entry_t;

/* Callbacks for one stream; any may be NULL. After on_exit, on_error or
 * on_done the stream is finished and no callback follows. */
typedef struct agent_stream_ops {
	void (*on_started)(void *ud, uint32_t pid);
	void (*on_stdout)(void *ud, const uint8_t *data, size_t n);
	void (*on_stderr)(void *ud, const uint8_t *data, size_t n);
	void (*on_stdin_credit)(void *ud, uint32_t bytes);
	void (*on_exit)(void *ud, int exit_code, int signum);
	void (*on_entry)(void *ud, const agent_entry_t *e);
	void (*on_data)(void *ud, const uint8_t *data, size_t n);
	void (*on_data_end)(void *ud);
	/* A put entry written, or a get/list/stat/remove finished. For puts
	 * this is per entry and the stream stays open. */
	void (*on_done)(void *ud);
	void (*on_error)(void *ud, int err, const char *message);
} agent_stream_ops_t;

typedef void (*agent_closed_cb)(void *data, const char *reason);

/* Takes to_agent (written) and from_agent (read), both made non-blocking.
 * Sends HELLO; on_closed runs once when the session ends. */
int agent_conn_open(uv_loop_t *loop, int to_agent, int from_agent,
		    agent_closed_cb on_closed, void *data, agent_conn_t **out,
		    hutch_err_t *err);

/* Ends the session: pipes closed, open streams get on_error. The object is
 * freed later (after on_closed). */
void agent_conn_close(agent_conn_t *c, const char *reason);
bool agent_conn_alive(const agent_conn_t *c);
/* The agent's pid inside the sandbox, once HELLO_ACK arrived (else 0). */
uint32_t agent_conn_pid(const agent_conn_t *c);
/* The protocol version its HELLO_ACK gave (0 until then). */
uint32_t agent_conn_version(const agent_conn_t *c);

/* Opens a stream: returns its id (never 0). The callbacks stay attached
 * until the stream finishes or agent_stream_forget(). */
uint32_t agent_stream_open(agent_conn_t *c, const agent_stream_ops_t *ops, void *ud);
/* Detaches the callbacks (the requester went away); tells the agent to
 * cancel a file stream or kill an exec's process. */
void agent_stream_forget(agent_conn_t *c, uint32_t id, bool cancel);

typedef struct agent_exec_req {
	const char *const *argv;
	const char *const *env; /* "K=V", the process's whole environment */
	const char *cwd;
	const char *user;
	bool tty;
	uint32_t rows, cols;
	bool want_stdin;
} agent_exec_req_t;

int agent_send_exec(agent_conn_t *c, uint32_t id, const agent_exec_req_t *req);
int agent_send_stdin(agent_conn_t *c, uint32_t id, const void *data, size_t n);
int agent_send_stdin_eof(agent_conn_t *c, uint32_t id);
int agent_send_signal(agent_conn_t *c, uint32_t id, int signum);
int agent_send_resize(agent_conn_t *c, uint32_t id, uint32_t rows, uint32_t cols);
int agent_send_credit(agent_conn_t *c, uint32_t id, uint32_t bytes);
/* File operations; path is absolute inside the sandbox. */
int agent_send_file_op(agent_conn_t *c, uint32_t id, uint8_t op, const char *path,
		       bool recursive);
int agent_send_put(agent_conn_t *c, uint32_t id, const char *path, uint32_t type,
		   uint32_t mode, const char *link, bool mkdirs);
int agent_send_data(agent_conn_t *c, uint32_t id, const void *data, size_t n);
int agent_send_data_end(agent_conn_t *c, uint32_t id);

/* Asks the agent (version >= 2) to say once when 127.0.0.1:port accepts
 * inside the sandbox: the stream gets on_done, or on_error (ETIMEDOUT after
 * timeout_ms). The owner forgets the stream after either. */
int agent_send_port_wait(agent_conn_t *c, uint32_t id, uint32_t port, uint32_t timeout_ms);

/* The sandbox's metadata endpoint (agent_meta.h): the agent relays what
 * clients in the sandbox send; hutchd answers each connection once. */
typedef struct agent_meta_ops {
	void (*on_listening)(void *ud, int err, const char *message); /* err 0: up */
	void (*on_data)(void *ud, uint32_t conn, const uint8_t *data, size_t n);
	void (*on_eof)(void *ud, uint32_t conn);
} agent_meta_ops_t;
void agent_conn_set_meta(agent_conn_t *c, const agent_meta_ops_t *ops, void *ud);
int agent_send_meta_listen(agent_conn_t *c);
/* The whole response; the agent writes it and closes the connection. */
int agent_send_meta_reply(agent_conn_t *c, uint32_t conn, const void *data, size_t n);

/* Bytes queued towards the agent and not yet written. */
size_t agent_conn_write_pending(const agent_conn_t *c);

/* Feeds bytes as if read from the agent (fuzzing, tests). */
void agent_conn_feed(agent_conn_t *c, const uint8_t *data, size_t n);

#endif
