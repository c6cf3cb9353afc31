/*
 * test_wireguard.c: net-wireguard after net-egress, against the real
 * kernel and a real wireguard-go, in namespaces the test process makes
 * (see net_harness.h). `test_wireguard CASE` runs one case; CTest runs each
 * as its own test, in parallel.
 *
 * A "member" here is what hutchd makes of a sandbox in a tunnel: a
 * namespace from net-egress, then net-wireguard's attach with the tunnel
 * names. Traffic goes only between namespaces of this test.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cleanup.h"
#include "net_harness.h"
#include "strbuf.h"

#ifndef HUTCH_WG_PLUGIN_PATH
#error "HUTCH_WG_PLUGIN_PATH must name the built net-wireguard.so"
#endif

static egress_t g_eg, g_wg;
static char g_prefix[16]; /* host_prefix: unique per test process */

typedef struct member {
	sandbox_t sb;
	char addr[64]; /* tunnel address, no prefix */
} member_t;

/* ---- setup ---- */

static void wg_processes_kill(void);

static int wg_try_load(const char *extra, hutch_err_t *e)
{
	bool own_prefix = extra && strstr(extra, "host_prefix");
	_cleanup_free_ char *cfg = own_prefix ? xasprintf("%s\n", extra)
					      : xasprintf("host_prefix = \"%s\"\n%s\n", g_prefix,
							  extra ? extra : "");
	return chain_plugin_try_load(HUTCH_WG_PLUGIN_PATH, "net-wireguard", cfg, &g_wg, e);
}

static void wg_load(const char *extra)
{
	hutch_err_t e = {0};
	int r = wg_try_load(extra, &e);
	CHECK(r == 0, "load net-wireguard: %s", e.message);
}

/* Names files live in the world's own directory (world_base), known once
 * world_setup ran: "@NAMES@" in a config stands for it. */
static char *config_names(const char *cfg)
{
	if (!cfg)
		return NULL;
	const char *at = strstr(cfg, "@NAMES@");
	if (!at)
		return xstrdup(cfg);
	return xasprintf("%.*s%s/names%s", (int)(at - cfg), cfg, world_base(), at + 7);
}

static void start_with(const char *egress_extra, const char *extra)
{
	snprintf(g_prefix, sizeof g_prefix, "w%04x", (unsigned)getpid() & 0xffff);
	atexit(wg_processes_kill);
	if (access("/usr/bin/wireguard-go", X_OK) != 0 && access("/usr/sbin/wireguard-go", X_OK) != 0)
		SKIP("no wireguard-go (scripts/install-deps.sh installs it)");
	if (access("/dev/net/tun", R_OK | W_OK) != 0)
		SKIP("no /dev/net/tun");
	world_setup(60);
	_cleanup_free_ char *e1 = config_names(egress_extra);
	_cleanup_free_ char *e2 = config_names(extra);
	egress_load(&g_eg, e1);
	wg_load(e2);
}

static void start(const char *extra)
{
	start_with(NULL, extra);
}

static const char *g_sandbox_name; /* the next attach's name, or NULL */

/* Attaches a sandbox through the chain, into the given tunnels (NULL-
 * terminated names). */
static int member_attach_try(member_t *m, const char *tenant, const char *const *tunnels,
			     hutch_err_t *e)
{
	memset(m, 0, sizeof *m);
	sandbox_attach(&g_eg, &m->sb, tenant, NULL, 0, false);
	hutch_net_tunnel_t t[4];
	const hutch_net_tunnel_t *tp[4];
	size_t n = 0;
	for (; tunnels && tunnels[n]; n++) {
		t[n] = (hutch_net_tunnel_t){.size = sizeof t[n], .name = tunnels[n]};
		tp[n] = &t[n];
	}
	hutch_net_attach_t req = {
		.size = sizeof req,
		.sandbox_id = m->sb.id,
		.tenant = tenant ? tenant : "tenant-a",
		.netns_path = m->sb.netns,
		.tunnels = n ? tp : NULL,
		.n_tunnels = n,
		.sandbox_name = g_sandbox_name,
	};
	hutch_net_attachment_t out = {.size = sizeof out};
	int r = g_wg.ops->attach(g_wg.inst, &req, &out, e);
	if (r == 0 && out.addresses[0][0])
		snprintf(m->addr, sizeof m->addr, "%.*s", (int)strcspn(out.addresses[0], "/"),
			 out.addresses[0]);
	return r;
}

static void member_attach(member_t *m, const char *tenant, const char *const *tunnels)
{
	hutch_err_t e = {0};
	CHECK_OK(member_attach_try(m, tenant, tunnels, &e), &e);
	CHECK(!tunnels || !tunnels[0] || m->addr[0], "attach gave no tunnel address");
}

static void member_detach(member_t *m)
{
	hutch_err_t e = {0};
	CHECK_OK(g_wg.ops->detach(g_wg.inst, m->sb.id, &e), &e);
	sandbox_detach(&g_eg, &m->sb);
}

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- looking around ---- */

/* The pids of this test's wireguard-go processes (argv names a device
 * with our prefix). */
