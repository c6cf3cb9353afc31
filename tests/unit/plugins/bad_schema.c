/* A plugin whose config table points outside its config struct. */
#include <hutch/plugin.h>

typedef struct cfg { int64_t a; } cfg_t;
static const hutch_config_field_t fields[] = {
	{HUTCH_CONFIG_INT, "a", "1", offsetof(cfg_t, a), "fine", 0, NULL},
	{HUTCH_CONFIG_STRING, "b", NULL, 64, "outside", 0, NULL},
	{0},
};
static int attach(void) { return 0; }
static int init(const hutch_host_t *h, const void *c, void **i, hutch_err_t *e)
{
	(void)h, (void)c, (void)i, (void)e;
	return 0;
}
static const hutch_network_ops_t ops = {
	.size = sizeof ops, .attach = (void *)attach, .detach = (void *)attach,
};
static const hutch_plugin_t desc = {
	.size = sizeof desc, .abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR, .kind = HUTCH_PLUGIN_NETWORK,
	.name = "bad-schema", .version = "1", .config = fields,
	.config_size = sizeof(cfg_t), .init = init, .ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
