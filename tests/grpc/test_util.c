#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int test_failures;

uint64_t test_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void test_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int make_cert(struct test_server *s)
{
	char cmd[1024];
	snprintf(s->cert, sizeof s->cert, "%s/cert.pem", s->dir);
	snprintf(s->key, sizeof s->key, "%s/key.pem", s->dir);
	snprintf(cmd, sizeof cmd,
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
		 "-keyout %s -out %s -days 1 -subj /CN=localhost "
		 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
		 s->key, s->cert);
	return system(cmd) == 0 ? 0 : -1;
}

int test_server_start(struct test_server *s, const char *server_bin, const char *const *extra)
{
	memset(s, 0, sizeof *s);
	strcpy(s->dir, "/tmp/grpc-test-XXXXXX");
	if (!mkdtemp(s->dir))
		return -1;
	snprintf(s->sock, sizeof s->sock, "%s/echo.sock", s->dir);
	snprintf(s->target, sizeof s->target, "unix:%s", s->sock);
	return test_server_restart(s, server_bin, extra);
}

int test_run_expect_exit(const char *server_bin, const char *const *args, int timeout_ms)
{
	const char *argv[32];
	size_t n = 0;
	argv[n++] = server_bin;
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		execv(server_bin, (char *const *)argv);
		_exit(127);
	}
	uint64_t until = test_now_ms() + (uint64_t)timeout_ms;
	int st;
	while (test_now_ms() < until) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
		test_sleep_ms(20);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

int test_server_restart(struct test_server *s, const char *server_bin, const char *const *extra)
{
	s->port = -1;

	const char *argv[32];
	size_t n = 0;
	argv[n++] = server_bin;
	argv[n++] = "--unix";
	argv[n++] = s->sock;
	for (size_t i = 0; extra && extra[i] && n < 30; i++) {
		if (strcmp(extra[i], "@CERT@") == 0 || strcmp(extra[i], "@KEY@") == 0) {
			if (!s->cert[0] && make_cert(s) < 0) {
				fprintf(stderr, "openssl failed\n");
				return -1;
			}
			argv[n++] = strcmp(extra[i], "@CERT@") == 0 ? s->cert : s->key;
		} else {
			argv[n++] = extra[i];
		}
	}
	argv[n] = NULL;

	int p[2];
	if (pipe(p) < 0)
		return -1;
	s->pid = fork();
	if (s->pid < 0)
		return -1;
	if (s->pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		close(p[1]);
		execv(server_bin, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	char line[256];
	size_t len = 0;
	uint64_t until = test_now_ms() + 10000;
	while (len < sizeof line - 1 && test_now_ms() < until) {
		struct pollfd pfd = { .fd = p[0], .events = POLLIN };
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		ssize_t r = read(p[0], line + len, 1);
		if (r <= 0)
			break;
		if (line[len++] == '\n')
			break;
	}
	line[len] = '\0';
	close(p[0]);
	const char *t = strstr(line, "tcp=");
	if (strncmp(line, "grpc-echo-server:", 17) != 0 || !t) {
		fprintf(stderr, "server did not start: %s\n", line);
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
		return -1;
	}
	s->port = atoi(t + 4);
	return 0;
}

void test_server_kill(struct test_server *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
	}
	s->pid = 0;
}

bool test_server_alive(struct test_server *s)
{
	return s->pid > 0 && waitpid(s->pid, NULL, WNOHANG) == 0;
}

int test_server_stop(struct test_server *s)
{
	int rc = -1;
	if (s->pid > 0 && waitpid(s->pid, NULL, WNOHANG) == 0) {
		kill(s->pid, SIGTERM);
		uint64_t until = test_now_ms() + 10000;
		int st;
		pid_t w;
		while ((w = waitpid(s->pid, &st, WNOHANG)) == 0 && test_now_ms() < until)
			test_sleep_ms(20);
		if (w == s->pid && WIFEXITED(st)) {
			rc = WEXITSTATUS(st);
			if (access(s->sock, F_OK) == 0) {
				fprintf(stderr, "server left its socket file behind\n");
				rc = -1;
			}
		}
		else if (w == s->pid)
			fprintf(stderr, "server died with signal %d\n", WTERMSIG(st));
		else {
			fprintf(stderr, "server hung on SIGTERM\n");
			kill(s->pid, SIGKILL);
			waitpid(s->pid, NULL, 0);
		}
	} else {
		fprintf(stderr, "server was not running any more\n");
	}
	s->pid = 0;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", s->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", s->dir);
	return rc;
}
