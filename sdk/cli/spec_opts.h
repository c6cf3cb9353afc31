/* Options that describe a sandbox, shared by `sandbox create` and `run`. */
#ifndef HUTCH_CLI_SPEC_OPTS_H
#define HUTCH_CLI_SPEC_OPTS_H

#include <getopt.h>

#include "cli.h"

enum {
	SPEC_IMAGE = 300, SPEC_NAME, SPEC_CPU, SPEC_MEMORY, SPEC_DISK, SPEC_LIFETIME, SPEC_IDLE,
	SPEC_PIDS, SPEC_ENV, SPEC_LABEL, SPEC_WORKDIR, SPEC_PORT, SPEC_POLICY, SPEC_GPU,
	SPEC_SECRET, SPEC_INTEGRATION, SPEC_SECRET_ENV, SPEC_SECRET_ENV_FILE, SPEC_IDENTITY_AUDIENCE,
	SPEC_TUNNEL,
	/* run/exec only */
	OPT_INTERACTIVE, OPT_TTY, OPT_USER, OPT_TIMEOUT, OPT_KEEP, OPT_JSON_OUT,
};

#define SPEC_LONGOPTS                                                          \
	{"image", required_argument, NULL, SPEC_IMAGE},                        \
	{"name", required_argument, NULL, SPEC_NAME},                          \
	{"cpu", required_argument, NULL, SPEC_CPU},                            \
	{"memory", required_argument, NULL, SPEC_MEMORY},                      \
	{"disk", required_argument, NULL, SPEC_DISK},                          \
	{"lifetime", required_argument, NULL, SPEC_LIFETIME},                  \
	{"idle-timeout", required_argument, NULL, SPEC_IDLE},                  \
	{"pids", required_argument, NULL, SPEC_PIDS},                          \
	{"env", required_argument, NULL, SPEC_ENV},                            \
	{"label", required_argument, NULL, SPEC_LABEL},                        \
	{"workdir", required_argument, NULL, SPEC_WORKDIR},                    \
	{"port", required_argument, NULL, SPEC_PORT},                          \
	{"network-policy", required_argument, NULL, SPEC_POLICY},              \
	{"gpu", required_argument, NULL, SPEC_GPU},                            \
	{"secret", required_argument, NULL, SPEC_SECRET},                      \
	{"integration", required_argument, NULL, SPEC_INTEGRATION},            \
	{"secret-env", required_argument, NULL, SPEC_SECRET_ENV},              \
	{"secret-env-file", required_argument, NULL, SPEC_SECRET_ENV_FILE},    \
	{"identity-audience", required_argument, NULL, SPEC_IDENTITY_AUDIENCE}, \
	{"tunnel", required_argument, NULL, SPEC_TUNNEL},                      \
	{"json", no_argument, NULL, OPT_JSON_OUT}

static const struct option spec_longopts[] = {SPEC_LONGOPTS, {0}};

/* Applies one option to spec: 0 applied, 1 not a spec option, 2 usage
 * error (already printed). */
int spec_opt(Hutch__V1__SandboxSpec *spec, int opt, const char *arg);
/* Frees what spec_opt allocated. */
void spec_opts_free(Hutch__V1__SandboxSpec *spec);

#endif
