/* Image specs: validation, canonical forms and cache keys (content
 * addressing), the TOML file format, registry references. No daemon. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cleanup.h"
#include "image_spec.h"
#include "image_toml.h"
#include "registry.h"
#include "strbuf.h"

static char *g_dir;

static void write_file(const char *rel, const char *text, mode_t mode)
{
	_cleanup_free_ char *p = xasprintf("%s/%s", g_dir, rel);
	FILE *f = fopen(p, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	chmod(p, mode);
}

static int load(const char *text, image_toml_t *t, hutch_err_t *err)
{
	return image_toml_load_text(text, strlen(text), "app.toml", g_dir, t, err);
}

/* The chain of keys of a spec, base key given. */
static void keys_of(const Hutch__V1__ImageSpec *spec, char keys[][DIGEST_STR_MAX])
{
	char chain[DIGEST_STR_MAX];
	image_base_key("{\"base\":\"busybox\"}", chain);
	for (size_t i = 0; i < spec->n_steps; i++) {
		image_step_key(chain, spec->steps[i], keys[i]);
		/* As the builder does: a made layer enters the chain. */
		char layer[DIGEST_STR_MAX];
		digest_buf(keys[i], strlen(keys[i]), layer);
		char *layers[] = {layer};
		image_chain(keys[i], layers, 1, chain);
	}
}

static void toml_full_file(void)
{
	write_file("config.toml", "a = 1\n", 0640);
	_cleanup_free_ char *tree = xasprintf("%s/tree", g_dir);
	mkdir(tree, 0755);
	_cleanup_free_ char *sub = xasprintf("%s/tree/pkg", g_dir);
	mkdir(sub, 0750);
	write_file("tree/pkg/mod.py", "X = 1\n", 0644);
	write_file("tree/run.sh", "#!/bin/sh\n", 0755);
	write_file("tree/junk.pyc", "x", 0644);
	_cleanup_free_ char *link = xasprintf("%s/tree/link", g_dir);
	CHECK(symlink("pkg/mod.py", link) == 0);
	const char *text =
		"name = \"app\"\n"
		"[base]\n"
		"debian_slim = { python = \"3.11\" }\n"
		"[[steps]]\n"
		"apt_install = [\"git\", \"curl\"]\n"
		"[[steps]]\n"
		"pip_install = { packages = [\"numpy\"], index_url = \"https://pypi.example/simple\", find_links = [\"/wheels\"] }\n"
		"[[steps]]\n"
		"run_commands = [\"echo one\", \"echo two\"]\n"
		"[[steps]]\n"
		"add_local_file = { src = \"config.toml\", dest = \"/etc/app.toml\" }\n"
		"[[steps]]\n"
		"add_local_dir = { src = \"tree\", dest = \"/app\", ignore = [\"*.pyc\"] }\n"
		"[[steps]]\n"
		"env = { MODE = \"prod\", LEVEL = \"3\" }\n"
		"[[steps]]\n"
		"workdir = \"/app\"\n"
		"[[steps]]\n"
		"entrypoint = [\"python3\", \"-m\", \"app\"]\n";
	image_toml_t t;
	hutch_err_t err = {0};
	CHECK_EQ_INT(load(text, &t, &err), 0);
	if (!t.spec) {
		fprintf(stderr, "%s\n", err.message);
		return;
	}
	CHECK_STR(t.name, "app");
	CHECK_EQ_INT(image_spec_check(t.spec, &err), 0);
	CHECK_STR(t.spec->source->debian_slim->python_version, "3.11");
	CHECK_EQ_INT(t.spec->n_steps, 8);
	CHECK_STR(image_step_op_name(t.spec->steps[0]), "apt_install");
	CHECK_EQ_INT(t.spec->steps[1]->pip_install->n_find_links, 1);
	CHECK(image_step_needs_network(t.spec->steps[0]));
	CHECK(image_step_needs_network(t.spec->steps[1])); /* an index */
	CHECK(!image_step_needs_network(t.spec->steps[2]));
	const Hutch__V1__LocalFile *f = t.spec->steps[3]->add_local_file->file;
	char want[DIGEST_STR_MAX];
	digest_buf("a = 1\n", 6, want);
	CHECK_STR(f->digest, want);
	CHECK_EQ_INT(f->mode, 0640);
	CHECK_EQ_INT(f->size, 6);
	const Hutch__V1__AddLocalDir *d = t.spec->steps[4]->add_local_dir;
	CHECK_EQ_INT(d->n_entries, 4); /* link, pkg, pkg/mod.py, run.sh: not junk.pyc */
	bool saw_link = false;
	for (size_t i = 0; i < d->n_entries; i++) {
		CHECK(strcmp(d->entries[i]->path, "junk.pyc") != 0);
		if (strcmp(d->entries[i]->path, "link") == 0) {
			saw_link = true;
			CHECK_STR(d->entries[i]->type, "symlink");
			CHECK_STR(d->entries[i]->link_target, "pkg/mod.py");
		}
		if (strcmp(d->entries[i]->path, "pkg") == 0)
			CHECK_EQ_INT(d->entries[i]->mode, 0750);
	}
	CHECK(saw_link);
	/* Every digest's content can be found for the upload. */
	_cleanup_free_ char *cfg = xasprintf("%s/config.toml", g_dir);
	CHECK_STR(image_toml_file_path(&t, want), cfg);
	CHECK_EQ_INT(t.n_files, 3);
	CHECK_EQ_INT(t.spec->steps[5]->env->n_vars, 2);
	CHECK_STR(t.spec->steps[6]->workdir, "/app");
	CHECK_EQ_INT(t.spec->steps[7]->entrypoint->n_argv, 3);
	_cleanup_free_ char *desc = image_step_describe(t.spec->steps[2]);
	CHECK_STR(desc, "run_commands: echo one; echo two");
	image_toml_free(&t);
}

