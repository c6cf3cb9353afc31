/*
 * state.c: what the plugin needs to take its tunnels back after hutchd
 * restarts while sandboxes keep running: one file per attached sandbox
 * (<run_dir>/sandboxes/<id>: tenant, namespace) and one per member
 * (<run_dir>/members/<id>@<tunnel>: tunnel, subnet, address, device and
 * process, public key). Never a private key: those live in the
 * wireguard-go processes only, which outlive hutchd and are adopted again.
 *
 * At start every member whose process still runs is taken back, and each
 * one's peers are brought in line with the members that remain (peers are
 * added or updated in place, so live sessions are not reset; peers of
 * members that are gone are removed).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"
#include "wg.h"

static char *member_path(const wg_instance_t *in, const wg_member_t *m)
{
	return xasprintf("%s/members/%s@%s", in->state_dir, m->sandbox->id, m->tunnel->name);
}

static char *sandbox_path(const wg_instance_t *in, const char *id)
{
	return xasprintf("%s/sandboxes/%s", in->state_dir, id);
}

static int file_write(const char *path, const char *text, hutch_err_t *err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tmp);
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return hutch_err_sys(err, e, "write %s", path);
	}
	return 0;
}

int wg_state_sandbox_save(wg_instance_t *in, const wg_sandbox_t *sb, hutch_err_t *err)
{
	_cleanup_free_ char *path = sandbox_path(in, sb->id);
	_cleanup_free_ char *text =
		xasprintf("tenant=%s\nnetns=%s\nname=%s\n", sb->tenant, sb->netns_path, sb->name);
	return file_write(path, text, err);
}

void wg_state_sandbox_remove(wg_instance_t *in, const char *id)
{
	_cleanup_free_ char *path = sandbox_path(in, id);
	unlink(path);
}

int wg_state_save(wg_instance_t *in, const wg_member_t *m, hutch_err_t *err)
{
	char hex[2 * WG_KEY_LEN + 1];
	wg_key_hex(&m->pub, hex);
	_cleanup_free_ char *path = member_path(in, m);
	_cleanup_free_ char *text = xasprintf(
		"tenant=%s\ntunnel=%s\nsubnet=%" PRIu32 "\nsandbox=%s\nifname=%s\nhost=%" PRIu32
		"\ndevice=%s\npid=%d\nport=%u\npublic_key=%s\njoined=%" PRId64 "\n",
		m->tunnel->tenant, m->tunnel->name, m->tunnel->index, m->sandbox->id, m->ifname,
		m->host, m->proc.host_name, (int)m->proc.pid, m->proc.port, hex, m->joined_unix);
	return file_write(path, text, err);
}

void wg_state_remove(wg_instance_t *in, const wg_member_t *m)
{
	_cleanup_free_ char *path = member_path(in, m);
	unlink(path);
}

/* Persistent tunnels (and their external peers) live under the state dir:
 * they outlive reboots, as a peer's configuration on the other side does. */
static char *tunnel_path(const wg_instance_t *in, const wg_tunnel_t *t)
{
	return xasprintf("%s/tunnels/%" PRIu32, in->persist_dir, t->index);
}

int wg_state_tunnel_save(wg_instance_t *in, const wg_tunnel_t *t, hutch_err_t *err)
{
	_cleanup_free_ char *path = tunnel_path(in, t);
	if (!t->explicit_) {
		unlink(path);
		return 0;
	}
	strbuf_t b = STRBUF_INIT;
	sb_printf(&b, "tenant=%s\ntunnel=%s\nsubnet=%" PRIu32 "\n", t->tenant, t->name, t->index);
	for (size_t i = 0; i < t->n_peers; i++) {
		const wg_peer_t *p = &t->peers[i];
		char hex[2 * WG_KEY_LEN + 1];
		wg_key_hex(&p->pub, hex);
		sb_printf(&b, "peer=%s %s %s %" PRIu32, p->name, hex, p->endpoint[0] ? p->endpoint : "-",
			  p->host);
		for (size_t k = 0; k < p->n_nets; k++)
			sb_printf(&b, " %u.%u.%u.%u/%u", p->nets[k][0], p->nets[k][1], p->nets[k][2],
				  p->nets[k][3], p->nets[k][4]);
		sb_putc(&b, '\n');
	}
	int r = file_write(path, b.buf, err);
	sb_free(&b);
	return r;
}

