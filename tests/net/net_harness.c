/*
 * net_harness.c: the namespaces, peers and plugin the net-egress tests use
 * (see net_harness.h).
 */
#include "net_harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cleanup.h"
#include "dns_msg.h"
#include "host_api.h"
#include "plugin_loader.h"
#include "proc.h"
#include "strbuf.h"
#include "toml.h"

#ifndef HUTCH_NET_PLUGIN_PATH
#error "HUTCH_NET_PLUGIN_PATH must name the built net-egress.so"
#endif

const char *g_case = "?";

static char g_base[256];
static char g_inet[300];
static int g_inet_fd = -1;
static pid_t g_dnsmasq = -1;
static pid_t g_servers = -1;
static char g_audit[300];
static char g_hosts[300];

int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *world_base(void)
{
	return g_base;
}

int world_inet_fd(void)
{
	return g_inet_fd;
}

const char *audit_path(void)
{
	return g_audit;
}

/* ---- cleanup ---- */

static void unmount_dir_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *p = xasprintf("%s/%s", dir, de->d_name);
		umount2(p, MNT_DETACH);
		free(p);
	}
	if (d)
		closedir(d);
}

void harness_cleanup(void)
{
	static bool once;
	if (once)
		return;
	once = true;
	if (g_dnsmasq > 0) {
		kill(g_dnsmasq, SIGTERM);
		waitpid(g_dnsmasq, NULL, 0);
	}
	if (g_servers > 0) {
		kill(g_servers, SIGKILL);
		waitpid(g_servers, NULL, 0);
	}
	if (!g_base[0])
		return;
	char dir[600];
	snprintf(dir, sizeof dir, "%s/run/plugins/net-egress/netns", g_base);
	unmount_dir_files(dir);
	if (g_inet[0])
		umount2(g_inet, MNT_DETACH);
	if (getenv("HUTCH_TEST_KEEP")) { /* for a look at the audit log, dnsmasq's log */
		fprintf(stderr, "kept %s\n", g_base);
		return;
	}
	const char *rm[] = {"rm", "-rf", "--", g_base, NULL};
	hutch_err_t e = {0};
	proc_run_argv(rm, 30000, NULL, 0, &e);
}

/* ---- commands and namespaces ---- */

void host_sh(const char *script)
{
	const char *argv[] = {"sh", "-ec", script, NULL};
	char out[4096];
	hutch_err_t e = {0};
	int r = proc_run_argv(argv, 20000, out, sizeof out, &e);
	CHECK(r == 0, "`%s`: %s", script, e.message);
}

typedef struct ns_call {
	int nsfd;
	void *(*fn)(void *);
	void *arg;
	void *result;
	int error;
} ns_call_t;

static void *ns_thread(void *data)
{
	ns_call_t *c = data;
	if (setns(c->nsfd, CLONE_NEWNET) < 0) {
		c->error = errno;
		return NULL;
	}
	c->result = c->fn(c->arg);
	return NULL;
}

void *in_netns(int nsfd, void *(*fn)(void *), void *arg)
{
	ns_call_t c = {nsfd, fn, arg, NULL, 0};
	pthread_t t;
	CHECK(pthread_create(&t, NULL, ns_thread, &c) == 0, "thread");
	pthread_join(t, NULL);
	CHECK(c.error == 0, "setns: %s", strerror(c.error));
	return c.result;
}

static void *pin_thread(void *data)
{
	const char *path = data;
	if (unshare(CLONE_NEWNET) < 0)
		return (void *)(intptr_t)errno;
	int f = open(path, O_WRONLY | O_CREAT | O_EXCL, 0444);
	if (f < 0)
		return (void *)(intptr_t)errno;
	close(f);
	if (mount("/proc/thread-self/ns/net", path, NULL, MS_BIND, NULL) < 0)
		return (void *)(intptr_t)errno;
	return NULL;
}

static void ns_pin(const char *path)
{
	pthread_t t;
	void *r;
	CHECK(pthread_create(&t, NULL, pin_thread, (void *)path) == 0, "thread");
	pthread_join(t, &r);
	CHECK(r == NULL, "pin a namespace at %s: %s", path, strerror((int)(intptr_t)r));
}

/* ---- the peers in I ---- */

static void greet(int fd)
{
	struct sockaddr_in6 local, peer;
	socklen_t l = sizeof local, pl = sizeof peer;
	getsockname(fd, (struct sockaddr *)&local, &l);
	getpeername(fd, (struct sockaddr *)&peer, &pl);
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	const void *la = &local.sin6_addr, *pa = &peer.sin6_addr;
	int lf = AF_INET6, pf = AF_INET6;
	if (IN6_IS_ADDR_V4MAPPED(&local.sin6_addr)) {
		la = (const uint8_t *)&local.sin6_addr + 12;
		lf = AF_INET;
	}
	if (IN6_IS_ADDR_V4MAPPED(&peer.sin6_addr)) {
		pa = (const uint8_t *)&peer.sin6_addr + 12;
		pf = AF_INET;
	}
	inet_ntop(lf, la, a, sizeof a);
	inet_ntop(pf, pa, b, sizeof b);
	char msg[256];
	int n = snprintf(msg, sizeof msg, "hello %s from %s\n", a, b);
	if (write(fd, msg, (size_t)n) < 0) {
		/* the peer left */
	}
}

static int listen_on(int family, int type, uint16_t port)
{
	int s = socket(family, type, 0);
	int zero = 0, one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_storage ss = {0};
	socklen_t len;
	if (family == AF_INET6) {
		/* TCP: one dual-stack socket; UDP: v6 only (v4 has its own). */
		int v6only = type == SOCK_DGRAM;
		setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? &one : &zero, sizeof one);
		setsockopt(s, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one);
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		len = sizeof *a;
	} else {
		setsockopt(s, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		len = sizeof *a;
	}
	if (bind(s, (struct sockaddr *)&ss, len) < 0)
		_exit(10);
	if (type == SOCK_STREAM && listen(s, 128) < 0)
		_exit(11);
	return s;
}

/* Echoes one datagram from the address it was sent to: the addresses
 * are AnyIP local routes, so the reply's source must be set explicitly. */
static void udp_echo(int fd)
{
	char buf[2048];
	union {
		char b[256];
		struct cmsghdr align;
	} ctl;
	struct sockaddr_storage from;
	struct iovec iov = {buf, sizeof buf};
	struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov,
			   .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
	ssize_t n = recvmsg(fd, &m, 0);
	if (n <= 0)
		return;
	iov.iov_len = (size_t)n;
	/* Send the same pktinfo back: it names the local address. */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
			struct in_pktinfo *pi = (struct in_pktinfo *)CMSG_DATA(c);
			pi->ipi_spec_dst = pi->ipi_addr;
			pi->ipi_ifindex = 0;
		} else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
			struct in6_pktinfo *pi = (struct in6_pktinfo *)CMSG_DATA(c);
			pi->ipi6_ifindex = 0;
		}
	}
	sendmsg(fd, &m, 0);
}

