/* A network plugin whose ops struct claims to be smaller than the required
 * ops reach: an old or broken build. The core must not read past it. */
#include <hutch/plugin.h>

static int attach(void *i, const hutch_net_attach_t *r, hutch_net_attachment_t *o,
		  hutch_err_t *e)
{
	(void)i, (void)r, (void)o, (void)e;
	return 0;
}
static int init(const hutch_host_t *h, const void *c, void **i, hutch_err_t *e)
{
	(void)h, (void)c, (void)i, (void)e;
	return 0;
}
static const hutch_network_ops_t ops = {
	/* Covers `attach` only; `detach` (required) lies beyond. */
	.size = offsetof(hutch_network_ops_t, detach),
	.attach = attach,
};
static const hutch_plugin_t desc = {
	.size = sizeof desc, .abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR, .kind = HUTCH_PLUGIN_NETWORK,
	.name = "small-ops", .version = "1", .init = init, .ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
