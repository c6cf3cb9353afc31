/* hutchd: the hutch daemon. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "daemon.h"
#include "log.h"

#ifndef HUTCH_VERSION
#define HUTCH_VERSION "0.0.0"
#endif

static void usage(FILE *out)
{
	fprintf(out,
		"usage: hutchd [options]            run the daemon\n"
		"       hutchd --check-config FILE  validate a config and its plugins, then exit\n"
		"       hutchd --describe NAME      print a plugin's options (NAME, a .so path, or `daemon`)\n"
		"       hutchd --hash-key           read an API key on stdin, print its sha256 for [[api.key]]\n"
		"       hutchd --version\n"
		"\n"
		"options:\n"
		"  -c, --config FILE      hutchd.toml (default: built-in defaults; also $HUTCH_CONFIG)\n"
		"      --state-dir DIR    override [daemon] state_dir\n"
		"      --run-dir DIR      override [daemon] run_dir\n"
		"      --socket PATH      override [daemon] socket\n"
		"      --plugin-dir DIR   override [daemon] plugin_dir\n"
		"      --log-format F     text or json\n"
		"      --log-level L      error, warn, info or debug\n");
}

static int hash_key(void)
{
	char buf[4096];
	if (!fgets(buf, sizeof buf, stdin)) {
		fprintf(stderr, "hutchd: no key on stdin\n");
		return 2;
	}
	buf[strcspn(buf, "\r\n")] = '\0';
	if (strlen(buf) < 16) {
		fprintf(stderr, "hutchd: an API key should be at least 16 characters\n");
		return 2;
	}
	char hex[65];
	api_key_digest(buf, hex);
	printf("%s\n", hex);
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		OPT_STATE_DIR = 256, OPT_RUN_DIR, OPT_SOCKET, OPT_PLUGIN_DIR, OPT_LOG_FORMAT,
		OPT_LOG_LEVEL, OPT_CHECK, OPT_DESCRIBE, OPT_HASH, OPT_VERSION,
	};
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"state-dir", required_argument, NULL, OPT_STATE_DIR},
		{"run-dir", required_argument, NULL, OPT_RUN_DIR},
		{"socket", required_argument, NULL, OPT_SOCKET},
		{"plugin-dir", required_argument, NULL, OPT_PLUGIN_DIR},
		{"log-format", required_argument, NULL, OPT_LOG_FORMAT},
		{"log-level", required_argument, NULL, OPT_LOG_LEVEL},
		{"check-config", required_argument, NULL, OPT_CHECK},
		{"describe", required_argument, NULL, OPT_DESCRIBE},
		{"hash-key", no_argument, NULL, OPT_HASH},
		{"version", no_argument, NULL, OPT_VERSION},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	daemon_opts_t o = {.config_file = getenv("HUTCH_CONFIG")};
	if (o.config_file && !*o.config_file)
		o.config_file = NULL;
	const char *check = NULL, *describe = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': o.config_file = optarg; break;
		case OPT_STATE_DIR: o.state_dir = optarg; break;
		case OPT_RUN_DIR: o.run_dir = optarg; break;
		case OPT_SOCKET: o.socket = optarg; break;
		case OPT_PLUGIN_DIR: o.plugin_dir = optarg; break;
		case OPT_LOG_FORMAT: o.log_format = optarg; break;
		case OPT_LOG_LEVEL: o.log_level = optarg; break;
		case OPT_CHECK: check = optarg; break;
		case OPT_DESCRIBE: describe = optarg; break;
		case OPT_HASH: return hash_key();
		case OPT_VERSION:
			printf("hutchd %s (plugin ABI %d.%d)\n", HUTCH_VERSION,
			       HUTCH_PLUGIN_ABI_MAJOR, HUTCH_PLUGIN_ABI_MINOR);
			return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "hutchd: unexpected argument `%s`\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	hutch_err_t err = {0};
	int r;
	if (check) {
		r = daemon_check_config(check, o.plugin_dir, stdout, &err);
	} else if (describe) {
		r = daemon_describe(describe, o.plugin_dir, stdout, &err);
	} else {
		r = daemon_run(&o, &err);
	}
	if (r < 0) {
		if (check || describe)
			fprintf(stderr, "hutchd: %s\n", err.message);
		else
			log_error("%s", err.message);
		return 1;
	}
	return 0;
}
