/*
 * cli.h: what the hutch CLI's commands share: global options, the client,
 * parsing of sizes and durations, and printing errors as one line.
 */
#ifndef HUTCH_CLI_H
#define HUTCH_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "hutch/v1/image.pb-c.h"
#include "hutch_client.h"

typedef struct cli {
	hutch_client_opts_t opts;
	bool json;
} cli_t;

/* Connects or prints the error and exits 1 (the only exit outside main:
 * commands are leaves and have nothing to clean up). */
hutch_client_t *cli_connect(const cli_t *cli);
/* Prints "hutch: <message>" and returns exit status 1. */
int cli_fail(const hutch_err_t *err);
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* argv[0] is a command: prints its usage (or a subcommand's) and returns
 * true if the next word, or the one after a subcommand, is --help or -h. */
bool cli_help(int argc, char **argv);

int cli_parse_size(const char *s, int64_t *out);
int cli_parse_duration_s(const char *s, int64_t *seconds);
int cli_parse_cpu(const char *s, int64_t *millis);
/* "K=V" into a KeyValue array (grows *v). */
int cli_add_kv(Hutch__V1__KeyValue ***v, size_t *n, const char *s);

int cmd_status(cli_t *cli, int argc, char **argv);
int cmd_sandbox(cli_t *cli, int argc, char **argv);
int cmd_run(cli_t *cli, int argc, char **argv);
int cmd_exec(cli_t *cli, int argc, char **argv);
int cmd_cp(cli_t *cli, int argc, char **argv);
int cmd_policy(cli_t *cli, int argc, char **argv);
int cmd_secret(cli_t *cli, int argc, char **argv);
int cmd_identity(cli_t *cli, int argc, char **argv);
int cmd_image(cli_t *cli, int argc, char **argv);
int cmd_group(cli_t *cli, int argc, char **argv);
/* hutch tunnel create|ls|inspect|rm (cmd_tunnel.c). */
int cmd_tunnel(cli_t *cli, int argc, char **argv);
/* hutch image build (cmd_image_build.c). */
int cmd_image_build(cli_t *cli, int argc, char **argv);
/* Imports a tar file, or a directory (an OCI layout, sent as a tar), as
 * image name; *out the image (free_unpacked). */
int cli_image_import(hutch_client_t *c, const char *path, const char *name, const char *ref,
		     Hutch__V1__Image **out, hutch_err_t *err);
/* Writes a tar of dir's contents (names relative to dir) into fd. */
int cli_tar_dir(const char *dir, int fd, hutch_err_t *err);
/* "12.3 MiB" into buf. */
const char *cli_human_size(int64_t bytes, char *buf, size_t cap);
/* KEY=VALUE lines of an env file into a KeyValue array (values to be wiped
 * by the caller). */
int cli_read_env_file(FILE *f, const char *what, Hutch__V1__KeyValue ***out, size_t *n);
int cmd_sandbox_update_policy(cli_t *cli, int argc, char **argv);

/* Shared by run and exec: streams an exec with the terminal attached;
 * returns the process's exit status as a shell would (128+N if signalled). */
int cli_exec_attached(hutch_client_t *c, const char *sandbox, char **argv, int argc,
		      Hutch__V1__KeyValue **env, size_t n_env, const char *workdir,
		      const char *user, bool interactive, bool tty, int64_t timeout_ms);

#endif
