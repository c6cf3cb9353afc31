/* hutch tunnel create|ls|inspect|rm|peer: the tenant's WireGuard tunnels
 * (hutch.v1.Tunnels) and their external peers. A sandbox joins one with
 * `--tunnel NAME`. */
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
	if (t->gateway_public_key && *t->gateway_public_key)
		printf("%-12s%s (%s)\n", "gateway:", t->gateway_public_key, t->gateway_endpoint);
	if (!t->n_members) {
		printf("%-12s%s\n", "members:", "none");
	} else {
		printf("\n%-20s %-18s %-6s %-14s %s\n", "SANDBOX", "ADDRESS", "IF", "HANDSHAKE",
		       "PUBLIC KEY");
		for (size_t i = 0; i < t->n_members; i++) {
			const Hutch__V1__TunnelMember *m = t->members[i];
			char buf[32];
			printf("%-20s %-18s %-6s %-14s %s\n", m->sandbox_id, m->address, m->interface,
			       ago(m->last_handshake_unix, buf, sizeof buf), m->public_key);
		}
	}
	if (t->n_peers) {
		printf("\n%-20s %-18s %-14s %-22s %s\n", "PEER", "ADDRESS", "HANDSHAKE", "ENDPOINT",
		       "ALLOWED IPS");
		for (size_t i = 0; i < t->n_peers; i++) {
			const Hutch__V1__TunnelPeer *p = t->peers[i];
			char buf[32];
			printf("%-20s %-18s %-14s %-22s ", p->name, p->address,
			       ago(p->last_handshake_unix, buf, sizeof buf),
			       p->endpoint && *p->endpoint ? p->endpoint : "(it calls in)");
			for (size_t k = 0; k < p->n_allowed_ips; k++)
				printf("%s%s", k ? "," : "", p->allowed_ips[k]);
			printf("\n");
		}
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

static int peer_usage(void)
{
	return cli_usage_error("usage: hutch tunnel peer add TUNNEL PEER --public-key K --allowed-ips CIDR "
			       "[--allowed-ips CIDR]... [--endpoint IP:PORT]\n"
			       "       hutch tunnel peer rm TUNNEL PEER\n"
			       "       hutch tunnel peer config TUNNEL PEER");
}

static int peer_add(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"public-key", required_argument, NULL, 'k'},
		{"endpoint", required_argument, NULL, 'e'},
		{"allowed-ips", required_argument, NULL, 'a'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	Hutch__V1__TunnelPeer peer = HUTCH__V1__TUNNEL_PEER__INIT;
	char **nets = NULL;
	size_t n = 0;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'k': peer.public_key = optarg; break;
		case 'e': peer.endpoint = optarg; break;
		case 'a':
			/* repeatable, and comma-separated as wg's allowed-ips */
			for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ",")) {
				nets = realloc(nets, (n + 1) * sizeof *nets);
				nets[n++] = tok;
			}
			break;
		case 'j': cli->json = true; break;
		default: free(nets); return peer_usage();
		}
	}
	if (optind + 2 != argc || !peer.public_key || !n) {
		free(nets);
		return peer_usage();
	}
	peer.name = argv[optind + 1];
	peer.allowed_ips = nets;
	peer.n_allowed_ips = n;
	Hutch__V1__AddTunnelPeerRequest req = HUTCH__V1__ADD_TUNNEL_PEER_REQUEST__INIT;
	req.tunnel = argv[optind];
	req.peer = &peer;
	Hutch__V1__Tunnel *t = NULL;
	int r = call(cli, "/hutch.v1.Tunnels/AddPeer", &req.base, &hutch__v1__tunnel__descriptor,
		     (ProtobufCMessage **)&t);
	free(nets);
	if (r)
		return r;
	if (cli->json)
		print_json(&t->base);
	else
		printf("peer %s added to %s; `hutch tunnel peer config %s %s` prints its side's configuration\n",
		       peer.name, t->name, t->name, peer.name);
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return 0;
}

static int peer_rm(cli_t *cli, int argc, char **argv)
{
	if (argc != 3)
		return peer_usage();
	Hutch__V1__RemoveTunnelPeerRequest req = HUTCH__V1__REMOVE_TUNNEL_PEER_REQUEST__INIT;
	req.tunnel = argv[1];
	req.name = argv[2];
	Hutch__V1__Tunnel *t = NULL;
	int r = call(cli, "/hutch.v1.Tunnels/RemovePeer", &req.base, &hutch__v1__tunnel__descriptor,
		     (ProtobufCMessage **)&t);
	if (r)
		return r;
	protobuf_c_message_free_unpacked(&t->base, NULL);
	return 0;
}

static int peer_config(cli_t *cli, int argc, char **argv)
{
	if (argc != 3)
		return peer_usage();
	Hutch__V1__TunnelPeerConfigRequest req = HUTCH__V1__TUNNEL_PEER_CONFIG_REQUEST__INIT;
	req.tunnel = argv[1];
	req.name = argv[2];
	Hutch__V1__TunnelPeerConfig *out = NULL;
	int r = call(cli, "/hutch.v1.Tunnels/PeerConfig", &req.base,
		     &hutch__v1__tunnel_peer_config__descriptor, (ProtobufCMessage **)&out);
	if (r)
		return r;
	fputs(out->text, stdout);
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

static int tunnel_peer(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return peer_usage();
	const char *sub = argv[1];
	argc--;
	argv++;
	optind = 0;
	if (!strcmp(sub, "add"))
		return peer_add(cli, argc, argv);
	if (!strcmp(sub, "rm") || !strcmp(sub, "remove"))
		return peer_rm(cli, argc, argv);
	if (!strcmp(sub, "config"))
		return peer_config(cli, argc, argv);
	return peer_usage();
}

int cmd_tunnel(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch tunnel create|ls|inspect|rm|peer ...");
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
	if (!strcmp(sub, "peer"))
		return tunnel_peer(cli, argc, argv);
	return cli_usage_error("unknown tunnel command `%s`", sub);
}
