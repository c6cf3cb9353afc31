#include "sandbox_secrets.h"

#include <stdlib.h>

#include "strbuf.h"

/* The store resolves protobuf references: a shallow copy of the domain's,
 * pointing at its strings (the values are never copied). */
static int resolve(void *data, const char *tenant, const sandbox_secret_ref_t *refs, size_t n,
		   char ***env, hutch_err_t *err)
{
	Hutch__V1__SecretRef *pb = xcalloc(n + 1, sizeof *pb);
	Hutch__V1__SecretRef **ptrs = xcalloc(n + 1, sizeof *ptrs);
	size_t nv = 0;
	for (size_t i = 0; i < n; i++)
		nv += refs[i].n_values;
	Hutch__V1__KeyValue *kv = xcalloc(nv + 1, sizeof *kv);
	Hutch__V1__KeyValue **kvp = xcalloc(nv + 1, sizeof *kvp);
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		hutch__v1__secret_ref__init(&pb[i]);
		pb[i].name = refs[i].name;
		pb[i].source = refs[i].source;
		pb[i].values = &kvp[k];
		pb[i].n_values = refs[i].n_values;
		for (size_t v = 0; v < refs[i].n_values; v++, k++) {
			hutch__v1__key_value__init(&kv[k]);
			kv[k].key = refs[i].values[v].key;
			kv[k].value = refs[i].values[v].value;
			kvp[k] = &kv[k];
		}
		ptrs[i] = &pb[i];
	}
	int r = secrets_resolve(data, tenant, ptrs, n, env, err);
	free(kvp);
	free(kv);
	free(ptrs);
	free(pb);
	return r;
}

static int keep(void *data, const char *tenant, const char *sandbox_id, char *const *env,
		hutch_err_t *err)
{
	return secrets_keep_for_sandbox(data, tenant, sandbox_id, env, err);
}

static int load(void *data, const char *sandbox_id, char ***env, hutch_err_t *err)
{
	return secrets_load_for_sandbox(data, sandbox_id, env, err);
}

static void forget(void *data, const char *sandbox_id)
{
	secrets_forget_sandbox(data, sandbox_id);
}

sandbox_secret_source_t sandbox_secret_source(secrets_t *s)
{
	return (sandbox_secret_source_t){
		.resolve = resolve,
		.keep = keep,
		.load = load,
		.forget = forget,
		.data = s,
	};
}
