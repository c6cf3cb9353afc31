/* OCI documents and archives without a daemon: manifests, indexes and
 * configs written and read back, hostile documents refused, and images
 * exported as OCI layouts and imported again (also as docker-archives),
 * with every way an archive can lie refused and nothing left behind. */
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "cleanup.h"
#include "image_store.h"
#include "oci.h"
#include "oci_layout.h"
#include "strbuf.h"

static char *g_dir;

static void documents_roundtrip(void)
{
	char l1[DIGEST_STR_MAX], l2[DIGEST_STR_MAX], cfgd[DIGEST_STR_MAX], key[DIGEST_STR_MAX];
	digest_buf("l1", 2, l1);
	digest_buf("l2", 2, l2);
	digest_buf("key", 3, key);
	char *layers[] = {l1, l2};
	int64_t sizes[] = {100, 200};
	char *keys[] = {key, NULL};
	Hutch__V1__ImageConfig cfg = HUTCH__V1__IMAGE_CONFIG__INIT;
	Hutch__V1__KeyValue kv = HUTCH__V1__KEY_VALUE__INIT;
	Hutch__V1__KeyValue *kvs[] = {&kv};
	kv.key = "PATH";
	kv.value = "/bin:/usr/bin";
	cfg.env = kvs;
	cfg.n_env = 1;
	cfg.workdir = "/app";
	char *ep[] = {"python3", "-m", "app"};
	cfg.entrypoint = ep;
	cfg.n_entrypoint = 3;
	char *created[] = {"base", "step"};
	_cleanup_free_ char *config = oci_config_write(&cfg, layers, 2, created);
	_cleanup_free_ char *again = oci_config_write(&cfg, layers, 2, created);
	CHECK_STR(config, again); /* deterministic */
	digest_buf(config, strlen(config), cfgd);
	oci_config_t c;
	hutch_err_t err = {0};
	CHECK_EQ_INT(oci_config_parse(config, strlen(config), &c, &err), 0);
	CHECK_EQ_INT(c.n_diff_ids, 2);
	CHECK_STR(c.diff_ids[1], l2);
	CHECK_STR(c.config->workdir, "/app");
	CHECK_EQ_INT(c.config->n_entrypoint, 3);
	CHECK_STR(c.config->env[0]->key, "PATH");
	CHECK_STR(c.config->env[0]->value, "/bin:/usr/bin");
	oci_config_free(&c);

	_cleanup_free_ char *manifest = oci_manifest_write(cfgd, (int64_t)strlen(config), layers, sizes, keys, 2);
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	CHECK_EQ_INT(oci_parse_manifest_or_index(manifest, strlen(manifest), &m, &idx, &is_index, &err), 0);
	CHECK(!is_index);
	CHECK_STR(m.config.digest, cfgd);
	CHECK_EQ_INT(m.n_layers, 2);
	CHECK_EQ_INT(m.layers[1].size, 200);
	CHECK_STR(m.layers[0].cache_key, key);
	CHECK(m.layers[1].cache_key == NULL);
	oci_manifest_free(&m);

	char md[DIGEST_STR_MAX];
	digest_buf(manifest, strlen(manifest), md);
	_cleanup_free_ char *index = oci_index_write(md, (int64_t)strlen(manifest), "app:1");
	CHECK_EQ_INT(oci_parse_manifest_or_index(index, strlen(index), &m, &idx, &is_index, &err), 0);
	CHECK(is_index);
	CHECK(oci_index_pick(&idx, "app:1") != NULL);
	CHECK(oci_index_pick(&idx, "other") == NULL);
	CHECK(oci_index_pick(&idx, NULL) != NULL); /* the only one */
	oci_index_free(&idx);

	/* Several platforms: this host's is picked. */
	char other[DIGEST_STR_MAX];
	digest_buf("other", 5, other);
	_cleanup_free_ char *multi = xasprintf(
		"{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":["
		"{\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"s390x\"}},"
		"{\"digest\":\"%s\",\"size\":1,\"platform\":{\"os\":\"linux\",\"architecture\":\"%s\"}}]}",
		other, md, oci_host_arch());
	CHECK_EQ_INT(oci_parse_manifest_or_index(multi, strlen(multi), &m, &idx, &is_index, &err), 0);
	const oci_desc_t *pick = oci_index_pick(&idx, NULL);
	CHECK(pick && strcmp(pick->digest, md) == 0);
	oci_index_free(&idx);
}

static void hostile_documents(void)
{
	static const struct {
		const char *json;
		const char *want;
	} bad[] = {
		{"", "invalid JSON"},
		{"[1]", "not an object"},
		{"{\"schemaVersion\":1}", "schema 1 is not supported"},
		{"{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:../../x\"},\"layers\":[]}", "is not sha256"},
		{"{\"schemaVersion\":2,\"config\":{\"digest\":\"md5:00\"},\"layers\":[]}", "is not sha256"},
		{"{\"schemaVersion\":2,\"schemaVersion\":2}", "duplicate"},
		{"{\"schemaVersion\":2,\"config\":{\"digest\":\"sha256:0000000000000000000000000000000000000000000000000000000000000000\"}}",
		 "no layers array"},
		{"{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"nope\"}]}", "index entry"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		oci_manifest_t m;
		oci_index_t idx;
		bool is_index;
		hutch_err_t err = {0};
		CHECK(oci_parse_manifest_or_index(bad[i].json, strlen(bad[i].json), &m, &idx, &is_index, &err) < 0);
		CHECK_CONTAINS(err.message, bad[i].want);
	}
	oci_config_t c;
	hutch_err_t err = {0};
	const char *cfg = "{\"rootfs\":{\"diff_ids\":[\"sha256:short\"]}}";
	CHECK(oci_config_parse(cfg, strlen(cfg), &c, &err) < 0);
	CHECK_CONTAINS(err.message, "diff id 0");
	/* Huge documents are refused before they are parsed. */
	size_t big = OCI_JSON_MAX + 1;
	char *huge = xmalloc(big);
	memset(huge, ' ', big);
	CHECK(oci_config_parse(huge, big, &c, &err) < 0);
	CHECK_CONTAINS(err.message, "too large");
	free(huge);
	docker_archive_image_t *imgs;
	size_t n;
	const char *dm = "[{\"Config\":\"c.json\",\"RepoTags\":[\"a:1\"],\"Layers\":[\"l/layer.tar\"]}]";
	CHECK_EQ_INT(oci_docker_manifest_parse(dm, strlen(dm), &imgs, &n, &err), 0);
	CHECK_EQ_INT(n, 1);
	CHECK_STR(imgs[0].config, "c.json");
	CHECK_STR(imgs[0].layers[0], "l/layer.tar");
	CHECK_STR(imgs[0].repo_tags[0], "a:1");
	oci_docker_manifest_free(imgs, n);
	CHECK(oci_docker_manifest_parse("{}", 2, &imgs, &n, &err) < 0);
	CHECK(oci_docker_manifest_parse("[{\"Layers\":[]}]", 15, &imgs, &n, &err) < 0);
	CHECK(oci_docker_manifest_parse("[{\"Config\":\"c\",\"Layers\":[1]}]", 28, &imgs, &n, &err) < 0);
}

/* ---- archives ---- */

static image_store_t *open_store(const char *name)
{
	_cleanup_free_ char *state = xasprintf("%s/%s", g_dir, name);
	mkdir(state, 0700);
	image_store_t *s = NULL;
	hutch_err_t err = {0};
	CHECK_EQ_INT(image_store_open(state, &s, &err), 0);
	return s;
}

/* An image in store s: one layer from a small tree, a config and a
 * manifest, as the builder would leave them (pinned). */
static Hutch__V1__Image *make_image(image_store_t *s, const char *cache_key)
{
	_cleanup_free_ char *root = xasprintf("%s/src-%d", g_dir, rand());
	mkdir(root, 0755);
	_cleanup_free_ char *f = xasprintf("%s/hello", root);
	FILE *fp = fopen(f, "w");
	fputs("hello\n", fp);
	fclose(fp);
	static char layer[DIGEST_STR_MAX], cfgd[DIGEST_STR_MAX], md[DIGEST_STR_MAX];
	int64_t size;
	hutch_err_t err = {0};
	CHECK_EQ_INT(image_store_layer_from_dir(s, root, layer, &size, &err), 0);
	char *layers[] = {layer};
	char *keys[] = {(char *)cache_key};
	Hutch__V1__ImageConfig cfg = HUTCH__V1__IMAGE_CONFIG__INIT;
	cfg.workdir = "/w";
	_cleanup_free_ char *config = oci_config_write(&cfg, layers, 1, NULL);
	CHECK_EQ_INT(image_store_blob_put(s, config, strlen(config), cfgd, &err), 0);
	_cleanup_free_ char *manifest = oci_manifest_write(cfgd, (int64_t)strlen(config), layers, &size, keys, 1);
	CHECK_EQ_INT(image_store_blob_put(s, manifest, strlen(manifest), md, &err), 0);
	Hutch__V1__Image *img = xcalloc(1, sizeof *img);
	hutch__v1__image__init(img);
	img->name = "app";
	img->digest = md;
	img->config_digest = cfgd;
	return img;
}

static bool file_sink(void *data, const void *buf, size_t len)
{
	return fwrite(buf, 1, len, data) == len;
}

static bool refuse_sink(void *data, const void *buf, size_t len)
{
	(void)data;
	(void)buf;
	(void)len;
	return false;
}

static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n;
}

static void export_import_roundtrip(void)
{
	image_store_t *a = open_store("a");
	char key[DIGEST_STR_MAX];
	digest_buf("step-key", 8, key);
	Hutch__V1__Image *img = make_image(a, key);
	_cleanup_free_ char *tar = xasprintf("%s/layout.tar", g_dir);
	FILE *f = fopen(tar, "w");
	hutch_err_t err = {0};
	CHECK_EQ_INT(oci_layout_export(a, img, file_sink, f, &err), 0);
	fclose(f);
	/* A client that stops reading stops the export. */
	CHECK_EQ_INT(oci_layout_export(a, img, refuse_sink, NULL, &err), -ECANCELED);
	/* skopeo and umoci read this layout (checked by the integration
	 * tests); here: it is a plain OCI layout. */
	_cleanup_free_ char *ls = xasprintf("tar -tf %s | sort | tr '\\n' ' ' > %s/names", tar, g_dir);
	CHECK_EQ_INT(system(ls), 0);

	image_store_t *b = open_store("b");
	oci_imported_t imp;
	char **pinned = NULL;
	CHECK_EQ_INT(oci_archive_import(b, "acme", tar, NULL, &imp, &pinned, &err), 0);
	if (err.message[0])
		fprintf(stderr, "%s\n", err.message);
	CHECK_EQ_INT(imp.n, 1);
	CHECK(image_store_layer_exists(b, imp.layers[0]));
	CHECK_STR(imp.cache_keys[0], key);
	CHECK_STR(imp.cfg->workdir, "/w");
	CHECK(image_store_blob_exists(b, imp.manifest));
	CHECK(image_store_blob_exists(b, imp.config));
	/* The build cache came along, for the importing tenant only. */
	image_cache_entry_t e;
	CHECK_EQ_INT(image_store_cache_get(b, "acme", key, &e), 0);
	CHECK_STR(e.layers[0], imp.layers[0]);
	CHECK_EQ_INT(image_store_cache_get(b, "other", key, &e), -ENOENT);
	/* By name as index.json names it. */
	oci_imported_t imp2;
	char **pinned2 = NULL;
	CHECK_EQ_INT(oci_archive_import(b, "acme", tar, "app", &imp2, &pinned2, &err), 0);
	oci_imported_free(&imp2);
	CHECK(oci_archive_import(b, "acme", tar, "nope", &imp2, &pinned2, &err) < 0);
	CHECK_CONTAINS(err.message, "no image named nope");
	CHECK(pinned2 == NULL || pinned2[0] != NULL);
	_cleanup_free_ char *tmp = xasprintf("%s/b/images/tmp", g_dir);
	CHECK_EQ_INT(count_entries(tmp), 0); /* nothing half-made */
	strv_free(pinned);
	strv_free(pinned2);
	oci_imported_free(&imp);
	free(img);
	image_store_free(a);
	image_store_free(b);
}

/* A tar of entries (name, content), written by hand. */
static void tar_of(const char *path, const char *const *names, const char *const *contents,
		   const size_t *lens, size_t n, bool symlink_last)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	archive_write_open_filename(a, path);
	for (size_t i = 0; i < n; i++) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, names[i]);
		if (symlink_last && i == n - 1) {
			archive_entry_set_filetype(e, AE_IFLNK);
			archive_entry_set_symlink(e, "/etc/passwd");
		} else {
			archive_entry_set_filetype(e, AE_IFREG);
			archive_entry_set_size(e, (la_int64_t)(lens ? lens[i] : strlen(contents[i])));
		}
		archive_entry_set_perm(e, 0644);
		archive_write_header(a, e);
		if (!(symlink_last && i == n - 1))
			archive_write_data(a, contents[i], lens ? lens[i] : strlen(contents[i]));
		archive_entry_free(e);
	}
	archive_write_close(a);
	archive_write_free(a);
}

