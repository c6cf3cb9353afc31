/*
 * runsc.c: building runsc command lines and running them through the host.
 *
 * runsc reads most of its configuration from global flags on every call,
 * and some of it only at a later step (`--network` is applied by `start`,
 * not `create`), so every call for one sandbox must carry the same flags.
 * sandbox.c saves the flags a sandbox was created with and replays them.
 *
 * runsc's own messages: without --log, runsc writes its internal log to
 * stdout, which for `create` is the sandbox init's stdout (the core's pipe to
 * its agent). Every call therefore gets --log=<file>, and when a step fails
 * its message is taken from stderr where we captured it, else from the last
 * error line of that log.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

void gv_argv_add(gv_argv_t *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->v = xrealloc(a->v, a->cap * sizeof *a->v);
	}
	a->v[a->n++] = xstrdup(s);
	a->v[a->n] = NULL;
}

void gv_argv_addf(gv_argv_t *a, const char *fmt, ...)
{
	va_list ap;
	char *s;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	if (!s)
		abort();
	gv_argv_add(a, s);
	free(s);
}

void gv_argv_free(gv_argv_t *a)
{
	if (a->v)
		for (size_t i = 0; i < a->n; i++)
			free(a->v[i]);
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

const char *gv_net_mode_name(gv_net_mode_t m)
{
	switch (m) {
	case GV_NET_NONE: return "none";
	case GV_NET_NETSTACK: return "sandbox";
	case GV_NET_HOST: return "host";
	}
	return "none";
}

void gv_global_flags(const gv_runtime_t *rt, const char *id, const char *log_path,
		     gv_net_mode_t net, bool nvproxy, gv_argv_t *out)
{
	const gv_config_t *c = rt->cfg;
	gv_argv_addf(out, "--root=%s", rt->root_dir);
	gv_argv_addf(out, "--platform=%s", gv_platform_name(rt->platform));
	gv_argv_addf(out, "--network=%s", gv_net_mode_name(net));
	if (rt->probe.has_overlay2) {
		const char *o = c->overlay ? c->overlay : "none";
		if (strcmp(o, "none") == 0)
			gv_argv_add(out, "--overlay2=none");
		else
			gv_argv_addf(out, "--overlay2=root:%s", o);
	}
	if (log_path)
		gv_argv_addf(out, "--log=%s", log_path);
	if (c->debug_log_dir && *c->debug_log_dir) {
		gv_argv_add(out, "--debug");
		gv_argv_addf(out, "--debug-log=%s/%s.%%COMMAND%%.log", c->debug_log_dir, id);
	}
	if (nvproxy) {
		gv_argv_add(out, "--nvproxy");
		if (c->nvproxy_driver_version && *c->nvproxy_driver_version)
			gv_argv_addf(out, "--nvproxy-driver-version=%s",
				     c->nvproxy_driver_version);
	}
	if (c->extra_flags)
		for (char **f = c->extra_flags; *f; f++)
			gv_argv_add(out, *f);
}

/* runsc's text log lines look like "W1122 21:46:40.525674 1 x.go:12] msg";
 * the last one of level E (or W, failing that) is the one to show. */