static size_t wg_pids(pid_t *out, size_t cap)
{
	_cleanup_closedir_ DIR *d = opendir("/proc");
	struct dirent *de;
	size_t n = 0;
	while (d && (de = readdir(d))) {
		pid_t pid = (pid_t)atoi(de->d_name);
		if (pid <= 0)
			continue;
		char path[64], cmd[256];
		snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
		_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t len = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : -1;
		if (len <= 0)
			continue;
		cmd[len] = '\0';
		if (!strstr(cmd, "wireguard-go"))
			continue;
		for (ssize_t i = 0; i < len; i += (ssize_t)strlen(cmd + i) + 1)
			if (strncmp(cmd + i, g_prefix, strlen(g_prefix)) == 0) {
				if (n < cap)
					out[n] = pid;
				n++;
				break;
			}
	}
	return n;
}

static void wg_processes_kill(void)
{
	pid_t pids[256];
	size_t n = wg_pids(pids, 256);
	for (size_t i = 0; i < n && i < 256; i++)
		kill(pids[i], SIGKILL);
	/* And their sockets. */
	_cleanup_closedir_ DIR *d = opendir("/var/run/wireguard");
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (g_prefix[0] && strncmp(de->d_name, g_prefix, strlen(g_prefix)) == 0) {
			char p[300];
			snprintf(p, sizeof p, "/var/run/wireguard/%s", de->d_name);
			unlink(p);
		}
}

static size_t wg_sockets(void)
{
	_cleanup_closedir_ DIR *d = opendir("/var/run/wireguard");
	struct dirent *de;
	size_t n = 0;
	while (d && (de = readdir(d)))
		n += strncmp(de->d_name, g_prefix, strlen(g_prefix)) == 0;
	return n;
}

typedef struct count_job {
	const char *file;
	int lines;
} count_job_t;

static void *count_lines_thread(void *arg)
{
	count_job_t *j = arg;
	j->lines = 0;
	_cleanup_fclose_ FILE *f = fopen(j->file, "re");
	char line[512];
	while (f && fgets(line, sizeof line, f))
		j->lines++;
	return NULL;
}

/* UDP sockets of the namespace nsfd (-1: this process's). */
static int udp_sockets_in(int nsfd)
{
	int total = 0;
	const char *files[] = {"/proc/thread-self/net/udp", "/proc/thread-self/net/udp6"};
	for (int i = 0; i < 2; i++) {
		count_job_t j = {files[i], 0};
		if (nsfd >= 0)
			in_netns(nsfd, count_lines_thread, &j);
		else
			count_lines_thread(&j);
		total += j.lines > 0 ? j.lines - 1 : 0; /* minus the header */
	}
	return total;
}

static int links_in(const member_t *m, const char *needle)
{
	_cleanup_free_ char *cmd = xasprintf("ip -o link | grep -q '%s'", needle);
	return sandbox_sh(&m->sb, cmd) == 0;
}

static int open_fds(void)
{
	_cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
	int n = 0;
	while (d && readdir(d))
		n++;
	return n;
}

/* ---- traffic ---- */

typedef struct udp_echo {
	int fd;
	int stop[2];
	pthread_t thread;
} udp_echo_t;

typedef struct udp_bind_job {
	const char *addr;
	uint16_t port;
	int fd;
} udp_bind_job_t;

static void *udp_bind_thread(void *arg)
{
	udp_bind_job_t *j = arg;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(j->port)};
	inet_pton(AF_INET, j->addr, &sa.sin_addr);
	j->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (bind(j->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(j->fd);
		j->fd = -1;
	}
	return NULL;
}

static void *udp_echo_main(void *arg)
{
	udp_echo_t *u = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = u->fd, .events = POLLIN}, {.fd = u->stop[0], .events = POLLIN}};
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		char buf[512];
		struct sockaddr_storage from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(u->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
		if (n > 0)
			sendto(u->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
	}
}

static udp_echo_t *udp_echo_start(const member_t *m, uint16_t port)
{
	udp_bind_job_t j = {m->addr, port, -1};
	in_netns(m->sb.nsfd, udp_bind_thread, &j);
	CHECK(j.fd >= 0, "UDP bind on %s:%u", m->addr, port);
	udp_echo_t *u = xcalloc(1, sizeof *u);
	u->fd = j.fd;
	CHECK(pipe2(u->stop, O_CLOEXEC) == 0, "pipe");
	pthread_create(&u->thread, NULL, udp_echo_main, u);
	return u;
}

static void udp_echo_stop(udp_echo_t *u)
{
	if (write(u->stop[1], "x", 1) < 0) {
	}
	pthread_join(u->thread, NULL);
	close(u->stop[0]);
	close(u->stop[1]);
	close(u->fd);
	free(u);
}

static int tcp_to(const member_t *from, const char *addr, uint16_t port, int timeout_ms,
		  char reply[256])
{
	probe_t p = {.kind = PROBE_TCP, .addr = addr, .port = port, .timeout_ms = timeout_ms};
	sandbox_probe(&from->sb, &p);
	if (reply)
		snprintf(reply, 256, "%s", p.reply);
	return p.error;
}

static int udp_to(const member_t *from, const char *addr, uint16_t port, int timeout_ms)
{
	probe_t p = {.kind = PROBE_UDP, .addr = addr, .port = port, .timeout_ms = timeout_ms};
	sandbox_probe(&from->sb, &p);
	return p.error;
}

