#include "rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "host_api.h"
#include "log.h"
#include "proc.h"
#include "strbuf.h"

int rundir_write_text(const char *path, const char *text, hutch_err_t *err)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", path);
	size_t n = strlen(text);
	if (write(fd, text, n) != (ssize_t)n)
		return hutch_err_sys(err, errno ? errno : EIO, "write %s", path);
	return 0;
}

static int write_at(const char *dir, const char *name, const char *text, hutch_err_t *err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
	return rundir_write_text(path, text, err);
}

int rundir_write_etc(const char *etc_dir, const char *name, const hutch_net_attachment_t *att,
		     hutch_err_t *err)
{
	int r = mkdir_p(etc_dir, 0755, err);
	if (r < 0)
		return r;
	_cleanup_sb_ strbuf_t hosts = STRBUF_INIT;
	sb_printf(&hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
	bool named = false;
	for (int i = 0; att && i < HUTCH_NET_MAX_ADDRS; i++) {
		if (!att->addresses[i][0])
			continue;
		char ip[64];
		snprintf(ip, sizeof ip, "%s", att->addresses[i]);
		ip[strcspn(ip, "/")] = '\0';
		sb_printf(&hosts, "%s\t%s\n", ip, name);
		named = true;
	}
	if (!named)
		sb_printf(&hosts, "127.0.1.1\t%s\n", name);
	_cleanup_sb_ strbuf_t resolv = STRBUF_INIT;
	if (att && att->dns_server[0]) {
		sb_printf(&resolv, "nameserver %s\n", att->dns_server);
		if (att->search_domain[0])
			sb_printf(&resolv, "search %s\n", att->search_domain);
		sb_append(&resolv, "options timeout:2 attempts:2\n");
	} else {
		sb_append(&resolv, "# no network: no resolver\nnameserver 127.0.0.1\n");
	}
	_cleanup_free_ char *hostname = xasprintf("%s\n", name);
	if ((r = write_at(etc_dir, "hosts", hosts.buf, err)) < 0 ||
	    (r = write_at(etc_dir, "hostname", hostname, err)) < 0 ||
	    (r = write_at(etc_dir, "resolv.conf", resolv.buf, err)) < 0)
		return r;
	return 0;
}

void rundir_remove(const char *dir)
{
	const char *argv[] = {"rm", "-rf", "--one-file-system", dir, NULL};
	char out[64];
	hutch_err_t e = {0};
	if (proc_run_argv(argv, 60000, out, sizeof out, &e) < 0)
		log_warn("remove %s: %s", dir, e.message);
}
