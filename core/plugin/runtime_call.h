/*
 * runtime_call.h: calls into the runtime plugin where the ABI asks the
 * caller for more than a plain call.
 *
 * A runtime built against an older minor leaves alone the members of an
 * out-struct it does not know. Where zero is a real answer for such a
 * member (no OOM kills so far), the core must preset the value that means
 * "unknown" before the call, or an old runtime's silence reads as an answer.
 * Every call of such an op goes through here, so no caller can forget.
 */
#ifndef HUTCH_RUNTIME_CALL_H
#define HUTCH_RUNTIME_CALL_H

#include <hutch/plugin.h>

#include "plugin_loader.h"

/* sandbox_status into *st: zero-filled, size set to ours, and the members
 * newer than 1.0 set to "unknown" first (oom_kills = -1). Returns the op's
 * result; *st is filled either way. */
int runtime_sandbox_status(const plugin_t *rt, const char *id,
			   hutch_sandbox_status_t *st, hutch_err_t *err);

/* How many processes st says were killed at the memory limit: the runtime's
 * counter, or, from a runtime that does not count (a 1.0 one, or one that
 * cannot tell), 1 if oom_killed is set, else 0. */
int64_t runtime_status_oom_kills(const hutch_sandbox_status_t *st);

#endif
