/* The router: the proxy policy that maps a request to a service. */
#include "router.h"

#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "access_log.h"
#include "log.h"
#include "route_name.h"
#include "strbuf.h"

struct router {
	proxy_listener_t *listener;
	proxy_listener_t *sandbox_listener; /* [router] sandbox_listen, or NULL */
	int closing;                        /* listeners still closing */
	group_mgr_t *groups;
	sandbox_mgr_t *sandboxes;
	char domain[256];
	char address[300];
	char base_url[320];
	SSL_CTX *tls;
	bool access_log;
	void (*done)(void *arg);
	void *done_arg;
};

static proxy_route_result_t answer(proxy_route_t *route, int status, const char *msg)
{
	proxy_route_local(route, status, "text/plain", msg, strlen(msg));
	return PROXY_ROUTE_DONE;
}

/* The path sent upstream in the path form: what follows /<tenant>/<name>,
 * always starting with "/". */
static void upstream_path(proxy_route_t *route, const char *rest)
{
	if (rest[0] == '/') {
		proxy_route_set_path(route, rest);
		return;
	}
	char buf[8192];
	snprintf(buf, sizeof buf, "/%s", rest);
	proxy_route_set_path(route, buf);
}

static proxy_route_result_t route_container(router_t *rt, const route_name_t *n,
					    proxy_route_t *route)
{
	sandbox_t *sb = sandbox_find(rt->sandboxes, n->tenant, n->name);
	if (!sb || sandbox_state(sb) != SANDBOX_RUNNING)
		return answer(route, 404, "no such service\n");
	sandbox_record_t rec;
	sandbox_view(sb, &rec);
	proxy_upstream_t up;
	hutch_err_t err;
	if (!rec.port_addrs || !rec.port_addrs[0] ||
	    proxy_upstream_parse(rec.port_addrs[0], &up, &err) < 0)
		return answer(route, 404, "no such service (the sandbox has no port)\n");
	proxy_route_forward(route, &up);
	return PROXY_ROUTE_DONE;
}

/* To the group, or the container, that n names. */
static proxy_route_result_t route_service(router_t *rt, const route_name_t *n,
					  proxy_route_t *route)
{
	if (!n->by_host)
		upstream_path(route, n->path);
	group_t *g = group_find(rt->groups, n->tenant, n->name);
	if (!g)
		return route_container(rt, n, route);
	proxy_upstream_t up;
	if (group_pick(g, &up)) {
		proxy_route_forward(route, &up);
		return PROXY_ROUTE_DONE;
	}
	return group_hold(g, route) ? PROXY_ROUTE_DEFER : PROXY_ROUTE_DONE;
}

static proxy_route_result_t route_request(void *data, const proxy_request_t *req,
					  proxy_route_t *route)
{
	router_t *rt = data;
	route_name_t n;
	int r = route_name_parse(rt->domain, req->authority, req->path, &n);
	if (r == -EINVAL)
		return answer(route, 400, "malformed service name in Host\n");
	if (r < 0)
		return answer(route, 404,
			      "no service named: use Host <name>.<tenant>.<domain> or the path /<tenant>/<name>/\n");
	return route_service(rt, &n, route);
}

/* ---- from sandboxes ([router] sandbox_listen) ---- */

typedef struct peer_find {
	const char *peer;
	char tenant[ROUTE_LABEL_MAX + 1];
	bool found;
} peer_find_t;

static void match_peer(void *data, sandbox_t *sb)
{
	peer_find_t *f = data;
	if (f->found || sandbox_state(sb) != SANDBOX_RUNNING)
		return;
	sandbox_record_t rec;
	sandbox_view(sb, &rec);
	size_t pl = strlen(f->peer);
	for (char **a = rec.addresses; a && *a; a++)
		if (strncmp(*a, f->peer, pl) == 0 && ((*a)[pl] == '\0' || (*a)[pl] == '/')) {
			snprintf(f->tenant, sizeof f->tenant, "%s", rec.tenant);
			f->found = true;
			return;
		}
}

