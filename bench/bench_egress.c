/*
 * bench_egress: what net-egress costs, each figure beside a baseline
 * measured in the same run (the machines are shared and noisy).
 *
 *   build/bin/bench_egress [--rounds N] [--json FILE]
 *
 * It runs in the world of tests/net (net_harness.h): namespaces it makes
 * itself, dnsmasq as the upstream, servers in the "internet" namespace I,
 * the plugin loaded in-process. Measured:
 *   1. connect latency (TCP handshake) from a sandbox under a hostname
 *      policy, to an address learned from an answer, against the same
 *      from an unrestricted sandbox;
 *   2. DNS answer latency through the sandbox's resolver (a new name
 *      each time, so each answer commits its nftables elements; and the
 *      same name again, which changes nothing), against the same query
 *      sent straight to the upstream;
 *   3. TCP throughput from a sandbox through its veth, the forward chain
 *      and NAT, against the same over the host's loopback;
 *   4. policy update: the call, and the time until a new connection sees
 *      the change (opening and locking down), against the same element
 *      change made with the nft command;
 *   5. attach and detach, against the same plumbing done with ip and nft
 *      commands.
 * Needs root, nft, ip and dnsmasq.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "dns_msg.h"
#include "net_harness.h"
#include "proc.h"
#include "strbuf.h"

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static int g_rounds = 300;

/* ---- statistics ---- */

typedef struct samples {
	double *v;
	size_t n, cap;
} samples_t;

static void add(samples_t *s, double x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 256;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = x;
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(samples_t *s, double p)
{
	if (!s->n)
		return 0;
	qsort(s->v, s->n, sizeof *s->v, dcmp);
	double k = (double)(s->n - 1) * p / 100.0;
	size_t lo = (size_t)k, hi = lo + 1 < s->n ? lo + 1 : lo;
	return s->v[lo] + (s->v[hi] - s->v[lo]) * (k - (double)lo);
}

static strbuf_t g_json = STRBUF_INIT;
static bool g_first = true;

/* One line of the report: a measure, ours and the baseline. */
static void report(const char *key, const char *what, samples_t *ours, const char *base_what,
		   samples_t *base, const char *unit)
{
	double o50 = pct(ours, 50), o99 = pct(ours, 99), b50 = pct(base, 50), b99 = pct(base, 99);
	printf("%-44s p50 %9.3f p99 %9.3f %s | %-30s p50 %9.3f p99 %9.3f | ratio %.2fx\n", what, o50,
	       o99, unit, base_what, b50, b99, b50 > 0 ? o50 / b50 : 0);
	sb_printf(&g_json,
		  "%s\n  \"%s\": {\"what\": \"%s\", \"unit\": \"%s\", \"p50\": %.4f, \"p99\": %.4f, "
		  "\"n\": %zu, \"baseline\": \"%s\", \"baseline_p50\": %.4f, \"baseline_p99\": %.4f, "
		  "\"ratio_p50\": %.3f}",
		  g_first ? "" : ",", key, what, unit, o50, o99, ours->n, base_what, b50, b99,
		  b50 > 0 ? o50 / b50 : 0);
	g_first = false;
	free(ours->v);
	free(base->v);
	*ours = *base = (samples_t){0};
	fflush(stdout);
}

static double ms_since(int64_t t0)
{
	return (double)(now_us() - t0) / 1000.0;
}

/* ---- 1. connect latency ---- */

typedef struct connect_job {
	const char *addr;
	int n;
	samples_t *out;
} connect_job_t;

static double connect_once(const char *addr, int timeout_ms)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(80)};
	inet_pton(AF_INET, addr, &to.sin_addr);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int64_t t0 = now_us();
	int r = connect(s, (struct sockaddr *)&to, sizeof to);
	double ms = -1;
	if (r == 0 || errno == EINPROGRESS) {
		struct pollfd p = {.fd = s, .events = POLLOUT};
		int err = 0;
		socklen_t l = sizeof err;
		if (poll(&p, 1, timeout_ms) == 1 && getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &l) == 0 &&
		    err == 0)
			ms = ms_since(t0);
	}
	close(s);
	return ms;
}

static void *connect_loop(void *arg)
{
	connect_job_t *j = arg;
	for (int i = 0; i < j->n; i++) {
		double ms = connect_once(j->addr, 1000);
		if (ms >= 0)
			add(j->out, ms);
	}
	return NULL;
}

