/*
 * group.h: scaling groups: a stored spec, the replicas that serve it, and
 * the manager that keeps them.
 *
 * A group is a template sandbox spec plus an HTTP port and scaling bounds.
 * Its replicas are ordinary sandboxes of the group's tenant, labelled
 * hutch.group=<name> and hutch.revision=<n>. The manager reconciles every
 * tick ([router] tick) and whenever something changes: it starts replicas
 * up to the desired count, replaces dead ones, rolls a changed spec out by
 * starting the new revision's replicas first (surge) and draining the old
 * ones only once enough new ones are ready (drain: no new requests, stopped
 * when their last request has ended), and stops everything on delete.
 * A replica is ready once its port accepts (the readiness path, when set,
 * answers 2xx/3xx); the router sends requests only to ready replicas.
 * Replicas live [sandbox] max_lifetime unless the template gives a
 * lifetime, and never go idle; one near the end of its lifetime is
 * replaced like a roll-out: a new one first, then the old one drained.
 *
 * The autoscaler (group_scale.c) samples in-flight plus held requests
 * every tick and sets the desired count from a stable and a panic window
 * as Knative does. With min_replicas 0 a group scales to zero once no
 * request came for its scaledown window; the router then holds requests
 * (group_hold) while the first replica starts.
 *
 * Loop thread only. Specs are stored through the codec the service layer
 * gives (core/service/group_pb.c); nothing here sees protobuf.
 */
#ifndef HUTCH_GROUP_H
#define HUTCH_GROUP_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include <hutch/error.h>

#include "daemon_config.h"
#include "proxy.h"
#include "sandbox_mgr.h"
#include "store.h"

typedef struct group_mgr group_mgr_t;
typedef struct group group_t;
typedef struct replica replica_t;

typedef struct group_spec {
	char *name;
	sandbox_spec_t *tmpl;        /* what replicas run (owned) */
	uint32_t port;
	uint32_t min_replicas, max_replicas;
	uint32_t target_concurrency; /* in flight per replica the autoscaler aims at */
	uint32_t max_concurrency;    /* per-replica cap the router keeps */
	int64_t scaledown_window_ms;
	char *readiness_path;        /* NULL or "": the port answering HTTP */
} group_spec_t;

void group_spec_free(group_spec_t *s);

typedef enum replica_state {
	REPLICA_STARTING = 1,
	REPLICA_READY = 2,
	REPLICA_DRAINING = 3,
} replica_state_t;

/* A group as shown (group_view): pointers into the group, valid until the
 * loop runs again. */
typedef struct replica_view {
	const char *sandbox_id;
	replica_state_t state;
	int64_t revision;
	uint32_t in_flight;
	const char *upstream;
} replica_view_t;

typedef struct group_view {
	const group_spec_t *spec;
	const char *tenant;
	int64_t revision, created_ms;
	uint32_t desired, ready, queued;
	uint64_t requests, errors;
	replica_view_t *replicas; /* malloc'ed array: free(view.replicas) */
	size_t n_replicas;
} group_view_t;

/* How stored groups are encoded (the service layer's). */
typedef struct group_codec {
	int (*encode)(const group_spec_t *s, int64_t revision, uint8_t **buf, size_t *len,
		      hutch_err_t *err);
	int (*decode)(const uint8_t *buf, size_t len, group_spec_t **s, int64_t *revision,
		      hutch_err_t *err);
	/* A deep copy of a sandbox spec. */
	sandbox_spec_t *(*spec_dup)(const sandbox_spec_t *s);
} group_codec_t;

typedef struct group_mgr_deps {
	uv_loop_t *loop;
	sandbox_mgr_t *sandboxes;
	store_t *store;
	const router_section_t *cfg;
	const group_codec_t *codec;
	/* [sandbox] max_lifetime: what a replica lives unless the template
	 * says (it is replaced before then, see group_replicas.c) */
	int64_t max_lifetime_ms;
} group_mgr_deps_t;

/* Loads the stored groups and adopts their live replicas. */
int group_mgr_new(const group_mgr_deps_t *deps, group_mgr_t **out, hutch_err_t *err);
/* Daemon shutdown: timers close, held requests are answered 503; replicas
 * keep running (found again at the next start). */
void group_mgr_close(group_mgr_t *m);
void group_mgr_free(group_mgr_t *m);

/* Creates, or replaces the spec of, tenant's group spec->name (spec taken,
 * also on error). A changed spec is a new revision, rolled out. */
int group_deploy(group_mgr_t *m, const char *tenant, group_spec_t *spec, group_t **out,
		 hutch_err_t *err);
group_t *group_find(group_mgr_t *m, const char *tenant, const char *name);
typedef void (*group_iter_cb)(void *data, group_t *g);
void group_each(group_mgr_t *m, const char *tenant, group_iter_cb cb, void *data);
/* New bounds (max 0: keep; raised to min when below it). */
int group_scale(group_t *g, uint32_t min_replicas, uint32_t max_replicas, hutch_err_t *err);
/* Stops every replica and forgets the group (stored record removed now). */
void group_delete(group_t *g);
void group_view(const group_t *g, group_view_t *out);

/* Events: a line per thing that happened (replica ready, replaced,
 * scaled). A watcher is called for each new one until removed. */
typedef void (*group_event_cb)(void *data, int64_t unix_ms, const char *msg);
typedef struct group_watch group_watch_t;
group_watch_t *group_watch(group_t *g, group_event_cb cb, void *data);
/* Also called by the manager when the group is deleted (cb gets NULL msg
 * first). */
void group_unwatch(group_watch_t *w);

/* ---- for the router ---- */

/* Picks a ready replica (two random choices, fewer in flight wins; none
 * at its cap) and counts the request in flight on it: fills up and
 * returns it, or NULL when none can take it now. */
replica_t *group_pick(group_t *g, proxy_upstream_t *up);
/* Connecting to failed (a replica's upstream) did not work for a request
 * counted on it: moves the request's count to another ready replica of its
 * group, not that one, and fills up with it. False (the count left where it
 * is) when failed is no replica's or no other one can take it now. */
bool group_mgr_repick(group_mgr_t *m, const proxy_upstream_t *failed, proxy_upstream_t *up);
/* A request for g is over (forwarded or answered here, e.g. 503): counted
 * for /metrics, and one picked on a replica leaves its in-flight count
 * (the replica may be gone: looked up by upstream name). replica receives
 * the replica's sandbox id, "" if none. */
void group_request_done(group_t *g, const proxy_log_t *e, char *replica, size_t cap);
/* Any request the router answered (for a group, a container or nothing). */
void group_mgr_count_request(group_mgr_t *m, int status);
/* Holds route until a replica can take it (asks for one when the group is
 * at zero), then forwards it there with proxy_route_done; answers 503 with
 * Retry-After if the hold times out. Returns false, with route filled with
 * that 503, when the queue is full (the caller's route is then done). */
bool group_hold(group_t *g, proxy_route_t *route);
/* The client left while held. Returns false if route is not held here. */
bool group_unhold(group_mgr_t *m, proxy_route_t *route);

#endif
