/*
 * bench_tunnels: what a net-wireguard tunnel costs, each figure beside a
 * baseline measured in the same run (the machines are shared and noisy).
 *
 *   build/bin/bench_tunnels [--rounds N] [--seconds S] [--wireguard-go PATH]
 *                           [--memory-limit SIZE] [--json FILE]
 *
 * It runs in the world of tests/net (net_harness.h): net-egress and
 * net-wireguard loaded in-process, sandboxes' namespaces made by them.
 * Measured:
 *   1. joining a tunnel at attach (with one member already in it, so a
 *      peer update is part of it), against net-egress's own attach (the
 *      rest of a sandbox's network) and a whole sandbox create;
 *   2. TCP throughput, one stream, member to member over the tunnel,
 *      against the same over a plain veth pair between two namespaces;
 *   3. TCP round trip (1 byte each way), the same two ways;
 *   4. RSS of a member's wireguard-go idle, and its peak and settled RSS
 *      under the throughput test.
 * Run it once per wireguard-go to compare builds (--wireguard-go).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dirent.h>

#include "cleanup.h"
#include "net_harness.h"
#include "strbuf.h"

#ifndef HUTCH_WG_PLUGIN_PATH
#error "HUTCH_WG_PLUGIN_PATH must name the built net-wireguard.so"
#endif

static int g_rounds = 30;
static int g_seconds = 5;
static const char *g_wggo = "wireguard-go";
static const char *g_memlimit = "56Mi";
static egress_t g_eg, g_wg;

typedef struct samples {
	double v[4096];
	size_t n;
} samples_t;

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(samples_t *s, double p)
{
	if (!s->n)
		return 0;
	qsort(s->v, s->n, sizeof s->v[0], cmp_d);
	size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
	return s->v[i];
}

/* ---- members ---- */

typedef struct member {
	sandbox_t sb;
	char addr[64];
} member_t;

static void member_attach(member_t *m, const char *tunnel, double *egress_ms, double *join_ms)
{
	memset(m, 0, sizeof *m);
	int64_t t0 = now_us();
	sandbox_attach(&g_eg, &m->sb, "bench", NULL, 0, false);
	int64_t t1 = now_us();
	hutch_net_tunnel_t t = {.size = sizeof t, .name = tunnel};
	const hutch_net_tunnel_t *tp[] = {&t};
	hutch_net_attach_t req = {.size = sizeof req, .sandbox_id = m->sb.id, .tenant = "bench",
				  .netns_path = m->sb.netns, .tunnels = tunnel ? tp : NULL,
				  .n_tunnels = tunnel ? 1 : 0};
	hutch_net_attachment_t out = {.size = sizeof out};
	hutch_err_t e = {0};
	CHECK_OK(g_wg.ops->attach(g_wg.inst, &req, &out, &e), &e);
	int64_t t2 = now_us();
	snprintf(m->addr, sizeof m->addr, "%.*s", (int)strcspn(out.addresses[0], "/"),
		 out.addresses[0]);
	if (egress_ms)
		*egress_ms = (double)(t1 - t0) / 1000.0;
	if (join_ms)
		*join_ms = (double)(t2 - t1) / 1000.0;
}

static void member_detach(member_t *m)
{
	hutch_err_t e = {0};
	CHECK_OK(g_wg.ops->detach(g_wg.inst, m->sb.id, &e), &e);
	sandbox_detach(&g_eg, &m->sb);
}

/* ---- traffic ---- */

typedef struct flow {
	int nsfd;
	const char *addr;
	uint16_t port;
	int seconds;
	int fd;
	int64_t bytes;
	double seconds_taken;
	samples_t *rtt;
} flow_t;

static void *listen_thread(void *arg)
{
	flow_t *f = arg;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
	inet_pton(AF_INET, f->addr, &sa.sin_addr);
	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(f->fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(f->fd, 4) < 0) {
		close(f->fd);
		f->fd = -1;
	}
	return NULL;
}

static void *connect_thread(void *arg)
{
	flow_t *f = arg;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(f->port)};
	inet_pton(AF_INET, f->addr, &sa.sin_addr);
	f->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(f->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(f->fd);
		f->fd = -1;
	}
	return NULL;
}

static void *sink_main(void *arg)
{
	flow_t *f = arg;
	int c = accept(f->fd, NULL, NULL);
	static char buf[1 << 16];
	ssize_t n;
	if (f->rtt) {
		char b;
		while (read(c, &b, 1) == 1)
			if (write(c, &b, 1) != 1)
				break;
	} else {
		while ((n = read(c, buf, sizeof buf)) > 0)
			f->bytes += n;
	}
	close(c);
	return NULL;
}

