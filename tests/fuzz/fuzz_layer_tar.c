/* Fuzzes the layer tar reader (layer_tar.c) on real disk, as hutchd meets
 * layers from registries and imports: whatever the tar says, nothing is
 * written outside the destination directory (checked: a canary directory
 * beside it stays empty), and what was extracted writes back as a tar.
 * Run as root, as hutchd (whiteouts are device nodes); fuzz_scratch.h
 * keeps a bug it finds from writing to the host's files. */
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_scratch.h"
#include "layer_tar.h"
#include "strbuf.h"

#define SCRATCH "/tmp/hutch-fuzz-layer"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_enter_scratch(SCRATCH, *argc, *argv);
	return 0;
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return type == FTW_DP ? rmdir(p) : unlink(p);
}

static void rm_rf(const char *p)
{
	nftw(p, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *work = SCRATCH "/w", *dest = SCRATCH "/w/layer", *canary = SCRATCH "/w/canary",
		   *tar = SCRATCH "/w/in.tar", *out = SCRATCH "/w/out.tar";
	rm_rf(work);
	if (mkdir(work, 0755) < 0 || mkdir(dest, 0755) < 0 || mkdir(canary, 0755) < 0)
		__builtin_trap();
	FILE *f = fopen(tar, "wb");
	if (!f || fwrite(data, 1, size, f) != size)
		__builtin_trap();
	fclose(f);
	hutch_err_t err = {0};
	if (layer_tar_extract(tar, dest, &err) == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		char digest[DIGEST_STR_MAX];
		int64_t n;
		if (layer_tar_from_dir(dest, fd, digest, &n, &err) < 0)
			__builtin_trap();
		close(fd);
	}
	/* Nothing beside the layer changed: the canary is still empty, and
	 * the scratch holds only the work dir. */
	if (rmdir(canary) < 0)
		__builtin_trap();
	DIR *d = opendir(SCRATCH);
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "w"))
			__builtin_trap();
	if (d)
		closedir(d);
	rm_rf(work);
	return 0;
}
