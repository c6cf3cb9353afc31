/* hutch cp SRC DST: files and trees between this machine and a sandbox.
 * One side is ID:/path. Trees travel as tar streams (libarchive here,
 * hutchd's own reader and writer on the other side). */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* "ID:/path" -> id and path; anything else is local. */
static bool split_remote(const char *arg, char *id, size_t id_cap, const char **path)
{
	const char *colon = strchr(arg, ':');
	if (!colon || colon == arg || memchr(arg, '/', (size_t)(colon - arg)))
		return false;
	if ((size_t)(colon - arg) >= id_cap)
		return false;
	memcpy(id, arg, (size_t)(colon - arg));
	id[colon - arg] = '\0';
	*path = colon + 1;
	return true;
}

static const char *base_of(const char *p, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", p);
	size_t n = strlen(buf);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	return basename(buf);
}

static int remote_is_dir(hutch_client_t *c, const char *id, const char *path, bool *is_dir,
			 bool *exists, hutch_err_t *err)
{
	Hutch__V1__FileInfo *fi = NULL;
	int r = hutch_files_stat(c, id, path, &fi, err);
	if (r == -ENOENT) {
		*exists = false;
		*is_dir = false;
		return 0;
	}
	if (r < 0)
		return r;
	*exists = true;
	*is_dir = strcmp(fi->type, "dir") == 0;
	protobuf_c_message_free_unpacked(&fi->base, NULL);
	return 0;
}

/* Writes a tar of dir's contents (names relative to dir) into fd. */
int cli_tar_dir(const char *dir, int fd, hutch_err_t *err)
{
	struct archive *a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (archive_write_open_fd(a, fd) != ARCHIVE_OK) {
		int r = hutch_err_set(err, EIO, "tar: %s", archive_error_string(a));
		archive_write_free(a);
		return r;
	}
	struct archive *disk = archive_read_disk_new();
	archive_read_disk_set_standard_lookup(disk);
	archive_read_disk_set_symlink_physical(disk);
	int r = 0;
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof cwd) || chdir(dir) < 0) {
		r = hutch_err_sys(err, errno, "cd %s", dir);
		goto out;
	}
	if (archive_read_disk_open(disk, ".") != ARCHIVE_OK) {
		r = hutch_err_set(err, EIO, "read %s: %s", dir, archive_error_string(disk));
		goto back;
	}
	for (;;) {
		struct archive_entry *e = archive_entry_new();
		int ar = archive_read_next_header2(disk, e);
		if (ar == ARCHIVE_EOF) {
			archive_entry_free(e);
			break;
		}
		if (ar != ARCHIVE_OK) {
			r = hutch_err_set(err, EIO, "read %s: %s", dir, archive_error_string(disk));
			archive_entry_free(e);
			break;
		}
		archive_read_disk_descend(disk);
		const char *name = archive_entry_pathname(e);
		if (strcmp(name, ".") == 0) {
			archive_entry_free(e);
			continue;
		}
		if (strncmp(name, "./", 2) == 0)
			archive_entry_set_pathname(e, name + 2);
		if (archive_write_header(a, e) != ARCHIVE_OK) {
			r = hutch_err_set(err, EIO, "tar: %s", archive_error_string(a));
			archive_entry_free(e);
			break;
		}
		if (archive_entry_filetype(e) == AE_IFREG && archive_entry_size(e) > 0) {
			int in = open(archive_entry_sourcepath(e), O_RDONLY | O_CLOEXEC);
			char buf[65536];
			ssize_t n;
			while (in >= 0 && (n = read(in, buf, sizeof buf)) > 0)
				archive_write_data(a, buf, (size_t)n);
			if (in >= 0)
				close(in);
		}
		archive_entry_free(e);
	}
back:
	if (chdir(cwd) < 0 && r == 0)
		r = hutch_err_sys(err, errno, "cd %s", cwd);
out:
	archive_read_free(disk);
	archive_write_close(a);
	archive_write_free(a);
	return r;
}

static int upload(hutch_client_t *c, const char *src, const char *id, const char *dst)
{
	hutch_err_t err = {0};
	struct stat st;
	if (stat(src, &st) < 0) {
		hutch_err_sys(&err, errno, "%s", src);
		return cli_fail(&err);
	}
	bool is_dir, exists;
	if (remote_is_dir(c, id, dst, &is_dir, &exists, &err) < 0)
		return cli_fail(&err);
	char b[PATH_MAX], target[PATH_MAX * 2];
	const char *name = base_of(src, b, sizeof b);
	if (is_dir || (!exists && dst[strlen(dst) - 1] == '/'))
		snprintf(target, sizeof target, "%s%s%s", dst, dst[strlen(dst) - 1] == '/' ? "" : "/", name);
	else
		snprintf(target, sizeof target, "%s", dst);
	int64_t bytes = 0;
	int r;
	if (S_ISDIR(st.st_mode)) {
		FILE *tmp = tmpfile();
		if (!tmp) {
			hutch_err_sys(&err, errno, "temporary file");
			return cli_fail(&err);
		}
		r = cli_tar_dir(src, fileno(tmp), &err);
		if (r == 0 && lseek(fileno(tmp), 0, SEEK_SET) < 0)
			r = hutch_err_sys(&err, errno, "rewind");
		if (r == 0)
			r = hutch_files_put(c, id, target, fileno(tmp), true, 0, &bytes, &err);
		fclose(tmp);
	} else if (S_ISREG(st.st_mode)) {
		int fd = open(src, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			hutch_err_sys(&err, errno, "%s", src);
			return cli_fail(&err);
		}
		r = hutch_files_put(c, id, target, fd, false, st.st_mode & 07777, &bytes, &err);
		close(fd);
	} else {
		hutch_err_set(&err, EINVAL, "%s: only files and directories can be copied", src);
		return cli_fail(&err);
	}
	return r < 0 ? cli_fail(&err) : 0;
}