/* The child that serves in I: TCP greeters on 80 and 853, UDP echo on 7. */
static void servers_main(void)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (setns(g_inet_fd, CLONE_NEWNET) < 0)
		_exit(12);
	struct pollfd p[4] = {
		{.fd = listen_on(AF_INET6, SOCK_STREAM, 80), .events = POLLIN},
		{.fd = listen_on(AF_INET6, SOCK_STREAM, 853), .events = POLLIN},
		{.fd = listen_on(AF_INET, SOCK_DGRAM, 7), .events = POLLIN},
		{.fd = listen_on(AF_INET6, SOCK_DGRAM, 7), .events = POLLIN},
	};
	for (;;) {
		if (poll(p, 4, -1) < 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			int c = accept(p[i].fd, NULL, NULL);
			if (c >= 0) {
				greet(c);
				close(c);
			}
		}
		for (int i = 2; i < 4; i++)
			if (p[i].revents & POLLIN)
				udp_echo(p[i].fd);
	}
}

static void hosts_write(const char *changing)
{
	FILE *f = fopen(g_hosts, "w");
	CHECK(f, "write %s", g_hosts);
	fprintf(f,
		IP_ALLOWED " allowed.test\n" IP_A_ALLOWED " a.allowed.test\n" IP_B_ALLOWED
		" b.allowed.test\n" IP_DENIED " denied.test\n" IP_EVIL
		" a.allowed.test.evil\n" IP_CIDR_TARGET " cidr-target.test\n" IP_OK_TARGET
		" ok-target.test\n%s changing.test\n" IP_OTHER " other.test\n" IP6_ALLOWED
		" allowed.test\n" IP6_DENIED " denied.test\n" IP_DENIED " shared.allowed.test\n"
		IP6_NAT64_DENIED " n64.allowed.test\n" IP6_NAT64_DENIED_AAAA " n64.denied.test\n"
		IP_FAR " far.test\n",
		changing);
	for (int i = 1; i <= N_MANY; i++)
		fprintf(f, "198.18.2.%d many.allowed.test\n", i);
	for (int i = 1; i <= N_BENCH; i++)
		fprintf(f, "198.18.%d.%d b%d.bench.test\n", 16 + i / 256, i % 256, i);
	fclose(f);
}

/* Asks dnsmasq directly (from H) until it answers name with want. */
static bool upstream_answers(const char *name, const char *want)
{
	uint8_t q[300], a[4096];
	size_t n = 0;
	q[n++] = 0x12;
	q[n++] = 0x34;
	q[n++] = 0x01; /* RD */
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = 1;
	memset(q + n, 0, 6);
	n += 6;
	char copy[256];
	snprintf(copy, sizeof copy, "%s", name);
	for (char *save = NULL, *l = strtok_r(copy, ".", &save); l; l = strtok_r(NULL, ".", &save)) {
		q[n++] = (uint8_t)strlen(l);
		memcpy(q + n, l, strlen(l));
		n += strlen(l);
	}
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = 1;
	q[n++] = 0;
	q[n++] = 1;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, IP_DNS_UPSTREAM, &to.sin_addr);
	sendto(s, q, n, 0, (struct sockaddr *)&to, sizeof to);
	struct pollfd p = {.fd = s, .events = POLLIN};
	bool ok = false;
	if (poll(&p, 1, 300) == 1) {
		ssize_t got = recv(s, a, sizeof a, 0);
		dns_header_t h;
		dns_question_t qq;
		dns_answer_t *ans = malloc(sizeof *ans);
		if (got > 0 && dns_query_parse(q, n, &h, &qq) == 0 &&
		    dns_response_parse(a, (size_t)got, &qq, ans) == 0 && ans->n_addrs > 0) {
			char t[64];
			inet_ntop(AF_INET, ans->addrs[0].addr, t, sizeof t);
			ok = !want || strcmp(t, want) == 0;
		}
		free(ans);
	}
	close(s);
	return ok;
}

static volatile pid_t g_supervised = -1;

static void supervisor_signal(int sig)
{
	if (g_supervised > 0)
		kill(g_supervised, sig == SIGHUP ? SIGHUP : SIGKILL);
	if (sig != SIGHUP)
		_exit(0);
}

/* The supervisor: SIGHUP goes on to dnsmasq, SIGTERM (also when the test
 * process dies) ends it. */