static char *file_bytes(const char *path, size_t *len)
{
	FILE *f = fopen(path, "r");
	strbuf_t sb = STRBUF_INIT;
	char buf[4096];
	size_t n;
	while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
		sb_append_n(&sb, buf, n);
	if (f)
		fclose(f);
	*len = sb.len;
	return sb_steal(&sb);
}

static void docker_archive_and_lies(void)
{
	image_store_t *s = open_store("c");
	hutch_err_t err = {0};
	/* A layer tar, its config naming its diff id, manifest.json. */
	_cleanup_free_ char *layer = xasprintf("%s/layer.tar", g_dir);
	const char *ln[] = {"etc/greeting"}, *lc[] = {"hi\n"};
	tar_of(layer, ln, lc, NULL, 1, false);
	size_t llen;
	_cleanup_free_ char *lbytes = file_bytes(layer, &llen);
	char diff[DIGEST_STR_MAX];
	digest_buf(lbytes, llen, diff);
	_cleanup_free_ char *config = xasprintf(
		"{\"config\":{\"Env\":[\"A=1\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}", diff);
	const char *manifest = "[{\"Config\":\"c.json\",\"RepoTags\":[\"t/app:1\"],\"Layers\":[\"abc/layer.tar\"]}]";
	_cleanup_free_ char *archive = xasprintf("%s/docker.tar", g_dir);
	{
		struct archive *a = archive_write_new();
		archive_write_set_format_pax_restricted(a);
		archive_write_open_filename(a, archive);
		/* As skopeo writes them: the layer a symlink to a blob. */
		const char *names[] = {"manifest.json", "c.json", "blob.tar", "abc/layer.tar"};
		const char *datas[] = {manifest, config, lbytes, NULL};
		size_t lens[] = {strlen(manifest), strlen(config), llen, 0};
		for (int i = 0; i < 4; i++) {
			struct archive_entry *e = archive_entry_new();
			archive_entry_set_pathname(e, names[i]);
			archive_entry_set_filetype(e, datas[i] ? AE_IFREG : AE_IFLNK);
			if (!datas[i])
				archive_entry_set_symlink(e, "../blob.tar");
			archive_entry_set_perm(e, 0644);
			archive_entry_set_size(e, (la_int64_t)lens[i]);
			archive_write_header(a, e);
			if (datas[i])
				archive_write_data(a, datas[i], lens[i]);
			archive_entry_free(e);
		}
		archive_write_close(a);
		archive_write_free(a);
	}
	oci_imported_t imp;
	char **pinned = NULL;
	CHECK_EQ_INT(oci_archive_import(s, "acme", archive, NULL, &imp, &pinned, &err), 0);
	if (err.message[0])
		fprintf(stderr, "%s\n", err.message);
	CHECK_EQ_INT(imp.n, 1);
	CHECK_STR(imp.layers[0], diff);
	CHECK_STR(imp.cfg->env[0]->key, "A");
	oci_imported_free(&imp);
	strv_free(pinned);
	pinned = NULL;
	CHECK(oci_archive_import(s, "acme", archive, "t/app:2", &imp, &pinned, &err) < 0);
	CHECK_CONTAINS(err.message, "no image tagged t/app:2");

	/* Lies: a diff id that is not the layer's. */
	_cleanup_free_ char *liar = xasprintf("%s/liar.tar", g_dir);
	char wrong[DIGEST_STR_MAX];
	digest_buf("wrong", 5, wrong);
	_cleanup_free_ char *config2 = xasprintf("{\"rootfs\":{\"diff_ids\":[\"%s\"]}}", wrong);
	const char *names[] = {"manifest.json", "c.json", "abc/layer.tar"};
	const char *datas[] = {manifest, config2, lbytes};
	size_t lens[] = {strlen(manifest), strlen(config2), llen};
	tar_of(liar, names, datas, lens, 3, false);
	CHECK(oci_archive_import(s, "acme", liar, NULL, &imp, &pinned, &err) < 0);
	CHECK_CONTAINS(err.message, "the image config says");
	/* A path out of the archive. */
	const char *escape_m = "[{\"Config\":\"../../c.json\",\"Layers\":[]}]";
	const char *datas2[] = {escape_m, config2};
	const char *names2[] = {"manifest.json", "c.json"};
	_cleanup_free_ char *esc = xasprintf("%s/escape.tar", g_dir);
	tar_of(esc, names2, datas2, NULL, 2, false);
	CHECK(oci_archive_import(s, "acme", esc, NULL, &imp, &pinned, &err) < 0);
	CHECK_CONTAINS(err.message, "not a path inside the archive");
	/* A link in the archive. */
	_cleanup_free_ char *lnk = xasprintf("%s/link.tar", g_dir);
	const char *names3[] = {"manifest.json", "c.json"};
	tar_of(lnk, names3, datas2, NULL, 2, true);
	CHECK(oci_archive_import(s, "acme", lnk, NULL, &imp, &pinned, &err) < 0);
	CHECK_CONTAINS(err.message, "a link out of the archive");
	/* Neither kind. */
	_cleanup_free_ char *other = xasprintf("%s/other.tar", g_dir);
	const char *names4[] = {"README"};
	tar_of(other, names4, lc, NULL, 1, false);
	CHECK(oci_archive_import(s, "acme", other, NULL, &imp, &pinned, &err) < 0);
	CHECK_CONTAINS(err.message, "neither an OCI image layout");
	/* A layout whose blob is not what its name says. */
	_cleanup_free_ char *bad_layout = xasprintf("%s/badlayout.tar", g_dir);
	char md[DIGEST_STR_MAX];
	digest_buf("the manifest", 12, md);
	_cleanup_free_ char *index = oci_index_write(md, 12, NULL);
	_cleanup_free_ char *blobname = xasprintf("blobs/sha256/%s", digest_hex(md));
	const char *names5[] = {"oci-layout", "index.json", blobname};
	const char *datas5[] = {OCI_LAYOUT_FILE, index, "not the manifest"};
	tar_of(bad_layout, names5, datas5, NULL, 3, false);
	CHECK(oci_archive_import(s, "acme", bad_layout, NULL, &imp, &pinned, &err) < 0);
	CHECK_CONTAINS(err.message, "hashes to");
	/* Nothing half-made: no scratch, no pins, no layers but the good one. */
	CHECK(pinned == NULL);
	_cleanup_free_ char *tmp = xasprintf("%s/c/images/tmp", g_dir);
	CHECK_EQ_INT(count_entries(tmp), 0);
	image_store_free(s);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/hutch-test-image-oci-XXXXXX";
	if (!mkdtemp(dir))
		return 2;
	g_dir = dir;
	static const test_case_t cases[] = {
		{"documents_roundtrip", documents_roundtrip},
		{"hostile_documents", hostile_documents},
		{"export_import_roundtrip", export_import_roundtrip},
		{"docker_archive_and_lies", docker_archive_and_lies},
		{NULL, NULL},
	};
	int r = run_cases(cases, argc, argv);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", dir);
	if (system(cmd) != 0)
		r = 1;
	return r;
}
