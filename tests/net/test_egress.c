/*
 * test_egress.c: net-egress against the real kernel (see net_harness.h).
 * `test_egress CASE` runs one case.
 */
#include <string.h>

#include "net_harness.h"

static void case_smoke(void)
{
	world_setup(60);
	egress_t eg;
	egress_load(&eg, NULL);
	static const char *const hosts[] = {"allowed.test", NULL};
	policy_spec_t p = {.name = "p", .allow_hosts = hosts};
	sandbox_t sb;
	sandbox_attach(&eg, &sb, NULL, &p, 1, true);
	expect_dropped(&sb, IP_ALLOWED, "before the lookup");
	expect_resolves(&sb, "allowed.test", IP_ALLOWED);
	expect_connects(&sb, IP_ALLOWED, "after the lookup");
	sandbox_detach(&eg, &sb);
	egress_unload(&eg);
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
	{"smoke", case_smoke},
};

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		if (strcmp(cases[i].name, argv[1]) == 0) {
			g_case = cases[i].name;
			cases[i].fn();
			harness_cleanup();
			fprintf(stderr, "PASS %s\n", g_case);
			return 0;
		}
	}
	fprintf(stderr, "no case `%s`\n", argv[1]);
	return 2;
}