static void bench_connect(egress_t *eg)
{
	policy_spec_t names = {.name = "names", .allow_hosts = LIST("*.bench.test", "allowed.test")};
	sandbox_t named, open;
	sandbox_attach(eg, &named, NULL, &names, 1, true);
	sandbox_attach(eg, &open, NULL, NULL, 0, false);
	expect_resolves(&named, "allowed.test", IP_ALLOWED);
	samples_t ours = {0}, base = {0};
	/* Interleaved in chunks of 10, so drift in the machine's load hits
	 * both alike. */
	for (int chunk = 0; chunk < g_rounds / 10; chunk++) {
		connect_job_t a = {IP_ALLOWED, 10, &ours};
		connect_job_t b = {IP_ALLOWED, 10, &base};
		in_netns(named.nsfd, connect_loop, &a);
		in_netns(open.nsfd, connect_loop, &b);
	}
	report("connect_hostname_policy", "connect, hostname policy (learned address)", &ours,
	       "unrestricted sandbox", &base, "ms");
	/* The first connection right after the answer, each to a new name. */
	for (int i = 1; i <= 200 && i <= N_BENCH; i++) {
		char name[64], out[2][64];
		snprintf(name, sizeof name, "b%d.bench.test", i);
		int64_t t0 = now_us();
		int rcode;
		CHECK(sandbox_resolve(&named, name, 1, false, out, 2, &rcode) == 1, "resolve %s", name);
		connect_job_t one = {out[0], 1, &ours};
		in_netns(named.nsfd, connect_loop, &one);
		(void)t0;
		connect_job_t b = {IP_ALLOWED, 1, &base};
		in_netns(open.nsfd, connect_loop, &b);
	}
	report("connect_first_after_answer", "first connect right after its answer", &ours,
	       "unrestricted sandbox", &base, "ms");
	sandbox_detach(eg, &named);
	sandbox_detach(eg, &open);
}

/* ---- 2. DNS ---- */

typedef struct dns_job {
	const char *server;
	int first, n;     /* names b<first>..b<first+n-1>.bench.test; first 0: allowed.test */
	samples_t *out;
} dns_job_t;

static void *dns_loop(void *arg)
{
	dns_job_t *j = arg;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, j->server, &to.sin_addr);
	connect(s, (struct sockaddr *)&to, sizeof to);
	uint8_t q[300], a[4096];
	for (int i = 0; i < j->n; i++) {
		char name[64];
		if (j->first)
			snprintf(name, sizeof name, "b%d.bench.test", j->first + i);
		else
			snprintf(name, sizeof name, "allowed.test");
		uint16_t id = (uint16_t)(now_us() & 0xffff);
		size_t len = dns_query_build(name, 1, id, q, sizeof q);
		int64_t t0 = now_us();
		send(s, q, len, 0);
		struct pollfd p = {.fd = s, .events = POLLIN};
		while (poll(&p, 1, 2000) == 1) {
			ssize_t n = recv(s, a, sizeof a, 0);
			if (n >= 2 && a[0] == (uint8_t)(id >> 8) && a[1] == (uint8_t)id) {
				add(j->out, ms_since(t0));
				break;
			}
		}
	}
	close(s);
	return NULL;
}

static void bench_dns(egress_t *eg)
{
	policy_spec_t names = {.name = "names", .allow_hosts = LIST("*.bench.test", "allowed.test")};
	sandbox_t sb, open;
	sandbox_attach(eg, &sb, NULL, &names, 1, true);
	sandbox_attach(eg, &open, NULL, NULL, 0, false);
	samples_t ours = {0}, base = {0}, same = {0}, same_base = {0}, unr = {0}, unr_base = {0};
	int per = 10, chunks = g_rounds / per;
	int next = 1;
	for (int chunk = 0; chunk < chunks && next + per <= N_BENCH; chunk++) {
		/* A new allowed name each time: its address is committed to the
		 * set before the answer goes back. */
		dns_job_t a = {sb.dns, next, per, &ours};
		in_netns(sb.nsfd, dns_loop, &a);
		/* The same names, straight to the upstream from the host. */
		dns_job_t b = {IP_DNS_UPSTREAM, next, per, &base};
		dns_loop(&b);
		next += per;
	}
	report("dns_new_name", "DNS via resolver, new allowed name (commit)", &ours,
	       "straight to the upstream", &base, "ms");
	for (int chunk = 0; chunk < chunks; chunk++) {
		dns_job_t a = {sb.dns, 0, per, &same};
		in_netns(sb.nsfd, dns_loop, &a);
		dns_job_t b = {IP_DNS_UPSTREAM, 0, per, &same_base};
		dns_loop(&b);
		dns_job_t c = {open.dns, 0, per, &unr};
		in_netns(open.nsfd, dns_loop, &c);
		dns_job_t d = {IP_DNS_UPSTREAM, 0, per, &unr_base};
		dns_loop(&d);
	}
	report("dns_same_name", "DNS via resolver, same allowed name again", &same,
	       "straight to the upstream", &same_base, "ms");
	report("dns_unrestricted", "DNS via resolver, unrestricted sandbox", &unr,
	       "straight to the upstream", &unr_base, "ms");
	sandbox_detach(eg, &sb);
	sandbox_detach(eg, &open);
}

