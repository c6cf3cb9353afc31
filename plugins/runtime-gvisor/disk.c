/*
 * disk.c: a sandbox's writable layer as a small ext4 file system on a loop
 * device, instead of a tmpfs.
 *
 * Why not tmpfs: tmpfs pages are charged to the memory cgroup of the task
 * that writes them, and the writer is the sandbox's own sentry/gofer, so a
 * tmpfs writable layer counts against the sandbox's memory limit and cannot
 * be reclaimed. Measured: memory 128 MiB, disk 512 MiB, `dd` of 300 MB to /
 * and the host OOM killer ends the whole sandbox. On ext4 the same write is
 * page cache: charged too, but written back and reclaimed, so the write
 * succeeds and ENOSPC still comes exactly at the file system's size.
 *
 * How: a sparse image file of disk_bytes in <disk_dir> (a real disk: the
 * run dir is usually a tmpfs itself), mkfs.ext4 without a journal (16 ms
 * for 1 GiB here), a loop device set up with LOOP_CONFIGURE (autoclear,
 * direct I/O where the backing file system allows it), the image file
 * unlinked at once: the loop device keeps it alive until the mount goes,
 * so unmounting frees everything and a crash or reboot leaves no file.
 */
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

static char *find_mkfs(void)
{
	static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin", NULL};
	for (const char *const *d = dirs; *d; d++) {
		char *p = xasprintf("%s/mkfs.ext4", *d);
		if (access(p, X_OK) == 0)
			return p;
		free(p);
	}
	return NULL;
}

int gv_disk_setup(gv_runtime_t *rt, char *why, size_t cap)
{
	rt->mkfs_path = find_mkfs();
	if (!rt->mkfs_path) {
		snprintf(why, cap, "no mkfs.ext4 (e2fsprogs)");
		return -ENOENT;
	}
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		snprintf(why, cap, "/dev/loop-control: %s", strerror(errno));
		return -errno;
	}
	close(ctl);
	if (mkdir(rt->disk_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(why, cap, "mkdir %s: %s", rt->disk_dir, strerror(errno));
		return -errno;
	}
	return 0;
}

/* Binds img_fd to a free loop device; returns its open fd and name. */
static int loop_attach(int img_fd, const char *name, char *dev, size_t dev_cap,
		       hutch_err_t *err)
{
	_cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return hutch_err_sys(err, errno, "open /dev/loop-control");
	uint32_t flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
	for (int tries = 0; tries < 32; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			return hutch_err_sys(err, errno, "loop device: LOOP_CTL_GET_FREE");
		snprintf(dev, dev_cap, "/dev/loop%d", n);
		int lfd = open(dev, O_RDWR | O_CLOEXEC);
		if (lfd < 0 && errno == ENOENT) {
			/* A /dev without devtmpfs: make the node. */
			if (mknod(dev, S_IFBLK | 0600, makedev(7, (unsigned)n)) == 0 || errno == EEXIST)
				lfd = open(dev, O_RDWR | O_CLOEXEC);
		}
		if (lfd < 0)
			return hutch_err_sys(err, errno, "open %s", dev);
		struct loop_config cfg;
		memset(&cfg, 0, sizeof cfg);
		cfg.fd = (uint32_t)img_fd;
		cfg.info.lo_flags = flags;
		snprintf((char *)cfg.info.lo_file_name, LO_NAME_SIZE, "%s", name);
		if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
			return lfd;
		int e = errno;
		close(lfd);
		if (e == EBUSY)
			continue; /* another process took it first */
		if (e == EINVAL && (flags & LO_FLAGS_DIRECT_IO)) {
			flags &= ~(uint32_t)LO_FLAGS_DIRECT_IO; /* backing fs without O_DIRECT */
			tries--;
			continue;
		}
		return hutch_err_sys(err, e, "loop device %s: LOOP_CONFIGURE", dev);
	}
	return hutch_err_set(err, EBUSY, "no free loop device");
}

int gv_disk_mount(const gv_runtime_t *rt, const char *id, const char *target,
		  int64_t bytes, hutch_err_t *err)
{
	_cleanup_free_ char *img = xasprintf("%s/%s.img", rt->disk_dir, id);
	unlink(img); /* a leftover of a crash mid-create */
	_cleanup_close_ int fd = open(img, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return hutch_err_sys(err, errno, "writable layer: create %s", img);
	if (ftruncate(fd, bytes) < 0) {
		int e = errno;
		unlink(img);
		return hutch_err_sys(err, e, "writable layer: size %s", img);
	}
	/* No journal (the layer is thrown away, never recovered), no reserved
	 * blocks (the sandbox gets all of it), lazy init (fast). */
	const char *argv[] = {rt->mkfs_path, "-q", "-F", "-m", "0", "-O", "^has_journal",
			      "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
			      "-L", "hutch-layer", img, NULL};
	char errbuf[1024];
	hutch_spawn_opts_t o = {
		.size = sizeof o, .argv = argv, .stdin_fd = -1, .stdout_fd = -1,
		.stderr_fd = -1, .netns_fd = -1, .timeout_ms = 60000,
	};
	hutch_run_result_t res = {.size = sizeof res, .err = errbuf, .err_cap = sizeof errbuf};
	int r = rt->host->run(rt->host, &o, &res, err);
	if (r == 0 && res.exit_code != 0)
		r = hutch_err_set(err, EIO, "mkfs.ext4 exited %d: %.*s", res.exit_code,
				  (int)strcspn(errbuf, "\n"), errbuf);
	if (r < 0) {
		unlink(img);
		return hutch_err_prefix(err, "writable layer");
	}
	char dev[64];
	_cleanup_free_ char *name = xasprintf("hutch:%s", id);
	int lfd = loop_attach(fd, name, dev, sizeof dev, err);
	unlink(img); /* the loop device holds it now, until unmount */
	if (lfd < 0)
		return hutch_err_prefix(err, "writable layer");
	if (mount(dev, target, "ext4", MS_NOSUID | MS_NODEV, "") < 0) {
		int e = errno;
		ioctl(lfd, LOOP_CLR_FD, 0);
		close(lfd);
		return hutch_err_sys(err, e, "writable layer: mount %s on %s", dev, target);
	}
	close(lfd); /* autoclear: the device goes with the mount */
	return 0;
}