static void expect_tcp(const member_t *from, const member_t *to, uint16_t port, const char *why)
{
	char reply[256] = "";
	int e = tcp_to(from, to->addr, port, 3000, reply);
	CHECK(e == 0, "%s: TCP %s -> %s:%u: %s", why, from->sb.id, to->addr, port, strerror(e));
	CHECK(strncmp(reply, "hello ", 6) == 0, "%s: answered `%s`", why, reply);
}

static void expect_no_tcp(const member_t *from, const char *addr, uint16_t port, const char *why)
{
	int e = tcp_to(from, addr, port, 1000, NULL);
	CHECK(e != 0, "%s: TCP %s -> %s:%u connected", why, from->sb.id, addr, port);
}

/* ---- cases ---- */

static void case_mesh(void)
{
	start(NULL);
	member_t a, b;
	member_attach(&a, "tenant-a", LIST("mesh"));
	member_attach(&b, "tenant-a", LIST("mesh"));
	CHECK(strcmp(a.addr, b.addr) != 0, "two members, one address %s", a.addr);
	CHECK(strncmp(a.addr, "10.250.0.", 9) == 0, "address %s is not from the pool", a.addr);
	CHECK(links_in(&a, "wg0"), "no wg0 inside the sandbox");
	tcp_server_t *sa = tcp_server_start(a.sb.nsfd, a.addr, 80);
	tcp_server_t *sb = tcp_server_start(b.sb.nsfd, b.addr, 8080);
	udp_echo_t *ub = udp_echo_start(&b, 7);
	expect_tcp(&a, &b, 8080, "A to B over the tunnel");
	expect_tcp(&b, &a, 80, "B to A over the tunnel");
	CHECK(udp_to(&a, b.addr, 7, 2000) == 0, "UDP echo from B over the tunnel");
	/* WireGuard's sockets are on the host side: none in the sandboxes. */
	CHECK(udp_sockets_in(a.sb.nsfd) == 0, "a UDP socket inside A's namespace");
	CHECK(udp_sockets_in(-1) >= 4, "wireguard-go's sockets are not in the host's namespace");
	pid_t pids[8];
	CHECK(wg_pids(pids, 8) == 2, "one wireguard-go per member");
	/* A third member reaches both, and they reach it. */
	member_t c;
	member_attach(&c, "tenant-a", LIST("mesh"));
	tcp_server_t *sc = tcp_server_start(c.sb.nsfd, c.addr, 80);
	expect_tcp(&c, &a, 80, "a late member to the first");
	expect_tcp(&b, &c, 80, "the second to a late member");
	/* One leaves: the others keep talking. */
	tcp_server_stop(sc);
	member_detach(&c);
	expect_tcp(&a, &b, 8080, "after a member left");
	udp_echo_stop(ub);
	tcp_server_stop(sa);
	tcp_server_stop(sb);
	member_detach(&a);
	member_detach(&b);
}

static void case_isolation(void)
{
	start(NULL);
	member_t a, b, other, none, foreign;
	member_attach(&a, "tenant-a", LIST("mesh"));
	member_attach(&b, "tenant-a", LIST("mesh"));
	member_attach(&other, "tenant-a", LIST("other"));
	member_attach(&none, "tenant-a", NULL);
	member_attach(&foreign, "tenant-b", LIST("mesh"));
	CHECK(strcmp(foreign.addr, a.addr) != 0 && strncmp(foreign.addr, a.addr, 9) != 0,
	      "tenant-b's mesh (%s) shares tenant-a's subnet (%s)", foreign.addr, a.addr);
	tcp_server_t *sa = tcp_server_start(a.sb.nsfd, a.addr, 80);
	tcp_server_t *sf = tcp_server_start(foreign.sb.nsfd, foreign.addr, 80);
	expect_tcp(&b, &a, 80, "a member of the same tunnel");
	expect_no_tcp(&other, a.addr, 80, "a member of another tunnel");
	expect_no_tcp(&none, a.addr, 80, "a sandbox in no tunnel");
	expect_no_tcp(&foreign, a.addr, 80, "the same tunnel name in another tenant");
	expect_no_tcp(&a, foreign.addr, 80, "into another tenant's tunnel of that name");
	/* Through the tunnel only members: not the host, not the reserved
	 * gateway address, not anything else. */
	tcp_server_t *sh = tcp_server_start(-1, IP_HOST_UPLINK, 9);
	expect_no_tcp(&a, IP_HOST_UPLINK, 9, "the host");
	char gw[64];
	snprintf(gw, sizeof gw, "%.*s1", (int)(strrchr(a.addr, '.') - a.addr + 1), a.addr);
	expect_no_tcp(&a, gw, 80, "the tunnel's gateway address, with no gateway");
	tcp_server_stop(sh);
	/* net-egress still governs eth0: the member's egress works as before. */
	expect_connects(&a.sb, IP_ALLOWED, "egress over eth0 of a member");
	tcp_server_stop(sa);
	tcp_server_stop(sf);
	member_t *all[] = {&a, &b, &other, &none, &foreign};
	for (size_t i = 0; i < ARRAY_SIZE(all); i++)
		member_detach(all[i]);
}

/* The private key of the member behind a UAPI socket, as wireguard-go
 * tells it (only root on the host can ask). */
