/*
 * sandbox_meta.h: hutchd's end of a sandbox's metadata endpoint
 * (http://169.254.169.254/ inside it; core/agent/agent_meta.h).
 *
 * The sandbox's agent relays each client connection's bytes; this collects
 * them until a whole request parses (http_parse_request, the parser the
 * HTTP server uses, bounded and fuzzed), hands it to the daemon's handler
 * with the sandbox it came from, and sends the handler's response back.
 * Requests that do not parse get their 4xx here. Loop thread only.
 */
#ifndef HUTCH_SANDBOX_META_H
#define HUTCH_SANDBOX_META_H

#include "agent_conn.h"
#include "http_server.h"

typedef struct meta_relay meta_relay_t;

typedef void (*meta_request_fn)(void *data, const http_request_t *req, http_pending_t *p);

/* Starts the endpoint on session c: requests go to fn(data, ...). */
meta_relay_t *meta_relay_new(agent_conn_t *c, const char *sandbox_id, meta_request_fn fn,
			     void *data);
/* The session ended: partial requests are dropped, answers still being
 * worked out go nowhere. */
void meta_relay_free(meta_relay_t *r);

#endif
