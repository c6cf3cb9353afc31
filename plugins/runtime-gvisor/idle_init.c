/*
 * idle_init.c: the init a sandbox runs when the core gives no argv.
 *
 * It has to work in any image, so it cannot be a program from the image
 * (busybox `sleep` is not in every image, a shell may not be either) nor a
 * dynamically linked host binary. It is a 249-byte static ELF written here
 * from hand-assembled x86-64 code and bind-mounted read-only into the
 * sandbox at GV_IDLE_INIT_TARGET:
 *
 *       xor   edi, edi              ; rt_sigprocmask(SIG_BLOCK, &set, 0, 8)
 *       lea   rsi, [rip+set]
 *       xor   edx, edx
 *       mov   r10d, 8
 *       mov   eax, 14
 *       syscall
 *   wait_sig:                       ; rt_sigtimedwait(&set, 0, &ts, 8)
 *       lea   rdi, [rip+set]
 *       xor   esi, esi
 *       lea   rdx, [rip+ts]
 *       mov   r10d, 8
 *       mov   eax, 128
 *       syscall
 *       cmp   eax, 1                ; SIGHUP, SIGINT, SIGTERM: quit
 *       je    quit
 *       cmp   eax, 2
 *       je    quit
 *       cmp   eax, 15
 *       je    quit
 *   reap:                           ; SIGCHLD or the 1 s timeout:
 *       mov   edi, -1               ;   wait4(-1, 0, WNOHANG, 0) until none
 *       xor   esi, esi
 *       mov   edx, 1
 *       xor   r10d, r10d
 *       mov   eax, 61
 *       syscall
 *       test  eax, eax
 *       jg    reap
 *       jmp   wait_sig
 *   quit:
 *       xor   edi, edi              ; exit_group(0)
 *       mov   eax, 231
 *       syscall
 *   set: .quad (1<<(SIGHUP-1)) | (1<<(SIGINT-1)) | (1<<(SIGTERM-1)) | (1<<(SIGCHLD-1))
 *   ts:  .quad 1, 0
 *
 * Two duties of a PID 1. It reaps: orphans (the background jobs of an exec
 * whose shell has ended) are reparented to it, and unreaped zombies would
 * count against the sandbox's process limit forever. And it ends on
 * SIGTERM: a PID 1 ignores signals it has no handler for, so instead it
 * blocks SIGTERM/SIGINT/SIGHUP and waits for them, which makes `runsc kill
 * SIGTERM` end it at once (exit 0) and a stop needs no grace period.
 */
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cleanup.h"
#include "gvisor.h"
#include "strbuf.h"

#if defined(__x86_64__)
static const unsigned char idle_code[] = {
	0x31, 0xff, 0x48, 0x8d, 0x35, 0x60, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x41,
	0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x0e, 0x00, 0x00, 0x00, 0x0f, 0x05,
	0x48, 0x8d, 0x3d, 0x4a, 0x00, 0x00, 0x00, 0x31, 0xf6, 0x48, 0x8d, 0x15,
	0x49, 0x00, 0x00, 0x00, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0xb8, 0x80,
	0x00, 0x00, 0x00, 0x0f, 0x05, 0x83, 0xf8, 0x01, 0x74, 0x26, 0x83, 0xf8,
	0x02, 0x74, 0x21, 0x83, 0xf8, 0x0f, 0x74, 0x1c, 0xbf, 0xff, 0xff, 0xff,
	0xff, 0x31, 0xf6, 0xba, 0x01, 0x00, 0x00, 0x00, 0x45, 0x31, 0xd2, 0xb8,
	0x3d, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x85, 0xc0, 0x7f, 0xe6, 0xeb, 0xb8,
	0x31, 0xff, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05,
	/* set: SIGHUP | SIGINT | SIGTERM | SIGCHLD */
	0x03, 0x40, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
	/* ts: { 1 s, 0 ns } */
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
};

int gv_idle_init_write(const char *path, hutch_err_t *err)
{
	const Elf64_Addr base = 0x400000;
	const size_t code_off = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
	unsigned char image[sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr) + sizeof idle_code];
	Elf64_Ehdr eh = {
		.e_ident = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB,
			    EV_CURRENT, ELFOSABI_SYSV},
		.e_type = ET_EXEC,
		.e_machine = EM_X86_64,
		.e_version = EV_CURRENT,
		.e_entry = base + code_off,
		.e_phoff = sizeof(Elf64_Ehdr),
		.e_ehsize = sizeof(Elf64_Ehdr),
		.e_phentsize = sizeof(Elf64_Phdr),
		.e_phnum = 1,
	};
	Elf64_Phdr ph = {
		.p_type = PT_LOAD,
		.p_flags = PF_R | PF_X,
		.p_offset = 0,
		.p_vaddr = base,
		.p_paddr = base,
		.p_filesz = sizeof image,
		.p_memsz = sizeof image,
		.p_align = 0x1000,
	};
	memcpy(image, &eh, sizeof eh);
	memcpy(image + sizeof eh, &ph, sizeof ph);
	memcpy(image + code_off, idle_code, sizeof idle_code);

	_cleanup_free_ char *tmp = xasprintf("%s.tmp", path);
	_cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0555);
	if (fd < 0)
		return hutch_err_sys(err, errno, "idle init: create %s", tmp);
	if (write(fd, image, sizeof image) != (ssize_t)sizeof image) {
		int e = errno ? errno : EIO;
		unlink(tmp);
		return hutch_err_sys(err, e, "idle init: write %s", tmp);
	}
	if (fchmod(fd, 0555) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		unlink(tmp);
		return hutch_err_sys(err, e, "idle init: install %s", path);
	}
	return 0;
}
#else
int gv_idle_init_write(const char *path, hutch_err_t *err)
{
	(void)path;
	return hutch_err_set(err, ENOTSUP,
			     "no built-in idle init for this architecture (x86-64 only)");
}
#endif
