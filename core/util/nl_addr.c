#include "nl_addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int nl_addr_add4(int ifindex, const char *addr, int prefix)
{
	struct in_addr a;
	if (inet_pton(AF_INET, addr, &a) != 1 || prefix < 0 || prefix > 32 || ifindex <= 0)
		return -EINVAL;
	struct {
		struct nlmsghdr nh;
		struct ifaddrmsg ifa;
		char attrs[64];
	} req;
	memset(&req, 0, sizeof req);
	req.nh.nlmsg_type = RTM_NEWADDR;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
	req.nh.nlmsg_seq = 1;
	req.ifa.ifa_family = AF_INET;
	req.ifa.ifa_prefixlen = (unsigned char)prefix;
	req.ifa.ifa_scope = RT_SCOPE_HOST;
	req.ifa.ifa_index = (unsigned)ifindex;
	size_t len = NLMSG_LENGTH(sizeof req.ifa);
	static const unsigned short types[] = {IFA_LOCAL, IFA_ADDRESS};
	for (int i = 0; i < 2; i++) {
		struct rtattr *rta = (struct rtattr *)((char *)&req + NLMSG_ALIGN(len));
		rta->rta_type = types[i];
		rta->rta_len = (unsigned short)RTA_LENGTH(sizeof a);
		memcpy(RTA_DATA(rta), &a, sizeof a);
		len = NLMSG_ALIGN(len) + RTA_ALIGN(rta->rta_len);
	}
	req.nh.nlmsg_len = (unsigned)len;

	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (fd < 0)
		return -errno;
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	int r = 0;
	if (sendto(fd, &req, len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
		r = -errno;
		goto out;
	}
	char buf[512];
	ssize_t n = recv(fd, buf, sizeof buf, 0);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	struct nlmsghdr *nh = (struct nlmsghdr *)buf;
	if (!NLMSG_OK(nh, (unsigned)n) || nh->nlmsg_type != NLMSG_ERROR) {
		r = -EPROTO;
		goto out;
	}
	struct nlmsgerr *e = NLMSG_DATA(nh);
	r = e->error == -EEXIST ? 0 : e->error;
out:
	close(fd);
	return r;
}
