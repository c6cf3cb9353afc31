/* Calls itself one thing, is installed as another. */
#include <hutch/plugin.h>

static int nop(void) { return 0; }
static int init(const hutch_host_t *h, const void *c, void **i, hutch_err_t *e)
{
	(void)h, (void)c, (void)i, (void)e;
	return 0;
}
static const hutch_network_ops_t ops = {
	.size = sizeof ops, .attach = (void *)nop, .detach = (void *)nop,
};
static const hutch_plugin_t desc = {
	.size = sizeof desc, .abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR, .kind = HUTCH_PLUGIN_NETWORK,
	.name = "something-else", .version = "1", .init = init, .ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
