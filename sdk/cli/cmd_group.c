/* hutch group deploy|ls|inspect|scale|logs|rm: scaling groups behind
 * hutchd's router (docs/services.md). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "hutch/v1/scaling_group.pb-c.h"
#include "pb_json.h"

#define SVC "/hutch.v1.ScalingGroups/"

static const char *state_word(Hutch__V1__ReplicaState s)
{
	switch (s) {
	case HUTCH__V1__REPLICA_STATE__REPLICA_STATE_STARTING: return "starting";
	case HUTCH__V1__REPLICA_STATE__REPLICA_STATE_READY: return "ready";
	case HUTCH__V1__REPLICA_STATE__REPLICA_STATE_DRAINING: return "draining";
	default: return "unknown";
	}
}

static int show(const cli_t *cli, const Hutch__V1__ScalingGroup *g)
{
	if (cli->json) {
		pb_json_print(stdout, &g->base, 0);
		printf("\n");
		return 0;
	}
	printf("%s (revision %lld): %u of %zu replicas ready, %u wanted, %u..%u\n  %s\n  %s\n",
	       g->spec->name, (long long)g->revision, g->ready_replicas, g->n_replicas,
	       g->desired_replicas, g->spec->min_replicas, g->spec->max_replicas, g->url,
	       g->host_url);
	for (size_t i = 0; i < g->n_replicas; i++)
		printf("  %-20s %-9s rev %lld, %u in flight\n", g->replicas[i]->sandbox_id,
		       state_word(g->replicas[i]->state), (long long)g->replicas[i]->revision,
		       g->replicas[i]->in_flight);
	return 0;
}

static int call_show(const cli_t *cli, const char *method, const ProtobufCMessage *req)
{
	hutch_client_t *c = cli_connect(cli);
	hutch_err_t err = {0};
	char path[128];
	snprintf(path, sizeof path, SVC "%s", method);
	Hutch__V1__ScalingGroup *g = NULL;
	int r = hutch_call(c, path, req, &hutch__v1__scaling_group__descriptor,
			   (ProtobufCMessage **)&g, &err);
	hutch_client_close(c);
	if (r < 0)
		return cli_fail(&err);
	show(cli, g);
	protobuf_c_message_free_unpacked(&g->base, NULL);
	return 0;
}

static int deploy(cli_t *cli, int argc, char **argv)
{
	static const struct option opts[] = {
		{"image", required_argument, 0, 'i'}, {"port", required_argument, 0, 'p'},
		{"min", required_argument, 0, 'm'},   {"max", required_argument, 0, 'M'},
		{"target", required_argument, 0, 't'}, {"scaledown", required_argument, 0, 's'},
		{"readiness-path", required_argument, 0, 'r'}, {"env", required_argument, 0, 'e'},
		{"cpu", required_argument, 0, 'c'},   {"memory", required_argument, 0, 'y'},
		{"json", no_argument, 0, 'j'},        {0, 0, 0, 0},
	};
	Hutch__V1__SandboxSpec tmpl = HUTCH__V1__SANDBOX_SPEC__INIT;
	Hutch__V1__ScalingGroupSpec spec = HUTCH__V1__SCALING_GROUP_SPEC__INIT;
	spec.template_ = &tmpl;
	spec.port = 8080;
	spec.min_replicas = 1;
	int o;
	int64_t v;
	optind = 1;
	while ((o = getopt_long(argc, argv, "+e:", opts, NULL)) != -1) {
		switch (o) {
		case 'i': tmpl.image = optarg; break;
		case 'p': spec.port = (uint32_t)atoi(optarg); break;
		case 'm': spec.min_replicas = (uint32_t)atoi(optarg); break;
		case 'M': spec.max_replicas = (uint32_t)atoi(optarg); break;
		case 't': spec.target_concurrency = (uint32_t)atoi(optarg); break;
		case 's':
			if (cli_parse_duration_s(optarg, &v) < 0)
				return cli_usage_error("--scaledown %s: a duration (5m, 30s)", optarg);
			spec.scaledown_window_ms = v * 1000;
			break;
		case 'r': spec.readiness_path = optarg; break;
		case 'e':
			if (cli_add_kv(&tmpl.env, &tmpl.n_env, optarg) < 0)
				return cli_usage_error("--env %s: expected K=V", optarg);
			break;
		case 'c':
			if (cli_parse_cpu(optarg, &tmpl.cpu_millis) < 0)
				return cli_usage_error("--cpu %s", optarg);
			break;
		case 'y':
			if (cli_parse_size(optarg, &tmpl.memory_bytes) < 0)
				return cli_usage_error("--memory %s", optarg);
			break;
		case 'j': cli->json = true; break;
		default: return cli_usage_error("group deploy: see hutch group deploy --help");
		}
	}
	if (optind >= argc)
		return cli_usage_error("group deploy: give a NAME");
	spec.name = argv[optind++];
	if (optind < argc && strcmp(argv[optind], "--") == 0)
		optind++;
	tmpl.command = argv + optind;
	tmpl.n_command = (size_t)(argc - optind);
	Hutch__V1__DeployScalingGroupRequest req = HUTCH__V1__DEPLOY_SCALING_GROUP_REQUEST__INIT;
	req.spec = &spec;
	int r = call_show(cli, "Deploy", &req.base);
	for (size_t i = 0; i < tmpl.n_env; i++) {
		free(tmpl.env[i]->key);
		free(tmpl.env[i]->value);
		free(tmpl.env[i]);
	}
	free(tmpl.env);
	return r;
}

static int list(cli_t *cli)
{
	hutch_client_t *c = cli_connect(cli);
	hutch_err_t err = {0};
	Hutch__V1__ListScalingGroupsRequest req = HUTCH__V1__LIST_SCALING_GROUPS_REQUEST__INIT;
	Hutch__V1__ListScalingGroupsResponse *out = NULL;
	int r = hutch_call(c, SVC "List", &req.base, &hutch__v1__list_scaling_groups_response__descriptor,
			   (ProtobufCMessage **)&out, &err);
	hutch_client_close(c);
	if (r < 0)
		return cli_fail(&err);
	if (cli->json) {
		pb_json_print(stdout, &out->base, 0);
		printf("\n");
	} else {
		printf("%-24s %-6s %-9s %s\n", "NAME", "READY", "REVISION", "URL");
		for (size_t i = 0; i < out->n_groups; i++)
			printf("%-24s %u/%-4u %-9lld %s\n", out->groups[i]->spec->name,
			       out->groups[i]->ready_replicas, out->groups[i]->desired_replicas,
			       (long long)out->groups[i]->revision, out->groups[i]->url);
	}
	protobuf_c_message_free_unpacked(&out->base, NULL);
	return 0;
}

/* The group's events as they happen, until it is deleted or ^C. */
static int logs(cli_t *cli, const char *name)
{
	hutch_client_t *c = cli_connect(cli);
	hutch_err_t err = {0};
	hc_call_t *call;
	int r = hc_call_start(hutch_client_channel(c), SVC "Watch", -1, NULL, 0, &call, &err);
	if (r == 0) {
		Hutch__V1__WatchScalingGroupRequest req = HUTCH__V1__WATCH_SCALING_GROUP_REQUEST__INIT;
		req.name = (char *)name;
		if ((r = hc_call_send(call, &req.base, &err)) == 0)
			r = hc_call_close_send(call, &err);
		while (r == 0) {
			ProtobufCMessage *m = NULL;
			int k = hc_call_recv(call, &hutch__v1__scaling_group_event__descriptor, &m, -1,
					     &err);
			if (k <= 0) {
				r = k;
				break;
			}
			printf("%s\n", ((Hutch__V1__ScalingGroupEvent *)m)->message);
			fflush(stdout);
			protobuf_c_message_free_unpacked(m, NULL);
		}
		hc_call_free(call);
	}
	hutch_client_close(c);
	return r < 0 ? cli_fail(&err) : 0;
}

