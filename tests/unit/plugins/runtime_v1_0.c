/* A runtime plugin as someone who wrote one against ABI 1.0 would have: it
 * is compiled against the frozen 1.0 header (tests/unit/abi-1.0), so it
 * knows nothing of what later minors added (hutch_sandbox_status_t's
 * netns_path and oom_kills, the spec's ports and loopback addresses,
 * sandbox_commit). It keeps its sandboxes in memory and runs nothing, so
 * that test_abi_1_0 can drive every op it has through today's core.
 *
 * Echoes that let the test see each side read the other's structs at the
 * right offsets: a sandbox's status reports the spec's memory_bytes and
 * n_layers (as memory_bytes and pids_current); an exec command is
 * `echo <hostname> <argv[0]>`; a spec annotation "test.oom" = "1" makes the
 * sandbox report oom_killed, the way a 1.0 runtime reported an OOM kill. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hutch/plugin.h>

#if HUTCH_PLUGIN_ABI_MINOR != 0
#error "this plugin must be built against the frozen ABI 1.0 header"
#endif

typedef struct v10_config {
	int64_t pid_base;
} v10_config_t;

static const hutch_config_field_t options[] = {
	{HUTCH_CONFIG_INT, "pid_base", "4000", offsetof(v10_config_t, pid_base),
	 "first pid the fake sandboxes report", 0, NULL},
	{0},
};

#define MAX_SANDBOXES 8
typedef struct v10_sandbox {
	bool used;
	char id[64];
	char hostname[64];
	hutch_sandbox_phase_t phase;
	pid_t pid;
	bool oom;
	int exit_code;
	int64_t memory_bytes;
	int64_t n_layers;
} v10_sandbox_t;

typedef struct v10 {
	const hutch_host_t *host;
	int64_t pid_base;
	pthread_mutex_t lock;
	v10_sandbox_t sb[MAX_SANDBOXES];
	int created;
} v10_t;

static v10_sandbox_t *find(v10_t *v, const char *id)
{
	for (int i = 0; i < MAX_SANDBOXES; i++)
		if (v->sb[i].used && strcmp(v->sb[i].id, id) == 0)
			return &v->sb[i];
	return NULL;
}

/* As 1.0 runtimes wrote it: their own sizeof, nothing past it. */
static void fill_status(const v10_sandbox_t *s, hutch_sandbox_status_t *st)
{
	memset(st, 0, sizeof *st);
	st->size = sizeof *st;
	st->phase = s ? s->phase : HUTCH_PHASE_UNKNOWN;
	if (!s)
		return;
	st->pid = s->pid;
	st->oom_killed = s->oom;
	st->exit_code = s->exit_code;
	st->memory_bytes = s->memory_bytes;
	st->cpu_usage_ns = -1;
	st->pids_current = s->n_layers;
}

static bool wants_oom(const hutch_sandbox_spec_t *spec)
{
	for (size_t i = 0; i < spec->n_annotations; i++)
		if (strcmp(spec->annotations[i].key, "test.oom") == 0 &&
		    strcmp(spec->annotations[i].value, "1") == 0)
			return true;
	return false;
}

