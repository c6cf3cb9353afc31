/*
 * conntrack.c: forgetting a sandbox's connections.
 *
 * The egress chain lets through packets of connections it already let
 * through (ct state established) without looking at the policy again.
 * When a sandbox goes, its connection tracking entries stay behind until
 * they time out (days, for a TCP connection never closed), and the next
 * sandbox given the same address, sending from the same port to the same
 * peer, would be taken for the old one's established connection and pass
 * unchecked. So on detach, and again on attach before the new sandbox
 * runs, every entry whose original source is the sandbox's address is
 * deleted: a filtered dump (CTA_FILTER on the original source address,
 * kernel 5.8 and later; before, a whole dump filtered here) and a delete
 * per entry found, over ctnetlink.
 */
#include <errno.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cleanup.h"
#include "egress.h"

#define CT_TYPE(msg) ((uint16_t)((NFNL_SUBSYS_CTNETLINK << 8) | (msg)))
/* The kernel's CTA_FILTER flag bits (not in the uapi headers). */
#define CT_FILTER_IP_SRC (1u << 0)
#define ACK_TIMEOUT_MS 2000

typedef struct ct_found {
	strbuf_t deletes; /* the delete requests, built as entries arrive */
	uint32_t *seq;
	unsigned n;
} ct_found_t;

typedef struct ct_walk {
	eg_nfnl_t *nl;
	ct_found_t *found;
	int family;
	const uint8_t *addr; /* checked here when the kernel could not filter */
} ct_walk_t;

/* Is the original source of the entry whose tuple is orig addr? */
static bool orig_source_is(const struct nlattr *orig, int family, const uint8_t *addr)
{
	const struct nlattr *ip = eg_nl_attr_find((const char *)orig + NLA_HDRLEN,
						  orig->nla_len - NLA_HDRLEN, CTA_TUPLE_IP);
	if (!ip)
		return false;
	size_t alen = family == AF_INET ? 4 : 16;
	const struct nlattr *src = eg_nl_attr_find((const char *)ip + NLA_HDRLEN,
						   ip->nla_len - NLA_HDRLEN,
						   family == AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC);
	return src && src->nla_len == NLA_HDRLEN + alen &&
	       memcmp((const char *)src + NLA_HDRLEN, addr, alen) == 0;
}

static void ct_entry(void *data, const struct nlmsghdr *h, const void *attrs, size_t len)
{
	ct_walk_t *w = data;
	if ((h->nlmsg_type & 0xff) != IPCTNL_MSG_CT_NEW)
		return;
	const struct nlattr *orig = eg_nl_attr_find(attrs, len, CTA_TUPLE_ORIG);
	const struct nlattr *zone = eg_nl_attr_find(attrs, len, CTA_ZONE);
	if (!orig || (w->addr && !orig_source_is(orig, w->family, w->addr)))
		return;
	const struct nfgenmsg *g = NLMSG_DATA(h);
	ct_found_t *f = w->found;
	uint32_t seq = w->nl->seq++;
	size_t off = eg_nl_msg_start(&f->deletes, CT_TYPE(IPCTNL_MSG_CT_DELETE),
				     NLM_F_REQUEST | NLM_F_ACK, seq, g->nfgen_family, 0);
	/* The tuple as the kernel gave it: it names exactly this entry. */
	sb_append_n(&f->deletes, orig, NLA_ALIGN(orig->nla_len));
	if (zone)
		sb_append_n(&f->deletes, zone, NLA_ALIGN(zone->nla_len));
	eg_nl_msg_end(&f->deletes, off);
	f->seq = xrealloc(f->seq, (f->n + 1) * sizeof *f->seq);
	f->seq[f->n++] = seq;
}

/* filtered: let the kernel pick the entries (CTA_FILTER); else dump them
 * all and pick here. */
