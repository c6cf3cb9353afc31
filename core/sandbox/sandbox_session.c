/* The agent session: attached at create, or at recovery through the
 * runtime's exec; its end while running ends the sandbox. */
#include "sandbox_priv.h"

#include <fcntl.h>
#include <unistd.h>

#include "log.h"
#include "strbuf.h"

static void agent_closed(void *data, const char *reason)
{
	sandbox_t *sb = data;
	sb->agent = NULL;
	meta_relay_free(sb->meta);
	sb->meta = NULL;
	snprintf(sb->agent_down_reason, sizeof sb->agent_down_reason, "%s", reason);
	if (sb->state == SANDBOX_RUNNING && !sb->m->closing &&
	    !sb->stop_requested) {
		/* Nobody asked for this: the sandbox's init is gone. */
		log_warn("sandbox %s: agent session ended (%s); stopping it", sb->id, reason);
		sandbox_stop_internal(sb, 0, SANDBOX_FAILED, NULL, NULL, NULL);
	}
	sandbox_unref(sb);
}

static void meta_request(void *data, const http_request_t *req, http_pending_t *p)
{
	sandbox_t *sb = data;
	sb->m->d.metadata(sb->m->d.metadata_data, sb, req, p);
}

int sandbox_agent_attach(sandbox_t *sb, int to_agent, int from_agent, hutch_err_t *err)
{
	agent_conn_t *c;
	int r = agent_conn_open(sb->m->d.loop, to_agent, from_agent, agent_closed, sb, &c, err);
	if (r < 0)
		return r;
	sandbox_ref(sb); /* held by the session until agent_closed */
	sb->agent = c;
	if (sb->m->d.metadata)
		sb->meta = meta_relay_new(c, sb->id, meta_request, sb);
	return 0;
}

/* Starts a new agent session in a running sandbox via the runtime's exec. */
int sandbox_reattach(sandbox_t *sb, hutch_err_t *err)
{
	plugin_t *rt = sb->m->d.plugins->runtime;
	const char *argv[] = {AGENT_IN_SANDBOX, "session", NULL};
	hutch_exec_spec_t es = {.size = sizeof es, .argv = argv};
	hutch_command_t cmd = {.size = sizeof cmd, .netns_fd = -1};
	int r = rt->ops.runtime.exec_command(rt->instance, sb->id, &es, &cmd, err);
	if (r < 0)
		return hutch_err_prefix(err, "%s", rt->name);
	int to[2] = {-1, -1}, from[2] = {-1, -1};
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		r = hutch_err_sys(err, errno, "pipe");
		goto out;
	}
	const hutch_host_t *h = host_ctx_table(sb->m->d.host);
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = (const char *const *)cmd.argv,
		.stdin_fd = to[0],
		.stdout_fd = from[1],
		.stderr_fd = -1,
		.netns_fd = cmd.netns_fd,
	};
	r = h->spawn(h, &o, NULL, NULL, NULL, err);
	close(to[0]);
	close(from[1]);
	to[0] = from[1] = -1;
	if (r < 0)
		goto out;
	r = sandbox_agent_attach(sb, to[1], from[0], err);
	if (r == 0)
		to[1] = from[0] = -1;
out:
	for (int i = 0; i < 2; i++) {
		if (to[i] >= 0)
			close(to[i]);
		if (from[i] >= 0)
			close(from[i]);
	}
	if (cmd.netns_fd >= 0)
		close(cmd.netns_fd);
	strv_free(cmd.argv);
	return r;
}
