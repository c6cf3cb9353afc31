/*
 * nfnl.h: nf_tables set elements and counter objects over raw netlink.
 *
 * The structure of net-egress's table (chains, rules, sets) is written
 * once, at init, through libnftables (nft.c). Everything that changes per
 * sandbox afterwards is a set element or a counter object, and goes
 * through here: a batch of element messages committed as one nf_tables
 * transaction, so a sandbox's whole policy changes atomically. This path
 * skips libnftables on purpose: libnftables fetches a cache of the ruleset
 * (every set, and the elements of interval sets) before each command, so
 * its cost grows with the number of sandboxes (about 6 ms per element add
 * with 300 sandboxes here, against tens of microseconds for a batch sent
 * directly).
 *
 * Removal uses "add, then delete" of the same element in one batch: the
 * add is a no-op when the element exists and makes it exist when it
 * expired meanwhile, so the delete never fails and the element is gone
 * after the commit either way.
 *
 * An eg_nfnl_t is a socket plus a batch buffer, for one thread at a time.
 */
#ifndef EGRESS_NFNL_H
#define EGRESS_NFNL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#include "strbuf.h"

typedef struct eg_nfnl {
	int fd;
	uint32_t seq;
	strbuf_t batch;
	unsigned n_msgs;     /* messages in the open batch, BEGIN excluded */
	size_t last_msg;     /* offset of the last message (gets NLM_F_ACK) */
	uint32_t first_seq;  /* the open batch's BEGIN */
} eg_nfnl_t;

typedef enum eg_elem_op {
	EG_ELEM_ADD,     /* add; a no-op when it exists */
	EG_ELEM_DEL,     /* delete; fails the batch when it does not exist */
	EG_ELEM_REMOVE,  /* add + delete: gone after the commit either way */
	EG_ELEM_REFRESH, /* add + delete + add: exists with this timeout */
} eg_elem_op_t;

typedef struct eg_elem {
	const void *key;
	size_t key_len;
	const void *key_end;  /* interval sets of concatenations; else NULL */
	size_t key_end_len;
	uint64_t timeout_ms;  /* 0: the set's default (none) */
	const char *objref;   /* object maps: the object's name; else NULL */
} eg_elem_t;

int eg_nfnl_open(eg_nfnl_t *n, hutch_err_t *err);
void eg_nfnl_close(eg_nfnl_t *n);

/* Open sockets kept for the ops' threads: closing a netfilter netlink
 * socket costs the kernel some milliseconds (about 15 here), more than
 * the transaction an op sends, so each op takes one from the cache and
 * gives it back. Thread-safe. */
#define EG_NFNL_CACHE_MAX 8
typedef struct eg_nfnl_cache {
	pthread_mutex_t lock;
	eg_nfnl_t *free[EG_NFNL_CACHE_MAX];
	size_t n;
} eg_nfnl_cache_t;

void eg_nfnl_cache_init(eg_nfnl_cache_t *c);
void eg_nfnl_cache_fini(eg_nfnl_cache_t *c);
/* A socket, from the cache or new; give it back with eg_nfnl_put. */
int eg_nfnl_get(eg_nfnl_cache_t *c, eg_nfnl_t **out, hutch_err_t *err);
/* Drops what is left unread on it and keeps it (or closes it when the
 * cache is full). NULL is fine. */
void eg_nfnl_put(eg_nfnl_cache_t *c, eg_nfnl_t *n);

/* Starts a batch (dropping one left open). */
void eg_nfnl_begin(eg_nfnl_t *n);
void eg_nfnl_elem(eg_nfnl_t *n, eg_elem_op_t op, const char *table, const char *set,
		  const eg_elem_t *e);
/* Counter objects (add is a no-op when it exists; remove = add + delete). */
void eg_nfnl_counter(eg_nfnl_t *n, bool add, const char *table, const char *name);
void eg_nfnl_counter_remove(eg_nfnl_t *n, const char *table, const char *name);
/* Commits the batch as one transaction. An empty batch is a no-op. */
int eg_nfnl_commit(eg_nfnl_t *n, hutch_err_t *err);
bool eg_nfnl_pending(const eg_nfnl_t *n);

/* Calls cb for every element of table's set. expires_ms: time left, 0 if
 * the element has no timeout. */
typedef void (*eg_nfnl_elem_cb)(void *data, const uint8_t *key, size_t key_len,
				const uint8_t *key_end, size_t key_end_len, uint64_t expires_ms);
int eg_nfnl_set_dump(eg_nfnl_t *n, const char *table, const char *set, eg_nfnl_elem_cb cb,
		     void *data, hutch_err_t *err);

/* Sends the dump request in req (one message, NLM_F_DUMP) and feeds each
 * answer message to cb with its attributes (after the nfgenmsg).
 * -EAGAIN when the dump was interrupted by a concurrent change. */
struct nlmsghdr;
struct nlattr;
typedef void (*eg_nfnl_msg_cb)(void *data, const struct nlmsghdr *h, const void *attrs,
			       size_t attrs_len);
int eg_nfnl_dump(eg_nfnl_t *n, strbuf_t *req, eg_nfnl_msg_cb cb, void *data, hutch_err_t *err);

/* Message building, for the other netfilter subsystems (conntrack.c,
 * nflog.c): a header with its nfgenmsg, attributes padded to 4 bytes,
 * nests flagged NLA_F_NESTED. */
size_t eg_nl_msg_start(strbuf_t *b, uint16_t type, uint16_t flags, uint32_t seq, uint8_t family,
		       uint16_t res_id);
void eg_nl_msg_end(strbuf_t *b, size_t off);
void eg_nl_attr_put(strbuf_t *b, uint16_t type, const void *data, size_t len);
size_t eg_nl_nest_start(strbuf_t *b, uint16_t type);
void eg_nl_nest_end(strbuf_t *b, size_t off);
/* The first attribute of type in [start, start + len), bounds-checked. */
const struct nlattr *eg_nl_attr_find(const void *start, size_t len, uint16_t type);

/* Reads and zeroes every counter object of table. */
typedef void (*eg_nfnl_counter_cb)(void *data, const char *name, uint64_t packets,
				   uint64_t bytes);
int eg_nfnl_counters_reset(eg_nfnl_t *n, const char *table, eg_nfnl_counter_cb cb, void *data,
			   hutch_err_t *err);

#endif
