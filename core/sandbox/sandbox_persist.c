/* Records: a sandbox as stored at each transition (through the service
 * layer's codec) and read back at startup. */
#include "sandbox_priv.h"

#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "log.h"
#include "strbuf.h"

void sandbox_view(const sandbox_t *sb, sandbox_record_t *out)
{
	plugin_t *rt = sb->m->d.plugins->runtime;
	*out = (sandbox_record_t){
		.id = (char *)sb->id,
		.name = sb->name,
		.tenant = sb->tenant,
		.state = sb->state,
		.reason = sb->reason,
		.spec = sb->spec,
		.created_ms = sb->created_ms,
		.started_ms = sb->started_ms,
		.stopped_ms = sb->stopped_ms,
		.expires_ms = sb->expires_ms,
		.runtime = rt ? rt->name : (char *)"",
		.image_digest = (char *)sb->image.digest,
		.oom_killed = sb->oom_killed,
		.addresses = sb->addresses,
		.port_addrs = sb->port_addrs,
	};
}

void sandbox_persist(sandbox_t *sb)
{
	if (sb->forgotten)
		return;
	sandbox_record_t rec;
	sandbox_view(sb, &rec);
	_cleanup_free_ uint8_t *buf = NULL;
	size_t n = 0;
	hutch_err_t err = {0};
	if (sb->m->d.codec->encode(&rec, &buf, &n, &err) < 0 ||
	    store_put(sb->m->d.store, KIND, sb->tenant, sb->id, sb->name, buf, n, &err) < 0)
		log_error("sandbox %s: %s", sb->id, err.message);
}

int sandbox_record_load(void *ud, const store_obj_t *o)
{
	sandbox_mgr_t *m = ud;
	sandbox_record_t rec;
	hutch_err_t derr = {0};
	if (m->d.codec->decode((const uint8_t *)o->data, o->len, &rec, &derr) < 0) {
		log_error("sandbox record %s is unreadable (%s); ignoring it", o->id, derr.message);
		return 0;
	}
	sandbox_t *sb = xcalloc(1, sizeof *sb);
	sb->m = m;
	sb->refs = 1;
	snprintf(sb->id, sizeof sb->id, "%s", rec.id);
	sb->tenant = steal_ptr(&rec.tenant);
	sb->name = rec.name && *rec.name ? steal_ptr(&rec.name) : NULL;
	sb->state = rec.state;
	sb->reason = rec.reason && *rec.reason ? steal_ptr(&rec.reason) : NULL;
	sb->created_ms = rec.created_ms;
	sb->started_ms = rec.started_ms;
	sb->stopped_ms = rec.stopped_ms;
	sb->expires_ms = rec.expires_ms;
	sb->oom_killed = rec.oom_killed;
	snprintf(sb->image.digest, sizeof sb->image.digest, "%s",
		 rec.image_digest ? rec.image_digest : "");
	sb->spec = rec.spec ? steal_ptr(&rec.spec) : xcalloc(1, sizeof *sb->spec);
	sb->addresses = steal_ptr(&rec.addresses);
	sandbox_record_release(&rec);
	char **secret_env = NULL;
	hutch_err_t serr = {0};
	if (sandbox_state_live(sb->state) &&
	    m->d.secrets.load(m->d.secrets.data, sb->id, &secret_env, &serr) < 0)
		log_error("sandbox %s: its secrets cannot be restored: %s", sb->id, serr.message);
	sb->has_secrets = secret_env != NULL;
	sb->env = sandbox_env_build(sb->spec, sb->id, secret_env, m->d.plugins->identity != NULL);
	if (m->d.plugins->identity && sandbox_state_live(sb->state)) {
		/* Its token file is renewed at once: hutchd may have been down
		 * past its renewal time. */
		sb->identity_dir = xasprintf("%s/%s/identity", m->run_root, sb->id);
		sb->identity_expires = 1;
		sb->identity_renew_ms = 0;
	}
	sandbox_env_free(secret_env);
	sb->run_dir = xasprintf("%s/%s", m->run_root, sb->id);
	sb->next = m->list;
	m->list = sb;
	return 0;
}
