/* hutch secret set|ls|inspect|rm, hutch secret integrations. Values are
 * read from stdin, a file or this process's environment, never from the
 * command line (where other users' `ps` and shell history would see them),
 * and never printed back. */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "hutch/v1/secret.pb-c.h"
#include "pb_json.h"

typedef struct kvs {
	Hutch__V1__KeyValue **v;
	size_t n;
} kvs_t;

static void kvs_add(kvs_t *k, const char *key, size_t kl, const char *value)
{
	Hutch__V1__KeyValue *kv = calloc(1, sizeof *kv);
	hutch__v1__key_value__init(kv);
	kv->key = strndup(key, kl);
	kv->value = strdup(value);
	k->v = realloc(k->v, (k->n + 1) * sizeof *k->v);
	k->v[k->n++] = kv;
}

static void kvs_free(kvs_t *k)
{
	for (size_t i = 0; i < k->n; i++) {
		memset(k->v[i]->value, 0, strlen(k->v[i]->value));
		free(k->v[i]->value);
		free(k->v[i]->key);
		free(k->v[i]);
	}
	free(k->v);
}

/* "KEY=VALUE" lines, # comments and blank lines skipped, an optional
 * `export ` and quotes around the value stripped (.env files). */
int cli_read_env_file(FILE *f, const char *what, Hutch__V1__KeyValue ***out, size_t *n)
{
	kvs_t k = {0};
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int lineno = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p || *p == '#')
			continue;
		if (strncmp(p, "export ", 7) == 0)
			p += 7;
		char *eq = strchr(p, '=');
		if (!eq || eq == p) {
			fprintf(stderr, "hutch: %s line %d: expected KEY=VALUE\n", what, lineno);
			memset(line, 0, cap);
			free(line);
			kvs_free(&k);
			return -EINVAL;
		}
		char *val = eq + 1;
		size_t vl = strlen(val);
		if (vl >= 2 && ((val[0] == '"' && val[vl - 1] == '"') || (val[0] == '\'' && val[vl - 1] == '\''))) {
			val[vl - 1] = '\0';
			val++;
		}
		kvs_add(&k, p, (size_t)(eq - p), val);
	}
	if (line) {
		memset(line, 0, cap);
		free(line);
	}
	*out = k.v;
	*n = k.n;
	return 0;
}

static int secret_set(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"from-env-file", required_argument, NULL, 'f'},
		{"from-env", required_argument, NULL, 'e'},
		{"replace", no_argument, NULL, 'r'},
		{0},
	};
	kvs_t k = {0};
	bool replace = false;
	int c;
	const char *usage = "usage: hutch secret set NAME [KEY]... [--from-env VAR]... [--from-env-file FILE] [--replace]\n"
			    "       (each KEY's value is read from stdin, one line each)";
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'r') {
			replace = true;
		} else if (c == 'e') {
			const char *v = getenv(optarg);
			if (!v) {
				kvs_free(&k);
				return cli_usage_error("--from-env %s: not set in this environment", optarg);
			}
			kvs_add(&k, optarg, strlen(optarg), v);
		} else if (c == 'f') {
			FILE *f = strcmp(optarg, "-") ? fopen(optarg, "re") : stdin;
			if (!f) {
				kvs_free(&k);
				return cli_usage_error("--from-env-file %s: %s", optarg, strerror(errno));
			}
			Hutch__V1__KeyValue **v;
			size_t n;
			int r = cli_read_env_file(f, optarg, &v, &n);
			if (f != stdin)
				fclose(f);
			if (r < 0) {
				kvs_free(&k);
				return 2;
			}
			for (size_t i = 0; i < n; i++) {
				k.v = realloc(k.v, (k.n + 1) * sizeof *k.v);
				k.v[k.n++] = v[i];
			}
			free(v);
		} else {
			kvs_free(&k);
			return cli_usage_error("%s", usage);
		}
	}
	if (optind >= argc) {
		kvs_free(&k);
		return cli_usage_error("%s", usage);
	}
	const char *name = argv[optind++];
	for (; optind < argc; optind++) {
		/* KEY: its value comes from stdin, one line per key. */
		if (strchr(argv[optind], '=')) {
			kvs_free(&k);
			return cli_usage_error("give KEY only: values on the command line would be visible to others (pipe them on stdin)");
		}
		char *line = NULL;
		size_t cap = 0;
		if (isatty(0))
			fprintf(stderr, "%s: ", argv[optind]);
		ssize_t len = getline(&line, &cap, stdin);
		if (len < 0) {
			free(line);
			kvs_free(&k);
			return cli_usage_error("no value for %s on stdin", argv[optind]);
		}
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		kvs_add(&k, argv[optind], strlen(argv[optind]), line);
		memset(line, 0, cap);
		free(line);
	}
	Hutch__V1__SetSecretRequest req = HUTCH__V1__SET_SECRET_REQUEST__INIT;
	req.name = (char *)name;
	req.values = k.v;
	req.n_values = k.n;
	req.replace = replace;
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__SecretInfo *info = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.Secrets/Set", &req.base, &hutch__v1__secret_info__descriptor,
			   (ProtobufCMessage **)&info, &err);
	hutch_client_close(client);
	kvs_free(&k);
	if (r < 0)
		return cli_fail(&err);
	printf("%s (%zu variable%s)\n", info->name, info->n_keys, info->n_keys == 1 ? "" : "s");
	protobuf_c_message_free_unpacked(&info->base, NULL);
	return 0;
}

