/*
 * utf8_lossy.h: output bytes as text for protobuf string fields.
 *
 * A process's output is bytes; RunResponse's *_text fields are strings, which
 * protobuf clients reject unless they are valid UTF-8. The text is the bytes
 * with each maximal ill-formed subsequence replaced by U+FFFD (the Unicode
 * standard's "substitution of maximal subparts", which Python's
 * decode(errors="replace") and WHATWG decoders also follow), NULs and all
 * else kept. Output sent in pieces is cut between characters so that the
 * pieces' texts, concatenated, are the text of the whole.
 */
#ifndef HUTCH_UTF8_LOSSY_H
#define HUTCH_UTF8_LOSSY_H

#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

/* Appends the lossy UTF-8 text of p[0..n) to sb (at most 3n bytes). */
void utf8_lossy_append(strbuf_t *sb, const uint8_t *p, size_t n);

/* The largest m <= n such that p[0..m) does not end inside a character that
 * the bytes after n could still complete: where to cut a piece that more
 * output follows. */
size_t utf8_cut(const uint8_t *p, size_t n);

#endif
