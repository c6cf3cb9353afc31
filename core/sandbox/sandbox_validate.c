/* What a spec may ask for, and the defaults it gets: the stored spec says
 * what the sandbox really got. */
#include "sandbox_priv.h"

#include <string.h>

#include "image_builtin.h"
#include "names.h"

#define MIN_MEMORY (64LL << 20)
/* The most a spec may ask for, whatever the config: the kernel's own
 * pid limit (PID_MAX_LIMIT), and a writable layer of 1 TiB. */
#define SANDBOX_PIDS_MAX (4 * 1024 * 1024)
#define SANDBOX_DISK_MAX (1LL << 40)

/* A tunnel's name: [a-z0-9-], 1-63, no '-' at either end (the plugin
 * checks too; this says it before anything is made). */
static bool valid_tunnel_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

/* Tunnels need a network plugin that makes them (one with tunnel_add). */
static int tunnels_check(sandbox_mgr_t *m, const sandbox_spec_t *s, hutch_err_t *err)
{
	if (s->n_tunnels == 0)
		return 0;
	bool maker = false;
	for (size_t i = 0; i < m->d.plugins->n_network && !maker; i++)
		maker = m->d.plugins->network[i]->ops.network.tunnel_add != NULL;
	if (!maker)
		return hutch_err_set(err, ENOTSUP,
				     "tunnels need a tunnel network plugin (none is configured: add net-wireguard to [plugins] network)");
	if (s->n_tunnels > 8)
		return hutch_err_set(err, EINVAL, "at most 8 tunnels per sandbox");
	for (size_t i = 0; i < s->n_tunnels; i++) {
		if (!valid_tunnel_name(s->tunnels[i]))
			return hutch_err_set(err, EINVAL,
					     "tunnel name `%s`: 1-63 of [a-z0-9-], not starting or ending with `-`",
					     s->tunnels[i] ? s->tunnels[i] : "");
		for (size_t k = 0; k < i; k++)
			if (strcmp(s->tunnels[i], s->tunnels[k]) == 0)
				return hutch_err_set(err, EINVAL, "tunnel `%s` is listed twice",
						     s->tunnels[i]);
	}
	return 0;
}

/* Checks the request and fills in defaults: the stored spec says what the
 * sandbox really got. */
