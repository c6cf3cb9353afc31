/*
 * The router's access log: one record per request, at info level, through
 * hutchd's log (so JSON fields when hutchd logs JSON). The path is written
 * without its query string, which is where callers put tokens and other
 * things that have no place in a log.
 */
#include "access_log.h"

#include <stdio.h>
#include <string.h>

void access_log_write(const proxy_log_t *e, const access_log_ctx_t *ctx)
{
	char path[1024];
	size_t pl = strcspn(e->path, "?#");
	if (pl >= sizeof path)
		pl = sizeof path - 1;
	memcpy(path, e->path, pl);
	path[pl] = '\0';
	char msg[1200];
	snprintf(msg, sizeof msg, "%s %s %d", e->method[0] ? e->method : "-", path, e->status);
	log_field_t f[] = {
		{"tenant", ctx->tenant ? ctx->tenant : "", 0},
		{"service", ctx->service ? ctx->service : "", 0},
		{"kind", ctx->kind ? ctx->kind : "none", 0},
		{"replica", ctx->replica ? ctx->replica : "", 0},
		{"method", e->method, 0},
		{"path", path, 0},
		{"status", NULL, e->status},
		{"bytes_in", NULL, (double)e->bytes_in},
		{"bytes_out", NULL, (double)e->bytes_out},
		{"duration_ms", NULL, (double)e->total_us / 1000.0},
		{"connect_ms", NULL, (double)e->connect_us / 1000.0},
		{"ttfb_ms", NULL, (double)e->upstream_us / 1000.0},
		{"upstream", e->upstream, 0},
		{"retried", NULL, e->retries},
		{"peer", e->peer, 0},
		{"http", NULL, e->http_version / 10.0},
		{"error", e->error ? e->error : "", 0},
	};
	log_fields(HUTCH_LOG_INFO, "router", msg, f, sizeof f / sizeof f[0]);
}
