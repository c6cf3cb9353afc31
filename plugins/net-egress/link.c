/*
 * link.c: a sandbox's veth pair, its addresses and routes, over rtnetlink
 * with libnl (no `ip` processes).
 *
 * Inside the sandbox's namespace: lo up; eth0 with the sandbox's /32 (and
 * /128), up, and default routes "via <gateway> onlink". On the host: the
 * other end, named <prefix><n>, holding the gateway address as a /32
 * (every sandbox's host end holds the same one, so the resolver can listen
 * on one address for all of them), and a /32 route to the sandbox. The
 * host end's alias is the sandbox id, so leftovers can be told apart.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <string.h>

#include "egress.h"

static int nl_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case NLE_EXIST: return EEXIST;
	case NLE_NODEV:
	case NLE_OBJ_NOTFOUND: return ENODEV;
	case NLE_PERM: return EPERM;
	case NLE_NOACCESS: return EACCES;
	case NLE_NOMEM: return ENOMEM;
	case NLE_INVAL: return EINVAL;
	case NLE_BUSY: return EBUSY;
	case NLE_AGAIN: return EAGAIN;
	case NLE_RANGE: return ERANGE;
	case NLE_OPNOTSUPP: return EOPNOTSUPP;
	default: return EIO;
	}
}

static int nl_fail(hutch_err_t *err, int nle, const char *what, const char *name)
{
	return hutch_err_set(err, nl_errno(nle), "%s %s: %s", what, name, nl_geterror(nle));
}

static void sock_freep(struct nl_sock **s)
{
	if (*s)
		nl_socket_free(*s);
}
static void link_putp(struct rtnl_link **l)
{
	if (*l)
		rtnl_link_put(*l);
}
static void addr_putp(struct nl_addr **a)
{
	if (*a)
		nl_addr_put(*a);
}
static void rtaddr_putp(struct rtnl_addr **a)
{
	if (*a)
		rtnl_addr_put(*a);
}
static void route_putp(struct rtnl_route **r)
{
	if (*r)
		rtnl_route_put(*r);
}
#define _cleanup_nlsock_ __attribute__((cleanup(sock_freep)))
#define _cleanup_link_ __attribute__((cleanup(link_putp)))
#define _cleanup_nladdr_ __attribute__((cleanup(addr_putp)))
#define _cleanup_rtaddr_ __attribute__((cleanup(rtaddr_putp)))
#define _cleanup_route_ __attribute__((cleanup(route_putp)))

static int sock_open(struct nl_sock **out, hutch_err_t *err)
{
	struct nl_sock *s = nl_socket_alloc();
	if (!s)
		return hutch_err_set(err, ENOMEM, "netlink socket");
	int r = nl_connect(s, NETLINK_ROUTE);
	if (r < 0) {
		nl_socket_free(s);
		return hutch_err_set(err, nl_errno(r), "netlink (route) socket: %s", nl_geterror(r));
	}
	*out = s;
	return 0;
}

/* Sets IFF_UP on ifindex (and the alias, if given). */
static int link_up(struct nl_sock *s, int ifindex, const char *name, const char *alias,
		   hutch_err_t *err)
{
	_cleanup_link_ struct rtnl_link *orig = rtnl_link_alloc();
	_cleanup_link_ struct rtnl_link *change = rtnl_link_alloc();
	if (!orig || !change)
		return hutch_err_set(err, ENOMEM, "link %s", name);
	rtnl_link_set_ifindex(orig, ifindex);
	rtnl_link_set_flags(change, IFF_UP);
	if (alias)
		rtnl_link_set_ifalias(change, alias);
	int r = rtnl_link_change(s, orig, change, 0);
	if (r < 0)
		return nl_fail(err, r, "bring up", name);
	return 0;
}

static int link_index(struct nl_sock *s, const char *name, int *ifindex, hutch_err_t *err)
{
	_cleanup_link_ struct rtnl_link *l = NULL;
	int r = rtnl_link_get_kernel(s, 0, name, &l);
	if (r < 0)
		return nl_fail(err, r, "find link", name);
	*ifindex = rtnl_link_get_ifindex(l);
	return 0;
}

