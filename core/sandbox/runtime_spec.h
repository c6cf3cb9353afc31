/*
 * runtime_spec.h: the spec the runtime plugin gets (hutch_sandbox_spec_t),
 * built one way for user sandboxes (sandbox_create.c) and image build
 * sandboxes (build_sandbox.c).
 *
 * What every sandbox gets: its id as hostname, "/" as the runtime's
 * workdir, PATH unless the caller's env sets it, and the /etc files of its
 * run dir (hosts, hostname, resolv.conf; see rundir.h) bound read-only, so
 * a sandbox can neither grow files in the host's run dir nor carry them
 * into a committed layer. The caller's mounts come after those.
 */
#ifndef HUTCH_RUNTIME_SPEC_H
#define HUTCH_RUNTIME_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include <hutch/plugin.h>

typedef struct runtime_spec_opts {
	const char *id;
	const char *tenant;
	const char *name;               /* NULL: none */
	const char *run_dir;            /* holds etc/{hosts,hostname,resolv.conf} */
	const char *const *layers;      /* read-only layer dirs, lowest first */
	size_t n_layers;
	const char *const *argv;        /* init; NULL: the runtime's idle init */
	int init_stdin_fd, init_stdout_fd; /* -1: none */
	const hutch_kv_t *env;
	size_t n_env;
	int64_t cpu_millis, memory_bytes, pids_max, disk_bytes; /* 0: defaults */
	const hutch_mount_t *mounts;    /* after the /etc files */
	size_t n_mounts;
	const char *netns_path;         /* NULL: the runtime makes one */
	const uint32_t *ports;
	size_t n_ports;
	const char *const *loopback_addrs;
	size_t n_loopback_addrs;
} runtime_spec_opts_t;

typedef struct runtime_spec {
	hutch_sandbox_spec_t rs; /* for the runtime: points into the fields below and opts */
	hutch_mount_t *mounts;
	char *etc_src[3], *etc_dst[3];
	hutch_kv_t *env;
	uint16_t *ports;
} runtime_spec_t;

/* A fresh sandbox id, "<prefix>-" and 12 hex digits ("sb" user, "bld"
 * build sandboxes: recovery tells them apart by it). */
void runtime_id_new(const char *prefix, char out[32]);

/* Fills out; what opts points to must outlive out's use. */
void runtime_spec_build(runtime_spec_t *out, const runtime_spec_opts_t *o);
void runtime_spec_release(runtime_spec_t *s);

#endif
