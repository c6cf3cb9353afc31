/* Images as hutchd serves them: the service's lifetime, the tenants'
 * image records, and the image source sandboxes are made from. The jobs
 * (build, import, export, verify, collect) are in image_jobs.c. */
#include "image_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "image_builtin.h"
#include "image_service_priv.h"
#include "image_spec.h"
#include "log.h"
#include "oci.h"
#include "proc.h"
#include "strbuf.h"

/* ---- small helpers ---- */

void *image_pb_copy(const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(m, buf);
	void *copy = protobuf_c_message_unpack(m->descriptor, NULL, n, buf);
	free(buf);
	return copy;
}

void image_record_id(const char *tenant, const char *name, char id[32])
{
	digest_ctx_t *c = digest_new();
	digest_update(c, tenant, strlen(tenant));
	digest_update(c, "\n", 1);
	digest_update(c, name, strlen(name));
	char d[DIGEST_STR_MAX];
	digest_final(c, d);
	snprintf(id, 32, "img-%.24s", digest_hex(d));
}

void image_pin_all(image_store_t *store, const Hutch__V1__Image *img)
{
	char **v = image_pins(img, img->config_digest);
	for (char **p = v; p && *p; p++)
		image_store_pin(store, *p);
	strv_free(v);
}

void image_unpin_all(image_store_t *store, const Hutch__V1__Image *img)
{
	char **v = image_pins(img, img->config_digest);
	for (char **p = v; p && *p; p++)
		image_store_unpin(store, *p);
	strv_free(v);
}

void image_pins_keep_only(image_store_t *store, char *const *pinned, char *const *keep_in)
{
	char **keep = strv_dup((const char *const *)keep_in);
	for (char *const *p = pinned; p && *p; p++) {
		bool kept = false;
		for (char **q = keep; q && *q && !kept; q++)
			if (**q && strcmp(*p, *q) == 0) {
				kept = true;
				**q = '\0'; /* one pin per digest stays */
			}
		if (!kept)
			image_store_unpin(store, *p);
	}
	strv_free(keep);
}

const struct image_config *image_service_config(const image_service_t *svc)
{
	return &svc->cfg;
}

/* ---- records ---- */

typedef struct found {
	Hutch__V1__Image **items;
	size_t n;
	const char *digest; /* list: only these (NULL: all) */
} found_t;

static int collect(void *ud, const store_obj_t *o)
{
	found_t *f = ud;
	Hutch__V1__Image *img = hutch__v1__image__unpack(NULL, o->len, o->data);
	if (!img) {
		log_error("image record %s is unreadable; ignoring it", o->id);
		return 0;
	}
	if (f->digest && strcmp(img->digest, f->digest) != 0) {
		protobuf_c_message_free_unpacked(&img->base, NULL);
		return 0;
	}
	f->items = xrealloc(f->items, (f->n + 1) * sizeof *f->items);
	f->items[f->n++] = img;
	return 0;
}

static void found_free(found_t *f)
{
	for (size_t i = 0; i < f->n; i++)
		protobuf_c_message_free_unpacked(&f->items[i]->base, NULL);
	free(f->items);
	memset(f, 0, sizeof *f);
}

int image_service_get(image_service_t *svc, const char *tenant, const char *name_or_digest,
		      Hutch__V1__Image **out, hutch_err_t *err)
{
	*out = NULL;
	if (!name_or_digest || !*name_or_digest)
		return hutch_err_set(err, EINVAL, "an image name or digest is needed");
	found_t f = {.digest = digest_valid(name_or_digest) ? name_or_digest : NULL};
	int r;
	if (f.digest) {
		/* The newest of the tenant's images with that content. */
		r = store_list(svc->d.store, IMAGE_KIND, tenant, collect, &f, err);
	} else {
		r = store_get(svc->d.store, IMAGE_KIND, tenant, name_or_digest, collect, &f, err);
		if (r == -ENOENT)
			r = 0;
	}
	if (r < 0) {
		found_free(&f);
		return r;
	}
	if (f.n == 0)
		return hutch_err_set(err, ENOENT, "image `%s` not found", name_or_digest);
	*out = steal_ptr(&f.items[f.n - 1]);
	f.n--;
	found_free(&f);
	/* store_get finds by id too: only the tenant's own count. */
	if (strcmp((*out)->tenant, tenant) != 0) {
		protobuf_c_message_free_unpacked(&(*out)->base, NULL);
		*out = NULL;
		return hutch_err_set(err, ENOENT, "image `%s` not found", name_or_digest);
	}
	return 0;
}

int image_service_list(image_service_t *svc, const char *tenant, Hutch__V1__Image ***out,
		       size_t *n, hutch_err_t *err)
{
	found_t f = {0};
	int r = store_list(svc->d.store, IMAGE_KIND, tenant, collect, &f, err);
	if (r < 0) {
		found_free(&f);
		return r;
	}
	*out = f.items;
	*n = f.n;
	return 0;
}

