#include "agent_meta.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "nl_addr.h"
#include "clock_ms.h"

typedef struct meta_conn {
	int fd;
	uint32_t id;
	size_t relayed;
	bool eof;           /* the client sent everything it will */
	uint8_t *out;       /* the reply, while being written */
	size_t out_len, out_off;
	int64_t deadline;
} meta_conn_t;

static int g_listen_fd = -1;
static meta_conn_t g_conns[AGENT_META_MAX_CONNS];
static uint32_t g_next_conn = 1;
static bool g_conns_ready; /* g_conns' fds are -1, not 0 */

static void conns_init(void)
{
	if (g_conns_ready)
		return;
	for (size_t i = 0; i < AGENT_META_MAX_CONNS; i++)
		g_conns[i].fd = -1;
	g_conns_ready = true;
}

static void send_frame(uint8_t type, uint32_t stream, const void *data, size_t n)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, type, stream);
	agent_frame_raw(&fb, data, n);
	agent_frame_end(&fb);
}

void meta_prepare(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof data);
	if (syscall(SYS_capget, &hdr, data) < 0)
		return;
	const unsigned bit = 1u << (CAP_NET_ADMIN % 32);
	const int word = CAP_NET_ADMIN / 32;
	if (data[word].effective & bit)
		nl_addr_add4(1, AGENT_META_ADDR, 32); /* best effort: the host may have done it */
	/* Whatever happened, nothing started from here on gets it back. */
	prctl(PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	data[word].effective &= ~bit;
	data[word].permitted &= ~bit;
	data[word].inheritable &= ~bit;
	syscall(SYS_capset, &hdr, data);
}

static void conn_close(meta_conn_t *c, bool tell)
{
	if (c->fd < 0)
		return;
	close(c->fd);
	c->fd = -1;
	free(c->out);
	c->out = NULL;
	if (tell)
		send_frame(AGENT_META_EOF, c->id, NULL, 0);
}

static void listening(int err, const char *msg)
{
	agent_fb_t fb;
	agent_frame_begin(&fb, &g_out, AGENT_META_LISTENING, 0);
	agent_frame_u32(&fb, AGENT_F_ERRNO, (uint32_t)err);
	agent_frame_str(&fb, AGENT_F_MESSAGE, msg);
	agent_frame_end(&fb);
}

void meta_listen(void)
{
	if (g_listen_fd >= 0) {
		listening(0, "already listening");
		return;
	}
	conns_init();
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		listening(errno, "socket");
		return;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(AGENT_META_PORT)};
	inet_pton(AF_INET, AGENT_META_ADDR, &sa.sin_addr);
	/* The host may add the address a moment after the sandbox started. */
	int e = 0;
	for (int tries = 0; tries < 50; tries++) {
		if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
			e = 0;
			break;
		}
		e = errno;
		if (e != EADDRNOTAVAIL)
			break;
		usleep(20000);
	}
	if (e || listen(fd, 64) < 0) {
		int err = e ? e : errno;
		close(fd);
		char msg[128];
		snprintf(msg, sizeof msg, "bind %s:%d: %s", AGENT_META_ADDR, AGENT_META_PORT,
			 strerror(err));
		listening(err, msg);
		return;
	}
	g_listen_fd = fd;
	listening(0, "listening");
}

static meta_conn_t *conn_find(uint32_t id)
{
	conns_init();
	for (size_t i = 0; i < AGENT_META_MAX_CONNS; i++)
		if (g_conns[i].fd >= 0 && g_conns[i].id == id)
			return &g_conns[i];
	return NULL;
}

void meta_reply(uint32_t id, const uint8_t *data, size_t n)
{
	meta_conn_t *c = conn_find(id);
	if (!c || c->out)
		return;
	c->out = malloc(n ? n : 1);
	if (!c->out) {
		conn_close(c, true);
		return;
	}
	memcpy(c->out, data, n);
	c->out_len = n;
	c->out_off = 0;
	c->eof = true; /* nothing more is read */
	c->deadline = mono_ms() + AGENT_META_TIMEOUT_MS;
}

void meta_close_all(void)
{
	conns_init();
	for (size_t i = 0; i < AGENT_META_MAX_CONNS; i++)
		conn_close(&g_conns[i], false);
	if (g_listen_fd >= 0) {
		close(g_listen_fd);
		g_listen_fd = -1;
	}
}

size_t meta_max_fds(void)
{
	return 1 + AGENT_META_MAX_CONNS;
}

size_t meta_add_fds(struct pollfd *pfds, int *timeout)
{
	if (g_listen_fd < 0)
		return 0;
	size_t n = 0;
	pfds[n++] = (struct pollfd){.fd = g_listen_fd, .events = POLLIN};
	int64_t now = mono_ms();
	for (size_t i = 0; i < AGENT_META_MAX_CONNS; i++) {
		meta_conn_t *c = &g_conns[i];
		if (c->fd < 0)
			continue;
		if (now >= c->deadline) {
			conn_close(c, true);
			continue;
		}
		int left = (int)(c->deadline - now);
		if (*timeout < 0 || left < *timeout)
			*timeout = left;
		short ev = c->out ? POLLOUT : (!c->eof && c->relayed < AGENT_META_MAX_REQUEST) ? POLLIN : 0;
		/* Waiting for hutchd's answer: not polled (a closed peer would
		 * report POLLHUP over and over), only timed. */
		if (ev)
			pfds[n++] = (struct pollfd){.fd = c->fd, .events = ev};
	}
	return n;
}

static void on_accept(void)
{
	for (int k = 0; k < 8; k++) {
		int fd = accept4(g_listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		meta_conn_t *slot = NULL;
		for (size_t i = 0; i < AGENT_META_MAX_CONNS && !slot; i++)
			if (g_conns[i].fd < 0)
				slot = &g_conns[i];
		if (!slot) {
			close(fd); /* too many at once */
			continue;
		}
		*slot = (meta_conn_t){
			.fd = fd,
			.id = AGENT_META_STREAM_BIT | (g_next_conn++ & ~AGENT_META_STREAM_BIT),
			.deadline = mono_ms() + AGENT_META_TIMEOUT_MS,
		};
	}
}

void meta_handle_fds(const struct pollfd *pfds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!pfds[i].revents)
			continue;
		if (pfds[i].fd == g_listen_fd) {
			on_accept();
			continue;
		}
		meta_conn_t *c = NULL;
		for (size_t k = 0; k < AGENT_META_MAX_CONNS && !c; k++)
			if (g_conns[k].fd == pfds[i].fd)
				c = &g_conns[k];
		if (!c)
			continue;
		if (c->out) {
			ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
			if (w > 0)
				c->out_off += (size_t)w;
			if ((w < 0 && errno != EAGAIN && errno != EINTR) || c->out_off == c->out_len)
				conn_close(c, false); /* hutchd already forgot it */
			continue;
		}
		uint8_t buf[8192];
		size_t room = AGENT_META_MAX_REQUEST - c->relayed;
		ssize_t r = read(c->fd, buf, room < sizeof buf ? room : sizeof buf);
		if (r > 0) {
			c->relayed += (size_t)r;
			send_frame(AGENT_META_DATA, c->id, buf, (size_t)r);
		} else if (r == 0) {
			c->eof = true;
			send_frame(AGENT_META_EOF, c->id, NULL, 0);
		} else if (errno != EAGAIN && errno != EINTR) {
			conn_close(c, true);
		}
	}
}