static void dnsmasq_supervise(pid_t parent, const char *const *argv)
{
	signal(SIGHUP, supervisor_signal);
	signal(SIGTERM, supervisor_signal);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(0);
	pid_t child = fork();
	if (child == 0) {
		int null = open("/dev/null", O_RDWR);
		if (null < 0 || setns(g_inet_fd, CLONE_NEWNET) < 0)
			_exit(126);
		dup2(null, 0);
		dup2(null, 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	g_supervised = child;
	while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
		;
	_exit(0);
}

static void dnsmasq_start(int ttl)
{
	char ttl_opt[32], hosts_opt[400], log_opt[400];
	snprintf(ttl_opt, sizeof ttl_opt, "--local-ttl=%d", ttl);
	snprintf(hosts_opt, sizeof hosts_opt, "--addn-hosts=%s", g_hosts);
	snprintf(log_opt, sizeof log_opt, "--log-facility=%s/dnsmasq.log", g_base);
	const char *argv[] = {
		"dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
		"--no-hosts", "--bind-interfaces", "--listen-address=" IP_DNS_UPSTREAM, "--port=53",
		hosts_opt, ttl_opt, "--cname=cname.allowed.test,denied.test",
		"--cname=cname2.allowed.test,cidr-target.test",
		"--cname=cname3.allowed.test,ok-target.test", "--user=root", "--pid-file=",
		"--log-queries", log_opt, "--cache-size=0",
		/* chain.test -> c1.chain.test -> ... -> c15.chain.test -> far.test */
		"--cname=chain.test,c1.chain.test", "--cname=c1.chain.test,c2.chain.test",
		"--cname=c2.chain.test,c3.chain.test", "--cname=c3.chain.test,c4.chain.test",
		"--cname=c4.chain.test,c5.chain.test", "--cname=c5.chain.test,c6.chain.test",
		"--cname=c6.chain.test,c7.chain.test", "--cname=c7.chain.test,c8.chain.test",
		"--cname=c8.chain.test,c9.chain.test", "--cname=c9.chain.test,c10.chain.test",
		"--cname=c10.chain.test,c11.chain.test", "--cname=c11.chain.test,c12.chain.test",
		"--cname=c12.chain.test,c13.chain.test", "--cname=c13.chain.test,c14.chain.test",
		"--cname=c14.chain.test,c15.chain.test", "--cname=c15.chain.test,far.test", NULL};
	/* Under a small supervisor, so dnsmasq goes with this process however
	 * it ends (a sanitizer's abort, a CTest timeout): dnsmasq changes its
	 * credentials, which clears a parent-death signal of its own. */
	pid_t parent = getpid();
	g_dnsmasq = fork();
	CHECK(g_dnsmasq >= 0, "fork: %s", strerror(errno));
	if (g_dnsmasq == 0)
		dnsmasq_supervise(parent, argv);
	for (int i = 0; i < 100; i++) {
		if (upstream_answers("allowed.test", IP_ALLOWED))
			return;
		usleep(50000);
	}
	CHECK(0, "dnsmasq did not answer within 5 s (see %s/dnsmasq.log)", g_base);
}

void world_change_answer(void)
{
	hosts_write(IP_CHANGING_2);
	kill(g_dnsmasq, SIGHUP);
	for (int i = 0; i < 100; i++) {
		if (upstream_answers("changing.test", IP_CHANGING_2))
			return;
		usleep(20000);
	}
	CHECK(0, "dnsmasq kept its old answer for changing.test");
}

static bool have(const char *prog)
{
	const char *dirs[] = {"/usr/sbin", "/usr/bin", "/sbin", "/bin"};
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		char p[256];
		snprintf(p, sizeof p, "%s/%s", dirs[i], prog);
		if (access(p, X_OK) == 0)
			return true;
	}
	return false;
}

void world_setup(int dnsmasq_ttl)
{
	if (geteuid() != 0)
		SKIP("needs root (network namespaces, nftables)");
	if (!have("dnsmasq") || !have("nft") || !have("ip") || !have("nsenter"))
		SKIP("needs dnsmasq, nft, ip and nsenter");
	snprintf(g_base, sizeof g_base, "/tmp/hutch-net-XXXXXX");
	CHECK(mkdtemp(g_base), "mkdtemp: %s", strerror(errno));
	snprintf(g_audit, sizeof g_audit, "%s/audit.log", g_base);
	snprintf(g_hosts, sizeof g_hosts, "%s/hosts", g_base);
	/* H: this process's own network namespace, from here on. */
	CHECK(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET): %s", strerror(errno));
	snprintf(g_inet, sizeof g_inet, "%s/inet", g_base);
	ns_pin(g_inet);
	g_inet_fd = open(g_inet, O_RDONLY | O_CLOEXEC);
	CHECK(g_inet_fd >= 0, "open %s", g_inet);
	_cleanup_free_ char *script = xasprintf(
		"ip link set lo up\n"
		"nsenter --net=%s ip link add wan0 type veth peer name up0 netns %d\n"
		"ip addr add " IP_HOST_UPLINK "/24 dev up0\n"
		"ip -6 addr add 2001:db8::2/64 dev up0 nodad\n"
		"ip link set up0 up\n"
		"ip route add default via " IP_DNS_UPSTREAM "\n"
		"ip -6 route add default via 2001:db8::1\n"
		"nsenter --net=%s sh -ec '"
		"ip link set lo up; "
		"ip addr add " IP_DNS_UPSTREAM "/24 dev wan0; "
		"ip -6 addr add 2001:db8::1/64 dev wan0 nodad; "
		"ip link set wan0 up; "
		"ip route add local 198.18.1.0/24 dev lo; "
		"ip route add local 198.18.2.0/24 dev lo; "
		"ip route add local 198.18.16.0/20 dev lo; "
		"ip route add local 169.254.169.254/32 dev lo; "
		"ip -6 route add local 2001:db8:1::/64 dev lo; "
		"ip -6 route add local fd00:ec2::254/128 dev lo; "
		"ip -6 route add local 64:ff9b::/96 dev lo; "
		"ip -6 route add local " NAT64_OPERATOR_PREFIX " dev lo; "
		"ip route add 10.200.0.0/16 via " IP_HOST_UPLINK "; "
		"ip -6 route add fd00:6567::/64 via 2001:db8::2'\n",
		g_inet, (int)getpid(), g_inet);
	host_sh(script);
	hosts_write(IP_CHANGING_1);
	g_servers = fork();
	CHECK(g_servers >= 0, "fork");
	if (g_servers == 0)
		servers_main();
	dnsmasq_start(dnsmasq_ttl);
}

/* ---- the loop and the plugin ---- */

static uv_loop_t g_loop;
static host_core_t *g_core;
static pthread_t g_loop_thread;
static bool g_loop_running;
static pthread_mutex_t g_ready_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_ready_cond = PTHREAD_COND_INITIALIZER;
static bool g_ready;
static uv_async_t g_keepalive;

static void on_keepalive(uv_async_t *a)
{
	(void)a;
}

static void *loop_main(void *arg)
{
	(void)arg;
	hutch_err_t e = {0};
	uv_loop_init(&g_loop);
	if (host_core_new(&g_loop, g_audit, &g_core, &e) < 0) {
		fprintf(stderr, "host_core_new: %s\n", e.message);
		exit(1);
	}
	uv_async_init(&g_loop, &g_keepalive, on_keepalive);
	pthread_mutex_lock(&g_ready_lock);
	g_ready = true;
	pthread_cond_signal(&g_ready_cond);
	pthread_mutex_unlock(&g_ready_lock);
	uv_run(&g_loop, UV_RUN_DEFAULT);
	return NULL;
}

static void loop_start(void)
{
	if (g_loop_running)
		return;
	g_loop_running = true;
	pthread_create(&g_loop_thread, NULL, loop_main, NULL);
	pthread_mutex_lock(&g_ready_lock);
	while (!g_ready)
		pthread_cond_wait(&g_ready_cond, &g_ready_lock);
	pthread_mutex_unlock(&g_ready_lock);
}

/* The base config, minus the keys extra sets. */
static char *config_text(const char *extra)
{
	static const char *const base[] = {
		"pool = \"10.200.0.0/24\"",
		"upstream_dns = [\"" IP_DNS_UPSTREAM "\"]",
		"counters_interval = \"200ms\"",
		"upstream_timeout = \"1s\"",
	};
	strbuf_t b = STRBUF_INIT;
	for (size_t i = 0; i < ARRAY_SIZE(base); i++) {
		char key[64];
		snprintf(key, sizeof key, "%.*s", (int)strcspn(base[i], " ="), base[i]);
		bool overridden = false;
		for (const char *p = extra; p && (p = strstr(p, key)); p += strlen(key))
			if ((p == extra || p[-1] == '\n') && (p[strlen(key)] == ' ' || p[strlen(key)] == '='))
				overridden = true;
		if (!overridden)
			sb_printf(&b, "%s\n", base[i]);
	}
	if (extra)
		sb_printf(&b, "%s\n", extra);
	return sb_steal(&b);
}

int egress_try_load(egress_t *eg, const char *extra_config, hutch_err_t *err)
{
	loop_start();
	memset(eg, 0, sizeof *eg);
	plugin_t *p;
	int r = plugin_open(HUTCH_NET_PLUGIN_PATH, &p, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *text = config_text(extra_config);
	toml_value_t *table = NULL;
	toml_error_t te = {0};
	CHECK(toml_parse(text, strlen(text), &table, &te) == 0, "config %d:%d: %s\n%s", te.line,
	      te.col, te.message, text);
	r = plugin_configure(p, table, NULL, err);
	toml_free(table);
	if (r < 0) {
		plugin_close(p);
		return r;
	}
	_cleanup_free_ char *state = xasprintf("%s/state", g_base);
	_cleanup_free_ char *run = xasprintf("%s/run", g_base);
	mkdir(state, 0700);
	mkdir(run, 0700);
	host_ctx_t *ctx;
	CHECK_OK(host_ctx_new(g_core, "network", "net-egress", state, run, &ctx, err), err);
	r = plugin_start(p, ctx, err);
	if (r < 0) {
		plugin_close(p);
		host_ctx_free(ctx);
		return r;
	}
	eg->plugin = p;
	eg->ctx = ctx;
	eg->ops = &p->ops.network;
	eg->inst = p->instance;
	return 0;
}

void egress_load(egress_t *eg, const char *extra_config)
{
	hutch_err_t e = {0};
	int r = egress_try_load(eg, extra_config, &e);
	CHECK(r == 0, "load net-egress: %s\n%s", e.message, extra_config ? extra_config : "");
}

void egress_unload(egress_t *eg)
{
	plugin_close(eg->plugin);
	host_ctx_free(eg->ctx);
	memset(eg, 0, sizeof *eg);
}

/* ---- sandboxes ---- */

typedef struct policy_mem {
	hutch_net_policy_t p[8];
	const hutch_net_policy_t *ptrs[8];
} policy_mem_t;

static void policies_build(policy_mem_t *m, const policy_spec_t *specs, size_t n)
{
	CHECK(n <= 8, "too many policies");
	for (size_t i = 0; i < n; i++) {
		m->p[i] = (hutch_net_policy_t){
			.size = sizeof(hutch_net_policy_t),
			.name = specs[i].name ? specs[i].name : "p",
			.allow_all = specs[i].allow_all,
			.allowed_hostnames = specs[i].allow_hosts,
			.allowed_cidrs = specs[i].allow_cidrs,
			.denied_hostnames = specs[i].deny_hosts,
			.denied_cidrs = specs[i].deny_cidrs,
		};
		m->ptrs[i] = &m->p[i];
	}
}

int sandbox_attach_try(egress_t *eg, sandbox_t *sb, const char *tenant,
		       const policy_spec_t *policies, size_t n, bool set, hutch_err_t *err)
{
	static int counter;
	memset(sb, 0, sizeof *sb);
	sb->nsfd = -1;
	snprintf(sb->id, sizeof sb->id, "t-%d-%d", (int)getpid(), ++counter);
	policy_mem_t m;
	policies_build(&m, policies, n);
	hutch_net_attach_t req = {
		.size = sizeof req,
		.sandbox_id = sb->id,
		.tenant = tenant ? tenant : "tenant-a",
		.netns_path = NULL,
		.policies = n ? m.ptrs : NULL,
		.n_policies = n,
		.policies_set = set,
	};
	hutch_net_attachment_t out = {.size = sizeof out};
	int r = eg->ops->attach(eg->inst, &req, &out, err);
	if (r < 0)
		return r;
	snprintf(sb->netns, sizeof sb->netns, "%s", out.netns_path);
	snprintf(sb->addr, sizeof sb->addr, "%.*s", (int)strcspn(out.addresses[0], "/"),
		 out.addresses[0]);
	if (out.addresses[1][0])
		snprintf(sb->addr6, sizeof sb->addr6, "%.*s", (int)strcspn(out.addresses[1], "/"),
			 out.addresses[1]);
	snprintf(sb->dns, sizeof sb->dns, "%s", out.dns_server);
	sb->nsfd = open(sb->netns, O_RDONLY | O_CLOEXEC);
	CHECK(sb->nsfd >= 0, "open %s: %s", sb->netns, strerror(errno));
	return 0;
}

void sandbox_attach(egress_t *eg, sandbox_t *sb, const char *tenant,
		    const policy_spec_t *policies, size_t n, bool set)
{
	hutch_err_t e = {0};
	CHECK_OK(sandbox_attach_try(eg, sb, tenant, policies, n, set, &e), &e);
	CHECK(sb->addr[0] && sb->dns[0] && sb->netns[0], "attach filled no address/dns/netns");
}

void sandbox_detach(egress_t *eg, sandbox_t *sb)
{
	hutch_err_t e = {0};
	if (sb->nsfd >= 0)
		close(sb->nsfd);
	sb->nsfd = -1;
	CHECK_OK(eg->ops->detach(eg->inst, sb->id, &e), &e);
}

int64_t sandbox_update(egress_t *eg, sandbox_t *sb, const policy_spec_t *policies, size_t n,
		       bool set)
{
	policy_mem_t m;
	policies_build(&m, policies, n);
	hutch_err_t e = {0};
	int64_t t0 = now_us();
	int r = eg->ops->policy_update(eg->inst, sb->id, n ? m.ptrs : NULL, n, set, &e);
	int64_t dt = now_us() - t0;
	CHECK(r == 0, "policy_update: %s", e.message);
	return dt;
}

/* ---- probes ---- */

static bool parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	/* inet_aton takes the old notations: 3323068692, 0306.022.01.024,
	 * 0xc6120114, as connect() callers in C and many tools do. */
	if (inet_aton(text, &s4->sin_addr)) {
		s4->sin_family = AF_INET;
		*len = sizeof *s4;
		return true;
	}
	if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		*len = sizeof *s6;
		return true;
	}
	return false;
}