/* ---- 3. throughput ---- */

#define BULK_BYTES (256u << 20)

typedef struct sink {
	int fd;
	pthread_t thread;
} sink_t;

static void *sink_main(void *arg)
{
	sink_t *s = arg;
	static char buf[1 << 16];
	for (;;) {
		int c = accept(s->fd, NULL, NULL);
		if (c < 0)
			return NULL;
		while (read(c, buf, sizeof buf) > 0)
			;
		close(c);
	}
}

typedef struct listen_job {
	const char *addr;
	int fd;
} listen_job_t;

static void *listen_thread(void *arg)
{
	listen_job_t *j = arg;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(9000)};
	inet_pton(AF_INET, j->addr, &a.sin_addr);
	j->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(j->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(j->fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(j->fd, 8) < 0) {
		close(j->fd);
		j->fd = -1;
	}
	return NULL;
}

static void sink_start(sink_t *s, int nsfd, const char *addr)
{
	listen_job_t j = {addr, -1};
	if (nsfd >= 0)
		in_netns(nsfd, listen_thread, &j);
	else
		listen_thread(&j);
	CHECK(j.fd >= 0, "sink on %s", addr);
	s->fd = j.fd;
	pthread_create(&s->thread, NULL, sink_main, s);
}

static void sink_stop(sink_t *s)
{
	shutdown(s->fd, SHUT_RDWR);
	pthread_join(s->thread, NULL);
	close(s->fd);
}

typedef struct bulk_job {
	const char *addr;
	double mbps;
} bulk_job_t;

static void *bulk_send(void *arg)
{
	bulk_job_t *j = arg;
	static char buf[1 << 16];
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9000)};
	inet_pton(AF_INET, j->addr, &to.sin_addr);
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	j->mbps = 0;
	if (connect(s, (struct sockaddr *)&to, sizeof to) < 0) {
		close(s);
		return NULL;
	}
	int64_t t0 = now_us();
	size_t left = BULK_BYTES;
	while (left) {
		ssize_t w = write(s, buf, left < sizeof buf ? left : sizeof buf);
		if (w <= 0)
			break;
		left -= (size_t)w;
	}
	close(s);
	double secs = (double)(now_us() - t0) / 1e6;
	j->mbps = (double)(BULK_BYTES - left) / secs / (1 << 20);
	return NULL;
}

static void bench_throughput(egress_t *eg)
{
	policy_spec_t cidr = {.name = "cidr", .allow_cidrs = LIST("198.18.1.0/24")};
	sandbox_t sb;
	sandbox_attach(eg, &sb, NULL, &cidr, 1, true);
	sink_t far, local;
	sink_start(&far, world_inet_fd(), "198.18.1.90");
	sink_start(&local, -1, "127.0.0.1");
	samples_t ours = {0}, base = {0};
	for (int i = 0; i < 5; i++) {
		bulk_job_t a = {"198.18.1.90", 0};
		in_netns(sb.nsfd, bulk_send, &a);
		CHECK(a.mbps > 0, "bulk transfer from the sandbox");
		add(&ours, a.mbps);
		bulk_job_t b = {"127.0.0.1", 0};
		bulk_send(&b);
		add(&base, b.mbps);
	}
	report("throughput_veth", "TCP throughput, sandbox -> veth -> NAT -> peer", &ours,
	       "host loopback", &base, "MiB/s");
	sink_stop(&far);
	sink_stop(&local);
	sandbox_detach(eg, &sb);
}

/* ---- 4. policy update ---- */

/* Until a new connection to addr succeeds (want_open) or is dropped, the
 * time from t0 to the start of the attempt that saw it. A connection that
 * passes is up in well under a millisecond here, so an attempt that is not
 * up within 2 ms (waiting for the opening) or 10 ms (for the lock-down,
 * where a false "dropped" would flatter) counts as dropped. */
typedef struct effect_job {
	const char *addr;
	bool want_open;
	int64_t t0;
	double ms;
} effect_job_t;