static int secret_ls(cli_t *cli, int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--json") == 0)
		cli->json = true;
	Hutch__V1__ListSecretsRequest req = HUTCH__V1__LIST_SECRETS_REQUEST__INIT;
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__ListSecretsResponse *out = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.Secrets/List", &req.base,
			   &hutch__v1__list_secrets_response__descriptor, (ProtobufCMessage **)&out, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &out->base, 0);
		printf("\n");
	} else {
		printf("%-24s %s\n", "NAME", "VARIABLES");
		for (size_t i = 0; i < out->n_secrets; i++) {
			printf("%-24s ", out->secrets[i]->name);
			for (size_t k = 0; k < out->secrets[i]->n_keys; k++)
				printf("%s%s", k ? "," : "", out->secrets[i]->keys[k]);
			printf("\n");
		}
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

static int secret_inspect(cli_t *cli, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage_error("usage: hutch secret inspect NAME");
	Hutch__V1__GetSecretRequest req = HUTCH__V1__GET_SECRET_REQUEST__INIT;
	req.name = argv[1];
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__SecretInfo *info = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.Secrets/Get", &req.base, &hutch__v1__secret_info__descriptor,
			   (ProtobufCMessage **)&info, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	pb_json_print(stdout, &info->base, 0);
	printf("\n");
	protobuf_c_message_free_unpacked(&info->base, NULL);
	return 0;
}

static int secret_rm(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch secret rm NAME...");
	hutch_client_t *client = cli_connect(cli);
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		Hutch__V1__DeleteSecretRequest req = HUTCH__V1__DELETE_SECRET_REQUEST__INIT;
		req.name = argv[i];
		ProtobufCMessage *out = NULL;
		hutch_err_t err = {0};
		if (hutch_call(client, "/hutch.v1.Secrets/Delete", &req.base,
			       &hutch__v1__delete_secret_response__descriptor, &out, &err) < 0)
			rc = cli_fail(&err);
		else
			printf("%s\n", argv[i]);
		if (out)
			protobuf_c_message_free_unpacked(out, NULL);
	}
	hutch_client_close(client);
	return rc;
}

static int secret_integrations(cli_t *cli, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	Hutch__V1__ListIntegrationsRequest req = HUTCH__V1__LIST_INTEGRATIONS_REQUEST__INIT;
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__ListIntegrationsResponse *out = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.Secrets/ListIntegrations", &req.base,
			   &hutch__v1__list_integrations_response__descriptor, (ProtobufCMessage **)&out,
			   &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	printf("%-20s %-10s %s\n", "NAME", "TYPE", "VARIABLES");
	for (size_t i = 0; i < out->n_integrations; i++) {
		Hutch__V1__IntegrationInfo *ii = out->integrations[i];
		printf("%-20s %-10s ", ii->name, ii->type);
		for (size_t k = 0; k < ii->n_keys; k++)
			printf("%s%s", k ? "," : "", ii->keys[k]);
		printf("\n");
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

int cmd_secret(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch secret set|ls|inspect|rm|integrations ...");
	const char *sub = argv[1];
	argc--;
	argv++;
	optind = 0;
	if (!strcmp(sub, "set"))
		return secret_set(cli, argc, argv);
	if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
		return secret_ls(cli, argc, argv);
	if (!strcmp(sub, "inspect"))
		return secret_inspect(cli, argc, argv);
	if (!strcmp(sub, "rm") || !strcmp(sub, "delete"))
		return secret_rm(cli, argc, argv);
	if (!strcmp(sub, "integrations"))
		return secret_integrations(cli, argc, argv);
	return cli_usage_error("unknown secret command `%s`", sub);
}
