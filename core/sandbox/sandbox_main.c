/* The main command: the spec's command, run through the agent when the
 * sandbox starts; its end ends the sandbox. */
#include "sandbox_priv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "strbuf.h"

#define MAIN_LOG_MAX (256 * 1024)

static void main_output(void *ud, const uint8_t *d, size_t n)
{
	sandbox_t *sb = ud;
	/* Keep the last MAIN_LOG_MAX bytes. */
	sb_append_n(&sb->main_log, d, n);
	if (sb->main_log.len > MAIN_LOG_MAX) {
		size_t drop = sb->main_log.len - MAIN_LOG_MAX;
		memmove(sb->main_log.buf, sb->main_log.buf + drop, MAIN_LOG_MAX);
		sb->main_log.len = MAIN_LOG_MAX;
		sb->main_log.buf[MAIN_LOG_MAX] = '\0';
	}
	if (sb->agent)
		agent_send_credit(sb->agent, sb->main_sid, (uint32_t)n);
}

static void main_exit(void *ud, int code, int sig)
{
	sandbox_t *sb = ud;
	sb->main_sid = 0;
	char why[128];
	if (sig)
		snprintf(why, sizeof why, "main process killed by signal %d", sig);
	else
		snprintf(why, sizeof why, "main process exited with code %d", code);
	sandbox_stop_internal(sb, 0,
		      code == 0 && !sig ? SANDBOX_STOPPED
					: SANDBOX_FAILED,
		      why, NULL, NULL);
}

static void main_error(void *ud, int e, const char *msg)
{
	sandbox_t *sb = ud;
	sb->main_sid = 0;
	if (e == EPIPE)
		return; /* the session ended: handled as the sandbox's end */
	_cleanup_free_ char *why = xasprintf("main process: %s", msg);
	sandbox_stop_internal(sb, 0, SANDBOX_FAILED, why, NULL, NULL);
}

static const agent_stream_ops_t main_ops = {
	.on_stdout = main_output,
	.on_stderr = main_output,
	.on_exit = main_exit,
	.on_error = main_error,
};

void sandbox_main_start(sandbox_t *sb)
{
	const sandbox_spec_t *s = sb->spec;
	if (!s->n_command || !sb->agent)
		return;
	const char **argv = xcalloc(s->n_command + 1, sizeof *argv);
	for (size_t i = 0; i < s->n_command; i++)
		argv[i] = s->command[i];
	agent_exec_req_t req = {
		.argv = argv,
		.env = (const char *const *)sb->env,
		.cwd = s->workdir && *s->workdir ? s->workdir : NULL,
	};
	sb->main_sid = agent_stream_open(sb->agent, &main_ops, sb);
	agent_send_exec(sb->agent, sb->main_sid, &req);
	free(argv);
}

const char *sandbox_main_log(const sandbox_t *sb, size_t *len)
{
	*len = sb->main_log.len;
	return sb->main_log.buf ? sb->main_log.buf : "";
}