static void private_key_of(const char *sock, char hex[65])
{
	hex[0] = '\0';
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
	_cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || write(fd, "get=1\n\n", 7) != 7)
		return;
	char buf[8192];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0) {
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, "\n\n"))
			break;
	}
	buf[len] = '\0';
	const char *k = strstr(buf, "private_key=");
	if (k)
		snprintf(hex, 65, "%.64s", k + 12);
}

static bool file_has(const char *path, const char *needle)
{
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return false;
	char buf[8192];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	return strstr(buf, needle) != NULL;
}

static int tree_has(const char *dir, const char *needle)
{
	_cleanup_free_ char *cmd = xasprintf("grep -rlF '%s' %s >/dev/null 2>&1", needle, dir);
	return system(cmd) == 0;
}

static void case_keys(void)
{
	start(NULL);
	member_t a, b;
	member_attach(&a, "tenant-a", LIST("mesh"));
	member_attach(&b, "tenant-a", LIST("mesh"));
	char dir[300];
	snprintf(dir, sizeof dir, "%s/run/plugins/net-wireguard/members", world_base());
	_cleanup_closedir_ DIR *d = opendir(dir);
	CHECK(d, "no state dir %s", dir);
	struct dirent *de;
	char socks[2][128] = {"", ""};
	int n = 0;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && n < 2) {
			char path[600], line[256];
			snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
			_cleanup_fclose_ FILE *f = fopen(path, "re");
			while (f && fgets(line, sizeof line, f))
				if (strncmp(line, "device=", 7) == 0)
					snprintf(socks[n++], 128, "/var/run/wireguard/%.*s.sock",
						 (int)strcspn(line + 7, "\n"), line + 7);
		}
	CHECK(n == 2, "two members' state files, found %d", n);
	char priv[2][65];
	for (int i = 0; i < 2; i++) {
		private_key_of(socks[i], priv[i]);
		CHECK(strlen(priv[i]) == 64, "private key of %s not read", socks[i]);
		/* Canary: the key is nowhere on disk the plugin writes, nor in the
		 * sockets' directory. */
		CHECK(!tree_has(world_base(), priv[i]), "a private key is on disk under %s",
		      world_base());
	}
	CHECK(strcmp(priv[0], priv[1]) != 0, "two members share a key");
	/* A new session gets a new key. */
	member_detach(&b);
	member_attach(&b, "tenant-a", LIST("mesh"));
	tcp_server_t *s = tcp_server_start(b.sb.nsfd, b.addr, 80);
	expect_tcp(&a, &b, 80, "a member that came back");
	tcp_server_stop(s);
	closedir(d);
	d = opendir(dir);
	while ((de = readdir(d)))
		if (strstr(de->d_name, b.sb.id)) {
			char path[600], line[256], sock[128] = "";
			snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
			_cleanup_fclose_ FILE *f = fopen(path, "re");
			while (f && fgets(line, sizeof line, f))
				if (strncmp(line, "device=", 7) == 0)
					snprintf(sock, sizeof sock, "/var/run/wireguard/%.*s.sock",
						 (int)strcspn(line + 7, "\n"), line + 7);
			char again[65];
			private_key_of(sock, again);
			CHECK(strlen(again) == 64 && strcmp(again, priv[0]) != 0 &&
				      strcmp(again, priv[1]) != 0,
			      "a new session must get a new key");
		}
	(void)file_has;
	member_detach(&a);
	member_detach(&b);
}

static void case_teardown(void)
{
	start(NULL);
	int fds0 = open_fds();
	int udp0 = udp_sockets_in(-1);
	member_t a, b;
	member_attach(&a, "tenant-a", LIST("mesh"));
	member_attach(&b, "tenant-a", LIST("mesh"));
	pid_t pids[8];
	CHECK(wg_pids(pids, 8) == 2 && wg_sockets() == 2, "two processes and sockets");
	hutch_err_t e = {0};
	CHECK_OK(g_wg.ops->detach(g_wg.inst, b.sb.id, &e), &e);
	/* Before net-egress removes the namespace: the interface is gone
	 * already, with the process, its socket and its UDP port. */
	CHECK(!links_in(&b, "wg0"), "wg0 left in the namespace after detach");
	CHECK(wg_pids(pids, 8) == 1, "the member's wireguard-go still runs");
	CHECK(wg_sockets() == 1, "the member's UAPI socket is left");
	CHECK(udp_sockets_in(-1) == udp0 + 2, "the member's UDP sockets are left");
	/* Detach is idempotent. */
	CHECK_OK(g_wg.ops->detach(g_wg.inst, b.sb.id, &e), &e);
	sandbox_detach(&g_eg, &b.sb);
	/* A leaves through tunnel_remove while it runs on. */
	CHECK_OK(g_wg.ops->tunnel_remove(g_wg.inst, a.sb.id, "mesh", &e), &e);
	CHECK(!links_in(&a, "wg0"), "wg0 left after tunnel_remove");
	CHECK(g_wg.ops->tunnel_remove(g_wg.inst, a.sb.id, "mesh", &e) == -ENOENT,
	      "a second remove: %s", e.message);
	member_detach(&a);
	CHECK(wg_pids(pids, 8) == 0 && wg_sockets() == 0, "processes or sockets left");
	CHECK(udp_sockets_in(-1) == udp0, "UDP sockets left");
	CHECK(open_fds() <= fds0, "fds: %d before, %d after", fds0, open_fds());
	char dir[300];
	snprintf(dir, sizeof dir, "%s/run/plugins/net-wireguard/members", world_base());
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		CHECK(de->d_name[0] == '.', "state file %s left", de->d_name);
}

