/* A runtime built against the frozen ABI 1.0 header (plugins/runtime_v1_0.c)
 * loaded into today's core: it loads, its config binds, every op it has
 * works through the core's copy of its ops, and what it reports means the
 * same to the core as it did to a 1.0 core. In particular an OOM kill it
 * reports with the 1.0 field oom_killed is seen as one, although it never
 * writes the 1.1 counter oom_kills. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "cleanup.h"
#include "host_api.h"
#include "plugin_loader.h"
#include "runtime_call.h"
#include "strbuf.h"

typedef struct fixture {
	char dir[64];
	uv_loop_t loop;
	host_core_t *core;
	host_ctx_t *ctx;
	plugin_t *p;
} fixture_t;

/* Opens the plugin; config_toml NULL leaves its defaults. Starts it unless
 * the open failed (then f->p is NULL and a CHECK has said why). */
static void setup(fixture_t *f, const char *config_toml)
{
	memset(f, 0, sizeof *f);
	snprintf(f->dir, sizeof f->dir, "/tmp/hutch-test-abi10-XXXXXX");
	CHECK(mkdtemp(f->dir) != NULL);
	uv_loop_init(&f->loop);
	hutch_err_t err = {0};
	CHECK_EQ_INT(host_core_new(&f->loop, NULL, &f->core, &err), 0);
	_cleanup_free_ char *path = xasprintf("%s/runtime-v1-0.so", HUTCH_TEST_PLUGIN_DIR);
	CHECK_EQ_INT(plugin_open(path, &f->p, &err), 0);
	if (!f->p) {
		fprintf(stderr, "%s\n", err.message);
		return;
	}
	if (config_toml) {
		toml_value_t *doc;
		toml_error_t te;
		CHECK_EQ_INT(toml_parse(config_toml, strlen(config_toml), &doc, &te), 0);
		CHECK_EQ_INT(plugin_configure(f->p, doc, NULL, &err), 0);
		toml_free(doc);
	}
	CHECK_EQ_INT(host_ctx_new(f->core, "runtime", f->p->name, f->dir, f->dir, &f->ctx, &err), 0);
	CHECK_EQ_INT(plugin_start(f->p, f->ctx, &err), 0);
	if (!f->p->started)
		fprintf(stderr, "%s\n", err.message);
}

static void teardown(fixture_t *f)
{
	plugin_close(f->p);
	host_ctx_free(f->ctx);
	host_core_close(f->core);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	host_core_free(f->core);
	CHECK_EQ_INT(uv_loop_close(&f->loop), 0);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", f->dir);
	CHECK_EQ_INT(system(cmd), 0);
}

/* A spec as today's core fills it: the whole 1.1 struct, with the members
 * a 1.0 runtime does not know (ports, loopback addresses) set. */
static int create(fixture_t *f, const char *id, bool oom, hutch_sandbox_status_t *st)
{
	static const char *const layers[] = {"/l0", "/l1", "/l2"};
	static const uint16_t ports[] = {8080};
	static const char *const lo[] = {"169.254.169.254", NULL};
	hutch_kv_t ann[] = {{"test.oom", oom ? "1" : "0"}};
	hutch_sandbox_spec_t spec = {
		.size = sizeof spec, .id = id, .tenant = "acme", .hostname = "box-1",
		.layers = layers, .n_layers = 3, .init_stdin_fd = -1,
		.init_stdout_fd = -1, .init_stderr_fd = -1,
		.memory_bytes = 256 << 20, .annotations = ann, .n_annotations = 1,
		.ports = ports, .n_ports = 1, .loopback_addrs = lo, .n_loopback_addrs = 1,
	};
	hutch_err_t err = {0};
	memset(st, 0, sizeof *st);
	st->size = sizeof *st;
	int r = f->p->ops.runtime.sandbox_create(f->p->instance, &spec, st, &err);
	if (r < 0)
		fprintf(stderr, "create %s: %s\n", id, err.message);
	return r;
}

