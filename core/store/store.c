#include "store.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "strbuf.h"

struct store {
	sqlite3 *db;
	sqlite3_stmt *put, *get_id, *get_name, *del, *list_all, *list_tenant;
};

/* Bump when the schema changes; migrations run in order up to it. */
static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE objects ("
	"  kind TEXT NOT NULL,"
	"  tenant TEXT NOT NULL,"
	"  id TEXT NOT NULL,"
	"  name TEXT,"
	"  data BLOB NOT NULL,"
	"  created_ms INTEGER NOT NULL,"
	"  updated_ms INTEGER NOT NULL,"
	"  PRIMARY KEY (kind, id));"
	"CREATE INDEX objects_by_name ON objects (kind, tenant, name);",
};

int64_t store_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int db_err(store_t *st, hutch_err_t *err, const char *what)
{
	return hutch_err_set(err, EIO, "metadata store: %s: %s", what,
			     sqlite3_errmsg(st->db));
}

static int migrate(store_t *st, hutch_err_t *err)
{
	sqlite3_stmt *s;
	int version = 0;
	if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &s, NULL) != SQLITE_OK)
		return db_err(st, err, "read schema version");
	if (sqlite3_step(s) == SQLITE_ROW)
		version = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	int latest = (int)(sizeof migrations / sizeof migrations[0]);
	if (version > latest)
		return hutch_err_set(err, EPROTO,
				     "metadata store has schema %d, newer than this hutchd knows (%d)",
				     version, latest);
	for (int v = version; v < latest; v++) {
		char *msg = NULL;
		_cleanup_free_ char *sql = xasprintf("BEGIN; %s PRAGMA user_version = %d; COMMIT;",
						     migrations[v], v + 1);
		if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
			int r = hutch_err_set(err, EIO, "metadata store: migrate to %d: %s",
					      v + 1, msg ? msg : "?");
			sqlite3_free(msg);
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
			return r;
		}
	}
	return 0;
}

static int prep(store_t *st, const char *sql, sqlite3_stmt **out, hutch_err_t *err)
{
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL) != SQLITE_OK)
		return db_err(st, err, "prepare");
	return 0;
}

