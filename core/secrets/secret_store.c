#include "secret_store.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "names.h"
#include "strbuf.h"

#define KIND "secret"
#define SANDBOX_KIND "sandbox-secrets"
#define MAX_VALUES 256
#define MAX_VALUE_BYTES (64 * 1024)

struct secrets {
	store_t *st;
	secret_box_t box;
	const daemon_config_t *cfg;
};

int secrets_new(store_t *st, const char *key_file, const daemon_config_t *cfg, secrets_t **out,
		hutch_err_t *err)
{
	secrets_t *s = xcalloc(1, sizeof *s);
	s->st = st;
	s->cfg = cfg;
	int r = secret_box_open(key_file, &s->box, err);
	if (r < 0) {
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

void secrets_free(secrets_t *s)
{
	if (!s)
		return;
	secret_box_close(&s->box);
	free(s);
}

void secrets_env_free(char **env)
{
	if (!env)
		return;
	for (char **e = env; *e; e++) {
		log_redact_remove(strchr(*e, '=') ? strchr(*e, '=') + 1 : *e);
		secret_free(*e, strlen(*e));
	}
	free(env);
}

/* ---- sealing key/value sets ---- */

static int seal_values(secrets_t *s, const char *aad, Hutch__V1__KeyValue *const *values,
		       size_t n, Hutch__V1__SealedSecret *out, hutch_err_t *err)
{
	Hutch__V1__SecretValues v = HUTCH__V1__SECRET_VALUES__INIT;
	v.values = (Hutch__V1__KeyValue **)values;
	v.n_values = n;
	size_t len = protobuf_c_message_get_packed_size(&v.base);
	uint8_t *plain = xmalloc(len ? len : 1);
	protobuf_c_message_pack(&v.base, plain);
	uint8_t nonce[SECRET_NONCE_BYTES];
	uint8_t *sealed;
	size_t sealed_len;
	int r = secret_seal(&s->box, aad, plain, len, nonce, &sealed, &sealed_len, err);
	secret_free(plain, len);
	if (r < 0)
		return r;
	out->nonce.data = xmalloc(sizeof nonce);
	memcpy(out->nonce.data, nonce, sizeof nonce);
	out->nonce.len = sizeof nonce;
	out->sealed.data = sealed;
	out->sealed.len = sealed_len;
	return 0;
}

/* The values of a sealed record, or -EBADMSG. Free with
 * protobuf_c_message_free_unpacked after wiping (values_wipe). */
static int open_values(secrets_t *s, const char *aad, const Hutch__V1__SealedSecret *rec,
		       Hutch__V1__SecretValues **out, hutch_err_t *err)
{
	if (rec->nonce.len != SECRET_NONCE_BYTES)
		return hutch_err_set(err, EBADMSG, "sealed secret `%s` is damaged", rec->name);
	uint8_t *plain;
	size_t len;
	int r = secret_open(&s->box, aad, rec->nonce.data, rec->sealed.data, rec->sealed.len, &plain,
			    &len, err);
	if (r < 0)
		return hutch_err_prefix(err, "secret `%s`", rec->name);
	*out = hutch__v1__secret_values__unpack(NULL, len, plain);
	secret_free(plain, len);
	if (!*out)
		return hutch_err_set(err, EBADMSG, "secret `%s`: sealed contents unreadable", rec->name);
	return 0;
}

static void values_wipe(Hutch__V1__SecretValues *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n_values; i++)
		if (v->values[i]->value && v->values[i]->value != protobuf_c_empty_string)
			memset(v->values[i]->value, 0, strlen(v->values[i]->value));
	protobuf_c_message_free_unpacked(&v->base, NULL);
}

static void sealed_free(Hutch__V1__SealedSecret *rec)
{
	free(rec->nonce.data);
	free(rec->sealed.data);
	rec->nonce.data = rec->sealed.data = NULL;
}

/* ---- records ---- */

typedef struct load_ctx {
	Hutch__V1__SealedSecret *rec;
} load_ctx_t;

static int on_record(void *ud, const store_obj_t *o)
{
	load_ctx_t *c = ud;
	c->rec = hutch__v1__sealed_secret__unpack(NULL, o->len, o->data);
	return 0;
}

static int load_record(secrets_t *s, const char *kind, const char *tenant, const char *id,
		       const char *what, Hutch__V1__SealedSecret **out, hutch_err_t *err)
{
	load_ctx_t c = {0};
	int r = store_get(s->st, kind, tenant, id, on_record, &c, err);
	if (r == -ENOENT)
		return hutch_err_set(err, ENOENT, "secret `%s` not found", what);
	if (r < 0)
		return r;
	if (!c.rec)
		return hutch_err_set(err, EIO, "secret `%s`: stored record is unreadable", what);
	*out = c.rec;
	return 0;
}

static int save_record(secrets_t *s, const char *kind, const char *tenant, const char *id,
		       const Hutch__V1__SealedSecret *rec, hutch_err_t *err)
{
	size_t n = protobuf_c_message_get_packed_size(&rec->base);
	_cleanup_free_ uint8_t *buf = xmalloc(n ? n : 1);
	protobuf_c_message_pack(&rec->base, buf);
	return store_put(s->st, kind, tenant, id, rec->name, buf, n, err);
}

static Hutch__V1__SecretInfo *info_of(const Hutch__V1__SealedSecret *rec)
{
	Hutch__V1__SecretInfo *i = xmalloc(sizeof *i);
	hutch__v1__secret_info__init(i);
	i->name = xstrdup(rec->name);
	i->tenant = xstrdup(rec->tenant);
	i->keys = xcalloc(rec->n_keys + 1, sizeof *i->keys);
	for (size_t k = 0; k < rec->n_keys; k++)
		i->keys[k] = xstrdup(rec->keys[k]);
	i->n_keys = rec->n_keys;
	i->created_unix_ms = rec->created_unix_ms;
	i->updated_unix_ms = rec->updated_unix_ms;
	return i;
}

int secrets_set(secrets_t *s, const char *tenant, const char *name,
		Hutch__V1__KeyValue *const *values, size_t n, bool replace,
		Hutch__V1__SecretInfo **info, hutch_err_t *err)
{
	if (!object_name_valid(name))
		return hutch_err_set(err, EINVAL,
				     "secret name `%s`: use 1-63 characters of letters, digits, - _ .",
				     name ? name : "");
	if (n == 0 || n > MAX_VALUES)
		return hutch_err_set(err, EINVAL, "secret `%s`: give 1 to %d variables", name, MAX_VALUES);
	for (size_t i = 0; i < n; i++) {
		if (!env_key_valid(values[i]->key))
			return hutch_err_set(err, EINVAL,
					     "secret `%s`: `%s` is not a variable name (letters, digits, _)",
					     name, values[i]->key ? values[i]->key : "");
		if (!values[i]->value || strlen(values[i]->value) > MAX_VALUE_BYTES)
			return hutch_err_set(err, EINVAL, "secret `%s`: the value of %s is missing or over 64 KiB",
					     name, values[i]->key);
		for (size_t k = 0; k < i; k++)
			if (strcmp(values[k]->key, values[i]->key) == 0)
				return hutch_err_set(err, EINVAL, "secret `%s`: %s is given twice", name,
						     values[i]->key);
	}
	_cleanup_free_ char *id = xasprintf("%s/%s", tenant, name);
	Hutch__V1__SealedSecret *old = NULL;
	hutch_err_t e2 = {0};
	int64_t created = store_now_ms();
	if (load_record(s, KIND, tenant, id, name, &old, &e2) == 0) {
		created = old->created_unix_ms;
		protobuf_c_message_free_unpacked(&old->base, NULL);
		if (!replace)
			return hutch_err_set(err, EEXIST, "secret `%s` already exists (replace it to change it)",
					     name);
	}
	Hutch__V1__SealedSecret rec = HUTCH__V1__SEALED_SECRET__INIT;
	rec.name = (char *)name;
	rec.tenant = (char *)tenant;
	rec.keys = xcalloc(n + 1, sizeof *rec.keys);
	for (size_t i = 0; i < n; i++)
		rec.keys[i] = values[i]->key;
	rec.n_keys = n;
	rec.created_unix_ms = created;
	rec.updated_unix_ms = store_now_ms();
	_cleanup_free_ char *aad = xasprintf("secret:%s", id);
	int r = seal_values(s, aad, values, n, &rec, err);
	if (r == 0)
		r = save_record(s, KIND, tenant, id, &rec, err);
	if (r == 0 && info)
		*info = info_of(&rec);
	sealed_free(&rec);
	free(rec.keys);
	return r;
}

int secrets_info(secrets_t *s, const char *tenant, const char *name,
		 Hutch__V1__SecretInfo **info, hutch_err_t *err)
{
	_cleanup_free_ char *id = xasprintf("%s/%s", tenant, name ? name : "");
	Hutch__V1__SealedSecret *rec;
	int r = load_record(s, KIND, tenant, id, name ? name : "", &rec, err);
	if (r < 0)
		return r;
	*info = info_of(rec);
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return 0;
}

typedef struct list_ctx {
	Hutch__V1__ListSecretsResponse *out;
} list_ctx_t;

static int list_one(void *ud, const store_obj_t *o)
{
	list_ctx_t *l = ud;
	Hutch__V1__SealedSecret *rec = hutch__v1__sealed_secret__unpack(NULL, o->len, o->data);
	if (!rec)
		return 0;
	Hutch__V1__ListSecretsResponse *out = l->out;
	out->secrets = xrealloc(out->secrets, (out->n_secrets + 1) * sizeof *out->secrets);
	out->secrets[out->n_secrets++] = info_of(rec);
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	return 0;
}

int secrets_list(secrets_t *s, const char *tenant, Hutch__V1__ListSecretsResponse **out,
		 hutch_err_t *err)
{
	Hutch__V1__ListSecretsResponse *resp = xmalloc(sizeof *resp);
	hutch__v1__list_secrets_response__init(resp);
	list_ctx_t l = {resp};
	int r = store_list(s->st, KIND, tenant, list_one, &l, err);
	if (r < 0) {
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		return r;
	}
	*out = resp;
	return 0;
}

int secrets_delete(secrets_t *s, const char *tenant, const char *name, hutch_err_t *err)
{
	_cleanup_free_ char *id = xasprintf("%s/%s", tenant, name ? name : "");
	int r = store_delete(s->st, KIND, id, err);
	if (r == -ENOENT)
		return hutch_err_set(err, ENOENT, "secret `%s` not found", name ? name : "");
	return r;
}

/* ---- integrations ---- */

static bool integration_for(const integration_cfg_t *in, const char *tenant)
{
	if (!in->tenants)
		return true;
	for (char **t = in->tenants; *t; t++)
		if (strcmp(*t, tenant) == 0)
			return true;
	return false;
}

static void url_escape(strbuf_t *sb, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~')
			sb_putc(sb, (char)*p);
		else {
			sb_putc(sb, '%');
			sb_putc(sb, hex[*p >> 4]);
			sb_putc(sb, hex[*p & 15]);
		}
	}
}

