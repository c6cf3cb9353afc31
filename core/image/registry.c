#include "registry.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "oci.h"
#include "strbuf.h"

#define ACCEPT_MANIFESTS                                                        \
	"Accept: " OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " DOCKER_MT_LIST ", " DOCKER_MT_MANIFEST

/* ---- references ---- */

static bool is_loopback(const char *host)
{
	return strncmp(host, "localhost", 9) == 0 || strncmp(host, "127.", 4) == 0 ||
	       strncmp(host, "[::1]", 5) == 0;
}

static bool repo_ok(const char *r)
{
	if (!*r || strlen(r) > 255)
		return false;
	for (const char *p = r; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-/", *p)))
			return false;
	return r[0] != '/' && r[strlen(r) - 1] != '/' && !strstr(r, "//") && !strstr(r, "..");
}

static bool tag_ok(const char *t)
{
	if (!*t || strlen(t) > 128)
		return false;
	for (const char *p = t; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("._-", *p)))
			return false;
	return true;
}

int registry_ref_parse(const char *s, registry_ref_t *r, hutch_err_t *err)
{
	memset(r, 0, sizeof *r);
	_cleanup_free_ char *copy = xstrdup(s);
	char *at = strchr(copy, '@');
	if (at) {
		*at = '\0';
		if (!digest_valid(at + 1))
			return hutch_err_set(err, EINVAL, "reference `%s`: the digest must be sha256:<64 hex>", s);
		r->digest = xstrdup(at + 1);
	}
	char *slash = strchr(copy, '/');
	const char *rest = copy;
	if (slash && (memchr(copy, '.', (size_t)(slash - copy)) || memchr(copy, ':', (size_t)(slash - copy)) ||
		      strncmp(copy, "localhost/", 10) == 0)) {
		r->host = xstrndup(copy, (size_t)(slash - copy));
		rest = slash + 1;
	} else {
		r->host = xstrdup("registry-1.docker.io");
	}
	/* The tag follows the last ':' after the last '/'. */
	char *last_slash = strrchr(rest, '/');
	char *colon = strrchr(last_slash ? last_slash : rest, ':');
	if (colon) {
		*colon = '\0';
		r->tag = xstrdup(colon + 1);
		if (!tag_ok(r->tag))
			goto bad;
	}
	if (strcmp(r->host, "registry-1.docker.io") == 0 && !strchr(rest, '/'))
		r->repo = xasprintf("library/%s", rest);
	else
		r->repo = xstrdup(rest);
	if (!repo_ok(r->repo))
		goto bad;
	if (!r->tag && !r->digest)
		r->tag = xstrdup("latest");
	r->canonical = r->digest ? xasprintf("%s/%s@%s", r->host, r->repo, r->digest)
				 : xasprintf("%s/%s:%s", r->host, r->repo, r->tag);
	return 0;
bad:
	registry_ref_free(r);
	return hutch_err_set(err, EINVAL, "`%s` is not an image reference (host[:port]/repo[:tag][@sha256:...])", s);
}

void registry_ref_free(registry_ref_t *r)
{
	free(r->host);
	free(r->repo);
	free(r->tag);
	free(r->digest);
	free(r->canonical);
	free(r->manifest);
	if (r->token) {
		memset(r->token, 0, strlen(r->token));
		free(r->token);
	}
	memset(r, 0, sizeof *r);
}

/* ---- HTTP ---- */

typedef struct fetch {
	strbuf_t body;          /* into memory, or */
	int fd;                 /* into a file (-1: memory) */
	size_t max;
	bool too_big;
	int write_errno;
	digest_ctx_t *hash;
	int64_t bytes;
	char www_auth[1024];    /* WWW-Authenticate of a 401 */
	const atomic_bool *cancel;
} fetch_t;

