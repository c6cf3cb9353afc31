/*
 * store.h: hutchd's persistent metadata, in SQLite (WAL).
 *
 * Every API object (sandbox, policy, image, secret metadata, ...) is a row
 * keyed by (kind, id), owned by a tenant, optionally named, holding its
 * protobuf encoding. Objects outlive the daemon: after a restart they are
 * read back and reconciled with what the plugins still hold.
 *
 * Loop thread only (the connection is not shared); every call is a short
 * local transaction.
 */
#ifndef HUTCH_STORE_H
#define HUTCH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

typedef struct store store_t;

typedef struct store_obj {
	const char *kind;
	const char *tenant;
	const char *id;
	const char *name; /* may be NULL */
	const void *data;
	size_t len;
	int64_t created_ms;
	int64_t updated_ms;
} store_obj_t;

/* Returns non-zero to stop the iteration (store_list then returns it). */
typedef int (*store_iter_cb)(void *ud, const store_obj_t *obj);

int store_open(const char *path, store_t **out, hutch_err_t *err);
void store_close(store_t *st);

/* Inserts or replaces (kind, id). */
int store_put(store_t *st, const char *kind, const char *tenant, const char *id,
	      const char *name, const void *data, size_t len, hutch_err_t *err);

/* Finds by id, or by name within tenant. tenant NULL: any tenant (by id
 * only). -ENOENT when absent. The callback sees the object once. */
int store_get(store_t *st, const char *kind, const char *tenant,
	      const char *id_or_name, store_iter_cb cb, void *ud,
	      hutch_err_t *err);

int store_delete(store_t *st, const char *kind, const char *id, hutch_err_t *err);

/* All objects of kind (of tenant, or all tenants when NULL), oldest first. */
int store_list(store_t *st, const char *kind, const char *tenant,
	       store_iter_cb cb, void *ud, hutch_err_t *err);

int64_t store_now_ms(void);

#endif
