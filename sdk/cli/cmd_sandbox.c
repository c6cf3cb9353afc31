/* hutch sandbox create|ls|inspect|stop|rm, and the spec options `run` shares. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "pb_json.h"
#include "spec_opts.h"

static const char *state_name(Hutch__V1__SandboxState s)
{
	switch (s) {
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_CREATING: return "creating";
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_RUNNING: return "running";
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPING: return "stopping";
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_STOPPED: return "stopped";
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_EXPIRED: return "expired";
	case HUTCH__V1__SANDBOX_STATE__SANDBOX_STATE_FAILED: return "failed";
	default: return "unknown";
	}
}

int spec_opt(Hutch__V1__SandboxSpec *spec, int opt, const char *arg)
{
	int64_t v;
	switch (opt) {
	case SPEC_IMAGE: spec->image = (char *)arg; return 0;
	case SPEC_NAME: spec->name = (char *)arg; return 0;
	case SPEC_CPU:
		if (cli_parse_cpu(arg, &spec->cpu_millis) < 0)
			return cli_usage_error("--cpu %s: give cores (\"2\", \"0.5\") or millicores (\"250m\")", arg);
		return 0;
	case SPEC_MEMORY:
		if (cli_parse_size(arg, &spec->memory_bytes) < 0)
			return cli_usage_error("--memory %s: give a size like 512Mi or 2Gi", arg);
		return 0;
	case SPEC_DISK:
		if (cli_parse_size(arg, &spec->disk_bytes) < 0)
			return cli_usage_error("--disk %s: give a size like 1Gi", arg);
		return 0;
	case SPEC_LIFETIME:
		if (cli_parse_duration_s(arg, &spec->lifetime_seconds) < 0)
			return cli_usage_error("--lifetime %s: give a duration like 30m or 1h", arg);
		return 0;
	case SPEC_IDLE:
		if (cli_parse_duration_s(arg, &spec->idle_timeout_seconds) < 0)
			return cli_usage_error("--idle-timeout %s: give a duration like 10m", arg);
		return 0;
	case SPEC_PIDS:
		v = strtoll(arg, NULL, 10);
		if (v <= 0)
			return cli_usage_error("--pids %s: give a positive number", arg);
		spec->pids_max = v;
		return 0;
	case SPEC_ENV:
		if (cli_add_kv(&spec->env, &spec->n_env, arg) < 0)
			return cli_usage_error("-e %s: give KEY=VALUE", arg);
		return 0;
	case SPEC_LABEL:
		if (cli_add_kv(&spec->labels, &spec->n_labels, arg) < 0)
			return cli_usage_error("--label %s: give KEY=VALUE", arg);
		return 0;
	case SPEC_WORKDIR: spec->workdir = (char *)arg; return 0;
	case SPEC_PORT: {
		char *end;
		long p = strtol(arg, &end, 10);
		if (*end || p < 1 || p > 65535)
			return cli_usage_error("--port %s: give a TCP port", arg);
		spec->ports = realloc(spec->ports, (spec->n_ports + 1) * sizeof *spec->ports);
		spec->ports[spec->n_ports++] = (uint32_t)p;
		return 0;
	}
	case SPEC_POLICY:
		spec->network_policies = realloc(spec->network_policies,
						 (spec->n_network_policies + 1) * sizeof(char *));
		spec->network_policies[spec->n_network_policies++] = (char *)arg;
		return 0;
	case SPEC_TUNNEL:
		spec->tunnels = realloc(spec->tunnels, (spec->n_tunnels + 1) * sizeof(char *));
		spec->tunnels[spec->n_tunnels++] = (char *)arg;
		return 0;
	case SPEC_GPU: spec->gpu = (char *)arg; return 0;
	case SPEC_IDENTITY_AUDIENCE: spec->identity_audience = (char *)arg; return 0;
	case SPEC_SECRET:
	case SPEC_INTEGRATION:
	case SPEC_SECRET_ENV:
	case SPEC_SECRET_ENV_FILE: {
		Hutch__V1__SecretRef *ref = calloc(1, sizeof *ref);
		hutch__v1__secret_ref__init(ref);
		if (opt == SPEC_SECRET) {
			ref->source = "store";
			ref->name = strdup(arg);
		} else if (opt == SPEC_INTEGRATION) {
			ref->source = "integration";
			ref->name = strdup(arg);
		} else if (opt == SPEC_SECRET_ENV) {
			/* NAME[:LOCALVAR]: the sandbox's NAME gets this
			 * process's LOCALVAR (default NAME). */
			const char *colon = strchr(arg, ':');
			char *name = colon ? strndup(arg, (size_t)(colon - arg)) : strdup(arg);
			const char *local = colon ? colon + 1 : arg;
			const char *value = getenv(local);
			if (!value) {
				free(name);
				free(ref);
				return cli_usage_error("--secret-env %s: %s is not set here", arg, local);
			}
			ref->source = "inline";
			ref->name = strdup(name);
			ref->values = calloc(1, sizeof *ref->values);
			ref->values[0] = calloc(1, sizeof **ref->values);
			hutch__v1__key_value__init(ref->values[0]);
			ref->values[0]->key = name;
			ref->values[0]->value = strdup(value);
			ref->n_values = 1;
		} else {
			FILE *f = fopen(arg, "re");
			if (!f) {
				free(ref);
				return cli_usage_error("--secret-env-file %s: %s", arg, strerror(errno));
			}
			int r = cli_read_env_file(f, arg, &ref->values, &ref->n_values);
			fclose(f);
			if (r < 0) {
				free(ref);
				return 2;
			}
			ref->source = "inline";
			ref->name = strdup(arg);
		}
		spec->secrets = realloc(spec->secrets, (spec->n_secrets + 1) * sizeof *spec->secrets);
		spec->secrets[spec->n_secrets++] = ref;
		return 0;
	}
	}
	return 1; /* not a spec option */
}

