/* hutch tunnel create|ls|inspect|rm: the tenant's WireGuard tunnels
 * (hutch.v1.Tunnels). A sandbox joins one with `--tunnel NAME`. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "hutch/v1/tunnel.pb-c.h"
#include "pb_json.h"

static int call(cli_t *cli, const char *path, const ProtobufCMessage *req,
		const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	hutch_client_t *client = cli_connect(cli);
	hutch_err_t err = {0};
	int r = hutch_call(client, path, req, desc, out, &err);
	hutch_client_close(client);
	return r < 0 ? cli_fail(&err) : 0;
}

static void print_json(const ProtobufCMessage *m)
{
	pb_json_print(stdout, m, 0);
	printf("\n");
}

static const char *ago(int64_t unix_s, char *buf, size_t cap)
{
	if (unix_s <= 0)
		return "never";
	int64_t d = (int64_t)time(NULL) - unix_s;
	snprintf(buf, cap, "%llds ago", (long long)(d < 0 ? 0 : d));
	return buf;
}

static void print_tunnel(const Hutch__V1__Tunnel *t)
{
	printf("%-12s%s\n", "name:", t->name);
	printf("%-12s%s\n", "subnet:", t->subnet);
	printf("%-12s%s\n", "persistent:", t->persistent ? "yes" : "no (goes with its last member)");
	if (!t->n_members) {
		printf("%-12s%s\n", "members:", "none");
		return;
	}
	printf("\n%-20s %-18s %-6s %-14s %s\n", "SANDBOX", "ADDRESS", "IF", "HANDSHAKE", "PUBLIC KEY");
	for (size_t i = 0; i < t->n_members; i++) {
		const Hutch__V1__TunnelMember *m = t->members[i];
		char buf[32];
		printf("%-20s %-18s %-6s %-14s %s\n", m->sandbox_id, m->address, m->interface,
		       ago(m->last_handshake_unix, buf, sizeof buf), m->public_key);
	}
}

static int tunnel_create(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"subnet", required_argument, NULL, 's'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	Hutch__V1__CreateTunnelRequest req = HUTCH__V1__CREATE_TUNNEL_REQUEST__INIT;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 's': req.subnet = optarg; break;
		case 'j': cli->json = true; break;
		default: return cli_usage_error("usage: hutch tunnel create NAME [--subnet CIDR]");
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("usage: hutch tunnel create NAME [--subnet CIDR]");
	req.name = argv[optind];
	Hutch__V1__Tunnel *t = NULL;
	int r = call(cli, "/hutch.v1.Tunnels/Create", &req.base, &hutch__v1__tunnel__descriptor,
		     (ProtobufCMessage **)&t);
	if (r)
		return r;
	if (cli->json)
		print_json(&t->base);
	else
		printf("%s %s\n", t->name, t->subnet);
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return 0;
}

static int tunnel_ls(cli_t *cli, int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--json") == 0)
		cli->json = true;
	Hutch__V1__ListTunnelsRequest req = HUTCH__V1__LIST_TUNNELS_REQUEST__INIT;
	Hutch__V1__ListTunnelsResponse *out = NULL;
	int r = call(cli, "/hutch.v1.Tunnels/List", &req.base,
		     &hutch__v1__list_tunnels_response__descriptor, (ProtobufCMessage **)&out);
	if (r)
		return r;
	if (cli->json) {
		print_json(&out->base);
	} else {
		printf("%-24s %-18s %-8s %s\n", "NAME", "SUBNET", "MEMBERS", "PERSISTENT");
		for (size_t i = 0; i < out->n_tunnels; i++)
			printf("%-24s %-18s %-8zu %s\n", out->tunnels[i]->name, out->tunnels[i]->subnet,
			       out->tunnels[i]->n_members, out->tunnels[i]->persistent ? "yes" : "no");
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

static int tunnel_inspect(cli_t *cli, int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[2], "--json") == 0)
		cli->json = true;
	else if (argc != 2)
		return cli_usage_error("usage: hutch tunnel inspect NAME");
	Hutch__V1__GetTunnelRequest req = HUTCH__V1__GET_TUNNEL_REQUEST__INIT;
	req.name = argv[1];
	Hutch__V1__Tunnel *t = NULL;
	int r = call(cli, "/hutch.v1.Tunnels/Get", &req.base, &hutch__v1__tunnel__descriptor,
		     (ProtobufCMessage **)&t);
	if (r)
		return r;
	if (cli->json)
		print_json(&t->base);
	else
		print_tunnel(t);
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return 0;
}

static int tunnel_rm(cli_t *cli, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage_error("usage: hutch tunnel rm NAME");
	Hutch__V1__DeleteTunnelRequest req = HUTCH__V1__DELETE_TUNNEL_REQUEST__INIT;
	req.name = argv[1];
	Hutch__V1__DeleteTunnelResponse *out = NULL;
	int r = call(cli, "/hutch.v1.Tunnels/Delete", &req.base,
		     &hutch__v1__delete_tunnel_response__descriptor, (ProtobufCMessage **)&out);
	if (r)
		return r;
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

int cmd_tunnel(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch tunnel create|ls|inspect|rm ...");
	const char *sub = argv[1];
	argc--;
	argv++;
	optind = 0; /* 0: glibc re-reads the option string (ordering included) */
	if (!strcmp(sub, "create"))
		return tunnel_create(cli, argc, argv);
	if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
		return tunnel_ls(cli, argc, argv);
	if (!strcmp(sub, "inspect"))
		return tunnel_inspect(cli, argc, argv);
	if (!strcmp(sub, "rm") || !strcmp(sub, "delete"))
		return tunnel_rm(cli, argc, argv);
	return cli_usage_error("unknown tunnel command `%s`", sub);
}
