/* Fuzzes image imports (oci_layout.c): an archive that claims to be an OCI
 * layout or a docker-archive, unpacked, its JSON read, its blobs checked
 * and its layers stored in a scratch store. No crash, no leak; a failed
 * import leaves no scratch and no pins. Run as root; fuzz_scratch.h keeps
 * a bug it finds from reaching the host's files. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_scratch.h"
#include "oci_layout.h"
#include "strbuf.h"

#define SCRATCH "/tmp/hutch-fuzz-archive"

static image_store_t *g_store;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_enter_scratch(SCRATCH, *argc, *argv);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	hutch_err_t err = {0};
	if (!g_store) {
		if (image_store_open(SCRATCH, &g_store, &err) < 0)
			__builtin_trap();
	}
	const char *tar = SCRATCH "/in.tar";
	FILE *f = fopen(tar, "wb");
	if (!f || fwrite(data, 1, size, f) != size)
		__builtin_trap();
	fclose(f);
	oci_imported_t imp;
	char **pinned = NULL;
	if (oci_archive_import(g_store, "fuzz", tar, NULL, &imp, &pinned, &err) == 0) {
		for (char **p = pinned; p && *p; p++)
			image_store_unpin(g_store, *p);
		strv_free(pinned);
		oci_imported_free(&imp);
	} else if (pinned) {
		__builtin_trap();
	}
	unlink(tar);
	/* No scratch left behind. */
	DIR *d = opendir(SCRATCH "/images/tmp");
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (de->d_name[0] != '.')
			__builtin_trap();
	if (d)
		closedir(d);
	image_gc_result_t res;
	image_store_gc(g_store, NULL, 0, &res, &err);
	return 0;
}