static void toml_errors_say_where(void)
{
	static const struct {
		const char *text;
		const char *want;
	} bad[] = {
		{"[base]\nbusybox = true\n[[steps]]\nrun = 3\n", "app.toml:4:7: run_commands must be an array of strings"},
		{"[base]\nbusybox = true\n[[steps]]\nfrobnicate = 1\n", "app.toml:4:1: unknown step `frobnicate`"},
		{"[base]\nbusybox = true\n[[steps]]\nrun = \"a\"\nenv = { A = \"b\" }\n", "holds exactly one operation"},
		{"[[steps]]\nrun = \"a\"\n", "no [base]"},
		{"[base]\nalpine = true\n", "app.toml:2:1: unknown base `alpine`"},
		{"[base]\nbusybox = true\nbogus = 1\n", "[base] names exactly one of"},
		{"name = \"x\"\ncolour = 1\n[base]\nbusybox = true\n", "unknown key `colour`"},
		{"[base]\nbusybox = true\n[[steps]]\nadd_local_file = { src = \"nope\", dest = \"/x\" }\n",
		 "No such file"},
		{"[base]\nbusybox = true\n[[steps]]\nadd_local_file = { src = \"config.toml\" }\n", "needs src and dest"},
		{"[base]\nbusybox = true\n[[steps]]\nadd_local_file = { src = \"config.toml\", dest = \"/x\", mode = \"9z\" }\n",
		 "an octal mode"},
		{"[base]\nregistry = { ref = \"r/x\", password_env = \"HUTCH_TEST_NOT_SET_ANYWHERE\" }\n", "is not set"},
		{"[base\nbusybox = true\n", "app.toml:1:"},
		{"[base]\nbusybox = true\n[[steps]]\nworkdir = \"relative\"\n", "step 2 (workdir): `relative` is not an absolute path"},
		{"[base]\nbusybox = true\n[[steps]]\napt_install = [\"-oDebug=1\"]\n", "is not a Debian package name"},
		{"[base]\nbusybox = true\n[[steps]]\nenv = { \"A B\" = \"x\" }\n", "use letters, digits and _"},
		{"[base]\ndebian_slim = { python = \"three\" }\n", "give it as 3.11"},
	};
	write_file("config.toml", "a = 1\n", 0644);
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		image_toml_t t;
		hutch_err_t err = {0};
		int r = load(bad[i].text, &t, &err);
		if (r == 0) {
			/* Parsed: the spec check must refuse it. */
			r = image_spec_check(t.spec, &err);
			image_toml_free(&t);
		}
		CHECK(r < 0);
		CHECK_CONTAINS(err.message, bad[i].want);
	}
}

