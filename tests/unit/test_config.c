/* The config binder and hutchd.toml: what an operator sees for good and bad
 * files. */
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "config_bind.h"
#include "daemon_config.h"
#include "cleanup.h"
#include "strbuf.h"

typedef struct demo {
	char *name;
	int64_t count;
	bool on;
	double ratio;
	int64_t wait_ms;
	int64_t mem;
	char **list;
	char *mode;
	char *path;
} demo_t;

static const char *const modes[] = {"fast", "safe", NULL};
#define O(f) offsetof(demo_t, f)
static const hutch_config_field_t demo_fields[] = {
	{HUTCH_CONFIG_STRING, "name", "\"anon\"", O(name), "a name", 0, NULL},
	{HUTCH_CONFIG_INT, "count", "3", O(count), "a count", 0, NULL},
	{HUTCH_CONFIG_BOOL, "on", "true", O(on), "a switch", 0, NULL},
	{HUTCH_CONFIG_DOUBLE, "ratio", "0.5", O(ratio), "a ratio", 0, NULL},
	{HUTCH_CONFIG_DURATION, "wait", "\"1m30s\"", O(wait_ms), "a wait", 0, NULL},
	{HUTCH_CONFIG_SIZE, "mem", "\"512Mi\"", O(mem), "memory", 0, NULL},
	{HUTCH_CONFIG_STRING_LIST, "list", NULL, O(list), "a list", 0, NULL},
	{HUTCH_CONFIG_ENUM, "mode", "\"safe\"", O(mode), "a mode", 0, modes},
	{HUTCH_CONFIG_PATH, "path", NULL, O(path), "a path", 0, NULL},
	{0},
};

static int bind_text(const char *text, demo_t *out, hutch_err_t *err)
{
	toml_value_t *doc = NULL;
	toml_error_t te;
	if (toml_parse(text, strlen(text), &doc, &te) < 0)
		return hutch_err_set(err, EINVAL, "%d:%d: %s", te.line, te.col, te.message);
	memset(out, 0, sizeof *out);
	int r = config_bind(demo_fields, toml_table_get(doc, "t"), "/etc/x/demo.toml", "t", out, err);
	toml_free(doc);
	return r;
}

static void defaults_apply(void)
{
	demo_t d;
	hutch_err_t err = {0};
	CHECK_EQ_INT(bind_text("", &d, &err), 0);
	CHECK_STR(d.name, "anon");
	CHECK_EQ_INT(d.count, 3);
	CHECK(d.on);
	CHECK(d.ratio == 0.5);
	CHECK_EQ_INT(d.wait_ms, 90000);
	CHECK_EQ_INT(d.mem, 512LL * 1024 * 1024);
	CHECK(d.list == NULL);
	CHECK_STR(d.mode, "safe");
	CHECK(d.path == NULL);
	config_release(demo_fields, &d);
}

static void values_bind(void)
{
	demo_t d;
	hutch_err_t err = {0};
	CHECK_EQ_INT(bind_text("[t]\nname = \"x\"\ncount = 0x10\non = false\nratio = 2\n"
			       "wait = 45\nmem = \"2G\"\nlist = [\"a\", \"b\"]\nmode = \"fast\"\n"
			       "path = \"rel/dir\"\n", &d, &err), 0);
	CHECK_STR(d.name, "x");
	CHECK_EQ_INT(d.count, 16);
	CHECK(!d.on);
	CHECK(d.ratio == 2.0);
	CHECK_EQ_INT(d.wait_ms, 45000);
	CHECK_EQ_INT(d.mem, 2000000000LL);
	CHECK_EQ_INT(strv_len(d.list), 2);
	CHECK_STR(d.list[1], "b");
	CHECK_STR(d.mode, "fast");
	CHECK_STR(d.path, "/etc/x/rel/dir"); /* relative to the config file */
	config_release(demo_fields, &d);
}

static void unknown_key_has_position(void)
{
	demo_t d;
	hutch_err_t err = {0};
	CHECK(bind_text("[t]\nname = \"x\"\n  nmae = \"y\"\n", &d, &err) < 0);
	CHECK_EQ_INT(err.code, EINVAL);
	CHECK_CONTAINS(err.message, "/etc/x/demo.toml:3:3: [t] unknown key `nmae`");
	CHECK_CONTAINS(err.message, "known keys: name, count");
}

