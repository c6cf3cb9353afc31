#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "strbuf.h"

grpc_status_t api_status_from_errno(int code)
{
	if (code < 0)
		code = -code;
	switch (code) {
	case 0: return GRPC_STATUS_OK;
	case ENOENT:
	case ESRCH: return GRPC_STATUS_NOT_FOUND;
	case EEXIST: return GRPC_STATUS_ALREADY_EXISTS;
	case EINVAL:
	case E2BIG:
	case ENAMETOOLONG:
	case EDOM:
	case ERANGE: return GRPC_STATUS_INVALID_ARGUMENT;
	case EPERM:
	case EACCES: return GRPC_STATUS_PERMISSION_DENIED;
	case ENOTSUP:
	case ENOSYS: return GRPC_STATUS_UNIMPLEMENTED;
	case ENOSPC:
	case ENOMEM:
	case EDQUOT:
	case EMFILE:
	case ENFILE:
	case EUSERS: return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case ETIMEDOUT: return GRPC_STATUS_DEADLINE_EXCEEDED;
	case EAGAIN:
	case EBUSY:
	case ECONNREFUSED:
	case ESHUTDOWN: return GRPC_STATUS_UNAVAILABLE;
	case ECANCELED: return GRPC_STATUS_CANCELLED;
	case EALREADY:
	case ESTALE:
	case ENOTEMPTY:
	case EISDIR:
	case ENOTDIR: return GRPC_STATUS_FAILED_PRECONDITION;
	default: return GRPC_STATUS_INTERNAL;
	}
}

void api_fail(grpc_call_t *call, const hutch_err_t *err)
{
	grpc_call_finish(call, api_status_from_errno(err->code ? err->code : EIO),
			 err->message[0] ? err->message : "internal error");
}

typedef struct caller {
	char tenant[128];
} caller_t;

const char *daemon_call_tenant(const grpc_call_t *call)
{
	const caller_t *c = grpc_call_auth(call);
	return c ? c->tenant : NULL;
}

void api_key_digest(const char *key, char out[65])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	EVP_Digest(key, strlen(key), md, &mdlen, EVP_sha256(), NULL);
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

grpc_status_t api_authorize(void *data, grpc_call_t *call, char *msg, size_t cap)
{
	daemon_t *d = data;
	const grpc_peer_t *peer = grpc_call_peer(call);
	caller_t *c = xcalloc(1, sizeof *c);

	if (peer->kind == GRPC_PEER_UNIX) {
		/* The socket's file mode is the access control on this path. */
		snprintf(c->tenant, sizeof c->tenant, "%s", d->cfg.api.unix_tenant);
		grpc_call_set_auth(call, c);
		return GRPC_STATUS_OK;
	}
	/* Health probes answer whether hutchd serves, nothing about any
	 * tenant: orchestrators' probes (Kubernetes' gRPC probe) send no
	 * headers, so they need no key. Reflection is not exempt. */
	const char *path = grpc_call_path(call);
	if (path && strncmp(path, "/grpc.health.v1.Health/", 23) == 0) {
		grpc_call_set_auth(call, c);
		return GRPC_STATUS_OK;
	}
	const char *auth = grpc_call_metadata(call, "authorization");
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7]) {
		free(c);
		snprintf(msg, cap, "missing API key (send `authorization: Bearer <key>`)");
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	char digest[65];
	api_key_digest(auth + 7, digest);
	for (size_t i = 0; i < d->cfg.n_keys; i++) {
		if (CRYPTO_memcmp(digest, d->cfg.keys[i].sha256, 64) == 0) {
			snprintf(c->tenant, sizeof c->tenant, "%s", d->cfg.keys[i].tenant);
			grpc_call_set_auth(call, c);
			return GRPC_STATUS_OK;
		}
	}
	free(c);
	snprintf(msg, cap, "unknown API key");
	return GRPC_STATUS_UNAUTHENTICATED;
}

void api_auth_release(void *data, void *auth)
{
	(void)data;
	free(auth);
}
