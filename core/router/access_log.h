/*
 * access_log.h: the router's line per request (access_log.c). The fields
 * are proxy_log_t's, plus what only the router knows: the service's
 * tenant and name, and the replica that answered.
 */
#ifndef HUTCH_ACCESS_LOG_H
#define HUTCH_ACCESS_LOG_H

#include <stdbool.h>

#include "log.h"
#include "proxy.h"

typedef struct access_log_ctx {
	const char *tenant, *service; /* NULL: the request named no service */
	const char *kind;             /* "group", "container" or NULL */
	const char *replica;          /* the replica's sandbox id, or "" */
} access_log_ctx_t;

void access_log_write(const proxy_log_t *e, const access_log_ctx_t *ctx);

#endif