/* A request from inside a sandbox (the gateway address, which the
 * sandboxes' resolver answers for <name>.<tenant>.<domain>): its source
 * address names the sandbox (net-egress drops spoofed ones), and it may
 * reach only its own tenant's services, whatever it names. A bare <name>
 * is a service of that tenant. Anything else is 404, as a service that
 * does not exist: nothing says another tenant's does. */
static proxy_route_result_t route_from_sandbox(void *data, const proxy_request_t *req,
					       proxy_route_t *route)
{
	router_t *rt = data;
	peer_find_t f = {.peer = req->peer};
	sandbox_each(rt->sandboxes, NULL, match_peer, &f);
	if (!f.found)
		return answer(route, 403, "not a sandbox\n");
	route_name_t n;
	int r = route_name_parse(rt->domain, req->authority, req->path, &n);
	if (r == -ENOENT) {
		/* Host: <name>[:port], one label */
		size_t hl = strcspn(req->authority, ":");
		if (hl && hl <= ROUTE_LABEL_MAX && route_label_valid(req->authority, hl)) {
			memset(&n, 0, sizeof n);
			memcpy(n.name, req->authority, hl);
			snprintf(n.tenant, sizeof n.tenant, "%s", f.tenant);
			n.by_host = true;
			r = 0;
		}
	}
	if (r == -EINVAL)
		return answer(route, 400, "malformed service name in Host\n");
	if (r < 0 || strcmp(n.tenant, f.tenant) != 0)
		return answer(route, 404, "no such service\n");
	return route_service(rt, &n, route);
}

/* Tries of one request on other replicas after the one picked refused it,
 * reset it or did not answer the connect: enough to step over a replica
 * that died since its last probe, few enough that a group whose replicas
 * all fail answers quickly. */
#define ROUTER_MAX_RETRIES 2

/* The engine asks only for idempotent requests without a body whose
 * upstream never got a byte, so sending it to another replica is safe. */
static bool route_upstream_failed(void *data, const proxy_request_t *req, proxy_route_t *route,
				  const proxy_upstream_t *failed, int attempt)
{
	router_t *rt = data;
	(void)req;
	proxy_upstream_t up;
	if (attempt > ROUTER_MAX_RETRIES || !group_mgr_repick(rt->groups, failed, &up))
		return false;
	proxy_route_forward(route, &up);
	return true;
}

static void route_cancel(void *data, proxy_route_t *route)
{
	router_t *rt = data;
	group_unhold(rt->groups, route);
}

/* Once per request: the group's counts, then the access log line. */
static void route_log(void *data, const proxy_log_t *e)
{
	router_t *rt = data;
	route_name_t n;
	char replica[64] = "";
	access_log_ctx_t ctx = {.replica = replica};
	group_mgr_count_request(rt->groups, e->status);
	if (route_name_parse(rt->domain, e->authority, e->path, &n) == 0) {
		ctx.tenant = n.tenant;
		ctx.service = n.name;
		group_t *g = group_find(rt->groups, n.tenant, n.name);
		ctx.kind = g ? "group" : "container";
		if (g)
			group_request_done(g, e, replica, sizeof replica);
	}
	if (rt->access_log)
		access_log_write(e, &ctx);
}

static const proxy_policy_t router_policy = {
	.size = sizeof(proxy_policy_t),
	.route = route_request,
	.cancel = route_cancel,
	.log = route_log,
	.upstream_failed = route_upstream_failed,
};

static const proxy_policy_t sandbox_policy = {
	.size = sizeof(proxy_policy_t),
	.route = route_from_sandbox,
	.cancel = route_cancel,
	.log = route_log,
	.upstream_failed = route_upstream_failed,
};

static int tls_context(const router_section_t *cfg, SSL_CTX **out, hutch_err_t *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return hutch_err_set(err, ENOMEM, "TLS context");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char buf[256];
		ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
		SSL_CTX_free(ctx);
		return hutch_err_set(err, EINVAL, "[router] tls_cert / tls_key: %s", buf);
	}
	*out = ctx;
	return 0;
}

