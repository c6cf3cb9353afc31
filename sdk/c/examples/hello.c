/*
 * hello.c: the C client library's first example. Creates a sandbox, runs a
 * command in it to completion, prints what it wrote, and removes the
 * sandbox again.
 *
 *   hello [COMMAND ARGS...]      (default: uname -a)
 *
 * Connects to $HUTCH_ADDRESS / $HUTCH_SOCKET (or /run/hutch/hutchd.sock).
 * Exits with the command's exit status.
 */
#include <stdio.h>
#include <stdlib.h>

#include "hutch_client.h"

static int fail(const char *what, hutch_err_t *err)
{
	fprintf(stderr, "hello: %s: %s\n", what, err->message);
	hutch_err_clear(err);
	return 1;
}

int main(int argc, char **argv)
{
	hutch_err_t err = {0};
	hutch_client_t *c;
	if (hutch_client_open(NULL, &c, &err) < 0)
		return fail("connect", &err);

	/* What the sandbox is: every field of SandboxSpec is optional. */
	Hutch__V1__SandboxSpec spec = HUTCH__V1__SANDBOX_SPEC__INIT;
	spec.image = "busybox";
	spec.name = "c-sdk-hello";
	spec.memory_bytes = 256ll << 20;
	spec.lifetime_seconds = 300;
	Hutch__V1__Sandbox *sb;
	if (hutch_sandbox_create(c, &spec, &sb, &err) < 0) {
		hutch_client_close(c);
		return fail("create", &err);
	}
	printf("sandbox %s is running\n", sb->id);

	static const char *const dflt[] = {"uname", "-a", NULL};
	const char *const *cmd = argc > 1 ? (const char *const *)argv + 1 : dflt;
	Hutch__V1__RunResponse *res;
	int rc;
	if (hutch_sandbox_run_argv(c, sb->id, cmd, &res, &err) < 0) {
		rc = fail("run", &err);
	} else {
		fputs(res->stdout_text, stdout);
		fputs(res->stderr_text, stderr);
		printf("exit code %d\n", res->exit_code);
		rc = res->signal ? 128 + res->signal : res->exit_code;
		protobuf_c_message_free_unpacked(&res->base, NULL);
	}

	/* Stop and remove it (a sandbox also ends at its lifetime). */
	if (hutch_sandbox_stop(c, sb->id, 0, NULL, &err) < 0 ||
	    hutch_sandbox_delete(c, sb->id, &err) < 0)
		rc = fail("stop", &err);
	protobuf_c_message_free_unpacked(&sb->base, NULL);
	hutch_client_close(c);
	return rc;
}
