/* An accelerator plugin that claims one device: hutchd loads it like a real
 * one, so a test can check that a `gpu` request is still refused while the
 * core does not drive the accelerator ops (a sandbox would run without the
 * device). allocate answers, so a core that called it would not fail. */
#include <string.h>

#include <hutch/plugin.h>

static int init(const hutch_host_t *h, const void *c, void **i, hutch_err_t *e)
{
	(void)h, (void)c, (void)e;
	*i = NULL;
	return 0;
}

static int inventory(void *i, hutch_accel_device_cb cb, void *data, hutch_err_t *e)
{
	(void)i, (void)cb, (void)data, (void)e;
	return 0;
}

static int allocate(void *i, const char *id, const char *request, hutch_accel_grant_t *g,
		    hutch_err_t *e)
{
	(void)i, (void)id, (void)request, (void)g, (void)e;
	return 0;
}

static int release(void *i, const char *id, hutch_err_t *e)
{
	(void)i, (void)id, (void)e;
	return 0;
}

static const hutch_accelerator_ops_t ops = {
	.size = sizeof ops,
	.inventory = inventory,
	.allocate = allocate,
	.release = release,
};
static const hutch_plugin_t desc = {
	.size = sizeof desc, .abi_major = HUTCH_PLUGIN_ABI_MAJOR,
	.abi_minor = HUTCH_PLUGIN_ABI_MINOR, .kind = HUTCH_PLUGIN_ACCELERATOR,
	.name = "fake-accelerator", .version = "1", .init = init, .ops = &ops,
};
HUTCH_PLUGIN_DEFINE(desc)
