/*
 * nflog.c: dropped packets, from the kernel to the audit.
 *
 * sandbox_drop (nft.c) sends the first few dropped packets per second of
 * each sandbox to an NFLOG group, with the reason in the packet's mark.
 * The resolver's thread reads the group's socket (eg_nflog_read) and
 * writes one "egress.drop" audit event per connection attempt: the
 * sandbox (by the packet's input interface), its tenant, the destination
 * address, protocol and port, the name it was answered for if any, and
 * why it was dropped. Retransmissions of an attempt already written in
 * the last few seconds are not written again.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"
#include "egress.h"
#include "nflog_msg.h"

#define ULOG_TYPE(msg) ((uint16_t)((NFNL_SUBSYS_ULOG << 8) | (msg)))
#define COPY_BYTES 128          /* IP and transport headers */
#define REPEAT_WINDOW_MS 10000  /* an attempt's retransmissions: written once */

static int config_send(int fd, uint32_t *seq, uint16_t group, const void *attr_data,
		       uint16_t attr_type, size_t attr_len, hutch_err_t *err)
{
	_cleanup_sb_ strbuf_t b = STRBUF_INIT;
	uint32_t s = (*seq)++;
	size_t off = eg_nl_msg_start(&b, ULOG_TYPE(NFULNL_MSG_CONFIG), NLM_F_REQUEST | NLM_F_ACK, s,
				     AF_UNSPEC, group);
	eg_nl_attr_put(&b, attr_type, attr_data, attr_len);
	eg_nl_msg_end(&b, off);
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	if (sendto(fd, b.buf, b.len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
		return hutch_err_sys(err, errno, "nflog: send");
	char buf[4096];
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int pr = poll(&p, 1, 2000);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return hutch_err_set(err, ETIMEDOUT, "nflog: no answer from the kernel");
		ssize_t got = recv(fd, buf, sizeof buf, 0);
		if (got < 0)
			return hutch_err_sys(err, errno, "nflog: receive");
		for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, (size_t)got);
		     h = NLMSG_NEXT(h, got)) {
			if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != s)
				continue;
			const struct nlmsgerr *e = NLMSG_DATA(h);
			if (e->error)
				return hutch_err_sys(err, -e->error, "nflog: configure group %u", group);
			return 0;
		}
	}
}

int eg_nflog_open(uint16_t group, int *fd_out, hutch_err_t *err)
{
	_cleanup_close_ int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK,
					NETLINK_NETFILTER);
	if (fd < 0)
		return hutch_err_sys(err, errno, "nflog: netlink socket");
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		return hutch_err_sys(err, errno, "nflog: bind netlink socket");
	int buf = 1 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
	uint32_t seq = 1;
	struct nfulnl_msg_config_cmd bind_cmd = {.command = NFULNL_CFG_CMD_BIND};
	struct nfulnl_msg_config_mode mode = {.copy_range = htonl(COPY_BYTES),
					      .copy_mode = NFULNL_COPY_PACKET};
	uint32_t qthresh = htonl(1); /* at once, not batched */
	int r = config_send(fd, &seq, group, &bind_cmd, NFULA_CFG_CMD, sizeof bind_cmd, err);
	/* Another socket bound to the group: the kernel answers EPERM (the
	 * instance belongs to another port id), older kernels EBUSY. */
	if (r == -EBUSY || r == -EPERM)
		return hutch_err_set(err, EBUSY,
				     "nflog group %u is taken by another program in this network namespace: set nflog_group to a free one",
				     group);
	if (r < 0 ||
	    (r = config_send(fd, &seq, group, &mode, NFULA_CFG_MODE, sizeof mode, err)) < 0 ||
	    (r = config_send(fd, &seq, group, &qthresh, NFULA_CFG_QTHRESH, sizeof qthresh, err)) < 0)
		return r;
	*fd_out = steal_fd(&fd);
	return 0;
}

/* The sandbox whose host interface has index ifindex, referenced. */
static eg_sandbox_t *sandbox_of_ifindex(eg_instance_t *in, uint32_t ifindex)
{
	char name[IF_NAMESIZE];
	if (!ifindex || !if_indextoname(ifindex, name))
		return NULL;
	size_t pl = strlen(in->prefix);
	if (strncmp(name, in->prefix, pl) != 0)
		return NULL;
	char *end;
	unsigned long host = strtoul(name + pl, &end, 10);
	if (*end || host < 2 || host - 2 >= in->pool.n_slots)
		return NULL;
	pthread_mutex_lock(&in->lock);
	eg_sandbox_t *sb = in->by_slot[host - 2];
	if (sb)
		eg_sandbox_ref(sb);
	pthread_mutex_unlock(&in->lock);
	return sb;
}

/* Was this attempt written lately? If not, remember it. Resolver thread. */
static bool repeat_seen(eg_sandbox_t *sb, const eg_pkt_t *p, int64_t now)
{
	uint16_t port = p->has_ports ? p->dport : p->has_icmp ? p->icmp_type : 0;
	size_t alen = p->family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < ARRAY_SIZE(sb->recent); i++) {
		struct eg_recent_drop *r = &sb->recent[i];
		if (r->at_ms && now - r->at_ms < REPEAT_WINDOW_MS && r->family == p->family &&
		    r->proto == p->proto && r->port == port && memcmp(r->addr, p->dst, alen) == 0)
			return true;
	}
	struct eg_recent_drop *r = &sb->recent[sb->recent_next++ % ARRAY_SIZE(sb->recent)];
	r->family = (uint8_t)p->family;
	r->proto = p->proto;
	r->port = port;
	memcpy(r->addr, p->dst, alen);
	r->at_ms = now;
	return false;
}

static void packet_seen(eg_instance_t *in, const eg_nflog_pkt_t *m)
{
	if (!m->has_pkt || !m->has_mark || (m->mark & 0xffff0000u) != EG_DROP_MARK_TAG)
		return;
	eg_drop_reason_t reason = (eg_drop_reason_t)(m->mark & 0xffffu);
	if (reason >= EG_DROP_REASONS)
		reason = EG_DROP_UNKNOWN;
	eg_sandbox_t *sb = sandbox_of_ifindex(in, m->indev);
	if (!sb)
		return;
	if (!repeat_seen(sb, &m->pkt, eg_now_ms()))
		eg_audit_drop(in, sb, reason, &m->pkt);
	eg_sandbox_unref(sb);
}

void eg_nflog_read(eg_instance_t *in, int fd)
{
	_cleanup_free_ char *buf = xmalloc(65536);
	for (int rounds = 0; rounds < 64; rounds++) {
		ssize_t got = recv(fd, buf, 65536, MSG_DONTWAIT);
		if (got < 0) {
			if (errno == ENOBUFS) {
				/* The kernel dropped some: they stay counted, not audited. */
				eg_metric(in, "egress_audit_drops_lost_total", 1);
				continue;
			}
			return; /* EAGAIN: all read */
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, (size_t)got);
		     h = NLMSG_NEXT(h, got)) {
			size_t hdr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
			if (h->nlmsg_type != ULOG_TYPE(NFULNL_MSG_PACKET) || h->nlmsg_len < hdr)
				continue;
			eg_nflog_pkt_t m;
			if (eg_nflog_parse((const char *)h + hdr, h->nlmsg_len - hdr, &m) == 0)
				packet_seen(in, &m);
		}
	}
}
