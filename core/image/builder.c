/* An image build: the walk over the spec (keys, the cache, one step after
 * the other), the files the client uploads, the events, and the image
 * assembled at the end. The steps that run in sandboxes are in
 * build_steps.c, the base in build_bases.c. */
#include "builder.h"
#include "builder_priv.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "image_spec.h"
#include "log.h"
#include "oci.h"
#include "proc.h"
#include "strbuf.h"

#define TAIL_MAX 4096

int64_t builder_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool builder_cancelled(const bctx_t *c)
{
	return c->io->cancel && atomic_load(c->io->cancel);
}

void builder_remove_tree(const char *path)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", "--", path, NULL};
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 300000, NULL, 0, &e) < 0)
		log_warn("images: remove %s: %s", path, e.message);
}

void builder_pin(bctx_t *c, const char *digest)
{
	image_store_pin(c->d->store, digest);
	strv_push(&c->pinned, xstrdup(digest));
}

/* ---- events ---- */

void builder_emit_step(bctx_t *c, const step_info_t *s)
{
	Hutch__V1__BuildStepEvent st = HUTCH__V1__BUILD_STEP_EVENT__INIT;
	st.index = c->index;
	st.total = c->total;
	st.description = (char *)(s->description ? s->description : "");
	st.state = s->state;
	st.cache_key = (char *)(s->key ? s->key : "");
	st.layer_digest = (char *)(s->layer ? s->layer : "");
	st.layer_size = s->size;
	st.duration_ms = s->duration_ms;
	st.exit_code = s->exit_code;
	_cleanup_free_ char *tail = xstrdup(s->with_tail && c->tail.buf ? c->tail.buf : "");
	utf8_scrub(tail);
	st.output_tail = tail;
	_cleanup_free_ char *error = xstrdup(s->error ? s->error : "");
	utf8_scrub(error);
	st.error = error;
	Hutch__V1__BuildImageEvent ev = HUTCH__V1__BUILD_IMAGE_EVENT__INIT;
	ev.event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_STEP;
	ev.step = &st;
	c->io->emit(c->io->data, &ev);
}

void builder_on_output(void *data, int stream, const char *buf, size_t n)
{
	bctx_t *c = data;
	(void)stream;
	Hutch__V1__BuildLog log = HUTCH__V1__BUILD_LOG__INIT;
	log.index = c->index;
	log.data.data = (uint8_t *)buf;
	log.data.len = n;
	Hutch__V1__BuildImageEvent ev = HUTCH__V1__BUILD_IMAGE_EVENT__INIT;
	ev.event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_LOG;
	ev.log = &log;
	c->io->emit(c->io->data, &ev);
	/* The last TAIL_MAX bytes, for a failure's report. */
	sb_append_n(&c->tail, buf, n);
	if (c->tail.len > TAIL_MAX) {
		size_t drop = c->tail.len - TAIL_MAX;
		memmove(c->tail.buf, c->tail.buf + drop, TAIL_MAX);
		c->tail.len = TAIL_MAX;
		c->tail.buf[TAIL_MAX] = '\0';
	}
}

/* ---- the image as it grows ---- */

void builder_env_set(image_acc_t *a, const char *key, const char *value)
{
	size_t kl = strlen(key);
	for (size_t i = 0; a->env && a->env[i]; i++)
		if (strncmp(a->env[i], key, kl) == 0 && a->env[i][kl] == '=') {
			free(a->env[i]);
			a->env[i] = xasprintf("%s=%s", key, value);
			return;
		}
	strv_push(&a->env, xasprintf("%s=%s", key, value));
}

void builder_acc_add_layer(bctx_t *c, const char *digest, int64_t size, const char *created_by,
			  const char *key)
{
	image_acc_t *a = &c->acc;
	a->sizes = xrealloc(a->sizes, (a->n + 1) * sizeof *a->sizes);
	a->sizes[a->n] = size;
	strv_push(&a->layers, xstrdup(digest));
	strv_push(&a->created_by, xstrdup(created_by));
	strv_push(&a->cache_keys, xstrdup(key));
	a->n++;
}

static void acc_free(image_acc_t *a)
{
	strv_free(a->layers);
	free(a->sizes);
	strv_free(a->created_by);
	strv_free(a->cache_keys);
	strv_free(a->env);
	free(a->workdir);
	strv_free(a->entrypoint);
	strv_free(a->cmd);
	memset(a, 0, sizeof *a);
}