static int ct_find(eg_nfnl_t *nl, int family, const uint8_t *addr, bool filtered, ct_found_t *f,
		   hutch_err_t *err)
{
	_cleanup_sb_ strbuf_t req = STRBUF_INIT;
	size_t off = eg_nl_msg_start(&req, CT_TYPE(IPCTNL_MSG_CT_GET), NLM_F_REQUEST | NLM_F_DUMP,
				     nl->seq++, (uint8_t)family, 0);
	ct_walk_t w = {nl, f, family, filtered ? NULL : addr};
	if (!filtered) {
		eg_nl_msg_end(&req, off);
		int r = eg_nfnl_dump(nl, &req, ct_entry, &w, err);
		return r == -EAGAIN ? 0 : r;
	}
	size_t tuple = eg_nl_nest_start(&req, CTA_TUPLE_ORIG);
	size_t ip = eg_nl_nest_start(&req, CTA_TUPLE_IP);
	if (family == AF_INET)
		eg_nl_attr_put(&req, CTA_IP_V4_SRC, addr, 4);
	else
		eg_nl_attr_put(&req, CTA_IP_V6_SRC, addr, 16);
	eg_nl_nest_end(&req, ip);
	eg_nl_nest_end(&req, tuple);
	size_t filter = eg_nl_nest_start(&req, CTA_FILTER);
	uint32_t orig_flags = CT_FILTER_IP_SRC, reply_flags = 0; /* host order: NLA_U32 */
	eg_nl_attr_put(&req, CTA_FILTER_ORIG_FLAGS, &orig_flags, sizeof orig_flags);
	eg_nl_attr_put(&req, CTA_FILTER_REPLY_FLAGS, &reply_flags, sizeof reply_flags);
	eg_nl_nest_end(&req, filter);
	eg_nl_msg_end(&req, off);
	int r = eg_nfnl_dump(nl, &req, ct_entry, &w, err);
	if (r == -EAGAIN)
		r = 0; /* what changed meanwhile is dumped again by the next call */
	return r;
}

/* Sends the deletes, CHUNK at a time, and waits for their answers (each
 * one's answer takes receive buffer room: all of a few hundred at once
 * would overflow it); an entry that went away meanwhile (ENOENT) is fine. */
#define CHUNK 64

static int ct_delete(eg_nfnl_t *nl, ct_found_t *f, hutch_err_t *err)
{
	_cleanup_free_ char *buf = xmalloc(16384);
	int first = 0;
	size_t off = 0;
	for (unsigned done = 0; done < f->n;) {
		/* The next chunk of whole messages. */
		size_t start = off;
		unsigned n = 0;
		while (n < CHUNK && done + n < f->n) {
			const struct nlmsghdr *h = (const struct nlmsghdr *)(void *)(f->deletes.buf + off);
			off += NLMSG_ALIGN(h->nlmsg_len);
			n++;
		}
		struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
		if (sendto(nl->fd, f->deletes.buf + start, off - start, 0, (struct sockaddr *)&kernel,
			   sizeof kernel) < 0)
			return hutch_err_sys(err, errno, "conntrack: send %u deletes", n);
		uint32_t lo = f->seq[done], hi = f->seq[done + n - 1];
		unsigned answered = 0;
		while (answered < n) {
			struct pollfd p = {.fd = nl->fd, .events = POLLIN};
			int pr = poll(&p, 1, ACK_TIMEOUT_MS);
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr <= 0)
				return hutch_err_set(err, ETIMEDOUT,
						     "conntrack: %u of %u deletes unanswered", n - answered,
						     n);
			ssize_t got = recv(nl->fd, buf, 16384, 0);
			if (got < 0) {
				if (errno == EINTR)
					continue;
				return hutch_err_sys(err, errno, "conntrack: receive");
			}
			for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)buf;
			     NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
				if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq - lo > hi - lo)
					continue;
				const struct nlmsgerr *e = NLMSG_DATA(h);
				answered++;
				if (e->error && e->error != -ENOENT && !first)
					first = -e->error;
			}
		}
		done += n;
	}
	if (first)
		return hutch_err_sys(err, first, "conntrack: delete");
	return 0;
}

int eg_ct_forget(eg_nfnl_t *nl, int family, const uint8_t *addr, unsigned *n_out,
		 hutch_err_t *err)
{
	ct_found_t f = {STRBUF_INIT, NULL, 0};
	int r = ct_find(nl, family, addr, true, &f, err);
	if (r == -EOPNOTSUPP || r == -EINVAL) {
		/* A kernel before 5.8 cannot filter a dump. */
		*err = (hutch_err_t){0};
		sb_reset(&f.deletes);
		f.n = 0;
		r = ct_find(nl, family, addr, false, &f, err);
	}
	if (r == 0 && f.n)
		r = ct_delete(nl, &f, err);
	if (n_out)
		*n_out = f.n;
	sb_free(&f.deletes);
	free(f.seq);
	return r < 0 ? hutch_err_prefix(err, "forget connections") : 0;
}