/* What came in on eth0: TCP resets and ICMP errors. */
static void capture_count(int cap, probe_t *p)
{
	uint8_t buf[2048];
	for (;;) {
		struct sockaddr_ll from;
		socklen_t fl = sizeof from;
		ssize_t n = recvfrom(cap, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		if (n <= 0)
			break;
		if (from.sll_pkttype == PACKET_OUTGOING || n < 14)
			continue;
		uint16_t type = (uint16_t)((buf[12] << 8) | buf[13]);
		const uint8_t *ip = buf + 14;
		size_t len = (size_t)n - 14;
		if (type == ETHERTYPE_IP && len >= 20) {
			size_t ihl = (size_t)(ip[0] & 0xf) * 4;
			if (ip[9] == 6 && len >= ihl + 14 && (ip[ihl + 13] & 0x04))
				p->rst_seen++;
			if (ip[9] == 1 && len > ihl && ip[ihl] != 0 && ip[ihl] != 8)
				p->icmp_seen++;
		} else if (type == ETHERTYPE_IPV6 && len >= 40) {
			if (ip[6] == 6 && len >= 40 + 14 && (ip[40 + 13] & 0x04))
				p->rst_seen++;
			if (ip[6] == 58 && len > 40 && ip[40] >= 1 && ip[40] <= 4)
				p->icmp_seen++;
		}
	}
}

/* One echo request and its reply, over a raw socket (root in the
 * sandbox's namespace; ping sockets are off in a fresh namespace). */
static void icmp_probe(probe_t *p, const struct sockaddr_storage *to, socklen_t tl)
{
	bool v6 = to->ss_family == AF_INET6;
	int s = socket(to->ss_family, SOCK_RAW | SOCK_CLOEXEC, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
	if (s < 0) {
		p->error = errno;
		return;
	}
	uint16_t id = (uint16_t)(now_us() & 0xffff);
	uint8_t pkt[16] = {v6 ? 128 : 8, 0, 0, 0, (uint8_t)(id >> 8), (uint8_t)id, 0, 1,
			   'h', 'u', 't', 'c', 'h', 0, 0, 0};
	if (!v6) { /* the kernel sums ICMPv6; ICMPv4 is ours */
		uint32_t sum = 0;
		for (size_t i = 0; i < sizeof pkt; i += 2)
			sum += (uint32_t)(pkt[i] << 8 | pkt[i + 1]);
		while (sum >> 16)
			sum = (sum & 0xffff) + (sum >> 16);
		pkt[2] = (uint8_t)(~sum >> 8);
		pkt[3] = (uint8_t)~sum;
	}
	int64_t t0 = now_us();
	if (sendto(s, pkt, sizeof pkt, 0, (const struct sockaddr *)to, tl) < 0) {
		p->error = errno;
		close(s);
		return;
	}
	p->error = ETIMEDOUT;
	for (;;) {
		int left = p->timeout_ms - (int)((now_us() - t0) / 1000);
		struct pollfd pf = {.fd = s, .events = POLLIN};
		if (left <= 0 || poll(&pf, 1, left) != 1)
			break;
		uint8_t buf[1500];
		ssize_t n = recv(s, buf, sizeof buf, 0);
		if (n <= 0)
			break;
		size_t off = v6 ? 0 : (size_t)(buf[0] & 0xf) * 4; /* v4 raw sockets see the IP header */
		if ((size_t)n < off + 8)
			continue;
		uint8_t type = buf[off];
		uint16_t rid = (uint16_t)(buf[off + 4] << 8 | buf[off + 5]);
		if (type == (v6 ? 129 : 0) && rid == id) {
			p->error = 0;
			break;
		}
	}
	p->elapsed_ms = (now_us() - t0) / 1000;
	close(s);
}

static void *probe_thread(void *arg)
{
	probe_t *p = arg;
	struct sockaddr_storage to;
	socklen_t tl;
	p->error = EINVAL;
	if (!parse_addr(p->addr, &to, &tl))
		return NULL;
	int cap = -1;
	if (p->capture) {
		cap = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
		struct sockaddr_ll ll = {.sll_family = AF_PACKET,
					 .sll_protocol = htons(ETH_P_ALL),
					 .sll_ifindex = (int)if_nametoindex("eth0")};
		if (cap < 0 || bind(cap, (struct sockaddr *)&ll, sizeof ll) < 0) {
			p->error = errno;
			return NULL;
		}
	}
	if (p->kind == PROBE_ICMP) {
		icmp_probe(p, &to, tl);
		goto captured;
	}
	((struct sockaddr_in *)&to)->sin_port = htons(p->port);
	int s = socket(to.ss_family,
		       (p->kind == PROBE_TCP ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC,
		       0);
	if (p->src_port) {
		int one = 1;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		struct sockaddr_storage local = {.ss_family = to.ss_family};
		((struct sockaddr_in *)&local)->sin_port = htons(p->src_port);
		if (bind(s, (struct sockaddr *)&local,
			 to.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						 : sizeof(struct sockaddr_in6)) < 0) {
			p->error = errno;
			close(s);
			goto captured;
		}
	}
	int64_t t0 = now_us();
	int r = connect(s, (struct sockaddr *)&to, tl);
	if (p->kind == PROBE_TCP) {
		if (r < 0 && errno != EINPROGRESS) {
			p->error = errno;
		} else {
			struct pollfd pf = {.fd = s, .events = POLLOUT};
			int pr = poll(&pf, 1, p->timeout_ms);
			if (pr == 0) {
				p->error = ETIMEDOUT;
			} else {
				int soerr = 0;
				socklen_t sl = sizeof soerr;
				getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl);
				p->error = soerr;
			}
		}
		p->elapsed_ms = (now_us() - t0) / 1000;
		if (p->error == 0) {
			struct pollfd pf = {.fd = s, .events = POLLIN};
			if (poll(&pf, 1, 2000) == 1) {
				ssize_t n = read(s, p->reply, sizeof p->reply - 1);
				if (n > 0)
					p->reply[n] = '\0';
			}
		}
	} else {
		if (r < 0) {
			p->error = errno;
		} else {
			if (send(s, "ping", 4, 0) < 0) {
				p->error = errno;
			} else {
				struct pollfd pf = {.fd = s, .events = POLLIN};
				int pr = poll(&pf, 1, p->timeout_ms);
				if (pr == 0) {
					p->error = ETIMEDOUT;
				} else {
					ssize_t n = recv(s, p->reply, sizeof p->reply - 1, 0);
					p->error = n < 0 ? errno : 0;
					if (n > 0)
						p->reply[n] = '\0';
				}
			}
		}
		p->elapsed_ms = (now_us() - t0) / 1000;
	}
	close(s);
captured:
	if (cap >= 0) {
		usleep(50000); /* anything the peer or a router might still send */
		capture_count(cap, p);
		close(cap);
	}
	return NULL;
}

void sandbox_probe(const sandbox_t *sb, probe_t *p)
{
	in_netns(sb->nsfd, probe_thread, p);
}

int sandbox_tcp(const sandbox_t *sb, const char *addr, int timeout_ms)
{
	probe_t p = {.kind = PROBE_TCP, .addr = addr, .port = 80, .timeout_ms = timeout_ms};
	sandbox_probe(sb, &p);
	return p.error;
}

void expect_connects(const sandbox_t *sb, const char *addr, const char *why)
{
	probe_t p = {.kind = PROBE_TCP, .addr = addr, .port = 80, .timeout_ms = 2000};
	sandbox_probe(sb, &p);
	CHECK(p.error == 0, "%s: connect to %s from %s: %s", why, addr, sb->id, strerror(p.error));
	CHECK(strncmp(p.reply, "hello ", 6) == 0, "%s: %s answered `%s`", why, addr, p.reply);
}

void expect_dropped(const sandbox_t *sb, const char *addr, const char *why)
{
	probe_t p = {.kind = PROBE_TCP, .addr = addr, .port = 80, .timeout_ms = 1000, .capture = true};
	sandbox_probe(sb, &p);
	CHECK(p.error == ETIMEDOUT, "%s: connect to %s from %s should time out, got %s", why, addr,
	      sb->id, p.error ? strerror(p.error) : "a connection");
	CHECK(p.rst_seen == 0 && p.icmp_seen == 0,
	      "%s: a drop must be silent, but the sandbox saw %d RST and %d ICMP", why, p.rst_seen,
	      p.icmp_seen);
}

/* ---- DNS from inside ---- */

typedef struct resolve_job {
	const char *server;
	const char *name;
	uint16_t qtype;
	bool tcp;
	char (*out)[64];
	int max;
	int rcode;
	int n;
} resolve_job_t;

static size_t query_build(const char *name, uint16_t qtype, uint16_t id, uint8_t *q)
{
	size_t n = 0;
	q[n++] = (uint8_t)(id >> 8);
	q[n++] = (uint8_t)id;
	q[n++] = 0x01;
	q[n++] = 0;
	q[n++] = 0;
	q[n++] = 1;
	memset(q + n, 0, 6);
	n += 6;
	char copy[300];
	snprintf(copy, sizeof copy, "%s", name);
	for (char *save = NULL, *l = strtok_r(copy, ".", &save); l; l = strtok_r(NULL, ".", &save)) {
		q[n++] = (uint8_t)strlen(l);
		memcpy(q + n, l, strlen(l));
		n += strlen(l);
	}
	q[n++] = 0;
	q[n++] = (uint8_t)(qtype >> 8);
	q[n++] = (uint8_t)qtype;
	q[n++] = 0;
	q[n++] = 1;
	return n;
}

static ssize_t exchange_udp(const char *server, const uint8_t *q, size_t n, uint8_t *a, size_t cap)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, server, &to.sin_addr);
	ssize_t got = -1;
	for (int attempt = 0; attempt < 2 && got < 0; attempt++) {
		sendto(s, q, n, 0, (struct sockaddr *)&to, sizeof to);
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (poll(&p, 1, 2500) == 1)
			got = recv(s, a, cap, 0);
	}
	close(s);
	return got;
}