int sandbox_spec_resolve(sandbox_mgr_t *m, const char *tenant, sandbox_spec_t *s,
			hutch_err_t *err)
{
	const sandbox_section_t *c = &m->d.cfg->sandbox;
	if (!s->image || !*s->image)
		sandbox_str_set(&s->image, c->default_image);
	if (!m->images.resolve && !image_builtin_known(s->image))
		return hutch_err_set(err, ENOENT, "image `%s` not found (available: busybox)", s->image);
	if (s->name && *s->name) {
		if (!object_name_valid(s->name))
			return hutch_err_set(err, EINVAL,
					     "name `%s`: use 1-63 characters of letters, digits, - _ .",
					     s->name);
		for (sandbox_t *o = m->list; o; o = o->next)
			if (sandbox_state_live(o->state) && o->name && strcmp(o->name, s->name) == 0 &&
			    strcmp(o->tenant, tenant) == 0)
				return hutch_err_set(err, EEXIST, "a sandbox named `%s` is already running (%s)",
						     s->name, o->id);
	}
	if (s->cpu_millis < 0 || s->memory_bytes < 0 || s->lifetime_seconds < 0 ||
	    s->idle_timeout_seconds < 0 || s->pids_max < 0 || s->disk_bytes < 0)
		return hutch_err_set(err, EINVAL, "resource values must not be negative");
	if (s->cpu_millis == 0)
		s->cpu_millis = (int64_t)(c->cpu * 1000);
	if (s->cpu_millis < 10)
		return hutch_err_set(err, EINVAL, "cpu %lldm is too little (at least 10m)",
				     (long long)s->cpu_millis);
	if (s->cpu_millis > (int64_t)(c->max_cpu * 1000))
		return hutch_err_set(err, EINVAL, "cpu %.2f is more than the %.2f allowed",
				     s->cpu_millis / 1000.0, c->max_cpu);
	if (s->memory_bytes == 0)
		s->memory_bytes = c->memory;
	if (s->memory_bytes < MIN_MEMORY)
		return hutch_err_set(err, EINVAL, "memory %lld MiB is too little (at least %lld MiB)",
				     (long long)(s->memory_bytes >> 20), MIN_MEMORY >> 20);
	if (s->memory_bytes > c->max_memory)
		return hutch_err_set(err, EINVAL, "memory %lld MiB is more than the %lld MiB allowed",
				     (long long)(s->memory_bytes >> 20), (long long)(c->max_memory >> 20));
	/* Durations are compared in seconds: a client's value times 1000
	 * could overflow (2^62 s once wrapped to an expiry a second away). */
	int64_t max_life_s = c->max_lifetime_ms / 1000;
	if (s->lifetime_seconds == 0)
		s->lifetime_seconds = c->lifetime_ms / 1000;
	if (s->lifetime_seconds > max_life_s)
		return hutch_err_set(err, EINVAL, "lifetime %llds is longer than the %llds allowed",
				     (long long)s->lifetime_seconds, (long long)max_life_s);
	if (s->idle_timeout_seconds == 0)
		s->idle_timeout_seconds = c->idle_timeout_ms / 1000;
	/* An idle timeout past the longest lifetime could never fire. */
	if (s->idle_timeout_seconds > max_life_s)
		return hutch_err_set(err, EINVAL,
				     "idle timeout %llds is longer than the %llds a sandbox may live",
				     (long long)s->idle_timeout_seconds, (long long)max_life_s);
	if (s->pids_max == 0)
		s->pids_max = c->pids_max;
	if (s->pids_max > SANDBOX_PIDS_MAX)
		return hutch_err_set(err, EINVAL, "pids %lld is more than the %d allowed",
				     (long long)s->pids_max, SANDBOX_PIDS_MAX);
	if (s->disk_bytes == 0)
		s->disk_bytes = c->disk;
	if (s->disk_bytes > SANDBOX_DISK_MAX)
		return hutch_err_set(err, EINVAL, "disk %lld GiB is more than the %lld GiB allowed",
				     (long long)(s->disk_bytes >> 30), (long long)(SANDBOX_DISK_MAX >> 30));
	if (s->workdir && *s->workdir && s->workdir[0] != '/')
		return hutch_err_set(err, EINVAL, "workdir `%s` must be an absolute path", s->workdir);
	for (size_t i = 0; i < s->n_env; i++)
		if (!env_key_valid(s->env[i].key))
			return hutch_err_set(err, EINVAL, "env key `%s`: use letters, digits and _",
					     s->env[i].key ? s->env[i].key : "");
	for (size_t i = 0; i < s->n_ports; i++)
		if (s->ports[i] == 0 || s->ports[i] > 65535)
			return hutch_err_set(err, EINVAL, "port %u is not a TCP port", s->ports[i]);
	if (s->n_network_policies > 0 && m->d.plugins->n_network == 0)
		return hutch_err_set(err, ENOTSUP,
				     "network policies need a network plugin (none is configured in [plugins] network)");
	if (s->identity_audience && *s->identity_audience && !m->d.plugins->identity)
		return hutch_err_set(err, ENOTSUP,
				     "identity_audience `%s`: sandboxes get no identity token without an identity plugin (none is configured in [plugins] identity)",
				     s->identity_audience);
	/* Never accept a device that would not be there: the core does not
	 * drive the accelerator ABI yet, loaded plugin or not. */
	if (s->gpu && *s->gpu && m->d.plugins->n_accelerators == 0)
		return hutch_err_set(err, ENOTSUP,
				     "gpu `%s`: no accelerator is wired into sandboxes in this hutchd yet (no accelerator plugin is configured)",
				     s->gpu);
	if (s->gpu && *s->gpu)
		return hutch_err_set(err, ENOTSUP,
				     "gpu `%s`: no accelerator is wired into sandboxes in this hutchd yet (accelerator plugin `%s` is loaded, but sandboxes cannot use its devices)",
				     s->gpu, m->d.plugins->accelerators[0]->name);
	if (s->n_volumes > 0 && !m->d.plugins->storage)
		return hutch_err_set(err, ENOTSUP, "volumes need a storage plugin (none is configured)");
	if (s->n_volumes > 0) /* never accept a mount that would not happen */
		return hutch_err_set(err, ENOTSUP,
				     "volume mounts are not implemented in this hutchd yet (storage plugin `%s` is loaded, but sandboxes cannot mount volumes)",
				     m->d.plugins->storage->name);
	int rt = tunnels_check(m, s, err);
	if (rt < 0)
		return rt;
	for (size_t i = 0; i < s->n_command; i++)
		if (!s->command[i] || (i == 0 && !*s->command[i]))
			return hutch_err_set(err, EINVAL, "command must name a program");
	for (size_t i = 0; i < s->n_ports; i++)
		for (size_t k = 0; k < i; k++)
			if (s->ports[i] == s->ports[k])
				return hutch_err_set(err, EINVAL, "port %u is listed twice", s->ports[i]);
	uint32_t running = sandbox_mgr_running_count(m, NULL);
	if (running >= (uint32_t)m->d.cfg->sandbox.max_sandboxes)
		return hutch_err_set(err, EAGAIN, "%u sandboxes are running, the most this host allows",
				     running);
	return 0;
}
