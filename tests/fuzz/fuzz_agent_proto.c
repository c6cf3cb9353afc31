/* Fuzzes what hutchd reads from a sandbox's agent: frames and their
 * fields, fed into a live agent session with open streams of every kind.
 * Code inside a sandbox can write anything to that pipe. */
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "agent_conn.h"

static int g_events;

static void on_started(void *ud, uint32_t pid) { (void)ud; g_events += (int)(pid & 1); }
static void on_bytes(void *ud, const uint8_t *d, size_t n)
{
	(void)ud;
	if (n)
		g_events += d[0] & 1 ? 1 : 0;
}
static void on_credit(void *ud, uint32_t n) { (void)ud; g_events += (int)(n & 1); }
static void on_exit_(void *ud, int code, int sig) { (void)ud; g_events += code + sig; }
static void on_entry(void *ud, const agent_entry_t *e)
{
	(void)ud;
	/* The decoder promises these. */
	if (!e->path[0] || e->size < 0 || e->mode > 07777)
		__builtin_trap();
	g_events += (int)strlen(e->path);
}
static void on_end(void *ud) { (void)ud; g_events++; }
static void on_error(void *ud, int e, const char *msg)
{
	(void)ud;
	if (e <= 0 || e > 4095 || !msg)
		__builtin_trap();
	for (const char *p = msg; *p; p++)
		if ((unsigned char)*p < 0x20)
			__builtin_trap(); /* messages reach logs: no control characters */
}

static const agent_stream_ops_t ops = {
	.on_started = on_started, .on_stdout = on_bytes, .on_stderr = on_bytes,
	.on_stdin_credit = on_credit, .on_exit = on_exit_, .on_entry = on_entry,
	.on_data = on_bytes, .on_data_end = on_end, .on_done = on_end, .on_error = on_error,
};

static void closed(void *data, const char *reason)
{
	(void)data;
	(void)reason;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uv_loop_t loop;
	static bool init;
	if (!init) {
		uv_loop_init(&loop);
		init = true;
	}
	int to[2], from[2];
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
		return 0;
	agent_conn_t *c;
	if (agent_conn_open(&loop, to[1], from[0], closed, NULL, &c, NULL) < 0)
		return 0;
	/* Streams 1..5 exist, as an exec, a get, a put, a list and a port
	 * wait would. */
	for (int i = 0; i < 4; i++)
		agent_stream_open(c, &ops, NULL);
	agent_send_port_wait(c, agent_stream_open(c, &ops, NULL), 8080, 1000);
	/* Feed in two pieces to exercise frames split across reads. */
	size_t cut = size ? data[0] % (size + 1) : 0;
	agent_conn_feed(c, data, cut);
	agent_conn_feed(c, data + cut, size - cut);
	g_events += (int)(agent_conn_version(c) & 1);
	agent_conn_close(c, "done");
	uv_run(&loop, UV_RUN_DEFAULT);
	close(to[0]);
	close(from[1]);
	return 0;
}
