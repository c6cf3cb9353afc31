/* hutch policy create|ls|inspect|rm, and hutch sandbox update-policy. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hutch/v1/policy.pb-c.h"
#include "pb_json.h"

static void push(char ***v, size_t *n, const char *s)
{
	*v = realloc(*v, (*n + 1) * sizeof **v);
	(*v)[(*n)++] = (char *)s;
}

static int policy_create(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"allow-all", no_argument, NULL, 'A'},
		{"allow-host", required_argument, NULL, 'h'},
		{"allow-cidr", required_argument, NULL, 'c'},
		{"deny-host", required_argument, NULL, 'H'},
		{"deny-cidr", required_argument, NULL, 'C'},
		{"description", required_argument, NULL, 'd'},
		{"replace", no_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{0},
	};
	Hutch__V1__NetworkPolicy p = HUTCH__V1__NETWORK_POLICY__INIT;
	bool replace = false;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'A': p.allow_all = true; break;
		case 'h': push(&p.allowed_hostnames, &p.n_allowed_hostnames, optarg); break;
		case 'c': push(&p.allowed_cidrs, &p.n_allowed_cidrs, optarg); break;
		case 'H': push(&p.denied_hostnames, &p.n_denied_hostnames, optarg); break;
		case 'C': push(&p.denied_cidrs, &p.n_denied_cidrs, optarg); break;
		case 'd': p.description = optarg; break;
		case 'r': replace = true; break;
		case 'j': cli->json = true; break;
		default:
			return cli_usage_error("usage: hutch policy create NAME [--allow-all] [--allow-host H]... "
					       "[--allow-cidr C]... [--deny-host H]... [--deny-cidr C]... "
					       "[--description D] [--replace]");
		}
	}
	if (optind + 1 != argc)
		return cli_usage_error("usage: hutch policy create NAME [options]");
	p.name = argv[optind];
	Hutch__V1__CreateNetworkPolicyRequest req = HUTCH__V1__CREATE_NETWORK_POLICY_REQUEST__INIT;
	req.policy = &p;
	req.replace = replace;
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__NetworkPolicy *out = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.NetworkPolicies/Create", &req.base,
			   &hutch__v1__network_policy__descriptor, (ProtobufCMessage **)&out, &err);
	hutch_client_close(client);
	free(p.allowed_hostnames);
	free(p.allowed_cidrs);
	free(p.denied_hostnames);
	free(p.denied_cidrs);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &out->base, 0);
		printf("\n");
	} else {
		printf("%s\n", out->name);
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

static void print_list(const char *label, char **v, size_t n)
{
	if (!n)
		return;
	printf("%-18s", label);
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? ", " : "", v[i]);
	printf("\n");
}

static int policy_ls(cli_t *cli, int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--json") == 0)
		cli->json = true;
	Hutch__V1__ListNetworkPoliciesRequest req = HUTCH__V1__LIST_NETWORK_POLICIES_REQUEST__INIT;
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__ListNetworkPoliciesResponse *out = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.NetworkPolicies/List", &req.base,
			   &hutch__v1__list_network_policies_response__descriptor,
			   (ProtobufCMessage **)&out, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &out->base, 0);
		printf("\n");
	} else {
		printf("%-24s %-9s %-6s %-6s %-8s %s\n", "NAME", "ALLOW-ALL", "ALLOW", "DENY", "BOUND",
		       "DESCRIPTION");
		for (size_t i = 0; i < out->n_policies; i++) {
			Hutch__V1__NetworkPolicy *p = out->policies[i];
			printf("%-24s %-9s %-6zu %-6zu %-8zu %s\n", p->name, p->allow_all ? "yes" : "no",
			       p->n_allowed_hostnames + p->n_allowed_cidrs,
			       p->n_denied_hostnames + p->n_denied_cidrs, p->n_bound_sandboxes,
			       p->description ? p->description : "");
		}
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

static int policy_inspect(cli_t *cli, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage_error("usage: hutch policy inspect NAME");
	Hutch__V1__GetNetworkPolicyRequest req = HUTCH__V1__GET_NETWORK_POLICY_REQUEST__INIT;
	req.name = argv[1];
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__NetworkPolicy *p = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.NetworkPolicies/Get", &req.base,
			   &hutch__v1__network_policy__descriptor, (ProtobufCMessage **)&p, &err);
	hutch_client_close(client);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &p->base, 0);
		printf("\n");
	} else {
		printf("%-18s%s\n", "name:", p->name);
		if (p->description && *p->description)
			printf("%-18s%s\n", "description:", p->description);
		printf("%-18s%s\n", "allow all:", p->allow_all ? "yes" : "no");
		print_list("allowed hosts:", p->allowed_hostnames, p->n_allowed_hostnames);
		print_list("allowed cidrs:", p->allowed_cidrs, p->n_allowed_cidrs);
		print_list("denied hosts:", p->denied_hostnames, p->n_denied_hostnames);
		print_list("denied cidrs:", p->denied_cidrs, p->n_denied_cidrs);
		print_list("bound to:", p->bound_sandboxes, p->n_bound_sandboxes);
	}
	protobuf_c_message_free_unpacked(&p->base, NULL);
	return 0;
}

static int policy_rm(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch policy rm NAME...");
	hutch_client_t *client = cli_connect(cli);
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		Hutch__V1__DeleteNetworkPolicyRequest req = HUTCH__V1__DELETE_NETWORK_POLICY_REQUEST__INIT;
		req.name = argv[i];
		ProtobufCMessage *out = NULL;
		hutch_err_t err = {0};
		if (hutch_call(client, "/hutch.v1.NetworkPolicies/Delete", &req.base,
			       &hutch__v1__delete_network_policy_response__descriptor, &out, &err) < 0)
			rc = cli_fail(&err);
		else
			printf("%s\n", argv[i]);
		if (out)
			protobuf_c_message_free_unpacked(out, NULL);
	}
	hutch_client_close(client);
	return rc;
}

int cmd_policy(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch policy create|ls|inspect|rm ...");
	const char *sub = argv[1];
	argc--;
	argv++;
	optind = 0; /* 0: glibc re-reads the option string (ordering included) */
	if (!strcmp(sub, "create"))
		return policy_create(cli, argc, argv);
	if (!strcmp(sub, "ls") || !strcmp(sub, "list"))
		return policy_ls(cli, argc, argv);
	if (!strcmp(sub, "inspect"))
		return policy_inspect(cli, argc, argv);
	if (!strcmp(sub, "rm") || !strcmp(sub, "delete"))
		return policy_rm(cli, argc, argv);
	return cli_usage_error("unknown policy command `%s`", sub);
}