static ssize_t exchange_tcp(const char *server, const uint8_t *q, size_t n, uint8_t *a, size_t cap)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, server, &to.sin_addr);
	struct timeval tv = {.tv_sec = 3};
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	ssize_t got = -1;
	uint8_t lp[2] = {(uint8_t)(n >> 8), (uint8_t)n};
	if (connect(s, (struct sockaddr *)&to, sizeof to) == 0 && write(s, lp, 2) == 2 &&
	    write(s, q, n) == (ssize_t)n) {
		uint8_t hdr[2];
		if (recv(s, hdr, 2, MSG_WAITALL) == 2) {
			size_t want = ((size_t)hdr[0] << 8) | hdr[1];
			if (want <= cap && recv(s, a, want, MSG_WAITALL) == (ssize_t)want)
				got = (ssize_t)want;
		}
	}
	close(s);
	return got;
}

static void *resolve_thread(void *arg)
{
	resolve_job_t *j = arg;
	uint8_t q[512];
	uint8_t *a = malloc(65536);
	dns_answer_t *ans = malloc(sizeof *ans);
	size_t n = query_build(j->name, j->qtype, (uint16_t)(now_us() & 0xffff), q);
	ssize_t got = j->tcp ? exchange_tcp(j->server, q, n, a, 65536)
			     : exchange_udp(j->server, q, n, a, 65536);
	dns_header_t h;
	dns_question_t qq;
	j->n = -1;
	if (got > 0 && dns_query_parse(q, n, &h, &qq) == 0 &&
	    dns_response_parse(a, (size_t)got, &qq, ans) == 0) {
		if ((ans->h.flags & DNS_FLAG_TC) && !j->tcp) {
			got = exchange_tcp(j->server, q, n, a, 65536);
			if (got <= 0 || dns_response_parse(a, (size_t)got, &qq, ans) < 0)
				goto out;
		}
		j->rcode = DNS_RCODE(ans->h.flags);
		j->n = 0;
		for (size_t i = 0; i < ans->n_addrs && j->n < j->max; i++)
			inet_ntop(ans->addrs[i].family, ans->addrs[i].addr, j->out[j->n++], 64);
	}
out:
	free(a);
	free(ans);
	return NULL;
}

