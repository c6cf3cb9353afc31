/* PORT_WAIT: see agent_port.h. */
#include "agent_port.h"
#include "clock_ms.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent_meta.h" /* g_out */

typedef struct port_wait {
	bool used;
	uint32_t stream;
	uint16_t port;
	int fd;              /* a connect in progress, or -1 */
	int64_t started, deadline, next_try;
} port_wait_t;

static port_wait_t g_waits[AGENT_PORT_MAX_WAITS];

static void reply(uint32_t stream, int err, const char *msg)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, err ? AGENT_ERROR : AGENT_DONE, stream);
	if (err) {
		agent_frame_u32(&fb, AGENT_F_ERRNO, (uint32_t)err);
		agent_frame_str(&fb, AGENT_F_MESSAGE, msg);
	}
	agent_frame_end(&fb);
}

static void wait_end(port_wait_t *w)
{
	if (w->fd >= 0)
		close(w->fd);
	memset(w, 0, sizeof *w);
	w->fd = -1;
}

void port_wait_start(uint32_t stream, const agent_frame_t *f)
{
	uint32_t port = 0, timeout = 120000;
	agent_field_iter_t it;
	agent_field_t fld;
	agent_fields_begin(&it, f);
	while (agent_fields_next(&it, &fld)) {
		if (fld.tag == AGENT_F_PORT)
			agent_field_u32(&fld, &port);
		else if (fld.tag == AGENT_F_TIMEOUT_MS)
			agent_field_u32(&fld, &timeout);
	}
	if (it.malformed || port == 0 || port > 65535 || stream == 0)
		return reply(stream, EINVAL, "port wait: a port from 1 to 65535 on a stream");
	if (timeout > AGENT_PORT_MAX_TIMEOUT_MS)
		timeout = AGENT_PORT_MAX_TIMEOUT_MS;
	port_wait_t *w = NULL;
	for (size_t i = 0; i < AGENT_PORT_MAX_WAITS; i++) {
		if (g_waits[i].used && g_waits[i].stream == stream)
			return reply(stream, EEXIST, "port wait: stream in use");
		if (!g_waits[i].used && !w)
			w = &g_waits[i];
	}
	if (!w)
		return reply(stream, EBUSY, "port wait: too many at once");
	int64_t now = mono_ms();
	*w = (port_wait_t){.used = true, .stream = stream, .port = (uint16_t)port, .fd = -1,
			   .started = now, .deadline = now + timeout, .next_try = now};
}

bool port_wait_cancel(uint32_t stream)
{
	for (size_t i = 0; i < AGENT_PORT_MAX_WAITS; i++)
		if (g_waits[i].used && g_waits[i].stream == stream) {
			wait_end(&g_waits[i]);
			return true;
		}
	return false;
}

void port_close_all(void)
{
	for (size_t i = 0; i < AGENT_PORT_MAX_WAITS; i++)
		if (g_waits[i].used)
			wait_end(&g_waits[i]);
}

size_t port_max_fds(void)
{
	return AGENT_PORT_MAX_WAITS;
}

/* The next attempt: often at first, less so the longer the server takes. */
static void schedule(port_wait_t *w, int64_t now)
{
	int64_t age = now - w->started;
	w->next_try = now + (age < 1000 ? 2 : age < 10000 ? 10 : 50);
}

static void succeeded(port_wait_t *w)
{
	reply(w->stream, 0, NULL);
	wait_end(w);
}

/* Starts a connect; true if it is in progress (fd to poll). */
static bool attempt(port_wait_t *w, int64_t now)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		schedule(w, now);
		return false;
	}
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(w->port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
		close(fd);
		succeeded(w);
		return false;
	}
	if (errno == EINPROGRESS) {
		w->fd = fd;
		return true;
	}
	close(fd);
	schedule(w, now);
	return false;
}

size_t port_add_fds(struct pollfd *pfds, int *timeout)
{
	size_t n = 0;
	int64_t now = mono_ms();
	for (size_t i = 0; i < AGENT_PORT_MAX_WAITS; i++) {
		port_wait_t *w = &g_waits[i];
		if (!w->used)
			continue;
		if (now >= w->deadline) {
			char msg[96];
			snprintf(msg, sizeof msg, "port %u did not accept connections in time",
				 (unsigned)w->port);
			reply(w->stream, ETIMEDOUT, msg);
			wait_end(w);
			continue;
		}
		if (w->fd < 0 && now >= w->next_try && !attempt(w, now) && !w->used)
			continue; /* connected at once */
		if (w->fd >= 0)
			pfds[n++] = (struct pollfd){.fd = w->fd, .events = POLLOUT};
		int64_t due = w->fd >= 0 ? w->deadline : w->next_try;
		int left = (int)(due - now);
		if (left < 0)
			left = 0;
		if (*timeout < 0 || left < *timeout)
			*timeout = left;
	}
	return n;
}

void port_handle_fds(const struct pollfd *pfds, size_t n)
{
	int64_t now = mono_ms();
	for (size_t k = 0; k < n; k++) {
		if (!pfds[k].revents)
			continue;
		port_wait_t *w = NULL;
		for (size_t i = 0; i < AGENT_PORT_MAX_WAITS && !w; i++)
			if (g_waits[i].used && g_waits[i].fd == pfds[k].fd)
				w = &g_waits[i];
		if (!w)
			continue;
		int err = 0;
		socklen_t len = sizeof err;
		if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
			succeeded(w);
			continue;
		}
		close(w->fd);
		w->fd = -1;
		schedule(w, now);
	}
}
