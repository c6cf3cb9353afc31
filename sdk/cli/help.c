/* hutch COMMAND [SUBCOMMAND] --help: every command's usage, in one table, so
 * that `--help` (or -h, or `help`) right after the command's words prints it
 * and exits 0 before the command parses anything (or connects). Later
 * arguments are the command's own: `hutch run -- ls --help` runs ls --help. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define SPEC_OPTIONS                                                                     \
	"sandbox options:\n"                                                              \
	"  --image NAME              image name or digest (default: busybox)\n"  \
	"  --name NAME               a name to find the sandbox by\n"                      \
	"  --cpu N                   cores (\"2\", \"0.5\") or millicores (\"250m\")\n"    \
	"  --memory SIZE             memory limit (512Mi, 2Gi)\n"                          \
	"  --disk SIZE               writable layer size limit (1Gi)\n"                    \
	"  --lifetime D              stop the sandbox after D (30m, 1h)\n"                 \
	"  --idle-timeout D          stop it after D idle\n"      \
	"  --pids N                  process limit\n"                                      \
	"  -e, --env K=V             environment variable (repeatable)\n"                  \
	"  --label K=V               label (repeatable)\n"                                 \
	"  -w, --workdir DIR         working directory\n"                                  \
	"  --port PORT               TCP port to publish (repeatable)\n"                   \
	"  --network-policy NAME     network policy (repeatable)\n"                        \
	"  --gpu SPEC                an accelerator: \"1\", \"h100:1\"\n"                             \
	"  --secret NAME             a stored secret's keys as env variables\n"            \
	"  --integration NAME        an [[integration]]'s credentials as env variables\n"  \
	"  --secret-env NAME[:VAR]   this shell's VAR (default NAME) as the secret NAME\n" \
	"  --secret-env-file FILE    KEY=VALUE lines as secret env variables\n"            \
	"  --identity-audience AUD   audience of the sandbox's identity token\n"           \
	"  --tunnel NAME             join the WireGuard tunnel NAME (repeatable)\n"        \
	"  --json                    print the sandbox as JSON\n"

typedef struct cli_help {
	const char *words; /* "secret set", "run" */
	const char *text;
} cli_help_t;