static void loads_as_1_0(void)
{
	fixture_t f;
	setup(&f, NULL);
	if (!f.p) {
		teardown(&f);
		return;
	}
	CHECK_EQ_INT(f.p->desc.kind, HUTCH_PLUGIN_RUNTIME);
	CHECK_EQ_INT(f.p->desc.abi_major, 1);
	CHECK_EQ_INT(f.p->desc.abi_minor, 0);
	CHECK_EQ_INT(f.p->ops_size, HUTCH_RUNTIME_OPS_SIZE_1_0);
	/* What 1.1 added to the ops reads as absent, not as the bytes that
	 * follow the plugin's smaller struct. */
	CHECK(f.p->ops.runtime.sandbox_commit == NULL);
	CHECK(f.p->ops.runtime.sandbox_checkpoint == NULL);
	CHECK(f.p->ops.runtime.capabilities != NULL);
	teardown(&f);
}

static void on_cap(void *data, const char *k, const char *v)
{
	sb_printf(data, "%s=%s;", k, v);
}

static void config_binds(void)
{
	fixture_t f;
	setup(&f, "pid_base = 7000\n");
	if (!f.p) {
		teardown(&f);
		return;
	}
	hutch_sandbox_status_t st;
	CHECK_EQ_INT(create(&f, "sb-cfg", false, &st), 0);
	CHECK_EQ_INT(st.pid, 7000);
	_cleanup_sb_ strbuf_t caps = STRBUF_INIT;
	f.p->ops.runtime.capabilities(f.p->instance, on_cap, &caps);
	CHECK_STR(caps.buf, "abi=1.0;");
	teardown(&f);
}

typedef struct found {
	int n;
	char id[64];
	hutch_sandbox_phase_t phase;
} found_t;

static void on_found(void *data, const char *id, const hutch_sandbox_status_t *st)
{
	found_t *fd = data;
	fd->n++;
	snprintf(fd->id, sizeof fd->id, "%s", id);
	fd->phase = st->phase;
}

static void every_op_works(void)
{
	fixture_t f;
	setup(&f, NULL);
	if (!f.p) {
		teardown(&f);
		return;
	}
	const hutch_runtime_ops_t *ops = &f.p->ops.runtime;
	void *inst = f.p->instance;
	hutch_err_t err = {0};

	hutch_sandbox_status_t st;
	CHECK_EQ_INT(create(&f, "sb-1", false, &st), 0);
	CHECK_EQ_INT(st.phase, HUTCH_PHASE_RUNNING);
	CHECK_EQ_INT(st.pid, 4000); /* the config table's default */

	/* The plugin read the spec's 1.0 members where today's core put them. */
	CHECK_EQ_INT(runtime_sandbox_status(f.p, "sb-1", &st, &err), 0);
	CHECK_EQ_INT(st.phase, HUTCH_PHASE_RUNNING);
	CHECK_EQ_INT(st.memory_bytes, 256 << 20);
	CHECK_EQ_INT(st.pids_current, 3);
	CHECK(!st.oom_killed);
	/* What it does not know stays "unknown", and it never OOMed. */
	CHECK_STR(st.netns_path, "");
	CHECK_EQ_INT(st.oom_kills, -1);
	CHECK_EQ_INT(runtime_status_oom_kills(&st), 0);

	const char *const argv[] = {"whoami", NULL};
	hutch_exec_spec_t es = {.size = sizeof es, .argv = argv};
	hutch_command_t cmd = {.size = sizeof cmd, .netns_fd = -1};
	CHECK_EQ_INT(ops->exec_command(inst, "sb-1", &es, &cmd, &err), 0);
	CHECK(cmd.argv && cmd.argv[0] && cmd.argv[1] && cmd.argv[2] && !cmd.argv[3]);
	if (cmd.argv && cmd.argv[0] && cmd.argv[1] && cmd.argv[2]) {
		CHECK_STR(cmd.argv[1], "box-1");
		CHECK_STR(cmd.argv[2], "whoami");
	}
	CHECK_EQ_INT(cmd.netns_fd, -1);
	CHECK(cmd.signal_exit_as_128);
	for (char **a = cmd.argv; a && *a; a++) /* the core frees it */
		free(*a);
	free(cmd.argv);
	CHECK_EQ_INT(ops->exec_command(inst, "sb-none", &es, &cmd, &err), -ENOENT);
	CHECK_CONTAINS(err.message, "no sandbox sb-none");

	found_t fd = {0};
	CHECK_EQ_INT(ops->sandbox_list(inst, on_found, &fd, &err), 0);
	CHECK_EQ_INT(fd.n, 1);
	CHECK_STR(fd.id, "sb-1");
	CHECK_EQ_INT(fd.phase, HUTCH_PHASE_RUNNING);

	CHECK_EQ_INT(ops->sandbox_stop(inst, "sb-1", 100, &err), 0);
	CHECK_EQ_INT(runtime_sandbox_status(f.p, "sb-1", &st, &err), 0);
	CHECK_EQ_INT(st.phase, HUTCH_PHASE_STOPPED);
	CHECK_EQ_INT(st.exit_code, 137);
	CHECK_EQ_INT(ops->sandbox_destroy(inst, "sb-1", &err), 0);
	CHECK_EQ_INT(runtime_sandbox_status(f.p, "sb-1", &st, &err), 0);
	CHECK_EQ_INT(st.phase, HUTCH_PHASE_UNKNOWN);
	fd.n = 0;
	CHECK_EQ_INT(ops->sandbox_list(inst, on_found, &fd, &err), 0);
	CHECK_EQ_INT(fd.n, 0);
	teardown(&f);
}

