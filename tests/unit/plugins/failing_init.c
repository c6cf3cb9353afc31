/* Refuses to start, with a reason. */
#include <hutch/plugin.h>

static int nop(void) { return 0; }
static int init(const hutch_host_t *h, const void *c, void **i, hutch_err_t *e)
{
	(void)c, (void)i;
	h->log(h, HUTCH_LOG_INFO, "about to fail");
	return hutch_err_set(e, ENODEV, "no such widget on this host");
}
static const hutch_network_ops_t ops = {
	.size = sizeof ops, .attach = (void *)nop, .detach = (void *)nop,
};
static const hutch_plugin_t desc = {
	.size = sizeof desc, .abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR, .kind = HUTCH_PLUGIN_NETWORK,
	.name = "failing-init", .version = "1", .init = init, .ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
