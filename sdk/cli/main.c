/* hutch: the command-line client of hutchd. */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#ifndef HUTCH_VERSION
#define HUTCH_VERSION "0.0.0"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"usage: hutch [global options] COMMAND [ARGS]\n"
		"\n"
		"commands:\n"
		"  status                         daemon version, plugins, state dir\n"
		"  run [OPTS] -- CMD [ARG...]     run CMD in a new sandbox, then stop it\n"
		"  exec [OPTS] ID -- CMD [ARG...] run CMD in a running sandbox\n"
		"  cp SRC DST                     copy files; ID:/path names a sandbox path\n"
		"  sandbox create|ls|inspect|stop|rm|update-policy\n"
		"  policy create|ls|inspect|rm    network policies\n"
		"  secret set|ls|inspect|rm|integrations\n"
		"  group deploy|ls|inspect|scale|logs|rm\n"
		"  identity verify|rotate         workload tokens: check one; rotate the signing key\n"
		"  tunnel create|ls|inspect|rm|peer  WireGuard meshes between sandboxes\n"
		"  image build|ls|inspect|rm|gc|export|import\n"
		"                                 images: build FILE.toml (see docs/images.md)\n"
		"\n"
		"global options:\n"
		"  --socket PATH     hutchd's unix socket (default $HUTCH_SOCKET or %s)\n"
		"  --address H:P     hutchd over TCP+TLS (default $HUTCH_ADDRESS)\n"
		"  --api-key KEY     API key for TCP (default $HUTCH_API_KEY)\n"
		"  --ca-file FILE    CA bundle to verify hutchd's certificate\n"
		"  --plaintext       TCP without TLS (loopback only)\n"
		"  --json            machine-readable output\n"
		"  --version\n"
		"\n"
		"hutch COMMAND --help shows a command's usage.\n",
		HUTCH_DEFAULT_SOCKET);
}

int cli_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("hutch: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\n", stderr);
	va_end(ap);
	return 2;
}

int cli_fail(const hutch_err_t *err)
{
	fprintf(stderr, "hutch: %s\n", err->message[0] ? err->message : "failed");
	return 1;
}

hutch_client_t *cli_connect(const cli_t *cli)
{
	hutch_client_t *c;
	hutch_err_t err = {0};
	if (hutch_client_open(&cli->opts, &c, &err) < 0) {
		cli_fail(&err);
		exit(1);
	}
	return c;
}

int main(int argc, char **argv)
{
	enum { O_SOCKET = 256, O_ADDRESS, O_KEY, O_CA, O_PLAIN, O_JSON, O_VERSION };
	static const struct option longopts[] = {
		{"socket", required_argument, NULL, O_SOCKET},
		{"address", required_argument, NULL, O_ADDRESS},
		{"api-key", required_argument, NULL, O_KEY},
		{"ca-file", required_argument, NULL, O_CA},
		{"plaintext", no_argument, NULL, O_PLAIN},
		{"json", no_argument, NULL, O_JSON},
		{"version", no_argument, NULL, O_VERSION},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	cli_t cli = {0};
	int c;
	/* "+": stop at the command; its options are its own. */
	while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (c) {
		case O_SOCKET: cli.opts.address = optarg; break;
		case O_ADDRESS: cli.opts.address = optarg; break;
		case O_KEY: cli.opts.api_key = optarg; break;
		case O_CA: cli.opts.ca_file = optarg; break;
		case O_PLAIN: cli.opts.plaintext = true; break;
		case O_JSON: cli.json = true; break;
		case O_VERSION: printf("hutch %s\n", HUTCH_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	if (cli_help(sub_argc, sub_argv))
		return 0;
	/* Commands parse their own options; 0 makes glibc re-read the option
	 * string, ordering included. */
	optind = 0;
	static const struct {
		const char *name;
		int (*fn)(cli_t *, int, char **);
	} cmds[] = {
		{"status", cmd_status}, {"sandbox", cmd_sandbox}, {"run", cmd_run},
		{"exec", cmd_exec},     {"cp", cmd_cp},           {"policy", cmd_policy},
		{"secret", cmd_secret},
		{"identity", cmd_identity},
		{"image", cmd_image},
		{"group", cmd_group},
		{"tunnel", cmd_tunnel},
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(cmd, cmds[i].name) == 0)
			return cmds[i].fn(&cli, sub_argc, sub_argv);
	return cli_usage_error("unknown command `%s` (see hutch --help)", cmd);
}