static void free_kvs(Hutch__V1__KeyValue **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i]->key);
		free(v[i]->value);
		free(v[i]);
	}
	free(v);
}

void spec_opts_free(Hutch__V1__SandboxSpec *spec)
{
	free_kvs(spec->env, spec->n_env);
	free_kvs(spec->labels, spec->n_labels);
	free(spec->ports);
	free(spec->network_policies);
	free(spec->tunnels);
	spec->tunnels = NULL;
	spec->n_tunnels = 0;
	for (size_t i = 0; i < spec->n_secrets; i++) {
		Hutch__V1__SecretRef *ref = spec->secrets[i];
		for (size_t k = 0; k < ref->n_values; k++) {
			memset(ref->values[k]->value, 0, strlen(ref->values[k]->value));
			free(ref->values[k]->value);
			free(ref->values[k]->key);
			free(ref->values[k]);
		}
		free(ref->values);
		free(ref->name);
		free(ref);
	}
	free(spec->secrets);
	spec->secrets = NULL;
	spec->n_secrets = 0;
	spec->env = spec->labels = NULL;
	spec->ports = NULL;
	spec->network_policies = NULL;
	spec->n_env = spec->n_labels = spec->n_ports = spec->n_network_policies = 0;
}

static void print_sandbox(const cli_t *cli, const Hutch__V1__Sandbox *sb)
{
	if (cli->json) {
		pb_json_print(stdout, &sb->base, 0);
		printf("\n");
		return;
	}
	printf("id:        %s\n", sb->id);
	if (sb->name && *sb->name)
		printf("name:      %s\n", sb->name);
	printf("state:     %s%s%s\n", state_name(sb->state), sb->reason && *sb->reason ? " (" : "",
	       sb->reason && *sb->reason ? sb->reason : "");
	if (sb->reason && *sb->reason)
		printf(")\n");
	printf("image:     %s\n", sb->spec && sb->spec->image && *sb->spec->image ? sb->spec->image : "busybox");
	if (sb->spec)
		printf("resources: %.2f cpu, %lld MiB memory\n", sb->spec->cpu_millis / 1000.0,
		       (long long)(sb->spec->memory_bytes >> 20));
	for (size_t i = 0; i < sb->n_addresses; i++)
		printf("address:   %s\n", sb->addresses[i]);
	for (size_t i = 0; sb->spec && i < sb->spec->n_tunnels; i++)
		printf("tunnel:    %s (hutch tunnel inspect %s: its address)\n", sb->spec->tunnels[i],
		       sb->spec->tunnels[i]);
	for (size_t i = 0; i < sb->n_ports; i++)
		printf("port:      %u -> %s\n", sb->ports[i]->sandbox_port, sb->ports[i]->host_address);
}

static int sandbox_create(cli_t *cli, int argc, char **argv)
{
	Hutch__V1__SandboxSpec spec = HUTCH__V1__SANDBOX_SPEC__INIT;
	int c, r;
	while ((c = getopt_long(argc, argv, "+e:w:", spec_longopts, NULL)) != -1) {
		if (c == 'e')
			c = SPEC_ENV;
		else if (c == 'w')
			c = SPEC_WORKDIR;
		if (c == OPT_JSON_OUT) {
			cli->json = true;
			continue;
		}
		if ((r = spec_opt(&spec, c, optarg)) != 0)
			return r == 1 ? cli_usage_error("usage: hutch sandbox create [OPTIONS] [-- CMD...]") : r;
	}
	if (optind < argc) {
		spec.command = argv + optind;
		spec.n_command = (size_t)(argc - optind);
	}
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__Sandbox *sb;
	hutch_err_t err = {0};
	r = hutch_sandbox_create(client, &spec, &sb, &err);
	hutch_client_close(client);
	spec_opts_free(&spec);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json)
		print_sandbox(cli, sb);
	else
		printf("%s\n", sb->id);
	protobuf_c_message_free_unpacked(&sb->base, NULL);
	return 0;
}