static size_t on_body(char *p, size_t s, size_t n, void *data)
{
	fetch_t *f = data;
	size_t len = s * n;
	if (f->cancel && atomic_load(f->cancel))
		return 0;
	if (f->fd >= 0) {
		for (size_t off = 0; off < len;) {
			ssize_t w = write(f->fd, p + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				f->write_errno = errno;
				return 0;
			}
			off += (size_t)w;
		}
	} else {
		if (f->body.len + len > f->max) {
			f->too_big = true;
			return 0;
		}
		sb_append_n(&f->body, p, len);
	}
	if (f->hash)
		digest_update(f->hash, p, len);
	f->bytes += (int64_t)len;
	return len;
}

static size_t on_header(char *p, size_t s, size_t n, void *data)
{
	fetch_t *f = data;
	size_t len = s * n;
	static const char name[] = "www-authenticate:";
	if (len > sizeof name && strncasecmp(p, name, sizeof name - 1) == 0) {
		const char *v = p + sizeof name - 1;
		while (*v == ' ')
			v++;
		size_t vl = len - (size_t)(v - p);
		while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
			vl--;
		snprintf(f->www_auth, sizeof f->www_auth, "%.*s", (int)vl, v);
	}
	return len;
}

static char *url_of(const registry_ref_t *r, const char *kind, const char *ref)
{
	return xasprintf("%s://%s/v2/%s/%s/%s", r->plain_http ? "http" : "https", r->host, r->repo, kind, ref);
}

/* One GET; *code the HTTP status. Headers: accept (or NULL), the
 * token/credentials. */
static int http_get(const registry_ref_t *r, const Hutch__V1__RegistryBase *base, const char *url,
		    const char *accept, fetch_t *f, long *code, hutch_err_t *err)
{
	CURL *h = curl_easy_init();
	if (!h)
		return hutch_err_set(err, ENOMEM, "curl");
	struct curl_slist *hdrs = NULL;
	if (accept)
		hdrs = curl_slist_append(hdrs, accept);
	_cleanup_free_ char *auth = NULL;
	if (r->token) {
		auth = xasprintf("Authorization: Bearer %s", r->token);
		hdrs = curl_slist_append(hdrs, auth);
	} else if (base->username && *base->username) {
		curl_easy_setopt(h, CURLOPT_USERNAME, base->username);
		curl_easy_setopt(h, CURLOPT_PASSWORD, base->password ? base->password : "");
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 30L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 120L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "hutch");
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, f);
	CURLcode cc = curl_easy_perform(h);
	*code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, code);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(h);
	if (f->cancel && atomic_load(f->cancel))
		return hutch_err_set(err, ECANCELED, "cancelled");
	if (f->too_big)
		return hutch_err_set(err, EFBIG, "GET %s: the response is larger than %zu bytes", url, f->max);
	if (f->write_errno)
		return hutch_err_sys(err, f->write_errno, "GET %s: write", url);
	if (cc != CURLE_OK)
		return hutch_err_set(err, EIO, "GET %s: %s", url, curl_easy_strerror(cc));
	return 0;
}

