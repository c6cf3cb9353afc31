/* hutch run and hutch exec: a command's stdio attached to this terminal. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "spec_opts.h"

static volatile sig_atomic_t g_pending_signal;
static volatile sig_atomic_t g_winch;

static void on_signal(int sig)
{
	g_pending_signal = sig;
}

static void on_winch(int sig)
{
	(void)sig;
	g_winch = 1;
}

static struct termios g_saved_tio;
static bool g_raw;

static void restore_tty(void)
{
	if (g_raw) {
		tcsetattr(0, TCSADRAIN, &g_saved_tio);
		g_raw = false;
	}
}

static void make_raw(void)
{
	struct termios t;
	if (tcgetattr(0, &g_saved_tio) < 0)
		return;
	t = g_saved_tio;
	cfmakeraw(&t);
	if (tcsetattr(0, TCSADRAIN, &t) == 0) {
		g_raw = true;
		atexit(restore_tty);
	}
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int cli_exec_attached(hutch_client_t *c, const char *sandbox, char **argv, int argc,
		      Hutch__V1__KeyValue **env, size_t n_env, const char *workdir,
		      const char *user, bool interactive, bool tty, int64_t timeout_ms)
{
	Hutch__V1__ExecStart start = HUTCH__V1__EXEC_START__INIT;
	start.sandbox_id = (char *)sandbox;
	start.argv = argv;
	start.n_argv = (size_t)argc;
	start.env = env;
	start.n_env = n_env;
	start.cwd = (char *)workdir;
	start.user = (char *)user;
	start.tty = tty;
	start.stdin = interactive;
	start.timeout_ms = timeout_ms;
	struct winsize ws;
	if (tty && ioctl(0, TIOCGWINSZ, &ws) == 0) {
		start.rows = ws.ws_row;
		start.cols = ws.ws_col;
	}
	hutch_exec_t *x;
	hutch_err_t err = {0};
	if (hutch_exec_start(c, &start, &x, &err) < 0)
		return cli_fail(&err);

	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	if (!tty) {
		/* Without a terminal, ^C and friends are sent on to the process. */
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
		sigaction(SIGQUIT, &sa, NULL);
	} else {
		struct sigaction sw = {.sa_handler = on_winch};
		sigemptyset(&sw.sa_mask);
		sigaction(SIGWINCH, &sw, NULL);
		if (isatty(0))
			make_raw();
	}
	signal(SIGPIPE, SIG_IGN);

	bool stdin_open = interactive;
	int rc = -1;
	uint8_t buf[32768];
	while (rc < 0) {
		if (g_pending_signal) {
			int s = g_pending_signal;
			g_pending_signal = 0;
			hutch_exec_signal(x, s, &err);
		}
		if (g_winch) {
			g_winch = 0;
			if (ioctl(0, TIOCGWINSZ, &ws) == 0)
				hutch_exec_resize(x, ws.ws_row, ws.ws_col, &err);
		}
		hutch_exec_event_t ev;
		int r;
		while ((r = hutch_exec_next(x, 0, &ev, &err)) == 1) {
			if (ev.kind == HUTCH_EXEC_STDOUT)
				write_all(1, ev.data, ev.len);
			else if (ev.kind == HUTCH_EXEC_STDERR)
				write_all(2, ev.data, ev.len);
			else if (ev.kind == HUTCH_EXEC_EXIT) {
				rc = ev.signal ? 128 + ev.signal : ev.exit_code;
				if (ev.oom_killed) {
					restore_tty();
					fprintf(stderr, "hutch: process killed: out of memory\n");
				} else if (ev.timed_out) {
					restore_tty();
					fprintf(stderr, "hutch: process killed: timeout\n");
				}
			}
		}
		if (rc >= 0)
			break;
		if (r < 0 && r != -EAGAIN) {
			restore_tty();
			cli_fail(&err);
			rc = 1;
			break;
		}
		struct pollfd p[2];
		nfds_t n = 0;
		p[n++] = (struct pollfd){.fd = hutch_exec_fd(x), .events = hutch_exec_events(x)};
		if (stdin_open && hutch_exec_writable(x))
			p[n++] = (struct pollfd){.fd = 0, .events = POLLIN};
		if (poll(p, n, 200) < 0 && errno != EINTR)
			break;
		if (n > 1 && p[1].revents) {
			ssize_t got = read(0, buf, sizeof buf);
			if (got > 0) {
				hutch_exec_stdin(x, buf, (size_t)got, &err);
			} else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
				stdin_open = false;
				hutch_exec_close_stdin(x, &err);
			}
		}
	}
	restore_tty();
	hutch_exec_free(x);
	return rc;
}