/* One stream from from_ns to addr:port (a listener in to_ns) for
 * g_seconds: Gbit/s. With rtt: 1-byte round trips instead. */
static double stream(int from_ns, int to_ns, const char *addr, uint16_t port, samples_t *rtt)
{
	flow_t srv = {.nsfd = to_ns, .addr = addr, .port = port, .rtt = rtt};
	in_netns(to_ns, listen_thread, &srv);
	CHECK(srv.fd >= 0, "listen on %s:%u", addr, port);
	pthread_t t;
	pthread_create(&t, NULL, sink_main, &srv);
	flow_t cli = {.addr = addr, .port = port};
	in_netns(from_ns, connect_thread, &cli);
	CHECK(cli.fd >= 0, "connect to %s:%u", addr, port);
	int one = 1;
	setsockopt(cli.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	double result = 0;
	if (rtt) {
		for (int i = 0; i < 2000; i++) {
			int64_t t0 = now_us();
			char b = 'x';
			CHECK(write(cli.fd, &b, 1) == 1 && read(cli.fd, &b, 1) == 1, "round trip");
			if (rtt->n < ARRAY_SIZE(rtt->v))
				rtt->v[rtt->n++] = (double)(now_us() - t0);
		}
	} else {
		static char buf[1 << 16];
		int64_t t0 = now_us(), sent = 0;
		while (now_us() - t0 < (int64_t)g_seconds * 1000000) {
			ssize_t n = write(cli.fd, buf, sizeof buf);
			CHECK(n > 0, "send: %s", strerror(errno));
			sent += n;
		}
		result = (double)sent * 8 / ((double)(now_us() - t0) / 1e6) / 1e9;
	}
	close(cli.fd);
	pthread_join(t, NULL);
	close(srv.fd);
	return result;
}

/* ---- wireguard-go's memory ---- */

static pid_t wg_pid_of(const char *prefix)
{
	_cleanup_closedir_ DIR *d = opendir("/proc");
	struct dirent *de;
	while (d && (de = readdir(d))) {
		pid_t pid = (pid_t)atoi(de->d_name);
		char path[64], cmd[256];
		snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
		_cleanup_close_ int fd = pid > 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
		ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : -1;
		if (n <= 0)
			continue;
		cmd[n] = '\0';
		for (ssize_t i = 0; i < n; i += (ssize_t)strlen(cmd + i) + 1)
			if (strncmp(cmd + i, prefix, strlen(prefix)) == 0)
				return pid;
	}
	return -1;
}

static double kib_field(pid_t pid, const char *field)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	long v = -1;
	size_t n = strlen(field);
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			v = strtol(line + n + 1, NULL, 10);
	return (double)v / 1024.0;
}

/* ---- the plain veth baseline ---- */

static void veth_pair(int *ns_a, int *ns_b)
{
	char a[64], b[64];
	snprintf(a, sizeof a, "btv%da", (int)getpid());
	snprintf(b, sizeof b, "btv%db", (int)getpid());
	_cleanup_free_ char *script = xasprintf(
		"ip netns add %s && ip netns add %s && "
		"ip link add va netns %s type veth peer name vb netns %s && "
		"ip -n %s addr add 10.199.0.1/24 dev va && ip -n %s addr add 10.199.0.2/24 dev vb && "
		"ip -n %s link set va up && ip -n %s link set vb up && "
		"ip -n %s link set lo up && ip -n %s link set lo up",
		a, b, a, b, a, b, a, b, a, b);
	host_sh(script);
	char p[128];
	snprintf(p, sizeof p, "/run/netns/%s", a);
	*ns_a = open(p, O_RDONLY | O_CLOEXEC);
	snprintf(p, sizeof p, "/run/netns/%s", b);
	*ns_b = open(p, O_RDONLY | O_CLOEXEC);
	CHECK(*ns_a >= 0 && *ns_b >= 0, "veth namespaces");
}

static void veth_pair_remove(void)
{
	_cleanup_free_ char *script =
		xasprintf("ip netns del btv%da; ip netns del btv%db", (int)getpid(), (int)getpid());
	host_sh(script);
}

