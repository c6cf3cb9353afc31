/*
 * grpc_wire.h: the byte-level pieces of the gRPC-over-HTTP/2 protocol that
 * do not depend on HTTP/2 itself (doc/PROTOCOL-HTTP2.md in the gRPC repo):
 *
 *  - Length-Prefixed-Message framing: every message on a stream is
 *    1 byte Compressed-Flag, 4 bytes big-endian length, then the bytes.
 *    A message may be split across DATA frames in any way, so the
 *    deframer reassembles it from arbitrary chunks.
 *  - grpc-timeout parsing ("100m", "5S", ...).
 *  - grpc-message percent-encoding.
 *
 * Internal to hutch_grpc; pure functions with no I/O, which is what makes
 * them easy to fuzz.
 */
#ifndef HUTCH_GRPC_WIRE_H
#define HUTCH_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "grpc_list.h"

#define GRPC_PREFIX_LEN 5

/* One reassembled message. Allocated as one block, data follows. */
struct grpc_msg {
	struct grpc_link link; /* in a call's held-message queue */
	bool compressed;
	size_t len; /* bytes of data present */
	size_t cap; /* bytes allocated for data */
	uint8_t data[];
};

struct grpc_deframer {
	uint8_t hdr[GRPC_PREFIX_LEN];
	uint8_t hdr_len;     /* prefix bytes collected so far */
	size_t want;         /* message length announced by the prefix */
	struct grpc_msg *msg; /* message being filled; NULL between messages */
};

/* Consumes bytes from data and len (advancing both) until one message is
 * complete. Returns 1 with *out set to the message (the caller owns and
 * frees it), 0 when all input was consumed without completing a message,
 * -EMSGSIZE when a prefix announces more than max_len bytes, -EPROTO for a
 * Compressed-Flag other than 0 or 1, -ENOMEM. After an error the deframer
 * must be reset before reuse. Memory grows with the bytes actually received,
 * not with the announced length, so a lying prefix costs nothing. */
int grpc_deframer_push(struct grpc_deframer *d, size_t max_len, const uint8_t **data, size_t *len,
		       struct grpc_msg **out);
/* True when no partial message is buffered (a stream may end here). */
bool grpc_deframer_idle(const struct grpc_deframer *d);
/* Drops a partial message. */
void grpc_deframer_reset(struct grpc_deframer *d);

/* Writes the 5-byte prefix for an uncompressed message of len bytes. */
void grpc_prefix_write(uint8_t out[GRPC_PREFIX_LEN], uint32_t len);

/* Parses a grpc-timeout value (1 to 8 digits then one of H M S m u n) into
 * milliseconds, rounding up so a short positive timeout never becomes 0.
 * Returns 0 or -EINVAL. */
int grpc_timeout_parse(const char *value, size_t len, uint64_t *ms);

/* Percent-encodes a grpc-message value: bytes outside 0x20..0x7e and '%'
 * become %XX. The result is at most max_out bytes; a longer message is cut
 * between UTF-8 sequences, never inside one. Returns a malloc'd string or
 * NULL (ENOMEM). */
char *grpc_message_encode(const char *msg, size_t max_out);

#endif
