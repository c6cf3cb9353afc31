/* hutch.v1.Identity: verify a workload token, rotate the signing key. The
 * identity plugin does the work, on the pool. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "hutch/v1/identity.pb-c.h"
#include "strbuf.h"

typedef struct id_job {
	uv_work_t req;
	daemon_t *d;
	grpc_call_t *call;
	bool rotate;
	char *token;
	char *audience;
	hutch_identity_claims_t claims;
	hutch_err_t err;
	int result;
} id_job_t;

static void id_work(uv_work_t *req)
{
	id_job_t *j = req->data;
	plugin_t *idp = j->d->plugins.identity;
	if (j->rotate) {
		j->result = idp->ops.identity.key_rotate(idp->instance, &j->err);
		return;
	}
	j->claims.size = sizeof j->claims;
	j->result = idp->ops.identity.token_verify(idp->instance, j->token,
						   j->audience[0] ? j->audience : NULL, &j->claims,
						   &j->err);
}

static void id_done(uv_work_t *req, int status)
{
	id_job_t *j = req->data;
	j->d->http_jobs--;
	if (status < 0 && j->result == 0)
		j->result = hutch_err_set(&j->err, ECANCELED, "cancelled");
	if (!grpc_call_alive(j->call)) {
		/* the caller went away */
	} else if (j->result < 0 && !j->rotate && j->err.code == EACCES) {
		grpc_call_finish(j->call, GRPC_STATUS_UNAUTHENTICATED, j->err.message);
	} else if (j->result < 0) {
		api_fail(j->call, &j->err);
	} else if (j->rotate) {
		Hutch__V1__RotateKeyResponse resp = HUTCH__V1__ROTATE_KEY_RESPONSE__INIT;
		grpc_call_send(j->call, &resp.base);
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
	} else {
		const hutch_identity_claims_t *c = &j->claims;
		Hutch__V1__TokenClaims tc = HUTCH__V1__TOKEN_CLAIMS__INIT;
		tc.issuer = (char *)c->issuer;
		tc.subject = (char *)c->subject;
		tc.audience = (char *)c->audience;
		tc.tenant = (char *)c->tenant;
		tc.sandbox_id = (char *)c->sandbox_id;
		tc.sandbox_name = (char *)c->sandbox_name;
		tc.image_digest = (char *)c->image_digest;
		tc.key_id = (char *)c->key_id;
		tc.token_id = (char *)c->token_id;
		tc.issued_unix = c->issued_unix;
		tc.not_before_unix = c->not_before_unix;
		tc.expires_unix = c->expires_unix;
		Hutch__V1__VerifyTokenResponse resp = HUTCH__V1__VERIFY_TOKEN_RESPONSE__INIT;
		resp.claims = &tc;
		grpc_call_send(j->call, &resp.base);
		grpc_call_finish(j->call, GRPC_STATUS_OK, NULL);
	}
	grpc_call_unref(j->call);
	free(j->token);
	free(j->audience);
	free(j);
}

static void start(grpc_call_t *call, bool rotate, const char *token, const char *audience)
{
	daemon_t *d = grpc_call_service_data(call);
	if (!d->plugins.identity) {
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
				 "no identity plugin is loaded ([plugins] identity)");
		return;
	}
	if (rotate && !d->plugins.identity->ops.identity.key_rotate) {
		grpc_call_finish(call, GRPC_STATUS_UNIMPLEMENTED,
				 "the identity plugin cannot rotate keys");
		return;
	}
	id_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->d = d;
	j->call = call;
	j->rotate = rotate;
	j->token = xstrdup(token ? token : "");
	j->audience = xstrdup(audience ? audience : "");
	grpc_call_ref(call);
	d->http_jobs++;
	int r = uv_queue_work(&d->loop, &j->req, id_work, id_done);
	if (r < 0) {
		d->http_jobs--;
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, uv_strerror(r));
		grpc_call_unref(call);
		free(j->token);
		free(j->audience);
		free(j);
	}
}

static void verify_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	const Hutch__V1__VerifyTokenRequest *r = (const void *)msg;
	if (!r->token || !*r->token) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "token is empty");
		return;
	}
	start(call, false, r->token, r->audience);
}

static void rotate_on_message(grpc_call_t *call, const ProtobufCMessage *msg)
{
	(void)msg;
	if (grpc_call_peer(call)->kind != GRPC_PEER_UNIX) {
		grpc_call_finish(call, GRPC_STATUS_PERMISSION_DENIED,
				 "key rotation is for the operator, on the local unix socket");
		return;
	}
	start(call, true, NULL, NULL);
}

static const grpc_method_t identity_methods[] = {
	{.path = "/hutch.v1.Identity/VerifyToken",
	 .request = &hutch__v1__verify_token_request__descriptor,
	 .on_message = verify_on_message},
	{.path = "/hutch.v1.Identity/RotateKey",
	 .request = &hutch__v1__rotate_key_request__descriptor,
	 .on_message = rotate_on_message},
};

int api_identity_register(daemon_t *d, hutch_err_t *err)
{
	return grpc_server_add_methods(d->grpc, identity_methods,
				       sizeof identity_methods / sizeof identity_methods[0], d, err);
}