static void *effect_wait(void *arg)
{
	effect_job_t *j = arg;
	j->ms = -1;
	while (now_us() - j->t0 < 2000000) {
		int64_t start = now_us();
		bool open = connect_once(j->addr, j->want_open ? 2 : 10) >= 0;
		if (open == j->want_open) {
			j->ms = (double)(start - j->t0) / 1000.0;
			return NULL;
		}
		if (open)
			usleep(500);
	}
	return NULL;
}

typedef struct update_job {
	egress_t *eg;
	sandbox_t *sb;
	const policy_spec_t *p;
	size_t n;
	int64_t t0;
	double call_ms;
} update_job_t;

static void *update_thread(void *arg)
{
	update_job_t *u = arg;
	u->t0 = now_us();
	u->call_ms = (double)sandbox_update(u->eg, u->sb, u->p, u->n, true) / 1000.0;
	return NULL;
}

/* A connect watcher in the sandbox while the update runs on another
 * thread, as hutchd's pool would run it. */
static double update_and_watch(egress_t *eg, sandbox_t *sb, const policy_spec_t *p, size_t n,
			       bool want_open, double *call_ms)
{
	update_job_t u = {eg, sb, p, n, 0, 0};
	effect_job_t e = {IP_ALLOWED, want_open, 0, -1};
	pthread_t t;
	e.t0 = now_us();
	u.t0 = e.t0;
	pthread_create(&t, NULL, update_thread, &u);
	in_netns(sb->nsfd, effect_wait, &e);
	pthread_join(t, NULL);
	*call_ms = u.call_ms;
	return e.ms >= 0 ? (double)(e.t0 + (int64_t)(e.ms * 1000) - u.t0) / 1000.0 : -1;
}

static void bench_policy_update(egress_t *eg)
{
	/* A realistic policy: names, prefixes, denies; and a sandbox that has
	 * learned some hundreds of addresses. */
	policy_spec_t open = {
		.name = "setup",
		.allow_hosts = LIST("*.bench.test", "allowed.test", "pypi.org", "*.pythonhosted.org",
				    "github.com", "*.github.com", "*.githubusercontent.com"),
		.allow_cidrs = LIST("198.18.1.0/24", "192.0.2.0/24", "2001:db8::/32"),
		.deny_hosts = LIST("denied.test"),
		.deny_cidrs = LIST("198.18.1.20/32"),
	};
	policy_spec_t locked = {.name = "locked", .allow_hosts = LIST("*.bench.test"),
				.deny_cidrs = LIST("198.18.1.128/25")};
	sandbox_t sb;
	sandbox_attach(eg, &sb, NULL, &open, 1, true);
	for (int i = 1; i <= 300; i++) {
		char name[64], out[2][64];
		snprintf(name, sizeof name, "b%d.bench.test", i);
		int rcode;
		sandbox_resolve(&sb, name, 1, false, out, 2, &rcode);
	}
	samples_t call = {0}, base = {0}, to_open = {0}, to_closed = {0};
	char ifname[32];
	host_ifname_of(sb.id, ifname);
	int n = g_rounds / 10 > 20 ? g_rounds / 10 : 20;
	int missed = 0;
	for (int i = 0; i < n; i++) {
		double c1, c2;
		double closed = update_and_watch(eg, &sb, &locked, 1, false, &c1);
		double opened = update_and_watch(eg, &sb, &open, 1, true, &c2);
		add(&call, c1);
		add(&call, c2);
		if (closed >= 0)
			add(&to_closed, closed);
		else
			missed++;
		if (opened >= 0)
			add(&to_open, opened);
		else
			missed++;
		/* The baseline: the same kind of change, one prefix element in
		 * and out of the sandbox's allow set, with the nft command. */
		_cleanup_free_ char *cmd = xasprintf(
			"nft 'add element inet hutch_egress allow4 { \"%s\" . 198.18.9.0/24 }' && "
			"nft 'delete element inet hutch_egress allow4 { \"%s\" . 198.18.9.0/24 }'",
			ifname, ifname);
		const char *argv[] = {"sh", "-c", cmd, NULL};
		char out[512];
		hutch_err_t err = {0};
		int64_t t0 = now_us();
		CHECK(proc_run_argv(argv, 10000, out, sizeof out, &err) == 0, "nft: %s", err.message);
		add(&base, ms_since(t0) / 2);
	}
	CHECK(missed == 0, "%d policy changes were not seen within 2 s", missed);
	samples_t base2 = {.v = malloc(base.n * sizeof(double)), .n = base.n, .cap = base.n};
	memcpy(base2.v, base.v, base.n * sizeof(double));
	samples_t base3 = {.v = malloc(base.n * sizeof(double)), .n = base.n, .cap = base.n};
	memcpy(base3.v, base.v, base.n * sizeof(double));
	report("policy_update_call", "policy_update call (10 names+prefixes, 300 learned)", &call,
	       "one element change with nft", &base, "ms");
	report("policy_update_to_closed", "update start -> new connection dropped", &to_closed,
	       "one element change with nft", &base2, "ms");
	report("policy_update_to_open", "update start -> new connection passes", &to_open,
	       "one element change with nft", &base3, "ms");
	sandbox_detach(eg, &sb);
}

