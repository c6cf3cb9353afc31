/*
 * nfnl.c: nf_tables set elements and counters over raw netlink (see
 * nfnl.h). Messages are laid out by hand: nlmsghdr, nfgenmsg, then
 * attributes padded to 4 bytes, nested ones flagged NLA_F_NESTED.
 */
#include "nfnl.h"

#include <endian.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cleanup.h"

#define NFT_TYPE(msg) ((uint16_t)((NFNL_SUBSYS_NFTABLES << 8) | (msg)))
#define RECV_BUF (64 * 1024)
#define COMMIT_TIMEOUT_MS 5000

int eg_nfnl_open(eg_nfnl_t *n, hutch_err_t *err)
{
	memset(n, 0, sizeof *n);
	n->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
	if (n->fd < 0)
		return hutch_err_sys(err, errno, "netlink (netfilter) socket");
	struct sockaddr_nl sa = {.nl_family = AF_NETLINK};
	if (bind(n->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		close(n->fd);
		n->fd = -1;
		return hutch_err_sys(err, e, "bind netlink socket");
	}
	int one = 1;
	setsockopt(n->fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
	setsockopt(n->fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
	/* A policy with many prefixes is one large batch; a dump of a large
	 * set many answers. */
	int buf = 4 * 1024 * 1024;
	if (setsockopt(n->fd, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf) < 0)
		setsockopt(n->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
	buf = 1024 * 1024;
	if (setsockopt(n->fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf) < 0)
		setsockopt(n->fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
	n->seq = (uint32_t)getpid() ^ (uint32_t)(uintptr_t)n;
	return 0;
}

void eg_nfnl_close(eg_nfnl_t *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	sb_free(&n->batch);
}

/* ---- the cache ---- */

void eg_nfnl_cache_init(eg_nfnl_cache_t *c)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
}

void eg_nfnl_cache_fini(eg_nfnl_cache_t *c)
{
	for (size_t i = 0; i < c->n; i++) {
		eg_nfnl_close(c->free[i]);
		free(c->free[i]);
	}
	c->n = 0;
	pthread_mutex_destroy(&c->lock);
}

int eg_nfnl_get(eg_nfnl_cache_t *c, eg_nfnl_t **out, hutch_err_t *err)
{
	pthread_mutex_lock(&c->lock);
	eg_nfnl_t *n = c->n ? c->free[--c->n] : NULL;
	pthread_mutex_unlock(&c->lock);
	if (!n) {
		n = xmalloc(sizeof *n);
		int r = eg_nfnl_open(n, err);
		if (r < 0) {
			free(n);
			return r;
		}
	}
	*out = n;
	return 0;
}

void eg_nfnl_put(eg_nfnl_cache_t *c, eg_nfnl_t *n)
{
	if (!n)
		return;
	char buf[8192];
	while (recv(n->fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
		; /* answers of a batch that failed half-way */
	sb_reset(&n->batch);
	n->n_msgs = 0;
	pthread_mutex_lock(&c->lock);
	bool kept = c->n < EG_NFNL_CACHE_MAX;
	if (kept)
		c->free[c->n++] = n;
	pthread_mutex_unlock(&c->lock);
	if (!kept) {
		eg_nfnl_close(n);
		free(n);
	}
}

/* ---- building messages ---- */

static void pad4(strbuf_t *b)
{
	static const char zero[4] = {0};
	if (b->len % 4)
		sb_append_n(b, zero, 4 - b->len % 4);
}

size_t eg_nl_msg_start(strbuf_t *b, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family,
		       uint16_t res_id)
{
	size_t off = b->len;
	struct nlmsghdr h = {
		.nlmsg_len = 0,
		.nlmsg_type = type,
		.nlmsg_flags = flags,
		.nlmsg_seq = seq,
	};
	struct nfgenmsg g = {
		.nfgen_family = family,
		.version = NFNETLINK_V0,
		.res_id = htobe16(res_id),
	};
	sb_append_n(b, &h, sizeof h);
	sb_append_n(b, &g, sizeof g);
	return off;
}

void eg_nl_msg_end(strbuf_t *b, size_t off)
{
	struct nlmsghdr *h = (struct nlmsghdr *)(void *)(b->buf + off);
	h->nlmsg_len = (uint32_t)(b->len - off);
}

void eg_nl_attr_put(strbuf_t *b, uint16_t type, const void *data, size_t len)
{
	struct nlattr a = {.nla_len = (uint16_t)(NLA_HDRLEN + len), .nla_type = type};
	sb_append_n(b, &a, sizeof a);
	if (len)
		sb_append_n(b, data, len);
	pad4(b);
}

static void attr_str(strbuf_t *b, uint16_t type, const char *s)
{
	eg_nl_attr_put(b, type, s, strlen(s) + 1);
}

static void attr_be32(strbuf_t *b, uint16_t type, uint32_t v)
{
	uint32_t be = htobe32(v);
	eg_nl_attr_put(b, type, &be, sizeof be);
}

static void attr_be64(strbuf_t *b, uint16_t type, uint64_t v)
{
	uint64_t be = htobe64(v);
	eg_nl_attr_put(b, type, &be, sizeof be);
}

size_t eg_nl_nest_start(strbuf_t *b, uint16_t type)
{
	size_t off = b->len;
	struct nlattr a = {.nla_len = 0, .nla_type = (uint16_t)(type | NLA_F_NESTED)};
	sb_append_n(b, &a, sizeof a);
	return off;
}

void eg_nl_nest_end(strbuf_t *b, size_t off)
{
	struct nlattr *a = (struct nlattr *)(void *)(b->buf + off);
	a->nla_len = (uint16_t)(b->len - off);
}

void eg_nfnl_begin(eg_nfnl_t *n)
{
	sb_reset(&n->batch);
	n->n_msgs = 0;
	n->last_msg = 0;
	n->first_seq = n->seq;
	size_t off = eg_nl_msg_start(&n->batch, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, n->seq++, AF_UNSPEC,
			       NFNL_SUBSYS_NFTABLES);
	eg_nl_msg_end(&n->batch, off);
}

bool eg_nfnl_pending(const eg_nfnl_t *n)
{
	return n->n_msgs > 0;
}

static void elem_msg(eg_nfnl_t *n, bool add, const char *table, const char *set,
		     const eg_elem_t *e)
{
	strbuf_t *b = &n->batch;
	uint16_t flags = NLM_F_REQUEST | (add ? NLM_F_CREATE : 0);
	size_t off = eg_nl_msg_start(b, NFT_TYPE(add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM), flags,
			       n->seq++, NFPROTO_INET, 0);
	attr_str(b, NFTA_SET_ELEM_LIST_TABLE, table);
	attr_str(b, NFTA_SET_ELEM_LIST_SET, set);
	size_t list = eg_nl_nest_start(b, NFTA_SET_ELEM_LIST_ELEMENTS);
	size_t elem = eg_nl_nest_start(b, NFTA_LIST_ELEM);
	size_t key = eg_nl_nest_start(b, NFTA_SET_ELEM_KEY);
	eg_nl_attr_put(b, NFTA_DATA_VALUE, e->key, e->key_len);
	eg_nl_nest_end(b, key);
	if (e->key_end) {
		size_t kend = eg_nl_nest_start(b, NFTA_SET_ELEM_KEY_END);
		eg_nl_attr_put(b, NFTA_DATA_VALUE, e->key_end, e->key_end_len);
		eg_nl_nest_end(b, kend);
	}
	if (add && e->timeout_ms)
		attr_be64(b, NFTA_SET_ELEM_TIMEOUT, e->timeout_ms);
	if (add && e->objref)
		attr_str(b, NFTA_SET_ELEM_OBJREF, e->objref);
	eg_nl_nest_end(b, elem);
	eg_nl_nest_end(b, list);
	eg_nl_msg_end(b, off);
	n->last_msg = off;
	n->n_msgs++;
}

void eg_nfnl_elem(eg_nfnl_t *n, eg_elem_op_t op, const char *table, const char *set,
		  const eg_elem_t *e)
{
	switch (op) {
	case EG_ELEM_ADD:
		elem_msg(n, true, table, set, e);
		break;
	case EG_ELEM_DEL:
		elem_msg(n, false, table, set, e);
		break;
	case EG_ELEM_REMOVE:
		elem_msg(n, true, table, set, e);
		elem_msg(n, false, table, set, e);
		break;
	case EG_ELEM_REFRESH:
		elem_msg(n, true, table, set, e);
		elem_msg(n, false, table, set, e);
		elem_msg(n, true, table, set, e);
		break;
	}
}

static void counter_msg(eg_nfnl_t *n, bool add, const char *table, const char *name)
{
	strbuf_t *b = &n->batch;
	uint16_t flags = NLM_F_REQUEST | (add ? NLM_F_CREATE : 0);
	size_t off = eg_nl_msg_start(b, NFT_TYPE(add ? NFT_MSG_NEWOBJ : NFT_MSG_DELOBJ), flags, n->seq++,
			       NFPROTO_INET, 0);
	attr_str(b, NFTA_OBJ_TABLE, table);
	attr_str(b, NFTA_OBJ_NAME, name);
	attr_be32(b, NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
	if (add) {
		size_t data = eg_nl_nest_start(b, NFTA_OBJ_DATA);
		attr_be64(b, NFTA_COUNTER_BYTES, 0);
		attr_be64(b, NFTA_COUNTER_PACKETS, 0);
		eg_nl_nest_end(b, data);
	}
	eg_nl_msg_end(b, off);
	n->last_msg = off;
	n->n_msgs++;
}

void eg_nfnl_counter(eg_nfnl_t *n, bool add, const char *table, const char *name)
{
	counter_msg(n, add, table, name);
}

void eg_nfnl_counter_remove(eg_nfnl_t *n, const char *table, const char *name)
{
	counter_msg(n, true, table, name);
	counter_msg(n, false, table, name);
}

/* ---- talking to the kernel ---- */

static int send_all(int fd, const void *buf, size_t len, hutch_err_t *err)
{
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	ssize_t w;
	do
		w = sendto(fd, buf, len, 0, (struct sockaddr *)&kernel, sizeof kernel);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return hutch_err_sys(err, errno, "netlink send (%zu bytes)", len);
	if ((size_t)w != len)
		return hutch_err_set(err, EIO, "netlink send: short write");
	return 0;
}

/* The extended-ack message of an error, if the kernel gave one. */
static const char *ext_ack_msg(const struct nlmsghdr *h)
{
	if (!(h->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	const struct nlmsgerr *e = NLMSG_DATA(h);
	size_t off = NLMSG_HDRLEN + sizeof *e; /* NETLINK_CAP_ACK: no payload echo */
	while (off + NLA_HDRLEN <= h->nlmsg_len) {
		const struct nlattr *a = (const struct nlattr *)(const void *)((const char *)h + off);
		if (a->nla_len < NLA_HDRLEN || off + a->nla_len > h->nlmsg_len)
			break;
		if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG && a->nla_len > NLA_HDRLEN) {
			const char *s = (const char *)a + NLA_HDRLEN;
			if (memchr(s, '\0', a->nla_len - NLA_HDRLEN))
				return s;
		}
		off += NLA_ALIGN(a->nla_len);
	}
	return NULL;
}

int eg_nfnl_commit(eg_nfnl_t *n, hutch_err_t *err)
{
	if (n->n_msgs == 0) {
		sb_reset(&n->batch);
		return 0;
	}
	/* Only the last message asks for an ACK; errors come regardless, and
	 * the kernel answers the whole batch before sendto returns. */
	struct nlmsghdr *last = (struct nlmsghdr *)(void *)(n->batch.buf + n->last_msg);
	last->nlmsg_flags |= NLM_F_ACK;
	uint32_t last_seq = last->nlmsg_seq, first_seq = n->first_seq;
	size_t off = eg_nl_msg_start(&n->batch, NFNL_MSG_BATCH_END, NLM_F_REQUEST, n->seq++, AF_UNSPEC,
			       NFNL_SUBSYS_NFTABLES);
	eg_nl_msg_end(&n->batch, off);
	int r = send_all(n->fd, n->batch.buf, n->batch.len, err);
	unsigned n_msgs = n->n_msgs;
	sb_reset(&n->batch);
	n->n_msgs = 0;
	if (r < 0)
		return r;

	_cleanup_free_ char *buf = xmalloc(RECV_BUF);
	int first_error = 0;
	char why[256] = "";
	bool done = false;
	while (!done) {
		struct pollfd p = {.fd = n->fd, .events = POLLIN};
		int pr = poll(&p, 1, first_error ? 0 : COMMIT_TIMEOUT_MS);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) {
			if (first_error)
				break;
			return hutch_err_set(err, ETIMEDOUT,
					     "nf_tables: no answer to a batch of %u messages", n_msgs);
		}
		ssize_t got = recv(n->fd, buf, RECV_BUF, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return hutch_err_sys(err, errno, "netlink receive");
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, (size_t)got);
		     h = NLMSG_NEXT(h, got)) {
			/* Only this batch's answers: what an earlier, failed batch
			 * left unread is not this one's error. */
			if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq - first_seq > last_seq - first_seq)
				continue;
			const struct nlmsgerr *e = NLMSG_DATA(h);
			if (e->error) {
				if (!first_error) {
					first_error = -e->error;
					const char *m = ext_ack_msg(h);
					if (m)
						snprintf(why, sizeof why, " (%s)", m);
				}
			}
			if (h->nlmsg_seq == last_seq)
				done = true;
		}
	}
	if (first_error)
		return hutch_err_sys(err, first_error, "nf_tables transaction of %u messages%s",
				     n_msgs, why);
	return 0;
}

/* ---- dumps ---- */

const struct nlattr *eg_nl_attr_find(const void *start, size_t len, uint16_t type)
{
	size_t off = 0;
	while (off + NLA_HDRLEN <= len) {
		const struct nlattr *a = (const struct nlattr *)(const void *)((const char *)start + off);
		if (a->nla_len < NLA_HDRLEN || off + a->nla_len > len)
			return NULL;
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return a;
		off += NLA_ALIGN(a->nla_len);
	}
	return NULL;
}

static const void *attr_data(const struct nlattr *a)
{
	return (const char *)a + NLA_HDRLEN;
}

static size_t attr_len(const struct nlattr *a)
{
	return a->nla_len - NLA_HDRLEN;
}

static bool attr_be64_get(const struct nlattr *a, uint64_t *v)
{
	if (!a || attr_len(a) != 8)
		return false;
	uint64_t be;
	memcpy(&be, attr_data(a), 8);
	*v = be64toh(be);
	return true;
}

int eg_nfnl_dump(eg_nfnl_t *n, strbuf_t *req, eg_nfnl_msg_cb cb, void *data, hutch_err_t *err)
{
	uint32_t seq = ((struct nlmsghdr *)(void *)req->buf)->nlmsg_seq;
	int r = send_all(n->fd, req->buf, req->len, err);
	if (r < 0)
		return r;
	_cleanup_free_ char *buf = xmalloc(RECV_BUF);
	bool interrupted = false;
	for (;;) {
		struct pollfd p = {.fd = n->fd, .events = POLLIN};
		int pr = poll(&p, 1, COMMIT_TIMEOUT_MS);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			return hutch_err_set(err, ETIMEDOUT, "nf_tables: dump did not finish");
		ssize_t got = recv(n->fd, buf, RECV_BUF, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return hutch_err_sys(err, errno, "netlink receive");
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)(void *)buf; NLMSG_OK(h, (size_t)got);
		     h = NLMSG_NEXT(h, got)) {
			if (h->nlmsg_seq != seq)
				continue;
			if (h->nlmsg_flags & NLM_F_DUMP_INTR)
				interrupted = true;
			if (h->nlmsg_type == NLMSG_DONE)
				return interrupted ? -EAGAIN : 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				if (e->error == 0)
					return interrupted ? -EAGAIN : 0;
				return hutch_err_sys(err, -e->error, "nf_tables dump");
			}
			size_t hdr = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg));
			if (h->nlmsg_len < hdr)
				continue;
			cb(data, h, (const char *)h + hdr, h->nlmsg_len - hdr);
		}
	}
}

typedef struct elem_dump {
	eg_nfnl_elem_cb cb;
	void *data;
} elem_dump_t;

static void elem_dump_msg(void *data, const struct nlmsghdr *h, const void *attrs, size_t len)
{
	elem_dump_t *d = data;
	if (h->nlmsg_type != NFT_TYPE(NFT_MSG_NEWSETELEM))
		return;
	const struct nlattr *list = eg_nl_attr_find(attrs, len, NFTA_SET_ELEM_LIST_ELEMENTS);
	if (!list)
		return;
	size_t off = 0, llen = attr_len(list);
	const char *base = attr_data(list);
	while (off + NLA_HDRLEN <= llen) {
		const struct nlattr *el = (const struct nlattr *)(const void *)(base + off);
		if (el->nla_len < NLA_HDRLEN || off + el->nla_len > llen)
			break;
		const struct nlattr *key = eg_nl_attr_find(attr_data(el), attr_len(el), NFTA_SET_ELEM_KEY);
		const struct nlattr *kend = eg_nl_attr_find(attr_data(el), attr_len(el),
						      NFTA_SET_ELEM_KEY_END);
		const struct nlattr *exp = eg_nl_attr_find(attr_data(el), attr_len(el),
						     NFTA_SET_ELEM_EXPIRATION);
		const struct nlattr *kv = key ? eg_nl_attr_find(attr_data(key), attr_len(key), NFTA_DATA_VALUE)
					      : NULL;
		const struct nlattr *kev = kend ? eg_nl_attr_find(attr_data(kend), attr_len(kend),
							    NFTA_DATA_VALUE)
						: NULL;
		uint64_t expires = 0;
		attr_be64_get(exp, &expires);
		if (kv)
			d->cb(d->data, attr_data(kv), attr_len(kv), kev ? attr_data(kev) : NULL,
			      kev ? attr_len(kev) : 0, expires);
		off += NLA_ALIGN(el->nla_len);
	}
}

int eg_nfnl_set_dump(eg_nfnl_t *n, const char *table, const char *set, eg_nfnl_elem_cb cb,
		     void *data, hutch_err_t *err)
{
	elem_dump_t d = {cb, data};
	for (int attempt = 0;; attempt++) {
		_cleanup_sb_ strbuf_t req = STRBUF_INIT;
		size_t off = eg_nl_msg_start(&req, NFT_TYPE(NFT_MSG_GETSETELEM), NLM_F_REQUEST | NLM_F_DUMP,
				       n->seq++, NFPROTO_INET, 0);
		attr_str(&req, NFTA_SET_ELEM_LIST_TABLE, table);
		attr_str(&req, NFTA_SET_ELEM_LIST_SET, set);
		eg_nl_msg_end(&req, off);
		int r = eg_nfnl_dump(n, &req, elem_dump_msg, &d, err);
		if (r != -EAGAIN || attempt == 4)
			return r == -EAGAIN ? hutch_err_set(err, EAGAIN, "set %s changed during every dump",
							    set)
					    : r;
	}
}

typedef struct counter_dump {
	eg_nfnl_counter_cb cb;
	void *data;
} counter_dump_t;

static void counter_dump_msg(void *data, const struct nlmsghdr *h, const void *attrs, size_t len)
{
	counter_dump_t *d = data;
	if (h->nlmsg_type != NFT_TYPE(NFT_MSG_NEWOBJ))
		return;
	const struct nlattr *name = eg_nl_attr_find(attrs, len, NFTA_OBJ_NAME);
	const struct nlattr *obj = eg_nl_attr_find(attrs, len, NFTA_OBJ_DATA);
	if (!name || !obj || !memchr(attr_data(name), '\0', attr_len(name)))
		return;
	uint64_t packets = 0, bytes = 0;
	attr_be64_get(eg_nl_attr_find(attr_data(obj), attr_len(obj), NFTA_COUNTER_PACKETS), &packets);
	attr_be64_get(eg_nl_attr_find(attr_data(obj), attr_len(obj), NFTA_COUNTER_BYTES), &bytes);
	d->cb(d->data, attr_data(name), packets, bytes);
}

int eg_nfnl_counters_reset(eg_nfnl_t *n, const char *table, eg_nfnl_counter_cb cb, void *data,
			   hutch_err_t *err)
{
	counter_dump_t d = {cb, data};
	_cleanup_sb_ strbuf_t req = STRBUF_INIT;
	size_t off = eg_nl_msg_start(&req, NFT_TYPE(NFT_MSG_GETOBJ_RESET), NLM_F_REQUEST | NLM_F_DUMP,
			       n->seq++, NFPROTO_INET, 0);
	attr_str(&req, NFTA_OBJ_TABLE, table);
	attr_be32(&req, NFTA_OBJ_TYPE, NFT_OBJECT_COUNTER);
	eg_nl_msg_end(&req, off);
	int r = eg_nfnl_dump(n, &req, counter_dump_msg, &d, err);
	return r == -EAGAIN ? 0 : r;
}