void gv_log_last_error(const char *log_path, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (!log_path || cap == 0)
		return;
	_cleanup_close_ int fd = open(log_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return;
	off_t start = st.st_size > 65536 ? st.st_size - 65536 : 0;
	char tail[65537];
	ssize_t n = pread(fd, tail, sizeof tail - 1, start);
	if (n <= 0)
		return;
	tail[n] = '\0';
	const char *best = NULL, *best_w = NULL;
	size_t best_len = 0, best_w_len = 0;
	char json_msg[1024] = "";
	for (char *line = tail; *line;) {
		char *end = strchrnul(line, '\n');
		size_t len = (size_t)(end - line);
		/* `runsc run` reports its fatal error as one JSON record:
		 * {"msg":"...","level":"error",...}. */
		const char *m = len > 8 && line[0] == '{' ? strstr(line, "\"msg\":\"") : NULL;
		static const char level_error[] = "\"level\":\"error\"";
		if (m && m < end && memmem(line, len, level_error, sizeof level_error - 1)) {
			size_t k = 0;
			for (m += 7; m < end && *m != '"' && k < sizeof json_msg - 1; m++) {
				if (*m == '\\' && m + 1 < end)
					m++;
				json_msg[k++] = *m;
			}
			json_msg[k] = '\0';
		}
		if (len > 1 && (line[0] == 'E' || line[0] == 'F') && line[1] >= '0' &&
		    line[1] <= '9') {
			best = line;
			best_len = len;
		} else if (len > 1 && line[0] == 'W' && line[1] >= '0' && line[1] <= '9') {
			best_w = line;
			best_w_len = len;
		}
		line = *end ? end + 1 : end;
	}
	if (json_msg[0]) {
		snprintf(buf, cap, "%s", json_msg);
		return;
	}
	if (!best) {
		best = best_w;
		best_len = best_w_len;
	}
	if (!best)
		return;
	/* Drop the "E1122 21:46:40.525674 1 file.go:12] " prefix. */
	const char *msg = memchr(best, ']', best_len);
	if (msg && (size_t)(msg - best) + 2 <= best_len) {
		best_len -= (size_t)(msg + 2 - best);
		best = msg + 2;
	}
	if (best_len >= cap)
		best_len = cap - 1;
	memcpy(buf, best, best_len);
	buf[best_len] = '\0';
}

static void trim(char *s)
{
	size_t n = strlen(s);
	while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
		s[--n] = '\0';
}

int gv_runsc_run(const gv_runtime_t *rt, char *const *argv, gv_run_t *run,
		 const char *what, hutch_err_t *err)
{
	char small[2048];
	char *errbuf = run->err_out ? run->err_out : small;
	size_t errcap = run->err_out ? run->err_out_cap : sizeof small;
	bool capture_err = run->capture_stderr || run->err_out;
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = (const char *const *)argv,
		.stdin_fd = run->stdin_fd,
		.stdout_fd = run->stdout_fd,
		.stderr_fd = run->stderr_fd,
		.netns_fd = run->netns_fd,
		.timeout_ms = run->timeout_ms,
	};
	hutch_run_result_t res = {
		.size = sizeof res,
		.out = run->capture_stdout ? run->out : NULL,
		.out_cap = run->capture_stdout ? run->out_cap : 0,
		.err = capture_err ? errbuf : NULL,
		.err_cap = capture_err ? errcap : 0,
	};
	errbuf[0] = '\0';
	int r = rt->host->run(rt->host, &o, &res, err);
	if (r < 0)
		return hutch_err_prefix(err, "%s", what);
	run->exit_code = res.exit_code;
	run->term_signal = res.term_signal;
	if (res.timed_out)
		return hutch_err_set(err, ETIMEDOUT, "%s: runsc timed out after %lld ms",
				     what, (long long)run->timeout_ms);
	if (res.exit_code == 0)
		return 0;
	char why[1024] = "";
	if (capture_err) {
		trim(errbuf);
		/* runsc's message is the first line; usage text may follow. */
		char *nl = strchr(errbuf, '\n');
		if (nl)
			*nl = '\0';
		snprintf(why, sizeof why, "%.*s", (int)sizeof why - 1, errbuf);
	}
	if (!why[0])
		gv_log_last_error(run->log_path, why, sizeof why);
	if (res.term_signal)
		return hutch_err_set(err, EIO, "%s: runsc killed by signal %d%s%s", what,
				     res.term_signal, why[0] ? ": " : "", why);
	return hutch_err_set(err, EIO, "%s: runsc exited %d%s%s", what, res.exit_code,
			     why[0] ? ": " : "", why);
}
