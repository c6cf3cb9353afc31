/*
 * fsutil.c: small file helpers: whole-file reads and atomic writes of the
 * plugin's own small files, and a recursive remove that cannot escape into
 * a file system mounted below the tree it removes.
 */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

int gv_read_file(const char *path, char **out)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	strbuf_t sb = STRBUF_INIT;
	char buf[4096];
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			sb_free(&sb);
			return -e;
		}
		if (n == 0)
			break;
		sb_append_n(&sb, buf, (size_t)n);
		if (sb.len > (1u << 20)) {
			sb_free(&sb);
			return -EFBIG;
		}
	}
	*out = sb_steal(&sb);
	return 0;
}

int gv_write_file(const char *path, const char *data, hutch_err_t *err)
{
	_cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "create %s", tmp);
	size_t len = strlen(data), off = 0;
	while (off < len) {
		ssize_t n = write(fd, data + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			unlink(tmp);
			return hutch_err_sys(err, e, "write %s", tmp);
		}
		off += (size_t)n;
	}
	if (rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return hutch_err_sys(err, e, "rename %s", tmp);
	}
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type,
			struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int r = type == FTW_DP ? rmdir(path) : unlink(path);
	return r < 0 && errno != ENOENT ? errno : 0;
}

int gv_remove_tree(const char *path, hutch_err_t *err)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : hutch_err_sys(err, errno, "remove %s", path);
	/* FTW_MOUNT: entries on another file system (a mount left below) are
	 * not visited, so their parent's rmdir fails instead of the walk
	 * deleting what is mounted there. */
	int r = nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
	if (r < 0)
		return hutch_err_sys(err, errno, "remove %s", path);
	if (r > 0)
		return hutch_err_sys(err, r, "remove %s", path);
	return 0;
}