/* ---- 5. attach / detach ---- */

static void bench_attach(egress_t *eg)
{
	samples_t att = {0}, det = {0}, batt = {0}, bdet = {0};
	policy_spec_t p = {.name = "p", .allow_hosts = LIST("allowed.test"),
			   .allow_cidrs = LIST("198.18.1.0/24")};
	int n = g_rounds / 10 > 20 ? g_rounds / 10 : 20;
	for (int i = 0; i < n; i++) {
		sandbox_t sb;
		int64_t t0 = now_us();
		sandbox_attach(eg, &sb, NULL, &p, 1, true);
		add(&att, ms_since(t0));
		t0 = now_us();
		sandbox_detach(eg, &sb);
		add(&det, ms_since(t0));
		/* The same plumbing with commands, one process each. */
		const char *mk =
			"ip netns add hbench$PPID && ip link add hb0 type veth peer name eth0 netns hbench$PPID && "
			"ip -n hbench$PPID link set lo up && ip -n hbench$PPID addr add 10.201.0.2/32 dev eth0 && "
			"ip -n hbench$PPID link set eth0 up && "
			"ip -n hbench$PPID route add default via 10.201.0.1 dev eth0 onlink && "
			"ip addr add 10.201.0.1/32 dev hb0 && ip link set hb0 up && "
			"ip route add 10.201.0.2/32 dev hb0 && "
			"nft 'add element inet hutch_egress src4 { \"hb0\" . 10.201.0.2 }' && "
			"nft 'add element inet hutch_egress allow4 { \"hb0\" . 198.18.1.0/24 }'";
		const char *rm = "nft 'delete element inet hutch_egress src4 { \"hb0\" . 10.201.0.2 }' && "
				 "nft 'delete element inet hutch_egress allow4 { \"hb0\" . 198.18.1.0/24 }' && "
				 "ip link del hb0 && ip netns del hbench$PPID";
		char out[512];
		hutch_err_t err = {0};
		const char *a1[] = {"sh", "-c", mk, NULL};
		t0 = now_us();
		CHECK(proc_run_argv(a1, 10000, out, sizeof out, &err) == 0, "%s", err.message);
		add(&batt, ms_since(t0));
		const char *a2[] = {"sh", "-c", rm, NULL};
		t0 = now_us();
		CHECK(proc_run_argv(a2, 10000, out, sizeof out, &err) == 0, "%s", err.message);
		add(&bdet, ms_since(t0));
	}
	report("attach", "attach (netns, veth, routes, elements)", &att, "the same with ip/nft", &batt,
	       "ms");
	report("detach", "detach (and conntrack, counters)", &det, "the same with ip/nft", &bdet,
	       "ms");
}

int main(int argc, char **argv)
{
	const char *json = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			g_rounds = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--rounds N] [--json FILE]\n", argv[0]);
			return 2;
		}
	}
	if (g_rounds < 10)
		g_rounds = 10;
	g_case = "bench";
	world_setup(60);
	egress_t eg;
	/* The audit stays on, as deployed; counters are read every 10 s. */
	egress_load(&eg, "counters_interval = \"10s\"");
	struct utsname u;
	uname(&u);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	printf("bench_egress: %d rounds, Linux %s, %ld cpus\n", g_rounds, u.release, cpus);
	bench_connect(&eg);
	bench_dns(&eg);
	bench_throughput(&eg);
	bench_policy_update(&eg);
	bench_attach(&eg);
	egress_unload(&eg);
	harness_cleanup();
	if (json) {
		FILE *f = fopen(json, "w");
		CHECK(f, "write %s", json);
		fprintf(f, "{\n  \"kernel\": \"%s\",\n  \"cpus\": %ld,\n  \"rounds\": %d,%s\n}\n", u.release,
			cpus, g_rounds, g_json.buf ? g_json.buf : "");
		fclose(f);
	}
	return 0;
}