int sandbox_resolve(const sandbox_t *sb, const char *name, uint16_t qtype, bool tcp,
		    char out[][64], int max, int *rcode)
{
	resolve_job_t j = {sb->dns, name, qtype, tcp, out, max, -1, -1};
	in_netns(sb->nsfd, resolve_thread, &j);
	if (rcode)
		*rcode = j.rcode;
	return j.n;
}

void expect_resolves(const sandbox_t *sb, const char *name, const char *want)
{
	char out[8][64];
	int rcode;
	int n = sandbox_resolve(sb, name, 1, false, out, 8, &rcode);
	CHECK(n >= 1, "resolve %s from %s: %s (rcode %d)", name, sb->id,
	      n < 0 ? "no answer" : "no address", rcode);
	CHECK(strcmp(out[0], want) == 0, "resolve %s: got %s, want %s", name, out[0], want);
}

/* ---- inspection ---- */

char *nft_table_json(void)
{
	const char *argv[] = {"nft", "-j", "list", "table", "inet", "hutch_egress", NULL};
	size_t cap = 4 << 20;
	char *out = xcalloc(cap, 1);
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 20000, out, cap, &e) < 0)
		out[0] = '\0';
	return out;
}

int host_links_named(const char *name)
{
	const char *argv[] = {"ip", "-o", "link", "show", NULL};
	char *out = xcalloc(1 << 20, 1);
	hutch_err_t e = {0};
	CHECK_OK(proc_run_argv(argv, 10000, out, 1 << 20, &e), &e);
	int count = 0;
	char pat1[64], pat2[64];
	snprintf(pat1, sizeof pat1, ": %s:", name);
	snprintf(pat2, sizeof pat2, ": %s@", name);
	for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (strstr(l, pat1) || strstr(l, pat2))
			count++;
	free(out);
	return count;
}

