/*
 * proxy_test_server: hutch_proxy on a libuv loop with a small policy the
 * tests drive, so they talk to the real engine over real sockets.
 *
 *   proxy_test_server --upstream ADDR [--listen ADDR] [--tls CERT KEY]
 *       [--forwarded] [--log FILE] [--quiet] [--header-timeout-ms N]
 *       [--idle-timeout-ms N] [--connect-timeout-ms N]
 *       [--response-timeout-ms N] [--max-header-bytes N] [--max-headers N]
 *       [--max-request-line N] [--max-body N] [--pool-max-idle N]
 *       [--upstream-read-timeout-ms N] [--upstream-tls SNI [--upstream-ca FILE]]
 *       [--fallback ADDR]
 *
 * --upstream-tls speaks TLS to the upstream, sending SNI (and checking the
 * certificate against it; "" sends none), trusting the CAs in
 * --upstream-ca (else the system's).
 *
 * Prints "PORT n" once listening; exits on SIGTERM/SIGINT after closing the
 * listener (so leaks show under LSan). The policy:
 *   /local/...          answered here: 200, "local <path>", X-Local: yes
 *   /status/NNN         answered here with status NNN
 *   /defer/...          decided 50 ms later (then forwarded)
 *   anything else       forwarded to --upstream, with X-Proxy-Test: 1 set
 *                       and X-Remove-Me removed toward it, X-Proxied: hutch
 *                       set and X-Upstream-Secret removed toward the client
 * With --fallback, a request whose upstream could not be connected to (or
 * closed before answering) is tried once on ADDR, when the engine offers it
 * (upstream_failed).
 * Every request is logged as one JSON line to --log (default stderr).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "proxy.h"
#include "strbuf.h"

static proxy_upstream_t upstream;
static proxy_upstream_t fallback;
static bool has_fallback;
static FILE *log_file;
static uv_loop_t *loop;
static proxy_listener_t *listener;
static bool quiet;

struct deferred {
	uv_timer_t t;
	proxy_route_t *route;
};

static void edits(proxy_route_t *route)
{
	proxy_route_request_header(route, "X-Proxy-Test", "1");
	proxy_route_request_header(route, "X-Remove-Me", NULL);
	proxy_route_response_header(route, "X-Proxied", "hutch");
	proxy_route_response_header(route, "X-Upstream-Secret", NULL);
}

static void deferred_closed(uv_handle_t *h)
{
	free(h->data);
}

static void deferred_fire(uv_timer_t *t)
{
	struct deferred *d = t->data;
	proxy_route_t *route = d->route;
	edits(route);
	proxy_route_forward(route, &upstream);
	uv_close((uv_handle_t *)&d->t, deferred_closed);
	proxy_route_done(route);
}

static struct deferred *pending_defer;

static proxy_route_result_t route(void *data, const proxy_request_t *req, proxy_route_t *r)
{
	if (strncmp(req->path, "/local/", 7) == 0) {
		char body[512];
		int n = snprintf(body, sizeof body, "local %s\n", req->path);
		proxy_route_response_header(r, "X-Local", "yes");
		proxy_route_local(r, 200, "text/plain", body, (size_t)n);
		return PROXY_ROUTE_DONE;
	}
	if (strncmp(req->path, "/status/", 8) == 0) {
		proxy_route_local(r, atoi(req->path + 8), "text/plain", "status\n", 7);
		return PROXY_ROUTE_DONE;
	}
	if (strncmp(req->path, "/defer/", 7) == 0) {
		struct deferred *d = calloc(1, sizeof *d);
		d->route = r;
		uv_timer_init(loop, &d->t);
		d->t.data = d;
		uv_timer_start(&d->t, deferred_fire, 50, 0);
		pending_defer = d;
		return PROXY_ROUTE_DEFER;
	}
	edits(r);
	proxy_route_forward(r, &upstream);
	return PROXY_ROUTE_DONE;
}

static void cancel(void *data, proxy_route_t *r)
{
	if (pending_defer && pending_defer->route == r) {
		uv_close((uv_handle_t *)&pending_defer->t, deferred_closed);
		pending_defer = NULL;
	}
}

static bool upstream_failed(void *data, const proxy_request_t *req, proxy_route_t *r,
			    const proxy_upstream_t *failed, int attempt)
{
	if (!has_fallback || attempt > 1)
		return false;
	proxy_route_forward(r, &fallback);
	return true;
}

static void log_entry(void *data, const proxy_log_t *e)
{
	strbuf_t sb = STRBUF_INIT;
	sb_append(&sb, "{\"method\":");
	sb_json_str(&sb, e->method);
	sb_append(&sb, ",\"authority\":");
	sb_json_str(&sb, e->authority);
	sb_append(&sb, ",\"path\":");
	sb_json_str(&sb, e->path);
	sb_append(&sb, ",\"peer\":");
	sb_json_str(&sb, e->peer);
	sb_printf(&sb, ",\"version\":%d,\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu",
		  e->http_version, e->status, (unsigned long long)e->bytes_in,
		  (unsigned long long)e->bytes_out);
	sb_printf(&sb, ",\"total_us\":%llu,\"connect_us\":%llu,\"upstream_us\":%llu",
		  (unsigned long long)e->total_us, (unsigned long long)e->connect_us,
		  (unsigned long long)e->upstream_us);
	sb_append(&sb, ",\"upstream\":");
	sb_json_str(&sb, e->upstream);
	sb_printf(&sb, ",\"reused\":%s,\"retries\":%d,\"error\":", e->reused ? "true" : "false",
		  e->retries);
	if (e->error)
		sb_json_str(&sb, e->error);
	else
		sb_append(&sb, "null");
	sb_append(&sb, "}\n");
	fputs(sb.buf, log_file);
	fflush(log_file);
	sb_free(&sb);
}

static const proxy_policy_t policy = {
	.size = sizeof(proxy_policy_t),
	.route = route,
	.cancel = cancel,
	.log = log_entry,
	.upstream_failed = upstream_failed,
};

static uv_signal_t sig_term, sig_int;

static void closed(void *arg)
{
	uv_close((uv_handle_t *)&sig_term, NULL);
	uv_close((uv_handle_t *)&sig_int, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	uv_signal_stop(&sig_term);
	uv_signal_stop(&sig_int);
	proxy_listener_close(listener, closed, NULL);
}

static SSL_CTX *server_tls(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		fprintf(stderr, "cannot load %s / %s\n", cert, key);
		exit(2);
	}
	return ctx;
}

int main(int argc, char **argv)
{
	proxy_config_t cfg = {.listen = "127.0.0.1:0", .policy = &policy};
	const char *up = NULL, *up_sni = NULL, *up_ca = NULL;
	log_file = stderr;
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : "0";
#define NUM(flag, field)                                                       \
	if (strcmp(a, flag) == 0) {                                            \
		cfg.limits.field = strtoull(v, NULL, 10);                      \
		i++;                                                           \
		continue;                                                      \
	}
		NUM("--header-timeout-ms", header_timeout_ms)
		NUM("--idle-timeout-ms", idle_timeout_ms)
		NUM("--connect-timeout-ms", connect_timeout_ms)
		NUM("--response-timeout-ms", response_timeout_ms)
		NUM("--max-header-bytes", max_header_bytes)
		NUM("--max-headers", max_headers)
		NUM("--max-request-line", max_request_line)
		NUM("--max-body", max_body_bytes)
		NUM("--pool-max-idle", pool_max_idle)
		NUM("--upstream-read-timeout-ms", upstream_read_timeout_ms)
		if (strcmp(a, "--upstream") == 0) {
			up = v;
			i++;
		} else if (strcmp(a, "--fallback") == 0) {
			hutch_err_t ferr = {0};
			if (proxy_upstream_parse(v, &fallback, &ferr) < 0) {
				fprintf(stderr, "--fallback: %s\n", ferr.message);
				return 2;
			}
			has_fallback = true;
			i++;
		} else if (strcmp(a, "--listen") == 0) {
			cfg.listen = v;
			i++;
		} else if (strcmp(a, "--quiet") == 0) {
			quiet = true; /* no log callback (benchmarks) */
		} else if (strcmp(a, "--forwarded") == 0) {
			cfg.add_forwarded = true;
		} else if (strcmp(a, "--log") == 0) {
			log_file = fopen(v, "a");
			i++;
		} else if (strcmp(a, "--upstream-tls") == 0) {
			up_sni = v;
			i++;
		} else if (strcmp(a, "--upstream-ca") == 0) {
			up_ca = v;
			i++;
		} else if (strcmp(a, "--tls") == 0 && i + 2 < argc) {
			cfg.tls = server_tls(argv[i + 1], argv[i + 2]);
			i += 2;
		} else {
			fprintf(stderr, "unknown argument %s\n", a);
			return 2;
		}
	}
	hutch_err_t err = {0};
	if (!up || proxy_upstream_parse(up, &upstream, &err) < 0) {
		fprintf(stderr, "--upstream: %s\n", up ? err.message : "missing");
		return 2;
	}
	SSL_CTX *up_ctx = NULL;
	if (up_sni) {
		if (proxy_upstream_tls_ctx(up_ca, &up_ctx, &err) < 0) {
			fprintf(stderr, "--upstream-ca: %s\n", err.message);
			return 2;
		}
		upstream.tls = true;
		upstream.tls_ctx = up_ctx;
		snprintf(upstream.sni, sizeof upstream.sni, "%s", up_sni);
	}
	static proxy_policy_t quiet_policy;
	if (quiet) {
		quiet_policy = policy;
		quiet_policy.log = NULL;
		cfg.policy = &quiet_policy;
	}
	loop = uv_default_loop();
	if (proxy_listener_new(loop, &cfg, &listener, &err) < 0) {
		fprintf(stderr, "%s\n", err.message);
		return 1;
	}
	if (cfg.tls)
		SSL_CTX_free(cfg.tls); /* the listener holds its own reference */
	printf("PORT %d\n", proxy_listener_port(listener));
	fflush(stdout);
	uv_signal_init(loop, &sig_term);
	uv_signal_init(loop, &sig_int);
	uv_signal_start(&sig_term, on_signal, SIGTERM);
	uv_signal_start(&sig_int, on_signal, SIGINT);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	SSL_CTX_free(up_ctx);
	if (log_file != stderr)
		fclose(log_file);
	return 0;
}