static void wrong_types_have_positions(void)
{
	static const struct { const char *text; const char *want; } cases[] = {
		{"[t]\ncount = \"3\"\n", "demo.toml:2:9: [t] `count`: expected an integer, got string"},
		{"[t]\non = 1\n", "demo.toml:2:6: [t] `on`: expected a boolean, got integer"},
		{"[t]\nwait = \"soon\"\n", "demo.toml:2:8: [t] `wait`: \"soon\" is not a duration"},
		{"[t]\nmem = \"lots\"\n", "demo.toml:2:7: [t] `mem`: \"lots\" is not a size"},
		{"[t]\nmem = true\n", "expected a size like \"512Mi\", got boolean"},
		{"[t]\nlist = [\"a\", 2]\n", "demo.toml:2:14: [t] `list`: item 2: expected a string, got integer"},
		{"[t]\nmode = \"yolo\"\n", "\"yolo\" is not one of \"fast\", \"safe\""},
		{"[t]\nname = \"a\\u0000b\"\n", "string contains a NUL character"},
		{"t = 5\n", "[t] must be a table, not integer"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		demo_t d;
		hutch_err_t err = {0};
		CHECK(bind_text(cases[i].text, &d, &err) < 0);
		CHECK_CONTAINS(err.message, cases[i].want);
	}
}

static void units_parse(void)
{
	int64_t v;
	CHECK_EQ_INT(config_parse_duration("250ms", &v), 0);
	CHECK_EQ_INT(v, 250);
	CHECK_EQ_INT(config_parse_duration("1h30m", &v), 0);
	CHECK_EQ_INT(v, 5400000);
	CHECK_EQ_INT(config_parse_duration("2d", &v), 0);
	CHECK_EQ_INT(v, 172800000);
	CHECK(config_parse_duration("", &v) < 0);
	CHECK(config_parse_duration("10", &v) < 0);
	CHECK(config_parse_duration("5y", &v) < 0);
	CHECK(config_parse_duration("-5s", &v) < 0);
	CHECK(config_parse_duration("99999999999999999999s", &v) < 0);
	CHECK_EQ_INT(config_parse_size("512Mi", &v), 0);
	CHECK_EQ_INT(v, 536870912);
	CHECK_EQ_INT(config_parse_size("1.5Gi", &v), 0);
	CHECK_EQ_INT(v, 1610612736);
	CHECK_EQ_INT(config_parse_size("4096", &v), 0);
	CHECK_EQ_INT(v, 4096);
	CHECK(config_parse_size("1.5", &v) < 0);
	CHECK(config_parse_size("-1Mi", &v) < 0);
	CHECK(config_parse_size("12Xi", &v) < 0);
	CHECK(config_parse_size("1e30", &v) < 0);
	CHECK_EQ_INT(config_parse_cpu("2", &v), 0);
	CHECK_EQ_INT(v, 2000);
	CHECK_EQ_INT(config_parse_cpu("0.5", &v), 0);
	CHECK_EQ_INT(v, 500);
	CHECK_EQ_INT(config_parse_cpu("250m", &v), 0);
	CHECK_EQ_INT(v, 250);
	CHECK(config_parse_cpu("two", &v) < 0);
}

static void schema_check_catches_plugin_bugs(void)
{
	typedef struct small { int64_t a; } small_t;
	hutch_err_t err = {0};
	const hutch_config_field_t outside[] = {
		{HUTCH_CONFIG_INT, "a", NULL, 8, "past the end", 0, NULL}, {0}};
	CHECK(config_schema_check(outside, sizeof(small_t), &err) < 0);
	CHECK_CONTAINS(err.message, "outside the 8-byte config struct");
	const hutch_config_field_t bad_default[] = {
		{HUTCH_CONFIG_INT, "a", "\"x\"", 0, "typed wrong", 0, NULL}, {0}};
	CHECK(config_schema_check(bad_default, sizeof(small_t), &err) < 0);
	CHECK_CONTAINS(err.message, "invalid default");
	const hutch_config_field_t twice[] = {
		{HUTCH_CONFIG_INT, "a", NULL, 0, "", 0, NULL},
		{HUTCH_CONFIG_INT, "a", NULL, 0, "", 0, NULL}, {0}};
	CHECK(config_schema_check(twice, sizeof(small_t), &err) < 0);
	CHECK_CONTAINS(err.message, "declared twice");
	CHECK_EQ_INT(config_schema_check(demo_fields, sizeof(demo_t), &err), 0);
}

static char *write_tmp(const char *text)
{
	char *path = xstrdup("/tmp/hutch-test-config-XXXXXX");
	int fd = mkstemp(path);
	ssize_t n = write(fd, text, strlen(text));
	(void)n;
	close(fd);
	return path;
}

static void daemon_config_defaults(void)
{
	daemon_config_t c;
	hutch_err_t err = {0};
	CHECK_EQ_INT(daemon_config_load(NULL, &c, &err), 0);
	CHECK_STR(c.daemon.state_dir, "/var/lib/hutch");
	CHECK_STR(c.daemon.socket, "/run/hutch/hutchd.sock");
	CHECK_STR(c.plugins.runtime, "runtime-gvisor");
	CHECK_STR(c.sandbox.default_image, "busybox");
	CHECK_EQ_INT(c.daemon.socket_mode, 0660);
	CHECK_EQ_INT(c.sandbox.memory, 512LL << 20);
	/* The platform's promises: a network and an identity, by default. */
	CHECK_EQ_INT(strv_len(c.plugins.network), 1);
	CHECK_STR(c.plugins.network[0], "net-egress");
	CHECK_STR(c.plugins.identity, "identity-oidc");
	CHECK(c.network_defaulted && c.identity_defaulted);
	daemon_config_free(&c);
}

/* A file that says nothing about [plugins] gets the same defaults; one that
 * turns them off says so explicitly. */
static void daemon_config_plugins_opt_out(void)
{
	_cleanup_free_ char *quiet = write_tmp("[sandbox]\ncpu = 2\n");
	daemon_config_t c;
	hutch_err_t err = {0};
	CHECK_EQ_INT(daemon_config_load(quiet, &c, &err), 0);
	CHECK_EQ_INT(strv_len(c.plugins.network), 1);
	CHECK_STR(c.plugins.identity, "identity-oidc");
	daemon_config_free(&c);
	unlink(quiet);
	_cleanup_free_ char *off = write_tmp("[plugins]\nnetwork = []\nidentity = \"\"\n");
	CHECK_EQ_INT(daemon_config_load(off, &c, &err), 0);
	CHECK_EQ_INT(strv_len(c.plugins.network), 0);
	CHECK_STR(c.plugins.identity, "");
	CHECK(!c.network_defaulted && !c.identity_defaulted);
	daemon_config_free(&c);
	unlink(off);
}

/* When a default cannot start, the message names the key to change. */
static void daemon_config_hints_name_the_key(void)
{
	daemon_config_t c;
	hutch_err_t err = {0};
	CHECK_EQ_INT(daemon_config_load(NULL, &c, &err), 0);
	hutch_err_set(&err, EPROTONOSUPPORT, "plugin net-egress: nft: no nf_tables");
	CHECK_EQ_INT(daemon_config_hint(&c, "network", "net-egress", &err), -EPROTONOSUPPORT);
	CHECK_CONTAINS(err.message, "plugin net-egress: nft: no nf_tables (net-egress is hutchd's default network plugin");
	CHECK_CONTAINS(err.message, "[plugins] network = []");
	hutch_err_set(&err, EADDRINUSE, "[http] listen on 127.0.0.1:7480: Address already in use");
	CHECK_EQ_INT(daemon_config_hint(&c, "http", "identity-oidc", &err), -EADDRINUSE);
	CHECK_CONTAINS(err.message, "set [http] listen to a free \"host:port\" (and [plugin.identity-oidc] issuer to match)");
	CHECK_CONTAINS(err.message, "[plugins] identity = \"\"");
	hutch_err_set(&err, EINVAL, "plugin identity-oidc: bad key dir");
	daemon_config_hint(&c, "identity", "identity-oidc", &err);
	CHECK_CONTAINS(err.message, "is hutchd's default identity plugin");
	/* Roles without a default are left as they are. */
	hutch_err_set(&err, EINVAL, "plugin storage-localdir: no root");
	daemon_config_hint(&c, "storage", "storage-localdir", &err);
	CHECK_STR(err.message, "plugin storage-localdir: no root");
	daemon_config_free(&c);
}

static void daemon_config_errors(void)
{
	static const struct { const char *text; const char *want; } cases[] = {
		{"[demon]\nx = 1\n", ":1:2: unknown section `demon`"},
		{"[daemon]\nstate_dri = \"/x\"\n", ":2:1: [daemon] unknown key `state_dri`"},
		{"[sandbox]\nmemory = \"big\"\n", ":2:10: [sandbox] `memory`: \"big\" is not a size"},
		{"[plugins]\nnetwork = \"net-egress\"\n", "`network`: expected an array of strings, got string"},
		{"[[api.key]]\ntenant = \"a\"\n", "missing required key `sha256`"},
		{"[[api.key]]\ntenant = \"a\"\nsha256 = \"abc\"\n", "must be 64 lower-case hex digits"},
		{"[api]\ntls_cert = \"/c.pem\"\n", "tls_cert and tls_key go together"},
		{"a = = 1\n", ":1:5:"},
		{"[plugin]\nfoo = 1\n", ""}, /* binds; rejected later as unloaded */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		_cleanup_free_ char *path = write_tmp(cases[i].text);
		daemon_config_t c;
		hutch_err_t err = {0};
		int r = daemon_config_load(path, &c, &err);
		if (cases[i].want[0]) {
			CHECK(r < 0);
			CHECK_CONTAINS(err.message, cases[i].want);
			CHECK_CONTAINS(err.message, path);
		} else {
			CHECK_EQ_INT(r, 0);
			char *loaded[] = {NULL};
			CHECK(daemon_config_check_plugin_tables(&c, loaded, &err) < 0);
			CHECK_CONTAINS(err.message, "[plugin.foo] configures a plugin that is not loaded");
			daemon_config_free(&c);
		}
		unlink(path);
	}
}

static void daemon_config_full(void)
{
	_cleanup_free_ char *path = write_tmp(
		"[daemon]\nstate_dir = \"/srv/hutch\"\nlog_format = \"json\"\n"
		"[api]\ntcp_listen = \"127.0.0.1:7443\"\nallow_plaintext_tcp = true\n"
		"[[api.key]]\ntenant = \"acme\"\n"
		"sha256 = \"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\"\n"
		"[plugins]\nnetwork = [\"net-egress\", \"net-wireguard\"]\n"
		"[plugin.net-egress]\npool = \"10.77.0.0/16\"\n"
		"[sandbox]\ncpu = 2\nlifetime = \"30m\"\n");
	daemon_config_t c;
	hutch_err_t err = {0};
	CHECK_EQ_INT(daemon_config_load(path, &c, &err), 0);
	CHECK_STR(c.daemon.state_dir, "/srv/hutch");
	CHECK_STR(c.daemon.audit_log, "/srv/hutch/audit.jsonl");
	CHECK_STR(c.daemon.log_format, "json");
	CHECK_EQ_INT(c.n_keys, 1);
	CHECK_STR(c.keys[0].tenant, "acme");
	CHECK_EQ_INT(strv_len(c.plugins.network), 2);
	CHECK(c.sandbox.cpu == 2.0);
	CHECK_EQ_INT(c.sandbox.lifetime_ms, 1800000);
	const toml_value_t *t = daemon_config_plugin_table(&c, "net-egress");
	CHECK(t && toml_table_get(t, "pool"));
	char *loaded[] = {"net-egress", NULL};
	CHECK_EQ_INT(daemon_config_check_plugin_tables(&c, loaded, &err), 0);
	daemon_config_free(&c);
	unlink(path);
}

int main(int argc, char **argv)
{
	static const test_case_t cases[] = {
		{"defaults_apply", defaults_apply},
		{"values_bind", values_bind},
		{"unknown_key_has_position", unknown_key_has_position},
		{"wrong_types_have_positions", wrong_types_have_positions},
		{"units_parse", units_parse},
		{"schema_check_catches_plugin_bugs", schema_check_catches_plugin_bugs},
		{"daemon_config_defaults", daemon_config_defaults},
		{"daemon_config_plugins_opt_out", daemon_config_plugins_opt_out},
		{"daemon_config_hints_name_the_key", daemon_config_hints_name_the_key},
		{"daemon_config_errors", daemon_config_errors},
		{"daemon_config_full", daemon_config_full},
		{NULL, NULL},
	};
	return run_cases(cases, argc, argv);
}