/* `key="value"` out of a WWW-Authenticate header. */
static char *auth_param(const char *hdr, const char *key)
{
	_cleanup_free_ char *pat = xasprintf("%s=\"", key);
	const char *p = strcasestr(hdr, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	const char *end = strchr(p, '"');
	return end ? xstrndup(p, (size_t)(end - p)) : NULL;
}

static char *url_escape(const char *s)
{
	CURL *h = curl_easy_init();
	char *e = h ? curl_easy_escape(h, s, 0) : NULL;
	char *out = xstrdup(e ? e : "");
	curl_free(e);
	if (h)
		curl_easy_cleanup(h);
	return out;
}

/* Answers a Bearer challenge: a token from the realm for this repo. */
static int get_token(registry_ref_t *r, const Hutch__V1__RegistryBase *base, const char *hdr,
		     const atomic_bool *cancel, hutch_err_t *err)
{
	_cleanup_free_ char *realm = auth_param(hdr, "realm");
	_cleanup_free_ char *service = auth_param(hdr, "service");
	_cleanup_free_ char *scope = auth_param(hdr, "scope");
	if (!realm || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0))
		return hutch_err_set(err, EACCES, "registry %s: unusable auth challenge `%.200s`", r->host, hdr);
	_cleanup_free_ char *default_scope = xasprintf("repository:%s:pull", r->repo);
	_cleanup_free_ char *s1 = url_escape(service ? service : "");
	_cleanup_free_ char *s2 = url_escape(scope ? scope : default_scope);
	_cleanup_free_ char *url = xasprintf("%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?", s1, s2);
	fetch_t f = {.fd = -1, .max = 1 << 20, .cancel = cancel};
	long code;
	registry_ref_t anon = *r;
	anon.token = NULL;
	int rr = http_get(&anon, base, url, NULL, &f, &code, err);
	if (rr == 0 && code != 200)
		rr = hutch_err_set(err, EACCES, "registry %s: the token service answered %ld%s", r->host, code,
				   base->username && *base->username ? " (are the credentials right?)" : " (credentials needed?)");
	if (rr < 0) {
		sb_free(&f.body);
		return rr;
	}
	json_error_t je;
	json_t *j = json_loadb(f.body.buf ? f.body.buf : "", f.body.len, 0, &je);
	sb_free(&f.body);
	json_t *t = j ? json_object_get(j, "token") : NULL;
	if (!json_is_string(t))
		t = j ? json_object_get(j, "access_token") : NULL;
	if (!json_is_string(t)) {
		json_decref(j);
		return hutch_err_set(err, EACCES, "registry %s: the token service gave no token", r->host);
	}
	free(r->token);
	r->token = xstrdup(json_string_value(t));
	json_decref(j);
	return 0;
}

/* GET with the registry's auth dance (at most one challenge answered). */
static int registry_get(registry_ref_t *r, const Hutch__V1__RegistryBase *base, const char *url,
			const char *accept, fetch_t *f, hutch_err_t *err)
{
	for (int attempt = 0;; attempt++) {
		long code;
		f->www_auth[0] = '\0';
		int rr = http_get(r, base, url, accept, f, &code, err);
		if (rr < 0)
			return rr;
		if (code == 401 && attempt == 0 && strncasecmp(f->www_auth, "Bearer", 6) == 0) {
			sb_reset(&f->body);
			if (f->fd >= 0 && (ftruncate(f->fd, 0) < 0 || lseek(f->fd, 0, SEEK_SET) < 0))
				return hutch_err_sys(err, errno, "truncate");
			if (f->hash) {
				digest_free(f->hash);
				f->hash = digest_new();
			}
			f->bytes = 0;
			if ((rr = get_token(r, base, f->www_auth, f->cancel, err)) < 0)
				return rr;
			continue;
		}
		if (code == 401 || code == 403)
			return hutch_err_set(err, EACCES, "registry %s: access to %s denied (%ld)%s", r->host, r->repo,
					     code, base->username && *base->username ? "" : "; credentials may be needed");
		if (code == 404)
			return hutch_err_set(err, ENOENT, "registry %s: %s not found", r->host, url);
		if (code != 200)
			return hutch_err_set(err, EIO, "registry %s: GET %s answered %ld", r->host, url, code);
		return 0;
	}
}

static int get_manifest(registry_ref_t *r, const Hutch__V1__RegistryBase *base, const char *ref_or_digest,
			char **out, size_t *len, char digest[DIGEST_STR_MAX], hutch_err_t *err)
{
	_cleanup_free_ char *url = url_of(r, "manifests", ref_or_digest);
	fetch_t f = {.fd = -1, .max = OCI_JSON_MAX};
	int rr = registry_get(r, base, url, ACCEPT_MANIFESTS, &f, err);
	if (rr < 0) {
		sb_free(&f.body);
		return rr;
	}
	*len = f.body.len;
	*out = sb_steal(&f.body);
	digest_buf(*out, *len, digest);
	return 0;
}

