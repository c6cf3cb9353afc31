#include "oci.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "strbuf.h"

const char *oci_host_arch(void)
{
#if defined(__x86_64__)
	return "amd64";
#elif defined(__aarch64__)
	return "arm64";
#else
	return "unknown";
#endif
}

/* ---- writing ---- */

static char *dump(json_t *j)
{
	/* Members in insertion order, compact: deterministic bytes. */
	char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	if (!s)
		abort();
	char *copy = xstrdup(s);
	free(s);
	return copy;
}

static json_t *strv_json(char *const *v, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_string(v[i] ? v[i] : ""));
	return a;
}

char *oci_config_write(const Hutch__V1__ImageConfig *cfg, char *const *diff_ids, size_t n,
		       char *const *created_by)
{
	json_t *root = json_object();
	json_object_set_new(root, "architecture", json_string(oci_host_arch()));
	json_object_set_new(root, "os", json_string("linux"));
	json_t *c = json_object();
	json_t *env = json_array();
	for (size_t i = 0; cfg && i < cfg->n_env; i++) {
		_cleanup_free_ char *kv = xasprintf("%s=%s", cfg->env[i]->key,
						    cfg->env[i]->value ? cfg->env[i]->value : "");
		json_array_append_new(env, json_string(kv));
	}
	json_object_set_new(c, "Env", env);
	if (cfg && cfg->n_entrypoint)
		json_object_set_new(c, "Entrypoint", strv_json(cfg->entrypoint, cfg->n_entrypoint));
	if (cfg && cfg->n_cmd)
		json_object_set_new(c, "Cmd", strv_json(cfg->cmd, cfg->n_cmd));
	if (cfg && cfg->workdir && *cfg->workdir)
		json_object_set_new(c, "WorkingDir", json_string(cfg->workdir));
	json_object_set_new(root, "config", c);
	json_t *rootfs = json_object();
	json_object_set_new(rootfs, "type", json_string("layers"));
	json_object_set_new(rootfs, "diff_ids", strv_json(diff_ids, n));
	json_object_set_new(root, "rootfs", rootfs);
	if (created_by) {
		json_t *h = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *e = json_object();
			json_object_set_new(e, "created_by", json_string(created_by[i] ? created_by[i] : ""));
			json_array_append_new(h, e);
		}
		json_object_set_new(root, "history", h);
	}
	return dump(root);
}

static json_t *desc_json(const char *mt, const char *digest, int64_t size, const char *key)
{
	json_t *d = json_object();
	json_object_set_new(d, "mediaType", json_string(mt));
	json_object_set_new(d, "digest", json_string(digest));
	json_object_set_new(d, "size", json_integer(size));
	if (key) {
		json_t *a = json_object();
		json_object_set_new(a, HUTCH_ANNOT_CACHE_KEY, json_string(key));
		json_object_set_new(d, "annotations", a);
	}
	return d;
}

char *oci_manifest_write(const char *config_digest, int64_t config_size, char *const *layer_digests,
			 const int64_t *layer_sizes, char *const *cache_keys, size_t n)
{
	json_t *root = json_object();
	json_object_set_new(root, "schemaVersion", json_integer(2));
	json_object_set_new(root, "mediaType", json_string(OCI_MT_MANIFEST));
	json_object_set_new(root, "config", desc_json(OCI_MT_CONFIG, config_digest, config_size, NULL));
	json_t *layers = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(layers, desc_json(OCI_MT_LAYER, layer_digests[i], layer_sizes[i],
							cache_keys ? cache_keys[i] : NULL));
	json_object_set_new(root, "layers", layers);
	return dump(root);
}

char *oci_index_write(const char *manifest_digest, int64_t manifest_size, const char *ref_name)
{
	json_t *root = json_object();
	json_object_set_new(root, "schemaVersion", json_integer(2));
	json_object_set_new(root, "mediaType", json_string(OCI_MT_INDEX));
	json_t *m = desc_json(OCI_MT_MANIFEST, manifest_digest, manifest_size, NULL);
	if (ref_name) {
		json_t *a = json_object();
		json_object_set_new(a, OCI_ANNOT_REF_NAME, json_string(ref_name));
		json_object_set_new(m, "annotations", a);
	}
	json_t *arr = json_array();
	json_array_append_new(arr, m);
	json_object_set_new(root, "manifests", arr);
	return dump(root);
}

/* ---- reading ---- */

