/* A plugin built for a future ABI major but exported under the v1 name. */
#include <hutch/plugin.h>

static const hutch_runtime_ops_t ops = {.size = sizeof ops};
static int init(const hutch_host_t *h, const void *c, void **i, hutch_err_t *e)
{
	(void)h, (void)c, (void)i, (void)e;
	return 0;
}
static const hutch_plugin_t desc = {
	.size = sizeof desc, .abi_major = 2, .abi_minor = 0,
	.kind = HUTCH_PLUGIN_RUNTIME, .name = "bad-abi", .version = "1",
	.init = init, .ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
