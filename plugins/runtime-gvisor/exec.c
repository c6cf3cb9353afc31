/*
 * exec.c: the host command that runs a process in a sandbox.
 *
 * Normally `runtime-gvisor-helper exec` (helper.c) wrapping `runsc exec`, so
 * that signals sent to the command reach the process; plain `runsc exec`
 * when the helper is missing. Either exits with the process's exit code,
 * or 128+N when it died of signal N.
 *
 * A terminal: the core gives the command a pty slave as stdio. runsc
 * hands those fds to the sandbox as they are and gVisor treats a host tty
 * fd as a terminal (isatty, TCGETS, TIOCGWINSZ reach the host pty), so
 * nothing differs for tty = true. Measured with 0.0~20240729: `runsc exec`
 * has no -t flag; a process.json with "terminal": true and no
 * --console-socket behaves the same; neither gives the process a
 * controlling terminal (/dev/tty: EIO, no job control in a shell).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

static int valid_user(const char *u)
{
	/* uid[:gid], decimal */
	const char *p = u;
	if (!*p)
		return 0;
	while (*p >= '0' && *p <= '9')
		p++;
	if (p == u)
		return 0;
	if (*p == ':') {
		const char *g = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == g)
			return 0;
	}
	return *p == '\0';
}

int gv_exec_command(void *instance, const char *id, const hutch_exec_spec_t *spec,
		    hutch_command_t *cmd, hutch_err_t *err)
{
	gv_runtime_t *rt = instance;
	int r = gv_validate_id(id, err);
	if (r < 0)
		return r;
	if (!spec->argv || !spec->argv[0])
		return hutch_err_set(err, EINVAL, "exec: empty argv");
	_cleanup_free_ char *dir = gv_sb_path(rt, id, NULL);
	if (!gv_exists(dir))
		return hutch_err_set(err, ENOENT, "no sandbox %s", id);
	if (spec->cwd && spec->cwd[0] != '/')
		return hutch_err_set(err, EINVAL, "exec: cwd %s is not absolute", spec->cwd);
	if (spec->user && !valid_user(spec->user))
		return hutch_err_set(err, EINVAL, "exec: user `%s` is not uid[:gid]", spec->user);

	gv_argv_t flags = {0};
	for (size_t i = 0; i < spec->n_env; i++) {
		const hutch_kv_t *kv = &spec->env[i];
		if (!kv->key || !*kv->key || strchr(kv->key, '=') || !kv->value) {
			gv_argv_free(&flags);
			return hutch_err_set(err, EINVAL, "exec: env %zu: bad name", i);
		}
		gv_argv_add(&flags, "--env");
		gv_argv_addf(&flags, "%s=%s", kv->key, kv->value);
	}
	if (spec->cwd)
		gv_argv_addf(&flags, "--cwd=%s", spec->cwd);
	if (spec->user)
		gv_argv_addf(&flags, "--user=%s", spec->user);

	/* With the helper: helper ID RUNSC FLAGS -- EXEC_FLAGS -- ARGV (it
	 * adds `exec` and forwards signals); without: runsc FLAGS exec
	 * EXEC_FLAGS ID ARGV (the container id ends runsc's flags, so argv
	 * passes as is). */
	gv_argv_t a = {0};
	if (rt->helper) {
		gv_argv_add(&a, rt->helper);
		gv_argv_add(&a, "exec");
		gv_argv_add_runsc_id(&a, id);
	}
	gv_sandbox_cmd(rt, id, &a);
	gv_argv_add(&a, rt->helper ? "--" : "exec");
	for (size_t i = 0; i < flags.n; i++)
		gv_argv_add(&a, flags.v[i]);
	gv_argv_free(&flags);
	if (rt->helper)
		gv_argv_add(&a, "--");
	else
		gv_argv_add_runsc_id(&a, id);
	for (const char *const *p = spec->argv; *p; p++)
		gv_argv_add(&a, *p);

	uint32_t size = cmd->size ? cmd->size : sizeof *cmd;
	hutch_command_t c = {.size = size};
	c.argv = a.v; /* the core frees it and every string */
	c.netns_fd = -1;
	/* Measured: `runsc exec` exits 128+N when the process dies of signal
	 * N (and so does the helper, which passes its status on). */
	c.signal_exit_as_128 = true;
	memcpy(cmd, &c, size < sizeof c ? size : sizeof c);
	return 0;
}