int image_lookup(image_service_t *svc, const char *tenant, const char *name_or_digest,
		 Hutch__V1__Image **out, hutch_err_t *err)
{
	int r = image_service_get(svc, tenant, name_or_digest, out, err);
	if (r != -ENOENT)
		return r;
	const Hutch__V1__Image *b = svc->builtin;
	if (b && (strcmp(name_or_digest, b->name) == 0 || strcmp(name_or_digest, b->digest) == 0)) {
		*out = image_pb_copy(&b->base);
		return *out ? 0 : hutch_err_set(err, ENOMEM, "out of memory");
	}
	return hutch_err_set(err, ENOENT, "image `%s` not found (build it with `hutch image build`, or use busybox)",
			     name_or_digest);
}

int image_service_inspect(image_service_t *svc, const char *tenant, const char *name_or_digest,
			  Hutch__V1__Image **out, hutch_err_t *err)
{
	return image_lookup(svc, tenant, name_or_digest, out, err);
}

int image_record_put(image_service_t *svc, Hutch__V1__Image *img, hutch_err_t *err)
{
	char id[32];
	image_record_id(img->tenant, img->name, id);
	if (img->id != protobuf_c_empty_string)
		free(img->id);
	img->id = xstrdup(id);
	Hutch__V1__Image *old = NULL;
	hutch_err_t e = {0};
	if (image_service_get(svc, img->tenant, img->name, &old, &e) < 0)
		old = NULL;
	size_t n = protobuf_c_message_get_packed_size(&img->base);
	uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(&img->base, buf);
	int r = store_put(svc->d.store, IMAGE_KIND, img->tenant, id, img->name, buf, n, err);
	free(buf);
	if (r < 0) {
		image_unpin_all(svc->store, img);
		if (old)
			protobuf_c_message_free_unpacked(&old->base, NULL);
		return hutch_err_prefix(err, "record image %s", img->name);
	}
	bool changed = !old || strcmp(old->digest, img->digest) != 0;
	if (old) {
		image_unpin_all(svc->store, old);
		protobuf_c_message_free_unpacked(&old->base, NULL);
	}
	if (changed)
		log_info("images: %s/%s is %s (%zu layers)", img->tenant, img->name, img->digest, img->n_layers);
	return 0;
}

static int pin_record(void *ud, const store_obj_t *o)
{
	image_service_t *svc = ud;
	Hutch__V1__Image *img = hutch__v1__image__unpack(NULL, o->len, o->data);
	if (!img) {
		log_error("image record %s is unreadable; ignoring it", o->id);
		return 0;
	}
	image_pin_all(svc->store, img);
	protobuf_c_message_free_unpacked(&img->base, NULL);
	return 0;
}

/* ---- the image source of sandboxes ---- */

/* What a sandbox holds of its image. */
typedef struct sandbox_hold {
	char **pins;    /* digests pinned for it */
	char **layers;  /* layer digests, lowest first */
} sandbox_hold_t;

static void hold_free(image_store_t *store, sandbox_hold_t *h)
{
	if (!h)
		return;
	for (char **p = h->pins; p && *p; p++)
		image_store_unpin(store, *p);
	strv_free(h->pins);
	strv_free(h->layers);
	free(h);
}

static sandbox_hold_t *hold_new(image_store_t *store, char **pins, char **layers)
{
	sandbox_hold_t *h = xcalloc(1, sizeof *h);
	h->pins = pins;
	h->layers = layers;
	for (char **p = pins; p && *p; p++)
		image_store_pin(store, *p);
	return h;
}

static bool spec_has_env(const sandbox_spec_t *s, const char *key)
{
	for (size_t i = 0; i < s->n_env; i++)
		if (strcmp(s->env[i].key, key) == 0)
			return true;
	return false;
}

/* The image's config under what the spec says: env the spec does not
 * set, its workdir if the spec has none, its entrypoint before the
 * spec's command. */
static void merge_config(sandbox_spec_t *s, const Hutch__V1__ImageConfig *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_env; i++)
		if (!spec_has_env(s, c->env[i]->key))
			sandbox_spec_env_add(s, c->env[i]->key, c->env[i]->value);
	if ((!s->workdir || !*s->workdir) && c->workdir && *c->workdir)
		sandbox_str_set(&s->workdir, c->workdir);
	if (s->n_command && c->n_entrypoint) {
		size_t n = c->n_entrypoint + s->n_command;
		char **argv = xcalloc(n + 1, sizeof *argv);
		for (size_t i = 0; i < c->n_entrypoint; i++)
			argv[i] = xstrdup(c->entrypoint[i]);
		memcpy(argv + c->n_entrypoint, s->command, s->n_command * sizeof *argv);
		free(s->command);
		s->command = argv;
		s->n_command = n;
	}
}

