/* The environment every process of a sandbox starts with. */
#include "sandbox_priv.h"

#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

/* Defaults, then the spec's env, then the resolved secrets (which win). */
char **sandbox_env_build(const sandbox_spec_t *s, const char *hostname,
			char *const *secret_env, bool identity)
{
	char **env = NULL;
	strv_push(&env, xstrdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	strv_push(&env, xstrdup("HOME=/root"));
	strv_push(&env, xasprintf("HOSTNAME=%s", hostname));
	if (identity)
		strv_push(&env, xstrdup("HUTCH_IDENTITY_TOKEN_FILE=" IDENTITY_TOKEN_IN_SANDBOX));
	for (size_t i = 0; i < s->n_env; i++) {
		/* A user value replaces a default of the same key. */
		size_t kl = strlen(s->env[i].key);
		for (size_t k = 0; env[k]; k++) {
			if (strncmp(env[k], s->env[i].key, kl) == 0 && env[k][kl] == '=') {
				free(env[k]);
				size_t n = strv_len(env);
				memmove(&env[k], &env[k + 1], (n - k) * sizeof *env);
				break;
			}
		}
		strv_push(&env, xasprintf("%s=%s", s->env[i].key, s->env[i].value ? s->env[i].value : ""));
	}
	for (char *const *e = secret_env; e && *e; e++) {
		size_t kl = strcspn(*e, "=");
		for (size_t k = 0; env[k]; k++) {
			if (strncmp(env[k], *e, kl) == 0 && env[k][kl] == '=') {
				memset(env[k], 0, strlen(env[k]));
				free(env[k]);
				size_t n = strv_len(env);
				memmove(&env[k], &env[k + 1], (n - k) * sizeof *env);
				break;
			}
		}
		strv_push(&env, xstrdup(*e));
	}
	return env;
}
