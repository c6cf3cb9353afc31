/* Step 1 of a build, the base: busybox (the built-in root as a layer),
 * debian_slim (debian.c), a registry pull (registry.c) or an image in the
 * store; looked up in the cache first (a base hutchd builds from public
 * sources is shared by every tenant), built or pulled on a miss. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "builder_priv.h"
#include "cleanup.h"
#include "debian.h"
#include "image_builtin.h"
#include "image_spec.h"
#include "log.h"
#include "oci.h"
#include "proc.h"
#include "registry.h"

/* ---- bases ---- */

static int busybox_layer(bctx_t *c, const char *key, const char *desc, image_cache_entry_t *e,
			 hutch_err_t *err)
{
	(void)desc;
	_cleanup_free_ char *root = NULL;
	int r = image_builtin_layer(c->d->state_dir, "busybox", &root, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *copy = image_store_tmp_dir(c->d->store, "busybox", err);
	if (!copy)
		return -err->code;
	_cleanup_free_ char *src = xasprintf("%s/.", root);
	const char *argv[] = {"cp", "-a", "--", src, copy, NULL};
	if ((r = proc_run_argv(argv, 120000, NULL, 0, err)) < 0) {
		builder_remove_tree(copy);
		return r;
	}
	int64_t size;
	if ((r = image_store_layer_from_dir(c->d->store, copy, e->layers[0], &size, err)) < 0) {
		builder_remove_tree(copy);
		return r;
	}
	strv_push(&c->pinned, xstrdup(e->layers[0]));
	e->n_layers = 1;
	(void)key;
	return 0;
}

static int debian_layer(bctx_t *c, const char *suite, image_cache_entry_t *e, hutch_err_t *err)
{
	debian_ctx_t dc = {
		.store = c->d->store,
		.sandbox = &c->d->sandbox,
		.cfg = c->d->cfg,
		.tenant = c->req->tenant,
		.on_output = builder_on_output,
		.data = c,
		.cancel = c->io->cancel,
	};
	_cleanup_free_ char *root = NULL;
	int r = debian_make_root(&dc, suite, &root, err);
	if (r < 0)
		return r;
	int64_t size, t0 = builder_now_ms();
	if ((r = image_store_layer_from_dir(c->d->store, root, e->layers[0], &size, err)) < 0) {
		builder_remove_tree(root);
		return r;
	}
	char line[160];
	int n = snprintf(line, sizeof line, "layer %.19s (%lld bytes) made in %.1fs\n", e->layers[0],
			 (long long)size, (double)(builder_now_ms() - t0) / 1000);
	builder_on_output(c, 1, line, (size_t)n);
	strv_push(&c->pinned, xstrdup(e->layers[0]));
	e->n_layers = 1;
	return 0;
}

/* The base from an image in the store (by manifest digest). */
static int image_base(bctx_t *c, const char *manifest, const char *desc, hutch_err_t *err)
{
	char *json;
	size_t len;
	int r = image_store_blob_read(c->d->store, manifest, OCI_JSON_MAX, &json, &len, err);
	if (r < 0)
		return r;
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	r = oci_parse_manifest_or_index(json, len, &m, &idx, &is_index, err);
	free(json);
	if (r < 0)
		return hutch_err_prefix(err, "image %s", manifest);
	if (is_index) {
		oci_index_free(&idx);
		return hutch_err_set(err, EINVAL, "image %s is an index, not a manifest", manifest);
	}
	oci_config_t cfg = {0};
	if ((r = image_store_blob_read(c->d->store, m.config.digest, OCI_JSON_MAX, &json, &len, err)) == 0) {
		r = oci_config_parse(json, len, &cfg, err);
		free(json);
	}
	for (size_t i = 0; i < m.n_layers && r == 0; i++) {
		builder_pin(c, m.layers[i].digest);
		if ((r = image_store_layer_check(c->d->store, m.layers[i].digest, false, err)) < 0)
			break;
		builder_acc_add_layer(c, m.layers[i].digest, image_store_layer_size(c->d->store, m.layers[i].digest),
			      desc, m.layers[i].cache_key ? m.layers[i].cache_key : "");
	}
	if (r == 0)
		builder_acc_config_from(&c->acc, cfg.config);
	oci_config_free(&cfg);
	oci_manifest_free(&m);
	return r;
}

int build_base(bctx_t *c, hutch_err_t *err)
{
	const Hutch__V1__ImageBase *b = c->req->spec->source;
	_cleanup_free_ char *desc = image_base_describe(b);
	_cleanup_free_ char *resolved = NULL;
	const char *suite = NULL, *python = NULL;
	registry_ref_t ref = {0};
	int r = 0;
	int64_t t0 = builder_now_ms();
	builder_env_set(&c->acc, "PATH", DEFAULT_PATH);
	switch (b->kind_case) {
	case HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX:
		resolved = xstrdup("{\"base\":\"busybox\",\"v\":1}");
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_DEBIAN_SLIM:
		if ((r = debian_pick(c->d->cfg, b->debian_slim->python_version, &suite, &python, err)) < 0)
			goto fail;
		resolved = debian_resolved(c->d->cfg, suite, python);
		builder_env_set(&c->acc, "LANG", "C.UTF-8");
		free(desc);
		desc = xasprintf("base: debian_slim (Debian %s, Python %s)", suite, python);
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_REGISTRY:
		if ((r = registry_resolve(c->d->cfg, b->registry, &ref, err)) < 0)
			goto fail;
		resolved = xasprintf("{\"base\":\"registry\",\"ref\":\"%s\",\"manifest\":\"%s\"}", ref.canonical,
				     ref.manifest_digest);
		break;
	case HUTCH__V1__IMAGE_BASE__KIND_IMAGE: {
		char key[DIGEST_STR_MAX];
		resolved = xasprintf("{\"base\":\"image\",\"manifest\":\"%s\"}", c->req->base_manifest);
		image_base_key(resolved, key);
		if ((r = image_base(c, c->req->base_manifest, desc, err)) < 0)
			goto fail;
		image_chain(key, c->acc.layers, c->acc.n, c->chain);
		builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED,
					   .description = desc, .key = key, .duration_ms = builder_now_ms() - t0});
		return 0;
	}
	default:
		r = hutch_err_set(err, EINVAL, "no base");
		goto fail;
	}

	char key[DIGEST_STR_MAX];
	image_base_key(resolved, key);
	/* Bases hutchd builds from public sources are shared by every tenant;
	 * registry pulls (maybe private, maybe with credentials) are not. A
	 * tenant's own scope is asked first (an imported base lands there). */
	const char *scope = b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_REGISTRY ? c->req->tenant : NULL;
	image_cache_entry_t e;
	bool waited;
	if (image_store_key_busy(c->d->store, key))
		builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_WAITING,
					   .description = desc, .key = key});
	if (image_store_key_lock(c->d->store, key, c->io->cancel, &waited) < 0) {
		r = hutch_err_set(err, ECANCELED, "cancelled");
		goto fail;
	}
	bool need_config = b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_REGISTRY;
	bool hit = builder_cache_take(c, c->req->tenant, key, desc, need_config, &e) ||
		   (scope == NULL && builder_cache_take(c, NULL, key, desc, need_config, &e));
	if (!hit) {
		builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_RUNNING,
					   .description = desc, .key = key});
		memset(&e, 0, sizeof e);
		if (b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX)
			r = busybox_layer(c, key, desc, &e, err);
		else if (b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_DEBIAN_SLIM)
			r = debian_layer(c, suite, &e, err);
		else
			r = registry_pull(c->d->cfg, c->d->store, b->registry, &ref, &e, &c->pinned, builder_on_output, c,
					  c->io->cancel, err);
		if (r == 0 && builder_cancelled(c))
			r = hutch_err_set(err, ECANCELED, "cancelled");
		if (r == 0)
			r = image_store_cache_put(c->d->store, scope, key, &e, err);
		image_store_key_unlock(c->d->store, key);
		if (r < 0)
			goto fail;
		c->built_any = true;
		for (size_t i = 0; i < e.n_layers; i++)
			builder_acc_add_layer(c, e.layers[i], image_store_layer_size(c->d->store, e.layers[i]), desc, key);
	} else {
		image_store_key_unlock(c->d->store, key);
	}
	if (e.config[0]) {
		char *json;
		size_t len;
		oci_config_t cfg;
		if ((r = image_store_blob_read(c->d->store, e.config, OCI_JSON_MAX, &json, &len, err)) < 0)
			goto fail;
		r = oci_config_parse(json, len, &cfg, err);
		free(json);
		if (r < 0)
			goto fail;
		builder_acc_config_from(&c->acc, cfg.config);
		oci_config_free(&cfg);
	}
	builder_chain_after(c, key, &e);
	registry_ref_free(&ref);
	int64_t size = 0;
	for (size_t i = 0; i < e.n_layers; i++)
		size += image_store_layer_size(c->d->store, e.layers[i]);
	builder_emit_step(c, &(step_info_t){.state = hit ? HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED
						: HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT,
				   .description = desc, .key = key, .layer = e.n_layers ? e.layers[e.n_layers - 1] : NULL,
				   .size = size, .duration_ms = builder_now_ms() - t0});
	return 0;
fail:
	registry_ref_free(&ref);
	builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_FAILED,
				   .description = desc, .duration_ms = builder_now_ms() - t0, .error = err->message,
				   .with_tail = true});
	return r;
}

