#include "sandbox_meta.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"

typedef struct meta_req {
	uint32_t id;
	strbuf_t in;
	struct meta_req *next;
} meta_req_t;

struct meta_relay {
	agent_conn_t *c;   /* NULL once the session ended */
	int refs;          /* the owner's, and one per request being answered */
	meta_request_fn fn;
	void *data;
	meta_req_t *reqs;  /* still arriving */
	size_t n_reqs;
	char sandbox_id[32];
};

typedef struct sink_ctx {
	meta_relay_t *r;
	uint32_t id;
} sink_ctx_t;

static void relay_unref(meta_relay_t *r)
{
	if (--r->refs > 0)
		return;
	free(r);
}

static void req_drop(meta_relay_t *r, uint32_t id)
{
	for (meta_req_t **pp = &r->reqs; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			meta_req_t *q = *pp;
			*pp = q->next;
			sb_free(&q->in);
			free(q);
			r->n_reqs--;
			return;
		}
	}
}

static void on_response(void *data, const char *bytes, size_t n)
{
	sink_ctx_t *s = data;
	if (s->r->c)
		agent_send_meta_reply(s->r->c, s->id, bytes, n);
	relay_unref(s->r);
	free(s);
}

static void reply_now(meta_relay_t *r, uint32_t id, int status, const char *text)
{
	http_response_t resp = {0};
	http_response_set(&resp, status, "text/plain; charset=utf-8", text);
	_cleanup_sb_ strbuf_t out = STRBUF_INIT;
	http_format_response(&resp, &out);
	free(resp.body);
	agent_send_meta_reply(r->c, id, out.buf, out.len);
}

static void on_data(void *ud, uint32_t id, const uint8_t *data, size_t n)
{
	meta_relay_t *r = ud;
	meta_req_t *q = NULL;
	for (meta_req_t *it = r->reqs; it; it = it->next)
		if (it->id == id)
			q = it;
	if (!q) {
		if (r->n_reqs >= AGENT_META_MAX_CONNS) {
			reply_now(r, id, 503, "too many requests at once\n");
			return;
		}
		q = xcalloc(1, sizeof *q);
		q->id = id;
		q->next = r->reqs;
		r->reqs = q;
		r->n_reqs++;
	}
	sb_append_n(&q->in, data, n);
	char *scratch = xmalloc(q->in.len + 1);
	http_request_t req;
	int status = 400;
	long used = http_parse_request(q->in.buf, q->in.len, scratch, &req, &status);
	if (used == 0 && q->in.len < AGENT_META_MAX_REQUEST) {
		free(scratch);
		return; /* more to come */
	}
	if (used <= 0) {
		free(scratch);
		reply_now(r, id, used < 0 ? status : 413, "bad request\n");
		req_drop(r, id);
		return;
	}
	req.peer = "sandbox";
	req.local = AGENT_META_ADDR ":80";
	sink_ctx_t *s = xcalloc(1, sizeof *s);
	s->r = r;
	s->id = id;
	r->refs++;
	http_pending_t *p = http_pending_relay(&req, scratch, on_response, s);
	/* The request's strings live in scratch, which p now owns; the
	 * arrival buffer can go. */
	req_drop(r, id);
	r->fn(r->data, http_pending_request(p), p);
}

static void on_eof(void *ud, uint32_t id)
{
	req_drop(ud, id);
}

static void on_listening(void *ud, int err, const char *message)
{
	meta_relay_t *r = ud;
	if (err)
		log_warn("sandbox %s: metadata endpoint not available: %s", r->sandbox_id, message);
	else
		log_debug("sandbox %s: metadata endpoint listening", r->sandbox_id);
}

static const agent_meta_ops_t meta_ops = {
	.on_listening = on_listening,
	.on_data = on_data,
	.on_eof = on_eof,
};

meta_relay_t *meta_relay_new(agent_conn_t *c, const char *sandbox_id, meta_request_fn fn,
			     void *data)
{
	meta_relay_t *r = xcalloc(1, sizeof *r);
	r->c = c;
	r->refs = 1;
	r->fn = fn;
	r->data = data;
	snprintf(r->sandbox_id, sizeof r->sandbox_id, "%s", sandbox_id);
	agent_conn_set_meta(c, &meta_ops, r);
	agent_send_meta_listen(c);
	return r;
}

void meta_relay_free(meta_relay_t *r)
{
	if (!r)
		return;
	while (r->reqs)
		req_drop(r, r->reqs->id);
	if (r->c)
		agent_conn_set_meta(r->c, NULL, NULL);
	r->c = NULL;
	relay_unref(r);
}
