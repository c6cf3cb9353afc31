/*
 * sandbox_spec.h: what a sandbox is asked to be, in the core's own terms.
 *
 * The sandbox manager, the image source and validation work on this type;
 * the wire form (hutch.v1.SandboxSpec) is converted to and from it only in
 * the service layer (core/service/sandbox_pb.c), so the API's encoding
 * never reaches into the domain. Every string and array is malloc'ed and
 * owned by the spec (sandbox_spec_free); an unset string is NULL or "".
 * Counts go with their arrays.
 */
#ifndef HUTCH_SANDBOX_SPEC_H
#define HUTCH_SANDBOX_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sandbox_kv {
	char *key;
	char *value;
} sandbox_kv_t;

/* A secret the sandbox's processes get as environment variables. */
typedef struct sandbox_secret_ref {
	char *name;
	char *source;         /* "store" | "integration" | "inline" */
	sandbox_kv_t *values; /* inline only; wiped once resolved, never kept */
	size_t n_values;
} sandbox_secret_ref_t;

typedef struct sandbox_volume {
	char *name;
	char *path;
	bool read_only;
	char *version;
} sandbox_volume_t;

typedef struct sandbox_spec {
	char *image;            /* name or digest; "" or NULL: the default */
	char *name;             /* unique per tenant among live sandboxes */
	int64_t cpu_millis;     /* 0: the configured default, as all below */
	int64_t memory_bytes;
	int64_t lifetime_seconds;
	int64_t idle_timeout_seconds;
	int64_t pids_max;
	int64_t disk_bytes;
	sandbox_kv_t *env;
	size_t n_env;
	char *workdir;
	sandbox_kv_t *labels;
	size_t n_labels;
	uint32_t *ports;        /* TCP ports reachable through hutchd */
	size_t n_ports;
	char **network_policies; /* names of the tenant's policies */
	size_t n_network_policies;
	sandbox_secret_ref_t *secrets;
	size_t n_secrets;
	sandbox_volume_t *volumes;
	size_t n_volumes;
	char *gpu;
	char *identity_audience;
	char **tunnels;
	size_t n_tunnels;
	char **command;         /* the main process; none: the sandbox idles */
	size_t n_command;
} sandbox_spec_t;

/* NULL is ignored. Secret values are wiped before they are freed. */
void sandbox_spec_free(sandbox_spec_t *s);

/* Removes the values of inline secret references (wiped), before the spec
 * is stored or shown. */
void sandbox_spec_strip_secrets(sandbox_spec_t *s);

/* Appends env key=value (copies). */
void sandbox_spec_env_add(sandbox_spec_t *s, const char *key, const char *value);

/* Replaces *dst with a copy of src (NULL stays NULL). */
void sandbox_str_set(char **dst, const char *src);

#endif