static long rss_kib(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld", &v) == 1)
			break;
	return v;
}

static void case_cycles(void)
{
	int cycles = getenv("WG_CYCLES") ? atoi(getenv("WG_CYCLES")) : 1000;
	start(NULL);
	member_t a, b;
	member_attach(&a, "tenant-a", LIST("mesh"));
	member_attach(&b, "tenant-a", NULL);
	tcp_server_t *s = tcp_server_start(a.sb.nsfd, a.addr, 80);
	hutch_err_t e = {0};
	hutch_net_tunnel_t t = {.size = sizeof t, .name = "mesh"};
	/* A first cycle, so that what is made once (threads, caches) is. */
	CHECK_OK(g_wg.ops->tunnel_add(g_wg.inst, b.sb.id, &t, &e), &e);
	CHECK_OK(g_wg.ops->tunnel_remove(g_wg.inst, b.sb.id, "mesh", &e), &e);
	int fds0 = open_fds(), udp0 = udp_sockets_in(-1);
	long rss0 = rss_kib();
	int64_t t0 = now_us();
	for (int i = 0; i < cycles; i++) {
		CHECK_OK(g_wg.ops->tunnel_add(g_wg.inst, b.sb.id, &t, &e), &e);
		if (i % 100 == 0) {
			/* Now and then: it works, too. */
			probe_t p = {.kind = PROBE_TCP, .addr = a.addr, .port = 80, .timeout_ms = 3000};
			sandbox_probe(&b.sb, &p);
			CHECK(p.error == 0, "cycle %d: B cannot reach A: %s", i, strerror(p.error));
		}
		CHECK_OK(g_wg.ops->tunnel_remove(g_wg.inst, b.sb.id, "mesh", &e), &e);
	}
	int64_t us = now_us() - t0;
	pid_t pids[8];
	CHECK(wg_pids(pids, 8) == 1, "processes after %d cycles: %zu", cycles, wg_pids(pids, 8));
	CHECK(wg_sockets() == 1, "sockets after %d cycles: %zu", cycles, wg_sockets());
	/* net-egress keeps up to EG_NFNL_CACHE_MAX (8) netfilter sockets open
	 * for its ops, and its counters timer or resolver may take one more
	 * meanwhile (the ASan run lasts long enough for the timer): that is a
	 * bounded cache, not a leak. A leak of one fd a cycle shows as 1000. */
	CHECK(open_fds() <= fds0 + 8, "fds: %d before, %d after %d cycles", fds0, open_fds(),
	      cycles);
	CHECK(udp_sockets_in(-1) == udp0, "UDP sockets: %d before, %d after", udp0,
	      udp_sockets_in(-1));
	CHECK(!links_in(&b, "wg"), "an interface is left in B");
	long rss1 = rss_kib();
#if !defined(__SANITIZE_ADDRESS__)
	/* (Under ASan freed memory sits in its quarantine; its leak check at
	 * exit is the check there.) */
	CHECK(rss1 - rss0 < 4096, "RSS grew from %ld to %ld KiB over %d cycles", rss0, rss1, cycles);
#endif
	fprintf(stderr, "%d join/leave cycles: %.1f ms each, RSS %ld -> %ld KiB\n", cycles,
		(double)us / 1000.0 / cycles, rss0, rss1);
	tcp_server_stop(s);
	member_detach(&a);
	member_detach(&b);
}

static void case_restart(void)
{
	start(NULL);
	member_t a, b, c;
	member_attach(&a, "tenant-a", LIST("mesh"));
	member_attach(&b, "tenant-a", LIST("mesh"));
	member_attach(&c, "tenant-a", LIST("mesh"));
	tcp_server_t *sa = tcp_server_start(a.sb.nsfd, a.addr, 80);
	tcp_server_t *sb = tcp_server_start(b.sb.nsfd, b.addr, 80);
	expect_tcp(&b, &a, 80, "before the restart");
	/* hutchd goes; the processes stay. While it is away, C's process dies. */
	egress_unload(&g_wg);
	pid_t pids[8];
	CHECK(wg_pids(pids, 8) == 3, "the members' processes must outlive hutchd");
	_cleanup_free_ char *cfile =
		xasprintf("%s/run/plugins/net-wireguard/members/%s@mesh", world_base(), c.sb.id);
	char line[128];
	int cpid = 0;
	_cleanup_fclose_ FILE *f = fopen(cfile, "re");
	while (f && fgets(line, sizeof line, f))
		sscanf(line, "pid=%d", &cpid);
	CHECK(cpid > 0 && kill(cpid, SIGKILL) == 0, "kill C's wireguard-go (%d)", cpid);
	for (int i = 0; i < 100 && wg_pids(pids, 8) != 2; i++)
		usleep(20000);
	wg_load(NULL);
	expect_tcp(&b, &a, 80, "after the restart");
	/* The mesh goes on: a new member reaches the old ones. */
	member_t d;
	member_attach(&d, "tenant-a", LIST("mesh"));
	expect_tcp(&d, &a, 80, "a member that joined after the restart");
	expect_tcp(&d, &b, 80, "a member that joined after the restart, to B");
	CHECK(strcmp(d.addr, a.addr) && strcmp(d.addr, b.addr), "D got an address in use");
	tcp_server_stop(sa);
	tcp_server_stop(sb);
	member_detach(&a);
	member_detach(&b);
	member_detach(&c);
	member_detach(&d);
	CHECK(wg_pids(pids, 8) == 0, "%zu processes left", wg_pids(pids, 8));
	CHECK(wg_sockets() == 0, "%zu sockets left", wg_sockets());
}