/* hutch sandbox update-policy ID [--network-policy NAME]... | --default */
int cmd_sandbox_update_policy(cli_t *cli, int argc, char **argv)
{
	static const struct option longopts[] = {
		{"network-policy", required_argument, NULL, 'p'},
		{"default", no_argument, NULL, 'D'},
		{0},
	};
	Hutch__V1__UpdateSandboxPoliciesRequest req = HUTCH__V1__UPDATE_SANDBOX_POLICIES_REQUEST__INIT;
	int c;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == 'p')
			push(&req.network_policies, &req.n_network_policies, optarg);
		else if (c == 'D')
			req.default_policy = true;
		else
			return cli_usage_error("usage: hutch sandbox update-policy ID (--network-policy NAME... | --default)");
	}
	if (optind + 1 != argc || (!req.n_network_policies && !req.default_policy) ||
	    (req.n_network_policies && req.default_policy))
		return cli_usage_error("usage: hutch sandbox update-policy ID (--network-policy NAME... | --default)");
	req.id = argv[optind];
	hutch_client_t *client = cli_connect(cli);
	Hutch__V1__Sandbox *sb = NULL;
	hutch_err_t err = {0};
	int r = hutch_call(client, "/hutch.v1.Sandboxes/UpdatePolicies", &req.base,
			   &hutch__v1__sandbox__descriptor, (ProtobufCMessage **)&sb, &err);
	hutch_client_close(client);
	free(req.network_policies);
	if (r < 0)
		return cli_fail(&err);
	printf("%s\n", sb->id);
	protobuf_c_message_free_unpacked(&sb->base, NULL);
	return 0;
}
