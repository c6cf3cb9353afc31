/*
 * agent_proto.h: the wire protocol between hutchd and hutch-agent.
 *
 * hutch-agent runs inside every sandbox (as its init, and as extra sessions
 * started with the runtime's exec after a daemon restart). hutchd drives it
 * over a pair of pipes: exec of processes with streamed stdio, signals,
 * window sizes, and file transfer. Doing this through one long-lived agent
 * instead of one `runsc exec` per command is what makes an exec round trip
 * cost a fork inside the sandbox rather than a new runsc process.
 *
 * Framing: every frame is
 *     u32 length (big-endian; counts type + stream + payload)
 *     u8  type
 *     u32 stream (big-endian; 0 = the session itself)
 *     payload (length - 5 bytes, at most AGENT_MAX_PAYLOAD)
 * Structured payloads are a list of fields: u8 tag, u32 length (BE), bytes.
 *
 * Flow control is per stream and by credit, so one slow reader never stalls
 * the others: the agent sends at most `credit` bytes of output for a stream
 * before hutchd grants more (AGENT_CREDIT), and hutchd sends at most the
 * stdin credit the agent granted (AGENT_STDIN_CREDIT).
 *
 * hutchd treats everything the agent sends as untrusted: code in the sandbox
 * runs as root there and can write to the agent's pipes. The decoder below
 * checks every length and is fuzzed (tests/fuzz/fuzz_agent_proto.c).
 */
#ifndef HUTCH_AGENT_PROTO_H
#define HUTCH_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 2: PORT_WAIT. hutchd sends a newer request only to an agent whose
 * HELLO_ACK gave a version that has it. */
#define AGENT_PROTO_VERSION 2
#define AGENT_HEADER_SIZE 9
#define AGENT_MAX_PAYLOAD (1024 * 1024)
#define AGENT_INITIAL_OUTPUT_CREDIT (256 * 1024)
#define AGENT_INITIAL_STDIN_CREDIT (256 * 1024)
#define AGENT_CHUNK 65536

typedef enum agent_msg {
	/* hutchd -> agent */
	AGENT_HELLO = 1,       /* fields: VERSION */
	AGENT_EXEC = 2,        /* fields: ARG*, ENV*, CWD, USER, TTY, ROWS, COLS, STDIN */
	AGENT_STDIN = 3,       /* raw bytes */
	AGENT_STDIN_EOF = 4,
	AGENT_SIGNAL = 5,      /* fields: SIGNUM */
	AGENT_RESIZE = 6,      /* fields: ROWS, COLS */
	AGENT_CREDIT = 7,      /* fields: BYTES: more output may be sent */
	AGENT_FILE_PUT = 8,    /* fields: PATH, TYPE, MODE, LINK, MKDIRS; then DATA..., DATA_END */
	AGENT_DATA = 9,        /* raw bytes (either direction) */
	AGENT_DATA_END = 10,
	AGENT_FILE_GET = 11,   /* fields: PATH, RECURSIVE -> ENTRY (+DATA... DATA_END)..., DONE */
	AGENT_FILE_LIST = 12,  /* fields: PATH -> ENTRY..., DONE */
	AGENT_FILE_STAT = 13,  /* fields: PATH -> ENTRY, DONE */
	AGENT_FILE_REMOVE = 14, /* fields: PATH, RECURSIVE -> DONE */
	AGENT_PING = 15,
	AGENT_CANCEL = 16,     /* abandon a file stream */
	AGENT_META_LISTEN = 17, /* serve the metadata endpoint (agent_meta.c) */
	AGENT_META_REPLY = 18, /* raw HTTP response bytes for a metadata conn; then close */
	AGENT_PORT_WAIT = 19,  /* fields: PORT, TIMEOUT_MS -> DONE once 127.0.0.1:PORT
				* accepts a TCP connection, or ERROR (ETIMEDOUT); CANCEL
				* abandons it (version 2) */

	/* agent -> hutchd */
	AGENT_HELLO_ACK = 64,  /* fields: VERSION, PID */
	AGENT_STARTED = 65,    /* fields: PID */
	AGENT_STDOUT = 66,     /* raw bytes */
	AGENT_STDERR = 67,     /* raw bytes */
	AGENT_EXIT = 68,       /* fields: CODE, SIGNUM */
	AGENT_ERROR = 69,      /* fields: ERRNO, MESSAGE; ends the stream */
	AGENT_STDIN_CREDIT = 70, /* fields: BYTES */
	AGENT_ENTRY = 71,      /* fields: PATH, TYPE, MODE, SIZE, MTIME, LINK */
	AGENT_DONE = 73,       /* the file operation finished */
	AGENT_PONG = 74,
	AGENT_META_LISTENING = 75, /* fields: ERRNO (0: listening), MESSAGE */
	AGENT_META_DATA = 76,  /* raw bytes a metadata client sent (stream = its conn) */
	AGENT_META_EOF = 77,   /* that client closed or timed out */
} agent_msg_t;