static const char *jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void desc_free(oci_desc_t *d)
{
	free(d->media_type);
	free(d->cache_key);
	free(d->ref_name);
	free(d->os);
	free(d->arch);
	memset(d, 0, sizeof *d);
}

static int desc_parse(json_t *o, oci_desc_t *d, const char *what, hutch_err_t *err)
{
	memset(d, 0, sizeof *d);
	if (!json_is_object(o))
		return hutch_err_set(err, EINVAL, "%s: not an object", what);
	const char *dg = jstr(o, "digest");
	if (!digest_valid(dg))
		return hutch_err_set(err, EINVAL, "%s: digest `%.80s` is not sha256:<hex>", what,
				     dg ? dg : "");
	snprintf(d->digest, sizeof d->digest, "%s", dg);
	const char *mt = jstr(o, "mediaType");
	d->media_type = xstrdup(mt ? mt : "");
	json_t *size = json_object_get(o, "size");
	d->size = json_is_integer(size) ? json_integer_value(size) : -1;
	if (d->size < -1)
		d->size = -1;
	json_t *a = json_object_get(o, "annotations");
	if (json_is_object(a)) {
		const char *k = jstr(a, HUTCH_ANNOT_CACHE_KEY);
		if (k && digest_valid(k))
			d->cache_key = xstrdup(k);
		const char *ref = jstr(a, OCI_ANNOT_REF_NAME);
		if (ref && strlen(ref) < 512)
			d->ref_name = xstrdup(ref);
	}
	json_t *p = json_object_get(o, "platform");
	if (json_is_object(p)) {
		const char *os = jstr(p, "os"), *arch = jstr(p, "architecture");
		d->os = os ? xstrdup(os) : NULL;
		d->arch = arch ? xstrdup(arch) : NULL;
	}
	return 0;
}

void oci_manifest_free(oci_manifest_t *m)
{
	free(m->media_type);
	desc_free(&m->config);
	for (size_t i = 0; i < m->n_layers; i++)
		desc_free(&m->layers[i]);
	free(m->layers);
	memset(m, 0, sizeof *m);
}

void oci_index_free(oci_index_t *idx)
{
	for (size_t i = 0; i < idx->n; i++)
		desc_free(&idx->manifests[i]);
	free(idx->manifests);
	memset(idx, 0, sizeof *idx);
}

static json_t *load(const char *json, size_t len, hutch_err_t *err)
{
	if (len > OCI_JSON_MAX) {
		hutch_err_set(err, EFBIG, "JSON document of %zu bytes: too large", len);
		return NULL;
	}
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		hutch_err_set(err, EINVAL, "invalid JSON at %d:%d: %s", je.line, je.column, je.text);
	else if (!json_is_object(root)) {
		json_decref(root);
		hutch_err_set(err, EINVAL, "JSON document is not an object");
		return NULL;
	}
	return root;
}

int oci_parse_manifest_or_index(const char *json, size_t len, oci_manifest_t *m, oci_index_t *idx,
				bool *is_index, hutch_err_t *err)
{
	memset(m, 0, sizeof *m);
	memset(idx, 0, sizeof *idx);
	json_t *root = load(json, len, err);
	if (!root)
		return -err->code;
	int r = 0;
	json_t *sv = json_object_get(root, "schemaVersion");
	if (!json_is_integer(sv) || json_integer_value(sv) != 2) {
		r = hutch_err_set(err, ENOTSUP, "manifest schemaVersion is not 2 (Docker schema 1 is not supported)");
		goto out;
	}
	const char *mt = jstr(root, "mediaType");
	json_t *manifests = json_object_get(root, "manifests");
	if (json_is_array(manifests) ||
	    (mt && (strcmp(mt, OCI_MT_INDEX) == 0 || strcmp(mt, DOCKER_MT_LIST) == 0))) {
		*is_index = true;
		size_t n = json_is_array(manifests) ? json_array_size(manifests) : 0;
		if (n > 1024) {
			r = hutch_err_set(err, E2BIG, "index of %zu manifests: too many", n);
			goto out;
		}
		idx->manifests = xcalloc(n + 1, sizeof *idx->manifests);
		for (size_t i = 0; i < n && r == 0; i++) {
			r = desc_parse(json_array_get(manifests, i), &idx->manifests[i], "index entry", err);
			if (r == 0)
				idx->n++;
		}
		goto out;
	}
	*is_index = false;
	m->media_type = xstrdup(mt ? mt : OCI_MT_MANIFEST);
	if ((r = desc_parse(json_object_get(root, "config"), &m->config, "manifest config", err)) < 0)
		goto out;
	json_t *layers = json_object_get(root, "layers");
	if (!json_is_array(layers)) {
		r = hutch_err_set(err, EINVAL, "manifest has no layers array");
		goto out;
	}
	size_t n = json_array_size(layers);
	if (n > 1000) {
		r = hutch_err_set(err, E2BIG, "manifest of %zu layers: too many", n);
		goto out;
	}
	m->layers = xcalloc(n + 1, sizeof *m->layers);
	for (size_t i = 0; i < n && r == 0; i++) {
		r = desc_parse(json_array_get(layers, i), &m->layers[i], "manifest layer", err);
		if (r == 0)
			m->n_layers++;
	}
out:
	json_decref(root);
	if (r < 0) {
		oci_manifest_free(m);
		oci_index_free(idx);
	}
	return r;
}

