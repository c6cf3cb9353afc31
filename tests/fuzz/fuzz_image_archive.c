/* Fuzzes image imports (oci_layout.c): an archive that claims to be an OCI
 * layout or a docker-archive, unpacked, its JSON read, its blobs checked
 * and its layers stored in a scratch store. No crash, no leak; a failed
 * import leaves no scratch and no pins. The harness chroots into a scratch
 * directory holding only a static busybox (the store removes trees with
 * `rm`), so a bug it finds cannot reach the host's files. Run as root. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "oci_layout.h"
#include "strbuf.h"

static image_store_t *g_store;

static void enter_scratch(void)
{
	char root[] = "/tmp/hutch-fuzz-archive-XXXXXX";
	if (!mkdtemp(root))
		__builtin_trap();
	char *cmd = xasprintf("mkdir %s/bin && cp /bin/busybox %s/bin/ && ln -s busybox %s/bin/rm", root, root, root);
	if (system(cmd) != 0 || chroot(root) < 0 || chdir("/") < 0)
		__builtin_trap();
	free(cmd);
	setenv("PATH", "/bin", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	hutch_err_t err = {0};
	if (!g_store) {
		enter_scratch();
		if (mkdir("/state", 0700) < 0 || image_store_open("/state", &g_store, &err) < 0)
			__builtin_trap();
	}
	const char *tar = "/in.tar";
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
	DIR *d = opendir("/state/images/tmp");
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