void builder_acc_config_from(image_acc_t *a, const Hutch__V1__ImageConfig *cfg)
{
	for (size_t i = 0; i < cfg->n_env; i++)
		builder_env_set(a, cfg->env[i]->key, cfg->env[i]->value ? cfg->env[i]->value : "");
	if (cfg->workdir && *cfg->workdir) {
		free(a->workdir);
		a->workdir = xstrdup(cfg->workdir);
	}
	strv_free(a->entrypoint);
	a->entrypoint = cfg->n_entrypoint ? strv_dup((const char *const *)cfg->entrypoint) : NULL;
	strv_free(a->cmd);
	a->cmd = cfg->n_cmd ? strv_dup((const char *const *)cfg->cmd) : NULL;
}

/* The image's environment as key/values (pointers into a->env, which must
 * stay unchanged meanwhile); n from *n. */
hutch_kv_t *builder_acc_env_kv(const image_acc_t *a, size_t *n, char ***scratch)
{
	size_t ne = strv_len(a->env);
	hutch_kv_t *kv = xcalloc(ne + 1, sizeof *kv);
	char **copy = strv_dup((const char *const *)a->env);
	for (size_t i = 0; i < ne; i++) {
		char *eq = strchr(copy[i], '=');
		*eq = '\0';
		kv[i] = (hutch_kv_t){copy[i], eq + 1};
	}
	*n = ne;
	*scratch = copy;
	return kv;
}

/* ---- the cache ---- */

/* A cache hit whose layers are all present and sound: they are pinned and
 * added to the image. false: a miss (entries with missing or corrupted
 * layers are dropped). */
bool builder_cache_take(bctx_t *c, const char *scope, const char *key, const char *created_by,
		       bool need_config, image_cache_entry_t *e)
{
	if (image_store_cache_get(c->d->store, scope, key, e) < 0)
		return false;
	/* A registry base is its layers and its config (an entry without one
	 * came with an import and cannot stand for the pull). */
	if (need_config && !e->config[0])
		return false;
	for (size_t i = 0; i < e->n_layers; i++) {
		builder_pin(c, e->layers[i]);
		hutch_err_t err = {0};
		if (image_store_layer_check(c->d->store, e->layers[i], false, &err) < 0) {
			log_warn("images: cache entry %s: %s", key, err.message);
			image_store_cache_drop(c->d->store, scope, key);
			return false;
		}
	}
	if (e->config[0]) {
		builder_pin(c, e->config);
		if (!image_store_blob_exists(c->d->store, e->config)) {
			image_store_cache_drop(c->d->store, scope, key);
			return false;
		}
	}
	for (size_t i = 0; i < e->n_layers; i++)
		builder_acc_add_layer(c, e->layers[i], image_store_layer_size(c->d->store, e->layers[i]),
			      created_by, key);
	return true;
}

void builder_chain_after(bctx_t *c, const char *key, const image_cache_entry_t *e)
{
	char *layers[IMAGE_CACHE_MAX_LAYERS];
	for (size_t i = 0; i < e->n_layers; i++)
		layers[i] = (char *)e->layers[i];
	image_chain(key, layers, e->n_layers, c->chain);
}

/* ---- steps ---- */

static void apply_config_step(bctx_t *c, const Hutch__V1__ImageStep *s)
{
	image_acc_t *a = &c->acc;
	switch (s->op_case) {
	case HUTCH__V1__IMAGE_STEP__OP_ENV:
		for (size_t i = 0; i < s->env->n_vars; i++)
			builder_env_set(a, s->env->vars[i]->key, s->env->vars[i]->value ? s->env->vars[i]->value : "");
		break;
	case HUTCH__V1__IMAGE_STEP__OP_WORKDIR:
		free(a->workdir);
		a->workdir = xstrdup(s->workdir);
		break;
	case HUTCH__V1__IMAGE_STEP__OP_ENTRYPOINT:
		strv_free(a->entrypoint);
		a->entrypoint = strv_dup((const char *const *)s->entrypoint->argv);
		strv_free(a->cmd); /* as a Dockerfile ENTRYPOINT resets CMD */
		a->cmd = NULL;
		break;
	default:
		break;
	}
}