int registry_resolve(const image_config_t *cfg, const Hutch__V1__RegistryBase *base,
		     registry_ref_t *r, hutch_err_t *err)
{
	int rr = registry_ref_parse(base->ref, r, err);
	if (rr < 0)
		return rr;
	r->plain_http = base->insecure || is_loopback(r->host);
	for (char **h = cfg->insecure_registries; h && *h; h++)
		if (strcmp(*h, r->host) == 0)
			r->plain_http = true;
	char *json;
	size_t len;
	char digest[DIGEST_STR_MAX];
	if ((rr = get_manifest(r, base, r->digest ? r->digest : r->tag, &json, &len, digest, err)) < 0)
		return hutch_err_prefix(err, "pull %s", r->canonical);
	if (r->digest && strcmp(digest, r->digest) != 0) {
		free(json);
		return hutch_err_set(err, EIO, "pull %s: the registry sent a manifest whose digest is %s", r->canonical,
				     digest);
	}
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	rr = oci_parse_manifest_or_index(json, len, &m, &idx, &is_index, err);
	if (rr < 0) {
		free(json);
		return hutch_err_prefix(err, "pull %s: manifest", r->canonical);
	}
	if (is_index) {
		const oci_desc_t *pick = oci_index_pick(&idx, NULL);
		if (!pick) {
			oci_index_free(&idx);
			free(json);
			return hutch_err_set(err, ENOENT, "pull %s: no image for linux/%s in its index", r->canonical,
					     oci_host_arch());
		}
		char want[DIGEST_STR_MAX];
		snprintf(want, sizeof want, "%s", pick->digest);
		oci_index_free(&idx);
		free(json);
		if ((rr = get_manifest(r, base, want, &json, &len, digest, err)) < 0)
			return hutch_err_prefix(err, "pull %s", r->canonical);
		if (strcmp(digest, want) != 0) {
			free(json);
			return hutch_err_set(err, EIO, "pull %s: manifest %s came with digest %s", r->canonical, want, digest);
		}
		if ((rr = oci_parse_manifest_or_index(json, len, &m, &idx, &is_index, err)) < 0 || is_index) {
			if (rr == 0)
				oci_index_free(&idx);
			free(json);
			return rr < 0 ? hutch_err_prefix(err, "pull %s", r->canonical)
				      : hutch_err_set(err, EINVAL, "pull %s: an index inside an index", r->canonical);
		}
	}
	oci_manifest_free(&m);
	r->manifest = json;
	r->manifest_len = len;
	snprintf(r->manifest_digest, sizeof r->manifest_digest, "%s", digest);
	return 0;
}

/* ---- pulling ---- */

static void progress(build_output_cb cb, void *data, const char *fmt, ...) HUTCH_PRINTF(3, 4);

static void progress(build_output_cb cb, void *data, const char *fmt, ...)
{
	if (!cb)
		return;
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n > 0)
		cb(data, 1, line, (size_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
}

/* Downloads a blob to a scratch file, checking its digest. */
static int fetch_blob(registry_ref_t *r, const Hutch__V1__RegistryBase *base, image_store_t *store,
		      const char *digest, const atomic_bool *cancel, char **path_out, hutch_err_t *err)
{
	_cleanup_free_ char *url = url_of(r, "blobs", digest);
	char *path = image_store_tmp_path(store, "pull");
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		int rr = hutch_err_sys(err, errno, "create %s", path);
		free(path);
		return rr;
	}
	fetch_t f = {.fd = fd, .hash = digest_new(), .cancel = cancel};
	int rr = registry_get(r, base, url, NULL, &f, err);
	close(fd);
	char got[DIGEST_STR_MAX] = "";
	digest_final(f.hash, got);
	if (rr == 0 && strcmp(got, digest) != 0)
		rr = hutch_err_set(err, EIO, "blob %s: the registry sent content whose digest is %s", digest, got);
	if (rr < 0) {
		unlink(path);
		free(path);
		return rr;
	}
	*path_out = path;
	return 0;
}