int cmd_group(cli_t *cli, int argc, char **argv)
{
	if (argc < 2)
		return cli_usage_error("usage: hutch group deploy|ls|inspect|scale|logs|rm");
	const char *sub = argv[1];
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--json") == 0 && strcmp(sub, "deploy") != 0)
			cli->json = true;
	if (strcmp(sub, "deploy") == 0)
		return deploy(cli, argc - 1, argv + 1);
	if (strcmp(sub, "ls") == 0 || strcmp(sub, "list") == 0)
		return list(cli);
	if (argc < 3 || argv[2][0] == '-')
		return cli_usage_error("hutch group %s: give a NAME", sub);
	const char *name = argv[2];
	if (strcmp(sub, "inspect") == 0) {
		Hutch__V1__GetScalingGroupRequest req = HUTCH__V1__GET_SCALING_GROUP_REQUEST__INIT;
		req.name = (char *)name;
		return call_show(cli, "Get", &req.base);
	}
	if (strcmp(sub, "scale") == 0) {
		if (argc < 4)
			return cli_usage_error("usage: hutch group scale NAME MIN [MAX]");
		Hutch__V1__ScaleScalingGroupRequest req = HUTCH__V1__SCALE_SCALING_GROUP_REQUEST__INIT;
		req.name = (char *)name;
		req.min_replicas = (uint32_t)atoi(argv[3]);
		req.max_replicas = argc > 4 && argv[4][0] != '-' ? (uint32_t)atoi(argv[4]) : 0;
		return call_show(cli, "Scale", &req.base);
	}
	if (strcmp(sub, "logs") == 0)
		return logs(cli, name);
	if (strcmp(sub, "rm") == 0) {
		hutch_client_t *c = cli_connect(cli);
		hutch_err_t err = {0};
		Hutch__V1__DeleteScalingGroupRequest req = HUTCH__V1__DELETE_SCALING_GROUP_REQUEST__INIT;
		req.name = (char *)name;
		ProtobufCMessage *out = NULL;
		int r = hutch_call(c, SVC "Delete", &req.base,
				   &hutch__v1__delete_scaling_group_response__descriptor, &out, &err);
		hutch_client_close(c);
		if (r < 0)
			return cli_fail(&err);
		protobuf_c_message_free_unpacked(out, NULL);
		printf("%s\n", name);
		return 0;
	}
	return cli_usage_error("hutch group: unknown subcommand `%s`", sub);
}
