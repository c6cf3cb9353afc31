/*
 * api.h: hutchd's gRPC services (package hutch.v1) and what they share:
 * mapping errors to statuses, the caller's tenant.
 */
#ifndef HUTCH_API_H
#define HUTCH_API_H

#include "daemon.h"
#include "grpc_server.h"

/* errno (positive or negative) -> the gRPC status a client should see. */
grpc_status_t api_status_from_errno(int code);

/* Ends call with the status for err->code and err's message. */
void api_fail(grpc_call_t *call, const hutch_err_t *err);

/* Every gRPC service hutchd serves, registered in one place
 * (api_services.c): daemon.c calls api_services_register once. Each
 * api_<service>.c registers its methods with its own function below; a
 * new service adds its line there and here. */
int api_services_register(daemon_t *d, hutch_err_t *err);

int api_daemon_register(daemon_t *d, hutch_err_t *err);   /* Daemon */
int api_sandbox_register(daemon_t *d, hutch_err_t *err);  /* Sandboxes: lifecycle */
int api_exec_register(daemon_t *d, hutch_err_t *err);     /* Sandboxes: Exec, Run */
int api_files_register(daemon_t *d, hutch_err_t *err);    /* Sandboxes: files */
int api_policy_register(daemon_t *d, hutch_err_t *err);   /* Policies, UpdatePolicies */
int api_secret_register(daemon_t *d, hutch_err_t *err);   /* Secrets */
int api_identity_register(daemon_t *d, hutch_err_t *err); /* Identity */
int api_image_register(daemon_t *d, hutch_err_t *err);    /* Images */
int api_scaling_group_register(daemon_t *d, hutch_err_t *err); /* ScalingGroups, Router */
int api_tunnel_register(daemon_t *d, hutch_err_t *err);   /* Tunnels */
int api_meta_register(daemon_t *d, hutch_err_t *err);     /* grpc.health.v1, reflection (api_meta.c) */

/* The authorize hook: unix-socket callers get [api] unix_tenant; TCP callers
 * must present `authorization: Bearer <key>` matching an [[api.key]]. */
grpc_status_t api_authorize(void *data, grpc_call_t *call, char *msg, size_t cap);
void api_auth_release(void *data, void *auth);

/* The [http] listener (http_api.c): started after the gRPC listeners when
 * configured or when an identity plugin is loaded; stopped first. */
int http_api_start(daemon_t *d, hutch_err_t *err);
void http_api_stop(daemon_t *d);
/* sandbox_mgr's metadata hook (data: the daemon). */
void http_api_metadata(void *data, sandbox_t *sb, const http_request_t *req, http_pending_t *p);

/* Hex SHA-256 of an API key, as [[api.key]] sha256 holds it. */
void api_key_digest(const char *key, char out[65]);

#endif