/* The variables an integration gives, as "K=V". */
static char **integration_env(const integration_cfg_t *in)
{
	char **env = NULL;
	if (strcmp(in->type, "postgres") == 0) {
		strbuf_t url = STRBUF_INIT;
		sb_append(&url, "postgresql://");
		url_escape(&url, in->user);
		if (in->password) {
			sb_putc(&url, ':');
			url_escape(&url, in->password);
		}
		sb_printf(&url, "@%s:%lld/", in->host, (long long)in->port);
		url_escape(&url, in->database);
		if (in->sslmode)
			sb_printf(&url, "?sslmode=%s", in->sslmode);
		strv_push(&env, xasprintf("DATABASE_URL=%s", url.buf));
		char *u = sb_steal(&url);
		secret_free(u, strlen(u));
		strv_push(&env, xasprintf("PGHOST=%s", in->host));
		strv_push(&env, xasprintf("PGPORT=%lld", (long long)in->port));
		strv_push(&env, xasprintf("PGUSER=%s", in->user));
		if (in->password)
			strv_push(&env, xasprintf("PGPASSWORD=%s", in->password));
		strv_push(&env, xasprintf("PGDATABASE=%s", in->database));
		if (in->sslmode)
			strv_push(&env, xasprintf("PGSSLMODE=%s", in->sslmode));
	} else {
		for (char **e = in->env; e && *e; e++)
			strv_push(&env, xstrdup(*e));
	}
	return env;
}