/* One "peer=" line back into t (recovery); false when it does not parse. */
static bool peer_restore(wg_tunnel_t *t, const char *v)
{
	if (t->n_peers == WG_MAX_PEERS)
		return false;
	wg_peer_t p = {0};
	char hex[80], endpoint[80], rest[600] = "";
	unsigned host;
	if (sscanf(v, "%63s %79s %79s %u %599[^\n]", p.name, hex, endpoint, &host, rest) < 4 ||
	    wg_key_from_hex(hex, &p.pub) < 0 || !wg_tunnel_host_reserve(t, host))
		return false;
	snprintf(p.endpoint, sizeof p.endpoint, "%s", strcmp(endpoint, "-") ? endpoint : "");
	p.host = host;
	wg_tunnel_addr(t, host, p.addr);
	for (char *tok = strtok(rest, " "); tok && p.n_nets < WG_MAX_PEER_NETS;
	     tok = strtok(NULL, " ")) {
		unsigned a, b, c, d, l;
		if (sscanf(tok, "%u.%u.%u.%u/%u", &a, &b, &c, &d, &l) != 5)
			continue;
		uint8_t *n = p.nets[p.n_nets++];
		n[0] = (uint8_t)a, n[1] = (uint8_t)b, n[2] = (uint8_t)c, n[3] = (uint8_t)d,
		n[4] = (uint8_t)l;
	}
	t->peers[t->n_peers++] = p;
	return true;
}

/* The running gateway's process, for the next hutchd (run dir). */
int wg_state_gateway_save(wg_instance_t *in, const wg_tunnel_t *t, hutch_err_t *err)
{
	_cleanup_free_ char *path = xasprintf("%s/gw-%" PRIu32 ".state", in->state_dir, t->index);
	if (!t->gw.running) {
		unlink(path);
		return 0;
	}
	_cleanup_free_ char *text = xasprintf("device=%s\npid=%d\nport=%u\nnetns=%s\n",
					      t->gw.proc.host_name, (int)t->gw.proc.pid, t->gw.port,
					      t->gw.netns_path);
	return file_write(path, text, err);
}

void wg_state_tunnel_remove(wg_instance_t *in, const wg_tunnel_t *t)
{
	_cleanup_free_ char *path = tunnel_path(in, t);
	unlink(path);
}

/* ---- reading back ---- */

typedef struct kv_file {
	char peers[WG_MAX_PEERS][700];
	size_t n_peers;
	char tenant[128], tunnel[WG_NAME_MAX + 1], sandbox[128], ifname[16], device[16];
	char netns[256], public_key[72], name[128];
	uint32_t subnet, host;
	int pid;
	unsigned port;
	int64_t joined;
} kv_file_t;

static bool kv_read(const char *path, kv_file_t *f)
{
	memset(f, 0, sizeof *f);
	_cleanup_fclose_ FILE *fp = fopen(path, "re");
	char line[1024];
	while (fp && fgets(line, sizeof line, fp)) {
		line[strcspn(line, "\n")] = '\0';
		char *eq = strchr(line, '=');
		if (!eq)
			return false;
		*eq = '\0';
		const char *k = line, *v = eq + 1;
#define S(name) else if (strcmp(k, #name) == 0) snprintf(f->name, sizeof f->name, "%s", v)
		if (0)
			;
		S(tenant);
		S(tunnel);
		S(sandbox);
		S(ifname);
		S(device);
		S(netns);
		S(public_key);
		S(name);
#undef S
		else if (strcmp(k, "subnet") == 0) f->subnet = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(k, "host") == 0) f->host = (uint32_t)strtoul(v, NULL, 10);
		else if (strcmp(k, "pid") == 0) f->pid = atoi(v);
		else if (strcmp(k, "port") == 0) f->port = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(k, "joined") == 0) f->joined = strtoll(v, NULL, 10);
		else if (strcmp(k, "peer") == 0 && f->n_peers < WG_MAX_PEERS)
			snprintf(f->peers[f->n_peers++], sizeof f->peers[0], "%s", v);
	}
	return fp != NULL;
}

