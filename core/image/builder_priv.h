/*
 * builder_priv.h: what the parts of one image build share: the build's
 * context (the image as it grows, the pins it took, the step being
 * worked on), its events, and the cache. builder.c walks the spec;
 * build_steps.c runs the steps that need a build sandbox; build_bases.c
 * makes or finds the base. Not for anything outside the builder.
 */
#ifndef HUTCH_BUILDER_PRIV_H
#define HUTCH_BUILDER_PRIV_H

#include "builder.h"
#include "strbuf.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

/* The image as it grows: layers and config. */
typedef struct image_acc {
	char **layers;       /* digests, lowest first */
	int64_t *sizes;
	char **created_by;
	char **cache_keys;
	size_t n;
	char **env;          /* "K=V" */
	char *workdir;
	char **entrypoint;
	char **cmd;
} image_acc_t;

typedef struct bctx {
	const builder_deps_t *d;
	const build_req_t *req;
	const build_io_t *io;
	image_acc_t acc;
	char **pinned;       /* every digest this build pinned */
	uint32_t total;
	uint32_t index;      /* the step being worked on, 1-based */
	bool built_any;
	strbuf_t tail;       /* the current step's last output */
	char chain[DIGEST_STR_MAX];
} bctx_t;

typedef struct step_info {
	Hutch__V1__BuildStepState state;
	const char *description;
	const char *key;
	const char *layer;
	int64_t size;
	int64_t duration_ms;
	int exit_code;
	const char *error;
	bool with_tail;
} step_info_t;

int64_t builder_now_ms(void);
bool builder_cancelled(const bctx_t *c);
void builder_remove_tree(const char *path);
/* Pins digest for the build (let go at its end, or kept by its image). */
void builder_pin(bctx_t *c, const char *digest);
/* A step event for the client, about c->index. */
void builder_emit_step(bctx_t *c, const step_info_t *s);
/* Output of the current step: a log event, and its tail kept (build_output_cb). */
void builder_on_output(void *data, int stream, const char *buf, size_t n);

void builder_env_set(image_acc_t *a, const char *key, const char *value);
void builder_acc_add_layer(bctx_t *c, const char *digest, int64_t size, const char *created_by,
			   const char *key);
void builder_acc_config_from(image_acc_t *a, const Hutch__V1__ImageConfig *cfg);
/* The image's environment as key/values (pointers into *scratch, which the
 * caller frees with strv_free, as it frees the array). */
hutch_kv_t *builder_acc_env_kv(const image_acc_t *a, size_t *n, char ***scratch);

/* A cache hit whose layers are present and sound (pinned, added to the
 * image); false: a miss. need_config: a hit must carry a config. */
bool builder_cache_take(bctx_t *c, const char *scope, const char *key, const char *created_by,
			bool need_config, image_cache_entry_t *e);
/* The chain digest after a step of key that made e's layers. */
void builder_chain_after(bctx_t *c, const char *key, const image_cache_entry_t *e);

/* build_steps.c: runs a run_commands / apt_install / pip_install step, or
 * an add_local_file / add_local_dir step, in a build sandbox on the image
 * so far; e gets the layer it made (none if it wrote nothing), *code the
 * exit code of a failed command. */
int build_step_run(bctx_t *c, const Hutch__V1__ImageStep *s, image_cache_entry_t *e, int *code,
		   hutch_err_t *err);
int build_step_add(bctx_t *c, const Hutch__V1__ImageStep *s, image_cache_entry_t *e, int *code,
		   hutch_err_t *err);

/* build_bases.c: step 1, the base (cached, built or pulled), with its
 * events; c->chain is set after it. */
int build_base(bctx_t *c, hutch_err_t *err);

#endif