static int do_step(bctx_t *c, const Hutch__V1__ImageStep *s, hutch_err_t *err)
{
	char key[DIGEST_STR_MAX];
	image_step_key(c->chain, s, key);
	_cleanup_free_ char *desc = image_step_describe(s);
	int64_t t0 = builder_now_ms();
	if (!image_step_has_layer(s)) {
		apply_config_step(c, s);
		image_chain(key, NULL, 0, c->chain);
		builder_emit_step(c, &(step_info_t){.state = c->built_any ? HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT
								: HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED,
					   .description = desc, .key = key});
		return 0;
	}
	const char *scope = c->req->tenant;
	bool waited;
	/* An identical step being built by another build: wait for it, then
	 * take its result from the cache. */
	if (image_store_key_busy(c->d->store, key))
		builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_WAITING,
					   .description = desc, .key = key});
	if (image_store_key_lock(c->d->store, key, c->io->cancel, &waited) < 0)
		return hutch_err_set(err, ECANCELED, "cancelled");
	image_cache_entry_t e;
	int r = 0;
	if (!c->req->no_cache && builder_cache_take(c, scope, key, desc, false, &e)) {
		image_store_key_unlock(c->d->store, key);
		builder_chain_after(c, key, &e);
		builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_CACHED,
					   .description = desc, .key = key,
					   .layer = e.n_layers ? e.layers[0] : NULL,
					   .size = e.n_layers ? image_store_layer_size(c->d->store, e.layers[0]) : 0,
					   .duration_ms = builder_now_ms() - t0});
		return 0;
	}
	builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_RUNNING,
				   .description = desc, .key = key});
	sb_reset(&c->tail);
	memset(&e, 0, sizeof e);
	int code = 0;
	if (image_step_runs(s))
		r = build_step_run(c, s, &e, &code, err);
	else
		r = build_step_add(c, s, &e, &code, err);
	if (r == 0 && builder_cancelled(c))
		r = hutch_err_set(err, ECANCELED, "cancelled");
	if (r == 0)
		r = image_store_cache_put(c->d->store, scope, key, &e, err);
	image_store_key_unlock(c->d->store, key);
	if (r < 0) {
		builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_FAILED,
					   .description = desc, .key = key, .duration_ms = builder_now_ms() - t0,
					   .exit_code = code, .error = err->message, .with_tail = true});
		return r;
	}
	c->built_any = true;
	int64_t size = e.n_layers ? image_store_layer_size(c->d->store, e.layers[0]) : 0;
	if (e.n_layers)
		builder_acc_add_layer(c, e.layers[0], size, desc, key);
	builder_chain_after(c, key, &e);
	builder_emit_step(c, &(step_info_t){.state = HUTCH__V1__BUILD_STEP_STATE__BUILD_STEP_STATE_BUILT,
				   .description = desc, .key = key, .layer = e.n_layers ? e.layers[0] : NULL,
				   .size = size, .duration_ms = builder_now_ms() - t0});
	return 0;
}

/* ---- files from the client ---- */

/* The files the steps from `from` on add and the store lacks. */
static char **missing_files(bctx_t *c, size_t from)
{
	char **need = NULL;
	const Hutch__V1__ImageSpec *spec = c->req->spec;
	for (size_t i = from; i < spec->n_steps; i++) {
		const Hutch__V1__ImageStep *s = spec->steps[i];
		const Hutch__V1__LocalFile *const *files = NULL;
		size_t n = 0;
		const Hutch__V1__LocalFile *one;
		if (s->op_case == HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_FILE) {
			one = s->add_local_file->file;
			files = &one;
			n = 1;
		} else if (s->op_case == HUTCH__V1__IMAGE_STEP__OP_ADD_LOCAL_DIR) {
			files = (const Hutch__V1__LocalFile *const *)s->add_local_dir->entries;
			n = s->add_local_dir->n_entries;
		}
		for (size_t k = 0; k < n; k++) {
			const char *type = files[k]->type && *files[k]->type ? files[k]->type : "file";
			if (strcmp(type, "file") != 0)
				continue;
			if (image_store_file_exists(c->d->store, files[k]->digest)) {
				/* Kept from collection while this build may use it. */
				_cleanup_free_ char *p = image_store_file_path(c->d->store, files[k]->digest);
				utimensat(AT_FDCWD, p, NULL, 0);
				continue;
			}
			bool dup = false;
			for (char **d = need; d && *d && !dup; d++)
				dup = strcmp(*d, files[k]->digest) == 0;
			if (!dup)
				strv_push(&need, xstrdup(files[k]->digest));
		}
	}
	return need;
}