static int download(hutch_client_t *c, const char *id, const char *src, const char *dst)
{
	hutch_err_t err = {0};
	bool is_dir, exists;
	if (remote_is_dir(c, id, src, &is_dir, &exists, &err) < 0)
		return cli_fail(&err);
	if (!exists) {
		hutch_err_set(&err, ENOENT, "%s:%s: no such file or directory", id, src);
		return cli_fail(&err);
	}
	char b[PATH_MAX], target[PATH_MAX * 2];
	const char *name = base_of(src, b, sizeof b);
	struct stat st;
	bool local_dir = stat(dst, &st) == 0 && S_ISDIR(st.st_mode);
	if (local_dir)
		snprintf(target, sizeof target, "%s/%s", dst, name);
	else
		snprintf(target, sizeof target, "%s", dst);
	int r;
	if (!is_dir) {
		int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			hutch_err_sys(&err, errno, "%s", target);
			return cli_fail(&err);
		}
		Hutch__V1__FileInfo *fi = NULL;
		r = hutch_files_get(c, id, src, fd, false, &fi, &err);
		if (r == 0 && fi && fi->mode)
			fchmod(fd, fi->mode & 07777);
		if (fi)
			protobuf_c_message_free_unpacked(&fi->base, NULL);
		close(fd);
		if (r < 0)
			unlink(target);
		return r < 0 ? cli_fail(&err) : 0;
	}
	FILE *tmp = tmpfile();
	if (!tmp) {
		hutch_err_sys(&err, errno, "temporary file");
		return cli_fail(&err);
	}
	r = hutch_files_get(c, id, src, fileno(tmp), true, NULL, &err);
	if (r < 0) {
		fclose(tmp);
		return cli_fail(&err);
	}
	lseek(fileno(tmp), 0, SEEK_SET);
	/* Entries arrive as "<name>/..."; they land under target. */
	struct archive *a = archive_read_new();
	archive_read_support_format_tar(a);
	struct archive *w = archive_write_disk_new();
	/* Names are rewritten to target + the entry's own relative part, so
	 * they are absolute by construction; ".." parts and writes through
	 * symlinks are still refused. */
	archive_write_disk_set_options(w, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
					  ARCHIVE_EXTRACT_SECURE_NODOTDOT |
					  ARCHIVE_EXTRACT_SECURE_SYMLINKS);
	if (archive_read_open_fd(a, fileno(tmp), 65536) != ARCHIVE_OK) {
		r = hutch_err_set(&err, EIO, "tar: %s", archive_error_string(a));
	} else {
		struct archive_entry *e;
		size_t nl = strlen(name);
		while (r == 0 && archive_read_next_header(a, &e) == ARCHIVE_OK) {
			const char *p = archive_entry_pathname(e);
			const char *rest = strncmp(p, name, nl) == 0 ? p + nl : NULL;
			if (!rest || (*rest && *rest != '/'))
				continue; /* not under the requested tree */
			char out[PATH_MAX * 3];
			snprintf(out, sizeof out, "%s%s", target, rest);
			archive_entry_set_pathname(e, out);
			if (archive_write_header(w, e) != ARCHIVE_OK) {
				r = hutch_err_set(&err, EIO, "%s: %s", out, archive_error_string(w));
				break;
			}
			const void *buf;
			size_t size;
			la_int64_t off;
			while (archive_read_data_block(a, &buf, &size, &off) == ARCHIVE_OK)
				archive_write_data_block(w, buf, size, off);
			archive_write_finish_entry(w);
		}
	}
	archive_read_free(a);
	archive_write_close(w);
	archive_write_free(w);
	fclose(tmp);
	return r < 0 ? cli_fail(&err) : 0;
}

int cmd_cp(cli_t *cli, int argc, char **argv)
{
	if (argc != 3)
		return cli_usage_error("usage: hutch cp SRC DST   (ID:/path names a path in sandbox ID)");
	char sid[128], did[128];
	const char *spath, *dpath;
	bool src_remote = split_remote(argv[1], sid, sizeof sid, &spath);
	bool dst_remote = split_remote(argv[2], did, sizeof did, &dpath);
	if (src_remote == dst_remote)
		return cli_usage_error("cp: exactly one of SRC and DST must be ID:/path");
	const char *rpath = src_remote ? spath : dpath;
	if (rpath[0] != '/')
		return cli_usage_error("cp: the sandbox path must be absolute (ID:/path)");
	hutch_client_t *c = cli_connect(cli);
	int rc = src_remote ? download(c, sid, spath, argv[2]) : upload(c, argv[1], did, dpath);
	hutch_client_close(c);
	return rc;
}