static int v10_create(void *instance, const hutch_sandbox_spec_t *spec,
		      hutch_sandbox_status_t *status, hutch_err_t *err)
{
	v10_t *v = instance;
	if (spec->size < sizeof *spec)
		return hutch_err_set(err, EINVAL, "spec is %u bytes, want at least %zu",
				     spec->size, sizeof *spec);
	pthread_mutex_lock(&v->lock);
	v10_sandbox_t *s = NULL;
	for (int i = 0; i < MAX_SANDBOXES && !s; i++)
		if (!v->sb[i].used)
			s = &v->sb[i];
	if (!s || find(v, spec->id)) {
		pthread_mutex_unlock(&v->lock);
		return hutch_err_set(err, s ? EEXIST : ENOSPC, "sandbox %s: no room or exists",
				     spec->id);
	}
	memset(s, 0, sizeof *s);
	s->used = true;
	snprintf(s->id, sizeof s->id, "%s", spec->id);
	snprintf(s->hostname, sizeof s->hostname, "%s", spec->hostname);
	s->phase = HUTCH_PHASE_RUNNING;
	s->pid = (pid_t)(v->pid_base + v->created++);
	s->oom = wants_oom(spec);
	s->memory_bytes = spec->memory_bytes;
	s->n_layers = (int64_t)spec->n_layers;
	fill_status(s, status);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int v10_stop(void *instance, const char *id, int64_t grace_ms, hutch_err_t *err)
{
	v10_t *v = instance;
	(void)grace_ms, (void)err;
	pthread_mutex_lock(&v->lock);
	v10_sandbox_t *s = find(v, id);
	if (s && s->phase == HUTCH_PHASE_RUNNING) {
		s->phase = HUTCH_PHASE_STOPPED;
		s->exit_code = 137;
	}
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int v10_destroy(void *instance, const char *id, hutch_err_t *err)
{
	v10_t *v = instance;
	(void)err;
	pthread_mutex_lock(&v->lock);
	v10_sandbox_t *s = find(v, id);
	if (s)
		s->used = false;
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int v10_status(void *instance, const char *id, hutch_sandbox_status_t *status,
		      hutch_err_t *err)
{
	v10_t *v = instance;
	(void)err;
	pthread_mutex_lock(&v->lock);
	fill_status(find(v, id), status);
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static int v10_exec_command(void *instance, const char *id, const hutch_exec_spec_t *spec,
			    hutch_command_t *cmd, hutch_err_t *err)
{
	v10_t *v = instance;
	pthread_mutex_lock(&v->lock);
	v10_sandbox_t *s = find(v, id);
	char hostname[64];
	snprintf(hostname, sizeof hostname, "%s", s ? s->hostname : "");
	pthread_mutex_unlock(&v->lock);
	if (!s)
		return hutch_err_set(err, ENOENT, "no sandbox %s", id);
	if (!spec->argv || !spec->argv[0])
		return hutch_err_set(err, EINVAL, "empty argv");
	char **argv = calloc(4, sizeof *argv);
	if (!argv || !(argv[0] = strdup("echo")) || !(argv[1] = strdup(hostname)) ||
	    !(argv[2] = strdup(spec->argv[0]))) {
		for (int i = 0; argv && i < 3; i++)
			free(argv[i]);
		free(argv);
		return hutch_err_set(err, ENOMEM, "out of memory");
	}
	cmd->argv = argv;
	cmd->netns_fd = -1;
	cmd->signal_exit_as_128 = true;
	return 0;
}

static int v10_list(void *instance, hutch_sandbox_found_cb cb, void *data, hutch_err_t *err)
{
	v10_t *v = instance;
	(void)err;
	pthread_mutex_lock(&v->lock);
	for (int i = 0; i < MAX_SANDBOXES; i++) {
		if (!v->sb[i].used)
			continue;
		hutch_sandbox_status_t st;
		fill_status(&v->sb[i], &st);
		cb(data, v->sb[i].id, &st);
	}
	pthread_mutex_unlock(&v->lock);
	return 0;
}

static void v10_capabilities(void *instance, hutch_kv_cb emit, void *data)
{
	(void)instance;
	emit(data, "abi", "1.0");
}

/* Uses the host table as a 1.0 plugin may: its size, a log line, and a
 * command run to completion with its output captured (the 1.0 layouts of
 * hutch_spawn_opts_t and hutch_run_result_t). */
static int v10_init(const hutch_host_t *host, const void *config, void **instance,
		    hutch_err_t *err)
{
	const v10_config_t *cfg = config;
	if (host->size < sizeof *host || host->abi_major != 1)
		return hutch_err_set(err, EPROTO, "host table is %u bytes, ABI %u", host->size,
				     host->abi_major);
	const char *argv[] = {"echo", "ready", NULL};
	hutch_spawn_opts_t o = {.size = sizeof o, .argv = argv, .stdin_fd = -1,
				.stdout_fd = -1, .stderr_fd = -1, .netns_fd = -1};
	char out[64];
	hutch_run_result_t res = {.size = sizeof res, .out = out, .out_cap = sizeof out};
	int r = host->run(host, &o, &res, err);
	if (r < 0)
		return r;
	if (res.exit_code != 0 || strcmp(out, "ready\n") != 0)
		return hutch_err_set(err, EPROTO, "host->run gave exit %d, output `%s`",
				     res.exit_code, out);
	v10_t *v = calloc(1, sizeof *v);
	if (!v)
		return hutch_err_set(err, ENOMEM, "out of memory");
	v->host = host;
	v->pid_base = cfg->pid_base;
	pthread_mutex_init(&v->lock, NULL);
	host->log(host, HUTCH_LOG_INFO, "ABI 1.0 runtime ready (pids from %lld)",
		  (long long)v->pid_base);
	*instance = v;
	return 0;
}

static void v10_fini(void *instance)
{
	v10_t *v = instance;
	pthread_mutex_destroy(&v->lock);
	free(v);
}

static const hutch_runtime_ops_t ops = {
	.size = sizeof ops,
	.sandbox_create = v10_create,
	.sandbox_stop = v10_stop,
	.sandbox_destroy = v10_destroy,
	.sandbox_status = v10_status,
	.exec_command = v10_exec_command,
	.sandbox_list = v10_list,
	.capabilities = v10_capabilities,
};

static const hutch_plugin_t desc = {
	.size = sizeof desc,
	.abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR,
	.kind = HUTCH_PLUGIN_RUNTIME,
	.name = "runtime-v1-0",
	.version = "1.0.0",
	.description = "an in-memory runtime built against the frozen ABI 1.0 header",
	.config = options,
	.config_size = sizeof(v10_config_t),
	.init = v10_init,
	.fini = v10_fini,
	.ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
