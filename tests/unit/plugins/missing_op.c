/* A runtime plugin without the required exec_command op. */
#include <hutch/plugin.h>

static int nop(void) { return 0; }
static int init(const hutch_host_t *h, const void *c, void **i, hutch_err_t *e)
{
	(void)h, (void)c, (void)i, (void)e;
	return 0;
}
static const hutch_runtime_ops_t ops = {
	.size = sizeof ops,
	.sandbox_create = (void *)nop,
	.sandbox_stop = (void *)nop,
	.sandbox_destroy = (void *)nop,
	.sandbox_status = (void *)nop,
	.sandbox_list = (void *)nop,
};
static const hutch_plugin_t desc = {
	.size = sizeof desc, .abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR, .kind = HUTCH_PLUGIN_RUNTIME,
	.name = "missing-op", .version = "1", .init = init, .ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
