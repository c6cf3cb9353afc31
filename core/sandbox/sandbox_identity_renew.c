/* Identity: each running sandbox's token file renewed before it expires,
 * on the pool, from one manager timer. */
#include "sandbox_priv.h"

#include <stdlib.h>

#include "log.h"
#include "metrics.h"
#include "strbuf.h"

typedef struct renew_job {
	uv_work_t req;
	sandbox_t *sb;
	int64_t expires;
	hutch_err_t err;
	int result;
} renew_job_t;

static void renew_work(uv_work_t *req)
{
	renew_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sandbox_who_t who;
	sandbox_who(sb, &who);
	j->result = identity_write_file(sb->m->d.plugins->identity, sb->identity_dir, &who,
					sb->spec->identity_audience, &j->expires, &j->err);
}

static void renew_done(uv_work_t *req, int status)
{
	renew_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	sb->m->jobs--;
	sb->identity_renewing = false;
	if (status == 0 && j->result == 0) {
		sb->identity_expires = j->expires;
		sb->identity_renew_ms = identity_renew_at_ms(now_ms(), j->expires);
		metrics_add("identity_token_renewals_total", NULL, 1);
	} else {
		/* Try again soon; the old token stays until it expires. */
		sb->identity_renew_ms = now_ms() + 5000;
		if (sb->state == SANDBOX_RUNNING)
			log_warn("sandbox %s: identity token not renewed: %s", sb->id,
				 status ? uv_strerror(status) : j->err.message);
	}
	sandbox_unref(sb);
	free(j);
}

void sandbox_identity_tick(uv_timer_t *t)
{
	sandbox_mgr_t *m = t->data;
	int64_t now = now_ms();
	for (sandbox_t *sb = m->list; sb; sb = sb->next) {
		if (sb->state != SANDBOX_RUNNING || sb->busy ||
		    !sb->identity_dir || !sb->identity_expires || sb->identity_renewing ||
		    now < sb->identity_renew_ms)
			continue;
		renew_job_t *j = xcalloc(1, sizeof *j);
		j->req.data = j;
		j->sb = sb;
		sandbox_ref(sb);
		sb->identity_renewing = true;
		m->jobs++;
		if (uv_queue_work(m->d.loop, &j->req, renew_work, renew_done) < 0) {
			m->jobs--;
			sb->identity_renewing = false;
			sandbox_unref(sb);
			free(j);
		}
	}
}