static void sandboxes_load(wg_instance_t *in)
{
	_cleanup_free_ char *dir = xasprintf("%s/sandboxes", in->state_dir);
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp"))
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", dir, de->d_name);
		_cleanup_free_ kv_file_t *f = xcalloc(1, sizeof *f);
		if (!kv_read(path, f) || access(f->netns, F_OK) < 0) {
			unlink(path);
			continue;
		}
		wg_sandbox_t *sb = wg_sandbox_add(in, de->d_name, f->tenant, f->netns);
		snprintf(sb->name, sizeof sb->name, "%s", f->name);
	}
}

/* Takes the member in file f back; false when it cannot be. */
static bool member_restore(wg_instance_t *in, const kv_file_t *f)
{
	wg_sandbox_t *sb = wg_sandbox_find(in, f->sandbox);
	if (!sb || sb->n_members >= WG_MAX_TUNNELS_PER_SANDBOX || !wg_name_ok(f->tunnel))
		return false;
	wg_member_t m = {.sandbox = sb, .host = f->host, .joined_unix = f->joined};
	snprintf(m.ifname, sizeof m.ifname, "%s", f->ifname);
	snprintf(m.proc.host_name, sizeof m.proc.host_name, "%s", f->device);
	snprintf(m.proc.sock_path, sizeof m.proc.sock_path, "/var/run/wireguard/%s.sock",
		 f->device);
	m.proc.pid = f->pid;
	m.proc.port = (uint16_t)f->port;
	if (wg_key_from_hex(f->public_key, &m.pub) < 0 || !wg_go_adopt(&m.proc)) {
		/* Its process is gone (killed: it left its socket behind). */
		if (m.proc.host_name[0])
			unlink(m.proc.sock_path);
		return false;
	}
	wg_tunnel_t *t = wg_tunnel_restore(in, f->tenant, f->tunnel, f->subnet);
	if (!t || !wg_tunnel_host_reserve(t, f->host)) {
		wg_go_stop(in, &m.proc);
		return false;
	}
	m.tunnel = t;
	wg_tunnel_addr(t, m.host, m.addr);
	wg_member_t *mm = xmalloc(sizeof *mm);
	*mm = m;
	sb->members[sb->n_members++] = mm;
	t->members = xrealloc(t->members, (t->n_members + 1) * sizeof *t->members);
	t->members[t->n_members++] = mm;
	return true;
}

