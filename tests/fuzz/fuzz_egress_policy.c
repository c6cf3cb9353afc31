/* Fuzzes net-egress's policy compiler with what API users may send:
 * hostname patterns and CIDRs, one per line, bound as the allowed and
 * denied lists of two policies. No crash; a compiled policy matches
 * names consistently, survives its state-file round trip, and denies
 * always win. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"

static char **split_lines(const uint8_t *data, size_t size, size_t *n)
{
	char **v = calloc(size + 2, sizeof *v);
	size_t k = 0, start = 0;
	for (size_t i = 0; i <= size; i++) {
		if (i == size || data[i] == '\n') {
			char *s = malloc(i - start + 1);
			memcpy(s, data + start, i - start);
			s[i - start] = '\0';
			v[k++] = s;
			start = i + 1;
		}
	}
	*n = k;
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	size_t n;
	char **lines = split_lines(data, size, &n);
	/* Lines alternate between the lists. */
	const char **lists[4];
	size_t counts[4] = {0};
	for (int l = 0; l < 4; l++)
		lists[l] = calloc(n + 1, sizeof *lists[l]);
	for (size_t i = 0; i < n; i++) {
		int l = (int)(i % 4);
		lists[l][counts[l]++] = lines[i];
	}
	hutch_net_policy_t p1 = {.size = sizeof p1, .name = "a", .allowed_hostnames = lists[0],
				 .allowed_cidrs = lists[1]};
	hutch_net_policy_t p2 = {.size = sizeof p2, .name = "b", .denied_hostnames = lists[2],
				 .denied_cidrs = lists[3], .allow_all = size && data[0] & 1};
	const hutch_net_policy_t *ps[2] = {&p1, &p2};
	hutch_err_t err = {0};
	bool valid = eg_policy_validate(&p1, &err) == 0 && eg_policy_validate(&p2, &err) == 0;
	eg_rules_t *r = NULL;
	int rc = eg_rules_compile(ps, 2, true, false, &r, &err);
	if ((rc == 0) != valid)
		__builtin_trap();
	if (rc == 0) {
		/* Every line as a name: a denied one is never allowed. */
		for (size_t i = 0; i < n; i++) {
			char canon[300];
			hutch_err_t e2 = {0};
			if (eg_pattern_normalize(lines[i], canon, sizeof canon, &e2) < 0 ||
			    canon[0] == '*')
				continue;
			eg_verdict_t v = eg_rules_name_verdict(r, canon, true, NULL);
			for (size_t d = 0; d < r->n_deny_hosts; d++)
				if (eg_pattern_match(r->deny_hosts[d].pattern, canon) &&
				    v != EG_VERDICT_DENIED)
					__builtin_trap();
		}
		/* The state file round trip gives the same rules. */
		strbuf_t out = STRBUF_INIT;
		eg_rules_write(r, &out);
		eg_rules_t *back = eg_rules_new();
		char *text = out.buf ? out.buf : (char *)"";
		for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char *sp = strchr(line, ' ');
			if (sp)
				*sp = '\0';
			if (eg_rules_read_line(back, line, sp ? sp + 1 : "", &err) < 0)
				__builtin_trap();
		}
		if (back->n_allow_hosts != r->n_allow_hosts || back->n_deny_hosts != r->n_deny_hosts ||
		    back->n_allow_cidrs != r->n_allow_cidrs || back->n_deny_cidrs != r->n_deny_cidrs ||
		    back->allow_all != r->allow_all)
			__builtin_trap();
		eg_rules_free(back);
		sb_free(&out);
		/* Normalized prefixes never overlap. */
		for (size_t i = 0; i + 1 < r->n_deny_cidrs; i++)
			for (size_t j = i + 1; j < r->n_deny_cidrs; j++)
				if (eg_cidr_contains(&r->deny_cidrs[i], r->deny_cidrs[j].family,
						     r->deny_cidrs[j].addr) ||
				    eg_cidr_contains(&r->deny_cidrs[j], r->deny_cidrs[i].family,
						     r->deny_cidrs[i].addr))
					__builtin_trap();
		eg_rules_free(r);
	}
	for (int l = 0; l < 4; l++)
		free(lists[l]);
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	return 0;
}