int router_new(uv_loop_t *loop, const router_section_t *cfg, group_mgr_t *groups,
	       sandbox_mgr_t *sandboxes, router_t **out, hutch_err_t *err)
{
	if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL))
		return hutch_err_set(err, EINVAL, "[router] tls_cert and tls_key go together");
	router_t *rt = xcalloc(1, sizeof *rt);
	rt->groups = groups;
	rt->sandboxes = sandboxes;
	rt->access_log = cfg->access_log;
	size_t dn = strlen(cfg->domain);
	if (dn >= sizeof rt->domain) {
		free(rt);
		return hutch_err_set(err, EINVAL, "[router] domain is too long");
	}
	for (size_t i = 0; i <= dn; i++)
		rt->domain[i] = (char)(cfg->domain[i] >= 'A' && cfg->domain[i] <= 'Z'
					       ? cfg->domain[i] - 'A' + 'a' : cfg->domain[i]);
	int r;
	if (cfg->tls_cert && (r = tls_context(cfg, &rt->tls, err)) < 0) {
		free(rt);
		return r;
	}
	proxy_config_t pc = {
		.listen = cfg->listen,
		.tls = rt->tls,
		.add_forwarded = true,
		.policy = &router_policy,
		.policy_data = rt,
		.limits = {.response_timeout_ms = 300000},
	};
	if ((r = proxy_listener_new(loop, &pc, &rt->listener, err)) < 0) {
		if (rt->tls)
			SSL_CTX_free(rt->tls);
		free(rt);
		return hutch_err_prefix(err, "[router] listen on %s", cfg->listen);
	}
	if (cfg->sandbox_listen && cfg->sandbox_listen[0]) {
		proxy_config_t sc = pc;
		sc.listen = cfg->sandbox_listen;
		sc.tls = NULL;
		sc.policy = &sandbox_policy;
		sc.freebind = true;
		if ((r = proxy_listener_new(loop, &sc, &rt->sandbox_listener, err)) < 0) {
			hutch_err_prefix(err, "[router] sandbox_listen on %s", cfg->sandbox_listen);
			router_close(rt, NULL, NULL);
			return r;
		}
		log_info("router for sandboxes on %s (their own tenant's services only)",
			 cfg->sandbox_listen);
	}
	/* The host as configured, the port as bound. */
	const char *colon = strrchr(cfg->listen, ':');
	int hl = colon ? (int)(colon - cfg->listen) : (int)strlen(cfg->listen);
	snprintf(rt->address, sizeof rt->address, "%.*s:%d", hl, cfg->listen,
		 proxy_listener_port(rt->listener));
	snprintf(rt->base_url, sizeof rt->base_url, "%s://%s", rt->tls ? "https" : "http",
		 rt->address);
	log_info("router on %s (services at <name>.<tenant>.%s or %s/<tenant>/<name>/)",
		 rt->address, rt->domain, rt->base_url);
	*out = rt;
	return 0;
}

const char *router_address(const router_t *rt)
{
	return rt->address;
}

const char *router_base_url(const router_t *rt)
{
	return rt->base_url;
}

const char *router_domain(const router_t *rt)
{
	return rt->domain;
}

static void listener_closed(void *arg)
{
	router_t *rt = arg;
	if (--rt->closing > 0)
		return;
	if (rt->tls)
		SSL_CTX_free(rt->tls);
	void (*done)(void *) = rt->done;
	void *done_arg = rt->done_arg;
	free(rt);
	if (done)
		done(done_arg);
}

void router_close(router_t *rt, void (*done)(void *arg), void *arg)
{
	rt->done = done;
	rt->done_arg = arg;
	rt->closing = rt->sandbox_listener ? 2 : 1;
	if (rt->sandbox_listener)
		proxy_listener_close(rt->sandbox_listener, listener_closed, rt);
	proxy_listener_close(rt->listener, listener_closed, rt);
}
