#include "image_builtin.h"

#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"
#include "proc.h"
#include "rundir.h"
#include "strbuf.h"

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const busybox_candidates[] = {
	"/bin/busybox", "/usr/bin/busybox", "/usr/lib/busybox/busybox", NULL,
};

int image_builtin_known(const char *name)
{
	return name && strcmp(name, "busybox") == 0;
}

/* A dynamically linked busybox would not run in a rootfs without its libc:
 * only a binary without PT_INTERP will do. */
static int is_static_elf(const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	Elf64_Ehdr eh;
	if (pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
		return 0;
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * eh.e_phentsize)) !=
		    (ssize_t)sizeof ph)
			return 0;
		if (ph.p_type == PT_INTERP)
			return 0;
	}
	return 1;
}

static int copy_file(const char *from, const char *to, mode_t mode, hutch_err_t *err)
{
	_cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return hutch_err_sys(err, errno, "open %s", from);
	_cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (out < 0)
		return hutch_err_sys(err, errno, "create %s", to);
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof buf)) > 0)
		if (write(out, buf, (size_t)n) != n)
			return hutch_err_sys(err, errno ? errno : EIO, "write %s", to);
	if (n < 0)
		return hutch_err_sys(err, errno, "read %s", from);
	return 0;
}

static int make_busybox(const char *dir, hutch_err_t *err)
{
	const char *bb = NULL;
	for (const char *const *c = busybox_candidates; *c; c++)
		if (is_static_elf(*c)) {
			bb = *c;
			break;
		}
	if (!bb)
		return hutch_err_set(err, ENOENT,
				     "image busybox: no static busybox on this host (install busybox-static)");
	static const char *const dirs[] = {
		"bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc",
		"sys", "dev", "home", "var", "var/tmp", "run", ".hutch", NULL,
	};
	for (const char *const *d = dirs; *d; d++) {
		_cleanup_free_ char *p = xasprintf("%s/%s", dir, *d);
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			return hutch_err_sys(err, errno, "mkdir %s", p);
	}
	_cleanup_free_ char *tmp = xasprintf("%s/tmp", dir);
	chmod(tmp, 01777);
	_cleanup_free_ char *vtmp = xasprintf("%s/var/tmp", dir);
	chmod(vtmp, 01777);
	_cleanup_free_ char *root = xasprintf("%s/root", dir);
	chmod(root, 0700);
	_cleanup_free_ char *bin = xasprintf("%s/bin/busybox", dir);
	int r = copy_file(bb, bin, 0755, err);
	if (r < 0)
		return r;
	/* One symlink per applet, where busybox itself would install it. */
	char list[65536];
	const char *argv[] = {bb, "--list-full", NULL};
	r = proc_run_argv(argv, 10000, list, sizeof list, err);
	if (r < 0)
		return hutch_err_prefix(err, "image busybox: list applets");
	for (char *line = strtok(list, "\n"); line; line = strtok(NULL, "\n")) {
		if (!*line || strstr(line, "..") || strchr(line, ' '))
			continue;
		_cleanup_free_ char *link = xasprintf("%s/%s", dir, line);
		if (strcmp(line, "bin/busybox") == 0)
			continue;
		if (symlink("/bin/busybox", link) < 0 && errno != EEXIST)
			return hutch_err_sys(err, errno, "symlink %s", link);
	}
	_cleanup_free_ char *passwd = xasprintf("%s/etc/passwd", dir);
	_cleanup_free_ char *group = xasprintf("%s/etc/group", dir);
	_cleanup_free_ char *nsswitch = xasprintf("%s/etc/nsswitch.conf", dir);
	if ((r = rundir_write_text(passwd, "root:x:0:0:root:/root:/bin/sh\n"
				    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n", err)) < 0 ||
	    (r = rundir_write_text(group, "root:x:0:\nnogroup:x:65534:\n", err)) < 0 ||
	    (r = rundir_write_text(nsswitch, "hosts: files dns\n", err)) < 0)
		return r;
	return 0;
}

int image_builtin_layer(const char *state_dir, const char *name, char **layer_dir,
			hutch_err_t *err)
{
	if (!image_builtin_known(name))
		return hutch_err_set(err, ENOENT, "image `%s` not found", name);
	_cleanup_free_ char *base = xasprintf("%s/images/builtin", state_dir);
	_cleanup_free_ char *dir = xasprintf("%s/%s", base, name);
	struct stat st;
	pthread_mutex_lock(&g_lock);
	int r = 0;
	if (stat(dir, &st) != 0) {
		/* Made in a scratch dir and renamed into place: a crash halfway
		 * leaves no half image behind. */
		_cleanup_free_ char *images = xasprintf("%s/images", state_dir);
		_cleanup_free_ char *scratch = xasprintf("%s/.%s.tmp", base, name);
		if ((mkdir(images, 0700) < 0 && errno != EEXIST) ||
		    (mkdir(base, 0755) < 0 && errno != EEXIST)) {
			r = hutch_err_sys(err, errno, "mkdir %s", base);
		} else {
			const char *rm[] = {"rm", "-rf", scratch, NULL};
			char out[16];
			proc_run_argv(rm, 30000, out, sizeof out, NULL);
			if (mkdir(scratch, 0755) < 0)
				r = hutch_err_sys(err, errno, "mkdir %s", scratch);
			else if ((r = make_busybox(scratch, err)) == 0 && rename(scratch, dir) < 0)
				r = hutch_err_sys(err, errno, "rename %s", dir);
			if (r < 0)
				proc_run_argv(rm, 30000, out, sizeof out, NULL);
		}
	}
	pthread_mutex_unlock(&g_lock);
	if (r < 0)
		return r;
	*layer_dir = steal_ptr(&dir);
	return 0;
}