static char **strv_from_json(json_t *a, size_t *n_out)
{
	char **v = NULL;
	size_t n = 0;
	if (json_is_array(a))
		for (size_t i = 0; i < json_array_size(a) && i < 4096; i++) {
			json_t *s = json_array_get(a, i);
			if (json_is_string(s)) {
				strv_push(&v, xstrdup(json_string_value(s)));
				n++;
			}
		}
	if (n_out)
		*n_out = n;
	return v;
}

int oci_config_parse(const char *json, size_t len, oci_config_t *out, hutch_err_t *err)
{
	memset(out, 0, sizeof *out);
	json_t *root = load(json, len, err);
	if (!root)
		return -err->code;
	int r = 0;
	json_t *c = json_object_get(root, "config");
	Hutch__V1__ImageConfig cfg = HUTCH__V1__IMAGE_CONFIG__INIT;
	Hutch__V1__KeyValue **kvs = NULL;
	size_t n_env = 0, n_ep = 0, n_cmd = 0;
	char **env = NULL, **ep = NULL, **cmd = NULL;
	if (json_is_object(c)) {
		env = strv_from_json(json_object_get(c, "Env"), &n_env);
		ep = strv_from_json(json_object_get(c, "Entrypoint"), &n_ep);
		cmd = strv_from_json(json_object_get(c, "Cmd"), &n_cmd);
		const char *wd = jstr(c, "WorkingDir");
		cfg.workdir = (char *)(wd ? wd : "");
	}
	kvs = xcalloc(n_env + 1, sizeof *kvs);
	size_t nk = 0;
	for (size_t i = 0; i < n_env; i++) {
		char *eq = strchr(env[i], '=');
		if (!eq || eq == env[i])
			continue;
		*eq = '\0';
		Hutch__V1__KeyValue *kv = xmalloc(sizeof *kv);
		hutch__v1__key_value__init(kv);
		kv->key = env[i];
		kv->value = eq + 1;
		kvs[nk++] = kv;
	}
	cfg.env = kvs;
	cfg.n_env = nk;
	cfg.entrypoint = ep;
	cfg.n_entrypoint = n_ep;
	cfg.cmd = cmd;
	cfg.n_cmd = n_cmd;
	/* An owned copy, in one protobuf-c allocation. */
	size_t pn = protobuf_c_message_get_packed_size(&cfg.base);
	uint8_t *buf = xmalloc(pn ? pn : 1);
	protobuf_c_message_pack(&cfg.base, buf);
	out->config = hutch__v1__image_config__unpack(NULL, pn, buf);
	free(buf);
	for (size_t i = 0; i < nk; i++)
		free(kvs[i]);
	free(kvs);
	strv_free(env);
	strv_free(ep);
	strv_free(cmd);
	json_t *rootfs = json_object_get(root, "rootfs");
	json_t *ids = json_is_object(rootfs) ? json_object_get(rootfs, "diff_ids") : NULL;
	if (json_is_array(ids)) {
		for (size_t i = 0; i < json_array_size(ids) && r == 0; i++) {
			json_t *s = json_array_get(ids, i);
			if (!json_is_string(s) || !digest_valid(json_string_value(s)))
				r = hutch_err_set(err, EINVAL, "config: diff id %zu is not a sha256 digest", i);
			else
				strv_push(&out->diff_ids, xstrdup(json_string_value(s)));
		}
		out->n_diff_ids = strv_len(out->diff_ids);
	}
	json_decref(root);
	if (r == 0 && !out->config)
		r = hutch_err_set(err, ENOMEM, "out of memory");
	if (r < 0)
		oci_config_free(out);
	return r;
}