int main(int argc, char **argv)
{
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			g_rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			g_seconds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--wireguard-go") && i + 1 < argc)
			g_wggo = argv[++i];
		else if (!strcmp(argv[i], "--memory-limit") && i + 1 < argc)
			g_memlimit = argv[++i];
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else {
			fprintf(stderr, "usage: bench_tunnels [--rounds N] [--seconds S] "
					"[--wireguard-go PATH] [--memory-limit SIZE] [--json FILE]\n");
			return 2;
		}
	}
	g_case = "bench";
	world_setup(60);
	egress_load(&g_eg, NULL);
	char prefix[8];
	snprintf(prefix, sizeof prefix, "b%04x", (unsigned)getpid() & 0xffff);
	_cleanup_free_ char *cfg = xasprintf(
		"host_prefix = \"%s\"\nwireguard_go = \"%s\"\nmemory_limit = \"%s\"\n", prefix,
		g_wggo, g_memlimit);
	hutch_err_t e = {0};
	CHECK(chain_plugin_try_load(HUTCH_WG_PLUGIN_PATH, "net-wireguard", cfg, &g_wg, &e) == 0,
	      "load net-wireguard: %s", e.message);

	/* 1. Joining, with one member already there. */
	member_t a;
	member_attach(&a, "bench", NULL, NULL);
	pid_t pid_a = wg_pid_of(prefix);
	CHECK(pid_a > 0, "no wireguard-go for the first member");
	samples_t eg = {0}, join = {0};
	for (int i = 0; i < g_rounds; i++) {
		member_t m;
		double x, y;
		member_attach(&m, "bench", &x, &y);
		eg.v[eg.n++] = x;
		join.v[join.n++] = y;
		member_detach(&m);
	}
	/* 2-4. Traffic between two members, and over a plain veth pair. */
	member_t b;
	member_attach(&b, "bench", NULL, NULL);
	usleep(200000);
	double rss_idle = kib_field(pid_a, "VmRSS");
	int va, vb;
	veth_pair(&va, &vb);
	double gbps_veth = stream(va, vb, "10.199.0.2", 5001, NULL);
	double gbps_wg = stream(b.sb.nsfd, a.sb.nsfd, a.addr, 5001, NULL);
	double rss_peak = kib_field(pid_a, "VmHWM");
	double rss_after = kib_field(pid_a, "VmRSS");
	samples_t rtt_veth = {0}, rtt_wg = {0};
	stream(va, vb, "10.199.0.2", 5002, &rtt_veth);
	stream(b.sb.nsfd, a.sb.nsfd, a.addr, 5002, &rtt_wg);
	close(va);
	close(vb);
	veth_pair_remove();
	member_detach(&a);
	member_detach(&b);

	double eg50 = pct(&eg, 50), eg95 = pct(&eg, 95), j50 = pct(&join, 50), j95 = pct(&join, 95);
	double rv = pct(&rtt_veth, 50), rw = pct(&rtt_wg, 50);
	printf("wireguard-go %s, GOMEMLIMIT %s, %d rounds, %d s streams\n", g_wggo, g_memlimit,
	       g_rounds, g_seconds);
	printf("%-44s %12s %12s\n", "measure", "tunnel", "baseline");
	printf("%-44s %5.1f/%5.1f ms %5.1f/%5.1f ms (net-egress attach)\n",
	       "join at attach p50/p95", j50, j95, eg50, eg95);
	printf("%-44s %8.2f Gb/s %8.2f Gb/s (veth)  %.2fx\n", "TCP throughput, one stream", gbps_wg,
	       gbps_veth, gbps_wg / gbps_veth);
	printf("%-44s %8.0f us %8.0f us (veth)\n", "TCP round trip p50", rw, rv);
	printf("%-44s %8.1f MiB idle, %.1f MiB peak, %.1f MiB after load\n",
	       "wireguard-go RSS per member", rss_idle, rss_peak, rss_after);
	if (json) {
		FILE *f = fopen(json, "w");
		CHECK(f, "open %s", json);
		fprintf(f,
			"{\"wireguard_go\": \"%s\", \"memory_limit\": \"%s\", \"rounds\": %d,"
			" \"seconds\": %d,\n \"join_ms\": {\"p50\": %.2f, \"p95\": %.2f},"
			" \"egress_attach_ms\": {\"p50\": %.2f, \"p95\": %.2f},\n"
			" \"throughput_gbps\": {\"tunnel\": %.3f, \"veth\": %.3f},"
			" \"rtt_us_p50\": {\"tunnel\": %.1f, \"veth\": %.1f},\n"
			" \"rss_mib\": {\"idle\": %.1f, \"peak\": %.1f, \"after_load\": %.1f}}\n",
			g_wggo, g_memlimit, g_rounds, g_seconds, j50, j95, eg50, eg95, gbps_wg,
			gbps_veth, rw, rv, rss_idle, rss_peak, rss_after);
		fclose(f);
	}
	harness_cleanup();
	return 0;
}