int store_open(const char *path, store_t **out, hutch_err_t *err)
{
	store_t *st = xcalloc(1, sizeof *st);
	int r;
	if (sqlite3_open_v2(path, &st->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		r = hutch_err_set(err, EIO, "open metadata store %s: %s", path,
				  st->db ? sqlite3_errmsg(st->db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(st->db, 2000);
	char *msg = NULL;
	if (sqlite3_exec(st->db,
			 "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
			 "PRAGMA foreign_keys = ON;",
			 NULL, NULL, &msg) != SQLITE_OK) {
		r = hutch_err_set(err, EIO, "metadata store %s: %s", path, msg ? msg : "?");
		sqlite3_free(msg);
		goto fail;
	}
	if ((r = migrate(st, err)) < 0)
		goto fail;
	if ((r = prep(st, "INSERT INTO objects (kind, tenant, id, name, data, created_ms, updated_ms)"
			  " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
			  " ON CONFLICT (kind, id) DO UPDATE SET tenant = ?2, name = ?4,"
			  " data = ?5, updated_ms = ?6", &st->put, err)) < 0 ||
	    (r = prep(st, "SELECT kind, tenant, id, name, data, created_ms, updated_ms FROM objects"
			  " WHERE kind = ?1 AND id = ?2 AND (?3 IS NULL OR tenant = ?3)",
		      &st->get_id, err)) < 0 ||
	    (r = prep(st, "SELECT kind, tenant, id, name, data, created_ms, updated_ms FROM objects"
			  " WHERE kind = ?1 AND tenant = ?2 AND name = ?3 ORDER BY created_ms DESC",
		      &st->get_name, err)) < 0 ||
	    (r = prep(st, "DELETE FROM objects WHERE kind = ?1 AND id = ?2", &st->del, err)) < 0 ||
	    (r = prep(st, "SELECT kind, tenant, id, name, data, created_ms, updated_ms FROM objects"
			  " WHERE kind = ?1 ORDER BY created_ms, id", &st->list_all, err)) < 0 ||
	    (r = prep(st, "SELECT kind, tenant, id, name, data, created_ms, updated_ms FROM objects"
			  " WHERE kind = ?1 AND tenant = ?2 ORDER BY created_ms, id",
		      &st->list_tenant, err)) < 0)
		goto fail;
	*out = st;
	return 0;
fail:
	store_close(st);
	return r;
}

void store_close(store_t *st)
{
	if (!st)
		return;
	sqlite3_finalize(st->put);
	sqlite3_finalize(st->get_id);
	sqlite3_finalize(st->get_name);
	sqlite3_finalize(st->del);
	sqlite3_finalize(st->list_all);
	sqlite3_finalize(st->list_tenant);
	sqlite3_close(st->db);
	free(st);
}

int store_put(store_t *st, const char *kind, const char *tenant, const char *id,
	      const char *name, const void *data, size_t len, hutch_err_t *err)
{
	sqlite3_stmt *s = st->put;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, tenant, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, id, -1, SQLITE_STATIC);
	if (name && *name)
		sqlite3_bind_text(s, 4, name, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 4);
	sqlite3_bind_blob(s, 5, data ? data : "", (int)len, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, store_now_ms());
	int rc = sqlite3_step(s);
	sqlite3_clear_bindings(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_err(st, err, "write");
	return 0;
}

static int emit_rows(store_t *st, sqlite3_stmt *s, store_iter_cb cb, void *ud,
		     bool first_only, int *count, hutch_err_t *err)
{
	int rc;
	*count = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		store_obj_t o = {
			.kind = (const char *)sqlite3_column_text(s, 0),
			.tenant = (const char *)sqlite3_column_text(s, 1),
			.id = (const char *)sqlite3_column_text(s, 2),
			.name = (const char *)sqlite3_column_text(s, 3),
			.data = sqlite3_column_blob(s, 4),
			.len = (size_t)sqlite3_column_bytes(s, 4),
			.created_ms = sqlite3_column_int64(s, 5),
			.updated_ms = sqlite3_column_int64(s, 6),
		};
		(*count)++;
		int stop = cb ? cb(ud, &o) : 0;
		if (stop || first_only) {
			sqlite3_clear_bindings(s);
			sqlite3_reset(s);
			return stop;
		}
	}
	sqlite3_clear_bindings(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_err(st, err, "read");
	return 0;
}

int store_get(store_t *st, const char *kind, const char *tenant,
	      const char *id_or_name, store_iter_cb cb, void *ud,
	      hutch_err_t *err)
{
	int count, r;
	sqlite3_stmt *s = st->get_id;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, id_or_name, -1, SQLITE_STATIC);
	if (tenant)
		sqlite3_bind_text(s, 3, tenant, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
	r = emit_rows(st, s, cb, ud, true, &count, err);
	if (r != 0 || count > 0)
		return r;
	if (tenant) {
		s = st->get_name;
		sqlite3_reset(s);
		sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, tenant, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, id_or_name, -1, SQLITE_STATIC);
		r = emit_rows(st, s, cb, ud, true, &count, err);
		if (r != 0 || count > 0)
			return r;
	}
	return hutch_err_set(err, ENOENT, "%s `%s` not found", kind, id_or_name);
}

int store_delete(store_t *st, const char *kind, const char *id, hutch_err_t *err)
{
	sqlite3_stmt *s = st->del;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(s);
	sqlite3_clear_bindings(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return db_err(st, err, "delete");
	if (sqlite3_changes(st->db) == 0)
		return hutch_err_set(err, ENOENT, "%s `%s` not found", kind, id);
	return 0;
}

int store_list(store_t *st, const char *kind, const char *tenant,
	       store_iter_cb cb, void *ud, hutch_err_t *err)
{
	int count;
	sqlite3_stmt *s = tenant ? st->list_tenant : st->list_all;
	sqlite3_reset(s);
	sqlite3_bind_text(s, 1, kind, -1, SQLITE_STATIC);
	if (tenant)
		sqlite3_bind_text(s, 2, tenant, -1, SQLITE_STATIC);
	return emit_rows(st, s, cb, ud, false, &count, err);
}