/* Brings m's peers in line with its tunnel's members. */
static void member_resync(wg_instance_t *in, wg_member_t *m)
{
	wg_tunnel_t *t = m->tunnel;
	hutch_err_t e = {0};
	wg_uapi_state_t st;
	if (wg_uapi_get(m->proc.sock_path, 2000, &st, &e) < 0) {
		in->host->log(in->host, HUTCH_LOG_WARN, "tunnel %s: member %s: %s", t->name,
			      m->sandbox->id, e.message);
		return;
	}
	strbuf_t body = STRBUF_INIT;
	for (size_t i = 0; i < st.n_peers; i++) {
		bool member = false;
		for (size_t j = 0; j < t->n_members && !member; j++)
			member = memcmp(t->members[j]->pub.b, st.peers[i].pub.b, WG_KEY_LEN) == 0;
		if (t->gw.running && memcmp(t->gw.pub.b, st.peers[i].pub.b, WG_KEY_LEN) == 0)
			member = true;
		if (!member) {
			char hex[2 * WG_KEY_LEN + 1];
			wg_key_hex(&st.peers[i].pub, hex);
			sb_printf(&body, "public_key=%s\nremove=true\n", hex);
		}
	}
	for (size_t j = 0; j < t->n_members; j++) {
		if (t->members[j] == m)
			continue;
		char lines[256];
		wg_member_peer_lines(in, t->members[j], lines, sizeof lines);
		sb_append(&body, lines);
	}
	if (t->gw.running)
		wg_gateway_peer_lines(in, t, &body);
	wg_uapi_state_free(&st);
	if (body.len && wg_uapi_set(m->proc.sock_path, body.buf, 2000, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "tunnel %s: member %s: %s", t->name,
			      m->sandbox->id, e.message);
	sb_free(&body);
}

/* Persistent tunnels (tunnel_create), before the members that may be in
 * them. */
static void tunnels_load(wg_instance_t *in)
{
	_cleanup_free_ char *dir = xasprintf("%s/tunnels", in->persist_dir);
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (strstr(de->d_name, ".key"))
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", dir, de->d_name);
		_cleanup_free_ kv_file_t *f = xcalloc(1, sizeof *f);
		wg_tunnel_t *t = NULL;
		if (!strstr(de->d_name, ".tmp") && kv_read(path, f) && wg_name_ok(f->tunnel))
			t = wg_tunnel_restore(in, f->tenant, f->tunnel, f->subnet);
		if (!t) {
			unlink(path);
			continue;
		}
		t->explicit_ = true;
		for (size_t i = 0; i < f->n_peers; i++)
			if (!peer_restore(t, f->peers[i]))
				in->host->log(in->host, HUTCH_LOG_WARN,
					      "tunnel %s: a peer of %s does not parse; dropped", f->tunnel,
					      path);
	}
}

/* Takes a tunnel's gateway back after a restart, or starts it anew. */
static void gateway_restore(wg_instance_t *in, wg_tunnel_t *t)
{
	_cleanup_free_ char *path = xasprintf("%s/gw-%" PRIu32 ".state", in->state_dir, t->index);
	_cleanup_free_ kv_file_t *f = xcalloc(1, sizeof *f);
	hutch_err_t e = {0};
	wg_key_t priv;
	if (kv_read(path, f) && wg_gateway_key(in, t, &priv, &e) == 0) {
		wg_key_wipe(&priv);
		wg_proc_t p = {.pid = f->pid, .port = (uint16_t)f->port};
		snprintf(p.host_name, sizeof p.host_name, "%s", f->device);
		snprintf(p.sock_path, sizeof p.sock_path, "/var/run/wireguard/%s.sock", f->device);
		if (wg_go_adopt(&p)) {
			t->gw.proc = p;
			t->gw.port = p.port;
			snprintf(t->gw.netns_path, sizeof t->gw.netns_path, "%s", f->netns);
			t->gw.running = true;
			return;
		}
		unlink(p.sock_path);
	}
	if (wg_gateway_start(in, t, &e) < 0 || wg_state_gateway_save(in, t, &e) < 0)
		in->host->log(in->host, HUTCH_LOG_WARN, "tunnel %s: %s", t->name, e.message);
}

void wg_state_load_all(wg_instance_t *in)
{
	tunnels_load(in);
	sandboxes_load(in);
	_cleanup_free_ char *dir = xasprintf("%s/members", in->state_dir);
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	size_t kept = 0, gone = 0;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", dir, de->d_name);
		_cleanup_free_ kv_file_t *f = xcalloc(1, sizeof *f);
		if (strstr(de->d_name, ".tmp") || !kv_read(path, f) || !member_restore(in, f)) {
			unlink(path);
			gone++;
			continue;
		}
		kept++;
	}
	for (size_t i = 0; i < in->n_tunnels; i++) {
		if (in->tunnels[i]->n_peers)
			gateway_restore(in, in->tunnels[i]);
		for (size_t j = 0; j < in->tunnels[i]->n_members; j++)
			member_resync(in, in->tunnels[i]->members[j]);
		wg_names_tunnel_changed(in, in->tunnels[i], NULL);
	}
	if (kept || gone)
		in->host->log(in->host, HUTCH_LOG_INFO,
			      "%zu tunnel members from before taken back, %zu gone", kept, gone);
}
