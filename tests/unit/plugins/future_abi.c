/* A plugin that only speaks ABI 2: it exports hutch_plugin_v2, not v1. */
#include <hutch/plugin.h>

HUTCH_EXPORT const void *hutch_plugin_v2(void);
HUTCH_EXPORT const void *hutch_plugin_v2(void)
{
	return "v2";
}
