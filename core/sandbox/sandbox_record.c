#include "sandbox_record.h"

#include <stdlib.h>

#include "strbuf.h"

bool sandbox_state_live(sandbox_state_t s)
{
	return s == SANDBOX_CREATING || s == SANDBOX_RUNNING || s == SANDBOX_STOPPING;
}

const char *sandbox_state_word(sandbox_state_t s)
{
	switch (s) {
	case SANDBOX_CREATING: return "creating";
	case SANDBOX_RUNNING: return "running";
	case SANDBOX_STOPPING: return "stopping";
	case SANDBOX_STOPPED: return "stopped";
	case SANDBOX_EXPIRED: return "expired";
	case SANDBOX_FAILED: return "failed";
	default: return "unknown";
	}
}

void sandbox_record_release(sandbox_record_t *r)
{
	free(r->id);
	free(r->name);
	free(r->tenant);
	free(r->reason);
	sandbox_spec_free(r->spec);
	free(r->runtime);
	free(r->image_digest);
	strv_free(r->addresses);
	strv_free(r->port_addrs);
	*r = (sandbox_record_t){0};
}
