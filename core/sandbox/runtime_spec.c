#include "runtime_spec.h"

#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "strbuf.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

void runtime_id_new(const char *prefix, char out[32])
{
	uint8_t b[6];
	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
		for (size_t i = 0; i < sizeof b; i++)
			b[i] = (uint8_t)rand();
	snprintf(out, 32, "%s-%02x%02x%02x%02x%02x%02x", prefix, b[0], b[1], b[2], b[3], b[4], b[5]);
}

void runtime_spec_build(runtime_spec_t *out, const runtime_spec_opts_t *o)
{
	*out = (runtime_spec_t){0};
	static const char *const etc_names[] = {"hosts", "hostname", "resolv.conf"};
	size_t nm = 3 + o->n_mounts;
	out->mounts = xcalloc(nm, sizeof *out->mounts);
	for (size_t i = 0; i < 3; i++) {
		out->etc_src[i] = xasprintf("%s/etc/%s", o->run_dir, etc_names[i]);
		out->etc_dst[i] = xasprintf("/etc/%s", etc_names[i]);
		out->mounts[i] = (hutch_mount_t){out->etc_src[i], out->etc_dst[i], HUTCH_MOUNT_READONLY};
	}
	for (size_t i = 0; i < o->n_mounts; i++)
		out->mounts[3 + i] = o->mounts[i];
	out->env = xcalloc(o->n_env + 1, sizeof *out->env);
	size_t ne = 0;
	bool has_path = false;
	for (size_t i = 0; i < o->n_env; i++) {
		out->env[ne++] = o->env[i];
		has_path |= strcmp(o->env[i].key, "PATH") == 0;
	}
	if (!has_path)
		out->env[ne++] = (hutch_kv_t){"PATH", DEFAULT_PATH};
	out->ports = xcalloc(o->n_ports + 1, sizeof *out->ports);
	for (size_t i = 0; i < o->n_ports; i++)
		out->ports[i] = (uint16_t)o->ports[i];
	out->rs = (hutch_sandbox_spec_t){
		.size = sizeof out->rs,
		.id = o->id,
		.tenant = o->tenant,
		.name = o->name,
		.hostname = o->id,
		.layers = o->layers,
		.n_layers = o->n_layers,
		.argv = o->argv,
		.init_stdin_fd = o->argv ? o->init_stdin_fd : -1,
		.init_stdout_fd = o->argv ? o->init_stdout_fd : -1,
		.init_stderr_fd = -1,
		.env = out->env,
		.n_env = ne,
		.workdir = "/",
		.cpu_millis = o->cpu_millis,
		.memory_bytes = o->memory_bytes,
		.pids_max = o->pids_max,
		.disk_bytes = o->disk_bytes,
		.mounts = out->mounts,
		.n_mounts = nm,
		.netns_path = o->netns_path,
		.ports = o->n_ports ? out->ports : NULL,
		.n_ports = o->n_ports,
		.loopback_addrs = o->loopback_addrs,
		.n_loopback_addrs = o->n_loopback_addrs,
	};
}

void runtime_spec_release(runtime_spec_t *s)
{
	for (size_t i = 0; i < 3; i++) {
		free(s->etc_src[i]);
		free(s->etc_dst[i]);
	}
	free(s->mounts);
	free(s->env);
	free(s->ports);
	*s = (runtime_spec_t){0};
}
