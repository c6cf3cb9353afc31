/*
 * strbuf.h: a growable byte buffer, for building messages, JSON and paths.
 * Allocation failure aborts: hutchd cannot do anything useful without memory
 * for a log line, and checking every append would bury the logic.
 */
#ifndef HUTCH_STRBUF_H
#define HUTCH_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

#include <hutch/error.h>

typedef struct strbuf {
	char *buf; /* NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
} strbuf_t;

#define STRBUF_INIT {NULL, 0, 0}

void sb_reserve(strbuf_t *sb, size_t extra);
void sb_append(strbuf_t *sb, const char *s);
void sb_append_n(strbuf_t *sb, const void *data, size_t n);
void sb_putc(strbuf_t *sb, char c);
void sb_printf(strbuf_t *sb, const char *fmt, ...) HUTCH_PRINTF(2, 3);
void sb_vprintf(strbuf_t *sb, const char *fmt, va_list ap);
/* Appends s as a JSON string literal, quotes included. */
void sb_json_str(strbuf_t *sb, const char *s);
void sb_json_str_n(strbuf_t *sb, const char *s, size_t n);
void sb_reset(strbuf_t *sb);
/* Returns the buffer (never NULL; "" when empty) and leaves sb empty. */
char *sb_steal(strbuf_t *sb);
void sb_free(strbuf_t *sb);

static inline void cleanup_sbp(strbuf_t *sb)
{
	sb_free(sb);
}
#define _cleanup_sb_ __attribute__((cleanup(cleanup_sbp)))

/* Replaces every byte of an invalid UTF-8 sequence with '?', in place, so
 * the text can go into a protobuf string field. */
void utf8_scrub(char *s);

/* Small allocation helpers that abort on OOM. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) HUTCH_PRINTF(1, 2);

/* NULL-terminated string vectors. */
void strv_free(char **v);
size_t strv_len(char *const *v);
char **strv_dup(const char *const *v);
void strv_push(char ***v, char *s); /* takes s */

#endif
