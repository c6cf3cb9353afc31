/* The metadata store: objects survive reopening; tenants and names scope
 * lookups. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "cleanup.h"
#include "store.h"
#include "strbuf.h"

typedef struct seen {
	int n;
	char ids[16][64];
	char data[16][64];
	char tenant[16][64];
} seen_t;

static int collect(void *ud, const store_obj_t *o)
{
	seen_t *s = ud;
	if (s->n < 16) {
		snprintf(s->ids[s->n], 64, "%s", o->id);
		snprintf(s->data[s->n], 64, "%.*s", (int)o->len, (const char *)o->data);
		snprintf(s->tenant[s->n], 64, "%s", o->tenant);
		s->n++;
	}
	return 0;
}

static void roundtrip_and_reopen(void)
{
	char dir[] = "/tmp/hutch-test-store-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	_cleanup_free_ char *db = xasprintf("%s/hutch.db", dir);
	store_t *st;
	hutch_err_t err = {0};
	CHECK_EQ_INT(store_open(db, &st, &err), 0);
	CHECK_EQ_INT(store_put(st, "sandbox", "acme", "sb-1", "web", "one", 3, &err), 0);
	CHECK_EQ_INT(store_put(st, "sandbox", "acme", "sb-2", NULL, "two", 3, &err), 0);
	CHECK_EQ_INT(store_put(st, "sandbox", "other", "sb-3", "web", "three", 5, &err), 0);
	CHECK_EQ_INT(store_put(st, "policy", "acme", "p-1", "open", "pol", 3, &err), 0);
	/* Replace keeps one row. */
	CHECK_EQ_INT(store_put(st, "sandbox", "acme", "sb-1", "web", "ONE", 3, &err), 0);
	store_close(st);

	CHECK_EQ_INT(store_open(db, &st, &err), 0);
	seen_t s = {0};
	CHECK_EQ_INT(store_list(st, "sandbox", "acme", collect, &s, &err), 0);
	CHECK_EQ_INT(s.n, 2);
	CHECK_STR(s.data[0], "ONE");
	memset(&s, 0, sizeof s);
	CHECK_EQ_INT(store_list(st, "sandbox", NULL, collect, &s, &err), 0);
	CHECK_EQ_INT(s.n, 3);

	/* By name, within the tenant only. */
	memset(&s, 0, sizeof s);
	CHECK_EQ_INT(store_get(st, "sandbox", "other", "web", collect, &s, &err), 0);
	CHECK_STR(s.ids[0], "sb-3");
	/* Another tenant's object is not found by id either. */
	memset(&s, 0, sizeof s);
	CHECK_EQ_INT(store_get(st, "sandbox", "other", "sb-1", collect, &s, &err), -ENOENT);
	CHECK_CONTAINS(err.message, "sandbox `sb-1` not found");
	CHECK_EQ_INT(s.n, 0);

	CHECK_EQ_INT(store_delete(st, "sandbox", "sb-2", &err), 0);
	CHECK_EQ_INT(store_delete(st, "sandbox", "sb-2", &err), -ENOENT);
	memset(&s, 0, sizeof s);
	CHECK_EQ_INT(store_list(st, "sandbox", "acme", collect, &s, &err), 0);
	CHECK_EQ_INT(s.n, 1);
	store_close(st);
	_cleanup_free_ char *cmd = xasprintf("rm -rf %s", dir);
	CHECK_EQ_INT(system(cmd), 0);
}

static void refuses_garbage_file(void)
{
	char path[] = "/tmp/hutch-test-store-bad-XXXXXX";
	int fd = mkstemp(path);
	const char junk[] = "this is not a database, not at all, definitely not";
	for (int i = 0; i < 200; i++)
		CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
	close(fd);
	store_t *st = NULL;
	hutch_err_t err = {0};
	CHECK(store_open(path, &st, &err) < 0);
	CHECK(st == NULL);
	CHECK_CONTAINS(err.message, "metadata store");
	unlink(path);
}

int main(int argc, char **argv)
{
	static const test_case_t cases[] = {
		{"roundtrip_and_reopen", roundtrip_and_reopen},
		{"refuses_garbage_file", refuses_garbage_file},
		{NULL, NULL},
	};
	return run_cases(cases, argc, argv);
}
