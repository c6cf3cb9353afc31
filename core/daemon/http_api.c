/*
 * http_api.c: what hutchd serves over plain HTTP, and the metadata
 * endpoint inside sandboxes.
 *
 * The [http] listener (default 127.0.0.1:7480 with an identity plugin):
 *   GET  /.well-known/openid-configuration, GET <jwks_path>
 *                       the identity plugin's documents: the issuer URL
 *                       points here so that anyone can verify a token
 *   POST /v1/token      token exchange (RFC 8693 form parameters)
 *   GET  /metrics       Prometheus text ([http] metrics)
 *   GET  /healthz
 *
 * The metadata endpoint, http://169.254.169.254/ inside each sandbox
 * (relayed by its agent; the sandbox is known from the session the
 * request came over). Every request must carry `Metadata-Flavor: hutch`
 * and no `X-Forwarded-For`, so a server in the sandbox tricked into
 * fetching a URL (SSRF) cannot read it:
 *   GET  /v1/identity/token[?audience=AUD]   a fresh token for the sandbox
 *   POST /v1/token                           token exchange, as above
 *   GET  /                                   what is served
 *
 * Plugin ops run on the pool; replies come back on the loop.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "cleanup.h"
#include "log.h"
#include "metrics.h"
#include "sandbox_identity.h"
#include "sandbox_pb.h"
#include "strbuf.h"

#define DOC_MAX (256 * 1024)
#define TOKEN_TYPE_JWT "urn:ietf:params:oauth:token-type:jwt"
#define TOKEN_TYPE_ID "urn:ietf:params:oauth:token-type:id_token"
#define TOKEN_TYPE_ACCESS "urn:ietf:params:oauth:token-type:access_token"
#define GRANT_EXCHANGE "urn:ietf:params:oauth:grant-type:token-exchange"

typedef enum { JOB_DOC, JOB_EXCHANGE, JOB_ISSUE } job_kind_t;

typedef struct http_job {
	uv_work_t req;
	daemon_t *d;
	http_pending_t *p;
	job_kind_t kind;
	char path[256];
	char *subject_token;
	char resource[256];
	char audience[256];
	sandbox_t *sb;           /* JOB_ISSUE: held */
	char tenant[128], id[32], name[128], digest[128];
	http_response_t resp;
} http_job_t;

static void reply(http_pending_t *p, int status, const char *type, const char *body)
{
	http_response_t resp = {0};
	http_response_set(&resp, status, type, body);
	http_reply(p, &resp);
}

static void reply_text(http_pending_t *p, int status, const char *text)
{
	reply(p, status, "text/plain; charset=utf-8", text);
}

/* 405 must say what the resource accepts (RFC 9110 section 15.5.6). HEAD is
 * answered wherever GET is (see http_server.h). */
#define ALLOW_GET "GET, HEAD"
#define ALLOW_POST "POST"

static void reply_not_allowed(http_pending_t *p, const char *allow)
{
	http_response_t resp = {0};
	_cleanup_free_ char *body = xasprintf("method not allowed: use %s\n", allow);
	http_response_set(&resp, 405, "text/plain; charset=utf-8", body);
	snprintf(resp.extra_headers, sizeof resp.extra_headers, "Allow: %s\r\n", allow);
	http_reply(p, &resp);
}

/* OAuth 2.0 error response (RFC 6749 section 5.2). */
static void oauth_error(http_response_t *resp, int status, const char *code, const char *desc)
{
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	sb_append(&b, "{\"error\":");
	sb_json_str(&b, code);
	if (desc) {
		sb_append(&b, ",\"error_description\":");
		sb_json_str(&b, desc);
	}
	sb_putc(&b, '}');
	http_response_set(resp, status, "application/json", b.buf);
}

/* ---- work on the pool ---- */

