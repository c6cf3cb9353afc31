/* hutch status */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "pb_json.h"

int cmd_status(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	int c;
	while ((c = getopt_long(argc, argv, "j", longopts, NULL)) != -1) {
		if (c == 'j')
			cli->json = true;
		else
			return cli_usage_error("usage: hutch status [--json]");
	}
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__StatusResponse *st;
	hutch_err_t err = {0};
	int r = hutch_status(client, &st, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &st->base, 0);
		printf("\n");
	} else {
		char when[64] = "?";
		time_t t = (time_t)st->started_unix;
		struct tm tm;
		if (localtime_r(&t, &tm))
			strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
		printf("hutchd %s (plugin ABI %u.%u)\n", st->version, st->abi_major, st->abi_minor);
		printf("state dir:  %s\n", st->state_dir);
		printf("started:    %s\n", when);
		printf("tenant:     %s\n", st->tenant);
		printf("sandboxes:  %u running\n", st->sandboxes_running);
		printf("plugins:\n");
		for (size_t i = 0; i < st->n_plugins; i++) {
			Hutch__V1__PluginStatus *p = st->plugins[i];
			printf("  %-12s %-20s %-10s ABI %u.%u  %s\n", p->kind, p->name, p->version,
			       p->abi_major, p->abi_minor, p->path);
			for (size_t k = 0; k < p->n_capabilities; k++)
				printf("      %s: %s\n", p->capabilities[k]->key,
				       p->capabilities[k]->value);
		}
	}
	protobuf_c_message_free_unpacked(&st->base, NULL);
	return 0;
}
