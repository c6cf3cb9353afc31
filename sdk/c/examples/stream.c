/*
 * stream.c: streamed exec with the C client library. Starts a process in a
 * running sandbox, feeds it this program's stdin, and prints its stdout and
 * stderr as they are produced, each line tagged with where it came from;
 * then reports how it ended.
 *
 *   stream SANDBOX COMMAND ARGS...      e.g. stream sb-1234 sh -c 'cat; echo done >&2'
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hutch_client.h"

static void tagged(const char *tag, const uint8_t *data, size_t len)
{
	/* Output arrives in chunks as the process writes it, not per line:
	 * tag each line of the chunk (a line split across chunks shows as
	 * two). */
	const char *p = (const char *)data, *end = p + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		printf("%s %.*s\n", tag, (int)n, p);
		p += n + (nl ? 1 : 0);
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: stream SANDBOX COMMAND ARGS...\n");
		return 2;
	}
	hutch_err_t err = {0};
	hutch_client_t *c;
	if (hutch_client_open(NULL, &c, &err) < 0) {
		fprintf(stderr, "stream: %s\n", err.message);
		return 1;
	}
	Hutch__V1__ExecStart start = HUTCH__V1__EXEC_START__INIT;
	start.sandbox_id = argv[1];
	start.argv = argv + 2;
	start.n_argv = (size_t)(argc - 2);
	start.stdin = true; /* we will write to it, then close it */
	hutch_exec_t *x;
	if (hutch_exec_start(c, &start, &x, &err) < 0) {
		fprintf(stderr, "stream: %s\n", err.message);
		hutch_client_close(c);
		return 1;
	}

	bool stdin_open = true;
	int rc = -1;
	while (rc < 0) {
		hutch_exec_event_t ev;
		int r;
		/* Take every event that is already here... */
		while ((r = hutch_exec_next(x, 0, &ev, &err)) == 1) {
			if (ev.kind == HUTCH_EXEC_STARTED)
				printf("[started]\n");
			else if (ev.kind == HUTCH_EXEC_STDOUT)
				tagged("[out]", ev.data, ev.len);
			else if (ev.kind == HUTCH_EXEC_STDERR)
				tagged("[err]", ev.data, ev.len);
			else if (ev.kind == HUTCH_EXEC_EXIT) {
				if (ev.signal)
					printf("[exit] killed by signal %d\n", ev.signal);
				else
					printf("[exit] %d%s\n", ev.exit_code,
					       ev.oom_killed ? " (out of memory)" : "");
				rc = ev.signal ? 128 + ev.signal : ev.exit_code;
			}
		}
		if (rc >= 0)
			break;
		if (r < 0 && r != -EAGAIN) { /* the sandbox stopped, the daemon went away */
			fprintf(stderr, "stream: %s\n", err.message);
			rc = 1;
			break;
		}
		/* ...then wait for the connection or for our stdin. */
		struct pollfd p[2] = {{.fd = hutch_exec_fd(x), .events = hutch_exec_events(x)}};
		nfds_t n = 1;
		if (stdin_open && hutch_exec_writable(x)) /* backpressure: only when it has room */
			p[n++] = (struct pollfd){.fd = 0, .events = POLLIN};
		if (poll(p, n, 1000) < 0 && errno != EINTR)
			break;
		if (n > 1 && p[1].revents) {
			char buf[16384];
			ssize_t got = read(0, buf, sizeof buf);
			if (got > 0) {
				hutch_exec_stdin(x, buf, (size_t)got, &err);
			} else {
				stdin_open = false;
				hutch_exec_close_stdin(x, &err); /* the process sees EOF */
			}
		}
	}
	hutch_exec_free(x);
	hutch_client_close(c);
	return rc;
}