/* The first step (index into spec->steps) the cache cannot answer, found
 * by walking the keys without building anything. Base misses: 0. */
static size_t first_miss(bctx_t *c)
{
	const Hutch__V1__ImageSpec *spec = c->req->spec;
	if (c->req->no_cache)
		return 0;
	char chain[DIGEST_STR_MAX];
	snprintf(chain, sizeof chain, "%s", c->chain);
	for (size_t i = 0; i < spec->n_steps; i++) {
		char key[DIGEST_STR_MAX];
		image_step_key(chain, spec->steps[i], key);
		image_cache_entry_t e = {0};
		if (image_step_has_layer(spec->steps[i]) &&
		    image_store_cache_get(c->d->store, c->req->tenant, key, &e) < 0)
			return i;
		char *layers[IMAGE_CACHE_MAX_LAYERS];
		for (size_t k = 0; k < e.n_layers; k++)
			layers[k] = e.layers[k];
		image_chain(key, layers, e.n_layers, chain);
	}
	return spec->n_steps;
}

/* Takes the client's uploads into files/, checking each digest. */
static int receive_files(bctx_t *c, char **need, hutch_err_t *err)
{
	Hutch__V1__NeedFiles nf = HUTCH__V1__NEED_FILES__INIT;
	nf.digests = need;
	nf.n_digests = strv_len(need);
	Hutch__V1__BuildImageEvent ev = HUTCH__V1__BUILD_IMAGE_EVENT__INIT;
	ev.event_case = HUTCH__V1__BUILD_IMAGE_EVENT__EVENT_NEED_FILES;
	ev.need_files = &nf;
	c->io->emit(c->io->data, &ev);

	int r = 0;
	int fd = -1;
	char cur[DIGEST_STR_MAX] = "";
	_cleanup_free_ char *tmp = NULL;
	digest_ctx_t *h = NULL;
	for (;;) {
		build_chunk_t ch;
		int k = c->io->file_next(c->io->data, &ch);
		if (k < 0) {
			r = hutch_err_set(err, ECANCELED, "cancelled while receiving files");
			break;
		}
		if (k == 0)
			break;
		if (r < 0) {
			free(ch.data); /* draining after an error */
			continue;
		}
		bool wanted = false;
		for (char **d = need; d && *d; d++)
			wanted |= strcmp(*d, ch.digest) == 0;
		if (!wanted) {
			r = hutch_err_set(err, EINVAL, "file %.80s was not asked for", ch.digest);
		} else if (fd < 0) {
			snprintf(cur, sizeof cur, "%s", ch.digest);
			free(tmp);
			tmp = image_store_tmp_path(c->d->store, "upload");
			fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0)
				r = hutch_err_sys(err, errno, "create %s", tmp);
			h = digest_new();
		} else if (strcmp(cur, ch.digest) != 0) {
			r = hutch_err_set(err, EINVAL, "chunks of %s came before %s was complete", ch.digest, cur);
		}
		if (r == 0) {
			digest_update(h, ch.data, ch.len);
			for (size_t off = 0; off < ch.len && r == 0;) {
				ssize_t w = write(fd, (char *)ch.data + off, ch.len - off);
				if (w < 0 && errno == EINTR)
					continue;
				if (w < 0)
					r = hutch_err_sys(err, errno, "write %s", tmp);
				else
					off += (size_t)w;
			}
		}
		if (r == 0 && ch.last) {
			close(fd);
			fd = -1;
			char got[DIGEST_STR_MAX];
			digest_final(h, got);
			h = NULL;
			_cleanup_free_ char *dst = image_store_file_path(c->d->store, cur);
			if (strcmp(got, cur) != 0)
				r = hutch_err_set(err, EINVAL, "the content sent for %s hashes to %s", cur, got);
			else if (rename(tmp, dst) < 0)
				r = hutch_err_sys(err, errno, "rename %s", dst);
		}
		free(ch.data);
	}
	if (fd >= 0)
		close(fd);
	if (h)
		digest_free(h);
	if (tmp)
		unlink(tmp);
	for (char **d = need; r == 0 && d && *d; d++)
		if (!image_store_file_exists(c->d->store, *d))
			r = hutch_err_set(err, EINVAL, "file %s was asked for and not sent", *d);
	return r;
}

