/*
 * names.c: the names of a tunnel's members, for net-egress's resolver
 * (its local_names_dir): with names_dir set, each member sandbox has a file
 * <names_dir>/<sandbox id> listing, for every tunnel it is in, every member
 * as "<member>.<tunnel>.tunnel <address>", <member> being its id and, when
 * it has one, its name. The resolver answers a sandbox from its own file
 * only, so a name resolves only for members of the same tunnel.
 *
 * Every change of a tunnel's members rewrites its members' files. The names
 * lock is the innermost lock: held by whoever changes a tunnel's or a
 * sandbox's member list, and while the files are written.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "strbuf.h"
#include "wg.h"

/* A label from a sandbox's name: lower case, and '_' (allowed in names,
 * not in host names) as '-'. */
static void label_of(const char *name, char *out, size_t cap)
{
	size_t i = 0;
	for (; name[i] && i + 1 < cap; i++) {
		char c = (char)tolower((unsigned char)name[i]);
		out[i] = c == '_' ? '-' : c;
	}
	out[i] = '\0';
}

static void lines_for(const wg_tunnel_t *t, strbuf_t *b)
{
	for (size_t i = 0; i < t->n_members; i++) {
		const wg_member_t *m = t->members[i];
		char a[INET_ADDRSTRLEN];
		inet_ntop(AF_INET, m->addr, a, sizeof a);
		sb_printf(b, "%s.%s.tunnel %s\n", m->sandbox->id, t->name, a);
		if (m->sandbox->name[0]) {
			char label[128];
			label_of(m->sandbox->name, label, sizeof label);
			sb_printf(b, "%s.%s.tunnel %s\n", label, t->name, a);
		}
	}
}

/* Names lock held. */
static void file_write(wg_instance_t *in, const wg_sandbox_t *sb)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", in->cfg->names_dir, sb->id);
	if (sb->n_members == 0) {
		unlink(path);
		return;
	}
	strbuf_t b = STRBUF_INIT;
	for (size_t i = 0; i < sb->n_members; i++)
		lines_for(sb->members[i]->tunnel, &b);
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	bool ok = fd >= 0 && (b.len == 0 || write(fd, b.buf, b.len) == (ssize_t)b.len) &&
		  rename(tmp, path) == 0;
	if (!ok) {
		in->host->log(in->host, HUTCH_LOG_WARN, "names of sandbox %s: write %s: %s", sb->id,
			      path, strerror(errno));
		unlink(tmp);
	}
	sb_free(&b);
}

void wg_names_tunnel_changed(wg_instance_t *in, const wg_tunnel_t *t, const wg_sandbox_t *also)
{
	if (!in->cfg->names_dir || !*in->cfg->names_dir)
		return;
	pthread_mutex_lock(&in->names_lock);
	for (size_t i = 0; i < t->n_members; i++)
		file_write(in, t->members[i]->sandbox);
	if (also)
		file_write(in, also);
	pthread_mutex_unlock(&in->names_lock);
}

void wg_names_forget(wg_instance_t *in, const char *sandbox_id)
{
	if (!in->cfg->names_dir || !*in->cfg->names_dir)
		return;
	_cleanup_free_ char *path = xasprintf("%s/%s", in->cfg->names_dir, sandbox_id);
	unlink(path);
}
