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

static char *tunnel_path(const wg_instance_t *in, const wg_tunnel_t *t)
{
	return xasprintf("%s/tunnels/%" PRIu32, in->state_dir, t->index);
}

int wg_state_tunnel_save(wg_instance_t *in, const wg_tunnel_t *t, hutch_err_t *err)
{
	_cleanup_free_ char *path = tunnel_path(in, t);
	_cleanup_free_ char *text = xasprintf("tenant=%s\ntunnel=%s\nsubnet=%" PRIu32 "\n",
					      t->tenant, t->name, t->index);
	return file_write(path, text, err);
}

void wg_state_tunnel_remove(wg_instance_t *in, const wg_tunnel_t *t)
{
	_cleanup_free_ char *path = tunnel_path(in, t);
	unlink(path);
}

/* ---- reading back ---- */

typedef struct kv_file {
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
	char line[512];
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
		kv_file_t f;
		if (!kv_read(path, &f) || access(f.netns, F_OK) < 0) {
			unlink(path);
			continue;
		}
		wg_sandbox_t *sb = wg_sandbox_add(in, de->d_name, f.tenant, f.netns);
		snprintf(sb->name, sizeof sb->name, "%s", f.name);
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
	_cleanup_free_ char *dir = xasprintf("%s/tunnels", in->state_dir);
	_cleanup_closedir_ DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		_cleanup_free_ char *path = xasprintf("%s/%s", dir, de->d_name);
		kv_file_t f;
		wg_tunnel_t *t = NULL;
		if (!strstr(de->d_name, ".tmp") && kv_read(path, &f) && wg_name_ok(f.tunnel))
			t = wg_tunnel_restore(in, f.tenant, f.tunnel, f.subnet);
		if (t)
			t->explicit_ = true;
		else
			unlink(path);
	}
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
		kv_file_t f;
		if (strstr(de->d_name, ".tmp") || !kv_read(path, &f) || !member_restore(in, &f)) {
			unlink(path);
			gone++;
			continue;
		}
		kept++;
	}
	for (size_t i = 0; i < in->n_tunnels; i++) {
		for (size_t j = 0; j < in->tunnels[i]->n_members; j++)
			member_resync(in, in->tunnels[i]->members[j]);
		wg_names_tunnel_changed(in, in->tunnels[i], NULL);
	}
	if (kept || gone)
		in->host->log(in->host, HUTCH_LOG_INFO,
			      "%zu tunnel members from before taken back, %zu gone", kept, gone);
}
