/*
 * sandbox_record.h: a sandbox as it is stored and shown: its state, why it
 * is in it, its spec and what it was given (addresses, forwarded ports).
 *
 * The sandbox manager persists a record at each transition and reads them
 * back at recovery; it does not know their encoding. The service layer
 * provides the codec (core/service/sandbox_pb.c: hutch.v1.Sandbox, the
 * format records have always had on disk), and converts the same record
 * to the API's message.
 */
#ifndef HUTCH_SANDBOX_RECORD_H
#define HUTCH_SANDBOX_RECORD_H

#include <stdbool.h>
#include <stdint.h>

#include <hutch/error.h>

#include "sandbox_spec.h"

/* The life of a sandbox. CREATING -> RUNNING -> STOPPING -> one of the
 * ends. Numbered as hutch.v1.SandboxState, which the service maps. */
typedef enum sandbox_state {
	SANDBOX_UNKNOWN = 0,
	SANDBOX_CREATING = 1,
	SANDBOX_RUNNING = 2,
	SANDBOX_STOPPING = 3,
	SANDBOX_STOPPED = 4, /* stopped on request (or its main command ended well) */
	SANDBOX_EXPIRED = 5, /* lifetime or idle timeout reached */
	SANDBOX_FAILED = 6,  /* could not start, or died (see reason) */
} sandbox_state_t;

/* Creating, running or stopping: it holds resources. */
bool sandbox_state_live(sandbox_state_t s);
/* "running", "failed", ... for messages. */
const char *sandbox_state_word(sandbox_state_t s);

typedef struct sandbox_record {
	char *id;
	char *name;             /* NULL: none */
	char *tenant;
	sandbox_state_t state;
	char *reason;           /* NULL: none */
	sandbox_spec_t *spec;   /* as resolved (secret values removed) */
	int64_t created_ms, started_ms, stopped_ms, expires_ms; /* unix ms; 0: not yet */
	char *runtime;          /* the runtime plugin's name */
	char *image_digest;     /* "": not known */
	bool oom_killed;
	char **addresses;       /* NULL-terminated; NULL: none */
	char **port_addrs;      /* host "addr:port" per spec port while running;
				 * NULL-terminated; NULL: none */
} sandbox_record_t;

/* Frees what a decoded record owns (a view owns nothing: never release
 * one). */
void sandbox_record_release(sandbox_record_t *r);

typedef struct sandbox_codec {
	/* *buf is malloc'ed. */
	int (*encode)(const sandbox_record_t *r, uint8_t **buf, size_t *len, hutch_err_t *err);
	/* Fills r with owned data (sandbox_record_release). */
	int (*decode)(const uint8_t *buf, size_t len, sandbox_record_t *r, hutch_err_t *err);
} sandbox_codec_t;

#endif
