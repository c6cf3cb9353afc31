/*
 * rootfs.c: a sandbox's root file system on the host.
 *
 *   <dir>/scratch   a file system of exactly the sandbox's disk size
 *                   (ext4 on a loop device, see disk.c; or a tmpfs, which
 *                   counts against the memory limit), holding upper/ (the
 *                   sandbox's private writable layer) and work/
 *   <dir>/rootfs    overlayfs: the image layers read-only below, upper/ on
 *                   top; this is the OCI bundle's root
 *
 * runsc runs with --overlay2=none by default, so the sandbox's writes go
 * through the gofer/directfs into upper/ and the scratch size is a real limit
 * (a write beyond it fails with ENOSPC inside the sandbox). Everything is
 * discarded by unmounting it.
 *
 * The overlay is mounted with the new mount API where the kernel has
 * "lowerdir+" (6.8+: one layer per call, no escaping, no page-size limit on
 * the option string), else with mount(2) and a "lowerdir=top:...:bottom"
 * string, which cannot carry ':' ',' or '\' in a path.
 */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

static int overlay_mount_new_api(const char *const *layers, size_t n,
				 const char *upper, const char *work,
				 const char *target, hutch_err_t *err)
{
	_cleanup_close_ int fs = fsopen("overlay", FSOPEN_CLOEXEC);
	if (fs < 0)
		return -ENOSYS;
	/* The first lowerdir+ is the top-most lower layer: add from the top. */
	for (size_t i = n; i-- > 0;) {
		if (fsconfig(fs, FSCONFIG_SET_STRING, "lowerdir+", layers[i], 0) < 0) {
			if (errno == EINVAL && i == n - 1)
				return -ENOSYS; /* no lowerdir+ on this kernel */
			return hutch_err_sys(err, errno, "overlay: lower layer %s", layers[i]);
		}
	}
	if (fsconfig(fs, FSCONFIG_SET_STRING, "upperdir", upper, 0) < 0)
		return hutch_err_sys(err, errno, "overlay: upperdir %s", upper);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "workdir", work, 0) < 0)
		return hutch_err_sys(err, errno, "overlay: workdir %s", work);
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
		return hutch_err_sys(err, errno, "overlay: create");
	_cleanup_close_ int mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV);
	if (mnt < 0)
		return hutch_err_sys(err, errno, "overlay: fsmount");
	if (move_mount(mnt, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
		return hutch_err_sys(err, errno, "overlay: mount on %s", target);
	return 0;
}

static int overlay_mount_legacy(const char *const *layers, size_t n,
				const char *upper, const char *work,
				const char *target, hutch_err_t *err)
{
	_cleanup_sb_ strbuf_t opts = STRBUF_INIT;
	sb_append(&opts, "lowerdir=");
	for (size_t i = n; i-- > 0;) {
		if (strpbrk(layers[i], ":,\\"))
			return hutch_err_set(err, EINVAL,
					     "overlay: layer path %s has ':', ',' or '\\' (this kernel has no lowerdir+)",
					     layers[i]);
		sb_append(&opts, layers[i]);
		if (i > 0)
			sb_putc(&opts, ':');
	}
	sb_printf(&opts, ",upperdir=%s,workdir=%s", upper, work);
	if (opts.len >= (size_t)sysconf(_SC_PAGESIZE))
		return hutch_err_set(err, E2BIG,
				     "overlay: %zu layers make a %zu-byte option string, over the kernel's page (this kernel has no lowerdir+)",
				     n, opts.len);
	if (mount("overlay", target, "overlay", MS_NODEV, opts.buf) < 0)
		return hutch_err_sys(err, errno, "overlay: mount on %s", target);
	return 0;
}

int gv_copy_tree(const gv_runtime_t *rt, const char *from, const char *to,
		     hutch_err_t *err)
{
	_cleanup_free_ char *src = xasprintf("%s/.", from);
	const char *argv[] = {"cp", "-a", "--", src, to, NULL};
	char errbuf[512];
	hutch_spawn_opts_t o = {
		.size = sizeof o,
		.argv = argv,
		.stdin_fd = -1,
		.stdout_fd = -1,
		.stderr_fd = -1,
		.netns_fd = -1,
		.timeout_ms = 300000,
	};
	hutch_run_result_t res = {.size = sizeof res, .err = errbuf, .err_cap = sizeof errbuf};
	int r = rt->host->run(rt->host, &o, &res, err);
	if (r < 0)
		return r;
	if (res.exit_code != 0) {
		size_t l = strlen(errbuf);
		while (l && errbuf[l - 1] == '\n')
			errbuf[--l] = '\0';
		return hutch_err_set(err, res.timed_out ? ETIMEDOUT : EIO,
				     "copy %s to %s: %s", from, to, errbuf);
	}
	return 0;
}

int gv_rootfs_mount(const gv_runtime_t *rt, const char *id, const char *dir,
		    const char *const *layers, size_t n_layers, int64_t disk_bytes,
		    const char *seed_upper, hutch_err_t *err)
{
	if (n_layers == 0)
		return hutch_err_set(err, EINVAL, "no image layers");
	for (size_t i = 0; i < n_layers; i++) {
		struct stat st;
		if (!layers[i] || layers[i][0] != '/')
			return hutch_err_set(err, EINVAL, "layer %zu: not an absolute path", i);
		if (stat(layers[i], &st) < 0)
			return hutch_err_sys(err, errno, "layer %s", layers[i]);
		if (!S_ISDIR(st.st_mode))
			return hutch_err_set(err, ENOTDIR, "layer %s: not a directory", layers[i]);
	}
	_cleanup_free_ char *scratch = xasprintf("%s/scratch", dir);
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", dir);
	_cleanup_free_ char *upper = xasprintf("%s/upper", scratch);
	_cleanup_free_ char *work = xasprintf("%s/work", scratch);
	if (mkdir(scratch, 0700) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", scratch);
	if (mkdir(rootfs, 0755) < 0 && errno != EEXIST)
		return hutch_err_sys(err, errno, "mkdir %s", rootfs);

	if (rt->layer_on_disk) {
		int r = gv_disk_mount(rt, id, scratch, disk_bytes, err);
		if (r < 0)
			return r;
		chmod(scratch, 0700);
	} else {
		char opts[64];
		snprintf(opts, sizeof opts, "size=%lld,mode=0700", (long long)disk_bytes);
		if (mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
			return hutch_err_sys(err, errno, "writable layer: tmpfs on %s", scratch);
	}
	/* The overlay's root takes upper/'s owner and mode: make it an
	 * ordinary root directory. */
	if (mkdir(upper, 0755) < 0 || mkdir(work, 0700) < 0)
		return hutch_err_sys(err, errno, "writable layer: mkdir in %s", scratch);
	if (seed_upper) {
		int r = gv_copy_tree(rt, seed_upper, upper, err);
		if (r < 0)
			return hutch_err_prefix(err, "writable layer");
	}
	int r = overlay_mount_new_api(layers, n_layers, upper, work, rootfs, err);
	if (r == -ENOSYS)
		r = overlay_mount_legacy(layers, n_layers, upper, work, rootfs, err);
	return r;
}

/* Drops the overlay metadata a commit must not carry: everything in
 * trusted.overlay.* but an opaque marker of "y" (origin and impure
 * describe this sandbox's stack, not the layer's content). Never follows a
 * symlink; names come from the sandbox and are only passed to l*xattr. */
static int commit_sanitize(const char *path, bool is_dir, hutch_err_t *err)
{
	char names[8192];
	ssize_t n = llistxattr(path, names, sizeof names);
	if (n < 0)
		return errno == ENOTSUP ? 0 : hutch_err_sys(err, errno, "listxattr %s", path);
	for (char *p = names; p < names + n; p += strlen(p) + 1) {
		if (strncmp(p, "trusted.overlay.", 16) != 0)
			continue;
		if (is_dir && strcmp(p, "trusted.overlay.opaque") == 0) {
			char v[8];
			ssize_t vl = lgetxattr(path, p, v, sizeof v);
			if (vl == 1 && v[0] == 'y')
				continue;
		}
		if (lremovexattr(path, p) < 0 && errno != ENODATA)
			return hutch_err_sys(err, errno, "removexattr %s %s", p, path);
	}
	if (!is_dir)
		return 0;
	_cleanup_closedir_ DIR *d = opendir(path);
	if (!d)
		return hutch_err_sys(err, errno, "open %s", path);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		_cleanup_free_ char *child = xasprintf("%s/%s", path, de->d_name);
		struct stat st;
		if (lstat(child, &st) < 0)
			return hutch_err_sys(err, errno, "stat %s", child);
		if (S_ISLNK(st.st_mode))
			continue; /* xattrs on symlinks: none that matter */
		int r = commit_sanitize(child, S_ISDIR(st.st_mode), err);
		if (r < 0)
			return r;
	}
	return 0;
}

int gv_rootfs_commit(const gv_runtime_t *rt, const char *dir, const char *dest,
		     hutch_err_t *err)
{
	_cleanup_free_ char *upper = xasprintf("%s/scratch/upper", dir);
	struct stat st;
	if (lstat(upper, &st) < 0 || !S_ISDIR(st.st_mode))
		return hutch_err_set(err, ENOENT, "no writable layer at %s", upper);
	/* cp -a keeps owners, modes, times, xattrs, hard links, and copies
	 * whiteouts as the device nodes they are. */
	int r = gv_copy_tree(rt, upper, dest, err);
	if (r < 0)
		return hutch_err_prefix(err, "writable layer");
	return commit_sanitize(dest, true, err);
}

static int unmount_one(const char *path, hutch_err_t *err)
{
	for (int tries = 0;; tries++) {
		if (umount2(path, UMOUNT_NOFOLLOW) == 0)
			continue; /* stacked mounts: until nothing is left */
		if (errno == EINVAL || errno == ENOENT)
			return 0; /* not (or no longer) a mount point */
		if (errno != EBUSY)
			return hutch_err_sys(err, errno, "unmount %s", path);
		if (tries >= 50) {
			/* Something still holds it (a straggling gofer): detach
			 * now, the kernel frees it when the last user goes. */
			if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0 &&
			    errno != EINVAL)
				return hutch_err_sys(err, errno, "unmount %s", path);
			return 0;
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

int gv_rootfs_unmount(const char *dir, hutch_err_t *err)
{
	_cleanup_free_ char *scratch = xasprintf("%s/scratch", dir);
	_cleanup_free_ char *rootfs = xasprintf("%s/rootfs", dir);
	int r = unmount_one(rootfs, err);
	if (r < 0)
		return r;
	return unmount_one(scratch, err);
}

/* Undoes the octal escapes (\040 ...) of a mountinfo field in place. */
static void unescape_mountinfo(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' &&
		    r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

bool gv_mounted(const char *path, bool below)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	size_t plen = strlen(path);
	_cleanup_free_ char *line = NULL;
	size_t cap = 0;
	while (getline(&line, &cap, f) > 0) {
		/* id parent major:minor root mountpoint ... */
		char *save = NULL, *field = strtok_r(line, " ", &save);
		for (int i = 0; field && i < 4; i++)
			field = strtok_r(NULL, " ", &save);
		if (!field)
			continue;
		unescape_mountinfo(field);
		if (strcmp(field, path) == 0)
			return true;
		if (below && strncmp(field, path, plen) == 0 && field[plen] == '/')
			return true;
	}
	return false;
}