void host_ifname_of(const char *sandbox_id, char out[32])
{
	const char *argv[] = {"ip", "-o", "link", "show", NULL};
	char *text = xcalloc(1 << 20, 1);
	hutch_err_t e = {0};
	CHECK_OK(proc_run_argv(argv, 10000, text, 1 << 20, &e), &e);
	out[0] = '\0';
	_cleanup_free_ char *alias = xasprintf("alias %s", sandbox_id);
	for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		char *a = strstr(l, alias);
		if (!a || (a[strlen(alias)] != '\0' && a[strlen(alias)] != ' ' &&
			   a[strlen(alias)] != '\\'))
			continue;
		/* "12: hx2@if3: <...": the name sits between ": " and "@" or ":". */
		char *name = strstr(l, ": ");
		if (name) {
			name += 2;
			size_t n = strcspn(name, "@:");
			snprintf(out, 32, "%.*s", (int)(n < 31 ? n : 31), name);
		}
		break;
	}
	free(text);
}

void expect_no_trace(const char *sandbox_id, const char *ifname)
{
	CHECK(ifname[0], "no interface name given");
	CHECK(host_links_named(ifname) == 0, "interface %s of %s is still there", ifname, sandbox_id);
	char *json = nft_table_json();
	/* Set elements are keyed by the interface name; its counter is c_<name>. */
	_cleanup_free_ char *quoted = xasprintf("\"%s\"", ifname);
	_cleanup_free_ char *counter = xasprintf("\"c_%s\"", ifname);
	bool left = strstr(json, quoted) || strstr(json, counter);
	CHECK(!left, "the table still names %s:\n%.2000s", ifname, json);
	free(json);
	_cleanup_free_ char *ns = xasprintf("%s/run/plugins/net-egress/netns/%s", g_base, sandbox_id);
	_cleanup_free_ char *st = xasprintf("%s/run/plugins/net-egress/sandboxes/%s", g_base, sandbox_id);
	CHECK(access(ns, F_OK) != 0, "namespace file %s is still there", ns);
	CHECK(access(st, F_OK) != 0, "state file %s is still there", st);
	/* Nothing mounted there either. */
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[2048];
	while (f && fgets(line, sizeof line, f))
		CHECK(!strstr(line, ns), "%s is still mounted", ns);
	if (f)
		fclose(f);
}

char *audit_grep(int wait_ms, const char *const *needles)
{
	int64_t deadline = now_us() + (int64_t)wait_ms * 1000;
	for (;;) {
		strbuf_t out = STRBUF_INIT;
		FILE *f = fopen(g_audit, "re");
		char *line = NULL;
		size_t cap = 0;
		while (f && getline(&line, &cap, f) > 0) {
			bool all = true;
			for (size_t i = 0; needles[i] && all; i++)
				all = strstr(line, needles[i]) != NULL;
			if (all)
				sb_append(&out, line);
		}
		free(line);
		if (f)
			fclose(f);
		if (out.len)
			return sb_steal(&out);
		sb_free(&out);
		if (now_us() >= deadline)
			return NULL;
		usleep(20000);
	}
}

/* ---- UDP and ICMP expectations ---- */

void expect_udp_echo(const sandbox_t *sb, const char *addr, const char *why)
{
	probe_t p = {.kind = PROBE_UDP, .addr = addr, .port = 7, .timeout_ms = 2000};
	sandbox_probe(sb, &p);
	CHECK(p.error == 0 && strcmp(p.reply, "ping") == 0, "%s: UDP echo from %s via %s: %s", why,
	      addr, sb->id, p.error ? strerror(p.error) : p.reply);
}

void expect_udp_dropped(const sandbox_t *sb, const char *addr, const char *why)
{
	probe_t p = {.kind = PROBE_UDP, .addr = addr, .port = 7, .timeout_ms = 1000, .capture = true};
	sandbox_probe(sb, &p);
	CHECK(p.error == ETIMEDOUT, "%s: UDP to %s from %s should go unanswered, got %s", why, addr,
	      sb->id, p.error ? strerror(p.error) : "an echo");
	CHECK(p.rst_seen == 0 && p.icmp_seen == 0,
	      "%s: a drop must be silent, but the sandbox saw %d RST and %d ICMP", why, p.rst_seen,
	      p.icmp_seen);
}

void expect_ping(const sandbox_t *sb, const char *addr, const char *why)
{
	probe_t p = {.kind = PROBE_ICMP, .addr = addr, .timeout_ms = 2000};
	sandbox_probe(sb, &p);
	CHECK(p.error == 0, "%s: ping %s from %s: %s", why, addr, sb->id, strerror(p.error));
}

void expect_ping_dropped(const sandbox_t *sb, const char *addr, const char *why)
{
	probe_t p = {.kind = PROBE_ICMP, .addr = addr, .timeout_ms = 1000, .capture = true};
	sandbox_probe(sb, &p);
	CHECK(p.error == ETIMEDOUT, "%s: ping %s from %s should go unanswered, got %s", why, addr,
	      sb->id, p.error ? strerror(p.error) : "a reply");
	CHECK(p.icmp_seen == 0, "%s: a drop must be silent, but the sandbox saw %d ICMP errors", why,
	      p.icmp_seen);
}

/* ---- servers in a namespace ---- */

struct tcp_server {
	int fd;
	int stop_pipe[2];
	pthread_t thread;
};

typedef struct server_bind {
	const char *addr;
	uint16_t port;
	int fd;
	int error;
} server_bind_t;

static void *server_bind_thread(void *arg)
{
	server_bind_t *b = arg;
	struct sockaddr_storage ss;
	socklen_t len;
	b->fd = -1;
	if (!parse_addr(b->addr, &ss, &len)) {
		b->error = EINVAL;
		return NULL;
	}
	((struct sockaddr_in *)&ss)->sin_port = htons(b->port);
	int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(s, SOL_IP, IP_FREEBIND, &one, sizeof one);
	if (bind(s, (struct sockaddr *)&ss, len) < 0 || listen(s, 64) < 0) {
		b->error = errno;
		close(s);
		return NULL;
	}
	b->fd = s;
	return NULL;
}

static void *server_main(void *arg)
{
	tcp_server_t *srv = arg;
	for (;;) {
		struct pollfd p[2] = {{.fd = srv->fd, .events = POLLIN},
				      {.fd = srv->stop_pipe[0], .events = POLLIN}};
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			return NULL;
		int c = accept(srv->fd, NULL, NULL);
		if (c >= 0) {
			greet(c);
			close(c);
		}
	}
}