/* The sandbox's metadata endpoint: the agent listens here and relays each
 * connection's bytes to hutchd, which answers (identity tokens). Streams
 * of relayed connections have this bit set: the agent picks their ids. */
#define AGENT_META_ADDR "169.254.169.254"
#define AGENT_META_PORT 80
#define AGENT_META_STREAM_BIT 0x80000000u
#define AGENT_META_MAX_CONNS 16
#define AGENT_META_MAX_REQUEST (80 * 1024) /* bytes relayed per connection */
#define AGENT_META_TIMEOUT_MS 10000

typedef enum agent_tag {
	AGENT_F_VERSION = 1,
	AGENT_F_PID = 2,
	AGENT_F_ARG = 3,
	AGENT_F_ENV = 4,
	AGENT_F_CWD = 5,
	AGENT_F_USER = 6,
	AGENT_F_TTY = 7,
	AGENT_F_ROWS = 8,
	AGENT_F_COLS = 9,
	AGENT_F_STDIN = 10,
	AGENT_F_SIGNUM = 11,
	AGENT_F_CODE = 12,
	AGENT_F_ERRNO = 13,
	AGENT_F_MESSAGE = 14,
	AGENT_F_BYTES = 15,
	AGENT_F_PATH = 16,
	AGENT_F_TYPE = 17,
	AGENT_F_MODE = 18,
	AGENT_F_SIZE = 19,
	AGENT_F_MTIME = 20,
	AGENT_F_LINK = 21,
	AGENT_F_MKDIRS = 22,
	AGENT_F_RECURSIVE = 23,
	AGENT_F_PORT = 24,
	AGENT_F_TIMEOUT_MS = 25,
} agent_tag_t;

/* PORT_WAIT: how many at once (more are refused with EBUSY), and the
 * longest timeout (a longer one is cut to it). */
#define AGENT_PORT_MAX_WAITS 16
#define AGENT_PORT_MAX_TIMEOUT_MS (30 * 60 * 1000)

/* File types in ENTRY / FILE_PUT. */
enum { AGENT_FT_FILE = 1, AGENT_FT_DIR = 2, AGENT_FT_SYMLINK = 3, AGENT_FT_OTHER = 4 };

/* A growable output buffer (frames are appended to it). */
typedef struct agent_buf {
	uint8_t *data;
	size_t len, cap;
	size_t off; /* bytes already consumed from the front */
} agent_buf_t;

void agent_buf_free(agent_buf_t *b);
/* Appends raw bytes; returns -1 on allocation failure. */
int agent_buf_append(agent_buf_t *b, const void *data, size_t n);
/* Drops n consumed bytes from the front. */
void agent_buf_consume(agent_buf_t *b, size_t n);
static inline size_t agent_buf_pending(const agent_buf_t *b)
{
	return b->len - b->off;
}

/* Building frames: begin, add fields or raw bytes, end (fills the length). */
typedef struct agent_frame_builder {
	agent_buf_t *buf;
	size_t start;
	bool failed;
} agent_fb_t;

void agent_frame_begin(agent_fb_t *fb, agent_buf_t *buf, uint8_t type, uint32_t stream);
void agent_frame_raw(agent_fb_t *fb, const void *data, size_t n);
void agent_frame_field(agent_fb_t *fb, uint8_t tag, const void *data, size_t n);
void agent_frame_str(agent_fb_t *fb, uint8_t tag, const char *s);
void agent_frame_u32(agent_fb_t *fb, uint8_t tag, uint32_t v);
void agent_frame_i64(agent_fb_t *fb, uint8_t tag, int64_t v);
/* Returns 0, or -1 if an allocation failed or the payload is too large. */
int agent_frame_end(agent_fb_t *fb);

/* A decoded frame; payload points into the caller's buffer. */
typedef struct agent_frame {
	uint8_t type;
	uint32_t stream;
	const uint8_t *payload;
	uint32_t len;
} agent_frame_t;

/* Parses one frame from data[0..n). Returns the bytes consumed (> 0), 0 if
 * more data is needed, or -1 if the data is malformed (length below the
 * header or above the maximum): the peer is then not to be trusted. */
long agent_frame_parse(const uint8_t *data, size_t n, agent_frame_t *out);

/* Iterating a payload's fields. */
typedef struct agent_field {
	uint8_t tag;
	const uint8_t *data;
	uint32_t len;
} agent_field_t;

typedef struct agent_field_iter {
	const uint8_t *p, *end;
	bool malformed;
} agent_field_iter_t;

void agent_fields_begin(agent_field_iter_t *it, const agent_frame_t *f);
/* Returns true with *out filled, false at the end (check it->malformed). */
bool agent_fields_next(agent_field_iter_t *it, agent_field_t *out);
/* Field value helpers; return false if the field has the wrong size. */
bool agent_field_u32(const agent_field_t *f, uint32_t *out);
bool agent_field_i64(const agent_field_t *f, int64_t *out);
/* Copies a string field into buf (NUL-terminated); false if it does not fit
 * or holds a NUL. */
bool agent_field_str(const agent_field_t *f, char *buf, size_t cap);

#endif
