#include "sandbox_spec.h"

#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static void wipe_free(char *s)
{
	if (s)
		memset(s, 0, strlen(s));
	free(s);
}

static void kv_free(sandbox_kv_t *kv, size_t n, bool secret)
{
	for (size_t i = 0; i < n; i++) {
		free(kv[i].key);
		if (secret)
			wipe_free(kv[i].value);
		else
			free(kv[i].value);
	}
	free(kv);
}

static void strs_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void sandbox_spec_strip_secrets(sandbox_spec_t *s)
{
	for (size_t i = 0; i < s->n_secrets; i++) {
		kv_free(s->secrets[i].values, s->secrets[i].n_values, true);
		s->secrets[i].values = NULL;
		s->secrets[i].n_values = 0;
	}
}

void sandbox_spec_free(sandbox_spec_t *s)
{
	if (!s)
		return;
	sandbox_spec_strip_secrets(s);
	for (size_t i = 0; i < s->n_secrets; i++) {
		free(s->secrets[i].name);
		free(s->secrets[i].source);
	}
	free(s->secrets);
	for (size_t i = 0; i < s->n_volumes; i++) {
		free(s->volumes[i].name);
		free(s->volumes[i].path);
		free(s->volumes[i].version);
	}
	free(s->volumes);
	kv_free(s->env, s->n_env, false);
	kv_free(s->labels, s->n_labels, false);
	free(s->ports);
	strs_free(s->network_policies, s->n_network_policies);
	strs_free(s->tunnels, s->n_tunnels);
	strs_free(s->command, s->n_command);
	free(s->image);
	free(s->name);
	free(s->workdir);
	free(s->gpu);
	free(s->identity_audience);
	free(s);
}

void sandbox_spec_env_add(sandbox_spec_t *s, const char *key, const char *value)
{
	s->env = xrealloc(s->env, (s->n_env + 1) * sizeof *s->env);
	s->env[s->n_env++] = (sandbox_kv_t){xstrdup(key), xstrdup(value ? value : "")};
}

void sandbox_str_set(char **dst, const char *src)
{
	free(*dst);
	*dst = src ? xstrdup(src) : NULL;
}