static int addr_add(struct nl_sock *s, int ifindex, const char *ifname, int family,
		    const uint8_t *addr, unsigned plen, hutch_err_t *err)
{
	_cleanup_rtaddr_ struct rtnl_addr *a = rtnl_addr_alloc();
	_cleanup_nladdr_ struct nl_addr *local = nl_addr_build(family, addr, family == AF_INET ? 4 : 16);
	if (!a || !local)
		return hutch_err_set(err, ENOMEM, "address on %s", ifname);
	nl_addr_set_prefixlen(local, (int)plen);
	rtnl_addr_set_ifindex(a, ifindex);
	rtnl_addr_set_family(a, family);
	rtnl_addr_set_local(a, local);
	rtnl_addr_set_prefixlen(a, (int)plen);
	if (family == AF_INET6)
		rtnl_addr_set_flags(a, IFA_F_NODAD); /* usable at once */
	int r = rtnl_addr_add(s, a, NLM_F_CREATE | NLM_F_REPLACE);
	if (r < 0)
		return nl_fail(err, r, "add address on", ifname);
	return 0;
}

/* dst/plen (plen 0: default) on ifindex, via gw "onlink" when gw is set. */
static int route_add(struct nl_sock *s, int ifindex, const char *ifname, int family,
		     const uint8_t *dst, unsigned plen, const uint8_t *gw, hutch_err_t *err)
{
	size_t alen = family == AF_INET ? 4 : 16;
	static const uint8_t zero[16] = {0};
	_cleanup_route_ struct rtnl_route *rt = rtnl_route_alloc();
	_cleanup_nladdr_ struct nl_addr *d = nl_addr_build(family, dst ? dst : zero, alen);
	if (!rt || !d)
		return hutch_err_set(err, ENOMEM, "route on %s", ifname);
	nl_addr_set_prefixlen(d, (int)plen);
	rtnl_route_set_family(rt, (uint8_t)family);
	rtnl_route_set_dst(rt, d);
	rtnl_route_set_table(rt, RT_TABLE_MAIN);
	rtnl_route_set_protocol(rt, RTPROT_STATIC);
	rtnl_route_set_scope(rt, gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	if (!nh)
		return hutch_err_set(err, ENOMEM, "route on %s", ifname);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	if (gw) {
		_cleanup_nladdr_ struct nl_addr *g = nl_addr_build(family, gw, alen);
		if (!g) {
			rtnl_route_nh_free(nh);
			return hutch_err_set(err, ENOMEM, "route on %s", ifname);
		}
		rtnl_route_nh_set_gateway(nh, g);
		rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
	}
	rtnl_route_add_nexthop(rt, nh); /* the route owns nh now */
	int r = rtnl_route_add(s, rt, NLM_F_CREATE | NLM_F_REPLACE);
	if (r < 0)
		return nl_fail(err, r, "add route on", ifname);
	return 0;
}

int eg_link_inside(const eg_link_plan_t *p, hutch_err_t *err)
{
	_cleanup_nlsock_ struct nl_sock *s = NULL;
	int r = sock_open(&s, err);
	if (r < 0)
		return r;
	/* A new namespace's loopback is index 1, and down. */
	if ((r = link_up(s, 1, "lo", NULL, err)) < 0)
		return r;
	/* Without an IPv6 pool, eth0 (and the host end, made here too) has no
	 * IPv6 at all: no link-local chatter to filter. /proc/sys/net is this
	 * thread's namespace's. */
	if (!p->has6) {
		int fd = open("/proc/sys/net/ipv6/conf/default/disable_ipv6", O_WRONLY | O_CLOEXEC);
		bool ok = fd >= 0 && write(fd, "1\n", 2) == 2;
		if (fd >= 0)
			close(fd);
		if (!ok && errno != ENOENT) /* ENOENT: a kernel without IPv6 */
			return hutch_err_sys(err, errno, "turn IPv6 off for eth0");
	}

	struct rtnl_link *veth = rtnl_link_veth_alloc();
	if (!veth)
		return hutch_err_set(err, ENOMEM, "veth");
	struct rtnl_link *peer = rtnl_link_veth_get_peer(veth);
	rtnl_link_set_name(veth, "eth0");
	rtnl_link_set_name(peer, p->host_ifname);
	rtnl_link_set_ns_fd(peer, p->host_netns_fd);
	r = rtnl_link_add(s, veth, NLM_F_CREATE | NLM_F_EXCL);
	rtnl_link_put(peer);
	rtnl_link_veth_release(veth);
	if (r < 0)
		return nl_fail(err, r, "create veth pair eth0 /", p->host_ifname);

	int eth0;
	if ((r = link_index(s, "eth0", &eth0, err)) < 0 ||
	    (r = link_up(s, eth0, "eth0", NULL, err)) < 0 ||
	    (r = addr_add(s, eth0, "eth0", AF_INET, p->addr4, 32, err)) < 0 ||
	    (r = route_add(s, eth0, "eth0", AF_INET, NULL, 0, p->gw4, err)) < 0)
		return r;
	if (p->has6 &&
	    ((r = addr_add(s, eth0, "eth0", AF_INET6, p->addr6, 128, err)) < 0 ||
	     (r = route_add(s, eth0, "eth0", AF_INET6, NULL, 0, p->gw6, err)) < 0))
		return r;
	return 0;
}

int eg_link_host(const eg_link_plan_t *p, hutch_err_t *err)
{
	_cleanup_nlsock_ struct nl_sock *s = NULL;
	int r = sock_open(&s, err);
	if (r < 0)
		return r;
	int idx;
	if ((r = link_index(s, p->host_ifname, &idx, err)) < 0 ||
	    (r = link_up(s, idx, p->host_ifname, p->alias, err)) < 0 ||
	    (r = addr_add(s, idx, p->host_ifname, AF_INET, p->gw4, 32, err)) < 0 ||
	    (r = route_add(s, idx, p->host_ifname, AF_INET, p->addr4, 32, NULL, err)) < 0)
		return r;
	if (p->has6 &&
	    ((r = addr_add(s, idx, p->host_ifname, AF_INET6, p->gw6, 128, err)) < 0 ||
	     (r = route_add(s, idx, p->host_ifname, AF_INET6, p->addr6, 128, NULL, err)) < 0))
		return r;
	return 0;
}

int eg_link_delete(const char *ifname, hutch_err_t *err)
{
	_cleanup_nlsock_ struct nl_sock *s = NULL;
	int r = sock_open(&s, err);
	if (r < 0)
		return r;
	_cleanup_link_ struct rtnl_link *l = rtnl_link_alloc();
	if (!l)
		return hutch_err_set(err, ENOMEM, "link %s", ifname);
	rtnl_link_set_name(l, ifname);
	r = rtnl_link_delete(s, l);
	if (r < 0 && nl_errno(r) != ENODEV)
		return nl_fail(err, r, "delete link", ifname);
	return 0;
}

int eg_link_list(const char *prefix, eg_link_cb cb, void *data, hutch_err_t *err)
{
	_cleanup_nlsock_ struct nl_sock *s = NULL;
	int r = sock_open(&s, err);
	if (r < 0)
		return r;
	struct nl_cache *cache = NULL;
	r = rtnl_link_alloc_cache(s, AF_UNSPEC, &cache);
	if (r < 0)
		return hutch_err_set(err, nl_errno(r), "list links: %s", nl_geterror(r));
	size_t plen = strlen(prefix);
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_link *l = (struct rtnl_link *)o;
		const char *name = rtnl_link_get_name(l);
		if (!name || strncmp(name, prefix, plen) != 0)
			continue;
		const char *alias = rtnl_link_get_ifalias(l);
		cb(data, name, alias ? alias : "");
	}
	nl_cache_free(cache);
	return 0;
}
