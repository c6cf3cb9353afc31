/*
 * link.c: a member's device: the TUN opened in the host's namespace, its
 * move (and rename) into the sandbox's namespace, and its address, alias,
 * state and routes there, over rtnetlink (one request each, no process).
 *
 * A network namespace belongs to a thread: work inside a sandbox's runs on
 * a short-lived thread that enters it with setns(), so the pool thread
 * that asked never leaves the host's namespace.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "wg.h"

/* ---- a small rtnetlink request builder ---- */

typedef struct nl_req {
	struct nlmsghdr nh;
	char body[1024];
} nl_req_t;

static void *nl_tail(nl_req_t *q)
{
	return (char *)q + NLMSG_ALIGN(q->nh.nlmsg_len);
}

static void nl_put(nl_req_t *q, unsigned short type, const void *data, size_t len)
{
	struct rtattr *rta = nl_tail(q);
	rta->rta_type = type;
	rta->rta_len = (unsigned short)RTA_LENGTH(len);
	if (len)
		memcpy(RTA_DATA(rta), data, len);
	q->nh.nlmsg_len = NLMSG_ALIGN(q->nh.nlmsg_len) + RTA_ALIGN(rta->rta_len);
}

static void nl_init(nl_req_t *q, unsigned short type, unsigned short flags, const void *hdr,
		    size_t hdr_len)
{
	memset(q, 0, sizeof *q);
	q->nh.nlmsg_type = type;
	q->nh.nlmsg_flags = (unsigned short)(NLM_F_REQUEST | NLM_F_ACK | flags);
	q->nh.nlmsg_seq = 1;
	q->nh.nlmsg_len = (unsigned)NLMSG_LENGTH(hdr_len);
	memcpy(NLMSG_DATA(&q->nh), hdr, hdr_len);
}

/* Sends q on a fresh socket of the calling thread's namespace and returns
 * the kernel's answer (0 or -errno). */
static int nl_call(nl_req_t *q)
{
	_cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (sendto(fd, q, q->nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
		return -errno;
	char buf[4096];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_ERROR)
				return ((struct nlmsgerr *)NLMSG_DATA(h))->error;
		}
	}
}

static int link_set(int ifindex, unsigned flags, unsigned change, const char *name,
		    const char *alias, int netns_fd)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC, .ifi_index = ifindex,
				.ifi_flags = flags, .ifi_change = change};
	nl_req_t q;
	nl_init(&q, RTM_NEWLINK, 0, &ifi, sizeof ifi);
	if (netns_fd >= 0) {
		uint32_t fd = (uint32_t)netns_fd;
		nl_put(&q, IFLA_NET_NS_FD, &fd, sizeof fd);
	}
	if (name)
		nl_put(&q, IFLA_IFNAME, name, strlen(name) + 1);
	if (alias)
		nl_put(&q, IFLA_IFALIAS, alias, strlen(alias));
	return nl_call(&q);
}

/* ---- the TUN device ---- */

int wg_tun_open(const char *name, short flags, int *fd_out, int *ifindex, hutch_err_t *err)
{
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return hutch_err_sys(err, errno, "open /dev/net/tun");
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	ifr.ifr_flags = flags;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		return hutch_err_sys(err, errno, "TUN device %s", name);
	int idx = (int)if_nametoindex(name);
	if (idx <= 0)
		return hutch_err_sys(err, errno, "TUN device %s: no index", name);
	/* Up before wireguard-go looks: its first look decides whether it
	 * opens its UDP socket now, in this namespace. */
	int r = link_set(idx, IFF_UP, IFF_UP, NULL, NULL, -1);
	if (r < 0)
		return hutch_err_sys(err, -r, "TUN device %s: up", name);
	*ifindex = idx;
	*fd_out = steal_fd(&fd);
	return 0;
}

/* Reads the tun's flags from its link info (IFLA_TUN_*, kernel 4.15 on):
 * unlike /sys/class/net, this answers for the caller's namespace. */
