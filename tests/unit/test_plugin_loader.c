/* Loading plugins: a good one works end to end; every kind of bad one is
 * refused with a message naming the file and the reason. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "check.h"
#include "cleanup.h"
#include "host_api.h"
#include "plugin_loader.h"
#include "strbuf.h"

static const char *plugin_dir = HUTCH_TEST_PLUGIN_DIR;

static char *plugin_path(const char *name)
{
	return xasprintf("%s/%s.so", plugin_dir, name);
}

static void expect_refused(const char *file, const char *want)
{
	_cleanup_free_ char *path = plugin_path(file);
	plugin_t *p = NULL;
	hutch_err_t err = {0};
	int r = plugin_open(path, &p, &err);
	CHECK(r < 0);
	CHECK(p == NULL);
	CHECK_CONTAINS(err.message, path);
	CHECK_CONTAINS(err.message, want);
}

static void wrong_abi_major(void)
{
	expect_refused("bad-abi", "built for plugin ABI 2.0, this hutchd speaks ABI 1.x");
}

static void only_v2_symbol(void)
{
	expect_refused("future-abi", "no symbol `hutch_plugin_v1`");
}

static void not_a_plugin(void)
{
	expect_refused("no-symbol", "no symbol `hutch_plugin_v1`");
}

static void missing_required_op(void)
{
	expect_refused("missing-op", "required runtime op `exec_command` is missing");
}

static void ops_struct_too_small(void)
{
	expect_refused("small-ops", "required network op `detach` is missing");
}

static void bad_config_schema(void)
{
	expect_refused("bad-schema", "`b`: offset 64 outside the 8-byte config struct");
}

static void name_must_match_file(void)
{
	expect_refused("wrong-name", "its file must be something-else.so");
}

static void missing_file(void)
{
	plugin_t *p;
	hutch_err_t err = {0};
	CHECK(plugin_open("/nonexistent/x.so", &p, &err) < 0);
	CHECK_CONTAINS(err.message, "plugin /nonexistent/x.so: No such file or directory");
	CHECK(plugin_open("relative/x.so", &p, &err) < 0);
	CHECK_CONTAINS(err.message, "path must be absolute");
	_cleanup_free_ char *path = NULL;
	CHECK(plugin_resolve("Bad Name", "/x", &path, &err) < 0);
	CHECK_CONTAINS(err.message, "give a plugin name");
	CHECK_EQ_INT(plugin_resolve("net-egress", "/usr/lib/hutch/plugins", &path, &err), 0);
	CHECK_STR(path, "/usr/lib/hutch/plugins/net-egress.so");
}

typedef struct listed {
	int n;
	char names[8][128];
} listed_t;

static void on_volume(void *data, const hutch_volume_info_t *v)
{
	listed_t *l = data;
	if (l->n < 8)
		snprintf(l->names[l->n++], sizeof l->names[0], "%s", v->name);
}

static void on_cap(void *data, const char *k, const char *v)
{
	strbuf_t *sb = data;
	sb_printf(sb, "%s=%s;", k, v);
}

static void good_plugin_runs(void)
{
	char tmp[] = "/tmp/hutch-test-loader-XXXXXX";
	CHECK(mkdtemp(tmp) != NULL);
	uv_loop_t loop;
	uv_loop_init(&loop);
	host_core_t *core;
	hutch_err_t err = {0};
	CHECK_EQ_INT(host_core_new(&loop, NULL, &core, &err), 0);

	_cleanup_free_ char *path = plugin_path("storage-localdir");
	plugin_t *p = NULL;
	CHECK_EQ_INT(plugin_open(path, &p, &err), 0);
	if (!p) {
		fprintf(stderr, "%s\n", err.message);
		return;
	}
	CHECK_EQ_INT(p->desc.kind, HUTCH_PLUGIN_STORAGE);
	CHECK_STR(p->name, "storage-localdir");

	/* An unknown key in its table is refused with a position. */
	toml_value_t *doc;
	toml_error_t te;
	const char *bad = "[plugin.storage-localdir]\nrooot = \"/x\"\n";
	CHECK_EQ_INT(toml_parse(bad, strlen(bad), &doc, &te), 0);
	CHECK(plugin_configure(p, toml_table_get(toml_table_get(doc, "plugin"), "storage-localdir"),
			       "/etc/hutch/hutchd.toml", &err) < 0);
	CHECK_CONTAINS(err.message, "/etc/hutch/hutchd.toml:2:1: [plugin.storage-localdir] unknown key `rooot`");
	toml_free(doc);

	_cleanup_free_ char *text = xasprintf("root = \"%s/vols\"\n", tmp);
	CHECK_EQ_INT(toml_parse(text, strlen(text), &doc, &te), 0);
	CHECK_EQ_INT(plugin_configure(p, doc, NULL, &err), 0);
	toml_free(doc);

	host_ctx_t *ctx;
	CHECK_EQ_INT(host_ctx_new(core, "storage", p->name, tmp, tmp, &ctx, &err), 0);
	CHECK_EQ_INT(plugin_start(p, ctx, &err), 0);
	struct stat st;
	_cleanup_free_ char *sd = xasprintf("%s/plugins/storage-localdir", tmp);
	CHECK(stat(sd, &st) == 0 && (st.st_mode & 0777) == 0700);

	hutch_volume_ref_t ref = {sizeof ref, "acme", "data", NULL};
	CHECK_EQ_INT(p->ops.storage.volume_create(p->instance, &ref, 0, &err), 0);
	CHECK_EQ_INT(p->ops.storage.volume_create(p->instance, &ref, 0, &err), -EEXIST);
	hutch_volume_ref_t evil = {sizeof evil, "acme", "../../etc", NULL};
	CHECK_EQ_INT(p->ops.storage.volume_create(p->instance, &evil, 0, &err), -EINVAL);
	listed_t l = {0};
	CHECK_EQ_INT(p->ops.storage.volume_list(p->instance, "acme", on_volume, &l, &err), 0);
	CHECK_EQ_INT(l.n, 1);
	CHECK_STR(l.names[0], "data");
	/* An out-struct is filled only as far as its allocator's size says:
	 * here a caller whose struct ends before forked_from. */
	hutch_volume_info_t info;
	memset(&info, 0x5a, sizeof info);
	info.size = offsetof(hutch_volume_info_t, forked_from);
	CHECK_EQ_INT(p->ops.storage.volume_info(p->instance, &ref, &info, &err), 0);
	CHECK_STR(info.name, "data");
	CHECK_EQ_INT(info.size_bytes, -1);
	CHECK_EQ_INT((unsigned char)info.forked_from[0], 0x5a);
	CHECK_EQ_INT(info.size, offsetof(hutch_volume_info_t, forked_from));
	/* Optional ops the plugin leaves out read as NULL. */
	CHECK(p->ops.storage.volume_fork == NULL);
	CHECK(p->ops.storage.volume_commit == NULL);
	_cleanup_sb_ strbuf_t caps = STRBUF_INIT;
	p->ops.storage.capabilities(p->instance, on_cap, &caps);
	CHECK_CONTAINS(caps.buf, "versions=no;");

	plugin_close(p);
	host_ctx_free(ctx);
	host_core_close(core);
	uv_run(&loop, UV_RUN_DEFAULT);
	host_core_free(core);
	CHECK_EQ_INT(uv_loop_close(&loop), 0);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", tmp);
	CHECK_EQ_INT(system(cmd), 0);
}

