/*
 * fuzz_scratch.h: for harnesses that write files as root (layer tars,
 * image archives). From LLVMFuzzerInitialize the process moves into a
 * mount namespace of its own in which every file system is read-only
 * except a fresh tmpfs for the harness's scratch and the directories
 * libFuzzer writes to (the corpus directories it was given, and the
 * current directory for crash files): a bug the fuzzer finds cannot write
 * to the host's files.
 */
#ifndef HUTCH_FUZZ_SCRATCH_H
#define HUTCH_FUZZ_SCRATCH_H

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* <linux/mount.h>'s, which clashes with <sys/mount.h> on older glibc. */
struct fuzz_mount_attr {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static inline void fuzz_keep_writable(const char *dir)
{
	char real[PATH_MAX];
	struct stat st;
	if (realpath(dir, real) && stat(real, &st) == 0 && S_ISDIR(st.st_mode))
		mount(real, real, NULL, MS_BIND | MS_REC, NULL);
}

/* Makes scratch (an absolute path) a fresh writable tmpfs and everything
 * else read-only, but for the directories named in argv and the cwd. */
static inline void fuzz_enter_scratch(const char *scratch, int argc, char **argv)
{
	mkdir(scratch, 0700);
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		__builtin_trap();
	struct fuzz_mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
	if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr, sizeof attr) < 0)
		__builtin_trap();
	if (mount("tmpfs", scratch, "tmpfs", 0, "mode=0755,size=1g") < 0)
		__builtin_trap();
	fuzz_keep_writable(".");
	for (int i = 1; i < argc; i++)
		if (argv[i][0] != '-')
			fuzz_keep_writable(argv[i]);
}

#endif