/* The first A answer for name through sb's resolver, "" for none; rcode. */
static void resolve_a(const member_t *m, const char *name, char out[64], int *rcode)
{
	char addrs[4][64];
	int n = sandbox_resolve(&m->sb, name, 1, false, addrs, 4, rcode);
	snprintf(out, 64, "%s", n > 0 ? addrs[0] : "");
}

static void case_names(void)
{
	start_with("local_names_dir = \"@NAMES@\"", "names_dir = \"@NAMES@\"");
	_cleanup_free_ char *dir = xasprintf("%s/names", world_base());
	member_t a, b, other, foreign;
	g_sandbox_name = "Alpha_1";
	member_attach(&a, "tenant-a", LIST("mesh"));
	g_sandbox_name = NULL;
	member_attach(&b, "tenant-a", LIST("mesh"));
	member_attach(&other, "tenant-a", LIST("other"));
	member_attach(&foreign, "tenant-b", LIST("mesh"));
	char got[64], name[160];
	int rcode = -1;
	/* By the sandbox's name (lower case, '_' as '-') and by its id. */
	resolve_a(&b, "alpha-1.mesh.tunnel", got, &rcode);
	CHECK(strcmp(got, a.addr) == 0, "alpha-1.mesh.tunnel from B: `%s` (rcode %d), want %s", got,
	      rcode, a.addr);
	snprintf(name, sizeof name, "%s.mesh.tunnel", b.sb.id);
	resolve_a(&a, name, got, &rcode);
	CHECK(strcmp(got, b.addr) == 0, "%s from A: `%s`, want %s", name, got, b.addr);
	resolve_a(&a, "ALPHA-1.Mesh.Tunnel", got, &rcode);
	CHECK(strcmp(got, a.addr) == 0, "a member's own name, in another case: `%s`", got);
	/* Not for sandboxes outside the tunnel, nor the same name elsewhere. */
	resolve_a(&other, "alpha-1.mesh.tunnel", got, &rcode);
	CHECK(!got[0] && rcode == 3, "another tunnel's member resolved it: `%s` rcode %d", got, rcode);
	resolve_a(&foreign, "alpha-1.mesh.tunnel", got, &rcode);
	CHECK(!got[0] && rcode == 3, "another tenant's member resolved it: `%s` rcode %d", got, rcode);
	resolve_a(&b, "nobody.mesh.tunnel", got, &rcode);
	CHECK(!got[0] && rcode == 3, "an unknown member: `%s` rcode %d", got, rcode);
	/* Names reach: TCP to the name's address. */
	tcp_server_t *s = tcp_server_start(a.sb.nsfd, a.addr, 80);
	expect_tcp(&b, &a, 80, "to the address of a name");
	tcp_server_stop(s);
	/* Gone with the member. */
	member_detach(&a);
	resolve_a(&b, "alpha-1.mesh.tunnel", got, &rcode);
	CHECK(!got[0] && rcode == 3, "a member that left still resolves: `%s`", got);
	member_detach(&b);
	member_detach(&other);
	member_detach(&foreign);
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d)))
		CHECK(de->d_name[0] == '.', "names file %s left", de->d_name);
}

/* ---- an external peer: stock wireguard-go and wg in a namespace of the
 * test (E), linked to H by a veth (H 198.51.100.1, E 198.51.100.2); a
 * server "behind" it on 192.168.77.1 (local in E). ---- */

static char g_ext_ns[64], g_ext_dev[16];

static void external_cleanup(void)
{
	if (!g_ext_ns[0])
		return;
	/* Its wireguard-go, by the pid whose argv names its device. */
	char saved[16];
	snprintf(saved, sizeof saved, "%s", g_prefix);
	snprintf(g_prefix, sizeof g_prefix, "%s", g_ext_dev);
	pid_t pids[4];
	size_t n = wg_pids(pids, 4);
	for (size_t i = 0; i < n && i < 4; i++)
		kill(pids[i], SIGKILL);
	snprintf(g_prefix, sizeof g_prefix, "%s", saved);
	char cmd[256];
	snprintf(cmd, sizeof cmd, "ip netns del %s; rm -f /var/run/wireguard/%s.sock", g_ext_ns,
		 g_ext_dev);
	if (system(cmd) != 0) {
		/* best effort: the namespace goes with its last user anyway */
	}
	g_ext_ns[0] = '\0';
}