static void job_work(uv_work_t *req)
{
	http_job_t *j = req->data;
	plugin_t *idp = j->d->plugins.identity;
	hutch_err_t err = {0};
	switch (j->kind) {
	case JOB_DOC: {
		char *body = xmalloc(DOC_MAX);
		hutch_http_doc_t doc = {.size = sizeof doc, .body = body, .body_cap = DOC_MAX};
		int r = idp->ops.identity.http_get(idp->instance, j->path, &doc, &err);
		if (r == -ENOENT) {
			http_response_set(&j->resp, 404, "text/plain; charset=utf-8", "not found\n");
		} else if (r < 0) {
			log_warn("identity %s: %s", j->path, err.message);
			http_response_set(&j->resp, 500, "text/plain; charset=utf-8", "error\n");
		} else {
			j->resp.status = 200;
			snprintf(j->resp.content_type, sizeof j->resp.content_type, "%s",
				 doc.content_type[0] ? doc.content_type : "application/json");
			j->resp.body = body;
			j->resp.body_len = doc.body_len;
			body = NULL;
			/* Verifiers may cache the documents a little. */
			snprintf(j->resp.extra_headers, sizeof j->resp.extra_headers,
				 "Access-Control-Allow-Origin: *\r\n");
		}
		free(body);
		break;
	}
	case JOB_EXCHANGE: {
		char *cred = xmalloc(IDENTITY_TOKEN_MAX * 2);
		hutch_identity_token_t out = {.size = sizeof out, .token = cred,
					      .token_cap = IDENTITY_TOKEN_MAX * 2};
		int r = idp->ops.identity.token_exchange(idp->instance, j->subject_token, j->resource,
							 &out, &err);
		if (r == -EACCES && strstr(err.message, "token rejected")) {
			oauth_error(&j->resp, 400, "invalid_grant", err.message);
		} else if (r == -EACCES) {
			oauth_error(&j->resp, 400, "invalid_target", err.message);
		} else if (r < 0) {
			log_warn("token exchange: %s", err.message);
			oauth_error(&j->resp, 500, "server_error", "the exchange failed");
		} else {
			_cleanup_sb_ strbuf_t b = STRBUF_INIT;
			int64_t in = out.expires_unix - store_now_ms() / 1000;
			sb_append(&b, "{\"access_token\":");
			sb_json_str(&b, cred);
			sb_printf(&b, ",\"issued_token_type\":\"" TOKEN_TYPE_ACCESS "\","
				      "\"token_type\":\"Bearer\",\"expires_in\":%lld}",
				  (long long)(in > 0 ? in : 0));
			http_response_set(&j->resp, 200, "application/json", b.buf);
			explicit_bzero(b.buf, b.len);
		}
		explicit_bzero(cred, IDENTITY_TOKEN_MAX * 2);
		free(cred);
		break;
	}
	case JOB_ISSUE: {
		sandbox_who_t who = {j->tenant, j->id, j->name, j->digest, NULL};
		char *token = NULL;
		int64_t exp = 0;
		int r = identity_issue(idp, &who, j->audience, &token, &exp, &err);
		if (r == -EINVAL || r == -EACCES) {
			_cleanup_free_ char *msg = xasprintf("%s\n", err.message);
			http_response_set(&j->resp, r == -EINVAL ? 400 : 403, "text/plain; charset=utf-8",
					  msg);
		} else if (r < 0) {
			log_warn("sandbox %s: metadata token: %s", j->id, err.message);
			http_response_set(&j->resp, 500, "text/plain; charset=utf-8", "error\n");
		} else {
			http_response_set(&j->resp, 200, "application/jwt", token);
			explicit_bzero(token, strlen(token));
			free(token);
		}
		break;
	}
	}
}

static void job_done(uv_work_t *req, int status)
{
	http_job_t *j = req->data;
	j->d->http_jobs--;
	if (status < 0 && !j->resp.status)
		http_response_set(&j->resp, 503, "text/plain; charset=utf-8", "shutting down\n");
	http_reply(j->p, &j->resp); /* frees resp.body */
	if (j->sb)
		sandbox_unref(j->sb);
	if (j->subject_token) {
		explicit_bzero(j->subject_token, strlen(j->subject_token));
		free(j->subject_token);
	}
	free(j);
}

static http_job_t *job_new(daemon_t *d, http_pending_t *p, job_kind_t kind)
{
	http_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->d = d;
	j->p = p;
	j->kind = kind;
	return j;
}

