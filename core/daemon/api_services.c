/* Every gRPC service hutchd serves, in one list (see api.h). */
#include "api.h"

typedef int (*api_register_fn)(daemon_t *d, hutch_err_t *err);

static const api_register_fn services[] = {
	api_daemon_register,
	api_sandbox_register,
	api_exec_register,
	api_files_register,
	api_policy_register,
	api_secret_register,
	api_identity_register,
	api_image_register,
	api_scaling_group_register,
	api_tunnel_register,
	api_meta_register, /* last: health and reflection name the services above */
};

int api_services_register(daemon_t *d, hutch_err_t *err)
{
	for (size_t i = 0; i < sizeof services / sizeof services[0]; i++) {
		int r = services[i](d, err);
		if (r < 0)
			return r;
	}
	return 0;
}
