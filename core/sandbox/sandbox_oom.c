/* OOM checks: after a process ends unexpectedly, asks the runtime whether
 * the memory limit killed something since the last check. */
#include "sandbox_priv.h"
#include "runtime_call.h"

#include <stdlib.h>

#include "metrics.h"
#include "strbuf.h"

typedef struct oom_job {
	uv_work_t req;
	sandbox_t *sb;
	sandbox_oom_cb cb;
	void *data;
	int64_t kills;
} oom_job_t;

static void oom_work(uv_work_t *req)
{
	oom_job_t *j = req->data;
	plugin_t *rt = j->sb->m->d.plugins->runtime;
	hutch_sandbox_status_t st;
	hutch_err_t e = {0};
	j->kills = -1;
	if (runtime_sandbox_status(rt, j->sb->id, &st, &e) == 0)
		j->kills = runtime_status_oom_kills(&st);
}

static void oom_done(uv_work_t *req, int status)
{
	oom_job_t *j = req->data;
	sandbox_t *sb = j->sb;
	(void)status;
	bool fresh = j->kills > sb->oom_seen;
	if (fresh) {
		sb->oom_seen = j->kills;
		sb->oom_killed = true;
		sandbox_persist(sb);
		metrics_add("sandbox_oom_kills_total", NULL, 1);
	}
	j->cb(j->data, fresh);
	sandbox_unref(sb);
	free(j);
}

void sandbox_check_oom(sandbox_t *sb, sandbox_oom_cb cb, void *data)
{
	oom_job_t *j = xcalloc(1, sizeof *j);
	j->req.data = j;
	j->sb = sb;
	j->cb = cb;
	j->data = data;
	sandbox_ref(sb);
	if (uv_queue_work(sb->m->d.loop, &j->req, oom_work, oom_done) < 0) {
		cb(data, false);
		sandbox_unref(sb);
		free(j);
	}
}