static void keys_follow_content(void)
{
	write_file("f.txt", "one\n", 0644);
	const char *text = "[base]\nbusybox = true\n"
			   "[[steps]]\nrun = \"echo a\"\n"
			   "[[steps]]\nadd_local_file = { src = \"f.txt\", dest = \"/f\" }\n"
			   "[[steps]]\nrun = \"echo c\"\n";
	image_toml_t a, b;
	hutch_err_t err = {0};
	CHECK_EQ_INT(load(text, &a, &err), 0);
	CHECK_EQ_INT(load(text, &b, &err), 0);
	char ka[3][DIGEST_STR_MAX], kb[3][DIGEST_STR_MAX];
	keys_of(a.spec, ka);
	keys_of(b.spec, kb);
	for (int i = 0; i < 3; i++)
		CHECK_STR(ka[i], kb[i]); /* identical specs, identical keys */
	image_toml_free(&b);
	/* The added file's content changes: that step and the next get new
	 * keys, the one before keeps its own. Its path or time does not count. */
	write_file("f.txt", "two\n", 0644);
	CHECK_EQ_INT(load(text, &b, &err), 0);
	keys_of(b.spec, kb);
	CHECK_STR(ka[0], kb[0]);
	CHECK(strcmp(ka[1], kb[1]) != 0);
	CHECK(strcmp(ka[2], kb[2]) != 0);
	image_toml_free(&b);
	/* Only the last step changes: only its key. */
	const char *text2 = "[base]\nbusybox = true\n"
			    "[[steps]]\nrun = \"echo a\"\n"
			    "[[steps]]\nadd_local_file = { src = \"f.txt\", dest = \"/f\" }\n"
			    "[[steps]]\nrun = \"echo C\"\n";
	write_file("f.txt", "one\n", 0644);
	CHECK_EQ_INT(load(text2, &b, &err), 0);
	keys_of(b.spec, kb);
	CHECK_STR(ka[0], kb[0]);
	CHECK_STR(ka[1], kb[1]);
	CHECK(strcmp(ka[2], kb[2]) != 0);
	image_toml_free(&b);
	image_toml_free(&a);
}

static void canonical_ignores_listing_order(void)
{
	Hutch__V1__LocalFile f1 = HUTCH__V1__LOCAL_FILE__INIT, f2 = HUTCH__V1__LOCAL_FILE__INIT;
	char d1[DIGEST_STR_MAX], d2[DIGEST_STR_MAX];
	digest_buf("1", 1, d1);
	digest_buf("2", 1, d2);
	f1.path = "a";
	f1.digest = d1;
	f2.path = "b";
	f2.digest = d2;
	Hutch__V1__LocalFile *order1[] = {&f1, &f2}, *order2[] = {&f2, &f1};
	Hutch__V1__AddLocalDir dir = HUTCH__V1__ADD_LOCAL_DIR__INIT;
	dir.dest = "/x";
	dir.n_entries = 2;
	Hutch__V1__ImageStep s = HUTCH__V1__IMAGE_STEP__INIT;
	s.op_case = HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR;
	s.add_local_dir = &dir;
	dir.entries = order1;
	_cleanup_free_ char *c1 = image_step_canonical(&s);
	dir.entries = order2;
	_cleanup_free_ char *c2 = image_step_canonical(&s);
	CHECK_STR(c1, c2);
	/* The mode is content: 0644 written out or left at its default. */
	f1.mode = 0644;
	_cleanup_free_ char *c3 = image_step_canonical(&s);
	CHECK_STR(c3, c2);
	f1.mode = 0600;
	_cleanup_free_ char *c4 = image_step_canonical(&s);
	CHECK(strcmp(c4, c2) != 0);
	/* Secrets of a registry base never enter anything keyed. */
	Hutch__V1__ImageStep env = HUTCH__V1__IMAGE_STEP__INIT;
	Hutch__V1__EnvStep e = HUTCH__V1__ENV_STEP__INIT;
	Hutch__V1__KeyValue kv = HUTCH__V1__KEY_VALUE__INIT;
	Hutch__V1__KeyValue *kvs[] = {&kv};
	kv.key = "A";
	kv.value = "x\"y";
	e.vars = kvs;
	e.n_vars = 1;
	env.op_case = HUTCH__V1__IMAGE_STEP__OP_ENV;
	env.env = &e;
	_cleanup_free_ char *ce = image_step_canonical(&env);
	CHECK_STR(ce, "{\"op\":\"env\",\"vars\":[[\"A\",\"x\\\"y\"]]}");
}