int wg_tun_flags(const char *name, short *flags, hutch_err_t *err)
{
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	nl_req_t q;
	nl_init(&q, RTM_GETLINK, 0, &ifi, sizeof ifi);
	q.nh.nlmsg_flags = NLM_F_REQUEST;
	nl_put(&q, IFLA_IFNAME, name, strlen(name) + 1);
	_cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (fd < 0 || sendto(fd, &q, q.nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0)
		return hutch_err_sys(err, errno, "link info of %s", name);
	char buf[8192];
	ssize_t n = recv(fd, buf, sizeof buf, 0);
	if (n < 0)
		return hutch_err_sys(err, errno, "link info of %s", name);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (!NLMSG_OK(h, (unsigned)n) || h->nlmsg_type != RTM_NEWLINK)
		return hutch_err_set(err, ENODEV, "link info of %s: no such device", name);
	short f = 0;
	bool tun = false;
	int len = (int)IFLA_PAYLOAD(h);
	for (struct rtattr *a = IFLA_RTA(NLMSG_DATA(h)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type != IFLA_LINKINFO)
			continue;
		int l2 = (int)RTA_PAYLOAD(a);
		for (struct rtattr *b = RTA_DATA(a); RTA_OK(b, l2); b = RTA_NEXT(b, l2)) {
			if (b->rta_type == IFLA_INFO_KIND)
				tun = strncmp(RTA_DATA(b), "tun", RTA_PAYLOAD(b)) == 0;
			if (b->rta_type != IFLA_INFO_DATA)
				continue;
			int l3 = (int)RTA_PAYLOAD(b);
			for (struct rtattr *c = RTA_DATA(b); RTA_OK(c, l3); c = RTA_NEXT(c, l3)) {
				uint8_t v = RTA_PAYLOAD(c) >= 1 ? *(uint8_t *)RTA_DATA(c) : 0;
				if (c->rta_type == IFLA_TUN_TYPE)
					f |= (short)(*(uint8_t *)RTA_DATA(c) == 1 ? IFF_TUN : IFF_TAP);
				else if (c->rta_type == IFLA_TUN_PI && !v)
					f |= IFF_NO_PI;
				else if (c->rta_type == IFLA_TUN_VNET_HDR && v)
					f |= IFF_VNET_HDR;
				else if (c->rta_type == IFLA_TUN_MULTI_QUEUE && v)
					f |= IFF_MULTI_QUEUE;
			}
		}
	}
	if (!tun || !(f & IFF_TUN))
		return hutch_err_set(err, EPROTO, "%s is not a TUN device (or the kernel does not describe it)",
				     name);
	*flags = f;
	return 0;
}

int wg_link_move(int ifindex, int netns_fd, const char *new_name, hutch_err_t *err)
{
	int r = link_set(ifindex, 0, 0, new_name, NULL, netns_fd);
	if (r < 0)
		return hutch_err_sys(err, -r, "move the device into the sandbox's namespace as %s",
				     new_name);
	return 0;
}

/* ---- inside the sandbox's namespace ---- */

static int addr_add(int ifindex, const uint8_t a[4], unsigned plen)
{
	struct ifaddrmsg ifa = {.ifa_family = AF_INET, .ifa_prefixlen = (unsigned char)plen,
				.ifa_scope = RT_SCOPE_UNIVERSE, .ifa_index = (unsigned)ifindex};
	nl_req_t q;
	nl_init(&q, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &ifa, sizeof ifa);
	nl_put(&q, IFA_LOCAL, a, 4);
	nl_put(&q, IFA_ADDRESS, a, 4);
	return nl_call(&q);
}

static int route_add(int ifindex, const uint8_t dst[4], unsigned plen)
{
	struct rtmsg rt = {.rtm_family = AF_INET, .rtm_dst_len = (unsigned char)plen,
			   .rtm_table = RT_TABLE_MAIN, .rtm_protocol = RTPROT_STATIC,
			   .rtm_scope = RT_SCOPE_LINK, .rtm_type = RTN_UNICAST};
	nl_req_t q;
	nl_init(&q, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &rt, sizeof rt);
	nl_put(&q, RTA_DST, dst, 4);
	uint32_t oif = (uint32_t)ifindex;
	nl_put(&q, RTA_OIF, &oif, sizeof oif);
	return nl_call(&q);
}

int wg_link_configure(const wg_link_plan_t *plan, hutch_err_t *err)
{
	int idx = (int)if_nametoindex(plan->ifname);
	if (idx <= 0)
		return hutch_err_sys(err, errno, "%s is not in the sandbox's namespace", plan->ifname);
	int r = link_set(idx, IFF_UP, IFF_UP, NULL, plan->alias, -1);
	if (r < 0)
		return hutch_err_sys(err, -r, "%s: up", plan->ifname);
	if ((r = addr_add(idx, plan->addr, plan->plen)) < 0)
		return hutch_err_sys(err, -r, "%s: address", plan->ifname);
	for (size_t i = 0; i < plan->n_routes; i++) {
		if ((r = route_add(idx, plan->routes[i], plan->routes[i][4])) < 0) {
			char t[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, plan->routes[i], t, sizeof t);
			return hutch_err_sys(err, -r, "%s: route to %s/%u", plan->ifname, t,
					     plan->routes[i][4]);
		}
	}
	return 0;
}

typedef struct ns_job {
	int nsfd;
	int (*fn)(void *arg, hutch_err_t *err);
	void *arg;
	int result;
	hutch_err_t err;
} ns_job_t;

static void *ns_thread(void *data)
{
	ns_job_t *job = data;
	if (setns(job->nsfd, CLONE_NEWNET) < 0) {
		job->result = hutch_err_sys(&job->err, errno, "enter the sandbox's namespace");
		return NULL;
	}
	job->result = job->fn(job->arg, &job->err);
	return NULL;
}

int wg_in_netns(const char *path, int (*fn)(void *arg, hutch_err_t *err), void *arg,
		hutch_err_t *err)
{
	_cleanup_close_ int nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (nsfd < 0)
		return hutch_err_sys(err, errno, "open %s", path);
	ns_job_t job = {.nsfd = nsfd, .fn = fn, .arg = arg};
	pthread_t t;
	int r = pthread_create(&t, NULL, ns_thread, &job);
	if (r != 0)
		return hutch_err_sys(err, r, "thread");
	pthread_join(t, NULL);
	if (job.result < 0 && err)
		*err = job.err;
	return job.result;
}

typedef struct index_job {
	const char *ifname;
	int index;
} index_job_t;

static int index_in(void *arg, hutch_err_t *err)
{
	(void)err;
	index_job_t *j = arg;
	j->index = (int)if_nametoindex(j->ifname);
	return 0;
}

int wg_link_index_in(const char *netns_path, const char *ifname)
{
	index_job_t j = {.ifname = ifname};
	hutch_err_t e = {0};
	if (wg_in_netns(netns_path, index_in, &j, &e) < 0)
		return 0;
	return j.index;
}

bool wg_kernel_probe(void)
{
	char name[16];
	snprintf(name, sizeof name, "hwprobe%d", (int)(getpid() % 100000));
	struct ifinfomsg ifi = {.ifi_family = AF_UNSPEC};
	nl_req_t q;
	nl_init(&q, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
	nl_put(&q, IFLA_IFNAME, name, strlen(name) + 1);
	struct rtattr *li = nl_tail(&q);
	nl_put(&q, IFLA_LINKINFO, NULL, 0);
	nl_put(&q, IFLA_INFO_KIND, "wireguard", strlen("wireguard"));
	li->rta_len = (unsigned short)((char *)nl_tail(&q) - (char *)li);
	if (nl_call(&q) < 0)
		return false;
	int idx = (int)if_nametoindex(name);
	if (idx > 0) {
		struct ifinfomsg del = {.ifi_family = AF_UNSPEC, .ifi_index = idx};
		nl_init(&q, RTM_DELLINK, 0, &del, sizeof del);
		nl_call(&q);
	}
	return true;
}

int wg_route(int ifindex, const uint8_t dst[4], unsigned plen, bool add)
{
	if (add)
		return route_add(ifindex, dst, plen);
	struct rtmsg rt = {.rtm_family = AF_INET, .rtm_dst_len = (unsigned char)plen,
			   .rtm_table = RT_TABLE_MAIN, .rtm_scope = RT_SCOPE_NOWHERE};
	nl_req_t q;
	nl_init(&q, RTM_DELROUTE, 0, &rt, sizeof rt);
	nl_put(&q, RTA_DST, dst, 4);
	uint32_t oif = (uint32_t)ifindex;
	nl_put(&q, RTA_OIF, &oif, sizeof oif);
	int r = nl_call(&q);
	return r == -ESRCH ? 0 : r;
}

/* ---- a namespace of the plugin's own (a gateway's) ---- */

typedef struct netns_job {
	const char *path;
	int result;
	hutch_err_t err;
} netns_job_t;

/* On a thread of its own: a new namespace, pinned at path, with lo up and
 * forwarding on (a gateway routes between its peers). */
static void *netns_thread(void *data)
{
	netns_job_t *job = data;
	hutch_err_t *err = &job->err;
	if (unshare(CLONE_NEWNET) < 0) {
		job->result = hutch_err_sys(err, errno, "unshare(CLONE_NEWNET)");
		return NULL;
	}
	int f = open(job->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
	if (f < 0) {
		job->result = hutch_err_sys(err, errno, "create %s", job->path);
		return NULL;
	}
	close(f);
	if (mount("/proc/thread-self/ns/net", job->path, NULL, MS_BIND, NULL) < 0) {
		job->result = hutch_err_sys(err, errno, "bind mount on %s", job->path);
		unlink(job->path);
		return NULL;
	}
	int lo = (int)if_nametoindex("lo");
	int r = lo > 0 ? link_set(lo, IFF_UP, IFF_UP, NULL, NULL, -1) : -ENODEV;
	/* /proc/sys/net answers for the namespace of the thread that opens it. */
	_cleanup_close_ int fd = open("/proc/sys/net/ipv4/ip_forward", O_WRONLY | O_CLOEXEC);
	if (r == 0 && (fd < 0 || write(fd, "1\n", 2) != 2))
		r = -errno;
	if (r < 0) {
		job->result = hutch_err_sys(err, -r, "gateway namespace: lo and forwarding");
		umount2(job->path, MNT_DETACH);
		unlink(job->path);
	}
	return NULL;
}

int wg_netns_create(const char *path, hutch_err_t *err)
{
	netns_job_t job = {.path = path};
	pthread_t t;
	int r = pthread_create(&t, NULL, netns_thread, &job);
	if (r != 0)
		return hutch_err_sys(err, r, "thread");
	pthread_join(t, NULL);
	if (job.result < 0 && err)
		*err = job.err;
	return job.result;
}

void wg_netns_remove(const char *path)
{
	umount2(path, MNT_DETACH);
	unlink(path);
}