int secrets_integrations(secrets_t *s, const char *tenant,
			 Hutch__V1__ListIntegrationsResponse **out, hutch_err_t *err)
{
	(void)err;
	Hutch__V1__ListIntegrationsResponse *resp = xmalloc(sizeof *resp);
	hutch__v1__list_integrations_response__init(resp);
	for (size_t i = 0; i < s->cfg->n_integrations; i++) {
		const integration_cfg_t *in = &s->cfg->integrations[i];
		if (!integration_for(in, tenant))
			continue;
		Hutch__V1__IntegrationInfo *ii = xmalloc(sizeof *ii);
		hutch__v1__integration_info__init(ii);
		ii->name = xstrdup(in->name);
		ii->type = xstrdup(in->type);
		char **env = integration_env(in);
		ii->n_keys = strv_len(env);
		ii->keys = xcalloc(ii->n_keys + 1, sizeof *ii->keys);
		for (size_t k = 0; k < ii->n_keys; k++)
			ii->keys[k] = xstrndup(env[k], strcspn(env[k], "="));
		for (char **e = env; e && *e; e++)
			secret_free(*e, strlen(*e));
		free(env);
		resp->integrations = xrealloc(resp->integrations,
					      (resp->n_integrations + 1) * sizeof *resp->integrations);
		resp->integrations[resp->n_integrations++] = ii;
	}
	*out = resp;
	return 0;
}

