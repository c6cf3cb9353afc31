/*
 * check.h: the few macros hutch's C unit tests need. A failed CHECK prints
 * file:line and the expression and makes the test exit non-zero; a test
 * binary runs all its cases, or the one named in argv[1].
 */
#ifndef HUTCH_CHECK_H
#define HUTCH_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                            \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, \
				__LINE__, #cond);                              \
			check_failures++;                                      \
		}                                                              \
	} while (0)

#define CHECK_EQ_INT(a, b)                                                     \
	do {                                                                   \
		long long _a = (long long)(a), _b = (long long)(b);            \
		if (_a != _b) {                                                \
			fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", \
				__FILE__, __LINE__, #a, #b, _a, _b);           \
			check_failures++;                                      \
		}                                                              \
	} while (0)

#define CHECK_STR(a, b)                                                        \
	do {                                                                   \
		const char *_a = (a), *_b = (b);                               \
		if (!_a || !_b || strcmp(_a, _b) != 0) {                       \
			fprintf(stderr, "%s:%d: %s == %s failed:\n  got  \"%s\"\n  want \"%s\"\n", \
				__FILE__, __LINE__, #a, #b, _a ? _a : "(null)",  \
				_b ? _b : "(null)");                           \
			check_failures++;                                      \
		}                                                              \
	} while (0)

/* Substring check, for error messages. */
#define CHECK_CONTAINS(hay, needle)                                            \
	do {                                                                   \
		const char *_h = (hay), *_n = (needle);                        \
		if (!_h || !strstr(_h, _n)) {                                  \
			fprintf(stderr, "%s:%d: expected \"%s\" in:\n  \"%s\"\n", \
				__FILE__, __LINE__, _n, _h ? _h : "(null)");   \
			check_failures++;                                      \
		}                                                              \
	} while (0)

typedef struct test_case {
	const char *name;
	void (*fn)(void);
} test_case_t;

static inline int run_cases(const test_case_t *cases, int argc, char **argv)
{
	int ran = 0;
	for (const test_case_t *t = cases; t->name; t++) {
		if (argc > 1 && strcmp(argv[1], t->name) != 0)
			continue;
		int before = check_failures;
		t->fn();
		fprintf(stderr, "%s %s\n", check_failures == before ? "ok  " : "FAIL", t->name);
		ran++;
	}
	if (ran == 0) {
		fprintf(stderr, "no test case named %s\n", argc > 1 ? argv[1] : "?");
		return 2;
	}
	return check_failures ? 1 : 0;
}

#endif