/* ---- assembling the image ---- */

static Hutch__V1__ImageSpec *spec_for_record(const Hutch__V1__ImageSpec *spec)
{
	size_t n = protobuf_c_message_get_packed_size(&spec->base);
	uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(&spec->base, buf);
	Hutch__V1__ImageSpec *copy = hutch__v1__image_spec__unpack(NULL, n, buf);
	free(buf);
	Hutch__V1__ImageBase *b = copy ? copy->source : NULL;
	if (b && b->kind_case == HUTCH__V1__IMAGE_BASE__KIND_REGISTRY) {
		/* Credentials are used, never kept. */
		if (b->registry->password && b->registry->password != protobuf_c_empty_string) {
			memset(b->registry->password, 0, strlen(b->registry->password));
			free(b->registry->password);
		}
		b->registry->password = (char *)protobuf_c_empty_string;
	}
	return copy;
}

static int assemble(bctx_t *c, Hutch__V1__Image **out, hutch_err_t *err)
{
	image_acc_t *a = &c->acc;
	Hutch__V1__ImageConfig cfg = HUTCH__V1__IMAGE_CONFIG__INIT;
	size_t ne;
	char **scratch;
	hutch_kv_t *kv = builder_acc_env_kv(a, &ne, &scratch);
	Hutch__V1__KeyValue *kvs = xcalloc(ne + 1, sizeof *kvs);
	Hutch__V1__KeyValue **kvp = xcalloc(ne + 1, sizeof *kvp);
	for (size_t i = 0; i < ne; i++) {
		hutch__v1__key_value__init(&kvs[i]);
		kvs[i].key = (char *)kv[i].key;
		kvs[i].value = (char *)kv[i].value;
		kvp[i] = &kvs[i];
	}
	cfg.env = kvp;
	cfg.n_env = ne;
	cfg.workdir = a->workdir ? a->workdir : (char *)"";
	cfg.entrypoint = a->entrypoint;
	cfg.n_entrypoint = strv_len(a->entrypoint);
	cfg.cmd = a->cmd;
	cfg.n_cmd = strv_len(a->cmd);
	_cleanup_free_ char *config_json = oci_config_write(&cfg, a->layers, a->n, a->created_by);
	char config_digest[DIGEST_STR_MAX], manifest_digest[DIGEST_STR_MAX];
	/* Pinned before they exist, so a collection running meanwhile never
	 * takes them. */
	digest_buf(config_json, strlen(config_json), config_digest);
	builder_pin(c, config_digest);
	int r = image_store_blob_put(c->d->store, config_json, strlen(config_json), config_digest, err);
	_cleanup_free_ char *manifest = NULL;
	if (r == 0) {
		manifest = oci_manifest_write(config_digest, (int64_t)strlen(config_json), a->layers, a->sizes,
					      a->cache_keys, a->n);
		digest_buf(manifest, strlen(manifest), manifest_digest);
		builder_pin(c, manifest_digest);
		r = image_store_blob_put(c->d->store, manifest, strlen(manifest), manifest_digest, err);
	}
	if (r == 0) {
		Hutch__V1__Image img = HUTCH__V1__IMAGE__INIT;
		img.name = (char *)c->req->name;
		img.tenant = (char *)c->req->tenant;
		img.digest = manifest_digest;
		img.config_digest = config_digest;
		img.config = &cfg;
		img.spec = spec_for_record(c->req->spec);
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		img.created_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		Hutch__V1__ImageLayer *layers = xcalloc(a->n + 1, sizeof *layers);
		Hutch__V1__ImageLayer **lp = xcalloc(a->n + 1, sizeof *lp);
		for (size_t i = 0; i < a->n; i++) {
			hutch__v1__image_layer__init(&layers[i]);
			layers[i].digest = a->layers[i];
			layers[i].size = a->sizes[i];
			layers[i].created_by = a->created_by[i];
			layers[i].cache_key = a->cache_keys[i];
			lp[i] = &layers[i];
			img.size_bytes += a->sizes[i] > 0 ? a->sizes[i] : 0;
		}
		img.layers = lp;
		img.n_layers = a->n;
		size_t n = protobuf_c_message_get_packed_size(&img.base);
		uint8_t *buf = xmalloc(n ? n : 1);
		protobuf_c_message_pack(&img.base, buf);
		*out = hutch__v1__image__unpack(NULL, n, buf);
		free(buf);
		if (img.spec)
			protobuf_c_message_free_unpacked(&img.spec->base, NULL);
		free(layers);
		free(lp);
		if (!*out)
			r = hutch_err_set(err, ENOMEM, "out of memory");
	}
	free(kvs);
	free(kvp);
	free(kv);
	strv_free(scratch);
	return r;
}