/* ---- resolving a sandbox's references ---- */

/* Sets K=V in env, replacing an earlier K. */
static void env_set(char ***env, const char *key, const char *value)
{
	size_t kl = strlen(key);
	for (char **e = *env; e && *e; e++) {
		if (strncmp(*e, key, kl) == 0 && (*e)[kl] == '=') {
			secret_free(*e, strlen(*e));
			*e = xasprintf("%s=%s", key, value);
			return;
		}
	}
	strv_push(env, xasprintf("%s=%s", key, value));
}

int secrets_resolve(secrets_t *s, const char *tenant, Hutch__V1__SecretRef *const *refs,
		    size_t n, char ***env_out, hutch_err_t *err)
{
	char **env = NULL;
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		const Hutch__V1__SecretRef *ref = refs[i];
		const char *src = ref->source && *ref->source ? ref->source : "store";
		if (strcmp(src, "store") == 0) {
			if (!object_name_valid(ref->name)) {
				r = hutch_err_set(err, EINVAL, "secret name `%s` is not valid",
						  ref->name ? ref->name : "");
				break;
			}
			_cleanup_free_ char *id = xasprintf("%s/%s", tenant, ref->name);
			Hutch__V1__SealedSecret *rec;
			if ((r = load_record(s, KIND, tenant, id, ref->name, &rec, err)) < 0)
				break;
			_cleanup_free_ char *aad = xasprintf("secret:%s", id);
			Hutch__V1__SecretValues *v = NULL;
			r = open_values(s, aad, rec, &v, err);
			protobuf_c_message_free_unpacked(&rec->base, NULL);
			for (size_t k = 0; r == 0 && k < v->n_values; k++)
				env_set(&env, v->values[k]->key, v->values[k]->value);
			values_wipe(v);
		} else if (strcmp(src, "integration") == 0) {
			const integration_cfg_t *in = NULL;
			for (size_t k = 0; k < s->cfg->n_integrations; k++)
				if (strcmp(s->cfg->integrations[k].name, ref->name ? ref->name : "") == 0)
					in = &s->cfg->integrations[k];
			if (!in || !integration_for(in, tenant)) {
				r = hutch_err_set(err, ENOENT, "integration `%s` not found",
						  ref->name ? ref->name : "");
				break;
			}
			char **ienv = integration_env(in);
			for (char **e = ienv; e && *e; e++) {
				char *eq = strchr(*e, '=');
				*eq = '\0';
				env_set(&env, *e, eq + 1);
				*eq = '=';
			}
			for (char **e = ienv; e && *e; e++)
				secret_free(*e, strlen(*e));
			free(ienv);
		} else if (strcmp(src, "inline") == 0) {
			if (ref->n_values > MAX_VALUES) {
				r = hutch_err_set(err, EINVAL, "secret `%s`: too many variables",
						  ref->name ? ref->name : "inline");
				break;
			}
			for (size_t k = 0; k < ref->n_values; k++) {
				if (!env_key_valid(ref->values[k]->key)) {
					r = hutch_err_set(err, EINVAL,
							  "secret `%s`: `%s` is not a variable name",
							  ref->name ? ref->name : "inline",
							  ref->values[k]->key ? ref->values[k]->key : "");
					break;
				}
				if (strlen(ref->values[k]->value ? ref->values[k]->value : "") > MAX_VALUE_BYTES) {
					r = hutch_err_set(err, EINVAL, "secret `%s`: a value is over 64 KiB",
							  ref->name ? ref->name : "inline");
					break;
				}
				env_set(&env, ref->values[k]->key,
					ref->values[k]->value ? ref->values[k]->value : "");
			}
		} else {
			r = hutch_err_set(err, EINVAL,
					  "secret source `%s`: use store, integration or inline", src);
		}
	}
	if (r < 0) {
		secrets_env_free(env);
		return r;
	}
	/* A second line of defence: no value reaches the log. */
	for (char **e = env; e && *e; e++)
		log_redact_add(strchr(*e, '=') + 1);
	*env_out = env;
	return 0;
}

