/*
 * log.h: hutchd's log, as text lines or JSON lines, on one fd (stderr by
 * default). Safe from any thread: each record is formatted in full and
 * written with one write(2).
 *
 * Every record names its source: "core", or "<kind>:<plugin>" for lines a
 * plugin logs through the host table. Nothing that may hold a secret is ever
 * passed here; log_redact_add() registers values that are masked anyway, as
 * a second line of defence.
 */
#ifndef HUTCH_LOG_H
#define HUTCH_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <hutch/plugin.h>

typedef enum log_format {
	LOG_FORMAT_TEXT = 0,
	LOG_FORMAT_JSON = 1,
} log_format_t;

void log_setup(hutch_log_level_t level, log_format_t format, int fd);
hutch_log_level_t log_get_level(void);
int log_parse_level(const char *s, hutch_log_level_t *out);
int log_parse_format(const char *s, log_format_t *out);

void log_vwrite(hutch_log_level_t level, const char *source, const char *fmt,
		va_list ap);
void log_write(hutch_log_level_t level, const char *source, const char *fmt,
	       ...) HUTCH_PRINTF(3, 4);

/* A record with fields of its own (an access log line): in JSON they are
 * keys of the record next to "msg" (numbers as numbers); in text they
 * follow the message as key=value, values with a space or quote quoted.
 * Strings are masked like messages. */
typedef struct log_field {
	const char *key;  /* [a-z_]+; not ts, level, source or msg */
	const char *str;  /* NULL: num is the value */
	double num;
} log_field_t;

void log_fields(hutch_log_level_t level, const char *source, const char *msg,
		const log_field_t *fields, size_t n);

/* Values (secrets) that must never reach the log: replaced by "[redacted]"
 * wherever they occur in a record. Copies value; values under 4 bytes are
 * ignored (they would mask ordinary text). */
void log_redact_add(const char *value);
void log_redact_remove(const char *value);

#define log_error(...) log_write(HUTCH_LOG_ERROR, "core", __VA_ARGS__)
#define log_warn(...) log_write(HUTCH_LOG_WARN, "core", __VA_ARGS__)
#define log_info(...) log_write(HUTCH_LOG_INFO, "core", __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_get_level() >= HUTCH_LOG_DEBUG)                        \
			log_write(HUTCH_LOG_DEBUG, "core", __VA_ARGS__);       \
	} while (0)

#endif