static void spec_check_refuses(void)
{
	Hutch__V1__ImageSpec spec = HUTCH__V1__IMAGE_SPEC__INIT;
	hutch_err_t err = {0};
	CHECK(image_spec_check(&spec, &err) < 0);
	CHECK_CONTAINS(err.message, "no base");
	Hutch__V1__ImageBase base = HUTCH__V1__IMAGE_BASE__INIT;
	Hutch__V1__BusyboxBase bb = HUTCH__V1__BUSYBOX_BASE__INIT;
	base.kind_case = HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX;
	base.busybox = &bb;
	spec.source = &base;
	Hutch__V1__LocalFile f = HUTCH__V1__LOCAL_FILE__INIT;
	f.path = "../etc/passwd";
	f.digest = "sha256:00";
	Hutch__V1__LocalFile *fs[] = {&f};
	Hutch__V1__AddLocalDir dir = HUTCH__V1__ADD_LOCAL_DIR__INIT;
	dir.dest = "/app";
	dir.entries = fs;
	dir.n_entries = 1;
	Hutch__V1__ImageStep s = HUTCH__V1__IMAGE_STEP__INIT;
	s.op_case = HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR;
	s.add_local_dir = &dir;
	Hutch__V1__ImageStep *steps[] = {&s};
	spec.steps = steps;
	spec.n_steps = 1;
	CHECK(image_spec_check(&spec, &err) < 0);
	CHECK_CONTAINS(err.message, "step 2 (add_local_dir): entry `../etc/passwd`");
	f.path = "etc/passwd";
	CHECK(image_spec_check(&spec, &err) < 0);
	CHECK_CONTAINS(err.message, "is not sha256:<64 hex>");
	char d[DIGEST_STR_MAX];
	digest_buf("x", 1, d);
	f.digest = d;
	CHECK_EQ_INT(image_spec_check(&spec, &err), 0);
	dir.dest = "/a/../b";
	CHECK(image_spec_check(&spec, &err) < 0);
	CHECK(!image_name_valid("sha256:abc"));
	CHECK(!image_name_valid("-x"));
	CHECK(!image_name_valid(""));
	CHECK(image_name_valid("team/app:1.0"));
}

static void registry_refs(void)
{
	static const struct {
		const char *in, *host, *repo, *tag, *canonical;
	} ok[] = {
		{"python:3.12-slim", "registry-1.docker.io", "library/python", "3.12-slim",
		 "registry-1.docker.io/library/python:3.12-slim"},
		{"127.0.0.1:5000/test/app", "127.0.0.1:5000", "test/app", "latest", "127.0.0.1:5000/test/app:latest"},
		{"localhost/app:1", "localhost", "app", "1", "localhost/app:1"},
		{"ghcr.io/org/img:v2", "ghcr.io", "org/img", "v2", "ghcr.io/org/img:v2"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		registry_ref_t r;
		hutch_err_t err = {0};
		CHECK_EQ_INT(registry_ref_parse(ok[i].in, &r, &err), 0);
		CHECK_STR(r.host, ok[i].host);
		CHECK_STR(r.repo, ok[i].repo);
		CHECK_STR(r.tag, ok[i].tag);
		CHECK_STR(r.canonical, ok[i].canonical);
		registry_ref_free(&r);
	}
	char pinned[128];
	snprintf(pinned, sizeof pinned, "reg.example/a@sha256:%064d", 0);
	registry_ref_t r;
	hutch_err_t err = {0};
	CHECK_EQ_INT(registry_ref_parse(pinned, &r, &err), 0);
	CHECK(r.digest && strncmp(r.digest, "sha256:0000", 11) == 0);
	registry_ref_free(&r);
	static const char *const bad[] = {"UPPER/case", "a//b", "host/a:b:c!", "x@sha256:12", "a/../b", "/abs"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		CHECK(registry_ref_parse(bad[i], &r, &err) < 0);
		CHECK_CONTAINS(err.message, "reference");
	}
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/hutch-test-image-spec-XXXXXX";
	if (!mkdtemp(dir))
		return 2;
	g_dir = dir;
	static const test_case_t cases[] = {
		{"toml_full_file", toml_full_file},
		{"toml_errors_say_where", toml_errors_say_where},
		{"keys_follow_content", keys_follow_content},
		{"canonical_ignores_listing_order", canonical_ignores_listing_order},
		{"spec_check_refuses", spec_check_refuses},
		{"registry_refs", registry_refs},
		{NULL, NULL},
	};
	int r = run_cases(cases, argc, argv);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", dir);
	if (system(cmd) != 0)
		r = 1;
	return r;
}