int secrets_keep_for_sandbox(secrets_t *s, const char *tenant, const char *sandbox_id,
			     char *const *env, hutch_err_t *err)
{
	size_t n = strv_len(env);
	Hutch__V1__KeyValue *kvs = xcalloc(n + 1, sizeof *kvs);
	Hutch__V1__KeyValue **pkvs = xcalloc(n + 1, sizeof *pkvs);
	for (size_t i = 0; i < n; i++) {
		hutch__v1__key_value__init(&kvs[i]);
		char *eq = strchr(env[i], '=');
		kvs[i].key = xstrndup(env[i], (size_t)(eq - env[i]));
		kvs[i].value = eq + 1;
		pkvs[i] = &kvs[i];
	}
	Hutch__V1__SealedSecret rec = HUTCH__V1__SEALED_SECRET__INIT;
	rec.name = (char *)sandbox_id;
	rec.tenant = (char *)tenant;
	_cleanup_free_ char *aad = xasprintf("sandbox:%s", sandbox_id);
	int r = seal_values(s, aad, pkvs, n, &rec, err);
	if (r == 0)
		r = save_record(s, SANDBOX_KIND, tenant, sandbox_id, &rec, err);
	sealed_free(&rec);
	for (size_t i = 0; i < n; i++)
		free(kvs[i].key);
	free(kvs);
	free(pkvs);
	return r;
}

int secrets_load_for_sandbox(secrets_t *s, const char *sandbox_id, char ***env,
			     hutch_err_t *err)
{
	Hutch__V1__SealedSecret *rec;
	int r = load_record(s, SANDBOX_KIND, NULL, sandbox_id, sandbox_id, &rec, err);
	if (r == -ENOENT) {
		*env = NULL;
		return 0; /* it had none */
	}
	if (r < 0)
		return r;
	_cleanup_free_ char *aad = xasprintf("sandbox:%s", sandbox_id);
	Hutch__V1__SecretValues *v = NULL;
	r = open_values(s, aad, rec, &v, err);
	protobuf_c_message_free_unpacked(&rec->base, NULL);
	if (r < 0)
		return r;
	char **out = NULL;
	for (size_t k = 0; k < v->n_values; k++) {
		strv_push(&out, xasprintf("%s=%s", v->values[k]->key, v->values[k]->value));
		log_redact_add(v->values[k]->value);
	}
	values_wipe(v);
	*env = out;
	return 0;
}

void secrets_forget_sandbox(secrets_t *s, const char *sandbox_id)
{
	hutch_err_t e = {0};
	store_delete(s->st, SANDBOX_KIND, sandbox_id, &e);
}

void secrets_strip_spec(Hutch__V1__SandboxSpec *spec)
{
	for (size_t i = 0; i < spec->n_secrets; i++) {
		Hutch__V1__SecretRef *ref = spec->secrets[i];
		for (size_t k = 0; k < ref->n_values; k++) {
			Hutch__V1__KeyValue *kv = ref->values[k];
			if (kv->value && kv->value != protobuf_c_empty_string)
				memset(kv->value, 0, strlen(kv->value));
			protobuf_c_message_free_unpacked(&kv->base, NULL);
		}
		free(ref->values);
		ref->values = NULL;
		ref->n_values = 0;
	}
}