static int src_resolve(void *data, const char *tenant, sandbox_spec_t *spec,
		       sandbox_image_t *out, hutch_err_t *err)
{
	image_service_t *svc = data;
	Hutch__V1__Image *img = NULL;
	int r = image_lookup(svc, tenant, spec->image, &img, err);
	if (r < 0)
		return r;
	char **layers = NULL;
	for (size_t i = 0; i < img->n_layers; i++)
		strv_push(&layers, xstrdup(img->layers[i]->digest));
	if (!layers) {
		protobuf_c_message_free_unpacked(&img->base, NULL);
		return hutch_err_set(err, EINVAL, "image `%s` has no layers", spec->image);
	}
	out->handle = hold_new(svc->store, image_pins(img, img->config_digest), layers);
	snprintf(out->digest, sizeof out->digest, "%s", img->digest);
	merge_config(spec, img->config);
	protobuf_c_message_free_unpacked(&img->base, NULL);
	return 0;
}

static int src_prepare(void *data, sandbox_image_t *img, hutch_err_t *err)
{
	image_service_t *svc = data;
	sandbox_hold_t *h = img->handle;
	if (!h)
		return hutch_err_set(err, ENOENT, "image %s is not in the store", img->digest);
	char **roots = NULL;
	for (char **l = h->layers; l && *l; l++) {
		int r = image_store_layer_check(svc->store, *l, false, err);
		if (r < 0) {
			strv_free(roots);
			return hutch_err_prefix(err, "image %s", img->digest);
		}
		strv_push(&roots, image_store_layer_root(svc->store, *l));
	}
	strv_free(img->layers);
	img->layers = roots;
	return 0;
}

/* A sandbox found running at startup: its image's content stays. */
static void src_adopt(void *data, const char *tenant, sandbox_image_t *img)
{
	image_service_t *svc = data;
	(void)tenant;
	if (img->handle || !digest_valid(img->digest))
		return;
	char *json;
	size_t len;
	hutch_err_t e = {0};
	if (image_store_blob_read(svc->store, img->digest, OCI_JSON_MAX, &json, &len, &e) < 0) {
		log_warn("images: a running sandbox's image %s: %s", img->digest, e.message);
		return;
	}
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	int r = oci_parse_manifest_or_index(json, len, &m, &idx, &is_index, &e);
	free(json);
	if (r < 0 || is_index) {
		if (r == 0)
			oci_index_free(&idx);
		log_warn("images: a running sandbox's image %s: unreadable manifest", img->digest);
		return;
	}
	char **pins = NULL, **layers = NULL;
	strv_push(&pins, xstrdup(img->digest));
	strv_push(&pins, xstrdup(m.config.digest));
	for (size_t i = 0; i < m.n_layers; i++) {
		strv_push(&pins, xstrdup(m.layers[i].digest));
		strv_push(&layers, xstrdup(m.layers[i].digest));
	}
	oci_manifest_free(&m);
	img->handle = hold_new(svc->store, pins, layers);
}

static void src_release(void *data, sandbox_image_t *img)
{
	image_service_t *svc = data;
	hold_free(svc->store, img->handle);
	img->handle = NULL;
	strv_free(img->layers);
	img->layers = NULL;
}

/* ---- lifetime ---- */

static void remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 300000, NULL, 0, &e) < 0)
		log_warn("images: remove %s: %s", path, e.message);
}

int image_service_new(const image_service_deps_t *deps, image_service_t **out, hutch_err_t *err)
{
	image_service_t *svc = xcalloc(1, sizeof *svc);
	svc->d = *deps;
	int r = image_config_load(deps->cfg, &svc->cfg, err);
	if (r < 0) {
		free(svc);
		return r;
	}
	svc->state_dir = xstrdup(deps->cfg->daemon.state_dir);
	svc->run_root = xasprintf("%s/builds", deps->cfg->daemon.run_dir);
	/* Build sandboxes of a daemon that ended mid-build were removed by
	 * the sandbox manager's recovery; their files here go too. */
	remove_tree(svc->run_root);
	if ((r = mkdir_p(svc->run_root, 0700, err)) < 0 ||
	    (r = image_store_open(svc->state_dir, &svc->store, err)) < 0)
		goto fail;
	svc->bdeps = (builder_deps_t){
		.store = svc->store,
		.sandbox = {.plugins = deps->plugins, .run_root = svc->run_root},
		.cfg = &svc->cfg,
		.state_dir = svc->state_dir,
	};
	if ((r = store_list(deps->store, IMAGE_KIND, NULL, pin_record, svc, err)) < 0)
		goto fail;
	/* The built-in image as a store image (its layer made once). Its pins
	 * come with it and stay. */
	if ((r = builder_builtin(&svc->bdeps, &svc->builtin, err)) < 0) {
		hutch_err_prefix(err, "the built-in image busybox");
		goto fail;
	}
	sandbox_image_source_t src = {
		.resolve = src_resolve,
		.prepare = src_prepare,
		.adopt = src_adopt,
		.release = src_release,
		.data = svc,
	};
	sandbox_mgr_set_image_source(deps->sandboxes, &src);
	*out = svc;
	return 0;
fail:
	image_service_free(svc);
	return r;
}

void image_service_free(image_service_t *svc)
{
	if (!svc)
		return;
	if (svc->builtin)
		protobuf_c_message_free_unpacked(&svc->builtin->base, NULL);
	image_store_free(svc->store);
	image_config_free(&svc->cfg);
	free(svc->run_root);
	free(svc->state_dir);
	free(svc);
}