/* hutch exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] [--timeout D] ID -- CMD... */
int cmd_exec(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"interactive", no_argument, NULL, 'i'}, {"tty", no_argument, NULL, 't'},
		{"env", required_argument, NULL, 'e'},   {"workdir", required_argument, NULL, 'w'},
		{"user", required_argument, NULL, 'u'},  {"timeout", required_argument, NULL, 'T'},
		{0},
	};
	bool interactive = false, tty = false;
	Hutch__V1__KeyValue **env = NULL;
	size_t n_env = 0;
	const char *workdir = NULL, *user = NULL;
	int64_t timeout_s = 0;
	int c;
	while ((c = getopt_long(argc, argv, "+ite:w:u:", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': interactive = true; break;
		case 't': tty = true; break;
		case 'e':
			if (cli_add_kv(&env, &n_env, optarg) < 0)
				return cli_usage_error("-e %s: give KEY=VALUE", optarg);
			break;
		case 'w': workdir = optarg; break;
		case 'u': user = optarg; break;
		case 'T':
			if (cli_parse_duration_s(optarg, &timeout_s) < 0)
				return cli_usage_error("--timeout %s: give a duration like 30s", optarg);
			break;
		default:
			return cli_usage_error("usage: hutch exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] [--timeout D] ID -- CMD [ARG...]");
		}
	}
	const char *id = optind < argc ? argv[optind++] : NULL;
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	if (!id || optind >= argc)
		return cli_usage_error("usage: hutch exec [-i] [-t] ID -- CMD [ARG...]");
	hutch_client_t *client = cli_connect(cli);
	int rc = cli_exec_attached(client, id, argv + optind, argc - optind, env, n_env,
				   workdir, user, interactive, tty, timeout_s * 1000);
	hutch_client_close(client);
	for (size_t i = 0; i < n_env; i++) {
		free(env[i]->key);
		free(env[i]->value);
		free(env[i]);
	}
	free(env);
	return rc;
}

/* hutch run [spec options] [-i] [-t] [--keep] -- CMD... */
int cmd_run(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		SPEC_LONGOPTS,
		{"interactive", no_argument, NULL, OPT_INTERACTIVE},
		{"tty", no_argument, NULL, OPT_TTY},
		{"user", required_argument, NULL, OPT_USER},
		{"timeout", required_argument, NULL, OPT_TIMEOUT},
		{"keep", no_argument, NULL, OPT_KEEP},
		{0},
	};
	Hutch__V1__SandboxSpec spec = HUTCH__V1__SANDBOX_SPEC__INIT;
	bool interactive = false, tty = false, keep = false;
	const char *user = NULL;
	int64_t timeout_s = 0;
	int c, r;
	while ((c = getopt_long(argc, argv, "+ite:w:u:", longopts, NULL)) != -1) {
		switch (c) {
		case 'i': case OPT_INTERACTIVE: interactive = true; continue;
		case 't': case OPT_TTY: tty = true; continue;
		case 'u': case OPT_USER: user = optarg; continue;
		case OPT_KEEP: keep = true; continue;
		case OPT_TIMEOUT:
			if (cli_parse_duration_s(optarg, &timeout_s) < 0)
				return cli_usage_error("--timeout %s: give a duration like 30s", optarg);
			continue;
		case 'e': c = SPEC_ENV; break;
		case 'w': c = SPEC_WORKDIR; break;
		default: break;
		}
		if ((r = spec_opt(&spec, c, optarg)) != 0)
			return r == 1 ? cli_usage_error("usage: hutch run [OPTIONS] -- CMD [ARG...]") : r;
	}
	if (optind >= argc)
		return cli_usage_error("usage: hutch run [OPTIONS] -- CMD [ARG...]");
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__Sandbox *sb;
	hutch_err_t err = {0};
	int cr = hutch_sandbox_create(client, &spec, &sb, &err);
	spec_opts_free(&spec);
	if (cr < 0) {
		hutch_client_close(client);
		return cli_fail(&err);
	}
	/* The env went into the sandbox's spec; the exec inherits it. */
	int rc = cli_exec_attached(client, sb->id, argv + optind, argc - optind, NULL, 0, NULL, user,
				   interactive, tty, timeout_s * 1000);
	if (keep) {
		fprintf(stderr, "hutch: sandbox %s kept running\n", sb->id);
	} else {
		hutch_err_t e2 = {0};
		if (hutch_sandbox_stop(client, sb->id, 0, NULL, &e2) < 0)
			cli_fail(&e2);
		hutch_sandbox_delete(client, sb->id, &e2);
	}
	protobuf_c_message_free_unpacked(&sb->base, NULL);
	hutch_client_close(client);
	return rc;
}
