/*
 * router.h: hutchd's HTTP entry to services: a policy on the shared proxy
 * engine (core/proxy) that sends each request to a replica of the scaling
 * group, or to the forwarded port of the container, that its Host or path
 * names (route_name.h), in the group's tenant only.
 *
 * Groups: a ready replica picked by group_pick, else the request is held
 * (group_hold). Containers: a running sandbox of the tenant, by id or name,
 * whose first port is forwarded. Upstreams are the replicas' port
 * forwards on host loopback (port_forward.h), which hutchd keeps anyway.
 * Everything runs on the daemon's loop.
 */
#ifndef HUTCH_ROUTER_H
#define HUTCH_ROUTER_H

#include <uv.h>

#include <hutch/error.h>

#include "daemon_config.h"
#include "group.h"
#include "sandbox_mgr.h"

typedef struct router router_t;

int router_new(uv_loop_t *loop, const router_section_t *cfg, group_mgr_t *groups,
	       sandbox_mgr_t *sandboxes, router_t **out, hutch_err_t *err);
/* "127.0.0.1:7490": where it listens (the bound port). */
const char *router_address(const router_t *rt);
/* "http://127.0.0.1:7490" (https with TLS). */
const char *router_base_url(const router_t *rt);
const char *router_domain(const router_t *rt);
/* Stops listening and cuts what is in flight; done(arg) once freed. */
void router_close(router_t *rt, void (*done)(void *arg), void *arg);

#endif