int registry_pull(const image_config_t *cfg, image_store_t *store,
		  const Hutch__V1__RegistryBase *base, registry_ref_t *r, image_cache_entry_t *e,
		  char ***pinned, build_output_cb cb, void *data, const atomic_bool *cancel,
		  hutch_err_t *err)
{
	(void)cfg;
	memset(e, 0, sizeof *e);
	oci_manifest_t m;
	oci_index_t idx;
	bool is_index;
	int rr = oci_parse_manifest_or_index(r->manifest, r->manifest_len, &m, &idx, &is_index, err);
	if (rr < 0)
		return hutch_err_prefix(err, "pull %s", r->canonical);
	if (m.n_layers > IMAGE_CACHE_MAX_LAYERS) {
		oci_manifest_free(&m);
		return hutch_err_set(err, E2BIG, "pull %s: %zu layers, at most %d", r->canonical, m.n_layers,
				     IMAGE_CACHE_MAX_LAYERS);
	}
	progress(cb, data, "pulling %s (manifest %s, %zu layers)\n", r->canonical, r->manifest_digest, m.n_layers);
	/* The config first: its diff ids check the layers. */
	_cleanup_free_ char *cfg_path = NULL;
	oci_config_t conf = {0};
	if ((rr = fetch_blob(r, base, store, m.config.digest, cancel, &cfg_path, err)) < 0)
		goto out;
	char *json;
	size_t len;
	/* Pinned before it is in the store: a collection meanwhile keeps it. */
	image_store_pin(store, m.config.digest);
	strv_push(pinned, xstrdup(m.config.digest));
	if ((rr = image_store_blob_adopt(store, cfg_path, m.config.digest, err)) < 0 ||
	    (rr = image_store_blob_read(store, m.config.digest, OCI_JSON_MAX, &json, &len, err)) < 0)
		goto out;
	rr = oci_config_parse(json, len, &conf, err);
	free(json);
	if (rr < 0) {
		hutch_err_prefix(err, "pull %s: image config", r->canonical);
		goto out;
	}
	snprintf(e->config, sizeof e->config, "%s", m.config.digest);
	if (conf.n_diff_ids && conf.n_diff_ids != m.n_layers) {
		rr = hutch_err_set(err, EINVAL, "pull %s: the config lists %zu layers, the manifest %zu", r->canonical,
				   conf.n_diff_ids, m.n_layers);
		goto out;
	}
	for (size_t i = 0; i < m.n_layers; i++) {
		progress(cb, data, "layer %zu/%zu %s (%lld bytes)\n", i + 1, m.n_layers, m.layers[i].digest,
			 (long long)m.layers[i].size);
		_cleanup_free_ char *path = NULL;
		if ((rr = fetch_blob(r, base, store, m.layers[i].digest, cancel, &path, err)) < 0)
			goto out;
		int64_t size;
		rr = image_store_layer_from_tar(store, path, e->layers[i], &size, err);
		unlink(path);
		if (rr < 0) {
			hutch_err_prefix(err, "pull %s: layer %s", r->canonical, m.layers[i].digest);
			goto out;
		}
		strv_push(pinned, xstrdup(e->layers[i]));
		e->n_layers = i + 1;
		if (conf.n_diff_ids && strcmp(conf.diff_ids[i], e->layers[i]) != 0) {
			rr = hutch_err_set(err, EIO, "pull %s: layer %zu unpacks to %s, the config says %s", r->canonical,
					   i + 1, e->layers[i], conf.diff_ids[i]);
			goto out;
		}
	}
out:
	oci_config_free(&conf);
	oci_manifest_free(&m);
	return rr;
}