static void job_queue(http_job_t *j)
{
	j->d->http_jobs++;
	int r = uv_queue_work(&j->d->loop, &j->req, job_work, job_done);
	if (r < 0) {
		j->d->http_jobs--;
		reply_text(j->p, 503, "busy\n");
		if (j->sb)
			sandbox_unref(j->sb);
		free(j->subject_token);
		free(j);
	}
}

/* ---- handlers ---- */

static bool form_body(const http_request_t *req)
{
	const char *ct = http_header(req, "content-type");
	return ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

static void token_exchange(daemon_t *d, const http_request_t *req, http_pending_t *p)
{
	http_response_t resp = {0};
	if (!d->plugins.identity->ops.identity.token_exchange) {
		oauth_error(&resp, 400, "unsupported_grant_type", "this issuer does no token exchange");
		return http_reply(p, &resp);
	}
	if (!form_body(req)) {
		oauth_error(&resp, 400, "invalid_request",
			    "expected application/x-www-form-urlencoded parameters");
		return http_reply(p, &resp);
	}
	_cleanup_free_ char *form = xstrndup(req->body ? req->body : "", req->body_len);
	char grant[128], type[128], resource[256] = "", audience[256] = "";
	char *subject = xmalloc(IDENTITY_TOKEN_MAX);
	if (!http_param(form, "grant_type", grant, sizeof grant) || strcmp(grant, GRANT_EXCHANGE)) {
		oauth_error(&resp, 400, "unsupported_grant_type", "grant_type must be " GRANT_EXCHANGE);
	} else if (!http_param(form, "subject_token", subject, IDENTITY_TOKEN_MAX) || !*subject) {
		oauth_error(&resp, 400, "invalid_request", "subject_token is missing or too long");
	} else if (!http_param(form, "subject_token_type", type, sizeof type) ||
		   (strcmp(type, TOKEN_TYPE_JWT) && strcmp(type, TOKEN_TYPE_ID))) {
		oauth_error(&resp, 400, "invalid_request",
			    "subject_token_type must be " TOKEN_TYPE_JWT " or " TOKEN_TYPE_ID);
	} else {
		http_param(form, "resource", resource, sizeof resource);
		http_param(form, "audience", audience, sizeof audience);
		if (!*resource && !*audience)
			oauth_error(&resp, 400, "invalid_target",
				    "name the upstream with resource or audience");
	}
	explicit_bzero(form, req->body_len);
	if (resp.status) {
		free(subject);
		return http_reply(p, &resp);
	}
	http_job_t *j = job_new(d, p, JOB_EXCHANGE);
	j->subject_token = subject;
	snprintf(j->resource, sizeof j->resource, "%s", *resource ? resource : audience);
	job_queue(j);
}

static void serve_doc(daemon_t *d, const char *path, http_pending_t *p)
{
	if (!d->plugins.identity || !d->plugins.identity->ops.identity.http_get)
		return reply_text(p, 404, "not found\n");
	if (strlen(path) >= sizeof((http_job_t *)0)->path)
		return reply_text(p, 404, "not found\n");
	http_job_t *j = job_new(d, p, JOB_DOC);
	snprintf(j->path, sizeof j->path, "%s", path);
	job_queue(j);
}

/* The [http] listener. */
static void on_request(void *data, const http_request_t *req, http_pending_t *p)
{
	daemon_t *d = data;
	bool get = strcmp(req->method, "GET") == 0;
	metrics_add("http_requests_total", NULL, 1);
	if (strcmp(req->path, "/v1/token") == 0) {
		if (strcmp(req->method, "POST") != 0)
			return reply_not_allowed(p, ALLOW_POST);
		if (!d->plugins.identity)
			return reply_text(p, 404, "not found\n");
		return token_exchange(d, req, p);
	}
	/* Every other resource here is read-only. */
	if (!get)
		return reply_not_allowed(p, ALLOW_GET);
	if (strcmp(req->path, "/healthz") == 0)
		return reply_text(p, 200, "ok\n");
	if (strcmp(req->path, "/metrics") == 0) {
		if (!d->cfg.http.metrics)
			return reply_text(p, 404, "not found\n");
		_cleanup_sb_ strbuf_t b = STRBUF_INIT;
		metrics_render(&b);
		return reply(p, 200, "text/plain; version=0.0.4", b.buf ? b.buf : "");
	}
	return serve_doc(d, req->path, p);
}

/* The metadata endpoint of sandbox sb. */
static void on_metadata(void *data, sandbox_t *sb, const http_request_t *req, http_pending_t *p)
{
	daemon_t *d = data;
	metrics_add("metadata_requests_total", NULL, 1);
	const char *flavor = http_header(req, "metadata-flavor");
	if (!flavor || strcmp(flavor, "hutch") != 0)
		return reply_text(p, 403, "missing header: Metadata-Flavor: hutch\n");
	if (http_header(req, "x-forwarded-for"))
		return reply_text(p, 403, "forwarded requests are refused\n");
	if (sandbox_state(sb) != SANDBOX_RUNNING)
		return reply_text(p, 403, "the sandbox is not running\n");
	bool get = strcmp(req->method, "GET") == 0;
	if (strcmp(req->path, "/") == 0) {
		if (!get)
			return reply_not_allowed(p, ALLOW_GET);
		return reply(p, 200, "application/json",
			     "{\"endpoints\":[\"/v1/identity/token?audience=AUD\",\"/v1/token\"]}\n");
	}
	if (strcmp(req->path, "/v1/identity/token") == 0) {
		if (!get)
			return reply_not_allowed(p, ALLOW_GET);
		http_job_t *j = job_new(d, p, JOB_ISSUE);
		if (strstr(req->query, "audience=") &&
		    !http_param(req->query, "audience", j->audience, sizeof j->audience)) {
			free(j);
			return reply_text(p, 400, "audience is too long or badly encoded\n");
		}
		sandbox_who_t who;
		sandbox_who(sb, &who);
		snprintf(j->tenant, sizeof j->tenant, "%s", who.tenant);
		snprintf(j->id, sizeof j->id, "%s", who.id);
		snprintf(j->name, sizeof j->name, "%s", who.name ? who.name : "");
		snprintf(j->digest, sizeof j->digest, "%s", who.image_digest ? who.image_digest : "");
		if (!j->audience[0] && who.audience)
			snprintf(j->audience, sizeof j->audience, "%s", who.audience);
		sandbox_ref(sb);
		j->sb = sb;
		return job_queue(j);
	}
	if (strcmp(req->path, "/v1/token") == 0) {
		if (strcmp(req->method, "POST") != 0)
			return reply_not_allowed(p, ALLOW_POST);
		return token_exchange(d, req, p);
	}
	return reply_text(p, 404, "not found\n");
}

void http_api_metadata(void *data, sandbox_t *sb, const http_request_t *req, http_pending_t *p)
{
	on_metadata(data, sb, req, p);
}

/* ---- the listener ---- */

int http_api_start(daemon_t *d, hutch_err_t *err)
{
	const http_section_t *h = &d->cfg.http;
	const char *listen = h->listen ? h->listen : d->plugins.identity ? "127.0.0.1:7480" : NULL;
	if (!listen)
		return 0;
	char host[256];
	int port;
	if (daemon_split_host_port(listen, host, sizeof host, &port) < 0)
		return hutch_err_set(err, EINVAL, "[http] listen `%s`: expected host:port", listen);
	int r = http_server_new(&d->loop, on_request, d, &d->http, err);
	if (r < 0)
		return r;
	if ((r = http_server_listen(d->http, host, port, h->tls_cert, h->tls_key, err)) < 0) {
		hutch_err_prefix(err, "[http] listen on %s", listen);
		return daemon_config_hint(&d->cfg, "http",
					  d->plugins.identity ? d->plugins.identity->name : NULL, err);
	}
	log_info("HTTP on %s://%s:%d (%s)", h->tls_cert ? "https" : "http", host,
		 http_server_port(d->http),
		 d->plugins.identity ? "OIDC issuer, token exchange, metrics" : "metrics");
	return 0;
}

void http_api_stop(daemon_t *d)
{
	if (d->http) {
		http_server_close(d->http);
		d->http = NULL;
	}
}