static void age(char *buf, size_t cap, int64_t since_ms)
{
	int64_t s = (int64_t)time(NULL) - since_ms / 1000;
	if (s < 0)
		s = 0;
	if (s < 120)
		snprintf(buf, cap, "%llds", (long long)s);
	else if (s < 7200)
		snprintf(buf, cap, "%lldm", (long long)s / 60);
	else if (s < 172800)
		snprintf(buf, cap, "%lldh", (long long)s / 3600);
	else
		snprintf(buf, cap, "%lldd", (long long)s / 86400);
}

static int sandbox_ls(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"all", no_argument, NULL, 'a'}, {"json", no_argument, NULL, 'j'}, {0}};
	bool all = false;
	int c;
	while ((c = getopt_long(argc, argv, "aj", longopts, NULL)) != -1) {
		if (c == 'a')
			all = true;
		else if (c == 'j')
			cli->json = true;
		else
			return cli_usage_error("usage: hutch sandbox ls [-a] [--json]");
	}
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__ListSandboxesResponse *l;
	hutch_err_t err = {0};
	int r = hutch_sandbox_list(client, all, &l, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &l->base, 0);
		printf("\n");
	} else {
		printf("%-18s %-16s %-10s %-8s %-10s %s\n", "ID", "NAME", "STATE", "AGE", "IMAGE", "REASON");
		for (size_t i = 0; i < l->n_sandboxes; i++) {
			Hutch__V1__Sandbox *sb = l->sandboxes[i];
			char a[32];
			age(a, sizeof a, sb->created_unix_ms);
			printf("%-18s %-16s %-10s %-8s %-10s %s\n", sb->id,
			       sb->name && *sb->name ? sb->name : "-", state_name(sb->state), a,
			       sb->spec && sb->spec->image && *sb->spec->image ? sb->spec->image : "busybox",
			       sb->reason ? sb->reason : "");
		}
	}
	protobuf_c_message_free_unpacked(&l->base, NULL);
	return 0;
}

static int sandbox_inspect(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch sandbox inspect ID");
	hutch_client_t *client = cli_connect(cli);
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		Hutch__V1__Sandbox *sb;
		hutch_err_t err = {0};
		if (hutch_sandbox_get(client, argv[i], &sb, &err) < 0) {
			rc = cli_fail(&err);
			continue;
		}
		cli_t j = *cli;
		j.json = true; /* inspect is for reading everything */
		print_sandbox(&j, sb);
		protobuf_c_message_free_unpacked(&sb->base, NULL);
	}
	hutch_client_close(client);
	return rc;
}

static int sandbox_stop(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {{"grace", required_argument, NULL, 'g'}, {0}};
	int64_t grace_s = -1;
	int c;
	while ((c = getopt_long(argc, argv, "g:", longopts, NULL)) != -1) {
		if (c != 'g' || cli_parse_duration_s(optarg, &grace_s) < 0)
			return cli_usage_error("usage: hutch sandbox stop [--grace 10s] ID...");
	}
	if (optind >= argc)
		return cli_usage_error("usage: hutch sandbox stop [--grace 10s] ID...");
	hutch_client_t *client = cli_connect(cli);
	int rc = 0;
	for (int i = optind; i < argc; i++) {
		hutch_err_t err = {0};
		if (hutch_sandbox_stop(client, argv[i], grace_s < 0 ? 0 : grace_s * 1000, NULL, &err) < 0)
			rc = cli_fail(&err);
		else
			printf("%s\n", argv[i]);
	}
	hutch_client_close(client);
	return rc;
}

static int sandbox_rm(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch sandbox rm ID...");
	hutch_client_t *client = cli_connect(cli);
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		hutch_err_t err = {0};
		if (hutch_sandbox_delete(client, argv[i], &err) < 0)
			rc = cli_fail(&err);
		else
			printf("%s\n", argv[i]);
	}
	hutch_client_close(client);
	return rc;
}

int cmd_sandbox(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch sandbox create|ls|inspect|stop|rm ...");
	const char *sub = argv[1];
	argc--;
	argv++;
	optind = 0; /* 0: glibc re-reads the option string (ordering included) */
	if (!strcmp(sub, "create"))
		return sandbox_create(cli, argc, argv);
	if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
		return sandbox_ls(cli, argc, argv);
	if (!strcmp(sub, "inspect"))
		return sandbox_inspect(cli, argc, argv);
	if (!strcmp(sub, "stop"))
		return sandbox_stop(cli, argc, argv);
	if (!strcmp(sub, "rm") || !strcmp(sub, "delete"))
		return sandbox_rm(cli, argc, argv);
	if (!strcmp(sub, "update-policy"))
		return cmd_sandbox_update_policy(cli, argc, argv);
	return cli_usage_error("unknown sandbox command `%s`", sub);
}