/* Makes E with its wireguard-go device; returns its public key (base64). */
static void external_start(char pub[64], member_t *e_as_member)
{
	snprintf(g_ext_ns, sizeof g_ext_ns, "hutch-wgext-%d", (int)getpid());
	snprintf(g_ext_dev, sizeof g_ext_dev, "x%06x", (unsigned)getpid() & 0xffffff);
	atexit(external_cleanup);
	_cleanup_free_ char *script = xasprintf(
		"ip netns add %1$s && ip link add ext0 type veth peer name lan0 netns %1$s && "
		"ip addr add 198.51.100.1/24 dev ext0 && ip link set ext0 up && "
		"ip -n %1$s addr add 198.51.100.2/24 dev lan0 && ip -n %1$s link set lan0 up && "
		"ip -n %1$s link set lo up && ip -n %1$s addr add 192.168.77.1/32 dev lo && "
		"wg genkey > %2$s/ext.key && wg pubkey < %2$s/ext.key > %2$s/ext.pub && "
		"nsenter --net=/run/netns/%1$s wireguard-go %3$s",
		g_ext_ns, world_base(), g_ext_dev);
	host_sh(script);
	_cleanup_free_ char *pubpath = xasprintf("%s/ext.pub", world_base());
	_cleanup_fclose_ FILE *f = fopen(pubpath, "re");
	CHECK(f && fgets(pub, 64, f), "read the external peer's public key");
	pub[strcspn(pub, "\n")] = '\0';
	memset(e_as_member, 0, sizeof *e_as_member);
	char nspath[128];
	snprintf(nspath, sizeof nspath, "/run/netns/%s", g_ext_ns);
	e_as_member->sb.nsfd = open(nspath, O_RDONLY | O_CLOEXEC);
	snprintf(e_as_member->sb.id, sizeof e_as_member->sb.id, "external");
	CHECK(e_as_member->sb.nsfd >= 0, "open %s", nspath);
}

/* Configures E from `peer config`'s text, as an operator would. */
static void external_configure(const char *conf)
{
	char addr[64] = "", gwkey[64] = "", allowed[64] = "";
	for (const char *l = conf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		sscanf(l, "Address = %63s", addr);
		sscanf(l, "PublicKey = %63s", gwkey);
		sscanf(l, "AllowedIPs = %63s", allowed);
	}
	CHECK(addr[0] && gwkey[0] && allowed[0], "peer config lacks a line:\n%s", conf);
	_cleanup_free_ char *script = xasprintf(
		"nsenter --net=/run/netns/%1$s sh -c '"
		"wg set %2$s private-key %3$s/ext.key peer %4$s endpoint 198.51.100.1:51820 "
		"allowed-ips %5$s persistent-keepalive 1 && ip addr add %6$s dev %2$s && "
		"ip link set %2$s up && ip route replace %5$s dev %2$s'",
		g_ext_ns, g_ext_dev, world_base(), gwkey, allowed, addr);
	host_sh(script);
}

