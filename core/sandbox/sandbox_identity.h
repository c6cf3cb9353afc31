/*
 * sandbox_identity.h: a sandbox's workload identity as hutchd delivers it.
 *
 * The identity plugin signs; this file decides what a sandbox gets and
 * where: the token file <run_dir>/identity/token, bind-mounted read-only
 * at /run/hutch/identity (so a renewal, written beside it and renamed over
 * it, is seen at once and never half-written), renewed at two thirds of
 * its lifetime; and tokens for other audiences on request (the metadata
 * endpoint). The subject is always the sandbox the request came from: a
 * sandbox never names whose token it wants.
 *
 * Every function here calls the plugin and so runs on the pool.
 */
#ifndef HUTCH_SANDBOX_IDENTITY_H
#define HUTCH_SANDBOX_IDENTITY_H

#include <stdint.h>

#include <hutch/plugin.h>

#include "plugin_set.h"

#define IDENTITY_DIR_IN_SANDBOX "/run/hutch/identity"
#define IDENTITY_TOKEN_IN_SANDBOX IDENTITY_DIR_IN_SANDBOX "/token"
#define IDENTITY_TOKEN_MAX 8192

typedef struct sandbox_who {
	const char *tenant;
	const char *id;
	const char *name;         /* may be NULL */
	const char *image_digest; /* may be NULL */
	const char *audience;     /* its default audience; NULL: the plugin's */
} sandbox_who_t;

/* A token for who and audience (NULL/"": the sandbox's default). *token is
 * malloc'ed; wipe and free it. */
int identity_issue(plugin_t *idp, const sandbox_who_t *who, const char *audience, char **token,
		   int64_t *expires_unix, hutch_err_t *err);

/* Issues and writes dir/token (0644) atomically; makes dir (0755). */
int identity_write_file(plugin_t *idp, const char *dir, const sandbox_who_t *who,
			const char *audience, int64_t *expires_unix, hutch_err_t *err);

/* When to renew a token issued now that expires at expires_unix (ms). */
int64_t identity_renew_at_ms(int64_t now_ms, int64_t expires_unix);

#endif