char **image_pins(const Hutch__V1__Image *img, const char *config_digest)
{
	char **v = NULL;
	for (size_t i = 0; i < img->n_layers; i++) {
		bool dup = false;
		for (size_t k = 0; k < i && !dup; k++)
			dup = strcmp(img->layers[k]->digest, img->layers[i]->digest) == 0;
		if (!dup)
			strv_push(&v, xstrdup(img->layers[i]->digest));
	}
	if (config_digest && *config_digest)
		strv_push(&v, xstrdup(config_digest));
	strv_push(&v, xstrdup(img->digest));
	return v;
}

/* ---- the build ---- */

int builder_run(const builder_deps_t *deps, const build_req_t *req, const build_io_t *io,
		Hutch__V1__Image **out, hutch_err_t *err)
{
	bctx_t c = {.d = deps, .req = req, .io = io};
	c.total = (uint32_t)req->spec->n_steps + 1;
	int r;
	/* Step 1, the base; then what the client must upload (only files
	 * of steps the cache cannot answer, and only those not already
	 * here); then the steps. */
	c.index = 1;
	r = build_base(&c, err);
	if (r == 0) {
		char **need = missing_files(&c, first_miss(&c));
		r = receive_files(&c, need, err);
		strv_free(need);
	}
	for (size_t i = 0; r == 0 && i < req->spec->n_steps; i++) {
		c.index = (uint32_t)i + 2;
		if (builder_cancelled(&c)) {
			r = hutch_err_set(err, ECANCELED, "cancelled");
			break;
		}
		r = do_step(&c, req->spec->steps[i], err);
		if (r < 0)
			hutch_err_prefix(err, "step %u/%u (%s)", c.index, c.total,
					 image_step_op_name(req->spec->steps[i]));
	}
	if (r == 0)
		r = assemble(&c, out, err);
	/* What stays pinned is what the image holds; the caller unpins it
	 * once the image is recorded. Everything else is let go now. */
	if (r == 0) {
		char **keep = image_pins(*out, (*out)->config_digest);
		for (char **p = c.pinned; p && *p; p++) {
			bool k = false;
			for (char **q = keep; q && *q && !k; q++)
				if (strcmp(*p, *q) == 0) {
					k = true;
					**q = '\0'; /* one pin per digest stays */
				}
			if (!k)
				image_store_unpin(deps->store, *p);
		}
		strv_free(keep);
	} else {
		for (char **p = c.pinned; p && *p; p++)
			image_store_unpin(deps->store, *p);
	}
	strv_free(c.pinned);
	sb_free(&c.tail);
	acc_free(&c.acc);
	return r;
}

static void null_emit(void *data, const Hutch__V1__BuildImageEvent *ev)
{
	(void)data;
	(void)ev;
}

static int null_files(void *data, build_chunk_t *out)
{
	(void)data;
	(void)out;
	return 0;
}

int builder_builtin(const builder_deps_t *deps, Hutch__V1__Image **out, hutch_err_t *err)
{
	Hutch__V1__BusyboxBase bb = HUTCH__V1__BUSYBOX_BASE__INIT;
	Hutch__V1__ImageBase base = HUTCH__V1__IMAGE_BASE__INIT;
	base.kind_case = HUTCH__V1__IMAGE_BASE__KIND_BUSYBOX;
	base.busybox = &bb;
	Hutch__V1__ImageSpec spec = HUTCH__V1__IMAGE_SPEC__INIT;
	spec.source = &base;
	build_req_t req = {.tenant = NULL, .spec = &spec, .name = "busybox"};
	build_io_t io = {.emit = null_emit, .file_next = null_files};
	return builder_run(deps, &req, &io, out, err);
}
