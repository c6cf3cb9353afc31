/* hutch identity verify|rotate: check a workload token with hutchd, and
 * rotate the issuer's signing key (operator, local socket). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "hutch/v1/identity.pb-c.h"
#include "pb_json.h"

/* The token from the argument, or from stdin when it is "-". */
static char *read_token(const char *arg)
{
	if (strcmp(arg, "-") != 0)
		return strdup(arg);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, stdin);
	if (n < 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
		line[--n] = '\0';
	return line;
}

static int identity_verify(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"audience", required_argument, NULL, 'a'}, {"json", no_argument, NULL, 'j'}, {0}};
	const char *audience = "";
	int c;
	optind = 0;
	while ((c = getopt_long(argc, argv, "+a:", longopts, NULL)) != -1) {
		if (c == 'a')
			audience = optarg;
		else if (c == 'j')
			cli->json = true;
		else
			return cli_usage_error("usage: hutch identity verify [--audience AUD] TOKEN|-");
	}
	if (optind != argc - 1)
		return cli_usage_error("usage: hutch identity verify [--audience AUD] TOKEN|-");
	char *token = read_token(argv[optind]);
	if (!token)
		return cli_usage_error("no token on stdin");
	Hutch__V1__VerifyTokenRequest req = HUTCH__V1__VERIFY_TOKEN_REQUEST__INIT;
	req.token = token;
	req.audience = (char *)audience;
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__VerifyTokenResponse *out = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.Identity/VerifyToken", &req.base,
			   &hutch__v1__verify_token_response__descriptor, (ProtobufCMessage **)&out,
			   &err);
	hutch_client_close(client);
	free(token);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json || !out->claims) {
		pb_json_print(stdout, &out->base, 0);
		printf("\n");
	} else {
		const Hutch__V1__TokenClaims *t = out->claims;
		time_t exp = (time_t)t->expires_unix;
		char when[64];
		strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&exp));
		printf("valid: %s\n  issuer   %s\n  audience %s\n  sandbox  %s%s%s%s (tenant %s)\n"
		       "  key      %s\n  expires  %s\n",
		       t->subject, t->issuer, t->audience, t->sandbox_id,
		       t->sandbox_name[0] ? " \"" : "", t->sandbox_name,
		       t->sandbox_name[0] ? "\"" : "", t->tenant, t->key_id, when);
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

static int identity_rotate(cli_t *cli, int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return cli_usage_error("usage: hutch identity rotate");
	Hutch__V1__RotateKeyRequest req = HUTCH__V1__ROTATE_KEY_REQUEST__INIT;
	hutch_client_t *client = cli_connect(cli);
	ProtobufCMessage *out = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.Identity/RotateKey", &req.base,
			   &hutch__v1__rotate_key_response__descriptor, &out, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	protobuf_c_message_free_unpacked(out, NULL);
	printf("rotated: new tokens are signed with a new key; the old one verifies until its tokens expire\n");
	return 0;
}

int cmd_identity(cli_t *cli, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "verify") == 0)
		return identity_verify(cli, argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "rotate") == 0)
		return identity_rotate(cli, argc - 1, argv + 1);
	return cli_usage_error("usage: hutch identity verify [--audience AUD] TOKEN|- | hutch identity rotate");
}