void oci_config_free(oci_config_t *c)
{
	if (c->config)
		protobuf_c_message_free_unpacked(&c->config->base, NULL);
	strv_free(c->diff_ids);
	memset(c, 0, sizeof *c);
}

const oci_desc_t *oci_index_pick(const oci_index_t *idx, const char *ref)
{
	if (ref && *ref) {
		for (size_t i = 0; i < idx->n; i++)
			if (idx->manifests[i].ref_name && strcmp(idx->manifests[i].ref_name, ref) == 0)
				return &idx->manifests[i];
		return NULL;
	}
	const oci_desc_t *only = NULL;
	size_t n_images = 0;
	for (size_t i = 0; i < idx->n; i++) {
		const oci_desc_t *d = &idx->manifests[i];
		if (d->arch && d->os && strcmp(d->os, "linux") == 0 && strcmp(d->arch, oci_host_arch()) == 0)
			return d;
		if (!d->arch) {
			only = d;
			n_images++;
		}
	}
	return n_images == 1 ? only : (idx->n == 1 ? &idx->manifests[0] : NULL);
}

/* ---- docker-archive ---- */

void oci_docker_manifest_free(docker_archive_image_t *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].config);
		strv_free(v[i].layers);
		strv_free(v[i].repo_tags);
	}
	free(v);
}

int oci_docker_manifest_parse(const char *json, size_t len, docker_archive_image_t **out,
			      size_t *n_out, hutch_err_t *err)
{
	*out = NULL;
	*n_out = 0;
	if (len > OCI_JSON_MAX)
		return hutch_err_set(err, EFBIG, "manifest.json of %zu bytes: too large", len);
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return hutch_err_set(err, EINVAL, "manifest.json: invalid JSON at %d:%d: %s", je.line,
				     je.column, je.text);
	int r = 0;
	size_t n = json_is_array(root) ? json_array_size(root) : 0;
	if (!json_is_array(root) || n == 0)
		r = hutch_err_set(err, EINVAL, "manifest.json: an array of images is needed");
	else if (n > 1024)
		r = hutch_err_set(err, E2BIG, "manifest.json: %zu images: too many", n);
	docker_archive_image_t *v = NULL;
	if (r == 0)
		v = xcalloc(n, sizeof *v);
	for (size_t i = 0; r == 0 && i < n; i++) {
		json_t *o = json_array_get(root, i);
		const char *cfg = json_is_object(o) ? jstr(o, "Config") : NULL;
		json_t *layers = json_is_object(o) ? json_object_get(o, "Layers") : NULL;
		if (!cfg || !*cfg || strlen(cfg) > 4096 || !json_is_array(layers)) {
			r = hutch_err_set(err, EINVAL, "manifest.json: image %zu has no Config or Layers", i + 1);
			break;
		}
		if (json_array_size(layers) > 1000) {
			r = hutch_err_set(err, E2BIG, "manifest.json: image %zu has too many layers", i + 1);
			break;
		}
		v[i].config = xstrdup(cfg);
		for (size_t k = 0; r == 0 && k < json_array_size(layers); k++) {
			json_t *l = json_array_get(layers, k);
			if (!json_is_string(l) || !*json_string_value(l) || strlen(json_string_value(l)) > 4096)
				r = hutch_err_set(err, EINVAL, "manifest.json: image %zu: layer %zu is not a path",
						  i + 1, k + 1);
			else
				strv_push(&v[i].layers, xstrdup(json_string_value(l)));
		}
		v[i].n_layers = strv_len(v[i].layers);
		json_t *tags = json_object_get(o, "RepoTags");
		for (size_t k = 0; json_is_array(tags) && k < json_array_size(tags) && k < 1024; k++) {
			json_t *t = json_array_get(tags, k);
			if (json_is_string(t) && strlen(json_string_value(t)) < 512)
				strv_push(&v[i].repo_tags, xstrdup(json_string_value(t)));
		}
	}
	json_decref(root);
	if (r < 0) {
		oci_docker_manifest_free(v, n);
		return r;
	}
	*out = v;
	*n_out = n;
	return 0;
}