tcp_server_t *tcp_server_start(int nsfd, const char *addr, uint16_t port)
{
	server_bind_t b = {addr, port, -1, 0};
	/* The socket belongs to the namespace it was made in; the thread
	 * serving it may live anywhere. */
	if (nsfd >= 0)
		in_netns(nsfd, server_bind_thread, &b);
	else
		server_bind_thread(&b);
	CHECK(b.fd >= 0, "listen on %s:%u: %s", addr, port, strerror(b.error));
	tcp_server_t *srv = xcalloc(1, sizeof *srv);
	srv->fd = b.fd;
	CHECK(pipe2(srv->stop_pipe, O_CLOEXEC) == 0, "pipe");
	CHECK(pthread_create(&srv->thread, NULL, server_main, srv) == 0, "thread");
	return srv;
}

void tcp_server_stop(tcp_server_t *srv)
{
	if (!srv)
		return;
	if (write(srv->stop_pipe[1], "x", 1) < 0) {
		/* the thread sees the pipe close below */
	}
	pthread_join(srv->thread, NULL);
	close(srv->stop_pipe[0]);
	close(srv->stop_pipe[1]);
	close(srv->fd);
	free(srv);
}

typedef struct lo_addr_job {
	const char *addr;
} lo_addr_job_t;

static void *lo_addr_thread(void *arg)
{
	lo_addr_job_t *j = arg;
	_cleanup_free_ char *cmd = xasprintf("ip addr add %s/32 dev lo", j->addr);
	host_sh(cmd); /* the child inherits this thread's namespace */
	return NULL;
}

void netns_add_lo_addr(int nsfd, const char *addr)
{
	lo_addr_job_t j = {addr};
	in_netns(nsfd, lo_addr_thread, &j);
}

typedef struct sh_job {
	const char *script;
	int code;
} sh_job_t;

static void *sh_thread(void *arg)
{
	sh_job_t *j = arg;
	const char *argv[] = {"sh", "-c", j->script, NULL};
	char out[4096];
	hutch_err_t e = {0};
	j->code = proc_run_argv(argv, 20000, out, sizeof out, &e) == 0 ? 0 : 1;
	return NULL;
}

int sandbox_sh(const sandbox_t *sb, const char *script)
{
	sh_job_t j = {script, -1};
	in_netns(sb->nsfd, sh_thread, &j);
	return j.code;
}

typedef struct raw_job {
	const char *server;
	bool tcp;
	const uint8_t *msg;
	size_t len;
	uint8_t *out;
	size_t cap;
	int wait_ms;
	int result;
} raw_job_t;

static void *raw_thread(void *arg)
{
	raw_job_t *j = arg;
	int s = socket(AF_INET, (j->tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, j->server, &to.sin_addr);
	j->result = 0;
	if (connect(s, (struct sockaddr *)&to, sizeof to) < 0 ||
	    send(s, j->msg, j->len, MSG_NOSIGNAL) != (ssize_t)j->len) {
		j->result = -1;
		close(s);
		return NULL;
	}
	struct pollfd p = {.fd = s, .events = POLLIN};
	if (poll(&p, 1, j->wait_ms) == 1) {
		ssize_t n = recv(s, j->out, j->cap, 0);
		j->result = n > 0 ? (int)n : -1;
	}
	close(s);
	return NULL;
}

int sandbox_dns_raw(const sandbox_t *sb, bool tcp, const uint8_t *msg, size_t len, uint8_t *out,
		    size_t cap, int wait_ms)
{
	raw_job_t j = {sb->dns, tcp, msg, len, out, cap, wait_ms, 0};
	in_netns(sb->nsfd, raw_thread, &j);
	return j.result;
}

/* Sends, shuts down the sending side, and reads until the resolver
 * closes (or wait_ms passes). */
static void *half_close_thread(void *arg)
{
	raw_job_t *j = arg;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(53)};
	inet_pton(AF_INET, j->server, &to.sin_addr);
	j->result = -1;
	if (connect(s, (struct sockaddr *)&to, sizeof to) < 0 ||
	    send(s, j->msg, j->len, MSG_NOSIGNAL) != (ssize_t)j->len || shutdown(s, SHUT_WR) < 0) {
		close(s);
		return NULL;
	}
	size_t got = 0;
	int64_t end = now_us() + (int64_t)j->wait_ms * 1000;
	for (;;) {
		int left = (int)((end - now_us()) / 1000);
		struct pollfd p = {.fd = s, .events = POLLIN};
		if (left <= 0 || poll(&p, 1, left) != 1)
			break; /* still open: result stays -1 */
		ssize_t n = recv(s, j->out + got, j->cap - got, 0);
		if (n <= 0) {
			j->result = n == 0 ? (int)got : -1;
			break;
		}
		got += (size_t)n;
		if (got == j->cap)
			break;
	}
	close(s);
	return NULL;
}

int sandbox_dns_tcp_half_close(const sandbox_t *sb, const uint8_t *msg, size_t len, uint8_t *out,
			       size_t cap, int wait_ms)
{
	raw_job_t j = {sb->dns, true, msg, len, out, cap, wait_ms, 0};
	in_netns(sb->nsfd, half_close_thread, &j);
	return j.result;
}

/* ---- other plugins of the chain ---- */

int chain_plugin_try_load(const char *path, const char *name, const char *config, egress_t *pl,
			  hutch_err_t *err)
{
	loop_start();
	memset(pl, 0, sizeof *pl);
	plugin_t *p;
	int r = plugin_open(path, &p, err);
	if (r < 0)
		return r;
	toml_value_t *table = NULL;
	toml_error_t te = {0};
	const char *text = config ? config : "";
	CHECK(toml_parse(text, strlen(text), &table, &te) == 0, "config %d:%d: %s\n%s", te.line,
	      te.col, te.message, text);
	r = plugin_configure(p, table, NULL, err);
	toml_free(table);
	if (r < 0) {
		plugin_close(p);
		return r;
	}
	_cleanup_free_ char *state = xasprintf("%s/state", g_base);
	_cleanup_free_ char *run = xasprintf("%s/run", g_base);
	mkdir(state, 0700);
	mkdir(run, 0700);
	host_ctx_t *ctx;
	CHECK_OK(host_ctx_new(g_core, "network", name, state, run, &ctx, err), err);
	r = plugin_start(p, ctx, err);
	if (r < 0) {
		plugin_close(p);
		host_ctx_free(ctx);
		return r;
	}
	pl->plugin = p;
	pl->ctx = ctx;
	pl->ops = &p->ops.network;
	pl->inst = p->instance;
	return 0;
}