static const cli_help_t helps[] = {
	{"status", "usage: hutch status [--json]\n\nThe daemon's version, plugins and state dir.\n"},
	{"run",
	 "usage: hutch run [OPTIONS] -- CMD [ARG...]\n\n"
	 "Runs CMD in a new sandbox with the terminal attached, then stops the sandbox;\n"
	 "exits with CMD's status (128+N if killed by signal N).\n\n"
	 "  -i, --interactive         pass stdin to CMD\n"
	 "  -t, --tty                 give CMD a terminal\n"
	 "  -u, --user USER           run CMD as USER\n"
	 "  --timeout D               kill CMD after D (30s)\n"
	 "  --keep                    leave the sandbox running afterwards\n" SPEC_OPTIONS},
	{"exec",
	 "usage: hutch exec [OPTIONS] ID -- CMD [ARG...]\n\n"
	 "Runs CMD in the running sandbox ID with the terminal attached; exits with\n"
	 "CMD's status (128+N if killed by signal N).\n\n"
	 "  -i, --interactive         pass stdin to CMD\n"
	 "  -t, --tty                 give CMD a terminal\n"
	 "  -e, --env K=V             environment variable (repeatable)\n"
	 "  -w, --workdir DIR         working directory\n"
	 "  -u, --user USER           run CMD as USER\n"
	 "  --timeout D               kill CMD after D (30s)\n"},
	{"cp",
	 "usage: hutch cp SRC DST\n\n"
	 "Copies a file or a tree into or out of a sandbox: exactly one of SRC and DST\n"
	 "is ID:/path, a path in sandbox ID.\n"},
	{"sandbox",
	 "usage: hutch sandbox COMMAND ...\n\n"
	 "  create [OPTIONS] [-- CMD...]   start a sandbox; prints its id\n"
	 "  ls [-a] [--json]               running sandboxes (-a: stopped ones too)\n"
	 "  inspect ID...                  sandboxes, as JSON\n"
	 "  stop [--grace D] ID...         stop sandboxes (SIGTERM, SIGKILL after D)\n"
	 "  rm ID...                       forget stopped sandboxes\n"
	 "  update-policy ID (--network-policy NAME... | --default)\n"
	 "                                 change a running sandbox's network policies\n\n"
	 "hutch sandbox COMMAND --help shows one command's options.\n"},
	{"sandbox create", "usage: hutch sandbox create [OPTIONS] [-- CMD [ARG...]]\n\n"
			   "Starts a sandbox (running CMD, or the image's command) and prints its id.\n\n"
			   SPEC_OPTIONS},
	{"sandbox ls", "usage: hutch sandbox ls [-a|--all] [--json]\n\n"
		       "Running sandboxes; with --all, stopped ones too.\n"},
	{"sandbox inspect", "usage: hutch sandbox inspect ID...\n\nSandboxes, as JSON.\n"},
	{"sandbox stop", "usage: hutch sandbox stop [--grace D] ID...\n\n"
			 "Stops sandboxes: SIGTERM, then SIGKILL after the grace period.\n"},
	{"sandbox rm", "usage: hutch sandbox rm ID...\n\nForgets stopped sandboxes.\n"},
	{"sandbox update-policy",
	 "usage: hutch sandbox update-policy ID (--network-policy NAME... | --default)\n\n"
	 "Replaces a running sandbox's network policies (--default: the daemon's).\n"},
	{"policy",
	 "usage: hutch policy COMMAND ...\n\n"
	 "  create NAME [OPTIONS]   create a network policy\n"
	 "  ls [--json]             network policies\n"
	 "  inspect NAME            one policy\n"
	 "  rm NAME...              delete policies\n\n"
	 "hutch policy create --help shows its options.\n"},
	{"tunnel",
	 "usage: hutch tunnel create|ls|inspect|rm ...\n\n"
	 "WireGuard meshes between your sandboxes (net-wireguard). A sandbox joins one with\n"
	 "`--tunnel NAME` at create; one named there that does not exist is made, and goes\n"
	 "with its last member.\n\n"
	 "  tunnel create NAME [--subnet CIDR]   a tunnel that stays without members\n"
	 "  tunnel ls                            your tunnels\n"
	 "  tunnel inspect NAME                  its members: address, interface, handshake, key\n"
	 "  tunnel rm NAME                       delete it (refused while it has members or peers)\n"
	 "  tunnel peer add NAME PEER --public-key K --allowed-ips CIDR [--endpoint IP:PORT]\n"
	 "                                       an external WireGuard peer, through the tunnel's gateway\n"
	 "  tunnel peer rm NAME PEER             remove it\n"
	 "  tunnel peer config NAME PEER         a wg-quick file for the peer's side\n"},
	{"policy create",
	 "usage: hutch policy create NAME [OPTIONS]\n\n"
	 "  --allow-all             allow every destination not denied\n"
	 "  --allow-host H          allow host name H (repeatable; *.example.com too)\n"
	 "  --allow-cidr C          allow addresses in C (repeatable)\n"
	 "  --deny-host H           deny host name H (repeatable)\n"
	 "  --deny-cidr C           deny addresses in C (repeatable)\n"
	 "  --description D         a description\n"
	 "  --replace               replace a policy of that name\n"
	 "  --json                  print the policy as JSON\n"},
	{"policy ls", "usage: hutch policy ls [--json]\n\nNetwork policies.\n"},
	{"policy inspect", "usage: hutch policy inspect NAME\n\nOne network policy (--json before the command: as JSON).\n"},
	{"policy rm", "usage: hutch policy rm NAME...\n\nDeletes network policies.\n"},
	{"secret",
	 "usage: hutch secret COMMAND ...\n\n"
	 "  set NAME [KEY]... [OPTIONS]   store a secret (values from stdin, env or a file)\n"
	 "  ls [--json]                   secrets (names and keys, never values)\n"
	 "  inspect NAME                  one secret's keys\n"
	 "  rm NAME...                    delete secrets\n"
	 "  integrations                  the daemon's [[integration]] entries\n\n"
	 "hutch secret set --help shows its options.\n"},
	{"secret set",
	 "usage: hutch secret set NAME [KEY]... [--from-env VAR]... [--from-env-file FILE] [--replace]\n\n"
	 "Stores the secret NAME. Each KEY's value is read from stdin, one line each;\n"
	 "values are never taken from the command line, where others could see them.\n\n"
	 "  --from-env VAR          the value of this shell's VAR, as key VAR (repeatable)\n"
	 "  --from-env-file FILE    KEY=VALUE lines\n"
	 "  --replace               replace a secret of that name\n"},
	{"secret ls", "usage: hutch secret ls [--json]\n\nSecrets: names and keys, never values.\n"},
	{"secret inspect", "usage: hutch secret inspect NAME\n\nOne secret's keys (not its values).\n"},
	{"secret rm", "usage: hutch secret rm NAME...\n\nDeletes secrets.\n"},
	{"secret integrations",
	 "usage: hutch secret integrations\n\n"
	 "The [[integration]] entries of the daemon's config (docs/config.md), which\n"
	 "sandboxes name with --integration.\n"},
	{"identity",
	 "usage: hutch identity COMMAND ...\n\n"
	 "  verify [--audience AUD] [--json] TOKEN|-   check a workload token (- reads stdin)\n"
	 "  rotate                                    rotate the signing key\n"},
	{"identity verify",
	 "usage: hutch identity verify [--audience AUD] [--json] TOKEN|-\n\n"
	 "Checks a sandbox's workload token with hutchd and prints its claims;\n"
	 "- reads the token from stdin.\n"},
	{"identity rotate",
	 "usage: hutch identity rotate\n\n"
	 "Rotates the identity signing key; tokens signed with the old key stay valid\n"
	 "until they expire.\n"},
	{"group",
	 "usage: hutch group deploy|ls|inspect|scale|logs|rm\n\n"
	 "Scaling groups: replicated HTTP services behind hutchd's router.\n\n"
	 "  group deploy [OPTIONS] NAME [-- CMD [ARG...]]   create, or roll out a changed spec\n"
	 "      --image NAME  --port PORT (8080)  --min N (1)  --max N  --target N\n"
	 "      --scaledown D  --readiness-path /P  -e K=V  --cpu N  --memory SIZE\n"
	 "  group ls                      groups, ready replicas and URLs\n"
	 "  group inspect NAME            spec, replicas and URLs\n"
	 "  group scale NAME MIN [MAX]    new bounds\n"
	 "  group logs NAME               the group's events as they happen\n"
	 "  group rm NAME                 stop every replica and forget the group\n"
	 "  --json                        print as JSON\n"},
	{"image",
	 "usage: hutch image COMMAND ...\n\n"
	 "  build FILE.toml [OPTIONS]     build an image (docs/images.md)\n"
	 "  ls                            images\n"
	 "  inspect [--verify] NAME       one image\n"
	 "  rm NAME...                    delete images\n"
	 "  gc                            remove layers no image uses\n"
	 "  export NAME (--output FILE.tar | --layout DIR)\n"
	 "  import (FILE.tar | DIR) --name NAME [--ref REF]\n\n"
	 "hutch image COMMAND --help shows one command's options.\n"},
	{"image build",
	 "usage: hutch image build FILE.toml [--name NAME] [--no-cache] [--quiet] [--progress auto|plain|tty]\n\n"
	 "Builds the image FILE.toml describes (docs/images.md).\n\n"
	 "  -n, --name NAME         the image's name (default: `name` in the file)\n"
	 "  --no-cache              rebuild every step\n"
	 "  -q, --quiet             print only the result\n"
	 "  --progress MODE         auto, plain or tty\n"},
	{"image ls", "usage: hutch image ls\n\nImages.\n"},
	{"image inspect", "usage: hutch image inspect [--verify] NAME\n\n"
			  "One image; --verify checks its layers' digests.\n"},
	{"image rm", "usage: hutch image rm NAME...\n\nDeletes images.\n"},
	{"image gc", "usage: hutch image gc\n\nRemoves layers that no image uses.\n"},
	{"image export", "usage: hutch image export NAME (--output FILE.tar | --layout DIR)\n\n"
			 "Writes an image as an OCI archive or an OCI layout directory.\n"},
	{"image import", "usage: hutch image import (FILE.tar | LAYOUT_DIR) --name NAME [--ref REF]\n\n"
			 "Imports an OCI archive or layout as image NAME (REF picks one of several).\n"},
};

static bool is_help(const char *arg)
{
	return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

static const char *help_find(const char *cmd, const char *sub)
{
	char words[64];
	if (sub)
		snprintf(words, sizeof words, "%s %s", cmd, sub);
	else
		snprintf(words, sizeof words, "%s", cmd);
	for (size_t i = 0; i < sizeof helps / sizeof helps[0]; i++)
		if (strcmp(helps[i].words, words) == 0)
			return helps[i].text;
	return NULL;
}

bool cli_help(int argc, char **argv)
{
	/* argv[0] is the command: "cmd --help", or "cmd sub --help". */
	if (argc >= 2 && is_help(argv[1])) {
		const char *text = help_find(argv[0], NULL);
		if (text) {
			fputs(text, stdout);
			return true;
		}
	}
	if (argc >= 3 && is_help(argv[2])) {
		const char *sub = strcmp(argv[1], "list") == 0	   ? "ls"
				  : strcmp(argv[1], "delete") == 0 ? "rm"
								   : argv[1];
		const char *text = help_find(argv[0], sub);
		if (text) {
			fputs(text, stdout);
			return true;
		}
	}
	return false;
}
