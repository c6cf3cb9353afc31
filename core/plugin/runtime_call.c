#include "runtime_call.h"

#include <string.h>

int runtime_sandbox_status(const plugin_t *rt, const char *id,
			   hutch_sandbox_status_t *st, hutch_err_t *err)
{
	memset(st, 0, sizeof *st);
	st->size = sizeof *st;
	/* v1.1 members whose zero means something; netns_path's "" already
	 * means unknown. */
	st->oom_kills = -1;
	return rt->ops.runtime.sandbox_status(rt->instance, id, st, err);
}

int64_t runtime_status_oom_kills(const hutch_sandbox_status_t *st)
{
	if (st->oom_kills >= 0)
		return st->oom_kills;
	return st->oom_killed ? 1 : 0;
}
