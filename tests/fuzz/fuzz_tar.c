/* Fuzzes the tar reader that unpacks client uploads into sandboxes: no
 * crash, and no entry path that could leave the destination. */
#include <stdint.h>
#include <string.h>

#include "tar_stream.h"

static int on_entry(void *ud, const tar_entry_t *e, hutch_err_t *err)
{
	(void)ud;
	(void)err;
	if (!e->path[0] || e->path[0] == '/' || e->size < 0)
		__builtin_trap();
	/* No ".." component may survive cleaning. */
	const char *p = e->path;
	while (*p) {
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if ((n == 2 && p[0] == '.' && p[1] == '.') || (n == 1 && p[0] == '.') || n == 0)
			__builtin_trap();
		p += n;
		if (*p == '/')
			p++;
	}
	return 0;
}

static int on_data(void *ud, const uint8_t *d, size_t n, hutch_err_t *err)
{
	(void)ud;
	(void)d;
	(void)n;
	(void)err;
	return 0;
}

static int on_end(void *ud, hutch_err_t *err)
{
	(void)ud;
	(void)err;
	return 0;
}

static const tar_reader_ops_t ops = {on_entry, on_data, on_end};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	tar_reader_t *r = tar_reader_new(&ops, NULL);
	hutch_err_t err = {0};
	/* Chunked as a network would deliver it. */
	size_t step = size ? (data[0] % 97) + 1 : 1;
	int rc = 0;
	for (size_t off = 0; off < size && rc == 0; off += step)
		rc = tar_reader_feed(r, data + off, off + step <= size ? step : size - off, &err);
	if (rc == 0)
		tar_reader_finish(r, &err);
	tar_reader_free(r);
	/* And the writer's output must read back. */
	tar_entry_t e = {0};
	size_t n = size < 300 ? size : 300;
	memcpy(e.path, "x/", 2);
	for (size_t i = 0; i < n; i++)
		e.path[2 + i] = (data[i] == 0 || data[i] == '/') ? 'a' : (char)data[i];
	e.type = TAR_FILE;
	e.mode = 0644;
	uint8_t hdr[4 * TAR_BLOCK + 3 * TAR_PATH_MAX];
	size_t hn = tar_header_encode(&e, hdr, sizeof hdr);
	if (hn == 0 || hn % TAR_BLOCK)
		__builtin_trap();
	return 0;
}