/* The bug this test exists for: the core zero-filled the status and trusted
 * oom_kills >= 0, so a 1.0 runtime's OOM (oom_killed, oom_kills untouched
 * at 0) read as "no kills", and an exec killed at the memory limit was never
 * reported. The core must preset oom_kills to -1 (unknown). */
static void oom_reported_by_1_0_field(void)
{
	fixture_t f;
	setup(&f, NULL);
	if (!f.p) {
		teardown(&f);
		return;
	}
	hutch_sandbox_status_t st;
	hutch_err_t err = {0};
	CHECK_EQ_INT(create(&f, "sb-oom", true, &st), 0);
	CHECK_EQ_INT(runtime_sandbox_status(f.p, "sb-oom", &st, &err), 0);
	CHECK(st.oom_killed);
	CHECK_EQ_INT(st.oom_kills, -1);
	CHECK(runtime_status_oom_kills(&st) >= 1);
	/* ... and a sandbox beside it that was not killed still reads as 0. */
	CHECK_EQ_INT(create(&f, "sb-fine", false, &st), 0);
	CHECK_EQ_INT(runtime_sandbox_status(f.p, "sb-fine", &st, &err), 0);
	CHECK_EQ_INT(runtime_status_oom_kills(&st), 0);
	teardown(&f);
}

/* How a 1.1 runtime's answers read, for contrast: its counter wins. */
static void oom_counter_of_1_1_runtime(void)
{
	hutch_sandbox_status_t st = {.size = sizeof st, .oom_killed = true, .oom_kills = 3};
	CHECK_EQ_INT(runtime_status_oom_kills(&st), 3);
	st.oom_kills = 0;
	st.oom_killed = false;
	CHECK_EQ_INT(runtime_status_oom_kills(&st), 0);
}

int main(int argc, char **argv)
{
	static const test_case_t cases[] = {
		{"loads_as_1_0", loads_as_1_0},
		{"config_binds", config_binds},
		{"every_op_works", every_op_works},
		{"oom_reported_by_1_0_field", oom_reported_by_1_0_field},
		{"oom_counter_of_1_1_runtime", oom_counter_of_1_1_runtime},
		{NULL, NULL},
	};
	return run_cases(cases, argc, argv);
}