static void case_external_peer(void)
{
	start("gateway_host = \"198.51.100.1\"");
	member_t a, b, ext;
	member_attach(&a, "tenant-a", LIST("mesh"));
	char pub[64];
	external_start(pub, &ext);
	hutch_err_t e = {0};
	hutch_net_tunnel_peer_t peer = {.size = sizeof peer, .name = "office", .public_key = pub,
					.allowed_ips = LIST("192.168.77.0/24")};
	CHECK_OK(g_wg.ops->tunnel_peer_add(g_wg.inst, "tenant-a", "mesh", &peer, &e), &e);
	char conf[2048];
	CHECK_OK(g_wg.ops->tunnel_peer_config(g_wg.inst, "tenant-a", "mesh", "office", conf,
					      sizeof conf, &e), &e);
	CHECK(strstr(conf, "Endpoint = 198.51.100.1:51820") && strstr(conf, "[Interface]"),
	      "peer config:\n%s", conf);
	external_configure(conf);
	/* A member reaches a server behind the peer, and the peer reaches it. */
	tcp_server_t *behind = tcp_server_start(ext.sb.nsfd, "192.168.77.1", 80);
	tcp_server_t *sa = tcp_server_start(a.sb.nsfd, a.addr, 80);
	char reply[256] = "";
	int err = tcp_to(&a, "192.168.77.1", 80, 5000, reply);
	CHECK(err == 0 && strstr(reply, "hello"), "member -> behind the peer: %s `%s`",
	      strerror(err), reply);
	expect_tcp(&ext, &a, 80, "the external peer to a member");
	/* A member that joins later gets the route too. */
	member_attach(&b, "tenant-a", LIST("mesh"));
	err = tcp_to(&b, "192.168.77.1", 80, 5000, reply);
	CHECK(err == 0, "a later member -> behind the peer: %s", strerror(err));
	/* A member of another tunnel does not. */
	member_t other;
	member_attach(&other, "tenant-a", LIST("other"));
	expect_no_tcp(&other, "192.168.77.1", 80, "another tunnel's member, behind the peer");
	/* Bad peers are refused with a reason. */
	static const struct {
		const char *name, *key, *endpoint, *net, *needle;
	} bad[] = {
		{"Office", NULL, NULL, "10.9.0.0/24", "peer name"},
		{"p2", "not-a-key", NULL, "10.9.0.0/24", "public key"},
		{"p2", NULL, "example.com:51820", "10.9.0.0/24", "endpoint"},
		{"p2", NULL, "1.2.3.4:0", "10.9.0.0/24", "endpoint"},
		{"p2", NULL, NULL, "10.9.0.1/24", "host bits"},
		{"p2", NULL, NULL, "0.0.0.0/0", "wider than /8"},
		{"p2", NULL, NULL, "127.0.0.0/8", "reserved"},
		{"p2", NULL, NULL, "10.250.0.0/25", "own subnet"},
		{"p2", NULL, NULL, "192.168.77.128/25", "overlap"},
		{"office", NULL, NULL, "10.9.0.0/24", "has a peer"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		hutch_net_tunnel_peer_t p = {.size = sizeof p, .name = bad[i].name,
					     .public_key = bad[i].key ? bad[i].key
								      : "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
					     .endpoint = bad[i].endpoint,
					     .allowed_ips = (const char *const[]){bad[i].net, NULL}};
		memset(&e, 0, sizeof e);
		int r = g_wg.ops->tunnel_peer_add(g_wg.inst, "tenant-a", "mesh", &p, &e);
		CHECK(r < 0 && strstr(e.message, bad[i].needle), "peer #%zu: %d `%s`, want `%s`", i, r,
		      e.message, bad[i].needle);
	}
	/* Removed: the route and the gateway go. */
	pid_t pids[16];
	size_t before = wg_pids(pids, 16);
	CHECK_OK(g_wg.ops->tunnel_peer_remove(g_wg.inst, "tenant-a", "mesh", "office", &e), &e);
	CHECK(wg_pids(pids, 16) == before - 1, "the gateway still runs");
	expect_no_tcp(&a, "192.168.77.1", 80, "behind a removed peer");
	tcp_server_stop(behind);
	tcp_server_stop(sa);
	close(ext.sb.nsfd);
	external_cleanup();
	member_detach(&a);
	member_detach(&b);
	member_detach(&other);
	CHECK(wg_pids(pids, 16) == 0 && wg_sockets() == 0, "processes or sockets left");
}

static void expect_error(int r, const hutch_err_t *e, int code, const char *needle)
{
	CHECK(r == -code, "expected -%d (%s), got %d: %s", code, strerror(code), r, e->message);
	CHECK(strstr(e->message, needle), "error `%s` should mention `%s`", e->message, needle);
}

static void case_bad_input(void)
{
	start(NULL);
	static const char *const bad[] = {"", "Mesh", "-mesh", "mesh-", "a/b", "a.b", "me sh",
		"0123456789012345678901234567890123456789012345678901234567890123"};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		member_t m;
		hutch_err_t e = {0};
		int r = member_attach_try(&m, "tenant-a", (const char *const[]){bad[i], NULL}, &e);
		expect_error(r, &e, EINVAL, "tunnel name");
		/* Nothing of it is left in the plugin: detach (chain order). */
		member_detach(&m);
	}
	/* attach without a namespace: net-wireguard cannot be first. */
	hutch_net_attach_t req = {.size = sizeof req, .sandbox_id = "x", .tenant = "t"};
	hutch_net_attachment_t out = {.size = sizeof out};
	hutch_err_t e = {0};
	expect_error(g_wg.ops->attach(g_wg.inst, &req, &out, &e), &e, EINVAL, "after net-egress");
	egress_unload(&g_wg);
	static const struct {
		const char *cfg, *needle;
	} configs[] = {
		{"pool = \"10.250.0.0/33\"", "pool"},
		{"pool = \"10.250.0.1/16\"", "host bits"},
		{"pool = \"fd00::/64\"", "pool"},
		{"subnet_prefix = 30", "subnet_prefix"},
		{"subnet_prefix = 8", "subnet_prefix"},
		{"endpoint_host = \"localhost\"", "endpoint_host"},
		{"backend = \"kernel\"", "not implemented"},
		{"wireguard_go = \"/nonexistent/wireguard-go\"", "wireguard-go"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(configs); i++) {
		memset(&e, 0, sizeof e);
		int r = wg_try_load(configs[i].cfg, &e);
		CHECK(r < 0, "config `%s` was accepted", configs[i].cfg);
		CHECK(strstr(e.message, configs[i].needle), "config `%s`: error `%s` should mention `%s`",
		      configs[i].cfg, e.message, configs[i].needle);
	}
	memset(&e, 0, sizeof e);
	CHECK(wg_try_load("host_prefix = \"toolong\"", &e) < 0, "host_prefix too long accepted");
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*fn)(void);
	} cases[] = {
		{"mesh", case_mesh},         {"isolation", case_isolation},
		{"keys", case_keys},         {"teardown", case_teardown},
		{"cycles", case_cycles},     {"restart", case_restart},
		{"bad_input", case_bad_input}, {"names", case_names},
		{"external_peer", case_external_peer},
	};
	if (argc != 2) {
		fprintf(stderr, "usage: test_wireguard CASE\n");
		return 2;
	}
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		if (strcmp(argv[1], cases[i].name) == 0) {
			g_case = cases[i].name;
			cases[i].fn();
			harness_cleanup();
			return 0;
		}
	}
	fprintf(stderr, "no case %s\n", argv[1]);
	return 2;
}