static void failing_init_reports_reason(void)
{
	uv_loop_t loop;
	uv_loop_init(&loop);
	host_core_t *core;
	hutch_err_t err = {0};
	CHECK_EQ_INT(host_core_new(&loop, NULL, &core, &err), 0);
	_cleanup_free_ char *path = plugin_path("failing-init");
	plugin_t *p = NULL;
	CHECK_EQ_INT(plugin_open(path, &p, &err), 0);
	host_ctx_t *ctx;
	CHECK_EQ_INT(host_ctx_new(core, "network", "failing-init", NULL, NULL, &ctx, &err), 0);
	CHECK_EQ_INT(plugin_start(p, ctx, &err), -ENODEV);
	CHECK_STR(err.message, "plugin failing-init: no such widget on this host");
	plugin_close(p);
	host_ctx_free(ctx);
	host_core_close(core);
	uv_run(&loop, UV_RUN_DEFAULT);
	host_core_free(core);
	uv_loop_close(&loop);
}

int main(int argc, char **argv)
{
	static const test_case_t cases[] = {
		{"wrong_abi_major", wrong_abi_major},
		{"only_v2_symbol", only_v2_symbol},
		{"not_a_plugin", not_a_plugin},
		{"missing_required_op", missing_required_op},
		{"ops_struct_too_small", ops_struct_too_small},
		{"bad_config_schema", bad_config_schema},
		{"name_must_match_file", name_must_match_file},
		{"missing_file", missing_file},
		{"good_plugin_runs", good_plugin_runs},
		{"failing_init_reports_reason", failing_init_reports_reason},
		{NULL, NULL},
	};
	return run_cases(cases, argc, argv);
}
