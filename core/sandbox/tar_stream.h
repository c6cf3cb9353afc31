/*
 * tar_stream.h: tar archives as streams, for moving file trees in and out
 * of sandboxes without holding them in memory.
 *
 * The reader is pushed bytes as they arrive from a client (in any chunking)
 * and calls back per entry; it understands ustar, GNU long names and pax
 * path/linkpath/size records, refuses entries whose path would leave the
 * destination, and checks every header checksum. It is fed untrusted input
 * and has a fuzz harness (tests/fuzz/fuzz_tar.c).
 *
 * The writer encodes one entry header at a time (pax records when a name
 * does not fit ustar) plus padding and the end-of-archive blocks.
 */
#ifndef HUTCH_TAR_STREAM_H
#define HUTCH_TAR_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hutch/error.h>

#define TAR_BLOCK 512
#define TAR_PATH_MAX 4096

typedef enum tar_type {
	TAR_FILE = 1,
	TAR_DIR = 2,
	TAR_SYMLINK = 3,
} tar_type_t;

typedef struct tar_entry {
	char path[TAR_PATH_MAX]; /* relative, cleaned: no leading /, no . or .. parts */
	char link[TAR_PATH_MAX]; /* symlink target */
	tar_type_t type;
	uint32_t mode;
	int64_t size;
	int64_t mtime;
} tar_entry_t;

typedef struct tar_reader_ops {
	/* Return <0 (with err filled) to stop reading. */
	int (*on_entry)(void *ud, const tar_entry_t *e, hutch_err_t *err);
	int (*on_data)(void *ud, const uint8_t *data, size_t n, hutch_err_t *err);
	int (*on_entry_end)(void *ud, hutch_err_t *err);
} tar_reader_ops_t;

typedef struct tar_reader tar_reader_t;

tar_reader_t *tar_reader_new(const tar_reader_ops_t *ops, void *ud);
void tar_reader_free(tar_reader_t *r);
/* Feeds the next bytes. -EINVAL with a message for a malformed archive. */
int tar_reader_feed(tar_reader_t *r, const uint8_t *data, size_t n, hutch_err_t *err);
/* The input ended: -EINVAL if it ended inside an entry. */
int tar_reader_finish(tar_reader_t *r, hutch_err_t *err);
/* Entries skipped because hutch does not copy them (devices, fifos, hard
 * links). */
unsigned tar_reader_skipped(const tar_reader_t *r);

/* Cleans a path from an archive: strips leading "/" and "./", drops "."
 * parts, refuses ".." parts. Returns false if nothing is left or it escapes. */
bool tar_clean_path(const char *in, char *out, size_t cap);

/* Encodes e's header into out (cap >= 3 * TAR_BLOCK + pax size). Returns
 * the number of bytes (a multiple of 512), or 0 if it does not fit. */
size_t tar_header_encode(const tar_entry_t *e, uint8_t *out, size_t cap);
/* Zero bytes needed after `size` bytes of data to reach a block boundary. */
size_t tar_padding(int64_t size);

#endif
